// SPDX-License-Identifier: MIT
/*
 * libmicrohttpd glue for `dwscale serve`: turns MHD's incremental access-handler calls into one
 * complete request for dw__route(), with the request body capped, and sends the reply.
 *
 * Threads and locking: MHD runs one thread per connection (plus its listening thread), because
 * object transfers block: an upload waits on the database through a pipe and a download waits
 * on its bounded buffer (objects.c), and a blocked thread must stall only its own connection.
 * HTTP_CONNECTION_LIMIT bounds the threads. A request's struct req is touched by its
 * connection's thread only and needs no lock. Shared state lives in struct dw__server and is only
 * C11 atomics (counters, the in-flight count) read by /metrics and by dw__http_stop with
 * relaxed/acquire ordering.
 *
 * Body cap: a declared Content-Length over max_body is answered 413 as soon as the headers are
 * in, before any of the body is read (MHD then closes the connection instead of reading the
 * rest). A chunked body is counted as it streams; past the cap its bytes are dropped as they
 * arrive (never stored), and 413 is sent once the client has finished sending, or at once when
 * MHD accepts a reply mid-upload.
 *
 * Shutdown: dw__http_stop quiesces the listening socket (no new connections), waits until the
 * requests in progress have completed (bounded by a grace period), then stops the daemon.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "dwscale/core.h"
#include "server/server.h"

#define HTTP_CONNECTION_LIMIT	256
#define HTTP_CONNECTION_TIMEOUT 30 /* seconds idle before MHD closes a connection */
#define HTTP_CONN_MEMORY	(64u << 10)

struct req {
	struct dw__objreq *obj; /* object routes stream their bodies (objects.c) */
	bool is_obj;
	struct dw__sbuf body;
	bool has_body;
	bool too_big;	/* over max_body: drop the rest, answer 413 */
	bool responded; /* a reply was queued early */
};

void dw__http_count(struct dw__server *s, int status)
{
	int cls = status / 100 - 1;

	if (cls >= 0 && cls < DW_SERVER_STATUS_CLASSES)
		atomic_fetch_add_explicit(&s->requests[cls], 1, memory_order_relaxed);
	if (status == 413)
		atomic_fetch_add_explicit(&s->bodies_refused, 1, memory_order_relaxed);
	if (status == 401)
		atomic_fetch_add_explicit(&s->auth_failures, 1, memory_order_relaxed);
}

enum MHD_Result dw__http_send_reply(struct dw__server *s, struct MHD_Connection *c,
				    struct dw__reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t len;
	char *body = dw__sb_steal(&r->body, &len);

	if (!body)
		return MHD_NO;
	resp = MHD_create_response_from_buffer_with_free_callback(len, body, dw_free);
	if (!resp) {
		dw_free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				r->content_type ? r->content_type : "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->status == 413) /* the rest of the body is not wanted: end the connection */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (r->status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"dwscale\"");
	ret = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		dw__http_count(s, r->status);
	return ret;
}

static enum MHD_Result reply_error(struct dw__server *s, struct MHD_Connection *c, int status,
				   const char *name, const char *msg)
{
	struct dw__reply r = { 0 };
	enum MHD_Result ret;

	dw__sb_init(&r.body, 4096);
	dw__reply_error(&r, status, name, "%s", msg);
	ret = dw__http_send_reply(s, c, &r);
	dw__sb_free(&r.body);
	return ret;
}

static void too_big_message(struct dw__server *s, char *buf, size_t cap)
{
	snprintf(buf, cap, "request body is larger than the limit of %zu bytes", s->max_body);
}

/* First call for a request: headers are in, no body has been read yet. */
static enum MHD_Result on_headers(struct dw__server *s, struct MHD_Connection *c, struct req *r)
{
	const char *cl =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	char msg[128];

	if (cl) {
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno || end == cl || *end || cl[0] == '-')
			return MHD_YES; /* MHD itself rejects a malformed Content-Length */
		if (n > s->max_body) {
			too_big_message(s, msg, sizeof(msg));
			r->too_big = true;
			if (reply_error(s, c, 413, "too_large", msg) == MHD_YES)
				r->responded = true;
		}
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct dw__server *s = cls;
	struct req *r = *con_cls;
	struct dw__reply rep = { 0 };
	enum MHD_Result ret;
	char msg[128];

	if (!r) {
		r = dw_calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		dw__sb_init(&r->body, s->max_body);
		*con_cls = r;
		atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
		if (dw__objects_match(url)) {
			/* Object bodies are streamed, not capped by max_body. */
			r->is_obj = true;
			return dw__objects_request(s, c, url, method, upload_data, upload_data_size,
						   &r->obj);
		}
		return on_headers(s, c, r);
	}
	if (r->is_obj)
		return dw__objects_request(s, c, url, method, upload_data, upload_data_size,
					   &r->obj);
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0; /* consumed (stored or dropped) */
		if (r->too_big || r->responded)
			return MHD_YES;
		r->has_body = true;
		if (dw__sb_append(&r->body, upload_data, n) < 0) {
			r->too_big = true;
			dw__sb_free(&r->body);
			too_big_message(s, msg, sizeof(msg));
			if (reply_error(s, c, 413, "too_large", msg) == MHD_YES)
				r->responded = true;
		}
		return MHD_YES;
	}
	if (r->responded)
		return MHD_YES;
	if (r->too_big) {
		too_big_message(s, msg, sizeof(msg));
		r->responded = true;
		return reply_error(s, c, 413, "too_large", msg);
	}
	dw__sb_init(&rep.body, DW_SERVER_RESPONSE_MAX);
	dw__route(s, method, url, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
		  r->has_body ? (r->body.p ? r->body.p : "") : NULL, r->body.len, &rep);
	r->responded = true;
	if (dw_log_get_level() <= DW_LOG_DEBUG) {
		char q[300];

		dw_log(DW_LOG_DEBUG, "http", "request", "method=%s path=%s status=%d bytes=%zu",
		       method, dw_log_quote(url, q, sizeof(q)), rep.status, rep.body.len);
	}
	ret = dw__http_send_reply(s, c, &rep);
	dw__sb_free(&rep.body);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct dw__server *s = cls;
	struct req *r = *con_cls;

	if (!r)
		return;
	dw__objects_completed(r->obj);
	dw__sb_free(&r->body);
	dw_free(r);
	*con_cls = NULL;
	atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_release);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512], q[600];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	dw_log(DW_LOG_WARN, "http", "mhd", "msg=%s", dw_log_quote(msg, q, sizeof(q)));
}

int dw__http_start(struct dw__server *s, const void *addr, size_t addrlen, unsigned threads,
		   struct MHD_Daemon **out)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	struct MHD_Daemon *d;

	(void)addrlen;
	(void)threads; /* one thread per connection; see the header */
	*out = NULL;
	if (((const struct sockaddr *)addr)->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
			     on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTION_LIMIT,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONNECTION_TIMEOUT,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
	if (!d)
		return errno ? -errno : -EADDRINUSE;
	*out = d;
	return 0;
}

int dw__http_port(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);

	return info ? (int)info->port : -1;
}

void dw__http_stop(struct dw__server *s, struct MHD_Daemon *d, int grace_ms)
{
	MHD_socket lsock;
	uint64_t deadline;

	if (!d)
		return;
	lsock = MHD_quiesce_daemon(d);
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	deadline = dw_clock_now(NULL) + (uint64_t)grace_ms * DW_NS_PER_MS;
	while (atomic_load_explicit(&s->in_flight, memory_order_acquire) > 0 &&
	       dw_clock_now(NULL) < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	if (atomic_load_explicit(&s->in_flight, memory_order_acquire) > 0)
		dw_log(DW_LOG_WARN, "serve", "shutdown_forced", "in_flight=%ld",
		       atomic_load_explicit(&s->in_flight, memory_order_acquire));
	MHD_stop_daemon(d);
}
