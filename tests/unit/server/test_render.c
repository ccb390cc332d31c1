// SPDX-License-Identifier: MIT
/*
 * Prometheus and JSON rendering of `dwscale serve` (src/server/metrics.c), driven by fake
 * subsystems that emit what a careless subsystem might: series of one name out of order, a
 * counter without _total, a gauge with it, labels that are not valid exposition syntax, help
 * text with newlines, NaN and infinities. The exposition must still be well formed; when
 * /usr/bin/promtool is present it must also pass `promtool check metrics`.
 *
 * The server sources belong to the dwscale executable, not the library, so they are compiled
 * into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/util.c"
#include "server/metrics.c"

static int odd_metrics(void *self, dw_metric_fn fn, void *arg)
{
	dw_metric m = { 0 };

	(void)self;
	m.name = "depth";
	m.labels = "tier=\"high\"";
	m.value = 3;
	m.help = "queue depth\nper tier";
	fn(arg, &m);
	m.name = "ops"; /* counter without _total */
	m.labels = NULL;
	m.value = 10;
	m.help = "operations done";
	m.kind = DW_METRIC_COUNTER;
	fn(arg, &m);
	m.name = "depth"; /* same name again, after another one */
	m.labels = "tier=\"low\"";
	m.value = 1;
	m.help = "queue depth\nper tier";
	m.kind = DW_METRIC_GAUGE;
	fn(arg, &m);
	m.name = "queued_total"; /* gauge with _total */
	m.labels = NULL;
	m.value = 5;
	m.help = "";
	fn(arg, &m);
	m.name = "broken";
	m.labels = "tier=high"; /* not quoted: dropped */
	m.value = 1;
	fn(arg, &m);
	m.name = "ratio";
	m.labels = "dev=\"a\\\"b\"";
	m.value = NAN;
	m.help = "back\\slash";
	fn(arg, &m);
	m.name = "limit_bytes";
	m.labels = NULL;
	m.value = INFINITY;
	fn(arg, &m);
	return 0;
}

static int odd_limits(void *self, dw_limit_fn fn, void *arg)
{
	dw_limit l = { .name = "depth_max", .value = 8, .min = 1, .max = 128, .unit = "ops" };
	dw_limit s = { .name = "mode", .str = "auto" };

	(void)self;
	fn(arg, &l);
	fn(arg, &s);
	return 0;
}

static dw_bp_state odd_state(void *self)
{
	(void)self;
	return DW_BP_CRITICAL;
}

static const dw_scalable_ops odd_ops = {
	.metrics = odd_metrics,
	.limits = odd_limits,
	.state = odd_state,
};

struct fixture {
	struct dw__server srv;
	struct dw__sbuf out;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	dw_scalable sc = { .name = "odd", .ops = &odd_ops };

	if (!f || dw_registry_open(&f->srv.reg) < 0 || dw_registry_add(f->srv.reg, &sc) < 0)
		return -1;
	f->srv.start_ns = dw_clock_now(NULL);
	dw__sb_init(&f->out, 1 << 20);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dw__sb_free(&f->out);
	dw_registry_close(f->srv.reg);
	free(f);
	return 0;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void test_prometheus_rules(void **state)
{
	struct fixture *f = *state;
	const char *t;

	assert_int_equal(dw__render_prometheus(&f->srv, &f->out), 0);
	t = f->out.p;
	/* one HELP/TYPE pair per name, both series under it, in emission order */
	assert_int_equal(count(t, "# TYPE dwscale_odd_depth gauge\n"), 1);
	assert_int_equal(count(t, "# HELP dwscale_odd_depth queue depth\\nper tier\n"), 1);
	assert_non_null(strstr(t, "dwscale_odd_depth{tier=\"high\"} 3\n"
				  "dwscale_odd_depth{tier=\"low\"} 1\n"));
	/* counter gains _total, gauge loses it */
	assert_non_null(
		strstr(t, "# TYPE dwscale_odd_ops_total counter\ndwscale_odd_ops_total 10\n"));
	assert_non_null(strstr(t, "# TYPE dwscale_odd_queued gauge\ndwscale_odd_queued 5\n"));
	assert_null(strstr(t, "dwscale_odd_queued_total"));
	/* empty help falls back to the name; backslash escaped */
	assert_non_null(strstr(t, "# HELP dwscale_odd_queued queued_total\n"));
	assert_non_null(strstr(t, "# HELP dwscale_odd_ratio back\\\\slash\n"));
	/* bad labels dropped, good escapes kept, special values spelled the Prometheus way */
	assert_null(strstr(t, "dwscale_odd_broken"));
	assert_non_null(strstr(t, "dwscale_odd_ratio{dev=\"a\\\"b\"} NaN\n"));
	assert_non_null(strstr(t, "dwscale_odd_limit_bytes +Inf\n"));
	assert_non_null(strstr(t, "dwscale_odd_backpressure_state 2\n"));
	assert_non_null(strstr(t, "dwscale_http_requests_total{code=\"2xx\"} 0\n"));
}

static void test_prometheus_passes_promtool(void **state)
{
	struct fixture *f = *state;
	const char *dir = getenv("DW_TEST_TMPDIR");
	char path[512], cmd[640];
	int fd, st;

	if (access("/usr/bin/promtool", X_OK) != 0) {
		skip(); /* the machine lacks promtool (Debian package prometheus) */
		return;
	}
	assert_int_equal(dw__render_prometheus(&f->srv, &f->out), 0);
	if (!dir || !*dir)
		dir = "/tmp";
	mkdir(dir, 0700); /* meson's DW_TEST_TMPDIR may not exist yet */
	snprintf(path, sizeof(path), "%s/dwscale-render-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, f->out.p, f->out.len), (ssize_t)f->out.len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s", path);
	st = system(cmd);
	unlink(path);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_json(void **state)
{
	struct fixture *f = *state;
	char names[8][33];
	bool is_string[8];
	size_t n = 0;

	assert_int_equal(dw__render_subsystems_json(f->srv.reg, NULL, &f->out), 0);
	assert_non_null(
		strstr(f->out.p, "{\"subsystems\":[{\"name\":\"odd\",\"state\":\"critical\""));
	assert_non_null(strstr(f->out.p, "\"depth_max\":{\"value\":8,\"min\":1,\"max\":128"));
	assert_non_null(strstr(f->out.p, "\"mode\":{\"value\":\"auto\""));
	assert_non_null(strstr(f->out.p, "\"labels\":\"tier=\\\"high\\\"\""));
	dw__sb_free(&f->out);
	assert_int_equal(dw__render_subsystems_json(f->srv.reg, "odd", &f->out), 0);
	assert_true(strncmp(f->out.p, "{\"name\":\"odd\"", 13) == 0);
	assert_int_equal(dw__render_subsystems_json(f->srv.reg, "none", &f->out), DW_ENOTFOUND);
	assert_int_equal(dw__limit_names(f->srv.reg, "odd", names, is_string, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "depth_max");
	assert_false(is_string[0]);
	assert_true(is_string[1]);
	assert_int_equal(dw__limit_names(f->srv.reg, "none", names, is_string, 8, &n),
			 DW_ENOTFOUND);
}

static void test_render_respects_cap(void **state)
{
	struct fixture *f = *state;
	struct dw__sbuf small;

	dw__sb_init(&small, 256);
	assert_int_equal(dw__render_prometheus(&f->srv, &small), DW_ETOOBIG);
	assert_true(small.len <= 256);
	dw__sb_free(&small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prometheus_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prometheus_passes_promtool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_render_respects_cap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
