/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's ROM allowlist file (agent/lib/sanitize_allowlist.c): "ID
 * SHA256" lines, read by the daemon at start-up and on reload.
 *
 * Invariants: every entry has an ID of the form vvvv:dddd or
 * vvvv:dddd:ssss:ssss and a SHA-256 of 64 hex digits, both lower-case;
 * nothing is handed out with an error. */
#include <ctype.h>
#include <gpuwarden/sanitize.h>
#include <string.h>

#include "fuzz_common.h"

static bool lower_hex(const char *s, size_t n, bool colons)
{
    for (size_t i = 0; i < n; i++) {
        if (colons && i % 5 == 4) {
            if (s[i] != ':')
                return false;
        } else if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    gw_fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    gw_fuzz_write(gw_fuzz_path(path, sizeof path, "rom-allowlist"), data, size);
    gw_rom_allow *list = NULL;
    size_t n = 0;
    int r = gw_rom_allowlist_load(path, &list, &n);
    if (r == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t il = strlen(list[i].id);
            if ((il != 9 && il != 19) || !lower_hex(list[i].id, il, true))
                gw_fuzz_fail("entry %zu: ID '%s'", i, list[i].id);
            if (strlen(list[i].sha256) != 64 || !lower_hex(list[i].sha256, 64, false))
                gw_fuzz_fail("entry %zu: SHA-256 '%s'", i, list[i].sha256);
        }
    } else if (list || n) {
        gw_fuzz_fail("entries handed out with an error");
    }
    gw_rom_allowlist_free(list, n);
    return 0;
}
