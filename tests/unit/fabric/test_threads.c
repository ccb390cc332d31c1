// SPDX-License-Identifier: MIT
/*
 * Fabric handles used from several threads at once, as `dwscale serve` uses them: each node runs
 * dw_fabric_udp_run() on its own thread over loopback UDP while other threads read its members,
 * stats, metrics and limits and reconfigure it. The header promises every call on a handle is
 * safe from any thread; this test is what the TSan build checks that promise with (the other
 * fabric tests are single-threaded). It also checks the outcome a user would: the three nodes
 * agree on the cluster while being read and reconfigured, a bad reconfiguration is refused
 * without changing anything, and a node whose thread stops is removed by the others.
 *
 * H = 100 ms; waits are deadlines for convergence (generous, for loaded machines), never
 * assertions on how fast. Skips (77) if loopback UDP ports cannot be bound.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dwscale/fabric.h"

#define NODES	3
#define WAIT_MS 20000 /* convergence deadline */

struct node {
	dw_fabric_udp *u;
	dw_fabric *f;
	dw_fabric_addr addr;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	atomic_int added, removed, events; /* written by the node's thread, read by the test */
	int run_rc;
};

struct readers {
	struct node *nodes;
	atomic_bool stop;
	atomic_long rounds;
	atomic_int failures;
};

static void on_event(void *arg, const dw_fabric_event *ev)
{
	struct node *n = arg;

	atomic_fetch_add_explicit(&n->events, 1, memory_order_relaxed);
	if (ev->type == DW_FABRIC_EV_ADDED)
		atomic_fetch_add_explicit(&n->added, 1, memory_order_relaxed);
	else if (ev->type == DW_FABRIC_EV_REMOVED)
		atomic_fetch_add_explicit(&n->removed, 1, memory_order_relaxed);
}

static int open_node(struct node *n, uint64_t id, uint16_t port)
{
	dw_fabric_config cfg;
	int rc;

	n->addr.ip = 0x7f000001;
	n->addr.port = port;
	rc = dw_fabric_udp_open(&n->addr, 0, id, &n->u);
	if (rc < 0)
		return rc;
	dw_fabric_config_default(&cfg);
	cfg.node_id = id;
	cfg.generation = 1;
	cfg.addr = n->addr;
	cfg.keyring.n = 1;
	cfg.keyring.keys[0].id = 5;
	memset(cfg.keyring.keys[0].secret, 0x5a, DW_FABRIC_KEY_LEN);
	cfg.limits.interval_ns = 100 * DW_NS_PER_MS;
	cfg.transport = dw_fabric_udp_transport(n->u);
	cfg.on_event = on_event;
	cfg.event_arg = n;
	return dw_fabric_open(&cfg, &n->f);
}

static void close_node(struct node *n)
{
	dw_fabric_close(n->f);
	dw_fabric_udp_close(n->u);
	n->f = NULL;
	n->u = NULL;
}

static void *run_node(void *arg)
{
	struct node *n = arg;

	n->run_rc = dw_fabric_udp_run(n->u, n->f, &n->stop, NULL);
	return NULL;
}

static void stop_node(struct node *n)
{
	if (!n->running)
		return;
	atomic_store_explicit(&n->stop, true, memory_order_relaxed);
	assert_int_equal(pthread_join(n->thread, NULL), 0);
	n->running = false;
	assert_int_equal(n->run_rc, 0);
}

static void count_metric(void *arg, const dw_metric *m)
{
	(void)m;
	(*(int *)arg)++;
}

static void count_limit(void *arg, const dw_limit *l)
{
	(void)l;
	(*(int *)arg)++;
}

/* Everything a server thread would do to a running node, over and over. */
static void *read_loop(void *arg)
{
	struct readers *r = arg;
	dw_fabric_member members[16];

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		for (int i = 0; i < NODES; i++) {
			dw_fabric *f = r->nodes[i].f;
			const dw_scalable *sc = dw_fabric_scalable(f);
			dw_fabric_stats st;
			dw_fabric_limits l;
			size_t n = 0;
			int metrics = 0, limits = 0;
			char err[160];

			dw_fabric_get_stats(f, &st);
			if (dw_fabric_members(f, members, 16, &n) < 0 || n < 1 || n > NODES)
				atomic_fetch_add(&r->failures, 1);
			(void)dw_fabric_cluster_size(f);
			(void)dw_fabric_current_topology(f);
			if (sc->ops->metrics(sc->self, count_metric, &metrics) < 0 || metrics == 0)
				atomic_fetch_add(&r->failures, 1);
			if (sc->ops->limits(sc->self, count_limit, &limits) < 0 || limits == 0)
				atomic_fetch_add(&r->failures, 1);
			(void)sc->ops->state(sc->self);
			/* rewrite the live limits with themselves: the node must not notice */
			dw_fabric_get_limits(f, &l);
			if (dw_fabric_set_limits(f, &l, err, sizeof(err)) < 0)
				atomic_fetch_add(&r->failures, 1);
		}
		atomic_fetch_add(&r->rounds, 1);
	}
	return NULL;
}

static bool all_see(struct node *ns, int count, uint32_t size)
{
	for (int i = 0; i < count; i++) {
		if (dw_fabric_cluster_size(ns[i].f) != size)
			return false;
	}
	return true;
}

static bool wait_for(struct node *ns, int count, uint32_t size)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	for (int t = 0; t < WAIT_MS; t += 10) {
		if (all_see(ns, count, size))
			return true;
		nanosleep(&ts, NULL);
	}
	return all_see(ns, count, size);
}

static void test_threads(void **state)
{
	struct node ns[NODES];
	struct readers rd;
	pthread_t readers[2];
	const dw_scalable *sc;
	dw_limit_change bad = { .name = "missed", .value = 0 };
	dw_limit_change good = { .name = "missed", .value = 4 };
	dw_fabric_limits before, after;
	char err[160];
	uint16_t base = 0;

	(void)state;
	memset(ns, 0, sizeof(ns));
	for (uint16_t b = 41000 + (uint16_t)(time(NULL) % 1000) * 20; b < 64000; b += 11) {
		int i;

		for (i = 0; i < NODES; i++) {
			if (open_node(&ns[i], 2001 + (uint64_t)i, (uint16_t)(b + i)) < 0)
				break;
		}
		if (i == NODES) {
			base = b;
			break;
		}
		for (i = 0; i < NODES; i++)
			close_node(&ns[i]);
	}
	if (!base) {
		print_message("skip: no loopback UDP ports to bind\n");
		exit(77);
	}
	assert_int_equal(dw_fabric_join(ns[0].f, NULL, 0), 0);
	for (int i = 1; i < NODES; i++)
		assert_int_equal(dw_fabric_join(ns[i].f, &ns[0].addr, 1), 0);
	for (int i = 0; i < NODES; i++) {
		assert_int_equal(pthread_create(&ns[i].thread, NULL, run_node, &ns[i]), 0);
		ns[i].running = true;
	}

	memset(&rd, 0, sizeof(rd));
	rd.nodes = ns;
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, read_loop, &rd), 0);

	/* the nodes find each other while being read */
	assert_true(wait_for(ns, NODES, NODES));
	for (int i = 0; i < NODES; i++)
		assert_true(atomic_load(&ns[i].added) >= NODES - 1);

	/* a bad change is refused whole, a good one lands, while the nodes run */
	sc = dw_fabric_scalable(ns[1].f);
	dw_fabric_get_limits(ns[1].f, &before);
	assert_int_equal(sc->ops->reconfigure(sc->self, &bad, 1, err, sizeof(err)), DW_ELIMIT);
	dw_fabric_get_limits(ns[1].f, &after);
	assert_int_equal(after.missed, before.missed);
	assert_int_equal(sc->ops->reconfigure(sc->self, &good, 1, err, sizeof(err)), 0);
	dw_fabric_get_limits(ns[1].f, &after);
	assert_int_equal(after.missed, 4);

	/* node 3's thread stops: the other two remove it, still under readers */
	stop_node(&ns[2]);
	assert_true(wait_for(ns, NODES - 1, NODES - 1));
	assert_true(atomic_load(&ns[0].removed) >= 1);
	assert_true(atomic_load(&ns[1].removed) >= 1);

	atomic_store(&rd.stop, true);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(readers[i], NULL), 0);
	assert_true(atomic_load(&rd.rounds) > 0);
	assert_int_equal(atomic_load(&rd.failures), 0);
	for (int i = 0; i < NODES; i++) {
		stop_node(&ns[i]);
		close_node(&ns[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
