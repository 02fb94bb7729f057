/* SPDX-License-Identifier: Apache-2.0 */
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

/* A kernel driver's name as it appears under /sys/bus/pci/drivers: it goes
 * into sysfs paths, so nothing that could climb out of that directory. */
static bool driver_name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

/* A path below the device's sysfs directory: relative, no "..", no empty or
 * "." components, printable. */
static bool ready_path_ok(const char *s)
{
    if (!s || !*s || *s == '/' || strlen(s) > 255)
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return false;
    _cleanup_free_ char *copy = gw_xstrdup(s);
    char *save = NULL;
    size_t len = strlen(s);
    if (s[len - 1] == '/' || strstr(s, "//"))
        return false;
    for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save))
        if (!strcmp(t, "..") || !strcmp(t, "."))
            return false;
    return true;
}

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

void gw_scrub_commands_free(char ***cmds, size_t n)
{
    for (size_t i = 0; cmds && i < n; i++) {
        for (size_t j = 0; cmds[i] && cmds[i][j]; j++)
            free(cmds[i][j]);
        free(cmds[i]);
    }
    free(cmds);
}

int gw_scrub_commands_split(const char *text, char ****out, size_t *n_out)
{
    if (!text)
        return gw_error_set(-EINVAL, "scrub_commands: none given (at least one command: CMD ARG... && CMD ...)");
    for (const char *c = text; *c; c++)
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
            return gw_error_set(-EINVAL, "scrub_commands: control character 0x%02x in '%s'", (unsigned char)*c,
                                text);
    char ***cmds = NULL;
    size_t n = 0;
    const char *p = text;
    int r = 0;
    for (;;) {
        /* "&&", not ';': the config file's INI reader takes " ;" as the start
         * of a comment, and "&&" says what happens: the next command runs
         * only when this one exited 0. */
        const char *end = strstr(p, "&&");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char **argv = NULL;
        size_t argc = 0;
        for (size_t i = 0; i < len;) {
            while (i < len && blank(p[i]))
                i++;
            size_t w = i;
            while (i < len && !blank(p[i]))
                i++;
            if (i > w) {
                argv = gw_xrealloc(argv, argc + 2, sizeof *argv);
                argv[argc++] = strndup(p + w, i - w);
                argv[argc] = NULL;
            }
        }
        if (!argc) {
            r = gw_error_set(-EINVAL, "scrub_commands: command %zu is empty in '%s' (commands are separated by "
                             "'&&', none may be empty)", n + 1, text);
        } else if (argv[0][0] != '/') {
            r = gw_error_set(-EINVAL, "scrub_commands: command %zu: '%s' is not an absolute path", n + 1, argv[0]);
        } else if (n == GW_SCRUB_COMMANDS_MAX) {
            r = gw_error_set(-EINVAL, "scrub_commands: more than %d commands", GW_SCRUB_COMMANDS_MAX);
        } else if (argc > 64) {
            r = gw_error_set(-EINVAL, "scrub_commands: command %zu has more than 64 arguments", n + 1);
        }
        cmds = gw_xrealloc(cmds, n + 1, sizeof *cmds);
        cmds[n++] = argv ? argv : gw_xcalloc(1, sizeof *argv);
        if (r < 0 || !end)
            break;
        p = end + 2;
    }
    if (r < 0) {
        gw_scrub_commands_free(cmds, n);
        return r;
    }
    *out = cmds;
    *n_out = n;
    return 0;
}

static int parse_seconds(const char *key, const char *value, unsigned int *ms)
{
    char *end;
    errno = 0;
    unsigned long n = value && *value != '-' ? strtoul(value, &end, 10) : 0;
    if (!value || *value == '-' || !*value || errno || *end || n < 1 || n > 86400)
        return gw_error_set(-EINVAL, "%s: '%s' is not a number of seconds from 1 to 86400", key,
                            value ? value : "(null)");
    *ms = (unsigned)n * 1000u;
    return 0;
}

GW_EXTERN int gw_model_policy_set(gw_model_policy *m, const char *key, const char *value)
{
    if (!m || !key)
        return gw_error_set(-EINVAL, "gw_model_policy_set: NULL argument");
    unsigned long n = 0;   /* set on success; gcc 12 -O2 cannot tell */
    int r;
    if (!strcmp(key, "reset")) {
        if ((r = gw_reset_choice_from_name(value, &m->reset)) < 0)
            return gw_error_set(r, "reset: '%s' is not auto, flr, bus or flr+bus", value ? value : "(null)");
        return 0;
    }
    if (!strcmp(key, "scrub")) {
        gw_scrub_method sm;
        if ((r = gw_scrub_method_from_name(value, &sm)) < 0)
            return gw_error_set(r, "scrub: '%s' is not none, bar or driver", value ? value : "(null)");
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
    if (!strcmp(key, "scrub_driver")) {
        if (!driver_name_ok(value))
            return gw_error_set(-EINVAL, "scrub_driver: '%s' is not a kernel driver name ([A-Za-z0-9_-], as in "
                                "/sys/bus/pci/drivers)", value ? value : "(null)");
        m->scrub_driver = value;
        return 0;
    }
    if (!strcmp(key, "scrub_driver_ready")) {
        if (value && !*value) {
            m->scrub_driver_ready = NULL;
            return 0;
        }
        if (!ready_path_ok(value))
            return gw_error_set(-EINVAL, "scrub_driver_ready: '%s' is not a relative path under the device's sysfs "
                                "directory (no leading '/', no '..', no blanks)", value ? value : "(null)");
        m->scrub_driver_ready = value;
        return 0;
    }
    if (!strcmp(key, "scrub_driver_ready_timeout_s"))
        return parse_seconds(key, value, &m->scrub_driver_ready_timeout_ms);
    if (!strcmp(key, "scrub_command_timeout_s"))
        return parse_seconds(key, value, &m->scrub_command_timeout_ms);
    if (!strcmp(key, "scrub_commands")) {
        char ***cmds;
        size_t nc;
        if ((r = gw_scrub_commands_split(value, &cmds, &nc)) < 0)
            return r;
        gw_scrub_commands_free(cmds, nc);
        m->scrub_commands = value;
        return 0;
    }
    return gw_error_set(-EINVAL, "unknown model setting '%s' (reset, scrub, scrub_function, scrub_bar, "
                        "scrub_verify_fraction, scrub_driver, scrub_driver_ready, scrub_driver_ready_timeout_s, "
                        "scrub_commands, scrub_command_timeout_s)", key);
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

/* One per-model entry: everything a clean-up would otherwise trip over.
 * `scrub_ms` is the scrub step's timeout: a driver scrub that could outlast
 * it would be abandoned with the device still on the host driver (an
 * abandoned run writes nothing, not even the way back to vfio-pci), so a
 * model whose worst case does not fit is refused up front. */
static int check_model(const gw_model_policy *m, size_t i, unsigned int version, unsigned int scrub_ms)
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
    if (m->scrub == GW_SCRUB_DRIVER && version < 3)
        return gw_error_set(-EOPNOTSUPP, "sanitize policy: model %s: scrub method 'driver' needs policy version 3 "
                            "(a version-%u model entry has no driver settings)", id, version);
    if (m->scrub_function < -1 || m->scrub_function > 7)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub function %d is not 0-7 (or -1: the GPU's "
                            "own)", id, m->scrub_function);
    if (m->scrub_bar > 5)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub BAR %u is not 0-5", id, m->scrub_bar);
    double f = m->scrub_verify_fraction;
    if (!(f >= 0.0 && f <= 1.0))
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub verify fraction %g is not in (0, 1]", id, f);
    if (m->scrub != GW_SCRUB_DRIVER)
        return 0;
    if (!m->scrub_driver)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_driver: required with scrub = driver", id);
    if (!driver_name_ok(m->scrub_driver))
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_driver: '%s' is not a kernel driver name", id,
                            m->scrub_driver);
    if (!strcmp(m->scrub_driver, "vfio-pci"))
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_driver: vfio-pci is where the device "
                            "already is; the scrub needs the vendor's host driver", id);
    if (m->scrub_driver_ready && !ready_path_ok(m->scrub_driver_ready))
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_driver_ready: '%s' is not relative to the "
                            "device's directory", id, m->scrub_driver_ready);
    char ***cmds;
    size_t nc;
    if (!m->scrub_commands)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_commands: required with scrub = driver", id);
    if (gw_scrub_commands_split(m->scrub_commands, &cmds, &nc) < 0)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: %s", id, gw_error_message());
    gw_scrub_commands_free(cmds, nc);
    uint64_t worst = (uint64_t)GW_SCRUB_READY_MS(m) + (uint64_t)nc * GW_SCRUB_COMMAND_MS(m) +
                     GW_SCRUB_REBIND_MARGIN_MS;
    if (worst > scrub_ms)
        return gw_error_set(-EINVAL, "sanitize policy: model %s: scrub_command_timeout_s: the driver scrub may take "
                            "%llu s (ready timeout "
                            "%u s + %zu command%s x %u s + %u s for the binds), more than the scrub step's timeout "
                            "of %u s, which would leave the device on %s: lower the timeouts or raise the step's",
                            id, (unsigned long long)(worst / 1000), GW_SCRUB_READY_MS(m) / 1000, nc,
                            nc == 1 ? "" : "s", GW_SCRUB_COMMAND_MS(m) / 1000, GW_SCRUB_REBIND_MARGIN_MS / 1000,
                            scrub_ms / 1000, m->scrub_driver);
    return 0;
}

GW_EXTERN int gw_model_policy_check(const gw_model_policy *m, unsigned int scrub_timeout_ms)
{
    if (!m)
        return gw_error_set(-EINVAL, "gw_model_policy_check: NULL argument");
    return check_model(m, 0, GW_SANITIZE_POLICY_VERSION, scrub_timeout_ms ? scrub_timeout_ms : 600000u);
}

static int check_models(const gw_sanitize_policy *in, const gw_model_policy *models)
{
    if (in->n_models && !in->models)
        return gw_error_set(-EINVAL, "sanitize policy: n_models without models");
    unsigned scrub_ms = gw_step_timeout_ms(in, GW_STEP_SCRUB);
    for (size_t i = 0; i < in->n_models; i++) {
        int r = check_model(&models[i], i, in->version, scrub_ms);
        if (r < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(models[j].id, models[i].id))
                return gw_error_set(-EINVAL, "sanitize policy: model %s is listed twice", models[i].id);
    }
    return 0;
}

/* The caller's models in today's layout (shallow: strings still the
 * caller's). A version-2 array has the shorter elements of
 * gw_model_policy_v2, so it is stepped through as such. */
static gw_model_policy *models_view(const gw_sanitize_policy *in)
{
    if (!in->n_models || !in->models)
        return NULL;
    gw_model_policy *v = gw_xcalloc(in->n_models, sizeof *v);
    for (size_t i = 0; i < in->n_models; i++) {
        if (in->version >= 3) {
            v[i] = in->models[i];
            continue;
        }
        const gw_model_policy_v2 *o = &((const gw_model_policy_v2 *)(const void *)in->models)[i];
        v[i] = (gw_model_policy)GW_MODEL_POLICY_INIT;
        v[i].id = o->id;
        v[i].reset = o->reset;
        v[i].scrub = o->scrub;
        v[i].scrub_function = o->scrub_function;
        v[i].scrub_bar = o->scrub_bar;
        v[i].scrub_verify_fraction = o->scrub_verify_fraction;
    }
    return v;
}

/* The caller's struct as its version has it: version 1 ended at
 * n_manage_addresses, 2 and 3 at n_models, and nothing past the end may be
 * read. Version 2 has every field of 3; only its model entries are shorter
 * (models_view). */
static int policy_view(const gw_sanitize_policy *in, gw_sanitize_policy *out)
{
    if (in->version == 1 || in->version == 2 || in->version == 3) {
        unsigned int v = in->version;
        *out = (gw_sanitize_policy)GW_SANITIZE_POLICY_INIT;
        memcpy(out, in, v == 1 ? offsetof(gw_sanitize_policy, scrub_timeout_ms)
                               : offsetof(gw_sanitize_policy, hooks_owner_uid));
        out->version = v;
        return 0;
    }
    if (in->version < 1 || in->version > GW_SANITIZE_POLICY_VERSION)
        return gw_error_set(-EINVAL, "sanitize policy: version %u, expected 1 to %u", in->version,
                            GW_SANITIZE_POLICY_VERSION);
    *out = *in;
    return 0;
}

static void spolicy_free(gw_spolicy *p)
{
    if (!p)
        return;
    for (size_t i = 0; p->models && i < p->pol.n_models; i++) {
        free((char *)p->models[i].id);
        free((char *)p->models[i].scrub_driver);
        free((char *)p->models[i].scrub_driver_ready);
        free((char *)p->models[i].scrub_commands);
    }
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
    _cleanup_free_ gw_model_policy *models = models_view(in);
    int r = check_models(in, models);
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
            gw_model_policy *m = &p->models[i];
            *m = models[i];
            m->id = gw_xstrdup(m->id);
            if (m->scrub_verify_fraction == 0.0)
                m->scrub_verify_fraction = 1.0;
            /* Only a driver scrub's settings are kept: a leftover driver
             * name on a bar model means nothing. */
            if (m->scrub == GW_SCRUB_DRIVER) {
                m->scrub_driver = gw_xstrdup(m->scrub_driver);
                m->scrub_driver_ready = m->scrub_driver_ready ? gw_xstrdup(m->scrub_driver_ready) : NULL;
                m->scrub_commands = gw_xstrdup(m->scrub_commands);
                m->scrub_driver_ready_timeout_ms = GW_SCRUB_READY_MS(m);
                m->scrub_command_timeout_ms = GW_SCRUB_COMMAND_MS(m);
            } else {
                m->scrub_driver = m->scrub_driver_ready = m->scrub_commands = NULL;
            }
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
