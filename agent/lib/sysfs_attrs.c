/* SPDX-License-Identifier: Apache-2.0 */
#include "sysfs_attrs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* Read dir/name inside the root; -ENOENT (message set) when absent. A link
 * out of the root is -EXDEV, an error: never read, never taken as absent. */
static int read_attr(const gw_root *r, const char *dir, const char *name, char **out)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/%s", dir, name);
    return gw_root_read_file(r, path, out);
}

int gw_attr_reset_methods(const gw_root *r, const char *dir, gw_strv *out)
{
    _cleanup_free_ char *s = NULL;
    int rc = read_attr(r, dir, "reset_method", &s);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
        gw_strv_push(out, gw_xstrdup(tok));
    return 0;
}

double gw_parse_link_speed(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return 0;
    return v;
}

static int link_speed(const gw_root *r, const char *dir, const char *name, double *out, bool *found)
{
    _cleanup_free_ char *s = NULL;
    int rc = read_attr(r, dir, name, &s);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    *found = true;
    *out = gw_parse_link_speed(s);
    if (*out == 0 && strncmp(s, "Unknown", 7) != 0)
        return gw_error_set(-EINVAL, "%s/%s/%s: not a link speed: '%.32s'", r->shown, dir, name, s);
    return 0;
}

static int link_width(const gw_root *r, const char *dir, const char *name, int *out, bool *found)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/%s", dir, name);
    long v;
    int rc = gw_root_read_long(r, path, 10, &v);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    *found = true;
    if (v == 255) {
        *out = 0;   /* PCIE_LNK_WIDTH_UNKNOWN: no Link Capabilities (e.g. an RCiEP) */
        return 0;
    }
    if (v < 0 || v > 63)
        return gw_error_set(-EINVAL, "%s/%s: link width %ld out of range", r->shown, path, v);
    *out = (int)v;
    return 0;
}

int gw_attr_link(const gw_root *r, const char *dir, gw_link *out)
{
    bool found = false;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = link_speed(r, dir, "current_link_speed", &out->speed_gts, &found)) < 0 ||
        (rc = link_width(r, dir, "current_link_width", &out->width, &found)) < 0 ||
        (rc = link_speed(r, dir, "max_link_speed", &out->max_speed_gts, &found)) < 0 ||
        (rc = link_width(r, dir, "max_link_width", &out->max_width, &found)) < 0)
        return rc;
    out->present = found;
    return 0;
}

static int aer_total(const gw_root *r, const char *dir, const char *name, const char *key, long *out)
{
    _cleanup_free_ char *s = NULL;
    *out = -1;
    int rc = read_attr(r, dir, name, &s);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    size_t klen = strlen(key);
    for (char *line = s; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) || line[klen] != ' ')
            continue;
        char *end;
        errno = 0;
        long v = strtol(line + klen + 1, &end, 10);
        if (errno || end == line + klen + 1 || v < 0 || (*end && *end != '\n'))
            return gw_error_set(-EINVAL, "%s/%s/%s: bad %s line", r->shown, dir, name, key);
        *out = v;
        return 0;
    }
    return gw_error_set(-EINVAL, "%s/%s/%s: no %s line", r->shown, dir, name, key);
}

int gw_attr_aer(const gw_root *r, const char *dir, gw_aer_counts *out)
{
    int rc;
    if ((rc = aer_total(r, dir, "aer_dev_correctable", "TOTAL_ERR_COR", &out->correctable)) < 0 ||
        (rc = aer_total(r, dir, "aer_dev_fatal", "TOTAL_ERR_FATAL", &out->fatal)) < 0 ||
        (rc = aer_total(r, dir, "aer_dev_nonfatal", "TOTAL_ERR_NONFATAL", &out->nonfatal)) < 0)
        return rc;
    return 0;
}

int gw_attr_numa_node(const gw_root *r, const char *dir, int *out)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/numa_node", dir);
    long v;
    *out = -1;
    int rc = gw_root_read_long(r, path, 10, &v);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (v < -1 || v > INT_MAX)
        return gw_error_set(-EINVAL, "%s/%s: %ld is not a NUMA node", r->shown, path, v);
    *out = (int)v;
    return 0;
}

int gw_attr_local_cpulist(const gw_root *r, const char *dir, char **out)
{
    *out = NULL;
    int rc = read_attr(r, dir, "local_cpulist", out);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (strspn(*out, "0123456789,-") != strlen(*out)) {
        rc = gw_error_set(-EINVAL, "%s/%s/local_cpulist: not a CPU list: '%.32s'", r->shown, dir, *out);
        free(*out);
        *out = NULL;
    }
    return rc;
}

int gw_attr_bar_sizes(const gw_root *r, const char *dir, uint64_t sizes[6])
{
    _cleanup_free_ char *s = NULL;
    memset(sizes, 0, 6 * sizeof *sizes);
    int rc = read_attr(r, dir, "resource", &s);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    char *line = s;
    for (int i = 0; i < 6 && line && *line; i++) {
        unsigned long long start, end, flags;
        if (sscanf(line, "%llx %llx %llx", &start, &end, &flags) != 3)
            return gw_error_set(-EINVAL, "%s/%s/resource: line %d is not 'start end flags'", r->shown, dir, i + 1);
        sizes[i] = end > start ? end - start + 1 : 0;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

bool gw_attr_rom_present(const gw_root *r, const char *dir)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/rom", dir);
    struct stat st;
    return gw_root_stat(r->fd, path, &st) == 0;
}
