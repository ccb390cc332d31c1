// SPDX-License-Identifier: MIT
/*
 * Backup engine: full and incremental backups restore byte-identical with all metadata; changed
 * blocks only are stored; check finds damage; restore refuses to overwrite; partial restore;
 * unreadable files are counted, not fatal; a cancelled create leaves nothing visible.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "dwscale/backup.h"
#include "backup_test_util.h"

#define BS 4096u /* small blocks so that files of a few blocks are cheap */

struct fx {
	char *tmp, *src, *repo, *out;
	dw_backup_repo *r;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	dw_backup_repo_config cfg;

	f->tmp = tu_mkdtemp("backup-engine");
	if (!f->tmp)
		return -1;
	f->src = tu_join(f->tmp, "src");
	f->repo = tu_join(f->tmp, "repo");
	f->out = tu_join(f->tmp, "out");
	mkdir(f->src, 0755);
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = BS;
	cfg.pack_size = 64 * BS;
	if (dw_backup_repo_init(f->repo, &cfg) != 0)
		return -1;
	if (dw_backup_repo_open(f->repo, &f->r) != 0)
		return -1;
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

/* A tree with every kind of entry and awkward sizes and names. */
static void make_tree(const char *src)
{
	char *p;

	assert_int_equal(tu_write(src, "empty", 0, 0, 0644), 0);
	assert_int_equal(tu_write(src, "one", 1, 7, 0600), 0);
	assert_int_equal(tu_write(src, "block", BS, 8, 0644), 0);
	assert_int_equal(tu_write(src, "block+1", BS + 1, 9, 0755), 0);
	assert_int_equal(tu_write(src, "big", 10 * BS + 123, 10, 0640), 0);
	assert_int_equal(tu_write(src, "text", 5 * BS, 0, 0644), 0);
	p = tu_join(src, "d1");
	mkdir(p, 0750);
	free(p);
	p = tu_join(src, "d1/sub");
	mkdir(p, 0700);
	free(p);
	p = tu_join(src, "d1/empty-dir");
	mkdir(p, 0755);
	free(p);
	p = tu_join(src, "d1.x"); /* sorts after d1's children in the walk */
	mkdir(p, 0755);
	free(p);
	assert_int_equal(tu_write(src, "d1/sub/deep", 3 * BS, 11, 0444), 0);
	assert_int_equal(tu_write(src, "d1.x/f", 100, 12, 0644), 0);
	assert_int_equal(tu_write(src, "name with spaces\nand newline", 10, 13, 0644), 0);
	assert_int_equal(tu_write(src, "setuid", 10, 14, 04755), 0);
	{
		char *a = tu_join(src, "one"), *b = tu_join(src, "d1/hardlink-to-one");
		char *c = tu_join(src, "d1.x/second-link");

		assert_int_equal(link(a, b), 0);
		assert_int_equal(link(a, c), 0);
		free(a);
		free(b);
		free(c);
	}
	p = tu_join(src, "link-rel");
	assert_int_equal(symlink("d1/sub/deep", p), 0);
	free(p);
	p = tu_join(src, "link-dangling");
	assert_int_equal(symlink("/nonexistent/target", p), 0);
	free(p);
	p = tu_join(src, "fifo");
	assert_int_equal(mkfifo(p, 0620), 0);
	free(p);
	if (geteuid() == 0) {
		p = tu_join(src, "null-dev");
		assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
		free(p);
		p = tu_join(src, "owned");
		assert_int_equal(tu_write(src, "owned", 20, 15, 0644), 0);
		assert_int_equal(lchown(p, 1234, 5678), 0);
		free(p);
	}
	assert_int_equal(tu_set_mtime(src, "big", 1000000000, 123456789), 0);
	assert_int_equal(tu_set_mtime(src, "link-rel", 1200000000, 987654321), 0);
	assert_int_equal(tu_set_mtime(src, "d1/sub", 1300000000, 5), 0);
	assert_int_equal(tu_set_mtime(src, "d1", 1300000001, 999999999), 0);
}

static void create(struct fx *f, dw_backup_type type, dw_backup_info *info)
{
	dw_backup_create_opts o;

	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.type = type;
	o.fsync = false;
	assert_int_equal(dw_backup_create(f->r, &o, info), 0);
}

static void restore_to(struct fx *f, const char *id, const char *dir)
{
	dw_backup_restore_opts ro;
	dw_backup_stats st;

	dw_backup_restore_opts_default(&ro);
	ro.target = dir;
	assert_int_equal(dw_backup_restore(f->r, id, &ro, &st), 0);
}

static void test_full_round_trip(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_check_report rep;

	make_tree(f->src);
	create(f, DW_BACKUP_AUTO, &info);
	assert_int_equal(info.type, DW_BACKUP_FULL);
	assert_string_equal(info.parent, "");
	assert_string_equal(info.chain, info.id);
	assert_int_equal(info.stats.hardlinks, 2);
	assert_int_equal(info.stats.symlinks, 2);
	assert_int_equal(info.stats.unreadable, 0);
	assert_true(info.stats.specials >= 1);
	assert_int_equal(info.stats.dirs, 5); /* root, d1, d1/sub, d1/empty-dir, d1.x */
	assert_true(info.repo_bytes > 0 && info.repo_bytes == info.stats.bytes_stored);

	restore_to(f, info.id, f->out);
	assert_int_equal(tu_diff_dirs(f->src, f->out), 0);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
	assert_int_equal(rep.backups, 1);
	assert_int_equal(rep.errors, 0);
	assert_true(rep.blocks_checked > 0);
}

static void test_incremental_changed_blocks_only(void **state)
{
	struct fx *f = *state;
	dw_backup_info full, inc, inc2, st;
	struct tu_list before = { 0 }, after = { 0 };
	char *out1 = tu_join(f->tmp, "out-full"), *out2 = tu_join(f->tmp, "out-inc");
	char *p;
	int fd;

	make_tree(f->src);
	create(f, DW_BACKUP_FULL, &full);
	tu_tree(f->src, &before);

	/* change one block in the middle of "big", add and remove files */
	p = tu_join(f->src, "big");
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "CHANGED", 7, 4 * BS + 10), 7);
	close(fd);
	free(p);
	assert_int_equal(tu_write(f->src, "d1/new", 2 * BS, 21, 0644), 0);
	p = tu_join(f->src, "text");
	assert_int_equal(unlink(p), 0);
	free(p);

	create(f, DW_BACKUP_AUTO, &inc);
	assert_int_equal(inc.type, DW_BACKUP_INCREMENTAL);
	assert_string_equal(inc.parent, full.id);
	assert_string_equal(inc.chain, full.id);
	assert_int_equal(inc.depth, 1);
	/* big (changed) and d1/new are read; the directory containing new changed too */
	assert_int_equal(inc.stats.files_changed, 2);
	assert_true(inc.stats.files_unchanged >= 8);
	/* one block of big plus two of new are stored */
	assert_int_equal(inc.stats.blocks_new, 3);
	assert_true(inc.stats.bytes_stored < full.stats.bytes_stored);

	/* a no-change incremental stores no block at all */
	create(f, DW_BACKUP_AUTO, &inc2);
	assert_int_equal(inc2.stats.blocks_new, 0);
	assert_int_equal(inc2.stats.files_changed, 0);
	assert_int_equal(inc2.depth, 2);

	tu_tree(f->src, &after);
	restore_to(f, full.id, out1);
	restore_to(f, "latest", out2);
	{
		struct tu_list r1 = { 0 }, r2 = { 0 };

		tu_tree(out1, &r1);
		tu_tree(out2, &r2);
		assert_int_equal(tu_tree_diff(&before, &r1), 0);
		assert_int_equal(tu_tree_diff(&after, &r2), 0);
		tu_list_free(&r1);
		tu_list_free(&r2);
	}
	assert_int_equal(dw_backup_stat(f->r, "latest", &st), 0);
	assert_string_equal(st.id, inc2.id);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, NULL), 0);
	tu_list_free(&before);
	tu_list_free(&after);
	free(out1);
	free(out2);
}

/*
 * Hundreds of files of every size class, so the ring of items between the walk and the
 * committer wraps many times while block buffers (a smaller pool) are lent and returned: with
 * one worker (the smallest pool) and with four, full and incremental, restored by one writer and
 * by three, every tree comes back exactly.
 */
static void test_many_files_every_pool_size(void **state)
{
	static const size_t sizes[] = { 0, 1, 100, BS - 1, BS, BS + 1, 3 * BS + 7 };
	struct fx *f = *state;
	const unsigned workers[] = { 1, 4 };
	char rel[64];

	for (int i = 0; i < 700; i++) {
		snprintf(rel, sizeof(rel), "d%d", i / 100);
		if (i % 100 == 0) {
			char *d = tu_join(f->src, rel);

			assert_int_equal(mkdir(d, 0755), 0);
			free(d);
		}
		snprintf(rel, sizeof(rel), "d%d/f%03d", i / 100, i);
		assert_int_equal(tu_write(f->src, rel, sizes[i % 7], (unsigned)i, 0644), 0);
	}
	for (int w = 0; w < 2; w++) {
		dw_backup_create_opts o;
		dw_backup_restore_opts ro;
		dw_backup_info info;
		dw_backup_stats st;
		char *out;

		if (w == 1) { /* change every 50th file (a new size) before the incremental */
			for (int i = 0; i < 700; i += 50) {
				snprintf(rel, sizeof(rel), "d%d/f%03d", i / 100, i);
				assert_int_equal(tu_write(f->src, rel, 2 * BS + 3, 99, 0644), 0);
			}
		}
		dw_backup_create_opts_default(&o);
		o.source = f->src;
		o.fsync = false;
		o.threads = workers[w];
		assert_int_equal(dw_backup_create(f->r, &o, &info), 0);
		assert_int_equal(info.type, w == 0 ? DW_BACKUP_FULL : DW_BACKUP_INCREMENTAL);
		assert_int_equal(info.stats.files, 700);
		if (w == 1) {
			assert_int_equal(info.stats.files_changed, 14);
			assert_int_equal(info.stats.files_unchanged, 700 - 14);
		}
		snprintf(rel, sizeof(rel), "out-%u", workers[w]);
		out = tu_join(f->tmp, rel);
		dw_backup_restore_opts_default(&ro);
		ro.target = out;
		ro.threads = 1 + 2 * (unsigned)w;
		assert_int_equal(dw_backup_restore(f->r, info.id, &ro, &st), 0);
		assert_int_equal(st.files, 700);
		assert_int_equal(tu_diff_dirs(f->src, out), 0);
		free(out);
	}
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, NULL), 0);
}

static void test_ignore_inode_ctime(void **state)
{
	struct fx *f = *state;
	dw_backup_info a, b, c;
	dw_backup_create_opts o;
	char cmd[8192];
	char *copy = tu_join(f->tmp, "src-copy");

	make_tree(f->src);
	create(f, DW_BACKUP_FULL, &a);
	/* the same tree copied: same sizes and mtimes, new inodes and ctimes */
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && rm -rf '%s' && mv '%s' '%s'", f->src, copy,
		 f->src, copy, f->src);
	assert_int_equal(system(cmd), 0);
	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.fsync = false;
	assert_int_equal(dw_backup_create(f->r, &o, &b), 0);
	assert_int_equal(b.stats.files_unchanged, 0); /* inode/ctime differ: all re-read */
	assert_int_equal(b.stats.blocks_new, 0);      /* ...but every block is reused */
	o.ignore_inode_ctime = true;
	assert_int_equal(dw_backup_create(f->r, &o, &c), 0);
	assert_int_equal(c.stats.files_changed, 0);
	assert_int_equal(c.stats.bytes_read, 0);
	restore_to(f, c.id, f->out);
	assert_int_equal(tu_diff_dirs(f->src, f->out), 0);
	free(copy);
}

static void problem_count(void *arg, const char *id, const char *msg)
{
	(void)id;
	(void)msg;
	(*(int *)arg)++;
}

static void test_check_finds_damage(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_check_report rep;
	dw_backup_restore_opts ro;
	char rel[512];
	int problems = 0, fd;
	uint8_t byte;

	make_tree(f->src);
	create(f, DW_BACKUP_FULL, &info);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
	/* flip one byte inside the first pack's data */
	snprintf(rel, sizeof(rel), "%s/packs/%s/00000000.pack", f->repo, info.id);
	fd = open(rel, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, 40), 1);
	byte ^= 0x55;
	assert_int_equal(pwrite(fd, &byte, 1, 40), 1);
	close(fd);
	/* references are still inside the pack: only reading the data finds it */
	assert_int_equal(dw_backup_check(f->r, false, NULL, NULL, &rep), 0);
	assert_int_equal(dw_backup_check(f->r, true, problem_count, &problems, &rep), DW_ECORRUPT);
	assert_true(rep.errors >= 1);
	assert_true(problems >= 1);
	/* a restore stops with DW_ECORRUPT instead of writing bad data */
	dw_backup_restore_opts_default(&ro);
	ro.target = f->out;
	assert_int_equal(dw_backup_restore(f->r, info.id, &ro, NULL), DW_ECORRUPT);

	/* a truncated manifest is reported and no longer listed */
	snprintf(rel, sizeof(rel), "%s/backups/%s.manifest", f->repo, info.id);
	assert_int_equal(truncate(rel, 200), 0);
	assert_int_equal(dw_backup_check(f->r, false, NULL, NULL, &rep), DW_ECORRUPT);
	assert_int_equal(dw_backup_stat(f->r, info.id, &info), DW_ENOTFOUND);
}

static void test_restore_refuses_nonempty_target(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_restore_opts ro;
	char hex[65];
	char *keep;

	make_tree(f->src);
	create(f, DW_BACKUP_FULL, &info);
	mkdir(f->out, 0755);
	assert_int_equal(tu_write(f->out, "keep", 100, 99, 0644), 0);
	keep = tu_join(f->out, "keep");
	tu_sha_file(keep, hex);
	dw_backup_restore_opts_default(&ro);
	ro.target = f->out;
	assert_int_equal(dw_backup_restore(f->r, info.id, &ro, NULL), DW_EEXIST);
	{
		char hex2[65];

		tu_sha_file(keep, hex2);
		assert_string_equal(hex, hex2);
	}
	assert_int_equal(dw_backup_restore(f->r, "no-such-id", &ro, NULL), DW_ENOTFOUND);
	free(keep);
}

static void test_restore_path_subset(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_restore_opts ro;
	dw_backup_stats st;
	char *a, *b;

	make_tree(f->src);
	create(f, DW_BACKUP_FULL, &info);
	dw_backup_restore_opts_default(&ro);
	ro.target = f->out;
	ro.path = "d1/sub/";
	assert_int_equal(dw_backup_restore(f->r, info.id, &ro, &st), 0);
	assert_int_equal(st.files, 1);
	a = tu_join(f->src, "d1/sub");
	b = tu_join(f->out, "d1/sub");
	assert_int_equal(tu_diff_dirs(a, b), 0);
	free(a);
	free(b);
	a = tu_join(f->out, "big");
	assert_int_equal(access(a, F_OK), -1);
	free(a);
}

static void test_unreadable_counted(void **state)
{
	struct fx *f = *state;
	dw_backup_create_opts o;
	dw_backup_info info;
	char *p;
	pid_t pid;
	int status;

	make_tree(f->src);
	assert_int_equal(tu_write(f->src, "secret", 100, 31, 0000), 0);
	p = tu_join(f->src, "closed-dir");
	mkdir(p, 0000);
	free(p);
	/* root reads everything: run the create as an unprivileged user in a child */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char cmd[8192];

		/*
		 * The user must reach the tree: the test base directory may have been made 0700
		 * by whichever test ran first, so it gets a+x (search only) too.
		 */
		snprintf(cmd, sizeof(cmd),
			 "chmod -R a+rwX '%s' && chmod -R a+rX '%s' && chmod 000 '%s/secret' "
			 "'%s/closed-dir'"
			 " && chmod a+rx '%s' '%s' && chmod a+x \"$(dirname '%s')\"",
			 f->repo, f->src, f->src, f->src, f->tmp, f->src, f->tmp);
		if (system(cmd) != 0)
			_exit(3);
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(4);
		dw_backup_create_opts_default(&o);
		o.source = f->src;
		o.fsync = false;
		status = dw_backup_create(f->r, &o, &info);
		if (status != 0) {
			fprintf(stderr, "create as an unprivileged user: %s\n",
				dw_strerror(status));
			_exit(5);
		}
		if (info.stats.unreadable != 2)
			_exit(6);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(dw_backup_stat(f->r, "latest", &info), 0);
	assert_int_equal(info.stats.unreadable, 2);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, NULL), 0);
}

static void cancel_on_progress(void *arg, const dw_backup_stats *s)
{
	(void)s;
	atomic_store((_Atomic bool *)arg, true);
}

static void test_cancel_leaves_nothing(void **state)
{
	struct fx *f = *state;
	dw_backup_create_opts o;
	dw_backup_info info;
	_Atomic bool cancel = false;
	char rel[4096];
	int n = 0;

	make_tree(f->src);
	for (int i = 0; i < 200; i++) {
		snprintf(rel, sizeof(rel), "many%03d", i);
		assert_int_equal(tu_write(f->src, rel, 3 * BS, 100 + (uint32_t)i, 0644), 0);
	}
	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.fsync = false;
	o.cancel = &cancel;
	o.progress = cancel_on_progress;
	o.arg = &cancel;
	o.progress_ms = 0;
	assert_int_equal(dw_backup_create(f->r, &o, &info), DW_ECANCELED);
	assert_int_equal(dw_backup_stat(f->r, "latest", &info), DW_ENOTFOUND);
	/* nothing left behind */
	snprintf(rel, sizeof(rel), "ls -A '%s/packs' '%s/tmp' | grep -v ':$' | grep -c . || true",
		 f->repo, f->repo);
	{
		FILE *pp = popen(rel, "r");

		assert_non_null(pp);
		assert_int_equal(fscanf(pp, "%d", &n), 1);
		pclose(pp);
	}
	assert_int_equal(n, 0);
}

static void test_repo_init_open_errors(void **state)
{
	struct fx *f = *state;
	dw_backup_repo *r = NULL;
	dw_backup_repo_config cfg;
	char *p;

	assert_int_equal(dw_backup_repo_init(f->repo, NULL), DW_EEXIST);
	assert_int_equal(dw_backup_repo_init(f->src, NULL), 0); /* empty dir is fine */
	p = tu_join(f->tmp, "notrepo");
	mkdir(p, 0755);
	assert_int_equal(tu_write(p, "x", 1, 1, 0644), 0);
	assert_int_equal(dw_backup_repo_init(p, NULL), DW_EEXIST);
	assert_int_equal(dw_backup_repo_open(p, &r), DW_ENOTFOUND);
	assert_null(r);
	free(p);
	p = tu_join(f->tmp, "missing");
	assert_int_equal(dw_backup_repo_open(p, &r), DW_ENOTFOUND);
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = 100;
	assert_int_equal(dw_backup_repo_init(p, &cfg), DW_ECONFIG);
	free(p);
	dw_backup_repo_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental_changed_blocks_only, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ignore_inode_ctime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_finds_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_files_every_pool_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_nonempty_target, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restore_path_subset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repo_init_open_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
