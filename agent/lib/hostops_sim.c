/* The simulated host backend (see hostops_sim.h): reads fall through to a
 * test tree unless the overlay has something newer; writes act like the
 * kernel's attribute handlers on the overlay, plus injected faults. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "hostops_sim.h"
#include "util.h"

enum { ACT_FAIL, ACT_DELAY, ACT_SET, ACT_BIND };

typedef struct sim_action {
    int kind;
    char *trigger;
    char *tdata;            /* NULL: any bytes */
    size_t tlen;
    char *target;           /* ACT_SET path, ACT_BIND address */
    char *data;             /* ACT_SET bytes, ACT_BIND driver (NULL = unbind) */
    size_t len;
    int err;
    unsigned ms;
} sim_action;

typedef struct sim_file {
    char *path;
    char *data;
    size_t len;
} sim_file;

typedef struct sim_link {
    char *path;
    char *target;           /* NULL: removed */
} sim_link;

typedef struct sim_wlog {
    char *path;
    char *data;
    size_t len;
    int result;
} sim_wlog;

struct gw_sim {
    pthread_mutex_t lock;
    gw_hostops *base;       /* the test tree, read-only through the sysfs backend */
    sim_file *files;
    size_t n_files;
    sim_link *links;
    size_t n_links;
    sim_action *acts;
    size_t n_acts;
    sim_wlog *log;
    size_t n_log;
    char **rom_on;          /* rom attributes with reads enabled */
    size_t n_rom_on;
};

static char *memdup0(const void *p, size_t n)
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
static bool split_dev_path(const char *path, char addr[GW_ADDR_LEN], const char **attr)
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

static sim_file *file_find(gw_sim *s, const char *path)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (!strcmp(s->files[i].path, path))
            return &s->files[i];
    return NULL;
}

static void file_set(gw_sim *s, const char *path, const void *data, size_t len)
{
    sim_file *f = file_find(s, path);
    if (!f) {
        s->files = gw_xrealloc(s->files, s->n_files + 1, sizeof *s->files);
        f = &s->files[s->n_files++];
        f->path = gw_xstrdup(path);
        f->data = NULL;
    }
    free(f->data);
    f->data = memdup0(data, len);
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
    link_set(s, p, t);
}

/* Current driver of `addr` (malloc'd, NULL when unbound). Lock held. */
static char *driver_of(gw_sim *s, const char *addr)
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
    sim_file *f = file_find(s, p);
    _cleanup_free_ char *v = NULL;
    size_t n = 0;
    if (f)
        v = memdup0(f->data, n = f->len);
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
    if (file_find(s, path))
        return 0;
    return gw_hostops_exists(s->base, path);
}

/* The kernel's side of a write. Lock held. */
static int model_write(gw_sim *s, const char *path, const char *buf, size_t len)
{
    char addr[GW_ADDR_LEN];
    const char *attr;
    if (!strcmp(path, "sys/bus/pci/drivers_probe")) {
        if (!parse_addr(buf, len, addr))
            return gw_error_set(-EINVAL, "sim: drivers_probe: not an address");
        _cleanup_free_ char *drv = driver_of(s, addr);
        _cleanup_free_ char *ovr = override_of(s, addr);
        if (!drv && ovr && driver_exists(s, ovr))
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
        _cleanup_free_ char *drv = driver_of(s, addr);
        if (ends_with(path, "/unbind")) {
            if (!drv || strcmp(drv, name))
                return gw_error_set(-ENODEV, "sim: %s: %s is not bound to %s", path, addr, name);
            bind_dev(s, addr, NULL);
            return 0;
        }
        _cleanup_free_ char *ovr = override_of(s, addr);
        if (drv || (ovr && strcmp(ovr, name)))
            return gw_error_set(-ENODEV, "sim: %s: %s cannot bind", path, addr);
        bind_dev(s, addr, name);
        return 0;
    }
    if (!split_dev_path(path, addr, &attr))
        return gw_error_set(-EACCES, "sim: %s is read-only", path);
    if (attr_exists(s, path) < 0)
        return gw_error_set(-ENOENT, "sim: %s: no such attribute", path);
    if (!strcmp(attr, "driver_override")) {
        size_t n = len && buf[len - 1] == '\n' ? len - 1 : len;
        _cleanup_free_ char *v = n ? gw_strdup_printf("%.*s\n", (int)n, buf) : gw_xstrdup("(null)\n");
        file_set(s, path, v, strlen(v));
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
        file_set(s, path, buf, len);
        return 0;
    }
    return gw_error_set(-EACCES, "sim: %s is read-only", path);
}

static void log_write(gw_sim *s, const char *path, const void *buf, size_t len, int result)
{
    s->log = gw_xrealloc(s->log, s->n_log + 1, sizeof *s->log);
    sim_wlog *w = &s->log[s->n_log++];
    w->path = gw_xstrdup(path);
    w->data = memdup0(buf, len);
    w->len = len;
    w->result = result;
}

static int sim_do_write(void *data, const char *path, const void *buf, size_t len)
{
    gw_sim *s = data;
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
        r = model_write(s, path, buf, len);
    for (size_t i = 0; i < s->n_acts && !r; i++) {
        sim_action *a = &s->acts[i];
        if (!act_matches(a, path, buf, len))
            continue;
        if (a->kind == ACT_SET)
            file_set(s, a->target, a->data, a->len);
        else if (a->kind == ACT_BIND)
            bind_dev(s, a->target, a->data);
    }
    log_write(s, path, buf, len, r);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_read(void *data, const char *path, size_t max, char **out, size_t *len)
{
    gw_sim *s = data;
    char addr[GW_ADDR_LEN];
    const char *attr;
    pthread_mutex_lock(&s->lock);
    if (split_dev_path(path, addr, &attr) && !strcmp(attr, "rom") && attr_exists(s, path) == 0 &&
        !rom_enabled(s, path)) {
        pthread_mutex_unlock(&s->lock);
        return gw_error_set(-EINVAL, "read %s: Invalid argument (ROM not enabled)", path);
    }
    sim_file *f = file_find(s, path);
    if (f) {
        int r = 0;
        if (f->len > max)
            r = gw_error_set(-EFBIG, "%s: larger than %zu bytes", path, max);
        else {
            *out = memdup0(f->data, f->len);
            *len = f->len;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    return gw_hostops_read(s->base, path, max, out, len);
}

static int sim_readlink(void *data, const char *path, char **out)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    sim_link *l = link_find(s, path);
    if (l) {
        int r = l->target ? 0 : gw_error_set(-ENOENT, "readlink %s: No such file or directory", path);
        if (l->target)
            *out = gw_xstrdup(l->target);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    return gw_hostops_readlink(s->base, path, out);
}

static int sim_list(void *data, const char *path, char ***names, size_t *n)
{
    gw_sim *s = data;
    return gw_hostops_list(s->base, path, names, n);
}

static int sim_exists(void *data, const char *path)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    sim_link *l = link_find(s, path);
    int r = 1;
    if (l)
        r = l->target ? 0 : gw_error_set(-ENOENT, "%s: No such file or directory", path);
    else if (file_find(s, path))
        r = 0;
    pthread_mutex_unlock(&s->lock);
    return r <= 0 ? r : gw_hostops_exists(s->base, path);
}

static int sim_read_config(void *data, const char *address, unsigned int offset, void *buf, size_t len)
{
    gw_sim *s = data;
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    pthread_mutex_lock(&s->lock);
    sim_file *f = file_find(s, p);
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
    }
    free(s->log);
    for (size_t i = 0; i < s->n_rom_on; i++)
        free(s->rom_on[i]);
    free(s->rom_on);
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
    a->data = memdup0(data, len);
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

void gw_sim_set(gw_sim *s, const char *path, const void *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    file_set(s, path, data, len);
    pthread_mutex_unlock(&s->lock);
}

size_t gw_sim_write_count(gw_sim *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n_log;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int gw_sim_write_at(gw_sim *s, size_t i, const char **path, const void **data, size_t *len, int *result)
{
    pthread_mutex_lock(&s->lock);
    int r = -ENOENT;
    if (i < s->n_log) {
        /* Entries never move once logged, but the array may: copy out the pointers. */
        *path = s->log[i].path;
        *data = s->log[i].data;
        *len = s->log[i].len;
        *result = s->log[i].result;
        r = 0;
    }
    pthread_mutex_unlock(&s->lock);
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
