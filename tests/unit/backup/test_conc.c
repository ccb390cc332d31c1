// SPDX-License-Identifier: MIT
/*
 * Adaptive concurrency controller, driven with exact utilisation and throughput numbers, and the
 * /proc/diskstats source read from a file written by the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/sysmacros.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "backup_test_util.h"

#define SEC DW_NS_PER_SEC

struct drive {
	dw_backup_conc c;
	uint64_t busy, now;
};

/* One second at utilisation u (0..1) and throughput thr; returns the limit. */
static unsigned step(struct drive *d, double u, double thr)
{
	d->now += SEC;
	d->busy += (uint64_t)(u * 1000.0 + 0.5);
	return dw_backup_conc_tick(&d->c, d->busy, d->now, thr);
}

/* A controller that starts at first (0: the default start, max). */
static void start_at(struct drive *d, unsigned disks, unsigned first)
{
	dw_backup_conc_config cfg;

	memset(d, 0, sizeof(*d));
	dw_backup_conc_config_default(&cfg, disks);
	if (first)
		cfg.start = first;
	assert_int_equal(dw_backup_conc_init(&d->c, &cfg), 0);
	d->now = 100 * SEC;
	/* primes */
	assert_int_equal(dw_backup_conc_tick(&d->c, d->busy, d->now, 0), first ? first : cfg.max);
}

static void start(struct drive *d, unsigned disks)
{
	start_at(d, disks, 1);
}

static void test_rises_when_idle_up_to_max(void **state)
{
	struct drive d;

	(void)state;
	start(&d, 2); /* max = 8 */
	for (unsigned want = 2; want <= 8; want++)
		assert_int_equal(step(&d, 0.1, 100.0 * want), want);
	for (int i = 0; i < 5; i++)
		assert_int_equal(step(&d, 0.1, 800), 8);
}

static void test_falls_when_busy_and_no_gain(void **state)
{
	struct drive d;
	unsigned l = 0;

	(void)state;
	start(&d, 1); /* max = 4 */
	for (int i = 0; i < 3; i++)
		l = step(&d, 0.2, 100);
	assert_int_equal(l, 4);
	/* saturated: busy and the same throughput at every level, so it backs off to min */
	for (int i = 0; i < 30; i++)
		l = step(&d, 1.0, 100);
	assert_int_equal(l, 1);
}

static void test_holds_while_throughput_rises(void **state)
{
	struct drive d;
	unsigned l = 0;

	(void)state;
	start(&d, 1);
	/* an NVMe-like device: every level reads as busy, but each job adds throughput */
	for (int i = 0; i < 3; i++)
		l = step(&d, 0.3, 100.0 * (d.c.limit));
	assert_int_equal(l, 4);
	for (int i = 0; i < 30; i++)
		l = step(&d, 1.0, 100.0 * d.c.limit);
	assert_true(l >= 3);
	/* ...until more jobs stop helping: then it falls to the level that still measured a gain
	 * over the one below (150 with two jobs against 100 with one) */
	for (int i = 0; i < 30; i++)
		l = step(&d, 1.0, 150.0);
	assert_int_equal(l, 2);
}

/*
 * The default start is max. A device that reads busy at every level: where each job adds
 * throughput it stays at max (one step down to measure the level below, then back); where
 * throughput stops rising at two jobs it settles on two, not on one; where jobs bring nothing
 * it falls to min.
 */
static void test_starts_at_max_and_finds_the_knee(void **state)
{
	static const double knee[5] = { 0, 100, 150, 150, 150 };
	struct drive d;
	unsigned l = 0, at_max = 0;

	(void)state;
	start_at(&d, 1, 0);
	assert_int_equal(d.c.limit, 4);
	for (int i = 0; i < 20; i++) {
		l = step(&d, 1.0, 100.0 * d.c.limit);
		at_max += l == 4;
	}
	assert_int_equal(l, 4);
	assert_true(at_max >= 17); /* left max once, to measure three jobs */

	start_at(&d, 1, 0);
	for (int i = 0; i < 20; i++)
		l = step(&d, 1.0, knee[d.c.limit]);
	assert_int_equal(l, 2);
	for (int i = 0; i < 10; i++) /* and stays there */
		assert_int_equal(step(&d, 1.0, knee[d.c.limit]), 2);

	start_at(&d, 1, 0);
	for (int i = 0; i < 20; i++)
		l = step(&d, 1.0, 100);
	assert_int_equal(l, 1);

	/* a start outside [min, max] is clamped */
	{
		dw_backup_conc_config cfg;

		dw_backup_conc_config_default(&cfg, 1);
		cfg.start = 9;
		assert_int_equal(dw_backup_conc_init(&d.c, &cfg), 0);
		assert_int_equal(d.c.limit, 4);
		cfg.min = 2;
		cfg.start = 1;
		assert_int_equal(dw_backup_conc_init(&d.c, &cfg), 0);
		assert_int_equal(d.c.limit, 2);
	}
}

static void test_dead_band_and_smoothing(void **state)
{
	struct drive d;
	unsigned l = 0;

	(void)state;
	start(&d, 1);
	for (int i = 0; i < 20; i++)
		l = step(&d, 0.7, 100); /* between 60 % and 80 %: no change */
	assert_int_equal(l, 1);
	start(&d, 1);
	for (int i = 0; i < 10; i++)
		step(&d, 0.0, 100);
	l = d.c.limit;
	/* one busy second after idle ones: EMA 0.3 -> 0.3, below the threshold */
	assert_int_equal(step(&d, 1.0, 100), l);
	assert_true(dw_ema_value(&d.c.util) < 0.31 && dw_ema_value(&d.c.util) > 0.29);
}

static void test_config_refused(void **state)
{
	dw_backup_conc c;
	dw_backup_conc_config cfg;

	(void)state;
	dw_backup_conc_config_default(&cfg, 1);
	assert_int_equal(cfg.min, 1);
	assert_int_equal(cfg.max, 4);
	cfg.min = 0;
	assert_int_equal(dw_backup_conc_init(&c, &cfg), DW_ECONFIG);
	dw_backup_conc_config_default(&cfg, 1);
	cfg.low_util = 0.9;
	assert_int_equal(dw_backup_conc_init(&c, &cfg), DW_ECONFIG);
	dw_backup_conc_config_default(&cfg, 1);
	cfg.max = 1000;
	assert_int_equal(dw_backup_conc_init(&c, &cfg), DW_ECONFIG);
	dw_backup_conc_config_default(&cfg, 100);
	assert_int_equal(cfg.max, 64);
}

static void write_stats(const char *file, unsigned maj, unsigned min, uint64_t mine, uint64_t other)
{
	FILE *f = fopen(file, "w");

	assert_non_null(f);
	fprintf(f, "   7       0 loop0 1 0 1 0 0 0 0 0 0 99999 0\n");
	fprintf(f, " 250       0 disk0 10 0 10 0 0 0 0 0 0 %llu 0 0 0 0 0 0 0\n",
		(unsigned long long)other);
	fprintf(f, " 250       1 disk0p1 10 0 10 0 0 0 0 0 0 %llu 0 0 0 0 0 0 0\n",
		(unsigned long long)other);
	fprintf(f, " %u %u mine 10 0 10 0 0 0 0 0 0 %llu 0 0 0 0 0 0 0\n", maj, min,
		(unsigned long long)mine);
	fclose(f);
}

static void test_diskstats_source(void **state)
{
	char *tmp = tu_mkdtemp("backup-conc");
	char *file = tu_join(tmp, "diskstats");
	const char *paths[1] = { tmp };
	dw_backup_diskstats *d = NULL;
	dw_backup_util_source src;
	struct stat st;
	uint64_t busy = 0;

	(void)state;
	assert_int_equal(stat(tmp, &st), 0);
	write_stats(file, major(st.st_dev), minor(st.st_dev), 1000, 5000);
	assert_int_equal(dw_backup_diskstats_open(file, paths, 1, &d), 0);
	assert_int_equal(dw_backup_diskstats_disks(d), 1);
	src = dw_backup_diskstats_source(d);
	assert_int_equal(src.read(src.ctx, &busy), 0);
	assert_int_equal(busy, 0); /* first read only primes */
	write_stats(file, major(st.st_dev), minor(st.st_dev), 1700, 9000);
	assert_int_equal(src.read(src.ctx, &busy), 0);
	assert_int_equal(busy, 700); /* only the disk under the path counts */
	write_stats(file, major(st.st_dev), minor(st.st_dev), 1800, 9000);
	assert_int_equal(src.read(src.ctx, &busy), 0);
	assert_int_equal(busy, 800);
	dw_backup_diskstats_close(d);

	/* a path on a device not listed (overlay, tmpfs): every whole physical disk */
	write_stats(file, 1, 1, 0, 100);
	assert_int_equal(dw_backup_diskstats_open(file, paths, 1, &d), 0);
	assert_int_equal(dw_backup_diskstats_disks(d), 2); /* disk0 and "mine"; not p1 or loop */
	src = dw_backup_diskstats_source(d);
	assert_int_equal(src.read(src.ctx, &busy), 0);
	write_stats(file, 1, 1, 300, 350);
	assert_int_equal(src.read(src.ctx, &busy), 0);
	assert_int_equal(busy, 300); /* the busiest disk's delta */
	dw_backup_diskstats_close(d);
	dw_backup_diskstats_close(NULL);

	assert_true(dw_backup_diskstats_open("/nonexistent/diskstats", paths, 1, &d) < 0);
	assert_null(d);
	tu_rm_rf(tmp);
	free(tmp);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rises_when_idle_up_to_max),
		cmocka_unit_test(test_falls_when_busy_and_no_gain),
		cmocka_unit_test(test_holds_while_throughput_rises),
		cmocka_unit_test(test_starts_at_max_and_finds_the_knee),
		cmocka_unit_test(test_dead_band_and_smoothing),
		cmocka_unit_test(test_config_refused),
		cmocka_unit_test(test_diskstats_source),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
