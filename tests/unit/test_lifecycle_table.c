/* SPDX-License-Identifier: Apache-2.0 */
/* The whole (condition, event) table: every legal transition with its exact
 * next condition, every rejection with its exact error, written out here
 * independently of agent/lib/lifecycle.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <gpuwarden/lifecycle.h>

#include "util.h"

enum { d = GW_FLAG_DIRTY, c = GW_FLAG_CLEANING, m = GW_FLAG_MISSING };

typedef struct cond {
    gw_state state;
    unsigned flags;
} cond;

/* The ten conditions the table can produce, in the order of the rows below. */
static const cond conds[] = {
    { GW_STATE_DISCOVERED, d },         /* 0 */
    { GW_STATE_DISCOVERED, d | c },     /* 1 */
    { GW_STATE_DISCOVERED, d | m },     /* 2 */
    { GW_STATE_SANITIZED, 0 },          /* 3 */
    { GW_STATE_ALLOCATABLE, 0 },        /* 4 */
    { GW_STATE_ATTACHED, d },           /* 5 */
    { GW_STATE_ATTACHED, d | m },       /* 6 */
    { GW_STATE_QUARANTINED, 0 },        /* 7 */
    { GW_STATE_QUARANTINED, d },        /* 8 */
    { GW_STATE_QUARANTINED, d | m },    /* 9 */
};
#define NCONDS (sizeof conds / sizeof *conds)

/* An expected cell: a next condition (index into conds) or an error. */
#define PERM (-100)
#define ALRD (-101)
#define BUSY (-102)

/* Columns: found, cleanup_started, cleanup_passed, cleanup_failed,
 * cleanup_aborted, published, attach_seen, detach_seen, fault, quarantine,
 * release, sanitize, gone, back. */
static const int expected[NCONDS][GW_EVENT_COUNT] = {
    /* D+d   */ { ALRD, 1, PERM, PERM, PERM, PERM, 5, ALRD, 8, 8, PERM, 0, 9, ALRD },
    /* D+d+c */ { ALRD, BUSY, 3, 8, 0, PERM, 5, ALRD, 8, 8, PERM, BUSY, 9, ALRD },
    /* D+d+m */ { ALRD, PERM, PERM, PERM, PERM, PERM, 6, ALRD, 9, 9, PERM, PERM, ALRD, 0 },
    /* S     */ { ALRD, PERM, PERM, PERM, PERM, 4, 5, ALRD, 7, 7, PERM, 0, 9, ALRD },
    /* A     */ { ALRD, PERM, PERM, PERM, PERM, ALRD, 5, ALRD, 7, 7, PERM, 0, 9, ALRD },
    /* T+d   */ { ALRD, PERM, PERM, PERM, PERM, PERM, ALRD, 0, 8, 8, PERM, PERM, 6, ALRD },
    /* T+d+m */ { ALRD, PERM, PERM, PERM, PERM, PERM, ALRD, 2, 9, 9, PERM, PERM, ALRD, 5 },
    /* Q     */ { ALRD, PERM, PERM, PERM, PERM, PERM, PERM, PERM, ALRD, ALRD, 0, PERM, 9, ALRD },
    /* Q+d   */ { ALRD, PERM, PERM, PERM, PERM, PERM, PERM, PERM, ALRD, ALRD, 0, PERM, 9, ALRD },
    /* Q+d+m */ { ALRD, PERM, PERM, PERM, PERM, PERM, PERM, PERM, ALRD, ALRD, 2, PERM, ALRD, 8 },
};

static int cond_index(gw_state s, unsigned f)
{
    for (size_t i = 0; i < NCONDS; i++)
        if (conds[i].state == s && conds[i].flags == f)
            return (int)i;
    return -1;
}

static void walk_every_cell(void **state)
{
    int legal = 0, rejected = 0;
    for (size_t i = 0; i < NCONDS; i++) {
        for (int e = 0; e < GW_EVENT_COUNT; e++) {
            char where[128], cbuf[64];
            snprintf(where, sizeof where, "%s on %s", gw_event_name((gw_event)e),
                     gw_condition_format(conds[i].state, conds[i].flags, cbuf, sizeof cbuf));
            gw_state ns = (gw_state)77;
            unsigned nf = 0xdead;
            int r = gw_lifecycle_next(conds[i].state, conds[i].flags, (gw_event)e, &ns, &nf);
            int want = expected[i][e];
            if (want >= 0) {
                if (r != 0)
                    fail_msg("%s: expected -> %s, got %d (%s)", where,
                             gw_condition_format(conds[want].state, conds[want].flags, cbuf,
                                                 sizeof cbuf), r, gw_error_message());
                if (ns != conds[want].state || nf != conds[want].flags)
                    fail_msg("%s: expected -> %d, got %s", where, want,
                             gw_condition_format(ns, nf, cbuf, sizeof cbuf));
                legal++;
            } else {
                int code = want == PERM ? -EPERM : want == BUSY ? -EBUSY : -EALREADY;
                if (r != code)
                    fail_msg("%s: expected error %d, got %d", where, code, r);
                /* nothing is stored on error, and the message names the event and state */
                assert_int_equal(ns, 77);
                assert_int_equal(nf, 0xdead);
                assert_non_null(strstr(gw_error_message(), gw_event_name((gw_event)e)));
                assert_non_null(strstr(gw_error_message(), gw_state_name(conds[i].state)));
                rejected++;
            }
        }
    }
    /* 140 cells: counted so that a change to the table shows up here too */
    assert_int_equal(legal, 42);
    assert_int_equal(rejected, 98);
}

/* Every (state, flags) pair outside the ten is refused as inconsistent, and
 * the ten are exactly what the table reaches from a newly found device. */
static void conditions_closed_and_reachable(void **state)
{
    for (int s = 0; s < GW_STATE_COUNT; s++) {
        for (unsigned f = 0; f < 16; f++) {
            int r = gw_lifecycle_next((gw_state)s, f, GW_EVENT_FAULT, NULL, NULL);
            if (cond_index((gw_state)s, f) < 0)
                assert_int_equal(r, -EINVAL);
            else
                assert_int_not_equal(r, -EINVAL);
        }
    }
    assert_int_equal(gw_lifecycle_next(GW_STATE_NONE, 0, GW_EVENT_FAULT, NULL, NULL), -EINVAL);
    assert_int_equal(gw_lifecycle_next(GW_STATE_DISCOVERED, d, GW_EVENT_COUNT, NULL, NULL), -EINVAL);

    bool seen[NCONDS] = { false };
    int queue[NCONDS], head = 0, tail = 0;
    int start = cond_index(GW_LIFECYCLE_INITIAL_STATE, GW_LIFECYCLE_INITIAL_FLAGS);
    assert_int_equal(start, 0);
    seen[start] = true;
    queue[tail++] = start;
    while (head < tail) {
        int i = queue[head++];
        for (int e = 0; e < GW_EVENT_COUNT; e++) {
            gw_state ns;
            unsigned nf;
            if (gw_lifecycle_next(conds[i].state, conds[i].flags, (gw_event)e, &ns, &nf) < 0)
                continue;
            int j = cond_index(ns, nf);
            assert_true(j >= 0);
            if (!seen[j]) {
                seen[j] = true;
                queue[tail++] = j;
            }
        }
    }
    assert_int_equal(tail, (int)NCONDS);
}

/* The invariants, stated on the table itself. */
static void table_invariants(void **state)
{
    for (size_t i = 0; i < NCONDS; i++) {
        for (int e = 0; e < GW_EVENT_COUNT; e++) {
            gw_state ns;
            unsigned nf;
            if (gw_lifecycle_next(conds[i].state, conds[i].flags, (gw_event)e, &ns, &nf) < 0)
                continue;
            /* allocatable only from sanitized by publishing */
            if (ns == GW_STATE_ALLOCATABLE && conds[i].state != GW_STATE_ALLOCATABLE) {
                assert_int_equal(conds[i].state, GW_STATE_SANITIZED);
                assert_int_equal(e, GW_EVENT_PUBLISHED);
            }
            /* sanitized only by a passing clean-up that was running */
            if (ns == GW_STATE_SANITIZED && conds[i].state != GW_STATE_SANITIZED) {
                assert_int_equal(e, GW_EVENT_CLEANUP_PASSED);
                assert_true(conds[i].flags & c);
                assert_false(conds[i].flags & m);
            }
            /* only release leaves quarantine */
            if (conds[i].state == GW_STATE_QUARANTINED && ns != GW_STATE_QUARANTINED)
                assert_int_equal(e, GW_EVENT_RELEASE);
            /* dirty is cleared by a passing clean-up only */
            if ((conds[i].flags & d) && !(nf & d))
                assert_int_equal(e, GW_EVENT_CLEANUP_PASSED);
            /* the dirtying events always leave the device dirty */
            if (e == GW_EVENT_ATTACH_SEEN || e == GW_EVENT_DETACH_SEEN || e == GW_EVENT_RELEASE ||
                e == GW_EVENT_SANITIZE || e == GW_EVENT_GONE)
                assert_true(nf & d);
        }
    }
}

static void names_round_trip(void **state)
{
    for (int e = 0; e < GW_EVENT_COUNT; e++) {
        gw_event back;
        assert_int_equal(gw_event_from_name(gw_event_name((gw_event)e), &back), 0);
        assert_int_equal(back, e);
    }
    for (int s = -1; s < GW_STATE_COUNT; s++) {
        gw_state back;
        assert_int_equal(gw_state_from_name(gw_state_name((gw_state)s), &back), 0);
        assert_int_equal(back, s);
    }
    gw_event ev;
    assert_int_equal(gw_event_from_name("teleport", &ev), -EINVAL);
    assert_string_equal(gw_event_name(GW_EVENT_ATTACH_SEEN), "attach_seen");
    assert_string_equal(gw_state_name((gw_state)9), "invalid");
    char buf[64];
    assert_string_equal(gw_condition_format(GW_STATE_DISCOVERED, d | c | m, buf, sizeof buf),
                        "discovered+dirty+cleaning+missing");
    assert_string_equal(gw_flag_name(GW_FLAG_MISSING), "missing");
    assert_null(gw_flag_name(3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(walk_every_cell),
        cmocka_unit_test(conditions_closed_and_reachable),
        cmocka_unit_test(table_invariants),
        cmocka_unit_test(names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
