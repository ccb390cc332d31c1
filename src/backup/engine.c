// SPDX-License-Identifier: MIT
/*
 * Backup creation: walk a source tree and write one backup (packs + manifest).
 *
 * Threads and locking
 * -------------------
 * One create runs three kinds of thread over a ring of slots (struct job, guarded by job.mu):
 *
 *   reader (1 thread)     walks the tree in manifest order, merges it with a sequential read of
 *                         the parent manifest (change detection), reads changed files into slot
 *                         buffers one fixed-size block at a time, and publishes slots in order;
 *   workers (N threads)   SHA-256 each block, and zstd-compress it unless its hash equals the
 *                         parent block at the same index (then the block is reused);
 *   committer (caller)    takes slots strictly in order, appends new blocks to the pack, and
 *                         writes the manifest records.
 *
 *   slot state:  FREE --reader fills--> FILLED --worker--> DONE --committer--> FREE
 *                (entries and copied references skip straight to DONE)
 *
 * head, work and tail (protected by mu) are the next slot to fill, to hash and to commit;
 * tail <= work <= head <= tail + nslots. A slot's contents belong to exactly one thread at a
 * time, as its state says, so they are touched without the lock. Slots are light (an entry and
 * a reference); the block buffers are a separate pool of 3 x workers + 2 sets lent to IT_BLOCK
 * slots and given back at commit, so memory is bounded by that pool whatever the tree holds;
 * the only per-file memory is the sorted name list of each directory on the current path and
 * the table of inodes with several links (capped by DW_BACKUP_HARDLINK_MAX).
 *
 * An unchanged small file is three items (entry, reference, end) and costs microseconds, so a
 * thread is not woken per item: the committer when WAKE_BATCH items are ready to commit (or the
 * reader is done or waiting), the reader when WAKE_BATCH slots are free (or a buffer set is).
 * Without this, a no-change incremental of 100k small files spent most of its time switching
 * between the reader and the committer.
 *
 * Visibility: the manifest is written to tmp/<id>.manifest and renamed into backups/ only after
 * the packs, the manifest and their directories are fsynced. A crash before the rename leaves
 * only tmp/<id>.* and packs/<id>/, which dw_backup_recover() (or the next create) removes: the
 * job file tmp/<id>.job stays flock()ed by the creating process for the whole run.
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

void dw_backup_create_opts_default(dw_backup_create_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->type = DW_BACKUP_AUTO;
	o->zstd_level = DW_BACKUP_ZSTD_DEFAULT;
	o->fsync = true;
	o->progress_ms = 500;
	o->checkpoint_bytes = 64u << 20;
	o->checkpoint_ms = 5000;
}

void dw__job_fail(struct job *j, int err)
{
	pthread_mutex_lock(&j->mu);
	if (!j->err)
		j->err = err;
	j->stop = true;
	pthread_cond_broadcast(&j->cv_free);
	pthread_cond_broadcast(&j->cv_work);
	pthread_cond_broadcast(&j->cv_done);
	pthread_mutex_unlock(&j->mu);
}

/* ---- workers ------------------------------------------------------------------------------------
 */

static void *worker_main(void *arg)
{
	struct job *j = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();

	if (!cctx) {
		dw__job_fail(j, -ENOMEM);
		return NULL;
	}
	pthread_mutex_lock(&j->mu);
	for (;;) {
		struct slot *s;
		int rc;

		while (!j->stop &&
		       (j->work == j->head ? !j->reader_done
					   : j->slots[j->work % j->nslots].state == S_READING))
			pthread_cond_wait(&j->cv_work, &j->mu);
		if (j->stop || (j->work == j->head && j->reader_done))
			break;
		s = &j->slots[j->work % j->nslots];
		j->work++;
		if (s->state != S_FILLED)
			continue;
		s->state = S_WORKING;
		pthread_mutex_unlock(&j->mu);

		rc = s->len ? dw__sha256(s->buf, s->len, s->sha) : 0;
		if (s->len == 0) {
			s->reuse = false; /* a failed or empty read: the committer skips it */
		} else if (rc == 0 && s->has_parent && s->pref.ulen == s->len &&
			   memcmp(s->pref.sha, s->sha, DW__SHA_LEN) == 0) {
			s->reuse = true;
		} else if (rc == 0) {
			size_t c =
				ZSTD_compressCCtx(cctx, s->cbuf, s->ccap, s->buf, s->len, j->level);

			s->reuse = false;
			if (!ZSTD_isError(c) && c < s->len) {
				s->zstd = true;
				s->clen = (uint32_t)c;
			} else {
				s->zstd = false;
				s->clen = s->len;
			}
			if (j->r->crypt) /* sealed here, on the workers, not on the committer */
				rc = dw__blob_seal(j->r->crypt, s->sha, s->len,
						   s->zstd ? DW__BREF_ZSTD : 0,
						   s->zstd ? s->cbuf : s->buf, s->clen, s->ebuf);
		}
		pthread_mutex_lock(&j->mu);
		if (rc < 0) {
			pthread_mutex_unlock(&j->mu);
			dw__job_fail(j, rc);
			pthread_mutex_lock(&j->mu);
			break;
		}
		s->state = S_DONE;
		dw__wake_committer(j);
	}
	pthread_mutex_unlock(&j->mu);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

/* ---- committer ----------------------------------------------------------------------------------
 */

static int commit_slot(struct job *j, struct slot *s)
{
	struct dw__bref b;
	int rc;

	switch (s->kind) {
	case IT_ENTRY:
		if (s->ent->kind == DW__REC_FILE &&
		    EVP_DigestInit_ex(j->fsha, EVP_sha256(), NULL) != 1)
			return DW_EBACKEND;
		j->file_bytes = 0;
		j->file_err = false;
		return dw__mw_entry(&j->mw, s->ent);
	case IT_COPY:
		j->cs.blocks_reused++;
		return dw__mw_block(&j->mw, &s->pref);
	case IT_BLOCK:
		if (s->rerr < 0 && !j->file_err) {
			char q[512];

			/* a read through the I/O manager failed: reported like read_file does */
			j->cs.unreadable++;
			dw_log(DW_LOG_WARN, "backup", "unreadable", "path=%s err=%s",
			       dw_log_quote(j->cur_path, q, sizeof(q)), dw_err_name(s->rerr));
			if (j->o->warn)
				j->o->warn(j->o->arg, j->cur_path, s->rerr);
		}
		if (s->rerr < 0 || j->file_err) {
			j->file_err = true; /* the file ends at its last good block */
			return 0;
		}
		if (s->len == 0)
			return 0; /* past the end of a file that shrank */
		j->file_bytes += s->len;
		if (s->reuse) {
			b = s->pref;
			j->cs.blocks_reused++;
		} else {
			memset(&b, 0, sizeof(b));
			b.chain_idx = j->self_idx;
			b.flags = s->zstd ? DW__BREF_ZSTD : 0;
			b.clen = s->clen + (j->r->crypt ? DW__CRYPT_OVERHEAD : 0);
			b.ulen = s->len;
			memcpy(b.sha, s->sha, DW__SHA_LEN);
			rc = dw__pw_append(&j->pw,
					   j->r->crypt ? s->ebuf : (s->zstd ? s->cbuf : s->buf),
					   b.clen, &b.pack, &b.off);
			if (rc < 0)
				return rc;
			j->cs.blocks_new++;
		}
		if (EVP_DigestUpdate(j->fsha, b.sha, DW__SHA_LEN) != 1)
			return DW_EBACKEND;
		return dw__mw_block(&j->mw, &b);
	case IT_END:
		if (s->rf) {
			dw__rfile_put(s->rf); /* every read of it is committed */
			s->rf = NULL;
		}
		if (s->fe_commit) {
			s->fe.size = j->file_bytes;
			s->fe.flags = j->file_err ? DW__FILE_PARTIAL : 0;
		}
		if (!s->fe_copy) {
			unsigned int n = 0;

			if (EVP_DigestFinal_ex(j->fsha, s->fe.sha, &n) != 1)
				return DW_EBACKEND;
		}
		return dw__mw_file_end(&j->mw, &s->fe);
	default:
		return DW_ECORRUPT;
	}
}

static void merged_stats(struct job *j, const dw_backup_stats *r, dw_backup_stats *out)
{
	*out = *r;
	out->unreadable += j->cs.unreadable;
	out->blocks_new = j->cs.blocks_new;
	out->blocks_reused = j->cs.blocks_reused;
	out->bytes_stored = j->pw.bytes + j->mw.written;
}

/* Is a checkpoint due after this entry? */
static bool ck_due(struct job *j, const dw_backup_stats *rs, uint64_t now)
{
	const dw_backup_create_opts *o = j->o;

	if (!j->ck_dirty)
		return false;
	if (o->checkpoint_bytes && rs->bytes_read - j->ck_bytes >= o->checkpoint_bytes)
		return true;
	return o->checkpoint_ms && now - j->ck_ns >= (uint64_t)o->checkpoint_ms * DW_NS_PER_MS;
}

/*
 * Make everything committed so far durable and record it in tmp/<id>.ckpt (see ckpt.c for the
 * invariants). Runs on the committer, between two entries; rs is the reader's snapshot taken
 * when it published the last one.
 */
static int checkpoint(struct job *j, const dw_backup_stats *rs, uint64_t now)
{
	struct dw__ckpt ck;
	dw_backup_stats st;
	int rc;

	memset(&ck, 0, sizeof(ck));
	snprintf(ck.id, sizeof(ck.id), "%s", j->id);
	snprintf(ck.source, sizeof(ck.source), "%s", j->source);
	snprintf(ck.parent, sizeof(ck.parent), "%s", j->parent);
	ck.type = j->full ? DW_BACKUP_FULL : DW_BACKUP_INCREMENTAL;
	rc = dw__mw_sync(&j->mw, &ck.mlen, ck.msha);
	if (rc == 0)
		rc = dw__pw_sync(&j->pw);
	if (rc < 0)
		return rc;
	if (j->o->fsync && fsync(j->mw.fd) < 0)
		return -errno;
	ck.pack_no = j->pw.pack_no;
	ck.pack_off = j->pw.off;
	ck.pack_bytes = j->pw.bytes;
	ck.pack_open = j->pw.fd >= 0;
	snprintf(ck.last, sizeof(ck.last), "%s", j->cur_path);
	ck.rs = *rs;
	ck.rs.unreadable += j->cs.unreadable; /* read errors the committer saw */
	ck.blocks_new = j->cs.blocks_new;
	ck.blocks_reused = j->cs.blocks_reused;

	/* first names of linked inodes recorded up to last (the reader may be further on) */
	pthread_mutex_lock(&j->hl_mu);
	if (j->hl_n) {
		ck.hl = dw_calloc(j->hl_n, sizeof(*ck.hl));
		for (size_t k = 0; ck.hl && k < j->hl_cap; k++) {
			if (j->hl[k].path && dw__path_cmp(j->hl[k].path, ck.last) <= 0)
				ck.hl[ck.nhl++] = (struct dw__ckpt_hl){ .dev = j->hl[k].dev,
									.ino = j->hl[k].ino,
									.path = j->hl[k].path };
		}
	}
	pthread_mutex_unlock(&j->hl_mu);
	if (j->hl_n && !ck.hl)
		return -ENOMEM;
	/* the paths belong to the table, which lives until the create ends */
	rc = dw__ckpt_write(j->r, &ck, j->o->fsync);
	dw_free(ck.hl);
	if (rc < 0)
		return rc;
	j->ck_bytes = rs->bytes_read;
	j->ck_ns = now;
	j->ck_dirty = false;
	if (j->o->checkpoint) {
		merged_stats(j, rs, &st);
		j->o->checkpoint(j->o->arg, j->id, &st);
	}
	return 0;
}

static int committer_run(struct job *j)
{
	uint64_t last_ns = dw_clock_now(j->o->clock);
	uint64_t every = (uint64_t)j->o->progress_ms * DW_NS_PER_MS;
	int rc = 0;

	for (;;) {
		struct slot *s;
		dw_backup_stats rs;

		pthread_mutex_lock(&j->mu);
		while (!j->stop &&
		       !(j->tail < j->head && j->slots[j->tail % j->nslots].state == S_DONE) &&
		       !(j->reader_done && j->tail == j->head)) {
			j->committer_waits = true;
			pthread_cond_wait(&j->cv_done, &j->mu);
			j->committer_waits = false;
		}
		if (j->stop) {
			rc = j->err ? j->err : DW_ECANCELED;
			pthread_mutex_unlock(&j->mu);
			return rc;
		}
		if (j->reader_done && j->tail == j->head) {
			pthread_mutex_unlock(&j->mu);
			return 0;
		}
		s = &j->slots[j->tail % j->nslots];
		rs = j->rstats;
		pthread_mutex_unlock(&j->mu);

		rc = commit_slot(j, s);
		if (rc == 0 && s->kind == IT_ENTRY)
			memcpy(j->cur_path, s->ent->path, strlen(s->ent->path) + 1);
		if (rc == 0 &&
		    (s->kind == IT_END || (s->kind == IT_ENTRY && s->ent->kind != DW__REC_FILE))) {
			uint64_t now = dw_clock_now(j->o->clock);

			j->ck_dirty = true;
			if (ck_due(j, &s->rs, now))
				rc = checkpoint(j, &s->rs, now);
		}
		if (rc < 0) {
			dw__job_fail(j, rc);
			return rc;
		}
		pthread_mutex_lock(&j->mu);
		s->state = S_FREE;
		j->tail++;
		dw__bset_return(j, s);
		if (j->reader_waits && j->nslots - (j->head - j->tail) >= WAKE_BATCH)
			pthread_cond_signal(&j->cv_free);
		pthread_mutex_unlock(&j->mu);

		if (j->o->progress) {
			uint64_t now = dw_clock_now(j->o->clock);

			if (now - last_ns >= every) {
				dw_backup_stats st;

				merged_stats(j, &rs, &st);
				j->o->progress(j->o->arg, &st);
				last_ns = now;
			}
		}
	}
}

/* ---- create -------------------------------------------------------------------------------------
 */

static void slots_free(struct job *j)
{
	if (!j->slots)
		return;
	for (unsigned i = 0; i < j->nslots; i++) {
		if (j->slots[i].rf)
			dw__rfile_put(j->slots[i].rf); /* an E slot never committed */
		dw_free(j->slots[i].ent);
	}
	dw_free(j->slots);
	j->slots = NULL;
	for (unsigned i = 0; j->bsets && i < j->nbsets; i++) {
		dw_free(j->bsets[i].buf);
		dw_free(j->bsets[i].cbuf);
		dw_free(j->bsets[i].ebuf);
	}
	dw_free(j->bsets);
	j->bsets = NULL;
	dw_free(j->bfree);
	j->bfree = NULL;
}

static int slots_alloc(struct job *j)
{
	size_t cb = ZSTD_compressBound(j->block_size);

	j->slots = dw_calloc(j->nslots, sizeof(*j->slots));
	j->bsets = dw_calloc(j->nbsets, sizeof(*j->bsets));
	j->bfree = dw_calloc(j->nbsets, sizeof(*j->bfree));
	if (!j->slots || !j->bsets || !j->bfree)
		return -ENOMEM;
	for (unsigned i = 0; i < j->nslots; i++) {
		struct slot *s = &j->slots[i];

		s->j = j;
		s->ent = dw_malloc(sizeof(*s->ent));
		s->ccap = cb;
		s->bset = -1;
		if (!s->ent)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < j->nbsets; i++) {
		struct bufset *b = &j->bsets[i];

		b->buf = dw_malloc(j->block_size);
		b->cbuf = dw_malloc(cb);
		if (j->r->crypt)
			b->ebuf = dw_malloc(cb + DW__CRYPT_OVERHEAD);
		if (!b->buf || !b->cbuf || (j->r->crypt && !b->ebuf))
			return -ENOMEM;
		j->bfree[j->nbfree++] = i;
	}
	return 0;
}

/* The job file: who is writing backup <id>, locked for as long as the process lives. */
static int job_file_create(dw_backup_repo *r, const char *id, const char *source,
			   const char *parent, int *lockfd)
{
	char rel[128], text[DW__PATH_MAX + 256];
	int jl, fd, n, rc;

	*lockfd = -1;
	jl = dw__repo_lock(r, "jobs.lock", true, false);
	if (jl < 0)
		return jl;
	snprintf(rel, sizeof(rel), "tmp/%s.job", id);
	fd = openat(r->dirfd, rel, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? DW_ELOCKED : -errno;
		close(fd);
		goto out;
	}
	n = snprintf(text, sizeof(text), "pid %d\nsource %s\nparent %s\n", (int)getpid(), source,
		     parent);
	if (n >= (int)sizeof(text))
		n = (int)sizeof(text) - 1;
	rc = ftruncate(fd, 0) < 0 ? -errno : dw__write_all(fd, text, (size_t)n);
	if (rc < 0) {
		close(fd);
		goto out;
	}
	*lockfd = fd;
	rc = 0;
out:
	close(jl);
	return rc;
}

/* Remove the files of an unfinished backup id (packs, temp manifest, checkpoint), not its job file.
 */
int dw__job_clean_data(dw_backup_repo *r, const char *id, uint64_t *bytes)
{
	static const char *const tmp[] = { "manifest", "ckpt", "ckpt.new" };
	char rel[128];
	struct stat st;
	int rc;

	snprintf(rel, sizeof(rel), "packs/%s", id);
	rc = dw__rm_tree_at(r->dirfd, rel, bytes);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++) {
		snprintf(rel, sizeof(rel), "tmp/%s.%s", id, tmp[i]);
		if (fstatat(r->dirfd, rel, &st, 0) == 0) {
			if (bytes)
				*bytes += (uint64_t)st.st_size;
			unlinkat(r->dirfd, rel, 0);
		}
	}
	return 0;
}

/* ... and its job file. */
int dw__job_clean(dw_backup_repo *r, const char *id, uint64_t *bytes)
{
	char rel[128];
	int rc = dw__job_clean_data(r, id, bytes);

	if (rc < 0)
		return rc;
	snprintf(rel, sizeof(rel), "tmp/%s.job", id);
	unlinkat(r->dirfd, rel, 0);
	return 0;
}

static int source_lock(dw_backup_repo *r, const char *source)
{
	uint8_t h[DW__SHA_LEN];
	char hex[2 * 8 + 1], rel[64];
	int rc = dw__sha256(source, strlen(source), h);

	if (rc < 0)
		return rc;
	dw__hex(h, 8, hex);
	snprintf(rel, sizeof(rel), "locks/%s.lock", hex);
	return dw__repo_lock(r, rel, true, false);
}

/*
 * The checkpoint a create of src resumes from: one left by a dead job (the caller holds the
 * source lock, so no create of src is alive) whose type and parent fit what is asked, and whose
 * id is o->job_id if that is set. id gets its id, or "" for none. The other checkpoints of src
 * are removed with their files: nothing could resume them any more.
 */
static int ckpt_pick(dw_backup_repo *r, const char *src, const dw_backup_create_opts *o,
		     const dw_backup_info *prev, char id[DW_BACKUP_ID_MAX], bool *full)
{
	struct dw__ckpt *ck = NULL;
	DIR *d = NULL;
	struct dirent *de;
	int jl, fd, rc = 0;

	id[0] = '\0';
	jl = dw__repo_lock(r, "jobs.lock", true, false);
	if (jl < 0)
		return jl;
	ck = dw_malloc(sizeof(*ck));
	fd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!ck || fd < 0) {
		rc = !ck ? -ENOMEM : -errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		goto out;
	}
	while ((de = readdir(d))) {
		char cid[DW_BACKUP_ID_MAX], rel[128];
		size_t n = strlen(de->d_name);
		const size_t sl = strlen(".ckpt");
		bool fits;
		int rc2;

		if (n <= sl || n - sl >= sizeof(cid) || strcmp(de->d_name + n - sl, ".ckpt"))
			continue;
		memcpy(cid, de->d_name, n - sl);
		cid[n - sl] = '\0';
		if (!dw__id_valid(cid))
			continue;
		rc2 = dw__ckpt_read(r, cid, ck);
		if (rc2 == -ENOMEM) {
			rc = rc2;
			break;
		}
		if (rc2 < 0)
			continue; /* damaged: dw__recover removes it */
		if (strcmp(ck->source, src) != 0) {
			dw__ckpt_free(ck);
			continue;
		}
		snprintf(rel, sizeof(rel), "backups/%s.manifest", cid);
		if (faccessat(r->dirfd, rel, F_OK, 0) == 0) {
			/* finished; killed before it removed its checkpoint */
			snprintf(rel, sizeof(rel), "tmp/%s.ckpt", cid);
			unlinkat(r->dirfd, rel, 0);
			dw__ckpt_free(ck);
			continue;
		}
		fits = !o->no_resume && !id[0] && (!o->job_id[0] || strcmp(o->job_id, cid) == 0);
		if (ck->type == DW_BACKUP_FULL)
			fits = fits && o->type != DW_BACKUP_INCREMENTAL;
		else
			fits = fits && o->type != DW_BACKUP_FULL && prev &&
			       strcmp(prev->id, ck->parent) == 0;
		if (fits) {
			snprintf(id, DW_BACKUP_ID_MAX, "%s", cid);
			*full = ck->type == DW_BACKUP_FULL;
		} else {
			dw_log(DW_LOG_INFO, "backup", "checkpoint_dropped", "id=%s", cid);
			dw__job_clean(r, cid, NULL);
		}
		dw__ckpt_free(ck);
	}
out:
	if (d)
		closedir(d);
	dw_free(ck);
	close(jl);
	return rc;
}

/*
 * Continue backup j->id from its checkpoint: the manifest is cut back to the checkpoint and its
 * header taken as this backup's (into *h), the packs are cut back, the counters and the table
 * of linked inodes restored, and the reader told where to go on from. DW_ECORRUPT (or another
 * error) when anything does not match: the caller then starts over.
 */
static int resume_setup(struct job *j, struct dw__mheader *h, int *mfd, uint64_t *resumed)
{
	struct dw__ckpt *ck = dw_malloc(sizeof(*ck));
	struct dw__mreader mr;
	char rel[128];
	uint16_t want_len = j->full ? 1 : (uint16_t)(j->pc.mr.h.chain_len + 1);
	int fd = -1, rc;

	if (!ck)
		return -ENOMEM;
	rc = dw__ckpt_read(j->r, j->id, ck);
	if (rc < 0) {
		dw_free(ck);
		return rc == -ENOMEM ? rc : DW_ECORRUPT;
	}
	if (strcmp(ck->source, j->source) != 0 || (ck->type == DW_BACKUP_FULL) != j->full ||
	    strcmp(ck->parent, j->parent) != 0) {
		rc = DW_ECORRUPT;
		goto out;
	}
	snprintf(rel, sizeof(rel), "tmp/%s.manifest", j->id);
	fd = openat(j->r->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? DW_ECORRUPT : -errno;
		goto out;
	}
	rc = dw__mr_open2(&mr, fd, j->r->crypt, j->id);
	if (rc < 0)
		goto out;
	*h = mr.h;
	mr.h.chain = NULL;
	dw__mr_close(&mr);
	if (h->chain_len != want_len || strcmp(h->chain[want_len - 1], j->id) != 0 ||
	    strcmp(h->source, j->source) != 0 || h->type != ck->type ||
	    h->block_size != j->block_size) {
		rc = DW_ECORRUPT;
		goto out;
	}
	for (uint16_t i = 0; i + 1 < want_len; i++) {
		if (strcmp(h->chain[i], j->pc.mr.h.chain[i]) != 0) {
			rc = DW_ECORRUPT;
			goto out;
		}
	}
	*mfd = openat(j->r->dirfd, rel, O_RDWR | O_CLOEXEC);
	if (*mfd < 0) {
		rc = -errno;
		goto out;
	}
	rc = dw__mw_resume(&j->mw, *mfd, ck->mlen, ck->msha, j->r->crypt, j->id);
	if (rc < 0)
		goto out;
	rc = dw__pw_resume(&j->pw, j->r->dirfd, j->id, j->r->pack_size, j->o->fsync, j->o->io,
			   ck->pack_no, ck->pack_off, ck->pack_bytes, ck->pack_open);
	if (rc < 0)
		goto out;
	for (uint64_t i = 0; i < ck->nhl; i++)
		dw__hl_lookup_or_add(j, ck->hl[i].dev, ck->hl[i].ino, ck->hl[i].path);
	j->resume_buf = dw_strdup(ck->last);
	if (!j->resume_buf) {
		rc = -ENOMEM;
		goto out;
	}
	j->resume_last = j->resume_buf;
	j->rs = ck->rs;
	j->cs.blocks_new = ck->blocks_new;
	j->cs.blocks_reused = ck->blocks_reused;
	j->ck_bytes = ck->rs.bytes_read;
	*resumed = ck->rs.bytes_read;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	dw__ckpt_free(ck);
	dw_free(ck);
	return rc;
}

/* Undo a failed resume_setup, so that the create can start over. */
static void resume_reset(struct job *j, struct dw__mheader *h, int *mfd)
{
	dw__mw_close(&j->mw);
	memset(&j->mw, 0, sizeof(j->mw));
	j->mw.fd = -1;
	if (*mfd >= 0)
		close(*mfd);
	*mfd = -1;
	dw__pw_close(&j->pw);
	dw__hl_free(j);
	dw_free(j->resume_buf);
	j->resume_buf = NULL;
	j->resume_last = NULL;
	memset(&j->rs, 0, sizeof(j->rs));
	memset(&j->cs, 0, sizeof(j->cs));
	j->ck_bytes = 0;
	dw__mheader_free(h);
	memset(h, 0, sizeof(*h));
}

int dw_backup_create(dw_backup_repo *r, const dw_backup_create_opts *o, dw_backup_info *out)
{
	struct job *j = NULL;
	struct dw__blist bl = { 0 };
	const dw_backup_info *prev;
	struct dw__mheader h = { 0 };
	char *src = NULL;
	char id[DW_BACKUP_ID_MAX], rel[160], rel2[160];
	pthread_t reader, workers[WORKERS_MAX];
	unsigned nw = 0, started = 0;
	bool reader_started = false, published = false, resume = false, ckpt_full = false;
	uint64_t resumed_bytes = 0;
	int repo_lock = -1, src_lock = -1, job_lock = -1, mfd = -1, rc;
	struct dw__mtrailer t;
	uint64_t created;

	if (!r || !o || !o->source)
		return DW_EUSAGE;
	if (o->zstd_level < 1 || o->zstd_level > 19 || o->threads > WORKERS_MAX)
		return DW_ECONFIG;
	if (o->job_id[0] && !dw__id_valid(o->job_id))
		return DW_EUSAGE;
	src = realpath(o->source, NULL);
	if (!src)
		return errno == ENOENT || errno == ENOTDIR ? DW_ENOTFOUND : -errno;
	if (strlen(src) >= DW__PATH_MAX) {
		free(src);
		return -ENAMETOOLONG;
	}
	j = dw_calloc(1, sizeof(*j));
	if (!j) {
		free(src);
		return -ENOMEM;
	}
	j->r = r;
	j->o = o;
	j->srcfd = -1;
	j->pc.fd = -1;
	j->mw.fd = -1;
	j->pw.fd = j->pw.dirfd = -1;
	j->block_size = r->block_size;
	j->level = o->zstd_level;
	pthread_mutex_init(&j->mu, NULL);
	pthread_mutex_init(&j->hl_mu, NULL);
	pthread_cond_init(&j->cv_free, NULL);
	pthread_cond_init(&j->cv_work, NULL);
	pthread_cond_init(&j->cv_done, NULL);

	j->srcfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->srcfd < 0) {
		rc = errno == ENOENT || errno == ENOTDIR ? DW_ENOTFOUND : -errno;
		goto out;
	}
	repo_lock = dw__repo_lock(r, "lock", false, false);
	if (repo_lock < 0) {
		rc = repo_lock;
		goto out;
	}
	rc = dw__recover(r, true, NULL, NULL, NULL); /* what killed creates left behind */
	if (rc < 0)
		goto out;
	src_lock = source_lock(r, src);
	if (src_lock < 0) {
		rc = src_lock;
		goto out;
	}
	rc = dw__blist_load(r, &bl);
	if (rc < 0)
		goto out;
	prev = dw__blist_latest(&bl, src);
	if (o->type == DW_BACKUP_INCREMENTAL && !prev) {
		rc = DW_ENOTFOUND;
		goto out;
	}
	if (o->type == DW_BACKUP_INCREMENTAL && prev->depth >= DW_BACKUP_CHAIN_MAX) {
		rc = DW_ELIMIT;
		goto out;
	}
	j->full = o->type == DW_BACKUP_FULL || !prev || prev->depth >= DW_BACKUP_CHAIN_MAX;

	created = dw_clock_wall(o->clock);
	j->cur_path = dw_malloc(DW__PATH_MAX);
	if (!j->cur_path) {
		rc = -ENOMEM;
		goto out;
	}
	j->cur_path[0] = '\0';
	rc = ckpt_pick(r, src, o, prev, id, &ckpt_full);
	if (rc < 0)
		goto out;
	if (id[0]) {
		resume = true; /* j->full follows the checkpoint */
		j->full = ckpt_full;
	} else if (o->job_id[0]) {
		snprintf(id, sizeof(id), "%s", o->job_id);
		dw__job_clean(r, id, NULL); /* a dead job's files, without a usable checkpoint */
	} else {
		dw__id_new(created, id);
	}
	snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
	if (faccessat(r->dirfd, rel, F_OK, 0) == 0) {
		rc = DW_EEXIST;
		goto out;
	}
	rc = job_file_create(r, id, src, j->full ? "" : prev->id, &job_lock);
	if (rc < 0)
		goto out;
	j->id = id;
	j->source = src;
	j->parent = j->full ? "" : prev->id;

	if (!j->full) {
		snprintf(rel2, sizeof(rel2), "backups/%s.manifest", prev->id);
		j->pc.fd = openat(r->dirfd, rel2, O_RDONLY | O_CLOEXEC);
		if (j->pc.fd < 0) {
			rc = -errno;
			goto out;
		}
		rc = dw__mr_open2(&j->pc.mr, j->pc.fd, r->crypt, prev->id);
		if (rc < 0)
			goto out;
		j->pc.open = true;
		if (j->pc.mr.h.block_size != j->block_size) {
			rc = DW_ECORRUPT;
			goto out;
		}
		rc = dw__pc_next(&j->pc);
		if (rc < 0)
			goto out;
	}
	if (resume) {
		rc = resume_setup(j, &h, &mfd, &resumed_bytes);
		if (rc == -ENOMEM)
			goto out;
		if (rc < 0) {
			/* unusable: start over under the same id */
			dw_log(DW_LOG_WARN, "backup", "resume_failed", "id=%s err=%s", id,
			       dw_err_name(rc));
			resume_reset(j, &h, &mfd);
			rc = dw__job_clean_data(r, id, NULL);
			if (rc < 0)
				goto out;
			resume = false;
		} else {
			created = h.created_ns;
			dw_log(DW_LOG_INFO, "backup", "resumed", "id=%s from=%s bytes_read=%llu",
			       id, j->resume_last ? j->resume_last : ".",
			       (unsigned long long)resumed_bytes);
		}
	}
	if (!resume) {
		/* header: the parent's chain plus this backup */
		h.type = j->full ? DW_BACKUP_FULL : DW_BACKUP_INCREMENTAL;
		h.block_size = j->block_size;
		h.created_ns = created;
		snprintf(h.source, sizeof(h.source), "%s", src);
		h.chain_len = j->full ? 1 : (uint16_t)(j->pc.mr.h.chain_len + 1);
		h.chain = dw_calloc(h.chain_len, DW_BACKUP_ID_MAX);
		if (!h.chain) {
			rc = -ENOMEM;
			goto out;
		}
		for (uint16_t i = 0; i + 1 < h.chain_len; i++)
			memcpy(h.chain[i], j->pc.mr.h.chain[i], DW_BACKUP_ID_MAX);
		snprintf(h.chain[h.chain_len - 1], DW_BACKUP_ID_MAX, "%s", id);

		snprintf(rel, sizeof(rel), "tmp/%s.manifest", id);
		mfd = openat(r->dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (mfd < 0) {
			rc = -errno;
			goto out;
		}
		rc = dw__mw_open(&j->mw, mfd);
		if (rc < 0)
			goto out;
		j->mw.crypt = r->crypt;
		snprintf(j->mw.id, sizeof(j->mw.id), "%s", id);
		rc = dw__mw_header(&j->mw, &h);
		if (rc < 0)
			goto out;
		rc = dw__pw_open(&j->pw, r->dirfd, id, r->pack_size, o->fsync, o->io);
		if (rc < 0)
			goto out;
	}
	j->self_idx = (uint16_t)(h.chain_len - 1);
	j->ck_ns = dw_clock_now(o->clock);
	j->fsha = EVP_MD_CTX_new();
	j->pathbuf = dw_malloc(DW__PATH_MAX);
	if (!j->fsha || !j->pathbuf) {
		rc = -ENOMEM;
		goto out;
	}

	nw = o->threads;
	if (nw == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		nw = c < 1 ? 1 : (c > WORKERS_MAX ? WORKERS_MAX : (unsigned)c);
	}
	j->nbsets = 3 * nw + 2;
	j->nslots = j->nbsets + WAKE_BATCH > SLOTS ? j->nbsets + WAKE_BATCH : SLOTS;
	rc = slots_alloc(j);
	if (rc < 0)
		goto out;
	for (started = 0; started < nw; started++) {
		rc = -pthread_create(&workers[started], NULL, worker_main, j);
		if (rc < 0)
			goto stop;
	}
	rc = -pthread_create(&reader, NULL, dw__reader_main, j);
	if (rc < 0)
		goto stop;
	reader_started = true;
	rc = committer_run(j);
stop:
	if (rc < 0)
		dw__job_fail(j, rc);
	if (reader_started)
		pthread_join(reader, NULL);
	pthread_mutex_lock(&j->mu);
	j->reader_done = true;
	pthread_cond_broadcast(&j->cv_work);
	pthread_mutex_unlock(&j->mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	/* reads still queued on the I/O manager write into the slots: wait for them */
	pthread_mutex_lock(&j->mu);
	while (j->inflight > 0)
		pthread_cond_wait(&j->cv_done, &j->mu);
	pthread_mutex_unlock(&j->mu);
	if (rc == 0 && j->err)
		rc = j->err;
	if (rc < 0)
		goto out;

	/* make it durable, then visible */
	rc = dw__pw_finish(&j->pw);
	if (rc < 0)
		goto out;
	memset(&t, 0, sizeof(t));
	{
		uint8_t sha[DW__SHA_LEN];
		uint64_t mlen;

		rc = dw__mw_sync(&j->mw, &mlen, sha); /* the records' bytes in the file */
		if (rc < 0)
			goto out;
		merged_stats(j, &j->rs, &t.stats);
		t.stats.bytes_stored =
			j->pw.bytes + mlen + DW__TRAILER_SIZE + (r->crypt ? DW__FRAME_OVERHEAD : 0);
	}
	t.finished_ns = dw_clock_wall(o->clock);
	rc = dw__mw_finish(&j->mw, &t);
	if (rc < 0)
		goto out;
	if (o->fsync && fsync(mfd) < 0) {
		rc = -errno;
		goto out;
	}
	snprintf(rel, sizeof(rel), "tmp/%s.manifest", id);
	snprintf(rel2, sizeof(rel2), "backups/%s.manifest", id);
	if (renameat(r->dirfd, rel, r->dirfd, rel2) < 0) {
		rc = -errno;
		goto out;
	}
	published = true;
	if (o->fsync) {
		rc = dw__fsync_dir_at(r->dirfd, "backups");
		if (rc < 0)
			goto out;
	}
	dw_log(DW_LOG_INFO, "backup", "created", "id=%s type=%s files=%llu bytes_stored=%llu", id,
	       j->full ? "full" : "incremental", (unsigned long long)t.stats.files,
	       (unsigned long long)t.stats.bytes_stored);
	if (out) {
		memset(out, 0, sizeof(*out));
		snprintf(out->id, sizeof(out->id), "%s", id);
		snprintf(out->chain, sizeof(out->chain), "%s", h.chain[0]);
		if (!j->full)
			snprintf(out->parent, sizeof(out->parent), "%s", prev->id);
		out->type = j->full ? DW_BACKUP_FULL : DW_BACKUP_INCREMENTAL;
		out->depth = j->self_idx;
		out->created_ns = created;
		out->finished_ns = t.finished_ns;
		snprintf(out->source, sizeof(out->source), "%s", src);
		out->stats = t.stats;
		dw__backup_bytes(r, id, &out->repo_bytes);
		out->resumed = resume;
		out->resumed_bytes = resumed_bytes;
		out->run_bytes_read = t.stats.bytes_read - resumed_bytes;
	}
	rc = 0;
out:
	if (j) {
		slots_free(j);
		dw__pw_close(&j->pw);
		dw__mw_close(&j->mw);
		if (j->pc.open)
			dw__mr_close(&j->pc.mr);
		if (j->pc.fd >= 0)
			close(j->pc.fd);
		if (j->fsha)
			EVP_MD_CTX_free(j->fsha);
		dw__hl_free(j);
		dw_free(j->pathbuf);
		if (j->srcfd >= 0)
			close(j->srcfd);
		pthread_cond_destroy(&j->cv_free);
		pthread_cond_destroy(&j->cv_work);
		pthread_cond_destroy(&j->cv_done);
		pthread_mutex_destroy(&j->mu);
		pthread_mutex_destroy(&j->hl_mu);
		dw_free(j->cur_path);
		dw_free(j->resume_buf);
		dw_free(j);
	}
	if (mfd >= 0)
		close(mfd);
	if (job_lock >= 0) {
		if (rc < 0 && !published)
			dw__job_clean(r, id, NULL);
		else {
			snprintf(rel, sizeof(rel), "tmp/%s.ckpt", id);
			unlinkat(r->dirfd, rel, 0);
			snprintf(rel, sizeof(rel), "tmp/%s.job", id);
			unlinkat(r->dirfd, rel, 0);
		}
		close(job_lock);
	}
	dw__mheader_free(&h);
	dw__blist_free(&bl);
	if (src_lock >= 0)
		close(src_lock);
	if (repo_lock >= 0)
		close(repo_lock);
	free(src);
	return rc;
}
