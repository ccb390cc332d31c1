/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the fabric subsystem: the wire format, the replay window, and the protocol
 * state every logic file shares.
 *
 *   fabric.c      design notes (invariants, member states); open/close/join, queries, sim hooks
 *   member.c      the member table and its index, replay windows, scope, events, merge of
 *                 records from the wire and evidence of life
 *   topology.c    groups, roles (hub, leaders, who monitors and heartbeats whom), topology
 *                 choice and the coordinated switch, limits and their validation
 *   send.c        the dissemination queue and every packet the logic builds, urgent pushes
 *   receive.c     dw_fabric_receive(): authentication order, join admission, member pages
 *   detect.c      dw_fabric_tick(): heartbeat rounds, probes, suspicion and removal, stalls
 *   metrics.c     the dw_scalable face: metrics, limits by name, backpressure state
 *   wire.c        packet format and authentication      keyring.c  key files
 *   transport_udp.c, sim.c   the two drivers: UDP sockets, and the simulated network and clock
 *
 * The wire layer knows nothing of membership: it turns items into an authenticated datagram
 * and back. The logic layer knows nothing of sockets: it hands finished datagrams to a transport
 * vtable. See docs/formats/wire.md for the packet drawn in full.
 */
#ifndef DWSCALE_FABRIC_INT_H
#define DWSCALE_FABRIC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>

#include "dwscale/fabric.h"

/* ---- wire format ---------------------------------------------------------------------------- */

#define DW__WIRE_MAGIC0	 0xd5
#define DW__WIRE_MAGIC1	 0xfb
#define DW__WIRE_VERSION 1
#define DW__WIRE_HDR_LEN 28
#define DW__WIRE_TAG_LEN 16 /* HMAC-SHA-256-128 (RFC 4868 truncation): 128-bit forgery bound */
/*
 * 1400 bytes: fits a 1500-byte Ethernet MTU after IPv4/IPv6 and UDP headers with room left for
 * a tunnel header, so a fabric packet is never fragmented (a lost fragment loses the packet).
 */
#define DW__WIRE_MAX_PACKET 1400
#define DW__WIRE_MAX_BODY   (DW__WIRE_MAX_PACKET - DW__WIRE_HDR_LEN - DW__WIRE_TAG_LEN)

enum dw__wire_type {
	DW__PKT_PING = 1,     /* heartbeat; flag ACK_REQ asks for an ACK */
	DW__PKT_ACK = 2,      /* answer to a PING with ACK_REQ */
	DW__PKT_JOIN = 3,     /* join request, sent to any member */
	DW__PKT_JOIN_ACK = 4, /* join result + first page of members */
	DW__PKT_SYNC_REQ = 5, /* ask for a page of members */
	DW__PKT_SYNC = 6,     /* a page of members */
	DW__PKT_EVID_REQ = 7, /* "what is your latest sign of life from X?" */
	DW__PKT_EVID = 8,     /* answer: age of that evidence */
	DW__PKT_UPDATE = 9,   /* member updates pushed at once (removals, topology change) */
	DW__PKT__MAX = 9,
};

#define DW__PKT_FLAG_ACK_REQ 0x01

enum dw__wire_kind {
	DW__ITEM_MEMBER = 1,   /* a member record (also suspicion and removal notices) */
	DW__ITEM_CLUSTER = 2,  /* sender's topology epoch, topology, cluster size, group size */
	DW__ITEM_EVID_REQ = 3, /* subject id */
	DW__ITEM_EVID = 4,     /* subject id + age of the sender's last sign of life from it */
	DW__ITEM_JOIN_RESULT = 5,
	DW__ITEM_PAGE = 6,     /* total + offset of the member records that follow */
	DW__ITEM_SYNC_REQ = 7, /* offset wanted */
};

#define DW__MEMBER_ITEM_LEN	 27
#define DW__CLUSTER_ITEM_LEN	 13
#define DW__EVID_REQ_ITEM_LEN	 8
#define DW__EVID_ITEM_LEN	 12
#define DW__JOIN_RESULT_ITEM_LEN 20
#define DW__PAGE_ITEM_LEN	 8
#define DW__SYNC_REQ_ITEM_LEN	 4

#define DW__MEMBER_FLAG_LEADER 0x01

#define DW__EVID_NONE 0xffffffffu /* "I have no evidence of that node" */

enum dw__join_status {
	DW__JOIN_OK = 0,
	DW__JOIN_FULL = 1,     /* the cluster holds its topology's max nodes */
	DW__JOIN_REDIRECT = 2, /* Federated: ask the leader in the member item that follows */
};

struct dw__wire_member {
	uint64_t id;
	uint32_t gen, ctr;
	uint8_t state; /* dw_fabric_state */
	uint8_t flags;
	uint16_t group;
	uint32_t ip;
	uint16_t port;
};

struct dw__wire_cluster {
	uint32_t epoch;
	uint8_t topology;
	uint32_t size;	     /* sender's count of live nodes in the cluster */
	uint32_t group_size; /* Federated leader: live members of its group, else 0 */
};

struct dw__wire_join_result {
	uint8_t status;
	uint8_t topology;
	uint8_t missed;
	uint8_t mode;
	uint32_t interval_ms;
	uint32_t limit; /* DW__JOIN_FULL: the max that was reached */
	uint32_t epoch;
	uint32_t size;
};

struct dw__wire_item {
	uint8_t kind;
	union {
		struct dw__wire_member member;
		struct dw__wire_cluster cluster;
		uint64_t subject; /* EVID_REQ */
		struct {
			uint64_t subject;
			uint32_t age_ms;
		} evid;
		struct dw__wire_join_result join;
		struct {
			uint32_t total, offset;
		} page;
		uint32_t offset; /* SYNC_REQ */
	} u;
};

struct dw__wire_hdr {
	uint8_t version;
	uint8_t type;
	uint8_t flags;
	uint32_t key_id;
	uint64_t sender;
	uint64_t seq;
};

/* The keyring prepared for MACs: precomputed HMAC states per key. */
struct dw__wire_keys {
	void *ctx[DW_FABRIC_MAX_KEYS]; /* struct hmac_key * (wire.c) */
	uint32_t ids[DW_FABRIC_MAX_KEYS];
	size_t n;
};

int dw__wire_keys_init(struct dw__wire_keys *k, const dw_fabric_keyring *ring);
void dw__wire_keys_release(struct dw__wire_keys *k);

struct dw__wire_writer {
	uint8_t *buf;
	size_t cap; /* <= DW__WIRE_MAX_PACKET */
	size_t len;
	size_t nitems;
};

/* Start a packet in buf (cap >= DW__WIRE_HDR_LEN + DW__WIRE_TAG_LEN). */
void dw__wire_begin(struct dw__wire_writer *w, uint8_t *buf, size_t cap, uint8_t type,
		    uint8_t flags, uint64_t sender, uint64_t seq);
/* Room for one more item of value length vlen (tag kept free)? */
bool dw__wire_room(const struct dw__wire_writer *w, size_t vlen);
/* Append an item; DW_ETOOBIG (and nothing written) if it does not fit. */
int dw__wire_put(struct dw__wire_writer *w, const struct dw__wire_item *it);
/* Write body length, sign with the primary key; returns the packet length or a negative code. */
int dw__wire_finish(struct dw__wire_writer *w, const struct dw__wire_keys *k);

/*
 * Check and authenticate a datagram. Returns 0 and fills hdr/body, or -(1 + dw_fabric_drop) as
 * a drop reason: use dw__wire_drop_reason() to map. Replay is not checked here (the receiver
 * owns the per-sender window).
 */
int dw__wire_open(const struct dw__wire_keys *k, const uint8_t *buf, size_t len,
		  struct dw__wire_hdr *hdr, const uint8_t **body, size_t *body_len);
/* Header only, no authentication (for fuzzing and tooling). Same return convention. */
int dw__wire_parse_header(const uint8_t *buf, size_t len, struct dw__wire_hdr *hdr,
			  size_t *body_len);
static inline dw_fabric_drop dw__wire_drop_reason(int rc)
{
	return (dw_fabric_drop)(-rc - 1);
}

struct dw__wire_reader {
	const uint8_t *p, *end;
};

/* Next item: 1 and *it filled (unknown kinds come back with their kind and are to be skipped),
 * 0 at the end, DW_EPROTO if malformed. */
int dw__wire_next(struct dw__wire_reader *r, struct dw__wire_item *it);

/* ---- replay window ----------------------------------------------------------------------------
 */

/*
 * Per-sender anti-replay: the highest sequence seen and a bitmap of the window below it (the
 * IPsec scheme). A sender numbers all its packets with one counter, and a Mesh node or a leader
 * sends hundreds in one burst (a heartbeat round), so a packet to us can be overtaken by one
 * numbered several hundred later: 1024 covers a 500-node Mesh round with room to spare.
 */
#define DW__REPLAY_WINDOW 1024

struct dw__replay {
	uint64_t top;
	uint64_t bits[DW__REPLAY_WINDOW / 64]; /* bit i: top - i seen */
};

/* true if seq is new (not yet marked) */
bool dw__replay_ok(const struct dw__replay *r, uint64_t seq);
void dw__replay_mark(struct dw__replay *r, uint64_t seq);

/* ---- misc ----------------------------------------------------------------------------------- */

static inline uint64_t dw__mix64(uint64_t x)
{
	/* splitmix64 finaliser: good avalanche, used for group choice and PRNG */
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t dw__rand_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return dw__mix64(*s);
}

/* Per-node role counters the simulator reads. */
enum dw__role { DW__ROLE_MESH = 0, DW__ROLE_HUB, DW__ROLE_LEAF, DW__ROLE_LEADER, DW__ROLE_MEMBER };
enum dw__role dw__fabric_role(dw_fabric *f);
uint64_t dw__fabric_id(dw_fabric *f);
/* The group of a node id in a Federated cluster with ngroups groups. */
uint16_t dw__fabric_group_of(uint64_t id, uint32_t ngroups);
uint32_t dw__fabric_ngroups(const dw_fabric_limits *l);
/* Bootstrap helper for the simulator: add a member as if learned from a join. */
int dw__fabric_seed_member(dw_fabric *f, const dw_fabric_member *m);
/* Debugging aid: the view, one member per line. */
void dw__fabric_dump(dw_fabric *f, FILE *out);
/* Simulator: is id in this node's view and alive/suspect? */
bool dw__fabric_knows_alive(dw_fabric *f, uint64_t id);

/* ---- protocol state ------------------------------------------------------------------------
 *
 * Everything below is shared by the logic files. Every dw__fabric_* function below that takes a
 * dw_fabric expects f->lock held (see "Threads and locking" in fabric.c); the simulator hooks
 * declared above take the lock themselves.
 */

/*
 * Checks and probes run at H/10: removal lands at most H/10 after K*H (inside the required
 * H/2), and a suspect gets 10 probes in its last interval; at 10 % loss a probe round trip
 * fails with p = 0.19, so 10 failures in a row have p ~ 6e-8 per suspicion.
 */
#define DW__CHECK_DIVISOR 10
/* Evidence requests per probe round: three helpers each answering with p = 0.81 leave a round
 * empty with p ~ 0.007, on top of the direct probe. */
#define DW__HELPERS_PER_PROBE 3
/* An update rides on every packet for this many heartbeat rounds: three tries per target make a
 * miss at 10 % loss 1e-3, and the direct-contact backstop (auto-add) covers the rest. */
#define DW__DISSEM_ROUNDS 3
/* Hubs and leaders push a removal or topology change this many times, H/10 apart: a target
 * misses all of them with p = 1e-4 at 10 % loss, well inside the H/2 removal window. */
#define DW__URGENT_PUSHES 4
/* Pending dissemination entries: a cap so a join storm cannot grow memory; the oldest drops
 * (it was already sent at least once, and the backstops above remain). */
#define DW__DISSEM_CAP 4096
/* Dead records are kept this many K*H after removal, so stale alive records still riding on
 * packets (for DW__DISSEM_ROUNDS*H at most) cannot bring a removed node back. */
#define DW__DEAD_RETAIN_KH 10
/* Join retries: a lost JOIN or page request is retried after this share of H, cycling seeds. */
#define DW__JOIN_RETRY_DIVISOR 4
/* Replay windows kept per sender id; the table grows to this many times the view's cap. */
#define DW__REPLAY_SENDERS_FACTOR 4

/* One record of the view, as this node sees it. */
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

/* A record waiting to ride on outgoing packets for a few more rounds. */
struct pending {
	uint64_t id;
	uint8_t rounds;
};

struct replay_slot {
	uint64_t id;
	struct dw__replay w;
};

enum join_state { J_IDLE = 0, J_JOINING, J_SYNCING, J_JOINED, J_REFUSED };

/* Whose copy of a member record dw__fabric_merge() is applying. */
enum dw__merge_src {
	DW__MERGE_RELAYED = 0, /* piggybacked: someone else's copy */
	DW__MERGE_DIRECT = 1,  /* the sender's own record */
	DW__MERGE_PAGE = 2,    /* a member page from a join or sync */
};

/* One node of the fabric. Every field is protected by lock. */
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
	dw_fabric_topology recommended_to; /* ... and the topology it proposed */
	bool roles_dirty;
	uint64_t hub_id;	/* Star hub / my Federated leader / 0 */
	uint64_t low_id;	/* lowest live id I know: the coordinator, always a leader */
	bool relay;		/* I am hub or leader: I re-disseminate what I learn */
	uint32_t reported_size; /* Federated member: cluster size from my leader */
	bool count_partial;	/* Federated leader: under half the leaders have reported */
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
	/* a leaf or group member counting fewer members than its hub or leader reports: that
	 * report, and since when it has stood unchanged (see check_hub_count() in receive.c) */
	uint32_t gap_count;
	uint64_t gap_since_ns;

	uint64_t next_round_ns, next_check_ns, next_join_ns, next_flush_ns;
	unsigned flush_left;
	uint64_t last_purge_ns;
	uint64_t last_switch_ns; /* when the topology last changed here */
	uint64_t last_run_ns;	 /* last call into the handle: a long gap means we were stopped */

	dw_fabric_stats st;
	dw_ema detect_ema;
};

static inline uint64_t dw__fabric_now(dw_fabric *f)
{
	return dw_clock_now(f->cfg.clock);
}

static inline uint64_t dw__fabric_interval(dw_fabric *f)
{
	return f->cfg.limits.interval_ns;
}

static inline uint64_t dw__fabric_suspect_after(dw_fabric *f)
{
	uint32_t k = f->cfg.limits.missed;

	return k >= 2 ? (k - 1) * dw__fabric_interval(f) : dw__fabric_interval(f) / 2;
}

/*
 * Probing starts once a heartbeat is half an interval overdue: at 10 % loss one in ten links
 * gets here each round, and a probe answered within H/10 settles it long before anyone hears of
 * a suspicion (which would make the node refute and churn its incarnation cluster-wide).
 */
static inline uint64_t dw__fabric_probe_after(dw_fabric *f)
{
	uint64_t p = dw__fabric_interval(f) + dw__fabric_interval(f) / 2;

	return p < dw__fabric_suspect_after(f) ? p : dw__fabric_suspect_after(f);
}

static inline uint64_t dw__fabric_dead_after(dw_fabric *f)
{
	return f->cfg.limits.missed * dw__fabric_interval(f);
}

/* Order of two incarnations (generation, counter): -1, 0 or 1. */
static inline int dw__fabric_inc_cmp(uint32_t g1, uint32_t c1, uint32_t g2, uint32_t c2)
{
	if (g1 != g2)
		return g1 < g2 ? -1 : 1;
	if (c1 != c2)
		return c1 < c2 ? -1 : 1;
	return 0;
}

/* The group of id under my limits. */
static inline uint16_t dw__fabric_group(dw_fabric *f, uint64_t id)
{
	return dw__fabric_group_of(id, f->ngroups);
}

static inline bool dw__fabric_is_leader(const struct member *m)
{
	return m->flags & DW__MEMBER_FLAG_LEADER;
}

static inline bool dw__fabric_live(const struct member *m)
{
	return m->state != DW_FABRIC_DEAD;
}

/* Joined: heartbeating and answering (a node pulling pages after a join still is). */
static inline bool dw__fabric_active(dw_fabric *f)
{
	return f->join == J_JOINED || f->join == J_SYNCING;
}

void dw__fabric_recompute_roles(dw_fabric *f);

/* Roles are recounted lazily: a change marks them dirty, a reader recounts. */
static inline void dw__fabric_roles(dw_fabric *f)
{
	if (f->roles_dirty)
		dw__fabric_recompute_roles(f);
}

/* ---- member.c: the view ---- */

struct member *dw__fabric_find(dw_fabric *f, uint64_t id);
/* A new zeroed record for id (NULL when out of memory or at the view's cap). */
struct member *dw__fabric_add_member(dw_fabric *f, uint64_t id);
/* Drop the records drop() picks (never m[0]); rebuilds the index once. */
void dw__fabric_compact(dw_fabric *f, bool (*drop)(dw_fabric *f, const struct member *m));
/* The replay window of a sender (created when create is set; NULL when out of memory). */
struct replay_slot *dw__fabric_replay_slot(dw_fabric *f, uint64_t id, bool create);
bool dw__fabric_in_scope(dw_fabric *f, uint64_t id, bool leader);
void dw__fabric_make_gone(dw_fabric *f, struct member *m, uint32_t gen, uint32_t ctr,
			  uint8_t flags);
void dw__fabric_to_public(const struct member *m, dw_fabric_member *out);
void dw__fabric_emit_ev(dw_fabric *f, dw_fabric_event_type type, const struct member *m,
			bool decided);
void dw__fabric_emit(dw_fabric *f, dw_fabric_event_type type, const struct member *m);
void dw__fabric_emit_topo(dw_fabric *f, dw_fabric_event_type type, dw_fabric_topology from,
			  dw_fabric_topology to, uint32_t size, const char *reason);
void dw__fabric_set_state(dw_fabric *f, struct member *m, uint8_t state);
struct member *dw__fabric_merge(dw_fabric *f, const struct dw__wire_member *r,
				enum dw__merge_src src);
/* A sign of life from m at local time when (never moves evidence back). */
void dw__fabric_on_evidence(dw_fabric *f, struct member *m, uint64_t when);

/* ---- topology.c: groups, roles, topology ---- */

void dw__fabric_regroup(dw_fabric *f);
bool dw__fabric_is_monitored(dw_fabric *f, const struct member *m);
bool dw__fabric_is_target(dw_fabric *f, const struct member *m, bool *ack_req);
uint32_t dw__fabric_topo_max(const dw_fabric_limits *l, dw_fabric_topology t);
void dw__fabric_adopt_topology(dw_fabric *f, uint32_t epoch, dw_fabric_topology t);
/* After a count change: recommend or (coordinator only) switch the topology. */
void dw__fabric_coordinate(dw_fabric *f);

/* ---- send.c: dissemination and packets ---- */

/* Let the record of id ride on the next DW__DISSEM_ROUNDS rounds of packets. */
void dw__fabric_enqueue(dw_fabric *f, uint64_t id);
/* One heartbeat round done: age the dissemination queue. */
void dw__fabric_pend_round(dw_fabric *f);
void dw__fabric_send_status(dw_fabric *f, const struct member *to, uint8_t type, uint8_t flags,
			    const struct member *extra);
void dw__fabric_send_status_addr(dw_fabric *f, const dw_fabric_addr *to, uint8_t type,
				 const struct member *extra);
void dw__fabric_send_evid_req(dw_fabric *f, const struct member *helper, uint64_t subject);
/* Answer an EVID_REQ: the age of my last sign of life from subject. */
void dw__fabric_answer_evid(dw_fabric *f, const dw_fabric_addr *from, uint64_t subject);
void dw__fabric_flush_urgent(dw_fabric *f);
void dw__fabric_schedule_urgent(dw_fabric *f);
void dw__fabric_send_join(dw_fabric *f, const dw_fabric_addr *to);
void dw__fabric_send_sync_req(dw_fabric *f);
void dw__fabric_send_page(dw_fabric *f, const dw_fabric_addr *to, uint8_t type, uint64_t joiner,
			  uint32_t offset, const struct dw__wire_join_result *jr);
void dw__fabric_fill_result(dw_fabric *f, struct dw__wire_join_result *jr, uint8_t status);
void dw__fabric_send_redirect(dw_fabric *f, const dw_fabric_addr *to, const struct member *m);

/* ---- detect.c: timers ---- */

/* Every entry point calls this first: a gap past H/2 moves every removal clock forward. */
void dw__fabric_note_run(dw_fabric *f, uint64_t now);

/* ---- metrics.c ---- */

extern const dw_scalable_ops dw__fabric_scalable_ops;

#endif
