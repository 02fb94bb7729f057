/* Internal helpers shared by the library's modules: ownership cleanups, the
 * per-thread error message, logging and small sysfs file readers. */
#ifndef GW_UTIL_H
#define GW_UTIL_H

#include <gpuwarden/common.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Logging on stderr with syslog priority prefixes ("<3>") that journald reads. */
enum { GW_LOG_ERR = 3, GW_LOG_WARNING = 4, GW_LOG_NOTICE = 5, GW_LOG_INFO = 6, GW_LOG_DEBUG = 7 };
void gw_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_log_set_level(int max_prio);

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

/* asprintf that aborts on allocation failure: callers never handle ENOMEM for paths. */
char *gw_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *gw_xstrdup(const char *s);
void *gw_xcalloc(size_t n, size_t size);
void *gw_xrealloc(void *p, size_t n, size_t size);

/* True for canonical "dddd:bb:dd.f" addresses (lower-case hex). */
bool gw_is_bdf(const char *s);

#endif
