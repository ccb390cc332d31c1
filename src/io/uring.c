// SPDX-License-Identifier: MIT
/*
 * The io_uring backend (liburing): the scheduler fills SQEs under its lock, a reaper thread
 * takes CQEs and reports them with dw__sched_complete.
 *
 * The submission side and the completion side of a ring are independent rings, so one producer
 * (whoever holds the scheduler lock) and one consumer (the reaper) need no lock between them.
 * The reaper waits with a timeout so that it notices close even if no completion comes.
 *
 * A failed io_uring_enter leaves the SQEs it did not consume in the ring, where the next enter
 * would pick them up: after the scheduler requeued those ops that would run them twice. So the
 * first submit failure marks the ring dead; it only drains what the kernel already took and is
 * replaced by the re-probe. If waiting itself fails (io_uring_enter refused by a seccomp filter
 * installed after setup), the reaper polls the mapped CQ ring, which needs no system call.
 *
 * Tiers map to sqe->ioprio (best effort, level 0 for High, 7 for Low); it helps only under an
 * I/O scheduler that honours it (bfq, mq-deadline with prio aging). The scheduler's own Low cap
 * is what keeps High latency low.
 *
 * Threads and locking: submit and set_depth run under the scheduler lock (single producer).
 * The reaper is the only consumer. `dead`, `stop` and `inflight` are atomics.
 */
#include <errno.h>
#include <liburing.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "io/io_int.h"

#define SQ_ENTRIES    256		    /* > BATCH_MAX; SQEs are consumed at each submit */
#define CQ_ENTRIES    (2 * DW_IO_DEPTH_MAX) /* every op in flight at the maximum depth fits */
#define WAIT_MS	      100		    /* reaper notices close within this */
#define POLL_NS	      (50 * 1000)	    /* CQ polling period once enter is refused */
#define UD_WAKE	      0			    /* user_data of the NOP that wakes the reaper */
#define PRIO_CLASS_BE 2
#define PRIO(level)   ((PRIO_CLASS_BE << 13) | (level))

struct uring {
	struct io_backend be;
	struct io_uring ring;
	pthread_t reaper;
	atomic_bool stop;
	atomic_bool dead;
	atomic_uint inflight;
};

static void reap_one(struct uring *u, struct io_uring_cqe *cqe)
{
	struct io_op *op = io_uring_cqe_get_data(cqe);
	int res = cqe->res;

	io_uring_cqe_seen(&u->ring, cqe);
	if (!op)
		return; /* wake-up NOP */
	atomic_fetch_sub_explicit(&u->inflight, 1, memory_order_acq_rel);
	dw__sched_complete(u->be.s, op, res);
}

static void *reaper_main(void *arg)
{
	struct uring *u = arg;
	bool polling = false;

	for (;;) {
		struct io_uring_cqe *cqe = NULL;
		int rc;

		if (atomic_load_explicit(&u->stop, memory_order_acquire) &&
		    atomic_load_explicit(&u->inflight, memory_order_acquire) == 0)
			break;
		if (polling) {
			struct timespec ts = { 0, POLL_NS };

			rc = io_uring_peek_cqe(&u->ring, &cqe);
			if (rc == -EAGAIN) {
				nanosleep(&ts, NULL);
				continue;
			}
		} else {
			struct __kernel_timespec kts = { 0, WAIT_MS * 1000000LL };

			rc = io_uring_wait_cqe_timeout(&u->ring, &cqe, &kts);
			if (rc == -ETIME || rc == -EINTR || rc == -EAGAIN)
				continue;
			if (rc < 0) {
				dw_log(DW_LOG_WARN, "io", "uring_wait", "err=%s action=poll",
				       dw_err_name(rc));
				atomic_store_explicit(&u->dead, true, memory_order_release);
				polling = true;
				continue;
			}
		}
		if (rc == 0 && cqe)
			reap_one(u, cqe);
	}
	return NULL;
}

static int uring_submit(struct io_backend *be, struct io_op **ops, unsigned n, unsigned *started)
{
	struct uring *u = (struct uring *)be;
	unsigned done = 0;
	int rc;

	*started = 0;
	if (atomic_load_explicit(&u->dead, memory_order_acquire))
		return DW_EBACKEND;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		struct io_op *op = ops[i];

		if (!sqe) {
			n = i; /* cannot happen: SQ_ENTRIES > BATCH_MAX and each call empties it */
			break;
		}
		switch (op->opcode) {
		case DW_IO_OP_READ:
			io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
			break;
		case DW_IO_OP_WRITE:
			io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
			break;
		default:
			io_uring_prep_fsync(sqe, op->fd, 0);
			break;
		}
		/* Only read and write take an ioprio: the kernel refuses one on fsync (EINVAL). */
		if (op->opcode != DW_IO_OP_FSYNC && op->tier == DW_IO_HIGH)
			sqe->ioprio = PRIO(0);
		else if (op->opcode != DW_IO_OP_FSYNC && op->tier == DW_IO_LOW)
			sqe->ioprio = PRIO(7);
		io_uring_sqe_set_data(sqe, op);
	}
	atomic_fetch_add_explicit(&u->inflight, n, memory_order_acq_rel);
	while (done < n) {
		rc = io_uring_submit(&u->ring);
		if (rc < 0 && rc != -EINTR) {
			atomic_fetch_sub_explicit(&u->inflight, n - done, memory_order_acq_rel);
			atomic_store_explicit(&u->dead, true, memory_order_release);
			*started = done;
			return rc;
		}
		if (rc > 0)
			done += (unsigned)rc;
	}
	*started = n;
	return 0;
}

static void uring_close(struct io_backend *be)
{
	struct uring *u = (struct uring *)be;

	atomic_store_explicit(&u->stop, true, memory_order_release);
	if (!atomic_load_explicit(&u->dead, memory_order_acquire)) {
		/* Nobody else submits on a closing backend: wake the reaper with a NOP. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

		if (sqe) {
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, UD_WAKE);
			io_uring_submit(&u->ring);
		}
	}
	pthread_join(u->reaper, NULL);
	io_uring_queue_exit(&u->ring);
	dw_free(u);
}

static const struct io_backend_ops uring_ops = {
	.submit = uring_submit,
	.set_depth = NULL,
	.close = uring_close,
};

int dw__uring_open(struct io_sched *s, unsigned depth, struct io_backend **out)
{
	struct io_uring_params params;
	struct uring *u;
	int rc;

	(void)depth; /* the rings are sized for DW_IO_DEPTH_MAX: depth changes need nothing here */
	*out = NULL;
	u = dw_calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	memset(&params, 0, sizeof(params));
	/*
	 * COOP_TASKRUN (5.19): completion work runs when the reaper next enters the kernel, which
	 * it does to wait anyway, instead of interrupting it. Older kernels refuse the flag.
	 */
	params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
	params.cq_entries = CQ_ENTRIES;
	rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &params);
	if (rc == -EINVAL) {
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE;
		params.cq_entries = CQ_ENTRIES;
		rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &params);
	}
	if (rc < 0) {
		dw_free(u);
		return rc;
	}
	u->be.ops = &uring_ops;
	u->be.s = s;
	u->be.engine = DW_IO_ENGINE_URING;
	rc = pthread_create(&u->reaper, NULL, reaper_main, u);
	if (rc != 0) {
		io_uring_queue_exit(&u->ring);
		dw_free(u);
		return -rc;
	}
	*out = &u->be;
	return 0;
}
