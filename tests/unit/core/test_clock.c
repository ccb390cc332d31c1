// SPDX-License-Identifier: MIT
/* Real clock moves forward and agrees with CLOCK_*; the fake clock moves only when told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <cmocka.h>

#include "dwscale/core.h"

static void test_real_clock_monotonic(void **state)
{
	uint64_t a, b;
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	struct timespec now;

	(void)state;
	a = dw_clock_now(NULL);
	nanosleep(&ts, NULL);
	b = dw_clock_now(dw_clock_real());
	assert_true(b >= a + 2 * DW_NS_PER_MS);
	clock_gettime(CLOCK_REALTIME, &now);
	/* Wall clock within a minute of CLOCK_REALTIME read just now. */
	uint64_t wall = dw_clock_wall(NULL);
	uint64_t ref = (uint64_t)now.tv_sec * DW_NS_PER_SEC + (uint64_t)now.tv_nsec;
	assert_true(wall + 60 * DW_NS_PER_SEC > ref && wall < ref + 60 * DW_NS_PER_SEC);
}

static void test_fake_clock(void **state)
{
	dw_fake_clock fc;

	(void)state;
	dw_fake_clock_init(&fc, 1000, 5000);
	assert_int_equal(dw_clock_now(&fc.clock), 1000);
	assert_int_equal(dw_clock_wall(&fc.clock), 5000);
	assert_int_equal(dw_clock_now(&fc.clock), 1000); /* no drift without advance */
	dw_fake_clock_advance(&fc, 3 * DW_NS_PER_SEC);
	assert_int_equal(dw_clock_now(&fc.clock), 1000 + 3 * DW_NS_PER_SEC);
	assert_int_equal(dw_clock_wall(&fc.clock), 5000 + 3 * DW_NS_PER_SEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_clock_monotonic),
		cmocka_unit_test(test_fake_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
