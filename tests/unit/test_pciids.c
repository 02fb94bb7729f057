/* SPDX-License-Identifier: Apache-2.0 */
/* pciids.c answers every vendor and device name exactly as libpci's
 * pci_lookup_name() does, on the system's pci.ids and on files that libpci
 * reads in its own ways (where pciids.c must hand over to libpci). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pciaccess.h"
#include "pciids.h"
#include "util.h"

#define SYSTEM_IDS "/usr/share/misc/pci.ids"

static char *sysfs(void)
{
    return gw_strdup_printf("%s/tests/fixtures/hosts/omen-3060/sys/bus/pci", GW_SOURCE_DIR);
}

static void same(const char *a, const char *b, const char *what, unsigned v, unsigned d)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b)))
        fail_msg("%s %04x:%04x: pciids '%s', libpci '%s'", what, v, d, a ? a : "(null)", b ? b : "(null)");
}

/* Every vendor id, and every device of the ids a file names plus one it
 * does not, compared with libpci's answer through the same gw_pci. */
static void compare_all(const char *ids, const uint16_t (*devs)[2], size_t n_devs)
{
    _cleanup_free_ char *root = sysfs();
    gw_pci *p = NULL;
    assert_int_equal(gw_pci_open(&p, root, ids), 0);
    for (unsigned v = 0; v <= 0xffff; v++) {
        _cleanup_free_ char *a = gw_pci_vendor_name(p, (uint16_t)v);
        _cleanup_free_ char *b = gw_pci_libpci_name(p, false, (uint16_t)v, 0);
        same(a, b, "vendor", v, 0);
    }
    for (size_t i = 0; i < n_devs; i++) {
        for (unsigned k = 0; k < 2; k++) {
            uint16_t v = devs[i][0], d = (uint16_t)(devs[i][1] + k);
            _cleanup_free_ char *a = gw_pci_device_name(p, v, d);
            _cleanup_free_ char *b = gw_pci_libpci_name(p, true, v, d);
            same(a, b, "device", v, d);
        }
    }
    gw_pci_close(p);
}

static void system_pci_ids_agrees_with_libpci(void **state)
{
    (void)state;
    if (access(SYSTEM_IDS, R_OK) < 0)
        skip();
    gw_ids *t = NULL;
    assert_int_equal(gw_ids_load(&t, SYSTEM_IDS), 0);     /* the fast index is what is tested */
    gw_ids_free(t);
    /* Every (vendor, device) line of the file. */
    FILE *f = fopen(SYSTEM_IDS, "r");
    assert_non_null(f);
    char line[1100];
    size_t n = 0, cap = 0;
    uint16_t(*devs)[2] = NULL;
    unsigned vendor = 0;
    bool in_vendor = false;
    while (fgets(line, sizeof line, f)) {
        unsigned id;
        if (line[0] != '\t' && line[0] != '#' && sscanf(line, "%4x ", &id) == 1 && line[4] == ' ') {
            vendor = id;
            in_vendor = true;
        } else if (line[0] == 'C' && line[1] == ' ') {
            in_vendor = false;
        } else if (in_vendor && line[0] == '\t' && line[1] != '\t' && sscanf(line + 1, "%4x", &id) == 1) {
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                devs = gw_xrealloc(devs, cap, sizeof *devs);
            }
            devs[n][0] = (uint16_t)vendor;
            devs[n][1] = (uint16_t)id;
            n++;
        }
    }
    fclose(f);
    assert_true(n > 10000);
    compare_all(SYSTEM_IDS, (const uint16_t(*)[2])devs, n);
    free(devs);
}

struct edge {
    const char *what;
    const char *text;
    int load;                   /* gw_ids_load()'s answer: 0 or GW_IDS_LIBPCI */
};

static const struct edge edges[] = {
    { "plain", "# c\n\n10de  NVIDIA Corporation\n\t2230  GA102GL [RTX A6000]\n\t2231  x\n"
               "\t\t10de 1459  sub\n15b3  Mellanox\n\t1021  CX7\nC 03  Display\n\t00  VGA\n\t\t00  VGA ctl\n", 0 },
    { "CRLF, trailing blanks, blank lines, comments",
      "10de  NVIDIA Corporation \r\n\t2230  GA102GL\t\r\n   \n\t# not a device\n#x\n15b3  Mellanox  \n", 0 },
    { "unknown block", "10de  NVIDIA\nX 01  Something\n\tzz  ignored\n\t\tyy ignored\n15b3  Mellanox\n", 0 },
    { "no final newline", "10de  NVIDIA\n\t2230  GA102GL", GW_IDS_LIBPCI },
    { "duplicate vendor", "10de  NVIDIA\n15b3  Mellanox\n10de  Again\n", GW_IDS_LIBPCI },
    { "duplicate device", "10de  NVIDIA\n\t2230  a\n\t2230  b\n", GW_IDS_LIBPCI },
    { "out of order, no duplicate", "15b3  Mellanox\n10de  NVIDIA\n\t2231  b\n\t2230  a\n", GW_IDS_LIBPCI },
    { "parse error", "10de  NVIDIA\n\tzzzz  bad\n", GW_IDS_LIBPCI },
    { "missing name", "10de  NVIDIA\n\t2230  \n", GW_IDS_LIBPCI },
    { "nested too deep", "10de  NVIDIA\n\t2230  a\n\t\t\t1 b\n", GW_IDS_LIBPCI },
    { "generic subsystem block", "10de  NVIDIA\nS 10de\n\t1459  sub\n", GW_IDS_LIBPCI },
    { "NUL byte", "10de  NV\0IDIA\n", GW_IDS_LIBPCI },
    { "empty", "", GW_IDS_LIBPCI },
};

static const uint16_t edge_devs[][2] = { { 0x10de, 0x2230 }, { 0x10de, 0x2231 }, { 0x15b3, 0x1021 },
                                         { 0x10de, 0x1459 } };

static void edge_files_agree_with_libpci(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-pciids-XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        _cleanup_free_ char *path = gw_strdup_printf("%s/%zu.ids", dir, i);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        size_t len = strlen(edges[i].text);
        if (!strcmp(edges[i].what, "NUL byte"))
            len = sizeof "10de  NV\0IDIA\n" - 1;
        assert_int_equal(fwrite(edges[i].text, 1, len, f), len);
        fclose(f);
        gw_ids *t = NULL;
        if (gw_ids_load(&t, path) != edges[i].load)
            fail_msg("%s: gw_ids_load() gave the other answer", edges[i].what);
        gw_ids_free(t);
        compare_all(path, edge_devs, sizeof edge_devs / sizeof *edge_devs);
        unlink(path);
    }
    rmdir(dir);
}

static void missing_file_gives_no_names(void **state)
{
    (void)state;
    gw_ids *t = NULL;
    assert_int_equal(gw_ids_load(&t, "/nonexistent/pci.ids"), GW_IDS_LIBPCI);
    assert_null(t);
    compare_all("/nonexistent/pci.ids", edge_devs, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(system_pci_ids_agrees_with_libpci),
        cmocka_unit_test(edge_files_agree_with_libpci),
        cmocka_unit_test(missing_file_gives_no_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
