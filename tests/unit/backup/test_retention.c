// SPDX-License-Identifier: MIT
/*
 * Retention and recovery.
 *
 * Properties over random chains and policies (fixed seeds, real repositories, a fake clock for
 * backup times): a dry run predicts the real run exactly; the bytes freed equal what left the
 * disk; no incremental is orphaned and check stays clean; the newest backup of each source
 * survives; the size cap holds unless only protected chains remain; with the count rule alone
 * the newest keep_last backups of each source survive.
 *
 * Recovery: the partial files of a killed create are found and removed, and a running create
 * (its lock held) is left alone.
 */
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "backup_test_util.h"

#define BS	4096u
#define SOURCES 2
#define DAY	(86400ull * DW_NS_PER_SEC)

static uint64_t du_total;

static int du_fn(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)p;
	(void)f;
	if (flag == FTW_F)
		du_total += (uint64_t)st->st_size;
	return 0;
}

/* Bytes of the repository's backups: manifests and packs. */
static uint64_t repo_du(const char *repo)
{
	char *a = tu_join(repo, "backups"), *b = tu_join(repo, "packs");

	du_total = 0;
	nftw(a, du_fn, 16, FTW_PHYS);
	nftw(b, du_fn, 16, FTW_PHYS);
	free(a);
	free(b);
	return du_total;
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

struct listing {
	dw_backup_info v[64];
	size_t n;
};

static void collect(void *arg, const dw_backup_info *b)
{
	struct listing *l = arg;

	if (l->n < 64)
		l->v[l->n++] = *b;
}

static bool has_id(const struct listing *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].id, id) == 0)
			return true;
	return false;
}

static void one_scenario(uint32_t seed)
{
	char *tmp = tu_mkdtemp("backup-retention");
	char *repo = tu_join(tmp, "repo");
	char *src[SOURCES];
	dw_backup_repo_config cfg;
	dw_backup_repo *r = NULL;
	dw_fake_clock fc;
	dw_backup_retention pol;
	dw_backup_prune_result dry, real;
	struct listing before = { 0 }, after = { 0 };
	uint64_t du_before, du_after;
	uint32_t s = seed;
	int steps = 6 + (int)(rnd(&s) % 8);

	dw_fake_clock_init(&fc, 1, 1700000000ull * DW_NS_PER_SEC);
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = BS;
	cfg.pack_size = 4 * BS;
	assert_int_equal(dw_backup_repo_init(repo, &cfg), 0);
	assert_int_equal(dw_backup_repo_open(repo, &r), 0);
	for (int i = 0; i < SOURCES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "src%d", i);
		src[i] = tu_join(tmp, name);
		mkdir(src[i], 0755);
		for (int k = 0; k < 3; k++) {
			snprintf(name, sizeof(name), "f%d", k);
			assert_int_equal(tu_write(src[i], name, 2 * BS + 7, rnd(&s) | 1, 0644), 0);
		}
	}
	for (int step = 0; step < steps; step++) {
		int i = (int)(rnd(&s) % SOURCES);
		dw_backup_create_opts o;
		char name[16];

		dw_fake_clock_advance(&fc, (1 + rnd(&s) % 240) * 3600ull * DW_NS_PER_SEC);
		snprintf(name, sizeof(name), "f%u", rnd(&s) % 3);
		assert_int_equal(tu_write(src[i], name, (1 + rnd(&s) % 4) * BS, rnd(&s) | 1, 0644),
				 0);
		dw_backup_create_opts_default(&o);
		o.source = src[i];
		o.fsync = false;
		o.clock = &fc.clock;
		o.type = rnd(&s) % 3 == 0 ? DW_BACKUP_FULL : DW_BACKUP_AUTO;
		assert_int_equal(dw_backup_create(r, &o, NULL), 0);
	}
	assert_int_equal(dw_backup_list(r, collect, &before), 0);
	du_before = repo_du(repo);

	dw_backup_retention_default(&pol);
	pol.clock = &fc.clock;
	pol.keep_last = (uint32_t[]){ 0, 1, 2, 5 }[rnd(&s) % 4];
	pol.max_age_ns = (uint64_t[]){ 0, 3 * DAY, 20 * DAY }[rnd(&s) % 3];
	pol.max_bytes = rnd(&s) % 2 ? 0 : 1 + du_before * (rnd(&s) % 100) / 100;

	assert_int_equal(dw_backup_prune(r, &pol, true, NULL, NULL, &dry), 0);
	assert_int_equal(repo_du(repo), du_before); /* dry run changes nothing */
	assert_int_equal(dw_backup_prune(r, &pol, false, NULL, NULL, &real), 0);
	du_after = repo_du(repo);

	/* the dry run said exactly what happened, to the byte */
	assert_int_equal(dry.chains_removed, real.chains_removed);
	assert_int_equal(dry.backups_removed, real.backups_removed);
	assert_int_equal(dry.bytes_freed, real.bytes_freed);
	assert_int_equal(real.bytes_freed, du_before - du_after);
	assert_int_equal(real.bytes_before, du_before);
	assert_int_equal(real.bytes_after, du_after);

	/* nothing orphaned, nothing dangling */
	assert_int_equal(dw_backup_check(r, false, NULL, NULL, NULL), 0);
	assert_int_equal(dw_backup_list(r, collect, &after), 0);
	assert_int_equal(after.n, before.n - real.backups_removed);
	for (size_t k = 0; k < after.n; k++) {
		bool chain_ok = has_id(&after, after.v[k].chain);

		assert_true(chain_ok);
		if (after.v[k].parent[0])
			assert_true(has_id(&after, after.v[k].parent));
	}
	/* the newest backup of each source survives */
	for (int i = 0; i < SOURCES; i++) {
		char *rp = realpath(src[i], NULL);

		for (size_t k = before.n; k-- > 0;) {
			if (strcmp(before.v[k].source, rp) == 0) {
				assert_true(has_id(&after, before.v[k].id));
				break;
			}
		}
		/* with the count rule alone, the newest keep_last survive */
		if (pol.keep_last && !pol.max_age_ns && !pol.max_bytes) {
			uint32_t seen = 0;

			for (size_t k = before.n; k-- > 0 && seen < pol.keep_last;) {
				if (strcmp(before.v[k].source, rp) != 0)
					continue;
				seen++;
				assert_true(has_id(&after, before.v[k].id));
			}
		}
		free(rp);
	}
	/* the size cap holds, or only the protected chains (one per source) are left */
	if (pol.max_bytes) {
		if (real.size_cap_unmet) {
			size_t chains = 0;

			for (size_t k = 0; k < after.n; k++)
				chains += after.v[k].type == DW_BACKUP_FULL;
			assert_true(chains <= SOURCES);
			assert_true(du_after > pol.max_bytes);
		} else {
			assert_true(du_after <= pol.max_bytes);
		}
	}
	dw_backup_repo_close(r);
	for (int i = 0; i < SOURCES; i++)
		free(src[i]);
	tu_rm_rf(tmp);
	free(repo);
	free(tmp);
}

static void test_retention_properties(void **state)
{
	(void)state;
	for (uint32_t seed = 1; seed <= 40; seed++)
		one_scenario(seed * 7919u);
}

static void test_retention_never_removes_newest_chain(void **state)
{
	char *tmp = tu_mkdtemp("backup-retention");
	char *repo = tu_join(tmp, "repo"), *src = tu_join(tmp, "src");
	dw_backup_repo *r = NULL;
	dw_backup_retention pol;
	dw_backup_prune_result res;
	dw_backup_create_opts o;
	dw_backup_info full, inc;

	(void)state;
	mkdir(src, 0755);
	assert_int_equal(tu_write(src, "a", 10000, 3, 0644), 0);
	assert_int_equal(dw_backup_repo_init(repo, NULL), 0);
	assert_int_equal(dw_backup_repo_open(repo, &r), 0);
	dw_backup_create_opts_default(&o);
	o.source = src;
	o.fsync = false;
	assert_int_equal(dw_backup_create(r, &o, &full), 0);
	assert_int_equal(dw_backup_create(r, &o, &inc), 0);
	/* the strictest policy keeps the only chain: full and incremental */
	pol = (dw_backup_retention){ .keep_last = 1, .max_age_ns = 1, .max_bytes = 1 };
	assert_int_equal(dw_backup_prune(r, &pol, false, NULL, NULL, &res), 0);
	assert_int_equal(res.chains_removed, 0);
	assert_true(res.size_cap_unmet);
	assert_int_equal(dw_backup_stat(r, full.id, &full), 0);
	assert_int_equal(dw_backup_stat(r, inc.id, &inc), 0);
	/* a newer full makes the old chain removable */
	o.type = DW_BACKUP_FULL;
	assert_int_equal(dw_backup_create(r, &o, NULL), 0);
	assert_int_equal(dw_backup_prune(r, &pol, false, NULL, NULL, &res), 0);
	assert_int_equal(res.chains_removed, 1);
	assert_int_equal(res.backups_removed, 2);
	assert_int_equal(dw_backup_stat(r, inc.id, &inc), DW_ENOTFOUND);
	dw_backup_repo_close(r);
	tu_rm_rf(tmp);
	free(tmp);
	free(repo);
	free(src);
}

static void test_prune_refused_while_locked(void **state)
{
	char *tmp = tu_mkdtemp("backup-retention");
	char *repo = tu_join(tmp, "repo"), *lock = tu_join(repo, "lock");
	dw_backup_repo *r = NULL;
	dw_backup_retention pol;
	int fd;

	(void)state;
	assert_int_equal(dw_backup_repo_init(repo, NULL), 0);
	assert_int_equal(dw_backup_repo_open(repo, &r), 0);
	fd = open(lock, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_SH), 0); /* as a running create holds it */
	dw_backup_retention_default(&pol);
	assert_int_equal(dw_backup_prune(r, &pol, false, NULL, NULL, NULL), DW_ELOCKED);
	close(fd); /* the holder is gone: no manual unlock */
	assert_int_equal(dw_backup_prune(r, &pol, false, NULL, NULL, NULL), 0);
	dw_backup_repo_close(r);
	tu_rm_rf(tmp);
	free(tmp);
	free(repo);
	free(lock);
}

static void on_progress_stop(void *arg, const dw_backup_stats *s)
{
	int fd = *(int *)arg;
	static int calls;

	(void)s;
	/* some blocks are in the pack: tell the parent we are mid-way, then wait to be killed */
	if (++calls == 40 && write(fd, "x", 1) == 1)
		pause();
}

static void test_recover_after_kill(void **state)
{
	char *tmp = tu_mkdtemp("backup-recover");
	char *repo = tu_join(tmp, "repo"), *src = tu_join(tmp, "src");
	dw_backup_repo *r = NULL;
	dw_backup_recover_result res;
	dw_backup_info info;
	int pfd[2], status, rc;
	pid_t pid;
	char c;

	(void)state;
	mkdir(src, 0755);
	for (int i = 0; i < 20; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%02d", i);
		assert_int_equal(tu_write(src, name, 3 * BS, (uint32_t)i + 1, 0644), 0);
	}
	assert_int_equal(dw_backup_repo_init(repo, NULL), 0);
	assert_int_equal(dw_backup_repo_open(repo, &r), 0);
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dw_backup_create_opts o;

		close(pfd[0]);
		dw_backup_create_opts_default(&o);
		o.source = src;
		o.progress = on_progress_stop;
		o.arg = &pfd[1];
		o.progress_ms = 0;
		dw_backup_create(r, &o, NULL);
		_exit(1);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	/* the create is mid-way and holds its job lock: recover must leave it alone */
	rc = dw_backup_recover(r, NULL, NULL, &res);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(rc, 0);
	assert_int_equal(res.jobs_running, 1);
	assert_int_equal(res.jobs_cleaned, 0);
	close(pfd[0]);
	assert_int_equal(dw_backup_stat(r, "latest", &info), DW_ENOTFOUND);
	assert_int_equal(dw_backup_check(r, false, NULL, NULL, NULL), 0);
	assert_int_equal(dw_backup_recover(r, NULL, NULL, &res), 0);
	assert_int_equal(res.jobs_cleaned, 1);
	assert_int_equal(res.jobs_running, 0);
	/* bytes_freed may be 0: the killed create may not have written out its buffers yet */
	assert_int_equal(repo_du(repo), 0);
	/* a plain rerun works with no manual step */
	{
		dw_backup_create_opts o;
		char *out = tu_join(tmp, "out");

		dw_backup_create_opts_default(&o);
		o.source = src;
		assert_int_equal(dw_backup_create(r, &o, &info), 0);
		assert_int_equal(info.type, DW_BACKUP_FULL);
		{
			dw_backup_restore_opts ro;

			dw_backup_restore_opts_default(&ro);
			ro.target = out;
			assert_int_equal(dw_backup_restore(r, info.id, &ro, NULL), 0);
		}
		assert_int_equal(tu_diff_dirs(src, out), 0);
		free(out);
	}
	dw_backup_repo_close(r);
	tu_rm_rf(tmp);
	free(tmp);
	free(repo);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retention_properties),
		cmocka_unit_test(test_retention_never_removes_newest_chain),
		cmocka_unit_test(test_prune_refused_while_locked),
		cmocka_unit_test(test_recover_after_kill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
