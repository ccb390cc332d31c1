// SPDX-License-Identifier: MIT
/*
 * Checkpoints of a running create, so that a create killed part-way can be resumed instead of
 * started over.
 *
 *   REPO/tmp/<id>.ckpt   (all integers little-endian; strings are u16 length + bytes)
 *   +----------+----+--------+------+--------+------+---------+---------+----------+----------+
 *   | DWCKPT01 | id | source | type | parent | mlen | msha256 | pack_no | pack_off | pack_bytes
 *   +----------+----+--------+------+--------+------+---------+---------+----------+----------+
 *   | u8 pack_open | last path | 13 x u64 counters | u64 blocks_new | u64 blocks_reused |
 *   | u64 nhl | nhl x (u64 dev, u64 ino, path) | sha256 of every byte before it            |
 *   +-----------------------------------------------------------------------------------------+
 *
 * Invariants (engine.c writes, dw_backup_create reads):
 *   1. A checkpoint is taken only between two entries: the manifest then ends with a whole
 *      entry (a file's E record, or a D, L, K or S record), named by "last". The walk order is
 *      total (dw__path_cmp), so "every entry at or before last is recorded" is exact.
 *   2. Before the file is replaced, the manifest prefix (mlen bytes, hashing to msha), every
 *      closed pack, the open pack up to pack_off and the pack directory are fsynced (when the
 *      create fsyncs at all). So everything the checkpoint names is on disk when it is.
 *   3. The file is replaced by rename, so a reader sees the previous checkpoint or the new one,
 *      never a mix; its own SHA-256 rejects a torn or damaged file.
 *   4. A checkpoint never makes a backup visible: only the manifest's rename into backups/ does.
 * The counters are the reader's at the moment it published the last entry, so a resumed create
 * ends with the same totals as an uninterrupted one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_int.h"

#define CK_MAGIC  "DWCKPT01"
#define CK_SEALED "DWCKPTE1" /* a sealed checkpoint: magic | nonce | ciphertext | tag */
#define CK_FIXED  (8 + 6 * 2 + 1 + 8 + DW__SHA_LEN + 4 + 8 + 8 + 1 + 16 * 8 + 8 + DW__SHA_LEN)

static size_t ckpt_aad(uint8_t aad[96], const char *id)
{
	size_t n = strlen(id);

	memcpy(aad, "DWCKPT1", 7);
	aad[7] = (uint8_t)n;
	memcpy(aad + 8, id, n);
	return 8 + n;
}

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool bad;
};

static void put(struct buf *b, const void *v, size_t n)
{
	if (b->bad || b->len + n > b->cap) {
		b->bad = true;
		return;
	}
	memcpy(b->p + b->len, v, n);
	b->len += n;
}

static void put_u64(struct buf *b, uint64_t v, size_t n)
{
	uint8_t x[8];

	for (size_t i = 0; i < n; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	put(b, x, n);
}

static void put_str(struct buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n > 0xffff) {
		b->bad = true;
		return;
	}
	put_u64(b, n, 2);
	put(b, s, n);
}

static void get(struct buf *b, void *v, size_t n)
{
	if (b->bad || b->len + n > b->cap) {
		b->bad = true;
		memset(v, 0, n);
		return;
	}
	memcpy(v, b->p + b->len, n);
	b->len += n;
}

static uint64_t get_u64(struct buf *b, size_t n)
{
	uint8_t x[8];
	uint64_t v = 0;

	get(b, x, n);
	for (size_t i = n; i-- > 0;)
		v = v << 8 | x[i];
	return v;
}

/* A string into out (cap with the NUL), no embedded NUL. */
static void get_str(struct buf *b, char *out, size_t cap)
{
	size_t n = (size_t)get_u64(b, 2);

	if (b->bad || n >= cap || b->len + n > b->cap) {
		b->bad = true;
		out[0] = '\0';
		return;
	}
	memcpy(out, b->p + b->len, n);
	out[n] = '\0';
	if (strlen(out) != n)
		b->bad = true;
	b->len += n;
}

static void stats_fields(dw_backup_stats *s, uint64_t *v[13])
{
	uint64_t *f[13] = { &s->files,	     &s->dirs,	     &s->symlinks,	&s->hardlinks,
			    &s->specials,    &s->unreadable, &s->files_changed, &s->files_unchanged,
			    &s->bytes_total, &s->bytes_read, &s->blocks_new,	&s->blocks_reused,
			    &s->bytes_stored };

	memcpy(v, f, sizeof(f));
}

int dw__ckpt_write(dw_backup_repo *r, const struct dw__ckpt *ck, bool do_fsync)
{
	struct buf b = { 0 };
	dw_backup_stats st = ck->rs;
	uint64_t *sf[13];
	uint8_t sha[DW__SHA_LEN];
	char rel[128], rel2[128];
	size_t need = CK_FIXED + strlen(ck->source) + strlen(ck->last) + 3 * DW_BACKUP_ID_MAX;
	int fd = -1, rc;

	for (uint64_t i = 0; i < ck->nhl; i++)
		need += 18 + strlen(ck->hl[i].path);
	if (need > DW__CKPT_FILE_MAX)
		return DW_ETOOBIG;
	b.cap = need;
	b.p = dw_malloc(need);
	if (!b.p)
		return -ENOMEM;
	put(&b, CK_MAGIC, 8);
	put_str(&b, ck->id);
	put_str(&b, ck->source);
	put_u64(&b, ck->type, 1);
	put_str(&b, ck->parent);
	put_u64(&b, ck->mlen, 8);
	put(&b, ck->msha, DW__SHA_LEN);
	put_u64(&b, ck->pack_no, 4);
	put_u64(&b, ck->pack_off, 8);
	put_u64(&b, ck->pack_bytes, 8);
	put_u64(&b, ck->pack_open, 1);
	put_str(&b, ck->last);
	stats_fields(&st, sf);
	for (int i = 0; i < 13; i++)
		put_u64(&b, *sf[i], 8);
	put_u64(&b, ck->blocks_new, 8);
	put_u64(&b, ck->blocks_reused, 8);
	put_u64(&b, ck->nhl, 8);
	for (uint64_t i = 0; i < ck->nhl; i++) {
		put_u64(&b, ck->hl[i].dev, 8);
		put_u64(&b, ck->hl[i].ino, 8);
		put_str(&b, ck->hl[i].path);
	}
	if (b.bad) {
		rc = DW_ETOOBIG;
		goto out;
	}
	rc = dw__sha256(b.p, b.len, sha);
	if (rc < 0)
		goto out;
	put(&b, sha, DW__SHA_LEN);
	if (r->crypt) {
		/* an encrypted repository: the paths in it are sealed like the manifests */
		uint8_t *sealed = dw_malloc(8 + b.len + DW__CRYPT_OVERHEAD), aad[96];
		size_t al = ckpt_aad(aad, ck->id);

		if (!sealed) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(sealed, CK_SEALED, 8);
		rc = dw__seal(r->crypt, aad, al, b.p, b.len, sealed + 8);
		dw_free(b.p);
		b.p = sealed;
		b.len += 8 + DW__CRYPT_OVERHEAD;
		if (rc < 0)
			goto out;
	}
	if (snprintf(rel, sizeof(rel), "tmp/%s.ckpt.new", ck->id) >= (int)sizeof(rel) ||
	    snprintf(rel2, sizeof(rel2), "tmp/%s.ckpt", ck->id) >= (int)sizeof(rel2)) {
		rc = DW_EBADKEY;
		goto out;
	}
	fd = openat(r->dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = dw__write_all(fd, b.p, b.len);
	if (rc < 0)
		goto out;
	if (do_fsync && fsync(fd) < 0) {
		rc = -errno;
		goto out;
	}
	if (renameat(r->dirfd, rel, r->dirfd, rel2) < 0) {
		rc = -errno;
		goto out;
	}
	if (do_fsync)
		rc = dw__fsync_dir_at(r->dirfd, "tmp");
out:
	if (fd >= 0)
		close(fd);
	dw_free(b.p);
	return rc;
}

void dw__ckpt_free(struct dw__ckpt *ck)
{
	for (uint64_t i = 0; ck->hl && i < ck->nhl; i++)
		dw_free(ck->hl[i].path);
	dw_free(ck->hl);
	ck->hl = NULL;
	ck->nhl = 0;
}

int dw__ckpt_parse(const uint8_t *p, size_t len, struct dw__ckpt *ck)
{
	struct buf b = { .p = (uint8_t *)p, .cap = len };
	uint8_t sha[DW__SHA_LEN];
	char magic[8];
	uint64_t *sf[13];
	uint64_t nhl;
	int rc;

	memset(ck, 0, sizeof(*ck));
	if (len < DW__SHA_LEN + 8)
		return DW_ECORRUPT;
	rc = dw__sha256(p, len - DW__SHA_LEN, sha);
	if (rc < 0)
		return rc;
	if (memcmp(sha, p + len - DW__SHA_LEN, DW__SHA_LEN) != 0)
		return DW_ECORRUPT;
	b.cap = len - DW__SHA_LEN;
	get(&b, magic, 8);
	if (b.bad || memcmp(magic, CK_MAGIC, 8) != 0)
		return DW_ECORRUPT;
	get_str(&b, ck->id, sizeof(ck->id));
	get_str(&b, ck->source, sizeof(ck->source));
	ck->type = (uint8_t)get_u64(&b, 1);
	get_str(&b, ck->parent, sizeof(ck->parent));
	ck->mlen = get_u64(&b, 8);
	get(&b, ck->msha, DW__SHA_LEN);
	ck->pack_no = (uint32_t)get_u64(&b, 4);
	ck->pack_off = get_u64(&b, 8);
	ck->pack_bytes = get_u64(&b, 8);
	ck->pack_open = get_u64(&b, 1) != 0;
	get_str(&b, ck->last, sizeof(ck->last));
	stats_fields(&ck->rs, sf);
	for (int i = 0; i < 13; i++)
		*sf[i] = get_u64(&b, 8);
	ck->blocks_new = get_u64(&b, 8);
	ck->blocks_reused = get_u64(&b, 8);
	nhl = get_u64(&b, 8);
	if (b.bad || !dw__id_valid(ck->id) || ck->source[0] != '/' || ck->last[0] == '\0' ||
	    (ck->type != DW_BACKUP_FULL && ck->type != DW_BACKUP_INCREMENTAL) ||
	    (ck->type == DW_BACKUP_FULL) != (ck->parent[0] == '\0') ||
	    (ck->parent[0] && !dw__id_valid(ck->parent)) || ck->pack_no > DW__PACK_MAX_NO ||
	    nhl > DW_BACKUP_HARDLINK_MAX || nhl > (b.cap - b.len) / 18)
		return DW_ECORRUPT;
	if (nhl) {
		ck->hl = dw_calloc(nhl, sizeof(*ck->hl));
		if (!ck->hl)
			return -ENOMEM;
	}
	for (uint64_t i = 0; i < nhl; i++) {
		char *path = dw_malloc(DW__PATH_MAX);

		if (!path) {
			rc = -ENOMEM;
			goto fail;
		}
		ck->hl[i].dev = get_u64(&b, 8);
		ck->hl[i].ino = get_u64(&b, 8);
		ck->hl[i].path = path;
		ck->nhl = i + 1;
		get_str(&b, path, DW__PATH_MAX);
		if (b.bad || path[0] == '\0') {
			rc = DW_ECORRUPT;
			goto fail;
		}
	}
	if (b.len != b.cap) {
		rc = DW_ECORRUPT;
		goto fail;
	}
	return 0;
fail:
	dw__ckpt_free(ck);
	return rc;
}

int dw__ckpt_read(dw_backup_repo *r, const char *id, struct dw__ckpt *ck)
{
	char rel[128];
	struct stat st;
	uint8_t *p = NULL;
	int fd, rc;

	memset(ck, 0, sizeof(*ck));
	if (snprintf(rel, sizeof(rel), "tmp/%s.ckpt", id) >= (int)sizeof(rel))
		return DW_EBADKEY;
	fd = openat(r->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? DW_ENOTFOUND : -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size < 8 || (uint64_t)st.st_size > DW__CKPT_FILE_MAX) {
		rc = DW_ECORRUPT;
		goto out;
	}
	p = dw_malloc((size_t)st.st_size);
	if (!p) {
		rc = -ENOMEM;
		goto out;
	}
	rc = dw__pread_all(fd, p, (size_t)st.st_size, 0);
	if (rc < 0)
		goto out;
	if (r->crypt) {
		uint8_t aad[96];
		size_t al = ckpt_aad(aad, id), n = (size_t)st.st_size;

		if (n < 8 + DW__CRYPT_OVERHEAD || memcmp(p, CK_SEALED, 8) != 0) {
			rc = DW_ECORRUPT;
			goto out;
		}
		uint8_t *plain = dw_malloc(n - 8 - DW__CRYPT_OVERHEAD + 1);

		if (!plain) {
			rc = -ENOMEM;
			goto out;
		}
		rc = dw__unseal(r->crypt, aad, al, p + 8, n - 8, plain);
		if (rc == 0)
			rc = dw__ckpt_parse(plain, n - 8 - DW__CRYPT_OVERHEAD, ck);
		dw_free(plain);
	} else {
		rc = dw__ckpt_parse(p, (size_t)st.st_size, ck);
	}
	if (rc == 0 && strcmp(ck->id, id) != 0) {
		dw__ckpt_free(ck);
		rc = DW_ECORRUPT;
	}
out:
	dw_free(p);
	close(fd);
	return rc;
}

int dw_backup_partials(dw_backup_repo *r, dw_backup_partial_fn fn, void *arg)
{
	struct dw__ckpt *ck = NULL;
	dw_backup_partial *p = NULL;
	DIR *d = NULL;
	struct dirent *de;
	int lock, jl = -1, fd, rc = 0;

	if (!r || !fn)
		return DW_EUSAGE;
	lock = dw__repo_lock(r, "lock", false, false);
	if (lock < 0)
		return lock;
	jl = dw__repo_lock(r, "jobs.lock", true, false);
	if (jl < 0) {
		rc = jl;
		goto out;
	}
	ck = dw_malloc(sizeof(*ck));
	p = dw_malloc(sizeof(*p));
	fd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!ck || !p || fd < 0) {
		rc = fd < 0 ? -errno : -ENOMEM;
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
		char id[DW_BACKUP_ID_MAX], rel[128];
		size_t n = strlen(de->d_name);
		const size_t sl = strlen(".ckpt");
		int jfd;
		bool alive = false;

		if (n <= sl || n - sl >= sizeof(id) || strcmp(de->d_name + n - sl, ".ckpt"))
			continue;
		memcpy(id, de->d_name, n - sl);
		id[n - sl] = '\0';
		if (!dw__id_valid(id))
			continue;
		snprintf(rel, sizeof(rel), "tmp/%s.job", id);
		jfd = openat(r->dirfd, rel, O_RDWR | O_CLOEXEC);
		if (jfd >= 0) {
			alive = flock(jfd, LOCK_EX | LOCK_NB) < 0;
			close(jfd);
		}
		snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
		if (alive || faccessat(r->dirfd, rel, F_OK, 0) == 0)
			continue;
		rc = dw__ckpt_read(r, id, ck);
		if (rc == -ENOMEM)
			break;
		if (rc < 0) {
			rc = 0;
			continue;
		}
		memset(p, 0, sizeof(*p));
		snprintf(p->id, sizeof(p->id), "%s", ck->id);
		snprintf(p->source, sizeof(p->source), "%s", ck->source);
		snprintf(p->parent, sizeof(p->parent), "%s", ck->parent);
		p->type = ck->type;
		p->stats = ck->rs;
		p->stats.blocks_new = ck->blocks_new;
		p->stats.blocks_reused = ck->blocks_reused;
		p->stats.bytes_stored = ck->pack_bytes + ck->mlen;
		dw__ckpt_free(ck);
		fn(arg, p);
	}
out:
	if (d)
		closedir(d);
	dw_free(ck);
	dw_free(p);
	if (jl >= 0)
		close(jl);
	close(lock);
	return rc;
}
