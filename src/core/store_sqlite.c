// SPDX-License-Identifier: MIT
/*
 * dw_store backend: SQLite in WAL mode. The embedded default ("sqlite:PATH" or a plain PATH).
 *
 * Why it is built this way
 *   - WAL with synchronous=FULL: a commit is in the WAL, and fsynced, before put returns, so it
 *     survives kill -9 and power loss; readers never block the writer and the writer never
 *     blocks readers, which is what lets scans run beside puts.
 *   - One connection per dw_store under a mutex, with every statement prepared once at open
 *     (SQLITE_PREPARE_PERSISTENT). Each op is a single autocommit statement, so the mutex is held
 *     for exactly one short transaction; a put's fsync is the longest hold. Several processes (or
 *     several dw_store handles) may open one file: SQLite's file locks and busy_timeout order
 *     them, and a writer still busy after BUSY_TIMEOUT_MS gives DW_ELOCKED.
 *   - Keys are bound and stored as BLOBs, so "ORDER BY key" and the range bounds use memcmp
 *     order whatever the text encoding or collation. WITHOUT ROWID keeps each row in the key's
 *     own b-tree: a range scan is one b-tree walk.
 *   - The file is created by this code with mode 0600 before SQLite opens it (SQLite gives the
 *     -wal and -shm files the same mode), and its directory is fsynced so the new name is
 *     durable too. The parent directory must already exist: a typo in a path should fail, not
 *     grow a directory tree.
 *
 * On-disk schema (PRAGMA user_version = SCHEMA_VERSION)
 *   CREATE TABLE kv (key BLOB PRIMARY KEY NOT NULL, val BLOB NOT NULL) WITHOUT ROWID
 *   A file with a larger user_version was written by a newer dwscale: refused with DW_EVERSION,
 *   and never modified. user_version 0 is a new file: the schema is created in one IMMEDIATE
 *   transaction, re-reading the version inside it so two openers cannot both create it.
 *
 * Error mapping (primary result code -> dw code); SQLite's message goes to dw_store_errmsg()
 *   SQLITE_BUSY, SQLITE_LOCKED     -> DW_ELOCKED (after busy_timeout)
 *   SQLITE_CORRUPT, SQLITE_NOTADB  -> DW_ECORRUPT
 *   SQLITE_FULL                    -> -ENOSPC
 *   SQLITE_NOMEM                   -> -ENOMEM
 *   SQLITE_TOOBIG                  -> DW_ETOOBIG
 *   anything else                  -> DW_EBACKEND
 *
 * Threads and locking
 *   lock (a mutex) guards db and every prepared statement: each op takes it for one statement
 *   (bind, step to the end, copy out, reset) and reads sqlite3_errmsg() before releasing it, so
 *   the message belongs to that op. No statement is left un-reset when lock is released, so the
 *   connection holds no read transaction between calls. owner and the statement pointers are
 *   immutable after open.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/store_int.h"
#include "dwscale/core.h"

#define SCHEMA_VERSION	1
#define BUSY_TIMEOUT_MS 5000 /* long enough to ride out another process's checkpoint */
#define MEMORY_PATH	":memory:"

enum { ST_PUT, ST_GET, ST_DEL, ST_SCAN_GE_LT, ST_SCAN_GT_LT, ST_SCAN_GE, ST_SCAN_GT, ST_COUNT };

/* %d is DW__STORE_BATCH_ROWS: a batch never asks SQLite for more rows than it can hold. */
static const char *const stmt_sql[ST_COUNT] = {
	[ST_PUT] = "INSERT INTO kv(key, val) VALUES(?1, ?2) "
		   "ON CONFLICT(key) DO UPDATE SET val = excluded.val",
	[ST_GET] = "SELECT val FROM kv WHERE key = ?1",
	[ST_DEL] = "DELETE FROM kv WHERE key = ?1",
	[ST_SCAN_GE_LT] = "SELECT key, val FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key "
			  "LIMIT ?3",
	[ST_SCAN_GT_LT] = "SELECT key, val FROM kv WHERE key > ?1 AND key < ?2 ORDER BY key "
			  "LIMIT ?3",
	[ST_SCAN_GE] = "SELECT key, val FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?3",
	[ST_SCAN_GT] = "SELECT key, val FROM kv WHERE key > ?1 ORDER BY key LIMIT ?3",
};

struct sq {
	pthread_mutex_t lock;
	const struct dw_store *owner; /* for error messages; immutable */
	sqlite3 *db;		      /* protected by lock */
	sqlite3_stmt *st[ST_COUNT];   /* protected by lock */
};

static int map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return DW_ELOCKED;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return DW_ECORRUPT;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_TOOBIG:
		return DW_ETOOBIG;
	default:
		return DW_EBACKEND;
	}
}

/* Record SQLite's message for rc and return the dw code. Call with lock held (or before the
 * connection is shared). */
static int sq_fail(struct sq *q, int rc, const char *what)
{
	const char *msg = q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);

	dw__store_set_errmsg(q->owner, "sqlite: %s: %s (%s, %d)", what, msg, sqlite3_errstr(rc),
			     rc);
	return map_rc(rc);
}

static int exec_sql(struct sq *q, const char *sql)
{
	int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(q, rc, sql);
}

/* Run a one-row PRAGMA and read its first column as an int (or copy its text). */
static int pragma_row(struct sq *q, const char *sql, int *ival, char *text, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_fail(q, rc, sql);
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = sq_fail(q, rc == SQLITE_DONE ? SQLITE_ERROR : rc, sql);
		goto out;
	}
	if (ival)
		*ival = sqlite3_column_int(st, 0);
	if (text) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		if (snprintf(text, cap, "%s", t ? (const char *)t : "") >= (int)cap)
			text[cap - 1] = '\0';
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

static int version_refused(struct sq *q, int v)
{
	dw__store_set_errmsg(q->owner,
			     "store schema version %d is newer than this dwscale supports (%d)", v,
			     SCHEMA_VERSION);
	return DW_EVERSION;
}

static int schema_init(struct sq *q)
{
	int v = 0, rc;

	rc = pragma_row(q, "PRAGMA user_version", &v, NULL, 0);
	if (rc < 0)
		return rc;
	if (v > SCHEMA_VERSION)
		return version_refused(q, v);
	if (v == SCHEMA_VERSION)
		return 0;
	rc = exec_sql(q, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	rc = pragma_row(q, "PRAGMA user_version", &v, NULL, 0);
	if (rc < 0)
		goto rollback;
	if (v > SCHEMA_VERSION) {
		rc = version_refused(q, v);
		goto rollback;
	}
	if (v == 0) {
		rc = exec_sql(q, "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY NOT NULL, "
				 "val BLOB NOT NULL) WITHOUT ROWID");
		if (rc < 0)
			goto rollback;
		rc = exec_sql(q, "PRAGMA user_version = 1");
		if (rc < 0)
			goto rollback;
	}
	return exec_sql(q, "COMMIT");
rollback:
	(void)sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/*
 * Put the file in WAL mode, writing the mode into mode[]. The first statement reads the header,
 * so a file that is not a database fails here. Changing the journal mode needs an exclusive lock,
 * and SQLite answers SQLITE_BUSY at once, without its busy handler, when another connection is
 * doing the same to a new file (each holds the shared lock the other waits on). So the change is
 * retried with a growing pause, up to BUSY_TIMEOUT_MS, like any other busy wait.
 */
static int set_wal(struct sq *q, char *mode, size_t cap)
{
	unsigned waited_ms = 0, pause_ms = 1;
	int rc;

	rc = pragma_row(q, "PRAGMA journal_mode", NULL, mode, cap);
	if (rc < 0 || strcmp(mode, "wal") == 0)
		return rc;
	for (;;) {
		rc = pragma_row(q, "PRAGMA journal_mode = WAL", NULL, mode, cap);
		if (rc != DW_ELOCKED || waited_ms >= BUSY_TIMEOUT_MS)
			return rc;
		usleep(pause_ms * 1000u);
		waited_ms += pause_ms;
		if (pause_ms < 64)
			pause_ms *= 2;
	}
}

/* Create path with mode 0600 if it does not exist, making the new name durable. */
static int create_file(struct sq *q, const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat sb;
	int fd = -1, dfd = -1, rc;

	if (!slash) {
		dir[0] = '.';
		dir[1] = '\0';
	} else if (slash == path) {
		dir[0] = '/';
		dir[1] = '\0';
	} else {
		if ((size_t)(slash - path) >= sizeof(dir)) {
			dw__store_set_errmsg(q->owner, "store path is too long");
			return -ENAMETOOLONG;
		}
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	if (stat(dir, &sb) != 0) {
		rc = -errno;
		dw__store_set_errmsg(q->owner, "store directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (!S_ISDIR(sb.st_mode)) {
		dw__store_set_errmsg(q->owner, "store directory %s is not a directory", dir);
		return -ENOTDIR;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0; /* SQLite will open (and judge) the existing file */
		rc = -errno;
		dw__store_set_errmsg(q->owner, "cannot create %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = 0;
	if (fsync(fd) != 0)
		rc = -errno;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		rc = rc ? rc : -errno;
	if (dfd >= 0)
		close(dfd);
	close(fd);
	if (rc < 0)
		dw__store_set_errmsg(q->owner, "cannot sync new file %s: %s", path, strerror(-rc));
	return rc;
}

static void sq_close(void *impl)
{
	struct sq *q = impl;

	if (!q)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(q->st[i]);
	sqlite3_close(q->db); /* all statements finalized: cannot be SQLITE_BUSY */
	pthread_mutex_destroy(&q->lock);
	dw_free(q);
}

/* Step a write statement to the end and reset it. lock held. */
static int step_done(struct sq *q, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		rc = sq_fail(q, rc, what);
		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	return 0;
}

static int sq_put(void *impl, const char *key, size_t klen, const void *val, size_t len)
{
	struct sq *q = impl;
	sqlite3_stmt *st = q->st[ST_PUT];
	int rc;

	pthread_mutex_lock(&q->lock);
	rc = sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob64(st, 2, val, len, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		rc = sq_fail(q, rc, "put: bind");
	else
		rc = step_done(q, st, "put");
	sqlite3_clear_bindings(st); /* drop the caller's pointers */
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static int sq_get(void *impl, const char *key, size_t klen, void **val, size_t *len)
{
	struct sq *q = impl;
	sqlite3_stmt *st = q->st[ST_GET];
	const void *b;
	size_t n;
	char *p;
	int rc;

	pthread_mutex_lock(&q->lock);
	rc = sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
	if (rc != SQLITE_OK) {
		rc = sq_fail(q, rc, "get: bind");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = DW_ENOTFOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		rc = sq_fail(q, rc, "get");
		goto out;
	}
	b = sqlite3_column_blob(st, 0);
	n = (size_t)sqlite3_column_bytes(st, 0);
	if (!b && n > 0) {
		rc = sq_fail(q, sqlite3_errcode(q->db), "get: read value");
		goto out;
	}
	p = dw_malloc(n + 1);
	if (!p) {
		rc = -ENOMEM;
		goto out;
	}
	if (n)
		memcpy(p, b, n);
	p[n] = '\0';
	*val = p;
	*len = n;
	rc = 0;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static int sq_del(void *impl, const char *key, size_t klen)
{
	struct sq *q = impl;
	sqlite3_stmt *st = q->st[ST_DEL];
	int rc;

	pthread_mutex_lock(&q->lock);
	rc = sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		rc = sq_fail(q, rc, "delete: bind");
	else
		rc = step_done(q, st, "delete");
	if (rc == 0 && sqlite3_changes(q->db) == 0)
		rc = DW_ENOTFOUND;
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static int sq_scan_batch(void *impl, const char *from, size_t from_len, bool from_incl,
			 const uint8_t *hi, size_t hi_len, struct dw__store_batch *b)
{
	struct sq *q = impl;
	sqlite3_stmt *st;
	int rc, added;

	if (hi)
		st = q->st[from_incl ? ST_SCAN_GE_LT : ST_SCAN_GT_LT];
	else
		st = q->st[from_incl ? ST_SCAN_GE : ST_SCAN_GT];
	pthread_mutex_lock(&q->lock);
	rc = sqlite3_bind_blob(st, 1, from, (int)from_len, SQLITE_STATIC);
	if (rc == SQLITE_OK && hi)
		rc = sqlite3_bind_blob(st, 2, hi, (int)hi_len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 3, DW__STORE_BATCH_ROWS);
	if (rc != SQLITE_OK) {
		rc = sq_fail(q, rc, "scan: bind");
		goto out;
	}
	for (;;) {
		const void *k, *v;
		size_t kn, vn;

		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			rc = sq_fail(q, rc, "scan");
			goto out;
		}
		k = sqlite3_column_blob(st, 0);
		kn = (size_t)sqlite3_column_bytes(st, 0);
		v = sqlite3_column_blob(st, 1);
		vn = (size_t)sqlite3_column_bytes(st, 1);
		if ((!k && kn > 0) || (!v && vn > 0)) {
			rc = sq_fail(q, sqlite3_errcode(q->db), "scan: read row");
			goto out;
		}
		added = dw__store_batch_add(b, k ? k : "", kn, v ? v : "", vn);
		if (added < 0) {
			rc = added;
			if (rc == DW_ECORRUPT)
				dw__store_set_errmsg(q->owner, "scan: a stored row exceeds the "
							       "key or value size limit");
			goto out;
		}
		if (added == 1)
			break;
	}
	rc = 0;
out:
	/* Reset ends the read transaction: nothing is held between batches. */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static const struct dw__store_ops sqlite_ops = {
	.name = "sqlite",
	.put = sq_put,
	.get = sq_get,
	.del = sq_del,
	.scan_batch = sq_scan_batch,
	.close = sq_close,
};

int dw__store_sqlite_open(struct dw_store *s, const char *path)
{
	struct sq *q = NULL;
	char mode[16];
	bool memory;
	int rc;

	q = dw_calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->owner = s;
	rc = pthread_mutex_init(&q->lock, NULL);
	if (rc != 0) {
		dw_free(q);
		return -rc;
	}
	if (!path || path[0] == '\0') {
		dw__store_set_errmsg(s, "empty store path");
		rc = -EINVAL;
		goto out;
	}
	memory = strcmp(path, MEMORY_PATH) == 0;
	if (!memory) {
		rc = create_file(q, path);
		if (rc < 0)
			goto out;
	}
	rc = sqlite3_open_v2(path, &q->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = sq_fail(q, rc, "open");
		goto out;
	}
	sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
	rc = set_wal(q, mode, sizeof(mode));
	if (rc < 0)
		goto out;
	if (strcmp(mode, memory ? "memory" : "wal") != 0) {
		dw__store_set_errmsg(s, "sqlite: cannot switch %s to WAL (journal_mode is %s)",
				     path, mode);
		rc = DW_EBACKEND;
		goto out;
	}
	rc = exec_sql(q, "PRAGMA synchronous = FULL");
	if (rc < 0)
		goto out;
	rc = exec_sql(q, "PRAGMA trusted_schema = OFF");
	if (rc < 0)
		goto out;
	rc = schema_init(q);
	if (rc < 0)
		goto out;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(q->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&q->st[i], NULL);
		if (rc != SQLITE_OK) {
			rc = sq_fail(q, rc, stmt_sql[i]);
			goto out;
		}
	}
	s->ops = &sqlite_ops;
	s->impl = q;
	q = NULL;
	rc = 0;
out:
	sq_close(q);
	return rc;
}
