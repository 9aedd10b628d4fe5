/*
 * Misuse gets a documented answer: weft_runtime_free from one of its own
 * tasks aborts with a message (instead of hanging), a negative listen
 * backlog is -EINVAL, NULL to weft_chan_len is -EINVAL and to
 * weft_runtime_workers 0 (a runtime has at least one worker),
 * and a write to a peer that reset the connection says -ECONNRESET once,
 * then -EPIPE (as include/weft.h says), never SIGPIPE. A join handle used
 * after it was released aborts with a message naming the call, for every
 * call that takes a handle, also when its control block already runs
 * another task (the handle carries the block's generation).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "task.h" /* weft__handle_ptr: which block a handle names */
#include "util.h"

static void *misuse_free_own_runtime(void *arg)
{
    (void)arg;
    weft_runtime_free(weft_current_runtime());
    return (void *)1; /* not reached: it aborts */
}

Test(misuse, runtime_free_from_its_own_task_aborts, .signal = SIGABRT)
{
    weft_runtime *rt = test_runtime(2);
    weft_runtime_block_on(rt, misuse_free_own_runtime, NULL, NULL);
}

Test(misuse, null_runtime_and_channel)
{
    cr_assert_eq(weft_runtime_workers(NULL), 0);
    cr_assert_eq(weft_chan_len(NULL), -EINVAL);
    weft_runtime *rt = test_runtime(3);
    cr_assert_eq(weft_runtime_workers(rt), 3);
    weft_runtime_free(rt);
    weft_runtime_free(NULL); /* a no-op */
}

static void *misuse_backlog_task(void *arg)
{
    (void)arg;
    TEST_EXPECT(weft_tcp_listen("127.0.0.1", 0, -1) == -EINVAL, "tcp backlog -1");
    TEST_EXPECT(weft_tcp_listen_ex("127.0.0.1", 0, -100, 0) == -EINVAL, "tcp backlog -100");
    char path[64];
    snprintf(path, sizeof path, "/tmp/weft-misuse-%d.sock", (int)getpid());
    unlink(path);
    TEST_EXPECT(weft_unix_listen(path, -5) == -EINVAL, "unix backlog -5");
    TEST_EXPECT(access(path, F_OK) != 0, "a refused listen left its socket file");
    int fd = weft_tcp_listen("127.0.0.1", 0, 0); /* 0: the system's default */
    TEST_EXPECT(fd >= 0, "backlog 0: %d", fd);
    weft_close(fd);
    return NULL;
}

Test(misuse, negative_listen_backlog)
{
    test_run(2, misuse_backlog_task, NULL);
}

/* A connected pair over loopback: *c the client end, *s the server end. */
static int misuse_pair(int *c, int *s)
{
    int lfd = weft_tcp_listen("127.0.0.1", 0, 4);
    if (lfd < 0)
        return lfd;
    *c = weft_tcp_connect("127.0.0.1", (uint16_t)weft_socket_port(lfd), 5000);
    *s = *c < 0 ? -1 : weft_tcp_accept_timeout(lfd, NULL, 5000);
    weft_close(lfd);
    return *c < 0 ? *c : *s < 0 ? *s : 0;
}

static void *misuse_reset_peer_task(void *arg)
{
    (void)arg;
    /* The peer aborts (SO_LINGER 0: close sends a reset). */
    int c, s;
    TEST_EXPECT(misuse_pair(&c, &s) == 0, "pair");
    struct linger lg = {1, 0};
    TEST_EXPECT(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "SO_LINGER");
    weft_close(s);
    /* Readiness shows the reset without taking it. */
    TEST_EXPECT(weft_wait_fd(c, WEFT_READ, 5000) >= 0, "wait for the reset");
    ssize_t n = weft_write(c, "x", 1, 5000);
    TEST_EXPECT(n == -ECONNRESET, "first write after the reset: %zd", n);
    n = weft_write(c, "x", 1, 5000);
    TEST_EXPECT(n == -EPIPE, "second write after the reset: %zd", n);
    weft_close(c);

    /* The peer closes normally (FIN); our next write meets its reset, and
     * the write after it says -EPIPE: never -ECONNRESET after a FIN. */
    TEST_EXPECT(misuse_pair(&c, &s) == 0, "pair");
    weft_close(s);
    int first_err = 0;
    for (int i = 0; i < 200 && !first_err; i++) {
        n = weft_write(c, "x", 1, 5000);
        if (n < 0)
            first_err = (int)n;
        else
            weft_sleep_ms(5);
    }
    TEST_EXPECT(first_err == -EPIPE, "write after FIN and reset: %d", first_err);
    weft_close(c);
    return NULL;
}

Test(misuse, write_to_reset_peer)
{
    test_run(2, misuse_reset_peer_task, NULL);
}

/* ------------------------------------------------------- released handles */

enum {
    STALE_JOIN,
    STALE_JOIN_TIMEOUT,
    STALE_JOIN_ALL,
    STALE_JOIN_ALL_MIXED, /* a live handle first: it must not be released */
    STALE_JOIN_ANY,
    STALE_DETACH,
    STALE_CANCEL,
    STALE_DETACH_TWICE,      /* the task still runs: its block is not reused */
    STALE_JOIN_AFTER_DETACH,
    STALE_BLOCKING_JOIN,     /* a blocking-pool job's handle */
    STALE_BLOCKING_CANCEL,
};

static void *stale_child(void *arg) { return arg; }

static void *stale_sleeper(void *arg)
{
    weft_sleep_ms(200);
    return arg;
}

static void *stale_root(void *arg)
{
    int which = (int)(intptr_t)arg;
    void *r = NULL;
    weft_task *a, *b;
    if (which == STALE_DETACH_TWICE || which == STALE_JOIN_AFTER_DETACH) {
        a = weft_spawn(stale_sleeper, (void *)1);
        TEST_EXPECT(a, "spawn");
        weft_detach(a);
        if (which == STALE_DETACH_TWICE)
            weft_detach(a);
        else
            weft_join(a, &r);
        return NULL; /* not reached */
    }
    if (which == STALE_BLOCKING_JOIN || which == STALE_BLOCKING_CANCEL) {
        a = weft_spawn_blocking(stale_child, (void *)1);
        TEST_EXPECT(a, "spawn_blocking");
        TEST_EXPECT(weft_join(a, &r) == 0 && r == (void *)1, "join: %p", r);
        b = weft_spawn_blocking(stale_sleeper, (void *)2); /* may reuse a's block */
        TEST_EXPECT(b, "spawn_blocking");
        if (which == STALE_BLOCKING_JOIN)
            weft_join(a, &r);
        else
            weft_cancel(a);
        return NULL;
    }
    /* One worker: a's block goes back to its free list at the join, and
     * the next spawn takes it, so the stale handle names b's live block. */
    a = weft_spawn(stale_child, (void *)1);
    TEST_EXPECT(a, "spawn a");
    TEST_EXPECT(weft_join(a, &r) == 0 && r == (void *)1, "join a: %p", r);
    b = weft_spawn(stale_sleeper, (void *)2);
    TEST_EXPECT(b, "spawn b");
    TEST_EXPECT(weft__handle_ptr(a) == weft__handle_ptr(b), "b did not reuse a's block");
    TEST_EXPECT(a != b, "b's handle equals a's released one");
    weft_task *both[2] = {b, a};
    switch (which) {
    case STALE_JOIN: weft_join(a, &r); break;
    case STALE_JOIN_TIMEOUT: weft_join_timeout(a, &r, 1000); break;
    case STALE_JOIN_ALL: weft_join_all(&a, 1, NULL, 1000); break;
    case STALE_JOIN_ALL_MIXED: weft_join_all(both, 2, NULL, 1000); break;
    case STALE_JOIN_ANY: weft_join_any(&a, 1, &r, 1000); break;
    case STALE_DETACH: weft_detach(a); break;
    case STALE_CANCEL: weft_cancel(a); break;
    }
    return NULL; /* not reached: every call above aborts */
}

/* Runs the scenario in a child process and checks that it aborted, with
 * "weft: CALL: stale join handle" on its stderr. */
static void expect_stale_abort(int which, const char *call)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork");
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        weft_runtime *rt = test_runtime(1);
        weft_runtime_block_on(rt, stale_root, (void *)(intptr_t)which, NULL);
        fprintf(stderr, "not detected; %s\n", test_failures ? test_failure_msg : "");
        _exit(0);
    }
    close(p[1]);
    char out[4096];
    size_t len = 0;
    ssize_t k;
    while ((k = read(p[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)k;
    out[len] = 0;
    close(p[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: no abort (status %#x): %s", call,
              st, out);
    char want[128];
    snprintf(want, sizeof want, "weft: %s: stale join handle", call);
    cr_assert(strstr(out, want), "%s: the abort's message is not '%s...': %s", call, want, out);
}

Test(misuse, stale_handle_join) { expect_stale_abort(STALE_JOIN, "weft_join"); }
Test(misuse, stale_handle_join_timeout) { expect_stale_abort(STALE_JOIN_TIMEOUT, "weft_join_timeout"); }
Test(misuse, stale_handle_join_all) { expect_stale_abort(STALE_JOIN_ALL, "weft_join_all"); }
Test(misuse, stale_handle_join_all_mixed) { expect_stale_abort(STALE_JOIN_ALL_MIXED, "weft_join_all"); }
Test(misuse, stale_handle_join_any) { expect_stale_abort(STALE_JOIN_ANY, "weft_join_any"); }
Test(misuse, stale_handle_detach) { expect_stale_abort(STALE_DETACH, "weft_detach"); }
Test(misuse, stale_handle_cancel) { expect_stale_abort(STALE_CANCEL, "weft_cancel"); }
Test(misuse, stale_handle_detach_twice) { expect_stale_abort(STALE_DETACH_TWICE, "weft_detach"); }
Test(misuse, stale_handle_join_after_detach) { expect_stale_abort(STALE_JOIN_AFTER_DETACH, "weft_join"); }
Test(misuse, stale_handle_blocking_join) { expect_stale_abort(STALE_BLOCKING_JOIN, "weft_join"); }
Test(misuse, stale_handle_blocking_cancel) { expect_stale_abort(STALE_BLOCKING_CANCEL, "weft_cancel"); }

/* Valid handles are untouched by the check: a block reused many times
 * hands out a new handle each time, and each joins its own task. */
static void *reuse_root(void *arg)
{
    (void)arg;
    weft_task *prev = NULL;
    int reused = 0;
    for (intptr_t i = 1; i <= 2000; i++) {
        weft_task *t = weft_spawn(stale_child, (void *)i);
        TEST_EXPECT(t, "spawn %d", (int)i);
        TEST_EXPECT(t != prev, "handle %d equals the released one before it", (int)i);
        reused += prev && weft__handle_ptr(t) == weft__handle_ptr(prev);
        void *r = NULL;
        TEST_EXPECT(weft_join(t, &r) == 0 && r == (void *)i, "join %d: %p", (int)i, r);
        prev = t;
    }
    TEST_EXPECT(reused > 1000, "blocks were reused only %d times", reused);
    /* The gathering calls and cancel on live handles of reused blocks. */
    weft_task *ts[3];
    for (intptr_t i = 0; i < 3; i++)
        ts[i] = weft_spawn(stale_child, (void *)(i + 10));
    void *res[3] = {0};
    TEST_EXPECT(weft_join_all(ts, 3, res, 5000) == 0, "join_all");
    TEST_EXPECT(res[0] == (void *)10 && res[2] == (void *)12, "join_all results");
    weft_task *s = weft_spawn(stale_sleeper, NULL);
    TEST_EXPECT(weft_cancel(s) == 0, "cancel");
    TEST_EXPECT(weft_join_timeout(s, NULL, 5000) == -ECANCELED, "join_timeout of a cancelled task");
    return NULL;
}

Test(misuse, live_handles_of_reused_blocks)
{
    test_run(1, reuse_root, NULL);
}
