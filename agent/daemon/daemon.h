/* gpuwardend's shared context. One main thread owns every ZeroMQ socket (they
 * are not thread-safe); clean-up workers and the libvirt thread hand events to
 * it through a locked queue and an eventfd that wakes its poll loop. */
#ifndef GWD_DAEMON_H
#define GWD_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct gwd_event {
    struct gwd_event *next;
    char *topic;
    void *body;         /* encoded msgpack */
    size_t len;
} gwd_event;

typedef struct gwd {
    gwd_config cfg;
    void *zctx;
    void *admin_sock, *read_sock, *pub_sock;
    int signal_fd;
    int wake_fd;                    /* eventfd: events queued */
    pthread_mutex_t event_lock;
    gwd_event *event_head, *event_tail;
    volatile bool stopping;
} gwd;

/* Queue an event for the PUB socket; callable from any thread. Takes
 * ownership of topic and body. */
void gwd_event_queue(gwd *d, char *topic, void *body, size_t len);

#endif
