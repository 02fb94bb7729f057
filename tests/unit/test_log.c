/* SPDX-License-Identifier: Apache-2.0 */
/* The journal side of gw_log (agent/lib/log.c): the structured fields of a
 * line, and when stderr counts as the journal's stream. The daemon's
 * entries reaching a journal socket are tests/python/test_daemon_journal.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static void free_fields(char **f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i]);
}

static void fields_of_a_gpu_step(void **state)
{
    (void)state;
    char *f[GW_LOG_MAX_FIELDS];
    size_t n = gw_log_fields(f, GW_LOG_WARNING, "0000:3b:00.0", "reset", "clean-up: fail: FLR timed out\nsecond line");
    assert_int_equal(n, 5);
    assert_string_equal(f[0], "PRIORITY=4");
    /* the message names the GPU as the stderr line does; a newline stays (sd_journal_sendv encodes it) */
    assert_string_equal(f[1], "MESSAGE=0000:3b:00.0: clean-up: fail: FLR timed out\nsecond line");
    assert_string_equal(f[2], "SYSLOG_IDENTIFIER=test_log");
    assert_string_equal(f[3], "GPU_ADDRESS=0000:3b:00.0");
    assert_string_equal(f[4], "STEP=reset");
    free_fields(f, n);
}

static void fields_without_gpu_or_step(void **state)
{
    (void)state;
    char *f[GW_LOG_MAX_FIELDS];
    size_t n = gw_log_fields(f, GW_LOG_INFO, NULL, NULL, "configuration reloaded");
    assert_int_equal(n, 3);
    assert_string_equal(f[0], "PRIORITY=6");
    assert_string_equal(f[1], "MESSAGE=configuration reloaded");
    free_fields(f, n);
    n = gw_log_fields(f, GW_LOG_INFO, "0000:3b:00.0", NULL, "clean-up started");
    assert_int_equal(n, 4);
    assert_string_equal(f[3], "GPU_ADDRESS=0000:3b:00.0");
    free_fields(f, n);
}

static void journal_stream_is_the_fd_it_names(void **state)
{
    (void)state;
    char path[] = "/tmp/gw-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char env[64];
    snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    assert_true(gw_log_stream_is_journal(env, fd));
    /* another file, a malformed or absent variable: not the journal */
    int other = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_false(gw_log_stream_is_journal(env, other));
    snprintf(env, sizeof env, "%llu:%llu:1", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    assert_false(gw_log_stream_is_journal(env, fd));
    assert_false(gw_log_stream_is_journal("", fd));
    assert_false(gw_log_stream_is_journal("12", fd));
    assert_false(gw_log_stream_is_journal(NULL, fd));
    close(other);
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fields_of_a_gpu_step),
        cmocka_unit_test(fields_without_gpu_or_step),
        cmocka_unit_test(journal_stream_is_the_fd_it_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
