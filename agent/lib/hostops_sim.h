/* SPDX-License-Identifier: Apache-2.0 */
/* The simulated host backend: a read-only test tree plus an in-memory
 * overlay, implementing the same vtable as the sysfs backend, that models
 * what the kernel does after a write and lets a test inject faults. It is
 * the model the fast tests use, so it follows what a real kernel (Linux 6.1,
 * measured) does, not what would be convenient.
 *
 * Modelled (drivers/pci/pci-sysfs.c, drivers/base/bus.c semantics):
 *   driver_override   stored without its trailing newline; reads "(null)\n"
 *                     when unset
 *   drivers/D/unbind  the named device must be bound to D (-ENODEV); the
 *                     driver link disappears
 *   drivers/D/bind    -EBUSY when bound; -ENODEV when driver_override names
 *                     another driver; else binds
 *   drivers_probe     an unbound device with driver_override binds to that
 *                     driver when sys/bus/pci/drivers/<it> exists
 *   reset             only "1" is accepted (-EINVAL); needs the attribute;
 *                     works in D3hot (the kernel resumes around it) and
 *                     leaves the power state as it was
 *   rom               exactly "0\n" disables reads, anything else enables;
 *                     reading while disabled is -EINVAL; an enabled read
 *                     returns what pci_read_rom() does: only the images
 *                     pci_get_rom_size() finds (55 AA, the "PCIR" structure
 *                     the pointer at 0x18 names, lengths up to the image
 *                     flagged last, never past the file, which stands for
 *                     the ROM BAR window), and -EIO "invalid ROM header
 *                     signature ... (kernel: EIO)" when the first image is
 *                     not valid, or when the Command register's Memory
 *                     Space bit is off (the ROM then reads as zeros)
 *   runtime power     power_state, power/runtime_status and power/control
 *                     exist for every device of the tree (the kernel has
 *                     them for each; the overlay supplies them, from the
 *                     tree's files where it has them, else control "auto",
 *                     "active", D0). Binding to vfio-pci (drivers_probe,
 *                     bind, or an injected bind) with control "auto" puts
 *                     the device in D3hot/"suspended" at once; control "on"
 *                     (written: only "on"/"auto", else -EINVAL) makes it
 *                     D0/"active" and keeps it there; "auto" while on
 *                     vfio-pci suspends it again; unbinding from vfio-pci or
 *                     binding a host driver leaves D0/"active". Config and
 *                     ROM reads work in D3hot, as on the real kernel.
 *   VFIO holders      processes registered with gw_sim_hold_group() appear
 *                     in proc: list("proc") has their pids (merged with the
 *                     tree's proc, if any), proc/<pid>/fd/<n> links to
 *                     "/dev/vfio/<group>", proc/<pid>/comm reads "comm\n".
 *                     Without holders and without a proc directory in the
 *                     tree, proc does not exist (as on every test tree).
 *   dev/vfio/<group>  hold() opens it like the kernel's group node: one open
 *                     at a time, -EBUSY while a holder, an earlier hold or
 *                     a process of the tree's proc (an fd linking to
 *                     "/dev/vfio/<group>") has it; -ENOENT when no function of the group is on
 *                     vfio-pci (the kernel creates the node at that bind).
 *                     Other paths are not holdable (-ENOENT).
 *   VFIO devices      (vtable version 3, hostops_sim_vfio.c) opened through a
 *                     held group: -ENODEV when the function is not in that
 *                     group or not on vfio-pci, -EPERM when a member of the
 *                     group is bound to a host driver (not viable; pcieport
 *                     does not count, as on 6.1). BAR memory exists where a
 *                     test gave it (gw_sim_bar_set; other regions have size
 *                     0); reads, writes and mmap reach that buffer. Hot reset
 *                     info lists every function on the bus below the
 *                     device's parent bridge with its group (-ENODEV on the
 *                     root bus, -EPERM for a function without a group); the
 *                     hot reset is refused with -EINVAL, as Linux 6.1 does,
 *                     when a function on that bus is not on vfio-pci or a
 *                     group of one is not among those passed. A reset leaves
 *                     BAR memory as it is (neither FLR nor a bus reset clears
 *                     a GPU's memory). Every VFIO operation is logged.
 *   config writes     (write_config, vtable version 3, hostops_sim_config.c)
 *                     land in the overlay's copy of the device's config:
 *                     the error status registers are write-1-to-clear (PCI
 *                     Status 0x06 bits 8 and 11-15, PCIe Device Status bits
 *                     0-3, AER Uncorrectable and Correctable Error Status,
 *                     a root port's Root Error Status bits 0-6), every other
 *                     byte takes the value written; logged like any write,
 *                     path "sys/bus/pci/devices/<addr>/config" with the
 *                     offset (gw_sim_write_offset()), and subject to the
 *                     same injected faults keyed by that path
 *   anything else     -EACCES (read-only)
 * Faults (all keyed by the written path, optionally by the written bytes):
 * a write that fails with an errno, a write that first sleeps (outside the
 * backend's lock, like a blocking kernel write), and after a successful
 * write new content for any attribute or config space, a driver link
 * changed, or a holder appearing - all-ones after a reset, a link retraining
 * narrower, an AER counter going up, a probe that binds a host driver, a VM
 * starting during the clean-up; and a holder that opens its group right
 * before the clean-up's own hold (the race the hold closes).
 * Nothing is ever written to the tree. Every write is logged, with the
 * groups held through hold() at that moment. */
#ifndef GW_HOSTOPS_SIM_H
#define GW_HOSTOPS_SIM_H

#include <gpuwarden/hostops.h>

typedef struct gw_sim gw_sim;

/* A simulated host on test tree `root`. *sim stays valid as long as *out. */
int gw_hostops_sim_new(gw_hostops **out, gw_sim **sim, const char *root);

/* Every write to `path` (and, when `data` is not NULL, with exactly those
 * bytes) fails with `err` (negative errno) and changes nothing. */
void gw_sim_fail_write(gw_sim *sim, const char *path, int err);
/* Every write to `path` sleeps `ms` before it takes effect. */
void gw_sim_delay_write(gw_sim *sim, const char *path, unsigned int ms);
/* After a successful write to `trigger`, `target` reads as `data` (len bytes;
 * config space too: "sys/bus/pci/devices/X/config"). */
void gw_sim_after_write_set(gw_sim *sim, const char *trigger, const char *target, const void *data, size_t len);
/* After a successful write to `trigger`, device `address` is hot-unplugged:
 * its sys/bus/pci/devices entry and config space are gone (ENOENT). */
void gw_sim_after_write_remove(gw_sim *sim, const char *trigger, const char *address);
/* After a successful write to `trigger` (with bytes `trigger_data` when not
 * NULL), device `address` is bound to `driver` (NULL: unbound). */
void gw_sim_after_write_bind(gw_sim *sim, const char *trigger, const char *trigger_data, const char *address,
                             const char *driver);
/* Process `pid` (named `comm`) opens /dev/vfio/<group> now, or after a
 * successful write to `trigger`, and holds it until gw_sim_release_group().
 * As on the kernel, the open is refused (-EBUSY) while the group node is
 * open already (through hold(), by another process, or in the tree's proc);
 * a refused open is counted by gw_sim_refused_opens(). */
int gw_sim_hold_group(gw_sim *sim, const char *group, int pid, const char *comm);
void gw_sim_after_write_hold(gw_sim *sim, const char *trigger, const char *group, int pid, const char *comm);
void gw_sim_release_group(gw_sim *sim, const char *group, int pid);
/* How many processes' opens of /dev/vfio/<group> were refused so far. */
size_t gw_sim_refused_opens(gw_sim *sim, const char *group);
/* Process `pid` opens /dev/vfio/<group> just before the next hold() of it:
 * invisible to any /proc scan before that hold, which then gets -EBUSY. */
void gw_sim_race_hold(gw_sim *sim, const char *group, int pid, const char *comm);
/* Set `path`'s content now. */
void gw_sim_set(gw_sim *sim, const char *path, const void *data, size_t len);

/* The write log, in order: path, bytes, and the errno result (0 = done). */
size_t gw_sim_write_count(gw_sim *sim);
int gw_sim_write_at(gw_sim *sim, size_t i, const char **path, const void **data, size_t *len, int *result);
/* The groups held through hold() when write i was made ("10", "10,11", ""). */
int gw_sim_write_held(gw_sim *sim, size_t i, const char **groups);
/* Writes whose path ends with `suffix` ("/reset"). */
size_t gw_sim_count_writes(gw_sim *sim, const char *suffix);
/* Write i's config offset, -1 for a write to an attribute. */
int gw_sim_write_offset(gw_sim *sim, size_t i, long *offset);

/* ---- VFIO (hostops_sim_vfio.c) ---- */

/* BAR `bar` of `address` has `size` bytes of memory, every byte `fill`,
 * readable, writable and mappable. */
void gw_sim_bar_set(gw_sim *sim, const char *address, unsigned int bar, size_t size, uint8_t fill);
/* Its region flags from now on (GW_VFIO_REGION_*): without MMAP only reads
 * and writes reach it; without READ nothing can verify it. */
void gw_sim_bar_flags(gw_sim *sim, const char *address, unsigned int bar, unsigned int flags);
/* Its bytes now; NULL when the test gave it none. */
const uint8_t *gw_sim_bar_data(gw_sim *sim, const char *address, unsigned int bar, size_t *size);
/* Behind the scrub: once the byte at `offset` has been written over (by a
 * write covering it, or when a mapping of the BAR is unmapped) it reads
 * `value` - a device engine still writing, or a cell that does not hold a
 * zero. Once. */
void gw_sim_bar_inject(gw_sim *sim, const char *address, unsigned int bar, uint64_t offset, uint8_t value);
/* Every VFIO device open fails with `err` (negative errno; 0 = no more). */
void gw_sim_vfio_fail_open(gw_sim *sim, int err);
/* The VFIO log, in order: "open A", "map A 2", "unmap A 2", "write A 2",
 * "read A 2", "hot_reset_info A", "hot_reset A groups 10,11", "close A";
 * the count of entries starting with `prefix` ("" = all). */
size_t gw_sim_vfio_count(gw_sim *sim, const char *prefix);

#endif
