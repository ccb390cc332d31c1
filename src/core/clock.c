// SPDX-License-Identifier: MIT
/*
 * Clocks: the real one (CLOCK_MONOTONIC and CLOCK_REALTIME) and a fake one for tests, both behind
 * the dw_clock vtable so that every timer and deadline in the library can be driven by a test.
 */
#include <stdatomic.h>
#include <time.h>

#include "dwscale/core.h"

static uint64_t read_clock(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * DW_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t real_now(const dw_clock *c)
{
	(void)c;
	return read_clock(CLOCK_MONOTONIC);
}

static uint64_t real_wall(const dw_clock *c)
{
	(void)c;
	return read_clock(CLOCK_REALTIME);
}

static const dw_clock real_clock = { .now_ns = real_now, .wall_ns = real_wall, .ctx = NULL };

const dw_clock *dw_clock_real(void)
{
	return &real_clock;
}

uint64_t dw_clock_now(const dw_clock *c)
{
	return c ? c->now_ns(c) : read_clock(CLOCK_MONOTONIC);
}

uint64_t dw_clock_wall(const dw_clock *c)
{
	return c ? c->wall_ns(c) : read_clock(CLOCK_REALTIME);
}

static uint64_t fake_now(const dw_clock *c)
{
	dw_fake_clock *fc = c->ctx;

	return atomic_load_explicit(&fc->mono_ns, memory_order_acquire);
}

static uint64_t fake_wall(const dw_clock *c)
{
	dw_fake_clock *fc = c->ctx;

	return atomic_load_explicit(&fc->wall_ns, memory_order_acquire);
}

void dw_fake_clock_init(dw_fake_clock *fc, uint64_t mono_start_ns, uint64_t wall_start_ns)
{
	fc->clock.now_ns = fake_now;
	fc->clock.wall_ns = fake_wall;
	fc->clock.ctx = fc;
	atomic_init(&fc->mono_ns, mono_start_ns);
	atomic_init(&fc->wall_ns, wall_start_ns);
}

void dw_fake_clock_advance(dw_fake_clock *fc, uint64_t delta_ns)
{
	atomic_fetch_add_explicit(&fc->mono_ns, delta_ns, memory_order_acq_rel);
	atomic_fetch_add_explicit(&fc->wall_ns, delta_ns, memory_order_acq_rel);
}
