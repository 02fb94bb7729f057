/* SPDX-License-Identifier: Apache-2.0 */
/* The attachment-source interface: dispatch through the vtable and the small
 * list helpers every source shares. */
#include <gpuwarden/attach.h>
#include <string.h>

#include "attach_internal.h"
#include "util.h"

GW_EXTERN void gw_attach_list_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

static int check_source(const gw_attach_source *src, const char *what)
{
    if (!src || !src->ops || src->ops->version != GW_ATTACH_SOURCE_OPS_VERSION)
        return gw_error_set(-EINVAL, "%s: not an attachment source (NULL or unknown ops version)", what);
    return 0;
}

GW_EXTERN int gw_attach_query(gw_attach_source *src, const char *address, char ***domains)
{
    if (domains)
        *domains = NULL;
    int r = check_source(src, "attach query");
    if (r < 0)
        return r;
    if (!domains || !address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "attach query: '%s' is not a PCI address (dddd:bb:dd.f)",
                            address ? address : "(null)");
    if (!src->ops->query)
        return gw_error_set(-EOPNOTSUPP, "attach query: source '%s' cannot be queried", src->ops->name);
    return src->ops->query(src, address, domains);
}

GW_EXTERN int gw_attach_reconcile(gw_attach_source *src)
{
    int r = check_source(src, "attach reconcile");
    if (r < 0)
        return r;
    if (!src->ops->reconcile)
        return gw_error_set(-EOPNOTSUPP, "attach reconcile: source '%s' has none", src->ops->name);
    return src->ops->reconcile(src);
}

GW_EXTERN const char *gw_attach_source_name(const gw_attach_source *src)
{
    return src && src->ops && src->ops->name ? src->ops->name : "";
}

GW_EXTERN void gw_attach_source_free(gw_attach_source *src)
{
    if (src && src->ops && src->ops->free)
        src->ops->free(src);
}

bool gw_attach_same_slot(const char *a, const char *b)
{
    /* "dddd:bb:dd" is the first 10 characters of a canonical address. */
    return strncmp(a, b, 10) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void gw_attach_list_add(char ***list, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[i], s))
            return;
    *list = gw_xrealloc(*list, *n + 2, sizeof **list);
    (*list)[(*n)++] = gw_xstrdup(s);
    (*list)[*n] = NULL;
}

void gw_attach_list_sort(char **list, size_t n)
{
    if (n > 1)
        qsort(list, n, sizeof *list, cmp_str);
}

char **gw_attach_list_empty(void)
{
    return gw_xcalloc(1, sizeof(char *));
}

bool gw_attach_list_equal(char *const *a, char *const *b)
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]))
            return false;
    return !a[i] && !b[i];
}
