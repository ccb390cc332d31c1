// SPDX-License-Identifier: MIT
/*
 * bench_db: database storage (dw_db) against the plain ways of doing the same thing on the same
 * machine, in the same run:
 *
 *   1. get of a big object (4 GiB) to /dev/null, with verify_reads on and off, against a plain
 *      64 KiB sqlite3_blob_read loop over the same chunk rows (SQLite) and against
 *      `psql -c "\lo_export OID /dev/null"` of the same bytes stored as a large object
 *      (PostgreSQL); throughput, ratio and peak RSS (goal <= 80 MiB); for information, the
 *      same blob loop on two threads (even and odd rows), and 200 gets of a 1 MiB object in
 *      a row (what a get costs beyond its bytes: a connection, a stream, its threads);
 *   2. put of the same object from a file: throughput and peak RSS (goal <= 80 MiB);
 *   3. listing over 1M objects: page 10,000 reached by walking tokens vs page 1 (goal <= 2x),
 *      beside the same page by SQL OFFSET;
 *   4. dw_db_count at 1M objects (goal <= 0.1 ms);
 *   5. 64 threads each getting a 1 GiB object at once: the default memory budget's peak vs its
 *      total, the most chunk bytes held at any sample, and peak RSS.
 *
 *   bench_db --dir DIR [--pg URI --pg-list URI] [--size 4G] [--conc-size 1G] [--threads 64]
 *            [--objects 1000000] [--runs 5] [--pg-runs 2] [--list-runs 201] [--psql PATH]
 *            [--conc-pg]
 *
 * Defaults come from DW_BENCH_DB_SIZE, DW_BENCH_DB_CONC_SIZE, DW_BENCH_DB_THREADS,
 * DW_BENCH_DB_OBJECTS, DW_BENCH_DB_RUNS, DW_BENCH_DB_PG_RUNS when set (PostgreSQL gets are ten
 * times slower, hence fewer runs). Item 5 runs on SQLite; on PostgreSQL only with --conc-pg
 * or DW_BENCH_DB_CONC_PG=1 (64 GiB through one server takes over 3 minutes here). DIR holds the
 * source file and the SQLite databases; bench/db.sh makes it, starts a throwaway PostgreSQL for
 * --pg and --pg-list (two databases, so the listing fixture holds exactly --objects rows) and
 * removes it all afterwards.
 *
 * Every dwscale measurement runs in a forked child that opens its own dw_db, so its peak RSS
 * (VmHWM) is its own; the parent holds no database handle across fork. The child reports through
 * a pipe. Gets alternate baseline, verify on, verify off in each round, so drift hits all alike;
 * the figures are medians. The source file stays in the page cache (it was just written), so
 * gets measure moving database pages through user space, not the disk.
 *
 * The 1M-object listing fixture is not built through dw_db_put (a durable transaction per
 * object would take an hour): the database is created by dw_db_open, then rows are inserted
 * with SQL in one transaction, and counts (for "" and each '/'-prefix level) are computed from
 * the inserted rows with one aggregate INSERT, so invariant 3 of db_int.h holds. The program says
 * so in its output, and checks that dw_db_count agrees with SELECT count(*).
 *
 * Exit status: 0 if every goal holds, 1 if any is missed, 2 on error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "bench_util.h"
#include "dwscale/bbuf.h"
#include "dwscale/db.h"

#define RUNS_MAX     51
#define XS	     12
#define MIB	     (1024.0 * 1024.0)
#define RSS_GOAL_MIB 80.0
#define BIG_KEY	     "big/object"
#define CONC_KEY     "big/conc"
#define BLOB_PIECE   (64u << 10)
#define SEQ_BITS     24	   /* chunks.id = oid << 24 | seq, as in src/db/sqlite.c */
#define PAGE_LIMIT   100   /* listing page size measured */
#define PAGE_TARGET  10000 /* page measured against page 1 */
#define COUNT_CALLS  10001
#define OFFSET_RUNS  21
/* SHA-256 of the empty string: fixture objects are empty. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct result {
	int rc;
	double secs;
	uint64_t bytes;
	long hwm_kib;
	double x[XS];
	char msg[256];
};

struct opts {
	const char *dir, *pg, *pg_list, *psql;
	uint64_t size, conc_size, objects;
	int threads, runs, pg_runs, list_runs;
	bool conc_pg;
};

static struct opts o;
static int misses;
static char file_path[4096];

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *verdict(bool ok)
{
	if (!ok)
		misses++;
	return ok ? "PASS" : "MISS";
}

static int set_msg(struct result *r, int rc, const char *what, const char *detail)
{
	int n = snprintf(r->msg, sizeof(r->msg), "%s: %s%s%s", what, dw_strerror(rc),
			 detail && *detail ? ": " : "", detail ? detail : "");

	if (n >= (int)sizeof(r->msg)) /* a cut message still names the failure */
		r->msg[sizeof(r->msg) - 2] = '~';
	return r->rc = rc;
}

/* Run fn(arg, r) in a forked child; fills r (with the child's VmHWM). */
static int in_child(void (*fn)(const void *arg, struct result *r), const void *arg,
		    struct result *r)
{
	int p[2], status;
	pid_t pid;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	fflush(stdout);
	fflush(stderr);
	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct result cr;

		memset(&cr, 0, sizeof(cr));
		close(p[0]);
		fn(arg, &cr);
		cr.hwm_kib = vm_hwm_kib();
		_exit(write_all(p[1], &cr, sizeof(cr)) < 0 ? 3 : 0);
	}
	close(p[1]);
	n = read(p[0], r, sizeof(*r));
	close(p[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    n != (ssize_t)sizeof(*r)) {
		snprintf(r->msg, sizeof(r->msg), "child died (status %d)", status);
		return r->rc = -ECHILD;
	}
	if (r->rc < 0)
		fprintf(stderr, "bench_db: %s\n", r->msg);
	return r->rc;
}

/* Run a command; wall-clock seconds in *secs and its peak RSS in *maxrss_kib. */
static int run_cmd(char *const argv[], bool quiet, double *secs, long *maxrss_kib)
{
	struct rusage ru;
	int status;
	double t0 = now_s();
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);

			if (fd >= 0)
				dup2(fd, 1);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0)
		return -errno;
	*secs = now_s() - t0;
	*maxrss_kib = ru.ru_maxrss;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

static int db_open(const char *uri, bool verify, size_t cache_entries, dw_token_keyring *kr,
		   dw_db **db, struct result *r)
{
	dw_db_config cfg;
	char err[512] = "";
	int rc;

	dw_db_config_default(&cfg);
	cfg.strategies[0] = uri;
	cfg.n_strategies = 1;
	cfg.verify_reads = verify;
	cfg.cache_entries = cache_entries;
	cfg.tokens = kr;
	rc = dw_db_open(&cfg, db, err, sizeof(err));
	if (rc < 0)
		set_msg(r, rc, "dw_db_open", err);
	return rc;
}

/* ---- put ---------------------------------------------------------------------------------- */

struct put_arg {
	const char *uri, *key;
	uint64_t limit; /* bytes of the file to store */
};

struct limited {
	int fd;
	uint64_t left;
};

static ssize_t limited_read(void *ctx, void *buf, size_t len)
{
	struct limited *l = ctx;
	ssize_t n;

	if (l->left == 0)
		return 0;
	if (len > l->left)
		len = (size_t)l->left;
	do
		n = read(l->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	l->left -= (uint64_t)n;
	return n;
}

static void child_put(const void *varg, struct result *r)
{
	const struct put_arg *a = varg;
	struct limited lim = { .fd = -1, .left = a->limit };
	dw_source src = { .read = limited_read, .ctx = &lim };
	dw_db_object obj;
	dw_db *db = NULL;
	double t0;
	int rc;

	memset(&obj, 0, sizeof(obj));
	if (db_open(a->uri, true, 0, NULL, &db, r) < 0)
		return;
	lim.fd = open(file_path, O_RDONLY | O_CLOEXEC);
	if (lim.fd < 0) {
		set_msg(r, -errno, "open", file_path);
		goto out;
	}
	(void)posix_fadvise(lim.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	t0 = now_s();
	rc = dw_db_put(db, NULL, a->key, strlen(a->key), &src, NULL, &obj);
	r->secs = now_s() - t0;
	if (rc < 0) {
		set_msg(r, rc, "dw_db_put", dw_db_errmsg(db));
		goto out;
	}
	r->bytes = obj.size;
	if (obj.size != a->limit)
		set_msg(r, DW_ECORRUPT, "dw_db_put", "stored size differs from the source");
out:
	dw_db_object_clear(&obj);
	if (lim.fd >= 0)
		close(lim.fd);
	dw_db_close(db);
}

/* ---- get ---------------------------------------------------------------------------------- */

struct get_arg {
	const char *uri, *key;
	bool verify;
};

/* Stream key to out; adds its bytes to r->bytes; 0, or the error (with r's message set). */
static int get_to(dw_db *db, const char *key, int out, struct result *r)
{
	dw_db_object info;
	dw_bbuf *b = NULL;
	uint64_t start = r->bytes;
	const void *p;
	size_t len;
	int rc;

	rc = dw_db_get(db, NULL, key, strlen(key), &info, &b);
	if (rc < 0) {
		set_msg(r, rc, "dw_db_get", dw_db_errmsg(db));
		return rc;
	}
	while ((rc = dw_bbuf_next(b, &p, &len)) == 1) {
		rc = write_all(out, p, len);
		if (rc < 0)
			break;
		r->bytes += len;
	}
	if (rc < 0) {
		set_msg(r, rc, "dw_db_get stream", dw_bbuf_errmsg(b));
	} else if (r->bytes - start != info.size) {
		rc = DW_ECORRUPT;
		set_msg(r, rc, "dw_db_get", "short read");
	}
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	return rc;
}

static void child_get(const void *varg, struct result *r)
{
	const struct get_arg *a = varg;
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	dw_db *db = NULL;
	double t0;

	if (out < 0 || db_open(a->uri, a->verify, 0, NULL, &db, r) < 0)
		goto out;
	t0 = now_s();
	get_to(db, a->key, out, r);
	r->secs = now_s() - t0;
out:
	dw_db_close(db);
	if (out >= 0)
		close(out);
}

/* Many gets of a small object one after the other: what a get costs beyond its bytes. */
#define SMALL_SIZE (1u << 20)
#define SMALL_GETS 200

static void child_small(const void *varg, struct result *r)
{
	const struct get_arg *a = varg;
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	unsigned char *data = dw_malloc(SMALL_SIZE);
	dw_db *db = NULL;
	dw_source src;
	double t0;
	int rc;

	if (out < 0 || !data) {
		set_msg(r, -ENOMEM, "small gets", "setup");
		goto out;
	}
	for (size_t i = 0; i < SMALL_SIZE; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 13);
	if (db_open(a->uri, a->verify, 0, NULL, &db, r) < 0)
		goto out;
	if (dw_source_from_mem(data, SMALL_SIZE, &src) < 0) {
		set_msg(r, -ENOMEM, "small gets", "source");
		goto out;
	}
	rc = dw_db_put(db, NULL, "small/object", 12, &src, NULL, NULL);
	dw_source_close(&src);
	if (rc < 0) {
		set_msg(r, rc, "dw_db_put", dw_db_errmsg(db));
		goto out;
	}
	t0 = now_s();
	for (int i = 0; i < SMALL_GETS; i++) {
		if (get_to(db, "small/object", out, r) < 0)
			goto out;
	}
	r->secs = now_s() - t0;
out:
	dw_db_close(db);
	dw_free(data);
	if (out >= 0)
		close(out);
}

/* The pull iterator alone (no stream, no producer thread): shows where a get's time goes. */
static void child_reader(const void *varg, struct result *r)
{
	const struct get_arg *a = varg;
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	dw_db_reader *rd = NULL;
	dw_db *db = NULL;
	const void *p;
	size_t len;
	double t0;
	int rc;

	if (out < 0 || db_open(a->uri, a->verify, 0, NULL, &db, r) < 0)
		goto out;
	t0 = now_s();
	rc = dw_db_reader_open(db, NULL, a->key, strlen(a->key), NULL, &rd);
	while (rc >= 0 && (rc = dw_db_reader_next(rd, &p, &len)) == 1) {
		rc = write_all(out, p, len);
		r->bytes += len;
	}
	r->secs = now_s() - t0;
	if (rc < 0)
		set_msg(r, rc, "dw_db_reader", dw_db_errmsg(db));
out:
	dw_db_reader_close(rd);
	dw_db_close(db);
	if (out >= 0)
		close(out);
}

/*
 * The baseline: the object's chunk rows read with sqlite3_blob_read in 64 KiB pieces (content
 * only: each row's 8-byte checksum is skipped, not read or checked), in one read transaction,
 * as dwscale's reader effectively gets. blob_rows reads rows first, first + step, ... through a
 * connection of its own; the peer is one of them over every row, and for information two
 * threads over the even and the odd rows show what two cores can copy.
 */
struct blob_job {
	const char *path;
	int64_t oid, chunks;
	int hdr, first, step;
	uint64_t bytes;
	char err[160];
};

static void *blob_rows(void *arg)
{
	struct blob_job *bj = arg;
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	unsigned char *buf = dw_malloc(BLOB_PIECE);
	sqlite3 *db = NULL;
	sqlite3_blob *blob = NULL;
	int rc;

	if (out < 0 || !buf) {
		snprintf(bj->err, sizeof(bj->err), "setup: out of memory or no /dev/null");
		goto out;
	}
	rc = sqlite3_open_v2(bj->path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		snprintf(bj->err, sizeof(bj->err), "%s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (int64_t seq = bj->first; seq < bj->chunks; seq += bj->step) {
		int64_t id = (bj->oid << SEQ_BITS) | seq;
		int n;

		rc = blob ? sqlite3_blob_reopen(blob, id)
			  : sqlite3_blob_open(db, "main", "chunks", "data", id, 0, &blob);
		if (rc != SQLITE_OK) {
			snprintf(bj->err, sizeof(bj->err), "%s", sqlite3_errmsg(db));
			goto out;
		}
		n = sqlite3_blob_bytes(blob);
		for (int off = bj->hdr; off < n; off += BLOB_PIECE) {
			int piece = n - off < (int)BLOB_PIECE ? n - off : (int)BLOB_PIECE;

			rc = sqlite3_blob_read(blob, buf, piece, off);
			if (rc != SQLITE_OK) {
				snprintf(bj->err, sizeof(bj->err), "%s", sqlite3_errmsg(db));
				goto out;
			}
			if (write_all(out, buf, (size_t)piece) < 0) {
				snprintf(bj->err, sizeof(bj->err), "write: %s", strerror(errno));
				goto out;
			}
			bj->bytes += (uint64_t)piece;
		}
	}
out:
	sqlite3_blob_close(blob);
	if (db)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	dw_free(buf);
	if (out >= 0)
		close(out);
	return NULL;
}

struct blob_arg {
	const char *path;
	int threads; /* 1 or 2 */
};

static void child_blob(const void *varg, struct result *r)
{
	const struct blob_arg *a = varg;
	struct blob_job jobs[2];
	pthread_t t[2];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	double t0;
	int rc;

	rc = sqlite3_open_v2(a->path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db,
					"SELECT oid, chunks, rowsums FROM objects WHERE key = ?1",
					-1, &st, NULL);
	if (rc != SQLITE_OK) {
		set_msg(r, DW_EBACKEND, "blob reader", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_blob(st, 1, BIG_KEY, (int)strlen(BIG_KEY), SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		set_msg(r, DW_ENOTFOUND, "blob reader", BIG_KEY);
		goto out;
	}
	for (int i = 0; i < a->threads; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].path = a->path;
		jobs[i].oid = sqlite3_column_int64(st, 0);
		jobs[i].chunks = sqlite3_column_int64(st, 1);
		jobs[i].hdr = sqlite3_column_int(st, 2) ? 8 : 0; /* the row's checksum, skipped */
		jobs[i].first = i;
		jobs[i].step = a->threads;
	}
	t0 = now_s();
	for (int i = 1; i < a->threads; i++) {
		if (pthread_create(&t[i], NULL, blob_rows, &jobs[i]) != 0) {
			set_msg(r, -EAGAIN, "blob reader", "thread");
			goto out;
		}
	}
	blob_rows(&jobs[0]);
	for (int i = 1; i < a->threads; i++)
		pthread_join(t[i], NULL);
	r->secs = now_s() - t0;
	for (int i = 0; i < a->threads; i++) {
		r->bytes += jobs[i].bytes;
		if (jobs[i].err[0])
			set_msg(r, DW_EBACKEND, "blob reader", jobs[i].err);
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* ---- concurrent gets ---------------------------------------------------------------------- */

struct conc_arg {
	const char *uri;
	int threads;
	uint64_t size;
};

struct conc_shared {
	dw_db *db;
	int out;
	pthread_barrier_t start;
	_Atomic uint64_t bytes;
	_Atomic int errors;
	_Atomic int first_err;
	atomic_bool stop;
};

static void *conc_worker(void *varg)
{
	struct conc_shared *sh = varg;
	dw_bbuf *b = NULL;
	const void *p;
	size_t len;
	uint64_t got = 0;
	int rc;

	pthread_barrier_wait(&sh->start);
	rc = dw_db_get(sh->db, NULL, CONC_KEY, strlen(CONC_KEY), NULL, &b);
	while (rc >= 0 && (rc = dw_bbuf_next(b, &p, &len)) == 1) {
		rc = write_all(sh->out, p, len);
		got += len;
	}
	dw_bbuf_close(b);
	atomic_fetch_add_explicit(&sh->bytes, got, memory_order_relaxed);
	if (rc < 0) {
		int zero = 0;

		atomic_fetch_add_explicit(&sh->errors, 1, memory_order_relaxed);
		atomic_compare_exchange_strong(&sh->first_err, &zero, rc);
	}
	return NULL;
}

static void child_conc(const void *varg, struct result *r)
{
	const struct conc_arg *a = varg;
	dw_membudget *bud = dw_membudget_default();
	struct conc_shared sh = { .out = -1 };
	pthread_t *tids = NULL;
	size_t held_max = 0, streams_max = 0, inuse_max = 0, samples = 0;
	int started = 0;
	double t0;

	sh.out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	tids = dw_calloc((size_t)a->threads, sizeof(*tids));
	if (sh.out < 0 || !tids) {
		set_msg(r, -ENOMEM, "concurrent gets", "setup");
		goto out;
	}
	if (db_open(a->uri, true, 0, NULL, &sh.db, r) < 0)
		goto out;
	pthread_barrier_init(&sh.start, NULL, (unsigned)a->threads + 1);
	dw_membudget_reset_peak(bud);
	for (; started < a->threads; started++)
		if (pthread_create(&tids[started], NULL, conc_worker, &sh) != 0)
			break;
	if (started < a->threads) {
		/* Cannot release the barrier with fewer threads: report and leave. */
		set_msg(r, -EAGAIN, "concurrent gets", "pthread_create");
		_exit(4);
	}
	t0 = now_s();
	pthread_barrier_wait(&sh.start);
	/* Sample held bytes until every worker is done (they exit once joined below). */
	for (int done = 0; done < a->threads;) {
		struct timespec ts = { 0, 1000000 };
		size_t streams, held, inuse = dw_membudget_in_use(bud);

		dw_bbuf_global_stats(&streams, &held);
		held_max = held > held_max ? held : held_max;
		streams_max = streams > streams_max ? streams : streams_max;
		inuse_max = inuse > inuse_max ? inuse : inuse_max;
		samples++;
		nanosleep(&ts, NULL);
		while (done < a->threads && pthread_tryjoin_np(tids[done], NULL) == 0)
			done++;
	}
	r->secs = now_s() - t0;
	r->bytes = atomic_load(&sh.bytes);
	r->x[0] = (double)dw_membudget_peak(bud);
	r->x[1] = (double)dw_membudget_total(bud);
	r->x[2] = (double)held_max;
	r->x[3] = (double)streams_max;
	r->x[4] = (double)atomic_load(&sh.errors);
	r->x[5] = (double)dw_membudget_timeouts(bud);
	r->x[6] = (double)samples;
	r->x[7] = (double)inuse_max;
	if (atomic_load(&sh.errors))
		set_msg(r, atomic_load(&sh.first_err), "concurrent get", dw_db_errmsg(sh.db));
	else if (r->bytes != a->size * (uint64_t)a->threads)
		set_msg(r, DW_ECORRUPT, "concurrent gets", "byte count differs");
	pthread_barrier_destroy(&sh.start);
out:
	dw_db_close(sh.db);
	dw_free(tids);
	if (sh.out >= 0)
		close(sh.out);
}

/* ---- listing fixture ---------------------------------------------------------------------- */

struct fix_arg {
	const char *uri;
	bool pg;
	uint64_t n;
};

static int sqlite_fixture(const char *path, uint64_t n, struct result *r)
{
	char sql[2048];
	sqlite3 *db = NULL;
	char *err = NULL;
	int rc;

	snprintf(sql, sizeof(sql),
		 "BEGIN IMMEDIATE;"
		 "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %llu)"
		 " INSERT INTO objects(key, oid, size, chunks, ctype, created, modified, sha256,"
		 " meta) SELECT CAST(printf('bench/%%08d', i) AS BLOB),"
		 " (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'pending')"
		 " + 1 + i, 0, 0, 'application/octet-stream', %lld, %lld, x'" EMPTY_SHA256 "',"
		 " NULL FROM s;"
		 "DELETE FROM sqlite_sequence WHERE name = 'pending';"
		 "INSERT INTO sqlite_sequence(name, seq) SELECT 'pending', max(oid) FROM objects;"
		 "DELETE FROM counts;"
		 "INSERT INTO counts(prefix, n) SELECT x'', count(*) FROM objects"
		 " UNION ALL SELECT substr(key, 1, instr(key, x'2f')), count(*) FROM objects"
		 " WHERE instr(key, x'2f') > 0 GROUP BY 1;"
		 "UPDATE totals SET n = n + 1 WHERE name = 'generation';"
		 "COMMIT;",
		 (unsigned long long)(n - 1), (long long)time(NULL) * 1000000000LL,
		 (long long)time(NULL) * 1000000000LL);
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		set_msg(r, DW_EBACKEND, "sqlite fixture", err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	sqlite3_close(db);
	return r->rc;
}

static int pg_exec(PGconn *c, const char *sql, struct result *r, const char *what)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = set_msg(r, DW_EBACKEND, what, PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

static int pg_fixture(const char *uri, uint64_t n, struct result *r)
{
	char sql[2048];
	PGconn *c = PQconnectdb(uri);
	int rc;

	if (PQstatus(c) != CONNECTION_OK) {
		rc = set_msg(r, DW_EBACKEND, "pg fixture", PQerrorMessage(c));
		goto out;
	}
	snprintf(sql, sizeof(sql),
		 "BEGIN;"
		 "INSERT INTO dw_objects(key, oid, size, chunks, ctype, created, modified, sha256,"
		 " meta) SELECT convert_to('bench/' || lpad(i::text, 8, '0'), 'UTF8'),"
		 " nextval('dw_oid_seq'), 0, 0, 'application/octet-stream', %lld, %lld,"
		 " '\\x" EMPTY_SHA256 "'::bytea, NULL FROM generate_series(0, %llu) i;"
		 "DELETE FROM dw_counts;"
		 "INSERT INTO dw_counts(prefix, n) SELECT ''::bytea, count(*) FROM dw_objects"
		 " UNION ALL SELECT substring(key FROM 1 FOR position('\\x2f'::bytea IN key)),"
		 " count(*) FROM dw_objects WHERE position('\\x2f'::bytea IN key) > 0 GROUP BY 1;"
		 "UPDATE dw_totals SET n = n + 1 WHERE name = 'generation';"
		 "COMMIT;",
		 (long long)time(NULL) * 1000000000LL, (long long)time(NULL) * 1000000000LL,
		 (unsigned long long)(n - 1));
	rc = pg_exec(c, sql, r, "pg fixture");
	if (rc == 0)
		rc = pg_exec(c, "VACUUM ANALYZE dw_objects", r, "pg fixture vacuum");
	if (rc == 0) /* one statement per call: VACUUM refuses an implicit transaction block */
		rc = pg_exec(c, "VACUUM ANALYZE dw_counts", r, "pg fixture vacuum");
out:
	PQfinish(c);
	return rc;
}

static void child_fixture(const void *varg, struct result *r)
{
	const struct fix_arg *a = varg;
	dw_db *db = NULL;
	uint64_t all = 0, sub = 0;
	double t0 = now_s();
	int rc;

	/* dw_db_open creates the schema; the handle is closed before the direct inserts. */
	if (db_open(a->uri, true, 0, NULL, &db, r) < 0)
		return;
	dw_db_close(db);
	db = NULL;
	rc = a->pg ? pg_fixture(a->uri, a->n, r) : sqlite_fixture(a->uri + 7, a->n, r);
	if (rc < 0)
		return;
	r->secs = now_s() - t0;
	if (db_open(a->uri, true, 0, NULL, &db, r) < 0)
		return;
	rc = dw_db_count(db, NULL, NULL, 0, &all);
	if (rc == 0)
		rc = dw_db_count(db, NULL, "bench/", 6, &sub);
	if (rc < 0)
		set_msg(r, rc, "dw_db_count", dw_db_errmsg(db));
	else if (all != a->n || sub != a->n)
		set_msg(r, DW_ECORRUPT, "fixture", "counts disagree with the inserted rows");
	r->x[0] = (double)all;
	r->x[1] = (double)sub;
	dw_db_close(db);
}

/* ---- listing and count -------------------------------------------------------------------- */

struct list_arg {
	const char *uri;
	bool pg;
	uint64_t n;
	int runs;
};

/* One dw_db_list call; returns its seconds or a negative code. */
static double time_page(dw_db *db, const char *token, char **next, struct result *r)
{
	dw_db_list_query q = { .limit = PAGE_LIMIT, .page_token = token };
	dw_db_page page;
	double t0 = now_s(), t;
	int rc = dw_db_list(db, NULL, &q, &page);

	t = now_s() - t0;
	if (rc < 0)
		return set_msg(r, rc, "dw_db_list", dw_db_errmsg(db));
	if (page.n != PAGE_LIMIT)
		return set_msg(r, DW_ECORRUPT, "dw_db_list", "short page");
	if (next) {
		*next = page.next_token;
		page.next_token = NULL;
	}
	dw_db_page_clear(&page);
	return t;
}

/* The same page by OFFSET, through a connection of our own; returns seconds or < 0. */
static double time_offset(const struct list_arg *a, sqlite3 *lite, PGconn *pg, uint64_t offset,
			  struct result *r)
{
	char sql[512];
	double t0, t;
	int rows = 0;

	snprintf(sql, sizeof(sql),
		 "SELECT key, oid, size, chunks, ctype, created, modified, sha256, meta FROM %s"
		 " ORDER BY key LIMIT %d OFFSET %llu",
		 a->pg ? "dw_objects" : "objects", PAGE_LIMIT, (unsigned long long)offset);
	t0 = now_s();
	if (a->pg) {
		PGresult *res = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 1);

		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			set_msg(r, DW_EBACKEND, "OFFSET query", PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		rows = PQntuples(res);
		PQclear(res);
	} else {
		sqlite3_stmt *st = NULL;

		if (sqlite3_prepare_v2(lite, sql, -1, &st, NULL) != SQLITE_OK)
			return set_msg(r, DW_EBACKEND, "OFFSET query", sqlite3_errmsg(lite));
		while (sqlite3_step(st) == SQLITE_ROW) {
			(void)sqlite3_column_blob(st, 0);
			rows++;
		}
		sqlite3_finalize(st);
	}
	t = now_s() - t0;
	if (rows != PAGE_LIMIT)
		return set_msg(r, DW_ECORRUPT, "OFFSET query", "short page");
	return t;
}

static void child_list(const void *varg, struct result *r)
{
	const struct list_arg *a = varg;
	uint64_t target = a->n / PAGE_LIMIT < PAGE_TARGET ? a->n / PAGE_LIMIT : PAGE_TARGET;
	double *t1 = NULL, *tn = NULL, *toff = NULL, *tc = NULL, *thit = NULL, t, t0;
	dw_db *db = NULL, *cached = NULL;
	dw_token_keyring *kr = NULL;
	sqlite3 *lite = NULL;
	PGconn *pg = NULL;
	char *token = NULL, *next = NULL;
	uint64_t total = 0;
	int rc;

	t1 = dw_calloc((size_t)a->runs, sizeof(double));
	tn = dw_calloc((size_t)a->runs, sizeof(double));
	toff = dw_calloc((size_t)a->runs, sizeof(double));
	thit = dw_calloc((size_t)a->runs, sizeof(double));
	tc = dw_calloc(COUNT_CALLS, sizeof(double));
	if (!t1 || !tn || !toff || !tc || !thit || target < 2) {
		set_msg(r, target < 2 ? DW_EUSAGE : -ENOMEM, "listing",
			"setup (need >= 200 objects)");
		goto out;
	}
	/* The query cache is off: this measures the query, not a cache hit (that is below). */
	/* Both handles share one keyring, so a token from one is good on the other. */
	rc = dw_token_keyring_open_mem("bench_db listing token key, 32+ bytes", 37, 1, NULL, &kr);
	if (rc < 0) {
		set_msg(r, rc, "keyring", NULL);
		goto out;
	}
	if (db_open(a->uri, true, 0, kr, &db, r) < 0 ||
	    db_open(a->uri, true, 1024, kr, &cached, r) < 0)
		goto out;
	if (a->pg) {
		pg = PQconnectdb(a->uri);
		if (PQstatus(pg) != CONNECTION_OK) {
			set_msg(r, DW_EBACKEND, "connect", PQerrorMessage(pg));
			goto out;
		}
	} else if (sqlite3_open_v2(a->uri + 7, &lite, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		set_msg(r, DW_EBACKEND, "sqlite open", sqlite3_errmsg(lite));
		goto out;
	}
	/* Walk to page `target`, keeping the token that fetches it. */
	t0 = now_s();
	for (uint64_t page = 1; page < target; page++) {
		if (time_page(db, token, &next, r) < 0)
			goto out;
		dw_free(token);
		token = next;
		next = NULL;
	}
	r->x[4] = now_s() - t0;
	r->x[5] = (double)target;
	/* Alternate page 1, page N, OFFSET, page N with the cache, so drift hits all alike. */
	for (int i = 0; i < a->runs; i++) {
		if ((t = time_page(db, NULL, NULL, r)) < 0)
			goto out;
		t1[i] = t;
		if ((t = time_page(db, token, NULL, r)) < 0)
			goto out;
		tn[i] = t;
		/* OFFSET costs ~1000x a page: a few runs give a stable median. */
		if (i < OFFSET_RUNS) {
			if ((t = time_offset(a, lite, pg, (target - 1) * PAGE_LIMIT, r)) < 0)
				goto out;
			toff[i] = t;
		}
		if ((t = time_page(cached, token, NULL, r)) < 0)
			goto out;
		thit[i] = t;
	}
	for (int i = 0; i < COUNT_CALLS; i++) {
		t0 = now_s();
		rc = dw_db_count(db, NULL, NULL, 0, &total);
		tc[i] = now_s() - t0;
		if (rc < 0) {
			set_msg(r, rc, "dw_db_count", dw_db_errmsg(db));
			goto out;
		}
	}
	r->x[0] = median(t1, a->runs);
	r->x[1] = median(tn, a->runs);
	r->x[2] = median(toff, a->runs < OFFSET_RUNS ? a->runs : OFFSET_RUNS);
	r->x[3] = median(tc, COUNT_CALLS);
	r->x[6] = (double)total;
	r->x[7] = median(thit + 1, a->runs - 1 > 0 ? a->runs - 1 : 1);
	qsort(tc, COUNT_CALLS, sizeof(double), cmp_double);
	r->x[8] = tc[COUNT_CALLS * 99 / 100];
out:
	dw_free(token);
	dw_free(next);
	dw_free(t1);
	dw_free(tn);
	dw_free(toff);
	dw_free(thit);
	dw_free(tc);
	sqlite3_close(lite);
	PQfinish(pg);
	dw_db_close(cached);
	dw_db_close(db);
	dw_token_keyring_close(kr);
}

/* ---- the benchmark per strategy ----------------------------------------------------------- */

struct strat {
	const char *name; /* "sqlite", "postgresql" */
	char big[4200], list[4200];
	bool pg;
};

static double mbs(const struct result *r)
{
	return r->secs > 0 ? (double)r->bytes / r->secs / 1e6 : 0;
}

static void print_runs(const char *label, const double *v, int n)
{
	printf("      %-28s runs:", label);
	for (int i = 0; i < n; i++)
		printf(" %.0f", v[i]);
	printf(" MB/s\n");
}

static long lo_oid(const char *uri)
{
	PGconn *c = PQconnectdb(uri);
	PGresult *res = NULL;
	long oid = -1;

	if (PQstatus(c) == CONNECTION_OK)
		res = PQexec(c, "SELECT max(oid)::bigint FROM pg_largeobject_metadata");
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		oid = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
	return oid;
}

/* Item 2 (put) and item 1 (get) on one strategy. */
static int bench_big(const struct strat *s)
{
	struct put_arg pa = { .uri = s->big, .key = BIG_KEY, .limit = o.size };
	struct get_arg gv = { .uri = s->big, .key = BIG_KEY, .verify = true };
	struct get_arg gn = { .uri = s->big, .key = BIG_KEY, .verify = false };
	double base[RUNS_MAX], ver[RUNS_MAX], nov[RUNS_MAX], itr[RUNS_MAX], two[RUNS_MAX], mb, mv,
		mn, secs;
	struct blob_arg b1 = { .threads = 1 }, b2 = { .threads = 2 };
	long hb = 0, hv = 0, hn = 0, peer_rss = 0, rss;
	char oidbuf[32], cmd[4200], path_arg[4200];
	struct result r;
	long oid = -1;
	double gib = (double)o.size / (1u << 30);
	int runs = s->pg ? o.pg_runs : o.runs;

	printf("\n== %s: 2. put of a %.2f GiB object from a file (1 run, forked child)\n", s->name,
	       gib);
	if (in_child(child_put, &pa, &r) < 0)
		return -1;
	printf("  %-34s %8.0f MB/s  %6.1f s   peak RSS %6.1f MiB  goal <= %.0f MiB  %s\n",
	       "dw_db_put", mbs(&r), r.secs, r.hwm_kib / 1024.0, RSS_GOAL_MIB,
	       verdict(r.hwm_kib / 1024.0 <= RSS_GOAL_MIB));
	if (s->pg) {
		/* The peer for PostgreSQL: the same bytes as a large object. */
		char *argv[] = { (char *)o.psql, "-X", "-d", (char *)s->big, "-c", cmd, NULL };

		if (snprintf(cmd, sizeof(cmd), "\\lo_import %s", file_path) >= (int)sizeof(cmd) ||
		    run_cmd(argv, true, &secs, &rss) < 0) {
			fprintf(stderr, "bench_db: psql \\lo_import failed\n");
			return -1;
		}
		oid = lo_oid(s->big);
		if (oid < 0) {
			fprintf(stderr, "bench_db: no large object after \\lo_import\n");
			return -1;
		}
		printf("  %-34s %8.0f MB/s  %6.1f s   (peer, for reference; psql RSS %.1f MiB)\n",
		       "psql \\lo_import", (double)o.size / secs / 1e6, secs, rss / 1024.0);
	}

	printf("\n== %s: 1. get of the %.2f GiB object to /dev/null (median of %d runs; rounds "
	       "alternate peer, verify on, verify off%s)\n",
	       s->name, gib, runs, s->pg ? "" : ", reader, two-thread peer");
	snprintf(oidbuf, sizeof(oidbuf), "%ld", oid);
	snprintf(cmd, sizeof(cmd), "\\lo_export %s /dev/null", oidbuf);
	snprintf(path_arg, sizeof(path_arg), "%s", s->big + 7);
	b1.path = b2.path = path_arg;
	for (int i = 0; i < runs; i++) {
		if (s->pg) {
			char *argv[] = { (char *)o.psql, "-X", "-q", "-d",
					 (char *)s->big, "-c", cmd,  NULL };

			if (run_cmd(argv, true, &secs, &rss) < 0) {
				fprintf(stderr, "bench_db: psql \\lo_export failed\n");
				return -1;
			}
			base[i] = (double)o.size / secs / 1e6;
			peer_rss = rss > peer_rss ? rss : peer_rss;
		} else {
			if (in_child(child_blob, &b1, &r) < 0)
				return -1;
			if (r.bytes != o.size) {
				fprintf(stderr, "bench_db: blob reader read %llu bytes\n",
					(unsigned long long)r.bytes);
				return -1;
			}
			base[i] = mbs(&r);
			hb = r.hwm_kib > hb ? r.hwm_kib : hb;
			if (in_child(child_blob, &b2, &r) < 0)
				return -1;
			two[i] = mbs(&r);
		}
		if (in_child(child_get, &gv, &r) < 0)
			return -1;
		ver[i] = mbs(&r);
		hv = r.hwm_kib > hv ? r.hwm_kib : hv;
		if (in_child(child_get, &gn, &r) < 0)
			return -1;
		nov[i] = mbs(&r);
		hn = r.hwm_kib > hn ? r.hwm_kib : hn;
		itr[i] = 0;
		if (!s->pg) { /* on PostgreSQL a run costs a minute; the answer is the same */
			if (in_child(child_reader, &gn, &r) < 0)
				return -1;
			itr[i] = mbs(&r);
		}
	}
	mb = median(base, runs);
	mv = median(ver, runs);
	mn = median(nov, runs);
	if (s->pg)
		printf("  %-34s %8.0f MB/s  peak RSS %6.1f MiB (psql)\n",
		       "peer: psql \\lo_export (wall clock)", mb, peer_rss / 1024.0);
	else
		printf("  %-34s %8.0f MB/s  peak RSS %6.1f MiB\n", "peer: sqlite3_blob_read 64 KiB",
		       mb, hb / 1024.0);
	print_runs("peer", base, runs);
	if (!s->pg)
		printf("  %-34s %8.0f MB/s  (info: %.2fx the peer; even and odd rows, a "
		       "connection each: what two cores copy)\n",
		       "same loop, two threads", median(two, runs), median(two, runs) / mb);
	printf("  %-34s %8.0f MB/s  ratio %.2fx (goal >= 1.0x) %s  peak RSS %6.1f MiB "
	       "(goal <= %.0f) %s\n",
	       "dw_db_get verify_reads=true", mv, mv / mb, verdict(mv / mb >= 1.0), hv / 1024.0,
	       RSS_GOAL_MIB, verdict(hv / 1024.0 <= RSS_GOAL_MIB));
	print_runs("verify_reads=true", ver, runs);
	printf("  %-34s %8.0f MB/s  ratio %.2fx (goal >= 1.0x) %s  peak RSS %6.1f MiB "
	       "(goal <= %.0f) %s\n",
	       "dw_db_get verify_reads=false", mn, mn / mb, verdict(mn / mb >= 1.0), hn / 1024.0,
	       RSS_GOAL_MIB, verdict(hn / 1024.0 <= RSS_GOAL_MIB));
	print_runs("verify_reads=false", nov, runs);
	if (!s->pg) {
		printf("  %-34s %8.0f MB/s  (info: dw_db_reader_next loop, no stream)\n",
		       "dw_db_reader verify_reads=false", median(itr, runs));
		print_runs("reader verify_reads=false", itr, runs);
	}
	if (in_child(child_small, &gv, &r) < 0)
		return -1;
	printf("  %-34s %8.0f us per get  %6.0f MB/s  (info: %d gets of a %u MiB object in a "
	       "row, verify on)\n",
	       "dw_db_get of a small object", r.secs / SMALL_GETS * 1e6, mbs(&r), SMALL_GETS,
	       SMALL_SIZE >> 20);
	if (!s->pg)
		printf("  1 GB/s class (>= 1000 MB/s): verify=true %s, verify=false %s\n",
		       verdict(mv >= 1000), verdict(mn >= 1000));
	printf("  ratio = dwscale / peer; both ratios are judged (verify_reads=true is the "
	       "default configuration)\n");
	return 0;
}

/* Item 5 on one strategy. */
static int bench_conc(const struct strat *s)
{
	struct put_arg pa = { .uri = s->big, .key = CONC_KEY, .limit = o.conc_size };
	struct conc_arg ca = { .uri = s->big, .threads = o.threads, .size = o.conc_size };
	struct result r;
	double total;

	if (in_child(child_put, &pa, &r) < 0)
		return -1;
	printf("\n== %s: 5. %d concurrent gets of a %.2f GiB object (put in %.1f s), each "
	       "consumed to /dev/null\n",
	       s->name, o.threads, (double)o.conc_size / (1u << 30), r.secs);
	if (in_child(child_conc, &ca, &r) < 0)
		return -1;
	total = r.x[1];
	printf("  aggregate %8.0f MB/s over %.1f s, %d streams at most at once, %.0f errors, "
	       "%.0f budget timeouts\n",
	       mbs(&r), r.secs, (int)r.x[3], r.x[4], r.x[5]);
	printf("  %-44s %8.1f MiB of %.1f MiB  %s\n", "default budget peak (dw_membudget_peak)",
	       r.x[0] / MIB, total / MIB, verdict(r.x[0] <= total));
	printf("  %-44s %8.1f MiB of %.1f MiB  %s  (%.0f samples, 1 ms apart)\n",
	       "bytes held, sampled max (dw_bbuf_global_stats)", r.x[2] / MIB, total / MIB,
	       verdict(r.x[2] <= total), r.x[6]);
	printf("  %-44s %8.1f MiB  (info: budget + per-reader rows and connections)\n", "peak RSS",
	       r.hwm_kib / 1024.0);
	return 0;
}

/* Items 3 and 4 on one strategy. */
static int bench_list(const struct strat *s)
{
	struct fix_arg fa = { .uri = s->list, .pg = s->pg, .n = o.objects };
	struct list_arg la = { .uri = s->list, .pg = s->pg, .n = o.objects, .runs = o.list_runs };
	struct result r;
	double ratio;

	printf("\n== %s: 3./4. listing and count over %llu objects\n", s->name,
	       (unsigned long long)o.objects);
	if (in_child(child_fixture, &fa, &r) < 0)
		return -1;
	printf("  fixture: %llu empty objects \"bench/%%08d\" inserted with SQL in one transaction "
	       "(%s), counts by one aggregate INSERT; %.1f s; dw_db_count \"\" = %.0f, "
	       "\"bench/\" = %.0f\n",
	       (unsigned long long)o.objects,
	       s->pg ? "INSERT ... SELECT generate_series" : "INSERT ... WITH RECURSIVE", r.secs,
	       r.x[0], r.x[1]);
	if (in_child(child_list, &la, &r) < 0)
		return -1;
	ratio = r.x[1] / r.x[0];
	printf("  reached page N = %.0f (limit %d) by walking %.0f tokens in %.1f s; query cache "
	       "off "
	       "unless noted; median of %d calls each, interleaved\n",
	       r.x[5], PAGE_LIMIT, r.x[5] - 1, r.x[4], o.list_runs);
	printf("  %-44s %8.3f ms\n", "page 1 (dw_db_list)", r.x[0] * 1e3);
	printf("  %-44s %8.3f ms  ratio %.2fx (goal <= 2x) %s\n", "page N by saved token",
	       r.x[1] * 1e3, ratio, verdict(ratio <= 2.0));
	printf("  %-44s %8.3f ms  (%.1fx page 1; median of %d)\n",
	       "page N by SQL ... LIMIT 100 OFFSET (N-1)*100", r.x[2] * 1e3, r.x[2] / r.x[0],
	       o.list_runs < OFFSET_RUNS ? o.list_runs : OFFSET_RUNS);
	printf("  %-44s %8.3f ms  (info)\n", "page N by token, query cache on (hit)", r.x[7] * 1e3);
	printf("  %-44s %8.4f ms  p99 %.4f ms  goal <= 0.1 ms  %s  (= %.0f)\n",
	       "dw_db_count total, median of 10001", r.x[3] * 1e3, r.x[8] * 1e3,
	       verdict(r.x[3] <= 1e-4), r.x[6]);
	return 0;
}

static int env_size(const char *name, uint64_t *v)
{
	const char *s = getenv(name);

	if (!s || !*s)
		return 0;
	if (parse_size(s, v) < 0) {
		fprintf(stderr, "bench_db: bad %s=%s\n", name, s);
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv)
{
	uint64_t v;

	o.size = 4ULL << 30;
	o.conc_size = 1ULL << 30;
	o.objects = 1000000;
	o.threads = 64;
	o.runs = 5;
	o.pg_runs = 2;
	o.list_runs = 201;
	o.psql = "psql";
	o.conc_pg = getenv("DW_BENCH_DB_CONC_PG") && !strcmp(getenv("DW_BENCH_DB_CONC_PG"), "1");
	if (env_size("DW_BENCH_DB_SIZE", &o.size) < 0 ||
	    env_size("DW_BENCH_DB_CONC_SIZE", &o.conc_size) < 0 ||
	    env_size("DW_BENCH_DB_OBJECTS", &o.objects) < 0)
		return -1;
	if (env_size("DW_BENCH_DB_THREADS", &v) < 0)
		return -1;
	if (getenv("DW_BENCH_DB_THREADS") && *getenv("DW_BENCH_DB_THREADS"))
		o.threads = (int)v;
	if (env_size("DW_BENCH_DB_RUNS", &v) < 0)
		return -1;
	if (getenv("DW_BENCH_DB_RUNS") && *getenv("DW_BENCH_DB_RUNS"))
		o.runs = (int)v;
	if (env_size("DW_BENCH_DB_PG_RUNS", &v) < 0)
		return -1;
	if (getenv("DW_BENCH_DB_PG_RUNS") && *getenv("DW_BENCH_DB_PG_RUNS"))
		o.pg_runs = (int)v;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--conc-pg")) {
			o.conc_pg = true;
			continue;
		}
		if (!n)
			goto usage;
		i++;
		if (!strcmp(a, "--dir"))
			o.dir = n;
		else if (!strcmp(a, "--pg"))
			o.pg = n;
		else if (!strcmp(a, "--pg-list"))
			o.pg_list = n;
		else if (!strcmp(a, "--psql"))
			o.psql = n;
		else if (!strcmp(a, "--size") && !parse_size(n, &v))
			o.size = v;
		else if (!strcmp(a, "--conc-size") && !parse_size(n, &v))
			o.conc_size = v;
		else if (!strcmp(a, "--objects") && !parse_size(n, &v))
			o.objects = v;
		else if (!strcmp(a, "--threads") && !parse_size(n, &v) && v <= 1024)
			o.threads = (int)v;
		else if (!strcmp(a, "--runs") && !parse_size(n, &v) && v <= RUNS_MAX)
			o.runs = (int)v;
		else if (!strcmp(a, "--pg-runs") && !parse_size(n, &v) && v <= RUNS_MAX)
			o.pg_runs = (int)v;
		else if (!strcmp(a, "--list-runs") && !parse_size(n, &v) && v <= 100001)
			o.list_runs = (int)v;
		else
			goto usage;
	}
	if (!o.dir || o.runs < 1 || o.runs > RUNS_MAX || o.pg_runs < 1 || o.pg_runs > RUNS_MAX ||
	    o.threads < 1 || o.conc_size > o.size || o.objects < 2 * PAGE_LIMIT ||
	    (o.pg && !o.pg_list))
		goto usage;
	return 0;
usage:
	fprintf(stderr,
		"usage: bench_db --dir DIR [--pg URI --pg-list URI] [--size 4G] [--conc-size 1G]"
		" [--threads 64] [--objects 1000000] [--runs 5] [--pg-runs 2] [--list-runs 201]"
		" [--psql PATH]"
		" [--conc-pg]\n  (--conc-size <= --size, --objects >= 200, --runs <= %d)\n",
		RUNS_MAX);
	return -1;
}

/* The 1-minute load average: a figure taken on a busy machine should say so. */
static double loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

int main(int argc, char **argv)
{
	struct strat st[2];
	size_t nst = 0;
	double t0 = now_s();
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(argc, argv) < 0)
		return 2;
	snprintf(file_path, sizeof(file_path), "%s/source.dat", o.dir);
	memset(st, 0, sizeof(st));
	st[nst].name = "sqlite";
	snprintf(st[nst].big, sizeof(st[nst].big), "sqlite:%s/big.db", o.dir);
	snprintf(st[nst].list, sizeof(st[nst].list), "sqlite:%s/list.db", o.dir);
	nst++;
	if (o.pg) {
		st[nst].name = "postgresql";
		st[nst].pg = true;
		snprintf(st[nst].big, sizeof(st[nst].big), "%s", o.pg);
		snprintf(st[nst].list, sizeof(st[nst].list), "%s", o.pg_list);
		nst++;
	}
	printf("bench_db: %s; object %.2f GiB, concurrent %d x %.2f GiB, listing %llu objects, "
	       "%d runs (%d on PostgreSQL); dwscale %s, SQLite %s; load average %.1f on %ld "
	       "CPUs\n",
	       o.pg ? "sqlite and postgresql" : "sqlite only (no --pg)",
	       (double)o.size / (1u << 30), o.threads, (double)o.conc_size / (1u << 30),
	       (unsigned long long)o.objects, o.runs, o.pg_runs, dw_version(), sqlite3_libversion(),
	       loadavg(), sysconf(_SC_NPROCESSORS_ONLN));
	rc = make_file(file_path, o.size, 0644);
	if (rc < 0) {
		fprintf(stderr, "bench_db: creating %s: %s\n", file_path, dw_strerror(rc));
		return 2;
	}
	for (size_t i = 0; i < nst; i++) {
		if (bench_big(&st[i]) < 0)
			return 2;
		if (st[i].pg && !o.conc_pg)
			printf("\n== %s: 5. concurrent gets not run (opt in: --conc-pg or "
			       "DW_BENCH_DB_CONC_PG=1; about 4 minutes)\n",
			       st[i].name);
		else if (bench_conc(&st[i]) < 0)
			return 2;
		if (bench_list(&st[i]) < 0)
			return 2;
	}
	printf("\nbench_db: %d goal(s) missed; %.0f s in all; load average now %.1f\n", misses,
	       now_s() - t0, loadavg());
	return misses ? 1 : 0;
}
