/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark for the libvirt attachment watcher (scripts/bench.d/attach).
 * Uses only the public API and libvirt's test driver (test:///default, one
 * in-process instance shared by the watcher's connection and ours).
 *
 * 1. Event to callback: define / undefine a domain with a GPU, time from the
 *    libvirt call to (a) a bare libvirt lifecycle callback registered on our
 *    own connection, (b) the watcher's "changed" callback. Same run, same loop.
 * 2. gw_attach_query() (a live read of every domain) against the number of
 *    defined domains.
 */
#include <gpuwarden/attach.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static double raw_at, cb_at;
static int cb_state = -1;           /* 1 referenced, 0 not */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int raw_event(virConnectPtr c, virDomainPtr d, int event, int detail, void *opaque)
{
    if (strcmp(virDomainGetName(d), "vm-bench"))
        return 0;
    pthread_mutex_lock(&lock);
    raw_at = now_us();
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return 0;
}

static void changed(const char *address, const char *const *domains, size_t n, void *userdata)
{
    pthread_mutex_lock(&lock);
    cb_at = now_us();
    cb_state = n > 0;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void wait_both(int want_state)
{
    pthread_mutex_lock(&lock);
    while (raw_at == 0 || cb_at == 0 || cb_state != want_state)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p / 100.0 * (n - 1) + 0.5);
    return v[i];
}

static const char XML[] =
    "<domain type='test'><name>%s</name><memory>1048576</memory><os><type>hvm</type></os>"
    "<devices>%s</devices></domain>";
static const char GPU[] =
    "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
    "<address domain='0x0000' bus='0x1a' slot='0x00' function='0x0'/></source></hostdev>";

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    const char *gpu[] = { "0000:1a:00.0" };
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = "test:///default";
    o.watch = gpu;
    o.n_watch = 1;
    o.changed = changed;
    o.reconcile_interval_ms = 600000;   /* events only during the measurement */
    gw_attach_source *src;
    if (gw_attach_libvirt_new(&src, &o) < 0 || gw_attach_libvirt_wait_synced(src, 5000) < 0) {
        fprintf(stderr, "watcher: %s\n", gw_error_message());
        return 1;
    }
    virConnectPtr c = virConnectOpen("test:///default");
    if (!c || virConnectDomainEventRegisterAny(c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                               VIR_DOMAIN_EVENT_CALLBACK(raw_event), NULL, NULL) < 0) {
        fprintf(stderr, "libvirt: %s\n", virGetLastErrorMessage());
        return 1;
    }
    char xml[1024];
    snprintf(xml, sizeof xml, XML, "vm-bench", GPU);
    double *def_raw = calloc((size_t)rounds, sizeof(double)), *def_cb = calloc((size_t)rounds, sizeof(double));
    double *und_raw = calloc((size_t)rounds, sizeof(double)), *und_cb = calloc((size_t)rounds, sizeof(double));
    for (int i = 0; i < rounds; i++) {
        pthread_mutex_lock(&lock);
        raw_at = cb_at = 0;
        pthread_mutex_unlock(&lock);
        double t0 = now_us();
        virDomainPtr d = virDomainDefineXML(c, xml);
        wait_both(1);
        def_raw[i] = raw_at - t0;
        def_cb[i] = cb_at - t0;
        pthread_mutex_lock(&lock);
        raw_at = cb_at = 0;
        pthread_mutex_unlock(&lock);
        t0 = now_us();
        virDomainUndefine(d);
        wait_both(0);
        und_raw[i] = raw_at - t0;
        und_cb[i] = cb_at - t0;
        virDomainFree(d);
    }
    printf("### Event to callback (%d rounds, test:///default, in-process)\n\n", rounds);
    printf("| change | bare libvirt callback p50 / p99 | watcher callback p50 / p99 | ratio (p50) |\n");
    printf("|---|---|---|---|\n");
    double dr50 = pct(def_raw, rounds, 50), dr99 = pct(def_raw, rounds, 99);
    double dc50 = pct(def_cb, rounds, 50), dc99 = pct(def_cb, rounds, 99);
    double ur50 = pct(und_raw, rounds, 50), ur99 = pct(und_raw, rounds, 99);
    double uc50 = pct(und_cb, rounds, 50), uc99 = pct(und_cb, rounds, 99);
    printf("| define (attached) | %.0f / %.0f µs | %.0f / %.0f µs | %.1fx |\n", dr50, dr99, dc50, dc99,
           dc50 / dr50);
    printf("| undefine (detached) | %.0f / %.0f µs | %.0f / %.0f µs | %.1fx |\n\n", ur50, ur99, uc50,
           uc99, uc50 / ur50);

    printf("### gw_attach_query (a live read of every domain's XML)\n\n");
    printf("| defined domains | p50 | p99 |\n|---|---|---|\n");
    int defined = 1;    /* test:///default has domain 'test' */
    const int sizes[] = { 10, 100, 1000 };
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (; defined < sizes[s]; defined++) {
            char name[32];
            snprintf(name, sizeof name, "vm-fill-%d", defined);
            snprintf(xml, sizeof xml, XML, name, GPU);
            virDomainPtr d = virDomainDefineXML(c, xml);
            if (!d) {
                fprintf(stderr, "define: %s\n", virGetLastErrorMessage());
                return 1;
            }
            virDomainFree(d);
        }
        enum { Q = 30 };
        double q[Q];
        for (int i = 0; i < Q; i++) {
            char **names;
            double t0 = now_us();
            if (gw_attach_query(src, "0000:1a:00.0", &names) < 0) {
                fprintf(stderr, "query: %s\n", gw_error_message());
                return 1;
            }
            q[i] = now_us() - t0;
            gw_attach_list_free(names);
        }
        printf("| %d | %.2f ms | %.2f ms |\n", sizes[s], pct(q, Q, 50) / 1e3, pct(q, Q, 99) / 1e3);
    }
    gw_attach_source_free(src);
    virConnectClose(c);
    free(def_raw); free(def_cb); free(und_raw); free(und_cb);
    return 0;
}
