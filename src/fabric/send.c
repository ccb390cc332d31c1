// SPDX-License-Identifier: MIT
/*
 * Fabric sending: the dissemination queue and every packet the protocol logic builds.
 *
 * Each packet starts with the sender's own record (the receiver refuses a packet that does
 * not). Status packets (PING, ACK, UPDATE) and member pages then carry the cluster item (epoch,
 * topology, sizes), and status packets fill any room left with pending updates, rotating so each
 * gets its turn: membership news rides on heartbeats instead of costing packets of its own.
 * Only removals and topology changes are pushed at once (UPDATE), by hubs and leaders,
 * DW__URGENT_PUSHES times.
 *
 * Packets are built on the stack (DW__WIRE_MAX_PACKET bytes) and handed to the transport
 * vtable; a failed MAC or send is counted, never retried here (the protocol's own repetition
 * covers it). Every function here runs with f->lock held.
 */
#include <string.h>

#include "fabric_int.h"

/* ---- dissemination queue ------------------------------------------------------------------ */

void dw__fabric_enqueue(dw_fabric *f, uint64_t id)
{
	for (size_t i = 0; i < f->pend_n; i++) {
		if (f->pend[i].id == id) {
			f->pend[i].rounds = DW__DISSEM_ROUNDS;
			return;
		}
	}
	if (f->pend_n == DW__DISSEM_CAP) {
		memmove(f->pend, f->pend + 1, (DW__DISSEM_CAP - 1) * sizeof(*f->pend));
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
	f->pend[f->pend_n].rounds = DW__DISSEM_ROUNDS;
	f->pend_n++;
}

void dw__fabric_pend_round(dw_fabric *f)
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

/* ---- building and sending ----------------------------------------------------------------- */

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
		struct member *m = dw__fabric_find(f, f->pend[i].id);
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
void dw__fabric_send_status(dw_fabric *f, const struct member *to, uint8_t type, uint8_t flags,
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

void dw__fabric_send_status_addr(dw_fabric *f, const dw_fabric_addr *to, uint8_t type,
				 const struct member *extra)
{
	struct member tmp;

	memset(&tmp, 0, sizeof(tmp));
	tmp.ip = to->ip;
	tmp.port = to->port;
	dw__fabric_send_status(f, &tmp, type, 0, extra);
}

void dw__fabric_send_evid_req(dw_fabric *f, const struct member *helper, uint64_t subject)
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

void dw__fabric_answer_evid(dw_fabric *f, const dw_fabric_addr *from, uint64_t subject)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;
	struct member *m = dw__fabric_find(f, subject);
	uint64_t now = dw__fabric_now(f);

	begin(f, &w, buf, DW__PKT_EVID, 0);
	it.kind = DW__ITEM_EVID;
	it.u.evid.subject = subject;
	it.u.evid.age_ms = DW__EVID_NONE;
	if (m && dw__fabric_live(m) && m->heard_ns && m->heard_ns <= now) {
		/* round the age up: evidence must never look fresher than it is */
		uint64_t age = (now - m->heard_ns + DW_NS_PER_MS - 1) / DW_NS_PER_MS;

		if (age < DW__EVID_NONE)
			it.u.evid.age_ms = (uint32_t)age;
	}
	(void)dw__wire_put(&w, &it);
	transmit(f, from, &w);
}

/* ---- urgent pushes ------------------------------------------------------------------------ */

/* Push pending updates at once to everyone I disseminate to (hub/leader duty). */
void dw__fabric_flush_urgent(dw_fabric *f)
{
	uint16_t mygroup = f->m[0].lgroup;

	for (size_t i = 1; i < f->n; i++) {
		struct member *m = &f->m[i];
		bool ack;

		if (!dw__fabric_live(m))
			continue;
		if (!(dw__fabric_is_target(f, m, &ack) || dw__fabric_is_monitored(f, m) ||
		      (f->topology == DW_FABRIC_FEDERATED && f->relay && m->lgroup == mygroup)))
			continue;
		dw__fabric_send_status(f, m, DW__PKT_UPDATE, 0, NULL);
	}
}

void dw__fabric_schedule_urgent(dw_fabric *f)
{
	if (!f->relay)
		return;
	f->flush_left = DW__URGENT_PUSHES;
	f->next_flush_ns = dw__fabric_now(f);
}

/* ---- joining ------------------------------------------------------------------------------ */

void dw__fabric_send_join(dw_fabric *f, const dw_fabric_addr *to)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;

	begin(f, &w, buf, DW__PKT_JOIN, 0);
	transmit(f, to, &w);
}

void dw__fabric_send_sync_req(dw_fabric *f)
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
	if (!dw__fabric_live(m))
		return false;
	if (f->topology != DW_FABRIC_FEDERATED)
		return true;
	return dw__fabric_is_leader(m) || m->lgroup == dw__fabric_group(f, joiner);
}

/* JOIN_ACK or SYNC: a page of members from offset, in view order. */
void dw__fabric_send_page(dw_fabric *f, const dw_fabric_addr *to, uint8_t type, uint64_t joiner,
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

void dw__fabric_fill_result(dw_fabric *f, struct dw__wire_join_result *jr, uint8_t status)
{
	memset(jr, 0, sizeof(*jr));
	jr->status = status;
	jr->topology = (uint8_t)f->topology;
	jr->missed = (uint8_t)f->cfg.limits.missed;
	jr->mode = (uint8_t)f->cfg.mode;
	jr->interval_ms = (uint32_t)(dw__fabric_interval(f) / DW_NS_PER_MS);
	jr->epoch = f->epoch;
	jr->size = f->st.cluster_size;
}

void dw__fabric_send_redirect(dw_fabric *f, const dw_fabric_addr *to, const struct member *m)
{
	uint8_t buf[DW__WIRE_MAX_PACKET];
	struct dw__wire_writer w;
	struct dw__wire_item it;

	begin(f, &w, buf, DW__PKT_JOIN_ACK, 0);
	it.kind = DW__ITEM_JOIN_RESULT;
	dw__fabric_fill_result(f, &it.u.join, DW__JOIN_REDIRECT);
	(void)dw__wire_put(&w, &it);
	member_item(m, &it);
	(void)dw__wire_put(&w, &it);
	transmit(f, to, &w);
}
