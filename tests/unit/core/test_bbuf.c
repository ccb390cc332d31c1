// SPDX-License-Identifier: MIT
/*
 * dw_bbuf: byte-exact round trips, the cap under a slow consumer, backpressure (the producer
 * stops reading), cancellation of a blocked producer and of a blocked source read, source errors
 * after K chunks, bad configuration, allocation failures, and the global counters.
 *
 * Every stream here uses its own dw_membudget so that tests cannot disturb each other through the
 * default one. Waits for the producer to reach a state poll an observable counter, with a long
 * bound that only a broken implementation can reach.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/bbuf.h"

#define CHUNK 4096u

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Poll until *v == want; fail the test after 30 s (only a broken stream gets there). */
static void wait_for_count(_Atomic unsigned *v, unsigned want)
{
	for (int i = 0; i < 30000; i++) {
		if (atomic_load(v) == want)
			return;
		sleep_ms(1);
	}
	fail_msg("counter stuck at %u, wanted %u", atomic_load(v), want);
}

static unsigned char *random_bytes(size_t n, uint64_t seed)
{
	unsigned char *p = malloc(n ? n : 1);
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
	return p;
}

static dw_membudget *budget_mib(size_t mib)
{
	dw_membudget *bud;

	assert_int_equal(dw_membudget_open(mib << 20, &bud), 0);
	return bud;
}

static void config(dw_bbuf_config *cfg, dw_membudget *bud, size_t chunk, size_t cap)
{
	dw_bbuf_config_default(cfg);
	cfg->chunk_size = chunk;
	cfg->cap_bytes = cap;
	cfg->budget = bud;
}

/* Drain b with dw_bbuf_next into a malloc'd buffer; returns the final code (0 or error). */
static int drain(dw_bbuf *b, unsigned char **out, size_t *outlen, size_t max)
{
	unsigned char *buf = malloc(max ? max : 1);
	const void *chunk;
	size_t len, n = 0;
	int rc;

	assert_non_null(buf);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		assert_true(len > 0);
		assert_true(n + len <= max);
		memcpy(buf + n, chunk, len);
		n += len;
		assert_true(dw_bbuf_held(b) <= dw_bbuf_cap(b));
	}
	*out = buf;
	*outlen = n;
	return rc;
}

static void roundtrip_mem(size_t size, size_t chunk)
{
	dw_membudget *bud = budget_mib(16);
	unsigned char *data = random_bytes(size, size + 7), *got;
	dw_bbuf_config cfg;
	dw_source src;
	dw_bbuf *b;
	size_t n;

	config(&cfg, bud, chunk, 16 * chunk);
	assert_int_equal(dw_source_from_mem(data, size, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(drain(b, &got, &n, size), 0);
	assert_int_equal(n, size);
	assert_memory_equal(got, data, size);
	/* the end is sticky */
	assert_int_equal(dw_bbuf_next(b, &(const void *){ NULL }, &n), 0);
	assert_true(dw_bbuf_peak(b) <= 16 * chunk);
	dw_bbuf_close(b);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	dw_membudget_close(bud);
	free(got);
	free(data);
}

static void test_roundtrip_sizes(void **state)
{
	(void)state;
	const size_t sizes[] = { 0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, (5u << 20) + 123 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip_mem(sizes[i], CHUNK);
	/* default chunk size, many MiB */
	roundtrip_mem((24u << 20) + 17, DW_BBUF_DEFAULT_CHUNK);
}

/* A file name under $DW_TEST_TMPDIR, or under a fresh mkdtemp directory (removed by tmp_done). */
static char made_dir[64];

static char *tmp_path(char *buf, size_t cap, const char *name)
{
	const char *dir = getenv("DW_TEST_TMPDIR");
	int n;

	if (dir && *dir) {
		assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
	} else {
		snprintf(made_dir, sizeof(made_dir), "/tmp/dw_bbuf_XXXXXX");
		dir = mkdtemp(made_dir);
		assert_non_null(dir);
	}
	n = snprintf(buf, cap, "%s/%s.%ld", dir, name, (long)getpid());
	assert_true(n > 0 && (size_t)n < cap);
	return buf;
}

static void tmp_done(const char *path)
{
	unlink(path);
	if (made_dir[0])
		rmdir(made_dir);
	made_dir[0] = '\0';
}

static void test_roundtrip_file(void **state)
{
	(void)state;
	size_t size = (7u << 20) + 999;
	unsigned char *data = random_bytes(size, 42), *got;
	dw_membudget *bud = budget_mib(16);
	dw_bbuf_config cfg;
	char path[600];
	dw_source src;
	dw_bbuf *b;
	size_t n;
	int fd;

	tmp_path(path, sizeof(path), "file");
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, size), (ssize_t)size);
	close(fd);

	config(&cfg, bud, DW_BBUF_DEFAULT_CHUNK, 1u << 20);
	assert_int_equal(dw_source_from_path(path, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(drain(b, &got, &n, size), 0);
	assert_int_equal(n, size);
	assert_memory_equal(got, data, size);
	dw_bbuf_close(b);
	free(got);

	/* the copy-out API with a buffer size unrelated to the chunk size */
	assert_int_equal(dw_source_from_path(path, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	got = malloc(size);
	n = 0;
	for (;;) {
		ssize_t r = dw_bbuf_read(b, got + n, size - n < 1000 ? size - n : 1000);

		assert_true(r >= 0);
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == size)
			break;
	}
	assert_int_equal(n, size);
	assert_int_equal(dw_bbuf_read(b, got, 10), 0);
	assert_memory_equal(got, data, size);
	dw_bbuf_close(b);

	/* a missing path is the open(2) error */
	assert_int_equal(dw_source_from_path("/nonexistent/dw_bbuf", &src), -ENOENT);
	assert_int_equal(dw_source_from_fd(-1, false, &src), -EBADF);

	tmp_done(path);
	free(got);
	free(data);
	dw_membudget_close(bud);
}

/* read then next: next hands out the unread rest of the chunk first */
static void test_read_then_next(void **state)
{
	(void)state;
	size_t size = 3 * CHUNK;
	unsigned char *data = random_bytes(size, 3), buf[100];
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	const void *chunk;
	dw_source src;
	dw_bbuf *b;
	size_t len;

	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_source_from_mem(data, size, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(dw_bbuf_read(b, buf, 100), 100);
	assert_memory_equal(buf, data, 100);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_int_equal(len, CHUNK - 100);
	assert_memory_equal(chunk, data + 100, len);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_int_equal(len, CHUNK);
	assert_memory_equal(chunk, data + CHUNK, len);
	assert_int_equal(dw_bbuf_read(b, buf, 0), 0);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
	free(data);
}

/* ---- a scripted source: counts reads, may fail after K reads, may block until canceled ---- */

struct script {
	_Atomic unsigned reads;
	_Atomic unsigned closes;
	_Atomic size_t bytes; /* handed out so far */
	unsigned limit;	      /* reads that return data; then the end or fail_code */
	int fail_code;	      /* 0: end after limit; else this code */
	size_t per_read;      /* bytes per read (0 = all asked) */
	bool overflow;	      /* return more than asked */
	bool block;	      /* block (until canceled) after limit */
	pthread_mutex_t lock; /* for block */
	pthread_cond_t cond;
	bool canceled;
};

static ssize_t script_read(void *ctx, void *buf, size_t len)
{
	struct script *s = ctx;
	unsigned n = atomic_load(&s->reads);

	if (n >= s->limit) {
		if (s->block) {
			pthread_mutex_lock(&s->lock);
			while (!s->canceled)
				pthread_cond_wait(&s->cond, &s->lock);
			pthread_mutex_unlock(&s->lock);
			return DW_ECANCELED;
		}
		return s->fail_code;
	}
	atomic_fetch_add(&s->reads, 1);
	if (s->per_read && s->per_read < len)
		len = s->per_read;
	memset(buf, (int)(n & 0xff), len);
	atomic_fetch_add(&s->bytes, len);
	return s->overflow ? (ssize_t)len + 1 : (ssize_t)len;
}

static void script_cancel(void *ctx)
{
	struct script *s = ctx;

	pthread_mutex_lock(&s->lock);
	s->canceled = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void script_close(void *ctx)
{
	struct script *s = ctx;

	atomic_fetch_add(&s->closes, 1);
}

static void script_init(struct script *s, unsigned limit, int fail_code)
{
	memset(s, 0, sizeof(*s));
	s->limit = limit;
	s->fail_code = fail_code;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
}

static dw_source script_source(struct script *s)
{
	dw_source src = {
		.read = script_read, .close = script_close, .ctx = s, .cancel = script_cancel
	};

	return src;
}

static void script_destroy(struct script *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

static void test_backpressure_stops_reading(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	const void *chunk;
	struct script s;
	dw_bbuf *b;
	size_t len;

	script_init(&s, 1000, 0);
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	/* with nobody pulling, the producer fills cap/chunk chunks and stops */
	wait_for_count(&s.reads, 4);
	sleep_ms(50);
	assert_int_equal(atomic_load(&s.reads), 4);
	assert_int_equal(dw_bbuf_held(b), 4 * CHUNK);
	/* the first chunk is now in our hand: still nothing free to read into */
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_int_equal(len, CHUNK);
	sleep_ms(20);
	assert_int_equal(atomic_load(&s.reads), 4);
	/* giving it back (by taking the next) lets exactly one more read happen */
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	wait_for_count(&s.reads, 5);
	sleep_ms(20);
	assert_int_equal(atomic_load(&s.reads), 5);
	assert_int_equal(dw_bbuf_peak(b), 4 * CHUNK);
	assert_int_equal(dw_membudget_in_use(bud), 4 * CHUNK);
	dw_bbuf_close(b);
	assert_int_equal(atomic_load(&s.closes), 1);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_slow_consumer_never_exceeds_cap(void **state)
{
	(void)state;
	size_t size = 2u << 20, n = 0;
	unsigned char *data = random_bytes(size, 11);
	dw_membudget *bud = budget_mib(4);
	dw_bbuf_config cfg;
	const void *chunk;
	dw_source src;
	dw_bbuf *b;
	size_t len, max_seen = 0;
	int rc, i = 0;

	config(&cfg, bud, CHUNK, 8 * CHUNK + 100); /* not a multiple: the cap rounds down */
	assert_int_equal(dw_source_from_mem(data, size, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(dw_bbuf_cap(b), 8 * CHUNK);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		assert_memory_equal(chunk, data + n, len);
		n += len;
		if (++i % 16 == 0)
			sleep_ms(2);
		if (dw_bbuf_held(b) > max_seen)
			max_seen = dw_bbuf_held(b);
		assert_true(dw_membudget_in_use(bud) <= 8 * CHUNK);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, size);
	assert_true(max_seen <= 8 * CHUNK);
	assert_true(dw_bbuf_peak(b) <= 8 * CHUNK);
	assert_true(dw_membudget_peak(bud) <= 8 * CHUNK);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
	free(data);
}

/* A fast in-memory source that stalls for stall_ms every `every` reads (0: never). */
struct stall_src {
	const unsigned char *data;
	size_t size, off;
	unsigned reads, every, stall_ms;
};

static ssize_t stall_read(void *ctx, void *buf, size_t len)
{
	struct stall_src *s = ctx;
	size_t n = s->size - s->off < len ? s->size - s->off : len;

	if (s->every && ++s->reads % s->every == 0)
		sleep_ms(s->stall_ms);
	memcpy(buf, s->data + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

/* Stream size bytes of src through 64 KiB chunks under a 64 MiB cap, the consumer sleeping
 * 2 ms every 4 chunks (at most 128 MB/s, slower than the source even under a sanitizer);
 * returns the stream's peak. */
static size_t stream_slowly(struct stall_src *ss)
{
	dw_membudget *bud = budget_mib(128);
	dw_source src = { .read = stall_read, .ctx = ss };
	dw_bbuf_config cfg;
	const void *chunk;
	size_t len, n = 0, peak;
	dw_bbuf *b;
	int rc, i = 0;

	config(&cfg, bud, 64u << 10, 64u << 20);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		assert_memory_equal(chunk, ss->data + n, len);
		n += len;
		if (++i % 4 == 0)
			sleep_ms(2);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, ss->size);
	peak = dw_bbuf_peak(b);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
	return peak;
}

/*
 * A producer far ahead of a steady consumer holds about the window (1 MiB), not the 64 MiB cap,
 * so the chunks it fills are still in the cache; a source that stalls grows the window (each
 * stall the consumer runs dry after the producer was held back) and gets its read-ahead.
 */
static void test_window_small_for_steady_grows_for_stalls(void **state)
{
	(void)state;
	size_t size = 40u << 20;
	unsigned char *data = random_bytes(size, 12);
	struct stall_src steady = { .data = data, .size = size };
	struct stall_src stalling = { .data = data, .size = size, .every = 64, .stall_ms = 40 };
	size_t p1 = stream_slowly(&steady), p2 = stream_slowly(&stalling);

	print_message("peak: steady %zu KiB, stalling %zu KiB\n", p1 >> 10, p2 >> 10);
	assert_true(p1 <= (8u << 20)); /* 1 MiB window; room for a few doublings on a busy box */
	assert_true(p2 >= (3u << 19)); /* grew at least once: 1 MiB + a chunk without */
	free(data);
}

struct canceler {
	dw_bbuf *b;
	unsigned delay_ms;
};

static void *cancel_later(void *arg)
{
	struct canceler *c = arg;

	sleep_ms(c->delay_ms);
	dw_bbuf_cancel(c->b);
	return NULL;
}

static void test_cancel_unblocks_full_producer(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	const void *chunk;
	struct script s;
	dw_bbuf *b;
	size_t len;

	script_init(&s, 1000, 0);
	config(&cfg, bud, CHUNK, 2 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	wait_for_count(&s.reads, 2); /* the producer is now blocked on backpressure */
	dw_bbuf_cancel(b);
	dw_bbuf_cancel(b); /* idempotent */
	/* queued chunks are not handed out after a cancel */
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_ECANCELED);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_ECANCELED);
	assert_string_equal(dw_bbuf_errmsg(b), "stream canceled");
	dw_bbuf_close(b); /* joins the producer: it must have woken */
	assert_int_equal(atomic_load(&s.closes), 1);
	assert_int_equal(dw_membudget_in_use(bud), 0);
	script_destroy(&s);

	/* close without cancel, with the producer blocked, also returns */
	script_init(&s, 1000, 0);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	wait_for_count(&s.reads, 2);
	dw_bbuf_close(b);
	assert_int_equal(atomic_load(&s.closes), 1);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_cancel_blocked_source(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	struct canceler c = { .delay_ms = 20 };
	dw_bbuf_config cfg;
	const void *chunk;
	struct script s;
	pthread_t t;
	dw_bbuf *b;
	size_t len;
	int p[2];
	dw_source src;

	/* a source that blocks forever after one chunk; cancel comes from another thread */
	script_init(&s, 1, 0);
	s.block = true;
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	c.b = b;
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_ECANCELED);
	pthread_join(t, NULL);
	dw_bbuf_close(b);
	script_destroy(&s);

	/* a pipe nobody writes: the fd source's read is interrupted by cancel */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(dw_source_from_fd(p[0], true, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	c.b = b;
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_ECANCELED);
	pthread_join(t, NULL);
	dw_bbuf_close(b);
	/* the source closed the read end: writing now fails with EPIPE */
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(write(p[1], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(p[1]);

	/* a pipe with data then EOF streams normally */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "hello", 5), 5);
	close(p[1]);
	assert_int_equal(dw_source_from_fd(p[0], true, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 1);
	assert_int_equal(len, 5);
	assert_memory_equal(chunk, "hello", 5);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), 0);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
}

struct writer {
	int fd;
	const unsigned char *data;
	size_t len;
};

static void *write_slowly(void *arg)
{
	struct writer *w = arg;
	size_t off = 0;

	while (off < w->len) {
		size_t n = w->len - off < 3000 ? w->len - off : 3000;
		ssize_t r;

		sleep_ms(1);
		r = write(w->fd, w->data + off, n);
		if (r < 0 && errno == EAGAIN)
			continue;
		assert_true(r > 0);
		off += (size_t)r;
	}
	close(w->fd);
	return NULL;
}

/* A non-blocking pipe fed in small pieces: the fd source waits in poll, never spins on EAGAIN. */
static void test_nonblocking_pipe(void **state)
{
	(void)state;
	size_t size = 40000, n;
	unsigned char *data = random_bytes(size, 77), *got;
	dw_membudget *bud = budget_mib(1);
	struct writer w;
	dw_bbuf_config cfg;
	dw_source src;
	pthread_t t;
	dw_bbuf *b;
	int p[2];

	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	w.fd = p[1];
	w.data = data;
	w.len = size;
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_source_from_fd(p[0], true, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(pthread_create(&t, NULL, write_slowly, &w), 0);
	assert_int_equal(drain(b, &got, &n, size), 0);
	pthread_join(t, NULL);
	assert_int_equal(n, size);
	assert_memory_equal(got, data, size);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
	free(got);
	free(data);
}

static void check_error_after(unsigned k, size_t per_read)
{
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	const void *chunk;
	struct script s;
	dw_bbuf *b;
	size_t len, total = 0;
	unsigned got = 0;
	int rc;

	script_init(&s, k, -EIO);
	s.per_read = per_read;
	config(&cfg, bud, CHUNK, 2 * CHUNK); /* smaller than k chunks: errors wait behind data */
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		got++;
		total += len;
	}
	assert_int_equal(rc, -EIO);
	/* every byte read before the error reached the consumer, in chunk-size pieces */
	assert_int_equal(total, atomic_load(&s.bytes));
	assert_int_equal(got, (total + CHUNK - 1) / CHUNK);
	if (!per_read)
		assert_int_equal(got, k);
	assert_non_null(strstr(dw_bbuf_errmsg(b), "source read failed"));
	/* sticky */
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), -EIO);
	dw_bbuf_close(b);
	assert_int_equal(atomic_load(&s.closes), 1);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_source_error_after_k_chunks(void **state)
{
	(void)state;
	check_error_after(0, 0);
	check_error_after(1, 0);
	check_error_after(7, 0);
	/* short reads: 5 reads fill a chunk (4 x 1000 + 96), 2 more make a partial one (2000) */
	check_error_after(7, 1000);
}

static void test_read_returns_bytes_then_error(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	unsigned char buf[3 * CHUNK];
	struct script s;
	dw_bbuf *b;

	script_init(&s, 2, DW_EBACKEND);
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	assert_int_equal(dw_bbuf_read(b, buf, sizeof(buf)), 2 * CHUNK);
	assert_int_equal(dw_bbuf_read(b, buf, sizeof(buf)), DW_EBACKEND);
	dw_bbuf_close(b);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_source_overflow_is_protocol_error(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	const void *chunk;
	struct script s;
	dw_bbuf *b;
	size_t len;

	script_init(&s, 5, 0);
	s.overflow = true;
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), 0);
	assert_int_equal(dw_bbuf_next(b, &chunk, &len), DW_EPROTO);
	assert_non_null(strstr(dw_bbuf_errmsg(b), "source returned"));
	dw_bbuf_close(b);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_bad_config_closes_source(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	dw_bbuf_config cfg;
	struct script s;
	dw_source src;
	dw_bbuf *b = (dw_bbuf *)&b;

	script_init(&s, 1, 0);
	config(&cfg, bud, 0, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), DW_ECONFIG);
	assert_null(b);
	config(&cfg, bud, CHUNK, CHUNK - 1);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), DW_ECONFIG);
	config(&cfg, bud, DW_BBUF_CHUNK_MAX + 1, SIZE_MAX);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), DW_ECONFIG);
	src = script_source(&s);
	src.read = NULL;
	config(&cfg, bud, CHUNK, 4 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), DW_ECONFIG);
	/* a chunk bigger than the whole budget could never be granted */
	config(&cfg, bud, 2u << 20, 4u << 20);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s), &b), DW_EBUDGET);
	assert_null(b);
	/* every refused open closed the source it was given */
	assert_int_equal(atomic_load(&s.closes), 5);
	assert_int_equal(atomic_load(&s.reads), 0);
	assert_int_equal(dw_source_from_mem(NULL, 1, &src), DW_EUSAGE);
	dw_bbuf_close(NULL);
	script_destroy(&s);
	dw_membudget_close(bud);
}

static void test_cap_clamped_to_budget(void **state)
{
	(void)state;
	size_t size = 1u << 20, n;
	unsigned char *data = random_bytes(size, 5), *got;
	dw_membudget *bud;
	dw_bbuf_config cfg;
	dw_source src;
	dw_bbuf *b;

	assert_int_equal(dw_membudget_open(10 * CHUNK + 5, &bud), 0);
	config(&cfg, bud, CHUNK, 64u << 20);
	assert_int_equal(dw_source_from_mem(data, size, &src), 0);
	assert_int_equal(dw_bbuf_open(&cfg, src, &b), 0);
	assert_int_equal(dw_bbuf_cap(b), 10 * CHUNK);
	assert_int_equal(drain(b, &got, &n, size), 0);
	assert_int_equal(n, size);
	assert_memory_equal(got, data, size);
	assert_true(dw_bbuf_peak(b) <= 10 * CHUNK);
	assert_true(dw_membudget_peak(bud) <= 10 * CHUNK);
	dw_bbuf_close(b);
	dw_membudget_close(bud);
	free(got);
	free(data);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	size_t size = 5 * CHUNK + 3;
	unsigned char *data = random_bytes(size, 9);
	dw_membudget *bud = budget_mib(1);
	bool clean_run = false;

	for (unsigned long nth = 1; !clean_run && nth < 200; nth++) {
		dw_bbuf_config cfg;
		const void *chunk;
		dw_source src;
		dw_bbuf *b;
		size_t len, n = 0;
		unsigned long made;
		int rc;

		config(&cfg, bud, CHUNK, 2 * CHUNK); /* forces chunk recycling */
		dw_alloc_fail_nth(nth);
		rc = dw_source_from_mem(data, size, &src);
		if (rc == 0)
			rc = dw_bbuf_open(&cfg, src, &b);
		if (rc == 0) {
			while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
				assert_memory_equal(chunk, data + n, len);
				n += len;
			}
			if (rc == -ENOMEM)
				assert_non_null(strstr(dw_bbuf_errmsg(b), "out of memory"));
			dw_bbuf_close(b);
		}
		made = dw_alloc_fail_nth(0);
		if (made < nth) {
			/* the failure point was never reached: this run must be complete */
			assert_int_equal(rc, 0);
			assert_int_equal(n, size);
			clean_run = true;
		} else {
			assert_int_equal(rc, -ENOMEM);
		}
		/* whatever failed, nothing stays charged */
		assert_int_equal(dw_membudget_in_use(bud), 0);
	}
	assert_true(clean_run);
	dw_membudget_close(bud);
	free(data);
}

static void test_global_stats(void **state)
{
	(void)state;
	dw_membudget *bud = budget_mib(1);
	size_t streams0, bytes0, streams, bytes;
	dw_bbuf_config cfg;
	struct script s1, s2;
	dw_bbuf *b1, *b2;

	dw_bbuf_global_stats(&streams0, &bytes0);
	script_init(&s1, 1000, 0);
	script_init(&s2, 1000, 0);
	config(&cfg, bud, CHUNK, 3 * CHUNK);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s1), &b1), 0);
	assert_int_equal(dw_bbuf_open(&cfg, script_source(&s2), &b2), 0);
	wait_for_count(&s1.reads, 3);
	wait_for_count(&s2.reads, 3);
	dw_bbuf_global_stats(&streams, &bytes);
	assert_int_equal(streams, streams0 + 2);
	assert_int_equal(bytes, bytes0 + 6 * CHUNK);
	dw_bbuf_close(b1);
	dw_bbuf_global_stats(&streams, NULL);
	assert_int_equal(streams, streams0 + 1);
	dw_bbuf_close(b2);
	dw_bbuf_global_stats(&streams, &bytes);
	assert_int_equal(streams, streams0);
	assert_int_equal(bytes, bytes0);
	dw_bbuf_global_stats(NULL, NULL);
	script_destroy(&s1);
	script_destroy(&s2);
	dw_membudget_close(bud);
}

/* NULL config means defaults and the default budget */
static void test_defaults(void **state)
{
	(void)state;
	dw_bbuf_config cfg;
	unsigned char *data = random_bytes(100000, 1), *got;
	dw_source src;
	dw_bbuf *b;
	size_t n;

	dw_bbuf_config_default(&cfg);
	assert_int_equal(cfg.chunk_size, 64u << 10);
	assert_int_equal(cfg.cap_bytes, 64u << 20);
	assert_null(cfg.budget);
	assert_int_equal(dw_source_from_mem(data, 100000, &src), 0);
	assert_int_equal(dw_bbuf_open(NULL, src, &b), 0);
	assert_int_equal(dw_bbuf_cap(b), 64u << 20);
	assert_int_equal(drain(b, &got, &n, 100000), 0);
	assert_int_equal(n, 100000);
	assert_memory_equal(got, data, n);
	dw_bbuf_close(b);
	assert_int_equal(dw_membudget_in_use(dw_membudget_default()), 0);
	free(got);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_sizes),
		cmocka_unit_test(test_roundtrip_file),
		cmocka_unit_test(test_read_then_next),
		cmocka_unit_test(test_backpressure_stops_reading),
		cmocka_unit_test(test_slow_consumer_never_exceeds_cap),
		cmocka_unit_test(test_window_small_for_steady_grows_for_stalls),
		cmocka_unit_test(test_cancel_unblocks_full_producer),
		cmocka_unit_test(test_cancel_blocked_source),
		cmocka_unit_test(test_nonblocking_pipe),
		cmocka_unit_test(test_source_error_after_k_chunks),
		cmocka_unit_test(test_read_returns_bytes_then_error),
		cmocka_unit_test(test_source_overflow_is_protocol_error),
		cmocka_unit_test(test_bad_config_closes_source),
		cmocka_unit_test(test_cap_clamped_to_budget),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_global_stats),
		cmocka_unit_test(test_defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
