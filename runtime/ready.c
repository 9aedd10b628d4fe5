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

/* A sampled schedule (metrics): t becomes a latency probe. Its queue time
 * goes on its cold line; a task that has run before lends its stack to
 * obs.probe_stack, so that the scheduler's existing check for a task
 * without a stack (first_run, sched.c) is where its run is noticed, and
 * the direct switch pays nothing. Safe: t is queued by nobody but us yet,
 * and the push below publishes these stores to whoever pops it. */
static __attribute__((noinline)) void latency_probe(weft__worker *w, weft__task *t)
{
    w->latency_left = WEFT__LATENCY_EVERY;
    WEFT__ASSERT(t->obs.ready_ns == 0 && t->obs.probe_stack == NULL); /* queued once: not a probe yet */
    int64_t now = weft__clock_ns();
    t->obs.ready_ns = now > 0 ? now : 1;
    if (t->stack) {
        t->obs.probe_stack = t->stack;
        t->stack = NULL;
    }
}

void weft__schedule(weft_runtime *rt, weft__task *t)
{
    WEFT__ASSERT(t->stack_cls != WEFT_EXTERNAL_CLS); /* blocking-pool jobs never queue */
    weft__worker *w = weft__cur_worker();
    if (w && w->rt != rt)
        w = NULL;
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
    if (weft__unlikely(--w->latency_left == 0))
        latency_probe(w, t);
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
    notify_parked_local_unless_polling(rt, w);
}
