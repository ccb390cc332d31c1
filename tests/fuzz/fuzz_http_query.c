// SPDX-License-Identifier: MIT
/*
 * Fuzz target for the untrusted request parts `dwscale serve` parses itself: the limits document
 * of PUT /v1/subsystems/NAME/limits and the Authorization header (src/server/query.c).
 *
 * query.c is compiled into this target directly: it belongs to the dwscale executable, not to
 * libdwscale, and it depends only on the public API and cJSON.
 *
 * Input: the first byte picks the parser (even: limits JSON, odd: bearer header), the rest is
 * the request part. Besides not crashing, the target checks what the routes rely on: a parsed
 * document has 1..DW_SERVER_LIMIT_CHANGES_MAX changes with well-formed, distinct names, and a
 * bearer token is non-empty, inside the header and free of spaces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_limits(const char *body, size_t len)
{
	dw_limit_change *ch = NULL;
	char *arena = NULL, err[256];
	size_t n = 0;
	int rc = dw__parse_limits_json(body, len, &ch, &n, &arena, err, sizeof(err));

	if (rc < 0) {
		if (ch || arena || n || err[0] == '\0')
			abort();
		return;
	}
	if (n == 0 || n > DW_SERVER_LIMIT_CHANGES_MAX || !ch || !arena)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (!limit_name_ok(ch[i].name))
			abort();
		for (size_t k = 0; k < i; k++) {
			if (strcmp(ch[k].name, ch[i].name) == 0)
				abort();
		}
		if (!ch[i].str && !isfinite(ch[i].value))
			abort();
	}
	dw_free(ch);
	dw_free(arena);
}

static void check_bearer(const char *hdr, size_t len)
{
	size_t tl;
	const char *tok = dw__parse_bearer(hdr, &tl);

	if (!tok)
		return;
	if (tl == 0 || tok < hdr || tok + tl > hdr + len)
		abort();
	for (size_t i = 0; i < tl; i++) {
		if (tok[i] == ' ' || tok[i] == '\t' || tok[i] == '\0')
			abort();
	}
	if (!dw__token_equal(tok, tl, tok, tl))
		abort();
	if (tl > 1 && dw__token_equal(tok, tl - 1, tok, tl))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;

	if (size == 0)
		return 0;
	buf = malloc(size); /* NUL-terminated copy of the rest, as MHD hands headers over */
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	if (data[0] & 1)
		check_bearer(buf, strlen(buf));
	else
		check_limits(buf, size - 1);
	free(buf);
	return 0;
}
