/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the audit log tests (rotation, index): a registry with a
 * small rotating audit log, and records made in pairs. Header-only (static);
 * include after cmocka.h. */
#ifndef GW_TEST_AUDIT_HELPERS_H
#define GW_TEST_AUDIT_HELPERS_H

#include <stdint.h>

#include <gpuwarden/registry.h>

/* A registry in `dir` whose audit log rotates at `bytes`, keeping `keep` segments. */
static inline gw_registry *audit_reg_open(const char *dir, uint64_t bytes, unsigned keep)
{
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    o.audit_segment_bytes = bytes;
    o.audit_segments = keep;
    gw_registry *reg = NULL;
    assert_int_equal(gw_registry_open(&reg, &o), 0);
    return reg;
}

/* `pairs` quarantine + release of `address`: two records each. */
static inline void audit_churn(gw_registry *reg, const char *address, int pairs, const char *reason)
{
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.actor = "operator:test(0)";
    for (int i = 0; i < pairs; i++) {
        a.reason = reason;
        assert_int_equal(gw_registry_apply(reg, address, GW_EVENT_QUARANTINE, &a, NULL), 0);
        a.reason = NULL;
        assert_int_equal(gw_registry_apply(reg, address, GW_EVENT_RELEASE, &a, NULL), 0);
    }
}

#endif
