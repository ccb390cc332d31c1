// SPDX-License-Identifier: MIT
/*
 * The per-device I/O scheduler: three tier queues feeding one backend at most *depth* deep.
 *
 * Choosing the next op (pick_tier), each time a slot is free:
 *   1. Deadlines first. If the head of any queue has waited past its tier's deadline, the head
 *      whose deadline passed earliest goes. This is what bounds Low's wait under a High flood.
 *   2. Otherwise weighted rounds: each tier holds credit (its weight, 16:4:1 by default); the
 *      highest tier with queued work and credit goes and spends one credit; when no tier with
 *      queued work has credit left, every credit is refilled. With all three backlogged this
 *      serves exactly 16 High, 4 Normal, 1 Low per round.
 *   3. While High is active (queued, in flight, or seen within high_linger_ns), Low may hold at
 *      most low_cap slots (default depth / 32, see low_cap()); an overdue Low op ignores that cap
 * (never the depth). Keeping the device's own queue short is what keeps High latency low on a
 * shared disk; kernel ioprio cannot do it once the requests are in the device.
 *
 * Invariants
 *   1. inflight <= depth whenever an op is dispatched (a depth cut only stops dispatch until
 *      enough ops complete; nothing is cancelled).
 *   2. Every op is in exactly one place: a tier queue, the backend, or its callback. It moves
 *      queue -> backend in dispatch(), backend -> queue only when the backend refused it
 *      (requeued at the head, once per op; refused again it goes to `failed`, whose callbacks
 *      run_failed() calls on the next tick with no lock held), and backend -> callback in
 *      dw__sched_complete().
 *   3. Switching backend: `switching` stops dispatch; when inflight reaches 0 the pending backend
 *      takes over (swap_backend) and the old one goes to `retired`, closed by the next tick on the
 *      dispatch thread (never on a backend thread, which could not join itself).
 *   4. Backpressure state changes only in bp_update(), on every queue length change and tick:
 *      up as soon as the fill ratio reaches a threshold, down only once it falls below the
 *      threshold minus the hysteresis.
 *
 * Dispatch is done by whichever thread changes the state (submitter, completion, tick), holding
 * the lock, so an idle device adds no thread hop to an op. The dispatch thread wakes every tick
 * for what no event drives: a High-linger expiry, the re-probe timer, backend failures, and
 * closing retired backends.
 *
 * Threads and locking
 *   - lock guards every field below marked so; backends' submit and set_depth are called with
 *     it held (lock order: scheduler lock, then backend locks). Completion callbacks and
 *     reprobe() run without it.
 *   - wake (cond) wakes the dispatch thread; drained (cond) is broadcast when inflight drops to 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "io/io_int.h"

#define BATCH_MAX 32 /* ops handed to the backend per submit call: one io_uring_enter */

struct io_queue {
	struct io_op *head, *tail;
};

struct io_sched {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_cond_t drained;
	const dw_clock *clock;

	struct io_sched_params p;	      /* protected by lock */
	unsigned depth;			      /* protected by lock */
	struct io_queue q[DW_IO_TIERS];	      /* protected by lock */
	unsigned credit[DW_IO_TIERS];	      /* protected by lock */
	unsigned queued, inflight;	      /* protected by lock */
	uint64_t last_high_ns;		      /* protected by lock */
	bool high_seen;			      /* protected by lock */
	dw_bp_state bp;			      /* protected by lock */
	struct io_tier_stats st[DW_IO_TIERS]; /* protected by lock */

	struct io_backend *be;	    /* protected by lock */
	struct io_backend *pending; /* protected by lock: switch target */
	struct io_backend *retired; /* protected by lock: to close on the next tick */
	struct io_op *failed;	    /* protected by lock: refused twice, callbacks not yet run */
	bool switching;		    /* protected by lock */
	int fail_code;		    /* protected by lock: backend failure awaiting reprobe */
	int last_err;		    /* protected by lock */
	unsigned switches;	    /* protected by lock */
	bool closing, stop;	    /* protected by lock */
	unsigned reprobing;	    /* protected by lock: reprobe() calls in progress */

	bool thread;
	pthread_t tid;
	uint64_t tick_ns;
	uint64_t reprobe_ns;	/* protected by lock */
	uint64_t next_probe_ns; /* protected by lock */
	int (*reprobe)(void *ctx, struct io_sched *s, int failed, struct io_backend **nb);
	void *reprobe_ctx;
};

/* ---- histogram -------------------------------------------------------------------------- */

static unsigned hist_index(uint64_t v)
{
	unsigned msb;

	if (v < 16)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return (msb - 3) * 16 + (unsigned)((v >> (msb - 4)) & 15);
}

/* Lowest value of bucket i and its width. */
static void hist_bucket(unsigned i, uint64_t *lo, uint64_t *width)
{
	unsigned msb, sub;

	if (i < 16) {
		*lo = i;
		*width = 1;
		return;
	}
	msb = i / 16 + 3;
	sub = i % 16;
	*lo = (1ULL << msb) + ((uint64_t)sub << (msb - 4));
	*width = 1ULL << (msb - 4);
}

void dw__hist_add(struct io_hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->n++;
}

uint64_t dw__hist_quantile(const struct io_hist *h, double q)
{
	uint64_t rank, seen = 0, lo, width;

	if (h->n == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = (uint64_t)(q * (double)(h->n - 1)) + 1;
	for (unsigned i = 0; i < IO_HIST_N; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			hist_bucket(i, &lo, &width);
			return lo + width / 2;
		}
	}
	return 0;
}

/* ---- parameters ------------------------------------------------------------------------- */

void dw__sched_params_from_config(const dw_io_config *cfg, struct io_sched_params *p)
{
	memset(p, 0, sizeof(*p));
	for (int t = 0; t < DW_IO_TIERS; t++) {
		p->weight[t] = cfg->weight[t];
		p->deadline_ns[t] = cfg->deadline_ns[t];
	}
	p->low_cap = cfg->low_cap;
	p->high_linger_ns = cfg->high_linger_ns;
	p->max_queued = cfg->max_queued;
	p->bp_up[DW_BP_NORMAL] = 0;
	p->bp_up[DW_BP_WARNING] = cfg->bp_warning;
	p->bp_up[DW_BP_CRITICAL] = cfg->bp_critical;
	p->bp_up[DW_BP_SHEDDING] = cfg->bp_shedding;
	p->bp_hysteresis = cfg->bp_hysteresis;
}

/* ---- queues ----------------------------------------------------------------------------- */

static void q_push(struct io_queue *q, struct io_op *op)
{
	op->next = NULL;
	if (q->tail)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
}

static void q_push_front(struct io_queue *q, struct io_op *op)
{
	op->next = q->head;
	q->head = op;
	if (!q->tail)
		q->tail = op;
}

static struct io_op *q_pop(struct io_queue *q)
{
	struct io_op *op = q->head;

	if (op) {
		q->head = op->next;
		if (!q->head)
			q->tail = NULL;
		op->next = NULL;
	}
	return op;
}

/* ---- state ------------------------------------------------------------------------------- */

static void bp_update(struct io_sched *s)
{
	double ratio = s->p.max_queued ? (double)s->queued / (double)s->p.max_queued : 0;
	dw_bp_state st = s->bp;

	while (st < DW_BP_SHEDDING && ratio >= s->p.bp_up[st + 1])
		st++;
	while (st > DW_BP_NORMAL && ratio < s->p.bp_up[st] - s->p.bp_hysteresis)
		st--;
	s->bp = st;
}

/*
 * Low's share of the depth while High is active: low_cap, or by default depth / 32 (at least 1):
 * 1 on SSD and HDD class devices, 4 at NVMe's 128. Each Low read in the device is one High read
 * can queue behind. bench/io.sh prints the frontier this trades along; on the virtual disk the
 * figures in README come from, a 128k Low read at c = 1 costs High's p99 about 3x, at c = 2 about
 * 5x and at c = 4 about 9x, while Low alone at queue depth 1 still reads 0.7x of its depth-32
 * rate (sequential reads stay fast at low depth).
 */
static unsigned low_cap(const struct io_sched *s)
{
	unsigned c = s->p.low_cap ? s->p.low_cap : s->depth / 32;

	return c ? c : 1;
}

static bool high_active(const struct io_sched *s, uint64_t now)
{
	return s->q[DW_IO_HIGH].head || s->st[DW_IO_HIGH].inflight ||
	       (s->high_seen && now - s->last_high_ns < s->p.high_linger_ns);
}

/* Tier of the next op to dispatch, or -1. See the header comment. */
static int pick_tier(struct io_sched *s, uint64_t now)
{
	bool eligible[DW_IO_TIERS], any = false;
	uint64_t best_due = UINT64_MAX;
	int best = -1;

	for (int t = 0; t < DW_IO_TIERS; t++) {
		struct io_op *h = s->q[t].head;
		uint64_t due;

		if (!h)
			continue;
		due = h->enq_ns + s->p.deadline_ns[t];
		if (now >= due && due < best_due) {
			best_due = due;
			best = t;
		}
	}
	if (best >= 0)
		return best;

	for (int t = 0; t < DW_IO_TIERS; t++) {
		eligible[t] = s->q[t].head != NULL;
		if (t == DW_IO_LOW && eligible[t] && s->st[t].inflight >= low_cap(s) &&
		    high_active(s, now))
			eligible[t] = false;
		any |= eligible[t];
	}
	if (!any)
		return -1;
	for (int pass = 0; pass < 2; pass++) {
		for (int t = 0; t < DW_IO_TIERS; t++) {
			if (eligible[t] && s->credit[t] > 0) {
				s->credit[t]--;
				return t;
			}
		}
		for (int t = 0; t < DW_IO_TIERS; t++)
			s->credit[t] = s->p.weight[t];
	}
	return -1; /* every eligible tier has weight 0: refused by config checks */
}

/* The backend failed (code rc): stop dispatching until the dispatch thread has re-probed. */
static void backend_failed(struct io_sched *s, int rc)
{
	if (!s->fail_code) {
		char name[32];

		snprintf(name, sizeof(name), "%s", dw_err_name(rc));
		dw_log(DW_LOG_WARN, "io", "backend_failed", "backend=%s err=%s",
		       dw_io_engine_name(s->be ? s->be->engine : DW_IO_ENGINE_AUTO), name);
	}
	s->fail_code = rc;
	s->last_err = rc;
	pthread_cond_broadcast(&s->wake);
}

/* Put a dispatched op back at the head of its queue (the backend did not take it). */
static void requeue(struct io_sched *s, struct io_op *op)
{
	struct io_tier_stats *st = &s->st[op->tier];

	op->retried = 1;
	st->inflight--;
	s->inflight--;
	st->queued++;
	s->queued++;
	q_push_front(&s->q[op->tier], op);
}

static void dispatch(struct io_sched *s)
{
	struct io_op *batch[BATCH_MAX];
	unsigned n, started;
	uint64_t now;
	int rc;

	if (!s->be || s->switching || s->fail_code)
		return;
	now = dw_clock_now(s->clock);
	for (;;) {
		n = 0;
		while (n < BATCH_MAX && s->inflight < s->depth) {
			int t = pick_tier(s, now);
			struct io_op *op;
			struct io_tier_stats *st;
			uint64_t wait;

			if (t < 0)
				break;
			op = q_pop(&s->q[t]);
			st = &s->st[t];
			st->queued--;
			s->queued--;
			st->inflight++;
			s->inflight++;
			op->disp_ns = now;
			wait = now - op->enq_ns;
			if (wait > st->max_wait_ns)
				st->max_wait_ns = wait;
			if (t == DW_IO_HIGH) {
				s->last_high_ns = now;
				s->high_seen = true;
			}
			batch[n++] = op;
		}
		if (n == 0)
			break;
		started = 0;
		rc = s->be->ops->submit(s->be, batch, n, &started);
		if (rc < 0) {
			/* Reverse order keeps each queue's FIFO order at its head. */
			for (unsigned i = n; i-- > started;) {
				struct io_op *op = batch[i];

				if (op->retried) {
					/* Refused twice: give the caller the error. */
					struct io_tier_stats *st = &s->st[op->tier];

					st->inflight--;
					s->inflight--;
					st->errors++;
					st->completed++;
					/*
					 * Not called here: dispatch runs under locks of its callers
					 * (the manager's, during a depth change). run_failed()
					 * calls it with no lock held.
					 */
					op->res = rc;
					op->next = s->failed;
					s->failed = op;
				} else {
					requeue(s, op);
				}
			}
			backend_failed(s, rc);
			break;
		}
		if (n < BATCH_MAX)
			break;
	}
	bp_update(s);
}

static void swap_backend(struct io_sched *s)
{
	struct io_backend *old = s->be;

	s->be = s->pending;
	s->pending = NULL;
	s->switching = false;
	s->switches++;
	if (s->be->ops->set_depth)
		s->be->ops->set_depth(s->be, s->depth);
	if (old) {
		old->retired = s->retired;
		s->retired = old;
	}
	dw_log(DW_LOG_INFO, "io", "backend_switch", "from=%s to=%s",
	       dw_io_engine_name(old ? old->engine : DW_IO_ENGINE_AUTO),
	       dw_io_engine_name(s->be->engine));
	pthread_cond_broadcast(&s->wake);
}

/* ---- public (internal) API --------------------------------------------------------------- */

int dw__sched_submit(struct io_sched *s, struct io_op *op)
{
	struct io_tier_stats *st = &s->st[op->tier];

	pthread_mutex_lock(&s->lock);
	if (s->closing) {
		pthread_mutex_unlock(&s->lock);
		return DW_ECLOSED;
	}
	if (s->queued >= s->p.max_queued || (s->bp == DW_BP_SHEDDING && op->tier == DW_IO_LOW)) {
		st->shed++;
		pthread_mutex_unlock(&s->lock);
		return DW_ESHED;
	}
	op->enq_ns = dw_clock_now(s->clock);
	op->retried = 0;
	q_push(&s->q[op->tier], op);
	st->queued++;
	s->queued++;
	if (op->tier == DW_IO_HIGH) {
		s->last_high_ns = op->enq_ns;
		s->high_seen = true;
	}
	bp_update(s);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void dw__sched_complete(struct io_sched *s, struct io_op *op, int res)
{
	struct io_tier_stats *st = &s->st[op->tier];
	bool requeued = false;
	uint64_t now;

	pthread_mutex_lock(&s->lock);
	now = dw_clock_now(s->clock);
	if (res == -EPERM && s->be && s->be->engine == DW_IO_ENGINE_URING && !op->retried) {
		/*
		 * io_uring refused at run time (seccomp or a policy change): retry the op once
		 * after a re-probe, so a backend going away fails nothing.
		 */
		requeue(s, op);
		backend_failed(s, res);
		requeued = true;
	} else {
		st->inflight--;
		s->inflight--;
		st->completed++;
		if (res >= 0)
			st->bytes += (uint64_t)res;
		else
			st->errors++;
		dw__hist_add(&st->lat, now - op->enq_ns);
		if (op->tier == DW_IO_HIGH) {
			s->last_high_ns = now;
			s->high_seen = true;
		}
	}
	if (s->inflight == 0) {
		if (s->switching && s->pending)
			swap_backend(s);
		pthread_cond_broadcast(&s->drained);
	}
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
	if (requeued)
		return;
	op->cb(op->arg, res);
	dw_free(op);
}

/* Run the callbacks of ops the backend refused twice. No lock held by the caller. */
static void run_failed(struct io_sched *s)
{
	struct io_op *list;

	pthread_mutex_lock(&s->lock);
	list = s->failed;
	s->failed = NULL;
	pthread_mutex_unlock(&s->lock);
	while (list) {
		struct io_op *next = list->next;

		list->cb(list->arg, list->res);
		dw_free(list);
		list = next;
	}
}

static void close_retired(struct io_backend *list)
{
	while (list) {
		struct io_backend *next = list->retired;

		list->ops->close(list);
		list = next;
	}
}

void dw__sched_tick(struct io_sched *s)
{
	struct io_backend *retired, *nb = NULL;
	int failed = 0, rc;
	bool probe = false;
	uint64_t now;

	pthread_mutex_lock(&s->lock);
	now = dw_clock_now(s->clock);
	retired = s->retired;
	s->retired = NULL;
	if (s->reprobe && !s->switching && !s->reprobing) {
		if (s->fail_code) {
			probe = true;
			failed = s->fail_code;
		} else if (s->reprobe_ns && now >= s->next_probe_ns) {
			probe = true;
		}
		if (probe) {
			s->next_probe_ns = now + s->reprobe_ns;
			s->reprobing++;
		}
	} else if (!s->reprobe && s->fail_code) {
		/* Nobody to ask: resume on the same backend (ops were requeued once). */
		s->fail_code = 0;
	}
	bp_update(s);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);

	close_retired(retired);
	run_failed(s);
	if (!probe)
		return;
	rc = s->reprobe(s->reprobe_ctx, s, failed, &nb);
	pthread_mutex_lock(&s->lock);
	s->reprobing--;
	s->fail_code = 0;
	pthread_mutex_unlock(&s->lock);
	if (rc == 1 && nb)
		dw__sched_switch(s, nb);
	pthread_mutex_lock(&s->lock);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
	run_failed(s);
}

void dw__sched_switch(struct io_sched *s, struct io_backend *nb)
{
	struct io_backend *drop = NULL;

	pthread_mutex_lock(&s->lock);
	nb->s = s;
	drop = s->pending;
	s->pending = nb;
	s->switching = true;
	if (s->inflight == 0)
		swap_backend(s);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
	if (drop)
		drop->ops->close(drop);
}

int dw__sched_set_depth(struct io_sched *s, unsigned depth)
{
	if (depth < 1 || depth > DW_IO_DEPTH_MAX)
		return DW_ELIMIT;
	pthread_mutex_lock(&s->lock);
	s->depth = depth;
	if (s->be && s->be->ops->set_depth)
		s->be->ops->set_depth(s->be, depth);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void dw__sched_set_reprobe(struct io_sched *s, uint64_t period_ns)
{
	pthread_mutex_lock(&s->lock);
	s->reprobe_ns = period_ns;
	s->next_probe_ns = dw_clock_now(s->clock) + period_ns;
	pthread_mutex_unlock(&s->lock);
}

unsigned dw__sched_depth(struct io_sched *s)
{
	unsigned d;

	pthread_mutex_lock(&s->lock);
	d = s->depth;
	pthread_mutex_unlock(&s->lock);
	return d;
}

void dw__sched_set_params(struct io_sched *s, const struct io_sched_params *p)
{
	pthread_mutex_lock(&s->lock);
	s->p = *p;
	for (int t = 0; t < DW_IO_TIERS; t++) {
		if (s->credit[t] > p->weight[t])
			s->credit[t] = p->weight[t];
	}
	bp_update(s);
	dispatch(s);
	pthread_mutex_unlock(&s->lock);
}

void dw__sched_snapshot(struct io_sched *s, struct io_sched_snapshot *out)
{
	pthread_mutex_lock(&s->lock);
	memcpy(out->tier, s->st, sizeof(out->tier));
	out->depth = s->depth;
	out->backend = s->be ? s->be->engine : DW_IO_ENGINE_AUTO;
	out->state = s->bp;
	out->switches = s->switches;
	out->last_backend_err = s->last_err;
	out->switching = s->switching;
	pthread_mutex_unlock(&s->lock);
}

dw_bp_state dw__sched_state(struct io_sched *s)
{
	dw_bp_state st;

	pthread_mutex_lock(&s->lock);
	st = s->bp;
	pthread_mutex_unlock(&s->lock);
	return st;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void *dispatch_main(void *arg)
{
	struct io_sched *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(s->tick_ns % DW_NS_PER_SEC);
		ts.tv_sec += (time_t)(s->tick_ns / DW_NS_PER_SEC);
		if (ts.tv_nsec >= (long)DW_NS_PER_SEC) {
			ts.tv_nsec -= (long)DW_NS_PER_SEC;
			ts.tv_sec++;
		}
		pthread_cond_timedwait(&s->wake, &s->lock, &ts);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);
		dw__sched_tick(s);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int dw__sched_open(const struct io_sched_cfg *cfg, struct io_backend *be, struct io_sched **out)
{
	struct io_sched *s;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!be || cfg->depth < 1 || cfg->depth > DW_IO_DEPTH_MAX)
		return DW_ECONFIG;
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_cond_init(&s->drained, &ca);
	pthread_condattr_destroy(&ca);
	s->clock = cfg->clock;
	s->p = cfg->params;
	s->depth = cfg->depth;
	for (int t = 0; t < DW_IO_TIERS; t++)
		s->credit[t] = s->p.weight[t];
	s->be = be;
	be->s = s;
	if (be->ops->set_depth)
		be->ops->set_depth(be, s->depth);
	s->tick_ns = cfg->tick_ns ? cfg->tick_ns : 10 * DW_NS_PER_MS;
	s->reprobe_ns = cfg->reprobe_ns;
	s->reprobe = cfg->reprobe;
	s->reprobe_ctx = cfg->reprobe_ctx;
	s->next_probe_ns = dw_clock_now(s->clock) + s->reprobe_ns;
	s->thread = cfg->thread;
	if (s->thread) {
		rc = pthread_create(&s->tid, NULL, dispatch_main, s);
		if (rc != 0) {
			s->be = NULL; /* the caller still owns be */
			pthread_cond_destroy(&s->wake);
			pthread_cond_destroy(&s->drained);
			pthread_mutex_destroy(&s->lock);
			dw_free(s);
			return -rc;
		}
	}
	*out = s;
	return 0;
}

void dw__sched_close(struct io_sched *s)
{
	struct io_backend *retired;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->closing = true;
	while (s->inflight > 0 || s->queued > 0 || s->reprobing > 0) {
		struct timespec ts;

		if (!s->thread)
			break; /* unit tests drain themselves before closing */
		pthread_cond_broadcast(&s->wake);
		/* Timed: a drain can also end in a tick (re-probe, switch), which does not signal.
		 */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 20 * (long)DW_NS_PER_MS;
		if (ts.tv_nsec >= (long)DW_NS_PER_SEC) {
			ts.tv_nsec -= (long)DW_NS_PER_SEC;
			ts.tv_sec++;
		}
		pthread_cond_timedwait(&s->drained, &s->lock, &ts);
	}
	s->stop = true;
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	if (s->thread)
		pthread_join(s->tid, NULL);
	run_failed(s);
	retired = s->retired;
	s->retired = NULL;
	close_retired(retired);
	if (s->pending)
		s->pending->ops->close(s->pending);
	if (s->be)
		s->be->ops->close(s->be);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->drained);
	pthread_mutex_destroy(&s->lock);
	dw_free(s);
}
