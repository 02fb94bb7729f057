/* SPDX-License-Identifier: Apache-2.0 */
/* A small sysfs-shaped host tree written by a test, in the kernel's formats,
 * for cases the shared fixtures under tests/fixtures/hosts do not cover
 * (synthetic topologies, one broken attribute at a time). Header-only: each
 * test binary includes it. */
#ifndef GW_TEST_HOSTTREE_H
#define GW_TEST_HOSTTREE_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* snprintf that treats truncation as a test bug. */
#define HT_FMT(buf, ...) \
    do { \
        if (snprintf(buf, sizeof buf, __VA_ARGS__) >= (int)sizeof buf) \
            abort(); \
    } while (0)

typedef struct ht_dev {
    char addr[13];
    char path[PATH_MAX];     /* real directory under <root>/sys/devices */
    uint8_t cfg[4096];
    size_t cfg_len;
    int next_ext;            /* where the next extended cap goes */
    int last_ext;            /* previous extended cap header, 0 when none */
} ht_dev;

static void ht_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    HT_FMT(buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

static void ht_write(const char *dir, const char *name, const void *data, size_t len)
{
    char p[PATH_MAX];
    HT_FMT(p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        abort();
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void ht_printf(const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ht_printf(const char *dir, const char *name, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ht_write(dir, name, buf, (size_t)n);
}

/* Symlink at `linkpath` pointing at `target`, relative like sysfs's. */
static void ht_link(const char *target, const char *linkpath)
{
    char from[PATH_MAX], rel[PATH_MAX] = "";
    HT_FMT(from, "%s", linkpath);
    *strrchr(from, '/') = '\0';
    /* common prefix on '/' boundaries */
    size_t i = 0, cut = 0;
    while (from[i] && target[i] && from[i] == target[i]) {
        if (from[i] == '/')
            cut = i;
        i++;
    }
    if (!from[i] && (target[i] == '/' || !target[i]))
        cut = i;
    for (const char *p = from + cut; *p; p++)
        if (*p == '/')
            strcat(rel, "../");
    strcat(rel, target + cut + (target[cut] == '/' ? 1 : 0));
    if (symlink(rel, linkpath) < 0) {
        perror(linkpath);
        abort();
    }
}

static void ht_w16(ht_dev *d, int off, uint16_t v)
{
    d->cfg[off] = v & 0xff;
    d->cfg[off + 1] = v >> 8;
}

static void ht_w32(ht_dev *d, int off, uint32_t v)
{
    ht_w16(d, off, v & 0xffff);
    ht_w16(d, off + 2, v >> 16);
}

/* Config header, PCIe capability at 0x40 (type, DevCap, LnkCap, LnkSta). */
static void ht_config(ht_dev *d, uint16_t vid, uint16_t did, uint32_t class24, int hdr,
                      int port_type, uint32_t devcap, int cap_speed, int cap_width,
                      int sta_speed, int sta_width)
{
    memset(d->cfg, 0, sizeof d->cfg);
    d->cfg_len = 4096;
    ht_w16(d, 0x00, vid);
    ht_w16(d, 0x02, did);
    ht_w16(d, 0x06, 0x0010);            /* status: capability list */
    d->cfg[0x08] = 0xa1;                /* revision */
    d->cfg[0x09] = class24 & 0xff;
    d->cfg[0x0a] = (class24 >> 8) & 0xff;
    d->cfg[0x0b] = (class24 >> 16) & 0xff;
    d->cfg[0x0e] = (uint8_t)hdr;
    if ((hdr & 0x7f) == 0) {
        ht_w16(d, 0x2c, 0x10de);
        ht_w16(d, 0x2e, 0x1234);
    }
    d->cfg[0x34] = 0x40;
    d->cfg[0x40] = 0x10;                /* PCIe cap, last in the list */
    d->cfg[0x41] = 0x00;
    ht_w16(d, 0x42, (uint16_t)(0x0002 | port_type << 4));
    ht_w32(d, 0x44, devcap);
    ht_w32(d, 0x4c, (uint32_t)(cap_speed | cap_width << 4));
    ht_w16(d, 0x52, (uint16_t)(sta_speed | sta_width << 4));
    d->next_ext = 0x100;
    d->last_ext = 0;
}

/* Append an extended capability of `len` bytes; returns its offset. */
static int ht_ext(ht_dev *d, uint16_t id, int len)
{
    int at = d->next_ext;
    ht_w32(d, at, (uint32_t)id | 1u << 16);
    if (d->last_ext)
        ht_w32(d, d->last_ext, (uint32_t)(d->cfg[d->last_ext] | d->cfg[d->last_ext + 1] << 8) |
                                   1u << 16 | (uint32_t)at << 20);
    d->last_ext = at;
    d->next_ext = at + ((len + 3) & ~3);
    return at;
}

static void ht_acs(ht_dev *d, uint16_t cap, uint16_t ctrl)
{
    int at = ht_ext(d, 0x0d, 8);
    ht_w16(d, at + 4, cap);
    ht_w16(d, at + 6, ctrl);
}

static void ht_ats(ht_dev *d, bool enabled)
{
    int at = ht_ext(d, 0x0f, 8);
    ht_w16(d, at + 6, enabled ? 0x8000 : 0);
}

static void ht_dsn(ht_dev *d, uint64_t dsn)
{
    int at = ht_ext(d, 0x03, 12);
    ht_w32(d, at + 4, (uint32_t)dsn);
    ht_w32(d, at + 8, (uint32_t)(dsn >> 32));
}

static void ht_aer(ht_dev *d) { ht_ext(d, 0x01, 0x48); }

static const char *ht_speed(int code)
{
    static const char *s[] = { "Unknown", "2.5 GT/s PCIe", "5.0 GT/s PCIe", "8.0 GT/s PCIe",
                               "16.0 GT/s PCIe", "32.0 GT/s PCIe" };
    return code >= 0 && code <= 5 ? s[code] : "Unknown";
}

/* Place a device: under `parent` (NULL: on root bus pci<dom>:<bus>), write
 * its attributes and its bus/pci/devices link. */
static void ht_place(const char *root, ht_dev *d, const ht_dev *parent)
{
    if (parent)
        HT_FMT(d->path, "%s/%s", parent->path, d->addr);
    else
        HT_FMT(d->path, "%s/sys/devices/pci%.7s/%s", root, d->addr, d->addr);
    ht_mkdirs(d->path);
    const uint8_t *c = d->cfg;
    ht_printf(d->path, "vendor", "0x%02x%02x\n", c[1], c[0]);
    ht_printf(d->path, "device", "0x%02x%02x\n", c[3], c[2]);
    ht_printf(d->path, "class", "0x%02x%02x%02x\n", c[0xb], c[0xa], c[9]);
    ht_printf(d->path, "revision", "0x%02x\n", c[8]);
    ht_printf(d->path, "subsystem_vendor", "0x%02x%02x\n", c[0x2d], c[0x2c]);
    ht_printf(d->path, "subsystem_device", "0x%02x%02x\n", c[0x2f], c[0x2e]);
    ht_write(d->path, "config", d->cfg, d->cfg_len);
    ht_printf(d->path, "irq", "0\n");
    int cap_speed = c[0x4c] & 0xf, cap_width = (c[0x4c] | c[0x4d] << 8) >> 4 & 0x3f;
    int sta_speed = c[0x52] & 0xf, sta_width = (c[0x52] | c[0x53] << 8) >> 4 & 0x3f;
    ht_printf(d->path, "max_link_speed", "%s\n", ht_speed(cap_speed));
    ht_printf(d->path, "max_link_width", "%d\n", cap_width);
    ht_printf(d->path, "current_link_speed", "%s\n", ht_speed(sta_speed));
    ht_printf(d->path, "current_link_width", "%d\n", sta_width);
    ht_printf(d->path, "numa_node", "-1\n");
    ht_write(d->path, "reset", "", 0);
    ht_write(d->path, "remove", "", 0);
    char wo[PATH_MAX];
    HT_FMT(wo, "%s/reset", d->path);
    chmod(wo, 0200);
    HT_FMT(wo, "%s/remove", d->path);
    chmod(wo, 0220);
    char devs[PATH_MAX], link[PATH_MAX];
    HT_FMT(devs, "%s/sys/bus/pci/devices", root);
    ht_mkdirs(devs);
    HT_FMT(link, "%s/%s", devs, d->addr);
    ht_link(d->path, link);
}

static void ht_driver(const char *root, const ht_dev *d, const char *driver)
{
    char drv[PATH_MAX], link[PATH_MAX];
    HT_FMT(drv, "%s/sys/bus/pci/drivers/%s", root, driver);
    ht_mkdirs(drv);
    HT_FMT(link, "%s/driver", d->path);
    ht_link(drv, link);
    HT_FMT(link, "%s/%s", drv, d->addr);
    ht_link(d->path, link);
}

static void ht_group(const char *root, const ht_dev *d, const char *group)
{
    char g[PATH_MAX], link[PATH_MAX];
    HT_FMT(g, "%s/sys/kernel/iommu_groups/%s/devices", root, group);
    ht_mkdirs(g);
    HT_FMT(link, "%s/%s", g, d->addr);
    ht_link(d->path, link);
    *strrchr(g, '/') = '\0';
    HT_FMT(link, "%s/iommu_group", d->path);
    ht_link(g, link);
}

static char *ht_mkroot(void)
{
    char *dir = strdup("/tmp/gw-hosttree-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    char p[PATH_MAX];
    HT_FMT(p, "%s/sys/bus/pci/devices", dir);
    ht_mkdirs(p);
    HT_FMT(p, "%s/sys/kernel/iommu_groups", dir);
    ht_mkdirs(p);
    return dir;
}

static void ht_rmroot(char *dir)
{
    char cmd[PATH_MAX + 16];
    if (dir && !strncmp(dir, "/tmp/gw-hosttree-", 17)) {
        HT_FMT(cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    free(dir);
}

#endif
