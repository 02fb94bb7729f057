/* SPDX-License-Identifier: Apache-2.0 */
/* Fences across a restart: each fence's descriptor also goes to systemd's
 * file descriptor store (sd_pid_notify_with_fds, "FDSTORE=1", named
 * gw-fence-<group>; the unit's FileDescriptorStoreMax=). A process's
 * descriptors close when it exits, so without this a quarantined GPU's
 * group is free from the daemon's exit to its next fence: the whole of a
 * restart (an upgrade's, a crash's with Restart=on-failure, `systemctl
 * restart`). systemd holds its copies meanwhile and hands them back to the
 * next start (LISTEN_FDS, LISTEN_FDNAMES), which adopts each as its fence
 * when it is still the live open of the group's node (gw_hostops_adopt: a
 * group that went away and came back has a new node, maybe with the old
 * number), and lets go of the rest after its first sync.
 *
 * A lifted fence leaves the store before its descriptor closes, and the
 * daemon waits until systemd has closed its copy (sd_notify_barrier): the
 * clean-up that follows a release opens the group itself and would find it
 * held by PID 1. systemd empties the store when the unit stops for good
 * (`systemctl stop`): then the fences lapse until the next start, as
 * documented. Without NOTIFY_SOCKET (not under systemd) none of this does
 * anything.
 *
 * Main thread only, like the fences; the kept list is (L). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon.h"
#include "util.h"

#define NAME_PREFIX "gw-fence-"
#define BARRIER_TIMEOUT_US (5 * 1000000ull)

typedef struct gwd_kept {
    char group[32];
    int fd;
} gwd_kept;

/* Whether `s` is an IOMMU group number (what follows the prefix). */
static bool group_number(const char *s)
{
    return *s && strlen(s) < sizeof((gwd_kept *)0)->group && strspn(s, "0123456789") == strlen(s);
}

void gwd_fence_store_init(gwd *d)
{
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) {
        gw_log(GW_LOG_WARNING, "descriptors handed over at start unreadable: %s: fences start afresh", strerror(-n));
        return;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        const char *name = names && names[i] ? names[i] : "";
        if (strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) || !group_number(name + strlen(NAME_PREFIX))) {
            gw_log(GW_LOG_WARNING, "descriptor %d handed over at start, named '%s', is not a fence: closed", fd, name);
            close(fd);
            continue;
        }
        /* systemd passes them inheritable: no hook or scrub command may
         * get a fence. */
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        d->kept = gw_xrealloc(d->kept, d->n_kept + 1, sizeof *d->kept);
        gwd_kept *k = &d->kept[d->n_kept++];
        snprintf(k->group, sizeof k->group, "%s", name + strlen(NAME_PREFIX));
        k->fd = fd;
    }
    if (d->n_kept)
        gw_log(GW_LOG_NOTICE, "%zu fence descriptor(s) kept by systemd across the restart", d->n_kept);
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int gwd_fence_store_take(gwd *d, const char *group)
{
    for (size_t i = 0; i < d->n_kept; i++) {
        if (strcmp(d->kept[i].group, group))
            continue;
        int fd = d->kept[i].fd;
        d->kept[i] = d->kept[--d->n_kept];
        return fd;
    }
    return -1;
}

bool gwd_fence_store_put(gwd *d, const char *group, void *handle)
{
    int fd = gw_hostops_held_fd(d->ops, handle);
    if (fd < 0)
        return false;       /* a backend without descriptors (the simulator) */
    char msg[64];
    snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=" NAME_PREFIX "%s", group);
    int r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
    if (r < 0)
        gw_log(GW_LOG_WARNING, "IOMMU group %s: fence not given to systemd's descriptor store (%s): it lapses "
                               "while the daemon restarts", group, strerror(-r));
    return r > 0;
}

void gwd_fence_store_drop(const char *group)
{
    char msg[80];
    snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=" NAME_PREFIX "%s", group);
    int r = sd_notify(0, msg);
    if (r > 0)
        r = sd_notify_barrier(0, BARRIER_TIMEOUT_US);
    if (r < 0)
        gw_log(GW_LOG_WARNING, "IOMMU group %s: systemd's copy of the fence may still be open (%s): a clean-up "
                               "now may find the group held by PID 1 (in use, tried again later)",
               group, strerror(-r));
}

void gwd_fence_store_settle(gwd *d)
{
    for (size_t i = 0; i < d->n_kept; i++) {
        gw_log(GW_LOG_NOTICE, "IOMMU group %s: the fence kept across the restart is no longer wanted: let go",
               d->kept[i].group);
        gwd_fence_store_drop(d->kept[i].group);
    }
    gwd_fence_store_fini(d);
}

void gwd_fence_store_fini(gwd *d)
{
    for (size_t i = 0; i < d->n_kept; i++)
        close(d->kept[i].fd);       /* systemd keeps its copies unless dropped */
    free(d->kept);
    d->kept = NULL;
    d->n_kept = 0;
}
