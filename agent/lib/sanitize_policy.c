/* Names of verdicts and steps, the policy copy and its defaults. */
#include <string.h>

#include "sanitize_internal.h"

static const char *const step_names[GW_STEP_COUNT] = {
    [GW_STEP_NOT_IN_USE] = "not_in_use", [GW_STEP_BIND] = "bind",
    [GW_STEP_RESET] = "reset",           [GW_STEP_HEALTH] = "health",
    [GW_STEP_ISOLATION] = "isolation",   [GW_STEP_FIRMWARE] = "firmware",
    [GW_STEP_HOOKS] = "hooks",           [GW_STEP_SCRUB] = "scrub",
};

/* Defaults sized for real hardware: a bus reset with its settle time takes a
 * few seconds, a 1 MiB ROM read through sysfs about a second, a scrub of a
 * large BAR minutes (see docs/sanitize.md for measured rates). */
static const unsigned int default_timeout_ms[GW_STEP_COUNT] = {
    [GW_STEP_NOT_IN_USE] = 10000, [GW_STEP_BIND] = 30000,     [GW_STEP_RESET] = 60000,
    [GW_STEP_HEALTH] = 10000,     [GW_STEP_ISOLATION] = 10000, [GW_STEP_FIRMWARE] = 60000,
    [GW_STEP_HOOKS] = 600000,     [GW_STEP_SCRUB] = 600000,
};

static const char *const reset_names[] = {
    [GW_RESET_AUTO] = "auto", [GW_RESET_FLR] = "flr", [GW_RESET_BUS] = "bus", [GW_RESET_FLR_BUS] = "flr+bus",
};
static const char *const scrub_names[] = {
    [GW_SCRUB_NONE] = "none", [GW_SCRUB_BAR] = "bar", [GW_SCRUB_DRIVER] = "driver",
};
#define N_RESET (sizeof reset_names / sizeof reset_names[0])
#define N_SCRUB (sizeof scrub_names / sizeof scrub_names[0])

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

GW_EXTERN const char *gw_reset_choice_name(gw_reset_choice c)
{
    return (unsigned)c < N_RESET ? reset_names[c] : "invalid";
}

GW_EXTERN int gw_reset_choice_from_name(const char *name, gw_reset_choice *out)
{
    for (size_t i = 0; name && i < N_RESET; i++) {
        if (!strcmp(name, reset_names[i])) {
            *out = (gw_reset_choice)i;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown reset '%s' (auto, flr, bus or flr+bus)", name ? name : "(null)");
}

GW_EXTERN const char *gw_scrub_method_name(gw_scrub_method m)
{
    return (unsigned)m < N_SCRUB ? scrub_names[m] : "invalid";
}

GW_EXTERN int gw_scrub_method_from_name(const char *name, gw_scrub_method *out)
{
    for (size_t i = 0; name && i < N_SCRUB; i++) {
        if (!strcmp(name, scrub_names[i])) {
            *out = (gw_scrub_method)i;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown scrub method '%s' (none, bar or driver)", name ? name : "(null)");
}

static int parse_uint(const char *key, const char *value, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long n = value && *value != '-' ? strtoul(value, &end, 10) : 0;
    if (!value || *value == '-' || !*value || errno || *end || n > max)
        return gw_error_set(-EINVAL, "%s: '%s' is not a number from 0 to %lu", key, value ? value : "(null)", max);
    *out = n;
    return 0;
}

static int parse_fraction(const char *value, double *out)
{
    char *end;
    errno = 0;
    double f = value ? strtod(value, &end) : 0.0;
    if (!value || !*value || errno || *end || !(f > 0.0 && f <= 1.0))
        return gw_error_set(-EINVAL, "scrub_verify_fraction: '%s' is not a number with 0 < f <= 1 (1 = read back "
                            "every byte)", value ? value : "(null)");
    *out = f;
    return 0;
}

GW_EXTERN int gw_model_policy_set(gw_model_policy *m, const char *key, const char *value)
{
    if (!m || !key)
        return gw_error_set(-EINVAL, "gw_model_policy_set: NULL argument");
    unsigned long n;
    int r;
    if (!strcmp(key, "reset")) {
        if ((r = gw_reset_choice_from_name(value, &m->reset)) < 0)
            return gw_error_set(r, "reset: '%s' is not auto, flr, bus or flr+bus", value ? value : "(null)");
        return 0;
    }
    if (!strcmp(key, "scrub")) {
        gw_scrub_method sm;
        if ((r = gw_scrub_method_from_name(value, &sm)) < 0)
            return gw_error_set(r, "scrub: '%s' is not none or bar", value ? value : "(null)");
        if (sm == GW_SCRUB_DRIVER)
            return gw_error_set(-EOPNOTSUPP, "scrub: 'driver' is not implemented in this version (use bar or "
                                "none)");
        m->scrub = sm;
        return 0;
    }
    if (!strcmp(key, "scrub_function")) {
        if ((r = parse_uint(key, value, 7, &n)) < 0)
            return r;
        m->scrub_function = (int)n;
        return 0;
    }
    if (!strcmp(key, "scrub_bar")) {
        if ((r = parse_uint(key, value, 5, &n)) < 0)
            return r;
        m->scrub_bar = (unsigned)n;
        return 0;
    }
    if (!strcmp(key, "scrub_verify_fraction"))
        return parse_fraction(value, &m->scrub_verify_fraction);
    return gw_error_set(-EINVAL, "unknown model setting '%s' (reset, scrub, scrub_function, scrub_bar, "
                        "scrub_verify_fraction)", key);
}

/* Steps after hooks came with policy version 2 and have a field each. */
static unsigned int configured_timeout(const gw_sanitize_policy *pol, gw_step_id id)
{
    if (id < GW_SANITIZE_POLICY_TIMEOUTS)
        return pol->timeout_ms[id];
    if (id == GW_STEP_SCRUB && pol->version >= 2)
        return pol->scrub_timeout_ms;
    return 0;
}

unsigned int gw_step_timeout_ms(const gw_sanitize_policy *pol, gw_step_id id)
{
    if ((unsigned)id >= GW_STEP_COUNT)
        return 0;
    unsigned int ms = configured_timeout(pol, id);
    return ms ? ms : default_timeout_ms[id];
}

const gw_model_policy *gw_policy_model(const gw_sanitize_policy *pol, uint16_t vendor, uint16_t device)
{
    char id[10];
    snprintf(id, sizeof id, "%04x:%04x", vendor, device);
    for (size_t i = 0; pol->version >= 2 && i < pol->n_models; i++)
        if (!strcmp(pol->models[i].id, id))
            return &pol->models[i];
    return NULL;
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

/* One per-model entry: everything a clean-up would otherwise trip over. */
static int check_model(const gw_model_policy *m, size_t i)
{
    const char *id = m->id ? m->id : "(null)";
    if (!m->id || strlen(m->id) != 9 || !valid_rom_id(m->id))
        return gw_error_set(-EINVAL, "sanitize policy: model %zu: id '%s' is not vvvv:dddd in lower-case hex", i, id);
    if ((unsigned)m->reset >= N_RESET)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: reset %d is not auto, flr, bus or flr+bus", id,
                            m->reset);
    if ((unsigned)m->scrub >= N_SCRUB)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub method %d is not none, bar or driver", id,
                            m->scrub);
    if (m->scrub == GW_SCRUB_DRIVER)
        return gw_error_set(-EOPNOTSUPP, "sanitize policy: model %s: scrub method 'driver' is not implemented in "
                            "this version (use bar or none)", id);
    if (m->scrub_function < -1 || m->scrub_function > 7)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub function %d is not 0-7 (or -1: the GPU's "
                            "own)", id, m->scrub_function);
    if (m->scrub_bar > 5)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub BAR %u is not 0-5", id, m->scrub_bar);
    double f = m->scrub_verify_fraction;
    if (!(f >= 0.0 && f <= 1.0))
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub verify fraction %g is not in (0, 1]", id, f);
    return 0;
}

static int check_models(const gw_sanitize_policy *in)
{
    if (in->n_models && !in->models)
        return gw_error_set(-EINVAL, "sanitize policy: n_models without models");
    for (size_t i = 0; i < in->n_models; i++) {
        int r = check_model(&in->models[i], i);
        if (r < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(in->models[j].id, in->models[i].id))
                return gw_error_set(-EINVAL, "sanitize policy: model %s is listed twice", in->models[i].id);
    }
    return 0;
}

/* The caller's struct as its version has it: version 1 ended at
 * n_manage_addresses, and nothing past it may be read. */
static int policy_view(const gw_sanitize_policy *in, gw_sanitize_policy *out)
{
    if (in->version == 1) {
        *out = (gw_sanitize_policy)GW_SANITIZE_POLICY_INIT;
        memcpy(out, in, offsetof(gw_sanitize_policy, scrub_timeout_ms));
        out->version = 1;
        return 0;
    }
    if (in->version != GW_SANITIZE_POLICY_VERSION)
        return gw_error_set(-EINVAL, "sanitize policy: version %u, expected 1 to %u", in->version,
                            GW_SANITIZE_POLICY_VERSION);
    *out = *in;
    return 0;
}

static void spolicy_free(gw_spolicy *p)
{
    if (!p)
        return;
    for (size_t i = 0; p->models && i < p->pol.n_models; i++)
        free((char *)p->models[i].id);
    free(p->models);
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

int gw_spolicy_new(gw_spolicy **out, const gw_sanitize_policy *caller)
{
    gw_sanitize_policy view = GW_SANITIZE_POLICY_INIT;
    if (caller && policy_view(caller, &view) < 0)
        return -EINVAL;
    const gw_sanitize_policy *in = &view;
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
    int r = check_models(in);
    if (r < 0)
        return r;

    gw_spolicy *p = gw_xcalloc(1, sizeof *p);
    atomic_init(&p->refs, 1);
    p->pol = *in;
    p->pol.version = GW_SANITIZE_POLICY_VERSION;   /* the copy has every field */
    p->hooks_dir = gw_xstrdup(in->hooks_dir ? in->hooks_dir : GW_DEFAULT_HOOKS_DIR);
    p->pol.hooks_dir = p->hooks_dir;
    if (!p->pol.hook_timeout_ms)
        p->pol.hook_timeout_ms = 60000;
    for (int s = 0; s < GW_SANITIZE_POLICY_TIMEOUTS; s++)
        p->pol.timeout_ms[s] = gw_step_timeout_ms(in, (gw_step_id)s);
    p->pol.scrub_timeout_ms = gw_step_timeout_ms(in, GW_STEP_SCRUB);
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
    if (in->n_models) {
        p->models = gw_xcalloc(in->n_models, sizeof *p->models);
        for (size_t i = 0; i < in->n_models; i++) {
            p->models[i] = in->models[i];
            p->models[i].id = gw_xstrdup(in->models[i].id);
            if (p->models[i].scrub_verify_fraction == 0.0)
                p->models[i].scrub_verify_fraction = 1.0;
        }
    }
    p->pol.models = p->models;
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
