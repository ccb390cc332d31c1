// SPDX-License-Identifier: MIT
/*
 * BoundedCache: bounds after every operation, the S3-FIFO rules (order pinned), the choice
 * between LRU and S3-FIFO order by the shadows (tracks LRU on a zigzag, learns to resist scans,
 * bounded shadow memory), TTL on a fake clock,
 * resize, counters, delete and delete_prefix, reconfigure through the scalable ops (all or
 * nothing), four threads at once (run it under TSan), allocation failure at every step (run it
 * under ASan), and write-through + load-on-miss against a real SQLite store.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/cache.h"

#include "core/cache_int.h"

static dw_cache *open_cache(size_t max_entries, size_t max_bytes, const dw_clock *clk,
			    uint64_t ttl_ms)
{
	dw_cache_config cfg;
	dw_cache *c = NULL;

	dw_cache_config_default(&cfg);
	cfg.max_entries = max_entries;
	cfg.max_bytes = max_bytes;
	cfg.clock = clk;
	cfg.ttl_ms = ttl_ms;
	assert_int_equal(dw_cache_open(&cfg, &c), 0);
	assert_non_null(c);
	return c;
}

/* The rules of S3-FIFO (1-7 in cache.c), without the shadows' choice of order. */
static dw_cache *open_s3(size_t max_entries)
{
	dw_cache *c = open_cache(max_entries, 0, NULL, 0);

	assert_int_equal(dw__cache_pin_order(c, DW__CACHE_S3FIFO), 0);
	return c;
}

static int put_u(dw_cache *c, unsigned k, size_t vlen)
{
	char key[32], val[256];

	snprintf(key, sizeof(key), "k%u", k);
	memset(val, (int)('a' + k % 26), sizeof(val));
	assert_true(vlen <= sizeof(val));
	return dw_cache_put(c, key, strlen(key), val, vlen);
}

/* 1 if present, 0 if not; checks the value's content when present. */
static int has_u(dw_cache *c, unsigned k)
{
	char key[32];
	void *v = NULL;
	size_t vl = 0;
	int rc;

	snprintf(key, sizeof(key), "k%u", k);
	rc = dw_cache_get(c, key, strlen(key), &v, &vl);
	if (rc == DW_ENOTFOUND) {
		assert_null(v);
		return 0;
	}
	assert_int_equal(rc, 0);
	for (size_t i = 0; i < vl; i++)
		assert_int_equal(((unsigned char *)v)[i], 'a' + k % 26);
	dw_free(v);
	return 1;
}

static void check_bounds(dw_cache *c)
{
	dw_cache_stats st;

	dw_cache_stats_get(c, &st);
	if (st.max_entries)
		assert_true(st.entries <= st.max_entries);
	if (st.max_bytes)
		assert_true(st.bytes <= st.max_bytes);
}

static void test_config(void **state)
{
	dw_cache_config cfg;
	dw_cache *c = (dw_cache *)1;

	dw_cache_config_default(&cfg);
	assert_int_equal(cfg.max_entries, 10000);
	assert_int_equal(cfg.max_bytes, 64u << 20);
	assert_int_equal(cfg.ttl_ms, 0);
	assert_string_equal(cfg.store_prefix, "dw://cache/");
	assert_string_equal(cfg.name, "cache");

	cfg.name = "Bad-Name";
	assert_int_equal(dw_cache_open(&cfg, &c), DW_ECONFIG);
	assert_null(c);
	cfg.name = "cache";
	cfg.store_prefix = "http://x/";
	assert_int_equal(dw_cache_open(&cfg, &c), DW_ECONFIG);
	cfg.store_prefix = "dw://has space/";
	assert_int_equal(dw_cache_open(&cfg, &c), DW_ECONFIG);
	cfg.store_prefix = NULL; /* default */
	cfg.name = "qcache";
	assert_int_equal(dw_cache_open(&cfg, &c), 0);
	assert_string_equal(dw_cache_scalable(c)->name, "qcache");
	dw_cache_close(c);
	dw_cache_close(NULL);
}

static void test_put_get_replace(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	const unsigned char bin[] = { 0, 1, 0xff, 0, 'x' };
	void *v;
	size_t vl;

	assert_int_equal(dw_cache_get(c, "nope", 4, &v, &vl), DW_ENOTFOUND);
	assert_int_equal(dw_cache_put(c, bin, sizeof(bin), "one", 3), 0);
	assert_int_equal(dw_cache_get(c, bin, sizeof(bin), &v, &vl), 0);
	assert_int_equal(vl, 3);
	assert_memory_equal(v, "one", 3);
	dw_free(v);
	/* a key that differs only after a NUL byte is a different key */
	assert_int_equal(dw_cache_get(c, bin, 3, &v, &vl), DW_ENOTFOUND);

	assert_int_equal(dw_cache_put(c, bin, sizeof(bin), "second", 6), 0);
	assert_int_equal(dw_cache_get(c, bin, sizeof(bin), &v, &vl), 0);
	assert_int_equal(vl, 6);
	assert_memory_equal(v, "second", 6);
	dw_free(v);

	/* empty value and empty key are values like any other */
	assert_int_equal(dw_cache_put(c, "e", 1, NULL, 0), 0);
	assert_int_equal(dw_cache_get(c, "e", 1, &v, &vl), 0);
	assert_int_equal(vl, 0);
	dw_free(v);
	assert_int_equal(dw_cache_put(c, NULL, 0, "z", 1), 0);
	assert_int_equal(dw_cache_get(c, NULL, 0, &v, &vl), 0);
	assert_int_equal(vl, 1);
	dw_free(v);
	assert_int_equal(dw_cache_put(c, NULL, 3, "z", 1), DW_EUSAGE);

	dw_cache_stats st;
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.bytes, sizeof(bin) + 6 + 1 + 0 + 0 + 1);
	dw_cache_close(c);
}

static void test_bound_entries(void **state)
{
	dw_cache *c = open_cache(50, 0, NULL, 0);
	dw_cache_stats st;

	for (unsigned i = 0; i < 2000; i++) {
		assert_int_equal(put_u(c, (i * 7919u) % 300, 10), 0);
		check_bounds(c);
		has_u(c, (i * 31u) % 300);
		check_bounds(c);
	}
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 50);
	assert_true(st.evictions > 0);
	dw_cache_close(c);
}

static void test_bound_bytes(void **state)
{
	dw_cache *c = open_cache(0, 1000, NULL, 0);
	dw_cache_stats st;

	for (unsigned i = 0; i < 500; i++) {
		assert_int_equal(put_u(c, i, 1 + (i * 37u) % 200), 0);
		check_bounds(c);
	}
	assert_int_equal(put_u(c, 7777, 100), 0);
	/* key "k9999" (5 bytes) + 996 bytes > 1000: refused, and nothing is lost */
	{
		char big[996];

		memset(big, 'q', sizeof(big));
		assert_int_equal(dw_cache_put(c, "k9999", 5, big, sizeof(big)), DW_ETOOBIG);
		assert_int_equal(has_u(c, 7777), 1);
		/* a refused replacement keeps the old value (has_u checks its bytes) */
		assert_int_equal(dw_cache_put(c, "k7777", 5, big, sizeof(big)), DW_ETOOBIG);
		assert_int_equal(has_u(c, 7777), 1);
		/*
		 * Exactly at the bound is accepted. S3-FIFO may then evict the new, never-read
		 * entry rather than k7777, which was read: either way the bound holds.
		 */
		assert_int_equal(dw_cache_put(c, "k9999", 5, big, 995), 0);
		check_bounds(c);
		dw_cache_close(c);

		c = open_cache(0, 1000, NULL, 0);
		assert_int_equal(dw_cache_put(c, "k9999", 5, big, 995), 0);
		dw_cache_stats_get(c, &st);
		assert_int_equal(st.entries, 1);
		assert_int_equal(st.bytes, 1000);
	}
	dw_cache_close(c);
}

static void test_scan_resistance(void **state)
{
	dw_cache *c = open_s3(100);
	int kept = 0;

	/* a hot set of 40 keys, each read a few times */
	for (unsigned round = 0; round < 4; round++) {
		for (unsigned k = 0; k < 40; k++) {
			if (!has_u(c, k))
				assert_int_equal(put_u(c, k, 8), 0);
		}
	}
	/* a scan of 10,000 keys read once */
	for (unsigned k = 1000; k < 11000; k++) {
		if (!has_u(c, k))
			assert_int_equal(put_u(c, k, 8), 0);
		check_bounds(c);
	}
	for (unsigned k = 0; k < 40; k++)
		kept += has_u(c, k);
	/* S3-FIFO keeps the whole hot set (LRU would have kept none of it) */
	assert_int_equal(kept, 40);
	dw_cache_close(c);
}

static void test_ghost_readmits_to_main(void **state)
{
	dw_cache *c = open_s3(20);

	/* Fill main with hit keys (they move from small to main on eviction) */
	for (unsigned k = 0; k < 18; k++) {
		assert_int_equal(put_u(c, k, 1), 0);
		assert_int_equal(has_u(c, k), 1);
	}
	/* one-hit keys pass through small and leave only their hash in the ghost */
	for (unsigned k = 100; k < 140; k++)
		assert_int_equal(put_u(c, k, 1), 0);
	assert_int_equal(has_u(c, 100), 0);
	/* k100 comes back: the ghost sends it to main, where one more scan cannot flush it */
	assert_int_equal(put_u(c, 100, 1), 0);
	assert_int_equal(has_u(c, 100), 1);
	for (unsigned k = 200; k < 210; k++)
		assert_int_equal(put_u(c, k, 1), 0);
	assert_int_equal(has_u(c, 100), 1);
	dw_cache_close(c);
}

static double metric(dw_cache *c, const char *name);

/* A sweep up and down over 4x the cache (zigzag) is recency-bound: small's share must grow. */
static void test_small_share_adapts(void **state)
{
	dw_cache *c = open_s3(100);
	double before = metric(c, "small_share");

	assert_true(before > 0.09 && before < 0.11);
	for (unsigned round = 0; round < 20; round++) {
		for (unsigned i = 0; i < 800; i++) {
			unsigned k = i < 400 ? i : 799 - i;

			if (!has_u(c, k))
				assert_int_equal(put_u(c, k, 1), 0);
		}
		check_bounds(c);
	}
	assert_true(metric(c, "small_share") > before + 0.05);
	assert_true(metric(c, "small_share") <= 0.9);
	dw_cache_close(c);
}

/*
 * Rule 2a: main keeps LRU order. With 10 entries small holds one; a key put and then read is
 * promoted to main by the next put, which then evicts from main. a1..a9 sit in main, a1 oldest;
 * a5 and then a1 are read. In LRU order a1 is now the newest and a5 leaves first; in the FIFO
 * order of plain S3-FIFO a1 (met first at the tail) goes back to the head first and leaves
 * before a5, so after these 16 evictions neither would be left.
 */
static void test_main_keeps_lru_order(void **state)
{
	dw_cache *c = open_s3(10);
	int a1, a5;

	for (unsigned k = 0; k < 10; k++) {
		assert_int_equal(put_u(c, k, 1), 0);
		assert_int_equal(has_u(c, k), 1);
	}
	/* this put moves k0..k9 to main and evicts k0, main's oldest */
	assert_int_equal(put_u(c, 100, 1), 0);
	assert_int_equal(metric(c, "main_entries"), 9);
	assert_int_equal(has_u(c, 5), 1);
	assert_int_equal(has_u(c, 1), 1);
	/* each put promotes the previous key (read once) and evicts one entry from main */
	for (unsigned k = 101; k < 117; k++) {
		assert_int_equal(has_u(c, k - 1), 1);
		assert_int_equal(put_u(c, k, 1), 0);
		check_bounds(c);
	}
	a1 = has_u(c, 1);
	a5 = has_u(c, 5);
	print_message("after the evictions: k1 %s, k5 %s\n", a1 ? "kept" : "gone",
		      a5 ? "kept" : "gone");
	assert_int_equal(a1, 1);
	assert_int_equal(a5, 0);
	dw_cache_close(c);
}

/* Hits of an LRU of cap entries (cap <= 128) on trace, counted from request `from` on. */
static unsigned lru_hits(const unsigned *trace, size_t n, size_t cap, size_t from)
{
	unsigned lru[128]; /* lru[0] is the most recent */
	size_t len = 0;
	unsigned hits = 0;

	assert_true(cap <= 128);
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		while (j < len && lru[j] != trace[i])
			j++;
		if (j < len) {
			hits += i >= from;
		} else if (len < cap) {
			len++;
		} else {
			j = cap - 1;
		}
		if (j == len)
			j = len - 1;
		memmove(&lru[1], &lru[0], j * sizeof(lru[0]));
		lru[0] = trace[i];
	}
	return hits;
}

/*
 * Rule 7: once zigzag has pushed small's share up, small keeps hit keys itself (CLOCK) and ghost
 * hits come back to small, so the cache holds the most recent keys as LRU does. Without the rule
 * the keys hit at each turn are moved to main and crowd it out: 90 % of LRU's hits here, against 99
 * % with it.
 */
static void test_recency_mode_tracks_lru(void **state)
{
	enum { ROUNDS = 30, PER = 800, WARM = 10 };
	static unsigned trace[ROUNDS * PER];
	dw_cache *c = open_s3(100);
	unsigned hits = 0, ref;

	for (size_t i = 0; i < ROUNDS * PER; i++) {
		size_t j = i % PER;

		trace[i] = (unsigned)(j < PER / 2 ? j : PER - 1 - j);
	}
	for (size_t i = 0; i < ROUNDS * PER; i++) {
		if (has_u(c, trace[i]))
			hits += i >= WARM * PER;
		else
			assert_int_equal(put_u(c, trace[i], 1), 0);
	}
	check_bounds(c);
	ref = lru_hits(trace, ROUNDS * PER, 100, WARM * PER);
	print_message("zigzag hits after warm-up: %u, LRU %u\n", hits, ref);
	assert_true(ref > 0);
	assert_true(metric(c, "small_share") >= 0.35);
	assert_true((double)hits >= 0.95 * (double)ref);
	dw_cache_close(c);
}

/*
 * Rule 8 on a zigzag, where LRU is optimal: the shadows never see S3-FIFO ahead, so the cache
 * keeps LRU order and hits exactly what LRU hits (the S3-FIFO rules alone hit fewer; see
 * test_recency_mode_tracks_lru).
 */
static void test_policy_tracks_lru(void **state)
{
	enum { ROUNDS = 30, PER = 800 };
	static unsigned trace[ROUNDS * PER];
	dw_cache *c = open_cache(100, 0, NULL, 0);
	unsigned hits = 0, ref;

	for (size_t i = 0; i < ROUNDS * PER; i++) {
		size_t j = i % PER;

		trace[i] = (unsigned)(j < PER / 2 ? j : PER - 1 - j);
	}
	for (size_t i = 0; i < ROUNDS * PER; i++) {
		if (has_u(c, trace[i]))
			hits++;
		else
			assert_int_equal(put_u(c, trace[i], 1), 0);
		if (i % 97 == 0)
			check_bounds(c);
	}
	ref = lru_hits(trace, ROUNDS * PER, 100, 0);
	print_message("zigzag hits: %u, LRU %u, order %s, %g switches\n", hits, ref,
		      metric(c, "policy_lru") == 1 ? "LRU" : "S3-FIFO",
		      metric(c, "policy_switches_total"));
	assert_true(ref > 1000);
	assert_true(metric(c, "policy_lru") == 1);
	assert_true(hits >= ref);
	dw_cache_close(c);
}

/*
 * Rule 8 on a hot set read between one-time scans: LRU loses the hot set to every scan, the
 * S3-FIFO shadow keeps it, so after a round or two the cache turns to S3-FIFO order and the next
 * scans leave the hot set alone.
 */
static void test_policy_learns_scan_resistance(void **state)
{
	enum { ROUNDS = 12, HOT = 40, READS = 4, SCAN = 400, PER = HOT * READS + SCAN };
	static unsigned trace[ROUNDS * PER];
	dw_cache *c = open_cache(100, 0, NULL, 0);
	unsigned hits = 0, ref, fresh = 1000, kept = 0;
	size_t n = 0;

	assert_true(metric(c, "policy_lru") == 1); /* a new cache starts in LRU order */
	for (unsigned r = 0; r < ROUNDS; r++) {
		for (unsigned i = 0; i < HOT * READS; i++)
			trace[n++] = i % HOT;
		for (unsigned i = 0; i < SCAN; i++)
			trace[n++] = fresh++;
	}
	for (size_t i = 0; i < n; i++) {
		if (has_u(c, trace[i]))
			hits++;
		else
			assert_int_equal(put_u(c, trace[i], 1), 0);
	}
	ref = lru_hits(trace, n, 100, 0);
	print_message("hot set + scans: hits %u, LRU %u, %g switches\n", hits, ref,
		      metric(c, "policy_switches_total"));
	assert_true(metric(c, "policy_lru") == 0);
	assert_true(hits > ref + (ROUNDS / 2) * HOT);
	/* one more scan: the hot set stays */
	for (unsigned i = 0; i < SCAN; i++) {
		if (!has_u(c, fresh + i))
			assert_int_equal(put_u(c, fresh + i, 1), 0);
	}
	for (unsigned k = 0; k < HOT; k++)
		kept += has_u(c, k);
	assert_int_equal(kept, HOT);
	dw_cache_close(c);
}

static void run_hot_and_scans(dw_cache *c, unsigned rounds, unsigned *fresh)
{
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < 40 * 4; i++) {
			if (!has_u(c, i % 40))
				assert_int_equal(put_u(c, i % 40, 1), 0);
		}
		for (unsigned i = 0; i < 400; i++, (*fresh)++) {
			if (!has_u(c, *fresh))
				assert_int_equal(put_u(c, *fresh, 1), 0);
		}
	}
}

static void run_zigzag(dw_cache *c, unsigned rounds)
{
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < 800; i++) {
			unsigned k = 100000 + (i < 400 ? i : 799 - i);

			if (!has_u(c, k))
				assert_int_equal(put_u(c, k, 1), 0);
		}
	}
}

/*
 * Rule 8's backoff: a return from S3-FIFO to LRU order doubles the lead S3-FIFO needs next time
 * (policy_s3_bar), and a long calm without a switch halves it back, so a near-tie does not make
 * the cache flip back and forth.
 */
static void test_policy_backs_off_after_a_return(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	unsigned fresh = 1000;

	assert_true(metric(c, "policy_s3_bar") == 1);
	run_hot_and_scans(c, 12, &fresh);
	assert_true(metric(c, "policy_lru") == 0);
	assert_true(metric(c, "policy_s3_bar") == 1); /* going to S3-FIFO costs nothing */
	run_zigzag(c, 30);
	assert_true(metric(c, "policy_lru") == 1);
	assert_true(metric(c, "policy_switches_total") == 2);
	assert_true(metric(c, "policy_s3_bar") == 2);
	/* 256 windows of 256 sampled gets without a switch halve it */
	run_zigzag(c, 256 * 256 / 800 + 2);
	assert_true(metric(c, "policy_s3_bar") == 1);
	assert_true(metric(c, "policy_switches_total") == 2);
	dw_cache_close(c);
}

/*
 * Rule 5a: a long recency-bound phase (zigzag) grows the S3-FIFO shadow's small share to its
 * maximum; without evidence from the ghost it drifts back, so a later phase of a hot set read
 * between scans wins S3-FIFO order back (it did not, in 300 rounds, before the drift).
 */
static void test_policy_recovers_after_a_recency_phase(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	unsigned fresh = 1000, rounds = 0;

	run_hot_and_scans(c, 12, &fresh);
	assert_true(metric(c, "policy_lru") == 0);
	run_zigzag(c, 120);
	assert_true(metric(c, "policy_lru") == 1);
	while (rounds < 300 && metric(c, "policy_lru") == 1) {
		run_hot_and_scans(c, 1, &fresh);
		rounds++;
	}
	print_message("back to S3-FIFO order after %u rounds of hot set + scans\n", rounds);
	assert_true(metric(c, "policy_lru") == 0);
	assert_true(rounds < 100);
	dw_cache_close(c);
}

/*
 * LRU mode keeps new keys in small and hit keys in main, evicting the older tail by tick: that
 * must be exactly LRU, hit for hit, on a skewed random trace.
 */
static void test_lru_order_is_exact(void **state)
{
	enum { N = 20000, CAP = 64 };
	static unsigned trace[N];
	dw_cache *c = open_cache(CAP, 0, NULL, 0);
	uint64_t rng = 12345;
	unsigned hits = 0, ref;

	assert_int_equal(dw__cache_pin_order(c, DW__CACHE_LRU), 0);
	for (size_t i = 0; i < N; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		/* half the requests on 40 keys, half on 400: hits and evictions from both queues */
		trace[i] = (unsigned)((rng >> 33) % ((rng >> 20) & 1 ? 40 : 400));
	}
	for (size_t i = 0; i < N; i++) {
		if (has_u(c, trace[i]))
			hits++;
		else
			assert_int_equal(put_u(c, trace[i], 1), 0);
	}
	ref = lru_hits(trace, N, CAP, 0);
	print_message("random trace: hits %u, LRU %u\n", hits, ref);
	assert_true(ref > N / 4);
	assert_int_equal(hits, ref);
	check_bounds(c);
	dw_cache_close(c);
}

/* The shadows are capped whatever the cache's size, and absent without a count bound. */
static void test_policy_shadow_memory(void **state)
{
	dw_cache *c = open_cache(20000, 0, NULL, 0);
	dw_cache *b = open_cache(0, 1000, NULL, 0);
	double shadow;

	for (unsigned k = 0; k < 100000; k++) {
		if (!has_u(c, k % 60000))
			assert_int_equal(put_u(c, k % 60000, 1), 0);
	}
	shadow = metric(c, "shadow_entries");
	print_message("shadow entries for a cache of 20000: %g\n", shadow);
	/* two shadows of 2048 entries, each with a ghost of 90 % of that */
	assert_true(shadow > 0);
	assert_true(shadow <= 2 * (2048 + 2048 * 0.9 + 1));
	check_bounds(c);
	for (unsigned k = 0; k < 100; k++)
		assert_int_equal(put_u(c, k, 1), 0);
	assert_true(metric(b, "shadow_entries") == 0);
	assert_true(metric(b, "policy_lru") == 0);
	assert_int_equal(dw__cache_pin_order(c, 7), DW_EUSAGE);
	assert_int_equal(dw__cache_pin_order(c, DW__CACHE_LRU), 0);
	assert_true(metric(c, "shadow_entries") == 0);
	assert_true(metric(c, "policy_lru") == 1);
	dw_cache_close(c);
	dw_cache_close(b);
}

static void test_ttl(void **state)
{
	dw_fake_clock fc;
	dw_cache *c;
	dw_cache_stats st;

	dw_fake_clock_init(&fc, 1000 * DW_NS_PER_SEC, 0);
	c = open_cache(100, 0, &fc.clock, 1000);
	assert_int_equal(put_u(c, 1, 4), 0);
	assert_int_equal(put_u(c, 2, 4), 0);
	dw_fake_clock_advance(&fc, 999 * DW_NS_PER_MS);
	assert_int_equal(has_u(c, 1), 1);
	assert_int_equal(put_u(c, 2, 4), 0); /* a put restarts the age */
	dw_fake_clock_advance(&fc, 1 * DW_NS_PER_MS);
	assert_int_equal(has_u(c, 1), 0);
	assert_int_equal(has_u(c, 2), 1);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.expirations, 1);
	assert_int_equal(st.entries, 1);

	/* a longer TTL set later applies to the entries already there */
	dw_cache_set_ttl(c, 5000);
	dw_fake_clock_advance(&fc, 3000 * DW_NS_PER_MS);
	assert_int_equal(has_u(c, 2), 1);
	dw_cache_set_ttl(c, 0);
	dw_fake_clock_advance(&fc, 3600 * DW_NS_PER_SEC);
	assert_int_equal(has_u(c, 2), 1);
	dw_cache_close(c);
}

static void test_ttl_eviction_counts_expirations(void **state)
{
	dw_fake_clock fc;
	dw_cache *c;
	dw_cache_stats st;

	dw_fake_clock_init(&fc, 1, 1);
	c = open_cache(10, 0, &fc.clock, 100);
	for (unsigned k = 0; k < 10; k++)
		assert_int_equal(put_u(c, k, 1), 0);
	dw_fake_clock_advance(&fc, 200 * DW_NS_PER_MS);
	for (unsigned k = 10; k < 20; k++)
		assert_int_equal(put_u(c, k, 1), 0);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 10);
	assert_int_equal(st.expirations, 10);
	assert_int_equal(st.evictions, 0);
	dw_cache_close(c);
}

static void test_resize(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	dw_cache_stats st;

	for (unsigned k = 0; k < 100; k++)
		assert_int_equal(put_u(c, k, 10), 0);
	assert_int_equal(dw_cache_resize(c, 30, 0), 0);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 30);
	assert_int_equal(st.max_entries, 30);
	assert_int_equal(st.evictions, 70);
	/* bytes: entries are 2..3 key bytes + 10 value bytes */
	assert_int_equal(dw_cache_resize(c, 0, 100), 0);
	dw_cache_stats_get(c, &st);
	assert_true(st.bytes <= 100);
	assert_true(st.entries >= 7);
	/* growing keeps everything and lets more in */
	assert_int_equal(dw_cache_resize(c, 1000, 0), 0);
	for (unsigned k = 0; k < 500; k++)
		assert_int_equal(put_u(c, k, 10), 0);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 500);
	dw_cache_close(c);
}

static void test_counters(void **state)
{
	dw_cache *c = open_cache(3, 0, NULL, 0);
	dw_cache_stats st;

	assert_int_equal(has_u(c, 1), 0);    /* miss */
	assert_int_equal(put_u(c, 1, 1), 0); /* insert */
	assert_int_equal(has_u(c, 1), 1);    /* hit */
	assert_int_equal(has_u(c, 1), 1);    /* hit */
	assert_int_equal(put_u(c, 1, 2), 0); /* replace: insert */
	for (unsigned k = 2; k < 6; k++)     /* 4 inserts, 2 evictions */
		assert_int_equal(put_u(c, k, 1), 0);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.inserts, 6);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(st.expirations, 0);
	assert_int_equal(st.entries, 3);
	dw_cache_close(c);
}

static void test_delete(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	dw_cache_stats st;

	assert_int_equal(dw_cache_put(c, "user/1", 6, "a", 1), 0);
	assert_int_equal(dw_cache_put(c, "user/2", 6, "b", 1), 0);
	assert_int_equal(dw_cache_put(c, "user/10", 7, "c", 1), 0);
	assert_int_equal(dw_cache_put(c, "users", 5, "d", 1), 0);
	assert_int_equal(dw_cache_put(c, "item/1", 6, "e", 1), 0);

	assert_int_equal(dw_cache_delete(c, "user/2", 6), 0);
	assert_int_equal(dw_cache_delete(c, "user/2", 6), DW_ENOTFOUND);
	assert_int_equal(dw_cache_delete_prefix(c, "user/", 5), 2);
	assert_int_equal(dw_cache_delete_prefix(c, "user/", 5), 0);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.bytes, 5 + 1 + 6 + 1);
	{
		void *v;
		size_t vl;

		assert_int_equal(dw_cache_get(c, "users", 5, &v, &vl), 0);
		dw_free(v);
	}
	assert_int_equal(dw_cache_delete_prefix(c, "", 0), 2);
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	dw_cache_close(c);
}

/* ---- scalable ---- */

struct seen {
	double v[32];
	char names[32][32];
	int n;
};

static void collect_metric(void *arg, const dw_metric *m)
{
	struct seen *s = arg;

	assert_true(s->n < 32);
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", m->name);
	s->v[s->n++] = m->value;
}

static void collect_limit(void *arg, const dw_limit *l)
{
	struct seen *s = arg;

	assert_true(s->n < 32);
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", l->name);
	s->v[s->n++] = l->value;
}

static double lookup(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n; i++) {
		if (strcmp(s->names[i], name) == 0)
			return s->v[i];
	}
	fail_msg("no %s", name);
	return -1;
}

static double metric(dw_cache *c, const char *name)
{
	struct seen m = { 0 };
	const dw_scalable *s = dw_cache_scalable(c);

	assert_int_equal(s->ops->metrics(s->self, collect_metric, &m), 0);
	return lookup(&m, name);
}

static void test_scalable_metrics_limits(void **state)
{
	dw_cache *c = open_cache(10, 1000, NULL, 2500);
	const dw_scalable *s = dw_cache_scalable(c);
	struct seen m = { 0 }, l = { 0 };

	assert_string_equal(s->name, "cache");
	for (unsigned k = 0; k < 12; k++)
		assert_int_equal(put_u(c, k, 10), 0);
	assert_int_equal(has_u(c, 11), 1);
	assert_int_equal(has_u(c, 500), 0);
	assert_int_equal(s->ops->metrics(s->self, collect_metric, &m), 0);
	assert_true(lookup(&m, "entries") == 10);
	assert_true(lookup(&m, "capacity_entries") == 10);
	assert_true(lookup(&m, "capacity_bytes") == 1000);
	assert_true(lookup(&m, "hits_total") == 1);
	assert_true(lookup(&m, "misses_total") == 1);
	assert_true(lookup(&m, "evictions_total") == 2);
	assert_true(lookup(&m, "expirations_total") == 0);
	assert_true(lookup(&m, "hit_ratio") == 0.5);
	assert_true(lookup(&m, "bytes") > 100);
	assert_true(lookup(&m, "ttl_seconds") == 2.5);
	assert_int_equal(s->ops->limits(s->self, collect_limit, &l), 0);
	assert_true(lookup(&l, "max_entries") == 10);
	assert_true(lookup(&l, "max_bytes") == 1000);
	assert_true(lookup(&l, "ttl_seconds") == 2.5);
	assert_int_equal(s->ops->state(s->self), DW_BP_NORMAL);
	dw_cache_close(c);
}

static void test_scalable_reconfigure(void **state)
{
	dw_cache *c = open_cache(100, 0, NULL, 0);
	const dw_scalable *s = dw_cache_scalable(c);
	char err[128];
	dw_cache_stats st;
	struct seen l = { 0 };

	for (unsigned k = 0; k < 100; k++)
		assert_int_equal(put_u(c, k, 10), 0);

	/* one good and one bad change: nothing applies, the message names the bad limit */
	{
		dw_limit_change ch[] = { { "max_entries", 10, NULL }, { "ttl_seconds", -1, NULL } };

		assert_int_equal(s->ops->reconfigure(s->self, ch, 2, err, sizeof(err)), DW_ELIMIT);
		assert_non_null(strstr(err, "ttl_seconds"));
	}
	{
		dw_limit_change ch[] = { { "max_entries", 10, NULL }, { "no_such", 1, NULL } };

		assert_int_equal(s->ops->reconfigure(s->self, ch, 2, err, sizeof(err)), DW_ELIMIT);
		assert_non_null(strstr(err, "no_such"));
	}
	{
		dw_limit_change ch[] = { { "max_entries", 10.5, NULL } };

		assert_int_equal(s->ops->reconfigure(s->self, ch, 1, err, sizeof(err)), DW_ELIMIT);
	}
	{
		dw_limit_change ch[] = { { "max_bytes", 0, "lots" } };

		assert_int_equal(s->ops->reconfigure(s->self, ch, 1, err, sizeof(err)), DW_ELIMIT);
	}
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.entries, 100);
	assert_int_equal(st.max_entries, 100);
	assert_int_equal(st.max_bytes, 0);

	/* all valid: applied at once, shrinking evicts */
	{
		dw_limit_change ch[] = { { "max_entries", 20, NULL },
					 { "max_bytes", 200, NULL },
					 { "ttl_seconds", 0.25, NULL } };

		assert_int_equal(s->ops->reconfigure(s->self, ch, 3, err, sizeof(err)), 0);
	}
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.max_entries, 20);
	assert_int_equal(st.max_bytes, 200);
	assert_true(st.entries <= 20);
	assert_true(st.bytes <= 200);
	assert_int_equal(s->ops->limits(s->self, collect_limit, &l), 0);
	assert_true(lookup(&l, "ttl_seconds") == 0.25);
	dw_cache_close(c);
}

/* ---- threads ---- */

struct thr {
	dw_cache *c;
	unsigned id;
	unsigned long gets;
};

static void *worker(void *p)
{
	struct thr *t = p;
	uint64_t x = 0x9e3779b97f4a7c15ULL * (t->id + 1);

	for (unsigned i = 0; i < 20000; i++) {
		unsigned k;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = (unsigned)(x % 500);
		switch (x >> 60) {
		case 0:
			dw_cache_delete(t->c, &k, sizeof(k));
			break;
		case 1:
		case 2:
		case 3:
		case 4:
			assert_int_equal(dw_cache_put(t->c, &k, sizeof(k), &k, sizeof(k)), 0);
			break;
		default: {
			void *v;
			size_t vl;
			int rc = dw_cache_get(t->c, &k, sizeof(k), &v, &vl);

			t->gets++;
			if (rc == 0) {
				/* a value is always the one written for its key */
				assert_int_equal(vl, sizeof(k));
				assert_memory_equal(v, &k, sizeof(k));
				dw_free(v);
			} else {
				assert_int_equal(rc, DW_ENOTFOUND);
			}
		}
		}
		if (t->id == 0 && i % 5000 == 0)
			assert_int_equal(dw_cache_resize(t->c, 100 + i / 100, 4000), 0);
	}
	return NULL;
}

static void test_threads(void **state)
{
	dw_cache *c = open_cache(100, 4000, NULL, 0);
	pthread_t th[4];
	struct thr t[4];
	dw_cache_stats st;
	unsigned long gets = 0;

	for (unsigned i = 0; i < 4; i++) {
		t[i] = (struct thr){ .c = c, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &t[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		gets += t[i].gets;
	}
	dw_cache_stats_get(c, &st);
	assert_int_equal(st.hits + st.misses, gets);
	check_bounds(c);
	dw_cache_close(c);
}

/* ---- allocation failure ---- */

static int alloc_scenario(bool counting)
{
	dw_cache_config cfg;
	dw_cache *c = NULL;
	int rc;

	dw_cache_config_default(&cfg);
	cfg.max_entries = 40;
	cfg.max_bytes = 2000;
	rc = dw_cache_open(&cfg, &c);
	if (rc < 0) {
		assert_int_equal(rc, -ENOMEM);
		assert_null(c);
		return 1;
	}
	for (unsigned k = 0; k < 200; k++) {
		rc = put_u(c, k % 90, 20);
		assert_true(rc == 0 || rc == -ENOMEM);
		if (k % 3 == 0) {
			char key[32];
			void *v = NULL;
			size_t vl;

			snprintf(key, sizeof(key), "k%u", k % 90);
			rc = dw_cache_get(c, key, strlen(key), &v, &vl);
			assert_true(rc == 0 || rc == DW_ENOTFOUND || rc == -ENOMEM);
			dw_free(v);
		}
		check_bounds(c);
	}
	rc = dw_cache_resize(c, 10, 0);
	assert_true(rc == 0 || rc == -ENOMEM);
	check_bounds(c);
	rc = dw_cache_resize(c, 200, 0);
	assert_true(rc == 0 || rc == -ENOMEM);
	rc = dw_cache_delete_prefix(c, "k1", 2);
	assert_true(rc >= 0);
	check_bounds(c);
	/* still usable once memory is back */
	if (!counting)
		dw_alloc_fail_nth(0);
	assert_int_equal(put_u(c, 5000, 4), 0);
	assert_int_equal(has_u(c, 5000), 1);
	dw_cache_close(c);
	return 0;
}

static void test_alloc_failure(void **state)
{
	unsigned long total;

	dw_alloc_fail_nth(0);
	alloc_scenario(true);
	total = dw_alloc_fail_nth(0);
	assert_true(total > 10);
	for (unsigned long nth = 1; nth <= total + 1; nth++) {
		dw_alloc_fail_nth(nth);
		alloc_scenario(false);
	}
	dw_alloc_fail_nth(0);
}

/* ---- store ---- */

struct tmpdir {
	char path[512];
};

static void tmp_make(struct tmpdir *t)
{
	const char *base = getenv("DW_TEST_TMPDIR");
	int n;

	if (base && *base) {
		char cmd[600];

		n = snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", base);
		assert_true(n > 0 && (size_t)n < sizeof(cmd));
		assert_int_equal(system(cmd), 0);
	} else {
		base = "/tmp";
	}
	n = snprintf(t->path, sizeof(t->path), "%s/cache-XXXXXX", base);
	assert_true(n > 0 && (size_t)n < sizeof(t->path));
	assert_non_null(mkdtemp(t->path));
}

static void tmp_remove(struct tmpdir *t)
{
	char cmd[600];
	int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);

	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	assert_int_equal(system(cmd), 0);
}

static dw_cache *open_with_store(dw_store *st, size_t max_entries)
{
	dw_cache_config cfg;
	dw_cache *c = NULL;

	dw_cache_config_default(&cfg);
	cfg.max_entries = max_entries;
	cfg.store = st;
	assert_int_equal(dw_cache_open(&cfg, &c), 0);
	return c;
}

static void test_store_write_through(void **state)
{
	struct tmpdir td;
	char uri[600];
	dw_store *st = NULL;
	dw_cache *c;
	dw_cache_stats s;
	void *v;
	size_t vl;

	tmp_make(&td);
	snprintf(uri, sizeof(uri), "sqlite:%s/store.db", td.path);
	assert_int_equal(dw_store_open(uri, &st), 0);
	c = open_with_store(st, 2);
	assert_int_equal(dw_cache_put(c, "ab", 2, "v-ab", 4), 0);
	assert_int_equal(dw_cache_put(c, "\x00\xff", 2, "bin", 3), 0);
	assert_int_equal(dw_cache_put(c, "p/1", 3, "1", 1), 0);
	assert_int_equal(dw_cache_put(c, "p/2", 3, "2", 1), 0);
	/* the stored key is the prefix + hex of the key */
	assert_int_equal(dw_store_get(st, "dw://cache/6162", &v, &vl), 0);
	assert_int_equal(vl, 4);
	assert_memory_equal(v, "v-ab", 4);
	dw_free(v);
	assert_int_equal(dw_store_get(st, "dw://cache/00ff", &v, &vl), 0);
	dw_free(v);
	/* a key too long for a dw:// key is refused before anything is written */
	{
		char longkey[600];

		memset(longkey, 'x', sizeof(longkey));
		assert_int_equal(dw_cache_put(c, longkey, sizeof(longkey), "v", 1), DW_EBADKEY);
	}
	dw_cache_close(c);
	dw_store_close(st);

	/* reopen both: the fresh cache loads on miss */
	st = NULL;
	assert_int_equal(dw_store_open(uri, &st), 0);
	c = open_with_store(st, 100);
	assert_int_equal(dw_cache_get(c, "ab", 2, &v, &vl), 0);
	assert_int_equal(vl, 4);
	assert_memory_equal(v, "v-ab", 4);
	dw_free(v);
	assert_int_equal(dw_cache_get(c, "ab", 2, &v, &vl), 0); /* now from memory */
	dw_free(v);
	dw_cache_stats_get(c, &s);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.hits, 1);
	assert_int_equal(dw_cache_get(c, "zz", 2, &v, &vl), DW_ENOTFOUND);

	/* delete and delete_prefix reach the store */
	assert_int_equal(dw_cache_delete(c, "\x00\xff", 2), 0); /* only in the store */
	assert_int_equal(dw_store_get(st, "dw://cache/00ff", &v, &vl), DW_ENOTFOUND);
	assert_int_equal(dw_cache_delete_prefix(c, "p/", 2), 2);
	assert_int_equal(dw_store_get(st, "dw://cache/702f31", &v, &vl), DW_ENOTFOUND);
	assert_int_equal(dw_cache_get(c, "p/1", 3, &v, &vl), DW_ENOTFOUND);
	assert_int_equal(dw_cache_get(c, "ab", 2, &v, &vl), 0);
	dw_free(v);
	dw_cache_close(c);
	dw_store_close(st);
	tmp_remove(&td);
}

struct sthr {
	dw_cache *c;
	unsigned id;
};

static void *store_worker(void *p)
{
	struct sthr *t = p;
	uint64_t x = 0x2545f4914f6cdd1dULL * (t->id + 1);

	for (unsigned i = 0; i < 150; i++) {
		char key[16], val[32];
		void *v;
		size_t vl;
		int rc;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		snprintf(key, sizeof(key), "s%u", (unsigned)(x % 12));
		switch ((x >> 40) % 8) {
		case 0:
			rc = dw_cache_delete(t->c, key, strlen(key));
			assert_true(rc == 0 || rc == DW_ENOTFOUND);
			break;
		case 1:
		case 2:
		case 3:
			snprintf(val, sizeof(val), "t%u-%u", t->id, i);
			assert_int_equal(dw_cache_put(t->c, key, strlen(key), val, strlen(val)), 0);
			break;
		default:
			rc = dw_cache_get(t->c, key, strlen(key), &v, &vl);
			assert_true(rc == 0 || rc == DW_ENOTFOUND);
			if (rc == 0)
				dw_free(v);
		}
	}
	return NULL;
}

/* Four threads put, get (loading on miss) and delete a few keys through a small cache: in the
 * end, what memory answers for each key is exactly what the store holds. */
static void test_store_threads_agree(void **state)
{
	struct tmpdir td;
	char uri[600];
	dw_store *st = NULL;
	dw_cache *c;
	pthread_t th[4];
	struct sthr t[4];

	tmp_make(&td);
	snprintf(uri, sizeof(uri), "sqlite:%s/store.db", td.path);
	assert_int_equal(dw_store_open(uri, &st), 0);
	c = open_with_store(st, 4);
	for (unsigned i = 0; i < 4; i++) {
		t[i] = (struct sthr){ .c = c, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, store_worker, &t[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	check_bounds(c);
	for (unsigned k = 0; k < 12; k++) {
		char key[16], skey[64];
		void *mv = NULL, *sv = NULL;
		size_t ml = 0, sl = 0;
		int mrc, src;

		snprintf(key, sizeof(key), "s%u", k);
		snprintf(skey, sizeof(skey), "dw://cache/73%02x", (unsigned)'0' + k % 10);
		if (k >= 10)
			snprintf(skey, sizeof(skey), "dw://cache/7331%02x", (unsigned)'0' + k % 10);
		src = dw_store_get(st, skey, &sv, &sl);
		mrc = dw_cache_get(c, key, strlen(key), &mv, &ml);
		assert_int_equal(mrc, src);
		if (mrc == 0) {
			assert_int_equal(ml, sl);
			assert_memory_equal(mv, sv, ml);
		}
		dw_free(mv);
		dw_free(sv);
	}
	dw_cache_close(c);
	dw_store_close(st);
	tmp_remove(&td);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_put_get_replace),
		cmocka_unit_test(test_bound_entries),
		cmocka_unit_test(test_bound_bytes),
		cmocka_unit_test(test_scan_resistance),
		cmocka_unit_test(test_ghost_readmits_to_main),
		cmocka_unit_test(test_small_share_adapts),
		cmocka_unit_test(test_recency_mode_tracks_lru),
		cmocka_unit_test(test_main_keeps_lru_order),
		cmocka_unit_test(test_policy_tracks_lru),
		cmocka_unit_test(test_policy_learns_scan_resistance),
		cmocka_unit_test(test_policy_backs_off_after_a_return),
		cmocka_unit_test(test_policy_recovers_after_a_recency_phase),
		cmocka_unit_test(test_policy_shadow_memory),
		cmocka_unit_test(test_lru_order_is_exact),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_ttl_eviction_counts_expirations),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_scalable_metrics_limits),
		cmocka_unit_test(test_scalable_reconfigure),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_store_write_through),
		cmocka_unit_test(test_store_threads_agree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
