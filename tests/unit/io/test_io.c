// SPDX-License-Identifier: MIT
/*
 * The io manager on real files: round trips on each backend, many async ops with live depth
 * changes, O_DIRECT, bad input, quotas (refuse and demote), and the scalable face.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "dwscale/io.h"
#include "io/io_int.h"
#include "../test_tmpdir.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	if (tt_mkdtemp("io", tmpdir, sizeof(tmpdir)) < 0)
		return -1;
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	return tt_rm_rf(tmpdir);
}

static void path_of(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

static void roundtrip(dw_io_engine engine)
{
	static unsigned char wbuf[65536], rbuf[65536];
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *f;
	dw_io *io;
	char path[512];

	dw_io_config_default(&cfg);
	cfg.engine = engine;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "rt.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0600, 0, &f), 0);
	fill(wbuf, sizeof(wbuf), (unsigned)engine);
	for (int t = 0; t < DW_IO_TIERS; t++) {
		assert_int_equal(dw_io_pwrite(f, wbuf + t * 16384, 16384, (uint64_t)t * 16384,
					      (dw_io_tier)t, NULL),
				 16384);
	}
	assert_int_equal(dw_io_pwrite(f, wbuf + 49152, 16384, 49152, DW_IO_HIGH, NULL), 16384);
	for (int t = 0; t < DW_IO_TIERS; t++)
		assert_int_equal(dw_io_fsync(f, (dw_io_tier)t, NULL), 0);
	memset(rbuf, 0, sizeof(rbuf));
	assert_int_equal(dw_io_pread(f, rbuf, sizeof(rbuf), 0, DW_IO_LOW, NULL), 65536);
	assert_memory_equal(rbuf, wbuf, sizeof(rbuf));
	/* past the end: 0 bytes, not an error */
	assert_int_equal(dw_io_pread(f, rbuf, 4096, 1 << 20, DW_IO_NORMAL, NULL), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	if (engine != DW_IO_ENGINE_AUTO)
		assert_int_equal(info.backend, engine);
	else
		assert_int_equal(info.backend,
				 info.uring_errno == 0 ? DW_IO_ENGINE_URING : DW_IO_ENGINE_PSYNC);
	assert_true(info.depth >= 1);
	assert_int_equal(info.state, DW_BP_NORMAL);
	dw_io_file_close(f);
	dw_io_close(io);
}

static void test_roundtrip_psync(void **state)
{
	(void)state;
	roundtrip(DW_IO_ENGINE_PSYNC);
}

static void test_roundtrip_uring(void **state)
{
	int rc = dw__probe_uring();

	(void)state;
	if (rc < 0) {
		printf("io_uring not available here (%s): skipping\n", dw_err_name(rc));
		skip();
	}
	roundtrip(DW_IO_ENGINE_URING);
}

static void test_roundtrip_auto(void **state)
{
	(void)state;
	roundtrip(DW_IO_ENGINE_AUTO);
}

/* ---- many async ops with live depth changes ---------------------------------------------- */

#define NOPS 2000
#define OPSZ 4096

static atomic_uint done_count;
static atomic_uint seen[NOPS];
static atomic_int bad_res;

static void on_write(void *arg, int res)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	if (res != OPSZ)
		atomic_store(&bad_res, res == 0 ? -1 : res);
	atomic_fetch_add(&seen[id], 1);
	atomic_fetch_add(&done_count, 1);
}

static void async_many(dw_io_engine engine)
{
	static unsigned char bufs[NOPS][OPSZ], rb[OPSZ];
	static const unsigned depths[] = { 1, 64, 3, 200, 8 };
	dw_io_config cfg;
	dw_io_file *f;
	dw_io *io;
	char path[512];

	dw_io_config_default(&cfg);
	cfg.engine = engine;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "many.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0600, 0, &f), 0);
	atomic_store(&done_count, 0);
	atomic_store(&bad_res, 0);
	for (unsigned i = 0; i < NOPS; i++)
		atomic_store(&seen[i], 0);
	for (unsigned i = 0; i < NOPS; i++) {
		dw_io_req r = { .file = f,
				.op = DW_IO_OP_WRITE,
				.tier = (dw_io_tier)(i % 3),
				.buf = bufs[i],
				.len = OPSZ,
				.off = (uint64_t)i * OPSZ };

		fill(bufs[i], OPSZ, i);
		assert_int_equal(dw_io_submit(&r, on_write, (void *)(uintptr_t)i), 0);
		if (i % 400 == 399)
			assert_int_equal(dw_io_set_depth(f, depths[i / 400]), 0);
	}
	while (atomic_load(&done_count) < NOPS)
		usleep(1000);
	assert_int_equal(atomic_load(&bad_res), 0);
	for (unsigned i = 0; i < NOPS; i++)
		assert_int_equal(atomic_load(&seen[i]), 1);
	for (unsigned i = 0; i < NOPS; i += 97) {
		assert_int_equal(dw_io_pread(f, rb, OPSZ, (uint64_t)i * OPSZ, DW_IO_HIGH, NULL),
				 OPSZ);
		assert_memory_equal(rb, bufs[i], OPSZ);
	}
	dw_io_file_close(f);
	dw_io_close(io);
}

static void test_async_many_psync(void **state)
{
	(void)state;
	async_many(DW_IO_ENGINE_PSYNC);
}

static void test_async_many_auto(void **state)
{
	(void)state;
	async_many(DW_IO_ENGINE_AUTO);
}

static void test_direct(void **state)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *f;
	dw_io *io;
	char path[512];
	void *buf = NULL;
	size_t ma, oa;

	(void)state;
	dw_io_config_default(&cfg);
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "direct.dat");
	assert_int_equal(
		dw_io_file_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0600, DW_IO_F_DIRECT, &f), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	if (!dw_io_file_direct(f)) {
		/* the filesystem refused it: buffered, and recorded as such */
		assert_int_equal(info.direct_errno, -EINVAL);
		assert_int_equal(dw_io_file_mem_align(f), 1);
	} else {
		assert_int_equal(info.direct_errno, 0);
		ma = dw_io_file_mem_align(f);
		oa = dw_io_file_off_align(f);
		assert_true(ma >= 1 && (ma & (ma - 1)) == 0);
		assert_true(oa >= 512 && (oa & (oa - 1)) == 0);
		assert_int_equal(posix_memalign(&buf, 4096, 8192), 0);
		memset(buf, 0x5a, 8192);
		assert_int_equal(dw_io_pwrite(f, buf, 8192, 0, DW_IO_HIGH, NULL), 8192);
		memset(buf, 0, 8192);
		assert_int_equal(dw_io_pread(f, buf, 4096, 4096, DW_IO_HIGH, NULL), 4096);
		assert_int_equal(((unsigned char *)buf)[4095], 0x5a);
		/* an O_DIRECT read off the offset alignment is the kernel's EINVAL, passed through
		 */
		assert_int_equal(dw_io_pread(f, buf, oa, 1, DW_IO_HIGH, NULL), -EINVAL);
		free(buf);
	}
	dw_io_file_close(f);
	/* The probe without a manager agrees. */
	assert_int_equal(dw_io_probe_path(tmpdir, &info, &ma, &oa), 0);
	if (info.direct_errno == 0)
		assert_true(oa >= 512);
	dw_io_close(io);
}

/* Write text to root/rel, making the directories on the way. */
static void put_file(const char *root, const char *rel, const char *text)
{
	char path[512], *slash;
	FILE *fp;

	mkdir(root, 0755);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void link_dev(const char *root, const char *majmin, const char *target)
{
	char path[512], to[512];

	snprintf(path, sizeof(path), "%s/dev/block/%s", root, majmin);
	snprintf(to, sizeof(to), "%s/devices/%s", root, target);
	unlink(path);
	assert_int_equal(symlink(to, path), 0);
}

/*
 * The device table from sysfs, on a tree of the test's own: class by name and rotational flag,
 * logical block size, and a partition answering for its disk (one scheduler per disk).
 */
static void test_probe_device_sysfs(void **state)
{
	const char *saved = dw__probe_sysfs;
	struct io_devprobe p;
	char root[300];

	(void)state;
	snprintf(root, sizeof(root), "%s/sysfs", tmpdir);
	put_file(root, "devices/sda/dev", "8:0\n");
	put_file(root, "devices/sda/queue/rotational", "0\n");
	put_file(root, "devices/sda/queue/logical_block_size", "4096\n");
	put_file(root, "devices/sda/sda2/partition", "2\n");
	put_file(root, "devices/sda/sda2/dev", "8:2\n");
	put_file(root, "devices/sdb/queue/rotational", "1\n");
	put_file(root, "devices/nvme0n1/queue/logical_block_size", "512\n");
	put_file(root, "dev/block/.keep", "");
	link_dev(root, "8:0", "sda");
	link_dev(root, "8:2", "sda/sda2");
	link_dev(root, "8:16", "sdb");
	link_dev(root, "259:0", "nvme0n1");
	dw__probe_sysfs = root;

	dw__probe_device(makedev(8, 2), &p);
	assert_string_equal(p.name, "sda");
	assert_true(p.disk == makedev(8, 0));
	assert_int_equal(p.class_, DW_IO_CLASS_SSD);
	assert_int_equal(p.logical_block, 4096);
	dw__probe_device(makedev(8, 0), &p);
	assert_true(p.disk == makedev(8, 0));
	dw__probe_device(makedev(8, 16), &p);
	assert_string_equal(p.name, "sdb");
	assert_int_equal(p.class_, DW_IO_CLASS_HDD);
	assert_int_equal(dw_io_class_depth(p.class_), 8);
	dw__probe_device(makedev(259, 0), &p);
	assert_int_equal(p.class_, DW_IO_CLASS_NVME);
	assert_int_equal(dw_io_class_depth(p.class_), 128);
	dw__probe_device(makedev(9, 9), &p); /* not in sysfs */
	assert_string_equal(p.name, "dev-9:9");
	assert_int_equal(p.class_, DW_IO_CLASS_UNKNOWN);
	assert_true(p.disk == makedev(9, 9));
	dw__probe_sysfs = saved;
}

/* A directory held on a device probes O_DIRECT there at once: its answer, not "not tried". */
static void test_direct_probed_in_dir(void **state)
{
	dw_io_config cfg;
	dw_io_dev_info info, probe;
	dw_io_file *f;
	dw_io *io;
	size_t ma, oa;

	(void)state;
	dw_io_config_default(&cfg);
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_file_open(io, tmpdir, O_RDONLY | O_DIRECTORY, 0, 0, &f), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(dw_io_probe_path(tmpdir, &probe, &ma, &oa), 0);
	assert_int_not_equal(info.direct_errno, 1);
	assert_int_equal(info.direct_errno, probe.direct_errno);
	dw_io_file_close(f);
	dw_io_close(io);
}

static void noop_cb(void *arg, int res)
{
	(void)arg;
	(void)res;
}

static void test_bad_input(void **state)
{
	dw_io_config cfg;
	dw_io_file *f;
	dw_io *io;
	char path[512], buf[16];
	dw_io_req r;

	(void)state;
	dw_io_config_default(&cfg);
	cfg.weight[DW_IO_LOW] = 0;
	assert_int_equal(dw_io_open(&cfg, &io), DW_ECONFIG);
	dw_io_config_default(&cfg);
	cfg.bp_critical = 0.95; /* above shedding */
	assert_int_equal(dw_io_open(&cfg, &io), DW_ECONFIG);
	dw_io_config_default(&cfg);
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "missing/nope.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDONLY, 0, 0, &f), -ENOENT);
	assert_null(f);
	path_of(path, sizeof(path), "bad.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0x80, &f), DW_EUSAGE);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);

	memset(&r, 0, sizeof(r));
	r.file = f;
	r.op = DW_IO_OP_READ;
	r.len = sizeof(buf);
	assert_int_equal(dw_io_submit(&r, noop_cb, NULL), DW_EUSAGE); /* no buffer */
	r.buf = buf;
	r.tier = (dw_io_tier)7;
	assert_int_equal(dw_io_submit(&r, noop_cb, NULL), DW_EUSAGE);
	r.tier = DW_IO_LOW;
	r.len = (size_t)DW_IO_LEN_MAX + 1;
	assert_int_equal(dw_io_submit(&r, noop_cb, NULL), DW_EUSAGE);
	r.len = sizeof(buf);
	r.caller = "has space";
	assert_int_equal(dw_io_submit(&r, noop_cb, NULL), DW_EUSAGE);
	r.caller = "";
	assert_int_equal(dw_io_submit(&r, noop_cb, NULL), DW_EUSAGE);
	assert_int_equal(dw_io_submit(&r, NULL, NULL), DW_EUSAGE);
	assert_int_equal(dw_io_pwrite(NULL, buf, 1, 0, DW_IO_LOW, NULL), DW_EUSAGE);
	/* a write to a read-only fd: the kernel's error reaches the caller */
	dw_io_file_close(f);
	assert_int_equal(dw_io_file_open(io, path, O_RDONLY, 0, 0, &f), 0);
	assert_int_equal(dw_io_pwrite(f, "x", 1, 0, DW_IO_NORMAL, NULL), -EBADF);
	dw_io_file_close(f);
	dw_io_file_close(NULL);
	dw_io_close(io);
	dw_io_close(NULL);
}

/* ---- quotas through the manager ---------------------------------------------------------- */

struct metric_find {
	const char *name, *labels_part;
	double sum;
};

static void find_metric(void *arg, const dw_metric *m)
{
	struct metric_find *mf = arg;

	if (strcmp(m->name, mf->name) == 0 && m->labels && strstr(m->labels, mf->labels_part))
		mf->sum += m->value;
}

static double metric(dw_io *io, const char *name, const char *labels_part)
{
	struct metric_find mf = { name, labels_part, 0 };
	const dw_scalable *sc;

	sc = dw_io_scalable(io);
	assert_int_equal(sc->ops->metrics(sc->self, find_metric, &mf), 0);
	return mf.sum;
}

static void test_quota_refuse_and_demote(void **state)
{
	static char buf[4096];
	dw_io_config cfg;
	dw_io_file *f;
	dw_io *io;
	uint64_t b, o;
	char path[512];

	(void)state;
	dw_io_config_default(&cfg);
	cfg.quota_bytes = 8192;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "quota.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, "tenant-a"), 4096);
	assert_int_equal(dw_io_pwrite(f, buf, 4000, 0, DW_IO_HIGH, "tenant-a"), 4000);
	/* 8096 < 8192: one more op is admitted, taking it past the quota by less than one op */
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, "tenant-a"), 4096);
	assert_int_equal(dw_io_pwrite(f, buf, 1, 0, DW_IO_HIGH, "tenant-a"), DW_EQUOTA);
	assert_int_equal(dw_io_fsync(f, DW_IO_HIGH, "tenant-a"), DW_EQUOTA);
	assert_int_equal(dw_io_quota_get(io, "tenant-a", &b, &o), 0);
	assert_int_equal(b, 12192);
	assert_int_equal(o, 3);
	/* others are not affected; no caller means no quota */
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, "tenant-b"), 4096);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, NULL), 4096);
	/* a per-caller quota overrides the default; 0 = unlimited */
	assert_int_equal(dw_io_quota_set(io, "tenant-a", 0, 0), 0);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, "tenant-a"), 4096);
	assert_int_equal(dw_io_quota_set(io, "bad id", 1, 1), DW_EUSAGE);
	assert_true(metric(io, "quota_refused", "dev=") >= 2);
	dw_io_file_close(f);
	dw_io_close(io);

	/* Demote mode: over quota the op still runs, as Low. */
	cfg.quota_demote = true;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR, 0, 0, &f), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_HIGH, "tenant-c"), 4096);
	assert_true(metric(io, "demoted", "tier=\"high\"") == 2);
	assert_true(metric(io, "completed", "tier=\"low\"") == 2);
	assert_true(metric(io, "completed", "tier=\"high\"") == 2);
	dw_io_file_close(f);
	dw_io_close(io);
}

static void test_quota_persists_in_store(void **state)
{
	static char buf[4096];
	dw_io_config cfg;
	dw_io_file *f;
	dw_store *st;
	dw_io *io;
	uint64_t b, o;
	char path[512], db[512];

	(void)state;
	path_of(db, sizeof(db), "io-store.db");
	assert_int_equal(dw_store_open(db, &st), 0);
	dw_io_config_default(&cfg);
	cfg.store = st;
	cfg.quota_bytes = 10000;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "qp.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_NORMAL, "job-7"), 4096);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_NORMAL, "job-7"), 4096);
	dw_io_file_close(f);
	dw_io_close(io);

	/* a new manager on the same store: the caller has 1808 bytes of its window left */
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_quota_get(io, "job-7", &b, &o), 0);
	assert_int_equal(b, 8192);
	assert_int_equal(o, 2);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR, 0, 0, &f), 0);
	assert_int_equal(dw_io_pwrite(f, buf, 4096, 0, DW_IO_NORMAL, "job-7"), 4096);
	assert_int_equal(dw_io_pwrite(f, buf, 1, 0, DW_IO_NORMAL, "job-7"), DW_EQUOTA);
	dw_io_file_close(f);
	dw_io_close(io);
	dw_store_close(st);
}

static atomic_uint shed_done;

static void count_done(void *arg, int res)
{
	(void)arg;
	(void)res;
	atomic_fetch_add(&shed_done, 1);
}

static void test_shed_ops_are_not_charged(void **state)
{
	static char buf[256 << 10]; /* slow enough that 4 queued slots overflow */
	dw_io_config cfg;
	dw_io_file *f;
	dw_io *io;
	uint64_t b, o;
	unsigned accepted = 0, shed = 0;
	char path[512];

	(void)state;
	dw_io_config_default(&cfg);
	cfg.engine = DW_IO_ENGINE_PSYNC;
	cfg.depth = 1;
	cfg.max_queued = 4;
	cfg.quota_bytes = 1 << 30;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "shed.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);
	atomic_store(&shed_done, 0);
	for (int i = 0; i < 400; i++) {
		dw_io_req r = { .file = f,
				.op = DW_IO_OP_WRITE,
				.tier = i % 2 ? DW_IO_LOW : DW_IO_HIGH,
				.buf = buf,
				.len = sizeof(buf),
				.off = 0,
				.caller = "shedme" };
		int rc = dw_io_submit(&r, count_done, NULL);

		if (rc == 0)
			accepted++;
		else if (rc == DW_ESHED)
			shed++;
		else
			fail_msg("unexpected %d", rc);
	}
	while (atomic_load(&shed_done) < accepted)
		usleep(1000);
	assert_int_equal(accepted + shed, 400);
	assert_true(shed > 0 && accepted >= 5);
	/* whatever was shed was given back: the quota holds exactly what ran */
	assert_int_equal(dw_io_quota_get(io, "shedme", &b, &o), 0);
	assert_int_equal(o, accepted);
	assert_int_equal(b, (uint64_t)accepted * sizeof(buf));
	dw_io_file_close(f);
	dw_io_close(io);
}

static void test_calibrated_depth(void **state)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	dw_io_file *f;
	dw_store *st;
	dw_io *io;
	unsigned d;
	char path[512], db[512];

	(void)state;
	path_of(db, sizeof(db), "calib-store.db");
	assert_int_equal(dw_store_open(db, &st), 0);
	dw_io_config_default(&cfg);
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	path_of(path, sizeof(path), "calib.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);
	assert_int_equal(dw_io_calibrated_depth_set(f, 12), DW_EUNSUPPORTED); /* no store */
	dw_io_file_close(f);
	dw_io_close(io);

	cfg.store = st;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR, 0, 0, &f), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(dw_io_calibrated_depth_get(st, info.name, &d), DW_ENOTFOUND);
	assert_int_equal(dw_io_calibrated_depth_set(f, DW_IO_DEPTH_MAX + 1), DW_EUSAGE);
	assert_int_equal(dw_io_calibrated_depth_set(f, 12), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 12); /* applied at once */
	assert_string_equal(info.depth_why, "calibrated");
	dw_io_file_close(f);
	dw_io_close(io);

	/* a later manager on the same store starts with it */
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR, 0, 0, &f), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 12);
	assert_int_equal(dw_io_calibrated_depth_get(st, info.name, &d), 0);
	assert_int_equal(d, 12);
	/* a run-time setting still wins, and 0 removes the calibration */
	assert_int_equal(dw_io_set_depth(f, 3), 0);
	assert_int_equal(dw_io_calibrated_depth_set(f, 0), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 3);
	assert_int_equal(dw_io_set_depth(f, 0), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, dw_io_class_depth(info.class_));
	assert_int_equal(dw_io_calibrated_depth_get(st, info.name, &d), DW_ENOTFOUND);
	dw_io_file_close(f);
	dw_io_close(io);

	/* a configured depth wins over a calibrated one */
	cfg.depth = 5;
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	assert_int_equal(dw_io_file_open(io, path, O_RDWR, 0, 0, &f), 0);
	assert_int_equal(dw_io_calibrated_depth_set(f, 40), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 5);
	assert_string_equal(info.depth_why, "configured");
	dw_io_file_close(f);
	dw_io_close(io);
	dw_store_close(st);
}

/* ---- scalable ------------------------------------------------------------------------------ */

struct lim_find {
	const char *name;
	double value;
	int count;
};

static void find_limit(void *arg, const dw_limit *l)
{
	struct lim_find *lf = arg;

	lf->count++;
	if (strcmp(l->name, lf->name) == 0)
		lf->value = l->value;
}

static void test_scalable(void **state)
{
	dw_io_config cfg;
	dw_io_dev_info info;
	const dw_scalable *sc;
	dw_io_file *f;
	dw_io *io;
	struct lim_find lf = { "weight_high", -1, 0 };
	char path[512], err[200];

	(void)state;
	dw_io_config_default(&cfg);
	assert_int_equal(dw_io_open(&cfg, &io), 0);
	sc = dw_io_scalable(io);
	assert_string_equal(sc->name, "io");
	path_of(path, sizeof(path), "sc.dat");
	assert_int_equal(dw_io_file_open(io, path, O_RDWR | O_CREAT, 0600, 0, &f), 0);
	assert_int_equal(sc->ops->limits(sc->self, find_limit, &lf), 0);
	assert_true(lf.count >= 15);
	assert_true(lf.value == 16);

	dw_limit_change ok[] = { { "depth", 3, NULL }, { "weight_high", 8, NULL } };
	assert_int_equal(sc->ops->reconfigure(sc->self, ok, 2, err, sizeof(err)), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 3);
	assert_string_equal(info.depth_why, "configured");
	lf.value = -1;
	sc->ops->limits(sc->self, find_limit, &lf);
	assert_true(lf.value == 8);

	/* refused as a whole, with the limit named; nothing applied */
	dw_limit_change bad[] = { { "depth", 5, NULL }, { "weight_low", 0, NULL } };
	assert_int_equal(sc->ops->reconfigure(sc->self, bad, 2, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "weight_low"));
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 3);
	dw_limit_change order[] = { { "bp_warning", 0.95, NULL } };
	assert_int_equal(sc->ops->reconfigure(sc->self, order, 1, err, sizeof(err)), DW_ELIMIT);
	dw_limit_change unknown[] = { { "nope", 1, NULL } };
	assert_int_equal(sc->ops->reconfigure(sc->self, unknown, 1, err, sizeof(err)), DW_ELIMIT);
	assert_non_null(strstr(err, "nope"));

	/* per-file depth wins over the configured one, 0 gives it back */
	assert_int_equal(dw_io_set_depth(f, 17), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 17);
	assert_int_equal(dw_io_set_depth(f, 0), 0);
	assert_int_equal(dw_io_file_info(f, &info), 0);
	assert_int_equal(info.depth, 3);
	assert_int_equal(sc->ops->state(sc->self), DW_BP_NORMAL);
	assert_true(metric(io, "depth", "dev=") == 3);

	/* each device has a depth limit of its own, depth_<device>: set, shown, refused past max */
	{
		char name[64];
		size_t k;

		assert_int_equal(dw_io_file_info(f, &info), 0);
		snprintf(name, sizeof(name), "depth_%s", info.name);
		for (k = 6; name[k]; k++) {
			if (!((name[k] >= 'a' && name[k] <= 'z') ||
			      (name[k] >= '0' && name[k] <= '9')))
				name[k] = '_';
		}
		dw_limit_change dev[] = { { name, 9, NULL }, { "quota_demote", 1, NULL } };
		assert_int_equal(sc->ops->reconfigure(sc->self, dev, 2, err, sizeof(err)), 0);
		assert_int_equal(dw_io_file_info(f, &info), 0);
		assert_int_equal(info.depth, 9);
		assert_string_equal(info.depth_why, "set at run time");
		lf.name = name;
		lf.value = -1;
		sc->ops->limits(sc->self, find_limit, &lf);
		assert_true(lf.value == 9);
		lf.name = "quota_demote";
		sc->ops->limits(sc->self, find_limit, &lf);
		assert_true(lf.value == 1);
		dw_limit_change over[] = { { name, DW_IO_DEPTH_MAX + 1, NULL } };
		assert_int_equal(sc->ops->reconfigure(sc->self, over, 1, err, sizeof(err)),
				 DW_ELIMIT);
		assert_non_null(strstr(err, name));
		dw_limit_change back[] = { { name, 0, NULL } };
		assert_int_equal(sc->ops->reconfigure(sc->self, back, 1, err, sizeof(err)), 0);
		assert_int_equal(dw_io_file_info(f, &info), 0);
		assert_int_equal(info.depth, 3);
	}
	dw_io_file_close(f);
	dw_io_close(io);
}

static void test_names(void **state)
{
	dw_io_tier t;
	dw_io_engine e;

	(void)state;
	assert_int_equal(dw_io_tier_parse("low", &t), 0);
	assert_int_equal(t, DW_IO_LOW);
	assert_int_equal(dw_io_tier_parse("urgent", &t), DW_EUSAGE);
	assert_int_equal(dw_io_engine_parse("io_uring", &e), 0);
	assert_int_equal(e, DW_IO_ENGINE_URING);
	assert_int_equal(dw_io_engine_parse("aio", &e), DW_EUSAGE);
	assert_int_equal(dw_io_class_depth(DW_IO_CLASS_NVME), 128);
	assert_int_equal(dw_io_class_depth(DW_IO_CLASS_SSD), 32);
	assert_int_equal(dw_io_class_depth(DW_IO_CLASS_HDD), 8);
	assert_string_equal(dw_io_class_name(DW_IO_CLASS_HDD), "hdd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_roundtrip_psync),
		cmocka_unit_test(test_roundtrip_uring),
		cmocka_unit_test(test_roundtrip_auto),
		cmocka_unit_test(test_async_many_psync),
		cmocka_unit_test(test_async_many_auto),
		cmocka_unit_test(test_direct),
		cmocka_unit_test(test_direct_probed_in_dir),
		cmocka_unit_test(test_probe_device_sysfs),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_quota_refuse_and_demote),
		cmocka_unit_test(test_quota_persists_in_store),
		cmocka_unit_test(test_shed_ops_are_not_charged),
		cmocka_unit_test(test_calibrated_depth),
		cmocka_unit_test(test_scalable),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
