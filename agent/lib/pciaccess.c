/* SPDX-License-Identifier: Apache-2.0 */
#include "pciaccess.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pciids.h"
#include "util.h"

#ifndef GW_DEFAULT_PCI_IDS
#define GW_DEFAULT_PCI_IDS "/usr/share/misc/pci.ids"
#endif

struct gw_pci {
    struct pci_access *acc;
    const char *ids_path;       /* libpci's name list path (it owns the string) */
    gw_ids *ids;                /* the fast table, loaded at the first lookup */
    int ids_state;              /* 0 not loaded, 1 table, -1 libpci answers */
};

/* One guard per active gw_pci_guard() frame on this thread; nested guards
 * chain through `prev`. The message lives in thread-local storage, not in the
 * guard's frame, because locals written between setjmp() and longjmp() are
 * indeterminate afterwards. */
struct guard {
    jmp_buf env;
    struct guard *prev;
};
static _Thread_local struct guard *current_guard;
static _Thread_local char pci_error_msg[512];
static _Thread_local char pci_warning_msg[512];

static void trim_newline(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

__attribute__((format(printf, 1, 2))) static void PCI_NONRET on_pci_error(char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pci_error_msg, sizeof pci_error_msg, fmt, ap);
    va_end(ap);
    trim_newline(pci_error_msg);
    if (!current_guard) {
        /* A libpci call outside gw_pci_guard(): a bug here. Never exit(). */
        fprintf(stderr, "gpuwarden: unguarded libpci error: %s\n", pci_error_msg);
        abort();
    }
    longjmp(current_guard->env, 1);
}

__attribute__((format(printf, 1, 2))) static void on_pci_warning(char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pci_warning_msg, sizeof pci_warning_msg, fmt, ap);
    va_end(ap);
    trim_newline(pci_warning_msg);
    gw_log(GW_LOG_DEBUG, "libpci: %s", pci_warning_msg);
}

static void on_pci_debug(char *fmt, ...) { (void)fmt; }

int gw_pci_guard(const char *what, void (*fn)(void *arg), void *arg)
{
    struct guard g;
    g.prev = current_guard;
    pci_warning_msg[0] = '\0';
    if (setjmp(g.env)) {
        current_guard = g.prev;
        return gw_error_set(-EIO, "%s: %s", what, pci_error_msg);
    }
    current_guard = &g;
    fn(arg);
    current_guard = g.prev;
    return 0;
}

const char *gw_pci_last_warning(void) { return pci_warning_msg; }

struct init_args {
    struct pci_access *acc;
};

static void do_init(void *arg)
{
    struct init_args *a = arg;
    pci_init(a->acc);
}

int gw_pci_open(gw_pci **out, const char *sysfs_pci, const char *pci_ids)
{
    struct pci_access *acc = pci_alloc();
    if (!acc)
        return gw_error_set(-ENOMEM, "libpci: pci_alloc failed");
    acc->error = on_pci_error;
    acc->warning = on_pci_warning;
    acc->debug = on_pci_debug;
    acc->method = PCI_ACCESS_SYS_BUS_PCI;
    acc->writeable = 0;
    acc->buscentric = 0;      /* ids and class from sysfs: the kernel's view, quirks applied */
    acc->id_lookup_mode = 0;  /* never DNS, never the ~/.pciids-cache */
    if (pci_set_param(acc, "sysfs.path", (char *)sysfs_pci) < 0) {
        pci_cleanup(acc);
        return gw_error_set(-ENOTSUP, "libpci: no sysfs.path parameter (linux-sysfs method missing)");
    }
    /* Absent in libpci builds without udev: then hwdb is not used anyway. */
    (void)pci_set_param(acc, "hwdb.disable", "1");
    char *ids_path = gw_xstrdup(pci_ids ? pci_ids : GW_DEFAULT_PCI_IDS);
    pci_set_name_list_path(acc, ids_path, 1);

    struct init_args a = { acc };
    int r = gw_pci_guard("libpci init", do_init, &a);
    if (r < 0) {
        pci_cleanup(acc);
        return r;
    }
    gw_pci *p = gw_xcalloc(1, sizeof *p);
    p->acc = acc;
    p->ids_path = ids_path;
    *out = p;
    return 0;
}

static void do_cleanup(void *arg) { pci_cleanup(arg); }

void gw_pci_close(gw_pci *p)
{
    if (!p)
        return;
    if (gw_pci_guard("libpci cleanup", do_cleanup, p->acc) < 0)
        gw_log(GW_LOG_WARNING, "%s", gw_error_message());
    gw_ids_free(p->ids);
    free(p);
}

struct pci_access *gw_pci_access(gw_pci *p) { return p->acc; }

struct pci_dev *gw_pci_add_device(gw_pci *p, const char *address)
{
    unsigned dom, bus, dev, fn;
    if (sscanf(address, "%x:%x:%x.%u", &dom, &bus, &dev, &fn) != 4)
        return NULL;
    struct pci_dev *d = pci_get_dev(p->acc, (int)dom, (int)bus, (int)dev, (int)fn);
    if (!d)
        return NULL;
    /* What pci_scan_bus() does for each entry it accepts (pci_link_dev() is
     * not exported): pci_cleanup() frees the list, PCI_FILL_PARENT searches it. */
    d->next = p->acc->devices;
    p->acc->devices = d;
    return d;
}

struct fill_args {
    struct pci_dev *d;
    unsigned int flags;
};

static void do_fill(void *arg)
{
    struct fill_args *a = arg;
    pci_fill_info(a->d, (int)a->flags);
}

int gw_pci_fill(struct pci_dev *d, unsigned int flags, const char *what)
{
    struct fill_args a = { d, flags };
    return gw_pci_guard(what, do_fill, &a);
}

struct name_args {
    struct pci_access *acc;
    int flags;
    unsigned v, dv;
    char buf[256];
    const char *res;
};

static void do_lookup(void *arg)
{
    struct name_args *a = arg;
    a->res = pci_lookup_name(a->acc, a->buf, sizeof a->buf, a->flags | PCI_LOOKUP_NO_NUMBERS,
                             a->v, a->dv);
}

static char *lookup(gw_pci *p, int flags, unsigned v, unsigned dv)
{
    /* pciids.c reads the file as libpci would, in a fraction of the time;
     * where it cannot promise libpci's answer, libpci is asked. */
    if (p->ids_state == 0)
        p->ids_state = gw_ids_load(&p->ids, p->ids_path) == 0 ? 1 : -1;
    if (p->ids_state > 0)
        return flags == PCI_LOOKUP_VENDOR ? gw_ids_vendor(p->ids, (uint16_t)v)
                                          : gw_ids_device(p->ids, (uint16_t)v, (uint16_t)dv);
    struct name_args a = { .acc = p->acc, .flags = flags, .v = v, .dv = dv };
    if (gw_pci_guard("pci.ids", do_lookup, &a) < 0) {
        gw_log(GW_LOG_WARNING, "%s", gw_error_message());
        return NULL;
    }
    return a.res ? gw_xstrdup(a.res) : NULL;
}

char *gw_pci_libpci_name(gw_pci *p, bool device, uint16_t vendor_id, uint16_t device_id)
{
    int state = p->ids_state;
    p->ids_state = -1;
    char *r = lookup(p, device ? PCI_LOOKUP_DEVICE : PCI_LOOKUP_VENDOR, vendor_id, device_id);
    p->ids_state = state;
    return r;
}

char *gw_pci_vendor_name(gw_pci *p, uint16_t vendor_id)
{
    return lookup(p, PCI_LOOKUP_VENDOR, vendor_id, 0);
}

char *gw_pci_device_name(gw_pci *p, uint16_t vendor_id, uint16_t device_id)
{
    return lookup(p, PCI_LOOKUP_DEVICE, vendor_id, device_id);
}
