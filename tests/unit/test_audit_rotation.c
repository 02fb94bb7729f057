/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's rotation (registry options version 2) and reading across
 * its segments: which segments exist after many records, that the records
 * kept are contiguous and in order, reading the newest N backwards gives the
 * same answer as reading everything forwards, reopening right after a
 * rotation (or after a crash in the middle of one) neither repeats nor loses
 * a number, and a reader racing the rotations always sees a contiguous run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "audit_helpers.h"
#include "lifecycle_helpers.h"
#include "util.h"

#define SEGMENT 4096
#define KEEP 3

static const char *const A = "0000:3b:00.0", *const B = "0000:5e:00.0";


static void churn(gw_registry *reg, const char *address, int pairs)
{
    audit_churn(reg, address, pairs, "rotation test");
}

static gw_registry *fresh(char **dir, uint64_t bytes, unsigned keep)
{
    *dir = tmp_state_dir("rot");
    gw_registry *reg = audit_reg_open(*dir, bytes, keep);
    gw_identity ids[2] = { test_identity(0x3b, 0), test_identity(0x5e, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);
    return reg;
}

static off_t size_of(const char *dir, const char *name)
{
    char *p = gw_strdup_printf("%s/%s", dir, name);
    struct stat st;
    off_t s = stat(p, &st) == 0 ? st.st_size : -1;
    free(p);
    return s;
}

/* Every record read forwards, checked contiguous and ending at `last`;
 * returns the first seq. */
static uint64_t check_contiguous(const char *dir, uint64_t last)
{
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, dir, NULL), 0);
    size_t n = gw_audit_count(log);
    assert_true(n > 0);
    uint64_t first = gw_audit_get(log, 0)->seq;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(gw_audit_get(log, i)->seq, first + i);
    assert_int_equal(gw_audit_get(log, n - 1)->seq, last);
    gw_audit_free(log);
    return first;
}

static void segments_kept_and_contiguous(void **state)
{
    (void)state;
    char *dir;
    gw_registry *reg = fresh(&dir, SEGMENT, KEEP);
    churn(reg, A, 200);
    uint64_t last = gw_registry_seq(reg);
    assert_int_equal(last, 402);
    /* audit.log and exactly KEEP rotated segments, each closed at the first
     * record that took it to SEGMENT bytes */
    assert_true(size_of(dir, "audit.log") >= 0 && size_of(dir, "audit.log") < SEGMENT);
    for (int i = 1; i <= KEEP; i++) {
        char name[32];
        snprintf(name, sizeof name, "audit.log.%d", i);
        off_t s = size_of(dir, name);
        assert_true(s >= SEGMENT && s < SEGMENT + 512);
    }
    assert_int_equal(size_of(dir, "audit.log.4"), -1);
    uint64_t first = check_contiguous(dir, last);
    assert_true(first > 1);     /* the oldest were dropped with their segments */
    gw_registry_free(reg);
    rm_tree(dir);
}

/* The newest N (backwards, stopping early) equal the tail of a full forward
 * read, for every filter. */
static void last_n_matches_forward_read(void **state)
{
    (void)state;
    char *dir;
    gw_registry *reg = fresh(&dir, SEGMENT, KEEP);
    for (int i = 0; i < 60; i++)
        churn(reg, i % 3 ? A : B, 1);
    gw_registry_free(reg);

    const char *devices[] = { NULL, A, B, "0000:99:00.0" };
    const uint64_t since[] = { 0, 50, 110, 1000 };
    const size_t lasts[] = { 1, 5, 40, 1000 };
    for (size_t d = 0; d < 4; d++)
        for (size_t s = 0; s < 4; s++)
            for (size_t l = 0; l < 4; l++) {
                gw_audit_filter f = GW_AUDIT_FILTER_INIT;
                f.address = devices[d];
                f.since_seq = since[s];
                gw_audit *all = NULL, *tail = NULL;
                assert_int_equal(gw_audit_read(&all, dir, &f), 0);
                f.last = lasts[l];
                assert_int_equal(gw_audit_read(&tail, dir, &f), 0);
                size_t n = gw_audit_count(all), k = n < lasts[l] ? n : lasts[l];
                assert_int_equal(gw_audit_count(tail), k);
                assert_int_equal(gw_audit_truncated(tail), n > lasts[l]);
                for (size_t i = 0; i < k; i++)
                    assert_int_equal(gw_audit_get(tail, i)->seq, gw_audit_get(all, n - k + i)->seq);
                gw_audit_free(all);
                gw_audit_free(tail);
            }
    rm_tree(dir);
}

/* Reopened with audit.log empty (rotated by the last record), and after a
 * crash between the rename and the new file: the numbering continues, the
 * checkpoint's journal is not written again. */
static void reopen_after_rotation_and_torn_rotation(void **state)
{
    (void)state;
    char *dir;
    gw_registry *reg = fresh(&dir, SEGMENT, KEEP);
    uint64_t seq;
    do {
        churn(reg, A, 1);
        seq = gw_registry_seq(reg);
    } while (size_of(dir, "audit.log") != 0);
    gw_registry_free(reg);
    reg = audit_reg_open(dir, SEGMENT, KEEP);
    assert_int_equal(size_of(dir, "audit.log"), 0);     /* nothing appended again */
    churn(reg, A, 1);
    gw_registry_free(reg);
    check_contiguous(dir, seq + 2);

    /* a crash right after audit.log became audit.log.1 */
    char *cur = gw_strdup_printf("%s/audit.log", dir);
    char *shifted = gw_strdup_printf("%s/audit.log.1", dir);
    char *older = gw_strdup_printf("%s/audit.log.2", dir);
    assert_int_equal(rename(shifted, older), 0);
    assert_int_equal(rename(cur, shifted), 0);
    reg = audit_reg_open(dir, SEGMENT, KEEP);
    assert_int_equal(size_of(dir, "audit.log"), 0);
    churn(reg, B, 1);
    assert_int_equal(gw_registry_seq(reg), seq + 4);
    gw_registry_free(reg);
    check_contiguous(dir, seq + 4);
    free(cur);
    free(shifted);
    free(older);
    rm_tree(dir);
}

/* Segments beyond `keep` (an earlier, larger setting) go at the next
 * rotation; 0 bytes never rotates; a bad keep is refused. */
static void stale_segments_and_options(void **state)
{
    (void)state;
    char *dir;
    gw_registry *reg = fresh(&dir, SEGMENT, 8);
    churn(reg, A, 150);
    gw_registry_free(reg);
    assert_true(size_of(dir, "audit.log.6") > 0);
    reg = audit_reg_open(dir, SEGMENT, 2);
    churn(reg, A, 30);
    assert_true(size_of(dir, "audit.log.2") > 0);
    for (int i = 3; i <= 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "audit.log.%d", i);
        assert_int_equal(size_of(dir, name), -1);
    }
    check_contiguous(dir, gw_registry_seq(reg));
    gw_registry_free(reg);
    rm_tree(dir);

    reg = fresh(&dir, 0, 0);
    churn(reg, A, 100);
    assert_int_equal(size_of(dir, "audit.log.1"), -1);
    assert_true(size_of(dir, "audit.log") > 4 * SEGMENT);
    assert_int_equal(check_contiguous(dir, gw_registry_seq(reg)), 1);
    gw_registry_free(reg);
    rm_tree(dir);

    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = "/nonexistent";
    o.audit_segment_bytes = SEGMENT;
    gw_registry *bad = NULL;
    assert_int_equal(gw_registry_open(&bad, &o), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "audit_segments must be 1..100000"));
}

/* A damaged line met reading backwards is named by file and line, as a
 * forward read names it. */
static void damaged_line_named_backwards(void **state)
{
    (void)state;
    char *dir;
    gw_registry *reg = fresh(&dir, 0, 0);
    churn(reg, A, 2);
    gw_registry_free(reg);
    char *path = gw_strdup_printf("%s/audit.log", dir);
    FILE *f = fopen(path, "a");
    fputs("{\"seq\": \"seven\"}\n", f);
    fclose(f);
    gw_audit_filter fl = GW_AUDIT_FILTER_INIT;
    fl.last = 3;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, dir, &fl), GW_ESTATE_CORRUPT);
    char *want = gw_strdup_printf("%s:7", path);
    assert_non_null(strstr(gw_error_message(), want));
    free(want);
    free(path);
    rm_tree(dir);
}

typedef struct racer {
    gw_registry *reg;
    volatile int stop;
} racer;

static void *writer(void *arg)
{
    racer *r = arg;
    churn(r->reg, A, 600);
    r->stop = 1;
    return NULL;
}

/* A reader racing rotations (a segment every ~20 records, two kept) sees a
 * contiguous run of records every time: never a duplicate, never a gap. */
static void reader_races_rotation(void **state)
{
    (void)state;
    char *dir;
    racer r = { fresh(&dir, SEGMENT, 2), 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &r), 0);
    unsigned reads = 0;
    while (!r.stop) {
        gw_audit_filter f = GW_AUDIT_FILTER_INIT;
        f.last = reads % 2 ? 30 : 0;
        gw_audit *log = NULL;
        assert_int_equal(gw_audit_read(&log, dir, &f), 0);
        for (size_t i = 1; i < gw_audit_count(log); i++)
            if (gw_audit_get(log, i)->seq != gw_audit_get(log, i - 1)->seq + 1)
                fail_msg("read %u: record %zu is %" PRIu64 " after %" PRIu64, reads, i,
                         gw_audit_get(log, i)->seq, gw_audit_get(log, i - 1)->seq);
        gw_audit_free(log);
        reads++;
    }
    pthread_join(t, NULL);
    assert_true(reads > 10);
    gw_registry_free(r.reg);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segments_kept_and_contiguous),
        cmocka_unit_test(last_n_matches_forward_read),
        cmocka_unit_test(reopen_after_rotation_and_torn_rotation),
        cmocka_unit_test(stale_segments_and_options),
        cmocka_unit_test(damaged_line_named_backwards),
        cmocka_unit_test(reader_races_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
