/* Task dumps (weft_runtime_dump), metrics, debug mode's warnings. */
#include "util.h"

#include <string.h>
#include <time.h>

/* The waiting functions: non-static and noinline so a dump's backtrace
 * names them (the test binary is linked with -rdynamic); each does
 * something after its wait, so the wait is no tail call. */
static weft_mutex *g_mu;
static weft_sem *g_sem;
static weft_event *g_ev;
static weft_chan *g_ch;
static int g_pipe[2];
static weft_task *g_target;
static volatile int g_sink;

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

static void *run_fd(void *a) { (void)a; return (void *)(intptr_t)dumpwait_fd(); }
static void *run_sleep(void *a) { (void)a; return (void *)(intptr_t)dumpwait_sleep(); }
static void *run_join(void *a) { (void)a; return (void *)(intptr_t)dumpwait_join(); }
static void *run_chan(void *a) { (void)a; return (void *)(intptr_t)dumpwait_chan(); }
static void *run_mutex(void *a) { (void)a; return (void *)(intptr_t)dumpwait_mutex(); }
static void *run_sem(void *a) { (void)a; return (void *)(intptr_t)dumpwait_sem(); }
static void *run_event(void *a) { (void)a; return (void *)(intptr_t)dumpwait_event(); }
static void *run_target(void *a) { (void)a; weft_event_wait(g_ev, -1); return NULL; }

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

static int all_parked(const char *d, int n)
{
    char want[64];
    snprintf(want, sizeof want, "(%d parked", n);
    return strstr(d, want) != NULL;
}

Test(dump, names_each_state_and_the_waiting_function)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(pipe(g_pipe), 0);
    g_mu = weft_mutex_new();
    g_sem = weft_sem_new(0);
    g_ev = weft_event_new();
    g_ch = weft_chan_new(1, sizeof(int));
    cr_assert_eq(weft_mutex_lock(g_mu, -1), 0); /* held by this thread: the task waits */
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
    char *d = NULL;
    for (int tries = 0; tries < 500; tries++) { /* until every task has parked */
        free(d);
        d = dump_string(rt);
        if (all_parked(d, n))
            break;
        usleep(10000);
    }
    cr_assert(all_parked(d, n), "not all parked:\n%s", d);
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
        free(s);
    }
    free(d);
    /* Let everything go, and check that every task ends normally. */
    int v = 1;
    cr_assert_eq(weft_chan_send(g_ch, &v), 0);
    cr_assert_eq(weft_mutex_unlock(g_mu), 0);
    cr_assert_eq(weft_sem_release(g_sem, 1), 0);
    cr_assert_eq(weft_event_set(g_ev), 0);
    cr_assert_eq(write(g_pipe[1], "x", 1), 1);
    cr_assert_eq(weft_cancel(h[1]), 0); /* the sleeper */
    for (int i = 0; i < n - 1; i++) {
        void *r = NULL;
        int rc = weft_join(h[i], &r);
        if (i == 1)
            cr_expect(rc == -ECANCELED, "sleeper: %d", rc);
        else
            cr_expect(rc == 0 && (intptr_t)r >= 0, "%s: join %d result %ld", cases[i].name, rc, (long)(intptr_t)r);
    }
    weft_runtime_free(rt);
    weft_mutex_free(g_mu);
    weft_sem_free(g_sem);
    weft_event_free(g_ev);
    weft_chan_free(g_ch);
    close(g_pipe[0]);
    close(g_pipe[1]);
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
    FILE *null = fopen("/dev/null", "w");
    cr_assert_not_null(null);
    for (int i = 0; i < 20; i++) {
        int n = weft_runtime_dump(rt, null);
        cr_expect(n >= 0);
        usleep(2000);
    }
    fclose(null);
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(weft_join(m[i], NULL), 0);
    weft_runtime_free(rt);
}

/* 10,000 waiting tasks: the time is printed, not asserted. */
static weft_event *many_ev;
static void *many_wait(void *a)
{
    (void)a;
    weft_event_wait(many_ev, -1);
    return NULL;
}

Test(dump, ten_thousand_waiting_tasks)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    cfg.stack_size = 16 * 1024;
    weft_runtime *rt = weft_runtime_new(&cfg);
    cr_assert_not_null(rt);
    many_ev = weft_event_new();
    enum { N = 10000 };
    weft_task **h = malloc(N * sizeof *h);
    for (int i = 0; i < N; i++) {
        h[i] = weft_spawn_on(rt, many_wait, NULL);
        cr_assert_not_null(h[i]);
    }
    weft_metrics m;
    for (int tries = 0; tries < 1000; tries++) {
        weft_runtime_metrics(rt, &m, NULL, 0);
        char *d = dump_string(rt);
        int ok = strstr(d, "(10000 parked") != NULL;
        free(d);
        if (ok)
            break;
        usleep(10000);
    }
    FILE *null = fopen("/dev/null", "w");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int n = weft_runtime_dump(rt, null);
    clock_gettime(CLOCK_MONOTONIC, &b);
    fclose(null);
    cr_expect_geq(n, N);
    fprintf(stderr, "dump of %d waiting tasks: %.1f ms\n", n,
            (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    weft_event_set(many_ev);
    for (int i = 0; i < N; i++)
        weft_join(h[i], NULL);
    free(h);
    cr_assert_eq(weft_runtime_metrics(rt, &m, NULL, 0), 2);
    cr_expect_geq(m.tasks_spawned, N);
    weft_runtime_free(rt);
    weft_event_free(many_ev);
}

/* ------------------------------------------------------------ metrics */

static void *yielder(void *a)
{
    (void)a;
    for (int i = 0; i < 2000; i++)
        weft_yield();
    return NULL;
}

Test(dump, metrics_count_and_histograms_fill)
{
    weft_runtime *rt = test_runtime(2);
    weft_task *t = weft_spawn_on(rt, yielder, NULL);
    cr_assert_eq(weft_join(t, NULL), 0);
    weft_metrics m;
    weft_worker_metrics wm[2];
    cr_assert_eq(weft_runtime_metrics(rt, &m, wm, 2), 2);
    uint64_t slices = 0, runs = 0;
    for (int b = 0; b < WEFT_HIST_BUCKETS; b++)
        slices += m.slice_ns[b];
    runs = wm[0].stats.tasks_run + wm[1].stats.tasks_run;
    cr_expect_geq(runs, 2000);
    cr_expect_gt(slices, 0, "no slice sampled in %llu runs", (unsigned long long)runs);
    cr_expect_geq(m.tasks_spawned, 1);
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

__attribute__((noinline)) void *polite_spinner(void *a)
{
    (void)a;
    int64_t end = now_ns() + 300 * 1000000LL;
    while (now_ns() < end) {
        int64_t slice = now_ns() + 10 * 1000000LL;
        while (now_ns() < slice)
            g_sink++;
        weft_yield();
    }
    return NULL;
}

/* Runs fn on a 2-worker debug runtime with stderr captured; returns it. */
static char *run_debug(weft_fn fn, int leak_handle)
{
    fflush(stderr);
    char path[] = "/tmp/weft-dbg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    int saved = dup(2);
    dup2(fd, 2);
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_set_debug(rt, 100), 0);
    weft_task *t = weft_spawn_on(rt, fn, NULL);
    cr_assert_not_null(t);
    if (leak_handle) {
        usleep(400000);
    } else {
        cr_assert_eq(weft_join(t, NULL), 0);
    }
    weft_runtime_free(rt);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fdopen(fd, "r");
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, 65536);
    size_t got = fread(buf, 1, 65535, f);
    buf[got] = 0;
    fclose(f);
    unlink(path);
    if (leak_handle)
        weft_detach(t); /* orphaned by the free: dropped now */
    return buf;
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
    cr_expect_null(strstr(out, "without suspending"), "warned: %s", out);
    free(out);
}

Test(debug, never_joined_handle_warned_at_free)
{
    char *out = run_debug(yielder, 1);
    cr_expect_not_null(strstr(out, "never joined nor detached"), "no warning in: %s", out);
    free(out);
}
