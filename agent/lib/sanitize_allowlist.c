/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's ROM allowlist file: "ID SHA256" lines. */
#include <ctype.h>
#include <string.h>

#include "sanitize_internal.h"

static bool hex_field(char *s, size_t want)
{
    size_t n = strlen(s);
    if (n != want)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return false;
        s[i] = (char)tolower((unsigned char)s[i]);
    }
    return true;
}

static bool id_field(char *s)
{
    size_t n = strlen(s);
    if (n != 9 && n != 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (i % 5 == 4) {
            if (s[i] != ':')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
        s[i] = (char)tolower((unsigned char)s[i]);
    }
    return true;
}

GW_EXTERN void gw_rom_allowlist_free(gw_rom_allow *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++) {
        free((char *)list[i].id);
        free((char *)list[i].sha256);
    }
    free(list);
}

GW_EXTERN int gw_rom_allowlist_load(const char *path, gw_rom_allow **out, size_t *n)
{
    if (!path || !out || !n)
        return gw_error_set(-EINVAL, "gw_rom_allowlist_load: NULL argument");
    _cleanup_free_ char *text = NULL;
    int r = gw_read_file(path, &text);
    if (r < 0)
        return r;
    gw_rom_allow *v = NULL;
    size_t count = 0;
    unsigned lineno = 0;
    char *save = NULL;
    /* strtok_r on "\n" would skip empty lines and lose the numbering. */
    for (char *line = text; line; line = save) {
        lineno++;
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *f[3] = { NULL, NULL, NULL };
        int nf = 0;
        char *tok_save = NULL;
        for (char *t = strtok_r(line, " \t\r", &tok_save); t; t = strtok_r(NULL, " \t\r", &tok_save))
            f[nf < 3 ? nf++ : 2] = t;
        if (nf == 0)
            continue;
        const char *bad = NULL;
        if (nf != 2)
            bad = "expected 'ID SHA256'";
        else if (!id_field(f[0]))
            bad = "ID is not vvvv:dddd or vvvv:dddd:ssss:ssss";
        else if (!hex_field(f[1], 64))
            bad = "SHA256 is not 64 hex digits";
        if (bad) {
            gw_rom_allowlist_free(v, count);
            return gw_error_set(-EINVAL, "%s:%u: %s", path, lineno, bad);
        }
        v = gw_xrealloc(v, count + 1, sizeof *v);
        v[count].id = gw_xstrdup(f[0]);
        v[count].sha256 = gw_xstrdup(f[1]);
        count++;
    }
    *out = v;
    *n = count;
    return 0;
}
