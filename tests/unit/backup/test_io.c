// SPDX-License-Identifier: MIT
/*
 * Backup I/O through the filesystem I/O manager: with a dw_io handed in, every source read and
 * pack write of a create, and every pack read of a restore, is a Low-tier op of that manager
 * (its metrics count exactly those bytes, nothing in High or Normal), the backups restore
 * byte-identical, and incrementals and resumes work the same as with plain I/O.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "dwscale/io.h"
#include "backup_test_util.h"

#define BS 4096u

struct fx {
	char *tmp, *src, *repo;
	dw_backup_repo *r;
	dw_io *io;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	dw_backup_repo_config cfg;
	dw_io_config icfg;
	char rel[64];

	if (!f)
		return -1;
	f->tmp = tu_mkdtemp("backup-io");
	f->src = tu_join(f->tmp, "src");
	f->repo = tu_join(f->tmp, "repo");
	mkdir(f->src, 0755);
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = BS;
	cfg.pack_size = 64 * BS;
	if (dw_backup_repo_init(f->repo, &cfg) != 0 || dw_backup_repo_open(f->repo, &f->r) != 0)
		return -1;
	for (int i = 0; i < 60; i++) {
		snprintf(rel, sizeof(rel), "f%03d", i);
		if (tu_write(f->src, rel, (size_t)i * 997, 10 + (uint32_t)i, 0644) != 0)
			return -1;
	}
	if (tu_write(f->src, "big", 40 * BS + 17, 3, 0600) != 0 ||
	    tu_write(f->src, "text", 20 * BS, 0, 0644) != 0)
		return -1;
	dw_io_config_default(&icfg);
	if (dw_io_open(&icfg, &f->io) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dw_io_close(f->io);
	dw_backup_repo_close(f->r);
	tu_rm_rf(f->tmp);
	free(f->tmp);
	free(f->src);
	free(f->repo);
	free(f);
	return 0;
}

struct tiers {
	double bytes[3], ops[3];
};

static void on_metric(void *arg, const dw_metric *m)
{
	struct tiers *t = arg;
	static const char *const names[3] = { "tier=\"high\"", "tier=\"normal\"", "tier=\"low\"" };

	for (int i = 0; i < 3; i++) {
		if (!m->labels || !strstr(m->labels, names[i]))
			continue;
		if (strcmp(m->name, "bytes") == 0)
			t->bytes[i] += m->value;
		else if (strcmp(m->name, "completed") == 0)
			t->ops[i] += m->value;
	}
}

static struct tiers io_tiers(struct fx *f)
{
	const dw_scalable *s = dw_io_scalable(f->io);
	struct tiers t = { 0 };

	assert_int_equal(s->ops->metrics(s->self, on_metric, &t), 0);
	return t;
}

/* Sum of the sizes of the pack files of a backup. */
static uint64_t pack_bytes(struct fx *f, const char *id)
{
	char cmd[8192];
	unsigned long long n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "cat '%s/packs/%s/'*.pack 2>/dev/null | wc -c", f->repo, id);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%llu", &n), 1);
	pclose(p);
	return n;
}

static void create(struct fx *f, bool io, dw_backup_info *info)
{
	dw_backup_create_opts o;

	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.fsync = true;
	o.io = io ? f->io : NULL;
	assert_int_equal(dw_backup_create(f->r, &o, info), 0);
}

static void restore_same(struct fx *f, const char *id, bool io, const char *name)
{
	dw_backup_restore_opts ro;
	dw_backup_stats st;
	char *out = tu_join(f->tmp, name);

	dw_backup_restore_opts_default(&ro);
	ro.target = out;
	ro.io = io ? f->io : NULL;
	ro.threads = 3; /* writers that split the packs between them */
	assert_int_equal(dw_backup_restore(f->r, id, &ro, &st), 0);
	assert_int_equal(tu_diff_dirs(f->src, out), 0);
	free(out);
}

static void test_create_and_restore_are_low_tier_ops(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	struct tiers t0, t1, t2;
	uint64_t packs;

	t0 = io_tiers(f);
	create(f, true, &info);
	t1 = io_tiers(f);
	packs = pack_bytes(f, info.id);
	assert_true(info.stats.bytes_read > 0 && packs > 0);
	/* every source byte read and every pack byte written, as Low ops, and nothing else */
	assert_true(t1.bytes[2] - t0.bytes[2] == (double)(info.stats.bytes_read + packs));
	assert_true(t1.ops[2] - t0.ops[2] >= (double)info.stats.blocks_new);
	assert_true(t1.bytes[0] == t0.bytes[0] && t1.bytes[1] == t0.bytes[1]);
	assert_true(t1.ops[0] == t0.ops[0] && t1.ops[1] == t0.ops[1]);

	/*
	 * restore reads each stored block once (its compressed bytes: the packs less headers),
	 * the small blocks of neighbouring files in one read: far fewer reads than blocks
	 */
	restore_same(f, info.id, true, "out-io");
	t2 = io_tiers(f);
	assert_true(t2.bytes[2] - t1.bytes[2] > 0);
	assert_true(t2.bytes[2] - t1.bytes[2] <= (double)packs);
	assert_true(info.stats.blocks_new > 100);
	assert_true((t2.ops[2] - t1.ops[2]) * 4 <= (double)info.stats.blocks_new);
	assert_true(t2.bytes[0] == t1.bytes[0] && t2.bytes[1] == t1.bytes[1]);

	/* plain I/O still works, and does not touch the manager */
	restore_same(f, info.id, false, "out-plain");
	assert_true(io_tiers(f).bytes[2] == t2.bytes[2]);
}

static void test_incremental_through_io_matches_plain(void **state)
{
	struct fx *f = *state;
	dw_backup_info full, inc, none;
	struct tiers t0, t1;

	create(f, false, &full); /* plain full */
	assert_int_equal(tu_write(f->src, "big", 40 * BS + 17, 4, 0600), 0);
	assert_int_equal(tu_write(f->src, "f010", 5000, 77, 0644), 0);
	t0 = io_tiers(f);
	create(f, true, &inc);
	t1 = io_tiers(f);
	assert_int_equal(inc.type, DW_BACKUP_INCREMENTAL);
	assert_int_equal(inc.stats.files_changed, 2);
	assert_int_equal(inc.stats.bytes_read, 40 * BS + 17 + 5000);
	assert_true(t1.bytes[2] - t0.bytes[2] ==
		    (double)(inc.stats.bytes_read + pack_bytes(f, inc.id)));
	restore_same(f, inc.id, true, "out-inc");
	create(f, true, &none);
	assert_int_equal(none.stats.bytes_read, 0);
	assert_int_equal(none.stats.blocks_new, 0);
	restore_same(f, none.id, false, "out-none");
}

static void die_on_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	(void)arg;
	(void)id;
	if (s->files >= 30)
		kill(getpid(), SIGKILL);
}

static void test_resume_through_io(void **state)
{
	struct fx *f = *state;
	dw_backup_create_opts o;
	dw_backup_info info;
	pid_t pid;
	int st;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dw_io_config icfg;
		dw_io *io;
		dw_backup_repo *r;

		dw_io_config_default(&icfg);
		if (dw_io_open(&icfg, &io) != 0 || dw_backup_repo_open(f->repo, &r) != 0)
			_exit(2);
		dw_backup_create_opts_default(&o);
		o.source = f->src;
		o.fsync = false;
		o.io = io;
		o.checkpoint_bytes = 8 * BS;
		o.checkpoint_ms = 0;
		o.checkpoint = die_on_checkpoint;
		dw_backup_create(r, &o, NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	create(f, true, &info);
	assert_true(info.resumed);
	assert_true(info.run_bytes_read < info.stats.bytes_read);
	restore_same(f, info.id, true, "out-resumed");
	{
		dw_backup_check_report rep;

		assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
		assert_int_equal(rep.incomplete, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_and_restore_are_low_tier_ops, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_incremental_through_io_matches_plain, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_through_io, setup, teardown),
	};

	dw_log_set_level(DW_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
