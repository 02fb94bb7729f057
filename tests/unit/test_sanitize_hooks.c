/* SPDX-License-Identifier: Apache-2.0 */
/* The hooks step's trust and containment (issue 15 item 5): the directory and
 * every hook owned by the policy's hooks_owner_uid (root by default) and
 * writable by no one else, or nothing runs and the step fails naming path,
 * owner and mode; each hook with resource limits, an environment of ours
 * only, cwd /; and nothing of a hook's process group outliving the step, a
 * grandchild that left the hook's tree included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <sys/stat.h>

#include "sanitize_world.h"

static void write_hook(const char *name, const char *body, mode_t mode)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", W.hooks, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
}

static char *hook_file(const char *name)
{
    return gw_strdup_printf("%s/%s", W.hooks, name);
}

static bool exists(const char *name)
{
    _cleanup_free_ char *p = hook_file(name);
    return access(p, F_OK) == 0;
}

static char *read_back(const char *name)
{
    _cleanup_free_ char *p = hook_file(name);
    char *s = NULL;
    if (gw_read_file(p, &s) < 0)
        fail_msg("%s: %s", p, gw_error_message());
    return s;
}

static const char *hooks_evidence(void)
{
    return step(GW_STEP_HOOKS)->evidence;
}

static void assert_hooks_fail_with(const char *text)
{
    const gw_step_result *s = step(GW_STEP_HOOKS);
    if (s->verdict != GW_VERDICT_FAIL || !strstr(s->evidence, text))
        fail_msg("hooks: expected a failure with '%s', got %s: %s", text, gw_verdict_name(s->verdict), s->evidence);
}

/* ---- who may have written a hook ------------------------------------------ */

static void group_writable_hook_is_refused_and_none_runs(void **state)
{
    (void)state;
    world_open();
    write_hook("10-ok", "touch \"$(dirname \"$0\")/ran\"", 0755);
    write_hook("20-open", "exit 0", 0775);
    run();
    char want[256];
    snprintf(want, sizeof want, "hook %s/20-open refused: owned by uid %u, mode 0775: writable by group", W.hooks,
             (unsigned)getuid());
    assert_hooks_fail_with(want);
    assert_hooks_fail_with("no hook ran");
    assert_false(exists("ran"));
    /* The clean-up fails as for a failing hook: the GPU is quarantined. */
    assert_int_equal(gw_sanitize_result_failed_step(W.res), GW_STEP_HOOKS);
}

static void world_writable_directory_is_refused(void **state)
{
    (void)state;
    world_open();
    write_hook("10-ok", "touch \"$(dirname \"$0\")/ran\"", 0755);
    assert_int_equal(chmod(W.hooks, 01777), 0);     /* even sticky, like /tmp */
    run();
    char want[256];
    snprintf(want, sizeof want, "hooks directory %s refused: owned by uid %u, mode 1777: writable by group and others",
             W.hooks, (unsigned)getuid());
    assert_hooks_fail_with(want);
    assert_false(exists("ran"));
}

static void hook_of_another_owner_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();     /* only root can give a file away */
    world_open();
    write_hook("10-theirs", "exit 0", 0755);
    _cleanup_free_ char *p = hook_file("10-theirs");
    assert_int_equal(chown(p, 4242, 4242), 0);
    run();
    char want[256];
    snprintf(want, sizeof want, "hook %s/10-theirs refused: owned by uid 4242, mode 0755: not owned by uid 0",
             W.hooks);
    assert_hooks_fail_with(want);
}

static void owner_is_the_policy_s_and_root_by_default(void **state)
{
    (void)state;
    world_open();
    write_hook("10-ok", "exit 0", 0755);
    /* The world names its own uid (sanitize_world.h); another refuses. */
    W.pol.hooks_owner_uid = (unsigned)getuid() + 4242;
    run();
    char want[256];
    snprintf(want, sizeof want, "not owned by uid %u", (unsigned)getuid() + 4242);
    assert_hooks_fail_with(want);

    /* A version-3 caller's struct ends before hooks_owner_uid: root it is,
     * and nothing past its end is read (ASan would say). */
    gw_sanitize_policy v3 = W.pol;
    v3.version = 3;
    size_t size = offsetof(gw_sanitize_policy, hooks_owner_uid);
    unsigned char *old = malloc(size);
    memcpy(old, &v3, size);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    gw_sanitize_result_free(W.res);
    W.res = NULL;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, (const gw_sanitize_policy *)(void *)old, &req), 0);
    free(old);
    if (geteuid() == 0)
        assert_int_equal(step(GW_STEP_HOOKS)->verdict, GW_VERDICT_PASS);
    else
        assert_hooks_fail_with("not owned by uid 0");
}

/* ---- what a hook runs with --------------------------------------------------- */

static void hook_runs_with_limits_our_environment_only_and_cwd_root(void **state)
{
    (void)state;
    world_open();
    setenv("GW_TEST_LEAK", "from the daemon", 1);
    W.pol.hook_timeout_ms = 7500;       /* CPU time: the timeout, rounded up to 8 s */
    char body[512];
    snprintf(body, sizeof body,
             "d=\"$(dirname \"$0\")\"\n"
             "grep -E '^Max (cpu time|file size|processes) ' /proc/self/limits | tr -s ' ' | sed 's/ $//' > \"$d/limits\"\n"
             "tr '\\0' '\\n' < /proc/$$/environ | grep -o '^[A-Za-z_]*=' | sort | tr '\\n' ' ' > \"$d/env\"\n"
             "tr '\\0' '\\n' < /proc/$$/environ | grep '^PATH=' > \"$d/path\"\n"
             "pwd > \"$d/cwd\"\n"
             "ls /proc/self/fd | sort -n | tr '\\n' ' ' > \"$d/fds\"");
    write_hook("10-look", body, 0755);
    run();
    unsetenv("GW_TEST_LEAK");
    assert_int_equal(step(GW_STEP_HOOKS)->verdict, GW_VERDICT_PASS);
    _cleanup_free_ char *limits = read_back("limits");
    assert_string_equal(limits, "Max cpu time 8 9 seconds\n"
                                "Max file size 1073741824 1073741824 bytes\n"
                                "Max processes 1024 1024 processes");
    /* What the hook was started with: exactly the documented variables. */
    _cleanup_free_ char *env = read_back("env");
    assert_string_equal(env, "GW_DEVICE= GW_EVIDENCE= GW_HOST_BACKEND= LC_ALL= PATH=");
    _cleanup_free_ char *path = read_back("path");
    assert_string_equal(path, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    _cleanup_free_ char *cwd = read_back("cwd");
    assert_string_equal(cwd, "/");
    /* stdin, stdout, stderr and ls's own directory: nothing of ours. */
    _cleanup_free_ char *fds = read_back("fds");
    assert_string_equal(fds, "0 1 2 3");
}

/* ---- nothing of a hook outlives its step ---------------------------------- */

static pid_t read_pid(const char *name)
{
    _cleanup_free_ char *s = read_back(name);
    return (pid_t)atoi(s);
}

static bool pid_running(pid_t pid)
{
    char p[64], st[512];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return false;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *paren = strrchr(st, ')');
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

static void timed_out_hook_s_grandchild_is_killed_before_the_step_ends(void **state)
{
    (void)state;
    world_open();
    /* The subshell starts a sleep and exits: the sleep's parent is gone, so
     * it is nobody's child of ours, but still in the hook's group. */
    write_hook("10-hang",
               "d=\"$(dirname \"$0\")\"\necho $$ > \"$d/pgid\"\n"
               "( sleep 60 & echo $! > \"$d/gc.tmp\"; mv \"$d/gc.tmp\" \"$d/gc\" )\n"
               "sleep 60",
               0755);
    W.pol.hook_timeout_ms = 500;
    run();
    assert_hooks_fail_with("hook 10-hang timed out after 500 ms: killed its process group");
    pid_t pgid = read_pid("pgid"), gc = read_pid("gc");
    assert_true(pgid > 0 && gc > 0 && gc != pgid);
    /* At once, no waiting: the step returned only after the group was gone. */
    assert_int_equal(gw_exec_group_running(pgid), 0);
    assert_false(pid_running(gc));
}

static void hook_that_exits_leaves_nothing_running(void **state)
{
    (void)state;
    world_open();
    write_hook("10-bg",
               "d=\"$(dirname \"$0\")\"\necho $$ > \"$d/pgid\"\n"
               "( sleep 60 & echo $! > \"$d/gc.tmp\"; mv \"$d/gc.tmp\" \"$d/gc\" )\nexit 0",
               0755);
    run();
    assert_int_equal(step(GW_STEP_HOOKS)->verdict, GW_VERDICT_PASS);
    assert_contains(hooks_evidence(), "hook 10-bg exited 0 in");
    assert_contains(hooks_evidence(), "what it left running in its process group was killed");
    assert_int_equal(gw_exec_group_running(read_pid("pgid")), 0);
    assert_false(pid_running(read_pid("gc")));
}

static void hook_that_cannot_start_says_why(void **state)
{
    (void)state;
    world_open();
    write_hook("10-nointerp", "exit 0", 0755);
    _cleanup_free_ char *p = hook_file("10-nointerp");
    FILE *f = fopen(p, "w");
    fputs("#!/nonexistent/interpreter\n", f);
    fclose(f);
    run();
    assert_hooks_fail_with("hook 10-nointerp could not start: No such file or directory");
}

#define T(f) cmocka_unit_test_setup_teardown(f, world_setup1, world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(group_writable_hook_is_refused_and_none_runs),
        T(world_writable_directory_is_refused),
        T(hook_of_another_owner_is_refused),
        T(owner_is_the_policy_s_and_root_by_default),
        T(hook_runs_with_limits_our_environment_only_and_cwd_root),
        T(timed_out_hook_s_grandchild_is_killed_before_the_step_ends),
        T(hook_that_exits_leaves_nothing_running),
        T(hook_that_cannot_start_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
