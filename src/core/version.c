// SPDX-License-Identifier: MIT
#include "dwscale/core.h"

#ifndef DW_VERSION
#define DW_VERSION "0.1.0"
#endif

const char *dw_version(void)
{
	return DW_VERSION;
}
