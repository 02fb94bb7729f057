/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden hook qemu NAME OP SUBOP [EXTRA]: the libvirt qemu hook.
 *
 * libvirtd runs it synchronously with the domain XML on stdin and waits, so
 * it must be quick and must never call back into libvirt (deadlock): it
 * talks to the daemon only. See docs/libvirt.md.
 */
#include <fcntl.h>
#include <gpuwarden/attach.h>
#include <gpuwarden/client.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "options.h"
#include "publish_wait.h"

#define MAX_XML (16u << 20)         /* a domain XML is a few KiB; refuse absurd input */
#define BATCH 64                    /* the protocol's limit on `addresses` */

typedef struct hook_opts {
    const char *endpoint;           /* NULL = the client's default (admin endpoint) */
    const char *gate_endpoint;      /* NULL = see gate_endpoint() */
    const char *host_root;          /* for the sysfs class check */
    bool allow_when_down;
    unsigned int timeout_ms;
    unsigned int publish_wait_ms;   /* after `release end`; 0: do not wait */
} hook_opts;

enum { OPT_ON_DAEMON_DOWN = 1, OPT_TIMEOUT_MS, OPT_HOST_ROOT, OPT_PUBLISH_WAIT, OPT_GATE_ENDPOINT };

static const cli_opt hook_options[] = {
    { "on-daemon-down", 0, "P", OPT_ON_DAEMON_DOWN,
      "when the daemon cannot be asked and the domain passes a GPU\nthrough: refuse (default) or allow the start\n"
      "(env GPUWARDEN_HOOK_ON_DAEMON_DOWN)", "refuse allow", 0 },
    { "timeout-ms", 0, "N", OPT_TIMEOUT_MS, "per request (env GPUWARDEN_HOOK_TIMEOUT_MS; default 5000)", NULL, 0 },
    { "gate-endpoint", 0, "EP", OPT_GATE_ENDPOINT,
      "where `prepare begin` asks `gate` (env GPUWARDEN_GATE_ENDPOINT;\n"
      "default: the --endpoint when one is given, else the\n"
      "daemon's gate endpoint " GW_PROTO_GATE_ENDPOINT "\n"
      "when its socket exists, else the admin endpoint)", NULL, 0 },
    { "publish-wait", 0, "SECONDS", OPT_PUBLISH_WAIT,
      "on `release end`, wait at most this long (polling the\n"
      "daemon's `metrics` every 50 ms) until the Cyborg shim has\n"
      "published the inventory that shows the released GPUs\n"
      "reserved: libvirt runs this hook inside the domain's\n"
      "destroy, and Nova frees the GPU's Placement allocation\n"
      "only after destroy returns, so Placement never offers a\n"
      "GPU whose clean-up has not passed. No wait when no\n"
      "writer has published since the daemon started. 0\n"
      "disables; at most 600; default 10\n"
      "(env GPUWARDEN_HOOK_PUBLISH_WAIT)", NULL, 0 },
    { "host-root", 0, "DIR", OPT_HOST_ROOT,
      "where sysfs is, to tell GPUs from other PCI devices when the\ndaemon is down (default /)", "@dir", 0 },
    { 0 },
};

const cli_spec cmd_hook_spec = {
    .name = "hook",
    .synopsis = "[OPTIONS] qemu NAME OP SUBOP [EXTRA]",
    .description =
        "The libvirt qemu hook (/etc/libvirt/hooks/qemu.d/gpuwarden runs it with the domain XML on stdin).\n"
        "  prepare begin   ask the daemon whether domain NAME may start with its PCI host\n"
        "                  devices (op `gate`); exit 1 with the reasons on stderr if not\n"
        "  started begin   tell the daemon the domain now holds its devices (`attached`)\n"
        "  release end     tell the daemon the domain let them go (`released`): they\n"
        "                  are reserved at once; their clean-up starts when no domain\n"
        "                  references them any more: at once for a transient domain,\n"
        "                  at `virsh undefine` for a defined one (a shut-off defined\n"
        "                  domain keeps its GPUs and may start on them again); then,\n"
        "                  when a Placement writer (the Cyborg shim) is active, wait\n"
        "                  until Placement shows the GPUs reserved (see --publish-wait);\n"
        "                  always exit 0\n"
        "  anything else   exit 0 at once\n"
        "It talks only to the daemon, never to libvirt.",
    .globals = CLI_G_ENDPOINT,
    .flags = CLI_STOP_AT_OPERAND,
    .endpoint_help = "daemon endpoint (env GPUWARDEN_ENDPOINT; default the admin\n"
                     "endpoint " GW_PROTO_ADMIN_ENDPOINT ")",
    .options = hook_options,
    .operands = "qemu",
    .exit_codes = "exit codes: 0 go ahead, 1 refused (or the domain XML is unreadable), 2 usage",
};

/* ---- input --------------------------------------------------------------- */

static int read_stdin(char **out, size_t *len)
{
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_XML) {
                free(buf);
                fprintf(stderr, "gpuwarden hook: domain XML larger than %u bytes\n", MAX_XML);
                return -1;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return -1;
            }
            buf = b;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, stdin);
        n += k;
        if (k == 0)
            break;
    }
    if (ferror(stdin)) {
        free(buf);
        fprintf(stderr, "gpuwarden hook: cannot read the domain XML on stdin\n");
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* libvirt writes the XML whatever the op; reading it spares libvirt a broken
 * pipe. Bounded, and skipped when run by hand on a terminal. */
static void drain_stdin(void)
{
    if (isatty(STDIN_FILENO))
        return;
    char buf[65536];
    size_t total = 0;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, stdin)) > 0 && (total += k) < MAX_XML)
        ;
}

/* True when a function of `address`'s slot is a display controller (class
 * 03xx): the only devices whose start may be refused while the daemon is
 * down. Unreadable sysfs counts as a GPU (the safe side). */
static bool slot_has_gpu(const char *root, const char *address)
{
    bool any_readable = false;
    for (int fn = 0; fn < 8; fn++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%.10s.%d/class",
                 strcmp(root, "/") ? root : "", address, fn);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char cls[32] = "";
        bool ok = fgets(cls, sizeof cls, f) != NULL;
        fclose(f);
        if (!ok)
            continue;
        any_readable = true;
        if (!strncmp(cls, "0x03", 4))
            return true;
    }
    return !any_readable;
}

/* ---- the daemon ---------------------------------------------------------- */

/* The daemon could not be asked: not there, not answering in time, or
 * answering that it cannot serve yet (`unavailable`, e.g. starting). */
static bool daemon_down(const gw_client *c)
{
    const gw_client_error *e = gw_client_last_error(c);
    return e->code == GW_PROTO_UNAVAILABLE;
}

/* Every refused address and why, over all batches. */
typedef struct verdict {
    bool allowed;
    char *reasons;                  /* "0000:1a:00.0 dirty: clean-up running; ..." */
} verdict;

static void verdict_add(verdict *v, const char *address, const char *reason)
{
    size_t old = v->reasons ? strlen(v->reasons) : 0;
    size_t add = strlen(address) + strlen(reason) + 4;
    char *s = realloc(v->reasons, old + add);
    if (!s)
        abort();
    snprintf(s + old, add, "%s%s %s", old ? "; " : "", address, reason);
    v->reasons = s;
}

/* Where every op but `gate` is asked: --endpoint / GPUWARDEN_ENDPOINT, else
 * the admin endpoint. */
static const char *admin_endpoint(const hook_opts *o)
{
    return o->endpoint ? o->endpoint : GW_PROTO_ADMIN_ENDPOINT;
}

/* Where `gate` is asked. The daemon serves it on a thread of its own at
 * the gate endpoint, where nothing another client sends can queue ahead of
 * a VM's start (docs/daemon.md, "The gate endpoint"); the admin endpoint
 * serves it too, for a daemon with none (gate_endpoint empty) and for a
 * hook pointed elsewhere with --endpoint. */
static const char *gate_endpoint(const hook_opts *o)
{
    if (o->gate_endpoint)
        return o->gate_endpoint;
    if (o->endpoint)
        return o->endpoint;
    return access(GW_PROTO_GATE_ENDPOINT + strlen("ipc://"), F_OK) == 0 ? GW_PROTO_GATE_ENDPOINT
                                                                         : GW_PROTO_ADMIN_ENDPOINT;
}

static int open_client_at(const hook_opts *o, const char *endpoint, gw_client **c)
{
    gw_client_options co = GW_CLIENT_OPTIONS_INIT;
    co.endpoint = endpoint;
    co.timeout_ms = (int)o->timeout_ms;
    co.actor = "libvirt qemu hook";
    return gw_client_new(c, &co);
}

/* `gate` for every batch of addresses. Returns 0 with *v filled, or -errno
 * with *down telling whether the daemon could not be asked at all. */
static int ask_gate(const hook_opts *o, const char *domain, char **addrs, size_t n, verdict *v,
                    bool *down)
{
    gw_client *c;
    *down = false;
    int r = open_client_at(o, gate_endpoint(o), &c);
    if (r < 0)
        return r;
    v->allowed = true;
    for (size_t at = 0; at < n && r >= 0; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        json_t *res = NULL;
        r = gw_client_gate(c, domain, (const char *const *)addrs + at, k, &res);
        if (r < 0) {
            *down = daemon_down(c);
            break;
        }
        if (!json_is_true(json_object_get(res, "allowed")))
            v->allowed = false;
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(res, "reasons"), i, item) {
            const char *a = json_string_value(json_object_get(item, "address"));
            const char *why = json_string_value(json_object_get(item, "reason"));
            verdict_add(v, a ? a : "?", why ? why : "refused");
        }
        json_decref(res);
    }
    gw_client_free(c);
    return r;
}

/* What the `released` replies said, for the wait on Placement. */
typedef struct release_mark {
    char gpu[16];               /* the first managed GPU among the addresses; "" when none */
    size_t n_gpus;              /* how many were managed */
    uint64_t revision;          /* the highest inventory revision the replies named; 0: none
                                   (an older daemon, or no inventory to publish) */
} release_mark;

static void mark_release(release_mark *m, const json_t *res)
{
    const json_t *devices = json_object_get(res, "devices");
    const char *first = json_string_value(json_array_get(devices, 0));
    if (first && !m->gpu[0])
        snprintf(m->gpu, sizeof m->gpu, "%s", first);
    m->n_gpus += json_array_size(devices);
    const json_t *rev = json_object_get(res, "revision");
    if (json_is_integer(rev) && json_integer_value(rev) > 0 && (uint64_t)json_integer_value(rev) > m->revision)
        m->revision = (uint64_t)json_integer_value(rev);
}

static int send_hint(const hook_opts *o, const char *op, const char *domain, char **addrs, size_t n,
                     release_mark *mark)
{
    gw_client *c;
    int r = open_client_at(o, admin_endpoint(o), &c);
    if (r < 0)
        return r;
    for (size_t at = 0; at < n && r >= 0; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        json_t *res = NULL;
        r = !strcmp(op, "released")
                ? gw_client_released(c, domain, (const char *const *)addrs + at, k, &res)
                : gw_client_attached(c, domain, (const char *const *)addrs + at, k, &res);
        if (r >= 0 && mark)
            mark_release(mark, res);
        json_decref(res);
    }
    gw_client_free(c);
    return r;
}

/*
 * After `release end`: wait until Placement shows the released GPUs
 * reserved. libvirt runs this hook synchronously inside virDomainDestroy,
 * and Nova deletes the instance's Placement allocation only once destroy has
 * returned; holding the return until the shim has published the inventory
 * revision of the release means Placement never shows the GPU free (neither
 * allocated nor reserved) while it is dirty. Bounded, and never a failure:
 * a hook must not fail a domain's teardown, and the gate still refuses a VM
 * on a GPU that is not clean. No writer yet (`published` 0 since the daemon
 * started, or a daemon without the field) means there is nothing to wait for.
 */
static void wait_published(const hook_opts *o, const char *domain, const release_mark *m)
{
    cli_publish_wait w = { .endpoint = admin_endpoint(o),
                           .actor = "libvirt qemu hook", .timeout_ms = o->timeout_ms,
                           .wait_ms = o->publish_wait_ms, .revision = m->revision };
    switch (cli_wait_published(&w)) {
    case CLI_PUBLISH_REACHED:
    case CLI_PUBLISH_NO_WRITER:
        break;
    case CLI_PUBLISH_ERROR:
        fprintf(stderr, "gpuwarden: warning: domain '%s': cannot ask the daemon whether Placement shows "
                        "GPU %s reserved (%s); Placement may offer it for up to one Cyborg agent cycle\n",
                domain, m->gpu, w.error);
        break;
    case CLI_PUBLISH_RESTARTED:
        fprintf(stderr, "gpuwarden: warning: domain '%s': the daemon restarted while waiting for "
                        "Placement to show GPU %s reserved; not waiting further\n", domain, m->gpu);
        break;
    case CLI_PUBLISH_TIMEOUT: {
        char more[40] = "";
        if (m->n_gpus > 1)
            snprintf(more, sizeof more, " (and %zu more)", m->n_gpus - 1);
        fprintf(stderr, "gpuwarden: warning: domain '%s': Placement does not show GPU %s%s reserved "
                        "after %.1f s (inventory revision %llu of the release, published up to %llu): "
                        "Placement may offer it for up to one Cyborg agent cycle; a VM placed on it "
                        "then is refused by this hook until its clean-up has passed\n",
                domain, m->gpu, more, o->publish_wait_ms / 1000.0, (unsigned long long)m->revision,
                (unsigned long long)w.published);
        break;
    }
    }
}

/* ---- a start this hook refused ------------------------------------------ */

/*
 * libvirt runs `release end` also for a start that `prepare begin` refused
 * (the failed start's clean-up, seen with libvirt 9.0). QEMU never ran, yet a
 * `released` hint names a domain the daemon never saw on the GPU, which it
 * must count as having held it (docs/libvirt.md): that voids the clean-up
 * running on the GPU, which runs again only after the in-use retry, so each
 * refused start would delay the clean-up and a scheduler retrying would
 * starve it. So a refusal leaves a mark next to the daemon's ipc socket,
 * `hook-refused.<domain>`, which the domain's next `release end` takes
 * instead of sending the hint; a start let through removes it. libvirt runs a
 * domain's start and its failure's clean-up in one job, so the mark never
 * stands for a domain whose QEMU ran. Not ipc:// (or an unusable name): no
 * mark, the hint is sent as before.
 */
static bool refused_mark_path(const hook_opts *o, const char *domain, char *out, size_t len)
{
    const char *ep = admin_endpoint(o);
    if (strncmp(ep, "ipc://", 6) || !*domain || strchr(domain, '/'))
        return false;
    const char *path = ep + 6;
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return false;
    int n = snprintf(out, len, "%.*s/hook-refused.%s", (int)(slash - path), path, domain);
    return n > 0 && (size_t)n < len;
}

static void mark_refused(const hook_opts *o, const char *domain, bool refused)
{
    char path[4096];
    if (!refused_mark_path(o, domain, path, sizeof path))
        return;
    if (!refused) {
        (void)unlink(path);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd);
}

/* True (and the mark gone) when this domain's last start was refused here. */
static bool take_refused_mark(const hook_opts *o, const char *domain)
{
    char path[4096];
    return refused_mark_path(o, domain, path, sizeof path) && unlink(path) == 0;
}

/* ---- the ops ------------------------------------------------------------- */

/* The PCI host addresses of the domain XML on stdin; NULL after an error
 * (message printed). */
static char **domain_addresses(const char *domain, size_t *n)
{
    char *xml;
    size_t len;
    if (read_stdin(&xml, &len) < 0)
        return NULL;
    char **addrs;
    int r = gw_domain_xml_pci_sources(xml, len, &addrs, NULL);
    free(xml);
    if (r < 0) {
        fprintf(stderr, "gpuwarden: domain '%s': cannot read its XML: %s\n", domain,
                gw_error_message());
        return NULL;
    }
    *n = 0;
    while (addrs[*n])
        (*n)++;
    return addrs;
}

static int hook_prepare_ask(const hook_opts *o, const char *domain);

static int hook_prepare(const hook_opts *o, const char *domain)
{
    int rc = hook_prepare_ask(o, domain);
    mark_refused(o, domain, rc != GW_EXIT_OK);
    return rc;
}

static int hook_prepare_ask(const hook_opts *o, const char *domain)
{
    size_t n;
    char **addrs = domain_addresses(domain, &n);
    if (!addrs)
        return GW_EXIT_FAILURE;     /* cannot tell what it passes through: refuse */
    if (n == 0) {
        gw_attach_list_free(addrs);
        return GW_EXIT_OK;          /* no PCI host devices: nothing to check */
    }
    verdict v = { 0 };
    bool down;
    int r = ask_gate(o, domain, addrs, n, &v, &down);
    int rc = GW_EXIT_OK;
    if (r >= 0 && !v.allowed) {
        fprintf(stderr, "gpuwarden: refusing to start domain '%s': %s\n", domain,
                v.reasons ? v.reasons : "refused by the daemon");
        rc = GW_EXIT_FAILURE;
    } else if (r < 0 && down) {
        const char *gpu = NULL;
        for (size_t i = 0; i < n && !gpu; i++)
            if (slot_has_gpu(o->host_root, addrs[i]))
                gpu = addrs[i];
        if (!gpu) {
            rc = GW_EXIT_OK;        /* no GPU among its devices: not ours to block */
        } else if (o->allow_when_down) {
            fprintf(stderr, "gpuwarden: warning: domain '%s' starts with GPU %s unchecked: the "
                            "daemon cannot be asked (%s)\n", domain, gpu, gw_error_message());
        } else {
            fprintf(stderr, "gpuwarden: refusing to start domain '%s': the gpuwarden daemon "
                            "cannot be asked whether GPU %s is clean (%s); "
                            "GPUWARDEN_HOOK_ON_DAEMON_DOWN=allow starts such domains unchecked\n",
                    domain, gpu, gw_error_message());
            rc = GW_EXIT_FAILURE;
        }
    } else if (r < 0) {
        fprintf(stderr, "gpuwarden: refusing to start domain '%s': the daemon did not allow it: "
                        "%s\n", domain, gw_error_message());
        rc = GW_EXIT_FAILURE;
    }
    free(v.reasons);
    gw_attach_list_free(addrs);
    return rc;
}

/* Hints never fail the hook: on `started` that would kill the guest, on
 * `release` there is nothing to stop; the daemon's libvirt watcher and
 * reconcile see the same change anyway, a little later. */
static int hook_hint(const hook_opts *o, const char *op, const char *domain)
{
    size_t n;
    char **addrs = domain_addresses(domain, &n);
    if (!addrs || n == 0) {
        gw_attach_list_free(addrs);
        return GW_EXIT_OK;
    }
    bool released = !strcmp(op, "released");
    if (released && take_refused_mark(o, domain)) {
        gw_attach_list_free(addrs);
        return GW_EXIT_OK;          /* the end of a start refused above: QEMU never ran */
    }
    release_mark mark = { .gpu = "" };
    if (send_hint(o, op, domain, addrs, n, released ? &mark : NULL) < 0)
        fprintf(stderr, "gpuwarden: warning: domain '%s': `%s` hint not delivered: %s\n", domain,
                op, gw_error_message());
    else if (released && mark.n_gpus > 0 && mark.revision > 0 && o->publish_wait_ms > 0)
        wait_published(o, domain, &mark);
    gw_attach_list_free(addrs);
    return GW_EXIT_OK;
}

static int parse_policy(const char *s, bool *allow)
{
    if (!strcmp(s, "refuse"))
        *allow = false;
    else if (!strcmp(s, "allow"))
        *allow = true;
    else
        return -1;
    return 0;
}

static int parse_timeout(const char *s, unsigned int *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v == 0 || v > 600000)
        return -1;
    *out = (unsigned int)v;
    return 0;
}

/* '+' in the spec's flags: options end at the first operand, libvirt's
 * arguments are not ours. */
static int hook_option(void *ctx, int id, const char *arg)
{
    hook_opts *o = ctx;
    switch (id) {
    case OPT_ON_DAEMON_DOWN:
        if (parse_policy(arg, &o->allow_when_down) == 0)
            return GW_EXIT_OK;
        fprintf(stderr, "gpuwarden hook: --on-daemon-down '%s': expected refuse or allow\n", arg);
        return GW_EXIT_USAGE;
    case OPT_TIMEOUT_MS:
        if (parse_timeout(arg, &o->timeout_ms) == 0)
            return GW_EXIT_OK;
        fprintf(stderr, "gpuwarden hook: --timeout-ms '%s': expected 1..600000\n", arg);
        return GW_EXIT_USAGE;
    case OPT_HOST_ROOT:
        o->host_root = arg;
        return GW_EXIT_OK;
    case OPT_GATE_ENDPOINT:
        o->gate_endpoint = arg;
        return GW_EXIT_OK;
    case OPT_PUBLISH_WAIT:
        if (cli_parse_publish_wait(arg, &o->publish_wait_ms) == 0)
            return GW_EXIT_OK;
        fprintf(stderr, "gpuwarden hook: --publish-wait '%s': expected seconds, 0..%d\n", arg,
                CLI_PUBLISH_WAIT_MAX_S);
        return GW_EXIT_USAGE;
    default:
        return GW_EXIT_USAGE;
    }
}

int cmd_hook(int argc, char **argv)
{
    hook_opts o = { .endpoint = getenv("GPUWARDEN_ENDPOINT"), .gate_endpoint = getenv("GPUWARDEN_GATE_ENDPOINT"),
                    .host_root = "/",
                    .allow_when_down = false, .timeout_ms = 5000, .publish_wait_ms = CLI_PUBLISH_WAIT_DEFAULT_MS };
    const char *env;
    if ((env = getenv("GPUWARDEN_HOOK_ON_DAEMON_DOWN")) && parse_policy(env, &o.allow_when_down) < 0) {
        fprintf(stderr, "gpuwarden hook: GPUWARDEN_HOOK_ON_DAEMON_DOWN='%s': expected refuse or allow\n", env);
        return GW_EXIT_USAGE;
    }
    if ((env = getenv("GPUWARDEN_HOOK_TIMEOUT_MS")) && parse_timeout(env, &o.timeout_ms) < 0) {
        fprintf(stderr, "gpuwarden hook: GPUWARDEN_HOOK_TIMEOUT_MS='%s': expected 1..600000\n", env);
        return GW_EXIT_USAGE;
    }
    if ((env = getenv("GPUWARDEN_HOOK_PUBLISH_WAIT")) && cli_parse_publish_wait(env, &o.publish_wait_ms) < 0) {
        fprintf(stderr, "gpuwarden hook: GPUWARDEN_HOOK_PUBLISH_WAIT='%s': expected seconds, 0..%d\n", env,
                CLI_PUBLISH_WAIT_MAX_S);
        return GW_EXIT_USAGE;
    }
    cli_remote r;
    int code = cli_parse(&cmd_hook_spec, argc, argv, &r, hook_option, &o);
    if (code >= 0)
        return code;
    if (r.endpoint)
        o.endpoint = r.endpoint;
    int npos = argc - optind;
    if (npos < 4 || npos > 5 || strcmp(argv[optind], "qemu")) {
        fprintf(stderr, "gpuwarden hook: expected: qemu NAME OP SUBOP [EXTRA]\n");
        cli_usage(&cmd_hook_spec, stderr);
        return GW_EXIT_USAGE;
    }
    const char *domain = argv[optind + 1], *op = argv[optind + 2], *subop = argv[optind + 3];
    if (!strcmp(op, "prepare") && !strcmp(subop, "begin"))
        return hook_prepare(&o, domain);
    if (!strcmp(op, "started") && !strcmp(subop, "begin"))
        return hook_hint(&o, "attached", domain);
    if (!strcmp(op, "release") && !strcmp(subop, "end"))
        return hook_hint(&o, "released", domain);
    drain_stdin();
    return GW_EXIT_OK;
}
