// SPDX-License-Identifier: MIT
/*
 * The backup endpoints of `dwscale serve`, on the manager started for [backup] repo:
 *
 *   POST /v1/backups        {"sources": ["/dir", ...], "type": "full"|"incremental"|"auto"}
 *                           admin token needed; queues one job per source: 202
 *                           {"jobs": [{"id", "source", "type"}], "refused": [...]}
 *   GET  /v1/backups        the repository's backups (the fields of `dwscale backup list
 *                           --json`) and its chains: {"repo", "backups": [...], "chains": [...]}
 *   GET  /v1/backups/jobs   the job records in the node's store: state, counters, checkpoint
 *
 * POST checks, in order, so that nothing is revealed without the token and nothing is queued
 * from a request that is wrong anywhere: token (401), [backup] configured (404), body (400, see
 * dw__parse_backup_json), every source an existing directory (400). Only then are the jobs
 * submitted. A job the manager refuses (DW_ESHED: its queue is full) is listed under "refused"
 * with the jobs that were queued before it; if none was queued the answer is 503.
 *
 * The jobs run on the manager's threads; the request returns at once. Progress is read from
 * GET /v1/backups/jobs (checkpointed counters) and the result from GET /v1/backups.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dwscale/core.h"
#include "server/server.h"

#define NOT_CONFIGURED_HINT "set [backup] repo in the configuration file"

/* Counters and times are uint64: written as exact integers (a double would round past 2^53). */
static void add_u64(cJSON *o, const char *name, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	cJSON_AddRawToObject(o, name, buf);
}

static void iso_time(uint64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / DW_NS_PER_SEC);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- POST /v1/backups ---------------------------------------------------------------------- */

static void route_submit(struct dw__server *s, const char *auth, const char *body, size_t body_len,
			 struct dw__reply *r)
{
	struct dw__backup_request req;
	char *arena = NULL, err[600];
	cJSON *doc = NULL, *jobs, *refused;
	size_t queued = 0;
	int rc, last_rc = 0;

	if (!dw__authorized(s, auth, r)) {
		dw_log(DW_LOG_WARN, "serve", "auth_failed", "path=/v1/backups");
		return;
	}
	if (!s->backup) {
		dw__reply_not_configured(r, "backup", NOT_CONFIGURED_HINT);
		return;
	}
	rc = dw__parse_backup_json(body, body ? body_len : 0, &req, &arena, err, sizeof(err));
	if (rc == -ENOMEM) {
		dw__reply_error(r, 500, "internal", "out of memory");
		goto out;
	}
	if (rc < 0) {
		dw__reply_error(r, 400, "bad_request", "%s", err);
		goto out;
	}
	for (size_t i = 0; i < req.n; i++) {
		struct stat st;
		char q[300];

		if (stat(req.sources[i], &st) < 0) {
			dw__reply_error(r, 400, "bad_source", "source %s: %s",
					dw_log_quote(req.sources[i], q, sizeof(q)),
					strerror(errno));
			goto out;
		}
		if (!S_ISDIR(st.st_mode)) {
			dw__reply_error(r, 400, "bad_source", "source %s is not a directory",
					dw_log_quote(req.sources[i], q, sizeof(q)));
			goto out;
		}
	}
	doc = cJSON_CreateObject();
	jobs = cJSON_AddArrayToObject(doc, "jobs");
	refused = cJSON_AddArrayToObject(doc, "refused");
	if (!doc || !jobs || !refused) {
		dw__reply_error(r, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < req.n; i++) {
		dw_backup_create_opts o;
		char id[DW_BACKUP_ID_MAX], q[300];
		cJSON *j = cJSON_CreateObject();

		dw_backup_create_opts_default(&o);
		o.source = req.sources[i];
		o.type = req.type;
		rc = dw_backup_mgr_submit(s->backup, &o, id);
		if (j) {
			cJSON_AddStringToObject(j, "source", req.sources[i]);
			cJSON_AddStringToObject(j, "type", dw_backup_type_name(req.type));
		}
		if (rc < 0) {
			last_rc = rc;
			if (j) {
				cJSON_AddStringToObject(j, "error", dw_err_name(rc));
				cJSON_AddStringToObject(j, "message", dw_strerror(rc));
				cJSON_AddItemToArray(refused, j);
			}
			dw_log(DW_LOG_WARN, "serve", "backup_refused", "source=%s err=%s",
			       dw_log_quote(req.sources[i], q, sizeof(q)), dw_err_name(rc));
			continue;
		}
		queued++;
		if (j) {
			cJSON_AddStringToObject(j, "id", id);
			cJSON_AddItemToArray(jobs, j);
		}
		dw_log(DW_LOG_INFO, "serve", "backup_queued", "id=%s source=%s type=%s", id,
		       dw_log_quote(req.sources[i], q, sizeof(q)), dw_backup_type_name(req.type));
	}
	if (queued == 0) {
		cJSON_Delete(doc);
		doc = NULL;
		if (last_rc == DW_ESHED)
			dw__reply_error(r, 503, "unavailable",
					"the backup queue is full; try again later");
		else if (last_rc == DW_ENOTFOUND)
			dw__reply_error(r, 400, "bad_source", "source not found");
		else
			dw__reply_error(r, 500, "internal", "cannot queue the backup: %s",
					dw_strerror(last_rc));
		goto out;
	}
	dw__reply_json(r, 202, doc);
	doc = NULL;
out:
	cJSON_Delete(doc);
	dw_free(arena);
}

/* ---- GET /v1/backups ----------------------------------------------------------------------- */

#define CHAINS_MAX (1u << 20) /* far above any repository; bounds the work of one listing */

struct chain_acc {
	cJSON *obj; /* in the "chains" array */
	char id[DW_BACKUP_ID_MAX];
	uint64_t backups, bytes;
};

struct list_ctx {
	cJSON *backups, *chains;
	struct chain_acc *acc;
	size_t n, cap;
	int err; /* -ENOMEM or DW_ETOOBIG (too many chains) */
};

static struct chain_acc *chain_for(struct list_ctx *l, const dw_backup_info *b)
{
	struct chain_acc *c;

	for (size_t i = l->n; i-- > 0;) { /* the newest chains are the likeliest */
		if (strcmp(l->acc[i].id, b->chain) == 0)
			return &l->acc[i];
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		struct chain_acc *na;

		if (ncap > CHAINS_MAX) {
			l->err = DW_ETOOBIG;
			return NULL;
		}
		na = dw_realloc(l->acc, ncap * sizeof(*na));
		if (!na) {
			l->err = -ENOMEM;
			return NULL;
		}
		l->acc = na;
		l->cap = ncap;
	}
	c = &l->acc[l->n];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", b->chain);
	c->obj = cJSON_CreateObject();
	if (!c->obj || !cJSON_AddItemToArray(l->chains, c->obj)) {
		cJSON_Delete(c->obj);
		l->err = -ENOMEM;
		return NULL;
	}
	cJSON_AddStringToObject(c->obj, "chain", b->chain);
	cJSON_AddStringToObject(c->obj, "source", b->source);
	l->n++;
	return c;
}

/* Called oldest first, so the last backup seen of a chain is its newest. */
static void list_one(void *arg, const dw_backup_info *b)
{
	struct list_ctx *l = arg;
	struct chain_acc *c;
	cJSON *o;
	char when[32];

	if (l->err)
		return;
	o = cJSON_CreateObject();
	if (!o || !cJSON_AddItemToArray(l->backups, o)) {
		cJSON_Delete(o);
		l->err = -ENOMEM;
		return;
	}
	iso_time(b->created_ns, when, sizeof(when));
	cJSON_AddStringToObject(o, "id", b->id);
	cJSON_AddStringToObject(o, "type", dw_backup_type_name(b->type));
	if (b->parent[0])
		cJSON_AddStringToObject(o, "parent", b->parent);
	else
		cJSON_AddNullToObject(o, "parent");
	cJSON_AddStringToObject(o, "chain", b->chain);
	cJSON_AddNumberToObject(o, "depth", b->depth);
	cJSON_AddStringToObject(o, "created", when);
	add_u64(o, "created_ns", b->created_ns);
	cJSON_AddStringToObject(o, "source", b->source);
	add_u64(o, "files", b->stats.files);
	add_u64(o, "bytes_total", b->stats.bytes_total);
	add_u64(o, "bytes_stored", b->stats.bytes_stored);
	add_u64(o, "repo_bytes", b->repo_bytes);
	add_u64(o, "unreadable", b->stats.unreadable);
	c = chain_for(l, b);
	if (!c)
		return;
	c->backups++;
	c->bytes += b->repo_bytes;
	cJSON_DeleteItemFromObject(c->obj, "newest");
	cJSON_DeleteItemFromObject(c->obj, "newest_created");
	cJSON_AddStringToObject(c->obj, "newest", b->id);
	cJSON_AddStringToObject(c->obj, "newest_created", when);
}

static void route_list(struct dw__server *s, struct dw__reply *r)
{
	struct list_ctx l = { 0 };
	cJSON *doc = cJSON_CreateObject();
	int rc = -ENOMEM;

	if (!doc)
		goto fail;
	cJSON_AddStringToObject(doc, "repo", dw_backup_repo_path(s->backup_repo));
	l.backups = cJSON_AddArrayToObject(doc, "backups");
	l.chains = cJSON_AddArrayToObject(doc, "chains");
	if (!l.backups || !l.chains)
		goto fail;
	rc = dw_backup_list(s->backup_repo, list_one, &l);
	if (rc == 0)
		rc = l.err;
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < l.n; i++) {
		add_u64(l.acc[i].obj, "backups", l.acc[i].backups);
		add_u64(l.acc[i].obj, "repo_bytes", l.acc[i].bytes);
	}
	dw_free(l.acc);
	dw__reply_json(r, 200, doc);
	return;
fail:
	cJSON_Delete(doc);
	dw_free(l.acc);
	if (rc == -ENOMEM)
		dw__reply_error(r, 500, "internal", "out of memory");
	else if (rc == DW_ELOCKED)
		dw__reply_error(r, 503, "unavailable",
				"the repository is locked by another process (prune)");
	else
		dw__reply_error(r, 500, "internal", "cannot list the repository: %s",
				dw_strerror(rc));
}

/* ---- GET /v1/backups/jobs ------------------------------------------------------------------ */

struct jobs_ctx {
	cJSON *jobs;
	bool oom;
};

static void job_one(void *arg, const dw_backup_job *j)
{
	struct jobs_ctx *c = arg;
	cJSON *o = cJSON_CreateObject();
	char when[32];

	if (!o) {
		c->oom = true;
		return;
	}
	cJSON_AddStringToObject(o, "id", j->id);
	cJSON_AddStringToObject(o, "state", j->state);
	cJSON_AddStringToObject(o, "source", j->source);
	cJSON_AddStringToObject(o, "type", j->type);
	if (j->parent[0])
		cJSON_AddStringToObject(o, "parent", j->parent);
	else
		cJSON_AddNullToObject(o, "parent");
	add_u64(o, "files", j->files);
	add_u64(o, "bytes_read", j->bytes_read);
	add_u64(o, "bytes_stored", j->bytes_stored);
	add_u64(o, "checkpoint_bytes", j->checkpoint_bytes);
	iso_time(j->updated_ns, when, sizeof(when));
	cJSON_AddStringToObject(o, "updated", when);
	add_u64(o, "updated_ns", j->updated_ns);
	if (j->error) {
		cJSON_AddStringToObject(o, "error", dw_err_name(j->error));
		cJSON_AddStringToObject(o, "message", dw_strerror(j->error));
	} else {
		cJSON_AddNullToObject(o, "error");
	}
	if (!cJSON_AddItemToArray(c->jobs, o)) {
		cJSON_Delete(o);
		c->oom = true;
	}
}

static void route_jobs(struct dw__server *s, struct dw__reply *r)
{
	struct jobs_ctx c = { 0 };
	cJSON *doc = cJSON_CreateObject();
	int rc;

	c.jobs = doc ? cJSON_AddArrayToObject(doc, "jobs") : NULL;
	if (!c.jobs) {
		cJSON_Delete(doc);
		dw__reply_error(r, 500, "internal", "out of memory");
		return;
	}
	rc = dw_backup_mgr_jobs(s->backup, job_one, &c);
	if (c.oom || rc < 0) {
		cJSON_Delete(doc);
		if (c.oom || rc == -ENOMEM)
			dw__reply_error(r, 500, "internal", "out of memory");
		else
			dw__reply_error(r, 500, "internal", "cannot read the job records: %s",
					dw_strerror(rc));
		return;
	}
	dw__reply_json(r, 200, doc);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static bool is_get(const char *method)
{
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static void not_allowed(struct dw__reply *r, const char *method, const char *allow)
{
	dw__reply_error(r, 405, "method_not_allowed", "method %s is not allowed here (allowed: %s)",
			method, allow);
	r->allow = allow;
}

bool dw__backup_route(struct dw__server *s, const char *method, const char *path, const char *auth,
		      const char *body, size_t body_len, struct dw__reply *r)
{
	if (strcmp(path, "/v1/backups") == 0 || strcmp(path, "/v1/backups/") == 0) {
		if (strcmp(method, "POST") == 0)
			route_submit(s, auth, body, body_len, r);
		else if (!is_get(method))
			not_allowed(r, method, "GET, HEAD, POST");
		else if (!s->backup)
			dw__reply_not_configured(r, "backup", NOT_CONFIGURED_HINT);
		else
			route_list(s, r);
		return true;
	}
	if (strcmp(path, "/v1/backups/jobs") == 0 || strcmp(path, "/v1/backups/jobs/") == 0) {
		if (!is_get(method))
			not_allowed(r, method, "GET, HEAD");
		else if (!s->backup)
			dw__reply_not_configured(r, "backup", NOT_CONFIGURED_HINT);
		else
			route_jobs(s, r);
		return true;
	}
	return false;
}
