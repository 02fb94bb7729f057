/* SPDX-License-Identifier: Apache-2.0 */
/* gw_iso_view_read(): the isolation view of a GPU, read live through a host
 * backend for the clean-up's isolation step. It reads what discovery's scan
 * reads (pcifunc.c, topology.c) and treats gaps the same way, so that one
 * host state gives one view and gw_iso_judge() one verdict:
 *
 * - config space counts only when its 64-byte header reads and is not
 *   all-ones (a device off the bus); capabilities only when the whole
 *   256 bytes read, extended ones only when 0x100 reads;
 * - a member's header type comes from config space, else from the kernel's
 *   cached class (0604/0609: a bridge); ids from the kernel's cached
 *   vendor/device/class, else from the header;
 * - the path is the chain of addresses in the device's sysfs link, which
 *   must be unbroken up to a root bus (pciDDDD:BB), every bridge on it listed
 *   in bus/pci/devices (libpci's PCI_FILL_PARENT walks the same directories). */
#include <string.h>

#include "isolation.h"
#include "sanitize_internal.h"

static bool read_header(gw_hostops *ops, const char *addr, uint8_t hdr[64])
{
    if (gw_dev_config(ops, addr, 0, hdr, 64) < 0)
        return false;
    return !(hdr[0] == 0xff && hdr[1] == 0xff && hdr[2] == 0xff && hdr[3] == 0xff);
}

/* The whole conventional config space, where the capability list lives. */
static bool read_full(gw_hostops *ops, const char *addr)
{
    uint8_t last;
    return gw_dev_config(ops, addr, 0xff, &last, 1) == 0;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void read_member(gw_hostops *ops, gw_iso_member *m)
{
    uint8_t hdr[64];
    bool have_hdr = read_header(ops, m->address, hdr);
    long vendor, device, cls;
    bool have_vendor = gw_dev_read_long(ops, m->address, "vendor", &vendor) == 0;
    bool have_device = gw_dev_read_long(ops, m->address, "device", &device) == 0;
    bool have_class = gw_dev_read_long(ops, m->address, "class", &cls) == 0;
    if (have_hdr) {
        m->known = true;
        m->is_bridge = (hdr[0x0e] & 0x7f) == 1;
    } else if (have_class) {
        unsigned c = (unsigned)(cls >> 8) & 0xffff;
        m->known = true;
        m->is_bridge = c == 0x0604 || c == 0x0609;
    }
    /* The ids name the function in the verdict's words only. */
    if (have_vendor && have_device) {
        m->vendor_id = (uint16_t)vendor;
        m->device_id = (uint16_t)device;
    } else if (have_hdr) {
        m->vendor_id = le16(hdr);
        m->device_id = le16(hdr + 2);
    }
    if (have_class)
        m->class_code = (uint16_t)(cls >> 8);
    else if (have_hdr)
        m->class_code = le16(hdr + 0x0a);
    if (m->known && gw_dev_driver(ops, m->address, &m->driver) < 0)
        m->known = false;
}

static void read_group(gw_hostops *ops, gw_iso_view *v)
{
    _cleanup_free_ char *link = gw_dev_path(v->address, "iommu_group");
    _cleanup_free_ char *target = NULL;
    int r = gw_hostops_readlink(ops, link, &target);
    if (r < 0) {
        v->group_state = r == -ENOENT ? GW_ISO_GROUP_NONE : GW_ISO_GROUP_UNREADABLE;
        return;
    }
    if (gw_hostops_exists(ops, link) < 0) {
        v->group_state = GW_ISO_GROUP_DANGLING;
        return;
    }
    const char *slash = strrchr(target, '/');
    v->group = gw_xstrdup(slash ? slash + 1 : target);
    _cleanup_free_ char *dir = gw_strdup_printf("sys/kernel/iommu_groups/%s/devices", v->group);
    char **names = NULL;
    size_t n = 0;
    if (gw_hostops_list(ops, dir, &names, &n) < 0) {
        v->group_state = GW_ISO_GROUP_UNREADABLE;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (gw_is_bdf(names[i]))
            read_member(ops, gw_iso_view_add_member(v, names[i]));
    gw_hostops_list_free(names, n);
    gw_iso_view_sort(v);
}

static void read_port(gw_hostops *ops, const char *addr, gw_bridge *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->address, sizeof b->address, "%s", addr);
    b->port_type = GW_PORT_NONE;
    uint8_t hdr[64];
    if (!read_header(ops, addr, hdr))
        return;
    b->vendor_id = le16(hdr);
    b->device_id = le16(hdr + 2);
    uint16_t flags, cap, ctrl;
    int pos = read_full(ops, addr) ? gw_dev_find_cap(ops, addr, GW_PCI_CAP_EXP) : -1;
    if (pos <= 0 || gw_dev_config16(ops, addr, (unsigned)pos + 2, &flags) < 0)
        return;
    b->port_type = (flags >> 4) & 0xf;
    int acs = gw_dev_find_ext_cap(ops, addr, GW_PCI_EXT_CAP_ACS);
    if (acs < 0)
        return;
    if (acs > 0) {
        if (gw_dev_config16(ops, addr, (unsigned)acs + 4, &cap) < 0 ||
            gw_dev_config16(ops, addr, (unsigned)acs + 6, &ctrl) < 0)
            return;
        b->acs.present = true;
        b->acs.cap = cap;
        b->acs.ctrl = ctrl;
        b->acs.sv = gw_acs_flag_enabled(cap, ctrl, GW_ACS_SV);
        b->acs.rr = gw_acs_flag_enabled(cap, ctrl, GW_ACS_RR);
        b->acs.cr = gw_acs_flag_enabled(cap, ctrl, GW_ACS_CR);
        b->acs.uf = gw_acs_flag_enabled(cap, ctrl, GW_ACS_UF);
    }
    b->acs.known = true;
}

/* "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0": the bridges are
 * the addresses right before the device's own, up to the root bus. */
static void read_path(gw_hostops *ops, gw_iso_view *v)
{
    _cleanup_free_ char *link = gw_dev_path(v->address, NULL);
    _cleanup_free_ char *target = NULL;
    if (gw_hostops_readlink(ops, link, &target) < 0)
        return;
    char *parts[256];
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(target, "/", &save); tok && n < 256; tok = strtok_r(NULL, "/", &save))
        parts[n++] = tok;
    if (n == 0 || strcmp(parts[n - 1], v->address))
        return;
    for (size_t i = n - 1; i-- > 0;) {
        unsigned dom, bus;
        char tail;
        if (sscanf(parts[i], "pci%x:%x%c", &dom, &bus, &tail) == 2) {
            v->path_complete = true;
            return;
        }
        if (!gw_is_bdf(parts[i]))
            return;
        _cleanup_free_ char *listed = gw_dev_path(parts[i], NULL);
        if (gw_hostops_exists(ops, listed) < 0)
            return;
        v->path = gw_xrealloc(v->path, v->n_path + 1, sizeof *v->path);
        read_port(ops, parts[i], &v->path[v->n_path++]);
    }
}

static void read_ats(gw_hostops *ops, gw_iso_view *v)
{
    uint8_t hdr[64];
    uint16_t ctrl;
    if (!read_header(ops, v->address, hdr) || !read_full(ops, v->address)) {
        v->ats = GW_ISO_ATS_NO_CONFIG;
        return;
    }
    int pos = gw_dev_find_cap(ops, v->address, GW_PCI_CAP_EXP);
    if (pos < 0) {
        v->ats = GW_ISO_ATS_NO_CONFIG;
        return;
    }
    if (pos == 0) {
        v->ats = GW_ISO_ATS_ABSENT;     /* conventional PCI: no extended capabilities */
        return;
    }
    int ats = gw_dev_find_ext_cap(ops, v->address, GW_PCI_EXT_CAP_ATS);
    if (ats < 0 || (ats > 0 && gw_dev_config16(ops, v->address, (unsigned)ats + 6, &ctrl) < 0)) {
        v->ats = GW_ISO_ATS_NO_EXT;
        return;
    }
    v->ats = ats ? GW_ISO_ATS_PRESENT : GW_ISO_ATS_ABSENT;
    v->ats_ctrl = ats ? ctrl : 0;
}

void gw_iso_view_read(gw_hostops *ops, const char *address, gw_iso_view *out)
{
    gw_iso_view_init(out, address);
    read_group(ops, out);
    read_path(ops, out);
    read_ats(ops, out);
    gw_error_clear();
}
