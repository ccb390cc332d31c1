/* SPDX-License-Identifier: MIT */
/* Opening the node's database storage from the command line (see dbopen.c). */
#ifndef DWSCALE_CLI_DBOPEN_H
#define DWSCALE_CLI_DBOPEN_H

#include <limits.h>
#include <stdbool.h>

#include <cjson/cJSON.h>

#include "dwscale/db.h"
#include "dwscale/token.h"

struct dw__dbopen_args {
	const char *data;   /* --data or NULL */
	const char *config; /* --config or NULL */
	const char *db;	    /* --db NAME|URI or NULL */
};

struct dw__dbopen {
	dw_db *db;
	dw_token_keyring *kr;
	const char *strategy; /* NULL = the first */
	char objects_uri[PATH_MAX + 32];
};

/* Returns a dw_exit code; on success o holds an open db. */
int dw__dbopen(const struct dw__dbopen_args *a, struct dw__dbopen *o);
void dw__dbopen_close(struct dw__dbopen *o);
/* Print "dwscale: WHAT: detail" and return the exit code that fits rc. */
int dw__db_exit(dw_db *db, const char *what, int rc);

/* dbjson.c: the JSON forms shared by the commands and the daemon. */
void dw__rfc3339(uint64_t ns, char *buf, size_t cap);
void dw__sha256_hex(const uint8_t sha[32], char out[65]);
cJSON *dw__db_object_json(const dw_db_object *o);
cJSON *dw__db_page_json(const dw_db_page *page);
cJSON *dw__db_health_json(const dw_db_health *h, size_t n, bool *all_ok);

#endif
