/*
 * Signals: one delivery wakes exactly one waiter (FIFO), deliveries with no
 * waiter are kept for the next wait, timeouts, cancellation, plain-thread
 * waits, unwatch restoring the old disposition, bad input; and the example
 * servers' graceful shutdown on SIGTERM/SIGINT, run as child processes.
 *
 * Each Criterion test runs in its own process, so the process-wide signal
 * state of one test does not leak into another.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
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

/* ThreadSanitizer runs a signal handler only when the thread the kernel
 * picked reaches one of its interceptors; a process-directed kill() goes to
 * the main thread first, which sleeps in an uninstrumented futex for the
 * whole test, so the delivery waits until the test ends. raise() is handled
 * on the raising thread and works there. */
#if defined(__SANITIZE_THREAD__)
#define SIG_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIG_UNDER_TSAN 1
#endif
#endif
#ifndef SIG_UNDER_TSAN
#define SIG_UNDER_TSAN 0
#endif

static sigset_t sig_set1(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    return s;
}

/* ------------------------------------------------------------ exactly once */

typedef struct sig_waiters {
    atomic_int woken;
    atomic_int started;
    int got[2];
} sig_waiters;

typedef struct sig_waiter_arg {
    sig_waiters *w;
    int idx;
} sig_waiter_arg;

static void *sig_waiter(void *arg)
{
    sig_waiter_arg *a = arg;
    sigset_t s = sig_set1(SIGUSR1);
    sigaddset(&s, SIGHUP); /* a set of several signals */
    atomic_fetch_add(&a->w->started, 1);
    a->w->got[a->idx] = weft_signal_wait(&s, 30000);
    atomic_fetch_add(&a->w->woken, 1);
    return NULL;
}

static void *sig_exactly_once_task(void *arg)
{
    int use_raise = *(int *)arg;
    sig_waiters w = {0};
    sig_waiter_arg a0 = {&w, 0}, a1 = {&w, 1};
    weft_task *t0 = weft_spawn(sig_waiter, &a0);
    TEST_EXPECT(t0, "spawn");
    while (atomic_load(&w.started) < 1)
        weft_sleep_ms(1);
    weft_sleep_ms(10); /* t0 queued first */
    weft_task *t1 = weft_spawn(sig_waiter, &a1);
    TEST_EXPECT(t1, "spawn");
    while (atomic_load(&w.started) < 2)
        weft_sleep_ms(1);
    weft_sleep_ms(20);
    TEST_EXPECT(atomic_load(&w.woken) == 0, "woken before any signal");

    if (use_raise)
        raise(SIGUSR1);
    else
        kill(getpid(), SIGUSR1);
    weft_join(t0, NULL); /* the longest waiter gets it */
    TEST_EXPECT(w.got[0] == SIGUSR1, "first waiter got %d", w.got[0]);
    weft_sleep_ms(100);
    TEST_EXPECT(atomic_load(&w.woken) == 1, "%d waiters woken by one signal",
                atomic_load(&w.woken));

    if (use_raise)
        raise(SIGHUP);
    else
        kill(getpid(), SIGHUP);
    weft_join(t1, NULL);
    TEST_EXPECT(w.got[1] == SIGHUP, "second waiter got %d", w.got[1]);
    /* Nothing left over: each delivery was handed out once. */
    sigset_t both = sig_set1(SIGUSR1);
    sigaddset(&both, SIGHUP);
    int rc = weft_signal_wait(&both, 0);
    TEST_EXPECT(rc == -ETIMEDOUT, "a delivery was counted twice: %d", rc);
    return NULL;
}

Test(signal_, raise_wakes_exactly_one)
{
    int use_raise = 1;
    test_run(2, sig_exactly_once_task, &use_raise);
}

Test(signal_, kill_wakes_exactly_one)
{
    if (SIG_UNDER_TSAN)
        cr_skip_test("TSan defers process-directed signals (see SIG_UNDER_TSAN)");
    int use_raise = 0;
    test_run(4, sig_exactly_once_task, &use_raise);
}

/* ------------------------------------------------------------ kept deliveries */

static void *sig_kept_task(void *arg)
{
    (void)arg;
    sigset_t s = sig_set1(SIGUSR2);
    int rc = weft_signal_watch(&s);
    TEST_EXPECT(rc == 0, "watch: %d", rc);
    /* No waiter yet: both deliveries are kept, one per later wait. */
    raise(SIGUSR2);
    raise(SIGUSR2);
    rc = weft_signal_wait(&s, 0);
    TEST_EXPECT(rc == SIGUSR2, "first kept delivery: %d", rc);
    rc = weft_signal_wait(&s, 1000);
    TEST_EXPECT(rc == SIGUSR2, "second kept delivery: %d", rc);
    weft_time t0 = weft_now();
    rc = weft_signal_wait(&s, 50);
    TEST_EXPECT(rc == -ETIMEDOUT, "third wait: %d", rc);
    TEST_EXPECT(weft_now() - t0 >= 50 * 1000000LL, "timed out early");
    /* A signal kept for one number is not handed to a wait for another. */
    raise(SIGUSR2);
    sigset_t other = sig_set1(SIGUSR1);
    rc = weft_signal_wait(&other, 20);
    TEST_EXPECT(rc == -ETIMEDOUT, "wait for SIGUSR1 got %d", rc);
    rc = weft_signal_wait(&s, 0);
    TEST_EXPECT(rc == SIGUSR2, "kept SIGUSR2: %d", rc);
    return NULL;
}

Test(signal_, delivery_without_waiter_is_kept)
{
    test_run(2, sig_kept_task, NULL);
}

/* A signal sent from another thread shortly before the wait starts. */
static void *sig_late_raiser(void *arg)
{
    (void)arg;
    usleep(20000);
    kill(getpid(), SIGUSR1);
    return NULL;
}

static void *sig_arrives_first_task(void *arg)
{
    (void)arg;
    sigset_t s = sig_set1(SIGUSR1);
    TEST_EXPECT(weft_signal_watch(&s) == 0, "watch");
    pthread_t th;
    TEST_EXPECT(pthread_create(&th, NULL, sig_late_raiser, NULL) == 0, "thread");
    pthread_join(th, NULL); /* blocks this worker; the signal is in before we wait */
    int rc = weft_signal_wait(&s, 5000);
    TEST_EXPECT(rc == SIGUSR1, "wait after the delivery: %d", rc);
    return NULL;
}

Test(signal_, delivery_before_wait_not_lost)
{
    if (SIG_UNDER_TSAN)
        cr_skip_test("TSan defers process-directed signals (see SIG_UNDER_TSAN)");
    test_run(2, sig_arrives_first_task, NULL);
}

/* ------------------------------------------------------------ timeout, cancel */

static void *sig_forever(void *arg)
{
    (void)arg;
    sigset_t s = sig_set1(SIGUSR1);
    return (void *)(intptr_t)weft_signal_wait(&s, -1);
}

static void *sig_cancel_task(void *arg)
{
    (void)arg;
    weft_task *t = test_spawn_running(sig_forever, NULL);
    TEST_EXPECT(t, "spawn");
    weft_sleep_ms(30);
    weft_cancel(t);
    void *res = NULL;
    int rc = weft_join(t, &res);
    TEST_EXPECT(rc == -ECANCELED && (intptr_t)res == -ECANCELED, "join %d, wait %d", rc,
               (int)(intptr_t)res);
    /* The withdrawn waiter does not swallow the next delivery. */
    raise(SIGUSR1);
    sigset_t s = sig_set1(SIGUSR1);
    rc = weft_signal_wait(&s, 1000);
    TEST_EXPECT(rc == SIGUSR1, "after the cancelled waiter: %d", rc);
    return NULL;
}

Test(signal_, cancel_and_timeout)
{
    test_run(2, sig_cancel_task, NULL);
}

/* From a plain thread the wait blocks the thread. */
static void *sig_thread_raiser(void *arg)
{
    (void)arg;
    usleep(30000);
    kill(getpid(), SIGUSR2);
    return NULL;
}

Test(signal_, plain_thread_wait)
{
    if (SIG_UNDER_TSAN)
        cr_skip_test("TSan defers process-directed signals (see SIG_UNDER_TSAN)");
    sigset_t s = sig_set1(SIGUSR2);
    cr_assert_eq(weft_signal_wait(&s, 10), -ETIMEDOUT);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sig_thread_raiser, NULL), 0);
    int rc = weft_signal_wait(&s, 10000);
    pthread_join(th, NULL);
    cr_assert_eq(rc, SIGUSR2, "got %d", rc);
}

/* ------------------------------------------------------------ unwatch, bad input */

static atomic_int sig_own_handler_runs;
static void sig_own_handler(int sig)
{
    (void)sig;
    atomic_fetch_add(&sig_own_handler_runs, 1);
}

static void *sig_busy_waiter(void *arg)
{
    (void)arg;
    sigset_t s = sig_set1(SIGHUP);
    return (void *)(intptr_t)weft_signal_wait(&s, 10000);
}

static void *sig_unwatch_task(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_own_handler;
    sigemptyset(&sa.sa_mask);
    TEST_EXPECT(sigaction(SIGHUP, &sa, NULL) == 0, "sigaction");

    weft_task *t = weft_spawn(sig_busy_waiter, NULL);
    TEST_EXPECT(t, "spawn");
    weft_sleep_ms(30);
    TEST_EXPECT(weft_signal_unwatch(SIGHUP) == -EBUSY, "unwatch while a wait is in progress");
    raise(SIGHUP);
    void *res = NULL;
    weft_join(t, &res);
    TEST_EXPECT((intptr_t)res == SIGHUP, "waiter got %d", (int)(intptr_t)res);
    TEST_EXPECT(atomic_load(&sig_own_handler_runs) == 0, "the program's handler ran while watched");

    raise(SIGHUP); /* kept, then dropped by unwatch */
    TEST_EXPECT(weft_signal_unwatch(SIGHUP) == 0, "unwatch");
    TEST_EXPECT(weft_signal_unwatch(SIGHUP) == 0, "unwatch twice");
    raise(SIGHUP);
    TEST_EXPECT(atomic_load(&sig_own_handler_runs) == 1, "old handler not restored (%d runs)",
               atomic_load(&sig_own_handler_runs));
    /* Watching again starts from nothing kept. */
    sigset_t s = sig_set1(SIGHUP);
    int rc = weft_signal_wait(&s, 0);
    TEST_EXPECT(rc == -ETIMEDOUT, "a delivery survived unwatch: %d", rc);
    TEST_EXPECT(weft_signal_unwatch(SIGHUP) == 0, "unwatch");
    signal(SIGHUP, SIG_DFL);
    return NULL;
}

Test(signal_, unwatch_restores_disposition)
{
    test_run(2, sig_unwatch_task, NULL);
}

Test(signal_, bad_input)
{
    sigset_t s;
    sigemptyset(&s);
    cr_assert_eq(weft_signal_wait(NULL, 0), -EINVAL);
    cr_assert_eq(weft_signal_wait(&s, 0), -EINVAL);
    cr_assert_eq(weft_signal_watch(&s), -EINVAL);
    sigaddset(&s, SIGKILL);
    cr_assert_eq(weft_signal_wait(&s, 0), -EINVAL);
    s = sig_set1(SIGSEGV);
    cr_assert_eq(weft_signal_watch(&s), -EINVAL);
    cr_assert_eq(weft_signal_unwatch(0), -EINVAL);
    cr_assert_eq(weft_signal_unwatch(NSIG), -EINVAL);
    cr_assert_eq(weft_signal_unwatch(SIGUSR1), 0); /* never watched */
}

/* ------------------------------------------------------------ graceful shutdown */

typedef struct sig_server {
    const char *path;
    const char *name; /* "http_server" or "echo_server" */
    int sig;
} sig_server;

static int sig_slow(void) { return test_scale_down(); }

static void *sig_server_task(void *arg)
{
    sig_server *sv = arg;
    int64_t slow = sig_slow() ? 20 : 1;
    const char *const argv[] = {sv->path, "0", "2", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdout = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    TEST_EXPECT(rc == 0, "spawn %s: %d", sv->path, rc);
    int out = weft_process_stdout_fd(p);
    char line[256];
    ssize_t n = test_read_line(out, line, sizeof line, 10000 * slow);
    int port = 0;
    const char *colon = n > 0 ? strrchr(line, ':') : NULL;
    if (colon)
        port = atoi(colon + 1);
    if (port <= 0) {
        weft_process_free(p);
        TEST_EXPECT(0, "no port in '%s' (%zd)", n > 0 ? line : "", n);
    }

    /* One connection that made a request and stays open (idle keep-alive
     * for the HTTP server), one that never says anything. */
    int c1 = weft_tcp_connect("127.0.0.1", (uint16_t)port, 5000 * slow);
    int c2 = weft_tcp_connect("127.0.0.1", (uint16_t)port, 5000 * slow);
    TEST_EXPECT(c1 >= 0 && c2 >= 0, "connect: %d %d", c1, c2);
    int http = strcmp(sv->name, "http_server") == 0;
    const char *req = http ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n" : "ping";
    TEST_EXPECT(weft_write(c1, req, strlen(req), 5000 * slow) == (ssize_t)strlen(req), "write");
    char resp[512];
    n = weft_read(c1, resp, sizeof resp - 1, 10000 * slow);
    TEST_EXPECT(n > 0, "response: %zd", n);
    resp[n] = '\0';
    if (http)
        TEST_EXPECT(strstr(resp, "Hello, World!") != NULL, "response '%s'", resp);
    else
        TEST_EXPECT(strncmp(resp, "ping", 4) == 0, "echo '%s'", resp);

    weft_sleep_ms(50 * slow); /* let the server accept the silent one */
    rc = weft_process_kill(p, sv->sig);
    TEST_EXPECT(rc == 0, "kill: %d", rc);
    int st = -1;
    weft_time t0 = weft_now();
    rc = weft_process_wait(p, &st, 5000 * slow);
    int64_t ms = (weft_now() - t0) / 1000000;
    if (rc == -ETIMEDOUT)
        weft_process_kill(p, SIGKILL);
    TEST_EXPECT(rc == 0, "server did not exit within %lld ms: %d", (long long)(5000 * slow), rc);
    TEST_EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %#x after %lld ms", st,
               (long long)ms);
    /* Both connections were closed by the server, not cut by its death. */
    n = weft_read(c1, resp, sizeof resp, 2000 * slow);
    TEST_EXPECT(n == 0, "idle connection: %zd", n);
    /* The silent one gets a clean close too, even if it still sat in the
     * accept queue at the signal (the stop accepts the queue first). */
    n = weft_read(c2, resp, sizeof resp, 2000 * slow);
    TEST_EXPECT(n == 0, "silent connection: %zd", n);
    weft_close(c1);
    weft_close(c2);
    /* It said what it did. */
    char rest[1024];
    size_t len = 0;
    while (len < sizeof rest - 1) {
        n = weft_read(out, rest + len, sizeof rest - 1 - len, 2000 * slow);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    rest[len] = '\0';
    TEST_EXPECT(strstr(rest, "shutting down") && strstr(rest, "stopped"), "output '%s'", rest);
    weft_process_free(p);
    return NULL;
}

static void sig_server_test(const char *name, int sig)
{
    char path[256];
    /* make test passes its build's directory; by hand, the default build. */
    const char *dir = getenv("WEFT_EXAMPLES_DIR");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "build/examples", name);
    if (access(path, X_OK) != 0) {
        cr_skip_test("%s not built (run make first)", path);
        return;
    }
    sig_server sv = {.path = path, .name = name, .sig = sig};
    test_run(2, sig_server_task, &sv);
}

Test(signal_, http_server_graceful_sigterm, .timeout = 120)
{
    sig_server_test("http_server", SIGTERM);
}

Test(signal_, echo_server_graceful_sigint, .timeout = 120)
{
    sig_server_test("echo_server", SIGINT);
}
