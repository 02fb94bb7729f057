/* SPDX-License-Identifier: Apache-2.0 */
/* Running a program on this machine for the clean-up (sanitize_exec.c): the
 * hooks step and the driver scrub's commands. Not through the host backend:
 * these are programs, not sysfs operations.
 *
 * What a program gets: exactly the environment it is handed (nothing of the
 * daemon's), stdin /dev/null, stdout and stderr into a pipe we read, cwd /,
 * umask 022, default signal dispositions and an empty signal mask, no other
 * descriptor (close_range CLOEXEC), optional resource limits, and a process
 * group of its own (setpgid in both the child and the parent, so that a
 * kill of the group can never miss a child that has not run yet). When the
 * program ends or its time is up, its whole group is SIGKILLed and we wait
 * until no process of the group is left running before the leader is
 * reaped: the leader, unreaped, keeps the group's id from being reused, so
 * the kill and the wait cannot reach an unrelated process. Processes that
 * left the group (setsid, setpgid) are beyond this; a cgroup would be needed
 * for them. fork() rather than posix_spawn(): the limits and the umask have
 * to be set in the child, and everything the child calls before execve is
 * async-signal-safe. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* How long the group may take to die after SIGKILL: only a process in an
 * uninterruptible sleep takes more than a moment. */
#define GROUP_GONE_MS 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void keep_output(gw_exec_outcome *o, const char *buf, size_t n)
{
    if (n >= GW_EXEC_OUTPUT_KEEP) {
        memcpy(o->out, buf + n - GW_EXEC_OUTPUT_KEEP, GW_EXEC_OUTPUT_KEEP);
        o->out_len = GW_EXEC_OUTPUT_KEEP;
        return;
    }
    if (o->out_len + n > GW_EXEC_OUTPUT_KEEP) {
        size_t drop = o->out_len + n - GW_EXEC_OUTPUT_KEEP;
        memmove(o->out, o->out + drop, o->out_len - drop);
        o->out_len -= drop;
    }
    memcpy(o->out + o->out_len, buf, n);
    o->out_len += n;
}

static void drain(int fd, gw_exec_outcome *o)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        keep_output(o, buf, (size_t)n);
}

/* Processes of group `pgid` that are still running (zombies, which run
 * nothing and wait only for their reaper, not counted), from /proc. -1 when
 * /proc cannot be read. */
int gw_exec_group_running(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char p[sizeof de->d_name + 8], st[512];
        snprintf(p, sizeof p, "%s/stat", de->d_name);
        int fd = openat(dirfd(d), p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;   /* exited meanwhile */
        ssize_t len = read(fd, st, sizeof st - 1);
        close(fd);
        if (len <= 0)
            continue;
        st[len] = '\0';
        /* "pid (comm) S ppid pgrp ...": comm may hold anything, so from the last ')'. */
        const char *paren = strrchr(st, ')');
        char state;
        int ppid, pgrp;
        if (!paren || sscanf(paren + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
            continue;
        if (pgrp == pgid && state != 'Z' && state != 'X')
            n++;
    }
    closedir(d);
    return n;
}

/* In the child, between fork and execve: async-signal-safe calls only. A
 * failure is written to `err_fd` (errno) and ends the child. */
static _Noreturn void child(char *const argv[], char *const envp[], const gw_exec_limits *lim, int out_fd,
                            int err_fd)
{
    int e;
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);   /* SIGKILL/SIGSTOP and libc's own refuse: fine */
    if (setpgid(0, 0) < 0)
        goto fail;
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        goto fail;
    if (lim) {
        const struct {
            int res;
            rlim_t v;
        } set[] = { { RLIMIT_CPU, lim->cpu_s }, { RLIMIT_FSIZE, lim->fsize_bytes }, { RLIMIT_NPROC, lim->nproc } };
        for (size_t i = 0; i < sizeof set / sizeof *set; i++) {
            if (!set[i].v)
                continue;
            /* CPU: the hard limit a second later, so the program sees
             * SIGXCPU (its name in the evidence) before SIGKILL. */
            struct rlimit rl = { set[i].v, set[i].res == RLIMIT_CPU ? set[i].v + 1 : set[i].v };
            if (setrlimit(set[i].res, &rl) < 0)
                goto fail;
        }
    }
    if (chdir("/") < 0)
        goto fail;
    umask(022);
    /* Nothing of ours leaks into the program: every descriptor above 2 is
     * closed by the execve (err_fd too, which is how the parent learns the
     * execve worked). Older kernels lack close_range: ours are O_CLOEXEC. */
    (void)syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        goto fail;
    execve(argv[0], argv, envp);
fail:
    e = errno;
    (void)!write(err_fd, &e, sizeof e);
    _exit(127);
}

int gw_exec_run_limited(char *const argv[], char *const envp[], unsigned timeout_ms, const gw_exec_limits *lim,
                        gw_exec_outcome *o, pid_t *pid_out)
{
    int pipefd[2], errp[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(errp, O_CLOEXEC) < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -e;
    }
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);

    /* Signals blocked across fork: the child must not run a handler of ours
     * before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        child(argv, envp, lim, pipefd[1], errp[1]);
    int fork_err = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipefd[1]);
    close(errp[1]);
    if (pid < 0) {
        close(pipefd[0]);
        close(errp[0]);
        return -fork_err;
    }
    (void)setpgid(pid, pid);    /* the child does it too; whichever is first */
    int exec_err = 0;
    ssize_t got;
    do
        got = read(errp[0], &exec_err, sizeof exec_err);
    while (got < 0 && errno == EINTR);
    close(errp[0]);
    if (got == (ssize_t)sizeof exec_err) {
        /* It never ran: reap the child, nothing else is in its group. */
        waitpid(pid, NULL, 0);
        close(pipefd[0]);
        return -exec_err;
    }
    *pid_out = pid;

    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int64_t deadline = now_ms() + timeout_ms;
    bool exited = false;
    bool pipe_open = true;
    int poll_err = 0;
    while (!exited) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            o->timed_out = true;
            break;
        }
        struct pollfd pf[2] = { { pipe_open ? pipefd[0] : -1, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
        int wait = (int)(left > 100 && pidfd < 0 ? 100 : left);   /* no pidfd: poll waitid */
        int n = poll(pf, 2, wait);
        if (n < 0 && errno != EINTR) {
            /* Cannot wait for it any more: kill and reap it as at a timeout,
             * never leave status 0 ("exited 0") to read as a pass. */
            poll_err = -errno;
            break;
        }
        if (pipe_open && pf[0].revents) {
            char buf[4096];
            ssize_t r = read(pipefd[0], buf, sizeof buf);
            if (r > 0)
                keep_output(o, buf, (size_t)r);
            else if (r == 0)
                pipe_open = false;
        }
        if (pidfd < 0 || pf[1].revents) {
            /* WNOWAIT: seen ended, not reaped; see the top of the file. */
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
                exited = true;
        }
    }

    /* The whole group, whether the leader ended or its time is up: what it
     * left running in the background must not outlive the step. */
    int before = exited ? gw_exec_group_running(pid) : -1;
    kill(-pid, SIGKILL);
    siginfo_t si;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
        ;
    int64_t give_up = now_ms() + GROUP_GONE_MS;
    int running;
    while ((running = gw_exec_group_running(pid)) > 0 && now_ms() < give_up) {
        kill(-pid, SIGKILL);
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    o->left_running = before > 0 ? before : 0;
    o->still_running = running > 0 ? running : 0;
    while (waitpid(pid, &o->status, 0) < 0 && errno == EINTR)
        ;
    drain(pipefd[0], o);
    if (pidfd >= 0)
        close(pidfd);
    close(pipefd[0]);
    if (poll_err)
        return gw_error_set(poll_err, "%s: poll while waiting for it: %s (killed)", argv[0], strerror(-poll_err));
    return 0;
}

int gw_exec_run(char *const argv[], char *const envp[], unsigned timeout_ms, gw_exec_outcome *o, pid_t *pid_out)
{
    return gw_exec_run_limited(argv, envp, timeout_ms, NULL, o, pid_out);
}

char *gw_exec_output_tail(const gw_exec_outcome *o)
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
