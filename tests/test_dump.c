/* Task dumps (weft_runtime_dump), metrics, debug mode's warnings. */
#include "util.h"

#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* The waiting functions: non-static and noinline so a dump's backtrace
 * names them (dladdr: the test binary is linked with -rdynamic; libweft's
 * own frames are walked by libunwind, so no frame pointers are needed);
 * each does something after its wait, so the wait is no tail call. */
static weft_mutex *g_mu, *g_cmu;
static weft_cond *g_cond;
static weft_wg *g_wg;
static weft_group *g_group;
static weft_sem *g_sem;
static weft_event *g_ev;
static weft_chan *g_ch;
static int g_pipe[2], g_bpipe[2];
static weft_task *g_target;
static _Atomic int g_sink; /* atomic: tasks on both workers bump it */
static _Atomic int g_spin, g_spinning;

__attribute__((noinline)) int dumpwait_fd(void) { int r = weft_wait_fd(g_pipe[0], WEFT_READ, -1); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_sleep(void) { int r = weft_sleep_ms(60000); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_join(void) { int r = weft_join(g_target, NULL); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_chan(void) { int v; int r = weft_chan_recv(g_ch, &v); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_mutex(void)
{
    int r = weft_mutex_lock(g_mu, -1);
    if (r == 0)
        weft_mutex_unlock(g_mu);
    g_sink++;
    return r;
}
__attribute__((noinline)) int dumpwait_sem(void) { int r = weft_sem_acquire(g_sem, -1); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_event(void) { int r = weft_event_wait(g_ev, -1); g_sink++; return r; }
__attribute__((noinline)) int dumpwait_cond(void)
{
    int r = weft_mutex_lock(g_cmu, -1);
    if (r == 0) {
        r = weft_cond_wait(g_cond, g_cmu, -1);
        weft_mutex_unlock(g_cmu);
    }
    g_sink++;
    return r;
}
__attribute__((noinline)) int dumpwait_wg(void) { int r = weft_wg_wait(g_wg, -1); g_sink++; return r; }
static void *dump_group_member(void *a);
__attribute__((noinline)) int dumpwait_group(void)
{
    int r = weft_group_spawn(g_group, dump_group_member, NULL); /* a member that waits on the event */
    if (r == 0)
        r = weft_group_wait(g_group, -1);
    g_sink++;
    return r;
}
static void *blocking_job(void *a)
{
    (void)a;
    char c;
    return (void *)(intptr_t)read(g_bpipe[0], &c, 1); /* a plain blocking read on a pool thread */
}
__attribute__((noinline)) int dumpwait_blocking(void)
{
    weft_task *j = weft_spawn_blocking(blocking_job, NULL);
    int r = j ? weft_join(j, NULL) : -ENOMEM;
    g_sink++;
    return r;
}
__attribute__((noinline)) void *dump_spinner(void *a)
{
    (void)a;
    atomic_store(&g_spinning, 1);
    while (atomic_load(&g_spin))
        g_sink++;
    return NULL;
}

static void *run_fd(void *a) { (void)a; return (void *)(intptr_t)dumpwait_fd(); }
static void *run_sleep(void *a) { (void)a; return (void *)(intptr_t)dumpwait_sleep(); }
static void *run_join(void *a) { (void)a; return (void *)(intptr_t)dumpwait_join(); }
static void *run_chan(void *a) { (void)a; return (void *)(intptr_t)dumpwait_chan(); }
static void *run_mutex(void *a) { (void)a; return (void *)(intptr_t)dumpwait_mutex(); }
static void *run_sem(void *a) { (void)a; return (void *)(intptr_t)dumpwait_sem(); }
static void *run_event(void *a) { (void)a; return (void *)(intptr_t)dumpwait_event(); }
static void *run_cond(void *a) { (void)a; return (void *)(intptr_t)dumpwait_cond(); }
static void *run_wg(void *a) { (void)a; return (void *)(intptr_t)dumpwait_wg(); }
static void *run_group(void *a) { (void)a; return (void *)(intptr_t)dumpwait_group(); }
static void *run_blocking(void *a) { (void)a; return (void *)(intptr_t)dumpwait_blocking(); }
static void *run_target(void *a) { (void)a; weft_event_wait(g_ev, -1); return NULL; }
static void *dump_group_member(void *a) { (void)a; weft_event_wait(g_ev, -1); return NULL; }

static char *dump_string(weft_runtime *rt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    weft_runtime_dump(rt, f);
    fclose(f);
    return buf;
}

/* The section of the dump about the task named `name`. */
static char *section(const char *dump, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(dump, key);
    if (!p)
        return NULL;
    const char *e = strstr(p, "\ntask ");
    if (!e)
        e = p + strlen(p);
    return strndup(p, (size_t)(e - p));
}

/* The dump's closing line: how many tasks it found parked. */
static int parked_in(const char *d)
{
    const char *p = strstr(d, "\nweft: ");
    int total = 0, parked = -1;
    if (p && sscanf(p + 1, "weft: %d tasks (%d parked", &total, &parked) == 2)
        return parked;
    return -1;
}

Test(dump, names_each_state_and_the_waiting_function)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(pipe(g_pipe), 0);
    cr_assert_eq(pipe(g_bpipe), 0);
    g_mu = weft_mutex_new();
    g_cmu = weft_mutex_new();
    g_cond = weft_cond_new();
    g_wg = weft_wg_new();
    g_group = weft_group_new(0);
    g_sem = weft_sem_new(0);
    g_ev = weft_event_new();
    g_ch = weft_chan_new(1, sizeof(int));
    cr_assert(g_mu && g_cmu && g_cond && g_wg && g_group && g_sem && g_ev && g_ch);
    cr_assert_eq(weft_mutex_lock(g_mu, -1), 0); /* held by this thread: the task waits */
    cr_assert_eq(weft_wg_add(g_wg, 1), 0);
    struct {
        const char *name;
        weft_fn fn;
        const char *state, *func;
    } cases[] = {
        {"w-fd", run_fd, "waiting on fd", "dumpwait_fd"},
        {"w-sleep", run_sleep, "sleeping until", "dumpwait_sleep"},
        {"w-join", run_join, "joining task", "dumpwait_join"},
        {"w-chan", run_chan, "waiting on channel receive", "dumpwait_chan"},
        {"w-mutex", run_mutex, "waiting on mutex", "dumpwait_mutex"},
        {"w-sem", run_sem, "waiting on semaphore", "dumpwait_sem"},
        {"w-event", run_event, "waiting on event", "dumpwait_event"},
        {"w-cond", run_cond, "waiting on condition", "dumpwait_cond"},
        {"w-wg", run_wg, "waiting on wait group", "dumpwait_wg"},
        {"w-group", run_group, "waiting on group", "dumpwait_group"},
        {"w-blocking", run_blocking, "(a blocking/compute job)", "dumpwait_blocking"},
        {"target", run_target, "waiting on event", "weft_event_wait"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    weft_task *h[16];
    weft_spawn_opts o = {.name = "target"};
    g_target = weft_spawn_on_ex(rt, run_target, NULL, &o);
    cr_assert_not_null(g_target);
    for (int i = 0; i < n - 1; i++) {
        weft_spawn_opts oi = {.name = cases[i].name};
        h[i] = weft_spawn_on_ex(rt, cases[i].fn, NULL, &oi);
        cr_assert_not_null(h[i]);
    }
    /* And one that runs: it spins (holding a worker) until told to stop. */
    atomic_store(&g_spin, 1);
    weft_spawn_opts os = {.name = "w-running"};
    weft_task *spinner = weft_spawn_on_ex(rt, dump_spinner, NULL, &os);
    cr_assert_not_null(spinner);
    char *d = NULL;
    for (int tries = 0; tries < 1000; tries++) { /* until every waiter has parked */
        free(d);
        d = dump_string(rt);
        if (parked_in(d) >= n + 1 && atomic_load(&g_spinning)) /* + the group's member */
            break;
        usleep(10000);
    }
    cr_assert(parked_in(d) >= n + 1, "not all parked:\n%s", d);
    char want[64];
    snprintf(want, sizeof want, "waiting on fd %d to read", g_pipe[0]);
    cr_assert_not_null(strstr(d, want), "%s", d);
    for (int i = 0; i < n; i++) {
        char *s = section(d, cases[i].name);
        cr_assert_not_null(s, "no section for %s in\n%s", cases[i].name, d);
        cr_expect_not_null(strstr(s, cases[i].state), "%s: no '%s' in\n%s", cases[i].name, cases[i].state, s);
        cr_expect_not_null(strstr(s, cases[i].func), "%s: no '%s' in\n%s", cases[i].name, cases[i].func, s);
        cr_expect_not_null(strstr(s, "spawned at: "), "%s", s);
        cr_expect_not_null(strstr(s, "#0 "), "%s", s);
        cr_expect_not_null(strstr(s, ", for "), "%s: no time in the state: %s", cases[i].name, s);
        free(s);
    }
    /* The running task is listed as running, without a name or frames (its
     * stack is in use), the blocking job as a job. */
    cr_expect_not_null(strstr(d, "state: running on worker"), "%s", d);
    cr_expect_not_null(strstr(d, "dump_spinner"), "%s", d);
    cr_expect_not_null(strstr(d, "blocking/compute job"), "%s", d);
    free(d);
    /* Let everything go, and check that every task ends normally. */
    atomic_store(&g_spin, 0);
    int v = 1;
    cr_assert_eq(weft_chan_send(g_ch, &v), 0);
    cr_assert_eq(weft_mutex_unlock(g_mu), 0);
    cr_assert_eq(weft_sem_release(g_sem, 1), 0);
    cr_assert_eq(weft_event_set(g_ev), 0);
    cr_assert_eq(weft_wg_done(g_wg), 0);
    cr_assert_eq(write(g_pipe[1], "x", 1), 1);
    cr_assert_eq(write(g_bpipe[1], "x", 1), 1);
    cr_assert_eq(weft_cancel(h[1]), 0); /* the sleeper */
    for (int tries = 0; tries < 500; tries++) { /* the condition: its waiter may not be there yet */
        cr_assert_eq(weft_mutex_lock(g_cmu, -1), 0);
        weft_cond_broadcast(g_cond);
        weft_mutex_unlock(g_cmu);
        if (weft_join_timeout(h[7], NULL, 10) != -ETIMEDOUT)
            break;
    }
    for (int i = 0; i < n - 1; i++) {
        if (i == 7)
            continue;
        void *r = NULL;
        int rc = weft_join(h[i], &r);
        if (i == 1)
            cr_expect(rc == -ECANCELED, "sleeper: %d", rc);
        else
            cr_expect(rc == 0 && (intptr_t)r >= 0, "%s: join %d result %ld", cases[i].name, rc, (long)(intptr_t)r);
    }
    cr_assert_eq(weft_join(spinner, NULL), 0);
    weft_runtime_free(rt);
    weft_group_free(g_group);
    weft_wg_free(g_wg);
    weft_cond_free(g_cond);
    weft_mutex_free(g_cmu);
    weft_mutex_free(g_mu);
    weft_sem_free(g_sem);
    weft_event_free(g_ev);
    weft_chan_free(g_ch);
    close(g_pipe[0]);
    close(g_pipe[1]);
    close(g_bpipe[0]);
    close(g_bpipe[1]);
}

/* ------------------------------------------------------------ under churn */

static _Atomic int churn_stop;

static void *churn_leaf(void *a)
{
    if ((intptr_t)a & 1)
        weft_sleep_ms(1);
    else
        weft_yield();
    return NULL;
}

static void *churn_main(void *a)
{
    (void)a;
    for (intptr_t i = 0; !atomic_load(&churn_stop); i++) {
        weft_task *t[8];
        for (int k = 0; k < 8; k++)
            t[k] = weft_spawn(churn_leaf, (void *)(i + k));
        for (int k = 0; k < 8; k++)
            if (t[k])
                weft_join(t[k], NULL);
    }
    return NULL;
}

Test(dump, while_tasks_spawn_and_exit)
{
    weft_runtime *rt = test_runtime(3);
    atomic_store(&churn_stop, 0);
    weft_task *m[2];
    for (int i = 0; i < 2; i++)
        m[i] = weft_spawn_on(rt, churn_main, NULL);
    /* 20 dumps while both spawners churn; between them they must have held
     * (and walked) parked tasks, or the test would check nothing. */
    int parked = 0, walked = 0;
    for (int i = 0; i < 20; i++) {
        char *d = dump_string(rt);
        int p = parked_in(d);
        cr_expect_geq(p, 0, "no closing line in:\n%s", d);
        parked += p > 0 ? p : 0;
        walked += strstr(d, "#0 ") != NULL;
        free(d);
        usleep(2000);
    }
    cr_expect_gt(parked, 0, "no dump found a parked task");
    cr_expect_gt(walked, 0, "no dump walked a stack");
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(weft_join(m[i], NULL), 0);
    weft_runtime_free(rt);
}

/* 10,000 waiting tasks: the time is printed, not asserted. */
static weft_event *many_ev;
__attribute__((noinline)) void *many_wait(void *a)
{
    (void)a;
    weft_event_wait(many_ev, -1);
    return NULL;
}

/* TSan makes a fiber of each task and stops at 8,128: fewer there. */
#if defined(__SANITIZE_THREAD__)
#define MANY_TASKS 2000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MANY_TASKS 2000
#endif
#endif
#ifndef MANY_TASKS
#define MANY_TASKS 10000
#endif

Test(dump, ten_thousand_waiting_tasks)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    cfg.stack_size = 16 * 1024;
    weft_runtime *rt = weft_runtime_new(&cfg);
    cr_assert_not_null(rt);
    many_ev = weft_event_new();
    const int N = getenv("WEFT_VALGRIND") ? 1000 : MANY_TASKS; /* memcheck: fewer */
    weft_task **h = malloc(N * sizeof *h);
    for (int i = 0; i < N; i++) {
        h[i] = weft_spawn_on(rt, many_wait, NULL);
        cr_assert_not_null(h[i]);
    }
    weft_metrics m;
    for (int tries = 0; tries < 1000; tries++) {
        weft_runtime_metrics(rt, &m, NULL, 0);
        char *d = dump_string(rt);
        int ok = parked_in(d) == N;
        free(d);
        if (ok)
            break;
        usleep(10000);
    }
    FILE *null = fopen("/dev/null", "w");
    struct timespec a, b, ca, cb;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
    int n = weft_runtime_dump(rt, null);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
    clock_gettime(CLOCK_MONOTONIC, &b);
    fclose(null);
    cr_expect_geq(n, N);
    /* Reported, not asserted (no test depends on the machine's speed). */
    fprintf(stderr, "dump of %d waiting tasks: %.1f ms wall, %.1f ms CPU\n", n,
            (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6,
            (double)(cb.tv_sec - ca.tv_sec) * 1e3 + (double)(cb.tv_nsec - ca.tv_nsec) / 1e6);
    /* Every one of them with the waiting function in its backtrace. */
    char *d = dump_string(rt);
    size_t with_fn = 0;
    for (const char *p = d; (p = strstr(p, "in many_wait")) != NULL; p++)
        with_fn++;
    free(d);
    cr_expect_eq(with_fn, (size_t)N, "%zu of %d backtraces name many_wait", with_fn, N);
    weft_event_set(many_ev);
    for (int i = 0; i < N; i++)
        weft_join(h[i], NULL);
    free(h);
    cr_assert_eq(weft_runtime_metrics(rt, &m, NULL, 0), 2);
    cr_expect_geq(m.tasks_spawned, (uint64_t)N);
    weft_runtime_free(rt);
    weft_event_free(many_ev);
}

/* ------------------------------------------------------------ metrics */

static void *nothing(void *a) { return a; }

static void *yielder(void *a)
{
    (void)a;
    for (int i = 0; i < 2000; i++) {
        weft_yield();
        if (i % 4 == 0) { /* spawns and wake-ups: schedule latencies to sample */
            weft_task *t = weft_spawn(nothing, NULL);
            if (t)
                weft_join(t, NULL);
        }
    }
    return NULL;
}

static int metrics_pipe[2];
static void *pipe_reader(void *a)
{
    (void)a;
    return (void *)(intptr_t)weft_wait_fd(metrics_pipe[0], WEFT_READ, -1);
}

Test(dump, metrics_count_and_histograms_fill)
{
    weft_runtime *rt = test_runtime(2);
    /* A descriptor registered while a task waits on it. */
    cr_assert_eq(pipe(metrics_pipe), 0);
    weft_task *r = weft_spawn_on(rt, pipe_reader, NULL);
    cr_assert_not_null(r);
    weft_metrics dm;
    for (int tries = 0; tries < 500; tries++) {
        cr_assert_eq(weft_runtime_metrics(rt, &dm, NULL, 0), 2);
        if (dm.descriptors >= 1)
            break;
        usleep(10000);
    }
    cr_expect_geq(dm.descriptors, 1);
    cr_expect_geq(dm.live_tasks, 1);
    cr_assert_eq(write(metrics_pipe[1], "x", 1), 1);
    cr_assert_eq(weft_join(r, NULL), 0);
    weft_task *t = weft_spawn_on(rt, yielder, NULL);
    cr_assert_eq(weft_join(t, NULL), 0);
    weft_metrics m;
    weft_worker_metrics wm[2];
    cr_assert_eq(weft_runtime_metrics(rt, &m, wm, 2), 2);
    uint64_t slices = 0, latencies = 0, runs = 0;
    for (int b = 0; b < WEFT_HIST_BUCKETS; b++) {
        slices += m.slice_ns[b];
        latencies += m.latency_ns[b];
    }
    runs = wm[0].stats.tasks_run + wm[1].stats.tasks_run;
    cr_expect_geq(runs, 2000);
    cr_expect_gt(slices, 0, "no slice sampled in %llu runs", (unsigned long long)runs);
    cr_expect_gt(latencies, 0, "no schedule latency sampled in %llu runs", (unsigned long long)runs);
    cr_expect_geq(m.tasks_spawned, 502);
    cr_expect_eq(m.live_tasks, 0);
    cr_expect_geq(wm[0].spawned + wm[1].spawned, 500);
    cr_expect_gt(wm[0].polls + wm[1].polls, 0);
    cr_expect_eq(m.workers, 2);
    weft_metrics_print(&m, stderr);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ debug mode */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((noinline)) void *long_spinner(void *a)
{
    (void)a;
    int64_t end = now_ns() + 200 * 1000000LL;
    while (now_ns() < end)
        g_sink++;
    return NULL;
}

/* Yields every 10 ms of its own clock for 300 ms, and records the longest
 * stretch it saw between resuming and yielding again: on a loaded machine
 * the thread itself may be descheduled mid-slice, and then the slice is
 * long in fact (the warning would be right). */
static _Atomic int64_t polite_max_gap;
__attribute__((noinline)) void *polite_spinner(void *a)
{
    (void)a;
    int64_t end = now_ns() + 300 * 1000000LL;
    int64_t resumed = now_ns();
    while (resumed < end) {
        int64_t slice = resumed + 10 * 1000000LL, t;
        while ((t = now_ns()) < slice)
            g_sink++;
        if (t - resumed > atomic_load(&polite_max_gap))
            atomic_store(&polite_max_gap, t - resumed);
        weft_yield();
        resumed = now_ns();
    }
    return NULL;
}

/* stderr into a fresh temporary file (unlinked at once): returns its
 * descriptor, and the old stderr in *saved for stderr_restore. */
static int stderr_capture(int *saved)
{
    fflush(stderr);
    char path[] = "/tmp/weft-err-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    *saved = dup(2);
    dup2(fd, 2);
    return fd;
}

static void stderr_restore(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

/* Runs fn on a debug runtime of `workers` with stderr captured; returns it. */
static char *run_debug_on(unsigned workers, weft_fn fn, int leak_handle)
{
    int saved, fd = stderr_capture(&saved);
    weft_runtime *rt = test_runtime(workers);
    cr_assert_eq(weft_runtime_set_debug(rt, 100), 0);
    weft_task *t = weft_spawn_on(rt, fn, NULL);
    cr_assert_not_null(t);
    if (leak_handle) {
        usleep(400000);
    } else {
        cr_assert_eq(weft_join(t, NULL), 0);
    }
    weft_runtime_free(rt);
    stderr_restore(saved);
    FILE *f = fdopen(fd, "r");
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, 65536);
    size_t got = fread(buf, 1, 65535, f);
    buf[got] = 0;
    fclose(f);
    if (leak_handle)
        weft_detach(t); /* orphaned by the free: dropped now */
    return buf;
}

static char *run_debug(weft_fn fn, int leak_handle) { return run_debug_on(2, fn, leak_handle); }

static void expect_one_long_slice_warning(char *out)
{
    cr_expect_not_null(strstr(out, "without suspending"), "no warning in: %s", out);
    cr_expect_not_null(strstr(out, "long_spinner"), "the task function is not named in: %s", out);
    cr_expect_not_null(strstr(out, "spawned at"), "%s", out);
    const char *first = strstr(out, "without suspending"); /* once per episode */
    cr_expect(first == NULL || strstr(first + 1, "without suspending") == NULL, "warned twice: %s", out);
}

/* A single worker has no peer passing by: the watchdog thread notices. */
Test(debug, long_slice_warns_for_a_200ms_spin_on_one_worker)
{
    char *out = run_debug_on(1, long_spinner, 0);
    expect_one_long_slice_warning(out);
    free(out);
}

Test(debug, long_slice_silent_on_one_worker_for_a_task_yielding_every_10ms)
{
    char *out = run_debug_on(1, polite_spinner, 0);
    int64_t gap = atomic_load(&polite_max_gap);
    if (gap < 75 * 1000000LL)
        cr_expect_null(strstr(out, "without suspending"), "warned (longest slice %.1f ms): %s", gap / 1e6, out);
    else
        cr_log_warn("longest slice seen by the task itself was %.1f ms: silence not checked", gap / 1e6);
    free(out);
}

Test(debug, long_slice_warns_for_a_200ms_spin)
{
    char *out = run_debug(long_spinner, 0);
    cr_expect_not_null(strstr(out, "without suspending"), "no warning in: %s", out);
    cr_expect_not_null(strstr(out, "long_spinner"), "the task function is not named in: %s", out);
    cr_expect_not_null(strstr(out, "spawned at"), "%s", out);
    /* once per episode */
    const char *first = strstr(out, "without suspending");
    cr_expect(first == NULL || strstr(first + 1, "without suspending") == NULL, "warned twice: %s", out);
    free(out);
}

Test(debug, long_slice_silent_for_a_task_yielding_every_10ms)
{
    char *out = run_debug(polite_spinner, 0);
    int64_t gap = atomic_load(&polite_max_gap);
    if (gap < 75 * 1000000LL) /* the threshold is 100 ms: 25 ms of margin for what the task cannot see */
        cr_expect_null(strstr(out, "without suspending"), "warned (longest slice %.1f ms): %s", gap / 1e6, out);
    else /* the machine held the thread itself for that long: not the task's doing */
        cr_log_warn("longest slice seen by the task itself was %.1f ms: silence not checked", gap / 1e6);
    free(out);
}

Test(debug, never_joined_handle_warned_at_free)
{
    char *out = run_debug(yielder, 1);
    cr_expect_not_null(strstr(out, "never joined nor detached"), "no warning in: %s", out);
    free(out);
}

/* ------------------------------------------------------------ misuse */

Test(dump, bad_input_is_einval)
{
    FILE *null = fopen("/dev/null", "w");
    cr_assert_not_null(null);
    weft_runtime *rt = test_runtime(1);
    cr_expect_eq(weft_runtime_dump(NULL, null), -EINVAL);
    cr_expect_eq(weft_runtime_dump(rt, NULL), -EINVAL);
    cr_expect_eq(weft_runtime_dump_on_signal(NULL, 1), -EINVAL);
    cr_expect_eq(weft_runtime_set_debug(NULL, 100), -EINVAL);
    weft_metrics m;
    cr_expect_eq(weft_runtime_metrics(NULL, &m, NULL, 0), -EINVAL);
    cr_expect_eq(weft_runtime_metrics(rt, NULL, NULL, 0), 1);
    weft_metrics_print(NULL, null); /* nothing, no crash */
    weft_metrics_print(&m, NULL);
    cr_expect_eq(weft_runtime_dump(rt, null), 0); /* no tasks: an empty dump */
    weft_runtime_free(rt);
    fclose(null);
}

/* ------------------------------------------------------------ SIGQUIT */

static void *sigquit_waiter(void *a)
{
    (void)a;
    weft_sleep_ms(60000);
    return NULL;
}

Test(dump, sigquit_dumps_when_enabled)
{
    int saved, fd = stderr_capture(&saved);
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_dump_on_signal(rt, 1), 0);
    weft_spawn_opts o = {.name = "quit-sleeper"};
    weft_task *t = weft_spawn_on_ex(rt, sigquit_waiter, NULL, &o);
    cr_assert_not_null(t);
    char buf[65536];
    size_t got = 0;
    for (int tries = 0; tries < 500; tries++) { /* until the helper thread has written it */
        raise(SIGQUIT);
        usleep(20000);
        ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
        got = r > 0 ? (size_t)r : 0;
        buf[got] = 0;
        if (strstr(buf, "quit-sleeper") && strstr(buf, "sleeping until"))
            break;
    }
    stderr_restore(saved);
    cr_expect_not_null(strstr(buf, "weft: dump of runtime"), "%s", buf);
    cr_expect_not_null(strstr(buf, "quit-sleeper"), "%s", buf);
    cr_expect_not_null(strstr(buf, "sleeping until"), "%s", buf);
    cr_assert_eq(weft_cancel(t), 0);
    weft_join(t, NULL);
    weft_runtime_free(rt);
    close(fd);
}

/* ------------------------------------------------------------ gdb */

/* tools/weft-gdb.py against a core file: tests/gdb_target aborts with two
 * tasks waiting in functions of known names, under `ulimit -c unlimited`
 * in a directory of its own (core_pattern "core", the default, writes
 * ./core or ./core.PID there); gdb then lists the tasks and prints one
 * task's backtrace from the core. */
Test(gdb, tasks_and_a_backtrace_from_a_core_file, .timeout = 240)
{
    if (system("command -v gdb >/dev/null 2>&1") != 0)
        cr_skip_test("gdb is not installed: the gdb extension is not checked");
    if (getenv("WEFT_VALGRIND")) /* make valgrind traces children: the core would be valgrind's */
        cr_skip_test("under valgrind the target's core is valgrind's own: checked in the other lanes");
    const char *ex = getenv("WEFT_EXAMPLES_DIR");
    char target[512];
    snprintf(target, sizeof target, "%s/../tests/gdb_target", ex ? ex : "build/examples");
    if (access(target, X_OK) != 0)
        snprintf(target, sizeof target, "build/tests/gdb_target");
    cr_assert_eq(access(target, X_OK), 0, "no %s (make builds it with the tests)", target);
    char abs_target[PATH_MAX], script[PATH_MAX];
    cr_assert_not_null(realpath(target, abs_target));
    cr_assert_not_null(realpath("tools/weft-gdb.py", script), "tools/weft-gdb.py not found (run from the repo root)");
    char dir[] = "/tmp/weft-core-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    FILE *pat = fopen("/proc/sys/kernel/core_pattern", "r");
    char pattern[256] = "";
    if (pat) {
        if (!fgets(pattern, sizeof pattern, pat))
            pattern[0] = 0;
        fclose(pat);
    }
    if (pattern[0] == '|') {
        cr_skip_test("core_pattern pipes cores to %.*s: no core file to check here", (int)strcspn(pattern, "\n"),
                     pattern);
    }
    char cmd[4 * PATH_MAX + 512];
    snprintf(cmd, sizeof cmd,
             "cd %s && (ulimit -c unlimited; %s > target.out 2>&1); "
             "core=$(ls %s/core* 2>/dev/null | head -1); test -n \"$core\" || exit 3; "
             "gdb -q -batch -nx %s \"$core\" -ex 'source %s' -ex 'weft tasks' -ex 'weft bt gdb-event' "
             "-ex 'weft bt gdb-sleep' > gdb.out 2>&1",
             dir, abs_target, dir, abs_target, script);
    int rc = system(cmd);
    char out_path[600];
    snprintf(out_path, sizeof out_path, "%s/gdb.out", dir);
    FILE *f = fopen(out_path, "r");
    static char out[65536];
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = 0;
    if (f)
        fclose(f);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 3) {
        char rm[600];
        snprintf(rm, sizeof rm, "rm -rf %s", dir);
        if (system(rm) != 0) {
        }
        cr_skip_test("no core file was written (core_pattern '%.*s', or a core size limit): not checked",
                     (int)strcspn(pattern, "\n"), pattern);
    }
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "gdb failed (%d):\n%s", rc, out);
    cr_expect_not_null(strstr(out, "\"gdb-event\": run_event: waiting on event"), "%s", out);
    cr_expect_not_null(strstr(out, "\"gdb-sleep\": run_sleep: sleeping"), "%s", out);
    cr_expect_not_null(strstr(out, "weft: 2 tasks"), "%s", out);
    /* The backtraces: the waiting functions and the weft calls they are in. */
    cr_expect_not_null(strstr(out, " in weft_event_wait"), "%s", out);
    cr_expect_not_null(strstr(out, " in gdbwait_event"), "%s", out);
    cr_expect_not_null(strstr(out, " in weft_sleep_ms"), "%s", out);
    cr_expect_not_null(strstr(out, " in gdbwait_sleep"), "%s", out);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) {
    }
}
