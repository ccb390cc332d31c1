// SPDX-License-Identifier: MIT
/*
 * BoundedCache as an IScalableSubsystem: its metrics, its limits (max_entries, max_bytes,
 * ttl_seconds) and their live change. Threads and locking: as cache.c (the cache's lock, taken
 * for reading to copy state out, for writing to apply new bounds).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cache_impl.h"

/* ---- scalable -------------------------------------------------------------------------------- */

#define LIMIT_COUNT_MAX ((double)(1ULL << 40))
#define LIMIT_BYTES_MAX ((double)(1ULL << 50))
#define LIMIT_TTL_MAX	(10.0 * 365 * 24 * 3600) /* ten years */

static const dw_limit limit_defs[] = {
	{ "max_entries", 0, NULL, 0, LIMIT_COUNT_MAX, "entries",
	  "most entries held (0 = unbounded)" },
	{ "max_bytes", 0, NULL, 0, LIMIT_BYTES_MAX, "bytes",
	  "most key+value bytes held (0 = unbounded)" },
	{ "ttl_seconds", 0, NULL, 0, LIMIT_TTL_MAX, "seconds",
	  "age after which an entry is not returned (0 = none; millisecond resolution)" },
};

static int sc_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_cache *c = self;
	dw_cache_stats st;
	size_t small_n, main_n, ghost_n, shadow_n = 0;
	uint64_t switches;
	double s3_bar;
	double small_frac;
	int mode;
	uint64_t lookups;
	dw_metric m;

	dw_cache_stats_get(c, &st);
	LOCK_RD(c);
	small_n = c->q[Q_SMALL].n;
	main_n = c->q[Q_MAIN].n;
	ghost_n = c->ghost.n;
	small_frac = c->small_frac;
	mode = c->mode;
	switches = c->switches;
	s3_bar = c->s3_bar;
	for (int i = 0; i < 2; i++) {
		if (c->shadow[i])
			shadow_n += c->shadow[i]->n + c->shadow[i]->ghost.n;
	}
	UNLOCK(c);
	lookups = st.hits + st.misses;

#define EMIT(nm, val, un, hlp, k)                        \
	do {                                             \
		m = (dw_metric){ .name = (nm),           \
				 .labels = NULL,         \
				 .value = (double)(val), \
				 .unit = (un),           \
				 .help = (hlp),          \
				 .kind = (k) };          \
		fn(arg, &m);                             \
	} while (0)
	EMIT("entries", st.entries, "entries", "entries held", DW_METRIC_GAUGE);
	EMIT("bytes", st.bytes, "bytes", "key+value bytes held", DW_METRIC_GAUGE);
	EMIT("capacity_entries", st.max_entries, "entries", "entry bound (0 = unbounded)",
	     DW_METRIC_GAUGE);
	EMIT("capacity_bytes", st.max_bytes, "bytes", "byte bound (0 = unbounded)",
	     DW_METRIC_GAUGE);
	EMIT("hits_total", st.hits, "ops", "gets answered from memory", DW_METRIC_COUNTER);
	EMIT("misses_total", st.misses, "ops", "gets not in memory", DW_METRIC_COUNTER);
	EMIT("evictions_total", st.evictions, "entries", "entries evicted to respect a bound",
	     DW_METRIC_COUNTER);
	EMIT("expirations_total", st.expirations, "entries", "entries dropped past their TTL",
	     DW_METRIC_COUNTER);
	EMIT("inserts_total", st.inserts, "ops", "entries inserted or replaced", DW_METRIC_COUNTER);
	EMIT("hit_ratio", lookups ? (double)st.hits / (double)lookups : 0.0, "ratio",
	     "hits / (hits + misses) since open", DW_METRIC_GAUGE);
	EMIT("small_entries", small_n, "entries", "entries in the S3-FIFO small queue",
	     DW_METRIC_GAUGE);
	EMIT("main_entries", main_n, "entries", "entries in the S3-FIFO main queue",
	     DW_METRIC_GAUGE);
	EMIT("small_share", small_frac, "ratio",
	     "share of the bounds given to the small (recency) queue; adapts", DW_METRIC_GAUGE);
	EMIT("ghost_entries", ghost_n, "entries", "evicted key hashes remembered", DW_METRIC_GAUGE);
	EMIT("policy_lru", mode == POL_LRU, "bool",
	     "1 while eviction follows LRU order, 0 while S3-FIFO (chosen by the shadows)",
	     DW_METRIC_GAUGE);
	EMIT("policy_switches_total", switches, "ops", "changes between S3-FIFO and LRU order",
	     DW_METRIC_COUNTER);
	EMIT("policy_s3_bar", s3_bar, "ratio",
	     "how many times the usual lead S3-FIFO order needs to replace LRU order (doubles "
	     "after a try that did not pay)",
	     DW_METRIC_GAUGE);
	EMIT("shadow_entries", shadow_n, "entries",
	     "sampled keys and ghosts held by the two policy shadows", DW_METRIC_GAUGE);
	EMIT("store_errors_total", atomic_load_explicit(&c->store_errors, memory_order_relaxed),
	     "ops", "failed store calls", DW_METRIC_COUNTER);
	EMIT("ttl_seconds",
	     (double)atomic_load_explicit(&c->ttl_ns, memory_order_relaxed) / DW_NS_PER_SEC,
	     "seconds", "entry time to live (0 = none)", DW_METRIC_GAUGE);
#undef EMIT
	return 0;
}

static int sc_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_cache *c = self;
	dw_limit l[3];

	memcpy(l, limit_defs, sizeof(l));
	LOCK_RD(c);
	l[0].value = (double)c->max_entries;
	l[1].value = (double)c->max_bytes;
	UNLOCK(c);
	l[2].value = (double)atomic_load_explicit(&c->ttl_ns, memory_order_relaxed) / DW_NS_PER_SEC;
	for (size_t i = 0; i < 3; i++)
		fn(arg, &l[i]);
	return 0;
}

static int sc_reconfigure(void *self, const dw_limit_change *changes, size_t n, char *err,
			  size_t errlen)
{
	dw_cache *c = self;
	size_t max_entries, max_bytes;
	bool set_ttl = false;
	double ttl_s = 0;
	int rc = 0;

	if (errlen)
		err[0] = '\0';
	if (n && !changes)
		return DW_EUSAGE;
	/* Validate everything first. */
	for (size_t i = 0; i < n; i++) {
		const dw_limit *def = NULL;

		for (size_t j = 0; j < 3; j++) {
			if (changes[i].name && strcmp(changes[i].name, limit_defs[j].name) == 0)
				def = &limit_defs[j];
		}
		if (!def) {
			snprintf(err, errlen, "unknown limit %s",
				 changes[i].name ? changes[i].name : "(null)");
			return DW_ELIMIT;
		}
		rc = dw_limit_check(def, &changes[i], def != &limit_defs[2], err, errlen);
		if (rc < 0)
			return rc;
	}
	/* Then apply all of them under one lock hold. */
	LOCK_WR(c);
	max_entries = c->max_entries;
	max_bytes = c->max_bytes;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(changes[i].name, "max_entries") == 0) {
			max_entries = (size_t)changes[i].value;
		} else if (strcmp(changes[i].name, "max_bytes") == 0) {
			max_bytes = (size_t)changes[i].value;
		} else {
			set_ttl = true;
			ttl_s = changes[i].value;
		}
	}
	rc = dw__cache_resize_locked(c, max_entries,
				     max_bytes); /* the only step that can fail: first */
	if (rc == 0 && set_ttl)
		atomic_store_explicit(&c->ttl_ns, (uint64_t)llround(ttl_s * 1000.0) * DW_NS_PER_MS,
				      memory_order_relaxed);
	UNLOCK(c);
	if (rc < 0)
		snprintf(err, errlen, "out of memory resizing the cache");
	return rc;
}

static dw_bp_state sc_state(void *self)
{
	return DW_BP_NORMAL;
}

const dw_scalable_ops dw__cache_scalable_ops = {
	.metrics = sc_metrics,
	.limits = sc_limits,
	.reconfigure = sc_reconfigure,
	.state = sc_state,
};

const dw_scalable *dw_cache_scalable(dw_cache *c)
{
	return &c->scalable;
}
