// SPDX-License-Identifier: MIT
/*
 * Fabric cluster behaviour on the deterministic simulator: detection inside [K*H, K*H + H/2],
 * no false removals at 10 % loss in each topology, restart and long-pause rejoin, growth that
 * switches topology exactly at the configured thresholds (auto) or only recommends (recommend),
 * and the same seed giving the same trace hash. Durations are short so the suite stays fast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dwscale/fabric.h"

/*
 * The simulator runs in one thread, so TSan has nothing to check in it, and it slows the
 * 1,000-node runs past the suite's timeout on a loaded machine: those runs are left to the plain
 * and ASan builds.
 */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

static void base(dw_fabric_sim_config *c, dw_fabric_topology t, uint32_t n, uint64_t seconds)
{
	dw_fabric_sim_config_default(c);
	c->topology = t;
	c->nodes = n;
	c->seconds = seconds;
	c->seed = 42;
}

static void run(const dw_fabric_sim_config *c, dw_fabric_sim_result *r)
{
	int rc = dw_fabric_sim_run(c, r);

	assert_int_equal(rc, 0);
	print_message("  %s n=%u loss=%.2f: removals=%llu false=%llu detections=%llu outside=%llu "
		      "missed=%llu detect p50=%.2fs max=%.2fs switches=%s hash=%016llx\n",
		      dw_fabric_topology_name(c->topology), c->nodes, c->loss,
		      (unsigned long long)r->removals, (unsigned long long)r->false_removals,
		      (unsigned long long)r->detections,
		      (unsigned long long)r->detections_outside_window,
		      (unsigned long long)r->missed_detections, r->detect_p50_s, r->detect_max_s,
		      r->switch_log, (unsigned long long)r->trace_hash);
}

/* Every survivor removes each killed node, each inside the window. */
static void check_kills(const dw_fabric_sim_config *c, const dw_fabric_sim_result *r)
{
	double kh = (double)c->limits.missed * (double)c->limits.interval_ns / 1e9;
	double h = (double)c->limits.interval_ns / 1e9;

	assert_int_equal(r->false_removals, 0);
	assert_true(r->detections >= c->kill);
	assert_int_equal(r->detections_outside_window, 0);
	/* nodes that never heard from the victim learn of it within the same bound */
	assert_true(r->relayed_max_s <= kh + h / 2);
	assert_int_equal(r->missed_detections, 0);
	assert_true(r->detect_min_s >= kh);
	assert_true(r->detect_max_s <= kh + h / 2);
}

static void test_detect_mesh(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 20, 600);
	c.kill = 2;
	run(&c, &r);
	check_kills(&c, &r);
	/* 18 survivors each remove both, all as monitors */
	assert_int_equal(r.detections, 2 * 18);
	assert_int_equal(r.relayed_removals, 0);
	assert_true(r.final_alive_views_agree);
}

static void test_detect_star(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_STAR, 40, 600);
	c.kill = 3;
	run(&c, &r);
	check_kills(&c, &r);
	/* the hub detects; leaves that never heard from a leaf learn it from the hub */
	assert_int_equal(r.detections + r.relayed_removals, 3 * 37);
	assert_true(r.final_alive_views_agree);
}

static void small_federation(dw_fabric_sim_config *c, uint32_t n, uint64_t seconds)
{
	base(c, DW_FABRIC_FEDERATED, n, seconds);
	c->limits.federated_max = 1000;
	c->limits.group_size = 20; /* 50 groups */
}

static void test_detect_federated(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	small_federation(&c, 200, 600);
	c.kill = 3;
	run(&c, &r);
	check_kills(&c, &r);
	assert_true(r.final_alive_views_agree);
}

static void test_loss_no_false_removal(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 25, 1200);
	c.loss = 0.10;
	c.kill = 1;
	run(&c, &r);
	check_kills(&c, &r);

	base(&c, DW_FABRIC_STAR, 60, 1800);
	c.loss = 0.10;
	c.kill = 1;
	run(&c, &r);
	check_kills(&c, &r);

	small_federation(&c, 100, 900);
	c.loss = 0.10;
	c.kill = 2;
	run(&c, &r);
	check_kills(&c, &r);
}

static void test_messages_match_formula(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 25, 300);
	run(&c, &r);
	assert_true(r.msgs_mesh > 0.95 * r.expect_mesh && r.msgs_mesh < 1.05 * r.expect_mesh);

	base(&c, DW_FABRIC_STAR, 40, 300);
	run(&c, &r);
	assert_true(r.msgs_hub > 0.95 * r.expect_hub && r.msgs_hub < 1.05 * r.expect_hub);
	assert_true(r.msgs_leaf > 0.95 * r.expect_leaf && r.msgs_leaf < 1.05 * r.expect_leaf);

	small_federation(&c, 200, 300);
	run(&c, &r);
	assert_true(r.msgs_leader > 0.95 * r.expect_leader &&
		    r.msgs_leader < 1.05 * r.expect_leader);
	assert_true(r.msgs_member > 0.95 * r.expect_member &&
		    r.msgs_member < 1.05 * r.expect_member);

	/* the default limits (100 groups) at 1,000 nodes: leaders carry ~100 groups of ~10 */
	if (UNDER_TSAN) {
		print_message("  (1,000-node Federated formula run left out under TSan)\n");
		return;
	}
	base(&c, DW_FABRIC_FEDERATED, 1000, 300);
	run(&c, &r);
	assert_true(r.expect_leader > 200);
	assert_true(r.msgs_leader > 0.95 * r.expect_leader &&
		    r.msgs_leader < 1.05 * r.expect_leader);
	assert_true(r.msgs_member > 0.95 * r.expect_member &&
		    r.msgs_member < 1.05 * r.expect_member);
}

static void test_restart_rejoins(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 12, 900);
	c.restart = 2;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_int_equal(r.rejoined, 2);
	assert_true(r.final_alive_views_agree);

	base(&c, DW_FABRIC_STAR, 12, 900);
	c.restart = 1;
	c.loss = 0.05;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_int_equal(r.rejoined, 1);
}

static void test_pause(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	/* shorter than (K-1)*H: nobody is removed */
	base(&c, DW_FABRIC_MESH, 12, 600);
	c.pause = 2;
	c.pause_ns = 25 * DW_NS_PER_SEC;
	run(&c, &r);
	assert_int_equal(r.removals, 0);
	assert_true(r.final_alive_views_agree);

	/* longer than K*H: removed, then back once it runs again (never stuck dead) */
	base(&c, DW_FABRIC_MESH, 12, 900);
	c.pause = 1;
	c.pause_ns = 90 * DW_NS_PER_SEC;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_true(r.removals >= 11);
	assert_true(r.final_alive_views_agree);
}

static void growth_limits(dw_fabric_sim_config *c)
{
	c->limits.mesh_max = 50;
	c->limits.mesh_switch_at = 40;
	c->limits.star_max = 100;
	c->limits.star_switch_at = 80;
	c->limits.federated_max = 1000;
	c->limits.group_size = 10;
}

static void test_growth_switches(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 1, 400);
	growth_limits(&c);
	c.grow_to = 100;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_int_equal(r.switches, 2);
	assert_string_equal(r.switch_log, "mesh->star@40 star->federated@80");
	assert_int_equal(r.final_topology, DW_FABRIC_FEDERATED);
	assert_int_equal(r.final_nodes, 100);
	assert_int_equal(r.final_size_min, 100);
	assert_int_equal(r.final_size_max, 100);
	assert_true(r.final_alive_views_agree);
}

/*
 * The growth: one node to 1,000, two joins a second. Mesh is capped low so the run stays
 * cheap (a 400-node Mesh costs N^2 messages a round); Star and Federated keep their default
 * maxima, and Star leaves at 300 for Federated. Each switch must land exactly on its threshold
 * (the coordinator admits every join in Mesh and Star, so it counts exactly), and the 1,000 nodes
 * end in one Federated cluster that every node counts whole.
 */
/* Grow as c says: exactly the switches in want, to 1,000 nodes in Federated, all agreeing. */
static void grow_and_check(const dw_fabric_sim_config *c, const char *want)
{
	dw_fabric_sim_result r;

	run(c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_string_equal(r.switch_log, want);
	assert_int_equal(r.switches, 2);
	assert_int_equal(r.final_topology, DW_FABRIC_FEDERATED);
	assert_int_equal(r.final_nodes, 1000);
	assert_int_equal(r.final_size_min, 1000);
	assert_int_equal(r.final_size_max, 1000);
	assert_true(r.final_alive_views_agree);
}

static void test_growth_to_1000(void **state)
{
	dw_fabric_sim_config c;

	(void)state;
	if (UNDER_TSAN) {
		print_message("  (growth to 1,000 left out under TSan)\n");
		return;
	}
	base(&c, DW_FABRIC_MESH, 1, 700);
	c.limits.mesh_max = 50;
	c.limits.mesh_switch_at = 40;
	c.limits.star_switch_at = 300;
	c.grow_to = 1000;
	c.grow_every_ns = DW_NS_PER_SEC / 2; /* Star still reaches 300 after its 2*K*H hold */
	grow_and_check(&c, "mesh->star@40 star->federated@300");
}

/*
 * Growth from 1 to 1,000 on the default limits: Mesh switches to Star at 400 and Star straight to
 * Federated at 800 (Mesh holds only 500), and nothing after. Before the coordinator estimated the
 * groups of leaders it had not heard from yet, it counted each as 1 and took a cluster of 900
 * for 110, back to Mesh (seed 3 showed it).
 */
static void test_growth_to_1000_default_limits(void **state)
{
	dw_fabric_sim_config c;

	(void)state;
	if (UNDER_TSAN) {
		print_message("  (growth to 1,000 left out under TSan)\n");
		return;
	}
	base(&c, DW_FABRIC_MESH, 1, 1800);
	c.seed = 3;
	c.grow_to = 1000;
	grow_and_check(&c, "mesh->star@400 star->federated@800");
}

/*
 * A burst of joins (one every 20 ms, far inside one interval): more news is pending at the hub or
 * leader than fits in one answer, so some leaves miss some joins on every answer; they must
 * still end up knowing every member (they pull the view once the hub's count stops moving).
 */
static void test_join_burst(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_STAR, 1, 300);
	c.grow_to = 120;
	c.grow_every_ns = 20 * DW_NS_PER_MS;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_int_equal(r.final_nodes, 120);
	assert_int_equal(r.final_size_min, 120);
	assert_int_equal(r.final_size_max, 120);
	assert_true(r.final_alive_views_agree);

	/* Federated, 4 groups of about 60 */
	base(&c, DW_FABRIC_FEDERATED, 1, 300);
	c.limits.federated_max = 1000;
	c.limits.group_size = 250;
	c.grow_to = 240;
	c.grow_every_ns = 20 * DW_NS_PER_MS;
	run(&c, &r);
	assert_int_equal(r.false_removals, 0);
	assert_int_equal(r.final_nodes, 240);
	assert_true(r.final_alive_views_agree);
}

static void test_growth_recommend(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 1, 300);
	growth_limits(&c);
	c.mode = DW_FABRIC_MODE_RECOMMEND;
	c.grow_to = 45;
	run(&c, &r);
	assert_int_equal(r.switches, 0);
	assert_int_equal(r.recommendations, 1);
	assert_string_equal(r.switch_log, "recommend:mesh->star@40");
	assert_int_equal(r.final_topology, DW_FABRIC_MESH);
	assert_true(r.final_alive_views_agree);
}

static void test_same_seed_same_hash(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result a, b;

	(void)state;
	base(&c, DW_FABRIC_STAR, 30, 600);
	c.loss = 0.1;
	c.kill = 1;
	c.restart = 1;
	run(&c, &a);
	run(&c, &b);
	assert_true(a.trace_hash == b.trace_hash);
	assert_true(a.packets == b.packets);
	c.seed = 43;
	run(&c, &b);
	assert_true(a.trace_hash != b.trace_hash);
}

static void test_bad_config(void **state)
{
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;

	(void)state;
	base(&c, DW_FABRIC_MESH, 5, 60);
	c.kill = 6;
	assert_int_equal(dw_fabric_sim_run(&c, &r), DW_EUSAGE);
	base(&c, DW_FABRIC_MESH, 5, 60);
	c.loss = 1.0;
	assert_int_equal(dw_fabric_sim_run(&c, &r), DW_EUSAGE);
	base(&c, DW_FABRIC_MESH, 5, 60);
	c.limits.mesh_switch_at = c.limits.mesh_max + 1;
	assert_int_equal(dw_fabric_sim_run(&c, &r), DW_ELIMIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect_mesh),
		cmocka_unit_test(test_detect_star),
		cmocka_unit_test(test_detect_federated),
		cmocka_unit_test(test_loss_no_false_removal),
		cmocka_unit_test(test_messages_match_formula),
		cmocka_unit_test(test_restart_rejoins),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_growth_switches),
		cmocka_unit_test(test_growth_to_1000),
		cmocka_unit_test(test_growth_to_1000_default_limits),
		cmocka_unit_test(test_growth_recommend),
		cmocka_unit_test(test_join_burst),
		cmocka_unit_test(test_same_seed_same_hash),
		cmocka_unit_test(test_bad_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
