// SPDX-License-Identifier: MIT
/*
 * Allocation wrappers. Every allocation in libdwscale goes through here so that tests can count
 * allocations and fail the Nth one (dw_alloc_fail_nth), to prove every error path frees what it
 * took. The hook costs one relaxed atomic load when disabled.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dwscale/core.h"

static _Atomic unsigned long alloc_count;
static _Atomic unsigned long fail_at; /* 0: disabled; else fail when alloc_count reaches it */

static int should_fail(void)
{
	unsigned long n = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
	unsigned long at = atomic_load_explicit(&fail_at, memory_order_relaxed);

	return at != 0 && n == at;
}

unsigned long dw_alloc_fail_nth(unsigned long nth)
{
	unsigned long made = atomic_exchange_explicit(&alloc_count, 0, memory_order_relaxed);

	atomic_store_explicit(&fail_at, nth, memory_order_relaxed);
	return made;
}

void *dw_malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *dw_calloc(size_t nmemb, size_t size)
{
	if (should_fail())
		return NULL;
	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	return calloc(nmemb, size);
}

void *dw_realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

char *dw_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = dw_malloc(len + 1);

	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *dw_strdup(const char *s)
{
	return dw_strndup(s, strlen(s));
}

void dw_free(void *p)
{
	free(p);
}
