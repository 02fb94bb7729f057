/* SPDX-License-Identifier: Apache-2.0 */
/* Facts about a PCI function, read through the host backend: config space
 * and its capabilities, driver, topology, IOMMU group, AER counters, BARs,
 * and whether the policy lets the clean-up write to it. */
#include <string.h>

#include "sanitize_internal.h"

char *gw_dev_path(const char *addr, const char *attr)
{
    if (!attr)
        return gw_strdup_printf("sys/bus/pci/devices/%s", addr);
    return gw_strdup_printf("sys/bus/pci/devices/%s/%s", addr, attr);
}

int gw_dev_read_text(gw_hostops *ops, const char *addr, const char *attr, char **out)
{
    _cleanup_free_ char *p = gw_dev_path(addr, attr);
    char *s;
    size_t n;
    int r = gw_hostops_read(ops, p, 1 << 16, &s, &n);
    if (r < 0)
        return r;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    *out = s;
    return 0;
}

int gw_dev_read_long(gw_hostops *ops, const char *addr, const char *attr, long *out)
{
    _cleanup_free_ char *s = NULL;
    int r = gw_dev_read_text(ops, addr, attr, &s);
    if (r < 0)
        return r;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end)
        return gw_error_set(-EINVAL, "%s/%s: not a number: '%.32s'", addr, attr, s);
    *out = v;
    return 0;
}

int gw_dev_config(gw_hostops *ops, const char *addr, unsigned off, void *buf, size_t len)
{
    return gw_hostops_read_config(ops, addr, off, buf, len);
}

int gw_dev_config16(gw_hostops *ops, const char *addr, unsigned off, uint16_t *out)
{
    uint8_t b[2] = { 0xff, 0xff };   /* all-ones on failure, like a dead device */
    int r = gw_dev_config(ops, addr, off, b, 2);
    *out = (uint16_t)(b[0] | b[1] << 8);
    return r;
}

int gw_dev_config32(gw_hostops *ops, const char *addr, unsigned off, uint32_t *out)
{
    uint8_t b[4] = { 0xff, 0xff, 0xff, 0xff };
    int r = gw_dev_config(ops, addr, off, b, 4);
    *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return r;
}

int gw_dev_find_cap(gw_hostops *ops, const char *addr, uint8_t id)
{
    uint16_t status;
    uint8_t ptr;
    int r = gw_dev_config16(ops, addr, 0x06, &status);
    if (r < 0)
        return r;
    if (status == 0xffff || !(status & 0x10))
        return 0;
    if ((r = gw_dev_config(ops, addr, 0x34, &ptr, 1)) < 0)
        return r;
    for (int hops = 0; ptr >= 0x40 && hops < 48; hops++) {
        uint8_t hdr[2];
        ptr &= 0xfc;
        if ((r = gw_dev_config(ops, addr, ptr, hdr, 2)) < 0)
            return r;
        if (hdr[0] == id)
            return ptr;
        ptr = hdr[1];
    }
    return 0;
}

int gw_dev_find_ext_cap(gw_hostops *ops, const char *addr, uint16_t id)
{
    unsigned pos = 0x100;
    for (int hops = 0; hops < (4096 - 256) / 8; hops++) {
        uint32_t hdr;
        int r = gw_dev_config32(ops, addr, pos, &hdr);
        if (r < 0)
            return gw_error_set(r, "%s: extended config space not readable at 0x%x", addr, pos);
        if (hdr == 0 || hdr == 0xffffffff)
            return 0;
        if ((hdr & 0xffff) == id)
            return (int)pos;
        pos = (hdr >> 20) & 0xffc;
        if (pos < 0x100)
            return 0;
    }
    return 0;
}

static const char *base_name(const char *s)
{
    const char *slash = strrchr(s, '/');
    return slash ? slash + 1 : s;
}

int gw_dev_driver(gw_hostops *ops, const char *addr, char **out)
{
    _cleanup_free_ char *p = gw_dev_path(addr, "driver");
    _cleanup_free_ char *t = NULL;
    int r = gw_hostops_readlink(ops, p, &t);
    if (r == -ENOENT) {
        *out = NULL;
        return 0;
    }
    if (r < 0)
        return r;
    *out = gw_xstrdup(base_name(t));
    return 0;
}

int gw_dev_is_bridge(gw_hostops *ops, const char *addr)
{
    uint8_t ht;
    int r = gw_dev_config(ops, addr, 0x0e, &ht, 1);
    if (r < 0)
        return r;
    return (ht & 0x7f) == 1;
}

int gw_dev_upstream(gw_hostops *ops, const char *addr, gw_addrlist *out)
{
    _cleanup_free_ char *p = gw_dev_path(addr, NULL);
    _cleanup_free_ char *t = NULL;
    int r = gw_hostops_readlink(ops, p, &t);
    if (r < 0)
        return r;
    /* "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:03:00.0":
     * every address before the device's own is a bridge on its path. */
    gw_addrlist chain = { 0 };
    char *save = NULL;
    for (char *tok = strtok_r(t, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
        if (gw_is_bdf(tok))
            gw_addrlist_add(&chain, tok);
    if (chain.n == 0 || strcmp(chain.v[chain.n - 1], addr)) {
        gw_addrlist_clear(&chain);
        return gw_error_set(-EINVAL, "%s: device link does not end in the device's address", p);
    }
    for (size_t i = chain.n - 1; i-- > 0;)
        gw_addrlist_add(out, chain.v[i]);
    gw_addrlist_clear(&chain);
    return 0;
}

int gw_dev_slot_functions(gw_hostops *ops, const char *addr, gw_addrlist *out)
{
    char **names = NULL;
    size_t n = 0;
    int r = gw_hostops_list(ops, "sys/bus/pci/devices", &names, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (gw_is_bdf(names[i]) && !strncmp(names[i], addr, 10))
            gw_addrlist_add(out, names[i]);
    gw_hostops_list_free(names, n);
    if (!gw_addrlist_has(out, addr))
        return gw_error_set(-ENOENT, "%s: not in sys/bus/pci/devices", addr);
    return 0;
}

int gw_dev_group(gw_hostops *ops, const char *addr, char **group, gw_addrlist *members)
{
    _cleanup_free_ char *p = gw_dev_path(addr, "iommu_group");
    _cleanup_free_ char *t = NULL;
    int r = gw_hostops_readlink(ops, p, &t);
    if (r < 0)
        return r;
    _cleanup_free_ char *dir = gw_strdup_printf("sys/kernel/iommu_groups/%s/devices", base_name(t));
    char **names = NULL;
    size_t n = 0;
    if ((r = gw_hostops_list(ops, dir, &names, &n)) < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (gw_is_bdf(names[i]))
            gw_addrlist_add(members, names[i]);
    gw_hostops_list_free(names, n);
    *group = gw_xstrdup(base_name(t));
    return 0;
}

int gw_dev_aer_total(gw_hostops *ops, const char *addr, const char *which, long *out)
{
    _cleanup_free_ char *attr = gw_strdup_printf("aer_dev_%s", which);
    _cleanup_free_ char *s = NULL;
    int r = gw_dev_read_text(ops, addr, attr, &s);
    if (r < 0)
        return r;
    /* Lines of "<Error Name> <count>", the last "TOTAL_ERR_FATAL <n>". */
    char key[32];
    snprintf(key, sizeof key, "TOTAL_ERR_%s", !strcmp(which, "fatal") ? "FATAL" : "NONFATAL");
    for (char *line = s; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        size_t kl = strlen(key);
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            char *end;
            errno = 0;
            long v = strtol(line + kl + 1, &end, 10);
            if (errno || end == line + kl + 1 || v < 0)
                return gw_error_set(-EINVAL, "%s/%s: bad count in '%s'", addr, attr, line);
            *out = v;
            return 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return gw_error_set(-EINVAL, "%s/%s: no %s line", addr, attr, key);
}

int gw_dev_resources(gw_hostops *ops, const char *addr, gw_dev_resource res[7])
{
    _cleanup_free_ char *s = NULL;
    int r = gw_dev_read_text(ops, addr, "resource", &s);
    if (r < 0)
        return r;
    char *line = s;
    for (int i = 0; i < 7; i++) {
        unsigned long long start, end, flags;
        if (!line || sscanf(line, "%llx %llx %llx", &start, &end, &flags) != 3)
            return gw_error_set(-EINVAL, "%s/resource: line %d is not 'start end flags'", addr, i + 1);
        res[i] = (gw_dev_resource){ start, end, flags };
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

int gw_dev_managed(gw_hostops *ops, const gw_sanitize_policy *pol, const char *addr, char **why)
{
    if (why)
        *why = NULL;
    for (size_t i = 0; i < pol->n_manage_addresses; i++) {
        if (!strcmp(pol->manage_addresses[i], addr)) {
            if (why)
                *why = gw_strdup_printf("%s is in the managed addresses", addr);
            return 1;
        }
    }
    /* Which device this is comes from the ids the kernel cached at
     * enumeration (sysfs `vendor`, `class`), not from config space: a managed
     * GPU that fell off the bus reads all-ones there, and must stay managed so
     * that it is quarantined rather than forgotten. */
    long vendor_l, class_l;
    int r = gw_dev_read_long(ops, addr, "vendor", &vendor_l);
    if (r == 0)
        r = gw_dev_read_long(ops, addr, "class", &class_l);
    if (r < 0) {
        if (why)
            *why = gw_strdup_printf("%s: ids unreadable: %s", addr, gw_error_message());
        return r;
    }
    uint16_t vendor = (uint16_t)vendor_l;
    uint8_t cls[2] = { (uint8_t)(class_l >> 8), (uint8_t)(class_l >> 16) };   /* sub-class, base class */
    if (pol->n_manage_vendors || pol->n_manage_addresses) {
        for (size_t i = 0; i < pol->n_manage_vendors; i++) {
            if (pol->manage_vendors[i] == vendor) {
                if (why)
                    *why = gw_strdup_printf("%s: vendor %04x is managed", addr, vendor);
                return 1;
            }
        }
        if (why)
            *why = gw_strdup_printf("%s: vendor %04x and address not in the managed vendors/addresses", addr,
                                    vendor);
        return 0;
    }
    /* Default: only what the operator already handed to vfio-pci. */
    _cleanup_free_ char *drv = NULL;
    if ((r = gw_dev_driver(ops, addr, &drv)) < 0) {
        if (why)
            *why = gw_strdup_printf("%s: driver link unreadable: %s", addr, gw_error_message());
        return r;
    }
    bool ok = vendor == 0x10de && cls[1] == 0x03 && drv && !strcmp(drv, "vfio-pci");
    if (why)
        *why = gw_strdup_printf("%s: %s by the default rule (NVIDIA display class on vfio-pci; this is %04x "
                                "class %02x%02x on %s)", addr, ok ? "managed" : "not managed", vendor, cls[1],
                                cls[0], drv ? drv : "no driver");
    return ok;
}

GW_EXTERN int gw_sanitize_is_managed(gw_hostops *ops, const gw_sanitize_policy *policy, const char *address,
                                     char **why)
{
    if (!ops || !address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "gw_sanitize_is_managed: bad arguments");
    gw_spolicy *p;
    int r = gw_spolicy_new(&p, policy);
    if (r < 0)
        return r;
    r = gw_dev_managed(ops, &p->pol, address, why);
    gw_spolicy_unref(p);
    return r;
}

int gw_dev_targets(gw_hostops *ops, const char *addr, gw_addrlist *functions, gw_addrlist *bridges,
                   char **group)
{
    gw_addrlist all = { 0 };
    *group = NULL;
    int r = gw_dev_slot_functions(ops, addr, &all);
    if (r < 0)
        return r;
    r = gw_dev_group(ops, addr, group, &all);
    if (r < 0 && r != -ENOENT) {
        gw_addrlist_clear(&all);
        return r;
    }
    for (size_t i = 0; i < all.n; i++) {
        int b = gw_dev_is_bridge(ops, all.v[i]);
        if (b < 0) {
            gw_addrlist_clear(&all);
            return b;
        }
        gw_addrlist_add(b ? bridges : functions, all.v[i]);
    }
    gw_addrlist_clear(&all);
    return 0;
}
