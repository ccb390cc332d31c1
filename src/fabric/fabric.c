// SPDX-License-Identifier: MIT
/*
 * Fabric protocol logic: membership, failure detection, dissemination, topologies, switching.
 *
 * A pure state machine. Inputs: dw_fabric_receive() (an authenticated datagram) and
 * dw_fabric_tick() (time passed, read from the injected clock). Outputs: datagrams through the
 * transport vtable and events through the callback. No sockets, no sleeping, no threads here;
 * transport_udp.c and sim.c drive it.
 *
 * Threads and locking: one mutex per handle (f->lock) guards every field; each public function
 * takes it for its whole run. The transport send and the event callback run under it.
 *
 * Invariants:
 *  1. A member record is ordered by its incarnation (generation, counter); at equal incarnation
 *     dead > suspect > alive. A record only ever replaces an older one, so an old message never
 *     overrides newer state (merge()). Only the node itself raises its incarnation: on restart
 *     (generation) and to refute a suspicion or removal (counter), so it is never stuck dead.
 *  2. Evidence is a local time: the last sign of life of a member. Direct packets from it set it
 *     to now; an EVID answer from a helper sets it to now - age (only ever forward). Ages only
 *     grow along the path, so evidence is never later than the member's real last packet plus
 *     latency: a node is never removed before K*H after its last sign of life.
 *  3. A node monitors the members the topology makes it heartbeat or be heartbeaten by
 *     (is_monitored()). For those it alone decides: a direct probe every H/10 once a heartbeat
 *     is H/2 overdue, suspect at (K-1)*H of silence (the probe then carries the suspicion so the
 *     member can refute, and helpers are asked for their evidence), dead at K*H. The check runs
 *     every H/10, so removal lands in [K*H, K*H + H/10 + latency]. A monitor that heard the
 *     member within K*H ignores someone else's removal notice at the same incarnation. Others
 *     learn removals by dissemination; hubs and leaders push a removal at once, four times.
 *  4. Topology is (epoch, topology); a higher epoch wins everywhere. Only the coordinator (the
 *     lowest id in the cluster: the Star hub, a Federated leader, or the lowest Mesh node) raises
 *     the epoch, so a switch is one coordinated change. In Star and Mesh the coordinator admits
 *     every join (others redirect to it), so it counts the cluster exactly and a switch lands on
 *     its threshold; in Federated the leader of the joiner's group admits it.
 *  5. Federated views hold the node's group, the leaders and the coordinator only (about
 *     2*sqrt(N) records), never N: members that leave the scope are kept as quiet tombstones
 *     ("gone": no event, never announced) so stale copies cannot bring them back.
 *  6. A node that was stopped (a gap of more than H/2 between two calls) moves every removal
 *     clock forward by the gap: it judges its peers only on time it was listening.
 *
 * State of a member as seen by a monitor:
 *
 *     merge(alive) / add()        check(): silence >= (K-1)*H       check(): silence >= K*H
 *   ------------------> ALIVE ---------------------------> SUSPECT ----------------------> DEAD
 *                        ^  ^  on_evidence(): fresh evidence  |                            |
 *                        |  +---------------------------------+                            |
 *                        +--------- merge(): higher incarnation (refuted / restarted) ------+
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fabric_int.h"

/* ---- tuning constants ---------------------------------------------------------------------- */

/*
 * Checks and probes run at H/10: removal lands at most H/10 after K*H (inside the required
 * H/2), and a suspect gets 10 probes in its last interval; at 10 % loss a probe round trip
 * fails with p = 0.19, so 10 failures in a row have p ~ 6e-8 per suspicion.
 */
#define CHECK_DIVISOR 10
/* Evidence requests per probe round: three helpers each answering with p = 0.81 leave a round
 * empty with p ~ 0.007, on top of the direct probe. */
#define HELPERS_PER_PROBE 3
/* An update rides on every packet for this many heartbeat rounds: three tries per target make a
 * miss at 10 % loss 1e-3, and the direct-contact backstop (auto-add) covers the rest. */
#define DISSEM_ROUNDS 3
/* Hubs and leaders push a removal or topology change this many times, H/10 apart: a target
 * misses all of them with p = 1e-4 at 10 % loss, well inside the H/2 removal window. */
#define URGENT_PUSHES 4
/* Pending dissemination entries: a cap so a join storm cannot grow memory; the oldest drops
 * (it was already sent at least once, and the backstops above remain). */
#define DISSEM_CAP 4096
/* Dead records are kept this many K*H after removal, so stale alive records still riding on
 * packets (for DISSEM_ROUNDS*H at most) cannot bring a removed node back. */
#define DEAD_RETAIN_KH 10
/* Join retries: a lost JOIN or page request is retried after this share of H, cycling seeds. */
#define JOIN_RETRY_DIVISOR 4
/* Replay windows kept per sender id; the table grows to this many times the view's cap. */
#define REPLAY_SENDERS_FACTOR 4

/* ---- state ---------------------------------------------------------------------------------- */

struct member {
	uint64_t id;
	uint32_t gen, ctr;
	uint8_t state;	 /* dw_fabric_state */
	uint8_t flags;	 /* DW__MEMBER_FLAG_LEADER */
	uint16_t group;	 /* as the member reports it */
	uint16_t lgroup; /* its group by my limits: what my decisions use */
	bool monitored;
	bool gone; /* left my scope (Federated): kept like a dead record, but never announced */
	uint32_t ip;
	uint16_t port;
	uint32_t group_size;  /* Federated leaders: live members of their group, as reported */
	uint64_t evidence_ns; /* removal clock: last sign of life, or the start of a grace */
	uint64_t heard_ns;    /* last real sign of life only (0: none): what EVID answers */
	uint64_t state_ns;
};

struct pending {
	uint64_t id;
	uint8_t rounds;
};

struct replay_slot {
	uint64_t id;
	struct dw__replay w;
};

enum join_state { J_IDLE = 0, J_JOINING, J_SYNCING, J_JOINED, J_REFUSED };

static const dw_scalable_ops fabric_scalable_ops;

struct dw_fabric {
	pthread_mutex_t lock;
	dw_scalable scalable; /* immutable after open */
	dw_fabric_config cfg; /* limits inside are the live ones */
	struct dw__wire_keys keys;
	uint64_t rng;
	uint64_t seq;

	struct member *m; /* m[0] is this node */
	size_t n, cap;
	uint32_t *index; /* open addressing: slot -> member index + 1, 0 empty */
	size_t index_cap;

	struct replay_slot *replay;
	size_t replay_n, replay_cap;

	struct pending *pend;
	size_t pend_n, pend_cap, pend_cursor;

	dw_fabric_topology topology;
	uint32_t epoch;
	dw_fabric_topology base; /* the configured topology: where a shrink goes back to */
	bool recommended;	 /* recommend mode: event raised for the current crossing */
	bool roles_dirty;
	uint64_t hub_id;	/* Star hub / my Federated leader / 0 */
	uint64_t low_id;	/* lowest live id I know: the coordinator, always a leader */
	bool relay;		/* I am hub or leader: I re-disseminate what I learn */
	uint32_t reported_size; /* Federated member: cluster size from my leader */
	uint32_t ngroups;	/* cached from the limits */
	bool stepped_down;	/* no longer a leader: the other leaders must hear it */
	/* ids of the members I monitor, so the H/10 check does not walk a whole Federated view
	 * (a member monitors one leader out of ~200 records) */
	uint64_t *mon, *mon_scan;
	size_t nmon, mon_cap;
	bool mon_overflow;

	enum join_state join;
	dw_fabric_addr seeds[16];
	size_t nseeds, seed_next;
	dw_fabric_addr sync_from;
	uint32_t sync_offset, sync_total;

	uint64_t next_round_ns, next_check_ns, next_join_ns, next_flush_ns;
	unsigned flush_left;
	uint64_t last_purge_ns;
	uint64_t last_switch_ns; /* when the topology last changed here */
	uint64_t last_run_ns;	 /* last call into the handle: a long gap means we were stopped */

	dw_fabric_stats st;
	dw_ema detect_ema;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t now_ns(dw_fabric *f)
{
	return dw_clock_now(f->cfg.clock);
}

static uint64_t H(dw_fabric *f)
{
	return f->cfg.limits.interval_ns;
}

static uint64_t suspect_after(dw_fabric *f)
{
	uint32_t k = f->cfg.limits.missed;

	return k >= 2 ? (k - 1) * H(f) : H(f) / 2;
}

/*
 * Probing starts once a heartbeat is half an interval overdue: at 10 % loss one in ten links
 * gets here each round, and a probe answered within H/10 settles it long before anyone hears of
 * a suspicion (which would make the node refute and churn its incarnation cluster-wide).
 */
static uint64_t probe_after(dw_fabric *f)
{
	uint64_t p = H(f) + H(f) / 2;

	return p < suspect_after(f) ? p : suspect_after(f);
}

static uint64_t dead_after(dw_fabric *f)
{
	return f->cfg.limits.missed * H(f);
}

static int inc_cmp(uint32_t g1, uint32_t c1, uint32_t g2, uint32_t c2)
{
	if (g1 != g2)
		return g1 < g2 ? -1 : 1;
	if (c1 != c2)
		return c1 < c2 ? -1 : 1;
	return 0;
}

uint32_t dw__fabric_ngroups(const dw_fabric_limits *l)
{
	uint32_t g = (l->federated_max + l->group_size - 1) / l->group_size;

	return g ? g : 1;
}

uint16_t dw__fabric_group_of(uint64_t id, uint32_t ngroups)
{
	return (uint16_t)(dw__mix64(id) % ngroups);
}

static uint16_t group_of(dw_fabric *f, uint64_t id)
{
	return dw__fabric_group_of(id, f->ngroups);
}

static void regroup(dw_fabric *f)
{
	f->ngroups = dw__fabric_ngroups(&f->cfg.limits);
	for (size_t i = 0; i < f->n; i++)
		f->m[i].lgroup = group_of(f, f->m[i].id);
}

static bool is_leader_rec(const struct member *m)
{
	return m->flags & DW__MEMBER_FLAG_LEADER;
}

static void to_public(const struct member *m, dw_fabric_member *out)
{
	out->id = m->id;
	out->generation = m->gen;
	out->counter = m->ctr;
	out->state = (dw_fabric_state)m->state;
	out->addr.ip = m->ip;
	out->addr.port = m->port;
	out->leader = is_leader_rec(m);
	out->group = m->group;
}

static void emit_ev(dw_fabric *f, dw_fabric_event_type type, const struct member *m, bool decided)
{
	dw_fabric_event ev;

	if (!f->cfg.on_event)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.now_ns = now_ns(f);
	if (m) {
		to_public(m, &ev.member);
		ev.last_heard_ns = m->heard_ns;
	}
	ev.decided = decided;
	ev.from = ev.to = f->topology;
	ev.cluster_size = f->st.cluster_size;
	f->cfg.on_event(f->cfg.event_arg, &ev);
}

static void emit(dw_fabric *f, dw_fabric_event_type type, const struct member *m)
{
	emit_ev(f, type, m, false);
}

static void emit_topo(dw_fabric *f, dw_fabric_event_type type, dw_fabric_topology from,
		      dw_fabric_topology to, uint32_t size, const char *reason)
{
	dw_fabric_event ev;

	if (!f->cfg.on_event)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.now_ns = now_ns(f);
	ev.from = from;
	ev.to = to;
	ev.cluster_size = size;
	ev.reason = reason;
	f->cfg.on_event(f->cfg.event_arg, &ev);
}

/* ---- member table ------------------------------------------------------------------------ */

static size_t slot_of(uint64_t id, size_t cap)
{
	return (size_t)(dw__mix64(id) & (cap - 1));
}

static int index_rebuild(dw_fabric *f, size_t cap)
{
	uint32_t *idx = dw_calloc(cap, sizeof(*idx));

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < f->n; i++) {
		size_t s = slot_of(f->m[i].id, cap);

		while (idx[s])
			s = (s + 1) & (cap - 1);
		idx[s] = (uint32_t)i + 1;
	}
	dw_free(f->index);
	f->index = idx;
	f->index_cap = cap;
	return 0;
}

static struct member *find(dw_fabric *f, uint64_t id)
{
	size_t s = slot_of(id, f->index_cap);

	while (f->index[s]) {
		struct member *m = &f->m[f->index[s] - 1];

		if (m->id == id)
			return m;
		s = (s + 1) & (f->index_cap - 1);
	}
	return NULL;
}

/* The view's cap: no topology holds more than its max, plus room for dead records. */
static size_t view_cap(dw_fabric *f)
{
	const dw_fabric_limits *l = &f->cfg.limits;
	uint32_t mx = l->federated_max;

	if (l->star_max > mx)
		mx = l->star_max;
	if (l->mesh_max > mx)
		mx = l->mesh_max;
	return (size_t)mx * 2 + 16;
}

static struct member *add_member(dw_fabric *f, uint64_t id)
{
	struct member *m;
	size_t s;

	if (f->n == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 16;
		struct member *nm;

		if (f->n >= view_cap(f))
			return NULL;
		nm = dw_realloc(f->m, ncap * sizeof(*nm));
		if (!nm)
			return NULL;
		f->m = nm;
		f->cap = ncap;
	}
	if ((f->n + 1) * 2 > f->index_cap) {
		if (index_rebuild(f, f->index_cap * 2) < 0)
			return NULL;
	}
	m = &f->m[f->n];
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->lgroup = group_of(f, id);
	s = slot_of(id, f->index_cap);
	while (f->index[s])
		s = (s + 1) & (f->index_cap - 1);
	f->index[s] = (uint32_t)f->n + 1;
	f->n++;
	return m;
}

/* Drop members by predicate (keeps m[0]); rebuilds the index once. */
static void compact(dw_fabric *f, bool (*drop)(dw_fabric *f, const struct member *m))
{
	size_t w = 1;
	bool changed = false;

	for (size_t i = 1; i < f->n; i++) {
		if (drop(f, &f->m[i])) {
			changed = true;
			continue;
		}
		if (w != i)
			f->m[w] = f->m[i];
		w++;
	}
	if (!changed)
		return;
	f->n = w;
	(void)index_rebuild(f, f->index_cap); /* same size: cannot fail worse than before */
}

/* ---- replay windows --------------------------------------------------------------------- */

static struct replay_slot *replay_slot(dw_fabric *f, uint64_t id, bool create)
{
	size_t s;

	if (f->replay_cap == 0 || (create && (f->replay_n + 1) * 2 > f->replay_cap)) {
		size_t ncap = f->replay_cap ? f->replay_cap * 2 : 32;
		struct replay_slot *nr;

		if (f->replay_cap && ncap > view_cap(f) * REPLAY_SENDERS_FACTOR) {
			/* Full: start over. A sender then gets one window of replays accepted,
			 * which membership merge() ignores as old anyway. */
			memset(f->replay, 0, f->replay_cap * sizeof(*f->replay));
			f->replay_n = 0;
		} else {
			nr = dw_calloc(ncap, sizeof(*nr));
			if (!nr)
				return NULL;
			for (size_t i = 0; i < f->replay_cap; i++) {
				if (!f->replay[i].id)
					continue;
				s = slot_of(f->replay[i].id, ncap);
				while (nr[s].id)
					s = (s + 1) & (ncap - 1);
				nr[s] = f->replay[i];
			}
			dw_free(f->replay);
			f->replay = nr;
			f->replay_cap = ncap;
		}
	}
	s = slot_of(id, f->replay_cap);
	while (f->replay[s].id) {
		if (f->replay[s].id == id)
			return &f->replay[s];
		s = (s + 1) & (f->replay_cap - 1);
	}
	if (!create)
		return NULL;
	f->replay[s].id = id;
	memset(&f->replay[s].w, 0, sizeof(f->replay[s].w));
	f->replay_n++;
	return &f->replay[s];
}

/* ---- roles --------------------------------------------------------------------------------- */

/* Is this record part of my view? Federated views hold my group and the leaders only. */
static bool in_scope(dw_fabric *f, uint64_t id, bool leader)
{
	if (f->topology != DW_FABRIC_FEDERATED)
		return true;
	return leader || id == f->low_id || group_of(f, id) == f->m[0].lgroup;
}

static bool live(const struct member *m)
{
	return m->state != DW_FABRIC_DEAD;
}

/* Joined: heartbeating and answering (a node pulling pages after a join still is). */
static bool active(dw_fabric *f)
{
	return f->join == J_JOINED || f->join == J_SYNCING;
}

/*
 * A member that left my scope (a leader that stepped down in another group, or everyone outside
 * my group when the cluster turns Federated) is dropped quietly: no event, never announced, but
 * its incarnation is remembered like a dead record's, so stale copies still riding on other
 * nodes' packets cannot bring it back.
 */
static void make_gone(dw_fabric *f, struct member *m, uint32_t gen, uint32_t ctr, uint8_t flags)
{
	m->gen = gen;
	m->ctr = ctr;
	m->flags = flags;
	m->state = DW_FABRIC_DEAD;
	m->gone = true;
	m->state_ns = now_ns(f);
	f->roles_dirty = true;
}

static void enqueue(dw_fabric *f, uint64_t id);
static void note_run(dw_fabric *f, uint64_t now);

/* Is m one I heartbeat or that heartbeats me? */
static bool is_monitored(dw_fabric *f, const struct member *m)
{
	uint64_t self = f->m[0].id;

	if (m->id == self || !live(m))
		return false;
	switch (f->topology) {
	case DW_FABRIC_MESH:
		return true;
	case DW_FABRIC_STAR:
		return f->hub_id == self || m->id == f->hub_id;
	case DW_FABRIC_FEDERATED:
		if (f->hub_id == self) /* I lead my group */
			return is_leader_rec(m) || m->id == f->low_id ||
			       m->lgroup == f->m[0].lgroup;
		return m->id == f->hub_id;
	}
	return false;
}

/* Do I heartbeat m each round, and do I ask for an ack? */
static bool is_target(dw_fabric *f, const struct member *m, bool *ack_req)
{
	uint64_t self = f->m[0].id;

	*ack_req = false;
	if (m->id == self || !live(m))
		return false;
	switch (f->topology) {
	case DW_FABRIC_MESH:
		return true;
	case DW_FABRIC_STAR:
		*ack_req = true;
		return f->hub_id != self && m->id == f->hub_id;
	case DW_FABRIC_FEDERATED:
		/* leaders heartbeat every leader they know, and the coordinator, through which
		 * new leaders find each other after a switch */
		if (f->hub_id == self)
			return is_leader_rec(m) || m->id == f->low_id;
		*ack_req = true;
		return m->id == f->hub_id;
	}
	return false;
}

static int mon_push(dw_fabric *f, uint64_t id)
{
	if (f->nmon == f->mon_cap) {
		size_t ncap = f->mon_cap ? f->mon_cap * 2 : 8;
		uint64_t *a = dw_realloc(f->mon, ncap * sizeof(*a));
		uint64_t *b;

		if (!a)
			return -ENOMEM;
		f->mon = a;
		b = dw_realloc(f->mon_scan, ncap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		f->mon_scan = b;
		f->mon_cap = ncap;
	}
	f->mon[f->nmon++] = id;
	return 0;
}

static void recompute_roles(dw_fabric *f)
{
	struct member *self = &f->m[0];
	uint64_t now = now_ns(f);
	uint64_t best = self->id, low = self->id;
	uint16_t mygroup = self->lgroup;
	uint8_t want_flags;
	uint32_t alive = 0, suspect = 0, dead = 0, group_alive = 0;
	uint64_t leaders_sum = 0;
	bool was_relay;

	for (size_t i = 0; i < f->n; i++) {
		struct member *m = &f->m[i];

		if (m->state == DW_FABRIC_ALIVE)
			alive++;
		else if (m->state == DW_FABRIC_SUSPECT)
			suspect++;
		else if (!m->gone)
			dead++;
		if (!live(m))
			continue;
		if (m->id < low)
			low = m->id;
		if (f->topology == DW_FABRIC_FEDERATED) {
			if (m->lgroup != mygroup)
				continue;
			group_alive++;
		}
		if (m->id < best)
			best = m->id;
	}
	f->hub_id = f->topology == DW_FABRIC_MESH ? 0 : best;
	f->low_id = low;
	was_relay = f->relay;
	f->relay = f->topology != DW_FABRIC_MESH && best == self->id;
	if (f->relay && !was_relay && f->topology == DW_FABRIC_FEDERATED && low != self->id &&
	    f->join == J_JOINED) {
		/* a new leader pulls the leaders it does not know yet from the coordinator,
		 * which every node knows and every leader reports to */
		struct member *c = find(f, low);

		if (c) {
			f->join = J_SYNCING;
			f->sync_from.ip = c->ip;
			f->sync_from.port = c->port;
			f->sync_offset = 0;
			f->next_join_ns = now;
		}
	}
	want_flags = f->relay ? DW__MEMBER_FLAG_LEADER : 0;
	if ((self->flags & DW__MEMBER_FLAG_LEADER) != want_flags) {
		self->flags = (uint8_t)((self->flags & ~DW__MEMBER_FLAG_LEADER) | want_flags);
		self->ctr++;
		enqueue(f, self->id);
		if (was_relay && !f->relay && f->topology == DW_FABRIC_FEDERATED)
			f->stepped_down = true; /* tell the leaders at the next tick */
	}
	self->group = f->topology == DW_FABRIC_FEDERATED ? mygroup : 0;
	self->group_size = group_alive;

	f->nmon = 0;
	f->mon_overflow = false;
	for (size_t i = 0; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool mon = is_monitored(f, m);

		if (mon && !m->monitored && m->evidence_ns < now)
			m->evidence_ns = now; /* grace: a new duty starts its clock now */
		m->monitored = mon;
		if (mon && mon_push(f, m->id) < 0)
			f->mon_overflow = true; /* check() then scans the whole view */
		if (f->topology == DW_FABRIC_FEDERATED && live(m) && is_leader_rec(m) &&
		    m->lgroup != mygroup)
			leaders_sum += m->group_size ? m->group_size : 1; /* not reported yet */
	}
	f->st.alive = alive;
	f->st.suspect = suspect;
	f->st.dead = dead;
	if (f->topology != DW_FABRIC_FEDERATED)
		f->st.cluster_size = alive + suspect;
	else if (f->relay)
		f->st.cluster_size = (uint32_t)(group_alive + leaders_sum);
	else
		f->st.cluster_size =
			f->reported_size > group_alive ? f->reported_size : group_alive;
	f->roles_dirty = false;
}

static void roles(dw_fabric *f)
{
	if (f->roles_dirty)
		recompute_roles(f);
}

enum dw__role dw__fabric_role(dw_fabric *f)
{
	enum dw__role r;

	pthread_mutex_lock(&f->lock);
	roles(f);
	if (f->topology == DW_FABRIC_MESH)
		r = DW__ROLE_MESH;
	else if (f->topology == DW_FABRIC_STAR)
		r = f->relay ? DW__ROLE_HUB : DW__ROLE_LEAF;
	else
		r = f->relay ? DW__ROLE_LEADER : DW__ROLE_MEMBER;
	pthread_mutex_unlock(&f->lock);
	return r;
}

uint64_t dw__fabric_id(dw_fabric *f)
{
	return f->m[0].id;
}

/* ---- dissemination queue ------------------------------------------------------------------ */

static void enqueue(dw_fabric *f, uint64_t id)
{
	for (size_t i = 0; i < f->pend_n; i++) {
		if (f->pend[i].id == id) {
			f->pend[i].rounds = DISSEM_ROUNDS;
			return;
		}
	}
	if (f->pend_n == DISSEM_CAP) {
		memmove(f->pend, f->pend + 1, (DISSEM_CAP - 1) * sizeof(*f->pend));
		f->pend_n--;
	}
	if (f->pend_n == f->pend_cap) {
		size_t ncap = f->pend_cap ? f->pend_cap * 2 : 8;
		struct pending *np = dw_realloc(f->pend, ncap * sizeof(*np));

		if (!np)
			return; /* the update still travels on direct contact */
		f->pend = np;
		f->pend_cap = ncap;
	}
	f->pend[f->pend_n].id = id;
	f->pend[f->pend_n].rounds = DISSEM_ROUNDS;
	f->pend_n++;
}

static void pend_round(dw_fabric *f)
{
	size_t w = 0;

	for (size_t i = 0; i < f->pend_n; i++) {
		if (--f->pend[i].rounds == 0)
			continue;
		f->pend[w++] = f->pend[i];
	}
	f->pend_n = w;
	if (f->pend_cursor >= f->pend_n)
		f->pend_cursor = 0;
}

/* ---- sending ------------------------------------------------------------------------------- */

static void member_item(const struct member *m, struct dw__wire_item *it)
{
	it->kind = DW__ITEM_MEMBER;
	it->u.member.id = m->id;
	it->u.member.gen = m->gen;
	it->u.member.ctr = m->ctr;
	it->u.member.state = m->state;
	it->u.member.flags = m->flags;
	it->u.member.group = m->group;
	it->u.member.ip = m->ip;
	it->u.member.port = m->port;
}

static void begin(dw_fabric *f, struct dw__wire_writer *w, uint8_t *buf, uint8_t type,
		  uint8_t flags)
{
	struct dw__wire_item it;

	dw__wire_begin(w, buf, DW__WIRE_MAX_PACKET, type, flags, f->m[0].id, ++f->seq);
	member_item(&f->m[0], &it);
	(void)dw__wire_put(w, &it);
}

static void put_cluster(dw_fabric *f, struct dw__wire_writer *w)
{
	struct dw__wire_item it;

	it.kind = DW__ITEM_CLUSTER;
	it.u.cluster.epoch = f->epoch;
	it.u.cluster.topology = (uint8_t)f->topology;
	it.u.cluster.size = f->st.cluster_size;
	it.u.cluster.group_size = f->relay ? f->m[0].group_size : 0;
	(void)dw__wire_put(w, &it);
}

/* Fill the rest of the packet with pending updates, rotating so each gets its turn. */
static void put_pending(dw_fabric *f, struct dw__wire_writer *w, uint64_t skip_id)
{
	size_t n = f->pend_n;

	for (size_t k = 0; k < n && dw__wire_room(w, DW__MEMBER_ITEM_LEN); k++) {
		size_t i = (f->pend_cursor + k) % n;
		struct member *m = find(f, f->pend[i].id);
		struct dw__wire_item it;

		if (!m || m->id == skip_id || m == &f->m[0] || m->gone)
			continue;
		member_item(m, &it);
		(void)dw__wire_put(w, &it);
	}
	if (n)
		f->pend_cursor = (f->pend_cursor + 1) % n;
}

static void transmit(dw_fabric *f, const dw_fabric_addr *to, struct dw__wire_writer *w)
{
	int len = dw__wire_finish(w, &f->keys);

	if (len < 0) {
		f->st.send_errors++;
		return;
	}
	f->st.sent_msgs++;
	f->st.sent_bytes += (uint64_t)len;
	if (f->cfg.transport.send(f->cfg.transport.ctx, to, w->buf, (size_t)len) < 0)
		f->st.send_errors++;
}

static void addr_of(const struct member *m, dw_fabric_addr *a)
{
	a->ip = m->ip;
	a->port = m->port;
}

/* PING, ACK or UPDATE with our record, the cluster item and piggybacked updates. */
static void send_status(dw_fabric *f, const struct member *to, uint8_t type, uint8_t flags,
			const struct member *extra)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	dw_fabric_addr a;

	begin(f, &w, buf, type, flags);
	put_cluster(f, &w);
	if (extra) {
		member_item(extra, &it);
		(void)dw__wire_put(&w, &it);
	}
	put_pending(f, &w, extra ? extra->id : 0);
	addr_of(to, &a);
	transmit(f, &a, &w);
}

static void send_status_addr(dw_fabric *f, const dw_fabric_addr *to, uint8_t type,
			     const struct member *extra)
{
	struct member tmp;

	memset(&tmp, 0, sizeof(tmp));
	tmp.ip = to->ip;
	tmp.port = to->port;
	send_status(f, &tmp, type, 0, extra);
}

static void send_evid_req(dw_fabric *f, const struct member *helper, uint64_t subject)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	dw_fabric_addr a;

	begin(f, &w, buf, DW__PKT_EVID_REQ, 0);
	it.kind = DW__ITEM_EVID_REQ;
	it.u.subject = subject;
	(void)dw__wire_put(&w, &it);
	addr_of(helper, &a);
	transmit(f, &a, &w);
}

/* Who else would hear from m directly? (helpers for an evidence request) */
static bool could_vouch(dw_fabric *f, const struct member *x, const struct member *m)
{
	if (x->id == f->m[0].id || x->id == m->id || x->state != DW_FABRIC_ALIVE)
		return false;
	switch (f->topology) {
	case DW_FABRIC_MESH:
		return true;
	case DW_FABRIC_STAR:
		return m->id == f->hub_id; /* every leaf hears the hub */
	case DW_FABRIC_FEDERATED:
		if (m->id == f->hub_id) /* my leader: my group mates hear it */
			return x->lgroup == m->lgroup;
		if (f->relay && is_leader_rec(m)) /* another leader: the leaders hear it */
			return is_leader_rec(x);
		return false;
	}
	return false;
}

static void probe(dw_fabric *f, struct member *m)
{
	unsigned asked = 0;

	/* direct: a ping that asks for an ack and, once suspected, carries the suspicion so m
	 * can refute it */
	send_status(f, m, DW__PKT_PING, DW__PKT_FLAG_ACK_REQ,
		    m->state == DW_FABRIC_SUSPECT ? m : NULL);
	if (f->n < 3 || m->state != DW_FABRIC_SUSPECT)
		return;
	for (unsigned tries = 0; tries < 4 * HELPERS_PER_PROBE && asked < HELPERS_PER_PROBE;
	     tries++) {
		struct member *x = &f->m[dw__rand_next(&f->rng) % f->n];

		if (!could_vouch(f, x, m))
			continue;
		send_evid_req(f, x, m->id);
		asked++;
	}
}

/* Push pending updates at once to everyone I disseminate to (hub/leader duty). */
static void flush_urgent(dw_fabric *f)
{
	uint16_t mygroup = f->m[0].lgroup;

	for (size_t i = 1; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool ack;

		if (!live(m))
			continue;
		if (!(is_target(f, m, &ack) || is_monitored(f, m) ||
		      (f->topology == DW_FABRIC_FEDERATED && f->relay && m->lgroup == mygroup)))
			continue;
		send_status(f, m, DW__PKT_UPDATE, 0, NULL);
	}
}

static void schedule_urgent(dw_fabric *f)
{
	if (!f->relay)
		return;
	f->flush_left = URGENT_PUSHES;
	f->next_flush_ns = now_ns(f);
}

/* ---- membership changes ------------------------------------------------------------------- */

static void set_state(dw_fabric *f, struct member *m, uint8_t state)
{
	m->state = state;
	m->state_ns = now_ns(f);
	f->roles_dirty = true;
}

static void declare_dead(dw_fabric *f, struct member *m)
{
	uint64_t now = now_ns(f);
	double age = (double)(now - m->evidence_ns) / 1e9;

	set_state(f, m, DW_FABRIC_DEAD);
	f->st.detections++;
	f->st.detect_ema_s = dw_ema_update(&f->detect_ema, age);
	roles(f);
	emit_ev(f, DW_FABRIC_EV_REMOVED, m, true);
	enqueue(f, m->id);
	schedule_urgent(f);
}

static void refute(dw_fabric *f, uint32_t gen, uint32_t ctr)
{
	struct member *self = &f->m[0];

	if (inc_cmp(gen, ctr, self->gen, self->ctr) < 0)
		return;
	if (gen > self->gen)
		self->gen = gen;
	self->ctr = ctr + 1;
	enqueue(f, self->id);
}

/*
 * Apply a member record from the wire. direct: it is the sender's own record. Returns the
 * member (or NULL when ignored).
 */
enum merge_src {
	SRC_RELAYED = 0, /* piggybacked: someone else's copy */
	SRC_DIRECT = 1,	 /* the sender's own record */
	SRC_PAGE = 2,	 /* a member page from a join or sync */
};

static struct member *merge(dw_fabric *f, const struct dw__wire_member *r, enum merge_src src)
{
	bool direct = src == SRC_DIRECT;

	struct member *m;
	uint64_t now = now_ns(f);
	bool leader = r->flags & DW__MEMBER_FLAG_LEADER;
	int cmp;

	if (r->id == f->m[0].id) {
		if (r->state != DW_FABRIC_ALIVE)
			refute(f, r->gen, r->ctr);
		return NULL;
	}
	m = find(f, r->id);
	if (!in_scope(f, r->id, leader)) {
		if (m && inc_cmp(r->gen, r->ctr, m->gen, m->ctr) > 0)
			make_gone(f, m, r->gen, r->ctr, r->flags);
		return NULL;
	}
	if (!m) {
		if (r->state == DW_FABRIC_DEAD)
			return NULL;
		m = add_member(f, r->id);
		if (!m)
			return NULL;
		m->gen = r->gen;
		m->ctr = r->ctr;
		m->state = r->state;
		m->flags = r->flags;
		m->group = r->group;
		m->ip = r->ip;
		m->port = r->port;
		m->evidence_ns = now;
		m->state_ns = now;
		f->roles_dirty = true;
		roles(f);
		emit(f, DW_FABRIC_EV_ADDED, m);
		if (m->state == DW_FABRIC_SUSPECT)
			emit(f, DW_FABRIC_EV_SUSPECT, m);
		if (f->relay || direct)
			enqueue(f, m->id);
		return m;
	}
	cmp = inc_cmp(r->gen, r->ctr, m->gen, m->ctr);
	if (m->gone) {
		/* out of scope for a while: a removal at its incarnation makes it really dead
		 * (quietly: it was not in my view); it comes back on a newer incarnation, or at the
		 * same one from itself or a member page, never from someone's stale copy */
		if (cmp >= 0 && r->state == DW_FABRIC_DEAD) {
			m->gone = false;
			m->gen = r->gen;
			m->ctr = r->ctr;
			return m;
		}
		if (cmp < 0 || (cmp == 0 && src == SRC_RELAYED))
			return m;
		m->state = DW_FABRIC_DEAD; /* revived below as a re-added member */
	} else if (cmp < 0 || (cmp == 0 && r->state <= m->state)) {
		return m;
	}
	if (r->state == DW_FABRIC_SUSPECT && cmp == 0 && m->monitored &&
	    now - m->evidence_ns < suspect_after(f))
		return m; /* I hear it myself: not suspect for me */
	if (r->state == DW_FABRIC_DEAD && cmp == 0 && m->monitored &&
	    now - m->evidence_ns < dead_after(f))
		return m; /* I heard it less than K*H ago: my own clock decides (invariant 2) */
	{
		uint8_t old = m->state;
		bool roles_change = (m->flags != r->flags) || old == DW_FABRIC_DEAD ||
				    r->state == DW_FABRIC_DEAD;

		m->gen = r->gen;
		m->ctr = r->ctr;
		m->flags = r->flags;
		m->group = r->group;
		m->ip = r->ip;
		m->port = r->port;
		if (old != r->state) {
			m->state = r->state;
			m->state_ns = now;
		}
		m->gone = false;
		if (old == DW_FABRIC_DEAD && r->state != DW_FABRIC_DEAD)
			m->evidence_ns = now;
		if (roles_change)
			f->roles_dirty = true;
		roles(f);
		if (old == DW_FABRIC_DEAD && r->state != DW_FABRIC_DEAD)
			emit(f, DW_FABRIC_EV_ADDED, m);
		else if (r->state == DW_FABRIC_DEAD)
			emit(f, DW_FABRIC_EV_REMOVED, m);
		else if (r->state == DW_FABRIC_SUSPECT && old != DW_FABRIC_SUSPECT)
			emit(f, DW_FABRIC_EV_SUSPECT, m);
		else if (old == DW_FABRIC_SUSPECT && r->state == DW_FABRIC_ALIVE)
			emit(f, DW_FABRIC_EV_ALIVE, m);
		else
			emit(f, DW_FABRIC_EV_UPDATED, m);
		if (f->relay || direct)
			enqueue(f, m->id);
		if (r->state == DW_FABRIC_DEAD)
			schedule_urgent(f);
	}
	return m;
}

static void on_evidence(dw_fabric *f, struct member *m, uint64_t when)
{
	if (when > m->heard_ns)
		m->heard_ns = when;
	if (when <= m->evidence_ns)
		return;
	m->evidence_ns = when;
	if (m->state == DW_FABRIC_SUSPECT && now_ns(f) - when < suspect_after(f)) {
		m->state = DW_FABRIC_ALIVE;
		m->state_ns = now_ns(f);
		f->roles_dirty = true;
		roles(f);
		emit(f, DW_FABRIC_EV_ALIVE, m);
	}
}

/* ---- topology choice ---------------------------------------------------------------------- */

static uint32_t topo_max(const dw_fabric_limits *l, dw_fabric_topology t)
{
	return t == DW_FABRIC_STAR   ? l->star_max
	       : t == DW_FABRIC_MESH ? l->mesh_max
				     : l->federated_max;
}

static double topo_threshold(const dw_fabric_limits *l, dw_fabric_topology t)
{
	return t == DW_FABRIC_STAR   ? l->star_switch_at
	       : t == DW_FABRIC_MESH ? l->mesh_switch_at
				     : INFINITY;
}

/* Where should a cluster of n nodes in topology cur (configured base) be? */
static dw_fabric_topology choose(const dw_fabric_limits *l, dw_fabric_topology cur,
				 dw_fabric_topology base, uint32_t n)
{
	static const dw_fabric_topology order[] = { DW_FABRIC_MESH, DW_FABRIC_STAR,
						    DW_FABRIC_FEDERATED };
	double h = 1.0 - l->hysteresis;

	if (cur != base && n <= topo_max(l, base) && n < topo_threshold(l, base) * h)
		return base;
	if (n < topo_threshold(l, cur))
		return cur;
	for (size_t i = 0; i < 3; i++) {
		dw_fabric_topology t = order[i];

		if (t == cur)
			continue;
		if (n <= topo_max(l, t) && n < topo_threshold(l, t) * h)
			return t;
	}
	return cur;
}

static void adopt_topology(dw_fabric *f, uint32_t epoch, dw_fabric_topology t)
{
	dw_fabric_topology from = f->topology;
	uint32_t size = f->st.cluster_size;

	f->epoch = epoch;
	if (t == from)
		return;
	f->topology = t;
	f->last_switch_ns = now_ns(f);
	f->recommended = false;
	if (t == DW_FABRIC_FEDERATED) {
		/* my group, the leaders and the coordinator stay */
		for (size_t i = 1; i < f->n; i++) {
			struct member *m = &f->m[i];

			if (live(m) && !in_scope(f, m->id, is_leader_rec(m)))
				make_gone(f, m, m->gen, m->ctr, m->flags);
		}
	}
	f->roles_dirty = true;
	roles(f);
	if (from == DW_FABRIC_FEDERATED && f->low_id != f->m[0].id && active(f)) {
		/*
		 * Out of Federated nobody knows everyone: each node shows itself to the coordinator
		 * now and pulls the coordinator's full view two intervals later, once everyone's
		 * announcement has arrived there.
		 */
		struct member *c = find(f, f->low_id);

		if (c) {
			send_status(f, c, DW__PKT_UPDATE, 0, NULL);
			f->join = J_SYNCING;
			f->sync_from.ip = c->ip;
			f->sync_from.port = c->port;
			f->sync_offset = 0;
			f->next_join_ns = now_ns(f) + 2 * H(f);
		}
	}
	emit_topo(f, DW_FABRIC_EV_SWITCHED, from, t, size, "coordinated switch");
}

static void coordinate(dw_fabric *f)
{
	dw_fabric_topology want;
	char reason[128];

	roles(f);
	/*
	 * Hold a new topology for 2*K*H: sizes are re-counted in the new shape (Federated leaders
	 * report their groups within a round or two) and the hold keeps a half-counted cluster from
	 * bouncing straight back.
	 */
	if (f->last_switch_ns && now_ns(f) - f->last_switch_ns < 2 * dead_after(f))
		return;
	want = choose(&f->cfg.limits, f->topology, f->base, f->st.cluster_size);
	if (want == f->topology) {
		f->recommended = false;
		return;
	}
	snprintf(reason, sizeof(reason), "cluster size %u: %s fits better than %s",
		 f->st.cluster_size, dw_fabric_topology_name(want),
		 dw_fabric_topology_name(f->topology));
	if (f->cfg.mode == DW_FABRIC_MODE_RECOMMEND) {
		if (!f->recommended)
			emit_topo(f, DW_FABRIC_EV_SWITCH_RECOMMENDED, f->topology, want,
				  f->st.cluster_size, reason);
		f->recommended = true;
		return;
	}
	/* auto: only the coordinator (the lowest live id I know, which every node knows) acts */
	if (f->low_id != f->m[0].id)
		return;
	adopt_topology(f, f->epoch + 1, want);
	f->flush_left = URGENT_PUSHES;
	f->next_flush_ns = now_ns(f);
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void send_join(dw_fabric *f, const dw_fabric_addr *to)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;

	begin(f, &w, buf, DW__PKT_JOIN, 0);
	transmit(f, to, &w);
}

static void send_sync_req(dw_fabric *f)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;

	begin(f, &w, buf, DW__PKT_SYNC_REQ, 0);
	it.kind = DW__ITEM_SYNC_REQ;
	it.u.offset = f->sync_offset;
	(void)dw__wire_put(&w, &it);
	transmit(f, &f->sync_from, &w);
}

/* Would a joiner with this id see member m in its view? */
static bool in_joiner_scope(dw_fabric *f, uint64_t joiner, const struct member *m)
{
	if (!live(m))
		return false;
	if (f->topology != DW_FABRIC_FEDERATED)
		return true;
	return is_leader_rec(m) || m->lgroup == group_of(f, joiner);
}

/* JOIN_ACK or SYNC: a page of members from offset, in view order. */
static void send_page(dw_fabric *f, const dw_fabric_addr *to, uint8_t type, uint64_t joiner,
		      uint32_t offset, const struct dw__wire_join_result *jr)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	uint32_t total = 0, idx = 0;

	for (size_t i = 1; i < f->n; i++)
		total += in_joiner_scope(f, joiner, &f->m[i]) && f->m[i].id != joiner;
	begin(f, &w, buf, type, 0);
	if (jr) {
		it.kind = DW__ITEM_JOIN_RESULT;
		it.u.join = *jr;
		(void)dw__wire_put(&w, &it);
	}
	put_cluster(f, &w);
	it.kind = DW__ITEM_PAGE;
	it.u.page.total = total;
	it.u.page.offset = offset;
	(void)dw__wire_put(&w, &it);
	for (size_t i = 1; i < f->n && dw__wire_room(&w, DW__MEMBER_ITEM_LEN); i++) {
		struct member *m = &f->m[i];

		if (!in_joiner_scope(f, joiner, m) || m->id == joiner)
			continue;
		if (idx++ < offset) /* m[0] (self) travels first, as the sender */
			continue;
		member_item(m, &it);
		(void)dw__wire_put(&w, &it);
	}
	transmit(f, to, &w);
}

static void fill_result(dw_fabric *f, struct dw__wire_join_result *jr, uint8_t status)
{
	memset(jr, 0, sizeof(*jr));
	jr->status = status;
	jr->topology = (uint8_t)f->topology;
	jr->missed = (uint8_t)f->cfg.limits.missed;
	jr->mode = (uint8_t)f->cfg.mode;
	jr->interval_ms = (uint32_t)(H(f) / DW_NS_PER_MS);
	jr->epoch = f->epoch;
	jr->size = f->st.cluster_size;
}

static void send_redirect(dw_fabric *f, const dw_fabric_addr *to, const struct member *m)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;

	begin(f, &w, buf, DW__PKT_JOIN_ACK, 0);
	it.kind = DW__ITEM_JOIN_RESULT;
	fill_result(f, &it.u.join, DW__JOIN_REDIRECT);
	(void)dw__wire_put(&w, &it);
	member_item(m, &it);
	(void)dw__wire_put(&w, &it);
	transmit(f, to, &w);
}

static void handle_join(dw_fabric *f, const dw_fabric_addr *from, const struct dw__wire_member *jm)
{
	struct dw__wire_join_result jr;
	struct member *known = find(f, jm->id);
	uint32_t cap = topo_max(&f->cfg.limits, f->topology);

	if (!active(f))
		return; /* not a member yet: the joiner tries its next seed */
	roles(f);
	if ((!known || !live(known)) && f->st.cluster_size + 1 > cap) {
		fill_result(f, &jr, DW__JOIN_FULL);
		jr.limit = cap;
		send_page(f, from, DW__PKT_JOIN_ACK, jm->id, UINT32_MAX, &jr);
		return;
	}
	if (f->topology != DW_FABRIC_FEDERATED && f->low_id != f->m[0].id) {
		/* the coordinator (the Star hub, the lowest Mesh node) admits: it counts every
		 * join the moment it happens, so a switch lands exactly on its threshold */
		struct member *c = find(f, f->low_id);

		if (c && live(c)) {
			send_redirect(f, from, c);
			return;
		}
	}
	if (f->topology == DW_FABRIC_FEDERATED) {
		uint16_t g = group_of(f, jm->id);
		struct member *leader = NULL;

		for (size_t i = 0; i < f->n; i++) {
			struct member *m = &f->m[i];

			if (live(m) && m->id != jm->id && m->lgroup == g &&
			    (is_leader_rec(m) || (i == 0 && f->relay)) &&
			    (!leader || m->id < leader->id))
				leader = m;
		}
		if (leader && leader != &f->m[0]) {
			send_redirect(f, from, leader); /* its group's leader admits it */
			return;
		}
	}
	merge(f, jm, SRC_DIRECT);
	fill_result(f, &jr, DW__JOIN_OK);
	send_page(f, from, DW__PKT_JOIN_ACK, jm->id, 0, &jr);
	coordinate(f);
}

static void handle_page(dw_fabric *f, const dw_fabric_addr *from, const uint8_t *body, size_t blen,
			bool is_join_ack)
{
	struct dw__wire_reader r = { body, body + blen };
	struct dw__wire_item it;
	bool have_result = false, have_page = false;
	struct dw__wire_join_result jr;
	uint32_t total = 0, offset = 0, got = 0;
	bool first = true;

	memset(&jr, 0, sizeof(jr));
	/* first pass: the result decides what the members mean */
	while (dw__wire_next(&r, &it) > 0) {
		if (it.kind == DW__ITEM_JOIN_RESULT) {
			jr = it.u.join;
			have_result = true;
		} else if (it.kind == DW__ITEM_PAGE) {
			total = it.u.page.total;
			offset = it.u.page.offset;
			have_page = true;
		}
	}
	if (is_join_ack) {
		if (!have_result || (f->join != J_JOINING))
			return;
		if (jr.status == DW__JOIN_FULL) {
			char reason[160];
			dw_fabric_event ev;

			f->join = J_REFUSED;
			snprintf(reason, sizeof(reason),
				 "cluster is full: %s holds at most %u nodes",
				 dw_fabric_topology_name((dw_fabric_topology)jr.topology),
				 jr.limit);
			memset(&ev, 0, sizeof(ev));
			ev.type = DW_FABRIC_EV_JOIN_REFUSED;
			ev.now_ns = now_ns(f);
			ev.reason = reason;
			ev.from = ev.to = (dw_fabric_topology)jr.topology;
			ev.cluster_size = jr.size;
			if (f->cfg.on_event)
				f->cfg.on_event(f->cfg.event_arg, &ev);
			return;
		}
		/* adopt the cluster's settings before reading members (scope depends on it) */
		f->topology = (dw_fabric_topology)jr.topology;
		f->epoch = jr.epoch;
		f->cfg.mode = (dw_fabric_mode)jr.mode;
		if (jr.interval_ms)
			f->cfg.limits.interval_ns = (uint64_t)jr.interval_ms * DW_NS_PER_MS;
		if (jr.missed)
			f->cfg.limits.missed = jr.missed;
		regroup(f);
		f->roles_dirty = true;
		if (jr.status == DW__JOIN_REDIRECT) {
			r.p = body;
			while (dw__wire_next(&r, &it) > 0) {
				if (it.kind == DW__ITEM_MEMBER && !first) {
					dw_fabric_addr a = { it.u.member.ip, it.u.member.port };

					send_join(f, &a);
					f->next_join_ns = now_ns(f) + H(f) / JOIN_RETRY_DIVISOR;
					break;
				}
				if (it.kind == DW__ITEM_MEMBER)
					first = false;
			}
			return;
		}
		f->join = J_SYNCING;
		f->sync_from = *from;
		f->sync_offset = 0;
	} else if (f->join != J_SYNCING || !have_page || offset != f->sync_offset) {
		/* a stale or unasked page: its members are still good news */
		have_page = false;
	}
	r.p = body;
	first = true;
	while (dw__wire_next(&r, &it) > 0) {
		struct member *m;

		if (it.kind != DW__ITEM_MEMBER)
			continue;
		m = merge(f, &it.u.member, first ? SRC_DIRECT : SRC_PAGE);
		if (first && m)
			on_evidence(f, m, now_ns(f));
		got += !first;
		first = false;
	}
	if (f->join == J_SYNCING && have_page) {
		f->sync_total = total;
		f->sync_offset = offset + got;
		if (f->sync_offset >= total || got == 0) {
			f->join = J_JOINED;
		} else {
			send_sync_req(f);
			f->next_join_ns = now_ns(f) + H(f) / JOIN_RETRY_DIVISOR;
		}
	}
	if (f->join == J_JOINED && f->next_round_ns > now_ns(f) + H(f))
		f->next_round_ns = now_ns(f);
}

static void handle_evid_req(dw_fabric *f, const dw_fabric_addr *from, uint64_t subject)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	struct member *m = find(f, subject);
	uint64_t now = now_ns(f);

	begin(f, &w, buf, DW__PKT_EVID, 0);
	it.kind = DW__ITEM_EVID;
	it.u.evid.subject = subject;
	it.u.evid.age_ms = DW__EVID_NONE;
	if (m && live(m) && m->heard_ns && m->heard_ns <= now) {
		/* round the age up: evidence must never look fresher than it is */
		uint64_t age = (now - m->heard_ns + DW_NS_PER_MS - 1) / DW_NS_PER_MS;

		if (age < DW__EVID_NONE)
			it.u.evid.age_ms = (uint32_t)age;
	}
	(void)dw__wire_put(&w, &it);
	transmit(f, from, &w);
}

int dw_fabric_receive(dw_fabric *f, const dw_fabric_addr *from, const void *buf, size_t len)
{
	struct dw__wire_hdr hdr;
	const uint8_t *body = NULL;
	size_t blen = 0;
	struct dw__wire_reader r;
	struct dw__wire_item it;
	struct member *sender = NULL;
	struct replay_slot *rs;
	bool first = true, sender_dead = false;
	uint64_t now;
	int rc;

	pthread_mutex_lock(&f->lock);
	now = now_ns(f);
	if (active(f))
		note_run(f, now);
	rc = dw__wire_open(&f->keys, buf, len, &hdr, &body, &blen);
	if (rc < 0) {
		f->st.dropped[dw__wire_drop_reason(rc)]++;
		goto out;
	}
	if (hdr.sender == f->m[0].id) {
		f->st.dropped[DW_FABRIC_DROP_SELF]++;
		rc = DW_EPROTO;
		goto out;
	}
	/* the whole body must parse before anything is applied */
	r.p = body;
	r.end = body + blen;
	while ((rc = dw__wire_next(&r, &it)) > 0) {
		if (first && (it.kind != DW__ITEM_MEMBER || it.u.member.id != hdr.sender)) {
			rc = DW_EPROTO;
			break;
		}
		first = false;
	}
	if (rc < 0 || first) {
		f->st.dropped[DW_FABRIC_DROP_MALFORMED]++;
		rc = DW_EPROTO;
		goto out;
	}
	rs = replay_slot(f, hdr.sender, true);
	if (!rs) {
		rc = -ENOMEM;
		goto out;
	}
	if (!dw__replay_ok(&rs->w, hdr.seq)) {
		f->st.dropped[DW_FABRIC_DROP_REPLAY]++;
		rc = DW_EAUTH;
		goto out;
	}
	dw__replay_mark(&rs->w, hdr.seq);
	f->st.recv_msgs++;
	f->st.recv_bytes += len;
	roles(f);

	/* the sender's own record, then its cluster item */
	r.p = body;
	(void)dw__wire_next(&r, &it);
	if (hdr.type == DW__PKT_JOIN) {
		handle_join(f, from, &it.u.member);
		goto out_ok;
	}
	{
		struct member *known = find(f, it.u.member.id);

		if (known && known->state == DW_FABRIC_DEAD && !known->gone &&
		    inc_cmp(it.u.member.gen, it.u.member.ctr, known->gen, known->ctr) <= 0)
			sender_dead = true;
		else if (f->join == J_JOINED || f->join == J_SYNCING)
			sender = merge(f, &it.u.member, SRC_DIRECT);
	}
	if (sender) {
		on_evidence(f, sender, now);
		/* keep the address the packet came from (NAT-free loopback and LAN) */
	}
	while (dw__wire_next(&r, &it) > 0) {
		if (it.kind == DW__ITEM_CLUSTER) {
			if (it.u.cluster.epoch > f->epoch && active(f)) {
				adopt_topology(f, it.u.cluster.epoch,
					       (dw_fabric_topology)it.u.cluster.topology);
				sender = find(f, hdr.sender); /* the view may have been narrowed */
			}
			if (sender && it.u.cluster.epoch == f->epoch) {
				/* recount only on a change: most heartbeats repeat the same */
				if (sender->group_size != it.u.cluster.group_size) {
					sender->group_size = it.u.cluster.group_size;
					f->roles_dirty = true;
				}
				if (f->topology == DW_FABRIC_FEDERATED && sender->id == f->hub_id &&
				    f->reported_size != it.u.cluster.size) {
					f->reported_size = it.u.cluster.size;
					f->roles_dirty = true;
				}
			}
		}
		if (hdr.type == DW__PKT_JOIN_ACK || hdr.type == DW__PKT_SYNC)
			continue;
		if (it.kind == DW__ITEM_MEMBER && active(f)) {
			merge(f, &it.u.member, SRC_RELAYED);
			if (sender)
				sender = find(f, hdr.sender); /* merge may narrow the view */
		} else if (it.kind == DW__ITEM_EVID_REQ && hdr.type == DW__PKT_EVID_REQ)
			handle_evid_req(f, from, it.u.subject);
		else if (it.kind == DW__ITEM_EVID && hdr.type == DW__PKT_EVID &&
			 it.u.evid.age_ms != DW__EVID_NONE) {
			struct member *m = find(f, it.u.evid.subject);
			uint64_t age = (uint64_t)it.u.evid.age_ms * DW_NS_PER_MS;

			if (m && live(m) && age <= now)
				on_evidence(f, m, now - age);
		}
	}
	switch (hdr.type) {
	case DW__PKT_PING:
		if (sender_dead) {
			/* tell it: it refutes with a higher incarnation and comes back */
			struct member *d = find(f, hdr.sender);

			send_status_addr(f, from, DW__PKT_UPDATE, d);
		} else if (hdr.flags & DW__PKT_FLAG_ACK_REQ) {
			/* a Federated member that still takes me for its leader learns who leads
			 * now from my ack */
			struct member *lead = NULL;

			if (f->topology == DW_FABRIC_FEDERATED && !f->relay && f->hub_id &&
			    f->hub_id != f->m[0].id)
				lead = find(f, f->hub_id);
			send_status_addr(f, from, DW__PKT_ACK, lead);
		}
		break;
	case DW__PKT_JOIN_ACK:
	case DW__PKT_SYNC:
		handle_page(f, from, body, blen, hdr.type == DW__PKT_JOIN_ACK);
		break;
	case DW__PKT_SYNC_REQ: {
		r.p = body;
		while (dw__wire_next(&r, &it) > 0) {
			if (it.kind == DW__ITEM_SYNC_REQ) {
				send_page(f, from, DW__PKT_SYNC, hdr.sender, it.u.offset, NULL);
				break;
			}
		}
		break;
	}
	default:
		break;
	}
out_ok:
	rc = 0;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* ---- timers ------------------------------------------------------------------------------- */

/*
 * A node that was not running (SIGSTOP, a VM pause, a long GC-like stall) heard nothing while
 * it was away, through no fault of its peers. Timers run every H/10, so a gap past H/2 between
 * two calls is a stall: every removal clock moves forward by the gap, so the stalled node judges
 * its peers only on the time it was actually listening.
 */
static void note_run(dw_fabric *f, uint64_t now)
{
	uint64_t gap;

	if (f->last_run_ns && now > f->last_run_ns) {
		gap = now - f->last_run_ns;
		if (gap > H(f) / 2) {
			for (size_t i = 1; i < f->n; i++) {
				struct member *m = &f->m[i];

				m->evidence_ns =
					m->evidence_ns + gap < now ? m->evidence_ns + gap : now;
			}
		}
	}
	f->last_run_ns = now;
}

static void heartbeat_round(dw_fabric *f)
{
	roles(f);
	for (size_t i = 1; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool ack;

		if (is_target(f, m, &ack))
			send_status(f, m, DW__PKT_PING, ack ? DW__PKT_FLAG_ACK_REQ : 0, NULL);
	}
	pend_round(f);
	coordinate(f);
}

static bool purgeable(dw_fabric *f, const struct member *m)
{
	uint64_t retain = DEAD_RETAIN_KH * dead_after(f);

	return m->state == DW_FABRIC_DEAD && (m->state_ns == 0 || now_ns(f) - m->state_ns > retain);
}

static void check(dw_fabric *f)
{
	uint64_t now = now_ns(f);

	size_t nscan;

	roles(f);
	/* walk a copy of the monitored ids: declaring one dead recounts roles and the list */
	nscan = f->mon_overflow ? f->n : f->nmon;
	if (!f->mon_overflow && f->nmon)
		memcpy(f->mon_scan, f->mon, f->nmon * sizeof(*f->mon));
	for (size_t k = 0; k < nscan; k++) {
		struct member *m = f->mon_overflow ? &f->m[k] : find(f, f->mon_scan[k]);
		uint64_t age;

		if (!m || m == &f->m[0] || !m->monitored || !live(m))
			continue;
		age = now > m->evidence_ns ? now - m->evidence_ns : 0;
		if (age >= dead_after(f)) {
			declare_dead(f, m);
		} else if (age >= probe_after(f)) {
			if (age >= suspect_after(f) && m->state == DW_FABRIC_ALIVE) {
				set_state(f, m, DW_FABRIC_SUSPECT);
				roles(f);
				emit(f, DW_FABRIC_EV_SUSPECT, m);
				enqueue(f, m->id);
			}
			probe(f, m);
		}
	}
	if (now - f->last_purge_ns > dead_after(f)) {
		f->last_purge_ns = now;
		compact(f, purgeable);
		f->roles_dirty = true;
	}
}

uint64_t dw_fabric_tick(dw_fabric *f)
{
	uint64_t now, next;

	pthread_mutex_lock(&f->lock);
	now = now_ns(f);
	if (active(f))
		note_run(f, now);
	if ((f->join == J_JOINING || f->join == J_SYNCING) && now >= f->next_join_ns) {
		if (f->join == J_JOINING && f->nseeds) {
			send_join(f, &f->seeds[f->seed_next]);
			f->seed_next = (f->seed_next + 1) % f->nseeds;
		} else if (f->join == J_SYNCING) {
			send_sync_req(f);
		}
		f->next_join_ns = now + H(f) / JOIN_RETRY_DIVISOR;
	}
	if (f->join == J_JOINED || f->join == J_SYNCING) {
		if (now >= f->next_round_ns) {
			heartbeat_round(f);
			f->next_round_ns = now + H(f);
		}
		if (now >= f->next_check_ns) {
			check(f);
			f->next_check_ns = now + H(f) / CHECK_DIVISOR;
		}
		if (f->stepped_down) {
			/* leaders only hear members of their own group, so a former leader tells
			 * them itself; a missed notice is settled by their probes */
			f->stepped_down = false;
			for (size_t i = 1; i < f->n; i++) {
				if (live(&f->m[i]) && is_leader_rec(&f->m[i]))
					send_status(f, &f->m[i], DW__PKT_UPDATE, 0, NULL);
			}
		}
		if (f->flush_left && now >= f->next_flush_ns) {
			flush_urgent(f);
			f->flush_left--;
			f->next_flush_ns = now + H(f) / CHECK_DIVISOR;
		}
	}
	next = now + H(f);
	if (f->join == J_JOINING || f->join == J_SYNCING)
		next = f->next_join_ns;
	if (f->join == J_JOINED || f->join == J_SYNCING) {
		if (f->next_round_ns < next)
			next = f->next_round_ns;
		if (f->next_check_ns < next)
			next = f->next_check_ns;
		if (f->flush_left && f->next_flush_ns < next)
			next = f->next_flush_ns;
	}
	pthread_mutex_unlock(&f->lock);
	return next;
}

/* ---- limits ------------------------------------------------------------------------------- */

void dw_fabric_limits_default(dw_fabric_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->interval_ns = 15 * DW_NS_PER_SEC;
	l->missed = 3;
	l->star_max = 1000;
	l->mesh_max = 500;
	l->federated_max = 10000;
	l->star_switch_at = 800;
	l->mesh_switch_at = 400;
	/* ~sqrt(federated_max): a leader then handles ~group_size members + ~group_size leaders */
	l->group_size = 100;
	l->hysteresis = 0.1;
}

int dw_fabric_limits_validate(const dw_fabric_limits *l, char *err, size_t errlen)
{
	static const dw_fabric_topology tops[] = { DW_FABRIC_STAR, DW_FABRIC_MESH };

	if (l->interval_ns < 10 * DW_NS_PER_MS || l->interval_ns > 3600 * DW_NS_PER_SEC) {
		snprintf(err, errlen, "interval must be between 10ms and 1h");
		return DW_ELIMIT;
	}
	if (l->missed < 1 || l->missed > 100) {
		snprintf(err, errlen, "missed must be between 1 and 100");
		return DW_ELIMIT;
	}
	if (l->star_max < 2 || l->mesh_max < 2 || l->federated_max < 2 ||
	    l->federated_max > 65535 * 100) {
		snprintf(err, errlen, "max nodes per topology must be at least 2");
		return DW_ELIMIT;
	}
	if (l->group_size < 2 || l->group_size > l->federated_max ||
	    (l->federated_max + l->group_size - 1) / l->group_size > 65535) {
		snprintf(err, errlen,
			 "group_size must be between 2 and federated_max (and give at "
			 "most 65535 groups)");
		return DW_ELIMIT;
	}
	if (!(l->hysteresis >= 0.0 && l->hysteresis <= 0.5)) {
		snprintf(err, errlen, "hysteresis must be between 0 and 0.5");
		return DW_ELIMIT;
	}
	for (size_t i = 0; i < 2; i++) {
		dw_fabric_topology x = tops[i];
		uint32_t thr = (uint32_t)topo_threshold(l, x);
		bool dest = false;

		if (thr < 2 || thr > topo_max(l, x)) {
			snprintf(err, errlen, "%s_switch_at (%u) must be between 2 and %s_max (%u)",
				 dw_fabric_topology_name(x), thr, dw_fabric_topology_name(x),
				 topo_max(l, x));
			return DW_ELIMIT;
		}
		for (int y = 0; y < 3; y++) {
			if ((dw_fabric_topology)y == x)
				continue;
			if (thr <= topo_max(l, (dw_fabric_topology)y) &&
			    thr < topo_threshold(l, (dw_fabric_topology)y) * (1.0 - l->hysteresis))
				dest = true;
		}
		if (!dest) {
			snprintf(
				err, errlen,
				"%s_switch_at (%u): no other topology holds %u nodes below its own "
				"threshold (raise federated_max or the other threshold)",
				dw_fabric_topology_name(x), thr, thr);
			return DW_ELIMIT;
		}
	}
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

void dw_fabric_config_default(dw_fabric_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->topology = DW_FABRIC_MESH;
	cfg->mode = DW_FABRIC_MODE_AUTO;
	dw_fabric_limits_default(&cfg->limits);
}

int dw_fabric_open(const dw_fabric_config *cfg, dw_fabric **out)
{
	dw_fabric *f = NULL;
	char err[160];
	int rc;

	*out = NULL;
	if (!cfg || cfg->node_id == 0 || !cfg->transport.send ||
	    (unsigned)cfg->topology > DW_FABRIC_FEDERATED ||
	    (unsigned)cfg->mode > DW_FABRIC_MODE_RECOMMEND)
		return DW_ECONFIG;
	rc = dw_fabric_limits_validate(&cfg->limits, err, sizeof(err));
	if (rc < 0)
		return rc;
	f = dw_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		dw_free(f);
		return -ENOMEM;
	}
	f->cfg = *cfg;
	rc = dw__wire_keys_init(&f->keys, &cfg->keyring);
	if (rc < 0)
		goto out;
	f->index = dw_calloc(16, sizeof(*f->index));
	if (!f->index) {
		rc = -ENOMEM;
		goto out;
	}
	f->index_cap = 16;
	f->rng = cfg->seed ? cfg->seed : dw__mix64(cfg->node_id);
	f->ngroups = dw__fabric_ngroups(&cfg->limits);
	f->seq = (uint64_t)cfg->generation << 32;
	f->topology = cfg->topology;
	f->base = cfg->topology;
	dw_ema_init(&f->detect_ema, DW_EMA_ALPHA_DEFAULT);
	if (!add_member(f, cfg->node_id)) {
		rc = -ENOMEM;
		goto out;
	}
	f->m[0].gen = cfg->generation;
	f->m[0].ip = cfg->addr.ip;
	f->m[0].port = cfg->addr.port;
	f->roles_dirty = true;
	roles(f);
	f->scalable = (dw_scalable){ .name = "fabric", .ops = &fabric_scalable_ops, .self = f };
	*out = f;
	return 0;
out:
	dw_fabric_close(f);
	return rc;
}

void dw_fabric_close(dw_fabric *f)
{
	if (!f)
		return;
	dw__wire_keys_release(&f->keys);
	dw_free(f->m);
	dw_free(f->index);
	dw_free(f->replay);
	dw_free(f->pend);
	dw_free(f->mon);
	dw_free(f->mon_scan);
	pthread_mutex_destroy(&f->lock);
	dw_free(f);
}

int dw_fabric_join(dw_fabric *f, const dw_fabric_addr *seeds, size_t n)
{
	uint64_t now;

	pthread_mutex_lock(&f->lock);
	now = now_ns(f);
	if (n > sizeof(f->seeds) / sizeof(f->seeds[0]))
		n = sizeof(f->seeds) / sizeof(f->seeds[0]);
	if (n) /* seeds may be NULL when n is 0 */
		memcpy(f->seeds, seeds, n * sizeof(*seeds));
	f->nseeds = n;
	f->seed_next = 0;
	f->join = n ? J_JOINING : J_JOINED;
	f->next_join_ns = now;
	/* a random phase spreads the cluster's heartbeats over the interval */
	f->next_round_ns = now + dw__rand_next(&f->rng) % H(f);
	f->next_check_ns = now + H(f) / CHECK_DIVISOR;
	f->last_purge_ns = now;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* ---- queries ------------------------------------------------------------------------------ */

int dw_fabric_members(dw_fabric *f, dw_fabric_member *out, size_t cap, size_t *n)
{
	size_t k = 0;

	pthread_mutex_lock(&f->lock);
	roles(f);
	for (size_t i = 0; i < f->n; i++) {
		if (f->m[i].gone)
			continue;
		if (k < cap)
			to_public(&f->m[i], &out[k]);
		k++;
	}
	*n = k;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

uint32_t dw_fabric_cluster_size(dw_fabric *f)
{
	uint32_t n;

	pthread_mutex_lock(&f->lock);
	roles(f);
	n = f->st.cluster_size;
	pthread_mutex_unlock(&f->lock);
	return n;
}

dw_fabric_topology dw_fabric_current_topology(dw_fabric *f)
{
	dw_fabric_topology t;

	pthread_mutex_lock(&f->lock);
	t = f->topology;
	pthread_mutex_unlock(&f->lock);
	return t;
}

int dw_fabric_set_limits(dw_fabric *f, const dw_fabric_limits *l, char *err, size_t errlen)
{
	int rc = dw_fabric_limits_validate(l, err, errlen);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&f->lock);
	f->cfg.limits = *l;
	regroup(f);
	f->roles_dirty = true;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void dw_fabric_get_limits(dw_fabric *f, dw_fabric_limits *out)
{
	pthread_mutex_lock(&f->lock);
	*out = f->cfg.limits;
	pthread_mutex_unlock(&f->lock);
}

void dw_fabric_get_stats(dw_fabric *f, dw_fabric_stats *out)
{
	pthread_mutex_lock(&f->lock);
	roles(f);
	*out = f->st;
	out->topology = f->topology;
	out->epoch = f->epoch;
	out->leader = f->relay;
	pthread_mutex_unlock(&f->lock);
}

int dw__fabric_seed_member(dw_fabric *f, const dw_fabric_member *pm)
{
	struct member *m;

	pthread_mutex_lock(&f->lock);
	m = find(f, pm->id);
	if (!m)
		m = add_member(f, pm->id);
	if (m) {
		m->gen = pm->generation;
		m->ctr = pm->counter;
		m->state = DW_FABRIC_ALIVE;
		m->flags = pm->leader ? DW__MEMBER_FLAG_LEADER : 0;
		m->group = pm->group;
		m->ip = pm->addr.ip;
		m->port = pm->addr.port;
		m->evidence_ns = now_ns(f);
		m->state_ns = m->evidence_ns;
		f->roles_dirty = true;
	}
	pthread_mutex_unlock(&f->lock);
	return m ? 0 : -ENOMEM;
}

bool dw__fabric_knows_alive(dw_fabric *f, uint64_t id)
{
	struct member *m;
	bool r;

	pthread_mutex_lock(&f->lock);
	m = find(f, id);
	r = m && live(m);
	pthread_mutex_unlock(&f->lock);
	return r;
}

/* ---- scalable ----------------------------------------------------------------------------- */

static const char *const drop_help = "packets dropped, by reason";

static int sc_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_fabric *f = self;
	dw_fabric_stats st;
	char labels[DW_FABRIC__DROP_COUNT][48];
	dw_metric m;

	dw_fabric_get_stats(f, &st);
#define EMIT(n, v, u, h, k)                                                                      \
	do {                                                                                     \
		m = (dw_metric){                                                                 \
			.name = (n), .value = (double)(v), .unit = (u), .help = (h), .kind = (k) \
		};                                                                               \
		fn(arg, &m);                                                                     \
	} while (0)
	EMIT("members_alive", st.alive, "", "members alive in this node's view", DW_METRIC_GAUGE);
	EMIT("members_suspect", st.suspect, "", "members suspected", DW_METRIC_GAUGE);
	EMIT("members_dead", st.dead, "", "removed members still remembered", DW_METRIC_GAUGE);
	EMIT("cluster_size", st.cluster_size, "", "live nodes in the cluster as counted here",
	     DW_METRIC_GAUGE);
	EMIT("topology", st.topology, "", "0 star, 1 mesh, 2 federated", DW_METRIC_GAUGE);
	EMIT("topology_epoch", st.epoch, "", "coordinated topology changes so far",
	     DW_METRIC_GAUGE);
	EMIT("leader", st.leader, "", "1 if this node is the hub or a group leader",
	     DW_METRIC_GAUGE);
	EMIT("sent_messages", st.sent_msgs, "messages", "datagrams sent", DW_METRIC_COUNTER);
	EMIT("sent_bytes", st.sent_bytes, "bytes", "bytes sent", DW_METRIC_COUNTER);
	EMIT("received_messages", st.recv_msgs, "messages", "authenticated datagrams received",
	     DW_METRIC_COUNTER);
	EMIT("received_bytes", st.recv_bytes, "bytes", "bytes received", DW_METRIC_COUNTER);
	EMIT("send_errors", st.send_errors, "", "sends the transport refused", DW_METRIC_COUNTER);
	EMIT("detections", st.detections, "", "removals this node decided", DW_METRIC_COUNTER);
	EMIT("detection_seconds", st.detect_ema_s, "seconds",
	     "EMA of silence before a removal this node decided", DW_METRIC_GAUGE);
#undef EMIT
	for (int d = 0; d < DW_FABRIC__DROP_COUNT; d++) {
		snprintf(labels[d], sizeof(labels[d]), "reason=\"%s\"",
			 dw_fabric_drop_name((dw_fabric_drop)d));
		m = (dw_metric){ .name = "dropped_packets",
				 .labels = labels[d],
				 .value = (double)st.dropped[d],
				 .unit = "packets",
				 .help = drop_help,
				 .kind = DW_METRIC_COUNTER };
		fn(arg, &m);
	}
	return 0;
}

struct limit_desc {
	const char *name;
	double min, max;
	const char *unit, *help;
};

static const struct limit_desc limit_descs[] = {
	{ "interval_seconds", 0.01, 3600, "seconds", "heartbeat interval H" },
	{ "missed", 1, 100, "", "K: removal after K*H without a sign of life" },
	{ "star_max", 2, 1000000, "", "most nodes a Star holds" },
	{ "mesh_max", 2, 1000000, "", "most nodes a Mesh holds" },
	{ "federated_max", 2, 6553500, "", "most nodes a Federated cluster holds" },
	{ "star_switch_at", 2, 1000000, "", "leave Star at this many nodes" },
	{ "mesh_switch_at", 2, 1000000, "", "leave Mesh at this many nodes" },
	{ "group_size", 2, 6553500, "", "Federated: members per group" },
	{ "hysteresis", 0, 0.5, "ratio", "switch back only below threshold*(1-hysteresis)" },
};

static void limits_to_array(const dw_fabric_limits *l, double *v)
{
	v[0] = (double)l->interval_ns / 1e9;
	v[1] = l->missed;
	v[2] = l->star_max;
	v[3] = l->mesh_max;
	v[4] = l->federated_max;
	v[5] = l->star_switch_at;
	v[6] = l->mesh_switch_at;
	v[7] = l->group_size;
	v[8] = l->hysteresis;
}

static void array_to_limits(const double *v, dw_fabric_limits *l)
{
	l->interval_ns = (uint64_t)llround(v[0] * 1e9);
	l->missed = (uint32_t)v[1];
	l->star_max = (uint32_t)v[2];
	l->mesh_max = (uint32_t)v[3];
	l->federated_max = (uint32_t)v[4];
	l->star_switch_at = (uint32_t)v[5];
	l->mesh_switch_at = (uint32_t)v[6];
	l->group_size = (uint32_t)v[7];
	l->hysteresis = v[8];
}

#define NLIMITS (sizeof(limit_descs) / sizeof(limit_descs[0]))

static int sc_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_fabric_limits l;
	double v[NLIMITS];

	dw_fabric_get_limits(self, &l);
	limits_to_array(&l, v);
	for (size_t i = 0; i < NLIMITS; i++) {
		dw_limit d = { .name = limit_descs[i].name,
			       .value = v[i],
			       .min = limit_descs[i].min,
			       .max = limit_descs[i].max,
			       .unit = limit_descs[i].unit,
			       .help = limit_descs[i].help };

		fn(arg, &d);
	}
	return 0;
}

static int sc_reconfigure(void *self, const dw_limit_change *changes, size_t n, char *err,
			  size_t errlen)
{
	dw_fabric_limits l;
	double v[NLIMITS];
	int rc;

	dw_fabric_get_limits(self, &l);
	limits_to_array(&l, v);
	for (size_t c = 0; c < n; c++) {
		size_t i;

		for (i = 0; i < NLIMITS; i++) {
			if (strcmp(changes[c].name, limit_descs[i].name) == 0)
				break;
		}
		if (i == NLIMITS) {
			snprintf(err, errlen, "fabric has no limit %s", changes[c].name);
			return DW_ELIMIT;
		}
		{
			dw_limit d = { .name = limit_descs[i].name,
				       .min = limit_descs[i].min,
				       .max = limit_descs[i].max };

			rc = dw_limit_check(&d, &changes[c], i != 0 && i != 8, err, errlen);
			if (rc < 0)
				return rc;
		}
		v[i] = changes[c].value;
	}
	array_to_limits(v, &l);
	return dw_fabric_set_limits(self, &l, err, errlen);
}

static dw_bp_state sc_state(void *self)
{
	dw_fabric_stats st;

	dw_fabric_get_stats(self, &st);
	if (st.suspect > 0 && st.suspect * 10 >= st.alive + st.suspect)
		return DW_BP_WARNING; /* a tenth of the view suspected: the network is struggling */
	return DW_BP_NORMAL;
}

static const dw_scalable_ops fabric_scalable_ops = {
	.metrics = sc_metrics,
	.limits = sc_limits,
	.reconfigure = sc_reconfigure,
	.state = sc_state,
};

const dw_scalable *dw_fabric_scalable(dw_fabric *f)
{
	return &f->scalable;
}

void dw__fabric_dump(dw_fabric *f, FILE *out)
{
	pthread_mutex_lock(&f->lock);
	roles(f);
	fprintf(out, "self %016llx topo=%s epoch=%u relay=%d hub=%016llx low=%016llx size=%u\n",
		(unsigned long long)f->m[0].id, dw_fabric_topology_name(f->topology), f->epoch,
		f->relay, (unsigned long long)f->hub_id, (unsigned long long)f->low_id,
		f->st.cluster_size);
	for (size_t i = 1; i < f->n; i++) {
		const struct member *m = &f->m[i];

		fprintf(out, "  %016llx %u.%u st=%u leader=%d group=%u gsize=%u mon=%d\n",
			(unsigned long long)m->id, m->gen, m->ctr, m->state, is_leader_rec(m),
			m->lgroup, m->group_size, m->monitored);
	}
	pthread_mutex_unlock(&f->lock);
}
