/* SPDX-License-Identifier: Apache-2.0 */
#include "strv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void gw_strv_push(gw_strv *l, char *s)
{
    l->v = gw_xrealloc(l->v, l->n + 2, sizeof *l->v);
    l->v[l->n++] = s;
    l->v[l->n] = NULL;
}

void gw_strv_pushf(gw_strv *l, const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    gw_strv_push(l, s);
}

void gw_strv_free(gw_strv *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

long gw_strv_find(const gw_strv *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s))
            return (long)i;
    return -1;
}

char **gw_strv_steal(gw_strv *l, size_t *n)
{
    char **v = l->v ? l->v : gw_xcalloc(1, sizeof *v);
    *n = l->n;
    l->v = NULL;
    l->n = 0;
    return v;
}
