// SPDX-License-Identifier: MIT
/*
 * bench_bbuf: stream a large file through dw_bbuf to /dev/null, against a plain read() loop with
 * the same chunk size, in the same run; prints the throughput of each (median of N runs), the
 * ratio dwscale/plain, and the peak RSS of each run.
 *
 *   bench_bbuf FILE [--size BYTES] [--chunk BYTES] [--cap BYTES] [--runs N]
 *
 * FILE is created (pseudo-random bytes) if it is missing or not exactly --size bytes (default
 * 2 GiB), and reused otherwise: bench/bbuf.sh keeps it on the real disk and deletes it at the end.
 * It is read once to warm the page cache, so both sides measure the same thing: moving cached
 * file pages through user space, where dw_bbuf's cost (a thread hand-off per chunk) is most
 * visible. Runs alternate plain, bbuf, plain, bbuf... so drift affects both alike.
 *
 * Every run is a forked child so that its peak RSS (VmHWM) is its own; the child reports bytes,
 * seconds and VmHWM through a pipe. The bbuf child opens the stream with a private budget equal to
 * the cap, so the default budget plays no part. Exit status: 0 if the goals hold (ratio >= 0.9,
 * bbuf peak RSS <= cap + 16 MiB), 1 if not, 2 on error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "dwscale/bbuf.h"

#define RUNS_MAX 51

struct result {
	uint64_t bytes;
	double secs;
	long hwm_kib;
	int rc;
};

static int run_plain(const char *path, size_t chunk, struct result *r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	char *buf = malloc(chunk);
	double t0;
	ssize_t n;

	r->rc = 0;
	if (fd < 0 || out < 0 || !buf) {
		r->rc = -errno;
		return r->rc;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	t0 = now_s();
	while ((n = read(fd, buf, chunk)) > 0) {
		r->rc = write_all(out, buf, (size_t)n);
		if (r->rc < 0)
			break;
		r->bytes += (uint64_t)n;
	}
	if (n < 0)
		r->rc = -errno;
	r->secs = now_s() - t0;
	close(fd);
	close(out);
	free(buf);
	return r->rc;
}

static int run_bbuf(const char *path, size_t chunk, size_t cap, struct result *r)
{
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	dw_membudget *bud = NULL;
	dw_bbuf_config cfg;
	dw_bbuf *b = NULL;
	const void *p;
	dw_source src;
	double t0;
	size_t len;
	int rc;

	if (out < 0)
		return r->rc = -errno;
	rc = dw_membudget_open(cap, &bud);
	if (rc < 0)
		goto out;
	dw_bbuf_config_default(&cfg);
	cfg.chunk_size = chunk;
	cfg.cap_bytes = cap;
	cfg.budget = bud;
	t0 = now_s();
	rc = dw_source_from_path(path, &src);
	if (rc < 0)
		goto out;
	rc = dw_bbuf_open(&cfg, src, &b);
	if (rc < 0)
		goto out;
	while ((rc = dw_bbuf_next(b, &p, &len)) == 1) {
		rc = write_all(out, p, len);
		if (rc < 0)
			break;
		r->bytes += len;
	}
	dw_bbuf_close(b);
	r->secs = now_s() - t0;
out:
	if (rc < 0)
		fprintf(stderr, "bench_bbuf: bbuf run: %s\n", dw_strerror(rc));
	dw_membudget_close(bud);
	close(out);
	return r->rc = rc;
}

/* Run one measurement in a child; fills r. */
static int in_child(int bbuf, const char *path, size_t chunk, size_t cap, struct result *r)
{
	int p[2], status;
	pid_t pid;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct result cr = { 0 };

		close(p[0]);
		if (bbuf)
			run_bbuf(path, chunk, cap, &cr);
		else
			run_plain(path, chunk, &cr);
		cr.hwm_kib = vm_hwm_kib();
		_exit(write_all(p[1], &cr, sizeof(cr)) < 0 ? 3 : 0);
	}
	close(p[1]);
	n = read(p[0], r, sizeof(*r));
	close(p[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    n != (ssize_t)sizeof(*r))
		return -ECHILD;
	return r->rc;
}

int main(int argc, char **argv)
{
	uint64_t size = 2ULL << 30, chunk = DW_BBUF_DEFAULT_CHUNK, cap = DW_BBUF_DEFAULT_CAP, v;
	double plain_mbs[RUNS_MAX], bbuf_mbs[RUNS_MAX], mp, mb, ratio;
	long plain_hwm = 0, bbuf_hwm = 0;
	const char *path = NULL;
	int runs = 5, rc, ok;
	struct result r;

	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--size") && !parse_size(argv[i + 1], &v))
			size = v, i++;
		else if (i + 1 < argc && !strcmp(argv[i], "--chunk") &&
			 !parse_size(argv[i + 1], &v))
			chunk = v, i++;
		else if (i + 1 < argc && !strcmp(argv[i], "--cap") && !parse_size(argv[i + 1], &v))
			cap = v, i++;
		else if (i + 1 < argc && !strcmp(argv[i], "--runs"))
			runs = atoi(argv[++i]);
		else if (argv[i][0] != '-' && !path)
			path = argv[i];
		else
			path = NULL, i = argc;
	}
	if (!path || runs < 1 || runs > RUNS_MAX || chunk > DW_BBUF_CHUNK_MAX || cap < chunk) {
		fprintf(stderr,
			"usage: bench_bbuf FILE [--size BYTES[K|M|G]] [--chunk BYTES] "
			"[--cap BYTES] [--runs 1..%d]\n",
			RUNS_MAX);
		return 2;
	}
	rc = make_file(path, size, 0600);
	if (rc < 0) {
		fprintf(stderr, "bench_bbuf: cannot create %s: %s\n", path, dw_strerror(rc));
		return 2;
	}
	/* warm the page cache (and check the file reads back whole) */
	rc = in_child(0, path, 1u << 20, cap, &r);
	if (rc < 0 || r.bytes != size) {
		fprintf(stderr, "bench_bbuf: warm-up read failed: %s\n", dw_strerror(rc));
		return 2;
	}
	printf("bbuf: %.2f GiB file %s, chunk %llu KiB, cap %llu MiB, %d runs each, %ld cores\n",
	       (double)size / (1 << 30), path, (unsigned long long)chunk >> 10,
	       (unsigned long long)cap >> 20, runs, sysconf(_SC_NPROCESSORS_ONLN));
	for (int i = 0; i < runs; i++) {
		for (int side = 0; side < 2; side++) {
			rc = in_child(side, path, chunk, cap, &r);
			if (rc < 0 || r.bytes != size) {
				fprintf(stderr, "bench_bbuf: %s run %d failed: %s (%llu bytes)\n",
					side ? "bbuf" : "plain", i, dw_strerror(rc),
					(unsigned long long)r.bytes);
				return 2;
			}
			(side ? bbuf_mbs : plain_mbs)[i] = (double)r.bytes / r.secs / 1e6;
			if (side && r.hwm_kib > bbuf_hwm)
				bbuf_hwm = r.hwm_kib;
			if (!side && r.hwm_kib > plain_hwm)
				plain_hwm = r.hwm_kib;
			printf("  run %d %-5s %8.0f MB/s  peak RSS %6.1f MiB\n", i + 1,
			       side ? "bbuf" : "plain", (side ? bbuf_mbs : plain_mbs)[i],
			       r.hwm_kib / 1024.0);
			fflush(stdout);
		}
	}
	mp = median(plain_mbs, runs);
	mb = median(bbuf_mbs, runs);
	ratio = mb / mp;
	printf("plain read()  median %8.0f MB/s   peak RSS %6.1f MiB\n", mp, plain_hwm / 1024.0);
	printf("dw_bbuf       median %8.0f MB/s   peak RSS %6.1f MiB\n", mb, bbuf_hwm / 1024.0);
	printf("ratio dwscale/plain: %.3f (goal >= 0.90)\n", ratio);
	printf("bbuf peak RSS %.1f MiB, limit cap + 16 MiB = %.1f MiB\n", bbuf_hwm / 1024.0,
	       (double)(cap >> 20) + 16.0);
	ok = ratio >= 0.9 && (uint64_t)bbuf_hwm * 1024 <= cap + (16u << 20);
	printf("goals %s\n", ok ? "met" : "NOT met");
	return ok ? 0 : 1;
}
