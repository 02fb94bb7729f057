/* SPDX-License-Identifier: Apache-2.0 */
/* The CURVE allow-list (agent/daemon/config.c, [daemon] curve_allowlist):
 * "<name> <Z85 public key>" lines, read at start-up and at every SIGHUP.
 *
 * Invariants: every entry has a name of 1..64 characters of [A-Za-z0-9._@+-]
 * and a 40-character key that decodes as Z85; no name and no key appears
 * twice; each key looks up its own name; nothing is handed out with an error. */
#include <ctype.h>
#include <string.h>
#include <zmq.h>

#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

static void check_entry(const gwd_allowlist *list, size_t i)
{
    const char *name = list->keys[i].name, *key = list->keys[i].key;
    size_t nl = strlen(name);
    if (nl < 1 || nl > 64)
        gw_fuzz_fail("entry %zu: name of %zu characters", i, nl);
    for (size_t k = 0; k < nl; k++)
        if (!isalnum((unsigned char)name[k]) && !strchr("._@+-", name[k]))
            gw_fuzz_fail("entry %zu: name '%s'", i, name);
    uint8_t raw[32];
    if (strlen(key) != 40 || !zmq_z85_decode(raw, key))
        gw_fuzz_fail("entry %zu: key '%s'", i, key);
    if (gwd_allowlist_name(list, key) != list->keys[i].name)
        gw_fuzz_fail("entry %zu: its key does not look up its name", i);
    for (size_t j = 0; j < i; j++)
        if (!strcmp(list->keys[j].name, name) || !strcmp(list->keys[j].key, key))
            gw_fuzz_fail("entries %zu and %zu share a name or a key", j, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    gw_fuzz_write(gw_fuzz_path(path, sizeof path, "curve-allowlist"), data, size);
    gwd_allowlist *list = NULL;
    int r = gwd_allowlist_load(path, &list);
    if (r == 0) {
        if (!list)
            gw_fuzz_fail("success without a list");
        for (size_t i = 0; i < list->n; i++)
            check_entry(list, i);
    } else if (list) {
        gw_fuzz_fail("a list handed out with an error");
    }
    gwd_allowlist_free(list);
    return 0;
}
