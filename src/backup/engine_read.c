// SPDX-License-Identifier: MIT
/*
 * Backup creation, the reader thread: walks the source tree in manifest order, merges it with
 * the parent manifest (change detection), reads changed files into slot buffers and publishes
 * slots in order. Threads and locking: see engine.c; this file runs on the reader thread and
 * touches the job under job.mu as described there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "backup/engine_int.h"

/* ---- reader: slots -------------------------------------------------------------------------- */

/*
 * Wake the committer only when it can commit a batch, or when nothing more is coming soon (the
 * reader is done or waits itself): waking it for every item costs a context switch per file.
 * Every change that can make this true calls it, with mu held.
 */
void dw__wake_committer(struct job *j)
{
	if (j->committer_waits && j->tail < j->head &&
	    j->slots[j->tail % j->nslots].state == S_DONE &&
	    (j->head - j->tail >= WAKE_BATCH || j->reader_done || j->reader_waits))
		pthread_cond_signal(&j->cv_done);
}

static void bset_lend(struct job *j, struct slot *s, int i)
{
	s->bset = i;
	s->buf = i < 0 ? NULL : j->bsets[i].buf;
	s->cbuf = i < 0 ? NULL : j->bsets[i].cbuf;
	s->ebuf = i < 0 ? NULL : j->bsets[i].ebuf;
}

/* A slot gives back its buffer set (mu held); the reader waiting for one is woken. */
void dw__bset_return(struct job *j, struct slot *s)
{
	if (s->bset < 0)
		return;
	j->bfree[j->nbfree++] = (unsigned)s->bset;
	bset_lend(j, s, -1);
	if (j->reader_waits)
		pthread_cond_signal(&j->cv_free);
}

/*
 * Wait for the next free slot, with a buffer set for a block when block is set; NULL when the
 * job stopped. Slots are many and light; buffer sets are few (they bound memory).
 */
static struct slot *slot_get(struct job *j, bool block)
{
	struct slot *s = NULL;

	pthread_mutex_lock(&j->mu);
	for (;;) {
		if (j->stop)
			break;
		if (j->head - j->tail < j->nslots) {
			s = &j->slots[j->head % j->nslots];
			if (!block && s->bset >= 0) /* a block slot left unused: not a block now */
				dw__bset_return(j, s);
			if (!block || s->bset >= 0)
				break;
			if (j->nbfree > 0) {
				bset_lend(j, s, (int)j->bfree[--j->nbfree]);
				break;
			}
			s = NULL;
		}
		j->reader_waits = true;
		dw__wake_committer(j);
		pthread_cond_wait(&j->cv_free, &j->mu);
		j->reader_waits = false;
	}
	pthread_mutex_unlock(&j->mu);
	if (s) {
		s->has_parent = s->reuse = s->fe_copy = s->fe_commit = false;
		s->len = 0;
		s->rerr = 0;
	}
	return s;
}

static int slot_publish(struct job *j, struct slot *s, int kind)
{
	int rc = 0;

	s->kind = kind;
	pthread_mutex_lock(&j->mu);
	if (j->stop) {
		rc = j->err ? j->err : DW_ECANCELED;
	} else {
		s->state = kind == IT_BLOCK ? S_FILLED : S_DONE;
		s->rs = j->rs;
		j->head++;
		j->rstats = j->rs;
		if (kind == IT_BLOCK)
			pthread_cond_signal(&j->cv_work);
		else
			dw__wake_committer(j);
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

static int stopped(struct job *j)
{
	int rc = 0;

	if (j->o->cancel && atomic_load_explicit(j->o->cancel, memory_order_acquire))
		return DW_ECANCELED;
	pthread_mutex_lock(&j->mu);
	if (j->stop)
		rc = j->err ? j->err : DW_ECANCELED;
	pthread_mutex_unlock(&j->mu);
	return rc;
}

/* ---- reader: parent manifest cursor ---------------------------------------------------------- */

int dw__pc_next(struct pcur *pc)
{
	int t = dw__mr_next(&pc->mr, &pc->e, &pc->b, &pc->fe);

	if (t < 0)
		return t;
	pc->type = t;
	return 0;
}

static bool is_entry(int t)
{
	return t == DW__REC_DIR || t == DW__REC_FILE || t == DW__REC_SYMLINK ||
	       t == DW__REC_HARDLINK || t == DW__REC_SPECIAL;
}

/* Advance to the first entry at or after path; true (in *match) if it is path itself. */
static int pc_seek(struct pcur *pc, const char *path, bool *match)
{
	int rc;

	*match = false;
	if (!pc->open)
		return 0;
	while (pc->type != 0) {
		if (is_entry(pc->type)) {
			int c = dw__path_cmp(pc->e.path, path);

			if (c == 0)
				*match = true;
			if (c >= 0)
				return 0;
		}
		rc = dw__pc_next(pc);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- reader: hard links ------------------------------------------------------------------------
 */

static uint64_t hl_hash(uint64_t dev, uint64_t ino)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull ^ dev * 0xc2b2ae3d27d4eb4full;

	return h ^ (h >> 29);
}

/* Existing first name of (dev, ino), or NULL after remembering path as its first name. */
const char *dw__hl_lookup_or_add(struct job *j, uint64_t dev, uint64_t ino, const char *path)
{
	size_t i;

	if (j->hl_n * 2 >= j->hl_cap) {
		size_t nc = j->hl_cap ? j->hl_cap * 2 : 1024;
		struct hl_ent *nt;

		if (j->hl_n >= DW_BACKUP_HARDLINK_MAX)
			goto probe_only;
		nt = dw_calloc(nc, sizeof(*nt));
		if (!nt)
			goto probe_only;
		for (size_t k = 0; k < j->hl_cap; k++) {
			if (!j->hl[k].path)
				continue;
			i = hl_hash(j->hl[k].dev, j->hl[k].ino) & (nc - 1);
			while (nt[i].path)
				i = (i + 1) & (nc - 1);
			nt[i] = j->hl[k];
		}
		dw_free(j->hl);
		j->hl = nt;
		j->hl_cap = nc;
	}
probe_only:
	if (!j->hl_cap)
		return NULL;
	i = hl_hash(dev, ino) & (j->hl_cap - 1);
	while (j->hl[i].path) {
		if (j->hl[i].dev == dev && j->hl[i].ino == ino)
			return j->hl[i].path;
		i = (i + 1) & (j->hl_cap - 1);
	}
	/* over the cap (or out of memory): later names are stored as separate files */
	if (j->hl_n * 2 < j->hl_cap && j->hl_n < DW_BACKUP_HARDLINK_MAX) {
		char *p = dw_strdup(path);

		if (p) {
			j->hl[i] = (struct hl_ent){ .dev = dev, .ino = ino, .path = p };
			j->hl_n++;
		}
	}
	return NULL;
}

void dw__hl_free(struct job *j)
{
	for (size_t k = 0; k < j->hl_cap; k++)
		dw_free(j->hl[k].path);
	dw_free(j->hl);
	j->hl = NULL;
	j->hl_cap = j->hl_n = 0;
}

/* ---- reader: walk ------------------------------------------------------------------------------
 */

static void fill_entry(struct dw__entry *e, char kind, const char *path, const struct stat *st)
{
	e->kind = kind;
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->target[0] = '\0';
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
	e->mtime_sec = st->st_mtim.tv_sec;
	e->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	e->ctime_sec = st->st_ctim.tv_sec;
	e->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
	e->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
	e->ino = st->st_ino;
	e->rdev = st->st_rdev;
}

static void warn(struct job *j, const char *path, int err)
{
	char q[512];

	j->rs.unreadable++;
	dw_log(DW_LOG_WARN, "backup", "unreadable", "path=%s err=%s",
	       dw_log_quote(path, q, sizeof(q)), dw_err_name(err));
	if (j->o->warn)
		j->o->warn(j->o->arg, path, err);
}

static int emit_entry(struct job *j, const struct dw__entry *e)
{
	struct slot *s = slot_get(j, false);

	if (!s)
		return stopped(j);
	memcpy(s->ent, e, sizeof(*e));
	return slot_publish(j, s, IT_ENTRY);
}

static bool unchanged(const struct job *j, const struct dw__entry *p, const struct stat *st)
{
	if (p->kind != DW__REC_FILE || p->size != (uint64_t)st->st_size ||
	    p->mtime_sec != st->st_mtim.tv_sec || p->mtime_nsec != (uint32_t)st->st_mtim.tv_nsec ||
	    p->mode != st->st_mode)
		return false;
	if (j->o->ignore_inode_ctime)
		return true;
	return p->ino == st->st_ino && p->ctime_sec == st->st_ctim.tv_sec &&
	       p->ctime_nsec == (uint32_t)st->st_ctim.tv_nsec;
}

/* Copy the parent's block references and file end (the cursor is on the parent's F record). */
static int copy_file(struct job *j)
{
	struct pcur *pc = &j->pc;
	int rc;

	for (;;) {
		struct slot *s;

		rc = dw__pc_next(pc);
		if (rc < 0)
			return rc;
		if (pc->type != DW__REC_BLOCK && pc->type != DW__REC_FILE_END)
			return DW_ECORRUPT;
		s = slot_get(j, false);
		if (!s)
			return stopped(j);
		if (pc->type == DW__REC_BLOCK) {
			s->pref = pc->b;
			rc = slot_publish(j, s, IT_COPY);
		} else {
			s->fe = pc->fe;
			s->fe_copy = true;
			rc = slot_publish(j, s, IT_END);
			return rc < 0 ? rc : dw__pc_next(pc);
		}
		if (rc < 0)
			return rc;
	}
}

/* Read a changed file block by block. The file's F entry was emitted. */
static int read_file(struct job *j, int fd, bool pmatch, const char *path)
{
	struct pcur *pc = &j->pc;
	bool pblocks = pmatch && pc->type == DW__REC_FILE; /* parent B records follow */
	uint64_t total = 0;
	uint32_t flags = 0;
	struct slot *s;
	int rc;

	if (pblocks) {
		rc = dw__pc_next(pc);
		if (rc < 0)
			return rc;
	}
	for (;;) {
		uint32_t got = 0;

		rc = stopped(j);
		if (rc < 0)
			return rc;
		s = slot_get(j, true);
		if (!s)
			return stopped(j);
		while (got < j->block_size) {
			ssize_t n = read(fd, s->buf + got, j->block_size - got);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				warn(j, path, -errno);
				flags |= DW__FILE_PARTIAL;
				break;
			}
			if (n == 0)
				break;
			got += (uint32_t)n;
		}
		if (got == 0)
			break; /* the slot stays free for the next item */
		s->len = got;
		if (pblocks && pc->type == DW__REC_BLOCK) {
			s->has_parent = true;
			s->pref = pc->b;
			rc = dw__pc_next(pc);
			if (rc < 0)
				return rc;
		}
		total += got;
		j->rs.bytes_read += got;
		rc = slot_publish(j, s, IT_BLOCK);
		if (rc < 0)
			return rc;
		if (got < j->block_size || (flags & DW__FILE_PARTIAL))
			break;
	}
	/* s is the free slot at head (or a fresh one) */
	if (pblocks) {
		while (pc->type == DW__REC_BLOCK) {
			rc = dw__pc_next(pc);
			if (rc < 0)
				return rc;
		}
	}
	s = slot_get(j, false);
	if (!s)
		return stopped(j);
	s->fe.size = total;
	s->fe.flags = flags;
	j->rs.bytes_total += total;
	return slot_publish(j, s, IT_END);
}

void dw__rfile_put(struct rfile *rf)
{
	if (atomic_fetch_sub_explicit(&rf->refs, 1, memory_order_acq_rel) == 1) {
		dw_io_file_close(rf->f);
		close(rf->fd);
		dw_free(rf);
	}
}

/* Completion of a read through the I/O manager (on its thread): the slot goes to the workers. */
static void read_done(void *arg, int res)
{
	struct slot *s = arg;
	struct job *j = s->j;
	struct rfile *rf = s->rf_read;

	pthread_mutex_lock(&j->mu);
	s->rerr = res < 0 ? res : 0;
	s->len = res > 0 ? (uint32_t)res : 0;
	s->state = S_FILLED;
	j->inflight--;
	pthread_cond_broadcast(&j->cv_work);
	pthread_cond_broadcast(&j->cv_done);
	pthread_mutex_unlock(&j->mu);
	dw__rfile_put(rf);
}

/* Publish a block slot whose read is about to be queued. */
static int slot_publish_reading(struct job *j, struct slot *s)
{
	int rc = 0;

	s->kind = IT_BLOCK;
	pthread_mutex_lock(&j->mu);
	if (j->stop) {
		rc = j->err ? j->err : DW_ECANCELED;
	} else {
		s->state = S_READING;
		s->rs = j->rs;
		j->head++;
		j->inflight++;
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

/*
 * Read a changed file through the I/O manager at DW_IO_LOW: one read per block, queued without
 * waiting, so that the reads of several blocks and files are in flight at once and the
 * scheduler's latency is not paid file after file. Owns fd. The file's E slot gets the size
 * and flags from the committer, which sees the results in order.
 */
static int read_file_io(struct job *j, int fd, uint64_t size, bool pmatch)
{
	struct pcur *pc = &j->pc;
	bool pblocks = pmatch && pc->type == DW__REC_FILE;
	struct rfile *rf = dw_malloc(sizeof(*rf));
	uint64_t off = 0;
	struct slot *s;
	int rc;

	if (!rf) {
		close(fd);
		return -ENOMEM;
	}
	rf->fd = fd;
	rf->f = NULL;
	atomic_init(&rf->refs, 1);
	rc = dw_io_file_attach(j->o->io, fd, &rf->f);
	if (rc < 0)
		goto out;
	if (pblocks) {
		rc = dw__pc_next(pc);
		if (rc < 0)
			goto out;
	}
	while (off < size) {
		uint32_t want = size - off < j->block_size ? (uint32_t)(size - off) : j->block_size;
		dw_io_req req = { .file = rf->f,
				  .op = DW_IO_OP_READ,
				  .tier = DW_IO_LOW,
				  .len = want,
				  .off = off,
				  .caller = DW__IO_CALLER };

		rc = stopped(j);
		if (rc < 0)
			goto out;
		s = slot_get(j, true);
		if (!s) {
			rc = stopped(j);
			goto out;
		}
		if (pblocks && pc->type == DW__REC_BLOCK) {
			s->has_parent = true;
			s->pref = pc->b;
			rc = dw__pc_next(pc);
			if (rc < 0)
				goto out;
		}
		j->rs.bytes_read += want;
		atomic_fetch_add_explicit(&rf->refs, 1, memory_order_relaxed);
		s->rf_read = rf;
		rc = slot_publish_reading(j, s);
		if (rc < 0) {
			dw__rfile_put(rf);
			goto out;
		}
		req.buf = s->buf;
		while ((rc = dw_io_submit(&req, read_done, s)) == DW_ESHED && stopped(j) == 0)
			usleep(2000); /* the device is saturated: Low work waits its turn */
		if (rc < 0) {
			read_done(s, rc); /* completes the slot; the job stops with rc */
			goto out;
		}
		off += want;
	}
	if (pblocks) {
		while (pc->type == DW__REC_BLOCK) {
			rc = dw__pc_next(pc);
			if (rc < 0)
				goto out;
		}
	}
	s = slot_get(j, false);
	if (!s) {
		rc = stopped(j);
		goto out;
	}
	s->fe_commit = true;
	j->rs.bytes_total += size;
	s->rf = rf;
	rc = slot_publish(j, s, IT_END);
	if (rc < 0)
		s->rf = NULL; /* not published: still ours */
	else
		rf = NULL; /* the E slot holds it now */
out:
	if (rf)
		dw__rfile_put(rf);
	return rc;
}

static int walk_dir(struct job *j, int dfd, size_t plen, int depth);

/*
 * One directory entry: dfd/name, whose manifest path is j->pathbuf (plen bytes). recorded: a
 * resumed create recorded it before its checkpoint, so a directory is only walked for the
 * entries after the checkpoint and anything else is left alone. Counters go up before the
 * entry is published, so the snapshot in its slot covers it (see ckpt.c).
 */
static int visit(struct job *j, int dfd, const char *name, size_t plen, int depth, bool recorded)
{
	const char *path = j->pathbuf;
	struct dw__entry *e = NULL;
	struct stat st;
	bool pmatch = false;
	int rc = 0, fd = -1;

	rc = stopped(j);
	if (rc < 0)
		return rc;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0; /* vanished during the walk */
		warn(j, path, -errno);
		return 0;
	}
	rc = pc_seek(&j->pc, path, &pmatch);
	if (rc < 0)
		return rc;
	if (recorded && !S_ISDIR(st.st_mode))
		return 0;
	e = dw_malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (S_ISDIR(st.st_mode)) {
		if (!recorded) {
			fill_entry(e, DW__REC_DIR, path, &st);
			j->rs.dirs++;
			rc = emit_entry(j, e);
			if (rc < 0)
				goto out;
		}
		if (depth >= WALK_DEPTH_MAX) {
			warn(j, path, -ELOOP);
			goto out;
		}
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			warn(j, path, -errno);
			goto out;
		}
		dw_free(e);
		e = NULL;
		rc = walk_dir(j, fd, plen, depth + 1);
		fd = -1; /* walk_dir closed it: closing it again here could close a descriptor
			  * another job's thread has just been given the same number */
	} else if (S_ISLNK(st.st_mode)) {
		ssize_t n;

		fill_entry(e, DW__REC_SYMLINK, path, &st);
		n = readlinkat(dfd, name, e->target, sizeof(e->target) - 1);
		if (n < 0) {
			warn(j, path, -errno);
			goto out;
		}
		e->target[n] = '\0';
		j->rs.symlinks++;
		rc = emit_entry(j, e);
	} else if (S_ISREG(st.st_mode)) {
		const char *first = NULL;

		if (st.st_nlink > 1) {
			pthread_mutex_lock(&j->hl_mu);
			first = dw__hl_lookup_or_add(j, st.st_dev, st.st_ino, path);
			if (first) {
				fill_entry(e, DW__REC_HARDLINK, path, &st);
				snprintf(e->target, sizeof(e->target), "%s", first);
			}
			pthread_mutex_unlock(&j->hl_mu);
			if (first) {
				j->rs.hardlinks++;
				rc = emit_entry(j, e);
				goto out;
			}
		}
		fill_entry(e, DW__REC_FILE, path, &st);
		if (!j->full && pmatch && unchanged(j, &j->pc.e, &st)) {
			rc = emit_entry(j, e);
			if (rc < 0)
				goto out;
			j->rs.files++;
			j->rs.files_unchanged++;
			j->rs.bytes_total += (uint64_t)st.st_size;
			rc = copy_file(j);
			goto out;
		}
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
		if (fd < 0 && errno == EPERM)
			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			warn(j, path, -errno);
			goto out;
		}
		j->rs.files++;
		j->rs.files_changed++;
		rc = emit_entry(j, e);
		if (rc < 0)
			goto out;
		if (j->o->io) {
			rc = read_file_io(j, fd, (uint64_t)st.st_size, pmatch);
			fd = -1; /* read_file_io owns it */
		} else {
			rc = read_file(j, fd, pmatch, path);
		}
	} else {
		fill_entry(e, DW__REC_SPECIAL, path, &st);
		j->rs.specials++;
		rc = emit_entry(j, e);
	}
out:
	if (fd >= 0)
		close(fd);
	dw_free(e);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Visit the entries of the directory dfd (whose path is pathbuf[0..plen)) in byte order. Owns and
 * closes dfd. Names are gathered in one buffer per directory, so memory follows the largest
 * directory on the current path, not the tree.
 */
static int walk_dir(struct job *j, int dfd, size_t plen, int depth)
{
	char *names = NULL, **idx = NULL;
	size_t nlen = 0, ncap = 0, n = 0, icap = 0;
	DIR *d = NULL;
	struct dirent *de;
	int fd2, rc = 0;

	fd2 = dup(dfd);
	if (fd2 < 0) {
		rc = -errno;
		goto out;
	}
	d = fdopendir(fd2);
	if (!d) {
		close(fd2);
		warn(j, j->pathbuf, -errno);
		goto out;
	}
	errno = 0;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name) + 1;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (nlen + l > ncap) {
			size_t nc = ncap ? ncap * 2 : 4096;
			char *nn;

			while (nc < nlen + l)
				nc *= 2;
			if (nc > DIR_NAMES_MAX) {
				rc = DW_ETOOBIG;
				goto out;
			}
			nn = dw_realloc(names, nc);
			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
			ncap = nc;
		}
		memcpy(names + nlen, de->d_name, l);
		nlen += l;
		n++;
	}
	if (n == 0)
		goto out;
	icap = n;
	idx = dw_malloc(icap * sizeof(*idx));
	if (!idx) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0, off = 0; i < n; i++) {
		idx[i] = names + off;
		off += strlen(names + off) + 1;
	}
	qsort(idx, n, sizeof(*idx), name_cmp);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(idx[i]), np;

		np = plen == 0 ? l : plen + 1 + l;
		if (np >= DW__PATH_MAX) {
			warn(j, idx[i], -ENAMETOOLONG);
			continue;
		}
		if (plen == 0) {
			memcpy(j->pathbuf, idx[i], l + 1);
		} else {
			j->pathbuf[plen] = '/';
			memcpy(j->pathbuf + plen + 1, idx[i], l + 1);
		}
		if (j->resume_last) {
			int c = dw__path_cmp(j->pathbuf, j->resume_last);

			if (c > 0) {
				j->resume_last = NULL; /* past the checkpoint: the rest is new */
			} else if (c < 0 && !(strncmp(j->resume_last, j->pathbuf, np) == 0 &&
					      j->resume_last[np] == '/')) {
				j->pathbuf[plen] = '\0';
				continue; /* recorded with everything below it */
			}
		}
		rc = visit(j, dfd, idx[i], np, depth, j->resume_last != NULL);
		j->pathbuf[plen] = '\0';
		if (rc < 0)
			goto out;
	}
out:
	if (d)
		closedir(d);
	dw_free(idx);
	dw_free(names);
	close(dfd);
	return rc;
}

void *dw__reader_main(void *arg)
{
	struct job *j = arg;
	struct dw__entry *e = dw_malloc(sizeof(*e));
	struct stat st;
	bool pmatch;
	int rc, fd;

	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	if (fstat(j->srcfd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	j->pathbuf[0] = '\0';
	rc = pc_seek(&j->pc, ".", &pmatch);
	if (rc < 0)
		goto out;
	if (!j->resume_last) {
		fill_entry(e, DW__REC_DIR, ".", &st);
		j->rs.dirs++;
		rc = emit_entry(j, e);
		if (rc < 0)
			goto out;
	} else if (strcmp(j->resume_last, ".") == 0) {
		j->resume_last = NULL; /* only the root was recorded */
	}
	fd = dup(j->srcfd);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = walk_dir(j, fd, 0, 0);
out:
	dw_free(e);
	if (rc < 0) {
		dw__job_fail(j, rc);
	} else {
		pthread_mutex_lock(&j->mu);
		j->reader_done = true;
		j->rstats = j->rs;
		pthread_cond_broadcast(&j->cv_done);
		pthread_cond_broadcast(&j->cv_work);
		pthread_mutex_unlock(&j->mu);
	}
	return NULL;
}
