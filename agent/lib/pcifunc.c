/* SPDX-License-Identifier: Apache-2.0 */
#include "pcifunc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "isolation.h"
#include "util.h"

/* libpci opens "<root>/sys/..." paths itself, following whatever symlinks
 * they hold: it cannot be handed the root's descriptor. So before libpci
 * reads a file of a function, the file is checked to resolve below the root
 * without any symlink leaving it (RESOLVE_BENEATH: then libpci's plain open
 * reaches the same file); one that leaves is never given to libpci, and the
 * function's fields it would have filled are unknown, with this error. A
 * tree rewritten between the check and libpci's open is not covered: on a
 * live host (root /) there is no outside, and a test tree is not written
 * while it is scanned. Everything the scan reads itself goes through the
 * root's descriptor (gw_root_read_file() and friends). */
/* The function's directory, resolved beneath the root (gw_func_read() opens
 * it once). A name resolved beneath it is beneath the root too, in one short
 * lookup instead of a walk of the whole sys/bus/pci/devices/<address>/...
 * path from the root; only a name that leaves the directory (EXDEV here),
 * or a function whose directory could not be opened (dfd < 0), is checked
 * again from the root, which decides. Same answers, a fraction of the path
 * walks on a host of hundreds of functions. */
static int beneath(const gw_root *r, const gw_func *f, int dfd, const char *name)
{
    if (dfd >= 0) {
        /* A plain entry (no link) of the directory needs no resolution. */
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
            return 0;
        int rc = gw_root_beneath(dfd, name);
        if (rc != -EXDEV)
            return rc;
    }
    _cleanup_free_ char *rel = gw_strdup_printf("%s/%s", f->rel, name);
    return gw_root_beneath(r->fd, rel);
}

static int libpci_may_read(const gw_root *r, const gw_func *f, int dfd, const char *what,
                           const char *const *names)
{
    for (; *names; names++)
        if (beneath(r, f, dfd, *names) == -EXDEV)
            return gw_error_set(-EXDEV, "%s: %s/%s: %s", what, f->dir, *names, gw_root_strerror(EXDEV));
    return 0;
}

static int fill(const gw_root *r, gw_func *f, int dfd, unsigned int flags, const char *what,
                const char *const *names)
{
    int rc = libpci_may_read(r, f, dfd, what, names);
    return rc < 0 ? rc : gw_pci_fill(f->pdev, flags, what);
}

/* config opened beneath the function's directory is the file the root's
 * RESOLVE_IN_ROOT open would reach (no absolute link, no way out on the
 * way); anything else takes the root's two checks. */
static int open_config(const gw_root *r, const gw_func *f, int dfd)
{
    if (dfd >= 0) {
        int fd = gw_root_open_beneath(dfd, "config", O_RDONLY);
        if (fd != -EXDEV)
            return fd;
    }
    _cleanup_free_ char *path = gw_strdup_printf("%s/config", f->rel);
    /* Also checked as libpci would open it: the capability walk reads the
     * file itself past the bytes cached here. */
    if (gw_root_beneath(r->fd, path) == -EXDEV)
        return -EXDEV;
    return gw_openat_root(r->fd, path, O_RDONLY);
}

static int read_config(const gw_root *r, const gw_func *f, int dfd, uint8_t **out, size_t *len)
{
    _cleanup_close_ int fd = open_config(r, f, dfd);
    if (fd < 0)
        return fd;
    _cleanup_free_ uint8_t *buf = gw_xcalloc(GW_CONFIG_MAX, 1);
    size_t got = 0;
    while (got < GW_CONFIG_MAX) {
        ssize_t n = pread(fd, buf + got, GW_CONFIG_MAX - got, (off_t)got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    *out = GW_TAKE(buf);
    *len = got;
    return 0;
}

static uint16_t cfg16(const gw_func *f, size_t off)
{
    return (uint16_t)(f->config[off] | f->config[off + 1] << 8);
}

/* Config space as the kernel would hand it to a root reader: 256 bytes
 * (conventional) or 4096 (PCIe). Less means a truncated file or a reader
 * without CAP_SYS_ADMIN (the kernel then returns 64 bytes). */
static void check_config(const gw_root *root, gw_func *f, int dfd)
{
    int r = read_config(root, f, dfd, &f->config, &f->config_len);
    if (r < 0) {
        gw_strv_pushf(&f->errors, "config: cannot read %s/config: %s", f->dir, gw_root_strerror(r));
        return;
    }
    if (f->config_len >= 4 && f->config[0] == 0xff && f->config[1] == 0xff &&
        f->config[2] == 0xff && f->config[3] == 0xff) {
        f->all_ones = true;
        gw_strv_pushf(&f->errors, "config space reads all-ones (vendor ffff): the device "
                                  "fell off the bus (or is powered off); nothing from config "
                                  "space can be trusted");
        return;
    }
    if (f->config_len < 64) {
        gw_strv_pushf(&f->errors, "config: truncated: %zu bytes, less than the 64-byte header",
                      f->config_len);
        return;
    }
    f->config_usable = true;
    f->hdrtype = f->config[PCI_HEADER_TYPE] & 0x7f;
    if (f->config_len < 256)
        gw_strv_pushf(&f->errors, "config: only %zu bytes readable (256 expected; the kernel "
                                  "shows 64 to readers without CAP_SYS_ADMIN): capabilities unknown",
                      f->config_len);
    else if (f->config_len > 256 && f->config_len < GW_CONFIG_MAX)
        gw_strv_pushf(&f->errors, "config: truncated: %zu bytes (256 or 4096 expected)",
                      f->config_len);
    /* libpci's capability walker reads these bytes instead of the file. */
    pci_setup_cache(f->pdev, f->config, (int)f->config_len);
}

static void read_ids(const gw_root *r, gw_func *f, int dfd)
{
    static const char *const ident[] = { "vendor", "device", NULL };
    static const char *const class[] = { "class", NULL };
    static const char *const class_ext[] = { "class", "revision", NULL };
    static const char *const subsys[] = { "subsystem_vendor", "subsystem_device", NULL };
    if (fill(r, f, dfd, PCI_FILL_IDENT, "vendor/device", ident) == 0) {
        f->ids_known = true;
        f->vendor_id = f->pdev->vendor_id;
        f->device_id = f->pdev->device_id;
    } else if (f->config_usable) {
        f->ids_known = true;
        f->vendor_id = cfg16(f, PCI_VENDOR_ID);
        f->device_id = cfg16(f, PCI_DEVICE_ID);
        gw_strv_pushf(&f->errors, "%s; ids taken from config space", gw_error_message());
    } else {
        gw_strv_pushf(&f->errors, "%s; ids unknown", gw_error_message());
    }
    if (f->ids_known && f->config_usable && cfg16(f, PCI_VENDOR_ID) != f->vendor_id)
        gw_strv_pushf(&f->errors, "vendor: sysfs says %04x but config space says %04x",
                      f->vendor_id, cfg16(f, PCI_VENDOR_ID));

    if (fill(r, f, dfd, PCI_FILL_CLASS, "class", class) == 0) {
        f->class_known = true;
        f->class_code = f->pdev->device_class;
    } else if (f->config_usable) {
        f->class_known = true;
        f->class_code = cfg16(f, PCI_CLASS_DEVICE);
        gw_strv_pushf(&f->errors, "%s; class taken from config space", gw_error_message());
    } else {
        gw_strv_pushf(&f->errors, "%s; class unknown", gw_error_message());
    }
    /* Optional attributes: libpci falls back to config space by itself. */
    if (f->class_known && fill(r, f, dfd, PCI_FILL_CLASS_EXT, "revision", class_ext) == 0)
        f->revision = f->pdev->rev_id;
    else if (f->config_usable)
        f->revision = f->config[PCI_REVISION_ID];
    if (fill(r, f, dfd, PCI_FILL_SUBSYS, "subsystem", subsys) == 0 &&
        (f->pdev->known_fields & PCI_FILL_SUBSYS)) {
        f->subsystem_vendor_id = f->pdev->subsys_vendor_id;
        f->subsystem_device_id = f->pdev->subsys_id;
    }
    if (f->hdrtype < 0 && f->class_known)
        f->hdrtype = (f->class_code == 0x0604 || f->class_code == 0x0609) ? 1 : 0;
}

static void caps_walk(void *arg)
{
    gw_func *f = arg;
    struct pci_dev *d = f->pdev;
    pci_fill_info(d, PCI_FILL_CAPS | PCI_FILL_EXT_CAPS);
    struct pci_cap *c = pci_find_cap(d, PCI_CAP_ID_EXP, PCI_CAP_NORMAL);
    if (!c)
        return;
    f->pcie = true;
    uint16_t flags = pci_read_word(d, (int)c->addr + PCI_EXP_FLAGS);
    f->port_type = (flags & PCI_EXP_FLAGS_TYPE) >> 4;
    if ((flags & PCI_EXP_FLAGS_VERS) > 1)
        f->lnkcap2 = pci_read_long(d, (int)c->addr + PCI_EXP_LNKCAP2);
    f->devcap = pci_read_long(d, (int)c->addr + PCI_EXP_DEVCAP);
    f->lnkcap = pci_read_long(d, (int)c->addr + PCI_EXP_LNKCAP);
    f->lnksta = pci_read_word(d, (int)c->addr + PCI_EXP_LNKSTA);
    /* Extended capabilities start at 0x100; libpci finds none in a
     * 256-byte config, which means "unknown", not "absent". */
    f->ext_known = f->config_len >= 0x104;
    f->acs.known = f->ext_known;
    if (!f->ext_known)
        return;
    if ((c = pci_find_cap(d, PCI_EXT_CAP_ID_ACS, PCI_CAP_EXTENDED))) {
        f->acs.present = true;
        f->acs.cap = pci_read_word(d, (int)c->addr + PCI_ACS_CAP);
        f->acs.ctrl = pci_read_word(d, (int)c->addr + PCI_ACS_CTRL);
        f->acs.sv = gw_acs_flag_enabled(f->acs.cap, f->acs.ctrl, PCI_ACS_CTRL_VALID);
        f->acs.rr = gw_acs_flag_enabled(f->acs.cap, f->acs.ctrl, PCI_ACS_CTRL_REQ_RED);
        f->acs.cr = gw_acs_flag_enabled(f->acs.cap, f->acs.ctrl, PCI_ACS_CTRL_CMPLT_RED);
        f->acs.uf = gw_acs_flag_enabled(f->acs.cap, f->acs.ctrl, PCI_ACS_CTRL_FORWARD);
    }
    if ((c = pci_find_cap(d, PCI_EXT_CAP_ID_ATS, PCI_CAP_EXTENDED))) {
        f->ats_present = true;
        f->ats_ctrl = pci_read_word(d, (int)c->addr + PCI_ATS_CTRL);
        f->ats_enabled = f->ats_ctrl & PCI_ATS_CTRL_ENABLE;
    }
    f->aer_present = pci_find_cap(d, PCI_EXT_CAP_ID_AER, PCI_CAP_EXTENDED) != NULL;
    if ((c = pci_find_cap(d, PCI_EXT_CAP_ID_DSN, PCI_CAP_EXTENDED))) {
        f->dsn_present = true;
        uint64_t lo = pci_read_long(d, (int)c->addr + 4);
        uint64_t hi = pci_read_long(d, (int)c->addr + 8);
        f->dsn = hi << 32 | lo;
    }
}

static void read_caps(gw_func *f)
{
    if (!f->config_usable)
        return;
    if (gw_pci_guard("capabilities", caps_walk, f) < 0)
        gw_strv_pushf(&f->errors, "%s", gw_error_message());
}

/* libpci resolves driver and iommu_group with realpath() and reports a
 * dangling link as absent; a dangling link is a broken tree, so say so. */
static void check_dangling(const gw_root *r, gw_func *f, const char *name, bool *dangling)
{
    _cleanup_free_ char *rel = gw_strdup_printf("%s/%s", f->rel, name);
    _cleanup_free_ char *target = NULL;
    if (gw_root_readlink(r->fd, rel, &target) < 0)
        return;     /* absent, or not a link */
    if (dangling)
        *dangling = true;
    gw_strv_pushf(&f->errors, "%s: dangling link to '%s' (target missing)", name, target);
}

/* A driver or iommu_group link that leads out of the root is not followed
 * (by libpci either): the function reads as having none, and says why. For
 * the group that counts as dangling: its isolation cannot be judged. */
static bool link_escapes(const gw_root *r, gw_func *f, const char *name, bool *dangling)
{
    /* From the root: these links always leave the function's directory. */
    _cleanup_free_ char *rel = gw_strdup_printf("%s/%s", f->rel, name);
    if (gw_root_beneath(r->fd, rel) != -EXDEV)
        return false;
    _cleanup_free_ char *target = NULL;
    (void)gw_root_readlink(r->fd, rel, &target);
    if (dangling)
        *dangling = true;
    gw_strv_pushf(&f->errors, "%s: link to '%s': %s", name, target ? target : "?", gw_root_strerror(EXDEV));
    return true;
}

/* libpci's sysfs_deref_link() is the last name of realpath("<dir>/<link
 * target>"): the file the root-confined resolution reaches too (a link
 * leaving the root was refused before), in four system calls instead of
 * glibc realpath()'s readlink of every prefix of a deep path. NULL when it
 * does not resolve, or resolves to the root itself: libpci is asked then. */
static char *link_base(const gw_root *r, const gw_func *f, const char *name)
{
    _cleanup_free_ char *rel = gw_strdup_printf("%s/%s", f->rel, name);
    _cleanup_free_ char *real = NULL;
    if (gw_root_realpath(r->fd, rel, &real) < 0 || !*real)
        return NULL;
    const char *base = strrchr(real, '/');
    return gw_xstrdup(base ? base + 1 : real);
}

static void read_links(const gw_root *r, gw_func *f)
{
    bool driver_out = link_escapes(r, f, "driver", NULL);
    bool group_out = link_escapes(r, f, "iommu_group", &f->iommu_group_dangling);
    unsigned int flags = 0;
    if (!driver_out && !(f->driver = link_base(r, f, "driver")))
        flags |= PCI_FILL_DRIVER;
    if (!group_out && !(f->iommu_group = link_base(r, f, "iommu_group")))
        flags |= PCI_FILL_IOMMU_GROUP;
    /* Not PCI_FILL_PARENT: libpci 3.9.0 leaks both realpath() results it
     * makes per device; topology.c resolves the parent from the same nested
     * layout itself. */
    if (!flags)
        return;
    if (gw_pci_fill(f->pdev, flags, "links") < 0) {
        gw_strv_pushf(&f->errors, "%s", gw_error_message());
        return;
    }
    if (flags & PCI_FILL_DRIVER) {
        f->driver = gw_xstrdup(pci_get_string_property(f->pdev, PCI_FILL_DRIVER));
        if (!f->driver)
            check_dangling(r, f, "driver", NULL);
    }
    if (flags & PCI_FILL_IOMMU_GROUP) {
        f->iommu_group = gw_xstrdup(pci_get_string_property(f->pdev, PCI_FILL_IOMMU_GROUP));
        if (!f->iommu_group)
            check_dangling(r, f, "iommu_group", &f->iommu_group_dangling);
    }
}

void gw_func_read(const gw_root *r, gw_func *f)
{
    f->rel = gw_strdup_printf("sys/bus/pci/devices/%s", f->address);
    f->dir = gw_root_path(r, f->rel);
    f->hdrtype = -1;
    f->port_type = GW_PORT_NONE;
    /* devices/<address> itself leading out of the root (to the real /sys):
     * nothing of it is read, by us or by libpci. */
    _cleanup_close_ int dfd = gw_root_open_beneath(r->fd, f->rel, O_PATH | O_DIRECTORY);
    if (dfd == -EXDEV) {
        gw_strv_pushf(&f->errors, "%s: %s: nothing of this function read", f->dir, gw_root_strerror(EXDEV));
        return;
    }
    check_config(r, f, dfd);
    read_ids(r, f, dfd);
    read_caps(f);
    read_links(r, f);
}

void gw_func_clear(gw_func *f)
{
    free(f->dir);
    free(f->rel);
    free(f->config);
    free(f->driver);
    free(f->iommu_group);
    gw_strv_free(&f->errors);
    memset(f, 0, sizeof *f);
}

bool gw_func_is_gpu(const gw_func *f)
{
    return f->class_known && (f->class_code >> 8) == 0x03;
}

bool gw_func_is_bridge(const gw_func *f)
{
    return f->hdrtype == 1;
}
