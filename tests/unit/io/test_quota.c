// SPDX-License-Identifier: MIT
/*
 * Quotas on a fake wall clock and a real store in a temp directory: window edges, the
 * "quota + one op" bound, op limits, per-caller overrides, persistence across a clean restart
 * and across a crash (a second instance reading what the first reserved), and bad input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "dwscale/store.h"
#include "io/io_int.h"
#include "../test_tmpdir.h"

#define HOUR (3600 * DW_NS_PER_SEC)

static char tmpdir[256], dbpath[300];
static dw_fake_clock fc;

static int setup(void **state)
{
	(void)state;
	if (tt_mkdtemp("quota", tmpdir, sizeof(tmpdir)) < 0)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
	/* wall time at 10:00:00 of some day: a window boundary */
	dw_fake_clock_init(&fc, DW_NS_PER_SEC, 1700000000ULL / 3600 * 3600 * DW_NS_PER_SEC);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return tt_rm_rf(tmpdir);
}

static void test_window_edges(void **state)
{
	struct io_quota *q;
	uint64_t b, o;

	(void)state;
	assert_int_equal(dw__quota_open(&fc.clock, NULL, HOUR, 1000, 0, &q), 0);
	assert_int_equal(dw__quota_admit(q, "a", 600), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "a", 399), IO_QUOTA_OK); /* 999 < 1000 */
	assert_int_equal(dw__quota_admit(q, "a", 500), IO_QUOTA_OK); /* 1499: quota + one op */
	assert_int_equal(dw__quota_admit(q, "a", 1), IO_QUOTA_OVER);
	assert_int_equal(dw__quota_get(q, "a", &b, &o), 0);
	assert_int_equal(b, 1499);
	assert_int_equal(o, 3);
	/* last nanosecond of the window: still over */
	dw_fake_clock_advance(&fc, HOUR - 1);
	assert_int_equal(dw__quota_admit(q, "a", 1), IO_QUOTA_OVER);
	/* first nanosecond of the next: fresh */
	dw_fake_clock_advance(&fc, 1);
	assert_int_equal(dw__quota_admit(q, "a", 1000), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "a", 1), IO_QUOTA_OVER);
	assert_int_equal(dw__quota_get(q, "a", &b, &o), 0);
	assert_int_equal(b, 1000);
	assert_int_equal(o, 1);
	assert_int_equal(dw__quota_get(q, "never", &b, &o), DW_ENOTFOUND);
	dw__quota_close(q);
}

static void test_ops_and_overrides(void **state)
{
	struct io_quota *q;
	uint64_t b, o;

	(void)state;
	assert_int_equal(dw__quota_open(&fc.clock, NULL, HOUR, 0, 3, &q), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dw__quota_admit(q, "x", 1 << 20), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "x", 0), IO_QUOTA_OVER);
	/* an override for y only */
	assert_int_equal(dw__quota_set(q, "y", 100, 0), 0);
	assert_int_equal(dw__quota_admit(q, "y", 100), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "y", 1), IO_QUOTA_OVER);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dw__quota_admit(q, "z", 1), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "z", 1), IO_QUOTA_OVER);
	/* raising x's limit lets it continue within the same window */
	assert_int_equal(dw__quota_set(q, "x", 0, 5), 0);
	assert_int_equal(dw__quota_admit(q, "x", 1), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "x", 1), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "x", 1), IO_QUOTA_OVER);
	assert_int_equal(dw__quota_get(q, "x", &b, &o), 0);
	assert_int_equal(o, 5);
	/* changing the defaults applies to callers without an override */
	dw__quota_set_defaults(q, HOUR, 0, 10);
	assert_int_equal(dw__quota_admit(q, "z", 1), IO_QUOTA_OK);
	dw__quota_close(q);
}

static void test_bad_ids(void **state)
{
	struct io_quota *q;
	uint64_t b, o;
	char longid[80];

	(void)state;
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(dw__quota_id_check("tenant-1.a_b"), 0);
	assert_int_equal(dw__quota_id_check(""), DW_EUSAGE);
	assert_int_equal(dw__quota_id_check("a/b"), DW_EUSAGE);
	assert_int_equal(dw__quota_id_check(longid), DW_EUSAGE);
	assert_int_equal(dw__quota_id_check(NULL), DW_EUSAGE);
	assert_int_equal(dw__quota_open(&fc.clock, NULL, 0, 1, 1, &q), DW_ECONFIG);
	assert_int_equal(dw__quota_open(&fc.clock, NULL, HOUR, 1, 1, &q), 0);
	assert_int_equal(dw__quota_set(q, "a b", 1, 1), DW_EUSAGE);
	assert_int_equal(dw__quota_get(q, "a\nb", &b, &o), DW_EUSAGE);
	dw__quota_close(q);
}

static void test_persist_clean_restart(void **state)
{
	struct io_quota *q;
	dw_store *st;
	uint64_t b, o;

	(void)state;
	assert_int_equal(dw_store_open(dbpath, &st), 0);
	assert_int_equal(dw__quota_open(&fc.clock, st, HOUR, 10000, 0, &q), 0);
	assert_int_equal(dw__quota_set(q, "custom", 50, 0), 0);
	assert_int_equal(dw__quota_admit(q, "a", 3000), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "a", 3000), IO_QUOTA_OK);
	dw__quota_close(q);
	/* restart: exact figures and the override are back */
	assert_int_equal(dw__quota_open(&fc.clock, st, HOUR, 10000, 0, &q), 0);
	assert_int_equal(dw__quota_get(q, "a", &b, &o), 0);
	assert_int_equal(b, 6000);
	assert_int_equal(o, 2);
	assert_int_equal(dw__quota_admit(q, "a", 3000), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "a", 3000), IO_QUOTA_OK); /* 9000 < 10000 */
	assert_int_equal(dw__quota_admit(q, "a", 1), IO_QUOTA_OVER);
	assert_int_equal(dw__quota_admit(q, "custom", 50), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "custom", 1), IO_QUOTA_OVER);
	dw__quota_close(q);
	/* a restart in the next window starts from zero, keeping the override */
	dw_fake_clock_advance(&fc, HOUR);
	assert_int_equal(dw__quota_open(&fc.clock, st, HOUR, 10000, 0, &q), 0);
	assert_int_equal(dw__quota_get(q, "a", &b, &o), 0);
	assert_int_equal(b, 0);
	/* a caller neither known nor stored is not found (and a lookup adds nothing) */
	assert_int_equal(dw__quota_get(q, "never", &b, &o), DW_ENOTFOUND);
	assert_int_equal(dw__quota_get(q, "never", &b, &o), DW_ENOTFOUND);
	assert_int_equal(dw__quota_admit(q, "custom", 50), IO_QUOTA_OK);
	assert_int_equal(dw__quota_admit(q, "custom", 1), IO_QUOTA_OVER);
	dw__quota_close(q);
	dw_store_close(st);
}

static void test_persist_crash(void **state)
{
	struct io_quota *q1, *q2;
	dw_store *st;
	uint64_t admitted = 0, b, o;

	(void)state;
	assert_int_equal(dw_store_open(dbpath, &st), 0);
	assert_int_equal(dw__quota_open(&fc.clock, st, HOUR, 16000, 0, &q1), 0);
	for (int i = 0; i < 7; i++) {
		assert_int_equal(dw__quota_admit(q1, "c", 700), IO_QUOTA_OK);
		admitted += 700;
	}
	/*
	 * A second process starts while the first has flushed nothing (as after kill -9): what it
	 * reads covers everything admitted so far.
	 */
	assert_int_equal(dw__quota_open(&fc.clock, st, HOUR, 16000, 0, &q2), 0);
	assert_int_equal(dw__quota_get(q2, "c", &b, &o), 0);
	assert_true(b >= admitted);
	/* and admitting from there still keeps within quota + one op */
	while (dw__quota_admit(q2, "c", 700) == IO_QUOTA_OK)
		admitted += 700;
	assert_true(admitted <= 16000 + 700);
	dw__quota_close(q2);
	dw__quota_close(q1);
	dw_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_window_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ops_and_overrides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_clean_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_crash, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
