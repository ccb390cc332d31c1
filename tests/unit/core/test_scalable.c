// SPDX-License-Identifier: MIT
/* Registry: names, order, reconfigure dispatch, and that remove waits for calls in progress. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dwscale/core.h"
#include "dwscale/scalable.h"

struct fake {
	double depth;	      /* the one limit, "depth", 1..128 */
	_Atomic int in_call;  /* set while reconfigure runs */
	_Atomic int released; /* reconfigure spins until set */
	bool slow;
};

static int fake_metrics(void *self, dw_metric_fn fn, void *arg)
{
	struct fake *f = self;
	dw_metric m = { .name = "depth", .value = f->depth, .unit = "", .help = "depth" };

	fn(arg, &m);
	return 0;
}

static const dw_limit depth_limit = {
	.name = "depth", .min = 1, .max = 128, .unit = "ops", .help = "queue depth"
};

static int fake_limits(void *self, dw_limit_fn fn, void *arg)
{
	struct fake *f = self;
	dw_limit l = depth_limit;

	l.value = f->depth;
	fn(arg, &l);
	return 0;
}

static int fake_reconfigure(void *self, const dw_limit_change *c, size_t n, char *err,
			    size_t errlen)
{
	struct fake *f = self;
	int rc;

	atomic_store(&f->in_call, 1);
	while (f->slow && !atomic_load(&f->released)) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(c[i].name, "depth") != 0) {
			snprintf(err, errlen, "unknown limit %s", c[i].name);
			rc = DW_ELIMIT;
			goto out;
		}
		rc = dw_limit_check(&depth_limit, &c[i], true, err, errlen);
		if (rc < 0)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		f->depth = c[i].value;
	rc = 0;
out:
	atomic_store(&f->in_call, 0);
	return rc;
}

static dw_bp_state fake_state(void *self)
{
	(void)self;
	return DW_BP_WARNING;
}

static const dw_scalable_ops fake_ops = { fake_metrics, fake_limits, fake_reconfigure, fake_state };

static void collect(void *arg, const dw_scalable *s)
{
	char *names = arg;

	strcat(names, s->name);
	strcat(names, ",");
}

static void test_add_find_order(void **state)
{
	dw_registry *r;
	struct fake a = { .depth = 8 }, b = { .depth = 32 };
	dw_scalable sa = { "io", &fake_ops, &a }, sb = { "db", &fake_ops, &b };
	dw_scalable bad = { "Bad-Name", &fake_ops, &a };
	char names[64] = "";

	(void)state;
	assert_int_equal(dw_registry_open(&r), 0);
	assert_int_equal(dw_registry_add(r, &sa), 0);
	assert_int_equal(dw_registry_add(r, &sb), 0);
	assert_int_equal(dw_registry_add(r, &sa), DW_EEXIST);
	assert_int_equal(dw_registry_add(r, &bad), DW_ELIMIT);
	assert_int_equal(dw_registry_count(r), 2);
	dw_registry_foreach(r, collect, names);
	assert_string_equal(names, "io,db,");
	assert_int_equal(dw_registry_remove(r, "io"), 0);
	assert_int_equal(dw_registry_remove(r, "io"), DW_ENOTFOUND);
	names[0] = '\0';
	dw_registry_foreach(r, collect, names);
	assert_string_equal(names, "db,");
	dw_registry_close(r);
	dw_registry_close(NULL);
}

static void test_reconfigure(void **state)
{
	dw_registry *r;
	struct fake a = { .depth = 8 };
	dw_scalable sa = { "io", &fake_ops, &a };
	dw_limit_change ok = { .name = "depth", .value = 64 };
	dw_limit_change two[2] = { { .name = "depth", .value = 16 },
				   { .name = "depth", .value = 500 } };
	dw_limit_change frac = { .name = "depth", .value = 2.5 };
	char err[128];

	(void)state;
	assert_int_equal(dw_registry_open(&r), 0);
	assert_int_equal(dw_registry_add(r, &sa), 0);
	assert_int_equal(dw_registry_reconfigure(r, "io", &ok, 1, err, sizeof(err)), 0);
	assert_true(a.depth == 64);
	/* all or nothing: the valid first change is not applied when the second is refused */
	assert_int_equal(dw_registry_reconfigure(r, "io", two, 2, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "depth"));
	assert_non_null(strstr(err, "128"));
	assert_true(a.depth == 64);
	assert_int_equal(dw_registry_reconfigure(r, "io", &frac, 1, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "whole"));
	assert_int_equal(dw_registry_reconfigure(r, "nope", &ok, 1, err, sizeof(err)),
			 DW_ENOTFOUND);
	assert_non_null(strstr(err, "nope"));
	dw_registry_close(r);
}

struct call_arg {
	dw_registry *r;
	int rc;
};

static void *slow_call(void *p)
{
	struct call_arg *ca = p;
	dw_limit_change ok = { .name = "depth", .value = 4 };
	char err[64];

	ca->rc = dw_registry_reconfigure(ca->r, "io", &ok, 1, err, sizeof(err));
	return NULL;
}

static void *release_later(void *p)
{
	struct fake *f = p;
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	atomic_store(&f->released, 1);
	return NULL;
}

static void test_remove_waits_for_calls(void **state)
{
	dw_registry *r;
	struct fake a = { .depth = 8, .slow = true };
	dw_scalable sa = { "io", &fake_ops, &a };
	struct call_arg ca;
	pthread_t t1, t2;

	(void)state;
	assert_int_equal(dw_registry_open(&r), 0);
	assert_int_equal(dw_registry_add(r, &sa), 0);
	ca.r = r;
	pthread_create(&t1, NULL, slow_call, &ca);
	while (!atomic_load(&a.in_call))
		;
	pthread_create(&t2, NULL, release_later, &a);
	/* remove must not return while the reconfigure is still running */
	assert_int_equal(dw_registry_remove(r, "io"), 0);
	assert_int_equal(atomic_load(&a.in_call), 0);
	assert_int_equal(atomic_load(&a.released), 1);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(ca.rc, 0);
	dw_registry_close(r);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(dw_bp_state_name(DW_BP_NORMAL), "normal");
	assert_string_equal(dw_bp_state_name(DW_BP_WARNING), "warning");
	assert_string_equal(dw_bp_state_name(DW_BP_CRITICAL), "critical");
	assert_string_equal(dw_bp_state_name(DW_BP_SHEDDING), "shedding");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_find_order),
		cmocka_unit_test(test_reconfigure),
		cmocka_unit_test(test_remove_waits_for_calls),
		cmocka_unit_test(test_state_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
