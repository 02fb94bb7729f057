/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint: every flipped byte, every truncation, a wrong version and
 * an empty file are refused with the file's path and nothing is discarded;
 * --reset-state moves the file aside. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "lifecycle_helpers.h"
#include "record.h"
#include "util.h"

typedef struct fixture {
    char *dir;
    char *path;         /* <dir>/checkpoint */
    char *good;         /* its bytes */
    size_t len;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tmp_state_dir("store");
    f->path = gw_strdup_printf("%s/checkpoint", f->dir);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = f->dir;
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    gw_identity ids[2] = { test_identity(1, 0), test_identity(2, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.reason = "fan";
    assert_int_equal(gw_registry_apply(reg, "0000:02:00.0", GW_EVENT_QUARANTINE, &a, NULL), 0);
    assert_int_equal(gw_registry_set_fact(reg, "0000:01:00.0", "rom_sha256", "ab"), 0);
    gw_registry_free(reg);
    f->good = slurp(f->path, &f->len);
    assert_non_null(f->good);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rm_tree(f->dir);
    free(f->path);
    free(f->good);
    free(f);
    return 0;
}

/* Open on the current file; returns the error and checks that it names the
 * path and that the file was left exactly as it was. */
static int open_refused(fixture *f, const void *bytes, size_t len, bool read_only)
{
    assert_int_equal(spit(f->path, bytes, len), 0);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = f->dir;
    o.read_only = read_only;
    gw_registry *reg = NULL;
    int r = gw_registry_open(&reg, &o);
    if (r == 0) {
        gw_registry_free(reg);
        return 0;
    }
    assert_null(reg);
    if (!strstr(gw_error_message(), f->path))
        fail_msg("error does not name %s: %s", f->path, gw_error_message());
    size_t now_len = 0;
    char *now = slurp(f->path, &now_len);
    assert_int_equal(now_len, len);
    assert_memory_equal(now, bytes, len);
    free(now);
    return r;
}

static void good_checkpoint_opens(void **state)
{
    fixture *f = *state;
    assert_int_equal(open_refused(f, f->good, f->len, false), 0);
    assert_int_equal(strncmp(f->good, "GWCHECKPOINT 1 ", 15), 0);
}

static void every_flipped_byte_is_refused(void **state)
{
    fixture *f = *state;
    const char *nl = memchr(f->good, '\n', f->len);
    assert_non_null(nl);
    char *bad = malloc(f->len);
    static const unsigned char masks[] = { 0x01, 0x20, 0xff };
    size_t version_refusals = 0, checked = 0;
    for (size_t m = 0; m < sizeof masks; m++) {
        for (size_t i = 0; i < f->len; i++) {
            memcpy(bad, f->good, f->len);
            bad[i] ^= (char)masks[m];
            int r = open_refused(f, bad, f->len, m == 1);
            if (r == GW_ESTATE_VERSION) {
                /* only the version digit itself can read as another version */
                assert_int_equal(i, strlen("GWCHECKPOINT "));
                version_refusals++;
            } else if (r != GW_ESTATE_CORRUPT) {
                fail_msg("byte %zu ^ 0x%02x: got %d (%s)", i, masks[m], r, gw_error_message());
            }
            checked++;
        }
    }
    assert_int_equal(checked, 3 * f->len);
    assert_true(version_refusals >= 1);
    free(bad);
}

static void every_truncation_is_refused(void **state)
{
    fixture *f = *state;
    for (size_t len = 0; len < f->len; len++) {
        int r = open_refused(f, f->good, len, false);
        if (r != GW_ESTATE_CORRUPT)
            fail_msg("truncated to %zu of %zu: got %d", len, f->len, r);
    }
    /* and a byte too many */
    char *longer = malloc(f->len + 1);
    memcpy(longer, f->good, f->len);
    longer[f->len] = '\n';
    assert_int_equal(open_refused(f, longer, f->len + 1, false), GW_ESTATE_CORRUPT);
    assert_non_null(strstr(gw_error_message(), "unexpected bytes after the body"));
    free(longer);
}

static void empty_file(void **state)
{
    fixture *f = *state;
    assert_int_equal(open_refused(f, "", 0, false), GW_ESTATE_CORRUPT);
    assert_non_null(strstr(gw_error_message(), "empty file"));
    assert_int_equal(open_refused(f, "", 0, true), GW_ESTATE_CORRUPT);
}

static void wrong_version(void **state)
{
    fixture *f = *state;
    const char *body = strchr(f->good, '\n') + 1;
    size_t blen = f->len - (size_t)(body - f->good), len = 0;
    char *v2 = gw_checkpoint_encode(2, body, blen, &len);
    assert_int_equal(open_refused(f, v2, len, false), GW_ESTATE_VERSION);
    assert_non_null(strstr(gw_error_message(), "version 2"));
    free(v2);
    char *v0 = gw_checkpoint_encode(0, body, blen, &len);
    assert_int_equal(open_refused(f, v0, len, true), GW_ESTATE_VERSION);
    free(v0);

    /* a body claiming another version under a good header and checksum */
    json_t *o = json_loadb(body, blen, 0, NULL);
    assert_non_null(o);
    json_object_set_new(o, "version", json_integer(2));
    char *edited = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *file = gw_checkpoint_encode(1, edited, strlen(edited), &len);
    assert_int_equal(open_refused(f, file, len, false), GW_ESTATE_CORRUPT);
    free(file);
    free(edited);
}

/* Checksummed, so not damage: content no gpuwarden writes. Still refused. */
static void impossible_content(void **state)
{
    fixture *f = *state;
    static const char *const bodies[] = {
        "not json",
        "[]",
        "{\"format\":\"gpuwarden-checkpoint\",\"version\":1,\"seq\":0,\"devices\":[{}],\"journal\":[]}",
        "{\"format\":\"gpuwarden-checkpoint\",\"version\":1,\"seq\":-1,\"devices\":[],\"journal\":[]}",
        "{\"format\":\"other\",\"version\":1,\"seq\":0,\"devices\":[],\"journal\":[]}",
    };
    size_t len = 0;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        char *file = gw_checkpoint_encode(1, bodies[i], strlen(bodies[i]), &len);
        assert_int_equal(open_refused(f, file, len, false), GW_ESTATE_CORRUPT);
        free(file);
    }
    /* a sanitized device that is dirty; a state that does not exist */
    const char *body = strchr(f->good, '\n') + 1;
    static const char *const edits[][2] = {
        { "state", "sanitized" }, { "state", "rebooting" }, { "vendor_id", "10DE" },
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_loads(body, 0, NULL);
        json_t *dev = json_array_get(json_object_get(o, "devices"), 0);
        json_object_set_new(dev, edits[i][0], json_string(edits[i][1]));
        char *edited = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        char *file = gw_checkpoint_encode(1, edited, strlen(edited), &len);
        assert_int_equal(open_refused(f, file, len, false), GW_ESTATE_CORRUPT);
        assert_non_null(strstr(gw_error_message(), "devices[0]"));
        free(file);
        free(edited);
    }
}

static void reset_state_moves_it_aside(void **state)
{
    fixture *f = *state;
    char *bad = malloc(f->len);
    memcpy(bad, f->good, f->len);
    bad[f->len / 2] ^= 0x10;
    assert_int_equal(open_refused(f, bad, f->len, false), GW_ESTATE_CORRUPT);

    /* not while a registry holds the directory */
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = f->dir;
    gw_registry *reg = NULL;
    char *moved = NULL;
    assert_int_equal(spit(f->path, f->good, f->len), 0);
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    assert_int_equal(gw_registry_reset_state(f->dir, &moved), -EBUSY);
    gw_registry_free(reg);
    assert_int_equal(spit(f->path, bad, f->len), 0);

    assert_int_equal(gw_registry_reset_state(f->dir, &moved), 0);
    assert_non_null(moved);
    assert_int_equal(strncmp(moved, f->path, strlen(f->path)), 0);
    assert_int_equal(strncmp(moved + strlen(f->path), ".corrupt-", 9), 0);
    size_t mlen = 0;
    char *kept = slurp(moved, &mlen);
    assert_int_equal(mlen, f->len);
    assert_memory_equal(kept, bad, f->len);    /* moved, not rewritten */
    free(kept);
    struct stat st;
    assert_int_equal(stat(f->path, &st), -1);

    /* empty now, and the audit numbering goes on after the old records */
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    gw_device **list = NULL;
    size_t n = 99;
    assert_int_equal(gw_registry_list(reg, &list, &n), 0);
    assert_int_equal(n, 0);
    gw_device_list_free(list, n);
    assert_int_equal(gw_registry_seq(reg), 3);
    gw_identity id = test_identity(1, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    assert_int_equal(gw_registry_seq(reg), 4);
    gw_registry_free(reg);
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, f->dir, NULL), 0);
    assert_int_equal(gw_audit_count(log), 4);
    assert_int_equal(gw_audit_get(log, 3)->seq, 4);
    gw_audit_free(log);

    /* a second reset in the same second keeps the first copy */
    assert_int_equal(spit(f->path, bad, f->len), 0);
    char *moved2 = NULL;
    assert_int_equal(gw_registry_reset_state(f->dir, &moved2), 0);
    assert_string_not_equal(moved, moved2);
    assert_int_equal(stat(moved, &st), 0);
    free(moved2);
    /* nothing to move */
    assert_int_equal(gw_registry_reset_state(f->dir, &moved2), 0);
    assert_null(moved2);
    free(moved);
    free(bad);
}

static void stale_temp_file_is_ignored(void **state)
{
    fixture *f = *state;
    char *tmp = gw_strdup_printf("%s.tmp", f->path);
    assert_int_equal(spit(tmp, "GWCHECKPOINT 1 3 garbage", 24), 0);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = f->dir;
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    struct stat st;
    assert_int_equal(stat(tmp, &st), -1);
    assert_int_equal(gw_registry_seq(reg), 3);
    gw_registry_free(reg);
    free(tmp);

    /* a directory in the checkpoint's place, a state dir that is a file */
    char *file_dir = gw_strdup_printf("%s/plainfile", f->dir);
    assert_int_equal(spit(file_dir, "x", 1), 0);
    o.state_dir = file_dir;
    assert_int_equal(gw_registry_open(&reg, &o), -ENOTDIR);
    free(file_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(good_checkpoint_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(every_flipped_byte_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(every_truncation_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_version, setup, teardown),
        cmocka_unit_test_setup_teardown(impossible_content, setup, teardown),
        cmocka_unit_test_setup_teardown(reset_state_moves_it_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_temp_file_is_ignored, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
