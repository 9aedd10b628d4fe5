/*
 * Task groups (structured concurrency) and gathering tasks (join_timeout,
 * join_all, join_any).
 *
 * A group keeps one record per child that has not been collected yet. The
 * child runs a wrapper that claims its record (state 0 -> 1) before it runs
 * the user's function; cancelling the group claims records of children that
 * have not started (0 -> 3) and completes them itself, so a child that is
 * cancelled before it ever runs (and so never runs the wrapper) is still
 * reported. Completions go on a FIFO that next() pops; every completion
 * wakes the group's waiters, which re-check. The group holds every child's
 * handle until it is collected; collecting joins the handle (the child has
 * finished its function by then, so the join is short and not cancellable).
 *
 * Waiting for a task without consuming its handle installs a waiter in the
 * task's join word exactly as weft_join does, with the wait layer's join
 * helpers (wait.h), and withdraws it back to JOIN_OPEN; if the task took the
 * waiter first, its finish is imminent and we wait for the fire.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <time.h>

/* ------------------------------------------------------------ groups */

enum { C_NEW = 0, C_RUNNING = 1, C_FINISHED = 2, C_SKIPPED = 3 };

typedef struct gchild {
    struct weft_group *g;
    weft_fn fn;
    void *arg;
    weft_task *task;
    void *result;
    int id;
    _Atomic int state;
    struct gchild *prev, *next; /* uncollected children */
    struct gchild *done_next;   /* completion FIFO */
} gchild;

struct weft_group {
    pthread_mutex_t lk;
    int flags;
    int cancelled;
    int next_id;
    int failures;
    size_t running;             /* children whose function has not returned */
    gchild *live;               /* uncollected */
    gchild *done_head, *done_tail;
    weft__wqueue waiters;       /* woken at every completion */
};

/* Under g->lk. */
static void wake_all(weft_group *g)
{
    while (g->waiters.head)
        weft__wq_fire(&g->waiters, g->waiters.head, 0);
}

/* Under g->lk: waits for the next completion (lk released meanwhile).
 * 0, -ETIMEDOUT, -ECANCELED. */
static int group_block(weft_group *g, weft__deadline deadline)
{
    int rc = weft__may_wait(deadline);
    if (rc < 0)
        return rc;
    weft__wnode n;
    weft__wnode_init(&n);
    weft__wait_note(n.w.task, WEFT__WAIT_GROUP, (uint64_t)(uintptr_t)g, 0);
    weft__wq_push(&g->waiters, &n);
    return weft__wq_block(&g->waiters, &n, &g->lk, deadline);
}

/* Under g->lk: c's function has returned (or c will never run). */
static void complete_locked(weft_group *g, gchild *c)
{
    c->done_next = NULL;
    if (g->done_tail)
        g->done_tail->done_next = c;
    else
        g->done_head = c;
    g->done_tail = c;
    g->running--;
    wake_all(g);
}

/* Under g->lk. */
static void cancel_locked(weft_group *g)
{
    g->cancelled = 1;
    for (gchild *c = g->live; c; c = c->next) {
        int st = C_NEW;
        if (atomic_compare_exchange_strong(&c->state, &st, C_SKIPPED)) {
            c->result = NULL;
            weft_cancel(c->task); /* so it does not run at all */
            complete_locked(g, c);
        } else if (st == C_RUNNING) {
            weft_cancel(c->task);
        }
    }
}

static void *child_main(void *arg)
{
    gchild *c = arg;
    int st = C_NEW;
    if (!atomic_compare_exchange_strong(&c->state, &st, C_RUNNING))
        return NULL; /* the group was cancelled before we started */
    void *r = c->fn(c->arg);
    weft_group *g = c->g;
    pthread_mutex_lock(&g->lk);
    c->result = r;
    atomic_store(&c->state, C_FINISHED);
    complete_locked(g, c);
    if (r == WEFT_GROUP_FAILED) {
        g->failures++;
        if (g->flags & WEFT_GROUP_FAIL_FAST)
            cancel_locked(g);
    }
    pthread_mutex_unlock(&g->lk);
    /* From here on c and g may be gone: the collector joins our handle. */
    return r;
}

weft_group *weft_group_new(int flags)
{
    if (flags & ~WEFT_GROUP_FAIL_FAST) {
        errno = EINVAL;
        return NULL;
    }
    weft_group *g = weft__calloc(1, sizeof *g);
    if (!g) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&g->lk);
    g->flags = flags;
    return g;
}

int weft_group_spawn(weft_group *g, weft_fn fn, void *arg)
{
    if (!g || !fn)
        return -EINVAL;
    if (!weft__cur_task())
        return -EPERM;
    gchild *c = weft__calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->g = g;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&g->lk);
    if (g->cancelled) {
        pthread_mutex_unlock(&g->lk);
        weft__free(c);
        return -ECANCELED;
    }
    /* Spawned under the lock so that c->task is set before anyone (the
     * child itself, a canceller) can look at it. The spawn never waits. It
     * takes the stack at once: a child dropped at its first run for want
     * of one would never run child_main, and its record would stay
     * unfinished, so wait, next and free would wait for it forever. */
    weft__task *t = weft__spawn_with_stack(child_main, c);
    if (!t) {
        int e = errno;
        pthread_mutex_unlock(&g->lk);
        weft__free(c);
        return -e;
    }
    c->task = weft__handle(t); /* the public calls below check its generation */
    c->id = g->next_id++;
    c->prev = NULL;
    c->next = g->live;
    if (g->live)
        g->live->prev = c;
    g->live = c;
    g->running++;
    pthread_mutex_unlock(&g->lk);
    return c->id;
}

int weft_group_wait(weft_group *g, int64_t timeout_ms)
{
    if (!g)
        return -EINVAL;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&g->lk);
    while (g->running > 0 && rc == 0)
        rc = group_block(g, deadline);
    if (rc == 0 && g->failures)
        rc = -ECHILD;
    pthread_mutex_unlock(&g->lk);
    return rc;
}

int weft_group_next(weft_group *g, void **result, int64_t timeout_ms)
{
    if (!g)
        return -EINVAL;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&g->lk);
    for (;;) {
        gchild *c = g->done_head;
        if (c) {
            g->done_head = c->done_next;
            if (!g->done_head)
                g->done_tail = NULL;
            if (c->prev)
                c->prev->next = c->next;
            else
                g->live = c->next;
            if (c->next)
                c->next->prev = c->prev;
            pthread_mutex_unlock(&g->lk);
            /* The child's function has returned; its task is exiting. */
            weft__task *sh = weft__shield_hold(weft__cur_task());
            weft_join(c->task, NULL);
            weft__shield_release(sh);
            if (result)
                *result = c->result;
            int id = c->id;
            weft__free(c);
            return id;
        }
        if (!g->live) {
            pthread_mutex_unlock(&g->lk);
            return -ENOENT;
        }
        int rc = group_block(g, deadline);
        if (rc < 0) {
            pthread_mutex_unlock(&g->lk);
            return rc;
        }
    }
}

int weft_group_cancel(weft_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->lk);
    cancel_locked(g);
    pthread_mutex_unlock(&g->lk);
    return 0;
}

void weft_group_free(weft_group *g)
{
    if (!g)
        return;
    weft_group_cancel(g);
    weft__task *sh = weft__shield_hold(weft__cur_task());
    while (weft_group_next(g, NULL, -1) >= 0)
        ;
    weft__shield_release(sh);
    pthread_mutex_destroy(&g->lk);
    weft__free(g);
}

/* ------------------------------------------------------------ gathering */

static int task_done(weft__task *t)
{
    uintptr_t j = atomic_load_explicit(&t->join, memory_order_acquire);
    return j == JOIN_DONE || j == JOIN_DISCARDED;
}

/* Waits until t has finished without consuming the handle. 0, -ETIMEDOUT,
 * -ECANCELED (the caller was cancelled), -EBUSY (someone else waits on t),
 * -ENOMEM. */
static int task_wait_done(weft__task *t, weft__deadline deadline)
{
    uintptr_t j = atomic_load_explicit(&t->join, memory_order_acquire);
    if (j == JOIN_DONE || j == JOIN_DISCARDED)
        return 0;
    if (j != JOIN_OPEN)
        return -EBUSY;
    if (weft__cur_task() == t)
        return -EDEADLK;
    int rc = weft__may_wait(deadline);
    if (rc < 0)
        return rc;
    weft__waiter wt;
    weft__waiter_init(&wt);
    weft__wait_note(wt.task, WEFT__WAIT_JOIN, t->id, t->stack_cls == WEFT_EXTERNAL_CLS);
    if (!weft__join_install(t, &wt, &j))
        return j > JOIN_DISCARDED ? -EBUSY : 0;
    /* Withdrawn on an error: the handle is as it was. */
    return weft__join_wait(t, &wt, deadline);
}

int weft_join_timeout(weft_task *h, void **result, int64_t timeout_ms)
{
    if (!h)
        return -EINVAL;
    weft__task *t = weft__handle_get(h, "weft_join_timeout");
    if (timeout_ms == -1)
        return weft__join(t, result);
    int rc = task_wait_done(t, weft__deadline_from_ms(timeout_ms));
    if (rc < 0)
        return rc;
    return weft__join(t, result);
}

int weft_join_all(weft_task **ts, int n, void **results, int64_t timeout_ms)
{
    if (!ts || n < 0)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!ts[i])
            return -EINVAL;
    for (int i = 0; i < n; i++) /* every handle, before any is released */
        weft__handle_get(ts[i], "weft_join_all");
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    for (int i = 0; i < n; i++) {
        int rc = task_wait_done(weft__handle_ptr(ts[i]), deadline);
        if (rc < 0)
            return rc;
    }
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (weft__join(weft__handle_ptr(ts[i]), &r) < 0) /* -ECANCELED, or -ENOMEM: it never ran */
            cancelled++;
        if (results)
            results[i] = r;
    }
    return cancelled;
}

static int join_any_thread(weft_task **ts, int n, weft__deadline deadline)
{
    for (;;) {
        for (int i = 0; i < n; i++)
            if (ts[i] && task_done(weft__handle_ptr(ts[i])))
                return i;
        int64_t now = weft__clock_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        int64_t nap = deadline - now < 1000000 ? deadline - now : 1000000;
        struct timespec ts_nap = {0, (long)nap};
        nanosleep(&ts_nap, NULL);
    }
}

static int join_any_task(weft__task *self, weft_task **ts, int n, weft__deadline deadline)
{
    weft__waiter stackw[16];
    weft__waiter *wts = n <= 16 ? stackw : weft__malloc((size_t)n * sizeof *wts);
    if (!wts)
        return -ENOMEM;
    weft__waiter_init(&wts[0]); /* one token for every waiter */
    weft__wait_note(self, WEFT__WAIT_JOIN, UINT64_MAX, (unsigned)(n > 255 ? 255 : n)); /* any of n */
    int installed = 0, winner = -1, rc = 0;
    for (int i = 0; i < n; i++) {
        wts[i].task = self;
        wts[i].token = wts[0].token;
        atomic_store_explicit(&wts[i].fired, 0, memory_order_relaxed);
        wts[i].result = 0;
    }
    for (int i = 0; i < n && winner < 0; i++) {
        if (!ts[i])
            continue;
        uintptr_t j;
        if (weft__join_install(weft__handle_ptr(ts[i]), &wts[i], &j)) {
            installed = i + 1;
        } else if (j == JOIN_DONE || j == JOIN_DISCARDED) {
            winner = i;
        } else {
            rc = -EBUSY;
            break;
        }
    }
    while (winner < 0 && rc == 0) {
        for (int i = 0; i < installed; i++)
            if (ts[i] && atomic_load_explicit(&wts[i].fired, memory_order_acquire)) {
                winner = i;
                break;
            }
        if (winner >= 0)
            break;
        if (weft__deadline_passed(deadline)) {
            rc = -ETIMEDOUT;
            break;
        }
        int pr = weft__park_until(self, wts[0].token, deadline);
        if (pr < 0)
            rc = pr;
    }
    /* Withdraw every waiter; one the task already took is honoured. */
    for (int i = 0; i < installed; i++) {
        if (!ts[i])
            continue;
        if (!weft__join_withdraw(weft__handle_ptr(ts[i]), &wts[i])) {
            weft__waiter_wait_nocancel(&wts[i]);
            if (winner < 0 || i < winner)
                winner = i;
        }
    }
    if (wts != stackw)
        weft__free(wts);
    return winner >= 0 ? winner : rc;
}

int weft_join_any(weft_task **ts, int n, void **result, int64_t timeout_ms)
{
    if (!ts || n < 1)
        return -EINVAL;
    int any = 0;
    for (int i = 0; i < n; i++)
        if (ts[i]) {
            weft__handle_get(ts[i], "weft_join_any");
            any = 1;
        }
    if (!any)
        return -EINVAL;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    weft__task *self = weft__cur_task();
    for (int i = 0; i < n; i++)
        if (ts[i] && weft__handle_ptr(ts[i]) == self)
            return -EDEADLK;
    int idx = -1;
    for (int i = 0; i < n && idx < 0; i++)
        if (ts[i] && task_done(weft__handle_ptr(ts[i])))
            idx = i;
    if (idx < 0) {
        if (self && weft__cancel_pending(self))
            return -ECANCELED;
        if (timeout_ms == 0)
            return -ETIMEDOUT;
        idx = self ? join_any_task(self, ts, n, deadline) : join_any_thread(ts, n, deadline);
        if (idx < 0)
            return idx;
    }
    weft__join(weft__handle_ptr(ts[idx]), result);
    return idx;
}
