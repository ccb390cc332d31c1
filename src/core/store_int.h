/* SPDX-License-Identifier: MIT */
/*
 * dw_store internals: the backend vtable and the helpers store.c gives to backends.
 *
 * store.c owns everything a caller sees: key validation, the value size cap, the iterator and
 * its batching, the per-thread error message. A backend only moves bytes: put, get, delete one
 * key, and fetch one bounded batch of rows in key byte order. So a new backend (PostgreSQL, in
 * src/db/store_pg.c) is one file that fills a struct dw__store_ops, and nothing that calls
 * dw_store_* changes.
 *
 * Backend contract
 *   1. Every op is called with keys already validated (dw_store_key_check) and values already
 *      within DW_STORE_VALUE_MAX. Keys are compared as bytes (memcmp order, shorter first).
 *   2. put is durable when it returns 0.
 *   3. scan_batch runs as one short read transaction and holds nothing when it returns: it
 *      hands rows with (from < key, or from <= key if from_incl) and key < hi to
 *      dw__store_batch_add() in ascending key order until that returns 1 (batch full) or the
 *      rows run out. hi == NULL means no upper bound.
 *   4. On failure an op returns a negative code and may record the backend's text with
 *      dw__store_set_errmsg(); it never returns a positive value.
 *   5. The ops must be safe to call from several threads at once (the backend locks).
 *
 * The PostgreSQL backend lives with the db subsystem (src/db/store_pg.c); store.c calls
 * dw__store_pg_open() for "postgresql://" and "postgres://" URIs.
 */
#ifndef DW_CORE_STORE_INT_H
#define DW_CORE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dwscale/store.h"

/* Rows fetched per scan batch; each batch is one short read transaction. */
#define DW__STORE_BATCH_ROWS 64
/*
 * Bytes (keys + values) a batch stops growing at. A batch always takes at least one row, so a
 * batch holds at most this plus one maximal value.
 */
#define DW__STORE_BATCH_BYTES (4u << 20)
/* Longest backend message kept for dw_store_errmsg(). */
#define DW__STORE_ERRMSG_MAX 512

struct dw__store_batch;

struct dw__store_ops {
	const char *name; /* "sqlite", "postgresql" */
	int (*put)(void *impl, const char *key, size_t klen, const void *val, size_t len);
	/* *val from dw_malloc, NUL-terminated past len. DW_ENOTFOUND if absent. */
	int (*get)(void *impl, const char *key, size_t klen, void **val, size_t *len);
	/* DW_ENOTFOUND if absent. */
	int (*del)(void *impl, const char *key, size_t klen);
	int (*scan_batch)(void *impl, const char *from, size_t from_len, bool from_incl,
			  const uint8_t *hi, size_t hi_len, struct dw__store_batch *b);
	void (*close)(void *impl);
};

struct dw_store {
	const struct dw__store_ops *ops; /* immutable after open */
	void *impl;			 /* the backend's state, immutable pointer */
};

/*
 * Append one row to a batch (copies key and value). Returns 0 to continue, 1 when the batch is
 * full (the row was taken; stop fetching), or -ENOMEM (the row was not taken).
 */
int dw__store_batch_add(struct dw__store_batch *b, const void *key, size_t klen, const void *val,
			size_t len);

/* Record a backend message for dw_store_errmsg(s) on this thread (printf-style, truncated). */
void dw__store_set_errmsg(const struct dw_store *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The smallest byte string greater than every string that starts with prefix[0..len): drop
 * trailing 0xff bytes, then add one to the last byte. Writes it to out (capacity >= len) and
 * returns its length, or 0 when there is no such bound (prefix empty or all 0xff).
 */
size_t dw__store_prefix_upper(const uint8_t *prefix, size_t len, uint8_t *out);

/* Backends. Each fills s->ops and s->impl; on failure leaves them NULL and records a message. */
int dw__store_sqlite_open(struct dw_store *s, const char *path);
int dw__store_pg_open(struct dw_store *s, const char *uri);

#endif
