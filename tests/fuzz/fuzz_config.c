// SPDX-License-Identifier: MIT
/*
 * Fuzz target: parse arbitrary bytes as a configuration file, then read it every way a
 * subsystem would (typed getters, key and section checks, iteration) and run each value through
 * the value parsers. Must never crash; checks that every entry is found again by its name (keys
 * are unique per section) and that every error leaves a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dwscale/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const sections[] = { "server", "cache",  "store", "db", "io",
						"backup", "fabric", "log",   NULL };
	static const char *const keys[] = { "max_bytes", "ttl", "listen", "enabled", NULL };
	char err[DW_CONFIG_ERR_LEN];
	dw_config *c = NULL;
	char *text;
	uint64_t u;
	double d;
	bool b;
	int rc;

	if (size > DW_CONFIG_MAX_BYTES + 16)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	rc = dw_config_load_string(text, "fuzz.conf", &c, err, sizeof(err));
	if (rc != 0) {
		if (c || err[0] == '\0')
			abort();
		goto out;
	}
	for (size_t i = 0; i < dw_config_count(c); i++) {
		const char *s, *k, *v;
		int line;

		if (dw_config_entry(c, i, &s, &k, &v, &line) != 0)
			abort();
		if (dw_config_get(c, s, k) != v || dw_config_line(c, s, k) != line || line < 1)
			abort();
		(void)dw_parse_size(v, &u);
		(void)dw_parse_duration_ms(v, &u);
		(void)dw_parse_u64(v, &u);
		(void)dw_parse_bool(v, &b);
		if (dw_config_get_double(c, s, k, 0, &d, err, sizeof(err)) < 0 && !err[0])
			abort();
	}
	for (size_t i = 0; sections[i]; i++) {
		err[0] = '\0';
		if (dw_config_get_size(c, sections[i], "max_bytes", 1, &u, err, sizeof(err)) < 0 &&
		    !strstr(err, "max_bytes"))
			abort();
		(void)dw_config_get_duration_ms(c, sections[i], "ttl", 1, &u, err, sizeof(err));
		(void)dw_config_get_u64(c, sections[i], "entries", 1, &u, err, sizeof(err));
		(void)dw_config_get_bool(c, sections[i], "enabled", false, &b, err, sizeof(err));
		(void)dw_config_check_keys(c, sections[i], keys, err, sizeof(err));
	}
	(void)dw_config_check_sections(c, sections, err, sizeof(err));
out:
	dw_config_close(c);
	/* The parsers alone, on the raw text (bounded: they see one value, not a file). */
	if (size < 256) {
		(void)dw_parse_size(text, &u);
		(void)dw_parse_duration_ms(text, &u);
	}
	free(text);
	return 0;
}
