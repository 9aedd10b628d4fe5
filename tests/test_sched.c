/* The scheduler: spawning, joining, stealing, parking, fairness, pinning,
 * shutdown with work outstanding, and misuse. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "internal.h"

/* ------------------------------------------------------------ basics */

static void *add_one(void *arg) { return (void *)((uintptr_t)arg + 1); }

static void *spawn_join_root(void *arg)
{
    (void)arg;
    for (uintptr_t i = 0; i < 1000; i++) {
        weft_task *t = weft_spawn(add_one, (void *)i);
        cr_assert_not_null(t);
        void *r;
        cr_assert_eq(weft_join(t, &r), 0);
        cr_assert_eq((uintptr_t)r, i + 1);
    }
    return (void *)42;
}

Test(sched, tasks_return_values)
{
    weft_runtime *rt = test_runtime(2);
    void *r = NULL;
    cr_assert_eq(weft_runtime_block_on(rt, spawn_join_root, NULL, &r), 0);
    cr_assert_eq((uintptr_t)r, 42);
    weft_runtime_free(rt);
}

static void *spin_no_yield(void *arg)
{
    volatile uint64_t x = 0;
    for (uint64_t i = 0; i < (uintptr_t)arg; i++)
        x += i;
    return (void *)(uintptr_t)x;
}

Test(sched, a_task_that_never_yields)
{
    void *r;
    cr_assert_eq(weft_main(spin_no_yield, (void *)1000000, &r), 0);
    cr_assert_eq((uintptr_t)r, (uint64_t)999999 * 1000000 / 2);
}

Test(sched, workers_from_config_and_environment)
{
    weft_runtime *rt = test_runtime(3);
    cr_assert_eq(weft_runtime_workers(rt), 3);
    weft_runtime_free(rt);
    setenv("WEFT_WORKERS", "5", 1);
    rt = weft_runtime_new(NULL);
    cr_assert_not_null(rt);
    cr_assert_eq(weft_runtime_workers(rt), 5);
    weft_runtime_free(rt);
    unsetenv("WEFT_WORKERS");
    rt = weft_runtime_new(NULL);
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    cr_assert_eq(weft_runtime_workers(rt), (unsigned)CPU_COUNT(&set));
    weft_runtime_free(rt);
}

Test(sched, misuse_outside_a_task_fails_cleanly)
{
    weft_task *t = (weft_task *)1;
    cr_assert_null(weft_spawn(add_one, NULL));
    cr_assert_eq(weft_task_spawn(NULL, add_one, NULL, NULL, &t), -EPERM);
    cr_assert_null(t);
    cr_assert_eq(weft_go(add_one, NULL), -EPERM);
    cr_assert_eq(weft_go_on(NULL, add_one, NULL), -EINVAL);
    weft_yield(); /* no-op */
    cr_assert_eq(weft_join(NULL, NULL), -EINVAL);
    cr_assert_eq(weft_pin(), -EPERM);
    cr_assert_eq(weft_worker_index(), -EPERM);
    cr_assert_eq(weft_in_task(), 0);
    cr_assert_null(weft_spawn_on(NULL, add_one, NULL));
    cr_assert_eq(weft_runtime_block_on(NULL, add_one, NULL, NULL), -EINVAL);
    weft_config cfg = {.workers = 5000};
    cr_assert_null(weft_runtime_new(&cfg));
    weft_runtime *rt = (weft_runtime *)1;
    cr_assert_eq(weft_runtime_create(&cfg, &rt), -EINVAL);
    cr_assert_null(rt);
    cr_assert_eq(weft_runtime_create(NULL, NULL), -EINVAL);
    weft_mutex *m = (weft_mutex *)1;
    cr_assert_eq(weft_mutex_create(NULL), -EINVAL);
    cr_assert_eq(weft_mutex_create(&m), 0);
    weft_mutex_free(m);
    weft_group *g = (weft_group *)1;
    cr_assert_eq(weft_group_create(0, &g), 0);
    weft_group_free(g);
}

/* Detached spawns in one call: weft_go from a task, weft_go_on from a plain
 * thread and from a task; weft_task_spawn with out NULL. */
static atomic_int go_count;
static weft_wg *go_wg;
static void *go_child(void *arg)
{
    atomic_fetch_add(&go_count, (int)(intptr_t)arg);
    weft_wg_done(go_wg);
    return NULL;
}
static void *go_root(void *arg)
{
    weft_runtime *rt = arg;
    for (int i = 0; i < 10; i++)
        if (weft_go(go_child, (void *)(intptr_t)1) != 0)
            return (void *)1;
    if (weft_go_on(rt, go_child, (void *)(intptr_t)100) != 0)
        return (void *)2;
    if (weft_task_spawn(NULL, go_child, (void *)(intptr_t)1000, NULL, NULL) != 0)
        return (void *)3;
    return NULL;
}
Test(sched, detached_spawn_in_one_call)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_wg_create(&go_wg), 0);
    cr_assert_eq(weft_wg_add(go_wg, 13), 0);
    cr_assert_eq(weft_go_on(rt, go_child, (void *)(intptr_t)10000), 0); /* plain thread */
    void *r = (void *)-1;
    cr_assert_eq(weft_runtime_block_on(rt, go_root, rt, &r), 0);
    cr_assert_null(r);
    cr_assert_eq(weft_wg_wait(go_wg, 5000), 0);
    cr_assert_eq(atomic_load(&go_count), 10 + 100 + 1000 + 10000);
    weft_wg_free(go_wg);
    weft_runtime_free(rt);
}

Test(sched, version_matches_the_header)
{
    cr_assert_str_eq(weft_version(), WEFT_VERSION_STRING);
    cr_assert_eq(weft_version_number(), (unsigned)WEFT_VERSION_NUMBER);
}

static void *block_on_inside(void *arg)
{
    weft_runtime *rt = arg;
    cr_assert_eq(weft_runtime_block_on(rt, add_one, NULL, NULL), -EPERM);
    cr_assert(weft_in_task());
    cr_assert_eq(weft_current_runtime(), rt);
    return NULL;
}

Test(sched, block_on_from_a_task_is_refused)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, block_on_inside, rt, NULL), 0);
    weft_runtime_free(rt);
}

static weft_task *_Atomic self_handle;
static void *join_self(void *arg)
{
    (void)arg;
    while (!atomic_load(&self_handle))
        weft_yield();
    return (void *)(intptr_t)weft_join(atomic_load(&self_handle), NULL);
}

Test(sched, joining_yourself_is_edeadlk)
{
    weft_runtime *rt = test_runtime(1);
    weft_task *t = weft_spawn_on(rt, join_self, NULL);
    atomic_store(&self_handle, t);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, -EDEADLK);
    weft_runtime_free(rt);
}

Test(sched, several_runtimes_in_one_process)
{
    weft_runtime *a = test_runtime(2), *b = test_runtime(1);
    weft_task *ta = weft_spawn_on(a, add_one, (void *)1);
    weft_task *tb = weft_spawn_on(b, add_one, (void *)2);
    void *ra, *rb;
    cr_assert_eq(weft_join(ta, &ra), 0);
    cr_assert_eq(weft_join(tb, &rb), 0);
    cr_assert_eq((uintptr_t)ra, 2);
    cr_assert_eq((uintptr_t)rb, 3);
    weft_runtime_free(a);
    weft_runtime_free(b);
}

/* ------------------------------------------------------------ a ring */

/* A token goes round a ring of tasks: each one parks until its predecessor
 * hands it the token, then wakes its successor. */
#define RING 2000
#define LAPS 20
static atomic_int have[RING];
static weft__waiter *_Atomic parked_at[RING];
static atomic_int hops;

static void pass_token(int to)
{
    atomic_store(&have[to], 1);
    weft__waiter *w = atomic_exchange(&parked_at[to], NULL);
    if (w)
        weft__waiter_fire(w);
}

static void await_token(int me)
{
    weft__waiter w;
    weft__waiter_init(&w);
    atomic_store(&parked_at[me], &w);
    if (atomic_load(&have[me])) {
        /* Already here: take the waiter back unless a sender took it. */
        if (atomic_exchange(&parked_at[me], NULL) != &w)
            weft__waiter_wait(&w);
    } else {
        weft__waiter_wait(&w);
    }
    atomic_store(&have[me], 0);
}

static void *ring_member(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int lap = 0; lap < LAPS; lap++) {
        await_token(me);
        atomic_fetch_add(&hops, 1);
        pass_token((me + 1) % RING);
    }
    return NULL;
}

static void *ring_root(void *arg)
{
    (void)arg;
    static weft_task *h[RING];
    for (int i = 0; i < RING; i++)
        h[i] = weft_spawn(ring_member, (void *)(intptr_t)i);
    pass_token(0);
    for (int i = 0; i < RING; i++)
        cr_assert_eq(weft_join(h[i], NULL), 0);
    return NULL;
}

Test(sched, thousands_of_tasks_passing_a_token_in_a_ring, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, ring_root, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&hops), RING * LAPS);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ stress */

#define STRESS_TASKS 20000
static atomic_uchar ran[STRESS_TASKS];
static atomic_int stress_next;

static void *stress_leaf(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    for (int k = 0; k < (int)(i % 4); k++)
        weft_yield();
    atomic_fetch_add(&ran[i], 1);
    return (void *)i;
}

static void *stress_spawner(void *arg)
{
    (void)arg;
    weft_task *h[64];
    for (;;) {
        int base = atomic_fetch_add(&stress_next, 64);
        if (base >= STRESS_TASKS)
            return NULL;
        int n = STRESS_TASKS - base < 64 ? STRESS_TASKS - base : 64;
        for (int i = 0; i < n; i++) {
            h[i] = weft_spawn(stress_leaf, (void *)(uintptr_t)(base + i));
            cr_assert_not_null(h[i]);
        }
        for (int i = 0; i < n; i++) {
            void *r;
            cr_assert_eq(weft_join(h[i], &r), 0);
            cr_assert_eq((uintptr_t)r, (uintptr_t)(base + i));
        }
        weft_yield();
    }
}

static void *stress_root(void *arg)
{
    (void)arg;
    weft_task *s[8];
    for (int i = 0; i < 8; i++)
        s[i] = weft_spawn(stress_spawner, NULL);
    for (int i = 0; i < 8; i++)
        weft_join(s[i], NULL);
    return NULL;
}

Test(sched, spawn_yield_join_stress_runs_each_task_once, .timeout = 120)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, stress_root, NULL, NULL), 0);
    for (int i = 0; i < STRESS_TASKS; i++)
        cr_assert_eq(atomic_load(&ran[i]), 1, "task %d ran %d times", i, atomic_load(&ran[i]));
    weft_runtime_free(rt);
}

/* External threads spawn while workers park and unpark: nothing is lost. */
#define EXT_THREADS 4
#define EXT_PER_THREAD 3000
static atomic_int ext_ran;

static void *ext_leaf(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ext_ran, 1);
    return NULL;
}

static void *ext_spawner(void *arg)
{
    weft_runtime *rt = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    for (int i = 0; i < EXT_PER_THREAD; i++) {
        weft_task *t = weft_spawn_on(rt, ext_leaf, NULL);
        cr_assert_not_null(t);
        if (i % 3 == 0) {
            cr_assert_eq(weft_join(t, NULL), 0); /* the thread blocks on a task */
        } else {
            weft_detach(t);
        }
        if (rand_r(&seed) % 16 == 0)
            usleep(rand_r(&seed) % 200); /* let workers go to sleep */
    }
    return NULL;
}

Test(sched, external_threads_spawn_while_workers_park, .timeout = 120)
{
    weft_runtime *rt = test_runtime(2);
    pthread_t th[EXT_THREADS];
    for (int i = 0; i < EXT_THREADS; i++)
        pthread_create(&th[i], NULL, ext_spawner, rt);
    for (int i = 0; i < EXT_THREADS; i++)
        pthread_join(th[i], NULL);
    /* Detached tasks may still be queued: wait for them (a lost wake-up
     * would hang here and fail by timeout). */
    while (atomic_load(&ext_ran) < EXT_THREADS * EXT_PER_THREAD)
        usleep(1000);
    cr_assert_eq(atomic_load(&ext_ran), EXT_THREADS * EXT_PER_THREAD);
    weft_runtime_free(rt);
}

/* One task at a time from outside, each after the workers had time to fall
 * asleep: every one must be picked up. */
Test(sched, no_lost_wakeup_when_all_workers_sleep, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    for (int i = 0; i < 300; i++) {
        usleep(i % 7 == 0 ? 2000 : (unsigned)(i % 50));
        weft_task *t = weft_spawn_on(rt, add_one, (void *)(uintptr_t)i);
        void *r;
        cr_assert_eq(weft_join(t, &r), 0);
        cr_assert_eq((uintptr_t)r, (uintptr_t)i + 1);
    }
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ spreading */

static atomic_int seen_worker[2];

static void *busy_leaf(void *arg)
{
    (void)arg;
    int w = weft_worker_index();
    if (w >= 0 && w < 2)
        atomic_fetch_add(&seen_worker[w], 1);
    volatile uint64_t x = 0;
    for (int i = 0; i < 20000; i++)
        x += (uint64_t)i;
    if ((uintptr_t)arg % 50 == 0)
        weft_sleep_ms(1); /* gives a slow (instrumented) peer time to steal */
    return (void *)(uintptr_t)x;
}

static void *spread_root(void *arg)
{
    (void)arg;
    static weft_task *h[5000];
    for (uintptr_t i = 0; i < 5000; i++)
        h[i] = weft_spawn(busy_leaf, (void *)i);
    for (int i = 0; i < 5000; i++)
        weft_join(h[i], NULL);
    return NULL;
}

Test(sched, work_spreads_to_both_workers, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, spread_root, NULL, NULL), 0);
    weft_worker_stats st[2];
    cr_assert_eq(weft_runtime_stats(rt, st, 2), 2);
    cr_assert_gt(atomic_load(&seen_worker[0]), 0, "worker 0 ran none");
    cr_assert_gt(atomic_load(&seen_worker[1]), 0, "worker 1 ran none");
    cr_assert_gt(st[0].steals + st[1].steals + st[0].global_pulls + st[1].global_pulls, 0,
                 "no task moved between workers");
    cr_assert_gt(st[0].tasks_run + st[1].tasks_run, 5000);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ fairness */

static atomic_int flag;

static void *yield_until_flag(void *arg)
{
    (void)arg;
    while (!atomic_load(&flag))
        weft_yield();
    return NULL;
}

static void *set_flag(void *arg)
{
    (void)arg;
    atomic_store(&flag, 1);
    return NULL;
}

Test(sched, a_yielding_task_does_not_starve_the_global_queue, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    weft_task *spinner = weft_spawn_on(rt, yield_until_flag, NULL);
    usleep(20000); /* the spinner owns the only worker now */
    weft_task *setter = weft_spawn_on(rt, set_flag, NULL); /* lands in the global queue */
    cr_assert_eq(weft_join(spinner, NULL), 0);
    cr_assert_eq(weft_join(setter, NULL), 0);
    weft_runtime_free(rt);
}

/* A burst of spawns overflows the local queue, which moves its oldest tasks
 * to the global queue, while the tasks left locally keep refilling the local
 * queue by yielding. The spilled tasks are the oldest: they must start within
 * about 900 picks (the bound allows 1,500), not wait until the local tasks
 * run dry (with one global task per maintenance pass, the last of them
 * started after ~7,900 picks). Counts picks, not time, so it is deterministic on one
 * worker. */
enum { BURST = 400, BURST_YIELDS = 20 };
static atomic_int burst_picks;
static int burst_first_pick[BURST];

static void *burst_task(void *arg)
{
    int i = (int)(intptr_t)arg;
    burst_first_pick[i] = atomic_fetch_add(&burst_picks, 1);
    for (int k = 0; k < BURST_YIELDS; k++) {
        atomic_fetch_add(&burst_picks, 1);
        weft_yield();
    }
    return NULL;
}

static void *burst_root(void *arg)
{
    (void)arg;
    static weft_task *t[BURST];
    for (int i = 0; i < BURST; i++) {
        t[i] = weft_spawn(burst_task, (void *)(intptr_t)i);
        cr_assert_not_null(t[i]);
    }
    for (int i = 0; i < BURST; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(sched, tasks_spilled_to_the_global_queue_start_promptly, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, burst_root, NULL, NULL), 0);
    weft_worker_stats st;
    cr_assert_eq(weft_runtime_stats(rt, &st, 1), 1);
    weft_runtime_free(rt);
    cr_assert_gt(st.overflows, 0, "the burst did not overflow the local queue");
    int last = 0;
    for (int i = 0; i < BURST; i++)
        if (burst_first_pick[i] > last)
            last = burst_first_pick[i];
    cr_assert_lt(last, 1500, "a spilled task first ran after %d picks (%d tasks x %d yields)", last,
                 BURST, BURST_YIELDS);
}

/* Two tasks hand a baton back and forth through wake-ups (each wake puts the
 * other in the LIFO slot); a third must still make progress. */
typedef struct {
    weft__waiter *_Atomic waiting[2];
    atomic_int stop;
} pingpong;

typedef struct {
    pingpong *pp;
    int me;
} pp_arg;

static void *pinger(void *arg)
{
    pp_arg *a = arg;
    pingpong *pp = a->pp;
    for (;;) {
        weft__waiter w;
        weft__waiter_init(&w);
        atomic_store(&pp->waiting[a->me], &w);
        weft__waiter *other = atomic_exchange(&pp->waiting[1 - a->me], NULL);
        if (other)
            weft__waiter_fire(other); /* the other task lands in our LIFO slot */
        if (atomic_load(&pp->stop)) {
            /* Take our waiter back unless the other task fired it already. */
            if (atomic_exchange(&pp->waiting[a->me], NULL) != &w)
                weft__waiter_wait(&w);
            return NULL;
        }
        weft__waiter_wait(&w);
    }
}

static atomic_int third_progress;
static void *third(void *arg)
{
    pingpong *pp = arg;
    for (int i = 0; i < 100; i++) {
        atomic_fetch_add(&third_progress, 1);
        weft_yield();
    }
    atomic_store(&pp->stop, 1);
    return NULL;
}

static void *pingpong_root(void *arg)
{
    (void)arg;
    static pingpong pp;
    static pp_arg a0 = {&pp, 0}, a1 = {&pp, 1};
    weft_task *p0 = weft_spawn(pinger, &a0);
    weft_task *p1 = weft_spawn(pinger, &a1);
    weft_yield();
    weft_task *t = weft_spawn(third, &pp);
    cr_assert_eq(weft_join(t, NULL), 0);
    weft_join(p0, NULL);
    weft_join(p1, NULL);
    return NULL;
}

Test(sched, ping_pong_does_not_starve_a_third_task, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, pingpong_root, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&third_progress), 100);
    weft_worker_stats st;
    weft_runtime_stats(rt, &st, 1);
    cr_assert_gt(st.lifo_capped, 0, "the hand-off never hit the LIFO cap");
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ pinning */

static void *pinned_task(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_pin(), 0);
    int home = weft_worker_index();
    for (int i = 0; i < 2000; i++) {
        weft_yield();
        if (i % 100 == 0)
            weft_sleep_ms(0);
        if (weft_worker_index() != home)
            return (void *)1;
    }
    cr_assert_eq(weft_unpin(), 0);
    cr_assert_eq(weft_unpin(), -EINVAL);
    return NULL;
}

static void *pin_root(void *arg)
{
    (void)arg;
    weft_task *p[4], *noise[64];
    for (int i = 0; i < 64; i++)
        noise[i] = weft_spawn(busy_leaf, NULL);
    for (int i = 0; i < 4; i++)
        p[i] = weft_spawn(pinned_task, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        cr_assert_eq(weft_join(p[i], &r), 0);
        cr_assert_null(r, "a pinned task moved to another worker");
    }
    for (int i = 0; i < 64; i++)
        weft_join(noise[i], NULL);
    return NULL;
}

Test(sched, pinned_tasks_stay_on_their_worker, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, pin_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ shutdown */

static void *sleep_long(void *arg)
{
    (void)arg;
    weft_sleep_ms(60000);
    return (void *)1;
}

static void *spawn_sleepers(void *arg)
{
    weft_task **h = arg;
    for (int i = 0; i < 100; i++)
        h[i] = weft_spawn(sleep_long, NULL);
    for (int i = 100; i < 200; i++) /* queued, never started */
        h[i] = weft_spawn(add_one, NULL);
    return NULL;
}

Test(sched, free_with_tasks_suspended_and_queued, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    static weft_task *h[200];
    weft_task *root = weft_spawn_on(rt, spawn_sleepers, h);
    cr_assert_eq(weft_join(root, NULL), 0);
    usleep(20000);
    weft_runtime_free(rt);
    int cancelled = 0;
    for (int i = 0; i < 200; i++) {
        int rc = weft_join(h[i], NULL);
        cr_assert(rc == 0 || rc == -ECANCELED);
        cancelled += rc == -ECANCELED;
    }
    cr_assert_geq(cancelled, 100, "the sleepers must report cancellation");
}

static _Atomic pid_t joiner_tid;

static void *join_from_thread(void *arg)
{
    atomic_store(&joiner_tid, (pid_t)syscall(SYS_gettid));
    return (void *)(intptr_t)weft_join(arg, NULL);
}

/* Until thread tid sleeps in the kernel (state S in /proc): a thread that
 * announced it is about to join is then blocked in the join, however slow
 * the machine. A join made after weft_runtime_free would use a freed handle. */
static void wait_until_blocked(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    for (;;) {
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *close_paren = strrchr(buf, ')');
        cr_assert_not_null(close_paren);
        if (close_paren[1] == ' ' && close_paren[2] == 'S')
            return;
        usleep(1000);
    }
}

Test(sched, a_thread_blocked_in_join_is_released_by_free, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    weft_task *t = weft_spawn_on(rt, sleep_long, NULL);
    pthread_t th;
    pthread_create(&th, NULL, join_from_thread, t);
    while (atomic_load(&joiner_tid) == 0)
        usleep(1000);
    wait_until_blocked(atomic_load(&joiner_tid));
    weft_runtime_free(rt);
    void *r;
    pthread_join(th, &r);
    cr_assert_eq((intptr_t)r, -ECANCELED);
}

Test(sched, spawn_after_free_started_is_refused)
{
    weft_runtime *rt = test_runtime(1);
    atomic_store(&rt->shutdown, 1); /* as weft_runtime_free does first */
    errno = 0;
    cr_assert_null(weft_spawn_on(rt, add_one, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    weft_runtime_free(rt);
}

/* A burst of live tasks leaves thousands of stacks in the shared pool when it
 * ends; once the workers go idle they give back all but WEFT_POOL_WARM. */
static void *nap_5ms(void *arg)
{
    (void)arg;
    weft_sleep_ms(5);
    return NULL;
}

static void *burst_of_sleepers(void *arg)
{
    int n = (int)(intptr_t)arg;
    weft_task **t = calloc((size_t)n, sizeof *t);
    cr_assert_not_null(t);
    for (int i = 0; i < n; i++)
        cr_assert_not_null(t[i] = weft_spawn(nap_5ms, NULL));
    for (int i = 0; i < n; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    free(t);
    return NULL;
}

Test(sched, idle_workers_trim_the_stack_pool, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, burst_of_sleepers, (void *)(intptr_t)3000, NULL), 0);
    size_t warm = 0;
    for (int tries = 0; tries < 100; tries++) {
        usleep(10000); /* the workers park, and trim, once idle */
        warm = 0;
        for (unsigned c = 0; c < WEFT_STACK_CLASSES; c++)
            warm += atomic_load(&rt->stacks.nwarm[c]) > WEFT_POOL_WARM;
        if (!warm)
            break;
    }
    cr_assert_eq(warm, 0, "the pool still holds more than %u warm stacks of some class", WEFT_POOL_WARM);
    weft_runtime_free(rt);
}

/* A worker stuck in a long task polls neither its timers nor its I/O, and
 * timers cannot be stolen; a peer fires the stuck worker's due timers. The
 * root pins itself, lets a sleeper arm its timer on the same worker, then
 * spins without yielding until the sleeper has woken: without the rescue
 * that can only happen after the spin gives up (10 s), so the test does not
 * depend on how fast the rescue is. */
static atomic_int rescue_woke;

static void *rescue_sleeper(void *arg)
{
    (void)arg;
    weft_sleep_ms(20);
    atomic_store(&rescue_woke, 1);
    return NULL;
}

static void *rescue_root(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_pin(), 0);
    int home = weft_worker_index();
    weft_task *s = weft_spawn(rescue_sleeper, NULL); /* our LIFO slot: not stealable */
    cr_assert_not_null(s);
    weft_yield(); /* the sleeper runs here and arms its timer on this worker */
    cr_assert_eq(weft_worker_index(), home);
    int64_t give_up = weft_now() + 10 * (int64_t)1000000000;
    while (!atomic_load(&rescue_woke) && weft_now() < give_up)
        sched_yield(); /* stuck for weft (no weft_yield, no poll); the OS yield
                        * only lets valgrind, which runs one thread at a
                        * time, schedule the others */
    int woke = atomic_load(&rescue_woke);
    cr_assert_eq(weft_unpin(), 0);
    cr_assert_eq(weft_join(s, NULL), 0);
    return (void *)(intptr_t)woke;
}

Test(sched, a_stuck_workers_timers_fire_on_a_peer, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    void *woke = NULL;
    cr_assert_eq(weft_runtime_block_on(rt, rescue_root, NULL, &woke), 0);
    weft_worker_stats st[2];
    cr_assert_eq(weft_runtime_stats(rt, st, 2), 2);
    weft_runtime_free(rt);
    cr_assert_eq((intptr_t)woke, 1, "the sleeper stayed asleep while its worker was stuck");
    cr_assert_geq(st[0].timers_rescued + st[1].timers_rescued, 1);
}

/* The same for a descriptor: a reader waiting on a pipe registered with the
 * stuck worker's poller wakes when a plain thread writes to the pipe. */
static atomic_int rescue_read_done;
static int rescue_pipe[2];

static void *rescue_reader(void *arg)
{
    (void)arg;
    char c = 0;
    ssize_t n = weft_read(rescue_pipe[0], &c, 1, -1);
    atomic_store(&rescue_read_done, n == 1 && c == 'x' ? 1 : -1);
    return NULL;
}

static void *rescue_writer(void *arg)
{
    (void)arg;
    usleep(20000); /* let the root get stuck first */
    ssize_t n = write(rescue_pipe[1], "x", 1);
    (void)n;
    return NULL;
}

static void *rescue_io_root(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_pin(), 0);
    weft_task *r = weft_spawn(rescue_reader, NULL); /* our LIFO slot */
    cr_assert_not_null(r);
    weft_yield(); /* the reader registers the pipe with this worker's poller */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rescue_writer, NULL), 0);
    int64_t give_up = weft_now() + 10 * (int64_t)1000000000;
    while (!atomic_load(&rescue_read_done) && weft_now() < give_up)
        sched_yield(); /* stuck for weft, as above */
    int done = atomic_load(&rescue_read_done);
    pthread_join(th, NULL);
    cr_assert_eq(weft_unpin(), 0);
    cr_assert_eq(weft_join(r, NULL), 0);
    return (void *)(intptr_t)done;
}

Test(sched, a_stuck_workers_descriptor_events_reach_a_peer, .timeout = 60)
{
    cr_assert_eq(pipe2(rescue_pipe, O_NONBLOCK | O_CLOEXEC), 0);
    weft_runtime *rt = test_runtime(2);
    void *done = NULL;
    cr_assert_eq(weft_runtime_block_on(rt, rescue_io_root, NULL, &done), 0);
    weft_worker_stats st[2];
    cr_assert_eq(weft_runtime_stats(rt, st, 2), 2);
    weft_close(rescue_pipe[0]);
    close(rescue_pipe[1]);
    weft_runtime_free(rt);
    cr_assert_eq((intptr_t)done, 1, "the reader stayed blocked while its worker was stuck");
    cr_assert_geq(st[0].events_rescued + st[1].events_rescued, 1);
}

/* The tasks queued behind a stuck task: an idle peer steals them anyway, so
 * here the peer is kept busy by a pinned task that yields in a loop (its
 * queue never runs dry, so it never goes looking for work), and must still
 * take them. */
static atomic_int busy_stop, queued_ran;

static void *busy_yielder(void *arg)
{
    int avoid = (int)(intptr_t)arg;
    while (weft_worker_index() == avoid && !atomic_load(&busy_stop))
        weft_yield(); /* until the idle peer steals us */
    cr_assert_eq(weft_pin(), 0);
    while (!atomic_load(&busy_stop))
        weft_yield();
    cr_assert_eq(weft_unpin(), 0);
    return NULL;
}

static void *queued_task(void *arg)
{
    (void)arg;
    atomic_store(&queued_ran, 1);
    return NULL;
}

static void *noop_task(void *arg) { return arg; }

static void *queue_rescue_root(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_pin(), 0);
    int home = weft_worker_index();
    weft_task *b = weft_spawn(busy_yielder, (void *)(intptr_t)home);
    cr_assert_not_null(b);
    while (!atomic_load(&busy_stop)) { /* until the yielder lives on the peer */
        weft_sleep_ms(1);
        weft_worker_stats st[2];
        weft_runtime_stats(weft_current_runtime(), st, 2);
        if (st[0].steals + st[1].steals > 0)
            break;
    }
    weft_sleep_ms(5);
    weft_task *q = weft_spawn(queued_task, NULL); /* LIFO slot... */
    weft_task *n = weft_spawn(noop_task, NULL);   /* ...displaced to the queue by this one */
    cr_assert(q && n);
    int64_t give_up = weft_now() + 10 * (int64_t)1000000000;
    while (!atomic_load(&queued_ran) && weft_now() < give_up)
        sched_yield(); /* stuck for weft, as above */
    int ran = atomic_load(&queued_ran);
    atomic_store(&busy_stop, 1);
    cr_assert_eq(weft_unpin(), 0);
    cr_assert_eq(weft_join(q, NULL), 0);
    cr_assert_eq(weft_join(n, NULL), 0);
    cr_assert_eq(weft_join(b, NULL), 0);
    return (void *)(intptr_t)ran;
}

Test(sched, a_busy_peer_takes_the_tasks_queued_behind_a_stuck_one, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    void *ran = NULL;
    cr_assert_eq(weft_runtime_block_on(rt, queue_rescue_root, NULL, &ran), 0);
    weft_runtime_free(rt);
    cr_assert_eq((intptr_t)ran, 1, "the queued task waited for the stuck one");
}

/* A single worker never searches, so it used to go to sleep without a last
 * look at the queues: a task spawned from another thread just before it
 * slept stayed queued while it waited in epoll_wait(-1) (seen as a rare hang
 * of block_on under TSan). Each round here spawns from this plain thread as
 * the worker goes idle after the previous task; a lost wake-up hangs the
 * join (the test's timeout catches it). */
static void *return_arg(void *arg) { return arg; }

Test(sched, single_worker_never_sleeps_on_a_queued_task, .timeout = 120)
{
    weft_runtime *rt = test_runtime(1);
    int rounds = test_scale_down() ? 2000 : 20000;
    for (int i = 0; i < rounds; i++) {
        weft_task *t = weft_spawn_on(rt, return_arg, (void *)(intptr_t)(i + 1));
        cr_assert_not_null(t);
        void *r;
        cr_assert_eq(weft_join(t, &r), 0);
        cr_assert_eq((intptr_t)r, i + 1);
    }
    weft_runtime_free(rt);
}

/* An accepted socket is registered with the poller of the worker that
 * accepted it, not with the poller of the worker its task first waits on:
 * a listener's connections then report to one poller, and a second worker
 * runs them only when it is woken for a backlog or steals (see
 * POLL_WAKE_BACKLOG in scheduler.h). Here the connection's task moves to the
 * other worker before its first read; its events must still come from the
 * acceptor's poller, and the read must still complete. */
static int bind_port;
static atomic_int bind_go;

static void *bind_client(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)bind_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return (void *)1;
    while (!atomic_load(&bind_go))
        usleep(1000);
    char c = 'x';
    int bad = write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1 || c != 'y';
    close(fd);
    return (void *)(intptr_t)bad;
}

typedef struct bind_conn {
    int fd, home, ran_on;
    weft__poller *poller; /* the fd's poller after the read */
    ssize_t n;
} bind_conn;

static void *bind_conn_task(void *arg)
{
    bind_conn *c = arg;
    int64_t give_up = weft_now() + 10 * (int64_t)1000000000;
    while (weft_worker_index() == c->home && weft_now() < give_up)
        weft_yield(); /* until the idle peer (the watcher) steals us */
    cr_assert_eq(weft_pin(), 0); /* stay there for the first wait */
    c->ran_on = weft_worker_index();
    atomic_store(&bind_go, 1);
    char ch;
    c->n = weft_read(c->fd, &ch, 1, 10000);
    c->poller = weft__fd_poller_of(c->fd);
    if (c->n == 1)
        weft_write(c->fd, "y", 1, 10000);
    cr_assert_eq(weft_unpin(), 0);
    return NULL;
}

static void *bind_root(void *arg)
{
    bind_conn *c = arg;
    cr_assert_eq(weft_pin(), 0);
    c->home = weft_worker_index();
    int lfd = weft_tcp_listen("127.0.0.1", 0, 0);
    cr_assert_geq(lfd, 0);
    bind_port = weft_socket_port(lfd);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, bind_client, NULL), 0);
    c->fd = weft_tcp_accept(lfd, NULL);
    cr_assert_geq(c->fd, 0);
    weft_task *t = weft_spawn(bind_conn_task, c);
    cr_assert_not_null(t);
    cr_assert_eq(weft_join(t, NULL), 0);
    void *bad = (void *)1;
    pthread_join(th, &bad);
    cr_assert_null(bad, "the client's exchange failed");
    weft_close(c->fd);
    weft_close(lfd);
    cr_assert_eq(weft_unpin(), 0);
    return NULL;
}

Test(sched, an_accepted_socket_reports_to_the_acceptors_poller, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    bind_conn c = {.fd = -1, .home = -1, .ran_on = -1};
    cr_assert_eq(weft_runtime_block_on(rt, bind_root, &c, NULL), 0);
    weft__poller *home = &rt->workers[c.home]->poller;
    weft_runtime_free(rt);
    cr_assert_neq(c.ran_on, c.home, "the connection's task never moved to the other worker");
    cr_assert_eq(c.n, 1);
    cr_assert(c.poller == home, "the descriptor was registered where its task first waited");
}

/* A poll that readies fewer than POLL_WAKE_BACKLOG tasks wakes nobody while
 * a sleeping peer watches. The first reader woken here runs long (until the
 * other has read), and the other, queued behind it or its event still in
 * the same poller, must still reach the other worker, woken or rescued. Both
 * pipes are registered with the root's worker (weft__fd_bind), which is
 * asleep with its peer, neither watching, when a plain thread writes to
 * one, then the other. Without a wake or a rescue the first reader spins until it gives up
 * and the test fails (it did, when a single readied task woke nobody even
 * with no watcher: the second event waited in the spinning worker's poller). */
static int small_pipes[2][2];
static atomic_int small_read;

static void *small_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c;
    if (weft_read(small_pipes[i][0], &c, 1, 20000) != 1)
        return (void *)1;
    atomic_fetch_add(&small_read, 1);
    int64_t give_up = weft_now() + 10 * (int64_t)1000000000;
    while (atomic_load(&small_read) < 2 && weft_now() < give_up)
        sched_yield(); /* a long task: no weft call, no suspension */
    return atomic_load(&small_read) == 2 ? NULL : (void *)2;
}

static void *small_writer(void *arg)
{
    (void)arg;
    usleep(50000); /* both workers asleep, no watcher left */
    for (int i = 0; i < 2; i++) {
        ssize_t n = write(small_pipes[i][1], "x", 1);
        (void)n;
        usleep(5000); /* the second event comes while the first reader spins */
    }
    return NULL;
}

static void *small_root(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_pin(), 0);
    weft__worker *w = weft__cur_worker();
    weft_task *t[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(weft__fd_bind(&w->poller, small_pipes[i][0]), 0);
        t[i] = weft_spawn(small_reader, (void *)(intptr_t)i);
        cr_assert_not_null(t[i]);
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, small_writer, NULL), 0);
    intptr_t bad = 0;
    for (int i = 0; i < 2; i++) {
        void *r = (void *)1;
        cr_assert_eq(weft_join(t[i], &r), 0);
        bad |= (intptr_t)r;
    }
    pthread_join(th, NULL);
    cr_assert_eq(weft_unpin(), 0);
    return (void *)bad;
}

Test(sched, a_small_batch_behind_a_long_task_still_reaches_the_peer, .timeout = 60)
{
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pipe2(small_pipes[i], O_NONBLOCK | O_CLOEXEC), 0);
    weft_runtime *rt = test_runtime(2);
    void *bad = (void *)1;
    cr_assert_eq(weft_runtime_block_on(rt, small_root, NULL, &bad), 0);
    weft_runtime_free(rt);
    for (int i = 0; i < 2; i++) {
        weft_close(small_pipes[i][0]);
        close(small_pipes[i][1]);
    }
    cr_assert_null(bad, "a reader failed, or the one queued behind the long one never ran");
}
