/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's clique override file (agent/lib/clique_override.c), parsed
 * from text and from a file as the daemon loads it, then checked against a
 * host's GPUs.
 *
 * Invariants: text and file give the same cliques; ids ascend and each
 * member looks itself up; members are canonical addresses; the override
 * passes gw_clique_override_check() against exactly its own members as
 * NVIDIA GPUs, and fails it (-ENOENT) when one is missing and (-EINVAL)
 * when one is another vendor's. */
#include <gpuwarden/inventory.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "util.h"

static size_t members(const gw_clique_override *ov)
{
    size_t total = 0;
    for (size_t i = 0; i < gw_clique_override_count(ov); i++) {
        int id = gw_clique_override_id(ov, i);
        if (id < 0 || id >= GW_MAX_CLIQUES || (i > 0 && gw_clique_override_id(ov, i - 1) >= id))
            gw_fuzz_fail("clique %zu has id %d", i, id);
        size_t n = gw_clique_override_size(ov, i);
        if (n < 2)
            gw_fuzz_fail("clique %d of %zu GPU(s) accepted", id, n);
        for (size_t j = 0; j < n; j++) {
            const char *a = gw_clique_override_member(ov, i, j);
            if (!a || strlen(a) != 12 || !gw_is_bdf(a))
                gw_fuzz_fail("clique %d member %zu is not a canonical address", id, j);
            if (gw_clique_override_lookup(ov, a) != id)
                gw_fuzz_fail("%s looks up to %d, listed in %d", a, gw_clique_override_lookup(ov, a), id);
        }
        if (gw_clique_override_member(ov, i, n))
            gw_fuzz_fail("a member past the end of clique %d", id);
        total += n;
    }
    return total;
}

static void check_against_gpus(const gw_clique_override *ov, size_t total)
{
    gw_inventory_gpu *gpus = gw_xcalloc(total + 1, sizeof *gpus);
    size_t k = 0;
    for (size_t i = 0; i < gw_clique_override_count(ov); i++)
        for (size_t j = 0; j < gw_clique_override_size(ov, i); j++)
            gpus[k++] = (gw_inventory_gpu){ .address = gw_clique_override_member(ov, i, j), .vendor_id = 0x10de,
                                            .device_id = 0x2330, .numa_node = -1, .clique = -1 };
    if (gw_clique_override_check(ov, gpus, total) != 0)
        gw_fuzz_fail("an override fails against its own members: %s", gw_error_message());
    if (total > 0) {
        if (gw_clique_override_check(ov, gpus, total - 1) != -ENOENT)
            gw_fuzz_fail("an override passes with a member missing");
        gpus[0].vendor_id = 0x1002;
        if (gw_clique_override_check(ov, gpus, total) != -EINVAL)
            gw_fuzz_fail("an override passes with a member not NVIDIA's");
    }
    free(gpus);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = gw_fuzz_cstr(data, size);
    gw_clique_override *ov = NULL, *from_file = NULL;
    int r = gw_clique_override_parse(&ov, text, "fuzz");

    char path[512];
    gw_fuzz_write(gw_fuzz_path(path, sizeof path, "cliques"), text, strlen(text));
    int rf = gw_clique_override_load(&from_file, path);
    if ((r == 0) != (rf == 0))
        gw_fuzz_fail("text and file disagree: %d and %d", r, rf);

    if (r == 0) {
        size_t total = members(ov);
        if (members(from_file) != total || gw_clique_override_count(from_file) != gw_clique_override_count(ov))
            gw_fuzz_fail("text and file give different cliques");
        if (gw_clique_override_lookup(ov, "not an address") != -1)
            gw_fuzz_fail("lookup of a string that is no address found a clique");
        check_against_gpus(ov, total);
    } else if (ov) {
        gw_fuzz_fail("an override handed out with an error");
    }
    gw_clique_override_free(ov);
    gw_clique_override_free(from_file);
    free(text);
    return 0;
}
