// SPDX-License-Identifier: MIT
/* Small-file helpers shared by the modules that read their own files (config, token keyring). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/fileutil.h"
#include "dwscale/core.h"

int dw__read_fd_capped(int fd, size_t max, char **out, size_t *len)
{
	char *buf = dw_malloc(max + 1); /* one more byte, to see a file that is too large */
	size_t got = 0;

	*out = NULL;
	*len = 0;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r = read(fd, buf + got, max + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rc = -errno;

			explicit_bzero(buf, got); /* callers read secrets with this too */
			dw_free(buf);
			return rc;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > max) {
			explicit_bzero(buf, got);
			dw_free(buf);
			return DW_ETOOBIG;
		}
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}
