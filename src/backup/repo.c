// SPDX-License-Identifier: MIT
/*
 * Repository layout, lock and the list of backups.
 *
 *   REPO/config                 "dwscale-repository 1", block_size, pack_size (text)
 *   REPO/lock                   flock(): shared by create/restore/list/check, exclusive by prune
 *   REPO/jobs.lock              flock(): held exclusive while a job file is created or recovered
 *   REPO/backups/<id>.manifest  a complete backup (appears by rename only)
 *   REPO/packs/<id>/<n>.pack    the data of backup <id>
 *   REPO/tmp/<id>.job           a running create; its process holds flock(LOCK_EX) on it
 *   REPO/tmp/<id>.manifest      the manifest being written
 *   REPO/locks/<hash>.lock      per-source lock: one create per source at a time
 *
 * flock() locks die with their process, so a killed create never leaves a stale lock: recovery
 * knows a job is dead when it can lock its job file. The config and every manifest are made
 * visible by write-temp + fsync + rename + fsync(dir).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "backup/backup_int.h"

#define CONFIG_MAGIC "dwscale-repository"
#define CONFIG_V_ENC 2		/* an encrypted repository: older builds refuse it (DW_EVERSION) */
#define BLIST_MAX    (1u << 20) /* backups listed at most */

static const char *const subdirs[] = { "backups", "packs", "tmp", "locks" };

const char *dw_backup_type_name(dw_backup_type t)
{
	switch (t) {
	case DW_BACKUP_FULL:
		return "full";
	case DW_BACKUP_INCREMENTAL:
		return "incremental";
	default:
		return "auto";
	}
}

void dw_backup_repo_config_default(dw_backup_repo_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->block_size = DW_BACKUP_BLOCK_DEFAULT;
	cfg->pack_size = DW_BACKUP_PACK_DEFAULT;
}

static bool dir_is_empty(int fd)
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

int dw_backup_repo_init(const char *path, const dw_backup_repo_config *cfg)
{
	dw_backup_repo_config c;
	char text[256];
	int dfd = -1, fd = -1, rc, n;

	if (cfg)
		c = *cfg;
	else
		dw_backup_repo_config_default(&c);
	if (!path || !*path || c.block_size < DW_BACKUP_BLOCK_MIN ||
	    c.block_size > DW_BACKUP_BLOCK_MAX || c.pack_size < c.block_size)
		return DW_ECONFIG;
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (!dir_is_empty(dfd)) {
		rc = DW_EEXIST;
		goto out;
	}
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		if (mkdirat(dfd, subdirs[i], 0755) < 0) {
			rc = -errno;
			goto out;
		}
	}
	if (c.key) {
		char kcv[2 * DW__SHA_LEN + 1];

		rc = dw__kcv(c.key, kcv);
		if (rc < 0)
			goto out;
		n = snprintf(text, sizeof(text),
			     "%s %d\nblock_size %u\npack_size %u\nencryption aes-256-gcm\n"
			     "key_check %s\n",
			     CONFIG_MAGIC, CONFIG_V_ENC, c.block_size, c.pack_size, kcv);
	} else {
		n = snprintf(text, sizeof(text), "%s %d\nblock_size %u\npack_size %u\n",
			     CONFIG_MAGIC, DW__REPO_VERSION, c.block_size, c.pack_size);
	}
	if (n < 0 || n >= (int)sizeof(text)) {
		rc = DW_ETOOBIG;
		goto out;
	}
	fd = openat(dfd, "config.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = dw__write_all(fd, text, (size_t)n);
	if (rc < 0)
		goto out;
	if (fsync(fd) < 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	fd = openat(dfd, "lock", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	/* the config appears last: a repository without it is not one */
	if (renameat(dfd, "config.tmp", dfd, "config") < 0) {
		rc = -errno;
		goto out;
	}
	if (fsync(dfd) < 0) {
		rc = -errno;
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return rc;
}

int dw_backup_repo_open(const char *path, dw_backup_repo **out)
{
	return dw_backup_repo_open_key(path, NULL, out);
}

bool dw_backup_repo_encrypted(const dw_backup_repo *r)
{
	return r->crypt != NULL;
}

/* The encryption lines of a version-2 config: the key must match its check value. */
static int config_key(dw_backup_repo *r, const char *text, const uint8_t *key)
{
	const char *e = strstr(text, "\nencryption aes-256-gcm\n");
	const char *k = strstr(text, "\nkey_check ");
	char want[2 * DW__SHA_LEN + 1], got[2 * DW__SHA_LEN + 1];
	int rc;

	if (!e || !k || strlen(k + 11) < 2 * DW__SHA_LEN)
		return DW_ECORRUPT;
	memcpy(want, k + 11, 2 * DW__SHA_LEN);
	want[2 * DW__SHA_LEN] = '\0';
	if (!key)
		return DW_EAUTH; /* encrypted: a key is needed */
	rc = dw__kcv(key, got);
	if (rc < 0)
		return rc;
	if (CRYPTO_memcmp(want, got, sizeof(want)) != 0)
		return DW_EAUTH; /* not this repository's key */
	r->crypt = dw_malloc(sizeof(*r->crypt));
	if (!r->crypt)
		return -ENOMEM;
	memcpy(r->crypt->key, key, DW_BACKUP_KEY_LEN);
	return 0;
}

int dw_backup_repo_open_key(const char *path, const uint8_t *key, dw_backup_repo **out)
{
	dw_backup_repo *r = NULL;
	char text[256];
	char magic[32];
	int ver = 0, fd = -1, rc;
	unsigned bs = 0, ps = 0;
	ssize_t n;

	*out = NULL;
	if (!path || !*path)
		return DW_EUSAGE;
	r = dw_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dirfd = -1;
	r->path = dw_strdup(path);
	if (!r->path) {
		rc = -ENOMEM;
		goto fail;
	}
	r->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dirfd < 0) {
		rc = errno == ENOENT || errno == ENOTDIR ? DW_ENOTFOUND : -errno;
		goto fail;
	}
	fd = openat(r->dirfd, "config", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? DW_ENOTFOUND : -errno;
		goto fail;
	}
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0) {
		rc = -errno;
		goto fail;
	}
	text[n] = '\0';
	if (sscanf(text, "%31s %d\nblock_size %u\npack_size %u", magic, &ver, &bs, &ps) != 4 ||
	    strcmp(magic, CONFIG_MAGIC) != 0) {
		rc = strncmp(text, CONFIG_MAGIC, strlen(CONFIG_MAGIC)) ? DW_ENOTFOUND : DW_ECORRUPT;
		goto fail;
	}
	if (ver != DW__REPO_VERSION && ver != CONFIG_V_ENC) {
		rc = DW_EVERSION;
		goto fail;
	}
	if (ver == CONFIG_V_ENC) {
		rc = config_key(r, text, key);
		if (rc < 0)
			goto fail;
	}
	if (bs < DW_BACKUP_BLOCK_MIN || bs > DW_BACKUP_BLOCK_MAX || ps < bs) {
		rc = DW_ECORRUPT;
		goto fail;
	}
	r->block_size = bs;
	r->pack_size = ps;
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		struct stat st;

		if (fstatat(r->dirfd, subdirs[i], &st, 0) < 0 || !S_ISDIR(st.st_mode)) {
			rc = DW_ECORRUPT;
			goto fail;
		}
	}
	close(fd);
	*out = r;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	dw_backup_repo_close(r);
	return rc;
}

void dw_backup_repo_close(dw_backup_repo *r)
{
	if (!r)
		return;
	if (r->dirfd >= 0)
		close(r->dirfd);
	if (r->crypt)
		OPENSSL_cleanse(r->crypt->key, sizeof(r->crypt->key));
	dw_free(r->crypt);
	dw_free(r->path);
	dw_free(r);
}

const char *dw_backup_repo_path(const dw_backup_repo *r)
{
	return r->path;
}

/*
 * Each operation opens its own descriptor of the lock file: flock() locks belong to the open
 * file description, so two threads of one process then lock independently, as two processes do.
 */
int dw__repo_lock(dw_backup_repo *r, const char *rel, bool exclusive, bool nb)
{
	int fd = openat(r->dirfd, rel, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (nb ? LOCK_NB : 0)) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		return e == EWOULDBLOCK ? DW_ELOCKED : -e;
	}
	return fd;
}

int dw__backup_bytes(dw_backup_repo *r, const char *id, uint64_t *bytes)
{
	char rel[128];
	struct stat st;

	*bytes = 0;
	if (snprintf(rel, sizeof(rel), "backups/%s.manifest", id) >= (int)sizeof(rel))
		return DW_EBADKEY;
	if (fstatat(r->dirfd, rel, &st, 0) == 0)
		*bytes += (uint64_t)st.st_size;
	snprintf(rel, sizeof(rel), "packs/%s", id);
	return dw__du_at(r->dirfd, rel, bytes);
}

static int info_from_manifest(dw_backup_repo *r, const char *id, dw_backup_info *b)
{
	struct dw__mheader h;
	struct dw__mtrailer t;
	char rel[128];
	int fd, rc;

	snprintf(rel, sizeof(rel), "backups/%s.manifest", id);
	fd = openat(r->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? DW_ENOTFOUND : -errno;
	rc = dw__manifest_summary2(fd, r->crypt, id, &h, &t);
	close(fd);
	if (rc < 0)
		return rc;
	if (strcmp(h.chain[h.chain_len - 1], id) != 0) {
		dw__mheader_free(&h);
		return DW_ECORRUPT;
	}
	memset(b, 0, sizeof(*b));
	snprintf(b->id, sizeof(b->id), "%s", id);
	snprintf(b->chain, sizeof(b->chain), "%s", h.chain[0]);
	if (h.chain_len > 1)
		snprintf(b->parent, sizeof(b->parent), "%s", h.chain[h.chain_len - 2]);
	b->type = h.type;
	b->depth = h.chain_len - 1u;
	b->created_ns = h.created_ns;
	b->finished_ns = t.finished_ns;
	snprintf(b->source, sizeof(b->source), "%s", h.source);
	b->stats = t.stats;
	dw__mheader_free(&h);
	return dw__backup_bytes(r, id, &b->repo_bytes);
}

static int info_cmp(const void *a, const void *b)
{
	const dw_backup_info *x = a, *y = b;

	if (x->created_ns != y->created_ns)
		return x->created_ns < y->created_ns ? -1 : 1;
	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return strcmp(x->id, y->id);
}

int dw__blist_load(dw_backup_repo *r, struct dw__blist *l)
{
	int fd = openat(r->dirfd, "backups", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t cap = 0;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	l->v = NULL;
	l->n = 0;
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
		const size_t sl = strlen(".manifest");

		if (n <= sl || n - sl >= sizeof(id) || strcmp(de->d_name + n - sl, ".manifest"))
			continue;
		memcpy(id, de->d_name, n - sl);
		id[n - sl] = '\0';
		if (!dw__id_valid(id))
			continue;
		if (l->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			dw_backup_info *nv;

			if (nc > BLIST_MAX) {
				rc = DW_ETOOBIG;
				break;
			}
			nv = dw_realloc(l->v, nc * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			l->v = nv;
			cap = nc;
		}
		rc = info_from_manifest(r, id, &l->v[l->n]);
		if (rc == DW_ENOTFOUND) { /* removed by a concurrent prune */
			rc = 0;
			continue;
		}
		if (rc == DW_ECORRUPT || rc == DW_EVERSION) {
			/* listed by nobody; dw_backup_check reports it */
			dw_log(DW_LOG_WARN, "backup", "bad_manifest", "id=%s err=%s", id,
			       dw_err_name(rc));
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		l->n++;
	}
	closedir(d);
	if (rc < 0) {
		dw__blist_free(l);
		return rc;
	}
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), info_cmp);
	return 0;
}

void dw__blist_free(struct dw__blist *l)
{
	dw_free(l->v);
	l->v = NULL;
	l->n = 0;
}

const dw_backup_info *dw__blist_latest(const struct dw__blist *l, const char *source)
{
	for (size_t i = l->n; i-- > 0;) {
		if (!source || strcmp(l->v[i].source, source) == 0)
			return &l->v[i];
	}
	return NULL;
}

const dw_backup_info *dw__blist_find(const struct dw__blist *l, const char *id)
{
	if (strcmp(id, "latest") == 0)
		return dw__blist_latest(l, NULL);
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].id, id) == 0)
			return &l->v[i];
	}
	return NULL;
}

int dw_backup_list(dw_backup_repo *r, dw_backup_list_fn fn, void *arg)
{
	struct dw__blist l;
	int rc = dw__blist_load(r, &l);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < l.n; i++)
		fn(arg, &l.v[i]);
	dw__blist_free(&l);
	return 0;
}

int dw_backup_stat(dw_backup_repo *r, const char *id, dw_backup_info *out)
{
	struct dw__blist l;
	const dw_backup_info *b;
	int rc;

	if (strcmp(id, "latest") != 0 && !dw__id_valid(id))
		return DW_ENOTFOUND;
	rc = dw__blist_load(r, &l);
	if (rc < 0)
		return rc;
	b = dw__blist_find(&l, id);
	if (b)
		*out = *b;
	dw__blist_free(&l);
	return b ? 0 : DW_ENOTFOUND;
}
