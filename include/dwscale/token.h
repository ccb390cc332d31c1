/* SPDX-License-Identifier: MIT */
/*
 * dwscale continuation tokens.
 *
 * A listing that returns one page hands the client an opaque token for the next page. The token
 * is signed (HMAC-SHA256 with a per-node secret), bound to the query that made it and optionally
 * expires, so a client can neither forge a position nor replay a token against another query.
 * Two payload versions exist:
 *   v1  offset + limit      (the original design's form; page N costs N pages of scanning)
 *   v2  the last key seen   (keyset pagination; page N costs the same as page 1)
 * The byte layout, the MAC coverage and rotation are described in docs/formats/token.md.
 *
 * Keys live in a keyring: one current key signs, older keys still verify, so a secret can be
 * rotated without breaking tokens already handed out. The keyring is a small text file created
 * with mode 0600 on first use.
 *
 * Errors: every problem with a token's content (bad text, truncated, tampered, expired, signed by
 * an unknown key, made for another query, unknown version) is DW_ETOKEN, with a short reason in
 * the caller's buffer for logs and HTTP error bodies. Misuse (NULL keyring, NULL out) is
 * DW_EUSAGE.
 *
 * Threads: a keyring may be used by any number of threads at once; rotate/remove/reload take a
 * write lock and may run concurrently with encode/decode.
 */
#ifndef DWSCALE_TOKEN_H
#define DWSCALE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest token text dw_token_decode() will look at; longer input is refused unread. */
#define DW_TOKEN_MAX_LEN 4096
/* Longest last key a v2 token carries (bytes, binary-safe). */
#define DW_TOKEN_MAX_KEY 1024
/* Default lifetime callers should pass as ttl_ms when configuration says nothing: 72 h. */
#define DW_TOKEN_TTL_DEFAULT_MS (72ULL * 3600 * 1000)
/* Most keys a keyring holds; rotation past this forgets the oldest. */
#define DW_TOKEN_KEYRING_MAX 16
/* Secret length of keys this library generates (bytes). Keys read from a file may be 32..64. */
#define DW_TOKEN_SECRET_LEN 32
/* Size of a reason buffer that never truncates a reason. */
#define DW_TOKEN_WHY_LEN 96

typedef struct dw_token_keyring dw_token_keyring;

/* A decoded token. Plain value: nothing to free. */
typedef struct dw_token {
	int version;		  /* 1 or 2 */
	uint32_t kid;		  /* key id that signed it */
	uint64_t expires_wall_ns; /* CLOCK_REALTIME ns; 0 = never expires */
	/* v1 */
	uint64_t offset;
	uint64_t limit;
	/* v2 */
	size_t last_key_len;
	uint8_t last_key[DW_TOKEN_MAX_KEY];
} dw_token;

/*
 * Open the keyring stored at path, creating it with one fresh random key if the file does not
 * exist (the directory must). Creation is atomic: a temporary file is written, fsynced and linked
 * into place, then the directory is fsynced, so a crash leaves either no file or a whole one, and
 * two processes starting together end up with the same key.
 *
 * The file must be a regular file not readable or writable by group or others (mode 0600 or
 * stricter); otherwise DW_ECONFIG. Bad content is DW_ECONFIG too. clock (may be NULL = real)
 * supplies the wall time for expiry. On failure a message naming the file (and line) is written
 * to err (if not NULL) and logged at error level by dw_token_keyring_open().
 *
 * File format (text, one key per line, '#' comments and blank lines ignored):
 *     <kid: 8 hex digits, not 00000000> <secret: 64..128 hex digits>
 * The first key line is the current (signing) key; the others only verify.
 */
int dw_token_keyring_open(const char *path, const dw_clock *clock, dw_token_keyring **out);
int dw_token_keyring_open_ex(const char *path, const dw_clock *clock, dw_token_keyring **out,
			     char *err, size_t errlen);

/*
 * An in-memory keyring with one key (no file; rotate works in memory only). For tests, fuzzing
 * and nodes that keep the secret elsewhere. secret_len must be 32..64; kid must be non-zero.
 */
int dw_token_keyring_open_mem(const void *secret, size_t secret_len, uint32_t kid,
			      const dw_clock *clock, dw_token_keyring **out);

/* Release the keyring, wiping its secrets. NULL is a no-op. */
void dw_token_keyring_close(dw_token_keyring *kr);

/*
 * Make a fresh random key the current one; the previous keys stay for verification (the oldest
 * is forgotten past DW_TOKEN_KEYRING_MAX). A file-backed keyring is rewritten atomically before
 * the change is visible; if that fails, nothing changes. Returns 0 or a negative code.
 */
int dw_token_keyring_rotate(dw_token_keyring *kr);

/*
 * Forget key kid: tokens it signed stop verifying. Refuses the current key (DW_EUSAGE);
 * DW_ENOTFOUND if absent. Persists like rotate.
 */
int dw_token_keyring_remove(dw_token_keyring *kr, uint32_t kid);

/* Re-read the file (after another process rotated it). In-memory keyrings: no-op. */
int dw_token_keyring_reload(dw_token_keyring *kr);

/* Key id of the current signing key. */
uint32_t dw_token_keyring_current_kid(dw_token_keyring *kr);
/* Number of keys held (current + old). */
size_t dw_token_keyring_count(dw_token_keyring *kr);

/*
 * Make a token. query/qlen are the canonical bytes of the query (or a digest of them) that the
 * token belongs to; decode must be given the same bytes. ttl_ms: lifetime from now on the
 * keyring's wall clock; 0 = never expires. *out is a NUL-terminated base64url string the caller
 * frees with dw_free(). Returns 0, DW_EUSAGE, DW_ELIMIT (ttl overflows the clock), DW_ETOOBIG
 * (key longer than DW_TOKEN_MAX_KEY) or -ENOMEM.
 */
int dw_token_encode_v1(dw_token_keyring *kr, const void *query, size_t qlen, uint64_t offset,
		       uint64_t limit, uint64_t ttl_ms, char **out);
int dw_token_encode_v2(dw_token_keyring *kr, const void *query, size_t qlen, const void *last_key,
		       size_t klen, uint64_t ttl_ms, char **out);

/*
 * Check and decode tok (NUL-terminated) for the given query. The signature is checked first, in
 * constant time; nothing else is parsed until it holds. Returns 0 and fills *out, or DW_ETOKEN
 * with a reason such as "token expired" in why (why may be NULL; use DW_TOKEN_WHY_LEN bytes to
 * avoid truncation). The reason never contains token bytes.
 */
int dw_token_decode(dw_token_keyring *kr, const char *tok, const void *query, size_t qlen,
		    dw_token *out, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif
#endif
