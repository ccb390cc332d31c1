// SPDX-License-Identifier: MIT
/*
 * Fabric receiving: dw_fabric_receive() and the handlers for joins and member pages.
 *
 * The order is the defence: authenticate (wire.c), refuse our own id, parse the whole body
 * before applying anything (so a malformed packet changes nothing), check and mark the
 * sender's replay window, and only then merge. The sender's own record comes first in every
 * packet, and a sender this node removed at that incarnation is answered with its removal (so
 * it refutes) rather than merged back.
 *
 * Joins: in Star and Mesh only the coordinator admits (it counts every join as it happens, so a
 * switch lands exactly on its threshold); in Federated the leader of the joiner's group admits;
 * everyone else redirects. A join beyond the topology's max is refused with the limit. The
 * joiner then pulls the view in pages (JOIN_ACK, then SYNC) and is active from the first page.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fabric_int.h"

static void handle_join(dw_fabric *f, const dw_fabric_addr *from, const struct dw__wire_member *jm)
{
	struct dw__wire_join_result jr;
	struct member *known = dw__fabric_find(f, jm->id);
	uint32_t cap = dw__fabric_topo_max(&f->cfg.limits, f->topology);

	if (!dw__fabric_active(f))
		return; /* not a member yet: the joiner tries its next seed */
	dw__fabric_roles(f);
	if ((!known || !dw__fabric_live(known)) && f->st.cluster_size + 1 > cap) {
		dw__fabric_fill_result(f, &jr, DW__JOIN_FULL);
		jr.limit = cap;
		dw__fabric_send_page(f, from, DW__PKT_JOIN_ACK, jm->id, UINT32_MAX, &jr);
		return;
	}
	if (f->topology != DW_FABRIC_FEDERATED && f->low_id != f->m[0].id) {
		/* the coordinator (the Star hub, the lowest Mesh node) admits: it counts every
		 * join the moment it happens, so a switch lands exactly on its threshold */
		struct member *c = dw__fabric_find(f, f->low_id);

		/* not to itself: a restarted coordinator (same id, its old incarnation still in
		 * the view) would be sent round to its own address for ever */
		if (c && dw__fabric_live(c) && c->id != jm->id) {
			dw__fabric_send_redirect(f, from, c);
			return;
		}
	}
	if (f->topology == DW_FABRIC_FEDERATED) {
		uint16_t g = dw__fabric_group(f, jm->id);
		struct member *leader = NULL;

		for (size_t i = 0; i < f->n; i++) {
			struct member *m = &f->m[i];

			if (dw__fabric_live(m) && m->id != jm->id && m->lgroup == g &&
			    (dw__fabric_is_leader(m) || (i == 0 && f->relay)) &&
			    (!leader || m->id < leader->id))
				leader = m;
		}
		if (leader && leader != &f->m[0]) {
			dw__fabric_send_redirect(f, from,
						 leader); /* its group's leader admits it */
			return;
		}
	}
	dw__fabric_merge(f, jm, DW__MERGE_DIRECT);
	dw__fabric_fill_result(f, &jr, DW__JOIN_OK);
	dw__fabric_send_page(f, from, DW__PKT_JOIN_ACK, jm->id, 0, &jr);
	dw__fabric_coordinate(f);
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
			ev.now_ns = dw__fabric_now(f);
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
		dw__fabric_regroup(f);
		f->roles_dirty = true;
		if (jr.status == DW__JOIN_REDIRECT) {
			r.p = body;
			while (dw__wire_next(&r, &it) > 0) {
				if (it.kind == DW__ITEM_MEMBER && !first) {
					dw_fabric_addr a = { it.u.member.ip, it.u.member.port };

					if (it.u.member.id == f->m[0].id)
						break; /* to myself: retry the seeds instead */

					dw__fabric_send_join(f, &a);
					f->next_join_ns =
						dw__fabric_now(f) +
						dw__fabric_interval(f) / DW__JOIN_RETRY_DIVISOR;
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
		m = dw__fabric_merge(f, &it.u.member, first ? DW__MERGE_DIRECT : DW__MERGE_PAGE);
		if (first && m)
			dw__fabric_on_evidence(f, m, dw__fabric_now(f));
		got += !first;
		first = false;
	}
	if (f->join == J_SYNCING && have_page) {
		f->sync_total = total;
		f->sync_offset = offset + got;
		if (f->sync_offset >= total || got == 0) {
			f->join = J_JOINED;
		} else {
			dw__fabric_send_sync_req(f);
			f->next_join_ns =
				dw__fabric_now(f) + dw__fabric_interval(f) / DW__JOIN_RETRY_DIVISOR;
		}
	}
	if (f->join == J_JOINED && f->next_round_ns > dw__fabric_now(f) + dw__fabric_interval(f))
		f->next_round_ns = dw__fabric_now(f);
}

/*
 * Anti-entropy for leaves and group members. They hear of other members only through their hub
 * or leader, which piggybacks each change on its answers for DW__DISSEM_ROUNDS rounds; when more
 * changes are pending than fit in one packet (a burst of joins), the rotation can line up with
 * the round and leave a member out of every answer to the same node, for good. So a node that
 * counts fewer members than its hub reports, while that report stays the same for
 * DW__DISSEM_ROUNDS + 1 rounds (the joins have stopped and their news has had every chance),
 * pulls the hub's view in pages as after a join. While a cluster grows the report keeps moving,
 * so growth costs no pulls; at rest counts agree, so a quiet cluster costs none either.
 */
static void check_hub_count(dw_fabric *f, const struct member *hub, uint32_t theirs)
{
	uint64_t now = dw__fabric_now(f);
	uint32_t mine;

	dw__fabric_roles(f);
	mine = f->topology == DW_FABRIC_FEDERATED ? f->m[0].group_size : f->st.cluster_size;
	if (theirs <= mine) {
		f->gap_count = 0;
		return;
	}
	if (theirs != f->gap_count) {
		f->gap_count = theirs;
		f->gap_since_ns = now;
		return;
	}
	if (now - f->gap_since_ns < (DW__DISSEM_ROUNDS + 1) * dw__fabric_interval(f))
		return;
	f->gap_count = 0;
	f->join = J_SYNCING;
	f->sync_from.ip = hub->ip;
	f->sync_from.port = hub->port;
	f->sync_offset = 0;
	f->next_join_ns = now;
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
	bool first = true, sender_dead = false, have_count = false;
	uint32_t hub_count = 0;
	uint64_t now;
	int rc;

	pthread_mutex_lock(&f->lock);
	now = dw__fabric_now(f);
	if (dw__fabric_active(f))
		dw__fabric_note_run(f, now);
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
	rs = dw__fabric_replay_slot(f, hdr.sender, true);
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
	dw__fabric_roles(f);

	/* the sender's own record, then its cluster item */
	r.p = body;
	(void)dw__wire_next(&r, &it);
	if (hdr.type == DW__PKT_JOIN) {
		handle_join(f, from, &it.u.member);
		goto out_ok;
	}
	{
		struct member *known = dw__fabric_find(f, it.u.member.id);

		if (known && known->state == DW_FABRIC_DEAD && !known->gone &&
		    dw__fabric_inc_cmp(it.u.member.gen, it.u.member.ctr, known->gen, known->ctr) <=
			    0)
			sender_dead = true;
		else if (f->join == J_JOINED || f->join == J_SYNCING)
			sender = dw__fabric_merge(f, &it.u.member, DW__MERGE_DIRECT);
	}
	if (sender) {
		dw__fabric_on_evidence(f, sender, now);
		/* keep the address the packet came from (NAT-free loopback and LAN) */
	}
	while (dw__wire_next(&r, &it) > 0) {
		if (it.kind == DW__ITEM_CLUSTER) {
			if (it.u.cluster.epoch > f->epoch && dw__fabric_active(f)) {
				dw__fabric_adopt_topology(
					f, it.u.cluster.epoch,
					(dw_fabric_topology)it.u.cluster.topology);
				sender = dw__fabric_find(
					f, hdr.sender); /* the view may have been narrowed */
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
				have_count = sender->id == f->hub_id;
				hub_count = f->topology == DW_FABRIC_FEDERATED
						    ? it.u.cluster.group_size
						    : it.u.cluster.size;
			}
		}
		if (hdr.type == DW__PKT_JOIN_ACK || hdr.type == DW__PKT_SYNC)
			continue;
		if (it.kind == DW__ITEM_MEMBER && dw__fabric_active(f)) {
			dw__fabric_merge(f, &it.u.member, DW__MERGE_RELAYED);
			if (sender)
				sender = dw__fabric_find(
					f, hdr.sender); /* merge may narrow the view */
		} else if (it.kind == DW__ITEM_EVID_REQ && hdr.type == DW__PKT_EVID_REQ)
			dw__fabric_answer_evid(f, from, it.u.subject);
		else if (it.kind == DW__ITEM_EVID && hdr.type == DW__PKT_EVID &&
			 it.u.evid.age_ms != DW__EVID_NONE) {
			struct member *m = dw__fabric_find(f, it.u.evid.subject);
			uint64_t age = (uint64_t)it.u.evid.age_ms * DW_NS_PER_MS;

			if (m && dw__fabric_live(m) && age <= now)
				dw__fabric_on_evidence(f, m, now - age);
		}
	}
	/* after the whole packet: its piggybacked members count too */
	if (have_count && hub_count && f->join == J_JOINED && !f->relay &&
	    f->topology != DW_FABRIC_MESH) {
		struct member *hub = dw__fabric_find(f, hdr.sender);

		if (hub && hub->id == f->hub_id)
			check_hub_count(f, hub, hub_count);
	}
	switch (hdr.type) {
	case DW__PKT_PING:
		if (sender_dead) {
			/* tell it: it refutes with a higher incarnation and comes back */
			struct member *d = dw__fabric_find(f, hdr.sender);

			dw__fabric_send_status_addr(f, from, DW__PKT_UPDATE, d);
		} else if (hdr.flags & DW__PKT_FLAG_ACK_REQ) {
			/* a Federated member that still takes me for its leader learns who leads
			 * now from my ack */
			struct member *lead = NULL;

			if (f->topology == DW_FABRIC_FEDERATED && !f->relay && f->hub_id &&
			    f->hub_id != f->m[0].id)
				lead = dw__fabric_find(f, f->hub_id);
			dw__fabric_send_status_addr(f, from, DW__PKT_ACK, lead);
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
				dw__fabric_send_page(f, from, DW__PKT_SYNC, hdr.sender, it.u.offset,
						     NULL);
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
