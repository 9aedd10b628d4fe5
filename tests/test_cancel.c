/* Cancellation: at every kind of suspension point in the runtime so far
 * (sleep, fd wait, socket read, join), before a task ever ran, shielded
 * cleanup, and cancel racing with finish. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>

static atomic_int cleanup_ran;

static void *sleeps(void *arg)
{
    (void)arg;
    int rc = weft_sleep_ms(60000);
    atomic_fetch_add(&cleanup_ran, 1);
    return (void *)(intptr_t)rc;
}

static void *waits_fd(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int rc = weft_wait_fd(fd, WEFT_READ, -1);
    atomic_fetch_add(&cleanup_ran, 1);
    return (void *)(intptr_t)rc;
}

static void *reads(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[8];
    ssize_t rc = weft_read(fd, buf, sizeof buf, -1);
    atomic_fetch_add(&cleanup_ran, 1);
    return (void *)(intptr_t)rc;
}

static void *joins(void *arg)
{
    weft_task *victim = arg;
    int rc = weft_join(victim, NULL);
    atomic_fetch_add(&cleanup_ran, 1);
    return (void *)(intptr_t)rc;
}

/* Cancels t (which has begun: test_spawn_running) after it had time to park;
 * checks its own view and join's. */
static void cancel_and_check(weft_task *t)
{
    weft_sleep_ms(20);
    cr_assert_eq(weft_cancel(t), 0);
    void *r;
    cr_assert_eq(weft_join(t, &r), -ECANCELED);
    cr_assert_eq((intptr_t)r, -ECANCELED, "the suspended call returned %ld", (long)(intptr_t)r);
}

static void *every_point_root(void *arg)
{
    (void)arg;
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cancel_and_check(test_spawn_running(sleeps, NULL));
    cancel_and_check(test_spawn_running(waits_fd, (void *)(intptr_t)p[0]));
    cancel_and_check(test_spawn_running(reads, (void *)(intptr_t)p[0]));
    weft_task *victim = weft_spawn(sleeps, NULL);
    cancel_and_check(test_spawn_running(joins, victim)); /* the joiner detaches victim */
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(cancel, every_suspension_point_returns_ecanceled, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, every_point_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    /* each cancelled task ran its cleanup (the detached victim did not: it
     * was discarded by weft_runtime_free while sleeping) */
    cr_assert_eq(atomic_load(&cleanup_ran), 4);
}

static atomic_int started;
static void *never_runs(void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    return NULL;
}

static void *queued_root(void *arg)
{
    (void)arg;
    /* Spawned onto this worker's queue; we do not yield before cancelling. */
    weft_task *t[100];
    for (int i = 0; i < 100; i++)
        t[i] = weft_spawn(never_runs, NULL);
    for (int i = 0; i < 100; i++)
        weft_cancel(t[i]);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(weft_join(t[i], NULL), -ECANCELED);
    return NULL;
}

Test(cancel, a_task_cancelled_while_queued_never_runs)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, queued_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    cr_assert_eq(atomic_load(&started), 0);
}

static void *shielded_cleanup(void *arg)
{
    (void)arg;
    int rc = weft_sleep_ms(60000);
    cr_assert_eq(rc, -ECANCELED);
    cr_assert(weft_cancelled());
    /* Cleanup that must suspend: shielded, the sleep really sleeps. */
    cr_assert_eq(weft_shield_begin(), 0);
    weft_time t0 = weft_now();
    cr_assert_eq(weft_sleep_ms(10), 0);
    cr_assert_geq(weft_now() - t0, 10 * 1000000LL);
    cr_assert_eq(weft_shield_end(), 0);
    /* Unshielded again: cancellation is sticky. */
    cr_assert_eq(weft_sleep_ms(10), -ECANCELED);
    return (void *)1;
}

static void *shield_root(void *arg)
{
    (void)arg;
    weft_task *t = test_spawn_running(shielded_cleanup, NULL);
    weft_sleep_ms(10);
    weft_cancel(t);
    void *r;
    cr_assert_eq(weft_join(t, &r), -ECANCELED);
    cr_assert_eq((intptr_t)r, 1, "the task's cleanup did not complete");
    return NULL;
}

Test(cancel, shielded_cleanup_can_suspend)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, shield_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static atomic_int quick_ran;

static void *quick(void *arg)
{
    atomic_store(&quick_ran, 1);
    return arg;
}

/* One worker: the spawned task is queued ahead of the yielding root and never
 * suspends, so it has finished when the root runs again, however slow the
 * machine (a sleep of a few ms was not always enough under load). */
static void *finished_root(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(quick, (void *)7);
    weft_yield();
    cr_assert(atomic_load(&quick_ran), "the spawned task had not run before the yielding root");
    cr_assert_eq(weft_cancel(t), 0); /* finished already: harmless */
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, 7);
    return NULL;
}

Test(cancel, cancelling_a_finished_task_is_harmless)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, finished_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    cr_assert_eq(weft_cancel(NULL), -EINVAL);
    cr_assert_eq(weft_shield_begin(), -EPERM);
}

/* Cancel racing with finish, from another worker and from a plain thread:
 * every join returns 0 (finished first) or -ECANCELED, and nothing is lost. */
static void *short_work(void *arg)
{
    for (int i = 0; i < (int)(intptr_t)arg % 5; i++)
        weft_yield();
    return arg;
}

static void *race_root(void *arg)
{
    (void)arg;
    int finished = 0, cancelled = 0;
    for (int round = 0; round < 2000; round++) {
        weft_task *t = weft_spawn(short_work, (void *)(intptr_t)round);
        if (round % 3)
            weft_yield();
        weft_cancel(t);
        void *r;
        int rc = weft_join(t, &r);
        cr_assert(rc == 0 || rc == -ECANCELED, "join returned %d", rc);
        if (rc == 0) {
            cr_assert_eq((intptr_t)r, round);
            finished++;
        } else {
            cancelled++;
        }
    }
    cr_log_info("%d finished first, %d cancelled", finished, cancelled);
    return NULL;
}

Test(cancel, cancel_races_with_finish, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, race_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *cancel_from_thread(void *arg)
{
    weft_cancel(arg);
    return NULL;
}

Test(cancel, a_plain_thread_can_cancel, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    weft_task *t = weft_spawn_on(rt, sleeps, NULL);
    usleep(20000);
    pthread_t th;
    pthread_create(&th, NULL, cancel_from_thread, t);
    pthread_join(th, NULL);
    void *r;
    cr_assert_eq(weft_join(t, &r), -ECANCELED);
    cr_assert_eq((intptr_t)r, -ECANCELED);
    weft_runtime_free(rt);
}
