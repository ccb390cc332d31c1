// SPDX-License-Identifier: MIT
/*
 * io_uring taken away: a forked child installs a seccomp filter (classic BPF written by hand)
 * that makes io_uring_setup and io_uring_enter fail with EPERM, or with ENOSYS, and the
 * scheduler must run on the psync pool there and say why. A third case takes io_uring away
 * while a manager is already running on it (filter installed on every thread with TSYNC): the
 * next ops must still succeed, on psync, after the switch. io_uring_setup failing for memory
 * (ENOMEM) must do the same. And a filesystem that refuses O_DIRECT: a filter that answers
 * EINVAL to O_DIRECT in openat and in fcntl(F_SETFL), as such a filesystem does, and the files
 * must open buffered and say so, O_CREAT|O_EXCL included.
 *
 * The child reports through its exit status: 0 = all good, 10+ = which check failed, 77 = the
 * machine cannot install the filter. The parent turns that into an assertion.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/io.h"
#include "io/io_int.h"
#include "../test_tmpdir.h"

#if defined(__x86_64__)
#define ARCH_NR AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH_NR AUDIT_ARCH_AARCH64
#else
#define ARCH_NR 0
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif

static char tmpdir[256];

/*
 * Filter: on the native architecture, io_uring_setup and io_uring_enter return -err; every other
 * system call is allowed. (A foreign-architecture call is allowed too: this is a test fixture,
 * not a sandbox.)
 */
static int install_filter(int err, bool all_threads)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_NR, 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };

	if (ARCH_NR == 0)
		return -ENOTSUP;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		    all_threads ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog) != 0)
		return -errno;
	return 0;
}

/* Filter: O_DIRECT in openat's flags or in fcntl(F_SETFL)'s argument gets EINVAL. */
static int install_direct_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_NR, 0, 7),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fcntl, 0, 2),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_SETFL, 1, 3),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 0, 2),
		/* the low 32 bits of args[2] (little-endian): open flags or F_SETFL's flags */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, O_DIRECT, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };

	if (ARCH_NR == 0 || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
		return -ENOTSUP;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -errno;
	return 0;
}

/* Writes, fsyncs and reads back through f; 0 if all good. */
static int exercise(dw_io_file *f)
{
	static char w[8192], r[8192];

	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (char)(i * 13);
	for (int t = 0; t < DW_IO_TIERS; t++) {
		if (dw_io_pwrite(f, w, sizeof(w), (uint64_t)t * sizeof(w), (dw_io_tier)t, NULL) !=
		    (int)sizeof(w))
			return -1;
	}
	if (dw_io_fsync(f, DW_IO_HIGH, NULL) != 0)
		return -1;
	for (int t = 0; t < DW_IO_TIERS; t++) {
		memset(r, 0, sizeof(r));
		if (dw_io_pread(f, r, sizeof(r), (uint64_t)t * sizeof(r), DW_IO_LOW, NULL) !=
		    (int)sizeof(r))
			return -1;
		if (memcmp(r, w, sizeof(r)) != 0)
			return -1;
	}
	return 0;
}

/* Child: filter first, then a manager on AUTO must come up on psync and report err. */
static int child_filtered_from_start(int err)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *f;
	dw_io *io;
	char path[512];
	size_t ma, oa;

	if (install_filter(err, false) < 0)
		return 77;
	if (dw__probe_uring() != -err)
		return 10;
	dw_io_config_default(&cfg);
	if (dw_io_open(&cfg, &io) < 0)
		return 11;
	snprintf(path, sizeof(path), "%s/fb-%d.dat", tmpdir, err);
	if (dw_io_file_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0600, 0, &f) < 0)
		return 12;
	if (exercise(f) != 0)
		return 13;
	if (dw_io_file_info(f, &info) < 0 || info.backend != DW_IO_ENGINE_PSYNC)
		return 14;
	if (info.uring_errno != -err)
		return 15;
	dw_io_file_close(f);
	/* engine io_uring asked for explicitly: refused with the reason, not silently psync */
	dw_io_close(io);
	cfg.engine = DW_IO_ENGINE_URING;
	if (dw_io_open(&cfg, &io) < 0)
		return 16;
	if (dw_io_file_open(io, path, O_RDWR, 0, 0, &f) != -err)
		return 17;
	dw_io_close(io);
	/* the standalone probe says the same */
	if (dw_io_probe_path(path, &info, &ma, &oa) < 0 || info.uring_errno != -err ||
	    info.backend != DW_IO_ENGINE_PSYNC)
		return 18;
	return 0;
}

/* Child: a manager running on io_uring loses it (all threads) and must carry on on psync. */
static int child_filtered_at_run_time(void)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *f;
	dw_io *io;
	char path[512];

	dw_io_config_default(&cfg);
	if (dw_io_open(&cfg, &io) < 0)
		return 11;
	snprintf(path, sizeof(path), "%s/fb-run.dat", tmpdir);
	if (dw_io_file_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0600, 0, &f) < 0)
		return 12;
	if (exercise(f) != 0)
		return 13;
	if (dw_io_file_info(f, &info) < 0 || info.backend != DW_IO_ENGINE_URING)
		return 77; /* io_uring not usable here to begin with: nothing to take away */
	if (install_filter(EPERM, true) < 0)
		return 77;
	if (exercise(f) != 0)
		return 20;
	if (dw_io_file_info(f, &info) < 0 || info.backend != DW_IO_ENGINE_PSYNC)
		return 21;
	if (info.uring_errno != -EPERM || info.switches < 1)
		return 22;
	dw_io_file_close(f);
	dw_io_close(io);
	return 0;
}

/* Child: O_DIRECT refused everywhere: the manager says so and works buffered. */
static int child_direct_refused(void)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *d, *f;
	dw_io *io;
	char path[512];
	size_t ma, oa;

	if (install_direct_filter() < 0)
		return 77;
	dw_io_config_default(&cfg);
	if (dw_io_open(&cfg, &io) < 0)
		return 11;
	/* the probe in a held directory */
	if (dw_io_file_open(io, tmpdir, O_RDONLY | O_DIRECTORY, 0, 0, &d) < 0)
		return 20;
	if (dw_io_file_info(d, &info) < 0 || info.direct_errno != -EINVAL)
		return 21;
	/* a new file, exclusively: opened once, buffered */
	snprintf(path, sizeof(path), "%s/fb-direct.dat", tmpdir);
	if (dw_io_file_open(io, path, O_RDWR | O_CREAT | O_EXCL, 0600, DW_IO_F_DIRECT, &f) < 0)
		return 22;
	if (dw_io_file_direct(f) || dw_io_file_mem_align(f) != 1)
		return 23;
	if (exercise(f) != 0)
		return 24;
	if (dw_io_file_info(f, &info) < 0 || info.direct_errno != -EINVAL)
		return 25;
	dw_io_file_close(f);
	dw_io_file_close(d);
	dw_io_close(io);
	/* the standalone probe says the same */
	if (dw_io_probe_path(tmpdir, &info, &ma, &oa) < 0 || info.direct_errno != -EINVAL)
		return 26;
	return 0;
}

static void run_child(int (*fn)(int), int arg, int (*fn0)(void))
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn ? fn(arg) : fn0());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		printf("cannot install a seccomp filter or use io_uring here: skipping\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_seccomp_eperm(void **state)
{
	(void)state;
	run_child(child_filtered_from_start, EPERM, NULL);
}

static void test_seccomp_enosys(void **state)
{
	(void)state;
	run_child(child_filtered_from_start, ENOSYS, NULL);
}

static void test_setup_enomem(void **state)
{
	(void)state;
	run_child(child_filtered_from_start, ENOMEM, NULL);
}

static void test_direct_refused(void **state)
{
	(void)state;
	run_child(NULL, 0, child_direct_refused);
}

static void test_taken_away_at_run_time(void **state)
{
	(void)state;
	run_child(NULL, 0, child_filtered_at_run_time);
}

static int setup_dir(void **state)
{
	(void)state;
	if (tt_mkdtemp("fallback", tmpdir, sizeof(tmpdir)) < 0)
		return -1;
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	return tt_rm_rf(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seccomp_eperm),
		cmocka_unit_test(test_seccomp_enosys),
		cmocka_unit_test(test_setup_enomem),
		cmocka_unit_test(test_direct_refused),
		cmocka_unit_test(test_taken_away_at_run_time),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
