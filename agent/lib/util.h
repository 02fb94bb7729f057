/* SPDX-License-Identifier: Apache-2.0 */
/* Internal helpers shared by the library's modules: ownership cleanups, the
 * per-thread error message, logging and small sysfs file readers. */
#ifndef GW_UTIL_H
#define GW_UTIL_H

#include <gpuwarden/common.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define GW_HIDDEN __attribute__((visibility("hidden")))

static inline void gw_freep(void *p) { free(*(void **)p); }
static inline void gw_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void gw_closep(int *fd) { if (*fd >= 0) close(*fd); }
#define _cleanup_free_ _cleanup_(gw_freep)
#define _cleanup_fclose_ _cleanup_(gw_fclosep)
#define _cleanup_close_ _cleanup_(gw_closep)

/* Hand ownership out of a cleanup-managed variable. */
#define GW_TAKE(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })

/* Record the message for gw_error_message() and return `err` (negative). */
int gw_error_set(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_error_clear(void);

/* Logging (log.c) on stderr with syslog priority prefixes ("<3>") that
 * journald reads; when stderr is the journal's stream ($JOURNAL_STREAM, as
 * under systemd), native journal entries instead, with structured fields. */
enum { GW_LOG_ERR = 3, GW_LOG_WARNING = 4, GW_LOG_NOTICE = 5, GW_LOG_INFO = 6, GW_LOG_DEBUG = 7 };
void gw_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line about one GPU (address, "ADDRESS: " before the message) and, when
 * not NULL, one clean-up step: the journal gets GPU_ADDRESS= and STEP=. */
void gw_log_gpu(int prio, const char *address, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_log_set_level(int max_prio);
/* The journal fields of one line, each a malloc'd "KEY=value": PRIORITY,
 * MESSAGE, SYSLOG_IDENTIFIER, then GPU_ADDRESS and STEP when given. Returns
 * how many (at most GW_LOG_MAX_FIELDS). */
#define GW_LOG_MAX_FIELDS 5
size_t gw_log_fields(char *fields[GW_LOG_MAX_FIELDS], int prio, const char *address, const char *step,
                     const char *message);
/* Whether fd is the stream $JOURNAL_STREAM ("DEVICE:INODE") names. */
bool gw_log_stream_is_journal(const char *env, int fd);

/* Read a whole small file into a NUL-terminated string (trailing newline
 * stripped). Returns 0 or -errno with the message set. */
int gw_read_file(const char *path, char **out);
/* Read a file as an integer in the given base (0 = auto, as strtol). */
int gw_read_long(const char *path, int base, long *out);
/* Basename of a symlink's target; -ENOENT when absent, -ENOENT+message when dangling is not checked. */
int gw_readlink_base(const char *path, char **out);
/* Write all `len` bytes to fd (retrying short writes and EINTR); `path`
 * names it in the error message. */
int gw_write_all(int fd, const char *path, const void *buf, size_t len);
/* Write `len` bytes to an existing file (no O_CREAT), as sysfs needs. */
int gw_write_file(const char *path, const void *data, size_t len);

/* ---- paths under a host root ------------------------------------------
 * Everything the library reads or writes under --host-root is resolved by the
 * kernel as if the root were "/": openat2(RESOLVE_IN_ROOT), so that neither a
 * symlink in the tree (absolute, or with enough "..") nor a tree changed while
 * we look can lead to a file outside it. Kernels without openat2 (before 5.6:
 * ENOSYS) get the same resolution done here, one component at a time with
 * O_NOFOLLOW. A path that fails to resolve and whose symlinks point outside
 * the root fails with -EXDEV, which gw_root_strerror() words as such, so an
 * operator reads "leads outside the host root", not "No such file". */
typedef struct gw_root {
    int fd;             /* O_PATH descriptor of the root directory; -1 when none */
    char *shown;        /* the root as messages join it to "/sys/...": "" for "/" */
} gw_root;

/* Open `path` (a directory) as a root. -errno with the message
 * "host root <path>: <reason>". */
int gw_root_init(gw_root *r, const char *path);
void gw_root_clear(gw_root *r);
/* "<shown>/<rel>", for messages and for code that needs a path string (libpci). */
char *gw_root_path(const gw_root *r, const char *rel);
/* strerror(), except that -EXDEV/EXDEV says the path leads outside the root. */
const char *gw_root_strerror(int err);

/* open(2) of `rel` (relative, below `rootfd`) resolved inside the root;
 * O_CLOEXEC is added. A descriptor, or -errno (no message set). */
int gw_openat_root(int rootfd, const char *rel, int flags);
/* 0 when `rel` resolves below `rootfd` the way a plain open(2) of
 * "<root>/<rel>" would, without any symlink leaving the root
 * (RESOLVE_BENEATH); -EXDEV when one does; other -errno as open(2). For code
 * that cannot use the root's descriptor (libpci opens its own paths). */
int gw_root_beneath(int rootfd, const char *rel);
/* open(2) of `rel` resolved beneath `dirfd` (RESOLVE_BENEATH: no absolute
 * link, nothing above dirfd); O_CLOEXEC added; -EXDEV when it would leave,
 * other -errno as open(2). */
int gw_root_open_beneath(int dirfd, const char *rel, int flags);
/* The target of the symlink `rel` (its directory resolved inside the root),
 * malloc'd; -errno (no message). */
int gw_root_readlink(int rootfd, const char *rel, char **out);
/* stat(2) of `rel` resolved inside the root; -errno (no message). */
int gw_root_stat(int rootfd, const char *rel, struct stat *st);
/* The path of the directory or file `rel` leads to, relative to the root
 * ("sys/devices/pci0000:00/0000:00:01.0"), every symlink resolved inside
 * it: realpath(3) for a root. "" for the root itself; -errno (no message). */
int gw_root_realpath(int rootfd, const char *rel, char **out);
/* gw_read_file() and gw_read_long() of <root>/<rel>; messages name
 * "<shown>/<rel>". */
int gw_root_read_file(const gw_root *r, const char *rel, char **out);
int gw_root_read_long(const gw_root *r, const char *rel, int base, long *out);
/* The by-hand resolution that stands in for openat2 where the kernel has
 * none; exposed so that tests run it on kernels that do. */
int gw_root_walk_open(int rootfd, const char *rel, int flags, bool beneath);

/* asprintf that aborts on allocation failure: callers never handle ENOMEM for paths. */
char *gw_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *gw_xstrdup(const char *s);
void *gw_xcalloc(size_t n, size_t size);
void *gw_xrealloc(void *p, size_t n, size_t size);

/* True for canonical "dddd:bb:dd.f" addresses (lower-case hex). */
bool gw_is_bdf(const char *s);

#endif
