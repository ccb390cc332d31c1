/* SPDX-License-Identifier: MIT */
/*
 * dwscale fabric: authenticated heartbeat membership over UDP (or a simulated network).
 *
 * A fabric node keeps a view of the cluster's members. Nodes exchange small authenticated
 * packets (heartbeats, acks, joins, member updates, topology changes); a node that shows no sign
 * of life for K heartbeat intervals H is suspected, then removed. The topology (Star, Mesh,
 * Federated) decides who heartbeats whom; when the cluster grows past a switch threshold the
 * fabric either switches topology cluster-wide (mode auto) or raises a recommendation event once
 * per crossing (mode recommend).
 *
 * The node is a state machine driven from outside: feed it received packets with
 * dw_fabric_receive() and call dw_fabric_tick() at (or after) the deadline it returns. It sends
 * through the transport vtable and reports changes through the event callback, so the same code
 * runs over UDP (dw_fabric_udp_*) and over the deterministic simulator (dw_fabric_sim_run).
 *
 * Threads: every dw_fabric_* call on one handle takes the handle's lock, so calls from several
 * threads are safe. The event callback and transport send run under that lock: they must not
 * block and must not call back into the same handle.
 */
#ifndef DWSCALE_FABRIC_H
#define DWSCALE_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "scalable.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- keys ---------------------------------------------------------------------------------- */

#define DW_FABRIC_KEY_LEN  32 /* HMAC-SHA256 key bytes */
#define DW_FABRIC_MAX_KEYS 8  /* a few keys in rotation at once is all rotation needs */

typedef struct dw_fabric_key {
	uint32_t id; /* non-zero; carried in each packet so the receiver picks the key */
	uint8_t secret[DW_FABRIC_KEY_LEN];
} dw_fabric_key;

/* keys[0] is the primary (send) key; all n keys are accepted on receive. */
typedef struct dw_fabric_keyring {
	dw_fabric_key keys[DW_FABRIC_MAX_KEYS];
	size_t n;
} dw_fabric_keyring;

/* A fresh random key with a random non-zero id. */
int dw_fabric_key_generate(dw_fabric_key *out);
/* "<id> <64 hex>" plus NUL into buf; DW_ETOOBIG if cap is too small. */
int dw_fabric_key_format(const dw_fabric_key *k, char *buf, size_t cap);
/*
 * Parse a key file: one key per line "<id> <64 hex digits>", '#' comments and blank lines
 * ignored; the first key is the primary. DW_EBADKEY with a reason in err on any bad line,
 * duplicate id, zero id, no key, or more than DW_FABRIC_MAX_KEYS keys.
 */
int dw_fabric_keyring_parse(const char *text, dw_fabric_keyring *out, char *err, size_t errlen);
int dw_fabric_keyring_load(const char *path, dw_fabric_keyring *out, char *err, size_t errlen);

/* ---- addresses ----------------------------------------------------------------------------- */

/* An IPv4 endpoint, host byte order. (The wire format has an address family byte for later.) */
typedef struct dw_fabric_addr {
	uint32_t ip;
	uint16_t port;
} dw_fabric_addr;

/* "A.B.C.D:PORT"; DW_EUSAGE if malformed. */
int dw_fabric_addr_parse(const char *s, dw_fabric_addr *out);
/* "A.B.C.D:PORT" into buf (22 bytes are always enough). */
char *dw_fabric_addr_format(const dw_fabric_addr *a, char *buf, size_t cap);

/* ---- topology, members, events ------------------------------------------------------------- */

typedef enum dw_fabric_topology {
	DW_FABRIC_STAR = 0,	 /* one hub; leaves heartbeat the hub, the hub acks */
	DW_FABRIC_MESH = 1,	 /* every node heartbeats every other */
	DW_FABRIC_FEDERATED = 2, /* groups with leaders; members <-> leader, leader <-> leader */
} dw_fabric_topology;

typedef enum dw_fabric_mode {
	DW_FABRIC_MODE_AUTO = 0,      /* switch the whole cluster when a threshold is crossed */
	DW_FABRIC_MODE_RECOMMEND = 1, /* only raise DW_FABRIC_EV_SWITCH_RECOMMENDED */
} dw_fabric_mode;

typedef enum dw_fabric_state {
	DW_FABRIC_ALIVE = 0,
	DW_FABRIC_SUSPECT = 1,
	DW_FABRIC_DEAD = 2,
} dw_fabric_state;

const char *dw_fabric_topology_name(dw_fabric_topology t);
int dw_fabric_topology_parse(const char *s, dw_fabric_topology *out);
const char *dw_fabric_mode_name(dw_fabric_mode m);
int dw_fabric_mode_parse(const char *s, dw_fabric_mode *out);
const char *dw_fabric_state_name(dw_fabric_state s);

typedef struct dw_fabric_member {
	uint64_t id;
	uint32_t generation; /* raised when the node restarts */
	uint32_t counter;    /* raised when the node refutes a suspicion or changes its record */
	dw_fabric_state state;
	dw_fabric_addr addr;
	bool leader; /* hub (Star) or group leader (Federated) */
	uint16_t group;
} dw_fabric_member;

typedef enum dw_fabric_event_type {
	DW_FABRIC_EV_ADDED = 0,
	DW_FABRIC_EV_SUSPECT = 1,
	DW_FABRIC_EV_REMOVED = 2,
	DW_FABRIC_EV_UPDATED = 3, /* newer incarnation or changed record of a known member */
	DW_FABRIC_EV_SWITCH_RECOMMENDED = 4,
	DW_FABRIC_EV_SWITCHED = 5,
	DW_FABRIC_EV_JOIN_REFUSED = 6, /* our own join was refused; reason says why */
	DW_FABRIC_EV_ALIVE = 7,	       /* a suspected member was cleared */
} dw_fabric_event_type;

const char *dw_fabric_event_name(dw_fabric_event_type t);

typedef struct dw_fabric_event {
	dw_fabric_event_type type;
	uint64_t now_ns;
	dw_fabric_member member;     /* ADDED, SUSPECT, REMOVED, UPDATED, ALIVE */
	dw_fabric_topology from, to; /* SWITCH_RECOMMENDED, SWITCHED */
	uint32_t cluster_size;	     /* this node's count of live members */
	uint64_t last_heard_ns;	     /* REMOVED: this node's last sign of life from it (0: never) */
	bool decided; /* REMOVED: this node decided it (a monitor), else it learnt it from one */
	const char *reason; /* JOIN_REFUSED, SWITCH_*: one line */
} dw_fabric_event;

typedef void (*dw_fabric_event_fn)(void *arg, const dw_fabric_event *ev);

/* Sends one datagram. Returns 0 or a negative code; a failed send counts as a lost packet. */
typedef struct dw_fabric_transport {
	int (*send)(void *ctx, const dw_fabric_addr *to, const void *buf, size_t len);
	void *ctx;
} dw_fabric_transport;

/* ---- limits -------------------------------------------------------------------------------- */

typedef struct dw_fabric_limits {
	uint64_t interval_ns;	 /* H: heartbeat interval (15 s) */
	uint32_t missed;	 /* K: a node is removed after K*H without sign of life (3) */
	uint32_t star_max;	 /* most nodes a Star may hold (1000) */
	uint32_t mesh_max;	 /* (500) */
	uint32_t federated_max;	 /* (10000) */
	uint32_t star_switch_at; /* leave Star when the cluster reaches this size (800) */
	uint32_t mesh_switch_at; /* leave Mesh at this size (400) */
	uint32_t group_size;	 /* Federated: target members per group (100) */
	double hysteresis;	 /* switch back only below threshold * (1 - hysteresis) (0.1) */
} dw_fabric_limits;

void dw_fabric_limits_default(dw_fabric_limits *l);
/*
 * Check a set of limits as a whole: ranges, each threshold within its topology's max, and every
 * threshold has a topology to switch to that holds that many nodes without crossing its own
 * threshold (no switch cycle). DW_ELIMIT with a one-line reason in err.
 */
int dw_fabric_limits_validate(const dw_fabric_limits *l, char *err, size_t errlen);

/* ---- the node ------------------------------------------------------------------------------ */

typedef struct dw_fabric dw_fabric;

typedef struct dw_fabric_config {
	uint64_t node_id;    /* stable, non-zero */
	uint32_t generation; /* must grow across restarts (e.g. wall-clock seconds at start) */
	dw_fabric_addr addr; /* where peers reach this node */
	dw_fabric_keyring keyring;
	dw_fabric_topology topology; /* used when bootstrapping a new cluster */
	dw_fabric_mode mode;
	dw_fabric_limits limits;
	const dw_clock *clock; /* NULL: real clock */
	dw_fabric_transport transport;
	dw_fabric_event_fn on_event; /* may be NULL */
	void *event_arg;
	uint64_t seed; /* randomness for helper choice and timer phase; 0 derives one from id */
} dw_fabric_config;

void dw_fabric_config_default(dw_fabric_config *cfg);

int dw_fabric_open(const dw_fabric_config *cfg, dw_fabric **out);
void dw_fabric_close(dw_fabric *f);

/*
 * Join through any of the seeds (tried in turn until one answers). With n == 0 the node starts a
 * new cluster of its own. The result comes as events (ADDED for members learned, JOIN_REFUSED).
 */
int dw_fabric_join(dw_fabric *f, const dw_fabric_addr *seeds, size_t n);

/* Feed one received datagram. Bad packets are dropped and counted; returns 0 or the drop code. */
int dw_fabric_receive(dw_fabric *f, const dw_fabric_addr *from, const void *buf, size_t len);

/* Run due timers; returns the clock time (ns) at which it next needs to run. */
uint64_t dw_fabric_tick(dw_fabric *f);

/* Copy up to cap members of the view (self first); *n gets the total. */
int dw_fabric_members(dw_fabric *f, dw_fabric_member *out, size_t cap, size_t *n);
uint32_t dw_fabric_cluster_size(dw_fabric *f);
dw_fabric_topology dw_fabric_current_topology(dw_fabric *f);
/* Apply new limits (validated as a whole first). */
int dw_fabric_set_limits(dw_fabric *f, const dw_fabric_limits *l, char *err, size_t errlen);
void dw_fabric_get_limits(dw_fabric *f, dw_fabric_limits *out);
/*
 * Replace the keyring live: packets are sent with ring->keys[0] from the next one on, and the
 * ring's keys are all that is accepted. Rotation without downtime, in three rolling steps over
 * the nodes: add the new key as accepted ([old, new]), then make it primary ([new, old]), then
 * drop the old one ([new]); each step reaches every node before the next begins. DW_EBADKEY on
 * an empty ring, more than DW_FABRIC_MAX_KEYS keys or a zero id; the old ring stays then.
 */
int dw_fabric_set_keyring(dw_fabric *f, const dw_fabric_keyring *ring);
/* The fabric as a scalable subsystem, named "fabric"; valid while f is open. */
const dw_scalable *dw_fabric_scalable(dw_fabric *f);

/* Drop reasons counted by the node. */
typedef enum dw_fabric_drop {
	DW_FABRIC_DROP_MALFORMED = 0, /* truncated, bad magic, bad lengths */
	DW_FABRIC_DROP_VERSION,	      /* unknown protocol version */
	DW_FABRIC_DROP_UNKNOWN_KEY,   /* key id not in the keyring */
	DW_FABRIC_DROP_AUTH,	      /* MAC mismatch: tampered or wrong key */
	DW_FABRIC_DROP_REPLAY,	      /* sequence already seen or too old */
	DW_FABRIC_DROP_SELF,	      /* our own id from elsewhere */
	DW_FABRIC_DROP_INJECTED,      /* --drop-rate / simulated loss on receive */
	DW_FABRIC__DROP_COUNT
} dw_fabric_drop;

const char *dw_fabric_drop_name(dw_fabric_drop d);

typedef struct dw_fabric_stats {
	uint64_t sent_msgs, sent_bytes, recv_msgs, recv_bytes;
	uint64_t dropped[DW_FABRIC__DROP_COUNT];
	uint64_t send_errors;
	uint32_t alive, suspect, dead; /* in this node's view, self included in alive */
	uint32_t cluster_size;
	dw_fabric_topology topology;
	uint32_t epoch;
	bool leader;
	uint64_t detections; /* removals this node decided itself */
	double detect_ema_s; /* EMA of (removal - last evidence) */
} dw_fabric_stats;

void dw_fabric_get_stats(dw_fabric *f, dw_fabric_stats *out);

/* ---- UDP transport ------------------------------------------------------------------------- */

/*
 * One IPv4 UDP socket driving one node. drop_rate (0..1) discards that share of datagrams in
 * and out, for loss tests (seeded by seed). Used by one thread.
 */
typedef struct dw_fabric_udp dw_fabric_udp;

int dw_fabric_udp_open(const dw_fabric_addr *bind_addr, double drop_rate, uint64_t seed,
		       dw_fabric_udp **out);
void dw_fabric_udp_close(dw_fabric_udp *u);
/* The transport to put in dw_fabric_config before dw_fabric_open(). */
dw_fabric_transport dw_fabric_udp_transport(dw_fabric_udp *u);
int dw_fabric_udp_fd(dw_fabric_udp *u);
/* Datagrams discarded by the drop rate, both ways. */
uint64_t dw_fabric_udp_dropped(dw_fabric_udp *u);
/* Feed every datagram waiting on the socket to f; returns how many, or a negative code. */
int dw_fabric_udp_pump(dw_fabric_udp *u, dw_fabric *f);
/* Tick and pump until *stop is true (checked at least every 100 ms). */
int dw_fabric_udp_run(dw_fabric_udp *u, dw_fabric *f, const _Atomic bool *stop,
		      const dw_clock *clock);

/* ---- simulator ----------------------------------------------------------------------------- */

/*
 * A deterministic cluster in one process: N fabric nodes over a simulated network (latency,
 * loss) and a virtual clock. The same config and seed give the same trace hash.
 */
typedef struct dw_fabric_sim_config {
	uint32_t nodes;
	dw_fabric_topology topology;
	dw_fabric_mode mode;
	dw_fabric_limits limits;
	uint64_t seconds;	/* simulated duration */
	double loss;		/* share of packets lost on every link, 0..1 */
	uint32_t kill;		/* nodes killed at fault time */
	uint32_t pause;		/* nodes paused at fault time ... */
	uint64_t pause_ns;	/* ... for this long */
	uint32_t restart;	/* nodes killed at fault time and restarted after 2*K*H */
	uint32_t grow_to;	/* add nodes one by one up to this count */
	uint64_t grow_every_ns; /* time between two joins while growing (1 s) */
	uint64_t fault_at_ns;	/* when faults happen (0: after 4*K*H of warm-up) */
	uint64_t latency_ns;	/* one-way base latency (1 ms); jitter up to the same again */
	uint64_t seed;
	bool trace_events; /* print every membership event to stderr */
} dw_fabric_sim_config;

void dw_fabric_sim_config_default(dw_fabric_sim_config *c);

typedef struct dw_fabric_sim_result {
	uint64_t trace_hash;
	uint64_t removals;	 /* removal events over all observers */
	uint64_t false_removals; /* removal of a node that was up (or paused < K*H) */
	uint64_t detections;	 /* (observer, victim) removals of nodes that were down */
	double detect_min_s, detect_p50_s, detect_p99_s, detect_max_s; /* from last sign of life */
	uint64_t detections_outside_window; /* outside [K*H, K*H + H/2] */
	uint64_t missed_detections;	    /* observers that never removed a killed node */
	uint64_t relayed_removals;	    /* removals by nodes that never heard from the victim */
	double relayed_max_s;	  /* their latest, from the victim's last delivered packet */
	double convergence_s;	  /* last change until all views agree; -1 if never */
	uint32_t switches;	  /* coordinated switches (mode auto) */
	uint32_t recommendations; /* recommendation events one node raised (mode recommend) */
	char switch_log[512];	  /* "star->federated@800 ..." */
	/* per node per interval, sent + received, by role */
	double msgs_leaf, msgs_hub, msgs_mesh, msgs_member, msgs_leader;
	double bytes_leaf, bytes_hub, bytes_mesh, bytes_member, bytes_leader;
	double expect_leaf, expect_hub, expect_mesh, expect_member, expect_leader;
	uint32_t final_nodes, final_alive_views_agree;
	uint32_t final_size_min, final_size_max; /* cluster size as the running nodes count it */
	dw_fabric_topology final_topology;
	uint64_t packets, dropped_auth, dropped_replay;
	uint64_t rejoined; /* restarted nodes back in every live view */
	double wall_s;
	uint64_t peak_rss_kb;
} dw_fabric_sim_result;

int dw_fabric_sim_run(const dw_fabric_sim_config *cfg, dw_fabric_sim_result *out);

#ifdef __cplusplus
}
#endif
#endif
