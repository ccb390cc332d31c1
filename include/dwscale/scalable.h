/* SPDX-License-Identifier: MIT */
/*
 * IScalableSubsystem: the interface every scaling manager implements, and the registry that lets
 * `dwscale serve` and `dwscale status` list subsystems without knowing their types.
 *
 * A subsystem exposes:
 *   - a name ("cache", "db", "io", "backup", "fabric"): [a-z0-9_]+, used in metric names
 *     (dwscale_<name>_<metric>) and URLs (/v1/subsystems/<name>/limits);
 *   - metrics: (name, labels, value, unit, help, kind), emitted one by one through a callback so a
 *     subsystem can report any number (per device, per tier) without a fixed array;
 *   - limits: named numeric (or string) settings with their valid range;
 *   - reconfigure(): a set of new limit values, validated as a whole and then applied live, or
 *     refused as a whole with a message naming the offending limit;
 *   - a backpressure state.
 *
 * Threads: every op may be called from any thread concurrently with the subsystem's own work;
 * implementations lock what they read. Emit callbacks must not call back into the registry.
 */
#ifndef DWSCALE_SCALABLE_H
#define DWSCALE_SCALABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dw_bp_state {
	DW_BP_NORMAL = 0,
	DW_BP_WARNING = 1,
	DW_BP_CRITICAL = 2,
	DW_BP_SHEDDING = 3,
} dw_bp_state;

/* "normal", "warning", "critical", "shedding". */
const char *dw_bp_state_name(dw_bp_state s);

typedef enum dw_metric_kind {
	DW_METRIC_GAUGE = 0,
	DW_METRIC_COUNTER = 1, /* monotonically increasing since open */
} dw_metric_kind;

typedef struct dw_metric {
	const char *name; /* [a-z0-9_]+, without the dwscale_<subsystem>_ prefix */
	const char
		*labels; /* NULL, or Prometheus label pairs without braces: dev="vda",tier="high" */
	double value;
	const char *unit; /* "bytes", "seconds", "ops", "ratio", "" ... */
	const char *help; /* one line */
	dw_metric_kind kind;
} dw_metric;

/* Receives one metric; the pointers in m are valid only during the call. */
typedef void (*dw_metric_fn)(void *arg, const dw_metric *m);

typedef struct dw_limit {
	const char *name; /* [a-z0-9_]+ */
	double value;	  /* current value (numeric limits) */
	const char *str;  /* current value of a string limit (value ignored), else NULL */
	double min, max;  /* valid range (numeric) */
	const char *unit;
	const char *help;
} dw_limit;

typedef void (*dw_limit_fn)(void *arg, const dw_limit *l);

/* One requested change: a numeric value, or str for a string limit. */
typedef struct dw_limit_change {
	const char *name;
	double value;
	const char *str; /* NULL for numeric */
} dw_limit_change;

typedef struct dw_scalable_ops {
	int (*metrics)(void *self, dw_metric_fn fn, void *arg);
	int (*limits)(void *self, dw_limit_fn fn, void *arg);
	/*
	 * Validate all n changes, then apply them all, or none. On refusal return DW_ELIMIT (or
	 * another code) and write a one-line reason naming the limit into err.
	 */
	int (*reconfigure)(void *self, const dw_limit_change *changes, size_t n, char *err,
			   size_t errlen);
	dw_bp_state (*state)(void *self);
} dw_scalable_ops;

typedef struct dw_scalable {
	const char *name;
	const dw_scalable_ops *ops;
	void *self;
} dw_scalable;

/*
 * Helper for implementations: check a numeric change against a dw_limit's range and integrality.
 * Returns 0, or DW_ELIMIT with a reason in err.
 */
int dw_limit_check(const dw_limit *l, const dw_limit_change *c, bool integral, char *err,
		   size_t errlen);

/* ---- registry ---------------------------------------------------------------------------- */

typedef struct dw_registry dw_registry;

int dw_registry_open(dw_registry **out);
void dw_registry_close(dw_registry *r);

/*
 * Add a subsystem; the dw_scalable struct is copied, the object it points to must outlive its
 * registration. DW_EEXIST if the name is taken, DW_ELIMIT if the name is malformed.
 */
int dw_registry_add(dw_registry *r, const dw_scalable *s);
/* Remove by name; DW_ENOTFOUND if absent. Waits for calls in progress on it to finish. */
int dw_registry_remove(dw_registry *r, const char *name);

/* Calls fn for each subsystem in registration order, under a read lock. */
typedef void (*dw_scalable_fn)(void *arg, const dw_scalable *s);
int dw_registry_foreach(dw_registry *r, dw_scalable_fn fn, void *arg);

/* Reconfigure one subsystem by name: DW_ENOTFOUND, or what its reconfigure returned. */
int dw_registry_reconfigure(dw_registry *r, const char *name, const dw_limit_change *changes,
			    size_t n, char *err, size_t errlen);

/* Number of registered subsystems. */
size_t dw_registry_count(dw_registry *r);

#ifdef __cplusplus
}
#endif
#endif
