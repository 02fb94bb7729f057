/* SPDX-License-Identifier: Apache-2.0 */
/* The per-test world the clean-up tests on the simulated backend share: the
 * fixture host tree, the simulated backend over it, an in-memory attachment
 * source, a policy that manages NVIDIA (10de) and an empty hooks directory
 * of the test's own. Kept in one place so that every test binary builds the
 * same world and a change to it (a new policy default, a new request field)
 * is made once. Header-only, like sanitize_fixture.h: each test binary
 * includes it once, after <cmocka.h>, and owns the one world W. */
#ifndef GW_SANITIZE_WORLD_H
#define GW_SANITIZE_WORLD_H

#include "hostops_sim.h"
#include "sanitize_fixture.h"
#include "sanitize_internal.h"

/* fx_std(n)'s first GPU and its HDA function. */
#define GPU "0000:03:00.0"
#define HDA "0000:03:00.1"
#define DEV(a, attr) "sys/bus/pci/devices/" a "/" attr

typedef struct world {
    fx_host host;
    gw_hostops *ops;
    gw_sim *sim;
    fx_attach att;
    gw_sanitize_policy pol;
    uint16_t vendors[1];
    gw_model_policy model; /* unused until a test points pol.models at it */
    char hooks[64];
    gw_fact pins[8];
    size_t n_pins;
    gw_sanitize_result *res;
} world;

static world W;

/* The fixture tree with `n_gpus` GPUs, not yet written: tests change the
 * tree in memory first, then call world_open(). */
static inline void world_init(int n_gpus)
{
    memset(&W, 0, sizeof W);
    fx_std(&W.host, n_gpus);
    fx_attach_init(&W.att);
    W.pol = (gw_sanitize_policy)GW_SANITIZE_POLICY_INIT;
    W.vendors[0] = 0x10de;
    W.pol.manage_vendors = W.vendors;
    W.pol.n_manage_vendors = 1;
    snprintf(W.hooks, sizeof W.hooks, "/tmp/gw-hooks-XXXXXX");
    assert_non_null(mkdtemp(W.hooks));
    W.pol.hooks_dir = W.hooks;
    /* The hooks the tests write are the test's own: whoever runs the suite
     * (root on a host, anyone on a workstation) is their owner. */
    W.pol.hooks_owner_uid = (unsigned)getuid();
}

/* Write the tree after the test's tweaks and open the simulated backend. */
static inline void world_open(void)
{
    fx_write(&W.host);
    assert_int_equal(gw_hostops_sim_new(&W.ops, &W.sim, W.host.root), 0);
}

static inline int world_setup1(void **state)
{
    (void)state;
    world_init(1);
    return 0;
}

/* Recursive, because tests leave hooks, scripts and allowlists in the hooks
 * directory; a failure fails the test rather than leaking /tmp. */
static inline int world_teardown(void **state)
{
    (void)state;
    gw_sanitize_result_free(W.res);
    W.res = NULL;
    gw_hostops_unref(W.ops);
    W.ops = NULL;
    fx_remove(&W.host);
    if (nftw(W.hooks, fx_rm_cb, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return -1;
    return 0;
}

/* One clean-up of `addr` with the world's pins; the result replaces the last. */
static inline void run_gpu(const char *addr)
{
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = addr;
    req.pins = W.pins;
    req.n_pins = W.n_pins;
    gw_sanitize_result_free(W.res);
    W.res = NULL;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), 0);
}

static inline void run(void) { run_gpu(GPU); }

/* The step `id` of the last result; a run that stopped before it fails the
 * test here, with the step's name, not at a NULL dereference. */
static inline const gw_step_result *step(gw_step_id id)
{
    for (size_t i = 0; i < gw_sanitize_result_step_count(W.res); i++)
        if (gw_sanitize_result_step(W.res, i)->step == id)
            return gw_sanitize_result_step(W.res, i);
    fail_msg("no step %s in the result", gw_step_name(id));
    return NULL;
}

#define assert_contains(hay, needle)                                                       \
    do {                                                                                   \
        const char *h_ = (hay);                                                            \
        if (!h_ || !strstr(h_, (needle)))                                                  \
            fail_msg("'%s' not found in '%s'", (needle), h_ ? h_ : "(null)");              \
    } while (0)

#endif
