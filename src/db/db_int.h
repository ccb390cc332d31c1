/* SPDX-License-Identifier: MIT */
/*
 * Database storage: the strategy interface shared by the manager (db.c) and the backends
 * (sqlite.c, postgres.c).
 *
 * Data model, identical on every strategy:
 *
 *   objects   key (bytes, 1..1024, binary order) -> oid, size, content type, created/modified
 *             times (ns since the epoch), SHA-256 of the content, user metadata (JSON text)
 *   chunks    (oid, seq) -> data, at most DW__DB_ROW_MAX content bytes per row; seq counts from 0.
 *             An object written with row sums (objects.rowsums, every object written since schema
 *             version 2) stores each row as the XXH3-64 of its content (8 bytes, little-endian)
 *             followed by the content, so a reader checks every row before it hands on the row's
 *             last byte; older objects are checked against their SHA-256 at the end instead.
 *             Strategies store and return rows as opaque bytes; db.c adds and checks the sums.
 *   counts    prefix -> number of objects whose key starts with it, for every prefix of a key
 *             that ends in '/' and for "" (the whole set); kept in the write transaction
 *   totals    content bytes of all objects, and a generation bumped by every committed write
 *   pending   oid -> owner pid and start time of a put in progress
 *
 * Invariants:
 *   1. An oid is never reused, so chunks of one oid are one version of one object: a reader that
 *      holds an oid reads that version whole, or finds a chunk gone (DW_ECONFLICT), never a mix.
 *   2. An object row exists only once all its chunks are written: a put writes its chunks under a
 *      fresh oid listed in pending, then one transaction points the key at the oid, removes the
 *      old version's chunks, updates counts and clears pending. A crashed put leaves only
 *      unreferenced chunks, collected at the next open.
 *   3. counts[p] equals the number of object rows with prefix p, for every tracked p, after every
 *      committed transaction.
 */
#ifndef DW_DB_INT_H
#define DW_DB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dwscale/core.h"

#define DW__DB_KEY_MAX	      1024
#define DW__DB_ROW_MAX	      (256u << 10) /* content bytes per chunk row: see sqlite.c for why */
#define DW__DB_ROW_SUM	      8		   /* XXH3-64 in front of a row's content (row sums) */
#define DW__DB_ROW_STORED_MAX (DW__DB_ROW_MAX + DW__DB_ROW_SUM) /* bytes of a stored row */
#define DW__DB_CTYPE_MAX      255
#define DW__DB_META_MAX	      (64u << 10)

struct dw__db_info {
	uint8_t key[DW__DB_KEY_MAX];
	size_t key_len;
	int64_t oid;
	uint64_t size;
	uint64_t chunks;
	uint64_t created_ns, modified_ns;
	uint8_t sha256[32];
	bool row_sums; /* rows carry their XXH3-64 (see chunks above) */
	char content_type[DW__DB_CTYPE_MAX + 1];
	char *meta; /* dw_malloc'd JSON text or NULL; freed by dw__db_info_clear */
};

void dw__db_info_clear(struct dw__db_info *info);

/* Receives one listed object; return non-zero to stop the walk early. */
typedef int (*dw__db_list_fn)(void *arg, const struct dw__db_info *info);

struct dw__db_strategy;
struct dw__db_put;
struct dw__db_cursor;

struct dw__db_strategy_ops {
	const char *kind; /* "sqlite", "postgresql" */
	int (*open)(const char *uri, const dw_clock *clock, struct dw__db_strategy **out, char *err,
		    size_t errlen);
	void (*close)(struct dw__db_strategy *s);
	const char *(*errmsg)(struct dw__db_strategy *s);

	/* Streaming put: begin allocates an oid, chunk appends rows, commit publishes. */
	int (*put_begin)(struct dw__db_strategy *s, struct dw__db_put **out);
	int (*put_chunk)(struct dw__db_put *p, const void *data, size_t len);
	int (*put_commit)(struct dw__db_put *p, const struct dw__db_info *info);
	void (*put_abort)(struct dw__db_put *p); /* also frees p; commit frees p on success */

	int (*stat)(struct dw__db_strategy *s, const void *key, size_t klen,
		    struct dw__db_info *out);
	/* Read stored row seq of version oid into buf (cap >= DW__DB_ROW_STORED_MAX);
	 * DW_ECONFLICT if gone. */
	int (*read_chunk)(struct dw__db_strategy *s, int64_t oid, uint64_t seq, void *buf,
			  size_t cap, size_t *len);
	/*
	 * Optional cursor over the rows of one version, for a streaming get: read exactly len
	 * bytes at off within stored row seq straight into buf (the caller knows the row's
	 * length).
	 * DW_ECONFLICT if the version is gone. A cursor may keep a read snapshot across calls for
	 * a bounded number of rows (see sqlite.c), never for the whole object.
	 */
	int (*cursor_open)(struct dw__db_strategy *s, int64_t oid, struct dw__db_cursor **out);
	int (*cursor_read)(struct dw__db_cursor *c, uint64_t seq, uint64_t off, void *buf,
			   size_t len);
	void (*cursor_close)(struct dw__db_cursor *c);
	int (*remove)(struct dw__db_strategy *s, const void *key, size_t klen);
	/*
	 * Keys with the given prefix, strictly after `after` (NULL: from the start), in binary
	 * order, at most limit of them, each in one short read transaction.
	 */
	int (*list)(struct dw__db_strategy *s, const void *prefix, size_t plen, const void *after,
		    size_t alen, uint64_t modified_since_ns, size_t limit, dw__db_list_fn fn,
		    void *arg);
	/*
	 * Exact number of objects with the prefix (and modified >= since): from counts where
	 * tracked and since is 0, else by counting the index range.
	 */
	int (*count)(struct dw__db_strategy *s, const void *prefix, size_t plen, uint64_t since,
		     uint64_t *out);
	/* Object count, content bytes and write generation, from one snapshot. */
	int (*totals)(struct dw__db_strategy *s, uint64_t *objects, uint64_t *bytes,
		      uint64_t *generation);
	/* Cheap round trip for health checks. */
	int (*ping)(struct dw__db_strategy *s);
};

struct dw__db_strategy {
	const struct dw__db_strategy_ops *ops;
};

extern const struct dw__db_strategy_ops dw__db_sqlite_ops;
extern const struct dw__db_strategy_ops dw__db_postgres_ops;

/* ---- the manager's state, shared by db.c and list.c ---- */

#include <pthread.h>
#include <stdatomic.h>

#include "dwscale/db.h"

struct dw__db_health_worker;

struct dw__db_slot {
	char name[64];
	char uri[512];
	struct dw__db_strategy *s;
	struct dw__db_health_worker *health; /* started by the first check; db->health_lock */
};

struct dw_db {
	dw_db_config cfg;
	struct dw__db_slot slots[DW_DB_STRATEGIES_MAX];
	size_t n;
	dw_token_keyring *tokens; /* cfg.tokens, or own_tokens */
	dw_token_keyring *own_tokens;
	pthread_mutex_t health_lock; /* guards starting health workers */
	_Atomic uint64_t health_deadline_ms;
	_Atomic size_t chunk_size, buffer_cap; /* live limits */
	_Atomic size_t read_helpers;	       /* live limit: gets reading with two threads */
	_Atomic size_t helpers_active;	       /* such gets running now */
	dw_scalable scalable;
	dw_cache *qcache;			     /* NULL when disabled */
	_Atomic uint64_t qcache_hits, qcache_misses; /* pages served / computed (stale = miss) */
	_Atomic uint64_t readers_open;
	_Atomic uint64_t puts_total, gets_total, deletes_total, bytes_in_total, bytes_out_total;
};

extern _Thread_local char dw__db_err[768];
struct dw__db_slot *dw__db_slot_for(dw_db *db, const char *name);
int dw__db_fail(struct dw__db_slot *sl, int rc);
void dw__db_health_stop(struct dw__db_slot *slot);
/* Last recorded health of a strategy without running a check: 1 up, 0 down, -1 never checked. */
int dw__db_health_last(struct dw__db_slot *slot, uint64_t *consecutive_failures,
		       double *latency_ms);
void dw__db_info_to_object(const struct dw__db_info *in, dw_db_object *out);

/* Query cache (qcache.c). */
int dw__db_qcache_key(const char *strategy, const void *fp, size_t fplen, const char *token,
		      size_t limit, uint8_t out[32]);
int dw__db_qcache_encode(const dw_db_page *page, uint64_t generation, void **out, size_t *len);
/* DW_ENOTFOUND for a stale entry, DW_ECORRUPT for a malformed one. */
int dw__db_qcache_decode(const void *buf, size_t len, uint64_t generation, dw_db_page *page);

/* Upper bound of the key range with prefix p: the smallest key greater than every key with that
 * prefix. Returns its length, or 0 if there is none (prefix empty or all 0xff). */
size_t dw__db_prefix_end(const void *prefix, size_t plen, uint8_t *out);

#endif
