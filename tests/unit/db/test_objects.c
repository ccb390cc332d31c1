// SPDX-License-Identifier: MIT
/*
 * Database storage on the SQLite strategy: put/get round trips at chunk boundaries, atomic
 * visibility, overwrite and delete under a reader, bad keys, listings with tokens, counters, and
 * a put killed with SIGKILL, damaged rows caught by their checksums, objects without row sums and
 * the upgrade of a schema version 1 database.
 *
 * The same suite runs on both strategies: with no argument on SQLite in a temp dir, with
 * "postgresql" on the server named by $DW_TEST_PG_URI (make test starts one with scripts/pg.sh),
 * its dw_ tables dropped before each test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "dwscale/db.h"

#define ROW (256u << 10)

struct fixture {
	char dir[256];
	char uri[320];
	char path[300];
	dw_db *db;
};

static const char *pg_uri; /* set when running on PostgreSQL */

static void pg_exec(const char *sql)
{
	PGconn *c = PQconnectdb(pg_uri);
	PGresult *r;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	r = PQexec(c, sql);
	assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
	PQclear(r);
	PQfinish(c);
}

static int open_db(struct fixture *f)
{
	dw_db_config cfg;
	char err[256];

	dw_db_config_default(&cfg);
	cfg.strategies[0] = f->uri;
	cfg.n_strategies = 1;
	return dw_db_open(&cfg, &f->db, err, sizeof(err));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *base = getenv("DW_TEST_TMPDIR");

	if (base)
		mkdir(base, 0700);
	snprintf(f->dir, sizeof(f->dir), "%s/dwdb-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/objects.db", f->dir);
	snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
	if (pg_uri) {
		snprintf(f->uri, sizeof(f->uri), "%s", pg_uri);
		pg_exec("SET client_min_messages = warning; DROP TABLE IF EXISTS dw_objects,"
			" dw_chunks, dw_counts, dw_totals, dw_pending, dw_meta;"
			" DROP SEQUENCE IF EXISTS dw_oid_seq");
	}
	if (open_db(f) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[600];

	dw_db_close(f->db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *b = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
	return b;
}

static int put_mem(dw_db *db, const char *key, const void *data, size_t n, dw_db_object *o)
{
	dw_source src;
	int rc;

	assert_int_equal(dw_source_from_mem(data, n, &src), 0);
	rc = dw_db_put(db, NULL, key, strlen(key), &src, NULL, o);
	dw_source_close(&src);
	return rc;
}

/* Read an object through the chunk iterator into a malloc'd buffer. */
static int get_all(dw_db *db, const char *key, uint8_t **out, size_t *n)
{
	dw_db_reader *r;
	dw_db_object info;
	const void *chunk;
	size_t len, got = 0;
	int rc;

	rc = dw_db_reader_open(db, NULL, key, strlen(key), &info, &r);
	if (rc < 0)
		return rc;
	*out = malloc(info.size ? info.size : 1);
	while ((rc = dw_db_reader_next(r, &chunk, &len)) == 1) {
		assert_true(got + len <= info.size);
		memcpy(*out + got, chunk, len);
		got += len;
	}
	*n = got;
	dw_db_reader_close(r);
	dw_db_object_clear(&info);
	return rc;
}

static void test_round_trip_sizes(void **state)
{
	struct fixture *f = *state;
	const size_t sizes[] = { 0, 1, ROW - 1, ROW, ROW + 1, 3 * ROW + 17, 9u << 20 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *data = pattern(sizes[i], (unsigned)i), *back = NULL;
		uint8_t sha[32];
		dw_db_object o;
		size_t n;
		char key[32];

		snprintf(key, sizeof(key), "size/%zu", sizes[i]);
		assert_int_equal(put_mem(f->db, key, data, sizes[i], &o), 0);
		assert_int_equal(o.size, sizes[i]);
		SHA256(data, sizes[i], sha);
		assert_memory_equal(o.sha256, sha, 32);
		assert_string_equal(o.content_type, "application/octet-stream");
		dw_db_object_clear(&o);
		assert_int_equal(get_all(f->db, key, &back, &n), 0);
		assert_int_equal(n, sizes[i]);
		if (sizes[i])
			assert_memory_equal(back, data, sizes[i]);
		free(back);
		free(data);
	}
}

static void test_streaming_get_through_bbuf(void **state)
{
	struct fixture *f = *state;
	size_t n = 5u << 20, got = 0;
	uint8_t *data = pattern(n, 7);
	dw_db_object info;
	dw_bbuf *b;
	const void *chunk;
	size_t len;
	int rc;

	assert_int_equal(put_mem(f->db, "stream/a", data, n, NULL), 0);
	assert_int_equal(dw_db_get(f->db, NULL, "stream/a", 8, &info, &b), 0);
	assert_int_equal(info.size, n);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		assert_true(len <= 64u << 10); /* the configured chunk size */
		assert_memory_equal((const uint8_t *)chunk, data + got, len);
		got += len;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(got, n);
	assert_true(dw_bbuf_peak(b) <= 64u << 20);
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	free(data);
}

static void test_metadata_and_overwrite(void **state)
{
	struct fixture *f = *state;
	dw_db_put_opts opts = { .content_type = "text/csv", .meta = "{\"owner\":\"etl\"}" };
	dw_db_object a, b;
	dw_source src;
	uint64_t total;
	dw_db_list_query q = { 0 };
	dw_db_page page;

	assert_int_equal(dw_source_from_mem("x,y\n", 4, &src), 0);
	assert_int_equal(dw_db_put(f->db, NULL, "m/k", 3, &src, &opts, &a), 0);
	dw_source_close(&src);
	assert_string_equal(a.content_type, "text/csv");
	assert_string_equal(a.meta, "{\"owner\":\"etl\"}");
	usleep(2000);
	assert_int_equal(put_mem(f->db, "m/k", "longer content", 14, &b), 0);
	assert_int_equal(b.size, 14);
	assert_int_equal(b.created_ns, a.created_ns); /* an overwrite keeps the creation time */
	assert_true(b.modified_ns > a.modified_ns);
	assert_null(b.meta);
	dw_db_object_clear(&a);
	dw_db_object_clear(&b);
	/* an overwrite does not change the count */
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	total = page.total;
	dw_db_page_clear(&page);
	assert_int_equal(total, 1);
}

static void test_bad_keys(void **state)
{
	struct fixture *f = *state;
	char big[1026];
	const char *bad[] = { "", "a\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82" };
	dw_db_object o;
	dw_source src;
	dw_db_list_query q = { 0 };
	dw_db_page page;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(dw_source_from_mem("v", 1, &src), 0);
		assert_int_equal(dw_db_put(f->db, NULL, bad[i], strlen(bad[i]), &src, NULL, NULL),
				 DW_EBADKEY);
		dw_source_close(&src);
	}
	assert_int_equal(dw_source_from_mem("v", 1, &src), 0);
	assert_int_equal(dw_db_put(f->db, NULL, "a\0b", 3, &src, NULL, NULL), DW_EBADKEY);
	dw_source_close(&src);
	memset(big, 'k', sizeof(big));
	assert_int_equal(dw_source_from_mem("v", 1, &src), 0);
	assert_int_equal(dw_db_put(f->db, NULL, big, 1025, &src, NULL, NULL), DW_EBADKEY);
	dw_source_close(&src);
	/* 1024 bytes and multi-byte UTF-8 are fine */
	assert_int_equal(dw_source_from_mem("v", 1, &src), 0);
	assert_int_equal(dw_db_put(f->db, NULL, big, 1024, &src, NULL, NULL), 0);
	dw_source_close(&src);
	assert_int_equal(put_mem(f->db, "caf\xc3\xa9/\xe2\x82\xac", "v", 1, NULL), 0);
	assert_int_equal(dw_db_stat(f->db, NULL, "missing", 7, &o), DW_ENOTFOUND);
	assert_int_equal(dw_db_stat(f->db, "nosuch", "x", 1, &o), DW_ENOTFOUND);
	assert_non_null(strstr(dw_db_errmsg(f->db), "nosuch"));
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	assert_int_equal(page.total, 2); /* nothing from the refused puts */
	dw_db_page_clear(&page);
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	dw_db_object o;

	assert_int_equal(put_mem(f->db, "d/1", "abc", 3, NULL), 0);
	assert_int_equal(dw_db_delete(f->db, NULL, "d/1", 3), 0);
	assert_int_equal(dw_db_stat(f->db, NULL, "d/1", 3, &o), DW_ENOTFOUND);
	assert_int_equal(dw_db_delete(f->db, NULL, "d/1", 3), DW_ENOTFOUND);
}

static void test_reader_sees_one_version(void **state)
{
	struct fixture *f = *state;
	size_t n = 4 * ROW;
	uint8_t *v1 = pattern(n, 1), *v2 = pattern(n, 2), *back = NULL;
	dw_db_reader *r;
	const void *chunk;
	size_t len;

	assert_int_equal(put_mem(f->db, "race/k", v1, n, NULL), 0);
	assert_int_equal(dw_db_reader_open(f->db, NULL, "race/k", 6, NULL, &r), 0);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), 1);
	assert_memory_equal(chunk, v1, len);
	/* overwrite while the reader is mid-object: it must fail, not return v2's bytes */
	assert_int_equal(put_mem(f->db, "race/k", v2, n, NULL), 0);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), DW_ECONFLICT);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), DW_ECONFLICT); /* sticky */
	dw_db_reader_close(r);
	/* a reader opened now sees v2 whole */
	assert_int_equal(get_all(f->db, "race/k", &back, &len), 0);
	assert_memory_equal(back, v2, n);
	free(back);
	/* delete under a reader: same rule */
	assert_int_equal(dw_db_reader_open(f->db, NULL, "race/k", 6, NULL, &r), 0);
	assert_int_equal(dw_db_delete(f->db, NULL, "race/k", 6), 0);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), DW_ECONFLICT);
	dw_db_reader_close(r);
	free(v1);
	free(v2);
}

static int stream_all(dw_db *db, const char *key, uint64_t offset, const uint8_t *want,
		      size_t *got);

/*
 * Overwrite key (n bytes) while a streaming get of it has handed on one chunk: the rest is the
 * old version whole, or DW_ECONFLICT, never a mix; a new get returns the new version.
 */
static void overwrite_during_get(struct fixture *f, const char *key, size_t n)
{
	uint8_t *v1 = pattern(n, 11), *v2 = pattern(n, 12);
	const void *chunk;
	size_t len, got;
	dw_bbuf *b;
	int rc;

	assert_int_equal(put_mem(f->db, key, v1, n, NULL), 0);
	assert_int_equal(dw_db_get(f->db, NULL, key, strlen(key), NULL, &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_memory_equal(chunk, v1, len);
	got = len;
	assert_int_equal(put_mem(f->db, key, v2, n, NULL), 0);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		/* whatever arrives is version 1 */
		assert_memory_equal(chunk, v1 + got, len);
		got += len;
	}
	if (rc == 0)
		assert_int_equal(got, n);
	else
		assert_int_equal(rc, DW_ECONFLICT);
	dw_bbuf_close(b);
	assert_int_equal(stream_all(f->db, key, 0, v2, &got), 0);
	assert_int_equal(got, n);
	free(v1);
	free(v2);
}

static void test_streaming_get_sees_one_version(void **state)
{
	struct fixture *f = *state;
	const dw_scalable *sc = dw_db_scalable(f->db);
	dw_limit_change small[2] = { { .name = "chunk_size", .value = 65536 },
				     { .name = "buffer_cap", .value = 65536 } };
	char err[128];

	/* a one-chunk buffer: the producer cannot read ahead past the overwrite; longer than one
	 * read snapshot of the SQLite cursor */
	assert_int_equal(sc->ops->reconfigure(sc->self, small, 2, err, sizeof(err)), 0);
	overwrite_during_get(f, "sg/k", 40 * ROW);
}

/* A source that fails after `ok` bytes. */
struct failing {
	size_t ok, given;
};

static ssize_t failing_read(void *ctx, void *buf, size_t len)
{
	struct failing *fs = ctx;

	if (fs->given >= fs->ok)
		return -EIO;
	if (len > fs->ok - fs->given)
		len = fs->ok - fs->given;
	memset(buf, 'z', len);
	fs->given += len;
	return (ssize_t)len;
}

static long count_rows(const char *path, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char sql[64];
	long n = -1;

	if (pg_uri) {
		PGconn *c = PQconnectdb(pg_uri);
		PGresult *r;

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM dw_%s", table);
		r = PQexec(c, sql);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		n = atol(PQgetvalue(r, 0, 0));
		PQclear(r);
		PQfinish(c);
		return n;
	}
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_failed_put_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct failing fs = { .ok = 5 * ROW + 100 };
	dw_source src = { .read = failing_read, .close = NULL, .ctx = &fs };
	dw_db_object o;

	assert_int_equal(dw_db_put(f->db, NULL, "fail/k", 6, &src, NULL, NULL), -EIO);
	assert_int_equal(dw_db_stat(f->db, NULL, "fail/k", 6, &o), DW_ENOTFOUND);
	assert_int_equal(count_rows(f->path, "chunks"), 0);
	assert_int_equal(count_rows(f->path, "pending"), 0);
}

/* A source that yields forever, slowly enough to be killed mid-put. */
static ssize_t endless_read(void *ctx, void *buf, size_t len)
{
	int *wfd = ctx;

	memset(buf, 'e', len);
	if (*wfd >= 0) {
		if (write(*wfd, "x", 1) != 1)
			_exit(3);
		close(*wfd);
		*wfd = -1;
	}
	usleep(200);
	return (ssize_t)len;
}

static void test_put_killed(void **state)
{
	struct fixture *f = *state;
	int p[2];
	pid_t pid;
	char c;
	dw_db_object o;
	int status;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dw_db_config cfg;
		dw_db *db;
		char err[128];
		int wfd = p[1];
		dw_source src = { .read = endless_read, .ctx = &wfd };

		close(p[0]);
		dw_db_config_default(&cfg);
		cfg.strategies[0] = f->uri;
		cfg.n_strategies = 1;
		if (dw_db_open(&cfg, &db, err, sizeof(err)) != 0)
			_exit(2);
		dw_db_put(db, NULL, "crash/k", 7, &src, NULL, NULL);
		_exit(1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	/* let it write several batches of rows, then kill it */
	while (count_rows(f->path, "chunks") < 16)
		usleep(10000);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(dw_db_stat(f->db, NULL, "crash/k", 7, &o), DW_ENOTFOUND);
	assert_true(count_rows(f->path, "chunks") >= 16);
	/*
	 * Reopening collects the orphaned rows of the dead put. A PostgreSQL server notices the
	 * killed session a moment later, so allow it a few tries there.
	 */
	for (int tries = 0;; tries++) {
		dw_db_close(f->db);
		assert_int_equal(open_db(f), 0);
		if (count_rows(f->path, "chunks") == 0 || !pg_uri || tries == 50)
			break;
		usleep(100 * 1000);
	}
	assert_int_equal(count_rows(f->path, "chunks"), 0);
	assert_int_equal(count_rows(f->path, "pending"), 0);
	assert_int_equal(dw_db_stat(f->db, NULL, "crash/k", 7, &o), DW_ENOTFOUND);
}

static void test_pages_and_tokens(void **state)
{
	struct fixture *f = *state;
	dw_db_list_query q = { .prefix = "p/", .prefix_len = 2, .limit = 7 };
	dw_db_page page;
	char key[32], *tok = NULL;
	size_t seen = 0;
	int rc;

	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "p/%03d", i);
		assert_int_equal(put_mem(f->db, key, "v", 1, NULL), 0);
	}
	assert_int_equal(put_mem(f->db, "q/other", "v", 1, NULL), 0);
	assert_int_equal(put_mem(f->db, "p", "v", 1, NULL), 0); /* not under "p/" */
	do {
		q.page_token = tok;
		rc = dw_db_list(f->db, NULL, &q, &page);
		assert_int_equal(rc, 0);
		assert_int_equal(page.total, 50);
		for (size_t i = 0; i < page.n; i++) {
			snprintf(key, sizeof(key), "p/%03zu", seen + i);
			assert_int_equal(page.items[i].key_len, strlen(key));
			assert_memory_equal(page.items[i].key, key, strlen(key));
		}
		seen += page.n;
		free(tok);
		tok = page.next_token ? strdup(page.next_token) : NULL;
		assert_true(page.has_more == (tok != NULL));
		dw_db_page_clear(&page);
	} while (tok);
	assert_int_equal(seen, 50);

	/* a token is bound to its query: another prefix refuses it */
	q.prefix = "p/";
	q.page_token = NULL;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	tok = strdup(page.next_token);
	dw_db_page_clear(&page);
	q.prefix = "q/";
	q.page_token = tok;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), DW_ETOKEN);
	assert_non_null(strstr(dw_db_errmsg(f->db), "token"));
	/* tampering is refused */
	q.prefix = "p/";
	tok[strlen(tok) / 2] ^= 1;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), DW_ETOKEN);
	free(tok);
	q.page_token = "garbage";
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), DW_ETOKEN);
	q.page_token = NULL;
	q.limit = DW_DB_PAGE_MAX + 1;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), DW_ELIMIT);
}

static void test_walk_exactly_once_under_churn(void **state)
{
	struct fixture *f = *state;
	dw_db_list_query q = { .prefix = "w/", .prefix_len = 2, .limit = 10 };
	dw_db_page page;
	char key[32], *tok = NULL;
	int seen[100] = { 0 }, round = 0;

	for (int i = 0; i < 100; i += 2) { /* stable keys: even numbers */
		snprintf(key, sizeof(key), "w/%03d", i);
		assert_int_equal(put_mem(f->db, key, "v", 1, NULL), 0);
	}
	do {
		q.page_token = tok;
		assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
		for (size_t i = 0; i < page.n; i++) {
			int k = atoi((const char *)page.items[i].key + 2);

			if (k % 2 == 0)
				seen[k]++;
		}
		free(tok);
		tok = page.next_token ? strdup(page.next_token) : NULL;
		dw_db_page_clear(&page);
		/* churn odd keys everywhere, before and after the cursor */
		for (int j = 1; j < 100; j += 2) {
			snprintf(key, sizeof(key), "w/%03d", j);
			if ((j + round) % 3 == 0)
				assert_int_equal(put_mem(f->db, key, "o", 1, NULL), 0);
			else
				dw_db_delete(f->db, NULL, key, strlen(key));
		}
		round++;
	} while (tok);
	for (int i = 0; i < 100; i += 2)
		assert_int_equal(seen[i], 1);
}

/*
 * The count of a prefix is a prepared statement on PostgreSQL, and a prepared statement dies
 * with its server session: after every session is cut (as by a server restart) counts fail at
 * most once per pooled connection, then answer right again, prepared anew.
 */
static void test_count_after_lost_sessions(void **state)
{
	struct fixture *f = *state;
	uint64_t n = 0;
	int rc = -1, tries = 0;

	for (int i = 0; i < 3; i++) {
		char key[16];

		snprintf(key, sizeof(key), "c/%d", i);
		assert_int_equal(put_mem(f->db, key, "v", 1, NULL), 0);
	}
	for (int i = 0; i < 8; i++) { /* every pooled connection prepares it */
		assert_int_equal(dw_db_count(f->db, NULL, "c/", 2, &n), 0);
		assert_int_equal(n, 3);
	}
	if (pg_uri)
		pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
			" WHERE datname = current_database() AND pid <> pg_backend_pid()");
	while (rc != 0 && tries++ < 16)
		rc = dw_db_count(f->db, NULL, "c/", 2, &n);
	assert_int_equal(rc, 0);
	assert_true(tries <= 5); /* one failure per pooled connection at most */
	for (int i = 0; i < 20; i++) {
		n = 0;
		assert_int_equal(dw_db_count(f->db, NULL, "c/", 2, &n), 0);
		assert_int_equal(n, 3);
	}
	n = 0;
	assert_int_equal(dw_db_count(f->db, NULL, NULL, 0, &n), 0);
	assert_int_equal(n, 3);
}

static void test_counts_and_stream(void **state)
{
	struct fixture *f = *state;
	dw_db_list_query q = { 0 };
	dw_db_page page;
	dw_db_lister *l;
	const dw_db_object *o;
	char key[64];
	int n = 0, rc;

	for (int i = 0; i < 600; i++) {
		snprintf(key, sizeof(key), "%s/%s/%04d", i % 3 ? "a" : "b", i % 2 ? "x" : "y", i);
		assert_int_equal(put_mem(f->db, key, "v", 1, NULL), 0);
	}
	q.prefix = "a/";
	q.prefix_len = 2;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	assert_int_equal(page.total, 400);
	dw_db_page_clear(&page);
	q.prefix = "a/x/";
	q.prefix_len = 4;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	assert_int_equal(page.total, 200);
	dw_db_page_clear(&page);
	q.prefix = "a/x/00"; /* not a '/' boundary: counted by range */
	q.prefix_len = 6;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	assert_int_equal(page.total, 33); /* odd i < 100, not multiples of 3 */
	dw_db_page_clear(&page);
	for (int i = 0; i < 600; i += 5) {
		snprintf(key, sizeof(key), "%s/%s/%04d", i % 3 ? "a" : "b", i % 2 ? "x" : "y", i);
		assert_int_equal(dw_db_delete(f->db, NULL, key, strlen(key)), 0);
	}
	q.prefix = NULL;
	q.prefix_len = 0;
	assert_int_equal(dw_db_list(f->db, NULL, &q, &page), 0);
	assert_int_equal(page.total, 480);
	dw_db_page_clear(&page);
	/* the streaming walk sees every key once, in order, across many batches */
	assert_int_equal(dw_db_lister_open(f->db, NULL, "a/", 2, 0, &l), 0);
	key[0] = '\0';
	while ((rc = dw_db_lister_next(l, &o)) == 1) {
		char k[64];

		snprintf(k, sizeof(k), "%.*s", (int)o->key_len, (const char *)o->key);
		assert_true(strcmp(k, key) > 0);
		strcpy(key, k);
		n++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, 320);
	dw_db_lister_close(l);
}

struct seen_metrics {
	double objects, bytes, puts;
};

static void grab_metric(void *arg, const dw_metric *m)
{
	struct seen_metrics *sm = arg;

	if (strcmp(m->name, "objects") == 0)
		sm->objects = m->value;
	else if (strcmp(m->name, "stored_bytes") == 0)
		sm->bytes = m->value;
	else if (strcmp(m->name, "puts_total") == 0)
		sm->puts = m->value;
}

static void test_scalable_limits_and_metrics(void **state)
{
	struct fixture *f = *state;
	const dw_scalable *sc = dw_db_scalable(f->db);
	struct seen_metrics sm = { 0 };
	dw_limit_change bad[2] = { { .name = "chunk_size", .value = 1 << 20 },
				   { .name = "buffer_cap", .value = 512 << 10 } };
	dw_limit_change good = { .name = "chunk_size", .value = 128 << 10 };
	dw_limit_change unknown = { .name = "nope", .value = 1 };
	uint8_t *data = pattern(1 << 20, 3);
	dw_bbuf *b;
	const void *chunk;
	size_t len, biggest = 0;
	char err[160];
	int rc;

	assert_string_equal(sc->name, "db");
	assert_int_equal(put_mem(f->db, "s/1", data, 1 << 20, NULL), 0);
	assert_int_equal(put_mem(f->db, "s/2", "xy", 2, NULL), 0);
	assert_int_equal(put_mem(f->db, "s/2", "xyz", 3, NULL), 0);
	sc->ops->metrics(sc->self, grab_metric, &sm);
	assert_true(sm.objects == 2);
	assert_true(sm.bytes == (1 << 20) + 3);
	assert_true(sm.puts == 3);
	/* cap below chunk: refused as a whole, nothing applied */
	assert_int_equal(sc->ops->reconfigure(sc->self, bad, 2, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "buffer_cap"));
	assert_int_equal(sc->ops->reconfigure(sc->self, &unknown, 1, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(sc->ops->reconfigure(sc->self, &good, 1, err, sizeof(err)), 0);
	assert_int_equal(dw_db_get(f->db, NULL, "s/1", 3, NULL, &b), 0);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1)
		biggest = len > biggest ? len : biggest;
	assert_int_equal(rc, 0);
	assert_int_equal(biggest, 128 << 10); /* the new chunk size is in force */
	dw_bbuf_close(b);
	assert_int_equal(sc->ops->state(sc->self), DW_BP_NORMAL);
	free(data);
}

struct cache_counts {
	double hits, misses;
};

static void grab_cache(void *arg, const dw_metric *m)
{
	struct cache_counts *cc = arg;

	if (strcmp(m->name, "cache_hits_total") == 0)
		cc->hits = m->value;
	else if (strcmp(m->name, "cache_misses_total") == 0)
		cc->misses = m->value;
}

static struct cache_counts cache_counts(dw_db *db)
{
	const dw_scalable *sc = dw_db_scalable(db);
	struct cache_counts cc = { -1, -1 };

	sc->ops->metrics(sc->self, grab_cache, &cc);
	return cc;
}

static size_t list_keys(dw_db *db, const char *prefix, char *joined, size_t cap)
{
	dw_db_list_query q = { .prefix = prefix, .prefix_len = strlen(prefix), .limit = 100 };
	dw_db_page page;
	size_t n;

	assert_int_equal(dw_db_list(db, NULL, &q, &page), 0);
	joined[0] = '\0';
	for (size_t i = 0; i < page.n; i++) {
		strncat(joined, (const char *)page.items[i].key, page.items[i].key_len);
		strncat(joined, ",", cap - strlen(joined) - 1);
	}
	n = page.n;
	assert_int_equal(page.total, n);
	dw_db_page_clear(&page);
	return n;
}

static void test_query_cache_never_stale(void **state)
{
	struct fixture *f = *state;
	struct cache_counts a, b, c;
	char keys[256];

	assert_int_equal(put_mem(f->db, "c/1", "v", 1, NULL), 0);
	assert_int_equal(put_mem(f->db, "c/2", "v", 1, NULL), 0);
	a = cache_counts(f->db);
	assert_int_equal(list_keys(f->db, "c/", keys, sizeof(keys)), 2);
	assert_int_equal(list_keys(f->db, "c/", keys, sizeof(keys)), 2);
	b = cache_counts(f->db);
	assert_true(b.hits == a.hits + 1); /* the second listing came from the cache */
	/* a write invalidates: the new key shows up at once, and the delete too */
	assert_int_equal(put_mem(f->db, "c/3", "v", 1, NULL), 0);
	assert_int_equal(list_keys(f->db, "c/", keys, sizeof(keys)), 3);
	assert_string_equal(keys, "c/1,c/2,c/3,");
	assert_int_equal(dw_db_delete(f->db, NULL, "c/1", 3), 0);
	assert_int_equal(list_keys(f->db, "c/", keys, sizeof(keys)), 2);
	assert_string_equal(keys, "c/2,c/3,");
	c = cache_counts(f->db);
	assert_true(c.hits == b.hits); /* both were misses: the cached pages were stale */
}

/* Run one SQL statement on the strategy's own database, behind dw_db's back. */
static void raw_sql(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	char *err = NULL;

	if (pg_uri) {
		pg_exec(sql);
		return;
	}
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(db);
}

/* Flip the bits of content byte off of row seq of key's stored rows. */
static void damage_row(struct fixture *f, const char *key, unsigned seq, unsigned off,
		       bool row_sums)
{
	char sql[512];
	unsigned at = off + (row_sums ? 8 : 0);

	if (pg_uri)
		snprintf(sql, sizeof(sql),
			 "UPDATE dw_chunks SET data = set_byte(data, %u, get_byte(data, %u) # 255)"
			 " WHERE seq = %u AND oid = (SELECT oid FROM dw_objects WHERE key = '%s')",
			 at, at, seq, key);
	else
		snprintf(sql, sizeof(sql),
			 "UPDATE chunks SET data = substr(data, 1, %u) ||"
			 " (SELECT CASE WHEN substr(data, %u, 1) = x'00' THEN x'01' ELSE x'00' END)"
			 " || substr(data, %u)"
			 " WHERE id = (SELECT oid << 24 | %u FROM objects WHERE key = CAST('%s' AS "
			 "BLOB))",
			 at, at + 1, at + 2, seq, key);
	raw_sql(f, sql);
}

static char stream_msg[256]; /* the last stream_all's error message */

/* Stream key to the end; returns the stream's result, bytes seen in *got. */
static int stream_all(dw_db *db, const char *key, uint64_t offset, const uint8_t *want, size_t *got)
{
	dw_db_object info;
	dw_bbuf *b;
	const void *chunk;
	size_t len;
	int rc;

	*got = 0;
	rc = offset ? dw_db_get_range(db, NULL, key, strlen(key), offset, &info, &b)
		    : dw_db_get(db, NULL, key, strlen(key), &info, &b);
	if (rc < 0)
		return rc;
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		if (want)
			assert_memory_equal(chunk, want + offset + *got, len);
		*got += len;
	}
	snprintf(stream_msg, sizeof(stream_msg), "%s", rc < 0 ? dw_bbuf_errmsg(b) : "");
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	return rc;
}

/*
 * A damaged row stops every kind of read inside that row: the streamed get and the chunk
 * iterator with DW_ECORRUPT naming the row, before the row's end; a ranged get that starts
 * inside the row too; a ranged get past it reads intact bytes. With verify_reads off the bytes
 * come back as stored.
 */
static void test_damaged_row_detected(void **state)
{
	struct fixture *f = *state;
	size_t n = 4 * ROW + 100, got = 0;
	uint8_t *data = pattern(n, 11);
	dw_db_reader *r;
	const void *chunk;
	size_t len;
	int rc;

	assert_int_equal(put_mem(f->db, "dmg/a", data, n, NULL), 0);
	assert_int_equal(stream_all(f->db, "dmg/a", 0, data, &got), 0);
	assert_int_equal(got, n);
	damage_row(f, "dmg/a", 1, 1000, true);

	rc = stream_all(f->db, "dmg/a", 0, NULL, &got);
	assert_int_equal(rc, DW_ECORRUPT);
	assert_true(got >= ROW && got < 2 * ROW); /* row 0 whole, row 1's end never */
	assert_non_null(strstr(stream_msg, "row 1 "));

	assert_int_equal(dw_db_reader_open(f->db, NULL, "dmg/a", 5, NULL, &r), 0);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), 1);
	assert_int_equal(len, ROW);
	assert_memory_equal(chunk, data, ROW);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), DW_ECORRUPT);
	assert_int_equal(dw_db_reader_next(r, &chunk, &len), DW_ECORRUPT); /* sticky */
	dw_db_reader_close(r);

	/* ranged: starting after the damaged byte but inside its row still fails */
	assert_int_equal(stream_all(f->db, "dmg/a", ROW + 5000, NULL, &got), DW_ECORRUPT);
	assert_int_equal(stream_all(f->db, "dmg/a", 2 * ROW + 3, data, &got), 0);
	assert_int_equal(got, n - 2 * ROW - 3);

	/* unchecked reads return what is stored */
	dw_db_close(f->db);
	{
		dw_db_config cfg;
		char err[256];

		dw_db_config_default(&cfg);
		cfg.strategies[0] = f->uri;
		cfg.n_strategies = 1;
		cfg.verify_reads = false;
		assert_int_equal(dw_db_open(&cfg, &f->db, err, sizeof(err)), 0);
	}
	assert_int_equal(stream_all(f->db, "dmg/a", 0, NULL, &got), 0);
	assert_int_equal(got, n);
	free(data);
}

static void grab_helpers(void *arg, const dw_metric *m)
{
	if (strcmp(m->name, "read_helpers_active") == 0)
		*(double *)arg = m->value;
}

static double helpers_active(dw_db *db)
{
	const dw_scalable *sc = dw_db_scalable(db);
	double v = -1;

	sc->ops->metrics(sc->self, grab_helpers, &v);
	return v;
}

/*
 * A streaming get of a long object reads its rows with two threads (read_helpers): the bytes
 * are the same, whole or ranged from inside a row, with the helper counted while the get is
 * open and given back after; with the limit at 0 the get reads alone and returns the same.
 * On PostgreSQL (no cursors) gets always read alone.
 */
static void test_parallel_rows(void **state)
{
	struct fixture *f = *state;
	const dw_scalable *sc = dw_db_scalable(f->db);
	dw_limit_change off = { .name = "read_helpers", .value = 0 };
	dw_limit_change two = { .name = "read_helpers", .value = 2 };
	size_t n = 23 * ROW + 4321, got;
	uint64_t offs[] = { 0, 1, ROW - 1, ROW + 77, 5 * ROW, 19 * ROW + 10, 22 * ROW };
	uint8_t *data = pattern(n, 21);
	dw_db_object info;
	const void *chunk;
	size_t len;
	dw_bbuf *b;
	char err[160];

	assert_int_equal(sc->ops->reconfigure(sc->self, &two, 1, err, sizeof(err)), 0);
	assert_int_equal(put_mem(f->db, "par/a", data, n, NULL), 0);
	assert_int_equal(helpers_active(f->db), 0);
	assert_int_equal(dw_db_get(f->db, NULL, "par/a", 5, &info, &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_memory_equal(chunk, data, len);
	assert_int_equal(helpers_active(f->db), pg_uri ? 0 : 1);
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	assert_int_equal(helpers_active(f->db), 0);

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		assert_int_equal(stream_all(f->db, "par/a", offs[i], data, &got), 0);
		assert_int_equal(got, n - offs[i]);
	}
	assert_int_equal(helpers_active(f->db), 0);

	/* no budget room for a part per worker: one producer, and the helper slot goes back */
	assert_int_equal(dw_membudget_set_total(dw_membudget_default(), ROW), 0);
	assert_int_equal(dw_db_get(f->db, NULL, "par/a", 5, &info, &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_memory_equal(chunk, data, len);
	assert_int_equal(helpers_active(f->db), 0);
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	assert_int_equal(stream_all(f->db, "par/a", 0, data, &got), 0);
	assert_int_equal(got, n);
	assert_int_equal(dw_membudget_set_total(dw_membudget_default(), DW_MEMBUDGET_DEFAULT_TOTAL),
			 0);

	assert_int_equal(sc->ops->reconfigure(sc->self, &off, 1, err, sizeof(err)), 0);
	assert_int_equal(dw_db_get(f->db, NULL, "par/a", 5, &info, &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_int_equal(helpers_active(f->db), 0);
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	assert_int_equal(stream_all(f->db, "par/a", ROW + 77, data, &got), 0);
	assert_int_equal(got, n - ROW - 77);
	free(data);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * Streaming gets reuse the read connections earlier gets left (up to a bound): many gets one
 * after the other, or a few at once, leave the process with a bounded number of open files,
 * and every get still reads the current version.
 */
static void test_read_connections_bounded_and_current(void **state)
{
	struct fixture *f = *state;
	size_t n = 6 * ROW, got;
	uint8_t *v1 = pattern(n, 41), *v2 = pattern(n, 42);
	dw_bbuf *b[4];
	int fds0, fds1;

	assert_int_equal(put_mem(f->db, "rc/a", v1, n, NULL), 0);
	fds0 = count_fds();
	for (int i = 0; i < 30; i++) {
		assert_int_equal(stream_all(f->db, "rc/a", i % 2 ? ROW + 3 : 0, v1, &got), 0);
		assert_int_equal(got, i % 2 ? n - ROW - 3 : n);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(dw_db_get(f->db, NULL, "rc/a", 4, NULL, &b[i]), 0);
	for (int i = 0; i < 4; i++)
		dw_bbuf_close(b[i]);
	fds1 = count_fds();
	/* at most 8 idle connections of 3 files each (database, WAL, shared memory) */
	assert_true(fds1 - fds0 <= 8 * 3);
	for (int i = 0; i < 30; i++)
		assert_int_equal(stream_all(f->db, "rc/a", 0, v1, &got), 0);
	assert_int_equal(count_fds(), fds1);
	/* a reused connection sees a write made since it was last used */
	assert_int_equal(put_mem(f->db, "rc/a", v2, n, NULL), 0);
	assert_int_equal(stream_all(f->db, "rc/a", 0, v2, &got), 0);
	assert_int_equal(got, n);
	free(v1);
	free(v2);
}

/* Damaged rows read by either thread of a parallel get stop it at that row, with its number. */
static void test_parallel_rows_damaged(void **state)
{
	struct fixture *f = *state;
	size_t n = 12 * ROW, got;
	uint8_t *data = pattern(n, 23);

	assert_int_equal(put_mem(f->db, "pd/a", data, n, NULL), 0);
	damage_row(f, "pd/a", 6, 5, true);
	assert_int_equal(stream_all(f->db, "pd/a", 0, data, &got), DW_ECORRUPT);
	assert_int_equal(got, 6 * ROW); /* rows 0-5 whole, nothing of row 6 */
	assert_non_null(strstr(stream_msg, "row 6 "));
	damage_row(f, "pd/a", 3, ROW - 1, true);
	assert_int_equal(stream_all(f->db, "pd/a", 0, data, &got), DW_ECORRUPT);
	assert_int_equal(got, 3 * ROW);
	assert_non_null(strstr(stream_msg, "row 3 "));
	assert_int_equal(stream_all(f->db, "pd/a", 2 * ROW + 9, data, &got), DW_ECORRUPT);
	assert_int_equal(got, ROW - 9);
	assert_int_equal(helpers_active(f->db), 0);
	free(data);
}

/* The same during a parallel get, whose workers read ahead of the consumer. */
static void test_parallel_get_sees_one_version(void **state)
{
	overwrite_during_get(*state, "pv/k", 60 * ROW);
}

/*
 * Objects stored without row sums (written before schema version 2) still read back, checked
 * against their SHA-256 at the end: intact they stream whole, damaged the get fails.
 */
static void test_objects_without_row_sums(void **state)
{
	struct fixture *f = *state;
	size_t n = 2 * ROW + 7, got = 0;
	uint8_t *data = pattern(n, 12), *back = NULL;

	assert_int_equal(put_mem(f->db, "old/a", data, n, NULL), 0);
	if (pg_uri)
		raw_sql(f, "UPDATE dw_chunks SET data = substring(data from 9) WHERE oid = (SELECT"
			   " oid FROM dw_objects WHERE key = 'old/a');"
			   " UPDATE dw_objects SET rowsums = false WHERE key = 'old/a'");
	else
		raw_sql(f, "UPDATE chunks SET data = substr(data, 9) WHERE id >> 24 = (SELECT oid"
			   " FROM objects WHERE key = CAST('old/a' AS BLOB));"
			   " UPDATE objects SET rowsums = 0 WHERE key = CAST('old/a' AS BLOB)");
	assert_int_equal(stream_all(f->db, "old/a", 0, data, &got), 0);
	assert_int_equal(got, n);
	assert_int_equal(get_all(f->db, "old/a", &back, &got), 0);
	assert_int_equal(got, n);
	assert_memory_equal(back, data, n);
	free(back);
	damage_row(f, "old/a", 2, 3, false);
	assert_int_equal(stream_all(f->db, "old/a", 0, NULL, &got), DW_ECORRUPT);
	assert_non_null(strstr(stream_msg, "SHA-256"));
	free(data);
}

/* A schema version 1 SQLite database (no rowsums column) opens, gains the column, and its
 * objects read back; new objects get row sums. */
static void test_sqlite_schema_1_upgrades(void **state)
{
	struct fixture *f = *state;
	uint8_t *data, *back = NULL;
	char sql[1024];
	size_t got;
	sqlite3 *db;
	sqlite3_stmt *st;

	if (pg_uri)
		skip(); /* the same upgrade on PostgreSQL is ALTER TABLE ... IF NOT EXISTS */
	data = pattern(ROW + 5, 13);
	dw_db_close(f->db);
	f->db = NULL;
	unlink(f->path);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "PRAGMA page_size=16384; PRAGMA journal_mode=WAL;"
			     "CREATE TABLE objects(key BLOB PRIMARY KEY, oid INTEGER NOT NULL,"
			     " size INTEGER NOT NULL, chunks INTEGER NOT NULL, ctype TEXT NOT NULL,"
			     " created INTEGER NOT NULL, modified INTEGER NOT NULL, sha256 BLOB "
			     "NOT NULL,"
			     " meta TEXT) WITHOUT ROWID;"
			     "CREATE TABLE chunks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
			     "CREATE TABLE counts(prefix BLOB PRIMARY KEY, n INTEGER NOT NULL) "
			     "WITHOUT ROWID;"
			     "CREATE TABLE totals(name TEXT PRIMARY KEY, n INTEGER NOT NULL) "
			     "WITHOUT ROWID;"
			     "INSERT INTO totals VALUES('bytes', 262149), ('generation', 1);"
			     "CREATE TABLE pending(oid INTEGER PRIMARY KEY AUTOINCREMENT,"
			     " pid INTEGER NOT NULL, started INTEGER NOT NULL);"
			     "INSERT INTO counts VALUES(x'', 1), (CAST('v1/' AS BLOB), 1);"
			     "INSERT INTO pending VALUES(1, 0, 0); DELETE FROM pending;"
			     "PRAGMA user_version=1;",
			     NULL, NULL, NULL),
		SQLITE_OK);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO objects VALUES(CAST('v1/a' AS BLOB), 1, %u, 2, 'text/plain', 1, 1,"
		 " ?1, NULL)",
		 ROW + 5);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	{
		uint8_t sha[32];

		SHA256(data, ROW + 5, sha);
		sqlite3_bind_blob(st, 1, sha, 32, SQLITE_TRANSIENT);
	}
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO chunks VALUES(?1, ?2)", -1, &st, NULL),
			 SQLITE_OK);
	for (int seq = 0; seq < 2; seq++) {
		sqlite3_bind_int64(st, 1, (1ll << 24) | seq);
		sqlite3_bind_blob(st, 2, data + (size_t)seq * ROW, seq ? 5 : (int)ROW,
				  SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(st), SQLITE_DONE);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);

	assert_int_equal(open_db(f), 0);
	assert_int_equal(stream_all(f->db, "v1/a", 0, data, &got), 0);
	assert_int_equal(got, ROW + 5);
	assert_int_equal(get_all(f->db, "v1/a", &back, &got), 0);
	assert_memory_equal(back, data, ROW + 5);
	free(back);
	if (put_mem(f->db, "v1/b", data, ROW + 5, NULL) != 0)
		fail_msg("put on the upgraded database: %s", dw_db_errmsg(f->db));
	assert_int_equal(stream_all(f->db, "v1/b", 0, data, &got), 0);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT group_concat(rowsums), (SELECT user_version"
					    " FROM pragma_user_version) FROM objects",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "0,1");
	assert_int_equal(sqlite3_column_int(st, 1), 2);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(data);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streaming_get_through_bbuf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metadata_and_overwrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_sees_one_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streaming_get_sees_one_version, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_put_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pages_and_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_exactly_once_under_churn, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_count_after_lost_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counts_and_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scalable_limits_and_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_cache_never_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_row_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_rows_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_connections_bounded_and_current, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parallel_get_sees_one_version, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_objects_without_row_sums, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_schema_1_upgrades, setup, teardown),
	};
	if (argc > 1 && strcmp(argv[1], "postgresql") == 0) {
		pg_uri = getenv("DW_TEST_PG_URI");
		if (!pg_uri || !*pg_uri) {
			printf("skip: DW_TEST_PG_URI is not set (make test starts a PostgreSQL "
			       "server and sets it)\n");
			return 77;
		}
		cmocka_set_message_output(CM_OUTPUT_STDOUT);
	}
	return cmocka_run_group_tests_name(pg_uri ? "objects-postgresql" : "objects-sqlite", tests,
					   NULL, NULL);
}
