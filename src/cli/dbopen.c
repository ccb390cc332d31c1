// SPDX-License-Identifier: MIT
/*
 * Opening the node's database storage for the `object` and `db` commands, the same way
 * `dwscale serve` does: data directory from --data, $DWSCALE_DATA or ./var; strategies from the
 * [db] section of --config (strategies = NAME=URI, NAME=URI ...), else one SQLite strategy
 * "main" at DATA/objects.db; listing tokens signed with DATA/token.secret, so a token printed by
 * one command (or the daemon) is accepted by the next.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/dbopen.h"
#include "dwscale/config.h"

static int make_dir(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

void dw__dbopen_close(struct dw__dbopen *o)
{
	dw_db_close(o->db);
	dw_token_keyring_close(o->kr);
	o->db = NULL;
	o->kr = NULL;
}

int dw__dbopen(const struct dw__dbopen_args *a, struct dw__dbopen *o)
{
	char path[PATH_MAX], err[768], *specs = NULL;
	const char *data = a->data, *env = getenv("DWSCALE_DATA");
	dw_config *cfg = NULL;
	dw_db_config dc;
	int rc, ret = DW_EXIT_ERROR;

	memset(o, 0, sizeof(*o));
	if (!data)
		data = env && *env ? env : "./var";
	if (snprintf(o->objects_uri, sizeof(o->objects_uri), "main=sqlite:%s/objects.db", data) >=
	    (int)sizeof(o->objects_uri)) {
		fprintf(stderr, "dwscale: data directory path is too long\n");
		return DW_EXIT_USAGE;
	}
	rc = make_dir(data);
	if (rc < 0) {
		fprintf(stderr, "dwscale: cannot create data directory %s: %s\n", data,
			dw_strerror(rc));
		return DW_EXIT_ERROR;
	}
	snprintf(path, sizeof(path), "%s/token.secret", data);
	rc = dw_token_keyring_open_ex(path, NULL, &o->kr, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dwscale: %s\n", err[0] ? err : dw_strerror(rc));
		return rc == DW_ECONFIG ? DW_EXIT_USAGE : DW_EXIT_ERROR;
	}
	dw_db_config_default(&dc);
	dc.tokens = o->kr;
	if (a->config) {
		const char *v;

		rc = dw_config_load(a->config, &cfg, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "dwscale: %s\n", err);
			ret = DW_EXIT_USAGE;
			goto out;
		}
		v = dw_config_get(cfg, "db", "strategies");
		if (v) {
			char *save = NULL;

			specs = dw_strdup(v);
			if (!specs)
				goto out;
			for (char *t = strtok_r(specs, ", \t", &save); t;
			     t = strtok_r(NULL, ", \t", &save)) {
				if (dc.n_strategies == DW_DB_STRATEGIES_MAX) {
					dw_config_error(cfg, "db", "strategies", err, sizeof(err),
							"more than %d strategies",
							DW_DB_STRATEGIES_MAX);
					fprintf(stderr, "dwscale: %s\n", err);
					ret = DW_EXIT_USAGE;
					goto out;
				}
				dc.strategies[dc.n_strategies++] = t;
			}
		}
	}
	if (a->db && strchr(a->db, ':')) {
		/* --db URI: that backend alone, named "main" */
		if (snprintf(o->objects_uri, sizeof(o->objects_uri), "main=%s", a->db) >=
		    (int)sizeof(o->objects_uri)) {
			fprintf(stderr, "dwscale: --db URI is too long\n");
			ret = DW_EXIT_USAGE;
			goto out;
		}
		dc.strategies[0] = o->objects_uri;
		dc.n_strategies = 1;
	} else {
		if (dc.n_strategies == 0) {
			dc.strategies[0] = o->objects_uri;
			dc.n_strategies = 1;
		}
		o->strategy = a->db; /* a name, or NULL for the first */
	}
	rc = dw_db_open(&dc, &o->db, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dwscale: %s\n", err);
		ret = rc == DW_ECONFIG ? DW_EXIT_USAGE : DW_EXIT_UNREACHABLE;
		goto out;
	}
	ret = DW_EXIT_OK;
out:
	dw_free(specs); /* the strategies were copied by dw_db_open */
	dw_config_close(cfg);
	if (ret != DW_EXIT_OK)
		dw__dbopen_close(o);
	return ret;
}

int dw__db_exit(dw_db *db, const char *what, int rc)
{
	const char *msg = dw_db_errmsg(db);

	fprintf(stderr, "dwscale: %s: %s\n", what, msg && *msg ? msg : dw_strerror(rc));
	switch (rc) {
	case DW_ENOTFOUND:
		return DW_EXIT_NOTFOUND;
	case DW_EBADKEY:
	case DW_ETOKEN:
	case DW_ELIMIT:
	case DW_ETOOBIG:
		return DW_EXIT_USAGE;
	case DW_EBACKEND:
	case DW_ETIMEDOUT:
		return DW_EXIT_UNREACHABLE;
	default:
		return DW_EXIT_ERROR;
	}
}
