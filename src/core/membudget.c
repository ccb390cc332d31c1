// SPDX-License-Identifier: MIT
/*
 * Memory budget: a counter of bytes in use against a total, shared by every stream (dw_bbuf) that
 * charges it, so that many concurrent streams cannot together exhaust memory. See bbuf.h for the
 * rules streams follow on top of it.
 *
 * A budget is only accounting: it never allocates the memory it grants. Grants are whole
 * requests (a chunk), first come first served among the waiters that the condition variable
 * wakes; there is no queue, because waiters ask for equal sizes in practice (one chunk each) and
 * the streams' own rule 4 (give chunks back while someone waits) is what spreads memory among
 * them.
 *
 * Time. Deadlines are measured on the caller's dw_clock. With the real clock the waiter sleeps
 * on a CLOCK_MONOTONIC condition variable until the deadline; with any other clock (a test's fake
 * clock) it cannot know when that clock will move, so it rechecks every POLL_MS of real time.
 *
 * Threads and locking
 *   - lock guards total, in_use, peak and waiting; cond is signalled (broadcast) on every release,
 *     on a raised total and by dw__membudget_wake.
 *   - in_use, peak, total and waiting are also readable without the lock (relaxed atomics, for
 *     metrics and the has-waiters hint); they are only written under lock.
 *   - refs counts the owner plus every stream using the budget; the last unref frees it. The
 *     default budget is static and never freed.
 *   - A stop() callback runs under lock: it must only read atomics (it must not take a lock that
 *     is held while calling into the budget).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "bbuf_int.h"

#define POLL_MS 2 /* recheck period of a waiter measured on a non-real clock */

struct dw_membudget {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic size_t total;	/* protected by lock (written) */
	_Atomic size_t in_use;	/* protected by lock (written) */
	_Atomic size_t peak;	/* protected by lock (written) */
	_Atomic size_t waiting; /* protected by lock (written) */
	_Atomic uint64_t timeouts;
	_Atomic unsigned long refs;
	bool is_default;
};

static dw_membudget default_budget;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static int budget_init(dw_membudget *b, size_t total)
{
	pthread_condattr_t ca;
	int rc;

	rc = pthread_mutex_init(&b->lock, NULL);
	if (rc)
		return -rc;
	rc = pthread_condattr_init(&ca);
	if (rc)
		goto err_mutex;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		goto err_mutex;
	atomic_init(&b->total, total);
	atomic_init(&b->in_use, 0);
	atomic_init(&b->peak, 0);
	atomic_init(&b->waiting, 0);
	atomic_init(&b->timeouts, 0);
	atomic_init(&b->refs, 1);
	return 0;
err_mutex:
	pthread_mutex_destroy(&b->lock);
	return -rc;
}

static void default_init(void)
{
	/* only fails on resource exhaustion at start-up; nothing sensible can continue then */
	if (budget_init(&default_budget, DW_MEMBUDGET_DEFAULT_TOTAL) < 0)
		abort();
	default_budget.is_default = true;
}

dw_membudget *dw_membudget_default(void)
{
	pthread_once(&default_once, default_init);
	return &default_budget;
}

int dw_membudget_open(size_t total_bytes, dw_membudget **out)
{
	dw_membudget *b;
	int rc;

	*out = NULL;
	if (total_bytes == 0)
		return DW_ELIMIT;
	b = dw_calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	rc = budget_init(b, total_bytes);
	if (rc < 0) {
		dw_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

void dw__membudget_ref(dw_membudget *b)
{
	if (!b->is_default)
		atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void dw__membudget_unref(dw_membudget *b)
{
	if (!b || b->is_default)
		return;
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	dw_free(b);
}

void dw_membudget_close(dw_membudget *b)
{
	dw__membudget_unref(b);
}

int dw_membudget_set_total(dw_membudget *b, size_t total_bytes)
{
	if (total_bytes == 0)
		return DW_ELIMIT;
	pthread_mutex_lock(&b->lock);
	atomic_store_explicit(&b->total, total_bytes, memory_order_relaxed);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

size_t dw_membudget_total(dw_membudget *b)
{
	return atomic_load_explicit(&b->total, memory_order_relaxed);
}

size_t dw_membudget_in_use(dw_membudget *b)
{
	return atomic_load_explicit(&b->in_use, memory_order_relaxed);
}

size_t dw_membudget_peak(dw_membudget *b)
{
	return atomic_load_explicit(&b->peak, memory_order_relaxed);
}

void dw_membudget_reset_peak(dw_membudget *b)
{
	pthread_mutex_lock(&b->lock);
	atomic_store_explicit(&b->peak, atomic_load_explicit(&b->in_use, memory_order_relaxed),
			      memory_order_relaxed);
	pthread_mutex_unlock(&b->lock);
}

size_t dw_membudget_waiting(dw_membudget *b)
{
	return atomic_load_explicit(&b->waiting, memory_order_relaxed);
}

uint64_t dw_membudget_timeouts(dw_membudget *b)
{
	return atomic_load_explicit(&b->timeouts, memory_order_relaxed);
}

bool dw__membudget_has_waiters(dw_membudget *b)
{
	return atomic_load_explicit(&b->waiting, memory_order_relaxed) != 0;
}

/* Grant bytes if they fit. Caller holds lock. */
static bool take_locked(dw_membudget *b, size_t bytes)
{
	size_t total = atomic_load_explicit(&b->total, memory_order_relaxed);
	size_t used = atomic_load_explicit(&b->in_use, memory_order_relaxed);

	if (used > total || bytes > total - used)
		return false;
	used += bytes;
	atomic_store_explicit(&b->in_use, used, memory_order_relaxed);
	if (used > atomic_load_explicit(&b->peak, memory_order_relaxed))
		atomic_store_explicit(&b->peak, used, memory_order_relaxed);
	return true;
}

bool dw__membudget_try_acquire(dw_membudget *b, size_t bytes)
{
	bool ok;

	pthread_mutex_lock(&b->lock);
	ok = take_locked(b, bytes);
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static void add_ms(struct timespec *ts, uint64_t ms)
{
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int dw__membudget_acquire_stoppable(dw_membudget *b, size_t bytes, uint64_t wait_ms,
				    const dw_clock *clock, bool (*stop)(void *arg), void *arg)
{
	bool real = !clock || clock == dw_clock_real();
	uint64_t start = 0, deadline = 0;
	struct timespec real_deadline;
	int rc = 0;

	pthread_mutex_lock(&b->lock);
	if (bytes > atomic_load_explicit(&b->total, memory_order_relaxed)) {
		rc = DW_EBUDGET;
		goto out;
	}
	if (take_locked(b, bytes))
		goto out;
	if (wait_ms == 0) {
		rc = DW_EBUDGET;
		goto out;
	}
	if (wait_ms != DW_MEMBUDGET_WAIT_FOREVER) {
		start = dw_clock_now(clock);
		deadline = wait_ms > (UINT64_MAX - start) / DW_NS_PER_MS
				   ? UINT64_MAX
				   : start + wait_ms * DW_NS_PER_MS;
		if (real) {
			clock_gettime(CLOCK_MONOTONIC, &real_deadline);
			add_ms(&real_deadline, wait_ms);
		}
	}
	atomic_fetch_add_explicit(&b->waiting, 1, memory_order_relaxed);
	for (;;) {
		if (stop && stop(arg)) {
			rc = DW_ECANCELED;
			break;
		}
		if (take_locked(b, bytes))
			break;
		if (wait_ms == DW_MEMBUDGET_WAIT_FOREVER) {
			pthread_cond_wait(&b->cond, &b->lock);
			continue;
		}
		if (dw_clock_now(clock) >= deadline) {
			rc = DW_EBUDGET;
			atomic_fetch_add_explicit(&b->timeouts, 1, memory_order_relaxed);
			break;
		}
		if (real) {
			pthread_cond_timedwait(&b->cond, &b->lock, &real_deadline);
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			add_ms(&ts, POLL_MS);
			pthread_cond_timedwait(&b->cond, &b->lock, &ts);
		}
	}
	atomic_fetch_sub_explicit(&b->waiting, 1, memory_order_relaxed);
out:
	pthread_mutex_unlock(&b->lock);
	return rc;
}

int dw_membudget_acquire(dw_membudget *b, size_t bytes, uint64_t wait_ms, const dw_clock *clock)
{
	return dw__membudget_acquire_stoppable(b, bytes, wait_ms, clock, NULL, NULL);
}

void dw_membudget_release(dw_membudget *b, size_t bytes)
{
	size_t used;

	if (bytes == 0)
		return;
	pthread_mutex_lock(&b->lock);
	used = atomic_load_explicit(&b->in_use, memory_order_relaxed);
	/* a release larger than what is in use is a caller bug; never wrap the counter */
	atomic_store_explicit(&b->in_use, bytes > used ? 0 : used - bytes, memory_order_relaxed);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

void dw__membudget_wake(dw_membudget *b)
{
	pthread_mutex_lock(&b->lock);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}
