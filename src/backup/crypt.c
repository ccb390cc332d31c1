// SPDX-License-Identifier: MIT
/*
 * Encryption of a repository: AES-256-GCM (OpenSSL EVP) with a 256-bit key from a key file.
 *
 *   key file    one line: 64 hex digits (dwscale backup keygen writes it, mode 0600)
 *   key check   HMAC-SHA256(key, "dwscale backup key check v1"), hex, in REPO/config: a wrong
 *               key is refused before any work, never turned into garbage
 *   blob        +-----------+------------------+---------+   a stored block (pack data)
 *               | nonce(12) | ciphertext (n)   | tag(16) |   AAD: "DWBLK1", sha256 of the
 *               +-----------+------------------+---------+   plaintext block, u32 ulen, u8 flags
 *   frame       +----------+-----------+-----------+------------+---------+   a manifest is a
 *               | u32 plen | u64 poff  | nonce(12) | ct (plen)  | tag(16) |   sequence of these
 *               +----------+-----------+-----------+------------+---------+
 *               AAD: "DWMFR1", u8 n + backup id, plen, poff (plaintext offset of the frame)
 *
 * Every nonce is 96 random bits (RAND_bytes), one per blob or frame. The block AAD binds a blob
 * to the hash and length its manifest record names, so blobs cannot be swapped inside or
 * between packs; the frame AAD binds a manifest's frames to their backup id and position, so
 * frames cannot be reordered, dropped in the middle or moved between manifests (a cut at the
 * end loses the trailer, whose hash covers every record).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "backup/backup_int.h"

#define KCV_TEXT "dwscale backup key check v1"

int dw_backup_key_generate(uint8_t key[DW_BACKUP_KEY_LEN])
{
	return RAND_bytes(key, DW_BACKUP_KEY_LEN) == 1 ? 0 : DW_EBACKEND;
}

int dw_backup_key_format(const uint8_t key[DW_BACKUP_KEY_LEN], char *out, size_t cap)
{
	if (cap < 2 * DW_BACKUP_KEY_LEN + 1)
		return DW_ETOOBIG;
	dw__hex(key, DW_BACKUP_KEY_LEN, out);
	return 0;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int dw_backup_key_parse(const char *text, uint8_t key[DW_BACKUP_KEY_LEN])
{
	size_t n = strlen(text);

	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
		n--;
	if (n != 2 * DW_BACKUP_KEY_LEN)
		return DW_ECONFIG;
	for (size_t i = 0; i < DW_BACKUP_KEY_LEN; i++) {
		int hi = unhex(text[2 * i]), lo = unhex(text[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return DW_ECONFIG;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int dw_backup_key_load(const char *path, uint8_t key[DW_BACKUP_KEY_LEN])
{
	char text[256];
	FILE *f = fopen(path, "re");
	size_t n;
	int rc;

	if (!f)
		return errno == ENOENT ? DW_ENOTFOUND : -errno;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	rc = dw_backup_key_parse(text, key);
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

int dw__kcv(const uint8_t key[DW_BACKUP_KEY_LEN], char out[2 * DW__SHA_LEN + 1])
{
	uint8_t mac[DW__SHA_LEN];
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), key, DW_BACKUP_KEY_LEN, (const uint8_t *)KCV_TEXT, strlen(KCV_TEXT),
		  mac, &n) ||
	    n != DW__SHA_LEN)
		return DW_EBACKEND;
	dw__hex(mac, DW__SHA_LEN, out);
	return 0;
}

/* AES-256-GCM of in[0..n) with aad into out (n bytes) and tag; nonce given. */
static int gcm(bool enc, const uint8_t *key, const uint8_t nonce[DW__NONCE_LEN], const uint8_t *aad,
	       size_t alen, const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[DW__TAG_LEN])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0, rc = DW_EBACKEND;

	if (!c)
		return -ENOMEM;
	if (n > INT32_MAX || alen > INT32_MAX)
		goto out;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, DW__NONCE_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1 ||
	    EVP_CipherUpdate(c, NULL, &l, aad, (int)alen) != 1)
		goto out;
	if (n && EVP_CipherUpdate(c, out, &l, in, (int)n) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, DW__TAG_LEN, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + (n ? l : 0), &l) != 1) {
		rc = enc ? DW_EBACKEND : DW_ECORRUPT; /* authentication failed: tampered */
		goto out;
	}
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, DW__TAG_LEN, tag) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

int dw__seal(const struct dw__crypt *c, const uint8_t *aad, size_t alen, const uint8_t *in,
	     size_t n, uint8_t *out)
{
	if (RAND_bytes(out, DW__NONCE_LEN) != 1)
		return DW_EBACKEND;
	return gcm(true, c->key, out, aad, alen, in, n, out + DW__NONCE_LEN,
		   out + DW__NONCE_LEN + n);
}

int dw__unseal(const struct dw__crypt *c, const uint8_t *aad, size_t alen, const uint8_t *in,
	       size_t n, uint8_t *out)
{
	uint8_t tag[DW__TAG_LEN];

	if (n < DW__CRYPT_OVERHEAD)
		return DW_ECORRUPT;
	memcpy(tag, in + n - DW__TAG_LEN, DW__TAG_LEN);
	return gcm(false, c->key, in, aad, alen, in + DW__NONCE_LEN, n - DW__CRYPT_OVERHEAD, out,
		   tag);
}

static size_t blob_aad(uint8_t aad[64], const uint8_t sha[DW__SHA_LEN], uint32_t ulen,
		       uint8_t flags)
{
	memcpy(aad, "DWBLK1", 6);
	memcpy(aad + 6, sha, DW__SHA_LEN);
	for (int i = 0; i < 4; i++)
		aad[6 + DW__SHA_LEN + i] = (uint8_t)(ulen >> (8 * i));
	aad[6 + DW__SHA_LEN + 4] = flags;
	return 6 + DW__SHA_LEN + 5;
}

int dw__blob_seal(const struct dw__crypt *c, const uint8_t sha[DW__SHA_LEN], uint32_t ulen,
		  uint8_t flags, const uint8_t *in, size_t n, uint8_t *out)
{
	uint8_t aad[64];
	size_t al = blob_aad(aad, sha, ulen, flags);

	if (RAND_bytes(out, DW__NONCE_LEN) != 1)
		return DW_EBACKEND;
	return gcm(true, c->key, out, aad, al, in, n, out + DW__NONCE_LEN, out + DW__NONCE_LEN + n);
}

int dw__blob_open(const struct dw__crypt *c, const uint8_t sha[DW__SHA_LEN], uint32_t ulen,
		  uint8_t flags, const uint8_t *in, size_t n, uint8_t *out)
{
	uint8_t aad[64], tag[DW__TAG_LEN];
	size_t al = blob_aad(aad, sha, ulen, flags);

	if (n < DW__CRYPT_OVERHEAD)
		return DW_ECORRUPT;
	memcpy(tag, in + n - DW__TAG_LEN, DW__TAG_LEN);
	return gcm(false, c->key, in, aad, al, in + DW__NONCE_LEN, n - DW__CRYPT_OVERHEAD, out,
		   tag);
}

static size_t frame_aad(uint8_t aad[128], const char *id, uint32_t plen, uint64_t poff)
{
	size_t n = strlen(id), k = 0;

	memcpy(aad, "DWMFR1", 6);
	k = 6;
	aad[k++] = (uint8_t)n;
	memcpy(aad + k, id, n);
	k += n;
	for (int i = 0; i < 4; i++)
		aad[k++] = (uint8_t)(plen >> (8 * i));
	for (int i = 0; i < 8; i++)
		aad[k++] = (uint8_t)(poff >> (8 * i));
	return k;
}

int dw__frame_seal(const struct dw__crypt *c, const char *id, uint64_t poff, const uint8_t *in,
		   uint32_t plen, uint8_t *out)
{
	uint8_t aad[128];
	size_t al = frame_aad(aad, id, plen, poff);
	uint8_t *nonce = out + 12;

	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(plen >> (8 * i));
	for (int i = 0; i < 8; i++)
		out[4 + i] = (uint8_t)(poff >> (8 * i));
	if (RAND_bytes(nonce, DW__NONCE_LEN) != 1)
		return DW_EBACKEND;
	return gcm(true, c->key, nonce, aad, al, in, plen, nonce + DW__NONCE_LEN,
		   nonce + DW__NONCE_LEN + plen);
}

int dw__frame_head(const uint8_t head[DW__FRAME_HEAD], uint32_t *plen, uint64_t *poff)
{
	*plen = 0;
	*poff = 0;
	for (int i = 3; i >= 0; i--)
		*plen = *plen << 8 | head[i];
	for (int i = 7; i >= 0; i--)
		*poff = *poff << 8 | head[4 + i];
	return *plen <= DW__FRAME_MAX ? 0 : DW_ECORRUPT;
}

int dw__frame_open(const struct dw__crypt *c, const char *id, const uint8_t *frame, uint8_t *out)
{
	uint8_t aad[128], tag[DW__TAG_LEN];
	uint32_t plen;
	uint64_t poff;
	size_t al;

	if (dw__frame_head(frame, &plen, &poff) < 0)
		return DW_ECORRUPT;
	al = frame_aad(aad, id, plen, poff);
	memcpy(tag, frame + DW__FRAME_HEAD + DW__NONCE_LEN + plen, DW__TAG_LEN);
	return gcm(false, c->key, frame + DW__FRAME_HEAD, aad, al,
		   frame + DW__FRAME_HEAD + DW__NONCE_LEN, plen, out, tag);
}
