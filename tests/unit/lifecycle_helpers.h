/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the lifecycle/registry tests: temporary state
 * directories, identities, a deterministic PRNG. Header-only (static). */
#ifndef GW_TEST_LIFECYCLE_HELPERS_H
#define GW_TEST_LIFECYCLE_HELPERS_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gpuwarden/registry.h>

static inline char *tmp_state_dir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *dir = NULL;
    if (asprintf(&dir, "%s/gw-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0 || !mkdtemp(dir))
        abort();
    return dir;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static inline void rm_tree(char *dir)
{
    if (dir)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* Card `card` (0, 1, ...) at address 0000:<bus>:00.0: same ids, its own DSN. */
static inline gw_identity test_identity(unsigned bus, unsigned card)
{
    gw_identity id = { .vendor_id = 0x10de, .device_id = 0x2330,
                       .subsystem_vendor_id = 0x10de, .subsystem_device_id = 0x16c1,
                       .dsn_present = true, .dsn = 0x48b02dff00000000ull + bus * 16 + card };
    snprintf(id.address, sizeof id.address, "0000:%02x:00.0", bus & 0xff);
    return id;
}

/* xorshift64*: the same sequence on every libc, so a printed seed replays. */
static inline uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static inline unsigned rng_below(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static inline uint64_t test_seed(const char *env)
{
    const char *v = getenv(env);
    uint64_t seed = v && *v ? strtoull(v, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    return seed ? seed : 1;
}

static inline char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n + 4096 > cap) {
            cap = cap ? 2 * cap : 8192;
            buf = realloc(buf, cap + 1);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Overwrite in place: no O_TRUNC, because ext4 flushes a file truncated to
 * zero when it is closed, which makes thousands of rewrites slow. */
static inline int spit(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t w = len ? pwrite(fd, data, len, 0) : 0;
    int r = (w == (ssize_t)len && ftruncate(fd, (off_t)len) == 0) ? 0 : -1;
    close(fd);
    return r;
}

#endif
