/* SPDX-License-Identifier: Apache-2.0 */
/* libvirt loaded on first use (libvirt_dl.h). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "libvirt_dl.h"
#include "util.h"

#define GW_LIBVIRT_DEFINE_SYM(name) __typeof__(&name) sym_##name;
GW_LIBVIRT_SYMBOLS(GW_LIBVIRT_DEFINE_SYM)
#undef GW_LIBVIRT_DEFINE_SYM

#define GW_LIBVIRT_NAME(name) #name,
static const char *const sym_names[] = { GW_LIBVIRT_SYMBOLS(GW_LIBVIRT_NAME) };
#undef GW_LIBVIRT_NAME
#define GW_LIBVIRT_SLOT(name) (void **)&sym_##name,
static void **const sym_slots[] = { GW_LIBVIRT_SYMBOLS(GW_LIBVIRT_SLOT) };
#undef GW_LIBVIRT_SLOT
#define N_SYMS (sizeof sym_names / sizeof sym_names[0])

/*
 * The dlopen() metadata of https://systemd.io/ELF_DLOPEN_METADATA/: a
 * .note.dlopen ELF note (owner "FDO", type 0x407c0c0a) whose descriptor is a
 * JSON array of what the object may dlopen(), so that packaging tools and
 * `systemd-analyze dlopen-metadata` see the dependency a DT_NEEDED no longer
 * shows. "recommended": the library works without it, only the attachment
 * watcher (and so gpuwardend's) needs it.
 */
#define GW_DLOPEN_NOTE_JSON                                                              \
    "[{\"feature\":\"libvirt\",\"description\":\"libvirt attachment watcher (which VM "  \
    "uses which GPU)\",\"priority\":\"recommended\",\"soname\":[\"" GW_LIBVIRT_SONAME "\"]}]"

__attribute__((used, section(".note.dlopen"), aligned(4))) static const struct {
    struct {
        uint32_t n_namesz, n_descsz, n_type;
    } nhdr;
    char name[sizeof "FDO"];
    _Alignas(4) char json[sizeof GW_DLOPEN_NOTE_JSON];
} gw_dlopen_note = {
    .nhdr = { .n_namesz = sizeof "FDO", .n_descsz = sizeof GW_DLOPEN_NOTE_JSON, .n_type = 0x407c0c0aU },
    .name = "FDO",
    .json = GW_DLOPEN_NOTE_JSON,
};

/* Resolve every symbol of `soname` into found[]; 0, or a negative errno with
 * the reason in msg. The handle stays open on success (RTLD_NODELETE: libvirt
 * starts threads and registers atfork handlers, it is never unloaded). */
static int load(const char *soname, void *found[N_SYMS], char *msg, size_t msglen)
{
    void *dl = dlopen(soname, RTLD_NOW | RTLD_NODELETE);
    if (!dl) {
        const char *why = dlerror();
        snprintf(msg, msglen,
                 "libvirt: cannot load %s, the libvirt attachment watcher is unavailable "
                 "(install libvirt0): %s", soname, why ? why : "unknown error");
        return -EOPNOTSUPP;
    }
    for (size_t i = 0; i < N_SYMS; i++) {
        dlerror();
        found[i] = dlsym(dl, sym_names[i]);
        if (!found[i]) {
            const char *why = dlerror();
            snprintf(msg, msglen, "libvirt: %s has no symbol %s (libvirt too old?): %s", soname,
                     sym_names[i], why ? why : "it is NULL");
            dlclose(dl);
            return -ELIBBAD;
        }
    }
    return 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_result;
static char once_msg[512];

static void load_once(void)
{
    void *found[N_SYMS];
    once_result = load(GW_LIBVIRT_SONAME, found, once_msg, sizeof once_msg);
    if (once_result == 0)
        for (size_t i = 0; i < N_SYMS; i++)
            *sym_slots[i] = found[i];
}

int gw_libvirt_dlopen(void)
{
    pthread_once(&once, load_once);
    return once_result < 0 ? gw_error_set(once_result, "%s", once_msg) : 0;
}

int gw_libvirt_dlopen_check(const char *soname)
{
    void *found[N_SYMS];
    char msg[512];
    int r = load(soname, found, msg, sizeof msg);
    return r < 0 ? gw_error_set(r, "%s", msg) : 0;
}
