// SPDX-License-Identifier: MIT
/* dw_strerror / dw_err_name: every DW_E* code is named, below -1000, and unique. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dwscale/error.h"

static const struct {
	int code;
	const char *name;
} all_codes[] = {
#define X(name, value, msg) { value, #name },
	DW_ERROR_MAP(X)
#undef X
};

static void test_domain_codes_named_and_unique(void **state)
{
	size_t n = sizeof(all_codes) / sizeof(all_codes[0]);

	(void)state;
	assert_true(n >= 20);
	for (size_t i = 0; i < n; i++) {
		assert_true(all_codes[i].code < -1000);
		assert_string_equal(dw_err_name(all_codes[i].code), all_codes[i].name);
		assert_string_not_equal(dw_strerror(all_codes[i].code), "unknown error");
		for (size_t j = i + 1; j < n; j++)
			assert_int_not_equal(all_codes[i].code, all_codes[j].code);
	}
}

static void test_fixed_values(void **state)
{
	(void)state;
	/* Codes are never renumbered: scripts and peers depend on these values. */
	assert_int_equal(DW_EQUOTA, -1001);
	assert_int_equal(DW_ESHED, -1002);
	assert_int_equal(DW_ETOKEN, -1003);
	assert_int_equal(DW_ECORRUPT, -1004);
	assert_int_equal(DW_ETIMEDOUT, -1005);
}

static void test_errno_passthrough(void **state)
{
	(void)state;
	assert_string_equal(dw_err_name(-ENOENT), "ENOENT");
	assert_string_equal(dw_strerror(-ENOENT), "No such file or directory");
	assert_string_equal(dw_err_name(-ENOSPC), "ENOSPC");
	assert_string_equal(dw_err_name(0), "OK");
	assert_string_equal(dw_strerror(0), "success");
}

static void test_unknown(void **state)
{
	(void)state;
	assert_string_equal(dw_err_name(-999999), "UNKNOWN");
	assert_string_equal(dw_strerror(-999999), "unknown error");
	assert_string_equal(dw_err_name(-1999), "UNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_domain_codes_named_and_unique),
		cmocka_unit_test(test_fixed_values),
		cmocka_unit_test(test_errno_passthrough),
		cmocka_unit_test(test_unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
