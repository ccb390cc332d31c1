// SPDX-License-Identifier: MIT
/*
 * The query-result cache: listing pages kept in a dw_cache, written through to the store.
 *
 * Key: SHA-256 of (strategy, query fingerprint, page token, limit), so any query fits a store
 * key. Value: the page, stamped with the strategy's write generation (db_int.h: totals), which
 * every committed put or delete bumps in its own transaction. A lookup reads the current
 * generation first and takes the cached page only if the stamps match, so a listing is never
 * stale, whichever process wrote, and an entry made stale is simply replaced by the next
 * lookup of the same query (the store holds at most one entry per query).
 *
 *   value: | u32 magic "DWQ1" | u64 generation | u64 total | u8 has_more |
 *          | u32 token_len | token | u32 n | n x item |
 *   item:  | u16 key_len | key | u64 size | u64 created | u64 modified | sha256[32] |
 *          | u8 ctype_len | ctype | u32 meta_len (0xffffffff: none) | meta |
 *
 * All integers little-endian. Decoding checks every length against the bytes left; anything
 * malformed (a torn or foreign store entry) is a miss, never a crash.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "db_int.h"

#define MAGIC 0x31515744u /* "DWQ1" */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put_bytes(struct wbuf *w, const void *d, size_t n)
{
	if (w->err)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		uint8_t *np;

		while (cap < w->len + n)
			cap *= 2;
		if (cap > DW_STORE_VALUE_MAX) {
			w->err = DW_ETOOBIG;
			return;
		}
		np = dw_realloc(w->p, cap);
		if (!np) {
			w->err = -ENOMEM;
			return;
		}
		w->p = np;
		w->cap = cap;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void put_u(struct wbuf *w, uint64_t v, int bytes)
{
	uint8_t b[8];

	for (int i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put_bytes(w, b, (size_t)bytes);
}

struct rbuf {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *take(struct rbuf *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t get_u(struct rbuf *r, int bytes)
{
	const uint8_t *p = take(r, (size_t)bytes);
	uint64_t v = 0;

	if (!p)
		return 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

int dw__db_qcache_key(const char *strategy, const void *fp, size_t fplen, const char *token,
		      size_t limit, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t lim = limit;
	unsigned int n;
	int rc = 0;

	if (!md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, strategy, strlen(strategy) + 1) != 1 ||
	    EVP_DigestUpdate(md, fp, fplen) != 1 ||
	    EVP_DigestUpdate(md, token ? token : "", token ? strlen(token) + 1 : 0) != 1 ||
	    EVP_DigestUpdate(md, &lim, sizeof(lim)) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1)
		rc = DW_EBACKEND;
	EVP_MD_CTX_free(md);
	return rc;
}

int dw__db_qcache_encode(const dw_db_page *page, uint64_t generation, void **out, size_t *len)
{
	struct wbuf w = { 0 };
	size_t tlen = page->next_token ? strlen(page->next_token) : 0;

	put_u(&w, MAGIC, 4);
	put_u(&w, generation, 8);
	put_u(&w, page->total, 8);
	put_u(&w, page->has_more, 1);
	put_u(&w, tlen, 4);
	put_bytes(&w, page->next_token ? page->next_token : "", tlen);
	put_u(&w, page->n, 4);
	for (size_t i = 0; i < page->n; i++) {
		const dw_db_object *o = &page->items[i];
		size_t clen = strlen(o->content_type);

		put_u(&w, o->key_len, 2);
		put_bytes(&w, o->key, o->key_len);
		put_u(&w, o->size, 8);
		put_u(&w, o->created_ns, 8);
		put_u(&w, o->modified_ns, 8);
		put_bytes(&w, o->sha256, 32);
		put_u(&w, clen > 255 ? 255 : clen, 1);
		put_bytes(&w, o->content_type, clen > 255 ? 255 : clen);
		if (o->meta) {
			put_u(&w, strlen(o->meta), 4);
			put_bytes(&w, o->meta, strlen(o->meta));
		} else {
			put_u(&w, 0xffffffffu, 4);
		}
	}
	if (w.err) {
		dw_free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

int dw__db_qcache_decode(const void *buf, size_t len, uint64_t generation, dw_db_page *page)
{
	struct rbuf r = { .p = buf, .left = len };
	uint64_t tlen, n;
	const uint8_t *t;
	int rc = DW_ECORRUPT;

	memset(page, 0, sizeof(*page));
	if (get_u(&r, 4) != MAGIC || get_u(&r, 8) != generation)
		return DW_ENOTFOUND; /* stale or foreign: a miss */
	page->total = get_u(&r, 8);
	page->has_more = get_u(&r, 1) != 0;
	tlen = get_u(&r, 4);
	t = take(&r, tlen);
	if (r.bad || tlen > DW_TOKEN_MAX_LEN)
		goto fail;
	if (tlen) {
		page->next_token = dw_strndup((const char *)t, tlen);
		if (!page->next_token) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	n = get_u(&r, 4);
	if (r.bad || n > DW_DB_PAGE_MAX)
		goto fail;
	page->items = dw_calloc(n ? n : 1, sizeof(*page->items));
	if (!page->items) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint64_t i = 0; i < n; i++) {
		dw_db_object *o = &page->items[i];
		uint64_t klen = get_u(&r, 2), clen, mlen;
		const uint8_t *p;

		p = take(&r, klen);
		if (r.bad || klen == 0 || klen > DW_DB_KEY_MAX)
			goto fail;
		memcpy(o->key, p, klen);
		o->key_len = klen;
		o->size = get_u(&r, 8);
		o->created_ns = get_u(&r, 8);
		o->modified_ns = get_u(&r, 8);
		p = take(&r, 32);
		if (!p)
			goto fail;
		memcpy(o->sha256, p, 32);
		clen = get_u(&r, 1);
		p = take(&r, clen);
		if (r.bad)
			goto fail;
		memcpy(o->content_type, p, clen);
		o->content_type[clen] = '\0';
		mlen = get_u(&r, 4);
		page->n = i + 1; /* so page_clear frees what was decoded */
		if (mlen != 0xffffffffu) {
			p = take(&r, mlen);
			if (r.bad || mlen > DW__DB_META_MAX)
				goto fail;
			o->meta = dw_strndup((const char *)p, mlen);
			if (!o->meta) {
				rc = -ENOMEM;
				goto fail;
			}
		}
	}
	if (r.bad || r.left != 0)
		goto fail;
	page->n = n;
	return 0;
fail:
	dw_db_page_clear(page);
	return rc;
}
