// SPDX-License-Identifier: MIT
/*
 * BackupScalingManager: a job queue over one repository, the adaptive job limit, job metadata in
 * the store, the chains cache and the retention timer.
 *
 * Threads and locking
 * -------------------
 *   manager thread   dw_backup_mgr_start() .. stop(): every tick_ms it samples the utilisation
 *                    source, feeds dw_backup_conc with the bytes the jobs read since the last
 *                    tick, starts queued jobs while fewer than the limit run, and runs retention
 *                    when it is due;
 *   job threads      one per running job: dw_backup_create(), whose progress callback writes
 *                    checkpoints to the store (every checkpoint_bytes or checkpoint_ms);
 *   callers          submit, wait, jobs, recover, prune, and the scalable ops.
 *
 * m->mu guards the job table, the controller, the counters and the policy (fields marked
 * "protected by mu"); m->cv signals job completion and stop. Store writes happen outside mu
 * (the store is thread-safe), so a slow store never blocks submit or the metrics. The chains
 * cache has its own lock. Lock order: mu, then nothing.
 *
 * Job records, JSON at dw://internal/backup/<id>:
 *   {"id","state","source","repo","type","parent","checkpoint_bytes","files","bytes_read",
 *    "bytes_stored","error","updated_ns","pid"}
 * state: queued -> running -> done | failed; recovered (a crashed process's job, cleaned).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backup/backup_int.h"
#include "dwscale/cache.h"

#define KEY_PREFIX "dw://internal/backup/"

enum jstate { J_QUEUED, J_RUNNING, J_DONE, J_FAILED };

struct mjob {
	struct dw_backup_mgr *m;
	bool used;
	enum jstate state;
	char id[DW_BACKUP_ID_MAX];
	char *source;
	dw_backup_create_opts o;
	dw_backup_info info;
	int rc;
	pthread_t th;
	bool joinable;
	uint64_t bytes_read;	  /* protected by mu: for the throughput */
	uint64_t last_ckpt_bytes; /* job thread only */
	uint64_t last_ckpt_ns;	  /* job thread only */
	uint64_t durable_bytes;	  /* job thread only: bytes read at the engine's last checkpoint */
	_Atomic bool cancel;
};

struct dw_backup_mgr {
	dw_backup_mgr_config cfg;
	char *repo_path;
	dw_backup_repo *repo;
	dw_cache *chains;
	dw_backup_diskstats *ds;
	dw_backup_util_source util;
	dw_scalable scal;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct mjob *jobs;	       /* queue_max slots, protected by mu */
	unsigned running, queued;      /* protected by mu */
	dw_backup_conc conc;	       /* protected by mu */
	dw_backup_retention retention; /* protected by mu */
	uint64_t retention_interval_ms;
	uint64_t last_retention_ns, last_retention_wall; /* protected by mu */
	uint64_t last_tick_ns, last_bytes;		 /* protected by mu */
	uint64_t read_total; /* protected by mu: bytes read by every job so far */
	double throughput;   /* protected by mu */
	uint64_t bytes_stored_total, backups_total, backups_failed; /* protected by mu */
	bool stop;						    /* protected by mu */
	bool started;
	pthread_t th;
};

void dw_backup_mgr_config_default(dw_backup_mgr_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	dw_backup_retention_default(&cfg->retention);
	cfg->retention_interval_ms = 3600 * 1000;
	cfg->tick_ms = 1000;
	cfg->checkpoint_bytes = 64u << 20;
	cfg->checkpoint_ms = 5000;
	cfg->queue_max = 256;
}

/* ---- job records ------------------------------------------------------------------------------
 */

static int job_put(dw_backup_mgr *m, const char *id, const char *state, const char *source,
		   const char *type, const char *parent, const dw_backup_stats *st, uint64_t ckpt,
		   int error)
{
	char key[128];
	cJSON *o;
	char *text;
	int rc;

	if (!m->cfg.store)
		return 0;
	o = cJSON_CreateObject();
	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "state", state);
	cJSON_AddStringToObject(o, "source", source);
	cJSON_AddStringToObject(o, "repo", m->repo_path);
	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddStringToObject(o, "parent", parent ? parent : "");
	cJSON_AddNumberToObject(o, "checkpoint_bytes", (double)ckpt);
	cJSON_AddNumberToObject(o, "files", st ? (double)st->files : 0);
	cJSON_AddNumberToObject(o, "bytes_read", st ? (double)st->bytes_read : 0);
	cJSON_AddNumberToObject(o, "bytes_stored", st ? (double)st->bytes_stored : 0);
	cJSON_AddNumberToObject(o, "error", error);
	cJSON_AddNumberToObject(o, "updated_ns", (double)dw_clock_wall(m->cfg.clock));
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	snprintf(key, sizeof(key), KEY_PREFIX "%s", id);
	rc = dw_store_put(m->cfg.store, key, text, strlen(text));
	free(text);
	return rc;
}

static void copy_str(cJSON *o, const char *name, char *out, size_t cap)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static uint64_t get_num(cJSON *o, const char *name)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

static int job_parse(const void *val, size_t len, dw_backup_job *j)
{
	cJSON *o = cJSON_ParseWithLength(val, len);

	if (!o)
		return DW_ECORRUPT;
	memset(j, 0, sizeof(*j));
	copy_str(o, "id", j->id, sizeof(j->id));
	copy_str(o, "state", j->state, sizeof(j->state));
	copy_str(o, "source", j->source, sizeof(j->source));
	copy_str(o, "type", j->type, sizeof(j->type));
	copy_str(o, "parent", j->parent, sizeof(j->parent));
	j->checkpoint_bytes = get_num(o, "checkpoint_bytes");
	j->files = get_num(o, "files");
	j->bytes_read = get_num(o, "bytes_read");
	j->bytes_stored = get_num(o, "bytes_stored");
	j->updated_ns = get_num(o, "updated_ns");
	{
		cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");

		j->error = cJSON_IsNumber(e) ? (int)e->valuedouble : 0;
	}
	cJSON_Delete(o);
	return dw__id_valid(j->id) ? 0 : DW_ECORRUPT;
}

/* Each job record in the store whose repo is ours. */
static int scan_jobs(dw_backup_mgr *m, dw_backup_job_fn fn, void *arg)
{
	dw_store_iter *it = NULL;
	const char *key;
	const void *val;
	size_t len;
	int rc;

	if (!m->cfg.store)
		return DW_EUNSUPPORTED;
	rc = dw_store_scan(m->cfg.store, KEY_PREFIX, &it);
	if (rc < 0)
		return rc;
	while ((rc = dw_store_iter_next(it, &key, &val, &len)) == 1) {
		dw_backup_job j;
		cJSON *o = cJSON_ParseWithLength(val, len);
		char repo[DW__PATH_MAX] = "";

		if (o) {
			copy_str(o, "repo", repo, sizeof(repo));
			cJSON_Delete(o);
		}
		if (strcmp(repo, m->repo_path) != 0 || job_parse(val, len, &j) < 0)
			continue;
		fn(arg, &j);
	}
	dw_store_iter_free(it);
	return rc < 0 ? rc : 0;
}

/* ---- chains cache -------------------------------------------------------------------------------
 */

/* key: chain (full) id; value: the chain's backup ids, oldest first, one per line. */
static int chains_rebuild(dw_backup_mgr *m)
{
	struct dw__blist l;
	int rc = dw__blist_load(m->repo, &l);

	if (rc < 0)
		return rc;
	dw_cache_delete_prefix(m->chains, "", 0);
	for (size_t i = 0; i < l.n; i++) {
		const char *chain = l.v[i].chain;
		char *cur = NULL, *val;
		size_t clen = 0, n;

		if (dw_cache_get(m->chains, chain, strlen(chain), (void **)&cur, &clen) < 0)
			cur = NULL;
		n = clen + strlen(l.v[i].id) + 2;
		val = dw_malloc(n);
		if (!val) {
			dw_free(cur);
			rc = -ENOMEM;
			break;
		}
		snprintf(val, n, "%.*s%s\n", (int)clen, cur ? cur : "", l.v[i].id);
		dw_cache_put(m->chains, chain, strlen(chain), val, strlen(val));
		dw_free(val);
		dw_free(cur);
	}
	dw__blist_free(&l);
	return rc;
}

size_t dw_backup_mgr_chains(dw_backup_mgr *m)
{
	dw_cache_stats st;

	dw_cache_stats_get(m->chains, &st);
	return st.entries;
}

/* ---- jobs -------------------------------------------------------------------------------------
 */

static void job_progress(void *arg, const dw_backup_stats *s)
{
	struct mjob *j = arg;
	dw_backup_mgr *m = j->m;
	uint64_t now = dw_clock_now(m->cfg.clock);

	pthread_mutex_lock(&m->mu);
	m->read_total += s->bytes_read - j->bytes_read;
	j->bytes_read = s->bytes_read;
	pthread_mutex_unlock(&m->mu);
	if (s->bytes_read - j->last_ckpt_bytes >= m->cfg.checkpoint_bytes ||
	    now - j->last_ckpt_ns >= m->cfg.checkpoint_ms * DW_NS_PER_MS) {
		job_put(m, j->id, "running", j->source, dw_backup_type_name(j->o.type), NULL, s,
			j->durable_bytes, 0);
		j->last_ckpt_bytes = s->bytes_read;
		j->last_ckpt_ns = now;
	}
}

/* The engine made a checkpoint durable: the record says how far a resume would start. */
static void job_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	struct mjob *j = arg;

	(void)id;
	j->durable_bytes = s->bytes_read;
	job_put(j->m, j->id, "running", j->source, dw_backup_type_name(j->o.type), NULL, s,
		j->durable_bytes, 0);
	j->last_ckpt_bytes = s->bytes_read;
	j->last_ckpt_ns = dw_clock_now(j->m->cfg.clock);
}

static void *job_main(void *arg)
{
	struct mjob *j = arg;
	dw_backup_mgr *m = j->m;
	int rc;

	j->last_ckpt_ns = dw_clock_now(m->cfg.clock);
	job_put(m, j->id, "running", j->source, dw_backup_type_name(j->o.type), NULL, NULL, 0, 0);
	rc = dw_backup_create(m->repo, &j->o, &j->info);
	if (rc == 0) {
		job_put(m, j->id, "done", j->source, dw_backup_type_name(j->info.type),
			j->info.parent, &j->info.stats, j->info.stats.bytes_read, 0);
		chains_rebuild(m);
	} else {
		job_put(m, j->id, "failed", j->source, dw_backup_type_name(j->o.type), NULL, NULL,
			0, rc);
	}
	pthread_mutex_lock(&m->mu);
	j->rc = rc;
	j->state = rc == 0 ? J_DONE : J_FAILED;
	m->running--;
	if (rc == 0) {
		m->backups_total++;
		m->bytes_stored_total += j->info.stats.bytes_stored;
	} else {
		m->backups_failed++;
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* Start queued jobs while under the limit, oldest first. Called with mu held. */
static void dispatch(dw_backup_mgr *m)
{
	while (m->queued > 0 && m->running < m->conc.limit) {
		struct mjob *best = NULL;

		for (unsigned i = 0; i < m->cfg.queue_max; i++) {
			struct mjob *j = &m->jobs[i];

			if (j->used && j->state == J_QUEUED &&
			    (!best || strcmp(j->id, best->id) < 0))
				best = j;
		}
		if (!best)
			break;
		best->state = J_RUNNING;
		m->queued--;
		m->running++;
		if (pthread_create(&best->th, NULL, job_main, best) != 0) {
			best->state = J_FAILED;
			best->rc = -EAGAIN;
			m->running--;
			pthread_cond_broadcast(&m->cv);
			continue;
		}
		best->joinable = true;
	}
}

/* One controller tick. Called with mu held. */
static void tick(dw_backup_mgr *m, uint64_t now)
{
	uint64_t busy = 0, bytes = m->read_total;

	if (m->last_tick_ns && now > m->last_tick_ns) {
		double dt = (double)(now - m->last_tick_ns) / 1e9;

		m->throughput = bytes >= m->last_bytes ? (double)(bytes - m->last_bytes) / dt : 0;
	}
	m->last_tick_ns = now;
	m->last_bytes = bytes;
	if (m->util.read && m->util.read(m->util.ctx, &busy) == 0)
		dw_backup_conc_tick(&m->conc, busy, now, m->throughput);
	dispatch(m);
}

static void *mgr_main(void *arg)
{
	dw_backup_mgr *m = arg;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		uint64_t now = dw_clock_now(m->cfg.clock);
		struct timespec until;

		tick(m, now);
		if (m->retention_interval_ms &&
		    now - m->last_retention_ns >= m->retention_interval_ms * DW_NS_PER_MS) {
			m->last_retention_ns = now;
			pthread_mutex_unlock(&m->mu);
			dw_backup_mgr_prune(m, false, NULL, NULL, NULL); /* DW_ELOCKED: next time */
			pthread_mutex_lock(&m->mu);
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(m->cfg.tick_ms / 1000);
		until.tv_nsec += (long)(m->cfg.tick_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cv, &m->mu, &until);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* ---- scalable ---------------------------------------------------------------------------------
 */

static int s_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_backup_mgr *m = self;
	double v[10];
	static const struct {
		const char *name, *unit, *help;
		dw_metric_kind kind;
	} d[10] = {
		{ "jobs_running", "", "backup jobs running", DW_METRIC_GAUGE },
		{ "jobs_queued", "", "backup jobs waiting for a slot", DW_METRIC_GAUGE },
		{ "jobs_limit", "", "current MaxConcurrentJobs", DW_METRIC_GAUGE },
		{ "disk_util_ema", "ratio", "EMA of the busiest disk's utilisation",
		  DW_METRIC_GAUGE },
		{ "throughput_bytes_per_second", "bytes", "bytes read by jobs per second",
		  DW_METRIC_GAUGE },
		{ "bytes_stored_total", "bytes", "bytes added to the repository",
		  DW_METRIC_COUNTER },
		{ "backups_total", "", "backups completed", DW_METRIC_COUNTER },
		{ "backups_failed_total", "", "backups that failed", DW_METRIC_COUNTER },
		{ "chains", "", "chains in the repository", DW_METRIC_GAUGE },
		{ "last_retention_run_seconds", "seconds", "wall time of the last retention run",
		  DW_METRIC_GAUGE },
	};

	pthread_mutex_lock(&m->mu);
	v[0] = m->running;
	v[1] = m->queued;
	v[2] = m->conc.limit;
	v[3] = dw_ema_value(&m->conc.util);
	v[4] = m->throughput;
	v[5] = (double)m->bytes_stored_total;
	v[6] = (double)m->backups_total;
	v[7] = (double)m->backups_failed;
	v[9] = (double)m->last_retention_wall / 1e9;
	pthread_mutex_unlock(&m->mu);
	v[8] = (double)dw_backup_mgr_chains(m);
	for (int i = 0; i < 10; i++) {
		dw_metric mt = { .name = d[i].name,
				 .value = v[i],
				 .unit = d[i].unit,
				 .help = d[i].help,
				 .kind = d[i].kind };

		fn(arg, &mt);
	}
	return 0;
}

#define NLIMITS 8

static void limits_fill(dw_backup_mgr *m, dw_limit l[NLIMITS])
{
	l[0] = (dw_limit){ "keep_last",
			   m->retention.keep_last,
			   NULL,
			   0,
			   1e6,
			   "",
			   "chains whose backups are all older than the newest N go (0 = off)" };
	l[1] = (dw_limit){ "max_age_seconds",
			   (double)m->retention.max_age_ns / 1e9,
			   NULL,
			   0,
			   1e10,
			   "seconds",
			   "chains whose newest backup is older go (0 = off)" };
	l[2] = (dw_limit){ "max_bytes",
			   (double)m->retention.max_bytes,
			   NULL,
			   0,
			   1.8e19,
			   "bytes",
			   "repository size cap, oldest chains go first (0 = off)" };
	l[3] = (dw_limit){ "jobs_min", m->conc.cfg.min, NULL, 1, 64, "", "lowest job limit" };
	l[4] = (dw_limit){ "jobs_max", m->conc.cfg.max, NULL, 1, 64, "", "highest job limit" };
	l[5] = (dw_limit){ "util_low",
			   m->conc.cfg.low_util,
			   NULL,
			   0.01,
			   1,
			   "ratio",
			   "below this utilisation the limit rises" };
	l[6] = (dw_limit){ "util_high",
			   m->conc.cfg.high_util,
			   NULL,
			   0.01,
			   1,
			   "ratio",
			   "above this utilisation the limit may fall" };
	l[7] = (dw_limit){ "retention_interval_seconds",
			   (double)m->retention_interval_ms / 1e3,
			   NULL,
			   0,
			   1e7,
			   "seconds",
			   "retention timer (0 = on demand only)" };
}

static int s_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_backup_mgr *m = self;
	dw_limit l[NLIMITS];

	pthread_mutex_lock(&m->mu);
	limits_fill(m, l);
	pthread_mutex_unlock(&m->mu);
	for (int i = 0; i < NLIMITS; i++)
		fn(arg, &l[i]);
	return 0;
}

static int s_reconfigure(void *self, const dw_limit_change *c, size_t n, char *err, size_t elen)
{
	dw_backup_mgr *m = self;
	dw_limit l[NLIMITS];
	double v[NLIMITS];
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	limits_fill(m, l);
	for (int i = 0; i < NLIMITS; i++)
		v[i] = l[i].value;
	for (size_t k = 0; k < n && rc == 0; k++) {
		int i;

		for (i = 0; i < NLIMITS; i++) {
			if (strcmp(c[k].name, l[i].name) == 0)
				break;
		}
		if (i == NLIMITS) {
			snprintf(err, elen, "unknown limit '%s'", c[k].name);
			rc = DW_ELIMIT;
			break;
		}
		rc = dw_limit_check(&l[i], &c[k], i != 5 && i != 6, err, elen);
		if (rc == 0)
			v[i] = c[k].value;
	}
	if (rc == 0 && v[3] > v[4]) {
		snprintf(err, elen, "jobs_min (%g) is above jobs_max (%g)", v[3], v[4]);
		rc = DW_ELIMIT;
	}
	if (rc == 0 && v[5] >= v[6]) {
		snprintf(err, elen, "util_low (%g) must be below util_high (%g)", v[5], v[6]);
		rc = DW_ELIMIT;
	}
	if (rc == 0) {
		m->retention.keep_last = (uint32_t)v[0];
		m->retention.max_age_ns = (uint64_t)(v[1] * 1e9);
		m->retention.max_bytes = (uint64_t)v[2];
		m->conc.cfg.min = (unsigned)v[3];
		m->conc.cfg.max = (unsigned)v[4];
		m->conc.cfg.low_util = v[5];
		m->conc.cfg.high_util = v[6];
		m->retention_interval_ms = (uint64_t)(v[7] * 1e3);
		if (m->conc.limit < m->conc.cfg.min)
			m->conc.limit = m->conc.cfg.min;
		if (m->conc.limit > m->conc.cfg.max)
			m->conc.limit = m->conc.cfg.max;
		dispatch(m);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static dw_bp_state s_state(void *self)
{
	dw_backup_mgr *m = self;
	double fill;

	pthread_mutex_lock(&m->mu);
	fill = (double)(m->queued + m->running) / m->cfg.queue_max;
	pthread_mutex_unlock(&m->mu);
	if (fill >= 1.0)
		return DW_BP_SHEDDING;
	if (fill >= 0.8)
		return DW_BP_CRITICAL;
	return fill >= 0.5 ? DW_BP_WARNING : DW_BP_NORMAL;
}

static const dw_scalable_ops scal_ops = { s_metrics, s_limits, s_reconfigure, s_state };

const dw_scalable *dw_backup_mgr_scalable(dw_backup_mgr *m)
{
	return &m->scal;
}

/* ---- lifecycle ----------------------------------------------------------------------------------
 */

int dw_backup_mgr_open(const dw_backup_mgr_config *cfg, dw_backup_mgr **out)
{
	dw_backup_mgr *m;
	dw_cache_config cc;
	dw_backup_conc_config conc;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->repo || cfg->tick_ms == 0 || cfg->queue_max == 0 ||
	    cfg->queue_max > 65536)
		return DW_ECONFIG;
	m = dw_calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	m->repo_path = realpath(cfg->repo, NULL);
	if (!m->repo_path) {
		rc = DW_ENOTFOUND;
		goto fail;
	}
	rc = dw_backup_repo_open(m->repo_path, &m->repo);
	if (rc < 0)
		goto fail;
	m->jobs = dw_calloc(cfg->queue_max, sizeof(*m->jobs));
	if (!m->jobs) {
		rc = -ENOMEM;
		goto fail;
	}
	if (cfg->util) {
		m->util = *cfg->util;
	} else {
		const char *paths[1] = { m->repo_path };

		if (dw_backup_diskstats_open(NULL, paths, 1, &m->ds) == 0)
			m->util = dw_backup_diskstats_source(m->ds);
	}
	conc = cfg->conc;
	if (conc.max == 0)
		dw_backup_conc_config_default(&conc, m->ds ? dw_backup_diskstats_disks(m->ds) : 1);
	rc = dw_backup_conc_init(&m->conc, &conc);
	if (rc < 0)
		goto fail;
	m->retention = cfg->retention;
	if (!m->retention.clock)
		m->retention.clock = cfg->clock;
	m->retention_interval_ms = cfg->retention_interval_ms;
	m->last_retention_ns = dw_clock_now(cfg->clock);
	dw_cache_config_default(&cc);
	cc.max_entries = 1u << 20;
	cc.max_bytes = 0;
	cc.name = "backup_chains";
	rc = dw_cache_open(&cc, &m->chains);
	if (rc < 0)
		goto fail;
	rc = chains_rebuild(m);
	if (rc < 0)
		goto fail;
	m->scal = (dw_scalable){ .name = "backup", .ops = &scal_ops, .self = m };
	*out = m;
	return 0;
fail:
	dw_backup_mgr_close(m);
	return rc;
}

int dw_backup_mgr_start(dw_backup_mgr *m)
{
	int rc;

	if (m->started)
		return 0;
	m->stop = false;
	rc = -pthread_create(&m->th, NULL, mgr_main, m);
	if (rc == 0)
		m->started = true;
	return rc;
}

void dw_backup_mgr_stop(dw_backup_mgr *m)
{
	if (!m->started)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->th, NULL);
	m->started = false;
}

void dw_backup_mgr_close(dw_backup_mgr *m)
{
	if (!m)
		return;
	if (m->started)
		dw_backup_mgr_stop(m);
	if (m->jobs) {
		pthread_mutex_lock(&m->mu);
		for (unsigned i = 0; i < m->cfg.queue_max; i++) {
			struct mjob *j = &m->jobs[i];

			if (j->used && j->state == J_QUEUED) {
				j->state = J_FAILED;
				j->rc = DW_ECANCELED;
				m->queued--;
			}
		}
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
		for (unsigned i = 0; i < m->cfg.queue_max; i++) {
			struct mjob *j = &m->jobs[i];

			if (j->joinable)
				pthread_join(j->th, NULL);
			free(j->source);
		}
		dw_free(m->jobs);
	}
	dw_cache_close(m->chains);
	dw_backup_diskstats_close(m->ds);
	dw_backup_repo_close(m->repo);
	free(m->repo_path);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	dw_free(m);
}

/* ---- submit, wait, recover, prune ---------------------------------------------------------------
 */

struct find_unfinished {
	const char *source;
	char id[DW_BACKUP_ID_MAX];
	dw_backup_mgr *m;
};

static bool running_here(dw_backup_mgr *m, const char *id)
{
	bool here = false;

	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->cfg.queue_max; i++) {
		if (m->jobs[i].used && strcmp(m->jobs[i].id, id) == 0 &&
		    (m->jobs[i].state == J_QUEUED || m->jobs[i].state == J_RUNNING))
			here = true;
	}
	pthread_mutex_unlock(&m->mu);
	return here;
}

static void find_unfinished_cb(void *arg, const dw_backup_job *j)
{
	struct find_unfinished *f = arg;

	if ((strcmp(j->state, "queued") == 0 || strcmp(j->state, "running") == 0) &&
	    strcmp(j->source, f->source) == 0 && !running_here(f->m, j->id))
		snprintf(f->id, sizeof(f->id), "%s", j->id);
}

int dw_backup_mgr_submit(dw_backup_mgr *m, const dw_backup_create_opts *o,
			 char id[DW_BACKUP_ID_MAX])
{
	struct mjob *j = NULL;
	char *src;
	struct find_unfinished f = { .m = m };

	if (!o || !o->source)
		return DW_EUSAGE;
	src = realpath(o->source, NULL);
	if (!src)
		return DW_ENOTFOUND;
	f.source = src;
	if (m->cfg.store)
		scan_jobs(m, find_unfinished_cb, &f); /* resume: reuse the dead job's id */
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->cfg.queue_max && !j; i++) {
		if (!m->jobs[i].used)
			j = &m->jobs[i];
	}
	for (unsigned i = 0; i < m->cfg.queue_max && !j; i++) {
		if (m->jobs[i].state == J_DONE || m->jobs[i].state == J_FAILED)
			j = &m->jobs[i]; /* a finished job nobody waited for */
	}
	if (!j) {
		pthread_mutex_unlock(&m->mu);
		free(src);
		return DW_ESHED;
	}
	if (j->joinable) {
		pthread_t th = j->th;

		j->joinable = false;
		j->state = J_QUEUED; /* reserved while its old thread is joined */
		j->used = true;
		pthread_mutex_unlock(&m->mu);
		pthread_join(th, NULL);
		pthread_mutex_lock(&m->mu);
	}
	free(j->source);
	memset(j, 0, sizeof(*j));
	j->m = m;
	j->used = true;
	j->state = J_QUEUED;
	j->source = src;
	j->o = *o;
	j->o.source = j->source;
	j->o.progress = job_progress;
	if (!j->o.io)
		j->o.io = m->cfg.io;
	j->o.checkpoint = job_checkpoint;
	j->o.checkpoint_bytes = m->cfg.checkpoint_bytes;
	j->o.checkpoint_ms =
		(uint32_t)(m->cfg.checkpoint_ms > UINT32_MAX ? UINT32_MAX : m->cfg.checkpoint_ms);
	j->o.arg = j;
	j->o.warn = NULL;
	j->o.cancel = &j->cancel;
	if (j->o.progress_ms == 0 || j->o.progress_ms > m->cfg.checkpoint_ms)
		j->o.progress_ms =
			(uint32_t)(m->cfg.checkpoint_ms < 1000 ? m->cfg.checkpoint_ms : 1000);
	if (o->job_id[0] && dw__id_valid(o->job_id))
		snprintf(j->id, sizeof(j->id), "%s", o->job_id);
	else if (f.id[0])
		snprintf(j->id, sizeof(j->id), "%s", f.id);
	else
		dw__id_new(dw_clock_wall(m->cfg.clock), j->id);
	snprintf(j->o.job_id, sizeof(j->o.job_id), "%s", j->id);
	snprintf(id, DW_BACKUP_ID_MAX, "%s", j->id);
	m->queued++;
	pthread_mutex_unlock(&m->mu);
	job_put(m, id, "queued", src, dw_backup_type_name(o->type), NULL, NULL, 0, 0);
	pthread_mutex_lock(&m->mu);
	if (m->started)
		dispatch(m);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int dw_backup_mgr_wait(dw_backup_mgr *m, const char *id, dw_backup_info *out)
{
	struct mjob *j = NULL;
	int rc;

	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->cfg.queue_max; i++) {
		if (m->jobs[i].used && strcmp(m->jobs[i].id, id) == 0)
			j = &m->jobs[i];
	}
	if (!j) {
		pthread_mutex_unlock(&m->mu);
		return DW_ENOTFOUND;
	}
	while (j->state == J_QUEUED || j->state == J_RUNNING)
		pthread_cond_wait(&m->cv, &m->mu);
	rc = j->rc;
	if (rc == 0 && out)
		*out = j->info;
	if (j->joinable) {
		pthread_t th = j->th;

		j->joinable = false;
		pthread_mutex_unlock(&m->mu);
		pthread_join(th, NULL);
		return rc;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int dw_backup_mgr_jobs(dw_backup_mgr *m, dw_backup_job_fn fn, void *arg)
{
	return scan_jobs(m, fn, arg);
}

struct rec_list {
	dw_backup_mgr *m;
	dw_backup_job *v;
	size_t n, cap;
	int err;
};

static void rec_collect(void *arg, const dw_backup_job *j)
{
	struct rec_list *l = arg;

	if (strcmp(j->state, "queued") != 0 && strcmp(j->state, "running") != 0)
		return;
	if (running_here(l->m, j->id))
		return;
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 16;
		dw_backup_job *nv = nc > 65536 ? NULL : dw_realloc(l->v, nc * sizeof(*nv));

		if (!nv) {
			l->err = -ENOMEM;
			return;
		}
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = *j;
}

int dw_backup_mgr_recover(dw_backup_mgr *m, bool resubmit, dw_backup_job_fn fn, void *arg,
			  unsigned *count)
{
	struct rec_list l = { .m = m };
	int rc;

	if (count)
		*count = 0;
	rc = scan_jobs(m, rec_collect, &l);
	if (rc == 0)
		rc = l.err;
	if (rc == 0) {
		/* partial files of dead jobs; with resubmit, those with a checkpoint stay to resume
		 */
		int lock = dw__repo_lock(m->repo, "lock", false, false);

		rc = lock < 0 ? lock : dw__recover(m->repo, resubmit, NULL, NULL, NULL);
		if (lock >= 0)
			close(lock);
	}
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		dw_backup_job *j = &l.v[i];
		char id[DW_BACKUP_ID_MAX];

		if (fn)
			fn(arg, j);
		job_put(m, j->id, "recovered", j->source, j->type, j->parent, NULL,
			j->checkpoint_bytes, 0);
		if (count)
			(*count)++;
		if (resubmit) {
			dw_backup_create_opts o;

			dw_backup_create_opts_default(&o);
			o.source = j->source;
			o.type = strcmp(j->type, "full") == 0	       ? DW_BACKUP_FULL
				 : strcmp(j->type, "incremental") == 0 ? DW_BACKUP_INCREMENTAL
								       : DW_BACKUP_AUTO;
			/* the same id: the create resumes from its checkpoint if it left one */
			snprintf(o.job_id, sizeof(o.job_id), "%s", j->id);
			rc = dw_backup_mgr_submit(m, &o, id);
			if (rc == DW_ENOTFOUND)
				rc = 0; /* the source is gone: nothing to resume */
		}
	}
	dw_free(l.v);
	return rc;
}

int dw_backup_mgr_prune(dw_backup_mgr *m, bool dry_run, dw_backup_prune_fn fn, void *arg,
			dw_backup_prune_result *out)
{
	dw_backup_retention pol;
	dw_backup_prune_result res;
	int rc;

	pthread_mutex_lock(&m->mu);
	pol = m->retention;
	pthread_mutex_unlock(&m->mu);
	rc = dw_backup_prune(m->repo, &pol, dry_run, fn, arg, &res);
	if (rc == 0 && !dry_run) {
		chains_rebuild(m);
		pthread_mutex_lock(&m->mu);
		m->last_retention_wall = dw_clock_wall(m->cfg.clock);
		pthread_mutex_unlock(&m->mu);
	}
	if (out)
		*out = res;
	return rc;
}
