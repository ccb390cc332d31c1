// SPDX-License-Identifier: MIT
/*
 * The dwscale command's HTTP/1.1 client (src/cli/http_client.c): response parsing (status line,
 * Content-Length, chunked, read-to-close), refusal of what is not HTTP or is cut short, URL
 * errors, and the "cannot reach" message for a closed port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/http_client.c"
#include "cli/util.c"

static int parse(const char *raw, struct dw__http_resp *r)
{
	return dw__http_parse_response(raw, strlen(raw), r);
}

static void test_parse_content_length(void **state)
{
	struct dw__http_resp r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 5);
	assert_string_equal(r.body, "hello");
	dw__http_resp_free(&r);
	/* extra bytes past Content-Length are not part of the body */
	assert_int_equal(parse("HTTP/1.0 404 Not Found\r\ncontent-length:2\r\n\r\n{}xx", &r), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "{}");
	dw__http_resp_free(&r);
}

static void test_parse_chunked_and_close(void **state)
{
	struct dw__http_resp r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
			       &r),
			 0);
	assert_string_equal(r.body, "abc0123456789");
	dw__http_resp_free(&r);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\n\r\nuntil close", &r), 0);
	assert_string_equal(r.body, "until close");
	dw__http_resp_free(&r);
}

static void test_parse_refuses_bad_answers(void **state)
{
	static const char *const bad[] = {
		"SSH-2.0-OpenSSH_9.2\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",	      /* no end of headers */
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", /* cut short */
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
	};
	struct dw__http_resp r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &r), DW_EPROTO);
		assert_null(r.body);
	}
}

static void test_bad_urls(void **state)
{
	static const char *const bad[] = { "ftp://x",	  "http://",	    "http://:80",
					   "http://h:0",  "http://h:99999", "http://h:8a",
					   "http://[::1", "127.0.0.1:7070" };
	struct dw__http_resp r;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(dw__http_request(bad[i], "GET", "/", NULL, NULL, 0, 1000, &r, err,
						  sizeof(err)),
				 DW_EUSAGE);
		assert_non_null(strstr(err, "invalid server URL"));
	}
}

static void test_unreachable_message(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);
	struct dw__http_resp r;
	char url[64], want[128], err[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	(void)state;
	/* a port that was just free: bind, read it back, close */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	rc = dw__http_request(url, "GET", "/v1/subsystems", NULL, NULL, 0, 5000, &r, err,
			      sizeof(err));
	assert_int_equal(rc, -ECONNREFUSED);
	snprintf(want, sizeof(want), "cannot reach http://127.0.0.1:%d: connection refused",
		 ntohs(a.sin_port));
	assert_string_equal(err, want);
	assert_int_equal(dw__exit_for_rc(rc), DW_EXIT_UNREACHABLE);
}

static void test_sbuf_cap(void **state)
{
	struct dw__sbuf b;

	(void)state;
	dw__sb_init(&b, 8);
	assert_int_equal(dw__sb_puts(&b, "1234"), 0);
	assert_int_equal(dw__sb_printf(&b, "%d", 5678), 0);
	assert_int_equal(dw__sb_puts(&b, "9"), DW_ETOOBIG);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.p, "12345678");
	dw__sb_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_content_length),
		cmocka_unit_test(test_parse_chunked_and_close),
		cmocka_unit_test(test_parse_refuses_bad_answers),
		cmocka_unit_test(test_bad_urls),
		cmocka_unit_test(test_unreachable_message),
		cmocka_unit_test(test_sbuf_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
