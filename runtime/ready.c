/*
 * Making a task runnable: where a woken or spawned task goes (the LIFO slot
 * and the local queue of the worker that runs its waker, its own worker's
 * list or inbox when it is pinned, the global queue from outside the
 * runtime), and whether a sleeping worker is woken for it (idle.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

static void inbox_push(weft__worker *owner, weft__task *t)
{
    pthread_mutex_lock(&owner->inbox_lock);
    t->next = NULL;
    if (owner->inbox_tail)
        owner->inbox_tail->next = t;
    else
        owner->inbox_head = t;
    owner->inbox_tail = t;
    atomic_fetch_add_explicit(&owner->inbox_n, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&owner->inbox_lock);
    weft__poller_wake(&owner->poller);
}

/* A sampled schedule (metrics): t becomes this worker's probe, replacing
 * one that ran elsewhere or not yet. */
__attribute__((noinline)) void weft__probe_set(weft__worker *w, weft__task *t)
{
    w->probe_left = WEFT__SAMPLE_EVERY;
    w->probe = t;
    w->probe_ns = weft__clock_ns();
}

void weft__schedule(weft_runtime *rt, weft__task *t)
{
    WEFT__ASSERT(t->stack_cls != WEFT_EXTERNAL_CLS); /* blocking-pool jobs never queue */
    weft__worker *w = weft__cur_worker();
    if (w && w->rt != rt)
        w = NULL;
    /* Schedule latency (metrics): one schedule in WEFT__SAMPLE_EVERY on
     * this worker makes t its probe; mark_running (sched.c) closes it. */
    if (w && weft__unlikely(--w->probe_left == 0))
        weft__probe_set(w, t);
    if (weft__unlikely(t->pinned)) {
        if (w == t->worker)
            pinned_push(w, t);
        else
            inbox_push(t->worker, t);
        return;
    }
    if (!w) {
        /* Outside this runtime: the global queue, sharded by thread. */
        unsigned hint = (unsigned)((uintptr_t)pthread_self() >> 12);
        weft__inject_push(&rt->inject, hint * 2654435761u >> 7, t);
        weft__notify_parked(rt);
        return;
    }
    if (w->current) {
        /* Woken or spawned by the running task: it runs next here (a message
         * hand-off or a spawn chain stays on this core, warm in its cache).
         * The previous occupant moves to the queue, where peers can steal
         * it; only then is a sleeping peer worth waking. */
        weft__task *prev = w->lifo;
        w->lifo = t;
        if (!prev)
            return;
        t = prev;
    }
    push_local(w, t);
    notify_parked_local(rt);
}
