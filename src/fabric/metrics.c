// SPDX-License-Identifier: MIT
/*
 * Fabric as a dw_scalable: metrics (members by state, messages and bytes, drops by reason,
 * topology, detection times), the live limits by name with their ranges, reconfiguration and
 * the backpressure state.
 *
 * Limits travel as an array of doubles in limit_descs order so a change of several at once is
 * validated together (dw_fabric_limits_validate() checks thresholds against maxima) and applied
 * in one dw_fabric_set_limits(), or not at all. Everything here goes through the public,
 * locking API of the handle.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fabric_int.h"

static const char *const drop_help = "packets dropped, by reason";

static int sc_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_fabric *f = self;
	dw_fabric_stats st;
	char labels[DW_FABRIC__DROP_COUNT][48];
	dw_metric m;

	dw_fabric_get_stats(f, &st);
#define EMIT(n, v, u, h, k)                                                                      \
	do {                                                                                     \
		m = (dw_metric){                                                                 \
			.name = (n), .value = (double)(v), .unit = (u), .help = (h), .kind = (k) \
		};                                                                               \
		fn(arg, &m);                                                                     \
	} while (0)
	EMIT("members_alive", st.alive, "", "members alive in this node's view", DW_METRIC_GAUGE);
	EMIT("members_suspect", st.suspect, "", "members suspected", DW_METRIC_GAUGE);
	EMIT("members_dead", st.dead, "", "removed members still remembered", DW_METRIC_GAUGE);
	EMIT("cluster_size", st.cluster_size, "", "live nodes in the cluster as counted here",
	     DW_METRIC_GAUGE);
	EMIT("topology", st.topology, "", "0 star, 1 mesh, 2 federated", DW_METRIC_GAUGE);
	EMIT("topology_epoch", st.epoch, "", "coordinated topology changes so far",
	     DW_METRIC_GAUGE);
	EMIT("leader", st.leader, "", "1 if this node is the hub or a group leader",
	     DW_METRIC_GAUGE);
	EMIT("sent_messages", st.sent_msgs, "messages", "datagrams sent", DW_METRIC_COUNTER);
	EMIT("sent_bytes", st.sent_bytes, "bytes", "bytes sent", DW_METRIC_COUNTER);
	EMIT("received_messages", st.recv_msgs, "messages", "authenticated datagrams received",
	     DW_METRIC_COUNTER);
	EMIT("received_bytes", st.recv_bytes, "bytes", "bytes received", DW_METRIC_COUNTER);
	EMIT("send_errors", st.send_errors, "", "sends the transport refused", DW_METRIC_COUNTER);
	EMIT("detections", st.detections, "", "removals this node decided", DW_METRIC_COUNTER);
	EMIT("detection_seconds", st.detect_ema_s, "seconds",
	     "EMA of silence before a removal this node decided", DW_METRIC_GAUGE);
#undef EMIT
	for (int d = 0; d < DW_FABRIC__DROP_COUNT; d++) {
		snprintf(labels[d], sizeof(labels[d]), "reason=\"%s\"",
			 dw_fabric_drop_name((dw_fabric_drop)d));
		m = (dw_metric){ .name = "dropped_packets",
				 .labels = labels[d],
				 .value = (double)st.dropped[d],
				 .unit = "packets",
				 .help = drop_help,
				 .kind = DW_METRIC_COUNTER };
		fn(arg, &m);
	}
	return 0;
}

struct limit_desc {
	const char *name;
	double min, max;
	const char *unit, *help;
};

static const struct limit_desc limit_descs[] = {
	{ "interval_seconds", 0.01, 3600, "seconds", "heartbeat interval H" },
	{ "missed", 1, 100, "", "K: removal after K*H without a sign of life" },
	{ "star_max", 2, 1000000, "", "most nodes a Star holds" },
	{ "mesh_max", 2, 1000000, "", "most nodes a Mesh holds" },
	{ "federated_max", 2, 6553500, "", "most nodes a Federated cluster holds" },
	{ "star_switch_at", 2, 1000000, "", "leave Star at this many nodes" },
	{ "mesh_switch_at", 2, 1000000, "", "leave Mesh at this many nodes" },
	{ "group_size", 2, 6553500, "", "Federated: members per group" },
	{ "hysteresis", 0, 0.5, "ratio", "switch back only below threshold*(1-hysteresis)" },
};

static void limits_to_array(const dw_fabric_limits *l, double *v)
{
	v[0] = (double)l->interval_ns / 1e9;
	v[1] = l->missed;
	v[2] = l->star_max;
	v[3] = l->mesh_max;
	v[4] = l->federated_max;
	v[5] = l->star_switch_at;
	v[6] = l->mesh_switch_at;
	v[7] = l->group_size;
	v[8] = l->hysteresis;
}

static void array_to_limits(const double *v, dw_fabric_limits *l)
{
	l->interval_ns = (uint64_t)llround(v[0] * 1e9);
	l->missed = (uint32_t)v[1];
	l->star_max = (uint32_t)v[2];
	l->mesh_max = (uint32_t)v[3];
	l->federated_max = (uint32_t)v[4];
	l->star_switch_at = (uint32_t)v[5];
	l->mesh_switch_at = (uint32_t)v[6];
	l->group_size = (uint32_t)v[7];
	l->hysteresis = v[8];
}

#define NLIMITS (sizeof(limit_descs) / sizeof(limit_descs[0]))

static int sc_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_fabric_limits l;
	double v[NLIMITS];

	dw_fabric_get_limits(self, &l);
	limits_to_array(&l, v);
	for (size_t i = 0; i < NLIMITS; i++) {
		dw_limit d = { .name = limit_descs[i].name,
			       .value = v[i],
			       .min = limit_descs[i].min,
			       .max = limit_descs[i].max,
			       .unit = limit_descs[i].unit,
			       .help = limit_descs[i].help };

		fn(arg, &d);
	}
	return 0;
}

static int sc_reconfigure(void *self, const dw_limit_change *changes, size_t n, char *err,
			  size_t errlen)
{
	dw_fabric_limits l;
	double v[NLIMITS];
	int rc;

	dw_fabric_get_limits(self, &l);
	limits_to_array(&l, v);
	for (size_t c = 0; c < n; c++) {
		size_t i;

		for (i = 0; i < NLIMITS; i++) {
			if (strcmp(changes[c].name, limit_descs[i].name) == 0)
				break;
		}
		if (i == NLIMITS) {
			snprintf(err, errlen, "fabric has no limit %s", changes[c].name);
			return DW_ELIMIT;
		}
		{
			dw_limit d = { .name = limit_descs[i].name,
				       .min = limit_descs[i].min,
				       .max = limit_descs[i].max };

			rc = dw_limit_check(&d, &changes[c], i != 0 && i != 8, err, errlen);
			if (rc < 0)
				return rc;
		}
		v[i] = changes[c].value;
	}
	array_to_limits(v, &l);
	return dw_fabric_set_limits(self, &l, err, errlen);
}

static dw_bp_state sc_state(void *self)
{
	dw_fabric_stats st;

	dw_fabric_get_stats(self, &st);
	if (st.suspect > 0 && st.suspect * 10 >= st.alive + st.suspect)
		return DW_BP_WARNING; /* a tenth of the view suspected: the network is struggling */
	return DW_BP_NORMAL;
}

const dw_scalable_ops dw__fabric_scalable_ops = {
	.metrics = sc_metrics,
	.limits = sc_limits,
	.reconfigure = sc_reconfigure,
	.state = sc_state,
};

const dw_scalable *dw_fabric_scalable(dw_fabric *f)
{
	return &f->scalable;
}
