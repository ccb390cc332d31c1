// SPDX-License-Identifier: MIT
/*
 * Ready-made dw_source implementations: a file descriptor (or a path) and a memory buffer.
 *
 * fd sources. A regular file never blocks indefinitely, so it is read with a bare read(2): one
 * syscall per call, which is what keeps dw_bbuf as fast as a plain read loop. Anything else (a
 * pipe, a socket, a terminal) can block for ever, so before each read the source polls the fd
 * together with an eventfd that the cancel hook writes: a cancel then ends a blocked read with
 * DW_ECANCELED. Polling first also makes a non-blocking fd behave like a blocking one.
 *
 * Threads and locking: read runs on one thread at a time (the stream's producer); cancel may run
 * on any thread at the same time and only writes the eventfd (and an atomic flag for regular
 * files), so no lock is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dwscale/bbuf.h"

struct fd_source {
	int fd;
	int efd; /* eventfd written by cancel; -1 for regular files */
	bool close_fd;
	_Atomic bool canceled;
};

static ssize_t fd_read(void *ctx, void *buf, size_t len)
{
	struct fd_source *s = ctx;
	ssize_t n;

	for (;;) {
		if (atomic_load_explicit(&s->canceled, memory_order_acquire))
			return DW_ECANCELED;
		if (s->efd >= 0) {
			struct pollfd p[2] = {
				{ .fd = s->fd, .events = POLLIN },
				{ .fd = s->efd, .events = POLLIN },
			};

			if (poll(p, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			if (p[1].revents)
				return DW_ECANCELED;
			/* POLLHUP/POLLERR: let read report the end or the error */
		}
		n = read(s->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && s->efd >= 0))
			continue;
		return -errno;
	}
}

static void fd_cancel(void *ctx)
{
	struct fd_source *s = ctx;
	uint64_t one = 1;

	atomic_store_explicit(&s->canceled, true, memory_order_release);
	if (s->efd >= 0) {
		/* the counter cannot overflow from repeated cancels in practice; ignore EAGAIN */
		ssize_t r = write(s->efd, &one, sizeof(one));
		(void)r;
	}
}

static void fd_close(void *ctx)
{
	struct fd_source *s = ctx;

	if (s->efd >= 0)
		close(s->efd);
	if (s->close_fd)
		close(s->fd);
	dw_free(s);
}

int dw_source_from_fd(int fd, bool close_fd, dw_source *out)
{
	struct fd_source *s = NULL;
	struct stat st;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = fd;
	s->efd = -1;
	s->close_fd = close_fd;
	atomic_init(&s->canceled, false);
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	} else {
		s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (s->efd < 0) {
			rc = -errno;
			goto out;
		}
	}
	out->read = fd_read;
	out->close = fd_close;
	out->cancel = fd_cancel;
	out->ctx = s;
out:
	if (rc < 0)
		dw_free(s);
	return rc;
}

int dw_source_from_path(const char *path, dw_source *out)
{
	int fd, rc;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = dw_source_from_fd(fd, true, out);
	if (rc < 0)
		close(fd);
	return rc;
}

struct mem_source {
	const unsigned char *data;
	size_t len, off;
	_Atomic bool canceled;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem_source *s = ctx;
	size_t n = s->len - s->off;

	if (atomic_load_explicit(&s->canceled, memory_order_acquire))
		return DW_ECANCELED;
	if (n > len)
		n = len;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (n)
		memcpy(buf, s->data + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void mem_cancel(void *ctx)
{
	struct mem_source *s = ctx;

	atomic_store_explicit(&s->canceled, true, memory_order_release);
}

static void mem_close(void *ctx)
{
	dw_free(ctx);
}

int dw_source_from_mem(const void *data, size_t len, dw_source *out)
{
	struct mem_source *s;

	memset(out, 0, sizeof(*out));
	if (!data && len)
		return DW_EUSAGE;
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->data = data;
	s->len = len;
	atomic_init(&s->canceled, false);
	out->read = mem_read;
	out->close = mem_close;
	out->cancel = mem_cancel;
	out->ctx = s;
	return 0;
}

void dw_source_close(dw_source *src)
{
	if (!src)
		return;
	if (src->close)
		src->close(src->ctx);
	memset(src, 0, sizeof(*src));
}
