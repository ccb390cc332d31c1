// SPDX-License-Identifier: MIT
/*
 * Pack files: the data of one backup, in REPO/packs/<backup id>/<n>.pack.
 *
 *   pack     +----------------+---------+---------+-----+
 *            | "DWPACK01" + 8 | block 0 | block 1 | ... |    a block is a zstd frame, or raw
 *            |  zero bytes    |         |         |     |    bytes when zstd did not shrink it
 *            +----------------+---------+---------+-----+
 *
 * A pack carries no index: the manifest's block records (pack, offset, lengths, flags, SHA-256)
 * are the index, so a pack is written strictly append-only by one writer and needs no update in
 * place. A pack is closed (fsynced when durability is asked for) once it passes the target size;
 * n counts up from 0, written as eight decimal digits so names sort.
 *
 * The reader keeps up to DW__PR_SLOTS packs open (least recently used goes), because blocks of
 * consecutive files of an incremental point into a handful of packs of its chain.
 *
 * Small blocks are read through a window of PR_WINDOW bytes: the blocks of consecutive small
 * files lie next to each other in a pack (it was written in manifest order, and restore and
 * check read in that order), so one read serves a few hundred of them. Without it, each file of
 * a small-file restore paid a read of its own, through the I/O scheduler a queue round trip.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "backup/backup_int.h"

#define PR_WINDOW DW__PR_WINDOW

static void pack_name(uint32_t n, char out[32])
{
	snprintf(out, 32, "%08u.pack", n);
}

/* Write len bytes at off of the open pack, through the I/O manager when there is one. */
static int pw_write(struct dw__pwriter *p, const uint8_t *data, size_t len, uint64_t off)
{
	while (len > 0) {
		size_t n = len > DW_IO_LEN_MAX ? DW_IO_LEN_MAX : len;
		int rc;

		if (p->iof) {
			rc = dw_io_pwrite(p->iof, data, n, off, DW_IO_LOW, DW__IO_CALLER);
			if (rc == DW_ESHED) {
				usleep(2000); /* the device is saturated: Low work waits its turn */
				continue;
			}
			if (rc == 0)
				return -EIO;
		} else {
			ssize_t w = pwrite(p->fd, data, n, (off_t)off);

			if (w < 0 && errno == EINTR)
				continue;
			rc = w < 0 ? -errno : (w == 0 ? -EIO : (int)w);
		}
		if (rc < 0)
			return rc;
		data += rc;
		len -= (size_t)rc;
		off += (uint64_t)rc;
	}
	return 0;
}

static int pw_flush(struct dw__pwriter *p)
{
	int rc;

	if (p->wlen == 0)
		return 0;
	rc = pw_write(p, p->wbuf, p->wlen, p->off - p->wlen);
	if (rc < 0)
		return rc;
	p->wlen = 0;
	return 0;
}

static int pw_fsync_file(struct dw__pwriter *p)
{
	if (p->iof)
		return dw_io_fsync(p->iof, DW_IO_LOW, DW__IO_CALLER);
	return fsync(p->fd) < 0 ? -errno : 0;
}

static void pw_close_file(struct dw__pwriter *p)
{
	dw_io_file_close(p->iof);
	p->iof = NULL;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static int pw_attach(struct dw__pwriter *p)
{
	return p->io ? dw_io_file_attach(p->io, p->fd, &p->iof) : 0;
}

static int pw_new_pack(struct dw__pwriter *p)
{
	char name[32];
	uint8_t hdr[DW__PACK_HDR] = { 0 };
	int rc;

	if (p->fd >= 0) {
		rc = pw_flush(p);
		if (rc == 0 && p->fsync)
			rc = pw_fsync_file(p);
		if (rc < 0)
			return rc;
		pw_close_file(p);
		p->pack_no++;
	}
	if (p->pack_no > DW__PACK_MAX_NO)
		return DW_ETOOBIG;
	pack_name(p->pack_no, name);
	p->fd = openat(p->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (p->fd < 0)
		return -errno;
	rc = pw_attach(p);
	if (rc < 0)
		return rc;
	memcpy(hdr, DW__PACK_MAGIC, 8);
	memcpy(p->wbuf, hdr, sizeof(hdr));
	p->wlen = sizeof(hdr);
	p->off = DW__PACK_HDR;
	p->bytes += DW__PACK_HDR;
	return 0;
}

int dw__pw_open(struct dw__pwriter *p, int repofd, const char *id, uint64_t pack_size,
		bool do_fsync, dw_io *io)
{
	char rel[128];

	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->dirfd = -1;
	p->pack_size = pack_size;
	p->fsync = do_fsync;
	p->io = io;
	p->wbuf = dw_malloc(DW__PW_BUF);
	if (!p->wbuf)
		return -ENOMEM;
	if (snprintf(rel, sizeof(rel), "packs/%s", id) >= (int)sizeof(rel))
		return DW_EBADKEY;
	if (mkdirat(repofd, rel, 0755) < 0 && errno != EEXIST)
		return -errno;
	p->dirfd = openat(repofd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd < 0)
		return -errno;
	return 0;
}

int dw__pw_resume(struct dw__pwriter *p, int repofd, const char *id, uint64_t pack_size,
		  bool do_fsync, dw_io *io, uint32_t pack_no, uint64_t off, uint64_t bytes,
		  bool open)
{
	char name[32];
	struct stat st;
	int rc;

	rc = dw__pw_open(p, repofd, id, pack_size, do_fsync, io);
	if (rc < 0)
		return rc;
	if (pack_no > DW__PACK_MAX_NO || (open && off < DW__PACK_HDR))
		return DW_ECORRUPT;
	/* packs begun after the checkpoint hold nothing it refers to */
	for (uint32_t n = open ? pack_no + 1 : pack_no; n <= DW__PACK_MAX_NO; n++) {
		pack_name(n, name);
		if (unlinkat(p->dirfd, name, 0) < 0) {
			if (errno == ENOENT)
				break;
			return -errno;
		}
	}
	p->pack_no = pack_no;
	p->bytes = bytes;
	if (!open)
		return 0;
	pack_name(pack_no, name);
	p->fd = openat(p->dirfd, name, O_WRONLY | O_CLOEXEC);
	if (p->fd < 0)
		return errno == ENOENT ? DW_ECORRUPT : -errno;
	if (fstat(p->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < off)
		return DW_ECORRUPT;
	if (ftruncate(p->fd, (off_t)off) < 0)
		return -errno;
	p->off = off;
	return pw_attach(p);
}

int dw__pw_append(struct dw__pwriter *p, const void *data, uint32_t len, uint32_t *pack,
		  uint64_t *off)
{
	int rc;

	if (p->fd < 0 || p->off >= p->pack_size) {
		rc = pw_new_pack(p);
		if (rc < 0)
			return rc;
	}
	if (p->wlen + len > DW__PW_BUF) {
		rc = pw_flush(p);
		if (rc < 0)
			return rc;
	}
	if (len > DW__PW_BUF) {
		rc = pw_write(p, data, len, p->off);
		if (rc < 0)
			return rc;
	} else {
		memcpy(p->wbuf + p->wlen, data, len);
		p->wlen += len;
	}
	*pack = p->pack_no;
	*off = p->off;
	p->off += len;
	p->bytes += len;
	return 0;
}

int dw__pw_sync(struct dw__pwriter *p)
{
	int rc = p->fd >= 0 ? pw_flush(p) : 0;

	if (rc < 0 || !p->fsync)
		return rc;
	if (p->fd >= 0) {
		rc = pw_fsync_file(p);
		if (rc < 0)
			return rc;
	}
	if (p->dirfd >= 0 && fsync(p->dirfd) < 0)
		return -errno;
	return 0;
}

int dw__pw_finish(struct dw__pwriter *p)
{
	return dw__pw_sync(p);
}

void dw__pw_close(struct dw__pwriter *p)
{
	pw_close_file(p);
	if (p->dirfd >= 0)
		close(p->dirfd);
	p->dirfd = -1;
	dw_free(p->wbuf);
	p->wbuf = NULL;
	p->wlen = 0;
}

/* ---- reader ------------------------------------------------------------------------------------
 */

int dw__pr_open(struct dw__preader *p, int repofd, char (*chain)[DW_BACKUP_ID_MAX],
		uint16_t chain_len)
{
	memset(p, 0, sizeof(*p));
	p->repofd = repofd;
	p->chain = chain;
	p->chain_len = chain_len;
	for (int i = 0; i < DW__PR_SLOTS; i++)
		p->slot[i].fd = -1;
	p->dctx = ZSTD_createDCtx();
	if (!p->dctx)
		return -ENOMEM;
	return 0;
}

/* The slot holding pack (ci, pack), opening it if needed. */
static int pr_slot(struct dw__preader *p, uint16_t ci, uint32_t pack, int *out)
{
	int victim = 0;
	char rel[160];
	struct stat st;
	int fd;

	if (ci >= p->chain_len)
		return DW_ECORRUPT;
	for (int i = 0; i < DW__PR_SLOTS; i++) {
		if (p->slot[i].fd >= 0 && p->slot[i].ci == ci && p->slot[i].pack == pack) {
			p->slot[i].used = ++p->tick;
			*out = i;
			return 0;
		}
		if (p->slot[i].fd < 0 ||
		    (p->slot[victim].fd >= 0 && p->slot[i].used < p->slot[victim].used))
			victim = i;
	}
	if (snprintf(rel, sizeof(rel), "packs/%s/%08u.pack", p->chain[ci], pack) >=
	    (int)sizeof(rel))
		return DW_ECORRUPT;
	fd = openat(p->repofd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? DW_ECORRUPT : -errno;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	if (p->slot[victim].fd >= 0)
		close(p->slot[victim].fd);
	dw_io_file_close(p->iof[victim]);
	p->iof[victim] = NULL;
	if (p->io) {
		int rc = dw_io_file_attach(p->io, fd, &p->iof[victim]);

		if (rc < 0) {
			close(fd);
			p->slot[victim].fd = -1;
			return rc;
		}
	}
	p->slot[victim].fd = fd;
	p->slot[victim].ci = ci;
	p->slot[victim].pack = pack;
	p->slot[victim].size = (uint64_t)st.st_size;
	p->slot[victim].used = ++p->tick;
	*out = victim;
	return 0;
}

int dw__pr_locate(struct dw__preader *p, const struct dw__bref *b)
{
	int s, rc = pr_slot(p, b->chain_idx, b->pack, &s);

	if (rc < 0)
		return rc;
	if (b->off < DW__PACK_HDR || b->off + b->clen > p->slot[s].size)
		return DW_ECORRUPT;
	return 0;
}

/* Read len bytes at off of slot s, through the I/O manager at DW_IO_LOW when there is one. */
static int pr_pread_direct(struct dw__preader *p, int s, uint8_t *buf, size_t len, uint64_t off)
{
	if (!p->iof[s])
		return dw__pread_all(p->slot[s].fd, buf, len, off);
	while (len > 0) {
		int rc = dw_io_pread(p->iof[s], buf, len, off, DW_IO_LOW, DW__IO_CALLER);

		if (rc == DW_ESHED) {
			usleep(2000); /* the device is saturated: Low work waits its turn */
			continue;
		}
		if (rc < 0)
			return rc;
		if (rc == 0)
			return DW_ECORRUPT; /* short pack */
		buf += rc;
		len -= (size_t)rc;
		off += (uint64_t)rc;
	}
	return 0;
}

/* Fill the window with bytes [off, off + n) of slot s (inside the pack). */
static int pr_window_load(struct dw__preader *p, int s, uint64_t off, size_t n)
{
	int rc;

	if (!p->win) {
		p->win = dw_malloc(PR_WINDOW);
		if (!p->win)
			return -ENOMEM;
	}
	p->wlen = 0; /* invalid until the read succeeds */
	rc = pr_pread_direct(p, s, p->win, n, off);
	if (rc < 0)
		return rc;
	p->wci = p->slot[s].ci;
	p->wpack = p->slot[s].pack;
	p->woff = off;
	p->wlen = n;
	return 0;
}

void dw__pr_plan_reset(struct dw__preader *p)
{
	p->planned = true;
	p->nplan = 0;
}

void dw__pr_plan_add(struct dw__preader *p, const struct dw__bref *b)
{
	unsigned i;

	if (b->clen >= PR_WINDOW / 2)
		return; /* read on its own anyway */
	for (i = 0; i < p->nplan; i++)
		if (p->plan[i].ci == b->chain_idx && p->plan[i].pack == b->pack)
			break;
	if (i == p->nplan) {
		if (p->nplan == DW__PR_PLAN)
			return; /* unplanned: read on its own */
		p->plan[i].ci = b->chain_idx;
		p->plan[i].pack = b->pack;
		p->plan[i].lo = b->off;
		p->plan[i].hi = b->off + b->clen;
		p->plan[i].need = 0;
		p->nplan++;
	}
	if (b->off < p->plan[i].lo)
		p->plan[i].lo = b->off;
	if (b->off + b->clen > p->plan[i].hi)
		p->plan[i].hi = b->off + b->clen;
	p->plan[i].need += b->clen;
}

/*
 * Where the window should start and how long it should be to serve [off, off + len) of slot s;
 * false to read the bytes on their own.
 */
static bool pr_window_for(const struct dw__preader *p, int s, uint64_t off, size_t len,
			  uint64_t *woff, size_t *wlen)
{
	uint64_t n;

	if (!p->planned) { /* read ahead from here */
		n = p->slot[s].size - off;
		*woff = off;
		*wlen = (size_t)(n > PR_WINDOW ? PR_WINDOW : n);
		return true;
	}
	for (unsigned i = 0; i < p->nplan; i++) {
		const struct dw__pr_span *pl = &p->plan[i];

		if (pl->ci != p->slot[s].ci || pl->pack != p->slot[s].pack || off < pl->lo ||
		    off + len > pl->hi)
			continue;
		if (pl->hi - pl->lo > PR_WINDOW || pl->hi - pl->lo > 2 * pl->need ||
		    pl->hi > p->slot[s].size)
			return false;
		*woff = pl->lo;
		*wlen = (size_t)(pl->hi - pl->lo);
		return true;
	}
	return false;
}

/*
 * Read len bytes at off of slot s (the caller checked they lie inside the pack): a small read is
 * served from the window, which moves when it does not hold the bytes.
 */
static int pr_pread(struct dw__preader *p, int s, uint8_t *buf, size_t len, uint64_t off)
{
	uint64_t woff;
	size_t wlen;
	int rc;

	if (len >= PR_WINDOW / 2)
		return pr_pread_direct(p, s, buf, len, off);
	if (p->wlen > 0 && p->wci == p->slot[s].ci && p->wpack == p->slot[s].pack &&
	    off >= p->woff && off + len <= p->woff + p->wlen) {
		memcpy(buf, p->win + (off - p->woff), len);
		return 0;
	}
	if (!pr_window_for(p, s, off, len, &woff, &wlen))
		return pr_pread_direct(p, s, buf, len, off);
	rc = pr_window_load(p, s, woff, wlen);
	if (rc == -ENOMEM)
		return pr_pread_direct(p, s, buf, len, off);
	if (rc < 0)
		return rc;
	memcpy(buf, p->win + (off - woff), len);
	return 0;
}

int dw__pr_read(struct dw__preader *p, const struct dw__bref *b, uint8_t *out, bool verify)
{
	uint8_t sha[DW__SHA_LEN];
	int s, rc;

	rc = dw__pr_locate(p, b);
	if (rc < 0)
		return rc;
	pr_slot(p, b->chain_idx, b->pack, &s);
	if (p->crypt) {
		size_t n = b->clen >= DW__CRYPT_OVERHEAD ? b->clen - DW__CRYPT_OVERHEAD : 0;
		uint8_t *plain = out;

		if (b->clen < DW__CRYPT_OVERHEAD || (!(b->flags & DW__BREF_ZSTD) && n != b->ulen))
			return DW_ECORRUPT;
		if (p->ccap < b->clen || ((b->flags & DW__BREF_ZSTD) && p->dcap < n)) {
			uint8_t *nb = p->ccap < b->clen ? dw_realloc(p->cbuf, b->clen) : p->cbuf;

			if (!nb)
				return -ENOMEM;
			p->cbuf = nb;
			p->ccap = p->ccap < b->clen ? b->clen : p->ccap;
			if (p->dcap < n) {
				nb = dw_realloc(p->dbuf, n ? n : 1);
				if (!nb)
					return -ENOMEM;
				p->dbuf = nb;
				p->dcap = n;
			}
		}
		rc = pr_pread(p, s, p->cbuf, b->clen, b->off);
		if (rc < 0)
			return rc;
		if (b->flags & DW__BREF_ZSTD)
			plain = p->dbuf;
		rc = dw__blob_open(p->crypt, b->sha, b->ulen, b->flags, p->cbuf, b->clen, plain);
		if (rc < 0)
			return rc;
		if (b->flags & DW__BREF_ZSTD) {
			size_t u = ZSTD_decompressDCtx(p->dctx, out, b->ulen, p->dbuf, n);

			if (ZSTD_isError(u) || u != b->ulen)
				return DW_ECORRUPT;
		}
	} else if (b->flags & DW__BREF_ZSTD) {
		size_t n;

		if (p->ccap < b->clen) {
			uint8_t *nb = dw_realloc(p->cbuf, b->clen);

			if (!nb)
				return -ENOMEM;
			p->cbuf = nb;
			p->ccap = b->clen;
		}
		rc = pr_pread(p, s, p->cbuf, b->clen, b->off);
		if (rc < 0)
			return rc;
		n = ZSTD_decompressDCtx(p->dctx, out, b->ulen, p->cbuf, b->clen);
		if (ZSTD_isError(n) || n != b->ulen)
			return DW_ECORRUPT;
	} else {
		if (b->clen != b->ulen)
			return DW_ECORRUPT;
		rc = pr_pread(p, s, out, b->ulen, b->off);
		if (rc < 0)
			return rc;
	}
	if (verify) {
		rc = dw__sha256(out, b->ulen, sha);
		if (rc < 0)
			return rc;
		if (memcmp(sha, b->sha, DW__SHA_LEN) != 0)
			return DW_ECORRUPT;
	}
	return 0;
}

void dw__pr_close(struct dw__preader *p)
{
	for (int i = 0; i < DW__PR_SLOTS; i++) {
		dw_io_file_close(p->iof[i]);
		p->iof[i] = NULL;
		if (p->slot[i].fd >= 0)
			close(p->slot[i].fd);
		p->slot[i].fd = -1;
	}
	if (p->dctx)
		ZSTD_freeDCtx(p->dctx);
	p->dctx = NULL;
	dw_free(p->cbuf);
	p->cbuf = NULL;
	dw_free(p->dbuf);
	p->dbuf = NULL;
	dw_free(p->win);
	p->win = NULL;
	p->wlen = 0;
}
