/* SPDX-License-Identifier: Apache-2.0 */
/* What the simulated backend models of the kernel beyond plain attributes
 * (the behaviour measured on Linux 6.1, see hostops_sim.h):
 *   - VFIO holders: processes with /dev/vfio/<group> open, seen through
 *     proc/<pid>/fd/<n> links and proc/<pid>/comm, and the group node's
 *     single open (a second open is -EBUSY);
 *   - runtime power: vfio-pci suspends an idle device to D3hot, power/control
 *     "on" resumes it and keeps it in D0;
 *   - the ROM read: pci_read_rom() returns only the images
 *     pci_get_rom_size() finds, and fails with EIO when there is none. */
#include <limits.h>
#include <string.h>

#include "hostops_sim_internal.h"

#define VFIO "vfio-pci"

/* ---- runtime power ---------------------------------------------------- */

static const char *const power_attrs[] = { "power_state", "power/runtime_status", "power/control" };

bool gw_sim_is_power_attr(const char *attr)
{
    for (size_t i = 0; i < sizeof power_attrs / sizeof power_attrs[0]; i++)
        if (!strcmp(attr, power_attrs[i]))
            return true;
    return false;
}

/* The overlay's value of a power file without its newline, else the tree's,
 * else NULL. */
static char *power_get(gw_sim *s, const char *addr, const char *attr)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/%s", addr, attr);
    sim_file *f = gw_sim_file_find(s, p);
    char *v = NULL;
    size_t n = 0;
    if (f)
        v = gw_sim_memdup0(f->data, n = f->len);
    else if (gw_hostops_read(s->base, p, 256, &v, &n) < 0)
        return NULL;
    while (n && (v[n - 1] == '\n' || v[n - 1] == ' '))
        v[--n] = '\0';
    return v;
}

static void power_put(gw_sim *s, const char *addr, const char *attr, const char *value)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/%s", addr, attr);
    _cleanup_free_ char *v = gw_strdup_printf("%s\n", value);
    gw_sim_file_set(s, p, v, strlen(v));
}

static bool is_d3(const char *state)
{
    return state && !strncmp(state, "D3", 2);
}

/* Copy the tree's power files into the overlay, or fill in what the kernel
 * would show: control "auto" (its default), runtime status and power state
 * from each other, "active"/D0 when the tree says neither. */
void gw_sim_power_init(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *control = power_get(s, addr, "power/control");
    _cleanup_free_ char *status = power_get(s, addr, "power/runtime_status");
    _cleanup_free_ char *state = power_get(s, addr, "power_state");
    if (!status)
        status = gw_xstrdup(is_d3(state) ? "suspended" : "active");
    if (!state)
        state = gw_xstrdup(!strcmp(status, "suspended") ? "D3hot" : "D0");
    power_put(s, addr, "power/control", control ? control : "auto");
    power_put(s, addr, "power/runtime_status", status);
    power_put(s, addr, "power_state", state);
}

static void power_set(gw_sim *s, const char *addr, bool suspended)
{
    power_put(s, addr, "power/runtime_status", suspended ? "suspended" : "active");
    power_put(s, addr, "power_state", suspended ? "D3hot" : "D0");
}

static bool device_exists(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *dir = gw_strdup_printf("sys/bus/pci/devices/%s", addr);
    return gw_hostops_exists(s->base, dir) == 0;
}

/* With runtime PM allowed (control "auto") vfio-pci lets an idle device
 * suspend at once, to D3hot; unbinding it resumes the device, and a host
 * driver probes in D0. */
void gw_sim_power_on_bind(gw_sim *s, const char *addr, const char *before, const char *after)
{
    if (!device_exists(s, addr))
        return;
    gw_sim_power_init(s, addr);
    _cleanup_free_ char *control = power_get(s, addr, "power/control");
    if (after && !strcmp(after, VFIO))
        power_set(s, addr, !strcmp(control, "auto"));
    else if (after || (before && !strcmp(before, VFIO)))
        power_set(s, addr, false);
}

/* power/control (drivers/base/power/sysfs.c control_store): "on" forbids
 * runtime PM and resumes the device; "auto" allows it again, and an idle
 * device on vfio-pci suspends. Anything else is -EINVAL. */
int gw_sim_power_write(gw_sim *s, const char *path, const char *addr, const char *buf, size_t len)
{
    if (!device_exists(s, addr))
        return gw_error_set(-ENOENT, "sim: %s: no such attribute", path);
    size_t n = len && buf[len - 1] == '\n' ? len - 1 : len;
    bool on = n == 2 && !memcmp(buf, "on", 2), automatic = n == 4 && !memcmp(buf, "auto", 4);
    if (!on && !automatic)
        return gw_error_set(-EINVAL, "sim: %s: only 'on' or 'auto' is accepted", path);
    gw_sim_power_init(s, addr);
    power_put(s, addr, "power/control", on ? "on" : "auto");
    _cleanup_free_ char *drv = gw_sim_driver_of(s, addr);
    if (on)
        power_set(s, addr, false);
    else if (drv && !strcmp(drv, VFIO))
        power_set(s, addr, true);
    return 0;
}

/* ---- the ROM read ------------------------------------------------------- */

static unsigned rd16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* pci_get_rom_size() (drivers/pci/rom.c): walk the images, each "55 AA"
 * with a pointer at 0x18 to its "PCIR" data structure (length in 512-byte
 * units at +0x10, last-image flag in bit 7 of +0x15), up to the last one;
 * never past the window. Where the kernel would read beyond the window (a
 * pointer out of range) the walk stops, as an invalid signature does. */
static size_t rom_size(const unsigned char *rom, size_t size, char *why, size_t whylen)
{
    size_t image = 0;
    unsigned length;
    bool last;
    do {
        if (image + 0x1a > size || rd16(rom + image) != 0xaa55) {
            snprintf(why, whylen, "invalid ROM header signature: expecting 0xaa55, got 0x%04x",
                     image + 2 <= size ? rd16(rom + image) : 0u);
            break;
        }
        size_t pds = image + rd16(rom + image + 0x18);
        if (pds + 0x18 > size || memcmp(rom + pds, "PCIR", 4)) {
            snprintf(why, whylen, "invalid ROM data signature: no PCIR structure at %#zx", pds);
            break;
        }
        last = rom[pds + 0x15] & 0x80;
        length = rd16(rom + pds + 0x10);
        image += (size_t)length * 512;
        if (image >= size)
            break;
        if (!last && (image + 2 > size || rd16(rom + image) != 0xaa55))
            break;
    } while (length && !last);
    return image < size ? image : size;
}

int gw_sim_rom_view(const char *path, const char *data, size_t *len)
{
    char why[128] = "";
    size_t n = rom_size((const unsigned char *)data, *len, why, sizeof why);
    if (n == 0)
        return gw_error_set(-EIO, "read %s: %s (kernel: EIO)", path, why[0] ? why : "ROM image of length 0");
    *len = n;
    return 0;
}

/* ---- VFIO holders and their /proc view ---------------------------------- */

void gw_sim_holder_add(sim_holder **v, size_t *n, const char *group, int pid, const char *comm)
{
    int fd = 20;    /* descriptors after a process's usual ones */
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i].pid == pid && (*v)[i].fd >= fd)
            fd = (*v)[i].fd + 1;
    *v = gw_xrealloc(*v, *n + 1, sizeof **v);
    (*v)[(*n)++] = (sim_holder){ pid, fd, gw_xstrdup(comm), gw_xstrdup(group) };
}

void gw_sim_holders_free(sim_holder *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].comm);
        free(v[i].group);
    }
    free(v);
}

/* "proc/<pid>" and what follows it ("" for the directory itself). */
static bool parse_proc(const char *path, int *pid, const char **rest)
{
    if (strncmp(path, "proc/", 5) || path[5] < '1' || path[5] > '9')
        return false;
    char *end;
    errno = 0;
    long v = strtol(path + 5, &end, 10);
    if (errno || v > INT_MAX || (*end && *end != '/'))
        return false;
    *pid = (int)v;
    *rest = *end ? end + 1 : "";
    return true;
}

static bool is_holder(gw_sim *s, int pid)
{
    for (size_t i = 0; i < s->n_holders; i++)
        if (s->holders[i].pid == pid)
            return true;
    return false;
}

static sim_holder *holder_fd(gw_sim *s, int pid, const char *fd)
{
    char *end;
    long n = strtol(fd, &end, 10);
    if (!*fd || *end)
        return NULL;
    for (size_t i = 0; i < s->n_holders; i++)
        if (s->holders[i].pid == pid && s->holders[i].fd == n)
            return &s->holders[i];
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The tree's proc entries (when it has any) and the holders' pids. */
static int list_pids(gw_sim *s, char ***names, size_t *n)
{
    char **v = NULL;
    size_t k = 0;
    if (gw_hostops_list(s->base, "proc", &v, &k) < 0) {
        v = NULL;
        k = 0;
    }
    for (size_t i = 0; i < s->n_holders; i++) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", s->holders[i].pid);
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = !strcmp(v[j], pid);
        if (!dup) {
            v = gw_xrealloc(v, k + 1, sizeof *v);
            v[k++] = gw_xstrdup(pid);
        }
    }
    qsort(v, k, sizeof *v, cmp_names);
    *names = v;
    *n = k;
    return 0;
}

int gw_sim_proc_list(gw_sim *s, const char *path, char ***names, size_t *n, int *r)
{
    int pid;
    const char *rest;
    if (!strcmp(path, "proc") && s->n_holders) {
        *r = list_pids(s, names, n);
        return 1;
    }
    if (!parse_proc(path, &pid, &rest) || strcmp(rest, "fd") || !is_holder(s, pid))
        return 0;
    char **v = NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n_holders; i++) {
        if (s->holders[i].pid != pid)
            continue;
        v = gw_xrealloc(v, k + 1, sizeof *v);
        v[k++] = gw_strdup_printf("%d", s->holders[i].fd);
    }
    qsort(v, k, sizeof *v, cmp_names);
    *names = v;
    *n = k;
    *r = 0;
    return 1;
}

int gw_sim_proc_readlink(gw_sim *s, const char *path, char **out, int *r)
{
    int pid;
    const char *rest;
    if (!parse_proc(path, &pid, &rest) || strncmp(rest, "fd/", 3) || !is_holder(s, pid))
        return 0;
    sim_holder *h = holder_fd(s, pid, rest + 3);
    if (h)
        *out = gw_strdup_printf("/dev/vfio/%s", h->group);
    *r = h ? 0 : gw_error_set(-ENOENT, "readlink %s: No such file or directory", path);
    return 1;
}

int gw_sim_proc_read(gw_sim *s, const char *path, size_t max, char **out, size_t *len, int *r)
{
    int pid;
    const char *rest;
    if (!parse_proc(path, &pid, &rest) || strcmp(rest, "comm") || !is_holder(s, pid))
        return 0;
    for (size_t i = 0; i < s->n_holders; i++) {
        if (s->holders[i].pid != pid)
            continue;
        char *text = gw_strdup_printf("%s\n", s->holders[i].comm);
        *len = strlen(text);
        *r = *len > max ? gw_error_set(-EFBIG, "%s: larger than %zu bytes", path, max) : 0;
        if (*r < 0)
            free(text);
        else
            *out = text;
        break;
    }
    return 1;
}

int gw_sim_proc_exists(gw_sim *s, const char *path)
{
    int pid;
    const char *rest;
    if (!strcmp(path, "proc") && s->n_holders)
        return 0;
    if (!parse_proc(path, &pid, &rest) || !is_holder(s, pid))
        return 1;
    if (!*rest || !strcmp(rest, "fd") || !strcmp(rest, "comm"))
        return 0;
    if (!strncmp(rest, "fd/", 3) && holder_fd(s, pid, rest + 3))
        return 0;
    return gw_error_set(-ENOENT, "%s: No such file or directory", path);
}

char *gw_sim_held_list(gw_sim *s)
{
    size_t len = 1;
    for (size_t i = 0; i < s->n_held; i++)
        len += strlen(s->held[i]) + 1;
    char *out = gw_xcalloc(len, 1);
    for (size_t i = 0; i < s->n_held; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, s->held[i]);
    }
    return out;
}

/* ---- holding a group node --------------------------------------------- */

/* "dev/vfio/<group>" -> group, else NULL. */
static const char *vfio_group(const char *path)
{
    static const char pre[] = "dev/vfio/";
    if (strncmp(path, pre, sizeof pre - 1))
        return NULL;
    const char *g = path + sizeof pre - 1;
    if (!*g || strspn(g, "0123456789") != strlen(g))
        return NULL;
    return g;
}

/* The kernel creates /dev/vfio/<group> when a function of the group binds
 * to vfio-pci. */
static bool group_on_vfio(gw_sim *s, const char *group)
{
    _cleanup_free_ char *dir = gw_strdup_printf("sys/kernel/iommu_groups/%s/devices", group);
    char **names = NULL;
    size_t n = 0;
    if (gw_hostops_list(s->base, dir, &names, &n) < 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        _cleanup_free_ char *drv = gw_is_bdf(names[i]) ? gw_sim_driver_of(s, names[i]) : NULL;
        found = drv && !strcmp(drv, VFIO);
    }
    gw_hostops_list_free(names, n);
    return found;
}

/* Whether a process of the tree's own proc/ (a test's stand-in for a QEMU:
 * proc/<pid>/fd/<n> linking to /dev/vfio/<group>) has the group open. */
static bool tree_holds(gw_sim *s, const char *group)
{
    _cleanup_free_ char *node = gw_strdup_printf("/dev/vfio/%s", group);
    char **pids = NULL;
    size_t n = 0;
    if (gw_hostops_list(s->base, "proc", &pids, &n) < 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        _cleanup_free_ char *dir = gw_strdup_printf("proc/%s/fd", pids[i]);
        char **fds = NULL;
        size_t k = 0;
        if (gw_hostops_list(s->base, dir, &fds, &k) < 0)
            continue;
        for (size_t j = 0; j < k && !found; j++) {
            _cleanup_free_ char *p = gw_strdup_printf("%s/%s", dir, fds[j]);
            _cleanup_free_ char *target = NULL;
            found = gw_hostops_readlink(s->base, p, &target) == 0 && !strcmp(target, node);
        }
        gw_hostops_list_free(fds, k);
    }
    gw_hostops_list_free(pids, n);
    return found;
}

/* The kernel allows one open of a group node at a time: a holder, a hold
 * of our own, or a process of the tree has it. */
static bool group_taken(gw_sim *s, const char *group)
{
    if (tree_holds(s, group))
        return true;
    for (size_t i = 0; i < s->n_holders; i++)
        if (!strcmp(s->holders[i].group, group))
            return true;
    for (size_t i = 0; i < s->n_held; i++)
        if (!strcmp(s->held[i], group))
            return true;
    return false;
}

int gw_sim_process_open(gw_sim *s, const char *group, int pid, const char *comm)
{
    if (group_taken(s, group)) {
        gw_sim_holder_add(&s->refused, &s->n_refused, group, pid, comm);
        return -EBUSY;
    }
    gw_sim_holder_add(&s->holders, &s->n_holders, group, pid, comm);
    return 0;
}

/* A racing holder opens its group just before we do. */
static void run_races(gw_sim *s, const char *group)
{
    for (size_t i = 0; i < s->n_races;) {
        sim_holder *h = &s->races[i];
        if (strcmp(h->group, group)) {
            i++;
            continue;
        }
        gw_sim_holder_add(&s->holders, &s->n_holders, h->group, h->pid, h->comm);
        free(h->comm);
        free(h->group);
        *h = s->races[--s->n_races];
    }
}

int gw_sim_hold(void *data, const char *path, void **handle)
{
    gw_sim *s = data;
    const char *g = vfio_group(path);
    if (!g)
        return gw_error_set(-ENOENT, "sim: open %s: no such node (only dev/vfio/<group> is modelled)", path);
    pthread_mutex_lock(&s->lock);
    run_races(s, g);
    int r = 0;
    if (group_taken(s, g))
        r = gw_error_set(-EBUSY, "open %s: Device or resource busy", path);
    else if (!group_on_vfio(s, g))
        r = gw_error_set(-ENOENT, "open %s: No such file or directory (no function of IOMMU group %s on "
                         VFIO ")", path, g);
    if (r == 0) {
        s->held = gw_xrealloc(s->held, s->n_held + 1, sizeof *s->held);
        s->held[s->n_held++] = gw_xstrdup(g);
        *handle = gw_xstrdup(g);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

void gw_sim_release(void *data, void *handle)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_held; i++) {
        if (!strcmp(s->held[i], handle)) {
            free(s->held[i]);
            s->held[i] = s->held[--s->n_held];
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(handle);
}
