/* SPDX-License-Identifier: Apache-2.0 */
/* The simulated backend's state, shared by its two halves: hostops_sim.c
 * (the overlay, writes, injected faults, the vtable) and hostops_sim_model.c
 * (the kernel's behaviour the clean-up depends on beyond plain attributes:
 * VFIO holders and the /proc view of them, the group node's single open,
 * runtime power, the ROM size the kernel lets a read see). */
#ifndef GW_HOSTOPS_SIM_INTERNAL_H
#define GW_HOSTOPS_SIM_INTERNAL_H

#include <pthread.h>

#include "hostops_sim.h"
#include "util.h"

typedef struct sim_file {
    char *path;
    char *data;
    size_t len;
} sim_file;

typedef struct sim_link {
    char *path;
    char *target;           /* NULL: removed */
} sim_link;

/* A process with /dev/vfio/<group> open on descriptor `fd`. */
typedef struct sim_holder {
    int pid;
    int fd;
    char *comm;
    char *group;
} sim_holder;

typedef struct sim_action sim_action;
typedef struct sim_wlog sim_wlog;

struct gw_sim {
    pthread_mutex_t lock;
    gw_hostops *base;       /* the test tree, read-only through the sysfs backend */
    sim_file *files;
    size_t n_files;
    sim_link *links;
    size_t n_links;
    sim_action *acts;
    size_t n_acts;
    sim_wlog *log;
    size_t n_log;
    char **rom_on;          /* rom attributes with reads enabled */
    size_t n_rom_on;
    sim_holder *holders;    /* processes holding group nodes */
    size_t n_holders;
    sim_holder *races;      /* holders that open their group just before our next hold of it */
    size_t n_races;
    char **held;            /* groups held through the backend's own hold() */
    size_t n_held;
    sim_holder *refused;    /* processes whose open of a group node the kernel refused (EBUSY) */
    size_t n_refused;
    struct sim_vfio *vfio;  /* hostops_sim_vfio.c: BAR memory, open devices, log */
};

/* Overlay primitives (hostops_sim.c); the lock is held by the caller. */
char *gw_sim_memdup0(const void *p, size_t n);
sim_file *gw_sim_file_find(gw_sim *s, const char *path);
void gw_sim_file_set(gw_sim *s, const char *path, const void *data, size_t len);
/* Current driver of `addr` (malloc'd, NULL when unbound). */
char *gw_sim_driver_of(gw_sim *s, const char *addr);
/* "sys/bus/pci/devices/<addr>/<attr>" -> addr, attr (pointer into path). */
bool gw_sim_split_dev_path(const char *path, char addr[GW_ADDR_LEN], const char **attr);

/* ---- hostops_sim_model.c; lock held unless said otherwise ---- */

/* Runtime power: power_state, power/runtime_status, power/control exist
 * for every device of the tree (from the tree where it has them). */
bool gw_sim_is_power_attr(const char *attr);
void gw_sim_power_init(gw_sim *s, const char *addr);
/* The driver of `addr` changed from `before` to `after` (either NULL). */
void gw_sim_power_on_bind(gw_sim *s, const char *addr, const char *before, const char *after);
int gw_sim_power_write(gw_sim *s, const char *path, const char *addr, const char *buf, size_t len);

/* pci_read_rom()'s view of a ROM BAR's bytes: *len cut to the images'
 * length, or -EIO when the first image is not valid. */
int gw_sim_rom_view(const char *path, const char *data, size_t *len);

/* hostops_sim_config.c: a config write to `path` ("sys/bus/pci/devices/<addr>/
 * config") at `offset`, into the overlay's copy (taken from the tree at the
 * first write), error status registers write-1-to-clear. */
int gw_sim_config_write(gw_sim *s, const char *path, unsigned int offset, const void *buf, size_t len);

/* The /proc view of the holders: 1 when `path` is one of theirs (answered),
 * 0 when the tree answers. */
int gw_sim_proc_list(gw_sim *s, const char *path, char ***names, size_t *n, int *r);
int gw_sim_proc_readlink(gw_sim *s, const char *path, char **out, int *r);
int gw_sim_proc_read(gw_sim *s, const char *path, size_t max, char **out, size_t *len, int *r);
int gw_sim_proc_exists(gw_sim *s, const char *path);
void gw_sim_holder_add(sim_holder **v, size_t *n, const char *group, int pid, const char *comm);
void gw_sim_holders_free(sim_holder *v, size_t n);
/* Groups held through hold(), comma-separated (for the write log). */
char *gw_sim_held_list(gw_sim *s);

/* The vtable's hold/release (they take the lock themselves). */
int gw_sim_hold(void *data, const char *path, void **handle);
/* Process `pid` opens /dev/vfio/<group>: refused with -EBUSY (and kept in
 * s->refused) while anyone has it open, as the kernel does; else it holds
 * it from now on. */
int gw_sim_process_open(gw_sim *s, const char *group, int pid, const char *comm);
void gw_sim_release(void *data, void *handle);

/* ---- hostops_sim_vfio.c: the vtable's version-3 operations (they take the
 * lock themselves), and the model's state, freed with the sim ---- */
int gw_sim_vfio_open(void *data, void *group, const char *address, void **device);
int gw_sim_vfio_region(void *data, void *device, unsigned int index, gw_vfio_region *out);
int gw_sim_vfio_map(void *data, void *device, unsigned int index, void **addr);
void gw_sim_vfio_unmap(void *data, void *device, unsigned int index, void *addr);
int gw_sim_vfio_read(void *data, void *device, unsigned int index, uint64_t offset, void *buf, size_t len);
int gw_sim_vfio_write(void *data, void *device, unsigned int index, uint64_t offset, const void *buf, size_t len);
int gw_sim_vfio_reset_info(void *data, void *device, gw_vfio_reset_dep **deps, size_t *n);
int gw_sim_vfio_hot_reset(void *data, void *device, void *const *groups, size_t n_groups);
void gw_sim_vfio_close(void *data, void *device);
void gw_sim_vfio_free(gw_sim *s);

#endif
