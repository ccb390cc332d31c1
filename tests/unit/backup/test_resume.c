// SPDX-License-Identifier: MIT
/*
 * Resuming a killed create: a child process runs dw_backup_create with small checkpoints and
 * SIGKILLs itself from the checkpoint callback part-way through; the next create of the same
 * source resumes from that checkpoint (reads only what came after it), ends with the same
 * counters as an uninterrupted backup, restores byte-identical (hard links across the
 * checkpoint included) and leaves check clean. A checkpoint that does not fit (other type,
 * damaged, no_resume) is dropped and the create starts over; dw_backup_recover removes one.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "backup_test_util.h"

#define BS    4096u
#define NMANY 120
#define CKPT  (40u << 10)

struct fx {
	char *tmp, *src, *repo, *out;
	dw_backup_repo *r;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	dw_backup_repo_config cfg;
	char rel[64];

	if (!f)
		return -1;
	f->tmp = tu_mkdtemp("backup-resume");
	f->src = tu_join(f->tmp, "src");
	f->repo = tu_join(f->tmp, "repo");
	f->out = tu_join(f->tmp, "out");
	mkdir(f->src, 0755);
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = BS;
	cfg.pack_size = 16 * BS; /* several packs, so a checkpoint falls inside a later one */
	if (dw_backup_repo_init(f->repo, &cfg) != 0 || dw_backup_repo_open(f->repo, &f->r) != 0)
		return -1;
	/* a hard-linked inode whose first name comes early and later names after "many*" */
	if (tu_write(f->src, "a-first", 2 * BS + 5, 1, 0644) != 0)
		return -1;
	for (int i = 0; i < NMANY; i++) {
		snprintf(rel, sizeof(rel), "many%03d", i);
		if (tu_write(f->src, rel, 3 * BS + (size_t)i, 100 + (uint32_t)i, 0644) != 0)
			return -1;
	}
	{
		char *sub = tu_join(f->src, "sub");

		mkdir(sub, 0755);
		free(sub);
	}
	if (tu_write(f->src, "sub/deep", 5 * BS, 7, 0600) != 0)
		return -1;
	{
		char *a = tu_join(f->src, "a-first"), *b = tu_join(f->src, "zz-link");
		char *c = tu_join(f->src, "sub/link2"), *d = tu_join(f->src, "symlink");

		if (link(a, b) != 0 || link(a, c) != 0 || symlink("many001", d) != 0)
			return -1;
		free(a);
		free(b);
		free(c);
		free(d);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dw_backup_repo_close(f->r);
	tu_rm_rf(f->tmp);
	free(f->tmp);
	free(f->src);
	free(f->repo);
	free(f->out);
	free(f);
	return 0;
}

static uint64_t kill_after_files;

static void die_on_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	(void)arg;
	(void)id;
	if (s->files >= kill_after_files)
		kill(getpid(), SIGKILL);
}

/* Run a create in a child that kills itself at the first checkpoint past `files` files. */
static void create_killed(struct fx *f, dw_backup_type type, uint64_t files)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		dw_backup_repo *r;
		dw_backup_create_opts o;

		if (dw_backup_repo_open(f->repo, &r) != 0)
			_exit(2);
		dw_backup_create_opts_default(&o);
		o.source = f->src;
		o.type = type;
		o.fsync = false;
		o.threads = 2;
		o.checkpoint_bytes = CKPT;
		o.checkpoint_ms = 0;
		o.checkpoint = die_on_checkpoint;
		kill_after_files = files;
		dw_backup_create(r, &o, NULL);
		_exit(3); /* finished without being killed: the test is wrong */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static int create_opts(struct fx *f, dw_backup_type type, bool no_resume, dw_backup_info *info)
{
	dw_backup_create_opts o;

	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.type = type;
	o.fsync = false;
	o.checkpoint_bytes = CKPT;
	o.checkpoint_ms = 0;
	o.no_resume = no_resume;
	return dw_backup_create(f->r, &o, info);
}

static void on_partial(void *arg, const dw_backup_partial *p)
{
	dw_backup_partial *out = arg;

	*out = *p;
	out->stats.specials++; /* used as a count of calls */
}

static unsigned partials(struct fx *f, dw_backup_partial *p)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(dw_backup_partials(f->r, on_partial, p), 0);
	return (unsigned)p->stats.specials;
}

static void check_clean(struct fx *f, uint64_t incomplete)
{
	dw_backup_check_report rep;

	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.incomplete, incomplete);
}

static void restore_same(struct fx *f, const char *id)
{
	dw_backup_restore_opts ro;
	dw_backup_stats st;

	tu_rm_rf(f->out);
	dw_backup_restore_opts_default(&ro);
	ro.target = f->out;
	assert_int_equal(dw_backup_restore(f->r, id, &ro, &st), 0);
	assert_int_equal(tu_diff_dirs(f->src, f->out), 0);
}

static void same_counts(const dw_backup_stats *a, const dw_backup_stats *b)
{
	assert_int_equal(a->files, b->files);
	assert_int_equal(a->dirs, b->dirs);
	assert_int_equal(a->symlinks, b->symlinks);
	assert_int_equal(a->hardlinks, b->hardlinks);
	assert_int_equal(a->bytes_total, b->bytes_total);
	assert_int_equal(a->bytes_read, b->bytes_read);
	assert_int_equal(a->files_changed, b->files_changed);
	assert_int_equal(a->files_unchanged, b->files_unchanged);
	assert_int_equal(a->blocks_new + a->blocks_reused, b->blocks_new + b->blocks_reused);
}

/* Rewrite every other "many" file, so that an incremental has data to read. */
static void change_half(struct fx *f, uint32_t seed)
{
	char rel[64];

	for (int i = 0; i < NMANY; i += 2) {
		snprintf(rel, sizeof(rel), "many%03d", i);
		assert_int_equal(tu_write(f->src, rel, 3 * BS + 1, seed + (uint32_t)i, 0644), 0);
	}
}

static void test_full_resumes_from_checkpoint(void **state)
{
	struct fx *f = *state;
	dw_backup_info info, ref;
	dw_backup_partial p;

	create_killed(f, DW_BACKUP_AUTO, 40);
	/* nothing visible, check clean, the partial job is resumable */
	assert_int_equal(dw_backup_stat(f->r, "latest", &info), DW_ENOTFOUND);
	check_clean(f, 1);
	assert_int_equal(partials(f, &p), 1);
	assert_int_equal(p.type, DW_BACKUP_FULL);
	assert_true(p.stats.files >= 40 && p.stats.files < NMANY);
	assert_true(p.stats.bytes_read > 0);

	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &info), 0);
	assert_true(info.resumed);
	assert_string_equal(info.id, p.id);
	assert_int_equal(info.type, DW_BACKUP_FULL);
	assert_int_equal(info.resumed_bytes, p.stats.bytes_read);
	assert_int_equal(info.run_bytes_read, info.stats.bytes_total - p.stats.bytes_read);
	assert_int_equal(info.stats.hardlinks, 2);
	assert_true(info.repo_bytes == info.stats.bytes_stored);
	check_clean(f, 0);
	assert_int_equal(partials(f, &p), 0);
	restore_same(f, info.id);

	/* the same counters as a backup that was never interrupted */
	assert_int_equal(create_opts(f, DW_BACKUP_FULL, false, &ref), 0);
	assert_false(ref.resumed);
	same_counts(&info.stats, &ref.stats);
}

static void test_incremental_resumes(void **state)
{
	struct fx *f = *state;
	dw_backup_info full, info;
	dw_backup_partial p;

	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &full), 0);
	change_half(f, 5000);
	create_killed(f, DW_BACKUP_AUTO, 60);
	assert_int_equal(partials(f, &p), 1);
	assert_int_equal(p.type, DW_BACKUP_INCREMENTAL);
	assert_string_equal(p.parent, full.id);
	check_clean(f, 1);

	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &info), 0);
	assert_true(info.resumed);
	assert_int_equal(info.type, DW_BACKUP_INCREMENTAL);
	assert_string_equal(info.parent, full.id);
	assert_int_equal(info.stats.files_changed, NMANY / 2);
	assert_int_equal(info.run_bytes_read, info.stats.bytes_read - info.resumed_bytes);
	assert_true(info.run_bytes_read < info.stats.bytes_read);
	check_clean(f, 0);
	restore_same(f, info.id);
	restore_same(f, "latest");
}

static void test_unfit_or_damaged_checkpoint_starts_over(void **state)
{
	struct fx *f = *state;
	dw_backup_info info, full;
	dw_backup_partial p;
	char path[4096];
	int fd;
	uint8_t b;

	/* a full asked for where an incremental was killed: starts over, checkpoint dropped */
	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &full), 0);
	change_half(f, 6000);
	create_killed(f, DW_BACKUP_INCREMENTAL, 40);
	assert_int_equal(partials(f, &p), 1);
	assert_int_equal(create_opts(f, DW_BACKUP_FULL, false, &info), 0);
	assert_false(info.resumed);
	assert_int_equal(info.type, DW_BACKUP_FULL);
	assert_int_equal(partials(f, &p), 0);
	check_clean(f, 0);

	/* a damaged checkpoint: not listed, the next create starts over and cleans it */
	change_half(f, 7000);
	create_killed(f, DW_BACKUP_AUTO, 40);
	assert_int_equal(partials(f, &p), 1);
	snprintf(path, sizeof(path), "%s/tmp/%s.ckpt", f->repo, p.id);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, 20), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, 20), 1);
	close(fd);
	assert_int_equal(partials(f, &p), 0);
	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &info), 0);
	assert_false(info.resumed);
	check_clean(f, 0);
	restore_same(f, info.id);

	/* no_resume */
	change_half(f, 8000);
	create_killed(f, DW_BACKUP_AUTO, 40);
	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, true, &info), 0);
	assert_false(info.resumed);
	assert_int_equal(partials(f, &p), 0);
	check_clean(f, 0);
}

static void test_recover_removes_checkpointed_job(void **state)
{
	struct fx *f = *state;
	dw_backup_recover_result res;
	dw_backup_partial p;
	dw_backup_info info;

	create_killed(f, DW_BACKUP_AUTO, 40);
	assert_int_equal(partials(f, &p), 1);
	assert_int_equal(dw_backup_recover(f->r, NULL, NULL, &res), 0);
	assert_int_equal(res.jobs_cleaned, 1);
	assert_true(res.bytes_freed > 0);
	assert_int_equal(partials(f, &p), 0);
	check_clean(f, 0);
	assert_int_equal(create_opts(f, DW_BACKUP_AUTO, false, &info), 0);
	assert_false(info.resumed);
	restore_same(f, info.id);
}

/* The same job id (as the manager passes it) resumes; another id starts over. */
static void test_job_id_must_match(void **state)
{
	struct fx *f = *state;
	dw_backup_create_opts o;
	dw_backup_info info;
	dw_backup_partial p;

	create_killed(f, DW_BACKUP_AUTO, 40);
	assert_int_equal(partials(f, &p), 1);
	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.fsync = false;
	snprintf(o.job_id, sizeof(o.job_id), "%s", p.id);
	assert_int_equal(dw_backup_create(f->r, &o, &info), 0);
	assert_true(info.resumed);
	assert_string_equal(info.id, p.id);

	change_half(f, 9000);
	create_killed(f, DW_BACKUP_AUTO, 40);
	assert_int_equal(partials(f, &p), 1);
	snprintf(o.job_id, sizeof(o.job_id), "other-id");
	assert_int_equal(dw_backup_create(f->r, &o, &info), 0);
	assert_false(info.resumed);
	assert_string_equal(info.id, "other-id");
	assert_int_equal(partials(f, &p), 0);
	check_clean(f, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_resumes_from_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unfit_or_damaged_checkpoint_starts_over, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_recover_removes_checkpointed_job, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_job_id_must_match, setup, teardown),
	};

	dw_log_set_level(DW_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
