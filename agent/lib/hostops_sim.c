/* SPDX-License-Identifier: Apache-2.0 */
/* The simulated host backend (see hostops_sim.h): reads fall through to a
 * test tree unless the overlay has something newer; writes act like the
 * kernel's attribute handlers on the overlay, plus injected faults. The
 * kernel models beyond plain attributes live in hostops_sim_model.c. */
#include <string.h>
#include <time.h>

#include "hostops_sim_internal.h"

enum { ACT_FAIL, ACT_DELAY, ACT_SET, ACT_BIND, ACT_HOLD, ACT_REMOVE };

struct sim_action {
    int kind;
    char *trigger;
    char *tdata;            /* NULL: any bytes */
    size_t tlen;
    char *target;           /* ACT_SET path, ACT_BIND address, ACT_HOLD group */
    char *data;             /* ACT_SET bytes, ACT_BIND driver (NULL = unbind), ACT_HOLD comm */
    size_t len;
    int err;                /* ACT_FAIL errno, ACT_HOLD pid */
    unsigned ms;
};

struct sim_wlog {
    char *path;
    char *data;
    size_t len;
    int result;
    char *held;             /* groups held through hold() at the time */
    long offset;            /* a config write's offset; -1 for an attribute */
};

char *gw_sim_memdup0(const void *p, size_t n)
{
    char *d = gw_xcalloc(n + 1, 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* "sys/bus/pci/devices/<addr>/<attr>" -> addr, attr (pointer into path). */
bool gw_sim_split_dev_path(const char *path, char addr[GW_ADDR_LEN], const char **attr)
{
    static const char pre[] = "sys/bus/pci/devices/";
    if (strncmp(path, pre, sizeof pre - 1))
        return false;
    const char *a = path + sizeof pre - 1;
    if (strlen(a) < GW_ADDR_LEN || a[GW_ADDR_LEN - 1] != '/')
        return false;
    memcpy(addr, a, GW_ADDR_LEN - 1);
    addr[GW_ADDR_LEN - 1] = '\0';
    *attr = a + GW_ADDR_LEN;
    return gw_is_bdf(addr);
}

/* Written address: the bytes with one trailing newline removed. */
static bool parse_addr(const void *buf, size_t len, char out[GW_ADDR_LEN])
{
    if (len && ((const char *)buf)[len - 1] == '\n')
        len--;
    if (len != GW_ADDR_LEN - 1)
        return false;
    memcpy(out, buf, len);
    out[len] = '\0';
    return gw_is_bdf(out);
}

sim_file *gw_sim_file_find(gw_sim *s, const char *path)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (!strcmp(s->files[i].path, path))
            return &s->files[i];
    return NULL;
}

void gw_sim_file_set(gw_sim *s, const char *path, const void *data, size_t len)
{
    sim_file *f = gw_sim_file_find(s, path);
    if (!f) {
        s->files = gw_xrealloc(s->files, s->n_files + 1, sizeof *s->files);
        f = &s->files[s->n_files++];
        f->path = gw_xstrdup(path);
        f->data = NULL;
    }
    free(f->data);
    f->data = gw_sim_memdup0(data, len);
    f->len = len;
}

static sim_link *link_find(gw_sim *s, const char *path)
{
    for (size_t i = 0; i < s->n_links; i++)
        if (!strcmp(s->links[i].path, path))
            return &s->links[i];
    return NULL;
}

static void link_set(gw_sim *s, const char *path, const char *target)
{
    sim_link *l = link_find(s, path);
    if (!l) {
        s->links = gw_xrealloc(s->links, s->n_links + 1, sizeof *s->links);
        l = &s->links[s->n_links++];
        l->path = gw_xstrdup(path);
        l->target = NULL;
    }
    free(l->target);
    l->target = gw_xstrdup(target);
}

static void bind_dev(gw_sim *s, const char *addr, const char *driver)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/driver", addr);
    _cleanup_free_ char *t = driver ? gw_strdup_printf("../../../bus/pci/drivers/%s", driver) : NULL;
    _cleanup_free_ char *before = gw_sim_driver_of(s, addr);
    link_set(s, p, t);
    gw_sim_power_on_bind(s, addr, before, driver);
}

/* Current driver of `addr` (malloc'd, NULL when unbound). Lock held. */
char *gw_sim_driver_of(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/driver", addr);
    sim_link *l = link_find(s, p);
    _cleanup_free_ char *t = NULL;
    if (l) {
        if (!l->target)
            return NULL;
        t = gw_xstrdup(l->target);
    } else if (gw_hostops_readlink(s->base, p, &t) < 0) {
        return NULL;
    }
    const char *slash = strrchr(t, '/');
    return gw_xstrdup(slash ? slash + 1 : t);
}

/* driver_override value (malloc'd, NULL when unset). Lock held. */
static char *override_of(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/driver_override", addr);
    sim_file *f = gw_sim_file_find(s, p);
    _cleanup_free_ char *v = NULL;
    size_t n = 0;
    if (f)
        v = gw_sim_memdup0(f->data, n = f->len);
    else if (gw_hostops_read(s->base, p, 4096, &v, &n) < 0)
        return NULL;
    while (n && (v[n - 1] == '\n'))
        v[--n] = '\0';
    if (!n || !strcmp(v, "(null)"))
        return NULL;
    return GW_TAKE(v);
}

static bool driver_exists(gw_sim *s, const char *driver)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/drivers/%s", driver);
    return gw_hostops_exists(s->base, p) == 0;
}

static bool rom_enabled(gw_sim *s, const char *path)
{
    for (size_t i = 0; i < s->n_rom_on; i++)
        if (!strcmp(s->rom_on[i], path))
            return true;
    return false;
}

static void rom_set(gw_sim *s, const char *path, bool on)
{
    for (size_t i = 0; i < s->n_rom_on; i++) {
        if (!strcmp(s->rom_on[i], path)) {
            if (!on) {
                free(s->rom_on[i]);
                s->rom_on[i] = s->rom_on[--s->n_rom_on];
            }
            return;
        }
    }
    if (on) {
        s->rom_on = gw_xrealloc(s->rom_on, s->n_rom_on + 1, sizeof *s->rom_on);
        s->rom_on[s->n_rom_on++] = gw_xstrdup(path);
    }
}

static bool act_matches(const sim_action *a, const char *path, const void *buf, size_t len)
{
    if (strcmp(a->trigger, path))
        return false;
    return !a->tdata || (a->tlen == len && !memcmp(a->tdata, buf, len));
}

static int attr_exists(gw_sim *s, const char *path)
{
    if (gw_sim_file_find(s, path))
        return 0;
    return gw_hostops_exists(s->base, path);
}

/* What `driver`'s probe of `addr` returns. vfio-pci refuses a device without
 * an IOMMU group with -EINVAL (vfio_pci_core_register_device(); measured in
 * the lab with the IOMMU off). Lock held. */
static int probe_error(gw_sim *s, const char *addr, const char *driver)
{
    if (strcmp(driver, "vfio-pci"))
        return 0;
    _cleanup_free_ char *link = gw_strdup_printf("sys/bus/pci/devices/%s/iommu_group", addr);
    _cleanup_free_ char *target = NULL;
    return gw_hostops_readlink(s->base, link, &target) < 0 ? -EINVAL : 0;
}

/* Hot-unplug: the kernel removes the device's directory (the link in
 * bus/pci/devices) and its config space with it. Lock held. */
static void remove_dev(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s", addr);
    link_set(s, p, NULL);
}

static bool dev_removed(gw_sim *s, const char *addr)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s", addr);
    sim_link *l = link_find(s, p);
    return l && !l->target;
}

/* The kernel's side of a write. Lock held. */
static int model_write(gw_sim *s, const char *path, const char *buf, size_t len)
{
    char addr[GW_ADDR_LEN];
    const char *attr;
    if (!strcmp(path, "sys/bus/pci/drivers_probe")) {
        if (!parse_addr(buf, len, addr))
            return gw_error_set(-EINVAL, "sim: drivers_probe: not an address");
        _cleanup_free_ char *drv = gw_sim_driver_of(s, addr);
        _cleanup_free_ char *ovr = override_of(s, addr);
        /* The kernel answers 0 even when the probe fails: only its log says. */
        if (!drv && ovr && driver_exists(s, ovr) && probe_error(s, addr, ovr) == 0)
            bind_dev(s, addr, ovr);
        return 0;
    }
    static const char drivers[] = "sys/bus/pci/drivers/";
    if (!strncmp(path, drivers, sizeof drivers - 1) && (ends_with(path, "/unbind") || ends_with(path, "/bind"))) {
        const char *d = path + sizeof drivers - 1;
        const char *slash = strchr(d, '/');
        _cleanup_free_ char *name = strndup(d, (size_t)(slash - d));
        if (!driver_exists(s, name))
            return gw_error_set(-ENOENT, "sim: %s: no such driver", path);
        if (!parse_addr(buf, len, addr))
            return gw_error_set(-EINVAL, "sim: %s: not an address", path);
        _cleanup_free_ char *drv = gw_sim_driver_of(s, addr);
        if (ends_with(path, "/unbind")) {
            if (!drv || strcmp(drv, name))
                return gw_error_set(-ENODEV, "sim: %s: %s is not bound to %s", path, addr, name);
            bind_dev(s, addr, NULL);
            return 0;
        }
        _cleanup_free_ char *ovr = override_of(s, addr);
        if (drv || (ovr && strcmp(ovr, name)))
            return gw_error_set(-ENODEV, "sim: %s: %s cannot bind", path, addr);
        int pe = probe_error(s, addr, name);
        if (pe < 0)
            return gw_error_set(pe, "write %s: %s (kernel: %s: probe of %s failed with error %d)", path,
                                strerror(-pe), name, addr, pe);
        bind_dev(s, addr, name);
        return 0;
    }
    if (!gw_sim_split_dev_path(path, addr, &attr))
        return gw_error_set(-EACCES, "sim: %s is read-only", path);
    if (!strcmp(attr, "power/control"))
        return gw_sim_power_write(s, path, addr, buf, len);
    if (attr_exists(s, path) < 0)
        return gw_error_set(-ENOENT, "sim: %s: no such attribute", path);
    if (!strcmp(attr, "driver_override")) {
        size_t n = len && buf[len - 1] == '\n' ? len - 1 : len;
        _cleanup_free_ char *v = n ? gw_strdup_printf("%.*s\n", (int)n, buf) : gw_xstrdup("(null)\n");
        gw_sim_file_set(s, path, v, strlen(v));
        return 0;
    }
    if (!strcmp(attr, "reset")) {
        if (!((len == 1 && buf[0] == '1') || (len == 2 && buf[0] == '1' && buf[1] == '\n')))
            return gw_error_set(-EINVAL, "sim: %s: only 1 is accepted", path);
        return 0;
    }
    if (!strcmp(attr, "rom")) {
        /* pci_write_rom(): disable only for exactly two bytes starting '0'. */
        rom_set(s, path, !(len == 2 && buf[0] == '0'));
        return 0;
    }
    if (!strcmp(attr, "reset_method")) {
        gw_sim_file_set(s, path, buf, len);
        return 0;
    }
    return gw_error_set(-EACCES, "sim: %s is read-only", path);
}

static void log_write(gw_sim *s, const char *path, long offset, const void *buf, size_t len, int result)
{
    s->log = gw_xrealloc(s->log, s->n_log + 1, sizeof *s->log);
    sim_wlog *w = &s->log[s->n_log++];
    w->path = gw_xstrdup(path);
    w->data = gw_sim_memdup0(buf, len);
    w->len = len;
    w->result = result;
    w->held = gw_sim_held_list(s);
    w->offset = offset;
}

/* A config write's model: the device must still be there. Lock held. */
static int config_write(gw_sim *s, const char *path, unsigned int offset, const void *buf, size_t len)
{
    char addr[GW_ADDR_LEN];
    const char *attr;
    if (gw_sim_split_dev_path(path, addr, &attr) && dev_removed(s, addr))
        return gw_error_set(-ENOENT, "open %s: No such file or directory (device removed)", path);
    return gw_sim_config_write(s, path, offset, buf, len);
}

/* Every write, to an attribute (offset -1) or to config space at `offset`:
 * injected delay and failure, the kernel's side, the after-write actions,
 * the log. */
static int do_write(gw_sim *s, const char *path, long offset, const void *buf, size_t len)
{
    unsigned delay = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_acts; i++)
        if (s->acts[i].kind == ACT_DELAY && act_matches(&s->acts[i], path, buf, len))
            delay += s->acts[i].ms;
    pthread_mutex_unlock(&s->lock);
    if (delay) {
        /* Like a kernel write that blocks: other devices' calls go on. */
        struct timespec ts = { delay / 1000, (long)(delay % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_lock(&s->lock);
    int r = 0;
    for (size_t i = 0; i < s->n_acts && !r; i++)
        if (s->acts[i].kind == ACT_FAIL && act_matches(&s->acts[i], path, buf, len))
            r = gw_error_set(s->acts[i].err, "write %s: %s (injected)", path, strerror(-s->acts[i].err));
    if (!r)
        r = offset < 0 ? model_write(s, path, buf, len) : config_write(s, path, (unsigned)offset, buf, len);
    for (size_t i = 0; i < s->n_acts && !r; i++) {
        sim_action *a = &s->acts[i];
        if (!act_matches(a, path, buf, len))
            continue;
        if (a->kind == ACT_SET)
            gw_sim_file_set(s, a->target, a->data, a->len);
        else if (a->kind == ACT_BIND)
            bind_dev(s, a->target, a->data);
        else if (a->kind == ACT_HOLD)
            (void)gw_sim_process_open(s, a->target, a->err, a->data);     /* refused: kept in s->refused */
        else if (a->kind == ACT_REMOVE)
            remove_dev(s, a->target);
    }
    log_write(s, path, offset, buf, len, r);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_do_write(void *data, const char *path, const void *buf, size_t len)
{
    return do_write(data, path, -1, buf, len);
}

static int sim_write_config(void *data, const char *address, unsigned int offset, const void *buf, size_t len)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    return do_write(data, p, offset, buf, len);
}

/* A device's power files exist for every device of the tree: the kernel
 * has them for each one (CONFIG_PM), test trees mostly do not. True when
 * `path` is one of them (now in the overlay). Lock held. */
static bool power_files(gw_sim *s, const char *path)
{
    char addr[GW_ADDR_LEN];
    const char *attr;
    if (!gw_sim_split_dev_path(path, addr, &attr) || !gw_sim_is_power_attr(attr))
        return false;
    _cleanup_free_ char *dir = gw_strdup_printf("sys/bus/pci/devices/%s", addr);
    if (gw_hostops_exists(s->base, dir) < 0)
        return false;
    gw_sim_power_init(s, addr);
    return true;
}

/* A file of the overlay: 0 and its bytes, 1 when the tree answers. Lock held. */
static int overlay_read(gw_sim *s, const char *path, size_t max, char **out, size_t *len)
{
    sim_file *f = gw_sim_file_find(s, path);
    if (!f)
        return 1;
    if (f->len > max)
        return gw_error_set(-EFBIG, "%s: larger than %zu bytes", path, max);
    *out = gw_sim_memdup0(f->data, f->len);
    *len = f->len;
    return 0;
}

static int config_locked(gw_sim *s, const char *address, unsigned int offset, void *buf, size_t len);

/* rom: enabled reads only, and only the bytes pci_read_rom() lets through. */
static int rom_read(gw_sim *s, const char *path, size_t max, char **out, size_t *len)
{
    if (!rom_enabled(s, path))
        return gw_error_set(-EINVAL, "read %s: Invalid argument (ROM not enabled)", path);
    /* pci_map_rom() sets the ROM BAR's enable bit but not the Command
     * register's Memory Space bit: with decoding off (a device no firmware or
     * driver enabled, e.g. hot-plugged) the ROM reads as zeros and the kernel
     * finds no 0xAA55 signature (measured in the lab). */
    char addr[GW_ADDR_LEN];
    const char *attr;
    uint8_t cmd[2];
    if (gw_sim_split_dev_path(path, addr, &attr) && config_locked(s, addr, 0x04, cmd, 2) == 0 && !(cmd[0] & 0x02))
        return gw_error_set(-EIO, "read %s: Input/output error (kernel: Invalid PCI ROM header signature: "
                                  "expecting 0xaa55, got 0x0000; Memory Space decoding is off)", path);
    _cleanup_free_ char *img = NULL;
    size_t n = 0;
    int r = overlay_read(s, path, SIZE_MAX, &img, &n);
    if (r > 0)
        r = gw_hostops_read(s->base, path, (size_t)64 << 20, &img, &n);
    if (r < 0)
        return r;
    if ((r = gw_sim_rom_view(path, img, &n)) < 0)
        return r;
    if (n > max)
        return gw_error_set(-EFBIG, "%s: larger than %zu bytes", path, max);
    img[n] = '\0';
    *out = GW_TAKE(img);
    *len = n;
    return 0;
}

static int sim_read(void *data, const char *path, size_t max, char **out, size_t *len)
{
    gw_sim *s = data;
    char addr[GW_ADDR_LEN];
    const char *attr;
    pthread_mutex_lock(&s->lock);
    int r = 1;
    if (gw_sim_proc_read(s, path, max, out, len, &r) == 0) {
        if (gw_sim_split_dev_path(path, addr, &attr) && !strcmp(attr, "rom") && attr_exists(s, path) == 0) {
            r = rom_read(s, path, max, out, len);
        } else {
            power_files(s, path);
            r = overlay_read(s, path, max, out, len);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r > 0 ? gw_hostops_read(s->base, path, max, out, len) : r;
}

static int sim_readlink(void *data, const char *path, char **out)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    int r = 1;
    if (gw_sim_proc_readlink(s, path, out, &r) == 0) {
        sim_link *l = link_find(s, path);
        if (l && l->target) {
            *out = gw_xstrdup(l->target);
            r = 0;
        } else if (l) {
            r = gw_error_set(-ENOENT, "readlink %s: No such file or directory", path);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r > 0 ? gw_hostops_readlink(s->base, path, out) : r;
}

static int sim_list(void *data, const char *path, char ***names, size_t *n)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    int r = 1;
    gw_sim_proc_list(s, path, names, n, &r);
    pthread_mutex_unlock(&s->lock);
    return r > 0 ? gw_hostops_list(s->base, path, names, n) : r;
}

static int sim_exists(void *data, const char *path)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    sim_link *l = link_find(s, path);
    int r = gw_sim_proc_exists(s, path);
    if (r > 0 && l)
        r = l->target ? 0 : gw_error_set(-ENOENT, "%s: No such file or directory", path);
    else if (r > 0 && (power_files(s, path) || gw_sim_file_find(s, path)))
        r = 0;
    pthread_mutex_unlock(&s->lock);
    return r <= 0 ? r : gw_hostops_exists(s->base, path);
}

/* Config bytes with the lock held: the overlay, else the tree. */
static int config_locked(gw_sim *s, const char *address, unsigned int offset, void *buf, size_t len)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    sim_file *f = gw_sim_file_find(s, p);
    if (!f)
        return gw_hostops_read_config(s->base, address, offset, buf, len);
    if (offset + len > f->len)
        return gw_error_set(-EIO, "config %s: cannot read %zu bytes at 0x%x", address, len, offset);
    memcpy(buf, f->data + offset, len);
    return 0;
}

static int sim_read_config(void *data, const char *address, unsigned int offset, void *buf, size_t len)
{
    gw_sim *s = data;
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    pthread_mutex_lock(&s->lock);
    if (dev_removed(s, address)) {
        pthread_mutex_unlock(&s->lock);
        return gw_error_set(-ENOENT, "config %s: No such file or directory (device removed)", address);
    }
    sim_file *f = gw_sim_file_find(s, p);
    if (f) {
        int r = 0;
        if (offset + len > f->len)
            r = gw_error_set(-EIO, "config %s: cannot read %zu bytes at 0x%x", address, len, offset);
        else
            memcpy(buf, f->data + offset, len);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    return gw_hostops_read_config(s->base, address, offset, buf, len);
}

static void sim_destroy(void *data)
{
    gw_sim *s = data;
    if (!s)
        return;
    gw_hostops_unref(s->base);
    for (size_t i = 0; i < s->n_files; i++) {
        free(s->files[i].path);
        free(s->files[i].data);
    }
    free(s->files);
    for (size_t i = 0; i < s->n_links; i++) {
        free(s->links[i].path);
        free(s->links[i].target);
    }
    free(s->links);
    for (size_t i = 0; i < s->n_acts; i++) {
        free(s->acts[i].trigger);
        free(s->acts[i].tdata);
        free(s->acts[i].target);
        free(s->acts[i].data);
    }
    free(s->acts);
    for (size_t i = 0; i < s->n_log; i++) {
        free(s->log[i].path);
        free(s->log[i].data);
        free(s->log[i].held);
    }
    free(s->log);
    for (size_t i = 0; i < s->n_rom_on; i++)
        free(s->rom_on[i]);
    free(s->rom_on);
    gw_sim_holders_free(s->holders, s->n_holders);
    gw_sim_holders_free(s->races, s->n_races);
    gw_sim_holders_free(s->refused, s->n_refused);
    for (size_t i = 0; i < s->n_held; i++)
        free(s->held[i]);
    free(s->held);
    gw_sim_vfio_free(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int gw_hostops_sim_new(gw_hostops **out, gw_sim **sim, const char *root)
{
    gw_sim *s = gw_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    int r = gw_hostops_sysfs_new(&s->base, root);
    if (r < 0) {
        _cleanup_free_ char *msg = gw_xstrdup(gw_error_message());
        sim_destroy(s);
        return gw_error_set(r, "sim: %s", msg);
    }
    _cleanup_free_ char *name = gw_strdup_printf("sim:%s", root);
    gw_hostops_backend be = {
        .version = GW_HOSTOPS_BACKEND_VERSION,
        .name = name,
        .read = sim_read,
        .write = sim_do_write,
        .readlink = sim_readlink,
        .list = sim_list,
        .exists = sim_exists,
        .read_config = sim_read_config,
        .destroy = sim_destroy,
        .hold = gw_sim_hold,
        .release = gw_sim_release,
        .vfio_open = gw_sim_vfio_open,
        .vfio_region = gw_sim_vfio_region,
        .vfio_map = gw_sim_vfio_map,
        .vfio_unmap = gw_sim_vfio_unmap,
        .vfio_read = gw_sim_vfio_read,
        .vfio_write = gw_sim_vfio_write,
        .vfio_hot_reset_info = gw_sim_vfio_reset_info,
        .vfio_hot_reset = gw_sim_vfio_hot_reset,
        .vfio_close = gw_sim_vfio_close,
        .write_config = sim_write_config,
    };
    r = gw_hostops_new(out, &be, s);
    if (r == 0)
        *sim = s;
    return r;
}

static sim_action *add_action(gw_sim *s, int kind, const char *trigger)
{
    s->acts = gw_xrealloc(s->acts, s->n_acts + 1, sizeof *s->acts);
    sim_action *a = &s->acts[s->n_acts++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->trigger = gw_xstrdup(trigger);
    return a;
}

void gw_sim_fail_write(gw_sim *s, const char *path, int err)
{
    pthread_mutex_lock(&s->lock);
    add_action(s, ACT_FAIL, path)->err = err;
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_delay_write(gw_sim *s, const char *path, unsigned int ms)
{
    pthread_mutex_lock(&s->lock);
    add_action(s, ACT_DELAY, path)->ms = ms;
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_after_write_set(gw_sim *s, const char *trigger, const char *target, const void *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    sim_action *a = add_action(s, ACT_SET, trigger);
    a->target = gw_xstrdup(target);
    a->data = gw_sim_memdup0(data, len);
    a->len = len;
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_after_write_bind(gw_sim *s, const char *trigger, const char *trigger_data, const char *address,
                             const char *driver)
{
    pthread_mutex_lock(&s->lock);
    sim_action *a = add_action(s, ACT_BIND, trigger);
    if (trigger_data) {
        a->tdata = gw_xstrdup(trigger_data);
        a->tlen = strlen(trigger_data);
    }
    a->target = gw_xstrdup(address);
    a->data = gw_xstrdup(driver);
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_after_write_remove(gw_sim *s, const char *trigger, const char *address)
{
    pthread_mutex_lock(&s->lock);
    add_action(s, ACT_REMOVE, trigger)->target = gw_xstrdup(address);
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_after_write_hold(gw_sim *s, const char *trigger, const char *group, int pid, const char *comm)
{
    pthread_mutex_lock(&s->lock);
    sim_action *a = add_action(s, ACT_HOLD, trigger);
    a->target = gw_xstrdup(group);
    a->data = gw_xstrdup(comm);
    a->err = pid;
    pthread_mutex_unlock(&s->lock);
}

int gw_sim_hold_group(gw_sim *s, const char *group, int pid, const char *comm)
{
    pthread_mutex_lock(&s->lock);
    int r = gw_sim_process_open(s, group, pid, comm);
    pthread_mutex_unlock(&s->lock);
    return r;
}

size_t gw_sim_refused_opens(gw_sim *s, const char *group)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    for (size_t i = 0; i < s->n_refused; i++)
        n += !strcmp(s->refused[i].group, group);
    pthread_mutex_unlock(&s->lock);
    return n;
}

void gw_sim_race_hold(gw_sim *s, const char *group, int pid, const char *comm)
{
    pthread_mutex_lock(&s->lock);
    gw_sim_holder_add(&s->races, &s->n_races, group, pid, comm);
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_release_group(gw_sim *s, const char *group, int pid)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_holders;) {
        sim_holder *h = &s->holders[i];
        if (h->pid == pid && !strcmp(h->group, group)) {
            free(h->comm);
            free(h->group);
            *h = s->holders[--s->n_holders];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_set(gw_sim *s, const char *path, const void *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    gw_sim_file_set(s, path, data, len);
    pthread_mutex_unlock(&s->lock);
}

size_t gw_sim_write_count(gw_sim *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n_log;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Entry i of the write log, copied out under the lock: the strings it
 * points to never move once logged, but the array may. */
static int wlog_get(gw_sim *s, size_t i, sim_wlog *out)
{
    pthread_mutex_lock(&s->lock);
    int r = i < s->n_log ? 0 : -ENOENT;
    if (!r)
        *out = s->log[i];
    pthread_mutex_unlock(&s->lock);
    return r;
}

int gw_sim_write_at(gw_sim *s, size_t i, const char **path, const void **data, size_t *len, int *result)
{
    sim_wlog w;
    int r = wlog_get(s, i, &w);
    if (!r) {
        *path = w.path;
        *data = w.data;
        *len = w.len;
        *result = w.result;
    }
    return r;
}

int gw_sim_write_held(gw_sim *s, size_t i, const char **groups)
{
    sim_wlog w;
    int r = wlog_get(s, i, &w);
    if (!r)
        *groups = w.held;
    return r;
}

int gw_sim_write_offset(gw_sim *s, size_t i, long *offset)
{
    sim_wlog w;
    int r = wlog_get(s, i, &w);
    if (!r)
        *offset = w.offset;
    return r;
}

size_t gw_sim_count_writes(gw_sim *s, const char *suffix)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    for (size_t i = 0; i < s->n_log; i++)
        if (ends_with(s->log[i].path, suffix))
            n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}
