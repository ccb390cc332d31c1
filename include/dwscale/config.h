/* SPDX-License-Identifier: MIT */
/*
 * dwscale configuration: an INI file with one section per subsystem.
 *
 *     ; dwscale.conf
 *     [server]
 *     listen = 127.0.0.1:7070
 *     [cache]
 *     max_bytes = 64MiB        ; inline comments start with ';' after a space
 *     ttl = 15m
 *
 * Sections: [server], [cache], [store], [db], [io], [backup], [fabric], [log] (each subsystem
 * checks its own keys with dw_config_check_keys). The file is parsed once, into an immutable
 * list of (section, key, value, line) entries; typed getters parse values on demand, so the
 * error for a bad value can name the file, the line and the key:
 *
 *     dwscale.conf:12: [cache] max_bytes: expected a size like 64MiB, got 'lots'
 *
 * Every content error is DW_ECONFIG with such a message in the caller's err buffer (err may be
 * NULL; DW_CONFIG_ERR_LEN bytes is enough for any message this module writes except for long
 * names).
 *
 * Rules, so that a mistake is reported instead of silently ignored:
 *   - a key set twice in the same section is an error naming both lines;
 *   - a key before the first [section] is an error;
 *   - section and key names are [A-Za-z0-9_.-]+ and case-sensitive; sections at most 49
 *     characters;
 *   - lines are at most DW_CONFIG_MAX_LINE characters (leading blanks not counted); values do
 *     not continue onto the next line; a line starting with ';' or '#' is a comment; ' ;'
 *     starts a comment after a value; a value is trimmed of surrounding blanks;
 *   - at most DW_CONFIG_MAX_BYTES of text and DW_CONFIG_MAX_ENTRIES entries.
 *
 * Threads: a loaded dw_config is immutable; any number of threads may read it at once.
 */
#ifndef DWSCALE_CONFIG_H
#define DWSCALE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DW_CONFIG_MAX_BYTES   (1024 * 1024)
#define DW_CONFIG_MAX_ENTRIES 4096
#define DW_CONFIG_MAX_LINE    190
#define DW_CONFIG_ERR_LEN     512

typedef struct dw_config dw_config;

/*
 * Load the file at path. Returns 0; -errno if it cannot be read (message names the file);
 * DW_ECONFIG for bad content (message "path:line: ..."); -ENOMEM.
 */
int dw_config_load(const char *path, dw_config **out, char *err, size_t errlen);

/* Same for text in memory; name stands for the file name in messages (NULL: "<string>"). */
int dw_config_load_string(const char *text, const char *name, dw_config **out, char *err,
			  size_t errlen);

/* Release. NULL is a no-op. */
void dw_config_close(dw_config *c);

/* The name given at load (the path, or the string's name). */
const char *dw_config_name(const dw_config *c);

/* Raw value of section.key, or NULL if absent. Valid until dw_config_close. */
const char *dw_config_get(const dw_config *c, const char *section, const char *key);

/* Line where section.key was set, or 0 if absent. */
int dw_config_line(const dw_config *c, const char *section, const char *key);

/*
 * Typed getters: if section.key is absent, *out = def and 0 is returned; if present and valid,
 * *out is its value; otherwise DW_ECONFIG with "file:line: [section] key: expected ..., got
 * '...'" in err and *out untouched.
 */
int dw_config_get_u64(const dw_config *c, const char *section, const char *key, uint64_t def,
		      uint64_t *out, char *err, size_t errlen);
/* Bytes: see dw_parse_size. */
int dw_config_get_size(const dw_config *c, const char *section, const char *key, uint64_t def,
		       uint64_t *out, char *err, size_t errlen);
/* Milliseconds: see dw_parse_duration_ms. */
int dw_config_get_duration_ms(const dw_config *c, const char *section, const char *key,
			      uint64_t def, uint64_t *out, char *err, size_t errlen);
/* true/false, yes/no, on/off, 1/0 (any case). */
int dw_config_get_bool(const dw_config *c, const char *section, const char *key, bool def,
		       bool *out, char *err, size_t errlen);
/* A finite decimal number such as 0.3, -2, 1e-3. */
int dw_config_get_double(const dw_config *c, const char *section, const char *key, double def,
			 double *out, char *err, size_t errlen);

/*
 * Refuse unknown keys: every key of section that is not in known (a NULL-terminated list) is an
 * error "file:line: [section] key: unknown key (known: a, b, ...)". Reports the first one (in
 * file order). A section absent from the file passes.
 */
int dw_config_check_keys(const dw_config *c, const char *section, const char *const known[],
			 char *err, size_t errlen);

/* Refuse sections not in known (NULL-terminated): "file:line: unknown section [x]". */
int dw_config_check_sections(const dw_config *c, const char *const known[], char *err,
			     size_t errlen);

/*
 * Write a caller's own error about section.key in the module's format ("file:line: [section]
 * key: " + message) and return DW_ECONFIG. For checks the getters cannot do (ranges, one key
 * that needs another). If the key is absent, the line part is left out.
 */
int dw_config_error(const dw_config *c, const char *section, const char *key, char *err,
		    size_t errlen, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Number of entries, and entry i in file order (any out pointer may be NULL). */
size_t dw_config_count(const dw_config *c);
int dw_config_entry(const dw_config *c, size_t i, const char **section, const char **key,
		    const char **value, int *line);

/* ---- value parsers, also used for command-line flags ------------------------------------ */

/*
 * A byte size: digits, optional blanks, optional unit (any case), surrounding blanks allowed.
 * Units follow dd: B or none = 1; KiB/MiB/GiB/TiB/PiB/EiB and K/M/G/T/P/E = powers of 1024;
 * KB/MB/GB/TB/PB/EB = powers of 1000. No sign, no fraction. Returns 0, DW_ECONFIG (malformed)
 * or DW_ELIMIT (does not fit in 64 bits).
 */
int dw_parse_size(const char *s, uint64_t *out);

/*
 * A duration in milliseconds: one or more <digits><unit> with unit ms, s, m (or min), h, d (any
 * case), e.g. 500ms, 15s, 5m, 72h, 1h30m, "1h 30m"; or a bare 0. Blanks allowed around parts.
 * Returns 0, DW_ECONFIG or DW_ELIMIT.
 */
int dw_parse_duration_ms(const char *s, uint64_t *out);

/* Decimal digits only (surrounding blanks allowed). 0, DW_ECONFIG or DW_ELIMIT. */
int dw_parse_u64(const char *s, uint64_t *out);

/* true/false, yes/no, on/off, 1/0, any case. 0 or DW_ECONFIG. */
int dw_parse_bool(const char *s, bool *out);

#ifdef __cplusplus
}
#endif
#endif
