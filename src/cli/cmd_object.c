// SPDX-License-Identifier: MIT
/*
 * dwscale object put|get|stat|rm|ls: the database storage from a shell.
 *
 * put and get stream: memory stays at a few chunks whatever the object's size. get -o FILE
 * writes a temporary file beside FILE and renames it into place only once the whole object has
 * been read and checked, so FILE is never seen half-written; a FILE that is a device or a FIFO
 * (-o /dev/null) is written in place (output_target). On a terminal, long transfers show
 * a progress line on stderr. ls prints one page by default (and the token for the next one);
 * --all walks every match at constant memory; --json gives scripts one JSON document per page,
 * or one JSON object per line with --all.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/dbopen.h"
#include "dwscale/config.h"

struct opts {
	struct dw__dbopen_args db;
	const char *output;
	const char *content_type;
	const char *meta;
	const char *prefix;
	const char *page_token;
	uint64_t limit;
	bool all, json;
};

/* ---- progress on a terminal ---- */

struct progress {
	bool on;
	uint64_t total; /* 0 = unknown */
	uint64_t done;
	uint64_t start_ns, last_ns;
};

static void human_bytes(double b, char *buf, size_t cap)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void progress_show(struct progress *p, bool final)
{
	uint64_t now = dw_clock_now(NULL);
	double secs = (double)(now - p->start_ns) / 1e9, rate;
	char done[32], total[32], rs[32];

	if (!p->on || (!final && now - p->last_ns < 250 * DW_NS_PER_MS))
		return;
	p->last_ns = now;
	rate = secs > 0 ? (double)p->done / secs : 0;
	human_bytes((double)p->done, done, sizeof(done));
	human_bytes(rate, rs, sizeof(rs));
	if (p->total) {
		double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;

		human_bytes((double)p->total, total, sizeof(total));
		fprintf(stderr, "\r\033[K%s / %s (%.0f%%)  %s/s  ETA %.0fs", done, total,
			100.0 * (double)p->done / (double)p->total, rs, eta);
	} else {
		fprintf(stderr, "\r\033[K%s  %s/s", done, rs);
	}
	if (final)
		fputc('\n', stderr);
}

static void progress_init(struct progress *p, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(2);
	p->total = total;
	p->start_ns = p->last_ns = dw_clock_now(NULL);
}

/* A source that counts what passes through it, for the progress line. */
struct counting {
	dw_source inner;
	struct progress *p;
};

static ssize_t counting_read(void *ctx, void *buf, size_t len)
{
	struct counting *c = ctx;
	ssize_t n = c->inner.read(c->inner.ctx, buf, len);

	if (n > 0) {
		c->p->done += (uint64_t)n;
		progress_show(c->p, false);
	}
	return n;
}

/* ---- commands ---- */

static void print_json(cJSON *j)
{
	char *text = cJSON_PrintUnformatted(j);

	if (text)
		printf("%s\n", text);
	cJSON_free(text);
	cJSON_Delete(j);
}

static int do_put(struct dw__dbopen *d, const char *key, const char *file, const struct opts *op)
{
	dw_source src = { 0 };
	struct counting cnt;
	struct progress pr;
	dw_db_put_opts po = { .content_type = op->content_type, .meta = op->meta };
	dw_db_object o = { 0 };
	dw_source wrapped = { 0 };
	struct stat st;
	int rc;

	if (!file || strcmp(file, "-") == 0) {
		rc = dw_source_from_fd(0, false, &src);
		progress_init(&pr, 0);
	} else {
		rc = dw_source_from_path(file, &src);
		progress_init(&pr, stat(file, &st) == 0 && S_ISREG(st.st_mode)
					   ? (uint64_t)st.st_size
					   : 0);
	}
	if (rc < 0) {
		fprintf(stderr, "dwscale: object put: cannot read %s: %s\n", file ? file : "stdin",
			dw_strerror(rc));
		return rc == -ENOENT ? DW_EXIT_NOTFOUND : DW_EXIT_ERROR;
	}
	if (op->meta) {
		cJSON *m = cJSON_Parse(op->meta);
		bool ok = m && cJSON_IsObject(m);

		cJSON_Delete(m);
		if (!ok) {
			dw_source_close(&src);
			return dw__usage_error("object", "--meta must be a JSON object");
		}
	}
	cnt.inner = src;
	cnt.p = &pr;
	wrapped.read = counting_read;
	wrapped.ctx = &cnt;
	rc = dw_db_put(d->db, d->strategy, key, strlen(key), &wrapped, &po, &o);
	progress_show(&pr, true);
	dw_source_close(&src);
	if (rc < 0)
		return dw__db_exit(d->db, "object put", rc);
	if (op->json)
		print_json(dw__db_object_json(&o));
	dw_db_object_clear(&o);
	return DW_EXIT_OK;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Where -o FILE goes. A regular file (or a new one) is written through a temporary file renamed
 * into place; through a symlink, the file it points to is replaced, not the link. Anything else
 * that exists (a device such as /dev/null, a FIFO, a socket) is written in place: renaming a
 * temporary file over it would replace the device node with a regular file.
 */
static int output_target(const char *out, char *real, size_t reallen, bool *in_place)
{
	struct stat st;
	char *r;

	*in_place = false;
	snprintf(real, reallen, "%s", out);
	if (stat(out, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode)) {
		*in_place = true;
		return 0;
	}
	r = realpath(out, NULL);
	if (!r)
		return -errno;
	if (snprintf(real, reallen, "%s", r) >= (int)reallen) {
		free(r);
		return -ENAMETOOLONG;
	}
	free(r);
	return 0;
}

static int do_get(struct dw__dbopen *d, const char *key, const struct opts *op)
{
	char tmp[PATH_MAX], dir[PATH_MAX], target[PATH_MAX];
	const char *out = op->output;
	bool to_file = out && strcmp(out, "-") != 0, in_place = false;
	dw_db_object info = { 0 };
	struct progress pr;
	dw_bbuf *b = NULL;
	const void *chunk;
	size_t len;
	int fd = 1, rc, ret = DW_EXIT_ERROR;

	tmp[0] = '\0';
	if (to_file) {
		rc = output_target(out, target, sizeof(target), &in_place);
		if (rc < 0) {
			fprintf(stderr, "dwscale: object get: %s: %s\n", out, dw_strerror(rc));
			return DW_EXIT_ERROR;
		}
		out = target;
	}
	rc = dw_db_get(d->db, d->strategy, key, strlen(key), &info, &b);
	if (rc < 0)
		return dw__db_exit(d->db, "object get", rc);
	if (in_place) {
		fd = open(out, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "dwscale: object get: cannot open %s: %s\n", out,
				strerror(errno));
			goto out;
		}
		snprintf(tmp, sizeof(tmp), "%s", out); /* for messages; never unlinked */
	} else if (to_file) {
		if (snprintf(tmp, sizeof(tmp), "%s.dwtmp.XXXXXX", out) >= (int)sizeof(tmp)) {
			fprintf(stderr, "dwscale: object get: output path too long\n");
			goto out;
		}
		fd = mkstemp(tmp);
		if (fd < 0) {
			fprintf(stderr, "dwscale: object get: cannot create %s: %s\n", tmp,
				strerror(errno));
			goto out;
		}
	}
	progress_init(&pr, info.size);
	pr.on = pr.on && (to_file || !isatty(1));
	while ((rc = dw_bbuf_next(b, &chunk, &len)) == 1) {
		rc = write_all(fd, chunk, len);
		if (rc < 0) {
			fprintf(stderr, "dwscale: object get: writing %s: %s\n",
				to_file ? tmp : "stdout", dw_strerror(rc));
			goto out;
		}
		pr.done += len;
		progress_show(&pr, false);
	}
	progress_show(&pr, true);
	if (rc < 0) {
		const char *m = dw_bbuf_errmsg(b);

		fprintf(stderr, "dwscale: object get: %s\n", m && *m ? m : dw_strerror(rc));
		ret = rc == DW_ECONFLICT ? DW_EXIT_NOTFOUND : DW_EXIT_ERROR;
		goto out;
	}
	if (in_place) {
		rc = close(fd);
		fd = -1;
		if (rc < 0) {
			fprintf(stderr, "dwscale: object get: writing %s: %s\n", out,
				strerror(errno));
			goto out;
		}
	} else if (to_file) {
		int dfd;

		if (fsync(fd) < 0 || close(fd) < 0) {
			fd = -1;
			fprintf(stderr, "dwscale: object get: writing %s: %s\n", tmp,
				strerror(errno));
			goto out;
		}
		fd = -1;
		if (rename(tmp, out) < 0) {
			fprintf(stderr, "dwscale: object get: cannot rename to %s: %s\n", out,
				strerror(errno));
			goto out;
		}
		tmp[0] = '\0';
		snprintf(dir, sizeof(dir), "%s", out);
		dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	ret = DW_EXIT_OK;
out:
	if (to_file && fd >= 0)
		close(fd);
	if (to_file && !in_place && tmp[0] && ret != DW_EXIT_OK)
		unlink(tmp);
	dw_bbuf_close(b);
	dw_db_object_clear(&info);
	return ret;
}

static void print_object_line(const dw_db_object *o)
{
	char key[DW_DB_KEY_MAX * 4 + 1], when[32];
	time_t t = (time_t)(o->modified_ns / DW_NS_PER_SEC);
	struct tm tm;
	size_t k = 0;

	/* Keys may hold control characters: show them escaped, one object per line. */
	for (size_t i = 0; i < o->key_len && k + 5 < sizeof(key); i++) {
		unsigned char c = o->key[i];

		if (c < 0x20 || c == 0x7f)
			k += (size_t)snprintf(key + k, sizeof(key) - k, "\\x%02x", c);
		else
			key[k++] = (char)c;
	}
	key[k] = '\0';
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%12llu  %s  %s\n", (unsigned long long)o->size, when, key);
}

static int do_ls(struct dw__dbopen *d, const struct opts *op)
{
	size_t plen = op->prefix ? strlen(op->prefix) : 0;
	int rc;

	if (op->all) {
		dw_db_lister *l;
		const dw_db_object *o;

		rc = dw_db_lister_open(d->db, d->strategy, op->prefix, plen, 0, &l);
		if (rc < 0)
			return dw__db_exit(d->db, "object ls", rc);
		while ((rc = dw_db_lister_next(l, &o)) == 1) {
			if (op->json)
				print_json(dw__db_object_json(o));
			else
				print_object_line(o);
		}
		dw_db_lister_close(l);
		if (rc < 0)
			return dw__db_exit(d->db, "object ls", rc);
		return DW_EXIT_OK;
	} else {
		dw_db_list_query q = { .prefix = op->prefix,
				       .prefix_len = plen,
				       .limit = (size_t)op->limit,
				       .page_token = op->page_token };
		dw_db_page page;

		rc = dw_db_list(d->db, d->strategy, &q, &page);
		if (rc < 0)
			return dw__db_exit(d->db, "object ls", rc);
		if (op->json) {
			print_json(dw__db_page_json(&page));
		} else {
			for (size_t i = 0; i < page.n; i++)
				print_object_line(&page.items[i]);
			fprintf(stderr, "%zu of %llu objects", page.n,
				(unsigned long long)page.total);
			if (page.next_token)
				fprintf(stderr, "; next page: --page-token %s", page.next_token);
			fputc('\n', stderr);
		}
		dw_db_page_clear(&page);
	}
	return DW_EXIT_OK;
}

int dw__cmd_object(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "db", required_argument, NULL, 'D' },
		{ "data", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "output", required_argument, NULL, 'o' },
		{ "content-type", required_argument, NULL, 't' },
		{ "meta", required_argument, NULL, 'm' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "limit", required_argument, NULL, 'n' },
		{ "page-token", required_argument, NULL, 'T' },
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts op = { .limit = 0 };
	struct dw__dbopen d;
	const char *verb, *pos[2] = { NULL, NULL };
	int npos = 0, c, ret;

	if (argc < 2)
		return dw__usage_error("object", "missing verb: put, get, stat, rm or ls");
	verb = argv[1];
	optind = 2;
	opterr = 0;
	for (;;) {
		c = getopt_long(argc, argv, "-o:", lopts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 1:
			if (npos == 2)
				return dw__usage_error("object", "unexpected argument '%s'",
						       optarg);
			pos[npos++] = optarg;
			break;
		case 'D':
			op.db.db = optarg;
			break;
		case 'd':
			op.db.data = optarg;
			break;
		case 'c':
			op.db.config = optarg;
			break;
		case 'o':
			op.output = optarg;
			break;
		case 't':
			op.content_type = optarg;
			break;
		case 'm':
			op.meta = optarg;
			break;
		case 'p':
			op.prefix = optarg;
			break;
		case 'n':
			if (dw_parse_u64(optarg, &op.limit) < 0 || op.limit == 0 ||
			    op.limit > DW_DB_PAGE_MAX)
				return dw__usage_error("object", "--limit must be 1..%d",
						       DW_DB_PAGE_MAX);
			break;
		case 'T':
			op.page_token = optarg;
			break;
		case 'a':
			op.all = true;
			break;
		case 'j':
			op.json = true;
			break;
		default:
			return dw__usage_error("object", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (strcmp(verb, "ls") == 0) {
		if (npos)
			return dw__usage_error("object", "ls takes no KEY (use --prefix)");
		if (op.all && op.page_token)
			return dw__usage_error("object", "--all and --page-token do not mix");
	} else if (strcmp(verb, "put") == 0 || strcmp(verb, "get") == 0 ||
		   strcmp(verb, "rm") == 0 || strcmp(verb, "stat") == 0) {
		if (!pos[0])
			return dw__usage_error("object", "%s needs a KEY", verb);
		if (pos[1] && strcmp(verb, "put") != 0)
			return dw__usage_error("object", "unexpected argument '%s'", pos[1]);
		if (dw_db_key_check(pos[0], strlen(pos[0])) < 0)
			return dw__usage_error("object",
					       "invalid key: a key is 1..1024 bytes of UTF-8");
	} else {
		return dw__usage_error("object", "unknown verb '%s' (put, get, stat, rm, ls)",
				       verb);
	}
	ret = dw__dbopen(&op.db, &d);
	if (ret != DW_EXIT_OK)
		return ret;
	if (strcmp(verb, "put") == 0) {
		ret = do_put(&d, pos[0], pos[1], &op);
	} else if (strcmp(verb, "get") == 0) {
		ret = do_get(&d, pos[0], &op);
	} else if (strcmp(verb, "stat") == 0) {
		dw_db_object o;
		int rc = dw_db_stat(d.db, d.strategy, pos[0], strlen(pos[0]), &o);

		if (rc < 0) {
			ret = dw__db_exit(d.db, "object stat", rc);
		} else {
			print_json(dw__db_object_json(&o));
			dw_db_object_clear(&o);
		}
	} else if (strcmp(verb, "rm") == 0) {
		int rc = dw_db_delete(d.db, d.strategy, pos[0], strlen(pos[0]));

		if (rc < 0)
			ret = dw__db_exit(d.db, "object rm", rc);
	} else {
		ret = do_ls(&d, &op);
	}
	dw__dbopen_close(&d);
	return ret;
}
