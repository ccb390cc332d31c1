// SPDX-License-Identifier: MIT
/*
 * Small helpers of the backup subsystem: SHA-256, full reads and writes, directory fsync, backup
 * ids, the manifest path order, and recursive removal with byte counts (so retention and
 * recovery report exactly what they freed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backup/backup_int.h"

int dw__sha256(const void *data, size_t len, uint8_t out[DW__SHA_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != DW__SHA_LEN)
		return DW_EBACKEND;
	return 0;
}

void dw__hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int dw__write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int dw__pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return DW_ECORRUPT; /* short file */
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int dw__fsync_dir_at(int dirfd, const char *rel)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

bool dw__id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= DW_BACKUP_ID_MAX || id[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

void dw__id_new(uint64_t wall_ns, char out[DW_BACKUP_ID_MAX])
{
	time_t t = (time_t)(wall_ns / DW_NS_PER_SEC);
	struct tm tm;
	uint32_t rnd = 0;

	gmtime_r(&t, &tm);
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint32_t)(wall_ns ^ (uint64_t)getpid() << 16);
	snprintf(out, DW_BACKUP_ID_MAX, "%04d%02d%02dT%02d%02d%02dZ-%08x", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd);
}

/*
 * Component-wise comparison, so that a directory sorts right before everything inside it and
 * "a/b" < "a.b" (the walk visits a's children before a.b). "." (the root) is first.
 */
int dw__path_cmp(const char *a, const char *b)
{
	bool ra = strcmp(a, ".") == 0, rb = strcmp(b, ".") == 0;

	if (ra || rb)
		return ra && rb ? 0 : (ra ? -1 : 1);
	for (;;) {
		size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
		size_t m = la < lb ? la : lb;
		int c = memcmp(a, b, m);

		if (c != 0)
			return c < 0 ? -1 : 1;
		if (la != lb)
			return la < lb ? -1 : 1;
		a += la;
		b += lb;
		if (*a == '\0' || *b == '\0')
			return *a == *b ? 0 : (*a == '\0' ? -1 : 1);
		a++;
		b++;
	}
}

static int rm_tree_fd(int dfd, uint64_t *bytes, int depth)
{
	DIR *d;
	struct dirent *de;
	int rc = 0;
	int fd2 = dup(dfd);

	if (fd2 < 0)
		return -errno;
	d = fdopendir(fd2);
	if (!d) {
		rc = -errno;
		close(fd2);
		return rc;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub;

			if (depth > 64) {
				rc = -ELOOP;
				break;
			}
			sub = openat(dfd, de->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = -errno;
				break;
			}
			rc = rm_tree_fd(sub, bytes, depth + 1);
			close(sub);
			if (rc < 0)
				break;
			if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0) {
				rc = -errno;
				break;
			}
		} else {
			if (unlinkat(dfd, de->d_name, 0) < 0) {
				rc = -errno;
				break;
			}
			if (bytes)
				*bytes += (uint64_t)st.st_size;
		}
	}
	closedir(d);
	return rc;
}

int dw__rm_tree_at(int dirfd, const char *rel, uint64_t *bytes)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	rc = rm_tree_fd(fd, bytes, 0);
	close(fd);
	if (rc < 0)
		return rc;
	if (unlinkat(dirfd, rel, AT_REMOVEDIR) < 0)
		return -errno;
	return 0;
}

int dw__du_at(int dirfd, const char *rel, uint64_t *bytes)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			*bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}
