/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* pci.ids names as libpci's pci_lookup_name() gives them, read faster
 * (pciids.c says how, and when libpci must be asked instead). */
#include <stdint.h>

typedef struct gw_ids gw_ids;

/* Returned by gw_ids_load() when only libpci can answer for this file
 * exactly (absent, compressed, a line libpci reads differently, a parse
 * error or duplicate libpci reports). */
#define GW_IDS_LIBPCI 1

/* 0 and *out set, or GW_IDS_LIBPCI (*out NULL). */
int gw_ids_load(gw_ids **out, const char *path);
void gw_ids_free(gw_ids *t);
/* The name (malloc'd), or NULL where pci.ids has none. */
char *gw_ids_vendor(const gw_ids *t, uint16_t vendor);
char *gw_ids_device(const gw_ids *t, uint16_t vendor, uint16_t device);
