/* SPDX-License-Identifier: MIT */
/*
 * Backups of directory trees into a repository: full and incremental backups in chains,
 * restore, check, retention and crash recovery. The on-disk format is described in
 * docs/formats/repository.md.
 *
 * A repository is a directory. A backup is *full* (self-contained) or *incremental* (it stores
 * only what changed since the previous backup of its chain and refers to the rest); a chain is
 * one full and the incrementals after it, per source directory. Every backup owns its pack files
 * and a backup's references point only back along its own chain, so removing a whole chain frees
 * exactly the bytes of its backups. A repository may be encrypted (AES-256-GCM, a key file):
 * then pack blocks, manifests and checkpoints are sealed and every open needs the key.
 *
 * Threads: a dw_backup_repo may be used from several threads at once: create, restore, list and
 * check take the repository lock shared; prune takes it exclusive. Several processes may use one
 * repository: the lock is an flock(), so a killed process never leaves a stale lock. Callbacks
 * run on the calling thread.
 */
#ifndef DWSCALE_BACKUP_H
#define DWSCALE_BACKUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "error.h"
#include "scalable.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DW_BACKUP_ID_MAX	64	   /* including the NUL */
#define DW_BACKUP_BLOCK_DEFAULT (1u << 20) /* fixed block size for file data */
#define DW_BACKUP_BLOCK_MIN	(4u << 10)
#define DW_BACKUP_BLOCK_MAX	(16u << 20)
#define DW_BACKUP_PACK_DEFAULT	(64u << 20) /* a pack file is closed past this size */
#define DW_BACKUP_ZSTD_DEFAULT	3
#define DW_BACKUP_CHAIN_MAX	1000	   /* incrementals after a full, at most */
#define DW_BACKUP_HARDLINK_MAX	(1u << 20) /* inodes with several links remembered */

typedef struct dw_backup_repo dw_backup_repo;
struct dw_io; /* include/dwscale/io.h */

typedef enum dw_backup_type {
	DW_BACKUP_AUTO = 0, /* incremental when the source has a backup, else full */
	DW_BACKUP_FULL = 1,
	DW_BACKUP_INCREMENTAL = 2,
} dw_backup_type;

/* "auto", "full", "incremental". */
const char *dw_backup_type_name(dw_backup_type t);

/* ---- repository --------------------------------------------------------------------------- */

#define DW_BACKUP_KEY_LEN 32 /* AES-256 */

typedef struct dw_backup_repo_config {
	uint32_t block_size; /* fixed block size for file data; default 1 MiB */
	uint32_t pack_size;  /* target pack file size; default 64 MiB */
	/*
	 * NULL: not encrypted. Else the DW_BACKUP_KEY_LEN-byte key: pack blocks and manifests are
	 * sealed with AES-256-GCM, and the config records a key check value (not the key).
	 */
	const uint8_t *key;
} dw_backup_repo_config;

/* Keys: 32 random bytes; a key file holds them as one line of 64 hex digits. */
int dw_backup_key_generate(uint8_t key[DW_BACKUP_KEY_LEN]);
/* 64 hex digits and a NUL into out (cap >= 65). */
int dw_backup_key_format(const uint8_t key[DW_BACKUP_KEY_LEN], char *out, size_t cap);
/* DW_ECONFIG unless text is 64 hex digits (a trailing newline is allowed). */
int dw_backup_key_parse(const char *text, uint8_t key[DW_BACKUP_KEY_LEN]);
/* Read a key file. DW_ENOTFOUND, DW_ECONFIG (not a key), -errno. */
int dw_backup_key_load(const char *path, uint8_t key[DW_BACKUP_KEY_LEN]);

void dw_backup_repo_config_default(dw_backup_repo_config *cfg);

/*
 * Create a repository at path (the directory may exist but must be empty). DW_EEXIST if path
 * already holds a repository or other files, DW_ECONFIG for sizes out of range. cfg may be NULL.
 */
int dw_backup_repo_init(const char *path, const dw_backup_repo_config *cfg);

/*
 * Open a repository. DW_ENOTFOUND if path is not a repository, DW_EVERSION for a format this
 * build does not read, DW_ECORRUPT for a damaged config file. On failure *out is NULL.
 */
int dw_backup_repo_open(const char *path, dw_backup_repo **out);
/*
 * Open a repository that may be encrypted; key NULL = none. For an encrypted repository
 * DW_EAUTH without a key or with one whose check value differs (nothing else is read); the key
 * is ignored for a repository that is not encrypted.
 */
int dw_backup_repo_open_key(const char *path, const uint8_t *key, dw_backup_repo **out);
bool dw_backup_repo_encrypted(const dw_backup_repo *r);
void dw_backup_repo_close(dw_backup_repo *r);
const char *dw_backup_repo_path(const dw_backup_repo *r);

/* ---- backups ------------------------------------------------------------------------------ */

/* Counters of one create, restore or check. */
typedef struct dw_backup_stats {
	uint64_t files; /* regular files recorded (first link of hard links) */
	uint64_t dirs;
	uint64_t symlinks;
	uint64_t hardlinks;	/* further names of an inode already recorded */
	uint64_t specials;	/* devices, fifos, sockets: recorded, no data */
	uint64_t unreadable;	/* files or directories that could not be read (reported) */
	uint64_t files_changed; /* files read (all of them in a full backup) */
	uint64_t files_unchanged;
	uint64_t bytes_total;	/* logical size of all regular files */
	uint64_t bytes_read;	/* bytes read from the source */
	uint64_t blocks_new;	/* blocks stored by this backup */
	uint64_t blocks_reused; /* blocks referred to in earlier backups of the chain */
	uint64_t bytes_stored;	/* bytes this backup added to the repository (packs + manifest) */
} dw_backup_stats;

typedef struct dw_backup_info {
	char id[DW_BACKUP_ID_MAX];
	char parent[DW_BACKUP_ID_MAX]; /* "" for a full backup */
	char chain[DW_BACKUP_ID_MAX];  /* id of the full backup that starts the chain */
	dw_backup_type type;	       /* FULL or INCREMENTAL */
	uint32_t depth;		       /* 0 for a full, n for the nth incremental */
	uint64_t created_ns;	       /* wall clock when the backup started */
	uint64_t finished_ns;	       /* wall clock when it became visible */
	char source[4096];	       /* absolute source path */
	dw_backup_stats stats;
	uint64_t repo_bytes; /* bytes of its packs and manifest in the repository now */
	/* Set by dw_backup_create only: */
	bool resumed;		 /* continued from the checkpoint of a killed create */
	uint64_t resumed_bytes;	 /* bytes read before that checkpoint (not read again) */
	uint64_t run_bytes_read; /* bytes this call read from the source */
} dw_backup_info;

/* Progress report; called on the creating thread at most every progress_ms. */
typedef void (*dw_backup_progress_fn)(void *arg, const dw_backup_stats *s);
/* A file or directory that could not be read: reported, counted, not fatal. */
typedef void (*dw_backup_warn_fn)(void *arg, const char *path, int err);
/* A checkpoint of backup id became durable; s counts what it covers. */
typedef void (*dw_backup_checkpoint_fn)(void *arg, const char *id, const dw_backup_stats *s);

typedef struct dw_backup_create_opts {
	const char *source;	 /* directory to back up (required) */
	dw_backup_type type;	 /* default AUTO */
	int zstd_level;		 /* 1..19, default 3 */
	unsigned threads;	 /* hashing/compression threads; 0 = number of CPUs (max 16) */
	bool ignore_inode_ctime; /* compare only size and mtime (sources on snapshots/copies) */
	bool fsync; /* make the backup durable before it becomes visible (default true) */
	dw_backup_progress_fn progress;
	dw_backup_warn_fn warn;
	void *arg;		       /* for progress and warn */
	uint32_t progress_ms;	       /* default 500; 0 = after every entry and block */
	const _Atomic bool *cancel;    /* set to true to stop: the create returns DW_ECANCELED */
	const dw_clock *clock;	       /* NULL = real clock */
	char job_id[DW_BACKUP_ID_MAX]; /* "" = new id; else the id to use (resume) */
	/*
	 * Checkpoints: after every checkpoint_bytes read (default 64 MiB) or checkpoint_ms
	 * (default 5000) with progress, at the end of an entry, what is written so far is made
	 * durable and recorded in REPO/tmp/<id>.ckpt. Both 0 = no checkpoints.
	 */
	uint64_t checkpoint_bytes;
	uint32_t checkpoint_ms;
	dw_backup_checkpoint_fn checkpoint; /* called after each one (arg is o->arg) */
	bool no_resume; /* start over even where a killed create of the source left a checkpoint */
	/*
	 * The node's filesystem I/O manager, or NULL for plain I/O. With one, source file reads
	 * and pack writes and fsyncs go through it at DW_IO_LOW with caller id "backup" (so they
	 * yield to High and Normal work and count against that caller's quota); reads are queued
	 * ahead, several at once. DW_ESHED (backpressure) makes the create wait and retry; another
	 * refusal (DW_EQUOTA) fails it.
	 */
	struct dw_io *io;
} dw_backup_create_opts;

void dw_backup_create_opts_default(dw_backup_create_opts *o);

/*
 * Back up o->source. On success fills *out (may be NULL). DW_ENOTFOUND if the source is missing
 * or, for an explicit INCREMENTAL, has no backup to extend; DW_ELIMIT if the chain is full
 * (DW_BACKUP_CHAIN_MAX); DW_ECANCELED if cancelled. A failed or killed create leaves no visible
 * backup. A create that fails or is cancelled removes its partial files; one that is killed
 * leaves them with its last checkpoint, and the next create of the same source (same type and
 * parent; o->job_id, if set, must name it) resumes from there: it keeps the packs and manifest
 * records up to the checkpoint and reads only the entries after it. A checkpoint that cannot
 * be used (other type or parent, damaged) is removed and the create starts over.
 */
int dw_backup_create(dw_backup_repo *r, const dw_backup_create_opts *o, dw_backup_info *out);

typedef struct dw_backup_restore_opts {
	const char *target; /* directory to restore into: missing or empty */
	const char *path;   /* NULL = everything; else only this path (relative to the source) */
	bool owners;	    /* restore owners (needs privilege; EPERM is ignored); default true */
	dw_backup_warn_fn warn; /* entries that could not be restored */
	void *arg;
	unsigned threads; /* file writer threads, 0 = one per CPU (max 8) */
	struct dw_io *io; /* NULL = plain I/O; else pack reads at DW_IO_LOW, caller "backup" */
} dw_backup_restore_opts;

void dw_backup_restore_opts_default(dw_backup_restore_opts *o);

/*
 * Restore backup id ("latest" = the newest backup). Every block is verified against its SHA-256
 * before it is written. Files are written by a pool of threads; a directory's metadata is set
 * once nothing more is created in it, and on failure the restore stops as soon as it can.
 * DW_ENOTFOUND for an unknown id, DW_EEXIST if the target is not empty, DW_ECORRUPT if data fails
 * verification (the restore stops). Stats count what was restored.
 */
int dw_backup_restore(dw_backup_repo *r, const char *id, const dw_backup_restore_opts *o,
		      dw_backup_stats *out);

/* Called for each backup, oldest first. */
typedef void (*dw_backup_list_fn)(void *arg, const dw_backup_info *b);
int dw_backup_list(dw_backup_repo *r, dw_backup_list_fn fn, void *arg);
/* One backup's info; "latest" names the newest. DW_ENOTFOUND. */
int dw_backup_stat(dw_backup_repo *r, const char *id, dw_backup_info *out);

/* ---- check -------------------------------------------------------------------------------- */

typedef struct dw_backup_check_report {
	uint64_t backups;
	uint64_t blocks_checked; /* references checked (and read, with read_data) */
	uint64_t bytes_read;
	uint64_t errors;     /* damaged manifests, dangling references, bad hashes */
	uint64_t incomplete; /* partial files of unfinished creates (dw_backup_recover cleans) */
} dw_backup_check_report;

/* A problem found by check: backup id ("" for the repository) and a one-line message. */
typedef void (*dw_backup_problem_fn)(void *arg, const char *id, const char *msg);

/*
 * Verify every manifest (its SHA-256), every reference (points back along the chain, inside an
 * existing pack) and, with read_data, every stored block (decompressed and hashed). Returns 0
 * when clean, DW_ECORRUPT when errors were found (see the report), or another error if the
 * check could not run.
 */
int dw_backup_check(dw_backup_repo *r, bool read_data, dw_backup_problem_fn fn, void *arg,
		    dw_backup_check_report *out);

/* ---- retention ---------------------------------------------------------------------------- */

typedef struct dw_backup_retention {
	uint32_t keep_last;    /* per source: chains whose backups are all older than the newest
				* keep_last go; 0 = no count rule. Default 30 */
	uint64_t max_age_ns;   /* chains whose newest backup is older go; 0 = none. Default 90 d */
	uint64_t max_bytes;    /* repository total; oldest chains go until under; 0 = none.
				* Default 100 GB */
	const dw_clock *clock; /* for ages; NULL = real clock */
} dw_backup_retention;

void dw_backup_retention_default(dw_backup_retention *p);

typedef enum dw_backup_prune_reason {
	DW_PRUNE_COUNT = 1,
	DW_PRUNE_AGE = 2,
	DW_PRUNE_SIZE = 4,
} dw_backup_prune_reason;

/* One chain that is (or would be) removed: its full's id, backups, exact bytes, reasons. */
typedef struct dw_backup_prune_item {
	const char *chain;
	const char *source;
	uint32_t backups;
	uint64_t bytes;
	unsigned reasons; /* dw_backup_prune_reason bits */
} dw_backup_prune_item;

typedef void (*dw_backup_prune_fn)(void *arg, const dw_backup_prune_item *it);

typedef struct dw_backup_prune_result {
	uint32_t chains_removed;
	uint32_t backups_removed;
	uint64_t bytes_freed;
	uint64_t bytes_before;
	uint64_t bytes_after;
	bool size_cap_unmet; /* the kept (protected) chains alone exceed max_bytes */
} dw_backup_prune_result;

/*
 * Apply a retention policy: whole chains, oldest first; the newest chain of each source is
 * never removed, so an incremental is never orphaned and the newest full stays until a newer one
 * completes. With dry_run nothing changes and the result says exactly what would be freed.
 * Takes the repository lock exclusively: DW_ELOCKED if another process holds it.
 */
int dw_backup_prune(dw_backup_repo *r, const dw_backup_retention *p, bool dry_run,
		    dw_backup_prune_fn fn, void *arg, dw_backup_prune_result *out);

/* ---- recovery ----------------------------------------------------------------------------- */

typedef struct dw_backup_recover_result {
	uint32_t jobs_cleaned; /* partial creates whose process is gone, removed */
	uint32_t jobs_running; /* partial creates whose process still holds its lock */
	uint64_t bytes_freed;
	uint32_t jobs_resumed; /* resumed to completion (dwscale backup recover) */
} dw_backup_recover_result;

/* Called for each incomplete job found: its id and whether it was cleaned. */
typedef void (*dw_backup_recover_fn)(void *arg, const char *id, bool cleaned, uint64_t bytes);

/*
 * Find creates that did not finish (their process died) and remove their partial files, with
 * their checkpoints (to resume them first, see dw_backup_partials). Jobs still running (their
 * lock is held) are left alone. Never needs a manual unlock.
 */
int dw_backup_recover(dw_backup_repo *r, dw_backup_recover_fn fn, void *arg,
		      dw_backup_recover_result *out);

/* A killed create that left a checkpoint it can resume from. */
typedef struct dw_backup_partial {
	char id[DW_BACKUP_ID_MAX];
	char source[4096];
	dw_backup_type type;	       /* FULL or INCREMENTAL */
	char parent[DW_BACKUP_ID_MAX]; /* "" for a full */
	dw_backup_stats stats;	       /* what the checkpoint covers */
} dw_backup_partial;

typedef void (*dw_backup_partial_fn)(void *arg, const dw_backup_partial *p);

/*
 * Every dead create with a usable checkpoint (its process is gone). To resume one, run
 * dw_backup_create with its source and job_id = its id; dw_backup_recover removes the rest.
 */
int dw_backup_partials(dw_backup_repo *r, dw_backup_partial_fn fn, void *arg);

/* ---- adaptive concurrency ----------------------------------------------------------------- */

/*
 * The controller behind MaxConcurrentJobs. Disk utilisation (busy time / wall time of the busiest
 * watched disk, from /proc/diskstats or an injected source) is smoothed by an EMA; each tick the
 * limit rises by one below low_util and falls by one above high_util, within [min, max]. Because
 * parallel devices read near 100 % busy long before they saturate, the limit does not fall while
 * throughput still rises with it: a fall needs the throughput measured at the current limit to
 * be no better than at the limit below (by more than gain_ratio), and above high_util the limit
 * goes back up one when the throughput measured at the limit above was better by gain_ratio.
 * It starts at start (default max): with nothing measured yet, the top of the range is tried
 * first and left as soon as the disk reads busy without more jobs bringing more throughput; a
 * start at min could never learn that a busy-reading device gains from more jobs.
 */
typedef struct dw_backup_util_source {
	/* Busy milliseconds so far (io_ticks) of the busiest watched disk; 0 or -errno. */
	int (*read)(void *ctx, uint64_t *busy_ms);
	void *ctx;
} dw_backup_util_source;

typedef struct dw_backup_conc_config {
	unsigned min, max; /* default 1 and 4 x number of disks */
	double low_util;   /* default 0.60 */
	double high_util;  /* default 0.80 */
	double alpha;	   /* EMA alpha, default 0.3 */
	double gain_ratio; /* default 1.05: a step up must bring 5 % more throughput */
	unsigned start;	   /* first limit, default max; 0 = max; clamped to [min, max] */
} dw_backup_conc_config;

typedef struct dw_backup_conc {
	dw_backup_conc_config cfg;
	dw_ema util;
	dw_ema thr;	   /* throughput at the current limit (bytes/s) */
	double thr_at[65]; /* last smoothed throughput seen at each limit (index) */
	unsigned limit;
	uint64_t last_busy_ms, last_ns;
	bool primed;
} dw_backup_conc;

void dw_backup_conc_config_default(dw_backup_conc_config *cfg, unsigned disks);
int dw_backup_conc_init(dw_backup_conc *c, const dw_backup_conc_config *cfg);
/*
 * One tick: busy_ms is the cumulative busy time of the disk, now_ns the monotonic time,
 * throughput the bytes/s the jobs achieved since the last tick. Returns the new limit.
 */
unsigned dw_backup_conc_tick(dw_backup_conc *c, uint64_t busy_ms, uint64_t now_ns,
			     double throughput);

/*
 * A source reading /proc/diskstats (or another file with its format, for tests) for the disks
 * holding the given paths. dw_backup_diskstats_close(NULL) is a no-op.
 */
typedef struct dw_backup_diskstats dw_backup_diskstats;
int dw_backup_diskstats_open(const char *statfile, const char *const *paths, size_t npaths,
			     dw_backup_diskstats **out);
void dw_backup_diskstats_close(dw_backup_diskstats *d);
dw_backup_util_source dw_backup_diskstats_source(dw_backup_diskstats *d);
/* Number of distinct disks watched (at least 1). */
unsigned dw_backup_diskstats_disks(const dw_backup_diskstats *d);

/* ---- manager ------------------------------------------------------------------------------ */

/*
 * BackupScalingManager: a queue of backup jobs on one repository, run on background threads
 * under the adaptive concurrency limit, with job metadata kept in a dw_store at
 * dw://internal/backup/<jobId> (state, source, repository, type, parent, checkpoint, counters;
 * checkpointed every checkpoint_bytes or checkpoint_ms), chains tracked in a dw_cache rebuilt
 * from the repository on open, and retention run on a timer. The job id is the backup id.
 *
 * Threads: dw_backup_mgr_start() starts the manager thread (one tick per tick_ms: sample the
 * disks, move the limit, start queued jobs, run retention when due); every job runs on its own
 * thread. All functions are thread-safe; close must not race the others.
 */
typedef struct dw_backup_mgr dw_backup_mgr;

typedef struct dw_backup_mgr_config {
	const char *repo;		   /* repository directory (required, initialised) */
	dw_store *store;		   /* job metadata; NULL = not kept */
	const dw_clock *clock;		   /* NULL = real clock */
	dw_backup_retention retention;	   /* default dw_backup_retention_default */
	uint64_t retention_interval_ms;	   /* default 1 h; 0 = on demand only */
	uint64_t tick_ms;		   /* default 1000 */
	dw_backup_conc_config conc;	   /* max 0 = defaults from the number of disks */
	const dw_backup_util_source *util; /* NULL = /proc/diskstats under the repository */
	uint64_t checkpoint_bytes;	   /* default 64 MiB */
	uint64_t checkpoint_ms;		   /* default 5000 */
	unsigned queue_max;		   /* queued + running jobs, default 256 */
	struct dw_io *io; /* the node's I/O manager for every job's I/O (Low); NULL = plain */
} dw_backup_mgr_config;

void dw_backup_mgr_config_default(dw_backup_mgr_config *cfg);
int dw_backup_mgr_open(const dw_backup_mgr_config *cfg, dw_backup_mgr **out);
/* Stops the thread, cancels queued jobs, waits for running ones. NULL is a no-op. */
void dw_backup_mgr_close(dw_backup_mgr *m);
int dw_backup_mgr_start(dw_backup_mgr *m);
void dw_backup_mgr_stop(dw_backup_mgr *m);

/*
 * Queue a backup (o is copied; o->source is copied too). The new job's id goes to id: o->job_id
 * if set; else, if the store holds an unfinished job for the same source, its id, so that the
 * create resumes from that job's last checkpoint (or starts it over without one); else a new
 * id. The job's checkpoints follow the config's checkpoint_bytes and checkpoint_ms, and each
 * one updates its record's checkpoint_bytes. DW_ESHED when the queue is full.
 */
int dw_backup_mgr_submit(dw_backup_mgr *m, const dw_backup_create_opts *o,
			 char id[DW_BACKUP_ID_MAX]);
/* Wait for a job; returns its result (0 or the create's error) and fills *out on success. */
int dw_backup_mgr_wait(dw_backup_mgr *m, const char *id, dw_backup_info *out);

typedef struct dw_backup_job {
	char id[DW_BACKUP_ID_MAX];
	char state[16]; /* queued, running, done, failed, recovered */
	char source[4096];
	char type[16];
	char parent[DW_BACKUP_ID_MAX];
	uint64_t checkpoint_bytes; /* bytes read at the last checkpoint */
	uint64_t files, bytes_read, bytes_stored;
	uint64_t updated_ns;
	int error;
} dw_backup_job;

typedef void (*dw_backup_job_fn)(void *arg, const dw_backup_job *j);
/* Every job record in the store (DW_EUNSUPPORTED without a store). */
int dw_backup_mgr_jobs(dw_backup_mgr *m, dw_backup_job_fn fn, void *arg);

/*
 * RecoverIncompleteJobs: every job the store says is queued or running but that this manager
 * does not run (its process died) is reported to fn and its record is marked "recovered". With
 * resubmit it is queued again under the same id and resumes from its last checkpoint (partial
 * files without a checkpoint are removed); without, all its partial files are removed.
 */
int dw_backup_mgr_recover(dw_backup_mgr *m, bool resubmit, dw_backup_job_fn fn, void *arg,
			  unsigned *count);

/* Retention now, with the configured policy. */
int dw_backup_mgr_prune(dw_backup_mgr *m, bool dry_run, dw_backup_prune_fn fn, void *arg,
			dw_backup_prune_result *out);

/* Number of chains, from the chains cache. */
size_t dw_backup_mgr_chains(dw_backup_mgr *m);

/*
 * The manager as a scalable subsystem named "backup". Metrics: jobs_running, jobs_queued,
 * jobs_limit, disk_util_ema, throughput_bytes_per_second, bytes_stored_total, backups_total,
 * backups_failed_total, chains, last_retention_run_seconds. Limits: keep_last, max_age_seconds,
 * max_bytes, jobs_min, jobs_max, util_low, util_high, retention_interval_seconds. State from the
 * queue fill: Warning at 50 %, Critical at 80 %, Shedding when full. Valid until close.
 */
const dw_scalable *dw_backup_mgr_scalable(dw_backup_mgr *m);

#ifdef __cplusplus
}
#endif
#endif
