/*
 * What the scheduler's files share among themselves; the services above
 * include internal.h only.
 *
 * The scheduler's files, bottom first. Each calls only the files before it
 * (and the layers below the scheduler); what a lower file needs from a
 * higher one it gets as a callback or takes back as a return value:
 *   tls.c      thread-local accessors (the current worker, errno)
 *   clock.c    the monotonic clock and a runtime's ticks
 *   queue.c    the local ring and the global queue (queue.h)
 *   idle.c     the idle protocol: sleepers, searching, who wakes whom
 *   ready.c    weft__schedule: where a runnable task goes
 *   task.c     task lifetime: control blocks, spawn, exit, cancel; wakes
 *   rescue.c   polling a worker's timers and poller, and rescuing a stuck one
 *   sched.c    the worker: picking, fairness, switching, the loop, parking
 *   suspend.c  the waiting side of tasks: park, waiters' waits, join, yield
 *   runtime.c  a runtime's life (new, free, block_on) and statistics
 */
#ifndef WEFT_SCHEDULER_H
#define WEFT_SCHEDULER_H

#include "internal.h"

static inline void stat_inc(_Atomic uint64_t *c, uint64_t n)
{
    /* Owner-only counters: a relaxed load and store, no locked instruction. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* ------------------------------------------------------------ queues */

static inline void pinned_push(weft__worker *w, weft__task *t)
{
    t->next = NULL;
    if (w->pinned_tail)
        w->pinned_tail->next = t;
    else
        w->pinned_head = t;
    w->pinned_tail = t;
}

/* noinline: sched.c's compiler left it out of line at its five call sites;
 * noinline keeps it so in every file that now shares it (same code). */
static __attribute__((unused, noinline)) void push_local(weft__worker *w, weft__task *t)
{
    weft__batch overflow;
    if (weft__unlikely(weft__lq_push(&w->lq, t, &overflow))) {
        weft__inject_push_batch(&w->rt->inject, w->index, &overflow);
        stat_inc(&w->stats.overflows, 1);
    }
}

/* ---- idle.c */

static inline unsigned idle_searching(uint64_t s) { return (unsigned)(s & 0xffffffffu); }
static inline unsigned idle_unparked(uint64_t s) { return (unsigned)(s >> 32); }
#define IDLE_ONE_UNPARKED ((uint64_t)1 << 32)

/* Wakes a sleeping worker to search, unless one searches already or all
 * are awake (the producer's side of the protocol at the top of idle.c). */
void weft__notify_parked(weft_runtime *rt);

/* After a push to this worker's own queue. Such a task is never lost if
 * nobody is woken (this worker is awake and will run it), so waking a peer is
 * only for parallelism, and the common case, where every worker is already
 * up or one is searching, is answered with a plain load and no fence. */
static inline void notify_parked_local(weft_runtime *rt)
{
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_relaxed);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers)
        return;
    weft__notify_parked(rt);
}

/* The same, skipped while w dispatches what its own poll found (see
 * POLL_WAKE_BACKLOG below); tested last, so the common case (every worker
 * up, or one searching) costs what it did. */
static inline void notify_parked_local_unless_polling(weft_runtime *rt, const weft__worker *w)
{
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_relaxed);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers || w->polling)
        return;
    weft__notify_parked(rt);
}

/* What a worker's own poll readies (descriptor events, due timers) is
 * queued without waking anybody, task by task (w->polling, ready.c). Once
 * the poll is over, one sleeping peer is woken at once if the queue holds at
 * least POLL_WAKE_BACKLOG tasks; a smaller batch of two or more wakes one
 * only if some of it is still queued POLL_WAKE_DELAY_NS later (checked at
 * the next switches, poll_deferred_wake). Waking a peer costs ~60 us round
 * trip on the reference machine (machine.md): a batch that this worker
 * drains sooner than a peer could arrive runs here, next to its poller
 * (events for those descriptors keep arriving here), while a batch of
 * longer tasks still gets the peer after the delay, whatever its size.
 * Liveness does not depend on the wake (this worker is awake and runs the
 * tasks itself). But a task queued behind one that runs long, and the
 * events still to come to this poller, are reached only by the stuck-worker
 * rescue (rescue.c), which needs a sleeping watcher (sched.c's park), and a
 * peer that went to sleep while nobody was awake watches nothing. So while
 * nobody watches, any task readied wakes a peer at once, as before; the peer
 * goes back to sleep as the watcher (this worker is awake), which it stays
 * for RESCUE_AFTER_MS. */
#define POLL_WAKE_BACKLOG 16
#define POLL_WAKE_DELAY_NS 50000
static inline void poll_backlog_wake(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_relaxed);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers)
        return; /* nobody to wake (always so for a single worker) */
    unsigned n = weft__lq_len(&w->lq);
    if (n >= POLL_WAKE_BACKLOG ||
        (n >= 1 && !atomic_load_explicit(&rt->watcher, memory_order_relaxed))) {
        w->wake_due = 0;
        weft__notify_parked(rt);
    } else if (n >= 2 && w->wake_due == 0) {
        w->wake_due = weft__clock_ns() + POLL_WAKE_DELAY_NS;
    }
}

/* The deferred half of poll_backlog_wake, at a switch while w->wake_due is
 * set: wakes a peer once the delay has passed with tasks still queued;
 * forgets it when the queue has drained first. */
static __attribute__((unused, noinline)) void poll_deferred_wake(weft__worker *w)
{
    if (weft__lq_len(&w->lq) == 0) {
        w->wake_due = 0;
    } else if (weft__clock_ns() >= w->wake_due) {
        w->wake_due = 0;
        notify_parked_local(w->rt);
    }
}

/* Counts w as searching unless half the workers search already (0 then). */
int weft__to_searching(weft__worker *w);
void weft__from_searching(weft__worker *w);
/* The two halves of going to sleep, around the sleeping poll (sched.c's park). */
void weft__idle_enter(weft__worker *w);
void weft__idle_leave(weft__worker *w);

/* ---- rescue.c */

/* A peer that has not polled for this long is stuck (see rescue.c). */
#define RESCUE_AFTER_MS 10
void weft__poll_timers(weft__worker *w);
void weft__poll_events(weft__worker *w, int timeout_ms);
void weft__rescue_stuck_peers(weft__worker *w);

/* ---- task.c */


/* ---- sched.c */

/* A worker thread's body (pthread_create's start routine). */
void *weft__worker_main(void *arg);

/* ---- tls.c */

void weft__set_cur_worker(weft__worker *w);
/* Installs the overflow handler with the report of the current task. */
void weft__overflow_report_install(void);

#endif
