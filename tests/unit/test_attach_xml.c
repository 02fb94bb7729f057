/* SPDX-License-Identifier: Apache-2.0 */
/* `gpuwarden xml`: exact output on a synthetic host with cliques, and the
 * output inside a full domain validates (virt-xml-validate) and is accepted
 * by libvirt's test driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <gpuwarden/attach.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#pragma GCC diagnostic ignored "-Wunused-function"   /* hosttree.h: not every helper used */
#include "hosttree.h"
#include "util.h"

static ht_dev *dev(const char *addr)
{
    ht_dev *d = calloc(1, sizeof *d);
    snprintf(d->addr, sizeof d->addr, "%s", addr);
    return d;
}

static ht_dev *bridge(const char *root, const char *addr, uint16_t vid, uint16_t did, int type,
                      const ht_dev *parent)
{
    ht_dev *d = dev(addr);
    ht_config(d, vid, did, 0x060400, 1, type, 0, 4, 16, 4, 16);
    if (type == 4 || type == 6)
        ht_acs(d, 0x005f, 0x001d);
    ht_place(root, d, parent);
    return d;
}

static ht_dev *endpoint(const char *root, const char *addr, uint16_t vid, uint16_t did,
                        uint32_t class24, int hdr, const ht_dev *parent, const char *group)
{
    ht_dev *d = dev(addr);
    ht_config(d, vid, did, class24, hdr, 0, 0x10000000u, 4, 16, 4, 16);
    ht_place(root, d, parent);
    ht_group(root, d, group);
    return d;
}

/*
 * 00:01.0 -> PLX switch 01:00.0 -> 02:08.0 -> NVIDIA VGA 03:00.0 + HDA 03:00.1
 *                               -> 02:10.0 -> NVIDIA 3D  04:00.0       (clique 0)
 * 00:02.0 -> NVIDIA 3D 05:00.0 alone                                    (no clique)
 * 00:03.0 -> Broadcom switch 06:00.0 -> 07:00.0 -> AMD 08:00.0
 *                                    -> 07:01.0 -> AMD 09:00.0          (clique 1, not NVIDIA)
 */
static char *host_with_cliques(void)
{
    char *root = ht_mkroot();
    ht_dev *v[16];
    size_t n = 0;
    ht_dev *rp1 = v[n++] = bridge(root, "0000:00:01.0", 0x8086, 0x2030, 4, NULL);
    ht_dev *usp = v[n++] = bridge(root, "0000:01:00.0", 0x10b5, 0x8747, 5, rp1);
    ht_dev *d1 = v[n++] = bridge(root, "0000:02:08.0", 0x10b5, 0x8747, 6, usp);
    ht_dev *d2 = v[n++] = bridge(root, "0000:02:10.0", 0x10b5, 0x8747, 6, usp);
    v[n++] = endpoint(root, "0000:03:00.0", 0x10de, 0x2230, 0x030000, 0x80, d1, "30");
    v[n++] = endpoint(root, "0000:03:00.1", 0x10de, 0x1aef, 0x040300, 0x80, d1, "30");
    v[n++] = endpoint(root, "0000:04:00.0", 0x10de, 0x20b5, 0x030200, 0, d2, "31");
    ht_dev *rp2 = v[n++] = bridge(root, "0000:00:02.0", 0x8086, 0x2032, 4, NULL);
    v[n++] = endpoint(root, "0000:05:00.0", 0x10de, 0x2331, 0x030200, 0, rp2, "32");
    ht_dev *rp3 = v[n++] = bridge(root, "0000:00:03.0", 0x8086, 0x2034, 4, NULL);
    ht_dev *usp2 = v[n++] = bridge(root, "0000:06:00.0", 0x1000, 0xc010, 5, rp3);
    ht_dev *d3 = v[n++] = bridge(root, "0000:07:00.0", 0x1000, 0xc010, 6, usp2);
    ht_dev *d4 = v[n++] = bridge(root, "0000:07:01.0", 0x1000, 0xc010, 6, usp2);
    v[n++] = endpoint(root, "0000:08:00.0", 0x1002, 0x74a1, 0x038000, 0, d3, "33");
    v[n++] = endpoint(root, "0000:09:00.0", 0x1002, 0x74a1, 0x038000, 0, d4, "34");
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    return root;
}

typedef struct run_result {
    int status;
    char *out;
} run_result;

/* Run `gpuwarden xml ARGS` on the test host; stdout and exit status. */
static run_result run_xml(const char *root, const char *args)
{
    char *cmd = gw_strdup_printf("%s/gpuwarden xml --host-root '%s' %s 2>/dev/null", GW_BINARY_DIR,
                                 root, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 65536, len = 0;
    char *out = gw_xcalloc(cap, 1);
    size_t k;
    while ((k = fread(out + len, 1, cap - len - 1, p)) > 0)
        len += k;
    int st = pclose(p);
    free(cmd);
    return (run_result){ WIFEXITED(st) ? WEXITSTATUS(st) : -1, out };
}

static const char EXPECTED[] =
    "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
    "  <source>\n"
    "    <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>\n"
    "  </source>\n"
    "  <alias name='ua-gpu0'/>\n"
    "</hostdev>\n"
    "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
    "  <source>\n"
    "    <address domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
    "  </source>\n"
    "  <alias name='ua-gpu1'/>\n"
    "</hostdev>\n"
    "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
    "  <source>\n"
    "    <address domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>\n"
    "  </source>\n"
    "  <alias name='ua-gpu2'/>\n"
    "</hostdev>\n"
    "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
    "  <source>\n"
    "    <address domain='0x0000' bus='0x08' slot='0x00' function='0x0'/>\n"
    "  </source>\n"
    "  <alias name='ua-gpu3'/>\n"
    "</hostdev>\n"
    "<!-- 0000:08:00.0: in P2P clique 1, but QEMU takes the hint only for NVIDIA (10de) class 03xx "
    "and clique ids 0-15 (this is 1002, class 0380) -->\n"
    "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
    "  <qemu:device alias='ua-gpu0'>\n"
    "    <qemu:frontend>\n"
    "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>\n"
    "    </qemu:frontend>\n"
    "  </qemu:device>\n"
    "  <qemu:device alias='ua-gpu1'>\n"
    "    <qemu:frontend>\n"
    "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>\n"
    "    </qemu:frontend>\n"
    "  </qemu:device>\n"
    "</qemu:override>\n";

static void exact_output(void **state)
{
    char *root = host_with_cliques();
    /* Short and upper-case forms are accepted and printed canonically. */
    run_result r = run_xml(root, "0000:03:00.0 04:00.0 0000:05:00.0 0000:08:00.0");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, EXPECTED);
    free(r.out);

    r = run_xml(root, "--override-only --alias-prefix ua-p2p 0000:04:00.0");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out,
                        "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
                        "  <qemu:device alias='ua-p2p0'>\n"
                        "    <qemu:frontend>\n"
                        "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>\n"
                        "    </qemu:frontend>\n"
                        "  </qemu:device>\n"
                        "</qemu:override>\n");
    free(r.out);

    r = run_xml(root, "--override-only 0000:05:00.0");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "<!-- no <qemu:override>: none of these GPUs is in a P2P clique "
                               "QEMU can express -->\n");
    free(r.out);

    r = run_xml(root, "--hostdevs-only --all-functions 0000:03:00.0");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out,
                        "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
                        "  <source>\n"
                        "    <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>\n"
                        "  </source>\n"
                        "  <alias name='ua-gpu0'/>\n"
                        "</hostdev>\n"
                        "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
                        "  <source>\n"
                        "    <address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>\n"
                        "  </source>\n"
                        "  <alias name='ua-gpu0-fn1'/>\n"
                        "</hostdev>\n");
    free(r.out);
    ht_rmroot(root);
}

/* The operator's clique file wins over the topology: 05:00.0 joins 04:00.0
 * in clique 7, 03:00.0 (not listed) is in none. */
static void clique_override_file(void **state)
{
    char *root = host_with_cliques();
    char *path = gw_strdup_printf("%s/cliques.conf", root);
    FILE *f = fopen(path, "w");
    fputs("# NVLink bridge between these two\n7 = 0000:04:00.0, 0000:05:00.0\n", f);
    fclose(f);
    char *args = gw_strdup_printf("--override-only --cliques '%s' 0000:03:00.0 0000:04:00.0 0000:05:00.0", path);
    run_result r = run_xml(root, args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out,
                        "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
                        "  <qemu:device alias='ua-gpu1'>\n"
                        "    <qemu:frontend>\n"
                        "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='7'/>\n"
                        "    </qemu:frontend>\n"
                        "  </qemu:device>\n"
                        "  <qemu:device alias='ua-gpu2'>\n"
                        "    <qemu:frontend>\n"
                        "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='7'/>\n"
                        "    </qemu:frontend>\n"
                        "  </qemu:device>\n"
                        "</qemu:override>\n");
    free(r.out);
    free(args);
    /* A malformed file is refused, nothing printed. */
    f = fopen(path, "w");
    fputs("16 = 0000:04:00.0 0000:05:00.0\n", f);
    fclose(f);
    args = gw_strdup_printf("--cliques '%s' 0000:04:00.0", path);
    r = run_xml(root, args);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    free(r.out);
    free(args);
    free(path);
    ht_rmroot(root);
}

/* The bundled test hosts: X299's two switch-mates share clique 0 (README:
 * "Expected cliques: 0 = [0000:67:00.0, 0000:68:00.0]"); 1a:00.0 has none. */
static void fixture_host_x299(void **state)
{
    char *root = gw_strdup_printf("%s/tests/fixtures/hosts/x299-3xa6000", GW_SOURCE_DIR);
    run_result r = run_xml(root, "--override-only 0000:1a:00.0 0000:67:00.0 0000:68:00.0");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out,
                        "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
                        "  <qemu:device alias='ua-gpu1'>\n"
                        "    <qemu:frontend>\n"
                        "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>\n"
                        "    </qemu:frontend>\n"
                        "  </qemu:device>\n"
                        "  <qemu:device alias='ua-gpu2'>\n"
                        "    <qemu:frontend>\n"
                        "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>\n"
                        "    </qemu:frontend>\n"
                        "  </qemu:device>\n"
                        "</qemu:override>\n");
    free(r.out);
    /* SM 4029: two switches, cliques 0 (1a..1e) and 1 (3d..41). */
    free(root);
    root = gw_strdup_printf("%s/tests/fixtures/hosts/sm4029-8xrtx5000", GW_SOURCE_DIR);
    r = run_xml(root, "--override-only 0000:1e:00.0 0000:3d:00.0");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "<qemu:device alias='ua-gpu0'>\n    <qemu:frontend>\n"
                                  "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='0'/>"));
    assert_non_null(strstr(r.out, "<qemu:device alias='ua-gpu1'>\n    <qemu:frontend>\n"
                                  "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='1'/>"));
    free(r.out);
    free(root);
}

static void bad_arguments(void **state)
{
    char *root = host_with_cliques();
    static const struct { const char *args; int status; } cases[] = {
        { "", 2 },                                  /* no address */
        { "0000:03:00", 2 },                        /* not an address */
        { "0000:03:20.0", 2 },                      /* device > 1f */
        { "0000:03:00.8", 2 },                      /* function > 7 */
        { "0x03:00.0", 2 },
        { "0000:03:00.0 03:00.0", 2 },              /* the same GPU twice */
        { "--alias-prefix gpu 0000:03:00.0", 2 },   /* libvirt wants ua- */
        { "--alias-prefix 'ua-a b' 0000:03:00.0", 2 },
        { "--hostdevs-only --override-only 0000:03:00.0", 2 },
        { "0000:01:00.0", 1 },                      /* a bridge, not a GPU */
        { "0000:03:00.1", 1 },                      /* the HDA function, not a GPU */
        { "0000:0a:00.0", 1 },                      /* nothing there */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r = run_xml(root, cases[i].args);
        if (r.status != cases[i].status || r.out[0])
            fail_msg("'%s': exit %d, output '%s'; expected exit %d and no output", cases[i].args,
                     r.status, r.out, cases[i].status);
        free(r.out);
    }
    /* A host root that is not a host. */
    run_result r = run_xml("/nonexistent-gw-root", "0000:03:00.0");
    assert_int_equal(r.status, 1);
    free(r.out);
    ht_rmroot(root);
}

static char *full_domain(const char *type, const char *name, const char *fragment)
{
    /* The hostdevs go in <devices>, the override block at domain level. */
    const char *override = strstr(fragment, "<qemu:override");
    size_t devs_len = strcspn(fragment, "");
    const char *cut = strstr(fragment, "<!--");
    if (!cut || (override && override < cut))
        cut = override;
    if (cut)
        devs_len = (size_t)(cut - fragment);
    return gw_strdup_printf("<domain type='%s'>\n  <name>%s</name>\n  <memory>1048576</memory>\n"
                            "  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n%.*s  </devices>\n"
                            "%s</domain>\n",
                            type, name, (int)devs_len, fragment, override ? override : "");
}

static int shell(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void output_validates_and_libvirt_accepts_it(void **state)
{
    char *root = host_with_cliques();
    run_result r = run_xml(root, "--all-functions 0000:03:00.0 0000:04:00.0 0000:05:00.0");
    assert_int_equal(r.status, 0);

    /* virt-xml-validate: libvirt's own RNG schema, <qemu:override> included. */
    char *kvm = full_domain("kvm", "vm-clique", r.out);
    char *path = gw_strdup_printf("%s/domain.xml", root);
    FILE *f = fopen(path, "w");
    fputs(kvm, f);
    fclose(f);
    char *cmd = gw_strdup_printf("virt-xml-validate '%s' domain >/dev/null", path);
    if (shell(cmd) != 0)
        fail_msg("virt-xml-validate refused the domain:\n%s", kvm);
    free(cmd);
    /* The schema really checks the block: a misspelt property type fails. */
    char *bad = gw_strdup_printf("sed -i \"s/type='unsigned'/type='unsinged'/\" '%s' && "
                                 "virt-xml-validate '%s' domain >/dev/null 2>&1", path, path);
    assert_int_not_equal(shell(bad), 0);
    free(bad);

    /* The test driver parses and accepts it, with schema validation on. */
    char *test = full_domain("test", "vm-clique", r.out);
    virConnectPtr c = virConnectOpen("test:///default");
    assert_non_null(c);
    virDomainPtr d = virDomainDefineXMLFlags(c, test, VIR_DOMAIN_DEFINE_VALIDATE);
    if (!d)
        fail_msg("test driver refused the domain: %s\n%s", virGetLastErrorMessage(), test);
    char *xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
    char **sources = NULL;
    assert_int_equal(gw_domain_xml_pci_sources(xml, strlen(xml), &sources, NULL), 0);
    assert_string_equal(sources[0], "0000:03:00.0");
    assert_string_equal(sources[1], "0000:03:00.1");
    assert_string_equal(sources[2], "0000:04:00.0");
    assert_string_equal(sources[3], "0000:05:00.0");
    assert_null(sources[4]);
    gw_attach_list_free(sources);
    free(xml);
    assert_int_equal(virDomainUndefine(d), 0);
    virDomainFree(d);
    virConnectClose(c);

    free(test);
    free(kvm);
    unlink(path);
    free(path);
    free(r.out);
    ht_rmroot(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_output),
        cmocka_unit_test(clique_override_file),
        cmocka_unit_test(fixture_host_x299),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(output_validates_and_libvirt_accepts_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
