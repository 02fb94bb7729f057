/* gpuwarden-cuda-scrub: zero all free memory of one NVIDIA GPU and read it
 * back, through the CUDA driver API.
 *
 * The NVIDIA profile of the clean-up's `driver` method runs it with the GPU's
 * PCI address while the GPU is bound to the nvidia driver (docs/nvidia.md).
 * No CUDA toolkit is needed to build it: libcuda.so.1 (part of the NVIDIA
 * driver) is dlopen'ed at run time and the few entry points used are looked up
 * with dlsym, declared here with the types of the driver API's documented ABI.
 *
 * What it does: create a context on that device only; warm up (one small
 * allocation set and read back, so the driver's first-use set-up is done);
 * ask for the free and total memory; allocate the free memory in chunks (starting at --chunk-mb,
 * halving the request after each CUDA_ERROR_OUT_OF_MEMORY down to
 * --min-chunk-mb); zero every chunk with cuMemset; read back all of it
 * (--verify-fraction 1, the default) or an evenly spread, deterministic part
 * of it, in 1 MiB stripes, and check every byte read is zero; free; print one
 * result line (or one JSON object with --json) on stdout.
 *
 * Exit status (also in docs/nvidia.md):
 *   0  pass: every verified byte is zero and the allocation covered at least
 *      --min-coverage of the memory that was free after the context existed
 *   1  internal error on the host (out of host memory)
 *   2  usage (also --help: exit 0 means "scrubbed", and --help scrubs nothing)
 *   3  libcuda.so.1 not loadable, or an entry point missing from it
 *   4  no CUDA device at that PCI address (or no CUDA device at all)
 *   5  allocation covered too little of the free memory
 *   6  a non-zero byte was read back (its offset is printed)
 *   7  a CUDA call failed (its error name is printed)
 *   8  --pattern: the pattern written was not read back (the verify path
 *      cannot be trusted)
 * When several apply, the first of 7, 6, 8, 5 wins; all are in the line.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "gpuwarden-cuda-scrub"

enum {
    EXIT_PASS = 0,
    EXIT_INTERNAL = 1,
    EXIT_USAGE = 2,
    EXIT_NO_LIBCUDA = 3,
    EXIT_NO_DEVICE = 4,
    EXIT_LOW_COVERAGE = 5,
    EXIT_NONZERO = 6,
    EXIT_CUDA_ERROR = 7,
    EXIT_SELFTEST = 8,
};

/* ---- the CUDA driver API, as far as used (cuda.h's ABI) ----------------- */

typedef int CUresult;                   /* enum cudaError_enum */
typedef int CUdevice;                   /* CUdevice_v1 */
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr; /* CUdeviceptr_v2 (the _v2 calls) */

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_NOT_FOUND 500

struct cuda {
    void *lib;
    /* required */
    CUresult (*Init)(unsigned int flags);
    CUresult (*DeviceGetCount)(int *count);
    CUresult (*DeviceGetByPCIBusId)(CUdevice *dev, const char *bus_id);
    CUresult (*CtxCreate)(CUcontext *ctx, unsigned int flags, CUdevice dev);
    CUresult (*CtxDestroy)(CUcontext ctx);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemGetInfo)(size_t *free_bytes, size_t *total_bytes);
    CUresult (*MemAlloc)(CUdeviceptr *dptr, size_t bytes);
    CUresult (*MemFree)(CUdeviceptr dptr);
    CUresult (*MemsetD8)(CUdeviceptr dst, unsigned char value, size_t n);
    CUresult (*MemsetD32)(CUdeviceptr dst, unsigned int value, size_t n);
    CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*GetErrorName)(CUresult err, const char **name);
    CUresult (*GetErrorString)(CUresult err, const char **text);
    /* optional: evidence and a faster read-back */
    CUresult (*DriverGetVersion)(int *version);
    CUresult (*DeviceGet)(CUdevice *dev, int ordinal);
    CUresult (*DeviceGetName)(char *name, int len, CUdevice dev);
    CUresult (*DeviceGetPCIBusId)(char *bus_id, int len, CUdevice dev);
    CUresult (*MemAllocHost)(void **p, size_t bytes);
    CUresult (*MemFreeHost)(void *p);
};

_Static_assert(sizeof(void *) == sizeof(CUresult (*)(void)),
               "dlsym results are copied into function pointers");

struct sym {
    const char *name;
    void *slot;   /* address of the function pointer in struct cuda */
    int required;
};

/* ---- options and result ------------------------------------------------- */

struct opts {
    const char *address;
    double verify_fraction;
    size_t chunk_bytes;
    size_t min_chunk_bytes;
    double min_coverage;
    int json;
    int pattern;
    int inject_nonzero;
};

struct chunk {
    CUdeviceptr ptr;
    size_t size;
    uint64_t offset;  /* of its first byte in the scrub (allocation order) */
};

struct result {
    int code;
    char reason[768];
    /* what the driver says */
    int driver_version;
    char device_name[128];
    char cuda_bus_id[32];
    int visible_devices;
    /* memory */
    size_t total, free_start;
    uint64_t allocated;
    size_t nchunks;
    size_t first_chunk, smallest_chunk;
    unsigned oom_retries;
    uint64_t zeroed, verified;
    double zero_s, verify_s;
    /* findings */
    int nonzero;
    uint64_t nonzero_count;
    uint64_t nonzero_offset;
    size_t nonzero_chunk;
    uint64_t nonzero_chunk_offset;
    CUdeviceptr nonzero_device_address;
    unsigned nonzero_value;
    int injected;
    uint64_t inject_offset;
    int pattern_checked;
    uint64_t pattern_bytes_checked;
    const char *cuda_error;
    char cuda_call[40];
    const char *readback;   /* "pinned" or "pageable" host buffer */
};

static void reason_add(struct result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason_add(struct result *r, const char *fmt, ...)
{
    size_t len = strlen(r->reason);
    if (len + 3 >= sizeof r->reason)
        return;
    if (len) {
        memcpy(r->reason + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason + len, sizeof r->reason - len, fmt, ap);
    va_end(ap);
}

static const char *cu_name(const struct cuda *c, CUresult e)
{
    const char *s = NULL;
    if (c->GetErrorName && c->GetErrorName(e, &s) == CUDA_SUCCESS && s)
        return s;
    return "CUDA_ERROR_(unnamed)";
}

static const char *cu_text(const struct cuda *c, CUresult e)
{
    const char *s = NULL;
    if (c->GetErrorString && c->GetErrorString(e, &s) == CUDA_SUCCESS && s)
        return s;
    return "no description";
}

/* A CUDA call failed: the first failure decides the code and is named. */
static void cuda_failed(struct result *r, const struct cuda *c, const char *call, CUresult e)
{
    if (!r->cuda_error) {
        r->cuda_error = cu_name(c, e);
        snprintf(r->cuda_call, sizeof r->cuda_call, "%s", call);
    }
    reason_add(r, "%s failed: %s (%d: %s)", call, cu_name(c, e), e, cu_text(c, e));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- usage and parsing --------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " [--verify-fraction F] [--chunk-mb N] [--min-chunk-mb N]\n"
        "                            [--min-coverage F] [--json] [--pattern] [--inject-nonzero]\n"
        "                            PCI_ADDRESS\n"
        "\n"
        "Zero all free memory of the NVIDIA GPU at PCI_ADDRESS (dddd:bb:dd.f) through the\n"
        "CUDA driver API (libcuda.so.1, from the NVIDIA driver), read it back and check that\n"
        "every byte is zero. Run it with the GPU bound to the nvidia driver.\n"
        "\n"
        "  --verify-fraction F  share of the memory read back, 0 < F <= 1 (default 1: all);\n"
        "                       below 1, evenly spread 1 MiB stripes, the same every run\n"
        "  --chunk-mb N         first allocation size in MiB (default 1024); halved after\n"
        "                       each out-of-memory answer\n"
        "  --min-chunk-mb N     smallest allocation tried, MiB (default 2)\n"
        "  --min-coverage F     share of the free memory that must be allocated and\n"
        "                       scrubbed, 0 < F <= 1 (default 0.95)\n"
        "  --json               print the result as one JSON object instead of a line\n"
        "  --pattern            self-test: first fill the memory with a non-zero pattern\n"
        "                       and check it reads back, then scrub and verify\n"
        "  --inject-nonzero     debug: leave one byte (made non-zero first) unzeroed; the\n"
        "                       run must then fail with exit status 6 naming its offset\n"
        "\n"
        "The library is libcuda.so.1 from the loader's path, or $GW_CUDA_LIBRARY.\n"
        "\n"
        "Exit status: 0 pass, 1 host error, 2 usage (also --help), 3 libcuda.so.1 not\n"
        "loadable, 4 no CUDA device at that address, 5 coverage below --min-coverage,\n"
        "6 non-zero byte read back, 7 CUDA error, 8 --pattern read-back mismatch.\n");
}

static int parse_fraction(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0.0) || v > 1.0)
        return -1;
    *out = v;
    return 0;
}

static int parse_mb(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v == 0 || v > (1ULL << 24))
        return -1;
    *out = (size_t)v << 20;
    return 0;
}

static int is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* dddd:bb:dd.f (or an 8-digit domain, as nvidia-smi prints it). */
static int valid_address(const char *a)
{
    size_t n = strlen(a), dom = n - 8;
    if (n != 12 && n != 16)
        return 0;
    for (size_t i = 0; i < dom; i++)
        if (!is_hex(a[i]))
            return 0;
    const char *t = a + dom;   /* ":bb:dd.f" */
    return t[0] == ':' && is_hex(t[1]) && is_hex(t[2]) && t[3] == ':' && is_hex(t[4]) &&
           is_hex(t[5]) && t[6] == '.' && t[7] >= '0' && t[7] <= '7';
}

/* ---- libcuda ------------------------------------------------------------- */

static int load_cuda(struct cuda *c, struct result *r)
{
    /* GW_CUDA_LIBRARY: another path for the library (a driver installed
     * outside the loader's path; the tests' "no library" case). */
    const char *path = getenv("GW_CUDA_LIBRARY");
    if (!path || !*path)
        path = "libcuda.so.1";
    dlerror();
    c->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) {
        const char *err = dlerror();
        reason_add(r, "libcuda.so.1 not loadable (%s): the NVIDIA driver's CUDA library is "
                   "not installed or not on the loader path", err ? err : "unknown error");
        return EXIT_NO_LIBCUDA;
    }
    const struct sym syms[] = {
        {"cuInit", &c->Init, 1},
        {"cuDeviceGetCount", &c->DeviceGetCount, 1},
        {"cuDeviceGetByPCIBusId", &c->DeviceGetByPCIBusId, 1},
        {"cuCtxCreate_v2", &c->CtxCreate, 1},
        {"cuCtxDestroy_v2", &c->CtxDestroy, 1},
        {"cuCtxSynchronize", &c->CtxSynchronize, 1},
        {"cuMemGetInfo_v2", &c->MemGetInfo, 1},
        {"cuMemAlloc_v2", &c->MemAlloc, 1},
        {"cuMemFree_v2", &c->MemFree, 1},
        {"cuMemsetD8_v2", &c->MemsetD8, 1},
        {"cuMemsetD32_v2", &c->MemsetD32, 1},
        {"cuMemcpyDtoH_v2", &c->MemcpyDtoH, 1},
        {"cuGetErrorName", &c->GetErrorName, 1},
        {"cuGetErrorString", &c->GetErrorString, 1},
        {"cuDriverGetVersion", &c->DriverGetVersion, 0},
        {"cuDeviceGet", &c->DeviceGet, 0},
        {"cuDeviceGetName", &c->DeviceGetName, 0},
        {"cuDeviceGetPCIBusId", &c->DeviceGetPCIBusId, 0},
        {"cuMemAllocHost_v2", &c->MemAllocHost, 0},
        {"cuMemFreeHost", &c->MemFreeHost, 0},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(c->lib, syms[i].name);
        if (!p && syms[i].required) {
            reason_add(r, "libcuda.so.1 lacks %s: driver too old or not NVIDIA's library",
                       syms[i].name);
            return EXIT_NO_LIBCUDA;
        }
        memcpy(syms[i].slot, &p, sizeof p);
    }
    if (!c->MemFreeHost)
        c->MemAllocHost = NULL;
    return 0;
}

/* Find the device; on failure say which devices CUDA does see. */
static int find_device(struct cuda *c, const struct opts *o, struct result *r, CUdevice *dev)
{
    CUresult e = c->Init(0);
    if (e == CUDA_ERROR_NO_DEVICE) {
        reason_add(r, "cuInit: %s: no CUDA device on this host (is %s bound to nvidia?)",
                   cu_name(c, e), o->address);
        return EXIT_NO_DEVICE;
    }
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, c, "cuInit", e);
        return EXIT_CUDA_ERROR;
    }
    if (c->DriverGetVersion)
        c->DriverGetVersion(&r->driver_version);
    int count = 0;
    e = c->DeviceGetCount(&count);
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, c, "cuDeviceGetCount", e);
        return EXIT_CUDA_ERROR;
    }
    r->visible_devices = count;
    e = c->DeviceGetByPCIBusId(dev, o->address);
    if (e == CUDA_SUCCESS && count > 0)
        return 0;
    if (e != CUDA_SUCCESS && e != CUDA_ERROR_INVALID_VALUE && e != CUDA_ERROR_INVALID_DEVICE &&
        e != CUDA_ERROR_NOT_FOUND && e != CUDA_ERROR_NO_DEVICE) {
        cuda_failed(r, c, "cuDeviceGetByPCIBusId", e);
        return EXIT_CUDA_ERROR;
    }
    char seen[256] = "";
    if (c->DeviceGet && c->DeviceGetPCIBusId) {
        size_t len = 0;
        for (int i = 0; i < count && len + 20 < sizeof seen; i++) {
            CUdevice d;
            char id[32];
            if (c->DeviceGet(&d, i) == CUDA_SUCCESS &&
                c->DeviceGetPCIBusId(id, (int)sizeof id, d) == CUDA_SUCCESS)
                len += (size_t)snprintf(seen + len, sizeof seen - len, "%s%s", len ? ", " : "", id);
        }
    }
    reason_add(r, "no CUDA device at %s (%s; %d CUDA device%s visible%s%s)", o->address,
               e == CUDA_SUCCESS ? "none visible" : cu_name(c, e), count, count == 1 ? "" : "s",
               seen[0] ? ": " : "", seen);
    return EXIT_NO_DEVICE;
}

/* ---- stripes: what the verify reads -------------------------------------- */

#define STRIPE ((size_t)1 << 20)

/* Stripe i (global, in allocation order) is read when ceil((i+1)*F) >
 * ceil(i*F): exactly ceil(N*F) of N stripes, evenly spread, stripe 0 always,
 * and the same ones every run. F in parts per million. */
static int stripe_selected(uint64_t i, uint64_t ppm)
{
    if (ppm >= 1000000)
        return 1;
    uint64_t a = (i * ppm + 999999) / 1000000, b = ((i + 1) * ppm + 999999) / 1000000;
    return b > a;
}

/* Offset of the byte --inject-nonzero leaves: in a stripe that is read,
 * the first such stripe from the middle of the scrub on, inside it. */
static uint64_t inject_offset(const struct chunk *ch, size_t n, uint64_t ppm)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ch[i].size;
    uint64_t target = total / 2, g = 0, best = UINT64_MAX;
    for (size_t i = 0; i < n && best == UINT64_MAX; i++) {
        for (size_t s = 0; s * STRIPE < ch[i].size; s++, g++) {
            uint64_t start = ch[i].offset + s * STRIPE;
            size_t len = ch[i].size - s * STRIPE < STRIPE ? ch[i].size - s * STRIPE : STRIPE;
            if (start + len <= target || !stripe_selected(g, ppm))
                continue;
            best = start + (len > 4097 ? 4097 : len / 2);
            break;
        }
    }
    if (best == UINT64_MAX)   /* nothing read after the middle: stripe 0 always is */
        best = ch[0].size > 4097 ? 4097 : ch[0].size / 2;
    return best;
}

/* ---- the scrub ------------------------------------------------------------ */

struct scrub {
    struct cuda *c;
    const struct opts *o;
    struct result *r;
    struct chunk *ch;
    size_t n, cap;
    unsigned char *buf;
    size_t buf_size;
    int buf_pinned;
};

static int allocate_all(struct scrub *s)
{
    struct result *r = s->r;
    size_t req = s->o->chunk_bytes;
    r->first_chunk = req;
    r->smallest_chunk = 0;
    while (req >= s->o->min_chunk_bytes) {
        CUdeviceptr p = 0;
        CUresult e = s->c->MemAlloc(&p, req);
        if (e == CUDA_ERROR_OUT_OF_MEMORY) {
            r->oom_retries++;
            req /= 2;
            continue;
        }
        if (e != CUDA_SUCCESS) {
            cuda_failed(r, s->c, "cuMemAlloc_v2", e);
            return EXIT_CUDA_ERROR;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 256;
            struct chunk *nc = realloc(s->ch, cap * sizeof *nc);
            if (!nc) {
                s->c->MemFree(p);
                reason_add(r, "out of host memory for the chunk list");
                return EXIT_INTERNAL;
            }
            s->ch = nc;
            s->cap = cap;
        }
        s->ch[s->n] = (struct chunk){.ptr = p, .size = req, .offset = r->allocated};
        s->n++;
        r->nchunks = s->n;
        r->allocated += req;
        r->smallest_chunk = req;
    }
    return 0;
}

/* Before the memory is taken: one small allocation set with cuMemsetD32 and
 * D8 and read back, so that whatever the driver sets up on first use of
 * these paths (lazily loaded internal modules) has its memory before none is
 * left. Not enough memory even for this: skipped, the allocation says the
 * rest. */
static int warm_up(struct scrub *s)
{
    CUdeviceptr p = 0;
    size_t n = s->o->min_chunk_bytes;
    unsigned char byte = 1;
    CUresult e = s->c->MemAlloc(&p, n);
    if (e == CUDA_ERROR_OUT_OF_MEMORY)
        return 0;
    if (e != CUDA_SUCCESS) {
        cuda_failed(s->r, s->c, "cuMemAlloc_v2 (warm-up)", e);
        return EXIT_CUDA_ERROR;
    }
    const char *call = "cuMemsetD32_v2 (warm-up)";
    e = s->c->MemsetD32(p, 0, n / 4);
    if (e == CUDA_SUCCESS) {
        call = "cuMemsetD8_v2 (warm-up)";
        e = s->c->MemsetD8(p, 0, 1);
    }
    if (e == CUDA_SUCCESS) {
        call = "cuCtxSynchronize (warm-up)";
        e = s->c->CtxSynchronize();
    }
    if (e == CUDA_SUCCESS) {
        call = "cuMemcpyDtoH_v2 (warm-up)";
        e = s->c->MemcpyDtoH(&byte, p, 1);
    }
    CUresult fe = s->c->MemFree(p);
    if (e != CUDA_SUCCESS || fe != CUDA_SUCCESS) {
        cuda_failed(s->r, s->c, e != CUDA_SUCCESS ? call : "cuMemFree_v2 (warm-up)",
                    e != CUDA_SUCCESS ? e : fe);
        return EXIT_CUDA_ERROR;
    }
    return 0;
}

static CUresult fill(struct cuda *c, CUdeviceptr p, size_t n, unsigned int word)
{
    /* cuMemsetD32 for the 4-byte-aligned body, D8 for the rest. The pattern
     * bytes of `word` are all equal for 0, and for the self-test pattern the
     * tail gets its first byte. */
    size_t words = (p % 4 == 0) ? n / 4 : 0;
    CUresult e = CUDA_SUCCESS;
    if (words)
        e = c->MemsetD32(p, word, words);
    if (e == CUDA_SUCCESS && n - words * 4)
        e = c->MemsetD8(p + words * 4, (unsigned char)(word & 0xff), n - words * 4);
    return e;
}

#define PATTERN 0x3cc35aa5u   /* bytes a5 5a c3 3c: none zero */
#define INJECT_BYTE 0xa5u

static int write_pattern(struct scrub *s)
{
    struct result *r = s->r;
    for (size_t i = 0; i < s->n; i++) {
        CUresult e = fill(s->c, s->ch[i].ptr, s->ch[i].size, PATTERN);
        if (e != CUDA_SUCCESS) {
            cuda_failed(r, s->c, "cuMemsetD32_v2 (pattern)", e);
            return EXIT_CUDA_ERROR;
        }
    }
    CUresult e = s->c->CtxSynchronize();
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, s->c, "cuCtxSynchronize (pattern)", e);
        return EXIT_CUDA_ERROR;
    }
    /* Read the first stripe back: it must be the pattern, or a zero found
     * later would prove nothing. */
    size_t len = s->ch[0].size < STRIPE ? s->ch[0].size : STRIPE;
    e = s->c->MemcpyDtoH(s->buf, s->ch[0].ptr, len);
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, s->c, "cuMemcpyDtoH_v2 (pattern)", e);
        return EXIT_CUDA_ERROR;
    }
    /* what fill() wrote: the 32-bit pattern over the aligned body, its first
     * byte over a tail (and over all of an unaligned chunk) */
    size_t words = s->ch[0].ptr % 4 == 0 ? s->ch[0].size / 4 : 0;
    for (size_t i = 0; i < len; i++) {
        unsigned want = i < words * 4 ? (PATTERN >> (8 * (i % 4))) & 0xff : PATTERN & 0xff;
        if (s->buf[i] != want) {
            reason_add(r, "pattern self-test: byte %zu of the first chunk read back 0x%02x, "
                       "0x%02x was written: the read-back path cannot be trusted",
                       i, s->buf[i], want);
            return EXIT_SELFTEST;
        }
    }
    r->pattern_checked = 1;
    r->pattern_bytes_checked = len;
    return 0;
}

static int zero_all(struct scrub *s)
{
    struct result *r = s->r;
    double t0 = now_s();
    for (size_t i = 0; i < s->n; i++) {
        const struct chunk *ch = &s->ch[i];
        CUresult e;
        if (r->injected && r->inject_offset >= ch->offset && r->inject_offset < ch->offset + ch->size) {
            size_t k = (size_t)(r->inject_offset - ch->offset);
            if (!s->o->pattern) {   /* make sure the byte left alone is not zero anyway */
                e = s->c->MemsetD8(ch->ptr + k, INJECT_BYTE, 1);
                if (e != CUDA_SUCCESS) {
                    cuda_failed(r, s->c, "cuMemsetD8_v2 (inject)", e);
                    return EXIT_CUDA_ERROR;
                }
            }
            e = k ? s->c->MemsetD8(ch->ptr, 0, k) : CUDA_SUCCESS;
            if (e == CUDA_SUCCESS && ch->size - k - 1)
                e = s->c->MemsetD8(ch->ptr + k + 1, 0, ch->size - k - 1);
            r->zeroed += ch->size - 1;
        } else {
            e = fill(s->c, ch->ptr, ch->size, 0);
            r->zeroed += ch->size;
        }
        if (e != CUDA_SUCCESS) {
            cuda_failed(r, s->c, "cuMemsetD8_v2/D32_v2", e);
            return EXIT_CUDA_ERROR;
        }
    }
    CUresult e = s->c->CtxSynchronize();
    r->zero_s = now_s() - t0;
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, s->c, "cuCtxSynchronize", e);
        return EXIT_CUDA_ERROR;
    }
    return 0;
}

/* Check buf[0..len), read from chunk `ch` at chunk_off, for non-zero bytes:
 * count them, and keep the first one's position. */
static void check_zero(struct scrub *s, const struct chunk *ch, size_t chunk_off, size_t len)
{
    struct result *r = s->r;
    const unsigned char *b = s->buf;
    for (size_t i = 0; i < len;) {
        size_t n = len - i < 8 ? len - i : 8;
        if (n == 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            if (w == 0) {
                i += 8;
                continue;
            }
        }
        for (size_t j = i; j < i + n; j++) {
            if (!b[j])
                continue;
            if (!r->nonzero) {
                r->nonzero = 1;
                r->nonzero_chunk = (size_t)(ch - s->ch);
                r->nonzero_chunk_offset = chunk_off + j;
                r->nonzero_offset = ch->offset + chunk_off + j;
                r->nonzero_device_address = ch->ptr + chunk_off + j;
                r->nonzero_value = b[j];
            }
            r->nonzero_count++;
        }
        i += n;
    }
}

static int verify_all(struct scrub *s, uint64_t ppm)
{
    struct result *r = s->r;
    double t0 = now_s();
    uint64_t g = 0;   /* global stripe index */
    for (size_t i = 0; i < s->n; i++) {
        const struct chunk *ch = &s->ch[i];
        size_t off = 0;
        while (off < ch->size) {
            /* gather consecutive selected stripes, up to the buffer's size */
            size_t run_start = off, run_len = 0;
            while (off < ch->size) {
                size_t len = ch->size - off < STRIPE ? ch->size - off : STRIPE;
                int sel = stripe_selected(g, ppm);
                if (sel && run_len + len <= s->buf_size) {
                    if (!run_len)
                        run_start = off;
                    run_len += len;
                    off += len;
                    g++;
                    continue;
                }
                if (!sel && !run_len) {   /* skip it */
                    off += len;
                    g++;
                    continue;
                }
                break;   /* unselected after a run, or the buffer is full */
            }
            if (!run_len)
                continue;
            CUresult e = s->c->MemcpyDtoH(s->buf, ch->ptr + run_start, run_len);
            if (e != CUDA_SUCCESS) {
                cuda_failed(r, s->c, "cuMemcpyDtoH_v2", e);
                r->verify_s = now_s() - t0;
                return EXIT_CUDA_ERROR;
            }
            check_zero(s, ch, run_start, run_len);
            r->verified += run_len;
        }
    }
    r->verify_s = now_s() - t0;
    return 0;
}

static int free_all(struct scrub *s)
{
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        CUresult e = s->c->MemFree(s->ch[i].ptr);
        if (e != CUDA_SUCCESS && !rc) {
            cuda_failed(s->r, s->c, "cuMemFree_v2", e);
            rc = EXIT_CUDA_ERROR;
        }
    }
    s->n = 0;
    return rc;
}

/* ---- output -------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static double gbps(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes / s / 1e9 : 0.0;
}

static const char *verdict(int code)
{
    switch (code) {
    case EXIT_PASS: return "pass";
    case EXIT_INTERNAL: return "host_error";
    case EXIT_NO_LIBCUDA: return "no_libcuda";
    case EXIT_NO_DEVICE: return "no_device";
    case EXIT_LOW_COVERAGE: return "low_coverage";
    case EXIT_NONZERO: return "nonzero";
    case EXIT_CUDA_ERROR: return "cuda_error";
    case EXIT_SELFTEST: return "selftest_failed";
    default: return "fail";
    }
}

static void print_result(const struct opts *o, const struct result *r)
{
    double coverage = r->free_start ? (double)r->allocated / (double)r->free_start : 0.0;
    if (o->json) {
        printf("{\"version\":1,\"tool\":\"" PROG "\",\"address\":");
        json_str(stdout, o->address);
        printf(",\"result\":\"%s\",\"exit_code\":%d,\"reason\":", verdict(r->code), r->code);
        json_str(stdout, r->reason);
        printf(",\"device_name\":");
        json_str(stdout, r->device_name);
        printf(",\"cuda_bus_id\":");
        json_str(stdout, r->cuda_bus_id);
        printf(",\"driver_version\":%d,\"bytes_total\":%zu,\"bytes_free\":%zu,"
               "\"bytes_allocated\":%" PRIu64 ",\"coverage\":%.6f,\"min_coverage\":%.6f,"
               "\"chunks\":%zu,\"chunk_first_bytes\":%zu,\"chunk_smallest_bytes\":%zu,"
               "\"oom_retries\":%u,\"bytes_zeroed\":%" PRIu64 ",\"bytes_verified\":%" PRIu64 ","
               "\"verify_fraction\":%.6f,\"zero_seconds\":%.6f,\"verify_seconds\":%.6f,"
               "\"zero_gbps\":%.3f,\"verify_gbps\":%.3f,\"readback\":\"%s\",\"pattern\":%s,"
               "\"inject_nonzero\":%s",
               r->driver_version, r->total, r->free_start, r->allocated, coverage,
               o->min_coverage, r->nchunks, r->first_chunk, r->smallest_chunk, r->oom_retries,
               r->zeroed, r->verified, o->verify_fraction, r->zero_s, r->verify_s,
               gbps(r->zeroed, r->zero_s), gbps(r->verified, r->verify_s),
               r->readback ? r->readback : "none", o->pattern ? "true" : "false",
               r->injected ? "true" : "false");
        if (r->injected)
            printf(",\"injected_offset\":%" PRIu64, r->inject_offset);
        if (r->pattern_checked)
            printf(",\"pattern_bytes_checked\":%" PRIu64, r->pattern_bytes_checked);
        if (r->nonzero)
            printf(",\"nonzero\":{\"offset\":%" PRIu64 ",\"chunk\":%zu,\"chunk_offset\":%" PRIu64
                   ",\"device_address\":\"0x%llx\",\"value\":%u,\"count\":%" PRIu64 "}",
                   r->nonzero_offset, r->nonzero_chunk, r->nonzero_chunk_offset,
                   r->nonzero_device_address, r->nonzero_value, r->nonzero_count);
        if (r->cuda_error) {
            printf(",\"cuda_error\":");
            json_str(stdout, r->cuda_error);
            printf(",\"cuda_call\":");
            json_str(stdout, r->cuda_call);
        }
        printf("}\n");
    } else {
        printf(PROG " %s: %s%s%s; device=\"%s\" driver=%d bytes_total=%zu bytes_free=%zu "
               "bytes_allocated=%" PRIu64 " coverage=%.4f min_coverage=%.4f chunks=%zu "
               "chunk_first=%zu chunk_smallest=%zu oom_retries=%u bytes_zeroed=%" PRIu64
               " bytes_verified=%" PRIu64 " verify_fraction=%.4f zero_gbps=%.2f verify_gbps=%.2f"
               " readback=%s",
               o->address, verdict(r->code), r->reason[0] ? ": " : "", r->reason,
               r->device_name, r->driver_version, r->total, r->free_start, r->allocated,
               coverage, o->min_coverage, r->nchunks, r->first_chunk, r->smallest_chunk,
               r->oom_retries, r->zeroed, r->verified, o->verify_fraction,
               gbps(r->zeroed, r->zero_s), gbps(r->verified, r->verify_s),
               r->readback ? r->readback : "none");
        if (r->pattern_checked)
            printf(" pattern_bytes_checked=%" PRIu64, r->pattern_bytes_checked);
        if (r->injected)
            printf(" injected_offset=%" PRIu64, r->inject_offset);
        if (r->nonzero)
            printf(" nonzero_offset=%" PRIu64 " nonzero_count=%" PRIu64, r->nonzero_offset,
                   r->nonzero_count);
        if (r->cuda_error)
            printf(" cuda_error=%s", r->cuda_error);
        printf("\n");
    }
    fflush(stdout);
    if (r->code != EXIT_PASS)
        fprintf(stderr, PROG ": %s: %s\n", o->address, r->reason);
}

/* ---- main ---------------------------------------------------------------- */

static int run(struct cuda *c, const struct opts *o, struct result *r)
{
    int rc = load_cuda(c, r);
    if (rc)
        return rc;
    CUdevice dev = 0;
    rc = find_device(c, o, r, &dev);
    if (rc)
        return rc;
    if (c->DeviceGetName && c->DeviceGetName(r->device_name, (int)sizeof r->device_name, dev) != CUDA_SUCCESS)
        r->device_name[0] = 0;
    if (c->DeviceGetPCIBusId &&
        c->DeviceGetPCIBusId(r->cuda_bus_id, (int)sizeof r->cuda_bus_id, dev) != CUDA_SUCCESS)
        r->cuda_bus_id[0] = 0;

    CUcontext ctx = NULL;
    CUresult e = c->CtxCreate(&ctx, 0, dev);
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, c, "cuCtxCreate_v2", e);
        return EXIT_CUDA_ERROR;
    }
    struct scrub s = {.c = c, .o = o, .r = r};
    rc = warm_up(&s);
    if (rc)
        goto out;
    e = c->MemGetInfo(&r->free_start, &r->total);   /* after the context and the warm-up */
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, c, "cuMemGetInfo_v2", e);
        rc = EXIT_CUDA_ERROR;
        goto out;
    }
    rc = allocate_all(&s);
    if (rc)
        goto out;
    if (!s.n) {
        reason_add(r, "no allocation of %zu bytes or more succeeded (%zu bytes free)",
                   o->min_chunk_bytes, r->free_start);
        rc = EXIT_LOW_COVERAGE;
        goto out;
    }

    /* The read-back buffer: pinned when the driver gives it (faster), at most
     * 64 MiB, at least one stripe. It is taken after the device memory. */
    s.buf_size = (size_t)64 << 20;
    if (r->allocated < s.buf_size)
        s.buf_size = (size_t)r->allocated < STRIPE ? STRIPE : (size_t)r->allocated;
    void *hb = NULL;
    if (c->MemAllocHost && c->MemAllocHost(&hb, s.buf_size) == CUDA_SUCCESS && hb) {
        s.buf_pinned = 1;
        r->readback = "pinned";
    } else {
        hb = malloc(s.buf_size);
        r->readback = "pageable";
        if (!hb) {
            reason_add(r, "out of host memory for a %zu-byte read-back buffer", s.buf_size);
            rc = EXIT_INTERNAL;
            goto out;
        }
    }
    s.buf = hb;

    uint64_t ppm = (uint64_t)(o->verify_fraction * 1e6 + 0.5);
    if (ppm < 1)
        ppm = 1;
    if (o->inject_nonzero) {
        r->injected = 1;
        r->inject_offset = inject_offset(s.ch, s.n, ppm);
    }
    if (o->pattern && (rc = write_pattern(&s)) != 0)
        goto out;
    if ((rc = zero_all(&s)) != 0)
        goto out;
    if ((rc = verify_all(&s, ppm)) != 0)
        goto out;

out:;
    int frc = free_all(&s);
    if (s.buf) {
        if (s.buf_pinned)
            c->MemFreeHost(s.buf);
        else
            free(s.buf);
    }
    free(s.ch);
    e = c->CtxDestroy(ctx);
    if (e != CUDA_SUCCESS) {
        cuda_failed(r, c, "cuCtxDestroy_v2", e);
        frc = EXIT_CUDA_ERROR;
    }
    if (r->nonzero)
        reason_add(r, "non-zero byte at offset %" PRIu64 " (chunk %zu + %" PRIu64
                   ", device address 0x%llx): 0x%02x; %" PRIu64 " non-zero byte%s in %" PRIu64
                   " verified", r->nonzero_offset, r->nonzero_chunk, r->nonzero_chunk_offset,
                   r->nonzero_device_address, r->nonzero_value, r->nonzero_count,
                   r->nonzero_count == 1 ? "" : "s", r->verified);
    double coverage = r->free_start ? (double)r->allocated / (double)r->free_start : 0.0;
    int low = r->allocated && coverage < o->min_coverage;
    if (low)
        reason_add(r, "allocated %" PRIu64 " of %zu free bytes (%.2f%%), below the %.2f%% required",
                   r->allocated, r->free_start, coverage * 100, o->min_coverage * 100);
    if (rc == EXIT_CUDA_ERROR || frc == EXIT_CUDA_ERROR || r->cuda_error)
        return EXIT_CUDA_ERROR;
    if (r->nonzero)
        return EXIT_NONZERO;
    if (rc)
        return rc;
    if (low)
        return EXIT_LOW_COVERAGE;
    return EXIT_PASS;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .verify_fraction = 1.0,
        .chunk_bytes = (size_t)1024 << 20,
        .min_chunk_bytes = (size_t)2 << 20,
        .min_coverage = 0.95,
    };
    enum { O_VF = 256, O_CHUNK, O_MINCHUNK, O_MINCOV, O_JSON, O_PATTERN, O_INJECT, O_HELP };
    static const struct option lo[] = {
        {"verify-fraction", required_argument, NULL, O_VF},
        {"chunk-mb", required_argument, NULL, O_CHUNK},
        {"min-chunk-mb", required_argument, NULL, O_MINCHUNK},
        {"min-coverage", required_argument, NULL, O_MINCOV},
        {"json", no_argument, NULL, O_JSON},
        {"pattern", no_argument, NULL, O_PATTERN},
        {"inject-nonzero", no_argument, NULL, O_INJECT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (opt) {
        case O_VF:
            if (parse_fraction(optarg, &o.verify_fraction)) {
                fprintf(stderr, PROG ": --verify-fraction wants 0 < F <= 1, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_CHUNK:
            if (parse_mb(optarg, &o.chunk_bytes)) {
                fprintf(stderr, PROG ": --chunk-mb wants a positive number of MiB, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_MINCHUNK:
            if (parse_mb(optarg, &o.min_chunk_bytes)) {
                fprintf(stderr, PROG ": --min-chunk-mb wants a positive number of MiB, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_MINCOV:
            if (parse_fraction(optarg, &o.min_coverage)) {
                fprintf(stderr, PROG ": --min-coverage wants 0 < F <= 1, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_JSON: o.json = 1; break;
        case O_PATTERN: o.pattern = 1; break;
        case O_INJECT: o.inject_nonzero = 1; break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return EXIT_USAGE;   /* scrubbed nothing: never exit 0 */
        default:
            fprintf(stderr, PROG ": unknown option or missing value: %s\n", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG ": %s\n", argc - optind ? "one PCI address, please" : "PCI address missing");
        usage(stderr);
        return EXIT_USAGE;
    }
    o.address = argv[optind];
    if (!valid_address(o.address)) {
        fprintf(stderr, PROG ": '%s' is not a PCI address (dddd:bb:dd.f)\n", o.address);
        return EXIT_USAGE;
    }
    if (o.min_chunk_bytes > o.chunk_bytes) {
        fprintf(stderr, PROG ": --min-chunk-mb is above --chunk-mb\n");
        return EXIT_USAGE;
    }
    struct cuda c = {0};
    struct result r = {0};
    r.code = run(&c, &o, &r);
    print_result(&o, &r);
    /* libcuda stays loaded until exit: unloading the driver library
     * mid-process is not something it is known to like. */
    return r.code;
}
