/* Step hooks: the operator's executables in the hooks directory, in name
 * order (run-parts rules: names of [A-Za-z0-9_-] only), each with the device
 * address and the evidence so far in its environment and a timeout. Nonzero
 * exit, death by signal or timeout fails the step. A hook runs in a process
 * group of its own so that a timeout kills it and whatever it started
 * (gw_exec_run, sanitize_exec.c, shared with the driver scrub's commands).
 *
 * Hooks are programs on this machine, not sysfs operations, so they are the
 * one part of the clean-up that does not go through the host backend. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

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

static gw_verdict run(gw_sctx *c)
{
    const char *dir = c->policy->pol.hooks_dir;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return gw_skip(c, "no hooks directory %s", dir);
        return gw_fail(c, "hooks directory %s: %s", dir, strerror(errno));
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!run_parts_name(de->d_name))
            continue;
        _cleanup_free_ char *p = gw_strdup_printf("%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (!(st.st_mode & 0111)) {
            gw_note(c, "%s ignored: not executable", de->d_name);
            continue;
        }
        names = gw_xrealloc(names, n + 1, sizeof *names);
        names[n++] = gw_xstrdup(de->d_name);
    }
    closedir(d);
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
    for (size_t i = 0; i < n && v == GW_VERDICT_PASS; i++) {
        _cleanup_free_ char *p = gw_strdup_printf("%s/%s", dir, names[i]);
        gw_exec_outcome o = { 0 };
        pid_t pid = 0;
        int64_t t0 = now_ms();
        char *argv[] = { p, c->address, NULL };
        int r = gw_exec_run(argv, envp, timeout, &o, &pid);
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
            gw_note(c, "hook %s exited 0 in %lld ms", names[i], (long long)took);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return v;
}

const gw_step_def gw_step_hooks = { GW_STEP_HOOKS, "hooks", run };
