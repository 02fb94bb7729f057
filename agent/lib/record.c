/* SPDX-License-Identifier: Apache-2.0 */
/* Device records and transitions: snapshots, copies and their JSON forms
 * (the checkpoint's device objects and the audit log's lines). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "util.h"

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *gw_time_format(int64_t ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000));
    return buf;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

char *gw_text_clean(const char *s, size_t max)
{
    static const char cut[] = " [cut]";
    if (!s)
        return gw_xstrdup("");
    size_t len = strlen(s);
    char *out = gw_xcalloc(len + sizeof cut, 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq((const unsigned char *)s + i);
        size_t take = n ? n : 1;
        if (o + take > max) {
            memcpy(out + o, cut, sizeof cut);
            return out;
        }
        if (n)
            memcpy(out + o, s + i, n);
        else
            out[o] = '?';
        o += take;
        i += take;
    }
    out[o] = '\0';
    return out;
}

GW_EXTERN bool gw_identity_equal(const gw_identity *a, const gw_identity *b)
{
    return !strcmp(a->address, b->address) && a->vendor_id == b->vendor_id &&
           a->device_id == b->device_id && a->subsystem_vendor_id == b->subsystem_vendor_id &&
           a->subsystem_device_id == b->subsystem_device_id && a->dsn_present == b->dsn_present &&
           (!a->dsn_present || a->dsn == b->dsn);
}

GW_EXTERN const char *gw_identity_format(const gw_identity *id, char *buf, size_t len)
{
    char dsn[32] = "";
    if (id->dsn_present)
        snprintf(dsn, sizeof dsn, " dsn %016" PRIx64, id->dsn);
    snprintf(buf, len, "%s [%04x:%04x %04x:%04x%s]", id->address, id->vendor_id, id->device_id,
             id->subsystem_vendor_id, id->subsystem_device_id, dsn);
    return buf;
}

bool gw_verdict_valid(const char *v)
{
    return v && (!strcmp(v, "pass") || !strcmp(v, "fail") || !strcmp(v, "skip"));
}

/* ---- snapshots ---------------------------------------------------------- */

static void free_text(const char *s) { free((char *)s); }

void gw_device_set_text(const char **field, const char *value)
{
    free_text(*field);
    *field = gw_xstrdup(value ? value : "");
}

gw_device *gw_device_new_blank(void)
{
    gw_device *dev = gw_xcalloc(1, sizeof *dev);
    dev->state = GW_LIFECYCLE_INITIAL_STATE;
    dev->flags = GW_LIFECYCLE_INITIAL_FLAGS;
    dev->last_event = GW_EVENT_FOUND;
    const char **texts[] = { &dev->actor, &dev->reason, &dev->evidence,
                             &dev->quarantine_reason, &dev->quarantine_actor };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        *texts[i] = gw_xstrdup("");
    return dev;
}

static void cleanup_clear(gw_cleanup_result *r)
{
    for (size_t i = 0; i < r->n_steps; i++) {
        free_text(r->steps[i].name);
        free_text(r->steps[i].verdict);
        free_text(r->steps[i].evidence);
    }
    free((void *)r->steps);
    memset(r, 0, sizeof *r);
}

void gw_device_set_cleanup(gw_device *dev, const gw_cleanup_result *r)
{
    cleanup_clear(&dev->cleanup);
    if (!r)
        return;
    gw_cleanup_step *steps = gw_xcalloc(r->n_steps, sizeof *steps);
    for (size_t i = 0; i < r->n_steps; i++) {
        steps[i].name = gw_text_clean(r->steps[i].name, 64);
        steps[i].verdict = gw_text_clean(r->steps[i].verdict, 16);
        steps[i].evidence = gw_text_clean(r->steps[i].evidence, GW_TEXT_MAX);
        steps[i].duration_ms = r->steps[i].duration_ms;
    }
    dev->cleanup = *r;
    dev->cleanup.steps = steps;
}

void gw_device_put_fact(gw_device *dev, const char *key, const char *value)
{
    gw_fact *facts = (gw_fact *)dev->facts;
    size_t i = 0;
    while (i < dev->n_facts && strcmp(facts[i].key, key) < 0)
        i++;
    bool found = i < dev->n_facts && !strcmp(facts[i].key, key);
    if (found && value) {
        gw_device_set_text(&facts[i].value, value);
        return;
    }
    if (found) {
        free_text(facts[i].key);
        free_text(facts[i].value);
        memmove(facts + i, facts + i + 1, (dev->n_facts - i - 1) * sizeof *facts);
        dev->n_facts--;
        return;
    }
    if (!value)
        return;
    facts = gw_xrealloc(facts, dev->n_facts + 1, sizeof *facts);
    memmove(facts + i + 1, facts + i, (dev->n_facts - i) * sizeof *facts);
    facts[i].key = gw_xstrdup(key);
    facts[i].value = gw_xstrdup(value);
    dev->facts = facts;
    dev->n_facts++;
}

GW_EXTERN void gw_device_free(gw_device *dev)
{
    if (!dev)
        return;
    free_text(dev->actor);
    free_text(dev->reason);
    free_text(dev->evidence);
    free_text(dev->quarantine_reason);
    free_text(dev->quarantine_actor);
    cleanup_clear(&dev->cleanup);
    for (size_t i = 0; i < dev->n_facts; i++) {
        free_text(dev->facts[i].key);
        free_text(dev->facts[i].value);
    }
    free((void *)dev->facts);
    free(dev);
}

GW_EXTERN void gw_device_list_free(gw_device **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        gw_device_free(list[i]);
    free(list);
}

GW_EXTERN gw_device *gw_device_copy(const gw_device *dev)
{
    if (!dev)
        return NULL;
    gw_device *c = gw_xcalloc(1, sizeof *c);
    *c = *dev;
    c->actor = gw_xstrdup(dev->actor);
    c->reason = gw_xstrdup(dev->reason);
    c->evidence = gw_xstrdup(dev->evidence);
    c->quarantine_reason = gw_xstrdup(dev->quarantine_reason);
    c->quarantine_actor = gw_xstrdup(dev->quarantine_actor);
    c->cleanup = (gw_cleanup_result){ 0 };
    if (dev->cleanup.start_ms || dev->cleanup.n_steps)
        gw_device_set_cleanup(c, &dev->cleanup);
    c->facts = NULL;
    c->n_facts = 0;
    if (dev->n_facts) {
        gw_fact *facts = gw_xcalloc(dev->n_facts, sizeof *facts);
        for (size_t i = 0; i < dev->n_facts; i++) {
            facts[i].key = gw_xstrdup(dev->facts[i].key);
            facts[i].value = gw_xstrdup(dev->facts[i].value);
        }
        c->facts = facts;
        c->n_facts = dev->n_facts;
    }
    return c;
}

GW_EXTERN const char *gw_device_fact(const gw_device *dev, const char *key)
{
    for (size_t i = 0; dev && key && i < dev->n_facts; i++)
        if (!strcmp(dev->facts[i].key, key))
            return dev->facts[i].value;
    return NULL;
}

GW_EXTERN bool gw_device_needs_cleanup(const gw_device *dev)
{
    return dev && dev->state == GW_STATE_DISCOVERED &&
           !(dev->flags & (GW_FLAG_CLEANING | GW_FLAG_MISSING));
}

void gw_transition_copy(gw_transition *dst, const gw_transition *src)
{
    *dst = *src;
    dst->actor = gw_xstrdup(src->actor ? src->actor : "");
    dst->reason = gw_xstrdup(src->reason ? src->reason : "");
    dst->evidence = gw_xstrdup(src->evidence ? src->evidence : "");
}

void gw_transition_clear(gw_transition *t)
{
    free_text(t->actor);
    free_text(t->reason);
    free_text(t->evidence);
    memset(t, 0, sizeof *t);
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *hex16(uint16_t v)
{
    char buf[8];
    snprintf(buf, sizeof buf, "%04x", v);
    return json_string(buf);
}

/* jansson refuses invalid UTF-8; every text we store went through
 * gw_text_clean(), but a failure here must never abort a write. */
static json_t *text(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (!j) {
        _cleanup_free_ char *clean = gw_text_clean(s, SIZE_MAX - 16);
        j = json_string(clean);
    }
    return j;
}

static json_t *flags_array(unsigned flags)
{
    json_t *a = json_array();
    for (unsigned f = 1; f <= GW_FLAG_MISSING; f <<= 1)
        if (flags & f)
            json_array_append_new(a, json_string(gw_flag_name(f)));
    return a;
}

json_t *gw_identity_to_jobj(const gw_identity *id)
{
    json_t *o = json_object();
    json_object_set_new(o, "address", json_string(id->address));
    json_object_set_new(o, "vendor_id", hex16(id->vendor_id));
    json_object_set_new(o, "device_id", hex16(id->device_id));
    json_object_set_new(o, "subsystem_vendor_id", hex16(id->subsystem_vendor_id));
    json_object_set_new(o, "subsystem_device_id", hex16(id->subsystem_device_id));
    if (id->dsn_present) {
        char dsn[20];
        snprintf(dsn, sizeof dsn, "%016" PRIx64, id->dsn);
        json_object_set_new(o, "dsn", json_string(dsn));
    } else {
        json_object_set_new(o, "dsn", json_null());
    }
    return o;
}

static json_t *cleanup_to_jobj(const gw_cleanup_result *r)
{
    if (!r->start_ms && !r->n_steps)
        return json_null();
    json_t *steps = json_array();
    for (size_t i = 0; i < r->n_steps; i++) {
        const gw_cleanup_step *s = &r->steps[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", text(s->name));
        json_object_set_new(o, "verdict", text(s->verdict));
        json_object_set_new(o, "evidence", text(s->evidence));
        json_object_set_new(o, "duration_ms", json_integer((json_int_t)s->duration_ms));
        json_array_append_new(steps, o);
    }
    json_t *o = json_object();
    json_object_set_new(o, "start_ms", json_integer(r->start_ms));
    json_object_set_new(o, "end_ms", json_integer(r->end_ms));
    json_object_set_new(o, "passed", json_boolean(r->passed));
    json_object_set_new(o, "steps", steps);
    return o;
}

json_t *gw_device_to_jobj(const gw_device *dev)
{
    json_t *o = gw_identity_to_jobj(&dev->identity);
    json_object_set_new(o, "state", json_string(gw_state_name(dev->state)));
    json_object_set_new(o, "dirty", json_boolean(dev->flags & GW_FLAG_DIRTY));
    json_object_set_new(o, "cleaning", json_boolean(dev->flags & GW_FLAG_CLEANING));
    json_object_set_new(o, "missing", json_boolean(dev->flags & GW_FLAG_MISSING));
    json_object_set_new(o, "seq", json_integer((json_int_t)dev->seq));
    json_object_set_new(o, "since_ms", json_integer(dev->since_ms));
    json_object_set_new(o, "last_event", json_string(gw_event_name(dev->last_event)));
    json_object_set_new(o, "actor", text(dev->actor));
    json_object_set_new(o, "reason", text(dev->reason));
    json_object_set_new(o, "evidence", text(dev->evidence));
    if (dev->state == GW_STATE_QUARANTINED) {
        json_t *q = json_object();
        json_object_set_new(q, "reason", text(dev->quarantine_reason));
        json_object_set_new(q, "actor", text(dev->quarantine_actor));
        json_object_set_new(q, "since_ms", json_integer(dev->quarantine_ms));
        json_object_set_new(o, "quarantine", q);
    } else {
        json_object_set_new(o, "quarantine", json_null());
    }
    json_object_set_new(o, "found_ms", json_integer(dev->found_ms));
    json_object_set_new(o, "cleanup", cleanup_to_jobj(&dev->cleanup));
    json_t *facts = json_object();
    for (size_t i = 0; i < dev->n_facts; i++)
        json_object_set_new(facts, dev->facts[i].key, text(dev->facts[i].value));
    json_object_set_new(o, "facts", facts);
    return o;
}

GW_EXTERN int gw_device_to_json(const gw_device *dev, char **out)
{
    if (!dev || !out)
        return gw_error_set(-EINVAL, "gw_device_to_json: NULL argument");
    json_t *o = gw_device_to_jobj(dev);
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!*out)
        return gw_error_set(-ENOMEM, "gw_device_to_json: out of memory");
    return 0;
}

json_t *gw_transition_to_jobj(const gw_transition *t)
{
    char when[40];
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)t->seq));
    json_object_set_new(o, "time", json_string(gw_time_format(t->time_ms, when, sizeof when)));
    json_object_set_new(o, "time_ms", json_integer(t->time_ms));
    json_object_set_new(o, "device", gw_identity_to_jobj(&t->device));
    json_object_set_new(o, "event", json_string(gw_event_name(t->event)));
    json_object_set_new(o, "from", t->from == GW_STATE_NONE ? json_null()
                                                            : json_string(gw_state_name(t->from)));
    json_object_set_new(o, "from_flags", flags_array(t->from_flags));
    json_object_set_new(o, "to", json_string(gw_state_name(t->to)));
    json_object_set_new(o, "to_flags", flags_array(t->to_flags));
    json_object_set_new(o, "actor", text(t->actor));
    json_object_set_new(o, "reason", text(t->reason));
    json_object_set_new(o, "evidence", text(t->evidence));
    return o;
}

GW_EXTERN int gw_transition_to_json(const gw_transition *t, char **out)
{
    if (!t || !out)
        return gw_error_set(-EINVAL, "gw_transition_to_json: NULL argument");
    json_t *o = gw_transition_to_jobj(t);
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!*out)
        return gw_error_set(-ENOMEM, "gw_transition_to_json: out of memory");
    return 0;
}

/* ---- parsing ------------------------------------------------------------ */

#define BAD(ctx, ...) gw_error_set(GW_ESTATE_CORRUPT, ctx ": " __VA_ARGS__)

static int get_str(json_t *o, const char *key, const char **out, const char *ctx)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' missing or not a string", ctx, key);
    *out = json_string_value(v);
    return 0;
}

static int get_int(json_t *o, const char *key, int64_t min, int64_t *out, const char *ctx)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' missing or not an integer >= %" PRId64,
                            ctx, key, min);
    *out = json_integer_value(v);
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, const char *ctx)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' missing or not a boolean", ctx, key);
    *out = json_is_true(v);
    return 0;
}

static int get_hex16(json_t *o, const char *key, uint16_t *out, const char *ctx)
{
    const char *s = NULL;
    int r = get_str(o, key, &s, ctx);
    if (r < 0)
        return r;
    char *end;
    unsigned long v = strtoul(s, &end, 16);
    if (strlen(s) != 4 || strspn(s, "0123456789abcdef") != 4 || *end || v > 0xffff)
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' is not 4 hex digits: '%.16s'", ctx, key, s);
    *out = (uint16_t)v;
    return 0;
}

int gw_identity_from_jobj(json_t *o, gw_identity *out, const char *ctx)
{
    if (!json_is_object(o))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: device identity is not an object", ctx);
    gw_identity id = { 0 };
    const char *addr = NULL;
    int r = get_str(o, "address", &addr, ctx);
    if (r < 0)
        return r;
    if (!gw_is_bdf(addr))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: bad address '%.32s'", ctx, addr);
    memcpy(id.address, addr, GW_ADDR_LEN);
    if ((r = get_hex16(o, "vendor_id", &id.vendor_id, ctx)) < 0 ||
        (r = get_hex16(o, "device_id", &id.device_id, ctx)) < 0 ||
        (r = get_hex16(o, "subsystem_vendor_id", &id.subsystem_vendor_id, ctx)) < 0 ||
        (r = get_hex16(o, "subsystem_device_id", &id.subsystem_device_id, ctx)) < 0)
        return r;
    json_t *dsn = json_object_get(o, "dsn");
    if (json_is_string(dsn)) {
        const char *s = json_string_value(dsn);
        char *end;
        errno = 0;
        id.dsn = strtoull(s, &end, 16);
        if (strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16 || *end || errno)
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: bad dsn '%.20s'", ctx, s);
        id.dsn_present = true;
    } else if (!json_is_null(dsn)) {
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: 'dsn' missing or neither a string nor null", ctx);
    }
    *out = id;
    return 0;
}

static int get_state(json_t *o, const char *key, gw_state *out, const char *ctx)
{
    const char *s = NULL;
    int r = get_str(o, key, &s, ctx);
    if (r < 0)
        return r;
    if (gw_state_from_name(s, out) < 0 || *out == GW_STATE_NONE)
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: unknown state '%.32s'", ctx, s);
    return 0;
}

static int get_event(json_t *o, const char *key, gw_event *out, const char *ctx)
{
    const char *s = NULL;
    int r = get_str(o, key, &s, ctx);
    if (r < 0)
        return r;
    if (gw_event_from_name(s, out) < 0)
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: unknown event '%.32s'", ctx, s);
    return 0;
}

static int get_flags(json_t *o, const char *key, unsigned *out, const char *ctx)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' missing or not an array", ctx, key);
    unsigned flags = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        unsigned f = 0;
        for (unsigned b = 1; b <= GW_FLAG_MISSING; b <<= 1)
            if (json_is_string(v) && !strcmp(json_string_value(v), gw_flag_name(b)))
                f = b;
        if (!f)
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: '%s' holds an unknown flag", ctx, key);
        flags |= f;
    }
    *out = flags;
    return 0;
}

static int cleanup_from_jobj(json_t *o, gw_device *dev, const char *ctx)
{
    if (json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: 'cleanup' is neither an object nor null", ctx);
    gw_cleanup_result r = { 0 };
    int e;
    if ((e = get_int(o, "start_ms", 0, &r.start_ms, ctx)) < 0 ||
        (e = get_int(o, "end_ms", 0, &r.end_ms, ctx)) < 0 ||
        (e = get_bool(o, "passed", &r.passed, ctx)) < 0)
        return e;
    json_t *steps = json_object_get(o, "steps");
    if (!json_is_array(steps))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: cleanup 'steps' is not an array", ctx);
    size_t n = json_array_size(steps);
    _cleanup_free_ gw_cleanup_step *s = gw_xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        json_t *so = json_array_get(steps, i);
        int64_t ms = 0;
        if (!json_is_object(so))
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: cleanup step %zu is not an object", ctx, i);
        if ((e = get_str(so, "name", &s[i].name, ctx)) < 0 ||
            (e = get_str(so, "verdict", &s[i].verdict, ctx)) < 0 ||
            (e = get_str(so, "evidence", &s[i].evidence, ctx)) < 0 ||
            (e = get_int(so, "duration_ms", 0, &ms, ctx)) < 0)
            return e;
        if (!gw_verdict_valid(s[i].verdict))
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: cleanup step %zu: unknown verdict '%.16s'",
                                ctx, i, s[i].verdict);
        s[i].duration_ms = (uint64_t)ms;
    }
    r.steps = s;
    r.n_steps = n;
    gw_device_set_cleanup(dev, &r);
    return 0;
}

static int device_fill(json_t *o, gw_device *dev, const char *ctx)
{
    int r;
    bool dirty = false, cleaning = false, missing = false;
    int64_t seq = 0;
    const char *actor = NULL, *reason = NULL, *evidence = NULL;
    if ((r = gw_identity_from_jobj(o, &dev->identity, ctx)) < 0 ||
        (r = get_state(o, "state", &dev->state, ctx)) < 0 ||
        (r = get_bool(o, "dirty", &dirty, ctx)) < 0 ||
        (r = get_bool(o, "cleaning", &cleaning, ctx)) < 0 ||
        (r = get_bool(o, "missing", &missing, ctx)) < 0 ||
        (r = get_int(o, "seq", 1, &seq, ctx)) < 0 ||
        (r = get_int(o, "since_ms", 0, &dev->since_ms, ctx)) < 0 ||
        (r = get_event(o, "last_event", &dev->last_event, ctx)) < 0 ||
        (r = get_str(o, "actor", &actor, ctx)) < 0 ||
        (r = get_str(o, "reason", &reason, ctx)) < 0 ||
        (r = get_str(o, "evidence", &evidence, ctx)) < 0 ||
        (r = get_int(o, "found_ms", 0, &dev->found_ms, ctx)) < 0)
        return r;
    dev->seq = (uint64_t)seq;
    dev->flags = (dirty ? GW_FLAG_DIRTY : 0) | (cleaning ? GW_FLAG_CLEANING : 0) |
                 (missing ? GW_FLAG_MISSING : 0);
    /* The table only makes consistent conditions; anything else was edited. */
    if (gw_lifecycle_next(dev->state, dev->flags, GW_EVENT_FAULT, NULL, NULL) == -EINVAL) {
        char cond[64];
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: impossible condition %s", ctx,
                            gw_condition_format(dev->state, dev->flags, cond, sizeof cond));
    }
    gw_device_set_text(&dev->actor, actor);
    gw_device_set_text(&dev->reason, reason);
    gw_device_set_text(&dev->evidence, evidence);

    json_t *q = json_object_get(o, "quarantine");
    if (dev->state == GW_STATE_QUARANTINED) {
        const char *qr = NULL, *qa = NULL;
        if (!json_is_object(q))
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: quarantined without 'quarantine'", ctx);
        if ((r = get_str(q, "reason", &qr, ctx)) < 0 || (r = get_str(q, "actor", &qa, ctx)) < 0 ||
            (r = get_int(q, "since_ms", 0, &dev->quarantine_ms, ctx)) < 0)
            return r;
        gw_device_set_text(&dev->quarantine_reason, qr);
        gw_device_set_text(&dev->quarantine_actor, qa);
    } else if (!json_is_null(q)) {
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: 'quarantine' set but not quarantined", ctx);
    }
    if ((r = cleanup_from_jobj(json_object_get(o, "cleanup"), dev, ctx)) < 0)
        return r;

    json_t *facts = json_object_get(o, "facts");
    if (!json_is_object(facts))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: 'facts' missing or not an object", ctx);
    const char *key;
    json_t *v;
    json_object_foreach(facts, key, v) {
        if (!json_is_string(v))
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: fact '%.64s' is not a string", ctx, key);
        gw_device_put_fact(dev, key, json_string_value(v));
    }
    return 0;
}

int gw_device_from_jobj(json_t *o, gw_device **out, const char *ctx)
{
    if (!json_is_object(o))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: device is not an object", ctx);
    gw_device *dev = gw_device_new_blank();
    int r = device_fill(o, dev, ctx);
    if (r < 0) {
        gw_device_free(dev);
        return r;
    }
    *out = dev;
    return 0;
}

int gw_transition_from_jobj(json_t *o, gw_transition *out, const char *ctx)
{
    if (!json_is_object(o))
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: record is not an object", ctx);
    gw_transition t = { 0 };
    int64_t seq = 0;
    const char *actor = NULL, *reason = NULL, *evidence = NULL;
    int r;
    if ((r = get_int(o, "seq", 1, &seq, ctx)) < 0 ||
        (r = get_int(o, "time_ms", 0, &t.time_ms, ctx)) < 0 ||
        (r = gw_identity_from_jobj(json_object_get(o, "device"), &t.device, ctx)) < 0 ||
        (r = get_event(o, "event", &t.event, ctx)) < 0 ||
        (r = get_flags(o, "from_flags", &t.from_flags, ctx)) < 0 ||
        (r = get_state(o, "to", &t.to, ctx)) < 0 ||
        (r = get_flags(o, "to_flags", &t.to_flags, ctx)) < 0 ||
        (r = get_str(o, "actor", &actor, ctx)) < 0 ||
        (r = get_str(o, "reason", &reason, ctx)) < 0 ||
        (r = get_str(o, "evidence", &evidence, ctx)) < 0)
        return r;
    json_t *from = json_object_get(o, "from");
    if (json_is_null(from))
        t.from = GW_STATE_NONE;
    else if ((r = get_state(o, "from", &t.from, ctx)) < 0)
        return r;
    t.seq = (uint64_t)seq;
    t.actor = actor;
    t.reason = reason;
    t.evidence = evidence;
    gw_transition_copy(out, &t);
    return 0;
}
