// SPDX-License-Identifier: MIT
/*
 * The object endpoints of `dwscale serve`, streamed both ways:
 *
 *   PUT    /v1/objects/{key}    body streamed into dw_db_put      201 + object JSON
 *   GET    /v1/objects/{key}    dw_db_get streamed out            200 or 206 (one Range)
 *   HEAD   /v1/objects/{key}    the same headers, no body
 *   DELETE /v1/objects/{key}                                      204
 *   GET    /v1/objects?prefix=&limit=&page_token=                  one page as JSON
 *   GET    /v1/db/health?timeout_ms=                               every strategy, at once
 *
 * Upload: libmicrohttpd hands the body over in pieces on its own thread; dw_db_put pulls from a
 * dw_source. A pipe joins them: the handler writes each piece into it (a blocking write, so a
 * slow database slows the client through TCP, and memory stays at the pipe's 1 MiB whatever the
 * object's size), and a put thread reads the other end. The object becomes visible only when
 * the put commits after the last byte; a client that disconnects early closes the pipe's write
 * end without finishing, which the put sees as an error (the source reports DW_ECANCELED), so
 * nothing is published.
 *
 * Download: the response is fed by a content-reader callback pulling from the object's dw_bbuf
 * (64 KiB chunks, 64 MiB cap under the process-wide budget). Content-Length, ETag (the SHA-256)
 * and Last-Modified are sent up front; a failure mid-stream (the object was overwritten under
 * the reader) ends the connection early, so the client sees a short body, never a mixed one.
 *
 * Threads: each request's state belongs to the MHD thread that serves its connection, plus, for
 * a PUT, the one put thread joined before the reply; they share only the pipe and the put's
 * result, read after pthread_join.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "dwscale/config.h"
#include "dwscale/db.h"
#include "cli/dbopen.h"
#include "server/server.h"

#define OBJ_PREFIX "/v1/objects"
#define PIPE_BYTES (1u << 20)

struct dw__objreq {
	int mode; /* 0 none, 1 put streaming */
	char key[DW_DB_KEY_MAX + 1];
	size_t klen;
	int pipefd[2];
	pthread_t thread;
	bool thread_started;
	bool write_failed;
	_Atomic bool complete; /* set before the write end closes after the last byte */
	int put_rc;
	char put_err[512];
	dw_db_object obj;
	char ctype[256];
	struct dw__server *s;
};

bool dw__objects_match(const char *url)
{
	size_t n = sizeof(OBJ_PREFIX) - 1;

	if (strcmp(url, "/v1/db/health") == 0)
		return true;
	return strncmp(url, OBJ_PREFIX, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

static enum MHD_Result send_json(struct dw__server *s, struct MHD_Connection *c, int status,
				 cJSON *j)
{
	char *text = cJSON_PrintUnformatted(j);
	struct dw__reply r = { .status = status, .content_type = "application/json" };
	enum MHD_Result ret;

	cJSON_Delete(j);
	dw__sb_init(&r.body, DW_SERVER_RESPONSE_MAX);
	if (!text || dw__sb_puts(&r.body, text) < 0)
		dw__reply_error(&r, 500, "internal", "response too large");
	cJSON_free(text);
	ret = dw__http_send_reply(s, c, &r);
	dw__sb_free(&r.body);
	return ret;
}

static enum MHD_Result send_error(struct dw__server *s, struct MHD_Connection *c, int status,
				  const char *name, const char *msg)
{
	struct dw__reply r = { 0 };
	enum MHD_Result ret;

	dw__sb_init(&r.body, 8192);
	dw__reply_error(&r, status, name, "%s", msg);
	ret = dw__http_send_reply(s, c, &r);
	dw__sb_free(&r.body);
	return ret;
}

/* Map a db error to an HTTP reply, with the db's message. */
static enum MHD_Result send_db_error(struct dw__server *s, struct MHD_Connection *c, int rc,
				     const char *msg)
{
	switch (rc) {
	case DW_ENOTFOUND:
		return send_error(s, c, 404, "not_found", msg);
	case DW_EBADKEY:
	case DW_ELIMIT:
	case DW_ETOOBIG:
		return send_error(s, c, 400, "bad_request", msg);
	case DW_ETOKEN:
		return send_error(s, c, 400, "bad_token", msg);
	case DW_ECONFLICT:
		return send_error(s, c, 409, "conflict", msg);
	case DW_EBACKEND:
	case DW_ETIMEDOUT:
	case DW_ELOCKED:
		return send_error(s, c, 503, "unavailable", msg);
	default:
		return send_error(s, c, 500, "internal", msg);
	}
}

/* ---- PUT ------------------------------------------------------------------------------------ */

/*
 * The put's source: the pipe's read end. End of file is the end of the object only if the
 * handler saw the whole request (complete); otherwise the client went away mid-body, and the
 * put must fail rather than publish a truncated object.
 */
static ssize_t pipe_read(void *ctx, void *buf, size_t len)
{
	struct dw__objreq *o = ctx;

	for (;;) {
		ssize_t n = read(o->pipefd[0], buf, len);

		if (n > 0)
			return n;
		if (n == 0)
			return atomic_load_explicit(&o->complete, memory_order_acquire)
				       ? 0
				       : DW_ECANCELED;
		if (errno != EINTR)
			return -errno;
	}
}

static void *put_main(void *arg)
{
	struct dw__objreq *o = arg;
	dw_source src = { .read = pipe_read, .ctx = o };
	dw_db_put_opts po = { .content_type = o->ctype[0] ? o->ctype : NULL };

	o->put_rc = dw_db_put(o->s->db, NULL, o->key, o->klen, &src, &po, &o->obj);
	if (o->put_rc < 0)
		snprintf(o->put_err, sizeof(o->put_err), "%s", dw_db_errmsg(o->s->db));
	/* Closing the read end makes a handler still writing get EPIPE instead of blocking. */
	close(o->pipefd[0]);
	o->pipefd[0] = -1;
	return NULL;
}

static int put_begin(struct dw__server *s, struct MHD_Connection *c, struct dw__objreq *o)
{
	const char *ct =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	int rc;

	if (ct)
		snprintf(o->ctype, sizeof(o->ctype), "%s", ct);
	if (pipe2(o->pipefd, O_CLOEXEC) < 0)
		return -errno;
	fcntl(o->pipefd[1], F_SETPIPE_SZ, PIPE_BYTES); /* best effort: 64 KiB otherwise */
	o->s = s;
	rc = -pthread_create(&o->thread, NULL, put_main, o);
	if (rc < 0) {
		close(o->pipefd[0]);
		close(o->pipefd[1]);
		o->pipefd[0] = o->pipefd[1] = -1;
		return rc;
	}
	o->thread_started = true;
	o->mode = 1;
	return 0;
}

static void put_feed(struct dw__objreq *o, const char *data, size_t n)
{
	while (n && !o->write_failed) {
		ssize_t w = write(o->pipefd[1], data, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			o->write_failed = true; /* EPIPE: the put already failed; drop the rest */
			break;
		}
		data += w;
		n -= (size_t)w;
	}
}

/* Join the put thread; with `complete` false the client went away: make the put fail. */
static void put_finish(struct dw__objreq *o, bool complete)
{
	if (!o->thread_started)
		return;
	/* The release pairs with pipe_read's acquire: EOF after this means "whole body". */
	atomic_store_explicit(&o->complete, complete, memory_order_release);
	close(o->pipefd[1]);
	o->pipefd[1] = -1;
	pthread_join(o->thread, NULL);
	o->thread_started = false;
}

/* ---- GET ------------------------------------------------------------------------------------ */

struct getctx {
	dw_bbuf *b;
	uint64_t left; /* bytes still to send */
};

static ssize_t get_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct getctx *g = cls;
	ssize_t n;

	(void)pos;
	if (g->left == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (max > g->left)
		max = (size_t)g->left;
	n = dw_bbuf_read(g->b, buf, max);
	if (n <= 0)
		return MHD_CONTENT_READER_END_WITH_ERROR; /* short body: the client can tell */
	g->left -= (uint64_t)n;
	return n;
}

static void get_free(void *cls)
{
	struct getctx *g = cls;

	dw_bbuf_close(g->b);
	dw_free(g);
}

/*
 * Parse a single "bytes=a-b", "bytes=a-" or "bytes=-n" against size. Returns 1 with [*off,
 * *len) for a satisfiable range, 0 to ignore the header (absent, several ranges, or not
 * bytes), -1 when unsatisfiable (416).
 */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	unsigned long long a = 0, b = 0;
	char *end;

	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	h += 6;
	if (*h == '-') {
		errno = 0;
		b = strtoull(h + 1, &end, 10);
		if (errno || end == h + 1 || *end)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*off = b >= size ? 0 : size - b;
		*len = size - *off;
		return 1;
	}
	errno = 0;
	a = strtoull(h, &end, 10);
	if (errno || end == h || *end != '-')
		return 0;
	h = end + 1;
	if (*h) {
		b = strtoull(h, &end, 10);
		if (errno || end == h || *end || b < a)
			return 0;
	} else {
		b = size ? size - 1 : 0;
	}
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*off = a;
	*len = b - a + 1;
	return 1;
}

static enum MHD_Result do_get(struct dw__server *s, struct MHD_Connection *c, const char *key,
			      size_t klen, bool head)
{
	const char *rh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
	struct MHD_Response *resp;
	dw_db_object info;
	struct getctx *g;
	uint64_t off = 0, len;
	char etag[70], sha[65], when[64], cr[96];
	time_t t;
	struct tm tm;
	int rng, rc, status = 200;
	enum MHD_Result ret;

	rc = dw_db_stat(s->db, NULL, key, klen, &info);
	if (rc < 0)
		return send_db_error(s, c, rc, dw_db_errmsg(s->db));
	len = info.size;
	rng = parse_range(rh, info.size, &off, &len);
	if (rng < 0) {
		snprintf(cr, sizeof(cr), "bytes */%" PRIu64, info.size);
		dw_db_object_clear(&info);
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
		ret = MHD_queue_response(c, 416, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	g = dw_calloc(1, sizeof(*g));
	if (!g) {
		dw_db_object_clear(&info);
		return MHD_NO;
	}
	g->left = len;
	if (!head) {
		dw_db_object again;

		rc = rng == 1 ? dw_db_get_range(s->db, NULL, key, klen, off, &again, &g->b)
			      : dw_db_get(s->db, NULL, key, klen, &again, &g->b);
		if (rc == 0) {
			/* The object may have changed since the stat: describe what is sent. */
			dw_db_object_clear(&info);
			info = again;
			if (rng != 1)
				g->left = len = info.size;
			else if (off + len > info.size)
				g->left = len = off < info.size ? info.size - off : 0;
		} else {
			dw_free(g);
			dw_db_object_clear(&info);
			return send_db_error(s, c, rc, dw_db_errmsg(s->db));
		}
	}
	resp = MHD_create_response_from_callback(len, 64 * 1024, get_reader, g, get_free);
	if (!resp) {
		get_free(g);
		dw_db_object_clear(&info);
		return MHD_NO;
	}
	dw__sha256_hex(info.sha256, sha);
	snprintf(etag, sizeof(etag), "\"%s\"", sha);
	t = (time_t)(info.modified_ns / DW_NS_PER_SEC);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, info.content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, when);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	if (rng == 1) {
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
			 off + len - 1, info.size);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
		status = 206;
	}
	dw_db_object_clear(&info);
	ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		dw__http_count(s, status);
	return ret;
}

/* ---- listing and health ------------------------------------------------------------------- */

static enum MHD_Result do_list(struct dw__server *s, struct MHD_Connection *c)
{
	const char *prefix = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prefix");
	const char *limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "page_token");
	dw_db_list_query q = { 0 };
	dw_db_page page;
	cJSON *j;
	uint64_t n = 0;
	int rc;

	if (limit && (dw_parse_u64(limit, &n) < 0 || n == 0 || n > DW_DB_PAGE_MAX))
		return send_error(s, c, 400, "bad_request", "limit must be 1..1000");
	if (prefix && strlen(prefix) > DW_DB_KEY_MAX)
		return send_error(s, c, 400, "bad_request", "prefix is longer than 1024 bytes");
	q.prefix = prefix;
	q.prefix_len = prefix ? strlen(prefix) : 0;
	q.limit = (size_t)n;
	q.page_token = token && *token ? token : NULL;
	rc = dw_db_list(s->db, NULL, &q, &page);
	if (rc < 0)
		return send_db_error(s, c, rc, dw_db_errmsg(s->db));
	j = dw__db_page_json(&page);
	dw_db_page_clear(&page);
	return send_json(s, c, 200, j);
}

static enum MHD_Result do_health(struct dw__server *s, struct MHD_Connection *c)
{
	const char *tm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms");
	dw_db_health h[DW_DB_STRATEGIES_MAX];
	uint64_t t = 0;
	size_t n;
	bool ok = true;
	cJSON *j;
	int rc;

	if (tm && (dw_parse_u64(tm, &t) < 0 || t == 0 || t > 600000))
		return send_error(s, c, 400, "bad_request", "timeout_ms must be 1..600000");
	rc = dw_db_health_check(s->db, t, h, DW_DB_STRATEGIES_MAX, &n);
	if (rc < 0)
		return send_db_error(s, c, rc, dw_strerror(rc));
	j = dw__db_health_json(h, n, &ok);
	return send_json(s, c, ok ? 200 : 503, j);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

enum MHD_Result dw__objects_request(struct dw__server *s, struct MHD_Connection *c, const char *url,
				    const char *method, const char *upload, size_t *upload_size,
				    struct dw__objreq **state)
{
	struct dw__objreq *o = *state;
	const char *key = NULL;
	size_t klen = 0;

	if (strncmp(url, OBJ_PREFIX "/", sizeof(OBJ_PREFIX)) == 0) {
		key = url + sizeof(OBJ_PREFIX);
		klen = strlen(key);
	}
	if (!o) {
		/* First call: headers only. */
		o = dw_calloc(1, sizeof(*o));
		if (!o)
			return MHD_NO;
		o->pipefd[0] = o->pipefd[1] = -1;
		*state = o;
		if (!s->db)
			return MHD_YES; /* answered below, once the body (if any) is read */
		if (strcmp(method, "PUT") == 0 && key) {
			if (dw_db_key_check(key, klen) < 0)
				return MHD_YES;
			memcpy(o->key, key, klen);
			o->klen = klen;
			if (put_begin(s, c, o) < 0)
				return MHD_NO;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (o->mode == 1)
			put_feed(o, upload, *upload_size);
		*upload_size = 0; /* other methods: a body is ignored */
		return MHD_YES;
	}
	/* The whole request is in. */
	if (!s->db)
		return send_error(s, c, 503, "unavailable", "database storage is not open");
	if (strcmp(url, "/v1/db/health") == 0) {
		if (strcmp(method, "GET") != 0)
			return send_error(s, c, 405, "method_not_allowed", "use GET");
		return do_health(s, c);
	}
	if (!key) {
		if (strcmp(method, "GET") != 0)
			return send_error(s, c, 405, "method_not_allowed",
					  "use GET to list objects");
		return do_list(s, c);
	}
	if (dw_db_key_check(key, klen) < 0)
		return send_error(s, c, 400, "bad_key", "a key is 1..1024 bytes of UTF-8");
	if (strcmp(method, "PUT") == 0) {
		put_finish(o, true);
		if (o->put_rc < 0)
			return send_db_error(s, c, o->put_rc, o->put_err);
		return send_json(s, c, 201, dw__db_object_json(&o->obj));
	}
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return do_get(s, c, key, klen, strcmp(method, "HEAD") == 0);
	if (strcmp(method, "DELETE") == 0) {
		int rc = dw_db_delete(s->db, NULL, key, klen);
		struct MHD_Response *resp;
		enum MHD_Result ret;

		if (rc < 0)
			return send_db_error(s, c, rc, dw_db_errmsg(s->db));
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		ret = MHD_queue_response(c, 204, resp);
		MHD_destroy_response(resp);
		if (ret == MHD_YES)
			dw__http_count(s, 204);
		return ret;
	}
	return send_error(s, c, 405, "method_not_allowed", "use GET, HEAD, PUT or DELETE");
}

void dw__objects_completed(struct dw__objreq *o)
{
	if (!o)
		return;
	put_finish(o, false);
	if (o->pipefd[0] >= 0)
		close(o->pipefd[0]);
	dw_db_object_clear(&o->obj);
	dw_free(o);
}
