// SPDX-License-Identifier: MIT
/*
 * base64url without padding (RFC 4648 section 5). See b64_int.h for why the decoder is strict.
 *
 * The decoder rejects any byte outside the alphabet (NUL and bytes above 0x7f included). Every 4
 * characters give 3 bytes; a tail of 2 or 3 characters gives 1 or 2 bytes and its unused low bits
 * must be zero; a tail of 1 character cannot occur in an encoding and is refused.
 */
#include "core/b64_int.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t dw__b64url_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void dw__b64url_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* Value of one alphabet character, or -1. Tokens are not secret, so branches are fine. */
static int dec_char(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long dw__b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	size_t full = len / 4, tail = len % 4, o = 0;
	uint32_t v = 0;

	if (tail == 1)
		return -1;
	if (full * 3 + (tail ? tail - 1 : 0) > cap)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int d = dec_char((uint8_t)in[i]);

		if (d < 0)
			return -1;
		v = v << 6 | (uint32_t)d;
		if (i % 4 == 3) {
			out[o++] = (uint8_t)(v >> 16);
			out[o++] = (uint8_t)(v >> 8);
			out[o++] = (uint8_t)v;
			v = 0;
		}
	}
	if (tail == 2) {
		/* 12 bits: 8 of data, 4 unused that must be zero. */
		if (v & 0xf)
			return -1;
		out[o++] = (uint8_t)(v >> 4);
	} else if (tail == 3) {
		/* 18 bits: 16 of data, 2 unused that must be zero. */
		if (v & 0x3)
			return -1;
		out[o++] = (uint8_t)(v >> 10);
		out[o++] = (uint8_t)(v >> 2);
	}
	return (long)o;
}
