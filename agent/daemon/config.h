/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend configuration: one table of options read from the config file
 * (/etc/gpuwarden/gpuwarden.conf, INI) and overridable by a flag each. */
#ifndef GWD_CONFIG_H
#define GWD_CONFIG_H

#include <gpuwarden/sanitize.h>
#include <stdbool.h>
#include <stdio.h>

/* One [model vvvv:dddd] section of the config file: the clean-up's reset and
 * scrub settings for that GPU model (gw_model_policy; its id is set when the
 * policy is built, from `id`). */
typedef struct gwd_model {
    char id[10];                /* "10de:2330", lower-case */
    gw_model_policy pol;        /* its strings point at the owned copies below */
    char *scrub_driver, *scrub_driver_ready, *scrub_commands;
} gwd_model;

typedef struct gwd_config {
    char *config_file;
    char *host_root;
    char *state_dir;
    char *admin_endpoint;
    char *read_endpoint;
    char *events_endpoint;
    char *gate_endpoint;        /* ipc:// or "": the hook's gate, served on its own thread (gate.c) */
    char *read_group;           /* group owning the read socket (0660) */
    char *admin_group;          /* group owning the admin socket (0660); root and its members may connect */
    char *curve_secret_key;     /* Z85; required for tcp:// endpoints */
    char *curve_allowlist;      /* file of "<name> <Z85 public key>" lines; required for a tcp:// admin endpoint */
    char *host_backend;         /* sysfs | simulated */
    char *libvirt_uri;          /* "" disables the libvirt watcher */
    char *host_name;            /* deployable name prefix; "" = gethostname() */
    char *log_level;
    char *manage_vendors;       /* comma-separated vendor ids, e.g. "10de" */
    char *manage_addresses;     /* comma-separated BDFs */
    char *hooks_dir;
    char *rom_allowlist;
    char *isolation_policy;     /* fail | warn */
    char *clique_override;
    char *inventory_model;      /* per-gpu | per-clique */
    char *extra_traits;         /* comma-separated CUSTOM_ traits */
    long cleanup_workers;
    long step_timeout_s;
    long hook_timeout_s;
    long hooks_owner_uid;       /* who must own the hooks (0 = root); tests running unprivileged */
    long in_use_retry_s;
    long rescan_interval_s;
    long reconcile_interval_s;
    long max_message_bytes;
    long max_connections;       /* per endpoint (admin, read) */
    long audit_segment_bytes;   /* rotate audit.log at this size; 0 = never */
    long audit_segments;        /* rotated audit segments kept */
    bool foreground;
    bool reset_state;
    bool check_only;            /* --check-config */
    gwd_model *models;          /* [model vvvv:dddd] sections, config file only */
    size_t n_models;
} gwd_config;

/* Fill defaults, read the config file named by --config (or the default path
 * when it exists), then apply the flags; flags win. Returns 0, or 2 for a usage
 * error / bad config (message printed), or 1 after --help/--version. */
int gwd_config_load(gwd_config *cfg, int argc, char **argv);
/* Re-read the config file on SIGHUP, as a start would read it (defaults, the
 * file, the start's flags, which still win) and check it the same way. An
 * invalid file: -EINVAL (message printed), nothing changed. Otherwise 0, and
 * each option that differs is logged: those a reload applies (the table's
 * `live`: log level, rescan and reconcile intervals, in-use retry, extra
 * traits) take the new value in *cfg; any other keeps its running value
 * ("needs a restart"), as do the [model] sections. The caller then applies
 * the live options where they are used. */
int gwd_config_reload(gwd_config *cfg);
void gwd_config_free(gwd_config *cfg);
void gwd_config_usage(FILE *f);

/* The manual pages (manpage.c) from the option tables: what --help prints. */
typedef struct gwd_flag_doc {
    const char *flag, *arg, *help;  /* arg NULL: takes none */
    int id;
} gwd_flag_doc;
typedef struct gwd_option_doc {
    const char *section, *key, *flag, *def, *help;
    bool live;                      /* a reload (SIGHUP) applies it */
    bool is_bool;
} gwd_option_doc;
/* The flags that are not config-file options. */
size_t gwd_config_flags(const gwd_flag_doc **out);
size_t gwd_config_option_count(void);
void gwd_config_option_doc(size_t i, gwd_option_doc *out);
/* gpuwardend(8) ("8") or gpuwarden.conf(5) ("5") as roff; -EINVAL for
 * another section. */
int gwd_config_print_man(FILE *f, const char *section);
void gwd_config_print_sample(FILE *f);
int gwd_config_validate(const gwd_config *cfg);
/* The CURVE allow-list: the client public keys that may use a tcp:// admin
 * endpoint, each with the name the audit log records for it. The file holds
 * one "<name> <40-character Z85 public key>" a line; blank lines and lines
 * starting with '#' are skipped. */
typedef struct gwd_allowlist {
    size_t n;
    struct gwd_allowed_key {
        char name[65];          /* [A-Za-z0-9._@+-], 1..64 */
        char key[41];           /* Z85 */
    } *keys;
} gwd_allowlist;

/* Read and check the whole file: 0 and *out, or -errno with a message
 * naming FILE:LINE for the first bad line (gw_error_message()); on failure
 * nothing is handed out. Names and keys must be unique. */
int gwd_allowlist_load(const char *path, gwd_allowlist **out);
void gwd_allowlist_free(gwd_allowlist *list);
/* The name of a listed Z85 key; NULL when not listed. */
const char *gwd_allowlist_name(const gwd_allowlist *list, const char *key);

/* Syslog priority of a level name, -1 when unknown. */
int gwd_log_level(const char *name);

#endif
