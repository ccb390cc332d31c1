// SPDX-License-Identifier: MIT
/*
 * Restore and check: the two readers of a backup.
 *
 * Restore streams one manifest: every entry is created below the target directory through a
 * descriptor of that directory, every block is read from its pack, decompressed and checked
 * against its SHA-256 before it is written, and every file against its file hash. Directory
 * metadata (mode, owner, times) is applied when the walk leaves the directory, so creating the
 * children does not disturb its mtime; a stack holds only the directories of the current path.
 *
 * A manifest is untrusted input: paths must be relative, without "." or ".." components, in
 * strictly increasing manifest order, and each entry's parent must be the directory just restored
 * (the top of the stack). Together with O_NOFOLLOW/O_EXCL this means a restore creates files only
 * inside directories it created itself, never through a symlink it restored.
 *
 * Check walks every manifest the same way without writing: its hash, its order, its chain, every
 * reference (inside an existing pack of an ancestor) and, with read_data, every block the backup
 * itself stored (each stored block is read once, by its owner).
 *
 * Threads and locking
 * -------------------
 * The calling thread reads the manifest, creates directories, links and special files, and
 * queues each regular file (its path, metadata and block references) for a pool of writer
 * threads (one per CPU by default); files over INLINE_BYTES it writes itself. The queue, the
 * counters and the first error are guarded by rst.mu. A writer takes up to WBATCH consecutive
 * files at once, plans their small blocks in its own pack reader (the window then reads the
 * stretch of a pack that holds them in one read) and writes them without the lock. Sleeping
 * threads are woken for a batch (RQ_BATCH places, a batch of files), not per file. Directory
 * metadata waits in a pending list until the pool is drained, so no writer is still creating
 * a file in a directory whose mtime has been set.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backup/backup_int.h"

#define DIRSTACK_MAX	    1024
#define RESTORE_THREADS_MAX 64
/*
 * Writers by default: one per CPU, at most RESTORE_THREADS_DEFAULT_MAX. File creation is
 * mostly kernel time, and with small blocks read through the pack reader's window, a restore
 * of 100k small files with --threads 2 took about half the time of --threads 1 on 2 CPUs (by
 * hand; bench/backup.sh measures the default), and more writers than CPUs gained nothing.
 * --threads sets it.
 */
#define RESTORE_THREADS_DEFAULT_MAX 8

void dw_backup_restore_opts_default(dw_backup_restore_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->owners = true;
}

/* Relative, no empty, "." or ".." components, no leading or trailing slash. */
static bool path_safe(const char *p)
{
	if (!*p || *p == '/')
		return false;
	for (;;) {
		size_t l = strcspn(p, "/");

		if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += l;
		if (!*p)
			return true;
		p++;
	}
}

/* Is a an ancestor directory of b (a = "." is everyone's)? */
static bool is_ancestor(const char *a, const char *b)
{
	size_t l = strlen(a);

	if (strcmp(a, ".") == 0)
		return strcmp(b, ".") != 0;
	return strncmp(a, b, l) == 0 && b[l] == '/';
}

/* The parent path of p ("." for a top-level name) into out. */
static void parent_of(const char *p, char *out, size_t cap)
{
	const char *s = strrchr(p, '/');

	if (!s)
		snprintf(out, cap, ".");
	else
		snprintf(out, cap, "%.*s", (int)(s - p), p);
}

struct dstack_ent {
	char *path;
	uint32_t mode, uid, gid;
	struct timespec times[2];
};

struct rtask {
	char *path;
	uint32_t mode, uid, gid;
	struct timespec ts[2];
	struct dw__bref *refs;
	uint32_t nrefs;
	struct dw__file_end fe;
};

#define RQ_CAP	     128	  /* files queued for the writers */
#define RQ_BATCH     32		  /* free places the waiting reading thread is woken for */
#define WBATCH	     64		  /* files a writer takes from the queue at once */
#define RQ_REFS_MAX  (1u << 18)	  /* block references queued, in all */
#define PENDING_MAX  4096	  /* finished directories whose metadata waits for a drain */
#define INLINE_BYTES (256u << 20) /* larger files are restored by the reading thread */

struct rst {
	dw_backup_repo *r;
	const dw_backup_restore_opts *o;
	int tfd;
	struct dstack_ent *st;
	size_t n;
	struct dstack_ent *pending; /* popped directories, metadata not applied yet */
	size_t npending;
	dw_backup_stats stats; /* protected by mu */
	bool owners;
	char (*chain)[DW_BACKUP_ID_MAX];
	uint16_t chain_len;
	uint32_t block_size;

	pthread_mutex_t mu;
	pthread_cond_t cv_put, cv_get, cv_idle;
	struct rtask *q[RQ_CAP];  /* protected by mu */
	unsigned qhead, qn, busy; /* protected by mu */
	size_t qrefs;		  /* protected by mu */
	bool put_waits;		  /* protected by mu: the reading thread waits for room */
	uint32_t put_need;	  /* protected by mu: the references it waits to queue */
	bool stop;		  /* protected by mu */
	int err;		  /* protected by mu: first writer error */
};

static void rwarn(struct rst *s, const char *path, int err)
{
	char q[512];

	pthread_mutex_lock(&s->mu);
	s->stats.unreadable++;
	dw_log(DW_LOG_WARN, "backup", "restore_skip", "path=%s err=%s",
	       dw_log_quote(path, q, sizeof(q)), dw_err_name(err));
	if (s->o->warn)
		s->o->warn(s->o->arg, path, err);
	pthread_mutex_unlock(&s->mu);
}

static void meta_times(const struct dw__entry *e, struct timespec ts[2])
{
	ts[0].tv_sec = e->mtime_sec; /* atime is not kept: restore it as the mtime */
	ts[0].tv_nsec = e->mtime_nsec;
	ts[1].tv_sec = e->mtime_sec;
	ts[1].tv_nsec = e->mtime_nsec;
}

static void chown_at(struct rst *s, const char *path, uint32_t uid, uint32_t gid, int flags)
{
	if (s->owners && fchownat(s->tfd, path, uid, gid, flags) < 0 && errno != EPERM)
		rwarn(s, path, -errno);
}

static void dir_apply(struct rst *s, struct dstack_ent *d)
{
	const char *p = d->path;

	chown_at(s, p, d->uid, d->gid, 0);
	if (fchmodat(s->tfd, p, d->mode & 07777, 0) < 0)
		rwarn(s, p, -errno);
	if (utimensat(s->tfd, p, d->times, 0) < 0)
		rwarn(s, p, -errno);
	dw_free(d->path);
	d->path = NULL;
}

/* ---- writer pool ------------------------------------------------------------------------------
 */

static void task_free(struct rtask *t)
{
	if (!t)
		return;
	dw_free(t->path);
	dw_free(t->refs);
	dw_free(t);
}

/* Write one file from its block references (any thread). */
static int write_task(struct rst *s, struct dw__preader *pr, uint8_t *buf, const struct rtask *t)
{
	uint8_t fsha[DW__SHA_LEN];
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned int hl = 0;
	uint64_t total = 0;
	int fd = -1, rc;

	if (!sha)
		return -ENOMEM;
	if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
		rc = DW_EBACKEND;
		goto out;
	}
	for (uint32_t i = 0; i < t->nrefs; i++) {
		EVP_DigestUpdate(sha, t->refs[i].sha, DW__SHA_LEN);
		total += t->refs[i].ulen;
	}
	EVP_DigestFinal_ex(sha, fsha, &hl);
	if (t->fe.size != total || memcmp(fsha, t->fe.sha, DW__SHA_LEN) != 0) {
		rc = DW_ECORRUPT;
		goto out;
	}
	fd = openat(s->tfd, t->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	for (uint32_t i = 0; i < t->nrefs; i++) {
		rc = dw__pr_read(pr, &t->refs[i], buf, true);
		if (rc < 0)
			goto out;
		rc = dw__write_all(fd, buf, t->refs[i].ulen);
		if (rc < 0)
			goto out;
	}
	if (t->fe.flags & DW__FILE_PARTIAL)
		rwarn(s, t->path, -EIO); /* restored as far as it could be read */
	if (s->owners && fchown(fd, t->uid, t->gid) < 0 && errno != EPERM)
		rwarn(s, t->path, -errno);
	if (fchmod(fd, t->mode & 07777) < 0)
		rwarn(s, t->path, -errno);
	if (futimens(fd, t->ts) < 0)
		rwarn(s, t->path, -errno);
	pthread_mutex_lock(&s->mu);
	s->stats.files++;
	s->stats.bytes_total += total;
	s->stats.blocks_new += t->nrefs;
	s->stats.bytes_read += total;
	pthread_mutex_unlock(&s->mu);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(sha);
	return rc;
}

/*
 * A writer plans the small blocks of the batch of consecutive files it takes: the window then
 * loads, in one read, the stretch of a pack that holds them. Consecutive files have neighbouring
 * blocks, so writers on their own batches read disjoint stretches: every pack byte once, in
 * reads of up to DW__PR_WINDOW.
 */
static void batch_plan(struct dw__preader *pr, struct rtask **b, unsigned n)
{
	dw__pr_plan_reset(pr);
	for (unsigned i = 0; i < n; i++)
		for (uint32_t k = 0; k < b[i]->nrefs; k++)
			dw__pr_plan_add(pr, &b[i]->refs[k]);
}

static void *writer_main(void *arg)
{
	struct rst *s = arg;
	struct dw__preader pr;
	uint8_t *buf = dw_malloc(s->block_size);
	int rc = buf ? dw__pr_open(&pr, s->r->dirfd, s->chain, s->chain_len) : -ENOMEM;

	if (rc == 0)
		pr.io = s->o->io;
	if (rc == 0)
		pr.crypt = s->r->crypt;

	pthread_mutex_lock(&s->mu);
	if (rc < 0 && !s->err) {
		s->err = rc;
		pthread_cond_broadcast(&s->cv_put);
	}
	while (rc == 0) {
		struct rtask *batch[WBATCH];
		unsigned nb = 0;
		uint64_t bytes = 0;
		bool skip;

		while (!s->stop && s->qn == 0)
			pthread_cond_wait(&s->cv_get, &s->mu);
		if (s->qn == 0)
			break; /* stopped and nothing left */
		while (s->qn > 0 && nb < WBATCH && bytes < DW__PR_WINDOW) {
			struct rtask *t = s->q[s->qhead];

			s->qhead = (s->qhead + 1) % RQ_CAP;
			s->qn--;
			s->qrefs -= t->nrefs;
			for (uint32_t i = 0; i < t->nrefs; i++)
				bytes += t->refs[i].clen;
			batch[nb++] = t;
		}
		s->busy++;
		skip = s->err != 0; /* after a failure, queued files are dropped */
		/* woken for a batch of room, not for each file: a context switch per file */
		if (s->put_waits && (s->qn == 0 || (s->qn <= RQ_CAP - RQ_BATCH &&
						    s->qrefs + s->put_need <= RQ_REFS_MAX)))
			pthread_cond_signal(&s->cv_put);
		pthread_mutex_unlock(&s->mu);

		if (!skip)
			batch_plan(&pr, batch, nb);
		for (unsigned i = 0; i < nb; i++) {
			if (rc == 0 && !skip)
				rc = write_task(s, &pr, buf, batch[i]);
			task_free(batch[i]);
		}

		pthread_mutex_lock(&s->mu);
		s->busy--;
		if (rc < 0 && !s->err) {
			s->err = rc;
			pthread_cond_broadcast(&s->cv_put); /* the reading thread stops */
		}
		rc = 0;
		pthread_cond_broadcast(&s->cv_idle);
	}
	pthread_mutex_unlock(&s->mu);
	if (buf)
		dw__pr_close(&pr);
	dw_free(buf);
	return NULL;
}

static int pool_put(struct rst *s, struct rtask *t)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	while (!s->err && (s->qn == RQ_CAP || (s->qn > 0 && s->qrefs + t->nrefs > RQ_REFS_MAX))) {
		s->put_waits = true;
		s->put_need = t->nrefs;
		pthread_cond_wait(&s->cv_put, &s->mu);
		s->put_waits = false;
	}
	rc = s->err;
	if (rc == 0) {
		s->q[(s->qhead + s->qn) % RQ_CAP] = t;
		s->qn++;
		s->qrefs += t->nrefs;
		pthread_cond_signal(&s->cv_get);
	}
	pthread_mutex_unlock(&s->mu);
	if (rc < 0)
		task_free(t);
	return rc;
}

/* Wait until every queued file is written; returns the first writer error. */
static int pool_drain(struct rst *s)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	while (s->qn > 0 || s->busy > 0)
		pthread_cond_wait(&s->cv_idle, &s->mu);
	rc = s->err;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Apply the metadata of finished directories, once nothing is being created in them. */
static int pending_flush(struct rst *s)
{
	int rc = pool_drain(s);

	for (size_t i = 0; i < s->npending; i++)
		dir_apply(s, &s->pending[i]);
	s->npending = 0;
	return rc;
}

/* A directory is finished: its metadata waits until the writers are done with it. */
static int dstack_pop(struct rst *s)
{
	s->pending[s->npending++] = s->st[--s->n];
	if (s->npending == PENDING_MAX)
		return pending_flush(s);
	return 0;
}

static int dstack_push(struct rst *s, const struct dw__entry *e)
{
	struct dstack_ent *d;

	if (s->n == DIRSTACK_MAX)
		return DW_ECORRUPT;
	d = &s->st[s->n];
	d->path = dw_strdup(e->path);
	if (!d->path)
		return -ENOMEM;
	d->mode = e->mode;
	d->uid = e->uid;
	d->gid = e->gid;
	meta_times(e, d->times);
	s->n++;
	return 0;
}

/* Pop finished directories; the top must then be the parent of path. */
static int dstack_enter(struct rst *s, const char *path)
{
	char parent[DW__PATH_MAX];

	while (s->n > 0 && !is_ancestor(s->st[s->n - 1].path, path)) {
		int rc = dstack_pop(s);

		if (rc < 0)
			return rc;
	}
	parent_of(path, parent, sizeof(parent));
	if (s->n == 0 || strcmp(s->st[s->n - 1].path, parent) != 0)
		return DW_ECORRUPT;
	return 0;
}

/* Should entry path be restored for the filter P (P itself, below it, or an ancestor)? */
static bool wanted(const char *filter, const char *path)
{
	size_t l;

	if (!filter)
		return true;
	if (strcmp(path, ".") == 0)
		return true;
	l = strlen(filter);
	if (strcmp(path, filter) == 0 || (strncmp(path, filter, l) == 0 && path[l] == '/'))
		return true;
	return is_ancestor(path, filter);
}

static bool target_empty(int fd)
{
	int fd2 = dup(fd);
	DIR *d;
	struct dirent *de;
	bool empty = true;

	if (fd2 < 0)
		return false;
	d = fdopendir(fd2);
	if (!d) {
		close(fd2);
		return false;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

/* Restore one regular file: blocks follow in the manifest, then the file end. */
static int restore_file(struct rst *s, struct dw__mreader *m, struct dw__preader *pr,
			const struct dw__entry *e, bool write_it, uint8_t *buf)
{
	struct dw__entry dummy;
	struct dw__bref b;
	struct dw__file_end fe;
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	uint8_t fsha[DW__SHA_LEN];
	uint64_t total = 0;
	unsigned int hl = 0;
	int fd = -1, rc, t;

	if (!sha)
		return -ENOMEM;
	if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
		rc = DW_EBACKEND;
		goto out;
	}
	if (write_it) {
		fd = openat(s->tfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
	}
	for (;;) {
		t = dw__mr_next(m, &dummy, &b, &fe);
		if (t < 0) {
			rc = t;
			goto out;
		}
		if (t == DW__REC_FILE_END)
			break;
		if (t != DW__REC_BLOCK) {
			rc = DW_ECORRUPT;
			goto out;
		}
		if (EVP_DigestUpdate(sha, b.sha, DW__SHA_LEN) != 1) {
			rc = DW_EBACKEND;
			goto out;
		}
		total += b.ulen;
		if (!write_it)
			continue;
		rc = dw__pr_read(pr, &b, buf, true);
		if (rc < 0)
			goto out;
		rc = dw__write_all(fd, buf, b.ulen);
		if (rc < 0)
			goto out;
		pthread_mutex_lock(&s->mu);
		s->stats.blocks_new++;
		s->stats.bytes_read += b.ulen;
		pthread_mutex_unlock(&s->mu);
	}
	if (EVP_DigestFinal_ex(sha, fsha, &hl) != 1) {
		rc = DW_EBACKEND;
		goto out;
	}
	if (fe.size != total || memcmp(fsha, fe.sha, DW__SHA_LEN) != 0) {
		rc = DW_ECORRUPT;
		goto out;
	}
	rc = 0;
	if (!write_it)
		goto out;
	if (fe.flags & DW__FILE_PARTIAL)
		rwarn(s, e->path, -EIO); /* restored as far as it could be read */
	if (s->owners && fchown(fd, e->uid, e->gid) < 0 && errno != EPERM)
		rwarn(s, e->path, -errno);
	if (fchmod(fd, e->mode & 07777) < 0)
		rwarn(s, e->path, -errno);
	{
		struct timespec ts[2];

		meta_times(e, ts);
		if (futimens(fd, ts) < 0)
			rwarn(s, e->path, -errno);
	}
	pthread_mutex_lock(&s->mu);
	s->stats.files++;
	s->stats.bytes_total += total;
	pthread_mutex_unlock(&s->mu);
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(sha);
	return rc;
}

/* Collect a file's block references from the manifest and queue it for the writers. */
static int queue_file(struct rst *s, struct dw__mreader *m, const struct dw__entry *e)
{
	struct rtask *t = dw_calloc(1, sizeof(*t));
	struct dw__entry *dummy = NULL;
	uint32_t cap = 0;
	int rc;

	if (!t)
		return -ENOMEM;
	t->path = dw_strdup(e->path);
	dummy = dw_malloc(sizeof(*dummy));
	if (!t->path || !dummy) {
		rc = -ENOMEM;
		goto fail;
	}
	t->mode = e->mode;
	t->uid = e->uid;
	t->gid = e->gid;
	meta_times(e, t->ts);
	for (;;) {
		struct dw__bref b;
		int k = dw__mr_next(m, dummy, &b, &t->fe);

		if (k < 0) {
			rc = k;
			goto fail;
		}
		if (k == DW__REC_FILE_END)
			break;
		if (k != DW__REC_BLOCK) {
			rc = DW_ECORRUPT;
			goto fail;
		}
		if (t->nrefs == cap) {
			uint32_t nc = cap ? 2 * cap : 4;
			struct dw__bref *nr;

			if (nc > RQ_REFS_MAX) {
				rc = DW_ETOOBIG; /* grew far past its recorded size */
				goto fail;
			}
			nr = dw_realloc(t->refs, nc * sizeof(*nr));
			if (!nr) {
				rc = -ENOMEM;
				goto fail;
			}
			t->refs = nr;
			cap = nc;
		}
		t->refs[t->nrefs++] = b;
	}
	dw_free(dummy);
	return pool_put(s, t);
fail:
	dw_free(dummy);
	task_free(t);
	return rc;
}

static int restore_entry(struct rst *s, const struct dw__entry *e)
{
	struct timespec ts[2];

	meta_times(e, ts);
	switch (e->kind) {
	case DW__REC_DIR:
		if (mkdirat(s->tfd, e->path, 0700) < 0)
			return -errno;
		s->stats.dirs++;
		return dstack_push(s, e);
	case DW__REC_SYMLINK:
		if (symlinkat(e->target, s->tfd, e->path) < 0)
			return -errno;
		chown_at(s, e->path, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
		if (utimensat(s->tfd, e->path, ts, AT_SYMLINK_NOFOLLOW) < 0)
			rwarn(s, e->path, -errno);
		s->stats.symlinks++;
		return 0;
	case DW__REC_HARDLINK: {
		int rc;

		if (!path_safe(e->target))
			return DW_ECORRUPT;
		rc = pool_drain(s); /* the first name may still be being written */
		if (rc < 0)
			return rc;
	}
		if (linkat(s->tfd, e->target, s->tfd, e->path, 0) < 0) {
			rwarn(s, e->path, -errno); /* its first name was not restored */
			return 0;
		}
		s->stats.hardlinks++;
		return 0;
	case DW__REC_SPECIAL:
		if (mknodat(s->tfd, e->path, e->mode & ~07777u, (dev_t)e->rdev) < 0) {
			rwarn(s, e->path, -errno); /* devices need privilege */
			return 0;
		}
		chown_at(s, e->path, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
		if (fchmodat(s->tfd, e->path, e->mode & 07777, 0) < 0)
			rwarn(s, e->path, -errno);
		if (utimensat(s->tfd, e->path, ts, AT_SYMLINK_NOFOLLOW) < 0)
			rwarn(s, e->path, -errno);
		s->stats.specials++;
		return 0;
	default:
		return DW_ECORRUPT;
	}
}

/* Normalise a --path filter: strip "./" prefixes and trailing slashes; "" or "." = all. */
static int norm_filter(const char *in, char *out, size_t cap, const char **res)
{
	size_t l;

	*res = NULL;
	if (!in)
		return 0;
	while (in[0] == '.' && in[1] == '/')
		in += 2;
	while (*in == '/')
		in++;
	l = strlen(in);
	while (l > 0 && in[l - 1] == '/')
		l--;
	if (l == 0 || (l == 1 && in[0] == '.'))
		return 0;
	if (l >= cap)
		return -ENAMETOOLONG;
	memcpy(out, in, l);
	out[l] = '\0';
	if (!path_safe(out))
		return DW_EUSAGE;
	*res = out;
	return 0;
}

static int open_manifest(dw_backup_repo *r, const char *id, int *fd)
{
	char rel[128];

	snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
	*fd = openat(r->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return errno == ENOENT ? DW_ENOTFOUND : -errno;
	return 0;
}

int dw_backup_restore(dw_backup_repo *r, const char *id, const dw_backup_restore_opts *o,
		      dw_backup_stats *out)
{
	struct rst s = { .r = r, .o = o, .tfd = -1 };
	struct dw__mreader m = { .fd = -1 };
	struct dw__preader pr = { 0 };
	struct dw__entry *e = NULL, *prev = NULL;
	dw_backup_info info;
	char fbuf[DW__PATH_MAX];
	const char *filter = NULL;
	uint8_t *buf = NULL;
	pthread_t th[RESTORE_THREADS_MAX];
	unsigned nth = 0, want_th;
	bool mopen = false, propen = false, have_prev = false;
	int lock = -1, mfd = -1, rc, rc2;

	if (!r || !id || !o || !o->target)
		return DW_EUSAGE;
	if (o->threads > RESTORE_THREADS_MAX)
		return DW_ECONFIG;
	s.owners = o->owners;
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv_put, NULL);
	pthread_cond_init(&s.cv_get, NULL);
	pthread_cond_init(&s.cv_idle, NULL);
	rc = norm_filter(o->path, fbuf, sizeof(fbuf), &filter);
	if (rc < 0)
		goto out;
	lock = dw__repo_lock(r, "lock", false, false);
	if (lock < 0) {
		rc = lock;
		goto out;
	}
	rc = dw_backup_stat(r, id, &info);
	if (rc < 0)
		goto out;
	rc = open_manifest(r, info.id, &mfd);
	if (rc < 0)
		goto out;
	rc = dw__mr_open2(&m, mfd, r->crypt, info.id);
	if (rc < 0)
		goto out;
	mopen = true;
	s.chain = m.h.chain;
	s.chain_len = m.h.chain_len;
	s.block_size = m.h.block_size;
	rc = dw__pr_open(&pr, r->dirfd, m.h.chain, m.h.chain_len);
	if (rc < 0)
		goto out;
	pr.io = o->io;
	pr.crypt = r->crypt;
	propen = true;
	if (mkdir(o->target, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}
	s.tfd = open(o->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.tfd < 0) {
		rc = -errno;
		goto out;
	}
	if (!target_empty(s.tfd)) {
		rc = DW_EEXIST;
		goto out;
	}
	s.st = dw_calloc(DIRSTACK_MAX, sizeof(*s.st));
	s.pending = dw_calloc(PENDING_MAX, sizeof(*s.pending));
	e = dw_malloc(sizeof(*e));
	prev = dw_malloc(sizeof(*prev));
	buf = dw_malloc(m.h.block_size);
	if (!s.st || !s.pending || !e || !prev || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	want_th = o->threads;
	if (want_th == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		want_th = c < 1 ? 1
				: (c > RESTORE_THREADS_DEFAULT_MAX ? RESTORE_THREADS_DEFAULT_MAX
								   : (unsigned)c);
	}
	for (nth = 0; nth < want_th; nth++) {
		if (pthread_create(&th[nth], NULL, writer_main, &s) != 0)
			break;
	}
	if (nth == 0) {
		rc = -EAGAIN;
		goto out;
	}
	for (;;) {
		struct dw__bref b;
		struct dw__file_end fe;
		bool want;
		int t = dw__mr_next(&m, e, &b, &fe);

		if (t < 0) {
			rc = t;
			goto out;
		}
		if (t == 0)
			break;
		if (t == DW__REC_BLOCK || t == DW__REC_FILE_END) {
			rc = DW_ECORRUPT; /* outside a file */
			goto out;
		}
		/* order and shape of the manifest */
		if (!have_prev) {
			if (t != DW__REC_DIR || strcmp(e->path, ".") != 0) {
				rc = DW_ECORRUPT;
				goto out;
			}
		} else if (!path_safe(e->path) || dw__path_cmp(prev->path, e->path) >= 0) {
			rc = DW_ECORRUPT;
			goto out;
		}
		memcpy(prev->path, e->path, strlen(e->path) + 1);
		want = wanted(filter, e->path);
		if (!have_prev) {
			have_prev = true;
			s.stats.dirs++;
			/* for a partial restore the root stays on the stack unapplied: the
			 * target's own metadata is left alone */
			rc = dstack_push(&s, e);
			if (rc < 0)
				goto out;
			continue;
		}
		if (want) {
			rc = dstack_enter(&s, e->path);
			if (rc < 0)
				goto out;
		}
		if (t == DW__REC_FILE) {
			if (want && e->size <= INLINE_BYTES)
				rc = queue_file(&s, &m, e);
			else
				rc = restore_file(&s, &m, &pr, e, want, buf);
			if (rc < 0)
				goto out;
			continue;
		}
		if (!want)
			continue;
		rc = restore_entry(&s, e);
		if (rc < 0)
			goto out;
	}
	if (!m.have_trailer) {
		rc = DW_ECORRUPT;
		goto out;
	}
	while (s.n > (filter ? 1u : 0u)) {
		rc = dstack_pop(&s);
		if (rc < 0)
			goto out;
	}
	rc = pending_flush(&s);
out:
	/* stop the writers: queued files are still written unless a writer failed */
	pthread_mutex_lock(&s.mu);
	s.stop = true;
	if (rc < 0 && !s.err)
		s.err = rc;
	pthread_cond_broadcast(&s.cv_get);
	pthread_cond_broadcast(&s.cv_put);
	pthread_mutex_unlock(&s.mu);
	for (unsigned i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	while (s.qn > 0) { /* left by a failure */
		task_free(s.q[s.qhead]);
		s.qhead = (s.qhead + 1) % RQ_CAP;
		s.qn--;
	}
	rc2 = s.err;
	if (rc == 0 && rc2 < 0)
		rc = rc2;
	if (s.pending) {
		for (size_t i = 0; i < s.npending; i++)
			dw_free(s.pending[i].path);
		dw_free(s.pending);
	}
	if (s.st) {
		while (s.n > 0)
			dw_free(s.st[--s.n].path);
		dw_free(s.st);
	}
	if (out)
		*out = s.stats;
	dw_free(buf);
	dw_free(prev);
	dw_free(e);
	if (propen)
		dw__pr_close(&pr);
	if (mopen)
		dw__mr_close(&m);
	if (mfd >= 0)
		close(mfd);
	if (s.tfd >= 0)
		close(s.tfd);
	if (lock >= 0)
		close(lock);
	pthread_cond_destroy(&s.cv_idle);
	pthread_cond_destroy(&s.cv_get);
	pthread_cond_destroy(&s.cv_put);
	pthread_mutex_destroy(&s.mu);
	return rc;
}

/* ---- check ---------------------------------------------------------------------------------- */

struct chk {
	dw_backup_repo *r;
	dw_backup_problem_fn fn;
	void *arg;
	dw_backup_check_report rep;
};

static void problem(struct chk *c, const char *id, const char *fmt, const char *detail)
{
	char msg[512];

	if (snprintf(msg, sizeof(msg), fmt, detail) >= (int)sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4); /* a long path, cut and marked */
	c->rep.errors++;
	dw_log(DW_LOG_WARN, "backup", "check_error", "id=%s msg=\"%s\"", id, msg);
	if (c->fn)
		c->fn(c->arg, id, msg);
}

static int check_one(struct chk *c, const char *id, bool read_data, uint8_t **buf, size_t *bcap)
{
	struct dw__mreader m;
	struct dw__preader pr;
	struct dw__entry *e = dw_malloc(sizeof(*e));
	char *prev = dw_malloc(DW__PATH_MAX);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	bool in_file = false, first = true, mopen = false, propen = false;
	int fd = -1, rc;
	uint64_t total = 0;

	if (!e || !prev || !sha) {
		rc = -ENOMEM;
		goto out;
	}
	rc = open_manifest(c->r, id, &fd);
	if (rc < 0)
		goto out;
	rc = dw__mr_open2(&m, fd, c->r->crypt, id);
	if (rc < 0) {
		problem(c, id, "manifest header unreadable: %s", dw_strerror(rc));
		rc = 0;
		goto out;
	}
	mopen = true;
	if (strcmp(m.h.chain[m.h.chain_len - 1], id) != 0) {
		problem(c, id, "manifest names another backup (%s)", m.h.chain[m.h.chain_len - 1]);
		goto out;
	}
	for (uint16_t i = 0; i + 1 < m.h.chain_len; i++) {
		char rel[128];

		snprintf(rel, sizeof(rel), "backups/%s.manifest", m.h.chain[i]);
		if (faccessat(c->r->dirfd, rel, F_OK, 0) < 0)
			problem(c, id, "ancestor %s is missing", m.h.chain[i]);
	}
	if (*bcap < m.h.block_size) {
		uint8_t *nb = dw_realloc(*buf, m.h.block_size);

		if (!nb) {
			rc = -ENOMEM;
			goto out;
		}
		*buf = nb;
		*bcap = m.h.block_size;
	}
	rc = dw__pr_open(&pr, c->r->dirfd, m.h.chain, m.h.chain_len);
	pr.crypt = c->r->crypt;
	if (rc < 0)
		goto out;
	propen = true;
	prev[0] = '\0';
	for (;;) {
		struct dw__bref b;
		struct dw__file_end fe;
		int t = dw__mr_next(&m, e, &b, &fe);

		if (t < 0) {
			problem(c, id, "manifest damaged: %s", dw_strerror(t));
			break;
		}
		if (t == 0)
			break;
		if (t == DW__REC_BLOCK) {
			if (!in_file) {
				problem(c, id, "block outside a file%s", "");
				break;
			}
			c->rep.blocks_checked++;
			total += b.ulen;
			EVP_DigestUpdate(sha, b.sha, DW__SHA_LEN);
			if (read_data && b.chain_idx == m.h.chain_len - 1) {
				rc = dw__pr_read(&pr, &b, *buf, true);
				c->rep.bytes_read += b.clen;
			} else {
				rc = dw__pr_locate(&pr, &b);
			}
			if (rc == DW_ECORRUPT) {
				problem(c, id, "bad block in %s", e->path);
			} else if (rc < 0) {
				goto out;
			}
			rc = 0;
			continue;
		}
		if (t == DW__REC_FILE_END) {
			uint8_t fsha[DW__SHA_LEN];
			unsigned int hl = 0;

			if (!in_file) {
				problem(c, id, "file end outside a file%s", "");
				break;
			}
			EVP_DigestFinal_ex(sha, fsha, &hl);
			if (fe.size != total || memcmp(fsha, fe.sha, DW__SHA_LEN) != 0)
				problem(c, id, "file hash mismatch: %s", e->path);
			in_file = false;
			continue;
		}
		if (in_file) {
			problem(c, id, "file without end: %s", e->path);
			break;
		}
		if (first ? strcmp(e->path, ".") != 0
			  : (!path_safe(e->path) || dw__path_cmp(prev, e->path) >= 0)) {
			problem(c, id, "entry out of order or unsafe: %s", e->path);
			break;
		}
		first = false;
		snprintf(prev, DW__PATH_MAX, "%s", e->path);
		if (t == DW__REC_FILE) {
			in_file = true;
			total = 0;
			EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
		}
	}
	rc = 0;
out:
	if (propen)
		dw__pr_close(&pr);
	if (mopen)
		dw__mr_close(&m);
	if (fd >= 0)
		close(fd);
	if (sha)
		EVP_MD_CTX_free(sha);
	dw_free(prev);
	dw_free(e);
	return rc;
}

/* Each entry of REPO/sub whose name ends in suffix (stripped) and is a valid id. */
typedef int (*id_fn)(void *arg, const char *id);
static int for_ids(dw_backup_repo *r, const char *sub, const char *suffix, id_fn fn, void *arg)
{
	int fd = openat(r->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t sl = strlen(suffix);
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(d))) {
		char id[DW_BACKUP_ID_MAX];
		size_t n = strlen(de->d_name);

		if (n <= sl || n - sl >= sizeof(id) || strcmp(de->d_name + n - sl, suffix))
			continue;
		memcpy(id, de->d_name, n - sl);
		id[n - sl] = '\0';
		if (!dw__id_valid(id))
			continue;
		rc = fn(arg, id);
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

struct chk_iter {
	struct chk *c;
	bool read_data;
	uint8_t *buf;
	size_t bcap;
};

static int chk_manifest(void *arg, const char *id)
{
	struct chk_iter *it = arg;

	it->c->rep.backups++;
	return check_one(it->c, id, it->read_data, &it->buf, &it->bcap);
}

static int chk_pack_dir(void *arg, const char *id)
{
	struct chk *c = arg;
	char rel[128];

	snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
	if (faccessat(c->r->dirfd, rel, F_OK, 0) < 0)
		c->rep.incomplete++;
	return 0;
}

int dw_backup_check(dw_backup_repo *r, bool read_data, dw_backup_problem_fn fn, void *arg,
		    dw_backup_check_report *out)
{
	struct chk c = { .r = r, .fn = fn, .arg = arg };
	struct chk_iter it = { .c = &c, .read_data = read_data };
	int lock, rc;

	if (!r)
		return DW_EUSAGE;
	lock = dw__repo_lock(r, "lock", false, false);
	if (lock < 0)
		return lock;
	rc = for_ids(r, "backups", ".manifest", chk_manifest, &it);
	if (rc == 0)
		rc = for_ids(r, "packs", "", chk_pack_dir, &c);
	dw_free(it.buf);
	close(lock);
	if (out)
		*out = c.rep;
	if (rc < 0)
		return rc;
	return c.rep.errors ? DW_ECORRUPT : 0;
}
