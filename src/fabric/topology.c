// SPDX-License-Identifier: MIT
/*
 * Fabric topology: Federated groups, roles (the Star hub, the group leaders, the coordinator),
 * who monitors and heartbeats whom, the choice of topology for a cluster size and the
 * coordinated switch, and the limits that drive it with their validation.
 *
 * Roles are a function of the view: the lowest live id is the coordinator, the lowest live id of
 * a group leads it (invariant 4 of fabric.c). dw__fabric_recompute_roles() derives them and the
 * counts in one pass and caches the ids this node monitors, so the H/10 check walks a handful of
 * records rather than a whole Federated view; any change to the view marks them dirty and the
 * next reader recounts (dw__fabric_roles() in fabric_int.h).
 *
 * A switch is decided by the coordinator alone and carried by the epoch on every packet; the
 * hysteresis and the hold of 2*K*H after a switch keep a cluster near a threshold from
 * oscillating, and in mode recommend the same hysteresis keeps it from recommending again until
 * it has shrunk below the band. Every function here that takes a handle runs with f->lock held.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fabric_int.h"

/* ---- groups ------------------------------------------------------------------------------- */

uint32_t dw__fabric_ngroups(const dw_fabric_limits *l)
{
	uint32_t g = (l->federated_max + l->group_size - 1) / l->group_size;

	return g ? g : 1;
}

uint16_t dw__fabric_group_of(uint64_t id, uint32_t ngroups)
{
	return (uint16_t)(dw__mix64(id) % ngroups);
}

void dw__fabric_regroup(dw_fabric *f)
{
	f->ngroups = dw__fabric_ngroups(&f->cfg.limits);
	for (size_t i = 0; i < f->n; i++)
		f->m[i].lgroup = dw__fabric_group(f, f->m[i].id);
}

/* ---- roles -------------------------------------------------------------------------------- */

/* Is m one I heartbeat or that heartbeats me? */
bool dw__fabric_is_monitored(dw_fabric *f, const struct member *m)
{
	uint64_t self = f->m[0].id;

	if (m->id == self || !dw__fabric_live(m))
		return false;
	switch (f->topology) {
	case DW_FABRIC_MESH:
		return true;
	case DW_FABRIC_STAR:
		return f->hub_id == self || m->id == f->hub_id;
	case DW_FABRIC_FEDERATED:
		if (f->hub_id == self) /* I lead my group */
			return dw__fabric_is_leader(m) || m->id == f->low_id ||
			       m->lgroup == f->m[0].lgroup;
		return m->id == f->hub_id;
	}
	return false;
}

/* Do I heartbeat m each round, and do I ask for an ack? */
bool dw__fabric_is_target(dw_fabric *f, const struct member *m, bool *ack_req)
{
	uint64_t self = f->m[0].id;

	*ack_req = false;
	if (m->id == self || !dw__fabric_live(m))
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
			return dw__fabric_is_leader(m) || m->id == f->low_id;
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

void dw__fabric_recompute_roles(dw_fabric *f)
{
	struct member *self = &f->m[0];
	uint64_t now = dw__fabric_now(f);
	uint64_t best = self->id, low = self->id;
	uint16_t mygroup = self->lgroup;
	uint8_t want_flags;
	uint32_t alive = 0, suspect = 0, dead = 0, group_alive = 0;
	uint64_t leaders_sum = 0;
	uint32_t leaders_unreported = 0, leaders_reported = 0;
	bool was_relay;

	for (size_t i = 0; i < f->n; i++) {
		struct member *m = &f->m[i];

		if (m->state == DW_FABRIC_ALIVE)
			alive++;
		else if (m->state == DW_FABRIC_SUSPECT)
			suspect++;
		else if (!m->gone)
			dead++;
		if (!dw__fabric_live(m))
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
		struct member *c = dw__fabric_find(f, low);

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
		dw__fabric_enqueue(f, self->id);
		if (was_relay && !f->relay && f->topology == DW_FABRIC_FEDERATED)
			f->stepped_down = true; /* tell the leaders at the next tick */
	}
	self->group = f->topology == DW_FABRIC_FEDERATED ? mygroup : 0;
	self->group_size = group_alive;

	f->nmon = 0;
	f->mon_overflow = false;
	for (size_t i = 0; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool mon = dw__fabric_is_monitored(f, m);

		if (mon && !m->monitored && m->evidence_ns < now)
			m->evidence_ns = now; /* grace: a new duty starts its clock now */
		m->monitored = mon;
		if (mon && mon_push(f, m->id) < 0)
			f->mon_overflow = true; /* check() then scans the whole view */
		if (f->topology == DW_FABRIC_FEDERATED && dw__fabric_live(m) &&
		    dw__fabric_is_leader(m) && m->lgroup != mygroup) {
			if (m->group_size) {
				leaders_sum += m->group_size;
				leaders_reported++;
			} else {
				leaders_unreported++;
			}
		}
	}
	/*
	 * A leader hears the group size of another only from that leader's own packets, and with
	 * many groups not every leader reaches the coordinator within the hold after a switch.
	 * Counting a silent leader as 1 made a cluster of 900 look like 110 and switch back to
	 * Mesh. Groups are filled by hashing ids, so a silent leader is counted at the mean of the
	 * groups that did report (mine included), and while under half of them have reported the
	 * count is marked partial and the coordinator does not act on it.
	 */
	if (leaders_unreported)
		leaders_sum += (uint64_t)leaders_unreported *
			       ((leaders_sum + group_alive) / (leaders_reported + 1));
	f->count_partial =
		f->topology == DW_FABRIC_FEDERATED && leaders_unreported > leaders_reported + 1;
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

enum dw__role dw__fabric_role(dw_fabric *f)
{
	enum dw__role r;

	pthread_mutex_lock(&f->lock);
	dw__fabric_roles(f);
	if (f->topology == DW_FABRIC_MESH)
		r = DW__ROLE_MESH;
	else if (f->topology == DW_FABRIC_STAR)
		r = f->relay ? DW__ROLE_HUB : DW__ROLE_LEAF;
	else
		r = f->relay ? DW__ROLE_LEADER : DW__ROLE_MEMBER;
	pthread_mutex_unlock(&f->lock);
	return r;
}

/* ---- topology choice ---------------------------------------------------------------------- */

uint32_t dw__fabric_topo_max(const dw_fabric_limits *l, dw_fabric_topology t)
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

	if (cur != base && n <= dw__fabric_topo_max(l, base) && n < topo_threshold(l, base) * h)
		return base;
	if (n < topo_threshold(l, cur))
		return cur;
	for (size_t i = 0; i < 3; i++) {
		dw_fabric_topology t = order[i];

		if (t == cur)
			continue;
		if (n <= dw__fabric_topo_max(l, t) && n < topo_threshold(l, t) * h)
			return t;
	}
	return cur;
}

void dw__fabric_adopt_topology(dw_fabric *f, uint32_t epoch, dw_fabric_topology t)
{
	dw_fabric_topology from = f->topology;
	uint32_t size = f->st.cluster_size;

	f->epoch = epoch;
	if (t == from)
		return;
	f->topology = t;
	f->last_switch_ns = dw__fabric_now(f);
	f->recommended = false;
	if (t == DW_FABRIC_FEDERATED) {
		/* my group, the leaders and the coordinator stay */
		for (size_t i = 1; i < f->n; i++) {
			struct member *m = &f->m[i];

			if (dw__fabric_live(m) &&
			    !dw__fabric_in_scope(f, m->id, dw__fabric_is_leader(m)))
				dw__fabric_make_gone(f, m, m->gen, m->ctr, m->flags);
		}
	}
	f->roles_dirty = true;
	dw__fabric_roles(f);
	if (from == DW_FABRIC_FEDERATED && f->low_id != f->m[0].id && dw__fabric_active(f)) {
		/*
		 * Out of Federated nobody knows everyone: each node shows itself to the coordinator
		 * now and pulls the coordinator's full view two intervals later, once everyone's
		 * announcement has arrived there.
		 */
		struct member *c = dw__fabric_find(f, f->low_id);

		if (c) {
			dw__fabric_send_status(f, c, DW__PKT_UPDATE, 0, NULL);
			f->join = J_SYNCING;
			f->sync_from.ip = c->ip;
			f->sync_from.port = c->port;
			f->sync_offset = 0;
			f->next_join_ns = dw__fabric_now(f) + 2 * dw__fabric_interval(f);
		}
	}
	dw__fabric_emit_topo(f, DW_FABRIC_EV_SWITCHED, from, t, size, "coordinated switch");
}

void dw__fabric_coordinate(dw_fabric *f)
{
	const dw_fabric_limits *l = &f->cfg.limits;
	dw_fabric_topology want;
	char reason[128];

	dw__fabric_roles(f);
	/*
	 * Hold a new topology for 2*K*H: sizes are re-counted in the new shape (Federated leaders
	 * report their groups within a round or two) and the hold keeps a half-counted cluster from
	 * bouncing straight back.
	 */
	if (f->last_switch_ns &&
	    dw__fabric_now(f) - f->last_switch_ns < 2 * dw__fabric_dead_after(f))
		return;
	if (f->count_partial)
		return; /* see dw__fabric_roles */
	want = choose(l, f->topology, f->base, f->st.cluster_size);
	if (want == f->topology) {
		/*
		 * One recommendation per crossing: re-arm only once the size is back across the
		 * band a switch would have used, so a cluster flapping 399<->400 on the default
		 * limits recommends once, not at every 400. A recommendation to grow out of the
		 * current topology re-arms below threshold*(1-hysteresis); one to shrink back to
		 * the configured topology (a node that joined a cluster in another shape) re-arms
		 * at the configured topology's threshold, where choose() stops proposing it.
		 */
		uint32_t n = f->st.cluster_size;

		if (f->recommended_to == f->base && f->base != f->topology
			    ? n >= topo_threshold(l, f->base)
			    : n < topo_threshold(l, f->topology) * (1.0 - l->hysteresis))
			f->recommended = false;
		return;
	}
	snprintf(reason, sizeof(reason), "cluster size %u: %s fits better than %s",
		 f->st.cluster_size, dw_fabric_topology_name(want),
		 dw_fabric_topology_name(f->topology));
	if (f->cfg.mode == DW_FABRIC_MODE_RECOMMEND) {
		if (!f->recommended || f->recommended_to != want)
			dw__fabric_emit_topo(f, DW_FABRIC_EV_SWITCH_RECOMMENDED, f->topology, want,
					     f->st.cluster_size, reason);
		f->recommended = true;
		f->recommended_to = want;
		return;
	}
	/* auto: only the coordinator (the lowest live id I know, which every node knows) acts */
	if (f->low_id != f->m[0].id)
		return;
	dw__fabric_adopt_topology(f, f->epoch + 1, want);
	f->flush_left = DW__URGENT_PUSHES;
	f->next_flush_ns = dw__fabric_now(f);
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

		if (thr < 2 || thr > dw__fabric_topo_max(l, x)) {
			snprintf(err, errlen, "%s_switch_at (%u) must be between 2 and %s_max (%u)",
				 dw_fabric_topology_name(x), thr, dw_fabric_topology_name(x),
				 dw__fabric_topo_max(l, x));
			return DW_ELIMIT;
		}
		for (int y = 0; y < 3; y++) {
			if ((dw_fabric_topology)y == x)
				continue;
			if (thr <= dw__fabric_topo_max(l, (dw_fabric_topology)y) &&
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
