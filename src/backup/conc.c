// SPDX-License-Identifier: MIT
/*
 * Adaptive concurrency: how many backup jobs run at once.
 *
 * The controller is a pure state machine fed once per tick (one second in the manager) with the
 * cumulative busy time of the disk and the throughput the jobs reached since the last tick; the
 * utilisation source is separate and injectable, so tests drive the controller with exact
 * numbers. Rules (the values are the defaults of dw_backup_conc_config_default):
 *
 *   util = EMA(alpha 0.3) of busy_ms delta / wall ms delta, clamped to [0, 1]
 *   util < 0.60 and limit < max                    -> limit + 1
 *   util > 0.80 and the throughput seen at limit + 1 beat the one at this limit by more
 *        than gain_ratio (1.05)                    -> limit + 1 (back to the better level)
 *   util > 0.80 and limit > min                    -> limit - 1, unless the throughput seen at
 *        this limit beats the one seen at limit - 1 by more than gain_ratio: a device
 *        that serves requests in parallel (NVMe, RAID, virtual disks) reads near 100 % busy
 *        long before it saturates, and then more jobs still mean more bytes per second
 *   otherwise                                      -> unchanged
 *
 * The limit starts at max (cfg.start): a device that reads busy with one job never gets under
 * low_util, so a start at min would stay at min even where more jobs bring more throughput.
 * From max, a busy device steps down one level a second while the level below does as well,
 * and climbs back to the last level that did better: it settles on the smallest limit past
 * which more jobs stopped paying.
 *
 * Throughput per limit is remembered (smoothed the same way) so that the comparison uses what
 * was measured at each level, not a single last sample. 0.60/0.80 leave a dead band so the
 * limit does not oscillate between two values on a steady load.
 *
 * The /proc/diskstats source watches the disks holding given paths (by st_dev major:minor;
 * devices not listed there, such as overlay or tmpfs, fall back to every physical disk). It
 * reports one cumulative counter that advances by the largest io_ticks delta of the watched
 * disks, so utilisation is that of the busiest disk.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "backup/backup_int.h"

#define CONC_LIMIT_CAP 64
#define DISKS_MAX      32

void dw_backup_conc_config_default(dw_backup_conc_config *cfg, unsigned disks)
{
	if (disks == 0)
		disks = 1;
	cfg->min = 1;
	cfg->max = 4 * disks > CONC_LIMIT_CAP ? CONC_LIMIT_CAP : 4 * disks;
	cfg->low_util = 0.60;
	cfg->high_util = 0.80;
	cfg->alpha = DW_EMA_ALPHA_DEFAULT;
	cfg->gain_ratio = 1.05;
	cfg->start = cfg->max;
}

int dw_backup_conc_init(dw_backup_conc *c, const dw_backup_conc_config *cfg)
{
	if (cfg->min < 1 || cfg->max < cfg->min || cfg->max > CONC_LIMIT_CAP ||
	    !(cfg->low_util > 0 && cfg->low_util < cfg->high_util && cfg->high_util <= 1.0) ||
	    !(cfg->gain_ratio >= 1.0))
		return DW_ECONFIG;
	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	if (dw_ema_init(&c->util, cfg->alpha) < 0 || dw_ema_init(&c->thr, cfg->alpha) < 0)
		return DW_ECONFIG;
	c->limit = cfg->start == 0 || cfg->start > cfg->max
			   ? cfg->max
			   : (cfg->start < cfg->min ? cfg->min : cfg->start);
	return 0;
}

unsigned dw_backup_conc_tick(dw_backup_conc *c, uint64_t busy_ms, uint64_t now_ns,
			     double throughput)
{
	double dt_ms, u, *t;

	if (!c->primed || now_ns <= c->last_ns || busy_ms < c->last_busy_ms) {
		c->primed = true;
		c->last_busy_ms = busy_ms;
		c->last_ns = now_ns;
		return c->limit;
	}
	dt_ms = (double)(now_ns - c->last_ns) / (double)DW_NS_PER_MS;
	u = (double)(busy_ms - c->last_busy_ms) / dt_ms;
	if (u > 1.0)
		u = 1.0;
	c->last_busy_ms = busy_ms;
	c->last_ns = now_ns;
	u = dw_ema_update(&c->util, u);

	t = &c->thr_at[c->limit];
	*t = *t > 0 ? c->cfg.alpha * throughput + (1 - c->cfg.alpha) * *t : throughput;
	dw_ema_update(&c->thr, throughput);

	if (u < c->cfg.low_util && c->limit < c->cfg.max) {
		c->limit++;
	} else if (u > c->cfg.high_util) {
		double above = c->limit < c->cfg.max ? c->thr_at[c->limit + 1] : 0;
		double below = c->limit > c->cfg.min ? c->thr_at[c->limit - 1] : 0;

		if (above > *t * c->cfg.gain_ratio)
			c->limit++;
		else if (c->limit > c->cfg.min && !(below > 0 && *t > below * c->cfg.gain_ratio))
			c->limit--;
	}
	return c->limit;
}

/* ---- /proc/diskstats ------------------------------------------------------------------------- */

struct disk {
	unsigned maj, min;
	uint64_t last;
	bool seen;
};

struct dw_backup_diskstats {
	char *file;
	struct disk d[DISKS_MAX];
	unsigned n;
	bool all_physical; /* fallback: watch every physical disk */
	uint64_t counter;  /* the reported cumulative busy ms */
	bool primed;
};

static bool physical(const char *name)
{
	return strncmp(name, "loop", 4) != 0 && strncmp(name, "ram", 3) != 0 &&
	       strncmp(name, "zram", 4) != 0;
}

static bool disk_known(const dw_backup_diskstats *d, unsigned maj, unsigned min)
{
	for (unsigned i = 0; i < d->n; i++) {
		if (d->d[i].maj == maj && d->d[i].min == min)
			return true;
	}
	return false;
}

/* Calls fn for each line: major, minor, name, io_ticks. */
static int scan_stats(const char *file,
		      void (*fn)(void *, unsigned, unsigned, const char *, uint64_t), void *arg)
{
	FILE *f = fopen(file, "re");
	char line[512];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char name[64];
		unsigned long long v[10];

		if (sscanf(line, "%u %u %63s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			   &maj, &min, name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
			   &v[8], &v[9]) != 13)
			continue;
		fn(arg, maj, min, name, v[9]); /* field 10: ms spent doing I/O */
	}
	fclose(f);
	return 0;
}

struct probe {
	dw_backup_diskstats *d;
	unsigned maj, min;
	bool found;
};

static void probe_fn(void *arg, unsigned maj, unsigned min, const char *name, uint64_t ticks)
{
	struct probe *p = arg;

	(void)name;
	(void)ticks;
	if (maj == p->maj && min == p->min)
		p->found = true;
}

struct names {
	char name[256][32];
	unsigned maj[256], min[256];
	unsigned n;
};

static void collect_fn(void *arg, unsigned maj, unsigned min, const char *name, uint64_t ticks)
{
	struct names *nm = arg;

	(void)ticks;
	if (nm->n < 256 && physical(name) && strlen(name) < 32) {
		snprintf(nm->name[nm->n], 32, "%s", name);
		nm->maj[nm->n] = maj;
		nm->min[nm->n] = min;
		nm->n++;
	}
}

/* Every whole physical disk: a name that starts with another listed name is a partition. */
static int add_physical(dw_backup_diskstats *d)
{
	struct names *nm = dw_calloc(1, sizeof(*nm));
	int rc;

	if (!nm)
		return -ENOMEM;
	rc = scan_stats(d->file, collect_fn, nm);
	for (unsigned i = 0; rc == 0 && i < nm->n; i++) {
		bool part = false;

		for (unsigned k = 0; k < nm->n && !part; k++) {
			size_t l = strlen(nm->name[k]);

			part = k != i && strncmp(nm->name[i], nm->name[k], l) == 0 &&
			       nm->name[i][l] != '\0';
		}
		if (!part && d->n < DISKS_MAX && !disk_known(d, nm->maj[i], nm->min[i])) {
			d->d[d->n].maj = nm->maj[i];
			d->d[d->n].min = nm->min[i];
			d->n++;
		}
	}
	dw_free(nm);
	return rc;
}

int dw_backup_diskstats_open(const char *statfile, const char *const *paths, size_t npaths,
			     dw_backup_diskstats **out)
{
	dw_backup_diskstats *d;
	int rc = 0;

	*out = NULL;
	d = dw_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->file = dw_strdup(statfile ? statfile : "/proc/diskstats");
	if (!d->file) {
		dw_free(d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < npaths; i++) {
		struct stat st;
		struct probe p = { .d = d };

		if (stat(paths[i], &st) < 0)
			continue;
		p.maj = major(st.st_dev);
		p.min = minor(st.st_dev);
		rc = scan_stats(d->file, probe_fn, &p);
		if (rc < 0)
			goto fail;
		if (p.found) {
			if (!disk_known(d, p.maj, p.min) && d->n < DISKS_MAX) {
				d->d[d->n].maj = p.maj;
				d->d[d->n].min = p.min;
				d->n++;
			}
		} else {
			d->all_physical = true;
		}
	}
	if (d->n == 0)
		d->all_physical = true;
	if (d->all_physical) {
		rc = add_physical(d);
		if (rc < 0)
			goto fail;
	}
	*out = d;
	return 0;
fail:
	dw_backup_diskstats_close(d);
	return rc;
}

void dw_backup_diskstats_close(dw_backup_diskstats *d)
{
	if (!d)
		return;
	dw_free(d->file);
	dw_free(d);
}

unsigned dw_backup_diskstats_disks(const dw_backup_diskstats *d)
{
	return d->n ? d->n : 1;
}

struct sample {
	dw_backup_diskstats *d;
	uint64_t maxdelta;
};

static void sample_fn(void *arg, unsigned maj, unsigned min, const char *name, uint64_t ticks)
{
	struct sample *s = arg;

	(void)name;
	for (unsigned i = 0; i < s->d->n; i++) {
		struct disk *k = &s->d->d[i];

		if (k->maj != maj || k->min != min)
			continue;
		if (k->seen && ticks >= k->last && ticks - k->last > s->maxdelta)
			s->maxdelta = ticks - k->last;
		k->last = ticks;
		k->seen = true;
	}
}

static int diskstats_read(void *ctx, uint64_t *busy_ms)
{
	struct sample s = { .d = ctx };
	int rc = scan_stats(s.d->file, sample_fn, &s);

	if (rc < 0)
		return rc;
	s.d->counter += s.maxdelta;
	*busy_ms = s.d->counter;
	return 0;
}

dw_backup_util_source dw_backup_diskstats_source(dw_backup_diskstats *d)
{
	return (dw_backup_util_source){ .read = diskstats_read, .ctx = d };
}
