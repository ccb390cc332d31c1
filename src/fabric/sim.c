// SPDX-License-Identifier: MIT
/*
 * Deterministic fabric simulator: N real fabric nodes (the logic files, wire.c, real HMAC) over a
 * simulated network and one virtual clock, in one thread.
 *
 * Everything that happens is an event in one priority queue ordered by (time, sequence): a node
 * waking for its timers, a datagram arriving, a fault (kill, pause, resume, restart) or a join.
 * Ties break by insertion order and every random choice (loss, jitter, victims, seeds) comes from
 * one seeded generator consumed in event order, so the same config and seed replay the same run
 * and the same trace hash (FNV-1a over every delivery and membership event).
 *
 * Memory is per node: its own view (Federated: its group and the leaders, ~2*sqrt(N) records)
 * plus the packets in flight, so 10,000 Federated nodes stay far below 1 GiB; work per interval
 * is the topology's message count, never N^2.
 *
 * Measures: detection time of each (observer, killed node) removal from the killed node's last
 * delivered packet; false removals (a node removed while it ran, or paused for less than
 * (K-1)*H: a pause that short never leaves K*H of silence); messages and bytes per node per
 * interval by role over a quiet window, next to the topology's formula; switches; convergence.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fabric_int.h"

enum ev_kind {
	EV_WAKE = 0,
	EV_DELIVER,
	EV_KILL,
	EV_PAUSE,
	EV_RESUME,
	EV_RESTART,
	EV_GROW,
	EV_MEASURE
};

struct event {
	uint64_t t;
	uint64_t seq;
	uint32_t kind;
	uint32_t node;
	uint32_t src;
	uint32_t len;
	uint8_t *pkt;
};

enum node_status { N_NOTYET = 0, N_UP, N_DOWN, N_PAUSED };

struct snode {
	dw_fabric *f;
	uint64_t id;
	uint32_t gen;
	uint8_t status;
	bool restarted;
	bool killed_for_good;
	uint64_t wake_ns;
	uint64_t last_delivered_ns; /* last packet it sent that reached someone */
	uint64_t pause_start_ns, pause_len_ns;
	uint64_t msgs, bytes;	  /* sent + received, all time */
	uint64_t w_msgs, w_bytes; /* snapshot at the window start */
	struct sim *sim;
	uint32_t idx;
};

struct sim {
	const dw_fabric_sim_config *cfg;
	dw_fake_clock clock;
	dw_fabric_keyring ring;
	struct snode *nodes;
	uint32_t nnodes, cap;
	struct event *heap;
	size_t heap_n, heap_cap;
	uint64_t seq;
	uint64_t rng;
	uint64_t hash;
	uint64_t now;
	dw_fabric_sim_result *res;
	double *det;
	size_t det_n, det_cap;
	uint64_t last_change_ns;
	bool converged;
	uint64_t window_start, window_end;
	bool window_taken;
	dw_fabric_topology last_topo;
	uint64_t recommend_observer; /* recommendations are counted as one node saw them */
	int rc;
};

/* ---- heap --------------------------------------------------------------------------------- */

static bool ev_less(const struct event *a, const struct event *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int push(struct sim *s, struct event e)
{
	size_t i;

	if (s->heap_n == s->heap_cap) {
		size_t ncap = s->heap_cap ? s->heap_cap * 2 : 1024;
		struct event *nh = dw_realloc(s->heap, ncap * sizeof(*nh));

		if (!nh)
			return -ENOMEM;
		s->heap = nh;
		s->heap_cap = ncap;
	}
	e.seq = s->seq++;
	i = s->heap_n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!ev_less(&e, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
	return 0;
}

static struct event pop(struct sim *s)
{
	struct event top = s->heap[0];
	struct event last = s->heap[--s->heap_n];
	size_t i = 0;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct event *cand = &last;

		if (l < s->heap_n && ev_less(&s->heap[l], cand)) {
			m = l;
			cand = &s->heap[l];
		}
		if (r < s->heap_n && ev_less(&s->heap[r], cand))
			m = r;
		if (m == i)
			break;
		s->heap[i] = s->heap[m];
		i = m;
	}
	if (s->heap_n)
		s->heap[i] = last;
	return top;
}

/* ---- trace hash ------------------------------------------------------------------------------ */

static void hash_u64(struct sim *s, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		s->hash ^= (v >> (8 * i)) & 0xff;
		s->hash *= 0x100000001b3ULL;
	}
}

/* ---- transport ------------------------------------------------------------------------------ */

static int sim_send(void *ctx, const dw_fabric_addr *to, const void *buf, size_t len)
{
	struct snode *n = ctx;
	struct sim *s = n->sim;
	struct event e;
	uint32_t dst = to->ip - 1;
	uint64_t lat = s->cfg->latency_ns;

	n->msgs++;
	n->bytes += len;
	if (to->ip == 0 || dst >= s->nnodes)
		return -EHOSTUNREACH;
	if (s->cfg->loss > 0 && (double)(dw__rand_next(&s->rng) >> 11) * 0x1.0p-53 < s->cfg->loss)
		return 0; /* lost on the wire: the sender cannot tell */
	memset(&e, 0, sizeof(e));
	e.pkt = dw_malloc(len);
	if (!e.pkt)
		return -ENOMEM;
	memcpy(e.pkt, buf, len);
	e.len = (uint32_t)len;
	e.kind = EV_DELIVER;
	e.node = dst;
	e.src = n->idx;
	e.t = s->now + lat + (lat ? dw__rand_next(&s->rng) % lat : 0);
	if (push(s, e) < 0) {
		dw_free(e.pkt);
		return -ENOMEM;
	}
	return 0;
}

/* ---- nodes ---------------------------------------------------------------------------------- */

static void schedule_wake(struct sim *s, struct snode *n, uint64_t when)
{
	struct event e;

	if (n->wake_ns && n->wake_ns <= when && n->wake_ns > s->now)
		return; /* an earlier wake is already queued */
	if (when < s->now)
		when = s->now;
	memset(&e, 0, sizeof(e));
	e.kind = EV_WAKE;
	e.node = n->idx;
	e.t = when;
	n->wake_ns = when;
	if (push(s, e) < 0)
		s->rc = -ENOMEM;
}

static bool is_up_incarnation(struct sim *s, const dw_fabric_member *m, uint64_t t)
{
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *v = &s->nodes[i];

		if (v->id != m->id)
			continue;
		if (v->gen != m->generation)
			return false; /* an older incarnation: it did die */
		if (v->status == N_UP)
			return true;
		if (v->status == N_PAUSED) {
			uint64_t kh = (uint64_t)s->cfg->limits.missed * s->cfg->limits.interval_ns;
			uint64_t safe = kh - s->cfg->limits.interval_ns;

			(void)t;
			return v->pause_len_ns < safe;
		}
		return false;
	}
	return false;
}

static struct snode *node_by_id(struct sim *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].id == id)
			return &s->nodes[i];
	}
	return NULL;
}

static void on_event(void *arg, const dw_fabric_event *ev)
{
	struct snode *obs = arg;
	struct sim *s = obs->sim;
	dw_fabric_sim_result *r = s->res;

	hash_u64(s, ev->now_ns);
	hash_u64(s, obs->id);
	hash_u64(s, (uint64_t)ev->type << 32 | ev->member.generation);
	hash_u64(s, ev->member.id ^ ev->member.counter);
	if (s->cfg->trace_events)
		fprintf(stderr,
			"t=%.3f node=%016llx event=%s member=%016llx gen=%u ctr=%u leader=%d\n",
			(double)ev->now_ns / 1e9, (unsigned long long)obs->id,
			dw_fabric_event_name(ev->type), (unsigned long long)ev->member.id,
			ev->member.generation, ev->member.counter, ev->member.leader);
	if (ev->type == DW_FABRIC_EV_SWITCHED || ev->type == DW_FABRIC_EV_SWITCH_RECOMMENDED) {
		/* a cluster switch counts once: when the first node takes the new topology;
		 * recommendations count as the first node to raise one saw them */
		char one[64];
		size_t used = strlen(r->switch_log);

		if (ev->type == DW_FABRIC_EV_SWITCHED) {
			if (ev->to == s->last_topo)
				return;
			s->last_topo = ev->to;
			r->switches++;
		} else {
			if (!s->recommend_observer)
				s->recommend_observer = obs->id;
			if (s->recommend_observer != obs->id)
				return;
			r->recommendations++;
		}
		snprintf(one, sizeof(one), "%s%s%s->%s@%u", used ? " " : "",
			 ev->type == DW_FABRIC_EV_SWITCHED ? "" : "recommend:",
			 dw_fabric_topology_name(ev->from), dw_fabric_topology_name(ev->to),
			 ev->cluster_size);
		if (used + strlen(one) < sizeof(r->switch_log))
			memcpy(r->switch_log + used, one, strlen(one) + 1);
		return;
	}
	if (ev->type != DW_FABRIC_EV_REMOVED)
		return;
	r->removals++;
	if (is_up_incarnation(s, &ev->member, ev->now_ns)) {
		r->false_removals++;
		return;
	}
	{
		struct snode *v = node_by_id(s, ev->member.id);
		double d;
		uint64_t kh = (uint64_t)s->cfg->limits.missed * s->cfg->limits.interval_ns;

		if (!v || v->status == N_PAUSED || v->last_delivered_ns == 0)
			return;
		if (v->status == N_UP && v->gen == ev->member.generation)
			return;
		/*
		 * A monitor that decided the removal is measured from its last sign of life of the
		 * victim (heard itself or through a helper), against the whole window. A node that
		 * learnt the removal from a monitor (a Star leaf, a Federated member) is measured
		 * from the victim's last delivered packet, against the upper bound only, and kept
		 * apart from the detection times.
		 */
		if (ev->decided && ev->last_heard_ns) {
			uint64_t last = ev->last_heard_ns;

			d = (double)(ev->now_ns - last) / 1e9;
			if (ev->now_ns - last < kh ||
			    ev->now_ns - last > kh + s->cfg->limits.interval_ns / 2)
				r->detections_outside_window++;
		} else {
			d = (double)(ev->now_ns - v->last_delivered_ns) / 1e9;
			r->relayed_removals++;
			if (d > r->relayed_max_s)
				r->relayed_max_s = d;
			if (ev->now_ns - v->last_delivered_ns > kh + s->cfg->limits.interval_ns / 2)
				r->detections_outside_window++;
			return;
		}
		r->detections++;
		if (s->det_n == s->det_cap) {
			size_t ncap = s->det_cap ? s->det_cap * 2 : 256;
			double *nd = dw_realloc(s->det, ncap * sizeof(*nd));

			if (!nd) {
				s->rc = -ENOMEM;
				return;
			}
			s->det = nd;
			s->det_cap = ncap;
		}
		s->det[s->det_n++] = d;
	}
}

static int start_node(struct sim *s, struct snode *n, const dw_fabric_addr *seeds, size_t nseeds)
{
	dw_fabric_config cfg;
	int rc;

	dw_fabric_config_default(&cfg);
	cfg.node_id = n->id;
	cfg.generation = n->gen;
	cfg.addr.ip = n->idx + 1;
	cfg.addr.port = 7946;
	cfg.keyring = s->ring;
	cfg.topology = s->cfg->topology;
	cfg.mode = s->cfg->mode;
	cfg.limits = s->cfg->limits;
	cfg.clock = &s->clock.clock;
	cfg.transport.send = sim_send;
	cfg.transport.ctx = n;
	cfg.on_event = on_event;
	cfg.event_arg = n;
	cfg.seed = dw__mix64(s->cfg->seed ^ (n->id * 31 + n->gen));
	rc = dw_fabric_open(&cfg, &n->f);
	if (rc < 0)
		return rc;
	rc = dw_fabric_join(n->f, seeds, nseeds);
	if (rc < 0)
		return rc;
	n->status = N_UP;
	schedule_wake(s, n, s->now);
	return 0;
}

static void stop_node(struct snode *n)
{
	dw_fabric_close(n->f);
	n->f = NULL;
	n->status = N_DOWN;
}

static uint32_t count_up(struct sim *s)
{
	uint32_t up = 0;

	for (uint32_t i = 0; i < s->nnodes; i++)
		up += s->nodes[i].status == N_UP || s->nodes[i].status == N_PAUSED;
	return up;
}

/* A random node that is up (for seeds and victims); UINT32_MAX if none. */
static uint32_t random_up(struct sim *s, uint32_t exclude)
{
	uint32_t up = count_up(s);

	if (up == 0)
		return UINT32_MAX;
	for (int tries = 0; tries < 64; tries++) {
		uint32_t i = (uint32_t)(dw__rand_next(&s->rng) % s->nnodes);

		if (s->nodes[i].status == N_UP && i != exclude)
			return i;
	}
	for (uint32_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].status == N_UP && i != exclude)
			return i;
	}
	return UINT32_MAX;
}

static int join_via_random(struct sim *s, struct snode *n)
{
	dw_fabric_addr seeds[3];
	size_t ns = 0;

	for (int k = 0; k < 3; k++) {
		uint32_t i = random_up(s, n->idx);

		if (i == UINT32_MAX)
			break;
		seeds[ns].ip = i + 1;
		seeds[ns].port = 7946;
		ns++;
	}
	return start_node(s, n, seeds, ns);
}

/* ---- measurement ----------------------------------------------------------------------------- */

static void take_window(struct sim *s, bool start)
{
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *n = &s->nodes[i];

		if (start) {
			n->w_msgs = n->msgs;
			n->w_bytes = n->bytes;
		}
	}
	if (start) {
		s->window_start = s->now;
		return;
	}
	s->window_end = s->now;
	s->window_taken = true;
	{
		dw_fabric_sim_result *r = s->res;
		double intervals = (double)(s->window_end - s->window_start) /
				   (double)s->cfg->limits.interval_ns;
		double msum[5] = { 0 }, bsum[5] = { 0 }, esum[5] = { 0 };
		uint32_t cnt[5] = { 0 };
		uint32_t up = count_up(s), leaders = 0;
		uint32_t *gcount = NULL;
		uint32_t ng = dw__fabric_ngroups(&s->cfg->limits);

		if (intervals <= 0)
			return;
		gcount = dw_calloc(ng, sizeof(*gcount));
		if (!gcount)
			return;
		for (uint32_t i = 0; i < s->nnodes; i++) {
			if (s->nodes[i].status != N_UP)
				continue;
			gcount[dw__fabric_group_of(s->nodes[i].id, ng)]++;
		}
		for (uint32_t g = 0; g < ng; g++)
			leaders += gcount[g] > 0;
		for (uint32_t i = 0; i < s->nnodes; i++) {
			struct snode *n = &s->nodes[i];
			enum dw__role role;
			double expect = 0;

			if (n->status != N_UP)
				continue;
			role = dw__fabric_role(n->f);
			switch (role) {
			case DW__ROLE_MESH:
			case DW__ROLE_HUB:
				expect = 2.0 * (up - 1);
				break;
			case DW__ROLE_LEAF:
			case DW__ROLE_MEMBER:
				expect = 2.0;
				break;
			case DW__ROLE_LEADER:
				expect = 2.0 * (gcount[dw__fabric_group_of(n->id, ng)] - 1) +
					 2.0 * (leaders - 1);
				break;
			}
			msum[role] += (double)(n->msgs - n->w_msgs) / intervals;
			bsum[role] += (double)(n->bytes - n->w_bytes) / intervals;
			esum[role] += expect;
			cnt[role]++;
		}
		dw_free(gcount);
#define AVG(x, i) ((cnt[i]) ? (x)[i] / cnt[i] : 0)
		r->msgs_mesh = AVG(msum, DW__ROLE_MESH);
		r->msgs_hub = AVG(msum, DW__ROLE_HUB);
		r->msgs_leaf = AVG(msum, DW__ROLE_LEAF);
		r->msgs_leader = AVG(msum, DW__ROLE_LEADER);
		r->msgs_member = AVG(msum, DW__ROLE_MEMBER);
		r->bytes_mesh = AVG(bsum, DW__ROLE_MESH);
		r->bytes_hub = AVG(bsum, DW__ROLE_HUB);
		r->bytes_leaf = AVG(bsum, DW__ROLE_LEAF);
		r->bytes_leader = AVG(bsum, DW__ROLE_LEADER);
		r->bytes_member = AVG(bsum, DW__ROLE_MEMBER);
		r->expect_mesh = AVG(esum, DW__ROLE_MESH);
		r->expect_hub = AVG(esum, DW__ROLE_HUB);
		r->expect_leaf = AVG(esum, DW__ROLE_LEAF);
		r->expect_leader = AVG(esum, DW__ROLE_LEADER);
		r->expect_member = AVG(esum, DW__ROLE_MEMBER);
#undef AVG
	}
}

/* Do all running nodes count the cluster as it is? */
static bool views_agree(struct sim *s)
{
	uint32_t up = 0;

	for (uint32_t i = 0; i < s->nnodes; i++)
		up += s->nodes[i].status == N_UP;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].status == N_UP && dw_fabric_cluster_size(s->nodes[i].f) != up)
			return false;
	}
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---- run --------------------------------------------------------------------------------------
 */

void dw_fabric_sim_config_default(dw_fabric_sim_config *c)
{
	memset(c, 0, sizeof(*c));
	c->nodes = 10;
	c->topology = DW_FABRIC_MESH;
	c->mode = DW_FABRIC_MODE_AUTO;
	dw_fabric_limits_default(&c->limits);
	c->seconds = 600;
	c->grow_every_ns = DW_NS_PER_SEC;
	c->latency_ns = DW_NS_PER_MS;
	c->seed = 1;
}

static int preform(struct sim *s, uint32_t n0)
{
	uint32_t ng = dw__fabric_ngroups(&s->cfg->limits);
	uint64_t *gl = NULL; /* lowest id per group */
	uint64_t low = UINT64_MAX;
	int rc = 0;

	gl = dw_malloc(ng * sizeof(*gl));
	if (!gl)
		return -ENOMEM;
	for (uint32_t g = 0; g < ng; g++)
		gl[g] = UINT64_MAX;
	for (uint32_t i = 0; i < n0; i++) {
		uint64_t id = s->nodes[i].id;
		uint16_t g = dw__fabric_group_of(id, ng);

		if (id < gl[g])
			gl[g] = id;
		if (id < low)
			low = id;
	}
	for (uint32_t i = 0; i < n0 && rc == 0; i++)
		rc = start_node(s, &s->nodes[i], NULL, 0);
	for (uint32_t i = 0; i < n0 && rc == 0; i++) {
		struct snode *a = &s->nodes[i];
		uint16_t ga = dw__fabric_group_of(a->id, ng);

		for (uint32_t j = 0; j < n0 && rc == 0; j++) {
			struct snode *b = &s->nodes[j];
			uint16_t gb = dw__fabric_group_of(b->id, ng);
			dw_fabric_member m;
			bool leader;

			if (i == j)
				continue;
			if (s->cfg->topology == DW_FABRIC_FEDERATED) {
				leader = gl[gb] == b->id;
				if (gb != ga && !leader)
					continue;
			} else {
				leader = s->cfg->topology == DW_FABRIC_STAR && b->id == low;
			}
			memset(&m, 0, sizeof(m));
			m.id = b->id;
			m.generation = b->gen;
			m.addr.ip = j + 1;
			m.addr.port = 7946;
			m.leader = leader;
			m.group = s->cfg->topology == DW_FABRIC_FEDERATED ? gb : 0;
			rc = dw__fabric_seed_member(a->f, &m);
		}
	}
	dw_free(gl);
	return rc;
}

int dw_fabric_sim_run(const dw_fabric_sim_config *cfg, dw_fabric_sim_result *out)
{
	struct sim *s = NULL;
	uint64_t H, KH, end, fault_at, restart_at;
	uint32_t total;
	struct timespec t0, t1;
	struct rusage ru;
	char err[160];
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->convergence_s = -1;
	if (!cfg || cfg->nodes == 0 || cfg->seconds == 0 || cfg->loss < 0 || cfg->loss >= 1 ||
	    cfg->kill + cfg->pause + cfg->restart >
		    (cfg->grow_to > cfg->nodes ? cfg->grow_to : cfg->nodes))
		return DW_EUSAGE;
	rc = dw_fabric_limits_validate(&cfg->limits, err, sizeof(err));
	if (rc < 0)
		return rc;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	s = dw_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	s->res = out;
	s->rng = dw__mix64(cfg->seed ^ 0x5eed);
	s->hash = 0xcbf29ce484222325ULL;
	s->last_topo = cfg->topology;
	dw_fake_clock_init(&s->clock, 0, 1700000000ULL * DW_NS_PER_SEC);
	/* a fixed key: the simulator tests the protocol, the real HMAC runs on every packet */
	s->ring.n = 1;
	s->ring.keys[0].id = 1;
	for (int i = 0; i < DW_FABRIC_KEY_LEN; i++)
		s->ring.keys[0].secret[i] = (uint8_t)(dw__mix64(cfg->seed + (uint64_t)i) & 0xff);
	total = cfg->grow_to > cfg->nodes ? cfg->grow_to : cfg->nodes;
	s->nodes = dw_calloc(total, sizeof(*s->nodes));
	if (!s->nodes) {
		rc = -ENOMEM;
		goto out;
	}
	s->nnodes = total;
	for (uint32_t i = 0; i < total; i++) {
		s->nodes[i].id = dw__mix64(cfg->seed * 0x100000001b3ULL + i) | 1;
		s->nodes[i].gen = 1;
		s->nodes[i].sim = s;
		s->nodes[i].idx = i;
	}
	H = cfg->limits.interval_ns;
	KH = (uint64_t)cfg->limits.missed * H;
	end = cfg->seconds * DW_NS_PER_SEC;
	fault_at = cfg->fault_at_ns ? cfg->fault_at_ns : 4 * KH;
	restart_at = fault_at + 2 * KH;
	rc = preform(s, cfg->nodes);
	if (rc < 0)
		goto out;

	/* scripted events */
	{
		struct event e;

		memset(&e, 0, sizeof(e));
		if (cfg->kill + cfg->pause + cfg->restart > 0 && fault_at < end) {
			e.kind = EV_KILL;
			e.t = fault_at;
			rc = push(s, e);
		}
		if (rc == 0 && cfg->grow_to > cfg->nodes) {
			e.kind = EV_GROW;
			e.t = 2 * H;
			e.node = cfg->nodes;
			rc = push(s, e);
		}
		if (rc == 0) {
			e.kind = EV_MEASURE;
			e.t = H;
			rc = push(s, e);
		}
		if (rc < 0)
			goto out;
	}
	s->last_change_ns = 0;

	while (s->heap_n && s->rc == 0) {
		struct event e = pop(s);
		struct snode *n;

		if (e.t > end) {
			dw_free(e.pkt);
			break;
		}
		s->now = e.t;
		dw_fake_clock_advance(&s->clock, e.t - atomic_load(&s->clock.mono_ns));
		switch (e.kind) {
		case EV_WAKE:
			n = &s->nodes[e.node];
			if (n->status != N_UP || n->wake_ns != e.t)
				break;
			n->wake_ns = 0;
			schedule_wake(s, n, dw_fabric_tick(n->f));
			break;
		case EV_DELIVER:
			n = &s->nodes[e.node];
			if (n->status == N_UP) {
				struct snode *src = &s->nodes[e.src];
				dw_fabric_addr from = { e.src + 1, 7946 };

				src->last_delivered_ns = s->now; /* approx: arrival time */
				n->msgs++;
				n->bytes += e.len;
				hash_u64(s, e.t ^ ((uint64_t)e.src << 32 | e.node));
				hash_u64(s, e.len);
				out->packets++;
				if (dw_fabric_receive(n->f, &from, e.pkt, e.len) == DW_EAUTH)
					out->dropped_replay++;
				schedule_wake(s, n, dw_fabric_tick(n->f));
			}
			dw_free(e.pkt);
			break;
		case EV_KILL: {
			uint32_t want[3] = { cfg->kill, cfg->pause, cfg->restart };

			take_window(s, false);
			for (int kind = 0; kind < 3; kind++) {
				for (uint32_t k = 0; k < want[kind]; k++) {
					uint32_t i = random_up(s, UINT32_MAX);

					if (i == UINT32_MAX)
						break;
					n = &s->nodes[i];
					if (kind == 1) {
						struct event r;

						n->status = N_PAUSED;
						n->pause_start_ns = s->now;
						n->pause_len_ns = cfg->pause_ns;
						memset(&r, 0, sizeof(r));
						r.kind = EV_RESUME;
						r.node = i;
						r.t = s->now + cfg->pause_ns;
						rc = push(s, r);
					} else {
						stop_node(n);
						n->killed_for_good = kind == 0;
						if (kind == 2) {
							struct event r;

							memset(&r, 0, sizeof(r));
							r.kind = EV_RESTART;
							r.node = i;
							r.t = restart_at;
							rc = push(s, r);
						}
					}
					if (rc < 0)
						goto out;
				}
			}
			s->last_change_ns = s->now;
			s->converged = false;
			break;
		}
		case EV_RESUME:
			n = &s->nodes[e.node];
			if (n->status == N_PAUSED) {
				n->status = N_UP;
				n->wake_ns = 0;
				schedule_wake(s, n, s->now);
			}
			break;
		case EV_RESTART:
			n = &s->nodes[e.node];
			n->gen++;
			n->restarted = true;
			rc = join_via_random(s, n);
			if (rc < 0)
				goto out;
			s->last_change_ns = s->now;
			s->converged = false;
			break;
		case EV_GROW:
			n = &s->nodes[e.node];
			rc = join_via_random(s, n);
			if (rc < 0)
				goto out;
			s->last_change_ns = s->now;
			s->converged = false;
			if (e.node + 1 < cfg->grow_to) {
				e.node++;
				e.t = s->now + cfg->grow_every_ns;
				rc = push(s, e);
				if (rc < 0)
					goto out;
			}
			break;
		case EV_MEASURE:
			if (s->now == 2 * H)
				take_window(s, true);
			if (!s->converged && views_agree(s)) {
				s->converged = true;
				out->convergence_s = (double)(s->now - s->last_change_ns) / 1e9;
			}
			e.t = s->now + H;
			rc = push(s, e);
			if (rc < 0)
				goto out;
			break;
		}
	}
	if (s->rc < 0) {
		rc = s->rc;
		goto out;
	}
	if (!s->window_taken)
		take_window(s, false);
	if (!s->converged)
		out->convergence_s = -1;
	/* killed nodes that some running node still counts alive */
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *v = &s->nodes[i];

		if (!v->killed_for_good)
			continue;
		for (uint32_t j = 0; j < s->nnodes; j++) {
			if (s->nodes[j].status == N_UP &&
			    dw__fabric_knows_alive(s->nodes[j].f, v->id))
				out->missed_detections++;
		}
	}
	/* restarted nodes that every running node of their scope knows alive */
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct snode *v = &s->nodes[i];
		bool all = v->status == N_UP;

		if (!v->restarted)
			continue;
		for (uint32_t j = 0; j < s->nnodes && all; j++) {
			struct snode *o = &s->nodes[j];
			dw_fabric_stats st;
			uint32_t ng = dw__fabric_ngroups(&cfg->limits);

			if (o->status != N_UP || o == v)
				continue;
			dw_fabric_get_stats(o->f, &st);
			if (st.topology == DW_FABRIC_FEDERATED &&
			    dw__fabric_group_of(o->id, ng) != dw__fabric_group_of(v->id, ng))
				continue;
			all = dw__fabric_knows_alive(o->f, v->id);
		}
		out->rejoined += all;
	}
	if (s->det_n) {
		qsort(s->det, s->det_n, sizeof(double), cmp_double);
		out->detect_min_s = s->det[0];
		out->detect_p50_s = s->det[(s->det_n - 1) / 2];
		out->detect_p99_s = s->det[(size_t)((double)(s->det_n - 1) * 0.99)];
		out->detect_max_s = s->det[s->det_n - 1];
	}
	out->final_nodes = count_up(s);
	out->final_size_min = UINT32_MAX;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		uint32_t cs;

		if (s->nodes[i].status != N_UP)
			continue;
		cs = dw_fabric_cluster_size(s->nodes[i].f);
		if (cs < out->final_size_min)
			out->final_size_min = cs;
		if (cs > out->final_size_max)
			out->final_size_max = cs;
	}
	if (out->final_size_min == UINT32_MAX)
		out->final_size_min = 0;
	out->final_alive_views_agree = views_agree(s);
	out->final_topology = cfg->topology;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].status == N_UP) {
			dw_fabric_stats st;

			dw_fabric_get_stats(s->nodes[i].f, &st);
			out->final_topology = st.topology;
			out->dropped_auth += st.dropped[DW_FABRIC_DROP_AUTH];
			break;
		}
	}
	out->trace_hash = s->hash;
out:
	if (s) {
		for (uint32_t i = 0; i < s->nnodes; i++)
			dw_fabric_close(s->nodes[i].f);
		while (s->heap_n) {
			struct event e = pop(s);

			dw_free(e.pkt);
		}
		dw_free(s->heap);
		dw_free(s->nodes);
		dw_free(s->det);
		dw_free(s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	out->wall_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		out->peak_rss_kb = (uint64_t)ru.ru_maxrss;
	return rc;
}
