// SPDX-License-Identifier: MIT
/*
 * Retention (prune) and crash recovery: the two operations that remove files.
 *
 * Retention works on whole chains. Because every backup's references point only back along its
 * own chain, the bytes a chain frees are exactly the sizes of its manifests and packs, measured
 * under the exclusive lock before anything is removed, so --dry-run can print them exactly and a
 * size cap holds exactly. Invariants:
 *   1. The chain holding the newest backup of each source is never removed: an incremental is
 *      never orphaned (it is always removed with its chain) and the newest full stays until a
 *      newer chain has a complete backup.
 *   2. A chain is removed newest manifest first, then its packs: a crash part-way leaves a
 *      shorter chain that still restores, plus pack directories without manifests that
 *      recovery removes.
 * Rules, applied in order: keep_last (per source, a chain goes when none of its backups is
 * among the newest keep_last), max_age (a chain goes when its newest backup is older), max_bytes
 * (then the oldest remaining chains go, any source, until the total fits).
 *
 * Recovery removes what unfinished creates left: a pack directory or temp manifest whose job
 * file is not locked (its process is gone) and that has no visible manifest. The job lock is
 * tested before the manifest, because a finishing create renames its manifest before it lets
 * the lock go. REPO/jobs.lock is held meanwhile so that no job starts between the two tests.
 * A create cleans this way too when it starts, but keeps dead jobs that left a checkpoint
 * (ckpt.c): the next create of their source resumes them. dw_backup_recover removes them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "backup/backup_int.h"

#define DAY_NS (86400ull * DW_NS_PER_SEC)

void dw_backup_retention_default(dw_backup_retention *p)
{
	memset(p, 0, sizeof(*p));
	p->keep_last = 30;
	p->max_age_ns = 90 * DAY_NS;
	p->max_bytes = 100000000000ull;
}

struct chain {
	const char *id; /* the full's id */
	const char *source;
	uint64_t first_ns, last_ns; /* oldest and newest backup */
	uint32_t backups;
	uint64_t bytes;
	bool protect;
	bool in_keep; /* one of its backups is among the newest keep_last of its source */
	unsigned reasons;
};

static int chain_cmp(const void *a, const void *b)
{
	const struct chain *x = a, *y = b;

	if (x->first_ns != y->first_ns)
		return x->first_ns < y->first_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

static struct chain *chain_find(struct chain *v, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].id, id) == 0)
			return &v[i];
	}
	return NULL;
}

/*
 * Build the plan: which chains go, and why; a pure function of the list, the policy and the
 * time. The chains to remove are returned oldest first.
 */
static int prune_plan(const struct dw__blist *l, const dw_backup_retention *p, uint64_t now_ns,
		      struct chain **out, size_t *nout, dw_backup_prune_result *res)
{
	struct chain *v = NULL;
	size_t n = 0;
	uint64_t total = 0;

	memset(res, 0, sizeof(*res));
	*out = NULL;
	*nout = 0;
	if (l->n) {
		v = dw_calloc(l->n, sizeof(*v));
		if (!v)
			return -ENOMEM;
	}
	for (size_t i = 0; i < l->n; i++) {
		const dw_backup_info *b = &l->v[i];
		struct chain *c = chain_find(v, n, b->chain);

		if (!c) {
			c = &v[n++];
			c->id = b->chain;
			c->source = b->source;
			c->first_ns = b->created_ns;
		}
		if (b->created_ns < c->first_ns)
			c->first_ns = b->created_ns;
		if (b->created_ns > c->last_ns)
			c->last_ns = b->created_ns;
		c->backups++;
		c->bytes += b->repo_bytes;
		total += b->repo_bytes;
	}
	/* invariant 1, and the keep_last window, per source (the list is oldest first) */
	for (size_t i = 0; i < l->n; i++) {
		const dw_backup_info *b = &l->v[i];
		const dw_backup_info *latest = dw__blist_latest(l, b->source);
		uint32_t newer = 0;

		if (latest == b)
			chain_find(v, n, b->chain)->protect = true;
		for (size_t k = i + 1; k < l->n; k++)
			newer += strcmp(l->v[k].source, b->source) == 0;
		if (p->keep_last && newer < p->keep_last)
			chain_find(v, n, b->chain)->in_keep = true;
	}
	if (n) /* v may be NULL when there are no chains */
		qsort(v, n, sizeof(*v), chain_cmp);
	res->bytes_before = total;
	for (size_t i = 0; i < n; i++) {
		struct chain *c = &v[i];

		if (c->protect)
			continue;
		if (p->keep_last && !c->in_keep)
			c->reasons |= DW_PRUNE_COUNT;
		if (p->max_age_ns && now_ns > p->max_age_ns && c->last_ns < now_ns - p->max_age_ns)
			c->reasons |= DW_PRUNE_AGE;
		if (c->reasons)
			total -= c->bytes;
	}
	if (p->max_bytes) {
		for (size_t i = 0; i < n && total > p->max_bytes; i++) {
			if (v[i].protect || v[i].reasons)
				continue;
			v[i].reasons |= DW_PRUNE_SIZE;
			total -= v[i].bytes;
		}
		res->size_cap_unmet = total > p->max_bytes;
	}
	for (size_t i = 0; i < n; i++) {
		if (!v[i].reasons)
			continue;
		res->chains_removed++;
		res->backups_removed += v[i].backups;
		res->bytes_freed += v[i].bytes;
		v[*nout] = v[i];
		(*nout)++;
	}
	res->bytes_after = total;
	*out = v;
	return 0;
}

/* Remove one chain: manifests newest first, then packs. */
static int remove_chain(dw_backup_repo *r, const struct dw__blist *l, const char *chain)
{
	char rel[128];
	int rc;

	for (size_t i = l->n; i-- > 0;) {
		if (strcmp(l->v[i].chain, chain) != 0)
			continue;
		snprintf(rel, sizeof(rel), "backups/%s.manifest", l->v[i].id);
		if (unlinkat(r->dirfd, rel, 0) < 0 && errno != ENOENT)
			return -errno;
	}
	rc = dw__fsync_dir_at(r->dirfd, "backups");
	if (rc < 0)
		return rc;
	for (size_t i = l->n; i-- > 0;) {
		if (strcmp(l->v[i].chain, chain) != 0)
			continue;
		snprintf(rel, sizeof(rel), "packs/%s", l->v[i].id);
		rc = dw__rm_tree_at(r->dirfd, rel, NULL);
		if (rc < 0)
			return rc;
	}
	return dw__fsync_dir_at(r->dirfd, "packs");
}

int dw_backup_prune(dw_backup_repo *r, const dw_backup_retention *p, bool dry_run,
		    dw_backup_prune_fn fn, void *arg, dw_backup_prune_result *out)
{
	struct dw__blist l = { 0 };
	struct chain *v = NULL;
	size_t n = 0;
	dw_backup_prune_result res;
	int lock, rc;

	memset(&res, 0, sizeof(res));
	if (!r || !p)
		return DW_EUSAGE;
	lock = dw__repo_lock(r, "lock", true, true);
	if (lock < 0)
		return lock;
	rc = dw__blist_load(r, &l);
	if (rc < 0)
		goto out;
	rc = prune_plan(&l, p, dw_clock_wall(p->clock), &v, &n, &res);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		dw_backup_prune_item it = { .chain = v[i].id,
					    .source = v[i].source,
					    .backups = v[i].backups,
					    .bytes = v[i].bytes,
					    .reasons = v[i].reasons };

		if (!dry_run) {
			rc = remove_chain(r, &l, v[i].id);
			if (rc < 0)
				goto out;
			dw_log(DW_LOG_INFO, "backup", "pruned", "chain=%s backups=%u bytes=%llu",
			       v[i].id, v[i].backups, (unsigned long long)v[i].bytes);
		}
		if (fn)
			fn(arg, &it);
	}
	rc = 0;
out:
	dw_free(v);
	dw__blist_free(&l);
	close(lock);
	if (out)
		*out = res;
	return rc;
}

/* ---- recovery ----------------------------------------------------------------------------- */

struct rec {
	dw_backup_repo *r;
	dw_backup_recover_fn fn;
	void *arg;
	dw_backup_recover_result res;
	bool keep_resumable;
};

/* One id that has partial files: is its job alive? Else clean it. */
static int recover_id(struct rec *c, const char *id)
{
	char rel[128];
	uint64_t bytes = 0;
	int fd, rc;

	snprintf(rel, sizeof(rel), "tmp/%s.job", id);
	fd = openat(c->r->dirfd, rel, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			if (errno != EWOULDBLOCK)
				return -errno;
			c->res.jobs_running++;
			if (c->fn)
				c->fn(c->arg, id, false, 0);
			return 0;
		}
	}
	/* not running: finished (manifest visible) or dead */
	snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
	if (faccessat(c->r->dirfd, rel, F_OK, 0) == 0) {
		snprintf(rel, sizeof(rel), "tmp/%s.ckpt", id);
		unlinkat(c->r->dirfd, rel, 0);
		if (fd >= 0) {
			snprintf(rel, sizeof(rel), "tmp/%s.job", id);
			unlinkat(c->r->dirfd, rel, 0);
			close(fd);
		}
		return 0;
	}
	if (c->keep_resumable) {
		struct dw__ckpt *ck = dw_malloc(sizeof(*ck));

		rc = ck ? dw__ckpt_read(c->r, id, ck) : -ENOMEM;
		if (rc == 0)
			dw__ckpt_free(ck);
		dw_free(ck);
		if (rc == 0) {
			/* dead, with a checkpoint: the next create of its source resumes it */
			if (fd >= 0)
				close(fd);
			return 0;
		}
	}
	rc = dw__job_clean(c->r, id, &bytes);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		return rc;
	c->res.jobs_cleaned++;
	c->res.bytes_freed += bytes;
	dw_log(DW_LOG_INFO, "backup", "recovered", "id=%s bytes_freed=%llu", id,
	       (unsigned long long)bytes);
	if (c->fn)
		c->fn(c->arg, id, true, bytes);
	return 0;
}

/* Ids with partial files: packs/<id> without a manifest, tmp/<id>.job, tmp/<id>.manifest. */
static int scan_dir(struct rec *c, const char *sub, const char *suffix)
{
	int fd = openat(c->r->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
		char id[DW_BACKUP_ID_MAX], rel[128];
		size_t n = strlen(de->d_name);

		if (n <= sl || n - sl >= sizeof(id) || strcmp(de->d_name + n - sl, suffix))
			continue;
		memcpy(id, de->d_name, n - sl);
		id[n - sl] = '\0';
		if (!dw__id_valid(id))
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", sub, de->d_name);
		if (faccessat(c->r->dirfd, rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed with an earlier id of this scan */
		snprintf(rel, sizeof(rel), "tmp/%s.job", id);
		if (strcmp(suffix, ".job") != 0 && faccessat(c->r->dirfd, rel, F_OK, 0) == 0)
			continue; /* a running job: counted once, by its job file */
		rc = recover_id(c, id);
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

int dw__recover(dw_backup_repo *r, bool keep_resumable, dw_backup_recover_fn fn, void *arg,
		dw_backup_recover_result *out)
{
	struct rec c = { .r = r, .fn = fn, .arg = arg, .keep_resumable = keep_resumable };
	int jl, rc;

	jl = dw__repo_lock(r, "jobs.lock", true, false);
	if (jl < 0)
		return jl;
	rc = scan_dir(&c, "tmp", ".job");
	if (rc == 0)
		rc = scan_dir(&c, "tmp", ".manifest");
	if (rc == 0)
		rc = scan_dir(&c, "tmp", ".ckpt");
	if (rc == 0)
		rc = scan_dir(&c, "packs", "");
	close(jl);
	if (out)
		*out = c.res;
	return rc;
}

int dw_backup_recover(dw_backup_repo *r, dw_backup_recover_fn fn, void *arg,
		      dw_backup_recover_result *out)
{
	int lock, rc;

	if (!r)
		return DW_EUSAGE;
	lock = dw__repo_lock(r, "lock", false, false);
	if (lock < 0)
		return lock;
	rc = dw__recover(r, false, fn, arg, out);
	close(lock);
	return rc;
}
