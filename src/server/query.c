// SPDX-License-Identifier: MIT
/*
 * Parsing of the untrusted parts of admin requests: the limits document of
 * PUT /v1/subsystems/NAME/limits and the Authorization header. Kept apart from the HTTP glue so
 * that tests/fuzz/fuzz_http_query.c can drive exactly this code with arbitrary bytes.
 *
 * The limits document is one JSON object whose members are limit names ([a-z0-9_]{1,32}) with a
 * finite number or a string as value: {"max_entries": 5000, "ttl_seconds": 30}. Anything else
 * (another type, a duplicate name, trailing bytes, more than DW_SERVER_LIMIT_CHANGES_MAX
 * members) is refused as a whole with a message saying which member is wrong, so nothing is
 * applied from a document that was not fully understood.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dwscale/core.h"
#include "server/server.h"

static bool limit_name_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return false;
	}
	return n > 0 && n <= 32;
}

int dw__parse_limits_json(const char *body, size_t len, dw_limit_change **changes, size_t *n,
			  char **arena, char *err, size_t errlen)
{
	cJSON *doc = NULL, *it;
	const char *end = NULL;
	dw_limit_change *ch = NULL;
	char *ar = NULL, *ap;
	size_t count = 0, need = 0, i = 0;
	int rc = DW_EUSAGE;

	*changes = NULL;
	*n = 0;
	*arena = NULL;
	if (!body || len == 0) {
		snprintf(err, errlen,
			 "the request needs a JSON object of limits, e.g. "
			 "{\"max_entries\": 5000}");
		goto out;
	}
	doc = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (!doc) {
		snprintf(err, errlen, "the body is not valid JSON");
		goto out;
	}
	while (end && end < body + len && isspace((unsigned char)*end))
		end++;
	if (end && end < body + len) {
		snprintf(err, errlen, "unexpected bytes after the JSON object");
		goto out;
	}
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen,
			 "the body must be a JSON object of limits, e.g. "
			 "{\"max_entries\": 5000}");
		goto out;
	}
	cJSON_ArrayForEach(it, doc)
	{
		char shown[48];

		if (++count > DW_SERVER_LIMIT_CHANGES_MAX) {
			snprintf(err, errlen, "too many limits in one request (at most %d)",
				 DW_SERVER_LIMIT_CHANGES_MAX);
			goto out;
		}
		if (!it->string || !limit_name_ok(it->string)) {
			snprintf(err, errlen, "%s is not a limit name ([a-z0-9_], 1 to 32 bytes)",
				 dw_log_quote(it->string ? it->string : "", shown, sizeof(shown)));
			goto out;
		}
		for (cJSON *prev = doc->child; prev != it; prev = prev->next) {
			if (strcmp(prev->string, it->string) == 0) {
				snprintf(err, errlen, "limit %s is given twice", it->string);
				goto out;
			}
		}
		if (cJSON_IsNumber(it)) {
			if (!isfinite(it->valuedouble)) {
				snprintf(err, errlen, "limit %s must be a finite number",
					 it->string);
				goto out;
			}
		} else if (cJSON_IsString(it)) {
			need += strlen(it->valuestring) + 1;
		} else {
			snprintf(err, errlen, "limit %s must be a number or a string", it->string);
			goto out;
		}
		need += strlen(it->string) + 1;
	}
	if (count == 0) {
		snprintf(err, errlen, "no limits given; e.g. {\"max_entries\": 5000}");
		goto out;
	}
	ch = dw_calloc(count, sizeof(*ch));
	ar = dw_malloc(need);
	if (!ch || !ar) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ap = ar;
	cJSON_ArrayForEach(it, doc)
	{
		size_t l = strlen(it->string) + 1;

		memcpy(ap, it->string, l);
		ch[i].name = ap;
		ap += l;
		if (cJSON_IsString(it)) {
			l = strlen(it->valuestring) + 1;
			memcpy(ap, it->valuestring, l);
			ch[i].str = ap;
			ap += l;
		} else {
			ch[i].value = it->valuedouble;
		}
		i++;
	}
	*changes = ch;
	*n = count;
	*arena = ar;
	ch = NULL;
	ar = NULL;
	rc = 0;
out:
	cJSON_Delete(doc);
	dw_free(ch);
	dw_free(ar);
	return rc;
}

const char *dw__parse_bearer(const char *hdr, size_t *len)
{
	const char *p, *e;

	*len = 0;
	if (!hdr)
		return NULL;
	while (*hdr == ' ' || *hdr == '\t')
		hdr++;
	if (strncasecmp(hdr, "Bearer", 6) != 0 || (hdr[6] != ' ' && hdr[6] != '\t'))
		return NULL;
	p = hdr + 6;
	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e == p)
		return NULL;
	for (const char *q = p; q < e; q++) {
		if (*q == ' ' || *q == '\t')
			return NULL;
	}
	*len = (size_t)(e - p);
	return p;
}

bool dw__token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
	volatile unsigned char diff = 0;

	/* Walk the expected token whatever was given, so timing tells nothing about the prefix
	 * matched; a length mismatch is folded into the same result. */
	diff |= (unsigned char)(given_len != want_len);
	for (size_t i = 0; i < want_len; i++) {
		unsigned char g = i < given_len ? (unsigned char)given[i] : 0;

		diff |= (unsigned char)(g ^ (unsigned char)want[i]);
	}
	return want_len > 0 && diff == 0;
}

/*
 * The body of POST /v1/backups: {"sources": ["/abs/dir", ...], "type": "auto"}. Same rules as
 * the limits document: one JSON object and nothing after it, known members only, every source
 * an absolute path named once, so a request either names exactly the backups to queue or
 * queues none.
 */
int dw__parse_backup_json(const char *body, size_t len, struct dw__backup_request *req,
			  char **arena, char *err, size_t errlen)
{
	static const char example[] = "{\"sources\": [\"/srv/data\"], \"type\": \"auto\"}";
	cJSON *doc = NULL, *it, *sources = NULL, *type = NULL;
	const char *end = NULL;
	char *ar = NULL, *ap, shown[80];
	size_t count = 0, need = 0;
	int rc = DW_EUSAGE;

	memset(req, 0, sizeof(*req));
	req->type = DW_BACKUP_AUTO;
	*arena = NULL;
	err[0] = '\0';
	if (!body || len == 0) {
		snprintf(err, errlen, "the request needs a JSON object, e.g. %s", example);
		goto out;
	}
	/* cJSON turns \u0000 into a NUL that would silently cut a path short */
	if (memmem(body, len, "\\u0000", 6)) {
		snprintf(err, errlen, "the body must not contain \\u0000");
		goto out;
	}
	doc = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (!doc) {
		snprintf(err, errlen, "the body is not valid JSON");
		goto out;
	}
	while (end && end < body + len && isspace((unsigned char)*end))
		end++;
	if (end && end < body + len) {
		snprintf(err, errlen, "unexpected bytes after the JSON object");
		goto out;
	}
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen, "the body must be a JSON object, e.g. %s", example);
		goto out;
	}
	cJSON_ArrayForEach(it, doc)
	{
		cJSON **slot;

		if (it->string && strcmp(it->string, "sources") == 0) {
			slot = &sources;
		} else if (it->string && strcmp(it->string, "type") == 0) {
			slot = &type;
		} else {
			snprintf(err, errlen, "unknown member %s (known: sources, type)",
				 dw_log_quote(it->string ? it->string : "", shown, sizeof(shown)));
			goto out;
		}
		if (*slot) {
			snprintf(err, errlen, "member %s is given twice", it->string);
			goto out;
		}
		*slot = it;
	}
	if (type) {
		const char *t = cJSON_GetStringValue(type);

		if (t && strcmp(t, "full") == 0)
			req->type = DW_BACKUP_FULL;
		else if (t && strcmp(t, "incremental") == 0)
			req->type = DW_BACKUP_INCREMENTAL;
		else if (t && strcmp(t, "auto") == 0)
			req->type = DW_BACKUP_AUTO;
		else {
			snprintf(err, errlen, "type must be \"full\", \"incremental\" or \"auto\"");
			goto out;
		}
	}
	if (!cJSON_IsArray(sources)) {
		snprintf(err, errlen, "sources must be an array of directory paths, e.g. %s",
			 example);
		goto out;
	}
	cJSON_ArrayForEach(it, sources)
	{
		const char *s = cJSON_GetStringValue(it);
		size_t l;

		if (++count > DW_SERVER_BACKUP_SOURCES_MAX) {
			snprintf(err, errlen, "too many sources in one request (at most %d)",
				 DW_SERVER_BACKUP_SOURCES_MAX);
			goto out;
		}
		if (!s) {
			snprintf(err, errlen, "sources[%zu] is not a string", count - 1);
			goto out;
		}
		l = strlen(s);
		if (l == 0 || s[0] != '/') {
			snprintf(err, errlen, "sources[%zu] %s is not an absolute path", count - 1,
				 dw_log_quote(s, shown, sizeof(shown)));
			goto out;
		}
		if (l >= DW_SERVER_BACKUP_PATH_MAX) {
			snprintf(err, errlen, "sources[%zu] is longer than %d bytes", count - 1,
				 DW_SERVER_BACKUP_PATH_MAX - 1);
			goto out;
		}
		for (cJSON *prev = sources->child; prev != it; prev = prev->next) {
			if (strcmp(prev->valuestring, s) == 0) {
				snprintf(err, errlen, "source %s is listed twice",
					 dw_log_quote(s, shown, sizeof(shown)));
				goto out;
			}
		}
		need += l + 1;
	}
	if (count == 0) {
		snprintf(err, errlen, "sources is empty; e.g. %s", example);
		goto out;
	}
	ar = dw_malloc(need);
	if (!ar) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ap = ar;
	cJSON_ArrayForEach(it, sources)
	{
		size_t l = strlen(it->valuestring) + 1;

		memcpy(ap, it->valuestring, l);
		req->sources[req->n++] = ap;
		ap += l;
	}
	*arena = ar;
	ar = NULL;
	rc = 0;
out:
	if (rc < 0) {
		memset(req, 0, sizeof(*req));
		if (!err[0])
			snprintf(err, errlen, "the request could not be read");
	}
	cJSON_Delete(doc);
	dw_free(ar);
	return rc;
}
