// SPDX-License-Identifier: MIT
/*
 * A tiny blocking HTTP/1.1 client, enough for the dwscale command to talk to `dwscale serve`.
 *
 * Why not libcurl: the command only ever sends one small request to a daemon it knows, usually
 * on loopback; a socket, one request with "Connection: close" and a read to end of stream cover
 * it in a few hundred lines, without a TLS stack and its dependencies in every install.
 *
 * Every wait has a deadline (non-blocking connect + poll), and the response is read into a
 * buffer capped at the header cap plus DW_HTTP_CLIENT_BODY_MAX, so a misbehaving peer can neither
 * hang the command nor make it allocate without bound.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dwscale/core.h"

#define HEADER_MAX (64u << 10)

struct url {
	char host[256];
	char port[8];
	char path[1024];
};

static int parse_url(const char *url, struct url *u, char *err, size_t errlen)
{
	const char *p, *hend, *pend;
	size_t hlen;

	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "invalid server URL '%s': only http://HOST:PORT is supported",
			 url);
		return DW_EUSAGE;
	}
	p = url + 7;
	pend = p + strcspn(p, "/?#");
	if (*p == '[') {
		hend = memchr(p, ']', (size_t)(pend - p));
		if (!hend)
			goto bad;
		hlen = (size_t)(hend - p - 1);
		if (hlen == 0 || hlen >= sizeof(u->host))
			goto bad;
		memcpy(u->host, p + 1, hlen);
		hend++;
	} else {
		hend = memchr(p, ':', (size_t)(pend - p));
		if (!hend)
			hend = pend;
		hlen = (size_t)(hend - p);
		if (hlen == 0 || hlen >= sizeof(u->host))
			goto bad;
		memcpy(u->host, p, hlen);
	}
	u->host[hlen] = '\0';
	if (hend < pend) {
		size_t plen;
		char *end;
		long port;

		if (*hend != ':')
			goto bad;
		plen = (size_t)(pend - hend - 1);
		if (plen == 0 || plen >= sizeof(u->port))
			goto bad;
		memcpy(u->port, hend + 1, plen);
		u->port[plen] = '\0';
		errno = 0;
		port = strtol(u->port, &end, 10);
		if (*end || port < 1 || port > 65535 || !isdigit((unsigned char)u->port[0]))
			goto bad;
	} else {
		snprintf(u->port, sizeof(u->port), "80");
	}
	if (snprintf(u->path, sizeof(u->path), "%s", *pend == '/' ? pend : "") >=
	    (int)sizeof(u->path))
		goto bad;
	/* the base URL's own path is a prefix; drop one trailing slash so paths join cleanly */
	hlen = strlen(u->path);
	if (hlen && u->path[hlen - 1] == '/')
		u->path[hlen - 1] = '\0';
	return 0;
bad:
	snprintf(err, errlen, "invalid server URL '%s': expected http://HOST:PORT", url);
	return DW_EUSAGE;
}

static int64_t now_ms(void)
{
	return (int64_t)(dw_clock_now(NULL) / DW_NS_PER_MS);
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left = deadline - now_ms();
	int n;

	if (left <= 0)
		return DW_ETIMEDOUT;
	n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return deadline - now_ms() <= 0 ? DW_ETIMEDOUT : 0;
	return 1;
}

static int connect_to(const struct url *u, int64_t deadline, int *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res = NULL, *ai;
	int rc = -ECONNREFUSED, gai;

	*out = -1;
	gai = getaddrinfo(u->host, u->port, &hints, &res);
	if (gai != 0)
		return gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			*out = fd;
			rc = 0;
			break;
		}
		if (errno != EINPROGRESS) {
			rc = -errno;
			close(fd);
			continue;
		}
		do {
			rc = wait_fd(fd, POLLOUT, deadline);
		} while (rc == 0);
		if (rc < 0) {
			close(fd);
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			rc = -soerr;
			close(fd);
			continue;
		}
		*out = fd;
		rc = 0;
		break;
	}
	freeaddrinfo(res);
	return rc;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			int rc;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			rc = wait_fd(fd, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, struct dw__sbuf *b, int64_t deadline)
{
	char tmp[16384];

	for (;;) {
		ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
		int rc;

		if (r == 0)
			return 0;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			rc = wait_fd(fd, POLLIN, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		rc = dw__sb_append(b, tmp, (size_t)r);
		if (rc < 0)
			return rc;
	}
}

/* Case-insensitive match of a header line "Name: value" (line not NUL-terminated). */
static const char *header_value(const char *line, size_t len, const char *name)
{
	size_t nl = strlen(name);

	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	line += nl + 1;
	while (*line == ' ' || *line == '\t')
		line++;
	return line;
}

static int dechunk(const char *p, const char *end, struct dw__sbuf *out)
{
	for (;;) {
		char *e;
		unsigned long long n;
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		int rc;

		if (!eol || !isxdigit((unsigned char)*p))
			return DW_EPROTO;
		errno = 0;
		n = strtoull(p, &e, 16);
		if (errno || e > eol || (*e != '\r' && *e != ';'))
			return DW_EPROTO;
		p = eol + 2;
		if (n == 0)
			return 0; /* trailers, if any, are ignored */
		if (n > (unsigned long long)(end - p) || (size_t)(end - p) - n < 2)
			return DW_EPROTO;
		rc = dw__sb_append(out, p, (size_t)n);
		if (rc < 0)
			return rc;
		p += n;
		if (p[0] != '\r' || p[1] != '\n')
			return DW_EPROTO;
		p += 2;
	}
}

int dw__http_parse_response(const char *buf, size_t len, struct dw__http_resp *resp)
{
	const char *hend = memmem(buf, len, "\r\n\r\n", 4);
	const char *p, *end = buf + len, *body;
	struct dw__sbuf b;
	bool chunked = false;
	long long clen = -1;
	int rc;

	resp->status = 0;
	resp->body = NULL;
	resp->body_len = 0;
	if (!hend || len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
	    !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]))
		return DW_EPROTO;
	resp->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	p = memmem(buf, (size_t)(hend + 2 - buf), "\r\n", 2) + 2;
	while (p < hend + 2) {
		const char *eol = memmem(p, (size_t)(hend + 2 - p), "\r\n", 2);
		const char *v;

		if ((v = header_value(p, (size_t)(eol - p), "Content-Length"))) {
			char *e;

			errno = 0;
			clen = strtoll(v, &e, 10);
			if (errno || clen < 0 || e == v)
				return DW_EPROTO;
		} else if ((v = header_value(p, (size_t)(eol - p), "Transfer-Encoding"))) {
			if (strncasecmp(v, "chunked", 7) == 0)
				chunked = true;
		}
		p = eol + 2;
	}
	body = hend + 4;
	dw__sb_init(&b, DW_HTTP_CLIENT_BODY_MAX);
	if (chunked) {
		rc = dechunk(body, end, &b);
	} else if (clen >= 0) {
		if ((unsigned long long)clen > (unsigned long long)(end - body))
			rc = DW_EPROTO; /* the peer closed early */
		else
			rc = dw__sb_append(&b, body, (size_t)clen);
	} else {
		rc = dw__sb_append(&b, body, (size_t)(end - body));
	}
	if (rc < 0) {
		dw__sb_free(&b);
		return rc;
	}
	resp->body = dw__sb_steal(&b, &resp->body_len);
	return resp->body ? 0 : -ENOMEM;
}

static void lower_first(char *s)
{
	if (s[0] && s[1] && !isupper((unsigned char)s[1]))
		s[0] = (char)tolower((unsigned char)s[0]);
}

int dw__http_request(const char *base_url, const char *method, const char *path,
		     const char *headers, const char *body, size_t body_len, int timeout_ms,
		     struct dw__http_resp *resp, char *err, size_t errlen)
{
	struct dw__sbuf req, in;
	struct url u;
	int64_t deadline = now_ms() + timeout_ms;
	char shown[512], why[128];
	int fd = -1, rc;
	bool v6;

	resp->status = 0;
	resp->body = NULL;
	resp->body_len = 0;
	dw__sb_init(&req, HEADER_MAX + DW_HTTP_CLIENT_BODY_MAX);
	dw__sb_init(&in, HEADER_MAX + DW_HTTP_CLIENT_BODY_MAX);
	if (errlen)
		err[0] = '\0';
	rc = parse_url(base_url, &u, err, errlen);
	if (rc < 0)
		goto out;
	/* the URL as the user knows it, without a trailing slash, for messages */
	snprintf(shown, sizeof(shown), "%s", base_url);
	if (strlen(shown) > 7 && shown[strlen(shown) - 1] == '/')
		shown[strlen(shown) - 1] = '\0';
	rc = connect_to(&u, deadline, &fd);
	if (rc < 0)
		goto unreachable;
	v6 = strchr(u.host, ':') != NULL;
	rc = dw__sb_printf(&req,
			   "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: dwscale/%s\r\n"
			   "Accept: application/json\r\nConnection: close\r\n",
			   method, u.path, path, v6 ? "[" : "", u.host, v6 ? "]" : "", u.port,
			   dw_version());
	if (rc == 0 && body)
		rc = dw__sb_printf(&req, "Content-Length: %zu\r\n", body_len);
	if (rc == 0 && headers)
		rc = dw__sb_puts(&req, headers);
	if (rc == 0)
		rc = dw__sb_puts(&req, "\r\n");
	if (rc == 0 && body)
		rc = dw__sb_append(&req, body, body_len);
	if (rc < 0)
		goto out;
	rc = send_all(fd, req.p, req.len, deadline);
	if (rc < 0)
		goto unreachable;
	rc = recv_all(fd, &in, deadline);
	if (rc < 0 && rc != DW_ETOOBIG)
		goto unreachable;
	if (rc == DW_ETOOBIG) {
		snprintf(err, errlen, "answer from %s is larger than %u bytes", shown,
			 HEADER_MAX + DW_HTTP_CLIENT_BODY_MAX);
		goto out;
	}
	rc = dw__http_parse_response(in.p ? in.p : "", in.len, resp);
	if (rc < 0)
		snprintf(err, errlen, "%s did not answer with HTTP that dwscale understands",
			 shown);
	goto out;
unreachable:
	snprintf(why, sizeof(why), "%s",
		 rc == DW_ETIMEDOUT ? "no answer in time" : dw_strerror(rc));
	lower_first(why);
	snprintf(err, errlen, "cannot reach %s: %s", shown, why);
out:
	if (fd >= 0)
		close(fd);
	dw__sb_free(&req);
	dw__sb_free(&in);
	return rc;
}

void dw__http_resp_free(struct dw__http_resp *resp)
{
	dw_free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}
