// SPDX-License-Identifier: MIT
/*
 * Encrypted repositories: full and incremental backups restore byte-identical and check clean;
 * neither names nor data appear in the clear in the repository; a missing or wrong key is
 * refused at open (DW_EAUTH) and changes nothing; a flipped byte in a pack or a manifest, or two
 * blobs swapped, is detected (DW_ECORRUPT), never restored as garbage; a killed create resumes;
 * key files round-trip and bad ones are refused.
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

#define BS 4096u

struct fx {
	char *tmp, *src, *repo;
	uint8_t key[DW_BACKUP_KEY_LEN];
	dw_backup_repo *r;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	dw_backup_repo_config cfg;
	char rel[64];

	if (!f)
		return -1;
	f->tmp = tu_mkdtemp("backup-crypt");
	f->src = tu_join(f->tmp, "src");
	f->repo = tu_join(f->tmp, "repo");
	mkdir(f->src, 0755);
	if (dw_backup_key_generate(f->key) != 0)
		return -1;
	dw_backup_repo_config_default(&cfg);
	cfg.block_size = BS;
	cfg.pack_size = 32 * BS;
	cfg.key = f->key;
	if (dw_backup_repo_init(f->repo, &cfg) != 0 ||
	    dw_backup_repo_open_key(f->repo, f->key, &f->r) != 0)
		return -1;
	for (int i = 0; i < 30; i++) {
		snprintf(rel, sizeof(rel), "file%02d", i);
		if (tu_write(f->src, rel, 3 * BS + (size_t)i, 20 + (uint32_t)i, 0644) != 0)
			return -1;
	}
	/* two random (incompressible, stored raw) files of one size: blobs of equal length */
	if (tu_write(f->src, "secret-name-7f3a", BS, 901, 0600) != 0 ||
	    tu_write(f->src, "twin", BS, 902, 0600) != 0 ||
	    tu_write(f->src, "text", 9 * BS, 0, 0644))
		return -1;
	{
		char *a = tu_join(f->src, "file00"), *b = tu_join(f->src, "zz-link");

		if (link(a, b) != 0)
			return -1;
		free(a);
		free(b);
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
	free(f);
	return 0;
}

static void create(struct fx *f, dw_backup_info *info)
{
	dw_backup_create_opts o;

	dw_backup_create_opts_default(&o);
	o.source = f->src;
	o.fsync = false;
	assert_int_equal(dw_backup_create(f->r, &o, info), 0);
}

static int restore(struct fx *f, const char *id, const char *name)
{
	dw_backup_restore_opts ro;
	dw_backup_stats st;
	char *out = tu_join(f->tmp, name);
	int rc;

	dw_backup_restore_opts_default(&ro);
	ro.target = out;
	rc = dw_backup_restore(f->r, id, &ro, &st);
	if (rc == 0)
		rc = tu_diff_dirs(f->src, out);
	free(out);
	return rc;
}

/* Does any file under dir contain the n bytes at needle? */
static bool repo_contains(const char *dir, const void *needle, size_t n)
{
	char cmd[8192];
	FILE *p;
	bool found = false;

	snprintf(cmd, sizeof(cmd), "find '%s' -type f", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(cmd, sizeof(cmd), p)) {
		FILE *g;
		static uint8_t buf[1 << 20];
		size_t got;

		cmd[strcspn(cmd, "\n")] = '\0';
		g = fopen(cmd, "rb");
		if (!g)
			continue;
		got = fread(buf, 1, sizeof(buf), g);
		fclose(g);
		for (size_t i = 0; i + n <= got && !found; i++)
			found = memcmp(buf + i, needle, n) == 0;
	}
	pclose(p);
	return found;
}

static void test_round_trip_and_nothing_in_clear(void **state)
{
	struct fx *f = *state;
	dw_backup_info full, inc;
	dw_backup_check_report rep;
	uint8_t data[BS];
	char *p;
	FILE *g;

	assert_true(dw_backup_repo_encrypted(f->r));
	create(f, &full);
	assert_int_equal(full.stats.hardlinks, 1);
	assert_int_equal(full.repo_bytes, full.stats.bytes_stored);
	assert_int_equal(restore(f, full.id, "out1"), 0);
	assert_int_equal(tu_write(f->src, "file05", 5 * BS, 77, 0644), 0);
	create(f, &inc);
	assert_int_equal(inc.type, DW_BACKUP_INCREMENTAL);
	assert_int_equal(inc.stats.files_changed, 1);
	assert_int_equal(restore(f, inc.id, "out2"), 0);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.backups, 2);

	/* no file name, no data in the clear */
	assert_false(repo_contains(f->repo, "secret-name-7f3a", 16));
	p = tu_join(f->src, "secret-name-7f3a");
	g = fopen(p, "rb");
	assert_non_null(g);
	assert_int_equal(fread(data, 1, sizeof(data), g), sizeof(data));
	fclose(g);
	free(p);
	assert_false(repo_contains(f->repo, data + 100, 32));
}

static void test_missing_or_wrong_key(void **state)
{
	struct fx *f = *state;
	dw_backup_repo *r = NULL;
	uint8_t wrong[DW_BACKUP_KEY_LEN];
	dw_backup_info info;

	create(f, &info);
	assert_int_equal(dw_backup_repo_open(f->repo, &r), DW_EAUTH);
	assert_null(r);
	memcpy(wrong, f->key, sizeof(wrong));
	wrong[7] ^= 1;
	assert_int_equal(dw_backup_repo_open_key(f->repo, wrong, &r), DW_EAUTH);
	assert_null(r);
	/* nothing changed: the right key still reads everything */
	assert_int_equal(dw_backup_stat(f->r, "latest", &info), 0);
	assert_int_equal(restore(f, info.id, "out"), 0);
}

static void flip(const char *path, long off)
{
	FILE *g = fopen(path, "r+b");
	int c;

	assert_non_null(g);
	assert_int_equal(fseek(g, off, off < 0 ? SEEK_END : SEEK_SET), 0);
	c = fgetc(g);
	assert_int_equal(fseek(g, -1, SEEK_CUR), 0);
	fputc(c ^ 0x01, g);
	fclose(g);
}

static void test_tampering_is_detected(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_check_report rep;
	char path[4096];

	create(f, &info);
	/* a byte of a pack */
	snprintf(path, sizeof(path), "%s/packs/%s/00000000.pack", f->repo, info.id);
	flip(path, 100);
	assert_int_equal(restore(f, info.id, "out1"), DW_ECORRUPT);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), DW_ECORRUPT);
	assert_true(rep.errors > 0);
	flip(path, 100); /* undo */
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);

	/* a byte in the middle of the manifest */
	snprintf(path, sizeof(path), "%s/backups/%s.manifest", f->repo, info.id);
	flip(path, 40);
	assert_int_equal(dw_backup_check(f->r, false, NULL, NULL, &rep), DW_ECORRUPT);
	assert_int_not_equal(restore(f, info.id, "out2"), 0);
	flip(path, 40);
	/* the trailer frame (what list reads) */
	flip(path, -20);
	assert_int_equal(dw_backup_stat(f->r, info.id, &info), DW_ENOTFOUND);
	flip(path, -20);
	assert_int_equal(dw_backup_stat(f->r, info.id, &info), 0);
	assert_int_equal(restore(f, info.id, "out3"), 0);
}

static void test_swapped_blobs_are_detected(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	char path[4096];
	uint8_t *pk;
	size_t n, a = 0, b = 0;
	FILE *g;
	const size_t blob = BS + 28; /* a raw 4 KiB block, sealed */

	/* a repository holding only the two equal-sized random files */
	tu_rm_rf(f->src);
	mkdir(f->src, 0755);
	assert_int_equal(tu_write(f->src, "a", BS, 501, 0644), 0);
	assert_int_equal(tu_write(f->src, "b", BS, 502, 0644), 0);
	create(f, &info);
	snprintf(path, sizeof(path), "%s/packs/%s/00000000.pack", f->repo, info.id);
	g = fopen(path, "r+b");
	assert_non_null(g);
	pk = malloc(1 << 20);
	n = fread(pk, 1, 1 << 20, g);
	assert_int_equal(n, 16 + 2 * blob);
	a = 16;
	b = 16 + blob;
	{
		uint8_t *t = malloc(blob);

		memcpy(t, pk + a, blob);
		memcpy(pk + a, pk + b, blob);
		memcpy(pk + b, t, blob);
		free(t);
	}
	rewind(g);
	assert_int_equal(fwrite(pk, 1, n, g), n);
	fclose(g);
	free(pk);
	assert_int_equal(restore(f, info.id, "out"), DW_ECORRUPT);
}

static void die_on_checkpoint(void *arg, const char *id, const dw_backup_stats *s)
{
	(void)arg;
	(void)id;
	if (s->files >= 15)
		kill(getpid(), SIGKILL);
}

static void test_resume_in_encrypted_repo(void **state)
{
	struct fx *f = *state;
	dw_backup_info info;
	dw_backup_check_report rep;
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		dw_backup_create_opts o;

		dw_backup_create_opts_default(&o);
		o.source = f->src;
		o.fsync = false;
		o.checkpoint_bytes = 4 * BS;
		o.checkpoint_ms = 0;
		o.checkpoint = die_on_checkpoint;
		dw_backup_create(f->r, &o, NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	/* the checkpoint names the last file recorded: sealed, like the manifest */
	assert_false(repo_contains(f->repo, "file0", 5));
	create(f, &info);
	assert_true(info.resumed);
	assert_int_equal(info.repo_bytes, info.stats.bytes_stored);
	assert_int_equal(restore(f, info.id, "out"), 0);
	assert_int_equal(dw_backup_check(f->r, true, NULL, NULL, &rep), 0);
	assert_int_equal(rep.incomplete, 0);
}

static void test_key_files(void **state)
{
	struct fx *f = *state;
	uint8_t k2[DW_BACKUP_KEY_LEN];
	char text[80], *path = tu_join(f->tmp, "key");
	FILE *g;

	assert_int_equal(dw_backup_key_format(f->key, text, sizeof(text)), 0);
	assert_int_equal(strlen(text), 64);
	g = fopen(path, "w");
	fprintf(g, "%s\n", text);
	fclose(g);
	assert_int_equal(dw_backup_key_load(path, k2), 0);
	assert_memory_equal(k2, f->key, sizeof(k2));
	g = fopen(path, "w");
	fprintf(g, "%.63s\n", text); /* one digit short */
	fclose(g);
	assert_int_equal(dw_backup_key_load(path, k2), DW_ECONFIG);
	assert_int_equal(dw_backup_key_parse("zz", k2), DW_ECONFIG);
	unlink(path);
	assert_int_equal(dw_backup_key_load(path, k2), DW_ENOTFOUND);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_nothing_in_clear, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_or_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampering_is_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swapped_blobs_are_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_in_encrypted_repo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_files, setup, teardown),
	};

	dw_log_set_level(DW_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
