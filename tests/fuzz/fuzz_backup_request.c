// SPDX-License-Identifier: MIT
/*
 * Fuzz target for the body of POST /v1/backups, parsed by dw__parse_backup_json
 * (src/server/query.c, compiled in directly as in fuzz_http_query.c).
 *
 * Input: the whole body. Besides not crashing, the target checks what the route relies on before
 * it queues anything: a parsed request has 1..DW_SERVER_BACKUP_SOURCES_MAX sources, each an
 * absolute path shorter than DW_SERVER_BACKUP_PATH_MAX, all distinct, inside the arena, and a
 * known type; a refused one has a message, no sources and no arena.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dw__backup_request req;
	char *arena = NULL, err[600];
	char *buf = malloc(size + 1); /* the server hands over a NUL-terminated body */
	int rc;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	rc = dw__parse_backup_json(buf, size, &req, &arena, err, sizeof(err));
	if (rc < 0) {
		if (arena || req.n || err[0] == '\0')
			abort();
		free(buf);
		return 0;
	}
	if (!arena || req.n == 0 || req.n > DW_SERVER_BACKUP_SOURCES_MAX)
		abort();
	if (req.type != DW_BACKUP_AUTO && req.type != DW_BACKUP_FULL &&
	    req.type != DW_BACKUP_INCREMENTAL)
		abort();
	for (size_t i = 0; i < req.n; i++) {
		size_t l = strlen(req.sources[i]);

		if (l == 0 || req.sources[i][0] != '/' || l >= DW_SERVER_BACKUP_PATH_MAX)
			abort();
		for (size_t k = 0; k < i; k++) {
			if (strcmp(req.sources[k], req.sources[i]) == 0)
				abort();
		}
	}
	dw_free(arena);
	free(buf);
	return 0;
}
