/* The simulated host backend: a read-only test tree plus an in-memory
 * overlay, implementing the same vtable as the sysfs backend, that models
 * what the kernel does after a write and lets a test inject faults.
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
 *   reset             only "1" is accepted (-EINVAL); needs the attribute
 *   rom               exactly "0\n" disables reads, anything else enables;
 *                     reading while disabled is -EINVAL
 *   anything else     -EACCES (read-only)
 * Faults (all keyed by the written path, optionally by the written bytes):
 * a write that fails with an errno, a write that first sleeps (outside the
 * backend's lock, like a blocking kernel write), and after a successful
 * write new content for any attribute or config space, or a driver link
 * changed - all-ones after a reset, a link retraining narrower, an AER
 * counter going up, a probe that binds a host driver.
 * Nothing is ever written to the tree. Every write is logged. */
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
/* After a successful write to `trigger` (with bytes `trigger_data` when not
 * NULL), device `address` is bound to `driver` (NULL: unbound). */
void gw_sim_after_write_bind(gw_sim *sim, const char *trigger, const char *trigger_data, const char *address,
                             const char *driver);
/* Set `path`'s content now. */
void gw_sim_set(gw_sim *sim, const char *path, const void *data, size_t len);

/* The write log, in order: path, bytes, and the errno result (0 = done). */
size_t gw_sim_write_count(gw_sim *sim);
int gw_sim_write_at(gw_sim *sim, size_t i, const char **path, const void **data, size_t *len, int *result);
/* Writes whose path ends with `suffix` ("/reset"). */
size_t gw_sim_count_writes(gw_sim *sim, const char *suffix);

#endif
