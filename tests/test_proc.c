/*
 * Subprocesses: exit codes, death by signal, pipes larger than the pipe
 * buffer in both directions at once, environment and working directory,
 * many children waited on at once, timeouts, cancellation, missing
 * programs, bad input, and that nothing is left behind as a zombie.
 * Process groups: a group kill reaches grandchildren, and is refused for a
 * child without its own group or once the child is reaped. communicate:
 * a round trip larger than the pipe buffers in three directions at once,
 * the timeout (kill, reap, partial output), cancellation, bad input.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion unwinds with longjmp, which cannot leave a task's
 * stack); the test body asserts on the record. Children are kept to
 * /bin/sh, cat, true, false and sleep, so valgrind --trace-children=yes
 * stays bearable.
 */
#include <criterion/criterion.h>

#include <dirent.h>
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
    /* One worker: the yield runs t until it waits, however slow the machine
     * (a zero-timeout wait made before that would itself be the waiter). */
    weft_yield();
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
    test_run(1, proc_cancel_task, NULL);
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

/* ------------------------------------------------------------ process groups */

/* Processes in group pgid that have not exited, found in /proc. A zombie
 * is left out: it is dead, and its parent (init, for an orphan) reaps it
 * when it likes, which this test cannot wait for. -1 if /proc is
 * unreadable. */
static int proc_group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* gone meanwhile */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == (int)pgid &&
            state != 'Z' && state != 'X')
            n++;
    }
    closedir(d);
    return n;
}

/* Polls until group pgid has at least `min` (want_empty 0) or no (1)
 * live member; the bound only stops a bug from hanging. The count seen. */
static int proc_group_poll(pid_t pgid, int min, int want_empty)
{
    int n = proc_group_alive(pgid);
    for (int i = 0; i < 3000 && (want_empty ? n != 0 : n < min); i++) {
        weft_sleep_ms(10);
        n = proc_group_alive(pgid);
    }
    return n;
}

typedef struct proc_group_case {
    int session; /* new_session instead of new_pgroup */
} proc_group_case;

/* sh and its background sleep in their own group: one kill reaches both. */
static void *proc_kill_group_task(void *arg)
{
    const proc_group_case *c = arg;
    /* 1000 s: a member the kill missed would still be there at the end. */
    static const char *const argv[] = {"sh", "-c", "sleep 1000 & sleep 1000", NULL};
    weft_process_opts o = {.argv = argv, .new_pgroup = !c->session, .new_session = c->session};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    pid_t pid = weft_process_pid(p), pgid = weft_process_pgid(p);
    TEST_EXPECT(pgid == pid && pgid != getpgrp(), "pgid %d, pid %d, ours %d", (int)pgid, (int)pid,
                (int)getpgrp());
    /* sh, maybe exec'd into the second sleep, and the background sleep. */
    int n = proc_group_poll(pgid, 2, 0);
    TEST_EXPECT(n >= 2, "%d live member(s) in group %d", n, (int)pgid);
    TEST_EXPECT(getpgid(pid) == pgid, "getpgid %d", (int)getpgid(pid));
    if (c->session)
        TEST_EXPECT(getsid(pid) == pid, "getsid %d, pid %d", (int)getsid(pid), (int)pid);
    rc = weft_process_kill_group(p, 0);
    TEST_EXPECT(rc == 0, "signal 0 to the group: %d", rc);
    TEST_EXPECT(weft_process_kill_group(p, -1) == -EINVAL &&
                    weft_process_kill_group(p, NSIG) == -EINVAL, "bad signal numbers");
    rc = weft_process_kill_group(p, SIGKILL);
    TEST_EXPECT(rc == 0, "kill_group: %d", rc);
    int st = -1;
    rc = weft_process_wait(p, &st, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "wait %d, status %#x", rc,
                st);
    /* The orphaned background sleep is init's now: nobody in the group may
     * be left running. */
    n = proc_group_poll(pgid, 0, 1);
    if (n > 0) /* a failure must not leave them behind (they pin the id) */
        kill(-pgid, SIGKILL);
    TEST_EXPECT(n == 0, "%d member(s) of group %d still running", n, (int)pgid);
    /* Reaped: the id may be anyone's from now on. */
    rc = weft_process_kill_group(p, SIGKILL);
    TEST_EXPECT(rc == -ESRCH, "kill_group after reaping: %d", rc);
    weft_process_free(p);
    return NULL;
}

Test(proc_, kill_group_reaches_grandchildren)
{
    proc_group_case c = {.session = 0};
    test_run(2, proc_kill_group_task, &c);
    proc_assert_no_children();
}

/* A new session, from a plain thread. */
Test(proc_, kill_session_plain_thread)
{
    proc_group_case c = {.session = 1};
    void *r = proc_kill_group_task(&c);
    test_assert_no_failure();
    cr_assert_null(r, "failed at line %d", (int)(intptr_t)r);
    proc_assert_no_children();
}

Test(proc_, kill_group_without_own_group)
{
    static const char *const argv[] = {"sleep", "1000", NULL};
    weft_process *p;
    cr_assert_eq(proc_spawn_argv(argv, &p), 0);
    cr_assert_eq(weft_process_pgid(p), -1);
    /* It is in our group: a group kill would hit the test itself. */
    cr_assert_eq(weft_process_kill_group(p, SIGKILL), -EINVAL);
    cr_assert_eq(weft_process_kill_group(p, 0), -EINVAL);
    cr_assert_eq(weft_process_kill(p, 0), 0, "the child is untouched");
    cr_assert_eq(weft_process_kill_group(NULL, 0), -EINVAL);
    cr_assert_eq(weft_process_pgid(NULL), -1);
    weft_process_free(p);
    proc_assert_no_children();
}

/* ------------------------------------------------------------ communicate */

typedef struct proc_comm_case {
    size_t total;     /* bytes through cat */
    size_t err_flood; /* zero bytes the child writes to stderr before it reads */
} proc_comm_case;

static void proc_fill(unsigned char *b, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
}

/* Input through cat, with stderr written before (a flood that fills its
 * pipe while stdin is not read yet) and after, and an exit code. */
static void *proc_comm_round_trip(void *arg)
{
    const proc_comm_case *c = arg;
    char script[128];
    snprintf(script, sizeof script, "head -c %zu /dev/zero >&2; cat; echo oops >&2; exit 3",
             c->err_flood);
    const char *const argv[] = {"sh", "-c", script, NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdin = 1, .pipe_stdout = 1, .pipe_stderr = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    unsigned char *in = malloc(c->total);
    TEST_EXPECT(in, "malloc");
    proc_fill(in, c->total);
    weft_process_output out;
    rc = weft_process_communicate(p, in, c->total, &out, PROC_IO_TIMEOUT);
    int ok_out = out.out && out.out_len == c->total && memcmp(out.out, in, c->total) == 0;
    int ok_err = out.err && out.err_len == c->err_flood + 5 &&
                 memcmp(out.err + c->err_flood, "oops\n", 6) == 0; /* with the NUL */
    for (size_t i = 0; ok_err && i < c->err_flood; i++)
        ok_err = out.err[i] == 0;
    int st = out.status;
    size_t out_len = out.out_len, err_len = out.err_len;
    free(in);
    weft_process_output_free(&out);
    TEST_EXPECT(out.out == NULL && out.err == NULL && out.out_len == 0, "output_free resets");
    int pipes_closed = weft_process_stdin_fd(p) == -1 && weft_process_stdout_fd(p) == -1 &&
                       weft_process_stderr_fd(p) == -1;
    weft_process_free(p);
    TEST_EXPECT(rc == 0, "communicate: %d", rc);
    TEST_EXPECT(ok_out, "stdout: %zu bytes of %zu, or they differ", out_len, c->total);
    TEST_EXPECT(ok_err, "stderr: %zu bytes, expected %zu zeros and 'oops'", err_len,
                c->err_flood);
    TEST_EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %#x", st);
    TEST_EXPECT(pipes_closed, "the pipes are closed afterwards");
    return NULL;
}

static proc_comm_case proc_comm_big(void)
{
    proc_comm_case c = {.total = 1024 * 1024, .err_flood = 200000};
    if (test_scale_down())
        c.total = 256 * 1024;
    return c;
}

Test(proc_, communicate_round_trip)
{
    proc_comm_case c = proc_comm_big();
    test_run(2, proc_comm_round_trip, &c);
    proc_assert_no_children();
}

Test(proc_, communicate_round_trip_plain_thread)
{
    proc_comm_case c = proc_comm_big();
    void *r = proc_comm_round_trip(&c);
    test_assert_no_failure();
    cr_assert_null(r, "failed at line %d", (int)(intptr_t)r);
    proc_assert_no_children();
}

/* Nothing to send, and an empty output, still come back as a string. */
static void *proc_comm_small_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"sh", "-c", "read x || echo eof", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdin = 1, .pipe_stdout = 1, .pipe_stderr = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    weft_process_output out;
    rc = weft_process_communicate(p, NULL, 0, &out, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0, "communicate: %d", rc);
    TEST_EXPECT(out.out && strcmp(out.out, "eof\n") == 0 && out.out_len == 4, "stdout '%s'",
                out.out ? out.out : "(null)");
    TEST_EXPECT(out.err && out.err_len == 0 && out.err[0] == '\0', "stderr %zu", out.err_len);
    TEST_EXPECT(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0, "status %#x", out.status);
    weft_process_output_free(&out);
    weft_process_free(p);

    /* No pipes at all: only the wait. */
    static const char *const f[] = {"false", NULL};
    rc = proc_spawn_argv(f, &p);
    TEST_EXPECT(rc == 0, "spawn false: %d", rc);
    rc = weft_process_communicate(p, NULL, 0, &out, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == 0 && !out.out && !out.err && WEXITSTATUS(out.status) == 1,
                "communicate false: %d %p %p %#x", rc, (void *)out.out, (void *)out.err,
                out.status);
    weft_process_free(p);
    return NULL;
}

Test(proc_, communicate_empty_input_and_output)
{
    test_run(1, proc_comm_small_task, NULL);
    proc_assert_no_children();
}

typedef struct proc_hang_case {
    int group; /* start the child in its own group */
} proc_hang_case;

/* The child prints, then hangs; communicate's timeout kills and reaps it
 * and hands back what it printed. */
static void *proc_comm_timeout_task(void *arg)
{
    const proc_hang_case *c = arg;
    /* In a group the shell may fork the sleep (the group kill gets it);
     * alone it must exec it, or the sleep would outlive the shell. */
    static const char *const grouped[] = {"sh", "-c", "echo partial; sleep 30; echo late", NULL};
    static const char *const alone[] = {"sh", "-c", "echo partial; exec sleep 30", NULL};
    weft_process_opts o = {.argv = c->group ? grouped : alone, .pipe_stdin = 1,
                           .pipe_stdout = 1, .pipe_stderr = 1, .new_pgroup = c->group};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    pid_t pgid = weft_process_pgid(p);
    /* "partial\n" is one write: once stdout is readable, all of it is in
     * the pipe, so the 300 ms below do not depend on how fast sh starts. */
    rc = weft_wait_fd(weft_process_stdout_fd(p), WEFT_READ, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == WEFT_READ, "wait for the first line: %d", rc);
    weft_process_output out;
    rc = weft_process_communicate(p, "ignored\n", 8, &out, 300);
    int st = out.status;
    int ok = out.out && out.out_len == 8 && strcmp(out.out, "partial\n") == 0;
    char got[32];
    snprintf(got, sizeof got, "%s", out.out ? out.out : "(null)");
    int err_empty = out.err && out.err_len == 0;
    weft_process_output_free(&out);
    int again = weft_process_wait(p, NULL, 0);
    weft_process_free(p);
    TEST_EXPECT(rc == -ETIMEDOUT, "communicate: %d", rc);
    TEST_EXPECT(ok, "partial output '%s'", got);
    TEST_EXPECT(err_empty, "stderr");
    TEST_EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
    TEST_EXPECT(again == 0, "reaped by communicate: %d", again);
    if (c->group) {
        int n = proc_group_poll(pgid, 0, 1);
        if (n > 0)
            kill(-pgid, SIGKILL);
        TEST_EXPECT(n == 0, "%d member(s) of group %d still running", n, (int)pgid);
    }
    return NULL;
}

Test(proc_, communicate_timeout_kills_and_keeps_partial)
{
    proc_hang_case c = {.group = 1};
    test_run(2, proc_comm_timeout_task, &c);
    proc_assert_no_children();
}

Test(proc_, communicate_timeout_plain_thread)
{
    proc_hang_case c = {.group = 0};
    void *r = proc_comm_timeout_task(&c);
    test_assert_no_failure();
    cr_assert_null(r, "failed at line %d", (int)(intptr_t)r);
    proc_assert_no_children();
}

typedef struct proc_comm_cancel {
    weft_process *p;
    atomic_int started;
    int rc;
    char first[16];
} proc_comm_cancel;

static void *proc_comm_forever(void *arg)
{
    proc_comm_cancel *c = arg;
    atomic_store(&c->started, 1);
    weft_process_output out;
    c->rc = weft_process_communicate(c->p, NULL, 0, &out, -1);
    snprintf(c->first, sizeof c->first, "%s", out.out ? out.out : "(null)");
    weft_process_output_free(&out);
    return NULL;
}

static void *proc_comm_cancel_task(void *arg)
{
    (void)arg;
    static const char *const argv[] = {"sh", "-c", "echo hi; exec sleep 30", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdout = 1};
    proc_comm_cancel c = {.rc = 1};
    int rc = weft_process_spawn(&o, &c.p);
    TEST_EXPECT(rc == 0, "spawn: %d", rc);
    rc = weft_wait_fd(weft_process_stdout_fd(c.p), WEFT_READ, PROC_IO_TIMEOUT);
    TEST_EXPECT(rc == WEFT_READ, "wait for the first line: %d", rc);
    weft_task *t = weft_spawn(proc_comm_forever, &c);
    TEST_EXPECT(t, "spawn task");
    while (!atomic_load(&c.started))
        weft_sleep_ms(1);
    weft_sleep_ms(20);
    weft_cancel(t);
    weft_join(t, NULL);
    TEST_EXPECT(c.rc == -ECANCELED, "communicate: %d", c.rc);
    TEST_EXPECT(strcmp(c.first, "hi\n") == 0, "output so far '%s'", c.first);
    TEST_EXPECT(weft_process_kill(c.p, 0) == 0, "the child is left running");
    weft_process_free(c.p); /* kills and reaps it */
    return NULL;
}

Test(proc_, communicate_cancelled)
{
    test_run(2, proc_comm_cancel_task, NULL);
    proc_assert_no_children();
}

Test(proc_, communicate_bad_input)
{
    weft_process_output out;
    memset(&out, 0x5a, sizeof out);
    cr_assert_eq(weft_process_communicate(NULL, NULL, 0, &out, 0), -EINVAL);
    cr_assert(out.out == NULL && out.err == NULL && out.out_len == 0 && out.err_len == 0 &&
                  out.status == -1,
              "out is reset even on -EINVAL");
    static const char *const argv[] = {"cat", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdout = 1};
    weft_process *p;
    cr_assert_eq(weft_process_spawn(&o, &p), 0);
    cr_assert_eq(weft_process_communicate(p, NULL, 0, NULL, 0), -EINVAL);
    cr_assert_eq(weft_process_communicate(p, NULL, 5, &out, 0), -EINVAL);
    /* Input, but stdin is not a pipe. */
    cr_assert_eq(weft_process_communicate(p, "x", 1, &out, 0), -EINVAL);
    cr_assert_null(out.out);
    cr_assert_geq(weft_process_stdout_fd(p), 0, "a refused call leaves the pipes alone");
    weft_process_output_free(NULL);
    weft_process_output_free(&out);
    weft_process_free(p);
    proc_assert_no_children();
}
