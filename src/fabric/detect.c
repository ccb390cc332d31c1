// SPDX-License-Identifier: MIT
/*
 * Fabric failure detection and timers: dw_fabric_tick() runs the heartbeat round every H, the
 * check every H/10 (probes, suspicion, removal), join retries and urgent pushes.
 *
 * Detection is local (invariant 3 of fabric.c): a node judges only the members it monitors, on
 * its own clock of evidence. A member silent for H/2 past its heartbeat is probed directly every
 * H/10; at (K-1)*H it is suspected, the probe carries the suspicion so a live member refutes it,
 * and helpers that would hear it too are asked for their evidence, so loss on one link alone
 * never removes a live node; at K*H it is removed. A stalled node (a gap past H/2 between two
 * calls) shifts every removal clock by the gap first (dw__fabric_note_run(), invariant 6).
 * Every function here runs with f->lock held, except dw_fabric_tick(), which takes it.
 */
#include <pthread.h>
#include <string.h>

#include "fabric_int.h"

/* ---- probing ------------------------------------------------------------------------------ */

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
		if (f->relay && dw__fabric_is_leader(m)) /* another leader: the leaders hear it */
			return dw__fabric_is_leader(x);
		return false;
	}
	return false;
}

static void probe(dw_fabric *f, struct member *m)
{
	unsigned asked = 0;

	/* direct: a ping that asks for an ack and, once suspected, carries the suspicion so m
	 * can refute it */
	dw__fabric_send_status(f, m, DW__PKT_PING, DW__PKT_FLAG_ACK_REQ,
			       m->state == DW_FABRIC_SUSPECT ? m : NULL);
	if (f->n < 3 || m->state != DW_FABRIC_SUSPECT)
		return;
	for (unsigned tries = 0; tries < 4 * DW__HELPERS_PER_PROBE && asked < DW__HELPERS_PER_PROBE;
	     tries++) {
		struct member *x = &f->m[dw__rand_next(&f->rng) % f->n];

		if (!could_vouch(f, x, m))
			continue;
		dw__fabric_send_evid_req(f, x, m->id);
		asked++;
	}
}

/* ---- removal ------------------------------------------------------------------------------ */

static void declare_dead(dw_fabric *f, struct member *m)
{
	uint64_t now = dw__fabric_now(f);
	double age = (double)(now - m->evidence_ns) / 1e9;

	dw__fabric_set_state(f, m, DW_FABRIC_DEAD);
	f->st.detections++;
	f->st.detect_ema_s = dw_ema_update(&f->detect_ema, age);
	dw__fabric_roles(f);
	dw__fabric_emit_ev(f, DW_FABRIC_EV_REMOVED, m, true);
	dw__fabric_enqueue(f, m->id);
	dw__fabric_schedule_urgent(f);
}

/*
 * A node that was not running (SIGSTOP, a VM pause, a long GC-like stall) heard nothing while
 * it was away, through no fault of its peers. Timers run every H/10, so a gap past H/2 between
 * two calls is a stall: every removal clock moves forward by the gap, so the stalled node judges
 * its peers only on the time it was actually listening.
 */
void dw__fabric_note_run(dw_fabric *f, uint64_t now)
{
	uint64_t gap;

	if (f->last_run_ns && now > f->last_run_ns) {
		gap = now - f->last_run_ns;
		if (gap > dw__fabric_interval(f) / 2) {
			for (size_t i = 1; i < f->n; i++) {
				struct member *m = &f->m[i];

				m->evidence_ns =
					m->evidence_ns + gap < now ? m->evidence_ns + gap : now;
			}
		}
	}
	f->last_run_ns = now;
}

static bool purgeable(dw_fabric *f, const struct member *m)
{
	uint64_t retain = DW__DEAD_RETAIN_KH * dw__fabric_dead_after(f);

	return m->state == DW_FABRIC_DEAD &&
	       (m->state_ns == 0 || dw__fabric_now(f) - m->state_ns > retain);
}

static void check(dw_fabric *f)
{
	uint64_t now = dw__fabric_now(f);

	size_t nscan;

	dw__fabric_roles(f);
	/* walk a copy of the monitored ids: declaring one dead recounts roles and the list */
	nscan = f->mon_overflow ? f->n : f->nmon;
	if (!f->mon_overflow && f->nmon)
		memcpy(f->mon_scan, f->mon, f->nmon * sizeof(*f->mon));
	for (size_t k = 0; k < nscan; k++) {
		struct member *m = f->mon_overflow ? &f->m[k] : dw__fabric_find(f, f->mon_scan[k]);
		uint64_t age;

		if (!m || m == &f->m[0] || !m->monitored || !dw__fabric_live(m))
			continue;
		age = now > m->evidence_ns ? now - m->evidence_ns : 0;
		if (age >= dw__fabric_dead_after(f)) {
			declare_dead(f, m);
		} else if (age >= dw__fabric_probe_after(f)) {
			if (age >= dw__fabric_suspect_after(f) && m->state == DW_FABRIC_ALIVE) {
				dw__fabric_set_state(f, m, DW_FABRIC_SUSPECT);
				dw__fabric_roles(f);
				dw__fabric_emit(f, DW_FABRIC_EV_SUSPECT, m);
				dw__fabric_enqueue(f, m->id);
			}
			probe(f, m);
		}
	}
	if (now - f->last_purge_ns > dw__fabric_dead_after(f)) {
		f->last_purge_ns = now;
		dw__fabric_compact(f, purgeable);
		f->roles_dirty = true;
	}
}

/* ---- the tick ----------------------------------------------------------------------------- */

static void heartbeat_round(dw_fabric *f)
{
	dw__fabric_roles(f);
	for (size_t i = 1; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool ack;

		if (dw__fabric_is_target(f, m, &ack))
			dw__fabric_send_status(f, m, DW__PKT_PING, ack ? DW__PKT_FLAG_ACK_REQ : 0,
					       NULL);
	}
	dw__fabric_pend_round(f);
	dw__fabric_coordinate(f);
}

uint64_t dw_fabric_tick(dw_fabric *f)
{
	uint64_t now, next;

	pthread_mutex_lock(&f->lock);
	now = dw__fabric_now(f);
	if (dw__fabric_active(f))
		dw__fabric_note_run(f, now);
	if ((f->join == J_JOINING || f->join == J_SYNCING) && now >= f->next_join_ns) {
		if (f->join == J_JOINING && f->nseeds) {
			dw__fabric_send_join(f, &f->seeds[f->seed_next]);
			f->seed_next = (f->seed_next + 1) % f->nseeds;
		} else if (f->join == J_SYNCING) {
			dw__fabric_send_sync_req(f);
		}
		f->next_join_ns = now + dw__fabric_interval(f) / DW__JOIN_RETRY_DIVISOR;
	}
	if (f->join == J_JOINED || f->join == J_SYNCING) {
		if (now >= f->next_round_ns) {
			heartbeat_round(f);
			f->next_round_ns = now + dw__fabric_interval(f);
		}
		if (now >= f->next_check_ns) {
			check(f);
			f->next_check_ns = now + dw__fabric_interval(f) / DW__CHECK_DIVISOR;
		}
		if (f->stepped_down) {
			/* leaders only hear members of their own group, so a former leader tells
			 * them itself; a missed notice is settled by their probes */
			f->stepped_down = false;
			for (size_t i = 1; i < f->n; i++) {
				if (dw__fabric_live(&f->m[i]) && dw__fabric_is_leader(&f->m[i]))
					dw__fabric_send_status(f, &f->m[i], DW__PKT_UPDATE, 0,
							       NULL);
			}
		}
		if (f->flush_left && now >= f->next_flush_ns) {
			dw__fabric_flush_urgent(f);
			f->flush_left--;
			f->next_flush_ns = now + dw__fabric_interval(f) / DW__CHECK_DIVISOR;
		}
	}
	next = now + dw__fabric_interval(f);
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
