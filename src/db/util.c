// SPDX-License-Identifier: MIT
/* Helpers shared by the database strategies. */
#include <string.h>

#include "db_int.h"

void dw__db_info_clear(struct dw__db_info *info)
{
	dw_free(info->meta);
	info->meta = NULL;
}

size_t dw__db_prefix_end(const void *prefix, size_t plen, uint8_t *out)
{
	const uint8_t *p = prefix;

	/* Drop trailing 0xff bytes, then increment the last byte: "ab\xff" -> "ac". */
	while (plen > 0 && p[plen - 1] == 0xff)
		plen--;
	if (plen == 0)
		return 0;
	memcpy(out, p, plen);
	out[plen - 1]++;
	return plen;
}
