/* SPDX-License-Identifier: MIT */
/* Small-file helpers shared inside the core (see fileutil.c). */
#ifndef DW_CORE_FILEUTIL_H
#define DW_CORE_FILEUTIL_H

#include <stddef.h>

/*
 * Read fd to its end into a dw_malloc'd buffer, NUL-terminated past *len. Returns 0, -errno from
 * read(2), -ENOMEM, or DW_ETOOBIG if the file holds more than max bytes (nothing returned then).
 */
int dw__read_fd_capped(int fd, size_t max, char **out, size_t *len);

#endif
