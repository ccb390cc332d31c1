// SPDX-License-Identifier: MIT
/*
 * Fuzz target: arbitrary bytes as a dw:// key. dw_store_key_check must never crash or read past
 * the NUL, and must agree with the rule in store.h (written out again here, independently):
 * "dw://" then 1..1019 bytes in 0x21..0x7e. A key it accepts must round-trip through an
 * in-memory store (put, get, scan by itself as prefix, delete); a key it refuses must be refused
 * by put and scan as well, leaving the store empty.
 *
 * Input: the bytes up to the first NUL (or all of them) are the key.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dwscale/core.h"
#include "dwscale/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool rule(const char *k)
{
	size_t n = strlen(k);

	if (n < 6 || n > DW_STORE_KEY_MAX || memcmp(k, "dw://", 5) != 0)
		return false;
	for (size_t i = 5; i < n; i++) {
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static dw_store *s;
	dw_store_iter *it = NULL;
	const char *got;
	const void *v;
	void *val = NULL;
	size_t len;
	char *key;
	int rc;

	if (size > 4 * DW_STORE_KEY_MAX)
		return 0;
	if (!s && dw_store_open("sqlite::memory:", &s) != 0)
		abort();
	key = malloc(size + 1);
	if (!key)
		return 0;
	memcpy(key, data, size);
	key[size] = '\0';

	rc = dw_store_key_check(key);
	if (rc != 0 && rc != DW_EBADKEY)
		abort();
	if ((rc == 0) != rule(key))
		abort();
	if (rc != 0) {
		if (dw_store_put(s, key, "x", 1) != DW_EBADKEY)
			abort();
		if (dw_store_get(s, key, &val, &len) != DW_EBADKEY || val)
			abort();
		goto out;
	}
	if (dw_store_put(s, key, data, size) != 0)
		abort();
	if (dw_store_get(s, key, &val, &len) != 0 || len != size || memcmp(val, data, size) != 0)
		abort();
	if (dw_store_scan(s, key, &it) != 0)
		abort();
	if (dw_store_iter_next(it, &got, &v, &len) != 1 || strcmp(got, key) != 0)
		abort();
	if (dw_store_iter_next(it, &got, &v, &len) != 0)
		abort(); /* the store holds one key at a time */
	if (dw_store_delete(s, key) != 0)
		abort();
out:
	dw_store_iter_free(it);
	dw_free(val);
	free(key);
	return 0;
}
