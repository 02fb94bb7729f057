/* SPDX-License-Identifier: Apache-2.0 */
/* The registry: records, identities, persistence round trips, recovery,
 * locking, the callback's ordering guarantee and the audit log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "lifecycle_helpers.h"
#include "record.h"
#include "util.h"

#define A3B "0000:3b:00.0"

static gw_registry *open_dir(const char *dir)
{
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    gw_registry *reg = NULL;
    int r = gw_registry_open(&reg, &o);
    if (r < 0)
        fail_msg("open %s: %d %s", dir, r, gw_error_message());
    return reg;
}

static int apply(gw_registry *reg, const char *addr, gw_event ev, const char *reason)
{
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.reason = reason;
    return gw_registry_apply(reg, addr, ev, &a, NULL);
}

static void expect(gw_registry *reg, const char *addr, gw_state st, unsigned flags, uint64_t seq)
{
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, addr, &dev), 0);
    char have[64], want[64];
    gw_condition_format(dev->state, dev->flags, have, sizeof have);
    gw_condition_format(st, flags, want, sizeof want);
    assert_string_equal(have, want);
    if (seq)
        assert_int_equal(dev->seq, seq);
    gw_device_free(dev);
}

static gw_audit *audit_all(const char *dir)
{
    gw_audit *log = NULL;
    int r = gw_audit_read(&log, dir, NULL);
    if (r < 0)
        fail_msg("audit: %s", gw_error_message());
    return log;
}

static void happy_path_and_round_trip(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 0);   /* known and present: nothing */
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 1);

    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, NULL), 0);
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY | GW_FLAG_CLEANING, 2);

    gw_cleanup_step steps[] = {
        { "not_in_use", "pass", "no domain references it", 3 },
        { "reset", "pass", "flr", 120 },
        { "firmware", "skip", "no rom attribute", 0 },
    };
    gw_cleanup_result res = { 1700000000000, 1700000000123, true, steps, 3 };
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.cleanup = &res;
    a.actor = "cleanup";
    uint64_t seq = 0;
    steps[1].verdict = "maybe";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_CLEANUP_PASSED, &a, &seq), -EINVAL);
    steps[1].verdict = "pass";
    steps[2].name = "";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_CLEANUP_PASSED, &a, &seq), -EINVAL);
    steps[2].name = "firmware";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_CLEANUP_PASSED, &a, &seq), 0);
    assert_int_equal(seq, 3);
    expect(reg, A3B, GW_STATE_SANITIZED, 0, 3);
    assert_int_equal(apply(reg, A3B, GW_EVENT_PUBLISHED, NULL), 0);
    expect(reg, A3B, GW_STATE_ALLOCATABLE, 0, 4);
    assert_int_equal(apply(reg, A3B, GW_EVENT_ATTACH_SEEN, NULL), 0);
    expect(reg, A3B, GW_STATE_ATTACHED, GW_FLAG_DIRTY, 5);
    assert_int_equal(apply(reg, A3B, GW_EVENT_DETACH_SEEN, NULL), 0);
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 6);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "rom_sha256", "ab12"), 0);
    assert_int_equal(gw_registry_seq(reg), 6);

    gw_device *before = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &before), 0);
    assert_true(gw_device_needs_cleanup(before));
    assert_string_equal(gw_device_fact(before, "rom_sha256"), "ab12");
    assert_int_equal(before->cleanup.n_steps, 3);
    assert_string_equal(before->cleanup.steps[1].name, "reset");
    assert_string_equal(before->cleanup.steps[2].verdict, "skip");
    assert_string_equal(before->cleanup.steps[0].evidence, "no domain references it");
    assert_true(before->cleanup.passed);
    assert_int_equal(before->cleanup.start_ms, 1700000000000);
    assert_int_equal(before->cleanup.steps[1].duration_ms, 120);
    assert_int_equal(before->cleanup.end_ms, 1700000000123);
    char *json_before = NULL;
    assert_int_equal(gw_device_to_json(before, &json_before), 0);
    gw_registry_free(reg);

    reg = open_dir(dir);
    gw_device *after = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &after), 0);
    char *json_after = NULL;
    assert_int_equal(gw_device_to_json(after, &json_after), 0);
    assert_string_equal(json_before, json_after);
    assert_int_equal(gw_registry_seq(reg), 6);

    gw_audit *log = audit_all(dir);
    static const gw_event events[] = { GW_EVENT_FOUND, GW_EVENT_CLEANUP_STARTED,
                                       GW_EVENT_CLEANUP_PASSED, GW_EVENT_PUBLISHED,
                                       GW_EVENT_ATTACH_SEEN, GW_EVENT_DETACH_SEEN };
    static const gw_state to[] = { GW_STATE_DISCOVERED, GW_STATE_DISCOVERED, GW_STATE_SANITIZED,
                                   GW_STATE_ALLOCATABLE, GW_STATE_ATTACHED, GW_STATE_DISCOVERED };
    assert_int_equal(gw_audit_count(log), 6);
    for (size_t i = 0; i < 6; i++) {
        const gw_transition *t = gw_audit_get(log, i);
        assert_int_equal(t->seq, i + 1);
        assert_int_equal(t->event, events[i]);
        assert_int_equal(t->to, to[i]);
        assert_int_equal(t->from, i ? to[i - 1] : GW_STATE_NONE);
        assert_true(gw_identity_equal(&t->device, &id));
    }
    assert_string_equal(gw_audit_get(log, 2)->actor, "cleanup");
    assert_string_equal(gw_audit_get(log, 0)->actor, "system");
    gw_audit_free(log);
    free(json_before);
    free(json_after);
    gw_device_free(before);
    gw_device_free(after);
    gw_registry_free(reg);
    rm_tree(dir);
}

static void quarantine_survives_unplug_and_restart(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_sync(reg, &id, 1, NULL), 1);
    assert_int_equal(apply(reg, A3B, GW_EVENT_QUARANTINE, NULL), -EINVAL);   /* needs a reason */
    assert_int_equal(apply(reg, A3B, GW_EVENT_QUARANTINE, ""), -EINVAL);
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.actor = "operator:alice(1000)";
    a.reason = "fan noise";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_QUARANTINE, &a, NULL), 0);
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY, 2);

    assert_int_equal(gw_registry_sync(reg, NULL, 0, NULL), 1);        /* unplugged */
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY | GW_FLAG_MISSING, 3);
    assert_int_equal(apply(reg, A3B, GW_EVENT_SANITIZE, NULL), -EPERM);
    assert_int_equal(apply(reg, A3B, GW_EVENT_ATTACH_SEEN, NULL), -EPERM);
    gw_registry_free(reg);

    reg = open_dir(dir);
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY | GW_FLAG_MISSING, 3);
    assert_int_equal(gw_registry_sync(reg, &id, 1, NULL), 1);         /* plugged back */
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY, 4);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->quarantine_reason, "fan noise");
    assert_string_equal(dev->quarantine_actor, "operator:alice(1000)");
    assert_int_equal(dev->last_event, GW_EVENT_BACK);
    assert_true(dev->quarantine_ms > 0);
    gw_device_free(dev);

    assert_int_equal(apply(reg, A3B, GW_EVENT_RELEASE, NULL), 0);
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 5);
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->quarantine_reason, "");
    assert_int_equal(dev->quarantine_ms, 0);
    gw_device_free(dev);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* What the daemon's `maintenance` op (Cyborg's disable/enable) rests on: the
 * actor of the quarantine in effect (`quarantined_by`) is the one that moved
 * the device into quarantine, nothing done while quarantined replaces it, it
 * is in the checkpoint and survives a reopen, and it goes with the release. */
static void quarantine_actor_is_kept_until_release(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_sync(reg, &id, 1, NULL), 1);
    gw_apply_options cy = GW_APPLY_OPTIONS_INIT;
    cy.actor = "cyborg";
    cy.reason = "disabled in Cyborg";
    cy.evidence = "maintenance on the read endpoint";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_QUARANTINE, &cy, NULL), 0);

    /* An operator's quarantine and a fault on top: -EALREADY, the hold stays cyborg's. */
    gw_apply_options op = GW_APPLY_OPTIONS_INIT;
    op.actor = "operator:alice(admin endpoint)";
    op.reason = "fan noise";
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_QUARANTINE, &op, NULL), -EALREADY);
    assert_int_equal(apply(reg, A3B, GW_EVENT_FAULT, "AER fatal"), -EALREADY);
    assert_int_equal(gw_registry_sync(reg, NULL, 0, NULL), 1);        /* unplugged: still the same hold */
    gw_registry_free(reg);

    reg = open_dir(dir);
    assert_int_equal(gw_registry_sync(reg, &id, 1, NULL), 1);         /* back */
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY, 4);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->quarantine_actor, "cyborg");
    assert_string_equal(dev->quarantine_reason, "disabled in Cyborg");
    assert_string_equal(dev->actor, "system");                      /* the last transition's, not the hold's */
    char *json = NULL;
    assert_int_equal(gw_device_to_json(dev, &json), 0);             /* the checkpoint's schema */
    assert_non_null(strstr(json, "\"quarantine\":{\"reason\":\"disabled in Cyborg\",\"actor\":\"cyborg\""));
    free(json);
    uint64_t seen = dev->seq;
    gw_device_free(dev);

    /* The release the daemon applies for `maintenance` off: against the seq
     * it decided on (stale: nothing), then for real. */
    cy.reason = "enabled in Cyborg";
    cy.if_seq = seen - 1;
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_RELEASE, &cy, NULL), -ESTALE);
    expect(reg, A3B, GW_STATE_QUARANTINED, GW_FLAG_DIRTY, seen);
    cy.if_seq = seen;
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_RELEASE, &cy, NULL), 0);
    gw_registry_free(reg);

    reg = open_dir(dir);
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, seen + 1);
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->quarantine_actor, "");
    assert_true(gw_device_needs_cleanup(dev));                      /* a release always goes through a clean-up */
    gw_device_free(dev);
    /* An operator's quarantine now is the operator's, also after a reopen. */
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_QUARANTINE, &op, NULL), 0);
    gw_registry_free(reg);
    reg = open_dir(dir);
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->quarantine_actor, "operator:alice(admin endpoint)");
    gw_device_free(dev);
    gw_registry_free(reg);

    gw_audit *log = audit_all(dir);
    size_t n = gw_audit_count(log);
    assert_true(n >= 6);
    const gw_transition *rel = gw_audit_get(log, n - 2);
    assert_int_equal(rel->event, GW_EVENT_RELEASE);
    assert_string_equal(rel->actor, "cyborg");
    assert_string_equal(rel->reason, "enabled in Cyborg");
    assert_string_equal(rel->evidence, "maintenance on the read endpoint");
    gw_audit_free(log);
    rm_tree(dir);
}

static void different_card_is_a_new_device(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity old = test_identity(0x3b, 0), repl = test_identity(0x3b, 1);
    assert_int_equal(gw_registry_sync(reg, &old, 1, NULL), 1);
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, NULL), 0);
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_PASSED, NULL), 0);
    expect(reg, A3B, GW_STATE_SANITIZED, 0, 3);

    assert_int_equal(gw_registry_sync(reg, &repl, 1, NULL), 2);       /* old gone, new found */
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_true(gw_identity_equal(&dev->identity, &repl));
    assert_int_equal(dev->state, GW_STATE_DISCOVERED);
    assert_int_equal(dev->flags, GW_FLAG_DIRTY);
    assert_non_null(strstr(dev->reason, "a different card at a known address"));
    gw_device_free(dev);

    gw_device **list = NULL;
    size_t n = 0;
    assert_int_equal(gw_registry_list(reg, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_true(gw_identity_equal(&list[0]->identity, &repl));       /* present first */
    assert_true(gw_identity_equal(&list[1]->identity, &old));
    assert_int_equal(list[1]->state, GW_STATE_QUARANTINED);          /* off the bus unasked */
    assert_int_equal(list[1]->flags, GW_FLAG_DIRTY | GW_FLAG_MISSING);
    assert_non_null(strstr(list[1]->reason, "replaced by a different card"));
    gw_device_list_free(list, n);

    /* the old card comes back: the replacement is gone, the old one is back,
     * dirty and still quarantined (it left the bus unasked: an operator
     * releases it, and a clean-up follows) */
    assert_int_equal(gw_registry_sync(reg, &old, 1, NULL), 2);
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_true(gw_identity_equal(&dev->identity, &old));
    assert_int_equal(dev->state, GW_STATE_QUARANTINED);
    assert_int_equal(dev->flags, GW_FLAG_DIRTY);
    assert_int_equal(dev->last_event, GW_EVENT_BACK);
    gw_device_free(dev);

    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), 7);
    assert_int_equal(gw_audit_get(log, 3)->event, GW_EVENT_GONE);
    assert_true(gw_identity_equal(&gw_audit_get(log, 3)->device, &old));
    assert_int_equal(gw_audit_get(log, 4)->event, GW_EVENT_FOUND);
    assert_true(gw_identity_equal(&gw_audit_get(log, 4)->device, &repl));
    assert_int_equal(gw_audit_get(log, 5)->event, GW_EVENT_GONE);
    assert_int_equal(gw_audit_get(log, 6)->event, GW_EVENT_BACK);
    gw_audit_free(log);
    gw_registry_free(reg);
    rm_tree(dir);
}

static void rejections_change_nothing(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    char *ck = gw_strdup_printf("%s/checkpoint", dir), *au = gw_strdup_printf("%s/audit.log", dir);
    size_t l1 = 0, l2 = 0;
    char *ck1 = slurp(ck, &l1), *au1 = slurp(au, &l2);

    assert_int_equal(apply(reg, A3B, GW_EVENT_PUBLISHED, NULL), -EPERM);
    assert_non_null(strstr(gw_error_message(), A3B));
    assert_non_null(strstr(gw_error_message(), "published"));
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_PASSED, NULL), -EPERM);
    assert_int_equal(apply(reg, A3B, GW_EVENT_RELEASE, NULL), -EPERM);
    assert_int_equal(apply(reg, A3B, GW_EVENT_DETACH_SEEN, NULL), -EALREADY);
    assert_int_equal(apply(reg, A3B, GW_EVENT_FOUND, NULL), -EINVAL);
    assert_int_equal(apply(reg, A3B, GW_EVENT_BACK, NULL), -EINVAL);
    assert_int_equal(apply(reg, "0000:3c:00.0", GW_EVENT_FAULT, "x"), -ENOENT);
    assert_int_equal(apply(reg, "3b:00.0", GW_EVENT_FAULT, "x"), -EINVAL);
    assert_int_equal(apply(reg, A3B, (gw_event)99, NULL), -EINVAL);
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.if_seq = 7;
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, &a, NULL), -ESTALE);
    gw_apply_options zero = { 0 };
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_SANITIZE, &zero, NULL), -EINVAL);
    gw_identity twice[2] = { id, test_identity(0x3b, 1) };
    assert_int_equal(gw_registry_sync(reg, twice, 2, NULL), -EINVAL);
    gw_identity bad = id;
    strcpy(bad.address, "0000:3B:00.0");
    assert_int_equal(gw_registry_observe(reg, &bad, NULL), -EINVAL);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "Bad Key", "v"), -EINVAL);

    size_t l3 = 0, l4 = 0;
    char *ck2 = slurp(ck, &l3), *au2 = slurp(au, &l4);
    assert_int_equal(l1, l3);
    assert_memory_equal(ck1, ck2, l1);
    assert_int_equal(l2, l4);
    assert_memory_equal(au1, au2, l2);
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 1);

    a.if_seq = 1;      /* the guard passes when nothing changed since */
    assert_int_equal(gw_registry_apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, &a, NULL), 0);
    free(ck1); free(ck2); free(au1); free(au2); free(ck); free(au);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* The callback runs only after the checkpoint and the audit line are on disk. */
typedef struct cb_probe {
    const char *dir;
    int calls;
    uint64_t last_seq;
    bool ok;
} cb_probe;

static void probe_cb(const gw_transition *t, const gw_device *after, void *ud)
{
    cb_probe *p = ud;
    p->calls++;
    if (t->seq != p->last_seq + 1 || after->seq != t->seq || after->state != t->to)
        p->ok = false;
    p->last_seq = t->seq;
    char *body = NULL;
    size_t len;
    if (gw_checkpoint_read(p->dir, &body, &len) < 0) {
        p->ok = false;
        return;
    }
    json_t *o = json_loads(body, 0, NULL);
    if (!o || json_integer_value(json_object_get(o, "seq")) != (json_int_t)t->seq)
        p->ok = false;
    json_decref(o);
    free(body);
    gw_audit *log = NULL;
    if (gw_audit_read(&log, p->dir, NULL) < 0 || gw_audit_count(log) != t->seq ||
        gw_audit_get(log, t->seq - 1)->event != t->event)
        p->ok = false;
    gw_audit_free(log);
}

static void callback_after_persist(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    cb_probe p = { dir, 0, 0, true };
    gw_registry_set_callback(reg, probe_cb, &p);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, NULL), 0);
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_FAILED, "reset: all-ones after FLR"), 0);
    assert_int_equal(apply(reg, A3B, GW_EVENT_RELEASE, NULL), 0);
    assert_int_equal(apply(reg, A3B, GW_EVENT_RELEASE, NULL), -EPERM);   /* no call */
    assert_int_equal(p.calls, 4);
    assert_true(p.ok);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->reason, "");
    assert_int_equal(dev->last_event, GW_EVENT_RELEASE);
    gw_device_free(dev);
    gw_registry_free(reg);
    rm_tree(dir);
}

static void recovery_at_open(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity ids[3] = { test_identity(1, 0), test_identity(2, 0), test_identity(3, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 3, NULL), 3);
    assert_int_equal(apply(reg, "0000:01:00.0", GW_EVENT_CLEANUP_STARTED, NULL), 0);
    assert_int_equal(apply(reg, "0000:02:00.0", GW_EVENT_ATTACH_SEEN, NULL), 0);
    assert_int_equal(apply(reg, "0000:03:00.0", GW_EVENT_FAULT, "AER fatal"), 0);
    gw_registry_free(reg);    /* as if the daemon died during the clean-up of 01 */

    /* read-only: sees the marker, changes nothing, takes no lock */
    gw_registry_options ro = GW_REGISTRY_OPTIONS_INIT;
    ro.state_dir = dir;
    ro.read_only = true;
    gw_registry *view = NULL;
    assert_int_equal(gw_registry_open(&view, &ro), 0);
    expect(view, "0000:01:00.0", GW_STATE_DISCOVERED, GW_FLAG_DIRTY | GW_FLAG_CLEANING, 4);
    assert_int_equal(apply(view, "0000:01:00.0", GW_EVENT_CLEANUP_PASSED, NULL), -EROFS);
    assert_int_equal(gw_registry_set_fact(view, "0000:01:00.0", "k", "v"), -EROFS);

    reg = open_dir(dir);
    gw_registry_free(view);
    expect(reg, "0000:01:00.0", GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 7);
    expect(reg, "0000:02:00.0", GW_STATE_ATTACHED, GW_FLAG_DIRTY, 5);
    expect(reg, "0000:03:00.0", GW_STATE_QUARANTINED, GW_FLAG_DIRTY, 6);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, "0000:01:00.0", &dev), 0);
    assert_true(gw_device_needs_cleanup(dev));
    assert_int_equal(dev->last_event, GW_EVENT_CLEANUP_ABORTED);
    gw_device_free(dev);
    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), 7);
    const gw_transition *t = gw_audit_get(log, 6);
    assert_int_equal(t->event, GW_EVENT_CLEANUP_ABORTED);
    assert_string_equal(t->actor, "system");
    assert_non_null(strstr(t->reason, "interrupted"));
    assert_int_equal(t->from_flags, GW_FLAG_DIRTY | GW_FLAG_CLEANING);
    assert_int_equal(t->to_flags, GW_FLAG_DIRTY);
    gw_audit_free(log);

    /* one writer per directory */
    gw_registry_options rw = GW_REGISTRY_OPTIONS_INIT;
    rw.state_dir = dir;
    gw_registry *second = NULL;
    assert_int_equal(gw_registry_open(&second, &rw), -EBUSY);
    assert_non_null(strstr(gw_error_message(), dir));
    gw_registry_free(reg);
    rm_tree(dir);
}

static void audit_filters(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity ids[2] = { test_identity(1, 0), test_identity(2, 0) };
    assert_int_equal(gw_registry_sync(reg, ids, 2, NULL), 2);   /* seq 1, 2 */
    for (int i = 0; i < 3; i++) {                               /* seq 3..14 */
        assert_int_equal(apply(reg, "0000:01:00.0", GW_EVENT_CLEANUP_STARTED, NULL), 0);
        assert_int_equal(apply(reg, "0000:01:00.0", GW_EVENT_CLEANUP_ABORTED, NULL), 0);
        assert_int_equal(apply(reg, "0000:02:00.0", GW_EVENT_CLEANUP_STARTED, NULL), 0);
        assert_int_equal(apply(reg, "0000:02:00.0", GW_EVENT_CLEANUP_ABORTED, NULL), 0);
    }
    gw_audit_filter f = GW_AUDIT_FILTER_INIT;
    f.address = "0000:02:00.0";
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, dir, &f), 0);
    assert_int_equal(gw_audit_count(log), 7);
    static const uint64_t seqs02[] = { 2, 5, 6, 9, 10, 13, 14 };
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(gw_audit_get(log, i)->seq, seqs02[i]);
    assert_null(gw_audit_get(log, 7));
    assert_false(gw_audit_truncated(log));
    gw_audit_free(log);

    f.since_ms = INT64_MAX;     /* time filter: nothing that late */
    assert_int_equal(gw_audit_read(&log, dir, &f), 0);
    assert_int_equal(gw_audit_count(log), 0);
    gw_audit_free(log);
    f.since_ms = 1;
    f.since_seq = 6;
    f.last = 2;
    assert_int_equal(gw_audit_read(&log, dir, &f), 0);
    assert_int_equal(gw_audit_count(log), 2);
    assert_true(gw_audit_truncated(log));
    assert_int_equal(gw_audit_get(log, 0)->seq, 13);
    assert_int_equal(gw_audit_get(log, 1)->seq, 14);
    char *json = NULL;
    assert_int_equal(gw_audit_to_json(log, &json), 0);
    json_t *arr = json_loads(json, 0, NULL);
    assert_int_equal(json_array_size(arr), 2);
    json_t *first = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), 13);
    assert_string_equal(json_string_value(json_object_get(first, "event")), "cleanup_started");
    assert_string_equal(json_string_value(json_object_get(first, "from")), "discovered");
    assert_string_equal(json_string_value(json_object_get(json_object_get(first, "device"),
                                                          "dsn")), "48b02dff00000020");
    json_decref(arr);
    free(json);
    gw_audit_free(log);

    f.address = "0000:02:00";
    assert_int_equal(gw_audit_read(&log, dir, &f), -EINVAL);
    gw_audit_filter zero = { 0 };
    assert_int_equal(gw_audit_read(&log, dir, &zero), -EINVAL);
    char *nodir = gw_strdup_printf("%s/nowhere", dir);
    assert_int_equal(gw_audit_read(&log, nodir, NULL), -ENOENT);
    assert_non_null(strstr(gw_error_message(), nodir));
    free(nodir);

    /* a line still being written is not returned; a bad complete line is refused */
    char *path = gw_strdup_printf("%s/audit.log", dir);
    FILE *fp = fopen(path, "a");
    fputs("{\"seq\":15,\"time", fp);
    fclose(fp);
    assert_int_equal(gw_audit_read(&log, dir, NULL), 0);
    assert_int_equal(gw_audit_count(log), 14);
    gw_audit_free(log);
    fp = fopen(path, "a");
    fputs("\n", fp);
    fclose(fp);
    assert_int_equal(gw_audit_read(&log, dir, NULL), GW_ESTATE_CORRUPT);
    assert_non_null(strstr(gw_error_message(), "audit.log:15"));
    free(path);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* A crash between the checkpoint and the audit append, and one in the middle
 * of the append: the next open completes the log from the checkpoint. */
static void audit_repaired_from_checkpoint(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    assert_int_equal(apply(reg, A3B, GW_EVENT_CLEANUP_STARTED, NULL), 0);
    assert_int_equal(apply(reg, A3B, GW_EVENT_QUARANTINE, "operator says so"), 0);
    gw_registry_free(reg);

    char *path = gw_strdup_printf("%s/audit.log", dir);
    size_t len = 0;
    char *full = slurp(path, &len);
    assert_non_null(full);
    /* drop the last two lines, then leave half of the second-last one */
    char *cut = full + len - 1;
    while (cut > full && cut[-1] != '\n')
        cut--;
    char *cut2 = cut - 1;
    while (cut2 > full && cut2[-1] != '\n')
        cut2--;
    size_t keep = (size_t)(cut2 - full) + (size_t)(cut - cut2) / 2;
    assert_int_equal(spit(path, full, keep), 0);

    reg = open_dir(dir);
    size_t len2 = 0;
    char *repaired = slurp(path, &len2);
    assert_int_equal(len2, len);
    /* same records, only the times of the repaired lines may differ: none do,
     * they are written from the journal, byte for byte */
    assert_memory_equal(repaired, full, len);
    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), 3);
    assert_int_equal(gw_audit_get(log, 2)->event, GW_EVENT_QUARANTINE);
    gw_audit_free(log);
    free(full);
    free(repaired);
    free(path);
    gw_registry_free(reg);
    rm_tree(dir);
}

typedef struct worker {
    gw_registry *reg;
    char addr[GW_ADDR_LEN];
    int rounds;
    int failures;
} worker;

static void *work(void *p)
{
    worker *w = p;
    static const gw_event cycle[] = { GW_EVENT_CLEANUP_STARTED, GW_EVENT_CLEANUP_PASSED,
                                      GW_EVENT_PUBLISHED, GW_EVENT_ATTACH_SEEN,
                                      GW_EVENT_DETACH_SEEN };
    for (int i = 0; i < w->rounds; i++)
        for (size_t e = 0; e < 5; e++)
            if (gw_registry_apply(w->reg, w->addr, cycle[e], NULL, NULL) < 0)
                w->failures++;
    return NULL;
}

typedef struct order {
    uint64_t last;
    int calls, out_of_order;
} order;

static void order_cb(const gw_transition *t, const gw_device *after, void *ud)
{
    order *o = ud;
    if (t->seq != o->last + 1)
        o->out_of_order++;
    o->last = t->seq;
    o->calls++;
}

static void threads_share_one_registry(void **state)
{
    enum { THREADS = 4, ROUNDS = 15 };
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    order ord = { 0, 0, 0 };
    gw_registry_set_callback(reg, order_cb, &ord);
    gw_identity ids[THREADS];
    worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ids[i] = test_identity(0x10 + (unsigned)i, 0);
        w[i] = (worker){ reg, "", ROUNDS, 0 };
        memcpy(w[i].addr, ids[i].address, GW_ADDR_LEN);
    }
    assert_int_equal(gw_registry_sync(reg, ids, THREADS, NULL), THREADS);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, work, &w[i]);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    const uint64_t total = THREADS + THREADS * ROUNDS * 5;
    assert_int_equal(ord.calls, total);
    assert_int_equal(ord.out_of_order, 0);
    assert_int_equal(gw_registry_seq(reg), total);
    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), total);
    for (size_t i = 0; i < total; i++)
        assert_int_equal(gw_audit_get(log, i)->seq, i + 1);
    gw_audit_free(log);
    gw_registry_free(reg);
    rm_tree(dir);
}

static void facts_and_text(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    gw_identity id = test_identity(0x3b, 0);
    id.dsn_present = false;
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "rom_sha256", "00ff"), 0);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "link_width_first", "16"), 0);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "aer_fatal_baseline", "0"), 0);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "link_width_first", NULL), 0);
    assert_int_equal(gw_registry_set_fact(reg, "0000:3c:00.0", "k", "v"), -ENOENT);

    char *long_reason = gw_xcalloc(GW_TEXT_MAX + 100, 1);
    memset(long_reason, 'x', GW_TEXT_MAX + 99);
    assert_int_equal(apply(reg, A3B, GW_EVENT_FAULT, long_reason), 0);
    free(long_reason);
    gw_registry_free(reg);

    reg = open_dir(dir);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_int_equal(dev->n_facts, 2);
    assert_string_equal(dev->facts[0].key, "aer_fatal_baseline");   /* sorted */
    assert_string_equal(dev->facts[1].value, "00ff");
    assert_null(gw_device_fact(dev, "link_width_first"));
    assert_false(dev->identity.dsn_present);
    assert_int_equal(strlen(dev->quarantine_reason), GW_TEXT_MAX + strlen(" [cut]"));
    assert_non_null(strstr(dev->quarantine_reason, "x [cut]"));
    gw_device_free(dev);

    /* invalid UTF-8 from an operator is stored, made valid, never refused */
    assert_int_equal(apply(reg, A3B, GW_EVENT_RELEASE, "caf\xc3\xa9 \xff\xfe ok"), 0);
    gw_registry_free(reg);
    reg = open_dir(dir);
    assert_int_equal(gw_registry_get(reg, A3B, &dev), 0);
    assert_string_equal(dev->reason, "caf\xc3\xa9 ?? ok");
    gw_device_free(dev);
    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), 3);    /* facts are not transitions */
    gw_audit_free(log);
    gw_registry_free(reg);
    rm_tree(dir);
}

/* A scan, a batch of pins and a batch of transitions: each persisted in one
 * checkpoint write per 32 transitions (the journal's size), everything in
 * the audit log and on disk, each item's refusal its own. */
static void batched_writes(void **state)
{
    char *dir = tmp_state_dir("reg");
    gw_registry *reg = open_dir(dir);
    enum { N = 40 };
    gw_identity ids[N];
    char addr[N][GW_ADDR_LEN];
    for (int i = 0; i < N; i++) {
        ids[i] = test_identity(0x10 + i, 0);
        memcpy(addr[i], ids[i].address, GW_ADDR_LEN);
    }
    assert_int_equal(gw_registry_sync(reg, ids, N, "scan"), N);
    assert_int_equal(gw_registry_checkpoint_writes(reg), 2);

    gw_fact_pin pins[2 * N];
    for (int i = 0; i < N; i++) {
        pins[2 * i] = (gw_fact_pin){ addr[i], "pci.class", "0300" };
        pins[2 * i + 1] = (gw_fact_pin){ addr[i], "pci.revision", "161" };
    }
    uint64_t v = gw_registry_version(reg);
    assert_int_equal(gw_registry_set_facts(reg, pins, 2 * N), 0);
    assert_int_equal(gw_registry_checkpoint_writes(reg), 3);
    assert_true(gw_registry_version(reg) > v);
    assert_int_equal(gw_registry_set_facts(reg, pins, 2 * N), 0);     /* nothing changes: no write */
    assert_int_equal(gw_registry_checkpoint_writes(reg), 3);
    gw_fact_pin unknown = { "0000:ee:00.0", "pci.class", "0300" };
    assert_int_equal(gw_registry_set_facts(reg, &unknown, 1), -ENOENT);

    gw_apply_item items[N + 2];
    for (int i = 0; i < N; i++)
        items[i] = (gw_apply_item){ .address = addr[i], .event = GW_EVENT_CLEANUP_STARTED };
    items[N] = (gw_apply_item){ .address = addr[0], .event = GW_EVENT_CLEANUP_STARTED };   /* cleaning already */
    items[N + 1] = (gw_apply_item){ .address = "0000:ee:00.0", .event = GW_EVENT_CLEANUP_STARTED };
    assert_int_equal(gw_registry_apply_many(reg, items, N + 2), N);
    assert_int_equal(gw_registry_checkpoint_writes(reg), 5);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].result, 0);
        expect(reg, addr[i], GW_STATE_DISCOVERED, GW_FLAG_DIRTY | GW_FLAG_CLEANING, items[i].seq);
    }
    assert_true(items[N].result < 0);
    assert_int_equal(items[N + 1].result, -ENOENT);
    gw_registry_free(reg);

    gw_audit *log = audit_all(dir);
    assert_int_equal(gw_audit_count(log), 2 * N);
    gw_audit_free(log);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    o.read_only = true;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, addr[N - 1], &dev), 0);
    assert_string_equal(gw_device_fact(dev, "pci.revision"), "161");
    assert_true(dev->flags & GW_FLAG_CLEANING);
    gw_device_free(dev);
    gw_registry_free(reg);
    rm_tree(dir);
}

static void in_memory_registry(void **state)
{
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, NULL), 0);
    assert_null(gw_registry_state_dir(reg));
    gw_identity id = test_identity(0x3b, 0);
    assert_int_equal(gw_registry_observe(reg, &id, "test"), 1);
    assert_int_equal(apply(reg, A3B, GW_EVENT_SANITIZE, NULL), 0);    /* a recorded request */
    expect(reg, A3B, GW_STATE_DISCOVERED, GW_FLAG_DIRTY, 2);
    assert_int_equal(gw_registry_set_fact(reg, A3B, "k", "v"), 0);
    gw_registry_free(reg);
    gw_registry_options bad = { 0, NULL, false, 0, 0 };
    assert_int_equal(gw_registry_open(&reg, &bad), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(happy_path_and_round_trip),
        cmocka_unit_test(quarantine_survives_unplug_and_restart),
        cmocka_unit_test(quarantine_actor_is_kept_until_release),
        cmocka_unit_test(different_card_is_a_new_device),
        cmocka_unit_test(rejections_change_nothing),
        cmocka_unit_test(callback_after_persist),
        cmocka_unit_test(recovery_at_open),
        cmocka_unit_test(audit_filters),
        cmocka_unit_test(audit_repaired_from_checkpoint),
        cmocka_unit_test(threads_share_one_registry),
        cmocka_unit_test(facts_and_text),
        cmocka_unit_test(batched_writes),
        cmocka_unit_test(in_memory_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
