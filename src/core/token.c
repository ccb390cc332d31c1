// SPDX-License-Identifier: MIT
/*
 * Continuation tokens: signed, query-bound, optionally expiring page positions.
 *
 * Binary layout before base64url encoding (all integers big-endian; docs/formats/token.md):
 *
 *    0       1       2               6                      14                      30
 *   +-------+-------+---------------+----------------------+-----------------------+
 *   |version| flags |  kid (u32)    | expires (u64, ns)    | query fingerprint (16)|
 *   +-------+-------+---------------+----------------------+-----------------------+
 *    30                                  30+n                   30+n+32
 *   +------------------------------------+----------------------+
 *   | payload (n bytes, by version)      | MAC: HMAC-SHA256 (32)|
 *   +------------------------------------+----------------------+
 *
 *   v1 payload: | offset (u64) | limit (u64) |                   n = 16
 *   v2 payload: | key_len (u16) | key (key_len bytes) |          n = 2 + key_len, key_len <= 1024
 *
 *   flags: bit 0 = expires (then expires != 0, else expires == 0); bits 1..7 zero.
 *   query fingerprint: the first 16 bytes of SHA-256 of the query's canonical bytes.
 *   MAC = HMAC-SHA256(secret[kid], "dwscale-token\0" || bytes 0 .. 30+n).
 *
 * Decoding checks in this order, and each failure is DW_ETOKEN: text length <= 4096, canonical
 * base64url, binary length >= 62 (header + MAC), kid known, MAC equal (CRYPTO_memcmp). Only then
 * are version, flags, expiry, fingerprint and payload read. Before the MAC holds, the only bytes
 * looked at are the kid, which is needed to pick the key. The fixed header is the same for every
 * version so that the kid and the MAC can be found without trusting the version byte.
 *
 * Threads and locking: a keyring is shared by every request thread. keys[] and nkeys are
 * protected by kr->lock (a writer-preferring rwlock): encode and decode hold it shared while they
 * use a key. Rotate, remove and reload first take kr->wlock (a mutex that serialises changes),
 * build the new key set and write the file without blocking readers, then hold kr->lock
 * exclusive only to copy the new keys in. Lock order: wlock, then lock. Holding wlock is enough
 * to read keys[] (only wlock holders change it). The clock and path never change after open.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "core/b64_int.h"
#include "core/fileutil.h"
#include "dwscale/token.h"

#define HDR_LEN	     30
#define MAC_LEN	     32
#define FP_LEN	     16
#define V1_PAYLOAD   16
#define BIN_MAX	     (HDR_LEN + 2 + DW_TOKEN_MAX_KEY + MAC_LEN)
#define FLAG_EXPIRES 0x01
#define SECRET_MIN   32
#define SECRET_MAX   64
/* Keyring files are tiny (16 keys of at most 128 hex digits); refuse anything much larger. */
#define FILE_MAX      (64 * 1024)
#define LINE_MAX_KEYS 512

/* Domain separation: a secret reused elsewhere cannot turn another MAC into a token MAC. */
static const uint8_t mac_label[] = "dwscale-token"; /* includes the NUL */
#define LABEL_LEN sizeof(mac_label)

struct key {
	uint32_t kid;
	size_t len;
	uint8_t secret[SECRET_MAX];
};

struct dw_token_keyring {
	pthread_rwlock_t lock;
	pthread_mutex_t wlock; /* serialises rotate/remove/reload */
	const dw_clock *clock;
	char *path;			       /* NULL: in memory only */
	size_t nkeys;			       /* protected by lock */
	struct key keys[DW_TOKEN_KEYRING_MAX]; /* protected by lock; keys[0] signs */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || len == 0)
		return;
	va_start(ap, fmt);
	/* A reason cut short is still a reason: truncation is acceptable here. */
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
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

/* ---- keyring file ------------------------------------------------------------------------- */

static const struct key *find_key(const dw_token_keyring *kr, uint32_t kid)
{
	for (size_t i = 0; i < kr->nkeys; i++) {
		if (kr->keys[i].kid == kid)
			return &kr->keys[i];
	}
	return NULL;
}

static int new_key(const struct key *have, size_t nhave, struct key *k)
{
	memset(k, 0, sizeof(*k));
	k->len = DW_TOKEN_SECRET_LEN;
	if (RAND_bytes(k->secret, (int)k->len) != 1)
		return -EIO;
	for (int tries = 0; tries < 64; tries++) {
		uint8_t b[4];
		int clash = 0;

		if (RAND_bytes(b, sizeof(b)) != 1)
			return -EIO;
		k->kid = get_u32(b);
		for (size_t i = 0; i < nhave; i++)
			clash |= have[i].kid == k->kid;
		if (k->kid != 0 && !clash)
			return 0;
	}
	return -EIO;
}

/*
 * Parse keyring text into keys[]. Returns the number of keys or DW_ECONFIG with a message naming
 * path:line.
 */
static int parse_keys(const char *path, const char *text, size_t len, struct key *keys, char *err,
		      size_t errlen)
{
	size_t n = 0, pos = 0;
	int line = 0;

	while (pos < len) {
		const char *l = text + pos;
		const char *nl = memchr(l, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - l) : len - pos, i = 0, h;
		struct key k;

		pos += ll + (nl ? 1 : 0);
		line++;
		while (ll > 0 && (l[ll - 1] == '\r' || l[ll - 1] == ' ' || l[ll - 1] == '\t'))
			ll--;
		while (i < ll && (l[i] == ' ' || l[i] == '\t'))
			i++;
		if (i == ll || l[i] == '#')
			continue;
		if (ll > LINE_MAX_KEYS)
			goto bad;
		memset(&k, 0, sizeof(k));
		for (h = 0; h < 8; h++, i++) {
			int v = i < ll ? hexval(l[i]) : -1;

			if (v < 0)
				goto bad;
			k.kid = k.kid << 4 | (uint32_t)v;
		}
		if (i >= ll || (l[i] != ' ' && l[i] != '\t'))
			goto bad;
		while (i < ll && (l[i] == ' ' || l[i] == '\t'))
			i++;
		for (h = 0; i < ll && hexval(l[i]) >= 0; h++, i++) {
			if (h / 2 >= SECRET_MAX)
				goto bad;
			k.secret[h / 2] = (uint8_t)(k.secret[h / 2] << 4 | hexval(l[i]));
		}
		if (i != ll || h % 2 != 0 || h / 2 < SECRET_MIN)
			goto bad;
		k.len = h / 2;
		if (k.kid == 0) {
			msg(err, errlen, "%s:%d: key id 00000000 is reserved", path, line);
			OPENSSL_cleanse(&k, sizeof(k));
			return DW_ECONFIG;
		}
		for (size_t j = 0; j < n; j++) {
			if (keys[j].kid == k.kid) {
				msg(err, errlen, "%s:%d: key id %08x appears twice", path, line,
				    k.kid);
				OPENSSL_cleanse(&k, sizeof(k));
				return DW_ECONFIG;
			}
		}
		if (n == DW_TOKEN_KEYRING_MAX) {
			msg(err, errlen, "%s:%d: more than %d keys", path, line,
			    DW_TOKEN_KEYRING_MAX);
			OPENSSL_cleanse(&k, sizeof(k));
			return DW_ECONFIG;
		}
		keys[n++] = k;
		OPENSSL_cleanse(&k, sizeof(k));
	}
	if (n == 0) {
		msg(err, errlen, "%s: no key in keyring file", path);
		return DW_ECONFIG;
	}
	return (int)n;
bad:
	msg(err, errlen, "%s:%d: expected '<key id: 8 hex digits> <secret: %d to %d hex digits>'",
	    path, line, 2 * SECRET_MIN, 2 * SECRET_MAX);
	return DW_ECONFIG;
}

/* Read and parse the keyring file. -ENOENT passes through so open can create it. */
static int read_keys(const char *path, struct key *keys, char *err, size_t errlen)
{
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, rc;

	/* O_NONBLOCK: a FIFO in place of the file must be refused below, not block open(). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		msg(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		msg(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		msg(err, errlen, "%s: keyring is not a regular file", path);
		rc = DW_ECONFIG;
		goto out;
	}
	if (st.st_mode & 077) {
		msg(err, errlen,
		    "%s: keyring has mode %04o; it holds secrets and must not be accessible to "
		    "group "
		    "or others (chmod 600 it)",
		    path, (unsigned)(st.st_mode & 07777));
		rc = DW_ECONFIG;
		goto out;
	}
	if (st.st_size > FILE_MAX) {
		msg(err, errlen, "%s: keyring file is larger than %d bytes", path, FILE_MAX);
		rc = DW_ECONFIG;
		goto out;
	}
	rc = dw__read_fd_capped(fd, FILE_MAX, &buf, &got);
	if (rc == DW_ETOOBIG) {
		msg(err, errlen, "%s: keyring file is larger than %d bytes", path, FILE_MAX);
		rc = DW_ECONFIG;
		goto out;
	}
	if (rc < 0) {
		msg(err, errlen, "%s: %s", path, dw_strerror(rc));
		goto out;
	}
	rc = parse_keys(path, buf, got, keys, err, errlen);
out:
	if (buf) {
		OPENSSL_cleanse(buf, got);
		dw_free(buf);
	}
	close(fd);
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, rc = 0;

	if (!slash)
		dir = dw_strdup(".");
	else if (slash == path)
		dir = dw_strdup("/");
	else
		dir = dw_strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	dw_free(dir);
	return rc;
}

/*
 * Write keys to path atomically: temp file (mode 0600) + fsync, then link (exclusive: fails with
 * DW_EEXIST if path appeared meanwhile) or rename (replace), then fsync the directory.
 * *published is set once the new file is in place (even if the directory sync then fails).
 */
static int write_keys(const char *path, const struct key *keys, size_t n, int exclusive,
		      int *published, char *err, size_t errlen)
{
	static const char head[] =
		"# dwscale continuation-token keyring. Keep private (mode 0600).\n"
		"# One key per line: <key id, 8 hex digits> <secret, hex>.\n"
		"# The first key signs new tokens; the others still verify older ones.\n";
	char line[8 + 1 + 2 * SECRET_MAX + 2];
	size_t plen = strlen(path);
	char *tmp = NULL;
	int fd = -1, rc;

	tmp = dw_malloc(plen + sizeof(".tmp.XXXXXX"));
	if (!tmp)
		return -ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		msg(err, errlen, "%s: cannot create temporary file: %s", path, strerror(errno));
		dw_free(tmp);
		return rc;
	}
	if (fchmod(fd, 0600) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = write_all(fd, head, sizeof(head) - 1);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		size_t o = (size_t)snprintf(line, sizeof(line), "%08x ", keys[i].kid);

		for (size_t j = 0; j < keys[i].len; j++, o += 2)
			snprintf(line + o, sizeof(line) - o, "%02x", keys[i].secret[j]);
		line[o++] = '\n';
		rc = write_all(fd, line, o);
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (rc < 0)
		goto fail;
	if (fsync(fd) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = close(fd);
	fd = -1;
	if (rc != 0) {
		rc = -errno;
		goto fail;
	}
	if (exclusive) {
		if (link(tmp, path) != 0) {
			rc = errno == EEXIST ? DW_EEXIST : -errno;
			goto fail;
		}
		unlink(tmp);
	} else if (rename(tmp, path) != 0) {
		rc = -errno;
		goto fail;
	}
	dw_free(tmp);
	*published = 1;
	rc = fsync_parent(path);
	if (rc < 0)
		msg(err, errlen, "%s: cannot sync directory: %s", path, strerror(-rc));
	return rc;
fail:
	if (rc != DW_EEXIST)
		msg(err, errlen, "%s: cannot write keyring: %s", path, dw_strerror(rc));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	dw_free(tmp);
	return rc;
}

/* ---- keyring API --------------------------------------------------------------------------- */

static dw_token_keyring *kr_new(const dw_clock *clock)
{
	dw_token_keyring *kr = dw_calloc(1, sizeof(*kr));
	pthread_rwlockattr_t attr;
	int rc;

	if (!kr)
		return NULL;
	/* Readers are every request; a rotation must not wait behind an endless stream of them. */
	if (pthread_rwlockattr_init(&attr) != 0) {
		dw_free(kr);
		return NULL;
	}
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = pthread_rwlock_init(&kr->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc != 0) {
		dw_free(kr);
		return NULL;
	}
	if (pthread_mutex_init(&kr->wlock, NULL) != 0) {
		pthread_rwlock_destroy(&kr->lock);
		dw_free(kr);
		return NULL;
	}
	kr->clock = clock;
	return kr;
}

int dw_token_keyring_open_ex(const char *path, const dw_clock *clock, dw_token_keyring **out,
			     char *err, size_t errlen)
{
	dw_token_keyring *kr = NULL;
	struct key k;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return DW_EUSAGE;
	*out = NULL;
	kr = kr_new(clock);
	if (!kr)
		return -ENOMEM;
	kr->path = dw_strdup(path);
	if (!kr->path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_keys(path, kr->keys, err, errlen);
	if (rc == -ENOENT) {
		/* First run: make a key and publish it; if another process won the race, use its.
		 */
		rc = new_key(NULL, 0, &k);
		if (rc < 0) {
			msg(err, errlen, "%s: no random bytes for a new key", path);
			goto out;
		}
		int published = 0;

		rc = write_keys(path, &k, 1, 1, &published, err, errlen);
		OPENSSL_cleanse(&k, sizeof(k));
		if (rc == 0 || rc == DW_EEXIST)
			rc = read_keys(path, kr->keys, err, errlen);
	}
	if (rc < 0)
		goto out;
	kr->nkeys = (size_t)rc;
	rc = 0;
	*out = kr;
	kr = NULL;
out:
	dw_token_keyring_close(kr);
	return rc;
}

int dw_token_keyring_open(const char *path, const dw_clock *clock, dw_token_keyring **out)
{
	char err[512], q[600];
	int rc = dw_token_keyring_open_ex(path, clock, out, err, sizeof(err));

	if (rc < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", dw_strerror(rc));
		dw_log(DW_LOG_ERROR, "token", "keyring_open_failed", "err=%s msg=%s",
		       dw_err_name(rc), dw_log_quote(err, q, sizeof(q)));
	}
	return rc;
}

int dw_token_keyring_open_mem(const void *secret, size_t secret_len, uint32_t kid,
			      const dw_clock *clock, dw_token_keyring **out)
{
	dw_token_keyring *kr;

	if (!out)
		return DW_EUSAGE;
	*out = NULL;
	if (!secret || secret_len < SECRET_MIN || secret_len > SECRET_MAX || kid == 0)
		return DW_EUSAGE;
	kr = kr_new(clock);
	if (!kr)
		return -ENOMEM;
	kr->keys[0].kid = kid;
	kr->keys[0].len = secret_len;
	memcpy(kr->keys[0].secret, secret, secret_len);
	kr->nkeys = 1;
	*out = kr;
	return 0;
}

void dw_token_keyring_close(dw_token_keyring *kr)
{
	if (!kr)
		return;
	OPENSSL_cleanse(kr->keys, sizeof(kr->keys));
	pthread_mutex_destroy(&kr->wlock);
	pthread_rwlock_destroy(&kr->lock);
	dw_free(kr->path);
	dw_free(kr);
}

/*
 * Make keys[0..n) the keyring's content, persisting first. Caller holds wlock, not lock. If the
 * file could not be replaced nothing changes; if it was replaced but its directory could not be
 * synced, memory still follows the file (so this process agrees with the next reader) and the
 * error is returned.
 */
static int install_locked(dw_token_keyring *kr, const struct key *keys, size_t n)
{
	int rc = 0, published = 1;

	if (kr->path) {
		char err[512], q[600];

		published = 0;
		rc = write_keys(kr->path, keys, n, 0, &published, err, sizeof(err));
		if (rc < 0)
			dw_log(DW_LOG_ERROR, "token", "keyring_write_failed", "err=%s msg=%s",
			       dw_err_name(rc), dw_log_quote(err, q, sizeof(q)));
		if (!published)
			return rc;
	}
	pthread_rwlock_wrlock(&kr->lock);
	OPENSSL_cleanse(kr->keys, sizeof(kr->keys));
	memcpy(kr->keys, keys, n * sizeof(*keys));
	kr->nkeys = n;
	pthread_rwlock_unlock(&kr->lock);
	return rc;
}

int dw_token_keyring_rotate(dw_token_keyring *kr)
{
	struct key keys[DW_TOKEN_KEYRING_MAX];
	size_t n;
	int rc;

	if (!kr)
		return DW_EUSAGE;
	pthread_mutex_lock(&kr->wlock);
	rc = new_key(kr->keys, kr->nkeys, &keys[0]);
	if (rc < 0)
		goto out;
	n = kr->nkeys < DW_TOKEN_KEYRING_MAX ? kr->nkeys : DW_TOKEN_KEYRING_MAX - 1;
	memcpy(&keys[1], kr->keys, n * sizeof(*keys));
	rc = install_locked(kr, keys, n + 1);
	if (rc == 0)
		dw_log(DW_LOG_INFO, "token", "keyring_rotated", "kid=%08x keys=%zu", keys[0].kid,
		       n + 1);
out:
	pthread_mutex_unlock(&kr->wlock);
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

int dw_token_keyring_remove(dw_token_keyring *kr, uint32_t kid)
{
	struct key keys[DW_TOKEN_KEYRING_MAX];
	size_t n = 0;
	int rc = DW_ENOTFOUND;

	if (!kr)
		return DW_EUSAGE;
	pthread_mutex_lock(&kr->wlock);
	if (kr->keys[0].kid == kid) {
		rc = DW_EUSAGE;
		goto out;
	}
	for (size_t i = 0; i < kr->nkeys; i++) {
		if (kr->keys[i].kid == kid)
			rc = 0;
		else
			keys[n++] = kr->keys[i];
	}
	if (rc == 0)
		rc = install_locked(kr, keys, n);
out:
	pthread_mutex_unlock(&kr->wlock);
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

int dw_token_keyring_reload(dw_token_keyring *kr)
{
	struct key keys[DW_TOKEN_KEYRING_MAX];
	char err[512], q[600];
	int rc;

	if (!kr)
		return DW_EUSAGE;
	if (!kr->path)
		return 0;
	/* Under wlock, so a rotation cannot land between the read and the swap. */
	pthread_mutex_lock(&kr->wlock);
	rc = read_keys(kr->path, keys, err, sizeof(err));
	if (rc < 0) {
		dw_log(DW_LOG_ERROR, "token", "keyring_reload_failed", "err=%s msg=%s",
		       dw_err_name(rc), dw_log_quote(err, q, sizeof(q)));
		goto out;
	}
	pthread_rwlock_wrlock(&kr->lock);
	OPENSSL_cleanse(kr->keys, sizeof(kr->keys));
	memcpy(kr->keys, keys, (size_t)rc * sizeof(*keys));
	kr->nkeys = (size_t)rc;
	pthread_rwlock_unlock(&kr->lock);
	rc = 0;
out:
	pthread_mutex_unlock(&kr->wlock);
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

uint32_t dw_token_keyring_current_kid(dw_token_keyring *kr)
{
	uint32_t kid;

	if (!kr)
		return 0;
	pthread_rwlock_rdlock(&kr->lock);
	kid = kr->keys[0].kid;
	pthread_rwlock_unlock(&kr->lock);
	return kid;
}

size_t dw_token_keyring_count(dw_token_keyring *kr)
{
	size_t n;

	if (!kr)
		return 0;
	pthread_rwlock_rdlock(&kr->lock);
	n = kr->nkeys;
	pthread_rwlock_unlock(&kr->lock);
	return n;
}

/* ---- encode / decode ----------------------------------------------------------------------- */

static void fingerprint(const void *query, size_t qlen, uint8_t fp[FP_LEN])
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	static const uint8_t none = 0;

	SHA256(qlen ? query : &none, qlen, d);
	memcpy(fp, d, FP_LEN);
}

/* MAC over buf[0..LABEL_LEN + len), where buf starts with the label. */
static int mac(const struct key *k, const uint8_t *buf, size_t len, uint8_t out[MAC_LEN])
{
	unsigned int ml = 0;

	if (!HMAC(EVP_sha256(), k->secret, (int)k->len, buf, LABEL_LEN + len, out, &ml) ||
	    ml != MAC_LEN)
		return -EIO;
	return 0;
}

static int encode(dw_token_keyring *kr, int version, const void *query, size_t qlen,
		  const uint8_t *payload, size_t plen, uint64_t ttl_ms, char **out)
{
	uint8_t buf[LABEL_LEN + BIN_MAX];
	uint8_t *t = buf + LABEL_LEN;
	uint64_t expires = 0;
	size_t n = HDR_LEN + plen;
	char *s;
	int rc;

	if (ttl_ms) {
		uint64_t now = dw_clock_wall(kr->clock);

		if (ttl_ms > (UINT64_MAX - now) / DW_NS_PER_MS)
			return DW_ELIMIT;
		expires = now + ttl_ms * DW_NS_PER_MS;
	}
	memcpy(buf, mac_label, LABEL_LEN);
	t[0] = (uint8_t)version;
	t[1] = expires ? FLAG_EXPIRES : 0;
	put_u64(t + 6, expires);
	fingerprint(query, qlen, t + 14);
	memcpy(t + HDR_LEN, payload, plen);

	pthread_rwlock_rdlock(&kr->lock);
	put_u32(t + 2, kr->keys[0].kid);
	rc = mac(&kr->keys[0], buf, n, t + n);
	pthread_rwlock_unlock(&kr->lock);
	if (rc < 0)
		return rc;
	n += MAC_LEN;

	s = dw_malloc(dw__b64url_encoded_len(n) + 1);
	if (!s)
		return -ENOMEM;
	dw__b64url_encode(t, n, s);
	*out = s;
	return 0;
}

int dw_token_encode_v1(dw_token_keyring *kr, const void *query, size_t qlen, uint64_t offset,
		       uint64_t limit, uint64_t ttl_ms, char **out)
{
	uint8_t p[V1_PAYLOAD];

	if (!kr || !out || (!query && qlen))
		return DW_EUSAGE;
	*out = NULL;
	put_u64(p, offset);
	put_u64(p + 8, limit);
	return encode(kr, 1, query, qlen, p, sizeof(p), ttl_ms, out);
}

int dw_token_encode_v2(dw_token_keyring *kr, const void *query, size_t qlen, const void *last_key,
		       size_t klen, uint64_t ttl_ms, char **out)
{
	uint8_t p[2 + DW_TOKEN_MAX_KEY];

	if (!kr || !out || (!query && qlen) || (!last_key && klen))
		return DW_EUSAGE;
	*out = NULL;
	if (klen > DW_TOKEN_MAX_KEY)
		return DW_ETOOBIG;
	put_u16(p, (uint16_t)klen);
	if (klen)
		memcpy(p + 2, last_key, klen);
	return encode(kr, 2, query, qlen, p, 2 + klen, ttl_ms, out);
}

int dw_token_decode(dw_token_keyring *kr, const char *tok, const void *query, size_t qlen,
		    dw_token *out, char *why, size_t whylen)
{
	uint8_t buf[LABEL_LEN + BIN_MAX];
	uint8_t *t = buf + LABEL_LEN;
	uint8_t want[MAC_LEN], fp[FP_LEN];
	const struct key *k;
	size_t tlen, n, body;
	uint64_t expires;
	long dl;
	int rc;

	if (why && whylen)
		why[0] = '\0';
	if (!kr || !out || (!query && qlen))
		return DW_EUSAGE;
	memset(out, 0, offsetof(dw_token, last_key));
	if (!tok || !*tok) {
		msg(why, whylen, "token is empty");
		return DW_ETOKEN;
	}
	tlen = strnlen(tok, DW_TOKEN_MAX_LEN + 1);
	if (tlen > DW_TOKEN_MAX_LEN) {
		msg(why, whylen, "token is longer than %d characters", DW_TOKEN_MAX_LEN);
		return DW_ETOKEN;
	}
	if (tlen > dw__b64url_encoded_len(BIN_MAX)) {
		msg(why, whylen, "token is too long");
		return DW_ETOKEN;
	}
	dl = dw__b64url_decode(tok, tlen, t, BIN_MAX);
	if (dl < 0) {
		msg(why, whylen, "token is not valid base64url");
		return DW_ETOKEN;
	}
	n = (size_t)dl;
	if (n < HDR_LEN + MAC_LEN) {
		msg(why, whylen, "token is truncated");
		return DW_ETOKEN;
	}
	body = n - MAC_LEN;

	/* Only the kid is read before the MAC is verified. */
	memcpy(buf, mac_label, LABEL_LEN);
	pthread_rwlock_rdlock(&kr->lock);
	k = find_key(kr, get_u32(t + 2));
	rc = k ? mac(k, buf, body, want) : DW_ETOKEN;
	pthread_rwlock_unlock(&kr->lock);
	if (rc == DW_ETOKEN) {
		msg(why, whylen, "token was signed by an unknown key");
		return DW_ETOKEN;
	}
	if (rc < 0) {
		msg(why, whylen, "token signature could not be computed");
		return DW_ETOKEN;
	}
	if (CRYPTO_memcmp(want, t + body, MAC_LEN) != 0) {
		msg(why, whylen, "token signature does not match");
		return DW_ETOKEN;
	}

	/* Authentic from here on: the bytes are ours, but still check them like any input. */
	if (t[0] != 1 && t[0] != 2) {
		msg(why, whylen, "unsupported token version %u", t[0]);
		return DW_ETOKEN;
	}
	expires = get_u64(t + 6);
	if ((t[1] & ~FLAG_EXPIRES) != 0 || !(t[1] & FLAG_EXPIRES) != !expires) {
		msg(why, whylen, "token has unknown flags");
		return DW_ETOKEN;
	}
	if (expires && dw_clock_wall(kr->clock) >= expires) {
		msg(why, whylen, "token expired");
		return DW_ETOKEN;
	}
	fingerprint(query, qlen, fp);
	if (CRYPTO_memcmp(fp, t + 14, FP_LEN) != 0) {
		msg(why, whylen, "token belongs to a different query");
		return DW_ETOKEN;
	}
	if (t[0] == 1) {
		if (body != HDR_LEN + V1_PAYLOAD)
			goto malformed;
		out->offset = get_u64(t + HDR_LEN);
		out->limit = get_u64(t + HDR_LEN + 8);
	} else {
		size_t klen;

		if (body < HDR_LEN + 2)
			goto malformed;
		klen = get_u16(t + HDR_LEN);
		if (klen > DW_TOKEN_MAX_KEY || body != HDR_LEN + 2 + klen)
			goto malformed;
		memcpy(out->last_key, t + HDR_LEN + 2, klen);
		out->last_key_len = klen;
	}
	out->version = t[0];
	out->kid = get_u32(t + 2);
	out->expires_wall_ns = expires;
	return 0;
malformed:
	msg(why, whylen, "token payload is malformed");
	return DW_ETOKEN;
}
