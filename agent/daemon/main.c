/* gpuwardend: the per-host daemon. Reads as: load config, open state, bind the
 * endpoints, tell systemd we are ready, serve until SIGTERM, persist, exit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon.h"
#include "endpoint.h"
#include "util.h"

static int log_level_from_name(const char *name)
{
    static const struct { const char *name; int prio; } levels[] = {
        { "err", GW_LOG_ERR }, { "warning", GW_LOG_WARNING }, { "notice", GW_LOG_NOTICE },
        { "info", GW_LOG_INFO }, { "debug", GW_LOG_DEBUG },
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(levels[i].name, name))
            return levels[i].prio;
    return -1;
}

void gwd_event_queue(gwd *d, char *topic, void *body, size_t len)
{
    gwd_event *ev = gw_xcalloc(1, sizeof *ev);
    ev->topic = topic;
    ev->body = body;
    ev->len = len;
    pthread_mutex_lock(&d->event_lock);
    if (d->event_tail)
        d->event_tail->next = ev;
    else
        d->event_head = ev;
    d->event_tail = ev;
    pthread_mutex_unlock(&d->event_lock);
    uint64_t one = 1;
    if (write(d->wake_fd, &one, sizeof one) < 0)
        gw_log(GW_LOG_WARNING, "event wake-up: %s", strerror(errno));
}

static void publish_queued(gwd *d)
{
    uint64_t n;
    if (read(d->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        gw_log(GW_LOG_WARNING, "eventfd: %s", strerror(errno));
    pthread_mutex_lock(&d->event_lock);
    gwd_event *ev = d->event_head;
    d->event_head = d->event_tail = NULL;
    pthread_mutex_unlock(&d->event_lock);
    while (ev) {
        gwd_event *next = ev->next;
        if (d->pub_sock) {
            zmq_send(d->pub_sock, ev->topic, strlen(ev->topic), ZMQ_SNDMORE);
            zmq_send(d->pub_sock, ev->body, ev->len, 0);
        }
        free(ev->topic);
        free(ev->body);
        free(ev);
        ev = next;
    }
}

static int setup_signals(gwd *d)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    /* Blocked before any thread starts, so workers inherit the mask and every
     * signal arrives through the signalfd on the main loop. */
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return d->signal_fd < 0 ? -errno : 0;
}

static void handle_signal(gwd *d)
{
    struct signalfd_siginfo si;
    while (read(d->signal_fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            if (gwd_config_reload(&d->cfg) == 0)
                gw_log(GW_LOG_NOTICE, "configuration reloaded from %s",
                       d->cfg.config_file ? d->cfg.config_file : "(flags only)");
            else
                gw_log(GW_LOG_ERR, "configuration reload failed; keeping the running configuration");
            sd_notify(0, "READY=1");
        } else {
            gw_log(GW_LOG_NOTICE, "signal %u: shutting down", si.ssi_signo);
            d->stopping = true;
        }
    }
}

int main(int argc, char **argv)
{
    gwd d = { .signal_fd = -1, .wake_fd = -1 };
    pthread_mutex_init(&d.event_lock, NULL);
    int rc = gwd_config_load(&d.cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : 2;
    int level = log_level_from_name(d.cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "gpuwardend: unknown log level '%s'\n", d.cfg.log_level);
        return 2;
    }
    gw_log_set_level(level);

    if (setup_signals(&d) < 0) {
        gw_log(GW_LOG_ERR, "signal setup: %s", strerror(errno));
        return 1;
    }
    d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    d.zctx = zmq_ctx_new();
    d.admin_sock = gwd_endpoint_bind(d.zctx, ZMQ_ROUTER, d.cfg.admin_endpoint, 0600, NULL,
                                     d.cfg.curve_secret_key, d.cfg.max_message_bytes);
    d.read_sock = gwd_endpoint_bind(d.zctx, ZMQ_ROUTER, d.cfg.read_endpoint, 0660, d.cfg.read_group,
                                    d.cfg.curve_secret_key, d.cfg.max_message_bytes);
    d.pub_sock = gwd_endpoint_bind(d.zctx, ZMQ_PUB, d.cfg.events_endpoint, 0660, d.cfg.read_group,
                                   d.cfg.curve_secret_key, d.cfg.max_message_bytes);
    if (!d.admin_sock || !d.read_sock || !d.pub_sock || d.wake_fd < 0) {
        rc = 1;
        goto out;
    }
    gw_log(GW_LOG_INFO, "serving admin %s, read %s, events %s", d.cfg.admin_endpoint, d.cfg.read_endpoint,
           d.cfg.events_endpoint);
    sd_notify(0, "READY=1\nSTATUS=serving");

    while (!d.stopping) {
        zmq_pollitem_t items[] = {
            { d.admin_sock, 0, ZMQ_POLLIN, 0 },
            { d.read_sock, 0, ZMQ_POLLIN, 0 },
            { NULL, d.signal_fd, ZMQ_POLLIN, 0 },
            { NULL, d.wake_fd, ZMQ_POLLIN, 0 },
        };
        if (zmq_poll(items, 4, 1000) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            gw_log(GW_LOG_ERR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            rc = 1;
            break;
        }
        if (items[2].revents)
            handle_signal(&d);
        if (items[3].revents)
            publish_queued(&d);
    }
    sd_notify(0, "STOPPING=1");
out:
    publish_queued(&d);
    if (d.admin_sock)
        zmq_close(d.admin_sock);
    if (d.read_sock)
        zmq_close(d.read_sock);
    if (d.pub_sock)
        zmq_close(d.pub_sock);
    if (d.zctx)
        zmq_ctx_term(d.zctx);
    if (d.wake_fd >= 0)
        close(d.wake_fd);
    if (d.signal_fd >= 0)
        close(d.signal_fd);
    gwd_config_free(&d.cfg);
    return rc;
}
