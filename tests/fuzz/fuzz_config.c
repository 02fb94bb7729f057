/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's config file parser (agent/daemon/config.c on inih, with the
 * library's [model vvvv:dddd] policy keys, sanitize_policy.c): the daemon is
 * not a library, so this target compiles agent/daemon/config.c itself and
 * drives it as main() does, `gpuwardend --config FILE`, then as SIGHUP does
 * (gwd_config_reload()).
 *
 * Invariants: a file that loads reloads (start-up and reload share one
 * validation); a reload that fails leaves the running config as it was;
 * every string option is set after a load. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    gw_fuzz_write(gw_fuzz_path(path, sizeof path, "gpuwarden.conf"), data, size);
    char arg0[] = "gpuwardend", arg1[] = "--config";
    char *argv[] = { arg0, arg1, path, NULL };
    gwd_config cfg;
    int rc = gwd_config_load(&cfg, 3, argv);
    if (rc == 0) {
        const char *strs[] = { cfg.host_root, cfg.state_dir, cfg.admin_endpoint, cfg.read_endpoint,
                               cfg.events_endpoint, cfg.host_backend, cfg.log_level, cfg.inventory_model,
                               cfg.isolation_policy, cfg.clique_override, cfg.extra_traits };
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
            if (!strs[i])
                gw_fuzz_fail("string option %zu unset after a load", i);
        size_t models = cfg.n_models;
        long workers = cfg.cleanup_workers;
        if (gwd_config_reload(&cfg) != 0)
            gw_fuzz_fail("a config that loads does not reload");
        if (cfg.n_models != models || cfg.cleanup_workers != workers)
            gw_fuzz_fail("reloading the same file changed the config");
        static const char bad[] = "[daemon]\nno_such_option = 1\n";
        gw_fuzz_write(path, bad, sizeof bad - 1);
        if (gwd_config_reload(&cfg) == 0 || cfg.n_models != models || cfg.cleanup_workers != workers)
            gw_fuzz_fail("a reload that fails changed the running config");
    }
    gwd_config_free(&cfg);
    return 0;
}
