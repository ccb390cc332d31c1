/* SPDX-License-Identifier: MIT */
/*
 * Backup creation internals shared by engine.c (workers, committer, create) and engine_read.c
 * (the reader: slots, the walk, file reads): the job, its slot ring and its buffer pool. See
 * engine.c for the threads and what job.mu guards.
 */
#ifndef DW_BACKUP_ENGINE_INT_H
#define DW_BACKUP_ENGINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backup/backup_int.h"

#define WORKERS_MAX    16
#define SLOTS	       64 /* items in flight between the reader and the committer */
#define WAKE_BATCH     16 /* items a sleeping thread is woken for */
#define WALK_DEPTH_MAX 512
#define DIR_NAMES_MAX  (64u << 20) /* bytes of names of one directory */

enum { IT_ENTRY, IT_BLOCK, IT_COPY, IT_END };
enum { S_FREE, S_READING, S_FILLED, S_WORKING, S_DONE };

/*
 * A source file read through the I/O manager: shared by its pending reads and by its E slot;
 * the last one to let go closes it (possibly on the I/O manager's thread).
 */
struct rfile {
	int fd;
	dw_io_file *f;
	_Atomic unsigned refs;
};

struct slot {
	struct job *j;
	int kind;
	int state;
	struct dw__entry *ent;
	uint8_t *buf;
	uint32_t len;
	uint8_t *cbuf;
	size_t ccap;
	uint32_t clen;
	uint8_t *ebuf; /* the block sealed (encrypted repositories) */
	int bset;      /* index of the buffer set lent to this slot, -1 for none */
	bool zstd;
	bool has_parent;
	bool reuse;
	struct dw__bref pref; /* parent block (IT_BLOCK) or the reference to copy (IT_COPY) */
	uint8_t sha[DW__SHA_LEN];
	struct dw__file_end fe;
	bool fe_copy;
	dw_backup_stats rs;    /* the reader's counters when it published this slot */
	int rerr;	       /* IT_BLOCK read through the I/O manager: its error */
	bool fe_commit;	       /* IT_END: size and flags are the committer's count */
	struct rfile *rf;      /* IT_END through the I/O manager: released when committed */
	struct rfile *rf_read; /* the file of a pending read */
};

/* The buffers one block needs on its way: read, compressed, sealed. */
struct bufset {
	uint8_t *buf, *cbuf, *ebuf;
};

struct hl_ent {
	uint64_t dev, ino;
	char *path;
};

struct pcur {
	bool open;
	int fd;
	struct dw__mreader mr;
	int type; /* current record, 0 at the end */
	struct dw__entry e;
	struct dw__bref b;
	struct dw__file_end fe;
};

struct job {
	dw_backup_repo *r;
	const dw_backup_create_opts *o;
	uint32_t block_size;
	int level;
	bool full;
	uint16_t self_idx;

	pthread_mutex_t mu;
	pthread_cond_t cv_free, cv_work, cv_done;
	struct slot *slots; /* nslots */
	unsigned nslots;
	struct bufset *bsets; /* nbsets: block buffers, lent to IT_BLOCK slots */
	unsigned nbsets;
	unsigned *bfree;	   /* protected by mu: indices of unlent buffer sets */
	unsigned nbfree;	   /* protected by mu */
	uint64_t head, work, tail; /* protected by mu */
	bool reader_done;	   /* protected by mu */
	bool reader_waits;	   /* protected by mu: for a free slot or buffer set */
	bool committer_waits;	   /* protected by mu */
	bool stop;		   /* protected by mu */
	int err;		   /* protected by mu: first fatal error */
	unsigned inflight;	   /* protected by mu: reads queued on the I/O manager */
	dw_backup_stats rstats;	   /* protected by mu: the reader's counters */

	/* reader only */
	int srcfd;
	struct pcur pc;
	dw_backup_stats rs;
	char *pathbuf;
	const char *resume_last; /* resuming: entries up to this path are recorded; else NULL */
	char *resume_buf;	 /* owns what resume_last first points to */

	/* reader writes, committer reads at checkpoints */
	pthread_mutex_t hl_mu;
	struct hl_ent *hl; /* protected by hl_mu */
	size_t hl_cap, hl_n;

	/* committer only */
	struct dw__mwriter mw;
	struct dw__pwriter pw;
	EVP_MD_CTX *fsha;
	dw_backup_stats cs;
	const char *id;
	const char *source;
	const char *parent;
	char *cur_path;	     /* path of the last entry committed */
	uint64_t ck_bytes;   /* bytes read at the last checkpoint */
	uint64_t ck_ns;	     /* when it was taken */
	bool ck_dirty;	     /* entries committed since */
	uint64_t file_bytes; /* bytes of the current file's blocks */
	bool file_err;	     /* a read of the current file failed */
};

/* engine.c */
void dw__job_fail(struct job *j, int err);

/* engine_read.c: the reader thread (walk, read, publish slots in order) */
void *dw__reader_main(void *arg);
/* Wake the committer if a batch is ready or the reader is done or waiting (mu held). */
void dw__wake_committer(struct job *j);
/* A slot gives back its buffer set (mu held); the reader waiting for one is woken. */
void dw__bset_return(struct job *j, struct slot *s);
/* Read the parent manifest's next record into the cursor: 0, or an error. */
int dw__pc_next(struct pcur *pc);
/* Existing first name of (dev, ino), or NULL after remembering path as its first name. */
const char *dw__hl_lookup_or_add(struct job *j, uint64_t dev, uint64_t ino, const char *path);
void dw__hl_free(struct job *j);
/* Drop a reference to a file being read through the I/O scheduler. */
void dw__rfile_put(struct rfile *rf);

#endif
