// SPDX-License-Identifier: MIT
/*
 * Fabric protocol on a hand-driven fake network and fake clock: join through a seed, events,
 * a node without the key cannot join or inject anything, tampered and replayed packets are
 * dropped and counted, a full cluster refuses a join with a reason, a restarted node comes back
 * with its new generation, a suspected node refutes the suspicion with a higher counter, a
 * shrinking cluster switches back and recommends again only below threshold*(1-hysteresis),
 * limits are validated as a whole, and the scalable interface reports and reconfigures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dwscale/fabric.h"

#define MAXQ 4096
#define MAXN 32

struct pkt {
	dw_fabric_addr from, to;
	size_t len;
	uint8_t buf[1500];
};

struct net;

struct node {
	struct net *net;
	dw_fabric *f;
	dw_fabric_addr addr;
	int added, removed, updated, refused, suspect;
	char reason[160];
	bool mute;	    /* everything it sends is lost */
	unsigned sent;	    /* datagrams it handed to the network, lost ones included */
	uint64_t watch;	    /* a member whose ALIVE and UPDATED events are recorded ... */
	uint32_t watch_ctr; /* ... as the highest counter they carried */
	int switched, recommended;
	char topo_log[256]; /* "mesh->star@20 recommend:mesh->star@20 ..." */
};

struct net {
	dw_fake_clock clock;
	struct pkt q[MAXQ];
	size_t nq;
	struct node nodes[MAXN];
	size_t n;
	struct pkt last; /* a copy of the last packet delivered, for replay */
	/* what grow() opens nodes with: key 1, default limits, mode auto unless a test says */
	dw_fabric_keyring ring;
	dw_fabric_limits lim;
	dw_fabric_mode mode;
	dw_fabric_topology topo; /* what add_node() configures (mesh unless a test says) */
};

static int fake_send(void *ctx, const dw_fabric_addr *to, const void *buf, size_t len)
{
	struct node *nd = ctx;
	struct net *net = nd->net;
	struct pkt *p;

	nd->sent++;
	if (nd->mute)
		return 0;
	if (net->nq == MAXQ || len > sizeof(p->buf))
		return -1;
	p = &net->q[net->nq++];
	p->from = nd->addr;
	p->to = *to;
	p->len = len;
	memcpy(p->buf, buf, len);
	return 0;
}

/* Append "from->to@size" (prefixed "recommend:" for a recommendation) to nd's topology log. */
static void log_topo(struct node *nd, const dw_fabric_event *ev)
{
	size_t len = strlen(nd->topo_log);

	snprintf(nd->topo_log + len, sizeof(nd->topo_log) - len, "%s%s%s->%s@%u", len ? " " : "",
		 ev->type == DW_FABRIC_EV_SWITCHED ? "" : "recommend:",
		 dw_fabric_topology_name(ev->from), dw_fabric_topology_name(ev->to),
		 ev->cluster_size);
}

static void watch_ctr(struct node *nd, const dw_fabric_event *ev)
{
	if (ev->member.id == nd->watch && ev->member.counter > nd->watch_ctr)
		nd->watch_ctr = ev->member.counter;
}

static void on_event(void *arg, const dw_fabric_event *ev)
{
	struct node *nd = arg;

	switch (ev->type) {
	case DW_FABRIC_EV_ADDED:
		nd->added++;
		break;
	case DW_FABRIC_EV_REMOVED:
		nd->removed++;
		break;
	case DW_FABRIC_EV_UPDATED:
		nd->updated++;
		watch_ctr(nd, ev);
		break;
	case DW_FABRIC_EV_ALIVE:
		watch_ctr(nd, ev);
		break;
	case DW_FABRIC_EV_SUSPECT:
		nd->suspect++;
		break;
	case DW_FABRIC_EV_SWITCHED:
		nd->switched++;
		log_topo(nd, ev);
		break;
	case DW_FABRIC_EV_SWITCH_RECOMMENDED:
		nd->recommended++;
		log_topo(nd, ev);
		break;
	case DW_FABRIC_EV_JOIN_REFUSED:
		nd->refused++;
		snprintf(nd->reason, sizeof(nd->reason), "%s", ev->reason);
		break;
	default:
		break;
	}
}

static void key(dw_fabric_keyring *r, uint32_t id, uint8_t fill)
{
	memset(r, 0, sizeof(*r));
	r->n = 1;
	r->keys[0].id = id;
	memset(r->keys[0].secret, fill, DW_FABRIC_KEY_LEN);
}

static struct node *add_node(struct net *net, uint64_t id, uint32_t gen,
			     const dw_fabric_keyring *ring, const dw_fabric_limits *lim,
			     dw_fabric_mode mode)
{
	struct node *nd = &net->nodes[net->n];
	dw_fabric_config cfg;

	assert_true(net->n < MAXN);
	memset(nd, 0, sizeof(*nd));
	nd->net = net;
	nd->addr.ip = 0x7f000001;
	nd->addr.port = (uint16_t)(9000 + net->n);
	dw_fabric_config_default(&cfg);
	cfg.node_id = id;
	cfg.generation = gen;
	cfg.addr = nd->addr;
	cfg.keyring = *ring;
	cfg.mode = mode;
	cfg.topology = net->topo;
	if (lim)
		cfg.limits = *lim;
	cfg.limits.interval_ns = 1 * DW_NS_PER_SEC;
	cfg.clock = &net->clock.clock;
	cfg.transport.send = fake_send;
	cfg.transport.ctx = nd;
	cfg.on_event = on_event;
	cfg.event_arg = nd;
	assert_int_equal(dw_fabric_open(&cfg, &nd->f), 0);
	net->n++;
	return nd;
}

static struct node *by_addr(struct net *net, const dw_fabric_addr *a)
{
	for (size_t i = 0; i < net->n; i++) {
		if (net->nodes[i].f && net->nodes[i].addr.port == a->port)
			return &net->nodes[i];
	}
	return NULL;
}

/* Deliver everything queued (and what that causes), then run timers; for `ms` of fake time. */
static void pump(struct net *net, unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 10) {
		size_t guard = 0;

		while (net->nq && guard++ < 100) {
			struct pkt batch[64];
			size_t nb = net->nq < 64 ? net->nq : 64;

			memcpy(batch, net->q, nb * sizeof(batch[0]));
			memmove(net->q, net->q + nb, (net->nq - nb) * sizeof(net->q[0]));
			net->nq -= nb;
			for (size_t i = 0; i < nb; i++) {
				struct node *to = by_addr(net, &batch[i].to);

				if (!to)
					continue;
				net->last = batch[i];
				dw_fabric_receive(to->f, &batch[i].from, batch[i].buf,
						  batch[i].len);
			}
		}
		for (size_t i = 0; i < net->n; i++) {
			if (net->nodes[i].f)
				dw_fabric_tick(net->nodes[i].f);
		}
		dw_fake_clock_advance(&net->clock, 10 * DW_NS_PER_MS);
	}
}

static void close_all(struct net *net)
{
	for (size_t i = 0; i < net->n; i++)
		dw_fabric_close(net->nodes[i].f);
	free(net);
}

static struct net *new_net(void)
{
	struct net *net = calloc(1, sizeof(*net));

	assert_non_null(net);
	dw_fake_clock_init(&net->clock, DW_NS_PER_SEC, DW_NS_PER_SEC);
	key(&net->ring, 1, 0x11);
	dw_fabric_limits_default(&net->lim);
	net->mode = DW_FABRIC_MODE_AUTO;
	net->topo = DW_FABRIC_MESH;
	return net;
}

static size_t running(const struct net *net)
{
	size_t k = 0;

	for (size_t i = 0; i < net->n; i++)
		k += net->nodes[i].f != NULL;
	return k;
}

/*
 * Open nodes until `to` run, each joining through the first 100 ms after the last. Ids rise in
 * the order of opening, so the first node stays the lowest: the coordinator.
 */
static void grow(struct net *net, size_t to)
{
	while (running(net) < to) {
		struct node *nd =
			add_node(net, 100 * (net->n + 1), 1, &net->ring, &net->lim, net->mode);

		if (nd == &net->nodes[0])
			assert_int_equal(dw_fabric_join(nd->f, NULL, 0), 0);
		else
			assert_int_equal(dw_fabric_join(nd->f, &net->nodes[0].addr, 1), 0);
		pump(net, 100);
	}
}

/* Close the k running nodes opened last. */
static void stop(struct net *net, size_t k)
{
	for (size_t i = net->n; i-- > 0 && k;) {
		if (net->nodes[i].f) {
			dw_fabric_close(net->nodes[i].f);
			net->nodes[i].f = NULL;
			k--;
		}
	}
}

/*
 * Close the newest nodes or open new ones until `size` run, let the cluster settle for `ms`, and
 * check that every node counts `size` in topology t and the coordinator's topology log reads log.
 */
static void resize(struct net *net, size_t size, unsigned ms, dw_fabric_topology t, const char *log)
{
	if (running(net) > size)
		stop(net, running(net) - size);
	grow(net, size);
	pump(net, ms);
	for (size_t i = 0; i < net->n; i++) {
		if (!net->nodes[i].f)
			continue;
		assert_int_equal(dw_fabric_cluster_size(net->nodes[i].f), size);
		assert_int_equal(dw_fabric_current_topology(net->nodes[i].f), t);
	}
	assert_string_equal(net->nodes[0].topo_log, log);
}

static void test_join_and_events(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	struct node *a, *b, *c;
	dw_fabric_member ms[8];
	size_t n;

	(void)state;
	key(&ring, 1, 0x11);
	a = add_node(net, 100, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	b = add_node(net, 200, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	c = add_node(net, 300, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	assert_int_equal(dw_fabric_join(a->f, NULL, 0), 0);
	assert_int_equal(dw_fabric_join(b->f, &a->addr, 1), 0);
	pump(net, 500);
	assert_int_equal(dw_fabric_join(c->f, &b->addr, 1), 0); /* through any member */
	pump(net, 3000);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(dw_fabric_cluster_size(net->nodes[i].f), 3);
		assert_int_equal(dw_fabric_members(net->nodes[i].f, ms, 8, &n), 0);
		assert_int_equal(n, 3);
		assert_true(ms[0].id == (i + 1) * 100); /* self first */
		assert_true(net->nodes[i].added >= 2);
		assert_int_equal(net->nodes[i].removed, 0);
	}
	/* c stops. Its last packet left at most H (1 s) before, so nobody may remove it within
	 * K*H - H = 2 s, and everyone must by K*H + H/2 = 3.5 s */
	dw_fabric_close(c->f);
	c->f = NULL;
	pump(net, 1900);
	assert_int_equal(a->removed, 0);
	assert_int_equal(b->removed, 0);
	pump(net, 1600);
	assert_int_equal(a->removed, 1);
	assert_int_equal(b->removed, 1);
	assert_true(a->suspect >= 1);
	assert_int_equal(dw_fabric_cluster_size(a->f), 2);
	close_all(net);
}

/* The joiner with the lowest id becomes the coordinator that later joins are sent to. */
static void test_join_lowest_id_coordinator(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	struct node *a, *b, *c;
	dw_fabric_member ms[8];
	size_t n;

	(void)state;
	key(&ring, 1, 0x11);
	a = add_node(net, 300, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	b = add_node(net, 100, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	c = add_node(net, 200, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(a->f, NULL, 0);
	dw_fabric_join(b->f, &a->addr, 1);
	dw_fabric_join(c->f, &a->addr, 1);
	pump(net, 3000);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(dw_fabric_cluster_size(net->nodes[i].f), 3);
		assert_int_equal(dw_fabric_members(net->nodes[i].f, ms, 8, &n), 0);
		assert_int_equal(n, 3);
		/* two others added, never itself */
		assert_int_equal(net->nodes[i].added, 2);
	}
	(void)b;
	(void)c;
	close_all(net);
}

static void test_wrong_key_refused(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring good, bad;
	struct node *a, *x;
	dw_fabric_stats st;

	(void)state;
	key(&good, 1, 0x11);
	key(&bad, 1, 0x22); /* same id, other secret: forged */
	a = add_node(net, 100, 1, &good, NULL, DW_FABRIC_MODE_AUTO);
	x = add_node(net, 666, 1, &bad, NULL, DW_FABRIC_MODE_AUTO);
	assert_int_equal(dw_fabric_join(a->f, NULL, 0), 0);
	assert_int_equal(dw_fabric_join(x->f, &a->addr, 1), 0);
	pump(net, 3000);
	assert_int_equal(a->added, 0);
	assert_int_equal(dw_fabric_cluster_size(a->f), 1);
	dw_fabric_get_stats(a->f, &st);
	assert_true(st.dropped[DW_FABRIC_DROP_AUTH] >= 2); /* it kept retrying */
	assert_int_equal(st.recv_msgs, 0);
	assert_int_equal(x->added, 0);

	/* another key id altogether */
	key(&bad, 9, 0x11);
	x = add_node(net, 667, 1, &bad, NULL, DW_FABRIC_MODE_AUTO);
	assert_int_equal(dw_fabric_join(x->f, &a->addr, 1), 0);
	pump(net, 1000);
	dw_fabric_get_stats(a->f, &st);
	assert_true(st.dropped[DW_FABRIC_DROP_UNKNOWN_KEY] >= 1);
	assert_int_equal(dw_fabric_cluster_size(a->f), 1);
	close_all(net);
}

static void test_replay_and_tamper(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	struct node *a, *b;
	dw_fabric_stats st;
	struct pkt p;
	uint64_t before;

	(void)state;
	key(&ring, 1, 0x11);
	a = add_node(net, 100, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	b = add_node(net, 200, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(a->f, NULL, 0);
	dw_fabric_join(b->f, &a->addr, 1);
	pump(net, 2000);
	/* capture one packet b sends to a */
	net->nq = 0;
	pump(net, 1100);
	(void)b;
	p = net->last;
	assert_true(p.len > 0);
	{
		struct node *to = by_addr(net, &p.to);

		dw_fabric_get_stats(to->f, &st);
		before = st.dropped[DW_FABRIC_DROP_REPLAY];
		assert_int_equal(dw_fabric_receive(to->f, &p.from, p.buf, p.len), DW_EAUTH);
		dw_fabric_get_stats(to->f, &st);
		assert_int_equal(st.dropped[DW_FABRIC_DROP_REPLAY], before + 1);
		/* tampered */
		p.buf[p.len - 20] ^= 4;
		assert_true(dw_fabric_receive(to->f, &p.from, p.buf, p.len) < 0);
		dw_fabric_get_stats(to->f, &st);
		assert_true(st.dropped[DW_FABRIC_DROP_AUTH] >= 1);
		/* truncated */
		assert_true(dw_fabric_receive(to->f, &p.from, p.buf, 10) < 0);
		dw_fabric_get_stats(to->f, &st);
		assert_true(st.dropped[DW_FABRIC_DROP_MALFORMED] >= 1);
	}
	assert_int_equal(dw_fabric_cluster_size(a->f), 2);
	close_all(net);
}

static void test_join_refused_when_full(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	dw_fabric_limits lim;
	struct node *a, *b, *c;

	(void)state;
	key(&ring, 1, 0x11);
	dw_fabric_limits_default(&lim);
	lim.mesh_max = 2;
	lim.mesh_switch_at = 2;
	a = add_node(net, 100, 1, &ring, &lim, DW_FABRIC_MODE_RECOMMEND);
	b = add_node(net, 200, 1, &ring, &lim, DW_FABRIC_MODE_RECOMMEND);
	c = add_node(net, 300, 1, &ring, &lim, DW_FABRIC_MODE_RECOMMEND);
	dw_fabric_join(a->f, NULL, 0);
	dw_fabric_join(b->f, &a->addr, 1);
	pump(net, 2000);
	dw_fabric_join(c->f, &a->addr, 1);
	pump(net, 2000);
	assert_int_equal(c->refused, 1);
	assert_non_null(strstr(c->reason, "mesh holds at most 2 nodes"));
	assert_int_equal(dw_fabric_cluster_size(a->f), 2);
	assert_int_equal(dw_fabric_current_topology(a->f), DW_FABRIC_MESH);
	close_all(net);
}

static void test_restart_new_generation(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	struct node *a, *b, *b2;
	dw_fabric_member ms[4];
	size_t n;

	(void)state;
	key(&ring, 1, 0x11);
	a = add_node(net, 100, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	b = add_node(net, 200, 5, &ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(a->f, NULL, 0);
	dw_fabric_join(b->f, &a->addr, 1);
	pump(net, 2000);
	/* b restarts at once (before anyone noticed) with a higher generation */
	dw_fabric_close(b->f);
	b->f = NULL;
	b2 = add_node(net, 200, 6, &ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(b2->f, &a->addr, 1);
	pump(net, 5000);
	assert_int_equal(a->removed, 0); /* the new incarnation replaced the old one */
	assert_true(a->updated >= 1);
	dw_fabric_members(a->f, ms, 4, &n);
	assert_int_equal(n, 2);
	assert_int_equal(ms[1].generation, 6);
	assert_int_equal(ms[1].state, DW_FABRIC_ALIVE);
	close_all(net);
}

/*
 * The coordinator (lowest id) restarts at its old address and joins through another member,
 * whose view still holds its old incarnation as the coordinator: it is admitted there, not
 * redirected to itself.
 */
static void test_restart_coordinator_same_address(void **state)
{
	struct net *net = new_net();
	struct node *a, *b, *a2;
	size_t n;

	(void)state;
	a = add_node(net, 100, 1, &net->ring, NULL, DW_FABRIC_MODE_AUTO);
	b = add_node(net, 200, 1, &net->ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(a->f, NULL, 0);
	dw_fabric_join(b->f, &a->addr, 1);
	pump(net, 2000);
	assert_int_equal(dw_fabric_cluster_size(b->f), 2);
	dw_fabric_close(a->f);
	a->f = NULL;
	n = net->n;
	net->n = 0; /* the same slot, so the same address */
	a2 = add_node(net, 100, 2, &net->ring, NULL, DW_FABRIC_MODE_AUTO);
	net->n = n;
	dw_fabric_join(a2->f, &b->addr, 1);
	pump(net, 2000); /* less than K*H: no time for b to drop the old incarnation first */
	assert_int_equal(a2->added, 1);
	assert_int_equal(dw_fabric_cluster_size(a2->f), 2);
	assert_int_equal(b->removed, 0);
	assert_true(b->updated >= 1);
	close_all(net);
}

/*
 * A node whose packets are all lost for (K-1)*H and a bit is suspected by every observer. It
 * learns so from the suspicion their probes carry and raises its counter; once its packets flow
 * again the observers take it back at the new counter, and nobody removes it.
 */
static void test_suspect_refuted(void **state)
{
	struct net *net = new_net();
	dw_fabric_member ms[8];
	struct node *v;
	uint32_t ctr;
	size_t n;

	(void)state;
	resize(net, 4, 5000, DW_FABRIC_MESH, "");
	v = &net->nodes[3];
	assert_int_equal(dw_fabric_members(v->f, ms, 8, &n), 0);
	ctr = ms[0].counter;
	for (size_t i = 0; i < 3; i++) {
		net->nodes[i].watch = ms[0].id;
		assert_int_equal(net->nodes[i].suspect, 0);
	}
	/*
	 * Mute it right after a heartbeat round (one ping to each observer): every observer then
	 * hears nothing for 2.25 s, past the suspicion at (K-1)*H = 2 s and short of the removal
	 * at K*H = 3 s.
	 */
	for (;;) {
		unsigned before = v->sent;

		pump(net, 10);
		if (v->sent - before >= 3)
			break;
	}
	v->mute = true;
	pump(net, 2250);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(net->nodes[i].suspect, 1);
		assert_int_equal(net->nodes[i].removed, 0);
	}
	v->mute = false;
	pump(net, 3000);
	for (size_t i = 0; i < 3; i++) {
		struct node *o = &net->nodes[i];

		assert_int_equal(o->removed, 0);
		assert_true(o->watch_ctr >= ctr + 1);
		assert_int_equal(dw_fabric_members(o->f, ms, 8, &n), 0);
		assert_int_equal(n, 4);
		for (size_t j = 1; j < n; j++) {
			assert_int_equal(ms[j].state, DW_FABRIC_ALIVE);
			if (ms[j].id == o->watch)
				assert_true(ms[j].counter >= ctr + 1);
		}
	}
	close_all(net);
}

/* Mesh leaves at 20 nodes; with hysteresis 0.1 a cluster goes back only below 18. */
static struct net *hysteresis_net(dw_fabric_mode mode)
{
	struct net *net = new_net();

	net->lim.mesh_switch_at = 20;
	net->lim.hysteresis = 0.1;
	net->mode = mode;
	return net;
}

/*
 * Auto: a Mesh that grew to its threshold switches to Star, stays Star at 18 = 20 * (1 - 0.1)
 * well past the hold after the switch, and goes back to Mesh at 17.
 */
static void test_switch_back_below_hysteresis(void **state)
{
	struct net *net = hysteresis_net(DW_FABRIC_MODE_AUTO);

	(void)state;
	resize(net, 20, 5000, DW_FABRIC_STAR, "mesh->star@20");
	/* removals land within K*H + H/2; 10 s also runs past the 2*K*H hold after the switch */
	resize(net, 18, 10000, DW_FABRIC_STAR, "mesh->star@20");
	resize(net, 17, 5000, DW_FABRIC_MESH, "mesh->star@20 star->mesh@17");
	for (size_t i = 0; i < net->n; i++) {
		if (!net->nodes[i].f)
			continue;
		assert_int_equal(net->nodes[i].switched, 2);
		assert_int_equal(net->nodes[i].removed, 3);
	}
	close_all(net);
}

/* Every running node among the first `upto` opened raised `want` recommendations. */
static void check_recommended(struct net *net, size_t upto, int want)
{
	for (size_t i = 0; i < upto; i++) {
		if (net->nodes[i].f)
			assert_int_equal(net->nodes[i].recommended, want);
	}
}

/*
 * Recommend: a Mesh that reaches its threshold recommends Star once. Shrinking to 18 (inside
 * the hysteresis band) and growing back to 20 is the same crossing and raises nothing; only
 * after it fell to 17 does growing back to 20 recommend again.
 */
static void test_recommend_once_per_crossing(void **state)
{
	struct net *net = hysteresis_net(DW_FABRIC_MODE_RECOMMEND);
	const char *once = "recommend:mesh->star@20";

	(void)state;
	resize(net, 20, 5000, DW_FABRIC_MESH, once);
	check_recommended(net, net->n, 1);
	resize(net, 18, 5000, DW_FABRIC_MESH, once);
	resize(net, 20, 5000, DW_FABRIC_MESH, once);
	check_recommended(net, net->n, 1);
	resize(net, 17, 5000, DW_FABRIC_MESH, once);
	resize(net, 20, 5000, DW_FABRIC_MESH, "recommend:mesh->star@20 recommend:mesh->star@20");
	check_recommended(net, 17, 2); /* the 17 that saw the whole story */
	close_all(net);
}

/*
 * Recommend, back to a node's own topology: nodes configured Mesh that joined a Star cluster
 * recommend Mesh below 18 = 20 * (1 - 0.1), once; at 18 and back at 17 it is the same crossing.
 * Only after the cluster reached Mesh's threshold (20) does 17 recommend again.
 */
static void test_recommend_back_once(void **state)
{
	struct net *net = hysteresis_net(DW_FABRIC_MODE_RECOMMEND);
	const char *none = "";

	(void)state;
	net->topo = DW_FABRIC_STAR;
	grow(net, 1);
	net->topo = DW_FABRIC_MESH;
	resize(net, 17, 5000, DW_FABRIC_STAR, none);
	assert_int_equal(net->nodes[0].recommended, 0); /* configured Star: nothing to say */
	net->nodes[0].recommended = 1;			/* so check_recommended() covers the rest */
	check_recommended(net, net->n, 1);
	for (size_t i = 1; i < net->n; i++) { /* one each, at the size it joined at */
		assert_int_equal(strncmp(net->nodes[i].topo_log, "recommend:star->mesh@", 21), 0);
		assert_null(strchr(net->nodes[i].topo_log, ' '));
	}
	resize(net, 18, 5000, DW_FABRIC_STAR, none);
	resize(net, 17, 5000, DW_FABRIC_STAR, none);
	check_recommended(net, 17, 1);
	resize(net, 20, 5000, DW_FABRIC_STAR, none);
	resize(net, 17, 5000, DW_FABRIC_STAR, none);
	net->nodes[0].recommended = 2;
	check_recommended(net, 17, 2);
	close_all(net);
}

static void test_limits_validate(void **state)
{
	dw_fabric_limits l;
	char err[200];

	(void)state;
	dw_fabric_limits_default(&l);
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), 0);
	l.star_switch_at = 1200; /* above star_max */
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "star_switch_at"));
	dw_fabric_limits_default(&l);
	l.federated_max = 700; /* nowhere to go from a Star of 800 */
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "star_switch_at"));
	dw_fabric_limits_default(&l);
	l.missed = 0;
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), DW_ELIMIT);
	dw_fabric_limits_default(&l);
	l.interval_ns = 1;
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), DW_ELIMIT);
	dw_fabric_limits_default(&l);
	l.hysteresis = 0.9;
	assert_int_equal(dw_fabric_limits_validate(&l, err, sizeof(err)), DW_ELIMIT);
}

struct seen {
	int metrics, limits;
	double alive;
	bool drop_auth;
};

static void on_metric(void *arg, const dw_metric *m)
{
	struct seen *s = arg;

	s->metrics++;
	if (strcmp(m->name, "members_alive") == 0)
		s->alive = m->value;
	if (strcmp(m->name, "dropped_packets") == 0 && strstr(m->labels, "auth"))
		s->drop_auth = true;
}

static void on_limit(void *arg, const dw_limit *l)
{
	struct seen *s = arg;

	s->limits++;
	(void)l;
}

static void test_scalable(void **state)
{
	struct net *net = new_net();
	dw_fabric_keyring ring;
	struct node *a;
	const dw_scalable *sc;
	struct seen seen = { 0 };
	dw_fabric_limits l;
	char err[200];
	dw_limit_change ok[] = { { .name = "missed", .value = 5 },
				 { .name = "interval_seconds", .value = 2 } };
	dw_limit_change bad[] = { { .name = "missed", .value = 4 },
				  { .name = "star_switch_at", .value = 5000 } };
	dw_limit_change unknown[] = { { .name = "nope", .value = 1 } };

	(void)state;
	key(&ring, 1, 0x11);
	a = add_node(net, 100, 1, &ring, NULL, DW_FABRIC_MODE_AUTO);
	dw_fabric_join(a->f, NULL, 0);
	sc = dw_fabric_scalable(a->f);
	assert_string_equal(sc->name, "fabric");
	assert_int_equal(sc->ops->metrics(sc->self, on_metric, &seen), 0);
	assert_true(seen.metrics > 10);
	assert_true(seen.alive == 1);
	assert_true(seen.drop_auth);
	assert_int_equal(sc->ops->limits(sc->self, on_limit, &seen), 0);
	assert_int_equal(seen.limits, 9);
	assert_int_equal(sc->ops->reconfigure(sc->self, ok, 2, err, sizeof(err)), 0);
	dw_fabric_get_limits(a->f, &l);
	assert_int_equal(l.missed, 5);
	assert_true(l.interval_ns == 2 * DW_NS_PER_SEC);
	/* refused as a whole: missed stays 5 */
	assert_int_equal(sc->ops->reconfigure(sc->self, bad, 2, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "star_switch_at"));
	dw_fabric_get_limits(a->f, &l);
	assert_int_equal(l.missed, 5);
	assert_int_equal(sc->ops->reconfigure(sc->self, unknown, 1, err, sizeof(err)), DW_ELIMIT);
	assert_int_equal(sc->ops->state(sc->self), DW_BP_NORMAL);
	close_all(net);
}

static void test_open_errors(void **state)
{
	dw_fabric_config cfg;
	dw_fabric *f = NULL;

	(void)state;
	dw_fabric_config_default(&cfg);
	assert_int_equal(dw_fabric_open(&cfg, &f), DW_ECONFIG); /* no id, no transport */
	cfg.node_id = 1;
	cfg.transport.send = fake_send;
	assert_int_equal(dw_fabric_open(&cfg, &f), DW_EBADKEY); /* no key */
	assert_null(f);
	dw_fabric_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_and_events),
		cmocka_unit_test(test_join_lowest_id_coordinator),
		cmocka_unit_test(test_wrong_key_refused),
		cmocka_unit_test(test_replay_and_tamper),
		cmocka_unit_test(test_join_refused_when_full),
		cmocka_unit_test(test_restart_new_generation),
		cmocka_unit_test(test_restart_coordinator_same_address),
		cmocka_unit_test(test_suspect_refuted),
		cmocka_unit_test(test_switch_back_below_hysteresis),
		cmocka_unit_test(test_recommend_once_per_crossing),
		cmocka_unit_test(test_recommend_back_once),
		cmocka_unit_test(test_limits_validate),
		cmocka_unit_test(test_scalable),
		cmocka_unit_test(test_open_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
