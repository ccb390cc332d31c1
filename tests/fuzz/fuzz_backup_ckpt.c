// SPDX-License-Identifier: MIT
/*
 * Fuzz the backup checkpoint parser: REPO/tmp/<id>.ckpt is read back by the next create of a
 * source to resume a killed one, so damaged or crafted bytes must be rejected with an error
 * (the create then starts over), never crash, loop or allocate without bound.
 */
#include <stddef.h>
#include <stdint.h>

#include "backup/backup_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dw__ckpt ck;

	if (size > DW__CKPT_FILE_MAX)
		return 0;
	if (dw__ckpt_parse(data, size, &ck) == 0)
		dw__ckpt_free(&ck);
	return 0;
}
