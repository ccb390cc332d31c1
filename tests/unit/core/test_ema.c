// SPDX-License-Identifier: MIT
/* EMA: first sample primes, then v = a*x + (1-a)*v; bad alpha refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "dwscale/core.h"

static void test_ema_sequence(void **state)
{
	dw_ema e;

	(void)state;
	assert_int_equal(dw_ema_init(&e, DW_EMA_ALPHA_DEFAULT), 0);
	assert_true(dw_ema_value(&e) == 0.0);
	assert_true(fabs(dw_ema_update(&e, 100.0) - 100.0) < 1e-12);
	assert_true(fabs(dw_ema_update(&e, 0.0) - 70.0) < 1e-12);
	assert_true(fabs(dw_ema_update(&e, 0.0) - 49.0) < 1e-12);
	assert_true(fabs(dw_ema_update(&e, 100.0) - 64.3) < 1e-9);
	dw_ema_reset(&e);
	assert_true(dw_ema_value(&e) == 0.0);
	assert_true(fabs(dw_ema_update(&e, 7.0) - 7.0) < 1e-12);
}

static void test_ema_converges(void **state)
{
	dw_ema e;

	(void)state;
	assert_int_equal(dw_ema_init(&e, 0.3), 0);
	dw_ema_update(&e, 0.0);
	for (int i = 0; i < 60; i++)
		dw_ema_update(&e, 80.0);
	assert_true(fabs(dw_ema_value(&e) - 80.0) < 1e-6);
}

static void test_ema_bad_alpha(void **state)
{
	dw_ema e = { .alpha = 0.5, .value = 3.0, .primed = true };

	(void)state;
	assert_int_equal(dw_ema_init(&e, 0.0), DW_ELIMIT);
	assert_int_equal(dw_ema_init(&e, 1.5), DW_ELIMIT);
	assert_int_equal(dw_ema_init(&e, -0.1), DW_ELIMIT);
	assert_int_equal(dw_ema_init(&e, NAN), DW_ELIMIT);
	/* refused init leaves the average untouched */
	assert_true(e.alpha == 0.5 && e.value == 3.0 && e.primed);
	assert_int_equal(dw_ema_init(&e, 1.0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ema_sequence),
		cmocka_unit_test(test_ema_converges),
		cmocka_unit_test(test_ema_bad_alpha),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
