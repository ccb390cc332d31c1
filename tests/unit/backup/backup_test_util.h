/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the backup tests: temporary directories, writing files with exact metadata, and a
 * listing of a whole tree (type, mode, owner, mtime in ns, size, SHA-256 of the content, symlink
 * target, hard-link group) so that two trees can be compared the way a user would.
 */
#ifndef DW_BACKUP_TEST_UTIL_H
#define DW_BACKUP_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <openssl/evp.h>

__attribute__((unused)) static char *tu_mkdtemp(const char *tag)
{
	const char *base = getenv("DW_TEST_TMPDIR");
	char tmpl[4096], *dir;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(tmpl, sizeof(tmpl), "%s/%s-XXXXXX", base, tag);
	if (!mkdtemp(tmpl)) {
		perror(tmpl);
		abort(); /* a test without its temp dir cannot run; callers need no NULL check */
	}
	dir = strdup(tmpl);
	if (!dir)
		abort();
	return dir;
}

__attribute__((unused)) static void tu_rm_rf(const char *path)
{
	char cmd[8192];

	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", path, path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", path);
}

__attribute__((unused)) static char *tu_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (!p)
		abort();
	/* memcpy, not snprintf: gcc's -Wformat-truncation misreads the inlined arguments */
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

/* Deterministic pseudo-random bytes. */
__attribute__((unused)) static void tu_fill(uint8_t *buf, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)(x >> 3);
	}
}

/* Write a file of n bytes: random from seed, or compressible text when seed is 0. */
__attribute__((unused)) static int tu_write(const char *dir, const char *rel, size_t n,
					    uint32_t seed, mode_t mode)
{
	char *p = tu_join(dir, rel);
	uint8_t *buf = malloc(n ? n : 1);
	int fd, rc = 0;

	if (seed)
		tu_fill(buf, n, seed);
	else
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)("hello backup world\n"[i % 19]);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
		rc = -1;
	if (fd >= 0) {
		fchmod(fd, mode);
		close(fd);
	}
	free(buf);
	free(p);
	return rc;
}

__attribute__((unused)) static int tu_set_mtime(const char *dir, const char *rel, time_t sec,
						long nsec)
{
	char *p = tu_join(dir, rel);
	struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
	int rc = utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);

	free(p);
	return rc;
}

/* ---- tree listing --------------------------------------------------------------------------- */

struct tu_list {
	char **v;
	size_t n, cap;
};

__attribute__((unused)) static void tu_list_add(struct tu_list *l, const char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = strdup(s);
}

__attribute__((unused)) static void tu_list_free(struct tu_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

__attribute__((unused)) static void tu_sha_file(const char *path, char hex[65])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t buf[65536], md[32];
	unsigned int n = 0;
	int fd = open(path, O_RDONLY);
	ssize_t r;

	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	while (fd >= 0 && (r = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(c, buf, (size_t)r);
	if (fd >= 0)
		close(fd);
	EVP_DigestFinal_ex(c, md, &n);
	EVP_MD_CTX_free(c);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

struct tu_ino {
	dev_t dev;
	ino_t ino;
	char path[4096];
};

__attribute__((unused)) static int tu_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

__attribute__((unused)) static void tu_walk(const char *root, const char *rel, struct tu_list *out,
					    struct tu_ino *inos, size_t *ninos, bool with_dir_mtime)
{
	char *full = rel[0] ? tu_join(root, rel) : strdup(root);
	DIR *d = opendir(full);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		free(full);
		return;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			names = realloc(names, cap * sizeof(*names));
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), tu_name_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[4096], line[12000], extra[8300] = "";
		char *fp;
		struct stat st;

		snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
		fp = tu_join(root, path);
		lstat(fp, &st);
		if (S_ISREG(st.st_mode)) {
			char hex[65];

			tu_sha_file(fp, hex);
			snprintf(extra, sizeof(extra), "sha=%s", hex);
			if (st.st_nlink > 1) {
				size_t k;

				for (k = 0; k < *ninos; k++)
					if (inos[k].dev == st.st_dev && inos[k].ino == st.st_ino)
						break;
				if (k == *ninos) {
					inos[k].dev = st.st_dev;
					inos[k].ino = st.st_ino;
					snprintf(inos[k].path, sizeof(inos[k].path), "%s", path);
					(*ninos)++;
				}
				snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
					 " link=%s", inos[k].path);
			}
		} else if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t l = readlink(fp, t, sizeof(t) - 1);

			t[l < 0 ? 0 : l] = '\0';
			snprintf(extra, sizeof(extra), "target=%s", t);
		} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
			snprintf(extra, sizeof(extra), "rdev=%u:%u", major(st.st_rdev),
				 minor(st.st_rdev));
		}
		snprintf(line, sizeof(line),
			 "%s mode=%o uid=%u gid=%u size=%lld mtime=%lld.%09ld %s", path, st.st_mode,
			 st.st_uid, st.st_gid, S_ISREG(st.st_mode) ? (long long)st.st_size : 0LL,
			 S_ISDIR(st.st_mode) && !with_dir_mtime ? 0LL
								: (long long)st.st_mtim.tv_sec,
			 S_ISDIR(st.st_mode) && !with_dir_mtime ? 0L : st.st_mtim.tv_nsec, extra);
		tu_list_add(out, line);
		if (S_ISDIR(st.st_mode))
			tu_walk(root, path, out, inos, ninos, with_dir_mtime);
		free(fp);
		free(names[i]);
	}
	free(names);
	free(full);
}

/* The listing of a whole tree (the root's own metadata excluded). */
__attribute__((unused)) static void tu_tree(const char *root, struct tu_list *out)
{
	static struct tu_ino inos[1024];
	size_t ninos = 0;

	tu_walk(root, "", out, inos, &ninos, true);
}

/* Compare two trees; prints the first difference. Returns 0 if identical. */
__attribute__((unused)) static int tu_tree_diff(const struct tu_list *a, const struct tu_list *b)
{
	size_t n = a->n < b->n ? a->n : b->n;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(a->v[i], b->v[i]) != 0) {
			fprintf(stderr, "tree differs:\n  want %s\n  got  %s\n", a->v[i], b->v[i]);
			return -1;
		}
	}
	if (a->n != b->n) {
		fprintf(stderr, "tree differs: %zu vs %zu entries (next: %s)\n", a->n, b->n,
			a->n > n ? a->v[n] : b->v[n]);
		return -1;
	}
	return 0;
}

__attribute__((unused)) static int tu_diff_dirs(const char *x, const char *y)
{
	struct tu_list a = { 0 }, b = { 0 };
	int rc;

	tu_tree(x, &a);
	tu_tree(y, &b);
	rc = tu_tree_diff(&a, &b);
	tu_list_free(&a);
	tu_list_free(&b);
	return rc;
}

#endif
