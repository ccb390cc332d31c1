// SPDX-License-Identifier: MIT
/*
 * Rendering of what the registry knows: the Prometheus text exposition (GET /metrics) and the
 * subsystems JSON document (GET /v1/subsystems[/NAME]).
 *
 * Prometheus names are dwscale_<subsystem>_<metric>. The exposition must pass
 * `promtool check metrics`, whatever a subsystem reports, so rendering enforces the rules
 * rather than trusting every subsystem to know them:
 *   - a counter's name ends in _total (appended if missing); a gauge's name does not (a trailing
 *     _total is dropped);
 *   - series of one name are grouped under a single HELP/TYPE pair (a subsystem may emit them
 *     in any order), so the metrics of a subsystem are collected and sorted first;
 *   - a label set that is not valid exposition syntax is dropped, with a warning in the log,
 *     rather than breaking the whole scrape;
 *   - HELP text is escaped (backslash, newline) and never empty.
 *
 * Everything is built in a capped dw__sbuf (DW_SERVER_RESPONSE_MAX). Subsystem callbacks run
 * under the registry's read lock, so they only copy data out; rendering happens after.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dwscale/core.h"
#include "server/server.h"

#define METRICS_PER_SUBSYSTEM_MAX 4096 /* far above any subsystem; bounds the scrape */

struct series {
	char *name; /* full exposition name */
	char *labels;
	char *help;
	double value;
	dw_metric_kind kind;
	size_t order; /* emission order, for a stable sort */
};

struct collect {
	const char *sub;
	struct series *v;
	size_t n, cap;
	int err;
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* name="value" pairs separated by commas, values with \\, \" and \n escapes only. */
static bool labels_ok(const char *l)
{
	const char *p = l;

	if (!*p)
		return true;
	for (;;) {
		if (!(isalpha((unsigned char)*p) || *p == '_'))
			return false;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		if (p[0] != '=' || p[1] != '"')
			return false;
		p += 2;
		while (*p && *p != '"') {
			if (*p == '\n')
				return false;
			if (*p == '\\') {
				if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
					return false;
				p++;
			}
			p++;
		}
		if (*p != '"')
			return false;
		p++;
		if (!*p)
			return true;
		if (*p != ',')
			return false;
		p++;
		if (!*p)
			return true; /* a trailing comma is allowed by the format */
	}
}

static void collect_metric(void *arg, const dw_metric *m)
{
	struct collect *c = arg;
	struct series *s;
	char name[160], q[256];
	size_t len;

	if (c->err)
		return;
	if (!m->name || !*m->name)
		return;
	if (m->labels && !labels_ok(m->labels)) {
		dw_log(DW_LOG_WARN, "metrics", "bad_labels", "subsystem=%s metric=%s labels=%s",
		       c->sub, m->name, dw_log_quote(m->labels, q, sizeof(q)));
		return;
	}
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 32;
		struct series *nv;

		if (ncap > METRICS_PER_SUBSYSTEM_MAX) {
			c->err = DW_ETOOBIG;
			return;
		}
		nv = dw_realloc(c->v, ncap * sizeof(*nv));
		if (!nv) {
			c->err = -ENOMEM;
			return;
		}
		c->v = nv;
		c->cap = ncap;
	}
	len = (size_t)snprintf(name, sizeof(name), "dwscale_%s_%s", c->sub, m->name);
	if (len >= sizeof(name))
		return;
	for (char *p = name; *p; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '_'))
			*p = '_';
	}
	if (m->kind == DW_METRIC_COUNTER && !ends_with(name, "_total")) {
		if (len + 6 >= sizeof(name))
			return;
		memcpy(name + len, "_total", 7);
	} else if (m->kind != DW_METRIC_COUNTER && ends_with(name, "_total")) {
		name[len - 6] = '\0';
	}
	s = &c->v[c->n];
	s->name = dw_strdup(name);
	s->labels = dw_strdup(m->labels ? m->labels : "");
	s->help = dw_strdup(m->help && *m->help ? m->help : m->name);
	s->value = m->value;
	s->kind = m->kind;
	s->order = c->n;
	if (!s->name || !s->labels || !s->help) {
		dw_free(s->name);
		dw_free(s->labels);
		dw_free(s->help);
		c->err = -ENOMEM;
		return;
	}
	c->n++;
}

static int cmp_series(const void *a, const void *b)
{
	const struct series *x = a, *y = b;
	int r = strcmp(x->name, y->name);

	if (r)
		return r;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int put_value(struct dw__sbuf *o, double v)
{
	if (isnan(v))
		return dw__sb_puts(o, "NaN");
	if (isinf(v))
		return dw__sb_puts(o, v > 0 ? "+Inf" : "-Inf");
	return dw__sb_printf(o, "%.17g", v);
}

static int put_help(struct dw__sbuf *o, const char *name, const char *help)
{
	int rc = dw__sb_printf(o, "# HELP %s ", name);

	for (const char *p = help; rc == 0 && *p; p++) {
		if (*p == '\\')
			rc = dw__sb_puts(o, "\\\\");
		else if (*p == '\n')
			rc = dw__sb_puts(o, "\\n");
		else
			rc = dw__sb_append(o, p, 1);
	}
	return rc ? rc : dw__sb_puts(o, "\n");
}

static int put_series(struct dw__sbuf *o, const char *name, const char *labels, double v)
{
	int rc;

	if (labels && *labels)
		rc = dw__sb_printf(o, "%s{%s} ", name, labels);
	else
		rc = dw__sb_printf(o, "%s ", name);
	if (rc == 0)
		rc = put_value(o, v);
	return rc ? rc : dw__sb_puts(o, "\n");
}

struct prom {
	struct dw__sbuf *out;
	int err;
};

static void render_subsystem(void *arg, const dw_scalable *sc)
{
	struct prom *p = arg;
	struct collect c = { .sub = sc->name };
	const char *last = NULL;
	char name[96];
	int rc = 0;

	if (p->err)
		return;
	if (sc->ops->metrics)
		rc = sc->ops->metrics(sc->self, collect_metric, &c);
	if (rc < 0 || c.err < 0) {
		dw_log(DW_LOG_WARN, "metrics", "subsystem_failed", "subsystem=%s err=%s", sc->name,
		       dw_err_name(rc < 0 ? rc : c.err));
	}
	qsort(c.v, c.n, sizeof(*c.v), cmp_series);
	snprintf(name, sizeof(name), "dwscale_%s_backpressure_state", sc->name);
	rc = put_help(p->out, name,
		      "Backpressure state: 0 normal, 1 warning, 2 critical, 3 shedding");
	if (rc == 0)
		rc = dw__sb_printf(p->out, "# TYPE %s gauge\n", name);
	if (rc == 0)
		rc = put_series(p->out, name, NULL,
				sc->ops->state ? (double)sc->ops->state(sc->self) : 0);
	for (size_t i = 0; rc == 0 && i < c.n; i++) {
		struct series *s = &c.v[i];

		if (strcmp(s->name, name) == 0)
			continue; /* the subsystem's own series would duplicate ours */
		if (!last || strcmp(last, s->name) != 0) {
			rc = put_help(p->out, s->name, s->help);
			if (rc == 0)
				rc = dw__sb_printf(p->out, "# TYPE %s %s\n", s->name,
						   s->kind == DW_METRIC_COUNTER ? "counter"
										: "gauge");
			last = s->name;
		}
		if (rc == 0)
			rc = put_series(p->out, s->name, s->labels, s->value);
	}
	for (size_t i = 0; i < c.n; i++) {
		dw_free(c.v[i].name);
		dw_free(c.v[i].labels);
		dw_free(c.v[i].help);
	}
	dw_free(c.v);
	if (rc < 0)
		p->err = rc;
}

int dw__render_prometheus(struct dw__server *s, struct dw__sbuf *out)
{
	static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
	struct prom p = { .out = out };
	int rc;

	rc = dw__sb_printf(
		out,
		"# HELP dwscale_build_info Version of the running dwscale.\n"
		"# TYPE dwscale_build_info gauge\n"
		"dwscale_build_info{version=\"%s\"} 1\n"
		"# HELP dwscale_serve_uptime_seconds Seconds since the daemon started.\n"
		"# TYPE dwscale_serve_uptime_seconds gauge\n"
		"dwscale_serve_uptime_seconds %.3f\n"
		"# HELP dwscale_http_requests_in_flight Requests being served now.\n"
		"# TYPE dwscale_http_requests_in_flight gauge\n"
		"dwscale_http_requests_in_flight %ld\n"
		"# HELP dwscale_http_requests_total Requests answered, by status class.\n"
		"# TYPE dwscale_http_requests_total counter\n",
		dw_version(), (double)(dw_clock_now(NULL) - s->start_ns) / (double)DW_NS_PER_SEC,
		atomic_load_explicit(&s->in_flight, memory_order_relaxed));
	for (int i = 0; rc == 0 && i < DW_SERVER_STATUS_CLASSES; i++)
		rc = dw__sb_printf(out, "dwscale_http_requests_total{code=\"%s\"} %llu\n",
				   classes[i],
				   (unsigned long long)atomic_load_explicit(&s->requests[i],
									    memory_order_relaxed));
	if (rc == 0)
		rc = dw__sb_printf(
			out,
			"# HELP dwscale_http_bodies_refused_total Requests refused because "
			"their body was over the size limit.\n"
			"# TYPE dwscale_http_bodies_refused_total counter\n"
			"dwscale_http_bodies_refused_total %llu\n"
			"# HELP dwscale_http_auth_failures_total Admin requests refused for a "
			"missing or wrong token.\n"
			"# TYPE dwscale_http_auth_failures_total counter\n"
			"dwscale_http_auth_failures_total %llu\n",
			(unsigned long long)atomic_load_explicit(&s->bodies_refused,
								 memory_order_relaxed),
			(unsigned long long)atomic_load_explicit(&s->auth_failures,
								 memory_order_relaxed));
	if (rc < 0)
		return rc;
	dw_registry_foreach(s->reg, render_subsystem, &p);
	return p.err;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

struct jctx {
	cJSON *arr;
	const char *only; /* render only this subsystem, or all if NULL */
	cJSON *found;
	int err;
};

static void json_metric(void *arg, const dw_metric *m)
{
	cJSON *arr = arg, *o;

	if (!m->name || cJSON_GetArraySize(arr) >= METRICS_PER_SUBSYSTEM_MAX)
		return;
	o = cJSON_CreateObject();
	if (!o)
		return;
	cJSON_AddStringToObject(o, "name", m->name);
	if (m->labels && *m->labels)
		cJSON_AddStringToObject(o, "labels", m->labels);
	cJSON_AddNumberToObject(o, "value", m->value);
	cJSON_AddStringToObject(o, "kind", m->kind == DW_METRIC_COUNTER ? "counter" : "gauge");
	cJSON_AddStringToObject(o, "unit", m->unit ? m->unit : "");
	cJSON_AddStringToObject(o, "help", m->help ? m->help : "");
	cJSON_AddItemToArray(arr, o);
}

static void json_limit(void *arg, const dw_limit *l)
{
	cJSON *obj = arg, *o;

	if (!l->name || cJSON_GetObjectItemCaseSensitive(obj, l->name))
		return;
	o = cJSON_CreateObject();
	if (!o)
		return;
	if (l->str) {
		cJSON_AddStringToObject(o, "value", l->str);
	} else {
		cJSON_AddNumberToObject(o, "value", l->value);
		cJSON_AddNumberToObject(o, "min", l->min);
		cJSON_AddNumberToObject(o, "max", l->max);
	}
	cJSON_AddStringToObject(o, "unit", l->unit ? l->unit : "");
	cJSON_AddStringToObject(o, "help", l->help ? l->help : "");
	cJSON_AddItemToObject(obj, l->name, o);
}

static void json_subsystem(void *arg, const dw_scalable *sc)
{
	struct jctx *j = arg;
	cJSON *o, *metrics, *limits;

	if (j->err || (j->only && strcmp(j->only, sc->name) != 0))
		return;
	o = cJSON_CreateObject();
	metrics = cJSON_CreateArray();
	limits = cJSON_CreateObject();
	if (!o || !metrics || !limits) {
		cJSON_Delete(o);
		cJSON_Delete(metrics);
		cJSON_Delete(limits);
		j->err = -ENOMEM;
		return;
	}
	cJSON_AddStringToObject(o, "name", sc->name);
	cJSON_AddStringToObject(o, "state",
				dw_bp_state_name(sc->ops->state ? sc->ops->state(sc->self) : 0));
	if (sc->ops->metrics)
		sc->ops->metrics(sc->self, json_metric, metrics);
	if (sc->ops->limits)
		sc->ops->limits(sc->self, json_limit, limits);
	cJSON_AddItemToObject(o, "metrics", metrics);
	cJSON_AddItemToObject(o, "limits", limits);
	if (j->only)
		j->found = o;
	else
		cJSON_AddItemToArray(j->arr, o);
}

int dw__render_subsystems_json(dw_registry *reg, const char *name, struct dw__sbuf *out)
{
	struct jctx j = { .only = name };
	cJSON *doc = NULL;
	char *text = NULL;
	int rc;

	if (!name) {
		doc = cJSON_CreateObject();
		j.arr = cJSON_CreateArray();
		if (!doc || !j.arr) {
			cJSON_Delete(j.arr);
			rc = -ENOMEM;
			goto out;
		}
		cJSON_AddItemToObject(doc, "subsystems", j.arr);
	}
	dw_registry_foreach(reg, json_subsystem, &j);
	if (j.err < 0) {
		rc = j.err;
		goto out;
	}
	if (name) {
		if (!j.found) {
			rc = DW_ENOTFOUND;
			goto out;
		}
		doc = j.found;
	}
	text = cJSON_PrintUnformatted(doc);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	rc = dw__sb_puts(out, text);
	if (rc == 0)
		rc = dw__sb_puts(out, "\n");
out:
	cJSON_free(text);
	cJSON_Delete(doc);
	return rc;
}

struct names {
	const char *only;
	char (*names)[33];
	bool *is_string;
	size_t cap, n;
	bool found;
};

static void names_limit(void *arg, const dw_limit *l)
{
	struct names *nm = arg;

	if (!l->name || nm->n == nm->cap)
		return;
	snprintf(nm->names[nm->n], 33, "%s", l->name);
	nm->is_string[nm->n] = l->str != NULL;
	nm->n++;
}

static void names_subsystem(void *arg, const dw_scalable *sc)
{
	struct names *nm = arg;

	if (strcmp(nm->only, sc->name) != 0)
		return;
	nm->found = true;
	if (sc->ops->limits)
		sc->ops->limits(sc->self, names_limit, nm);
}

int dw__limit_names(dw_registry *reg, const char *name, char names[][33], bool *is_string,
		    size_t cap, size_t *n)
{
	struct names nm = { .only = name, .names = names, .is_string = is_string, .cap = cap };

	dw_registry_foreach(reg, names_subsystem, &nm);
	*n = nm.n;
	return nm.found ? 0 : DW_ENOTFOUND;
}
