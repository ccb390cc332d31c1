// SPDX-License-Identifier: MIT
/*
 * Fabric over real UDP sockets on loopback, in one process: three nodes join through the first,
 * agree on the cluster, and a node that stops sending is removed by the others; a live key
 * rotation keeps two nodes together; a socket that cannot bind reports why. Uses H = 100 ms so the
 * test takes about a second. Skips (77) if the machine has no loopback UDP.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dwscale/fabric.h"

struct peer {
	dw_fabric_udp *u;
	dw_fabric *f;
	dw_fabric_addr addr;
	int removed;
};

static void on_event(void *arg, const dw_fabric_event *ev)
{
	struct peer *p = arg;

	if (ev->type == DW_FABRIC_EV_REMOVED)
		p->removed++;
}

static int start(struct peer *p, uint64_t id, uint16_t port)
{
	dw_fabric_config cfg;
	int rc;

	memset(p, 0, sizeof(*p));
	p->addr.ip = 0x7f000001;
	p->addr.port = port;
	rc = dw_fabric_udp_open(&p->addr, 0, id, &p->u);
	if (rc < 0)
		return rc;
	dw_fabric_config_default(&cfg);
	cfg.node_id = id;
	cfg.generation = 1;
	cfg.addr = p->addr;
	cfg.keyring.n = 1;
	cfg.keyring.keys[0].id = 3;
	memset(cfg.keyring.keys[0].secret, 0x42, DW_FABRIC_KEY_LEN);
	cfg.limits.interval_ns = 100 * DW_NS_PER_MS;
	cfg.transport = dw_fabric_udp_transport(p->u);
	cfg.on_event = on_event;
	cfg.event_arg = p;
	return dw_fabric_open(&cfg, &p->f);
}

/* Drive all running peers for ms milliseconds of real time. */
static void drive(struct peer *ps, size_t n, unsigned ms)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	for (unsigned t = 0; t < ms; t += 2) {
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].f)
				continue;
			assert_true(dw_fabric_udp_pump(ps[i].u, ps[i].f) >= 0);
			dw_fabric_tick(ps[i].f);
		}
		nanosleep(&ts, NULL);
	}
}

static void test_udp_cluster(void **state)
{
	struct peer ps[3];
	uint16_t base = 0;
	int rc = -1;

	(void)state;
	/* find three free ports in a row */
	for (uint16_t b = 40000 + (uint16_t)(time(NULL) % 1000) * 20; b < 64000; b += 7) {
		rc = start(&ps[0], 1001, b);
		if (rc < 0)
			continue;
		if (start(&ps[1], 1002, (uint16_t)(b + 1)) == 0 &&
		    start(&ps[2], 1003, (uint16_t)(b + 2)) == 0) {
			base = b;
			break;
		}
		for (int i = 0; i < 3; i++) {
			dw_fabric_close(ps[i].f);
			dw_fabric_udp_close(ps[i].u);
		}
		rc = -1;
	}
	if (rc < 0 || !base) {
		print_message("skip: no loopback UDP ports to bind\n");
		exit(77);
	}
	dw_fabric_join(ps[0].f, NULL, 0);
	dw_fabric_join(ps[1].f, &ps[0].addr, 1);
	dw_fabric_join(ps[2].f, &ps[0].addr, 1);
	drive(ps, 3, 600);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dw_fabric_cluster_size(ps[i].f), 3);
	/* the third goes silent: after K*H = 300 ms (+ slack) the others have removed it */
	dw_fabric_close(ps[2].f);
	ps[2].f = NULL;
	drive(ps, 2, 1000);
	assert_int_equal(ps[0].removed, 1);
	assert_int_equal(ps[1].removed, 1);
	assert_int_equal(dw_fabric_cluster_size(ps[0].f), 2);
	for (int i = 0; i < 3; i++) {
		dw_fabric_close(ps[i].f);
		dw_fabric_udp_close(ps[i].u);
	}
}

/* Start peers 0 and 1 on free loopback ports (skips the test if there are none). */
static void start_pair(struct peer *ps)
{
	for (uint16_t b = 41000 + (uint16_t)(time(NULL) % 1000) * 20; b < 64000; b += 7) {
		if (start(&ps[0], 2001, b) == 0 && start(&ps[1], 2002, (uint16_t)(b + 1)) == 0)
			return;
		dw_fabric_close(ps[0].f);
		dw_fabric_udp_close(ps[0].u);
	}
	print_message("skip: no loopback UDP ports to bind\n");
	exit(77);
}

/* A ring of the given key ids; a key's secret is its id's byte repeated (3 is start()'s). */
static dw_fabric_keyring ring_of(size_t n, const uint32_t *ids)
{
	dw_fabric_keyring r;

	memset(&r, 0, sizeof(r));
	r.n = n;
	for (size_t i = 0; i < n; i++) {
		r.keys[i].id = ids[i];
		memset(r.keys[i].secret, ids[i] == 3 ? 0x42 : (int)ids[i], DW_FABRIC_KEY_LEN);
	}
	return r;
}

static void test_udp_key_rotation(void **state)
{
	static const uint32_t add[] = { 3, 5 }, swap[] = { 5, 3 }, only_new[] = { 5 },
			      only_old[] = { 3 }, zero[] = { 0 };
	dw_fabric_keyring r;
	dw_fabric_stats st;
	struct peer ps[2];

	(void)state;
	start_pair(ps);
	dw_fabric_join(ps[0].f, NULL, 0);
	dw_fabric_join(ps[1].f, &ps[0].addr, 1);
	drive(ps, 2, 400);
	assert_int_equal(dw_fabric_cluster_size(ps[1].f), 2);

	/* refused rings leave the keys in place */
	r = ring_of(0, NULL);
	assert_int_equal(dw_fabric_set_keyring(ps[0].f, &r), DW_EBADKEY);
	r = ring_of(1, zero);
	assert_int_equal(dw_fabric_set_keyring(ps[0].f, &r), DW_EBADKEY);

	/* the three rolling steps, each on one node and then the other, H apart */
	r = ring_of(2, add);
	assert_int_equal(dw_fabric_set_keyring(ps[0].f, &r), 0);
	drive(ps, 2, 100);
	assert_int_equal(dw_fabric_set_keyring(ps[1].f, &r), 0);
	drive(ps, 2, 100);
	r = ring_of(2, swap);
	assert_int_equal(dw_fabric_set_keyring(ps[0].f, &r), 0);
	drive(ps, 2, 100);
	assert_int_equal(dw_fabric_set_keyring(ps[1].f, &r), 0);
	drive(ps, 2, 100);
	r = ring_of(1, only_new);
	assert_int_equal(dw_fabric_set_keyring(ps[0].f, &r), 0);
	drive(ps, 2, 100);
	assert_int_equal(dw_fabric_set_keyring(ps[1].f, &r), 0);
	drive(ps, 2, 600); /* twice K*H */
	assert_int_equal(ps[0].removed, 0);
	assert_int_equal(ps[1].removed, 0);
	assert_int_equal(dw_fabric_cluster_size(ps[0].f), 2);
	dw_fabric_get_stats(ps[0].f, &st);
	assert_int_equal(st.dropped[DW_FABRIC_DROP_UNKNOWN_KEY], 0);

	/* a node left on the old key alone is no longer heard, and is removed */
	r = ring_of(1, only_old);
	assert_int_equal(dw_fabric_set_keyring(ps[1].f, &r), 0);
	drive(ps, 2, 800);
	dw_fabric_get_stats(ps[0].f, &st);
	assert_true(st.dropped[DW_FABRIC_DROP_UNKNOWN_KEY] > 0);
	assert_int_equal(ps[0].removed, 1);
	for (int i = 0; i < 2; i++) {
		dw_fabric_close(ps[i].f);
		dw_fabric_udp_close(ps[i].u);
	}
}

static void test_udp_bind_errors(void **state)
{
	dw_fabric_udp *u = NULL, *v = NULL;
	dw_fabric_addr a = { 0x7f000001, 0 };
	dw_fabric_addr bad = { 0x08080808, 9 }; /* not a local address */

	(void)state;
	assert_int_equal(dw_fabric_udp_open(&a, 1.5, 1, &u), DW_EUSAGE);
	assert_null(u);
	assert_int_equal(dw_fabric_udp_open(&bad, 0, 1, &v), -EADDRNOTAVAIL);
	assert_null(v);
	dw_fabric_udp_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_udp_cluster),
		cmocka_unit_test(test_udp_key_rotation),
		cmocka_unit_test(test_udp_bind_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
