// SPDX-License-Identifier: MIT
/*
 * BoundedBufferStream: a producer thread reads a dw_source into chunks, a consumer takes them in
 * order; chunk memory is capped per stream and charged to a shared dw_membudget. See bbuf.h for
 * the contract and the budget rules.
 *
 * Chunk life cycle (every chunk is in exactly one place; nalloc counts them all):
 *
 *            get_chunk()                    fill + enqueue           advance()
 *   budget ------------> producer's hand ---------------> queue ----------------> consumer's hand
 *     ^   (malloc, only if                                                              |
 *     |    free is empty)   ^                                                           |
 *     |                     +------------------ free list <--- release_locked() --------+
 *     +--- release_locked() when the producer is done, or budget waiters exist (rule 4) ----+
 *
 * Invariants
 *   1. nalloc <= max_chunks, so held = nalloc * chunk_size <= cap (the effective cap).
 *   2. The budget is charged chunk_size for each of the nalloc chunks, no more, no less.
 *   3. The producer grows (allocates) only when the free list is empty, and, once it holds a
 *      chunk, only if the budget has room now and nobody is waiting for it (rule 3 and 4).
 *   4. After the producer is done (end, error, cancel) it frees its free list, and every chunk
 *      the consumer gives back is freed, so a finished stream holds at most what is queued.
 *   5. The consumer sees queued chunks before the end status; a cancel overrides both.
 *   6. The producer queues at most `window` chunks ahead of the consumer (window <= max_chunks).
 *
 * The window: a producer faster than its consumer would otherwise run up to the cap and then
 * cycle every chunk of it, so each chunk it fills has long left the CPU caches and the copy into
 * it goes to memory; measured on a streamed SQLite get, that made the producer's copy six times
 * dearer than the same copy into a buffer still in cache. So the producer stops at a window
 * (WINDOW_START, 1 MiB) and resumes when the consumer has taken half of it, and the chunks it
 * fills stay in the cache. The window doubles, up to the cap, each time the consumer runs dry
 * after the producer was held back by it: a source with stalls (a network, a busy database)
 * earns the read-ahead it needs to hide them. It halves again (not below WINDOW_START) after
 * WINDOW_CALM times at the window without the consumer running dry, so a stall long past does
 * not leave a steady stream cycling a cold buffer.
 *
 * Threads and locking
 *   - The producer thread runs producer_main: source reads (without any lock) and get_chunk.
 *   - The consumer thread runs next/read/close; any thread may run cancel and the getters.
 *   - lock guards the queue, the free list, nalloc, the done/status/errmsg of the producer and
 *     the two waiting flags. data_cond wakes the consumer (a chunk or the end is ready);
 *     space_cond wakes the producer (a chunk came back, or cancel). Each side signals only when
 *     the other is known to wait, so a stream that is never empty nor full makes no futex calls.
 *   - canceled is an atomic so that the producer's fill loop and the budget's stop callback can
 *     read it without the lock. held/peak are atomics mirroring nalloc for lock-free getters.
 *   - cur, cur_off, finished, final_rc and the consumer's errmsg copy belong to the consumer.
 *   - Lock order: stream lock, then the budget's lock (release under the stream lock is fine;
 *     the budget never calls back into a stream except through the atomic stop callback).
 *   - The source's read runs on the producer only; its cancel hook on the canceling thread.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bbuf_int.h"

#define ERRMSG_MAX   256
#define SPIN_MAX_NS  50000 /* see spin_for_data */
#define SPIN_MIN_NS  1000
#define WINDOW_START (1u << 20) /* bytes the producer may run ahead at first; see the header */
#define WINDOW_CALM  64		/* waits at the window, consumer never dry, before it halves */

struct chunk {
	struct chunk *next;
	size_t len;
	unsigned char data[];
};

struct dw_bbuf {
	dw_source src;
	dw_membudget *budget;
	const dw_clock *clock;
	size_t chunk_size;
	size_t max_chunks;
	uint64_t wait_ms;

	pthread_t thread;
	bool thread_started;
	bool sync_ready;

	pthread_mutex_t lock;
	pthread_cond_t data_cond;    /* consumer waits here */
	pthread_cond_t space_cond;   /* producer waits here */
	struct chunk *qhead, *qtail; /* protected by lock */
	struct chunk *free_list;     /* protected by lock */
	size_t nalloc;		     /* protected by lock */
	bool producer_done;	     /* protected by lock */
	int status;		     /* protected by lock: 0 end, <0 error; valid when done */
	bool consumer_waiting;	     /* protected by lock */
	bool producer_waiting;	     /* protected by lock */
	bool producer_at_window;     /* protected by lock: waiting because the window is full */
	bool window_hit;	     /* protected by lock: held back since the consumer ran dry */
	size_t window;		     /* protected by lock: chunks the producer may queue */
	size_t window_min;	     /* WINDOW_START in chunks (or the cap) */
	unsigned calm;		     /* protected by lock: window waits since the last dry spell */
	char producer_msg[ERRMSG_MAX]; /* protected by lock */

	_Atomic bool canceled;
	_Atomic size_t queued; /* chunks in the queue; written under lock, read for spinning */
	_Atomic bool ended;    /* mirrors producer_done, for spinning */
	_Atomic size_t held;
	_Atomic size_t peak;

	/* consumer's own */
	struct chunk *cur;
	size_t cur_off;
	bool finished;
	int final_rc;
	uint64_t spin_ns; /* current spin before sleeping, see spin_for_data */
	char errmsg[ERRMSG_MAX];
};

static _Atomic size_t g_streams_open;
static _Atomic size_t g_bytes_held;

void dw_bbuf_global_stats(size_t *streams_open, size_t *bytes_held)
{
	if (streams_open)
		*streams_open = atomic_load_explicit(&g_streams_open, memory_order_relaxed);
	if (bytes_held)
		*bytes_held = atomic_load_explicit(&g_bytes_held, memory_order_relaxed);
}

void dw_bbuf_config_default(dw_bbuf_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->chunk_size = DW_BBUF_DEFAULT_CHUNK;
	cfg->cap_bytes = DW_BBUF_DEFAULT_CAP;
	cfg->budget = NULL;
	cfg->budget_wait_ms = DW_BBUF_DEFAULT_WAIT_MS;
	cfg->clock = NULL;
}

/* nalloc changed by delta chunks. Caller holds lock. */
static void account_locked(dw_bbuf *b, long delta)
{
	size_t bytes = b->chunk_size;
	size_t held;

	if (delta > 0) {
		b->nalloc++;
		held = b->nalloc * bytes;
		atomic_store_explicit(&b->held, held, memory_order_relaxed);
		if (held > atomic_load_explicit(&b->peak, memory_order_relaxed))
			atomic_store_explicit(&b->peak, held, memory_order_relaxed);
		atomic_fetch_add_explicit(&g_bytes_held, bytes, memory_order_relaxed);
	} else {
		b->nalloc--;
		atomic_store_explicit(&b->held, b->nalloc * bytes, memory_order_relaxed);
		atomic_fetch_sub_explicit(&g_bytes_held, bytes, memory_order_relaxed);
	}
}

/* Free one chunk and give its memory back to the budget. Caller holds lock. */
static void drop_chunk_locked(dw_bbuf *b, struct chunk *c)
{
	dw_free(c);
	account_locked(b, -1);
	dw_membudget_release(b->budget, b->chunk_size);
}

/* Wake a waiting producer: at once if it waits for a chunk, at half the window if it waits on
 * the window (so wakes come in batches). Holds lock. */
static void wake_producer_locked(dw_bbuf *b)
{
	if (b->producer_waiting &&
	    (!b->producer_at_window ||
	     atomic_load_explicit(&b->queued, memory_order_relaxed) <= b->window / 2))
		pthread_cond_signal(&b->space_cond);
}

/* The consumer is done with c: recycle it, or free it (invariant 4, rule 4). Holds lock. */
static void release_locked(dw_bbuf *b, struct chunk *c)
{
	if (b->producer_done || (b->nalloc > 1 && dw__membudget_has_waiters(b->budget))) {
		drop_chunk_locked(b, c);
	} else {
		c->next = b->free_list;
		b->free_list = c;
	}
	wake_producer_locked(b);
}

static bool stop_if_canceled(void *arg)
{
	dw_bbuf *b = arg;

	return atomic_load_explicit(&b->canceled, memory_order_acquire);
}

static void set_producer_msg_locked(dw_bbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_producer_msg_locked(dw_bbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->producer_msg, sizeof(b->producer_msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		b->producer_msg[0] = '\0';
	/* a truncated message is still the useful start of it; snprintf NUL-terminated it */
}

/*
 * Get an empty chunk for the producer: from the free list, else a new one within the cap and
 * the budget, else wait for the consumer to give one back. Returns 0 or DW_ECANCELED,
 * DW_EBUDGET, -ENOMEM. Caller holds lock (it may be dropped and retaken).
 */
static int get_chunk_locked(dw_bbuf *b, struct chunk **out)
{
	struct chunk *c;
	int rc;

	for (;;) {
		if (atomic_load_explicit(&b->canceled, memory_order_acquire))
			return DW_ECANCELED;
		if (atomic_load_explicit(&b->queued, memory_order_relaxed) >= b->window) {
			b->window_hit = true; /* invariant 6 */
			b->producer_at_window = true;
			if (++b->calm >= WINDOW_CALM && b->window > b->window_min) {
				b->window /= 2;
				b->window = b->window < b->window_min ? b->window_min : b->window;
				b->calm = 0;
			}
			goto wait;
		}
		if (b->free_list) {
			c = b->free_list;
			b->free_list = c->next;
			*out = c;
			return 0;
		}
		if (b->nalloc < b->max_chunks) {
			if (b->nalloc == 0) {
				/* rule 2: nothing to recycle, so wait for the budget */
				pthread_mutex_unlock(&b->lock);
				rc = dw__membudget_acquire_stoppable(b->budget, b->chunk_size,
								     b->wait_ms, b->clock,
								     stop_if_canceled, b);
				pthread_mutex_lock(&b->lock);
				if (rc == DW_EBUDGET) {
					set_producer_msg_locked(
						b,
						"memory budget exhausted: no %zu bytes free after "
						"%llu ms (total %zu, in use %zu)",
						b->chunk_size, (unsigned long long)b->wait_ms,
						dw_membudget_total(b->budget),
						dw_membudget_in_use(b->budget));
					dw_log(DW_LOG_WARN, "bbuf", "budget_timeout",
					       "chunk=%zu wait_ms=%llu total=%zu in_use=%zu",
					       b->chunk_size, (unsigned long long)b->wait_ms,
					       dw_membudget_total(b->budget),
					       dw_membudget_in_use(b->budget));
				}
				if (rc < 0)
					return rc;
			} else if (dw__membudget_has_waiters(b->budget) ||
				   !dw__membudget_try_acquire(b->budget, b->chunk_size)) {
				/* rule 3: recycle what we have rather than wait for the budget */
				goto wait;
			}
			account_locked(b, +1);
			c = dw_malloc(sizeof(*c) + b->chunk_size);
			if (!c) {
				account_locked(b, -1);
				dw_membudget_release(b->budget, b->chunk_size);
				set_producer_msg_locked(b, "out of memory for a %zu-byte chunk",
							b->chunk_size);
				return -ENOMEM;
			}
			*out = c;
			return 0;
		}
wait:
		b->producer_waiting = true;
		pthread_cond_wait(&b->space_cond, &b->lock);
		b->producer_waiting = false;
		b->producer_at_window = false;
	}
}

static void *producer_main(void *arg)
{
	dw_bbuf *b = arg;
	struct chunk *c = NULL;
	size_t n;
	ssize_t r;
	int rc;

	/* one lock round per chunk: queue the full chunk and take the next empty one together */
	pthread_mutex_lock(&b->lock);
	for (;;) {
		rc = get_chunk_locked(b, &c);
		if (rc < 0) {
			r = rc;
			break;
		}
		pthread_mutex_unlock(&b->lock);
		n = 0;
		r = 1;
		while (n < b->chunk_size) {
			if (atomic_load_explicit(&b->canceled, memory_order_acquire)) {
				r = DW_ECANCELED;
				break;
			}
			r = b->src.read(b->src.ctx, c->data + n, b->chunk_size - n);
			if (r <= 0)
				break;
			if ((size_t)r > b->chunk_size - n) {
				pthread_mutex_lock(&b->lock);
				set_producer_msg_locked(
					b, "source returned %zu bytes for a %zu-byte read",
					(size_t)r, b->chunk_size - n);
				pthread_mutex_unlock(&b->lock);
				r = DW_EPROTO;
				break;
			}
			n += (size_t)r;
		}
		pthread_mutex_lock(&b->lock);
		if (n > 0) {
			c->len = n;
			c->next = NULL;
			if (b->qtail)
				b->qtail->next = c;
			else
				b->qhead = c;
			b->qtail = c;
			atomic_fetch_add_explicit(&b->queued, 1, memory_order_release);
		} else {
			c->next = b->free_list;
			b->free_list = c;
		}
		c = NULL;
		if (r <= 0)
			break;
		if (b->consumer_waiting)
			pthread_cond_signal(&b->data_cond);
	}

	b->status = (int)r;
	if (r < 0 && r != DW_ECANCELED && b->producer_msg[0] == '\0') {
		const char *m = b->src.errmsg ? b->src.errmsg(b->src.ctx) : NULL;

		if (m && *m)
			set_producer_msg_locked(b, "%s", m);
		else
			set_producer_msg_locked(b, "source read failed: %s", dw_strerror((int)r));
	}
	b->producer_done = true;
	atomic_store_explicit(&b->ended, true, memory_order_release);
	while (b->free_list) {
		c = b->free_list;
		b->free_list = c->next;
		drop_chunk_locked(b, c);
	}
	pthread_cond_broadcast(&b->data_cond);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static void free_stream(dw_bbuf *b)
{
	struct chunk *c;

	if (b->sync_ready) {
		pthread_mutex_lock(&b->lock);
		if (b->cur) {
			drop_chunk_locked(b, b->cur);
			b->cur = NULL;
		}
		while (b->qhead) {
			c = b->qhead;
			b->qhead = c->next;
			drop_chunk_locked(b, c);
		}
		while (b->free_list) {
			c = b->free_list;
			b->free_list = c->next;
			drop_chunk_locked(b, c);
		}
		pthread_mutex_unlock(&b->lock);
		pthread_cond_destroy(&b->space_cond);
		pthread_cond_destroy(&b->data_cond);
		pthread_mutex_destroy(&b->lock);
		atomic_fetch_sub_explicit(&g_streams_open, 1, memory_order_relaxed);
	}
	dw_source_close(&b->src);
	dw__membudget_unref(b->budget);
	dw_free(b);
}

int dw_bbuf_open(const dw_bbuf_config *cfg, dw_source src, dw_bbuf **out)
{
	dw_bbuf_config def;
	dw_bbuf *b = NULL;
	size_t total, cap;
	int rc = 0;

	*out = NULL;
	if (!cfg) {
		dw_bbuf_config_default(&def);
		cfg = &def;
	}
	if (!src.read || cfg->chunk_size == 0 || cfg->chunk_size > DW_BBUF_CHUNK_MAX ||
	    cfg->cap_bytes < cfg->chunk_size) {
		dw_source_close(&src);
		return DW_ECONFIG;
	}
	b = dw_calloc(1, sizeof(*b));
	if (!b) {
		dw_source_close(&src);
		return -ENOMEM;
	}
	b->src = src;
	b->budget = cfg->budget ? cfg->budget : dw_membudget_default();
	dw__membudget_ref(b->budget);
	b->clock = cfg->clock;
	b->chunk_size = cfg->chunk_size;
	b->wait_ms = cfg->budget_wait_ms;
	b->spin_ns = SPIN_MAX_NS;
	atomic_init(&b->canceled, false);
	atomic_init(&b->queued, 0);
	atomic_init(&b->ended, false);
	atomic_init(&b->held, 0);
	atomic_init(&b->peak, 0);

	/* rule 1: clamp the cap to the budget, refuse a chunk that can never fit */
	total = dw_membudget_total(b->budget);
	if (b->chunk_size > total) {
		dw_log(DW_LOG_WARN, "bbuf", "open_refused", "chunk=%zu budget_total=%zu",
		       b->chunk_size, total);
		rc = DW_EBUDGET;
		goto out;
	}
	cap = cfg->cap_bytes < total ? cfg->cap_bytes : total;
	b->max_chunks = cap / b->chunk_size;
	b->window = WINDOW_START / b->chunk_size;
	if (b->window < 2)
		b->window = 2;
	if (b->window > b->max_chunks)
		b->window = b->max_chunks;
	b->window_min = b->window;

	rc = -pthread_mutex_init(&b->lock, NULL);
	if (rc < 0)
		goto out;
	rc = -pthread_cond_init(&b->data_cond, NULL);
	if (rc < 0) {
		pthread_mutex_destroy(&b->lock);
		goto out;
	}
	rc = -pthread_cond_init(&b->space_cond, NULL);
	if (rc < 0) {
		pthread_cond_destroy(&b->data_cond);
		pthread_mutex_destroy(&b->lock);
		goto out;
	}
	b->sync_ready = true;
	atomic_fetch_add_explicit(&g_streams_open, 1, memory_order_relaxed);

	rc = -pthread_create(&b->thread, NULL, producer_main, b);
	if (rc < 0)
		goto out;
	b->thread_started = true;
	pthread_setname_np(b->thread, "dw-bbuf");
	*out = b;
out:
	if (rc < 0)
		free_stream(b);
	return rc;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static int cpu_count(void)
{
	static _Atomic int ncpu; /* 0: not read yet */
	int n = atomic_load_explicit(&ncpu, memory_order_relaxed);

	if (n == 0) {
		long v = sysconf(_SC_NPROCESSORS_ONLN);

		n = v > 0 && v < INT_MAX ? (int)v : 1;
		atomic_store_explicit(&ncpu, n, memory_order_relaxed);
	}
	return n;
}

/*
 * Before sleeping on data_cond, watch the queue for a while. A consumer that keeps up finds the
 * queue empty at almost every chunk; sleeping would then cost a futex wait here and a wake in the
 * producer for each chunk (on a VM, a wake of an idle vCPU costs tens of microseconds), which is
 * as much as reading a 64 KiB chunk from the page cache. The spin adapts per stream: it doubles
 * (up to SPIN_MAX_NS) each time data came while spinning and halves (down to SPIN_MIN_NS) each
 * time it did not, so a stream whose source is slow (a disk, a socket) stops burning CPU. At most
 * ncpu - 1 consumers spin at once in the process, and none on a single CPU.
 */
static void spin_for_data(dw_bbuf *b)
{
	static _Atomic int spinners;
	uint64_t until = 0;
	int ncpu = cpu_count();

	if (ncpu < 2 || atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) >= ncpu - 1)
		goto out;
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&b->queued, memory_order_acquire) ||
		    atomic_load_explicit(&b->ended, memory_order_acquire) ||
		    atomic_load_explicit(&b->canceled, memory_order_relaxed)) {
			if (b->spin_ns < SPIN_MAX_NS)
				b->spin_ns =
					b->spin_ns * 2 > SPIN_MAX_NS ? SPIN_MAX_NS : b->spin_ns * 2;
			break;
		}
		if ((i & 31) == 0) {
			uint64_t now = dw_clock_now(NULL);

			/* if the producer shares this CPU with us, let it run */
			sched_yield();

			if (!until) {
				until = now + b->spin_ns;
			} else if (now >= until) {
				if (b->spin_ns > SPIN_MIN_NS)
					b->spin_ns /= 2;
				break;
			}
		}
		cpu_relax();
	}
out:
	if (ncpu >= 2)
		atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
}

/*
 * Give back the consumer's chunk and take the next one into cur (cur_off 0). Returns 1, 0 at the
 * end, or the error; the end and errors are sticky.
 */
static int advance(dw_bbuf *b)
{
	int rc;

	if (b->finished)
		return b->final_rc;
	pthread_mutex_lock(&b->lock);
	if (b->cur) {
		release_locked(b, b->cur);
		b->cur = NULL;
	}
	if (!b->qhead && !b->producer_done && b->window_hit) {
		/* dry after the producer was held back: the window was too small (see the header)
		 */
		b->window = b->window * 2 < b->max_chunks ? b->window * 2 : b->max_chunks;
		b->window_hit = false;
		b->calm = 0;
		wake_producer_locked(b);
	}
	if (!b->qhead && !b->producer_done) {
		/* spin without the lock (and after giving the chunk back: the producer may need it)
		 */
		pthread_mutex_unlock(&b->lock);
		spin_for_data(b);
		pthread_mutex_lock(&b->lock);
	}
	for (;;) {
		if (atomic_load_explicit(&b->canceled, memory_order_acquire)) {
			rc = DW_ECANCELED;
			snprintf(b->errmsg, sizeof(b->errmsg), "stream canceled");
			break;
		}
		if (b->qhead) {
			b->cur = b->qhead;
			b->qhead = b->cur->next;
			atomic_fetch_sub_explicit(&b->queued, 1, memory_order_relaxed);
			if (!b->qhead)
				b->qtail = NULL;
			wake_producer_locked(b);
			b->cur_off = 0;
			rc = 1;
			break;
		}
		if (b->producer_done) {
			rc = b->status;
			memcpy(b->errmsg, b->producer_msg, sizeof(b->errmsg));
			break;
		}
		b->consumer_waiting = true;
		pthread_cond_wait(&b->data_cond, &b->lock);
		b->consumer_waiting = false;
	}
	pthread_mutex_unlock(&b->lock);
	if (rc <= 0) {
		b->finished = true;
		b->final_rc = rc;
	}
	return rc;
}

int dw_bbuf_next(dw_bbuf *b, const void **chunk, size_t *len)
{
	int rc;

	*chunk = NULL;
	*len = 0;
	if (!b->cur || b->cur_off >= b->cur->len) {
		rc = advance(b);
		if (rc <= 0)
			return rc;
	}
	*chunk = b->cur->data + b->cur_off;
	*len = b->cur->len - b->cur_off;
	b->cur_off = b->cur->len;
	return 1;
}

ssize_t dw_bbuf_read(dw_bbuf *b, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t done = 0, n;
	int rc;

	if (len == 0)
		return 0;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	while (done < len) {
		if (!b->cur || b->cur_off >= b->cur->len) {
			rc = advance(b);
			if (rc <= 0) {
				if (done > 0)
					break; /* the sticky end/error comes with the next call */
				return rc;
			}
		}
		n = b->cur->len - b->cur_off;
		if (n > len - done)
			n = len - done;
		memcpy(p + done, b->cur->data + b->cur_off, n);
		b->cur_off += n;
		done += n;
	}
	return (ssize_t)done;
}

void dw_bbuf_cancel(dw_bbuf *b)
{
	if (!b)
		return;
	atomic_store_explicit(&b->canceled, true, memory_order_release);
	pthread_mutex_lock(&b->lock);
	pthread_cond_broadcast(&b->space_cond);
	pthread_cond_broadcast(&b->data_cond);
	pthread_mutex_unlock(&b->lock);
	dw__membudget_wake(b->budget);
	if (b->src.cancel)
		b->src.cancel(b->src.ctx);
}

void dw_bbuf_close(dw_bbuf *b)
{
	if (!b)
		return;
	dw_bbuf_cancel(b);
	if (b->thread_started)
		pthread_join(b->thread, NULL);
	free_stream(b);
}

size_t dw_bbuf_held(dw_bbuf *b)
{
	return atomic_load_explicit(&b->held, memory_order_relaxed);
}

size_t dw_bbuf_peak(dw_bbuf *b)
{
	return atomic_load_explicit(&b->peak, memory_order_relaxed);
}

size_t dw_bbuf_cap(dw_bbuf *b)
{
	return b->max_chunks * b->chunk_size;
}

const char *dw_bbuf_errmsg(dw_bbuf *b)
{
	return b->errmsg;
}
