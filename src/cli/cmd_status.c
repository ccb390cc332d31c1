// SPDX-License-Identifier: MIT
/*
 * dwscale status [--server URL] [--json]: what a running `dwscale serve` says about its
 * subsystems (GET /v1/subsystems), as a table for people or as the raw JSON for scripts.
 *
 * The table shows each subsystem's state, its limits and its unlabelled metrics (the per-device
 * or per-tier series stay in /metrics, where a dashboard can plot them); long lines wrap under
 * the same column so the output stays readable in an 80- or 100-column terminal.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "dwscale/core.h"

#define STATUS_TIMEOUT_MS 10000
#define TABLE_WIDTH	  100
#define INDENT		  22 /* where the key=value lists start */

static void fmt_number(double v, char *buf, size_t cap)
{
	if (isfinite(v) && v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, cap, "%.0f", v);
	else
		snprintf(buf, cap, "%.4g", v);
}

/* Print "label: k=v k=v ..." starting at column INDENT, wrapping at TABLE_WIDTH. */
static void print_pairs(const char *label, cJSON *items, bool limits, bool first_line)
{
	size_t col = INDENT;
	cJSON *it;
	int n = 0;

	if (!first_line)
		printf("%*s", INDENT, "");
	printf("%-9s", label);
	col += 9;
	cJSON_ArrayForEach(it, items)
	{
		const char *name =
			limits ? it->string : cJSON_GetStringValue(cJSON_GetObjectItem(it, "name"));
		cJSON *v = cJSON_GetObjectItem(it, "value");
		char val[64], pair[160];
		size_t len;

		if (!name)
			continue;
		if (!limits && cJSON_GetObjectItem(it, "labels"))
			continue;
		if (cJSON_IsString(v))
			snprintf(val, sizeof(val), "%s", v->valuestring);
		else if (cJSON_IsNumber(v))
			fmt_number(v->valuedouble, val, sizeof(val));
		else
			snprintf(val, sizeof(val), "-");
		len = (size_t)snprintf(pair, sizeof(pair), "%s=%s", name, val);
		if (n > 0 && col + 1 + len > TABLE_WIDTH) {
			printf("\n%*s", INDENT + 9, "");
			col = INDENT + 9;
		} else if (n > 0) {
			putchar(' ');
			col++;
		}
		fputs(pair, stdout);
		col += len;
		n++;
	}
	if (n == 0)
		fputs("-", stdout);
	putchar('\n');
}

static int print_table(const char *json)
{
	cJSON *doc = cJSON_Parse(json), *subs, *s;
	int rc = DW_EXIT_OK;

	subs = cJSON_GetObjectItem(doc, "subsystems");
	if (!cJSON_IsArray(subs)) {
		fprintf(stderr, "dwscale status: the server's answer has no subsystem list\n");
		rc = DW_EXIT_ERROR;
		goto out;
	}
	if (cJSON_GetArraySize(subs) == 0) {
		printf("no subsystems registered\n");
		goto out;
	}
	printf("%-12s %-8s %s\n", "SUBSYSTEM", "STATE", "LIMITS AND METRICS");
	cJSON_ArrayForEach(s, subs)
	{
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(s, "name"));
		const char *state = cJSON_GetStringValue(cJSON_GetObjectItem(s, "state"));

		printf("%-12s %-8s ", name ? name : "?", state ? state : "?");
		print_pairs("limits:", cJSON_GetObjectItem(s, "limits"), true, true);
		print_pairs("metrics:", cJSON_GetObjectItem(s, "metrics"), false, false);
	}
out:
	cJSON_Delete(doc);
	return rc;
}

int dw__cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = getenv("DWSCALE_SERVER");
	struct dw__http_resp resp = { 0 };
	bool json = false;
	char err[768];
	int c, rc;

	if (!server || !*server)
		server = "http://127.0.0.1:7070";
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'j':
			json = true;
			break;
		default:
			return dw__usage_error("status", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return dw__usage_error("status", "unexpected argument '%s'", argv[optind]);

	rc = dw__http_request(server, "GET", "/v1/subsystems", NULL, NULL, 0, STATUS_TIMEOUT_MS,
			      &resp, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dwscale status: %s\n", err[0] ? err : dw_strerror(rc));
		return dw__exit_for_rc(rc);
	}
	if (resp.status != 200) {
		cJSON *e = cJSON_Parse(resp.body);
		const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(e, "message"));

		fprintf(stderr, "dwscale status: %s answered %d: %s\n", server, resp.status,
			msg ? msg : "(no message)");
		cJSON_Delete(e);
		rc = dw__exit_for_status(resp.status);
		goto out;
	}
	if (json) {
		fwrite(resp.body, 1, resp.body_len, stdout);
		if (resp.body_len == 0 || resp.body[resp.body_len - 1] != '\n')
			putchar('\n');
		rc = DW_EXIT_OK;
	} else {
		rc = print_table(resp.body);
	}
out:
	dw__http_resp_free(&resp);
	return rc;
}
