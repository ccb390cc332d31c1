// SPDX-License-Identifier: MIT
/*
 * The fabric node of `dwscale serve`: the [fabric] section, the node's UDP thread, and
 *
 *   GET /v1/fabric/nodes    this node's view of the cluster     (same JSON as the agent's --http)
 *   GET /v1/fabric/events   its last DW__FABRIC_EVENTS_KEPT membership events
 *
 * The section mirrors `dwscale fabric agent`:
 *
 *   [fabric]
 *   bind = 127.0.0.2:7946          ; required: where peers reach this node (UDP, IPv4)
 *   key_file = /etc/dwscale/fabric.key   ; required: `dwscale fabric keygen -o FILE`
 *   join = 127.0.0.1:7946, ...     ; seeds (16 at most); none = start a new cluster
 *   topology = mesh                ; star, mesh, federated (for a new cluster)
 *   mode = auto                    ; auto or recommend
 *   interval = 15s                 ; heartbeat interval H (10ms..1h)
 *   missed = 3                     ; K: removed after K*H without sign of life (1..100)
 *   node_id = 42                   ; non-zero; default: a random id kept in DATA/fabric.id
 *
 * Unlike the agent, a node id that is not configured is kept in the data directory, so a
 * restarted daemon comes back as the same member with a higher generation (an "updated" event
 * for its peers) rather than as a new member while the old one times out; the last generation
 * is kept there too, so it grows even across a restart within the clock's quarter second.
 *
 * Threads and locking: one thread per node runs dw_fabric_udp_run (receive, tick, send) until
 * stop is set; the UDP transport is used by that thread only, except for the join sent before
 * it starts. HTTP threads call the node's thread-safe queries and render the event ring, which
 * has its own lock (fabricjson.c). The event callback runs on the node's thread under the node's
 * lock: it only renders a line into the ring and writes a log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dwscale/config.h"
#include "dwscale/core.h"
#include "server/server.h"

#define NOT_CONFIGURED_HINT "add a [fabric] section with bind and key_file"
#define INTERVAL_MAX_MS	    (86400ull * 1000) /* the agent's bound: one day */
#define NODE_ID_FILE	    "fabric.id"
#define GENERATION_FILE	    "fabric.generation"

struct dw__fabric_node {
	dw_fabric *f;
	dw_fabric_udp *u;
	struct dw__fabric_events events;
	pthread_t thread;
	bool thread_started;
	bool registered;
	_Atomic bool stop;
	int run_rc; /* written by the thread, read after join */
};

/* ---- configuration ------------------------------------------------------------------------- */

static const char *const fabric_keys[] = { "bind",     "key_file", "join",    "topology", "mode",
					   "interval", "missed",   "node_id", NULL };

static bool section_present(const dw_config *cfg)
{
	size_t n = dw_config_count(cfg);

	for (size_t i = 0; i < n; i++) {
		const char *sec = NULL;

		if (dw_config_entry(cfg, i, &sec, NULL, NULL, NULL) == 0 && sec &&
		    strcmp(sec, "fabric") == 0)
			return true;
	}
	return false;
}

static int parse_seeds(const dw_config *cfg, const char *v, struct dw__fabric_opts *o, char *err,
		       size_t errlen)
{
	char list[DW_CONFIG_MAX_LINE + 1], *save = NULL;

	if (snprintf(list, sizeof(list), "%s", v) >= (int)sizeof(list))
		return dw_config_error(cfg, "fabric", "join", err, errlen, "value is too long");
	for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		if (o->nseeds == sizeof(o->seeds) / sizeof(o->seeds[0]))
			return dw_config_error(cfg, "fabric", "join", err, errlen,
					       "at most %zu seeds",
					       sizeof(o->seeds) / sizeof(o->seeds[0]));
		if (dw_fabric_addr_parse(t, &o->seeds[o->nseeds]) < 0)
			return dw_config_error(cfg, "fabric", "join", err, errlen,
					       "expected A.B.C.D:PORT[, ...], got '%s'", t);
		o->nseeds++;
	}
	return 0;
}

int dw__fabric_config(const dw_config *cfg, struct dw__fabric_opts *o, char *err, size_t errlen)
{
	dw_fabric_config *fc = &o->cfg;
	const char *v;
	char kerr[256];
	uint64_t u;
	int rc;

	memset(o, 0, sizeof(*o));
	dw_fabric_config_default(fc);
	if (!section_present(cfg))
		return 0;
	o->enabled = true;
	rc = dw_config_check_keys(cfg, "fabric", fabric_keys, err, errlen);
	if (rc < 0)
		return rc;

	v = dw_config_get(cfg, "fabric", "bind");
	if (!v)
		return dw_config_error(cfg, "fabric", "bind", err, errlen,
				       "is required: the A.B.C.D:PORT peers reach this node at");
	if (dw_fabric_addr_parse(v, &fc->addr) < 0 || fc->addr.port == 0)
		return dw_config_error(cfg, "fabric", "bind", err, errlen,
				       "expected A.B.C.D:PORT with a non-zero port, got '%s'", v);

	v = dw_config_get(cfg, "fabric", "key_file");
	if (!v || !*v)
		return dw_config_error(
			cfg, "fabric", "key_file", err, errlen,
			"is required: a key file from 'dwscale fabric keygen -o FILE'");
	rc = dw_fabric_keyring_load(v, &fc->keyring, kerr, sizeof(kerr));
	if (rc < 0)
		return dw_config_error(cfg, "fabric", "key_file", err, errlen, "%s", kerr);

	v = dw_config_get(cfg, "fabric", "join");
	if (v) {
		rc = parse_seeds(cfg, v, o, err, errlen);
		if (rc < 0)
			return rc;
	}
	v = dw_config_get(cfg, "fabric", "topology");
	if (v && dw_fabric_topology_parse(v, &fc->topology) < 0)
		return dw_config_error(cfg, "fabric", "topology", err, errlen,
				       "expected star, mesh or federated, got '%s'", v);
	v = dw_config_get(cfg, "fabric", "mode");
	if (v && dw_fabric_mode_parse(v, &fc->mode) < 0)
		return dw_config_error(cfg, "fabric", "mode", err, errlen,
				       "expected auto or recommend, got '%s'", v);

	rc = dw_config_get_duration_ms(cfg, "fabric", "interval",
				       fc->limits.interval_ns / DW_NS_PER_MS, &u, err, errlen);
	if (rc < 0)
		return rc;
	if (u == 0 || u > INTERVAL_MAX_MS)
		return dw_config_error(cfg, "fabric", "interval", err, errlen,
				       "must be more than 0 and at most 1 day");
	fc->limits.interval_ns = u * DW_NS_PER_MS;

	rc = dw_config_get_u64(cfg, "fabric", "missed", fc->limits.missed, &u, err, errlen);
	if (rc < 0)
		return rc;
	if (u < 1 || u > 100)
		return dw_config_error(cfg, "fabric", "missed", err, errlen,
				       "must be between 1 and 100");
	fc->limits.missed = (uint32_t)u;

	v = dw_config_get(cfg, "fabric", "node_id");
	if (v) {
		char *end;

		errno = 0;
		fc->node_id = strtoull(v, &end, 0);
		if (errno || end == v || *end || v[0] == '-' || fc->node_id == 0)
			return dw_config_error(cfg, "fabric", "node_id", err, errlen,
					       "expected a non-zero number, got '%s'", v);
	}
	rc = dw_fabric_limits_validate(&fc->limits, kerr, sizeof(kerr));
	if (rc < 0)
		return dw_config_error(cfg, "fabric",
				       dw_config_get(cfg, "fabric", "interval") ? "interval"
										: "missed",
				       err, errlen, "%s", kerr);
	return 0;
}

/* ---- the node id kept in the data directory ------------------------------------------------ */

static int read_node_id(const char *path, uint64_t *id)
{
	char buf[64], *end;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	errno = 0;
	*id = strtoull(buf, &end, 16);
	while (*end == '\n')
		end++;
	if (errno || end == buf || *end || *id == 0)
		return DW_ECORRUPT;
	return 0;
}

/*
 * DATA/fabric.id holds the node id in hex. Created once: a temporary file, fsync'ed, linked
 * into place (link fails if another process won the race; its id is then read), directory
 * fsync'ed.
 */
static int node_id_load(const char *data_dir, uint64_t *id, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], line[32];
	int fd, rc;
	size_t len;

	if (snprintf(path, sizeof(path), "%s/%s", data_dir, NODE_ID_FILE) >= (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "data directory path is too long");
		return -ENAMETOOLONG;
	}
	rc = read_node_id(path, id);
	if (rc == DW_ECORRUPT)
		snprintf(err, errlen, "%s does not hold a node id (hex, non-zero)", path);
	if (rc != -ENOENT) {
		if (rc < 0 && rc != DW_ECORRUPT)
			snprintf(err, errlen, "cannot read %s: %s", path, dw_strerror(rc));
		return rc;
	}
	*id = 0;
	while (*id == 0) {
		if (getrandom(id, sizeof(*id), 0) != sizeof(*id)) {
			snprintf(err, errlen, "cannot draw a node id: %s", strerror(errno));
			return -EIO;
		}
	}
	len = (size_t)snprintf(line, sizeof(line), "%016" PRIx64 "\n", *id);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (write(fd, line, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		goto fail;
	}
	close(fd);
	if (link(tmp, path) < 0) {
		rc = -errno;
		unlink(tmp);
		if (rc == -EEXIST)
			return node_id_load(data_dir, id, err, errlen);
		goto fail;
	}
	unlink(tmp);
	fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot write %s: %s", path, dw_strerror(rc));
	return rc;
}

/*
 * The generation must grow across restarts, or peers take the restarted node for the old one.
 * The agent uses quarter seconds since 2025, which a restart within the same quarter second (or
 * after the wall clock stepped back) would repeat; serve has a data directory, so it also keeps
 * the last generation it used in DATA/fabric.generation and takes the larger of the clock's and
 * that one plus one. Written through a temporary file, fsync'ed and renamed into place.
 */
static int generation_next(const char *data_dir, uint32_t *gen, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], buf[32], *end;
	uint64_t w = dw_clock_wall(NULL) / (DW_NS_PER_SEC / 4);
	uint32_t g = (uint32_t)(w - 1735689600ULL * 4);
	ssize_t n;
	size_t len;
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/%s", data_dir, GENERATION_FILE) >= (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "data directory path is too long");
		return -ENAMETOOLONG;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			unsigned long long last;

			buf[n] = '\0';
			errno = 0;
			last = strtoull(buf, &end, 10);
			/* a damaged file only loses its protection against a clock step */
			if (!errno && end != buf && (*end == '\n' || !*end) && last < UINT32_MAX &&
			    last + 1 > g)
				g = (uint32_t)last + 1;
		}
	} else if (errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, dw_strerror(rc));
		return rc;
	}
	len = (size_t)snprintf(buf, sizeof(buf), "%" PRIu32 "\n", g);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		goto fail;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		rc = -errno;
		unlink(tmp);
		goto fail;
	}
	fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	*gen = g;
	return 0;
fail:
	snprintf(err, errlen, "cannot write %s: %s", path, dw_strerror(rc));
	return rc;
}

/* ---- the node ------------------------------------------------------------------------------ */

static void on_event(void *arg, const dw_fabric_event *ev)
{
	struct dw__fabric_node *n = arg;
	char addr[32];

	dw__fabric_events_add(&n->events, ev, NULL);
	if (ev->type == DW_FABRIC_EV_SWITCHED || ev->type == DW_FABRIC_EV_SWITCH_RECOMMENDED ||
	    ev->type == DW_FABRIC_EV_JOIN_REFUSED) {
		char q[300];

		dw_log(DW_LOG_WARN, "fabric", dw_fabric_event_name(ev->type),
		       "from=%s to=%s reason=%s", dw_fabric_topology_name(ev->from),
		       dw_fabric_topology_name(ev->to),
		       dw_log_quote(ev->reason ? ev->reason : "", q, sizeof(q)));
		return;
	}
	dw_log(DW_LOG_INFO, "fabric", dw_fabric_event_name(ev->type),
	       "member=%016" PRIx64 " addr=%s cluster_size=%" PRIu32, ev->member.id,
	       dw_fabric_addr_format(&ev->member.addr, addr, sizeof(addr)), ev->cluster_size);
}

static void *node_main(void *arg)
{
	struct dw__fabric_node *n = arg;

	n->run_rc = dw_fabric_udp_run(n->u, n->f, &n->stop, NULL);
	if (n->run_rc < 0)
		dw_log(DW_LOG_ERROR, "fabric", "stopped", "err=%s", dw_err_name(n->run_rc));
	return NULL;
}

int dw__fabric_start(struct dw__fabric_opts *o, const char *data_dir, dw_registry *reg,
		     struct dw__fabric_node **out, char *err, size_t errlen)
{
	dw_fabric_config *fc = &o->cfg;
	struct dw__fabric_node *n;
	char addr[32];
	int rc;

	*out = NULL;
	n = dw_calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	dw__fabric_events_init(&n->events);
	atomic_init(&n->stop, false);
	if (fc->node_id == 0) {
		rc = node_id_load(data_dir, &fc->node_id, err, errlen);
		if (rc < 0)
			goto fail;
	}
	rc = generation_next(data_dir, &fc->generation, err, errlen);
	if (rc < 0)
		goto fail;
	fc->seed = fc->node_id ^ fc->generation;
	rc = dw_fabric_udp_open(&fc->addr, 0, fc->seed, &n->u);
	if (rc < 0) {
		snprintf(err, errlen, "cannot bind the fabric to %s: %s",
			 dw_fabric_addr_format(&fc->addr, addr, sizeof(addr)), dw_strerror(rc));
		goto fail;
	}
	fc->transport = dw_fabric_udp_transport(n->u);
	fc->on_event = on_event;
	fc->event_arg = n;
	rc = dw_fabric_open(fc, &n->f);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the fabric node: %s", dw_strerror(rc));
		goto fail;
	}
	rc = dw_registry_add(reg, dw_fabric_scalable(n->f));
	if (rc < 0) {
		snprintf(err, errlen, "cannot register the fabric subsystem: %s", dw_strerror(rc));
		goto fail;
	}
	n->registered = true;
	rc = dw_fabric_join(n->f, o->seeds, o->nseeds);
	if (rc < 0) {
		snprintf(err, errlen, "cannot join the fabric: %s", dw_strerror(rc));
		goto fail;
	}
	rc = -pthread_create(&n->thread, NULL, node_main, n);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the fabric thread: %s", dw_strerror(rc));
		goto fail;
	}
	n->thread_started = true;
	dw_log(DW_LOG_INFO, "fabric", "started",
	       "id=%016" PRIx64 " generation=%" PRIu32 " bind=%s topology=%s seeds=%zu",
	       fc->node_id, fc->generation, dw_fabric_addr_format(&fc->addr, addr, sizeof(addr)),
	       dw_fabric_topology_name(fc->topology), o->nseeds);
	*out = n;
	return 0;
fail:
	dw__fabric_stop(n, reg);
	return rc;
}

void dw__fabric_stop(struct dw__fabric_node *n, dw_registry *reg)
{
	if (!n)
		return;
	if (n->thread_started) {
		atomic_store_explicit(&n->stop, true, memory_order_release);
		pthread_join(n->thread, NULL);
	}
	if (n->registered)
		dw_registry_remove(reg, dw_fabric_scalable(n->f)->name);
	dw_fabric_close(n->f);
	dw_fabric_udp_close(n->u);
	dw__fabric_events_release(&n->events);
	dw_free(n);
}

/* ---- routes -------------------------------------------------------------------------------- */

bool dw__fabric_route(struct dw__server *s, const char *method, const char *path,
		      struct dw__reply *r)
{
	bool nodes = strcmp(path, "/v1/fabric/nodes") == 0;
	bool events = strcmp(path, "/v1/fabric/events") == 0;
	int rc;

	if (!nodes && !events)
		return false;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		dw__reply_error(r, 405, "method_not_allowed",
				"method %s is not allowed here (allowed: GET, HEAD)", method);
		r->allow = "GET, HEAD";
		return true;
	}
	if (!s->fabric) {
		dw__reply_not_configured(r, "fabric", NOT_CONFIGURED_HINT);
		return true;
	}
	r->body.len = 0;
	rc = nodes ? dw__fabric_nodes_render(s->fabric->f, &r->body)
		   : dw__fabric_events_render(&s->fabric->events, &r->body);
	if (rc < 0) {
		dw__reply_error(r, 500, "internal", "cannot render the fabric %s: %s",
				nodes ? "nodes" : "events", dw_strerror(rc));
		return true;
	}
	r->status = 200;
	r->content_type = "application/json";
	return true;
}
