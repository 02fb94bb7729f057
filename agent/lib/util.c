#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

static _Thread_local char error_buf[1024];
/* Written by a reload on the main thread, read by every worker's log line:
 * atomic, or it is a data race in C's terms. Relaxed: no other data depends
 * on seeing the new level at once. */
static atomic_int log_max_prio = GW_LOG_INFO;

GW_EXTERN const char *gw_version(void) { return GW_VERSION_STRING; }

GW_EXTERN const char *gw_error_message(void) { return error_buf; }

int gw_error_set(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_buf, sizeof error_buf, fmt, ap);
    va_end(ap);
    return err;
}

void gw_error_clear(void) { error_buf[0] = '\0'; }

void gw_log_set_level(int max_prio) { atomic_store_explicit(&log_max_prio, max_prio, memory_order_relaxed); }

void gw_log(int prio, const char *fmt, ...)
{
    if (prio > atomic_load_explicit(&log_max_prio, memory_order_relaxed))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "<%d>%s\n", prio, line);
}

static void oom(void)
{
    fputs("gpuwarden: out of memory\n", stderr);
    abort();
}

char *gw_strdup_printf(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        oom();
    return s;
}

char *gw_xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        oom();
    return d;
}

void *gw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *gw_xrealloc(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        oom();
    size_t bytes = n * size;
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q)
        oom();
    return q;
}

int gw_read_file(const char *path, char **out)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    size_t cap = 256, len = 0;
    _cleanup_free_ char *buf = gw_xcalloc(cap, 1);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= (1u << 20))
                return gw_error_set(-EFBIG, "%s: larger than 1 MiB", path);
            cap *= 2;
            buf = gw_xrealloc(buf, cap, 1);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return gw_error_set(-errno, "%s: %s", path, strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    *out = GW_TAKE(buf);
    return 0;
}

int gw_read_long(const char *path, int base, long *out)
{
    _cleanup_free_ char *s = NULL;
    int r = gw_read_file(path, &s);
    if (r < 0)
        return r;
    char *end;
    errno = 0;
    long v = strtol(s, &end, base);
    if (errno || end == s || *end != '\0')
        return gw_error_set(-EINVAL, "%s: not an integer: '%.32s'", path, s);
    *out = v;
    return 0;
}

int gw_readlink_base(const char *path, char **out)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    target[n] = '\0';
    const char *slash = strrchr(target, '/');
    *out = gw_xstrdup(slash ? slash + 1 : target);
    return 0;
}

int gw_write_file(const char *path, const void *data, size_t len)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    ssize_t n;
    do
        n = write(fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return gw_error_set(-errno, "write %s: %s", path, strerror(errno));
    if ((size_t)n != len)
        return gw_error_set(-EIO, "write %s: short write (%zd of %zu)", path, n, len);
    return 0;
}

int gw_write_all(int fd, const char *path, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return gw_error_set(-errno, "write %s: %s", path, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

bool gw_is_bdf(const char *s)
{
    static const char shape[] = "xxxx:xx:xx.x";
    if (strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'x') {
            if (!strchr("0123456789abcdef", s[i]))
                return false;
        } else if (s[i] != shape[i]) {
            return false;
        }
    }
    /* device 0-1f, function 0-7 */
    unsigned dev = (unsigned)strtoul(s + 8, NULL, 16);
    return dev <= 0x1f && s[11] >= '0' && s[11] <= '7';
}
