/* SPDX-License-Identifier: Apache-2.0 */
/* Small owned containers used by the clean-up: pin lists, address lists,
 * growable strings. */
#include <stdarg.h>
#include <string.h>

#include "sanitize_internal.h"

const char *gw_kvlist_get(const gw_kvlist *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].key, key))
            return l->v[i].value;
    return NULL;
}

void gw_kvlist_set(gw_kvlist *l, const char *key, const char *value)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i].key, key)) {
            free((char *)l->v[i].value);
            l->v[i].value = gw_xstrdup(value);
            return;
        }
    }
    l->v = gw_xrealloc(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n].key = gw_xstrdup(key);
    l->v[l->n].value = gw_xstrdup(value);
    l->n++;
}

void gw_kvlist_copy(gw_kvlist *dst, const gw_fact *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (src[i].key && src[i].value)
            gw_kvlist_set(dst, src[i].key, src[i].value);
}

void gw_kvlist_clear(gw_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->v[i].key);
        free((char *)l->v[i].value);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

bool gw_addrlist_has(const gw_addrlist *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], addr))
            return true;
    return false;
}

void gw_addrlist_add(gw_addrlist *l, const char *addr)
{
    if (gw_addrlist_has(l, addr))
        return;
    l->v = gw_xrealloc(l->v, l->n + 1, sizeof *l->v);
    snprintf(l->v[l->n], GW_ADDR_LEN, "%s", addr);
    l->n++;
}

void gw_addrlist_clear(gw_addrlist *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void gw_strbuf_append(gw_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (b->len + (size_t)n + 1 > cap)
            cap *= 2;
        b->s = gw_xrealloc(b->s, cap, 1);
        b->cap = cap;
    }
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void gw_strbuf_clear(gw_strbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

const char *gw_strbuf_str(const gw_strbuf *b) { return b->s ? b->s : ""; }

char *gw_escape_bytes(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    gw_strbuf b = { 0 };
    gw_strbuf_append(&b, "%s", "");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = p[i];
        if (ch == '\n')
            gw_strbuf_append(&b, "\\n");
        else if (ch == '\\' || ch == '\'')
            gw_strbuf_append(&b, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            gw_strbuf_append(&b, "\\x%02x", ch);
        else
            gw_strbuf_append(&b, "%c", ch);
    }
    return b.s;
}
