/* Step hooks: the operator's executables in the hooks directory, in name
 * order (run-parts rules: names of [A-Za-z0-9_-] only), each with the device
 * address and the evidence so far in its environment and a timeout. Nonzero
 * exit, death by signal or timeout fails the step. A hook runs in a process
 * group of its own so that a timeout kills it and whatever it started.
 *
 * Hooks are programs on this machine, not sysfs operations, so they are the
 * one part of the clean-up that does not go through the host backend. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

#define OUTPUT_KEEP 1024

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

typedef struct hook_outcome {
    bool timed_out;
    int status;             /* waitpid status */
    char out[OUTPUT_KEEP + 1];  /* the last bytes of stdout+stderr */
    size_t out_len;
} hook_outcome;

static void keep_output(hook_outcome *o, const char *buf, size_t n)
{
    if (n >= OUTPUT_KEEP) {
        memcpy(o->out, buf + n - OUTPUT_KEEP, OUTPUT_KEEP);
        o->out_len = OUTPUT_KEEP;
        return;
    }
    if (o->out_len + n > OUTPUT_KEEP) {
        size_t drop = o->out_len + n - OUTPUT_KEEP;
        memmove(o->out, o->out + drop, o->out_len - drop);
        o->out_len -= drop;
    }
    memcpy(o->out + o->out_len, buf, n);
    o->out_len += n;
}

static void drain(int fd, hook_outcome *o)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        keep_output(o, buf, (size_t)n);
}

static int run_hook(const char *path, const char *address, char *const envp[], unsigned timeout_ms,
                    hook_outcome *o, pid_t *pid_out)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGCHLD);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = { (char *)path, (char *)address, NULL };
    pid_t pid;
    int r = posix_spawn(&pid, path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pipefd[1]);
    if (r != 0) {
        close(pipefd[0]);
        return -r;
    }
    *pid_out = pid;

    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int64_t deadline = now_ms() + timeout_ms;
    bool exited = false;
    bool pipe_open = true;
    while (!exited) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            o->timed_out = true;
            break;
        }
        struct pollfd pf[2] = { { pipe_open ? pipefd[0] : -1, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
        int wait = (int)(left > 100 && pidfd < 0 ? 100 : left);   /* no pidfd: poll waitpid */
        int n = poll(pf, 2, wait);
        if (n < 0 && errno != EINTR)
            break;
        if (pipe_open && pf[0].revents) {
            char buf[4096];
            ssize_t got = read(pipefd[0], buf, sizeof buf);
            if (got > 0)
                keep_output(o, buf, (size_t)got);
            else if (got == 0)
                pipe_open = false;
        }
        if (pidfd < 0 || pf[1].revents) {
            pid_t w = waitpid(pid, &o->status, WNOHANG);
            if (w == pid)
                exited = true;
        }
    }
    if (o->timed_out) {
        kill(-pid, SIGKILL);
        waitpid(pid, &o->status, 0);
    }
    drain(pipefd[0], o);
    if (pidfd >= 0)
        close(pidfd);
    close(pipefd[0]);
    return 0;
}

static char *output_tail(const hook_outcome *o)
{
    if (!o->out_len)
        return gw_xstrdup("");
    /* One line for the evidence: the last non-empty lines, newlines shown as " | ". */
    gw_strbuf b = { 0 };
    gw_strbuf_append(&b, ", output: ");
    size_t end = o->out_len;
    while (end > 0 && (o->out[end - 1] == '\n' || o->out[end - 1] == ' '))
        end--;
    size_t start = end > 200 ? end - 200 : 0;
    for (size_t i = start; i < end; i++) {
        char ch = o->out[i];
        if (ch == '\n')
            gw_strbuf_append(&b, " | ");
        else if ((unsigned char)ch < 0x20 || ch == 0x7f)
            gw_strbuf_append(&b, "?");
        else
            gw_strbuf_append(&b, "%c", ch);
    }
    return b.s;
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
        hook_outcome o = { 0 };
        pid_t pid = 0;
        int64_t t0 = now_ms();
        int r = run_hook(p, c->address, envp, timeout, &o, &pid);
        int64_t took = now_ms() - t0;
        _cleanup_free_ char *tail = output_tail(&o);
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
