// SPDX-License-Identifier: MIT
/*
 * dw_strerror / dw_err_name, generated from DW_ERROR_MAP. System errors (-errno) are named by
 * glibc's strerrordesc_np/strerrorname_np, which return static strings and so are thread-safe,
 * unlike strerror().
 */
#include <string.h>

#include "dwscale/error.h"

const char *dw_strerror(int code)
{
	const char *s;

	if (code >= 0)
		return "success";
	switch (code) {
#define DW__ERR_MSG(name, value, msg) \
	case value:                   \
		return msg;
		DW_ERROR_MAP(DW__ERR_MSG)
#undef DW__ERR_MSG
	default:
		break;
	}
	if (code > -1000) {
		s = strerrordesc_np(-code);
		if (s)
			return s;
	}
	return "unknown error";
}

const char *dw_err_name(int code)
{
	const char *s;

	if (code >= 0)
		return "OK";
	switch (code) {
#define DW__ERR_NAME(name, value, msg) \
	case value:                    \
		return #name;
		DW_ERROR_MAP(DW__ERR_NAME)
#undef DW__ERR_NAME
	default:
		break;
	}
	if (code > -1000) {
		s = strerrorname_np(-code);
		if (s)
			return s;
	}
	return "UNKNOWN";
}
