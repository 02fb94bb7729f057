/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's clique override file (NVLink partitions).
 *
 * Parsed by hand rather than with inih: the format is one "id = list" line
 * per clique with no sections, every error must name its line, and Debian's
 * inih build caps lines at 200 characters, which a 16-GPU clique (16 x 13)
 * exceeds. */
#include <ctype.h>
#include <gpuwarden/inventory.h>
#include <string.h>

#include "inventory_internal.h"
#include "util.h"

typedef struct override_clique {
    int id;
    int line;
    char **members;             /* canonical BDFs, in file order */
    int *member_lines;
    size_t n_members;
} override_clique;

struct gw_clique_override {
    override_clique cliques[GW_MAX_CLIQUES];
    size_t n;
};

GW_EXTERN void gw_clique_override_free(gw_clique_override *ov)
{
    if (!ov)
        return;
    for (size_t i = 0; i < ov->n; i++) {
        for (size_t j = 0; j < ov->cliques[i].n_members; j++)
            free(ov->cliques[i].members[j]);
        free(ov->cliques[i].members);
        free(ov->cliques[i].member_lines);
    }
    free(ov);
}

static void ov_freep(gw_clique_override **p) { gw_clique_override_free(*p); }

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Where an address already is: its clique index and line, or false. */
static bool find_member(const gw_clique_override *ov, const char *addr, int *id, int *line)
{
    for (size_t i = 0; i < ov->n; i++) {
        const override_clique *c = &ov->cliques[i];
        for (size_t j = 0; j < c->n_members; j++) {
            if (!strcmp(c->members[j], addr)) {
                *id = c->id;
                *line = c->member_lines[j];
                return true;
            }
        }
    }
    return false;
}

static int parse_id(const char *origin, int lineno, const char *key, const gw_clique_override *ov, int *out)
{
    if (!*key)
        return gw_error_set(-EINVAL, "%s:%d: missing clique id before '='", origin, lineno);
    for (const char *p = key; *p; p++)
        if (!isdigit((unsigned char)*p))
            return gw_error_set(-EINVAL, "%s:%d: clique id '%s' is not a number 0-15", origin, lineno, key);
    if (ov->n >= GW_MAX_CLIQUES)
        return gw_error_set(-EINVAL, "%s:%d: more than %d cliques (QEMU's x-nv-gpudirect-clique id is "
                            "4 bits)", origin, lineno, GW_MAX_CLIQUES);
    if (strlen(key) > 2 || atoi(key) >= GW_MAX_CLIQUES)
        return gw_error_set(-EINVAL, "%s:%d: clique id %s is out of range 0-15", origin, lineno, key);
    int id = atoi(key);
    for (size_t i = 0; i < ov->n; i++)
        if (ov->cliques[i].id == id)
            return gw_error_set(-EINVAL, "%s:%d: clique %d is given twice (first on line %d)",
                                origin, lineno, id, ov->cliques[i].line);
    *out = id;
    return 0;
}

static int parse_members(const char *origin, int lineno, char *value, gw_clique_override *ov,
                         override_clique *c)
{
    for (char *save = NULL, *tok = strtok_r(value, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        for (char *p = tok; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!gw_is_bdf(tok))
            return gw_error_set(-EINVAL, "%s:%d: '%s' is not a PCI address like 0000:3b:00.0",
                                origin, lineno, tok);
        int other, other_line;
        if (find_member(ov, tok, &other, &other_line))
            return gw_error_set(-EINVAL, "%s:%d: %s is already in clique %d (line %d); cliques must not overlap",
                                origin, lineno, tok, other, other_line);
        c->members = gw_xrealloc(c->members, c->n_members + 1, sizeof *c->members);
        c->member_lines = gw_xrealloc(c->member_lines, c->n_members + 1, sizeof *c->member_lines);
        c->members[c->n_members] = gw_xstrdup(tok);
        c->member_lines[c->n_members++] = lineno;
    }
    if (c->n_members == 0)
        return gw_error_set(-EINVAL, "%s:%d: clique %d lists no GPUs", origin, lineno, c->id);
    if (c->n_members == 1)
        return gw_error_set(-EINVAL, "%s:%d: clique %d has one GPU (%s); a clique needs two or more",
                            origin, lineno, c->id, c->members[0]);
    return 0;
}

static int parse_line(const char *origin, int lineno, char *line, gw_clique_override *ov)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    line = trim(line);
    if (!*line)
        return 0;
    char *eq = strchr(line, '=');
    if (!eq)
        return gw_error_set(-EINVAL, "%s:%d: expected '<clique id> = <PCI address> <PCI address> ...'",
                            origin, lineno);
    *eq = '\0';
    int id = -1;
    int r = parse_id(origin, lineno, trim(line), ov, &id);
    if (r < 0)
        return r;
    /* Members are looked up in ov while parsing, so the clique joins it first
     * and is dropped again (by the caller's free) on error. */
    override_clique *c = &ov->cliques[ov->n++];
    *c = (override_clique){ .id = id, .line = lineno };
    return parse_members(origin, lineno, eq + 1, ov, c);
}

static int cmp_clique(const void *a, const void *b)
{
    return ((const override_clique *)a)->id - ((const override_clique *)b)->id;
}

GW_EXTERN int gw_clique_override_parse(gw_clique_override **out, const char *text, const char *origin)
{
    if (!out || !text)
        return gw_error_set(-EINVAL, "clique override: no text");
    if (!origin)
        origin = "cliques";
    _cleanup_(ov_freep) gw_clique_override *ov = gw_xcalloc(1, sizeof *ov);
    _cleanup_free_ char *copy = gw_xstrdup(text);
    int lineno = 0;
    for (char *line = copy; line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        int r = parse_line(origin, ++lineno, line, ov);
        if (r < 0)
            return r;
        line = nl ? nl + 1 : NULL;
    }
    qsort(ov->cliques, ov->n, sizeof ov->cliques[0], cmp_clique);
    *out = GW_TAKE(ov);
    return 0;
}

GW_EXTERN int gw_clique_override_load(gw_clique_override **out, const char *path)
{
    if (!path)
        return gw_error_set(-EINVAL, "clique override: no path");
    _cleanup_free_ char *text = NULL;
    int r = gw_read_file(path, &text);
    if (r < 0)
        return r;
    return gw_clique_override_parse(out, text, path);
}

GW_EXTERN size_t gw_clique_override_count(const gw_clique_override *ov) { return ov ? ov->n : 0; }

GW_EXTERN int gw_clique_override_id(const gw_clique_override *ov, size_t index)
{
    return ov && index < ov->n ? ov->cliques[index].id : -1;
}

GW_EXTERN size_t gw_clique_override_size(const gw_clique_override *ov, size_t index)
{
    return ov && index < ov->n ? ov->cliques[index].n_members : 0;
}

GW_EXTERN const char *gw_clique_override_member(const gw_clique_override *ov, size_t index, size_t member)
{
    if (!ov || index >= ov->n || member >= ov->cliques[index].n_members)
        return NULL;
    return ov->cliques[index].members[member];
}

GW_EXTERN int gw_clique_override_lookup(const gw_clique_override *ov, const char *address)
{
    int id, line;
    if (!ov || !address || !find_member(ov, address, &id, &line))
        return -1;
    return id;
}

static const gw_inventory_gpu *find_gpu(const gw_inventory_gpu *gpus, size_t n, const char *address)
{
    for (size_t i = 0; i < n; i++)
        if (gpus[i].address && !strcmp(gpus[i].address, address))
            return &gpus[i];
    return NULL;
}

GW_EXTERN int gw_clique_override_check(const gw_clique_override *ov, const gw_inventory_gpu *gpus, size_t n_gpus)
{
    if (!ov)
        return 0;
    for (size_t i = 0; i < ov->n; i++) {
        const override_clique *c = &ov->cliques[i];
        for (size_t j = 0; j < c->n_members; j++) {
            const gw_inventory_gpu *g = find_gpu(gpus, n_gpus, c->members[j]);
            if (!g)
                return gw_error_set(-ENOENT, "clique override: %s (clique %d, line %d) is not a GPU on this host",
                                    c->members[j], c->id, c->member_lines[j]);
            if (g->vendor_id != 0x10de)
                return gw_error_set(-EINVAL, "clique override: %s (clique %d, line %d) is not an NVIDIA GPU "
                                    "(vendor %04x); QEMU's P2P clique hint applies to NVIDIA GPUs only",
                                    c->members[j], c->id, c->member_lines[j], g->vendor_id);
        }
    }
    return 0;
}
