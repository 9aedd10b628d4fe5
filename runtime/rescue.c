/*
 * Polling a worker's timer wheel and poller: by the worker itself
 * (weft__poll_timers, weft__poll_events, from the loop and from park in
 * sched.c), and by a peer when the worker is stuck (weft__rescue_stuck_peers).
 * What fires is queued on the polling worker (weft__wake_cb, task.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <stdio.h>

/* Debug mode's long-slice check (Go's sysmon, asyncio's slow-callback
 * warning): x has not polled for RESCUE_AFTER_MS, so it is in a long task or
 * in a blocking call; the caller holds x's poll_busy, which makes the obs_*
 * fields its own. The run count (stats.tasks_run, a relaxed atomic) tells
 * one slice from the next without a clock read per switch: the same count
 * on two passes `threshold` ms apart is one slice at least that long. One
 * warning per slice (the episode). The running task and its fields are read
 * as snapshots (weft__peek_word: the owner stores them plainly, and the
 * block may be reused meanwhile), between two reads of the count: a count
 * that moved means the snapshot may mix two tasks, and it is dropped. */
static void check_long_slice(weft__worker *x, uint64_t now, uint32_t threshold)
{
    uint64_t r1 = atomic_load_explicit(&x->stats.tasks_run, memory_order_acquire);
    weft__task *cur = (weft__task *)(uintptr_t)weft__peek_word(&x->current);
    if (!cur || r1 == 0)
        return;
    /* Blocks are never freed while the runtime lives. */
    uint64_t id = weft__peek_word(&cur->id);
    const void *site = (const void *)(uintptr_t)weft__peek_word(&cur->obs.site);
    const void *fn = (const void *)(uintptr_t)weft__peek_word(&cur->fn);
    weft__fence(); /* orders the snapshot before the second read (a full fence: TSan has no acquire fence) */
    if (atomic_load_explicit(&x->stats.tasks_run, memory_order_relaxed) != r1)
        return;
    if (r1 != x->obs_runs) {
        x->obs_runs = r1;
        x->obs_tick = now;
        return;
    }
    if (x->obs_warned == r1 || now - x->obs_tick < threshold)
        return;
    x->obs_warned = r1;
    char fs[160], ss[160];
    weft__symbolize(fn, fs, sizeof fs);
    weft__symbolize(site ? (const char *)site - 1 : NULL, ss, sizeof ss);
    fprintf(stderr,
            "weft: debug: task %llu (%s, spawned at %s) has run on worker %u for at least %llu ms "
            "without suspending (threshold %u ms; at %.3f s since the runtime started)\n",
            (unsigned long long)id, fs, ss, x->index, (unsigned long long)(now - x->obs_tick), threshold,
            (double)now / 1000.0);
}

void weft__check_long_slices(weft_runtime *rt)
{
    uint32_t dbg = atomic_load_explicit(&rt->debug_ms, memory_order_relaxed);
    if (!dbg)
        return;
    uint64_t now = weft__now_tick(rt, weft__clock_ns());
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *x = rt->workers[i];
        if (now < atomic_load_explicit(&x->polled_tick, memory_order_relaxed) + RESCUE_AFTER_MS)
            continue;
        /* Only tried, as a peer does: a worker polling or asleep in its
         * poller holds it and is not in a long slice. */
        if (atomic_load_explicit(&x->poll_busy, memory_order_relaxed) ||
            atomic_exchange_explicit(&x->poll_busy, 1, memory_order_acquire))
            continue;
        check_long_slice(x, now, dbg);
        weft__poll_unlock(x);
    }
}

/* Room left in the local queue: what a poll may wake without spilling. */
static inline unsigned lq_room(weft__worker *w)
{
    WEFT__ASSERT(weft__lq_len(&w->lq) <= WEFT_LQ_SIZE);
    return WEFT_LQ_SIZE - weft__lq_len(&w->lq);
}

/* The poll lock is held by the caller. */
static void poll_timers_locked(weft__worker *w)
{
    w->now_tick = weft__now_tick(w->rt, weft__clock_ns());
    w->polling = 1;
    weft__wheel_poll(&w->wheel, w->now_tick, lq_room(w), weft__wake_cb, NULL);
    w->polling = 0;
    atomic_store_explicit(&w->polled_tick, w->now_tick, memory_order_relaxed);
}

void weft__poll_timers(weft__worker *w)
{
    weft__poll_lock(w);
    poll_timers_locked(w);
    weft__poll_unlock(w);
}

/* Descriptors, then timers. The poll lock is held across a blocking
 * epoll_wait too: a sleeping worker is not stuck, and only its own thread
 * arms timers on its wheel. */
void weft__poll_events(weft__worker *w, int timeout_ms)
{
    weft__fired fired[WEFT__POLL_MAX];
    stat_inc(&w->stats.polls, 1);
    weft__poll_lock(w);
    int n = weft__poller_poll(&w->poller, timeout_ms, (int)lq_room(w), fired);
    w->polling = 1;
    weft__fd_fired(&w->poller, fired, n, weft__wake_cb, NULL);
    w->polling = 0;
    poll_timers_locked(w);
    weft__poll_unlock(w);
}

/* A worker stuck in a long task (a CPU loop, a blocking call) polls neither
 * its timers nor its descriptors, and its peers cannot steal either: tasks
 * sleeping on its wheel or waiting on descriptors registered with its
 * poller would wait for the end of that task, even with the other workers
 * idle; and a busy peer never steals the tasks queued behind it. So a
 * worker that passes by (each maintenance pass, and before it sleeps)
 * rescues any peer that has not polled for RESCUE_AFTER_MS, as Go's sysmon
 * retakes a stuck P: it fires the peer's due timers, in deadline order,
 * takes its descriptor events (not its wake-ups, which stay for it), and
 * steals half of its queue. The tasks land in this worker's run queue, as
 * many as it has room for. The peer's poll lock is only tried: a peer
 * polling, sleeping in its poller or arming a timer right now is not
 * stuck. */
void weft__rescue_stuck_peers(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    uint64_t now = w->now_tick;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *x = rt->workers[i];
        if (x == w || now < atomic_load_explicit(&x->polled_tick, memory_order_relaxed) + RESCUE_AFTER_MS)
            continue;
        if (atomic_load_explicit(&x->poll_busy, memory_order_relaxed) ||
            atomic_exchange_explicit(&x->poll_busy, 1, memory_order_acquire))
            continue;
        uint32_t dbg = atomic_load_explicit(&rt->debug_ms, memory_order_relaxed);
        if (weft__unlikely(dbg != 0))
            check_long_slice(x, now, dbg);
        unsigned n = 0, room = lq_room(w);
        if (room) {
            weft__fired fired[WEFT__POLL_MAX];
            int ev = weft__poller_poll_events(&x->poller, (int)room, fired);
            weft__fd_fired(&x->poller, fired, ev, weft__wake_cb, NULL);
            if (ev > 0)
                stat_inc(&w->stats.events_rescued, (uint64_t)ev);
            room = lq_room(w);
        }
        if (room && x->wheel.count)
            n = weft__wheel_poll(&x->wheel, now, room, weft__wake_cb, NULL);
        weft__poll_unlock(x);
        if (n)
            stat_inc(&w->stats.timers_rescued, n);
        /* The tasks queued behind the stuck one: half of them, as an idle
         * worker would steal, but also when this worker is busy (an idle one
         * steals anyway). The LIFO slot stays: it is the owner's alone. */
        unsigned moved = 0;
        weft__task *t = weft__lq_steal(&x->lq, &w->lq, &moved);
        if (t) {
            push_local(w, t);
            stat_inc(&w->stats.steals, 1);
            stat_inc(&w->stats.tasks_stolen, moved);
        }
    }
}
