/* SPDX-License-Identifier: Apache-2.0 */
/* Crash test: a child process applies random transitions to a persisted
 * registry and is SIGKILLed at a random moment, again and again on the same
 * state directory. After every kill:
 *   - the checkpoint loads (never corrupt) and no device in it is sanitized
 *     or allocatable while dirty;
 *   - every transition the child announced (its callback writes the seq to a
 *     pipe) is in the checkpoint and already in the audit log;
 *   - the audit log lags the checkpoint by at most the one transition in
 *     flight, and once the registry is reopened it holds exactly 1..seq;
 *   - replaying the audit log from nothing gives every record's condition,
 *     and along the way nothing became sanitized/allocatable without a
 *     passing clean-up since it was dirtied, and no quarantine was left but
 *     by release.
 * GW_CRASH_KILLS (default 200) sets the number of kills, GW_CRASH_SEED
 * replays a run. scripts/bench.d/lifecycle-crash runs it with 10,000. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>

#include "lifecycle_helpers.h"
#include "record.h"
#include "util.h"

#define ADDRS 4
#define CARDS 2
#define IDS (ADDRS * CARDS)

static int id_index(const gw_identity *id)
{
    for (unsigned a = 0; a < ADDRS; a++)
        for (unsigned c = 0; c < CARDS; c++) {
            gw_identity t = test_identity(0x20 + a, c);
            if (gw_identity_equal(&t, id))
                return (int)(a * CARDS + c);
        }
    return -1;
}

/* ---- the child -------------------------------------------------------- */

static int report_fd = -1;

static void report(const gw_transition *t, const gw_device *after, void *ud)
{
    uint64_t seq = t->seq;
    if (write(report_fd, &seq, sizeof seq) != sizeof seq)
        _exit(5);
}

static const unsigned weights[GW_EVENT_COUNT] = {
    [GW_EVENT_CLEANUP_STARTED] = 6, [GW_EVENT_CLEANUP_PASSED] = 10, [GW_EVENT_CLEANUP_FAILED] = 1,
    [GW_EVENT_CLEANUP_ABORTED] = 1, [GW_EVENT_PUBLISHED] = 8, [GW_EVENT_ATTACH_SEEN] = 2,
    [GW_EVENT_DETACH_SEEN] = 2, [GW_EVENT_FAULT] = 1, [GW_EVENT_QUARANTINE] = 1,
    [GW_EVENT_RELEASE] = 3, [GW_EVENT_SANITIZE] = 1, [GW_EVENT_GONE] = 1,
};

/* A weighted choice among the events the table accepts for `dev` now, so
 * that (nearly) every call is a transition: each one costs fsyncs, and the
 * kills must find the children busy writing. */
static gw_event pick_event(uint64_t *rng, const gw_device *dev)
{
    unsigned w[GW_EVENT_COUNT], total = 0;
    for (int e = 0; e < GW_EVENT_COUNT; e++) {
        bool legal = gw_lifecycle_next(dev->state, dev->flags, (gw_event)e, NULL, NULL) == 0;
        w[e] = legal ? weights[e] : 0;
        total += w[e];
    }
    if (!total)
        return GW_EVENT_FAULT;
    unsigned x = rng_below(rng, total);
    for (int e = 0; e < GW_EVENT_COUNT; e++) {
        if (x < w[e])
            return (gw_event)e;
        x -= w[e];
    }
    return GW_EVENT_FAULT;
}

static void scan(gw_registry *reg, uint64_t *rng)
{
    gw_identity bus[ADDRS];
    size_t n = 0;
    for (unsigned a = 0; a < ADDRS; a++) {
        unsigned p = rng_below(rng, 10);
        if (p >= 1)
            bus[n++] = test_identity(0x20 + a, p >= 9 ? 1 : 0);
    }
    if (gw_registry_sync(reg, bus, n, "scan") < 0)
        _exit(6);
}

static _Noreturn void child(const char *dir, uint64_t seed, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    report_fd = fd;
    gw_log_set_level(GW_LOG_ERR);
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    gw_registry *reg = NULL;
    if (gw_registry_open(&reg, &o) < 0) {
        fprintf(stderr, "child: %s\n", gw_error_message());
        _exit(3);
    }
    gw_registry_set_callback(reg, report, NULL);
    uint64_t rng = seed;
    scan(reg, &rng);
    for (int i = 0; i < 1000000; i++) {
        if (rng_below(&rng, 100) < 2) {
            scan(reg, &rng);
            continue;
        }
        char addr[GW_ADDR_LEN];
        snprintf(addr, sizeof addr, "0000:%02x:00.0", 0x20 + rng_below(&rng, ADDRS));
        if (rng_below(&rng, 50) == 0) {
            gw_registry_set_fact(reg, addr, "rom_sha256", rng_below(&rng, 2) ? "aa" : "bb");
            continue;
        }
        gw_apply_options a = GW_APPLY_OPTIONS_INIT;
        a.reason = "crash test";
        gw_cleanup_step st = { "reset", "pass", "flr", 1 };
        gw_cleanup_result res = { 1, 2, true, &st, 1 };
        a.cleanup = &res;
        gw_device *dev = NULL;
        if (gw_registry_get(reg, addr, &dev) < 0)
            continue;
        int r = gw_registry_apply(reg, addr, pick_event(&rng, dev), &a, NULL);
        gw_device_free(dev);
        if (r < 0 && r != -EPERM && r != -EALREADY && r != -EBUSY && r != -ENOENT) {
            fprintf(stderr, "child: %s\n", gw_error_message());
            _exit(7);
        }
    }
    _exit(4);   /* never reached in time: the parent kills long before */
}

/* ---- the checker ------------------------------------------------------ */

typedef struct model {
    bool exists, passed_since, quarantined;
    gw_state state;
    unsigned flags;
} model;

typedef struct checker {
    const char *dir;
    char *audit_path;
    off_t offset;               /* end of the last audit line replayed */
    uint64_t audit_seq;         /* seq of that line */
    model m[IDS];
    /* figures */
    uint64_t kills, announced, audit_behind, tmp_left, torn_lines, cleanups_interrupted;
    uint64_t allocatable_seen;
} checker;

static bool dirtying(gw_event e)
{
    return e == GW_EVENT_FOUND || e == GW_EVENT_ATTACH_SEEN || e == GW_EVENT_DETACH_SEEN ||
           e == GW_EVENT_RELEASE || e == GW_EVENT_SANITIZE || e == GW_EVENT_GONE ||
           e == GW_EVENT_CLEANUP_STARTED;
}

static void replay(checker *c, const gw_transition *t)
{
    if (t->seq != c->audit_seq + 1)
        fail_msg("audit: seq %" PRIu64 " follows %" PRIu64, t->seq, c->audit_seq);
    c->audit_seq = t->seq;
    int i = id_index(&t->device);
    if (i < 0)
        fail_msg("audit: unknown device %s", t->device.address);
    model *m = &c->m[i];
    if (t->event == GW_EVENT_FOUND) {
        if (m->exists)
            fail_msg("audit seq %" PRIu64 ": found twice", t->seq);
        m->exists = true;
    } else if (!m->exists || t->from != m->state || t->from_flags != m->flags) {
        fail_msg("audit seq %" PRIu64 ": from %s/%x, but the log so far says %s/%x", t->seq,
                 gw_state_name(t->from), t->from_flags, gw_state_name(m->state), m->flags);
    }
    if (t->event == GW_EVENT_CLEANUP_PASSED)
        m->passed_since = true;
    else if (dirtying(t->event))
        m->passed_since = false;
    if ((t->to == GW_STATE_SANITIZED || t->to == GW_STATE_ALLOCATABLE) &&
        (!m->passed_since || t->to_flags))
        fail_msg("audit seq %" PRIu64 ": %s without a passing clean-up", t->seq,
                 gw_state_name(t->to));
    if (t->to == GW_STATE_ALLOCATABLE)
        c->allocatable_seen++;
    if (m->quarantined && t->to != GW_STATE_QUARANTINED && t->event != GW_EVENT_RELEASE)
        fail_msg("audit seq %" PRIu64 ": quarantine left by %s", t->seq, gw_event_name(t->event));
    m->quarantined = t->to == GW_STATE_QUARANTINED;
    m->state = t->to;
    m->flags = t->to_flags;
}

/* Replay the audit lines written since the last call; a last line without
 * its newline (a write the kill cut short) is counted, not consumed. */
static void read_new_audit(checker *c)
{
    int fd = open(c->audit_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && c->offset == 0)
        return;     /* the first child was killed before it created the log */
    if (fd < 0)
        fail_msg("%s: %s", c->audit_path, strerror(errno));
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    if (st.st_size < c->offset)
        fail_msg("audit log shrank below replayed data: %jd < %jd", (intmax_t)st.st_size,
                 (intmax_t)c->offset);
    size_t len = (size_t)(st.st_size - c->offset);
    char *buf = malloc(len + 1);
    assert_int_equal(pread(fd, buf, len, c->offset), (ssize_t)len);
    close(fd);
    buf[len] = '\0';
    size_t pos = 0;
    while (pos < len) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) {
            c->torn_lines++;
            break;
        }
        *nl = '\0';
        json_error_t jerr;
        json_t *o = json_loads(buf + pos, 0, &jerr);
        if (!o)
            fail_msg("audit line at %jd is not JSON: %s", (intmax_t)(c->offset + (off_t)pos),
                     jerr.text);
        gw_transition t;
        if (gw_transition_from_jobj(o, &t, "audit") < 0)
            fail_msg("%s", gw_error_message());
        json_decref(o);
        replay(c, &t);
        gw_transition_clear(&t);
        pos = (size_t)(nl - buf) + 1;
    }
    c->offset += (off_t)pos;
    free(buf);
}

static gw_registry *open_view(const char *dir)
{
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    o.read_only = true;
    gw_registry *reg = NULL;
    if (gw_registry_open(&reg, &o) < 0)
        fail_msg("state does not load after a kill: %s", gw_error_message());
    return reg;
}

/* Records against the replayed log, and the invariants on the records. */
static void compare_records(checker *c, gw_registry *reg, bool strict)
{
    gw_device **list = NULL;
    size_t n = 0;
    assert_int_equal(gw_registry_list(reg, &list, &n), 0);
    for (size_t k = 0; k < n; k++) {
        const gw_device *d = list[k];
        if ((d->state == GW_STATE_SANITIZED || d->state == GW_STATE_ALLOCATABLE) && d->flags)
            fail_msg("%s %s but flags %x", d->identity.address, gw_state_name(d->state), d->flags);
        if (!strict)
            continue;
        int i = id_index(&d->identity);
        if (i < 0 || !c->m[i].exists || c->m[i].state != d->state || c->m[i].flags != d->flags)
            fail_msg("%s: checkpoint says %s/%x, the audit log %s/%x", d->identity.address,
                     gw_state_name(d->state), d->flags, i < 0 ? "?" : gw_state_name(c->m[i].state),
                     i < 0 ? 0 : c->m[i].flags);
        if ((d->state == GW_STATE_SANITIZED || d->state == GW_STATE_ALLOCATABLE) &&
            !c->m[i].passed_since)
            fail_msg("%s %s without a passing clean-up", d->identity.address,
                     gw_state_name(d->state));
    }
    gw_device_list_free(list, n);
}

static void after_kill(checker *c, const uint64_t *announced, size_t n_announced, bool repair)
{
    char *tmp = gw_strdup_printf("%s/" GW_CHECKPOINT_NAME ".tmp", c->dir);
    struct stat st;
    if (stat(tmp, &st) == 0)
        c->tmp_left++;
    free(tmp);

    /* 1. as the kill left it */
    gw_registry *view = open_view(c->dir);
    uint64_t seq = gw_registry_seq(view);
    gw_device **list = NULL;
    size_t n = 0;
    assert_int_equal(gw_registry_list(view, &list, &n), 0);
    for (size_t k = 0; k < n; k++)
        if (list[k]->flags & GW_FLAG_CLEANING)
            c->cleanups_interrupted++;
    gw_device_list_free(list, n);
    read_new_audit(c);
    /* One transition is persisted at a time, except a scan's, which go
     * together, up to the checkpoint journal's 32 (registry.c, "batch"):
     * the audit log may lack that many, all of them in the journal (the
     * reopen below checks that it completes the log). */
    if (c->audit_seq > seq || seq - c->audit_seq > 32)
        fail_msg("audit log at %" PRIu64 ", checkpoint at %" PRIu64, c->audit_seq, seq);
    if (c->audit_seq < seq)
        c->audit_behind++;
    for (size_t k = 0; k < n_announced; k++)
        if (announced[k] > c->audit_seq)
            fail_msg("transition %" PRIu64 " was announced before it was in the audit log "
                     "(audit at %" PRIu64 ", checkpoint at %" PRIu64 ")", announced[k],
                     c->audit_seq, seq);
    c->announced += n_announced;
    compare_records(c, view, c->audit_seq == seq);
    gw_registry_free(view);
    if (!repair)
        return;     /* the next child's open repairs, and may be killed doing it */

    /* 2. reopened as the daemon would: log completed, clean-ups re-queued */
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = c->dir;
    gw_registry *reg = NULL;
    if (gw_registry_open(&reg, &o) < 0)
        fail_msg("reopen: %s", gw_error_message());
    seq = gw_registry_seq(reg);
    gw_registry_free(reg);
    read_new_audit(c);
    if (c->audit_seq != seq)
        fail_msg("after reopen the audit log ends at %" PRIu64 ", the checkpoint at %" PRIu64,
                 c->audit_seq, seq);
    view = open_view(c->dir);
    assert_int_equal(gw_registry_list(view, &list, &n), 0);
    for (size_t k = 0; k < n; k++)
        if (list[k]->flags & GW_FLAG_CLEANING)
            fail_msg("%s still cleaning after recovery", list[k]->identity.address);
    gw_device_list_free(list, n);
    compare_records(c, view, true);
    gw_registry_free(view);
}

/* Removed by the teardown even when a check fails. */
static char *crash_dir;

static int remove_dir(void **state)
{
    rm_tree(crash_dir);
    crash_dir = NULL;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void kill_at_random_moments(void **state)
{
    const char *v = getenv("GW_CRASH_KILLS");
    uint64_t kills = v && *v ? strtoull(v, NULL, 0) : 200;
    uint64_t seed = test_seed("GW_CRASH_SEED");
    print_message("crash seed: %" PRIu64 " (GW_CRASH_SEED=%" PRIu64 " replays), %" PRIu64
                  " kills\n", seed, seed, kills);
    checker c = { 0 };
    gw_log_set_level(GW_LOG_ERR);   /* repairs and recoveries are expected here */
    char *dir = crash_dir = tmp_state_dir("crash");
    c.dir = dir;
    c.audit_path = gw_strdup_printf("%s/" GW_AUDIT_NAME, dir);
    uint64_t rng = seed;
    double t0 = now_s();
    uint64_t max_announced = 0, per_transition_us = 5000, child_transitions = 0;
    double child_s = 0;
    for (uint64_t k = 0; k < kills; k++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(dir, seed + k + 1, p[1]);
        }
        close(p[1]);
        /* a third of the kills land early (during open, log repair,
         * recovery), the rest after up to 2 or up to 8 transitions, at the
         * speed this machine's fsync allows (measured as we go) */
        uint64_t spread_us[3] = { 2000, 2 * per_transition_us, 8 * per_transition_us };
        uint64_t us = rng_next(&rng) % spread_us[rng_below(&rng, 3)];
        if (us > 500000)
            us = 500000;
        struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
        double started = now_s();
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        child_s += now_s() - started;
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("kill %" PRIu64 ": the child ended on its own (status 0x%x)", k, status);

        uint64_t announced[4096];
        size_t n = 0;
        ssize_t got;
        while (n < 4096 && (got = read(p[0], &announced[n], sizeof *announced)) == sizeof *announced)
            n++;
        close(p[0]);
        for (size_t i = 0; i < n; i++)
            if (announced[i] > max_announced)
                max_announced = announced[i];
        c.kills++;
        uint64_t before = c.audit_seq;
        after_kill(&c, announced, n, k % 2 == 0);
        child_transitions += c.audit_seq - before;
        if (child_transitions >= 5)
            per_transition_us = (uint64_t)(child_s * 1e6 / (double)child_transitions) + 1;
    }
    /* the last word: reopened, complete, consistent */
    after_kill(&c, NULL, 0, true);
    double secs = now_s() - t0;
    print_message("crash: %" PRIu64 " kills in %.1f s (%.1f ms per transition), %" PRIu64
                  " transitions persisted, %" PRIu64
                  " announced by the children; kills that left the audit log one behind the "
                  "checkpoint: %" PRIu64 ", a checkpoint temp file: %" PRIu64 ", a torn audit "
                  "line: %" PRIu64 ", a clean-up running: %" PRIu64 "; allocatable reached %"
                  PRIu64 " times; failures: 0\n", c.kills, secs, per_transition_us / 1000.0,
                  c.audit_seq, c.announced,
                  c.audit_behind, c.tmp_left, c.torn_lines, c.cleanups_interrupted,
                  c.allocatable_seen);
    const char *out = getenv("GW_CRASH_STATS");
    if (out && *out) {
        FILE *f = fopen(out, "w");
        if (f) {
            fprintf(f, "kills=%" PRIu64 "\nseconds=%.1f\nms_per_transition=%.2f\ntransitions=%" PRIu64 "\nannounced=%"
                    PRIu64 "\naudit_behind=%" PRIu64 "\ntmp_left=%" PRIu64 "\ntorn_lines=%"
                    PRIu64 "\ncleanups_interrupted=%" PRIu64 "\nallocatable=%" PRIu64
                    "\nfailures=0\nseed=%" PRIu64 "\n", c.kills, secs, per_transition_us / 1000.0,
                    c.audit_seq, c.announced,
                    c.audit_behind, c.tmp_left, c.torn_lines, c.cleanups_interrupted,
                    c.allocatable_seen, seed);
            fclose(f);
        }
    }
    assert_true(c.audit_seq > 0);
    assert_true(max_announced <= c.audit_seq);
    free(c.audit_path);
}

/* What crash safety costs: the same transitions on a persisted registry
 * (checkpoint + fsyncs + audit line) and on one in memory, side by side.
 * Figures only, no timed assertion; GW_CRASH_COST_CYCLES (default 20 cycles
 * of 5 transitions) sets the length for scripts/bench. */
static double cost_us(gw_registry *reg, uint64_t cycles)
{
    static const gw_event cycle[] = { GW_EVENT_CLEANUP_STARTED, GW_EVENT_CLEANUP_PASSED,
                                      GW_EVENT_PUBLISHED, GW_EVENT_ATTACH_SEEN,
                                      GW_EVENT_DETACH_SEEN };
    gw_identity id = test_identity(0x20, 0);
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);
    uint64_t first = gw_registry_seq(reg);
    double t0 = now_s();
    for (uint64_t i = 0; i < cycles; i++)
        for (size_t e = 0; e < 5; e++)
            assert_int_equal(gw_registry_apply(reg, id.address, cycle[e], NULL, NULL), 0);
    double us = (now_s() - t0) * 1e6 / (double)(cycles * 5);
    assert_int_equal(gw_registry_seq(reg), first + cycles * 5);
    return us;
}

static void durable_vs_memory_cost(void **state)
{
    const char *v = getenv("GW_CRASH_COST_CYCLES");
    uint64_t cycles = v && *v ? strtoull(v, NULL, 0) : 20;
    char *dir = crash_dir = tmp_state_dir("cost");
    gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
    o.state_dir = dir;
    gw_registry *disk = NULL, *mem = NULL;
    assert_int_equal(gw_registry_open(&disk, &o), 0);
    assert_int_equal(gw_registry_open(&mem, NULL), 0);
    double d = cost_us(disk, cycles), m = cost_us(mem, cycles);
    gw_registry_free(disk);
    gw_registry_free(mem);
    print_message("cost: %" PRIu64 " transitions each: persisted %.1f us, in memory %.2f us per "
                  "transition (x%.0f)\n", cycles * 5, d, m, m > 0 ? d / m : 0);
    const char *out = getenv("GW_CRASH_STATS");
    FILE *f = out && *out ? fopen(out, "a") : NULL;
    if (f) {
        fprintf(f, "cost_transitions=%" PRIu64 "\ncost_persisted_us=%.1f\ncost_memory_us=%.2f\n",
                cycles * 5, d, m);
        fclose(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(kill_at_random_moments, remove_dir),
        cmocka_unit_test_teardown(durable_vs_memory_cost, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
