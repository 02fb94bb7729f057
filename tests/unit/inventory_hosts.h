/* SPDX-License-Identifier: Apache-2.0 */
/* Hand-built inventory inputs mirroring real hosts' topology (lspci dumps in
 * shared/data/lspci), and field-by-field assertions for the inventory tests.
 * X299 and SM8 are the test hosts x299-3xa6000 and sm4029-8xrtx5000:
 * test_inventory_fixtures.c checks that they give exactly what scanning
 * those trees gives. PROART and HGX cover what no test host has (AMD and
 * Matrox vendors, a 3D-controller class, no PCIe cliques).
 * Included by tests/unit/test_inventory*.c only. */
#ifndef GW_TEST_INVENTORY_HOSTS_H
#define GW_TEST_INVENTORY_HOSTS_H

#include <gpuwarden/inventory.h>
#include <string.h>

#define A GW_STATE_ALLOCATABLE, false

/* Cyborg's pci_str_to_json() text, spelled out literally. */
#define PCIJ(bus, dev, fn) \
    "{\"bus\": \"" bus "\", \"device\": \"" dev "\", \"domain\": \"0000\", \"function\": \"" fn "\"}"

/* ASUS WS X299 SAGE, 3x RTX A6000 (10de:2230): 1a:00.0 alone below one PEX
 * 8747, 67:00.0 and 68:00.0 below another (clique 0); one socket. */
#define A6000 0x0300, "GA102GL [RTX A6000]"
static const gw_inventory_gpu X299[] = {
    { "0000:1a:00.0", 0x10de, 0x2230, 0, -1, A, A6000 },
    { "0000:67:00.0", 0x10de, 0x2230, 0, 0, A, A6000 },
    { "0000:68:00.0", 0x10de, 0x2230, 0, 0, A, A6000 },
};

/* Supermicro SYS-4029GP-TRT2, 8x Quadro RTX 5000 (10de:1eb0) below two PEX
 * 9797 switches: 1a 1c 1d 1e (clique 0) and 3d 3f 40 41 (clique 1), NUMA 0. */
#define RTX5000 0x0300, "TU104GL [Quadro RTX 5000]"
static const gw_inventory_gpu SM8[] = {
    { "0000:1a:00.0", 0x10de, 0x1eb0, 0, 0, A, RTX5000 }, { "0000:1c:00.0", 0x10de, 0x1eb0, 0, 0, A, RTX5000 },
    { "0000:1d:00.0", 0x10de, 0x1eb0, 0, 0, A, RTX5000 }, { "0000:1e:00.0", 0x10de, 0x1eb0, 0, 0, A, RTX5000 },
    { "0000:3d:00.0", 0x10de, 0x1eb0, 0, 1, A, RTX5000 }, { "0000:3f:00.0", 0x10de, 0x1eb0, 0, 1, A, RTX5000 },
    { "0000:40:00.0", 0x10de, 0x1eb0, 0, 1, A, RTX5000 }, { "0000:41:00.0", 0x10de, 0x1eb0, 0, 1, A, RTX5000 },
};

/* ASUS ProArt X670E: RTX 6000 Ada (10de:26b1), RTX 4060 Ti (10de:2803, here
 * without a pci.ids name, as that dump's lspci had), the AMD Raphael iGPU
 * (1002:164e); no switch, NUMA node unknown. */
static const gw_inventory_gpu PROART[] = {
    { "0000:01:00.0", 0x10de, 0x26b1, -1, -1, A, 0x0300, "AD102GL [L6000 / RTX 6000 Ada Generation]" },
    { "0000:03:00.0", 0x10de, 0x2803, -1, -1, A, 0x0300, NULL },
    { "0000:6c:00.0", 0x1002, 0x164e, -1, -1, A, 0x0300, "Raphael" },
};

/* Dell XE9680 HGX, 8x H100 SXM5 (10de:2330), each below its own PEX 890xx
 * (no PCIe clique; NVLink is what an override describes), four per socket,
 * plus the BMC's Matrox G200eW3 (102b:0536). */
#define H100 0x0302, "GH100[H100 SXM5 80GB]"
static const gw_inventory_gpu HGX[] = {
    { "0000:03:00.0", 0x102b, 0x0536, 0, -1, A, 0x0300, "Integrated Matrox G200eW3 Graphics Controller" },
    { "0000:19:00.0", 0x10de, 0x2330, 0, -1, A, H100 }, { "0000:3b:00.0", 0x10de, 0x2330, 0, -1, A, H100 },
    { "0000:4c:00.0", 0x10de, 0x2330, 0, -1, A, H100 }, { "0000:5d:00.0", 0x10de, 0x2330, 0, -1, A, H100 },
    { "0000:9b:00.0", 0x10de, 0x2330, 1, -1, A, H100 }, { "0000:bb:00.0", 0x10de, 0x2330, 1, -1, A, H100 },
    { "0000:cb:00.0", 0x10de, 0x2330, 1, -1, A, H100 }, { "0000:db:00.0", 0x10de, 0x2330, 1, -1, A, H100 },
};

#undef A
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A mutable copy of a host's GPUs, to set states on. */
static inline gw_inventory_gpu *copy_gpus(const gw_inventory_gpu *src, size_t n)
{
    gw_inventory_gpu *g = malloc(n * sizeof *g);
    memcpy(g, src, n * sizeof *g);
    return g;
}

static inline void set_state(gw_inventory_gpu *g, size_t n, const char *address, gw_state s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(g[i].address, address)) {
            g[i].state = s;
            return;
        }
    fail_msg("no GPU %s", address);
}

/* Cyborg device fields of a deployable's first GPU. */
#define BOARD(controller, pid) "{\"controller\": \"" controller "\", \"product_id\": \"" pid "\"}"
#define DEV_A6000 { "NVIDIA", "10de", "GA102GL [RTX A6000]", BOARD("VGA compatible controller", "2230") }
#define DEV_RTX5000 { "NVIDIA", "10de", "TU104GL [Quadro RTX 5000]", BOARD("VGA compatible controller", "1eb0") }
#define DEV_ADA { "NVIDIA", "10de", "AD102GL [L6000 / RTX 6000 Ada Generation]", BOARD("VGA compatible controller", "26b1") }
#define DEV_4060 { "NVIDIA", "10de", "Device 2803", BOARD("VGA compatible controller", "2803") }
#define DEV_RAPHAEL { "AMD", "1002", "Raphael", BOARD("VGA compatible controller", "164e") }
#define DEV_MATROX { "MATROX", "102b", "Integrated Matrox G200eW3 Graphics Controller", BOARD("VGA compatible controller", "0536") }
#define DEV_H100 { "NVIDIA", "10de", "GH100[H100 SXM5 80GB]", BOARD("3D controller", "2330") }
typedef struct exp_device {
    const char *driver_name, *vendor, *model, *std_board_info;
} exp_device;

typedef struct exp_dep {
    const char *name;
    unsigned num, reserved;
    int clique;
    bool carried;
    const char *cpid;
    const char *traits[10];     /* NULL-terminated */
    const char *handles[10];    /* attach handle infos */
    const char *gpus[10];
    exp_device dev;
} exp_dep;

static inline size_t count(const char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    return n;
}

static inline void assert_dep(const gw_deployable *d, const exp_dep *e)
{
    assert_non_null(d);
    assert_string_equal(d->name, e->name);
    assert_string_equal(d->rc, "PGPU");
    assert_int_equal(d->num_accelerators, e->num);
    assert_int_equal(d->reserved, e->reserved);
    assert_int_equal(d->clique, e->clique);
    assert_int_equal(d->carried, e->carried);
    assert_string_equal(d->cpid_type, "PCI");
    assert_string_equal(d->cpid_info, e->cpid);
    assert_int_equal(d->n_traits, count(e->traits));
    for (size_t i = 0; i < d->n_traits; i++)
        assert_string_equal(d->traits[i], e->traits[i]);
    assert_int_equal(d->n_attach_handles, count(e->handles));
    for (size_t i = 0; i < d->n_attach_handles; i++) {
        assert_string_equal(d->attach_handles[i].type, "PCI");
        assert_string_equal(d->attach_handles[i].info, e->handles[i]);
    }
    assert_int_equal(d->n_gpus, count(e->gpus));
    for (size_t i = 0; i < d->n_gpus; i++)
        assert_string_equal(d->gpus[i], e->gpus[i]);
    assert_string_equal(d->type, "GPU");
    assert_string_equal(d->driver_name, e->dev.driver_name);
    assert_string_equal(d->vendor, e->dev.vendor);
    assert_string_equal(d->model, e->dev.model);
    assert_string_equal(d->std_board_info, e->dev.std_board_info);
}

/* The whole inventory, and the invariant that every input GPU is in exactly
 * one deployable (an attached GPU is always present). */
static inline void assert_inventory(const gw_inventory *inv, const exp_dep *e, size_t n,
                                    const gw_inventory_gpu *gpus, size_t n_gpus)
{
    assert_int_equal(gw_inventory_deployable_count(inv), n);
    for (size_t i = 0; i < n; i++)
        assert_dep(gw_inventory_deployable(inv, i), &e[i]);
    assert_null(gw_inventory_deployable(inv, n));
    for (size_t g = 0; g < n_gpus; g++) {
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
            const gw_deployable *d = gw_inventory_deployable(inv, i);
            for (size_t k = 0; k < d->n_gpus; k++)
                seen += !strcmp(d->gpus[k], gpus[g].address);
        }
        assert_int_equal(seen, 1);
    }
}

#endif
