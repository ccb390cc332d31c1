/* SPDX-License-Identifier: MIT */
/*
 * FilesystemScalingManager: a priority I/O scheduler per block device.
 *
 * A dw_io owns one scheduler per block device (st_dev), created when a file on that device is
 * first opened through it. Each scheduler has three queues (High, Normal, Low) and keeps at most
 * *depth* operations in flight on its backend: io_uring where the kernel allows it, else a
 * pread/pwrite thread pool sized to the depth. Tiers are served by weight (16:4:1 by default); an
 * operation that has waited past its tier's deadline goes first; while High work is active, Low's
 * in-flight count is capped so that High latency stays low.
 *
 * Admission, in order: the caller's quota (bytes and ops per window; over it the op is refused
 * with DW_EQUOTA, or demoted to Low where configured), then backpressure: the queue-fill ratio
 * drives Normal / Warning / Critical / Shedding; in Shedding Low ops are refused with DW_ESHED at
 * once; a full queue refuses every tier (only reachable in Shedding, so High is never shed
 * before Critical).
 *
 * Results: completion callbacks get the byte count (>= 0) or a negative code (-errno, DW_E*).
 * Submission functions return 0 when the op is queued (its callback then runs exactly once), or
 * a negative code (and the callback never runs).
 *
 * Threads: every function is thread-safe. Completion callbacks run on the scheduler's threads
 * (io_uring reaper or pool worker) and must not block or call dw_io_close().
 */
#ifndef DWSCALE_IO_H
#define DWSCALE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"
#include "error.h"
#include "scalable.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw_io dw_io;
typedef struct dw_io_file dw_io_file;

typedef enum dw_io_tier {
	DW_IO_HIGH = 0,
	DW_IO_NORMAL = 1,
	DW_IO_LOW = 2,
} dw_io_tier;
#define DW_IO_TIERS 3

/* "high", "normal", "low". */
const char *dw_io_tier_name(dw_io_tier t);
/* Parse a tier name; DW_EUSAGE if unknown. */
int dw_io_tier_parse(const char *s, dw_io_tier *out);

typedef enum dw_io_engine {
	DW_IO_ENGINE_AUTO = 0, /* io_uring if the probe says it works, else psync */
	DW_IO_ENGINE_URING = 1,
	DW_IO_ENGINE_PSYNC = 2,
} dw_io_engine;

/* "auto", "io_uring", "psync". */
const char *dw_io_engine_name(dw_io_engine e);
int dw_io_engine_parse(const char *s, dw_io_engine *out);

typedef enum dw_io_class {
	DW_IO_CLASS_UNKNOWN = 0, /* not a block device (tmpfs, overlay...): SSD depth */
	DW_IO_CLASS_HDD = 1,
	DW_IO_CLASS_SSD = 2,
	DW_IO_CLASS_NVME = 3,
} dw_io_class;

/* "unknown", "hdd", "ssd", "nvme". */
const char *dw_io_class_name(dw_io_class c);
/* Default queue depth of a class: NVMe 128, SSD 32, HDD 8, unknown 32. */
unsigned dw_io_class_depth(dw_io_class c);

#define DW_IO_DEPTH_MAX 1024

typedef struct dw_io_config {
	const dw_clock *clock; /* NULL = real clock */
	dw_store *store;       /* quota persistence; NULL = quotas live in memory only */
	dw_io_engine engine;   /* default AUTO */
	unsigned depth;	       /* 0 = by device class; else 1..DW_IO_DEPTH_MAX for every device */
	unsigned weight[DW_IO_TIERS];	   /* ops served per round: 16, 4, 1 */
	uint64_t deadline_ns[DW_IO_TIERS]; /* 50 ms, 250 ms, 500 ms */
	unsigned low_cap;	 /* Low in flight while High is active; 0 = depth/32 (>=1) */
	uint64_t high_linger_ns; /* High counts as active this long after its last op */
	uint64_t reprobe_ns;	 /* backend re-probe period: 5 min; 0 = never */
	uint64_t tick_ns;	 /* dispatch thread period: 10 ms */
	unsigned max_queued;	 /* queued ops per device (the fill ratio's base): 4096 */
	double bp_warning, bp_critical, bp_shedding; /* fill ratios: 0.5, 0.75, 0.9 */
	double bp_hysteresis;			     /* step down below threshold - this: 0.1 */
	uint64_t quota_window_ns;		     /* 1 h */
	uint64_t quota_bytes;			     /* default per caller per window; 0 = none */
	uint64_t quota_ops;			     /* default per caller per window; 0 = none */
	bool quota_demote; /* over quota: demote to Low instead of refusing */
} dw_io_config;

void dw_io_config_default(dw_io_config *cfg);

/* Open a manager (no device yet). DW_ECONFIG if a field is out of range. */
int dw_io_open(const dw_io_config *cfg, dw_io **out);
/* Waits for every queued and in-flight op to complete, then frees. NULL-safe. */
void dw_io_close(dw_io *io);

/* Flags for dw_io_file_open. */
#define DW_IO_F_DIRECT                                                            \
	0x1u /* try O_DIRECT; falls back to buffered where the filesystem refuses \
	      */

/*
 * Open path with open(2) flags oflags (and mode for O_CREAT) on the scheduler of its device.
 * With DW_IO_F_DIRECT, O_DIRECT is tried first; EINVAL (the filesystem does not take it) falls
 * back to buffered I/O, recorded per device (see dw_io_file_direct).
 */
int dw_io_file_open(dw_io *io, const char *path, int oflags, mode_t mode, unsigned flags,
		    dw_io_file **out);
/* Use an fd the caller owns (not closed by dw_io_file_close). */
int dw_io_file_attach(dw_io *io, int fd, dw_io_file **out);
/* Close (the fd too, if opened by dw_io_file_open). No op on f may be pending. NULL-safe. */
void dw_io_file_close(dw_io_file *f);
int dw_io_file_fd(const dw_io_file *f);
bool dw_io_file_direct(const dw_io_file *f);
/* Buffer and offset alignment O_DIRECT needs on this file (1 when buffered). */
size_t dw_io_file_mem_align(const dw_io_file *f);
size_t dw_io_file_off_align(const dw_io_file *f);

typedef enum dw_io_opcode {
	DW_IO_OP_READ = 0,
	DW_IO_OP_WRITE = 1,
	DW_IO_OP_FSYNC = 2,
} dw_io_opcode;

/* One request; copied at submission (the buffer is not, it must live until the callback). */
typedef struct dw_io_req {
	dw_io_file *file;
	dw_io_opcode op;
	dw_io_tier tier;
	void *buf;
	size_t len; /* at most DW_IO_LEN_MAX */
	uint64_t off;
	const char *caller; /* quota id ([A-Za-z0-9._-], 1..64 chars) or NULL for none */
} dw_io_req;

#define DW_IO_LEN_MAX (1u << 30)

/* Receives res: bytes transferred (>= 0) or a negative code. */
typedef void (*dw_io_cb)(void *arg, int res);

/*
 * Queue an op. Returns 0 (cb will run exactly once), or: DW_EQUOTA (caller over quota), DW_ESHED
 * (shed under backpressure), DW_EUSAGE (bad request), DW_ECLOSED, -ENOMEM.
 */
int dw_io_submit(const dw_io_req *req, dw_io_cb cb, void *arg);

/* Blocking helpers: bytes transferred, or a negative code. */
int dw_io_pread(dw_io_file *f, void *buf, size_t len, uint64_t off, dw_io_tier tier,
		const char *caller);
int dw_io_pwrite(dw_io_file *f, const void *buf, size_t len, uint64_t off, dw_io_tier tier,
		 const char *caller);
int dw_io_fsync(dw_io_file *f, dw_io_tier tier, const char *caller);

/* Quota of one caller (overrides the config defaults; 0 = unlimited). */
int dw_io_quota_set(dw_io *io, const char *caller, uint64_t bytes, uint64_t ops);
/* Usage in the current window. DW_ENOTFOUND if the caller has none. */
int dw_io_quota_get(dw_io *io, const char *caller, uint64_t *bytes_used, uint64_t *ops_used);

/* What a scheduler reports about its device and backend. */
typedef struct dw_io_dev_info {
	char name[32]; /* "vda", "nvme0n1", or "dev-0:43" when not a block device */
	dev_t dev;
	dw_io_class class_;
	unsigned depth;	    /* in use */
	char depth_why[64]; /* "class hdd", "calibrated", "configured", "set at run time" */
	dw_io_engine backend;
	int uring_errno;  /* 0 if the last io_uring probe succeeded, else -errno */
	int direct_errno; /* 0 if O_DIRECT works here, -EINVAL if refused, 1 if not tried yet */
	dw_bp_state state;
	unsigned switches; /* backend switches since open */
} dw_io_dev_info;

/* Info on f's device. */
int dw_io_file_info(const dw_io_file *f, dw_io_dev_info *out);

/* Change the depth of f's device at run time (1..DW_IO_DEPTH_MAX; 0 = back to class default). */
int dw_io_set_depth(dw_io_file *f, unsigned depth);

/*
 * Record depth as the measured best depth of f's device (dwscale io probe --calibrate): written
 * to cfg.store (dw://internal/io/depth/<device>) and used, instead of the class default, by this
 * manager and every later one opened on that store, unless a depth is configured or set. 0
 * removes it. DW_EUNSUPPORTED without a store.
 */
int dw_io_calibrated_depth_set(dw_io_file *f, unsigned depth);
/* The calibrated depth stored for device (a dw_io_dev_info name); DW_ENOTFOUND if none. */
int dw_io_calibrated_depth_get(dw_store *st, const char *device, unsigned *depth);

/*
 * Probe without a manager: device class and default depth of the device holding path, io_uring
 * availability (uring_errno), O_DIRECT (direct_errno, alignments). Fills out; state/switches 0.
 */
int dw_io_probe_path(const char *path, dw_io_dev_info *out, size_t *mem_align, size_t *off_align);

/* The manager as a scalable subsystem named "io" (metrics, limits, reconfigure, state). */
const dw_scalable *dw_io_scalable(dw_io *io); /* valid until dw_io_close */

/* Highest backpressure state over all devices. */
dw_bp_state dw_io_state(dw_io *io);

#ifdef __cplusplus
}
#endif
#endif
