// SPDX-License-Identifier: MIT
/* The dwscale command (placeholder until the CLI lands). */
#include <stdio.h>
#include <string.h>

#include "dwscale/core.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("dwscale %s\n", dw_version());
		return 0;
	}
	fprintf(stderr, "usage: dwscale --version\n");
	return 2;
}
