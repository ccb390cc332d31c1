// SPDX-License-Identifier: MIT
/*
 * Parsing of the limits document and the bearer header (src/server/query.c), and the token
 * comparison: what is accepted, what is refused and with which message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "server/query.c"

static int parse(const char *body, dw_limit_change **ch, size_t *n, char **arena, char *err)
{
	return dw__parse_limits_json(body, strlen(body), ch, n, arena, err, 256);
}

static void test_limits_accepted(void **state)
{
	dw_limit_change *ch;
	char *arena, err[256];
	size_t n;

	(void)state;
	assert_int_equal(parse(" {\"max_entries\": 5000, \"mode\": \"auto\", \"ratio\": 0.25}\n",
			       &ch, &n, &arena, err),
			 0);
	assert_int_equal(n, 3);
	assert_string_equal(ch[0].name, "max_entries");
	assert_true(ch[0].value == 5000 && ch[0].str == NULL);
	assert_string_equal(ch[1].name, "mode");
	assert_string_equal(ch[1].str, "auto");
	assert_true(ch[2].value == 0.25);
	dw_free(ch);
	dw_free(arena);
}

static void test_limits_refused(void **state)
{
	static const struct {
		const char *body, *msg;
	} bad[] = {
		{ "", "needs a JSON object" },
		{ "{", "not valid JSON" },
		{ "[1]", "must be a JSON object" },
		{ "{}", "no limits given" },
		{ "{\"a\": 1} {", "unexpected bytes" },
		{ "{\"a\": true}", "limit a must be a number or a string" },
		{ "{\"a\": null}", "limit a must be a number or a string" },
		{ "{\"a\": {}}", "limit a must be a number or a string" },
		{ "{\"a\": 1, \"a\": 2}", "limit a is given twice" },
		{ "{\"Max\": 1}", "\"Max\" is not a limit name" },
		{ "{\"\": 1}", "is not a limit name" },
		{ "{\"a\": 1e999}", "finite" },
	};
	dw_limit_change *ch;
	char *arena, err[256];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i].body, &ch, &n, &arena, err), DW_EUSAGE);
		assert_null(ch);
		assert_null(arena);
		if (!strstr(err, bad[i].msg))
			fail_msg("body %s: message '%s' lacks '%s'", bad[i].body, err, bad[i].msg);
	}
}

static void test_limits_too_many(void **state)
{
	char body[4096], err[256], *arena;
	dw_limit_change *ch;
	size_t o = 0, n;

	(void)state;
	o += (size_t)snprintf(body + o, sizeof(body) - o, "{");
	for (int i = 0; i <= DW_SERVER_LIMIT_CHANGES_MAX; i++)
		o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"l%d\": %d", i ? "," : "", i,
				      i);
	snprintf(body + o, sizeof(body) - o, "}");
	assert_int_equal(parse(body, &ch, &n, &arena, err), DW_EUSAGE);
	assert_non_null(strstr(err, "too many limits"));
}

static void test_bearer(void **state)
{
	size_t len;
	const char *t;

	(void)state;
	t = dw__parse_bearer("Bearer abc123", &len);
	assert_non_null(t);
	assert_int_equal(len, 6);
	assert_memory_equal(t, "abc123", 6);
	t = dw__parse_bearer("  bearer \t tok  ", &len);
	assert_non_null(t);
	assert_int_equal(len, 3);
	assert_null(dw__parse_bearer(NULL, &len));
	assert_null(dw__parse_bearer("Basic dXNlcjpw", &len));
	assert_null(dw__parse_bearer("Bearer", &len));
	assert_null(dw__parse_bearer("Bearer   ", &len));
	assert_null(dw__parse_bearer("Bearerabc", &len));
	assert_null(dw__parse_bearer("Bearer a b", &len));
}

static void test_token_equal(void **state)
{
	(void)state;
	assert_true(dw__token_equal("secret", 6, "secret", 6));
	assert_false(dw__token_equal("secreT", 6, "secret", 6));
	assert_false(dw__token_equal("secre", 5, "secret", 6));
	assert_false(dw__token_equal("secrets", 7, "secret", 6));
	assert_false(dw__token_equal("", 0, "secret", 6));
	assert_false(dw__token_equal("", 0, "", 0)); /* no token configured: nothing matches */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits_accepted), cmocka_unit_test(test_limits_refused),
		cmocka_unit_test(test_limits_too_many), cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_token_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
