// SPDX-License-Identifier: MIT
/*
 * Health checks: all strategies checked at once, a hung one reported timed out at the deadline
 * without blocking the caller or starting a thread per check, failures counted and reset.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/db.h"

#ifdef DW_FAULT_INJECTION
extern _Atomic int dw__db_fault_ping_hang;
#endif

static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_health(void **state)
{
	char dir[] = "/tmp/dwhealth-XXXXXX", a[128], b[128], cmd[160];
	dw_db_config cfg;
	dw_db *db;
	dw_db_health h[4];
	size_t n;
	char err[256];
	int threads;
	uint64_t t0, t1;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "one=sqlite:%s/a.db", dir);
	snprintf(b, sizeof(b), "two=sqlite:%s/b.db", dir);
	dw_db_config_default(&cfg);
	cfg.strategies[0] = a;
	cfg.strategies[1] = b;
	cfg.n_strategies = 2;
	assert_int_equal(dw_db_open(&cfg, &db, err, sizeof(err)), 0);

	assert_int_equal(dw_db_health_check(db, 0, h, 1, &n), -ENOSPC);
	assert_int_equal(dw_db_health_check(db, 0, h, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(h[0].name, "one");
	assert_string_equal(h[1].name, "two");
	assert_string_equal(h[0].kind, "sqlite");
	assert_true(h[0].ok && h[1].ok);
	assert_true(h[0].latency_ms >= 0);
	assert_int_equal(h[0].consecutive_failures, 0);
	threads = thread_count();

#ifdef DW_FAULT_INJECTION
	/* Both backends hang: each check returns at its deadline, with no new threads. */
	atomic_store(&dw__db_fault_ping_hang, 1);
	for (int i = 1; i <= 3; i++) {
		t0 = dw_clock_now(NULL);
		assert_int_equal(dw_db_health_check(db, 200, h, 4, &n), 0);
		t1 = dw_clock_now(NULL);
		assert_true(t1 - t0 >= 200 * DW_NS_PER_MS); /* waited for the deadline... */
		assert_int_equal(h[0].rc, DW_ETIMEDOUT);    /* ...and reported the hang */
		assert_int_equal(h[1].rc, DW_ETIMEDOUT);
		assert_false(h[0].ok);
		assert_int_equal(h[0].consecutive_failures, i);
		assert_non_null(strstr(h[0].last_error, "deadline"));
		assert_int_equal(thread_count(), threads);
	}
	atomic_store(&dw__db_fault_ping_hang, 0);
	/* The stuck ping finishes; the next check is fresh and resets the count. */
	usleep(50 * 1000);
	assert_int_equal(dw_db_health_check(db, 5000, h, 4, &n), 0);
	assert_true(h[0].ok && h[1].ok);
	assert_int_equal(h[0].consecutive_failures, 0);
	assert_true(h[0].checks >= 2);
#else
	(void)t0;
	(void)t1;
	(void)threads;
#endif
	dw_db_close(db);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
