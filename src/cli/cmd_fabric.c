// SPDX-License-Identifier: MIT
/*
 * dwscale fabric: keygen, agent, members, sim.
 *
 *   keygen   prints a new cluster key line ("<id> <64 hex>") or writes it to a file (0600,
 *            through a temporary file renamed into place).
 *   agent    runs one fabric node on UDP; membership events go to stdout as JSON lines, and with
 *            --http the node answers GET /v1/fabric/nodes and /v1/fabric/events.
 *   members  asks an agent's --http endpoint for its view.
 *   sim      runs the deterministic simulator and prints its measures (or one JSON document).
 *
 * Threads and locking (agent): the main thread runs the node (dw_fabric_udp_run) and prints
 * events from the node's callback; libmicrohttpd's thread answers HTTP by calling the node's
 * thread-safe queries and reading the event ring (fabricjson.c, which has its own lock). The
 * documents are the ones `dwscale serve` answers with a [fabric] section. Signals only set the
 * atomic stop flag.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "cli/cli.h"
#include "cli/fabricjson.h"
#include "dwscale/fabric.h"

/* "15s", "500ms", "2m", "1h" or plain seconds; 0 < d <= 1 day. */
static int parse_dur(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end), mul = 1e9;

	if (end == s || !(v > 0))
		return -1;
	if (strcmp(end, "ms") == 0)
		mul = 1e6;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1e9;
	else if (strcmp(end, "m") == 0)
		mul = 60e9;
	else if (strcmp(end, "h") == 0)
		mul = 3600e9;
	else
		return -1;
	if (v * mul > 86400e9)
		return -1;
	*out = (uint64_t)llround(v * mul);
	return 0;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* The usage error for what getopt_long (optstring ":") returned: a missing value or an unknown
 * option. */
static int opt_error(int opt, char **argv)
{
	if (opt == ':')
		return dw__usage_error("fabric", "%s needs a value", argv[optind - 1]);
	return dw__usage_error("fabric", "unknown option %s", argv[optind - 1]);
}

/*
 * The options agent and sim share (--topology, --mode, --interval, --missed): 0 if opt was one
 * of them and is set, the usage error's exit code if its value is bad, -1 if it is not one.
 */
static int shared_opt(int opt, const char *arg, dw_fabric_topology *topology, dw_fabric_mode *mode,
		      dw_fabric_limits *l)
{
	switch (opt) {
	case 't':
		if (dw_fabric_topology_parse(arg, topology) < 0)
			return dw__usage_error("fabric", "--topology is star, mesh or federated");
		return 0;
	case 'm':
		if (dw_fabric_mode_parse(arg, mode) < 0)
			return dw__usage_error("fabric", "--mode is auto or recommend");
		return 0;
	case 'i':
		if (parse_dur(arg, &l->interval_ns) < 0)
			return dw__usage_error("fabric", "--interval takes a duration (15s)");
		return 0;
	case 'K':
		if (parse_u32(arg, 1, 100, &l->missed) < 0)
			return dw__usage_error("fabric", "--missed takes 1..100");
		return 0;
	}
	return -1;
}

static int parse_prob(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0 && v < 1))
		return -1;
	*out = v;
	return 0;
}

/* ---- keygen -----------------------------------------------------------------------------------
 */

static int cmd_keygen(int argc, char **argv)
{
	dw_fabric_key k;
	char line[128], tmp[4096];
	const char *path = NULL;
	int fd = -1, rc;

	for (int i = 2; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc)
			path = argv[++i];
		else
			return dw__usage_error("fabric", "keygen takes only [-o FILE]");
	}
	rc = dw_fabric_key_generate(&k);
	if (rc == 0)
		rc = dw_fabric_key_format(&k, line, sizeof(line));
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: cannot make a key: %s\n", dw_strerror(rc));
		return DW_EXIT_ERROR;
	}
	if (!path) {
		printf("%s\n", line);
		return DW_EXIT_OK;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return dw__usage_error("fabric", "path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "dwscale fabric: cannot create %s: %s\n", tmp, strerror(errno));
		return DW_EXIT_ERROR;
	}
	strcat(line, "\n");
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "dwscale fabric: cannot write %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return DW_EXIT_ERROR;
	}
	memset(line, 0, sizeof(line));
	fprintf(stderr, "wrote key %u to %s\n", k.id, path);
	return DW_EXIT_OK;
}

/* ---- agent ------------------------------------------------------------------------------------
 */

static atomic_bool agent_stop, agent_reload, agent_wake;

/* SIGTERM and SIGINT stop the agent, SIGHUP reloads its key file; either wakes the node loop. */
static void on_signal(int sig)
{
	atomic_store_explicit(sig == SIGHUP ? &agent_reload : &agent_stop, true,
			      memory_order_relaxed);
	atomic_store_explicit(&agent_wake, true, memory_order_relaxed);
}

/* Re-read the key file into the running node; on any error the node keeps the keys it has. */
static void agent_reload_keys(dw_fabric *f, const char *key_file)
{
	dw_fabric_keyring ring;
	char err[256];
	int rc = dw_fabric_keyring_load(key_file, &ring, err, sizeof(err));

	if (rc == 0)
		rc = dw_fabric_set_keyring(f, &ring);
	if (rc < 0)
		fprintf(stderr, "dwscale fabric: keys not reloaded, the old ones stay: %s\n",
			rc == DW_EBADKEY && err[0] ? err : dw_strerror(rc));
	else
		fprintf(stderr,
			"dwscale fabric: reloaded %zu key(s) from %s, sending with key %u\n",
			ring.n, key_file, ring.keys[0].id);
	explicit_bzero(&ring, sizeof(ring));
}

/*
 * A stable default id: the same --bind gives the same id, so a restarted agent comes back as
 * the same member with a higher generation. Addresses are unique within a cluster.
 */
static uint64_t agent_default_id(const dw_fabric_addr *a)
{
	uint64_t z = ((uint64_t)a->ip << 16 | a->port) + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}

struct agent {
	dw_fabric *f;
	struct dw__fabric_events events;
};

/* Each event goes to stdout as a JSON line and into the ring behind GET /v1/fabric/events. */
static void agent_event(void *arg, const dw_fabric_event *ev)
{
	struct agent *a = arg;

	dw__fabric_events_add(&a->events, ev, stdout);
}

static enum MHD_Result on_http(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	struct MHD_Response *resp;
	struct dw__sbuf b;
	enum MHD_Result ret;
	unsigned status = 200;
	char *body = NULL;
	size_t len = 0;
	int rc = 0;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	dw__sb_init(&b, DW_HTTP_CLIENT_BODY_MAX);
	if (strcmp(method, "GET") != 0)
		status = 405;
	else if (strcmp(url, "/v1/fabric/nodes") == 0)
		rc = dw__fabric_nodes_render(a->f, &b);
	else if (strcmp(url, "/v1/fabric/events") == 0)
		rc = dw__fabric_events_render(&a->events, &b);
	else
		status = 404;
	if (status == 200 && rc == 0)
		body = dw__sb_steal(&b, &len);
	dw__sb_free(&b);
	if (!body) {
		static char msg[] = "{\"error\":\"not found\"}\n";

		if (status == 200)
			status = 500;
		resp = MHD_create_response_from_buffer(strlen(msg), msg, MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer_with_free_callback(len, body, dw_free);
	}
	if (!resp) {
		dw_free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int split_seeds(char *list, dw_fabric_addr *out, size_t cap, size_t *n)
{
	char *save = NULL;

	*n = 0;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (*n == cap || dw_fabric_addr_parse(tok, &out[*n]) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

static int cmd_agent(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "join", required_argument, NULL, 'j' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "topology", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "interval", required_argument, NULL, 'i' },
		{ "missed", required_argument, NULL, 'K' },
		{ "node-id", required_argument, NULL, 'n' },
		{ "http", required_argument, NULL, 'h' },
		{ "drop-rate", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	dw_fabric_config cfg;
	dw_fabric_addr seeds[16], http_addr = { 0, 0 };
	size_t nseeds = 0;
	const char *key_file = NULL;
	double drop_rate = 0;
	bool have_bind = false, have_http = false;
	dw_fabric_udp *u = NULL;
	struct MHD_Daemon *mhd = NULL;
	struct agent a;
	char err[256];
	struct sigaction sa;
	int c, rc, ret = DW_EXIT_ERROR;

	memset(&a, 0, sizeof(a));
	dw__fabric_events_init(&a.events);
	dw_fabric_config_default(&cfg);
	optind = 2;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (dw_fabric_addr_parse(optarg, &cfg.addr) < 0)
				return dw__usage_error("fabric", "--bind takes A.B.C.D:PORT");
			have_bind = true;
			break;
		case 'j':
			if (split_seeds(optarg, seeds, 16, &nseeds) < 0)
				return dw__usage_error(
					"fabric", "--join takes A.B.C.D:PORT[,...] (16 at most)");
			break;
		case 'k':
			key_file = optarg;
			break;
		case 'n': {
			char *end;

			errno = 0;
			cfg.node_id = strtoull(optarg, &end, 0);
			if (errno || *end || optarg[0] == '-' || cfg.node_id == 0)
				return dw__usage_error("fabric",
						       "--node-id takes a non-zero number");
			break;
		}
		case 'h':
			if (dw_fabric_addr_parse(optarg, &http_addr) < 0)
				return dw__usage_error("fabric", "--http takes A.B.C.D:PORT");
			have_http = true;
			break;
		case 'd':
			if (parse_prob(optarg, &drop_rate) < 0)
				return dw__usage_error("fabric", "--drop-rate takes 0 <= P < 1");
			break;
		default:
			rc = shared_opt(c, optarg, &cfg.topology, &cfg.mode, &cfg.limits);
			if (rc != 0)
				return rc > 0 ? rc : opt_error(c, argv);
		}
	}
	if (optind < argc) /* options only: a word left over is a value missing its --flag */
		return dw__usage_error("fabric", "unexpected argument '%s'", argv[optind]);
	if (!have_bind || !key_file)
		return dw__usage_error("fabric", "agent needs --bind and --key-file");
	rc = dw_fabric_keyring_load(key_file, &cfg.keyring, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: %s\n", err);
		return DW_EXIT_USAGE;
	}
	rc = dw_fabric_limits_validate(&cfg.limits, err, sizeof(err));
	if (rc < 0)
		return dw__usage_error("fabric", "%s", err);
	if (cfg.node_id == 0) {
		if (cfg.addr.ip == 0)
			return dw__usage_error("fabric",
					       "--bind needs the address peers reach this "
					       "node at, not 0.0.0.0");
		cfg.node_id = agent_default_id(&cfg.addr);
	}
	{
		/* a restart always gets a higher generation: quarter seconds since 2025 */
		uint64_t w = dw_clock_wall(NULL) / (DW_NS_PER_SEC / 4);

		cfg.generation = (uint32_t)(w - 1735689600ULL * 4);
	}
	cfg.seed = cfg.node_id ^ cfg.generation;
	rc = dw_fabric_udp_open(&cfg.addr, drop_rate, cfg.seed, &u);
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: cannot bind: %s\n", dw_strerror(rc));
		goto out;
	}
	cfg.transport = dw_fabric_udp_transport(u);
	cfg.on_event = agent_event;
	cfg.event_arg = &a;
	rc = dw_fabric_open(&cfg, &a.f);
	explicit_bzero(&cfg.keyring, sizeof(cfg.keyring)); /* the node keeps its own form */
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: cannot start: %s\n", dw_strerror(rc));
		goto out;
	}
	if (have_http) {
		struct sockaddr_in hs;

		memset(&hs, 0, sizeof(hs));
		hs.sin_family = AF_INET;
		hs.sin_addr.s_addr = htonl(http_addr.ip);
		hs.sin_port = htons(http_addr.port);
		mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_http, &a,
				       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&hs,
				       MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
		if (!mhd) {
			fprintf(stderr, "dwscale fabric: cannot listen for HTTP\n");
			goto out;
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	{
		char addr[32];

		fprintf(stderr, "fabric agent id=%016llx generation=%u bind=%s\n",
			(unsigned long long)cfg.node_id, cfg.generation,
			dw_fabric_addr_format(&cfg.addr, addr, sizeof(addr)));
	}
	dw_fabric_join(a.f, seeds, nseeds);
	for (;;) {
		rc = dw_fabric_udp_run(u, a.f, &agent_wake, NULL);
		/* cleared before the flags are read: a signal from now on wakes the next run */
		atomic_store_explicit(&agent_wake, false, memory_order_relaxed);
		if (rc < 0 || atomic_load_explicit(&agent_stop, memory_order_relaxed))
			break;
		if (atomic_exchange_explicit(&agent_reload, false, memory_order_relaxed))
			agent_reload_keys(a.f, key_file);
	}
	ret = rc < 0 ? DW_EXIT_ERROR : DW_EXIT_OK;
out:
	if (mhd)
		MHD_stop_daemon(mhd);
	dw_fabric_close(a.f);
	dw_fabric_udp_close(u);
	dw__fabric_events_release(&a.events);
	return ret;
}

/* ---- members ----------------------------------------------------------------------------------
 */

static int cmd_members(int argc, char **argv)
{
	const char *url = NULL;
	bool json = false;
	struct dw__http_resp resp;
	char err[256];
	cJSON *doc, *nodes, *n;
	int rc;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return dw__usage_error("fabric", "members takes --agent URL [--json]");
	}
	if (!url)
		return dw__usage_error("fabric", "members needs --agent URL");
	memset(&resp, 0, sizeof(resp));
	rc = dw__http_request(url, "GET", "/v1/fabric/nodes", NULL, NULL, 0, 5000, &resp, err,
			      sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: %s\n", err);
		return dw__exit_for_rc(rc);
	}
	if (resp.status != 200) {
		fprintf(stderr, "dwscale fabric: agent answered %d\n", resp.status);
		dw__http_resp_free(&resp);
		return dw__exit_for_status(resp.status);
	}
	if (json) {
		fwrite(resp.body, 1, resp.body_len, stdout);
		dw__http_resp_free(&resp);
		return DW_EXIT_OK;
	}
	doc = cJSON_Parse(resp.body);
	dw__http_resp_free(&resp);
	nodes = doc ? cJSON_GetObjectItem(doc, "nodes") : NULL;
	if (!cJSON_IsArray(nodes)) {
		cJSON_Delete(doc);
		fprintf(stderr, "dwscale fabric: the agent's answer is not a node list\n");
		return DW_EXIT_ERROR;
	}
	printf("topology %s, cluster size %.0f\n",
	       cJSON_GetStringValue(cJSON_GetObjectItem(doc, "topology")),
	       cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "cluster_size")));
	printf("%-16s  %-21s  %-7s  %-6s  %s\n", "ID", "ADDRESS", "STATE", "LEADER", "INCARNATION");
	cJSON_ArrayForEach(n, nodes)
	{
		printf("%-16s  %-21s  %-7s  %-6s  %.0f.%.0f\n",
		       cJSON_GetStringValue(cJSON_GetObjectItem(n, "id")),
		       cJSON_GetStringValue(cJSON_GetObjectItem(n, "addr")),
		       cJSON_GetStringValue(cJSON_GetObjectItem(n, "state")),
		       cJSON_IsTrue(cJSON_GetObjectItem(n, "leader")) ? "yes" : "no",
		       cJSON_GetNumberValue(cJSON_GetObjectItem(n, "generation")),
		       cJSON_GetNumberValue(cJSON_GetObjectItem(n, "counter")));
	}
	cJSON_Delete(doc);
	return DW_EXIT_OK;
}

/* ---- sim --------------------------------------------------------------------------------------
 */

static void sim_print(const dw_fabric_sim_config *c, const dw_fabric_sim_result *r, bool json)
{
	if (json) {
		cJSON *o = cJSON_CreateObject(), *d, *m;
		char hash[24];
		char *s;

		cJSON_AddNumberToObject(o, "nodes", c->nodes);
		cJSON_AddStringToObject(o, "topology", dw_fabric_topology_name(c->topology));
		cJSON_AddStringToObject(o, "mode", dw_fabric_mode_name(c->mode));
		cJSON_AddNumberToObject(o, "seconds", (double)c->seconds);
		cJSON_AddNumberToObject(o, "interval_s", (double)c->limits.interval_ns / 1e9);
		cJSON_AddNumberToObject(o, "missed", c->limits.missed);
		cJSON_AddNumberToObject(o, "loss", c->loss);
		cJSON_AddNumberToObject(o, "seed", (double)c->seed);
		d = cJSON_AddObjectToObject(o, "detection_s");
		cJSON_AddNumberToObject(d, "count", (double)r->detections);
		cJSON_AddNumberToObject(d, "min", r->detect_min_s);
		cJSON_AddNumberToObject(d, "p50", r->detect_p50_s);
		cJSON_AddNumberToObject(d, "p99", r->detect_p99_s);
		cJSON_AddNumberToObject(d, "max", r->detect_max_s);
		cJSON_AddNumberToObject(d, "outside_window", (double)r->detections_outside_window);
		cJSON_AddNumberToObject(d, "missed", (double)r->missed_detections);
		cJSON_AddNumberToObject(d, "relayed", (double)r->relayed_removals);
		cJSON_AddNumberToObject(d, "relayed_max", r->relayed_max_s);
		cJSON_AddNumberToObject(o, "removals", (double)r->removals);
		cJSON_AddNumberToObject(o, "false_removals", (double)r->false_removals);
		cJSON_AddNumberToObject(o, "rejoined", (double)r->rejoined);
		cJSON_AddNumberToObject(o, "convergence_s", r->convergence_s);
		cJSON_AddNumberToObject(o, "switches", r->switches);
		cJSON_AddNumberToObject(o, "recommendations", r->recommendations);
		cJSON_AddStringToObject(o, "switch_log", r->switch_log);
		m = cJSON_AddObjectToObject(o, "per_node_per_interval");
#define ROLE(name, msgs, bytes, expect)                                 \
	if ((msgs) > 0) {                                               \
		cJSON *x = cJSON_AddObjectToObject(m, name);            \
		cJSON_AddNumberToObject(x, "messages", msgs);           \
		cJSON_AddNumberToObject(x, "bytes", bytes);             \
		cJSON_AddNumberToObject(x, "formula_messages", expect); \
	}
		ROLE("mesh", r->msgs_mesh, r->bytes_mesh, r->expect_mesh);
		ROLE("hub", r->msgs_hub, r->bytes_hub, r->expect_hub);
		ROLE("leaf", r->msgs_leaf, r->bytes_leaf, r->expect_leaf);
		ROLE("leader", r->msgs_leader, r->bytes_leader, r->expect_leader);
		ROLE("member", r->msgs_member, r->bytes_member, r->expect_member);
#undef ROLE
		cJSON_AddNumberToObject(o, "final_nodes", r->final_nodes);
		cJSON_AddStringToObject(o, "final_topology",
					dw_fabric_topology_name(r->final_topology));
		cJSON_AddBoolToObject(o, "views_agree", r->final_alive_views_agree);
		cJSON_AddNumberToObject(o, "final_size_min", r->final_size_min);
		cJSON_AddNumberToObject(o, "final_size_max", r->final_size_max);
		cJSON_AddNumberToObject(o, "packets", (double)r->packets);
		snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)r->trace_hash);
		cJSON_AddStringToObject(o, "trace_hash", hash);
		cJSON_AddNumberToObject(o, "wall_s", r->wall_s);
		cJSON_AddNumberToObject(o, "peak_rss_mib", (double)r->peak_rss_kb / 1024.0);
		s = cJSON_Print(o);
		if (s)
			printf("%s\n", s);
		free(s);
		cJSON_Delete(o);
		return;
	}
	printf("simulated %u nodes, %s (%s), %llu s, H=%gs K=%u, loss %.1f%%, seed %llu\n",
	       c->nodes, dw_fabric_topology_name(c->topology), dw_fabric_mode_name(c->mode),
	       (unsigned long long)c->seconds, (double)c->limits.interval_ns / 1e9,
	       c->limits.missed, c->loss * 100, (unsigned long long)c->seed);
	if (r->detections == 0)
		printf("detection (s)       none (no node went down)%s\n",
		       r->missed_detections ? ", but some were never removed" : "");
	else
		printf("detection (s)       min %.2f  p50 %.2f  p99 %.2f  max %.2f  (%llu removals "
		       "of downed nodes, %llu outside [K*H, K*H+H/2], %llu never removed)\n",
		       r->detect_min_s, r->detect_p50_s, r->detect_p99_s, r->detect_max_s,
		       (unsigned long long)r->detections,
		       (unsigned long long)r->detections_outside_window,
		       (unsigned long long)r->missed_detections);
	if (r->relayed_removals)
		printf("relayed removals    %llu (by nodes that never heard from it), latest %.2f "
		       "s "
		       "after its last packet\n",
		       (unsigned long long)r->relayed_removals, r->relayed_max_s);
	printf("false removals      %llu\n", (unsigned long long)r->false_removals);
	if (c->restart)
		printf("rejoined            %llu of %u restarted\n",
		       (unsigned long long)r->rejoined, c->restart);
	printf("convergence         %s", r->convergence_s < 0 ? "never\n" : "");
	if (r->convergence_s >= 0)
		printf("%.1f s after the last change\n", r->convergence_s);
	printf("switches            %u%s%s\n", r->switches + r->recommendations,
	       r->switch_log[0] ? "  " : "", r->switch_log);
	printf("per node per interval (sent + received; formula at no loss):\n");
#define ROLE(name, msgs, bytes, expect)                                                        \
	if ((msgs) > 0)                                                                        \
		printf("  %-8s %9.2f msgs (formula %.2f)  %10.0f bytes\n", name, msgs, expect, \
		       bytes);
	ROLE("mesh", r->msgs_mesh, r->bytes_mesh, r->expect_mesh);
	ROLE("hub", r->msgs_hub, r->bytes_hub, r->expect_hub);
	ROLE("leaf", r->msgs_leaf, r->bytes_leaf, r->expect_leaf);
	ROLE("leader", r->msgs_leader, r->bytes_leader, r->expect_leader);
	ROLE("member", r->msgs_member, r->bytes_member, r->expect_member);
#undef ROLE
	printf("final               %u nodes, %s, views %s (counted %u..%u)\n", r->final_nodes,
	       dw_fabric_topology_name(r->final_topology),
	       r->final_alive_views_agree ? "agree" : "disagree", r->final_size_min,
	       r->final_size_max);
	printf("packets             %llu\n", (unsigned long long)r->packets);
	printf("trace hash          %016llx\n", (unsigned long long)r->trace_hash);
	printf("wall %.2f s, peak RSS %.0f MiB\n", r->wall_s, (double)r->peak_rss_kb / 1024.0);
}

static int cmd_sim(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "topology", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "seconds", required_argument, NULL, 's' },
		{ "interval", required_argument, NULL, 'i' },
		{ "missed", required_argument, NULL, 'K' },
		{ "loss", required_argument, NULL, 'l' },
		{ "kill", required_argument, NULL, 'k' },
		{ "pause", required_argument, NULL, 'p' },
		{ "restart", required_argument, NULL, 'r' },
		{ "grow-to", required_argument, NULL, 'g' },
		{ "seed", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "trace", no_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	dw_fabric_sim_config c;
	dw_fabric_sim_result r;
	bool json = false;
	char err[200];
	int opt, rc;

	dw_fabric_sim_config_default(&c);
	optind = 2;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (parse_u32(optarg, 1, 1000000, &c.nodes) < 0)
				return dw__usage_error("fabric", "--nodes takes 1..1000000");
			break;
		case 's': {
			uint32_t s;

			if (parse_u32(optarg, 1, 30 * 86400, &s) < 0)
				return dw__usage_error("fabric", "--seconds takes 1..2592000");
			c.seconds = s;
			break;
		}
		case 'l':
			if (parse_prob(optarg, &c.loss) < 0)
				return dw__usage_error("fabric", "--loss takes 0 <= P < 1");
			break;
		case 'k':
			if (parse_u32(optarg, 0, 1000000, &c.kill) < 0)
				return dw__usage_error("fabric", "--kill takes a count");
			break;
		case 'p': {
			char *colon = strchr(optarg, ':');

			if (!colon)
				return dw__usage_error("fabric", "--pause takes COUNT:DURATION");
			*colon = '\0';
			if (parse_u32(optarg, 0, 1000000, &c.pause) < 0 ||
			    parse_dur(colon + 1, &c.pause_ns) < 0)
				return dw__usage_error("fabric", "--pause takes COUNT:DURATION");
			break;
		}
		case 'r':
			if (parse_u32(optarg, 0, 1000000, &c.restart) < 0)
				return dw__usage_error("fabric", "--restart takes a count");
			break;
		case 'g':
			if (parse_u32(optarg, 1, 1000000, &c.grow_to) < 0)
				return dw__usage_error("fabric", "--grow-to takes a count");
			break;
		case 'S': {
			char *end;

			errno = 0;
			c.seed = strtoull(optarg, &end, 0);
			if (errno || *end || end == optarg || optarg[0] == '-')
				return dw__usage_error("fabric", "--seed takes a number >= 0");
			break;
		}
		case 'j':
			json = true;
			break;
		case 'T':
			c.trace_events = true;
			break;
		default:
			rc = shared_opt(opt, optarg, &c.topology, &c.mode, &c.limits);
			if (rc != 0)
				return rc > 0 ? rc : opt_error(opt, argv);
		}
	}
	if (optind < argc) /* options only: a word left over is a value missing its --flag */
		return dw__usage_error("fabric", "unexpected argument '%s'", argv[optind]);
	if (c.kill + c.pause + c.restart > (c.grow_to > c.nodes ? c.grow_to : c.nodes))
		return dw__usage_error("fabric", "--kill + --pause + --restart exceed --nodes");
	rc = dw_fabric_limits_validate(&c.limits, err, sizeof(err));
	if (rc < 0)
		return dw__usage_error("fabric", "%s", err);
	rc = dw_fabric_sim_run(&c, &r);
	if (rc < 0) {
		fprintf(stderr, "dwscale fabric: simulation failed: %s\n", dw_strerror(rc));
		return rc == DW_EUSAGE ? DW_EXIT_USAGE : DW_EXIT_ERROR;
	}
	sim_print(&c, &r, json);
	return DW_EXIT_OK;
}

int dw__cmd_fabric(int argc, char **argv)
{
	if (argc < 2)
		return dw__usage_error("fabric", "missing verb (keygen, agent, members, sim)");
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc, argv);
	if (strcmp(argv[1], "agent") == 0)
		return cmd_agent(argc, argv);
	if (strcmp(argv[1], "members") == 0)
		return cmd_members(argc, argv);
	if (strcmp(argv[1], "sim") == 0)
		return cmd_sim(argc, argv);
	return dw__usage_error("fabric", "unknown verb '%s' (keygen, agent, members, sim)",
			       argv[1]);
}
