// SPDX-License-Identifier: MIT
/*
 * bench_cache: hit ratio of dw_cache (S3-FIFO or LRU order) against LRU, and against SIEVE and
 * Belady's OPT for reference, on real traces and synthetic Zipf workloads; then get-or-put
 * throughput with 1 and 2 threads against a mutex-protected LRU; then peak RSS.
 *
 *   bench_cache TRACE_DIR [--quick | --ratio | --throughput]
 *
 * BENCH_CACHE_ONLY=name,name,... limits the hit-ratio table to those traces (zipf0.99 and
 * zipf+scan are names too), for quick comparisons while tuning.
 *
 * TRACE_DIR holds lirs/NAME.trace.gz (one decimal key per line, '*' lines skipped) and
 * cache2k/NAME.trace.xz (big-endian int32 stream), decompressed through popen("gzip -dc" / "xz
 * -dc"). Each trace is first mapped to dense ids 0..D-1 so the reference policies can be plain
 * arrays; dw_cache sees the id as an 8-byte key through its public API, with max_entries = the size
 * and max_bytes = 0, so the count is the binding bound as it is for the reference policies. Sizes
 * are 1, 5, 10 and 25 % of the distinct keys. A request is a get; on a miss the key is put.
 *
 * The OPT column is Belady's offline optimum, the most any policy can hit (delta is dw_cache -
 * LRU). The reference LRU and SIEVE are written here from their definitions: LRU moves a hit to
 * the head and evicts the tail; SIEVE (Zhang et al., NSDI 2024) sets a visited bit on a hit and
 * a hand moving from tail to head clears bits until it finds an unvisited entry to evict.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dwscale/cache.h"

#define TRACE_MAX_REQ (64u << 20) /* cap on requests read from one trace */

struct trace {
	char name[64];
	uint32_t *ids; /* dense ids */
	size_t n;      /* requests */
	size_t distinct;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- trace loading --------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Map raw keys to dense ids (sort + unique + binary search). */
static int densify(const uint64_t *raw, size_t n, struct trace *t)
{
	uint64_t *u = malloc(n * sizeof(*u));
	size_t d = 0;

	t->ids = malloc(n * sizeof(*t->ids));
	if (!u || !t->ids) {
		free(u);
		return -ENOMEM;
	}
	memcpy(u, raw, n * sizeof(*u));
	qsort(u, n, sizeof(*u), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		if (d == 0 || u[d - 1] != u[i])
			u[d++] = u[i];
	}
	for (size_t i = 0; i < n; i++) {
		size_t lo = 0, hi = d;

		while (hi - lo > 1) {
			size_t mid = (lo + hi) / 2;

			if (u[mid] <= raw[i])
				lo = mid;
			else
				hi = mid;
		}
		t->ids[i] = (uint32_t)lo;
	}
	t->n = n;
	t->distinct = d;
	free(u);
	return 0;
}

static int load_trace(const char *path, bool lirs, struct trace *t)
{
	char cmd[4200];
	uint64_t *raw = NULL;
	size_t n = 0, cap = 1 << 16;
	FILE *p;
	int rc = -EIO;

	if ((size_t)snprintf(cmd, sizeof(cmd), "%s '%s'", lirs ? "gzip -dc" : "xz -dc", path) >=
	    sizeof(cmd))
		return -ENAMETOOLONG;
	p = popen(cmd, "r");
	if (!p)
		return -errno;
	raw = malloc(cap * sizeof(*raw));
	if (!raw)
		goto out;
	for (;;) {
		uint64_t k;

		if (lirs) {
			char line[128];

			if (!fgets(line, sizeof(line), p))
				break;
			if (line[0] == '*' || line[0] == '\n')
				continue;
			k = strtoull(line, NULL, 10);
		} else {
			unsigned char b[4];

			if (fread(b, 1, 4, p) != 4)
				break;
			k = (uint32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
				       (uint32_t)b[2] << 8 | b[3]);
		}
		if (n == cap) {
			uint64_t *nr;

			if (cap >= TRACE_MAX_REQ)
				break;
			nr = realloc(raw, cap * 2 * sizeof(*raw));
			if (!nr)
				goto out;
			raw = nr;
			cap *= 2;
		}
		raw[n++] = k;
	}
	if (n == 0)
		goto out;
	rc = densify(raw, n, t);
out:
	if (pclose(p) != 0 && rc == 0)
		rc = -EIO;
	free(raw);
	return rc;
}

/* ---- reference policies (arrays indexed by dense id) ----------------------------------------- */

struct ref {
	int32_t *prev, *next; /* per id; -2 = not cached */
	uint8_t *visited;
	int32_t head, tail, hand;
	size_t n, cap;
};

static int ref_init(struct ref *r, size_t ids, size_t cap)
{
	r->prev = malloc(ids * sizeof(int32_t));
	r->next = malloc(ids * sizeof(int32_t));
	r->visited = calloc(ids, 1);
	if (!r->prev || !r->next || !r->visited)
		return -ENOMEM;
	for (size_t i = 0; i < ids; i++)
		r->prev[i] = -2;
	r->head = r->tail = r->hand = -1;
	r->n = 0;
	r->cap = cap;
	return 0;
}

static void ref_free(struct ref *r)
{
	free(r->prev);
	free(r->next);
	free(r->visited);
}

static void ref_unlink(struct ref *r, int32_t x)
{
	if (r->prev[x] >= 0)
		r->next[r->prev[x]] = r->next[x];
	else
		r->head = r->next[x];
	if (r->next[x] >= 0)
		r->prev[r->next[x]] = r->prev[x];
	else
		r->tail = r->prev[x];
	r->prev[x] = -2;
}

static void ref_push_head(struct ref *r, int32_t x)
{
	r->prev[x] = -1;
	r->next[x] = r->head;
	if (r->head >= 0)
		r->prev[r->head] = x;
	else
		r->tail = x;
	r->head = x;
}

static bool lru_access(struct ref *r, int32_t x)
{
	if (r->prev[x] != -2) {
		ref_unlink(r, x);
		ref_push_head(r, x);
		return true;
	}
	if (r->n == r->cap) {
		ref_unlink(r, r->tail);
		r->n--;
	}
	ref_push_head(r, x);
	r->n++;
	return false;
}

static bool sieve_access(struct ref *r, int32_t x)
{
	if (r->prev[x] != -2) {
		r->visited[x] = 1;
		return true;
	}
	if (r->n == r->cap) {
		int32_t h = r->hand >= 0 ? r->hand : r->tail;

		while (r->visited[h]) {
			r->visited[h] = 0;
			h = r->prev[h] >= 0 ? r->prev[h] : r->tail;
		}
		r->hand = r->prev[h] >= 0 ? r->prev[h] : -1;
		ref_unlink(r, h);
		r->n--;
	}
	ref_push_head(r, x);
	r->visited[x] = 0;
	r->n++;
	return false;
}

static double ref_ratio(const struct trace *t, size_t cap, bool sieve)
{
	struct ref r;
	size_t hits = 0;

	if (ref_init(&r, t->distinct, cap) < 0) {
		ref_free(&r);
		return -1;
	}
	for (size_t i = 0; i < t->n; i++)
		hits += sieve ? sieve_access(&r, (int32_t)t->ids[i])
			      : lru_access(&r, (int32_t)t->ids[i]);
	ref_free(&r);
	return 100.0 * (double)hits / (double)t->n;
}

/*
 * Belady's OPT: on a miss with the cache full, evict the entry whose next request is furthest
 * away. No policy can hit more, so it bounds what "N points above LRU" can mean on a trace: on a
 * loop or scan over D keys with a cache of C, OPT hits about C/D of the requests.
 * A max-heap of cached ids keyed by their next request; pos[id] = heap slot or -1.
 */
struct opt_heap {
	uint32_t *key, *id;
	int32_t *pos;
	size_t n;
};

static void opt_swap(struct opt_heap *h, size_t a, size_t b)
{
	uint32_t k = h->key[a], x = h->id[a];

	h->key[a] = h->key[b];
	h->id[a] = h->id[b];
	h->key[b] = k;
	h->id[b] = x;
	h->pos[h->id[a]] = (int32_t)a;
	h->pos[h->id[b]] = (int32_t)b;
}

static void opt_fix(struct opt_heap *h, size_t i)
{
	while (i > 0 && h->key[(i - 1) / 2] < h->key[i]) {
		opt_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && h->key[l] > h->key[m])
			m = l;
		if (r < h->n && h->key[r] > h->key[m])
			m = r;
		if (m == i)
			break;
		opt_swap(h, i, m);
		i = m;
	}
}

static double opt_ratio(const struct trace *t, size_t cap)
{
	uint32_t *next = malloc(t->n * sizeof(*next));
	uint32_t *last = malloc(t->distinct * sizeof(*last));
	struct opt_heap h = { malloc(cap * sizeof(uint32_t)), malloc(cap * sizeof(uint32_t)),
			      malloc(t->distinct * sizeof(int32_t)), 0 };
	size_t hits = 0;
	double r = -1;

	if (!next || !last || !h.key || !h.id || !h.pos)
		goto out;
	for (size_t i = 0; i < t->distinct; i++) {
		last[i] = UINT32_MAX; /* never requested again */
		h.pos[i] = -1;
	}
	for (size_t i = t->n; i-- > 0;) {
		next[i] = last[t->ids[i]];
		last[t->ids[i]] = (uint32_t)i;
	}
	for (size_t i = 0; i < t->n; i++) {
		uint32_t x = t->ids[i];

		if (h.pos[x] >= 0) {
			hits++;
			h.key[h.pos[x]] = next[i];
			opt_fix(&h, (size_t)h.pos[x]);
			continue;
		}
		if (h.n == cap) {
			h.pos[h.id[0]] = -1;
			h.n--;
			if (h.n > 0) {
				h.key[0] = h.key[h.n];
				h.id[0] = h.id[h.n];
				h.pos[h.id[0]] = 0;
				opt_fix(&h, 0);
			}
		}
		h.key[h.n] = next[i];
		h.id[h.n] = x;
		h.pos[x] = (int32_t)h.n;
		h.n++;
		opt_fix(&h, h.n - 1);
	}
	r = 100.0 * (double)hits / (double)t->n;
out:
	free(next);
	free(last);
	free(h.key);
	free(h.id);
	free(h.pos);
	return r;
}

/* ---- dw_cache -------------------------------------------------------------------------------- */

static double dw_ratio(const struct trace *t, size_t cap)
{
	dw_cache_config cfg;
	dw_cache_stats st;
	dw_cache *c;
	size_t hits = 0;

	dw_cache_config_default(&cfg);
	cfg.max_entries = cap;
	cfg.max_bytes = 0;
	if (dw_cache_open(&cfg, &c) < 0)
		return -1;
	for (size_t i = 0; i < t->n; i++) {
		uint64_t k = t->ids[i];
		void *v;
		size_t vl;
		int rc = dw_cache_get(c, &k, sizeof(k), &v, &vl);

		if (rc == 0) {
			hits++;
			dw_free(v);
		} else if (rc == DW_ENOTFOUND) {
			uint32_t val = t->ids[i];

			if (dw_cache_put(c, &k, sizeof(k), &val, sizeof(val)) < 0)
				return -1;
		} else {
			return -1;
		}
	}
	dw_cache_stats_get(c, &st);
	if (st.entries > cap)
		fprintf(stderr, "bound violated: %zu > %zu\n", st.entries, cap);
	dw_cache_close(c);
	return 100.0 * (double)hits / (double)t->n;
}

/* ---- synthetic workloads --------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct zipf {
	double *cdf;
	size_t n;
	uint32_t *perm; /* rank -> id, so popular ids are scattered */
};

static int zipf_init(struct zipf *z, size_t n, double s, uint64_t seed)
{
	double sum = 0;

	z->n = n;
	z->cdf = malloc(n * sizeof(double));
	z->perm = malloc(n * sizeof(uint32_t));
	if (!z->cdf || !z->perm)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), s);
		z->cdf[i] = sum;
		z->perm[i] = (uint32_t)i;
	}
	for (size_t i = 0; i < n; i++)
		z->cdf[i] /= sum;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rng_next(&seed) % (i + 1);
		uint32_t tmp = z->perm[i];

		z->perm[i] = z->perm[j];
		z->perm[j] = tmp;
	}
	return 0;
}

static uint32_t zipf_draw(const struct zipf *z, uint64_t *rng)
{
	double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0;
	size_t lo = 0, hi = z->n - 1;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (z->cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return z->perm[lo];
}

static void zipf_free(struct zipf *z)
{
	free(z->cdf);
	free(z->perm);
}

/* Zipf(s) over nkeys, nreq requests; with scan_len > 0, after every `every` Zipf requests a scan
 * of scan_len keys never seen before (one-time accesses) is inserted. */
static int make_synth(struct trace *t, const char *name, size_t nkeys, size_t nreq, size_t every,
		      size_t scan_len)
{
	struct zipf z;
	uint64_t rng = 42;
	uint32_t fresh = (uint32_t)nkeys;
	size_t i = 0, since = 0;

	snprintf(t->name, sizeof(t->name), "%s", name);
	if (zipf_init(&z, nkeys, 0.99, 7) < 0)
		return -ENOMEM;
	t->ids = malloc(nreq * sizeof(*t->ids));
	if (!t->ids) {
		zipf_free(&z);
		return -ENOMEM;
	}
	while (i < nreq) {
		if (scan_len && since == every) {
			for (size_t j = 0; j < scan_len && i < nreq; j++)
				t->ids[i++] = fresh++;
			since = 0;
			continue;
		}
		t->ids[i++] = zipf_draw(&z, &rng);
		since++;
	}
	t->n = nreq;
	/* distinct keys: ids are dense in [0, fresh); count the ones that occur */
	{
		uint8_t *seen = calloc(fresh, 1);
		size_t d = 0;

		if (!seen) {
			zipf_free(&z);
			return -ENOMEM;
		}
		for (size_t k = 0; k < nreq; k++) {
			if (!seen[t->ids[k]]) {
				seen[t->ids[k]] = 1;
				d++;
			}
		}
		free(seen);
		t->distinct = fresh; /* id space for the reference arrays */
		t->distinct = t->distinct < d ? d : t->distinct;
		zipf_free(&z);
		return (int)(d > INT32_MAX ? INT32_MAX : d);
	}
}

/* ---- the table ------------------------------------------------------------------------------- */

static const int pcts[] = { 1, 5, 10, 25 };
static int below_lru, cells;

static void run_table(const struct trace *t, size_t distinct_for_size)
{
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		size_t cap = distinct_for_size * (size_t)pcts[i] / 100;
		double lru, sieve, dw, opt;

		if (cap < 2)
			cap = 2;
		lru = ref_ratio(t, cap, false);
		sieve = ref_ratio(t, cap, true);
		dw = dw_ratio(t, cap);
		opt = opt_ratio(t, cap);
		printf("%-12s %4d%% %8zu %8.2f %8.2f %8.2f %+7.2f %8.2f\n", t->name, pcts[i], cap,
		       lru, sieve, dw, dw - lru, opt);
		cells++;
		if (dw < lru - 0.005)
			below_lru++;
		fflush(stdout);
	}
}

/* ---- throughput ------------------------------------------------------------------------------ */

struct tp_arg {
	dw_cache *c;
	pthread_mutex_t *mu;
	struct ref *lru;
	const uint32_t *keys;
	size_t n;
};

static void *tp_dw(void *p)
{
	struct tp_arg *a = p;

	for (size_t i = 0; i < a->n; i++) {
		uint64_t k = a->keys[i];
		void *v;
		size_t vl;

		if (dw_cache_get(a->c, &k, sizeof(k), &v, &vl) == 0)
			dw_free(v);
		else
			dw_cache_put(a->c, &k, sizeof(k), &k, sizeof(k));
	}
	return NULL;
}

static void *tp_lru(void *p)
{
	struct tp_arg *a = p;

	for (size_t i = 0; i < a->n; i++) {
		pthread_mutex_lock(a->mu);
		lru_access(a->lru, (int32_t)a->keys[i]);
		pthread_mutex_unlock(a->mu);
	}
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ops/s, median of 3 runs, nthreads threads each running its own slice of keys. */
static double throughput(const struct trace *t, size_t cap, int nthreads, bool lru)
{
	double runs[3];

	for (int r = 0; r < 3; r++) {
		pthread_t th[2];
		struct tp_arg a[2];
		pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
		struct ref ref;
		dw_cache_config cfg;
		dw_cache *c = NULL;
		size_t per = t->n / 2;
		double t0;

		if (lru) {
			if (ref_init(&ref, t->distinct, cap) < 0)
				return -1;
		} else {
			dw_cache_config_default(&cfg);
			cfg.max_entries = cap;
			cfg.max_bytes = 0;
			if (dw_cache_open(&cfg, &c) < 0)
				return -1;
		}
		t0 = now_s();
		for (int i = 0; i < nthreads; i++) {
			a[i] = (struct tp_arg){ .c = c,
						.mu = &mu,
						.lru = &ref,
						.keys = t->ids + (size_t)i * per,
						.n = per };
			pthread_create(&th[i], NULL, lru ? tp_lru : tp_dw, &a[i]);
		}
		for (int i = 0; i < nthreads; i++)
			pthread_join(th[i], NULL);
		runs[r] = (double)per * nthreads / (now_s() - t0);
		if (lru)
			ref_free(&ref);
		else
			dw_cache_close(c);
	}
	qsort(runs, 3, sizeof(double), cmp_d);
	return runs[1];
}

/* BENCH_CACHE_ONLY unset, or nm in its comma-separated list */
static bool wanted(const char *nm)
{
	const char *only = getenv("BENCH_CACHE_ONLY");
	size_t len = strlen(nm);

	if (!only || !*only)
		return true;
	for (const char *p = only; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == len && strncmp(p, nm, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char *lirs_names[] = { "loop",   "multi1", "multi2", "multi3", "sprite", "2_pools",
				    "zigzag", "scan",	"ps",	  "cs",	    "gli",    "cpp" };
static const char *c2k_names[] = { "web07", "web12", "orm-busy", "orm-night" };

int main(int argc, char **argv)
{
	bool quick = argc > 2 && strcmp(argv[2], "--quick") == 0;
	bool tp_only = argc > 2 && strcmp(argv[2], "--throughput") == 0;
	bool ratio_only = argc > 2 && strcmp(argv[2], "--ratio") == 0;
	struct trace t;
	struct rusage ru;
	char path[4096];
	int d;

	if (argc < 2) {
		fprintf(stderr, "usage: %s TRACE_DIR [--quick]\n", argv[0]);
		return 2;
	}
	if (tp_only)
		goto tp;
	printf("hit ratio (%%): a get per request, put on miss; size = %% of distinct keys\n");
	printf("%-12s %5s %8s %8s %8s %8s %7s %8s\n", "trace", "size", "entries", "LRU", "SIEVE",
	       "dw_cache", "delta", "OPT");
	for (int pass = 0; pass < 2; pass++) {
		size_t cnt = pass == 0 ? sizeof(lirs_names) / sizeof(lirs_names[0])
				       : sizeof(c2k_names) / sizeof(c2k_names[0]);

		for (size_t i = 0; i < cnt; i++) {
			const char *nm = pass == 0 ? lirs_names[i] : c2k_names[i];
			int rc;

			if (!wanted(nm))
				continue;
			if ((size_t)snprintf(path, sizeof(path), "%s/%s/%s.trace.%s", argv[1],
					     pass == 0 ? "lirs" : "cache2k", nm,
					     pass == 0 ? "gz" : "xz") >= sizeof(path))
				return 1;
			memset(&t, 0, sizeof(t));
			rc = load_trace(path, pass == 0, &t);
			if (rc < 0) {
				fprintf(stderr, "%s: cannot read (%s)\n", path, strerror(-rc));
				return 1;
			}
			snprintf(t.name, sizeof(t.name), "%s", nm);
			run_table(&t, t.distinct);
			free(t.ids);
		}
	}

	if (!wanted("zipf0.99"))
		goto scan;
	memset(&t, 0, sizeof(t));
	d = make_synth(&t, "zipf0.99", quick || ratio_only ? 100000 : 1000000,
		       quick || ratio_only ? 1000000 : 10000000, 0, 0);
	if (d < 0)
		return 1;
	run_table(&t, (size_t)d);
	free(t.ids);
scan:
	if (!wanted("zipf+scan"))
		goto done;
	memset(&t, 0, sizeof(t));
	/* every 100k Zipf requests, a scan of 50k one-time keys (a third of the requests) */
	d = make_synth(&t, "zipf+scan", 100000, quick ? 1500000 : 6000000, 100000, 50000);
	if (d < 0)
		return 1;
	run_table(&t, 100000); /* sizes relative to the Zipf key space, not the scan keys */
	free(t.ids);
done:
	printf("cells below LRU: %d of %d\n\n", below_lru, cells);
	if (ratio_only)
		return 0;
tp:
	memset(&t, 0, sizeof(t));
	d = make_synth(&t, "zipf-tp", 1000000, quick ? 2000000 : 8000000, 0, 0);
	if (d < 0)
		return 1;
	printf("throughput: get, put on miss; Zipf(0.99) over 1M keys, size 100k; median of 3\n");
	printf("%-28s %12s %12s\n", "", "1 thread", "2 threads");
	{
		double d1 = throughput(&t, 100000, 1, false), d2 = throughput(&t, 100000, 2, false);
		double l1 = throughput(&t, 100000, 1, true), l2 = throughput(&t, 100000, 2, true);

		printf("%-28s %12.0f %12.0f\n", "dw_cache ops/s", d1, d2);
		printf("%-28s %12.0f %12.0f\n", "LRU + mutex ops/s (peer)", l1, l2);
		printf("%-28s %12.2f %12.2f\n", "ratio dw_cache/LRU", d1 / l1, d2 / l2);
	}
	free(t.ids);
	getrusage(RUSAGE_SELF, &ru);
	printf("peak RSS: %ld KiB\n", ru.ru_maxrss);
	return 0;
}
