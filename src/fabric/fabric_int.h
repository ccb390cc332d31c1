/* SPDX-License-Identifier: MIT */
/*
 * Fabric internals shared by fabric.c (protocol logic), wire.c (packet format and
 * authentication), sim.c (simulated network and clock) and the transports.
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

#endif
