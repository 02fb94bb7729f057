/* SPDX-License-Identifier: Apache-2.0 */
/* The clean-up result's layout, for the pipeline that fills it. */
#ifndef GW_SANITIZE_RESULT_H
#define GW_SANITIZE_RESULT_H

#include "sanitize_internal.h"

struct gw_sanitize_result {
    char address[GW_ADDR_LEN];
    int64_t start_ms, end_ms;
    gw_verdict verdict;
    int failed;             /* gw_step_id or -1 */
    bool in_use;            /* it failed because the device is (or may be) in use */
    char *reason;
    gw_step_result *steps;  /* evidence owned */
    size_t n_steps;
    gw_kvlist pins;
};

gw_sanitize_result *gw_result_new(const char *address);
/* Append a step; the first failing one sets the verdict and reason. */
void gw_result_add_step(gw_sanitize_result *r, gw_step_id id, gw_verdict v, const char *evidence,
                        uint64_t duration_us);

#endif
