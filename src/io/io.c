// SPDX-License-Identifier: MIT
/*
 * The io manager: one scheduler per block device, files bound to their device's scheduler,
 * admission (caller id, quota, then the scheduler's backpressure), blocking helpers, and the
 * scalable face (metrics per device and tier, limits, live reconfiguration).
 *
 * A device's scheduler is created the first time a file on it is opened: its class (sysfs) sets
 * the default depth, the backend is chosen by probing io_uring (config engine AUTO), and the
 * scheduler's re-probe hook (reprobe below) is called on its timer and after any backend failure:
 * it switches to psync when io_uring stops working and back when it works again. A re-probe
 * after a failure always moves to a fresh backend, because a failed ring cannot be trusted with
 * another submission (see uring.c).
 *
 * O_DIRECT is tried by every open that asks for it (EINVAL: buffered), which is the filesystem's
 * answer for that file. A device also probes it up front in the first directory held on it (a
 * node's data directory, say) with an unnamed temporary file, and again on each re-probe, so
 * its metrics say what O_DIRECT does there before a file asks and after a remount changes it.
 *
 * Threads and locking
 *   - io->lock guards the device table, the config copy (tunables) and each device's probe
 *     fields. It is never held while calling into a scheduler that could call back (reprobe runs
 *     on the scheduler's dispatch thread and takes io->lock briefly).
 *   - Lock order: io->lock, then a scheduler's lock (dw__sched_set_* are called under io->lock
 *     during reconfigure); schedulers never take io->lock while holding their own.
 *   - Files are not locked: a dw_io_file is immutable after open.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_int.h"

#define IO_DEVS_MAX 64 /* block devices per node; a cap keeps the table fixed */

#define IO_DEV_ALIASES 8 /* partitions (filesystems) of one disk remembered per device */

struct io_dev {
	dw_io *io;
	dev_t dev;		     /* the whole disk (or the device, if not a partition) */
	dev_t alias[IO_DEV_ALIASES]; /* protected by io->lock: its partitions seen so far */
	unsigned nalias;	     /* protected by io->lock */
	struct io_sched *s;
	struct io_devprobe probe;
	unsigned depth_override;   /* protected by io->lock: 0 = config/class */
	unsigned depth_calibrated; /* protected by io->lock: 0 = none stored */
	int uring_errno;	   /* protected by io->lock */
	int direct_errno;	   /* protected by io->lock: 1 = not tried */
	int dirfd; /* a directory on the device to probe O_DIRECT in (-1: none); set once, under
		    * io->lock, then only read */
	uint32_t mem_align, off_align; /* protected by io->lock */
	uint64_t demoted[DW_IO_TIERS]; /* protected by io->lock: ops demoted from each tier */
	uint64_t quota_refused;	       /* protected by io->lock */
};

static const dw_scalable_ops io_scalable_ops;

struct dw_io {
	pthread_mutex_t lock;
	dw_scalable scalable;		  /* immutable after open */
	dw_io_config cfg;		  /* protected by lock */
	struct io_dev *devs[IO_DEVS_MAX]; /* protected by lock */
	unsigned ndev;			  /* protected by lock */
	struct io_quota *quota;
};

struct dw_io_file {
	dw_io *io;
	struct io_dev *d;
	int fd;
	bool own_fd, direct;
	uint32_t mem_align, off_align;
};

/* ---- names -------------------------------------------------------------------------------- */

static const char *const tier_names[DW_IO_TIERS] = { "high", "normal", "low" };

const char *dw_io_tier_name(dw_io_tier t)
{
	return (unsigned)t < DW_IO_TIERS ? tier_names[t] : "unknown";
}

int dw_io_tier_parse(const char *s, dw_io_tier *out)
{
	for (int t = 0; s && t < DW_IO_TIERS; t++) {
		if (strcmp(s, tier_names[t]) == 0) {
			*out = (dw_io_tier)t;
			return 0;
		}
	}
	return DW_EUSAGE;
}

const char *dw_io_engine_name(dw_io_engine e)
{
	switch (e) {
	case DW_IO_ENGINE_AUTO:
		return "auto";
	case DW_IO_ENGINE_URING:
		return "io_uring";
	case DW_IO_ENGINE_PSYNC:
		return "psync";
	}
	return "unknown";
}

int dw_io_engine_parse(const char *s, dw_io_engine *out)
{
	static const dw_io_engine all[] = { DW_IO_ENGINE_AUTO, DW_IO_ENGINE_URING,
					    DW_IO_ENGINE_PSYNC };

	for (size_t i = 0; s && i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, dw_io_engine_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return DW_EUSAGE;
}

const char *dw_io_class_name(dw_io_class c)
{
	switch (c) {
	case DW_IO_CLASS_UNKNOWN:
		return "unknown";
	case DW_IO_CLASS_HDD:
		return "hdd";
	case DW_IO_CLASS_SSD:
		return "ssd";
	case DW_IO_CLASS_NVME:
		return "nvme";
	}
	return "unknown";
}

unsigned dw_io_class_depth(dw_io_class c)
{
	switch (c) {
	case DW_IO_CLASS_NVME:
		return 128; /* NVMe: deep hardware queues; throughput rises to ~128 */
	case DW_IO_CLASS_HDD:
		return 8; /* one head: a deeper queue only adds latency */
	case DW_IO_CLASS_SSD:
	case DW_IO_CLASS_UNKNOWN:
	default:
		return 32; /* SATA NCQ is 32 deep */
	}
}

/* ---- config ------------------------------------------------------------------------------- */

void dw_io_config_default(dw_io_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->engine = DW_IO_ENGINE_AUTO;
	cfg->weight[DW_IO_HIGH] = 16;
	cfg->weight[DW_IO_NORMAL] = 4;
	cfg->weight[DW_IO_LOW] = 1;
	cfg->deadline_ns[DW_IO_HIGH] = 50 * DW_NS_PER_MS;
	cfg->deadline_ns[DW_IO_NORMAL] = 250 * DW_NS_PER_MS;
	cfg->deadline_ns[DW_IO_LOW] = 500 * DW_NS_PER_MS; /* bounds Low's wait well under 1 s */
	cfg->high_linger_ns = 10 * DW_NS_PER_MS;	  /* ~ a few High QD1 round trips */
	cfg->reprobe_ns = 300 * DW_NS_PER_SEC;
	cfg->tick_ns = 10 * DW_NS_PER_MS;
	cfg->max_queued = 4096;
	cfg->bp_warning = 0.5;
	cfg->bp_critical = 0.75;
	cfg->bp_shedding = 0.9;
	cfg->bp_hysteresis = 0.1;
	cfg->quota_window_ns = 3600 * DW_NS_PER_SEC;
}

static int check_config(const dw_io_config *c)
{
	if ((unsigned)c->engine > DW_IO_ENGINE_PSYNC || c->depth > DW_IO_DEPTH_MAX ||
	    c->low_cap > DW_IO_DEPTH_MAX || c->max_queued < 1 || c->quota_window_ns == 0 ||
	    c->tick_ns == 0)
		return DW_ECONFIG;
	for (int t = 0; t < DW_IO_TIERS; t++) {
		if (c->weight[t] < 1 || c->weight[t] > 1000 || c->deadline_ns[t] == 0)
			return DW_ECONFIG;
	}
	if (!(c->bp_warning > 0 && c->bp_warning <= c->bp_critical &&
	      c->bp_critical <= c->bp_shedding && c->bp_shedding <= 1.0 && c->bp_hysteresis >= 0 &&
	      c->bp_hysteresis < c->bp_warning))
		return DW_ECONFIG;
	return 0;
}

int dw_io_open(const dw_io_config *cfg, dw_io **out)
{
	dw_io_config def;
	dw_io *io;
	int rc;

	*out = NULL;
	if (!cfg) {
		dw_io_config_default(&def);
		cfg = &def;
	}
	rc = check_config(cfg);
	if (rc < 0)
		return rc;
	io = dw_calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	pthread_mutex_init(&io->lock, NULL);
	io->cfg = *cfg;
	rc = dw__quota_open(cfg->clock, cfg->store, cfg->quota_window_ns, cfg->quota_bytes,
			    cfg->quota_ops, &io->quota);
	if (rc < 0) {
		pthread_mutex_destroy(&io->lock);
		dw_free(io);
		return rc;
	}
	io->scalable = (dw_scalable){ .name = "io", .ops = &io_scalable_ops, .self = io };
	*out = io;
	return 0;
}

void dw_io_close(dw_io *io)
{
	if (!io)
		return;
	for (unsigned i = 0; i < io->ndev; i++) {
		dw__sched_close(io->devs[i]->s);
		if (io->devs[i]->dirfd >= 0)
			close(io->devs[i]->dirfd);
		dw_free(io->devs[i]);
	}
	dw__quota_close(io->quota);
	pthread_mutex_destroy(&io->lock);
	dw_free(io);
}

/* ---- devices ------------------------------------------------------------------------------ */

static unsigned dev_depth_locked(dw_io *io, const struct io_dev *d)
{
	if (d->depth_override)
		return d->depth_override;
	if (io->cfg.depth)
		return io->cfg.depth;
	if (d->depth_calibrated)
		return d->depth_calibrated;
	return dw_io_class_depth(d->probe.class_);
}

/* Open the backend engine `want` asks for; on AUTO, io_uring if it works. */
static int open_backend(struct io_dev *d, dw_io_engine want, unsigned depth,
			struct io_backend **out)
{
	int urc = 0, rc;

	if (want != DW_IO_ENGINE_PSYNC) {
		urc = dw__probe_uring();
		if (urc == 0)
			urc = dw__uring_open(NULL, depth, out);
		pthread_mutex_lock(&d->io->lock);
		d->uring_errno = urc;
		pthread_mutex_unlock(&d->io->lock);
		if (urc == 0)
			return 0;
		if (want == DW_IO_ENGINE_URING)
			return urc;
	}
	rc = dw__psync_open(NULL, depth, out);
	return rc;
}

/*
 * O_DIRECT on the filesystem of dirfd: an unnamed temporary file opened with it (gone at close).
 * EINVAL says the filesystem refuses it; any other failure (no O_TMPFILE, read-only, no right
 * to write there) leaves the last answer standing. Alignment from statx, else the logical block.
 */
static void probe_direct(struct io_dev *d, int dirfd)
{
	uint32_t ma, oa;
	int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : 0;

	if (fd >= 0) {
		if (dw__probe_dioalign(fd, &ma, &oa) < 0)
			ma = oa = d->probe.logical_block;
		close(fd);
	}
	if (rc < 0 && rc != -EINVAL)
		return;
	pthread_mutex_lock(&d->io->lock);
	d->direct_errno = rc;
	if (rc == 0) {
		d->mem_align = ma;
		d->off_align = oa;
	}
	pthread_mutex_unlock(&d->io->lock);
}

/* Scheduler hook: see the file header. */
static int reprobe(void *ctx, struct io_sched *s, int failed, struct io_backend **nb)
{
	struct io_dev *d = ctx;
	struct io_sched_snapshot snap;
	dw_io_engine want, cur;
	unsigned depth;
	int urc, rc, dirfd;

	*nb = NULL;
	pthread_mutex_lock(&d->io->lock);
	want = d->io->cfg.engine;
	dirfd = d->dirfd;
	pthread_mutex_unlock(&d->io->lock);
	if (dirfd >= 0)
		probe_direct(d, dirfd);
	dw__sched_snapshot(s, &snap);
	cur = snap.backend;
	depth = snap.depth;
	urc = want == DW_IO_ENGINE_PSYNC ? 0 : dw__probe_uring();
	if (want != DW_IO_ENGINE_PSYNC) {
		pthread_mutex_lock(&d->io->lock);
		d->uring_errno = urc;
		pthread_mutex_unlock(&d->io->lock);
	}
	if (failed == 0) {
		bool uring_ok = want != DW_IO_ENGINE_PSYNC && urc == 0;

		if ((uring_ok && cur == DW_IO_ENGINE_URING) ||
		    (!uring_ok && cur == DW_IO_ENGINE_PSYNC))
			return 0;
	}
	if (want != DW_IO_ENGINE_PSYNC && urc == 0 && dw__uring_open(s, depth, nb) == 0)
		goto switched;
	rc = dw__psync_open(s, depth, nb);
	if (rc < 0) {
		dw_log(DW_LOG_ERROR, "io", "reprobe", "dev=%s err=%s", d->probe.name,
		       dw_err_name(rc));
		return 0;
	}
switched:
	dw_log(DW_LOG_INFO, "io", "reprobe", "dev=%s failed=%s uring=%s to=%s", d->probe.name,
	       failed ? dw_err_name(failed) : "no", urc ? dw_err_name(urc) : "ok",
	       dw_io_engine_name((*nb)->engine));
	return 1;
}

/* Store key of a device's calibrated depth. */
static int calib_key(const struct io_dev *d, char *key, size_t cap)
{
	int n = snprintf(key, cap, "dw://internal/io/depth/%s", d->probe.name);

	return n < 0 || (size_t)n >= cap ? DW_ETOOBIG : 0;
}

int dw_io_calibrated_depth_get(dw_store *st, const char *device, unsigned *depth)
{
	char key[96];
	void *val = NULL;
	size_t len = 0;
	unsigned long v = 0;
	int n, rc;

	*depth = 0;
	if (!st || !device)
		return DW_EUSAGE;
	n = snprintf(key, sizeof(key), "dw://internal/io/depth/%s", device);
	if (n < 0 || (size_t)n >= sizeof(key))
		return DW_ETOOBIG;
	rc = dw_store_get(st, key, &val, &len);
	if (rc < 0)
		return rc;
	if (sscanf(val, "%lu", &v) != 1 || v < 1 || v > DW_IO_DEPTH_MAX)
		rc = DW_ECORRUPT;
	else
		*depth = (unsigned)v;
	dw_free(val);
	return rc;
}

/* The depth `dwscale io probe --calibrate` stored for this device, or 0. */
static unsigned load_calibrated(dw_io *io, const struct io_dev *d)
{
	unsigned v = 0;
	int rc;

	if (!io->cfg.store)
		return 0;
	rc = dw_io_calibrated_depth_get(io->cfg.store, d->probe.name, &v);
	if (rc == DW_ECORRUPT)
		dw_log(DW_LOG_WARN, "io", "calibrated_depth_corrupt", "dev=%s", d->probe.name);
	return rc == 0 ? v : 0;
}

int dw_io_calibrated_depth_set(dw_io_file *f, unsigned depth)
{
	dw_io *io;
	char key[96], val[16];
	int rc, n;

	if (!f || depth > DW_IO_DEPTH_MAX)
		return DW_EUSAGE;
	io = f->io;
	if (!io->cfg.store)
		return DW_EUNSUPPORTED;
	rc = calib_key(f->d, key, sizeof(key));
	if (rc < 0)
		return rc;
	if (depth) {
		n = snprintf(val, sizeof(val), "%u", depth);
		rc = dw_store_put(io->cfg.store, key, val, (size_t)n);
	} else {
		rc = dw_store_delete(io->cfg.store, key);
		if (rc == DW_ENOTFOUND)
			rc = 0;
	}
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&io->lock);
	f->d->depth_calibrated = depth;
	rc = dw__sched_set_depth(f->d->s, dev_depth_locked(io, f->d));
	pthread_mutex_unlock(&io->lock);
	return rc;
}

/* The device st_dev is, or is a partition of, if known yet; io->lock held. */
static struct io_dev *find_dev_locked(dw_io *io, dev_t dev)
{
	for (unsigned i = 0; i < io->ndev; i++) {
		struct io_dev *d = io->devs[i];

		if (d->dev == dev)
			return d;
		for (unsigned k = 0; k < d->nalias; k++) {
			if (d->alias[k] == dev)
				return d;
		}
	}
	return NULL;
}

/* d answers for st_dev from now on (a partition of its disk); io->lock held. */
static void add_alias_locked(struct io_dev *d, dev_t dev)
{
	if (dev != d->dev && d->nalias < IO_DEV_ALIASES)
		d->alias[d->nalias++] = dev; /* past the cap, a lookup probes sysfs again */
}

/*
 * The device of st_dev, created on first use: one per block device, a partition counting as
 * its disk, since the disk's queue is the one the depth and the Low cap are about.
 */
static int get_dev(dw_io *io, dev_t dev, struct io_dev **out)
{
	struct io_sched_cfg sc;
	struct io_backend *be = NULL;
	struct io_devprobe pr;
	struct io_dev *d;
	dw_io_engine want;
	unsigned depth;
	bool full;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&io->lock);
	d = find_dev_locked(io, dev);
	pthread_mutex_unlock(&io->lock);
	if (d) {
		*out = d;
		return 0;
	}
	/*
	 * Probing takes milliseconds: done without the lock. Two threads racing on a new device
	 * both probe; the loser's scheduler is dropped.
	 */
	dw__probe_device(dev, &pr);
	pthread_mutex_lock(&io->lock);
	d = find_dev_locked(io, pr.disk);
	if (d)
		add_alias_locked(d, dev);
	full = io->ndev >= IO_DEVS_MAX;
	pthread_mutex_unlock(&io->lock);
	if (d) {
		*out = d;
		return 0;
	}
	if (full)
		return DW_ETOOBIG;
	d = dw_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->io = io;
	d->dev = pr.disk;
	add_alias_locked(d, dev); /* not shared yet */
	d->direct_errno = 1;
	d->dirfd = -1;
	d->probe = pr;
	d->depth_calibrated = load_calibrated(io, d);
	pthread_mutex_lock(&io->lock);
	depth = dev_depth_locked(io, d);
	want = io->cfg.engine;
	memset(&sc, 0, sizeof(sc));
	sc.clock = io->cfg.clock;
	dw__sched_params_from_config(&io->cfg, &sc.params);
	sc.depth = depth;
	sc.thread = true;
	sc.tick_ns = io->cfg.tick_ns;
	sc.reprobe_ns = io->cfg.reprobe_ns;
	pthread_mutex_unlock(&io->lock);
	sc.reprobe = reprobe;
	sc.reprobe_ctx = d;

	rc = open_backend(d, want, depth, &be);
	if (rc < 0)
		goto fail;
	rc = dw__sched_open(&sc, be, &d->s);
	if (rc < 0) {
		be->ops->close(be);
		goto fail;
	}
	pthread_mutex_lock(&io->lock);
	{
		struct io_dev *won = find_dev_locked(io, pr.disk);

		if (won) {
			add_alias_locked(won, dev);
			pthread_mutex_unlock(&io->lock);
			*out = won;
			dw__sched_close(d->s);
			dw_free(d);
			return 0;
		}
	}
	if (io->ndev >= IO_DEVS_MAX) {
		pthread_mutex_unlock(&io->lock);
		dw__sched_close(d->s);
		dw_free(d);
		return DW_ETOOBIG;
	}
	io->devs[io->ndev++] = d;
	pthread_mutex_unlock(&io->lock);
	dw_log(DW_LOG_INFO, "io", "device", "dev=%s class=%s depth=%u backend=%s uring=%s",
	       d->probe.name, dw_io_class_name(d->probe.class_), depth,
	       dw_io_engine_name(be->engine), d->uring_errno ? dw_err_name(d->uring_errno) : "ok");
	*out = d;
	return 0;
fail:
	dw_free(d);
	return rc;
}

/* ---- files -------------------------------------------------------------------------------- */

static int file_new(dw_io *io, int fd, bool own, bool direct, dw_io_file **out)
{
	struct stat st;
	struct io_dev *d;
	dw_io_file *f;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	rc = get_dev(io, st.st_dev, &d);
	if (rc < 0)
		return rc;
	if (S_ISDIR(st.st_mode)) {
		/* the first directory held on a device is where O_DIRECT is probed, now and on
		 * every re-probe, so the device says before any file asks for it */
		int dup = -1;

		pthread_mutex_lock(&io->lock);
		if (d->dirfd < 0)
			dup = d->dirfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		pthread_mutex_unlock(&io->lock);
		if (dup >= 0)
			probe_direct(d, dup);
	}
	f = dw_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->io = io;
	f->d = d;
	f->fd = fd;
	f->own_fd = own;
	f->direct = direct;
	f->mem_align = f->off_align = 1;
	if (direct) {
		uint32_t ma, oa;

		if (dw__probe_dioalign(fd, &ma, &oa) < 0)
			ma = oa = d->probe.logical_block;
		f->mem_align = ma;
		f->off_align = oa;
		pthread_mutex_lock(&io->lock);
		d->direct_errno = 0;
		d->mem_align = ma;
		d->off_align = oa;
		pthread_mutex_unlock(&io->lock);
	}
	*out = f;
	return 0;
}

int dw_io_file_open(dw_io *io, const char *path, int oflags, mode_t mode, unsigned flags,
		    dw_io_file **out)
{
	bool direct = false;
	int fd = -1, rc;

	*out = NULL;
	if (!io || !path || (flags & ~DW_IO_F_DIRECT) || (oflags & O_DIRECT))
		return DW_EUSAGE;
	oflags |= O_CLOEXEC;
	fd = open(path, oflags, mode);
	if (fd < 0)
		return -errno;
	if (flags & DW_IO_F_DIRECT) {
		/*
		 * O_DIRECT is set on the open file rather than asked of open(): a filesystem that
		 * refuses it fails open() only after O_CREAT has made the file, so a buffered retry
		 * with O_EXCL would find its own file. EINVAL: the filesystem refuses it.
		 */
		int fl = fcntl(fd, F_GETFL);

		if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
			direct = true;
		} else if (errno != EINVAL) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}
	rc = file_new(io, fd, true, direct, out);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if ((flags & DW_IO_F_DIRECT) && !direct) {
		pthread_mutex_lock(&io->lock);
		(*out)->d->direct_errno = -EINVAL;
		pthread_mutex_unlock(&io->lock);
	}
	return 0;
}

int dw_io_file_attach(dw_io *io, int fd, dw_io_file **out)
{
	int fl;

	*out = NULL;
	if (!io || fd < 0)
		return DW_EUSAGE;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	return file_new(io, fd, false, (fl & O_DIRECT) != 0, out);
}

void dw_io_file_close(dw_io_file *f)
{
	if (!f)
		return;
	if (f->own_fd)
		close(f->fd);
	dw_free(f);
}

int dw_io_file_fd(const dw_io_file *f)
{
	return f->fd;
}

bool dw_io_file_direct(const dw_io_file *f)
{
	return f->direct;
}

size_t dw_io_file_mem_align(const dw_io_file *f)
{
	return f->mem_align;
}

size_t dw_io_file_off_align(const dw_io_file *f)
{
	return f->off_align;
}

int dw_io_file_info(const dw_io_file *f, dw_io_dev_info *out)
{
	struct io_dev *d = f->d;
	struct io_sched_snapshot *snap;

	memset(out, 0, sizeof(*out));
	snap = dw_malloc(sizeof(*snap)); /* histograms: too big for a small stack */
	if (!snap)
		return -ENOMEM;
	dw__sched_snapshot(d->s, snap);
	pthread_mutex_lock(&f->io->lock);
	snprintf(out->name, sizeof(out->name), "%s", d->probe.name);
	out->dev = d->dev;
	out->class_ = d->probe.class_;
	out->depth = snap->depth;
	if (d->depth_override)
		snprintf(out->depth_why, sizeof(out->depth_why), "set at run time");
	else if (f->io->cfg.depth)
		snprintf(out->depth_why, sizeof(out->depth_why), "configured");
	else if (d->depth_calibrated)
		snprintf(out->depth_why, sizeof(out->depth_why), "calibrated");
	else
		snprintf(out->depth_why, sizeof(out->depth_why), "class %s",
			 dw_io_class_name(d->probe.class_));
	out->backend = snap->backend;
	out->uring_errno = d->uring_errno;
	out->direct_errno = d->direct_errno;
	out->state = snap->state;
	out->switches = snap->switches;
	pthread_mutex_unlock(&f->io->lock);
	dw_free(snap);
	return 0;
}

int dw_io_set_depth(dw_io_file *f, unsigned depth)
{
	unsigned eff;
	int rc;

	if (depth > DW_IO_DEPTH_MAX)
		return DW_ELIMIT;
	pthread_mutex_lock(&f->io->lock);
	f->d->depth_override = depth;
	eff = dev_depth_locked(f->io, f->d);
	rc = dw__sched_set_depth(f->d->s, eff);
	pthread_mutex_unlock(&f->io->lock);
	return rc;
}

/* ---- submission --------------------------------------------------------------------------- */

int dw_io_submit(const dw_io_req *req, dw_io_cb cb, void *arg)
{
	struct io_op *op;
	bool counted = false;
	uint64_t op_len;
	dw_io_tier tier;
	dw_io *io;
	int rc;

	if (!req || !req->file || !cb || (unsigned)req->tier >= DW_IO_TIERS ||
	    (unsigned)req->op > DW_IO_OP_FSYNC)
		return DW_EUSAGE;
	if (req->op != DW_IO_OP_FSYNC &&
	    (!req->buf || req->len > DW_IO_LEN_MAX || req->off > (uint64_t)INT64_MAX))
		return DW_EUSAGE;
	if (req->caller && dw__quota_id_check(req->caller) < 0)
		return DW_EUSAGE;
	io = req->file->io;
	tier = req->tier;
	op_len = req->op == DW_IO_OP_FSYNC ? 0 : (uint64_t)req->len;
	if (req->caller) {
		rc = dw__quota_admit(io->quota, req->caller, op_len);
		if (rc < 0)
			return rc;
		counted = rc == IO_QUOTA_OK;
		if (rc == IO_QUOTA_OVER) {
			bool demote;

			pthread_mutex_lock(&io->lock);
			demote = io->cfg.quota_demote;
			if (demote)
				req->file->d->demoted[tier]++;
			else
				req->file->d->quota_refused++;
			pthread_mutex_unlock(&io->lock);
			if (!demote)
				return DW_EQUOTA;
			tier = DW_IO_LOW;
		}
	}
	op = dw_calloc(1, sizeof(*op));
	if (!op) {
		rc = -ENOMEM;
		goto refund;
	}
	op->fd = req->file->fd;
	op->opcode = (uint8_t)req->op;
	op->tier = (uint8_t)tier;
	op->buf = req->buf;
	op->len = req->op == DW_IO_OP_FSYNC ? 0 : req->len;
	op->off = req->off;
	op->cb = cb;
	op->arg = arg;
	rc = dw__sched_submit(req->file->d->s, op);
	if (rc == 0)
		return 0;
	dw_free(op);
refund:
	if (counted)
		dw__quota_refund(io->quota, req->caller, op_len);
	return rc;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int res;
};

static void wake_waiter(void *arg, int res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->mu);
	w->res = res;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int run_blocking(dw_io_file *f, dw_io_opcode opc, void *buf, size_t len, uint64_t off,
			dw_io_tier tier, const char *caller)
{
	struct waiter w = { .done = false, .res = 0 };
	dw_io_req r = { .file = f,
			.op = opc,
			.tier = tier,
			.buf = buf,
			.len = len,
			.off = off,
			.caller = caller };
	int rc;

	if (!f)
		return DW_EUSAGE;
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	rc = dw_io_submit(&r, wake_waiter, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.res;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

int dw_io_pread(dw_io_file *f, void *buf, size_t len, uint64_t off, dw_io_tier tier,
		const char *caller)
{
	return run_blocking(f, DW_IO_OP_READ, buf, len, off, tier, caller);
}

int dw_io_pwrite(dw_io_file *f, const void *buf, size_t len, uint64_t off, dw_io_tier tier,
		 const char *caller)
{
	return run_blocking(f, DW_IO_OP_WRITE, (void *)buf, len, off, tier, caller);
}

int dw_io_fsync(dw_io_file *f, dw_io_tier tier, const char *caller)
{
	return run_blocking(f, DW_IO_OP_FSYNC, NULL, 0, 0, tier, caller);
}

/* ---- quotas ------------------------------------------------------------------------------- */

int dw_io_quota_set(dw_io *io, const char *caller, uint64_t bytes, uint64_t ops)
{
	if (!io)
		return DW_EUSAGE;
	return dw__quota_set(io->quota, caller, bytes, ops);
}

int dw_io_quota_get(dw_io *io, const char *caller, uint64_t *bytes_used, uint64_t *ops_used)
{
	if (!io)
		return DW_EUSAGE;
	return dw__quota_get(io->quota, caller, bytes_used, ops_used);
}

/* ---- scalable ----------------------------------------------------------------------------- */

dw_bp_state dw_io_state(dw_io *io)
{
	dw_bp_state st = DW_BP_NORMAL;

	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < io->ndev; i++) {
		dw_bp_state s = dw__sched_state(io->devs[i]->s);

		if (s > st)
			st = s;
	}
	pthread_mutex_unlock(&io->lock);
	return st;
}

static void emit(dw_metric_fn fn, void *arg, const char *name, const char *labels, double v,
		 const char *unit, const char *help, dw_metric_kind kind)
{
	dw_metric m = {
		.name = name, .labels = labels, .value = v, .unit = unit, .help = help, .kind = kind
	};

	fn(arg, &m);
}

static int io_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_io *io = self;
	struct io_sched_snapshot *snap;
	int rc = 0;

	snap = dw_malloc(sizeof(*snap));
	if (!snap)
		return -ENOMEM;
	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < io->ndev; i++) {
		struct io_dev *d = io->devs[i];
		char lb[128];

		dw__sched_snapshot(d->s, snap);
		snprintf(lb, sizeof(lb), "dev=\"%s\"", d->probe.name);
		emit(fn, arg, "depth", lb, snap->depth, "ops", "queue depth in use",
		     DW_METRIC_GAUGE);
		snprintf(lb, sizeof(lb), "dev=\"%s\",backend=\"%s\"", d->probe.name,
			 dw_io_engine_name(snap->backend));
		emit(fn, arg, "backend", lb, 1, "", "backend in use (label)", DW_METRIC_GAUGE);
		snprintf(lb, sizeof(lb), "dev=\"%s\"", d->probe.name);
		emit(fn, arg, "uring_errno", lb, -d->uring_errno, "",
		     "errno of the last io_uring probe (0 = available)", DW_METRIC_GAUGE);
		emit(fn, arg, "direct_ok", lb, d->direct_errno == 0 ? 1 : 0, "",
		     "O_DIRECT works on this device's filesystem", DW_METRIC_GAUGE);
		emit(fn, arg, "state", lb, snap->state, "",
		     "backpressure state: 0 normal, 1 warning, 2 critical, 3 shedding",
		     DW_METRIC_GAUGE);
		emit(fn, arg, "backend_switches", lb, snap->switches, "ops",
		     "backend switches since open", DW_METRIC_COUNTER);
		emit(fn, arg, "quota_refused", lb, (double)d->quota_refused, "ops",
		     "ops refused over quota", DW_METRIC_COUNTER);
		for (int t = 0; t < DW_IO_TIERS; t++) {
			const struct io_tier_stats *st = &snap->tier[t];

			snprintf(lb, sizeof(lb), "dev=\"%s\",tier=\"%s\"", d->probe.name,
				 tier_names[t]);
			emit(fn, arg, "queued", lb, (double)st->queued, "ops", "ops waiting",
			     DW_METRIC_GAUGE);
			emit(fn, arg, "inflight", lb, (double)st->inflight, "ops",
			     "ops in the backend", DW_METRIC_GAUGE);
			emit(fn, arg, "completed", lb, (double)st->completed, "ops",
			     "ops completed", DW_METRIC_COUNTER);
			emit(fn, arg, "errors", lb, (double)st->errors, "ops",
			     "ops completed with an error", DW_METRIC_COUNTER);
			emit(fn, arg, "bytes", lb, (double)st->bytes, "bytes", "bytes transferred",
			     DW_METRIC_COUNTER);
			emit(fn, arg, "shed", lb, (double)st->shed, "ops",
			     "ops refused under backpressure", DW_METRIC_COUNTER);
			emit(fn, arg, "demoted", lb, (double)d->demoted[t], "ops",
			     "ops demoted to low over quota", DW_METRIC_COUNTER);
			emit(fn, arg, "latency_p50", lb,
			     (double)dw__hist_quantile(&st->lat, 0.5) / 1e9, "seconds",
			     "submit to completion, median", DW_METRIC_GAUGE);
			emit(fn, arg, "latency_p99", lb,
			     (double)dw__hist_quantile(&st->lat, 0.99) / 1e9, "seconds",
			     "submit to completion, 99th percentile", DW_METRIC_GAUGE);
			emit(fn, arg, "longest_wait", lb, (double)st->max_wait_ns / 1e9, "seconds",
			     "longest queue wait of a dispatched op", DW_METRIC_GAUGE);
		}
	}
	pthread_mutex_unlock(&io->lock);
	dw_free(snap);
	return rc;
}

/* Limits: name, how to read it from a config, range, unit, help. */
enum lim_id {
	L_DEPTH,
	L_W_HIGH,
	L_W_NORMAL,
	L_W_LOW,
	L_D_HIGH,
	L_D_NORMAL,
	L_D_LOW,
	L_LOW_CAP,
	L_LINGER,
	L_MAX_QUEUED,
	L_BP_WARN,
	L_BP_CRIT,
	L_BP_SHED,
	L_BP_HYST,
	L_REPROBE,
	L_Q_WINDOW,
	L_Q_BYTES,
	L_Q_OPS,
	L_Q_DEMOTE,
	L_COUNT
};

static const struct {
	const char *name;
	double min, max;
	bool integral;
	const char *unit, *help;
} lims[L_COUNT] = {
	[L_DEPTH] = { "depth", 0, DW_IO_DEPTH_MAX, true, "ops",
		      "queue depth of every device (0 = by device class)" },
	[L_W_HIGH] = { "weight_high", 1, 1000, true, "", "High ops served per round" },
	[L_W_NORMAL] = { "weight_normal", 1, 1000, true, "", "Normal ops served per round" },
	[L_W_LOW] = { "weight_low", 1, 1000, true, "", "Low ops served per round" },
	[L_D_HIGH] = { "deadline_high_ms", 1, 600000, true, "ms", "High op goes first after" },
	[L_D_NORMAL] = { "deadline_normal_ms", 1, 600000, true, "ms",
			 "Normal op goes first after" },
	[L_D_LOW] = { "deadline_low_ms", 1, 600000, true, "ms", "Low op goes first after" },
	[L_LOW_CAP] = { "low_cap", 0, DW_IO_DEPTH_MAX, true, "ops",
			"Low in flight while High is active (0 = depth/32)" },
	[L_LINGER] = { "high_linger_ms", 0, 10000, true, "ms",
		       "High counts as active this long after its last op" },
	[L_MAX_QUEUED] = { "max_queued", 1, 1000000, true, "ops", "queued ops per device" },
	[L_BP_WARN] = { "bp_warning", 0.01, 1, false, "ratio", "fill ratio for Warning" },
	[L_BP_CRIT] = { "bp_critical", 0.01, 1, false, "ratio", "fill ratio for Critical" },
	[L_BP_SHED] = { "bp_shedding", 0.01, 1, false, "ratio", "fill ratio for Shedding" },
	[L_BP_HYST] = { "bp_hysteresis", 0, 0.5, false, "ratio",
			"step down only below threshold minus this" },
	[L_REPROBE] = { "reprobe_s", 0, 86400, true, "seconds",
			"backend re-probe period (0 = never)" },
	[L_Q_WINDOW] = { "quota_window_s", 1, 31 * 86400, true, "seconds", "quota window" },
	[L_Q_BYTES] = { "quota_bytes", 0, 9.0e15, true, "bytes",
			"default bytes per caller per window (0 = none)" },
	[L_Q_OPS] = { "quota_ops", 0, 9.0e15, true, "ops",
		      "default ops per caller per window (0 = none)" },
	[L_Q_DEMOTE] = { "quota_demote", 0, 1, true, "",
			 "over quota: 1 = demote to Low, 0 = refuse (quota_exceeded)" },
};

/*
 * Besides these, one limit per device seen so far, depth_<device> (the device name with
 * anything but [a-z0-9_] as '_'): that device's depth, 0 for the configured, calibrated or
 * class depth (dw_io_set_depth).
 */
#define DEV_LIMIT_PREFIX "depth_"

static void dev_limit_name(const struct io_dev *d, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, DEV_LIMIT_PREFIX "%s", d->probe.name);

	for (size_t i = strlen(DEV_LIMIT_PREFIX); i < n && i + 1 < cap; i++) {
		char ch = buf[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
			buf[i] = '_';
	}
}

/* The device whose depth limit is called name; io->lock held. */
static struct io_dev *dev_by_limit_locked(dw_io *io, const char *name)
{
	char buf[64];

	for (unsigned i = 0; i < io->ndev; i++) {
		dev_limit_name(io->devs[i], buf, sizeof(buf));
		if (strcmp(buf, name) == 0)
			return io->devs[i];
	}
	return NULL;
}

static double lim_get(const dw_io_config *c, int id)
{
	switch (id) {
	case L_DEPTH:
		return c->depth;
	case L_W_HIGH:
	case L_W_NORMAL:
	case L_W_LOW:
		return c->weight[id - L_W_HIGH];
	case L_D_HIGH:
	case L_D_NORMAL:
	case L_D_LOW:
		return (double)(c->deadline_ns[id - L_D_HIGH] / DW_NS_PER_MS);
	case L_LOW_CAP:
		return c->low_cap;
	case L_LINGER:
		return (double)(c->high_linger_ns / DW_NS_PER_MS);
	case L_MAX_QUEUED:
		return c->max_queued;
	case L_BP_WARN:
		return c->bp_warning;
	case L_BP_CRIT:
		return c->bp_critical;
	case L_BP_SHED:
		return c->bp_shedding;
	case L_BP_HYST:
		return c->bp_hysteresis;
	case L_REPROBE:
		return (double)(c->reprobe_ns / DW_NS_PER_SEC);
	case L_Q_WINDOW:
		return (double)(c->quota_window_ns / DW_NS_PER_SEC);
	case L_Q_BYTES:
		return (double)c->quota_bytes;
	case L_Q_OPS:
		return (double)c->quota_ops;
	case L_Q_DEMOTE:
		return c->quota_demote ? 1 : 0;
	}
	return 0;
}

static void lim_set(dw_io_config *c, int id, double v)
{
	uint64_t u = (uint64_t)llround(v);

	switch (id) {
	case L_DEPTH:
		c->depth = (unsigned)u;
		break;
	case L_W_HIGH:
	case L_W_NORMAL:
	case L_W_LOW:
		c->weight[id - L_W_HIGH] = (unsigned)u;
		break;
	case L_D_HIGH:
	case L_D_NORMAL:
	case L_D_LOW:
		c->deadline_ns[id - L_D_HIGH] = u * DW_NS_PER_MS;
		break;
	case L_LOW_CAP:
		c->low_cap = (unsigned)u;
		break;
	case L_LINGER:
		c->high_linger_ns = u * DW_NS_PER_MS;
		break;
	case L_MAX_QUEUED:
		c->max_queued = (unsigned)u;
		break;
	case L_BP_WARN:
		c->bp_warning = v;
		break;
	case L_BP_CRIT:
		c->bp_critical = v;
		break;
	case L_BP_SHED:
		c->bp_shedding = v;
		break;
	case L_BP_HYST:
		c->bp_hysteresis = v;
		break;
	case L_REPROBE:
		c->reprobe_ns = u * DW_NS_PER_SEC;
		break;
	case L_Q_WINDOW:
		c->quota_window_ns = u * DW_NS_PER_SEC;
		break;
	case L_Q_BYTES:
		c->quota_bytes = u;
		break;
	case L_Q_OPS:
		c->quota_ops = u;
		break;
	case L_Q_DEMOTE:
		c->quota_demote = u != 0;
		break;
	}
}

static void fill_limit(const dw_io_config *c, int id, dw_limit *l)
{
	memset(l, 0, sizeof(*l));
	l->name = lims[id].name;
	l->value = lim_get(c, id);
	l->min = lims[id].min;
	l->max = lims[id].max;
	l->unit = lims[id].unit;
	l->help = lims[id].help;
}

static int io_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_io *io = self;
	dw_io_config c;
	dw_limit l;

	struct {
		char name[64], help[96];
		unsigned depth;
	} devs[IO_DEVS_MAX];
	unsigned ndev;

	pthread_mutex_lock(&io->lock);
	c = io->cfg;
	ndev = io->ndev;
	for (unsigned i = 0; i < ndev; i++) {
		dev_limit_name(io->devs[i], devs[i].name, sizeof(devs[i].name));
		snprintf(devs[i].help, sizeof(devs[i].help),
			 "queue depth of %s (0 = configured, calibrated or class depth)",
			 io->devs[i]->probe.name);
		devs[i].depth = io->devs[i]->depth_override;
	}
	pthread_mutex_unlock(&io->lock);
	for (int i = 0; i < L_COUNT; i++) {
		fill_limit(&c, i, &l);
		fn(arg, &l);
	}
	for (unsigned i = 0; i < ndev; i++) {
		fill_limit(&c, L_DEPTH, &l);
		l.name = devs[i].name;
		l.help = devs[i].help;
		l.value = devs[i].depth;
		fn(arg, &l);
	}
	return 0;
}

/* Apply cfg to every device: depth, scheduler parameters, re-probe period. io->lock held. */
static void apply_locked(dw_io *io, bool reprobe_changed)
{
	struct io_sched_params p;

	dw__sched_params_from_config(&io->cfg, &p);
	for (unsigned i = 0; i < io->ndev; i++) {
		struct io_dev *d = io->devs[i];

		dw__sched_set_params(d->s, &p);
		dw__sched_set_depth(d->s, dev_depth_locked(io, d));
		if (reprobe_changed)
			dw__sched_set_reprobe(d->s, io->cfg.reprobe_ns);
	}
	dw__quota_set_defaults(io->quota, io->cfg.quota_window_ns, io->cfg.quota_bytes,
			       io->cfg.quota_ops);
}

static int io_reconfigure(void *self, const dw_limit_change *changes, size_t n, char *err,
			  size_t errlen)
{
	dw_io *io = self;
	dw_io_config c;
	dw_limit l;
	bool reprobe_changed = false;
	unsigned dev_depth[IO_DEVS_MAX];
	bool dev_set[IO_DEVS_MAX] = { false };
	int rc = 0;

	pthread_mutex_lock(&io->lock);
	c = io->cfg;
	for (size_t i = 0; i < n; i++) {
		struct io_dev *d =
			changes[i].name ? dev_by_limit_locked(io, changes[i].name) : NULL;
		int id = -1;

		for (int k = 0; k < L_COUNT; k++) {
			if (changes[i].name && strcmp(changes[i].name, lims[k].name) == 0)
				id = k;
		}
		if (id < 0 && d) {
			unsigned k = 0;

			while (io->devs[k] != d)
				k++;
			fill_limit(&c, L_DEPTH, &l);
			l.name = changes[i].name;
			rc = dw_limit_check(&l, &changes[i], true, err, errlen);
			if (rc < 0)
				goto out;
			dev_depth[k] = (unsigned)llround(changes[i].value);
			dev_set[k] = true;
			continue;
		}
		if (id < 0) {
			snprintf(err, errlen, "no limit named %s",
				 changes[i].name ? changes[i].name : "(null)");
			rc = DW_ELIMIT;
			goto out;
		}
		fill_limit(&c, id, &l);
		rc = dw_limit_check(&l, &changes[i], lims[id].integral, err, errlen);
		if (rc < 0)
			goto out;
		lim_set(&c, id, changes[i].value);
		if (id == L_REPROBE)
			reprobe_changed = true;
	}
	if (check_config(&c) < 0) {
		snprintf(err, errlen,
			 "limits bp_warning <= bp_critical <= bp_shedding and bp_hysteresis < "
			 "bp_warning must hold");
		rc = DW_ELIMIT;
		goto out;
	}
	io->cfg = c;
	for (unsigned k = 0; k < io->ndev; k++) {
		if (dev_set[k])
			io->devs[k]->depth_override = dev_depth[k];
	}
	apply_locked(io, reprobe_changed);
out:
	pthread_mutex_unlock(&io->lock);
	return rc;
}

static dw_bp_state io_bp_state(void *self)
{
	return dw_io_state(self);
}

static const dw_scalable_ops io_scalable_ops = {
	.metrics = io_metrics,
	.limits = io_limits,
	.reconfigure = io_reconfigure,
	.state = io_bp_state,
};

const dw_scalable *dw_io_scalable(dw_io *io)
{
	return &io->scalable;
}
