/* SPDX-License-Identifier: Apache-2.0 */
/* The clean-up result: start, end, per-step verdict/evidence/duration, the
 * overall verdict and quarantine reason, the pins; and its JSON form. */
#include <jansson.h>
#include <string.h>

#include "sanitize_internal.h"
#include "sanitize_result.h"

gw_sanitize_result *gw_result_new(const char *address)
{
    gw_sanitize_result *r = gw_xcalloc(1, sizeof *r);
    snprintf(r->address, sizeof r->address, "%s", address);
    r->failed = -1;
    r->verdict = GW_VERDICT_PASS;
    return r;
}

void gw_result_add_step(gw_sanitize_result *r, gw_step_id id, gw_verdict v, const char *evidence,
                        uint64_t duration_us)
{
    r->steps = gw_xrealloc(r->steps, r->n_steps + 1, sizeof *r->steps);
    gw_step_result *s = &r->steps[r->n_steps++];
    s->step = id;
    s->name = gw_step_name(id);
    s->verdict = v;
    s->evidence = gw_xstrdup(evidence ? evidence : "");
    s->duration_us = duration_us;
    if (v == GW_VERDICT_FAIL && r->failed < 0) {
        r->failed = (int)id;
        r->verdict = GW_VERDICT_FAIL;
        r->reason = gw_strdup_printf("%s: %s", s->name, s->evidence);
    }
}

GW_EXTERN void gw_sanitize_result_free(gw_sanitize_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_steps; i++)
        free((char *)r->steps[i].evidence);
    free(r->steps);
    free(r->reason);
    gw_kvlist_clear(&r->pins);
    free(r);
}

GW_EXTERN const char *gw_sanitize_result_address(const gw_sanitize_result *r) { return r->address; }
GW_EXTERN int64_t gw_sanitize_result_start_ms(const gw_sanitize_result *r) { return r->start_ms; }
GW_EXTERN int64_t gw_sanitize_result_end_ms(const gw_sanitize_result *r) { return r->end_ms; }
GW_EXTERN gw_verdict gw_sanitize_result_verdict(const gw_sanitize_result *r) { return r->verdict; }
GW_EXTERN size_t gw_sanitize_result_step_count(const gw_sanitize_result *r) { return r->n_steps; }

GW_EXTERN const gw_step_result *gw_sanitize_result_step(const gw_sanitize_result *r, size_t i)
{
    return i < r->n_steps ? &r->steps[i] : NULL;
}

GW_EXTERN int gw_sanitize_result_failed_step(const gw_sanitize_result *r) { return r->failed; }
GW_EXTERN const char *gw_sanitize_result_reason(const gw_sanitize_result *r) { return r->reason; }
GW_EXTERN bool gw_sanitize_result_in_use(const gw_sanitize_result *r) { return r->in_use; }
GW_EXTERN size_t gw_sanitize_result_pin_count(const gw_sanitize_result *r) { return r->pins.n; }

GW_EXTERN const gw_fact *gw_sanitize_result_pin(const gw_sanitize_result *r, size_t i)
{
    return i < r->pins.n ? &r->pins.v[i] : NULL;
}

GW_EXTERN const char *gw_sanitize_result_pin_get(const gw_sanitize_result *r, const char *key)
{
    return gw_kvlist_get(&r->pins, key);
}

GW_EXTERN int gw_sanitize_result_to_json(const gw_sanitize_result *r, char **out)
{
    if (!r || !out)
        return gw_error_set(-EINVAL, "gw_sanitize_result_to_json: NULL argument");
    json_t *steps = json_array();
    for (size_t i = 0; i < r->n_steps; i++) {
        const gw_step_result *s = &r->steps[i];
        json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:I}", "step", s->name, "verdict",
                                               gw_verdict_name(s->verdict), "evidence", s->evidence,
                                               "duration_us", (json_int_t)s->duration_us));
    }
    json_t *pins = json_object();
    for (size_t i = 0; i < r->pins.n; i++)
        json_object_set_new(pins, r->pins.v[i].key, json_string(r->pins.v[i].value));
    json_t *o = json_pack("{s:i, s:s, s:I, s:I, s:s, s:o, s:o, s:o, s:o}", "version", 1, "address", r->address,
                          "start_ms", (json_int_t)r->start_ms, "end_ms", (json_int_t)r->end_ms, "verdict",
                          gw_verdict_name(r->verdict), "failed_step",
                          r->failed >= 0 ? json_string(gw_step_name((gw_step_id)r->failed)) : json_null(),
                          "reason", r->reason ? json_string(r->reason) : json_null(), "steps", steps, "pins", pins);
    if (!o)
        return gw_error_set(-EINVAL, "clean-up result %s: not representable as JSON (bad UTF-8 in evidence?)",
                            r->address);
    /* Only when set: results of clean-ups that found nothing in use read as
     * they always did. */
    if (r->in_use)
        json_object_set_new(o, "in_use", json_true());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return gw_error_set(-ENOMEM, "clean-up result %s: JSON encoding failed", r->address);
    *out = s;
    return 0;
}

static int verdict_from_name(const char *s, gw_verdict *v)
{
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, gw_verdict_name((gw_verdict)i))) {
            *v = (gw_verdict)i;
            return 0;
        }
    }
    return -EINVAL;
}

GW_EXTERN int gw_sanitize_result_from_json(gw_sanitize_result **out, const char *text)
{
    if (!out || !text)
        return gw_error_set(-EINVAL, "gw_sanitize_result_from_json: NULL argument");
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    if (!o)
        return gw_error_set(-EINVAL, "clean-up result JSON: %s at line %d column %d", err.text, err.line,
                            err.column);
    int version, in_use = 0;
    const char *address, *verdict;
    json_int_t start, end;
    json_t *steps, *pins;
    if (json_unpack_ex(o, &err, 0, "{s:i, s:s, s:I, s:I, s:s, s:o, s:o, s?b}", "version", &version, "address",
                       &address, "start_ms", &start, "end_ms", &end, "verdict", &verdict, "steps", &steps, "pins",
                       &pins, "in_use", &in_use) < 0) {
        json_decref(o);
        return gw_error_set(-EINVAL, "clean-up result JSON: %s", err.text);
    }
    int rc = 0;
    gw_sanitize_result *r = NULL;
    gw_verdict overall;
    if (version != 1 || !gw_is_bdf(address) || verdict_from_name(verdict, &overall) < 0 ||
        !json_is_array(steps) || !json_is_object(pins)) {
        rc = gw_error_set(-EINVAL, "clean-up result JSON: bad version, address, verdict, steps or pins");
        goto out;
    }
    r = gw_result_new(address);
    r->start_ms = start;
    r->end_ms = end;
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s) {
        const char *name, *sv, *ev;
        json_int_t us;
        gw_step_id id;
        gw_verdict v;
        if (json_unpack_ex(s, &err, 0, "{s:s, s:s, s:s, s:I}", "step", &name, "verdict", &sv, "evidence", &ev,
                           "duration_us", &us) < 0 ||
            gw_step_from_name(name, &id) < 0 || verdict_from_name(sv, &v) < 0 || us < 0) {
            rc = gw_error_set(-EINVAL, "clean-up result JSON: step %zu is malformed", i);
            goto out;
        }
        gw_result_add_step(r, id, v, ev, (uint64_t)us);
    }
    if (r->verdict != overall) {
        rc = gw_error_set(-EINVAL, "clean-up result JSON: verdict '%s' disagrees with its steps", verdict);
        goto out;
    }
    if (in_use && overall != GW_VERDICT_FAIL) {
        rc = gw_error_set(-EINVAL, "clean-up result JSON: in_use on a clean-up that passed");
        goto out;
    }
    r->in_use = in_use;
    const char *key;
    json_t *val;
    json_object_foreach(pins, key, val) {
        if (!json_is_string(val)) {
            rc = gw_error_set(-EINVAL, "clean-up result JSON: pin '%s' is not a string", key);
            goto out;
        }
        gw_kvlist_set(&r->pins, key, json_string_value(val));
    }
out:
    json_decref(o);
    if (rc < 0) {
        gw_sanitize_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

GW_EXTERN int gw_sanitize_result_apply(const gw_sanitize_result *r, gw_registry *reg, const char *actor)
{
    if (!r || !reg)
        return gw_error_set(-EINVAL, "gw_sanitize_result_apply: NULL argument");
    gw_device *dev = NULL;
    int rc = gw_registry_get(reg, r->address, &dev);
    if (rc < 0)
        return rc;
    /* The changed pins in one checkpoint write, not one each. */
    gw_fact_pin *pins = gw_xcalloc(r->pins.n + 1, sizeof *pins);
    size_t n = 0;
    for (size_t i = 0; i < r->pins.n; i++) {
        const gw_fact *p = &r->pins.v[i];
        if (strncmp(p->key, "sanitize.", 9))
            continue;
        const char *old = gw_device_fact(dev, p->key);
        if (!old || strcmp(old, p->value))
            pins[n++] = (gw_fact_pin){ r->address, p->key, p->value };
    }
    if (n)
        rc = gw_registry_set_facts(reg, pins, n);
    free(pins);
    gw_device_free(dev);
    if (rc < 0)
        return rc;

    gw_cleanup_step *steps = gw_xcalloc(r->n_steps, sizeof *steps);
    for (size_t i = 0; i < r->n_steps; i++) {
        steps[i].name = r->steps[i].name;
        steps[i].verdict = gw_verdict_name(r->steps[i].verdict);
        steps[i].evidence = r->steps[i].evidence;
        steps[i].duration_ms = r->steps[i].duration_us / 1000;
    }
    gw_cleanup_result cr = { r->start_ms, r->end_ms, r->verdict == GW_VERDICT_PASS, steps, r->n_steps };
    gw_apply_options a = GW_APPLY_OPTIONS_INIT;
    a.actor = actor;
    a.cleanup = &cr;
    a.reason = r->reason;
    gw_event ev = r->verdict == GW_VERDICT_PASS ? GW_EVENT_CLEANUP_PASSED : GW_EVENT_CLEANUP_FAILED;
    rc = gw_registry_apply(reg, r->address, ev, &a, NULL);
    free(steps);
    return rc;
}
