/* SPDX-License-Identifier: MIT */
/*
 * base64url without padding (RFC 4648 section 5), internal to libdwscale.
 *
 * Used for continuation tokens, which travel in URLs and JSON, so the alphabet avoids '+', '/'
 * and '='. The decoder is strict: it accepts exactly the strings the encoder produces (no
 * padding, no whitespace, no unused bits set in the last character), so each byte string has one
 * and only one textual form and a changed character can never decode to the same bytes.
 */
#ifndef DWSCALE_B64_INT_H
#define DWSCALE_B64_INT_H

#include <stddef.h>
#include <stdint.h>

/* Characters needed to encode n bytes (without the terminating NUL). */
size_t dw__b64url_encoded_len(size_t n);

/* Encode n bytes into out, which must hold dw__b64url_encoded_len(n) + 1 bytes; NUL-terminates. */
void dw__b64url_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decode len characters of in into out (capacity cap). Returns the number of bytes written, or
 * -1 if the text is not canonical base64url (bad character, impossible length, non-zero unused
 * bits) or would not fit in cap.
 */
long dw__b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
