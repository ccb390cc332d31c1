/* SPDX-License-Identifier: MIT */
/*
 * dwscale core primitives: allocation, clocks, logging and EMA smoothing.
 *
 * These are the small pieces every subsystem uses. Allocation goes through dw_malloc/dw_free so
 * tests can count allocations and fail the Nth one; clocks are vtables so tests can drive time.
 */
#ifndef DWSCALE_CORE_H
#define DWSCALE_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- allocation ------------------------------------------------------------------------- */

/* Thin wrappers over malloc & co. that honour the test fault hook below. Thread-safe. */
void *dw_malloc(size_t n) __attribute__((malloc, alloc_size(1)));
void *dw_calloc(size_t nmemb, size_t size) __attribute__((malloc, alloc_size(1, 2)));
void *dw_realloc(void *p, size_t n) __attribute__((alloc_size(2)));
char *dw_strdup(const char *s) __attribute__((malloc));
char *dw_strndup(const char *s, size_t n) __attribute__((malloc));
void dw_free(void *p);

/*
 * Test hook: make the Nth allocation from now fail (1 = the next one); 0 disables. Returns the
 * number of allocations made since the last call (a counter tests can read). Thread-safe.
 */
unsigned long dw_alloc_fail_nth(unsigned long nth);

/* ---- clocks ------------------------------------------------------------------------------ */

/*
 * A clock is a vtable so that time can be injected in tests. now_ns is CLOCK_MONOTONIC (for
 * intervals and deadlines), wall_ns is CLOCK_REALTIME (for timestamps that outlive the process,
 * such as token expiry). A NULL dw_clock pointer everywhere means the real clock.
 */
typedef struct dw_clock {
	uint64_t (*now_ns)(const struct dw_clock *c);
	uint64_t (*wall_ns)(const struct dw_clock *c);
	void *ctx;
} dw_clock;

/* The process's real clock. Never NULL. */
const dw_clock *dw_clock_real(void);

/* Read a clock; c may be NULL (real clock). */
uint64_t dw_clock_now(const dw_clock *c);
uint64_t dw_clock_wall(const dw_clock *c);

/*
 * A fake clock for tests: time moves only when dw_fake_clock_advance() is called. Both readings
 * advance together. Thread-safe (atomic).
 */
typedef struct dw_fake_clock {
	dw_clock clock; /* pass &fc.clock wherever a dw_clock is wanted */
	_Atomic uint64_t mono_ns;
	_Atomic uint64_t wall_ns;
} dw_fake_clock;

void dw_fake_clock_init(dw_fake_clock *fc, uint64_t mono_start_ns, uint64_t wall_start_ns);
void dw_fake_clock_advance(dw_fake_clock *fc, uint64_t delta_ns);

#define DW_NS_PER_MS  1000000ULL
#define DW_NS_PER_SEC 1000000000ULL

/* ---- logging ----------------------------------------------------------------------------- */

/*
 * Structured logging to stderr, one line per event in key=value form:
 *   ts=2026-11-27T02:20:36.123Z level=info sub=serve event=listening addr=127.0.0.1:7070
 * The fmt argument of dw_log() is the key=value tail (printf-style); values with spaces must be
 * quoted by the caller (use dw_log_quote for untrusted strings). Thread-safe: each line is
 * written with one write(2).
 */
enum dw_log_level { DW_LOG_DEBUG = 0, DW_LOG_INFO, DW_LOG_WARN, DW_LOG_ERROR, DW_LOG_OFF };

void dw_log_set_level(enum dw_log_level level);
enum dw_log_level dw_log_get_level(void);
/* Parse "debug", "info", "warn", "error", "off"; returns 0 or DW_ECONFIG. */
int dw_log_level_parse(const char *s, enum dw_log_level *out);
/* Redirect log lines to fd (default 2). For tests and daemons. */
void dw_log_set_fd(int fd);

void dw_log(enum dw_log_level level, const char *sub, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void dw_logv(enum dw_log_level level, const char *sub, const char *event, const char *fmt,
	     va_list ap);

/*
 * Quote s for a log value: wraps in double quotes and escapes ", \ and control characters.
 * Writes at most cap bytes (always NUL-terminated, truncated with "..." if needed). Returns buf.
 */
char *dw_log_quote(const char *s, char *buf, size_t cap);

/* ---- EMA ----------------------------------------------------------------------------------- */

/*
 * Exponential moving average: v = alpha * x + (1 - alpha) * v. The first sample sets v.
 * A value type, not thread-safe: the owner serialises access.
 */
#define DW_EMA_ALPHA_DEFAULT 0.3

typedef struct dw_ema {
	double alpha;
	double value;
	bool primed;
} dw_ema;

/* alpha must be in (0, 1]; returns DW_ELIMIT otherwise (and leaves e unchanged). */
int dw_ema_init(dw_ema *e, double alpha);
/* Add a sample; returns the new value. */
double dw_ema_update(dw_ema *e, double sample);
/* Current value; 0 before the first sample. */
double dw_ema_value(const dw_ema *e);
void dw_ema_reset(dw_ema *e);

/* ---- misc ------------------------------------------------------------------------------------ */

/* Library version string, e.g. "0.1.0". */
const char *dw_version(void);

#ifdef __cplusplus
}
#endif
#endif
