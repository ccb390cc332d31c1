// SPDX-License-Identifier: MIT
/*
 * The PostgreSQL strategy of database storage ("postgresql://..." or "postgres://...", libpq
 * conninfo URIs). Same data model as SQLite (db_int.h), in tables prefixed dw_:
 *
 *   dw_objects(key bytea PRIMARY KEY, oid, size, chunks, ctype, created, modified, sha256, meta,
 *             rowsums)   rowsums: the rows carry their XXH3-64 (db_int.h); schema version 2
 *             added it, false for the objects written before
 *   dw_chunks(oid, seq, data bytea, PRIMARY KEY (oid, seq))   data STORAGE EXTERNAL: chunk
 *             bytes are incompressible more often than not, so TOAST compression only costs CPU
 *   dw_counts(prefix bytea PRIMARY KEY, n), dw_totals(name PRIMARY KEY, n)
 *   dw_pending(oid PRIMARY KEY, owner, started), oids from the sequence dw_oid_seq
 *
 * bytea compares as bytes, then by length: the same binary key order as SQLite's BLOBs, so
 * listings and tokens behave identically on both strategies.
 *
 * Several nodes may share one database, so a crashed put cannot be recognised by a local pid.
 * Each open strategy takes a session advisory lock on a random 63-bit owner id, held by its
 * first pool connection for as long as it is open, and marks its pending puts with that id. At
 * open, any owner whose lock can be taken is gone (its session ended with the process), and its
 * pending rows and chunks are collected. A put whose pending row vanished (its owner's session
 * was cut and another node collected it) fails at commit with DW_ECONFLICT rather than publish
 * an object with missing rows.
 *
 * Concurrent puts of the same new key: the object row is claimed with SELECT ... FOR UPDATE, or
 * INSERT ... ON CONFLICT DO NOTHING and a retry, so counts (invariant 3) stay exact under READ
 * COMMITTED.
 *
 * Health pings run on a connection of their own with a client-side deadline (asynchronous query
 * + poll): a server stopped with SIGSTOP still has its socket acknowledged by the kernel, so no
 * TCP timeout fires; on the deadline the ping connection is closed and reopened next time.
 *
 * Threads and locking: POOL_SIZE connections, each under its own mutex, taken for one short
 * transaction at a time; the ping connection under ping_lock. Lock order: a pool mutex never
 * nests with another.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include "db_int.h"

#define POOL_SIZE	4
#define PUT_BATCH_ROWS	8
#define COUNT_LEVELS	8
#define PING_TIMEOUT_MS 60000 /* the ping's own cap; checks stop waiting at their deadline */
#define SCHEMA_VERSION	2

struct pg_conn {
	pthread_mutex_t lock;
	PGconn *c;	  /* protected by lock */
	bool count_ready; /* protected by lock: "dw_count" is prepared in this session */
};

struct pg_strategy {
	struct dw__db_strategy base;
	char *conninfo;
	const dw_clock *clock;
	int64_t owner;
	struct pg_conn pool[POOL_SIZE];
	_Atomic unsigned next;
	pthread_mutex_t ping_lock;
	PGconn *ping; /* protected by ping_lock */
};

struct pg_put {
	struct pg_strategy *s;
	int64_t oid;
	uint64_t seq;
	uint8_t *rows[PUT_BATCH_ROWS];
	size_t row_len[PUT_BATCH_ROWS];
	size_t nrows;
};

static _Thread_local char tls_err[512];

static const char *schema_sql =
	"CREATE TABLE IF NOT EXISTS dw_objects(key bytea PRIMARY KEY, oid bigint NOT NULL,"
	" size bigint NOT NULL, chunks bigint NOT NULL, ctype text NOT NULL,"
	" created bigint NOT NULL, modified bigint NOT NULL, sha256 bytea NOT NULL, meta text);"
	"CREATE TABLE IF NOT EXISTS dw_chunks(oid bigint NOT NULL, seq bigint NOT NULL,"
	" data bytea NOT NULL, PRIMARY KEY (oid, seq));"
	"ALTER TABLE dw_chunks ALTER COLUMN data SET STORAGE EXTERNAL;"
	"CREATE TABLE IF NOT EXISTS dw_counts(prefix bytea PRIMARY KEY, n bigint NOT NULL);"
	"CREATE TABLE IF NOT EXISTS dw_totals(name text PRIMARY KEY, n bigint NOT NULL);"
	"INSERT INTO dw_totals VALUES ('bytes', 0), ('generation', 0) ON CONFLICT DO NOTHING;"
	"CREATE SEQUENCE IF NOT EXISTS dw_oid_seq;"
	"CREATE TABLE IF NOT EXISTS dw_pending(oid bigint PRIMARY KEY, owner bigint NOT NULL,"
	" started bigint NOT NULL);"
	"CREATE TABLE IF NOT EXISTS dw_meta(name text PRIMARY KEY, value bigint NOT NULL);"
	"ALTER TABLE dw_objects ADD COLUMN IF NOT EXISTS rowsums boolean NOT NULL DEFAULT false;"
	"INSERT INTO dw_meta VALUES ('schema_version', 2)"
	" ON CONFLICT (name) DO UPDATE SET value = 2 WHERE dw_meta.value < 2;";

/* Map a failed result (or connection) to a code, keeping the server's message. */
static int pg_fail(PGconn *c, PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
	size_t n;

	snprintf(tls_err, sizeof(tls_err), "postgresql: %s", msg && *msg ? msg : "unknown error");
	n = strlen(tls_err);
	while (n && (tls_err[n - 1] == '\n' || tls_err[n - 1] == ' '))
		tls_err[--n] = '\0';
	if (!c || PQstatus(c) != CONNECTION_OK)
		return DW_EBACKEND;
	if (state) {
		if (strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0)
			return DW_ELOCKED; /* serialization failure, deadlock, lock not available */
		if (strcmp(state, "53100") == 0)
			return -ENOSPC;
		if (strcmp(state, "53200") == 0)
			return -ENOMEM;
		if (strncmp(state, "XX", 2) == 0)
			return DW_ECORRUPT;
	}
	return DW_EBACKEND;
}

static int check(PGconn *c, PGresult *r, ExecStatusType want)
{
	int rc = 0;

	if (!r || PQresultStatus(r) != want)
		rc = pg_fail(c, r);
	return rc;
}

static int exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : check(c, r, PGRES_COMMAND_OK);

	PQclear(r);
	return rc;
}

#define BOOLOID	 16
#define BYTEAOID 17
#define INT8OID	 20
#define TEXTOID	 25

/*
 * Run sql with n typed parameters, all in binary format (int8 as 8 bytes big-endian, bytea and
 * text as raw bytes), and ask for binary results.
 */
static PGresult *q(PGconn *c, const char *sql, int n, const Oid *types, const char *const *vals,
		   const int *lens)
{
	int fmts[16];

	assert(n <= 16);
	for (int i = 0; i < n; i++)
		fmts[i] = 1;
	return PQexecParams(c, sql, n, types, vals, lens, fmts, 1);
}

static void be64(int64_t v, char out[8])
{
	for (int i = 0; i < 8; i++)
		out[i] = (char)((uint64_t)v >> (56 - 8 * i));
}

static int64_t get64(PGresult *r, int row, int col)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
	uint64_t v = 0;

	if (PQgetlength(r, row, col) != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return (int64_t)v;
}

static struct pg_conn *conn_get(struct pg_strategy *s)
{
	unsigned start = s->next++;
	struct pg_conn *pc;

	for (unsigned i = 0; i < POOL_SIZE; i++) {
		pc = &s->pool[(start + i) % POOL_SIZE];
		if (pthread_mutex_trylock(&pc->lock) == 0)
			goto got;
	}
	pc = &s->pool[start % POOL_SIZE];
	pthread_mutex_lock(&pc->lock);
got:
	/* A connection lost to a server restart is re-established here, once per use. */
	if (PQstatus(pc->c) != CONNECTION_OK) {
		PQreset(pc->c);
		pc->count_ready = false; /* a new session has no prepared statements */
	}
	return pc;
}

static void conn_put(struct pg_conn *pc)
{
	/* Never hand back a connection inside a failed transaction. */
	if (PQtransactionStatus(pc->c) != PQTRANS_IDLE)
		exec(pc->c, "ROLLBACK");
	pthread_mutex_unlock(&pc->lock);
}

static const char *pg_errmsg(struct dw__db_strategy *base)
{
	(void)base;
	return tls_err;
}

static PGconn *connect_to(const char *conninfo, int *rc)
{
	PGconn *c = PQconnectdb(conninfo);

	if (!c) {
		*rc = -ENOMEM;
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		*rc = pg_fail(c, NULL);
		PQfinish(c);
		return NULL;
	}
	/* Quiet NOTICEs ("relation already exists, skipping") off stderr. */
	PQsetNoticeProcessor(c, NULL, NULL);
	*rc = 0;
	return c;
}

static void noop_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Collect pending puts of owners whose session is gone (see the header). */
static int collect_orphans(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT DISTINCT owner FROM dw_pending");
	int rc = check(c, r, PGRES_TUPLES_OK);

	for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
		const char *owner = PQgetvalue(r, i, 0); /* text result */
		const char *v1[1] = { owner };
		PGresult *t;
		bool gone;

		t = PQexecParams(c, "SELECT pg_try_advisory_lock($1::bigint)", 1, NULL, v1, NULL,
				 NULL, 0);
		rc = check(c, t, PGRES_TUPLES_OK);
		gone = rc == 0 && PQgetvalue(t, 0, 0)[0] == 't';
		PQclear(t);
		if (!gone)
			continue;
		t = PQexecParams(
			c,
			"WITH p AS (DELETE FROM dw_pending WHERE owner = $1::bigint"
			" RETURNING oid) DELETE FROM dw_chunks WHERE oid IN (SELECT oid FROM p)",
			1, NULL, v1, NULL, NULL, 0);
		rc = check(c, t, PGRES_COMMAND_OK);
		PQclear(t);
		t = PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, v1, NULL,
				 NULL, 0);
		PQclear(t);
	}
	PQclear(r);
	return rc;
}

static void pg_close(struct dw__db_strategy *base)
{
	struct pg_strategy *s = (struct pg_strategy *)base;

	if (!s)
		return;
	for (int i = 0; i < POOL_SIZE; i++) {
		PQfinish(s->pool[i].c);
		pthread_mutex_destroy(&s->pool[i].lock);
	}
	PQfinish(s->ping);
	pthread_mutex_destroy(&s->ping_lock);
	dw_free(s->conninfo);
	dw_free(s);
}

static int pg_open(const char *uri, const dw_clock *clock, struct dw__db_strategy **out, char *err,
		   size_t errlen)
{
	struct pg_strategy *s;
	PGresult *r = NULL;
	char owner[24];
	const char *v1[1] = { owner };
	int rc = 0;

	*out = NULL;
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &dw__db_postgres_ops;
	s->clock = clock;
	for (int i = 0; i < POOL_SIZE; i++)
		pthread_mutex_init(&s->pool[i].lock, NULL);
	pthread_mutex_init(&s->ping_lock, NULL);
	s->conninfo = dw_strdup(uri);
	if (!s->conninfo) {
		rc = -ENOMEM;
		goto fail;
	}
	if (RAND_bytes((unsigned char *)&s->owner, sizeof(s->owner)) != 1) {
		rc = DW_EBACKEND;
		goto fail;
	}
	s->owner &= INT64_MAX;
	snprintf(owner, sizeof(owner), "%lld", (long long)s->owner);
	for (int i = 0; i < POOL_SIZE; i++) {
		s->pool[i].c = connect_to(uri, &rc);
		if (!s->pool[i].c)
			goto fail;
		PQsetNoticeProcessor(s->pool[i].c, noop_notice, NULL);
	}
	/* Schema, once, under a transaction-level advisory lock so nodes do not race. */
	rc = exec(s->pool[0].c, "BEGIN");
	if (rc == 0)
		rc = exec(s->pool[0].c, "SELECT pg_advisory_xact_lock(7304989318744523621)");
	if (rc == 0) {
		r = PQexec(s->pool[0].c, "SELECT value FROM dw_meta WHERE name = 'schema_version'");
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
		    atoi(PQgetvalue(r, 0, 0)) > SCHEMA_VERSION) {
			snprintf(tls_err, sizeof(tls_err),
				 "postgresql: schema version %s is newer than this dwscale (%d)",
				 PQgetvalue(r, 0, 0), SCHEMA_VERSION);
			rc = DW_EVERSION;
		} else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			/* no dw_meta yet: a new database; the failed query aborted the tx */
			exec(s->pool[0].c, "ROLLBACK");
			rc = exec(s->pool[0].c, "BEGIN");
			if (rc == 0)
				rc = exec(s->pool[0].c,
					  "SELECT pg_advisory_xact_lock(7304989318744523621)");
		}
		PQclear(r);
		r = NULL;
	}
	if (rc == 0)
		rc = exec(s->pool[0].c, schema_sql);
	if (rc == 0)
		rc = exec(s->pool[0].c, "COMMIT");
	else
		exec(s->pool[0].c, "ROLLBACK");
	if (rc < 0)
		goto fail;
	r = PQexecParams(s->pool[0].c, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, v1, NULL,
			 NULL, 0);
	rc = check(s->pool[0].c, r, PGRES_TUPLES_OK);
	PQclear(r);
	if (rc < 0)
		goto fail;
	rc = collect_orphans(s->pool[1].c);
	if (rc < 0)
		goto fail;
	*out = &s->base;
	return 0;
fail:
	snprintf(err, errlen, "%s", tls_err[0] ? tls_err : dw_strerror(rc));
	pg_close(&s->base);
	return rc;
}

/* ---- put ------------------------------------------------------------------------------ */

static int pg_put_begin(struct dw__db_strategy *base, struct dw__db_put **out)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_put *p;
	struct pg_conn *pc;
	PGresult *r;
	char owner[8], started[8];
	const char *vals[2] = { owner, started };
	const int lens[2] = { 8, 8 };
	int rc;

	*out = NULL;
	p = dw_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s = s;
	be64(s->owner, owner);
	be64((int64_t)dw_clock_wall(s->clock), started);
	pc = conn_get(s);
	r = q(pc->c,
	      "INSERT INTO dw_pending(oid, owner, started)"
	      " VALUES (nextval('dw_oid_seq'), $1, $2) RETURNING oid",
	      2, (const Oid[]){ INT8OID, INT8OID }, vals, lens);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0)
		p->oid = get64(r, 0, 0);
	PQclear(r);
	conn_put(pc);
	if (rc < 0) {
		dw_free(p);
		return rc;
	}
	*out = (struct dw__db_put *)p;
	return 0;
}

static int flush_rows(struct pg_put *p)
{
	struct pg_conn *pc;
	char oid[8], seq[8];
	int rc;

	if (p->nrows == 0)
		return 0;
	be64(p->oid, oid);
	pc = conn_get(p->s);
	rc = exec(pc->c, "BEGIN");
	for (size_t i = 0; rc == 0 && i < p->nrows; i++) {
		const char *vals[3] = { oid, seq, (const char *)p->rows[i] };
		const int lens[3] = { 8, 8, (int)p->row_len[i] };
		PGresult *r;

		be64((int64_t)(p->seq - p->nrows + i), seq);
		r = q(pc->c, "INSERT INTO dw_chunks(oid, seq, data) VALUES ($1, $2, $3)", 3,
		      (const Oid[]){ INT8OID, INT8OID, BYTEAOID }, vals, lens);
		rc = check(pc->c, r, PGRES_COMMAND_OK);
		PQclear(r);
	}
	if (rc == 0)
		rc = exec(pc->c, "COMMIT");
	conn_put(pc);
	for (size_t i = 0; i < p->nrows; i++) {
		dw_free(p->rows[i]);
		p->rows[i] = NULL;
	}
	p->nrows = 0;
	return rc;
}

static int pg_put_chunk(struct dw__db_put *pp, const void *data, size_t len)
{
	struct pg_put *p = (struct pg_put *)pp;
	uint8_t *row;

	if (len == 0 || len > DW__DB_ROW_STORED_MAX)
		return -EINVAL;
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

static void put_free(struct pg_put *p)
{
	for (size_t i = 0; i < p->nrows; i++)
		dw_free(p->rows[i]);
	dw_free(p);
}

static int update_counts(PGconn *c, const uint8_t *key, size_t klen, int delta)
{
	size_t ends[COUNT_LEVELS];
	size_t n = 0;
	char d[8];
	int rc = 0;

	ends[n++] = 0;
	for (size_t i = 0; i < klen && n < COUNT_LEVELS; i++) {
		if (key[i] == '/')
			ends[n++] = i + 1;
	}
	be64(delta, d);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *vals[2] = { (const char *)key, d };
		const int lens[2] = { (int)ends[i], 8 };
		PGresult *r;

		r = q(c,
		      "INSERT INTO dw_counts(prefix, n) VALUES ($1, $2) ON CONFLICT (prefix)"
		      " DO UPDATE SET n = dw_counts.n + EXCLUDED.n",
		      2, (const Oid[]){ BYTEAOID, INT8OID }, vals, lens);
		rc = check(c, r, PGRES_COMMAND_OK);
		PQclear(r);
		if (rc == 0 && delta < 0 && ends[i] > 0) {
			r = q(c, "DELETE FROM dw_counts WHERE prefix = $1 AND n <= 0", 1,
			      (const Oid[]){ BYTEAOID }, vals, lens);
			rc = check(c, r, PGRES_COMMAND_OK);
			PQclear(r);
		}
	}
	return rc;
}

static int bump_totals(PGconn *c, int64_t dbytes)
{
	char d[8];
	const char *vals[1] = { d };
	const int lens[1] = { 8 };
	PGresult *r;
	int rc;

	be64(dbytes, d);
	r = q(c,
	      "UPDATE dw_totals SET n = n + CASE name WHEN 'bytes' THEN $1 ELSE 1 END"
	      " WHERE name IN ('bytes', 'generation')",
	      1, (const Oid[]){ INT8OID }, vals, lens);
	rc = check(c, r, PGRES_COMMAND_OK);
	PQclear(r);
	return rc;
}

static int delete_version(PGconn *c, int64_t oid)
{
	char o[8];
	const char *vals[1] = { o };
	const int lens[1] = { 8 };
	PGresult *r;
	int rc;

	be64(oid, o);
	r = q(c, "DELETE FROM dw_chunks WHERE oid = $1", 1, (const Oid[]){ INT8OID }, vals, lens);
	rc = check(c, r, PGRES_COMMAND_OK);
	PQclear(r);
	return rc;
}

static int pg_put_commit(struct dw__db_put *pp, const struct dw__db_info *info)
{
	struct pg_put *p = (struct pg_put *)pp;
	struct pg_conn *pc;
	PGresult *r;
	char oid[8], size[8], chunks[8], created[8], modified[8];
	const char rowsums[1] = { info->row_sums ? 1 : 0 };
	int64_t old_oid = -1, old_size = 0;
	int rc;

	rc = flush_rows(p);
	if (rc < 0)
		return rc;
	be64(p->oid, oid);
	be64((int64_t)info->size, size);
	be64((int64_t)p->seq, chunks);
	be64((int64_t)info->created_ns, created);
	be64((int64_t)info->modified_ns, modified);
	pc = conn_get(p->s);
	rc = exec(pc->c, "BEGIN");
	if (rc < 0)
		goto out;
	/* Our pending row must still be there (see the header). */
	{
		const char *v[1] = { oid };
		const int l[1] = { 8 };

		r = q(pc->c, "DELETE FROM dw_pending WHERE oid = $1", 1, (const Oid[]){ INT8OID },
		      v, l);
		rc = check(pc->c, r, PGRES_COMMAND_OK);
		if (rc == 0 && strcmp(PQcmdTuples(r), "1") != 0) {
			snprintf(tls_err, sizeof(tls_err),
				 "postgresql: this put was collected as abandoned; retry it");
			rc = DW_ECONFLICT;
		}
		PQclear(r);
		if (rc < 0)
			goto out;
	}
	for (int attempt = 0; attempt < 8; attempt++) {
		const char *v[1] = { (const char *)info->key };
		const int l[1] = { (int)info->key_len };

		r = q(pc->c, "SELECT oid, size, created FROM dw_objects WHERE key = $1 FOR UPDATE",
		      1, (const Oid[]){ BYTEAOID }, v, l);
		rc = check(pc->c, r, PGRES_TUPLES_OK);
		if (rc == 0 && PQntuples(r) == 1) {
			old_oid = get64(r, 0, 0);
			old_size = get64(r, 0, 1);
			memcpy(created, PQgetvalue(r, 0, 2), 8); /* an overwrite keeps it */
			PQclear(r);
			{
				const char *uv[9] = { v[0],
						      oid,
						      size,
						      chunks,
						      info->content_type,
						      modified,
						      (const char *)info->sha256,
						      info->meta,
						      rowsums };
				const int ul[9] = { l[0],
						    8,
						    8,
						    8,
						    (int)strlen(info->content_type),
						    8,
						    32,
						    info->meta ? (int)strlen(info->meta) : 0,
						    1 };

				r = q(pc->c,
				      "UPDATE dw_objects SET oid = $2, size = $3, chunks = $4,"
				      " ctype = $5, modified = $6, sha256 = $7, meta = $8,"
				      " rowsums = $9 WHERE key = $1",
				      9,
				      (const Oid[]){ BYTEAOID, INT8OID, INT8OID, INT8OID, TEXTOID,
						     INT8OID, BYTEAOID, TEXTOID, BOOLOID },
				      uv, ul);
			}
			rc = check(pc->c, r, PGRES_COMMAND_OK);
			PQclear(r);
			break;
		}
		PQclear(r);
		if (rc < 0)
			goto out;
		{
			const char *iv[10] = { v[0],
					       oid,
					       size,
					       chunks,
					       info->content_type,
					       created,
					       modified,
					       (const char *)info->sha256,
					       info->meta,
					       rowsums };
			const int il[10] = { l[0],
					     8,
					     8,
					     8,
					     (int)strlen(info->content_type),
					     8,
					     8,
					     32,
					     info->meta ? (int)strlen(info->meta) : 0,
					     1 };

			r = q(pc->c,
			      "INSERT INTO dw_objects(key, oid, size, chunks, ctype, created,"
			      " modified, sha256, meta, rowsums)"
			      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
			      " ON CONFLICT (key) DO NOTHING",
			      10,
			      (const Oid[]){ BYTEAOID, INT8OID, INT8OID, INT8OID, TEXTOID, INT8OID,
					     INT8OID, BYTEAOID, TEXTOID, BOOLOID },
			      iv, il);
		}
		rc = check(pc->c, r, PGRES_COMMAND_OK);
		if (rc == 0 && strcmp(PQcmdTuples(r), "1") != 0)
			rc = 1; /* someone inserted the key meanwhile: lock it and update */
		PQclear(r);
		if (rc <= 0)
			break;
	}
	if (rc > 0) {
		snprintf(tls_err, sizeof(tls_err), "postgresql: key kept changing under the put");
		rc = DW_ELOCKED;
	}
	if (rc < 0)
		goto out;
	if (old_oid >= 0)
		rc = delete_version(pc->c, old_oid);
	else
		rc = update_counts(pc->c, info->key, info->key_len, +1);
	if (rc == 0)
		rc = bump_totals(pc->c, (int64_t)info->size - old_size);
	if (rc == 0)
		rc = exec(pc->c, "COMMIT");
out:
	conn_put(pc); /* rolls back if the transaction is still open */
	if (rc == 0)
		put_free(p);
	return rc;
}

static void pg_put_abort(struct dw__db_put *pp)
{
	struct pg_put *p = (struct pg_put *)pp;
	struct pg_conn *pc;
	char oid[8];
	const char *v[1] = { oid };
	const int l[1] = { 8 };
	PGresult *r;
	int rc;

	if (!p)
		return;
	be64(p->oid, oid);
	pc = conn_get(p->s);
	rc = exec(pc->c, "BEGIN");
	if (rc == 0)
		rc = delete_version(pc->c, p->oid);
	if (rc == 0) {
		r = q(pc->c, "DELETE FROM dw_pending WHERE oid = $1", 1, (const Oid[]){ INT8OID },
		      v, l);
		rc = check(pc->c, r, PGRES_COMMAND_OK);
		PQclear(r);
	}
	/* On failure the pending row stays; the next open after this owner is gone collects it. */
	if (rc == 0)
		exec(pc->c, "COMMIT");
	conn_put(pc);
	put_free(p);
}

/* ---- read ------------------------------------------------------------------------------ */

#define INFO_COLS "key, oid, size, chunks, ctype, created, modified, sha256, meta, rowsums"

static void row_to_info(PGresult *r, int row, struct dw__db_info *out)
{
	memset(out, 0, sizeof(*out));
	out->key_len = (size_t)PQgetlength(r, row, 0);
	if (out->key_len > DW__DB_KEY_MAX)
		out->key_len = DW__DB_KEY_MAX;
	memcpy(out->key, PQgetvalue(r, row, 0), out->key_len);
	out->oid = get64(r, row, 1);
	out->size = (uint64_t)get64(r, row, 2);
	out->chunks = (uint64_t)get64(r, row, 3);
	snprintf(out->content_type, sizeof(out->content_type), "%.*s", PQgetlength(r, row, 4),
		 PQgetvalue(r, row, 4));
	out->created_ns = (uint64_t)get64(r, row, 5);
	out->modified_ns = (uint64_t)get64(r, row, 6);
	if (PQgetlength(r, row, 7) == 32)
		memcpy(out->sha256, PQgetvalue(r, row, 7), 32);
	if (!PQgetisnull(r, row, 8))
		out->meta = dw_strndup(PQgetvalue(r, row, 8), (size_t)PQgetlength(r, row, 8));
	out->row_sums = PQgetlength(r, row, 9) == 1 && PQgetvalue(r, row, 9)[0] != 0;
}

static int pg_stat(struct dw__db_strategy *base, const void *key, size_t klen,
		   struct dw__db_info *out)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	const char *v[1] = { key };
	const int l[1] = { (int)klen };
	PGresult *r;
	int rc;

	r = q(pc->c, "SELECT " INFO_COLS " FROM dw_objects WHERE key = $1", 1,
	      (const Oid[]){ BYTEAOID }, v, l);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0) {
		if (PQntuples(r) == 1)
			row_to_info(r, 0, out);
		else
			rc = DW_ENOTFOUND;
	}
	PQclear(r);
	conn_put(pc);
	return rc;
}

static int pg_read_chunk(struct dw__db_strategy *base, int64_t oid, uint64_t seq, void *buf,
			 size_t cap, size_t *len)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	char o[8], sq[8];
	const char *v[2] = { o, sq };
	const int l[2] = { 8, 8 };
	PGresult *r;
	int rc;

	be64(oid, o);
	be64((int64_t)seq, sq);
	r = q(pc->c, "SELECT data FROM dw_chunks WHERE oid = $1 AND seq = $2", 2,
	      (const Oid[]){ INT8OID, INT8OID }, v, l);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0) {
		if (PQntuples(r) != 1) {
			snprintf(tls_err, sizeof(tls_err),
				 "postgresql: object was overwritten or deleted during the read");
			rc = DW_ECONFLICT;
		} else if ((size_t)PQgetlength(r, 0, 0) > cap) {
			rc = DW_ECORRUPT;
		} else {
			*len = (size_t)PQgetlength(r, 0, 0);
			memcpy(buf, PQgetvalue(r, 0, 0), *len);
		}
	}
	PQclear(r);
	conn_put(pc);
	return rc;
}

static int pg_remove(struct dw__db_strategy *base, const void *key, size_t klen)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	const char *v[1] = { key };
	const int l[1] = { (int)klen };
	PGresult *r;
	int64_t oid, size;
	int rc;

	rc = exec(pc->c, "BEGIN");
	if (rc < 0)
		goto out;
	r = q(pc->c, "DELETE FROM dw_objects WHERE key = $1 RETURNING oid, size", 1,
	      (const Oid[]){ BYTEAOID }, v, l);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0 && PQntuples(r) != 1)
		rc = DW_ENOTFOUND;
	if (rc == 0) {
		oid = get64(r, 0, 0);
		size = get64(r, 0, 1);
	}
	PQclear(r);
	if (rc == 0)
		rc = delete_version(pc->c, oid);
	if (rc == 0)
		rc = update_counts(pc->c, key, klen, -1);
	if (rc == 0)
		rc = bump_totals(pc->c, -size);
	if (rc == 0)
		rc = exec(pc->c, "COMMIT");
out:
	conn_put(pc);
	return rc;
}

static int memcmp_keys(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int pg_list(struct dw__db_strategy *base, const void *prefix, size_t plen, const void *after,
		   size_t alen, uint64_t modified_since_ns, size_t limit, dw__db_list_fn fn,
		   void *arg)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	uint8_t end[DW__DB_KEY_MAX];
	size_t elen = dw__db_prefix_end(prefix, plen, end);
	bool use_after = after && !(plen && memcmp_keys(after, alen, prefix, plen) < 0);
	char since[8], lim[8], sql[256];
	const char *v[4];
	int l[4];
	struct dw__db_info info;
	PGresult *r;
	int rc;

	be64((int64_t)modified_since_ns, since);
	be64((int64_t)limit, lim);
	v[0] = use_after ? after : prefix;
	l[0] = (int)(use_after ? alen : plen);
	v[1] = since;
	l[1] = 8;
	v[2] = lim;
	l[2] = 8;
	v[3] = (const char *)end;
	l[3] = (int)elen;
	/* Plain bounds, so the planner seeks the primary key index (see sqlite.c). */
	snprintf(sql, sizeof(sql),
		 "SELECT " INFO_COLS " FROM dw_objects WHERE key %s $1%s AND modified >= $2"
		 " ORDER BY key LIMIT $3",
		 use_after ? ">" : ">=", elen ? " AND key < $4" : "");
	r = q(pc->c, sql, elen ? 4 : 3, (const Oid[]){ BYTEAOID, INT8OID, INT8OID, BYTEAOID }, v,
	      l);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
		int stop;

		row_to_info(r, i, &info);
		stop = fn(arg, &info);
		dw__db_info_clear(&info);
		if (stop)
			break;
	}
	PQclear(r);
	conn_put(pc);
	return rc;
}

/*
 * The tracked count as a prepared statement: it is the one query that must answer in about a
 * round trip, and parsing and planning it each time cost as much again. A statement lives as
 * long as its server session, so it is prepared again after conn_get() reconnects.
 */
static PGresult *count_tracked(struct pg_conn *pc, const char *const *v, const int *l)
{
	static const Oid types[1] = { BYTEAOID };
	static const int fmts[1] = { 1 };

	if (!pc->count_ready) {
		PGresult *r = PQprepare(pc->c, "dw_count",
					"SELECT n FROM dw_counts WHERE prefix = $1", 1, types);

		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			return r; /* the caller reports it */
		PQclear(r);
		pc->count_ready = true;
	}
	return PQexecPrepared(pc->c, "dw_count", 1, v, l, fmts, 1);
}

static int pg_count(struct dw__db_strategy *base, const void *prefix, size_t plen, uint64_t since,
		    uint64_t *out)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	uint8_t end[DW__DB_KEY_MAX];
	size_t levels = 0, elen;
	char sn[8];
	const char *v[3] = { prefix, sn, (const char *)end };
	int l[3] = { (int)plen, 8, 0 };
	PGresult *r;
	bool tracked;
	int rc;

	for (size_t i = 0; i < plen; i++)
		levels += ((const uint8_t *)prefix)[i] == '/';
	tracked = since == 0 && (plen == 0 || (((const uint8_t *)prefix)[plen - 1] == '/' &&
					       levels < COUNT_LEVELS));
	if (tracked) {
		r = count_tracked(pc, v, l);
	} else {
		elen = dw__db_prefix_end(prefix, plen, end);
		l[2] = (int)elen;
		be64((int64_t)since, sn);
		r = q(pc->c,
		      elen ? "SELECT count(*) FROM dw_objects WHERE key >= $1 AND modified >= $2"
			     " AND key < $3"
			   : "SELECT count(*) FROM dw_objects WHERE key >= $1 AND modified >= $2",
		      elen ? 3 : 2, (const Oid[]){ BYTEAOID, INT8OID, BYTEAOID }, v, l);
	}
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0)
		*out = PQntuples(r) ? (uint64_t)get64(r, 0, 0) : 0;
	PQclear(r);
	conn_put(pc);
	return rc;
}

static int pg_totals(struct dw__db_strategy *base, uint64_t *objects, uint64_t *bytes,
		     uint64_t *generation)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	struct pg_conn *pc = conn_get(s);
	PGresult *r;
	int rc;

	*objects = *bytes = *generation = 0;
	r = PQexecParams(pc->c,
			 "SELECT coalesce((SELECT n FROM dw_counts WHERE prefix = ''::bytea), 0),"
			 " (SELECT n FROM dw_totals WHERE name = 'bytes'),"
			 " (SELECT n FROM dw_totals WHERE name = 'generation')",
			 0, NULL, NULL, NULL, NULL, 1);
	rc = check(pc->c, r, PGRES_TUPLES_OK);
	if (rc == 0 && PQntuples(r) == 1) {
		*objects = (uint64_t)get64(r, 0, 0);
		*bytes = (uint64_t)get64(r, 0, 1);
		*generation = (uint64_t)get64(r, 0, 2);
	}
	PQclear(r);
	conn_put(pc);
	return rc;
}

/* Wait for the socket until the deadline; 0 ready, DW_ETIMEDOUT, or -errno. */
static int wait_sock(PGconn *c, bool for_write, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = PQsocket(c), .events = for_write ? POLLOUT : POLLIN };
	uint64_t now = dw_clock_now(NULL);
	int n;

	if (pfd.fd < 0)
		return DW_EBACKEND;
	if (now >= deadline_ns)
		return DW_ETIMEDOUT;
	n = poll(&pfd, 1, (int)((deadline_ns - now) / DW_NS_PER_MS) + 1);
	if (n < 0)
		return -errno;
	return n == 0 ? DW_ETIMEDOUT : 0;
}

static int pg_ping(struct dw__db_strategy *base)
{
	struct pg_strategy *s = (struct pg_strategy *)base;
	uint64_t deadline = dw_clock_now(NULL) + PING_TIMEOUT_MS * DW_NS_PER_MS;
	PGresult *r;
	int rc = 0;

	pthread_mutex_lock(&s->ping_lock);
	if (!s->ping || PQstatus(s->ping) != CONNECTION_OK) {
		PostgresPollingStatusType st = PGRES_POLLING_WRITING;

		PQfinish(s->ping);
		s->ping = PQconnectStart(s->conninfo);
		if (!s->ping) {
			rc = -ENOMEM;
			goto out;
		}
		while (st != PGRES_POLLING_OK) {
			if (st == PGRES_POLLING_FAILED) {
				rc = pg_fail(s->ping, NULL);
				goto drop;
			}
			rc = wait_sock(s->ping, st == PGRES_POLLING_WRITING, deadline);
			if (rc < 0)
				goto drop;
			st = PQconnectPoll(s->ping);
		}
		PQsetNoticeProcessor(s->ping, noop_notice, NULL);
	}
	if (!PQsendQuery(s->ping, "SELECT 1")) {
		rc = pg_fail(s->ping, NULL);
		goto drop;
	}
	for (;;) {
		if (!PQconsumeInput(s->ping)) {
			rc = pg_fail(s->ping, NULL);
			goto drop;
		}
		if (!PQisBusy(s->ping))
			break;
		rc = wait_sock(s->ping, false, deadline);
		if (rc < 0)
			goto drop;
	}
	while ((r = PQgetResult(s->ping)) != NULL) {
		if (rc == 0 && PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = pg_fail(s->ping, r);
		PQclear(r);
	}
	goto out;
drop:
	if (rc == DW_ETIMEDOUT)
		snprintf(tls_err, sizeof(tls_err), "postgresql: no answer from the server");
	PQfinish(s->ping);
	s->ping = NULL;
out:
	pthread_mutex_unlock(&s->ping_lock);
	return rc;
}

const struct dw__db_strategy_ops dw__db_postgres_ops = {
	.kind = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.errmsg = pg_errmsg,
	.put_begin = pg_put_begin,
	.put_chunk = pg_put_chunk,
	.put_commit = pg_put_commit,
	.put_abort = pg_put_abort,
	.stat = pg_stat,
	.read_chunk = pg_read_chunk,
	.remove = pg_remove,
	.list = pg_list,
	.count = pg_count,
	.totals = pg_totals,
	.ping = pg_ping,
};
