/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/common.h - conventions shared by every gpuwarden API.
 *
 * Return codes: every function that can fail returns int: 0 (GW_OK) on
 * success, a negative errno value on failure (-ENOENT, -EINVAL, -EIO, ...).
 * gw_error_message() then describes the last failure on the calling thread
 * with its context (which file, which device, which field).
 *
 * Ownership: objects are created by gw_<thing>_new()/gw_<thing>_scan() into an
 * out-pointer and released with gw_<thing>_free(), which accepts NULL.
 * Strings returned as `const char *` belong to the object they came from.
 *
 * Options structs carry a `version` field; initialise them with the matching
 * _INIT macro so that older callers keep working when fields are added.
 */
#ifndef GPUWARDEN_COMMON_H
#define GPUWARDEN_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(GW_BUILDING_LIBRARY)
#define GW_EXTERN __attribute__((visibility("default")))
#else
#define GW_EXTERN
#endif

#define GW_OK 0

/* A PCI address in canonical sysfs form, "0000:3b:00.0", plus the NUL. */
#define GW_ADDR_LEN 13

/* The library's version string, e.g. "0.1.0". */
GW_EXTERN const char *gw_version(void);

/* Message for the last failure on this thread ("" when none). */
GW_EXTERN const char *gw_error_message(void);

#ifdef __cplusplus
}
#endif
#endif
