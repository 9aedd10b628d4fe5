/* Mutex, condition variable, semaphore, event, wait group and once: across
 * workers and plain threads, FIFO fairness, timeouts, cancellation at every
 * wait. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MS 1000000LL

/* ---------------------------------------------------------------- mutex */

struct counter {
    weft_mutex *m;
    long value;
    int iters;
};

static void *count_up(void *arg)
{
    struct counter *c = arg;
    for (int i = 0; i < c->iters; i++) {
        cr_assert_eq(weft_mutex_lock(c->m, -1), 0);
        long v = c->value;
        if (i % 7 == 0)
            weft_yield(); /* hold it across a suspension now and then */
        c->value = v + 1;
        cr_assert_eq(weft_mutex_unlock(c->m), 0);
    }
    return NULL;
}

static void *mutex_root(void *arg)
{
    struct counter *c = arg;
    weft_task *t[8];
    for (int i = 0; i < 8; i++)
        t[i] = weft_spawn(count_up, c);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(sync_mutex, exclusion_across_workers_and_a_thread, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    struct counter c = {.m = weft_mutex_new(), .iters = test_scale_down() ? 200 : 2000};
    cr_assert_not_null(c.m);
    pthread_t th;
    pthread_create(&th, NULL, count_up, &c); /* a plain thread contends too */
    cr_assert_eq(weft_runtime_block_on(rt, mutex_root, &c, NULL), 0);
    pthread_join(th, NULL);
    cr_assert_eq(c.value, 9L * c.iters);
    cr_assert_eq(weft_mutex_trylock(c.m), 0);
    cr_assert_eq(weft_mutex_trylock(c.m), -EAGAIN);
    cr_assert_eq(weft_mutex_unlock(c.m), 0);
    cr_assert_eq(weft_mutex_unlock(c.m), -EPERM);
    weft_mutex_free(c.m);
    weft_runtime_free(rt);
}

struct fifo {
    weft_mutex *m;
    int order[16];
    atomic_int n;
};

struct fifo_arg {
    struct fifo *f;
    int id;
};

static void *fifo_locker(void *arg)
{
    struct fifo_arg *a = arg;
    cr_assert_eq(weft_mutex_lock(a->f->m, -1), 0);
    a->f->order[atomic_fetch_add(&a->f->n, 1)] = a->id;
    cr_assert_eq(weft_mutex_unlock(a->f->m), 0);
    return NULL;
}

static void *fifo_root(void *arg)
{
    (void)arg;
    struct fifo f = {.m = weft_mutex_new()};
    struct fifo_arg a[8];
    weft_task *t[8];
    cr_assert_eq(weft_mutex_lock(f.m, -1), 0);
    for (int i = 0; i < 8; i++) {
        a[i] = (struct fifo_arg){&f, i};
        t[i] = weft_spawn(fifo_locker, &a[i]);
        /* One worker: the yield runs t[i] until it waits on the mutex, so
         * the waiters queue in spawn order however slow the machine. */
        weft_yield();
    }
    /* Unlock hands over: relocking at once must not barge ahead. */
    cr_assert_eq(weft_mutex_unlock(f.m), 0);
    cr_assert_eq(weft_mutex_trylock(f.m), -EAGAIN);
    cr_assert_eq(weft_mutex_lock(f.m, -1), 0); /* queues behind all eight */
    cr_assert_eq(atomic_load(&f.n), 8);
    cr_assert_eq(weft_mutex_unlock(f.m), 0);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(weft_join(t[i], NULL), 0);
        cr_assert_eq(f.order[i], i, "lock order was not FIFO at %d", i);
    }
    weft_mutex_free(f.m);
    return NULL;
}

Test(sync_mutex, fifo_hand_off_no_barging, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, fifo_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *timeout_root(void *arg)
{
    (void)arg;
    weft_mutex *m = weft_mutex_new();
    weft_sem *s = weft_sem_new(0);
    weft_event *e = weft_event_new();
    weft_wg *wg = weft_wg_new();
    weft_cond *c = weft_cond_new();
    cr_assert_eq(weft_mutex_lock(m, 0), 0);
    cr_assert_eq(weft_mutex_lock(m, 0), -ETIMEDOUT);
    cr_assert_eq(weft_wg_add(wg, 1), 0);
    for (int which = 0; which < 5; which++) {
        weft_time t0 = weft_now();
        int rc = which == 0   ? weft_mutex_lock(m, 25)
                 : which == 1 ? weft_sem_acquire(s, 25)
                 : which == 2 ? weft_event_wait(e, 25)
                 : which == 3 ? weft_wg_wait(wg, 25)
                              : weft_cond_wait(c, m, 25);
        weft_time dt = weft_now() - t0;
        cr_assert_eq(rc, -ETIMEDOUT, "wait %d returned %d", which, rc);
        cr_assert_geq(dt, 25 * MS, "wait %d timed out early: %lld ns", which, (long long)dt);
    }
    cr_assert_eq(weft_mutex_unlock(m), 0); /* cond wait re-took it */
    cr_assert_eq(weft_wg_done(wg), 0);
    cr_assert_eq(weft_wg_done(wg), -EINVAL);
    cr_assert_eq(weft_wg_wait(wg, 0), 0);
    weft_mutex_free(m);
    weft_sem_free(s);
    weft_event_free(e);
    weft_wg_free(wg);
    weft_cond_free(c);
    return NULL;
}

Test(sync, timeouts_are_never_early, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, timeout_root, NULL, NULL), 0);
    /* and from a plain thread */
    timeout_root(NULL);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- cond */

struct gate {
    weft_mutex *m;
    weft_cond *c;
    int open;
    atomic_int waiting, passed;
};

static void *gate_waiter(void *arg)
{
    struct gate *g = arg;
    cr_assert_eq(weft_mutex_lock(g->m, -1), 0);
    atomic_fetch_add(&g->waiting, 1);
    while (!g->open)
        cr_assert_eq(weft_cond_wait(g->c, g->m, -1), 0);
    atomic_fetch_add(&g->passed, 1);
    cr_assert_eq(weft_mutex_unlock(g->m), 0);
    return NULL;
}

static void *broadcast_root(void *arg)
{
    struct gate *g = arg;
    weft_task *t[10];
    for (int i = 0; i < 10; i++)
        t[i] = weft_spawn(gate_waiter, g);
    while (atomic_load(&g->waiting) < 11)
        weft_sleep_ms(1);
    weft_sleep_ms(5);
    cr_assert_eq(atomic_load(&g->passed), 0);
    /* signal wakes one, which finds the gate shut and waits again */
    cr_assert_eq(weft_cond_signal(g->c), 0);
    weft_sleep_ms(5);
    cr_assert_eq(atomic_load(&g->passed), 0);
    cr_assert_eq(weft_mutex_lock(g->m, -1), 0);
    g->open = 1;
    cr_assert_eq(weft_cond_broadcast(g->c), 0);
    cr_assert_eq(weft_mutex_unlock(g->m), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(sync_cond, broadcast_wakes_all_tasks_and_a_thread, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    struct gate g = {.m = weft_mutex_new(), .c = weft_cond_new()};
    pthread_t th;
    pthread_create(&th, NULL, gate_waiter, &g);
    cr_assert_eq(weft_runtime_block_on(rt, broadcast_root, &g, NULL), 0);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&g.passed), 11);
    weft_cond_free(g.c);
    weft_mutex_free(g.m);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- semaphore */

struct semtest {
    weft_sem *s;
    atomic_int inside, max_inside, done;
};

static void *sem_user(void *arg)
{
    struct semtest *st = arg;
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(weft_sem_acquire(st->s, -1), 0);
        int now = atomic_fetch_add(&st->inside, 1) + 1;
        int m = atomic_load(&st->max_inside);
        while (now > m && !atomic_compare_exchange_weak(&st->max_inside, &m, now))
            ;
        weft_yield();
        atomic_fetch_sub(&st->inside, 1);
        cr_assert_eq(weft_sem_release(st->s, 1), 0);
    }
    atomic_fetch_add(&st->done, 1);
    return NULL;
}

static void *sem_root(void *arg)
{
    struct semtest *st = arg;
    weft_task *t[12];
    for (int i = 0; i < 12; i++)
        t[i] = weft_spawn(sem_user, st);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(sync_sem, counts_hold, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    struct semtest st = {.s = weft_sem_new(3)};
    cr_assert_eq(weft_runtime_block_on(rt, sem_root, &st, NULL), 0);
    cr_assert_leq(atomic_load(&st.max_inside), 3);
    cr_assert_eq(atomic_load(&st.done), 12);
    cr_assert_eq(weft_sem_value(st.s), 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(weft_sem_try_acquire(st.s), 0);
    cr_assert_eq(weft_sem_try_acquire(st.s), -EAGAIN);
    cr_assert_eq(weft_sem_release(st.s, 0), -EINVAL);
    cr_assert_eq(weft_sem_release(st.s, 5), 0);
    cr_assert_eq(weft_sem_value(st.s), 5);
    weft_sem_free(st.s);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- event */

static void *event_waiter(void *arg)
{
    return (void *)(intptr_t)weft_event_wait(arg, -1);
}

static void *set_later(void *arg)
{
    usleep(20000);
    weft_event_set(arg);
    return NULL;
}

Test(sync_event, set_from_a_plain_thread_wakes_tasks, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    weft_event *e = weft_event_new();
    weft_task *t[6];
    for (int i = 0; i < 6; i++)
        t[i] = weft_spawn_on(rt, event_waiter, e);
    cr_assert_not(weft_event_is_set(e));
    pthread_t th, th2;
    pthread_create(&th2, NULL, event_waiter, e); /* a thread waits too */
    pthread_create(&th, NULL, set_later, e);
    for (int i = 0; i < 6; i++) {
        void *r;
        cr_assert_eq(weft_join(t[i], &r), 0);
        cr_assert_eq((intptr_t)r, 0);
    }
    void *r;
    pthread_join(th2, &r);
    cr_assert_eq((intptr_t)r, 0);
    pthread_join(th, NULL);
    cr_assert(weft_event_is_set(e));
    cr_assert_eq(weft_event_wait(e, 0), 0);
    cr_assert_eq(weft_event_clear(e), 0);
    cr_assert_eq(weft_event_wait(e, 0), -ETIMEDOUT);
    weft_event_free(e);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- wait group */

struct wgtest {
    weft_wg *wg;
    atomic_int finished;
};

static void *wg_worker(void *arg)
{
    struct wgtest *w = arg;
    weft_sleep_ms(1 + (uint64_t)(atomic_load(&w->finished) % 3));
    atomic_fetch_add(&w->finished, 1);
    weft_wg_done(w->wg);
    return NULL;
}

static void *wg_root(void *arg)
{
    struct wgtest *w = arg;
    cr_assert_eq(weft_wg_add(w->wg, 20), 0);
    for (int i = 0; i < 20; i++)
        weft_detach(weft_spawn(wg_worker, w));
    cr_assert_eq(weft_wg_wait(w->wg, -1), 0);
    cr_assert_eq(atomic_load(&w->finished), 20);
    return NULL;
}

Test(sync_wg, wait_returns_after_every_done, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    struct wgtest w = {.wg = weft_wg_new()};
    cr_assert_eq(weft_runtime_block_on(rt, wg_root, &w, NULL), 0);
    weft_wg_free(w.wg);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- once */

static weft_once_flag once_flag = WEFT_ONCE_INIT;
static atomic_int once_runs, once_seen_done;

static void once_init(void *arg)
{
    (void)arg;
    weft_sleep_ms(20); /* others must wait for this, suspended */
    atomic_fetch_add(&once_runs, 1);
}

static void *once_caller(void *arg)
{
    (void)arg;
    cr_assert_eq(weft_once(&once_flag, once_init, NULL), 0);
    cr_assert_eq(atomic_load(&once_runs), 1, "returned before fn finished");
    atomic_fetch_add(&once_seen_done, 1);
    return NULL;
}

static void *once_root(void *arg)
{
    (void)arg;
    weft_task *t[16];
    for (int i = 0; i < 16; i++)
        t[i] = weft_spawn(once_caller, NULL);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(sync_once, runs_exactly_once_under_contention, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    pthread_t th;
    pthread_create(&th, NULL, once_caller, NULL);
    cr_assert_eq(weft_runtime_block_on(rt, once_root, NULL, NULL), 0);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&once_runs), 1);
    cr_assert_eq(atomic_load(&once_seen_done), 17);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- cancellation */

struct victim {
    int kind;
    weft_mutex *m;
    weft_cond *c;
    weft_sem *s;
    weft_event *e;
    weft_wg *wg;
    atomic_int *cleanup;
};

static void *blocked_victim(void *arg)
{
    struct victim *v = arg;
    int rc;
    switch (v->kind) {
    case 0:
        rc = weft_mutex_lock(v->m, -1);
        break;
    case 1:
        cr_assert_eq(weft_mutex_lock(v->m, -1), 0);
        rc = weft_cond_wait(v->c, v->m, -1);
        /* the mutex is held again, even on cancellation */
        cr_assert_eq(weft_mutex_unlock(v->m), 0);
        break;
    case 2:
        rc = weft_sem_acquire(v->s, -1);
        break;
    case 3:
        rc = weft_event_wait(v->e, -1);
        break;
    default:
        rc = weft_wg_wait(v->wg, -1);
        break;
    }
    atomic_fetch_add(v->cleanup, 1);
    return (void *)(intptr_t)rc;
}

static void *cancel_root(void *arg)
{
    (void)arg;
    atomic_int cleanup = 0;
    struct victim v = {.m = weft_mutex_new(), .c = weft_cond_new(), .s = weft_sem_new(0),
                       .e = weft_event_new(), .wg = weft_wg_new(), .cleanup = &cleanup};
    weft_mutex *held = weft_mutex_new();
    weft_wg_add(v.wg, 1);
    for (int kind = 0; kind < 5; kind++) {
        struct victim vk = v;
        vk.kind = kind;
        if (kind == 0)
            vk.m = held, weft_mutex_lock(held, -1);
        weft_task *t = test_spawn_running(blocked_victim, &vk);
        weft_sleep_ms(20);
        cr_assert_eq(weft_cancel(t), 0);
        void *r;
        cr_assert_eq(weft_join(t, &r), -ECANCELED, "kind %d", kind);
        cr_assert_eq((intptr_t)r, -ECANCELED, "kind %d returned %ld", kind, (long)(intptr_t)r);
    }
    cr_assert_eq(atomic_load(&cleanup), 5);
    /* The withdrawn waiters left no trace: the objects still work. */
    cr_assert_eq(weft_mutex_unlock(held), 0);
    cr_assert_eq(weft_mutex_lock(held, 0), 0);
    cr_assert_eq(weft_sem_release(v.s, 1), 0);
    cr_assert_eq(weft_sem_value(v.s), 1);
    cr_assert_eq(weft_cond_signal(v.c), 0);
    weft_mutex_unlock(held);
    weft_mutex_free(held);
    weft_mutex_free(v.m);
    weft_cond_free(v.c);
    weft_sem_free(v.s);
    weft_event_free(v.e);
    weft_wg_free(v.wg);
    return NULL;
}

Test(sync, cancellation_at_every_wait, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, cancel_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* A mutex handed over at the moment of cancellation is not lost: the
 * victim either got it (and unlocks it) or withdrew. */
static void *grab_then_release(void *arg)
{
    int rc = weft_mutex_lock(arg, -1);
    if (rc == 0)
        weft_mutex_unlock(arg);
    return (void *)(intptr_t)rc;
}

static void *handoff_race_root(void *arg)
{
    (void)arg;
    weft_mutex *m = weft_mutex_new();
    int rounds = test_scale_down() ? 200 : 1000;
    for (int i = 0; i < rounds; i++) {
        cr_assert_eq(weft_mutex_lock(m, -1), 0);
        weft_task *t = weft_spawn(grab_then_release, m);
        if (i % 2)
            weft_yield();
        weft_cancel(t);
        weft_mutex_unlock(m);
        weft_join(t, NULL);
        cr_assert_eq(weft_mutex_lock(m, 1000), 0, "round %d: the mutex was lost", i);
        weft_mutex_unlock(m);
    }
    weft_mutex_free(m);
    return NULL;
}

Test(sync_mutex, cancel_racing_hand_off_loses_nothing, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, handoff_race_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}
