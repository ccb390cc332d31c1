// SPDX-License-Identifier: MIT
/*
 * Parallel health checks with a deadline.
 *
 * Each strategy has one long-lived health worker thread, started by the first check. A check
 * posts a request to every idle worker at once and waits for all of them until one shared
 * deadline. A worker still stuck in an earlier ping (a hung backend: a PostgreSQL server stopped
 * with SIGSTOP never answers) gets no new request, and its strategy is reported timed out at the
 * deadline; the caller never waits past the deadline and no thread is started per check, so a
 * hung backend costs exactly one blocked thread, however often it is checked.
 *
 * Threads and locking: w->lock guards every field of a worker below it; the worker runs the ping
 * without the lock. Lock order: a single worker lock at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db_int.h"

struct dw__db_health_worker {
	struct dw__db_slot *slot;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;	       /* CLOCK_MONOTONIC */
	uint64_t requested, completed; /* protected by lock */
	bool busy, stop;	       /* protected by lock */
	int last_rc;		       /* protected by lock */
	double last_latency_ms;	       /* protected by lock */
	uint64_t consecutive_failures; /* protected by lock */
	uint64_t checks, failures;     /* protected by lock */
	uint64_t counted;	       /* request already counted as failed (timed out) */
	char last_error[256];	       /* protected by lock */
};

static void *worker_main(void *arg)
{
	struct dw__db_health_worker *w = arg;
	struct dw__db_strategy *s = w->slot->s;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		uint64_t want;
		uint64_t t0, t1;
		int rc;

		while (!w->stop && w->requested == w->completed)
			pthread_cond_wait(&w->cv, &w->lock);
		if (w->stop)
			break;
		want = w->requested;
		w->busy = true;
		pthread_mutex_unlock(&w->lock);
		t0 = dw_clock_now(NULL);
		rc = s->ops->ping(s);
		t1 = dw_clock_now(NULL);
		pthread_mutex_lock(&w->lock);
		w->busy = false;
		w->last_latency_ms = (double)(t1 - t0) / 1e6;
		w->last_rc = rc;
		w->checks++;
		if (rc < 0) {
			if (w->counted != want) {
				w->failures++;
				w->consecutive_failures++;
			}
			snprintf(w->last_error, sizeof(w->last_error), "%s", s->ops->errmsg(s));
		} else {
			w->consecutive_failures = 0;
		}
		w->completed = want;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int worker_start(struct dw__db_slot *slot)
{
	struct dw__db_health_worker *w;
	pthread_condattr_t ca;
	int rc;

	w = dw_calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->slot = slot;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&w->thread, NULL, worker_main, w);
	if (rc < 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->lock);
		dw_free(w);
		return rc;
	}
	slot->health = w;
	return 0;
}

void dw__db_health_stop(struct dw__db_slot *slot)
{
	struct dw__db_health_worker *w = slot->health;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->lock);
	/* A worker blocked in a ping returns when the backend call does (its own timeouts). */
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	dw_free(w);
	slot->health = NULL;
}

static void fill(struct dw__db_health_worker *w, dw_db_health *h, bool done)
{
	snprintf(h->name, sizeof(h->name), "%s", w->slot->name);
	snprintf(h->kind, sizeof(h->kind), "%s", w->slot->s->ops->kind);
	h->checks = w->checks;
	h->failures = w->failures;
	if (done) {
		h->rc = w->last_rc;
		h->latency_ms = w->last_latency_ms;
	} else {
		h->rc = DW_ETIMEDOUT;
		h->latency_ms = -1;
	}
	h->ok = h->rc == 0;
	h->consecutive_failures = w->consecutive_failures;
	if (!done)
		snprintf(h->last_error, sizeof(h->last_error), "no answer within the deadline");
	else
		snprintf(h->last_error, sizeof(h->last_error), "%s", h->ok ? "" : w->last_error);
}

int dw_db_health_check(dw_db *db, uint64_t deadline_ms, dw_db_health *out, size_t cap, size_t *n)
{
	uint64_t want[DW_DB_STRATEGIES_MAX];
	struct timespec dl;
	uint64_t end;
	int rc;

	*n = 0;
	if (cap < db->n)
		return -ENOSPC;
	if (deadline_ms == 0)
		deadline_ms = atomic_load_explicit(&db->health_deadline_ms, memory_order_relaxed);
	end = dw_clock_now(NULL) + deadline_ms * DW_NS_PER_MS;
	dl.tv_sec = (time_t)(end / DW_NS_PER_SEC);
	dl.tv_nsec = (long)(end % DW_NS_PER_SEC);
	pthread_mutex_lock(&db->health_lock);
	for (size_t i = 0; i < db->n; i++) {
		struct dw__db_slot *sl = &db->slots[i];

		if (!sl->health) {
			rc = worker_start(sl);
			if (rc < 0) {
				pthread_mutex_unlock(&db->health_lock);
				return rc;
			}
		}
	}
	pthread_mutex_unlock(&db->health_lock);
	/* Post every request first, so the checks run at the same time. */
	for (size_t i = 0; i < db->n; i++) {
		struct dw__db_health_worker *w = db->slots[i].health;

		pthread_mutex_lock(&w->lock);
		if (!w->busy && w->requested == w->completed)
			w->requested++;
		want[i] = w->requested;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->lock);
	}
	for (size_t i = 0; i < db->n; i++) {
		struct dw__db_health_worker *w = db->slots[i].health;
		bool done;

		pthread_mutex_lock(&w->lock);
		while (w->completed < want[i]) {
			if (pthread_cond_timedwait(&w->cv, &w->lock, &dl) == ETIMEDOUT)
				break;
		}
		done = w->completed >= want[i];
		if (!done) {
			/* A timeout is a failure; the count resets when the strategy answers. */
			w->failures++;
			w->consecutive_failures++;
			w->counted = want[i];
		}
		fill(w, &out[i], done);
		pthread_mutex_unlock(&w->lock);
	}
	*n = db->n;
	return 0;
}

int dw__db_health_last(struct dw__db_slot *slot, uint64_t *consecutive_failures, double *latency_ms)
{
	struct dw__db_health_worker *w = slot->health;
	int up;

	*consecutive_failures = 0;
	*latency_ms = 0;
	if (!w)
		return -1;
	pthread_mutex_lock(&w->lock);
	if (w->checks == 0 && w->failures == 0) {
		up = -1;
	} else {
		up = w->consecutive_failures == 0;
		*consecutive_failures = w->consecutive_failures;
		*latency_ms = w->last_latency_ms;
	}
	pthread_mutex_unlock(&w->lock);
	return up;
}
