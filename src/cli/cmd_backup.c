// SPDX-License-Identifier: MIT
/*
 * dwscale backup: init, create, restore, list, check, prune and recover on a repository
 * directory, through the public backup API only.
 *
 * create runs one job per source, concurrently, under a limit that follows disk utilisation
 * (dw_backup_conc over /proc/diskstats for the disks under the sources and the repository),
 * re-evaluated every second by the main thread, which also prints progress: one line rewritten
 * in place on a terminal, one JSON object per line with --json (then a "done" object per
 * backup). Everything a script needs is in the JSON; everything a person needs is in the text.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dwscale/backup.h"
#include "dwscale/io.h"

#define CMD	    "backup"
#define SOURCES_MAX 64

/* ---- output helpers --------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void human_bytes(uint64_t b, char *out, size_t cap)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void iso_time(uint64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / DW_NS_PER_SEC);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "dwscale backup %s: %s\n", what, dw_strerror(rc));
	if (rc == DW_ELOCKED)
		fprintf(stderr, "(another process is using the repository; it is released when "
				"that process ends)\n");
	return dw__exit_for_rc(rc) == DW_EXIT_UNREACHABLE ? DW_EXIT_ERROR : dw__exit_for_rc(rc);
}

/*
 * "100G", "1.5TiB", "500M", "4096": bytes. K, M, G, T, P are powers of 1000 (a disk's GB), or of
 * 1024 with "iB" or when binary is set (block sizes: "64K" is 65536).
 */
static int parse_size(const char *s, bool binary, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	double m = 1;

	if (end == s || !(v >= 0))
		return -1;
	if (*end) {
		const char *units = "KMGTP";
		const char *u = strchr(units, (*end >= 'a' && *end <= 'z') ? *end - 32 : *end);

		if (!u || !*u)
			return -1;
		end++;
		if (strcmp(end, "iB") == 0)
			m = pow(1024, (double)(u - units + 1));
		else if (*end == '\0' || strcmp(end, "B") == 0)
			m = pow(binary ? 1024 : 1000, (double)(u - units + 1));
		else
			return -1;
	}
	if (v * m > 1.8e19)
		return -1;
	*out = (uint64_t)(v * m);
	return 0;
}

/* "90d", "12h", "30m", "45s", "2w": nanoseconds. */
static int parse_dur(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	double m;

	if (end == s || !(v >= 0))
		return -1;
	switch (*end) {
	case 's':
		m = 1;
		break;
	case 'm':
		m = 60;
		break;
	case 'h':
		m = 3600;
		break;
	case 'd':
		m = 86400;
		break;
	case 'w':
		m = 7 * 86400;
		break;
	default:
		return -1;
	}
	if (end[1] != '\0' || v * m > 1e10)
		return -1;
	*out = (uint64_t)(v * m * 1e9);
	return 0;
}

/*
 * The node's I/O scheduler for backup I/O (Low priority, caller "backup"), as `dwscale serve`
 * would hand it in; NULL with --no-io-scheduler, or if it cannot be opened (then plain I/O,
 * with a warning).
 */
static dw_io *open_io(bool plain)
{
	dw_io_config cfg;
	dw_io *io = NULL;
	int rc;

	if (plain)
		return NULL;
	dw_io_config_default(&cfg);
	rc = dw_io_open(&cfg, &io);
	if (rc < 0) {
		fprintf(stderr, "dwscale backup: no I/O scheduler (%s); using plain I/O\n",
			dw_strerror(rc));
		return NULL;
	}
	return io;
}

/* --key-file, else $DWSCALE_BACKUP_KEY_FILE, else NULL. */
static const char *key_path(const char *opt)
{
	const char *e = getenv("DWSCALE_BACKUP_KEY_FILE");

	return opt ? opt : (e && *e ? e : NULL);
}

/* Load the key named by --key-file or the environment; 0 with *have = false if none. */
static int load_key(const char *opt, uint8_t key[DW_BACKUP_KEY_LEN], bool *have)
{
	const char *path = key_path(opt);
	int rc;

	*have = false;
	if (!path)
		return 0;
	rc = dw_backup_key_load(path, key);
	if (rc < 0) {
		fprintf(stderr, "dwscale backup: cannot use key file %s: %s\n", path,
			rc == DW_ECONFIG ? "not a key (one line of 64 hex digits, from "
					   "'dwscale backup keygen')"
					 : dw_strerror(rc));
		return rc == DW_ENOTFOUND ? DW_EXIT_NOTFOUND : DW_EXIT_USAGE;
	}
	*have = true;
	return 0;
}

static int open_repo(const char *repo, const char *key_opt, dw_backup_repo **r)
{
	uint8_t key[DW_BACKUP_KEY_LEN];
	bool have = false;
	int rc;

	if (!repo)
		return dw__usage_error(CMD, "--repo REPO is required");
	rc = load_key(key_opt, key, &have);
	if (rc)
		return rc;
	rc = dw_backup_repo_open_key(repo, have ? key : NULL, r);
	memset(key, 0, sizeof(key));
	if (rc == DW_EAUTH) {
		if (have)
			fprintf(stderr,
				"dwscale backup: the key in %s is not the key of %s (nothing was "
				"read or changed)\n",
				key_path(key_opt), repo);
		else
			fprintf(stderr,
				"dwscale backup: %s is encrypted: give its key with --key-file "
				"FILE "
				"or DWSCALE_BACKUP_KEY_FILE\n",
				repo);
		return DW_EXIT_ERROR;
	}
	if (rc == DW_ENOTFOUND) {
		fprintf(stderr,
			"dwscale backup: %s is not a backup repository (create one with "
			"'dwscale backup init %s')\n",
			repo, repo);
		return DW_EXIT_NOTFOUND;
	}
	if (rc < 0)
		return fail("open", rc);
	return 0;
}

/* ---- init ----------------------------------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
	static const struct option lo[] = { { "block-size", required_argument, NULL, 'b' },
					    { "encrypt", no_argument, NULL, 'e' },
					    { "key-file", required_argument, NULL, 'K' },
					    { NULL, 0, NULL, 0 } };
	dw_backup_repo_config cfg;
	uint8_t key[DW_BACKUP_KEY_LEN];
	const char *key_opt = NULL;
	bool encrypt = false, have = false;
	uint64_t v;
	int c, rc;

	dw_backup_repo_config_default(&cfg);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'b' && parse_size(optarg, true, &v) == 0 && v <= DW_BACKUP_BLOCK_MAX) {
			cfg.block_size = (uint32_t)v;
			continue;
		}
		if (c == 'e') {
			encrypt = true;
			continue;
		}
		if (c == 'K') {
			key_opt = optarg;
			continue;
		}
		return dw__usage_error(CMD, "bad option or value '%s'", argv[optind - 1]);
	}
	if (optind + 1 != argc)
		return dw__usage_error(CMD, "init takes one REPO directory");
	if (encrypt) {
		rc = load_key(key_opt, key, &have);
		if (rc)
			return rc;
		if (!have)
			return dw__usage_error(CMD,
					       "--encrypt needs --key-file FILE (make one with "
					       "'dwscale backup keygen -o FILE')");
		cfg.key = key;
	} else if (key_opt) {
		return dw__usage_error(CMD, "--key-file without --encrypt");
	}
	rc = dw_backup_repo_init(argv[optind], &cfg);
	memset(key, 0, sizeof(key));
	if (rc == DW_EEXIST) {
		fprintf(stderr,
			"dwscale backup init: %s is not empty (a repository or other files "
			"are there; nothing was changed)\n",
			argv[optind]);
		return DW_EXIT_ERROR;
	}
	if (rc < 0)
		return fail("init", rc);
	printf("initialised %srepository %s\n", encrypt ? "encrypted (AES-256-GCM) " : "",
	       argv[optind]);
	return DW_EXIT_OK;
}

/* ---- keygen --------------------------------------------------------------------------------- */

/* A new key: printed, or written to a new file (mode 0600, never over an existing one). */
static int cmd_keygen(int argc, char **argv)
{
	uint8_t key[DW_BACKUP_KEY_LEN];
	char line[2 * DW_BACKUP_KEY_LEN + 2];
	const char *path = NULL;
	int fd, rc;

	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc)
			path = argv[++i];
		else
			return dw__usage_error(CMD, "keygen takes only [-o FILE]");
	}
	rc = dw_backup_key_generate(key);
	if (rc == 0)
		rc = dw_backup_key_format(key, line, sizeof(line));
	memset(key, 0, sizeof(key));
	if (rc < 0)
		return fail("keygen", rc);
	strcat(line, "\n");
	if (!path) {
		fputs(line, stdout);
		return DW_EXIT_OK;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "dwscale backup keygen: cannot create %s: %s%s\n", path,
			strerror(errno),
			errno == EEXIST ? " (an existing key is never replaced)" : "");
		return DW_EXIT_ERROR;
	}
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0) {
		fprintf(stderr, "dwscale backup keygen: cannot write %s: %s\n", path,
			strerror(errno));
		close(fd);
		unlink(path);
		return DW_EXIT_ERROR;
	}
	close(fd);
	memset(line, 0, sizeof(line));
	fprintf(stderr,
		"wrote a new backup key to %s: keep a copy; without it the backups "
		"cannot be read\n",
		path);
	return DW_EXIT_OK;
}

/* ---- create --------------------------------------------------------------------------------- */

struct cjob {
	struct ccreate *cc;
	const char *source;
	dw_backup_create_opts o;
	dw_backup_info info;
	dw_backup_stats st; /* protected by cc->mu */
	uint64_t expect;    /* bytes of the previous backup of this source, for an ETA */
	int rc;
	bool started, done; /* protected by cc->mu */
	pthread_t th;
};

struct ccreate {
	dw_backup_repo *r;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned running, limit; /* protected by mu */
	bool json;
};

static void on_progress(void *arg, const dw_backup_stats *s)
{
	struct cjob *j = arg;

	pthread_mutex_lock(&j->cc->mu);
	j->st = *s;
	pthread_mutex_unlock(&j->cc->mu);
}

static void on_warn(void *arg, const char *path, int err)
{
	struct cjob *j = arg;

	pthread_mutex_lock(&j->cc->mu);
	if (j->cc->json) {
		fputs("{\"event\":\"unreadable\",\"source\":", stdout);
		json_str(stdout, j->source);
		fputs(",\"path\":", stdout);
		json_str(stdout, path);
		printf(",\"error\":\"%s\"}\n", dw_err_name(err));
		fflush(stdout);
	} else {
		fprintf(stderr, "\rwarning: cannot read %s/%s: %s\033[K\n", j->source, path,
			dw_strerror(err));
	}
	pthread_mutex_unlock(&j->cc->mu);
}

static void on_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	struct cjob *j = arg;

	if (!j->cc->json)
		return;
	pthread_mutex_lock(&j->cc->mu);
	fputs("{\"event\":\"checkpoint\",\"source\":", stdout);
	json_str(stdout, j->source);
	printf(",\"id\":\"%s\",\"files\":%llu,\"bytes_read\":%llu,\"bytes_stored\":%llu}\n", id,
	       (unsigned long long)s->files, (unsigned long long)s->bytes_read,
	       (unsigned long long)s->bytes_stored);
	fflush(stdout);
	pthread_mutex_unlock(&j->cc->mu);
}

static void *job_main(void *arg)
{
	struct cjob *j = arg;

	j->rc = dw_backup_create(j->cc->r, &j->o, &j->info);
	pthread_mutex_lock(&j->cc->mu);
	j->done = true;
	j->cc->running--;
	pthread_cond_broadcast(&j->cc->cv);
	pthread_mutex_unlock(&j->cc->mu);
	return NULL;
}

static void print_done(struct cjob *j, bool json, double secs)
{
	const dw_backup_info *b = &j->info;
	char h1[32], h2[32];

	if (json) {
		fputs("{\"event\":\"done\",\"source\":", stdout);
		json_str(stdout, j->source);
		if (j->rc < 0) {
			printf(",\"error\":\"%s\",\"message\":", dw_err_name(j->rc));
			json_str(stdout, dw_strerror(j->rc));
			fputs("}\n", stdout);
			return;
		}
		printf(",\"id\":\"%s\",\"type\":\"%s\",\"parent\":", b->id,
		       dw_backup_type_name(b->type));
		if (b->parent[0])
			printf("\"%s\"", b->parent);
		else
			fputs("null", stdout);
		printf(",\"chain\":\"%s\",\"files\":%llu,\"dirs\":%llu,\"unreadable\":%llu,"
		       "\"files_changed\":%llu,\"bytes_total\":%llu,\"bytes_read\":%llu,"
		       "\"bytes_stored\":%llu,\"blocks_new\":%llu,\"blocks_reused\":%llu,"
		       "\"resumed\":%s,\"resumed_bytes\":%llu,\"run_bytes_read\":%llu,"
		       "\"seconds\":%.3f}\n",
		       b->chain, (unsigned long long)b->stats.files,
		       (unsigned long long)b->stats.dirs, (unsigned long long)b->stats.unreadable,
		       (unsigned long long)b->stats.files_changed,
		       (unsigned long long)b->stats.bytes_total,
		       (unsigned long long)b->stats.bytes_read,
		       (unsigned long long)b->stats.bytes_stored,
		       (unsigned long long)b->stats.blocks_new,
		       (unsigned long long)b->stats.blocks_reused, b->resumed ? "true" : "false",
		       (unsigned long long)b->resumed_bytes, (unsigned long long)b->run_bytes_read,
		       secs);
		return;
	}
	if (j->rc < 0) {
		fprintf(stderr, "\rdwscale backup create: %s: %s\033[K\n", j->source,
			dw_strerror(j->rc));
		return;
	}
	human_bytes(b->stats.bytes_total, h1, sizeof(h1));
	human_bytes(b->stats.bytes_stored, h2, sizeof(h2));
	printf("%s backup %s of %s%s%s%s: %llu files, %s, %s stored, %.1f s%s%s\n",
	       dw_backup_type_name(b->type), b->id, j->source, b->parent[0] ? " (parent " : "",
	       b->parent[0] ? b->parent : "", b->parent[0] ? ")" : "",
	       (unsigned long long)b->stats.files, h1, h2, secs,
	       b->stats.unreadable ? " (some files were unreadable)" : "",
	       b->resumed ? " (resumed from the checkpoint of an interrupted run)" : "");
}

/* The logical size of the newest backup of a source, for the ETA. */
struct latest_of {
	const char *source;
	uint64_t bytes;
};

static void latest_cb(void *arg, const dw_backup_info *b)
{
	struct latest_of *l = arg;

	if (strcmp(b->source, l->source) == 0)
		l->bytes = b->stats.bytes_total; /* oldest first: the last match is the newest */
}

static int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "full", no_argument, NULL, 'F' },
		{ "incremental", no_argument, NULL, 'I' },
		{ "json", no_argument, NULL, 'j' },
		{ "zstd-level", required_argument, NULL, 'z' },
		{ "threads", required_argument, NULL, 't' },
		{ "jobs", required_argument, NULL, 'J' },
		{ "ignore-inode-ctime", no_argument, NULL, 'i' },
		{ "no-fsync", no_argument, NULL, 'n' },
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "no-resume", no_argument, NULL, 'N' },
		{ "no-io-scheduler", no_argument, NULL, 'P' },
		{ "key-file", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_opt = NULL;
	struct ccreate cc = { 0 };
	dw_io *io = NULL;
	bool plain_io = false;
	const char *ckenv = getenv("DWSCALE_BACKUP_CHECKPOINT");
	uint64_t ckbytes = 64u << 20;
	bool noresume = false;
	struct cjob *jobs = NULL;
	const char *repo = NULL;
	dw_backup_type type = DW_BACKUP_AUTO;
	int level = DW_BACKUP_ZSTD_DEFAULT, threads = 0, fixed_jobs = 0;
	bool ignore = false, nofsync = false, tty = isatty(2);
	dw_backup_diskstats *ds = NULL;
	dw_backup_conc conc;
	dw_backup_conc_config ccfg;
	dw_backup_util_source src = { 0 };
	const char *paths[SOURCES_MAX + 1];
	size_t n, next = 0;
	uint64_t last_ns, last_bytes = 0;
	int c, rc, ret = DW_EXIT_OK;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			repo = optarg;
			break;
		case 'F':
		case 'I':
			if (type != DW_BACKUP_AUTO)
				return dw__usage_error(CMD, "--full and --incremental exclude "
							    "each other");
			type = c == 'F' ? DW_BACKUP_FULL : DW_BACKUP_INCREMENTAL;
			break;
		case 'j':
			cc.json = true;
			break;
		case 'z':
			level = atoi(optarg);
			if (level < 1 || level > 19)
				return dw__usage_error(CMD, "--zstd-level takes 1..19");
			break;
		case 't':
			threads = atoi(optarg);
			if (threads < 1 || threads > 16)
				return dw__usage_error(CMD, "--threads takes 1..16");
			break;
		case 'J':
			fixed_jobs = atoi(optarg);
			if (fixed_jobs < 1 || fixed_jobs > SOURCES_MAX)
				return dw__usage_error(CMD, "--jobs takes 1..%d", SOURCES_MAX);
			break;
		case 'i':
			ignore = true;
			break;
		case 'n':
			nofsync = true;
			break;
		case 'c':
			ckenv = optarg;
			break;
		case 'N':
			noresume = true;
			break;
		case 'P':
			plain_io = true;
			break;
		case 'K':
			key_opt = optarg;
			break;
		default:
			return dw__usage_error(CMD, "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (ckenv && *ckenv && parse_size(ckenv, true, &ckbytes) < 0)
		return dw__usage_error(CMD, "--checkpoint (or DWSCALE_BACKUP_CHECKPOINT) takes a "
					    "size such as 64M (0 = no checkpoints)");
	n = (size_t)(argc - optind);
	if (n == 0)
		return dw__usage_error(CMD, "create needs at least one SRC directory");
	if (n > SOURCES_MAX)
		return dw__usage_error(CMD, "at most %d sources at once", SOURCES_MAX);
	rc = open_repo(repo, key_opt, &cc.r);
	if (rc)
		return rc;
	jobs = calloc(n, sizeof(*jobs));
	if (!jobs) {
		dw_backup_repo_close(cc.r);
		return fail("create", -ENOMEM);
	}
	io = open_io(plain_io);
	pthread_mutex_init(&cc.mu, NULL);
	pthread_cond_init(&cc.cv, NULL);
	for (size_t i = 0; i < n; i++) {
		struct cjob *j = &jobs[i];
		char *rp = realpath(argv[optind + (int)i], NULL);

		j->cc = &cc;
		j->source = argv[optind + (int)i];
		paths[i] = j->source;
		dw_backup_create_opts_default(&j->o);
		j->o.source = j->source;
		j->o.type = type;
		j->o.zstd_level = level;
		j->o.threads = (unsigned)threads;
		j->o.ignore_inode_ctime = ignore;
		j->o.fsync = !nofsync;
		j->o.progress = on_progress;
		j->o.warn = on_warn;
		j->o.checkpoint = on_checkpoint;
		j->o.checkpoint_bytes = ckbytes;
		j->o.checkpoint_ms = ckbytes ? 5000 : 0;
		j->o.no_resume = noresume;
		j->o.io = io;
		j->o.arg = j;
		j->o.progress_ms = 200;
		if (rp) {
			struct latest_of lo2 = { .source = rp, .bytes = 0 };

			if (dw_backup_list(cc.r, latest_cb, &lo2) == 0)
				j->expect = lo2.bytes;
			free(rp);
		}
	}
	paths[n] = repo;
	if (dw_backup_diskstats_open(NULL, paths, n + 1, &ds) == 0)
		src = dw_backup_diskstats_source(ds);
	dw_backup_conc_config_default(&ccfg, ds ? dw_backup_diskstats_disks(ds) : 1);
	dw_backup_conc_init(&conc, &ccfg);
	cc.limit = fixed_jobs ? (unsigned)fixed_jobs : conc.limit;

	last_ns = dw_clock_now(NULL);
	pthread_mutex_lock(&cc.mu);
	for (;;) {
		struct timespec until;
		uint64_t now, busy = 0, bytes = 0, files = 0, expect = 0;
		size_t done = 0;

		while (next < n && cc.running < cc.limit) {
			struct cjob *j = &jobs[next++];

			if (pthread_create(&j->th, NULL, job_main, j) != 0) {
				j->rc = -EAGAIN;
				j->done = true;
				continue;
			}
			j->started = true;
			cc.running++;
		}
		for (size_t i = 0; i < n; i++) {
			done += jobs[i].done;
			bytes += jobs[i].done ? jobs[i].info.stats.bytes_total
					      : jobs[i].st.bytes_total;
			files += jobs[i].done ? jobs[i].info.stats.files : jobs[i].st.files;
			expect += jobs[i].expect;
		}
		if (done == n)
			break;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&cc.cv, &cc.mu, &until);

		now = dw_clock_now(NULL);
		if (now - last_ns < DW_NS_PER_SEC)
			continue;
		{
			double secs = (double)(now - last_ns) / 1e9;
			double rate = (double)(bytes - last_bytes) / secs;
			char hb[32], hr[32], eta[32] = "?";

			if (!fixed_jobs && src.read && src.read(src.ctx, &busy) == 0)
				cc.limit = dw_backup_conc_tick(&conc, busy, now, rate);
			if (expect > bytes && rate > 0)
				snprintf(eta, sizeof(eta), "%.0fs",
					 (double)(expect - bytes) / rate);
			if (cc.json) {
				printf("{\"event\":\"progress\",\"files\":%llu,\"bytes\":%llu,"
				       "\"rate\":%.0f,\"jobs\":%u,\"limit\":%u,\"util\":%.3f}\n",
				       (unsigned long long)files, (unsigned long long)bytes, rate,
				       cc.running, cc.limit, dw_ema_value(&conc.util));
				fflush(stdout);
			} else if (tty) {
				human_bytes(bytes, hb, sizeof(hb));
				human_bytes((uint64_t)rate, hr, sizeof(hr));
				fprintf(stderr,
					"\r%llu files, %s, %s/s, ETA %s, jobs %u/%u, disk %.0f%%"
					"\033[K",
					(unsigned long long)files, hb, hr, eta, cc.running,
					cc.limit, 100 * dw_ema_value(&conc.util));
			}
			last_ns = now;
			last_bytes = bytes;
		}
	}
	pthread_mutex_unlock(&cc.mu);
	if (tty && !cc.json)
		fprintf(stderr, "\r\033[K");
	for (size_t i = 0; i < n; i++) {
		struct cjob *j = &jobs[i];

		if (j->started)
			pthread_join(j->th, NULL);
		print_done(j, cc.json,
			   j->rc < 0 ? 0
				     : (double)(j->info.finished_ns - j->info.created_ns) / 1e9);
		if (j->rc < 0) {
			ret = fail("create", j->rc) == DW_EXIT_NOTFOUND ? DW_EXIT_NOTFOUND
									: DW_EXIT_ERROR;
		}
	}
	fflush(stdout);
	dw_backup_diskstats_close(ds);
	pthread_cond_destroy(&cc.cv);
	pthread_mutex_destroy(&cc.mu);
	free(jobs);
	dw_backup_repo_close(cc.r);
	dw_io_close(io);
	return ret;
}

/* ---- list ------------------------------------------------------------------------------------ */

struct lst {
	bool json;
	size_t n;
};

static void list_one(void *arg, const dw_backup_info *b)
{
	struct lst *l = arg;
	char when[32], hs[32], ht[32];

	iso_time(b->created_ns, when, sizeof(when));
	if (l->json) {
		printf("{\"id\":\"%s\",\"type\":\"%s\",\"parent\":", b->id,
		       dw_backup_type_name(b->type));
		if (b->parent[0])
			printf("\"%s\"", b->parent);
		else
			fputs("null", stdout);
		printf(",\"chain\":\"%s\",\"depth\":%u,\"created\":\"%s\",\"created_ns\":%llu,"
		       "\"source\":",
		       b->chain, b->depth, when, (unsigned long long)b->created_ns);
		json_str(stdout, b->source);
		printf(",\"files\":%llu,\"bytes_total\":%llu,\"bytes_stored\":%llu,"
		       "\"repo_bytes\":%llu,\"unreadable\":%llu}\n",
		       (unsigned long long)b->stats.files, (unsigned long long)b->stats.bytes_total,
		       (unsigned long long)b->stats.bytes_stored, (unsigned long long)b->repo_bytes,
		       (unsigned long long)b->stats.unreadable);
		l->n++;
		return;
	}
	if (l->n++ == 0)
		printf("%-28s %-11s %-20s %9s %10s %10s  %s\n", "ID", "TYPE", "CREATED", "FILES",
		       "SIZE", "STORED", "SOURCE / CHAIN");
	human_bytes(b->stats.bytes_total, ht, sizeof(ht));
	human_bytes(b->repo_bytes, hs, sizeof(hs));
	printf("%-28s %-11s %-20s %9llu %10s %10s  %s", b->id, dw_backup_type_name(b->type), when,
	       (unsigned long long)b->stats.files, ht, hs, b->source);
	if (b->depth)
		printf("  (chain %s, +%u)", b->chain, b->depth);
	putchar('\n');
}

/* ---- restore, check, prune, recover ---------------------------------------------------------- */

static void restore_warn(void *arg, const char *path, int err)
{
	(void)arg;
	fprintf(stderr, "warning: %s: %s\n", path, dw_strerror(err));
}

static void check_problem(void *arg, const char *id, const char *msg)
{
	bool json = *(bool *)arg;

	if (json) {
		fputs("{\"event\":\"problem\",\"id\":", stdout);
		json_str(stdout, id);
		fputs(",\"message\":", stdout);
		json_str(stdout, msg);
		fputs("}\n", stdout);
	} else {
		printf("problem: %s: %s\n", id[0] ? id : "(repository)", msg);
	}
}

static const char *reasons_text(unsigned r, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s%s%s", r & DW_PRUNE_COUNT ? "keep-last" : "",
		 (r & DW_PRUNE_COUNT) && (r & (DW_PRUNE_AGE | DW_PRUNE_SIZE)) ? "," : "",
		 r & DW_PRUNE_AGE ? "max-age" : "",
		 (r & DW_PRUNE_AGE) && (r & DW_PRUNE_SIZE) ? "," : "",
		 r & DW_PRUNE_SIZE ? "max-size" : "");
	return buf;
}

struct prn {
	bool json, dry;
};

static void prune_item(void *arg, const dw_backup_prune_item *it)
{
	struct prn *p = arg;
	char why[64], hb[32];

	reasons_text(it->reasons, why, sizeof(why));
	if (p->json) {
		printf("{\"event\":\"%s\",\"chain\":\"%s\",\"backups\":%u,\"bytes\":%llu,"
		       "\"reasons\":\"%s\",\"source\":",
		       p->dry ? "would_remove" : "removed", it->chain, it->backups,
		       (unsigned long long)it->bytes, why);
		json_str(stdout, it->source);
		fputs("}\n", stdout);
		return;
	}
	human_bytes(it->bytes, hb, sizeof(hb));
	printf("%s chain %s (%u backups of %s): %llu bytes (%s), because of %s\n",
	       p->dry ? "would remove" : "removed", it->chain, it->backups, it->source,
	       (unsigned long long)it->bytes, hb, why);
}

static void recover_item(void *arg, const char *id, bool cleaned, uint64_t bytes)
{
	bool json = *(bool *)arg;

	if (json)
		printf("{\"event\":\"%s\",\"id\":\"%s\",\"bytes\":%llu}\n",
		       cleaned ? "cleaned" : "running", id, (unsigned long long)bytes);
	else if (cleaned)
		printf("cleaned unfinished backup %s (%llu bytes)\n", id,
		       (unsigned long long)bytes);
	else
		printf("backup %s is still being written by a live process; left alone\n", id);
}

struct plist {
	dw_backup_partial *v;
	size_t n, cap;
};

static void partial_add(void *arg, const dw_backup_partial *p)
{
	struct plist *l = arg;

	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 8;
		dw_backup_partial *nv = nc > 4096 ? NULL : realloc(l->v, nc * sizeof(*nv));

		if (!nv)
			return; /* the rest are cleaned instead of resumed */
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = *p;
}

/*
 * Finish every create a killed process left with a checkpoint (each resumes from it, in this
 * process), so that recover loses no work that can be kept; what is left is cleaned after.
 */
static void resume_partials(dw_backup_repo *r, bool json, dw_backup_recover_result *res)
{
	struct plist l = { 0 };

	if (dw_backup_partials(r, partial_add, &l) < 0)
		return;
	for (size_t i = 0; i < l.n; i++) {
		const dw_backup_partial *p = &l.v[i];
		dw_backup_create_opts o;
		dw_backup_info info;
		int rc;

		dw_backup_create_opts_default(&o);
		o.source = p->source;
		o.type = p->type;
		snprintf(o.job_id, sizeof(o.job_id), "%s", p->id);
		rc = dw_backup_create(r, &o, &info);
		if (rc == 0 && info.resumed)
			res->jobs_resumed++;
		if (json) {
			printf("{\"event\":\"%s\",\"id\":\"%s\",\"source\":",
			       rc < 0	      ? "resume_failed"
			       : info.resumed ? "resumed"
					      : "redone",
			       p->id);
			json_str(stdout, p->source);
			if (rc < 0)
				printf(",\"error\":\"%s\"}\n", dw_err_name(rc));
			else
				printf(",\"resumed_bytes\":%llu,\"run_bytes_read\":%llu}\n",
				       (unsigned long long)info.resumed_bytes,
				       (unsigned long long)info.run_bytes_read);
		} else if (rc < 0) {
			printf("could not resume backup %s of %s: %s (its files are cleaned)\n",
			       p->id, p->source, dw_strerror(rc));
		} else {
			printf("%s backup %s of %s\n", info.resumed ? "resumed" : "redid", info.id,
			       p->source);
		}
		fflush(stdout);
	}
	free(l.v);
}

static int cmd_other(const char *verb, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "target", required_argument, NULL, 'T' },
		{ "path", required_argument, NULL, 'p' },
		{ "read-data", no_argument, NULL, 'R' },
		{ "keep-last", required_argument, NULL, 'k' },
		{ "max-age", required_argument, NULL, 'a' },
		{ "max-size", required_argument, NULL, 's' },
		{ "dry-run", no_argument, NULL, 'd' },
		{ "no-owners", no_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, 't' },
		{ "clean", no_argument, NULL, 'C' },
		{ "no-io-scheduler", no_argument, NULL, 'P' },
		{ "key-file", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_opt = NULL;
	bool plain_io = false;
	dw_io *io = NULL;
	const char *repo = NULL, *target = NULL, *path = NULL;
	int threads = 0;
	bool json = false, read_data = false, dry = false, owners = true, clean_only = false;
	dw_backup_retention pol;
	dw_backup_repo *r = NULL;
	int c, rc, ret = DW_EXIT_OK;
	uint64_t v;

	dw_backup_retention_default(&pol);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			repo = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'T':
			target = optarg;
			break;
		case 'p':
			path = optarg;
			break;
		case 'R':
			read_data = true;
			break;
		case 'd':
			dry = true;
			break;
		case 'o':
			owners = false;
			break;
		case 'C':
			clean_only = true;
			break;
		case 'P':
			plain_io = true;
			break;
		case 'K':
			key_opt = optarg;
			break;
		case 't':
			threads = atoi(optarg);
			if (threads < 1 || threads > 64)
				return dw__usage_error(CMD, "--threads takes 1..64");
			break;
		case 'k':
			if (parse_size(optarg, false, &v) < 0 || v > 1000000)
				return dw__usage_error(CMD, "--keep-last takes a count (0 = off)");
			pol.keep_last = (uint32_t)v;
			break;
		case 'a':
			if (strcmp(optarg, "0") == 0)
				pol.max_age_ns = 0;
			else if (parse_dur(optarg, &pol.max_age_ns) < 0)
				return dw__usage_error(CMD, "--max-age takes a duration such as "
							    "90d, 12h, 2w (0 = off)");
			break;
		case 's':
			if (parse_size(optarg, false, &pol.max_bytes) < 0)
				return dw__usage_error(CMD, "--max-size takes a size such as 100G, "
							    "500MiB (0 = off)");
			break;
		default:
			return dw__usage_error(CMD, "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (strcmp(verb, "restore") == 0) {
		dw_backup_restore_opts ro;
		dw_backup_stats st;

		if (optind + 1 != argc)
			return dw__usage_error(CMD, "restore takes one backup ID (or 'latest')");
		if (!target)
			return dw__usage_error(CMD, "restore needs --target DIR");
		rc = open_repo(repo, key_opt, &r);
		if (rc)
			return rc;
		dw_backup_restore_opts_default(&ro);
		ro.target = target;
		ro.path = path;
		ro.owners = owners;
		ro.warn = restore_warn;
		ro.threads = (unsigned)threads;
		io = open_io(plain_io);
		ro.io = io;
		rc = dw_backup_restore(r, argv[optind], &ro, &st);
		if (rc == DW_EEXIST) {
			fprintf(stderr,
				"dwscale backup restore: target %s is not empty; nothing was "
				"written\n",
				target);
			ret = DW_EXIT_ERROR;
		} else if (rc == DW_ENOTFOUND) {
			fprintf(stderr, "dwscale backup restore: no backup '%s' in %s\n",
				argv[optind], repo);
			ret = DW_EXIT_NOTFOUND;
		} else if (rc < 0) {
			ret = fail("restore", rc);
		} else if (json) {
			printf("{\"event\":\"done\",\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,"
			       "\"hardlinks\":%llu,\"specials\":%llu,\"bytes\":%llu,"
			       "\"skipped\":%llu}\n",
			       (unsigned long long)st.files, (unsigned long long)st.dirs,
			       (unsigned long long)st.symlinks, (unsigned long long)st.hardlinks,
			       (unsigned long long)st.specials, (unsigned long long)st.bytes_total,
			       (unsigned long long)st.unreadable);
		} else {
			char hb[32];

			human_bytes(st.bytes_total, hb, sizeof(hb));
			printf("restored %llu files, %llu directories, %llu links, %s into %s\n",
			       (unsigned long long)st.files, (unsigned long long)st.dirs,
			       (unsigned long long)(st.symlinks + st.hardlinks), hb, target);
		}
		goto out;
	}
	if (optind != argc)
		return dw__usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	rc = open_repo(repo, key_opt, &r);
	if (rc)
		return rc;
	if (strcmp(verb, "list") == 0) {
		struct lst l = { .json = json };

		rc = dw_backup_list(r, list_one, &l);
		if (rc < 0)
			ret = fail("list", rc);
		else if (!json && l.n == 0)
			printf("no backups in %s\n", repo);
	} else if (strcmp(verb, "check") == 0) {
		dw_backup_check_report rep;

		rc = dw_backup_check(r, read_data, check_problem, &json, &rep);
		if (rc < 0 && rc != DW_ECORRUPT) {
			ret = fail("check", rc);
			goto out;
		}
		if (json)
			printf("{\"event\":\"done\",\"backups\":%llu,\"blocks_checked\":%llu,"
			       "\"bytes_read\":%llu,\"errors\":%llu,\"incomplete\":%llu}\n",
			       (unsigned long long)rep.backups,
			       (unsigned long long)rep.blocks_checked,
			       (unsigned long long)rep.bytes_read, (unsigned long long)rep.errors,
			       (unsigned long long)rep.incomplete);
		else
			printf("checked %llu backups, %llu block references%s: %llu errors%s\n",
			       (unsigned long long)rep.backups,
			       (unsigned long long)rep.blocks_checked,
			       read_data ? " (data read and hashed)" : "",
			       (unsigned long long)rep.errors,
			       rep.incomplete ? " (unfinished backups present: run 'dwscale backup "
						"recover')"
					      : "");
		ret = rep.errors ? DW_EXIT_ERROR : DW_EXIT_OK;
	} else if (strcmp(verb, "prune") == 0) {
		struct prn p = { .json = json, .dry = dry };
		dw_backup_prune_result res;

		rc = dw_backup_prune(r, &pol, dry, prune_item, &p, &res);
		if (rc < 0) {
			ret = fail("prune", rc);
			goto out;
		}
		if (json)
			printf("{\"event\":\"done\",\"dry_run\":%s,\"chains\":%u,\"backups\":%u,"
			       "\"bytes_freed\":%llu,\"bytes_before\":%llu,\"bytes_after\":%llu,"
			       "\"size_cap_unmet\":%s}\n",
			       dry ? "true" : "false", res.chains_removed, res.backups_removed,
			       (unsigned long long)res.bytes_freed,
			       (unsigned long long)res.bytes_before,
			       (unsigned long long)res.bytes_after,
			       res.size_cap_unmet ? "true" : "false");
		else
			printf("%s %u chains (%u backups), %llu bytes; repository %llu -> %llu "
			       "bytes%s\n",
			       dry ? "would remove" : "removed", res.chains_removed,
			       res.backups_removed, (unsigned long long)res.bytes_freed,
			       (unsigned long long)res.bytes_before,
			       (unsigned long long)res.bytes_after,
			       res.size_cap_unmet ? " (over --max-size: only the newest chain of "
						    "each source is left)"
						  : "");
	} else if (strcmp(verb, "recover") == 0) {
		dw_backup_recover_result res, res2 = { 0 };

		if (!clean_only)
			resume_partials(r, json, &res2);
		rc = dw_backup_recover(r, recover_item, &json, &res);
		res.jobs_resumed = res2.jobs_resumed;
		if (rc < 0) {
			ret = fail("recover", rc);
			goto out;
		}
		if (json)
			printf("{\"event\":\"done\",\"resumed\":%u,\"cleaned\":%u,\"running\":%u,"
			       "\"bytes_freed\":%llu}\n",
			       res.jobs_resumed, res.jobs_cleaned, res.jobs_running,
			       (unsigned long long)res.bytes_freed);
		else
			printf("%u interrupted backups resumed, %u unfinished backups cleaned "
			       "(%llu "
			       "bytes), %u still running\n",
			       res.jobs_resumed, res.jobs_cleaned,
			       (unsigned long long)res.bytes_freed, res.jobs_running);
	}
out:
	dw_backup_repo_close(r);
	dw_io_close(io);
	return ret;
}

int dw__cmd_backup(int argc, char **argv)
{
	const char *verb;

	if (argc < 2)
		return dw__usage_error(CMD, "missing verb (init, keygen, create, restore, list, "
					    "check, prune, recover)");
	verb = argv[1];
	/* results go to stdout; the library's per-backup info lines would only repeat them */
	if (dw_log_get_level() == DW_LOG_INFO)
		dw_log_set_level(DW_LOG_WARN);
	if (strcmp(verb, "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(verb, "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (strcmp(verb, "create") == 0)
		return cmd_create(argc - 1, argv + 1);
	if (strcmp(verb, "restore") == 0 || strcmp(verb, "list") == 0 ||
	    strcmp(verb, "check") == 0 || strcmp(verb, "prune") == 0 ||
	    strcmp(verb, "recover") == 0)
		return cmd_other(verb, argc - 1, argv + 1);
	return dw__usage_error(CMD, "unknown verb '%s'", verb);
}
