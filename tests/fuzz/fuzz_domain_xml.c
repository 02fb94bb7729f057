/* SPDX-License-Identifier: Apache-2.0 */
/* Domain XML to the PCI host addresses it passes through
 * (agent/lib/attach_xml.c, libxml2 underneath): what the libvirt hook and
 * the daemon's libvirt watcher hand over for every VM that starts or stops.
 *
 * Invariants: every address returned is canonical ("dddd:bb:ss.f"), the
 * list is sorted and duplicate-free, a name is returned exactly when asked
 * for, and asking for the name does not change the addresses. */
#include <gpuwarden/attach.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "util.h"

static size_t check_list(char **list)
{
    size_t n = 0;
    for (; list[n]; n++) {
        if (strlen(list[n]) != 12 || !gw_is_bdf(list[n]))
            gw_fuzz_fail("'%s' is not a canonical PCI address", list[n]);
        if (n > 0 && strcmp(list[n - 1], list[n]) >= 0)
            gw_fuzz_fail("'%s' after '%s': not sorted or not unique", list[n], list[n - 1]);
    }
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char **with = NULL, **without = NULL, *name = NULL;
    int r1 = gw_domain_xml_pci_sources((const char *)data, size, &with, &name);
    int r2 = gw_domain_xml_pci_sources((const char *)data, size, &without, NULL);
    if (r1 == 0) {
        if (!with || !name || !name[0])
            gw_fuzz_fail("success without the list or the name");
        size_t n = check_list(with);
        if (r2 < 0 || check_list(without) != n)
            gw_fuzz_fail("asking for the name changed the addresses");
        for (size_t i = 0; i < n; i++)
            if (strcmp(with[i], without[i]))
                gw_fuzz_fail("asking for the name changed the addresses");
    } else if (with || name) {
        gw_fuzz_fail("results handed out with an error");
    }
    gw_attach_list_free(with);
    gw_attach_list_free(without);
    free(name);
    return 0;
}
