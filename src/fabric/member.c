// SPDX-License-Identifier: MIT
/*
 * Fabric membership: the view (this node's member records), its hash index, the per-sender
 * replay windows, what is in scope, the events, and the merge of member records from the wire.
 *
 * The view is an array (m[0] is this node) with an open-addressing index beside it, because
 * the hot path of every packet is "find the sender and each piggybacked record": a lookup must
 * not walk 10,000 records. Both grow by doubling up to view_cap(), twice the largest topology,
 * so a flood of forged-looking but authentic ids cannot grow memory without bound.
 *
 * dw__fabric_merge() is invariant 1 of fabric.c made code: a record only replaces an older one,
 * and a monitor's own clock beats someone else's suspicion or removal at the same incarnation
 * (invariant 2). Every function here runs with f->lock held.
 */
#include <errno.h>
#include <string.h>

#include "fabric_int.h"

/* ---- member table ------------------------------------------------------------------------- */

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

struct member *dw__fabric_find(dw_fabric *f, uint64_t id)
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

struct member *dw__fabric_add_member(dw_fabric *f, uint64_t id)
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
	m->lgroup = dw__fabric_group(f, id);
	s = slot_of(id, f->index_cap);
	while (f->index[s])
		s = (s + 1) & (f->index_cap - 1);
	f->index[s] = (uint32_t)f->n + 1;
	f->n++;
	return m;
}

/* Drop members by predicate (keeps m[0]); rebuilds the index once. */
void dw__fabric_compact(dw_fabric *f, bool (*drop)(dw_fabric *f, const struct member *m))
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

/* ---- replay windows ----------------------------------------------------------------------- */

struct replay_slot *dw__fabric_replay_slot(dw_fabric *f, uint64_t id, bool create)
{
	size_t s;

	if (f->replay_cap == 0 || (create && (f->replay_n + 1) * 2 > f->replay_cap)) {
		size_t ncap = f->replay_cap ? f->replay_cap * 2 : 32;
		struct replay_slot *nr;

		if (f->replay_cap && ncap > view_cap(f) * DW__REPLAY_SENDERS_FACTOR) {
			/* Full: start over. A sender then gets one window of replays accepted,
			 * which membership dw__fabric_merge() ignores as old anyway. */
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

/* ---- scope -------------------------------------------------------------------------------- */

/* Is this record part of my view? Federated views hold my group and the leaders only. */
bool dw__fabric_in_scope(dw_fabric *f, uint64_t id, bool leader)
{
	if (f->topology != DW_FABRIC_FEDERATED)
		return true;
	return leader || id == f->low_id || dw__fabric_group(f, id) == f->m[0].lgroup;
}

/*
 * A member that left my scope (a leader that stepped down in another group, or everyone outside
 * my group when the cluster turns Federated) is dropped quietly: no event, never announced, but
 * its incarnation is remembered like a dead record's, so stale copies still riding on other
 * nodes' packets cannot bring it back.
 */
void dw__fabric_make_gone(dw_fabric *f, struct member *m, uint32_t gen, uint32_t ctr, uint8_t flags)
{
	m->gen = gen;
	m->ctr = ctr;
	m->flags = flags;
	m->state = DW_FABRIC_DEAD;
	m->gone = true;
	m->state_ns = dw__fabric_now(f);
	f->roles_dirty = true;
}

/* ---- events ------------------------------------------------------------------------------- */

void dw__fabric_to_public(const struct member *m, dw_fabric_member *out)
{
	out->id = m->id;
	out->generation = m->gen;
	out->counter = m->ctr;
	out->state = (dw_fabric_state)m->state;
	out->addr.ip = m->ip;
	out->addr.port = m->port;
	out->leader = dw__fabric_is_leader(m);
	out->group = m->group;
}

void dw__fabric_emit_ev(dw_fabric *f, dw_fabric_event_type type, const struct member *m,
			bool decided)
{
	dw_fabric_event ev;

	if (!f->cfg.on_event)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.now_ns = dw__fabric_now(f);
	if (m) {
		dw__fabric_to_public(m, &ev.member);
		ev.last_heard_ns = m->heard_ns;
	}
	ev.decided = decided;
	ev.from = ev.to = f->topology;
	ev.cluster_size = f->st.cluster_size;
	f->cfg.on_event(f->cfg.event_arg, &ev);
}

void dw__fabric_emit(dw_fabric *f, dw_fabric_event_type type, const struct member *m)
{
	dw__fabric_emit_ev(f, type, m, false);
}

void dw__fabric_emit_topo(dw_fabric *f, dw_fabric_event_type type, dw_fabric_topology from,
			  dw_fabric_topology to, uint32_t size, const char *reason)
{
	dw_fabric_event ev;

	if (!f->cfg.on_event)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.now_ns = dw__fabric_now(f);
	ev.from = from;
	ev.to = to;
	ev.cluster_size = size;
	ev.reason = reason;
	f->cfg.on_event(f->cfg.event_arg, &ev);
}

/* ---- membership changes ------------------------------------------------------------------- */

void dw__fabric_set_state(dw_fabric *f, struct member *m, uint8_t state)
{
	m->state = state;
	m->state_ns = dw__fabric_now(f);
	f->roles_dirty = true;
}

static void refute(dw_fabric *f, uint32_t gen, uint32_t ctr)
{
	struct member *self = &f->m[0];

	if (dw__fabric_inc_cmp(gen, ctr, self->gen, self->ctr) < 0)
		return;
	if (gen > self->gen)
		self->gen = gen;
	self->ctr = ctr + 1;
	dw__fabric_enqueue(f, self->id);
}

/*
 * Apply a member record from the wire; src says whose copy it is. Returns the member (or NULL
 * when ignored).
 */
struct member *dw__fabric_merge(dw_fabric *f, const struct dw__wire_member *r,
				enum dw__merge_src src)
{
	bool direct = src == DW__MERGE_DIRECT;

	struct member *m;
	uint64_t now = dw__fabric_now(f);
	bool leader = r->flags & DW__MEMBER_FLAG_LEADER;
	int cmp;

	if (r->id == f->m[0].id) {
		if (r->state != DW_FABRIC_ALIVE)
			refute(f, r->gen, r->ctr);
		return NULL;
	}
	m = dw__fabric_find(f, r->id);
	if (!dw__fabric_in_scope(f, r->id, leader)) {
		if (m && dw__fabric_inc_cmp(r->gen, r->ctr, m->gen, m->ctr) > 0)
			dw__fabric_make_gone(f, m, r->gen, r->ctr, r->flags);
		return NULL;
	}
	if (!m) {
		if (r->state == DW_FABRIC_DEAD)
			return NULL;
		m = dw__fabric_add_member(f, r->id);
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
		dw__fabric_roles(f);
		dw__fabric_emit(f, DW_FABRIC_EV_ADDED, m);
		if (m->state == DW_FABRIC_SUSPECT)
			dw__fabric_emit(f, DW_FABRIC_EV_SUSPECT, m);
		if (f->relay || direct)
			dw__fabric_enqueue(f, m->id);
		return m;
	}
	cmp = dw__fabric_inc_cmp(r->gen, r->ctr, m->gen, m->ctr);
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
		if (cmp < 0 || (cmp == 0 && src == DW__MERGE_RELAYED))
			return m;
		m->state = DW_FABRIC_DEAD; /* revived below as a re-added member */
	} else if (cmp < 0 || (cmp == 0 && r->state <= m->state)) {
		return m;
	}
	if (r->state == DW_FABRIC_SUSPECT && cmp == 0 && m->monitored &&
	    now - m->evidence_ns < dw__fabric_suspect_after(f))
		return m; /* I hear it myself: not suspect for me */
	if (r->state == DW_FABRIC_DEAD && cmp == 0 && m->monitored &&
	    now - m->evidence_ns < dw__fabric_dead_after(f))
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
		dw__fabric_roles(f);
		if (old == DW_FABRIC_DEAD && r->state != DW_FABRIC_DEAD)
			dw__fabric_emit(f, DW_FABRIC_EV_ADDED, m);
		else if (r->state == DW_FABRIC_DEAD)
			dw__fabric_emit(f, DW_FABRIC_EV_REMOVED, m);
		else if (r->state == DW_FABRIC_SUSPECT && old != DW_FABRIC_SUSPECT)
			dw__fabric_emit(f, DW_FABRIC_EV_SUSPECT, m);
		else if (old == DW_FABRIC_SUSPECT && r->state == DW_FABRIC_ALIVE)
			dw__fabric_emit(f, DW_FABRIC_EV_ALIVE, m);
		else
			dw__fabric_emit(f, DW_FABRIC_EV_UPDATED, m);
		if (f->relay || direct)
			dw__fabric_enqueue(f, m->id);
		if (r->state == DW_FABRIC_DEAD)
			dw__fabric_schedule_urgent(f);
	}
	return m;
}

void dw__fabric_on_evidence(dw_fabric *f, struct member *m, uint64_t when)
{
	if (when > m->heard_ns)
		m->heard_ns = when;
	if (when <= m->evidence_ns)
		return;
	m->evidence_ns = when;
	if (m->state == DW_FABRIC_SUSPECT &&
	    dw__fabric_now(f) - when < dw__fabric_suspect_after(f)) {
		m->state = DW_FABRIC_ALIVE;
		m->state_ns = dw__fabric_now(f);
		f->roles_dirty = true;
		dw__fabric_roles(f);
		dw__fabric_emit(f, DW_FABRIC_EV_ALIVE, m);
	}
}
