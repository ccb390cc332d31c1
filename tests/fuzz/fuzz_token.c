// SPDX-License-Identifier: MIT
/*
 * Fuzz target: decode arbitrary bytes as a continuation token with a fixed keyring, query and
 * clock. Must never crash or read out of bounds. Anything that decodes is re-encoded with the
 * same fields and must decode again to the same fields.
 *
 * Input: the bytes are the token text. If the first byte is 0x00, the rest is taken as the
 * binary form and base64url-encoded first, so the fuzzer can also explore the binary layout.
 * The corpus in corpus/token/ holds valid tokens made with this keyring (secret below, kid
 * 0x64770001, no expiry, query "fuzz-query") and some garbage.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/b64_int.h"
#include "dwscale/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t secret[32] = "dwscale fuzz token secret 32 by";
static const char query[] = "fuzz-query";
#define FUZZ_KID  0x64770001u
#define FUZZ_WALL (1700000000ULL * DW_NS_PER_SEC)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static dw_fake_clock fc;
	static dw_token_keyring *kr;
	char *text = NULL, *again = NULL, why[DW_TOKEN_WHY_LEN];
	dw_token t, t2;
	int rc;

	if (!kr) {
		dw_fake_clock_init(&fc, 0, FUZZ_WALL);
		if (dw_token_keyring_open_mem(secret, sizeof(secret), FUZZ_KID, &fc.clock, &kr) !=
		    0)
			abort();
	}
	if (size > 2 * DW_TOKEN_MAX_LEN)
		return 0;
	if (size > 0 && data[0] == 0) {
		text = malloc(dw__b64url_encoded_len(size - 1) + 1);
		if (!text)
			return 0;
		dw__b64url_encode(data + 1, size - 1, text);
	} else {
		text = malloc(size + 1);
		if (!text)
			return 0;
		memcpy(text, data, size);
		text[size] = '\0';
	}
	rc = dw_token_decode(kr, text, query, strlen(query), &t, why, sizeof(why));
	if (rc != 0) {
		if (rc != DW_ETOKEN || why[0] == '\0')
			abort();
		goto out;
	}
	if (t.version == 1)
		rc = dw_token_encode_v1(kr, query, strlen(query), t.offset, t.limit, 0, &again);
	else if (t.version == 2)
		rc = dw_token_encode_v2(kr, query, strlen(query), t.last_key, t.last_key_len, 0,
					&again);
	else
		abort();
	if (rc != 0)
		abort();
	if (dw_token_decode(kr, again, query, strlen(query), &t2, why, sizeof(why)) != 0)
		abort();
	if (t2.version != t.version || t2.offset != t.offset || t2.limit != t.limit ||
	    t2.last_key_len != t.last_key_len ||
	    memcmp(t2.last_key, t.last_key, t.last_key_len) != 0)
		abort();
	/* Another query never accepts it. */
	if (dw_token_decode(kr, again, "other", 5, &t2, NULL, 0) != DW_ETOKEN)
		abort();
out:
	dw_free(again);
	free(text);
	return 0;
}
