/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend: the per-host daemon. main() reads top to bottom: configuration,
 * policy, state (refusing a corrupt checkpoint), endpoints, the first scan,
 * the clean-up pool, the libvirt watcher, readiness, the serving loop, and an
 * orderly shutdown in which every transition is already on disk. main() only
 * starts and stops things: the loop, and the services the other files call
 * back into (clocks, wake-ups, events, signals), are loop.c's. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon.h"
#include "endpoint.h"
#include "hostops_sim.h"
#include "util.h"
#include "zap.h"

static int setup_policy(gwd *d)
{
    gw_sanitize_policy *p = &d->policy;
    *p = (gw_sanitize_policy)GW_SANITIZE_POLICY_INIT;
    unsigned step_ms = (unsigned)(d->cfg.step_timeout_s * 1000);
    for (int i = 0; i < GW_SANITIZE_POLICY_TIMEOUTS; i++)
        if (i != GW_STEP_HOOKS)
            p->timeout_ms[i] = step_ms;
    p->scrub_timeout_ms = step_ms;
    p->hooks_dir = d->cfg.hooks_dir;
    p->hook_timeout_ms = (unsigned)(d->cfg.hook_timeout_s * 1000);
    p->hooks_owner_uid = (unsigned)d->cfg.hooks_owner_uid;
    p->isolation = strcmp(d->cfg.isolation_policy, "warn") ? GW_ISOLATION_FAIL : GW_ISOLATION_WARN;

    char **vendors = gwd_split_list(d->cfg.manage_vendors);
    size_t nv = 0;
    for (char **v = vendors; *v; v++)
        nv++;
    d->manage_vendors = gw_xcalloc(nv + 1, sizeof *d->manage_vendors);
    for (size_t i = 0; i < nv; i++) {
        char *end;
        unsigned long id = strtoul(vendors[i], &end, 16);
        if (*end || id > 0xffff) {
            gw_log(GW_LOG_ERR, "[manage] vendors: '%s' is not a 4-digit hex vendor id", vendors[i]);
            gwd_strv_free(vendors);
            return -EINVAL;
        }
        d->manage_vendors[i] = (uint16_t)id;
    }
    gwd_strv_free(vendors);
    p->manage_vendors = d->manage_vendors;
    p->n_manage_vendors = nv;
    d->manage_addresses = gwd_split_list(d->cfg.manage_addresses);
    for (char **a = d->manage_addresses; *a; a++) {
        if (!gw_is_bdf(*a)) {
            gw_log(GW_LOG_ERR, "[manage] addresses: '%s' is not a canonical PCI address", *a);
            return -EINVAL;
        }
        p->n_manage_addresses++;
    }
    p->manage_addresses = (const char *const *)d->manage_addresses;

    gw_rom_allow *allow = NULL;
    size_t n_allow = 0;
    if (d->cfg.rom_allowlist[0] && gw_rom_allowlist_load(d->cfg.rom_allowlist, &allow, &n_allow) < 0) {
        gw_log(GW_LOG_ERR, "ROM allowlist: %s", gw_error_message());
        return -EINVAL;
    }
    p->rom_allowlist = allow;
    p->n_rom_allowlist = n_allow;

    /* Copied out of the config, which a SIGHUP replaces while the policy
     * stays until the next start. */
    d->models = gw_xcalloc(d->cfg.n_models ? d->cfg.n_models : 1, sizeof *d->models);
    for (size_t i = 0; i < d->cfg.n_models; i++) {
        gw_model_policy *m = &d->models[i];
        *m = d->cfg.models[i].pol;
        m->id = gw_xstrdup(d->cfg.models[i].id);
        m->scrub_driver = m->scrub_driver ? gw_xstrdup(m->scrub_driver) : NULL;
        m->scrub_driver_ready = m->scrub_driver_ready ? gw_xstrdup(m->scrub_driver_ready) : NULL;
        m->scrub_commands = m->scrub_commands ? gw_xstrdup(m->scrub_commands) : NULL;
    }
    p->models = d->models;
    p->n_models = d->cfg.n_models;

    d->extra_traits = gwd_split_list(d->cfg.extra_traits);
    if (d->cfg.clique_override[0] && gw_clique_override_load(&d->clique_override, d->cfg.clique_override) < 0)
        /* The topology's cliques stay in force; the operator sees why. */
        gw_log(GW_LOG_ERR, "clique override %s not used: %s", d->cfg.clique_override, gw_error_message());
    return 0;
}

static void free_policy(gwd *d)
{
    for (size_t i = 0; d->models && i < d->policy.n_models; i++) {
        free((char *)d->models[i].id);
        free((char *)d->models[i].scrub_driver);
        free((char *)d->models[i].scrub_driver_ready);
        free((char *)d->models[i].scrub_commands);
    }
    free(d->models);
    gw_rom_allowlist_free((gw_rom_allow *)d->policy.rom_allowlist, d->policy.n_rom_allowlist);
    free(d->manage_vendors);
    gwd_strv_free(d->manage_addresses);
    gwd_strv_free(d->extra_traits);
    gw_clique_override_free(d->clique_override);
}

static int open_state(gwd *d)
{
    if (d->cfg.reset_state) {
        char *moved = NULL;
        int r = gw_registry_reset_state(d->cfg.state_dir, &moved);
        if (r < 0) {
            gw_log(GW_LOG_ERR, "--reset-state: %s", gw_error_message());
            return r;
        }
        if (moved)
            gw_log(GW_LOG_WARNING, "--reset-state: checkpoint moved aside to %s", moved);
        free(moved);
    }
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = d->cfg.state_dir;
    o.audit_segment_bytes = (uint64_t)d->cfg.audit_segment_bytes;
    o.audit_segments = (unsigned)d->cfg.audit_segments;
    int r = gw_registry_open(&d->reg, &o);
    if (r < 0) {
        gw_log(GW_LOG_ERR, "state: %s", gw_error_message());
        if (r == GW_ESTATE_CORRUPT || r == GW_ESTATE_VERSION)
            gw_log(GW_LOG_ERR, "refusing to start: the checkpoint is kept as it is; start with --reset-state "
                               "to move it aside and start afresh");
        return r;
    }
    gw_registry_set_callback(d->reg, gwd_events_on_transition, d);
    return 0;
}

static int open_host(gwd *d)
{
    int r;
    if (!strcmp(d->cfg.host_backend, "simulated")) {
        gw_sim *sim;
        r = gw_hostops_sim_new(&d->ops, &sim, d->cfg.host_root);
    } else {
        r = gw_hostops_sysfs_new(&d->ops, d->cfg.host_root);
    }
    if (r < 0)
        gw_log(GW_LOG_ERR, "host backend %s on %s: %s", d->cfg.host_backend, d->cfg.host_root, gw_error_message());
    return r;
}

static int setup_signals(gwd *d)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    /* Blocked before any thread starts, so every thread inherits the mask and
     * signals arrive only through the signalfd on the main loop. */
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return d->signal_fd < 0 ? -errno : 0;
}

static int bind_endpoints(gwd *d)
{
    const char *key = d->cfg.curve_secret_key;
    long max = d->cfg.max_message_bytes;
    /* The open-file limit first: every client connection is a descriptor. */
    long conns = gwd_endpoint_limits(d->cfg.max_connections, max);
    if (conns < 0)
        return -EIO;
    /* Before any tcp:// endpoint: without a handler libzmq lets every
     * CURVE key in. */
    const char *eps[] = { d->cfg.admin_endpoint, d->cfg.read_endpoint, d->cfg.events_endpoint };
    for (size_t i = 0; i < 3; i++)
        if (!strncmp(eps[i], "tcp://", 6)) {
            if (gwd_zap_start(d) < 0)
                return -EIO;
            break;
        }
    d->admin_sock = gwd_endpoint_bind(d->zctx, ZMQ_ROUTER, "admin", d->cfg.admin_endpoint, 0660, d->cfg.admin_group,
                                      true, key, max, conns);
    d->read_sock = gwd_endpoint_bind(d->zctx, ZMQ_ROUTER, "read", d->cfg.read_endpoint, 0660, d->cfg.read_group,
                                     false, key, max, conns);
    d->pub_sock = gwd_endpoint_bind(d->zctx, ZMQ_PUB, "events", d->cfg.events_endpoint, 0660, d->cfg.read_group,
                                    false, key, max, conns);
    if (!d->admin_sock || !d->read_sock || !d->pub_sock)
        return -EIO;
    return gwd_gate_start(d, conns);
}

/* Static, not main's local: a clean-up step that still runs when main
 * returns (gwd_cleanup_fini() gave up waiting for it) reaches the daemon
 * through it until the process is gone. */
static gwd d;

int main(int argc, char **argv)
{
    /* One malloc arena for every thread. glibc gives each thread that
     * allocates while another holds the arena an arena of its own, and
     * keeps what was freed there for that thread: the clean-up worker's
     * arena held 2.3 MiB of the 8.8 MiB private dirty memory of an idle
     * daemon on 64 GPUs (6.4 MiB with one; docs/BENCHMARKS.md). The threads
     * here allocate little and seldom at the same time, so the one lock
     * costs nothing measurable. */
    mallopt(M_ARENA_MAX, 1);
    d.signal_fd = -1;
    d.wake_fd = -1;
    d.boot_ms = gwd_now_ms();
    int64_t start_ms = gwd_mono_ms();
    pthread_mutex_init(&d.event_lock, NULL);
    pthread_mutex_init(&d.lock, NULL);
    gwd_metrics_init(&d.metrics);
    int rc = gwd_config_load(&d.cfg, argc, argv);
    if (rc) {
        gwd_config_free(&d.cfg);
        return rc == 1 ? 0 : 2;
    }
    gw_log_set_level(gwd_log_level(d.cfg.log_level));
    if (d.cfg.host_name[0]) {
        d.host_name = gw_xstrdup(d.cfg.host_name);
    } else {
        char h[256] = "";
        gethostname(h, sizeof h - 1);
        d.host_name = gw_xstrdup(h);
    }

    rc = 1;
    if (setup_signals(&d) < 0 || (d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        gw_log(GW_LOG_ERR, "signals/eventfd: %s", strerror(errno));
        goto out;
    }
    if (setup_policy(&d) < 0) {
        rc = 2;
        goto out;
    }
    if (d.cfg.check_only) {
        printf("configuration ok%s%s\n", d.cfg.config_file ? ": " : "", d.cfg.config_file ? d.cfg.config_file : "");
        rc = 0;
        goto out;
    }
    if (open_host(&d) < 0 || open_state(&d) < 0)
        goto out;
    d.zctx = zmq_ctx_new();
    d.replies = gwd_replies_new();
    if (bind_endpoints(&d) < 0 || gwd_server_start(&d) < 0)
        goto out;
    gwd_fence_store_init(&d);     /* before the first kick, which adopts them */
    if (gwd_fleet_scan(&d) < 0)
        goto out;
    /* The first scan's records and pins: a constant number of writes, not
     * a few per GPU (registry.c: a scan's transitions go together; fleet.c:
     * the pins in one write). tests/python/test_daemon_steady.py reads it. */
    gw_log(GW_LOG_NOTICE, "start-up: first scan recorded in %llu checkpoint write(s)",
           (unsigned long long)gw_registry_checkpoint_writes(d.reg));
    /* The watcher before the pool, which keeps the source it is given. An
     * unreachable libvirtd is no failure: the watcher retries. */
    if (gwd_attachment_start(&d) < 0 || gwd_cleanup_init(&d) < 0)
        goto out;
    gwd_cleanup_kick(&d);
    gwd_events_flush(&d);
    gw_log(GW_LOG_NOTICE, "gpuwardend %s serving host %s (%s backend); admin %s, read %s, events %s, gate %s",
           gw_version(), d.cfg.host_root, d.cfg.host_backend, d.cfg.admin_endpoint, d.cfg.read_endpoint,
           d.cfg.events_endpoint, d.cfg.gate_endpoint[0] ? d.cfg.gate_endpoint : "none");
    /* What the start cost: the checkpoint writes (each a write, fsync and
     * rename) and the time to READY (scripts/bench.d/startup). */
    gw_log(GW_LOG_NOTICE, "start-up: %llu checkpoint write(s), ready %lld ms after start",
           (unsigned long long)gw_registry_checkpoint_writes(d.reg), (long long)(gwd_mono_ms() - start_ms));
    sd_notify(0, "READY=1\nSTATUS=serving");
    gwd_loop_run(&d);
    sd_notify(0, "STOPPING=1");
    uint64_t hits, misses;
    gwd_replies_stats(d.replies, &hits, &misses);
    gw_log(GW_LOG_INFO, "reply cache: %llu read(s) answered from it, %llu encoded", (unsigned long long)hits,
           (unsigned long long)misses);
    rc = 0;
out:;
    gwd_gate_stop(&d);          /* its gates read the registry and the attachment view */
    gwd_server_stop(&d);        /* its requests read the registry's directory */
    /* The pool first: its clean-ups still ask the attachment source. Steps
     * that outlive it keep the source, the hint view and the wake-up
     * descriptor (they wake the loop as they end) for the rest of the
     * process's life. */
    bool steps_done = gwd_cleanup_fini(&d);
    if (steps_done)
        gwd_attachment_stop(&d);
    gwd_fence_fini(&d);
    gwd_events_flush(&d);
    if (d.admin_sock)
        zmq_close(d.admin_sock);
    if (d.read_sock)
        zmq_close(d.read_sock);
    if (d.pub_sock)
        zmq_close(d.pub_sock);
    gwd_zap_stop(&d);
    if (d.zctx)
        zmq_ctx_term(d.zctx);
    /* A socket file left behind looks like a daemon that does not answer;
     * gone, clients are told at once that nothing is there. */
    const char *endpoints[] = { d.cfg.admin_endpoint, d.cfg.read_endpoint, d.cfg.events_endpoint,
                                d.cfg.gate_endpoint };
    for (size_t i = 0; i < 4; i++)
        if (endpoints[i] && !strncmp(endpoints[i], "ipc://", 6) && (d.admin_sock || d.read_sock || d.pub_sock))
            unlink(endpoints[i] + 6);
    gwd_replies_free(d.replies);
    gw_inventory_free(d.inventory);
    gw_host_free(d.host);
    gwd_strv_free(d.managed);
    gw_registry_free(d.reg);
    gw_hostops_unref(d.ops);
    free_policy(&d);
    if (d.wake_fd >= 0 && steps_done)
        close(d.wake_fd);
    if (d.signal_fd >= 0)
        close(d.signal_fd);
    free(d.host_name);
    gwd_config_free(&d.cfg);
    return rc;
}
