// SPDX-License-Identifier: MIT
/*
 * The per-device scheduler driven through a fake backend and a fake clock: the backend only
 * records what it was handed, and the test completes ops when it chooses, so dispatch order,
 * weights, deadlines, the Low cap, live depth changes, backend switches and backpressure are all
 * checked deterministically, without threads.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "io/io_int.h"

#define MAXOPS 512

struct fake_be {
	struct io_backend be;
	struct io_op *ops[MAXOPS]; /* every op handed over, in order (freed once completed) */
	unsigned id[MAXOPS];	   /* ...and its id and tier, readable after completion */
	uint8_t tier[MAXOPS];
	unsigned n;    /* handed over */
	unsigned done; /* completed by the test (a prefix or any subset) */
	bool completed[MAXOPS];
	int fail_next; /* refuse the next submit call with this code */
	unsigned depth_seen;
	bool closed;
};

static int fake_submit(struct io_backend *be, struct io_op **ops, unsigned n, unsigned *started)
{
	struct fake_be *f = (struct fake_be *)be;

	*started = 0;
	if (f->fail_next) {
		int rc = f->fail_next;

		f->fail_next = 0;
		return rc;
	}
	for (unsigned i = 0; i < n; i++) {
		assert_true(f->n < MAXOPS);
		f->id[f->n] = (unsigned)ops[i]->len;
		f->tier[f->n] = ops[i]->tier;
		f->ops[f->n++] = ops[i];
	}
	*started = n;
	return 0;
}

static void fake_set_depth(struct io_backend *be, unsigned depth)
{
	((struct fake_be *)be)->depth_seen = depth;
}

static void fake_close(struct io_backend *be)
{
	((struct fake_be *)be)->closed = true;
}

static const struct io_backend_ops fake_ops = {
	.submit = fake_submit,
	.set_depth = fake_set_depth,
	.close = fake_close,
};

static void fake_init(struct fake_be *f)
{
	memset(f, 0, sizeof(*f));
	f->be.ops = &fake_ops;
	f->be.engine = DW_IO_ENGINE_AUTO;
}

/* Completion records: ids in callback order, and results. */
static unsigned cb_order[MAXOPS], cb_n, cb_count[MAXOPS];
static int cb_res[MAXOPS];

static void on_done(void *arg, int res)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	cb_order[cb_n++] = id;
	cb_count[id]++;
	cb_res[id] = res;
}

static dw_fake_clock fc;

static void cfg_init(struct io_sched_cfg *cfg, unsigned depth)
{
	dw_io_config ic;

	dw_io_config_default(&ic);
	for (int t = 0; t < DW_IO_TIERS; t++)
		ic.deadline_ns[t] =
			3600 * DW_NS_PER_SEC; /* out of the way unless a test wants it */
	ic.high_linger_ns = 0;
	memset(cfg, 0, sizeof(*cfg));
	dw__sched_params_from_config(&ic, &cfg->params);
	cfg->clock = &fc.clock;
	cfg->depth = depth;
	cfg->thread = false;
}

static int setup(void **state)
{
	(void)state;
	dw_fake_clock_init(&fc, 1000 * DW_NS_PER_SEC, 1700000000ULL * DW_NS_PER_SEC);
	cb_n = 0;
	memset(cb_count, 0, sizeof(cb_count));
	memset(cb_res, 0, sizeof(cb_res));
	return 0;
}

/* Queue op `id` on tier t (len = id so the backend record identifies it). */
static int sub(struct io_sched *s, dw_io_tier t, unsigned id)
{
	struct io_op *op = dw_calloc(1, sizeof(*op));
	int rc;

	assert_non_null(op);
	op->fd = -1;
	op->opcode = DW_IO_OP_READ;
	op->tier = (uint8_t)t;
	op->len = id;
	op->cb = on_done;
	op->arg = (void *)(uintptr_t)id;
	rc = dw__sched_submit(s, op);
	if (rc < 0)
		dw_free(op);
	return rc;
}

/* Complete the i-th op the backend received. */
static void complete_nth(struct io_sched *s, struct fake_be *f, unsigned i, int res)
{
	assert_true(i < f->n);
	assert_false(f->completed[i]);
	f->completed[i] = true;
	f->done++;
	dw__sched_complete(s, f->ops[i], res);
}

/* Complete every op handed over but not yet completed, oldest first, until none are left. */
static void drain(struct io_sched *s, struct fake_be *f)
{
	for (unsigned i = 0; i < f->n; i++) {
		if (!f->completed[i])
			complete_nth(s, f, i, (int)f->id[i]);
	}
}

static unsigned inflight(const struct fake_be *f)
{
	return f->n - f->done;
}

static void test_depth_is_a_cap(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 4);
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(f.depth_seen, 4);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(sub(s, DW_IO_NORMAL, i), 0);
	assert_int_equal(f.n, 4);
	complete_nth(s, &f, 0, 0);
	assert_int_equal(f.n, 5);
	assert_int_equal(inflight(&f), 4);
	drain(s, &f);
	assert_int_equal(f.n, 10);
	assert_int_equal(cb_n, 10);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(cb_count[i], 1);
	dw__sched_close(s);
	assert_true(f.closed);
}

static void test_priority_order(void **state)
{
	static const unsigned want[] = { 0, 7, 8, 9, 4, 5, 6, 1, 2, 3 };
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 1);
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	/* 0 goes at once (idle device); then Low 1-3, Normal 4-6, High 7-9 queue behind it. */
	assert_int_equal(sub(s, DW_IO_LOW, 0), 0);
	for (unsigned i = 1; i <= 3; i++)
		assert_int_equal(sub(s, DW_IO_LOW, i), 0);
	for (unsigned i = 4; i <= 6; i++)
		assert_int_equal(sub(s, DW_IO_NORMAL, i), 0);
	for (unsigned i = 7; i <= 9; i++)
		assert_int_equal(sub(s, DW_IO_HIGH, i), 0);
	assert_int_equal(f.n, 1);
	drain(s, &f);
	assert_int_equal(f.n, 10);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(f.id[i], want[i]);
	dw__sched_close(s);
}

static void test_weights_16_4_1(void **state)
{
	unsigned count[DW_IO_TIERS] = { 0 };
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;
	unsigned id = 0;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 1);
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(sub(s, DW_IO_NORMAL, id++), 0); /* in flight: spends one Normal credit */
	for (int t = 0; t < DW_IO_TIERS; t++) {
		for (unsigned i = 0; i < 100; i++)
			assert_int_equal(sub(s, (dw_io_tier)t, id++), 0);
	}
	/* The rest of the first round: 16 High, the 3 Normal credits left, 1 Low. */
	for (unsigned i = 0; i < 20; i++)
		complete_nth(s, &f, i, 0);
	for (unsigned i = 1; i <= 20; i++)
		count[f.tier[i]]++;
	assert_int_equal(count[DW_IO_HIGH], 16);
	assert_int_equal(count[DW_IO_NORMAL], 3);
	assert_int_equal(count[DW_IO_LOW], 1);
	/* Two full rounds. */
	memset(count, 0, sizeof(count));
	for (unsigned i = 20; i < 62; i++)
		complete_nth(s, &f, i, 0);
	for (unsigned i = 21; i <= 62; i++)
		count[f.tier[i]]++;
	assert_int_equal(count[DW_IO_HIGH], 32);
	assert_int_equal(count[DW_IO_NORMAL], 8);
	assert_int_equal(count[DW_IO_LOW], 2);
	drain(s, &f);
	assert_int_equal(cb_n, 301);
	dw__sched_close(s);
}

static void test_weights_live_change(void **state)
{
	unsigned count[DW_IO_TIERS] = { 0 };
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;
	struct io_sched_params p;
	unsigned id = 0;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 1);
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	p = cfg.params;
	p.weight[DW_IO_HIGH] = 1;
	p.weight[DW_IO_NORMAL] = 0;
	p.weight[DW_IO_LOW] = 1;
	dw__sched_set_params(s, &p);
	assert_int_equal(sub(s, DW_IO_HIGH, id++), 0);
	for (unsigned i = 0; i < 10; i++) {
		assert_int_equal(sub(s, DW_IO_HIGH, id++), 0);
		assert_int_equal(sub(s, DW_IO_LOW, id++), 0);
	}
	for (unsigned i = 0; i < 10; i++)
		complete_nth(s, &f, i, 0);
	for (unsigned i = 1; i <= 10; i++)
		count[f.tier[i]]++;
	/* 1:1 now, and equal weights still alternate */
	assert_int_equal(count[DW_IO_HIGH], 5);
	assert_int_equal(count[DW_IO_LOW], 5);
	drain(s, &f);
	dw__sched_close(s);
}

static void test_deadline_goes_first(void **state)
{
	struct io_sched_cfg cfg;
	struct io_sched_snapshot snap;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 1);
	cfg.params.deadline_ns[DW_IO_HIGH] = 1000 * DW_NS_PER_MS;
	cfg.params.deadline_ns[DW_IO_NORMAL] = 150 * DW_NS_PER_MS;
	cfg.params.deadline_ns[DW_IO_LOW] = 100 * DW_NS_PER_MS;
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(sub(s, DW_IO_HIGH, 0), 0); /* in flight */
	assert_int_equal(sub(s, DW_IO_NORMAL, 1), 0);
	dw_fake_clock_advance(&fc, 10 * DW_NS_PER_MS);
	assert_int_equal(sub(s, DW_IO_LOW, 2), 0);
	for (unsigned i = 3; i < 8; i++)
		assert_int_equal(sub(s, DW_IO_HIGH, i), 0);
	/* Not yet overdue: High first by weight. */
	complete_nth(s, &f, 0, 0);
	assert_int_equal(f.id[1], 3);
	/*
	 * 200 ms later Normal (due at 150) and Low (due at 110) are both overdue; Low's deadline
	 * passed first, so Low goes first, then Normal, then High again.
	 */
	dw_fake_clock_advance(&fc, 200 * DW_NS_PER_MS);
	complete_nth(s, &f, 1, 0);
	assert_int_equal(f.id[2], 2);
	complete_nth(s, &f, 2, 0);
	assert_int_equal(f.id[3], 1);
	complete_nth(s, &f, 3, 0);
	assert_int_equal(f.id[4], 4);
	dw__sched_snapshot(s, &snap);
	assert_int_equal(snap.tier[DW_IO_LOW].max_wait_ns, 200 * DW_NS_PER_MS);
	assert_int_equal(snap.tier[DW_IO_NORMAL].max_wait_ns, 210 * DW_NS_PER_MS);
	drain(s, &f);
	dw__sched_close(s);
}

static void test_low_capped_while_high_active(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 16);
	cfg.params.low_cap = 2;
	cfg.params.deadline_ns[DW_IO_LOW] = 100 * DW_NS_PER_MS;
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(sub(s, DW_IO_HIGH, 0), 0);
	for (unsigned i = 1; i <= 10; i++)
		assert_int_equal(sub(s, DW_IO_LOW, i), 0);
	/* High in flight: Low gets 2 of the 15 free slots. */
	assert_int_equal(f.n, 3);
	/* An overdue Low op ignores the cap (never the depth). */
	dw_fake_clock_advance(&fc, 150 * DW_NS_PER_MS);
	dw__sched_tick(s);
	assert_int_equal(f.n, 11);
	drain(s, &f);

	/* Without High, Low fills the depth at once. */
	for (unsigned i = 11; i <= 30; i++)
		assert_int_equal(sub(s, DW_IO_LOW, i), 0);
	assert_int_equal(inflight(&f), 16);
	drain(s, &f);
	drain(s, &f);
	assert_int_equal(cb_n, 31);
	dw__sched_close(s);
}

/* By default Low holds depth / 32 slots (at least one) while High is active. */
static void test_default_low_cap(void **state)
{
	const unsigned depths[] = { 8, 32, 128 }, caps[] = { 1, 1, 4 };

	(void)state;
	for (unsigned d = 0; d < 3; d++) {
		struct io_sched_cfg cfg;
		struct fake_be f;
		struct io_sched *s;

		fake_init(&f);
		cfg_init(&cfg, depths[d]);
		cfg.params.low_cap = 0;
		assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
		assert_int_equal(sub(s, DW_IO_HIGH, 0), 0);
		for (unsigned i = 1; i <= 20; i++)
			assert_int_equal(sub(s, DW_IO_LOW, i), 0);
		assert_int_equal(inflight(&f), 1 + caps[d]);
		drain(s, &f);
		drain(s, &f);
		dw__sched_close(s);
	}
}

static void test_high_linger(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 8);
	cfg.params.low_cap = 1;
	cfg.params.high_linger_ns = 50 * DW_NS_PER_MS;
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(sub(s, DW_IO_HIGH, 0), 0);
	complete_nth(s, &f, 0, 0);
	/* High finished just now: still active for 50 ms, so Low trickles. */
	for (unsigned i = 1; i <= 5; i++)
		assert_int_equal(sub(s, DW_IO_LOW, i), 0);
	assert_int_equal(inflight(&f), 1);
	dw_fake_clock_advance(&fc, 60 * DW_NS_PER_MS);
	dw__sched_tick(s);
	assert_int_equal(inflight(&f), 5);
	drain(s, &f);
	dw__sched_close(s);
}

static void test_depth_change_live(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 2);
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	for (unsigned i = 0; i < 40; i++)
		assert_int_equal(sub(s, (dw_io_tier)(i % 3), i), 0);
	assert_int_equal(f.n, 2);
	assert_int_equal(dw__sched_set_depth(s, 8), 0);
	assert_int_equal(f.depth_seen, 8);
	assert_int_equal(inflight(&f), 8);
	assert_int_equal(dw__sched_depth(s), 8);

	/* Cut to 3: nothing new goes until in flight drops below 3; nothing is cancelled. */
	assert_int_equal(dw__sched_set_depth(s, 3), 0);
	assert_int_equal(inflight(&f), 8);
	for (unsigned i = 0; i < 5; i++)
		complete_nth(s, &f, i, 0);
	assert_int_equal(inflight(&f), 3);
	assert_int_equal(f.n, 8);
	complete_nth(s, &f, 5, 0);
	assert_int_equal(inflight(&f), 3);
	assert_int_equal(f.n, 9);

	assert_int_equal(dw__sched_set_depth(s, 0), DW_ELIMIT);
	assert_int_equal(dw__sched_set_depth(s, DW_IO_DEPTH_MAX + 1), DW_ELIMIT);
	assert_int_equal(dw__sched_depth(s), 3);

	while (f.done < 40)
		drain(s, &f);
	assert_int_equal(f.n, 40);
	assert_int_equal(cb_n, 40);
	for (unsigned i = 0; i < 40; i++)
		assert_int_equal(cb_count[i], 1); /* none lost, none twice */
	dw__sched_close(s);
}

static void test_switch_drains_and_fails_none(void **state)
{
	struct io_sched_cfg cfg;
	struct io_sched_snapshot snap;
	struct fake_be a, b;
	struct io_sched *s;

	(void)state;
	fake_init(&a);
	fake_init(&b);
	cfg_init(&cfg, 4);
	assert_int_equal(dw__sched_open(&cfg, &a.be, &s), 0);
	for (unsigned i = 0; i < 14; i++)
		assert_int_equal(sub(s, DW_IO_NORMAL, i), 0);
	assert_int_equal(a.n, 4);
	dw__sched_switch(s, &b.be);
	/* Old backend drains; nothing new goes anywhere meanwhile. */
	complete_nth(s, &a, 0, 0);
	complete_nth(s, &a, 1, 0);
	complete_nth(s, &a, 2, 0);
	assert_int_equal(a.n, 4);
	assert_int_equal(b.n, 0);
	dw__sched_snapshot(s, &snap);
	assert_true(snap.switching);
	complete_nth(s, &a, 3, 0);
	assert_int_equal(b.n, 4);
	assert_int_equal(b.depth_seen, 4);
	assert_false(a.closed); /* closed by the next tick, not on a backend thread */
	dw__sched_tick(s);
	assert_true(a.closed);
	while (b.done < 10)
		drain(s, &b);
	assert_int_equal(cb_n, 14);
	for (unsigned i = 0; i < 14; i++) {
		assert_int_equal(cb_count[i], 1);
		assert_int_equal(cb_res[i], i < 4 ? 0 : (int)i); /* the result its backend gave */
	}
	dw__sched_snapshot(s, &snap);
	assert_int_equal(snap.switches, 1);
	assert_false(snap.switching);
	dw__sched_close(s);
	assert_true(b.closed);
}

/* Re-probe hook for the tests: switch to the backend in ctx. */
static int reprobe_to(void *ctx, struct io_sched *s, int failed, struct io_backend **nb)
{
	static int last_failed;

	(void)s;
	last_failed = failed;
	assert_int_equal(last_failed, -EPERM);
	*nb = ctx;
	return 1;
}

static void test_refused_submit_requeues_then_switches(void **state)
{
	struct io_sched_cfg cfg;
	struct io_sched_snapshot snap;
	struct fake_be a, b;
	struct io_sched *s;

	(void)state;
	fake_init(&a);
	fake_init(&b);
	cfg_init(&cfg, 4);
	cfg.reprobe = reprobe_to;
	cfg.reprobe_ctx = &b.be;
	assert_int_equal(dw__sched_open(&cfg, &a.be, &s), 0);
	a.fail_next = -EPERM;
	assert_int_equal(sub(s, DW_IO_HIGH, 0), 0);
	assert_int_equal(sub(s, DW_IO_LOW, 1), 0);
	/* Refused: both wait in their queues, dispatch is halted until the re-probe. */
	assert_int_equal(a.n, 0);
	assert_int_equal(cb_n, 0);
	dw__sched_snapshot(s, &snap);
	assert_int_equal(snap.last_backend_err, -EPERM);
	assert_int_equal(snap.tier[DW_IO_HIGH].queued, 1);
	dw__sched_tick(s);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.id[0], 0);
	drain(s, &b);
	assert_int_equal(cb_n, 2);
	assert_int_equal(cb_res[0], 0);
	assert_int_equal(cb_res[1], 1);
	dw__sched_tick(s);
	assert_true(a.closed);
	dw__sched_close(s);
}

/* Re-probe hook that counts its calls and switches only when told to. */
static unsigned probes;
static int probe_failed_arg;
static struct io_backend *probe_to;

static int reprobe_count(void *ctx, struct io_sched *s, int failed, struct io_backend **nb)
{
	(void)ctx;
	(void)s;
	probes++;
	probe_failed_arg = failed;
	*nb = probe_to;
	return probe_to ? 1 : 0;
}

static void test_reprobe_timer(void **state)
{
	struct io_sched_cfg cfg;
	struct io_sched_snapshot snap;
	struct fake_be a, b;
	struct io_sched *s;

	(void)state;
	fake_init(&a);
	fake_init(&b);
	probes = 0;
	probe_to = NULL;
	cfg_init(&cfg, 4);
	cfg.reprobe = reprobe_count;
	cfg.reprobe_ns = 300 * DW_NS_PER_SEC;
	assert_int_equal(dw__sched_open(&cfg, &a.be, &s), 0);
	dw__sched_tick(s);
	assert_int_equal(probes, 0);
	dw_fake_clock_advance(&fc, 300 * DW_NS_PER_SEC - 1);
	dw__sched_tick(s);
	assert_int_equal(probes, 0);
	dw_fake_clock_advance(&fc, 1);
	dw__sched_tick(s);
	assert_int_equal(probes, 1);
	assert_int_equal(probe_failed_arg, 0); /* a timer probe, not a failure */
	dw__sched_tick(s);
	assert_int_equal(probes, 1); /* next one a full period later */

	/* The next timer probe finds a better backend: ops in flight drain first, none fail. */
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(sub(s, DW_IO_NORMAL, i), 0);
	probe_to = &b.be;
	dw_fake_clock_advance(&fc, 300 * DW_NS_PER_SEC);
	dw__sched_tick(s);
	assert_int_equal(probes, 2);
	assert_int_equal(b.n, 0);
	drain(s, &a);
	assert_int_equal(a.n, 4);
	assert_int_equal(b.n, 2);
	drain(s, &b);
	assert_int_equal(cb_n, 6);

	/* A period changed at run time restarts the count from now. */
	probe_to = NULL;
	dw__sched_set_reprobe(s, 10 * DW_NS_PER_SEC);
	dw_fake_clock_advance(&fc, 10 * DW_NS_PER_SEC);
	dw__sched_tick(s);
	assert_int_equal(probes, 3);
	dw__sched_set_reprobe(s, 0); /* never */
	dw_fake_clock_advance(&fc, 3600 * DW_NS_PER_SEC);
	dw__sched_tick(s);
	assert_int_equal(probes, 3);
	dw__sched_snapshot(s, &snap);
	assert_int_equal(snap.switches, 1);
	dw__sched_close(s);
	assert_true(a.closed && b.closed);
}

static void test_refused_twice_fails_the_op(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be a;
	struct io_sched *s;

	(void)state;
	fake_init(&a);
	cfg_init(&cfg, 4);
	assert_int_equal(dw__sched_open(&cfg, &a.be, &s), 0);
	a.fail_next = -ENOMEM;
	assert_int_equal(sub(s, DW_IO_NORMAL, 0), 0);
	assert_int_equal(cb_n, 0);
	/* No re-probe hook: the next tick retries on the same backend, which refuses again. */
	a.fail_next = -ENOMEM;
	dw__sched_tick(s);
	assert_int_equal(cb_n, 1);
	assert_int_equal(cb_res[0], -ENOMEM);
	dw__sched_tick(s);
	assert_int_equal(sub(s, DW_IO_NORMAL, 1), 0);
	assert_int_equal(a.n, 1);
	drain(s, &a);
	dw__sched_close(s);
}

static void test_backpressure_hysteresis(void **state)
{
	struct io_sched_cfg cfg;
	struct fake_be f;
	struct io_sched *s;
	unsigned id = 0;

	(void)state;
	fake_init(&f);
	cfg_init(&cfg, 1);
	cfg.params.max_queued = 10;
	cfg.params.bp_up[DW_BP_WARNING] = 0.5;
	cfg.params.bp_up[DW_BP_CRITICAL] = 0.75;
	cfg.params.bp_up[DW_BP_SHEDDING] = 0.9;
	cfg.params.bp_hysteresis = 0.1;
	assert_int_equal(dw__sched_open(&cfg, &f.be, &s), 0);
	assert_int_equal(sub(s, DW_IO_NORMAL, id++), 0); /* in flight, not queued */
	for (unsigned q = 1; q <= 9; q++) {
		assert_int_equal(sub(s, DW_IO_NORMAL, id++), 0);
		if (q < 5)
			assert_int_equal(dw__sched_state(s), DW_BP_NORMAL);
		else if (q < 8)
			assert_int_equal(dw__sched_state(s), DW_BP_WARNING);
		else if (q < 9)
			assert_int_equal(dw__sched_state(s), DW_BP_CRITICAL);
		else
			assert_int_equal(dw__sched_state(s), DW_BP_SHEDDING);
	}
	/* Shedding: Low refused at once, High still taken until the queue is full. */
	assert_int_equal(sub(s, DW_IO_LOW, id), DW_ESHED);
	assert_int_equal(sub(s, DW_IO_HIGH, id++), 0);
	assert_int_equal(sub(s, DW_IO_HIGH, id), DW_ESHED); /* 10 of 10 queued */

	/* Down: 9 and 8 queued stay Shedding (0.8 is not below 0.9 - 0.1). */
	complete_nth(s, &f, 0, 0);
	assert_int_equal(dw__sched_state(s), DW_BP_SHEDDING);
	complete_nth(s, &f, 1, 0);
	assert_int_equal(dw__sched_state(s), DW_BP_SHEDDING);
	assert_int_equal(sub(s, DW_IO_LOW, id), DW_ESHED);
	/* Up and down across 0.9 does not flap. */
	assert_int_equal(sub(s, DW_IO_NORMAL, id++), 0); /* 9 */
	complete_nth(s, &f, 2, 0);			 /* 8 */
	assert_int_equal(dw__sched_state(s), DW_BP_SHEDDING);
	complete_nth(s, &f, 3, 0); /* 7: below 0.8 -> Critical, and 0.7 is not below 0.65 */
	assert_int_equal(dw__sched_state(s), DW_BP_CRITICAL);
	assert_int_equal(sub(s, DW_IO_LOW, id++), 0); /* 8: Critical takes Low */
	assert_int_equal(dw__sched_state(s), DW_BP_CRITICAL);
	complete_nth(s, &f, 4, 0); /* 7 */
	complete_nth(s, &f, 5, 0); /* 6: below 0.65 -> Warning */
	assert_int_equal(dw__sched_state(s), DW_BP_WARNING);
	complete_nth(s, &f, 6, 0); /* 5 */
	complete_nth(s, &f, 7, 0); /* 4 */
	complete_nth(s, &f, 8, 0); /* 3: below 0.4 -> Normal */
	assert_int_equal(dw__sched_state(s), DW_BP_NORMAL);
	while (f.done < f.n)
		drain(s, &f);
	assert_int_equal(cb_n, id);
	dw__sched_close(s);
}

static void test_histogram(void **state)
{
	static struct io_hist h;
	uint64_t p50, p99;

	(void)state;
	memset(&h, 0, sizeof(h));
	assert_int_equal(dw__hist_quantile(&h, 0.5), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		dw__hist_add(&h, v * 1000);
	p50 = dw__hist_quantile(&h, 0.5);
	p99 = dw__hist_quantile(&h, 0.99);
	/* buckets are 1/16 of a power of two wide: within 7% */
	assert_true(p50 > 500000 * 93 / 100 && p50 < 500000 * 107 / 100);
	assert_true(p99 > 990000 * 93 / 100 && p99 < 990000 * 107 / 100);
	dw__hist_add(&h, 7);
	assert_int_equal(h.n, 1001);
	assert_int_equal(dw__hist_quantile(&h, 0.0), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_depth_is_a_cap, setup),
		cmocka_unit_test_setup(test_priority_order, setup),
		cmocka_unit_test_setup(test_weights_16_4_1, setup),
		cmocka_unit_test_setup(test_weights_live_change, setup),
		cmocka_unit_test_setup(test_deadline_goes_first, setup),
		cmocka_unit_test_setup(test_low_capped_while_high_active, setup),
		cmocka_unit_test_setup(test_default_low_cap, setup),
		cmocka_unit_test_setup(test_high_linger, setup),
		cmocka_unit_test_setup(test_depth_change_live, setup),
		cmocka_unit_test_setup(test_switch_drains_and_fails_none, setup),
		cmocka_unit_test_setup(test_refused_submit_requeues_then_switches, setup),
		cmocka_unit_test_setup(test_refused_twice_fails_the_op, setup),
		cmocka_unit_test_setup(test_reprobe_timer, setup),
		cmocka_unit_test_setup(test_backpressure_hysteresis, setup),
		cmocka_unit_test_setup(test_histogram, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
