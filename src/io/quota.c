// SPDX-License-Identifier: MIT
/*
 * Per-caller I/O quotas: bytes and ops per fixed window (1 h by default), windows aligned on the
 * wall clock (window number = wall time / window length) so that they mean the same thing across
 * a restart.
 *
 * Admission rule: an op is admitted while the caller's use is below its limit, and then counted.
 * So the admitted bytes of a window never exceed quota + the size of one op (the last one
 * admitted), and ops never exceed the op quota.
 *
 * Persistence (dw_store, key dw://internal/io/quota/<caller>, value "1 window bytes ops custom
 * limit_bytes limit_ops" in decimal): writing every op would put an fsync on every I/O, so usage is
 * reserved ahead in steps of 1/16 of the limit: before use passes the stored figure, the figure
 * is raised by a step and written. A process killed at any moment has stored at least what it
 * admitted, and after a restart the caller resumes from the stored figure: the rule above holds
 * across restarts, at the price of up to one step of quota lost on a crash. A clean close
 * writes the exact figures.
 *
 * Threads and locking: one mutex guards the table and is held across store writes (rare: once
 * per step per caller).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "io/io_int.h"

#define QUOTA_BUCKETS 256
#define QUOTA_MAX     65536 /* callers tracked; a cap on the table */
#define QUOTA_ID_MAX  64
#define QUOTA_STEPS   16 /* reservation step = limit / QUOTA_STEPS */
#define KEY_PREFIX    "dw://internal/io/quota/"

struct qent {
	struct qent *next;
	char id[QUOTA_ID_MAX + 1];
	bool custom; /* limits set for this caller; else the defaults */
	uint64_t lim_bytes, lim_ops;
	uint64_t window;
	uint64_t used_bytes, used_ops;
	uint64_t res_bytes, res_ops; /* stored (reserved) figures for this window */
	bool dirty;		     /* used differs from what is stored */
};

struct io_quota {
	pthread_mutex_t lock;
	const dw_clock *clock;
	dw_store *store;
	uint64_t window_ns, def_bytes, def_ops; /* protected by lock */
	struct qent *b[QUOTA_BUCKETS];		/* protected by lock */
	unsigned n;				/* protected by lock */
};

int dw__quota_id_check(const char *caller)
{
	size_t n = 0;

	if (!caller)
		return DW_EUSAGE;
	for (; caller[n]; n++) {
		char c = caller[n];

		if (n >= QUOTA_ID_MAX)
			return DW_EUSAGE;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return DW_EUSAGE;
	}
	return n ? 0 : DW_EUSAGE;
}

static unsigned hash_id(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % QUOTA_BUCKETS;
}

static uint64_t cur_window(struct io_quota *q)
{
	return dw_clock_wall(q->clock) / q->window_ns;
}

static uint64_t lim_bytes(const struct io_quota *q, const struct qent *e)
{
	return e->custom ? e->lim_bytes : q->def_bytes;
}

static uint64_t lim_ops(const struct io_quota *q, const struct qent *e)
{
	return e->custom ? e->lim_ops : q->def_ops;
}

static int key_of(const char *id, char *key, size_t cap)
{
	int n = snprintf(key, cap, KEY_PREFIX "%s", id);

	return n < 0 || (size_t)n >= cap ? DW_ETOOBIG : 0;
}

/* Store e's figures: reserved (res_*) during a window, exact ones when flushing. */
static int save(struct io_quota *q, struct qent *e, uint64_t bytes, uint64_t ops)
{
	char key[sizeof(KEY_PREFIX) + QUOTA_ID_MAX + 1], val[160];
	int n, rc;

	if (!q->store)
		return 0;
	rc = key_of(e->id, key, sizeof(key));
	if (rc < 0)
		return rc;
	n = snprintf(val, sizeof(val),
		     "1 %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %" PRIu64 " %" PRIu64, e->window,
		     bytes, ops, e->custom ? 1 : 0, e->lim_bytes, e->lim_ops);
	if (n < 0 || (size_t)n >= sizeof(val))
		return DW_ETOOBIG;
	return dw_store_put(q->store, key, val, (size_t)n);
}

/* Load a caller's stored state into e (fresh entry). Missing or unreadable: nothing. */
/* e's stored state, if the store has it: true if it did. */
static bool load(struct io_quota *q, struct qent *e)
{
	char key[sizeof(KEY_PREFIX) + QUOTA_ID_MAX + 1];
	uint64_t win, bytes, ops, lb, lo;
	void *val = NULL;
	size_t len = 0;
	int custom;

	bool found = false;

	if (!q->store || key_of(e->id, key, sizeof(key)) < 0)
		return false;
	if (dw_store_get(q->store, key, &val, &len) < 0)
		return false;
	if (sscanf(val, "1 %" SCNu64 " %" SCNu64 " %" SCNu64 " %d %" SCNu64 " %" SCNu64, &win,
		   &bytes, &ops, &custom, &lb, &lo) == 6) {
		e->custom = custom != 0;
		e->lim_bytes = lb;
		e->lim_ops = lo;
		e->window = win;
		if (win == cur_window(q)) {
			e->used_bytes = e->res_bytes = bytes;
			e->used_ops = e->res_ops = ops;
		}
		found = true;
	} else {
		dw_log(DW_LOG_WARN, "io", "quota_corrupt", "caller=%s", e->id);
	}
	dw_free(val);
	return found;
}

static struct qent *find(struct io_quota *q, const char *id, bool create, int *err)
{
	unsigned h = hash_id(id);
	struct qent *e;

	*err = 0;
	for (e = q->b[h]; e; e = e->next) {
		if (strcmp(e->id, id) == 0)
			return e;
	}
	if (!create)
		return NULL;
	if (q->n >= QUOTA_MAX) {
		*err = DW_ETOOBIG;
		return NULL;
	}
	e = dw_calloc(1, sizeof(*e));
	if (!e) {
		*err = -ENOMEM;
		return NULL;
	}
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->window = cur_window(q);
	load(q, e);
	e->next = q->b[h];
	q->b[h] = e;
	q->n++;
	return e;
}

/* Start a new window if the clock has moved past e's. */
static void roll(struct io_quota *q, struct qent *e)
{
	uint64_t w = cur_window(q);

	if (w != e->window) {
		e->window = w;
		e->used_bytes = e->used_ops = 0;
		e->res_bytes = e->res_ops = 0;
		e->dirty = true;
	}
}

int dw__quota_admit(struct io_quota *q, const char *caller, uint64_t len)
{
	uint64_t lb, lo;
	struct qent *e;
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	e = find(q, caller, true, &rc);
	if (!e)
		goto out;
	roll(q, e);
	lb = lim_bytes(q, e);
	lo = lim_ops(q, e);
	if ((lb && e->used_bytes >= lb) || (lo && e->used_ops >= lo)) {
		rc = IO_QUOTA_OVER;
		goto out;
	}
	if (q->store &&
	    ((lb && e->used_bytes + len > e->res_bytes) || (lo && e->used_ops + 1 > e->res_ops))) {
		uint64_t nb = e->used_bytes + len + lb / QUOTA_STEPS;
		uint64_t no = e->used_ops + 1 + lo / QUOTA_STEPS;

		rc = save(q, e, nb, no);
		if (rc < 0)
			goto out; /* not recorded: not admitted */
		e->res_bytes = nb;
		e->res_ops = no;
	}
	e->used_bytes += len;
	e->used_ops++;
	e->dirty = true;
	rc = IO_QUOTA_OK;
out:
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void dw__quota_refund(struct io_quota *q, const char *caller, uint64_t len)
{
	struct qent *e;
	int rc;

	pthread_mutex_lock(&q->lock);
	e = find(q, caller, false, &rc);
	/* Same window only: a refund must not reach into a window that has been reset. */
	if (e && e->window == cur_window(q) && e->used_ops > 0) {
		e->used_ops--;
		e->used_bytes = e->used_bytes >= len ? e->used_bytes - len : 0;
		e->dirty = true;
	}
	pthread_mutex_unlock(&q->lock);
}

int dw__quota_set(struct io_quota *q, const char *caller, uint64_t bytes, uint64_t ops)
{
	struct qent *e;
	int rc;

	rc = dw__quota_id_check(caller);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&q->lock);
	e = find(q, caller, true, &rc);
	if (e) {
		roll(q, e);
		e->custom = true;
		e->lim_bytes = bytes;
		e->lim_ops = ops;
		rc = save(q, e, e->res_bytes > e->used_bytes ? e->res_bytes : e->used_bytes,
			  e->res_ops > e->used_ops ? e->res_ops : e->used_ops);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int dw__quota_get(struct io_quota *q, const char *caller, uint64_t *bytes, uint64_t *ops)
{
	struct qent *e;
	int rc;

	*bytes = *ops = 0;
	rc = dw__quota_id_check(caller);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&q->lock);
	e = find(q, caller, false, &rc);
	if (e) {
		roll(q, e);
		*bytes = e->used_bytes;
		*ops = e->used_ops;
	} else {
		/*
		 * A caller seen only by an earlier process is in the store: read it there, without
		 * adding it to the table (a lookup of any name must not grow it).
		 */
		struct qent tmp;

		memset(&tmp, 0, sizeof(tmp));
		snprintf(tmp.id, sizeof(tmp.id), "%s", caller);
		tmp.window = cur_window(q);
		if (load(q, &tmp)) {
			roll(q, &tmp);
			*bytes = tmp.used_bytes;
			*ops = tmp.used_ops;
		} else {
			rc = DW_ENOTFOUND;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void dw__quota_set_defaults(struct io_quota *q, uint64_t window_ns, uint64_t bytes, uint64_t ops)
{
	pthread_mutex_lock(&q->lock);
	if (window_ns)
		q->window_ns = window_ns;
	q->def_bytes = bytes;
	q->def_ops = ops;
	pthread_mutex_unlock(&q->lock);
}

int dw__quota_flush(struct io_quota *q)
{
	int rc = 0, r;

	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < QUOTA_BUCKETS; i++) {
		for (struct qent *e = q->b[i]; e; e = e->next) {
			if (!e->dirty)
				continue;
			r = save(q, e, e->used_bytes, e->used_ops);
			if (r < 0) {
				rc = r;
				continue;
			}
			e->res_bytes = e->used_bytes;
			e->res_ops = e->used_ops;
			e->dirty = false;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int dw__quota_open(const dw_clock *clock, dw_store *store, uint64_t window_ns, uint64_t def_bytes,
		   uint64_t def_ops, struct io_quota **out)
{
	struct io_quota *q;

	*out = NULL;
	if (window_ns == 0)
		return DW_ECONFIG;
	q = dw_calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->clock = clock;
	q->store = store;
	q->window_ns = window_ns;
	q->def_bytes = def_bytes;
	q->def_ops = def_ops;
	*out = q;
	return 0;
}

void dw__quota_close(struct io_quota *q)
{
	if (!q)
		return;
	dw__quota_flush(q);
	for (unsigned i = 0; i < QUOTA_BUCKETS; i++) {
		struct qent *e = q->b[i];

		while (e) {
			struct qent *next = e->next;

			dw_free(e);
			e = next;
		}
	}
	pthread_mutex_destroy(&q->lock);
	dw_free(q);
}
