// SPDX-License-Identifier: MIT
/*
 * dw_membudget: accounting, limits, waiting (woken by release or a raised total), timeouts on a
 * fake clock, the default budget, and the budget shared by streams: many streams on a small
 * budget all complete without the budget ever being exceeded, a stream that cannot get memory
 * fails with DW_EBUDGET and a clear message, and cancel wakes a producer waiting for memory.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dwscale/bbuf.h"

#define CHUNK 4096u

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Poll until the budget has `want` waiters; fail after 30 s (only a broken budget gets there). */
static void wait_for_waiters(dw_membudget *b, size_t want)
{
	for (int i = 0; i < 30000; i++) {
		if (dw_membudget_waiting(b) == want)
			return;
		sleep_ms(1);
	}
	fail_msg("waiters stuck at %zu, wanted %zu", dw_membudget_waiting(b), want);
}

static void test_accounting_and_limits(void **state)
{
	(void)state;
	dw_membudget *b = (dw_membudget *)&b;

	assert_int_equal(dw_membudget_open(0, &b), DW_ELIMIT);
	assert_null(b);
	assert_int_equal(dw_membudget_open(1000, &b), 0);
	assert_int_equal(dw_membudget_total(b), 1000);
	assert_int_equal(dw_membudget_acquire(b, 600, 0, NULL), 0);
	assert_int_equal(dw_membudget_acquire(b, 400, 0, NULL), 0);
	assert_int_equal(dw_membudget_in_use(b), 1000);
	/* full, and no wait asked for */
	assert_int_equal(dw_membudget_acquire(b, 1, 0, NULL), DW_EBUDGET);
	/* more than the total can never be granted: fails at once even with a wait */
	assert_int_equal(dw_membudget_acquire(b, 1001, DW_MEMBUDGET_WAIT_FOREVER, NULL),
			 DW_EBUDGET);
	dw_membudget_release(b, 600);
	assert_int_equal(dw_membudget_in_use(b), 400);
	assert_int_equal(dw_membudget_peak(b), 1000);
	dw_membudget_reset_peak(b);
	assert_int_equal(dw_membudget_peak(b), 400);
	/* a release larger than the use does not wrap */
	dw_membudget_release(b, 5000);
	assert_int_equal(dw_membudget_in_use(b), 0);
	assert_int_equal(dw_membudget_set_total(b, 0), DW_ELIMIT);
	assert_int_equal(dw_membudget_total(b), 1000);
	dw_membudget_release(b, 0);
	dw_membudget_close(b);
	dw_membudget_close(NULL);

	/* allocation failure: a clean -ENOMEM and no handle */
	b = (dw_membudget *)&b;
	dw_alloc_fail_nth(1);
	assert_int_equal(dw_membudget_open(1000, &b), -ENOMEM);
	dw_alloc_fail_nth(0);
	assert_null(b);
}

struct acq {
	dw_membudget *b;
	size_t bytes;
	uint64_t wait_ms;
	const dw_clock *clock;
	int rc;
};

static void *acquirer(void *arg)
{
	struct acq *a = arg;

	a->rc = dw_membudget_acquire(a->b, a->bytes, a->wait_ms, a->clock);
	return NULL;
}

static void test_release_and_raise_wake_waiters(void **state)
{
	(void)state;
	struct acq a = { .bytes = 100, .wait_ms = DW_MEMBUDGET_WAIT_FOREVER };
	dw_membudget *b;
	pthread_t t;

	assert_int_equal(dw_membudget_open(100, &b), 0);
	a.b = b;
	assert_int_equal(dw_membudget_acquire(b, 100, 0, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, acquirer, &a), 0);
	wait_for_waiters(b, 1);
	dw_membudget_release(b, 100);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(dw_membudget_in_use(b), 100);

	/* raising the total lets a waiter in without any release */
	assert_int_equal(pthread_create(&t, NULL, acquirer, &a), 0);
	wait_for_waiters(b, 1);
	assert_int_equal(dw_membudget_set_total(b, 200), 0);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(dw_membudget_in_use(b), 200);

	/* lowering below the use grants nothing until use falls under the new total */
	assert_int_equal(dw_membudget_set_total(b, 150), 0);
	assert_int_equal(dw_membudget_in_use(b), 200);
	dw_membudget_release(b, 100);
	assert_int_equal(dw_membudget_acquire(b, 51, 0, NULL), DW_EBUDGET);
	assert_int_equal(dw_membudget_acquire(b, 50, 0, NULL), 0);
	dw_membudget_release(b, 150);
	assert_int_equal(dw_membudget_timeouts(b), 0);
	dw_membudget_close(b);
}

static void test_timeout_on_fake_clock(void **state)
{
	(void)state;
	struct acq a = { .bytes = 10, .wait_ms = 1000 };
	dw_fake_clock fc;
	dw_membudget *b;
	pthread_t t;

	dw_fake_clock_init(&fc, 5 * DW_NS_PER_SEC, 0);
	a.clock = &fc.clock;
	assert_int_equal(dw_membudget_open(10, &b), 0);
	a.b = b;
	assert_int_equal(dw_membudget_acquire(b, 10, 0, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, acquirer, &a), 0);
	wait_for_waiters(b, 1);
	dw_fake_clock_advance(&fc, 999 * DW_NS_PER_MS);
	sleep_ms(20);
	assert_int_equal(dw_membudget_waiting(b), 1); /* not yet: 1 ms to go */
	dw_fake_clock_advance(&fc, DW_NS_PER_MS);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, DW_EBUDGET);
	assert_int_equal(dw_membudget_waiting(b), 0);
	assert_int_equal(dw_membudget_timeouts(b), 1);
	assert_int_equal(dw_membudget_in_use(b), 10);
	dw_membudget_release(b, 10);
	dw_membudget_close(b);
}

static void test_default_budget(void **state)
{
	(void)state;
	dw_membudget *d = dw_membudget_default();

	assert_non_null(d);
	assert_ptr_equal(d, dw_membudget_default());
	assert_int_equal(dw_membudget_total(d), DW_MEMBUDGET_DEFAULT_TOTAL);
	assert_int_equal(dw_membudget_set_total(d, 1u << 20), 0);
	assert_int_equal(dw_membudget_total(d), 1u << 20);
	dw_membudget_close(d); /* a no-op on the default budget */
	assert_int_equal(dw_membudget_set_total(d, DW_MEMBUDGET_DEFAULT_TOTAL), 0);
	assert_int_equal(dw_membudget_total(dw_membudget_default()), DW_MEMBUDGET_DEFAULT_TOTAL);
}

/* ---- streams sharing a budget ---------------------------------------------------------- */

#define NSTREAMS 8

struct consumer {
	dw_membudget *budget;
	const unsigned char *data;
	size_t size;
	int rc;
	size_t got;
	bool same;
};

static void *consume(void *arg)
{
	struct consumer *c = arg;
	dw_bbuf_config cfg;
	const void *chunk;
	dw_source src;
	dw_bbuf *b;
	size_t len;
	int i = 0;

	c->same = true;
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cap_bytes = 16 * CHUNK; /* each stream alone could take four times the budget */
	cfg.budget = c->budget;
	cfg.budget_wait_ms = DW_MEMBUDGET_WAIT_FOREVER;
	c->rc = dw_source_from_mem(c->data, c->size, &src);
	if (c->rc < 0)
		return NULL;
	c->rc = dw_bbuf_open(&cfg, src, &b);
	if (c->rc < 0)
		return NULL;
	while ((c->rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		if (c->got + len > c->size || memcmp(chunk, c->data + c->got, len) != 0)
			c->same = false;
		c->got += len;
		if (++i % 8 == 0)
			sleep_ms(1); /* a slowish consumer keeps producers contending */
	}
	dw_bbuf_close(b);
	return NULL;
}

struct sampler {
	dw_membudget *budget;
	_Atomic bool stop;
	size_t max_seen;
};

static void *sample(void *arg)
{
	struct sampler *s = arg;

	while (!atomic_load(&s->stop)) {
		size_t u = dw_membudget_in_use(s->budget);

		if (u > s->max_seen)
			s->max_seen = u;
		sleep_ms(0);
	}
	return NULL;
}

static void test_streams_share_small_budget(void **state)
{
	(void)state;
	size_t size = 512u << 10;
	struct consumer c[NSTREAMS];
	struct sampler smp;
	pthread_t t[NSTREAMS], ts;
	unsigned char *data = malloc(size);
	dw_membudget *bud;

	assert_non_null(data);
	for (size_t i = 0; i < size; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 9));
	assert_int_equal(dw_membudget_open(4 * CHUNK, &bud), 0);
	memset(&smp, 0, sizeof(smp));
	smp.budget = bud;
	assert_int_equal(pthread_create(&ts, NULL, sample, &smp), 0);
	for (int i = 0; i < NSTREAMS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].budget = bud;
		c[i].data = data;
		c[i].size = size;
		assert_int_equal(pthread_create(&t[i], NULL, consume, &c[i]), 0);
	}
	for (int i = 0; i < NSTREAMS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].rc, 0);
		assert_int_equal(c[i].got, size);
		assert_true(c[i].same);
	}
	atomic_store(&smp.stop, true);
	pthread_join(ts, NULL);
	assert_true(smp.max_seen <= 4 * CHUNK);
	assert_true(dw_membudget_peak(bud) <= 4 * CHUNK);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	assert_int_equal(dw_membudget_timeouts(bud), 0);
	dw_membudget_close(bud);
	free(data);
}

static void test_stream_budget_timeout(void **state)
{
	(void)state;
	static const unsigned char data[3 * CHUNK];
	dw_bbuf_config cfg;
	dw_fake_clock fc;
	const void *chunk;
	dw_membudget *bud;
	dw_source src;
	dw_bbuf *b;
	size_t len;

	dw_fake_clock_init(&fc, DW_NS_PER_SEC, 0);
	assert_int_equal(dw_membudget_open(2 * CHUNK, &bud), 0);
	/* someone else holds the whole budget */
	assert_int_equal(dw_membudget_acquire(bud, 2 * CHUNK, 0, NULL), 0);
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cap_bytes = 2 * CHUNK;
	cfg.budget = bud;
	cfg.budget_wait_ms = 500;
	cfg.clock = &fc.clock;
	assert_int_equal(dw_source_from_mem(data, sizeof(data), &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	wait_for_waiters(bud, 1);
	dw_fake_clock_advance(&fc, 500 * DW_NS_PER_MS);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_EBUDGET);
	assert_string_equal(dw_bbuf_errmsg(b), "memory budget exhausted: no 4096 bytes free after "
					       "500 ms (total 8192, in use 8192)");
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_EBUDGET);
	dw_bbuf_close(b);
	assert_int_equal(dw_membudget_timeouts(bud), 1);
	assert_int_equal(dw_membudget_in_use(bud), 2 * CHUNK);
	dw_membudget_release(bud, 2 * CHUNK);
	dw_membudget_close(bud);
}

static void test_cancel_wakes_budget_waiter(void **state)
{
	(void)state;
	static const unsigned char data[CHUNK];
	dw_bbuf_config cfg;
	dw_membudget *bud;
	dw_source src;
	dw_bbuf *b;

	assert_int_equal(dw_membudget_open(CHUNK, &bud), 0);
	assert_int_equal(dw_membudget_acquire(bud, CHUNK, 0, NULL), 0);
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cap_bytes = CHUNK;
	cfg.budget = bud;
	cfg.budget_wait_ms = DW_MEMBUDGET_WAIT_FOREVER;
	assert_int_equal(dw_source_from_mem(data, sizeof(data), &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	wait_for_waiters(bud, 1);
	dw_bbuf_close(b); /* must wake the producer out of its endless budget wait */
	assert_int_equal(dw_membudget_waiting(bud), 0);
	assert_int_equal(dw_membudget_timeouts(bud), 0);
	dw_membudget_release(bud, CHUNK);
	dw_membudget_close(bud);
}

/* Closing a budget while a stream still uses it is safe: the stream keeps it alive. */
static void test_budget_outlives_close(void **state)
{
	(void)state;
	static unsigned char data[5 * CHUNK];
	dw_bbuf_config cfg;
	const void *chunk;
	dw_membudget *bud;
	dw_source src;
	dw_bbuf *b;
	size_t len, n = 0;
	int rc;

	memset(data, 0x5a, sizeof(data));
	assert_int_equal(dw_membudget_open(2 * CHUNK, &bud), 0);
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.budget = bud;
	assert_int_equal(dw_source_from_mem(data, sizeof(data), &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	dw_membudget_close(bud);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1)
		n += len;
	assert_int_equal(rc, 0);
	assert_int_equal(n, sizeof(data));
	dw_bbuf_close(b); /* frees the budget (ASan would see a leak or a use after free) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accounting_and_limits),
		cmocka_unit_test(test_release_and_raise_wake_waiters),
		cmocka_unit_test(test_timeout_on_fake_clock),
		cmocka_unit_test(test_default_budget),
		cmocka_unit_test(test_streams_share_small_budget),
		cmocka_unit_test(test_stream_budget_timeout),
		cmocka_unit_test(test_cancel_wakes_budget_waiter),
		cmocka_unit_test(test_budget_outlives_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
