/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's Prometheus rendering (agent/cli/prometheus.c) on crafted
 * `metrics` results: what a real daemon never sends (label values that need
 * escaping, an older daemon's result without the newer fields, bounds that
 * test the decimal seconds), and the textfile's atomic write. The real
 * daemon's output goes through prometheus_client's parser in
 * tests/python/test_metrics.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>

#include "../../agent/cli/prometheus.c"

static char *render(const char *json)
{
    json_t *m = NULL;
    if (json) {
        json_error_t e;
        m = json_loads(json, JSON_PRESERVE_ORDER, &e);
        if (!m)
            fail_msg("bad test JSON: %s", e.text);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(cli_prometheus_write(m, f), 0);
    fclose(f);
    json_decref(m);
    return buf;
}

static void assert_contains(const char *text, const char *want)
{
    if (!strstr(text, want))
        fail_msg("missing:\n%s\nin:\n%s", want, text);
}

static void down(void **state)
{
    (void)state;
    char *t = render(NULL);
    assert_string_equal(t, "# HELP gpuwarden_up 1 when gpuwardend answered the metrics request, 0 when it did not.\n"
                           "# TYPE gpuwarden_up gauge\n"
                           "gpuwarden_up 0\n");
    free(t);
}

/* Label values are escaped as the text format wants: \\, \" and \n. */
static void label_escaping(void **state)
{
    (void)state;
    char *t = render("{\"requests\": {\"a\\\"b\\\\c\\nd\": 5, \"plain\": 0}}");
    assert_contains(t, "gpuwarden_requests_total{op=\"a\\\"b\\\\c\\nd\"} 5\n"
                       "gpuwarden_requests_total{op=\"plain\"} 0\n");
    free(t);
}

static void histogram_in_seconds(void **state)
{
    (void)state;
    char *t = render("{\"cleanup_duration\": {\"bounds_us\": [250, 1000000, 2500000], \"counts\": [1, 2, 2],"
                     " \"count\": 3, \"sum_us\": 2600250}}");
    assert_contains(t, "# TYPE gpuwarden_cleanup_duration_seconds histogram\n"
                       "gpuwarden_cleanup_duration_seconds_bucket{le=\"0.00025\"} 1\n"
                       "gpuwarden_cleanup_duration_seconds_bucket{le=\"1\"} 2\n"
                       "gpuwarden_cleanup_duration_seconds_bucket{le=\"2.5\"} 2\n"
                       "gpuwarden_cleanup_duration_seconds_bucket{le=\"+Inf\"} 3\n"
                       "gpuwarden_cleanup_duration_seconds_sum 2.60025\n"
                       "gpuwarden_cleanup_duration_seconds_count 3\n");
    free(t);
}

/* A labelled histogram: the label first, le last. */
static void labelled_histogram(void **state)
{
    (void)state;
    char *t = render("{\"request_duration\": {\"gate\": {\"bounds_us\": [100], \"counts\": [0],"
                     " \"count\": 1, \"sum_us\": 120000000}}}");
    assert_contains(t, "gpuwarden_request_duration_seconds_bucket{op=\"gate\",le=\"0.0001\"} 0\n"
                       "gpuwarden_request_duration_seconds_bucket{op=\"gate\",le=\"+Inf\"} 1\n"
                       "gpuwarden_request_duration_seconds_sum{op=\"gate\"} 120\n"
                       "gpuwarden_request_duration_seconds_count{op=\"gate\"} 1\n");
    free(t);
}

/* The protocol's `failed` includes the aborted runs; each run is counted
 * under one result. A daemon without `aborted` (before it was added) has
 * no aborted sample, and its failures stay failures. */
static void cleanups_by_result(void **state)
{
    (void)state;
    char *t = render("{\"cleanups\": {\"passed\": 7, \"failed\": 5, \"aborted\": 2}}");
    assert_contains(t, "gpuwarden_cleanups_total{result=\"passed\"} 7\n"
                       "gpuwarden_cleanups_total{result=\"failed\"} 3\n"
                       "gpuwarden_cleanups_total{result=\"aborted\"} 2\n");
    free(t);
    t = render("{\"cleanups\": {\"passed\": 7, \"failed\": 5}}");
    assert_contains(t, "gpuwarden_cleanups_total{result=\"failed\"} 5\n");
    assert_null(strstr(t, "aborted\"}"));
    free(t);
}

/* An older daemon's result: what it has, and no family it does not. */
static void older_daemon(void **state)
{
    (void)state;
    char *t = render("{\"uptime_ms\": 1500, \"dirty\": 1, \"events\": 9, \"libvirt\": {\"enabled\": true}}");
    assert_contains(t, "gpuwarden_up 1\n");
    assert_contains(t, "gpuwarden_uptime_seconds 1.5\n");
    assert_contains(t, "gpuwarden_gpus_dirty 1\n");
    assert_contains(t, "gpuwarden_events_last_seq 9\n");
    assert_contains(t, "gpuwarden_libvirt_watcher_enabled 1\n");
    assert_null(strstr(t, "gpuwarden_gpus{"));
    assert_null(strstr(t, "gpuwarden_libvirt_watcher_connected"));
    assert_null(strstr(t, "histogram"));
    free(t);
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void textfile(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-prom-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], missing[80];
    snprintf(path, sizeof path, "%s/gpuwarden.prom", dir);
    snprintf(missing, sizeof missing, "%s/no/gpuwarden.prom", dir);

    json_t *m = json_pack("{s:I}", "dirty", (json_int_t)4);
    assert_int_equal(cli_prometheus_textfile("metrics", path, m), 0);
    assert_int_equal(cli_prometheus_textfile("metrics", path, NULL), 0);     /* replaced */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(entries(dir), 1);
    FILE *f = fopen(path, "r");
    char buf[512] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    assert_non_null(strstr(buf, "gpuwarden_up 0\n"));
    assert_null(strstr(buf, "dirty"));

    assert_int_equal(cli_prometheus_textfile("metrics", missing, m), -ENOENT);
    assert_int_equal(entries(dir), 1);
    json_decref(m);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(down),
        cmocka_unit_test(label_escaping),
        cmocka_unit_test(histogram_in_seconds),
        cmocka_unit_test(labelled_histogram),
        cmocka_unit_test(cleanups_by_result),
        cmocka_unit_test(older_daemon),
        cmocka_unit_test(textfile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
