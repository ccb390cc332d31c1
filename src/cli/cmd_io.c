// SPDX-License-Identifier: MIT
/*
 * dwscale io probe PATH [--json]
 * dwscale io bench FILE [--rw MODE] [--bs SIZE] [--depth N] [--seconds S] [--size SIZE]
 *                       [--direct] [--engine auto|io_uring|psync] [--mix SPEC] [--overwrite]
 *                       [--json]
 *
 * probe says what the io subsystem would do with a file or directory: its device and class, the
 * depth it would use and why, whether io_uring works here (or the errno that says why not), and
 * whether O_DIRECT works with which alignment.
 *
 * bench drives the scheduler the way fio drives a device: each job keeps its iodepth of ops
 * outstanding (the completion callback issues the next op), for a fixed time, and reports IOPS,
 * MiB/s, latency percentiles (submit to completion) and the longest queue wait. --mix runs
 * several jobs at once, each on its own tier, e.g. high:randread:4k:1,low:read:128k:32, which is
 * how tier isolation and starvation are measured. Only the public API is used.
 *
 * FILE may hold someone's data, so bench never changes a byte it already has unless told to: a
 * new FILE is laid out to --size; reads use an existing FILE as it is (and refuse one shorter
 * than --size); write jobs run on an existing FILE only with --overwrite, and then a FILE shorter
 * than --size is extended from exactly its end (see lay_out).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "dwscale/core.h"
#include "dwscale/io.h"
#include "dwscale/store.h"

#define JOBS_MAX     8
#define QD_MAX	     1024
#define BS_MAX	     (16u << 20)
#define HIST_N	     976 /* log-linear: 16 sub-buckets per power of two, as the scheduler's */
#define FILL_CHUNK   (1u << 20)
#define SECONDS_MAX  3600
#define DEFAULT_SIZE (256ull << 20)
#define SETS_MAX     16

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * DW_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* "4k", "128K", "1m", "2G", "4096" -> bytes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !*s || *s == '-')
		return DW_EUSAGE;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return DW_EUSAGE;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	default:
		return DW_EUSAGE;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b')
		end++;
	if (*end == 'B')
		end++;
	if (*end || v == 0 || v > UINT64_MAX / mul)
		return DW_EUSAGE;
	*out = v * mul;
	return 0;
}

/* A whole number in min..max: digits only, no sign and no size suffix ("1k" is refused). */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return DW_EUSAGE;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return DW_EUSAGE;
	*out = v;
	return 0;
}

/*
 * Split s in place at each sep into fields[], keeping empty fields (strtok_r skips them, which
 * let "a,,b" and a trailing comma through unseen). Returns the number of fields, or DW_EUSAGE if
 * there are more than max.
 */
static int split(char *s, char sep, char **fields, int max)
{
	int n = 0;

	for (;;) {
		char *e = strchr(s, sep);

		if (n == max)
			return DW_EUSAGE;
		fields[n++] = s;
		if (!e)
			return n;
		*e = '\0';
		s = e + 1;
	}
}

/* With optstring ":..." and opterr = 0, getopt_long says nothing: one message of ours instead. */
static int opt_error(int c, char **argv)
{
	if (c == ':')
		return dw__usage_error("io", "%s needs a value", argv[optind - 1]);
	return dw__usage_error("io", "unknown option %s for 'io %s'", argv[optind - 1], argv[0]);
}

static unsigned hist_index(uint64_t v)
{
	unsigned msb;

	if (v < 16)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return (msb - 3) * 16 + (unsigned)((v >> (msb - 4)) & 15);
}

static uint64_t hist_value(unsigned i)
{
	unsigned msb;

	if (i < 16)
		return i;
	msb = i / 16 + 3;
	return (1ULL << msb) + ((uint64_t)(i % 16) << (msb - 4)) + (1ULL << (msb - 5));
}

static uint64_t hist_quantile(const uint64_t *h, uint64_t n, double q)
{
	uint64_t rank, seen = 0;

	if (n == 0)
		return 0;
	rank = (uint64_t)(q * (double)(n - 1)) + 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		seen += h[i];
		if (seen >= rank)
			return hist_value(i);
	}
	return 0;
}

/* ---- probe -------------------------------------------------------------------------------- */

static int calibrate(const char *path, const char *store_uri, uint64_t step_ns, uint64_t size,
		     bool json);

static const char *errno_text(int code)
{
	return code ? dw_strerror(code) : "";
}

static int cmd_probe(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
					      { "calibrate", no_argument, NULL, 'c' },
					      { "store", required_argument, NULL, 'S' },
					      { "step-ms", required_argument, NULL, 't' },
					      { "size", required_argument, NULL, 'z' },
					      { NULL, 0, NULL, 0 } };
	dw_io_dev_info info;
	size_t ma = 1, oa = 1;
	bool json = false, calib = false;
	const char *path, *store = NULL;
	uint64_t step_ms = 1000, size = DEFAULT_SIZE;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'c':
			calib = true;
			break;
		case 'S':
			store = optarg;
			break;
		case 't':
			if (parse_uint(optarg, 1, 60000, &step_ms) < 0)
				return dw__usage_error(
					"io", "--step-ms '%s': milliseconds, 1..60000", optarg);
			break;
		case 'z':
			if (parse_size(optarg, &size) < 0 || size < 4096)
				return dw__usage_error("io", "--size: at least 4k");
			break;
		default:
			return opt_error(c, argv);
		}
	}
	if (optind != argc - 1)
		return dw__usage_error("io", "'io probe' takes one PATH");
	path = argv[optind];
	if (calib)
		return calibrate(path, store, step_ms * DW_NS_PER_MS, size, json);
	rc = dw_io_probe_path(path, &info, &ma, &oa);
	if (rc < 0) {
		fprintf(stderr, "dwscale io probe: %s: %s\n", path, dw_strerror(rc));
		return rc == -ENOENT ? DW_EXIT_NOTFOUND : DW_EXIT_ERROR;
	}
	if (store) {
		dw_store *st = NULL;
		unsigned cd = 0;

		rc = dw_store_open(store, &st);
		if (rc < 0) {
			fprintf(stderr, "dwscale io probe: store %s: %s\n", store, dw_strerror(rc));
			return DW_EXIT_ERROR;
		}
		if (dw_io_calibrated_depth_get(st, info.name, &cd) == 0) {
			info.depth = cd;
			snprintf(info.depth_why, sizeof(info.depth_why), "calibrated");
		}
		dw_store_close(st);
	}
	if (json) {
		cJSON *o = cJSON_CreateObject(), *u, *d;
		char devs[32], *txt;

		snprintf(devs, sizeof(devs), "%u:%u", major(info.dev), minor(info.dev));
		cJSON_AddStringToObject(o, "path", path);
		cJSON_AddStringToObject(o, "device", info.name);
		cJSON_AddStringToObject(o, "dev", devs);
		cJSON_AddStringToObject(o, "class", dw_io_class_name(info.class_));
		cJSON_AddNumberToObject(o, "depth", info.depth);
		cJSON_AddStringToObject(o, "depth_why", info.depth_why);
		cJSON_AddStringToObject(o, "backend", dw_io_engine_name(info.backend));
		u = cJSON_AddObjectToObject(o, "io_uring");
		cJSON_AddBoolToObject(u, "available", info.uring_errno == 0);
		if (info.uring_errno) {
			cJSON_AddStringToObject(u, "errno", dw_err_name(info.uring_errno));
			cJSON_AddStringToObject(u, "error", errno_text(info.uring_errno));
		} else {
			cJSON_AddNullToObject(u, "errno");
		}
		d = cJSON_AddObjectToObject(o, "direct");
		if (info.direct_errno == 1) {
			cJSON_AddNullToObject(d, "available");
		} else {
			cJSON_AddBoolToObject(d, "available", info.direct_errno == 0);
		}
		if (info.direct_errno == 0) {
			cJSON_AddNumberToObject(d, "mem_align", (double)ma);
			cJSON_AddNumberToObject(d, "off_align", (double)oa);
		} else if (info.direct_errno < 0) {
			cJSON_AddStringToObject(d, "errno", dw_err_name(info.direct_errno));
		}
		txt = cJSON_Print(o);
		if (txt)
			printf("%s\n", txt);
		cJSON_free(txt);
		cJSON_Delete(o);
		return txt ? DW_EXIT_OK : DW_EXIT_ERROR;
	}
	printf("path       %s\n", path);
	printf("device     %s (%u:%u)\n", info.name, major(info.dev), minor(info.dev));
	printf("class      %s\n", dw_io_class_name(info.class_));
	printf("depth      %u (%s)\n", info.depth, info.depth_why);
	if (info.uring_errno == 0)
		printf("io_uring   available\n");
	else
		printf("io_uring   unavailable: %s (%s)\n", dw_err_name(info.uring_errno),
		       errno_text(info.uring_errno));
	printf("backend    %s\n", dw_io_engine_name(info.backend));
	if (info.direct_errno == 0)
		printf("O_DIRECT   available, memory alignment %zu, offset alignment %zu\n", ma,
		       oa);
	else if (info.direct_errno < 0)
		printf("O_DIRECT   refused by the filesystem (%s): buffered I/O\n",
		       dw_err_name(info.direct_errno));
	else
		printf("O_DIRECT   not known (could not open a file there to try)\n");
	return DW_EXIT_OK;
}

/* ---- bench -------------------------------------------------------------------------------- */

enum rw_mode { RW_RANDREAD, RW_RANDWRITE, RW_READ, RW_WRITE };
static const char *const rw_names[] = { "randread", "randwrite", "read", "write" };

struct job;

struct slot {
	struct job *job;
	void *buf;
	uint64_t t0;
};

struct job {
	dw_io_tier tier;
	enum rw_mode rw;
	uint64_t bs;
	unsigned qd;
	dw_io_file *f;
	uint64_t nblocks; /* file size / bs */
	uint64_t cursor;  /* sequential position, in blocks: protected by lock */
	uint64_t rng;	  /* protected by lock */
	pthread_mutex_t lock;
	uint64_t hist[HIST_N]; /* protected by lock */
	uint64_t ops, bytes;   /* protected by lock: completed inside the window */
	uint64_t max_lat;      /* protected by lock */
	int err;	       /* protected by lock: first error */
	atomic_uint outstanding;
	struct slot *slots;
	void *mem;
};

static atomic_bool bench_stop;
static atomic_uint_fast64_t bench_end_ns;

static uint64_t next_off(struct job *j)
{
	uint64_t blk;

	if (j->rw == RW_RANDREAD || j->rw == RW_RANDWRITE) {
		/* xorshift64*: cheap, good enough to spread offsets */
		j->rng ^= j->rng >> 12;
		j->rng ^= j->rng << 25;
		j->rng ^= j->rng >> 27;
		blk = (j->rng * 2685821657736338717ULL) % j->nblocks;
	} else {
		blk = j->cursor;
		j->cursor = (j->cursor + 1) % j->nblocks;
	}
	return blk * j->bs;
}

static void on_done(void *arg, int res);

static int issue(struct slot *s)
{
	struct job *j = s->job;
	dw_io_req r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.file = j->f;
	r.op = (j->rw == RW_READ || j->rw == RW_RANDREAD) ? DW_IO_OP_READ : DW_IO_OP_WRITE;
	r.tier = j->tier;
	r.buf = s->buf;
	r.len = (size_t)j->bs;
	pthread_mutex_lock(&j->lock);
	r.off = next_off(j);
	pthread_mutex_unlock(&j->lock);
	s->t0 = now_ns();
	atomic_fetch_add_explicit(&j->outstanding, 1, memory_order_relaxed);
	rc = dw_io_submit(&r, on_done, s);
	if (rc < 0)
		atomic_fetch_sub_explicit(&j->outstanding, 1, memory_order_relaxed);
	return rc;
}

static void on_done(void *arg, int res)
{
	struct slot *s = arg;
	struct job *j = s->job;
	uint64_t t = now_ns(), lat = t - s->t0;
	int rc;

	pthread_mutex_lock(&j->lock);
	if (t <= atomic_load_explicit(&bench_end_ns, memory_order_relaxed)) {
		if (res < 0) {
			if (!j->err)
				j->err = res;
		} else {
			j->hist[hist_index(lat)]++;
			j->ops++;
			j->bytes += (uint64_t)res;
			if (lat > j->max_lat)
				j->max_lat = lat;
		}
	}
	pthread_mutex_unlock(&j->lock);
	if (res >= 0 && !atomic_load_explicit(&bench_stop, memory_order_acquire)) {
		rc = issue(s);
		if (rc < 0) {
			pthread_mutex_lock(&j->lock);
			if (!j->err)
				j->err = rc;
			pthread_mutex_unlock(&j->lock);
		}
	}
	atomic_fetch_sub_explicit(&j->outstanding, 1, memory_order_release);
}

/* Buffers and state for job i of n on f (file of size bytes). Undo with job_free. */
static int job_setup(struct job *j, dw_io_file *f, uint64_t size, unsigned i, unsigned n)
{
	size_t align = dw_io_file_mem_align(f) > 4096 ? dw_io_file_mem_align(f) : 4096;

	j->f = f;
	j->nblocks = size / j->bs;
	j->cursor = j->nblocks / n * i;
	j->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
	pthread_mutex_init(&j->lock, NULL);
	j->slots = dw_calloc(j->qd, sizeof(*j->slots));
	j->mem = dw_malloc((size_t)j->bs * j->qd + align);
	if (!j->slots || !j->mem)
		return -ENOMEM;
	for (unsigned k = 0; k < j->qd; k++) {
		uintptr_t base = ((uintptr_t)j->mem + align - 1) & ~(uintptr_t)(align - 1);

		j->slots[k].job = j;
		j->slots[k].buf = (char *)base + (size_t)k * j->bs;
		memset(j->slots[k].buf, 0x5a + (int)k, (size_t)j->bs);
	}
	return 0;
}

static void job_free(struct job *j)
{
	pthread_mutex_destroy(&j->lock);
	dw_free(j->slots);
	dw_free(j->mem);
	j->slots = NULL;
	j->mem = NULL;
}

/* Keep every job's iodepth outstanding for dur_ns, then drain. *elapsed in seconds. */
static int run_jobs(struct job *jobs, unsigned njobs, uint64_t dur_ns, double *elapsed)
{
	uint64_t t_start, t_end;
	int rc = 0;

	atomic_store(&bench_stop, false);
	t_start = now_ns();
	atomic_store(&bench_end_ns, t_start + dur_ns);
	for (unsigned i = 0; i < njobs && rc >= 0; i++) {
		for (unsigned k = 0; k < jobs[i].qd && rc >= 0; k++)
			rc = issue(&jobs[i].slots[k]);
	}
	if (rc >= 0) {
		while (now_ns() < atomic_load(&bench_end_ns))
			usleep(rc >= 0 && dur_ns < 100 * DW_NS_PER_MS ? 1000 : 10000);
	}
	atomic_store_explicit(&bench_stop, true, memory_order_release);
	t_end = now_ns();
	for (unsigned i = 0; i < njobs; i++) {
		while (atomic_load_explicit(&jobs[i].outstanding, memory_order_acquire) > 0)
			usleep(1000);
	}
	*elapsed = (double)(t_end - t_start) / 1e9;
	return rc;
}

/* "high:randread:4k:1": IODEPTH a plain number, 1..QD_MAX */
static int parse_job(const char *spec, struct job *j)
{
	char buf[128], *parts[4];
	int n;
	uint64_t v;

	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		return DW_EUSAGE;
	if (split(buf, ':', parts, 4) != 4)
		return DW_EUSAGE;
	if (dw_io_tier_parse(parts[0], &j->tier) < 0)
		return DW_EUSAGE;
	for (n = 0; n < 4; n++) {
		if (strcmp(parts[1], rw_names[n]) == 0)
			break;
	}
	if (n == 4)
		return DW_EUSAGE;
	j->rw = (enum rw_mode)n;
	if (parse_size(parts[2], &j->bs) < 0 || j->bs > BS_MAX)
		return DW_EUSAGE;
	if (parse_uint(parts[3], 1, QD_MAX, &v) < 0)
		return DW_EUSAGE;
	j->qd = (unsigned)v;
	return 0;
}

/* What lay_out may do to a FILE that already exists. */
enum lay_mode {
	LAY_READ,      /* only read jobs: use it as it is, never write to it */
	LAY_WRITE,     /* write jobs: refuse it, they would overwrite its data */
	LAY_OVERWRITE, /* write jobs with --overwrite, or a scratch file of ours: may write to it */
};

/*
 * Make path hold at least size bytes of non-zero data (so reads hit real blocks), without ever
 * changing a byte the file already has: a new file is filled from 0; an existing one is only
 * appended to, from exactly its end, and only with LAY_OVERWRITE. Read jobs on an existing file
 * shorter than size are refused rather than grown, and so is a block device shorter than size.
 * A refusal is reported here and returns DW_EUSAGE; other errors are -errno, with a file this
 * call created removed again.
 */
static int lay_out(const char *path, uint64_t size, enum lay_mode mode)
{
	struct stat st;
	char *buf = NULL;
	uint64_t have, off;
	bool made = false;
	int fd, rc = 0;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0)
		made = true;
	else if (errno == EEXIST)
		fd = open(path, (mode == LAY_READ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	have = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &have) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		dw__usage_error("io", "%s is not a regular file or a block device", path);
		rc = DW_EUSAGE;
		goto out;
	}
	if (!made && mode == LAY_WRITE) {
		dw__usage_error(
			"io",
			"%s exists and write jobs would overwrite its data: pass --overwrite "
			"to allow that, or name a new FILE",
			path);
		rc = DW_EUSAGE;
		goto out;
	}
	if (have >= size)
		goto out;
	if (!made && (mode == LAY_READ || S_ISBLK(st.st_mode))) {
		dw__usage_error("io",
				"%s holds %" PRIu64 " bytes, smaller than --size %" PRIu64
				": give a --size of at most %" PRIu64
				", or name a new FILE to lay out",
				path, have, size, have);
		rc = DW_EUSAGE;
		goto out;
	}
	buf = dw_malloc(FILL_CHUNK);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < FILL_CHUNK; i++)
		buf[i] = (char)(i * 31 + 7);
	for (off = have; off < size; off += FILL_CHUNK) {
		size_t n = size - off < FILL_CHUNK ? (size_t)(size - off) : FILL_CHUNK;

		if (pwrite(fd, buf, n, (off_t)off) < 0) {
			rc = -errno;
			goto out;
		}
	}
	if (fsync(fd) < 0)
		rc = -errno;
out:
	dw_free(buf);
	close(fd);
	if (rc < 0 && made)
		unlink(path);
	return rc;
}

struct wait_metric {
	double longest[DW_IO_TIERS];
};

static void collect_wait(void *arg, const dw_metric *m)
{
	struct wait_metric *w = arg;

	if (strcmp(m->name, "longest_wait") != 0 || !m->labels)
		return;
	for (int t = 0; t < DW_IO_TIERS; t++) {
		char want[32];

		snprintf(want, sizeof(want), "tier=\"%s\"", dw_io_tier_name((dw_io_tier)t));
		if (strstr(m->labels, want) && m->value > w->longest[t])
			w->longest[t] = m->value;
	}
}

static size_t file_direct_align(const dw_io_file *f)
{
	size_t ma = dw_io_file_mem_align(f), oa = dw_io_file_off_align(f);

	return ma > oa ? ma : oa;
}

/*
 * The O_DIRECT alignment FILE will need, known before anything is written to it: probed on FILE,
 * or on its directory while FILE does not exist yet. 1 where O_DIRECT is refused (the open falls
 * back to buffered I/O) or the probe cannot tell; the check after the open still applies.
 */
static size_t direct_align_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	dw_io_dev_info info;
	size_t ma, oa;

	if (access(path, F_OK) < 0) {
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else if (snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path + 1), path) >=
			 (int)sizeof(dir))
			return 1;
		path = dir;
	}
	if (dw_io_probe_path(path, &info, &ma, &oa) < 0 || info.direct_errno != 0)
		return 1;
	return ma > oa ? ma : oa;
}

/*
 * Every offset is a multiple of a job's bs and every buffer sits at one (job_setup), so bs alone
 * decides whether O_DIRECT takes the ops; --size need not be aligned, only whole blocks are used.
 */
static int check_direct_bs(const struct job *jobs, unsigned njobs, size_t align)
{
	for (unsigned i = 0; i < njobs && align > 1; i++) {
		if (jobs[i].bs % align) {
			dw__usage_error("io",
					"--direct: block size %" PRIu64
					" is not a multiple of %zu, the O_DIRECT alignment here "
					"(see 'dwscale io probe')",
					jobs[i].bs, align);
			return DW_EUSAGE;
		}
	}
	return 0;
}

static int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = { { "rw", required_argument, NULL, 'r' },
					      { "bs", required_argument, NULL, 'b' },
					      { "depth", required_argument, NULL, 'd' },
					      { "seconds", required_argument, NULL, 's' },
					      { "size", required_argument, NULL, 'z' },
					      { "direct", no_argument, NULL, 'D' },
					      { "engine", required_argument, NULL, 'e' },
					      { "mix", required_argument, NULL, 'm' },
					      { "json", no_argument, NULL, 'j' },
					      { "set", required_argument, NULL, 'S' },
					      { "overwrite", no_argument, NULL, 'O' },
					      { NULL, 0, NULL, 0 } };
	struct job jobs[JOBS_MAX];
	struct wait_metric wm;
	dw_io_config cfg;
	dw_io_dev_info info;
	const dw_scalable *sc;
	dw_io *io = NULL;
	dw_io_file *f = NULL;
	const char *rw = "randread", *mix = NULL, *path;
	uint64_t bs = 4096, size = DEFAULT_SIZE, depth = 0, seconds = 10;
	dw_io_engine engine = DW_IO_ENGINE_AUTO;
	bool direct = false, json = false, overwrite = false, rw_or_bs = false;
	enum lay_mode lay = LAY_READ;
	dw_limit_change sets[SETS_MAX];
	unsigned njobs = 0, ninit = 0, nsets = 0;
	int c, rc, exit_code = DW_EXIT_ERROR;
	double elapsed = 0;

	memset(jobs, 0, sizeof(jobs));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rw = optarg;
			rw_or_bs = true;
			break;
		case 'b':
			if (parse_size(optarg, &bs) < 0 || bs > BS_MAX)
				return dw__usage_error("io", "--bs: a size up to 16M, e.g. 4k");
			rw_or_bs = true;
			break;
		case 'd':
			if (parse_uint(optarg, 1, DW_IO_DEPTH_MAX, &depth) < 0)
				return dw__usage_error("io", "--depth '%s': a whole number, 1..%u",
						       optarg, DW_IO_DEPTH_MAX);
			break;
		case 's':
			if (parse_uint(optarg, 1, SECONDS_MAX, &seconds) < 0)
				return dw__usage_error("io", "--seconds '%s': whole seconds, 1..%u",
						       optarg, SECONDS_MAX);
			break;
		case 'z':
			if (parse_size(optarg, &size) < 0)
				return dw__usage_error("io", "--size: a size, e.g. 1G");
			break;
		case 'D':
			direct = true;
			break;
		case 'e':
			if (dw_io_engine_parse(optarg, &engine) < 0)
				return dw__usage_error("io", "--engine: auto, io_uring or psync");
			break;
		case 'm':
			mix = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'O':
			overwrite = true;
			break;
		case 'S': {
			char *eq = strchr(optarg, '='), *end;

			if (nsets == SETS_MAX || !eq || eq == optarg)
				return dw__usage_error("io", "--set NAME=VALUE (at most %d)",
						       SETS_MAX);
			*eq = '\0';
			sets[nsets].name = optarg;
			sets[nsets].str = NULL;
			errno = 0;
			sets[nsets].value = strtod(eq + 1, &end);
			if (errno || end == eq + 1 || *end)
				return dw__usage_error("io", "--set %s: not a number", optarg);
			nsets++;
			break;
		}
		default:
			return opt_error(c, argv);
		}
	}
	if (optind != argc - 1)
		return dw__usage_error("io", "'io bench' takes one FILE");
	path = argv[optind];

	if (mix) {
		char buf[512], *specs[JOBS_MAX];
		int n;

		if (rw_or_bs)
			return dw__usage_error("io", "--rw and --bs do not go with --mix: each job "
						     "in SPEC names its own (TIER:RW:BS:IODEPTH)");
		if (snprintf(buf, sizeof(buf), "%s", mix) >= (int)sizeof(buf))
			return dw__usage_error("io", "--mix: too long");
		n = split(buf, ',', specs, JOBS_MAX);
		if (n < 0)
			return dw__usage_error("io", "--mix: at most %d jobs", JOBS_MAX);
		for (njobs = 0; njobs < (unsigned)n; njobs++) {
			if (!*specs[njobs])
				return dw__usage_error(
					"io", "--mix '%s': empty job (a stray comma?)", mix);
			if (parse_job(specs[njobs], &jobs[njobs]) < 0)
				return dw__usage_error("io",
						       "--mix: '%s' is not TIER:RW:BS:IODEPTH "
						       "(e.g. high:randread:4k:1; BS up to 16M, "
						       "IODEPTH 1..%d)",
						       specs[njobs], QD_MAX);
		}
	} else {
		char spec[96];

		snprintf(spec, sizeof(spec), "normal:%s:%" PRIu64 ":%" PRIu64, rw, bs,
			 depth ? depth : 1);
		if (parse_job(spec, &jobs[0]) < 0)
			return dw__usage_error("io", "--rw: randread, randwrite, read or write");
		njobs = 1;
	}
	for (unsigned i = 0; i < njobs; i++) {
		if (jobs[i].bs > size)
			return dw__usage_error("io", "--size must hold at least one block");
		if (jobs[i].rw == RW_WRITE || jobs[i].rw == RW_RANDWRITE)
			lay = overwrite ? LAY_OVERWRITE : LAY_WRITE;
	}
	/* before anything is laid out: a misaligned --direct run would only fail with EINVAL */
	if (direct && check_direct_bs(jobs, njobs, direct_align_of(path)) < 0)
		return DW_EXIT_USAGE;

	dw_io_config_default(&cfg);
	cfg.engine = engine;
	cfg.depth = (unsigned)depth;
	rc = dw_io_open(&cfg, &io);
	if (rc < 0)
		goto fail;
	if (nsets) {
		char err[200];

		sc = dw_io_scalable(io);
		rc = sc->ops->reconfigure(sc->self, sets, nsets, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "dwscale io bench: %s\n", err);
			exit_code = DW_EXIT_USAGE;
			goto out;
		}
	}
	rc = lay_out(path, size, lay);
	if (rc == DW_EUSAGE) {
		exit_code = DW_EXIT_USAGE;
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "dwscale io bench: %s: %s\n", path, dw_strerror(rc));
		exit_code = rc == -ENOENT ? DW_EXIT_NOTFOUND : DW_EXIT_ERROR;
		goto out;
	}
	/* read jobs only: opened read-only, so that nothing can write to FILE */
	rc = dw_io_file_open(io, path, lay == LAY_READ ? O_RDONLY : O_RDWR, 0,
			     direct ? DW_IO_F_DIRECT : 0, &f);
	if (rc < 0)
		goto fail;
	if (direct && !dw_io_file_direct(f))
		fprintf(stderr,
			"dwscale io bench: the filesystem refuses O_DIRECT: buffered I/O\n");
	if (direct && check_direct_bs(jobs, njobs, file_direct_align(f)) < 0) {
		exit_code = DW_EXIT_USAGE;
		goto out;
	}
	dw_io_file_info(f, &info);

	for (unsigned i = 0; i < njobs; i++) {
		ninit++;
		rc = job_setup(&jobs[i], f, size, i, njobs);
		if (rc < 0)
			goto fail;
	}

	rc = run_jobs(jobs, njobs, seconds * DW_NS_PER_SEC, &elapsed);
	if (rc < 0)
		goto fail;

	memset(&wm, 0, sizeof(wm));
	sc = dw_io_scalable(io);
	sc->ops->metrics(sc->self, collect_wait, &wm);

	if (json) {
		cJSON *o = cJSON_CreateObject(), *arr;
		char *txt;

		cJSON_AddStringToObject(o, "file", path);
		cJSON_AddStringToObject(o, "device", info.name);
		cJSON_AddStringToObject(o, "backend", dw_io_engine_name(info.backend));
		cJSON_AddNumberToObject(o, "depth", info.depth);
		cJSON_AddBoolToObject(o, "direct", dw_io_file_direct(f));
		cJSON_AddNumberToObject(o, "seconds", elapsed);
		arr = cJSON_AddArrayToObject(o, "jobs");
		for (unsigned i = 0; i < njobs; i++) {
			struct job *j = &jobs[i];
			cJSON *jo = cJSON_CreateObject();

			cJSON_AddStringToObject(jo, "tier", dw_io_tier_name(j->tier));
			cJSON_AddStringToObject(jo, "rw", rw_names[j->rw]);
			cJSON_AddNumberToObject(jo, "bs", (double)j->bs);
			cJSON_AddNumberToObject(jo, "iodepth", j->qd);
			cJSON_AddNumberToObject(jo, "ops", (double)j->ops);
			cJSON_AddNumberToObject(jo, "iops", (double)j->ops / elapsed);
			cJSON_AddNumberToObject(jo, "mib_s",
						(double)j->bytes / elapsed / 1048576.0);
			cJSON_AddNumberToObject(jo, "lat_p50_us",
						(double)hist_quantile(j->hist, j->ops, 0.5) / 1e3);
			cJSON_AddNumberToObject(jo, "lat_p99_us",
						(double)hist_quantile(j->hist, j->ops, 0.99) / 1e3);
			cJSON_AddNumberToObject(jo, "lat_p999_us",
						(double)hist_quantile(j->hist, j->ops, 0.999) /
							1e3);
			cJSON_AddNumberToObject(jo, "lat_max_us", (double)j->max_lat / 1e3);
			cJSON_AddNumberToObject(jo, "longest_wait_us", wm.longest[j->tier] * 1e6);
			if (j->err)
				cJSON_AddStringToObject(jo, "error", dw_err_name(j->err));
			cJSON_AddItemToArray(arr, jo);
		}
		txt = cJSON_Print(o);
		if (txt)
			printf("%s\n", txt);
		cJSON_free(txt);
		cJSON_Delete(o);
	} else {
		printf("file %s  device %s  backend %s  depth %u  %s  %.1f s\n", path, info.name,
		       dw_io_engine_name(info.backend), info.depth,
		       dw_io_file_direct(f) ? "O_DIRECT" : "buffered", elapsed);
		printf("%-7s %-10s %6s %5s %10s %9s %9s %9s %9s %11s\n", "tier", "rw", "bs", "qd",
		       "IOPS", "MiB/s", "p50 us", "p99 us", "p99.9 us", "max wait us");
		for (unsigned i = 0; i < njobs; i++) {
			struct job *j = &jobs[i];

			printf("%-7s %-10s %6" PRIu64
			       " %5u %10.0f %9.1f %9.0f %9.0f %9.0f %11.0f\n",
			       dw_io_tier_name(j->tier), rw_names[j->rw], j->bs, j->qd,
			       (double)j->ops / elapsed, (double)j->bytes / elapsed / 1048576.0,
			       (double)hist_quantile(j->hist, j->ops, 0.5) / 1e3,
			       (double)hist_quantile(j->hist, j->ops, 0.99) / 1e3,
			       (double)hist_quantile(j->hist, j->ops, 0.999) / 1e3,
			       wm.longest[j->tier] * 1e6);
			if (j->err)
				printf("        error: %s\n", dw_strerror(j->err));
		}
	}
	exit_code = DW_EXIT_OK;
	for (unsigned i = 0; i < njobs; i++) {
		if (jobs[i].err)
			exit_code = DW_EXIT_ERROR;
	}
	rc = 0;
fail:
	if (rc < 0) {
		fprintf(stderr, "dwscale io bench: %s: %s\n", path, dw_strerror(rc));
		exit_code = DW_EXIT_ERROR;
	}
out:
	dw_io_file_close(f);
	dw_io_close(io);
	for (unsigned i = 0; i < ninit; i++)
		job_free(&jobs[i]);
	return exit_code;
}

/* ---- calibrate ---------------------------------------------------------------------------- */

#define CALIB_MAX_DEPTH 256
#define CALIB_KEEP	0.9 /* smallest depth reaching 90% of the best IOPS: more only adds latency */

/*
 * 4k random reads (O_DIRECT where the filesystem takes it) at depths 1, 2, 4, ... 256 through
 * the scheduler; the chosen depth is the smallest whose IOPS reach CALIB_KEEP of the best seen.
 * With a store, it is recorded for the device and used by later managers on that store.
 */
static int calibrate(const char *path, const char *store_uri, uint64_t step_ns, uint64_t size,
		     bool json)
{
	double iops[16] = { 0 }, best = 0, elapsed;
	unsigned depths[16], n = 0, chosen = 0;
	char tmp[4096];
	const char *file = path;
	dw_io_dev_info info;
	dw_store *st = NULL;
	dw_io_config cfg;
	dw_io_file *f = NULL;
	dw_io *io = NULL;
	struct stat sb;
	bool made = false;
	int rc, exit_code = DW_EXIT_ERROR;

	if (stat(path, &sb) < 0) {
		rc = -errno;
		fprintf(stderr, "dwscale io probe: %s: %s\n", path, dw_strerror(rc));
		return rc == -ENOENT ? DW_EXIT_NOTFOUND : DW_EXIT_ERROR;
	}
	if (S_ISDIR(sb.st_mode)) {
		if (snprintf(tmp, sizeof(tmp), "%s/.dwscale-calibrate.dat", path) >=
		    (int)sizeof(tmp))
			return dw__usage_error("io", "path too long");
		file = tmp;
		made = true;
	} else if ((uint64_t)sb.st_size < size) {
		size = (uint64_t)sb.st_size / 4096 * 4096;
		if (size < 4096)
			return dw__usage_error("io", "%s is too small to calibrate on", path);
	}
	if (store_uri) {
		rc = dw_store_open(store_uri, &st);
		if (rc < 0) {
			fprintf(stderr, "dwscale io probe: store %s: %s\n", store_uri,
				dw_strerror(rc));
			return DW_EXIT_ERROR;
		}
	}
	dw_io_config_default(&cfg);
	cfg.store = st;
	rc = dw_io_open(&cfg, &io);
	if (rc < 0)
		goto out;
	if (made) {
		rc = lay_out(file, size, LAY_OVERWRITE); /* our scratch file */
		if (rc < 0)
			goto out;
	}
	rc = dw_io_file_open(io, file, made ? O_RDWR : O_RDONLY, 0, DW_IO_F_DIRECT, &f);
	if (rc < 0)
		goto out;
	for (unsigned d = 1; d <= CALIB_MAX_DEPTH; d *= 2) {
		struct job j;

		memset(&j, 0, sizeof(j));
		j.tier = DW_IO_NORMAL;
		j.rw = RW_RANDREAD;
		j.bs = 4096;
		j.qd = d;
		rc = dw_io_set_depth(f, d);
		if (rc < 0)
			goto out;
		rc = job_setup(&j, f, size, 0, 1);
		if (rc == 0)
			rc = run_jobs(&j, 1, step_ns, &elapsed);
		if (rc == 0 && j.err)
			rc = j.err;
		job_free(&j);
		if (rc < 0)
			goto out;
		depths[n] = d;
		iops[n] = (double)j.ops / elapsed;
		if (iops[n] > best)
			best = iops[n];
		n++;
	}
	for (unsigned i = 0; i < n && !chosen; i++) {
		if (iops[i] >= CALIB_KEEP * best)
			chosen = depths[i];
	}
	rc = dw_io_set_depth(f, 0);
	if (rc == 0 && st)
		rc = dw_io_calibrated_depth_set(f, chosen);
	if (rc < 0)
		goto out;
	dw_io_file_info(f, &info);
	if (json) {
		cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "steps");
		char *txt;

		cJSON_AddStringToObject(o, "path", path);
		cJSON_AddStringToObject(o, "device", info.name);
		cJSON_AddStringToObject(o, "class", dw_io_class_name(info.class_));
		cJSON_AddNumberToObject(o, "class_depth", dw_io_class_depth(info.class_));
		cJSON_AddNumberToObject(o, "depth", chosen);
		cJSON_AddBoolToObject(o, "stored", st != NULL);
		cJSON_AddBoolToObject(o, "direct", dw_io_file_direct(f));
		for (unsigned i = 0; i < n; i++) {
			cJSON *e = cJSON_CreateObject();

			cJSON_AddNumberToObject(e, "depth", depths[i]);
			cJSON_AddNumberToObject(e, "iops", iops[i]);
			cJSON_AddItemToArray(arr, e);
		}
		txt = cJSON_Print(o);
		if (txt)
			printf("%s\n", txt);
		cJSON_free(txt);
		cJSON_Delete(o);
	} else {
		printf("device %s (class %s, class depth %u), 4k random reads, %s\n", info.name,
		       dw_io_class_name(info.class_), dw_io_class_depth(info.class_),
		       dw_io_file_direct(f) ? "O_DIRECT" : "buffered");
		printf("%6s %10s\n", "depth", "IOPS");
		for (unsigned i = 0; i < n; i++)
			printf("%6u %10.0f%s\n", depths[i], iops[i],
			       depths[i] == chosen ? "  <- chosen" : "");
		printf("depth %u: the smallest reaching %.0f%% of the best%s\n", chosen,
		       CALIB_KEEP * 100,
		       st ? "; stored for this device" : " (not stored: no --store)");
	}
	exit_code = DW_EXIT_OK;
out:
	if (rc < 0)
		fprintf(stderr, "dwscale io probe: calibrate %s: %s\n", path, dw_strerror(rc));
	dw_io_file_close(f);
	dw_io_close(io);
	dw_store_close(st);
	if (made)
		unlink(file);
	return exit_code;
}

int dw__cmd_io(int argc, char **argv)
{
	/* The device line the library logs at info level would only repeat the output. */
	if (dw_log_get_level() == DW_LOG_INFO)
		dw_log_set_level(DW_LOG_WARN);
	if (argc < 2)
		return dw__usage_error("io", "missing verb: probe or bench");
	if (strcmp(argv[1], "probe") == 0)
		return cmd_probe(argc - 1, argv + 1);
	if (strcmp(argv[1], "bench") == 0)
		return cmd_bench(argc - 1, argv + 1);
	return dw__usage_error("io", "unknown verb '%s': probe or bench", argv[1]);
}
