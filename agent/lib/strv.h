/* SPDX-License-Identifier: Apache-2.0 */
/* A growable list of owned strings (errors, reset methods, members). */
#ifndef GW_STRV_H
#define GW_STRV_H

#include <stddef.h>

typedef struct gw_strv {
    char **v;
    size_t n;
} gw_strv;

/* Append `s`, taking ownership. */
void gw_strv_push(gw_strv *l, char *s);
void gw_strv_pushf(gw_strv *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_strv_free(gw_strv *l);
/* Index of `s` in the list, or -1. */
long gw_strv_find(const gw_strv *l, const char *s);
/* Hand the array out (NULL-terminated, never NULL itself) and empty the list. */
char **gw_strv_steal(gw_strv *l, size_t *n);

#endif
