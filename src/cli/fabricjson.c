// SPDX-License-Identifier: MIT
/*
 * The fabric node's JSON documents and its ring of recent events (see fabricjson.h for the
 * documents). One implementation serves the agent's --http endpoints and `dwscale serve`, so a
 * script reading /v1/fabric/nodes need not care which of the two it asks.
 *
 * Threads and locking: dw__fabric_events_add runs on the fabric's thread inside the node's event
 * callback (under the node's lock); renderers run on HTTP threads. The ring's lock guards ring[]
 * and next only; it is never held while calling into the node or allocating anything large, so
 * the lock order node -> ring can never be reversed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/fabricjson.h"
#include "dwscale/core.h"

void dw__fabric_events_init(struct dw__fabric_events *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
}

void dw__fabric_events_release(struct dw__fabric_events *r)
{
	for (size_t i = 0; i < DW__FABRIC_EVENTS_KEPT; i++) {
		cJSON_free(r->ring[i]);
		r->ring[i] = NULL;
	}
	pthread_mutex_destroy(&r->lock);
}

static cJSON *member_json(const dw_fabric_member *m)
{
	cJSON *o = cJSON_CreateObject();
	char id[24], addr[32];

	if (!o)
		return NULL;
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)m->id);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "addr", dw_fabric_addr_format(&m->addr, addr, sizeof(addr)));
	cJSON_AddStringToObject(o, "state", dw_fabric_state_name(m->state));
	cJSON_AddNumberToObject(o, "generation", m->generation);
	cJSON_AddNumberToObject(o, "counter", m->counter);
	cJSON_AddBoolToObject(o, "leader", m->leader);
	cJSON_AddNumberToObject(o, "group", m->group);
	return o;
}

int dw__fabric_events_add(struct dw__fabric_events *r, const dw_fabric_event *ev, FILE *echo)
{
	cJSON *o = cJSON_CreateObject();
	char *line, *old;

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "t", (double)ev->now_ns / 1e9);
	cJSON_AddStringToObject(o, "event", dw_fabric_event_name(ev->type));
	if (ev->type == DW_FABRIC_EV_SWITCHED || ev->type == DW_FABRIC_EV_SWITCH_RECOMMENDED ||
	    ev->type == DW_FABRIC_EV_JOIN_REFUSED) {
		cJSON_AddStringToObject(o, "from", dw_fabric_topology_name(ev->from));
		cJSON_AddStringToObject(o, "to", dw_fabric_topology_name(ev->to));
		if (ev->reason)
			cJSON_AddStringToObject(o, "reason", ev->reason);
	} else {
		cJSON_AddItemToObject(o, "member", member_json(&ev->member));
	}
	if (ev->type == DW_FABRIC_EV_REMOVED) {
		/* t - last_heard is the silence this node saw: K*H to K*H + H/2 if it decided */
		cJSON_AddBoolToObject(o, "decided", ev->decided);
		if (ev->last_heard_ns)
			cJSON_AddNumberToObject(o, "last_heard", (double)ev->last_heard_ns / 1e9);
		else
			cJSON_AddNullToObject(o, "last_heard");
	}
	cJSON_AddNumberToObject(o, "cluster_size", ev->cluster_size);
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		return -ENOMEM;
	if (echo) {
		fprintf(echo, "%s\n", line);
		fflush(echo);
	}
	pthread_mutex_lock(&r->lock);
	old = r->ring[r->next % DW__FABRIC_EVENTS_KEPT];
	r->ring[r->next % DW__FABRIC_EVENTS_KEPT] = line;
	r->next++;
	pthread_mutex_unlock(&r->lock);
	cJSON_free(old);
	return 0;
}

int dw__fabric_events_render(struct dw__fabric_events *r, struct dw__sbuf *out)
{
	size_t first;
	bool any = false;
	int rc;

	rc = dw__sb_puts(out, "[");
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&r->lock);
	first = r->next > DW__FABRIC_EVENTS_KEPT ? r->next - DW__FABRIC_EVENTS_KEPT : 0;
	for (size_t i = first; i < r->next && rc == 0; i++) {
		rc = dw__sb_printf(out, "%s\n%s", any ? "," : "",
				   r->ring[i % DW__FABRIC_EVENTS_KEPT]);
		any = true;
	}
	pthread_mutex_unlock(&r->lock);
	if (rc == 0)
		rc = dw__sb_puts(out, "]\n");
	return rc;
}

int dw__fabric_nodes_render(dw_fabric *f, struct dw__sbuf *out)
{
	dw_fabric_member *ms = dw_calloc(DW__FABRIC_MEMBERS_MAX, sizeof(*ms));
	dw_fabric_stats st;
	cJSON *o = NULL, *arr;
	char *text = NULL;
	size_t n = 0;
	int rc;

	if (!ms)
		return -ENOMEM;
	rc = dw_fabric_members(f, ms, DW__FABRIC_MEMBERS_MAX, &n);
	if (rc < 0)
		goto out;
	dw_fabric_get_stats(f, &st);
	rc = -ENOMEM;
	o = cJSON_CreateObject();
	if (!o)
		goto out;
	cJSON_AddStringToObject(o, "topology", dw_fabric_topology_name(st.topology));
	cJSON_AddNumberToObject(o, "epoch", st.epoch);
	cJSON_AddNumberToObject(o, "cluster_size", st.cluster_size);
	arr = cJSON_AddArrayToObject(o, "nodes");
	if (!arr)
		goto out;
	for (size_t i = 0; i < n && i < DW__FABRIC_MEMBERS_MAX; i++) {
		cJSON *m = member_json(&ms[i]);

		if (!m || !cJSON_AddItemToArray(arr, m)) {
			cJSON_Delete(m);
			goto out;
		}
	}
	text = cJSON_Print(o);
	if (!text)
		goto out;
	rc = dw__sb_puts(out, text);
	if (rc == 0)
		rc = dw__sb_puts(out, "\n");
out:
	cJSON_free(text);
	cJSON_Delete(o);
	dw_free(ms);
	return rc;
}
