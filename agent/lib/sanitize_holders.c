/* SPDX-License-Identifier: Apache-2.0 */
/* Who holds a function through VFIO: the processes with its IOMMU group's
 * /dev/vfio/<group> (or its VFIO device cdev) open, found the way lsof
 * would, from proc/<pid>/fd links read through the host backend. A running
 * QEMU holds the group node for as long as the VM runs, whether or not
 * libvirt knows about it; resetting the device under it corrupts the VM.
 *
 * The scan is a look at a moving system: a process can open the node right
 * after it. So once the device is on vfio-pci the clean-up holds the group
 * node itself until the run ends (gw_hold_for_run): the kernel allows one
 * open at a time, and its EBUSY is the final word on whether someone has it.
 * The steps that need the group (the reset, the BAR scrub, the BAR0 read)
 * borrow that hold; groups the run does not hold (a bus reset's neighbours)
 * are held just across the step (gw_hold_groups). */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "sanitize_internal.h"

static void add_node(gw_vfio_scan *s, char *path, char *what, char *group, const char *addr)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        if (!strcmp(s->nodes[i].path, path)) {
            free(path);
            free(what);
            free(group);
            return;
        }
    }
    s->nodes = gw_xrealloc(s->nodes, s->n_nodes + 1, sizeof *s->nodes);
    gw_vfio_node *n = &s->nodes[s->n_nodes++];
    n->path = path;
    n->what = what;
    n->group = group;
    snprintf(n->address, sizeof n->address, "%s", addr);
}

/* The group number of `addr`, NULL when it has none (IOMMU off). */
static int group_of(gw_hostops *ops, const char *addr, char **out)
{
    _cleanup_free_ char *p = gw_dev_path(addr, "iommu_group");
    _cleanup_free_ char *t = NULL;
    *out = NULL;
    int r = gw_hostops_readlink(ops, p, &t);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    const char *slash = strrchr(t, '/');
    *out = gw_xstrdup(slash ? slash + 1 : t);
    return 0;
}

static int collect_nodes(gw_hostops *ops, const gw_addrlist *fns, gw_vfio_scan *s)
{
    for (size_t i = 0; i < fns->n; i++) {
        const char *a = fns->v[i];
        char *g;
        int r = group_of(ops, a, &g);
        if (r < 0)
            return r;
        if (g)
            add_node(s, gw_strdup_printf("/dev/vfio/%s", g), gw_strdup_printf("IOMMU group %s", g), g, a);
        /* The device cdev of newer kernels (iommufd): absent on 6.1. */
        _cleanup_free_ char *dir = gw_dev_path(a, "vfio-dev");
        char **names = NULL;
        size_t n = 0;
        if (gw_hostops_list(ops, dir, &names, &n) < 0)
            continue;
        for (size_t k = 0; k < n; k++)
            if (!strncmp(names[k], "vfio", 4))
                add_node(s, gw_strdup_printf("/dev/vfio/devices/%s", names[k]),
                         gw_strdup_printf("VFIO device %s", names[k]), NULL, a);
        gw_hostops_list_free(names, n);
    }
    return 0;
}

static bool is_pid(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* proc/<pid>/comm with its newline removed and anything unprintable made
 * '?'; -ENOENT when the process is gone. */
static int read_comm(gw_hostops *ops, const char *pid, char **out)
{
    _cleanup_free_ char *p = gw_strdup_printf("proc/%s/comm", pid);
    char *s;
    size_t n;
    int r = gw_hostops_read(ops, p, 256, &s, &n);
    if (r == -ENOENT || r == -ESRCH)
        return -ENOENT;
    if (r < 0) {
        *out = gw_xstrdup("?");
        return 0;
    }
    while (n && s[n - 1] == '\n')
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!isprint((unsigned char)s[i]))
            s[i] = '?';
    *out = s;
    return 0;
}

static void add_holder(gw_vfio_scan *s, long pid, const char *comm, size_t node)
{
    s->holders = gw_xrealloc(s->holders, s->n_holders + 1, sizeof *s->holders);
    s->holders[s->n_holders++] = (gw_vfio_holder){ pid, gw_xstrdup(comm), node };
}

/* Which node a descriptor's link names. A descriptor opened in another
 * mount namespace, whose /dev this one cannot reach, reads as the path
 * inside devtmpfs, "/vfio/10" (seen in the kernel lab: PID 1's copy of a
 * fence the daemon opened under PrivateMounts=): that names the node too. */
static long node_of(const gw_vfio_scan *s, const char *target)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        const char *p = s->nodes[i].path;
        if (!strcmp(p, target) || (!strncmp(p, "/dev/", 5) && !strcmp(p + 4, target)))
            return (long)i;
    }
    return -1;
}

/* One process: its descriptors that link to one of the nodes. A process
 * that exits meanwhile (ENOENT anywhere) is skipped: it holds nothing. */
static void scan_pid(gw_hostops *ops, gw_vfio_scan *s, const char *pid)
{
    _cleanup_free_ char *dir = gw_strdup_printf("proc/%s/fd", pid);
    char **fds = NULL;
    size_t n = 0;
    int r = gw_hostops_list(ops, dir, &fds, &n);
    if (r == -ENOENT || r == -ESRCH)
        return;
    if (r < 0) {
        s->unreadable++;
        return;
    }
    s->scanned++;
    _cleanup_free_ char *comm = NULL;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *p = gw_strdup_printf("%s/%s", dir, fds[i]);
        _cleanup_free_ char *target = NULL;
        if (gw_hostops_readlink(ops, p, &target) < 0)
            continue;
        long node = node_of(s, target);
        if (node < 0)
            continue;
        if (!comm && read_comm(ops, pid, &comm) < 0)
            break;
        add_holder(s, strtol(pid, NULL, 10), comm, (size_t)node);
    }
    gw_hostops_list_free(fds, n);
}

int gw_vfio_holders(gw_hostops *ops, const gw_addrlist *fns, gw_vfio_scan *out)
{
    memset(out, 0, sizeof *out);
    int r = collect_nodes(ops, fns, out);
    if (r < 0 || out->n_nodes == 0)
        return r;
    char **pids = NULL;
    size_t n = 0;
    r = gw_hostops_list(ops, "proc", &pids, &n);
    if (r == -ENOENT) {
        out->no_proc = true;
        return 0;
    }
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (is_pid(pids[i]))
            scan_pid(ops, out, pids[i]);
    gw_hostops_list_free(pids, n);
    return 0;
}

void gw_vfio_scan_clear(gw_vfio_scan *s)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        free(s->nodes[i].path);
        free(s->nodes[i].what);
        free(s->nodes[i].group);
    }
    free(s->nodes);
    for (size_t i = 0; i < s->n_holders; i++)
        free(s->holders[i].comm);
    free(s->holders);
    memset(s, 0, sizeof *s);
}

char *gw_vfio_holders_of(const gw_vfio_scan *s, size_t node)
{
    return gw_vfio_holders_but(s, node, -1);
}

char *gw_vfio_holders_but(const gw_vfio_scan *s, size_t node, long pid)
{
    gw_strbuf b = { 0 };
    for (size_t i = 0; i < s->n_holders; i++)
        if (s->holders[i].node == node && s->holders[i].pid != pid)
            gw_strbuf_append(&b, "%spid %ld (%s)", b.len ? ", " : "", s->holders[i].pid, s->holders[i].comm);
    return b.s;
}

/* ---- the check --------------------------------------------------------- */

/* The holders of node i but this run: this process's open of a group node
 * the run holds (gw_hold_for_run) is the clean-up's own, not a tenant's. */
static char *others_of(gw_sctx *c, const gw_vfio_scan *s, size_t node)
{
    pthread_mutex_lock(&c->lock);
    bool ours = s->nodes[node].group && gw_group_held(&c->run_holds, s->nodes[node].group);
    pthread_mutex_unlock(&c->lock);
    return gw_vfio_holders_but(s, node, ours ? (long)getpid() : -1);
}

static void note_scan(gw_sctx *c, const gw_vfio_scan *s)
{
    gw_strbuf nodes = { 0 };
    for (size_t i = 0; i < s->n_nodes; i++)
        gw_strbuf_append(&nodes, "%s%s", i ? ", " : "", s->nodes[i].path);
    if (s->no_proc)
        gw_note(c, "no proc directory under the host root: holders of %s not looked for", gw_strbuf_str(&nodes));
    else if (!s->n_holders)
        gw_note(c, "no process has %s open (%zu processes looked at)", gw_strbuf_str(&nodes), s->scanned);
    if (s->unreadable)
        gw_note(c, "%zu processes' descriptors unreadable: their holds are not seen here", s->unreadable);
    gw_strbuf_clear(&nodes);
}

gw_verdict gw_check_holders(gw_sctx *c, const gw_addrlist *targets)
{
    gw_vfio_scan s;
    int r = gw_vfio_holders(c->ops, targets, &s);
    if (r < 0) {
        gw_vfio_scan_clear(&s);
        return gw_fail(c, "cannot tell which processes hold the device's VFIO nodes (%s); counted as in use",
                       gw_error_message());
    }
    if (s.n_nodes == 0)
        gw_note(c, "no IOMMU group: no VFIO node a process could hold");
    else
        note_scan(c, &s);
    gw_verdict v = GW_VERDICT_PASS;
    for (size_t i = 0; i < s.n_nodes; i++) {
        _cleanup_free_ char *who = others_of(c, &s, i);
        if (who)
            v = gw_fail(c, "%s: %s (%s) is open by %s: in use", s.nodes[i].address, s.nodes[i].what,
                        s.nodes[i].path, who);
    }
    gw_vfio_scan_clear(&s);
    return v;
}

/* ---- holding the group nodes across the reset ---------------------------- */

static void push_hold(gw_group_holds *h, void *handle, const char *group, bool borrowed)
{
    h->handles = gw_xrealloc(h->handles, h->n + 1, sizeof *h->handles);
    h->groups = gw_xrealloc(h->groups, h->n + 1, sizeof *h->groups);
    h->borrowed = gw_xrealloc(h->borrowed, h->n + 1, sizeof *h->borrowed);
    h->groups[h->n] = gw_xstrdup(group);
    h->borrowed[h->n] = borrowed;
    h->handles[h->n++] = handle;
}

void *gw_group_held(const gw_group_holds *h, const char *group)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->groups[i], group))
            return h->handles[i];
    return NULL;
}

int gw_group_held_for(gw_sctx *c, const gw_group_holds *h, const char *addr, char **group, void **held)
{
    *held = NULL;
    int r = group_of(c->ops, addr, group);
    if (r < 0)
        return r;
    if (!*group)
        return gw_error_set(-ENOENT, "%s has no IOMMU group", addr);
    *held = gw_group_held(h, *group);
    return 0;
}

/* The kernel said EBUSY: look again to say who. */
static gw_verdict busy(gw_sctx *c, const gw_addrlist *fns, const gw_vfio_node *n)
{
    pthread_mutex_lock(&c->lock);
    c->in_use = true;
    pthread_mutex_unlock(&c->lock);
    gw_vfio_scan s;
    _cleanup_free_ char *who = NULL;
    bool only_self = false;     /* every holder is this process */
    if (gw_vfio_holders(c->ops, fns, &s) == 0) {
        for (size_t i = 0; i < s.n_nodes && !who; i++) {
            if (strcmp(s.nodes[i].path, n->path))
                continue;
            who = gw_vfio_holders_of(&s, i);
            _cleanup_free_ char *others = gw_vfio_holders_but(&s, i, (long)getpid());
            only_self = who && !others;
        }
    }
    bool no_proc = s.no_proc;
    gw_vfio_scan_clear(&s);
    if (only_self)
        return gw_fail(c, "%s: %s (%s) is open by %s: in use (the kernel refused our open: EBUSY; that is this "
                       "process: the clean-up of another device in its reach, or a fence, holds it)",
                       n->address, n->what, n->path, who);
    if (who)
        return gw_fail(c, "%s: %s (%s) is open by %s: in use (the kernel refused our open: EBUSY)", n->address,
                       n->what, n->path, who);
    return gw_fail(c, "%s: %s (%s) is open by another process (the kernel refused our open: EBUSY; %s): in use",
                   n->address, n->what, n->path,
                   no_proc ? "no proc under the host root to name it" : "not found in proc, it may have just closed it");
}

gw_verdict gw_hold_groups(gw_sctx *c, const gw_addrlist *fns, const char *across, gw_group_holds *out)
{
    memset(out, 0, sizeof *out);
    gw_vfio_scan nodes = { 0 };
    if (collect_nodes(c->ops, fns, &nodes) < 0) {
        gw_vfio_scan_clear(&nodes);
        return gw_fail(c, "cannot read the IOMMU groups to hold: %s", gw_error_message());
    }
    gw_verdict v = GW_VERDICT_PASS;
    for (size_t i = 0; i < nodes.n_nodes && v == GW_VERDICT_PASS; i++) {
        const gw_vfio_node *n = &nodes.nodes[i];
        if (!n->group)
            continue;   /* device cdevs are not exclusive: the scan covers them */
        pthread_mutex_lock(&c->lock);
        void *handle = out != &c->run_holds ? gw_group_held(&c->run_holds, n->group) : NULL;
        pthread_mutex_unlock(&c->lock);
        if (handle) {
            push_hold(out, handle, n->group, true);
            gw_note(c, "%s held since the bind step: no VM can take the group during %s", n->path, across);
            continue;
        }
        _cleanup_free_ char *path = gw_strdup_printf("dev/vfio/%s", n->group);
        int r = gw_hostops_hold(c->ops, path, &handle);
        if (r == 0) {
            pthread_mutex_lock(&c->lock);
            push_hold(out, handle, n->group, false);
            pthread_mutex_unlock(&c->lock);
            gw_note(c, "holding %s open across %s (one open at a time: no VM can take the group meanwhile)",
                    n->path, across);
        } else if (r == -EBUSY) {
            v = busy(c, fns, n);
        } else if (r == -ENOENT || r == -ENODEV) {
            gw_note(c, "%s not held: %s", n->path, gw_error_message());
        } else if (r == -EOPNOTSUPP) {
            gw_note(c, "%s not held: %s: a process opening it before the reset returns is not kept out", n->path,
                    gw_error_message());
        } else {
            v = gw_fail(c, "cannot hold %s to keep VMs off during %s: %s", n->path, across, gw_error_message());
        }
    }
    gw_vfio_scan_clear(&nodes);
    return v;
}

void gw_release_groups(gw_sctx *c, gw_group_holds *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (!h->borrowed[i])
            gw_hostops_release(c->ops, h->handles[i]);
        free(h->groups[i]);
    }
    free(h->handles);
    free(h->groups);
    free(h->borrowed);
    memset(h, 0, sizeof *h);
}

/* ---- the run's own hold: from bind to the end ------------------------------ */

gw_verdict gw_hold_for_run(gw_sctx *c, const gw_addrlist *fns)
{
    /* Filled under the lock by gw_hold_groups(); read by the steps after. */
    return gw_hold_groups(c, fns, "the rest of the clean-up", &c->run_holds);
}

void gw_release_run_holds(gw_sctx *c, const char *why)
{
    pthread_mutex_lock(&c->lock);
    gw_group_holds h = c->run_holds;
    memset(&c->run_holds, 0, sizeof c->run_holds);
    pthread_mutex_unlock(&c->lock);
    if (why && h.n) {
        gw_strbuf nodes = { 0 };
        for (size_t i = 0; i < h.n; i++)
            gw_strbuf_append(&nodes, "%s/dev/vfio/%s", i ? ", " : "", h.groups[i]);
        gw_note(c, "let go of %s: %s", gw_strbuf_str(&nodes), why);
        gw_strbuf_clear(&nodes);
    }
    gw_release_groups(c, &h);
}
