/* Step health, after the reset: config space readable (not all-ones), link
 * width not degraded, no new AER fatal/non-fatal errors on the GPU or its
 * upstream port, BAR sizes unchanged. A lower link *speed* is only evidence:
 * idle GPUs train down to 2.5 GT/s. */
#include <math.h>
#include <string.h>

#include "sanitize_internal.h"

#define PIN_LINK_WIDTH "sanitize.link_width"

typedef struct health {
    gw_sctx *c;
    int failures;
} health;

static void problem(health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(health *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg;
    if (vasprintf(&msg, fmt, ap) >= 0) {
        gw_note(h->c, "%s", msg);
        free(msg);
    }
    va_end(ap);
    h->failures++;
}

static bool check_config(health *h)
{
    gw_sctx *c = h->c;
    uint32_t id;
    if (gw_dev_config32(c->ops, c->address, 0, &id) < 0) {
        problem(h, "config space unreadable after reset: %s", gw_error_message());
        return false;
    }
    if (id == 0xffffffff) {
        problem(h, "config space reads all-ones after reset: the device is off the bus");
        return false;
    }
    if (c->id_known && id != c->id_before) {
        problem(h, "vendor/device changed across the reset: %04x:%04x -> %04x:%04x", c->id_before & 0xffff,
                c->id_before >> 16, id & 0xffff, id >> 16);
        return false;
    }
    gw_note(c, "config readable (%04x:%04x)", id & 0xffff, id >> 16);
    return true;
}

static double speed_gts(gw_sctx *c, const char *addr, const char *attr)
{
    _cleanup_free_ char *s = NULL;
    if (gw_dev_read_text(c->ops, addr, attr, &s) < 0)
        return 0;
    return strtod(s, NULL);     /* "16.0 GT/s PCIe", "Unknown" -> 0 */
}

static void check_link(health *h, const gw_addrlist *up)
{
    gw_sctx *c = h->c;
    const char *a = c->address;
    long cur, max;
    if (gw_dev_read_long(c->ops, a, "current_link_width", &cur) < 0 ||
        gw_dev_read_long(c->ops, a, "max_link_width", &max) < 0) {
        gw_note(c, "no link width attributes: link not checked");
        return;
    }
    /* The kernel shows 0 or 255 where the link registers say nothing (an
     * integrated device's, a port whose link is down) and 63 for all-ones. */
    if (cur <= 0 || max <= 0 || max > 32) {
        gw_note(c, "link width unknown (current x%ld, max x%ld): not checked", cur, max);
        return;
    }
    long reach = max;
    long pmax = 0;
    const char *partner = up->n ? up->v[0] : NULL;
    if (partner && gw_dev_read_long(c->ops, partner, "max_link_width", &pmax) == 0 && pmax > 0 && pmax <= 32 &&
        pmax < reach)
        reach = pmax;
    bool ok = true;
    if (cur < reach) {
        if (partner && pmax > 0)
            problem(h, "link width x%ld below x%ld, the smaller of both ends' maximum (GPU x%ld, %s x%ld)", cur,
                    reach, max, partner, pmax);
        else
            problem(h, "link width x%ld below the GPU's maximum x%ld", cur, reach);
        ok = false;
    }
    const char *pin = gw_pin_get(c, PIN_LINK_WIDTH);
    if (pin) {
        long first = strtol(pin, NULL, 10);
        if (cur < first) {
            problem(h, "link width x%ld below x%ld recorded at the first clean-up", cur, first);
            ok = false;
        }
    } else if (ok) {
        char buf[24];
        snprintf(buf, sizeof buf, "%ld", cur);
        gw_pin_set(c, PIN_LINK_WIDTH, buf);
        gw_note(c, "link width x%ld pinned", cur);
    }
    double sp = speed_gts(c, a, "current_link_speed"), msp = speed_gts(c, a, "max_link_speed");
    if (ok)
        gw_note(c, "link x%ld (can reach x%ld)", cur, reach);
    if (sp > 0 && msp > 0 && sp + 0.05 < msp)
        gw_note(c, "link at %.1f GT/s of %.1f GT/s: a lower speed is normal for an idle GPU, not a fault", sp, msp);
    else if (sp > 0)
        gw_note(c, "link at %.1f GT/s", sp);
}

static void check_aer(health *h, const gw_addrlist *up)
{
    gw_sctx *c = h->c;
    const char *devs[2] = { c->address, up->n ? up->v[0] : NULL };
    /* Pin keys name the role, not the address: the registry's fact keys are
     * [a-z0-9_.-], and a record is one identity at one address anyway. */
    static const char *const roles[2] = { "gpu", "upstream" };
    static const char *const kinds[2] = { "fatal", "nonfatal" };
    for (int d = 0; d < 2 && devs[d]; d++) {
        for (int k = 0; k < 2; k++) {
            long now;
            int r = gw_dev_aer_total(c->ops, devs[d], kinds[k], &now);
            if (r == -ENOENT) {
                if (k == 0)
                    gw_note(c, "%s: no AER counters", devs[d]);
                break;
            }
            if (r < 0) {
                problem(h, "%s: AER counters unreadable: %s", devs[d], gw_error_message());
                continue;
            }
            _cleanup_free_ char *key = gw_strdup_printf("sanitize.aer_%s.%s", kinds[k], roles[d]);
            const char *pin = gw_pin_get(c, key);
            if (!pin) {
                gw_note(c, "%s: aer_dev_%s TOTAL %ld, baseline recorded", devs[d], kinds[k], now);
            } else {
                long before = strtol(pin, NULL, 10);
                if (now > before)
                    problem(h, "%s: aer_dev_%s TOTAL rose from %ld to %ld since the last clean-up", devs[d],
                            kinds[k], before, now);
                else if (now < before)
                    gw_note(c, "%s: aer_dev_%s TOTAL %ld below the baseline %ld (host rebooted?): new baseline",
                            devs[d], kinds[k], now, before);
                else
                    gw_note(c, "%s: aer_dev_%s TOTAL %ld unchanged", devs[d], kinds[k], now);
            }
            /* The next clean-up compares with this one, also after a
             * failure the operator has since released. */
            char buf[24];
            snprintf(buf, sizeof buf, "%ld", now);
            gw_pin_set(c, key, buf);
        }
    }
}

static void check_bars(health *h)
{
    gw_sctx *c = h->c;
    if (!c->bars_known) {
        gw_note(c, "BAR sizes not compared (unknown before the reset)");
        return;
    }
    uint64_t now[7];
    if (gw_dev_bar_sizes(c->ops, c->address, now) < 0) {
        problem(h, "BAR sizes unreadable after reset: %s", gw_error_message());
        return;
    }
    int changed = 0;
    for (int i = 0; i < 7; i++) {
        if (now[i] != c->bars[i]) {
            problem(h, "%s%d size changed across the reset: 0x%llx -> 0x%llx", i == 6 ? "ROM BAR" : "BAR",
                    i == 6 ? 0 : i, (unsigned long long)c->bars[i], (unsigned long long)now[i]);
            changed++;
        }
    }
    if (!changed)
        gw_note(c, "BAR sizes unchanged");
}

static gw_verdict run(gw_sctx *c)
{
    health h = { .c = c };
    if (!check_config(&h))
        return GW_VERDICT_FAIL;
    gw_addrlist up = { 0 };
    if (gw_dev_upstream(c->ops, c->address, &up) < 0)
        gw_note(c, "upstream port unknown (%s): link partner not checked", gw_error_message());
    check_link(&h, &up);
    check_aer(&h, &up);
    check_bars(&h);
    gw_addrlist_clear(&up);
    return h.failures ? GW_VERDICT_FAIL : GW_VERDICT_PASS;
}

const gw_step_def gw_step_health = { GW_STEP_HEALTH, "health", run };
