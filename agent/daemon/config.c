/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <gpuwarden/inventory.h>

#include "util.h"

#define GWD_DEFAULT_CONFIG "/etc/gpuwarden/gpuwarden.conf"

typedef enum { OPT_STR, OPT_LONG, OPT_BOOL } opt_type;

/* The single source of truth: INI section/key, flag, type, default, help,
 * and whether a reload (SIGHUP) applies it. */
typedef struct opt_def {
    const char *section, *key, *flag;
    opt_type type;
    size_t offset;
    const char *def;
    const char *help;
    /* A reload applies it at once and in full (the daemon re-reads it where
     * it is used: loop.c, reload_live()). Every other option is fixed at the
     * start: what it configured (the host backend, the sockets, the clean-up
     * pool and its policy, the inventory's shape) is built once, so a reload
     * that changes one refuses that change and keeps the running value. */
    bool live;
} opt_def;

#define STR(sec, key, flag, field, def, help) { sec, key, flag, OPT_STR, offsetof(gwd_config, field), def, help, false }
#define LNG(sec, key, flag, field, def, help) { sec, key, flag, OPT_LONG, offsetof(gwd_config, field), def, help, false }
#define BOOL(sec, key, flag, field, def, help) { sec, key, flag, OPT_BOOL, offsetof(gwd_config, field), def, help, false }
#define STR_LIVE(sec, key, flag, field, def, help) \
    { sec, key, flag, OPT_STR, offsetof(gwd_config, field), def, help, true }
#define LNG_LIVE(sec, key, flag, field, def, help) \
    { sec, key, flag, OPT_LONG, offsetof(gwd_config, field), def, help, true }

static const opt_def opts[] = {
    STR("daemon", "host_root", "host-root", host_root, "/", "root of the host's /sys (a test tree in tests)"),
    STR("daemon", "state_dir", "state-dir", state_dir, "/var/lib/gpuwarden", "checkpoint and audit log directory"),
    STR("daemon", "admin_endpoint", "admin-endpoint", admin_endpoint, "ipc:///run/gpuwarden/admin.sock",
        "ZeroMQ endpoint serving every op (ipc: mode 0660, group admin_group; tcp: only curve_allowlist keys)"),
    STR("daemon", "read_endpoint", "read-endpoint", read_endpoint, "ipc:///run/gpuwarden/read.sock",
        "ZeroMQ endpoint serving read-only ops (ipc: mode 0660)"),
    STR("daemon", "events_endpoint", "events-endpoint", events_endpoint, "ipc:///run/gpuwarden/events.sock",
        "ZeroMQ PUB endpoint for transitions and clean-up results"),
    STR("daemon", "gate_endpoint", "gate-endpoint", gate_endpoint, "ipc:///run/gpuwarden/gate.sock",
        "ipc:// endpoint serving only the libvirt hook's gate (and hello) on a thread of its own (mode 0660, "
        "group read_group); empty: none, the hook asks the admin endpoint"),
    STR("daemon", "read_group", "read-group", read_group, "", "group owning the read socket (e.g. cyborg)"),
    STR("daemon", "admin_group", "admin-group", admin_group, "root",
        "group owning the ipc admin socket; only root and this group's members (SO_PEERCRED) may connect"),
    STR("daemon", "curve_secret_key", "curve-secret-key", curve_secret_key, "",
        "Z85 CURVE server secret key; required for tcp:// endpoints"),
    STR_LIVE("daemon", "curve_allowlist", "curve-allowlist", curve_allowlist, "",
        "file of '<name> <Z85 public key>' lines: the CURVE clients a tcp:// admin endpoint serves (required there)"),
    STR("daemon", "host_backend", "host-backend", host_backend, "sysfs",
        "sysfs (the host's kernel) | simulated (test trees: models the kernel's reactions, writes nothing)"),
    LNG_LIVE("daemon", "rescan_interval_s", "rescan-interval", rescan_interval_s, "60",
        "seconds between host rescans (hot-plug); 0 = never"),
    STR("daemon", "libvirt_uri", "libvirt-uri", libvirt_uri, "qemu:///system", "libvirt URI; empty disables"),
    STR("daemon", "host_name", "host-name", host_name, "", "deployable name prefix (default: the host name)"),
    STR_LIVE("daemon", "log_level", "log-level", log_level, "info", "err|warning|notice|info|debug"),
    LNG("daemon", "max_message_bytes", "max-message-bytes", max_message_bytes, "1048576",
        "largest request accepted (ZMQ_MAXMSGSIZE; also the most all frames of one message may hold)"),
    LNG("daemon", "max_connections", "max-connections", max_connections, "256",
        "connections each endpoint (admin, read, events) keeps open; more are closed at once (fewer when the "
        "open-file limit is lower)"),
    LNG("daemon", "audit_segment_bytes", "audit-segment-bytes", audit_segment_bytes, "16777216",
        "audit.log is rotated to audit.log.1 at this size; 0 = never (it grows without bound)"),
    LNG("daemon", "audit_segments", "audit-segments", audit_segments, "8",
        "rotated audit segments kept (audit.log.1 ..); older ones are deleted"),
    LNG_LIVE("daemon", "reconcile_interval_s", "reconcile-interval", reconcile_interval_s, "30",
        "seconds between full libvirt reconciles"),
    BOOL("daemon", "foreground", "foreground", foreground, "false", "stay in the foreground (systemd Type=notify)"),
    STR("manage", "vendors", "manage-vendors", manage_vendors, "",
        "vendor ids whose devices may be written to (unbind, reset, rom)"),
    STR("manage", "addresses", "manage-addresses", manage_addresses, "", "PCI addresses that may be written to"),
    LNG("cleanup", "workers", "cleanup-workers", cleanup_workers, "4", "clean-up worker threads"),
    LNG("cleanup", "step_timeout_s", "step-timeout", step_timeout_s, "0",
        "timeout of every clean-up step except hooks, seconds; 0 = each step's own default"),
    LNG("cleanup", "hook_timeout_s", "hook-timeout", hook_timeout_s, "60", "timeout of each operator hook, seconds"),
    LNG_LIVE("cleanup", "in_use_retry_s", "in-use-retry", in_use_retry_s, "10",
        "seconds before a clean-up that found the GPU in use (a VM, a process holding its VFIO group) runs "
        "again; doubles while it stays in use, up to 600; at least 1"),
    STR("cleanup", "hooks_dir", "hooks-dir", hooks_dir, "/etc/gpuwarden/sanitize.d", "operator hook executables"),
    /* Help lines stay under inih's 200-byte line with their "# " and flag. */
    LNG("cleanup", "hooks_owner_uid", "hooks-owner-uid", hooks_owner_uid, "0",
        "uid owning the hooks directory and hooks (neither group/other-writable); 0 = root: others for unprivileged tests"),
    STR("cleanup", "rom_allowlist", "rom-allowlist", rom_allowlist, "", "VBIOS SHA-256 allowlist file"),
    STR("cleanup", "isolation_policy", "isolation-policy", isolation_policy, "fail", "fail|warn"),
    STR("inventory", "model", "inventory-model", inventory_model, "per_gpu", "per_gpu|per_clique"),
    STR("inventory", "clique_override", "clique-override", clique_override, "", "NVLink partition file"),
    STR_LIVE("inventory", "extra_traits", "extra-traits", extra_traits, "", "comma-separated CUSTOM_ traits"),
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static void *field(gwd_config *cfg, const opt_def *o) { return (char *)cfg + o->offset; }

static int parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int set_value(gwd_config *cfg, const opt_def *o, const char *v)
{
    switch (o->type) {
    case OPT_STR: {
        char **s = field(cfg, o);
        free(*s);
        *s = gw_xstrdup(v);
        return 0;
    }
    case OPT_LONG: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < 0)
            return -EINVAL;
        *(long *)field(cfg, o) = n;
        return 0;
    }
    case OPT_BOOL:
        return parse_bool(v, field(cfg, o));
    }
    return -EINVAL;
}

typedef struct ini_ctx {
    gwd_config *cfg;
    const char *path;
    int error;
} ini_ctx;

/* "10DE:2330" -> "10de:2330"; false unless four hex digits, a colon, four. */
static bool model_id(const char *text, char out[10])
{
    if (strlen(text) != 9 || text[4] != ':')
        return false;
    for (size_t i = 0; i < 9; i++) {
        if (i != 4 && !isxdigit((unsigned char)text[i]))
            return false;
        out[i] = (char)tolower((unsigned char)text[i]);
    }
    out[9] = '\0';
    return true;
}

static gwd_model *model_entry(gwd_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_models; i++)
        if (!strcmp(cfg->models[i].id, id))
            return &cfg->models[i];
    cfg->models = gw_xrealloc(cfg->models, cfg->n_models + 1, sizeof *cfg->models);
    gwd_model *m = &cfg->models[cfg->n_models++];
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", id);
    m->pol = (gw_model_policy)GW_MODEL_POLICY_INIT;
    return m;
}

/* A key of a [model vvvv:dddd] section: the library says what is wrong with
 * a value, we say where it is. */
static int apply_model_entry(ini_ctx *ctx, const char *section, const char *key, const char *value)
{
    const char *text = section + strlen("model");
    while (*text == ' ')
        text++;
    char id[10];
    if (!model_id(text, id)) {
        fprintf(stderr, "gpuwardend: %s: [%s]: '%s' is not a GPU model: vendor:device in hex (vvvv:dddd, as "
                        "lspci -n shows it)\n", ctx->path, section, text);
        ctx->error = -EINVAL;
        return 0;
    }
    gwd_model *m = model_entry(ctx->cfg, id);
    /* The library keeps string values by pointer: give it a copy we own. */
    char *copy = gw_xstrdup(value);
    if (gw_model_policy_set(&m->pol, key, copy) < 0) {
        free(copy);
        fprintf(stderr, "gpuwardend: %s: [%s] %s\n", ctx->path, section, gw_error_message());
        ctx->error = -EINVAL;
        return 0;
    }
    char **owner = m->pol.scrub_driver == copy ? &m->scrub_driver
                   : m->pol.scrub_driver_ready == copy ? &m->scrub_driver_ready
                   : m->pol.scrub_commands == copy ? &m->scrub_commands : NULL;
    if (owner) {
        free(*owner);
        *owner = copy;
    } else {
        free(copy);
    }
    return 1;
}

static bool is_model_section(const char *section)
{
    return !strncmp(section, "model", 5) && (section[5] == ' ' || section[5] == '\0');
}

static int apply_ini_entry(void *user, const char *section, const char *key, const char *value)
{
    ini_ctx *ctx = user;
    if (is_model_section(section))
        return apply_model_entry(ctx, section, key, value);
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strcmp(opts[i].section, section) || strcmp(opts[i].key, key))
            continue;
        if (set_value(ctx->cfg, &opts[i], value) < 0) {
            fprintf(stderr, "gpuwardend: %s: [%s] %s: invalid value '%s'\n", ctx->path, section, key, value);
            ctx->error = -EINVAL;
            return 0;
        }
        return 1;
    }
    fprintf(stderr, "gpuwardend: %s: unknown option [%s] %s\n", ctx->path, section, key);
    ctx->error = -EINVAL;
    return 0;
}

static int read_file(gwd_config *cfg)
{
    ini_ctx ctx = { cfg, cfg->config_file, 0 };
    FILE *f = fopen(cfg->config_file, "re");
    if (!f) {
        fprintf(stderr, "gpuwardend: %s: %s\n", cfg->config_file, strerror(errno));
        return -errno;
    }
    int line = ini_parse_file(f, apply_ini_entry, &ctx);
    fclose(f);
    if (ctx.error)
        return ctx.error;
    if (line > 0) {
        fprintf(stderr, "gpuwardend: %s:%d: syntax error\n", cfg->config_file, line);
        return -EINVAL;
    }
    return 0;
}

/* The flags that are not config-file options: one table for getopt, --help
 * and the manual page (manpage.c). */
enum { FLAG_CONFIG = 1000, FLAG_RESET, FLAG_HELP, FLAG_VERSION, FLAG_PRINT, FLAG_CHECK, FLAG_MAN, FLAG_BASE = 2000 };

static const gwd_flag_doc fixed_flags[] = {
    { "config", "FILE", "config file (default " GWD_DEFAULT_CONFIG " when present)", FLAG_CONFIG },
    { "reset-state", NULL, "move a corrupt checkpoint aside and start afresh", FLAG_RESET },
    { "print-config", NULL, "print a sample config file with every option and exit", FLAG_PRINT },
    { "check-config", NULL, "read the config file and flags, check them, and exit (0 = fine)", FLAG_CHECK },
    { "print-man", "SECTION", "print the gpuwardend(8) or gpuwarden.conf(5) manual page (roff) and exit", FLAG_MAN },
    { "help", NULL, "this text", FLAG_HELP },
    { "version", NULL, "the version", FLAG_VERSION },
};
#define N_FIXED (sizeof fixed_flags / sizeof fixed_flags[0])

size_t gwd_config_flags(const gwd_flag_doc **out)
{
    *out = fixed_flags;
    return N_FIXED;
}

size_t gwd_config_option_count(void)
{
    return N_OPTS;
}

void gwd_config_option_doc(size_t i, gwd_option_doc *out)
{
    const opt_def *o = &opts[i];
    *out = (gwd_option_doc){ o->section, o->key, o->flag, o->def, o->help, o->live, o->type == OPT_BOOL };
}

void gwd_config_usage(FILE *f)
{
    fprintf(f, "usage: gpuwardend [OPTIONS]\n\n");
    for (size_t i = 0; i < N_FIXED; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", fixed_flags[i].flag, fixed_flags[i].arg ? " " : "",
                 fixed_flags[i].arg ? fixed_flags[i].arg : "");
        fprintf(f, "  --%-22s %s\n", head, fixed_flags[i].help);
    }
    fprintf(f, "\nEvery config-file option is also a flag (flags win):\n");
    for (size_t i = 0; i < N_OPTS; i++)
        fprintf(f, "  --%-22s [%s] %s: %s (default '%s')%s\n", opts[i].flag, opts[i].section, opts[i].key,
                opts[i].help, opts[i].def, opts[i].live ? "; applies at a reload (SIGHUP)" : "");
    fprintf(f, "\nSIGHUP re-reads the file: options marked 'applies at a reload' take effect at once;\n"
               "a change of any other option (or of a [model] section) is refused, logged, and its\n"
               "running value kept until the next start; an invalid file changes nothing.\n");
}

/* The sample config shipped in packaging/ is this output, so the file and the
 * code cannot drift apart (a test compares them). */
void gwd_config_print_sample(FILE *f)
{
    fprintf(f, "# gpuwardend configuration (/etc/gpuwarden/gpuwarden.conf).\n"
               "# Every option is also a command-line flag, which wins over this file.\n"
               "# Generated by `gpuwardend --print-config`; values shown are the defaults.\n");
    const char *section = "";
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strcmp(section, opts[i].section)) {
            section = opts[i].section;
            fprintf(f, "\n[%s]\n", section);
        }
        fprintf(f, "# %s (flag --%s)\n%s = %s\n", opts[i].help, opts[i].flag, opts[i].key, opts[i].def);
    }
    fprintf(f, "\n"
               "# Per-model clean-up settings: one [model vvvv:dddd] section per GPU model\n"
               "# (vendor:device of the GPU function, hex, as `lspci -n` shows it). Every key\n"
               "# is optional; a model without a section gets the defaults. Config file only\n"
               "# (no flags). See docs/sanitize.md.\n"
               "#\n"
               "# [model 10de:2330]\n"
               "# How the reset step resets it: flr | bus | flr+bus. Default: flr when the\n"
               "# kernel's reset_method offers it, else bus (a secondary bus reset through VFIO,\n"
               "# refused when the bus holds a function that is not managed or not on vfio-pci).\n"
               "# reset = flr\n"
               "# How the scrub step clears its memory: none | bar | driver. Default none (the\n"
               "# step skips). bar: zero a BAR through VFIO, then read it back. driver: bind\n"
               "# the GPU to its vendor's host driver, run scrub_commands, bind it back to\n"
               "# vfio-pci (always, also after a failure).\n"
               "# scrub = bar\n"
               "# Function of the GPU's slot whose BAR holds the memory, 0-7. Default: the GPU's.\n"
               "# scrub_function = 0\n"
               "# BAR index 0-5 to scrub.\n"
               "# scrub_bar = 1\n"
               "# Share of the BAR read back after zeroing, 0 < f <= 1; 1 = every byte, less =\n"
               "# that share of its 4 KiB pages spread evenly (first and last always). Default 1.\n"
               "# scrub_verify_fraction = 1.0\n"
               "#\n"
               "# scrub = driver (docs/nvidia.md has an NVIDIA profile):\n"
               "# Kernel driver to bind for the scrub (required), as in /sys/bus/pci/drivers.\n"
               "# scrub_driver = nvidia\n"
               "# Path under the device's sysfs directory that must exist before the driver\n"
               "# counts as ready (besides the driver link naming it). Default: none.\n"
               "# scrub_driver_ready = \n"
               "# How long to wait for the driver to be ready, seconds. Default 30.\n"
               "# scrub_driver_ready_timeout_s = 30\n"
               "# Commands run in order while the driver has the device (required): separated\n"
               "# by &&, words by blanks, no quoting; each an absolute path; the device's PCI\n"
               "# address is appended as the last argument; any nonzero exit fails the scrub.\n"
               "# scrub_commands = /usr/libexec/gpuwarden/gpuwarden-cuda-scrub && /usr/libexec/gpuwarden/gpuwarden-nvidia-health\n"
               "# Timeout of each command, seconds. Default 120. Ready timeout + commands x\n"
               "# this + 60 must fit in the scrub step's timeout ([cleanup] step_timeout_s,\n"
               "# 0 = 600 s).\n"
               "# scrub_command_timeout_s = 120\n");
}

int gwd_log_level(const char *name)
{
    static const struct { const char *name; int prio; } levels[] = {
        { "err", GW_LOG_ERR }, { "warning", GW_LOG_WARNING }, { "notice", GW_LOG_NOTICE },
        { "info", GW_LOG_INFO }, { "debug", GW_LOG_DEBUG },
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(levels[i].name, name))
            return levels[i].prio;
    return -1;
}

/* What each key allows is checked as it is read; what only the whole
 * section can tell (scrub = driver without a driver or commands, a driver
 * scrub longer than the scrub step may run) is the library's check too. */
static int validate_models(const gwd_config *cfg)
{
    unsigned scrub_ms = cfg->step_timeout_s > 0 ? (unsigned)(cfg->step_timeout_s * 1000) : 0;
    for (size_t i = 0; i < cfg->n_models; i++) {
        gw_model_policy m = cfg->models[i].pol;
        m.id = cfg->models[i].id;
        if (gw_model_policy_check(&m, scrub_ms) < 0) {
            fprintf(stderr, "gpuwardend: %s: [model %s] %s\n", cfg->config_file ? cfg->config_file : "config",
                    cfg->models[i].id, gw_error_message());
            return -EINVAL;
        }
    }
    return 0;
}

/* Whether `root` is this machine's own root directory, however it is
 * spelled ("/", "//", "/etc/..", a link to /). */
static bool is_live_root(const char *root)
{
    char *real = realpath(root, NULL);
    bool live = real && !strcmp(real, "/");
    free(real);
    return live;
}

/* "10de, 1af4": vendor ids in hex; "0000:3b:00.0,...": canonical addresses.
 * The daemon parses them again into its policy (main.c); checked here so
 * that --check-config and a reload refuse what the start would. */
static int validate_manage(const gwd_config *cfg)
{
    const struct { const char *what, *value; bool vendors; } lists[] = {
        { "vendors", cfg->manage_vendors, true },
        { "addresses", cfg->manage_addresses, false },
    };
    for (size_t l = 0; l < 2; l++) {
        _cleanup_free_ char *copy = gw_xstrdup(lists[l].value);
        char *save = NULL;
        for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
            char *end;
            errno = 0;
            unsigned long id = lists[l].vendors ? strtoul(tok, &end, 16) : 0;
            bool ok = lists[l].vendors ? !errno && end != tok && !*end && id <= 0xffff : gw_is_bdf(tok);
            if (!ok) {
                fprintf(stderr, "gpuwardend: [manage] %s: '%s' is not %s\n", lists[l].what, tok,
                        lists[l].vendors ? "a 4-digit hex vendor id" : "a canonical PCI address");
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* ---- the CURVE allow-list ---- */

static bool allowlist_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._@+-", s[i]))
            return false;
    return true;
}

static bool z85_key_ok(const char *s, size_t n)
{
    uint8_t raw[32];
    char key[41];
    if (n != 40)
        return false;
    memcpy(key, s, 40);
    key[40] = '\0';
    return zmq_z85_decode(raw, key) != NULL;
}

void gwd_allowlist_free(gwd_allowlist *list)
{
    if (!list)
        return;
    free(list->keys);
    free(list);
}

const char *gwd_allowlist_name(const gwd_allowlist *list, const char *key)
{
    for (size_t i = 0; list && key && i < list->n; i++)
        if (!strcmp(list->keys[i].key, key))
            return list->keys[i].name;
    return NULL;
}

/* One line: "<name> <key>", blanks around and between. */
static int allowlist_line(gwd_allowlist *list, const char *path, unsigned lineno, char *line)
{
    const char *blanks = " \t\r\n";
    char *name = line + strspn(line, blanks);
    if (!*name || *name == '#')
        return 0;
    size_t nlen = strcspn(name, blanks);
    char *key = name + nlen + strspn(name + nlen, blanks);
    size_t klen = strcspn(key, blanks);
    const char *rest = key + klen + strspn(key + klen, blanks);
    if (!klen || *rest)
        return gw_error_set(-EINVAL, "%s:%u: expected '<name> <Z85 public key>', one a line", path, lineno);
    if (!allowlist_name_ok(name, nlen))
        return gw_error_set(-EINVAL, "%s:%u: '%.*s' is not a key name (1..64 of A-Z a-z 0-9 . _ @ + -)", path,
                            lineno, (int)(nlen > 64 ? 64 : nlen), name);
    if (!z85_key_ok(key, klen))
        return gw_error_set(-EINVAL, "%s:%u: %.*s: the public key is not 40 Z85 characters", path, lineno,
                            (int)nlen, name);
    name[nlen] = key[klen] = '\0';
    for (size_t i = 0; i < list->n; i++) {
        if (!strcmp(list->keys[i].name, name))
            return gw_error_set(-EINVAL, "%s:%u: the name '%s' is listed twice", path, lineno, name);
        if (!strcmp(list->keys[i].key, key))
            return gw_error_set(-EINVAL, "%s:%u: %s: the key is listed already, as '%s'", path, lineno, name,
                                list->keys[i].name);
    }
    list->keys = gw_xrealloc(list->keys, list->n + 1, sizeof *list->keys);
    snprintf(list->keys[list->n].name, sizeof list->keys[list->n].name, "%s", name);
    snprintf(list->keys[list->n].key, sizeof list->keys[list->n].key, "%s", key);
    list->n++;
    return 0;
}

int gwd_allowlist_load(const char *path, gwd_allowlist **out)
{
    *out = NULL;
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    gwd_allowlist *list = gw_xcalloc(1, sizeof *list);
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    int r = 0;
    while (r == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        r = allowlist_line(list, path, lineno, line);
    }
    if (r == 0 && ferror(f))
        r = gw_error_set(-EIO, "%s: read error", path);
    free(line);
    if (r < 0) {
        gwd_allowlist_free(list);
        return r;
    }
    *out = list;
    return 0;
}

/* A tcp:// admin endpoint serves only listed keys (PROTOCOL.md §1): without
 * a list it would serve any CURVE client, so it is refused. A list that is
 * set must read cleanly, at the start and at every reload. */
static int validate_curve(const gwd_config *cfg)
{
    if (!strncmp(cfg->admin_endpoint, "tcp://", 6) && !cfg->curve_allowlist[0]) {
        fprintf(stderr, "gpuwardend: admin_endpoint %s is tcp:// but [daemon] curve_allowlist is not set: a tcp "
                        "admin endpoint serves only the CURVE client keys listed there; refused\n",
                cfg->admin_endpoint);
        return -EINVAL;
    }
    if (!cfg->curve_allowlist[0])
        return 0;
    gwd_allowlist *list = NULL;
    if (gwd_allowlist_load(cfg->curve_allowlist, &list) < 0) {
        fprintf(stderr, "gpuwardend: [daemon] curve_allowlist: %s\n", gw_error_message());
        return -EINVAL;
    }
    gwd_allowlist_free(list);
    return 0;
}

/* Values that parse but make no sense; shared by start-up and reload so a
 * reload can never install what a start would refuse. */
int gwd_config_validate(const gwd_config *cfg)
{
    gw_inventory_model model;
    if (gwd_log_level(cfg->log_level) < 0)
        fprintf(stderr, "gpuwardend: log_level must be err|warning|notice|info|debug, not '%s'\n", cfg->log_level);
    else if (strcmp(cfg->isolation_policy, "fail") && strcmp(cfg->isolation_policy, "warn"))
        fprintf(stderr, "gpuwardend: isolation_policy must be fail or warn, not '%s'\n", cfg->isolation_policy);
    else if (gw_inventory_model_from_name(cfg->inventory_model, &model) < 0)
        fprintf(stderr, "gpuwardend: [inventory] model: %s\n", gw_error_message());
    else if (strcmp(cfg->host_backend, "sysfs") && strcmp(cfg->host_backend, "simulated"))
        fprintf(stderr, "gpuwardend: host_backend must be sysfs or simulated, not '%s'\n", cfg->host_backend);
    else if (!strcmp(cfg->host_backend, "simulated") && is_live_root(cfg->host_root))
        fprintf(stderr, "gpuwardend: host_backend = simulated with host_root = %s (the live host): the simulator "
                        "writes nothing, so it would mark this host's GPUs sanitized without a single write; "
                        "refused (simulated is for test trees)\n", cfg->host_root);
    else if (cfg->cleanup_workers < 1 || cfg->cleanup_workers > 256)
        fprintf(stderr, "gpuwardend: cleanup workers must be 1..256\n");
    else if (cfg->max_connections < 1 || cfg->max_connections > 1000000)
        fprintf(stderr, "gpuwardend: [daemon] max_connections must be 1..1000000, not %ld\n", cfg->max_connections);
    else if (cfg->audit_segment_bytes != 0 && cfg->audit_segment_bytes < 4096)
        fprintf(stderr, "gpuwardend: [daemon] audit_segment_bytes must be 0 (never rotate) or at least 4096, "
                        "not %ld\n", cfg->audit_segment_bytes);
    else if (cfg->audit_segments < 1 || cfg->audit_segments > 100000)
        fprintf(stderr, "gpuwardend: [daemon] audit_segments must be 1..100000, not %ld\n", cfg->audit_segments);
    else if (cfg->in_use_retry_s < 1 || cfg->in_use_retry_s > 600)
        fprintf(stderr, "gpuwardend: [cleanup] in_use_retry_s must be 1..600 (the longest wait), not %ld\n",
                (long)cfg->in_use_retry_s);
    else if (cfg->gate_endpoint[0] && strncmp(cfg->gate_endpoint, "ipc://", 6))
        fprintf(stderr, "gpuwardend: [daemon] gate_endpoint must be an ipc:// endpoint or empty, not '%s': the "
                        "libvirt hook that asks it runs on this host\n", cfg->gate_endpoint);
    else if (validate_manage(cfg) < 0 || validate_curve(cfg) < 0)
        return -EINVAL;
    else
        return validate_models(cfg);
    return -EINVAL;
}

/* The values given as flags at the start, which win over the file at every
 * reload too (a reload reads the file, never the command line again). */
static char *flag_store[N_OPTS];

static void defaults(gwd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTS; i++)
        set_value(cfg, &opts[i], opts[i].def);
}

int gwd_config_load(gwd_config *cfg, int argc, char **argv)
{
    defaults(cfg);

    struct option longopts[N_OPTS + N_FIXED + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_FIXED; i++)
        longopts[n++] = (struct option){ fixed_flags[i].flag, fixed_flags[i].arg ? required_argument : no_argument,
                                         NULL, fixed_flags[i].id };
    for (size_t i = 0; i < N_OPTS; i++)
        longopts[n++] = (struct option){ opts[i].flag, opts[i].type == OPT_BOOL ? optional_argument : required_argument,
                                         NULL, FLAG_BASE + (int)i };
    longopts[n] = (struct option){ 0 };

    for (size_t i = 0; i < N_OPTS; i++) {
        free(flag_store[i]);
        flag_store[i] = NULL;
    }
    /* Flags are parsed into a scratch config first, so the file can be read
     * before them and they still win. */
    char **flag_values = gw_xcalloc(N_OPTS, sizeof *flag_values);
    int rc = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == FLAG_CONFIG) {
            free(cfg->config_file);
            cfg->config_file = gw_xstrdup(optarg);
        } else if (c == FLAG_CHECK) {
            cfg->check_only = true;
        } else if (c == FLAG_RESET) {
            cfg->reset_state = true;
        } else if (c == FLAG_HELP) {
            gwd_config_usage(stdout);
            rc = 1;
            goto out;
        } else if (c == FLAG_PRINT) {
            gwd_config_print_sample(stdout);
            rc = 1;
            goto out;
        } else if (c == FLAG_MAN) {
            if (gwd_config_print_man(stdout, optarg) < 0) {
                fprintf(stderr, "gpuwardend: --print-man: 8 (gpuwardend) or 5 (gpuwarden.conf), not '%s'\n", optarg);
                rc = 2;
            } else {
                rc = 1;
            }
            goto out;
        } else if (c == FLAG_VERSION) {
            printf("gpuwardend %s\n", gw_version());
            rc = 1;
            goto out;
        } else if (c >= FLAG_BASE && c < FLAG_BASE + (int)N_OPTS) {
            size_t i = (size_t)(c - FLAG_BASE);
            free(flag_values[i]);
            flag_values[i] = gw_xstrdup(optarg ? optarg : "true");
        } else {
            gwd_config_usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpuwardend: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
        goto out;
    }
    if (!cfg->config_file && access(GWD_DEFAULT_CONFIG, F_OK) == 0)
        cfg->config_file = gw_xstrdup(GWD_DEFAULT_CONFIG);
    if (cfg->config_file && read_file(cfg) < 0) {
        rc = 2;
        goto out;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        if (flag_values[i] && set_value(cfg, &opts[i], flag_values[i]) < 0) {
            fprintf(stderr, "gpuwardend: --%s: invalid value '%s'\n", opts[i].flag, flag_values[i]);
            rc = 2;
            goto out;
        }
    }
    if (gwd_config_validate(cfg) < 0)
        rc = 2;
out:
    for (size_t i = 0; i < N_OPTS; i++)
        flag_store[i] = flag_values[i];
    free(flag_values);
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static bool same_value(const gwd_config *a, const gwd_config *b, const opt_def *o)
{
    const void *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
    switch (o->type) {
    case OPT_STR: return same_str(*(char *const *)fa, *(char *const *)fb);
    case OPT_LONG: return *(const long *)fa == *(const long *)fb;
    case OPT_BOOL: return *(const bool *)fa == *(const bool *)fb;
    }
    return false;
}

/* An option's value for the log; a secret is never written out. */
static void show_value(const gwd_config *cfg, const opt_def *o, char *buf, size_t size)
{
    const void *f = (const char *)cfg + o->offset;
    if (!strcmp(o->key, "curve_secret_key"))
        snprintf(buf, size, "(secret)");
    else if (o->type == OPT_STR)
        snprintf(buf, size, "%s", **(char *const *)f ? *(char *const *)f : "''");
    else if (o->type == OPT_LONG)
        snprintf(buf, size, "%ld", *(const long *)f);
    else
        snprintf(buf, size, "%s", *(const bool *)f ? "true" : "false");
}

static bool same_models(const gwd_config *a, const gwd_config *b)
{
    if (a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++) {
        const gwd_model *m = &a->models[i], *n = NULL;
        for (size_t k = 0; k < b->n_models && !n; k++)
            if (!strcmp(b->models[k].id, m->id))
                n = &b->models[k];
        if (!n)
            return false;
        const gw_model_policy *p = &m->pol, *q = &n->pol;
        if (p->reset != q->reset || p->scrub != q->scrub || p->scrub_function != q->scrub_function ||
            p->scrub_bar != q->scrub_bar || p->scrub_verify_fraction != q->scrub_verify_fraction ||
            p->scrub_driver_ready_timeout_ms != q->scrub_driver_ready_timeout_ms ||
            p->scrub_command_timeout_ms != q->scrub_command_timeout_ms || !same_str(p->scrub_driver, q->scrub_driver) ||
            !same_str(p->scrub_driver_ready, q->scrub_driver_ready) || !same_str(p->scrub_commands, q->scrub_commands))
            return false;
    }
    return true;
}

/* Read the file as a start would (defaults, the file, then the start's
 * flags), check it as a start does, and only then compare it with the
 * running configuration option by option: a live option takes the new value,
 * any other keeps the running one, each said in the log. An invalid file
 * changes nothing. */
int gwd_config_reload(gwd_config *cfg)
{
    if (!cfg->config_file) {
        gw_log(GW_LOG_NOTICE, "reload: no configuration file (flags only): nothing to read");
        return 0;
    }
    gwd_config next;
    defaults(&next);
    next.config_file = gw_xstrdup(cfg->config_file);
    next.reset_state = cfg->reset_state;
    next.check_only = cfg->check_only;
    int r = read_file(&next);
    for (size_t i = 0; r == 0 && i < N_OPTS; i++)
        if (flag_store[i])
            r = set_value(&next, &opts[i], flag_store[i]);     /* accepted at the start: cannot fail */
    if (r == 0)
        r = gwd_config_validate(&next);
    if (r < 0) {
        gwd_config_free(&next);
        return r;
    }
    unsigned applied = 0, refused = 0;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        if (same_value(cfg, &next, o))
            continue;
        char now[256], was[256];
        show_value(&next, o, now, sizeof now);
        show_value(cfg, o, was, sizeof was);
        if (!o->live) {
            gw_log(GW_LOG_WARNING, "reload: [%s] %s = %s needs a restart: the running value %s stays", o->section,
                   o->key, now, was);
            refused++;
            continue;
        }
        gw_log(GW_LOG_NOTICE, "reload: [%s] %s = %s applied (was %s)", o->section, o->key, now, was);
        /* Swap: the running config takes the new value, `next` frees the old. */
        char tmp[sizeof(long) > sizeof(char *) ? sizeof(long) : sizeof(char *)];
        size_t len = o->type == OPT_STR ? sizeof(char *) : o->type == OPT_LONG ? sizeof(long) : sizeof(bool);
        memcpy(tmp, (char *)cfg + o->offset, len);
        memcpy((char *)cfg + o->offset, (char *)&next + o->offset, len);
        memcpy((char *)&next + o->offset, tmp, len);
        applied++;
    }
    if (!same_models(cfg, &next)) {
        gw_log(GW_LOG_WARNING, "reload: [model ...] sections changed: they need a restart; the running ones stay");
        refused++;
    }
    gwd_config_free(&next);
    char refusals[64] = "";
    if (refused)
        snprintf(refusals, sizeof refusals, ", %u refused (need a restart)", refused);
    if (applied + refused == 0)
        gw_log(GW_LOG_NOTICE, "configuration reloaded from %s: no change", cfg->config_file);
    else
        gw_log(refused ? GW_LOG_WARNING : GW_LOG_NOTICE, "configuration reloaded from %s: %u change(s) applied%s",
               cfg->config_file, applied, refusals);
    return 0;
}

void gwd_config_free(gwd_config *cfg)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].type == OPT_STR) {
            char **s = field(cfg, &opts[i]);
            free(*s);
            *s = NULL;
        }
    free(cfg->config_file);
    cfg->config_file = NULL;
    for (size_t i = 0; i < cfg->n_models; i++) {
        free(cfg->models[i].scrub_driver);
        free(cfg->models[i].scrub_driver_ready);
        free(cfg->models[i].scrub_commands);
    }
    free(cfg->models);
    cfg->models = NULL;
    cfg->n_models = 0;
}
