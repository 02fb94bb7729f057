/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the attachment modules (attach*.c), shared with their tests. */
#ifndef GW_ATTACH_INTERNAL_H
#define GW_ATTACH_INTERNAL_H

#include <gpuwarden/attach.h>

#include "libvirt_dl.h"     /* libvirt's types; its functions through sym_ pointers */

/* Same domain:bus:device (both canonical addresses). */
bool gw_attach_same_slot(const char *a, const char *b);

/* NULL-terminated string lists: add (no duplicates), sort, compare. */
char **gw_attach_list_empty(void);
void gw_attach_list_add(char ***list, size_t *n, const char *s);
void gw_attach_list_sort(char **list, size_t n);
bool gw_attach_list_equal(char *const *a, char *const *b);

/*
 * The process-wide libvirt event loop: virEventRegisterDefaultImpl() once,
 * and one thread running virEventRunDefaultImpl() while anybody holds a
 * reference. Acquire before opening a connection that registers callbacks;
 * release after closing it. Loads libvirt first (gw_libvirt_dlopen()).
 */
int gw_virt_loop_acquire(void);
void gw_virt_loop_release(void);

/* For tests: the watcher's current connection with a reference taken
 * (virConnectClose() it), or NULL while disconnected. The test driver is
 * in-process and a test:///file URI reads the file afresh at each open, so
 * a test changes domains through this very connection. */
virConnectPtr gw_attach_libvirt_connection(gw_attach_source *src);

/* For tests: what the libvirt close callback does when libvirtd goes away
 * (the test driver never closes on its own). */
void gw_attach_libvirt_connection_lost(gw_attach_source *src, int reason);

#endif
