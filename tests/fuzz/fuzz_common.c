/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the fuzz targets; see fuzz_common.h. */
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static char dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_dir(void)
{
    /* Only the process that made it: libFuzzer's -fork/-jobs children
     * inherit the atexit handler but make directories of their own. */
    if (dir[0])
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *gw_fuzz_dir(void)
{
    if (dir[0])
        return dir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/gw-fuzz.XXXXXX", base);
    if (!mkdtemp(dir))
        gw_fuzz_fail("mkdtemp %s: %s", dir, strerror(errno));
    atexit(remove_dir);
    return dir;
}

const char *gw_fuzz_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", gw_fuzz_dir(), name);
    return buf;
}

void gw_fuzz_write(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        gw_fuzz_fail("%s: %s", path, strerror(errno));
    const char *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            gw_fuzz_fail("write %s: %s", path, strerror(errno));
        p += n;
        size -= (size_t)n;
    }
    close(fd);
}

char *gw_fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = gw_xcalloc(size + 1, 1);
    if (size)
        memcpy(s, data, size);
    return s;
}

void gw_fuzz_quiet(void)
{
    gw_log_set_level(-1);
}

/* The sanitizers' report channel: scripts/fuzz runs libFuzzer with
 * -close_fd_mask=3 (the code under test prints its refusals), which leaves
 * only that channel. Weak: absent from a build without sanitizers. */
extern void __sanitizer_report_error_summary(const char *summary) __attribute__((weak));

void gw_fuzz_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "gw-fuzz: invariant broken: ");
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (__sanitizer_report_error_summary)
        __sanitizer_report_error_summary(msg);
    else
        fprintf(stderr, "%s\n", msg);
    abort();
}
