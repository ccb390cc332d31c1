/* SPDX-License-Identifier: MIT */
/*
 * Private interface of `dwscale serve`: the daemon state shared by its files.
 *
 *   serve.c        options, configuration, data directory, lifecycle, signals
 *   admin_token.c  the admin token file (created once, reused) and constant-time comparison
 *   http.c         libmicrohttpd glue: request bodies with a size cap, JSON errors, counters
 *   routes.c       the route table and the handlers; falls through to the routers below
 *   io_routes.c    GET /v1/io: every device's scheduler, per tier; /v1/io/quotas/CALLER
 *   backup_routes.c  POST/GET /v1/backups, GET /v1/backups/jobs
 *   fabric_routes.c  the [fabric] node's thread, GET /v1/fabric/nodes and /v1/fabric/events
 *   metrics.c      rendering: Prometheus text exposition and the subsystems JSON document
 *   query.c        parsing of untrusted request parts (limits JSON, backup request, bearer
 *                  header); fuzzed
 *
 * A subsystem that is not running (its pointer below is NULL) answers its paths with 404
 * {"error": "not_configured", "message": "<name> is not configured: set ..."}.
 */
#ifndef DWSCALE_SERVER_H
#define DWSCALE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "cli/cli.h"
#include "cli/fabricjson.h"
#include "dwscale/backup.h"
#include "dwscale/fabric.h"
#include "dwscale/io.h"
#include "dwscale/scalable.h"

#define DW_SERVER_MAX_BODY_DEFAULT   (1u << 20)	 /* admin JSON bodies are tiny; 1 MiB is generous */
#define DW_SERVER_RESPONSE_MAX	     (16u << 20) /* cap on any rendered response */
#define DW_SERVER_TOKEN_MAX	     256
#define DW_SERVER_LIMIT_CHANGES_MAX  64	  /* limits per PUT; a subsystem has a handful */
#define DW_SERVER_BACKUP_SOURCES_MAX 64	  /* sources per POST /v1/backups, as the CLI's limit */
#define DW_SERVER_BACKUP_PATH_MAX    4096 /* a source path, NUL included (dw_backup_info) */
#define DW_SERVER_IO_PATHS	     2	  /* directories held open on the io manager */

/* Status classes counted for dwscale_http_requests_total{code="2xx"}: index status / 100 - 1. */
#define DW_SERVER_STATUS_CLASSES 5

struct dw__objreq;
struct MHD_Connection;
struct dw__fabric_node;
struct dw_config;

/* A directory of the node (data, backup repository) held open on the io manager, so that
 * GET /v1/io can name what lives on each device and show its class and probe results. */
struct dw__io_path {
	const char *what; /* "data", "backup_repo" */
	dw_io_file *f;
};

struct dw__server {
	dw_registry *reg;
	struct dw_db *db; /* database storage behind /v1/objects; NULL if it failed to open */
	/* Set before the HTTP daemon starts and cleared only after it stopped: request threads
	 * read them without a lock; each subsystem is thread-safe itself. NULL = not running. */
	dw_io *io;
	struct dw__io_path io_paths[DW_SERVER_IO_PATHS];
	dw_backup_mgr *backup;
	dw_backup_repo *backup_repo; /* the same repository, for listing */
	struct dw__fabric_node *fabric;
	char admin_token[DW_SERVER_TOKEN_MAX + 1];
	size_t admin_token_len;
	size_t max_body;
	uint64_t start_ns;
	/* updated by request threads, read by /metrics */
	_Atomic long in_flight;
	_Atomic uint64_t requests[DW_SERVER_STATUS_CLASSES];
	_Atomic uint64_t bodies_refused; /* 413s */
	_Atomic uint64_t auth_failures;	 /* 401s */
};

/* A response being built by a handler. */
struct dw__reply {
	int status;
	const char *content_type;
	const char *allow; /* Allow header for 405, else NULL */
	struct dw__sbuf body;
};

/* http.c */
struct MHD_Daemon;
int dw__http_start(struct dw__server *s, const void *addr, size_t addrlen, unsigned threads,
		   struct MHD_Daemon **out);
/* Stop accepting, wait up to grace_ms for requests in progress, then stop. */
void dw__http_stop(struct dw__server *s, struct MHD_Daemon *d, int grace_ms);
/* Port the daemon is bound to (useful with port 0). */
int dw__http_port(struct MHD_Daemon *d);
/* Queue a built reply (and count it); returns an MHD_Result. */
enum MHD_Result dw__http_send_reply(struct dw__server *s, struct MHD_Connection *c,
				    struct dw__reply *r);
/* Count a reply queued by other means in dwscale_http_requests_total. */
void dw__http_count(struct dw__server *s, int status);

/* objects.c: /v1/objects and /v1/db/health, streamed (see the file's header). */
bool dw__objects_match(const char *url);
enum MHD_Result dw__objects_request(struct dw__server *s, struct MHD_Connection *c, const char *url,
				    const char *method, const char *upload, size_t *upload_size,
				    struct dw__objreq **state);
void dw__objects_completed(struct dw__objreq *o);

/* routes.c: dispatch one complete request. body may be NULL (no body). auth is the raw
 * Authorization header or NULL. Always fills r (never fails: errors become JSON replies). */
void dw__route(struct dw__server *s, const char *method, const char *path, const char *auth,
	       const char *body, size_t body_len, struct dw__reply *r);
/* Fill r with {"error": name, "message": msg}. */
void dw__reply_error(struct dw__reply *r, int status, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* routes.c: true if auth carries the admin token; else fills r with 401. */
bool dw__authorized(struct dw__server *s, const char *auth, struct dw__reply *r);
/* Fill r with 404 not_configured: "<what> is not configured: <hint>". */
void dw__reply_not_configured(struct dw__reply *r, const char *what, const char *hint);
/* Fill r with status and the JSON document j (deleted here; NULL is a 500: out of memory). */
struct cJSON;
void dw__reply_json(struct dw__reply *r, int status, struct cJSON *j);

/*
 * Per-subsystem routers, tried in turn by dw__route before its 404. Each returns false if path is
 * not one of its own, else fills r and returns true.
 */
bool dw__io_route(struct dw__server *s, const char *method, const char *path, const char *auth,
		  const char *body, size_t body_len, struct dw__reply *r);
bool dw__backup_route(struct dw__server *s, const char *method, const char *path, const char *auth,
		      const char *body, size_t body_len, struct dw__reply *r);
bool dw__fabric_route(struct dw__server *s, const char *method, const char *path,
		      struct dw__reply *r);

/* fabric_routes.c: the [fabric] section, and the node run on its own thread. */
struct dw__fabric_opts {
	bool enabled;	      /* a [fabric] section is present */
	dw_fabric_config cfg; /* node_id 0 = kept in DATA/fabric.id */
	dw_fabric_addr seeds[16];
	size_t nseeds;
};
/* Read [fabric] of cfg into o (keys: bind, key_file, join, topology, mode, interval, missed,
 * node_id). DW_ECONFIG with "file:line: [fabric] key: ..." in err. */
int dw__fabric_config(const struct dw_config *cfg, struct dw__fabric_opts *o, char *err,
		      size_t errlen);
/* Bind, open the node, register it in reg as "fabric", join, start its thread. */
int dw__fabric_start(struct dw__fabric_opts *o, const char *data_dir, dw_registry *reg,
		     struct dw__fabric_node **out, char *err, size_t errlen);
/* Stop the thread, unregister, close. NULL-safe. */
void dw__fabric_stop(struct dw__fabric_node *n, dw_registry *reg);

/* metrics.c */
int dw__render_prometheus(struct dw__server *s, struct dw__sbuf *out);
/* The whole list ({"subsystems": [...]}) when name is NULL, else one subsystem's object;
 * DW_ENOTFOUND if name is not registered. */
int dw__render_subsystems_json(dw_registry *reg, const char *name, struct dw__sbuf *out);
/* Fill the limits of subsystem name into the (name, numeric?) table for request validation. */
int dw__limit_names(dw_registry *reg, const char *name, char names[][33], bool *is_string,
		    size_t cap, size_t *n);

/* query.c: parse a limits body {"name": number|string, ...}. On success *changes (dw_malloc'ed
 * array; names and strings point into *arena, also dw_malloc'ed) holds *n >= 1 changes. On
 * failure returns DW_EUSAGE with a message in err. */
int dw__parse_limits_json(const char *body, size_t len, dw_limit_change **changes, size_t *n,
			  char **arena, char *err, size_t errlen);
/* query.c: parse a POST /v1/backups body {"sources": [...], "type": "..."}. On success req
 * holds 1..DW_SERVER_BACKUP_SOURCES_MAX distinct absolute paths (pointing into *arena,
 * dw_malloc'ed) and the type (AUTO when absent). On failure returns DW_EUSAGE (or -ENOMEM) with a
 * message in err, req empty and *arena NULL. */
struct dw__backup_request {
	const char *sources[DW_SERVER_BACKUP_SOURCES_MAX];
	size_t n;
	dw_backup_type type;
};
int dw__parse_backup_json(const char *body, size_t len, struct dw__backup_request *req,
			  char **arena, char *err, size_t errlen);
/* Extract the token of "Bearer TOKEN" (case-insensitive scheme, spaces trimmed); NULL if the
 * header is absent or malformed. Returns a pointer into hdr and the token's length. */
const char *dw__parse_bearer(const char *hdr, size_t *len);
/* Constant-time equality of a presented token with the expected one (time depends only on the
 * expected length). */
bool dw__token_equal(const char *given, size_t given_len, const char *want, size_t want_len);

/* admin_token.c: read path, or create it (0600, random, durable) if missing. */
int dw__admin_token_load(const char *path, char *out, size_t cap, size_t *len, bool *created,
			 char *err, size_t errlen);

#endif
