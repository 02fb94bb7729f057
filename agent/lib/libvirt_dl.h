/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libvirt, loaded on first use instead of linked (the way systemd loads its
 * optional libraries: src/shared/dlfcn-util.h). libvirt maps about sixty
 * shared libraries (glib, gnutls, krb5, curl, ICU...) into every process that
 * links it; only the attachment watcher needs it, so libgpuwarden does not
 * link it and `gpuwarden discover` starts without it.
 *
 * libvirt's headers still give the types: each sym_virXxx is a pointer of
 * type typeof(&virXxx), so every call through it is checked against
 * libvirt's own prototype. The attachment code (attach_libvirt.c,
 * attach_loop.c) calls only these, after gw_libvirt_dlopen() succeeded.
 */
#ifndef GW_LIBVIRT_DL_H
#define GW_LIBVIRT_DL_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define GW_LIBVIRT_SONAME "libvirt.so.0"

/* Every libvirt function gpuwarden calls. */
#define GW_LIBVIRT_SYMBOLS(X)                   \
    X(virConnectClose)                          \
    X(virConnectDomainEventDeregisterAny)       \
    X(virConnectDomainEventRegisterAny)         \
    X(virConnectIsAlive)                        \
    X(virConnectListAllDomains)                 \
    X(virConnectOpen)                           \
    X(virConnectOpenReadOnly)                   \
    X(virConnectRef)                            \
    X(virConnectRegisterCloseCallback)          \
    X(virConnectUnregisterCloseCallback)        \
    X(virDomainFree)                            \
    X(virDomainGetName)                         \
    X(virDomainGetUUIDString)                   \
    X(virDomainGetXMLDesc)                      \
    X(virDomainIsActive)                        \
    X(virDomainIsPersistent)                    \
    X(virDomainLookupByUUIDString)              \
    X(virEventAddTimeout)                       \
    X(virEventRegisterDefaultImpl)              \
    X(virEventRemoveTimeout)                    \
    X(virEventRunDefaultImpl)                   \
    X(virGetLastErrorCode)                      \
    X(virGetLastErrorMessage)                   \
    X(virInitialize)                            \
    X(virSetErrorFunc)

#define GW_LIBVIRT_DECLARE_SYM(name) extern __typeof__(&name) sym_##name;
GW_LIBVIRT_SYMBOLS(GW_LIBVIRT_DECLARE_SYM)
#undef GW_LIBVIRT_DECLARE_SYM

/*
 * Load libvirt.so.0 and resolve every symbol above, once per process
 * (thread-safe); later calls return the first call's result. 0, or
 * -EOPNOTSUPP when the library cannot be loaded (not installed) and
 * -ELIBBAD when it lacks a symbol, with gw_error_message() naming the
 * library and dlerror()'s reason. The sym_ pointers are set only on success.
 */
int gw_libvirt_dlopen(void);

/* For tests: the same from another file name, without the once and without
 * setting the sym_ pointers (they are published only by gw_libvirt_dlopen). */
int gw_libvirt_dlopen_check(const char *soname);

#endif
