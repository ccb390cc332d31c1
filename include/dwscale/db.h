/* SPDX-License-Identifier: MIT */
/*
 * Database storage: objects (key -> content of any size + metadata) on SQLite or PostgreSQL,
 * streamed in and out at bounded memory, listed by pages with signed continuation tokens.
 *
 * A dw_db holds one or more named strategies ("main=sqlite:/var/dw/objects.db",
 * "pg=postgresql://..."). Calls name a strategy, or pass NULL for the default (the first).
 *
 * Keys are 1..1024 bytes of UTF-8 without NUL. Content is stored in chunk rows; memory used by a
 * get or put never depends on the object's size.
 *
 * Threads: a dw_db is thread-safe. A dw_db_reader belongs to one thread at a time.
 */
#ifndef DWSCALE_DB_H
#define DWSCALE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bbuf.h"
#include "cache.h"
#include "core.h"
#include "error.h"
#include "scalable.h"
#include "token.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DW_DB_KEY_MAX	     1024
#define DW_DB_STRATEGIES_MAX 8

typedef struct dw_db dw_db;
typedef struct dw_db_reader dw_db_reader;

typedef struct dw_db_config {
	/* "NAME=URI" or a bare URI (named "main"); URIs: sqlite:PATH or postgresql://... */
	const char *strategies[DW_DB_STRATEGIES_MAX];
	size_t n_strategies;
	size_t chunk_size;	     /* bytes per streamed chunk; default 64 KiB */
	size_t buffer_cap;	     /* bytes a streaming get may buffer; default 64 MiB */
	uint64_t health_deadline_ms; /* default 5000 */
	bool verify_reads;	     /* check each row's checksum as it is read; default true */
	/* Streaming gets that may read their rows with two threads at once (a second core
	 * copying rows out; see db.c); default: online CPUs, at most 8; 0: one thread each. */
	size_t read_helpers;
	const dw_clock *clock; /* NULL = real */
	/* Signs listing tokens; NULL: a random in-memory key (tokens die with the handle). */
	dw_token_keyring *tokens;
	uint64_t token_ttl_ms; /* default 72 h; 0 = tokens never expire */
	/* Query-result cache of listing pages: entries (0 disables it) and bytes, and an optional
	 * store it writes through to (survives restarts; several nodes may share it). */
	size_t cache_entries; /* default 1024 */
	size_t cache_bytes;   /* default 16 MiB */
	dw_store *cache_store;
} dw_db_config;

void dw_db_config_default(dw_db_config *cfg);
/* Opens every strategy; on failure, dw_db_open_error() is not available: err gets the reason. */
int dw_db_open(const dw_db_config *cfg, dw_db **out, char *err, size_t errlen);
void dw_db_close(dw_db *db);
/* Detail of the last failure on this thread (names the strategy and backend message). */
const char *dw_db_errmsg(dw_db *db);

typedef struct dw_db_object {
	uint8_t key[DW_DB_KEY_MAX];
	size_t key_len;
	uint64_t size;
	uint64_t created_ns, modified_ns; /* wall clock, ns since the epoch */
	uint8_t sha256[32];
	char content_type[256];
	char *meta; /* JSON text or NULL; release with dw_db_object_clear */
} dw_db_object;

void dw_db_object_clear(dw_db_object *o);
/* 0 if key is acceptable, else DW_EBADKEY. */
int dw_db_key_check(const void *key, size_t klen);

typedef struct dw_db_put_opts {
	const char *content_type; /* NULL: application/octet-stream */
	const char *meta;	  /* JSON object text or NULL; at most 64 KiB */
} dw_db_put_opts;

/*
 * Store everything src yields under key, atomically: the object is visible only once complete,
 * and a failed or crashed put leaves nothing visible. src is read to its end, not closed.
 * On success *out (if not NULL) describes the new object.
 */
int dw_db_put(dw_db *db, const char *strategy, const void *key, size_t klen, dw_source *src,
	      const dw_db_put_opts *opts, dw_db_object *out);

int dw_db_stat(dw_db *db, const char *strategy, const void *key, size_t klen, dw_db_object *out);
/* DW_ENOTFOUND if absent. */
int dw_db_delete(dw_db *db, const char *strategy, const void *key, size_t klen);

/*
 * Chunk iterator (pull): dw_db_reader_next returns 1 with the next chunk (valid until the next
 * call), 0 at the end, or a negative code; DW_ECONFLICT if the object was overwritten or deleted
 * since the reader opened (never a mix of versions). The SHA-256 of the content is checked at
 * the end: a mismatch gives DW_ECORRUPT instead of 0.
 */
int dw_db_reader_open(dw_db *db, const char *strategy, const void *key, size_t klen,
		      dw_db_object *info, dw_db_reader **out);
int dw_db_reader_next(dw_db_reader *r, const void **chunk, size_t *len);
void dw_db_reader_close(dw_db_reader *r);

/*
 * Streaming get: the reader above behind a dw_bbuf (a producer thread fills chunk_size chunks up
 * to buffer_cap, under the process-wide memory budget). *info describes the object.
 */
int dw_db_get(dw_db *db, const char *strategy, const void *key, size_t klen, dw_db_object *info,
	      dw_bbuf **out);

/* The manager's IScalableSubsystem ("db"); valid until dw_db_close. */
const dw_scalable *dw_db_scalable(dw_db *db);

/* ---- health ------------------------------------------------------------------------------- */

typedef struct dw_db_health {
	char name[64];
	char kind[16]; /* "sqlite", "postgresql" */
	bool ok;
	int rc;			       /* 0, DW_ETIMEDOUT, or the backend's error */
	double latency_ms;	       /* of the last answer; -1 when timed out */
	uint64_t consecutive_failures; /* reset by a success */
	uint64_t checks, failures;
	char last_error[256]; /* names the strategy's backend message; "" when ok */
} dw_db_health;

/*
 * Check every strategy at once and wait at most deadline_ms (0: the configured deadline, 5 s by
 * default). A strategy that has not answered by then is reported DW_ETIMEDOUT; the call returns
 * at the deadline whatever the backends do. out needs room for every strategy (-ENOSPC).
 */
int dw_db_health_check(dw_db *db, uint64_t deadline_ms, dw_db_health *out, size_t cap, size_t *n);

/* ---- listing ------------------------------------------------------------------------------ */

#define DW_DB_PAGE_MAX	   1000
#define DW_DB_PAGE_DEFAULT 100

typedef struct dw_db_list_query {
	const void *prefix; /* NULL or bytes every listed key starts with */
	size_t prefix_len;
	uint64_t modified_since_ns; /* 0 = no filter */
	size_t limit;		    /* 1..DW_DB_PAGE_MAX; 0 = DW_DB_PAGE_DEFAULT */
	const char *page_token;	    /* NULL for the first page; v2 (keyset) or v1 (offset) */
} dw_db_list_query;

typedef struct dw_db_page {
	dw_db_object *items;
	size_t n;
	uint64_t total; /* exact number of objects matching the query (all pages) */
	bool has_more;
	char *next_token; /* v2 token for the next page, NULL if none */
} dw_db_page;

/*
 * One page, in binary key order. A v2 token resumes after the last key of the previous page, so
 * a key present for the whole walk appears exactly once while others come and go, and page N
 * costs what page 1 costs. A token from another query, node key or an expired one gives
 * DW_ETOKEN (dw_db_errmsg says why). total comes from counters kept in the write transaction for
 * "" and prefixes ending in '/', else from an index range count.
 */
int dw_db_list(dw_db *db, const char *strategy, const dw_db_list_query *q, dw_db_page *out);
void dw_db_page_clear(dw_db_page *p);

/* Exact number of objects with the prefix (NULL/0: all): the same total a listing reports. */
int dw_db_count(dw_db *db, const char *strategy, const void *prefix, size_t plen, uint64_t *out);

/*
 * Streaming listing of every match at constant memory: re-seeks by key in batches, each its own
 * short read transaction. next returns 1 with *o (valid until the next call), 0 at the end.
 */
typedef struct dw_db_lister dw_db_lister;
int dw_db_lister_open(dw_db *db, const char *strategy, const void *prefix, size_t plen,
		      uint64_t modified_since_ns, dw_db_lister **out);
int dw_db_lister_next(dw_db_lister *l, const dw_db_object **o);
void dw_db_lister_close(dw_db_lister *l);

/*
 * Streaming get of the bytes from offset to the end (for HTTP Range). Not checked against the
 * SHA-256 (that covers the whole object); DW_ELIMIT if offset > size.
 */
int dw_db_get_range(dw_db *db, const char *strategy, const void *key, size_t klen, uint64_t offset,
		    dw_db_object *info, dw_bbuf **out);

#ifdef __cplusplus
}
#endif
#endif
