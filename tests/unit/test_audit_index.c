/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's index (agent/lib/audit_index.c): a read through it gives
 * exactly what gw_audit_read() gives, for every filter, while the log grows
 * and rotates under one index; a device with no record costs no line read
 * and an unchanged log no byte indexed; a line the index cannot place (not
 * written compactly) is still read; a file rewritten in place (same inode)
 * is indexed afresh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "audit_internal.h"
#include "audit_helpers.h"
#include "lifecycle_helpers.h"
#include "util.h"

#define SEGMENT 4096
#define KEEP 3

static const char *const A = "0000:3b:00.0", *const B = "0000:5e:00.0", *const NONE = "0000:99:00.0";

static gw_registry *open_reg(const char *dir)
{
    return audit_reg_open(dir, SEGMENT, KEEP);
}

static void churn(gw_registry *reg, const char *address, int pairs)
{
    audit_churn(reg, address, pairs, "index test");
}

/* The index's answer and the files' answer for `f`: the same records, in
 * the same order, and the same `truncated`. */
static void same_as_files(gw_audit_index *ix, const char *dir, const gw_audit_filter *f)
{
    gw_audit *want = NULL, *got = NULL;
    assert_int_equal(gw_audit_read(&want, dir, f), 0);
    assert_int_equal(gw_audit_index_read(ix, &got, dir, f), 0);
    assert_int_equal(gw_audit_count(got), gw_audit_count(want));
    assert_int_equal(gw_audit_truncated(got), gw_audit_truncated(want));
    for (size_t i = 0; i < gw_audit_count(want); i++) {
        assert_int_equal(gw_audit_get(got, i)->seq, gw_audit_get(want, i)->seq);
        assert_string_equal(gw_audit_get(got, i)->device.address, gw_audit_get(want, i)->device.address);
    }
    gw_audit_free(want);
    gw_audit_free(got);
}

static void every_filter(gw_audit_index *ix, const char *dir)
{
    const char *devices[] = { A, B, NONE, NULL };
    const uint64_t since[] = { 0, 50, 300 };
    const size_t lasts[] = { 0, 1, 7, 1000 };
    for (size_t d = 0; d < 4; d++)
        for (size_t s = 0; s < 3; s++)
            for (size_t l = 0; l < 4; l++) {
                gw_audit_filter f = GW_AUDIT_FILTER_INIT;
                f.address = devices[d];
                f.since_seq = since[s];
                f.last = lasts[l];
                same_as_files(ix, dir, &f);
            }
}

/* One index across appends and rotations (the segments are renamed under
 * it, the oldest deleted). */
static void same_records_as_the_files(void **state)
{
    (void)state;
    char *dir = tmp_state_dir("aix");
    gw_registry *reg = open_reg(dir);
    gw_identity ids[2] = { test_identity(0x3b, 0), test_identity(0x5e, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);
    gw_audit_index *ix = gw_audit_index_new();
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 15; i++)
            churn(reg, i % 3 ? A : B, 1);
        every_filter(ix, dir);
    }
    gw_audit_index_free(ix);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* What a read costs: nothing more to index when nothing was appended, no
 * line read for a device without records, and only that device's lines
 * for one with records. */
static void reads_only_what_it_returns(void **state)
{
    (void)state;
    char *dir = tmp_state_dir("aix");
    gw_registry *reg = open_reg(dir);
    gw_identity ids[2] = { test_identity(0x3b, 0), test_identity(0x5e, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);
    churn(reg, A, 2);
    churn(reg, B, 1);
    gw_audit_index *ix = gw_audit_index_new();
    assert_int_equal(gw_audit_index_update(ix, dir), 0);
    uint64_t indexed = 0, lines = 0, indexed2 = 0, lines2 = 0;
    gw_audit_index_stats(ix, &indexed, &lines);
    assert_true(indexed > 0);
    assert_int_equal(lines, 0);

    gw_audit_filter f = GW_AUDIT_FILTER_INIT;
    f.address = NONE;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_index_read(ix, &log, dir, &f), 0);
    assert_int_equal(gw_audit_count(log), 0);
    gw_audit_free(log);
    gw_audit_index_stats(ix, &indexed2, &lines2);
    assert_int_equal(indexed2, indexed);
    assert_int_equal(lines2, 0);

    /* B: its "found" and one quarantine + release. */
    f.address = B;
    assert_int_equal(gw_audit_index_read(ix, &log, dir, &f), 0);
    assert_int_equal(gw_audit_count(log), 3);
    gw_audit_free(log);
    gw_audit_index_stats(ix, NULL, &lines2);
    assert_int_equal(lines2, 3);

    gw_audit_index_free(ix);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* A record line as the registry writes it (compact) or spaced out, which
 * the index cannot place by its text. */
static void write_record(FILE *f, uint64_t seq, const char *address, bool compact)
{
    const char *sep = compact ? "" : " ";
    long long ms = 1700000000000LL + (long long)seq * 1000;
    fprintf(f,
            "{\"seq\":%s%llu,\"time\":%s\"2023-11-14T22:13:%02llu.000Z\",\"time_ms\":%s%lld,\"device\":%s"
            "{\"address\":%s\"%s\",\"vendor_id\":\"10de\",\"device_id\":\"2230\",\"subsystem_vendor_id\":\"10de\","
            "\"subsystem_device_id\":\"1459\",\"dsn\":null},\"event\":\"quarantine\",\"from\":\"allocatable\","
            "\"from_flags\":[],\"to\":\"quarantined\",\"to_flags\":[],\"actor\":\"operator:test(0)\","
            "\"reason\":\"index test\",\"evidence\":\"\"}\n",
            sep, (unsigned long long)seq, sep, (unsigned long long)(seq % 60), sep, ms, sep, sep, address);
}

static void unplaced_lines_are_read(void **state)
{
    (void)state;
    char *dir = tmp_state_dir("aix");
    char *path = gw_strdup_printf("%s/audit.log", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (uint64_t seq = 1; seq <= 20; seq++)
        write_record(f, seq, seq % 2 ? A : B, seq % 5 != 0);
    fclose(f);
    gw_audit_index *ix = gw_audit_index_new();
    every_filter(ix, dir);
    gw_audit_filter fa = GW_AUDIT_FILTER_INIT;
    fa.address = A;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_index_read(ix, &log, dir, &fa), 0);
    assert_int_equal(gw_audit_count(log), 10);      /* 5 and 15 among them, spaced out */
    gw_audit_free(log);
    gw_audit_index_free(ix);
    free(path);
    rm_tree(dir);
}

/* audit.log rewritten in place, longer than what was indexed: the same
 * inode, other records. */
static void a_file_rewritten_is_indexed_afresh(void **state)
{
    (void)state;
    char *dir = tmp_state_dir("aix");
    char *path = gw_strdup_printf("%s/audit.log", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (uint64_t seq = 1; seq <= 10; seq++)
        write_record(f, seq, A, true);
    fclose(f);
    gw_audit_index *ix = gw_audit_index_new();
    every_filter(ix, dir);
    f = fopen(path, "w");       /* truncates: the inode stays */
    assert_non_null(f);
    for (uint64_t seq = 100; seq < 130; seq++)
        write_record(f, seq, B, true);
    fclose(f);
    every_filter(ix, dir);
    gw_audit_filter fa = GW_AUDIT_FILTER_INIT;
    fa.address = A;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_index_read(ix, &log, dir, &fa), 0);
    assert_int_equal(gw_audit_count(log), 0);
    gw_audit_free(log);
    gw_audit_index_free(ix);
    free(path);
    rm_tree(dir);
}

/* A damaged line of the device's is an error naming its file and line, as
 * gw_audit_read() names it. */
static void damaged_line_named(void **state)
{
    (void)state;
    char *dir = tmp_state_dir("aix");
    char *path = gw_strdup_printf("%s/audit.log", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    write_record(f, 1, A, true);
    fprintf(f, "{\"seq\":2,\"device\":{\"address\":\"%s\"},\"oops\n", A);
    write_record(f, 3, A, true);
    fclose(f);
    gw_audit_index *ix = gw_audit_index_new();
    gw_audit_filter fa = GW_AUDIT_FILTER_INIT;
    fa.address = A;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_index_read(ix, &log, dir, &fa), GW_ESTATE_CORRUPT);
    assert_null(log);
    char *want = gw_strdup_printf("%s:2", path);
    assert_non_null(strstr(gw_error_message(), want));
    free(want);
    gw_audit_index_free(ix);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_records_as_the_files),
        cmocka_unit_test(reads_only_what_it_returns),
        cmocka_unit_test(unplaced_lines_are_read),
        cmocka_unit_test(a_file_rewritten_is_indexed_afresh),
        cmocka_unit_test(damaged_line_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
