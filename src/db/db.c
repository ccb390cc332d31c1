// SPDX-License-Identifier: MIT
/*
 * The database storage manager: named strategies, streaming put and get, the chunk iterator.
 *
 * A put reads its source one row (DW__DB_ROW_MAX) at a time, hashing as it goes, and hands
 * full rows to the strategy, so its memory is one row plus the strategy's small write batch,
 * whatever the object's size. Each row is stored behind its XXH3-64 (db_int.h, "row sums").
 *
 * Verified reads (verify_reads, on by default) check every row against its sum before the
 * row's last byte is handed on: a damaged row stops the get with DW_ECORRUPT within one row
 * (256 KiB), never after the whole object has been served, and a ranged get is checked too.
 * XXH3 runs at tens of GB/s (`xxhsum -b`, docs/formats/objects.md), so checking costs little; the
 * SHA-256 of the content (the object's identity, ETag) is computed once, at put. Objects written
 * before row sums existed are checked against their SHA-256 at the end instead, as before. A get
 * walks the rows of the version (oid) it found at open; each row is its own short read, so no
 * transaction spans the walk, and a concurrent overwrite shows up as DW_ECONFLICT (db_int.h,
 * invariant 1), never as a mix of versions.
 *
 * Threads and locking: the strategy table is fixed after open and read without a lock; each
 * strategy is thread-safe on its own. Counters are C11 atomics (relaxed: they are statistics).
 * A reader is owned by one thread at a time (the bbuf producer, for a streaming get), except
 * that a parallel get's workers call reader_read_part at once: each touches only its own cursor
 * and XXH3 state (wcur[w], wxs[w]) besides fields fixed before the stream started.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
/*
 * XXH3 at the widest vectors the CPU has (AVX2, AVX-512), chosen at run time by libxxhash:
 * the plain entry points run its SSE2 code whatever the CPU (what it changed for a get and
 * a put: README, bench/db.sh).
 */
#include <xxh_x86dispatch.h>
#endif

#include "db_int.h"
#include "dwscale/db.h"

#define GET_WORKERS 2 /* rows read at once by a streaming get with a helper (read_part) */

struct dw_db_reader {
	dw_db *db;
	struct dw__db_slot *slot;
	struct dw__db_info info;
	uint64_t seq;
	uint64_t delivered;
	uint8_t *row;		      /* stored row (row path), dw_malloc'd on first use */
	const uint8_t *row_data;      /* its content: row, or row + DW__DB_ROW_SUM */
	size_t row_len, row_off;      /* content bytes of the row, and bytes of it consumed */
	EVP_MD_CTX *md;		      /* SHA-256 of the whole content (objects without row sums) */
	XXH3_state_t *xs;	      /* the current row's XXH3 (cursor path, verified reads) */
	uint64_t row_want;	      /* the current row's stored sum (cursor path) */
	bool row_started;	      /* cursor path: header of row seq handled */
	size_t skip;		      /* bytes of the first row to skip (ranged reads) */
	struct dw__db_cursor *cursor; /* streaming get on a strategy with cursors */
	int err;		      /* sticky */
	/* Parallel rows (read_part): the first row of the get and the bytes to skip in it, a
	 * cursor and an XXH3 state per worker, and whether the get holds a read_helpers slot. */
	uint64_t first;
	size_t first_skip;
	struct dw__db_cursor *wcur[GET_WORKERS];
	XXH3_state_t *wxs[GET_WORKERS];
	bool helper;
};

_Thread_local char dw__db_err[768];
#define tls_err dw__db_err

const char *dw_db_errmsg(dw_db *db)
{
	(void)db;
	return tls_err;
}

void dw_db_config_default(dw_db_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->chunk_size = 64u << 10;
	cfg->buffer_cap = 64u << 20;
	cfg->health_deadline_ms = 5000;
	cfg->verify_reads = true;
	{
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		cfg->read_helpers = cpus < 1 ? 1 : cpus > 8 ? 8 : (size_t)cpus;
	}
	cfg->token_ttl_ms = DW_TOKEN_TTL_DEFAULT_MS;
	cfg->cache_entries = 1024;
	cfg->cache_bytes = 16u << 20;
}

static const struct dw__db_strategy_ops *ops_for(const char *uri)
{
	if (strncmp(uri, "sqlite:", 7) == 0)
		return &dw__db_sqlite_ops;
	if (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0)
		return &dw__db_postgres_ops;
	return NULL;
}

/* ---- IScalableSubsystem ------------------------------------------------------------------- */

#define LIMIT_CHUNK    0
#define LIMIT_CAP      1
#define LIMIT_DEADLINE 2
#define LIMIT_CACHE    3
#define LIMIT_HELPERS  4

static const dw_limit db_limits[] = {
	{ .name = "chunk_size",
	  .min = 4096,
	  .max = 16 << 20,
	  .unit = "bytes",
	  .help = "bytes per streamed chunk of a get" },
	{ .name = "buffer_cap",
	  .min = 4096,
	  .max = 1u << 30,
	  .unit = "bytes",
	  .help = "most bytes one streaming get may buffer" },
	{ .name = "health_deadline_ms",
	  .min = 10,
	  .max = 600000,
	  .unit = "ms",
	  .help = "how long a health check waits for every strategy" },
	{ .name = "cache_entries",
	  .min = 1,
	  .max = 10000000,
	  .unit = "",
	  .help = "listing pages the query cache holds" },
	{ .name = "read_helpers",
	  .min = 0,
	  .max = 256,
	  .unit = "",
	  .help = "streaming gets that may read their rows with two threads at once" },
};

static int db_limits_fn(void *self, dw_limit_fn fn, void *arg)
{
	dw_db *db = self;
	dw_limit l;

	l = db_limits[LIMIT_CHUNK];
	l.value = (double)atomic_load_explicit(&db->chunk_size, memory_order_relaxed);
	fn(arg, &l);
	l = db_limits[LIMIT_CAP];
	l.value = (double)atomic_load_explicit(&db->buffer_cap, memory_order_relaxed);
	fn(arg, &l);
	l = db_limits[LIMIT_DEADLINE];
	l.value = (double)atomic_load_explicit(&db->health_deadline_ms, memory_order_relaxed);
	fn(arg, &l);
	l = db_limits[LIMIT_HELPERS];
	l.value = (double)atomic_load_explicit(&db->read_helpers, memory_order_relaxed);
	fn(arg, &l);
	if (db->qcache) {
		dw_cache_stats cs;

		dw_cache_stats_get(db->qcache, &cs);
		l = db_limits[LIMIT_CACHE];
		l.value = (double)cs.max_entries;
		fn(arg, &l);
	}
	return 0;
}

static int db_reconfigure(void *self, const dw_limit_change *c, size_t n, char *err, size_t errlen)
{
	dw_db *db = self;
	size_t chunk = atomic_load_explicit(&db->chunk_size, memory_order_relaxed);
	size_t cap = atomic_load_explicit(&db->buffer_cap, memory_order_relaxed);
	uint64_t deadline = atomic_load_explicit(&db->health_deadline_ms, memory_order_relaxed);
	size_t cache = 0;
	size_t helpers = atomic_load_explicit(&db->read_helpers, memory_order_relaxed);
	dw_cache_stats cs;
	int rc;

	for (size_t i = 0; i < n; i++) {
		size_t which = SIZE_MAX;

		for (size_t j = 0; j < sizeof(db_limits) / sizeof(db_limits[0]); j++) {
			if (strcmp(c[i].name, db_limits[j].name) == 0)
				which = j;
		}
		if (which == SIZE_MAX || (which == LIMIT_CACHE && !db->qcache)) {
			snprintf(err, errlen, "db has no limit named %s", c[i].name);
			return DW_ELIMIT;
		}
		rc = dw_limit_check(&db_limits[which], &c[i], true, err, errlen);
		if (rc < 0)
			return rc;
		if (which == LIMIT_CHUNK)
			chunk = (size_t)c[i].value;
		else if (which == LIMIT_CAP)
			cap = (size_t)c[i].value;
		else if (which == LIMIT_CACHE)
			cache = (size_t)c[i].value;
		else if (which == LIMIT_HELPERS)
			helpers = (size_t)c[i].value;
		else
			deadline = (uint64_t)c[i].value;
	}
	if (cap < chunk) {
		snprintf(err, errlen, "db buffer_cap (%zu) must be at least chunk_size (%zu)", cap,
			 chunk);
		return DW_ELIMIT;
	}
	/* Streams already open keep their sizes; new ones use these. */
	atomic_store_explicit(&db->chunk_size, chunk, memory_order_relaxed);
	atomic_store_explicit(&db->buffer_cap, cap, memory_order_relaxed);
	atomic_store_explicit(&db->health_deadline_ms, deadline, memory_order_relaxed);
	atomic_store_explicit(&db->read_helpers, helpers, memory_order_relaxed); /* new gets */
	if (cache) {
		dw_cache_stats_get(db->qcache, &cs);
		rc = dw_cache_resize(db->qcache, cache, cs.max_bytes);
		if (rc < 0) {
			snprintf(err, errlen, "db cache_entries: %s", dw_strerror(rc));
			return rc;
		}
	}
	return 0;
}

static void emit(dw_metric_fn fn, void *arg, const char *name, const char *labels, double v,
		 const char *unit, const char *help, dw_metric_kind kind)
{
	dw_metric m = {
		.name = name, .labels = labels, .value = v, .unit = unit, .help = help, .kind = kind
	};

	fn(arg, &m);
}

static int db_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_db *db = self;
	size_t streams, held;

	for (size_t i = 0; i < db->n; i++) {
		struct dw__db_slot *sl = &db->slots[i];
		uint64_t objects, bytes, gen, fails;
		double lat;
		char labels[96];
		int up;

		snprintf(labels, sizeof(labels), "strategy=\"%s\",kind=\"%s\"", sl->name,
			 sl->s->ops->kind);
		if (sl->s->ops->totals(sl->s, &objects, &bytes, &gen) == 0) {
			emit(fn, arg, "objects", labels, (double)objects, "",
			     "objects stored, from the counter kept in each write",
			     DW_METRIC_GAUGE);
			emit(fn, arg, "stored_bytes", labels, (double)bytes, "bytes",
			     "content bytes of all objects", DW_METRIC_GAUGE);
		}
		up = dw__db_health_last(sl, &fails, &lat);
		emit(fn, arg, "health_up", labels, up < 0 ? 1 : up, "",
		     "1 if the last health check passed (or none ran yet)", DW_METRIC_GAUGE);
		emit(fn, arg, "health_consecutive_failures", labels, (double)fails, "",
		     "health checks failed in a row", DW_METRIC_GAUGE);
		emit(fn, arg, "health_latency_seconds", labels, lat / 1e3, "seconds",
		     "latency of the last answered health check", DW_METRIC_GAUGE);
	}
	if (db->qcache) {
		dw_cache_stats cs;

		dw_cache_stats_get(db->qcache, &cs);
		emit(fn, arg, "cache_hits_total", NULL,
		     (double)atomic_load_explicit(&db->qcache_hits, memory_order_relaxed), "",
		     "listing pages served from the query cache", DW_METRIC_COUNTER);
		emit(fn, arg, "cache_misses_total", NULL,
		     (double)atomic_load_explicit(&db->qcache_misses, memory_order_relaxed), "",
		     "listing pages computed (not cached, or stale)", DW_METRIC_COUNTER);
		emit(fn, arg, "cache_entries", NULL, (double)cs.entries, "",
		     "listing pages in the query cache", DW_METRIC_GAUGE);
	}
	dw_bbuf_global_stats(&streams, &held);
	emit(fn, arg, "readers_open", NULL,
	     (double)atomic_load_explicit(&db->readers_open, memory_order_relaxed), "",
	     "object readers open (streaming gets and chunk iterators)", DW_METRIC_GAUGE);
	emit(fn, arg, "read_helpers_active", NULL,
	     (double)atomic_load_explicit(&db->helpers_active, memory_order_relaxed), "",
	     "streaming gets reading their rows with two threads now", DW_METRIC_GAUGE);
	emit(fn, arg, "stream_buffer_bytes", NULL, (double)held, "bytes",
	     "bytes held by all bounded buffer streams of the process", DW_METRIC_GAUGE);
	emit(fn, arg, "streams_open", NULL, (double)streams, "",
	     "bounded buffer streams open in the process", DW_METRIC_GAUGE);
	emit(fn, arg, "puts_total", NULL,
	     (double)atomic_load_explicit(&db->puts_total, memory_order_relaxed), "",
	     "objects written", DW_METRIC_COUNTER);
	emit(fn, arg, "gets_total", NULL,
	     (double)atomic_load_explicit(&db->gets_total, memory_order_relaxed), "",
	     "object reads started", DW_METRIC_COUNTER);
	emit(fn, arg, "deletes_total", NULL,
	     (double)atomic_load_explicit(&db->deletes_total, memory_order_relaxed), "",
	     "objects deleted", DW_METRIC_COUNTER);
	emit(fn, arg, "received_bytes_total", NULL,
	     (double)atomic_load_explicit(&db->bytes_in_total, memory_order_relaxed), "bytes",
	     "content bytes written by puts", DW_METRIC_COUNTER);
	emit(fn, arg, "sent_bytes_total", NULL,
	     (double)atomic_load_explicit(&db->bytes_out_total, memory_order_relaxed), "bytes",
	     "content bytes read by gets", DW_METRIC_COUNTER);
	return 0;
}

static dw_bp_state db_state(void *self)
{
	dw_db *db = self;
	dw_bp_state st = DW_BP_NORMAL;

	for (size_t i = 0; i < db->n; i++) {
		uint64_t fails;
		double lat;

		if (dw__db_health_last(&db->slots[i], &fails, &lat) == 0)
			st = i == 0 ? DW_BP_CRITICAL : (st < DW_BP_WARNING ? DW_BP_WARNING : st);
	}
	return st;
}

static const dw_scalable_ops db_scalable_ops = {
	.metrics = db_metrics,
	.limits = db_limits_fn,
	.reconfigure = db_reconfigure,
	.state = db_state,
};

const dw_scalable *dw_db_scalable(dw_db *db)
{
	return &db->scalable;
}

int dw_db_open(const dw_db_config *cfg, dw_db **out, char *err, size_t errlen)
{
	dw_db *db;
	int rc = 0;

	*out = NULL;
	if (cfg->n_strategies == 0 || cfg->n_strategies > DW_DB_STRATEGIES_MAX) {
		snprintf(err, errlen, "db: need 1 to %d strategies, got %zu", DW_DB_STRATEGIES_MAX,
			 cfg->n_strategies);
		return DW_ECONFIG;
	}
	if (cfg->chunk_size < 4096 || cfg->chunk_size > (16u << 20) ||
	    cfg->buffer_cap < cfg->chunk_size) {
		snprintf(err, errlen, "db: chunk_size must be 4 KiB..16 MiB and <= buffer_cap");
		return DW_ECONFIG;
	}
	db = dw_calloc(1, sizeof(*db));
	if (!db)
		return -ENOMEM;
	db->cfg = *cfg;
	pthread_mutex_init(&db->health_lock, NULL);
	atomic_init(&db->health_deadline_ms, cfg->health_deadline_ms);
	atomic_init(&db->chunk_size, cfg->chunk_size);
	atomic_init(&db->buffer_cap, cfg->buffer_cap);
	atomic_init(&db->read_helpers, cfg->read_helpers);
	atomic_init(&db->helpers_active, 0);
	db->tokens = cfg->tokens;
	if (!db->tokens) {
		uint8_t secret[32];

		if (RAND_bytes(secret, sizeof(secret)) != 1) {
			rc = DW_EBACKEND;
			goto fail;
		}
		rc = dw_token_keyring_open_mem(secret, sizeof(secret), 1, cfg->clock,
					       &db->own_tokens);
		OPENSSL_cleanse(secret, sizeof(secret));
		if (rc < 0)
			goto fail;
		db->tokens = db->own_tokens;
	}
	for (size_t i = 0; i < cfg->n_strategies; i++) {
		struct dw__db_slot *sl = &db->slots[i];
		const char *spec = cfg->strategies[i], *eq = strchr(spec, '='),
			   *colon = strchr(spec, ':');
		const char *uri = spec;
		const struct dw__db_strategy_ops *ops;
		char serr[512] = "";

		if (eq && colon && eq < colon && eq != spec) {
			if ((size_t)(eq - spec) >= sizeof(sl->name)) {
				snprintf(err, errlen, "db: strategy name too long in '%s'", spec);
				rc = DW_ECONFIG;
				goto fail;
			}
			memcpy(sl->name, spec, (size_t)(eq - spec));
			uri = eq + 1;
		} else {
			snprintf(sl->name, sizeof(sl->name), i == 0 ? "main" : "s%zu", i);
		}
		if (snprintf(sl->uri, sizeof(sl->uri), "%s", uri) >= (int)sizeof(sl->uri)) {
			snprintf(err, errlen, "db: strategy URI too long");
			rc = DW_ECONFIG;
			goto fail;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(db->slots[j].name, sl->name) == 0) {
				snprintf(err, errlen, "db: strategy name '%s' used twice",
					 sl->name);
				rc = DW_ECONFIG;
				goto fail;
			}
		}
		ops = ops_for(uri);
		if (!ops) {
			snprintf(err, errlen,
				 "db: strategy %s: unsupported URI '%s' (use sqlite:PATH or "
				 "postgresql://...)",
				 sl->name, uri);
			rc = DW_ECONFIG;
			goto fail;
		}
		rc = ops->open(uri, cfg->clock, &sl->s, serr, sizeof(serr));
		if (rc < 0) {
			snprintf(err, errlen, "db: strategy %s: %s", sl->name, serr);
			goto fail;
		}
		db->n++;
	}
	if (cfg->cache_entries) {
		dw_cache_config cc;

		dw_cache_config_default(&cc);
		cc.max_entries = cfg->cache_entries;
		cc.max_bytes = cfg->cache_bytes;
		cc.store = cfg->cache_store;
		cc.store_prefix = "dw://cache/db/";
		cc.clock = cfg->clock;
		cc.name = "db_cache";
		rc = dw_cache_open(&cc, &db->qcache);
		if (rc < 0) {
			snprintf(err, errlen, "db: cannot open the query cache: %s",
				 dw_strerror(rc));
			goto fail;
		}
	}
	db->scalable.name = "db";
	db->scalable.ops = &db_scalable_ops;
	db->scalable.self = db;
	*out = db;
	return 0;
fail:
	dw_db_close(db);
	return rc;
}

void dw_db_close(dw_db *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->n; i++)
		dw__db_health_stop(&db->slots[i]);
	for (size_t i = 0; i < db->n; i++)
		db->slots[i].s->ops->close(db->slots[i].s);
	pthread_mutex_destroy(&db->health_lock);
	dw_token_keyring_close(db->own_tokens);
	dw_cache_close(db->qcache);
	dw_free(db);
}

struct dw__db_slot *dw__db_slot_for(dw_db *db, const char *name)
{
	if (!name)
		return &db->slots[0];
	for (size_t i = 0; i < db->n; i++) {
		if (strcmp(db->slots[i].name, name) == 0)
			return &db->slots[i];
	}
	snprintf(tls_err, sizeof(tls_err), "db: no strategy named '%s'", name);
	return NULL;
}

/* Record the backend's message, naming the strategy. */
int dw__db_fail(struct dw__db_slot *sl, int rc)
{
	if (rc != DW_ENOTFOUND)
		snprintf(tls_err, sizeof(tls_err), "db: strategy %s: %s", sl->name,
			 sl->s->ops->errmsg(sl->s));
	else
		snprintf(tls_err, sizeof(tls_err), "db: no such key");
	return rc;
}

/* Keys are 1..1024 bytes of UTF-8 without NUL (overlong forms and surrogates refused). */
int dw_db_key_check(const void *key, size_t klen)
{
	const uint8_t *p = key;
	size_t i = 0;

	if (!key || klen == 0 || klen > DW_DB_KEY_MAX)
		return DW_EBADKEY;
	while (i < klen) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp;

		if (c == 0)
			return DW_EBADKEY;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return DW_EBADKEY;
		}
		if (i + n >= klen)
			return DW_EBADKEY;
		for (size_t j = 1; j <= n; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return DW_EBADKEY;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return DW_EBADKEY;
		i += n + 1;
	}
	return 0;
}

void dw_db_object_clear(dw_db_object *o)
{
	if (!o)
		return;
	dw_free(o->meta);
	o->meta = NULL;
}

void dw__db_info_to_object(const struct dw__db_info *in, dw_db_object *out)
{
	memcpy(out->key, in->key, in->key_len);
	out->key_len = in->key_len;
	out->size = in->size;
	out->created_ns = in->created_ns;
	out->modified_ns = in->modified_ns;
	memcpy(out->sha256, in->sha256, 32);
	snprintf(out->content_type, sizeof(out->content_type), "%s", in->content_type);
	out->meta = in->meta ? dw_strdup(in->meta) : NULL;
}

/* Row sums (db_int.h): XXH3-64 of the content, little-endian, in front of it. */
static void row_sum_store(uint8_t *out, const void *data, size_t len)
{
	uint64_t v = XXH3_64bits(data, len);

	for (int i = 0; i < DW__DB_ROW_SUM; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t row_sum_load(const uint8_t *in)
{
	uint64_t v = 0;

	for (int i = DW__DB_ROW_SUM - 1; i >= 0; i--)
		v = v << 8 | in[i];
	return v;
}

/* Read until buf is full or the source ends; returns bytes read or a negative code. */
static ssize_t read_full(dw_source *src, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = src->read(src->ctx, buf + got, len - got);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int dw_db_put(dw_db *db, const char *strategy, const void *key, size_t klen, dw_source *src,
	      const dw_db_put_opts *opts, dw_db_object *out)
{
	struct dw__db_slot *sl;
	struct dw__db_put *p = NULL;
	struct dw__db_info *info = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t *row = NULL;
	const char *ctype =
		opts && opts->content_type ? opts->content_type : "application/octet-stream";
	const char *meta = opts ? opts->meta : NULL;
	unsigned int mdlen;
	int rc;

	rc = dw_db_key_check(key, klen);
	if (rc < 0) {
		snprintf(tls_err, sizeof(tls_err),
			 "db: key must be 1..1024 bytes of UTF-8 without NUL");
		return rc;
	}
	if (strlen(ctype) > DW__DB_CTYPE_MAX || (meta && strlen(meta) > DW__DB_META_MAX)) {
		snprintf(tls_err, sizeof(tls_err),
			 "db: content type over 255 bytes or metadata over 64 KiB");
		return DW_ETOOBIG;
	}
	sl = dw__db_slot_for(db, strategy);
	if (!sl)
		return DW_ENOTFOUND;
	info = dw_calloc(1, sizeof(*info));
	row = dw_malloc(DW__DB_ROW_STORED_MAX);
	md = EVP_MD_CTX_new();
	if (!info || !row || !md) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rc = DW_EBACKEND;
		goto out;
	}
	rc = sl->s->ops->put_begin(sl->s, &p);
	if (rc < 0) {
		dw__db_fail(sl, rc);
		goto out;
	}
	for (;;) {
		ssize_t n = read_full(src, row + DW__DB_ROW_SUM, DW__DB_ROW_MAX);

		if (n < 0) {
			rc = (int)n;
			snprintf(tls_err, sizeof(tls_err), "db: reading the source: %s",
				 dw_strerror(rc));
			goto out;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(md, row + DW__DB_ROW_SUM, (size_t)n);
		row_sum_store(row, row + DW__DB_ROW_SUM, (size_t)n);
		info->size += (uint64_t)n;
		rc = sl->s->ops->put_chunk(p, row, (size_t)n + DW__DB_ROW_SUM);
		if (rc < 0) {
			dw__db_fail(sl, rc);
			goto out;
		}
		if ((size_t)n < DW__DB_ROW_MAX)
			break;
	}
	EVP_DigestFinal_ex(md, info->sha256, &mdlen);
	info->row_sums = true;
	memcpy(info->key, key, klen);
	info->key_len = klen;
	snprintf(info->content_type, sizeof(info->content_type), "%s", ctype);
	info->created_ns = info->modified_ns = dw_clock_wall(db->cfg.clock);
	info->meta = (char *)meta;
	rc = sl->s->ops->put_commit(p, info);
	info->meta = NULL;
	if (rc < 0) {
		dw__db_fail(sl, rc);
		goto out;
	}
	p = NULL;
	atomic_fetch_add_explicit(&db->puts_total, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->bytes_in_total, info->size, memory_order_relaxed);
	if (out) {
		/* created_ns is kept from an overwritten object; read it back. */
		rc = dw_db_stat(db, strategy, key, klen, out);
	}
out:
	if (p)
		sl->s->ops->put_abort(p);
	EVP_MD_CTX_free(md);
	dw_free(row);
	dw_free(info);
	return rc;
}

int dw_db_stat(dw_db *db, const char *strategy, const void *key, size_t klen, dw_db_object *out)
{
	struct dw__db_slot *sl;
	struct dw__db_info info;
	int rc;

	if (dw_db_key_check(key, klen) < 0)
		return DW_EBADKEY;
	sl = dw__db_slot_for(db, strategy);
	if (!sl)
		return DW_ENOTFOUND;
	rc = sl->s->ops->stat(sl->s, key, klen, &info);
	if (rc < 0)
		return dw__db_fail(sl, rc);
	dw__db_info_to_object(&info, out);
	dw__db_info_clear(&info);
	return 0;
}

int dw_db_delete(dw_db *db, const char *strategy, const void *key, size_t klen)
{
	struct dw__db_slot *sl;
	int rc;

	if (dw_db_key_check(key, klen) < 0)
		return DW_EBADKEY;
	sl = dw__db_slot_for(db, strategy);
	if (!sl)
		return DW_ENOTFOUND;
	rc = sl->s->ops->remove(sl->s, key, klen);
	if (rc < 0)
		return dw__db_fail(sl, rc);
	atomic_fetch_add_explicit(&db->deletes_total, 1, memory_order_relaxed);
	return 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

int dw_db_reader_open(dw_db *db, const char *strategy, const void *key, size_t klen,
		      dw_db_object *info, dw_db_reader **out)
{
	dw_db_reader *r;
	int rc;

	*out = NULL;
	if (dw_db_key_check(key, klen) < 0)
		return DW_EBADKEY;
	r = dw_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->db = db;
	r->slot = dw__db_slot_for(db, strategy);
	if (!r->slot) {
		rc = DW_ENOTFOUND;
		goto fail;
	}
	rc = r->slot->s->ops->stat(r->slot->s, key, klen, &r->info);
	if (rc < 0) {
		dw__db_fail(r->slot, rc);
		goto fail;
	}
	/* r->row is allocated by the first dw_db_reader_next: a streaming get through a cursor
	 * never needs it. */
	if (db->cfg.verify_reads && r->info.row_sums) {
		r->xs = XXH3_createState();
		if (!r->xs) {
			rc = -ENOMEM;
			goto fail;
		}
	} else if (db->cfg.verify_reads) {
		r->md = EVP_MD_CTX_new();
		if (!r->md || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	if (info)
		dw__db_info_to_object(&r->info, info);
	atomic_fetch_add_explicit(&db->readers_open, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->gets_total, 1, memory_order_relaxed);
	*out = r;
	return 0;
fail:
	dw__db_info_clear(&r->info);
	EVP_MD_CTX_free(r->md);
	XXH3_freeState(r->xs);
	dw_free(r->row);
	dw_free(r);
	return rc;
}

/* Row seq failed its check: the reader stops for good. */
static int row_damaged(dw_db_reader *r, uint64_t seq)
{
	snprintf(tls_err, sizeof(tls_err),
		 "db: strategy %s: row %llu of the object is damaged (its checksum does not match)",
		 r->slot->name, (unsigned long long)seq);
	return r->err = DW_ECORRUPT;
}

/* After the last row: the byte count and, when verifying, the SHA-256 must match. */
static int reader_finish(dw_db_reader *r)
{
	uint8_t digest[32];
	unsigned int dlen;

	if (r->delivered != r->info.size) {
		snprintf(tls_err, sizeof(tls_err),
			 "db: strategy %s: object has %llu bytes in its rows, expected %llu",
			 r->slot->name, (unsigned long long)r->delivered,
			 (unsigned long long)r->info.size);
		return r->err = DW_ECORRUPT;
	}
	if (r->md) {
		EVP_DigestFinal_ex(r->md, digest, &dlen);
		EVP_MD_CTX_free(r->md);
		r->md = NULL;
		if (memcmp(digest, r->info.sha256, 32) != 0) {
			snprintf(tls_err, sizeof(tls_err),
				 "db: strategy %s: content does not match its SHA-256",
				 r->slot->name);
			return r->err = DW_ECORRUPT;
		}
	}
	return 0;
}

int dw_db_reader_next(dw_db_reader *r, const void **chunk, size_t *len)
{
	struct dw__db_strategy *s = r->slot->s;
	int rc;

	if (r->err)
		return r->err;
	if (r->seq == r->info.chunks)
		return reader_finish(r);
	if (!r->row) {
		r->row = dw_malloc(DW__DB_ROW_STORED_MAX);
		if (!r->row)
			return -ENOMEM;
	}
	rc = s->ops->read_chunk(s, r->info.oid, r->seq, r->row, DW__DB_ROW_STORED_MAX, &r->row_len);
	if (rc < 0) {
		dw__db_fail(r->slot, rc);
		return r->err = rc;
	}
	r->row_data = r->row;
	if (r->info.row_sums) {
		if (r->row_len < DW__DB_ROW_SUM)
			return row_damaged(r, r->seq);
		r->row_data += DW__DB_ROW_SUM;
		r->row_len -= DW__DB_ROW_SUM;
		if (r->xs && XXH3_64bits(r->row_data, r->row_len) != row_sum_load(r->row))
			return row_damaged(r, r->seq);
	}
	r->seq++;
	r->delivered += r->row_len;
	if (r->md)
		EVP_DigestUpdate(r->md, r->row_data, r->row_len);
	atomic_fetch_add_explicit(&r->db->bytes_out_total, r->row_len, memory_order_relaxed);
	*chunk = r->row_data;
	*len = r->row_len;
	return 1;
}

void dw_db_reader_close(dw_db_reader *r)
{
	if (!r)
		return;
	atomic_fetch_sub_explicit(&r->db->readers_open, 1, memory_order_relaxed);
	for (int i = 0; i < GET_WORKERS; i++) {
		if (r->wcur[i])
			r->slot->s->ops->cursor_close(r->wcur[i]);
		XXH3_freeState(r->wxs[i]);
	}
	if (r->helper)
		atomic_fetch_sub_explicit(&r->db->helpers_active, 1, memory_order_relaxed);
	if (r->cursor)
		r->slot->s->ops->cursor_close(r->cursor);
	dw__db_info_clear(&r->info);
	EVP_MD_CTX_free(r->md);
	XXH3_freeState(r->xs);
	dw_free(r->row);
	dw_free(r);
}

/* The reader as a dw_source: serves rows in whatever sizes the bbuf producer asks for. */
/* Length of row seq: every row but the last is full (a put fills rows completely). */
static size_t row_length(const dw_db_reader *r, uint64_t seq)
{
	if (seq + 1 < r->info.chunks)
		return DW__DB_ROW_MAX;
	return (size_t)(r->info.size - (r->info.chunks - 1) * (uint64_t)DW__DB_ROW_MAX);
}

/*
 * Cursor path, verified reads: take row seq's stored sum and start its XXH3. A ranged get that
 * starts inside the row hashes the row's head too (read into buf, which holds nothing yet).
 */
static int row_start(dw_db_reader *r, void *buf, size_t len)
{
	struct dw__db_strategy *s = r->slot->s;
	uint8_t sum[DW__DB_ROW_SUM];
	int rc;

	rc = s->ops->cursor_read(r->cursor, r->seq, 0, sum, sizeof(sum));
	if (rc < 0) {
		dw__db_fail(r->slot, rc);
		return r->err = rc;
	}
	r->row_want = row_sum_load(sum);
	XXH3_64bits_reset(r->xs);
	for (size_t off = 0; off < r->row_off;) {
		size_t n = r->row_off - off < len ? r->row_off - off : len;

		rc = s->ops->cursor_read(r->cursor, r->seq, DW__DB_ROW_SUM + off, buf, n);
		if (rc < 0) {
			dw__db_fail(r->slot, rc);
			return r->err = rc;
		}
		XXH3_64bits_update(r->xs, buf, n);
		off += n;
	}
	return 0;
}

/*
 * The reader as a dw_source, for a streaming get. Where the strategy can read part of a row,
 * the bytes go from the database straight into the stream's chunk; else through the row
 * buffer.
 */
static ssize_t reader_read(void *ctx, void *buf, size_t len)
{
	dw_db_reader *r = ctx;
	struct dw__db_strategy *s = r->slot->s;
	size_t n;
	int rc;

	if (r->helper) {
		/* offered parallel rows, but the stream reads with one producer (no budget room
		 * for a part per worker): the read_helpers slot goes back at once */
		atomic_fetch_sub_explicit(&r->db->helpers_active, 1, memory_order_relaxed);
		r->helper = false;
	}
	if (s->ops->cursor_open) {
		if (r->err)
			return r->err;
		if (!r->cursor) {
			rc = s->ops->cursor_open(s, r->info.oid, &r->cursor);
			if (rc < 0) {
				dw__db_fail(r->slot, rc);
				return r->err = rc;
			}
		}
		for (;;) {
			size_t rl;

			if (r->seq == r->info.chunks)
				return reader_finish(r);
			rl = row_length(r, r->seq);
			if (r->skip) { /* a ranged read starts inside its first row */
				r->row_off = r->skip < rl ? r->skip : rl;
				r->delivered += r->row_off; /* counted as the row path counts it */
				r->skip = 0;
			}
			if (r->row_off < rl)
				break;
			r->seq++;
			r->row_off = 0;
			r->row_started = false;
		}
		if (r->xs && !r->row_started) {
			rc = row_start(r, buf, len);
			if (rc < 0)
				return rc;
		}
		r->row_started = true;
		n = row_length(r, r->seq) - r->row_off;
		if (n > len)
			n = len;
		rc = s->ops->cursor_read(r->cursor, r->seq,
					 r->row_off + (r->info.row_sums ? DW__DB_ROW_SUM : 0), buf,
					 n);
		if (rc < 0) {
			dw__db_fail(r->slot, rc);
			return r->err = rc;
		}
		if (r->xs) {
			XXH3_64bits_update(r->xs, buf, n);
			if (r->row_off + n == row_length(r, r->seq) &&
			    XXH3_64bits_digest(r->xs) != r->row_want)
				return row_damaged(r, r->seq);
		}
		r->row_off += n;
		r->delivered += n;
		if (r->md)
			EVP_DigestUpdate(r->md, buf, n);
		atomic_fetch_add_explicit(&r->db->bytes_out_total, n, memory_order_relaxed);
		return (ssize_t)n;
	}

	if (r->row_off == r->row_len) {
		const void *chunk;
		size_t clen;

		rc = dw_db_reader_next(r, &chunk, &clen);
		if (rc <= 0)
			return rc;
		r->row_off = r->skip < r->row_len ? r->skip : r->row_len;
		r->skip = 0;
		if (r->row_off == r->row_len)
			return reader_read(ctx, buf, len);
	}
	n = r->row_len - r->row_off;
	if (n > len)
		n = len;
	memcpy(buf, r->row_data + r->row_off, n);
	r->row_off += n;
	return (ssize_t)n;
}

/*
 * Parallel rows: a streaming get of at least GET_PARALLEL_MIN rows, when the read_helpers limit
 * has a slot free, offers the stream read_part with GET_WORKERS workers (dw_bbuf's parallel
 * producers). Part p is row first + p, read whole by one worker through its own cursor, straight
 * into the stream's chunks and checked against its sum before the stream queues any of it, so
 * a damaged row still stops the get before its bytes are handed on. Workers read the rows of
 * one version (oid) through their own connections: invariant 1 (db_int.h) makes that a read of
 * one version, or DW_ECONFLICT. Why: one thread copying rows out of SQLite is what bounds a get;
 * two copying disjoint rows go nearly twice as fast on two cores (bench/db.sh). Objects without
 * row sums, checked against their SHA-256 in order, read with one producer.
 */
#define GET_PARALLEL_MIN 4

static ssize_t reader_read_part(void *ctx, unsigned w, uint64_t part, void *const *bufs,
				size_t nbufs, size_t chunk)
{
	dw_db_reader *r = ctx;
	struct dw__db_strategy *s = r->slot->s;
	uint64_t seq = r->first + part, want = 0;
	size_t rl, off, hdr = r->info.row_sums ? DW__DB_ROW_SUM : 0, total = 0;
	XXH3_state_t *xs = NULL;
	int rc;

	if (w >= GET_WORKERS || seq >= r->info.chunks)
		return seq >= r->info.chunks ? 0 : DW_EPROTO;
	rl = row_length(r, seq);
	off = part == 0 ? r->first_skip : 0;
	if (off >= rl)
		return 0;
	if (!r->wcur[w]) {
		rc = s->ops->cursor_open(s, r->info.oid, &r->wcur[w]);
		if (rc < 0)
			return dw__db_fail(r->slot, rc);
	}
	if (r->xs) { /* verified reads of a row with its sum */
		uint8_t sum[DW__DB_ROW_SUM];

		if (!r->wxs[w]) {
			r->wxs[w] = XXH3_createState();
			if (!r->wxs[w])
				return -ENOMEM;
		}
		xs = r->wxs[w];
		rc = s->ops->cursor_read(r->wcur[w], seq, 0, sum, sizeof(sum));
		if (rc < 0)
			return dw__db_fail(r->slot, rc);
		want = row_sum_load(sum);
		XXH3_64bits_reset(xs);
		for (size_t h = 0; h < off;) { /* a ranged get's first row: hash its head too */
			size_t n = off - h < chunk ? off - h : chunk;

			rc = s->ops->cursor_read(r->wcur[w], seq, hdr + h, bufs[0], n);
			if (rc < 0)
				return dw__db_fail(r->slot, rc);
			XXH3_64bits_update(xs, bufs[0], n);
			h += n;
		}
	}
	for (size_t i = 0; off < rl; i++) {
		size_t n = rl - off < chunk ? rl - off : chunk;

		if (i >= nbufs)
			return DW_EPROTO;
		rc = s->ops->cursor_read(r->wcur[w], seq, hdr + off, bufs[i], n);
		if (rc < 0)
			return dw__db_fail(r->slot, rc);
		if (xs)
			XXH3_64bits_update(xs, bufs[i], n);
		off += n;
		total += n;
	}
	if (xs && XXH3_64bits_digest(xs) != want) {
		snprintf(
			tls_err, sizeof(tls_err),
			"db: strategy %s: row %llu of the object is damaged (its checksum does not "
			"match)",
			r->slot->name, (unsigned long long)seq);
		return DW_ECORRUPT;
	}
	atomic_fetch_add_explicit(&r->db->bytes_out_total, total, memory_order_relaxed);
	return (ssize_t)total;
}

/* Offer the stream parallel rows when the get is long enough and a helper slot is free. */
static void offer_parallel(dw_db_reader *r, dw_source *src)
{
	size_t limit = atomic_load_explicit(&r->db->read_helpers, memory_order_relaxed);
	size_t active = atomic_load_explicit(&r->db->helpers_active, memory_order_relaxed);

	if (!r->slot->s->ops->cursor_open || r->md || r->info.chunks < r->seq + GET_PARALLEL_MIN)
		return;
	do {
		if (active >= limit)
			return;
	} while (!atomic_compare_exchange_weak_explicit(&r->db->helpers_active, &active, active + 1,
							memory_order_relaxed,
							memory_order_relaxed));
	r->helper = true;
	r->first = r->seq;
	r->first_skip = r->skip;
	src->read_part = reader_read_part;
	src->part_bytes = DW__DB_ROW_MAX;
	src->workers = GET_WORKERS;
}

static void reader_source_close(void *ctx)
{
	dw_db_reader_close(ctx);
}

/* Called by the stream on the producer thread right after a failed read: the message of that
 * failure is this thread's. */
static const char *reader_source_errmsg(void *ctx)
{
	(void)ctx;
	return tls_err;
}

static int get_from(dw_db *db, const char *strategy, const void *key, size_t klen, uint64_t offset,
		    bool ranged, dw_db_object *info, dw_bbuf **out)
{
	dw_db_reader *r;
	dw_bbuf_config bc;
	dw_source src = { 0 };
	int rc;

	*out = NULL;
	rc = dw_db_reader_open(db, strategy, key, klen, info, &r);
	if (rc < 0)
		return rc;
	if (ranged) {
		if (offset > r->info.size) {
			snprintf(tls_err, sizeof(tls_err), "db: offset %llu is past the end (%llu)",
				 (unsigned long long)offset, (unsigned long long)r->info.size);
			dw_db_reader_close(r);
			if (info)
				dw_db_object_clear(info);
			return DW_ELIMIT;
		}
		/* Every row but the last is full (a put fills rows completely). */
		r->seq = offset / DW__DB_ROW_MAX;
		r->skip = (size_t)(offset % DW__DB_ROW_MAX);
		r->delivered = r->seq * DW__DB_ROW_MAX;
		EVP_MD_CTX_free(r->md);
		r->md = NULL;
	}
	src.read = reader_read;
	src.close = reader_source_close;
	src.errmsg = reader_source_errmsg;
	src.ctx = r;
	offer_parallel(r, &src);
	dw_bbuf_config_default(&bc);
	bc.chunk_size = atomic_load_explicit(&db->chunk_size, memory_order_relaxed);
	bc.cap_bytes = atomic_load_explicit(&db->buffer_cap, memory_order_relaxed);
	bc.clock = db->cfg.clock;
	rc = dw_bbuf_open(&bc, src, out);
	if (rc < 0 && info)
		dw_db_object_clear(info);
	return rc;
}

int dw_db_get(dw_db *db, const char *strategy, const void *key, size_t klen, dw_db_object *info,
	      dw_bbuf **out)
{
	return get_from(db, strategy, key, klen, 0, false, info, out);
}

int dw_db_get_range(dw_db *db, const char *strategy, const void *key, size_t klen, uint64_t offset,
		    dw_db_object *info, dw_bbuf **out)
{
	return get_from(db, strategy, key, klen, offset, true, info, out);
}
