/*
 * Subprocesses: exit codes, death by signal, pipes larger than the pipe
 * buffer in both directions at once, environment and working directory,
 * many children waited on at once, timeouts, cancellation, missing
 * programs, bad input, and that nothing is left behind as a zombie.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion unwinds with longjmp, which cannot leave a task's
 * stack); the test body asserts on the record. Children are kept to
 * /bin/sh, cat, true, false and sleep, so valgrind --trace-children=yes
 * stays bearable.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

#define PROC_IO_TIMEOUT 60000 /* ms: only there so a bug fails instead of hanging */

static int64_t proc_ms_since(struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Spawns argv with no pipes. */
static int proc_spawn_argv(const char *const *argv, weft_process **out)
{
    weft_process_opts o = {.argv = argv};
    return weft_process_spawn(&o, out);
}

/* Runs argv to completion and returns its wait status, or a negative errno. */
static int proc_status_of(const char *const *argv)
{
    weft_process *p = NULL;
    int rc = proc_spawn_argv(argv, &p);
    if (rc < 0)
        return rc;
    int st = -1;
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    weft_process_free(p);
    return rc < 0 ? rc : st;
}

/* No child of this process is left, not even a zombie. */
static void proc_assert_no_children(void)
{
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    cr_assert_eq(r, -1, "waitpid(-1) found child %d (status %#x)", (int)r, st);
    cr_assert_eq(errno, ECHILD);
}

/* ------------------------------------------------------------ exit codes */

static void *proc_exit_codes_task(void *arg)
{
    (void)arg;
    static const char *const t[] = {"true", NULL};
    static const char *const f[] = {"false", NULL};
    static const char *const seven[] = {"/bin/sh", "-c", "exit 7", NULL};
    int st = proc_status_of(t);
    TEST_EXPECT(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "true: %#x", st);
    st = proc_status_of(f);
    TEST_EXPECT(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "false: %#x", st);
    st = proc_status_of(seven);
    TEST_EXPECT(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7, "exit 7: %#x", st);
    return NULL;
}

Test(proc_, exit_codes)
{
    test_run(2, proc_exit_codes_task, NULL);
    proc_assert_no_children();
}

/* The same from a plain thread (no task): the wait blocks the thread. */
Test(proc_, plain_thread)
{
    static const char *const seven[] = {"/bin/sh", "-c", "exit 7", NULL};
    int st = proc_status_of(seven);
    cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7, "exit 7: %#x", st);
    proc_assert_no_children();
}

/* A second wait reports the kept status at once. */
static void *proc_wait_twice_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"/bin/sh", "-c", "exit 3", NULL};
    weft_process *p;
    int rc = proc_spawn_argv(argv, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    TEST_EXPECT(weft_process_pid(p) > 0, "pid %d", (int)weft_process_pid(p));
    TEST_EXPECT(weft_process_stdin_fd(p) == -1 && weft_process_stdout_fd(p) == -1 &&
                    weft_process_stderr_fd(p) == -1, "no pipes were asked for");
    int a = -1, b = -1;
    rc = weft_process_wait(p, &a, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0, "wait: %d", rc);
    rc = weft_process_wait(p, &b, 0);
    TEST_EXPECT(rc == 0 && a == b && WEXITSTATUS(a) == 3, "second wait: %d %#x %#x", rc, a, b);
    rc = weft_process_kill(p, SIGTERM);
    TEST_EXPECT(rc == -ESRCH, "kill after reaping: %d", rc);
    weft_process_free(p);
    return NULL;
}

Test(proc_, wait_twice_and_kill_after_exit)
{
    test_run(1, proc_wait_twice_task, NULL);
}

/* ------------------------------------------------------------ signals, timeout */

static void *proc_killed_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"sleep", "10", NULL};
    weft_process *p;
    int rc = proc_spawn_argv(argv, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    int st = -1;
    rc = weft_process_wait(p, &st, 50);
    TEST_EXPECT(rc == -ETIMEDOUT, "wait on a sleeping child: %d", rc);
    TEST_EXPECT(weft_process_kill(p, 0) == 0, "signal 0 to a live child");
    rc = weft_process_kill(p, SIGTERM);
    TEST_EXPECT(rc == 0, "kill: %d", rc);
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0, "wait: %d", rc);
    TEST_EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %#x", st);
    TEST_EXPECT(weft_process_kill(p, -1) == -EINVAL && weft_process_kill(p, NSIG) == -EINVAL,
                "bad signal numbers");
    weft_process_free(p);
    return NULL;
}

Test(proc_, death_by_signal_and_timeout)
{
    test_run(2, proc_killed_task, NULL);
    proc_assert_no_children();
}

static void *proc_wait_forever(void *arg)
{
    weft_process *p = arg;
    return (void *)(intptr_t)weft_process_wait(p, NULL, -1);
}

static void *proc_cancel_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"sleep", "10", NULL};
    weft_process *p;
    int rc = proc_spawn_argv(argv, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    weft_task *t = weft_spawn(proc_wait_forever, p);
    TEST_EXPECT(t != NULL, "spawn task");
    weft_sleep_ms(20);
    rc = weft_process_wait(p, NULL, 0);
    TEST_EXPECT(rc == -EBUSY, "second concurrent wait: %d", rc);
    weft_cancel(t);
    void *res = NULL;
    rc = weft_join(t, &res);
    TEST_EXPECT(rc == -ECANCELED && (intptr_t)res == -ECANCELED, "join %d, wait %d", rc,
                (int)(intptr_t)res);
    /* Free kills and reaps the child that was never waited for. */
    weft_process_free(p);
    return NULL;
}

Test(proc_, wait_cancelled)
{
    test_run(2, proc_cancel_task, NULL);
    proc_assert_no_children();
}

/* ------------------------------------------------------------ pipes */

typedef struct proc_pump {
    weft_process *p;
    size_t total;
    uint64_t sum; /* out: checksum of what went through */
    size_t count; /* out: bytes */
    int rc;
} proc_pump;

static uint64_t proc_mix(uint64_t sum, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum = (sum ^ b[i]) * 0x100000001b3ull;
    return sum;
}

static void *proc_writer(void *arg)
{
    proc_pump *w = arg;
    unsigned char buf[8192];
    uint64_t x = 88172645463325252ull;
    size_t done = 0;
    while (done < w->total) {
        size_t n = w->total - done < sizeof buf ? w->total - done : sizeof buf;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        ssize_t r = weft_write(weft_process_stdin_fd(w->p), buf, n, PROC_IO_TIMEOUT);
        if (r != (ssize_t)n) {
            w->rc = r < 0 ? (int)r : -EIO;
            return NULL;
        }
        w->sum = proc_mix(w->sum, buf, n);
        done += n;
        w->count = done;
    }
    w->rc = weft_process_close_fd(w->p, 0); /* cat sees end of input */
    return NULL;
}

static void *proc_reader(void *arg)
{
    proc_pump *r = arg;
    unsigned char buf[16384];
    for (;;) {
        ssize_t n = weft_read(weft_process_stdout_fd(r->p), buf, sizeof buf, PROC_IO_TIMEOUT);
        if (n < 0) {
            r->rc = (int)n;
            return NULL;
        }
        if (n == 0)
            return NULL;
        r->sum = proc_mix(r->sum, buf, (size_t)n);
        r->count += (size_t)n;
    }
}

static void *proc_cat_task(void *arg)
{
    size_t total = *(size_t *)arg;
    static const char *const argv[] = {"cat", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdin = 1, .pipe_stdout = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn cat: %d", rc);
    TEST_EXPECT(weft_process_stdin_fd(p) > 2 && weft_process_stdout_fd(p) > 2, "pipe fds");
    proc_pump w = {.p = p, .total = total}, r = {.p = p};
    weft_task *tw = weft_spawn(proc_writer, &w);
    weft_task *tr = weft_spawn(proc_reader, &r);
    TEST_EXPECT(tw && tr, "spawn tasks");
    weft_join(tw, NULL);
    weft_join(tr, NULL);
    TEST_EXPECT(w.rc == 0 && r.rc == 0, "writer %d, reader %d", w.rc, r.rc);
    TEST_EXPECT(w.count == total && r.count == total, "wrote %zu, read %zu of %zu", w.count,
                r.count, total);
    TEST_EXPECT(w.sum == r.sum, "checksums differ");
    TEST_EXPECT(weft_process_stdin_fd(p) == -1, "stdin forgotten after close_fd");
    TEST_EXPECT(weft_process_close_fd(p, 0) == -EBADF, "second close");
    TEST_EXPECT(weft_process_close_fd(p, 3) == -EINVAL, "bad which");
    int st = -1;
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "cat: %d %#x", rc, st);
    weft_process_free(p);
    return NULL;
}

Test(proc_, pipe_both_ways_beyond_buffer)
{
    size_t total = test_scale_down() ? 256 * 1024 : 1024 * 1024;
    test_run(2, proc_cat_task, &total);
    proc_assert_no_children();
}

/* Reads fd to the end into buf (NUL-terminated); the length or -errno. */
static ssize_t proc_slurp(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = weft_read(fd, buf + len, cap - 1 - len, PROC_IO_TIMEOUT);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap - 1)
            break;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static void *proc_env_cwd_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"sh", "-c", "pwd; echo \"$WEFT_X\"; echo oops >&2; exit 2",
                                       NULL};
    static const char *const envp[] = {"WEFT_X=hello", "PATH=/usr/bin:/bin", NULL};
    weft_process_opts o = {.argv = argv, .envp = envp, .cwd = "/", .pipe_stdout = 1,
                           .pipe_stderr = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    char out[256], err[256];
    ssize_t n = proc_slurp(weft_process_stdout_fd(p), out, sizeof out);
    TEST_EXPECT(n >= 0 && strcmp(out, "/\nhello\n") == 0, "stdout %zd '%s'", n, n >= 0 ? out : "");
    n = proc_slurp(weft_process_stderr_fd(p), err, sizeof err);
    TEST_EXPECT(n >= 0 && strcmp(err, "oops\n") == 0, "stderr %zd '%s'", n, n >= 0 ? err : "");
    int st = -1;
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d %#x", rc, st);
    weft_process_free(p);
    return NULL;
}

Test(proc_, env_cwd_stderr)
{
    test_run(2, proc_env_cwd_task, NULL);
}

/* ------------------------------------------------------------ many at once */

typedef struct proc_many {
    atomic_int ok;
} proc_many;

static void *proc_one_sleeper(void *arg)
{
    proc_many *m = arg;
    static const char *const argv[] = {"sleep", "0.1", NULL};
    weft_process *p;
    int rc = proc_spawn_argv(argv, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    int st = -1;
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    weft_process_free(p);
    TEST_EXPECT(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sleep: %d %#x", rc, st);
    atomic_fetch_add(&m->ok, 1);
    return NULL;
}

static void *proc_many_task(void *arg)
{
    int n = *(int *)arg;
    proc_many m = {0};
    weft_task *ts[64];
    for (int i = 0; i < n; i++) {
        ts[i] = weft_spawn(proc_one_sleeper, &m);
        TEST_EXPECT(ts[i], "spawn task %d", i);
    }
    for (int i = 0; i < n; i++)
        weft_join(ts[i], NULL);
    TEST_EXPECT(atomic_load(&m.ok) == n, "%d of %d children waited", atomic_load(&m.ok), n);
    return NULL;
}

Test(proc_, many_children_at_once)
{
    int n = test_scale_down() ? 8 : 50;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    test_run(2, proc_many_task, &n);
    int64_t ms = proc_ms_since(&t0);
    /* 50 x 0.1 s one after another would be 5 s. */
    if (!test_scale_down())
        cr_expect_lt(ms, 3000, "the waits did not overlap: %lld ms", (long long)ms);
    proc_assert_no_children();
}

/* ------------------------------------------------------------ failures, zombies */

Test(proc_, missing_program_and_bad_input)
{
    weft_process *p = (weft_process *)(uintptr_t)1;
    static const char *const missing[] = {"weft-no-such-program-xyz", NULL};
    static const char *const missing_path[] = {"/nonexistent/dir/prog", NULL};
    static const char *const dir[] = {"/", NULL};
    static const char *const empty[] = {"", NULL};
    static const char *const none[] = {NULL};
    static const char *const t[] = {"true", NULL};
    cr_assert_eq(proc_spawn_argv(missing, &p), -ENOENT);
    cr_assert_null(p);
    cr_assert_eq(proc_spawn_argv(missing_path, &p), -ENOENT);
    cr_assert_eq(proc_spawn_argv(dir, &p), -EACCES);
    cr_assert_eq(proc_spawn_argv(empty, &p), -EINVAL);
    cr_assert_eq(proc_spawn_argv(none, &p), -EINVAL);
    weft_process_opts o = {.argv = NULL};
    cr_assert_eq(weft_process_spawn(&o, &p), -EINVAL);
    cr_assert_eq(weft_process_spawn(NULL, &p), -EINVAL);
    o.argv = t;
    cr_assert_eq(weft_process_spawn(&o, NULL), -EINVAL);
    o.cwd = "/nonexistent/dir";
    cr_assert_eq(weft_process_spawn(&o, &p), -ENOENT);
    cr_assert_eq(weft_process_wait(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(weft_process_kill(NULL, SIGTERM), -EINVAL);
    cr_assert_eq(weft_process_close_fd(NULL, 0), -EINVAL);
    cr_assert_eq(weft_process_pid(NULL), -1);
    weft_process_free(NULL);
    proc_assert_no_children();
}

static void *proc_zombie_task(void *arg)
{
    (void)arg;
    static const char *const t[] = {"true", NULL};
    static const char *const s[] = {"sleep", "10", NULL};
    static const char *const c[] = {"cat", NULL};
    weft_process *done, *running, *piped;
    TEST_EXPECT(proc_spawn_argv(t, &done) == 0, "spawn true");
    TEST_EXPECT(proc_spawn_argv(s, &running) == 0, "spawn sleep");
    weft_process_opts o = {.argv = c, .pipe_stdin = 1, .pipe_stdout = 1};
    TEST_EXPECT(weft_process_spawn(&o, &piped) == 0, "spawn cat");
    weft_sleep_ms(50); /* let `true` exit unwaited */
    /* None of them was waited for: free reaps all three (killing the two
     * that still run) and closes cat's pipes. */
    weft_process_free(done);
    weft_process_free(running);
    weft_process_free(piped);
    return NULL;
}

Test(proc_, free_leaves_no_zombie)
{
    test_run(2, proc_zombie_task, NULL);
    proc_assert_no_children();
    /* And from a plain thread. */
    static const char *const s[] = {"sleep", "10", NULL};
    weft_process *p;
    cr_assert_eq(proc_spawn_argv(s, &p), 0);
    weft_process_free(p);
    proc_assert_no_children();
}
