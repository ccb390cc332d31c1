/* SPDX-License-Identifier: MIT */
/*
 * BoundedCache internals shared with its tests: pinning the eviction order. A cache normally
 * chooses between S3-FIFO and LRU order by itself (rule 8 in cache.c); the tests of rules 1-7
 * need S3-FIFO for good, and a comparison may want plain LRU.
 */
#ifndef DWSCALE_CORE_CACHE_INT_H
#define DWSCALE_CORE_CACHE_INT_H

#include "dwscale/cache.h"

enum { DW__CACHE_S3FIFO = 0, DW__CACHE_LRU = 1 };

/*
 * Drop the shadows and keep the given order from now on (entries stay where they are). 0, or
 * DW_EUSAGE for another value of order. Thread-safe.
 */
int dw__cache_pin_order(dw_cache *c, int order);

#endif
