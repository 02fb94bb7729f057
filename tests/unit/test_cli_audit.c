/* SPDX-License-Identifier: Apache-2.0 */
/* `gpuwarden audit`: the built CLI run on a state directory written by the
 * registry; exact records in JSON and in the table, filters, exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <gpuwarden/registry.h>
#include <jansson.h>

#include "lifecycle_helpers.h"
#include "util.h"

static char *state_dir;

/* Runs the CLI; returns its exit status, stdout in *out (may be NULL). */
static int cli(char **out, const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *cmd = gw_strdup_printf("%s/gpuwarden audit %s 2>/dev/null", GW_BINARY_DIR, args);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    state_dir = tmp_state_dir("cli");
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = state_dir;
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    gw_identity ids[2] = { test_identity(0x3b, 0), test_identity(0x5e, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);                     /* 1, 2 */
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    assert_int_equal(gw_registry_apply(reg, "0000:3b:00.0", GW_EVENT_CLEANUP_STARTED, &a, NULL), 0);
    a.actor = "operator:alice(1000)";
    a.reason = "fan noise";
    a.evidence = "ticket 42";
    assert_int_equal(gw_registry_apply(reg, "0000:5e:00.0", GW_EVENT_QUARANTINE, &a, NULL), 0);
    a.reason = NULL;
    a.evidence = NULL;
    assert_int_equal(gw_registry_apply(reg, "0000:5e:00.0", GW_EVENT_RELEASE, &a, NULL), 0);
    gw_registry_free(reg);
    return 0;
}

static int teardown(void **state)
{
    rm_tree(state_dir);
    return 0;
}

static void json_records(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&out, "--state-dir %s -f json", state_dir), 0);
    json_error_t err;
    json_t *a = json_loads(out, 0, &err);
    if (!a)
        fail_msg("not JSON: %s\n%s", err.text, out);
    assert_int_equal(json_array_size(a), 5);
    json_t *q = json_array_get(a, 3);
    assert_int_equal(json_integer_value(json_object_get(q, "seq")), 4);
    assert_string_equal(json_string_value(json_object_get(q, "event")), "quarantine");
    assert_string_equal(json_string_value(json_object_get(q, "from")), "discovered");
    assert_string_equal(json_string_value(json_object_get(q, "to")), "quarantined");
    assert_string_equal(json_string_value(json_object_get(q, "actor")), "operator:alice(1000)");
    assert_string_equal(json_string_value(json_object_get(q, "reason")), "fan noise");
    assert_string_equal(json_string_value(json_object_get(q, "evidence")), "ticket 42");
    json_t *dev = json_object_get(q, "device");
    assert_string_equal(json_string_value(json_object_get(dev, "address")), "0000:5e:00.0");
    assert_string_equal(json_string_value(json_object_get(dev, "vendor_id")), "10de");
    assert_true(json_is_null(json_object_get(json_array_get(a, 0), "from")));
    json_t *flags = json_object_get(json_array_get(a, 2), "to_flags");
    assert_int_equal(json_array_size(flags), 2);
    assert_string_equal(json_string_value(json_array_get(flags, 1)), "cleaning");
    json_decref(a);
    free(out);
}

static void filters(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&out, "--state-dir %s -f json --device 5E:00.0", state_dir), 0);
    json_t *a = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(a), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_object_get(json_object_get(
                                json_array_get(a, i), "device"), "address")), "0000:5e:00.0");
    json_decref(a);
    free(out);

    assert_int_equal(cli(&out, "--state-dir %s --format json --since-seq 2 --last 2", state_dir), 0);
    a = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(a), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "seq")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "seq")), 5);
    json_decref(a);
    free(out);

    assert_int_equal(cli(&out, "--state-dir %s -f json --device 0000:99:00.0", state_dir), 0);
    assert_string_equal(out, "[]\n");
    free(out);
}

static void table(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&out, "--state-dir %s", state_dir), 0);
    char *lines[8] = { 0 };
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l && n < 8;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    assert_int_equal(n, 6);
    assert_int_equal(strncmp(lines[0], "SEQ    TIME (UTC)", 17), 0);
    /* columns: seq, date, time, device, event, from, to, actor, reason */
    char seq[8], day[16], tod[16], dev[16], ev[24], from[40], to[40], actor[40], reason[40];
    assert_int_equal(sscanf(lines[4], "%7s %15s %15s %15s %23s %39s %39s %39s %39[^\n]", seq, day,
                            tod, dev, ev, from, to, actor, reason), 9);
    assert_string_equal(seq, "4");
    assert_string_equal(dev, "0000:5e:00.0");
    assert_string_equal(ev, "quarantine");
    assert_string_equal(from, "discovered+dirty");
    assert_string_equal(to, "quarantined+dirty");
    assert_string_equal(actor, "operator:alice(1000)");
    assert_string_equal(reason, "fan noise");
    assert_int_equal(sscanf(lines[1], "%7s %15s %15s %15s %23s %39s %39s %39s %39[^\n]", seq, day,
                            tod, dev, ev, from, to, actor, reason), 9);
    assert_string_equal(ev, "found");
    assert_string_equal(from, "-");
    assert_string_equal(to, "discovered+dirty");
    assert_string_equal(actor, "system");
    assert_string_equal(reason, "-");
    free(out);
}

static void errors_and_usage(void **state)
{
    assert_int_equal(cli(NULL, "--state-dir %s/nowhere", state_dir), 1);
    assert_int_equal(cli(NULL, "--state-dir %s --device 3b:00", state_dir), 2);
    assert_int_equal(cli(NULL, "--state-dir %s --last 0", state_dir), 2);
    assert_int_equal(cli(NULL, "--state-dir %s --since-seq -1", state_dir), 2);
    assert_int_equal(cli(NULL, "--state-dir %s -f xml", state_dir), 2);
    assert_int_equal(cli(NULL, "--state-dir %s extra", state_dir), 2);
    assert_int_equal(cli(NULL, "--bogus"), 2);
    char *out = NULL;
    assert_int_equal(cli(&out, "--help"), 0);
    assert_non_null(strstr(out, "usage: gpuwarden audit"));
    free(out);

    /* a damaged line is reported (exit 1), never skipped silently */
    char *path = gw_strdup_printf("%s/audit.log", state_dir);
    FILE *f = fopen(path, "a");
    fputs("{\"seq\": \"six\"}\n", f);
    fclose(f);
    assert_int_equal(cli(NULL, "--state-dir %s", state_dir), 1);
    char *cmd = gw_strdup_printf("%s/gpuwarden audit --state-dir %s 2>&1 >/dev/null",
                                 GW_BINARY_DIR, state_dir);
    FILE *p = popen(cmd, "r");
    char msg[512] = "";
    assert_non_null(fgets(msg, sizeof msg, p));
    pclose(p);
    assert_non_null(strstr(msg, "audit.log:6"));
    free(cmd);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_records),
        cmocka_unit_test(filters),
        cmocka_unit_test(table),
        cmocka_unit_test(errors_and_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
