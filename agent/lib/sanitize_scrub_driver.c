/* SPDX-License-Identifier: Apache-2.0 */
/* Scrub method "driver": some GPUs can only be cleared by their vendor's own
 * driver (memory behind no BAR we could zero, engines only the driver
 * knows). So the GPU function goes to that host driver for a while: off
 * vfio-pci, driver_override set to the model's driver, probed, and once the
 * driver says it is ready the model's commands run with the device's
 * address as their last argument. Their exit status is the verdict, not the
 * fact that they ran.
 *
 * Whatever happens in between, the device goes back to vfio-pci before the
 * step ends: a GPU left on a host driver is reachable from the host and
 * outside the isolation the rest of the clean-up checked. The way back is
 * checked too; not getting there fails the step (quarantine) and says where
 * the device was left. The policy refuses a model whose worst case would
 * outlast the step's timeout, since an abandoned run writes nothing more,
 * the way back included.
 *
 * The run's hold of the group node (taken at bind) is let go for this round
 * trip: the host driver has to own the device, and a group whose container
 * the reset set up keeps every kernel driver off it (DMA ownership). Use is
 * checked right before leaving vfio-pci instead, and the hold is taken again
 * once the device is back: if a process opened the new group node in
 * between, that open's EBUSY fails the step (in use). Every sysfs write goes
 * through gw_host_write(): managed devices only, each one in the
 * evidence. */
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

#define VFIO "vfio-pci"
#define POLL_MS 100

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int write_text(gw_sctx *c, const char *path, const char *text)
{
    return gw_host_write(c, c->address, path, text, strlen(text));
}

static int set_override(gw_sctx *c, const char *driver)
{
    _cleanup_free_ char *path = gw_dev_path(c->address, "driver_override");
    return write_text(c, path, driver);
}

/* Move the device to `driver` the way the bind step moves it to vfio-pci:
 * driver_override first (so that nothing else grabs it once unbound), unbind
 * from the current driver, drivers_probe, and when the probe left it unbound
 * a write to drivers/<driver>/bind, which returns the probe's error (the
 * kernel's answer goes into the evidence through gw_host_write). 0 when it
 * ends on `driver`. */
static int move_to(gw_sctx *c, const char *driver)
{
    _cleanup_free_ char *now = NULL;
    if (gw_dev_driver(c->ops, c->address, &now) < 0)
        return gw_error_set(-EIO, "driver of %s unreadable: %s", c->address, gw_error_message());
    if (set_override(c, driver) < 0)
        return -EIO;
    if (now && !strcmp(now, driver))
        return 0;
    if (now) {
        _cleanup_free_ char *path = gw_strdup_printf("sys/bus/pci/drivers/%s/unbind", now);
        if (write_text(c, path, c->address) < 0)
            return -EIO;
    }
    if (write_text(c, "sys/bus/pci/drivers_probe", c->address) < 0)
        return -EIO;
    free(now);
    now = NULL;
    if (gw_dev_driver(c->ops, c->address, &now) == 0 && now && !strcmp(now, driver))
        return 0;
    if (!now) {
        _cleanup_free_ char *path = gw_strdup_printf("sys/bus/pci/drivers/%s/bind", driver);
        if (write_text(c, path, c->address) < 0)
            return -EIO;
        if (gw_dev_driver(c->ops, c->address, &now) == 0 && now && !strcmp(now, driver)) {
            gw_note(c, "%s: bound by drivers/%s/bind after drivers_probe left it unbound", c->address, driver);
            return 0;
        }
    }
    return gw_error_set(-ENODEV, "%s is bound to %s, not %s", c->address, now ? now : "no driver", driver);
}

/* The host driver is ready when the `driver` link names it and, when the
 * model says so, its path under the device exists (the driver creates it at
 * the end of its probe). */
static gw_verdict wait_ready(gw_sctx *c, const gw_model_policy *m)
{
    unsigned timeout = m->scrub_driver_ready_timeout_ms;
    _cleanup_free_ char *ready = m->scrub_driver_ready ? gw_dev_path(c->address, m->scrub_driver_ready) : NULL;
    int64_t t0 = now_ms(), deadline = t0 + timeout;
    for (;;) {
        _cleanup_free_ char *now = NULL;
        bool bound = gw_dev_driver(c->ops, c->address, &now) == 0 && now && !strcmp(now, m->scrub_driver);
        bool there = bound && (!ready || gw_hostops_exists(c->ops, ready) == 0);
        if (there) {
            gw_note(c, "%s ready after %lld ms (driver link%s%s)", m->scrub_driver, (long long)(now_ms() - t0),
                    ready ? ", " : "", ready ? m->scrub_driver_ready : "");
            return GW_VERDICT_PASS;
        }
        if (now_ms() >= deadline || gw_sctx_abandoned(c)) {
            if (!bound)
                return gw_fail(c, "%s did not become ready within %u ms: bound to %s", m->scrub_driver, timeout,
                               now ? now : "no driver");
            return gw_fail(c, "%s did not become ready within %u ms: %s does not exist", m->scrub_driver,
                           timeout, m->scrub_driver_ready);
        }
        sleep_ms(POLL_MS);
    }
}

/* "/a/b x y 0000:03:00.0" for the evidence. */
static char *command_text(char *const argv[])
{
    gw_strbuf b = { 0 };
    for (size_t i = 0; argv[i]; i++)
        gw_strbuf_append(&b, "%s%s", i ? " " : "", argv[i]);
    return b.s;
}

/* Run the commands in order, each with the address appended; the first one
 * that does not exit 0 fails the step and the rest do not run. */
static gw_verdict run_commands(gw_sctx *c, const gw_model_policy *m)
{
    char ***cmds = NULL;
    size_t n = 0;
    if (gw_scrub_commands_split(m->scrub_commands, &cmds, &n) < 0)
        return gw_fail(c, "%s", gw_error_message());
    /* A minimal environment, as for the hooks: nothing of the daemon's own. */
    _cleanup_free_ char *env_dev = gw_strdup_printf("GW_DEVICE=%s", c->address);
    _cleanup_free_ char *env_drv = gw_strdup_printf("GW_SCRUB_DRIVER=%s", m->scrub_driver);
    _cleanup_free_ char *env_backend = gw_strdup_printf("GW_HOST_BACKEND=%s", gw_hostops_name(c->ops));
    char *envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env_dev, env_drv,
                     env_backend, "LC_ALL=C", NULL };
    unsigned timeout = m->scrub_command_timeout_ms;
    gw_verdict v = GW_VERDICT_PASS;
    for (size_t i = 0; i < n && v == GW_VERDICT_PASS; i++) {
        if (gw_sctx_abandoned(c)) {
            v = gw_fail(c, "run abandoned: command %zu not run", i + 1);
            break;
        }
        size_t argc = 0;
        while (cmds[i][argc])
            argc++;
        char **argv = gw_xcalloc(argc + 2, sizeof *argv);
        memcpy(argv, cmds[i], argc * sizeof *argv);
        argv[argc] = c->address;
        _cleanup_free_ char *text = command_text(argv);
        gw_exec_outcome o = { 0 };
        pid_t pid = 0;
        int64_t t0 = now_ms();
        int r = gw_exec_run(argv, envp, timeout, &o, &pid);
        int64_t took = now_ms() - t0;
        free(argv);
        _cleanup_free_ char *tail = gw_exec_output_tail(&o);
        if (r < 0)
            v = gw_fail(c, "command %zu (%s) could not start: %s", i + 1, text, strerror(-r));
        else if (o.timed_out)
            v = gw_fail(c, "command %zu (%s) timed out after %u ms: killed its process group %d%s", i + 1, text,
                        timeout, (int)pid, tail);
        else if (WIFSIGNALED(o.status))
            v = gw_fail(c, "command %zu (%s) killed by signal %d%s", i + 1, text, WTERMSIG(o.status), tail);
        else if (WEXITSTATUS(o.status) != 0)
            v = gw_fail(c, "command %zu (%s) exited %d%s", i + 1, text, WEXITSTATUS(o.status), tail);
        else
            gw_note(c, "command %zu (%s) exited 0 in %lld ms%s", i + 1, text, (long long)took, tail);
    }
    gw_scrub_commands_free(cmds, n);
    return v;
}

/* The way back, run whatever happened before: on vfio-pci, checked. */
static gw_verdict back_to_vfio(gw_sctx *c)
{
    if (move_to(c, VFIO) == 0) {
        gw_note(c, "%s back on " VFIO, c->address);
        return GW_VERDICT_PASS;
    }
    /* Copied first: reading the driver link may set another message. */
    _cleanup_free_ char *why = gw_xstrdup(gw_error_message());
    _cleanup_free_ char *now = NULL;
    gw_dev_driver(c->ops, c->address, &now);
    return gw_fail(c, "return to " VFIO " failed (%s): %s left on %s", why, c->address, now ? now : "no driver");
}

gw_verdict gw_scrub_driver(gw_sctx *c, const gw_model_policy *m)
{
    gw_note(c, "model %s: scrub driver: %s through %s%s%s", m->id, c->address, m->scrub_driver,
            m->scrub_driver_ready ? ", ready when " : "", m->scrub_driver_ready ? m->scrub_driver_ready : "");
    _cleanup_free_ char *why = NULL;
    if (gw_dev_managed(c->ops, &c->policy->pol, c->address, &why) <= 0)
        return gw_fail(c, "%s: the scrub rebinds only managed devices: not scrubbed",
                       why ? why : gw_error_message());
    _cleanup_free_ char *drvdir = gw_strdup_printf("sys/bus/pci/drivers/%s", m->scrub_driver);
    if (gw_hostops_exists(c->ops, drvdir) < 0)
        return gw_fail(c, "host driver %s is not loaded (no %s): not scrubbed, %s left on " VFIO, m->scrub_driver,
                       drvdir, c->address);
    _cleanup_free_ char *now = NULL;
    if (gw_dev_driver(c->ops, c->address, &now) < 0 || !now || strcmp(now, VFIO))
        return gw_fail(c, "%s is on %s, not " VFIO ": not scrubbed", c->address, now ? now : "no driver");

    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    gw_verdict v;
    if (gw_dev_targets(c->ops, c->address, &fns, &bridges, &group) < 0)
        v = gw_fail(c, "cannot list the device's functions: %s: not scrubbed", gw_error_message());
    else if (gw_check_not_in_use(c, &fns) != GW_VERDICT_PASS)
        v = gw_fail(c, "not scrubbed");
    else
        v = GW_VERDICT_PASS;
    gw_addrlist_clear(&bridges);
    if (v != GW_VERDICT_PASS) {
        gw_addrlist_clear(&fns);
        return v;
    }

    /* From here on the device may have left vfio-pci: every path below goes
     * through back_to_vfio(). */
    gw_release_run_holds(c, "the host driver must own the device");
    if (move_to(c, m->scrub_driver) < 0)
        v = gw_fail(c, "binding %s failed: %s", m->scrub_driver, gw_error_message());
    else
        v = wait_ready(c, m);
    if (v == GW_VERDICT_PASS)
        v = run_commands(c, m);
    gw_verdict back = back_to_vfio(c);
    if (back == GW_VERDICT_PASS)
        back = gw_hold_for_run(c, &fns);
    gw_addrlist_clear(&fns);
    return v == GW_VERDICT_PASS ? back : GW_VERDICT_FAIL;
}
