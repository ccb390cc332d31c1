// SPDX-License-Identifier: MIT
/*
 * Continuation tokens: base64url edge cases, v1/v2 round trips, and every way a token can be
 * wrong (each bit flipped, each truncation, appended bytes, foreign key, other query, expiry)
 * giving DW_ETOKEN with a reason; the keyring file (created 0600, rotation, removal, reload, bad
 * mode, bad content); allocation failures; concurrent use during rotation.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/b64_int.h"
#include "dwscale/token.h"
#include "../test_tmpdir.h"

static const uint8_t secret_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t secret_b[32] = "fedcba9876543210fedcba9876543210";
static const char query[] = "list prefix=dw://a/ order=key asc";
#define QLEN  (sizeof(query) - 1)
#define WALL0 (1700000000ULL * DW_NS_PER_SEC)

/* ---- temp dir ---- */

static char tmpdir[512];

static void make_tmpdir(void)
{
	assert_int_equal(tt_mkdtemp("token", tmpdir, sizeof(tmpdir)), 0);
}

static void path_in(char *buf, size_t len, const char *name)
{
	assert_true((size_t)snprintf(buf, len, "%s/%s", tmpdir, name) < len);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void remove_tmpdir(void)
{
	assert_int_equal(tt_rm_rf(tmpdir), 0); /* it holds only files this test made */
}

static dw_token_keyring *mem_ring(const uint8_t *secret, uint32_t kid, const dw_clock *clock)
{
	dw_token_keyring *kr = NULL;

	assert_int_equal(dw_token_keyring_open_mem(secret, 32, kid, clock, &kr), 0);
	return kr;
}

/* ---- base64url ---- */

static void test_b64_vectors(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const enc[] = {
		"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"
	};
	static const uint8_t urlsafe[] = { 0xfb, 0xff, 0xbf };
	char out[80]; /* 48 bytes encode to 64 characters + NUL */
	uint8_t bin[64];

	(void)state;
	for (size_t i = 0; i < 7; i++) {
		size_t n = strlen(plain[i]);

		assert_int_equal(dw__b64url_encoded_len(n), strlen(enc[i]));
		dw__b64url_encode((const uint8_t *)plain[i], n, out);
		assert_string_equal(out, enc[i]);
		assert_int_equal(dw__b64url_decode(enc[i], strlen(enc[i]), bin, sizeof(bin)), n);
		assert_memory_equal(bin, plain[i], n);
	}
	dw__b64url_encode(urlsafe, 3, out);
	assert_string_equal(out, "-_-_");
	/* Every byte string of every length 0..48 round-trips. */
	for (size_t n = 0; n <= 48; n++) {
		uint8_t src[48];

		for (size_t i = 0; i < n; i++)
			src[i] = (uint8_t)(i * 37 + n * 11);
		dw__b64url_encode(src, n, out);
		assert_int_equal(dw__b64url_decode(out, strlen(out), bin, sizeof(bin)), n);
		assert_memory_equal(bin, src, n);
	}
}

static void test_b64_rejects(void **state)
{
	static const char *const bad[] = {
		"Z",	 /* 1 char tail cannot occur */
		"Zh",	 /* unused bits set */
		"Zm9",	 /* unused bits set */
		"Zg==",	 /* padding */
		"Zm9v=", /* padding */
		"Zm 9v", /* space */
		"Zm+v",	 /* standard alphabet */
		"Zm/v",	 /* standard alphabet */
		"Zm\x80v", "Zm9vZ",
	};
	uint8_t bin[16];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dw__b64url_decode(bad[i], strlen(bad[i]), bin, sizeof(bin)), -1);
	/* Does not write past the capacity. */
	assert_int_equal(dw__b64url_decode("Zm9vYmFy", 8, bin, 5), -1);
	assert_int_equal(dw__b64url_decode("Zm9vYmFy", 8, bin, 6), 6);
}

/* ---- round trips ---- */

static void test_roundtrip_v1(void **state)
{
	dw_fake_clock fc;
	dw_token_keyring *kr;
	dw_token t;
	char *tok = NULL, why[DW_TOKEN_WHY_LEN];

	(void)state;
	dw_fake_clock_init(&fc, 0, WALL0);
	kr = mem_ring(secret_a, 0x11223344, &fc.clock);
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 123456789012ULL, 1000, 0, &tok), 0);
	assert_non_null(tok);
	assert_true(
		strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
		strlen(tok));
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	assert_int_equal(t.version, 1);
	assert_int_equal(t.kid, 0x11223344);
	assert_int_equal(t.offset, 123456789012ULL);
	assert_int_equal(t.limit, 1000);
	assert_int_equal(t.expires_wall_ns, 0);
	dw_free(tok);

	/* Extreme values survive. */
	assert_int_equal(dw_token_encode_v1(kr, NULL, 0, UINT64_MAX, UINT64_MAX, 0, &tok), 0);
	assert_int_equal(dw_token_decode(kr, tok, NULL, 0, &t, NULL, 0), 0);
	assert_true(t.offset == UINT64_MAX && t.limit == UINT64_MAX);
	dw_free(tok);
	dw_token_keyring_close(kr);
}

static void test_roundtrip_v2(void **state)
{
	dw_token_keyring *kr = mem_ring(secret_a, 7, NULL);
	uint8_t key[DW_TOKEN_MAX_KEY + 1];
	dw_token t;
	char *tok = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 131 + 7); /* binary: includes 0x00 and 0xff */

	/* Empty key. */
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, NULL, 0, 0, &tok), 0);
	memset(&t, 0xaa, sizeof(t));
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.version, 2);
	assert_int_equal(t.last_key_len, 0);
	assert_int_equal(t.offset, 0);
	dw_free(tok);

	/* Full-size binary key. */
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, key, DW_TOKEN_MAX_KEY, 0, &tok), 0);
	assert_true(strlen(tok) <= DW_TOKEN_MAX_LEN);
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.version, 2);
	assert_int_equal(t.last_key_len, DW_TOKEN_MAX_KEY);
	assert_memory_equal(t.last_key, key, DW_TOKEN_MAX_KEY);
	dw_free(tok);

	/* One byte more is refused at encode time. */
	tok = (char *)1;
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, key, DW_TOKEN_MAX_KEY + 1, 0, &tok),
			 DW_ETOOBIG);
	assert_null(tok);

	/* Misuse. */
	assert_int_equal(dw_token_encode_v2(NULL, query, QLEN, key, 1, 0, &tok), DW_EUSAGE);
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, NULL, 3, 0, &tok), DW_EUSAGE);
	assert_int_equal(dw_token_decode(NULL, "AAAA", NULL, 0, &t, NULL, 0), DW_EUSAGE);
	dw_token_keyring_close(kr);
}

/* ---- tampering ---- */

static void expect_reject(dw_token_keyring *kr, const char *tok, const char *why_part)
{
	char why[DW_TOKEN_WHY_LEN];
	dw_token t;

	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, why, sizeof(why)), DW_ETOKEN);
	assert_true(why[0] != '\0');
	if (why_part && !strstr(why, why_part))
		fail_msg("reason '%s' lacks '%s'", why, why_part);
}

static void flip_everything(dw_token_keyring *kr, const char *tok)
{
	size_t len = strlen(tok);
	char *c = dw_strdup(tok);
	uint8_t bin[2000], bin2[2000];
	char enc[3000];
	long n;

	assert_non_null(c);
	/* Every bit of every character of the text. */
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b++) {
			c[i] = (char)(tok[i] ^ (1 << b));
			expect_reject(kr, c, NULL);
			c[i] = tok[i];
		}
	}
	/* Every bit of every byte of the binary form, re-encoded canonically. */
	n = dw__b64url_decode(tok, len, bin, sizeof(bin));
	assert_true(n > 0);
	for (long i = 0; i < n; i++) {
		for (int b = 0; b < 8; b++) {
			memcpy(bin2, bin, (size_t)n);
			bin2[i] ^= (uint8_t)(1 << b);
			dw__b64url_encode(bin2, (size_t)n, enc);
			expect_reject(kr, enc, NULL);
		}
	}
	/* Every truncation, of the text and of the binary. */
	for (size_t l = 0; l < len; l++) {
		c[l] = '\0';
		expect_reject(kr, c, NULL);
		c[l] = tok[l];
	}
	for (long l = 0; l < n; l++) {
		dw__b64url_encode(bin, (size_t)l, enc);
		expect_reject(kr, enc, l == 0 ? "empty" : l < 62 ? "truncated" : "signature");
	}
	/* Appended bytes. */
	for (int extra = 1; extra <= 4; extra++) {
		memcpy(bin2, bin, (size_t)n);
		memset(bin2 + n, 0, (size_t)extra);
		dw__b64url_encode(bin2, (size_t)n + (size_t)extra, enc);
		expect_reject(kr, enc, "signature");
	}
	snprintf(enc, sizeof(enc), "%sA", tok);
	expect_reject(kr, enc, NULL);
	snprintf(enc, sizeof(enc), "%sAAAA", tok);
	expect_reject(kr, enc, NULL);
	/* Characters outside the alphabet. */
	static const char bad[] = { '+', '/', '=', ' ', '.', '\n', (char)0x80, (char)0xff };
	for (size_t k = 0; k < sizeof(bad); k++) {
		c[len / 2] = bad[k];
		expect_reject(kr, c, "base64url");
		c[len / 2] = tok[len / 2];
	}
	/* The untouched token still decodes: the rejections above were about the changes. */
	dw_token t;
	assert_int_equal(dw_token_decode(kr, c, query, QLEN, &t, NULL, 0), 0);
	dw_free(c);
}

static void test_tampering(void **state)
{
	dw_fake_clock fc;
	dw_token_keyring *kr;
	uint8_t key[40];
	char *t1 = NULL, *t2 = NULL;

	(void)state;
	dw_fake_clock_init(&fc, 0, WALL0);
	kr = mem_ring(secret_a, 0xabcdef01, &fc.clock);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 500, 100, 60000, &t1), 0);
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, key, sizeof(key), 0, &t2), 0);
	flip_everything(kr, t1);
	flip_everything(kr, t2);
	dw_free(t1);
	dw_free(t2);
	dw_token_keyring_close(kr);
}

static void test_length_cap(void **state)
{
	dw_token_keyring *kr = mem_ring(secret_a, 1, NULL);
	char *big = dw_malloc(DW_TOKEN_MAX_LEN + 2);

	(void)state;
	assert_non_null(big);
	memset(big, 'A', DW_TOKEN_MAX_LEN + 1);
	big[DW_TOKEN_MAX_LEN + 1] = '\0';
	expect_reject(kr, big, "longer than 4096");
	big[DW_TOKEN_MAX_LEN] = '\0';
	expect_reject(kr, big, "too long");
	expect_reject(kr, "", "empty");
	expect_reject(kr, NULL, "empty");
	dw_free(big);
	dw_token_keyring_close(kr);
}

/* ---- binding: key, query, time ---- */

static void test_foreign_key_and_query(void **state)
{
	dw_token_keyring *a = mem_ring(secret_a, 5, NULL);
	dw_token_keyring *b_same_kid = mem_ring(secret_b, 5, NULL);
	dw_token_keyring *b_other_kid = mem_ring(secret_b, 6, NULL);
	char *tok = NULL, why[DW_TOKEN_WHY_LEN];
	dw_token t;

	(void)state;
	assert_int_equal(dw_token_encode_v1(a, query, QLEN, 10, 10, 0, &tok), 0);
	expect_reject(b_same_kid, tok, "signature does not match");
	expect_reject(b_other_kid, tok, "unknown key");
	/* Another query, even one byte shorter or empty. */
	assert_int_equal(dw_token_decode(a, tok, query, QLEN - 1, &t, why, sizeof(why)), DW_ETOKEN);
	assert_string_equal(why, "token belongs to a different query");
	assert_int_equal(dw_token_decode(a, tok, NULL, 0, &t, why, sizeof(why)), DW_ETOKEN);
	assert_int_equal(dw_token_decode(a, tok, "list prefix=dw://b/", 19, &t, NULL, 0),
			 DW_ETOKEN);
	assert_int_equal(dw_token_decode(a, tok, query, QLEN, &t, NULL, 0), 0);
	/* A short reason buffer is cut, not overrun. */
	char small[6];
	assert_int_equal(dw_token_decode(a, tok, NULL, 0, &t, small, sizeof(small)), DW_ETOKEN);
	assert_string_equal(small, "token");
	dw_free(tok);
	dw_token_keyring_close(a);
	dw_token_keyring_close(b_same_kid);
	dw_token_keyring_close(b_other_kid);
}

static void test_expiry(void **state)
{
	dw_fake_clock fc;
	dw_token_keyring *kr;
	char *tok = NULL, *never = NULL, *dflt = NULL, why[DW_TOKEN_WHY_LEN];
	dw_token t;

	(void)state;
	dw_fake_clock_init(&fc, 0, WALL0);
	kr = mem_ring(secret_a, 9, &fc.clock);
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 1, 2, 1000, &tok), 0);
	assert_int_equal(dw_token_encode_v2(kr, query, QLEN, "k", 1, 0, &never), 0);
	assert_int_equal(
		dw_token_encode_v2(kr, query, QLEN, "k", 1, DW_TOKEN_TTL_DEFAULT_MS, &dflt), 0);
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.expires_wall_ns, WALL0 + 1000 * DW_NS_PER_MS);
	assert_int_equal(dw_token_decode(kr, dflt, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.expires_wall_ns, WALL0 + 72 * 3600 * DW_NS_PER_SEC);

	/* One nanosecond before expiry: fine. At expiry: refused. */
	dw_fake_clock_advance(&fc, 1000 * DW_NS_PER_MS - 1);
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, why, sizeof(why)), 0);
	dw_fake_clock_advance(&fc, 1);
	assert_int_equal(dw_token_decode(kr, tok, query, QLEN, &t, why, sizeof(why)), DW_ETOKEN);
	assert_string_equal(why, "token expired");

	/* 72 h later the default-lifetime token is gone; the never-expiring one lives on. */
	dw_fake_clock_advance(&fc, 72 * 3600 * DW_NS_PER_SEC);
	assert_int_equal(dw_token_decode(kr, dflt, query, QLEN, &t, why, sizeof(why)), DW_ETOKEN);
	dw_fake_clock_advance(&fc, 100ULL * 365 * 24 * 3600 * DW_NS_PER_SEC);
	assert_int_equal(dw_token_decode(kr, never, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.expires_wall_ns, 0);

	/* A lifetime that overflows the clock is refused, not wrapped. */
	char *x = NULL;
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 0, 0, UINT64_MAX, &x), DW_ELIMIT);
	assert_null(x);
	dw_free(tok);
	dw_free(never);
	dw_free(dflt);
	dw_token_keyring_close(kr);
}

/* ---- keyring file ---- */

static void test_keyring_file_and_rotation(void **state)
{
	char path[600];
	dw_token_keyring *kr = NULL, *kr2 = NULL;
	char *old_tok = NULL, *new_tok = NULL, err[512];
	uint32_t kid1, kid2;
	struct stat st;
	dw_token t;

	(void)state;
	make_tmpdir();
	path_in(path, sizeof(path), "token.keys");
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(dw_token_keyring_count(kr), 1);
	kid1 = dw_token_keyring_current_kid(kr);
	assert_int_not_equal(kid1, 0);
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 1, 1, 0, &old_tok), 0);

	/* A second open reads the same key: tokens survive a restart. */
	assert_int_equal(dw_token_keyring_open(path, NULL, &kr2), 0);
	assert_int_equal(dw_token_keyring_current_kid(kr2), kid1);
	assert_int_equal(dw_token_decode(kr2, old_tok, query, QLEN, &t, NULL, 0), 0);
	dw_token_keyring_close(kr2);
	kr2 = NULL;

	/* Rotate: new kid signs, old tokens still verify, file updated and still 0600. */
	assert_int_equal(dw_token_keyring_rotate(kr), 0);
	kid2 = dw_token_keyring_current_kid(kr);
	assert_int_not_equal(kid2, kid1);
	assert_int_equal(dw_token_keyring_count(kr), 2);
	assert_int_equal(dw_token_decode(kr, old_tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.kid, kid1);
	assert_int_equal(dw_token_encode_v1(kr, query, QLEN, 2, 2, 0, &new_tok), 0);
	assert_int_equal(dw_token_decode(kr, new_tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(t.kid, kid2);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_int_equal(dw_token_keyring_open(path, NULL, &kr2), 0);
	assert_int_equal(dw_token_keyring_current_kid(kr2), kid2);
	assert_int_equal(dw_token_decode(kr2, old_tok, query, QLEN, &t, NULL, 0), 0);

	/* Remove the old key: its tokens stop verifying, here and after a reload elsewhere. */
	assert_int_equal(dw_token_keyring_remove(kr, kid2), DW_EUSAGE);
	assert_int_equal(dw_token_keyring_remove(kr, 0x12345678), DW_ENOTFOUND);
	assert_int_equal(dw_token_keyring_remove(kr, kid1), 0);
	assert_int_equal(dw_token_keyring_count(kr), 1);
	expect_reject(kr, old_tok, "unknown key");
	assert_int_equal(dw_token_decode(kr, new_tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(dw_token_decode(kr2, old_tok, query, QLEN, &t, NULL, 0), 0);
	assert_int_equal(dw_token_keyring_reload(kr2), 0);
	expect_reject(kr2, old_tok, "unknown key");
	assert_int_equal(dw_token_decode(kr2, new_tok, query, QLEN, &t, NULL, 0), 0);

	/* Rotation past the cap forgets the oldest keys. */
	for (int i = 0; i < DW_TOKEN_KEYRING_MAX + 3; i++)
		assert_int_equal(dw_token_keyring_rotate(kr), 0);
	assert_int_equal(dw_token_keyring_count(kr), DW_TOKEN_KEYRING_MAX);
	expect_reject(kr, new_tok, "unknown key");
	dw_token_keyring_close(kr2);
	kr2 = NULL;
	assert_int_equal(dw_token_keyring_open(path, NULL, &kr2), 0);
	assert_int_equal(dw_token_keyring_count(kr2), DW_TOKEN_KEYRING_MAX);
	assert_int_equal(dw_token_keyring_current_kid(kr2), dw_token_keyring_current_kid(kr));

	/* A rotation that cannot write the file changes nothing in memory either. */
	{
		char sub[600], subpath[700];
		dw_token_keyring *gone = NULL;
		char *tk = NULL;

		path_in(sub, sizeof(sub), "sub");
		assert_int_equal(mkdir(sub, 0700), 0);
		snprintf(subpath, sizeof(subpath), "%s/k", sub);
		assert_int_equal(dw_token_keyring_open(subpath, NULL, &gone), 0);
		uint32_t before = dw_token_keyring_current_kid(gone);
		assert_int_equal(dw_token_encode_v1(gone, query, QLEN, 1, 1, 0, &tk), 0);
		assert_int_equal(unlink(subpath), 0);
		assert_int_equal(rmdir(sub), 0);
		assert_int_equal(dw_token_keyring_rotate(gone), -ENOENT);
		assert_int_equal(dw_token_keyring_current_kid(gone), before);
		assert_int_equal(dw_token_keyring_count(gone), 1);
		assert_int_equal(dw_token_decode(gone, tk, query, QLEN, &t, NULL, 0), 0);
		dw_free(tk);
		dw_token_keyring_close(gone);
	}

	/* No temporary files left behind. */
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", tmpdir);
	assert_int_equal(system(cmd), 0);

	dw_free(old_tok);
	dw_free(new_tok);
	dw_token_keyring_close(kr);
	dw_token_keyring_close(kr2);
	remove_tmpdir();
}

static void expect_bad_file(const char *text, mode_t mode, const char *err_part)
{
	char path[600], err[512];
	dw_token_keyring *kr = (dw_token_keyring *)1;

	path_in(path, sizeof(path), "bad.keys");
	write_file(path, text, mode);
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), DW_ECONFIG);
	assert_null(kr);
	if (!strstr(err, err_part))
		fail_msg("error '%s' lacks '%s'", err, err_part);
	if (!strstr(err, path))
		fail_msg("error '%s' does not name the file", err);
	/* Nothing was rewritten: bad input loses nothing. */
	FILE *f = fopen(path, "r");
	char back[1024] = "";
	assert_non_null(f);
	size_t n = fread(back, 1, sizeof(back) - 1, f);
	fclose(f);
	back[n] = '\0';
	assert_string_equal(back, text);
	unlink(path);
}

static void test_keyring_bad_files(void **state)
{
	static const char good[] =
		"0000abcd 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
	char path[600], err[512];
	dw_token_keyring *kr = NULL;

	(void)state;
	make_tmpdir();
	expect_bad_file(good, 0640, "chmod 600");
	expect_bad_file(good, 0604, "mode 0604");
	expect_bad_file("# only a comment\n\n", 0600, "no key");
	expect_bad_file("0000abcd 0011\n", 0600, ":1: expected");
	expect_bad_file(
		"# c\nzzzzzzzz 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
		0600, ":2: expected");
	expect_bad_file(
		"00000000 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600,
		":1: key id 00000000");
	expect_bad_file(
		"0000abcd 00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n", 0600,
		":1: expected");
	expect_bad_file(
		"0000abcd 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff x\n",
		0600, ":1: expected");
	char twice[256];
	snprintf(twice, sizeof(twice), "%s%s", good, good);
	expect_bad_file(twice, 0600, ":2: key id 0000abcd appears twice");

	/* The good line itself, with comments, CRLF and indentation, is accepted. */
	path_in(path, sizeof(path), "ok.keys");
	write_file(path,
		   "# header\r\n  0000abcd 00112233445566778899aabbccddeeff00112233445566778899aabb"
		   "ccddeeff\r\n\r\n",
		   0600);
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), 0);
	assert_int_equal(dw_token_keyring_current_kid(kr), 0xabcd);
	dw_token_keyring_close(kr);

	/* A directory in place of the file. */
	path_in(path, sizeof(path), "dir.keys");
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), DW_ECONFIG);
	assert_non_null(strstr(err, "not a regular file"));

	/* A FIFO in place of the file is refused at once, not waited on. */
	path_in(path, sizeof(path), "fifo.keys");
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), DW_ECONFIG);
	assert_non_null(strstr(err, "not a regular file"));

	/* A missing directory is not created behind the caller's back. */
	path_in(path, sizeof(path), "nodir/token.keys");
	assert_int_equal(dw_token_keyring_open_ex(path, NULL, &kr, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nodir"));
	assert_int_equal(dw_token_keyring_open(path, NULL, &kr), -ENOENT);
	remove_tmpdir();
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state)
{
	char path[600];
	dw_token_keyring *kr = mem_ring(secret_a, 3, NULL), *fk;
	char *tok;
	int rc;

	(void)state;
	for (unsigned long nth = 1;; nth++) {
		tok = NULL;
		dw_alloc_fail_nth(nth);
		rc = dw_token_encode_v2(kr, query, QLEN, "key", 3, 0, &tok);
		dw_alloc_fail_nth(0);
		if (rc == 0) {
			dw_free(tok);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(tok);
	}
	make_tmpdir();
	path_in(path, sizeof(path), "alloc.keys");
	for (unsigned long nth = 1;; nth++) {
		fk = NULL;
		dw_alloc_fail_nth(nth);
		rc = dw_token_keyring_open_ex(path, NULL, &fk, NULL, 0);
		dw_alloc_fail_nth(0);
		if (rc == 0) {
			dw_token_keyring_close(fk);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(fk);
		assert_true(nth < 100);
	}
	dw_token_keyring_close(kr);
	remove_tmpdir();
}

/* ---- threads ---- */

struct worker {
	dw_token_keyring *kr;
	int failures;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 2000; i++) {
		char *tok = NULL;
		dw_token t;

		if (dw_token_encode_v1(w->kr, query, QLEN, (uint64_t)i, 10, 0, &tok) != 0 ||
		    dw_token_decode(w->kr, tok, query, QLEN, &t, NULL, 0) != 0 ||
		    t.offset != (uint64_t)i)
			w->failures++;
		dw_free(tok);
	}
	return NULL;
}

static void run_concurrent(dw_token_keyring *kr)
{
	struct worker w[2];
	pthread_t th[2];

	for (int i = 0; i < 2; i++) {
		w[i].kr = kr;
		w[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	/* Fewer rotations than the keyring holds, so every token made meanwhile must verify. */
	for (int i = 0; i < DW_TOKEN_KEYRING_MAX - 2; i++) {
		assert_int_equal(dw_token_keyring_rotate(kr), 0);
		assert_int_equal(dw_token_keyring_reload(kr), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(dw_token_keyring_count(kr), DW_TOKEN_KEYRING_MAX - 1);
}

static void test_concurrent_rotation(void **state)
{
	dw_token_keyring *kr = mem_ring(secret_a, 4, NULL);
	char path[600];

	(void)state;
	run_concurrent(kr);
	dw_token_keyring_close(kr);

	make_tmpdir();
	path_in(path, sizeof(path), "conc.keys");
	kr = NULL;
	assert_int_equal(dw_token_keyring_open(path, NULL, &kr), 0);
	run_concurrent(kr);
	dw_token_keyring_close(kr);
	remove_tmpdir();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_vectors),
		cmocka_unit_test(test_b64_rejects),
		cmocka_unit_test(test_roundtrip_v1),
		cmocka_unit_test(test_roundtrip_v2),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_length_cap),
		cmocka_unit_test(test_foreign_key_and_query),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_keyring_file_and_rotation),
		cmocka_unit_test(test_keyring_bad_files),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_concurrent_rotation),
	};

	dw_log_set_level(DW_LOG_OFF);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
