// SPDX-License-Identifier: MIT
/*
 * Configuration: every edge of the size, duration, number and bool parsers; loading from a
 * string and a file; line numbers kept per entry; and the exact text of errors (file:line:
 * [section] key) for unknown keys, bad values, syntax errors, duplicates, caps and missing files.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/config.h"
#include "dwscale/core.h"
#include "../test_tmpdir.h"

static char tmpdir[512];

static void make_tmpdir(void)
{
	assert_int_equal(tt_mkdtemp("config", tmpdir, sizeof(tmpdir)), 0);
}

static void remove_tmpdir(void)
{
	assert_int_equal(tt_rm_rf(tmpdir), 0);
}

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("'%s' lacks '%s'", s, part);
}

/* ---- parsers ---- */

struct u64_case {
	const char *in;
	int rc;
	uint64_t want;
};

static void test_parse_size(void **state)
{
	static const struct u64_case cases[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "4096", 0, 4096 },
		{ "10B", 0, 10 },
		{ "64KiB", 0, 64ULL << 10 },
		{ "64kib", 0, 64ULL << 10 },
		{ "64K", 0, 64ULL << 10 },
		{ "64KB", 0, 64000 },
		{ "64MiB", 0, 64ULL << 20 },
		{ "64 MiB", 0, 64ULL << 20 },
		{ "\t 64MiB \t", 0, 64ULL << 20 },
		{ "1GB", 0, 1000000000ULL },
		{ "1G", 0, 1ULL << 30 },
		{ "1GiB", 0, 1ULL << 30 },
		{ "2TiB", 0, 2ULL << 40 },
		{ "3TB", 0, 3000000000000ULL },
		{ "1PiB", 0, 1ULL << 50 },
		{ "15EiB", 0, 15ULL << 60 },
		{ "18EB", 0, 18000000000000000000ULL },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "16EiB", DW_ELIMIT, 0 },
		{ "19EB", DW_ELIMIT, 0 },
		{ "18446744073709551616", DW_ELIMIT, 0 },
		{ "99999999999999999999999999KiB", DW_ELIMIT, 0 },
		{ "", DW_ECONFIG, 0 },
		{ "   ", DW_ECONFIG, 0 },
		{ "-1", DW_ECONFIG, 0 },
		{ "+1", DW_ECONFIG, 0 },
		{ "1.5GiB", DW_ECONFIG, 0 },
		{ "lots", DW_ECONFIG, 0 },
		{ "KiB", DW_ECONFIG, 0 },
		{ "64Mi", DW_ECONFIG, 0 },
		{ "64 MiB x", DW_ECONFIG, 0 },
		{ "1 2", DW_ECONFIG, 0 },
		{ "0x10", DW_ECONFIG, 0 },
		{ "99999999999999999999999999 bogus", DW_ECONFIG, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = dw_parse_size(cases[i].in, &v);

		if (rc != cases[i].rc)
			fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
		if (rc == 0 && v != cases[i].want)
			fail_msg("'%s': %llu, want %llu", cases[i].in, (unsigned long long)v,
				 (unsigned long long)cases[i].want);
		if (rc != 0 && v != 12345)
			fail_msg("'%s': output written on error", cases[i].in);
	}
	assert_int_equal(dw_parse_size(NULL, NULL), DW_ECONFIG);
}

static void test_parse_duration(void **state)
{
	static const struct u64_case cases[] = {
		{ "0", 0, 0 },
		{ "00", 0, 0 },
		{ "0s", 0, 0 },
		{ "500ms", 0, 500 },
		{ "15s", 0, 15000 },
		{ "5m", 0, 300000 },
		{ "5min", 0, 300000 },
		{ "1h", 0, 3600000 },
		{ "72h", 0, 72ULL * 3600000 },
		{ "2d", 0, 2ULL * 86400000 },
		{ "1h30m", 0, 5400000 },
		{ "1h 30m", 0, 5400000 },
		{ " 2S ", 0, 2000 },
		{ "15 s", 0, 15000 },
		{ "1m1s1ms", 0, 61001 },
		{ "18446744073709551615ms", 0, UINT64_MAX },
		{ "18446744073709551615s", DW_ELIMIT, 0 },
		{ "18446744073709551615ms1ms", DW_ELIMIT, 0 },
		{ "99999999999999999999999ms", DW_ELIMIT, 0 },
		{ "", DW_ECONFIG, 0 },
		{ " ", DW_ECONFIG, 0 },
		{ "5", DW_ECONFIG, 0 },
		{ "-1s", DW_ECONFIG, 0 },
		{ "1.5h", DW_ECONFIG, 0 },
		{ "1y", DW_ECONFIG, 0 },
		{ "ms", DW_ECONFIG, 0 },
		{ "1h30", DW_ECONFIG, 0 },
		{ "0 5s", DW_ECONFIG, 0 },
		{ "1us", DW_ECONFIG, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = dw_parse_duration_ms(cases[i].in, &v);

		if (rc != cases[i].rc)
			fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
		if (rc == 0 && v != cases[i].want)
			fail_msg("'%s': %llu, want %llu", cases[i].in, (unsigned long long)v,
				 (unsigned long long)cases[i].want);
		if (rc != 0 && v != 12345)
			fail_msg("'%s': output written on error", cases[i].in);
	}
}

static void test_parse_u64_bool(void **state)
{
	static const struct u64_case cases[] = {
		{ "0", 0, 0 },
		{ "42", 0, 42 },
		{ " 7 ", 0, 7 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", DW_ELIMIT, 0 },
		{ "-1", DW_ECONFIG, 0 },
		{ "", DW_ECONFIG, 0 },
		{ "1k", DW_ECONFIG, 0 },
		{ "1 2", DW_ECONFIG, 0 },
		{ "18446744073709551616x", DW_ECONFIG, 0 },
	};
	static const char *const yes[] = { "true", "TRUE", "yes", "On", "1", " yes " };
	static const char *const no[] = { "false", "No", "off", "0", "\tFALSE" };
	static const char *const bad[] = { "", "2", "y", "truee", "enabled", "t rue" };
	bool b;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 9;
		int rc = dw_parse_u64(cases[i].in, &v);

		if (rc != cases[i].rc || (rc == 0 && v != cases[i].want))
			fail_msg("'%s': rc %d value %llu", cases[i].in, rc, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		assert_int_equal(dw_parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		assert_int_equal(dw_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dw_parse_bool(bad[i], &b), DW_ECONFIG);
}

/* ---- loading and getters ---- */

static const char sample[] = "; dwscale test configuration\n"	     /* 1 */
			     "# another comment style\n"	     /* 2 */
			     "[server]\n"			     /* 3 */
			     "listen = 127.0.0.1:7070\n"	     /* 4 */
			     "\n"				     /* 5 */
			     "[cache]\n"			     /* 6 */
			     "max_bytes = 64MiB ; inline comment\n"  /* 7 */
			     "  ttl=15m\n"			     /* 8 */
			     "write_through = yes\n"		     /* 9 */
			     "alpha = 0.3\r\n"			     /* 10 */
			     "entries = 1000\n"			     /* 11 */
			     "[db]\n"				     /* 12 */
			     "url = sqlite:/var/lib/dw.db?mode=rw\n" /* 13 */
			     "empty =\n";			     /* 14 */

static void test_load_and_get(void **state)
{
	dw_config *c = NULL;
	char err[DW_CONFIG_ERR_LEN];
	uint64_t u;
	double d;
	bool b;
	const char *s, *k, *v;
	int line;

	(void)state;
	assert_int_equal(dw_config_load_string(sample, "dwscale.conf", &c, err, sizeof(err)), 0);
	assert_string_equal(dw_config_name(c), "dwscale.conf");
	assert_string_equal(dw_config_get(c, "server", "listen"), "127.0.0.1:7070");
	assert_int_equal(dw_config_line(c, "server", "listen"), 4);
	assert_string_equal(dw_config_get(c, "cache", "max_bytes"), "64MiB");
	assert_int_equal(dw_config_line(c, "cache", "max_bytes"), 7);
	assert_int_equal(dw_config_line(c, "cache", "ttl"), 8);
	assert_int_equal(dw_config_line(c, "db", "empty"), 14);
	assert_string_equal(dw_config_get(c, "db", "url"), "sqlite:/var/lib/dw.db?mode=rw");
	assert_string_equal(dw_config_get(c, "db", "empty"), "");
	assert_string_equal(dw_config_get(c, "cache", "alpha"), "0.3");
	/* Absent: NULL, line 0, defaults. Names are case-sensitive. */
	assert_null(dw_config_get(c, "cache", "nope"));
	assert_null(dw_config_get(c, "nope", "ttl"));
	assert_null(dw_config_get(c, "Cache", "ttl"));
	assert_int_equal(dw_config_line(c, "cache", "nope"), 0);

	assert_int_equal(dw_config_get_size(c, "cache", "max_bytes", 1, &u, err, sizeof(err)), 0);
	assert_int_equal(u, 64ULL << 20);
	assert_int_equal(dw_config_get_size(c, "cache", "other", 77, &u, err, sizeof(err)), 0);
	assert_int_equal(u, 77);
	assert_int_equal(dw_config_get_duration_ms(c, "cache", "ttl", 1, &u, err, sizeof(err)), 0);
	assert_int_equal(u, 15 * 60 * 1000);
	assert_int_equal(dw_config_get_u64(c, "cache", "entries", 1, &u, err, sizeof(err)), 0);
	assert_int_equal(u, 1000);
	assert_int_equal(dw_config_get_bool(c, "cache", "write_through", false, &b, err, 8), 0);
	assert_true(b);
	assert_int_equal(dw_config_get_bool(c, "cache", "nope", true, &b, err, sizeof(err)), 0);
	assert_true(b);
	assert_int_equal(dw_config_get_double(c, "cache", "alpha", 1.0, &d, err, sizeof(err)), 0);
	assert_true(d > 0.2999 && d < 0.3001);

	/* Iteration in file order. */
	assert_int_equal(dw_config_count(c), 8);
	assert_int_equal(dw_config_entry(c, 0, &s, &k, &v, &line), 0);
	assert_string_equal(s, "server");
	assert_string_equal(k, "listen");
	assert_int_equal(line, 4);
	assert_int_equal(dw_config_entry(c, 7, &s, &k, NULL, &line), 0);
	assert_string_equal(k, "empty");
	assert_int_equal(dw_config_entry(c, 8, &s, &k, &v, &line), DW_ENOTFOUND);

	/* Known keys pass; unknown sections are found. */
	static const char *const cache_keys[] = { "max_bytes", "ttl",	  "write_through",
						  "alpha",     "entries", NULL };
	static const char *const sections[] = { "server", "cache",  "store", "db", "io",
						"backup", "fabric", "log",   NULL };
	assert_int_equal(dw_config_check_keys(c, "cache", cache_keys, err, sizeof(err)), 0);
	assert_int_equal(dw_config_check_keys(c, "io", cache_keys, err, sizeof(err)), 0);
	assert_int_equal(dw_config_check_sections(c, sections, err, sizeof(err)), 0);
	static const char *const few[] = { "server", NULL };
	assert_int_equal(dw_config_check_sections(c, few, err, sizeof(err)), DW_ECONFIG);
	assert_string_equal(err, "dwscale.conf:7: unknown section [cache] (known: server)");
	dw_config_close(c);
	dw_config_close(NULL);
}

static void test_value_errors(void **state)
{
	dw_config *c = NULL;
	char err[DW_CONFIG_ERR_LEN];
	char text[512] = "";
	uint64_t u = 5;
	double d = 5;
	bool b = true;

	(void)state;
	/* max_bytes on line 12, as in the documented example. */
	for (int i = 1; i < 11; i++)
		strcat(text, "; filler\n");
	strcat(text, "[cache]\nmax_bytes = lots\nttl = 5 fortnights\nn = -3\nflag = maybe\n"
		     "alpha = nan\nhuge = 99999999999999999999\nwide = 1e999\nbig = 20EiB\n"
		     "ctl = a\x01z\n");
	assert_int_equal(dw_config_load_string(text, "dwscale.conf", &c, err, sizeof(err)), 0);

	assert_int_equal(dw_config_get_size(c, "cache", "max_bytes", 0, &u, err, sizeof(err)),
			 DW_ECONFIG);
	assert_string_equal(
		err, "dwscale.conf:12: [cache] max_bytes: expected a size like 64MiB, got 'lots'");
	assert_int_equal(u, 5); /* untouched */
	assert_int_equal(dw_config_get_duration_ms(c, "cache", "ttl", 0, &u, err, sizeof(err)),
			 DW_ECONFIG);
	assert_string_equal(err, "dwscale.conf:13: [cache] ttl: expected a duration like 500ms, "
				 "15s, 5m or 72h, got '5 fortnights'");
	assert_int_equal(dw_config_get_u64(c, "cache", "n", 0, &u, err, sizeof(err)), DW_ECONFIG);
	assert_contains(err, "dwscale.conf:14: [cache] n: expected a non-negative whole number");
	assert_int_equal(dw_config_get_bool(c, "cache", "flag", false, &b, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, "dwscale.conf:15: [cache] flag: expected true/false");
	assert_true(b);
	assert_int_equal(dw_config_get_double(c, "cache", "alpha", 0, &d, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, "dwscale.conf:16: [cache] alpha: expected a number");
	assert_true(d == 5);
	assert_int_equal(dw_config_get_u64(c, "cache", "huge", 0, &u, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, ":17: [cache] huge: number '99999999999999999999' is too large");
	assert_int_equal(dw_config_get_double(c, "cache", "wide", 0, &d, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, ":18: [cache] wide: number '1e999' is out of range");
	assert_int_equal(dw_config_get_size(c, "cache", "big", 0, &u, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, ":19: [cache] big: size '20EiB' is too large");
	/* Control characters are not echoed raw. */
	assert_int_equal(dw_config_get_size(c, "cache", "ctl", 0, &u, err, sizeof(err)),
			 DW_ECONFIG);
	assert_contains(err, "got 'a?z'");
	/* A small buffer is cut, never overrun; NULL is allowed. */
	char small[10];
	assert_int_equal(dw_config_get_size(c, "cache", "max_bytes", 0, &u, small, sizeof(small)),
			 DW_ECONFIG);
	assert_string_equal(small, "dwscale.c");
	assert_int_equal(dw_config_get_size(c, "cache", "max_bytes", 0, &u, NULL, 0), DW_ECONFIG);

	/* Unknown key: file:line:key, and the known list. */
	static const char *const known[] = { "max_bytes", "ttl", NULL };
	assert_int_equal(dw_config_check_keys(c, "cache", known, err, sizeof(err)), DW_ECONFIG);
	assert_string_equal(err, "dwscale.conf:14: [cache] n: unknown key (known: max_bytes, ttl)");

	/* Caller-side checks in the same format. */
	assert_int_equal(dw_config_error(c, "cache", "max_bytes", err, sizeof(err),
					 "must be at least %d", 4096),
			 DW_ECONFIG);
	assert_string_equal(err, "dwscale.conf:12: [cache] max_bytes: must be at least 4096");
	assert_int_equal(dw_config_error(c, "io", "depth", err, sizeof(err), "is required"),
			 DW_ECONFIG);
	assert_string_equal(err, "dwscale.conf: [io] depth: is required");
	dw_config_close(c);
}

static void expect_load_error(const char *text, const char *want)
{
	dw_config *c = (dw_config *)1;
	char err[DW_CONFIG_ERR_LEN];

	assert_int_equal(dw_config_load_string(text, "t.conf", &c, err, sizeof(err)), DW_ECONFIG);
	assert_null(c);
	if (strcmp(err, want) != 0)
		fail_msg("error '%s', want '%s'", err, want);
}

static void test_syntax_errors(void **state)
{
	/* static: gcc's -Warray-bounds cannot follow a heap buffer through cmocka's asserts */
	static char bigbuf[DW_CONFIG_MAX_BYTES + 64];
	char *big;
	size_t o = 0;

	(void)state;
	expect_load_error("[a]\nx = 1\n\nnot a pair\n",
			  "t.conf:4: syntax error: expected '[section]' or 'key = value'");
	expect_load_error("[a]\n[b\nx = 1\n",
			  "t.conf:2: syntax error: expected '[section]' or 'key = value'");
	expect_load_error("x = 1\n[a]\n", "t.conf:1: x: key outside any [section]");
	expect_load_error("[a]\nx = 1\ny = 2\nx = 3\n",
			  "t.conf:4: [a] x: set twice (first at line 2)");
	/* Same key in two sections is fine; see below. Duplicate after a syntax error: the first
	 * problem wins. */
	expect_load_error("[a]\nx = 1\noops\nx = 2\n",
			  "t.conf:3: syntax error: expected '[section]' or 'key = value'");
	expect_load_error("[a]\nfoo bar = 1\n",
			  "t.conf:2: [a] foo bar: key name may hold only letters, digits, '_', "
			  "'.' and '-'");
	expect_load_error("[a b]\nx = 1\n",
			  "t.conf:2: [a b]: section name may hold only letters, digits, '_', '.' "
			  "and '-'");
	expect_load_error("[a_very_long_section_name_that_inih_would_cut_shortX]\nx = 1\n",
			  "t.conf:1: section name longer than 49 characters");
	dw_config *c49 = NULL;
	assert_int_equal(
		dw_config_load_string("[a_section_name_of_exactly_forty_nine_characters__]\n"
				      "x = 1\n",
				      NULL, &c49, NULL, 0),
		0);
	assert_string_equal(
		dw_config_get(c49, "a_section_name_of_exactly_forty_nine_characters__", "x"), "1");
	dw_config_close(c49);
	/* Indented continuation lines are not values: they are lines of their own. */
	expect_load_error("[a]\nx = 1\n   more\n",
			  "t.conf:3: syntax error: expected '[section]' or 'key = value'");

	/* Over-long line. */
	big = bigbuf;
	o = (size_t)sprintf(big, "[a]\nx = ");
	memset(big + o, 'v', 300);
	strcpy(big + o + 300, "\ny = 1\n");
	expect_load_error(big, "t.conf:2: line longer than 190 characters");

	/* Too many entries. */
	o = (size_t)sprintf(big, "[a]\n");
	for (int i = 0; i <= DW_CONFIG_MAX_ENTRIES; i++)
		o += (size_t)sprintf(big + o, "k%d = %d\n", i, i);
	expect_load_error(big, "t.conf:4098: more than 4096 entries");

	/* Too many bytes. */
	memset(big, '\n', DW_CONFIG_MAX_BYTES + 1);
	big[DW_CONFIG_MAX_BYTES + 1] = '\0';
	expect_load_error(big, "t.conf: larger than 1048576 bytes");
	big[DW_CONFIG_MAX_BYTES] = '\0';
	dw_config *c = NULL;
	assert_int_equal(dw_config_load_string(big, NULL, &c, NULL, 0), 0);
	assert_int_equal(dw_config_count(c), 0);
	dw_config_close(c);

	/* Same key in different sections; exactly at the line limit. */
	char line[300];
	memset(line, 'x', sizeof(line));
	memcpy(line, "[a]\nk = ", 8);
	line[4 + DW_CONFIG_MAX_LINE] = '\0';
	c = NULL;
	assert_int_equal(dw_config_load_string(line, NULL, &c, NULL, 0), 0);
	assert_int_equal(strlen(dw_config_get(c, "a", "k")), DW_CONFIG_MAX_LINE - 4);
	dw_config_close(c);
	assert_int_equal(dw_config_load_string("[a]\nk=1\n[b]\nk=2\n", NULL, &c, NULL, 0), 0);
	assert_string_equal(dw_config_get(c, "b", "k"), "2");
	dw_config_close(c);
}

static void test_files(void **state)
{
	char path[600], err[DW_CONFIG_ERR_LEN];
	dw_config *c = NULL;
	FILE *f;

	(void)state;
	make_tmpdir();
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	assert_int_equal(dw_config_load(path, &c, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_contains(err, path);
	assert_contains(err, "No such file");

	assert_int_equal(dw_config_load(tmpdir, &c, err, sizeof(err)), DW_ECONFIG);
	assert_contains(err, "is a directory");

	snprintf(path, sizeof(path), "%s/dwscale.conf", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(sample, f);
	fclose(f);
	assert_int_equal(dw_config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(dw_config_name(c), path);
	assert_int_equal(dw_config_line(c, "db", "url"), 13);
	static const char *const known[] = { "url", NULL };
	assert_int_equal(dw_config_check_keys(c, "db", known, err, sizeof(err)), DW_ECONFIG);
	char want[700];
	snprintf(want, sizeof(want), "%s:14: [db] empty: unknown key (known: url)", path);
	assert_string_equal(err, want);
	dw_config_close(c);

	/* A NUL byte in a file is refused with its line. */
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite("[a]\nx = 1\ny = \0\n", 1, 16, f);
	fclose(f);
	assert_int_equal(dw_config_load(path, &c, err, sizeof(err)), DW_ECONFIG);
	assert_contains(err, ":3: NUL byte");

	/* Larger than the cap. */
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i <= DW_CONFIG_MAX_BYTES / 16; i++)
		fputs("; 15 characters\n", f);
	fclose(f);
	assert_int_equal(dw_config_load(path, &c, err, sizeof(err)), DW_ECONFIG);
	assert_contains(err, "larger than 1048576 bytes");
	remove_tmpdir();
}

static void test_alloc_failures(void **state)
{
	(void)state;
	for (unsigned long nth = 1;; nth++) {
		dw_config *c = NULL;
		int rc;

		dw_alloc_fail_nth(nth);
		rc = dw_config_load_string(sample, "x", &c, NULL, 0);
		dw_alloc_fail_nth(0);
		if (rc == 0) {
			assert_string_equal(dw_config_get(c, "db", "url"),
					    "sqlite:/var/lib/dw.db?mode=rw");
			dw_config_close(c);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(c);
		assert_true(nth < 100);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),     cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_u64_bool), cmocka_unit_test(test_load_and_get),
		cmocka_unit_test(test_value_errors),   cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_files),	       cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
