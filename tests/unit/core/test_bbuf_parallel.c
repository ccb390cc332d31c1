// SPDX-License-Identifier: MIT
/*
 * dw_bbuf with parallel producers (dw_source.read_part): the consumer sees the bytes in order
 * whatever order the workers finish their parts in; an error or the end in one part comes after
 * every byte before it; cancel stops workers wherever they wait; a stream that cannot charge
 * the budget for its workers reads with one producer; memory stays within the cap and the
 * budget comes back whole.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/bbuf.h"

#define CHUNK 4096u

static void sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L };

	nanosleep(&ts, NULL);
}

/*
 * A source of `size` pattern bytes cut into parts of part_bytes. Part p sleeps a little
 * (varying by part, so workers finish out of order), fails with fail_rc if p == fail_part,
 * and blocks until released if p == block_part.
 */
struct psrc {
	size_t size, part_bytes;
	uint64_t fail_part, block_part;
	int fail_rc;
	_Atomic unsigned parts_read, single_reads, closes, in_block;
	_Atomic unsigned busy, max_busy; /* workers inside read_part at once */
	_Atomic bool release;
	_Atomic unsigned worker_seen[DW_BBUF_WORKERS_MAX];
	size_t off; /* single-producer read position */
	char msg[64];
};

static unsigned char pattern(size_t i)
{
	return (unsigned char)((i * 2654435761u) >> 13);
}

static ssize_t p_read_part(void *ctx, unsigned w, uint64_t part, void *const *bufs, size_t nbufs,
			   size_t chunk)
{
	struct psrc *s = ctx;
	size_t start = part * s->part_bytes, n, done = 0;
	unsigned busy = atomic_fetch_add(&s->busy, 1) + 1, m = atomic_load(&s->max_busy);

	while (busy > m && !atomic_compare_exchange_weak(&s->max_busy, &m, busy))
		;
	assert_true(w < DW_BBUF_WORKERS_MAX);
	atomic_fetch_add(&s->worker_seen[w], 1);
	atomic_fetch_add(&s->parts_read, 1);
	sleep_us((unsigned)((part * 7919) % 5) * 300);
	if (part == s->block_part) {
		atomic_store(&s->in_block, 1);
		while (!atomic_load(&s->release))
			sleep_us(200);
	}
	atomic_fetch_sub(&s->busy, 1);
	if (part == s->fail_part) {
		snprintf(s->msg, sizeof(s->msg), "part %llu is broken", (unsigned long long)part);
		return s->fail_rc;
	}
	if (start >= s->size)
		return 0;
	n = s->size - start < s->part_bytes ? s->size - start : s->part_bytes;
	for (size_t i = 0; done < n; i++) {
		size_t k = n - done < chunk ? n - done : chunk;

		assert_true(i < nbufs);
		for (size_t j = 0; j < k; j++)
			((unsigned char *)bufs[i])[j] = pattern(start + done + j);
		done += k;
	}
	return (ssize_t)n;
}

static ssize_t p_read(void *ctx, void *buf, size_t len)
{
	struct psrc *s = ctx;
	size_t n = s->size - s->off < len ? s->size - s->off : len;

	atomic_fetch_add(&s->single_reads, 1);
	for (size_t j = 0; j < n; j++)
		((unsigned char *)buf)[j] = pattern(s->off + j);
	s->off += n;
	return (ssize_t)n;
}

static void p_close(void *ctx)
{
	atomic_fetch_add(&((struct psrc *)ctx)->closes, 1);
}

static const char *p_errmsg(void *ctx)
{
	return ((struct psrc *)ctx)->msg;
}

static dw_source psource(struct psrc *s, unsigned workers)
{
	dw_source src = { .read = p_read,
			  .close = p_close,
			  .errmsg = p_errmsg,
			  .ctx = s,
			  .read_part = p_read_part,
			  .part_bytes = s->part_bytes,
			  .workers = workers };

	return src;
}

static void psrc_init(struct psrc *s, size_t size, size_t part_bytes)
{
	memset(s, 0, sizeof(*s));
	s->size = size;
	s->part_bytes = part_bytes;
	s->fail_part = UINT64_MAX;
	s->block_part = UINT64_MAX;
}

static dw_membudget *budget_bytes(size_t n)
{
	dw_membudget *bud;

	assert_int_equal(dw_membudget_open(n, &bud), 0);
	return bud;
}

static void pconfig(dw_bbuf_config *cfg, dw_membudget *bud)
{
	dw_bbuf_config_default(cfg);
	cfg->chunk_size = CHUNK;
	cfg->budget = bud;
}

/* Drain with dw_bbuf_next, checking the pattern; returns the final code, bytes in *n. */
static int drain_check(dw_bbuf *b, size_t *n)
{
	const void *chunk;
	size_t len;
	int rc;

	*n = 0;
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		const unsigned char *p = chunk;

		assert_true(len > 0 && len <= CHUNK);
		for (size_t j = 0; j < len; j++) {
			if (p[j] != pattern(*n + j))
				fail_msg("byte %zu out of order", *n + j);
		}
		*n += len;
		assert_true(dw_bbuf_held(b) <= dw_bbuf_cap(b));
	}
	return rc;
}

static void roundtrip(size_t size, size_t part_bytes, unsigned workers)
{
	dw_membudget *bud = budget_bytes(16u << 20);
	dw_bbuf_config cfg;
	struct psrc s;
	dw_bbuf *b;
	size_t n;

	psrc_init(&s, size, part_bytes);
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cap_bytes = 256 * CHUNK;
	cfg.budget = bud;
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, workers), &b), 0);
	assert_int_equal(drain_check(b, &n), 0);
	assert_int_equal(n, size);
	dw_bbuf_close(b);
	assert_int_equal(atomic_load(&s.closes), 1);
	assert_int_equal(atomic_load(&s.single_reads), 0); /* read in parts only */
	assert_true(atomic_load(&s.parts_read) >= (size + part_bytes - 1) / part_bytes);
	if (size > 8 * part_bytes) { /* more than one worker read parts */
		unsigned used = 0;

		for (unsigned w = 0; w < DW_BBUF_WORKERS_MAX; w++)
			used += atomic_load(&s.worker_seen[w]) > 0;
		assert_true(used >= 2);
	}
	assert_int_equal(dw_membudget_in_use(bud), 0);
	dw_membudget_close(bud);
}

static void test_parts_arrive_in_order(void **state)
{
	(void)state;
	roundtrip(0, 4 * CHUNK, 2);
	roundtrip(1, 4 * CHUNK, 2);
	roundtrip(4 * CHUNK, 4 * CHUNK, 2);
	roundtrip(300 * CHUNK + 17, 4 * CHUNK, 2);
	/* parts that are not whole chunks: each part's last chunk is short */
	roundtrip(200 * CHUNK + 5, 3 * CHUNK + 100, 2);
	roundtrip(500 * CHUNK, 4 * CHUNK, 4);
	roundtrip(100 * CHUNK, 2 * CHUNK, DW_BBUF_WORKERS_MAX + 3); /* clamped */
}

static void test_workers_read_at_once(void **state)
{
	(void)state;
	dw_membudget *bud = budget_bytes(16u << 20);
	dw_bbuf_config cfg;
	struct psrc s;
	dw_bbuf *b;
	size_t n;

	psrc_init(&s, 400 * CHUNK, 4 * CHUNK);
	pconfig(&cfg, bud);
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	assert_int_equal(drain_check(b, &n), 0);
	assert_int_equal(n, 400 * CHUNK);
	/* with parts sleeping up to 1.2 ms, two workers overlap */
	assert_int_equal(atomic_load(&s.max_busy), 2);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
}

static void check_fail_at(uint64_t fail_part, int fail_rc)
{
	dw_membudget *bud = budget_bytes(16u << 20);
	size_t part = 4 * CHUNK, n;
	dw_bbuf_config cfg;
	struct psrc s;
	dw_bbuf *b;

	psrc_init(&s, 100 * part, part);
	s.fail_part = fail_part;
	s.fail_rc = fail_rc;
	pconfig(&cfg, bud);
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	/* every byte before the failed part, then its error and the worker's message */
	assert_int_equal(drain_check(b, &n), fail_rc);
	assert_int_equal(n, fail_part * part);
	assert_non_null(strstr(dw_bbuf_errmsg(b), "is broken"));
	assert_int_equal(dw_bbuf_next(b, &(const void *){ NULL }, &n), fail_rc); /* sticky */
	dw_bbuf_close(b);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	dw_membudget_close(bud);
}

static void test_error_after_every_byte_before_it(void **state)
{
	(void)state;
	check_fail_at(0, DW_EBACKEND);
	check_fail_at(1, -EIO);
	check_fail_at(37, DW_ECORRUPT);
}

static void test_cancel_with_a_worker_blocked(void **state)
{
	(void)state;
	dw_membudget *bud = budget_bytes(16u << 20);
	dw_bbuf_config cfg;
	const void *chunk;
	struct psrc s;
	dw_bbuf *b;
	size_t len, n = 0;
	int rc;

	psrc_init(&s, 1000 * CHUNK, 4 * CHUNK);
	s.block_part = 5; /* parts after it finish and wait for their turn */
	pconfig(&cfg, bud);
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	while (n < 5 * 4 * CHUNK && (rc = dw_bbuf_next(b, &chunk, &len)) == 1)
		n += len;
	assert_int_equal(n, 5 * 4 * CHUNK);
	while (!atomic_load(&s.in_block))
		sleep_us(200);
	dw_bbuf_cancel(b);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_ECANCELED);
	atomic_store(&s.release, true); /* the read in progress returns; close joins */
	dw_bbuf_close(b);
	assert_int_equal(atomic_load(&s.closes), 1);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	dw_membudget_close(bud);
}

static void test_close_mid_stream(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++) {
		dw_membudget *bud = budget_bytes(16u << 20);
		dw_bbuf_config cfg;
		const void *chunk;
		struct psrc s;
		dw_bbuf *b;
		size_t len;

		psrc_init(&s, 2000 * CHUNK, 4 * CHUNK);
		pconfig(&cfg, bud);
		assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
		for (int k = 0; k < i * 3; k++)
			assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
		dw_bbuf_close(b);
		assert_int_equal(dw_membudget_in_use(bud), 0);
		dw_membudget_close(bud);
	}
}

/* A budget without room for a part per worker, or a cap below two parts per worker: one
 * producer, through read. */
static void test_falls_back_to_one_producer(void **state)
{
	(void)state;
	dw_membudget *bud = budget_bytes(6 * CHUNK);
	dw_bbuf_config cfg;
	struct psrc s;
	dw_bbuf *b;
	size_t n;

	psrc_init(&s, 50 * CHUNK + 3, 4 * CHUNK);
	pconfig(&cfg, bud);
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	assert_int_equal(drain_check(b, &n), 0);
	assert_int_equal(n, 50 * CHUNK + 3);
	assert_int_equal(atomic_load(&s.parts_read), 0);
	assert_true(atomic_load(&s.single_reads) > 0);
	assert_true(dw_membudget_peak(bud) <= 6 * CHUNK);
	dw_bbuf_close(b);
	dw_membudget_close(bud);

	bud = budget_bytes(16u << 20);
	psrc_init(&s, 50 * CHUNK, 4 * CHUNK);
	cfg.budget = bud;
	cfg.cap_bytes = 15 * CHUNK; /* 2 workers x 4 chunks x 2 = 16 needed */
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	assert_int_equal(drain_check(b, &n), 0);
	assert_int_equal(n, 50 * CHUNK);
	assert_int_equal(atomic_load(&s.parts_read), 0);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
}

/* Tight memory: the cap is exactly two parts per worker and the budget allows no more. */
static void test_tight_cap_still_flows(void **state)
{
	(void)state;
	dw_membudget *bud = budget_bytes(16 * CHUNK);
	dw_bbuf_config cfg;
	struct psrc s;
	dw_bbuf *b;
	size_t n;

	psrc_init(&s, 300 * CHUNK + 1, 4 * CHUNK);
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cap_bytes = 16 * CHUNK;
	cfg.budget = bud;
	assert_int_equal(dw_bbuf_open(&cfg, psource(&s, 2), &b), 0);
	assert_int_equal(drain_check(b, &n), 0);
	assert_int_equal(n, 300 * CHUNK + 1);
	assert_true(atomic_load(&s.parts_read) > 0);
	assert_true(dw_bbuf_peak(b) <= 16 * CHUNK);
	assert_true(dw_membudget_peak(bud) <= 16 * CHUNK);
	dw_bbuf_close(b);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	dw_membudget_close(bud);
}

/* A part bigger than it may be is a protocol error, with a message. */
static ssize_t overflow_part(void *ctx, unsigned w, uint64_t part, void *const *bufs, size_t nbufs,
			     size_t chunk)
{
	(void)ctx;
	(void)w;
	(void)part;
	(void)bufs;
	return (ssize_t)(nbufs * chunk + 1);
}

static void test_part_overflow_is_protocol_error(void **state)
{
	(void)state;
	dw_membudget *bud = budget_bytes(16u << 20);
	dw_bbuf_config cfg;
	struct psrc s;
	dw_source src;
	dw_bbuf *b;
	size_t n;

	psrc_init(&s, 100 * CHUNK, 4 * CHUNK);
	src = psource(&s, 2);
	src.read_part = overflow_part;
	pconfig(&cfg, bud);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(drain_check(b, &n), DW_EPROTO);
	assert_int_equal(n, 0);
	assert_non_null(strstr(dw_bbuf_errmsg(b), "source returned"));
	dw_bbuf_close(b);
	dw_membudget_close(bud);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_arrive_in_order),
		cmocka_unit_test(test_workers_read_at_once),
		cmocka_unit_test(test_error_after_every_byte_before_it),
		cmocka_unit_test(test_cancel_with_a_worker_blocked),
		cmocka_unit_test(test_close_mid_stream),
		cmocka_unit_test(test_falls_back_to_one_producer),
		cmocka_unit_test(test_tight_cap_still_flows),
		cmocka_unit_test(test_part_overflow_is_protocol_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
