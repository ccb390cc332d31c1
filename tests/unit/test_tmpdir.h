/* SPDX-License-Identifier: MIT */
/*
 * A test's own temporary directory, for cmocka setup and teardown: made under $DW_TEST_TMPDIR
 * (which meson makes, mode 0755) or /tmp, and removed whole at the end.
 */
#ifndef DW_TEST_TMPDIR_H
#define DW_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A new directory named after tag into dir (cap bytes); 0, or -1 if it could not be made. */
__attribute__((unused)) static int tt_mkdtemp(const char *tag, char *dir, size_t cap)
{
	const char *base = getenv("DW_TEST_TMPDIR");
	int n;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755); /* run by hand, outside meson: may not exist yet */
	n = snprintf(dir, cap, "%s/%s-XXXXXX", base, tag);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return mkdtemp(dir) ? 0 : -1;
}

/* Remove dir and everything in it; 0 or -1. */
__attribute__((unused)) static int tt_rm_rf(const char *dir)
{
	char cmd[1024];
	int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);

	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	return system(cmd) == 0 ? 0 : -1;
}

#endif
