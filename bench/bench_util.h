/* SPDX-License-Identifier: MIT */
/*
 * What the benchmark programs share: a monotonic clock in seconds, peak RSS (VmHWM), medians,
 * sizes like 4G, and a test file of pseudo-random bytes made once (temporary name, fsync, rename:
 * a file of the right size is a whole one).
 */
#ifndef DW_BENCH_UTIL_H
#define DW_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dwscale/core.h"

__attribute__((unused)) static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((unused)) static long vm_hwm_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

__attribute__((unused)) static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

__attribute__((unused)) static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

__attribute__((unused)) static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		break;
	}
	if (*end || v == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

__attribute__((unused)) static double median(const double *v, int n)
{
	double *c;
	double m;

	if (n <= 0)
		return 0;
	c = dw_malloc((size_t)n * sizeof(*c));
	if (!c)
		return 0;
	memcpy(c, v, (size_t)n * sizeof(*c));
	qsort(c, (size_t)n, sizeof(*c), cmp_double);
	m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	dw_free(c);
	return m;
}

__attribute__((unused)) static int make_file(const char *path, uint64_t size, mode_t mode)
{
	struct stat st;
	uint64_t x = 0x243f6a8885a308d3ULL, done = 0;
	size_t blk = 1u << 20;
	uint64_t *buf;
	char tmp[4200];
	int fd, rc = 0, n;

	if (stat(path, &st) == 0 && (uint64_t)st.st_size == size)
		return 0;
	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	buf = malloc(blk);
	if (!buf)
		return -ENOMEM;
	fprintf(stderr, "creating %s (%llu bytes)\n", path, (unsigned long long)size);
	fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	while (done < size) {
		size_t len = size - done < blk ? (size_t)(size - done) : blk;

		for (size_t i = 0; i < blk / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		rc = write_all(fd, buf, len);
		if (rc < 0)
			goto out;
		done += len;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		rc = -errno;
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		rc = -errno;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(buf);
	return rc;
}

#endif
