/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the backup subsystem: repository handle, manifest records, pack files and
 * the small helpers shared by repo.c, manifest.c, pack.c, engine.c, restore.c and retention.c.
 *
 * The on-disk format is drawn in docs/formats/repository.md and, for the manifest records, at
 * the top of manifest.c. All integers on disk are little-endian.
 */
#ifndef DWSCALE_BACKUP_INT_H
#define DWSCALE_BACKUP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "dwscale/backup.h"
#include "dwscale/io.h"

#define DW__IO_CALLER "backup" /* the I/O manager's quota id for backup I/O */

#define DW__SHA_LEN	 32
#define DW__PATH_MAX	 4096
#define DW__REPO_VERSION 1

/* ---- crypt.c --------------------------------------------------------------------------------- */

#define DW__NONCE_LEN	   12
#define DW__TAG_LEN	   16
#define DW__CRYPT_OVERHEAD (DW__NONCE_LEN + DW__TAG_LEN) /* per blob */
#define DW__FRAME_HEAD	   12				 /* u32 plen, u64 poff */
#define DW__FRAME_OVERHEAD (DW__FRAME_HEAD + DW__CRYPT_OVERHEAD)
#define DW__FRAME_MAX	   (256u << 10) /* plaintext of one manifest frame, at most */

struct dw__crypt {
	uint8_t key[DW_BACKUP_KEY_LEN];
};

/* HMAC-SHA256 key check value, hex. */
int dw__kcv(const uint8_t key[DW_BACKUP_KEY_LEN], char out[2 * 32 + 1]);
/* Seal n bytes of a block into out (n + DW__CRYPT_OVERHEAD bytes). */
int dw__blob_seal(const struct dw__crypt *c, const uint8_t sha[32], uint32_t ulen, uint8_t flags,
		  const uint8_t *in, size_t n, uint8_t *out);
/* Open a sealed blob of n bytes into out (n - DW__CRYPT_OVERHEAD). DW_ECORRUPT if tampered. */
int dw__blob_open(const struct dw__crypt *c, const uint8_t sha[32], uint32_t ulen, uint8_t flags,
		  const uint8_t *in, size_t n, uint8_t *out);
/* Seal plen bytes at plaintext offset poff of manifest id into out (plen + overhead). */
int dw__frame_seal(const struct dw__crypt *c, const char *id, uint64_t poff, const uint8_t *in,
		   uint32_t plen, uint8_t *out);
int dw__frame_head(const uint8_t head[DW__FRAME_HEAD], uint32_t *plen, uint64_t *poff);
/* Seal n bytes with aad into out (nonce | ciphertext | tag); open them again. */
int dw__seal(const struct dw__crypt *c, const uint8_t *aad, size_t alen, const uint8_t *in,
	     size_t n, uint8_t *out);
int dw__unseal(const struct dw__crypt *c, const uint8_t *aad, size_t alen, const uint8_t *in,
	       size_t n, uint8_t *out);
/* Open a whole frame (head included) into out (plen bytes). DW_ECORRUPT if tampered. */
int dw__frame_open(const struct dw__crypt *c, const char *id, const uint8_t *frame, uint8_t *out);

struct dw_backup_repo {
	char *path;
	int dirfd; /* the repository directory */
	uint32_t block_size;
	uint32_t pack_size;
	struct dw__crypt *crypt; /* NULL: not encrypted */
};

/* ---- util.c ---------------------------------------------------------------------------------- */

int dw__sha256(const void *data, size_t len, uint8_t out[DW__SHA_LEN]);
void dw__hex(const uint8_t *in, size_t n, char *out); /* out gets 2n+1 bytes */
/* Write all of buf (retrying short writes and EINTR); 0 or -errno. */
int dw__write_all(int fd, const void *buf, size_t len);
int dw__pread_all(int fd, void *buf, size_t len, uint64_t off);
int dw__fsync_dir_at(int dirfd, const char *rel);
/* Valid backup id: [0-9A-Za-z._-]{1,63} not starting with '.'. */
bool dw__id_valid(const char *id);
/* New id from the wall clock and random bits: YYYYMMDDTHHMMSSZ-xxxxxxxx. */
void dw__id_new(uint64_t wall_ns, char out[DW_BACKUP_ID_MAX]);
/* Order of paths in a manifest: "." first, then depth-first with names in byte order. */
int dw__path_cmp(const char *a, const char *b);
/* Remove a directory tree below dirfd (rel); counts bytes of removed files into *bytes. */
int dw__rm_tree_at(int dirfd, const char *rel, uint64_t *bytes);
/* Sum of file sizes under dirfd/rel (0 if missing). */
int dw__du_at(int dirfd, const char *rel, uint64_t *bytes);

/* ---- repo.c ---------------------------------------------------------------------------------- */

/*
 * Open REPO/rel and flock() it shared or exclusive; nb = DW_ELOCKED instead of waiting. Returns
 * the descriptor (close it to unlock). Each call opens its own descriptor because flock() locks
 * belong to the open file description: two threads then exclude each other as two processes do.
 */
int dw__repo_lock(dw_backup_repo *r, const char *rel, bool exclusive, bool nb);
/*
 * Clean partial files of dead jobs (retention.c); the caller holds the repository lock. With
 * keep_resumable, dead jobs that left a checkpoint are kept for a later create to resume.
 */
int dw__recover(dw_backup_repo *r, bool keep_resumable, dw_backup_recover_fn fn, void *arg,
		dw_backup_recover_result *out);
/* Remove the files of an unfinished create (packs, temp manifest, checkpoint, job file). */
int dw__job_clean(dw_backup_repo *r, const char *id, uint64_t *bytes);
/* The same, but the job file stays (its owner holds its lock and goes on). */
int dw__job_clean_data(dw_backup_repo *r, const char *id, uint64_t *bytes);
/* Bytes of a backup in the repository: its manifest and packs. */
int dw__backup_bytes(dw_backup_repo *r, const char *id, uint64_t *bytes);

/* An array of infos of every visible backup, oldest first (by created_ns, then id). */
struct dw__blist {
	dw_backup_info *v;
	size_t n;
};
int dw__blist_load(dw_backup_repo *r, struct dw__blist *l);
void dw__blist_free(struct dw__blist *l);
/* Newest backup of the source, or NULL. */
const dw_backup_info *dw__blist_latest(const struct dw__blist *l, const char *source);
const dw_backup_info *dw__blist_find(const struct dw__blist *l, const char *id);

/* ---- manifest.c ------------------------------------------------------------------------------ */

enum dw__rec {
	DW__REC_HEADER = 'H',
	DW__REC_DIR = 'D',
	DW__REC_FILE = 'F',
	DW__REC_SYMLINK = 'L',
	DW__REC_HARDLINK = 'K',
	DW__REC_SPECIAL = 'S',
	DW__REC_BLOCK = 'B',
	DW__REC_FILE_END = 'E',
	DW__REC_TRAILER = 'T',
};

/* Metadata common to every entry record. */
struct dw__entry {
	char kind; /* enum dw__rec: DIR, FILE, SYMLINK, HARDLINK, SPECIAL */
	char path[DW__PATH_MAX];
	char target[DW__PATH_MAX]; /* symlink target or first name of a hard link */
	uint32_t mode, uid, gid;
	int64_t mtime_sec, ctime_sec;
	uint32_t mtime_nsec, ctime_nsec;
	uint64_t size, ino, rdev;
};

#define DW__BREF_ZSTD 1u /* block stored zstd-compressed (else raw) */

/* A reference to a stored block: pack (chain index, pack number), offset and lengths. */
struct dw__bref {
	uint16_t chain_idx; /* index into the header's chain: 0 = the full */
	uint8_t flags;
	uint32_t pack;
	uint64_t off;
	uint32_t clen, ulen;
	uint8_t sha[DW__SHA_LEN];
};

struct dw__file_end {
	uint64_t size;
	uint8_t sha[DW__SHA_LEN];
	uint32_t flags; /* DW__FILE_PARTIAL: a read error cut the file short */
};
#define DW__FILE_PARTIAL 1u

struct dw__mheader {
	uint8_t type; /* DW_BACKUP_FULL or INCREMENTAL */
	uint32_t block_size;
	uint64_t created_ns;
	uint16_t chain_len;		 /* chain[chain_len - 1] is this backup */
	char (*chain)[DW_BACKUP_ID_MAX]; /* dw_malloc'ed by readers: dw__mheader_free() */
	char source[DW__PATH_MAX];
};

#define DW__TRAILER_SIZE (1 + 4 + 8 * 16 + DW__SHA_LEN + 8)

struct dw__mtrailer {
	dw_backup_stats stats;
	uint64_t finished_ns;
};

/* Streaming writer: records are appended and hashed; dw__mw_finish writes the trailer. */
struct dw__mwriter {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	uint64_t written; /* plaintext bytes appended */
	uint64_t foff;	  /* bytes in the file */
	void *sha;	  /* EVP_MD_CTX */
	int err;
	const struct dw__crypt *crypt; /* set after open: frames sealed for backup id */
	char id[DW_BACKUP_ID_MAX];
	uint8_t *fbuf;
};

int dw__mw_open(struct dw__mwriter *w, int fd);
int dw__mw_header(struct dw__mwriter *w, const struct dw__mheader *h);
int dw__mw_entry(struct dw__mwriter *w, const struct dw__entry *e);
int dw__mw_block(struct dw__mwriter *w, const struct dw__bref *b);
int dw__mw_file_end(struct dw__mwriter *w, const struct dw__file_end *fe);
int dw__mw_finish(struct dw__mwriter *w, const struct dw__mtrailer *t);
/* Write out the buffer; *len gets the bytes in the file and sha the SHA-256 of the records. */
int dw__mw_sync(struct dw__mwriter *w, uint64_t *len, uint8_t sha[DW__SHA_LEN]);
/*
 * Continue a manifest: fd (read-write) is cut to len file bytes, whose records are hashed again
 * and must hash to sha (else DW_ECORRUPT); records are then appended after them.
 */
int dw__mw_resume(struct dw__mwriter *w, int fd, uint64_t len, const uint8_t sha[DW__SHA_LEN],
		  const struct dw__crypt *crypt, const char *id);
void dw__mw_close(struct dw__mwriter *w);

/* Streaming reader; verify = check the trailer's hash at the end (reads everything). */
struct dw__mreader {
	int fd;
	uint8_t *buf;
	size_t pos, len, cap;
	uint64_t consumed, file_size;
	void *sha;
	bool eof;
	struct dw__mheader h;
	struct dw__mtrailer t;
	bool have_trailer;
	const struct dw__crypt *crypt; /* frames of backup id */
	char id[DW_BACKUP_ID_MAX];
	uint8_t *fbuf, *fplain;
	size_t fpos, flen;
	uint64_t pnext; /* plaintext offset of the next frame */
};

/* Open and read the header. */
int dw__mr_open(struct dw__mreader *m, int fd);
/* The same for a manifest of an encrypted repository (crypt NULL = plain). */
int dw__mr_open2(struct dw__mreader *m, int fd, const struct dw__crypt *crypt, const char *id);
/*
 * Next record: returns the record type (> 0) with the matching out filled (e, b or fe), 0 at
 * the end (after the trailer, whose hash was verified), or a negative code (DW_ECORRUPT).
 */
int dw__mr_next(struct dw__mreader *m, struct dw__entry *e, struct dw__bref *b,
		struct dw__file_end *fe);
void dw__mr_close(struct dw__mreader *m);
/* Header and trailer only (for list): reads the start and the fixed-size end of the file. */
int dw__manifest_summary(int fd, struct dw__mheader *h, struct dw__mtrailer *t);
int dw__manifest_summary2(int fd, const struct dw__crypt *crypt, const char *id,
			  struct dw__mheader *h, struct dw__mtrailer *t);
void dw__mheader_free(struct dw__mheader *h);

/* ---- pack.c ---------------------------------------------------------------------------------- */

#define DW__PACK_MAGIC	"DWPACK01"
#define DW__PACK_HDR	16
#define DW__PACK_MAX_NO 99999999u

/*
 * Appends blocks to REPO/packs/<id>/<n>.pack, starting a new pack past pack_size. Appends are
 * gathered in a buffer of DW__PW_BUF bytes and written in one pwrite (through the I/O manager at
 * DW_IO_LOW when one is set), so small blocks do not cost one system call or one scheduled op
 * each.
 */
#define DW__PW_BUF (1u << 20)
struct dw__pwriter {
	int dirfd; /* packs/<id> */
	int fd;
	uint32_t pack_no;
	uint64_t off; /* logical end of the open pack (buffered bytes included) */
	uint64_t pack_size;
	uint64_t bytes; /* total appended */
	bool fsync;
	dw_io *io;	 /* NULL = plain pwrite/fsync */
	dw_io_file *iof; /* fd on the I/O manager */
	uint8_t *wbuf;	 /* DW__PW_BUF bytes not yet written, ending at off */
	size_t wlen;
};

/* io may be NULL. */
int dw__pw_open(struct dw__pwriter *p, int repofd, const char *id, uint64_t pack_size,
		bool do_fsync, dw_io *io);
/* Write out the buffer and (with fsync) fsync the open pack and the directory. */
int dw__pw_sync(struct dw__pwriter *p);
int dw__pw_append(struct dw__pwriter *p, const void *data, uint32_t len, uint32_t *pack,
		  uint64_t *off);
/* fsync the last pack and the directory. */
int dw__pw_finish(struct dw__pwriter *p);
/*
 * Continue the packs of a checkpoint: packs after pack_no are removed and pack pack_no is cut
 * to off (open = it had been started; else no pack had been). DW_ECORRUPT if a pack is
 * shorter than the checkpoint says.
 */
int dw__pw_resume(struct dw__pwriter *p, int repofd, const char *id, uint64_t pack_size,
		  bool do_fsync, dw_io *io, uint32_t pack_no, uint64_t off, uint64_t bytes,
		  bool open);
void dw__pw_close(struct dw__pwriter *p);

/* Reads blocks of the packs of one chain; keeps a few packs open. */
#define DW__PR_SLOTS 8
#define DW__PR_PLAN  16 /* stretches of packs one plan holds */
struct dw__preader {
	int repofd;
	char (*chain)[DW_BACKUP_ID_MAX];
	uint16_t chain_len;
	struct {
		int fd;
		uint16_t ci;
		uint32_t pack;
		uint64_t size;
		uint64_t used;
	} slot[DW__PR_SLOTS];
	uint64_t tick;
	void *dctx; /* ZSTD_DCtx */
	uint8_t *cbuf;
	size_t ccap;
	dw_io *io; /* NULL = plain pread; else reads at DW_IO_LOW */
	dw_io_file *iof[DW__PR_SLOTS];
	const struct dw__crypt *crypt; /* blobs are sealed */
	uint8_t *dbuf;
	size_t dcap;
	/* read-ahead window: bytes [woff, woff + wlen) of pack (wci, wpack), for small blocks */
	uint8_t *win;
	size_t wlen;
	uint64_t woff;
	uint16_t wci;
	uint32_t wpack;
	bool planned; /* set by dw__pr_plan_reset: the window loads only planned stretches */
	unsigned nplan;
	struct dw__pr_span {
		uint16_t ci;
		uint32_t pack;
		uint64_t lo, hi, need; /* planned blocks span [lo, hi), need bytes of it */
	} plan[DW__PR_PLAN];
};

/* Blocks under half of this are read through the pack reader's window. */
#define DW__PR_WINDOW (1u << 20)

int dw__pr_open(struct dw__preader *p, int repofd, char (*chain)[DW_BACKUP_ID_MAX],
		uint16_t chain_len);
/*
 * Read, decompress and verify one block into out (capacity >= b->ulen). DW_ECORRUPT for a block
 * outside its pack, a decompression failure or a hash mismatch. verify=false skips the hash.
 */
int dw__pr_read(struct dw__preader *p, const struct dw__bref *b, uint8_t *out, bool verify);
/* Check that the block lies inside an existing pack, without reading it. */
int dw__pr_locate(struct dw__preader *p, const struct dw__bref *b);
/*
 * Plan the small blocks about to be read: dw__pr_plan_reset() starts a plan, dw__pr_plan_add()
 * adds a block. From then on the window moves only to a planned stretch of a pack (the span of
 * the planned blocks in it, if they fill at least half of it); any other small block is read
 * on its own. Readers that split a pack's blocks between them so read each byte once.
 */
void dw__pr_plan_reset(struct dw__preader *p);
void dw__pr_plan_add(struct dw__preader *p, const struct dw__bref *b);
void dw__pr_close(struct dw__preader *p);

/* ---- ckpt.c ---------------------------------------------------------------------------------- */

/*
 * A checkpoint: REPO/tmp/<id>.ckpt, replaced atomically (write .ckpt.new, fsync, rename, fsync
 * the directory) each time. Everything up to it (manifest prefix, packs) was fsynced first.
 */
struct dw__ckpt {
	char id[DW_BACKUP_ID_MAX];
	char source[DW__PATH_MAX];
	uint8_t type; /* DW_BACKUP_FULL or INCREMENTAL */
	char parent[DW_BACKUP_ID_MAX];
	uint64_t mlen; /* manifest bytes */
	uint8_t msha[DW__SHA_LEN];
	uint32_t pack_no;
	uint64_t pack_off;
	uint64_t pack_bytes;
	bool pack_open;
	char last[DW__PATH_MAX]; /* the last entry recorded whole */
	dw_backup_stats rs;	 /* reader counters up to and including it */
	uint64_t blocks_new, blocks_reused;
	/* first names of inodes with several links, recorded up to last */
	uint64_t nhl;
	struct dw__ckpt_hl {
		uint64_t dev, ino;
		char *path;
	} * hl;
};

#define DW__CKPT_FILE_MAX (256u << 20)

/* Encode ck (with its hl entries) and write it durably over tmp/<id>.ckpt. */
int dw__ckpt_write(dw_backup_repo *r, const struct dw__ckpt *ck, bool do_fsync);
/* Read and verify tmp/<id>.ckpt. DW_ENOTFOUND, DW_ECORRUPT. Free with dw__ckpt_free. */
int dw__ckpt_read(dw_backup_repo *r, const char *id, struct dw__ckpt *ck);
void dw__ckpt_free(struct dw__ckpt *ck);
/* Parse a checkpoint file's bytes (the fuzz target uses this). */
int dw__ckpt_parse(const uint8_t *p, size_t len, struct dw__ckpt *ck);

#endif
