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
 * Parallel producers (a source with read_part and workers > 1; plan_workers decides at open):
 * workers threads run worker_main instead of the one producer. A worker takes all part_chunks
 * chunks of a part (get_part_chunks_locked, all or nothing), then claims the next part number,
 * fills the chunks with read_part without the lock, and leaves the finished part in its slot
 * (parts[w]); publish_locked queues finished parts strictly in part order, so the consumer sees
 * the bytes of one producer. A worker whose part is not next waits on part_cond until it is
 * queued (or the stream ends). Further invariants:
 *   7. Every claimed part holds all its chunks, so it completes: the part the queue waits for is
 *      always being read or finished, and the stream cannot deadlock on its own chunks.
 *   8. nalloc >= floor_chunks (one part per worker, charged at open) while workers run: a worker
 *      never waits for the budget, only for chunks the consumer gives back.
 *   9. The queue's end or error is the first part that ended or failed; parts after it are
 *      dropped. The consumer is woken once min(2 * floor_chunks, nalloc) chunks are queued
 *      (or at the end), not per part, and looks again every PARTS_WAIT_NS while it waits, so a
 *      part that stalls delays the chunks before it by 1 ms at most; the window is at least 4 *
 * floor_chunks (or the cap, at least 2 * floor_chunks), so the workers always can queue that many.
 * Measured with perf on a streamed get of bench/db.sh's 4 GiB SQLite object, 2 CPUs: waking
 * the consumer per part made a context switch every 170 KiB, and a worker writing into chunks the
 * other worker filled moved every cache line between CPUs; hence the batched wake and each worker
 * taking its own chunks first.
 *
 * Threads and locking
 *   - The producer thread runs producer_main: source reads (without any lock) and get_chunk.
 *     With parallel producers, each worker thread runs worker_main likewise; parts[w] belongs
 *     to worker w while not full, and to the lock while full. next_part, publish_next,
 *     workers_alive and the waiting counters are under lock; the last worker to end frees the
 *     free list (workers_end_locked).
 *   - The consumer thread runs next/read/close; any thread may run cancel and the getters.
 *   - lock guards the queue, the free list, nalloc, the done/status/errmsg of the producer and
 *     the two waiting flags. data_cond wakes the consumer (a chunk or the end is ready);
 *     space_cond wakes the producer (a chunk came back, or cancel); part_cond wakes workers
 *     whose finished part was queued. Each side signals only when
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
#include <time.h>
#include <unistd.h>

#include "bbuf_int.h"

#define ERRMSG_MAX    256
#define SPIN_MAX_NS   50000 /* see spin_for_data */
#define SPIN_MIN_NS   1000
#define WINDOW_START  (1u << 20) /* bytes the producer may run ahead at first; see the header */
#define WINDOW_CALM   64	 /* waits at the window, consumer never dry, before it halves */
#define PARTS_WAIT_NS 1000000L	 /* parallel producers: longest a queued chunk waits (advance) */

struct chunk {
	struct chunk *next;
	size_t len;
	unsigned owner; /* parallel producers: the worker that filled it last */
	unsigned char data[];
};

/* A worker's finished part, waiting to be queued in order (parallel producers). */
struct part {
	bool full;
	uint64_t part;
	ssize_t rc; /* bytes, 0 end, < 0 error */
	char msg[ERRMSG_MAX];
	struct chunk **c; /* part_chunks of them */
};

struct dw_bbuf {
	dw_source src;
	dw_membudget *budget;
	const dw_clock *clock;
	size_t chunk_size;
	size_t max_chunks;
	uint64_t wait_ms;

	pthread_t threads[DW_BBUF_WORKERS_MAX];
	unsigned threads_started;
	bool sync_ready;

	/* Parallel producers (see "Parallel producers" below); nworkers is 1 otherwise. */
	unsigned nworkers;
	size_t part_chunks;	    /* chunks per part */
	size_t floor_chunks;	    /* chunks kept until the producers end (1 when single) */
	struct part *parts;	    /* nworkers of them; protected by lock */
	uint64_t next_part;	    /* protected by lock: the next part to claim */
	uint64_t publish_next;	    /* protected by lock: the next part to queue */
	unsigned workers_alive;	    /* protected by lock */
	unsigned producers_waiting; /* protected by lock: workers waiting on space_cond */
	unsigned publish_waiting;   /* protected by lock: workers waiting on part_cond */
	pthread_cond_t part_cond;   /* a worker waits here for its finished part to be queued */
	struct worker_arg {
		dw_bbuf *b;
		unsigned w;
	} wargs[DW_BBUF_WORKERS_MAX];

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
static _Atomic int g_source_threads; /* parallel producers beyond one per stream, running */

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
	     atomic_load_explicit(&b->queued, memory_order_relaxed) <= b->window / 2)) {
		if (b->nworkers > 1)
			pthread_cond_broadcast(&b->space_cond);
		else
			pthread_cond_signal(&b->space_cond);
	}
}

/* The consumer is done with c: recycle it, or free it (invariant 4, rule 4). Holds lock. */
static void release_locked(dw_bbuf *b, struct chunk *c)
{
	if (b->producer_done ||
	    (b->nalloc > b->floor_chunks && dw__membudget_has_waiters(b->budget))) {
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
 * True if the producer must wait because `window` chunks are queued (invariant 6); a long calm
 * at the window halves it (see the header). Holds lock.
 */
static bool at_window_locked(dw_bbuf *b)
{
	if (atomic_load_explicit(&b->queued, memory_order_relaxed) < b->window)
		return false;
	b->window_hit = true;
	b->producer_at_window = true;
	if (++b->calm >= WINDOW_CALM && b->window > b->window_min) {
		b->window /= 2;
		b->window = b->window < b->window_min ? b->window_min : b->window;
		b->calm = 0;
	}
	return true;
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
		if (at_window_locked(b))
			goto wait;
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

/* Queue a filled chunk of len bytes for the consumer. Holds lock. */
static void enqueue_locked(dw_bbuf *b, struct chunk *c, size_t len)
{
	c->len = len;
	c->next = NULL;
	if (b->qtail)
		b->qtail->next = c;
	else
		b->qhead = c;
	b->qtail = c;
	atomic_fetch_add_explicit(&b->queued, 1, memory_order_release);
}

/* No producer reads any more: the end is final and the free list goes (invariant 4). Holds
 * lock. */
static void end_producing_locked(dw_bbuf *b)
{
	struct chunk *c;

	b->producer_done = true;
	atomic_store_explicit(&b->ended, true, memory_order_release);
	while (b->free_list) {
		c = b->free_list;
		b->free_list = c->next;
		drop_chunk_locked(b, c);
	}
	pthread_cond_broadcast(&b->data_cond);
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
			enqueue_locked(b, c, n);
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
	end_producing_locked(b);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- parallel producers ------------------------------------------------------------------ */

static void space_wait_locked(dw_bbuf *b)
{
	b->producers_waiting++;
	b->producer_waiting = true;
	pthread_cond_wait(&b->space_cond, &b->lock);
	if (--b->producers_waiting == 0) {
		b->producer_waiting = false;
		b->producer_at_window = false;
	}
}

/*
 * Take all part_chunks chunks of a part at once, or none: from the free list, else new ones the
 * budget has room for now (rule 3; the floor charged at open means a worker never waits for the
 * budget itself), else wait for the consumer to give chunks back. Returns 0, 1 if the stream
 * ended meanwhile, or DW_ECANCELED, -ENOMEM. Caller holds lock.
 */
static int get_part_chunks_locked(dw_bbuf *b, unsigned w, struct chunk **out)
{
	for (;;) {
		struct chunk **pp = &b->free_list;
		size_t got = 0;

		if (atomic_load_explicit(&b->canceled, memory_order_acquire))
			return DW_ECANCELED;
		if (b->producer_done)
			return 1;
		if (at_window_locked(b)) {
			space_wait_locked(b);
			continue;
		}
		/* this worker's own chunks first: they are still in its CPU's caches, while
		 * writing into one the other worker filled moves every line between CPUs */
		while (got < b->part_chunks && *pp) {
			if ((*pp)->owner == w) {
				out[got++] = *pp;
				*pp = (*pp)->next;
			} else {
				pp = &(*pp)->next;
			}
		}
		while (got < b->part_chunks && b->free_list) {
			out[got] = b->free_list;
			b->free_list = out[got]->next;
			got++;
		}
		while (got < b->part_chunks && b->nalloc < b->max_chunks &&
		       !dw__membudget_has_waiters(b->budget) &&
		       dw__membudget_try_acquire(b->budget, b->chunk_size)) {
			account_locked(b, +1);
			out[got] = dw_malloc(sizeof(struct chunk) + b->chunk_size);
			if (!out[got]) {
				account_locked(b, -1);
				dw_membudget_release(b->budget, b->chunk_size);
				break;
			}
			got++;
		}
		if (got == b->part_chunks)
			return 0;
		while (got > 0) { /* all or nothing */
			got--;
			out[got]->next = b->free_list;
			b->free_list = out[got];
		}
		if (b->nalloc < b->floor_chunks) { /* a malloc failed above */
			set_producer_msg_locked(b, "out of memory for a %zu-byte chunk",
						b->chunk_size);
			return -ENOMEM;
		}
		space_wait_locked(b);
	}
}

/* Put the chunks of a part back on the free list. Holds lock. */
static void part_unuse_locked(dw_bbuf *b, struct part *pt, size_t from)
{
	for (size_t i = from; i < b->part_chunks; i++) {
		pt->c[i]->next = b->free_list;
		b->free_list = pt->c[i];
		pt->c[i] = NULL;
	}
}

/*
 * Queue every finished part that is next in order. A part that ends the content (0) or failed
 * ends the stream: everything before it is queued already, so the consumer sees all bytes
 * before the end or the error (invariant 5). Holds lock.
 */
static void publish_locked(dw_bbuf *b)
{
	bool progress = true;

	while (progress && !b->producer_done) {
		progress = false;
		for (unsigned w = 0; w < b->nworkers; w++) {
			struct part *pt = &b->parts[w];
			size_t used = 0;

			if (!pt->full || pt->part != b->publish_next)
				continue;
			if (pt->rc <= 0) {
				b->status = (int)pt->rc;
				if (pt->rc < 0 && b->producer_msg[0] == '\0')
					memcpy(b->producer_msg, pt->msg, sizeof(b->producer_msg));
				b->producer_done = true;
				atomic_store_explicit(&b->ended, true, memory_order_release);
			} else {
				for (;
				     used < b->part_chunks && (size_t)pt->rc > used * b->chunk_size;
				     used++) {
					struct chunk *c = pt->c[used];
					size_t left = (size_t)pt->rc - used * b->chunk_size;

					enqueue_locked(b, c,
						       left < b->chunk_size ? left : b->chunk_size);
					pt->c[used] = NULL;
				}
				b->publish_next++;
				progress = true;
			}
			part_unuse_locked(b, pt, used);
			pt->full = false;
			/* wake the consumer once a worker's worth of parts is queued, not per part
			 * (the window holds twice that: see plan_workers) */
			if ((b->consumer_waiting &&
			     atomic_load_explicit(&b->queued, memory_order_relaxed) >=
				     (2 * b->floor_chunks < b->nalloc ? 2 * b->floor_chunks
								      : b->nalloc)) ||
			    b->producer_done)
				pthread_cond_broadcast(&b->data_cond);
			break;
		}
	}
	if (b->publish_waiting)
		pthread_cond_broadcast(&b->part_cond);
}

/* The last worker is gone: free the free list (invariant 4). Holds lock. */
static void workers_end_locked(dw_bbuf *b)
{
	if (!b->producer_done)
		b->status = DW_ECANCELED;
	end_producing_locked(b);
	atomic_fetch_sub_explicit(&g_source_threads, (int)b->nworkers - 1, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	dw_bbuf *b = ((struct worker_arg *)arg)->b;
	unsigned w = ((struct worker_arg *)arg)->w;
	struct part *pt = &b->parts[w];
	void *bufs[64];
	ssize_t r = 0;
	int rc;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		uint64_t part;

		rc = get_part_chunks_locked(b, w, pt->c);
		if (rc != 0) {
			r = rc > 0 ? 0 : rc;
			break;
		}
		part = b->next_part++;
		pthread_mutex_unlock(&b->lock);
		for (size_t i = 0; i < b->part_chunks; i++) {
			pt->c[i]->owner = w;
			bufs[i] = pt->c[i]->data;
		}
		r = atomic_load_explicit(&b->canceled, memory_order_acquire)
			    ? DW_ECANCELED
			    : b->src.read_part(b->src.ctx, w, part, bufs, b->part_chunks,
					       b->chunk_size);
		pt->msg[0] = '\0';
		if (r > (ssize_t)(b->part_chunks * b->chunk_size)) {
			snprintf(pt->msg, sizeof(pt->msg),
				 "source returned %zd bytes for a part of at most %zu", r,
				 b->part_chunks * b->chunk_size);
			r = DW_EPROTO;
		} else if (r < 0 && r != DW_ECANCELED) {
			const char *m = b->src.errmsg ? b->src.errmsg(b->src.ctx) : NULL;

			snprintf(pt->msg, sizeof(pt->msg), "%s", m && *m ? m : dw_strerror((int)r));
		} else if (r == DW_ECANCELED) {
			snprintf(pt->msg, sizeof(pt->msg), "stream canceled");
		}
		pthread_mutex_lock(&b->lock);
		pt->part = part;
		pt->rc = r;
		pt->full = true;
		publish_locked(b);
		while (pt->full && !b->producer_done &&
		       !atomic_load_explicit(&b->canceled, memory_order_acquire)) {
			b->publish_waiting++;
			pthread_cond_wait(&b->part_cond, &b->lock);
			b->publish_waiting--;
		}
		if (pt->full) { /* the stream ended before this part's turn */
			part_unuse_locked(b, pt, 0);
			pt->full = false;
		}
		if (r <= 0 || b->producer_done)
			break;
	}
	if (!b->producer_done) { /* canceled, or no memory for a part */
		b->status = r < 0 ? (int)r : DW_ECANCELED;
		b->producer_done = true;
		atomic_store_explicit(&b->ended, true, memory_order_release);
	}
	if (--b->workers_alive == 0)
		workers_end_locked(b);
	pthread_cond_broadcast(&b->data_cond);
	pthread_cond_broadcast(&b->space_cond);
	pthread_cond_broadcast(&b->part_cond);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/*
 * Decide at open whether the stream reads with parallel producers: the source offers it, a part
 * needs at most 64 chunks, the cap holds two parts per worker, and the budget has room for one
 * part per worker now. Those chunks are allocated here and kept (floor_chunks) until the
 * producers end. Returns 0 (mode decided; -ENOMEM aside, a refusal just means one producer).
 */
static int plan_workers(dw_bbuf *b)
{
	unsigned w = b->src.workers;
	size_t pc, floor;

	b->nworkers = 1;
	b->floor_chunks = 1;
	if (!b->src.read_part || w < 2 || b->src.part_bytes == 0)
		return 0;
	if (w > DW_BBUF_WORKERS_MAX)
		w = DW_BBUF_WORKERS_MAX;
	pc = (b->src.part_bytes + b->chunk_size - 1) / b->chunk_size;
	if (pc > 64 || b->max_chunks < 2 * w * pc)
		return 0;
	floor = w * pc;
	if (!dw__membudget_try_acquire(b->budget, floor * b->chunk_size))
		return 0;
	b->parts = dw_calloc(w, sizeof(*b->parts));
	if (!b->parts)
		goto nomem;
	for (unsigned i = 0; i < w; i++) {
		b->parts[i].c = dw_calloc(pc, sizeof(struct chunk *));
		if (!b->parts[i].c)
			goto nomem;
	}
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < floor; i++) {
		struct chunk *c = dw_malloc(sizeof(*c) + b->chunk_size);

		if (!c) {
			pthread_mutex_unlock(&b->lock);
			goto nomem;
		}
		account_locked(b, +1); /* charged above */
		c->owner = (unsigned)(i / pc);
		c->next = b->free_list;
		b->free_list = c;
	}
	pthread_mutex_unlock(&b->lock);
	b->nworkers = w;
	b->part_chunks = pc;
	b->floor_chunks = floor;
	b->workers_alive = w;
	if (b->window < 4 * floor) /* room for every worker's part ahead of the consumer */
		b->window = b->window_min = 4 * floor < b->max_chunks ? 4 * floor : b->max_chunks;
	return 0;
nomem:
	/* chunks already made are on the free list and charged; free_stream gives them back */
	dw_membudget_release(b->budget, (floor - b->nalloc) * b->chunk_size);
	return -ENOMEM;
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
		pthread_cond_destroy(&b->part_cond);
		pthread_cond_destroy(&b->space_cond);
		pthread_cond_destroy(&b->data_cond);
		pthread_mutex_destroy(&b->lock);
		atomic_fetch_sub_explicit(&g_streams_open, 1, memory_order_relaxed);
	}
	if (b->parts) {
		for (unsigned i = 0; i < b->src.workers && i < DW_BBUF_WORKERS_MAX; i++)
			dw_free(b->parts[i].c);
		dw_free(b->parts);
	}
	dw_source_close(&b->src);
	dw__membudget_unref(b->budget);
	dw_free(b);
}

int dw_bbuf_open(const dw_bbuf_config *cfg, dw_source src, dw_bbuf **out)
{
	dw_bbuf_config def;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
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

	/* adaptive: the lock is held for a few instructions at a time, so a thread that finds it
	 * taken spins briefly rather than sleeping (a futex sleep and wake per chunk otherwise) */
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
	rc = -pthread_mutex_init(&b->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc < 0)
		goto out;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = -pthread_cond_init(&b->data_cond, &ca);
	pthread_condattr_destroy(&ca);
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
	rc = -pthread_cond_init(&b->part_cond, NULL);
	if (rc < 0) {
		pthread_cond_destroy(&b->space_cond);
		pthread_cond_destroy(&b->data_cond);
		pthread_mutex_destroy(&b->lock);
		goto out;
	}
	b->sync_ready = true;
	atomic_fetch_add_explicit(&g_streams_open, 1, memory_order_relaxed);

	rc = plan_workers(b);
	if (rc < 0)
		goto out;
	if (b->nworkers == 1) {
		rc = -pthread_create(&b->threads[0], NULL, producer_main, b);
		if (rc < 0)
			goto out;
		b->threads_started = 1;
		pthread_setname_np(b->threads[0], "dw-bbuf");
	} else {
		atomic_fetch_add_explicit(&g_source_threads, (int)b->nworkers - 1,
					  memory_order_relaxed);
		for (unsigned w = 0; w < b->nworkers; w++) {
			b->wargs[w].b = b;
			b->wargs[w].w = w;
			rc = -pthread_create(&b->threads[w], NULL, worker_main, &b->wargs[w]);
			if (rc < 0) {
				/* the workers never started count as gone; close stops the others
				 */
				pthread_mutex_lock(&b->lock);
				b->workers_alive -= b->nworkers - w;
				if (b->workers_alive == 0)
					workers_end_locked(b);
				pthread_mutex_unlock(&b->lock);
				break;
			}
			b->threads_started++;
			pthread_setname_np(b->threads[w], "dw-bbuf");
		}
		if (b->threads_started == 0)
			goto out;
		if (rc < 0) {
			*out = b;
			dw_bbuf_close(b);
			*out = NULL;
			return rc;
		}
	}
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
 * ncpu - 1 consumers spin at once in the process, one fewer for each parallel producer beyond
 * the first that is running (it needs the CPU), and none on a single CPU.
 */
static void spin_for_data(dw_bbuf *b)
{
	static _Atomic int spinners;
	uint64_t until = 0;
	int ncpu = cpu_count();

	if (ncpu < 2 ||
	    atomic_fetch_add_explicit(&spinners, 1, memory_order_relaxed) >=
		    ncpu - 1 - atomic_load_explicit(&g_source_threads, memory_order_relaxed))
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
		if (b->nworkers > 1) {
			/* woken in batches (invariant 9), so look again after PARTS_WAIT_NS: a
			 * part that stalls must not hold back the chunks queued before it */
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += PARTS_WAIT_NS;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&b->data_cond, &b->lock, &ts);
		} else {
			pthread_cond_wait(&b->data_cond, &b->lock);
		}
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
	pthread_cond_broadcast(&b->part_cond);
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
	for (unsigned i = 0; i < b->threads_started; i++)
		pthread_join(b->threads[i], NULL);
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
