/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the fuzz targets (tests/fuzz, docs/fuzzing.md): the libFuzzer
 * entry points, and a scratch directory for the targets whose code under
 * test reads files (checkpoint, audit log, allowlist, config). */
#ifndef GW_FUZZ_COMMON_H
#define GW_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Declared here so that -Wmissing-prototypes holds for the harnesses; the
 * same functions libFuzzer calls, and tests/fuzz/replay_main.c without it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A private directory for this process, on tmpfs when there is one (the
 * checkpoint and audit writers fsync: on a disk that would be the whole
 * cost of an execution), removed at exit. Aborts when it cannot be made. */
const char *gw_fuzz_dir(void);
/* "<gw_fuzz_dir()>/<name>", in a static buffer per call site's choice:
 * the caller passes the buffer. */
const char *gw_fuzz_path(char *buf, size_t len, const char *name);
/* Replace the file at `path` with data[0..size). Aborts on failure: a
 * harness that cannot write its input would report nothing. */
void gw_fuzz_write(const char *path, const void *data, size_t size);
/* A NUL-terminated copy of data[0..size) (the parsers under test take C
 * strings); free() it. */
char *gw_fuzz_cstr(const uint8_t *data, size_t size);
/* Silence the library's log lines: at a million executions a second they
 * are the whole output, and they are not what a target checks. */
void gw_fuzz_quiet(void);
/* abort() with a message: a broken invariant is a finding like a crash. */
void gw_fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
