// SPDX-License-Identifier: MIT
/*
 * Backup manager: jobs run under the limit with their metadata in a real SQLite store; a job
 * left "running" by a dead process is found, cleaned and run again (resumed from its checkpoint
 * when it left one); a new submit for the same source takes over the dead job's id; the limit
 * follows an injected utilisation source; limits are reconfigured as a whole or not at all; a full
 * queue sheds.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "dwscale/store.h"
#include "backup_test_util.h"

struct fx {
	char *tmp, *repo, *src[3];
	dw_store *store;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char uri[4200];

	f->tmp = tu_mkdtemp("backup-mgr");
	f->repo = tu_join(f->tmp, "repo");
	if (dw_backup_repo_init(f->repo, NULL) != 0)
		return -1;
	for (int i = 0; i < 3; i++) {
		char name[16];

		snprintf(name, sizeof(name), "src%d", i);
		f->src[i] = tu_join(f->tmp, name);
		mkdir(f->src[i], 0755);
		tu_write(f->src[i], "a", 100000, (uint32_t)i + 1, 0644);
		tu_write(f->src[i], "b", 10, (uint32_t)i + 7, 0644);
	}
	snprintf(uri, sizeof(uri), "sqlite:%s/store.db", f->tmp);
	if (dw_store_open(uri, &f->store) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dw_store_close(f->store);
	tu_rm_rf(f->tmp);
	for (int i = 0; i < 3; i++)
		free(f->src[i]);
	free(f->tmp);
	free(f->repo);
	free(f);
	return 0;
}

/* A utilisation source the test controls: busy_ms advances by util * elapsed each read. */
struct fake_util {
	_Atomic uint64_t busy;
	_Atomic int idle; /* 1: report 0 % busy */
};

static int fake_read(void *ctx, uint64_t *busy)
{
	struct fake_util *u = ctx;

	*busy = atomic_load(&u->busy);
	return 0;
}

static void config(struct fx *f, dw_backup_mgr_config *cfg, dw_backup_util_source *src,
		   struct fake_util *u)
{
	dw_backup_mgr_config_default(cfg);
	cfg->repo = f->repo;
	cfg->store = f->store;
	cfg->tick_ms = 5;
	cfg->retention_interval_ms = 0;
	src->read = fake_read;
	src->ctx = u;
	cfg->util = src;
}

struct jobs_seen {
	int done, recovered, running;
	dw_backup_job last;
};

static void count_jobs(void *arg, const dw_backup_job *j)
{
	struct jobs_seen *s = arg;

	s->done += strcmp(j->state, "done") == 0;
	s->recovered += strcmp(j->state, "recovered") == 0;
	s->running += strcmp(j->state, "running") == 0;
	s->last = *j;
}

static void test_jobs_run_and_are_recorded(void **state)
{
	struct fx *f = *state;
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	dw_backup_create_opts o;
	dw_backup_info info;
	char ids[3][DW_BACKUP_ID_MAX];
	struct jobs_seen seen = { 0 };
	void *val;
	size_t len;
	char key[128];

	config(f, &cfg, &src, &u);
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_string_equal(dw_backup_mgr_scalable(m)->name, "backup");
	dw_backup_create_opts_default(&o);
	o.fsync = false;
	for (int i = 0; i < 3; i++) {
		o.source = f->src[i];
		assert_int_equal(dw_backup_mgr_submit(m, &o, ids[i]), 0);
	}
	assert_int_equal(dw_backup_mgr_start(m), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(dw_backup_mgr_wait(m, ids[i], &info), 0);
		assert_string_equal(info.id, ids[i]); /* the job id is the backup id */
		assert_int_equal(info.type, DW_BACKUP_FULL);
	}
	assert_int_equal(dw_backup_mgr_chains(m), 3);
	assert_int_equal(dw_backup_mgr_jobs(m, count_jobs, &seen), 0);
	assert_int_equal(seen.done, 3);
	snprintf(key, sizeof(key), "dw://internal/backup/%s", ids[0]);
	assert_int_equal(dw_store_get(f->store, key, &val, &len), 0);
	assert_non_null(strstr(val, "\"state\":\"done\""));
	assert_non_null(strstr(val, "\"bytes_read\":100010"));
	dw_free(val);
	/* a second round makes incrementals on the same chains */
	o.source = f->src[0];
	assert_int_equal(dw_backup_mgr_submit(m, &o, ids[0]), 0);
	assert_int_equal(dw_backup_mgr_wait(m, ids[0], &info), 0);
	assert_int_equal(info.type, DW_BACKUP_INCREMENTAL);
	assert_int_equal(dw_backup_mgr_chains(m), 3);
	dw_backup_mgr_close(m);

	/* reopened: the chains cache is rebuilt from the repository */
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_int_equal(dw_backup_mgr_chains(m), 3);
	dw_backup_mgr_close(m);
}

/* What a process killed in the middle of a job leaves: a "running" record and partial files. */
static void fake_dead_job(struct fx *f, const char *id, const char *source)
{
	char key[128], json[8192], *p;
	char *rp = realpath(source, NULL), *repo = realpath(f->repo, NULL);

	snprintf(key, sizeof(key), "dw://internal/backup/%s", id);
	snprintf(json, sizeof(json),
		 "{\"id\":\"%s\",\"state\":\"running\",\"source\":\"%s\",\"repo\":\"%s\","
		 "\"type\":\"auto\",\"parent\":\"\",\"checkpoint_bytes\":4096}",
		 id, rp, repo);
	assert_int_equal(dw_store_put(f->store, key, json, strlen(json)), 0);
	snprintf(json, sizeof(json), "packs/%s", id);
	p = tu_join(f->repo, json);
	mkdir(p, 0755);
	assert_int_equal(tu_write(p, "00000000.pack", 5000, 9, 0644), 0);
	free(p);
	snprintf(json, sizeof(json), "tmp/%s.job", id);
	assert_int_equal(tu_write(f->repo, json, 10, 9, 0644), 0);
	free(rp);
	free(repo);
}

static void test_recover_incomplete_jobs(void **state)
{
	struct fx *f = *state;
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	struct jobs_seen seen = { 0 }, after = { 0 };
	unsigned n = 0;
	char *p;

	fake_dead_job(f, "20200101T000000Z-deadbeef", f->src[1]);
	config(f, &cfg, &src, &u);
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_int_equal(dw_backup_mgr_start(m), 0);
	assert_int_equal(dw_backup_mgr_recover(m, true, count_jobs, &seen, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(seen.last.id, "20200101T000000Z-deadbeef");
	assert_int_equal(seen.last.checkpoint_bytes, 4096);
	p = tu_join(f->repo, "packs/20200101T000000Z-deadbeef");
	assert_int_equal(access(p, F_OK), -1); /* partial files are gone */
	free(p);
	dw_backup_mgr_close(m); /* waits for the resubmitted job */
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_int_equal(dw_backup_mgr_jobs(m, count_jobs, &after), 0);
	/* the job ran again under its own id (no checkpoint: from the start) */
	assert_int_equal(after.recovered, 0);
	assert_int_equal(after.done, 1);
	assert_int_equal(after.running, 0);
	assert_string_equal(after.last.id, "20200101T000000Z-deadbeef");
	assert_int_equal(dw_backup_mgr_chains(m), 1);
	/* nothing left to recover */
	assert_int_equal(dw_backup_mgr_recover(m, true, NULL, NULL, &n), 0);
	assert_int_equal(n, 0);
	dw_backup_mgr_close(m);
}

static void die_at_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	(void)arg;
	(void)id;
	if (s->files >= 20)
		kill(getpid(), SIGKILL);
}

/* A job killed after a checkpoint: recover resubmits it under its id and it resumes. */
static void test_recover_resumes_from_checkpoint(void **state)
{
	struct fx *f = *state;
	const char *id = "20200101T000000Z-c0ffee00";
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	dw_backup_info info;
	dw_backup_check_report rep;
	struct jobs_seen seen = { 0 };
	char key[128], json[8192], name[32];
	char *rp, *repo;
	unsigned n = 0;
	pid_t pid;
	int st;

	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "many%02d", i);
		assert_int_equal(tu_write(f->src[0], name, 64 << 10, 50 + (uint32_t)i, 0644), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dw_backup_repo *r;
		dw_backup_create_opts o;

		if (dw_backup_repo_open(f->repo, &r) != 0)
			_exit(2);
		dw_backup_create_opts_default(&o);
		o.source = f->src[0];
		o.fsync = false;
		o.checkpoint_bytes = 128 << 10;
		o.checkpoint_ms = 0;
		o.checkpoint = die_at_checkpoint;
		snprintf(o.job_id, sizeof(o.job_id), "%s", id);
		dw_backup_create(r, &o, NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	/* the record the dead process's manager would have left */
	rp = realpath(f->src[0], NULL);
	repo = realpath(f->repo, NULL);
	snprintf(key, sizeof(key), "dw://internal/backup/%s", id);
	snprintf(json, sizeof(json),
		 "{\"id\":\"%s\",\"state\":\"running\",\"source\":\"%s\",\"repo\":\"%s\","
		 "\"type\":\"auto\",\"parent\":\"\",\"checkpoint_bytes\":131072}",
		 id, rp, repo);
	assert_int_equal(dw_store_put(f->store, key, json, strlen(json)), 0);
	free(rp);
	free(repo);

	config(f, &cfg, &src, &u);
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_int_equal(dw_backup_mgr_start(m), 0);
	assert_int_equal(dw_backup_mgr_recover(m, true, NULL, NULL, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(dw_backup_mgr_wait(m, id, &info), 0);
	assert_string_equal(info.id, id);
	assert_true(info.resumed);
	assert_true(info.resumed_bytes > 0);
	assert_int_equal(info.run_bytes_read, info.stats.bytes_read - info.resumed_bytes);
	assert_int_equal(dw_backup_mgr_jobs(m, count_jobs, &seen), 0);
	assert_int_equal(seen.done, 1);
	assert_int_equal(seen.last.checkpoint_bytes, info.stats.bytes_read);
	dw_backup_mgr_close(m);
	{
		dw_backup_repo *r;

		assert_int_equal(dw_backup_repo_open(f->repo, &r), 0);
		assert_int_equal(dw_backup_check(r, true, NULL, NULL, &rep), 0);
		assert_int_equal(rep.incomplete, 0);
		dw_backup_repo_close(r);
	}
}

static void test_submit_takes_over_dead_job(void **state)
{
	struct fx *f = *state;
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	dw_backup_create_opts o;
	dw_backup_info info;
	dw_backup_check_report rep;
	dw_backup_repo *r;
	char id[DW_BACKUP_ID_MAX];

	fake_dead_job(f, "20200101T000000Z-0badf00d", f->src[2]);
	config(f, &cfg, &src, &u);
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_int_equal(dw_backup_mgr_start(m), 0);
	dw_backup_create_opts_default(&o);
	o.source = f->src[2];
	assert_int_equal(dw_backup_mgr_submit(m, &o, id), 0);
	assert_string_equal(id, "20200101T000000Z-0badf00d");
	assert_int_equal(dw_backup_mgr_wait(m, id, &info), 0);
	assert_string_equal(info.id, id);
	dw_backup_mgr_close(m);
	assert_int_equal(dw_backup_repo_open(f->repo, &r), 0);
	assert_int_equal(dw_backup_check(r, true, NULL, NULL, &rep), 0);
	assert_int_equal(rep.incomplete, 0);
	dw_backup_repo_close(r);
}

struct metric_find {
	const char *name;
	double value;
};

static void find_metric(void *arg, const dw_metric *mt)
{
	struct metric_find *f = arg;

	if (strcmp(mt->name, f->name) == 0)
		f->value = mt->value;
}

static double metric(dw_backup_mgr *m, const char *name)
{
	struct metric_find f = { name, -1 };
	const dw_scalable *s = dw_backup_mgr_scalable(m);

	s->ops->metrics(s->self, find_metric, &f);
	return f.value;
}

static void test_limit_follows_utilisation_and_reconfigure(void **state)
{
	struct fx *f = *state;
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	const dw_scalable *s;
	char err[256];

	config(f, &cfg, &src, &u);
	dw_backup_conc_config_default(&cfg.conc, 1); /* limits 1..4, starting at 4 */
	assert_int_equal(cfg.conc.start, 4);
	cfg.conc.start = 1;
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	assert_true(metric(m, "jobs_limit") == 1);
	assert_int_equal(dw_backup_mgr_start(m), 0);
	/* an idle disk (busy time never advances): the limit climbs to its maximum */
	for (int i = 0; i < 2000 && metric(m, "jobs_limit") < 4; i++)
		usleep(5000);
	assert_true(metric(m, "jobs_limit") == 4);

	s = dw_backup_mgr_scalable(m);
	{
		dw_limit_change bad[2] = { { "jobs_min", 3, NULL }, { "jobs_max", 2, NULL } };
		dw_limit_change bad2[2] = { { "keep_last", 5, NULL }, { "nope", 1, NULL } };
		dw_limit_change good[2] = { { "jobs_max", 2, NULL }, { "keep_last", 7, NULL } };

		assert_int_equal(s->ops->reconfigure(s->self, bad, 2, err, sizeof(err)), DW_ELIMIT);
		assert_non_null(strstr(err, "jobs_min"));
		assert_int_equal(s->ops->reconfigure(s->self, bad2, 2, err, sizeof(err)),
				 DW_ELIMIT);
		assert_non_null(strstr(err, "nope"));
		assert_int_equal(s->ops->reconfigure(s->self, good, 2, err, sizeof(err)), 0);
		assert_true(metric(m, "jobs_limit") <= 2);
	}
	dw_backup_mgr_close(m);
}

static void test_full_queue_sheds(void **state)
{
	struct fx *f = *state;
	dw_backup_mgr_config cfg;
	dw_backup_util_source src;
	struct fake_util u = { 0 };
	dw_backup_mgr *m = NULL;
	dw_backup_create_opts o;
	char id[DW_BACKUP_ID_MAX];
	const dw_scalable *s;

	config(f, &cfg, &src, &u);
	cfg.queue_max = 2;
	assert_int_equal(dw_backup_mgr_open(&cfg, &m), 0);
	s = dw_backup_mgr_scalable(m);
	dw_backup_create_opts_default(&o);
	o.source = f->src[0];
	assert_int_equal(s->ops->state(s->self), DW_BP_NORMAL);
	assert_int_equal(dw_backup_mgr_submit(m, &o, id), 0);
	assert_int_equal(s->ops->state(s->self), DW_BP_WARNING);
	o.source = f->src[1];
	assert_int_equal(dw_backup_mgr_submit(m, &o, id), 0);
	assert_int_equal(s->ops->state(s->self), DW_BP_SHEDDING);
	o.source = f->src[2];
	assert_int_equal(dw_backup_mgr_submit(m, &o, id), DW_ESHED);
	o.source = "/nonexistent/source";
	assert_int_equal(dw_backup_mgr_submit(m, &o, id), DW_ENOTFOUND);
	dw_backup_mgr_close(m); /* queued jobs are cancelled, not run */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_jobs_run_and_are_recorded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_incomplete_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_takes_over_dead_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_resumes_from_checkpoint, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limit_follows_utilisation_and_reconfigure,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_queue_sheds, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
