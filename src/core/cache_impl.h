/* SPDX-License-Identifier: MIT */
/*
 * BoundedCache internals shared by cache.c (the cache) and cache_scalable.c (its
 * IScalableSubsystem face): the cache's structure and its lock. See cache.c for the rules and
 * for what each lock guards.
 */
#ifndef DWSCALE_CORE_CACHE_IMPL_H
#define DWSCALE_CORE_CACHE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dwscale/cache.h"
#include "dwscale/scalable.h"

#define STRIPES 64 /* store-ordering mutexes; a power of two */

#ifdef DW_CACHE_RWLOCK
typedef pthread_rwlock_t cache_lock_t;
#define LOCK_RD(c) pthread_rwlock_rdlock(&(c)->lock)
#define LOCK_WR(c) pthread_rwlock_wrlock(&(c)->lock)
#define UNLOCK(c)  pthread_rwlock_unlock(&(c)->lock)
#else
typedef pthread_mutex_t cache_lock_t;
#define LOCK_RD(c) pthread_mutex_lock(&(c)->lock)
#define LOCK_WR(c) pthread_mutex_lock(&(c)->lock)
#define UNLOCK(c)  pthread_mutex_unlock(&(c)->lock)
#endif

enum { Q_SMALL = 0, Q_MAIN = 1 };
enum { POL_S3 = 0, POL_LRU = 1, POL_ADAPT = 2 }; /* a cache's mode; POL_ADAPT: chosen by rule 8 */

struct entry {
	struct entry *hnext;	   /* hash chain */
	struct entry *prev, *next; /* queue links; prev is toward the head (newer) */
	uint64_t hash;
	uint64_t born_ns; /* time of the put (or load) */
	uint64_t tick;	  /* c->tick at the last put or hit: LRU mode's age */
	size_t klen, vlen;
	_Atomic unsigned char freq; /* hits, saturating at FREQ_MAX */
	unsigned char queue;	    /* Q_SMALL or Q_MAIN */
	unsigned char data[];	    /* key, then value */
};

struct queue {
	struct entry *head, *tail;
	size_t n, bytes;
};

struct ghost {
	uint64_t *ring; /* ring[seq % cap] = hash */
	uint64_t *keys; /* set: 0 = empty; hashes are stored with 0 remapped to 1 */
	uint64_t *seqs;
	size_t cap;   /* ring length (>= 1) */
	size_t mask;  /* set size - 1 */
	uint64_t seq; /* next sequence number */
	size_t n;     /* live set entries */
};

struct dw_cache {
	cache_lock_t lock;
	struct entry **buckets;	    /* protected by lock */
	size_t nbuckets;	    /* protected by lock; power of two */
	size_t max_buckets;	    /* protected by lock */
	size_t n, bytes;	    /* protected by lock */
	struct queue q[2];	    /* protected by lock */
	struct ghost ghost;	    /* protected by lock */
	size_t max_entries;	    /* protected by lock */
	size_t max_bytes;	    /* protected by lock */
	double small_frac;	    /* protected by lock: small's share of the bounds */
	bool drift;		    /* protected by lock: small_frac drifts back (rule 5a) */
	uint64_t tick;		    /* protected by lock: puts + hits so far */
	int policy;		    /* protected by lock: POL_ADAPT, or fixed (shadow, pinned) */
	int mode;		    /* protected by lock: POL_S3 or POL_LRU */
	struct dw_cache *shadow[2]; /* protected by lock: [POL_S3], [POL_LRU]; NULL if none */
	uint32_t sample_lim;	    /* protected by lock: sampled if hash >> 40 < this */
	uint64_t win_gets;	    /* protected by lock: sampled gets in this window */
	uint64_t win_len;	    /* protected by lock: window length in sampled gets */
	uint64_t win_hits[2];	    /* protected by lock: shadow hits in this window */
	double score;		    /* protected by lock: LRU's lead, decayed over windows */
	double s3_bar;		    /* protected by lock: x SCORE_MARGIN to leave LRU (backoff) */
	unsigned calm_windows;	    /* protected by lock: windows since the last switch */
	uint64_t switches;	    /* protected by lock: mode changes */
	_Atomic uint64_t ttl_ns;    /* 0 = none */
	uint64_t seed;		    /* immutable */
	const dw_clock *clock;	    /* immutable */
	dw_store *store;	    /* immutable, not owned */
	char *prefix;		    /* immutable */
	size_t prefix_len;	    /* immutable */
	char *name;		    /* immutable */
	pthread_mutex_t stripes[STRIPES];
	pthread_rwlock_t wt;
	_Atomic uint64_t hits, misses, evictions, expirations, inserts, store_errors;
	dw_scalable scalable;
};

/* Apply new bounds, evicting down to them (lock held for writing). 0 or -ENOMEM. */
int dw__cache_resize_locked(dw_cache *c, size_t max_entries, size_t max_bytes);

extern const dw_scalable_ops dw__cache_scalable_ops;

#endif
