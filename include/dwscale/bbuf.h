/* SPDX-License-Identifier: MIT */
/*
 * BoundedBufferStream (dw_bbuf): stream any byte source through a bounded set of chunks, and the
 * process-wide memory budget (dw_membudget) that all open streams share.
 *
 * A stream wraps a dw_source (a read callback: file, SQLite blob, PostgreSQL large object,
 * socket). dw_bbuf_open starts a producer thread owned by the stream (or several: see
 * "Parallel producers"). The producer fills chunks
 * (64 KiB by default) from the source and queues them; the consumer takes them in order with
 * dw_bbuf_next (zero copy) or dw_bbuf_read (copy out). The stream never holds more than cap_bytes
 * of chunk memory (64 MiB by default): when every chunk it may have is queued or in the
 * consumer's hand, the producer stops reading until the consumer gives one back (backpressure).
 *
 *   source --read--> [producer thread] --> queue of full chunks --> dw_bbuf_next() --> consumer
 *                           ^                                              |
 *                           +------------ free list (recycled) <-----------+
 *
 * Read-ahead window. Below the cap, the producer runs at most a window ahead of the consumer:
 * 1 MiB at first, doubled (up to the cap) each time the consumer runs dry after the producer was
 * held back by the window, halved again after a long calm. A steady stream so cycles a small set
 * of chunks that stay in the CPU caches; a source with stalls earns the read-ahead that hides
 * them. The cap is the hard bound; the window only decides how much of it a stream uses.
 *
 * Memory accounting. "Held" bytes are chunk buffers the stream has allocated: queued, in the
 * consumer's hand, or kept on the stream's free list for reuse (chunks are recycled, not
 * malloc'd per chunk). Each chunk is charged chunk_size bytes against the stream's memory budget
 * when it is allocated and given back when it is freed. Chunks are allocated lazily, so a
 * consumer that keeps up holds two or three chunks whatever the object's size.
 *
 * Budget rules.
 *   1. A stream's cap is clamped at open to the budget's total (rounded down to whole chunks);
 *      a stream whose chunk_size exceeds the budget's total is refused with DW_EBUDGET.
 *   2. A stream that holds no chunk waits for the budget up to budget_wait_ms, then fails with
 *      DW_EBUDGET (the consumer receives it after any chunks already queued; dw_bbuf_errmsg
 *      says how much was asked for and how much was in use).
 *   3. A stream that already holds a chunk never waits for the budget and never fails on it: it
 *      grows when the budget has room, and otherwise recycles what it has (it gets slower, not
 *      stuck).
 *   4. While any stream is waiting for the budget, streams that hold more than one chunk give
 *      chunks back to the budget as their consumers release them, instead of keeping them on
 *      their free list, so many streams sharing a small budget all make progress.
 *   The budget's in-use total never exceeds its total (unless the total is lowered below the
 *   current use at run time; then no new chunk is granted until use falls below it).
 *
 * Filling. The producer fills each chunk fully before queueing it; only the last chunk before
 * the end (or an error) may be short. A source whose read returns short counts (a socket) is
 * read again until the chunk is full, so data reaches the consumer in chunk_size pieces.
 *
 * Waiting. A consumer that finds no chunk ready watches the queue briefly (up to 50 us, less
 * for streams whose source has been slow) before it sleeps, because a sleep and wake per chunk
 * costs as much as reading a chunk from the page cache; at most one fewer consumer than there are
 * CPUs spins at a time.
 *
 * Parallel producers. A source that can read its content in independent parts (read_part,
 * workers > 1; a database object's rows) is read by that many producer threads at once, each
 * filling the chunks of one part, while the stream queues the parts strictly in order: the
 * consumer sees the same bytes as from one producer. A stream does this only when it can charge
 * the budget for workers parts of chunks at once without waiting (it then keeps that many
 * chunks until the producers end) and its cap holds twice as many; otherwise it reads with one
 * producer. A worker takes all the chunks of a part before it claims the part, so every claimed
 * part completes and the stream cannot deadlock on its own chunks.
 *
 * Errors and cancellation.
 *   - A source read that returns a negative code ends the stream: the consumer first receives
 *     every chunk produced before it (including a partly filled one), then that code.
 *   - dw_bbuf_cancel (any thread) stops the stream: the consumer's next call returns
 *     DW_ECANCELED, a producer blocked on backpressure or on the budget wakes at once, and the
 *     source's cancel hook (if any) is called to interrupt a read in progress.
 *   - The stream's error is sticky: once next/read returned 0 or an error, they keep returning it.
 *
 * Threads. dw_bbuf_next, dw_bbuf_read and dw_bbuf_close are for one consumer thread (they must
 * not race each other). dw_bbuf_cancel, dw_bbuf_held, dw_bbuf_peak and every dw_membudget
 * function are thread-safe. The source's read and close run on the producer thread (close runs
 * on the thread calling dw_bbuf_close, after every producer ended); read_part runs on the
 * workers, concurrently; its cancel hook may run on any thread.
 */
#ifndef DWSCALE_BBUF_H
#define DWSCALE_BBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sources ------------------------------------------------------------------------------ */

/*
 * A byte source. read fills up to len bytes into buf and returns the count (> 0), 0 at the end,
 * or a negative code (-errno or DW_E*) on failure; it may block. close (may be NULL) releases
 * ctx; it is called exactly once by whoever took the source. cancel (may be NULL) must make a
 * read that is blocked, or the next one, return soon (typically DW_ECANCELED); it may be called
 * from any thread, more than once, and concurrently with read. A source without a cancel hook
 * whose read blocks forever makes dw_bbuf_close wait for that read. errmsg (may be NULL) says
 * why the last read failed; a stream calls it on the reading thread right after the failure and
 * keeps a copy for dw_bbuf_errmsg.
 */
typedef struct dw_source {
	ssize_t (*read)(void *ctx, void *buf, size_t len);
	void (*close)(void *ctx);
	void *ctx;
	void (*cancel)(void *ctx);
	const char *(*errmsg)(void *ctx);
	/*
	 * Optional parallel reading ("Parallel producers" above). The content is cut into parts
	 * of at most part_bytes; read_part fills part number `part` (counted from 0) into nbufs
	 * buffers of chunk_size bytes, in order, each full but the last it uses, and returns the
	 * part's byte count (> 0), 0 if the content ends before this part, or a negative code.
	 * Up to `workers` threads call it at once, each with its own worker number
	 * (0 .. workers-1), on parts in increasing order per worker. errmsg is called on the
	 * failing worker's thread. read is still required: it is used when the stream reads with
	 * a single producer.
	 */
	ssize_t (*read_part)(void *ctx, unsigned worker, uint64_t part, void *const *bufs,
			     size_t nbufs, size_t chunk_size);
	size_t part_bytes;
	unsigned workers; /* <= DW_BBUF_WORKERS_MAX; 0 or 1: read only */
} dw_source;

#define DW_BBUF_WORKERS_MAX 8

/*
 * Read from a file descriptor. With close_fd the fd is closed by the source's close. A regular
 * file is read with plain read(2) (advised sequential); any other fd (pipe, socket, tty) is
 * polled together with an eventfd so that cancel interrupts a blocked read, and a non-blocking fd
 * works too. -EBADF for a bad fd, -errno if the eventfd cannot be made, -ENOMEM. On failure the
 * fd is left open (whatever close_fd says) and *out is zeroed.
 */
int dw_source_from_fd(int fd, bool close_fd, dw_source *out);

/* Open path read-only and read it (the source closes the fd). -errno from open(2), -ENOMEM. */
int dw_source_from_path(const char *path, dw_source *out);

/*
 * Read len bytes of memory at data. The memory is not copied: it must stay valid until the
 * source is closed. data may be NULL only when len is 0. DW_EUSAGE for NULL data, -ENOMEM.
 */
int dw_source_from_mem(const void *data, size_t len, dw_source *out);

/* Close a source that was not handed to dw_bbuf_open (calls its close hook). NULL-safe. */
void dw_source_close(dw_source *src);

/* ---- memory budget ------------------------------------------------------------------------ */

typedef struct dw_membudget dw_membudget;

#define DW_MEMBUDGET_DEFAULT_TOTAL (256u << 20) /* the process-wide default budget */

/*
 * Create a budget of total_bytes (> 0, else DW_ELIMIT). -ENOMEM. A budget lives until it is
 * closed and every stream using it is closed: closing it while streams still use it is safe.
 */
int dw_membudget_open(size_t total_bytes, dw_membudget **out);
/* Drop the caller's reference. NULL and the default budget are no-ops. */
void dw_membudget_close(dw_membudget *b);

/* The process-wide default budget (DW_MEMBUDGET_DEFAULT_TOTAL until changed). Never NULL. */
dw_membudget *dw_membudget_default(void);

/*
 * Change the total at run time (> 0, else DW_ELIMIT). Raising it wakes waiters; lowering it below
 * the bytes in use takes effect as use falls (nothing already granted is taken back).
 */
int dw_membudget_set_total(dw_membudget *b, size_t total_bytes);
size_t dw_membudget_total(dw_membudget *b);
size_t dw_membudget_in_use(dw_membudget *b);
/* Highest in_use since open or the last dw_membudget_reset_peak. */
size_t dw_membudget_peak(dw_membudget *b);
void dw_membudget_reset_peak(dw_membudget *b);
/* Number of acquisitions waiting right now, and how many have timed out since open. */
size_t dw_membudget_waiting(dw_membudget *b);
uint64_t dw_membudget_timeouts(dw_membudget *b);

#define DW_MEMBUDGET_WAIT_FOREVER UINT64_MAX

/*
 * Charge bytes to the budget, for memory a caller manages itself (dw_bbuf does this for its
 * chunks). Waits up to wait_ms (0: do not wait; DW_MEMBUDGET_WAIT_FOREVER) measured on clock
 * (NULL = real clock) for room, then fails with DW_EBUDGET. bytes larger than the total fail at
 * once with DW_EBUDGET. Every successful acquire must be matched by a release of the same size.
 */
int dw_membudget_acquire(dw_membudget *b, size_t bytes, uint64_t wait_ms, const dw_clock *clock);
void dw_membudget_release(dw_membudget *b, size_t bytes);

/* ---- bounded buffer stream ---------------------------------------------------------------- */

typedef struct dw_bbuf dw_bbuf;

#define DW_BBUF_DEFAULT_CHUNK	(64u << 10)
#define DW_BBUF_DEFAULT_CAP	(64u << 20)
#define DW_BBUF_DEFAULT_WAIT_MS 30000
#define DW_BBUF_CHUNK_MAX	(64u << 20)

typedef struct dw_bbuf_config {
	size_t chunk_size;	 /* bytes per chunk, 1 .. DW_BBUF_CHUNK_MAX; default 64 KiB */
	size_t cap_bytes;	 /* most chunk memory held, >= chunk_size; default 64 MiB */
	dw_membudget *budget;	 /* NULL = dw_membudget_default() */
	uint64_t budget_wait_ms; /* see budget rule 2; default 30 s; 0 = no wait */
	const dw_clock *clock;	 /* measures budget_wait_ms; NULL = real clock */
} dw_bbuf_config;

void dw_bbuf_config_default(dw_bbuf_config *cfg);

/*
 * Open a stream over src and start its producer. The stream takes src in every case: on failure
 * src has been closed. DW_ECONFIG for a bad chunk_size or cap_bytes < chunk_size (or NULL
 * src.read), DW_EBUDGET if chunk_size exceeds the budget's total, -ENOMEM, -errno if the thread
 * cannot be started. On failure *out is NULL.
 */
int dw_bbuf_open(const dw_bbuf_config *cfg, dw_source src, dw_bbuf **out);

/*
 * Take the next chunk: returns 1 with *chunk and *len set (len > 0; the bytes stay valid until the
 * next call on this stream or close), 0 at the end, or a negative code: the source's error,
 * DW_ECANCELED, or DW_EBUDGET. Blocks until a chunk is ready. If dw_bbuf_read consumed part of
 * a chunk, next returns the rest of that chunk first.
 */
int dw_bbuf_next(dw_bbuf *b, const void **chunk, size_t *len);

/*
 * Copy up to len bytes out, blocking until len bytes, the end, or an error. Returns the count
 * (> 0), 0 at the end, or a negative code. An error met after some bytes were copied is returned
 * by the following call (bytes first).
 */
ssize_t dw_bbuf_read(dw_bbuf *b, void *buf, size_t len);

/* Stop the stream; thread-safe, idempotent. See "Errors and cancellation". */
void dw_bbuf_cancel(dw_bbuf *b);

/* Cancel, join the producer, close the source, free every chunk. NULL is a no-op. */
void dw_bbuf_close(dw_bbuf *b);

/* Chunk bytes the stream holds now / at most so far (both <= the effective cap). */
size_t dw_bbuf_held(dw_bbuf *b);
size_t dw_bbuf_peak(dw_bbuf *b);
/* The effective cap (cap_bytes clamped per budget rule 1, in whole chunks). */
size_t dw_bbuf_cap(dw_bbuf *b);

/*
 * What went wrong, for the last error next/read returned ("" if none). Valid until close.
 * Example: "memory budget exhausted: no 65536 bytes free after 30000 ms (total 1048576, in use
 * 1048576)".
 */
const char *dw_bbuf_errmsg(dw_bbuf *b);

/* Process-wide figures for metrics: open streams and the chunk bytes they hold. Either may be
 * NULL. */
void dw_bbuf_global_stats(size_t *streams_open, size_t *bytes_held);

#ifdef __cplusplus
}
#endif
#endif
