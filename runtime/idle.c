/*
 * Idle protocol (no lost wake-ups)
 *
 * rt->idle packs `unparked` (workers not asleep) and `searching` (workers
 * looking for work in others' queues). At most half the workers search at a
 * time. Sleepers are listed in rt->sleepers under rt->idle_lock.
 *
 *  Producer into the global queue (outside threads, overflow): publish the
 *  task (the bitmask RMW), then a seq_cst fence, then load rt->idle. If
 *  nobody searches and somebody sleeps, take the lock, pop one sleeper, count
 *  it as unparked and searching, and write its eventfd.
 *
 *  Producer into its own local queue (spawn, wake from a task): no fence,
 *  a plain load of rt->idle first. Liveness does not depend on it, because
 *  the producing worker is awake and will run the task itself; waking a
 *  peer only adds parallelism, so a rare missed wake costs throughput for a
 *  moment, never a task. A yielding task wakes nobody. Pinned tasks woken
 *  elsewhere go to their worker's inbox, whose push always writes that
 *  worker's eventfd.
 *
 *  Producer into its own local queue from its own poll (the descriptor
 *  events and due timers of weft__poll_events / weft__poll_timers, also the
 *  poll inside park; w->polling is set meanwhile): no wake per task. After
 *  the poll (in park, after the second half, so that it never picks
 *  itself), and only if somebody sleeps and nobody searches: one
 *  weft__notify_parked if the local queue holds at least POLL_WAKE_BACKLOG
 *  (16) tasks, or at least one while rt->watcher is 0; with 2-15 queued,
 *  the worker notes a deadline 50 us ahead (w->wake_due) and, at its next
 *  switches, wakes a peer if the queue is still not empty then
 *  (scheduler.h, poll_backlog_wake and poll_deferred_wake). Liveness as
 *  above: the polling worker is awake and runs them. The stuck-worker rescue needs one more thing,
 *  which the eager wake used to give for free: while any worker is awake, a
 *  sleeper watches (wakes every RESCUE_AFTER_MS). A worker that woke by
 *  itself (its own events or timers) while nobody watched therefore still
 *  wakes a peer, which goes back to sleep as the watcher. (Since
 *  2026-12-04, issue 19; before, every readied task made the same call as a
 *  spawn, so each small batch woke a peer that mostly found nothing.)
 *  Events rescued from a stuck peer (rescue.c) are not a poll of one's own:
 *  they take the eager path.
 *
 *  Worker going to sleep: under the lock, leave the searching count (if it
 *  was searching), leave the unparked count and push itself on the sleepers
 *  (the RMW on rt->idle is seq_cst). If it was the last searcher, or if
 *  nobody searches once it has left (always so for a single worker, which
 *  never searches), it then looks once more at every queue and, if any holds
 *  work, wakes a sleeper itself (possibly itself).
 *
 *  Why nothing is lost: a producer that saw searching > 0 skipped the wake;
 *  in the seq_cst order its publish precedes that load, which precedes the
 *  last searcher's decrement, which precedes the searcher's final look; so
 *  the final look sees the task. A producer that saw searching == 0 and
 *  unparked < workers wakes somebody. A producer that saw unparked ==
 *  workers (all awake) relies on them: each of them passes through the same
 *  sleep sequence before sleeping, and the last searcher among them rechecks;
 *  with no searcher at all, whoever goes to sleep rechecks. (Before
 *  2026-12-04 only the last searcher did, and a single worker lost a task
 *  spawned from another thread in that window; tests/test_sched.c's
 *  single_worker_never_sleeps_on_a_queued_task.)
 *  A worker that is refused searching (half already search) parks without
 *  searching; one of the searchers is then the last one and rechecks.
 *  The eventfd counter stays set until read, so a wake sent between the
 *  decision to sleep and epoll_wait is not lost either.
 *  A worker with nothing to steal goes into this protocol without an
 *  epoll_wait(0) first (sched.c's worker_loop, since 2026-12-04): the poll
 *  in park returns at once with whatever is ready.
 *
 * This file holds the protocol's steps: waking a sleeper (weft__notify_parked,
 * and notify_parked_local in scheduler.h), entering and leaving the searching
 * count, and the two halves of going to sleep (the sleep itself, in the
 * worker's poller, is sched.c's park, between them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

void weft__notify_parked(weft_runtime *rt)
{
    weft__fence();
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_seq_cst);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers)
        return;
    pthread_mutex_lock(&rt->idle_lock);
    s = atomic_load_explicit(&rt->idle, memory_order_seq_cst);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers || rt->nsleepers == 0) {
        pthread_mutex_unlock(&rt->idle_lock);
        return;
    }
    weft__worker *v = rt->workers[rt->sleepers[--rt->nsleepers]];
    WEFT__ASSERT(v->sleeping); /* on rt->sleepers exactly while sleeping (idle_lock) */
    v->sleeping = 0;
    v->woken_to_search = 1;
    atomic_fetch_add_explicit(&rt->idle, IDLE_ONE_UNPARKED + 1, memory_order_seq_cst);
    /* unparked only changes under idle_lock: awake workers plus sleepers = all. */
    WEFT__ASSERT(idle_unparked(atomic_load_explicit(&rt->idle, memory_order_relaxed)) + rt->nsleepers ==
                 rt->nworkers);
    pthread_mutex_unlock(&rt->idle_lock);
    weft__poller_wake(&v->poller);
}

void weft__wake_sleepers(weft_runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++)
        weft__poller_wake(&rt->workers[i]->poller);
}

int weft__to_searching(weft__worker *w)
{
    if (w->searching)
        return 1;
    weft_runtime *rt = w->rt;
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_seq_cst);
    if (2 * idle_searching(s) >= rt->nworkers)
        return 0;
    atomic_fetch_add_explicit(&rt->idle, 1, memory_order_seq_cst);
    w->searching = 1;
    return 1;
}

/* Found work while searching: the last searcher to stop wakes another, so
 * that a burst of work ramps up one worker at a time. */
void weft__from_searching(weft__worker *w)
{
    if (!w->searching)
        return;
    w->searching = 0;
    uint64_t prev = atomic_fetch_sub_explicit(&w->rt->idle, 1, memory_order_seq_cst);
    WEFT__ASSERT(idle_searching(prev) >= 1); /* we were counted */
    if (idle_searching(prev) == 1)
        weft__notify_parked(w->rt);
}

static int work_anywhere(weft_runtime *rt)
{
    if (!weft__inject_empty(&rt->inject))
        return 1;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (!weft__lq_empty(&rt->workers[i]->lq))
            return 1;
    return 0;
}

/* Going to sleep, first half (the protocol at the top of this file): leave
 * the searching and unparked counts and join the sleepers; the last searcher
 * then looks once more for work anywhere. */
void weft__idle_enter(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    /* Idle: the moment to give back the memory of stacks a burst left in the
     * pool, before registering as a sleeper (a wake-up is not held up). */
    weft__stack_pool_trim(&rt->stacks);
    pthread_mutex_lock(&rt->idle_lock);
    int last_searcher = 0;
    if (w->searching) {
        uint64_t prev = atomic_fetch_sub_explicit(&rt->idle, 1, memory_order_seq_cst);
        WEFT__ASSERT(idle_searching(prev) >= 1); /* we were counted */
        last_searcher = idle_searching(prev) == 1;
        w->searching = 0;
    }
    WEFT__ASSERT(!w->sleeping && rt->nsleepers < rt->nworkers);
    atomic_fetch_sub_explicit(&rt->idle, IDLE_ONE_UNPARKED, memory_order_seq_cst);
    rt->sleepers[rt->nsleepers++] = w->index;
    WEFT__ASSERT(idle_unparked(atomic_load_explicit(&rt->idle, memory_order_relaxed)) + rt->nsleepers ==
                 rt->nworkers);
    w->sleeping = 1;
    w->woken_to_search = 0;
    /* Nobody searching now: a producer that saw this worker still unparked
     * skipped the wake-up, counting on an awake worker to find its task,
     * and no searcher will. That is the last searcher's case, and always a
     * single worker's, which never searches (nobody to steal from): a task
     * pushed from another thread between its last look at the queues and
     * here was otherwise left queued while it slept in epoll_wait(-1). */
    int nobody_searching =
        idle_searching(atomic_load_explicit(&rt->idle, memory_order_seq_cst)) == 0;
    pthread_mutex_unlock(&rt->idle_lock);

    if (last_searcher || nobody_searching) {
        weft__fence();
        if (work_anywhere(rt))
            weft__notify_parked(rt);
    }
}

/* Going to sleep, second half, once the poll has returned: leave the
 * sleepers if no producer took us off them, or take up the searching the
 * producer that woke us counted us for. */
void weft__idle_leave(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    pthread_mutex_lock(&rt->idle_lock);
    if (w->sleeping) {
        /* Woken by our own I/O or a timer, not by a producer: leave the
         * sleepers list ourselves. */
        for (unsigned i = 0; i < rt->nsleepers; i++)
            if (rt->sleepers[i] == w->index) {
                rt->sleepers[i] = rt->sleepers[--rt->nsleepers];
                break;
            }
        w->sleeping = 0;
        atomic_fetch_add_explicit(&rt->idle, IDLE_ONE_UNPARKED, memory_order_seq_cst);
        WEFT__ASSERT(idle_unparked(atomic_load_explicit(&rt->idle, memory_order_relaxed)) + rt->nsleepers ==
                     rt->nworkers);
    } else if (w->woken_to_search) {
        w->searching = 1; /* the producer counted us as searching */
        w->woken_to_search = 0;
    }
    pthread_mutex_unlock(&rt->idle_lock);
}
