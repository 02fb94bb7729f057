/* Running a program on this machine for the clean-up (sanitize_exec.c): the
 * hooks step and the driver scrub's commands. Not through the host backend:
 * these are programs, not sysfs operations. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_internal.h"

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

int gw_exec_run(char *const argv[], char *const envp[], unsigned timeout_ms, gw_exec_outcome *o, pid_t *pid_out)
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
    pid_t pid;
    int r = posix_spawn(&pid, argv[0], &fa, &at, argv, envp);
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
    int poll_err = 0;
    while (!exited) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            o->timed_out = true;
            break;
        }
        struct pollfd pf[2] = { { pipe_open ? pipefd[0] : -1, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
        int wait = (int)(left > 100 && pidfd < 0 ? 100 : left);   /* no pidfd: poll waitpid */
        int n = poll(pf, 2, wait);
        if (n < 0 && errno != EINTR) {
            /* Cannot wait for it any more: kill and reap it as at a timeout,
             * never leave status 0 ("exited 0") to read as a pass. */
            poll_err = -errno;
            break;
        }
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
    if (o->timed_out || poll_err) {
        kill(-pid, SIGKILL);
        waitpid(pid, &o->status, 0);
    }
    drain(pipefd[0], o);
    if (pidfd >= 0)
        close(pidfd);
    close(pipefd[0]);
    if (poll_err)
        return gw_error_set(poll_err, "%s: poll while waiting for it: %s (killed)", argv[0], strerror(-poll_err));
    return 0;
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
