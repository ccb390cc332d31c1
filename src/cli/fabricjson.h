/* SPDX-License-Identifier: MIT */
/*
 * The JSON documents of a fabric node, shared by `dwscale fabric agent --http` and
 * `dwscale serve` with a [fabric] section, so both answer the same two endpoints alike:
 *
 *   GET /v1/fabric/nodes   {"topology": "mesh", "epoch": N, "cluster_size": N,
 *                           "nodes": [member, ...]}                 (self first)
 *   GET /v1/fabric/events  [event, ...]                             (oldest first)
 *
 *   member  {"id": "<16 hex>", "addr": "A.B.C.D:PORT", "state": "alive", "generation": N,
 *            "counter": N, "leader": bool, "group": N}
 *   event   {"t": seconds (monotonic), "event": "added", "member": member, "cluster_size": N}
 *           or, for switch_recommended, switched and join_refused, "from", "to" and "reason"
 *           instead of "member". A "removed" event adds "decided" (this node timed the member
 *           out itself, rather than learning it from another) and "last_heard" (seconds on the
 *           same clock as "t": its last sign of life here, or null if none ever came).
 *
 * The events endpoint shows the last DW__FABRIC_EVENTS_KEPT events, kept as rendered lines in a
 * ring: the node's event callback runs under the node's lock and must not block, so it renders
 * one small line and swaps it into the ring under the ring's own short lock; readers copy the
 * lines out under that lock and never call into the node while holding it.
 */
#ifndef DWSCALE_CLI_FABRICJSON_H
#define DWSCALE_CLI_FABRICJSON_H

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include "cli/cli.h"
#include "dwscale/fabric.h"

#define DW__FABRIC_EVENTS_KEPT 256   /* recent events answered by GET /v1/fabric/events */
#define DW__FABRIC_MEMBERS_MAX 20000 /* members listed by GET /v1/fabric/nodes, at most */

struct dw__fabric_events {
	pthread_mutex_t lock;
	char *ring[DW__FABRIC_EVENTS_KEPT]; /* protected by lock; cJSON-allocated lines */
	size_t next;			    /* protected by lock: events added so far */
};

void dw__fabric_events_init(struct dw__fabric_events *r);
/* Free the lines. No thread may be adding or rendering. */
void dw__fabric_events_release(struct dw__fabric_events *r);

/*
 * Render ev as one line and keep it (the oldest line goes when the ring is full). With echo
 * non-NULL the line is also written there, followed by a newline, and flushed. Safe to call from
 * a fabric event callback. -ENOMEM if the line could not be rendered (the event is then lost
 * from the ring only).
 */
int dw__fabric_events_add(struct dw__fabric_events *r, const dw_fabric_event *ev, FILE *echo);

/* Append the events document to out. DW_ETOOBIG past out's cap, -ENOMEM. */
int dw__fabric_events_render(struct dw__fabric_events *r, struct dw__sbuf *out);

/* Append the nodes document of f to out. DW_ETOOBIG past out's cap, -ENOMEM. */
int dw__fabric_nodes_render(dw_fabric *f, struct dw__sbuf *out);

#endif
