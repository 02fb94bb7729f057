/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend's main loop and the services the rest of the daemon calls back
 * into: the clocks, waking the loop from any thread, the event queue and its
 * publication on the PUB socket, signals (SIGHUP's live reload, the shutdown
 * signals), the rescan timer and the serving loop itself (gwd_loop_run()).
 * main.c only starts and stops things. */
#include <errno.h>
#include <msgpack.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon.h"
#include "proto_codec.h"
#include "util.h"
#include "zap.h"

int64_t gwd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gwd_wake_replies(gwd *d)
{
    uint64_t one = 1;
    if (write(d->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        gw_log(GW_LOG_WARNING, "wake-up: %s", strerror(errno));
}

void gwd_wake(gwd *d)
{
    /* Before the write: the loop that reads the wake-up sees the flag. */
    atomic_store(&d->kick_due, true);
    gwd_wake_replies(d);
}

void gwd_event_publish(gwd *d, const char *kind, const char *address, gwd_event_builder build, void *userdata)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gwd_event *ev = gw_xcalloc(1, sizeof *ev);
    ev->topic = gw_proto_event_topic(kind, address);
    /* The seq is taken and the event queued under one lock, so events leave
     * in sequence order whichever thread made them. */
    pthread_mutex_lock(&d->event_lock);
    build(&pk, ++d->event_seq, userdata);
    ev->body = sb.data;
    ev->len = sb.size;
    if (d->event_tail)
        d->event_tail->next = ev;
    else
        d->event_head = ev;
    d->event_tail = ev;
    pthread_mutex_unlock(&d->event_lock);
    gwd_metrics_event(&d->metrics, kind);
    gwd_wake(d);
}

void gwd_events_flush(gwd *d)
{
    pthread_mutex_lock(&d->event_lock);
    gwd_event *ev = d->event_head;
    d->event_head = d->event_tail = NULL;
    pthread_mutex_unlock(&d->event_lock);
    while (ev) {
        gwd_event *next = ev->next;
        if (d->pub_sock) {
            zmq_send(d->pub_sock, ev->topic, strlen(ev->topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(d->pub_sock, ev->body, ev->len, ZMQ_DONTWAIT);
        }
        free(ev->topic);
        free(ev->body);
        free(ev);
        ev = next;
    }
}

/* After a reload: every option a reload applies (config.c, `live`) takes
 * effect where it is used. The rescan interval is gwd_loop_run()'s;
 * in_use_retry_s is read afresh by each clean-up that ends. */
static void reload_live(gwd *d)
{
    gw_log_set_level(gwd_log_level(d->cfg.log_level));
    char **traits = gwd_split_list(d->cfg.extra_traits);
    pthread_mutex_lock(&d->lock);
    char **old = d->extra_traits;
    d->extra_traits = traits;       /* the next inventory has them */
    gwd_view_changed(d);
    pthread_mutex_unlock(&d->lock);
    gwd_strv_free(old);
    gwd_attachment_reconfigure(d);
    gwd_zap_reload(d);
}

/* Returns true when the configuration was reloaded. */
static bool handle_signals(gwd *d)
{
    bool reloaded = false;
    struct signalfd_siginfo si;
    while (read(d->signal_fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            /* config.c logs each change: applied, or refused (restart). */
            if (gwd_config_reload(&d->cfg) == 0) {
                reload_live(d);
                reloaded = true;
            } else {
                gw_log(GW_LOG_ERR, "configuration reload failed (nothing changed); the running configuration stays");
            }
            sd_notify(0, "READY=1");
        } else {
            gw_log(GW_LOG_NOTICE, "signal %u: shutting down", si.ssi_signo);
            d->stopping = true;
        }
    }
    return reloaded;
}

static int64_t rescan_after(const gwd *d)
{
    return d->cfg.rescan_interval_s ? gwd_mono_ms() + d->cfg.rescan_interval_s * 1000 : INT64_MAX;
}

/* How long the loop may sleep: until the next configured timer (the rescan,
 * a GPU's wait after an in-use clean-up), or for ever (-1). Everything else
 * that needs the loop wakes it (a request, a signal, the eventfd: every
 * transition, finished clean-up, attachment report and slow reply). A fixed
 * 1 s timeout here woke an idle daemon 60 times a minute to list the
 * registry for a clean-up kick that had nothing to start. */
static int poll_timeout(gwd *d, int64_t next_rescan)
{
    pthread_mutex_lock(&d->lock);
    int64_t next = d->retry_wake_ms < next_rescan ? d->retry_wake_ms : next_rescan;
    pthread_mutex_unlock(&d->lock);
    if (next == INT64_MAX)
        return -1;
    int64_t left = next - gwd_mono_ms();
    return left <= 0 ? 0 : left > 3600 * 1000 ? 3600 * 1000 : (int)left;
}

void gwd_loop_run(gwd *d)
{
    int64_t next_rescan = rescan_after(d);
    while (!d->stopping) {
        zmq_pollitem_t items[] = {
            { d->admin_sock, 0, ZMQ_POLLIN, 0 },
            { d->read_sock, 0, ZMQ_POLLIN, 0 },
            { NULL, d->signal_fd, ZMQ_POLLIN, 0 },
            { NULL, d->wake_fd, ZMQ_POLLIN, 0 },
        };
        int ready = zmq_poll(items, 4, poll_timeout(d, next_rescan));
        if (ready < 0) {
            if (zmq_errno() == EINTR)
                continue;
            gw_log(GW_LOG_ERR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (items[2].revents && handle_signals(d))
            next_rescan = rescan_after(d);     /* the interval may have changed, 0 included */
        if (items[0].revents)
            gwd_serve(d, d->replies, d->admin_sock, GW_ENDPOINT_ADMIN);
        if (items[1].revents)
            gwd_serve(d, d->replies, d->read_sock, GW_ENDPOINT_READ);
        if (items[3].revents) {
            uint64_t n;
            if (read(d->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
                gw_log(GW_LOG_WARNING, "eventfd: %s", strerror(errno));
        }
        bool rescanned = false;
        if (gwd_mono_ms() >= next_rescan) {
            /* A GPU may have become managed (hot-plug, a rebind) or stopped
             * being so: the watcher follows before anything acts on it. */
            gwd_fleet_scan(d);
            gwd_attachment_follow(d);
            next_rescan = rescan_after(d);
            rescanned = true;
        }
        /* Every transition, finished clean-up and attachment report wakes
         * the loop with kick_due set, so clean-ups start (and fences are
         * taken) on a wake-up; a timeout is a retry wait that ended, a
         * rescan may have bound a quarantined GPU's group to vfio-pci. Requests alone, and the
         * worker's replies (an `audit` answered), never pay for the
         * registry listing. */
        bool retry_due = gwd_cleanup_retry_due(d);     /* always: it moves the retry timer on */
        if (atomic_exchange(&d->kick_due, false) || ready == 0 || retry_due || rescanned)
            gwd_cleanup_kick(d);
        /* done() set it before the wake-up that brought us here. */
        if (atomic_exchange(&d->promote_due, false))
            gwd_promote_confirmed(d);
        gwd_serve_deferred(d);
        gwd_events_flush(d);
    }
}
