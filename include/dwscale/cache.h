/* SPDX-License-Identifier: MIT */
/*
 * BoundedCache: an in-memory key-value cache bounded by entry count and by bytes, with S3-FIFO
 * or LRU eviction chosen at run time, optional TTL, optional write-through to a dw_store and
 * load-on-miss from it.
 *
 * Eviction is S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10 % of the capacity at first)
 * admits new keys, a main FIFO holds keys that were hit while in the small queue, and a ghost
 * remembers the hashes of recently evicted keys so that a key evicted from small too early goes
 * straight to main when it comes back. A hit only sets a 2-bit counter. Two additions: during
 * warm-up main is filled even with keys not yet hit (so a loop larger than the cache still hits
 * a stable subset), and small's share adapts between 10 % and 90 % as in ARC (ghost hits on keys
 * evicted from small grow it, from main shrink it), for recency-bound patterns.
 *
 * On traces where recency is what matters (LRU is optimal on some), no FIFO variant keeps up, so
 * the same queues can also run in exact LRU order (hit for hit). Two small shadow caches, one of
 * each order, fed a hash sample of the keys (at most 2048 entries each), score which order hits
 * more; the cache follows the score once it passes a margin (it starts in LRU order). Chosen by
 * bench/bench_cache.c on the real traces in shared/data/cache-traces (see bench/cache.sh and the
 * header of src/core/cache.c): one-time scans do not flush a hot set, and an LRU-friendly trace
 * gets LRU's hits. Metrics policy_lru, policy_switches_total and shadow_entries show the choice.
 *
 * Sizes: "bytes" counts key + value bytes of each entry (per-entry overhead of about 88 bytes of
 * bookkeeping is not counted). A put whose key + value exceeds max_bytes is refused with
 * DW_ETOOBIG (it is not written to the store either).
 *
 * Store: with cfg.store set, each entry is kept in the store under store_prefix + the lowercase
 * hex encoding of the key (hex keeps byte order and prefixes, so delete_prefix maps to a store
 * prefix scan). A key whose encoding would make the store key longer than DW_STORE_KEY_MAX is
 * refused with DW_EBADKEY. dw_cache_put returns only once the value is durable in the store; the
 * cache lock is not held during store I/O (a per-key stripe lock orders writes to one key so the
 * memory copy and the store always agree). A get that misses memory reads the store and, if
 * found, inserts the value (counted as a miss). The cache does not own the store.
 *
 * TTL: an entry older than ttl_ms (since its last put) is never returned; it is dropped when a get
 * finds it or when eviction reaches it (counted as an expiration, not an eviction). Changing the
 * TTL applies to entries already present. The store keeps no TTL: load-on-miss restarts the age.
 *
 * Threads: every function is thread-safe, except dw_cache_close, which must not race others.
 */
#ifndef DWSCALE_CACHE_H
#define DWSCALE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "error.h"
#include "scalable.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw_cache dw_cache;

#define DW_CACHE_DEFAULT_MAX_ENTRIES 10000
#define DW_CACHE_DEFAULT_MAX_BYTES   (64u << 20)
#define DW_CACHE_DEFAULT_PREFIX	     "dw://cache/"

typedef struct dw_cache_config {
	size_t max_entries;	  /* 0 = no bound by count; default 10000 */
	size_t max_bytes;	  /* 0 = no bound by bytes; default 64 MiB (key+value bytes) */
	uint64_t ttl_ms;	  /* 0 = no TTL */
	dw_store *store;	  /* optional: write-through + load-on-miss */
	const char *store_prefix; /* dw:// prefix for stored entries, default "dw://cache/" */
	const dw_clock *clock;	  /* NULL = real clock */
	const char *name;	  /* subsystem name, default "cache" */
} dw_cache_config;

void dw_cache_config_default(dw_cache_config *cfg);

/*
 * Open a cache. DW_ECONFIG for a malformed name ([a-z0-9_]{1,32}) or store_prefix (must start
 * with "dw://", printable ASCII 0x21..0x7e, at most 512 bytes); -ENOMEM. On failure *out is NULL.
 */
int dw_cache_open(const dw_cache_config *cfg, dw_cache **out);
/* Free every entry (the store keeps its data). NULL is a no-op. */
void dw_cache_close(dw_cache *c);

/*
 * Insert or replace. DW_ETOOBIG if klen + vlen > max_bytes (when bounded) or the value exceeds
 * DW_STORE_VALUE_MAX with a store; DW_EBADKEY if the key is too long for the store; a store
 * error as returned by dw_store_put (the memory copy of the key is then dropped, so memory never
 * holds a value the store may not have).
 */
int dw_cache_put(dw_cache *c, const void *key, size_t klen, const void *val, size_t vlen);
/* copies the value out (dw_malloc; caller dw_free); DW_ENOTFOUND on miss */
int dw_cache_get(dw_cache *c, const void *key, size_t klen, void **val, size_t *vlen);
/* Remove from memory and from the store. 0 if it was in either, else DW_ENOTFOUND. */
int dw_cache_delete(dw_cache *c, const void *key, size_t klen);
/*
 * Delete every entry whose key starts with prefix (memory and store); returns the number of keys
 * removed (the larger of the memory and store counts, since write-through keeps the memory set a
 * subset of the store's) or a negative code. Blocks puts and deletes while it runs.
 */
int dw_cache_delete_prefix(dw_cache *c, const void *prefix, size_t plen);
/*
 * Change the bounds (0 = unbounded). Shrinking evicts down to the new bounds before returning.
 * -ENOMEM leaves the old bounds in place.
 */
int dw_cache_resize(dw_cache *c, size_t max_entries, size_t max_bytes);
/* Change the TTL (0 = none); applies to entries already present. */
void dw_cache_set_ttl(dw_cache *c, uint64_t ttl_ms);

typedef struct dw_cache_stats {
	uint64_t hits, misses, evictions, expirations, inserts;
	size_t entries, bytes, max_entries, max_bytes;
} dw_cache_stats;

void dw_cache_stats_get(dw_cache *c, dw_cache_stats *out);

/*
 * The cache as a scalable subsystem. Metrics: entries, bytes, capacity_entries, capacity_bytes,
 * hits_total, misses_total, evictions_total, expirations_total, inserts_total, hit_ratio,
 * small_entries, main_entries, small_share, ghost_entries, store_errors_total, ttl_seconds. Limits:
 * max_entries, max_bytes, ttl_seconds. State: always Normal (a full cache evicts, it never
 * refuses work). valid until dw_cache_close
 */
const dw_scalable *dw_cache_scalable(dw_cache *c);

#ifdef __cplusplus
}
#endif
#endif
