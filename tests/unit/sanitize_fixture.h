/* SPDX-License-Identifier: Apache-2.0 */
/* Test host trees for the clean-up tests: a scratch tree in the kernel's
 * sysfs formats (config space with real capability chains, driver and
 * iommu_group links, link/AER/resource attributes, a ROM image), written to
 * a temporary directory, plus a byte-for-byte snapshot of a tree.
 *
 * Topology of fx_std(n): root port 0000:00:01.0 -> switch upstream port
 * 0000:01:00.0 -> downstream ports 0000:02:0k.0 -> GPU 0000:(3+k):00.0
 * (10de:2230, subsystem 10de:1459, class 0300) and its HDA function
 * 0000:(3+k):00.1 (10de:1aef, class 0403), both in IOMMU group 10+k and on
 * vfio-pci, driver_override unset. Header-only: each test binary includes it. */
#ifndef GW_SANITIZE_FIXTURE_H
#define GW_SANITIZE_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gpuwarden/attach.h>

int gw_error_set(int err, const char *fmt, ...);

/* Paths here are short and bounded by the fixture; gcc cannot see that. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define FX_MAX_DEVS 64
#define FX_ROM_SIZE 65536

typedef struct fx_dev {
    char bdf[13];
    char parent[13];            /* "" = on the root bus */
    uint16_t vendor, device, svid, sdid;
    uint8_t class_base, class_sub;
    bool bridge, multifunction;
    int port_type;              /* -1: no PCIe capability */
    bool flr;
    int acs_ctrl;               /* -1: no ACS capability */
    uint16_t acs_cap;
    int ats_ctrl;               /* -1: no ATS capability */
    bool aer;
    char driver[32];            /* "" = unbound */
    char group[8];              /* "" = no IOMMU group */
    int link_width, link_max_width;     /* 0 = no link attributes */
    char link_speed[24], link_max_speed[24];
    char reset_method[32];      /* "-" = no reset_method attribute */
    bool reset_attr;
    size_t rom_size;            /* 0 = no rom attribute */
    long aer_fatal, aer_nonfatal;   /* -1 = no aer_dev_* attributes */
    uint64_t bar1_size;         /* the big BAR */
} fx_dev;

typedef struct fx_host {
    char root[64];
    fx_dev dev[FX_MAX_DEVS];
    size_t n;
} fx_host;

static inline fx_dev *fx_find(fx_host *h, const char *bdf)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->dev[i].bdf, bdf))
            return &h->dev[i];
    fprintf(stderr, "fixture: no device %s\n", bdf);
    abort();
}

static inline fx_dev *fx_add(fx_host *h, const char *bdf, const char *parent)
{
    fx_dev *d = &h->dev[h->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->bdf, sizeof d->bdf, "%s", bdf);
    snprintf(d->parent, sizeof d->parent, "%s", parent ? parent : "");
    d->port_type = -1;
    d->acs_ctrl = -1;
    d->ats_ctrl = -1;
    d->aer_fatal = d->aer_nonfatal = -1;
    snprintf(d->reset_method, sizeof d->reset_method, "-");
    return d;
}

static inline void fx_bridge(fx_dev *d, int port_type, bool acs)
{
    d->vendor = 0x10b5;
    d->device = 0x8747;
    d->class_base = 0x06;
    d->class_sub = 0x04;
    d->bridge = true;
    d->port_type = port_type;
    d->aer = true;
    d->aer_fatal = d->aer_nonfatal = 0;
    snprintf(d->driver, sizeof d->driver, "pcieport");
    d->link_width = d->link_max_width = 16;
    snprintf(d->link_speed, sizeof d->link_speed, "8.0 GT/s PCIe");
    snprintf(d->link_max_speed, sizeof d->link_max_speed, "8.0 GT/s PCIe");
    if (acs && port_type != 5) {
        d->acs_cap = 0x001f;    /* SV TB RR CR UF */
        d->acs_ctrl = 0x001d;   /* SV RR CR UF on, as pci_std_enable_acs leaves it */
    }
}

/* The standard host: n GPUs (1..8) behind one switch. */
static inline void fx_std(fx_host *h, int n)
{
    memset(h, 0, sizeof *h);
    fx_bridge(fx_add(h, "0000:00:01.0", NULL), 4, true);
    fx_dev *rp = fx_find(h, "0000:00:01.0");
    rp->vendor = 0x8086;
    rp->device = 0x2030;
    fx_bridge(fx_add(h, "0000:01:00.0", "0000:00:01.0"), 5, true);
    for (int k = 0; k < n; k++) {
        char ds[13], gpu[13], hda[13], grp[8];
        snprintf(ds, sizeof ds, "0000:02:%02x.0", k);
        snprintf(gpu, sizeof gpu, "0000:%02x:00.0", 3 + k);
        snprintf(hda, sizeof hda, "0000:%02x:00.1", 3 + k);
        snprintf(grp, sizeof grp, "%d", 10 + k);
        fx_bridge(fx_add(h, ds, "0000:01:00.0"), 6, true);

        fx_dev *g = fx_add(h, gpu, ds);
        g->vendor = 0x10de;
        g->device = 0x2230;
        g->svid = 0x10de;
        g->sdid = 0x1459;
        g->class_base = 0x03;
        g->class_sub = 0x00;
        g->multifunction = true;
        g->port_type = 0;
        g->flr = true;
        g->ats_ctrl = 0x0000;
        g->aer = true;
        g->aer_fatal = g->aer_nonfatal = 0;
        snprintf(g->driver, sizeof g->driver, "vfio-pci");
        snprintf(g->group, sizeof g->group, "%s", grp);
        g->link_width = g->link_max_width = 16;
        snprintf(g->link_speed, sizeof g->link_speed, "16.0 GT/s PCIe");
        snprintf(g->link_max_speed, sizeof g->link_max_speed, "16.0 GT/s PCIe");
        snprintf(g->reset_method, sizeof g->reset_method, "flr");
        g->reset_attr = true;
        g->rom_size = FX_ROM_SIZE;
        g->bar1_size = 256ull << 20;

        fx_dev *a = fx_add(h, hda, ds);
        a->vendor = 0x10de;
        a->device = 0x1aef;
        a->svid = 0x10de;
        a->sdid = 0x1459;
        a->class_base = 0x04;
        a->class_sub = 0x03;
        a->multifunction = true;
        a->port_type = 0;
        snprintf(a->driver, sizeof a->driver, "vfio-pci");
        snprintf(a->group, sizeof a->group, "%s", grp);
    }
}

static inline void fx_mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

static inline void fx_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        abort();
    }
    if (len)
        fwrite(data, 1, len, f);
    fclose(f);
}

static inline void fx_write_text(const char *dir, const char *name, const char *text)
{
    fx_write_file(dir, name, text, strlen(text));
}

static inline void fx_symlink(const char *target, const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    if (symlink(target, p) < 0) {
        perror(p);
        abort();
    }
}

/* Relative path of a device directory from the root: sys/devices/pci0000:00/.../bdf */
static inline void fx_devdir(fx_host *h, const fx_dev *d, char *out, size_t n)
{
    if (!d->parent[0]) {
        snprintf(out, n, "sys/devices/pci%.4s:%.2s/%s", d->bdf, d->bdf + 5, d->bdf);
        return;
    }
    char up[1024];
    fx_devdir(h, fx_find(h, d->parent), up, sizeof up);
    snprintf(out, n, "%s/%s", up, d->bdf);
}

static inline int fx_depth(const char *rel)
{
    int n = 1;
    for (const char *p = rel; *p; p++)
        n += *p == '/';
    return n;
}

static inline void fx_ups(char *out, size_t n, int count)
{
    out[0] = '\0';
    for (int i = 0; i < count; i++)
        strncat(out, "../", n - strlen(out) - 1);
}

/* The fixture's ROM image: one legacy image filling the attribute, as the
 * kernel's pci_get_rom_size() wants it (55 AA; pointer at 0x18 to a "PCIR"
 * structure with the ids, the length in 512-byte units and the last-image
 * flag), the rest a deterministic pattern per device. Without the PCIR
 * structure the kernel (and the simulated backend) refuses the read (EIO). */
static inline void fx_rom_bytes(const fx_dev *d, unsigned char *buf, size_t n)
{
    uint32_t x = 0x12345678u ^ d->device ^ ((uint32_t)d->sdid << 16);
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    buf[0] = 0x55;
    buf[1] = 0xaa;
    buf[2] = (unsigned char)(n / 512);
    buf[0x18] = 0x40;
    buf[0x19] = 0x00;
    memcpy(buf + 0x40, "PCIR", 4);
    buf[0x44] = (unsigned char)d->vendor;
    buf[0x45] = (unsigned char)(d->vendor >> 8);
    buf[0x46] = (unsigned char)d->device;
    buf[0x47] = (unsigned char)(d->device >> 8);
    buf[0x50] = (unsigned char)(n / 512);
    buf[0x51] = (unsigned char)(n / 512 >> 8);
    buf[0x55] = 0x80;       /* last image */
}

static inline void fx_sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int l = 0;
    EVP_Digest(buf, len, md, &l, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static inline void fx_put16(uint8_t *c, unsigned off, uint16_t v)
{
    c[off] = (uint8_t)v;
    c[off + 1] = (uint8_t)(v >> 8);
}

static inline void fx_put32(uint8_t *c, unsigned off, uint32_t v)
{
    fx_put16(c, off, (uint16_t)v);
    fx_put16(c, off + 2, (uint16_t)(v >> 16));
}

/* The Link Speeds code of "16.0 GT/s PCIe" (1 = 2.5 GT/s ... 6 = 64 GT/s). */
static inline unsigned fx_speed_code(const char *text, unsigned dflt)
{
    static const double gts[] = { 2.5, 5.0, 8.0, 16.0, 32.0, 64.0 };
    double v = text && *text ? strtod(text, NULL) : 0;
    for (unsigned i = 0; i < sizeof gts / sizeof gts[0]; i++)
        if (v > gts[i] - 0.01 && v < gts[i] + 0.01)
            return i + 1;
    return dflt;
}

/* The BAR registers of what fx_resource_text() says the kernel assigned:
 * BAR0 32-bit memory, BAR1 64-bit prefetchable (BAR1 + BAR2). */
static inline void fx_bar_registers(const fx_dev *d, uint8_t c[4096])
{
    if (d->bridge)
        return;
    fx_put32(c, 0x10, 0xf0000000u);
    if (d->bar1_size) {
        uint64_t a = 0x38000000000ull;
        fx_put32(c, 0x14, (uint32_t)a | 0xc);
        fx_put32(c, 0x18, (uint32_t)(a >> 32));
    }
}

static inline void fx_config(const fx_dev *d, uint8_t c[4096])
{
    memset(c, 0, 4096);
    fx_put16(c, 0x00, d->vendor);
    fx_put16(c, 0x02, d->device);
    fx_put16(c, 0x04, 0x0406);
    fx_put16(c, 0x06, 0x0010);          /* capability list */
    c[0x08] = 0xa1;
    c[0x0a] = d->class_sub;
    c[0x0b] = d->class_base;
    c[0x0e] = (uint8_t)((d->bridge ? 1 : 0) | (d->multifunction ? 0x80 : 0));
    if (!d->bridge) {
        fx_put16(c, 0x2c, d->svid);
        fx_put16(c, 0x2e, d->sdid);
    }
    fx_bar_registers(d, c);
    c[0x34] = 0x60;
    /* Power management at 0x60 -> PCIe at 0x78 (when present). */
    c[0x60] = 0x01;
    c[0x61] = d->port_type >= 0 ? 0x78 : 0x00;
    fx_put16(c, 0x62, 0x0003);
    if (d->port_type >= 0) {
        unsigned e = 0x78;
        c[e] = 0x10;
        c[e + 1] = 0x00;
        fx_put16(c, e + 2, (uint16_t)(0x0002 | (d->port_type << 4)));
        fx_put32(c, e + 4, d->flr ? (1u << 28) : 0);
        int w = d->link_max_width ? d->link_max_width : 16;
        fx_put32(c, e + 0x0c, (uint32_t)(fx_speed_code(d->link_max_speed, 4) | (unsigned)(w << 4)));
        fx_put16(c, e + 0x12,
                 (uint16_t)(fx_speed_code(d->link_speed, 1) | (unsigned)((d->link_width ? d->link_width : w) << 4)));
    }
    /* Extended capabilities from 0x100: AER, ACS, ATS as configured. */
    struct { uint16_t id; uint8_t ver; unsigned size; } caps[3];
    int nc = 0;
    if (d->aer)
        caps[nc++] = (typeof(caps[0])){ 0x0001, 2, 0x48 };
    if (d->acs_ctrl >= 0)
        caps[nc++] = (typeof(caps[0])){ 0x000d, 1, 0x08 };
    if (d->ats_ctrl >= 0)
        caps[nc++] = (typeof(caps[0])){ 0x000f, 1, 0x08 };
    unsigned pos = 0x100;
    for (int i = 0; i < nc; i++) {
        unsigned next = i + 1 < nc ? pos + 0x50 : 0;
        fx_put32(c, pos, (uint32_t)caps[i].id | (uint32_t)caps[i].ver << 16 | (uint32_t)next << 20);
        if (caps[i].id == 0x000d) {
            fx_put16(c, pos + 4, d->acs_cap);
            fx_put16(c, pos + 6, (uint16_t)d->acs_ctrl);
        } else if (caps[i].id == 0x000f) {
            fx_put16(c, pos + 4, 0x0020);
            fx_put16(c, pos + 6, (uint16_t)d->ats_ctrl);
        }
        pos += 0x50;
    }
}

static inline char *fx_aer_text(const char *kind, long total)
{
    static const char *const fatal_names[] = { "Undefined", "DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt",
                                               "UnxCmplt", "RxOF", "MalfTLP", "ECRC", "UnsupReq", "ACSViol",
                                               "UncorrIntErr", "BlockedTLP", "AtomicOpBlocked", "TLPBlockedErr",
                                               "PoisonTLPBlocked" };
    size_t cap = 1024, len = 0;
    char *s = calloc(cap, 1);
    for (size_t i = 0; i < sizeof fatal_names / sizeof fatal_names[0]; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s %ld\n", fatal_names[i],
                                !strcmp(fatal_names[i], "SDES") ? total : 0);
    snprintf(s + len, cap - len, "TOTAL_ERR_%s %ld\n", strcmp(kind, "fatal") ? "NONFATAL" : "FATAL", total);
    return s;
}

static inline char *fx_resource_text(const fx_dev *d)
{
    char *s = calloc(2048, 1);
    size_t len = 0;
    for (int i = 0; i < 13; i++) {
        unsigned long long start = 0, end = 0, flags = 0;
        if (!d->bridge && i == 0) {
            start = 0xf0000000ull;
            end = start + (16ull << 20) - 1;
            flags = 0x40200;
        } else if (!d->bridge && i == 1 && d->bar1_size) {
            start = 0x38000000000ull;
            end = start + d->bar1_size - 1;
            flags = 0x14220c;
        } else if (!d->bridge && i == 6 && d->rom_size) {
            start = 0xf1000000ull;
            end = start + 0x80000 - 1;
            flags = 0x46200;
        }
        len += (size_t)snprintf(s + len, 2048 - len, "0x%016llx 0x%016llx 0x%016llx\n", start, end, flags);
    }
    return s;
}

static inline void fx_write_dev(fx_host *h, const fx_dev *d)
{
    char rel[1024], dir[1200], txt[256], up[256];
    fx_devdir(h, d, rel, sizeof rel);
    snprintf(dir, sizeof dir, "%s/%s", h->root, rel);
    fx_mkdirs(dir);
    uint8_t cfg[4096];
    fx_config(d, cfg);
    fx_write_file(dir, "config", cfg, sizeof cfg);
    snprintf(txt, sizeof txt, "0x%04x\n", d->vendor);
    fx_write_text(dir, "vendor", txt);
    snprintf(txt, sizeof txt, "0x%04x\n", d->device);
    fx_write_text(dir, "device", txt);
    snprintf(txt, sizeof txt, "0x%02x%02x00\n", d->class_base, d->class_sub);
    fx_write_text(dir, "class", txt);
    snprintf(txt, sizeof txt, "0x%04x\n", d->svid);
    fx_write_text(dir, "subsystem_vendor", txt);
    snprintf(txt, sizeof txt, "0x%04x\n", d->sdid);
    fx_write_text(dir, "subsystem_device", txt);
    fx_write_text(dir, "driver_override", "(null)\n");
    fx_write_text(dir, "numa_node", "-1\n");
    char *res = fx_resource_text(d);
    fx_write_text(dir, "resource", res);
    free(res);
    if (d->link_max_width) {
        snprintf(txt, sizeof txt, "%d\n", d->link_width);
        fx_write_text(dir, "current_link_width", txt);
        snprintf(txt, sizeof txt, "%d\n", d->link_max_width);
        fx_write_text(dir, "max_link_width", txt);
        snprintf(txt, sizeof txt, "%s\n", d->link_speed);
        fx_write_text(dir, "current_link_speed", txt);
        snprintf(txt, sizeof txt, "%s\n", d->link_max_speed);
        fx_write_text(dir, "max_link_speed", txt);
    }
    if (strcmp(d->reset_method, "-")) {
        snprintf(txt, sizeof txt, "%s%s", d->reset_method, "\n");
        fx_write_text(dir, "reset_method", d->reset_method[0] ? txt : "\n");
    }
    if (d->reset_attr)
        fx_write_text(dir, "reset", "");
    if (d->rom_size) {
        unsigned char *rom = malloc(d->rom_size);
        fx_rom_bytes(d, rom, d->rom_size);
        fx_write_file(dir, "rom", rom, d->rom_size);
        free(rom);
    }
    if (d->aer_fatal >= 0) {
        char *t = fx_aer_text("fatal", d->aer_fatal);
        fx_write_text(dir, "aer_dev_fatal", t);
        free(t);
        t = fx_aer_text("nonfatal", d->aer_nonfatal);
        fx_write_text(dir, "aer_dev_nonfatal", t);
        free(t);
    }
    int depth = fx_depth(rel);
    if (d->driver[0]) {
        char drvdir[1200], target[512];
        snprintf(drvdir, sizeof drvdir, "%s/sys/bus/pci/drivers/%s", h->root, d->driver);
        fx_mkdirs(drvdir);
        fx_write_text(drvdir, "bind", "");
        fx_write_text(drvdir, "unbind", "");
        fx_ups(up, sizeof up, depth - 1);
        snprintf(target, sizeof target, "%sbus/pci/drivers/%s", up, d->driver);
        fx_symlink(target, dir, "driver");
    }
    if (d->group[0]) {
        char gdir[1200], target[1400];
        snprintf(gdir, sizeof gdir, "%s/sys/kernel/iommu_groups/%s/devices", h->root, d->group);
        fx_mkdirs(gdir);
        fx_ups(up, sizeof up, depth - 1);
        snprintf(target, sizeof target, "%skernel/iommu_groups/%s", up, d->group);
        fx_symlink(target, dir, "iommu_group");
        snprintf(target, sizeof target, "../../../../%s", rel + 4);   /* from sys/kernel/iommu_groups/N/devices */
        fx_symlink(target, gdir, d->bdf);
    }
    char bus[1200], target[1400];
    snprintf(bus, sizeof bus, "%s/sys/bus/pci/devices", h->root);
    snprintf(target, sizeof target, "../../../%s", rel + 4);             /* from sys/bus/pci/devices */
    fx_symlink(target, bus, d->bdf);
}

/* Write the host into a new temporary directory (h->root). */
static inline void fx_write(fx_host *h)
{
    snprintf(h->root, sizeof h->root, "/tmp/gw-sanitize-XXXXXX");
    if (!mkdtemp(h->root)) {
        perror("mkdtemp");
        abort();
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/sys/bus/pci/devices", h->root);
    fx_mkdirs(p);
    snprintf(p, sizeof p, "%s/sys/bus/pci/drivers/vfio-pci", h->root);
    fx_mkdirs(p);
    fx_write_text(p, "bind", "");
    fx_write_text(p, "unbind", "");
    snprintf(p, sizeof p, "%s/sys/bus/pci", h->root);
    fx_write_text(p, "drivers_probe", "");
    snprintf(p, sizeof p, "%s/sys/kernel/iommu_groups", h->root);
    fx_mkdirs(p);
    for (size_t i = 0; i < h->n; i++)
        fx_write_dev(h, &h->dev[i]);
}

static inline int fx_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static inline void fx_remove(fx_host *h)
{
    if (h->root[0])
        nftw(h->root, fx_rm_cb, 32, FTW_DEPTH | FTW_PHYS);
    h->root[0] = '\0';
}

/* ---- an in-memory attachment source -------------------------------------- */

typedef struct fx_attach {
    gw_attach_source base;
    const char *busy;       /* a function referenced by domain `user` */
    const char *user;
    int err;                /* every query fails with it when set */
    int busy_from_call;     /* busy only from this query on (1-based); 0 = always */
    int calls;
} fx_attach;

static inline int fx_attach_query(gw_attach_source *src, const char *address, char ***domains)
{
    fx_attach *a = (fx_attach *)src;
    int call = __atomic_add_fetch(&a->calls, 1, __ATOMIC_SEQ_CST);
    if (a->err)
        return gw_error_set(a->err, "memory source: %s", strerror(-a->err));
    char **v = calloc(2, sizeof *v);
    /* Like libvirt's: a reference to any function of the slot counts. */
    if (a->busy && !strncmp(a->busy, address, 10) && call >= a->busy_from_call)
        v[0] = strdup(a->user);
    *domains = v;
    return 0;
}

static const gw_attach_source_ops fx_attach_ops = { GW_ATTACH_SOURCE_OPS_VERSION, "memory", fx_attach_query, NULL,
                                                    NULL };

static inline void fx_attach_init(fx_attach *a)
{
    memset(a, 0, sizeof *a);
    a->base.ops = &fx_attach_ops;
}

/* ---- snapshots: every file's bytes and every link's target ------------ */

typedef struct fx_entry {
    char *rel;
    char kind;          /* 'f' file, 'l' link, 'd' directory */
    unsigned char *data;
    size_t len;
} fx_entry;

typedef struct fx_snap {
    fx_entry *e;
    size_t n;
} fx_snap;

static fx_snap *fx_snap_target;
static size_t fx_snap_rootlen;

static inline int fx_snap_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    fx_snap *s = fx_snap_target;
    s->e = realloc(s->e, (s->n + 1) * sizeof *s->e);
    fx_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    e->rel = strdup(p + fx_snap_rootlen);
    if (flag == FTW_SL) {
        e->kind = 'l';
        e->data = calloc(1024, 1);
        ssize_t n = readlink(p, (char *)e->data, 1023);
        e->len = n > 0 ? (size_t)n : 0;
    } else if (S_ISDIR(st->st_mode)) {
        e->kind = 'd';
    } else {
        e->kind = 'f';
        e->len = (size_t)st->st_size;
        e->data = malloc(e->len + 1);
        FILE *f = fopen(p, "rb");
        if (!f || fread(e->data, 1, e->len, f) != e->len)
            abort();
        fclose(f);
    }
    return 0;
}

static inline int fx_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const fx_entry *)a)->rel, ((const fx_entry *)b)->rel);
}

static inline void fx_snapshot(const char *root, fx_snap *s)
{
    memset(s, 0, sizeof *s);
    fx_snap_target = s;
    fx_snap_rootlen = strlen(root);
    nftw(root, fx_snap_cb, 32, FTW_PHYS);
    qsort(s->e, s->n, sizeof *s->e, fx_entry_cmp);
}

static inline void fx_snap_free(fx_snap *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].rel);
        free(s->e[i].data);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

static inline const fx_entry *fx_snap_get(const fx_snap *s, const char *rel)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].rel, rel))
            return &s->e[i];
    return NULL;
}

#endif
