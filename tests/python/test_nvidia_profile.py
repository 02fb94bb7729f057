"""The NVIDIA profile of the `driver` clean-up method (docs/nvidia.md):
gpuwarden-cuda-scrub and gpuwarden-nvidia-health.

No NVIDIA GPU is needed or used. The scrub runs against a TEST DOUBLE of the
CUDA driver API: a small libcuda.so.1 compiled here from FAKE_LIBCUDA_C into
a temporary directory and put first on the loader path. It implements the
entry points the scrub resolves over host malloc memory, names its one
device "CUDA API test double (host memory, not a GPU)", and logs every
allocation, and at each free how many non-zero bytes the block still held
(its own account of what the scrub left). The health check runs against a
fake `nvidia-smi` (and `dmesg`, `dcgmi`) on PATH printing CSV in nvidia-smi's
format. What this proves is the tools' logic and contract; that the real
driver behaves like the double is NOT proven here (see docs/nvidia.md).
"""

import json
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRUB_SRC = ROOT / "tools" / "nvidia" / "gpuwarden-cuda-scrub.c"
HEALTH_SRC = ROOT / "packaging" / "nvidia" / "gpuwarden-nvidia-health"
ADDR = "0000:3b:00.0"
MiB = 1 << 20

# Exit codes of gpuwarden-cuda-scrub (its header comment, docs/nvidia.md).
PASS, HOST_ERROR, USAGE, NO_LIBCUDA, NO_DEVICE, LOW_COVERAGE, NONZERO, CUDA_ERROR, SELFTEST = range(9)


def _build_dir():
    """GW_BUILD_DIR (scripts/test sets it), else build/ or /tmp/build-nv,
    whichever has the program."""
    env = os.environ.get("GW_BUILD_DIR")
    candidates = [pathlib.Path(env)] if env else [ROOT / "build", pathlib.Path("/tmp/build-nv")]
    for d in candidates:
        if (d / "gpuwarden-cuda-scrub").exists():
            return d
    return candidates[0]


BUILD = _build_dir()
SCRUB = BUILD / "gpuwarden-cuda-scrub"


def run_scrub(args, env_extra=None, libdir=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FAKECUDA_") and k not in ("LD_LIBRARY_PATH", "GW_CUDA_LIBRARY")}
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    env.update(env_extra or {})
    return subprocess.run([str(SCRUB)] + list(args), env=env, capture_output=True, text=True,
                          timeout=120)


def scrub_json(args, env_extra=None, libdir=None):
    r = run_scrub(["--json"] + list(args), env_extra, libdir)
    lines = r.stdout.splitlines()
    assert len(lines) == 1, (r.stdout, r.stderr)
    return r, json.loads(lines[0])


def read_log(path, warm_up=True):
    """The double's log: allocation attempts (size, result), frees (size,
    non-zero bytes left), live allocations at cuCtxDestroy. The scrub's
    warm-up (one 2 MiB allocation, set, read, freed before anything else) is
    checked and left out."""
    allocs, frees, destroys = [], [], []
    for ln in pathlib.Path(path).read_text().splitlines():
        parts = ln.split()
        if parts[0] == "cuMemAlloc_v2":
            allocs.append((int(parts[1]), int(parts[2])))
        elif parts[0] == "cuMemFree_v2":
            frees.append((int(parts[1]), int(parts[2].split("=")[1])))
        elif parts[0] == "cuCtxDestroy_v2":
            destroys.append(int(parts[1].split("=")[1]))
    if warm_up:
        text = pathlib.Path(path).read_text().splitlines()
        assert text[:2] == [f"cuMemAlloc_v2 {2 * MiB} 0", f"cuMemFree_v2 {2 * MiB} nonzero=0"], text[:2]
        allocs, frees = allocs[1:], frees[1:]
    return allocs, frees, destroys


# ---- the CUDA driver API test double ------------------------------------

FAKE_LIBCUDA_C = r"""/* TEST DOUBLE of the CUDA driver API (libcuda.so.1), for
 * tests/python/test_nvidia_profile.py only. It is NOT a GPU and never says it
 * is one: its one "device" is host memory from malloc, its name says so, and
 * device pointers are host addresses. It implements exactly the entry points
 * gpuwarden-cuda-scrub resolves, with the driver API's documented types and
 * error codes, so the scrub's logic (chunking, zeroing, read-back, offsets,
 * exit codes) can be tested where no NVIDIA GPU exists.
 *
 * Behaviour from the environment:
 *   FAKECUDA_BUS_ID          the device's PCI address (default 0000:3b:00.0)
 *   FAKECUDA_TOTAL_MB        total memory (default 64)
 *   FAKECUDA_FREE_MB         free memory reported at first (default TOTAL-2)
 *   FAKECUDA_ALLOCATABLE_MB  what allocations can really take (default FREE)
 *   FAKECUDA_MAX_ALLOC_MB    largest single allocation (default: no limit)
 *   FAKECUDA_RESIDUE=0       new allocations start zeroed (default: they hold
 *                            a previous tenant's bytes, "TENANT-SECRET...")
 *   FAKECUDA_MEMSET_NOOP=1   cuMemset* succeed and write nothing (a broken
 *                            driver that the read-back must catch)
 *   FAKECUDA_INIT_RESULT=N   cuInit returns N
 *   FAKECUDA_FAIL_CALL=NAME  that entry point returns 700
 *                            (CUDA_ERROR_ILLEGAL_ADDRESS), after
 *   FAKECUDA_FAIL_AFTER=N    N calls that succeed (default 0)
 *   FAKECUDA_LOG=PATH        one line per allocation attempt (size, result),
 *                            per free (size, non-zero bytes it still held:
 *                            the double's own account of what the scrub left)
 *                            and at cuCtxDestroy_v2 (allocations still live)
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr;

#define OK 0
#define INVALID_VALUE 1
#define OUT_OF_MEMORY 2
#define NOT_INITIALIZED 3
#define INVALID_DEVICE 101
#define INVALID_CONTEXT 201
#define ILLEGAL_ADDRESS 700

#define MAXALLOC 65536
static struct { unsigned char *p; size_t n; } live[MAXALLOC];
static size_t nlive, allocated, total, free_start, allocatable, max_alloc;
static int inited, residue = 1, memset_noop;
static struct CUctx_st { int dummy; } the_ctx;
static int ctx_live;

static size_t env_mb(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) << 20 : dflt;
}

static int failing(const char *call)
{
    static unsigned long calls;
    const char *v = getenv("FAKECUDA_FAIL_CALL"), *after = getenv("FAKECUDA_FAIL_AFTER");
    if (!v || strcmp(v, call) != 0)
        return 0;
    return ++calls > (after && *after ? strtoul(after, NULL, 10) : 0);
}

static void logf_(const char *fmt, ...)
{
    const char *path = getenv("FAKECUDA_LOG");
    if (!path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* The allocation holding [p, p+n), or -1. */
static long find(CUdeviceptr p, size_t n)
{
    for (size_t i = 0; i < nlive; i++) {
        CUdeviceptr b = (CUdeviceptr)(size_t)live[i].p;
        if (p >= b && p + n <= b + live[i].n && p + n >= p)
            return (long)i;
    }
    return -1;
}

static void norm_bus_id(const char *in, char out[64])
{
    /* dddd...:bb:dd.f -> last 4 domain digits, lower case */
    char tmp[64];
    size_t n = strlen(in);
    if (n >= sizeof tmp)
        n = sizeof tmp - 1;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (char)tolower((unsigned char)in[i]);
    tmp[n] = 0;
    const char *colon = strchr(tmp, ':');
    size_t dom = colon ? (size_t)(colon - tmp) : 0;
    snprintf(out, 64, "%s", dom > 4 ? tmp + dom - 4 : tmp);
}

CUresult cuInit(unsigned int flags)
{
    const char *r = getenv("FAKECUDA_INIT_RESULT");
    if (r && *r)
        return atoi(r);
    if (flags)
        return INVALID_VALUE;
    total = env_mb("FAKECUDA_TOTAL_MB", 64u << 20);
    free_start = env_mb("FAKECUDA_FREE_MB", total - (2u << 20));
    allocatable = env_mb("FAKECUDA_ALLOCATABLE_MB", free_start);
    max_alloc = env_mb("FAKECUDA_MAX_ALLOC_MB", (size_t)-1);
    const char *v = getenv("FAKECUDA_RESIDUE");
    residue = !(v && strcmp(v, "0") == 0);
    v = getenv("FAKECUDA_MEMSET_NOOP");
    memset_noop = v && strcmp(v, "1") == 0;
    inited = 1;
    return OK;
}

CUresult cuDriverGetVersion(int *v) { *v = 0; return OK; }   /* 0: not a real driver */

CUresult cuDeviceGetCount(int *n)
{
    if (!inited)
        return NOT_INITIALIZED;
    *n = 1;
    return OK;
}

CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
    if (!inited)
        return NOT_INITIALIZED;
    if (ordinal != 0)
        return INVALID_DEVICE;
    *d = 0;
    return OK;
}

CUresult cuDeviceGetByPCIBusId(CUdevice *d, const char *id)
{
    if (!inited)
        return NOT_INITIALIZED;
    const char *mine = getenv("FAKECUDA_BUS_ID");
    char a[64], b[64];
    norm_bus_id(id, a);
    norm_bus_id(mine && *mine ? mine : "0000:3b:00.0", b);
    if (strcmp(a, b) != 0)
        return INVALID_DEVICE;
    *d = 0;
    return OK;
}

CUresult cuDeviceGetPCIBusId(char *out, int len, CUdevice d)
{
    const char *mine = getenv("FAKECUDA_BUS_ID");
    if (d != 0)
        return INVALID_DEVICE;
    snprintf(out, (size_t)len, "%s", mine && *mine ? mine : "0000:3b:00.0");
    for (char *p = out; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return OK;
}

CUresult cuDeviceGetName(char *out, int len, CUdevice d)
{
    if (d != 0)
        return INVALID_DEVICE;
    snprintf(out, (size_t)len, "CUDA API test double (host memory, not a GPU)");
    return OK;
}

CUresult cuCtxCreate_v2(CUcontext *c, unsigned int flags, CUdevice d)
{
    if (!inited)
        return NOT_INITIALIZED;
    if (d != 0)
        return INVALID_DEVICE;
    (void)flags;
    ctx_live = 1;
    *c = &the_ctx;
    return OK;
}

CUresult cuCtxDestroy_v2(CUcontext c)
{
    if (c != &the_ctx || !ctx_live)
        return INVALID_CONTEXT;
    logf_("cuCtxDestroy_v2 live=%zu\n", nlive);
    for (size_t i = 0; i < nlive; i++)
        free(live[i].p);
    nlive = 0;
    allocated = 0;
    ctx_live = 0;
    return OK;
}

CUresult cuCtxSynchronize(void)
{
    if (!ctx_live)
        return INVALID_CONTEXT;
    return failing("cuCtxSynchronize") ? ILLEGAL_ADDRESS : OK;
}

CUresult cuMemGetInfo_v2(size_t *f, size_t *t)
{
    if (!ctx_live)
        return INVALID_CONTEXT;
    *f = allocated < free_start ? free_start - allocated : 0;
    *t = total;
    return OK;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
    if (!ctx_live)
        return INVALID_CONTEXT;
    if (n == 0)
        return INVALID_VALUE;
    if (failing("cuMemAlloc_v2"))
        return ILLEGAL_ADDRESS;
    if (n > max_alloc || allocated + n > allocatable || nlive == MAXALLOC) {
        logf_("cuMemAlloc_v2 %zu %d\n", n, OUT_OF_MEMORY);
        return OUT_OF_MEMORY;
    }
    unsigned char *m = malloc(n);
    if (!m)
        return OUT_OF_MEMORY;
    if (residue) {
        static const char secret[] = "TENANT-SECRET-";
        for (size_t i = 0; i < n; i++)
            m[i] = (unsigned char)secret[i % (sizeof secret - 1)];
    } else {
        memset(m, 0, n);
    }
    live[nlive].p = m;
    live[nlive].n = n;
    nlive++;
    allocated += n;
    *p = (CUdeviceptr)(size_t)m;
    logf_("cuMemAlloc_v2 %zu %d\n", n, OK);
    return OK;
}

CUresult cuMemFree_v2(CUdeviceptr p)
{
    for (size_t i = 0; i < nlive; i++)
        if ((CUdeviceptr)(size_t)live[i].p == p) {
            size_t nz = 0;
            for (size_t j = 0; j < live[i].n; j++)
                nz += live[i].p[j] != 0;
            logf_("cuMemFree_v2 %zu nonzero=%zu\n", live[i].n, nz);
            allocated -= live[i].n;
            free(live[i].p);
            live[i] = live[--nlive];
            return OK;
        }
    return INVALID_VALUE;
}

CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n)
{
    if (failing("cuMemsetD8_v2"))
        return ILLEGAL_ADDRESS;
    if (find(d, n) < 0)
        return INVALID_VALUE;
    if (!memset_noop)
        memset((void *)(size_t)d, v, n);
    return OK;
}

CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n)
{
    if (failing("cuMemsetD32_v2"))
        return ILLEGAL_ADDRESS;
    if (d % 4 || n > ((size_t)-1) / 4 || find(d, n * 4) < 0)
        return INVALID_VALUE;
    if (!memset_noop) {
        unsigned char *q = (unsigned char *)(size_t)d;
        for (size_t i = 0; i < n; i++)
            memcpy(q + 4 * i, &v, 4);
    }
    return OK;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    if (failing("cuMemcpyDtoH_v2"))
        return ILLEGAL_ADDRESS;
    if (find(src, n) < 0)
        return INVALID_VALUE;
    memcpy(dst, (const void *)(size_t)src, n);
    return OK;
}

CUresult cuMemAllocHost_v2(void **p, size_t n)
{
    *p = malloc(n);
    return *p ? OK : OUT_OF_MEMORY;
}

CUresult cuMemFreeHost(void *p)
{
    free(p);
    return OK;
}

static const struct { int code; const char *name, *text; } errs[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

CUresult cuGetErrorName(CUresult e, const char **s)
{
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == e) {
            *s = errs[i].name;
            return OK;
        }
    *s = NULL;
    return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult e, const char **s)
{
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == e) {
            *s = errs[i].text;
            return OK;
        }
    *s = NULL;
    return INVALID_VALUE;
}
"""


@pytest.fixture(scope="module")
def fakecuda(tmp_path_factory):
    """Directory holding the test double as libcuda.so.1."""
    d = tmp_path_factory.mktemp("fake-libcuda")
    src = d / "fake_libcuda.c"
    src.write_text(FAKE_LIBCUDA_C)
    cc = subprocess.run(["cc", "-std=c17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                         "-Wl,-soname,libcuda.so.1", "-o", str(d / "libcuda.so.1"), str(src)],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    return d


@pytest.fixture
def log(tmp_path):
    return tmp_path / "fakecuda.log"


# ---- gpuwarden-cuda-scrub: build, usage, no library ------------------------

def test_scrub_is_built_by_cmake():
    assert SCRUB.exists(), f"{SCRUB} missing: build first (cmake --build {BUILD})"
    assert os.access(SCRUB, os.X_OK)


def test_scrub_needs_no_cuda_toolkit(tmp_path):
    """The source includes no CUDA header and builds alone, pedantic C17,
    with libdl only."""
    text = SCRUB_SRC.read_text()
    assert "#include <cuda" not in text and "#include \"cuda" not in text
    exe = tmp_path / "scrub"
    cc = subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-Wshadow",
                         "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wformat=2",
                         str(SCRUB_SRC), "-o", str(exe), "-ldl"], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    nm = subprocess.run(["nm", "-D", "--undefined-only", str(exe)], capture_output=True, text=True).stdout
    assert " cu" not in nm, "CUDA entry points must come from dlsym, not the linker"


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], [ADDR, "0000:3c:00.0"], ["3b:00"],
                                  ["--verify-fraction", "0", ADDR], ["--verify-fraction", "1.5", ADDR],
                                  ["--min-coverage", "x", ADDR], ["--chunk-mb", "-4", ADDR],
                                  ["--chunk-mb", "2", "--min-chunk-mb", "4", ADDR], ["--bogus", ADDR]])
def test_scrub_usage_exits_2(args):
    """Exit 0 means "scrubbed": --help and every usage error exit 2, scrub nothing."""
    r = run_scrub(args, {"GW_CUDA_LIBRARY": "/nonexistent/libcuda.so.1"})
    assert r.returncode == USAGE, (r.stdout, r.stderr)
    assert "usage: gpuwarden-cuda-scrub" in (r.stdout + r.stderr) or r.stderr.startswith("gpuwarden-cuda-scrub: ")
    assert "bytes_allocated" not in r.stdout, "no result line: nothing was tried"


def test_scrub_without_libcuda_says_so(tmp_path):
    r, j = scrub_json([ADDR], {"GW_CUDA_LIBRARY": str(tmp_path / "none" / "libcuda.so.1")})
    assert r.returncode == NO_LIBCUDA
    assert j["result"] == "no_libcuda" and j["exit_code"] == NO_LIBCUDA
    assert "libcuda.so.1 not loadable" in j["reason"] and "NVIDIA driver" in j["reason"]
    assert "libcuda.so.1 not loadable" in r.stderr
    assert j["bytes_allocated"] == 0 and j["bytes_verified"] == 0


def test_scrub_on_this_host_without_a_driver():
    """As shipped (loader path only). Where the host has a real libcuda this
    says nothing, so it is skipped there."""
    probe = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libcuda.so.1" in probe:
        pytest.skip("this host has a libcuda.so.1")
    r = run_scrub([ADDR])
    assert r.returncode == NO_LIBCUDA, (r.stdout, r.stderr)
    assert r.stdout.startswith(f"gpuwarden-cuda-scrub {ADDR}: no_libcuda: libcuda.so.1 not loadable")


def test_scrub_names_a_missing_entry_point(tmp_path):
    """A library that is not the driver's (no cuInit): exit 3, naming it."""
    src = tmp_path / "other.c"
    src.write_text("int cuDeviceGetCount(int *n) { *n = 0; return 0; }\n")
    lib = tmp_path / "libcuda.so.1"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    r, j = scrub_json([ADDR], {"GW_CUDA_LIBRARY": str(lib)})
    assert r.returncode == NO_LIBCUDA and "lacks cuInit" in j["reason"]


# ---- gpuwarden-cuda-scrub against the test double --------------------------

def test_full_scrub_leaves_every_byte_zero(fakecuda, log):
    """The double's allocations start full of a previous tenant's bytes; the
    scrub allocates all free memory, zeroes it, reads all of it back, exit 0;
    the double itself counts zero non-zero bytes in every block at free."""
    r, j = scrub_json([ADDR], {"FAKECUDA_LOG": str(log)}, fakecuda)
    assert r.returncode == PASS, (r.stdout, r.stderr)
    assert j["result"] == "pass" and j["reason"] == ""
    assert j["device_name"] == "CUDA API test double (host memory, not a GPU)"
    assert j["bytes_total"] == 64 * MiB and j["bytes_free"] == 62 * MiB
    assert j["bytes_allocated"] == 62 * MiB and j["coverage"] == 1.0
    assert j["bytes_zeroed"] == j["bytes_verified"] == 62 * MiB
    assert j["verify_fraction"] == 1.0 and "nonzero" not in j
    allocs, frees, destroys = read_log(log)
    assert sum(n for n, res in allocs if res == 0) == 62 * MiB
    assert sum(n for n, _ in frees) == 62 * MiB, "everything allocated is freed"
    assert all(nz == 0 for _, nz in frees), frees
    assert destroys == [0], "no allocation outlives the context"


def test_text_result_is_one_line(fakecuda):
    r = run_scrub([ADDR], libdir=fakecuda)
    assert r.returncode == PASS and r.stderr == ""
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gpuwarden-cuda-scrub {ADDR}: pass;")
    for k in ("bytes_allocated=65011712", "bytes_total=67108864", "bytes_verified=65011712",
              "zero_gbps=", "verify_gbps="):
        assert k in lines[0]


def test_verify_catches_what_zeroing_missed(fakecuda, log):
    """A driver whose memset writes nothing: the read-back finds the tenant's
    first byte at offset 0 ('T' of TENANT-SECRET) and counts all of them."""
    r, j = scrub_json([ADDR], {"FAKECUDA_MEMSET_NOOP": "1", "FAKECUDA_LOG": str(log)}, fakecuda)
    assert r.returncode == NONZERO, (r.stdout, r.stderr)
    assert j["nonzero"]["offset"] == 0 and j["nonzero"]["value"] == ord("T")
    assert j["nonzero"]["count"] == 62 * MiB
    assert "non-zero byte at offset 0" in r.stderr


def test_inject_nonzero_fails_with_the_offset(fakecuda, log):
    r, j = scrub_json(["--inject-nonzero", ADDR], {"FAKECUDA_LOG": str(log)}, fakecuda)
    assert r.returncode == NONZERO, (r.stdout, r.stderr)
    assert j["result"] == "nonzero" and j["inject_nonzero"] is True
    off = j["injected_offset"]
    assert 31 * MiB <= off < 62 * MiB, "past the middle of the scrub"
    assert j["nonzero"]["offset"] == off and j["nonzero"]["count"] == 1
    assert j["nonzero"]["value"] == 0xA5
    assert f"non-zero byte at offset {off}" in r.stderr
    _, frees, destroys = read_log(log)
    assert sum(nz for _, nz in frees) == 1, "the double agrees: one byte left"
    assert destroys == [0]


@pytest.mark.parametrize("extra", [["--pattern"], ["--verify-fraction", "0.1"],
                                   ["--pattern", "--verify-fraction", "0.05"]])
def test_inject_nonzero_is_found_in_every_mode(fakecuda, extra):
    r, j = scrub_json(["--inject-nonzero"] + extra + [ADDR], libdir=fakecuda)
    assert r.returncode == NONZERO, (r.stdout, r.stderr)
    assert j["nonzero"]["offset"] == j["injected_offset"] and j["nonzero"]["count"] == 1


def test_pattern_self_test(fakecuda, log):
    """--pattern: the memory is filled with a non-zero pattern, the pattern is
    read back, then scrubbed and verified: pass."""
    r, j = scrub_json(["--pattern", ADDR], {"FAKECUDA_RESIDUE": "0", "FAKECUDA_LOG": str(log)}, fakecuda)
    assert r.returncode == PASS, (r.stdout, r.stderr)
    assert j["pattern"] is True and j["pattern_bytes_checked"] == MiB
    _, frees, _ = read_log(log)
    assert frees and all(nz == 0 for _, nz in frees)


def test_pattern_self_test_fails_when_writes_do_not_land(fakecuda):
    r, j = scrub_json(["--pattern", ADDR], {"FAKECUDA_MEMSET_NOOP": "1", "FAKECUDA_RESIDUE": "0"},
                      fakecuda)
    assert r.returncode == SELFTEST, (r.stdout, r.stderr)
    assert "read-back path cannot be trusted" in j["reason"]


def test_allocation_failures_halve_the_chunk(fakecuda, log):
    """Largest allocation the double grants: 4 MiB. From 16 MiB the scrub
    halves to 8 then 4, takes 4 MiB chunks while they come, then 2 MiB for
    the rest, and still covers all the free memory."""
    r, j = scrub_json(["--chunk-mb", "16", ADDR], {"FAKECUDA_MAX_ALLOC_MB": "4", "FAKECUDA_LOG": str(log)},
                      fakecuda)
    assert r.returncode == PASS, (r.stdout, r.stderr)
    allocs, frees, _ = read_log(log)
    sizes = [n for n, _ in allocs]
    assert sizes[:3] == [16 * MiB, 8 * MiB, 4 * MiB]
    assert allocs[:3] == [(16 * MiB, 2), (8 * MiB, 2), (4 * MiB, 0)]
    assert sizes == sorted(sizes, reverse=True), "the request never grows"
    for (a, ra), (b, _) in zip(allocs, allocs[1:]):
        assert b == a or (ra == 2 and b == a // 2), "it shrinks only by halving after an OOM"
    assert j["chunk_first_bytes"] == 16 * MiB and j["chunk_smallest_bytes"] == 2 * MiB
    assert j["oom_retries"] == sum(1 for _, res in allocs if res == 2)
    assert j["bytes_allocated"] == 62 * MiB and j["chunks"] == 16
    assert all(nz == 0 for _, nz in frees)


def test_low_coverage_fails(fakecuda, log):
    """64 MiB reported free, 40 MiB really allocatable: 62.5% < 95%, exit 5;
    what it did get is still zeroed and verified."""
    env = {"FAKECUDA_FREE_MB": "64", "FAKECUDA_TOTAL_MB": "80", "FAKECUDA_ALLOCATABLE_MB": "40",
           "FAKECUDA_LOG": str(log)}
    r, j = scrub_json([ADDR], env, fakecuda)
    assert r.returncode == LOW_COVERAGE, (r.stdout, r.stderr)
    assert j["bytes_allocated"] == 40 * MiB and j["coverage"] == pytest.approx(0.625)
    assert "below the 95.00% required" in j["reason"]
    assert j["bytes_verified"] == 40 * MiB and "nonzero" not in j
    _, frees, _ = read_log(log)
    assert all(nz == 0 for _, nz in frees)
    r2, j2 = scrub_json(["--min-coverage", "0.6", ADDR], env, fakecuda)
    assert r2.returncode == PASS and j2["min_coverage"] == 0.6


def test_nothing_allocatable_is_low_coverage(fakecuda):
    r, j = scrub_json([ADDR], {"FAKECUDA_ALLOCATABLE_MB": "1"}, fakecuda)
    assert r.returncode == LOW_COVERAGE and "no allocation of 2097152 bytes or more" in j["reason"]


def test_verify_fraction_reads_an_even_deterministic_share(fakecuda):
    a = scrub_json(["--verify-fraction", "0.25", ADDR], libdir=fakecuda)[1]
    b = scrub_json(["--verify-fraction", "0.25", ADDR], libdir=fakecuda)[1]
    assert a["bytes_verified"] == b["bytes_verified"] == 16 * MiB   # ceil(62 * 0.25) stripes
    assert a["bytes_zeroed"] == 62 * MiB, "all of it is zeroed whatever the share read"


def test_verify_fraction_still_finds_residue(fakecuda):
    r, j = scrub_json(["--verify-fraction", "0.01", ADDR], {"FAKECUDA_MEMSET_NOOP": "1"}, fakecuda)
    assert r.returncode == NONZERO and j["nonzero"]["offset"] == 0


def test_device_not_found(fakecuda):
    r, j = scrub_json(["0000:3c:00.0"], libdir=fakecuda)
    assert r.returncode == NO_DEVICE, (r.stdout, r.stderr)
    assert "no CUDA device at 0000:3c:00.0" in j["reason"] and "0000:3B:00.0" in j["reason"]
    r, j = scrub_json([ADDR], {"FAKECUDA_INIT_RESULT": "100"}, fakecuda)
    assert r.returncode == NO_DEVICE and "CUDA_ERROR_NO_DEVICE" in j["reason"]


def test_eight_digit_domain_is_accepted(fakecuda):
    r, _ = scrub_json(["00000000:3B:00.0"], libdir=fakecuda)
    assert r.returncode == PASS, (r.stdout, r.stderr)


@pytest.mark.parametrize("call,after,where", [
    ("cuMemcpyDtoH_v2", 1, "cuMemcpyDtoH_v2 failed"),        # the first read-back
    ("cuMemsetD32_v2", 2, "cuMemsetD8_v2/D32_v2 failed"),    # zeroing the second chunk
    ("cuCtxSynchronize", 1, "cuCtxSynchronize failed"),      # after the zeroing
    ("cuMemAlloc_v2", 3, "cuMemAlloc_v2 failed"),            # third chunk, two held
    ("cuMemsetD32_v2", 0, "cuMemsetD32_v2 (warm-up) failed"),
])
def test_cuda_error_is_named_and_memory_freed(fakecuda, log, call, after, where):
    r, j = scrub_json([ADDR], {"FAKECUDA_FAIL_CALL": call, "FAKECUDA_FAIL_AFTER": str(after),
                               "FAKECUDA_LOG": str(log)}, fakecuda)
    assert r.returncode == CUDA_ERROR, (r.stdout, r.stderr)
    assert j["cuda_error"] == "CUDA_ERROR_ILLEGAL_ADDRESS"
    assert f"{where}: CUDA_ERROR_ILLEGAL_ADDRESS (700: an illegal memory access was encountered)" in r.stderr
    allocs, frees, destroys = read_log(log, warm_up=False)
    assert len(frees) == sum(1 for _, res in allocs if res == 0), "every allocation freed"
    assert destroys == [0], "before the context goes"


def test_cuinit_failure_is_a_cuda_error(fakecuda):
    r, j = scrub_json([ADDR], {"FAKECUDA_INIT_RESULT": "999"}, fakecuda)
    assert r.returncode == CUDA_ERROR and j["cuda_error"] == "CUDA_ERROR_UNKNOWN"


# ---- gpuwarden-nvidia-health against a fake nvidia-smi --------------------

FAKE_NVIDIA_SMI = r"""#!/bin/sh
# FAKE nvidia-smi for tests/python/test_nvidia_profile.py: answers
# --query-gpu and --query-remapped-rows for one GPU from $FAKE_SMI_DIR/values
# (name<TAB>value, in nvidia-smi's CSV value formats); a field missing there
# is refused the way nvidia-smi refuses a field it does not know.
d=${FAKE_SMI_DIR:?}
printf '%s\n' "$*" >>"$d/argv.log"
id="" q="" kind="" next=""
for a in "$@"; do
    if [ "$next" = id ]; then id=$a; next=""; continue; fi
    case $a in
        -i) next=id ;;
        --id=*) id=${a#*=} ;;
        --query-gpu=*) kind=gpu; q=${a#*=} ;;
        --query-remapped-rows=*) kind=remap; q=${a#*=} ;;
    esac
done
if [ -f "$d/broken" ]; then cat "$d/broken"; exit 15; fi
if [ "$kind" = remap ] && [ -f "$d/remap_unsupported" ]; then
    echo "This operation is not supported on this GPU." >&2; exit 3
fi
bus=$(awk -F'\t' '$1 == "pci.bus_id" { print $2 }' "$d/values")
norm() { printf '%s\n' "$1" | tr 'A-F' 'a-f' | awk -F: '{ d = $1; while (length(d) > 4 && substr(d, 1, 1) == "0") d = substr(d, 2); print d ":" $2 ":" $3 }'; }
if [ -n "$id" ] && [ "$(norm "$id")" != "$(norm "$bus")" ]; then
    echo "No devices were found"; exit 6
fi
out=""
for f in $(printf '%s\n' "$q" | tr ',' ' '); do
    [ "$f" = gpu_bus_id ] && f=pci.bus_id
    if ! grep -q "^$f	" "$d/values"; then
        echo "Field \"$f\" is not a valid field to query."; exit 2
    fi
    v=$(awk -F'\t' -v k="$f" '$1 == k { print $2; exit }' "$d/values")
    out="${out:+$out, }$v"
done
printf '%s\n' "$out"
"""

FAKE_DMESG = """#!/bin/sh
[ -f "$FAKE_SMI_DIR/dmesg_refused" ] && { echo "dmesg: read kernel buffer failed: Operation not permitted" >&2; exit 1; }
cat "$FAKE_SMI_DIR/kernel.log"
"""

FAKE_JOURNALCTL = """#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_SMI_DIR/journalctl.argv"
sed 's/^\\(\\[[ 0-9.]*\\]\\) /\\1 host kernel: /' "$FAKE_SMI_DIR/kernel.log"
"""

FAKE_DCGMI = """#!/bin/sh
case $1 in
discovery)
    echo "1 GPU found."
    echo "+--------+----------------------------------------------------------------------+"
    echo "| GPU ID | Device Information                                                   |"
    echo "+--------+----------------------------------------------------------------------+"
    echo "| 0      | Name: NVIDIA H100 80GB HBM3                                          |"
    echo "|        | PCI Bus ID: 00000000:3B:00.0                                         |"
    echo "+--------+----------------------------------------------------------------------+"
    ;;
diag)
    printf '%s\\n' "$*" >"$FAKE_SMI_DIR/dcgmi.argv"
    echo "| Deployment                | $(cat "$FAKE_SMI_DIR/dcgm_result")  |"
    [ "$(cat "$FAKE_SMI_DIR/dcgm_result")" = Pass ]
    ;;
esac
"""

# One GPU's values as nvidia-smi prints them with --format=csv,noheader,nounits
# (representative values of a healthy data-centre GPU with ECC on; written
# for this test, not captured from hardware: none is available here).
HEALTHY = {
    "pci.bus_id": "00000000:3B:00.0",
    "name": "NVIDIA H100 80GB HBM3",
    "ecc.mode.current": "Enabled",
    "ecc.mode.pending": "Enabled",
    "ecc.errors.corrected.volatile.total": "0",
    "ecc.errors.uncorrected.volatile.total": "0",
    "ecc.errors.uncorrected.aggregate.total": "0",
    "retired_pages.pending": "No",
    "remapped_rows.correctable": "0",
    "remapped_rows.uncorrectable": "0",
    "remapped_rows.pending": "No",
    "remapped_rows.failure": "No",
}


def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Smi:
    """A fake nvidia-smi (and dmesg, journalctl, dcgmi) in a bin directory."""

    def __init__(self, tmp):
        self.dir = tmp / "smi"
        self.bin = tmp / "bin"
        self.state = tmp / "state"
        self.dir.mkdir()
        self.bin.mkdir()
        _exe(self.bin / "nvidia-smi", FAKE_NVIDIA_SMI)
        _exe(self.bin / "dmesg", FAKE_DMESG)
        _exe(self.bin / "journalctl", FAKE_JOURNALCTL)
        self.set()
        (self.dir / "kernel.log").write_text("")

    def set(self, drop=(), **over):
        vals = dict(HEALTHY)
        vals.update({k.replace("__", "."): v for k, v in over.items()})
        for k in drop:
            vals.pop(k)
        (self.dir / "values").write_text("".join(f"{k}\t{v}\n" for k, v in vals.items()))

    def with_dcgmi(self, result):
        _exe(self.bin / "dcgmi", FAKE_DCGMI)
        (self.dir / "dcgm_result").write_text(result)

    def run(self, *args, env_extra=None):
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_SMI_DIR": str(self.dir),
               "GW_NVIDIA_HEALTH_STATE_DIR": str(self.state), "LC_ALL": "C"}
        env.update(env_extra or {})
        return subprocess.run(["/bin/sh", str(HEALTH_SRC)] + list(args), env=env, capture_output=True,
                              text=True, timeout=60)


@pytest.fixture
def smi(tmp_path):
    return Smi(tmp_path)


def _last(r):
    return r.stdout.strip().splitlines()[-1]


def test_health_script_is_posix_sh_and_built_into_the_build_dir():
    assert subprocess.run(["/bin/sh", "-n", str(HEALTH_SRC)]).returncode == 0
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(HEALTH_SRC)]).returncode == 0
    assert HEALTH_SRC.read_text().startswith("#!/bin/sh\n")
    assert os.access(HEALTH_SRC, os.X_OK)
    copy = BUILD / "gpuwarden-nvidia-health"
    assert copy.exists() and copy.read_text() == HEALTH_SRC.read_text()


def test_healthy_gpu_passes(smi):
    r = smi.run(ADDR)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert _last(r) == f"gpuwarden-nvidia-health {ADDR}: pass (5 ok, 0 not available)"
    out = r.stdout
    assert "NVIDIA H100 80GB HBM3" in out
    for f in ("ecc.errors.uncorrected.volatile.total = 0: ok", "ecc.errors.uncorrected.aggregate.total = 0: ok",
              "retired_pages.pending = No: ok", "remapped_rows.pending = No: ok",
              "remapped_rows.failure = No: ok", "ecc.mode.current = Enabled"):
        assert f in out, out
    assert "xid: not checked" in out
    argv = (smi.dir / "argv.log").read_text().splitlines()
    assert all(a.startswith(f"-i {ADDR} --query-") for a in argv), argv
    assert any("--query-remapped-rows=" in a for a in argv)


@pytest.mark.parametrize("field,value,why", [
    ("retired_pages.pending", "Yes", "a retired page is pending"),
    ("remapped_rows.failure", "Yes", "a row remapping failed"),
    ("remapped_rows.pending", "Yes", "a row remapping is pending"),
    ("remapped_rows.pending", "1", "a row remapping is pending"),
    ("ecc.errors.uncorrected.volatile.total", "2", "uncorrected ECC errors since the driver loaded"),
    ("ecc.errors.uncorrected.volatile.total", "[Unknown Error]", "unrecognised value"),
    ("remapped_rows.failure", "[GPU requires reset]", "unrecognised value"),
])
def test_failing_value_fails_naming_the_field(smi, field, value, why):
    smi.set(**{field.replace(".", "__"): value})
    r = smi.run(ADDR)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert _last(r).startswith(f"gpuwarden-nvidia-health {ADDR}: fail: {field} = {value} (")
    assert why in _last(r)
    assert f"{field} = {value}" in r.stderr


def test_not_available_is_not_a_failure(smi):
    """A GPU without ECC or without the row remapper prints [N/A]."""
    smi.set(ecc__mode__current="[N/A]", ecc__mode__pending="[N/A]",
            ecc__errors__corrected__volatile__total="[N/A]",
            ecc__errors__uncorrected__volatile__total="[N/A]",
            ecc__errors__uncorrected__aggregate__total="[N/A]", retired_pages__pending="[N/A]",
            remapped_rows__correctable="[N/A]", remapped_rows__uncorrectable="[N/A]",
            remapped_rows__pending="[N/A]", remapped_rows__failure="[Not Supported]")
    r = smi.run(ADDR)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "retired_pages.pending = [N/A]: not available" in r.stdout
    assert "remapped_rows.failure = [Not Supported]: not available" in r.stdout
    assert _last(r) == f"gpuwarden-nvidia-health {ADDR}: pass (0 ok, 8 not available)"


def test_remapped_rows_query_unsupported_is_not_available(smi):
    (smi.dir / "remap_unsupported").write_text("")
    r = smi.run(ADDR)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "remapped_rows.pending = [N/A]: not available (nvidia-smi --query-remapped-rows: This operation is not supported" in r.stdout


def test_older_nvidia_smi_refusing_a_field_is_asked_field_by_field(smi):
    smi.set(drop=("retired_pages.pending",), ecc__errors__uncorrected__volatile__total="1")
    r = smi.run(ADDR)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "retired_pages.pending = [refused: Field \"retired_pages.pending\" is not a valid field to query.]: not available" in r.stdout
    assert "ecc.errors.uncorrected.volatile.total = 1: FAIL" in r.stdout


def test_aggregate_is_judged_against_the_last_check(smi):
    smi.set(ecc__errors__uncorrected__aggregate__total="3")
    r = smi.run(ADDR)
    assert r.returncode == 1 and "no earlier check recorded" in _last(r)
    assert (smi.state / "0000:3b:00.0.ecc_uncorrected_aggregate").read_text() == "3\n"
    r = smi.run(ADDR)
    assert r.returncode == 0, r.stdout
    assert "ecc.errors.uncorrected.aggregate.total = 3: ok (last check: 3)" in r.stdout
    smi.set(ecc__errors__uncorrected__aggregate__total="4")
    r = smi.run(ADDR)
    assert r.returncode == 1 and "ecc.errors.uncorrected.aggregate.total = 4 (up from 3 at the last check)" in _last(r)


def test_require_ecc(smi):
    smi.set(ecc__mode__pending="Disabled")
    r = smi.run(ADDR)
    assert r.returncode == 0 and "note: ECC mode changes to Disabled at the next GPU reset" in r.stdout
    r = smi.run("--require-ecc", ADDR)
    assert r.returncode == 1 and "ecc.mode.pending = Disabled (ECC must be Enabled" in _last(r)


def test_nvidia_smi_missing_or_unable(smi, tmp_path):
    r = smi.run(ADDR, env_extra={"NVIDIA_SMI": str(tmp_path / "no" / "nvidia-smi")})
    assert r.returncode == 3 and "nvidia-smi) are not installed" in r.stdout
    r = smi.run("0000:3c:00.0")
    assert r.returncode == 3 and "No devices were found" in r.stdout
    (smi.dir / "broken").write_text("Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error\n")
    r = smi.run(ADDR)
    assert r.returncode == 3 and "Unknown Error" in r.stderr


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], ["3b:00.0"], ["--bogus", ADDR], [ADDR, ADDR],
                                  ["--xid-fail", "7x", ADDR]])
def test_health_usage_exits_2(smi, args):
    r = smi.run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage: gpuwarden-nvidia-health" in r.stdout + r.stderr


KLOG = """\
[    4.100000] nvidia 0000:3b:00.0: enabling device (0000 -> 0003)
[  120.500000] NVRM: Xid (PCI:0000:5e:00): 79, pid=1234, name=python, GPU has fallen off the bus.
[  130.250000] NVRM: Xid (PCI:0000:3b:00): 13, pid=2201, name=a.out, Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address
"""


def test_xid_in_the_fail_list_fails_then_counts_once(smi):
    (smi.dir / "kernel.log").write_text(
        KLOG + "[  140.000000] NVRM: Xid (PCI:0000:3b:00): 79, pid=2201, name=a.out, GPU has fallen off the bus.\n")
    r = smi.run("--xid", ADDR)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "xid 79 = [140.000000] 79, pid=2201" in _last(r) and "fail list" in _last(r)
    assert "xid 13 = [130.250000]" in r.stdout and "not in the fail list" in r.stdout
    assert "0000:5e:00" not in r.stdout, "another GPU's Xid is not this one's"
    r = smi.run("--xid", ADDR)
    assert r.returncode == 0, "judged once: the mark moved past it"
    assert "xid = none: ok (from dmesg after [140.000000], 2 older ones of this GPU before the mark)" in r.stdout


def test_xid_not_in_the_fail_list_passes(smi):
    (smi.dir / "kernel.log").write_text(KLOG)
    r = smi.run("--xid", ADDR)
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = smi.run("--xid", "--xid-fail", "13,79", ADDR)
    assert r.returncode == 0, "already behind the mark"
    (smi.state / "0000:3b:00.0.xid_mark").unlink()
    r = smi.run("--xid", "--xid-fail", "13,79", ADDR)
    assert r.returncode == 1 and "xid 13" in _last(r)


def test_xid_from_the_journal_when_dmesg_is_refused(smi):
    (smi.dir / "kernel.log").write_text(
        "[  200.000000] NVRM: Xid (0000:3b:00): 48, An uncorrectable double bit error (DBE) has been detected on GPU (0x...)\n")
    (smi.dir / "dmesg_refused").write_text("")
    r = smi.run("--xid", ADDR)
    assert r.returncode == 1 and "xid 48" in _last(r)
    assert "-k -b -o short-monotonic" in (smi.dir / "journalctl.argv").read_text()


def test_dcgm(smi):
    r = smi.run("--dcgm", ADDR)
    assert r.returncode == 0 and "dcgm = dcgmi not installed: not available" in r.stdout
    smi.with_dcgmi("Pass")
    r = smi.run("--dcgm", ADDR)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (smi.dir / "dcgmi.argv").read_text().split() == ["diag", "-r", "1", "-i", "0"]
    smi.with_dcgmi("Fail")
    r = smi.run("--dcgm", ADDR)
    assert r.returncode == 1 and "dcgm = diag -r 1 on GPU 0" in _last(r)


def test_installed_with_the_package(tmp_path):
    """cmake --install (component nvidia, part of the Debian package) puts
    both programs in libexec/gpuwarden."""
    prefix = tmp_path / "prefix"
    r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(prefix), "--component", "nvidia"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("gpuwarden-cuda-scrub", "gpuwarden-nvidia-health"):
        p = prefix / "libexec" / "gpuwarden" / name
        assert p.exists() and os.access(p, os.X_OK), p
