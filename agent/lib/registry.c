/* SPDX-License-Identifier: Apache-2.0 */
/* The device registry: applies the lifecycle table to records, persisting
 * every change (checkpoint, then audit log) before it is announced. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "record.h"
#include "util.h"

/* Transitions kept in the checkpoint to complete the audit log after a crash
 * (one is enough for a killed process; more cover unsynced audit lines lost
 * with the page cache). */
#define JOURNAL_MAX 32

struct gw_registry {
    /* `lock` guards the records; `write_lock` is held by every change from
     * start to end (taken first), so that a checkpoint is written with
     * `lock` released: readers (the daemon's `gate`, its reads) see the
     * records as they were until the new ones are on disk, instead of
     * waiting for a worker's fsync. Only holders of write_lock change the
     * records, so they may read them while `lock` is released. (A scan's
     * batch, below, is in memory before its write, so readers may see it
     * then; nothing of it is announced before the write, and a failed write
     * undoes it.) */
    pthread_mutex_t lock;
    pthread_mutex_t write_lock;
    char *dir;                  /* NULL: in memory */
    char *audit_path;
    bool read_only;
    int lock_fd, audit_fd;
    gw_device **recs;
    size_t n, cap;
    uint64_t seq;               /* last transition */
    uint64_t audit_seq;         /* last transition in the audit log */
    uint64_t audit_max_bytes;   /* rotate audit.log at this size; 0 = never */
    unsigned audit_keep;        /* rotated segments kept */
    gw_transition journal[JOURNAL_MAX];   /* oldest first */
    size_t jn;
    gw_transition_cb cb;
    void *cb_data;
    /* Every change made in memory (transitions and facts), read without the
     * lock: a reader that caches what it built from the records (the
     * daemon's replies) compares it before taking anything. */
    _Atomic uint64_t version;
    _Atomic uint64_t writes;    /* checkpoint writes (each a write, fsync, rename, fsync of the directory) */
    struct batch *batch;        /* a scan's transitions, persisted together (sync); NULL: none */
};

/* A scan's transitions (gw_registry_sync) made in memory first, then
 * persisted in one checkpoint write per JOURNAL_MAX of them: the checkpoint
 * holds every transition whose audit record may not be written yet, so a
 * crash after the write still completes the audit log, and one before it
 * leaves the records as they were (the memory changes are undone when the
 * write fails). Nothing is announced (audit, callback) before its write.
 * A first start on 64 GPUs made 64 writes, each serialising every record. */
struct batch {
    gw_device **saved;          /* the record pointers before the batch */
    size_t saved_n;
    uint64_t saved_seq;
    gw_device **dropped;        /* records the batch replaced: freed once it is on disk */
    size_t n_dropped;
    gw_transition ts[JOURNAL_MAX];
    gw_device *after[JOURNAL_MAX];  /* each transition's record, for the callback */
    size_t nt;
};

static const char *const SYSTEM = "system";

/* ---- finding records ---------------------------------------------------- */

/* The record that `address` means: the device on the bus there, else the
 * missing one changed last. */
static ssize_t find_current(const gw_registry *reg, const char *address)
{
    ssize_t best = -1;
    for (size_t i = 0; i < reg->n; i++) {
        const gw_device *d = reg->recs[i];
        if (strcmp(d->identity.address, address))
            continue;
        if (!(d->flags & GW_FLAG_MISSING))
            return (ssize_t)i;
        if (best < 0 || d->seq > reg->recs[best]->seq)
            best = (ssize_t)i;
    }
    return best;
}

static ssize_t find_identity(const gw_registry *reg, const gw_identity *id)
{
    for (size_t i = 0; i < reg->n; i++)
        if (gw_identity_equal(&reg->recs[i]->identity, id))
            return (ssize_t)i;
    return -1;
}

/* ---- persistence -------------------------------------------------------- */

static void writer_lock(gw_registry *reg)
{
    pthread_mutex_lock(&reg->write_lock);
    pthread_mutex_lock(&reg->lock);
}

static void writer_unlock(gw_registry *reg)
{
    pthread_mutex_unlock(&reg->lock);
    pthread_mutex_unlock(&reg->write_lock);
}

/* Write the checkpoint with the records' lock released (see struct
 * gw_registry); the caller holds both locks, and holds them again after. */
static int write_checkpoint(gw_registry *reg, const char *body, size_t len)
{
    if (!body)
        return gw_error_set(-ENOMEM, "cannot encode the checkpoint");
    pthread_mutex_unlock(&reg->lock);
    int r = gw_checkpoint_write(reg->dir, body, len);
    pthread_mutex_lock(&reg->lock);
    atomic_fetch_add(&reg->writes, 1);
    return r;
}

static json_t *journal_jobj(const gw_registry *reg, const gw_transition *extra)
{
    json_t *a = json_array();
    const struct batch *b = reg->batch;
    size_t more = (extra ? 1 : 0) + (b ? b->nt : 0);
    size_t skip = reg->jn + more > JOURNAL_MAX ? reg->jn + more - JOURNAL_MAX : 0;
    for (size_t i = skip; i < reg->jn; i++)
        json_array_append_new(a, gw_transition_to_jobj(&reg->journal[i]));
    for (size_t i = 0; b && i < b->nt; i++)
        json_array_append_new(a, gw_transition_to_jobj(&b->ts[i]));
    if (extra)
        json_array_append_new(a, gw_transition_to_jobj(extra));
    return a;
}

/* The checkpoint body with record `idx` replaced by `cand` (idx == n:
 * appended), every record i with overlay[i] set replaced by it (overlay may
 * be NULL), and `extra` as the newest transition. */
static char *serialize(const gw_registry *reg, size_t idx, const gw_device *cand, gw_device *const *overlay,
                       const gw_transition *extra, size_t *len)
{
    json_t *devs = json_array();
    for (size_t i = 0; i < reg->n; i++) {
        const gw_device *rec = i == idx ? cand : overlay && overlay[i] ? overlay[i] : reg->recs[i];
        json_array_append_new(devs, gw_device_to_jobj(rec));
    }
    if (idx == reg->n)
        json_array_append_new(devs, gw_device_to_jobj(cand));
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("gpuwarden-checkpoint"));
    json_object_set_new(o, "version", json_integer(GW_CHECKPOINT_VERSION));
    json_object_set_new(o, "seq", json_integer((json_int_t)(extra ? extra->seq : reg->seq)));
    json_object_set_new(o, "written_ms", json_integer(gw_now_ms()));
    json_object_set_new(o, "devices", devs);
    json_object_set_new(o, "journal", journal_jobj(reg, extra));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body)
        *len = strlen(body);
    return body;
}

static bool touches_quarantine(const gw_transition *t)
{
    return t->from == GW_STATE_QUARANTINED || t->to == GW_STATE_QUARANTINED;
}

/* Append every journal entry the audit log lacks. A failure is logged and
 * retried on the next transition or open: the transition itself is already
 * persisted, so it is not undone. */
static void audit_catch_up(gw_registry *reg)
{
    if (reg->audit_fd < 0)
        return;
    for (size_t i = 0; i < reg->jn; i++) {
        const gw_transition *t = &reg->journal[i];
        if (t->seq <= reg->audit_seq)
            continue;
        if (t->seq != reg->audit_seq + 1)
            gw_log(GW_LOG_ERR, "%s: records %" PRIu64 "..%" PRIu64 " were lost before they "
                   "could be written", reg->audit_path, reg->audit_seq + 1, t->seq - 1);
        if (gw_audit_log_append(reg->audit_fd, reg->audit_path, t, touches_quarantine(t)) < 0) {
            gw_log(GW_LOG_ERR, "audit record %" PRIu64 " not written: %s", t->seq,
                   gw_error_message());
            return;
        }
        reg->audit_seq = t->seq;
        /* After the append, so a record is never split from its segment. A
         * failed rotation keeps appending where it was (logged; tried again
         * after the next record). */
        if (reg->audit_max_bytes &&
            gw_audit_log_rotate(reg->audit_fd, reg->dir, reg->audit_max_bytes, reg->audit_keep) < 0)
            gw_log(GW_LOG_ERR, "audit log rotation: %s", gw_error_message());
    }
}

static void journal_push(gw_registry *reg, const gw_transition *t)
{
    if (reg->jn == JOURNAL_MAX) {
        gw_transition_clear(&reg->journal[0]);
        memmove(reg->journal, reg->journal + 1, (JOURNAL_MAX - 1) * sizeof *reg->journal);
        reg->jn--;
    }
    gw_transition_copy(&reg->journal[reg->jn++], t);
}

/*
 * Make `cand` record `idx` (idx == n: a new record) with transition `t`
 * (NULL: a change that is not a transition). Takes ownership of cand. The
 * checkpoint is on disk before memory changes; then the audit log, then the
 * callback.
 */
static int batch_flush(gw_registry *reg);


/* Put cand in slot idx (idx == reg->n appends) and count a change for the
 * readers' caches; the record it replaces is the caller's, NULL on append. */
static gw_device *put_record(gw_registry *reg, size_t idx, gw_device *cand)
{
    gw_device *old = NULL;
    if (idx == reg->n) {
        if (reg->n == reg->cap) {
            reg->cap = reg->cap ? 2 * reg->cap : 16;
            reg->recs = gw_xrealloc(reg->recs, reg->cap, sizeof *reg->recs);
        }
        reg->recs[reg->n++] = cand;
    } else {
        old = reg->recs[idx];
        reg->recs[idx] = cand;
    }
    atomic_fetch_add(&reg->version, 1);
    return old;
}
/* In a batch: the change is made in memory only, kept to be persisted and
 * announced by batch_flush(), which runs when the batch holds JOURNAL_MAX. */
static int batch_commit(gw_registry *reg, size_t idx, gw_device *cand, const gw_transition *t)
{
    struct batch *b = reg->batch;
    gw_device *old = put_record(reg, idx, cand);
    if (old) {
        /* kept until the batch is written: a failed write puts it back */
        b->dropped = gw_xrealloc(b->dropped, b->n_dropped + 1, sizeof *b->dropped);
        b->dropped[b->n_dropped++] = old;
    }
    reg->seq = t->seq;
    gw_transition_copy(&b->ts[b->nt], t);
    b->after[b->nt++] = gw_device_copy(cand);
    return b->nt == JOURNAL_MAX ? batch_flush(reg) : 0;
}

static void batch_begin(gw_registry *reg, struct batch *b)
{
    memset(b, 0, sizeof *b);
    b->saved = gw_xcalloc(reg->n ? reg->n : 1, sizeof *b->saved);
    if (reg->n)
        memcpy(b->saved, reg->recs, reg->n * sizeof *reg->recs);
    b->saved_n = reg->n;
    b->saved_seq = reg->seq;
    reg->batch = b;
}

/* Persist what the batch holds, then announce it; on a failed write, undo
 * it in memory. The batch goes on (empty) either way. */
static int batch_flush(gw_registry *reg)
{
    struct batch *b = reg->batch;
    if (!b->nt)
        return 0;
    int r = 0;
    if (reg->dir) {
        size_t len = 0;
        _cleanup_free_ char *body = serialize(reg, SIZE_MAX, NULL, NULL, NULL, &len);
        r = write_checkpoint(reg, body, len);
    }
    if (r < 0) {
        /* Back to the records as they were: the new ones go, the replaced come back. */
        for (size_t i = 0; i < reg->n; i++) {
            bool old = false;
            for (size_t j = 0; j < b->saved_n && !old; j++)
                old = reg->recs[i] == b->saved[j];
            if (!old)
                gw_device_free(reg->recs[i]);
        }
        if (b->saved_n)
            memcpy(reg->recs, b->saved, b->saved_n * sizeof *reg->recs);
        reg->n = b->saved_n;
        reg->seq = b->saved_seq;
        atomic_fetch_add(&reg->version, 1);
    } else {
        for (size_t i = 0; i < b->n_dropped; i++)
            gw_device_free(b->dropped[i]);
        for (size_t i = 0; i < b->nt; i++)
            journal_push(reg, &b->ts[i]);
        audit_catch_up(reg);
        for (size_t i = 0; i < b->nt && reg->cb; i++)
            reg->cb(&b->ts[i], b->after[i], reg->cb_data);
    }
    for (size_t i = 0; i < b->nt; i++) {
        gw_transition_clear(&b->ts[i]);
        gw_device_free(b->after[i]);
    }
    b->nt = 0;
    free(b->dropped);
    b->dropped = NULL;
    b->n_dropped = 0;
    /* The next part of the batch starts from what is now on disk. */
    b->saved = gw_xrealloc(b->saved, reg->n ? reg->n : 1, sizeof *b->saved);
    if (reg->n)
        memcpy(b->saved, reg->recs, reg->n * sizeof *reg->recs);
    b->saved_n = reg->n;
    b->saved_seq = reg->seq;
    return r;
}

static int batch_end(gw_registry *reg)
{
    int r = batch_flush(reg);
    free(reg->batch->saved);
    reg->batch = NULL;
    return r;
}

static int commit(gw_registry *reg, size_t idx, gw_device *cand, const gw_transition *t)
{
    if (reg->batch && t)
        return batch_commit(reg, idx, cand, t);
    if (reg->batch) {
        int r = batch_flush(reg);   /* in order: what the batch holds goes first */
        if (r < 0) {
            gw_device_free(cand);
            return r;
        }
    }
    if (reg->dir) {
        size_t len = 0;
        _cleanup_free_ char *body = serialize(reg, idx, cand, NULL, t, &len);
        int r = write_checkpoint(reg, body, len);
        if (r < 0) {
            gw_device_free(cand);
            return r;
        }
    }
    gw_device_free(put_record(reg, idx, cand));
    if (t) {
        reg->seq = t->seq;
        journal_push(reg, t);
        audit_catch_up(reg);
        if (reg->cb)
            reg->cb(t, cand, reg->cb_data);
    }
    return 0;
}

/* ---- transitions -------------------------------------------------------- */

typedef struct change {
    gw_event event;
    const char *actor, *reason, *evidence;
    const gw_cleanup_result *cleanup;
} change;

static bool reason_required(gw_event e)
{
    return e == GW_EVENT_QUARANTINE || e == GW_EVENT_FAULT || e == GW_EVENT_CLEANUP_FAILED;
}

static int apply_locked(gw_registry *reg, size_t idx, const change *c, uint64_t *seq_out)
{
    const gw_device *rec = reg->recs[idx];
    const char *addr = rec->identity.address;
    gw_state to;
    unsigned to_flags;
    int r = gw_lifecycle_next(rec->state, rec->flags, c->event, &to, &to_flags);
    if (r < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", gw_error_message());
        return gw_error_set(r, "%s: %s", addr, why);
    }
    _cleanup_free_ char *actor = gw_text_clean(c->actor ? c->actor : SYSTEM, 256);
    _cleanup_free_ char *reason = gw_text_clean(c->reason, GW_TEXT_MAX);
    _cleanup_free_ char *evidence = gw_text_clean(c->evidence, GW_TEXT_MAX);

    gw_transition t = {
        .seq = reg->seq + 1, .time_ms = gw_now_ms(), .device = rec->identity,
        .event = c->event, .from = rec->state, .to = to,
        .from_flags = rec->flags, .to_flags = to_flags,
        .actor = actor, .reason = reason, .evidence = evidence,
    };
    gw_device *cand = gw_device_copy(rec);
    cand->state = to;
    cand->flags = to_flags;
    cand->seq = t.seq;
    cand->since_ms = t.time_ms;
    cand->last_event = c->event;
    gw_device_set_text(&cand->actor, actor);
    gw_device_set_text(&cand->reason, reason);
    gw_device_set_text(&cand->evidence, evidence);
    if (to == GW_STATE_QUARANTINED && rec->state != GW_STATE_QUARANTINED) {
        gw_device_set_text(&cand->quarantine_reason, reason);
        gw_device_set_text(&cand->quarantine_actor, actor);
        cand->quarantine_ms = t.time_ms;
    } else if (to != GW_STATE_QUARANTINED) {
        gw_device_set_text(&cand->quarantine_reason, "");
        gw_device_set_text(&cand->quarantine_actor, "");
        cand->quarantine_ms = 0;
    }
    if (c->cleanup && (c->event == GW_EVENT_CLEANUP_PASSED || c->event == GW_EVENT_CLEANUP_FAILED))
        gw_device_set_cleanup(cand, c->cleanup);

    r = commit(reg, idx, cand, &t);
    if (r < 0)
        return r;
    if (seq_out)
        *seq_out = t.seq;
    return 0;
}

static int found_locked(gw_registry *reg, const gw_identity *id, const char *actor,
                        const char *reason)
{
    _cleanup_free_ char *a = gw_text_clean(actor ? actor : SYSTEM, 256);
    _cleanup_free_ char *why = gw_text_clean(reason, GW_TEXT_MAX);
    gw_transition t = {
        .seq = reg->seq + 1, .time_ms = gw_now_ms(), .device = *id,
        .event = GW_EVENT_FOUND, .from = GW_STATE_NONE, .to = GW_LIFECYCLE_INITIAL_STATE,
        .from_flags = 0, .to_flags = GW_LIFECYCLE_INITIAL_FLAGS,
        .actor = a, .reason = why, .evidence = "",
    };
    gw_device *cand = gw_device_new_blank();
    cand->identity = *id;
    cand->seq = t.seq;
    cand->since_ms = cand->found_ms = t.time_ms;
    gw_device_set_text(&cand->actor, a);
    gw_device_set_text(&cand->reason, why);
    return commit(reg, reg->n, cand, &t);
}

static int check_cleanup(const char *address, const gw_cleanup_result *res)
{
    if (!res)
        return 0;
    if (res->n_steps && !res->steps)
        return gw_error_set(-EINVAL, "%s: clean-up result with %zu steps and no array", address,
                            res->n_steps);
    for (size_t i = 0; i < res->n_steps; i++) {
        const gw_cleanup_step *s = &res->steps[i];
        if (!s->name || !s->name[0] || strlen(s->name) > 64)
            return gw_error_set(-EINVAL, "%s: clean-up step %zu needs a name of 1..64 bytes",
                                address, i);
        if (!gw_verdict_valid(s->verdict))
            return gw_error_set(-EINVAL, "%s: clean-up step '%s': verdict '%s' is not pass, fail "
                                "or skip", address, s->name, s->verdict ? s->verdict : "(null)");
    }
    return 0;
}

static int check_writable(const gw_registry *reg)
{
    if (!reg)
        return gw_error_set(-EINVAL, "registry: NULL registry");
    if (reg->read_only)
        return gw_error_set(-EROFS, "registry %s is open read-only", reg->dir ? reg->dir : "");
    return 0;
}

/* The checks gw_registry_apply() makes before it takes the lock. */
static int check_apply(const char *address, gw_event event, const gw_apply_options *opts)
{
    if (opts->version < 1)
        return gw_error_set(-EINVAL, "gw_registry_apply: options version %u (initialise them "
                            "with GW_APPLY_OPTIONS_INIT)", opts->version);
    if (!address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "'%s' is not a PCI address like 0000:3b:00.0",
                            address ? address : "(null)");
    if ((unsigned)event >= GW_EVENT_COUNT)
        return gw_error_set(-EINVAL, "%s: unknown event %d", address, (int)event);
    if (event == GW_EVENT_FOUND || event == GW_EVENT_BACK)
        return gw_error_set(-EINVAL, "%s: %s comes from a scan: use gw_registry_observe()",
                            address, gw_event_name(event));
    if (reason_required(event) && (!opts->reason || !opts->reason[0]))
        return gw_error_set(-EINVAL, "%s: %s needs a reason", address, gw_event_name(event));
    return check_cleanup(address, opts->cleanup);
}

/* Caller holds both locks. */
static int apply_one_locked(gw_registry *reg, const char *address, gw_event event, const gw_apply_options *opts,
                            uint64_t *seq)
{
    ssize_t idx = find_current(reg, address);
    if (idx < 0)
        return gw_error_set(-ENOENT, "%s: no such device", address);
    if (opts->if_seq && reg->recs[idx]->seq != opts->if_seq)
        return gw_error_set(-ESTALE, "%s: changed since transition %" PRIu64 " (now at %" PRIu64 ")",
                            address, opts->if_seq, reg->recs[idx]->seq);
    change c = { event, opts->actor, opts->reason, opts->evidence, opts->cleanup };
    return apply_locked(reg, (size_t)idx, &c, seq);
}

GW_EXTERN int gw_registry_apply(gw_registry *reg, const char *address, gw_event event,
                                const gw_apply_options *opts, uint64_t *seq)
{
    static const gw_apply_options defaults = GW_APPLY_OPTIONS_INIT;
    int r = check_writable(reg);
    if (r < 0)
        return r;
    if (!opts)
        opts = &defaults;
    if ((r = check_apply(address, event, opts)) < 0)
        return r;
    writer_lock(reg);
    r = apply_one_locked(reg, address, event, opts, seq);
    writer_unlock(reg);
    return r;
}

GW_EXTERN int gw_registry_apply_many(gw_registry *reg, gw_apply_item *items, size_t n)
{
    static const gw_apply_options defaults = GW_APPLY_OPTIONS_INIT;
    int r = check_writable(reg);
    if (r < 0)
        return r;
    if (n && !items)
        return gw_error_set(-EINVAL, "gw_registry_apply_many: NULL items");
    writer_lock(reg);
    struct batch b;
    batch_begin(reg, &b);
    size_t done = 0, unwritten = 0;     /* items[unwritten..] applied in memory, not yet on disk */
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        gw_apply_item *it = &items[i];
        const gw_apply_options *o = it->opts ? it->opts : &defaults;
        it->seq = 0;
        if (failed) {
            it->result = failed;
            continue;
        }
        size_t held = b.nt;
        it->result = check_apply(it->address, it->event, o);
        if (it->result == 0)
            it->result = apply_one_locked(reg, it->address, it->event, o, &it->seq);
        /* A transition that filled the batch wrote it: on disk now, or
         * undone with the rest of the batch when the write failed (a
         * refusal before the transition leaves the batch as it was). */
        bool flushed = held + 1 == JOURNAL_MAX && b.nt == 0;
        if (flushed && it->result == 0)
            unwritten = i + 1;
        else if (flushed)
            failed = it->result;
        if (failed)
            for (size_t j = unwritten; j <= i; j++)
                items[j].result = failed;
    }
    int f = batch_end(reg);
    if (f < 0 && !failed)
        for (size_t j = unwritten; j < n; j++)
            if (items[j].result == 0)
                items[j].result = f;
    writer_unlock(reg);
    for (size_t i = 0; i < n; i++)
        done += items[i].result == 0;
    return f < 0 ? f : failed ? failed : (int)done;
}

static int observe_locked(gw_registry *reg, const gw_identity *id, const char *actor)
{
    char have[96], other_s[96];
    int count = 0, r;
    ssize_t exact = find_identity(reg, id);
    ssize_t other = -1;
    for (size_t i = 0; i < reg->n; i++) {
        const gw_device *d = reg->recs[i];
        if ((ssize_t)i != exact && !strcmp(d->identity.address, id->address) &&
            !(d->flags & GW_FLAG_MISSING))
            other = (ssize_t)i;
    }
    gw_identity_format(id, have, sizeof have);
    if (other >= 0) {
        gw_identity_format(&reg->recs[other]->identity, other_s, sizeof other_s);
        _cleanup_free_ char *why = gw_strdup_printf("replaced by a different card: %s", have);
        change c = { GW_EVENT_GONE, actor, why, NULL, NULL };
        if ((r = apply_locked(reg, (size_t)other, &c, NULL)) < 0)
            return r;
        count++;
    }
    if (exact >= 0) {
        if (!(reg->recs[exact]->flags & GW_FLAG_MISSING))
            return count;
        change c = { GW_EVENT_BACK, actor, "on the bus again", NULL, NULL };
        if ((r = apply_locked(reg, (size_t)exact, &c, NULL)) < 0)
            return r;
        return count + 1;
    }
    _cleanup_free_ char *why = other >= 0
        ? gw_strdup_printf("a different card at a known address (replaces %s)", other_s)
        : NULL;
    if ((r = found_locked(reg, id, actor, why)) < 0)
        return r;
    return count + 1;
}

static int check_identity(const gw_identity *id)
{
    if (!id || !memchr(id->address, '\0', GW_ADDR_LEN) || !gw_is_bdf(id->address))
        return gw_error_set(-EINVAL, "identity: '%.13s' is not a PCI address like 0000:3b:00.0",
                            id ? id->address : "(null)");
    return 0;
}

GW_EXTERN int gw_registry_observe(gw_registry *reg, const gw_identity *id, const char *actor)
{
    int r = check_writable(reg);
    if (r < 0 || (r = check_identity(id)) < 0)
        return r;
    writer_lock(reg);
    r = observe_locked(reg, id, actor);
    writer_unlock(reg);
    return r;
}

GW_EXTERN int gw_registry_sync(gw_registry *reg, const gw_identity *present, size_t n,
                               const char *actor)
{
    int r = check_writable(reg);
    if (r < 0)
        return r;
    if (n && !present)
        return gw_error_set(-EINVAL, "sync: NULL identity list");
    for (size_t i = 0; i < n; i++) {
        if ((r = check_identity(&present[i])) < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(present[i].address, present[j].address))
                return gw_error_set(-EINVAL, "sync: %s listed twice", present[i].address);
    }
    writer_lock(reg);
    struct batch b;
    batch_begin(reg, &b);
    int total = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        r = observe_locked(reg, &present[i], actor);
        if (r > 0)
            total += r;
    }
    for (size_t i = 0; i < reg->n && r >= 0; i++) {
        const gw_device *d = reg->recs[i];
        if (d->flags & GW_FLAG_MISSING)
            continue;
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = gw_identity_equal(&d->identity, &present[j]);
        if (seen)
            continue;
        change c = { GW_EVENT_GONE, actor, "not found on the bus by a scan", NULL, NULL };
        r = apply_locked(reg, i, &c, NULL);
        if (r >= 0)
            total++;
    }
    int f = batch_end(reg);
    if (r >= 0 && f < 0)
        r = f;
    writer_unlock(reg);
    return r < 0 ? r : total;
}

static bool fact_key_ok(const char *key)
{
    size_t len = key ? strlen(key) : 0;
    return len > 0 && len <= 64 && strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

GW_EXTERN int gw_registry_set_fact(gw_registry *reg, const char *address, const char *key,
                                   const char *value)
{
    int r = check_writable(reg);
    if (r < 0)
        return r;
    if (!address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "'%s' is not a PCI address", address ? address : "(null)");
    if (!fact_key_ok(key))
        return gw_error_set(-EINVAL, "%s: fact key '%s' must be 1-64 of [a-z0-9_.-]", address,
                            key ? key : "(null)");
    _cleanup_free_ char *v = value ? gw_text_clean(value, GW_TEXT_MAX) : NULL;
    writer_lock(reg);
    ssize_t idx = find_current(reg, address);
    if (idx < 0) {
        r = gw_error_set(-ENOENT, "%s: no such device", address);
    } else {
        gw_device *cand = gw_device_copy(reg->recs[idx]);
        gw_device_put_fact(cand, key, v);
        r = commit(reg, (size_t)idx, cand, NULL);
    }
    writer_unlock(reg);
    return r;
}

/* Every change of `pins` in one checkpoint write: the records are replaced
 * in memory only once it is on disk, so a crash leaves all of them or none.
 * A start on 64 GPUs pins four facts each; one write per fact made it 256
 * writes (each serialising every record, then fsync and rename). */
static int set_facts_locked(gw_registry *reg, const gw_fact_pin *pins, size_t n)
{
    gw_device **next = gw_xcalloc(reg->n ? reg->n : 1, sizeof *next);
    size_t changed = 0;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        ssize_t idx = find_current(reg, pins[i].address);
        if (idx < 0) {
            r = gw_error_set(-ENOENT, "%s: no such device", pins[i].address);
            break;
        }
        _cleanup_free_ char *v = pins[i].value ? gw_text_clean(pins[i].value, GW_TEXT_MAX) : NULL;
        const gw_device *cur = next[idx] ? next[idx] : reg->recs[idx];
        const char *now = gw_device_fact(cur, pins[i].key);
        if ((!now && !v) || (now && v && !strcmp(now, v)))
            continue;
        if (!next[idx]) {
            next[idx] = gw_device_copy(reg->recs[idx]);
            changed++;
        }
        gw_device_put_fact(next[idx], pins[i].key, v);
    }
    if (r == 0 && changed && reg->dir) {
        size_t len = 0;
        _cleanup_free_ char *body = serialize(reg, SIZE_MAX, NULL, next, NULL, &len);
        r = write_checkpoint(reg, body, len);
    }
    for (size_t i = 0; i < reg->n; i++) {
        if (!next[i])
            continue;
        if (r == 0) {
            gw_device_free(reg->recs[i]);
            reg->recs[i] = next[i];
        } else {
            gw_device_free(next[i]);
        }
    }
    free(next);
    if (r == 0 && changed)
        atomic_fetch_add(&reg->version, 1);
    return r;
}

GW_EXTERN int gw_registry_set_facts(gw_registry *reg, const gw_fact_pin *pins, size_t n)
{
    int r = check_writable(reg);
    if (r < 0)
        return r;
    if (n && !pins)
        return gw_error_set(-EINVAL, "gw_registry_set_facts: NULL pins");
    for (size_t i = 0; i < n; i++) {
        if (!pins[i].address || !gw_is_bdf(pins[i].address))
            return gw_error_set(-EINVAL, "'%s' is not a PCI address", pins[i].address ? pins[i].address : "(null)");
        if (!fact_key_ok(pins[i].key))
            return gw_error_set(-EINVAL, "%s: fact key '%s' must be 1-64 of [a-z0-9_.-]", pins[i].address,
                                pins[i].key ? pins[i].key : "(null)");
    }
    writer_lock(reg);
    r = set_facts_locked(reg, pins, n);
    writer_unlock(reg);
    return r;
}

/* ---- reading ------------------------------------------------------------ */

GW_EXTERN int gw_registry_get(gw_registry *reg, const char *address, gw_device **out)
{
    if (!reg || !address || !out)
        return gw_error_set(-EINVAL, "gw_registry_get: NULL argument");
    pthread_mutex_lock(&reg->lock);
    ssize_t idx = find_current(reg, address);
    int r = idx < 0 ? gw_error_set(-ENOENT, "%s: no such device", address) : 0;
    if (idx >= 0)
        *out = gw_device_copy(reg->recs[idx]);
    pthread_mutex_unlock(&reg->lock);
    return r;
}

static int list_order(const void *pa, const void *pb)
{
    const gw_device *a = *(gw_device *const *)pa, *b = *(gw_device *const *)pb;
    int c = strcmp(a->identity.address, b->identity.address);
    if (c)
        return c;
    bool ma = a->flags & GW_FLAG_MISSING, mb = b->flags & GW_FLAG_MISSING;
    if (ma != mb)
        return ma ? 1 : -1;
    return a->seq < b->seq ? 1 : a->seq > b->seq ? -1 : 0;
}

GW_EXTERN int gw_registry_list(gw_registry *reg, gw_device ***out, size_t *n)
{
    if (!reg || !out || !n)
        return gw_error_set(-EINVAL, "gw_registry_list: NULL argument");
    pthread_mutex_lock(&reg->lock);
    gw_device **list = gw_xcalloc(reg->n, sizeof *list);
    for (size_t i = 0; i < reg->n; i++)
        list[i] = gw_device_copy(reg->recs[i]);
    *n = reg->n;
    pthread_mutex_unlock(&reg->lock);
    qsort(list, *n, sizeof *list, list_order);
    *out = list;
    return 0;
}

GW_EXTERN uint64_t gw_registry_seq(gw_registry *reg)
{
    if (!reg)
        return 0;
    pthread_mutex_lock(&reg->lock);
    uint64_t s = reg->seq;
    pthread_mutex_unlock(&reg->lock);
    return s;
}

GW_EXTERN uint64_t gw_registry_version(gw_registry *reg)
{
    return reg ? atomic_load(&reg->version) : 0;
}

GW_EXTERN uint64_t gw_registry_checkpoint_writes(gw_registry *reg)
{
    return reg ? atomic_load(&reg->writes) : 0;
}

GW_EXTERN const char *gw_registry_state_dir(const gw_registry *reg)
{
    return reg ? reg->dir : NULL;
}

GW_EXTERN void gw_registry_set_callback(gw_registry *reg, gw_transition_cb cb, void *userdata)
{
    if (!reg)
        return;
    pthread_mutex_lock(&reg->lock);
    reg->cb = cb;
    reg->cb_data = userdata;
    pthread_mutex_unlock(&reg->lock);
}

/* ---- open, load, recover ------------------------------------------------ */

#define BADCK(...) gw_error_set(GW_ESTATE_CORRUPT, __VA_ARGS__)

/* Load the checkpoint of `dir` into an empty registry whose dir is still
 * unset, so that commit() only fills memory. */
static int load(gw_registry *reg, const char *dir)
{
    _cleanup_free_ char *body = NULL;
    size_t len;
    int r = gw_checkpoint_read(dir, &body, &len);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME, dir);
    json_error_t jerr;
    json_t *o = json_loadb(body, len, 0, &jerr);
    if (!o)
        return BADCK("%s: corrupt checkpoint: body is not JSON: %s", path, jerr.text);
    json_t *fmt = json_object_get(o, "format"), *ver = json_object_get(o, "version");
    json_t *seq = json_object_get(o, "seq"), *devs = json_object_get(o, "devices");
    json_t *jour = json_object_get(o, "journal");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "gpuwarden-checkpoint") ||
        !json_is_integer(ver) || json_integer_value(ver) != GW_CHECKPOINT_VERSION ||
        !json_is_integer(seq) || json_integer_value(seq) < 0 || !json_is_array(devs) ||
        !json_is_array(jour) || json_array_size(jour) > JOURNAL_MAX) {
        json_decref(o);
        return BADCK("%s: corrupt checkpoint: bad format, version, seq, devices or journal", path);
    }
    reg->seq = (uint64_t)json_integer_value(seq);
    char ctx[PATH_MAX + 32];
    for (size_t i = 0; i < json_array_size(devs) && r >= 0; i++) {
        snprintf(ctx, sizeof ctx, "%s: corrupt checkpoint: devices[%zu]", path, i);
        gw_device *d;
        r = gw_device_from_jobj(json_array_get(devs, i), &d, ctx);
        if (r < 0)
            break;
        if (d->seq > reg->seq || find_identity(reg, &d->identity) >= 0) {
            gw_device_free(d);
            r = BADCK("%s: duplicate device or seq beyond the checkpoint's", ctx);
            break;
        }
        commit(reg, reg->n, d, NULL);
    }
    for (size_t i = 0; i < json_array_size(jour) && r >= 0; i++) {
        snprintf(ctx, sizeof ctx, "%s: corrupt checkpoint: journal[%zu]", path, i);
        gw_transition t;
        r = gw_transition_from_jobj(json_array_get(jour, i), &t, ctx);
        if (r < 0)
            break;
        bool last = i + 1 == json_array_size(jour);
        if (t.seq > reg->seq || (reg->jn && t.seq <= reg->journal[reg->jn - 1].seq) ||
            (last && t.seq != reg->seq)) {
            gw_transition_clear(&t);
            r = BADCK("%s: out of sequence", ctx);
            break;
        }
        reg->journal[reg->jn++] = t;
    }
    json_decref(o);
    return r;
}

static int take_lock(const char *dir, int *out)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_LOCK_NAME, dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return gw_error_set(-EBUSY, "%s: the state directory is in use by another gpuwarden "
                                "process", dir);
        return gw_error_set(-e, "lock %s: %s", path, strerror(e));
    }
    *out = fd;
    return 0;
}

static int open_audit(gw_registry *reg)
{
    int r = gw_audit_log_open(reg->dir, &reg->audit_fd, &reg->audit_seq);
    if (r < 0)
        return r;
    if (reg->audit_seq > reg->seq) {
        /* The checkpoint was reset or restored: never reuse a number. */
        gw_log(GW_LOG_WARNING, "%s is ahead of the checkpoint (%" PRIu64 " > %" PRIu64 "): "
               "numbering continues after %" PRIu64, reg->audit_path, reg->audit_seq, reg->seq,
               reg->audit_seq);
        reg->seq = reg->audit_seq;
    }
    audit_catch_up(reg);
    return 0;
}

static int recover(gw_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (!(reg->recs[i]->flags & GW_FLAG_CLEANING))
            continue;
        change c = { GW_EVENT_CLEANUP_ABORTED, SYSTEM,
                     "clean-up interrupted: gpuwarden stopped during it; clean up again", NULL,
                     NULL };
        int r = apply_locked(reg, i, &c, NULL);
        if (r < 0)
            return r;
        gw_log(GW_LOG_NOTICE, "%s: clean-up was interrupted, it will run again",
               reg->recs[i]->identity.address);
    }
    return 0;
}

static int prepare_dir(const char *dir, bool read_only)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return gw_error_set(-ENOTDIR, "%s: not a directory", dir);
        return 0;
    }
    if (errno != ENOENT || read_only)
        return gw_error_set(-errno, "%s: %s", dir, strerror(errno));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return gw_error_set(-errno, "mkdir %s: %s", dir, strerror(errno));
    return 0;
}

GW_EXTERN void gw_registry_free(gw_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        gw_device_free(reg->recs[i]);
    free(reg->recs);
    for (size_t i = 0; i < reg->jn; i++)
        gw_transition_clear(&reg->journal[i]);
    if (reg->audit_fd >= 0)
        close(reg->audit_fd);
    if (reg->lock_fd >= 0)
        close(reg->lock_fd);
    pthread_mutex_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->write_lock);
    free(reg->audit_path);
    free(reg->dir);
    free(reg);
}

GW_EXTERN int gw_registry_open(gw_registry **out, const gw_registry_options *opts)
{
    static const gw_registry_options defaults = GW_REGISTRY_OPTIONS_INIT;
    if (!out)
        return gw_error_set(-EINVAL, "gw_registry_open: NULL out");
    if (!opts)
        opts = &defaults;
    if (opts->version < 1)
        return gw_error_set(-EINVAL, "gw_registry_open: options version %u (initialise them "
                            "with GW_REGISTRY_OPTIONS_INIT)", opts->version);
    if (opts->version >= 2 && opts->audit_segment_bytes &&
        (opts->audit_segments < 1 || opts->audit_segments > 100000))
        return gw_error_set(-EINVAL, "gw_registry_open: audit_segments must be 1..100000 with rotation "
                            "(audit_segment_bytes %" PRIu64 "), not %u", opts->audit_segment_bytes,
                            opts->audit_segments);
    gw_registry *reg = gw_xcalloc(1, sizeof *reg);
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->write_lock, NULL);
    reg->lock_fd = reg->audit_fd = -1;
    reg->read_only = opts->read_only;
    if (opts->version >= 2) {   /* a version-1 struct ends before them */
        reg->audit_max_bytes = opts->audit_segment_bytes;
        reg->audit_keep = opts->audit_segments;
    }
    int r = 0;
    if (opts->state_dir) {
        const char *dir = opts->state_dir;
        reg->audit_path = gw_strdup_printf("%s/" GW_AUDIT_NAME, dir);
        if ((r = prepare_dir(dir, opts->read_only)) < 0 ||
            (!opts->read_only && (r = take_lock(dir, &reg->lock_fd)) < 0))
            goto fail;
        if (!opts->read_only) {
            _cleanup_free_ char *tmp = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME ".tmp", dir);
            unlink(tmp);    /* a write cut short by a crash; the rename never happened */
        }
        if ((r = load(reg, dir)) < 0)
            goto fail;
        reg->dir = gw_xstrdup(dir);
        pthread_mutex_lock(&reg->lock);
        if (!opts->read_only && ((r = open_audit(reg)) < 0 || (r = recover(reg)) < 0)) {
            pthread_mutex_unlock(&reg->lock);
            goto fail;
        }
        pthread_mutex_unlock(&reg->lock);
    }
    *out = reg;
    return 0;
fail:
    gw_registry_free(reg);
    return r;
}

GW_EXTERN int gw_registry_reset_state(const char *state_dir, char **moved_to)
{
    if (!state_dir)
        return gw_error_set(-EINVAL, "gw_registry_reset_state: no state directory");
    if (moved_to)
        *moved_to = NULL;
    int r = prepare_dir(state_dir, true);
    if (r < 0)
        return r;
    _cleanup_close_ int lock_fd = -1;
    if ((r = take_lock(state_dir, &lock_fd)) < 0)
        return r;
    return gw_checkpoint_reset(state_dir, moved_to);
}
