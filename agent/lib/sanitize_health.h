/* SPDX-License-Identifier: Apache-2.0 */
/* The health step's two halves: sanitize_step_health.c (the step: identity,
 * link, BAR registers) and sanitize_health_errors.c (the error registers the
 * device keeps: PCI Status, PCIe Device Status, AER status, the kernel's AER
 * counters). Everything is read from live config space after the reset. */
#ifndef GW_SANITIZE_HEALTH_H
#define GW_SANITIZE_HEALTH_H

#include "sanitize_internal.h"

typedef struct gw_health {
    gw_sctx *c;
    int failures;
} gw_health;

/* Note a finding that fails the step. */
void gw_health_problem(gw_health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The error status of the GPU (judged, then cleared) and of its upstream
 * port and root port (recorded), and the kernel's AER counters of the GPU
 * and its link partner (judged against the pins). `up` is the bridge chain
 * from gw_dev_upstream(), parent first; may be empty. */
void gw_health_errors(gw_health *h, const gw_addrlist *up);

#endif
