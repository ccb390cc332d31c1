// SPDX-License-Identifier: MIT
/*
 * Structured logging: one key=value line per event, written with a single write(2) so lines from
 * different threads never interleave. The line is built in a fixed stack buffer (no allocation,
 * so logging works when memory is short); an over-long line is cut and ends in "...".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dwscale/core.h"

#define LOG_LINE_MAX 2048

static _Atomic int log_level = DW_LOG_INFO;
static _Atomic int log_fd = 2;

static const char *const level_names[] = { "debug", "info", "warn", "error", "off" };

void dw_log_set_level(enum dw_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum dw_log_level dw_log_get_level(void)
{
	return (enum dw_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int dw_log_level_parse(const char *s, enum dw_log_level *out)
{
	for (int i = 0; i <= DW_LOG_OFF; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum dw_log_level)i;
			return 0;
		}
	}
	return DW_ECONFIG;
}

void dw_log_set_fd(int fd)
{
	atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

char *dw_log_quote(const char *s, char *buf, size_t cap)
{
	size_t o = 0;

	if (cap < 8) {
		if (cap)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char tmp[8];
		size_t n;

		if (ch == '"' || ch == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)ch;
			n = 2;
		} else if (ch < 0x20 || ch == 0x7f) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", ch);
		} else {
			tmp[0] = (char)ch;
			n = 1;
		}
		if (o + n + 5 > cap) { /* room for ...", NUL */
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, tmp, n);
		o += n;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void dw_logv(enum dw_log_level level, const char *sub, const char *event, const char *fmt,
	     va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t o;
	int n;

	if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed) ||
	    level >= DW_LOG_OFF)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s sub=%s event=%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_names[level], sub, event);
	if (n < 0)
		return;
	o = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	if (fmt && *fmt && o + 2 < sizeof(line)) {
		line[o++] = ' ';
		n = vsnprintf(line + o, sizeof(line) - o, fmt, ap);
		if (n < 0)
			n = 0;
		if ((size_t)n >= sizeof(line) - o) {
			o = sizeof(line) - 5;
			memcpy(line + o, "...", 3);
			o += 3;
		} else {
			o += (size_t)n;
		}
	}
	line[o++] = '\n';
	/* One write per line; a short write to stderr is not worth retrying. */
	if (write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, o) < 0)
		return;
}

void dw_log(enum dw_log_level level, const char *sub, const char *event, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dw_logv(level, sub, event, fmt, ap);
	va_end(ap);
}
