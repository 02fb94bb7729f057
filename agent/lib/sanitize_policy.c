/* Names of verdicts and steps, the policy copy and its defaults. */
#include <string.h>

#include "sanitize_internal.h"

static const char *const step_names[GW_STEP_COUNT] = {
    [GW_STEP_NOT_IN_USE] = "not_in_use", [GW_STEP_BIND] = "bind",
    [GW_STEP_RESET] = "reset",           [GW_STEP_HEALTH] = "health",
    [GW_STEP_ISOLATION] = "isolation",   [GW_STEP_FIRMWARE] = "firmware",
    [GW_STEP_HOOKS] = "hooks",
};

/* Defaults sized for real hardware: a bus reset with its settle time takes a
 * few seconds, a 1 MiB ROM read through sysfs about a second. */
static const unsigned int default_timeout_ms[GW_STEP_COUNT] = {
    [GW_STEP_NOT_IN_USE] = 10000, [GW_STEP_BIND] = 30000,     [GW_STEP_RESET] = 60000,
    [GW_STEP_HEALTH] = 10000,     [GW_STEP_ISOLATION] = 10000, [GW_STEP_FIRMWARE] = 60000,
    [GW_STEP_HOOKS] = 600000,
};

GW_EXTERN const char *gw_verdict_name(gw_verdict v)
{
    switch (v) {
    case GW_VERDICT_PASS: return "pass";
    case GW_VERDICT_FAIL: return "fail";
    case GW_VERDICT_SKIP: return "skip";
    }
    return "invalid";
}

GW_EXTERN const char *gw_step_name(gw_step_id step)
{
    if ((unsigned)step >= GW_STEP_COUNT)
        return "invalid";
    return step_names[step];
}

GW_EXTERN int gw_step_from_name(const char *name, gw_step_id *out)
{
    for (int i = 0; name && i < GW_STEP_COUNT; i++) {
        if (!strcmp(name, step_names[i])) {
            *out = (gw_step_id)i;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown clean-up step '%s'", name ? name : "(null)");
}

unsigned int gw_step_timeout_ms(const gw_sanitize_policy *pol, gw_step_id id)
{
    if ((unsigned)id >= GW_STEP_COUNT)
        return 0;
    return pol->timeout_ms[id] ? pol->timeout_ms[id] : default_timeout_ms[id];
}

static bool is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

static bool valid_rom_id(const char *id)
{
    /* "vvvv:dddd" or "vvvv:dddd:ssss:ssss" */
    size_t n = strlen(id);
    if (n != 9 && n != 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool colon = (i % 5) == 4;
        if (colon ? id[i] != ':' : !strchr("0123456789abcdef", id[i]))
            return false;
    }
    return true;
}

static void spolicy_free(gw_spolicy *p)
{
    if (!p)
        return;
    for (size_t i = 0; p->allow && i < p->pol.n_rom_allowlist; i++) {
        free((char *)p->allow[i].id);
        free((char *)p->allow[i].sha256);
    }
    free(p->allow);
    for (size_t i = 0; p->addresses && i < p->pol.n_manage_addresses; i++)
        free(p->addresses[i]);
    free(p->addresses);
    free(p->vendors);
    free(p->hooks_dir);
    free(p);
}

int gw_spolicy_new(gw_spolicy **out, const gw_sanitize_policy *in)
{
    gw_sanitize_policy defaults = GW_SANITIZE_POLICY_INIT;
    if (!in)
        in = &defaults;
    if (in->version != GW_SANITIZE_POLICY_VERSION)
        return gw_error_set(-EINVAL, "sanitize policy: version %u, expected %u", in->version,
                            GW_SANITIZE_POLICY_VERSION);
    if (in->isolation != GW_ISOLATION_FAIL && in->isolation != GW_ISOLATION_WARN)
        return gw_error_set(-EINVAL, "sanitize policy: isolation policy %d is neither fail nor warn", in->isolation);
    if ((in->n_rom_allowlist && !in->rom_allowlist) || (in->n_manage_vendors && !in->manage_vendors) ||
        (in->n_manage_addresses && !in->manage_addresses))
        return gw_error_set(-EINVAL, "sanitize policy: a list has a count but no array");
    for (size_t i = 0; i < in->n_rom_allowlist; i++) {
        const gw_rom_allow *a = &in->rom_allowlist[i];
        if (!a->id || !valid_rom_id(a->id))
            return gw_error_set(-EINVAL, "sanitize policy: ROM allowlist entry %zu: id '%s' is not "
                                "vvvv:dddd[:ssss:ssss] in lower-case hex", i, a->id ? a->id : "(null)");
        if (!a->sha256 || !is_hex(a->sha256, 64))
            return gw_error_set(-EINVAL, "sanitize policy: ROM allowlist entry %zu (%s): sha256 is not 64 "
                                "lower-case hex digits", i, a->id);
    }
    for (size_t i = 0; i < in->n_manage_addresses; i++)
        if (!in->manage_addresses[i] || !gw_is_bdf(in->manage_addresses[i]))
            return gw_error_set(-EINVAL, "sanitize policy: managed address '%s' is not dddd:bb:dd.f",
                                in->manage_addresses[i] ? in->manage_addresses[i] : "(null)");

    gw_spolicy *p = gw_xcalloc(1, sizeof *p);
    atomic_init(&p->refs, 1);
    p->pol = *in;
    p->hooks_dir = gw_xstrdup(in->hooks_dir ? in->hooks_dir : GW_DEFAULT_HOOKS_DIR);
    p->pol.hooks_dir = p->hooks_dir;
    if (!p->pol.hook_timeout_ms)
        p->pol.hook_timeout_ms = 60000;
    for (int s = 0; s < GW_STEP_COUNT; s++)
        p->pol.timeout_ms[s] = gw_step_timeout_ms(in, (gw_step_id)s);
    if (in->n_rom_allowlist) {
        p->allow = gw_xcalloc(in->n_rom_allowlist, sizeof *p->allow);
        for (size_t i = 0; i < in->n_rom_allowlist; i++) {
            p->allow[i].id = gw_xstrdup(in->rom_allowlist[i].id);
            p->allow[i].sha256 = gw_xstrdup(in->rom_allowlist[i].sha256);
        }
    }
    p->pol.rom_allowlist = p->allow;
    if (in->n_manage_vendors) {
        p->vendors = gw_xcalloc(in->n_manage_vendors, sizeof *p->vendors);
        memcpy(p->vendors, in->manage_vendors, in->n_manage_vendors * sizeof *p->vendors);
    }
    p->pol.manage_vendors = p->vendors;
    if (in->n_manage_addresses) {
        p->addresses = gw_xcalloc(in->n_manage_addresses, sizeof *p->addresses);
        for (size_t i = 0; i < in->n_manage_addresses; i++)
            p->addresses[i] = gw_xstrdup(in->manage_addresses[i]);
    }
    p->pol.manage_addresses = (const char *const *)p->addresses;
    *out = p;
    return 0;
}

gw_spolicy *gw_spolicy_ref(gw_spolicy *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void gw_spolicy_unref(gw_spolicy *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        spolicy_free(p);
}
