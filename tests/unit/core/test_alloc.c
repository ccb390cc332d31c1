// SPDX-License-Identifier: MIT
/* The allocation fault hook fails exactly the Nth allocation, and only that one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dwscale/core.h"

static void test_fail_nth(void **state)
{
	void *a, *b, *c;

	(void)state;
	dw_alloc_fail_nth(2);
	a = dw_malloc(16);
	b = dw_malloc(16);
	c = dw_malloc(16);
	assert_non_null(a);
	assert_null(b);
	assert_non_null(c);
	/* three allocations were attempted since the hook was armed */
	assert_int_equal(dw_alloc_fail_nth(0), 3);
	dw_free(a);
	dw_free(c);
}

static void test_strdup_and_calloc(void **state)
{
	char *s;
	unsigned char *z;

	(void)state;
	s = dw_strdup("dwscale");
	assert_string_equal(s, "dwscale");
	dw_free(s);
	s = dw_strndup("abcdef", 3);
	assert_string_equal(s, "abc");
	dw_free(s);
	z = dw_calloc(64, 1);
	for (int i = 0; i < 64; i++)
		assert_int_equal(z[i], 0);
	dw_free(z);
	dw_alloc_fail_nth(1);
	assert_null(dw_strdup("x"));
	dw_alloc_fail_nth(0);
	dw_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fail_nth),
		cmocka_unit_test(test_strdup_and_calloc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
