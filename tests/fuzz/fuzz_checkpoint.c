/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint loader (agent/lib/store.c, record.c, the load and
 * recovery of registry.c): what gpuwardend reads from its state directory
 * at start-up, through gw_registry_open() as the daemon calls it.
 *
 * Each input is tried twice:
 *   1. as the whole file: the header parser (magic, version, length,
 *      checksum) sees the fuzzer's bytes as they are;
 *   2. as the body under a correct header (what follows the input's first
 *      line when it starts with the magic, else all of it): a checksum would
 *      otherwise stop nearly every mutation before the JSON loader.
 * A body that loads is also opened read-write, which recovers interrupted
 * clean-ups, rewrites the checkpoint and completes the audit log.
 *
 * Invariants: whatever the registry wrote itself loads again, read-only,
 * with the same records; its audit log reads back. */
#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "record.h"
#include "util.h"

static const char *state_dir(void)
{
    static char path[512];
    if (!path[0]) {
        gw_fuzz_path(path, sizeof path, "state");
        mkdir(path, 0700);
    }
    return path;
}

static void clear_state(void)
{
    static const char *const names[] = { GW_CHECKPOINT_NAME, GW_CHECKPOINT_NAME ".tmp", GW_AUDIT_NAME, GW_LOCK_NAME };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", state_dir(), names[i]);
        unlink(p);
    }
}

/* Everything a loaded registry is used for by the daemon's read ops. */
static size_t exercise(gw_registry *reg)
{
    gw_device **list = NULL;
    size_t n = 0;
    if (gw_registry_list(reg, &list, &n) < 0)
        gw_fuzz_fail("gw_registry_list: %s", gw_error_message());
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        if (gw_device_to_json(list[i], &json) < 0)
            gw_fuzz_fail("gw_device_to_json: %s", gw_error_message());
        free(json);
        gw_device *copy = gw_device_copy(list[i]);
        (void)gw_device_needs_cleanup(copy);
        gw_device_free(copy);
    }
    gw_device_list_free(list, n);
    (void)gw_registry_seq(reg);
    return n;
}

static int open_registry(bool read_only, gw_registry **reg)
{
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = state_dir();
    o.read_only = read_only;
    return gw_registry_open(reg, &o);
}

static void load_file(const void *file, size_t len, bool read_write)
{
    clear_state();
    char path[600];
    snprintf(path, sizeof path, "%s/" GW_CHECKPOINT_NAME, state_dir());
    gw_fuzz_write(path, file, len);
    gw_registry *reg = NULL;
    if (open_registry(true, &reg) < 0)
        return;
    exercise(reg);
    gw_registry_free(reg);
    if (!read_write)
        return;

    if (open_registry(false, &reg) < 0) {
        /* Only I/O can fail here: the same file just loaded read-only. */
        gw_fuzz_fail("read-write open of a checkpoint that loads read-only: %s", gw_error_message());
    }
    size_t n = exercise(reg);
    uint64_t seq = gw_registry_seq(reg);
    gw_registry_free(reg);

    /* Whatever recovery wrote must load, with the same records. */
    if (open_registry(true, &reg) < 0)
        gw_fuzz_fail("the registry's own checkpoint does not load: %s", gw_error_message());
    if (exercise(reg) != n || gw_registry_seq(reg) != seq)
        gw_fuzz_fail("the registry's own checkpoint loads with other records");
    gw_registry_free(reg);

    gw_audit *log = NULL;
    if (gw_audit_read(&log, state_dir(), NULL) < 0)
        gw_fuzz_fail("the registry's own audit log does not read: %s", gw_error_message());
    gw_audit_free(log);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_fuzz_quiet();
    load_file(data, size, false);

    const uint8_t *body = data;
    size_t body_len = size;
    static const char magic[] = "GWCHECKPOINT ";
    if (size >= sizeof magic - 1 && !memcmp(data, magic, sizeof magic - 1)) {
        const uint8_t *nl = memchr(data, '\n', size);
        body = nl ? nl + 1 : data + size;
        body_len = size - (size_t)(body - data);
    }
    size_t flen;
    char *file = gw_checkpoint_encode(GW_CHECKPOINT_VERSION, (const char *)body, body_len, &flen);
    load_file(file, flen, true);
    free(file);
    return 0;
}
