// SPDX-License-Identifier: MIT
/*
 * Fabric protocol logic: membership, failure detection, dissemination, topologies, switching.
 * This file holds the design notes and the handle's life (open, join, close, queries); the
 * logic lives in one file per concern (the map is in fabric_int.h): member.c, topology.c,
 * send.c, receive.c, detect.c, metrics.c.
 *
 * A pure state machine. Inputs: dw_fabric_receive() (an authenticated datagram, receive.c) and
 * dw_fabric_tick() (time passed, read from the injected clock, detect.c). Outputs: datagrams
 * through the transport vtable (send.c) and events through the callback (member.c). No sockets,
 * no sleeping, no threads here; transport_udp.c and sim.c drive it.
 *
 * Threads and locking: one mutex per handle (f->lock) guards every field; each public function
 * takes it for its whole run, and every internal dw__fabric_* function that takes a handle runs
 * with it held (the simulator hooks dw__fabric_role, _seed_member, _knows_alive and _dump take it
 * themselves). The transport send and the event callback run under it, so neither may call back
 * into the handle.
 *
 * Invariants:
 *  1. A member record is ordered by its incarnation (generation, counter); at equal incarnation
 *     dead > suspect > alive. A record only ever replaces an older one, so an old message never
 *     overrides newer state (dw__fabric_merge(), member.c). Only the node itself raises its
 *     incarnation: on restart (generation) and to refute a suspicion or removal (counter), so it
 *     is never stuck dead.
 *  2. Evidence is a local time: the last sign of life of a member. Direct packets from it set it
 *     to now; an EVID answer from a helper sets it to now - age (only ever forward). Ages only
 *     grow along the path, so evidence is never later than the member's real last packet plus
 *     latency: a node is never removed before K*H after its last sign of life.
 *  3. A node monitors the members the topology makes it heartbeat or be heartbeaten by
 *     (dw__fabric_is_monitored(), topology.c). For those it alone decides (check(), detect.c):
 *     a direct probe every H/10 once a heartbeat is H/2 overdue, suspect at (K-1)*H of silence
 *     (the probe then carries the suspicion so the member can refute, and helpers are asked for
 *     their evidence), dead at K*H. The check runs every H/10, so removal lands in
 *     [K*H, K*H + H/10 + latency]. A monitor that heard the member within K*H ignores someone
 *     else's removal notice at the same incarnation. Others learn removals by dissemination;
 *     hubs and leaders push a removal at once, four times.
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
 *  7. Piggybacked news is best effort; counts are the backstop. A Star leaf or Federated member
 *     whose count stays below its hub's or leader's report for DW__DISSEM_ROUNDS + 1 intervals
 *     pulls the hub's view in pages (check_hub_count(), receive.c), so every node of a scope
 *     ends up knowing all of it, however bursty the joins.
 *
 * State of a member as seen by a monitor:
 *
 *     merge(alive) / add()        check(): silence >= (K-1)*H       check(): silence >= K*H
 *   ------------------> ALIVE ---------------------------> SUSPECT ----------------------> DEAD
 *                        ^  ^  on_evidence(): fresh evidence  |                            |
 *                        |  +---------------------------------+                            |
 *                        +--------- merge(): higher incarnation (refuted / restarted) ------+
 *
 * merge() and on_evidence() are dw__fabric_merge() and dw__fabric_on_evidence() in member.c;
 * check() is in detect.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fabric_int.h"

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
	/* only the prepared HMAC states are kept: no copy of the secrets stays in the handle */
	OPENSSL_cleanse(&f->cfg.keyring, sizeof(f->cfg.keyring));
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
	if (!dw__fabric_add_member(f, cfg->node_id)) {
		rc = -ENOMEM;
		goto out;
	}
	f->m[0].gen = cfg->generation;
	f->m[0].ip = cfg->addr.ip;
	f->m[0].port = cfg->addr.port;
	f->roles_dirty = true;
	dw__fabric_roles(f);
	f->scalable = (dw_scalable){ .name = "fabric", .ops = &dw__fabric_scalable_ops, .self = f };
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
	now = dw__fabric_now(f);
	if (n > sizeof(f->seeds) / sizeof(f->seeds[0]))
		n = sizeof(f->seeds) / sizeof(f->seeds[0]);
	if (n) /* seeds may be NULL when n is 0 */
		memcpy(f->seeds, seeds, n * sizeof(*seeds));
	f->nseeds = n;
	f->seed_next = 0;
	f->join = n ? J_JOINING : J_JOINED;
	f->next_join_ns = now;
	/* a random phase spreads the cluster's heartbeats over the interval */
	f->next_round_ns = now + dw__rand_next(&f->rng) % dw__fabric_interval(f);
	f->next_check_ns = now + dw__fabric_interval(f) / DW__CHECK_DIVISOR;
	f->last_purge_ns = now;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* ---- queries ------------------------------------------------------------------------------ */

int dw_fabric_members(dw_fabric *f, dw_fabric_member *out, size_t cap, size_t *n)
{
	size_t k = 0;

	pthread_mutex_lock(&f->lock);
	dw__fabric_roles(f);
	for (size_t i = 0; i < f->n; i++) {
		if (f->m[i].gone)
			continue;
		if (k < cap)
			dw__fabric_to_public(&f->m[i], &out[k]);
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
	dw__fabric_roles(f);
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
	dw__fabric_regroup(f);
	f->roles_dirty = true;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int dw_fabric_set_keyring(dw_fabric *f, const dw_fabric_keyring *ring)
{
	struct dw__wire_keys nk, old;
	int rc;

	if (!ring || ring->n == 0 || ring->n > DW_FABRIC_MAX_KEYS)
		return DW_EBADKEY;
	/* prepared outside the lock: the HMAC states cost a few hashes per key */
	rc = dw__wire_keys_init(&nk, ring);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&f->lock);
	old = f->keys;
	f->keys = nk;
	pthread_mutex_unlock(&f->lock);
	dw__wire_keys_release(&old);
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
	dw__fabric_roles(f);
	*out = f->st;
	out->topology = f->topology;
	out->epoch = f->epoch;
	out->leader = f->relay;
	pthread_mutex_unlock(&f->lock);
}

/* ---- simulator ---------------------------------------------------------------------------- */

uint64_t dw__fabric_id(dw_fabric *f)
{
	return f->m[0].id;
}

int dw__fabric_seed_member(dw_fabric *f, const dw_fabric_member *pm)
{
	struct member *m;

	pthread_mutex_lock(&f->lock);
	m = dw__fabric_find(f, pm->id);
	if (!m)
		m = dw__fabric_add_member(f, pm->id);
	if (m) {
		m->gen = pm->generation;
		m->ctr = pm->counter;
		m->state = DW_FABRIC_ALIVE;
		m->flags = pm->leader ? DW__MEMBER_FLAG_LEADER : 0;
		m->group = pm->group;
		m->ip = pm->addr.ip;
		m->port = pm->addr.port;
		m->evidence_ns = dw__fabric_now(f);
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
	m = dw__fabric_find(f, id);
	r = m && dw__fabric_live(m);
	pthread_mutex_unlock(&f->lock);
	return r;
}

void dw__fabric_dump(dw_fabric *f, FILE *out)
{
	pthread_mutex_lock(&f->lock);
	dw__fabric_roles(f);
	fprintf(out, "self %016llx topo=%s epoch=%u relay=%d hub=%016llx low=%016llx size=%u\n",
		(unsigned long long)f->m[0].id, dw_fabric_topology_name(f->topology), f->epoch,
		f->relay, (unsigned long long)f->hub_id, (unsigned long long)f->low_id,
		f->st.cluster_size);
	for (size_t i = 1; i < f->n; i++) {
		const struct member *m = &f->m[i];

		fprintf(out, "  %016llx %u.%u st=%u leader=%d group=%u gsize=%u mon=%d\n",
			(unsigned long long)m->id, m->gen, m->ctr, m->state,
			dw__fabric_is_leader(m), m->lgroup, m->group_size, m->monitored);
	}
	pthread_mutex_unlock(&f->lock);
}
