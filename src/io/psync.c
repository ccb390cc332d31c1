// SPDX-License-Identifier: MIT
/*
 * The thread-pool backend: pread/pwrite/fsync on one worker per slot of queue depth, the
 * fallback wherever io_uring is not allowed (as libuv does for file I/O).
 *
 * The pool follows the depth: set_depth starts workers up to the new depth; on a cut, workers
 * whose index is at or past the new depth exit when they are next idle (an op already taken is
 * finished first). A slot whose worker exited is joined before it is reused.
 *
 * Threads and locking
 *   - lock guards the job queue, target, stop and the slot states. submit and set_depth run with
 *     the scheduler lock held and take lock (order: scheduler, then pool). Workers drop lock
 *     before doing I/O and before calling dw__sched_complete (which takes the scheduler lock).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "io/io_int.h"

#define WORKER_STACK (256u << 10) /* I/O plus a completion callback; callbacks must not block */

enum slot_state { SLOT_NONE = 0, SLOT_RUNNING, SLOT_EXITED };

struct psync;

struct slot {
	struct psync *pool;
	unsigned idx;
	pthread_t tid;
	enum slot_state state; /* protected by pool->lock */
};

struct psync {
	struct io_backend be;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct io_op *head, *tail; /* protected by lock */
	unsigned qlen;		   /* protected by lock: ops in head..tail */
	/*
	 * Workers between finishing an op and looking for the next one. They will take queued
	 * work without being woken, so submit wakes a sleeper only for ops beyond that count:
	 * at steady state the worker whose completion issued the next op runs it itself.
	 */
	atomic_uint returning;
	unsigned target; /* protected by lock */
	bool stop;	 /* protected by lock */
	struct slot slots[DW_IO_DEPTH_MAX];
	pthread_t joinable[DW_IO_DEPTH_MAX]; /* close's scratch list */
};

static int do_op(struct io_op *op)
{
	ssize_t n;

	for (;;) {
		switch (op->opcode) {
		case DW_IO_OP_READ:
			n = pread(op->fd, op->buf, op->len, (off_t)op->off);
			break;
		case DW_IO_OP_WRITE:
			n = pwrite(op->fd, op->buf, op->len, (off_t)op->off);
			break;
		case DW_IO_OP_FSYNC:
			n = fsync(op->fd);
			break;
		default:
			return -EINVAL;
		}
		if (n >= 0)
			return (int)n;
		if (errno != EINTR)
			return -errno;
	}
}

static void *worker_main(void *arg)
{
	struct slot *sl = arg;
	struct psync *p = sl->pool;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct io_op *op;
		int res;

		while (!p->stop && !p->head && sl->idx < p->target)
			pthread_cond_wait(&p->cv, &p->lock);
		if (p->stop || sl->idx >= p->target)
			break;
		op = p->head;
		p->head = op->next;
		if (!p->head)
			p->tail = NULL;
		p->qlen--;
		op->next = NULL;
		pthread_mutex_unlock(&p->lock);
		res = do_op(op);
		atomic_fetch_add_explicit(&p->returning, 1, memory_order_acq_rel);
		dw__sched_complete(p->be.s, op, res);
		pthread_mutex_lock(&p->lock);
		atomic_fetch_sub_explicit(&p->returning, 1, memory_order_acq_rel);
	}
	/* A submitter may have counted on this worker (returning): hand its work to a sleeper. */
	if (p->head)
		pthread_cond_signal(&p->cv);
	sl->state = SLOT_EXITED;
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Start workers for slots [0, target) that have none. Pool lock held. */
static int grow(struct psync *p)
{
	pthread_attr_t attr;
	int rc = 0;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WORKER_STACK);
	for (unsigned i = 0; i < p->target; i++) {
		struct slot *sl = &p->slots[i];

		if (sl->state == SLOT_RUNNING)
			continue;
		if (sl->state == SLOT_EXITED) {
			pthread_join(sl->tid, NULL);
			sl->state = SLOT_NONE;
		}
		sl->pool = p;
		sl->idx = i;
		rc = pthread_create(&sl->tid, &attr, worker_main, sl);
		if (rc != 0) {
			rc = -rc;
			break;
		}
		sl->state = SLOT_RUNNING;
	}
	pthread_attr_destroy(&attr);
	return rc;
}

static int psync_submit(struct io_backend *be, struct io_op **ops, unsigned n, unsigned *started)
{
	struct psync *p = (struct psync *)be;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		ops[i]->next = NULL;
		if (p->tail)
			p->tail->next = ops[i];
		else
			p->head = ops[i];
		p->tail = ops[i];
	}
	p->qlen += n;
	{
		unsigned ret = atomic_load_explicit(&p->returning, memory_order_acquire);
		unsigned wake = p->qlen > ret ? p->qlen - ret : 0;

		if (wake > n)
			wake = n;
		if (wake == 1)
			pthread_cond_signal(&p->cv);
		else if (wake > 1)
			pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->lock);
	*started = n;
	return 0;
}

static void psync_set_depth(struct io_backend *be, unsigned depth)
{
	struct psync *p = (struct psync *)be;
	int rc;

	pthread_mutex_lock(&p->lock);
	p->target = depth;
	rc = grow(p);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		dw_log(DW_LOG_WARN, "io", "psync_grow", "depth=%u err=%s", depth, dw_err_name(rc));
}

static void psync_close(struct io_backend *be)
{
	struct psync *p = (struct psync *)be;

	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	/* No slot starts after stop: note which ones have a thread to join, then join unlocked. */
	for (unsigned i = 0; i < DW_IO_DEPTH_MAX; i++) {
		if (p->slots[i].state != SLOT_NONE)
			p->joinable[n++] = p->slots[i].tid;
	}
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(p->joinable[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
	dw_free(p);
}

static const struct io_backend_ops psync_ops = {
	.submit = psync_submit,
	.set_depth = psync_set_depth,
	.close = psync_close,
};

int dw__psync_open(struct io_sched *s, unsigned depth, struct io_backend **out)
{
	struct psync *p;
	int rc;

	*out = NULL;
	if (depth < 1 || depth > DW_IO_DEPTH_MAX)
		return DW_ECONFIG;
	p = dw_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->be.ops = &psync_ops;
	p->be.s = s;
	p->be.engine = DW_IO_ENGINE_PSYNC;
	pthread_mutex_lock(&p->lock);
	p->target = depth;
	rc = grow(p);
	pthread_mutex_unlock(&p->lock);
	if (rc < 0) {
		psync_close(&p->be);
		return rc;
	}
	*out = &p->be;
	return 0;
}
