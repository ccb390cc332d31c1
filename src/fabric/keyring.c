// SPDX-License-Identifier: MIT
/*
 * Fabric keys, addresses and names: the small parsers the CLI and the agent need.
 *
 * A key file holds one key per line, "<id> <64 hex digits>", the first being the one used to
 * send. Rotation without downtime: add the new key as a second line on every node (accepted),
 * then move it first (sent), then drop the old line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "fabric_int.h"

#define KEYFILE_MAX (64 * 1024) /* a key file is a few lines; anything larger is not one */

int dw_fabric_key_generate(dw_fabric_key *out)
{
	uint32_t id = 0;

	while (id == 0) {
		if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1)
			return DW_EBACKEND;
	}
	if (RAND_bytes(out->secret, DW_FABRIC_KEY_LEN) != 1)
		return DW_EBACKEND;
	out->id = id;
	return 0;
}

int dw_fabric_key_format(const dw_fabric_key *k, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	int n = snprintf(buf, cap, "%u ", k->id);

	if (n < 0 || (size_t)n + 2 * DW_FABRIC_KEY_LEN + 1 > cap)
		return DW_ETOOBIG;
	for (size_t i = 0; i < DW_FABRIC_KEY_LEN; i++) {
		buf[n + 2 * i] = hex[k->secret[i] >> 4];
		buf[n + 2 * i + 1] = hex[k->secret[i] & 15];
	}
	buf[n + 2 * DW_FABRIC_KEY_LEN] = '\0';
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_line(const char *s, size_t len, dw_fabric_key *k)
{
	size_t i = 0;
	unsigned long long id = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		id = id * 10 + (unsigned)(s[i] - '0');
		if (id > 0xffffffffULL)
			return -1;
		i++;
	}
	if (i == 0 || id == 0 || i >= len || (s[i] != ' ' && s[i] != '\t'))
		return -1;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	for (size_t j = 0; j < DW_FABRIC_KEY_LEN; j++) {
		int hi, lo;

		if (i + 2 > len)
			return -1;
		hi = hexval(s[i]);
		lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		k->secret[j] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
		i++;
	if (i != len)
		return -1;
	k->id = (uint32_t)id;
	return 0;
}

int dw_fabric_keyring_parse(const char *text, dw_fabric_keyring *out, char *err, size_t errlen)
{
	dw_fabric_keyring ring;
	const char *p = text;
	unsigned lineno = 0;

	memset(&ring, 0, sizeof(ring));
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		size_t i = 0;
		dw_fabric_key k;

		lineno++;
		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
			i++;
		if (i < len && p[i] != '#') {
			if (parse_line(p + i, len - i, &k) < 0) {
				snprintf(err, errlen,
					 "key file line %u: expected \"<id> <64 hex digits>\"",
					 lineno);
				return DW_EBADKEY;
			}
			for (size_t j = 0; j < ring.n; j++) {
				if (ring.keys[j].id == k.id) {
					snprintf(err, errlen,
						 "key file line %u: duplicate key id %u", lineno,
						 k.id);
					return DW_EBADKEY;
				}
			}
			if (ring.n == DW_FABRIC_MAX_KEYS) {
				snprintf(err, errlen, "key file: more than %d keys",
					 DW_FABRIC_MAX_KEYS);
				return DW_EBADKEY;
			}
			ring.keys[ring.n++] = k;
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	if (ring.n == 0) {
		snprintf(err, errlen, "key file holds no key");
		return DW_EBADKEY;
	}
	*out = ring;
	return 0;
}

int dw_fabric_keyring_load(const char *path, dw_fabric_keyring *out, char *err, size_t errlen)
{
	char *buf = NULL;
	ssize_t n;
	size_t len = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
		return rc;
	}
	buf = dw_malloc(KEYFILE_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while ((n = read(fd, buf + len, KEYFILE_MAX + 1 - len)) > 0) {
		len += (size_t)n;
		if (len > KEYFILE_MAX) {
			snprintf(err, errlen, "key file %s is larger than %d bytes", path,
				 KEYFILE_MAX);
			rc = DW_EBADKEY;
			goto out;
		}
	}
	if (n < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot read key file %s", path);
		goto out;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "key file %s is not text", path);
		rc = DW_EBADKEY;
		goto out;
	}
	rc = dw_fabric_keyring_parse(buf, out, err, errlen);
out:
	if (buf) {
		memset(buf, 0, KEYFILE_MAX + 1);
		dw_free(buf);
	}
	close(fd);
	return rc;
}

int dw_fabric_addr_parse(const char *s, dw_fabric_addr *out)
{
	unsigned a[4];
	unsigned long port;
	const char *p = s;
	char *end;

	if (!s)
		return DW_EUSAGE;
	for (int i = 0; i < 4; i++) {
		unsigned long v;

		if (*p < '0' || *p > '9')
			return DW_EUSAGE;
		v = strtoul(p, &end, 10);
		if (v > 255 || end - p > 3)
			return DW_EUSAGE;
		a[i] = (unsigned)v;
		p = end;
		if (*p != (i == 3 ? ':' : '.'))
			return DW_EUSAGE;
		p++;
	}
	if (*p < '0' || *p > '9')
		return DW_EUSAGE;
	port = strtoul(p, &end, 10);
	if (*end != '\0' || port > 65535 || end - p > 5)
		return DW_EUSAGE;
	out->ip = a[0] << 24 | a[1] << 16 | a[2] << 8 | a[3];
	out->port = (uint16_t)port;
	return 0;
}

char *dw_fabric_addr_format(const dw_fabric_addr *a, char *buf, size_t cap)
{
	snprintf(buf, cap, "%u.%u.%u.%u:%u", a->ip >> 24, (a->ip >> 16) & 255, (a->ip >> 8) & 255,
		 a->ip & 255, a->port);
	return buf;
}

static const char *const topo_names[] = { "star", "mesh", "federated" };
static const char *const mode_names[] = { "auto", "recommend" };
static const char *const state_names[] = { "alive", "suspect", "dead" };
static const char *const event_names[] = { "added",
					   "suspect",
					   "removed",
					   "updated",
					   "topology_switch_recommended",
					   "topology_switched",
					   "join_refused",
					   "alive" };
static const char *const drop_names[] = { "malformed", "version", "unknown_key", "auth",
					  "replay",    "self",	  "injected" };

const char *dw_fabric_topology_name(dw_fabric_topology t)
{
	return (unsigned)t < 3 ? topo_names[t] : "unknown";
}

int dw_fabric_topology_parse(const char *s, dw_fabric_topology *out)
{
	for (int i = 0; i < 3; i++) {
		if (s && strcmp(s, topo_names[i]) == 0) {
			*out = (dw_fabric_topology)i;
			return 0;
		}
	}
	return DW_EUSAGE;
}

const char *dw_fabric_mode_name(dw_fabric_mode m)
{
	return (unsigned)m < 2 ? mode_names[m] : "unknown";
}

int dw_fabric_mode_parse(const char *s, dw_fabric_mode *out)
{
	for (int i = 0; i < 2; i++) {
		if (s && strcmp(s, mode_names[i]) == 0) {
			*out = (dw_fabric_mode)i;
			return 0;
		}
	}
	return DW_EUSAGE;
}

const char *dw_fabric_state_name(dw_fabric_state s)
{
	return (unsigned)s < 3 ? state_names[s] : "unknown";
}

const char *dw_fabric_event_name(dw_fabric_event_type t)
{
	return (unsigned)t < sizeof(event_names) / sizeof(event_names[0]) ? event_names[t]
									  : "unknown";
}

const char *dw_fabric_drop_name(dw_fabric_drop d)
{
	return (unsigned)d < DW_FABRIC__DROP_COUNT ? drop_names[d] : "unknown";
}
