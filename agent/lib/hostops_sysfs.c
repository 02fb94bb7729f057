/* The real host backend: files under a host root, config space through
 * libpci's linux-sysfs method. On a live host the root is "/"; in tests it is
 * a copied test tree, and then writes land in that tree's files. */
#include <gpuwarden/hostops.h>
#include <dirent.h>
#include <fcntl.h>
#include <pci/pci.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

typedef struct sysfs_host {
    int rootfd;                 /* O_PATH descriptor of the host root */
    char *root;
    pthread_mutex_t pci_lock;   /* libpci's pci_access is not thread-safe */
    struct pci_access *pacc;
} sysfs_host;

/* libpci calls a->error() for fatal problems and expects it not to return; its
 * default calls exit(). Ours jumps back into the call that was in progress. */
static _Thread_local jmp_buf *pci_jump;
static _Thread_local char pci_msg[256];

static _Noreturn void pci_error_cb(char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    vsnprintf(pci_msg, sizeof pci_msg, msg, ap);
    va_end(ap);
    if (pci_jump)
        longjmp(*pci_jump, 1);
    gw_log(GW_LOG_ERR, "libpci: %s (outside a guarded call)", pci_msg);
    abort();
}

static void pci_warning_cb(char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    vsnprintf(pci_msg, sizeof pci_msg, msg, ap);
    va_end(ap);
}

static void pci_debug_cb(char *msg, ...) { (void)msg; }

static int sysfs_read(void *data, const char *path, size_t max, char **out, size_t *len)
{
    sysfs_host *h = data;
    _cleanup_close_ int fd = openat(h->rootfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s/%s: %s", h->root, path, strerror(errno));
    size_t cap = 4096, n = 0;
    _cleanup_free_ char *buf = gw_xcalloc(cap + 1, 1);
    for (;;) {
        if (n == cap) {
            if (cap >= max)
                return gw_error_set(-EFBIG, "%s/%s: larger than %zu bytes", h->root, path, max);
            cap = cap * 2 > max ? max : cap * 2;
            buf = gw_xrealloc(buf, cap + 1, 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return gw_error_set(-errno, "read %s/%s: %s", h->root, path, strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    *out = GW_TAKE(buf);
    return 0;
}

static int sysfs_write(void *data, const char *path, const void *buf, size_t len)
{
    sysfs_host *h = data;
    /* No O_CREAT: a missing attribute is an error, never a new file; no
     * O_TRUNC: sysfs attributes have no length, one write is the command. */
    _cleanup_close_ int fd = openat(h->rootfd, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "open %s/%s: %s", h->root, path, strerror(errno));
    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return gw_error_set(-errno, "write %s/%s: %s", h->root, path, strerror(errno));
    if ((size_t)n != len)
        return gw_error_set(-EIO, "write %s/%s: short write (%zd of %zu bytes)", h->root, path, n, len);
    return 0;
}

static int sysfs_readlink(void *data, const char *path, char **out)
{
    sysfs_host *h = data;
    char target[4096];
    ssize_t n = readlinkat(h->rootfd, path, target, sizeof target - 1);
    if (n < 0)
        return gw_error_set(-errno, "readlink %s/%s: %s", h->root, path, strerror(errno));
    target[n] = '\0';
    *out = gw_xstrdup(target);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sysfs_list(void *data, const char *path, char ***names, size_t *count)
{
    sysfs_host *h = data;
    int fd = openat(h->rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s/%s: %s", h->root, path, strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return gw_error_set(-e, "%s/%s: %s", h->root, path, strerror(e));
    }
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        v = gw_xrealloc(v, n + 1, sizeof *v);
        v[n++] = gw_xstrdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_names);
    *names = v;
    *count = n;
    return 0;
}

static int sysfs_exists(void *data, const char *path)
{
    sysfs_host *h = data;
    struct stat st;
    if (fstatat(h->rootfd, path, &st, 0) < 0)
        return gw_error_set(-errno, "%s/%s: %s", h->root, path, strerror(errno));
    return 0;
}

static int sysfs_read_config(void *data, const char *address, unsigned int offset, void *buf, size_t len)
{
    sysfs_host *h = data;
    unsigned dom, bus, dev, fn;
    if (sscanf(address, "%4x:%2x:%2x.%1u", &dom, &bus, &dev, &fn) != 4)
        return gw_error_set(-EINVAL, "config: bad address '%s'", address);
    /* Fail early with a clear message: libpci only warns on a missing file. */
    _cleanup_free_ char *cfg = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    struct stat st;
    if (fstatat(h->rootfd, cfg, &st, 0) < 0)
        return gw_error_set(-errno, "%s/%s: %s", h->root, cfg, strerror(errno));

    int rc = 0;
    jmp_buf jb;
    pthread_mutex_lock(&h->pci_lock);
    struct pci_dev *volatile pd = NULL;
    pci_jump = &jb;
    pci_msg[0] = '\0';
    if (setjmp(jb) == 0) {
        pd = pci_get_dev(h->pacc, (int)dom, (int)bus, (int)dev, (int)fn);
        if (!pd || !pci_read_block(pd, (int)offset, buf, (int)len))
            rc = gw_error_set(-EIO, "config %s: cannot read %zu bytes at 0x%x%s%s", address, len, offset,
                              pci_msg[0] ? ": " : "", pci_msg);
    } else {
        rc = gw_error_set(-EIO, "config %s: libpci: %s", address, pci_msg);
    }
    pci_jump = NULL;
    if (pd)
        pci_free_dev(pd);
    pthread_mutex_unlock(&h->pci_lock);
    return rc;
}

static void sysfs_destroy(void *data)
{
    sysfs_host *h = data;
    if (!h)
        return;
    if (h->pacc)
        pci_cleanup(h->pacc);
    pthread_mutex_destroy(&h->pci_lock);
    if (h->rootfd >= 0)
        close(h->rootfd);
    free(h->root);
    free(h);
}

static int init_libpci(sysfs_host *h, const char *sysfs_path)
{
    jmp_buf jb;
    pci_jump = &jb;
    if (setjmp(jb) != 0) {
        pci_jump = NULL;
        /* pci_access is in an unknown state after the jump: leak it rather
         * than free something half-initialised. */
        h->pacc = NULL;
        return -EIO;
    }
    h->pacc = pci_alloc();
    h->pacc->error = pci_error_cb;
    h->pacc->warning = pci_warning_cb;
    h->pacc->debug = pci_debug_cb;
    h->pacc->method = PCI_ACCESS_SYS_BUS_PCI;
    pci_set_param(h->pacc, "sysfs.path", (char *)sysfs_path);
    pci_init(h->pacc);
    pci_jump = NULL;
    return 0;
}

GW_EXTERN int gw_hostops_sysfs_new(gw_hostops **out, const char *root)
{
    if (!out)
        return gw_error_set(-EINVAL, "gw_hostops_sysfs_new: out is NULL");
    if (!root || !*root)
        root = "/";
    sysfs_host *h = gw_xcalloc(1, sizeof *h);
    h->rootfd = -1;
    pthread_mutex_init(&h->pci_lock, NULL);
    h->root = gw_xstrdup(root);
    size_t rl = strlen(h->root);
    while (rl > 1 && h->root[rl - 1] == '/')
        h->root[--rl] = '\0';
    h->rootfd = open(h->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (h->rootfd < 0) {
        int e = errno;
        sysfs_destroy(h);
        return gw_error_set(-e, "host root %s: %s", root, strerror(e));
    }
    struct stat st;
    if (fstatat(h->rootfd, "sys/bus/pci", &st, 0) < 0 || !S_ISDIR(st.st_mode)) {
        sysfs_destroy(h);
        return gw_error_set(-ENOENT, "host root %s: no sys/bus/pci directory", root);
    }

    _cleanup_free_ char *sysfs_path = gw_strdup_printf("%s/sys/bus/pci", strcmp(h->root, "/") ? h->root : "");
    if (init_libpci(h, sysfs_path) < 0) {
        sysfs_destroy(h);
        return gw_error_set(-EIO, "host root %s: libpci: %s", root, pci_msg);
    }

    static const char prefix[] = "sysfs:";
    _cleanup_free_ char *name = gw_strdup_printf("%s%s", prefix, h->root);
    gw_hostops_backend be = {
        .version = GW_HOSTOPS_BACKEND_VERSION,
        .name = name,
        .read = sysfs_read,
        .write = sysfs_write,
        .readlink = sysfs_readlink,
        .list = sysfs_list,
        .exists = sysfs_exists,
        .read_config = sysfs_read_config,
        .destroy = sysfs_destroy,
    };
    return gw_hostops_new(out, &be, h);
}
