/* SPDX-License-Identifier: Apache-2.0 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static _Thread_local char error_buf[1024];

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

/* The rest of a small file from `fd` (closed here); `path` names it in messages. */
static int read_fd(int fd_in, const char *path, char **out)
{
    _cleanup_close_ int fd = fd_in;
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

int gw_read_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    return read_fd(fd, path, out);
}

static int parse_long(const char *path, const char *s, int base, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, base);
    if (errno || end == s || *end != '\0')
        return gw_error_set(-EINVAL, "%s: not an integer: '%.32s'", path, s);
    *out = v;
    return 0;
}

int gw_read_long(const char *path, int base, long *out)
{
    _cleanup_free_ char *s = NULL;
    int r = gw_read_file(path, &s);
    if (r < 0)
        return r;
    return parse_long(path, s, base, out);
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

/* ---- paths under a host root ------------------------------------------- */

/* Cleared for good the first time the kernel answers ENOSYS (before 5.6, or
 * a seccomp filter that predates openat2): every later call walks by hand. */
static atomic_bool have_openat2 = true;

int gw_root_init(gw_root *r, const char *path)
{
    r->fd = -1;
    r->shown = NULL;
    if (!path || !*path)
        path = "/";
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "host root %s: %s", path, strerror(errno));
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    r->fd = fd;
    r->shown = n == 1 && path[0] == '/' ? gw_xstrdup("") : strndup(path, n);
    if (!r->shown)
        oom();
    return 0;
}

void gw_root_clear(gw_root *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->shown);
    r->shown = NULL;
}

char *gw_root_path(const gw_root *r, const char *rel)
{
    return gw_strdup_printf("%s/%s", r->shown, rel);
}

const char *gw_root_strerror(int err)
{
    if (err == EXDEV || err == -EXDEV)
        return "a symbolic link on the way leads outside the host root (not followed)";
    return strerror(err < 0 ? -err : err);
}

/* The fallback resolver's stack: the directories walked into, each an
 * O_PATH descriptor (dirs[0] is the root, not ours), and their names. */
typedef struct walk_stack {
    int *dirs;
    char **names;
    size_t n;
} walk_stack;

static void walk_push(walk_stack *w, int fd, const char *name)
{
    w->dirs = gw_xrealloc(w->dirs, w->n + 1, sizeof *w->dirs);
    w->names = gw_xrealloc(w->names, w->n + 1, sizeof *w->names);
    w->dirs[w->n] = fd;
    w->names[w->n++] = gw_xstrdup(name);
}

static void walk_pop(walk_stack *w)
{
    if (w->n <= 1)
        return;     /* ".." of the root is the root, as in a chroot */
    w->n--;
    close(w->dirs[w->n]);
    free(w->names[w->n]);
}

static void walk_clear(walk_stack *w)
{
    while (w->n > 1)
        walk_pop(w);
    free(w->dirs);
    free(w->names[0]);
    free(w->names);
}

/* RESOLVE_IN_ROOT (or, `beneath`, RESOLVE_BENEATH) done here: every
 * component opened O_PATH|O_NOFOLLOW from the directory before it, so the
 * kernel follows nothing; a symlink is read and spliced into the rest of the
 * path, an absolute one restarting at the root, ".." never climbing above
 * it. With `real`, nothing is opened at the end: *real gets the names walked
 * ("sys/devices/..."), and the return is 0. */
static int walk_resolve(int rootfd, const char *rel, int flags, bool beneath, char **real)
{
    walk_stack w = { 0 };
    walk_push(&w, rootfd, "");
    char *path = gw_xstrdup(rel);
    size_t pos = 0;
    int links = 0, rc;
    for (;;) {
        while (path[pos] == '/')
            pos++;
        if (!path[pos]) {
            /* Ends on a directory: the root itself, or one pushed. */
            if (real) {
                rc = 0;
                break;
            }
            rc = openat(w.dirs[w.n - 1], ".", flags | O_CLOEXEC);
            rc = rc < 0 ? -errno : rc;
            break;
        }
        size_t len = strcspn(path + pos, "/");
        if (len > NAME_MAX) {
            rc = -ENAMETOOLONG;
            break;
        }
        char comp[NAME_MAX + 1];
        memcpy(comp, path + pos, len);
        comp[len] = '\0';
        pos += len;
        size_t after = pos;
        while (path[after] == '/')
            after++;
        bool last = !path[after];
        if (!strcmp(comp, "."))
            continue;
        if (!strcmp(comp, "..")) {
            if (w.n == 1 && beneath) {
                rc = -EXDEV;
                break;
            }
            walk_pop(&w);
            continue;
        }
        int cur = w.dirs[w.n - 1];
        int fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            rc = -errno;
            if (fd >= 0)
                close(fd);
            break;
        }
        if (S_ISLNK(st.st_mode) && !(last && (flags & O_NOFOLLOW) && !real)) {
            char target[PATH_MAX];
            ssize_t tn = ++links > 40 ? -2 : readlinkat(fd, "", target, sizeof target - 1);
            close(fd);
            if (tn < 0) {
                rc = tn == -2 ? -ELOOP : -errno;
                break;
            }
            target[tn] = '\0';
            if (target[0] == '/') {
                if (beneath) {
                    rc = -EXDEV;
                    break;
                }
                while (w.n > 1)
                    walk_pop(&w);
            }
            char *spliced = gw_strdup_printf("%s%s", target, path + pos);
            free(path);
            path = spliced;
            pos = 0;
            continue;
        }
        if (last && !real) {
            close(fd);
            /* O_NOFOLLOW: what was checked above is what gets opened. */
            rc = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC);
            rc = rc < 0 ? -errno : rc;
            break;
        }
        if (!last && !S_ISDIR(st.st_mode)) {
            close(fd);
            rc = -ENOTDIR;
            break;
        }
        walk_push(&w, fd, comp);
    }
    if (real && rc == 0) {
        size_t total = 1;
        for (size_t i = 1; i < w.n; i++)
            total += strlen(w.names[i]) + 1;
        char *out = gw_xcalloc(total, 1);
        for (size_t i = 1; i < w.n; i++) {
            if (i > 1)
                strcat(out, "/");
            strcat(out, w.names[i]);
        }
        *real = out;
    }
    free(path);
    walk_clear(&w);
    return rc;
}

int gw_root_walk_open(int rootfd, const char *rel, int flags, bool beneath)
{
    return walk_resolve(rootfd, rel, flags, beneath, NULL);
}

static int resolve_open(int rootfd, const char *rel, int flags, bool beneath)
{
    if (atomic_load_explicit(&have_openat2, memory_order_relaxed)) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (uint64_t)(flags | O_CLOEXEC);
        how.resolve = beneath ? RESOLVE_BENEATH : RESOLVE_IN_ROOT;
        for (int tries = 0;; tries++) {
            long fd = syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof how);
            if (fd >= 0)
                return (int)fd;
            /* EAGAIN: a rename raced a ".." and the kernel could not be
             * sure it stayed inside; it asks for another try. */
            if (errno == EAGAIN && tries < 16)
                continue;
            if (errno != ENOSYS)
                return -errno;
            break;
        }
        atomic_store_explicit(&have_openat2, false, memory_order_relaxed);
    }
    return walk_resolve(rootfd, rel, flags, beneath, NULL);
}

int gw_openat_root(int rootfd, const char *rel, int flags)
{
    int fd = resolve_open(rootfd, rel, flags, false);
    if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP) {
        /* Resolved inside the root, a link out of it finds nothing there:
         * say that, rather than a bare "No such file". */
        int probe = resolve_open(rootfd, rel, O_PATH | (flags & O_NOFOLLOW), true);
        if (probe >= 0)
            close(probe);
        else if (probe == -EXDEV)
            return -EXDEV;
    }
    return fd;
}

int gw_root_beneath(int rootfd, const char *rel)
{
    int fd = resolve_open(rootfd, rel, O_PATH, true);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int gw_root_open_beneath(int dirfd, const char *rel, int flags)
{
    return resolve_open(dirfd, rel, flags, true);
}

int gw_root_readlink(int rootfd, const char *rel, char **out)
{
    _cleanup_close_ int fd = gw_openat_root(rootfd, rel, O_PATH | O_NOFOLLOW);
    if (fd < 0)
        return fd;
    char target[PATH_MAX];
    ssize_t n = readlinkat(fd, "", target, sizeof target - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    *out = gw_xstrdup(target);
    return 0;
}

int gw_root_stat(int rootfd, const char *rel, struct stat *st)
{
    _cleanup_close_ int fd = gw_openat_root(rootfd, rel, O_PATH);
    if (fd < 0)
        return fd;
    return fstat(fd, st) < 0 ? -errno : 0;
}

/* The path the kernel shows for a descriptor (/proc/self/fd), malloc'd;
 * NULL where /proc is missing or the file is gone. */
static char *fd_path(int fd)
{
    char proc[64], buf[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, buf, sizeof buf - 1);
    if (n <= 0 || (size_t)n >= sizeof buf - 1)
        return NULL;
    buf[n] = '\0';
    if (buf[0] != '/' || strstr(buf, " (deleted)"))
        return NULL;
    return gw_xstrdup(buf);
}

/* openat2(RESOLVE_IN_ROOT) resolves every link inside the root as the walk
 * does; the kernel then names what it reached, and below the root's own
 * name that is the walk's answer, in four system calls instead of an open
 * and a stat per component (a function of a deep switch tree has a dozen).
 * 1 when it cannot say (no openat2, no /proc, an error): the walk decides,
 * errors included. */
static int realpath_in_root(int rootfd, const char *rel, char **out)
{
    if (!atomic_load_explicit(&have_openat2, memory_order_relaxed))
        return 1;
    _cleanup_close_ int fd = resolve_open(rootfd, rel, O_PATH, false);
    if (fd < 0)
        return 1;
    _cleanup_free_ char *top = fd_path(rootfd);
    _cleanup_free_ char *got = fd_path(fd);
    if (!top || !got)
        return 1;
    size_t n = strcmp(top, "/") ? strlen(top) : 0;
    if (strncmp(got, top, n) || (got[n] != '/' && got[n] != '\0'))
        return 1;
    *out = gw_xstrdup(got[n] == '/' ? got + n + 1 : "");
    return 0;
}

int gw_root_realpath(int rootfd, const char *rel, char **out)
{
    /* The walk knows the names it went through, and it opens nothing but
     * O_PATH|O_NOFOLLOW, so it is as confined as openat2; the kernel's
     * answer is taken first where it has one. */
    if (realpath_in_root(rootfd, rel, out) == 0)
        return 0;
    return walk_resolve(rootfd, rel, O_PATH, false, out);
}

int gw_root_read_file(const gw_root *r, const char *rel, char **out)
{
    int fd = gw_openat_root(r->fd, rel, O_RDONLY);
    if (fd < 0)
        return gw_error_set(fd, "%s/%s: %s", r->shown, rel, gw_root_strerror(fd));
    _cleanup_free_ char *path = gw_root_path(r, rel);
    return read_fd(fd, path, out);
}

int gw_root_read_long(const gw_root *r, const char *rel, int base, long *out)
{
    _cleanup_free_ char *s = NULL;
    int rc = gw_root_read_file(r, rel, &s);
    if (rc < 0)
        return rc;
    _cleanup_free_ char *path = gw_root_path(r, rel);
    return parse_long(path, s, base, out);
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
