/* SPDX-License-Identifier: Apache-2.0 */
/* Logging (util.h): stderr lines with syslog priority prefixes, or, when
 * stderr is the journal's stream, native journal entries with structured
 * fields (GPU_ADDRESS=, STEP=) that `journalctl GPU_ADDRESS=...` selects. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "util.h"

/* Written by a reload on the main thread, read by every worker's log line:
 * atomic, or it is a data race in C's terms. Relaxed: no other data depends
 * on seeing the new level at once. */
static atomic_int log_max_prio = GW_LOG_INFO;

static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool to_journal;

void gw_log_set_level(int max_prio) { atomic_store_explicit(&log_max_prio, max_prio, memory_order_relaxed); }

/* systemd sets $JOURNAL_STREAM to "DEVICE:INODE" of the stream it connects
 * stdout/stderr to (systemd.exec(5)); it is the journal only while our fd
 * still is that stream (not when a shell redirected it, or a child inherited
 * the variable with another stderr). */
bool gw_log_stream_is_journal(const char *env, int fd)
{
    unsigned long long dev, ino;
    char extra;
    struct stat st;
    if (!env || sscanf(env, "%llu:%llu%c", &dev, &ino, &extra) != 2)
        return false;
    return fstat(fd, &st) == 0 && (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void detect_journal(void)
{
    to_journal = gw_log_stream_is_journal(getenv("JOURNAL_STREAM"), STDERR_FILENO);
}

size_t gw_log_fields(char *fields[GW_LOG_MAX_FIELDS], int prio, const char *address, const char *step,
                     const char *message)
{
    size_t n = 0;
    fields[n++] = gw_strdup_printf("PRIORITY=%d", prio);
    fields[n++] = gw_strdup_printf("MESSAGE=%s%s%s", address ? address : "", address ? ": " : "", message);
    fields[n++] = gw_strdup_printf("SYSLOG_IDENTIFIER=%s", program_invocation_short_name);
    if (address)
        fields[n++] = gw_strdup_printf("GPU_ADDRESS=%s", address);
    if (step)
        fields[n++] = gw_strdup_printf("STEP=%s", step);
    return n;
}

/* One journal entry; false when the journal did not take it (then the line
 * goes to stderr, which journald reads anyway). */
static bool send_journal(int prio, const char *address, const char *step, const char *message)
{
    char *fields[GW_LOG_MAX_FIELDS];
    struct iovec iov[GW_LOG_MAX_FIELDS];
    size_t n = gw_log_fields(fields, prio, address, step, message);
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){ .iov_base = fields[i], .iov_len = strlen(fields[i]) };
    int r = sd_journal_sendv(iov, (int)n);
    for (size_t i = 0; i < n; i++)
        free(fields[i]);
    return r >= 0;
}

static void vlog(int prio, const char *address, const char *step, const char *fmt, va_list ap)
{
    if (prio > atomic_load_explicit(&log_max_prio, memory_order_relaxed))
        return;
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    pthread_once(&journal_once, detect_journal);
    if (to_journal && send_journal(prio, address, step, line))
        return;
    fprintf(stderr, "<%d>%s%s%s\n", prio, address ? address : "", address ? ": " : "", line);
}

void gw_log(int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(prio, NULL, NULL, fmt, ap);
    va_end(ap);
}

void gw_log_gpu(int prio, const char *address, const char *step, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(prio, address, step, fmt, ap);
    va_end(ap);
}
