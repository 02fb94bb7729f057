/* SPDX-License-Identifier: Apache-2.0 */
/* The per-run context: what steps share, their evidence and the pins, and
 * the one guarded path by which a step writes to the host. */
#include <stdarg.h>
#include <string.h>

#include "sanitize_internal.h"

gw_sctx *gw_sctx_new(gw_hostops *ops, gw_attach_source *attach, gw_spolicy *policy,
                     const gw_sanitize_request *request)
{
    gw_sctx *c = gw_xcalloc(1, sizeof *c);
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    c->ops = gw_hostops_ref(ops);
    c->attach = attach;
    c->policy = gw_spolicy_ref(policy);
    snprintf(c->address, sizeof c->address, "%s", request->address);
    gw_kvlist_copy(&c->pins, request->pins, request->n_pins);
    return c;
}

gw_sctx *gw_sctx_ref(gw_sctx *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void gw_sctx_unref(gw_sctx *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    gw_sctx_release_fn release = c->on_release;
    void *release_data = c->on_release_data;
    /* An abandoned run's hold lasts until its last step returns: that step
     * may still use it, and the device it guards was not cleaned. */
    gw_release_run_holds(c, NULL);
    gw_hostops_unref(c->ops);
    gw_spolicy_unref(c->policy);
    gw_kvlist_clear(&c->pins);
    gw_kvlist_clear(&c->power_saved);
    gw_strbuf_clear(&c->evidence);
    gw_strbuf_clear(&c->history);
    pthread_mutex_destroy(&c->lock);
    free(c);
    if (release)
        release(release_data);
}

__attribute__((format(printf, 2, 0)))
static void vnote(gw_sctx *c, const char *fmt, va_list ap)
{
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    pthread_mutex_lock(&c->lock);
    if (!c->abandoned)
        gw_strbuf_append(&c->evidence, "%s%s", c->evidence.len ? "; " : "", msg);
    pthread_mutex_unlock(&c->lock);
    free(msg);
}

void gw_note(gw_sctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, fmt, ap);
    va_end(ap);
}

gw_verdict gw_fail(gw_sctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, fmt, ap);
    va_end(ap);
    return GW_VERDICT_FAIL;
}

gw_verdict gw_skip(gw_sctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, fmt, ap);
    va_end(ap);
    return GW_VERDICT_SKIP;
}

/* Pins are read by the step that owns them; the lock only guards against the
 * pipeline snapshotting them while an abandoned step still runs. */
const char *gw_pin_get(gw_sctx *c, const char *key)
{
    pthread_mutex_lock(&c->lock);
    const char *v = gw_kvlist_get(&c->pins, key);
    pthread_mutex_unlock(&c->lock);
    return v;
}

void gw_pin_set(gw_sctx *c, const char *key, const char *value)
{
    pthread_mutex_lock(&c->lock);
    if (!c->abandoned)
        gw_kvlist_set(&c->pins, key, value);
    pthread_mutex_unlock(&c->lock);
}

bool gw_sctx_abandoned(gw_sctx *c)
{
    pthread_mutex_lock(&c->lock);
    bool a = c->abandoned;
    pthread_mutex_unlock(&c->lock);
    return a;
}

/* Whether a write about `target` may go ahead: not after the run was
 * abandoned, only to a managed device. `what` names the write for the
 * evidence ("sys/.../reset", "0000:03:00.0 config 0x104"). */
static int write_allowed(gw_sctx *c, const char *target, const char *what)
{
    if (gw_sctx_abandoned(c))
        return gw_error_set(-ECANCELED, "%s: clean-up abandoned after a timeout, not writing %s", target, what);
    _cleanup_free_ char *why = NULL;
    int m = gw_dev_managed(c->ops, &c->policy->pol, target, &why);
    if (m <= 0) {
        gw_note(c, "refused to write %s: %s", what, why ? why : gw_error_message());
        return gw_error_set(-EPERM, "%s: not managed: %s", target, why ? why : "unreadable");
    }
    return 0;
}

/* The outcome `r` of a write in the evidence, `shown` between `quote`s.
 * The backend's message is kept across gw_note, which may set its own, so
 * that the caller's error names what the kernel said. */
static int note_write(gw_sctx *c, int r, const char *quote, const char *shown, const char *what)
{
    if (r < 0) {
        _cleanup_free_ char *msg = gw_xstrdup(gw_error_message());
        gw_note(c, "write %s%s%s to %s failed: %s", quote, shown, quote, what, strerror(-r));
        gw_error_set(r, "%s", msg);
        return r;
    }
    gw_note(c, "wrote %s%s%s to %s", quote, shown, quote, what);
    return 0;
}

int gw_host_write(gw_sctx *c, const char *target, const char *path, const void *buf, size_t len)
{
    int r = write_allowed(c, target, path);
    if (r < 0)
        return r;
    _cleanup_free_ char *shown = gw_escape_bytes(buf, len);
    return note_write(c, gw_hostops_write(c->ops, path, buf, len), "'", shown, path);
}

/* A register-sized write as the value it stores (config space is little
 * endian), anything else as its bytes. */
static char *config_bytes_text(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (len == 1 || len == 2 || len == 4) {
        uint32_t v = 0;
        for (size_t i = len; i-- > 0;)
            v = v << 8 | b[i];
        return gw_strdup_printf("0x%0*x", (int)len * 2, v);
    }
    gw_strbuf t = { 0 };
    for (size_t i = 0; i < len; i++)
        gw_strbuf_append(&t, "%s%02x", i ? " " : "", b[i]);
    return t.s ? t.s : gw_xstrdup("");
}

int gw_host_write_config(gw_sctx *c, const char *target, unsigned int offset, const void *buf, size_t len)
{
    _cleanup_free_ char *what = gw_strdup_printf("%s config 0x%x", target, offset);
    int r = write_allowed(c, target, what);
    if (r < 0)
        return r;
    _cleanup_free_ char *shown = config_bytes_text(buf, len);
    return note_write(c, gw_hostops_write_config(c->ops, target, offset, buf, len), "", shown, what);
}
