// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the dwscale commands and the daemon: a capped string buffer (every response,
 * table and document the command builds goes through one, so none can grow without bound),
 * usage-error printing, and the mapping from error codes to exit codes.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "dwscale/core.h"

void dw__sb_init(struct dw__sbuf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

static int sb_reserve(struct dw__sbuf *b, size_t extra)
{
	size_t need, ncap;
	char *np;

	if (extra > b->max || b->len > b->max - extra)
		return DW_ETOOBIG;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	np = dw_realloc(b->p, ncap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = ncap;
	return 0;
}

int dw__sb_append(struct dw__sbuf *b, const void *data, size_t n)
{
	int rc = sb_reserve(b, n);

	if (rc < 0)
		return rc;
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int dw__sb_puts(struct dw__sbuf *b, const char *s)
{
	return dw__sb_append(b, s, strlen(s));
}

int dw__sb_printf(struct dw__sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = sb_reserve(b, (size_t)n);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *dw__sb_steal(struct dw__sbuf *b, size_t *len)
{
	char *p = b->p;

	if (!p)
		p = dw_strdup("");
	if (len)
		*len = p ? b->len : 0;
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

void dw__sb_free(struct dw__sbuf *b)
{
	dw_free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

bool dw__wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return true;
	}
	return false;
}

int dw__usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dwscale %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'dwscale help %s' for usage.\n", cmd);
	return DW_EXIT_USAGE;
}

int dw__exit_for_rc(int rc)
{
	switch (rc) {
	case 0:
		return DW_EXIT_OK;
	case DW_EUSAGE:
	case DW_ECONFIG:
		return DW_EXIT_USAGE;
	case DW_ENOTFOUND:
		return DW_EXIT_NOTFOUND;
	case DW_EAUTH:
	case DW_ELIMIT:
		return DW_EXIT_REFUSED;
	case DW_EBACKEND:
	case DW_ETIMEDOUT:
	case DW_EPROTO:
		return DW_EXIT_UNREACHABLE;
	default:
		/* -errno from connect/send/recv: the server is not there or went away */
		if (rc < 0 && rc > -1000)
			return DW_EXIT_UNREACHABLE;
		return DW_EXIT_ERROR;
	}
}

int dw__exit_for_status(int status)
{
	if (status >= 200 && status < 300)
		return DW_EXIT_OK;
	if (status == 404)
		return DW_EXIT_NOTFOUND;
	if (status == 400 || status == 401 || status == 403 || status == 413)
		return DW_EXIT_REFUSED;
	if (status >= 500)
		return DW_EXIT_UNREACHABLE;
	return DW_EXIT_ERROR;
}
