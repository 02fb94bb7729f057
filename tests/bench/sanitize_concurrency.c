/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark: 8 GPUs cleaned at once on the worker pool, with and without one
 * device whose reset write blocks for 2 s (simulated backend over a fixture
 * tree). Measures the other devices' clean-up latency (submit -> result) and
 * the latency of requests (busy query + refused duplicate submit) made while
 * the hung device blocks, beside the same requests on an idle pool.
 * Usage: sanitize_concurrency ROUNDS   (prints a Markdown table) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hostops_sim.h"
#include "sanitize_fixture.h"
#include "sanitize_internal.h"

#define NDEV 8
#define HANG_MS 2000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct done_log {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int n;
    double at[NDEV];
    char addr[NDEV][13];
    int failed;
} done_log;

static void on_done(gw_sanitize_result *r, void *u)
{
    done_log *d = u;
    double t = now_ms();
    pthread_mutex_lock(&d->lock);
    if (d->n < NDEV) {
        d->at[d->n] = t;
        snprintf(d->addr[d->n], 13, "%s", gw_sanitize_result_address(r));
        d->n++;
    }
    if (gw_sanitize_result_verdict(r) != GW_VERDICT_PASS) {
        fprintf(stderr, "%s: %s\n", gw_sanitize_result_address(r), gw_sanitize_result_reason(r));
        d->failed++;
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->lock);
    gw_sanitize_result_free(r);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

typedef struct figures {
    double others_p50, others_max, hung_mean;
    double req_p50, req_p99, req_max;       /* busy + pending queries */
    size_t n_req;
    double sub_p50, sub_max;                /* duplicate submit, refused */
} figures;

/* One scenario: `rounds` rounds of 8 devices submitted at once; device 0's
 * reset blocks `hang_ms` (0 = none). Requests are timed while device 0 is busy
 * (or, without a hang, on the idle pool between rounds). */
static figures scenario(const char *root, unsigned workers, unsigned hang_ms, int rounds)
{
    gw_hostops *ops;
    gw_sim *sim;
    if (gw_hostops_sim_new(&ops, &sim, root) < 0) {
        fprintf(stderr, "%s\n", gw_error_message());
        exit(1);
    }
    if (hang_ms)
        gw_sim_delay_write(sim, "sys/bus/pci/devices/0000:03:00.0/reset", hang_ms);
    static fx_attach att;
    fx_attach_init(&att);
    static uint16_t vendors[] = { 0x10de };
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.manage_vendors = vendors;
    pol.n_manage_vendors = 1;
    pol.hooks_dir = "/nonexistent/gpuwarden-bench-hooks";
    done_log d = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    gw_cleanup_pool_options o = GW_CLEANUP_POOL_OPTIONS_INIT;
    o.workers = workers;
    o.ops = ops;
    o.attach = &att.base;
    o.policy = &pol;
    o.done = on_done;
    o.userdata = &d;
    gw_cleanup_pool *pool;
    if (gw_cleanup_pool_new(&pool, &o) < 0) {
        fprintf(stderr, "%s\n", gw_error_message());
        exit(1);
    }

    double *others = calloc((size_t)rounds * NDEV, sizeof *others);
    size_t n_others = 0;
    double hung_sum = 0;
    size_t cap = 1 << 16, n_req = 0;
    double *req = calloc(cap, sizeof *req), *sub = calloc(cap, sizeof *sub);
    size_t n_sub = 0;
    gw_sanitize_request dup = GW_SANITIZE_REQUEST_INIT;
    dup.address = "0000:03:00.0";

    for (int r = 0; r < rounds; r++) {
        pthread_mutex_lock(&d.lock);
        d.n = 0;
        pthread_mutex_unlock(&d.lock);
        double t0 = now_ms();
        for (int k = 0; k < NDEV; k++) {
            char a[13];
            snprintf(a, sizeof a, "0000:%02x:00.0", 3 + k);
            gw_sanitize_request q = GW_SANITIZE_REQUEST_INIT;
            q.address = a;
            if (gw_cleanup_pool_submit(pool, &q) < 0) {
                fprintf(stderr, "submit %s: %s\n", a, gw_error_message());
                exit(1);
            }
        }
        /* Requests while device 0 is busy: status queries, and a duplicate
         * submit that must be refused, every millisecond. */
        while (hang_ms && gw_cleanup_pool_busy(pool, "0000:03:00.0") && n_req < cap) {
            double s = now_ms();
            int busy = gw_cleanup_pool_busy(pool, "0000:03:00.0");
            (void)gw_cleanup_pool_pending(pool);
            req[n_req++] = now_ms() - s;
            s = now_ms();
            int rc = gw_cleanup_pool_submit(pool, &dup);
            sub[n_sub++] = now_ms() - s;
            if (busy && rc != -EBUSY) {
                fprintf(stderr, "duplicate submit not refused: %d\n", rc);
                exit(1);
            }
            usleep(1000);
        }
        gw_cleanup_pool_wait_idle(pool, 0);
        for (int i = 0; i < d.n; i++) {
            if (!strcmp(d.addr[i], "0000:03:00.0"))
                hung_sum += d.at[i] - t0;
            else
                others[n_others++] = d.at[i] - t0;
        }
        /* Without a hang: the same requests on an idle pool, as the baseline. */
        for (int i = 0; !hang_ms && i < 200 && n_req < cap; i++) {
            double s = now_ms();
            (void)gw_cleanup_pool_busy(pool, "0000:03:00.0");
            (void)gw_cleanup_pool_pending(pool);
            req[n_req++] = now_ms() - s;
            usleep(1000);
        }
    }
    if (d.failed) {
        fprintf(stderr, "%d clean-ups failed\n", d.failed);
        exit(1);
    }
    figures f = { 0 };
    f.others_max = n_others ? pct(others, n_others, 1.0) : 0;
    f.others_p50 = pct(others, n_others, 0.5);
    f.hung_mean = hang_ms ? hung_sum / rounds : 0;
    f.n_req = n_req;
    f.req_max = pct(req, n_req, 1.0);
    f.req_p99 = pct(req, n_req, 0.99);
    f.req_p50 = pct(req, n_req, 0.5);
    f.sub_max = pct(sub, n_sub, 1.0);
    f.sub_p50 = pct(sub, n_sub, 0.5);
    free(others);
    free(req);
    free(sub);
    gw_cleanup_pool_free(pool);
    gw_hostops_unref(ops);
    return f;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1)
        rounds = 1;
    gw_log_set_level(GW_LOG_ERR);
    fx_host h;
    fx_std(&h, NDEV);
    fx_write(&h);

    figures base8 = scenario(h.root, 8, 0, rounds * 4);
    figures hang8 = scenario(h.root, 8, HANG_MS, rounds);
    figures base2 = scenario(h.root, 2, 0, rounds * 4);
    figures hang2 = scenario(h.root, 2, HANG_MS, rounds);
    fx_remove(&h);

    printf("| pool | device 0 | other 7: clean-up p50 | max | device 0 | status query p50 | p99 | max (n) | "
           "refused submit p50 | max |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    const struct { const char *pool, *what; figures *f; } rows[] = {
        { "8 workers", "normal", &base8 }, { "8 workers", "reset blocks 2 s", &hang8 },
        { "2 workers", "normal", &base2 }, { "2 workers", "reset blocks 2 s", &hang2 },
    };
    for (size_t i = 0; i < 4; i++) {
        figures *f = rows[i].f;
        char hung[32] = "-", sub[64] = "- | -";
        if (f->hung_mean > 0) {
            snprintf(hung, sizeof hung, "%.0f ms", f->hung_mean);
            snprintf(sub, sizeof sub, "%.1f us | %.1f us", f->sub_p50 * 1e3, f->sub_max * 1e3);
        }
        printf("| %s | %s | %.2f ms | %.2f ms | %s | %.1f us | %.1f us | %.1f us (%zu) | %s |\n", rows[i].pool,
               rows[i].what, f->others_p50, f->others_max, hung, f->req_p50 * 1e3, f->req_p99 * 1e3,
               f->req_max * 1e3, f->n_req, sub);
    }
    printf("\nOther devices' clean-up, device 0 hung vs not (p50): %.2fx with 8 workers; %.2fx with 2 workers, "
           "where the other seven share the one worker left.\n", hang8.others_p50 / base8.others_p50,
           hang2.others_p50 / base2.others_p50);
    printf("Status queries while device 0 hangs vs on an idle pool (p99): %.2fx with 8 workers, %.2fx with 2 "
           "workers.\n", hang8.req_p99 / base8.req_p99, hang2.req_p99 / base2.req_p99);
    return 0;
}
