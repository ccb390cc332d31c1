/* SPDX-License-Identifier: MIT */
/*
 * IPersistentBackingStore: a durable key-value store addressed by dw:// URIs.
 *
 * Keys: "dw://" followed by 1..1019 bytes of printable ASCII without spaces (0x21..0x7e), so a
 * key is at most 1024 bytes, e.g. dw://internal/backup/<jobId>. Anything else is refused with
 * DW_EBADKEY. Values: 0..DW_STORE_VALUE_MAX bytes, opaque.
 *
 * Backends, chosen by the URI given to dw_store_open():
 *   "sqlite:PATH" or a plain PATH   SQLite in WAL mode, synchronous=FULL: a put that returned
 *                                   survives kill -9 of the process (and power loss).
 *   "postgresql://..."              shared by several nodes (added with the db subsystem);
 *                                   until then DW_EUNSUPPORTED.
 *   "sqlite::memory:"               a private in-memory store (tests, tools): not durable.
 * A new SQLite file is created with mode 0600; its directory must exist (else -ENOENT). A file
 * whose schema is newer than this library is refused with DW_EVERSION and left untouched; a
 * file that is not a store database gives DW_ECORRUPT. A writer that stays locked out by another
 * process for 5 s gives DW_ELOCKED.
 *
 * Scans walk keys in byte order in batches; each batch is its own short read transaction, so an
 * open iterator never holds a transaction (or a lock) between calls, and a long walk never blocks
 * writers or checkpoints. A key present for the whole walk is returned exactly once.
 *
 * Threads: a dw_store is thread-safe; an iterator belongs to one thread at a time, and every
 * iterator must be freed before its store is closed.
 */
#ifndef DWSCALE_STORE_H
#define DWSCALE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DW_STORE_KEY_MAX   1024
#define DW_STORE_VALUE_MAX (64u << 20) /* 64 MiB */

typedef struct dw_store dw_store;
typedef struct dw_store_iter dw_store_iter;

/* 0 if key is a valid dw:// key, else DW_EBADKEY. */
int dw_store_key_check(const char *key);

/* Open (creating if needed). On failure *out is NULL; see the return code. */
int dw_store_open(const char *uri, dw_store **out);
void dw_store_close(dw_store *s);

/*
 * Last backend message on this thread's most recent failing call on s ("" if none). Messages
 * are kept per thread, so two threads failing on one store never see each other's text. The
 * string stays valid until this thread's next failing call on any store. s == NULL: the message
 * of this thread's last failed dw_store_open() (why a path or URI was refused).
 */
const char *dw_store_errmsg(dw_store *s);

/* Insert or replace; durable when it returns 0. */
int dw_store_put(dw_store *s, const char *key, const void *val, size_t len);
/* *val is allocated with dw_malloc (NUL-terminated past len for convenience); caller dw_free()s.
 * DW_ENOTFOUND if absent. */
int dw_store_get(dw_store *s, const char *key, void **val, size_t *len);
/* DW_ENOTFOUND if absent. */
int dw_store_delete(dw_store *s, const char *key);

/* Iterate keys starting with prefix (which must itself start with "dw://"). */
int dw_store_scan(dw_store *s, const char *prefix, dw_store_iter **out);
/*
 * Next item: returns 1 and sets key/val/len (valid until the next call or free), 0 at the end,
 * or a negative code.
 */
int dw_store_iter_next(dw_store_iter *it, const char **key, const void **val, size_t *len);
void dw_store_iter_free(dw_store_iter *it);

#ifdef __cplusplus
}
#endif
#endif
