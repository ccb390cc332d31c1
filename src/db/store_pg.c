// SPDX-License-Identifier: MIT
/*
 * dw_store backend on PostgreSQL ("postgresql://..." or "postgres://..."), so that several nodes
 * share one store (job metadata, cached query results). See src/core/store_int.h for the
 * backend contract; store.c does key validation, the size cap and iterator batching.
 *
 *   CREATE TABLE dw_kv (key bytea PRIMARY KEY, val bytea NOT NULL)
 *
 * bytea compares as bytes, then by length: the same order as the SQLite backend's BLOB keys.
 * A put is one autocommit statement with synchronous_commit at the server's default (on), so it
 * is durable when it returns. A scan batch is one SELECT (one statement, one snapshot) that
 * holds nothing once it returns.
 *
 * Threads and locking: POOL connections, each under its own mutex, taken for one statement; a
 * connection found broken is reset before use. The owner pointer is immutable after open.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/store_int.h"
#include "dwscale/core.h"

#define POOL	 2
#define BYTEAOID 17
#define INT8OID	 20

struct pgc {
	pthread_mutex_t lock;
	PGconn *c; /* protected by lock */
};

struct pgs {
	const struct dw_store *owner;
	struct pgc pool[POOL];
	_Atomic unsigned next;
};

static struct pgc *take(struct pgs *p)
{
	unsigned i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed) % POOL;
	struct pgc *c = &p->pool[i];

	pthread_mutex_lock(&c->lock);
	if (PQstatus(c->c) != CONNECTION_OK)
		PQreset(c->c);
	return c;
}

static void give(struct pgc *c)
{
	pthread_mutex_unlock(&c->lock);
}

static int fail(struct pgs *p, PGconn *c, PGresult *r, const char *what)
{
	const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	char m[400];
	size_t n;

	snprintf(m, sizeof(m), "%s", msg && *msg ? msg : "unknown error");
	n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		m[--n] = '\0';
	dw__store_set_errmsg(p->owner, "postgresql: %s: %s", what, m);
	if (state && strcmp(state, "53100") == 0)
		return -ENOSPC;
	if (state && strncmp(state, "40", 2) == 0)
		return DW_ELOCKED;
	return DW_EBACKEND;
}

static PGresult *run(PGconn *c, const char *sql, int n, const Oid *types, const char *const *v,
		     const int *l)
{
	const int fmts[3] = { 1, 1, 1 };

	return PQexecParams(c, sql, n, types, v, l, fmts, 1);
}

static int pg_put(void *impl, const char *key, size_t klen, const void *val, size_t len)
{
	struct pgs *p = impl;
	struct pgc *c = take(p);
	const char *v[2] = { key, val };
	const int l[2] = { (int)klen, (int)len };
	PGresult *r;
	int rc = 0;

	r = run(c->c,
		"INSERT INTO dw_kv(key, val) VALUES ($1, $2)"
		" ON CONFLICT (key) DO UPDATE SET val = EXCLUDED.val",
		2, (const Oid[]){ BYTEAOID, BYTEAOID }, v, l);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = fail(p, c->c, r, "put");
	PQclear(r);
	give(c);
	return rc;
}

static int pg_get(void *impl, const char *key, size_t klen, void **val, size_t *len)
{
	struct pgs *p = impl;
	struct pgc *c = take(p);
	const char *v[1] = { key };
	const int l[1] = { (int)klen };
	PGresult *r;
	int rc = 0;

	r = run(c->c, "SELECT val FROM dw_kv WHERE key = $1", 1, (const Oid[]){ BYTEAOID }, v, l);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = fail(p, c->c, r, "get");
	} else if (PQntuples(r) == 0) {
		rc = DW_ENOTFOUND;
	} else {
		size_t n = (size_t)PQgetlength(r, 0, 0);
		char *b = dw_malloc(n + 1);

		if (!b) {
			rc = -ENOMEM;
		} else {
			memcpy(b, PQgetvalue(r, 0, 0), n);
			b[n] = '\0';
			*val = b;
			*len = n;
		}
	}
	PQclear(r);
	give(c);
	return rc;
}

static int pg_del(void *impl, const char *key, size_t klen)
{
	struct pgs *p = impl;
	struct pgc *c = take(p);
	const char *v[1] = { key };
	const int l[1] = { (int)klen };
	PGresult *r;
	int rc = 0;

	r = run(c->c, "DELETE FROM dw_kv WHERE key = $1", 1, (const Oid[]){ BYTEAOID }, v, l);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = fail(p, c->c, r, "delete");
	else if (strcmp(PQcmdTuples(r), "0") == 0)
		rc = DW_ENOTFOUND;
	PQclear(r);
	give(c);
	return rc;
}

static int pg_scan_batch(void *impl, const char *from, size_t from_len, bool from_incl,
			 const uint8_t *hi, size_t hi_len, struct dw__store_batch *b)
{
	struct pgs *p = impl;
	struct pgc *c = take(p);
	char sql[160], lim[8];
	const char *v[3] = { from, lim, (const char *)hi };
	const int l[3] = { (int)from_len, 8, (int)hi_len };
	uint64_t n = DW__STORE_BATCH_ROWS;
	PGresult *r;
	int rc = 0;

	for (int i = 0; i < 8; i++)
		lim[i] = (char)(n >> (56 - 8 * i));
	snprintf(sql, sizeof(sql),
		 "SELECT key, val FROM dw_kv WHERE key %s $1%s ORDER BY key LIMIT $2",
		 from_incl ? ">=" : ">", hi ? " AND key < $3" : "");
	r = run(c->c, sql, hi ? 3 : 2, (const Oid[]){ BYTEAOID, INT8OID, BYTEAOID }, v, l);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = fail(p, c->c, r, "scan");
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int added =
			dw__store_batch_add(b, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0),
					    PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));

		if (added < 0) {
			rc = added;
			goto out;
		}
		if (added == 1)
			break;
	}
out:
	PQclear(r);
	give(c);
	return rc;
}

static void pg_close(void *impl)
{
	struct pgs *p = impl;

	if (!p)
		return;
	for (int i = 0; i < POOL; i++) {
		PQfinish(p->pool[i].c);
		pthread_mutex_destroy(&p->pool[i].lock);
	}
	dw_free(p);
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static const struct dw__store_ops pg_ops = {
	.name = "postgresql",
	.put = pg_put,
	.get = pg_get,
	.del = pg_del,
	.scan_batch = pg_scan_batch,
	.close = pg_close,
};

int dw__store_pg_open(struct dw_store *s, const char *uri)
{
	struct pgs *p = dw_calloc(1, sizeof(*p));
	PGresult *r;
	int rc = 0;

	if (!p)
		return -ENOMEM;
	p->owner = s;
	for (int i = 0; i < POOL; i++)
		pthread_mutex_init(&p->pool[i].lock, NULL);
	for (int i = 0; i < POOL; i++) {
		p->pool[i].c = PQconnectdb(uri);
		if (!p->pool[i].c) {
			rc = -ENOMEM;
			goto fail;
		}
		if (PQstatus(p->pool[i].c) != CONNECTION_OK) {
			rc = fail(p, p->pool[i].c, NULL, "connect");
			goto fail;
		}
		PQsetNoticeProcessor(p->pool[i].c, quiet, NULL);
	}
	r = PQexec(p->pool[0].c,
		   "CREATE TABLE IF NOT EXISTS dw_kv (key bytea PRIMARY KEY, val bytea NOT NULL)");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		/* Two nodes creating it at once: one may lose the race; the table exists then. */
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (!state || (strcmp(state, "23505") != 0 && strcmp(state, "42P07") != 0))
			rc = fail(p, p->pool[0].c, r, "create table");
	}
	PQclear(r);
	if (rc < 0)
		goto fail;
	s->ops = &pg_ops;
	s->impl = p;
	return 0;
fail:
	pg_close(p);
	return rc;
}
