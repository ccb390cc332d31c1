// SPDX-License-Identifier: MIT
/*
 * The subsystem registry.
 *
 * Threads and locking: one rwlock guards the entry array. foreach and reconfigure hold it for
 * reading while they call into a subsystem, so dw_registry_remove (which takes it for writing)
 * returns only once no call into the removed subsystem is in progress; after that the caller may
 * free the subsystem. Subsystem callbacks must therefore not call back into the registry.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "dwscale/core.h"
#include "dwscale/scalable.h"

#define REGISTRY_MAX 64 /* a node has a handful of subsystems; a cap keeps the array fixed */

struct dw_registry {
	pthread_rwlock_t lock;
	dw_scalable entries[REGISTRY_MAX]; /* protected by lock */
	size_t n;			   /* protected by lock */
};

const char *dw_bp_state_name(dw_bp_state s)
{
	switch (s) {
	case DW_BP_NORMAL:
		return "normal";
	case DW_BP_WARNING:
		return "warning";
	case DW_BP_CRITICAL:
		return "critical";
	case DW_BP_SHEDDING:
		return "shedding";
	}
	return "unknown";
}

int dw_limit_check(const dw_limit *l, const dw_limit_change *c, bool integral, char *err,
		   size_t errlen)
{
	if (c->str) {
		snprintf(err, errlen, "limit %s takes a number", l->name);
		return DW_ELIMIT;
	}
	if (!isfinite(c->value) || c->value < l->min || c->value > l->max) {
		snprintf(err, errlen, "limit %s must be between %g and %g (got %g)", l->name,
			 l->min, l->max, c->value);
		return DW_ELIMIT;
	}
	if (integral && c->value != floor(c->value)) {
		snprintf(err, errlen, "limit %s must be a whole number (got %g)", l->name,
			 c->value);
		return DW_ELIMIT;
	}
	return 0;
}

static bool name_ok(const char *name)
{
	size_t n = 0;

	if (!name)
		return false;
	for (; name[n]; n++) {
		char ch = name[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
			return false;
	}
	return n > 0 && n <= 32;
}

int dw_registry_open(dw_registry **out)
{
	dw_registry *r;

	*out = NULL;
	r = dw_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (pthread_rwlock_init(&r->lock, NULL) != 0) {
		dw_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void dw_registry_close(dw_registry *r)
{
	if (!r)
		return;
	pthread_rwlock_destroy(&r->lock);
	dw_free(r);
}

static ssize_t find_locked(dw_registry *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->entries[i].name, name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

int dw_registry_add(dw_registry *r, const dw_scalable *s)
{
	int rc = 0;

	if (!s || !s->ops || !name_ok(s->name))
		return DW_ELIMIT;
	pthread_rwlock_wrlock(&r->lock);
	if (find_locked(r, s->name) >= 0) {
		rc = DW_EEXIST;
		goto out;
	}
	if (r->n == REGISTRY_MAX) {
		rc = -ENOSPC;
		goto out;
	}
	r->entries[r->n++] = *s;
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int dw_registry_remove(dw_registry *r, const char *name)
{
	ssize_t i;
	int rc = 0;

	pthread_rwlock_wrlock(&r->lock);
	i = find_locked(r, name);
	if (i < 0) {
		rc = DW_ENOTFOUND;
		goto out;
	}
	memmove(&r->entries[i], &r->entries[i + 1], (r->n - (size_t)i - 1) * sizeof(r->entries[0]));
	r->n--;
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int dw_registry_foreach(dw_registry *r, dw_scalable_fn fn, void *arg)
{
	pthread_rwlock_rdlock(&r->lock);
	for (size_t i = 0; i < r->n; i++)
		fn(arg, &r->entries[i]);
	pthread_rwlock_unlock(&r->lock);
	return 0;
}

int dw_registry_reconfigure(dw_registry *r, const char *name, const dw_limit_change *changes,
			    size_t n, char *err, size_t errlen)
{
	ssize_t i;
	int rc;

	if (errlen)
		err[0] = '\0';
	pthread_rwlock_rdlock(&r->lock);
	i = find_locked(r, name);
	if (i < 0) {
		snprintf(err, errlen, "no subsystem named %s", name);
		rc = DW_ENOTFOUND;
		goto out;
	}
	if (!r->entries[i].ops->reconfigure) {
		snprintf(err, errlen, "subsystem %s has no reconfigurable limits", name);
		rc = DW_EUNSUPPORTED;
		goto out;
	}
	rc = r->entries[i].ops->reconfigure(r->entries[i].self, changes, n, err, errlen);
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

size_t dw_registry_count(dw_registry *r)
{
	size_t n;

	pthread_rwlock_rdlock(&r->lock);
	n = r->n;
	pthread_rwlock_unlock(&r->lock);
	return n;
}
