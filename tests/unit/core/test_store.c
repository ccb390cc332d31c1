// SPDX-License-Identifier: MIT
/*
 * dw_store over SQLite: round trips (empty and binary values), key and size checks that write
 * nothing, URI forms and file mode, prefix scans across batches and at the 0x7e / 0xff edges,
 * scans beside a concurrent writer (every stable key exactly once), an open iterator that
 * blocks neither a writer nor a WAL checkpoint, kill -9 durability of acknowledged puts, corrupt
 * files, a newer schema version, a writer locked out by another process, four threads at once (run
 * under TSan) and allocation failure at every step (run under ASan).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <libpq-fe.h>

#include "core/store_int.h"
#include "dwscale/core.h"
#include "dwscale/store.h"

struct tmpdir {
	char path[512];
	char db[600];  /* path/store.db */
	char uri[620]; /* sqlite:path/store.db */
};

/* Set when the backend-independent tests run on PostgreSQL ($DW_TEST_PG_URI). */
static const char *pg_uri;

static void pg_reset(void)
{
	PGconn *c = PQconnectdb(pg_uri);
	PGresult *r;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	r = PQexec(c, "SET client_min_messages = warning; DROP TABLE IF EXISTS dw_kv");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
}

static void tmp_make(struct tmpdir *t)
{
	const char *base = getenv("DW_TEST_TMPDIR");
	int n;

	if (base && *base) {
		char cmd[600];

		n = snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", base);
		assert_true(n > 0 && (size_t)n < sizeof(cmd));
		assert_int_equal(system(cmd), 0);
	} else {
		base = "/tmp";
	}
	n = snprintf(t->path, sizeof(t->path), "%s/store-XXXXXX", base);
	assert_true(n > 0 && (size_t)n < sizeof(t->path));
	assert_non_null(mkdtemp(t->path));
	n = snprintf(t->db, sizeof(t->db), "%s/store.db", t->path);
	assert_true(n > 0 && (size_t)n < sizeof(t->db));
	n = snprintf(t->uri, sizeof(t->uri), "sqlite:%s", t->db);
	assert_true(n > 0 && (size_t)n < sizeof(t->uri));
	if (pg_uri) {
		n = snprintf(t->uri, sizeof(t->uri), "%s", pg_uri);
		assert_true(n > 0 && (size_t)n < sizeof(t->uri));
		pg_reset();
	}
}

static void tmp_remove(struct tmpdir *t)
{
	char cmd[600];
	int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);

	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	assert_int_equal(system(cmd), 0);
}

static dw_store *open_ok(const char *uri)
{
	dw_store *s = NULL;
	int rc = dw_store_open(uri, &s);

	if (rc != 0)
		fprintf(stderr, "dw_store_open(%s): %s: %s\n", uri, dw_strerror(rc),
			dw_store_errmsg(NULL));
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

static void check_value(dw_store *s, const char *key, const void *want, size_t want_len)
{
	void *v = NULL;
	size_t n = 99;

	assert_int_equal(dw_store_get(s, key, &v, &n), 0);
	assert_int_equal(n, want_len);
	if (want_len)
		assert_memory_equal(v, want, want_len);
	assert_int_equal(((char *)v)[n], '\0');
	dw_free(v);
}

static void check_absent(dw_store *s, const char *key)
{
	void *v = (void *)1;
	size_t n = 99;

	assert_int_equal(dw_store_get(s, key, &v, &n), DW_ENOTFOUND);
	assert_null(v);
	assert_int_equal(n, 0);
}

/* Number of keys under prefix, checking they come in strictly increasing byte order. */
static size_t count_scan(dw_store *s, const char *prefix)
{
	dw_store_iter *it = NULL;
	const char *k;
	char prev[DW_STORE_KEY_MAX + 1] = "";
	size_t n = 0;
	int rc;

	assert_int_equal(dw_store_scan(s, prefix, &it), 0);
	while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1) {
		assert_int_equal(strncmp(k, prefix, strlen(prefix)), 0);
		if (n)
			assert_true(strcmp(prev, k) < 0);
		snprintf(prev, sizeof(prev), "%s", k);
		n++;
	}
	assert_int_equal(rc, 0);
	dw_store_iter_free(it);
	return n;
}

/* ---- round trips ------------------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	static const unsigned char bin[] = { 0x00, 0xff, 0x01, 0x00, 0x7f, 0x80, 0x00 };
	struct tmpdir td;
	dw_store *s;

	tmp_make(&td);
	s = open_ok(td.uri);
	check_absent(s, "dw://a/1");
	assert_int_equal(dw_store_put(s, "dw://a/1", "one", 3), 0);
	assert_int_equal(dw_store_put(s, "dw://a/empty", "", 0), 0);
	assert_int_equal(dw_store_put(s, "dw://a/null-empty", NULL, 0), 0);
	assert_int_equal(dw_store_put(s, "dw://a/bin", bin, sizeof(bin)), 0);
	check_value(s, "dw://a/1", "one", 3);
	check_value(s, "dw://a/empty", "", 0);
	check_value(s, "dw://a/null-empty", "", 0);
	check_value(s, "dw://a/bin", bin, sizeof(bin));
	/* replace */
	assert_int_equal(dw_store_put(s, "dw://a/1", "uno!", 4), 0);
	check_value(s, "dw://a/1", "uno!", 4);
	/* delete */
	assert_int_equal(dw_store_delete(s, "dw://a/1"), 0);
	check_absent(s, "dw://a/1");
	assert_int_equal(dw_store_delete(s, "dw://a/1"), DW_ENOTFOUND);
	assert_int_equal(count_scan(s, "dw://a/"), 3);
	dw_store_close(s);

	/* Everything is still there after a reopen, through the plain-path form too. */
	s = open_ok(pg_uri ? td.uri : td.db); /* plain path form on SQLite */
	check_absent(s, "dw://a/1");
	check_value(s, "dw://a/empty", "", 0);
	check_value(s, "dw://a/bin", bin, sizeof(bin));
	dw_store_close(s);
	dw_store_close(NULL);
	tmp_remove(&td);
}

static void test_value_size(void **state)
{
	struct tmpdir td;
	dw_store *s;
	unsigned char *big;
	void *v = NULL;
	size_t n = 0;

	tmp_make(&td);
	s = open_ok(td.uri);
	big = malloc(DW_STORE_VALUE_MAX + 1);
	assert_non_null(big);
	for (size_t i = 0; i < DW_STORE_VALUE_MAX + 1; i += 4096)
		big[i] = (unsigned char)(i >> 12);
	big[DW_STORE_VALUE_MAX - 1] = 0xab;
	assert_int_equal(dw_store_put(s, "dw://big", big, DW_STORE_VALUE_MAX + 1), DW_ETOOBIG);
	check_absent(s, "dw://big");
	assert_int_equal(dw_store_put(s, "dw://big", big, DW_STORE_VALUE_MAX), 0);
	assert_int_equal(dw_store_get(s, "dw://big", &v, &n), 0);
	assert_int_equal(n, DW_STORE_VALUE_MAX);
	assert_memory_equal(v, big, DW_STORE_VALUE_MAX);
	dw_free(v);
	free(big);
	dw_store_close(s);
	tmp_remove(&td);
}

/* Large values: batches are cut by bytes, not only by rows, and still return every row. */
static void test_scan_large_values(void **state)
{
	struct tmpdir td;
	dw_store *s;
	dw_store_iter *it;
	const char *k;
	const void *v;
	size_t n, i = 0, vlen = 1u << 20;
	unsigned char *buf = malloc(vlen);
	int rc;

	assert_non_null(buf);
	tmp_make(&td);
	s = open_ok(td.uri);
	for (int j = 0; j < 10; j++) {
		char key[32];

		snprintf(key, sizeof(key), "dw://lv/%02d", j);
		memset(buf, 'a' + j, vlen);
		assert_int_equal(dw_store_put(s, key, buf, vlen), 0);
	}
	assert_int_equal(dw_store_scan(s, "dw://lv/", &it), 0);
	while ((rc = dw_store_iter_next(it, &k, &v, &n)) == 1) {
		char key[32];

		snprintf(key, sizeof(key), "dw://lv/%02zu", i);
		assert_string_equal(k, key);
		assert_int_equal(n, vlen);
		memset(buf, (int)('a' + i), vlen);
		assert_memory_equal(v, buf, vlen);
		i++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(i, 10);
	dw_store_iter_free(it);
	free(buf);
	dw_store_close(s);
	tmp_remove(&td);
}

struct locked_probe {
	dw_store *s;
	const char *msg_seen;
};

static void *errmsg_other_thread(void *arg)
{
	struct locked_probe *p = arg;

	p->msg_seen = dw_store_errmsg(p->s);
	return NULL;
}

/*
 * Another process's write transaction: a put waits out busy_timeout (5 s) and then reports
 * DW_ELOCKED with SQLite's text; reads go on meanwhile (WAL), and nothing is lost.
 */
static void test_locked(void **state)
{
	struct tmpdir td;
	struct locked_probe p;
	pthread_t th;
	dw_store *s;
	sqlite3 *raw;

	tmp_make(&td);
	s = open_ok(td.uri);
	assert_int_equal(dw_store_put(s, "dw://l/1", "1", 1), 0);
	assert_int_equal(sqlite3_open(td.db, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(dw_store_put(s, "dw://l/2", "2", 1), DW_ELOCKED);
	assert_non_null(strstr(dw_store_errmsg(s), "locked"));
	/* The message is this thread's: another thread sees none. */
	p.s = s;
	p.msg_seen = NULL;
	assert_int_equal(pthread_create(&th, NULL, errmsg_other_thread, &p), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_string_equal(p.msg_seen, "");
	check_value(s, "dw://l/1", "1", 1);
	assert_int_equal(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	check_absent(s, "dw://l/2");
	assert_int_equal(dw_store_put(s, "dw://l/2", "2", 1), 0);
	check_value(s, "dw://l/2", "2", 1);
	dw_store_close(s);
	tmp_remove(&td);
}

/* ---- key checks -------------------------------------------------------------------------- */

static void test_bad_keys(void **state)
{
	char long_ok[DW_STORE_KEY_MAX + 1], too_long[DW_STORE_KEY_MAX + 2];
	const char *bad[] = {
		"",	     "a/b",	  "dw:/x",     "dw:x",	    "DW://x",	 "http://x",
		"dw://",     "dw://a b",  "dw:// ",    "dw://a\tb", "dw://a\nb", "dw://\x01",
		"dw://\x7f", "dw://\x80", "dw://\xff", " dw://a",   "dw//a",	 too_long,
	};
	struct tmpdir td;
	dw_store *s;
	dw_store_iter *it = (void *)1;
	void *v = (void *)1;
	size_t n;

	memcpy(long_ok, "dw://", 5);
	memset(long_ok + 5, 'k', DW_STORE_KEY_MAX - 5);
	long_ok[DW_STORE_KEY_MAX] = '\0';
	memcpy(too_long, long_ok, DW_STORE_KEY_MAX);
	too_long[DW_STORE_KEY_MAX] = 'k';
	too_long[DW_STORE_KEY_MAX + 1] = '\0';

	assert_int_equal(dw_store_key_check(NULL), DW_EBADKEY);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (dw_store_key_check(bad[i]) != DW_EBADKEY)
			fail_msg("key %zu (\"%s\") was accepted", i, bad[i]);
	}
	assert_int_equal(dw_store_key_check("dw://x"), 0);
	assert_int_equal(dw_store_key_check("dw:///x"), 0);
	assert_int_equal(dw_store_key_check("dw://internal/backup/j-1?x=1&y=~!"), 0);
	assert_int_equal(dw_store_key_check(long_ok), 0);

	tmp_make(&td);
	s = open_ok(td.uri);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(dw_store_put(s, bad[i], "v", 1), DW_EBADKEY);
		assert_int_equal(dw_store_get(s, bad[i], &v, &n), DW_EBADKEY);
		assert_null(v);
		assert_int_equal(dw_store_delete(s, bad[i]), DW_EBADKEY);
	}
	assert_int_equal(dw_store_put(s, NULL, "v", 1), DW_EBADKEY);
	assert_int_equal(dw_store_get(s, NULL, &v, &n), DW_EBADKEY);
	assert_int_equal(dw_store_delete(s, NULL), DW_EBADKEY);
	/* Bad prefixes; "dw://" alone is a valid prefix (everything). */
	assert_int_equal(dw_store_scan(s, "dw:/", &it), DW_EBADKEY);
	assert_null(it);
	assert_int_equal(dw_store_scan(s, NULL, &it), DW_EBADKEY);
	assert_int_equal(dw_store_scan(s, "dw://a b", &it), DW_EBADKEY);
	/* Nothing was written. */
	assert_int_equal(count_scan(s, "dw://"), 0);
	/* The longest key works end to end. */
	assert_int_equal(dw_store_put(s, long_ok, "L", 1), 0);
	check_value(s, long_ok, "L", 1);
	assert_int_equal(count_scan(s, "dw://"), 1);
	/* A NULL value with a length is refused, not read. */
	assert_int_equal(dw_store_put(s, "dw://x", NULL, 3), -EINVAL);
	check_absent(s, "dw://x");
	dw_store_close(s);
	tmp_remove(&td);
}

/* ---- URIs and files ---------------------------------------------------------------------- */

static void test_uris(void **state)
{
	struct tmpdir td;
	char path[700];
	dw_store *s = (void *)1;
	struct stat sb;
	mode_t old = umask(022);

	tmp_make(&td);
	/* An unreachable PostgreSQL server: a clear backend error naming it. */
	assert_int_equal(dw_store_open("postgresql://127.0.0.1:1/dw?connect_timeout=5", &s),
			 DW_EBACKEND);
	assert_null(s);
	assert_non_null(strstr(dw_store_errmsg(NULL), "postgresql"));
	assert_non_null(strstr(dw_store_errmsg(NULL), "127.0.0.1"));
	assert_int_equal(dw_store_open("redis://x", &s), DW_EUNSUPPORTED);
	assert_int_equal(dw_store_open("sqlite:", &s), -EINVAL);
	assert_int_equal(dw_store_open("", &s), -EINVAL);
	assert_int_equal(dw_store_open(NULL, &s), -EINVAL);
	assert_null(s);

	/* The parent directory must exist; nothing is created. */
	snprintf(path, sizeof(path), "sqlite:%s/no/such/dir/store.db", td.path);
	assert_int_equal(dw_store_open(path, &s), -ENOENT);
	assert_null(s);
	assert_non_null(strstr(dw_store_errmsg(NULL), "no/such/dir"));
	snprintf(path, sizeof(path), "%s/no", td.path);
	assert_int_equal(stat(path, &sb), -1);

	/* A new file is created 0600. */
	s = open_ok(td.uri);
	assert_int_equal(stat(td.db, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	dw_store_close(s);

	/* In memory works too (handy for tools and fuzzing). */
	s = open_ok("sqlite::memory:");
	assert_int_equal(dw_store_put(s, "dw://m", "1", 1), 0);
	check_value(s, "dw://m", "1", 1);
	dw_store_close(s);
	umask(old);
	tmp_remove(&td);
}

static void test_corrupt(void **state)
{
	struct tmpdir td;
	char garbage[8192];
	dw_store *s = (void *)1;
	dw_store_iter *it = NULL;
	int fd, rc;
	struct stat sb;

	tmp_make(&td);
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 7 + 3);
	fd = open(td.db, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, garbage, sizeof(garbage)), sizeof(garbage));
	close(fd);
	assert_int_equal(dw_store_open(td.uri, &s), DW_ECORRUPT);
	assert_null(s);
	assert_true(strlen(dw_store_errmsg(NULL)) > 0);
	/* and the file was left alone */
	assert_int_equal(stat(td.db, &sb), 0);
	assert_int_equal(sb.st_size, sizeof(garbage));

	/* A valid header over a trashed table: the read that meets it reports DW_ECORRUPT. */
	assert_int_equal(unlink(td.db), 0);
	s = open_ok(td.uri);
	for (int i = 0; i < 300; i++) {
		char k[64];

		snprintf(k, sizeof(k), "dw://c/%04d", i);
		assert_int_equal(dw_store_put(s, k, garbage, 200), 0);
	}
	dw_store_close(s); /* the last close checkpoints the WAL into the file */
	assert_int_equal(stat(td.db, &sb), 0);
	assert_true(sb.st_size > 8192);
	fd = open(td.db, O_WRONLY);
	assert_true(fd >= 0);
	for (off_t off = 4096; off < sb.st_size; off += (off_t)sizeof(garbage))
		assert_true(pwrite(fd, garbage, sizeof(garbage), off) > 0);
	close(fd);
	s = NULL;
	rc = dw_store_open(td.uri, &s);
	if (rc == 0) {
		const char *k;

		assert_int_equal(dw_store_scan(s, "dw://c/", &it), 0);
		while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1)
			;
		dw_store_iter_free(it);
		assert_int_equal(rc, DW_ECORRUPT);
		assert_true(strlen(dw_store_errmsg(s)) > 0);
		dw_store_close(s);
	} else {
		assert_int_equal(rc, DW_ECORRUPT);
	}
	tmp_remove(&td);
}

static void test_newer_version(void **state)
{
	struct tmpdir td;
	dw_store *s;
	sqlite3 *db;
	sqlite3_stmt *st;

	tmp_make(&td);
	s = open_ok(td.uri);
	assert_int_equal(dw_store_put(s, "dw://v", "1", 1), 0);
	dw_store_close(s);
	assert_int_equal(sqlite3_open(td.db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	s = (void *)1;
	assert_int_equal(dw_store_open(td.uri, &s), DW_EVERSION);
	assert_null(s);
	assert_non_null(strstr(dw_store_errmsg(NULL), "version 2"));

	/* Refused, not rewritten. */
	assert_int_equal(sqlite3_open(td.db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 2);
	sqlite3_finalize(st);
	sqlite3_close(db);
	tmp_remove(&td);
}

/* ---- scans ------------------------------------------------------------------------------- */

static void test_prefix_upper(void **state)
{
	uint8_t out[8];

	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"ab", 2, out), 2);
	assert_memory_equal(out, "ac", 2);
	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"a~", 2, out), 2);
	assert_memory_equal(out, "a\x7f", 2);
	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"a\xff\xff", 3, out), 1);
	assert_memory_equal(out, "b", 1);
	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"\x01\xfe\xff", 3, out), 2);
	assert_memory_equal(out, "\x01\xff", 2);
	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"\xff\xff", 2, out), 0);
	assert_int_equal(dw__store_prefix_upper((const uint8_t *)"", 0, out), 0);
}

static void test_scan_batches(void **state)
{
	struct tmpdir td;
	dw_store *s;
	dw_store_iter *it;
	const char *k;
	const void *v;
	size_t n, i = 0;
	char want[64], wantv[64];
	int rc;

	tmp_make(&td);
	s = open_ok(td.uri);
	/* Neighbours on both sides of the range. */
	assert_int_equal(dw_store_put(s, "dw://scan", "x", 1), 0);
	assert_int_equal(dw_store_put(s, "dw://scan.", "x", 1), 0);
	assert_int_equal(dw_store_put(s, "dw://scan0", "x", 1), 0);
	assert_int_equal(dw_store_put(s, "dw://scao", "x", 1), 0);
	assert_int_equal(dw_store_put(s, "dw://sca", "x", 1), 0);
	for (int j = 999; j >= 0; j--) {
		snprintf(want, sizeof(want), "dw://scan/%04d", j);
		snprintf(wantv, sizeof(wantv), "value %d", j);
		assert_int_equal(dw_store_put(s, want, wantv, strlen(wantv)), 0);
	}
	assert_int_equal(dw_store_scan(s, "dw://scan/", &it), 0);
	while ((rc = dw_store_iter_next(it, &k, &v, &n)) == 1) {
		snprintf(want, sizeof(want), "dw://scan/%04zu", i);
		snprintf(wantv, sizeof(wantv), "value %zu", i);
		assert_string_equal(k, want);
		assert_int_equal(n, strlen(wantv));
		assert_memory_equal(v, wantv, n);
		i++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(i, 1000);
	/* At the end it stays at the end. */
	assert_int_equal(dw_store_iter_next(it, &k, &v, &n), 0);
	dw_store_iter_free(it);

	/* The prefix itself is a match; "dw://scan" covers scan, scan., scan/..., scan0. */
	assert_int_equal(count_scan(s, "dw://scan"), 1003);
	assert_int_equal(count_scan(s, "dw://sca"), 1005);
	assert_int_equal(count_scan(s, "dw://"), 1005);
	assert_int_equal(count_scan(s, "dw://scan/0999"), 1);
	assert_int_equal(count_scan(s, "dw://scan/1"), 0);
	assert_int_equal(count_scan(s, "dw://zzz"), 0);

	/* Freeing mid-walk is fine. */
	assert_int_equal(dw_store_scan(s, "dw://scan/", &it), 0);
	assert_int_equal(dw_store_iter_next(it, &k, &v, &n), 1);
	dw_store_iter_free(it);
	dw_store_close(s);
	tmp_remove(&td);
}

/* 0x7e ('~') is the largest key byte: its upper bound is 0x7f, which no key contains. */
static void test_scan_tilde_edge(void **state)
{
	static const char *keys[] = { "dw://a}",   "dw://a~", "dw://a~!", "dw://a~~",
				      "dw://a~~~", "dw://b",  "dw://~",	  "dw://~~" };
	struct tmpdir td;
	dw_store *s;

	tmp_make(&td);
	s = open_ok(td.uri);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_int_equal(dw_store_put(s, keys[i], "v", 1), 0);
	assert_int_equal(count_scan(s, "dw://a~"), 4);
	assert_int_equal(count_scan(s, "dw://a~~"), 2);
	assert_int_equal(count_scan(s, "dw://a"), 5);
	assert_int_equal(count_scan(s, "dw://~"), 2);
	assert_int_equal(count_scan(s, "dw://~~~"), 0);
	dw_store_close(s);
	tmp_remove(&td);
}

#define STABLE 600

struct mutator {
	const char *uri;
	atomic_bool stop;
	unsigned long rounds;
};

/* Inserts and deletes keys between and around the stable ones, on its own connection. */
static void *mutate(void *arg)
{
	struct mutator *m = arg;
	dw_store *s = NULL;
	char k[64];
	unsigned long r = 0;

	if (dw_store_open(m->uri, &s) != 0)
		return (void *)1;
	while (!atomic_load_explicit(&m->stop, memory_order_acquire) || r < 20) {
		unsigned j = (unsigned)(r * 37 % STABLE);

		snprintf(k, sizeof(k), "dw://w/%04u-x%lu", j, r);
		if (dw_store_put(s, k, "m", 1) != 0)
			break;
		if (r >= 3) {
			unsigned jd = (unsigned)((r - 3) * 37 % STABLE);

			snprintf(k, sizeof(k), "dw://w/%04u-x%lu", jd, r - 3);
			if (dw_store_delete(s, k) != 0)
				break;
		}
		r++;
	}
	m->rounds = r;
	dw_store_close(s);
	return NULL;
}

static void test_scan_concurrent_writer(void **state)
{
	struct tmpdir td;
	struct mutator m = { 0 };
	pthread_t th;
	dw_store *s;
	dw_store_iter *it;
	unsigned char seen[STABLE] = { 0 };
	char prev[DW_STORE_KEY_MAX + 1] = "";
	const char *k;
	void *thr_rc;
	unsigned others = 0;
	int rc;

	tmp_make(&td);
	s = open_ok(td.uri);
	for (unsigned j = 0; j < STABLE; j++) {
		char key[64];

		snprintf(key, sizeof(key), "dw://w/%04u", j);
		assert_int_equal(dw_store_put(s, key, "s", 1), 0);
	}
	m.uri = td.uri;
	atomic_init(&m.stop, false);
	assert_int_equal(pthread_create(&th, NULL, mutate, &m), 0);
	assert_int_equal(dw_store_scan(s, "dw://w/", &it), 0);
	while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1) {
		unsigned j;
		char tail;

		assert_true(strcmp(prev, k) < 0);
		snprintf(prev, sizeof(prev), "%s", k);
		if (sscanf(k, "dw://w/%4u%c", &j, &tail) == 1) {
			assert_true(j < STABLE);
			seen[j]++;
		} else {
			others++;
		}
		usleep(200); /* give the writer room to interleave with the walk */
	}
	assert_int_equal(rc, 0);
	dw_store_iter_free(it);
	atomic_store_explicit(&m.stop, true, memory_order_release);
	assert_int_equal(pthread_join(th, &thr_rc), 0);
	assert_null(thr_rc);
	for (unsigned j = 0; j < STABLE; j++) {
		if (seen[j] != 1)
			fail_msg("stable key %u seen %u times", j, seen[j]);
	}
	assert_true(m.rounds >= 20);
	dw_store_close(s);
	tmp_remove(&td);
}

static void test_iter_does_not_block(void **state)
{
	struct tmpdir td;
	dw_store *s, *s2;
	dw_store_iter *it;
	const char *k;
	sqlite3 *raw;
	int log_frames = -1, ckpt = -1, rc;
	size_t n = 0;

	tmp_make(&td);
	s = open_ok(td.uri);
	for (int i = 0; i < 200; i++) {
		char key[64];

		snprintf(key, sizeof(key), "dw://nb/%03d", i);
		assert_int_equal(dw_store_put(s, key, "v", 1), 0);
	}
	s2 = open_ok(td.uri);
	assert_int_equal(dw_store_scan(s, "dw://nb/", &it), 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(dw_store_iter_next(it, &k, NULL, NULL), 1);
		n++;
	}
	/* Mid-walk: another connection writes, and a TRUNCATE checkpoint (which needs every
	 * reader gone, and has no busy handler here so it would fail at once) succeeds. */
	assert_int_equal(dw_store_put(s2, "dw://other/1", "w", 1), 0);
	assert_int_equal(dw_store_put(s2, "dw://nb/999", "w", 1), 0);
	assert_int_equal(sqlite3_open(td.db, &raw), SQLITE_OK);
	/* A first read makes the connection see the WAL; it ends before the checkpoint. */
	assert_int_equal(sqlite3_exec(raw, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL),
			 SQLITE_OK);
	rc = sqlite3_wal_checkpoint_v2(raw, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &ckpt);
	if (rc != SQLITE_OK)
		fail_msg("checkpoint: %s", sqlite3_errmsg(raw));
	assert_int_equal(log_frames, 0);
	sqlite3_close(raw);
	/* The walk goes on and sees the key added past its position. */
	while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1)
		n++;
	assert_int_equal(rc, 0);
	assert_int_equal(n, 201);
	dw_store_iter_free(it);
	dw_store_close(s2);
	dw_store_close(s);
	tmp_remove(&td);
}

/* ---- durability -------------------------------------------------------------------------- */

#define KILL_N	   1000000 /* more than can finish before the kill */
#define KILL_AFTER 200

static void kill_child(const char *uri, int wfd)
{
	dw_store *s = NULL;
	char k[64], v[64];

	if (dw_store_open(uri, &s) != 0)
		_exit(2);
	for (uint32_t i = 0; i < KILL_N; i++) {
		snprintf(k, sizeof(k), "dw://kill/%05u", i);
		snprintf(v, sizeof(v), "value-%u-%u", i, i * 2654435761u);
		if (dw_store_put(s, k, v, strlen(v)) != 0)
			_exit(3);
		if (write(wfd, &i, sizeof(i)) != sizeof(i))
			_exit(4);
	}
	_exit(0);
}

static void test_kill9(void **state)
{
	struct tmpdir td;
	int p[2], status;
	uint32_t i, acked = 0, got;
	pid_t pid;
	dw_store *s;
	ssize_t r;

	tmp_make(&td);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		kill_child(td.uri, p[1]);
	}
	close(p[1]);
	while (acked < KILL_AFTER && (r = read(p[0], &got, sizeof(got))) == sizeof(got)) {
		assert_int_equal(got, acked);
		acked++;
	}
	assert_int_equal(kill(pid, SIGKILL), 0);
	/* Acknowledgements already in the pipe count too. */
	while ((r = read(p[0], &got, sizeof(got))) == sizeof(got)) {
		assert_int_equal(got, acked);
		acked++;
	}
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("child was not killed mid-way (status %d)", status);
	assert_true(acked >= KILL_AFTER);

	s = open_ok(td.uri);
	for (i = 0; i < acked; i++) {
		char k[64], v[64];

		snprintf(k, sizeof(k), "dw://kill/%05u", i);
		snprintf(v, sizeof(v), "value-%u-%u", i, i * 2654435761u);
		check_value(s, k, v, strlen(v));
	}
	/* Nothing beyond at most the one put in flight. */
	assert_true(count_scan(s, "dw://kill/") <= acked + 1);
	dw_store_close(s);
	tmp_remove(&td);
}

/* ---- threads ----------------------------------------------------------------------------- */

/* count_scan without cmocka asserts (which must stay on the main thread); -1 on error. */
static long count_quiet(dw_store *s, const char *prefix)
{
	dw_store_iter *it = NULL;
	const char *k;
	long n = 0;
	int rc;

	if (dw_store_scan(s, prefix, &it) != 0)
		return -1;
	while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1)
		n++;
	dw_store_iter_free(it);
	return rc == 0 ? n : -1;
}

#define THREADS	   4
#define PER_THREAD 150

struct worker {
	dw_store *s;
	int id;
	int failures;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char k[64], v[64];
	void *got;
	size_t n;

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(k, sizeof(k), "dw://t/%d/%04d", w->id, i);
		snprintf(v, sizeof(v), "%d:%d", w->id, i);
		if (dw_store_put(w->s, k, v, strlen(v)) != 0)
			w->failures++;
		if (dw_store_get(w->s, k, &got, &n) != 0 || n != strlen(v) ||
		    memcmp(got, v, n) != 0)
			w->failures++;
		dw_free(got);
		if (i % 10 == 9) {
			snprintf(k, sizeof(k), "dw://t/%d/%04d", w->id, i - 5);
			if (dw_store_delete(w->s, k) != 0)
				w->failures++;
		}
		if (i % 50 == 0) {
			snprintf(k, sizeof(k), "dw://t/%d/", w->id);
			if (count_quiet(w->s, k) != i + 1 - i / 10)
				w->failures++;
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct tmpdir td;
	struct worker w[THREADS];
	pthread_t th[THREADS];
	dw_store *s;

	tmp_make(&td);
	s = open_ok(td.uri);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .s = s, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(count_scan(s, "dw://t/"), THREADS * (PER_THREAD - PER_THREAD / 10));
	dw_store_close(s);
	tmp_remove(&td);
}

struct opener {
	const char *uri;
	int id;
	int rc;
	char msg[256];
};

static void *open_and_put(void *arg)
{
	struct opener *o = arg;
	dw_store *s = NULL;
	char k[32];

	o->rc = dw_store_open(o->uri, &s);
	if (o->rc != 0) {
		snprintf(o->msg, sizeof(o->msg), "open: %s", dw_store_errmsg(NULL));
		return NULL;
	}
	snprintf(k, sizeof(k), "dw://open/%d", o->id);
	o->rc = dw_store_put(s, k, "o", 1);
	if (o->rc != 0)
		snprintf(o->msg, sizeof(o->msg), "put: %s", dw_store_errmsg(s));
	dw_store_close(s);
	return NULL;
}

/* Several connections creating one new file at once: one creates the schema, all succeed. */
static void test_concurrent_open(void **state)
{
	struct tmpdir td;
	struct opener o[THREADS];
	pthread_t th[THREADS];
	dw_store *s;

	tmp_make(&td);
	for (int i = 0; i < THREADS; i++) {
		o[i] = (struct opener){ .uri = td.uri, .id = i, .rc = -1 };
		assert_int_equal(pthread_create(&th[i], NULL, open_and_put, &o[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (o[i].rc != 0)
			fail_msg("opener %d: %s (%s)", i, dw_strerror(o[i].rc), o[i].msg);
	}
	s = open_ok(td.uri);
	assert_int_equal(count_scan(s, "dw://open/"), THREADS);
	dw_store_close(s);
	tmp_remove(&td);
}

/* ---- allocation failure ------------------------------------------------------------------ */

/* One pass of every operation; each may fail with -ENOMEM but nothing else. */
static void alloc_pass(const char *uri)
{
	dw_store *s = NULL;
	dw_store_iter *it = NULL;
	const char *k;
	void *v = NULL;
	size_t n;
	int rc;

	rc = dw_store_open(uri, &s);
	if (rc != 0) {
		assert_int_equal(rc, -ENOMEM);
		assert_null(s);
		return;
	}
	rc = dw_store_put(s, "dw://af/new", "new", 3);
	assert_true(rc == 0 || rc == -ENOMEM);
	rc = dw_store_get(s, "dw://af/fixed", &v, &n);
	assert_true(rc == 0 || rc == -ENOMEM);
	if (rc == 0)
		assert_memory_equal(v, "fixed", 5);
	dw_free(v);
	rc = dw_store_scan(s, "dw://af/", &it);
	assert_true(rc == 0 || rc == -ENOMEM);
	if (rc == 0) {
		while ((rc = dw_store_iter_next(it, &k, NULL, NULL)) == 1)
			;
		assert_true(rc == 0 || rc == -ENOMEM);
		dw_store_iter_free(it);
	}
	rc = dw_store_delete(s, "dw://af/new");
	assert_true(rc == 0 || rc == -ENOMEM || rc == DW_ENOTFOUND);
	dw_store_close(s);
}

static void test_alloc_failure(void **state)
{
	struct tmpdir td;
	dw_store *s;
	unsigned long nth, made;

	tmp_make(&td);
	s = open_ok(td.uri);
	for (int i = 0; i < 150; i++) { /* enough rows for three scan batches */
		char k[64];

		snprintf(k, sizeof(k), "dw://af/row%03d", i);
		assert_int_equal(dw_store_put(s, k, "r", 1), 0);
	}
	assert_int_equal(dw_store_put(s, "dw://af/fixed", "fixed", 5), 0);
	dw_store_close(s);

	for (nth = 1; nth < 1000; nth++) {
		dw_alloc_fail_nth(nth);
		alloc_pass(td.uri);
		made = dw_alloc_fail_nth(0);
		if (made < nth)
			break; /* a whole pass ran without reaching the failure */
	}
	assert_true(nth > 5 && nth < 1000);
	s = open_ok(td.uri);
	check_value(s, "dw://af/fixed", "fixed", 5);
	assert_int_equal(count_scan(s, "dw://af/row"), 150);
	dw_store_close(s);
	tmp_remove(&td);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_value_size),
		cmocka_unit_test(test_scan_large_values),
		cmocka_unit_test(test_locked),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_uris),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_newer_version),
		cmocka_unit_test(test_prefix_upper),
		cmocka_unit_test(test_scan_batches),
		cmocka_unit_test(test_scan_tilde_edge),
		cmocka_unit_test(test_scan_concurrent_writer),
		cmocka_unit_test(test_iter_does_not_block),
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_concurrent_open),
		cmocka_unit_test(test_alloc_failure),
	};

	/* The tests that do not look at SQLite's files, run again on PostgreSQL. */
	const struct CMUnitTest pg_tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_value_size),
		cmocka_unit_test(test_scan_large_values),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_scan_batches),
		cmocka_unit_test(test_scan_tilde_edge),
		cmocka_unit_test(test_scan_concurrent_writer),
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_threads),
	};

	if (argc > 1 && strcmp(argv[1], "postgresql") == 0) {
		pg_uri = getenv("DW_TEST_PG_URI");
		if (!pg_uri || !*pg_uri) {
			printf("skip: DW_TEST_PG_URI is not set (make test starts a PostgreSQL "
			       "server and sets it)\n");
			return 77;
		}
		if (argc > 2)
			cmocka_set_test_filter(argv[2]);
		return cmocka_run_group_tests_name("store-postgresql", pg_tests, NULL, NULL);
	}
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* e.g. "test_kill9" or "test_scan*" */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
