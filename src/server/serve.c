// SPDX-License-Identifier: MIT
/*
 * dwscale serve: option and configuration handling, the data directory, and the daemon's life.
 *
 *   start:  flags > config file > defaults  ->  data dir (0700)  ->  admin token (0600)
 *           ->  token keyring  ->  store  ->  cache, registered as subsystem "cache"
 *           ->  db  ->  io ([io]; the data directory held open on it)  ->  backup manager and its
 *           repository ([backup] repo; the repository held open on io too)  ->  fabric node
 *           and its thread ([fabric])  ->  HTTP daemon  ->  "listening" log line
 *   run:    the main thread waits in sigwait() for SIGTERM or SIGINT (blocked in every thread,
 *           so no handler runs in the middle of a request)
 *   stop:   stop accepting, let requests in progress finish (grace period), stop the HTTP
 *           daemon, then close in reverse order: fabric, backup, io, db, cache, store,
 *           keyring, registry; exit 0.
 *
 * Threads and locking: the main thread owns everything here; request threads only reach the
 * registry (which has its own lock), the atomics of struct dw__server, and the subsystem
 * handles in it, which are set before the HTTP daemon starts, cleared only after it stopped,
 * and thread-safe themselves. The fabric node runs on its own thread (fabric_routes.c).
 *
 * The token itself is never logged, only the path of the file that holds it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dwscale/cache.h"
#include "dwscale/config.h"
#include "dwscale/core.h"
#include "dwscale/backup.h"
#include "dwscale/db.h"
#include "dwscale/io.h"
#include "dwscale/scalable.h"
#include "dwscale/store.h"
#include "dwscale/token.h"
#include "server/server.h"

#define SERVE_DEFAULT_LISTEN "127.0.0.1:7070"
#define SERVE_DEFAULT_DATA   "./var"
#define SERVE_THREADS	     4	   /* a small pool: admin and metrics traffic is light */
#define SERVE_GRACE_MS	     10000 /* how long requests in progress may take at shutdown */

struct serve_opts {
	char listen[300];
	char data[PATH_MAX];
	char admin_token_file[PATH_MAX];
	size_t max_body;
	enum dw_log_level log_level;
	size_t cache_max_entries;
	size_t cache_max_bytes;
	uint64_t cache_ttl_ms;
	char db_strategies[2048];      /* [db] strategies: NAME=URI, ... ("" = SQLite in data) */
	char backup_repo[PATH_MAX];    /* [backup] repo: run the backup manager on it ("" = none) */
	struct dw__fabric_opts fabric; /* [fabric]: run a fabric node (enabled) */
	dw_io_config io;	       /* [io]; store set at open */
};

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("dwscale serve: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* "A.B.C.D:PORT", "[v6]:PORT" or "localhost:PORT"; port 0 picks a free port. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon, *ps;
	char *end;
	long port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		ps = rb + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl == 0 || hl >= sizeof(host) || memchr(s, ':', hl))
			return -EINVAL;
		memcpy(host, s, hl);
		host[hl] = '\0';
		ps = colon + 1;
	}
	if (*ps < '0' || *ps > '9')
		return -EINVAL;
	errno = 0;
	port = strtol(ps, &end, 10);
	if (errno || *end || port < 0 || port > 65535)
		return -EINVAL;
	if (s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		if (strcmp(host, "localhost") == 0)
			snprintf(host, sizeof(host), "127.0.0.1");
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return -EINVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
	}
	return 0;
}

/* mkdir -p, each created level 0700. */
static int make_dirs(const char *path)
{
	char tmp[PATH_MAX];
	size_t n;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	n = strlen(tmp);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	{
		struct stat st;
		char q[PATH_MAX + 8];

		if (stat(tmp, &st) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		if (st.st_mode & 077)
			dw_log(DW_LOG_WARN, "serve", "data_dir_open",
			       "data=%s mode=%03o hint=\"chmod 700 it: it holds the admin token\"",
			       dw_log_quote(tmp, q, sizeof(q)), (unsigned)(st.st_mode & 0777));
	}
	return 0;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
	if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
		return -ENAMETOOLONG;
	return 0;
}

static const char *const known_sections[] = { "server", "log",	  "cache",  "store", "db",
					      "io",	"backup", "fabric", NULL };
static const char *const server_keys[] = { "listen", "data", "max_body", "admin_token_file", NULL };
static const char *const log_keys[] = { "level", NULL };
static const char *const cache_keys[] = { "max_entries", "max_bytes", "ttl", NULL };
static const char *const db_keys[] = { "strategies", NULL };
static const char *const backup_keys[] = { "repo", NULL };

static int copy_value(const dw_config *cfg, const char *section, const char *key, char *out,
		      size_t cap, char *err, size_t errlen)
{
	const char *v = dw_config_get(cfg, section, key);

	if (!v)
		return 0;
	if (!*v)
		return dw_config_error(cfg, section, key, err, errlen, "must not be empty");
	if (snprintf(out, cap, "%s", v) >= (int)cap)
		return dw_config_error(cfg, section, key, err, errlen, "value is too long");
	return 0;
}

/*
 * [io]: the io manager's dw_io_config. Where the manager has a live limit for a key, the key
 * takes that limit's name without its unit suffix (deadline_high for deadline_high_ms, reprobe
 * for reprobe_s: the file writes a duration like 60s), and its range, so that the file and
 * PUT /v1/subsystems/io/limits accept the same values; the ratios' order is checked as
 * dw_io_open checks it. Ranges are in the key's own unit (ms for durations).
 */
enum io_kind {
	IO_ENGINE, /* dw_io_engine */
	IO_BOOL,   /* bool */
	IO_UINT,   /* unsigned */
	IO_U64,	   /* uint64_t */
	IO_BYTES,  /* uint64_t, a size like 1GiB */
	IO_MS,	   /* uint64_t nanoseconds, a duration like 60s */
	IO_RATIO,  /* double */
};

static const struct io_key {
	const char *key;
	enum io_kind kind;
	size_t off; /* of the field in dw_io_config */
	double min, max;
	const char *range; /* the error's words for [min, max] */
} io_keys[] = {
#define IO_STR_(x) #x
#define IO_STR(x)  IO_STR_(x)
#define IO_KEY(k, kind, field, min, max, range)                         \
	{                                                               \
		k, kind, offsetof(dw_io_config, field), min, max, range \
	}
	IO_KEY("engine", IO_ENGINE, engine, 0, 0, NULL),
	IO_KEY("depth", IO_UINT, depth, 0, DW_IO_DEPTH_MAX,
	       "at most " IO_STR(DW_IO_DEPTH_MAX) " (0 = by device class)"),
	IO_KEY("weight_high", IO_UINT, weight[DW_IO_HIGH], 1, 1000, "between 1 and 1000"),
	IO_KEY("weight_normal", IO_UINT, weight[DW_IO_NORMAL], 1, 1000, "between 1 and 1000"),
	IO_KEY("weight_low", IO_UINT, weight[DW_IO_LOW], 1, 1000, "between 1 and 1000"),
	IO_KEY("deadline_high", IO_MS, deadline_ns[DW_IO_HIGH], 1, 600000, "between 1ms and 10m"),
	IO_KEY("deadline_normal", IO_MS, deadline_ns[DW_IO_NORMAL], 1, 600000,
	       "between 1ms and 10m"),
	IO_KEY("deadline_low", IO_MS, deadline_ns[DW_IO_LOW], 1, 600000, "between 1ms and 10m"),
	IO_KEY("low_cap", IO_UINT, low_cap, 0, DW_IO_DEPTH_MAX,
	       "at most " IO_STR(DW_IO_DEPTH_MAX) " (0 = depth/32)"),
	IO_KEY("high_linger", IO_MS, high_linger_ns, 0, 10000, "at most 10s"),
	IO_KEY("reprobe", IO_MS, reprobe_ns, 0, 86400000, "at most 1d (0 = never)"),
	IO_KEY("max_queued", IO_UINT, max_queued, 1, 1000000, "between 1 and 1000000"),
	IO_KEY("bp_warning", IO_RATIO, bp_warning, 0.01, 1, "between 0.01 and 1"),
	IO_KEY("bp_critical", IO_RATIO, bp_critical, 0.01, 1, "between 0.01 and 1"),
	IO_KEY("bp_shedding", IO_RATIO, bp_shedding, 0.01, 1, "between 0.01 and 1"),
	IO_KEY("bp_hysteresis", IO_RATIO, bp_hysteresis, 0, 0.5, "between 0 and 0.5"),
	IO_KEY("quota_window", IO_MS, quota_window_ns, 1000, 31 * 86400000.0, "between 1s and 31d"),
	IO_KEY("quota_bytes", IO_BYTES, quota_bytes, 0, 9.0e15, "at most 9PB (0 = none)"),
	IO_KEY("quota_ops", IO_U64, quota_ops, 0, 9.0e15, "at most 9000000000000000 (0 = none)"),
	IO_KEY("quota_demote", IO_BOOL, quota_demote, 0, 0, NULL),
#undef IO_KEY
#undef IO_STR
#undef IO_STR_
};
#define IO_NKEYS (sizeof(io_keys) / sizeof(io_keys[0]))

/* One [io] key into ic (left as it is if the key is absent). */
static int io_config_key(const dw_config *cfg, const struct io_key *k, dw_io_config *ic, char *err,
			 size_t errlen)
{
	void *field = (char *)ic + k->off;
	const char *v = dw_config_get(cfg, "io", k->key);
	uint64_t u = 0;
	double d = 0;
	int rc = 0;

	if (!v)
		return 0;
	switch (k->kind) {
	case IO_ENGINE:
		if (dw_io_engine_parse(v, field) < 0)
			return dw_config_error(cfg, "io", k->key, err, errlen,
					       "expected auto, io_uring or psync, got '%s'", v);
		return 0;
	case IO_BOOL:
		return dw_config_get_bool(cfg, "io", k->key, false, field, err, errlen);
	case IO_UINT:
	case IO_U64:
		rc = dw_config_get_u64(cfg, "io", k->key, 0, &u, err, errlen);
		break;
	case IO_BYTES:
		rc = dw_config_get_size(cfg, "io", k->key, 0, &u, err, errlen);
		break;
	case IO_MS:
		rc = dw_config_get_duration_ms(cfg, "io", k->key, 0, &u, err, errlen);
		break;
	case IO_RATIO:
		rc = dw_config_get_double(cfg, "io", k->key, 0, &d, err, errlen);
		break;
	}
	if (rc < 0)
		return rc;
	if (k->kind != IO_RATIO)
		d = (double)u;
	if (d < k->min || d > k->max)
		return dw_config_error(cfg, "io", k->key, err, errlen, "must be %s, got '%s'",
				       k->range, v);
	if (k->kind == IO_UINT)
		*(unsigned *)field = (unsigned)u;
	else if (k->kind == IO_RATIO)
		*(double *)field = d;
	else
		*(uint64_t *)field = k->kind == IO_MS ? u * DW_NS_PER_MS : u;
	return 0;
}

/* lo <= hi (strictly if strict) among the ratios; else an error on whichever of the two the file
 * sets last, naming the other. */
static int io_config_order(const dw_config *cfg, const char *lo_key, double lo, const char *hi_key,
			   double hi, bool strict, char *err, size_t errlen)
{
	if (strict ? lo < hi : lo <= hi)
		return 0;
	if (dw_config_line(cfg, "io", hi_key) > dw_config_line(cfg, "io", lo_key))
		return dw_config_error(cfg, "io", hi_key, err, errlen, "must be %s %s (%g), got %g",
				       strict ? "more than" : "at least", lo_key, lo, hi);
	return dw_config_error(cfg, "io", lo_key, err, errlen, "must be %s %s (%g), got %g",
			       strict ? "less than" : "at most", hi_key, hi, lo);
}

static int io_config(const dw_config *cfg, dw_io_config *ic, char *err, size_t errlen)
{
	const char *known[IO_NKEYS + 1];
	int rc;

	for (size_t i = 0; i < IO_NKEYS; i++)
		known[i] = io_keys[i].key;
	known[IO_NKEYS] = NULL;
	rc = dw_config_check_keys(cfg, "io", known, err, errlen);
	for (size_t i = 0; rc == 0 && i < IO_NKEYS; i++)
		rc = io_config_key(cfg, &io_keys[i], ic, err, errlen);
	if (rc == 0)
		rc = io_config_order(cfg, "bp_warning", ic->bp_warning, "bp_critical",
				     ic->bp_critical, false, err, errlen);
	if (rc == 0)
		rc = io_config_order(cfg, "bp_critical", ic->bp_critical, "bp_shedding",
				     ic->bp_shedding, false, err, errlen);
	if (rc == 0)
		rc = io_config_order(cfg, "bp_hysteresis", ic->bp_hysteresis, "bp_warning",
				     ic->bp_warning, true, err, errlen);
	return rc;
}

/* Read [server], [log], [cache], [db], [io], [backup] and [fabric] into o; unknown keys in them
 * are errors. */
static int load_config(const char *path, struct serve_opts *o)
{
	dw_config *cfg = NULL;
	char err[DW_CONFIG_ERR_LEN + 256];
	uint64_t v;
	const char *lvl;
	int rc;

	rc = dw_config_load(path, &cfg, err, sizeof(err));
	if (rc < 0)
		goto out;
	rc = dw_config_check_sections(cfg, known_sections, err, sizeof(err));
	if (rc == 0)
		rc = dw_config_check_keys(cfg, "server", server_keys, err, sizeof(err));
	if (rc == 0)
		rc = dw_config_check_keys(cfg, "log", log_keys, err, sizeof(err));
	if (rc == 0)
		rc = dw_config_check_keys(cfg, "cache", cache_keys, err, sizeof(err));
	if (rc == 0)
		rc = dw_config_check_keys(cfg, "db", db_keys, err, sizeof(err));
	if (rc == 0)
		rc = dw_config_check_keys(cfg, "backup", backup_keys, err, sizeof(err));
	if (rc == 0)
		rc = copy_value(cfg, "backup", "repo", o->backup_repo, sizeof(o->backup_repo), err,
				sizeof(err));
	if (rc == 0)
		rc = copy_value(cfg, "db", "strategies", o->db_strategies, sizeof(o->db_strategies),
				err, sizeof(err));
	if (rc == 0)
		rc = copy_value(cfg, "server", "listen", o->listen, sizeof(o->listen), err,
				sizeof(err));
	if (rc == 0)
		rc = copy_value(cfg, "server", "data", o->data, sizeof(o->data) - 32, err,
				sizeof(err));
	if (rc == 0)
		rc = copy_value(cfg, "server", "admin_token_file", o->admin_token_file,
				sizeof(o->admin_token_file), err, sizeof(err));
	if (rc == 0)
		rc = dw_config_get_size(cfg, "server", "max_body", o->max_body, &v, err,
					sizeof(err));
	if (rc == 0) {
		if (v < 64 || v > DW_SERVER_RESPONSE_MAX)
			rc = dw_config_error(cfg, "server", "max_body", err, sizeof(err),
					     "must be between 64 B and %u MiB",
					     DW_SERVER_RESPONSE_MAX >> 20);
		else
			o->max_body = (size_t)v;
	}
	lvl = dw_config_get(cfg, "log", "level");
	if (rc == 0 && lvl && dw_log_level_parse(lvl, &o->log_level) < 0)
		rc = dw_config_error(cfg, "log", "level", err, sizeof(err),
				     "expected debug, info, warn, error or off, got '%s'", lvl);
	if (rc == 0)
		rc = dw_config_get_u64(cfg, "cache", "max_entries", o->cache_max_entries, &v, err,
				       sizeof(err));
	if (rc == 0)
		o->cache_max_entries = (size_t)v;
	if (rc == 0)
		rc = dw_config_get_size(cfg, "cache", "max_bytes", o->cache_max_bytes, &v, err,
					sizeof(err));
	if (rc == 0) {
		if (v > SIZE_MAX)
			rc = dw_config_error(cfg, "cache", "max_bytes", err, sizeof(err),
					     "is too large");
		else
			o->cache_max_bytes = (size_t)v;
	}
	if (rc == 0)
		rc = dw_config_get_duration_ms(cfg, "cache", "ttl", o->cache_ttl_ms,
					       &o->cache_ttl_ms, err, sizeof(err));
	if (rc == 0)
		rc = io_config(cfg, &o->io, err, sizeof(err));
	if (rc == 0)
		rc = dw__fabric_config(cfg, &o->fabric, err, sizeof(err));
out:
	dw_config_close(cfg);
	if (rc < 0)
		return fail(rc == DW_ECONFIG || rc == -ENOENT ? DW_EXIT_USAGE : DW_EXIT_ERROR, "%s",
			    err);
	return 0;
}

/*
 * Database storage: the [db] strategies (NAME=URI, separated by commas or spaces), else one
 * SQLite strategy "main" at DATA/objects.db. Listing tokens are signed with the node's token
 * secret; listing pages are cached with write-through to the node's store.
 */
static int open_db(const struct serve_opts *o, dw_token_keyring *kr, dw_store *store, dw_db **out,
		   char *err, size_t errlen)
{
	char specs[sizeof(o->db_strategies)], fallback[PATH_MAX + 32], *save = NULL;
	dw_db_config dc;

	dw_db_config_default(&dc);
	dc.tokens = kr;
	dc.cache_store = store;
	snprintf(specs, sizeof(specs), "%s", o->db_strategies);
	for (char *t = strtok_r(specs, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		if (dc.n_strategies == DW_DB_STRATEGIES_MAX) {
			snprintf(err, errlen, "[db] strategies: more than %d",
				 DW_DB_STRATEGIES_MAX);
			return DW_ECONFIG;
		}
		dc.strategies[dc.n_strategies++] = t;
	}
	if (dc.n_strategies == 0) {
		if (snprintf(fallback, sizeof(fallback), "main=sqlite:%s/objects.db", o->data) >=
		    (int)sizeof(fallback)) {
			snprintf(err, errlen, "data directory path is too long");
			return DW_ECONFIG;
		}
		dc.strategies[dc.n_strategies++] = fallback;
	}
	return dw_db_open(&dc, out, err, errlen);
}

/* Hold dir open on the io manager (see struct dw__io_path); a failure only costs /v1/io the
 * device's class and probe details, so it is logged, not fatal. */
static void hold_io_path(struct dw__server *srv, dw_io *io, const char *what, const char *dir)
{
	for (size_t i = 0; i < DW_SERVER_IO_PATHS; i++) {
		struct dw__io_path *p = &srv->io_paths[i];
		int rc;

		if (p->f)
			continue;
		rc = dw_io_file_open(io, dir, O_RDONLY | O_DIRECTORY, 0, 0, &p->f);
		if (rc < 0) {
			char q[PATH_MAX + 8];

			dw_log(DW_LOG_WARN, "serve", "io_path", "path=%s err=%s",
			       dw_log_quote(dir, q, sizeof(q)), dw_err_name(rc));
			return;
		}
		p->what = what;
		return;
	}
}

static void *cjson_malloc(size_t n)
{
	return dw_malloc(n);
}

int dw__cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "data", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	cJSON_Hooks hooks = { cjson_malloc, dw_free };
	const char *flag_listen = NULL, *flag_data = NULL, *config = NULL, *env;
	struct serve_opts o = { 0 };
	struct dw__server *srv = NULL;
	struct MHD_Daemon *mhd = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	sigset_t sigs;
	char path[PATH_MAX], err[1024], q[PATH_MAX + 64], addr_shown[320];
	bool created = false;
	int c, rc, sig = 0, ret = DW_EXIT_ERROR;
	dw_token_keyring *kr = NULL;
	dw_store *store = NULL;
	dw_cache *cache = NULL;
	dw_cache_config ccfg;
	bool cache_registered = false;
	dw_db *db = NULL;
	bool db_registered = false;
	dw_io *io = NULL;
	bool io_registered = false;
	dw_backup_mgr *backup = NULL;
	bool backup_registered = false;
	dw_backup_repo *backup_repo = NULL;
	struct dw__fabric_node *fabric = NULL;

	/* Block the stop signals first: MHD's threads inherit the mask, so the signals are only
	 * ever taken by sigwait() below, and one that arrives during start-up waits there. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	cJSON_InitHooks(&hooks);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'l':
			flag_listen = optarg;
			break;
		case 'd':
			flag_data = optarg;
			break;
		default:
			return dw__usage_error("serve", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return dw__usage_error("serve", "unexpected argument '%s'", argv[optind]);

	/* defaults, then the config file, then flags */
	snprintf(o.listen, sizeof(o.listen), "%s", SERVE_DEFAULT_LISTEN);
	env = getenv("DWSCALE_DATA");
	snprintf(o.data, sizeof(o.data), "%s", env && *env ? env : SERVE_DEFAULT_DATA);
	o.max_body = DW_SERVER_MAX_BODY_DEFAULT;
	o.log_level = dw_log_get_level();
	o.cache_max_entries = DW_CACHE_DEFAULT_MAX_ENTRIES;
	o.cache_max_bytes = DW_CACHE_DEFAULT_MAX_BYTES;
	dw_io_config_default(&o.io);
	if (config) {
		rc = load_config(config, &o);
		if (rc != 0)
			return rc;
	}
	if (flag_listen) {
		if (strlen(flag_listen) >= sizeof(o.listen))
			return dw__usage_error("serve", "--listen value is too long");
		snprintf(o.listen, sizeof(o.listen), "%s", flag_listen);
	}
	if (flag_data) {
		if (!*flag_data || strlen(flag_data) >= sizeof(o.data) - 32)
			return dw__usage_error("serve", "--data needs a directory path");
		snprintf(o.data, sizeof(o.data), "%s", flag_data);
	}
	if (parse_listen(o.listen, &ss, &sslen) < 0)
		return dw__usage_error("serve",
				       "invalid listen address '%s': expected ADDR:PORT, e.g. "
				       "127.0.0.1:7070 or [::1]:7070",
				       o.listen);
	dw_log_set_level(o.log_level);

	rc = make_dirs(o.data);
	if (rc < 0)
		return fail(DW_EXIT_ERROR, "cannot create data directory %s: %s", o.data,
			    dw_strerror(rc));
	srv = dw_calloc(1, sizeof(*srv));
	if (!srv)
		return fail(DW_EXIT_ERROR, "out of memory");
	srv->max_body = o.max_body;
	srv->start_ns = dw_clock_now(NULL);

	if (!o.admin_token_file[0] &&
	    path_join(o.admin_token_file, sizeof(o.admin_token_file), o.data, "admin.token") < 0) {
		ret = fail(DW_EXIT_USAGE, "data directory path is too long");
		goto out;
	}
	rc = dw__admin_token_load(o.admin_token_file, srv->admin_token, sizeof(srv->admin_token),
				  &srv->admin_token_len, &created, err, sizeof(err));
	if (rc < 0) {
		ret = fail(rc == DW_ECONFIG ? DW_EXIT_USAGE : DW_EXIT_ERROR, "%s", err);
		goto out;
	}

	if (path_join(path, sizeof(path), o.data, "token.secret") < 0) {
		ret = fail(DW_EXIT_USAGE, "data directory path is too long");
		goto out;
	}
	rc = dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err));
	if (rc < 0) {
		ret = fail(rc == DW_ECONFIG ? DW_EXIT_USAGE : DW_EXIT_ERROR, "%s",
			   err[0] ? err : dw_strerror(rc));
		goto out;
	}

	rc = dw_registry_open(&srv->reg);
	if (rc < 0) {
		ret = fail(DW_EXIT_ERROR, "cannot create the subsystem registry: %s",
			   dw_strerror(rc));
		goto out;
	}
	if (snprintf(path, sizeof(path), "sqlite:%s/store.db", o.data) >= (int)sizeof(path)) {
		ret = fail(DW_EXIT_USAGE, "data directory path is too long");
		goto out;
	}
	rc = dw_store_open(path, &store);
	if (rc < 0) {
		ret = fail(DW_EXIT_UNREACHABLE, "cannot open the store %s: %s", path,
			   dw_strerror(rc));
		goto out;
	}
	dw_cache_config_default(&ccfg);
	ccfg.store = store;
	ccfg.store_prefix = "dw://cache/";
	ccfg.max_entries = o.cache_max_entries;
	ccfg.max_bytes = o.cache_max_bytes;
	ccfg.ttl_ms = o.cache_ttl_ms;
	rc = dw_cache_open(&ccfg, &cache);
	if (rc < 0) {
		ret = fail(DW_EXIT_ERROR, "cannot open the cache: %s", dw_strerror(rc));
		goto out;
	}
	rc = dw_registry_add(srv->reg, dw_cache_scalable(cache));
	if (rc < 0) {
		ret = fail(DW_EXIT_ERROR, "cannot register the cache: %s", dw_strerror(rc));
		goto out;
	}
	cache_registered = true;

	rc = open_db(&o, kr, store, &db, err, sizeof(err));
	if (rc < 0) {
		ret = fail(rc == DW_ECONFIG ? DW_EXIT_USAGE : DW_EXIT_UNREACHABLE, "%s", err);
		goto out;
	}
	rc = dw_registry_add(srv->reg, dw_db_scalable(db));
	if (rc < 0) {
		ret = fail(DW_EXIT_ERROR, "cannot register the db subsystem: %s", dw_strerror(rc));
		goto out;
	}
	db_registered = true;
	srv->db = db;

	/* The I/O scheduler as [io] sets it: schedulers per device appear as files on them are
	 * used; quotas are kept in the node's store. */
	{
		o.io.store = store;
		rc = dw_io_open(&o.io, &io);
		if (rc < 0) {
			ret = fail(DW_EXIT_ERROR, "cannot open the I/O manager: %s",
				   dw_strerror(rc));
			goto out;
		}
		rc = dw_registry_add(srv->reg, dw_io_scalable(io));
		if (rc < 0) {
			ret = fail(DW_EXIT_ERROR, "cannot register the io subsystem: %s",
				   dw_strerror(rc));
			goto out;
		}
		io_registered = true;
		hold_io_path(srv, io, "data", o.data);
	}

	/* The backup manager, when [backup] repo names an initialised repository: retention on
	 * its timer, job records in the node's store, its I/O on the io manager (Low), its limits
	 * live like the others'. */
	if (o.backup_repo[0]) {
		dw_backup_mgr_config bcfg;

		dw_backup_mgr_config_default(&bcfg);
		bcfg.repo = o.backup_repo;
		bcfg.store = store;
		bcfg.io = io; /* jobs read and write through the scheduler at Low priority */
		rc = dw_backup_mgr_open(&bcfg, &backup);
		if (rc == 0)
			rc = dw_backup_mgr_start(backup);
		if (rc < 0) {
			ret = fail(rc == DW_ENOTFOUND ? DW_EXIT_USAGE : DW_EXIT_ERROR,
				   "cannot run the backup manager on %s: %s", o.backup_repo,
				   rc == DW_ENOTFOUND ? "not a backup repository (create it with "
							"'dwscale backup init')"
						      : dw_strerror(rc));
			goto out;
		}
		rc = dw_registry_add(srv->reg, dw_backup_mgr_scalable(backup));
		if (rc < 0) {
			ret = fail(DW_EXIT_ERROR, "cannot register the backup subsystem: %s",
				   dw_strerror(rc));
			goto out;
		}
		backup_registered = true;
		rc = dw_backup_repo_open(o.backup_repo, &backup_repo);
		if (rc < 0) {
			ret = fail(DW_EXIT_ERROR, "cannot open the backup repository %s: %s",
				   o.backup_repo, dw_strerror(rc));
			goto out;
		}
		hold_io_path(srv, io, "backup_repo", o.backup_repo);
	}

	/* The fabric node, when the configuration has a [fabric] section. */
	if (o.fabric.enabled) {
		rc = dw__fabric_start(&o.fabric, o.data, srv->reg, &fabric, err, sizeof(err));
		if (rc < 0) {
			ret = fail(DW_EXIT_ERROR, "%s", err);
			goto out;
		}
	}
	srv->io = io;
	srv->backup = backup;
	srv->backup_repo = backup_repo;
	srv->fabric = fabric;

	dw_log(DW_LOG_INFO, "serve", "admin_token", "file=%s created=%s",
	       dw_log_quote(o.admin_token_file, q, sizeof(q)), created ? "yes" : "no");
	rc = dw__http_start(srv, &ss, sslen, SERVE_THREADS, &mhd);
	if (rc < 0) {
		ret = fail(DW_EXIT_ERROR, "cannot listen on %s: %s", o.listen, dw_strerror(rc));
		goto out;
	}
	if (ss.ss_family == AF_INET6) {
		char h[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h, sizeof(h));
		snprintf(addr_shown, sizeof(addr_shown), "[%s]:%d", h, dw__http_port(mhd));
	} else {
		char h[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h, sizeof(h));
		snprintf(addr_shown, sizeof(addr_shown), "%s:%d", h, dw__http_port(mhd));
	}
	dw_log(DW_LOG_INFO, "serve", "listening", "addr=%s data=%s version=%s subsystems=%zu",
	       addr_shown, dw_log_quote(o.data, q, sizeof(q)), dw_version(),
	       dw_registry_count(srv->reg));

	for (;;) {
		rc = sigwait(&sigs, &sig);
		if (rc == 0 && (sig == SIGTERM || sig == SIGINT))
			break;
	}
	dw_log(DW_LOG_INFO, "serve", "stopping", "signal=%s in_flight=%ld",
	       sig == SIGTERM ? "SIGTERM" : "SIGINT",
	       atomic_load_explicit(&srv->in_flight, memory_order_relaxed));
	dw__http_stop(srv, mhd, SERVE_GRACE_MS);
	mhd = NULL;
	ret = DW_EXIT_OK;
out:
	if (mhd)
		dw__http_stop(srv, mhd, 0);
	if (srv) {
		srv->io = NULL;
		srv->backup = NULL;
		srv->backup_repo = NULL;
		srv->fabric = NULL;
	}
	dw__fabric_stop(fabric, srv ? srv->reg : NULL);
	explicit_bzero(&o.fabric.cfg.keyring, sizeof(o.fabric.cfg.keyring));
	dw_backup_repo_close(backup_repo);
	if (backup_registered)
		dw_registry_remove(srv->reg, dw_backup_mgr_scalable(backup)->name);
	dw_backup_mgr_close(backup);
	for (size_t i = 0; srv && i < DW_SERVER_IO_PATHS; i++) {
		dw_io_file_close(srv->io_paths[i].f);
		srv->io_paths[i].f = NULL;
	}
	if (io_registered)
		dw_registry_remove(srv->reg, dw_io_scalable(io)->name);
	dw_io_close(io);
	if (db_registered)
		dw_registry_remove(srv->reg, dw_db_scalable(db)->name);
	dw_db_close(db);
	if (cache_registered)
		dw_registry_remove(srv->reg, dw_cache_scalable(cache)->name);
	dw_cache_close(cache);
	dw_store_close(store);
	dw_token_keyring_close(kr);
	if (srv) {
		dw_registry_close(srv->reg);
		explicit_bzero(srv->admin_token, sizeof(srv->admin_token));
		dw_free(srv);
	}
	if (ret == DW_EXIT_OK)
		dw_log(DW_LOG_INFO, "serve", "stopped", "exit=0");
	return ret;
}
