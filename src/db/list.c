// SPDX-License-Identifier: MIT
/*
 * Listings: pages with signed continuation tokens, and a streaming walk at constant memory.
 *
 * A page asks its strategy for limit + 1 keys after the token's last key (one index seek, then
 * a short range scan) and so knows has_more without counting. The next token is v2: the last key
 * of the page, signed and bound to the query's fingerprint (strategy, prefix, modified-since), so
 * a token cannot be replayed against another listing. v1 tokens (offset/limit, the original
 * form) are still accepted; they skip `offset` keys, which costs what OFFSET costs.
 *
 * Threads: no state of its own beyond the page being built; see db.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db_int.h"

#define LISTER_BATCH 256

/* Canonical bytes of a query, which tokens are bound to. */
static size_t query_fp(const char *strategy, const void *prefix, size_t plen, uint64_t since,
		       uint8_t *out, size_t cap)
{
	size_t n = 0, slen = strlen(strategy);

	if (16 + slen + 1 + 8 + plen + 8 > cap)
		return 0;
	memcpy(out + n, "dwscale-list-v1", 16); /* includes the NUL */
	n += 16;
	memcpy(out + n, strategy, slen + 1);
	n += slen + 1;
	for (int i = 0; i < 8; i++)
		out[n++] = (uint8_t)((uint64_t)plen >> (8 * i));
	memcpy(out + n, prefix, plen);
	n += plen;
	for (int i = 0; i < 8; i++)
		out[n++] = (uint8_t)(since >> (8 * i));
	return n;
}

struct page_ctx {
	dw_db_page *page;
	size_t want; /* limit + 1 */
	uint64_t skip;
};

static int page_add(void *arg, const struct dw__db_info *info)
{
	struct page_ctx *pc = arg;

	if (pc->skip) {
		pc->skip--;
		return 0;
	}
	dw__db_info_to_object(info, &pc->page->items[pc->page->n++]);
	return pc->page->n == pc->want;
}

void dw_db_page_clear(dw_db_page *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		dw_db_object_clear(&p->items[i]);
	dw_free(p->items);
	dw_free(p->next_token);
	memset(p, 0, sizeof(*p));
}

int dw_db_list(dw_db *db, const char *strategy, const dw_db_list_query *q, dw_db_page *out)
{
	struct dw__db_slot *sl;
	uint8_t fp[DW_DB_KEY_MAX + 128];
	size_t fplen, limit = q->limit ? q->limit : DW_DB_PAGE_DEFAULT;
	const void *prefix = q->prefix ? q->prefix : "";
	dw_token tok;
	const void *after = NULL;
	size_t alen = 0;
	uint64_t skip = 0;
	struct page_ctx pc;
	char why[DW_TOKEN_WHY_LEN];
	uint8_t ckey[32];
	uint64_t generation = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (limit > DW_DB_PAGE_MAX || q->prefix_len > DW_DB_KEY_MAX) {
		snprintf(dw__db_err, sizeof(dw__db_err),
			 "db: limit must be 1..%d, prefix <= %d bytes", DW_DB_PAGE_MAX,
			 DW_DB_KEY_MAX);
		return DW_ELIMIT;
	}
	sl = dw__db_slot_for(db, strategy);
	if (!sl)
		return DW_ENOTFOUND;
	fplen = query_fp(sl->name, prefix, q->prefix_len, q->modified_since_ns, fp, sizeof(fp));
	if (q->page_token) {
		rc = dw_token_decode(db->tokens, q->page_token, fp, fplen, &tok, why, sizeof(why));
		if (rc < 0) {
			snprintf(dw__db_err, sizeof(dw__db_err), "db: page token refused: %s", why);
			return rc;
		}
		if (tok.version == 2) {
			after = tok.last_key;
			alen = tok.last_key_len;
		} else {
			skip = tok.offset;
		}
	}
	if (db->qcache) {
		uint64_t objects, bytes;
		void *val;
		size_t vlen;

		/* The generation is read before the page: a write that lands in between bumps it,
		 * and the page cached below under the old stamp is never served again. */
		rc = sl->s->ops->totals(sl->s, &objects, &bytes, &generation);
		if (rc < 0)
			return dw__db_fail(sl, rc);
		rc = dw__db_qcache_key(sl->name, fp, fplen, q->page_token, limit, ckey);
		if (rc < 0)
			return rc;
		if (dw_cache_get(db->qcache, ckey, sizeof(ckey), &val, &vlen) == 0) {
			rc = dw__db_qcache_decode(val, vlen, generation, out);
			dw_free(val);
			if (rc == 0) {
				atomic_fetch_add_explicit(&db->qcache_hits, 1,
							  memory_order_relaxed);
				return 0;
			}
		}
		atomic_fetch_add_explicit(&db->qcache_misses, 1, memory_order_relaxed);
	}
	out->items = dw_calloc(limit + 1, sizeof(*out->items));
	if (!out->items)
		return -ENOMEM;
	pc.page = out;
	pc.want = limit + 1;
	pc.skip = skip;
	rc = sl->s->ops->list(sl->s, prefix, q->prefix_len, after, alen, q->modified_since_ns,
			      skip + limit + 1, page_add, &pc);
	if (rc < 0) {
		dw__db_fail(sl, rc);
		goto fail;
	}
	rc = sl->s->ops->count(sl->s, prefix, q->prefix_len, q->modified_since_ns, &out->total);
	if (rc < 0) {
		dw__db_fail(sl, rc);
		goto fail;
	}
	if (out->n > limit) {
		dw_db_object_clear(&out->items[limit]);
		out->n = limit;
		out->has_more = true;
		rc = dw_token_encode_v2(db->tokens, fp, fplen, out->items[limit - 1].key,
					out->items[limit - 1].key_len, db->cfg.token_ttl_ms,
					&out->next_token);
		if (rc < 0)
			goto fail;
	}
	if (db->qcache) {
		void *val;
		size_t vlen;

		/* Best effort: a page that cannot be cached is still a good answer. */
		if (dw__db_qcache_encode(out, generation, &val, &vlen) == 0) {
			dw_cache_put(db->qcache, ckey, sizeof(ckey), val, vlen);
			dw_free(val);
		}
	}
	return 0;
fail:
	dw_db_page_clear(out);
	return rc;
}

/* ---- streaming listing ------------------------------------------------------------------ */

struct dw_db_lister {
	dw_db *db;
	struct dw__db_slot *sl;
	uint8_t prefix[DW_DB_KEY_MAX];
	size_t plen;
	uint64_t since;
	dw_db_page batch; /* reused: items has LISTER_BATCH slots */
	size_t pos;
	bool started, done;
	uint8_t last[DW_DB_KEY_MAX];
	size_t last_len;
};

int dw_db_lister_open(dw_db *db, const char *strategy, const void *prefix, size_t plen,
		      uint64_t modified_since_ns, dw_db_lister **out)
{
	dw_db_lister *l;

	*out = NULL;
	if (plen > DW_DB_KEY_MAX)
		return DW_ELIMIT;
	l = dw_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->sl = dw__db_slot_for(db, strategy);
	if (!l->sl) {
		dw_free(l);
		return DW_ENOTFOUND;
	}
	l->batch.items = dw_calloc(LISTER_BATCH, sizeof(*l->batch.items));
	if (!l->batch.items) {
		dw_free(l);
		return -ENOMEM;
	}
	l->db = db;
	if (plen)
		memcpy(l->prefix, prefix, plen);
	l->plen = plen;
	l->since = modified_since_ns;
	*out = l;
	return 0;
}

static int lister_fill(dw_db_lister *l)
{
	struct page_ctx pc = { .page = &l->batch, .want = LISTER_BATCH, .skip = 0 };
	int rc;

	for (size_t i = 0; i < l->batch.n; i++)
		dw_db_object_clear(&l->batch.items[i]);
	l->batch.n = 0;
	l->pos = 0;
	/* Each batch is its own short read: no transaction is held between batches. */
	rc = l->sl->s->ops->list(l->sl->s, l->plen ? l->prefix : (const uint8_t *)"", l->plen,
				 l->started ? l->last : NULL, l->last_len, l->since, LISTER_BATCH,
				 page_add, &pc);
	if (rc < 0)
		return dw__db_fail(l->sl, rc);
	l->started = true;
	if (l->batch.n < LISTER_BATCH)
		l->done = true;
	if (l->batch.n) {
		dw_db_object *last = &l->batch.items[l->batch.n - 1];

		memcpy(l->last, last->key, last->key_len);
		l->last_len = last->key_len;
	}
	return 0;
}

int dw_db_lister_next(dw_db_lister *l, const dw_db_object **o)
{
	int rc;

	if (l->pos == l->batch.n) {
		if (l->done)
			return 0;
		rc = lister_fill(l);
		if (rc < 0)
			return rc;
		if (l->batch.n == 0)
			return 0;
	}
	*o = &l->batch.items[l->pos++];
	return 1;
}

void dw_db_lister_close(dw_db_lister *l)
{
	if (!l)
		return;
	dw_db_page_clear(&l->batch);
	dw_free(l);
}

int dw_db_count(dw_db *db, const char *strategy, const void *prefix, size_t plen, uint64_t *out)
{
	struct dw__db_slot *sl = dw__db_slot_for(db, strategy);
	int rc;

	if (!sl)
		return DW_ENOTFOUND;
	if (plen > DW_DB_KEY_MAX)
		return DW_ELIMIT;
	rc = sl->s->ops->count(sl->s, plen ? prefix : "", plen, 0, out);
	return rc < 0 ? dw__db_fail(sl, rc) : 0;
}
