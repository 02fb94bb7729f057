/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log loaders (agent/lib/audit.c, record.c): gw_audit_read_file()
 * as `gpuwarden audit` and the daemon's audit op read it, with and without a
 * filter, and gw_audit_log_open() as the daemon opens it at start-up (it
 * drops a torn last line and reads the last record's seq from the tail).
 *
 * Invariant: dropping the torn line changes no complete record, so the log
 * reads back the same before and after the daemon opened it. */
#include <gpuwarden/audit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "record.h"
#include "util.h"

static int read_log(const char *path, const gw_audit_filter *filter, size_t *count)
{
    gw_audit *log = NULL;
    int r = gw_audit_read_file(&log, path, filter);
    if (r < 0)
        return r;
    *count = gw_audit_count(log);
    for (size_t i = 0; i < *count; i++) {
        const gw_transition *t = gw_audit_get(log, i);
        char *json = NULL;
        if (!t || gw_transition_to_json(t, &json) < 0)
            gw_fuzz_fail("record %zu of %zu does not convert", i, *count);
        free(json);
    }
    if (gw_audit_get(log, *count))
        gw_fuzz_fail("a record past the end");
    char *all = NULL;
    if (gw_audit_to_json(log, &all) < 0)
        gw_fuzz_fail("gw_audit_to_json: %s", gw_error_message());
    free(all);
    (void)gw_audit_truncated(log);
    gw_audit_free(log);
    return 0;
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
    char dir[512], path[600];
    gw_fuzz_path(dir, sizeof dir, "state");
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/" GW_AUDIT_NAME, dir);
    gw_fuzz_write(path, data, size);

    size_t before = 0, n;
    int r = read_log(path, NULL, &before);
    gw_audit_filter f = GW_AUDIT_FILTER_INIT;
    f.address = "0000:3b:00.0";
    f.since_seq = 2;
    f.last = 3;
    if (r == 0 && read_log(path, &f, &n) < 0)
        gw_fuzz_fail("a log that reads whole fails filtered: %s", gw_error_message());
    f.address = NULL;
    f.since_ms = 1;
    f.last = 1;
    read_log(path, &f, &n);

    int fd = -1;
    uint64_t last_seq = 0;
    if (gw_audit_log_open(dir, &fd, &last_seq) == 0)
        close(fd);
    size_t after = 0;
    int r2 = read_log(path, NULL, &after);
    if (r == 0 && (r2 < 0 || after != before))
        gw_fuzz_fail("opening the log for appending changed its records (%zu -> %zu)", before, after);
    return 0;
}
