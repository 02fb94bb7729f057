/* SPDX-License-Identifier: Apache-2.0 */
/* Discovery on every test host under tests/fixtures/hosts (built from real
 * lspci dumps by tests/fixtures/build_hosts.py): exact values for each GPU
 * and the host, as one canonical line per GPU so that a mismatch shows the
 * whole picture. The expected lines were checked against the original dumps
 * (../shared/data/lspci: ids, subsystem, revision, NUMA, FLReset, LnkSta,
 * LnkCap/LnkCap2, ACSCap, ATSCtl) and the fixture README (group numbers,
 * drivers, CPU lists, which are the host spec's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpuwarden/host.h>

#include "util.h"

static char *hosts_dir(void)
{
    const char *src = getenv("GW_SOURCE_DIR");
    return gw_strdup_printf("%s/tests/fixtures/hosts", src ? src : GW_SOURCE_DIR);
}

static char *host_path(const char *name)
{
    char *dir = hosts_dir();
    char *p = gw_strdup_printf("%s/%s", dir, name);
    free(dir);
    return p;
}

static gw_host *scan(const char *name)
{
    char *root = host_path(name);
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = root;
    gw_host *h = NULL;
    if (gw_host_scan(&h, &o) < 0)
        fail_msg("%s: %s", name, gw_error_message());
    free(root);
    return h;
}

typedef struct buf {
    char s[8192];
    size_t n;
} buf;

__attribute__((format(printf, 2, 3))) static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= sizeof b->s - b->n)
        fail_msg("render buffer too small");
    b->n += (size_t)r;
}

/* Replace the host root in messages by "ROOT". */
static void put_msg(buf *b, const char *msg, const char *root)
{
    size_t rl = strlen(root);
    for (const char *p = msg; *p;) {
        if (!strncmp(p, root, rl)) {
            put(b, "ROOT");
            p += rl;
        } else {
            put(b, "%c", *p++);
        }
    }
}

/* Every fact of a GPU, in one line. */
static const char *render(const gw_gpu *g, const char *root)
{
    static buf b;
    b.n = 0;
    put(&b, "%s %04x:%04x sub %04x:%04x rev %02x class %04x", g->address, g->vendor_id,
        g->device_id, g->subsystem_vendor_id, g->subsystem_device_id, g->revision, g->class_code);
    put(&b, " numa %d cpus %s", g->numa_node, g->local_cpulist ? g->local_cpulist : "-");
    put(&b, " group %s [", g->iommu_group ? g->iommu_group : "-");
    for (size_t i = 0; i < g->n_group_members; i++) {
        const gw_group_member *m = &g->group_members[i];
        put(&b, "%s%s=%s%s%s", i ? " " : "", m->address, m->driver ? m->driver : "-",
            m->is_bridge ? "/bridge" : "", m->same_slot ? "/slot" : "");
    }
    put(&b, "] driver %s flr %s reset [", g->driver ? g->driver : "-", g->flr ? "yes" : "no");
    for (size_t i = 0; i < g->n_reset_methods; i++)
        put(&b, "%s%s", i ? " " : "", g->reset_methods[i]);
    put(&b, "]");
    if (g->link.present)
        put(&b, " link %gx%d/%gx%d", g->link.speed_gts, g->link.width, g->link.max_speed_gts,
            g->link.max_width);
    else
        put(&b, " link -");
    put(&b, " ats %s aer %s", !g->ats_present ? "-" : g->ats_enabled ? "on" : "off",
        g->aer_present ? "yes" : "no");
    if (g->aer.correctable >= 0)
        put(&b, "(%ld/%ld/%ld)", g->aer.correctable, g->aer.nonfatal, g->aer.fatal);
    if (g->dsn_present)
        put(&b, " dsn %016llx", (unsigned long long)g->dsn);
    else
        put(&b, " dsn -");
    if (g->config_all_ones)
        put(&b, " ALL-ONES");
    put(&b, " rom %s bar0 %llx fns [", g->rom_present ? "yes" : "no",
        (unsigned long long)g->bar_sizes[0]);
    for (size_t i = 0; i < g->n_functions; i++)
        put(&b, "%s%s", i ? " " : "", g->functions[i]);
    put(&b, "] up [");
    for (size_t i = 0; i < g->n_upstream; i++) {
        const gw_bridge *u = &g->upstream[i];
        put(&b, "%s%s %04x:%04x %s", i ? "; " : "", u->address, u->vendor_id, u->device_id,
            gw_port_type_name(u->port_type));
        if (!u->acs.known)
            put(&b, " acs ?");
        else if (!u->acs.present)
            put(&b, " acs none");
        else
            put(&b, " acs %04x/%04x", u->acs.cap, u->acs.ctrl);
    }
    put(&b, "] acs_ok %s viable %s clique %d errors [", g->acs_path_ok ? "yes" : "no",
        g->group_viable ? "yes" : "no", g->clique);
    for (size_t i = 0; i < g->n_errors; i++) {
        put(&b, "%s", i ? " | " : "");
        put_msg(&b, g->errors[i], root);
    }
    put(&b, "]");
    return b.s;
}

static void print_host(const char *name)
{
    gw_host *h = scan(name);
    char *root = host_path(name);
    for (size_t i = 0; i < gw_host_gpu_count(h); i++)
        printf("        \"%s\",\n", render(gw_host_gpu(h, i), root));
    free(root);
    gw_host_free(h);
}

/* The GPUs of `name` render exactly as `want` (NULL-terminated). */
static void expect_gpus(const char *name, const char *const *want)
{
    gw_host *h = scan(name);
    char *root = host_path(name);
    size_t n = 0;
    while (want[n])
        n++;
    if (gw_host_gpu_count(h) != n)
        fail_msg("%s: %zu GPUs, expected %zu", name, gw_host_gpu_count(h), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(render(gw_host_gpu(h, i), root), want[i]);
    free(root);
    gw_host_free(h);
}

static void expect_cliques(const char *name, const char *want)
{
    gw_host *h = scan(name);
    buf b = { .n = 0 };
    for (size_t c = 0; c < gw_host_clique_count(h); c++) {
        put(&b, "%s%zu=[", c ? " " : "", c);
        for (size_t m = 0; m < gw_host_clique_size(h, c); m++)
            put(&b, "%s%s", m ? " " : "", gw_host_clique_member(h, c, m));
        put(&b, "]");
    }
    assert_string_equal(b.s, want);
    gw_host_free(h);
}

static void expect_host_errors(const char *name, const char *const *want)
{
    gw_host *h = scan(name);
    char *root = host_path(name);
    size_t n = 0;
    while (want[n])
        n++;
    assert_int_equal(gw_host_error_count(h), n);
    for (size_t i = 0; i < n; i++) {
        buf b = { .n = 0 };
        put_msg(&b, gw_host_error(h, i), root);
        assert_string_equal(b.s, want[i]);
    }
    free(root);
    gw_host_free(h);
}

static const char *const no_errors[] = { NULL };

static const char *const x299_3xa6000_gpus[] = {
    "0000:1a:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 45 [0000:1a:00.0=vfio-pci/slot 0000:1a:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:1a:00.1]"
    " up [0000:18:10.0 10b5:8747 downstream acs 187f/001d; 0000:17:00.0 10b5:8747 upstream acs none; 0000:16:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique -1"
    " errors []",
    "0000:67:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 79 [0000:67:00.0=vfio-pci/slot 0000:67:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:67:00.1]"
    " up [0000:66:08.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique 0"
    " errors []",
    "0000:68:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 80 [0000:68:00.0=vfio-pci/slot 0000:68:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:68:00.1]"
    " up [0000:66:10.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique 0"
    " errors []",
    NULL,
};

static const char *const acs_off_gpus[] = {
    "0000:1a:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 45 [0000:1a:00.0=vfio-pci/slot 0000:1a:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:1a:00.1]"
    " up [0000:18:10.0 10b5:8747 downstream acs 187f/001d; 0000:17:00.0 10b5:8747 upstream acs none; 0000:16:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique -1"
    " errors []",
    "0000:67:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 77 [0000:66:08.0=pcieport/bridge 0000:67:00.0=vfio-pci/slot 0000:67:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:67:00.1]"
    " up [0000:66:08.0 10b5:8747 downstream acs 187f/0000; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok no viable yes clique 0"
    " errors []",
    "0000:68:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 79 [0000:68:00.0=vfio-pci/slot 0000:68:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:68:00.1]"
    " up [0000:66:10.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique 0"
    " errors []",
    NULL,
};

static const char *const acs_off_root_gpus[] = {
    "0000:1a:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 45 [0000:1a:00.0=vfio-pci/slot 0000:1a:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:1a:00.1]"
    " up [0000:18:10.0 10b5:8747 downstream acs 187f/001d; 0000:17:00.0 10b5:8747 upstream acs none; 0000:16:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique -1"
    " errors []",
    "0000:67:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 46 [0000:64:00.0=pcieport/bridge 0000:65:00.0=pcieport/bridge 0000:66:08.0=pcieport/bridge 0000:66:10.0=pcieport/bridge 0000:67:00.0=vfio-pci/slot 0000:67:00.1=vfio-pci/slot 0000:68:00.0=vfio-pci 0000:68:00.1=vfio-pci]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:67:00.1]"
    " up [0000:66:08.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/0000]"
    " acs_ok no viable no clique 0"
    " errors []",
    "0000:68:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 46 [0000:64:00.0=pcieport/bridge 0000:65:00.0=pcieport/bridge 0000:66:08.0=pcieport/bridge 0000:66:10.0=pcieport/bridge 0000:67:00.0=vfio-pci 0000:67:00.1=vfio-pci 0000:68:00.0=vfio-pci/slot 0000:68:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:68:00.1]"
    " up [0000:66:10.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/0000]"
    " acs_ok no viable no clique 0"
    " errors []",
    NULL,
};

static const char *const allones_gpus[] = {
    "0000:1a:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 45 [0000:1a:00.0=vfio-pci/slot 0000:1a:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:1a:00.1]"
    " up [0000:18:10.0 10b5:8747 downstream acs 187f/001d; 0000:17:00.0 10b5:8747 upstream acs none; 0000:16:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique -1"
    " errors []",
    "0000:67:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 79 [0000:67:00.0=vfio-pci/slot 0000:67:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:67:00.1]"
    " up [0000:66:08.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique 0"
    " errors []",
    "0000:68:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-35"
    " group 80 [0000:68:00.0=vfio-pci/slot 0000:68:00.1=vfio-pci/slot]"
    " driver vfio-pci flr no reset [flr]"
    " link 0x63/64x63 ats - aer no(0/0/0) dsn - ALL-ONES rom yes bar0 1000000 fns [0000:68:00.1]"
    " up [0000:66:10.0 10b5:8747 downstream acs 187f/001d; 0000:65:00.0 10b5:8747 upstream acs none; 0000:64:00.0 8086:2030 root_port acs 001f/001d]"
    " acs_ok yes viable yes clique 0"
    " errors [config space reads all-ones (vendor ffff): the device fell off the bus (or is powered off); nothing from config space can be trusted | function 0000:68:00.1: config space reads all-ones (vendor ffff): the device fell off the bus (or is powered off); nothing from config space can be trusted]",
    NULL,
};

static const char *const sm4029_8xrtx5000_gpus[] = {
    "0000:1a:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 0 [0000:17:00.0=pcieport/bridge 0000:18:00.0=pcieport/bridge 0000:19:04.0=pcieport/bridge 0000:19:08.0=pcieport/bridge 0000:19:0c.0=pcieport/bridge 0000:19:10.0=pcieport/bridge 0000:19:14.0=pcieport/bridge 0000:1a:00.0=vfio-pci/slot 0000:1a:00.1=vfio-pci/slot 0000:1a:00.2=xhci_hcd/slot 0000:1a:00.3=nvidia-gpu/slot 0000:1c:00.0=vfio-pci 0000:1c:00.1=vfio-pci 0000:1c:00.2=xhci_hcd 0000:1c:00.3=nvidia-gpu 0000:1d:00.0=vfio-pci 0000:1d:00.1=vfio-pci 0000:1d:00.2=xhci_hcd 0000:1d:00.3=nvidia-gpu 0000:1e:00.0=vfio-pci 0000:1e:00.1=vfio-pci 0000:1e:00.2=xhci_hcd 0000:1e:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:1a:00.1 0000:1a:00.2 0000:1a:00.3]"
    " up [0000:19:04.0 10b5:9797 downstream acs ?; 0000:18:00.0 10b5:9797 upstream acs ?; 0000:17:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 0"
    " errors []",
    "0000:1c:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 0 [0000:17:00.0=pcieport/bridge 0000:18:00.0=pcieport/bridge 0000:19:04.0=pcieport/bridge 0000:19:08.0=pcieport/bridge 0000:19:0c.0=pcieport/bridge 0000:19:10.0=pcieport/bridge 0000:19:14.0=pcieport/bridge 0000:1a:00.0=vfio-pci 0000:1a:00.1=vfio-pci 0000:1a:00.2=xhci_hcd 0000:1a:00.3=nvidia-gpu 0000:1c:00.0=vfio-pci/slot 0000:1c:00.1=vfio-pci/slot 0000:1c:00.2=xhci_hcd/slot 0000:1c:00.3=nvidia-gpu/slot 0000:1d:00.0=vfio-pci 0000:1d:00.1=vfio-pci 0000:1d:00.2=xhci_hcd 0000:1d:00.3=nvidia-gpu 0000:1e:00.0=vfio-pci 0000:1e:00.1=vfio-pci 0000:1e:00.2=xhci_hcd 0000:1e:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:1c:00.1 0000:1c:00.2 0000:1c:00.3]"
    " up [0000:19:0c.0 10b5:9797 downstream acs ?; 0000:18:00.0 10b5:9797 upstream acs ?; 0000:17:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 0"
    " errors []",
    "0000:1d:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 0 [0000:17:00.0=pcieport/bridge 0000:18:00.0=pcieport/bridge 0000:19:04.0=pcieport/bridge 0000:19:08.0=pcieport/bridge 0000:19:0c.0=pcieport/bridge 0000:19:10.0=pcieport/bridge 0000:19:14.0=pcieport/bridge 0000:1a:00.0=vfio-pci 0000:1a:00.1=vfio-pci 0000:1a:00.2=xhci_hcd 0000:1a:00.3=nvidia-gpu 0000:1c:00.0=vfio-pci 0000:1c:00.1=vfio-pci 0000:1c:00.2=xhci_hcd 0000:1c:00.3=nvidia-gpu 0000:1d:00.0=vfio-pci/slot 0000:1d:00.1=vfio-pci/slot 0000:1d:00.2=xhci_hcd/slot 0000:1d:00.3=nvidia-gpu/slot 0000:1e:00.0=vfio-pci 0000:1e:00.1=vfio-pci 0000:1e:00.2=xhci_hcd 0000:1e:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:1d:00.1 0000:1d:00.2 0000:1d:00.3]"
    " up [0000:19:10.0 10b5:9797 downstream acs ?; 0000:18:00.0 10b5:9797 upstream acs ?; 0000:17:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 0"
    " errors []",
    "0000:1e:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 0 [0000:17:00.0=pcieport/bridge 0000:18:00.0=pcieport/bridge 0000:19:04.0=pcieport/bridge 0000:19:08.0=pcieport/bridge 0000:19:0c.0=pcieport/bridge 0000:19:10.0=pcieport/bridge 0000:19:14.0=pcieport/bridge 0000:1a:00.0=vfio-pci 0000:1a:00.1=vfio-pci 0000:1a:00.2=xhci_hcd 0000:1a:00.3=nvidia-gpu 0000:1c:00.0=vfio-pci 0000:1c:00.1=vfio-pci 0000:1c:00.2=xhci_hcd 0000:1c:00.3=nvidia-gpu 0000:1d:00.0=vfio-pci 0000:1d:00.1=vfio-pci 0000:1d:00.2=xhci_hcd 0000:1d:00.3=nvidia-gpu 0000:1e:00.0=vfio-pci/slot 0000:1e:00.1=vfio-pci/slot 0000:1e:00.2=xhci_hcd/slot 0000:1e:00.3=nvidia-gpu/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:1e:00.1 0000:1e:00.2 0000:1e:00.3]"
    " up [0000:19:14.0 10b5:9797 downstream acs ?; 0000:18:00.0 10b5:9797 upstream acs ?; 0000:17:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 0"
    " errors []",
    "0000:3d:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 1 [0000:3a:00.0=pcieport/bridge 0000:3b:00.0=pcieport/bridge 0000:3c:04.0=pcieport/bridge 0000:3c:08.0=pcieport/bridge 0000:3c:0c.0=pcieport/bridge 0000:3c:10.0=pcieport/bridge 0000:3c:14.0=pcieport/bridge 0000:3d:00.0=vfio-pci/slot 0000:3d:00.1=vfio-pci/slot 0000:3d:00.2=xhci_hcd/slot 0000:3d:00.3=nvidia-gpu/slot 0000:3f:00.0=vfio-pci 0000:3f:00.1=vfio-pci 0000:3f:00.2=xhci_hcd 0000:3f:00.3=nvidia-gpu 0000:40:00.0=vfio-pci 0000:40:00.1=vfio-pci 0000:40:00.2=xhci_hcd 0000:40:00.3=nvidia-gpu 0000:41:00.0=vfio-pci 0000:41:00.1=vfio-pci 0000:41:00.2=xhci_hcd 0000:41:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:3d:00.1 0000:3d:00.2 0000:3d:00.3]"
    " up [0000:3c:04.0 10b5:9797 downstream acs ?; 0000:3b:00.0 10b5:9797 upstream acs ?; 0000:3a:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 1"
    " errors []",
    "0000:3f:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 1 [0000:3a:00.0=pcieport/bridge 0000:3b:00.0=pcieport/bridge 0000:3c:04.0=pcieport/bridge 0000:3c:08.0=pcieport/bridge 0000:3c:0c.0=pcieport/bridge 0000:3c:10.0=pcieport/bridge 0000:3c:14.0=pcieport/bridge 0000:3d:00.0=vfio-pci 0000:3d:00.1=vfio-pci 0000:3d:00.2=xhci_hcd 0000:3d:00.3=nvidia-gpu 0000:3f:00.0=vfio-pci/slot 0000:3f:00.1=vfio-pci/slot 0000:3f:00.2=xhci_hcd/slot 0000:3f:00.3=nvidia-gpu/slot 0000:40:00.0=vfio-pci 0000:40:00.1=vfio-pci 0000:40:00.2=xhci_hcd 0000:40:00.3=nvidia-gpu 0000:41:00.0=vfio-pci 0000:41:00.1=vfio-pci 0000:41:00.2=xhci_hcd 0000:41:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:3f:00.1 0000:3f:00.2 0000:3f:00.3]"
    " up [0000:3c:0c.0 10b5:9797 downstream acs ?; 0000:3b:00.0 10b5:9797 upstream acs ?; 0000:3a:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 1"
    " errors []",
    "0000:40:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 1 [0000:3a:00.0=pcieport/bridge 0000:3b:00.0=pcieport/bridge 0000:3c:04.0=pcieport/bridge 0000:3c:08.0=pcieport/bridge 0000:3c:0c.0=pcieport/bridge 0000:3c:10.0=pcieport/bridge 0000:3c:14.0=pcieport/bridge 0000:3d:00.0=vfio-pci 0000:3d:00.1=vfio-pci 0000:3d:00.2=xhci_hcd 0000:3d:00.3=nvidia-gpu 0000:3f:00.0=vfio-pci 0000:3f:00.1=vfio-pci 0000:3f:00.2=xhci_hcd 0000:3f:00.3=nvidia-gpu 0000:40:00.0=vfio-pci/slot 0000:40:00.1=vfio-pci/slot 0000:40:00.2=xhci_hcd/slot 0000:40:00.3=nvidia-gpu/slot 0000:41:00.0=vfio-pci 0000:41:00.1=vfio-pci 0000:41:00.2=xhci_hcd 0000:41:00.3=nvidia-gpu]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:40:00.1 0000:40:00.2 0000:40:00.3]"
    " up [0000:3c:10.0 10b5:9797 downstream acs ?; 0000:3b:00.0 10b5:9797 upstream acs ?; 0000:3a:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 1"
    " errors []",
    "0000:41:00.0 10de:1eb0 sub 10de:129f rev a1 class 0300 numa 0 cpus 0-19,40-59"
    " group 1 [0000:3a:00.0=pcieport/bridge 0000:3b:00.0=pcieport/bridge 0000:3c:04.0=pcieport/bridge 0000:3c:08.0=pcieport/bridge 0000:3c:0c.0=pcieport/bridge 0000:3c:10.0=pcieport/bridge 0000:3c:14.0=pcieport/bridge 0000:3d:00.0=vfio-pci 0000:3d:00.1=vfio-pci 0000:3d:00.2=xhci_hcd 0000:3d:00.3=nvidia-gpu 0000:3f:00.0=vfio-pci 0000:3f:00.1=vfio-pci 0000:3f:00.2=xhci_hcd 0000:3f:00.3=nvidia-gpu 0000:40:00.0=vfio-pci 0000:40:00.1=vfio-pci 0000:40:00.2=xhci_hcd 0000:40:00.3=nvidia-gpu 0000:41:00.0=vfio-pci/slot 0000:41:00.1=vfio-pci/slot 0000:41:00.2=xhci_hcd/slot 0000:41:00.3=nvidia-gpu/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 2.5x16/8x16 ats - aer no dsn - rom yes bar0 1000000 fns [0000:41:00.1 0000:41:00.2 0000:41:00.3]"
    " up [0000:3c:14.0 10b5:9797 downstream acs ?; 0000:3b:00.0 10b5:9797 upstream acs ?; 0000:3a:00.0 8086:2030 root_port acs ?]"
    " acs_ok no viable no clique 1"
    " errors []",
    NULL,
};

static const char *const omen_3060_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors []",
    NULL,
};

static const char *const ats_on_gpus[] = {
    "0000:00:02.0 8086:7d67 sub 1043:88ef rev 06 class 0300 numa -1 cpus 0-23"
    " group 2 [0000:00:02.0=i915/slot]"
    " driver i915 flr yes reset [flr]"
    " link 0x0/2.5x0 ats on aer no dsn - rom yes bar0 1000000 fns []"
    " up []"
    " acs_ok yes viable no clique -1"
    " errors []",
    "0000:02:00.0 10de:2c02 sub 19da:1762 rev a1 class 0300 numa -1 cpus 0-23"
    " group 14 [0000:02:00.0=vfio-pci/slot 0000:02:00.1=vfio-pci/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 16x16/32x16 ats - aer yes(0/0/0) dsn 92fbcbbadf2db048 rom yes bar0 4000000 fns [0000:02:00.1]"
    " up [0000:00:06.0 8086:ae4d root_port acs 001f/001d]"
    " acs_ok yes viable yes clique -1"
    " errors []",
    NULL,
};

static const char *const broken_vendor_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors [vendor/device: Cannot open ROOT/sys/bus/pci/devices/0000:01:00.0/vendor: No such file or directory; ids taken from config space]",
    NULL,
};

static const char *const broken_numa_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors [numa_node: ROOT/sys/bus/pci/devices/0000:01:00.0/numa_node: not an integer: 'banana']",
    NULL,
};

static const char *const broken_config_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr no reset [flr]"
    " link 8x16/16x16 ats - aer no(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors [config: truncated: 10 bytes, less than the 64-byte header]",
    NULL,
};

static const char *const broken_group_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group - []"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors [iommu_group: dangling"
    " link to '../../../../kernel/iommu_groups/99' (target missing)]",
    NULL,
};

static const char *const broken_entry_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors []",
    NULL,
};

static const char *const broken_bdf_gpus[] = {
    "0000:01:00.0 10de:2504 sub 3842:3656 rev a1 class 0300 numa -1 cpus 0-15"
    " group 1 [0000:00:01.0=pcieport/bridge 0000:01:00.0=vfio-pci/slot 0000:01:00.1=snd_hda_intel/slot]"
    " driver vfio-pci flr yes reset [flr]"
    " link 8x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 1000000 fns [0000:01:00.1]"
    " up [0000:00:01.0 8086:1901 root_port acs none]"
    " acs_ok no viable no clique -1"
    " errors []",
    NULL,
};

/* ---- tests, one per host ---- */

static void expect_gpu_evidence(const char *name, const char *address, const char *acs,
                                const char *group)
{
    gw_host *h = scan(name);
    const gw_gpu *g = gw_host_find_gpu(h, address);
    assert_non_null(g);
    assert_string_equal(g->acs_evidence, acs);
    if (group)
        assert_string_equal(g->group_evidence, group);
    gw_host_free(h);
}

/* 3x RTX A6000 on a Skylake-SP workstation, two behind one PEX 8747: ACS
 * enabled at boot (SV RR CR UF = 001d) on every root and downstream port,
 * each GPU alone with its HDA function, the two behind 65:00.0 a clique. */
static void x299(void **state)
{
    expect_gpus("x299-3xa6000", x299_3xa6000_gpus);
    expect_cliques("x299-3xa6000", "0=[0000:67:00.0 0000:68:00.0]");
    expect_host_errors("x299-3xa6000", no_errors);
    expect_gpu_evidence("x299-3xa6000", "0000:67:00.0",
                        "0000:66:08.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 187f ctrl 001d); "
                        "0000:64:00.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d)",
                        "group 79: 0000:67:00.0 [vfio-pci], 0000:67:00.1 [vfio-pci] (functions of "
                        "slot 0000:67:00)");
}

/* Downstream port 66:08.0 with ACS Control 0: 67:00.0's path breaks and the
 * port joins its group (a bridge: the group stays viable). */
static void acs_off(void **state)
{
    expect_gpus("acs-off", acs_off_gpus);
    expect_cliques("acs-off", "0=[0000:67:00.0 0000:68:00.0]");
    expect_host_errors("acs-off", no_errors);
    expect_gpu_evidence("acs-off", "0000:67:00.0",
                        "0000:66:08.0 downstream: ACS SV RR CR UF not enabled (ACS cap 187f ctrl 0000); "
                        "0000:64:00.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d)",
                        "group 77: 0000:67:00.0 [vfio-pci], 0000:67:00.1 [vfio-pci] (functions of "
                        "slot 0000:67:00) and bridges 0000:66:08.0 [pcieport]");
}

/* Root port 64:00.0 with ACS Control 0: both GPUs below share one group. */
static void acs_off_root(void **state)
{
    expect_gpus("acs-off-root", acs_off_root_gpus);
    expect_cliques("acs-off-root", "0=[0000:67:00.0 0000:68:00.0]");
    expect_host_errors("acs-off-root", no_errors);
    expect_gpu_evidence("acs-off-root", "0000:67:00.0",
                        "0000:66:08.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 187f ctrl 001d); "
                        "0000:64:00.0 root_port: ACS SV RR CR UF not enabled (ACS cap 001f ctrl 0000)",
                        "group 46 also holds 0000:68:00.0 [vfio-pci], 0000:68:00.1 [vfio-pci]: "
                        "neither functions of slot 0000:67:00 nor bridges");
}

/* 68:00.0 and its HDA fell off the bus: config all-ones, cached attributes
 * kept, link files as the kernel shows them for all-ones. */
static void allones(void **state)
{
    expect_gpus("allones", allones_gpus);
    expect_cliques("allones", "0=[0000:67:00.0 0000:68:00.0]");
    expect_host_errors("allones", no_errors);
}

/* 8x Quadro RTX 5000 behind two PEX 9797, 256-byte dumps: ACS unknown, one
 * group per root port (not viable), two cliques of four. */
static void sm4029(void **state)
{
    expect_gpus("sm4029-8xrtx5000", sm4029_8xrtx5000_gpus);
    expect_cliques("sm4029-8xrtx5000", "0=[0000:1a:00.0 0000:1c:00.0 0000:1d:00.0 0000:1e:00.0] "
                                       "1=[0000:3d:00.0 0000:3f:00.0 0000:40:00.0 0000:41:00.0]");
    expect_host_errors("sm4029-8xrtx5000", no_errors);
    expect_gpu_evidence("sm4029-8xrtx5000", "0000:1a:00.0",
                        "0000:19:04.0 downstream: ACS unknown (extended config space not "
                        "readable); 0000:17:00.0 root_port: ACS unknown (extended config space "
                        "not readable)", NULL);
}

/* Consumer RTX 3060 under a root port without ACS: root port, GPU and HDA
 * in one group. Only a bridge and the slot's functions, but the HDA
 * function is on snd_hda_intel, which VFIO refuses: not viable until it is
 * on vfio-pci (the clean-up's isolation step says the same,
 * test_isolation_agree.c). */
static void omen(void **state)
{
    expect_gpus("omen-3060", omen_3060_gpus);
    expect_cliques("omen-3060", "");
    expect_host_errors("omen-3060", no_errors);
    expect_gpu_evidence("omen-3060", "0000:01:00.0", "0000:00:01.0 root_port: no ACS capability",
                        "group 1 not viable: 0000:01:00.1 bound to snd_hda_intel (10de:228e, class 0403): "
                        "VFIO gives a VM the group only when each of its functions is on vfio-pci or unbound; "
                        "the clean-up's bind step moves the GPU's own functions there when the policy manages "
                        "them");
}

/* Arrow Lake iGPU (an RCiEP on the root bus) with ATS enabled, on i915 (the
 * host's display: not viable either way), RTX 5080. */
static void ats_on(void **state)
{
    expect_gpus("ats-on", ats_on_gpus);
    expect_cliques("ats-on", "");
    expect_host_errors("ats-on", no_errors);
    expect_gpu_evidence("ats-on", "0000:00:02.0",
                        "no root or downstream port between the GPU and the root complex",
                        "group 2 not viable: 0000:00:02.0 bound to i915 (8086:7d67, class 0300): VFIO gives a "
                        "VM the group only when each of its functions is on vfio-pci or unbound; the "
                        "clean-up's bind step moves the GPU's own functions there when the policy manages "
                        "them");
    gw_host *h = scan("ats-on");
    const gw_gpu *g = gw_host_find_gpu(h, "0000:00:02.0");
    assert_false(g->ats_ok);
    assert_string_equal(g->ats_evidence,
                        "ATS enabled on 0000:00:02.0 (control 0x8000): translated requests bypass the IOMMU");
    assert_false(g->isolation_viable);
    assert_int_equal(g->n_isolation_reasons, 2);
    g = gw_host_find_gpu(h, "0000:02:00.0");
    assert_true(g->isolation_viable && g->ats_ok);
    assert_string_equal(g->ats_evidence, "no ATS capability");
    gw_host_free(h);
}

/* 16 switches x 4 GPUs: every GPU's NUMA node, CPUs, group, path and clique
 * from the host's documented layout (stack s: root port R:00.0 with
 * R = 8 * (s % 8 + 1) + 0x80 * (s / 8), switch R+1:00.0, downstream ports
 * R+2:{08,09,10,11}.0, GPUs R+3..R+6:00.0, node s / 8), not from the code. */
static void synth64(void **state)
{
    gw_host *h = scan("synth64");
    assert_int_equal(gw_host_gpu_count(h), 64);
    assert_int_equal(gw_host_clique_count(h), 16);
    assert_int_equal(gw_host_error_count(h), 0);
    static const int dsp[4] = { 0x08, 0x09, 0x10, 0x11 };
    for (int s = 0; s < 16; s++) {
        int r = 8 * (s % 8 + 1) + 0x80 * (s / 8);
        assert_int_equal(gw_host_clique_size(h, (size_t)s), 4);
        for (int k = 0; k < 4; k++) {
            char addr[16], want[512];
            snprintf(addr, sizeof addr, "0000:%02x:00.0", r + 3 + k);
            const gw_gpu *g = gw_host_gpu(h, (size_t)(4 * s + k));
            snprintf(want, sizeof want,
                     "%s numa %d cpus %s group %d clique %d acs %d viable %d errors %zu "
                     "up 0000:%02x:%02x.0/0000:%02x:00.0/0000:%02x:00.0 members %zu",
                     addr, s / 8, s / 8 ? "32-63,96-127" : "0-31,64-95", 10 * s + 6 + k, s, 1, 1,
                     (size_t)0, r + 2, dsp[k], r + 1, r, (size_t)2);
            char got[512];
            snprintf(got, sizeof got,
                     "%s numa %d cpus %s group %s clique %d acs %d viable %d errors %zu "
                     "up %s/%s/%s members %zu",
                     g->address, g->numa_node, g->local_cpulist, g->iommu_group, g->clique,
                     g->acs_path_ok, g->group_viable, g->n_errors, g->upstream[0].address,
                     g->upstream[1].address, g->upstream[2].address, g->n_group_members);
            assert_string_equal(got, want);
            assert_string_equal(gw_host_clique_member(h, (size_t)s, (size_t)k), addr);
        }
    }
    gw_host_free(h);
    /* and one GPU in full */
    static const char *const first[] = {
        "0000:0b:00.0 10de:2230 sub 10de:1459 rev a1 class 0300 numa 0 cpus 0-31,64-95"
        " group 6 [0000:0b:00.0=vfio-pci/slot 0000:0b:00.1=vfio-pci/slot]"
        " driver vfio-pci flr yes reset [flr]"
        " link 2.5x16/16x16 ats - aer yes(0/0/0) dsn - rom yes bar0 0 fns [0000:0b:00.1]"
        " up [0000:0a:08.0 10b5:8747 downstream acs 187f/001d; 0000:09:00.0 10b5:8747 upstream "
        "acs none; 0000:08:00.0 8086:2030 root_port acs 001f/001d]"
        " acs_ok yes viable yes clique 0"
        " errors []",
    };
    gw_host *h2 = scan("synth64");
    char *root = host_path("synth64");
    assert_string_equal(render(gw_host_gpu(h2, 0), root), first[0]);
    free(root);
    gw_host_free(h2);
}

/* The HGX host (tests/fixtures/build_hosts.py load_hgx): per socket s (0, 1)
 * four switch stacks k with root port R:00.0, R = 0x80 * s + 0x10 + 0x18 * k,
 * switch R+1:00.0, downstream ports R+2:00.0 and R+2:01.0 above the GPUs
 * R+3:00.0 and R+4:00.0 (each with its HDA function), node s; two GPUs per
 * switch make a clique; NICs, NVMe, NVSwitches and uncore around them are
 * no GPUs. From the documented layout, not from the code. */
static void hgx16(void **state)
{
    gw_host *h = scan("hgx16");
    assert_int_equal(gw_host_gpu_count(h), 16);
    assert_int_equal(gw_host_clique_count(h), 8);
    assert_int_equal(gw_host_error_count(h), 0);
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < 4; k++) {
            int r = 0x80 * s + 0x10 + 0x18 * k, c = 4 * s + k;
            assert_int_equal(gw_host_clique_size(h, (size_t)c), 2);
            for (int i = 0; i < 2; i++) {
                char addr[16], want[512], got[512];
                snprintf(addr, sizeof addr, "0000:%02x:00.0", r + 3 + i);
                const gw_gpu *g = gw_host_find_gpu(h, addr);
                assert_non_null(g);
                snprintf(want, sizeof want,
                         "%s numa %d cpus %s clique %d acs 1 viable 1 errors 0 "
                         "up 0000:%02x:%02x.0/0000:%02x:00.0/0000:%02x:00.0 members 2",
                         addr, s, s ? "56-111,168-223" : "0-55,112-167", c, r + 2, i, r + 1, r);
                snprintf(got, sizeof got,
                         "%s numa %d cpus %s clique %d acs %d viable %d errors %zu "
                         "up %s/%s/%s members %zu",
                         g->address, g->numa_node, g->local_cpulist, g->clique, g->acs_path_ok,
                         g->group_viable, g->n_errors, g->upstream[0].address,
                         g->upstream[1].address, g->upstream[2].address, g->n_group_members);
                assert_string_equal(got, want);
                assert_string_equal(gw_host_clique_member(h, (size_t)c, (size_t)i), addr);
            }
        }
    }
    gw_host_free(h);
}

/* The broken hosts: the omen-3060 host with one defect each. The GPU is
 * still listed; what could not be read says why. */
static void broken_vendor(void **state)
{
    expect_gpus("broken-vendor", broken_vendor_gpus);
    expect_host_errors("broken-vendor", no_errors);
}

static void broken_numa(void **state)
{
    expect_gpus("broken-numa", broken_numa_gpus);
    expect_host_errors("broken-numa", no_errors);
}

static void broken_config(void **state)
{
    expect_gpus("broken-config", broken_config_gpus);
    expect_host_errors("broken-config", no_errors);
}

static void broken_group(void **state)
{
    expect_gpus("broken-group", broken_group_gpus);
    expect_host_errors("broken-group", no_errors);
    expect_gpu_evidence("broken-group", "0000:01:00.0", "0000:00:01.0 root_port: no ACS capability",
                        "IOMMU group unknown: the iommu_group link is dangling");
}

static void broken_entry(void **state)
{
    static const char *const errs[] = {
        "ROOT/sys/bus/pci/devices/README: not a PCI address (dddd:bb:dd.f); skipped", NULL };
    expect_gpus("broken-entry", broken_entry_gpus);
    expect_host_errors("broken-entry", errs);
}

static void broken_bdf(void **state)
{
    static const char *const errs[] = {
        "ROOT/sys/bus/pci/devices/0000:zz:00.0: not a PCI address (dddd:bb:dd.f); skipped", NULL };
    expect_gpus("broken-bdf", broken_bdf_gpus);
    expect_host_errors("broken-bdf", errs);
}

/* Every host directory is covered by a test above. */
static void every_host_is_tested(void **state)
{
    static const char *const tested[] = {
        "acs-off", "acs-off-root", "allones", "ats-on", "broken-bdf", "broken-config",
        "broken-entry", "broken-group", "broken-numa", "broken-vendor", "hgx16", "omen-3060",
        "sm4029-8xrtx5000", "synth64", "x299-3xa6000", NULL };
    char *dir = hosts_dir();
    char *cmd = gw_strdup_printf("find '%s' -mindepth 1 -maxdepth 1 -type d -printf '%%f\\n' | "
                                 "LC_ALL=C sort | tr '\\n' ' '", dir);
    FILE *p = popen(cmd, "r");
    char got[1024] = "";
    assert_non_null(fgets(got, sizeof got, p));
    pclose(p);
    buf want = { .n = 0 };
    for (size_t i = 0; tested[i]; i++)
        put(&want, "%s ", tested[i]);
    assert_string_equal(got, want.s);
    free(cmd);
    free(dir);
}

int main(void)
{
    const char *dump = getenv("GW_TEST_PRINT");
    if (dump) {   /* a helper for writing expectations: print what a host renders */
        print_host(dump);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(x299),
        cmocka_unit_test(acs_off),
        cmocka_unit_test(acs_off_root),
        cmocka_unit_test(allones),
        cmocka_unit_test(sm4029),
        cmocka_unit_test(omen),
        cmocka_unit_test(ats_on),
        cmocka_unit_test(synth64),
        cmocka_unit_test(hgx16),
        cmocka_unit_test(broken_vendor),
        cmocka_unit_test(broken_numa),
        cmocka_unit_test(broken_config),
        cmocka_unit_test(broken_group),
        cmocka_unit_test(broken_entry),
        cmocka_unit_test(broken_bdf),
        cmocka_unit_test(every_host_is_tested),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
