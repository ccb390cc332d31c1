// SPDX-License-Identifier: MIT
/*
 * The routes of `dwscale serve` and their handlers.
 *
 *   GET  /healthz                        200 {"status":"ok"}
 *   GET  /metrics                        Prometheus text exposition (metrics.c)
 *   GET  /v1/subsystems                  {"subsystems": [{name, state, metrics, limits}, ...]}
 *   GET  /v1/subsystems/NAME             one subsystem's object
 *   GET  /v1/subsystems/NAME/limits      {"limits": {...}} of one subsystem
 *   PUT  /v1/subsystems/NAME/limits      apply {"limit": value, ...} live; admin token needed
 *   /v1/io, /v1/backups..., /v1/fabric/...  per-subsystem routers in io_routes.c,
 *                                         backup_routes.c and fabric_routes.c
 *
 * Every error is JSON {"error": "<name>", "message": "..."}; a path that exists with another
 * method is 405 with an Allow header. For PUT the checks run in this order so that nothing is
 * revealed to a caller without the token and nothing is applied from a bad request: token (401),
 * subsystem (404), document (400), limit names (400), then the subsystem's own validation through
 * dw_registry_reconfigure, which applies all changes or none (400 with its reason).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dwscale/core.h"
#include "server/server.h"

#define LIMITS_PER_SUBSYSTEM_MAX 64
#define SUBSYSTEM_NAME_MAX	 32

void dw__reply_error(struct dw__reply *r, int status, const char *name, const char *fmt, ...)
{
	char msg[1024];
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->status = status;
	r->content_type = "application/json";
	r->body.len = 0;
	if (r->body.p)
		r->body.p[0] = '\0';
	if (o) {
		cJSON_AddStringToObject(o, "error", name);
		cJSON_AddStringToObject(o, "message", msg);
		text = cJSON_PrintUnformatted(o);
	}
	if (!text || dw__sb_puts(&r->body, text) < 0 || dw__sb_puts(&r->body, "\n") < 0) {
		/* out of memory: a fixed body still tells the client what happened */
		r->status = 500;
		r->body.len = 0;
		dw__sb_puts(&r->body, "{\"error\":\"internal\",\"message\":\"out of memory\"}\n");
	}
	cJSON_free(text);
	cJSON_Delete(o);
}

void dw__reply_not_configured(struct dw__reply *r, const char *what, const char *hint)
{
	dw__reply_error(r, 404, "not_configured", "%s is not configured: %s", what, hint);
}

void dw__reply_json(struct dw__reply *r, int status, cJSON *j)
{
	char *text = j ? cJSON_PrintUnformatted(j) : NULL;

	cJSON_Delete(j);
	r->body.len = 0;
	if (!text || dw__sb_puts(&r->body, text) < 0 || dw__sb_puts(&r->body, "\n") < 0) {
		if (text && r->body.max < strlen(text) + 1)
			dw__reply_error(r, 500, "internal",
					"the response is larger than its limit");
		else
			dw__reply_error(r, 500, "internal", "out of memory");
	} else {
		r->status = status;
		r->content_type = "application/json";
	}
	cJSON_free(text);
}

static void reply_rc(struct dw__reply *r, int rc, const char *what)
{
	if (rc == DW_ETOOBIG)
		dw__reply_error(r, 500, "internal", "%s is larger than the response limit", what);
	else
		dw__reply_error(r, 500, "internal", "cannot render %s: %s", what, dw_strerror(rc));
}

static bool is_get(const char *method)
{
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static void method_not_allowed(struct dw__reply *r, const char *method, const char *allow)
{
	dw__reply_error(r, 405, "method_not_allowed", "method %s is not allowed here (allowed: %s)",
			method, allow);
	r->allow = allow;
}

static void route_healthz(struct dw__reply *r)
{
	r->status = 200;
	r->content_type = "application/json";
	dw__sb_puts(&r->body, "{\"status\":\"ok\"}\n");
}

static void route_metrics(struct dw__server *s, struct dw__reply *r)
{
	int rc = dw__render_prometheus(s, &r->body);

	if (rc < 0) {
		reply_rc(r, rc, "the metrics");
		return;
	}
	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void route_subsystems(struct dw__server *s, const char *name, struct dw__reply *r)
{
	int rc = dw__render_subsystems_json(s->reg, name, &r->body);

	if (rc == DW_ENOTFOUND) {
		dw__reply_error(r, 404, "not_found", "no subsystem named %s", name);
		return;
	}
	if (rc < 0) {
		reply_rc(r, rc, "the subsystems");
		return;
	}
	r->status = 200;
	r->content_type = "application/json";
}

static void route_get_limits(struct dw__server *s, const char *name, struct dw__reply *r)
{
	struct dw__sbuf tmp;
	cJSON *doc = NULL, *out = NULL;
	char *text = NULL;
	int rc;

	dw__sb_init(&tmp, DW_SERVER_RESPONSE_MAX);
	rc = dw__render_subsystems_json(s->reg, name, &tmp);
	if (rc == DW_ENOTFOUND) {
		dw__reply_error(r, 404, "not_found", "no subsystem named %s", name);
		goto out;
	}
	if (rc < 0) {
		reply_rc(r, rc, "the limits");
		goto out;
	}
	doc = cJSON_Parse(tmp.p);
	out = cJSON_CreateObject();
	if (doc && out) {
		cJSON *limits = cJSON_DetachItemFromObject(doc, "limits");

		cJSON_AddStringToObject(out, "name", name);
		if (limits)
			cJSON_AddItemToObject(out, "limits", limits);
		text = cJSON_PrintUnformatted(out);
	}
	if (!text || dw__sb_puts(&r->body, text) < 0 || dw__sb_puts(&r->body, "\n") < 0) {
		reply_rc(r, -ENOMEM, "the limits");
		goto out;
	}
	r->status = 200;
	r->content_type = "application/json";
out:
	cJSON_free(text);
	cJSON_Delete(out);
	cJSON_Delete(doc);
	dw__sb_free(&tmp);
}

bool dw__authorized(struct dw__server *s, const char *auth, struct dw__reply *r)
{
	size_t len;
	const char *tok = dw__parse_bearer(auth, &len);

	if (!tok) {
		dw__reply_error(r, 401, "unauthorized",
				"this endpoint needs 'Authorization: Bearer <admin token>'");
		return false;
	}
	if (!dw__token_equal(tok, len, s->admin_token, s->admin_token_len)) {
		dw__reply_error(r, 401, "unauthorized", "the admin token is not valid");
		return false;
	}
	return true;
}

static void route_put_limits(struct dw__server *s, const char *name, const char *auth,
			     const char *body, size_t body_len, struct dw__reply *r)
{
	char names[LIMITS_PER_SUBSYSTEM_MAX][33];
	bool is_string[LIMITS_PER_SUBSYSTEM_MAX];
	dw_limit_change *changes = NULL;
	char *arena = NULL, err[512], applied[512];
	size_t nnames = 0, n = 0, o = 0;
	int rc;

	if (!dw__authorized(s, auth, r)) {
		dw_log(DW_LOG_WARN, "serve", "auth_failed", "path=/v1/subsystems/%s/limits", name);
		return;
	}
	rc = dw__limit_names(s->reg, name, names, is_string, LIMITS_PER_SUBSYSTEM_MAX, &nnames);
	if (rc == DW_ENOTFOUND) {
		dw__reply_error(r, 404, "not_found", "no subsystem named %s", name);
		return;
	}
	rc = dw__parse_limits_json(body, body ? body_len : 0, &changes, &n, &arena, err,
				   sizeof(err));
	if (rc == -ENOMEM) {
		dw__reply_error(r, 500, "internal", "out of memory");
		goto out;
	}
	if (rc < 0) {
		dw__reply_error(r, 400, "bad_request", "%s", err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t k = 0; k < nnames; k++)
			known = known || strcmp(names[k], changes[i].name) == 0;
		if (!known) {
			char list[400];
			size_t lo = 0;

			list[0] = '\0';
			for (size_t k = 0; k < nnames && lo < sizeof(list); k++)
				lo += (size_t)snprintf(list + lo, sizeof(list) - lo, "%s%s",
						       k ? ", " : "", names[k]);
			dw__reply_error(r, 400, "invalid_limit",
					"subsystem %s has no limit named %s (limits: %s)", name,
					changes[i].name, nnames ? list : "none");
			goto out;
		}
	}
	rc = dw_registry_reconfigure(s->reg, name, changes, n, err, sizeof(err));
	if (rc == DW_ENOTFOUND) {
		dw__reply_error(r, 404, "not_found", "no subsystem named %s", name);
		goto out;
	}
	if (rc == -ENOMEM) {
		dw__reply_error(r, 500, "internal", "out of memory while applying the limits");
		goto out;
	}
	if (rc < 0) {
		dw__reply_error(r, 400, "invalid_limit", "%s", err[0] ? err : dw_strerror(rc));
		goto out;
	}
	applied[0] = '\0';
	for (size_t i = 0; i < n && o < sizeof(applied); i++) {
		if (changes[i].str)
			o += (size_t)snprintf(applied + o, sizeof(applied) - o, "%s%s=%s",
					      i ? "," : "", changes[i].name, changes[i].str);
		else
			o += (size_t)snprintf(applied + o, sizeof(applied) - o, "%s%s=%g",
					      i ? "," : "", changes[i].name, changes[i].value);
	}
	{
		char q[600];

		dw_log(DW_LOG_INFO, "serve", "limits_changed", "subsystem=%s limits=%s", name,
		       dw_log_quote(applied, q, sizeof(q)));
	}
	route_subsystems(s, name, r);
out:
	dw_free(changes);
	dw_free(arena);
}

static bool name_ok(const char *p, size_t n)
{
	if (n == 0 || n > SUBSYSTEM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			return false;
	}
	return true;
}

void dw__route(struct dw__server *s, const char *method, const char *path, const char *auth,
	       const char *body, size_t body_len, struct dw__reply *r)
{
	static const char prefix[] = "/v1/subsystems";
	char name[SUBSYSTEM_NAME_MAX + 1];
	const char *rest, *slash;
	size_t nlen;

	r->allow = NULL;
	if (strcmp(path, "/healthz") == 0) {
		if (!is_get(method)) {
			method_not_allowed(r, method, "GET, HEAD");
			return;
		}
		{
			route_healthz(r);
			return;
		}
	}
	if (strcmp(path, "/metrics") == 0) {
		if (!is_get(method)) {
			method_not_allowed(r, method, "GET, HEAD");
			return;
		}
		{
			route_metrics(s, r);
			return;
		}
	}
	if (dw__io_route(s, method, path, auth, body, body_len, r) ||
	    dw__backup_route(s, method, path, auth, body, body_len, r) ||
	    dw__fabric_route(s, method, path, r))
		return;
	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		goto not_found;
	rest = path + sizeof(prefix) - 1;
	if (strcmp(rest, "") == 0 || strcmp(rest, "/") == 0) {
		if (!is_get(method)) {
			method_not_allowed(r, method, "GET, HEAD");
			return;
		}
		{
			route_subsystems(s, NULL, r);
			return;
		}
	}
	if (rest[0] != '/')
		goto not_found;
	rest++;
	slash = strchr(rest, '/');
	nlen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!name_ok(rest, nlen))
		goto not_found;
	memcpy(name, rest, nlen);
	name[nlen] = '\0';
	if (!slash) {
		if (!is_get(method)) {
			method_not_allowed(r, method, "GET, HEAD");
			return;
		}
		{
			route_subsystems(s, name, r);
			return;
		}
	}
	if (strcmp(slash, "/limits") == 0) {
		if (strcmp(method, "PUT") == 0) {
			route_put_limits(s, name, auth, body, body_len, r);
			return;
		}
		if (!is_get(method)) {
			method_not_allowed(r, method, "GET, HEAD, PUT");
			return;
		}
		{
			route_get_limits(s, name, r);
			return;
		}
	}
not_found:
	dw__reply_error(r, 404, "not_found", "no such path: %s", path);
}
