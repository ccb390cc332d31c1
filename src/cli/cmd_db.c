// SPDX-License-Identifier: MIT
/*
 * dwscale db health: check every configured strategy at once, with a deadline. Exit 0 when all
 * are healthy, 4 when any failed or timed out; --json prints one document for scripts.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/dbopen.h"
#include "dwscale/config.h"

int dw__cmd_db(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "db", required_argument, NULL, 'D' },
		{ "data", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct dw__dbopen_args a = { 0 };
	struct dw__dbopen d;
	dw_db_health h[DW_DB_STRATEGIES_MAX];
	uint64_t timeout_ms = 0;
	bool json = false, all_ok = true;
	size_t n;
	int c, rc, ret;

	if (argc < 2 || strcmp(argv[1], "health") != 0)
		return dw__usage_error("db", "unknown or missing verb (only 'health')");
	optind = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'D':
			a.db = optarg;
			break;
		case 'd':
			a.data = optarg;
			break;
		case 'c':
			a.config = optarg;
			break;
		case 't': {
			double s;
			char *end;

			s = strtod(optarg, &end);
			if (*end == 's' && end[1] == '\0')
				end++;
			if (end == optarg || *end || !(s > 0) || s > 3600)
				return dw__usage_error("db",
						       "--timeout takes seconds, 0 < S <= 3600");
			timeout_ms = (uint64_t)ceil(s * 1000);
			break;
		}
		case 'j':
			json = true;
			break;
		default:
			return dw__usage_error("db", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return dw__usage_error("db", "unexpected argument '%s'", argv[optind]);
	ret = dw__dbopen(&a, &d);
	if (ret != DW_EXIT_OK)
		return ret;
	rc = dw_db_health_check(d.db, timeout_ms, h, DW_DB_STRATEGIES_MAX, &n);
	if (rc < 0) {
		ret = dw__db_exit(d.db, "db health", rc);
		goto out;
	}
	if (json) {
		cJSON *j = dw__db_health_json(h, n, &all_ok);
		char *text = cJSON_PrintUnformatted(j);

		if (text)
			printf("%s\n", text);
		cJSON_free(text);
		cJSON_Delete(j);
	} else {
		printf("%-12s %-10s %-12s %10s  %s\n", "STRATEGY", "KIND", "STATUS", "LATENCY",
		       "DETAIL");
		for (size_t i = 0; i < n; i++) {
			char lat[32] = "-";

			if (h[i].latency_ms >= 0)
				snprintf(lat, sizeof(lat), "%.2fms", h[i].latency_ms);
			printf("%-12s %-10s %-12s %10s  %s\n", h[i].name, h[i].kind,
			       h[i].ok ? "ok" : dw_err_name(h[i].rc), lat, h[i].last_error);
			all_ok = all_ok && h[i].ok;
		}
	}
	ret = all_ok ? DW_EXIT_OK : DW_EXIT_UNREACHABLE;
out:
	dw__dbopen_close(&d);
	return ret;
}
