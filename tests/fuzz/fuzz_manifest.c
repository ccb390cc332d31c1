// SPDX-License-Identifier: MIT
/*
 * Fuzz the backup manifest reader: a manifest comes from disk and may be damaged or crafted, so
 * the streaming reader (every record type, the header's chain and the trailer's hash) and the
 * summary reader used by `list` must reject any bytes with an error, never crash or loop. The
 * same bytes are also read as the sealed frames of an encrypted repository (a fixed key and
 * backup id, which the corpus's sealed-* files were made with): frame headers, lengths,
 * offsets and authentication, then the records inside.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backup/backup_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dw__mreader m;
	struct dw__mheader h;
	struct dw__mtrailer t;
	static struct dw__entry e;
	struct dw__bref b;
	struct dw__file_end fe;
	int fd = memfd_create("manifest", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (dw__write_all(fd, data, size) == 0) {
		static struct dw__crypt c;

		memset(c.key, 0x42, sizeof(c.key));
		if (dw__manifest_summary(fd, &h, &t) == 0)
			dw__mheader_free(&h);
		lseek(fd, 0, SEEK_SET);
		if (dw__mr_open(&m, fd) == 0) {
			for (int i = 0; i < 1000000 && dw__mr_next(&m, &e, &b, &fe) > 0; i++)
				;
			dw__mr_close(&m);
		}
		if (dw__manifest_summary2(fd, &c, "fuzz-id-0000", &h, &t) == 0)
			dw__mheader_free(&h);
		lseek(fd, 0, SEEK_SET);
		if (dw__mr_open2(&m, fd, &c, "fuzz-id-0000") == 0) {
			for (int i = 0; i < 1000000 && dw__mr_next(&m, &e, &b, &fe) > 0; i++)
				;
			dw__mr_close(&m);
		}
	}
	close(fd);
	return 0;
}
