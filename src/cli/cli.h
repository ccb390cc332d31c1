/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the dwscale command: the command table's entry points, exit codes, and
 * the small helpers (bounded string buffer, HTTP/1.1 client) that commands and the daemon share.
 *
 * Every command is one function `int dw__cmd_<name>(int argc, char **argv)` in its own
 * src/cli/cmd_<name>.c (serve lives in src/server/serve.c); argv[0] is the command name, and the
 * return value is the process exit status (one of enum dw_exit). A new command is one prototype
 * here and one line in the table in main.c.
 */
#ifndef DWSCALE_CLI_H
#define DWSCALE_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Exit codes: documented in `dwscale help`; never renumbered. */
enum dw_exit {
	DW_EXIT_OK = 0,		 /* success */
	DW_EXIT_ERROR = 1,	 /* any other failure */
	DW_EXIT_USAGE = 2,	 /* bad command line or configuration */
	DW_EXIT_NOTFOUND = 3,	 /* the named thing does not exist */
	DW_EXIT_UNREACHABLE = 4, /* server or backend unreachable */
	DW_EXIT_REFUSED = 5,	 /* the server refused: bad token or invalid value */
};

/* ---- commands --------------------------------------------------------------------------- */

typedef int (*dw__cmd_fn)(int argc, char **argv);

struct dw__cmd {
	const char *name;
	dw__cmd_fn fn;
	const char *summary; /* one line for the command list */
	const char *usage;   /* full help text printed by `dwscale help NAME` and NAME --help */
};

/* The command table (main.c), ending with a NULL name. */
extern const struct dw__cmd dw__commands[];
const struct dw__cmd *dw__cmd_find(const char *name);

int dw__cmd_help(int argc, char **argv);
int dw__cmd_status(int argc, char **argv);
int dw__cmd_serve(int argc, char **argv);
int dw__cmd_backup(int argc, char **argv);
int dw__cmd_object(int argc, char **argv);
int dw__cmd_db(int argc, char **argv);
int dw__cmd_fabric(int argc, char **argv);
int dw__cmd_io(int argc, char **argv);

/* Print the usage of a command to stdout (help) or stderr (usage errors). */
void dw__cmd_print_usage(const struct dw__cmd *cmd, bool to_stderr);
/* True if argv has -h or --help before a "--". */
bool dw__wants_help(int argc, char **argv);
/* "dwscale NAME: message" on stderr, then a hint to run `dwscale help NAME`; returns 2. */
int dw__usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- bounded string buffer -------------------------------------------------------------- */

/*
 * A growable byte buffer with a hard cap (max). Appends past the cap fail with DW_ETOOBIG and
 * leave the content as it was. The content is always NUL-terminated (not counted in len).
 */
struct dw__sbuf {
	char *p;
	size_t len, cap, max;
};

void dw__sb_init(struct dw__sbuf *b, size_t max);
int dw__sb_append(struct dw__sbuf *b, const void *data, size_t n);
int dw__sb_puts(struct dw__sbuf *b, const char *s);
int dw__sb_printf(struct dw__sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the content to the caller (dw_free it); the buffer is left empty. */
char *dw__sb_steal(struct dw__sbuf *b, size_t *len);
void dw__sb_free(struct dw__sbuf *b);

/* ---- HTTP client -------------------------------------------------------------------------- */

/*
 * A tiny blocking HTTP/1.1 client for talking to `dwscale serve`: one request per connection
 * (Connection: close), http:// only, IPv4/IPv6 literal or resolvable host, bodies capped at
 * DW_HTTP_CLIENT_BODY_MAX. Content-Length, chunked and read-to-close bodies are understood.
 */
#define DW_HTTP_CLIENT_BODY_MAX (16u << 20)

struct dw__http_resp {
	int status;
	char *body; /* dw_malloc'ed, NUL-terminated */
	size_t body_len;
};

/*
 * Send method to base_url + path, with optional extra header lines (each ending in \r\n) and
 * body. Returns 0 with *resp filled (any HTTP status), or:
 *   DW_EUSAGE    the URL is malformed (err says why),
 *   -errno       the server could not be reached (err: "cannot reach URL: connection refused"),
 *   DW_ETIMEDOUT no answer within timeout_ms,
 *   DW_EPROTO    the answer is not HTTP we understand,
 *   DW_ETOOBIG   the answer is larger than the cap.
 */
int dw__http_request(const char *base_url, const char *method, const char *path,
		     const char *headers, const char *body, size_t body_len, int timeout_ms,
		     struct dw__http_resp *resp, char *err, size_t errlen);
void dw__http_resp_free(struct dw__http_resp *resp);

/* Parse the response bytes (status line, headers, body) of one HTTP/1.x exchange. */
int dw__http_parse_response(const char *buf, size_t len, struct dw__http_resp *resp);

/* Exit code that fits a dw__http_request failure or an HTTP status. */
int dw__exit_for_rc(int rc);
int dw__exit_for_status(int status);

#endif
