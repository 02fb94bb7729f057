/* SPDX-License-Identifier: Apache-2.0 */
/* The process-wide libvirt event loop thread. libvirt has one default event
 * implementation per process; every watcher shares this one thread, which
 * runs only while somebody holds a reference. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "attach_internal.h"
#include "util.h"

static pthread_mutex_t loop_lock = PTHREAD_MUTEX_INITIALIZER;
static bool impl_registered;
static unsigned int loop_users;
static pthread_t loop_thread;
static atomic_bool loop_quit;

/* libvirt's default handler prints every error on stderr, including each
 * failed reconnect attempt; callers report what matters themselves. */
static void virt_error_to_log(void *userdata, virErrorPtr err)
{
    if (err && err->message)
        gw_log(GW_LOG_DEBUG, "libvirt: %s", err->message);
}

static void *loop_main(void *arg)
{
    while (!atomic_load(&loop_quit)) {
        if (sym_virEventRunDefaultImpl() < 0) {
            gw_log(GW_LOG_ERR, "libvirt event loop: %s", sym_virGetLastErrorMessage());
            usleep(100 * 1000);     /* never spin on a persistent failure */
        }
    }
    return NULL;
}

/* Fires once, right after being added: its only job is to wake poll(). */
static void wake_once(int timer, void *opaque)
{
    sym_virEventRemoveTimeout(timer);
}

int gw_virt_loop_acquire(void)
{
    int r = gw_libvirt_dlopen();
    if (r < 0)
        return r;
    pthread_mutex_lock(&loop_lock);
    if (!impl_registered) {
        if (sym_virInitialize() < 0 || sym_virEventRegisterDefaultImpl() < 0) {
            r = gw_error_set(-EIO, "libvirt: cannot register the default event loop: %s",
                             sym_virGetLastErrorMessage());
            goto out;
        }
        sym_virSetErrorFunc(NULL, virt_error_to_log);
        impl_registered = true;
    }
    if (loop_users == 0) {
        atomic_store(&loop_quit, false);
        int e = pthread_create(&loop_thread, NULL, loop_main, NULL);
        if (e) {
            r = gw_error_set(-e, "libvirt event loop: cannot start its thread: %s", strerror(e));
            goto out;
        }
    }
    loop_users++;
out:
    pthread_mutex_unlock(&loop_lock);
    return r;
}

void gw_virt_loop_release(void)
{
    pthread_mutex_lock(&loop_lock);
    if (loop_users > 0 && --loop_users == 0) {
        atomic_store(&loop_quit, true);
        /* Adding a timeout interrupts the poll the loop sleeps in. */
        if (sym_virEventAddTimeout(0, wake_once, NULL, NULL) < 0)
            gw_log(GW_LOG_ERR, "libvirt event loop: cannot wake it to stop: %s",
                   sym_virGetLastErrorMessage());
        pthread_join(loop_thread, NULL);
    }
    pthread_mutex_unlock(&loop_lock);
}
