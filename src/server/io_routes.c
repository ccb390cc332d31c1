// SPDX-License-Identifier: MIT
/*
 * GET /v1/io: what the I/O manager's scheduler on each block device is doing.
 *
 *   {"state": "normal",
 *    "devices": [{"name": "vda", "paths": ["data"], "class": "ssd", "depth": 32,
 *                 "depth_why": "class ssd", "backend": "io_uring", "uring_errno": 0,
 *                 "uring": "available", "direct": true, "direct_errno": 0,
 *                 "state": "normal", "backend_switches": 0, "quota_refused": 0,
 *                 "tiers": {"high": {"queued": 0, "inflight": 0, "completed": 12,
 *                                    "errors": 0, "bytes": 49152, "shed": 0, "demoted": 0,
 *                                    "latency_p50_seconds": 0.0001, ...
 *                                    "longest_wait_seconds": 0.0002}, "normal": {...},
 *                           "low": {...}}}]}
 *
 * include/dwscale/io.h has no call that lists a manager's devices, so the list is read from the
 * manager's metrics (one series per device, and per device and tier, labelled dev="..." and
 * tier="..."), which is the same data /metrics exposes. Class, depth reason and the O_DIRECT
 * probe are not metrics: they come from dw_io_file_info() on the directories serve holds open
 * on the manager (the data directory, the backup repository), so they appear for the devices
 * those live on ("paths" names them) and are left out for the others. Metrics this file does
 * not know are ignored, so a newer io module never breaks the endpoint.
 *
 * GET /v1/io/quotas/CALLER: {"caller": "etl", "bytes_used": N, "ops_used": N} in the current
 *   window (404 if the caller has no quota of its own and has used none).
 * PUT /v1/io/quotas/CALLER (admin token): {"bytes": N, "ops": N} per window, 0 = unlimited; the
 *   caller's own quota from then on, kept in the node's store like its use. The body is read by
 *   dw__parse_limits_json (the limits body's parser, fuzzed in fuzz_http_query.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dwscale/core.h"
#include "server/server.h"

#define IO_DEVICES_MAX 256 /* devices listed; a node has a handful */

enum tier_field {
	TF_QUEUED,
	TF_INFLIGHT,
	TF_COMPLETED,
	TF_ERRORS,
	TF_BYTES,
	TF_SHED,
	TF_DEMOTED,
	TF_P50,
	TF_P99,
	TF_LONGEST,
	TF_COUNT
};

/* metric name -> JSON name, per tier */
static const char *const tier_metric[TF_COUNT] = {
	"queued", "inflight", "completed",   "errors",	    "bytes",
	"shed",	  "demoted",  "latency_p50", "latency_p99", "longest_wait",
};
static const char *const tier_json[TF_COUNT] = {
	"queued",
	"inflight",
	"completed",
	"errors",
	"bytes",
	"shed",
	"demoted",
	"latency_p50_seconds",
	"latency_p99_seconds",
	"longest_wait_seconds",
};

struct io_dev {
	char name[64];
	char backend[32];
	bool has_depth, has_uring, has_direct, has_state, has_switches, has_refused;
	double depth, uring_errno, direct_ok, state, switches, refused;
	bool has_tier[DW_IO_TIERS];
	double tier[DW_IO_TIERS][TF_COUNT];
	bool has_tf[DW_IO_TIERS][TF_COUNT];
};

struct io_collect {
	struct io_dev *devs;
	size_t n;
	bool truncated;
};

/* Value of label key in a Prometheus label string (key="value",...), unescaped; false if absent
 * or longer than cap. */
static bool label_value(const char *labels, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	const char *p = labels;

	while (p && *p) {
		if (strncmp(p, key, kl) == 0 && p[kl] == '=' && p[kl + 1] == '"') {
			size_t o = 0;

			for (p += kl + 2; *p && *p != '"'; p++) {
				char ch = *p;

				if (ch == '\\' && p[1]) {
					p++;
					ch = *p == 'n' ? '\n' : *p;
				}
				if (o + 1 >= cap)
					return false;
				out[o++] = ch;
			}
			out[o] = '\0';
			return *p == '"';
		}
		/* skip to the next pair: past the closing quote of this value */
		p = strchr(p, '"');
		if (!p)
			return false;
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
		}
		if (*p)
			p++;
		if (*p == ',')
			p++;
	}
	return false;
}

static struct io_dev *find_dev(struct io_collect *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->devs[i].name, name) == 0)
			return &c->devs[i];
	}
	if (c->n == IO_DEVICES_MAX) {
		c->truncated = true;
		return NULL;
	}
	memset(&c->devs[c->n], 0, sizeof(c->devs[c->n]));
	snprintf(c->devs[c->n].name, sizeof(c->devs[c->n].name), "%s", name);
	return &c->devs[c->n++];
}

/* Runs under the io manager's lock: copies numbers only. */
static void on_metric(void *arg, const dw_metric *m)
{
	struct io_collect *c = arg;
	char dev[64], tier[16];
	struct io_dev *d;
	dw_io_tier t;

	if (!m->labels || !label_value(m->labels, "dev", dev, sizeof(dev)))
		return;
	d = find_dev(c, dev);
	if (!d)
		return;
	if (label_value(m->labels, "tier", tier, sizeof(tier))) {
		if (dw_io_tier_parse(tier, &t) < 0)
			return;
		for (int f = 0; f < TF_COUNT; f++) {
			if (strcmp(m->name, tier_metric[f]) == 0) {
				d->tier[t][f] = m->value;
				d->has_tf[t][f] = true;
				d->has_tier[t] = true;
			}
		}
		return;
	}
	if (strcmp(m->name, "depth") == 0) {
		d->depth = m->value;
		d->has_depth = true;
	} else if (strcmp(m->name, "backend") == 0) {
		if (!label_value(m->labels, "backend", d->backend, sizeof(d->backend)))
			d->backend[0] = '\0';
	} else if (strcmp(m->name, "uring_errno") == 0) {
		d->uring_errno = m->value;
		d->has_uring = true;
	} else if (strcmp(m->name, "direct_ok") == 0) {
		d->direct_ok = m->value;
		d->has_direct = true;
	} else if (strcmp(m->name, "state") == 0) {
		d->state = m->value;
		d->has_state = true;
	} else if (strcmp(m->name, "backend_switches") == 0) {
		d->switches = m->value;
		d->has_switches = true;
	} else if (strcmp(m->name, "quota_refused") == 0) {
		d->refused = m->value;
		d->has_refused = true;
	}
}

static const char *state_name(double v)
{
	if (v >= DW_BP_NORMAL && v <= DW_BP_SHEDDING)
		return dw_bp_state_name((dw_bp_state)(int)v);
	return "unknown";
}

/* Class, depth reason and probe results from the directories held open on d's device. */
static void add_file_info(struct dw__server *s, const struct io_dev *d, cJSON *o)
{
	cJSON *paths = NULL;
	bool info_done = false;

	for (size_t i = 0; i < DW_SERVER_IO_PATHS; i++) {
		const struct dw__io_path *p = &s->io_paths[i];
		dw_io_dev_info info;

		if (!p->f || dw_io_file_info(p->f, &info) < 0 || strcmp(info.name, d->name) != 0)
			continue;
		if (!paths)
			paths = cJSON_AddArrayToObject(o, "paths");
		cJSON_AddItemToArray(paths, cJSON_CreateString(p->what));
		if (info_done)
			continue;
		info_done = true;
		cJSON_AddStringToObject(o, "class", dw_io_class_name(info.class_));
		cJSON_AddStringToObject(o, "depth_why", info.depth_why);
		cJSON_AddNumberToObject(o, "direct_errno", info.direct_errno);
		cJSON_AddStringToObject(o, "direct_probe",
					info.direct_errno == 0	 ? "works"
					: info.direct_errno == 1 ? "not tried yet"
								 : dw_strerror(info.direct_errno));
	}
}

static cJSON *dev_json(struct dw__server *s, const struct io_dev *d)
{
	cJSON *o = cJSON_CreateObject(), *tiers;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", d->name);
	add_file_info(s, d, o);
	if (d->has_depth)
		cJSON_AddNumberToObject(o, "depth", d->depth);
	if (d->backend[0])
		cJSON_AddStringToObject(o, "backend", d->backend);
	if (d->has_uring) {
		/* the metric is the errno as a positive number; 0 = io_uring works */
		int e = (int)d->uring_errno;

		cJSON_AddNumberToObject(o, "uring_errno", e);
		cJSON_AddStringToObject(o, "uring", e == 0 ? "available" : dw_strerror(-e));
	}
	if (d->has_direct)
		cJSON_AddBoolToObject(o, "direct", d->direct_ok != 0);
	if (d->has_state)
		cJSON_AddStringToObject(o, "state", state_name(d->state));
	if (d->has_switches)
		cJSON_AddNumberToObject(o, "backend_switches", d->switches);
	if (d->has_refused)
		cJSON_AddNumberToObject(o, "quota_refused", d->refused);
	tiers = cJSON_AddObjectToObject(o, "tiers");
	for (int t = 0; t < DW_IO_TIERS && tiers; t++) {
		cJSON *to;

		if (!d->has_tier[t])
			continue;
		to = cJSON_AddObjectToObject(tiers, dw_io_tier_name((dw_io_tier)t));
		for (int f = 0; f < TF_COUNT && to; f++) {
			if (d->has_tf[t][f])
				cJSON_AddNumberToObject(to, tier_json[f], d->tier[t][f]);
		}
	}
	return o;
}

static void route_io(struct dw__server *s, struct dw__reply *r)
{
	const dw_scalable *sc = dw_io_scalable(s->io);
	struct io_collect c = { 0 };
	cJSON *doc = NULL, *arr;
	int rc;

	c.devs = dw_calloc(IO_DEVICES_MAX, sizeof(*c.devs));
	if (!c.devs) {
		dw__reply_error(r, 500, "internal", "out of memory");
		return;
	}
	rc = sc->ops->metrics(sc->self, on_metric, &c);
	if (rc < 0) {
		dw__reply_error(r, 500, "internal", "cannot read the io metrics: %s",
				dw_strerror(rc));
		goto out;
	}
	doc = cJSON_CreateObject();
	if (doc) {
		cJSON_AddStringToObject(doc, "state", dw_bp_state_name(dw_io_state(s->io)));
		arr = cJSON_AddArrayToObject(doc, "devices");
		for (size_t i = 0; i < c.n && arr; i++)
			cJSON_AddItemToArray(arr, dev_json(s, &c.devs[i]));
		if (c.truncated)
			cJSON_AddBoolToObject(doc, "truncated", true);
	}
	dw__reply_json(r, 200, doc);
out:
	dw_free(c.devs);
}

#define QUOTAS_PREFIX "/v1/io/quotas/"
#define QUOTA_MAX     9.0e15 /* the io limits' bound for quota_bytes and quota_ops */

static void quota_get(struct dw__server *s, const char *caller, struct dw__reply *r)
{
	uint64_t bytes = 0, ops = 0;
	cJSON *doc;
	int rc = dw_io_quota_get(s->io, caller, &bytes, &ops);

	if (rc == DW_ENOTFOUND) {
		dw__reply_error(r, 404, "not_found", "caller %s has no quota and no use", caller);
		return;
	}
	if (rc < 0) {
		dw__reply_error(r, rc == DW_EUSAGE ? 400 : 500,
				rc == DW_EUSAGE ? "bad_request" : "internal", "caller %s: %s",
				caller, dw_strerror(rc));
		return;
	}
	doc = cJSON_CreateObject();
	if (doc) {
		cJSON_AddStringToObject(doc, "caller", caller);
		cJSON_AddNumberToObject(doc, "bytes_used", (double)bytes);
		cJSON_AddNumberToObject(doc, "ops_used", (double)ops);
	}
	dw__reply_json(r, 200, doc);
}

static void quota_put(struct dw__server *s, const char *caller, const char *body, size_t body_len,
		      struct dw__reply *r)
{
	dw_limit_change *ch = NULL;
	char *arena = NULL, err[512];
	double v[2] = { -1, -1 }; /* bytes, ops */
	size_t n = 0;
	cJSON *doc;
	int rc;

	rc = dw__parse_limits_json(body, body ? body_len : 0, &ch, &n, &arena, err, sizeof(err));
	if (rc < 0) {
		if (rc == -ENOMEM)
			dw__reply_error(r, 500, "internal", "out of memory");
		else
			dw__reply_error(r, 400, "bad_request", "%s", err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int k = strcmp(ch[i].name, "bytes") == 0 ? 0
			: strcmp(ch[i].name, "ops") == 0 ? 1
							 : -1;

		if (k < 0 || ch[i].str) {
			dw__reply_error(r, 400, "bad_request",
					"%s: a quota is {\"bytes\": N, \"ops\": N} (0 = unlimited)",
					ch[i].name);
			goto out;
		}
		if (!(ch[i].value >= 0 && ch[i].value <= QUOTA_MAX) ||
		    ch[i].value != floor(ch[i].value)) {
			dw__reply_error(r, 400, "bad_request",
					"%s must be a whole number from 0 to 9e15, got %g",
					ch[i].name, ch[i].value);
			goto out;
		}
		v[k] = ch[i].value;
	}
	if (v[0] < 0 || v[1] < 0) {
		dw__reply_error(r, 400, "bad_request",
				"a quota needs both bytes and ops per window (0 = unlimited)");
		goto out;
	}
	rc = dw_io_quota_set(s->io, caller, (uint64_t)v[0], (uint64_t)v[1]);
	if (rc < 0) {
		dw__reply_error(r, rc == DW_EUSAGE ? 400 : 500,
				rc == DW_EUSAGE ? "bad_request" : "internal", "caller %s: %s",
				caller, dw_strerror(rc));
		goto out;
	}
	dw_log(DW_LOG_INFO, "serve", "io_quota", "caller=%s bytes=%.0f ops=%.0f", caller, v[0],
	       v[1]);
	doc = cJSON_CreateObject();
	if (doc) {
		cJSON_AddStringToObject(doc, "caller", caller);
		cJSON_AddNumberToObject(doc, "bytes", v[0]);
		cJSON_AddNumberToObject(doc, "ops", v[1]);
	}
	dw__reply_json(r, 200, doc);
out:
	dw_free(ch);
	dw_free(arena);
}

static void route_quota(struct dw__server *s, const char *method, const char *caller,
			const char *auth, const char *body, size_t body_len, struct dw__reply *r)
{
	if (strcmp(method, "PUT") == 0) {
		if (!dw__authorized(s, auth, r)) {
			dw_log(DW_LOG_WARN, "serve", "auth_failed", "path=" QUOTAS_PREFIX "...");
			return;
		}
		quota_put(s, caller, body, body_len, r);
	} else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		quota_get(s, caller, r);
	} else {
		dw__reply_error(r, 405, "method_not_allowed",
				"method %s is not allowed here (allowed: GET, HEAD, PUT)", method);
		r->allow = "GET, HEAD, PUT";
	}
}

bool dw__io_route(struct dw__server *s, const char *method, const char *path, const char *auth,
		  const char *body, size_t body_len, struct dw__reply *r)
{
	if (strncmp(path, QUOTAS_PREFIX, strlen(QUOTAS_PREFIX)) == 0) {
		if (!s->io)
			dw__reply_not_configured(r, "io", "the I/O manager did not start");
		else
			route_quota(s, method, path + strlen(QUOTAS_PREFIX), auth, body, body_len,
				    r);
		return true;
	}
	if (strcmp(path, "/v1/io") != 0 && strcmp(path, "/v1/io/") != 0)
		return false;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		dw__reply_error(r, 405, "method_not_allowed",
				"method %s is not allowed here (allowed: GET, HEAD)", method);
		r->allow = "GET, HEAD";
		return true;
	}
	if (!s->io) {
		dw__reply_not_configured(r, "io", "the I/O manager did not start");
		return true;
	}
	route_io(s, r);
	return true;
}
