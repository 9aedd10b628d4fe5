/* Task groups and gathering tasks: next returns every child once, fail-fast
 * cancels siblings, freeing a group leaves no child behind, waits time out
 * and are cancellable; join_timeout, join_all, join_any. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MS 1000000LL

static atomic_int exits;

static void *sleeper(void *arg)
{
    weft_sleep_ms((uint64_t)(intptr_t)arg);
    atomic_fetch_add(&exits, 1);
    return arg;
}

/* ---------------------------------------------------------------- next */

static void *next_root(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new(0);
    cr_assert_not_null(g);
    int n = 20;
    for (int i = 0; i < n; i++)
        cr_assert_eq(weft_group_spawn(g, sleeper, (void *)(intptr_t)((i * 7) % 11)), i);
    int seen[20] = {0};
    for (int k = 0; k < n; k++) {
        void *r;
        int id = weft_group_next(g, &r, -1);
        cr_assert(id >= 0 && id < n, "next returned %d", id);
        cr_assert_eq(seen[id]++, 0, "child %d returned twice", id);
        cr_assert_eq((intptr_t)r, (id * 7) % 11);
    }
    cr_assert_eq(weft_group_next(g, NULL, -1), -ENOENT);
    cr_assert_eq(weft_group_wait(g, -1), 0);
    weft_group_free(g);
    return NULL;
}

Test(group, next_returns_each_child_once, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, next_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- fail fast */

static atomic_int sibling_cancelled, sibling_started;

static void *long_sibling(void *arg)
{
    (void)arg;
    atomic_fetch_add(&sibling_started, 1);
    int rc = weft_sleep_ms(60000);
    if (rc == -ECANCELED)
        atomic_fetch_add(&sibling_cancelled, 1);
    return (void *)(intptr_t)rc;
}

static void *failing_child(void *arg)
{
    (void)arg;
    weft_sleep_ms(10);
    return WEFT_GROUP_FAILED;
}

static void *fail_fast_root(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new(WEFT_GROUP_FAIL_FAST);
    for (int i = 0; i < 5; i++)
        weft_group_spawn(g, long_sibling, NULL);
    /* Let them start: one cancelled before it runs never runs. */
    while (atomic_load(&sibling_started) < 5)
        weft_sleep_ms(1);
    weft_group_spawn(g, failing_child, NULL);
    weft_time t0 = weft_now();
    cr_assert_eq(weft_group_wait(g, 10000), -ECHILD);
    cr_assert_lt(weft_now() - t0, 5000 * MS, "siblings were not cancelled");
    cr_assert_eq(atomic_load(&sibling_cancelled), 5);
    /* cancelled: no more children */
    cr_assert_eq(weft_group_spawn(g, failing_child, NULL), -ECANCELED);
    int n = 0;
    void *r;
    while (weft_group_next(g, &r, -1) >= 0)
        n++;
    cr_assert_eq(n, 6);
    weft_group_free(g);

    /* without FAIL_FAST a failure does not touch the others */
    g = weft_group_new(0);
    weft_group_spawn(g, failing_child, NULL);
    weft_group_spawn(g, sleeper, (void *)30);
    cr_assert_eq(weft_group_wait(g, -1), -ECHILD);
    weft_group_free(g);
    return NULL;
}

Test(group, fail_fast_cancels_siblings, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, fail_fast_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- free */

static atomic_int started, finished;

static void *tracked(void *arg)
{
    atomic_fetch_add(&started, 1);
    weft_sleep_ms((uint64_t)(intptr_t)arg);
    atomic_fetch_add(&finished, 1);
    return NULL;
}

static void *free_root(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new(0);
    for (int i = 0; i < 50; i++)
        weft_group_spawn(g, tracked, (void *)(intptr_t)(i % 2 ? 60000 : 1));
    /* Until the first 50 have started, however slow the machine (a fixed
     * 20 ms failed under TSan on a loaded machine). */
    while (atomic_load(&started) < 50)
        weft_sleep_ms(1);
    weft_group_spawn(g, tracked, (void *)60000); /* may not even have started */
    weft_time t0 = weft_now();
    weft_group_free(g);
    /* Cancelled, not waited out: the sleepers would take 60 s. */
    cr_assert_lt(weft_now() - t0, 30000 * MS);
    /* every child that started has finished: none outlives the group */
    cr_assert_eq(atomic_load(&finished), atomic_load(&started));
    cr_assert_geq(atomic_load(&started), 50);
    return NULL;
}

Test(group, free_cancels_and_joins_every_child, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, free_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- waits */

static void *group_waiter(void *arg)
{
    int rc = weft_group_wait(arg, -1);
    atomic_fetch_add(&exits, 1000);
    return (void *)(intptr_t)rc;
}

static void *wait_root(void *arg)
{
    (void)arg;
    weft_group *g = weft_group_new(0);
    weft_group_spawn(g, long_sibling, NULL);
    weft_time t0 = weft_now();
    cr_assert_eq(weft_group_wait(g, 25), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 25 * MS);
    cr_assert_eq(weft_group_next(g, NULL, 0), -ETIMEDOUT);
    /* a task waiting on the group can be cancelled */
    weft_task *w = test_spawn_running(group_waiter, g);
    weft_sleep_ms(20);
    weft_cancel(w);
    void *r;
    cr_assert_eq(weft_join(w, &r), -ECANCELED);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    /* the group is unaffected; cancel it and collect */
    cr_assert_eq(weft_group_cancel(g), 0);
    cr_assert_eq(weft_group_wait(g, -1), 0);
    cr_assert_eq(weft_group_next(g, &r, -1), 0);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    weft_group_free(g);
    return NULL;
}

Test(group, wait_times_out_and_is_cancellable, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, wait_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- gathering */

static void *gather_root(void *arg)
{
    (void)arg;
    /* join_timeout: the handle stays valid on a timeout */
    weft_task *t = weft_spawn(sleeper, (void *)60);
    weft_time t0 = weft_now();
    cr_assert_eq(weft_join_timeout(t, NULL, 20), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 20 * MS);
    void *r;
    cr_assert_eq(weft_join_timeout(t, &r, 5000), 0);
    cr_assert_eq((intptr_t)r, 60);

    /* join_all: collects every result; the total time is the longest */
    weft_task *ts[4];
    intptr_t d[4] = {40, 10, 30, 20};
    for (int i = 0; i < 4; i++)
        ts[i] = weft_spawn(sleeper, (void *)d[i]);
    void *res[4];
    cr_assert_eq(weft_join_all(ts, 4, res, 5), -ETIMEDOUT); /* handles kept */
    t0 = weft_now();
    cr_assert_eq(weft_join_all(ts, 4, res, -1), 0);
    weft_time dt = weft_now() - t0;
    cr_assert_lt(dt, 90 * MS, "join_all ran them one after another? %lld ns", (long long)dt);
    for (int i = 0; i < 4; i++)
        cr_assert_eq((intptr_t)res[i], d[i]);

    /* join_any: the first to finish; the others stay with the caller */
    intptr_t e[3] = {60, 10, 40};
    for (int i = 0; i < 3; i++)
        ts[i] = weft_spawn(sleeper, (void *)e[i]);
    cr_assert_eq(weft_join_any(ts, 3, &r, 0), -ETIMEDOUT);
    int k = weft_join_any(ts, 3, &r, -1);
    cr_assert_eq(k, 1);
    cr_assert_eq((intptr_t)r, 10);
    ts[1] = NULL;
    k = weft_join_any(ts, 3, &r, -1);
    cr_assert_eq(k, 2);
    ts[2] = NULL;
    cr_assert_eq(weft_join_any(ts, 3, &r, 5), -ETIMEDOUT);
    k = weft_join_any(ts, 3, &r, -1);
    cr_assert_eq(k, 0);
    cr_assert_eq((intptr_t)r, 60);

    /* join_all counts cancelled tasks, still releasing every handle */
    ts[0] = weft_spawn(sleeper, (void *)60000);
    ts[1] = weft_spawn(sleeper, (void *)1);
    weft_sleep_ms(10);
    weft_cancel(ts[0]);
    cr_assert_eq(weft_join_all(ts, 2, NULL, -1), 1);
    return NULL;
}

Test(group, join_timeout_all_any, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, gather_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *any_victim(void *arg)
{
    weft_task **ts = arg;
    void *r;
    return (void *)(intptr_t)weft_join_any(ts, 2, &r, -1);
}

static void *gather_cancel_root(void *arg)
{
    (void)arg;
    weft_task *ts[2] = {weft_spawn(sleeper, (void *)60000), weft_spawn(sleeper, (void *)60000)};
    weft_task *v = test_spawn_running(any_victim, ts);
    weft_sleep_ms(20);
    weft_cancel(v);
    void *r;
    cr_assert_eq(weft_join(v, &r), -ECANCELED);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    /* its waiters were withdrawn: the handles work as before */
    for (int i = 0; i < 2; i++) {
        weft_cancel(ts[i]);
        cr_assert_eq(weft_join(ts[i], NULL), -ECANCELED);
    }
    return NULL;
}

Test(group, join_any_is_cancellable, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, gather_cancel_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

Test(group, gathering_from_a_plain_thread, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    weft_task *ts[3];
    intptr_t d[3] = {50, 10, 30};
    for (int i = 0; i < 3; i++)
        ts[i] = weft_spawn_on(rt, sleeper, (void *)d[i]);
    void *r;
    cr_assert_eq(weft_join_timeout(ts[0], &r, 1), -ETIMEDOUT);
    cr_assert_eq(weft_join_any(ts, 3, &r, -1), 1);
    cr_assert_eq((intptr_t)r, 10);
    ts[1] = ts[2];
    void *res[2];
    cr_assert_eq(weft_join_all(ts, 2, res, -1), 0);
    cr_assert_eq((intptr_t)res[0], 50);
    cr_assert_eq((intptr_t)res[1], 30);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------ reused blocks */

static void *return_arg(void *arg) { return arg; }

/* Group children on control blocks that earlier tasks used and released: the
 * group keeps each child's handle with its block's current generation, so
 * collecting them is not taken for a stale handle (a group child's handle
 * once carried no generation, and collecting a child on a reused block
 * aborted). */
static void *reused_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) { /* release blocks, bumping their generations */
        weft_task *t = weft_spawn(return_arg, NULL);
        TEST_EXPECT(t && weft_join(t, NULL) == 0, "spawn and join %d", i);
    }
    weft_group *g = weft_group_new(0);
    for (intptr_t i = 1; i <= 50; i++)
        TEST_EXPECT(weft_group_spawn(g, return_arg, (void *)i) >= 0, "group spawn %ld", (long)i);
    intptr_t sum = 0;
    for (int i = 0; i < 50; i++) {
        void *r = NULL;
        TEST_EXPECT(weft_group_next(g, &r, -1) >= 0, "next %d", i);
        sum += (intptr_t)r;
    }
    TEST_EXPECT(sum == 50 * 51 / 2, "results sum to %ld", (long)sum);
    /* A cancelled group's children are collected by free. */
    for (int i = 0; i < 20; i++)
        TEST_EXPECT(weft_group_spawn(g, sleeper, (void *)60000) >= 0, "spawn sleeper %d", i);
    weft_group_free(g);
    return NULL;
}

Test(group, children_on_reused_blocks_are_collected, .timeout = 30)
{
    test_run(1, reused_root, NULL);
}
