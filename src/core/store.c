// SPDX-License-Identifier: MIT
/*
 * dw_store: the public API of the persistent backing store. See dwscale/store.h.
 *
 * This file validates everything a caller hands in (keys, prefixes, value sizes), picks the
 * backend from the URI, and runs prefix scans; backends (store_sqlite.c, later the db
 * subsystem's store_pg.c) only store bytes, through the vtable in store_int.h. Keeping the
 * checks here means every backend refuses exactly the same input.
 *
 * Scans
 *   A scan of prefix P walks the half-open byte range [P, upper(P)), where upper(P) is the
 *   smallest string greater than every string starting with P (dw__store_prefix_upper). The
 *   iterator fetches batches of at most DW__STORE_BATCH_ROWS rows (and about
 *   DW__STORE_BATCH_BYTES bytes); each batch is one short read transaction in the backend:
 *     first batch:  P <= key < upper(P)        ORDER BY key
 *     next batches: last_key < key < upper(P)  ORDER BY key
 *   Between calls the iterator holds only copies of the rows, never a transaction, so a long or
 *   abandoned walk never blocks writers or WAL checkpoints. Because every batch restarts strictly
 *   after the last key returned, a key present for the whole walk is returned exactly once
 *   (keys are unique and the order is total); a key inserted or deleted during the walk may or
 *   may not be seen.
 *
 * Error messages
 *   Backend text (e.g. SQLite's message) is kept per thread: the message of this thread's most
 *   recent failing call, tagged with the store it came from. dw_store_errmsg(s) returns it when
 *   the tag is s, so two threads failing on one store never overwrite each other's text.
 *   dw_store_errmsg(NULL) returns the message of this thread's last failed dw_store_open().
 *
 * Threads and locking
 *   This file keeps no shared mutable state: a dw_store's fields are immutable after open and
 *   the backend locks its own state (contract 5 in store_int.h). Error messages are
 *   thread-local. An iterator is owned by one thread at a time and must be freed before its
 *   store is closed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/store_int.h"
#include "dwscale/core.h"

#define SCHEME	   "dw://"
#define SCHEME_LEN 5

/* Per-thread error text; see "Error messages" above. */
static _Thread_local const struct dw_store *err_owner;
static _Thread_local char err_msg[DW__STORE_ERRMSG_MAX];
static _Thread_local char open_msg[DW__STORE_ERRMSG_MAX];

struct row {
	char *key; /* NUL-terminated; the value follows in the same allocation */
	size_t klen;
	const void *val; /* NUL-terminated past vlen */
	size_t vlen;
};

struct dw__store_batch {
	struct row rows[DW__STORE_BATCH_ROWS];
	unsigned n;
	size_t bytes;
	bool full; /* the backend stopped because the batch filled, not because rows ran out */
};

struct dw_store_iter {
	struct dw_store *s;
	uint8_t hi[DW_STORE_KEY_MAX];
	size_t hi_len;			 /* 0: no upper bound */
	char from[DW_STORE_KEY_MAX + 1]; /* the prefix, then the last key returned */
	size_t from_len;
	bool started; /* false: from is the prefix (inclusive); true: the last key (exclusive) */
	bool done;    /* the backend has no rows past the current batch */
	unsigned pos; /* next row of batch to return */
	struct dw__store_batch batch;
};

void dw__store_set_errmsg(const struct dw_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* Truncation is fine: the message is advisory, the return code carries the error. */
	(void)vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	va_end(ap);
	err_owner = s;
}

const char *dw_store_errmsg(dw_store *s)
{
	if (!s)
		return open_msg;
	return err_owner == s ? err_msg : "";
}

/* Length of the checked part after "dw://", or -1. min_path is 1 for keys, 0 for prefixes. */
static int check_dw(const char *key, size_t min_path)
{
	size_t n;

	if (!key || strncmp(key, SCHEME, SCHEME_LEN) != 0)
		return -1;
	for (n = SCHEME_LEN; key[n] != '\0'; n++) {
		unsigned char c = (unsigned char)key[n];

		if (n >= DW_STORE_KEY_MAX || c < 0x21 || c > 0x7e)
			return -1;
	}
	if (n - SCHEME_LEN < min_path)
		return -1;
	return (int)n;
}

int dw_store_key_check(const char *key)
{
	return check_dw(key, 1) < 0 ? DW_EBADKEY : 0;
}

size_t dw__store_prefix_upper(const uint8_t *prefix, size_t len, uint8_t *out)
{
	while (len > 0 && prefix[len - 1] == 0xff)
		len--;
	if (len == 0)
		return 0;
	memcpy(out, prefix, len);
	out[len - 1]++;
	return len;
}

static bool has_prefix(const char *uri, const char *p)
{
	return strncmp(uri, p, strlen(p)) == 0;
}

int dw_store_open(const char *uri, dw_store **out)
{
	struct dw_store *s = NULL;
	int rc;

	open_msg[0] = '\0';
	if (out)
		*out = NULL;
	if (!uri || !out) {
		(void)snprintf(open_msg, sizeof(open_msg), "uri and out are required");
		return -EINVAL;
	}
	s = dw_calloc(1, sizeof(*s));
	if (!s) {
		(void)snprintf(open_msg, sizeof(open_msg), "out of memory");
		return -ENOMEM;
	}
	if (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://")) {
		rc = dw__store_pg_open(s, uri);
	} else if (has_prefix(uri, "sqlite:")) {
		rc = dw__store_sqlite_open(s, uri + strlen("sqlite:"));
	} else if (strstr(uri, "://") != NULL) {
		dw__store_set_errmsg(s, "unknown store URI scheme (want sqlite:PATH, a plain path "
					"or postgresql://...)");
		rc = DW_EUNSUPPORTED;
	} else {
		rc = dw__store_sqlite_open(s, uri);
	}
	if (rc < 0)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	if (s) {
		if (err_owner == s) {
			memcpy(open_msg, err_msg, sizeof(open_msg));
			err_owner = NULL;
		} else {
			(void)snprintf(open_msg, sizeof(open_msg), "%s", dw_strerror(rc));
		}
		dw_free(s);
	}
	return rc;
}

void dw_store_close(dw_store *s)
{
	if (!s)
		return;
	s->ops->close(s->impl);
	if (err_owner == s)
		err_owner = NULL;
	dw_free(s);
}

int dw_store_put(dw_store *s, const char *key, const void *val, size_t len)
{
	int klen;

	if (!s)
		return -EINVAL;
	klen = check_dw(key, 1);
	if (klen < 0)
		return DW_EBADKEY;
	if (len > DW_STORE_VALUE_MAX)
		return DW_ETOOBIG;
	if (!val && len > 0)
		return -EINVAL;
	return s->ops->put(s->impl, key, (size_t)klen, val ? val : "", len);
}

int dw_store_get(dw_store *s, const char *key, void **val, size_t *len)
{
	int klen;

	if (val)
		*val = NULL;
	if (len)
		*len = 0;
	if (!s || !val || !len)
		return -EINVAL;
	klen = check_dw(key, 1);
	if (klen < 0)
		return DW_EBADKEY;
	return s->ops->get(s->impl, key, (size_t)klen, val, len);
}

int dw_store_delete(dw_store *s, const char *key)
{
	int klen;

	if (!s)
		return -EINVAL;
	klen = check_dw(key, 1);
	if (klen < 0)
		return DW_EBADKEY;
	return s->ops->del(s->impl, key, (size_t)klen);
}

int dw__store_batch_add(struct dw__store_batch *b, const void *key, size_t klen, const void *val,
			size_t len)
{
	struct row *r;
	char *p;

	if (b->n >= DW__STORE_BATCH_ROWS)
		return 1; /* a backend that ignored the last 1; never store past the array */
	if (klen > DW_STORE_KEY_MAX || len > DW_STORE_VALUE_MAX)
		return DW_ECORRUPT; /* cannot come from this API: the file was edited */
	p = dw_malloc(klen + 1 + len + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, key, klen);
	p[klen] = '\0';
	if (len)
		memcpy(p + klen + 1, val, len);
	p[klen + 1 + len] = '\0';
	r = &b->rows[b->n++];
	r->key = p;
	r->klen = klen;
	r->val = p + klen + 1;
	r->vlen = len;
	b->bytes += klen + len;
	if (b->n >= DW__STORE_BATCH_ROWS || b->bytes >= DW__STORE_BATCH_BYTES) {
		b->full = true;
		return 1;
	}
	return 0;
}

static void batch_clear(struct dw__store_batch *b)
{
	for (unsigned i = 0; i < b->n; i++)
		dw_free(b->rows[i].key);
	b->n = 0;
	b->bytes = 0;
	b->full = false;
}

int dw_store_scan(dw_store *s, const char *prefix, dw_store_iter **out)
{
	struct dw_store_iter *it;
	int plen;

	if (out)
		*out = NULL;
	if (!s || !out)
		return -EINVAL;
	plen = check_dw(prefix, 0);
	if (plen < 0)
		return DW_EBADKEY;
	it = dw_calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->s = s;
	memcpy(it->from, prefix, (size_t)plen + 1);
	it->from_len = (size_t)plen;
	it->hi_len = dw__store_prefix_upper((const uint8_t *)prefix, (size_t)plen, it->hi);
	*out = it;
	return 0;
}

/* Fetch the next batch; 0 (possibly with no rows: the end) or a negative code. */
static int fetch(struct dw_store_iter *it)
{
	struct dw__store_batch *b = &it->batch;
	const struct row *last;
	int rc;

	batch_clear(b);
	it->pos = 0;
	rc = it->s->ops->scan_batch(it->s->impl, it->from, it->from_len, !it->started,
				    it->hi_len ? it->hi : NULL, it->hi_len, b);
	if (rc < 0) {
		/* Keep the position: a later call retries from the same key. */
		batch_clear(b);
		return rc;
	}
	if (!b->full)
		it->done = true;
	if (b->n == 0)
		return 0;
	last = &b->rows[b->n - 1];
	memcpy(it->from, last->key, last->klen + 1);
	it->from_len = last->klen;
	it->started = true;
	return 0;
}

int dw_store_iter_next(dw_store_iter *it, const char **key, const void **val, size_t *len)
{
	const struct row *r;
	int rc;

	if (!it)
		return -EINVAL;
	if (it->pos >= it->batch.n) {
		if (it->done) {
			batch_clear(&it->batch);
			it->pos = 0;
			return 0;
		}
		rc = fetch(it);
		if (rc < 0)
			return rc;
		if (it->batch.n == 0)
			return 0;
	}
	r = &it->batch.rows[it->pos++];
	if (key)
		*key = r->key;
	if (val)
		*val = r->val;
	if (len)
		*len = r->vlen;
	return 1;
}

void dw_store_iter_free(dw_store_iter *it)
{
	if (!it)
		return;
	batch_clear(&it->batch);
	dw_free(it);
}
