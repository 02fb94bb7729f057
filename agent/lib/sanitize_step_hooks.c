/* SPDX-License-Identifier: Apache-2.0 */
/* Step hooks: the operator's executables in the hooks directory, in name
 * order (run-parts rules: names of [A-Za-z0-9_-] only), each with the device
 * address and the evidence so far in its environment and a timeout. Nonzero
 * exit, death by signal or timeout fails the step. A hook runs in a process
 * group of its own so that a timeout kills it and whatever it started
 * (gw_exec_run_limited, sanitize_exec.c, shared with the driver scrub's
 * commands), with resource limits and an environment of ours only.
 *
 * A hook runs as root, so whoever can change it can run anything as root: the
 * directory and every hook must be owned by the policy's hooks_owner_uid
 * (root, unless a test says otherwise) and not writable by group or others,
 * as cron and sudo demand of their files. Anything else is refused before
 * any hook runs, and the step fails naming the path, the owner and the mode.
 *
 * Hooks are programs on this machine, not sysfs operations, so they are the
 * one part of the clean-up that does not go through the host backend. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

/* Limits of every hook (docs/sanitize.md): CPU time its timeout (a process
 * cannot need more CPU than the wall time it has, unless it runs threads in
 * parallel), files up to 1 GiB, and 1024 processes of its user (not
 * enforced by the kernel for root; the group kill bounds what it starts). */
#define HOOK_FSIZE_MAX (1ul << 30)
#define HOOK_NPROC_MAX 1024ul

static bool run_parts_name(const char *n)
{
    if (!*n)
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '_' ||
              *n == '-'))
            return false;
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Why `st` may not be trusted as root's, or NULL when it may. */
static char *untrusted(const struct stat *st, uid_t owner)
{
    if (st->st_uid == owner && !(st->st_mode & (S_IWGRP | S_IWOTH)))
        return NULL;
    gw_strbuf why = { 0 };
    gw_strbuf_append(&why, "owned by uid %u, mode %04o", (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777));
    if (st->st_uid != owner)
        gw_strbuf_append(&why, ": not owned by uid %u", (unsigned)owner);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        gw_strbuf_append(&why, "%s writable by %s", st->st_uid != owner ? " and" : ":",
                         (st->st_mode & S_IWGRP) && (st->st_mode & S_IWOTH) ? "group and others"
                         : st->st_mode & S_IWGRP                           ? "group"
                                                                           : "others");
    return why.s;
}

static gw_verdict run(gw_sctx *c)
{
    const char *dir = c->policy->pol.hooks_dir;
    uid_t owner = (uid_t)c->policy->pol.hooks_owner_uid;
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return gw_skip(c, "no hooks directory %s", dir);
        return gw_fail(c, "hooks directory %s: %s", dir, strerror(errno));
    }
    struct stat dst;
    if (fstat(dfd, &dst) < 0)
        return gw_fail(c, "hooks directory %s: %s", dir, strerror(errno));
    _cleanup_free_ char *dir_why = untrusted(&dst, owner);
    if (dir_why)
        return gw_fail(c, "hooks directory %s refused: %s (a hook runs as root: the directory and its hooks "
                       "must be owned by uid %u and writable by no one else); no hook ran", dir, dir_why,
                       (unsigned)owner);
    int lfd = dup(dfd);
    DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
    if (!d) {
        int e = errno;
        if (lfd >= 0)
            close(lfd);
        return gw_fail(c, "hooks directory %s: %s", dir, strerror(e));
    }
    char **names = NULL;
    size_t n = 0;
    gw_strbuf refused = { 0 };
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!run_parts_name(de->d_name))
            continue;
        struct stat st;
        /* Following a symlink, as run-parts does: what runs is its target. */
        if (fstatat(dfd, de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (!(st.st_mode & 0111)) {
            gw_note(c, "%s ignored: not executable", de->d_name);
            continue;
        }
        _cleanup_free_ char *why = untrusted(&st, owner);
        if (why) {
            gw_strbuf_append(&refused, "%shook %s/%s refused: %s", refused.len ? "; " : "", dir, de->d_name, why);
            continue;
        }
        names = gw_xrealloc(names, n + 1, sizeof *names);
        names[n++] = gw_xstrdup(de->d_name);
    }
    closedir(d);
    if (refused.len) {
        /* None runs: a set with one hook anyone could have changed is not
         * the set the operator installed. */
        gw_verdict v = gw_fail(c, "%s (a hook runs as root: it must be owned by uid %u and writable by no one "
                               "else); no hook ran", gw_strbuf_str(&refused), (unsigned)owner);
        gw_strbuf_clear(&refused);
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return v;
    }
    if (!n) {
        free(names);
        return gw_skip(c, "no hooks in %s", dir);
    }
    for (size_t i = 1; i < n; i++)     /* insertion sort by strcmp: a handful of names */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }

    /* One line per finished step, "step: verdict: evidence", no final newline. */
    pthread_mutex_lock(&c->lock);
    _cleanup_free_ char *env_evidence = gw_strdup_printf("GW_EVIDENCE=%s", gw_strbuf_str(&c->history));
    pthread_mutex_unlock(&c->lock);
    size_t el = strlen(env_evidence);
    if (el && env_evidence[el - 1] == '\n')
        env_evidence[el - 1] = '\0';
    _cleanup_free_ char *env_dev = gw_strdup_printf("GW_DEVICE=%s", c->address);
    _cleanup_free_ char *env_backend = gw_strdup_printf("GW_HOST_BACKEND=%s", gw_hostops_name(c->ops));
    char *envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", env_dev, env_evidence,
                     env_backend, "LC_ALL=C", NULL };

    gw_verdict v = GW_VERDICT_PASS;
    unsigned timeout = c->policy->pol.hook_timeout_ms;
    const gw_exec_limits lim = { (timeout + 999) / 1000, HOOK_FSIZE_MAX, HOOK_NPROC_MAX };
    for (size_t i = 0; i < n && v == GW_VERDICT_PASS; i++) {
        _cleanup_free_ char *p = gw_strdup_printf("%s/%s", dir, names[i]);
        gw_exec_outcome o = { 0 };
        pid_t pid = 0;
        int64_t t0 = now_ms();
        char *argv[] = { p, c->address, NULL };
        int r = gw_exec_run_limited(argv, envp, timeout, &lim, &o, &pid);
        int64_t took = now_ms() - t0;
        _cleanup_free_ char *tail = gw_exec_output_tail(&o);
        if (r < 0)
            v = gw_fail(c, "hook %s could not start: %s", names[i], strerror(-r));
        else if (o.timed_out)
            v = gw_fail(c, "hook %s timed out after %u ms: killed its process group %d%s", names[i], timeout,
                        (int)pid, tail);
        else if (WIFSIGNALED(o.status))
            v = gw_fail(c, "hook %s killed by signal %d%s", names[i], WTERMSIG(o.status), tail);
        else if (WEXITSTATUS(o.status) != 0)
            v = gw_fail(c, "hook %s exited %d%s", names[i], WEXITSTATUS(o.status), tail);
        else
            gw_note(c, "hook %s exited 0 in %lld ms%s", names[i], (long long)took,
                    o.left_running ? "; what it left running in its process group was killed" : "");
        /* Nothing of a hook may outlive its step. */
        if (r >= 0 && o.still_running)
            v = gw_fail(c, "hook %s: %d process(es) of its process group %d still running 5 s after SIGKILL "
                        "(uninterruptible sleep?)", names[i], o.still_running, (int)pid);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return v;
}

const gw_step_def gw_step_hooks = { GW_STEP_HOOKS, "hooks", run };
