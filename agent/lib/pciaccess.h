/* SPDX-License-Identifier: Apache-2.0 */
/* libpci set up on a host root, with libpci's fatal errors turned into
 * return codes.
 *
 * libpci reports fatal problems through pci_access.error, whose default prints
 * and calls exit(). A library must not exit, and gpuwardend scans from worker
 * threads, so every libpci call that may fail runs under gw_pci_guard(): the
 * error handler longjmp()s back to the guard through a _Thread_local jmp_buf
 * and the guard returns -EIO with libpci's message. Outside a guard the
 * handler aborts (a bug in this module, never a quiet exit). */
#ifndef GW_PCIACCESS_H
#define GW_PCIACCESS_H

#include <pci/pci.h>
#include <stdbool.h>

typedef struct gw_pci gw_pci;

/* libpci with method linux-sysfs on `sysfs_pci` (a directory shaped like
 * /sys/bus/pci), names from `pci_ids` (NULL: the build's default pci.ids;
 * udev's hwdb is not consulted, so names do not depend on the machine that
 * reads a test tree). Devices are added with gw_pci_add_device(). */
int gw_pci_open(gw_pci **out, const char *sysfs_pci, const char *pci_ids);
void gw_pci_close(gw_pci *p);
struct pci_access *gw_pci_access(gw_pci *p);

/* Run fn(arg); a libpci fatal error inside returns -EIO with the message
 * "<what>: <libpci's message>" (gw_error_message()). libpci warnings raised
 * meanwhile are kept and readable with gw_pci_last_warning(). */
int gw_pci_guard(const char *what, void (*fn)(void *arg), void *arg);
/* The last libpci warning on this thread since the last guard began ("" when none). */
const char *gw_pci_last_warning(void);

/* Create the libpci device for a canonical address ("0000:3b:00.0") and link
 * it into the access's device list (so PCI_FILL_PARENT can find it). This
 * replaces pci_scan_bus(), which treats any entry of devices/ that is not an
 * address as fatal: the caller enumerates devices/ itself and reports such
 * entries. */
struct pci_dev *gw_pci_add_device(gw_pci *p, const char *address);

/* pci_fill_info() under a guard. */
int gw_pci_fill(struct pci_dev *d, unsigned int flags, const char *what);

/* Vendor and device names from pci.ids; NULL when unknown. The strings are
 * newly allocated. */
char *gw_pci_vendor_name(gw_pci *p, uint16_t vendor_id);
char *gw_pci_device_name(gw_pci *p, uint16_t vendor_id, uint16_t device_id);
/* The same name as libpci's own pci_lookup_name() gives it (for tests: the
 * two above read pci.ids themselves where they can, pciids.c). */
char *gw_pci_libpci_name(gw_pci *p, bool device, uint16_t vendor_id, uint16_t device_id);

#endif
