/* SPDX-License-Identifier: Apache-2.0 */
/* Property test: random events (operator commands, clean-up results, VM
 * attach/detach, scans with unplugged and swapped cards) over several
 * devices. Whatever happens, no device becomes sanitized or allocatable
 * without a passing clean-up since it was last found, attached, detached,
 * released, asked to be sanitized or lost, and no quarantine is ever left
 * except by release. Seeded and reproducible: GW_PROPERTY_SEED=<seed>
 * replays a run, GW_PROPERTY_EVENTS sets its length (default 100000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "lifecycle_helpers.h"
#include "util.h"

#define ADDRS 6
#define CARDS 2
#define IDS (ADDRS * CARDS)

typedef struct shadow {
    bool exists;
    gw_state state;
    unsigned flags;
    bool passed_since;      /* a passing clean-up since the last dirtying event */
    bool quarantined;
} shadow;

typedef struct run {
    gw_registry *reg;
    shadow sh[IDS];
    uint64_t calls, last_seq;
    uint64_t ok[GW_EVENT_COUNT];
    uint64_t rejected, allocatable_reached, quarantine_through_unplug;
    char failure[512];
} run;

static int id_index(const gw_identity *id)
{
    for (unsigned a = 0; a < ADDRS; a++)
        for (unsigned c = 0; c < CARDS; c++) {
            gw_identity t = test_identity(0x10 + a, c);
            if (gw_identity_equal(&t, id))
                return (int)(a * CARDS + c);
        }
    return -1;
}

#define FAILED(r, ...) do { if (!(r)->failure[0]) \
    snprintf((r)->failure, sizeof (r)->failure, __VA_ARGS__); } while (0)

static bool dirtying(gw_event e)
{
    return e == GW_EVENT_FOUND || e == GW_EVENT_ATTACH_SEEN || e == GW_EVENT_DETACH_SEEN ||
           e == GW_EVENT_RELEASE || e == GW_EVENT_SANITIZE || e == GW_EVENT_GONE ||
           e == GW_EVENT_CLEANUP_STARTED;
}

/* Every transition, as the registry announces it, against the model. */
static void on_transition(const gw_transition *t, const gw_device *after, void *ud)
{
    run *r = ud;
    r->calls++;
    if (t->seq != r->last_seq + 1)
        FAILED(r, "seq %" PRIu64 " after %" PRIu64, t->seq, r->last_seq);
    r->last_seq = t->seq;
    int i = id_index(&t->device);
    if (i < 0) {
        FAILED(r, "unknown identity %s", t->device.address);
        return;
    }
    shadow *s = &r->sh[i];
    if (t->event == GW_EVENT_FOUND) {
        if (s->exists)
            FAILED(r, "found twice: %s", t->device.address);
        s->exists = true;
    } else if (!s->exists || t->from != s->state || t->from_flags != s->flags) {
        FAILED(r, "seq %" PRIu64 ": from %s/%x but the model has %s/%x", t->seq,
               gw_state_name(t->from), t->from_flags, gw_state_name(s->state), s->flags);
    }
    if (t->event == GW_EVENT_CLEANUP_PASSED)
        s->passed_since = true;
    else if (dirtying(t->event))
        s->passed_since = false;

    if (t->to == GW_STATE_QUARANTINED && !s->quarantined) {
        if (t->event != GW_EVENT_QUARANTINE && t->event != GW_EVENT_FAULT &&
            t->event != GW_EVENT_CLEANUP_FAILED && t->event != GW_EVENT_GONE)
            FAILED(r, "quarantined by %s", gw_event_name(t->event));
        s->quarantined = true;
    } else if (s->quarantined && t->to != GW_STATE_QUARANTINED) {
        if (t->event != GW_EVENT_RELEASE)
            FAILED(r, "seq %" PRIu64 ": quarantine lost by %s", t->seq, gw_event_name(t->event));
        s->quarantined = false;
    }
    if (s->quarantined && t->event == GW_EVENT_BACK)
        r->quarantine_through_unplug++;
    if ((t->to == GW_STATE_SANITIZED || t->to == GW_STATE_ALLOCATABLE) &&
        (!s->passed_since || (t->to_flags & GW_FLAG_DIRTY)))
        FAILED(r, "seq %" PRIu64 ": %s %s without a passing clean-up since it was dirtied",
               t->seq, t->device.address, gw_state_name(t->to));
    if (t->to == GW_STATE_ALLOCATABLE)
        r->allocatable_reached++;
    if (after->state != t->to || after->flags != t->to_flags || after->seq != t->seq)
        FAILED(r, "seq %" PRIu64 ": record disagrees with its transition", t->seq);
    s->state = t->to;
    s->flags = t->to_flags;
    r->ok[t->event]++;
}

static void check_record(run *r, const gw_device *d)
{
    int i = id_index(&d->identity);
    if (i < 0 || !r->sh[i].exists) {
        FAILED(r, "record %s not in the model", d->identity.address);
        return;
    }
    const shadow *s = &r->sh[i];
    if (d->state != s->state || d->flags != s->flags)
        FAILED(r, "%s: registry %s/%x, model %s/%x", d->identity.address,
               gw_state_name(d->state), d->flags, gw_state_name(s->state), s->flags);
    if ((d->state == GW_STATE_QUARANTINED) != s->quarantined)
        FAILED(r, "%s: quarantine mismatch", d->identity.address);
    if ((d->state == GW_STATE_ALLOCATABLE || d->state == GW_STATE_SANITIZED) &&
        (!s->passed_since || d->flags))
        FAILED(r, "%s: %s without a passing clean-up", d->identity.address,
               gw_state_name(d->state));
}

static void check_all(run *r)
{
    gw_device **list = NULL;
    size_t n = 0;
    if (gw_registry_list(r->reg, &list, &n) < 0) {
        FAILED(r, "list: %s", gw_error_message());
        return;
    }
    size_t present_per_addr[ADDRS] = { 0 };
    for (size_t k = 0; k < n; k++) {
        check_record(r, list[k]);
        if (!(list[k]->flags & GW_FLAG_MISSING))
            present_per_addr[id_index(&list[k]->identity) / CARDS]++;
    }
    for (unsigned a = 0; a < ADDRS; a++)
        if (present_per_addr[a] > 1)
            FAILED(r, "two present records at one address");
    gw_device_list_free(list, n);
}

/* Event weights: uniform choice would keep most devices quarantined, so the
 * clean-up path is favoured enough to reach allocatable often. */
static const unsigned weights[GW_EVENT_COUNT] = {
    [GW_EVENT_FOUND] = 1, [GW_EVENT_CLEANUP_STARTED] = 4, [GW_EVENT_CLEANUP_PASSED] = 4,
    [GW_EVENT_CLEANUP_FAILED] = 1, [GW_EVENT_CLEANUP_ABORTED] = 1, [GW_EVENT_PUBLISHED] = 4,
    [GW_EVENT_ATTACH_SEEN] = 2, [GW_EVENT_DETACH_SEEN] = 2, [GW_EVENT_FAULT] = 1,
    [GW_EVENT_QUARANTINE] = 1, [GW_EVENT_RELEASE] = 3, [GW_EVENT_SANITIZE] = 1,
    [GW_EVENT_GONE] = 1, [GW_EVENT_BACK] = 1,
};

static gw_event pick_event(uint64_t *rng)
{
    unsigned total = 0;
    for (int e = 0; e < GW_EVENT_COUNT; e++)
        total += weights[e];
    unsigned x = rng_below(rng, total);
    for (int e = 0; e < GW_EVENT_COUNT; e++) {
        if (x < weights[e])
            return (gw_event)e;
        x -= weights[e];
    }
    return GW_EVENT_FAULT;
}

static const char *const reasons[] = { "fan noise", "AER fatal", "reset: all-ones", "hooks: exit 1" };

static void step(run *r, uint64_t *rng)
{
    if (rng_below(rng, 100) < 3) {
        gw_identity bus[ADDRS];
        size_t n = 0;
        for (unsigned a = 0; a < ADDRS; a++) {
            unsigned p = rng_below(rng, 10);
            if (p >= 1)
                bus[n++] = test_identity(0x10 + a, p >= 9 ? 1 : 0);
        }
        if (gw_registry_sync(r->reg, bus, n, "scan") < 0)
            FAILED(r, "sync: %s", gw_error_message());
        return;
    }
    unsigned a = rng_below(rng, ADDRS);
    char addr[GW_ADDR_LEN];
    snprintf(addr, sizeof addr, "0000:%02x:00.0", 0x10 + a);
    gw_event ev = pick_event(rng);
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.reason = rng_below(rng, 10) ? reasons[rng_below(rng, 4)] : NULL;
    o.actor = rng_below(rng, 2) ? "operator:root(0)" : NULL;

    gw_device *before = NULL;
    int have = gw_registry_get(r->reg, addr, &before);
    if (have == 0 && rng_below(rng, 10) == 0)
        o.if_seq = before->seq - rng_below(rng, 2);
    uint64_t calls = r->calls;
    int rc = gw_registry_apply(r->reg, addr, ev, &o, NULL);

    /* what the registry answers must be what the table says */
    int want;
    if (ev == GW_EVENT_FOUND || ev == GW_EVENT_BACK)
        want = -EINVAL;
    else if ((ev == GW_EVENT_QUARANTINE || ev == GW_EVENT_FAULT ||
              ev == GW_EVENT_CLEANUP_FAILED) && !o.reason)
        want = -EINVAL;
    else if (have < 0)
        want = -ENOENT;
    else if (o.if_seq && o.if_seq != before->seq)
        want = -ESTALE;
    else
        want = gw_lifecycle_next(before->state, before->flags, ev, NULL, NULL);
    if (rc != want)
        FAILED(r, "%s %s: registry %d, expected %d", addr, gw_event_name(ev), rc, want);
    if (rc == 0 && r->calls != calls + 1)
        FAILED(r, "%s %s: %" PRIu64 " announcements", addr, gw_event_name(ev), r->calls - calls);
    if (rc < 0) {
        r->rejected++;
        if (r->calls != calls)
            FAILED(r, "rejected %s announced a transition", gw_event_name(ev));
        gw_device *after = NULL;
        if (have == 0 && gw_registry_get(r->reg, addr, &after) == 0 &&
            (after->seq != before->seq || after->state != before->state ||
             after->flags != before->flags))
            FAILED(r, "rejected %s changed %s", gw_event_name(ev), addr);
        gw_device_free(after);
    }
    gw_device_free(before);
    gw_device *now = NULL;
    if (gw_registry_get(r->reg, addr, &now) == 0)
        check_record(r, now);
    gw_device_free(now);
}

static uint64_t env_count(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static void run_events(run *r, uint64_t n, uint64_t seed)
{
    uint64_t rng = seed;
    gw_registry_set_callback(r->reg, on_transition, r);
    for (uint64_t k = 0; k < n && !r->failure[0]; k++) {
        step(r, &rng);
        if (k % 1000 == 999)
            check_all(r);
        if (r->failure[0])
            fail_msg("after %" PRIu64 " events (seed %" PRIu64 "): %s", k + 1, seed, r->failure);
    }
    check_all(r);
    if (r->failure[0])
        fail_msg("seed %" PRIu64 ": %s", seed, r->failure);
}

static void hundred_thousand_random_events(void **state)
{
    uint64_t seed = test_seed("GW_PROPERTY_SEED");
    uint64_t n = env_count("GW_PROPERTY_EVENTS", 100000);
    print_message("property seed: %" PRIu64 " (GW_PROPERTY_SEED=%" PRIu64 " replays), %" PRIu64
                  " events\n", seed, seed, n);
    run *r = calloc(1, sizeof *r);
    assert_int_equal(gw_registry_open(&r->reg, NULL), 0);
    run_events(r, n, seed);
    uint64_t transitions = 0;
    for (int e = 0; e < GW_EVENT_COUNT; e++)
        transitions += r->ok[e];
    print_message("  %" PRIu64 " transitions, %" PRIu64 " rejected, allocatable %" PRIu64
                  " times, %" PRIu64 " quarantines kept through unplug/replug\n", transitions,
                  r->rejected, r->allocatable_reached, r->quarantine_through_unplug);
    /* the generator must reach the interesting places, or the test proves little */
    if (n >= 100000) {
        assert_true(r->allocatable_reached >= 200);
        assert_true(r->quarantine_through_unplug >= 100);
        assert_int_equal(r->ok[GW_EVENT_FOUND], IDS);   /* each card once, ever */
        for (int e = 1; e < GW_EVENT_COUNT; e++)
            if (r->ok[e] < 50)
                fail_msg("event %s happened only %" PRIu64 " times", gw_event_name((gw_event)e),
                         r->ok[e]);
    }
    gw_registry_free(r->reg);
    free(r);
}

/* The same on disk: after the run, a reopened registry equals the one in
 * memory, and replaying the audit log gives every record's condition. */
static void persisted_run_reloads_identically(void **state)
{
    uint64_t seed = test_seed("GW_PROPERTY_SEED") + 1;
    uint64_t n = env_count("GW_PROPERTY_DISK_EVENTS", 600);
    print_message("persisted property seed: %" PRIu64 ", %" PRIu64 " events\n", seed, n);
    char *dir = tmp_state_dir("prop");
    run *r = calloc(1, sizeof *r);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    assert_int_equal(gw_registry_open(&r->reg, &o), 0);
    run_events(r, n, seed);

    gw_device **before = NULL, **after = NULL;
    size_t nb = 0, na = 0;
    assert_int_equal(gw_registry_list(r->reg, &before, &nb), 0);
    gw_registry_free(r->reg);
    /* read-only: no recovery of a clean-up left running by the last event */
    o.read_only = true;
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    assert_int_equal(gw_registry_seq(reg), r->last_seq);
    assert_int_equal(gw_registry_list(reg, &after, &na), 0);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        char *a = NULL, *b = NULL;
        assert_int_equal(gw_device_to_json(before[i], &b), 0);
        assert_int_equal(gw_device_to_json(after[i], &a), 0);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }

    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, dir, NULL), 0);
    assert_int_equal(gw_audit_count(log), r->last_seq);
    shadow replay[IDS] = { 0 };
    for (size_t k = 0; k < gw_audit_count(log); k++) {
        const gw_transition *t = gw_audit_get(log, k);
        assert_int_equal(t->seq, k + 1);
        int i = id_index(&t->device);
        assert_true(i >= 0);
        if (t->event != GW_EVENT_FOUND) {
            assert_int_equal(t->from, replay[i].state);
            assert_int_equal(t->from_flags, replay[i].flags);
        }
        replay[i].exists = true;
        replay[i].state = t->to;
        replay[i].flags = t->to_flags;
    }
    for (size_t k = 0; k < na; k++) {
        int i = id_index(&after[k]->identity);
        assert_int_equal(after[k]->state, replay[i].state);
        assert_int_equal(after[k]->flags, replay[i].flags);
    }
    gw_audit_free(log);
    gw_device_list_free(before, nb);
    gw_device_list_free(after, na);
    gw_registry_free(reg);
    free(r);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hundred_thousand_random_events),
        cmocka_unit_test(persisted_run_reloads_identically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
