/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint file: versioned, checksummed, replaced atomically.
 *
 *   GWCHECKPOINT <version> <body length> <sha256 of the body, lower-case hex>\n
 *   <body: JSON, exactly <body length> bytes>
 *
 * The header is checked before anything is parsed so that a truncated,
 * flipped or foreign file is refused with a precise reason and its path. */
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "record.h"
#include "util.h"

#define MAGIC "GWCHECKPOINT "
#define HEADER_MAX 128
#define BODY_MAX (256u << 20)

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *gw_checkpoint_encode(unsigned version, const char *body, size_t len, size_t *out_len)
{
    char hex[65];
    sha256_hex(body, len, hex);
    char header[HEADER_MAX];
    int h = snprintf(header, sizeof header, MAGIC "%u %zu %s\n", version, len, hex);
    char *buf = gw_xcalloc((size_t)h + len + 1, 1);
    memcpy(buf, header, (size_t)h);
    memcpy(buf + h, body, len);
    *out_len = (size_t)h + len;
    return buf;
}

int gw_fsync_dir(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", dir, strerror(errno));
    if (fsync(fd) < 0)
        return gw_error_set(-errno, "fsync %s: %s", dir, strerror(errno));
    return 0;
}

int gw_checkpoint_write(const char *dir, const char *body, size_t len)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME, dir);
    _cleanup_free_ char *tmp = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME ".tmp", dir);
    size_t flen;
    _cleanup_free_ char *file = gw_checkpoint_encode(GW_CHECKPOINT_VERSION, body, len, &flen);

    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", tmp, strerror(errno));
    int r = gw_write_all(fd, tmp, file, flen);
    if (r < 0)
        return r;
    if (fsync(fd) < 0)
        return gw_error_set(-errno, "fsync %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) < 0)
        return gw_error_set(-errno, "rename %s -> %s: %s", tmp, path, strerror(errno));
    return gw_fsync_dir(dir);
}

static int corrupt(const char *path, const char *what)
{
    return gw_error_set(GW_ESTATE_CORRUPT,
                        "%s: corrupt checkpoint: %s (refusing to start from it; move it aside "
                        "with --reset-state to start empty)", path, what);
}

/* Parse the header line; on success *body_len and hex are set and the
 * header's length is returned. */
static int parse_header(const char *path, const char *buf, size_t len, size_t *body_len,
                        char hex[65])
{
    if (len == 0)
        return corrupt(path, "empty file");
    size_t mlen = strlen(MAGIC);
    if (memcmp(buf, MAGIC, len < mlen ? len : mlen))
        return corrupt(path, "not a gpuwarden checkpoint (bad magic)");
    const char *nl = memchr(buf, '\n', len < HEADER_MAX ? len : HEADER_MAX);
    if (!nl)
        return corrupt(path, "header line cut short");
    char header[HEADER_MAX + 1];
    size_t hlen = (size_t)(nl - buf);
    memcpy(header, buf, hlen);
    header[hlen] = '\0';

    const char *p = header + strlen(MAGIC);
    char *end;
    if (*p < '0' || *p > '9')
        return corrupt(path, "bad version field");
    errno = 0;
    unsigned long version = strtoul(p, &end, 10);
    if (errno || *end != ' ')
        return corrupt(path, "bad version field");
    if (version != GW_CHECKPOINT_VERSION)
        return gw_error_set(GW_ESTATE_VERSION,
                            "%s: checkpoint format version %lu, this build reads version %d "
                            "(written by a newer gpuwarden?)", path, version, GW_CHECKPOINT_VERSION);
    p = end + 1;
    if (*p < '0' || *p > '9')
        return corrupt(path, "bad length field");
    errno = 0;
    unsigned long long blen = strtoull(p, &end, 10);
    if (errno || *end != ' ' || blen > BODY_MAX)
        return corrupt(path, "bad length field");
    p = end + 1;
    if (strlen(p) != 64 || strspn(p, "0123456789abcdef") != 64)
        return corrupt(path, "bad checksum field");
    memcpy(hex, p, 65);
    *body_len = (size_t)blen;
    return (int)hlen + 1;
}

int gw_checkpoint_read(const char *dir, char **body, size_t *len)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME, dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return corrupt(path, "not a regular file");
    if ((uint64_t)st.st_size > BODY_MAX + HEADER_MAX)
        return corrupt(path, "larger than any checkpoint");
    size_t size = (size_t)st.st_size;
    _cleanup_free_ char *buf = gw_xcalloc(size + 1, 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return gw_error_set(-errno, "read %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }

    size_t blen = 0;
    char want[65], have[65];
    int h = parse_header(path, buf, got, &blen, want);
    if (h < 0)
        return h;
    size_t present = got - (size_t)h;
    if (present < blen) {
        char what[96];
        snprintf(what, sizeof what, "truncated: body has %zu of %zu bytes", present, blen);
        return corrupt(path, what);
    }
    if (present > blen) {
        char what[96];
        snprintf(what, sizeof what, "%zu unexpected bytes after the body", present - blen);
        return corrupt(path, what);
    }
    sha256_hex(buf + h, blen, have);
    if (strcmp(want, have))
        return corrupt(path, "checksum mismatch");

    char *out = gw_xcalloc(blen + 1, 1);
    memcpy(out, buf + h, blen);
    *body = out;
    *len = blen;
    return 0;
}

int gw_checkpoint_reset(const char *dir, char **moved_to)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME, dir);
    if (moved_to)
        *moved_to = NULL;
    if (access(path, F_OK) < 0) {
        if (errno == ENOENT)
            return 0;
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    }
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    _cleanup_free_ char *dest = NULL;
    bool linked = false;
    for (int i = 0; i < 1000 && !linked; i++) {
        free(dest);
        dest = i ? gw_strdup_printf("%s.corrupt-%s-%d", path, stamp, i)
                 : gw_strdup_printf("%s.corrupt-%s", path, stamp);
        /* link() refuses to replace: no earlier copy is ever overwritten. */
        if (link(path, dest) == 0)
            linked = true;
        else if (errno != EEXIST)
            return gw_error_set(-errno, "link %s -> %s: %s", path, dest, strerror(errno));
    }
    if (!linked)
        return gw_error_set(-EEXIST, "%s: too many earlier copies moved aside", path);
    if (unlink(path) < 0)
        return gw_error_set(-errno, "unlink %s: %s", path, strerror(errno));
    int r = gw_fsync_dir(dir);
    if (r < 0)
        return r;
    gw_log(GW_LOG_WARNING, "%s moved aside to %s: the next start begins with no device records",
           path, dest);
    if (moved_to)
        *moved_to = GW_TAKE(dest);
    return 0;
}
