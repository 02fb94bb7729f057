/* SPDX-License-Identifier: Apache-2.0 */
/* Readers for the per-device sysfs attributes that libpci does not cover,
 * in the kernel's formats (drivers/pci/pci-sysfs.c, pcie/aer.c). Each takes
 * the host root and the device directory relative to it
 * ("sys/bus/pci/devices/<address>"), and reads inside the root only (util.h:
 * a link out of it is an error, -EXDEV, never "absent"). They return 0, or
 * -errno with a message naming the file; an attribute the kernel may
 * legitimately omit is "absent", not an error, and says so through `present`. */
#ifndef GW_SYSFS_ATTRS_H
#define GW_SYSFS_ATTRS_H

#include <gpuwarden/host.h>

#include "strv.h"
#include "util.h"

/* reset_method: space-separated names in priority order. Absent on kernels
 * before 5.15 and on devices with no reset method: empty list. */
int gw_attr_reset_methods(const gw_root *r, const char *dir, gw_strv *out);

/* current_link_speed/width, max_link_speed/width ("8.0 GT/s PCIe", "16").
 * "Unknown" speeds and the kernel's unknown width (255) read as 0.
 * present=false when none of the four exists. */
int gw_attr_link(const gw_root *r, const char *dir, gw_link *out);

/* aer_dev_correctable/fatal/nonfatal: the TOTAL_ERR_* line; -1 when absent. */
int gw_attr_aer(const gw_root *r, const char *dir, gw_aer_counts *out);

/* numa_node: -1 when absent (no CONFIG_NUMA) or unknown; anything but an
 * integer >= -1 is an error and leaves -1. */
int gw_attr_numa_node(const gw_root *r, const char *dir, int *out);

/* local_cpulist; NULL when absent. */
int gw_attr_local_cpulist(const gw_root *r, const char *dir, char **out);

/* resource: sizes of BARs 0-5 (end - start + 1, 0 when unused). */
int gw_attr_bar_sizes(const gw_root *r, const char *dir, uint64_t sizes[6]);

/* rom: present only when the device has an expansion ROM BAR. */
bool gw_attr_rom_present(const gw_root *r, const char *dir);

/* Parse a speed string of current_link_speed ("2.5 GT/s PCIe", "8 GT/s"). */
double gw_parse_link_speed(const char *s);

#endif
