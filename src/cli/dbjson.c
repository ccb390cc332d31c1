// SPDX-License-Identifier: MIT
/*
 * JSON forms of database objects and health reports, shared by the `object`/`db` commands and
 * the daemon's /v1/objects and /v1/db/health, so a script sees the same fields from both.
 * Times are RFC 3339 strings with nanoseconds: a JSON number (a double) cannot hold nanoseconds
 * since the epoch exactly.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/dbopen.h"

void dw__rfc3339(uint64_t ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / DW_NS_PER_SEC);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, cap, "%s.%09" PRIu64 "Z", base, (uint64_t)(ns % DW_NS_PER_SEC));
}

void dw__sha256_hex(const uint8_t sha[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", sha[i]);
}

cJSON *dw__db_object_json(const dw_db_object *o)
{
	cJSON *j = cJSON_CreateObject();
	char key[DW_DB_KEY_MAX + 1], sha[65], when[48];

	/* Keys hold no NUL: the fixed array is a string once terminated. */
	memcpy(key, o->key, o->key_len);
	key[o->key_len] = '\0';
	dw__sha256_hex(o->sha256, sha);
	cJSON_AddStringToObject(j, "key", key);
	cJSON_AddNumberToObject(j, "size", (double)o->size);
	cJSON_AddStringToObject(j, "content_type", o->content_type);
	cJSON_AddStringToObject(j, "sha256", sha);
	dw__rfc3339(o->created_ns, when, sizeof(when));
	cJSON_AddStringToObject(j, "created", when);
	dw__rfc3339(o->modified_ns, when, sizeof(when));
	cJSON_AddStringToObject(j, "modified", when);
	if (o->meta) {
		cJSON *m = cJSON_Parse(o->meta);

		cJSON_AddItemToObject(j, "meta", m ? m : cJSON_CreateString(o->meta));
	}
	return j;
}

cJSON *dw__db_health_json(const dw_db_health *h, size_t n, bool *all_ok)
{
	cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "strategies");
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		cJSON *it = cJSON_CreateObject();

		cJSON_AddStringToObject(it, "name", h[i].name);
		cJSON_AddStringToObject(it, "kind", h[i].kind);
		cJSON_AddBoolToObject(it, "ok", h[i].ok);
		cJSON_AddStringToObject(it, "status", h[i].ok ? "ok" : dw_err_name(h[i].rc));
		if (h[i].latency_ms >= 0)
			cJSON_AddNumberToObject(it, "latency_ms", h[i].latency_ms);
		else
			cJSON_AddNullToObject(it, "latency_ms");
		cJSON_AddNumberToObject(it, "consecutive_failures",
					(double)h[i].consecutive_failures);
		cJSON_AddStringToObject(it, "error", h[i].last_error);
		cJSON_AddItemToArray(arr, it);
		ok = ok && h[i].ok;
	}
	cJSON_AddBoolToObject(j, "ok", ok);
	*all_ok = ok;
	return j;
}

cJSON *dw__db_page_json(const dw_db_page *page)
{
	cJSON *j = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(j, "items");

	for (size_t i = 0; i < page->n; i++)
		cJSON_AddItemToArray(items, dw__db_object_json(&page->items[i]));
	cJSON_AddNumberToObject(j, "total", (double)page->total);
	cJSON_AddBoolToObject(j, "has_more", page->has_more);
	if (page->next_token)
		cJSON_AddStringToObject(j, "next_page_token", page->next_token);
	else
		cJSON_AddNullToObject(j, "next_page_token");
	return j;
}
