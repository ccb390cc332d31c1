// SPDX-License-Identifier: MIT
/*
 * INI configuration on top of inih, with errors that name file, line and key.
 *
 * inih does the INI syntax (sections, key = value, comments). It does not report the line of
 * each entry to the handler in the Debian build, so lines are fed to it through our own reader
 * (ini_parse_stream), one line per call, and the reader's count is the line number of the entry
 * the handler is given. The reader also:
 *   - strips leading blanks, which turns inih's multi-line continuation values off (an indented
 *     line is an ordinary line; a continuation would otherwise look like a duplicate key);
 *   - refuses lines longer than DW_CONFIG_MAX_LINE instead of letting inih split them (which
 *     would shift every later line number) and refuses NUL bytes;
 *   - refuses section names inih would cut short (it keeps 49 characters);
 *   - stops the parse at the first error we recorded, so the message is about the first problem.
 * The whole text is in memory (at most DW_CONFIG_MAX_BYTES), so load and load_string share the
 * same path. Entries are kept in file order in one array, capped at DW_CONFIG_MAX_ENTRIES; each
 * entry's strings live in one allocation. Lookups are linear: configs are small and read at
 * start-up and on reconfigure, never per request.
 *
 * Value parsers (size, duration, u64, bool, double) are plain functions on strings so the CLI can
 * use them for flags; the getters wrap them with the file:line: [section] key: message.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "core/fileutil.h"
#include "dwscale/config.h"
#include "dwscale/core.h"

/* inih's MAX_SECTION is 50 bytes including the NUL. */
#define SECTION_MAX 49

struct entry {
	const char *section;
	const char *key;
	const char *value;
	int line;
	char *mem; /* section, key and value, NUL-separated */
};

struct dw_config {
	char *name;
	struct entry *entries;
	size_t n, cap;
};

struct parse {
	dw_config *c;
	const char *p, *end; /* text not yet handed to inih */
	int line;	     /* line last handed to inih */
	int failed;	     /* an error was recorded in err */
	int failed_line;     /* the line it was about */
	int rc;		     /* code for that error */
	char *err;
	size_t errlen;
};

static void msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || len == 0)
		return;
	va_start(ap, fmt);
	/* A message cut at the caller's buffer size is still useful: truncation is accepted. */
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Printable, bounded copy of a value for error messages ("..." marks a cut). */
static const char *shown(const char *v, char *buf, size_t len)
{
	size_t o = 0;

	for (; v[o] && o + 4 < len; o++)
		buf[o] = isprint((unsigned char)v[o]) ? v[o] : '?';
	if (v[o])
		memcpy(buf + o, "...", 4);
	else
		buf[o] = '\0';
	return buf;
}

static int valid_name(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
			return 0;
	}
	return 1;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static char *reader(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	const char *l = ps->p, *nl;
	size_t len, limit;

	if (ps->failed || ps->p >= ps->end)
		return NULL;
	nl = memchr(l, '\n', (size_t)(ps->end - l));
	len = nl ? (size_t)(nl - l) : (size_t)(ps->end - l);
	ps->p = nl ? nl + 1 : ps->end;
	ps->line++;
	while (len > 0 && (*l == ' ' || *l == '\t')) {
		l++;
		len--;
	}
	if (memchr(l, '\0', len)) {
		msg(ps->err, ps->errlen, "%s:%d: NUL byte in line", ps->c->name, ps->line);
		goto fail;
	}
	/* inih needs room for the line, a newline and the NUL. */
	limit = num > 3 ? (size_t)num - 3 : 0;
	if (limit > DW_CONFIG_MAX_LINE)
		limit = DW_CONFIG_MAX_LINE;
	if (len > limit) {
		msg(ps->err, ps->errlen, "%s:%d: line longer than %zu characters", ps->c->name,
		    ps->line, limit);
		goto fail;
	}
	/* inih copies a section name into a 50-byte buffer and cuts it silently: refuse instead. */
	if (len > 0 && l[0] == '[') {
		const char *close = memchr(l, ']', len);

		if (close && (size_t)(close - l - 1) > SECTION_MAX) {
			msg(ps->err, ps->errlen, "%s:%d: section name longer than %d characters",
			    ps->c->name, ps->line, SECTION_MAX);
			goto fail;
		}
	}
	memcpy(str, l, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
fail:
	ps->failed = 1;
	ps->failed_line = ps->line;
	ps->rc = DW_ECONFIG;
	return NULL;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *ps = user;
	dw_config *c = ps->c;
	size_t sl, kl, vl;
	struct entry *e;

	if (ps->failed)
		return 0;
	if (!section[0]) {
		msg(ps->err, ps->errlen, "%s:%d: %s: key outside any [section]", c->name, ps->line,
		    key);
		goto fail;
	}
	if (!valid_name(section)) {
		msg(ps->err, ps->errlen,
		    "%s:%d: [%s]: section name may hold only letters, digits, '_', '.' and '-'",
		    c->name, ps->line, section);
		goto fail;
	}
	if (!valid_name(key)) {
		msg(ps->err, ps->errlen,
		    "%s:%d: [%s] %s: key name may hold only letters, digits, '_', '.' and '-'",
		    c->name, ps->line, section, key);
		goto fail;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->entries[i].section, section) == 0 &&
		    strcmp(c->entries[i].key, key) == 0) {
			msg(ps->err, ps->errlen, "%s:%d: [%s] %s: set twice (first at line %d)",
			    c->name, ps->line, section, key, c->entries[i].line);
			goto fail;
		}
	}
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 32;
		struct entry *ne;

		if (c->n >= DW_CONFIG_MAX_ENTRIES) {
			msg(ps->err, ps->errlen, "%s:%d: more than %d entries", c->name, ps->line,
			    DW_CONFIG_MAX_ENTRIES);
			goto fail;
		}
		if (ncap > DW_CONFIG_MAX_ENTRIES)
			ncap = DW_CONFIG_MAX_ENTRIES;
		ne = dw_realloc(c->entries, ncap * sizeof(*ne));
		if (!ne)
			goto nomem;
		c->entries = ne;
		c->cap = ncap;
	}
	sl = strlen(section);
	kl = strlen(key);
	vl = strlen(value);
	e = &c->entries[c->n];
	e->mem = dw_malloc(sl + kl + vl + 3);
	if (!e->mem)
		goto nomem;
	memcpy(e->mem, section, sl + 1);
	memcpy(e->mem + sl + 1, key, kl + 1);
	memcpy(e->mem + sl + kl + 2, value, vl + 1);
	e->section = e->mem;
	e->key = e->mem + sl + 1;
	e->value = e->mem + sl + kl + 2;
	e->line = ps->line;
	c->n++;
	return 1;
nomem:
	msg(ps->err, ps->errlen, "%s: out of memory", c->name);
	ps->failed = 1;
	ps->failed_line = ps->line;
	ps->rc = -ENOMEM;
	return 0;
fail:
	ps->failed = 1;
	ps->failed_line = ps->line;
	ps->rc = DW_ECONFIG;
	return 0;
}

static int parse_text(const char *text, size_t len, const char *name, dw_config **out, char *err,
		      size_t errlen)
{
	struct parse ps = { 0 };
	dw_config *c;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	c = dw_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->name = dw_strdup(name);
	if (!c->name) {
		rc = -ENOMEM;
		goto out;
	}
	if (len > DW_CONFIG_MAX_BYTES) {
		msg(err, errlen, "%s: larger than %d bytes", name, DW_CONFIG_MAX_BYTES);
		rc = DW_ECONFIG;
		goto out;
	}
	ps.c = c;
	ps.p = text;
	ps.end = text + len;
	ps.err = err;
	ps.errlen = errlen;
	rc = ini_parse_stream(reader, &ps, handler, &ps);
	/*
	 * inih returns the first line it found wrong, whether its own syntax error or one our
	 * handler refused; inih keeps going after a syntax error, so an error we recorded later
	 * must give way to an earlier syntax error.
	 */
	if (ps.failed && (ps.rc == -ENOMEM || rc <= 0 || rc >= ps.failed_line)) {
		rc = ps.rc;
	} else if (rc > 0) {
		msg(err, errlen, "%s:%d: syntax error: expected '[section]' or 'key = value'", name,
		    rc);
		rc = DW_ECONFIG;
	} else if (rc == -2) {
		rc = -ENOMEM;
	} else if (rc < 0) {
		msg(err, errlen, "%s: cannot be parsed", name);
		rc = DW_ECONFIG;
	}
	if (rc < 0)
		goto out;
	*out = c;
	return 0;
out:
	dw_config_close(c);
	return rc;
}

int dw_config_load_string(const char *text, const char *name, dw_config **out, char *err,
			  size_t errlen)
{
	if (!out || !text)
		return DW_EUSAGE;
	*out = NULL;
	return parse_text(text, strlen(text), name ? name : "<string>", out, err, errlen);
}

int dw_config_load(const char *path, dw_config **out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t got = 0;
	struct stat st;
	int fd, rc;

	if (!out || !path)
		return DW_EUSAGE;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		msg(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		msg(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		msg(err, errlen, "%s: is a directory", path);
		rc = DW_ECONFIG;
		goto out;
	}
	rc = dw__read_fd_capped(fd, DW_CONFIG_MAX_BYTES, &buf, &got);
	if (rc == DW_ETOOBIG) {
		msg(err, errlen, "%s: larger than %d bytes", path, DW_CONFIG_MAX_BYTES);
		rc = DW_ECONFIG;
		goto out;
	}
	if (rc < 0) {
		msg(err, errlen, "%s: %s", path, dw_strerror(rc));
		goto out;
	}
	rc = parse_text(buf, got, path, out, err, errlen);
out:
	dw_free(buf);
	close(fd);
	return rc;
}

void dw_config_close(dw_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		dw_free(c->entries[i].mem);
	dw_free(c->entries);
	dw_free(c->name);
	dw_free(c);
}

/* ---- lookups --------------------------------------------------------------------------------- */

static const struct entry *find(const dw_config *c, const char *section, const char *key)
{
	if (!c || !section || !key)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->entries[i].key, key) == 0 &&
		    strcmp(c->entries[i].section, section) == 0)
			return &c->entries[i];
	}
	return NULL;
}

const char *dw_config_name(const dw_config *c)
{
	return c ? c->name : NULL;
}

const char *dw_config_get(const dw_config *c, const char *section, const char *key)
{
	const struct entry *e = find(c, section, key);

	return e ? e->value : NULL;
}

int dw_config_line(const dw_config *c, const char *section, const char *key)
{
	const struct entry *e = find(c, section, key);

	return e ? e->line : 0;
}

size_t dw_config_count(const dw_config *c)
{
	return c ? c->n : 0;
}

int dw_config_entry(const dw_config *c, size_t i, const char **section, const char **key,
		    const char **value, int *line)
{
	const struct entry *e;

	if (!c || i >= c->n)
		return DW_ENOTFOUND;
	e = &c->entries[i];
	if (section)
		*section = e->section;
	if (key)
		*key = e->key;
	if (value)
		*value = e->value;
	if (line)
		*line = e->line;
	return 0;
}

static void verror(const dw_config *c, const struct entry *e, const char *section, const char *key,
		   char *err, size_t errlen, const char *fmt, va_list ap)
{
	int n;

	if (!err || errlen == 0)
		return;
	if (e)
		n = snprintf(err, errlen, "%s:%d: [%s] %s: ", c->name, e->line, section, key);
	else
		n = snprintf(err, errlen, "%s: [%s] %s: ", c ? c->name : "<config>", section, key);
	if (n < 0 || (size_t)n >= errlen)
		return; /* prefix alone filled the buffer: keep it, cut */
	(void)vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

int dw_config_error(const dw_config *c, const char *section, const char *key, char *err,
		    size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(c, find(c, section, key), section, key, err, errlen, fmt, ap);
	va_end(ap);
	return DW_ECONFIG;
}

static int entry_error(const dw_config *c, const struct entry *e, char *err, size_t errlen,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int entry_error(const dw_config *c, const struct entry *e, char *err, size_t errlen,
		       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(c, e, e->section, e->key, err, errlen, fmt, ap);
	va_end(ap);
	return DW_ECONFIG;
}

/* ---- value parsers -----------------------------------------------------------------------------
 */

static const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Digits at *s into *v; advances *s. 0, DW_ECONFIG (no digit) or DW_ELIMIT (overflow). */
static int digits(const char **s, uint64_t *v)
{
	const char *p = *s;
	uint64_t x = 0;
	int over = 0;

	if (!isdigit((unsigned char)*p))
		return DW_ECONFIG;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (x > (UINT64_MAX - d) / 10)
			over = 1;
		else
			x = x * 10 + d;
	}
	*s = p;
	*v = x;
	return over ? DW_ELIMIT : 0;
}

/* True if only blanks remain. */
static int at_end(const char *s)
{
	return *skip_blanks(s) == '\0';
}

int dw_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v;
	int rc;

	if (!s || !out)
		return DW_ECONFIG;
	s = skip_blanks(s);
	rc = digits(&s, &v);
	if (rc == 0 && !at_end(s))
		rc = DW_ECONFIG;
	if (rc == DW_ELIMIT && !at_end(s))
		rc = DW_ECONFIG;
	if (rc == 0)
		*out = v;
	return rc;
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	if (b && a > UINT64_MAX / b)
		return 0;
	*r = a * b;
	return 1;
}

int dw_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {
		{ "", 1ULL },
		{ "b", 1ULL },
		{ "k", 1ULL << 10 },
		{ "kib", 1ULL << 10 },
		{ "kb", 1000ULL },
		{ "m", 1ULL << 20 },
		{ "mib", 1ULL << 20 },
		{ "mb", 1000000ULL },
		{ "g", 1ULL << 30 },
		{ "gib", 1ULL << 30 },
		{ "gb", 1000000000ULL },
		{ "t", 1ULL << 40 },
		{ "tib", 1ULL << 40 },
		{ "tb", 1000000000000ULL },
		{ "p", 1ULL << 50 },
		{ "pib", 1ULL << 50 },
		{ "pb", 1000000000000000ULL },
		{ "e", 1ULL << 60 },
		{ "eib", 1ULL << 60 },
		{ "eb", 1000000000000000000ULL },
	};
	const char *u;
	uint64_t v, r;
	size_t ul;
	int rc;

	if (!s || !out)
		return DW_ECONFIG;
	s = skip_blanks(s);
	rc = digits(&s, &v);
	if (rc == DW_ECONFIG)
		return rc;
	u = skip_blanks(s);
	for (ul = 0; isalpha((unsigned char)u[ul]); ul++)
		;
	if (!at_end(u + ul))
		return DW_ECONFIG;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].unit) == ul && strncasecmp(units[i].unit, u, ul) == 0) {
			if (rc == DW_ELIMIT || !mul_ok(v, units[i].mult, &r))
				return DW_ELIMIT;
			*out = r;
			return 0;
		}
	}
	return DW_ECONFIG;
}

int dw_parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {
		{ "ms", 1ULL },	     { "s", 1000ULL },	  { "m", 60000ULL },
		{ "min", 60000ULL }, { "h", 3600000ULL }, { "d", 86400000ULL },
	};
	uint64_t total = 0;
	int over = 0, parts = 0;

	if (!s || !out)
		return DW_ECONFIG;
	while (!at_end(s)) {
		uint64_t v, part = 0;
		const char *u;
		size_t ul;
		int rc, found = 0;

		s = skip_blanks(s);
		rc = digits(&s, &v);
		if (rc == DW_ECONFIG)
			return rc;
		over |= rc == DW_ELIMIT;
		u = skip_blanks(s);
		for (ul = 0; isalpha((unsigned char)u[ul]); ul++)
			;
		if (ul == 0) {
			/* A bare number is accepted only as the whole value 0. */
			if (parts == 0 && v == 0 && rc == 0 && at_end(s)) {
				*out = 0;
				return 0;
			}
			return DW_ECONFIG;
		}
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strlen(units[i].unit) == ul && strncasecmp(units[i].unit, u, ul) == 0) {
				found = 1;
				if (!mul_ok(v, units[i].ms, &part))
					over = 1;
			}
		}
		if (!found)
			return DW_ECONFIG;
		if (total > UINT64_MAX - part)
			over = 1;
		else
			total += part;
		s = u + ul;
		parts++;
	}
	if (parts == 0)
		return DW_ECONFIG;
	if (over)
		return DW_ELIMIT;
	*out = total;
	return 0;
}

int dw_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t len;

	if (!s || !out)
		return DW_ECONFIG;
	s = skip_blanks(s);
	for (len = strlen(s); len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'); len--)
		;
	for (size_t i = 0; i < 4; i++) {
		if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0) {
			*out = true;
			return 0;
		}
		if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0) {
			*out = false;
			return 0;
		}
	}
	return DW_ECONFIG;
}

/* Finite decimal (no hex, inf or nan, which strtod would take). */
static int parse_double(const char *s, double *out)
{
	char *end;
	double v;

	s = skip_blanks(s);
	if (!*s || strspn(s, "0123456789+-.eE \t") != strlen(s))
		return DW_ECONFIG;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || !at_end(end))
		return DW_ECONFIG;
	if (errno == ERANGE || !isfinite(v))
		return DW_ELIMIT;
	*out = v;
	return 0;
}

/* ---- typed getters ------------------------------------------------------------------------------
 */

#define SHOWN_LEN 72

/*
 * The unsigned getters differ only in their parser and their two messages: "too_large" for
 * DW_ELIMIT and "expected" for any other parse failure (each with one %s for the value).
 */
static int get_unsigned(const dw_config *c, const char *section, const char *key, uint64_t def,
			uint64_t *out, char *err, size_t errlen,
			int (*parse)(const char *, uint64_t *), const char *too_large,
			const char *expected)
{
	const struct entry *e = find(c, section, key);
	char b[SHOWN_LEN];
	int rc;

	if (!out)
		return DW_EUSAGE;
	if (!e) {
		*out = def;
		return 0;
	}
	rc = parse(e->value, out);
	if (rc < 0)
		return entry_error(c, e, err, errlen, rc == DW_ELIMIT ? too_large : expected,
				   shown(e->value, b, sizeof(b)));
	return 0;
}

int dw_config_get_u64(const dw_config *c, const char *section, const char *key, uint64_t def,
		      uint64_t *out, char *err, size_t errlen)
{
	return get_unsigned(c, section, key, def, out, err, errlen, dw_parse_u64,
			    "number '%s' is too large",
			    "expected a non-negative whole number, got '%s'");
}

int dw_config_get_size(const dw_config *c, const char *section, const char *key, uint64_t def,
		       uint64_t *out, char *err, size_t errlen)
{
	return get_unsigned(c, section, key, def, out, err, errlen, dw_parse_size,
			    "size '%s' is too large", "expected a size like 64MiB, got '%s'");
}

int dw_config_get_duration_ms(const dw_config *c, const char *section, const char *key,
			      uint64_t def, uint64_t *out, char *err, size_t errlen)
{
	return get_unsigned(c, section, key, def, out, err, errlen, dw_parse_duration_ms,
			    "duration '%s' is too long",
			    "expected a duration like 500ms, 15s, 5m or 72h, got '%s'");
}

int dw_config_get_bool(const dw_config *c, const char *section, const char *key, bool def,
		       bool *out, char *err, size_t errlen)
{
	const struct entry *e = find(c, section, key);
	char b[SHOWN_LEN];

	if (!out)
		return DW_EUSAGE;
	if (!e) {
		*out = def;
		return 0;
	}
	if (dw_parse_bool(e->value, out) < 0)
		return entry_error(c, e, err, errlen,
				   "expected true/false, yes/no, on/off or 1/0, got '%s'",
				   shown(e->value, b, sizeof(b)));
	return 0;
}

int dw_config_get_double(const dw_config *c, const char *section, const char *key, double def,
			 double *out, char *err, size_t errlen)
{
	const struct entry *e = find(c, section, key);
	char b[SHOWN_LEN];
	int rc;

	if (!out)
		return DW_EUSAGE;
	if (!e) {
		*out = def;
		return 0;
	}
	rc = parse_double(e->value, out);
	if (rc == DW_ELIMIT)
		return entry_error(c, e, err, errlen, "number '%s' is out of range",
				   shown(e->value, b, sizeof(b)));
	if (rc < 0)
		return entry_error(c, e, err, errlen, "expected a number like 0.3, got '%s'",
				   shown(e->value, b, sizeof(b)));
	return 0;
}

/* ---- checks
 * -------------------------------------------------------------------------------------- */

static int listed(const char *const known[], const char *s)
{
	for (size_t i = 0; known && known[i]; i++) {
		if (strcmp(known[i], s) == 0)
			return 1;
	}
	return 0;
}

/* "a, b, c" into buf, cut with "..." if it does not fit. */
static const char *join(const char *const known[], char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; known && known[i]; i++) {
		int n = snprintf(buf + o, len - o, "%s%s", i ? ", " : "", known[i]);

		if (n < 0 || (size_t)n >= len - o) {
			if (len >= 4)
				memcpy(buf + len - 4, "...", 4);
			break;
		}
		o += (size_t)n;
	}
	return buf;
}

int dw_config_check_keys(const dw_config *c, const char *section, const char *const known[],
			 char *err, size_t errlen)
{
	char list[256];

	if (!c || !section)
		return DW_EUSAGE;
	for (size_t i = 0; i < c->n; i++) {
		const struct entry *e = &c->entries[i];

		if (strcmp(e->section, section) != 0 || listed(known, e->key))
			continue;
		return entry_error(c, e, err, errlen, "unknown key (known: %s)",
				   join(known, list, sizeof(list)));
	}
	return 0;
}

int dw_config_check_sections(const dw_config *c, const char *const known[], char *err,
			     size_t errlen)
{
	char list[256];

	if (!c)
		return DW_EUSAGE;
	for (size_t i = 0; i < c->n; i++) {
		const struct entry *e = &c->entries[i];

		if (listed(known, e->section))
			continue;
		msg(err, errlen, "%s:%d: unknown section [%s] (known: %s)", c->name, e->line,
		    e->section, join(known, list, sizeof(list)));
		return DW_ECONFIG;
	}
	return 0;
}
