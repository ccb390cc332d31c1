/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the io subsystem: the operation record, the backend vtable the scheduler
 * drives, the per-device scheduler, device probing and quotas.
 *
 *   io.c     the manager: device map, files, admission (quota, then scheduler), scalable
 *   sched.c  one scheduler per device: queues, tier choice, depth, backpressure, switching
 *   psync.c  backend: pread/pwrite/fsync on a thread pool sized to the depth
 *   uring.c  backend: io_uring (liburing) with a reaper thread
 *   probe.c  device class, default depth, io_uring and O_DIRECT probes, DIO alignment
 *   quota.c  per-caller byte and op budgets over fixed windows, persisted in a dw_store
 */
#ifndef DWSCALE_IO_INT_H
#define DWSCALE_IO_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dwscale/io.h"

/* ---- operations ---------------------------------------------------------------------------- */

struct io_op {
	struct io_op *next; /* tier queue link (scheduler) or job queue link (psync) */
	int fd;
	uint8_t opcode;	 /* dw_io_opcode */
	uint8_t tier;	 /* dw_io_tier, after any demotion */
	uint8_t retried; /* resubmitted once after a backend failure */
	void *buf;
	size_t len;
	uint64_t off;
	dw_io_cb cb;
	void *arg;
	uint64_t enq_ns;  /* when queued */
	uint64_t disp_ns; /* when handed to the backend */
	int res;	  /* result, for an op failed by the scheduler itself */
};

/* ---- backends ------------------------------------------------------------------------------ */

struct io_sched;
struct io_backend;

struct io_backend_ops {
	/*
	 * Start n ops. Called with the scheduler lock held; must not block for long. Sets *started
	 * to the number of ops (a prefix of ops) the backend took: each of those completes through
	 * dw__sched_complete. Returns 0 (all started) or a negative code: the backend is failing;
	 * the scheduler requeues ops[*started..n) and re-probes.
	 */
	int (*submit)(struct io_backend *be, struct io_op **ops, unsigned n, unsigned *started);
	/* The depth changed (scheduler lock held): a pool resizes itself. May be NULL. */
	void (*set_depth)(struct io_backend *be, unsigned depth);
	/* Free; nothing is in flight. Called without the scheduler lock, never from a backend
	 * thread. */
	void (*close)(struct io_backend *be);
};

struct io_backend {
	const struct io_backend_ops *ops;
	struct io_sched *s;
	dw_io_engine engine;	    /* URING or PSYNC; AUTO for a test double */
	struct io_backend *retired; /* scheduler's list of backends waiting to be closed */
};

/* Open the thread pool backend with depth workers. */
int dw__psync_open(struct io_sched *s, unsigned depth, struct io_backend **out);
/* Open the io_uring backend; -errno from io_uring_setup (EPERM, ENOSYS, ENOMEM...) on failure. */
int dw__uring_open(struct io_sched *s, unsigned depth, struct io_backend **out);

/* ---- latency histogram --------------------------------------------------------------------- */

/* Log-linear buckets: exact below 16 ns, then 16 sub-buckets per power of two (6% wide). */
#define IO_HIST_N 976

struct io_hist {
	uint64_t b[IO_HIST_N];
	uint64_t n;
};

void dw__hist_add(struct io_hist *h, uint64_t v);
/* Value at quantile q (0..1), the midpoint of its bucket; 0 if empty. */
uint64_t dw__hist_quantile(const struct io_hist *h, double q);

/* ---- scheduler ----------------------------------------------------------------------------- */

/* Tunables the manager may change at run time (copied under the scheduler lock). */
struct io_sched_params {
	unsigned weight[DW_IO_TIERS];
	uint64_t deadline_ns[DW_IO_TIERS];
	unsigned low_cap; /* 0 = depth / 32, at least 1 */
	uint64_t high_linger_ns;
	unsigned max_queued;
	double bp_up[4]; /* [1..3]: warning, critical, shedding thresholds */
	double bp_hysteresis;
};

void dw__sched_params_from_config(const dw_io_config *cfg, struct io_sched_params *p);

struct io_tier_stats {
	uint64_t queued, inflight;     /* current */
	uint64_t completed, errors;    /* counters */
	uint64_t bytes, shed, demoted; /* counters */
	uint64_t max_wait_ns;	       /* longest queue wait of a dispatched op */
	struct io_hist lat;	       /* submit -> completion */
};

struct io_sched_cfg {
	const dw_clock *clock;
	struct io_sched_params params;
	unsigned depth;
	bool thread; /* run the dispatch thread (false in unit tests: call dw__sched_tick) */
	uint64_t tick_ns;
	uint64_t reprobe_ns; /* 0 = never */
	/*
	 * Called on the dispatch thread every reprobe_ns, and at once after a backend failure
	 * (failed != 0, the code). Returns 1 with *nb set to switch to nb, 0 to keep the current
	 * one.
	 */
	int (*reprobe)(void *ctx, struct io_sched *s, int failed, struct io_backend **nb);
	void *reprobe_ctx;
};

struct io_sched;

/* Open with a backend (taken over: closed by dw__sched_close). */
int dw__sched_open(const struct io_sched_cfg *cfg, struct io_backend *be, struct io_sched **out);
/* Waits for every queued and in-flight op, then frees. NULL-safe. */
void dw__sched_close(struct io_sched *s);

/*
 * Queue op (fields fd..arg and tier set by the caller; the scheduler owns it from here and frees
 * it with dw_free after its callback). 0, or DW_ESHED / DW_ECLOSED (op not taken).
 */
int dw__sched_submit(struct io_sched *s, struct io_op *op);
/* Backends report a finished op (any thread, no backend lock held). */
void dw__sched_complete(struct io_sched *s, struct io_op *op, int res);

/* One dispatch tick: timers, pending switches, retired backends, dispatch. For tests. */
void dw__sched_tick(struct io_sched *s);

int dw__sched_set_depth(struct io_sched *s, unsigned depth);
unsigned dw__sched_depth(struct io_sched *s);
void dw__sched_set_params(struct io_sched *s, const struct io_sched_params *p);
/* Re-probe period (0 = never); the next probe is due one period from now. */
void dw__sched_set_reprobe(struct io_sched *s, uint64_t period_ns);

/*
 * Switch to backend nb: dispatch stops, in-flight ops drain on the old backend, then nb takes
 * over the queues; the old one is closed by the next tick. No op fails or is lost.
 */
void dw__sched_switch(struct io_sched *s, struct io_backend *nb);

struct io_sched_snapshot {
	struct io_tier_stats tier[DW_IO_TIERS];
	unsigned depth;
	dw_io_engine backend;
	dw_bp_state state;
	unsigned switches;
	int last_backend_err; /* code of the last backend failure, 0 if none */
	bool switching;
};

void dw__sched_snapshot(struct io_sched *s, struct io_sched_snapshot *out);
dw_bp_state dw__sched_state(struct io_sched *s);

/* ---- probing ------------------------------------------------------------------------------- */

struct io_devprobe {
	char name[32];
	dw_io_class class_;
	unsigned logical_block; /* 512 if unknown */
	dev_t disk;		/* the whole disk of a partition; else the device itself */
};

/*
 * Class, name, logical block size and whole disk of the block device dev (sysfs: a partition
 * answers for its disk). Never fails.
 */
void dw__probe_device(dev_t dev, struct io_devprobe *out);
/* Where sysfs is ("/sys"); tests point it at a tree of their own. */
extern const char *dw__probe_sysfs;
/* 0 if an io_uring with read/write/fsync can be set up here, else -errno. */
int dw__probe_uring(void);
/* DIO alignment from statx(STATX_DIOALIGN); 0 with both set, or -errno / DW_EUNSUPPORTED. */
int dw__probe_dioalign(int fd, uint32_t *mem_align, uint32_t *off_align);

/* ---- quotas -------------------------------------------------------------------------------- */

struct io_quota;

enum io_quota_verdict { IO_QUOTA_OK = 0, IO_QUOTA_OVER = 1 };

int dw__quota_open(const dw_clock *clock, dw_store *store, uint64_t window_ns, uint64_t def_bytes,
		   uint64_t def_ops, struct io_quota **out);
void dw__quota_close(struct io_quota *q);
/* Admit an op of len bytes for caller: IO_QUOTA_OK (counted), IO_QUOTA_OVER, or negative. */
int dw__quota_admit(struct io_quota *q, const char *caller, uint64_t len);
/* Give back an admitted op that never ran (shed or refused by the scheduler). */
void dw__quota_refund(struct io_quota *q, const char *caller, uint64_t len);
int dw__quota_set(struct io_quota *q, const char *caller, uint64_t bytes, uint64_t ops);
int dw__quota_get(struct io_quota *q, const char *caller, uint64_t *bytes, uint64_t *ops);
void dw__quota_set_defaults(struct io_quota *q, uint64_t window_ns, uint64_t bytes, uint64_t ops);
/* Write dirty usage to the store. */
int dw__quota_flush(struct io_quota *q);
/* 0 if caller is a valid id, else DW_EUSAGE. */
int dw__quota_id_check(const char *caller);

#endif
