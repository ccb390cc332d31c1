// SPDX-License-Identifier: MIT
/*
 * The admin token file: a random bearer token that admin endpoints require.
 *
 * First start: 32 bytes from getrandom(2), hex-encoded, are written to a temporary file created
 * 0600 next to the target, fsync'ed, linked into place with link(2) (which, unlike rename, fails
 * if the name exists) and the directory fsync'ed. So a crash leaves either no token file or a
 * whole one, never a torn one that would lock the operator out, and two daemons starting at once
 * on one data directory end up with the same token: the loser of the link reads the winner's.
 * Later starts read it back. A file readable by group or others
 * is refused: the token gives write access to the node's limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dwscale/core.h"
#include "server/server.h"

#define TOKEN_RANDOM_BYTES 32

static int fsync_dir_of(const char *path)
{
	char tmp[4096];
	int fd, rc = 0;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int create_token(const char *path, char *out, size_t cap, size_t *len, char *err,
			size_t errlen)
{
	unsigned char rnd[TOKEN_RANDOM_BYTES];
	char hex[2 * TOKEN_RANDOM_BYTES + 2], tmp[4096];
	ssize_t got = 0;
	int fd = -1, rc;

	while (got < (ssize_t)sizeof(rnd)) {
		ssize_t r = getrandom(rnd + got, sizeof(rnd) - (size_t)got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			snprintf(err, errlen, "cannot get random bytes: %s", dw_strerror(rc));
			return rc;
		}
		got += r;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	hex[2 * sizeof(rnd)] = '\n';
	hex[2 * sizeof(rnd) + 1] = '\0';
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "admin token path is too long");
		return -ENAMETOOLONG;
	}
	unlink(tmp); /* only a crashed earlier process with this pid could have left it */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, dw_strerror(rc));
		return rc;
	}
	errno = 0;
	if (write(fd, hex, 2 * sizeof(rnd) + 1) != (ssize_t)(2 * sizeof(rnd) + 1) ||
	    fsync(fd) < 0) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot write %s: %s", tmp, dw_strerror(rc));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (link(tmp, path) < 0) {
		rc = -errno;
		if (rc != -EEXIST)
			snprintf(err, errlen, "cannot link %s to %s: %s", tmp, path,
				 dw_strerror(rc));
		goto fail;
	}
	unlink(tmp);
	rc = fsync_dir_of(path);
	if (rc < 0) {
		snprintf(err, errlen, "cannot sync the directory of %s: %s", path, dw_strerror(rc));
		return rc;
	}
	if (cap < 2 * sizeof(rnd) + 1)
		return -ENOSPC;
	memcpy(out, hex, 2 * sizeof(rnd));
	out[2 * sizeof(rnd)] = '\0';
	*len = 2 * sizeof(rnd);
	explicit_bzero(hex, sizeof(hex));
	explicit_bzero(rnd, sizeof(rnd));
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	explicit_bzero(hex, sizeof(hex));
	explicit_bzero(rnd, sizeof(rnd));
	return rc;
}

int dw__admin_token_load(const char *path, char *out, size_t cap, size_t *len, bool *created,
			 char *err, size_t errlen)
{
	char buf[DW_SERVER_TOKEN_MAX + 2];
	struct stat st;
	ssize_t n;
	size_t l;
	int fd, rc;

	*created = false;
	*len = 0;
	if (errlen)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		rc = create_token(path, out, cap, len, err, errlen);
		if (rc == 0)
			*created = true;
		if (rc != -EEXIST)
			return rc;
		/* another process created it first: use theirs */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open admin token file %s: %s", path, dw_strerror(rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = DW_ECONFIG;
		snprintf(err, errlen, "admin token file %s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = DW_ECONFIG;
		snprintf(err, errlen,
			 "admin token file %s is readable by others (mode %03o); "
			 "run: chmod 600 %s",
			 path, (unsigned)(st.st_mode & 0777), path);
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, dw_strerror(rc));
		goto out;
	}
	buf[n] = '\0';
	l = strcspn(buf, "\r\n");
	buf[l] = '\0';
	if (l < 16 || l > DW_SERVER_TOKEN_MAX || l + 1 > cap) {
		rc = DW_ECONFIG;
		snprintf(err, errlen, "admin token file %s must hold one token of 16 to %d bytes",
			 path, DW_SERVER_TOKEN_MAX);
		goto out;
	}
	for (size_t i = 0; i < l; i++) {
		if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
			rc = DW_ECONFIG;
			snprintf(err, errlen,
				 "admin token file %s holds a character that cannot be sent in "
				 "an HTTP header",
				 path);
			goto out;
		}
	}
	memcpy(out, buf, l + 1);
	*len = l;
	rc = 0;
out:
	if (rc < 0 && err[0] == '\0')
		snprintf(err, errlen, "cannot read admin token file %s: %s", path, dw_strerror(rc));
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}
