/* SPDX-License-Identifier: MIT */
/*
 * Internal interface between the memory budget (membudget.c) and the streams that charge it
 * (bbuf.c): references that keep a budget alive while streams use it, a non-blocking acquire,
 * and an acquire that a canceled stream can interrupt.
 */
#ifndef DWSCALE_BBUF_INT_H
#define DWSCALE_BBUF_INT_H

#include <stdbool.h>

#include "dwscale/bbuf.h"

void dw__membudget_ref(dw_membudget *b);
void dw__membudget_unref(dw_membudget *b);

/* Charge bytes if they fit now; never waits. */
bool dw__membudget_try_acquire(dw_membudget *b, size_t bytes);

/*
 * As dw_membudget_acquire, but stop(arg) is checked under the budget's lock each time the waiter
 * wakes; when it returns true the wait ends with DW_ECANCELED. Whoever makes stop() true must then
 * call dw__membudget_wake so that the waiter rechecks.
 */
int dw__membudget_acquire_stoppable(dw_membudget *b, size_t bytes, uint64_t wait_ms,
				    const dw_clock *clock, bool (*stop)(void *arg), void *arg);
void dw__membudget_wake(dw_membudget *b);

/* True while some acquisition is waiting (a hint; relaxed). */
bool dw__membudget_has_waiters(dw_membudget *b);

#endif
