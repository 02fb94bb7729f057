/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden doctor: is this host ready to pass GPUs through safely? One
 * check per thing that must hold, each with what it saw and, when it is not
 * fine, the fix. Reads files only (every path under --host-root, so the
 * bundled test hosts can be checked), plus one `hello` and one `devices`
 * request to the daemon. Exit 0 when no check failed, 1 when one did, 2 for
 * a bad command line or an internal error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gpuwarden/attach.h>
#include <gpuwarden/client.h>
#include <gpuwarden/host.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"

#define DOCTOR_STATE_DIR "/var/lib/gpuwarden"
#define DOCTOR_HOOK "etc/libvirt/hooks/qemu.d/gpuwarden"

typedef enum { ST_OK, ST_WARN, ST_FAIL, ST_SKIP } doctor_status;

static const char *const status_names[] = { "ok", "warn", "fail", "skip" };

typedef struct doctor_check {
    const char *name;
    doctor_status status;
    char *detail;
    char *fix;
} doctor_check;

typedef struct doctor {
    const char *root;           /* "" for "/", else the host root without a trailing '/' */
    const char *shown_root;     /* as given, for messages */
    const char *endpoint;       /* for messages: the one the client options name */
    const char *state_dir;      /* NULL: <root>/var/lib/gpuwarden */
    char **addresses;           /* --address, NULL-terminated */
    size_t n_addresses;
    gw_host *host;              /* NULL when the scan failed */
    char *scan_error;
    json_t *hello;              /* the daemon's hello result, NULL when unreachable */
    json_t *devices;            /* its devices array, NULL when unreachable */
    char *daemon_error;
} doctor;

enum { OPT_HOST_ROOT = 1, OPT_STATE_DIR, OPT_ADDRESS };

static const cli_opt doctor_options[] = {
    { "host-root", 0, "DIR", OPT_HOST_ROOT, "check the host tree DIR instead of / (every file check)", "@dir", 0 },
    { "state-dir", 0, "DIR", OPT_STATE_DIR, "the daemon's state directory (default " DOCTOR_STATE_DIR " under the host root)",
      "@dir", 0 },
    { "address", 0, "ADDR", OPT_ADDRESS,
      "a managed GPU (repeatable); default: the daemon's GPUs, or every\nGPU found when the daemon cannot be asked",
      "@addr", 0 },
    { 0 },
};

const cli_spec cmd_doctor_spec = {
    .name = "doctor",
    .description =
        "Say whether this host is ready for gpuwarden, one check per line, each with\n"
        "a fix when it is not: iommu, vfio-pci, gpu-drivers (the managed GPUs have no\n"
        "host driver), libvirt-hook (/etc/libvirt/hooks/qemu.d/gpuwarden), libvirt-hook-\n"
        "loaded (the running libvirtd started after it), vfio-access (AppArmor/SELinux\n"
        "let QEMU open /dev/vfio/N), fabric-manager (NVSwitch hosts), daemon (hello),\n"
        "state-dir (writable). Status: ok; warn (works, with a risk the detail names);\n"
        "fail; skip (does not apply). Only reads, but for one test file created and\n"
        "removed in the state directory. -f json and yaml print {ready, host_root,\n"
        "checks: [{name, status, detail, fix}]}; -f value and -c act on the checks.\n"
        "docs/doctor.md says how each check knows.",
    .globals = CLI_G_ENDPOINT | CLI_G_TIMEOUT | CLI_G_OUTPUT,
    .formats = "table json value yaml",
    .options = doctor_options,
    .exit_codes = "exit codes: 0 no check failed, 1 a check failed, 2 usage or internal error",
};

/* ---- small helpers ---- */

static char *xvprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

static __attribute__((format(printf, 1, 2))) char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvprintf(fmt, ap);
    va_end(ap);
    return s;
}

static __attribute__((format(printf, 3, 4))) void set(doctor_check *c, doctor_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(c->detail);
    c->detail = xvprintf(fmt, ap);
    va_end(ap);
    c->status = st;
}

static __attribute__((format(printf, 2, 3))) void set_fix(doctor_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(c->fix);
    c->fix = xvprintf(fmt, ap);
    va_end(ap);
}

/* <root>/<rel> (rel without a leading '/'). */
static char *path_of(const doctor *d, const char *rel)
{
    return xprintf("%s/%s", d->root, rel);
}

/* The whole of a small file, NUL-terminated, trailing newlines cut; NULL
 * when it cannot be read. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap && cap < (1u << 22)) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        } else if (len == cap) {
            break;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    while (len && buf[len - 1] == '\n')
        buf[--len] = '\0';
    return buf;
}

static char *read_rel(const doctor *d, const char *rel)
{
    char *p = path_of(d, rel);
    char *s = read_text(p);
    free(p);
    return s;
}

static bool exists_rel(const doctor *d, const char *rel)
{
    char *p = path_of(d, rel);
    struct stat st;
    bool ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

/* Entries of a directory other than . and .., -1 when it cannot be read. */
static long count_entries(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(dir);
    return n;
}

static bool is_pid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* The first process under <root>/proc whose comm is one of `names`
 * (NULL-ended): its pid, or 0. comm is cut to 15 characters by the kernel. */
static long find_process(const doctor *d, const char *const *names, const char **which)
{
    char *procdir = path_of(d, "proc");
    DIR *dir = opendir(procdir);
    free(procdir);
    if (!dir)
        return 0;
    long found = 0;
    struct dirent *e;
    while (!found && (e = readdir(dir))) {
        if (!is_pid(e->d_name))
            continue;
        char *rel = xprintf("proc/%s/comm", e->d_name);
        char *comm = read_rel(d, rel);
        free(rel);
        for (size_t i = 0; comm && names[i]; i++)
            if (!strcmp(comm, names[i])) {
                found = strtol(e->d_name, NULL, 10);
                if (which)
                    *which = names[i];
                break;
            }
        free(comm);
    }
    closedir(dir);
    return found;
}

/* When process `pid` started, in seconds since the epoch: <root>/proc/stat's
 * btime plus field 22 (starttime, clock ticks after boot) of
 * <root>/proc/PID/stat. -1 when unknown. */
static double process_start(const doctor *d, long pid)
{
    char *stat = read_rel(d, "proc/stat");
    const char *b = stat ? strstr(stat, "\nbtime ") : NULL;
    double btime = b ? strtod(b + 7, NULL) : -1;
    free(stat);
    char *rel = xprintf("proc/%ld/stat", pid);
    char *ps = read_rel(d, rel);
    free(rel);
    /* comm may hold spaces and parentheses: the fields follow the last ')'. */
    const char *p = ps ? strrchr(ps, ')') : NULL;
    double start = -1;
    for (int field = 2; p && *p; p++) {
        if (*p == ' ' && ++field == 22) {
            start = strtod(p + 1, NULL);
            break;
        }
    }
    free(ps);
    if (btime < 0 || start < 0)
        return -1;
    return btime + start / (double)sysconf(_SC_CLK_TCK);
}

static const char *when(double t, char *buf, size_t n)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&s, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, n, "%.0f", t);
    return buf;
}

/* ---- the checks ---- */

/* The IOMMU: the kernel made groups (nothing to pass through otherwise), and
 * what the command line says, which explains a host without groups. */
static void check_iommu(doctor *d, doctor_check *c)
{
    char *groups = path_of(d, "sys/kernel/iommu_groups");
    long n = count_entries(groups);
    free(groups);
    char *cmdline = read_rel(d, "proc/cmdline");
    char flags[512] = "";
    for (char *save = NULL, *t = cmdline ? strtok_r(cmdline, " \t", &save) : NULL; t;
         t = strtok_r(NULL, " \t", &save))
        if (!strncmp(t, "intel_iommu=", 12) || !strncmp(t, "amd_iommu=", 10) || !strncmp(t, "iommu=", 6) ||
            !strncmp(t, "iommu.", 6) || !strncmp(t, "vfio", 4))
            snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "%s%s", *flags ? " " : "", t);
    const char *cl = !cmdline ? "kernel command line unknown (no proc/cmdline)"
                     : *flags ? flags : "no IOMMU option on the kernel command line";
    if (n > 0) {
        set(c, ST_OK, "%ld IOMMU groups; %s", n, cl);
    } else {
        bool off = strstr(flags, "intel_iommu=off") || strstr(flags, "amd_iommu=off");
        set(c, ST_FAIL, "no IOMMU groups in %s/sys/kernel/iommu_groups%s; %s", d->root,
            off ? ": the kernel command line turns the IOMMU off" : "", cl);
        set_fix(c, "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, add intel_iommu=on iommu=pt "
                   "(AMD: amd_iommu=on iommu=pt) to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and "
                   "reboot");
    }
    free(cmdline);
}

static void check_vfio_pci(doctor *d, doctor_check *c)
{
    if (exists_rel(d, "sys/bus/pci/drivers/vfio-pci"))
        set(c, ST_OK, "vfio-pci is registered (sys/bus/pci/drivers/vfio-pci)");
    else if (exists_rel(d, "sys/module/vfio_pci"))
        set(c, ST_OK, "the vfio_pci module is loaded (sys/module/vfio_pci)");
    else {
        set(c, ST_FAIL, "vfio-pci is not loaded: no sys/bus/pci/drivers/vfio-pci under %s", d->shown_root);
        set_fix(c, "modprobe vfio-pci, and load it at boot: echo vfio-pci > /etc/modules-load.d/vfio-pci.conf");
    }
}

/* Which GPUs are managed, and where that list came from. */
static const char *managed_source(const doctor *d)
{
    if (d->n_addresses)
        return "--address";
    if (d->devices)
        return "the daemon's GPUs";
    return "every GPU found; the daemon could not be asked";
}

/* Append `item` to a ", "-separated list. */
static void add_item(char **list, const char *item)
{
    char *joined = *list ? xprintf("%s, %s", *list, item) : xprintf("%s", item);
    free(*list);
    *list = joined;
}

/* Every managed GPU on vfio-pci (or on no driver: the daemon's clean-up binds
 * it). A host driver (nvidia, nouveau, amdgpu) holds the GPU: VFIO cannot
 * take it, and the host may have left its memory and state behind. */
static void check_gpu_drivers(doctor *d, doctor_check *c)
{
    if (!d->host) {
        set(c, ST_FAIL, "the host scan failed: %s", d->scan_error ? d->scan_error : "unknown error");
        set_fix(c, "check that %s/sys/bus/pci is readable (run as root)", d->root);
        return;
    }
    size_t n = 0, ok = 0;
    char *bad = NULL, *missing = NULL;
    size_t total = d->n_addresses ? d->n_addresses
                   : d->devices   ? json_array_size(d->devices)
                                  : gw_host_gpu_count(d->host);
    for (size_t i = 0; i < total; i++) {
        const char *addr = d->n_addresses ? d->addresses[i]
                           : d->devices   ? json_string_value(json_object_get(json_array_get(d->devices, i), "address"))
                                          : gw_host_gpu(d->host, i)->address;
        if (!addr)
            continue;
        n++;
        const gw_gpu *g = gw_host_find_gpu(d->host, addr);
        if (!g)
            add_item(&missing, addr);
        else if (g->driver && strcmp(g->driver, "vfio-pci")) {
            char *item = xprintf("%s on %s", addr, g->driver);
            add_item(&bad, item);
            free(item);
        }
        else
            ok++;
    }
    if (n == 0) {
        set(c, ST_WARN, "no GPU to check (%s)", managed_source(d));
        set_fix(c, "set [manage] vendors or addresses in /etc/gpuwarden/gpuwarden.conf, or name GPUs with --address");
    } else if (bad) {
        set(c, ST_FAIL, "%zu managed GPUs (%s); held by a host driver: %s", n, managed_source(d), bad);
        set_fix(c, "hand them to vfio-pci before any host driver binds: driverctl set-override ADDR vfio-pci, or "
                   "options vfio-pci ids=VENDOR:DEVICE plus softdep DRIVER pre: vfio-pci in /etc/modprobe.d/ "
                   "(update-initramfs -u), and blacklist nouveau");
    } else if (missing) {
        set(c, ST_FAIL, "%zu managed GPUs (%s); not found on the host: %s", n, managed_source(d), missing);
        set_fix(c, "check the addresses ([manage] addresses, --address) against `gpuwarden discover`");
    } else {
        set(c, ST_OK, "%zu managed GPUs (%s), none held by a host driver", ok, managed_source(d));
    }
    free(bad);
    free(missing);
}

static void check_hook(doctor *d, doctor_check *c)
{
    char *p = path_of(d, DOCTOR_HOOK);
    struct stat st;
    if (stat(p, &st) < 0) {
        set(c, ST_FAIL, "/" DOCTOR_HOOK " is missing: libvirt starts VMs on GPUs whose clean-up has not passed");
        set_fix(c, "install the gpuwarden package, or install -m 0755 packaging/libvirt/hooks/qemu.d/gpuwarden "
                   "/etc/libvirt/hooks/qemu.d/ (libvirt >= 6.5), then restart libvirtd");
    } else if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
        set(c, ST_FAIL, "/" DOCTOR_HOOK " is not an executable file (mode %04o): libvirt skips it",
            (unsigned)(st.st_mode & 07777));
        set_fix(c, "chmod 0755 /" DOCTOR_HOOK);
    } else {
        set(c, ST_OK, "/" DOCTOR_HOOK " is installed and executable");
    }
    free(p);
}

/* libvirtd decides at start whether the qemu driver has hooks (the qemu
 * script or any executable in qemu.d); without one then, it never runs one
 * until it restarts. Once it has, it lists qemu.d on every call. So the hook
 * is live when libvirtd started after the hook appeared, or after the
 * operator's own qemu hook existed. "Appeared" is the later of mtime and
 * ctime: dpkg sets a file's mtime to the package's build time, but the
 * ctime is when the file was put in place. */
static void check_hook_loaded(doctor *d, doctor_check *c)
{
    char *p = path_of(d, DOCTOR_HOOK);
    struct stat hook;
    bool have = stat(p, &hook) == 0;
    free(p);
    if (!have) {
        set(c, ST_SKIP, "no hook to load");
        return;
    }
    static const char *const daemons[] = { "libvirtd", "virtqemud", NULL };
    const char *which = NULL;
    long pid = find_process(d, daemons, &which);
    if (!pid) {
        set(c, ST_WARN, "neither libvirtd nor virtqemud is running: no VM can start, and the one that starts will "
                        "run the hook");
        set_fix(c, "systemctl start libvirtd");
        return;
    }
    double start = process_start(d, pid);
    char b1[64], b2[64];
    if (start < 0) {
        set(c, ST_WARN, "%s (pid %ld) is running; its start time is unknown (proc/stat or proc/%ld/stat unreadable)",
            which, pid, pid);
        set_fix(c, "systemctl restart %s if it has run since before the hook was installed", which);
        return;
    }
    double appeared = (double)(hook.st_mtime > hook.st_ctime ? hook.st_mtime : hook.st_ctime);
    if (start >= appeared) {
        set(c, ST_OK, "%s (pid %ld) started %s, after the hook appeared (%s)", which, pid, when(start, b1, sizeof b1),
            when(appeared, b2, sizeof b2));
        return;
    }
    char *own = path_of(d, "etc/libvirt/hooks/qemu");
    struct stat q;
    bool own_before = stat(own, &q) == 0 && S_ISREG(q.st_mode) && (q.st_mode & 0111) &&
                      (double)(q.st_mtime > q.st_ctime ? q.st_mtime : q.st_ctime) <= start;
    free(own);
    if (own_before) {
        set(c, ST_OK, "%s (pid %ld) started %s, before the hook (%s), but /etc/libvirt/hooks/qemu existed then, so it "
                      "runs every qemu.d hook", which, pid, when(start, b1, sizeof b1), when(appeared, b2, sizeof b2));
        return;
    }
    set(c, ST_FAIL, "%s (pid %ld) has run since %s, before the hook appeared (%s): it looks for hooks only when it "
                    "starts, so the gate is off", which, pid, when(start, b1, sizeof b1),
        when(appeared, b2, sizeof b2));
    set_fix(c, "systemctl restart %s (running VMs keep running)", which);
}

/* The IOMMU group of a PCI function, from its iommu_group link; NULL when none. */
static char *group_of(const doctor *d, const char *addr)
{
    char *rel = xprintf("sys/bus/pci/devices/%s/iommu_group", addr);
    char *p = path_of(d, rel);
    free(rel);
    char target[PATH_MAX];
    ssize_t n = readlink(p, target, sizeof target - 1);
    free(p);
    if (n <= 0)
        return NULL;
    target[n] = '\0';
    const char *base = strrchr(target, '/');
    return strdup(base ? base + 1 : target);
}

/* The text between <tag> and </tag>, NULL when absent. */
static char *element_text(const char *xml, const char *open, const char *close)
{
    const char *a = strstr(xml, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (!b)
        return NULL;
    a += strlen(open);
    return strndup(a, (size_t)(b - a));
}

/* Running domains (libvirt's status XML in run/libvirt/qemu) whose
 * per-domain AppArmor profile (etc/apparmor.d/libvirt/libvirt-UUID.files,
 * written by virt-aa-helper) lacks the /dev/vfio/N of a GPU they pass
 * through: a re-attach or hot-plug of that GPU is refused. Returns a list
 * for the detail, or NULL; *running counts the domains with PCI hostdevs. */
static char *apparmor_missing(const doctor *d, size_t *running)
{
    char *dirpath = path_of(d, "run/libvirt/qemu");
    DIR *dir = opendir(dirpath);
    free(dirpath);
    if (!dir)
        return NULL;
    char *missing = NULL;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".xml"))
            continue;
        char *rel = xprintf("run/libvirt/qemu/%s", e->d_name);
        char *xml = read_rel(d, rel);
        free(rel);
        /* The status XML wraps the live <domain> in <domstatus>. */
        const char *dom = xml ? strstr(xml, "<domain") : NULL;
        const char *end = dom ? strstr(dom, "</domain>") : NULL;
        char **addrs = NULL, *name = NULL;
        char *uuid = dom ? element_text(dom, "<uuid>", "</uuid>") : NULL;
        if (end && uuid &&
            gw_domain_xml_pci_sources(dom, (size_t)(end + strlen("</domain>") - dom), &addrs, &name) == 0 &&
            addrs && addrs[0]) {
            (*running)++;
            char *prel = xprintf("etc/apparmor.d/libvirt/libvirt-%s.files", uuid);
            char *profile = read_rel(d, prel);
            free(prel);
            for (size_t i = 0; addrs[i]; i++) {
                char *group = group_of(d, addrs[i]);
                char *need = group ? xprintf("\"/dev/vfio/%s\"", group) : NULL;
                if (need && (!profile || !strstr(profile, need))) {
                    char *what = xprintf("%s (%s): /dev/vfio/%s", name ? name : uuid, addrs[i], group);
                    add_item(&missing, what);
                    free(what);
                }
                free(need);
                free(group);
            }
            free(profile);
        }
        gw_attach_list_free(addrs);
        free(name);
        free(uuid);
        free(xml);
    }
    closedir(dir);
    return missing;
}

static void check_lsm(doctor *d, doctor_check *c)
{
    char *aa = read_rel(d, "sys/module/apparmor/parameters/enabled");
    char *se = read_rel(d, "sys/fs/selinux/enforce");
    bool apparmor = aa && aa[0] == 'Y';
    bool selinux = se && se[0] == '1';
    free(aa);
    free(se);
    if (!apparmor && !selinux) {
        set(c, ST_OK, "neither AppArmor nor SELinux (enforcing) confines QEMU");
        return;
    }
    if (selinux && !apparmor) {
        set(c, ST_OK, "SELinux enforcing: libvirt's svirt labels each domain's /dev/vfio/N with its own category");
        return;
    }
    size_t running = 0;
    char *missing = apparmor_missing(d, &running);
    char *local = read_rel(d, "etc/apparmor.d/local/abstractions/libvirt-qemu");
    bool override = local && strstr(local, "/dev/vfio/");
    free(local);
    if (missing) {
        set(c, ST_FAIL, "AppArmor: running domains whose profile does not allow their GPU's VFIO group: %s (re-attach "
                        "or hot-plug fails with \"Permission denied\"; the known case is after a snapshot revert, "
                        "which rewrites the profile without it)", missing);
        set_fix(c, "allow VFIO groups for every QEMU: add \"/dev/vfio/* rw,\" to "
                   "/etc/apparmor.d/local/abstractions/libvirt-qemu and reload each domain's profile "
                   "(apparmor_parser -r /etc/apparmor.d/libvirt/libvirt-UUID), or stop and start the domain");
    } else if (!override) {
        set(c, ST_WARN, "AppArmor: %zu running domains with GPUs, each profile allows its /dev/vfio/N; no "
                        "local rule for /dev/vfio/*, so a snapshot revert can rewrite a profile without it and a "
                        "re-attach then fails", running);
        set_fix(c, "add \"/dev/vfio/* rw,\" to /etc/apparmor.d/local/abstractions/libvirt-qemu");
    } else {
        set(c, ST_OK, "AppArmor: every QEMU may open /dev/vfio/* (local/abstractions/libvirt-qemu); %zu running "
                      "domains with GPUs", running);
    }
    free(missing);
}

/* NVSwitch: NVIDIA (0x10de) functions of class "bridge, other" (0x0680). */
static size_t count_nvswitches(const doctor *d)
{
    char *devpath = path_of(d, "sys/bus/pci/devices");
    DIR *dir = opendir(devpath);
    free(devpath);
    if (!dir)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char *vrel = xprintf("sys/bus/pci/devices/%s/vendor", e->d_name);
        char *crel = xprintf("sys/bus/pci/devices/%s/class", e->d_name);
        char *vendor = read_rel(d, vrel), *class = read_rel(d, crel);
        if (vendor && class && !strcmp(vendor, "0x10de") && !strncmp(class, "0x0680", 6))
            n++;
        free(vendor);
        free(class);
        free(vrel);
        free(crel);
    }
    closedir(dir);
    return n;
}

static void check_fabric_manager(doctor *d, doctor_check *c)
{
    size_t n = count_nvswitches(d);
    if (!n) {
        set(c, ST_SKIP, "no NVSwitch on this host");
        return;
    }
    static const char *const fm[] = { "nv-fabricmanage", "nv-fabricmanager", NULL };
    long pid = find_process(d, fm, NULL);
    if (pid) {
        set(c, ST_OK, "%zu NVSwitches; Fabric Manager runs (pid %ld)", n, pid);
        return;
    }
    set(c, ST_FAIL, "%zu NVSwitches and no Fabric Manager (nv-fabricmanager) running: NVLink through the switches "
                    "stays down and CUDA fails on the GPUs", n);
    set_fix(c, "apt install the nvidia-fabricmanager package of the driver's branch and systemctl enable --now "
               "nvidia-fabricmanager");
}

static void check_daemon(doctor *d, doctor_check *c)
{
    if (d->hello) {
        const char *version = json_string_value(json_object_get(d->hello, "daemon"));
        set(c, ST_OK, "gpuwardend %s answers at %s (%zu GPUs)", version ? version : "?", d->endpoint,
            json_array_size(d->devices));
        return;
    }
    set(c, ST_FAIL, "gpuwardend does not answer at %s: %s", d->endpoint,
        d->daemon_error ? d->daemon_error : "unknown error");
    set_fix(c, "systemctl start gpuwardend (journalctl -u gpuwardend says why it stopped); a user other than root "
               "needs [daemon] read_group");
}

static void check_state_dir(doctor *d, doctor_check *c)
{
    char *dir = d->state_dir ? strdup(d->state_dir) : path_of(d, "var/lib/gpuwarden");
    struct stat st;
    struct statvfs vfs;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        set(c, ST_FAIL, "%s is not a directory: the daemon cannot keep its registry, quarantine records and audit log",
            dir);
        set_fix(c, "systemctl start gpuwardend creates it (StateDirectory=), or mkdir -m 0700 %s", dir);
    } else if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        set(c, ST_FAIL, "%s is on a read-only file system", dir);
        set_fix(c, "remount it read-write, or set [daemon] state_dir to a writable directory");
    } else {
        char *tmp = xprintf("%s/.doctor-XXXXXX", dir);
        int fd = mkstemp(tmp);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
            set(c, ST_OK, "%s is writable", dir);
        } else if (errno == EACCES && geteuid() != 0) {
            set(c, ST_WARN, "%s: cannot tell whether the daemon may write it (this user may not)", dir);
            set_fix(c, "run gpuwarden doctor as root");
        } else {
            set(c, ST_FAIL, "%s is not writable: %s", dir, strerror(errno));
            set_fix(c, "chown root:root %s && chmod 0700 %s, and free space on its file system", dir, dir);
        }
        free(tmp);
    }
    free(dir);
}

typedef struct doctor_step {
    const char *name;
    void (*run)(doctor *d, doctor_check *c);
} doctor_step;

static const doctor_step steps[] = {
    { "iommu", check_iommu },
    { "vfio-pci", check_vfio_pci },
    { "gpu-drivers", check_gpu_drivers },
    { "libvirt-hook", check_hook },
    { "libvirt-hook-loaded", check_hook_loaded },
    { "vfio-access", check_lsm },
    { "fabric-manager", check_fabric_manager },
    { "daemon", check_daemon },
    { "state-dir", check_state_dir },
};
#define N_STEPS (sizeof steps / sizeof steps[0])

/* ---- gathering, output, main ---- */

/* Asked as every other command asks: the same endpoint, timeout and, for a
 * tcp:// endpoint, CURVE keys. */
static void ask_daemon(doctor *d, const cli_remote *r)
{
    gw_client_options o;
    char keys[3][41];
    if (cli_remote_client_options(r, &o, keys) != GW_EXIT_OK) {
        d->daemon_error = strdup("bad CURVE key file (see above)");
        return;
    }
    gw_client *client = NULL;
    if (gw_client_new(&client, &o) < 0) {
        d->daemon_error = strdup(gw_error_message());
        return;
    }
    json_t *hello = NULL, *res = NULL;
    if (gw_client_hello(client, &hello) < 0 || gw_client_devices(client, NULL, &res) < 0) {
        d->daemon_error = strdup(gw_error_message());
        json_decref(hello);
    } else {
        d->hello = hello;
        d->devices = json_incref(json_object_get(res, "devices"));
        if (!json_is_array(d->devices)) {
            json_decref(d->devices);
            d->devices = json_array();
        }
        json_decref(res);
    }
    gw_client_free(client);
}

static int print_table(const doctor_check *checks)
{
    for (size_t i = 0; i < N_STEPS; i++) {
        printf("%-20s %-5s %s\n", checks[i].name, status_names[checks[i].status], checks[i].detail);
        if (checks[i].fix && (checks[i].status == ST_FAIL || checks[i].status == ST_WARN))
            printf("%-20s fix:  %s\n", "", checks[i].fix);
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

/* {ready, host_root, checks}: -f json and yaml print it, value and -c its checks. */
static int print_data(const cli_remote *r, const doctor *d, const doctor_check *checks, bool ready)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < N_STEPS; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s?}", "name", checks[i].name, "status",
                                             status_names[checks[i].status], "detail", checks[i].detail, "fix",
                                             checks[i].fix));
    json_t *doc = json_pack("{s:b, s:s, s:o}", "ready", ready, "host_root", d->shown_root, "checks", arr);
    int code = doc ? cli_emit(r, doc, json_object_get(doc, "checks")) : GW_EXIT_FAILURE;
    json_decref(doc);
    return code;
}

static int doctor_run(doctor *d, const cli_remote *r)
{
    gw_host_options ho = GW_HOST_OPTIONS_INIT;
    ho.root = d->shown_root;
    if (gw_host_scan(&d->host, &ho) < 0) {
        d->host = NULL;
        d->scan_error = strdup(gw_error_message());
    }
    ask_daemon(d, r);
    doctor_check checks[N_STEPS] = { 0 };
    bool ready = true;
    for (size_t i = 0; i < N_STEPS; i++) {
        checks[i].name = steps[i].name;
        steps[i].run(d, &checks[i]);
        if (!checks[i].detail)
            set(&checks[i], ST_FAIL, "internal error: the check said nothing");
        if (checks[i].status == ST_FAIL)
            ready = false;
    }
    int code = GW_EXIT_OK;
    if (cli_own_table(r)) {
        if (print_table(checks) < 0 ||
            printf("%s\n", ready ? "ready: no check failed" : "NOT READY: a check failed (see its fix)") < 0)
            code = GW_EXIT_FAILURE;
    } else {
        code = print_data(r, d, checks, ready);
    }
    for (size_t i = 0; i < N_STEPS; i++) {
        free(checks[i].detail);
        free(checks[i].fix);
    }
    if (code != GW_EXIT_OK)
        return GW_EXIT_USAGE;   /* a -c column no check has, or the answer could not be written */
    return ready ? GW_EXIT_OK : GW_EXIT_FAILURE;
}

static void doctor_free(doctor *d)
{
    gw_host_free(d->host);
    json_decref(d->hello);
    json_decref(d->devices);
    free(d->scan_error);
    free(d->daemon_error);
    free(d->addresses);
}

static int doctor_option(void *ctx, int id, const char *arg)
{
    doctor *d = ctx;
    switch (id) {
    case OPT_HOST_ROOT: d->shown_root = arg; break;
    case OPT_STATE_DIR: d->state_dir = arg; break;
    case OPT_ADDRESS: {
        char **a = realloc(d->addresses, (d->n_addresses + 2) * sizeof *a);
        if (!a)
            abort();
        d->addresses = a;
        d->addresses[d->n_addresses++] = (char *)arg;
        d->addresses[d->n_addresses] = NULL;
        break;
    }
    default: return GW_EXIT_USAGE;
    }
    return GW_EXIT_OK;
}

int cmd_doctor(int argc, char **argv)
{
    doctor d = { .root = "", .shown_root = "/" };
    cli_remote r;
    int code = cli_parse(&cmd_doctor_spec, argc, argv, &r, doctor_option, &d);
    if (code < 0)
        code = cli_no_operands(&cmd_doctor_spec, argc, argv);
    else if (code == GW_EXIT_OK)
        code = -1;      /* --help was printed: nothing to run */
    if (code != GW_EXIT_OK) {
        free(d.addresses);
        return code < 0 ? GW_EXIT_OK : code;
    }
    d.endpoint = cli_remote_endpoint(&r);
    /* "/x/" and "/x" name the same tree; "/" reads the live host. */
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", d.shown_root);
    size_t len = strlen(root);
    while (len && root[len - 1] == '/')
        root[--len] = '\0';
    d.root = root;
    code = doctor_run(&d, &r);
    doctor_free(&d);
    return code;
}
