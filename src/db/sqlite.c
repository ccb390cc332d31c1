// SPDX-License-Identifier: MIT
/*
 * The SQLite strategy of database storage ("sqlite:PATH"). See db_int.h for the data model and
 * its invariants; this file maps it onto SQLite:
 *
 *   objects(key BLOB PRIMARY KEY, oid, size, chunks, ctype, created, modified, sha256, meta,
 *           rowsums) WITHOUT ROWID: the key is the clustering order, so a keyset page is one
 *           range scan. rowsums (schema version 2) says the rows carry their XXH3-64 (db_int.h);
 *           opening a version 1 database adds the column, 0 for the objects already there.
 *   chunks(id INTEGER PRIMARY KEY, data BLOB) with id = oid << 24 | seq: a version's rows are one
 *           contiguous rowid range (delete is one range), and a chunk is read with
 *           sqlite3_blob_open/read straight into the caller's buffer, no statement, no copy.
 *   counts(prefix BLOB PRIMARY KEY, n) WITHOUT ROWID: see invariant 3 in db_int.h.
 *   totals(name, n): 'bytes' (content bytes of all objects) and 'generation' (bumped by every
 *           committed write; query-cache keys include it, so a cached page never outlives a write).
 *   pending(oid INTEGER PRIMARY KEY AUTOINCREMENT, pid, started): AUTOINCREMENT is what makes an
 *           oid never reused (invariant 1), even after the newest rows are deleted.
 *
 * Why 256 KiB rows: big enough that per-row overhead (a B-tree probe, a blob open) is well under
 * 1 % of the copy time, small enough that a put buffers only a few rows before a transaction.
 * A put collects up to PUT_BATCH_ROWS rows in memory and writes them in one short transaction,
 * so it holds no write lock while it waits on its source.
 *
 * Threads and locking: a strategy owns POOL_SIZE connections, each guarded by its own mutex; an
 * operation takes any free connection for one short transaction and gives it back. Cursors
 * (streaming gets) read through read-only connections of their own; a closed cursor leaves its
 * connection on the idle list (idle_lock, at most IDLE_CURSOR_CONNS) for the next one. WAL mode
 * lets readers run beside the single writer; writers queue on SQLite's busy handler (busy_timeout).
 * No transaction ever spans two calls into this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db_int.h"

#define POOL_SIZE	  4
#define IDLE_CURSOR_CONNS 8  /* idle read-only connections kept for streaming gets */
#define PUT_BATCH_ROWS	  8  /* 2 MiB per transaction at 256 KiB rows */
#define SEQ_BITS	  24 /* up to 16M rows (4 TiB) per object */
#define BUSY_TIMEOUT_MS	  10000
#define COUNT_LEVELS	  8 /* prefixes tracked in counts: "" and the first 7 ending in '/' */
#define SCHEMA_VERSION	  2

struct conn {
	pthread_mutex_t lock;
	sqlite3 *db; /* protected by lock */
};

struct sqlite_strategy {
	struct dw__db_strategy base;
	const dw_clock *clock;
	struct conn pool[POOL_SIZE];
	_Atomic unsigned next;
	/* Read-only connections of closed cursors, kept for the next cursor (see cursor_conn) */
	pthread_mutex_t idle_lock;
	sqlite3 *idle[IDLE_CURSOR_CONNS]; /* protected by idle_lock */
	unsigned nidle;			  /* protected by idle_lock */
};

struct sqlite_put {
	struct sqlite_strategy *s;
	int64_t oid;
	uint64_t seq;		       /* rows written or buffered so far */
	uint8_t *rows[PUT_BATCH_ROWS]; /* buffered rows not yet written */
	size_t row_len[PUT_BATCH_ROWS];
	size_t nrows;
};

static _Thread_local char tls_err[512];

static const char *schema_sql =
	"CREATE TABLE IF NOT EXISTS objects(key BLOB PRIMARY KEY, oid INTEGER NOT NULL,"
	" size INTEGER NOT NULL, chunks INTEGER NOT NULL, ctype TEXT NOT NULL,"
	" created INTEGER NOT NULL, modified INTEGER NOT NULL, sha256 BLOB NOT NULL, meta TEXT,"
	" rowsums INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS counts(prefix BLOB PRIMARY KEY, n INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS totals(name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT "
	"ROWID;"
	"INSERT OR IGNORE INTO totals VALUES('bytes', 0), ('generation', 0);"
	"CREATE TABLE IF NOT EXISTS pending(oid INTEGER PRIMARY KEY AUTOINCREMENT,"
	" pid INTEGER NOT NULL, started INTEGER NOT NULL);";

static int map_rc(sqlite3 *db, int src)
{
	snprintf(tls_err, sizeof(tls_err), "sqlite: %s",
		 db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
	switch (src & 0xff) {
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
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EACCES;
	case SQLITE_IOERR:
		return -EIO;
	default:
		return DW_EBACKEND;
	}
}

static struct conn *conn_get(struct sqlite_strategy *s)
{
	unsigned start = s->next++;

	for (unsigned i = 0; i < POOL_SIZE; i++) {
		struct conn *c = &s->pool[(start + i) % POOL_SIZE];

		if (pthread_mutex_trylock(&c->lock) == 0)
			return c;
	}
	struct conn *c = &s->pool[start % POOL_SIZE];
	pthread_mutex_lock(&c->lock);
	return c;
}

static void conn_put(struct conn *c)
{
	pthread_mutex_unlock(&c->lock);
}

static int exec(sqlite3 *db, const char *sql)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : map_rc(db, rc);
}

static int exec_retry(sqlite3 *db, const char *sql)
{
	int rc;

	for (int waited = 0;; waited += 10) {
		rc = exec(db, sql);
		if (rc != DW_ELOCKED || waited >= BUSY_TIMEOUT_MS)
			return rc;
		usleep(10 * 1000);
	}
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	/* sqlite3_prepare_v3 with PERSISTENT keeps hot statements cheap to re-prepare. */
	int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

	return rc == SQLITE_OK ? 0 : map_rc(db, rc);
}

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	return rc == SQLITE_DONE ? 0 : map_rc(db, rc);
}

static const char *sqlite_errmsg(struct dw__db_strategy *base)
{
	(void)base;
	return tls_err;
}

/* Collect chunks of puts whose process is gone (invariant 2). */
static int collect_orphans(sqlite3 *db)
{
	sqlite3_stmt *st = NULL, *del = NULL, *delp = NULL;
	int rc;

	rc = exec(db, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	rc = prep(db, "SELECT oid, pid FROM pending", &st);
	if (rc < 0)
		goto out;
	rc = prep(db, "DELETE FROM chunks WHERE id >= ?1 AND id < ?2", &del);
	if (rc < 0)
		goto out;
	rc = prep(db, "DELETE FROM pending WHERE oid = ?1", &delp);
	if (rc < 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t oid = sqlite3_column_int64(st, 0);
		pid_t pid = (pid_t)sqlite3_column_int64(st, 1);

		if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) && pid != getpid())
			continue; /* still running elsewhere */
		sqlite3_bind_int64(del, 1, oid << SEQ_BITS);
		sqlite3_bind_int64(del, 2, (oid + 1) << SEQ_BITS);
		rc = step_done(db, del);
		sqlite3_reset(del);
		if (rc < 0)
			goto out;
		sqlite3_bind_int64(delp, 1, oid);
		rc = step_done(db, delp);
		sqlite3_reset(delp);
		if (rc < 0)
			goto out;
	}
	rc = rc == SQLITE_DONE ? 0 : map_rc(db, rc);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(del);
	sqlite3_finalize(delp);
	if (rc == 0)
		rc = exec(db, "COMMIT");
	if (rc < 0)
		exec(db, "ROLLBACK");
	return rc;
}

static int open_conn(const char *path, bool first, sqlite3 **out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc, ver;

	*out = NULL;
	rc = sqlite3_open_v2(path, &db,
			     SQLITE_OPEN_READWRITE | (first ? SQLITE_OPEN_CREATE : 0) |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = map_rc(db, rc);
		goto out;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(db, 1);
	if (first) {
		/*
		 * Page size only takes effect on a new, empty database. Switching to WAL can report
		 * SQLITE_BUSY without consulting the busy handler while another process does the
		 * same, so retry it for as long as the busy timeout.
		 */
		rc = exec_retry(db, "PRAGMA page_size=16384; PRAGMA journal_mode=WAL");
		if (rc < 0)
			goto out;
	}
	rc = exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-8192");
	if (rc < 0)
		goto out;
	if (first) {
		/* Version check and schema in one write transaction: openers do not race. */
		rc = exec(db, "BEGIN IMMEDIATE");
		if (rc < 0)
			goto out;
		rc = prep(db, "PRAGMA user_version", &st);
		if (rc < 0)
			goto out;
		if (sqlite3_step(st) != SQLITE_ROW) {
			rc = map_rc(db, sqlite3_errcode(db));
			goto out;
		}
		ver = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
		st = NULL;
		if (ver > SCHEMA_VERSION) {
			snprintf(tls_err, sizeof(tls_err),
				 "sqlite: %s has schema version %d, newer than this dwscale (%d)",
				 path, ver, SCHEMA_VERSION);
			rc = DW_EVERSION;
			goto out;
		}
		if (ver == 1) /* objects written before row sums; CREATE below keeps the table */
			rc = exec(db, "ALTER TABLE objects ADD COLUMN rowsums INTEGER NOT NULL "
				      "DEFAULT 0");
		if (rc < 0)
			goto out;
		rc = exec(db, schema_sql);
		if (rc < 0)
			goto out;
		rc = exec(db, "PRAGMA user_version=2");
		if (rc < 0)
			goto out;
		rc = exec(db, "COMMIT");
		if (rc < 0)
			goto out;
		rc = collect_orphans(db);
		if (rc < 0)
			goto out;
	}
	*out = db;
	db = NULL;
out:
	sqlite3_finalize(st);
	if (db && !sqlite3_get_autocommit(db))
		exec(db, "ROLLBACK");
	sqlite3_close(db);
	return rc;
}

static void sqlite_close(struct dw__db_strategy *base)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;

	if (!s)
		return;
	for (int i = 0; i < POOL_SIZE; i++) {
		sqlite3_close(s->pool[i].db);
		pthread_mutex_destroy(&s->pool[i].lock);
	}
	for (unsigned i = 0; i < s->nidle; i++)
		sqlite3_close(s->idle[i]);
	pthread_mutex_destroy(&s->idle_lock);
	dw_free(s);
}

static int sqlite_open(const char *uri, const dw_clock *clock, struct dw__db_strategy **out,
		       char *err, size_t errlen)
{
	struct sqlite_strategy *s;
	const char *path = uri;
	int rc = 0, fd;

	*out = NULL;
	if (strncmp(path, "sqlite:", 7) == 0)
		path += 7;
	if (!*path) {
		snprintf(err, errlen, "sqlite: empty path in '%s'", uri);
		return DW_ECONFIG;
	}
	/* Create the file 0600 ourselves: SQLite would use the umask. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "sqlite: cannot open %s: %s", path, dw_strerror(rc));
		return rc;
	}
	close(fd);
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &dw__db_sqlite_ops;
	s->clock = clock;
	for (int i = 0; i < POOL_SIZE; i++)
		pthread_mutex_init(&s->pool[i].lock, NULL);
	pthread_mutex_init(&s->idle_lock, NULL);
	for (int i = 0; i < POOL_SIZE; i++) {
		rc = open_conn(path, i == 0, &s->pool[i].db);
		if (rc < 0) {
			snprintf(err, errlen, "%s (%s)", tls_err, path);
			sqlite_close(&s->base);
			return rc;
		}
	}
	*out = &s->base;
	return 0;
}

/* ---- put ------------------------------------------------------------------------------ */

static int sqlite_put_begin(struct dw__db_strategy *base, struct dw__db_put **out)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct sqlite_put *p;
	struct conn *c;
	sqlite3_stmt *st = NULL;
	int rc;

	*out = NULL;
	p = dw_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s = s;
	c = conn_get(s);
	rc = prep(c->db, "INSERT INTO pending(pid, started) VALUES(?1, ?2)", &st);
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, getpid());
		sqlite3_bind_int64(st, 2, (int64_t)dw_clock_wall(s->clock));
		rc = step_done(c->db, st);
	}
	if (rc == 0)
		p->oid = sqlite3_last_insert_rowid(c->db);
	sqlite3_finalize(st);
	conn_put(c);
	if (rc < 0) {
		dw_free(p);
		return rc;
	}
	*out = (struct dw__db_put *)p;
	return 0;
}

static int flush_rows(struct sqlite_put *p)
{
	struct conn *c;
	sqlite3_stmt *st = NULL;
	int rc;

	if (p->nrows == 0)
		return 0;
	c = conn_get(p->s);
	rc = exec(c->db, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = prep(c->db, "INSERT INTO chunks(id, data) VALUES(?1, ?2)", &st);
	for (size_t i = 0; rc == 0 && i < p->nrows; i++) {
		uint64_t seq = p->seq - p->nrows + i;

		sqlite3_bind_int64(st, 1, (p->oid << SEQ_BITS) | (int64_t)seq);
		sqlite3_bind_blob(st, 2, p->rows[i], (int)p->row_len[i], SQLITE_STATIC);
		rc = step_done(c->db, st);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (rc == 0)
		rc = exec(c->db, "COMMIT");
	if (rc < 0)
		exec(c->db, "ROLLBACK");
out:
	conn_put(c);
	for (size_t i = 0; i < p->nrows; i++) {
		dw_free(p->rows[i]);
		p->rows[i] = NULL;
	}
	p->nrows = 0;
	return rc;
}

static int sqlite_put_chunk(struct dw__db_put *pp, const void *data, size_t len)
{
	struct sqlite_put *p = (struct sqlite_put *)pp;
	uint8_t *row;

	if (len == 0 || len > DW__DB_ROW_STORED_MAX)
		return -EINVAL;
	if (p->seq >= (1ull << SEQ_BITS))
		return DW_ETOOBIG;
	row = dw_malloc(len);
	if (!row)
		return -ENOMEM;
	memcpy(row, data, len);
	p->rows[p->nrows] = row;
	p->row_len[p->nrows] = len;
	p->nrows++;
	p->seq++;
	if (p->nrows == PUT_BATCH_ROWS)
		return flush_rows(p);
	return 0;
}

static void put_free(struct sqlite_put *p)
{
	for (size_t i = 0; i < p->nrows; i++)
		dw_free(p->rows[i]);
	dw_free(p);
}

/* counts += delta for every tracked prefix of key (invariant 3). */
static int update_counts(sqlite3 *db, const uint8_t *key, size_t klen, int delta)
{
	sqlite3_stmt *st = NULL, *del = NULL;
	size_t ends[COUNT_LEVELS];
	size_t n = 0;
	int rc;

	ends[n++] = 0;
	for (size_t i = 0; i < klen && n < COUNT_LEVELS; i++) {
		if (key[i] == '/')
			ends[n++] = i + 1;
	}
	rc = prep(db,
		  "INSERT INTO counts(prefix, n) VALUES(?1, ?2)"
		  " ON CONFLICT(prefix) DO UPDATE SET n = n + ?2",
		  &st);
	if (rc < 0)
		return rc;
	rc = prep(db, "DELETE FROM counts WHERE prefix = ?1 AND n <= 0", &del);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sqlite3_bind_blob(st, 1, key, (int)ends[i], SQLITE_STATIC);
		sqlite3_bind_int(st, 2, delta);
		rc = step_done(db, st);
		sqlite3_reset(st);
		if (rc == 0 && delta < 0 && ends[i] > 0) {
			sqlite3_bind_blob(del, 1, key, (int)ends[i], SQLITE_STATIC);
			rc = step_done(db, del);
			sqlite3_reset(del);
		}
	}
	sqlite3_finalize(st);
	sqlite3_finalize(del);
	return rc;
}

static int bump_totals(sqlite3 *db, int64_t dbytes)
{
	sqlite3_stmt *st = NULL;
	int rc = prep(db,
		      "UPDATE totals SET n = n + CASE name WHEN 'bytes' THEN ?1 ELSE 1 END"
		      " WHERE name IN ('bytes', 'generation')",
		      &st);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, dbytes);
	rc = step_done(db, st);
	sqlite3_finalize(st);
	return rc;
}

static int delete_version(sqlite3 *db, int64_t oid)
{
	sqlite3_stmt *st = NULL;
	int rc = prep(db, "DELETE FROM chunks WHERE id >= ?1 AND id < ?2", &st);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, oid << SEQ_BITS);
	sqlite3_bind_int64(st, 2, (oid + 1) << SEQ_BITS);
	rc = step_done(db, st);
	sqlite3_finalize(st);
	return rc;
}

static int sqlite_put_commit(struct dw__db_put *pp, const struct dw__db_info *info)
{
	struct sqlite_put *p = (struct sqlite_put *)pp;
	struct conn *c;
	sqlite3_stmt *st = NULL;
	int64_t old_oid = -1, old_size = 0, created = (int64_t)info->created_ns;
	int rc;

	rc = flush_rows(p);
	if (rc < 0)
		goto fail;
	c = conn_get(p->s);
	rc = exec(c->db, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto unlock;
	rc = prep(c->db, "SELECT oid, created, size FROM objects WHERE key = ?1", &st);
	if (rc < 0)
		goto rollback;
	sqlite3_bind_blob(st, 1, info->key, (int)info->key_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		old_oid = sqlite3_column_int64(st, 0);
		created = sqlite3_column_int64(st, 1);
		old_size = sqlite3_column_int64(st, 2);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? 0 : map_rc(c->db, rc);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc < 0)
		goto rollback;
	rc = prep(c->db,
		  "INSERT OR REPLACE INTO objects(key, oid, size, chunks, ctype, created, modified,"
		  " sha256, meta, rowsums) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
		  &st);
	if (rc < 0)
		goto rollback;
	sqlite3_bind_blob(st, 1, info->key, (int)info->key_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p->oid);
	sqlite3_bind_int64(st, 3, (int64_t)info->size);
	sqlite3_bind_int64(st, 4, (int64_t)p->seq);
	sqlite3_bind_text(st, 5, info->content_type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, created);
	sqlite3_bind_int64(st, 7, (int64_t)info->modified_ns);
	sqlite3_bind_blob(st, 8, info->sha256, 32, SQLITE_STATIC);
	if (info->meta)
		sqlite3_bind_text(st, 9, info->meta, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 9);
	sqlite3_bind_int(st, 10, info->row_sums ? 1 : 0);
	rc = step_done(c->db, st);
	sqlite3_finalize(st);
	st = NULL;
	if (rc < 0)
		goto rollback;
	if (old_oid >= 0)
		rc = delete_version(c->db, old_oid);
	else
		rc = update_counts(c->db, info->key, info->key_len, +1);
	if (rc == 0)
		rc = bump_totals(c->db, (int64_t)info->size - old_size);
	if (rc < 0)
		goto rollback;
	rc = prep(c->db, "DELETE FROM pending WHERE oid = ?1", &st);
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, p->oid);
		rc = step_done(c->db, st);
	}
	sqlite3_finalize(st);
	if (rc < 0)
		goto rollback;
	rc = exec(c->db, "COMMIT");
	if (rc == 0) {
		conn_put(c);
		put_free(p);
		return 0;
	}
rollback:
	exec(c->db, "ROLLBACK");
unlock:
	conn_put(c);
fail:
	return rc; /* caller aborts */
}

static void sqlite_put_abort(struct dw__db_put *pp)
{
	struct sqlite_put *p = (struct sqlite_put *)pp;
	struct conn *c;
	sqlite3_stmt *st = NULL;

	if (!p)
		return;
	c = conn_get(p->s);
	if (exec(c->db, "BEGIN IMMEDIATE") == 0) {
		int rc = delete_version(c->db, p->oid);

		if (rc == 0 && prep(c->db, "DELETE FROM pending WHERE oid = ?1", &st) == 0) {
			sqlite3_bind_int64(st, 1, p->oid);
			rc = step_done(c->db, st);
			sqlite3_finalize(st);
		}
		/* On failure the pending row stays and the next open collects it. */
		exec(c->db, rc == 0 ? "COMMIT" : "ROLLBACK");
	}
	conn_put(c);
	put_free(p);
}

/* Binary key order, as SQLite compares BLOBs (memcmp, then length). */
static int memcmp_keys(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* ---- read ------------------------------------------------------------------------------ */

static void row_to_info(sqlite3_stmt *st, struct dw__db_info *out)
{
	const void *k = sqlite3_column_blob(st, 0);
	const unsigned char *ct;
	const void *sha;
	const unsigned char *meta;

	memset(out, 0, sizeof(*out));
	out->key_len = (size_t)sqlite3_column_bytes(st, 0);
	if (out->key_len > DW__DB_KEY_MAX)
		out->key_len = DW__DB_KEY_MAX;
	if (k)
		memcpy(out->key, k, out->key_len);
	out->oid = sqlite3_column_int64(st, 1);
	out->size = (uint64_t)sqlite3_column_int64(st, 2);
	out->chunks = (uint64_t)sqlite3_column_int64(st, 3);
	ct = sqlite3_column_text(st, 4);
	snprintf(out->content_type, sizeof(out->content_type), "%s", ct ? (const char *)ct : "");
	out->created_ns = (uint64_t)sqlite3_column_int64(st, 5);
	out->modified_ns = (uint64_t)sqlite3_column_int64(st, 6);
	sha = sqlite3_column_blob(st, 7);
	if (sha && sqlite3_column_bytes(st, 7) == 32)
		memcpy(out->sha256, sha, 32);
	meta = sqlite3_column_text(st, 8);
	out->meta = meta ? dw_strdup((const char *)meta) : NULL;
	out->row_sums = sqlite3_column_int(st, 9) != 0;
}

#define INFO_COLS "key, oid, size, chunks, ctype, created, modified, sha256, meta, rowsums"

static int sqlite_stat(struct dw__db_strategy *base, const void *key, size_t klen,
		       struct dw__db_info *out)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(c->db, "SELECT " INFO_COLS " FROM objects WHERE key = ?1", &st);
	if (rc < 0)
		goto out;
	sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row_to_info(st, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = DW_ENOTFOUND;
	} else {
		rc = map_rc(c->db, rc);
	}
out:
	sqlite3_finalize(st);
	conn_put(c);
	return rc;
}

static int sqlite_read_chunk(struct dw__db_strategy *base, int64_t oid, uint64_t seq, void *buf,
			     size_t cap, size_t *len)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_blob *blob = NULL;
	int rc, n;

	rc = sqlite3_blob_open(c->db, "main", "chunks", "data", (oid << SEQ_BITS) | (int64_t)seq, 0,
			       &blob);
	if (rc != SQLITE_OK) {
		/* The version was replaced or deleted under the reader (invariant 1). */
		rc = (rc & 0xff) == SQLITE_ERROR ? DW_ECONFLICT : map_rc(c->db, rc);
		if (rc == DW_ECONFLICT)
			snprintf(tls_err, sizeof(tls_err),
				 "sqlite: object was overwritten or deleted during the read");
		goto out;
	}
	n = sqlite3_blob_bytes(blob);
	if ((size_t)n > cap) {
		rc = DW_ECORRUPT;
		goto out;
	}
	rc = sqlite3_blob_read(blob, buf, n, 0);
	if (rc != SQLITE_OK) {
		rc = (rc & 0xff) == SQLITE_ABORT ? DW_ECONFLICT : map_rc(c->db, rc);
		goto out;
	}
	*len = (size_t)n;
out:
	sqlite3_blob_close(blob);
	conn_put(c);
	return rc;
}

/*
 * A cursor for a streaming get: its own read-only connection and one blob handle, moved from
 * row to row with sqlite3_blob_reopen (no statement is compiled per row, which is what makes a
 * blob read as fast as a plain one). An open blob handle holds a read snapshot, so the handle
 * is closed after CURSOR_SNAPSHOT_ROWS rows: a get never pins the WAL for longer than that many
 * rows take to stream, however large the object. Reading on after an overwrite or delete finds
 * the version's rows gone: DW_ECONFLICT, never a mix (db_int.h, invariant 1).
 */
#define CURSOR_SNAPSHOT_ROWS 16 /* 4 MiB */
#define CURSOR_CACHE_PAGES   "32"

struct sqlite_cursor {
	struct sqlite_strategy *s;
	sqlite3 *db;
	sqlite3_blob *blob;
	int64_t oid;
	int64_t row; /* rowid the blob is on, -1 none */
	unsigned rows_in_snapshot;
};

static int sqlite_cursor_open(struct dw__db_strategy *base, int64_t oid, struct dw__db_cursor **out)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct sqlite_cursor *cu;
	const char *path;
	int rc;

	*out = NULL;
	cu = dw_calloc(1, sizeof(*cu));
	if (!cu)
		return -ENOMEM;
	cu->s = s;
	cu->oid = oid;
	cu->row = -1;
	/* A connection a closed cursor left, else a new one: opening one (file, WAL index,
	 * schema) cost a 1 MiB get about as much as reading it (bench in README). */
	pthread_mutex_lock(&s->idle_lock);
	if (s->nidle > 0)
		cu->db = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->idle_lock);
	if (cu->db) {
		*out = (struct dw__db_cursor *)cu;
		return 0;
	}
	path = sqlite3_db_filename(s->pool[0].db, "main");
	rc = sqlite3_open_v2(path, &cu->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = map_rc(cu->db, rc);
		sqlite3_close(cu->db);
		dw_free(cu);
		return rc;
	}
	sqlite3_busy_timeout(cu->db, BUSY_TIMEOUT_MS);
	/* A streaming read touches each page once: a small page cache recycles a few buffers
	 * that stay in the CPU caches, where the default 2 MB cycles through cold ones. */
	exec(cu->db, "PRAGMA cache_size=" CURSOR_CACHE_PAGES);
	*out = (struct dw__db_cursor *)cu;
	return 0;
}

static int sqlite_cursor_read(struct dw__db_cursor *c, uint64_t seq, uint64_t off, void *buf,
			      size_t len)
{
	struct sqlite_cursor *cu = (struct sqlite_cursor *)c;
	int64_t row = (cu->oid << SEQ_BITS) | (int64_t)seq;
	int rc;

	if (cu->row != row) {
		if (cu->blob && cu->rows_in_snapshot >= CURSOR_SNAPSHOT_ROWS) {
			sqlite3_blob_close(cu->blob); /* ends the read snapshot */
			cu->blob = NULL;
			cu->rows_in_snapshot = 0;
		}
		rc = cu->blob ? sqlite3_blob_reopen(cu->blob, row)
			      : sqlite3_blob_open(cu->db, "main", "chunks", "data", row, 0,
						  &cu->blob);
		cu->row = -1;
		if (rc != SQLITE_OK) {
			/* A failed reopen leaves the handle aborted: start afresh next time. */
			sqlite3_blob_close(cu->blob);
			cu->blob = NULL;
			if ((rc & 0xff) == SQLITE_ERROR) {
				snprintf(tls_err, sizeof(tls_err),
					 "sqlite: object was overwritten or deleted during the "
					 "read");
				return DW_ECONFLICT;
			}
			return map_rc(cu->db, rc);
		}
		cu->row = row;
		cu->rows_in_snapshot++;
	}
	if (off + len > (uint64_t)sqlite3_blob_bytes(cu->blob)) {
		snprintf(tls_err, sizeof(tls_err),
			 "sqlite: chunk row shorter than its object says");
		return DW_ECORRUPT;
	}
	rc = sqlite3_blob_read(cu->blob, buf, (int)len, (int)off);
	if (rc != SQLITE_OK)
		return (rc & 0xff) == SQLITE_ABORT ? DW_ECONFLICT : map_rc(cu->db, rc);
	return 0;
}

static void sqlite_cursor_close(struct dw__db_cursor *c)
{
	struct sqlite_cursor *cu = (struct sqlite_cursor *)c;

	if (!cu)
		return;
	sqlite3_blob_close(cu->blob); /* ends its read snapshot: the connection holds nothing */
	pthread_mutex_lock(&cu->s->idle_lock);
	if (cu->s->nidle < IDLE_CURSOR_CONNS && sqlite3_get_autocommit(cu->db)) {
		cu->s->idle[cu->s->nidle++] = cu->db;
		cu->db = NULL;
	}
	pthread_mutex_unlock(&cu->s->idle_lock);
	sqlite3_close(cu->db);
	dw_free(cu);
}

static int sqlite_remove(struct dw__db_strategy *base, const void *key, size_t klen)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_stmt *st = NULL;
	int64_t oid, size;
	int rc;

	rc = exec(c->db, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = prep(c->db, "DELETE FROM objects WHERE key = ?1 RETURNING oid, size", &st);
	if (rc < 0)
		goto rollback;
	sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? DW_ENOTFOUND : map_rc(c->db, rc);
		goto rollback;
	}
	oid = sqlite3_column_int64(st, 0);
	size = sqlite3_column_int64(st, 1);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : map_rc(c->db, rc);
	sqlite3_finalize(st);
	st = NULL;
	if (rc == 0)
		rc = delete_version(c->db, oid);
	if (rc == 0)
		rc = update_counts(c->db, key, klen, -1);
	if (rc == 0)
		rc = bump_totals(c->db, -size);
	if (rc == 0)
		rc = exec(c->db, "COMMIT");
	if (rc == 0)
		goto out;
rollback:
	sqlite3_finalize(st);
	st = NULL;
	exec(c->db, "ROLLBACK");
out:
	sqlite3_finalize(st);
	conn_put(c);
	return rc;
}

static int sqlite_list(struct dw__db_strategy *base, const void *prefix, size_t plen,
		       const void *after, size_t alen, uint64_t modified_since_ns, size_t limit,
		       dw__db_list_fn fn, void *arg)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_stmt *st = NULL;
	uint8_t end[DW__DB_KEY_MAX];
	size_t elen = dw__db_prefix_end(prefix, plen, end);
	struct dw__db_info info;
	int rc;

	/*
	 * One index range: the lower bound is the later of the prefix and `after`, the upper bound
	 * the prefix's end. Bounds are bound as plain comparisons (no "?x IS NULL OR" forms), so
	 * the planner seeks straight to the first row: page N costs what page 1 costs.
	 */
	bool use_after = after && !(plen && memcmp_keys(after, alen, prefix, plen) < 0);
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT " INFO_COLS " FROM objects WHERE key %s ?1%s AND modified >= ?3"
		 " ORDER BY key LIMIT ?4",
		 use_after ? ">" : ">=", elen ? " AND key < ?2" : "");
	rc = prep(c->db, sql, &st);
	if (rc < 0)
		goto out;
	if (use_after)
		sqlite3_bind_blob(st, 1, alen ? after : "", (int)alen, SQLITE_STATIC);
	else
		sqlite3_bind_blob(st, 1, plen ? prefix : "", (int)plen, SQLITE_STATIC);
	if (elen)
		sqlite3_bind_blob(st, 2, end, (int)elen, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)modified_since_ns);
	sqlite3_bind_int64(st, 4, (int64_t)limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int stop;

		row_to_info(st, &info);
		stop = fn(arg, &info);
		dw__db_info_clear(&info);
		if (stop) {
			rc = SQLITE_DONE;
			break;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : map_rc(c->db, rc);
out:
	sqlite3_finalize(st);
	conn_put(c);
	return rc;
}

static int sqlite_count(struct dw__db_strategy *base, const void *prefix, size_t plen,
			uint64_t since, uint64_t *out)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_stmt *st = NULL;
	uint8_t end[DW__DB_KEY_MAX];
	size_t levels = 0, elen;
	bool tracked;
	int rc;

	for (size_t i = 0; i < plen; i++)
		levels += ((const uint8_t *)prefix)[i] == '/';
	tracked =
		plen == 0 || (((const uint8_t *)prefix)[plen - 1] == '/' && levels < COUNT_LEVELS);
	if (tracked) {
		rc = prep(c->db, "SELECT n FROM counts WHERE prefix = ?1", &st);
		if (rc < 0)
			goto out;
		sqlite3_bind_blob(st, 1, plen ? prefix : "", (int)plen, SQLITE_STATIC);
	} else {
		/* An arbitrary prefix is not tracked: count its key range in the index. */
		elen = dw__db_prefix_end(prefix, plen, end);
		rc = prep(c->db,
			  elen ? "SELECT count(*) FROM objects WHERE key >= ?1 AND key < ?2"
				 " AND modified >= ?3"
			       : "SELECT count(*) FROM objects WHERE key >= ?1 AND modified >= ?3",
			  &st);
		if (rc < 0)
			goto out;
		sqlite3_bind_blob(st, 1, plen ? prefix : "", (int)plen, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)since);
		if (elen)
			sqlite3_bind_blob(st, 2, end, (int)elen, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = (uint64_t)sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		*out = 0;
		rc = 0;
	} else {
		rc = map_rc(c->db, rc);
	}
out:
	sqlite3_finalize(st);
	conn_put(c);
	return rc;
}

static int sqlite_totals(struct dw__db_strategy *base, uint64_t *objects, uint64_t *bytes,
			 uint64_t *generation)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c = conn_get(s);
	sqlite3_stmt *st = NULL;
	int rc;

	*objects = *bytes = *generation = 0;
	/* One statement, so the three values come from one snapshot. */
	rc = prep(c->db,
		  "SELECT (SELECT n FROM counts WHERE prefix = x''),"
		  " (SELECT n FROM totals WHERE name = 'bytes'),"
		  " (SELECT n FROM totals WHERE name = 'generation')",
		  &st);
	if (rc < 0)
		goto out;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = map_rc(c->db, rc);
		goto out;
	}
	*objects = (uint64_t)sqlite3_column_int64(st, 0);
	*bytes = (uint64_t)sqlite3_column_int64(st, 1);
	*generation = (uint64_t)sqlite3_column_int64(st, 2);
	rc = 0;
out:
	sqlite3_finalize(st);
	conn_put(c);
	return rc;
}

#ifdef DW_FAULT_INJECTION
/* Fault point for tests: while set, a health ping hangs as a stopped server would. */
_Atomic int dw__db_fault_ping_hang;
#endif

static int sqlite_ping(struct dw__db_strategy *base)
{
	struct sqlite_strategy *s = (struct sqlite_strategy *)base;
	struct conn *c;
	int rc;

#ifdef DW_FAULT_INJECTION
	while (atomic_load_explicit(&dw__db_fault_ping_hang, memory_order_acquire))
		usleep(1000);
#endif
	c = conn_get(s);
	rc = exec(c->db, "SELECT count(*) FROM counts WHERE prefix = x''");

	conn_put(c);
	return rc;
}

const struct dw__db_strategy_ops dw__db_sqlite_ops = {
	.kind = "sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
	.errmsg = sqlite_errmsg,
	.put_begin = sqlite_put_begin,
	.put_chunk = sqlite_put_chunk,
	.put_commit = sqlite_put_commit,
	.put_abort = sqlite_put_abort,
	.stat = sqlite_stat,
	.read_chunk = sqlite_read_chunk,
	.cursor_open = sqlite_cursor_open,
	.cursor_read = sqlite_cursor_read,
	.cursor_close = sqlite_cursor_close,
	.remove = sqlite_remove,
	.list = sqlite_list,
	.count = sqlite_count,
	.totals = sqlite_totals,
	.ping = sqlite_ping,
};
