// SPDX-License-Identifier: MIT
/* Logging: key=value lines, level filtering, quoting of untrusted values, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/core.h"

static int pipefd[2];

static int setup(void **state)
{
	(void)state;
	if (pipe(pipefd) != 0)
		return -1;
	dw_log_set_fd(pipefd[1]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dw_log_set_fd(2);
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}

static size_t drain(char *buf, size_t cap)
{
	ssize_t n;

	/* Close-free drain: the writer wrote whole lines before we read. */
	n = read(pipefd[0], buf, cap - 1);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	return (size_t)n;
}

static void test_line_format(void **state)
{
	char buf[4096];

	(void)state;
	dw_log_set_level(DW_LOG_INFO);
	dw_log(DW_LOG_INFO, "serve", "listening", "addr=%s port=%d", "127.0.0.1", 7070);
	drain(buf, sizeof(buf));
	assert_non_null(strstr(buf, "ts="));
	assert_non_null(
		strstr(buf, " level=info sub=serve event=listening addr=127.0.0.1 port=7070\n"));
	assert_int_equal(strchr(buf, '\n') - buf + 1, (long)strlen(buf)); /* one line */
}

static void test_level_filter(void **state)
{
	char buf[4096];
	enum dw_log_level lv;

	(void)state;
	dw_log_set_level(DW_LOG_WARN);
	dw_log(DW_LOG_INFO, "x", "hidden", NULL);
	dw_log(DW_LOG_ERROR, "x", "shown", NULL);
	drain(buf, sizeof(buf));
	assert_null(strstr(buf, "hidden"));
	assert_non_null(strstr(buf, "level=error sub=x event=shown\n"));
	assert_int_equal(dw_log_level_parse("debug", &lv), 0);
	assert_int_equal(lv, DW_LOG_DEBUG);
	assert_int_equal(dw_log_level_parse("loud", &lv), DW_ECONFIG);
	dw_log_set_level(DW_LOG_INFO);
}

static void test_quote(void **state)
{
	char q[32];

	(void)state;
	assert_string_equal(dw_log_quote("a b\"c\\\n", q, sizeof(q)), "\"a b\\\"c\\\\\\x0a\"");
	/* Truncated values stay quoted and terminated. */
	dw_log_quote("0123456789012345678901234567890123456789", q, sizeof(q));
	assert_true(strlen(q) < sizeof(q));
	assert_int_equal(q[0], '"');
	assert_int_equal(q[strlen(q) - 1], '"');
	assert_non_null(strstr(q, "..."));
}

static void test_long_line_truncated(void **state)
{
	static char big[8192];
	char buf[8192];
	size_t n;

	(void)state;
	memset(big, 'v', sizeof(big) - 1);
	dw_log(DW_LOG_ERROR, "x", "big", "k=%s", big);
	n = drain(buf, sizeof(buf));
	assert_true(n <= 2048);
	assert_int_equal(buf[n - 1], '\n');
	assert_non_null(strstr(buf, "...\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_format),
		cmocka_unit_test(test_level_filter),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_long_line_truncated),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
