/*
 * The blocking pool: many jobs from many tasks beyond the thread maximum,
 * idle threads retiring after the keep-alive, CPU-bound jobs not stalling
 * the cooperative workers, cancellation of queued and running jobs, use from
 * plain threads, and weft_runtime_free with jobs running and queued.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion cannot unwind a task's stack); the test body asserts
 * on the record.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

static int64_t blk_ms(void) { return weft_now() / 1000000; }

/* Busy for ms milliseconds of wall time, never yielding. */
static void blk_spin_ms(int64_t ms)
{
    int64_t end = weft_now() + ms * 1000000;
    while (weft_now() < end)
        ;
}

/* ------------------------------------------------- many jobs, small pool */

static atomic_int blk_running, blk_peak;

static void *blk_double_job(void *arg)
{
    int now = atomic_fetch_add(&blk_running, 1) + 1;
    int peak = atomic_load(&blk_peak);
    while (now > peak && !atomic_compare_exchange_weak(&blk_peak, &peak, now))
        ;
    usleep(500);
    atomic_fetch_sub(&blk_running, 1);
    return (void *)((intptr_t)arg * 2);
}

#define BLK_JOBS_PER_TASK 8

static void *blk_submitter(void *arg)
{
    intptr_t base = (intptr_t)arg * BLK_JOBS_PER_TASK;
    weft_task *h[BLK_JOBS_PER_TASK];
    for (int i = 0; i < BLK_JOBS_PER_TASK; i++) {
        h[i] = weft_spawn_blocking(blk_double_job, (void *)(base + i));
        TEST_EXPECT(h[i] != NULL, "weft_spawn_blocking: errno %d", errno);
    }
    intptr_t sum = 0;
    for (int i = 0; i < BLK_JOBS_PER_TASK; i++) {
        void *r = NULL;
        int rc = weft_join(h[i], &r);
        TEST_EXPECT(rc == 0, "join %d", rc);
        TEST_EXPECT((intptr_t)r == (base + i) * 2, "result %ld for %ld", (long)(intptr_t)r,
                   (long)(base + i));
        sum += (intptr_t)r;
    }
    return (void *)sum;
}

static int blk_ntasks;

static void *blk_many_main(void *arg)
{
    (void)arg;
    weft_task **ts = calloc((size_t)blk_ntasks, sizeof *ts);
    TEST_EXPECT(ts != NULL, "calloc");
    for (int i = 0; i < blk_ntasks; i++) {
        ts[i] = weft_spawn(blk_submitter, (void *)(intptr_t)i);
        TEST_EXPECT(ts[i] != NULL, "weft_spawn");
    }
    intptr_t total = 0;
    for (int i = 0; i < blk_ntasks; i++) {
        void *r = NULL;
        TEST_EXPECT(weft_join(ts[i], &r) == 0, "join submitter");
        total += (intptr_t)r;
    }
    free(ts);
    intptr_t n = (intptr_t)blk_ntasks * BLK_JOBS_PER_TASK;
    TEST_EXPECT(total == n * (n - 1), "total %ld, expected %ld", (long)total, (long)(n * (n - 1)));
    return NULL;
}

Test(blocking_pool, many_jobs_beyond_max_then_threads_retire, .timeout = 60)
{
    weft_runtime *rt = test_runtime(4);
    cr_assert_eq(weft_blocking_threads(rt), 0u);
    cr_assert_eq(weft_blocking_configure(rt, 4, 50), 0);
    cr_assert_eq(weft_blocking_configure(rt, 4, 50), 0, "still before first use");
    blk_ntasks = test_scale_down() ? 16 : 64;
    cr_assert_eq(weft_runtime_block_on(rt, blk_many_main, NULL, NULL), 0);
    test_assert_no_failure();
    cr_assert_leq(atomic_load(&blk_peak), 4, "peak concurrency %d beyond the maximum",
                  atomic_load(&blk_peak));
    cr_assert_geq(atomic_load(&blk_peak), 1);
    cr_assert_eq(weft_blocking_configure(rt, 8, 0), -EBUSY);
    unsigned n = weft_blocking_threads(rt);
    cr_assert_leq(n, 4u);
    /* Keep-alive 50 ms: every thread retires soon after the burst. */
    int64_t until = blk_ms() + 10000;
    while (weft_blocking_threads(rt) != 0 && blk_ms() < until)
        usleep(10000);
    cr_assert_eq(weft_blocking_threads(rt), 0u, "%u threads still alive",
                 weft_blocking_threads(rt));
    /* The pool starts threads again on demand. */
    cr_assert_eq(weft_runtime_block_on(rt, blk_submitter, (void *)(intptr_t)1000, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}

/* ------------------------------------------- CPU-bound jobs and a ticker */

static atomic_int blk_ticks;
static atomic_int blk_stop_ticker;

static void *blk_ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&blk_stop_ticker)) {
        weft_sleep_ms(10);
        atomic_fetch_add(&blk_ticks, 1);
    }
    return NULL;
}

static void *blk_spin_job(void *arg)
{
    blk_spin_ms((int64_t)(intptr_t)arg);
    return (void *)(intptr_t)7;
}

#define BLK_SPIN_MS 300

static void *blk_ticker_main(void *arg)
{
    int *ticks_during = arg;
    weft_task *tk = weft_spawn(blk_ticker, NULL);
    TEST_EXPECT(tk != NULL, "spawn ticker");
    weft_sleep_ms(20); /* let the ticker start */
    int before = atomic_load(&blk_ticks);
    weft_task *a = weft_spawn_blocking(blk_spin_job, (void *)(intptr_t)BLK_SPIN_MS);
    weft_task *b = weft_spawn_blocking(blk_spin_job, (void *)(intptr_t)BLK_SPIN_MS);
    TEST_EXPECT(a && b, "spawn_blocking");
    void *ra = NULL, *rb = NULL;
    TEST_EXPECT(weft_join(a, &ra) == 0 && weft_join(b, &rb) == 0, "join spinners");
    TEST_EXPECT(ra == (void *)(intptr_t)7 && rb == (void *)(intptr_t)7, "spinner results");
    ticks_during[0] = atomic_load(&blk_ticks) - before;

    /* The same spin inline on the only worker: the ticker cannot run. */
    before = atomic_load(&blk_ticks);
    blk_spin_ms(BLK_SPIN_MS / 3);
    ticks_during[1] = atomic_load(&blk_ticks) - before;

    atomic_store(&blk_stop_ticker, 1);
    TEST_EXPECT(weft_join(tk, NULL) == 0, "join ticker");
    return NULL;
}

Test(blocking_pool, cpu_bound_jobs_do_not_stall_timers, .timeout = 60)
{
    weft_runtime *rt = test_runtime(1);
    int ticks[2] = {0, 0};
    cr_assert_eq(weft_runtime_block_on(rt, blk_ticker_main, ticks, NULL), 0);
    test_assert_no_failure();
    /* ~30 ticks expected; the machine is noisy, so only a fraction is
     * required (a stalled worker would give 0 or 1). */
    int want = test_scale_down() ? 3 : 8;
    cr_log_info("ticks while 2 pool threads spun %d ms: %d; while a task spun %d ms inline: %d",
                BLK_SPIN_MS, ticks[0], BLK_SPIN_MS / 3, ticks[1]);
    if (getenv("WEFT_VALGRIND"))
        cr_log_info("under valgrind, which runs one thread at a time, spinning pool threads "
                    "take the worker's turns: the tick count is not checked");
    else
        cr_assert_geq(ticks[0], want, "only %d ticks while the pool spun", ticks[0]);
    cr_assert_eq(ticks[1], 0, "the ticker ran while the only worker spun");
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------- cancellation */

typedef struct blk_gate {
    weft_event *go;
    weft_event *started;
    atomic_int ran;
    atomic_int finished;
} blk_gate;

static void *blk_gated_job(void *arg)
{
    blk_gate *g = arg;
    atomic_fetch_add(&g->ran, 1);
    if (g->started)
        weft_event_set(g->started);
    weft_event_wait(g->go, -1); /* a pool thread: blocks the thread */
    atomic_fetch_add(&g->finished, 1);
    return (void *)(intptr_t)42;
}

static void *blk_cancel_main(void *arg)
{
    (void)arg;
    blk_gate a = {weft_event_new(), weft_event_new(), 0, 0};
    blk_gate b = {a.go, NULL, 0, 0};
    TEST_EXPECT(a.go && a.started, "events");
    /* max 1: a runs, b waits in the queue. */
    weft_task *ha = weft_spawn_blocking(blk_gated_job, &a);
    weft_task *hb = weft_spawn_blocking(blk_gated_job, &b);
    TEST_EXPECT(ha && hb, "spawn_blocking");
    TEST_EXPECT(weft_event_wait(a.started, 10000) == 0, "a did not start");
    TEST_EXPECT(weft_cancel(hb) == 0, "cancel queued");
    /* The queued job is withdrawn at once: its join returns while the only
     * pool thread is still busy with a (it would wait forever otherwise). */
    void *r = (void *)1;
    int rc = weft_join(hb, &r);
    TEST_EXPECT(rc == -ECANCELED, "queued job cancelled: join %d", rc);
    TEST_EXPECT(atomic_load(&b.ran) == 0, "a cancelled queued job ran");
    TEST_EXPECT(weft_cancel(ha) == 0, "cancel running");
    weft_event_set(a.go);
    rc = weft_join(ha, &r);
    TEST_EXPECT(rc == -ECANCELED, "running job cancelled: join %d", rc);
    TEST_EXPECT(atomic_load(&a.finished) == 1, "the running job did not finish");

    /* Cancelling a finished job changes nothing. */
    blk_gate c = {a.go, NULL, 0, 0};
    weft_task *hc = weft_spawn_blocking(blk_gated_job, &c);
    TEST_EXPECT(hc != NULL, "spawn_blocking");
    while (atomic_load(&c.finished) == 0)
        weft_sleep_ms(1);
    weft_sleep_ms(5);
    weft_cancel(hc);
    rc = weft_join(hc, &r);
    TEST_EXPECT(rc == 0 || rc == -ECANCELED, "join %d", rc); /* completion may race the cancel */

    weft_event_free(a.go);
    weft_event_free(a.started);
    return NULL;
}

Test(blocking_pool, cancel_queued_and_running, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_blocking_configure(rt, 1, 0), 0);
    cr_assert_eq(weft_runtime_block_on(rt, blk_cancel_main, NULL, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}

/* -------------------------------------------------------- plain threads */

static void *blk_add_job(void *arg) { return (void *)((intptr_t)arg + 1); }

static void *blk_plain_thread(void *arg)
{
    weft_runtime *rt = arg;
    intptr_t sum = 0;
    for (int i = 0; i < 20; i++) {
        weft_task *h = weft_spawn_blocking_on(rt, blk_add_job, (void *)(intptr_t)i);
        if (!h)
            return (void *)(intptr_t)-1;
        void *r = NULL;
        if (weft_join(h, &r) != 0)
            return (void *)(intptr_t)-2;
        sum += (intptr_t)r;
    }
    return (void *)sum;
}

Test(blocking_pool, spawn_blocking_on_from_plain_threads)
{
    weft_runtime *rt = test_runtime(2);
    weft_task *bt = (weft_task *)1;
    cr_assert_null(weft_spawn_blocking(blk_add_job, NULL));
    cr_assert_eq(weft_task_spawn_blocking(NULL, blk_add_job, NULL, &bt), -EPERM);
    cr_assert_null(bt);
    cr_assert_null(weft_spawn_blocking_on(rt, NULL, NULL));
    cr_assert_eq(weft_task_spawn_blocking(rt, NULL, NULL, &bt), -EINVAL);
    cr_assert_null(weft_spawn_blocking_on(NULL, blk_add_job, NULL));
    cr_assert_eq(weft_blocking_configure(NULL, 1, 1), -EINVAL);

    weft_task *h = weft_spawn_blocking_on(rt, blk_add_job, (void *)(intptr_t)41);
    cr_assert_not_null(h);
    void *r = NULL;
    cr_assert_eq(weft_join(h, &r), 0);
    cr_assert_eq((intptr_t)r, 42);

    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, blk_plain_thread, rt), 0);
    for (int i = 0; i < 4; i++) {
        void *s = NULL;
        pthread_join(th[i], &s);
        cr_assert_eq((intptr_t)s, 210, "thread %d: %ld", i, (long)(intptr_t)s);
    }
    weft_runtime_free(rt);
}

/* --------------------------------------------------- runtime_free */

static void *blk_sleep_job(void *arg)
{
    atomic_int *ran = arg;
    atomic_fetch_add(ran, 1);
    usleep(100000);
    return (void *)(intptr_t)5;
}

Test(blocking_pool, runtime_free_waits_for_running_and_discards_queued, .timeout = 60)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_blocking_configure(rt, 1, 0), 0);
    atomic_int ran[4];
    weft_task *h[4];
    for (int i = 0; i < 4; i++) {
        atomic_init(&ran[i], 0);
        h[i] = weft_spawn_blocking_on(rt, blk_sleep_job, &ran[i]);
        cr_assert_not_null(h[i]);
    }
    while (atomic_load(&ran[0]) == 0)
        usleep(1000);
    weft_runtime_free(rt); /* waits for job 0, discards 1..3 */
    void *r = NULL;
    cr_assert_eq(weft_join(h[0], &r), 0);
    cr_assert_eq((intptr_t)r, 5);
    for (int i = 1; i < 4; i++) {
        cr_assert_eq(weft_join(h[i], NULL), -ECANCELED, "queued job %d", i);
        cr_assert_eq(atomic_load(&ran[i]), 0, "queued job %d ran", i);
    }
}

/* The pool is made lazily: a runtime that never used it, and one that only
 * configured it, free cleanly. */
Test(blocking_pool, unused_and_configured_only)
{
    weft_runtime *rt = test_runtime(1);
    weft_runtime_free(rt);
    rt = test_runtime(1);
    cr_assert_eq(weft_blocking_configure(rt, 3, 20), 0);
    cr_assert_eq(weft_blocking_threads(rt), 0u);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------- compute pool */

static atomic_int cmp_running, cmp_peak;

static void *cmp_job(void *arg)
{
    int now = atomic_fetch_add(&cmp_running, 1) + 1;
    int peak = atomic_load(&cmp_peak);
    while (now > peak && !atomic_compare_exchange_weak(&cmp_peak, &peak, now))
        ;
    blk_spin_ms(3);
    atomic_fetch_sub(&cmp_running, 1);
    return (void *)((intptr_t)arg * 3);
}

static void *cmp_many_main(void *arg)
{
    int n = (int)(intptr_t)arg;
    weft_task *h[32];
    for (int i = 0; i < n; i++) {
        h[i] = weft_spawn_compute(cmp_job, (void *)(intptr_t)i);
        TEST_EXPECT(h[i] != NULL, "weft_spawn_compute: errno %d", errno);
    }
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        TEST_EXPECT(weft_join(h[i], &r) == 0, "join");
        TEST_EXPECT((intptr_t)r == i * 3, "result %ld", (long)(intptr_t)r);
    }
    return NULL;
}

/* CPU jobs beyond the compute pool's threads wait their turn: at most max run
 * at once, so each runs at full speed once started. */
Test(compute_pool, runs_at_most_its_threads_at_once, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_compute_configure(rt, 2, 0), 0);
    atomic_store(&cmp_running, 0);
    atomic_store(&cmp_peak, 0);
    cr_assert_eq(weft_runtime_block_on(rt, cmp_many_main, (void *)(intptr_t)16, NULL), 0);
    test_assert_no_failure();
    if (test_scale_down()) /* valgrind runs one thread at a time */
        cr_assert_leq(atomic_load(&cmp_peak), 2);
    else
        cr_assert_eq(atomic_load(&cmp_peak), 2, "peak of %d compute jobs at once with max 2",
                     atomic_load(&cmp_peak));
    cr_assert_leq(weft_compute_threads(rt), 2u);
    cr_assert_eq(weft_blocking_threads(rt), 0u, "compute jobs used the blocking pool");
    cr_assert_eq(weft_compute_configure(rt, 4, 0), -EBUSY);
    weft_runtime_free(rt);
}

/* By default the pool has one thread per CPU this process may use. */
Test(compute_pool, defaults_to_one_thread_per_cpu, .timeout = 60)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus = CPU_COUNT(&set);
    weft_runtime *rt = test_runtime(2);
    atomic_store(&cmp_running, 0);
    atomic_store(&cmp_peak, 0);
    int n = cpus * 2 + 2 > 32 ? 32 : cpus * 2 + 2;
    cr_assert_eq(weft_runtime_block_on(rt, cmp_many_main, (void *)(intptr_t)n, NULL), 0);
    test_assert_no_failure();
    cr_assert_leq(atomic_load(&cmp_peak), cpus);
    cr_assert_leq(weft_compute_threads(rt), (unsigned)cpus);
    weft_runtime_free(rt);
}

/* The two pools are separate: a compute job may wait for a blocking job even
 * with one compute thread, and cancelling a queued compute job withdraws it
 * from the compute pool's queue. */
static void *cmp_wait_for_event(void *arg)
{
    weft_event_wait((weft_event *)arg, -1); /* blocks the pool thread */
    return (void *)(intptr_t)7;
}

static void *cmp_set_event(void *arg)
{
    weft_event_set((weft_event *)arg);
    return NULL;
}

static void *cmp_separate_main(void *arg)
{
    (void)arg;
    weft_event *ev = weft_event_new();
    TEST_EXPECT(ev != NULL, "event");
    weft_task *waiter = weft_spawn_compute(cmp_wait_for_event, ev);
    TEST_EXPECT(waiter != NULL, "spawn_compute");
    weft_task *queued = weft_spawn_compute(blk_add_job, NULL); /* behind the waiter */
    TEST_EXPECT(queued != NULL, "spawn_compute");
    TEST_EXPECT(weft_cancel(queued) == 0, "cancel");
    void *r = (void *)1;
    TEST_EXPECT(weft_join(queued, &r) == -ECANCELED, "queued compute job not withdrawn");
    weft_task *setter = weft_spawn_blocking(cmp_set_event, ev);
    TEST_EXPECT(setter != NULL, "spawn_blocking");
    TEST_EXPECT(weft_join(setter, NULL) == 0, "join setter");
    TEST_EXPECT(weft_join(waiter, &r) == 0 && (intptr_t)r == 7, "join waiter");
    weft_event_free(ev);
    return NULL;
}

Test(compute_pool, separate_from_the_blocking_pool, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_compute_configure(rt, 1, 0), 0);
    cr_assert_eq(weft_blocking_configure(rt, 1, 0), 0);
    cr_assert_eq(weft_runtime_block_on(rt, cmp_separate_main, NULL, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}

Test(compute_pool, misuse)
{
    weft_task *ct = (weft_task *)1;
    cr_assert_null(weft_spawn_compute(blk_add_job, NULL));
    cr_assert_eq(weft_task_spawn_compute(NULL, blk_add_job, NULL, &ct), -EPERM);
    cr_assert_null(ct);
    cr_assert_null(weft_spawn_compute_on(NULL, blk_add_job, NULL));
    weft_runtime *rt = test_runtime(1);
    cr_assert_null(weft_spawn_compute_on(rt, NULL, NULL));
    cr_assert_eq(weft_task_spawn_compute(rt, NULL, NULL, &ct), -EINVAL);
    cr_assert_eq(weft_compute_configure(rt, 65537, 0), -EINVAL);
    cr_assert_eq(weft_compute_threads(rt), 0u);
    weft_task *t = weft_spawn_compute_on(rt, blk_add_job, (void *)(intptr_t)4);
    cr_assert_not_null(t);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, 5);
    weft_runtime_free(rt);
}
