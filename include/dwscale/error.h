/* SPDX-License-Identifier: MIT */
/*
 * dwscale error codes.
 *
 * Every function returns int: 0 (or a non-negative count) on success, a negative code on
 * failure. System errors pass through as -errno (always above -1000); domain errors are the
 * DW_E* codes below, all below -1000. One X-macro table generates the enum, dw_strerror() and
 * dw_err_name(), so the three can never disagree.
 *
 * Codes are never renumbered and never reused: append new ones at the end only.
 */
#ifndef DWSCALE_ERROR_H
#define DWSCALE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, message) */
#define DW_ERROR_MAP(X)                                               \
	X(DW_EQUOTA, -1001, "caller is over its quota")               \
	X(DW_ESHED, -1002, "work shed under backpressure")            \
	X(DW_ETOKEN, -1003, "invalid continuation token")             \
	X(DW_ECORRUPT, -1004, "stored data is corrupt")               \
	X(DW_ETIMEDOUT, -1005, "deadline passed")                     \
	X(DW_ECANCELED, -1006, "operation canceled")                  \
	X(DW_ENOTFOUND, -1007, "no such key")                         \
	X(DW_EBADKEY, -1008, "malformed key")                         \
	X(DW_ECONFIG, -1009, "invalid configuration")                 \
	X(DW_EBACKEND, -1010, "backend failure")                      \
	X(DW_ETOOBIG, -1011, "value too large")                       \
	X(DW_EBUDGET, -1012, "memory budget exhausted")               \
	X(DW_ECLOSED, -1013, "handle is closed")                      \
	X(DW_ELIMIT, -1014, "invalid limit value")                    \
	X(DW_EUNSUPPORTED, -1015, "not supported")                    \
	X(DW_ELOCKED, -1016, "resource is locked by another process") \
	X(DW_EVERSION, -1017, "unsupported format version")           \
	X(DW_EAUTH, -1018, "authentication failed")                   \
	X(DW_EPROTO, -1019, "protocol error")                         \
	X(DW_EEXIST, -1020, "already exists")                         \
	X(DW_EUSAGE, -1021, "invalid usage")                          \
	X(DW_ECONFLICT, -1022, "object changed during the operation")

enum dw_error {
#define DW__ERR_ENUM(name, value, msg) name = (value),
	DW_ERROR_MAP(DW__ERR_ENUM)
#undef DW__ERR_ENUM
};

/*
 * Human-readable message for any code: DW_E*, -errno, or 0 ("success"). Never NULL; the string
 * is static and thread-safe to use.
 */
const char *dw_strerror(int code);

/* Symbolic name: "DW_ETOKEN", "ENOENT", "OK", or "UNKNOWN". Static, never NULL. */
const char *dw_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
