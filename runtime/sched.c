/*
 * The scheduler: one worker thread per core, each with a local run queue, a
 * LIFO slot, a poller and a timer wheel; a sharded global queue; stealing.
 *
 * ---------------------------------------------------------------------------
 * Switching and the publish-after-switch rule
 *
 * A task that suspends must not be visible to another worker before its
 * registers are saved, or that worker could resume a half-saved context. So
 * the suspending task only records what it wants (`action`: yield, park,
 * exit) and who it is (`w->prev`), and switches away; whatever runs next on
 * that thread (the next task, directly, or the worker's scheduler loop) calls
 * weft__after_switch first, which queues, parks or finishes the previous task.
 * Every switch passes the worker as its value, so the code that lands learns
 * which thread it is on from the switch, not from a thread-local that the
 * compiler may have cached in a register before the switch.
 *
 * A running task that suspends switches straight to the next local task
 * (one switch, no trip through the scheduler's stack) except every
 * WEFT_EVENT_INTERVAL ticks, when it goes through the scheduler loop so the
 * poller, timers and global queue are looked at even while the local queue
 * never runs dry.
 *
 * ---------------------------------------------------------------------------
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
 *  Producer into its own local queue (spawn, wake from a task or a poller
 *  event): no fence, a plain load of rt->idle first. Liveness does not
 *  depend on it, because the producing worker is awake and will run the
 *  task itself; waking a peer only adds parallelism, so a rare missed wake
 *  costs throughput for a moment, never a task. A yielding task wakes
 *  nobody. Pinned tasks woken elsewhere go to their worker's inbox, whose
 *  push always writes that worker's eventfd.
 *
 *  Worker going to sleep: under the lock, leave the searching count (if it
 *  was searching), leave the unparked count and push itself on the sleepers
 *  (the RMW on rt->idle is seq_cst). If it was the last searcher, it then
 *  looks once more at every queue and, if any holds work, wakes a sleeper
 *  itself (possibly itself).
 *
 *  Why nothing is lost: a producer that saw searching > 0 skipped the wake;
 *  in the seq_cst order its publish precedes that load, which precedes the
 *  last searcher's decrement, which precedes the searcher's final look; so
 *  the final look sees the task. A producer that saw searching == 0 and
 *  unparked < workers wakes somebody. A producer that saw unparked ==
 *  workers (all awake) relies on them: each of them passes through the same
 *  sleep sequence before sleeping, and the last searcher among them rechecks.
 *  A worker that is refused searching (half already search) parks without
 *  searching; one of the searchers is then the last one and rechecks.
 *  The eventfd counter stays set until read, so a wake sent between the
 *  decision to sleep and epoll_wait is not lost either.
 *
 * ---------------------------------------------------------------------------
 * Fairness constants (Tokio and Go use the same values):
 *  - WEFT_EVENT_INTERVAL 61: every 61 ticks the worker polls its poller and
 *    timers without blocking and, if the global queue holds tasks, gives it
 *    a turn of several picks before its local queue (give_global_turn), so
 *    neither starves behind a local queue that never empties.
 *  - WEFT_MAX_LIFO_RUNS 3: after 3 consecutive runs from the LIFO slot the
 *    slot's task goes to the back of the local queue, so two tasks handing a
 *    message back and forth cannot starve the rest.
 *  - A yielding task goes to the back of the local queue.
 *  - WEFT_BUDGET 128 operations per slice; services call weft__coop_consume.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static __thread weft__worker *tls_worker;

__attribute__((noinline)) weft__worker *weft__cur_worker(void)
{
    weft__worker *w = tls_worker;
    /* An empty volatile asm with w as an in/out operand: the compiler must
     * assume the value changed, so it cannot reuse a thread pointer or a
     * previous result across a suspension, even after inlining under LTO. */
    __asm__ __volatile__("" : "+r"(w));
    return w;
}

__attribute__((noinline)) int *weft_errno_location(void)
{
    int *p = __errno_location();
    __asm__ __volatile__("" : "+r"(p));
    return p;
}

int64_t weft__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t weft__now_tick(weft_runtime *rt, int64_t ns)
{
    return ns <= rt->start_ns ? 0 : (uint64_t)(ns - rt->start_ns) / 1000000u;
}

static inline unsigned idle_searching(uint64_t s) { return (unsigned)(s & 0xffffffffu); }
static inline unsigned idle_unparked(uint64_t s) { return (unsigned)(s >> 32); }
#define IDLE_ONE_UNPARKED ((uint64_t)1 << 32)

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline void stat_inc(_Atomic uint64_t *c, uint64_t n)
{
    /* Owner-only counters: a relaxed load and store, no locked instruction. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* ------------------------------------------------------------ waking */

static void notify_parked(weft_runtime *rt)
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
    v->sleeping = 0;
    v->woken_to_search = 1;
    atomic_fetch_add_explicit(&rt->idle, IDLE_ONE_UNPARKED + 1, memory_order_seq_cst);
    pthread_mutex_unlock(&rt->idle_lock);
    weft__poller_wake(&v->poller);
}

/* After a push to this worker's own queue. Such a task is never lost if
 * nobody is woken (this worker is awake and will run it), so waking a peer is
 * only for parallelism, and the common case, where every worker is already
 * up or one is searching, is answered with a plain load and no fence. */
static inline void notify_parked_local(weft_runtime *rt)
{
    uint64_t s = atomic_load_explicit(&rt->idle, memory_order_relaxed);
    if (idle_searching(s) != 0 || idle_unparked(s) >= rt->nworkers)
        return;
    notify_parked(rt);
}

void weft__wake_sleepers(weft_runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++)
        weft__poller_wake(&rt->workers[i]->poller);
}

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

static void pinned_push(weft__worker *w, weft__task *t)
{
    t->next = NULL;
    if (w->pinned_tail)
        w->pinned_tail->next = t;
    else
        w->pinned_head = t;
    w->pinned_tail = t;
}

static void push_local(weft__worker *w, weft__task *t)
{
    weft__batch overflow;
    if (weft__unlikely(weft__lq_push(&w->lq, t, &overflow))) {
        weft__inject_push_batch(&w->rt->inject, w->index, &overflow);
        stat_inc(&w->stats.overflows, 1);
    }
}

void weft__schedule(weft_runtime *rt, weft__task *t, int spawned)
{
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
        notify_parked(rt);
        return;
    }
    (void)spawned;
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

/* ------------------------------------------------------------ picking */

static weft__task *inbox_take(weft__worker *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    weft__task *t = w->inbox_head;
    if (t) {
        w->inbox_head = t->next;
        if (!w->inbox_head)
            w->inbox_tail = NULL;
        atomic_fetch_sub_explicit(&w->inbox_n, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&w->inbox_lock);
    return t;
}

/* Pulls a batch from the global queue: one task to run, the rest into the
 * local queue (at most half of it, so a batch cannot overflow it). */
static weft__task *global_take(weft__worker *w, unsigned max)
{
    weft_runtime *rt = w->rt;
    if (weft__inject_empty(&rt->inject))
        return NULL;
    unsigned room = WEFT_LQ_SIZE / 2 - (weft__lq_len(&w->lq) < WEFT_LQ_SIZE / 2 ? weft__lq_len(&w->lq) : WEFT_LQ_SIZE / 2);
    size_t len = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
    unsigned n = (unsigned)(len / rt->nworkers) + 1;
    if (n > max)
        n = max;
    if (n > room + 1)
        n = room + 1;
    weft__batch b;
    if (!weft__inject_pop(&rt->inject, w->index, n, &b))
        return NULL;
    stat_inc(&w->stats.global_pulls, b.n);
    weft__task *t = b.head;
    for (weft__task *x = t->next; x;) {
        weft__task *next = x->next;
        push_local(w, x);
        x = next;
    }
    t->next = NULL;
    return t;
}

/* The global queue's turn, given at each maintenance pass while it holds
 * tasks: the next `global_turn` picks come from it, one task at a time, before
 * the local queue.
 *
 * Why not a batch into the local queue: the tasks a full local queue spills
 * there are its oldest, and a batch would go behind everything queued
 * locally, and a full local queue has no room for one anyway. Taking a single
 * task per maintenance pass (Tokio, Go) lets spilled tasks wait hundreds of
 * slices while timers keep the local queue topped up: with 1,000 requests in
 * flight on 2 workers that put the 99th percentile at 3-5x the mean. The
 * turn is sized so that the workers together empty the global queue within
 * one pass (len / workers + 1, at most half a local queue), and the tasks
 * stay in the global queue until picked, so an idle peer can still take
 * them. A pass that finds a turn still running does not renew it, so a
 * flood of spawns from outside threads cannot starve local tasks: they keep
 * at least the picks between the end of one turn and the next pass (about
 * 55 of every 183 when both queues are full). */
static weft__task *global_pop_one(weft__worker *w)
{
    weft__batch b;
    if (weft__inject_empty(&w->rt->inject) || !weft__inject_pop(&w->rt->inject, w->index, 1, &b)) {
        w->global_turn = 0;
        return NULL;
    }
    w->global_turn--;
    stat_inc(&w->stats.global_pulls, 1);
    b.head->next = NULL;
    return b.head;
}

static void give_global_turn(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (w->global_turn != 0 || weft__inject_empty(&rt->inject))
        return;
    size_t len = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
    size_t turn = len / rt->nworkers + 1;
    w->global_turn = (uint16_t)(turn > WEFT_LQ_SIZE / 2 ? WEFT_LQ_SIZE / 2 : turn);
}

/* The next task from this worker's own sources, or NULL. `from_lifo` tells
 * the caller not to refill the budget (a LIFO run continues the slice). */
static weft__task *next_local(weft__worker *w, int *from_lifo)
{
    *from_lifo = 0;
    weft__task *t = w->lifo;
    if (t) {
        w->lifo = NULL;
        if (w->lifo_runs < WEFT_MAX_LIFO_RUNS) {
            w->lifo_runs++;
            *from_lifo = 1;
            return t;
        }
        stat_inc(&w->stats.lifo_capped, 1);
        push_local(w, t);
    }
    w->lifo_runs = 0;
    if (weft__unlikely(w->pinned_head != NULL)) {
        t = w->pinned_head;
        w->pinned_head = t->next;
        if (!w->pinned_head)
            w->pinned_tail = NULL;
        return t;
    }
    if (weft__unlikely(atomic_load_explicit(&w->inbox_n, memory_order_relaxed) != 0)) {
        t = inbox_take(w);
        if (t)
            return t;
    }
    if (weft__unlikely(w->global_turn != 0)) {
        t = global_pop_one(w);
        if (t)
            return t;
    }
    return weft__lq_pop(&w->lq);
}

/* ------------------------------------------------------------ switching */

static inline void mark_running(weft__worker *w, weft__task *t, int from_lifo)
{
    /* The task is ours alone now (taken from a queue). Keep the sequence:
     * the wait it was woken from may need to see its own token again. */
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    atomic_store_explicit(&t->state, T_MAKE(T_SEQ(s), T_RUNNING), memory_order_release);
    t->worker = w;
    if (!from_lifo)
        t->budget = WEFT_BUDGET;
    w->current = t;
    stat_inc(&w->stats.tasks_run, 1);
}

/* Gives a task that has never run its stack and first frame. */
static int prepare_first_run(weft__worker *w, weft__task *t)
{
    weft__stack *s = weft__stack_get(&w->stacks, t->stack_cls);
    if (weft__unlikely(!s))
        return -ENOMEM;
    weft__stack_arm(s);
    t->stack = s;
    t->low_sp = weft__stack_top(s);
    weft__ctx_init(&t->ctx, s->lo, (size_t)(weft__stack_top(s) - s->lo), weft__task_entry, t);
    return 0;
}

/* Ends a task that never ran: it was cancelled while queued, or no stack
 * could be had for it. Its handle reports cancellation. */
static void drop_unstarted(weft__task *t)
{
    uintptr_t j = atomic_exchange_explicit(&t->join, JOIN_DISCARDED, memory_order_acq_rel);
    atomic_store(&t->live, 0);
    if (j > JOIN_DISCARDED)
        weft__waiter_fire((weft__waiter *)j);
    weft__task_release(NULL, t);
}

/* Gives a task its stack for its first run; 0 when it can run. */
static int first_run(weft__worker *w, weft__task *t)
{
    if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
        drop_unstarted(t);
        return -ECANCELED;
    }
    if (prepare_first_run(w, t) < 0) {
        fprintf(stderr, "weft: cannot allocate a stack for task %llu; it is cancelled\n",
                (unsigned long long)t->id);
        drop_unstarted(t);
        return -ENOMEM;
    }
    return 0;
}

/* Starts loading the saved frame of the task queued next. A task resumed
 * after a thousand others ran has lost its stack page from the TLB and its
 * frames from the cache; on the reference VM (nested paging) the first load
 * of a resumed frame cost ~0.7 µs, 11% of a request in
 * bench/async_vs_threads. Prefetching one task ahead hides the page walk
 * behind the current task's slice; the lines above the saved frame then hit
 * the TLB. Three lines: the 72-byte frame the switch pops and the caller's
 * frame above it (about 8 instructions per switch; a yield costs 13-20 ns).
 * A prefetch never faults, so a stale or unmapped sp (a task not started
 * yet, or taken by a thief meanwhile) is harmless; the racy read is left out
 * under TSan, which would report it. */
static inline void prefetch_following(weft__worker *w)
{
#ifndef WEFT_TSAN
    weft__task *n = weft__lq_peek(&w->lq);
    if (n) {
        const char *sp = __atomic_load_n((char **)&n->ctx.sp, __ATOMIC_RELAXED);
        __builtin_prefetch(sp);
        __builtin_prefetch(sp + 64);
        __builtin_prefetch(sp + 128);
    }
#else
    (void)w;
#endif
}

weft__worker *weft__switch_out(weft__worker *w, weft__task *self, int action)
{
    self->action = (uint8_t)action;
    w->prev = self;
    char here;
    if ((char *)&here < self->low_sp)
        self->low_sp = &here;
    if (weft__unlikely(!weft__stack_intact(self->stack))) {
        char who[64];
        snprintf(who, sizeof who, "task '%s' (id %llu)", self->name ? self->name : "unnamed",
                 (unsigned long long)self->id);
        weft__stack_overflow_die(self->stack, who);
    }
    int dying = action == ACT_EXIT;
    weft__worker *nw;
    weft__task *next = NULL;
    int from_lifo = 0;
    /* Straight to the next local task, except when a maintenance pass is
     * due: then through the scheduler loop (which also notices shutdown). */
    if (weft__likely(--w->until_event != 0)) {
        next = next_local(w, &from_lifo);
        /* Local queue dry: the global queue before the scheduler loop, or
         * a yielding task would find only itself there and starve it. */
        if (!next)
            next = global_take(w, WEFT_LQ_SIZE / 2);
    }
    while (next && weft__unlikely(!next->stack) && first_run(w, next) < 0)
        next = next_local(w, &from_lifo);
    if (next) {
        mark_running(w, next, from_lifo);
        prefetch_following(w);
        nw = weft__ctx_jump(&self->ctx, &next->ctx, w, dying);
    } else {
        w->current = NULL;
        nw = weft__ctx_jump(&self->ctx, &w->sched_ctx, w, dying);
    }
    /* Resumed, perhaps on another worker: nw is where we are now. */
    weft__after_switch(nw);
    return nw;
}

void weft__after_switch(weft__worker *w)
{
    weft__task *p = w->prev;
    if (!p)
        return;
    w->prev = NULL;
    switch (p->action) {
    case ACT_YIELD: {
        uint64_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
        /* A wake that arrived while running (NOTIFIED) is absorbed: the task
         * runs again anyway and re-checks what it waits for. */
        atomic_store_explicit(&p->state, T_MAKE(T_SEQ(s), T_QUEUED), memory_order_release);
        /* No peer is woken for a yield: this worker is awake and the task
         * was runnable already; waking someone per yield would cost a
         * fence each time. */
        if (p->pinned)
            pinned_push(w, p);
        else
            push_local(w, p);
        break;
    }
    case ACT_PARK: {
        uint64_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
        for (;;) {
            if (T_ST(s) == T_RUNNING) {
                if (atomic_compare_exchange_weak_explicit(&p->state, &s, T_MAKE(T_SEQ(s), T_PARKED),
                                                          memory_order_acq_rel, memory_order_acquire))
                    break; /* parked: from now on a waker may queue it */
            } else {
                /* NOTIFIED: woken before it finished parking. */
                atomic_store_explicit(&p->state, T_MAKE(T_SEQ(s), T_QUEUED), memory_order_release);
                if (p->pinned)
                    pinned_push(w, p);
                else {
                    push_local(w, p);
                    notify_parked_local(w->rt);
                }
                break;
            }
        }
        break;
    }
    case ACT_EXIT:
        weft__task_finish(w, p);
        break;
    default:
        break;
    }
}

/* Runs t from the scheduler loop. */
static void run_task(weft__worker *w, weft__task *t, int from_lifo)
{
    if (weft__unlikely(!t->stack) && first_run(w, t) < 0)
        return;
    if (w->until_event > 1)
        w->until_event--;
    mark_running(w, t, from_lifo);
    prefetch_following(w);
    weft__worker *nw = weft__ctx_jump(&w->sched_ctx, &t->ctx, w, 0);
    weft__after_switch(nw);
}

/* ------------------------------------------------------------ searching */

static int to_searching(weft__worker *w)
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
static void from_searching(weft__worker *w)
{
    if (!w->searching)
        return;
    w->searching = 0;
    uint64_t prev = atomic_fetch_sub_explicit(&w->rt->idle, 1, memory_order_seq_cst);
    if (idle_searching(prev) == 1)
        notify_parked(w->rt);
}

static weft__task *steal_work(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (!to_searching(w))
        return NULL;
    unsigned n = rt->nworkers;
    unsigned start = (unsigned)(xorshift(&w->rng) % n);
    for (unsigned i = 0; i < n; i++) {
        weft__worker *v = rt->workers[(start + i) % n];
        if (v == w)
            continue;
        unsigned moved;
        weft__task *t = weft__lq_steal(&v->lq, &w->lq, &moved);
        if (t) {
            stat_inc(&w->stats.steals, 1);
            stat_inc(&w->stats.tasks_stolen, moved);
            return t;
        }
    }
    return global_take(w, WEFT_LQ_SIZE / 2);
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

/* ------------------------------------------------------------ the loop */

/* Room left in the local queue: what a poll may wake without spilling. */
static inline unsigned lq_room(weft__worker *w) { return WEFT_LQ_SIZE - weft__lq_len(&w->lq); }

/* The poll lock is held by the caller. */
static void poll_timers_locked(weft__worker *w)
{
    w->now_tick = weft__now_tick(w->rt, weft__clock_ns());
    weft__wheel_poll(&w->wheel, w->now_tick, lq_room(w), weft__wake_cb, NULL);
    atomic_store_explicit(&w->polled_tick, w->now_tick, memory_order_relaxed);
}

static void poll_timers(weft__worker *w)
{
    weft__poll_lock(w);
    poll_timers_locked(w);
    weft__poll_unlock(w);
}

/* Descriptors, then timers. The poll lock is held across a blocking
 * epoll_wait too: a sleeping worker is not stuck, and only its own thread
 * arms timers on its wheel. */
static void poll_events(weft__worker *w, int timeout_ms)
{
    weft__fired fired[WEFT__POLL_MAX];
    weft__poll_lock(w);
    int n = weft__poller_poll(&w->poller, timeout_ms, (int)lq_room(w), fired);
    weft__fd_fired(&w->poller, fired, n, weft__wake_cb, NULL);
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
#define RESCUE_AFTER_MS 10

static void rescue_stuck_peers(weft__worker *w)
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

static void park(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    /* Idle: the moment to give back the memory of stacks a burst left in the
     * pool, before registering as a sleeper (a wake-up is not held up). */
    weft__stack_pool_trim(&rt->stacks);
    pthread_mutex_lock(&rt->idle_lock);
    int last_searcher = 0;
    if (w->searching) {
        uint64_t prev = atomic_fetch_sub_explicit(&rt->idle, 1, memory_order_seq_cst);
        last_searcher = idle_searching(prev) == 1;
        w->searching = 0;
    }
    atomic_fetch_sub_explicit(&rt->idle, IDLE_ONE_UNPARKED, memory_order_seq_cst);
    rt->sleepers[rt->nsleepers++] = w->index;
    w->sleeping = 1;
    w->woken_to_search = 0;
    pthread_mutex_unlock(&rt->idle_lock);

    if (last_searcher) {
        weft__fence();
        if (work_anywhere(rt))
            notify_parked(rt);
    }

    int timeout = -1;
    weft__poll_lock(w);
    uint64_t next = weft__wheel_next(&w->wheel);
    weft__poll_unlock(w);
    if (next != WEFT_NO_DEADLINE) {
        uint64_t now = weft__now_tick(rt, weft__clock_ns());
        timeout = next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
    }
    /* While a peer is awake it may get stuck in a long task: one sleeping
     * worker at a time (the watcher) looks again every RESCUE_AFTER_MS
     * (rescue_stuck_peers), like Go's single sysmon, so that many idle
     * workers do not all wake a hundred times a second. */
    int watching = 0;
    if (rt->nworkers > 1 && idle_unparked(atomic_load_explicit(&rt->idle, memory_order_relaxed)) > 0 &&
        (timeout < 0 || timeout > RESCUE_AFTER_MS)) {
        int free_slot = 0;
        if (atomic_compare_exchange_strong_explicit(&rt->watcher, &free_slot, 1, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            watching = 1;
            timeout = RESCUE_AFTER_MS;
        }
    }
    if (!atomic_load_explicit(&rt->shutdown, memory_order_acquire) &&
        !atomic_load_explicit(&w->inbox_n, memory_order_relaxed)) {
        stat_inc(&w->stats.parks, 1);
        poll_events(w, timeout);
    }
    if (watching)
        atomic_store_explicit(&rt->watcher, 0, memory_order_release);

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
    } else if (w->woken_to_search) {
        w->searching = 1; /* the producer counted us as searching */
        w->woken_to_search = 0;
    }
    pthread_mutex_unlock(&rt->idle_lock);
}

/* How long an idle worker keeps looking before it sleeps. Waking a sleeping
 * worker costs ~60 µs across cores on the reference machine, while one round
 * (a steal attempt on each peer and a look at the global queue) costs well
 * under a microsecond, so a short spin pays for itself when work arrives
 * within it. Only the last round polls the descriptors (a system call). A
 * single worker has nobody to steal from: it goes straight to its poller. */
#define SEARCH_ROUNDS 16

static void worker_loop(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    for (;;) {
        if (weft__unlikely(atomic_load_explicit(&rt->shutdown, memory_order_acquire)))
            break;
        /* until_event counts task runs down (here and in weft__switch_out,
         * which comes back to this loop when it reaches zero). */
        weft__task *t = NULL;
        int from_lifo = 0;
        if (w->until_event == 0) {
            w->until_event = WEFT_EVENT_INTERVAL;
            poll_events(w, 0);
            rescue_stuck_peers(w);
            give_global_turn(w);
        } else {
            poll_timers(w);
        }
        if (!t)
            t = next_local(w, &from_lifo);
        if (!t)
            t = global_take(w, WEFT_LQ_SIZE / 2);
        unsigned rounds = rt->nworkers > 1 ? SEARCH_ROUNDS : 0;
        for (unsigned round = 0; !t && round < rounds; round++) {
            t = steal_work(w);
            if (!t && !w->searching)
                break; /* refused: enough workers search already */
            if (!t)
                weft__cpu_relax();
        }
        if (!t && rounds) {
            /* Nothing to steal: whatever is ready in our poller, without
             * blocking, before going through the sleep protocol. A single
             * worker skips this: park() polls the same poller anyway, and
             * an extra epoll_wait per idle moment is measurable per request
             * on a busy server. */
            poll_events(w, 0);
            t = next_local(w, &from_lifo);
        }
        if (!t && rt->nworkers > 1) {
            rescue_stuck_peers(w);
            t = next_local(w, &from_lifo);
        }
        if (t) {
            from_searching(w);
            run_task(w, t, from_lifo);
            continue;
        }
        park(w);
    }
}

static void *worker_main(void *arg)
{
    weft__worker *w = arg;
    weft_runtime *rt = w->rt;
    tls_worker = w;
    weft__stack_thread_init();
    weft__ctx_init_thread(&w->sched_ctx);
    pthread_mutex_lock(&rt->start_lock);
    rt->started++;
    pthread_cond_broadcast(&rt->start_cond);
    pthread_mutex_unlock(&rt->start_lock);

    worker_loop(w);

    weft__stack_thread_fini();
    tls_worker = NULL;
    return NULL;
}

/* ------------------------------------------------------------ runtime */

static const weft__stack *describe_current(char *buf, size_t n)
{
    weft__worker *w = tls_worker;
    if (!w || !w->current || !w->current->stack)
        return NULL;
    weft__task *t = w->current;
    snprintf(buf, n, "task '%s' (id %llu) on worker %u", t->name ? t->name : "unnamed",
             (unsigned long long)t->id, w->index);
    return t->stack;
}

static unsigned default_workers(void)
{
    const char *e = getenv("WEFT_WORKERS");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v > 0 && v <= 1024)
            return (unsigned)v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0)
            return (unsigned)c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (unsigned)c : 1;
}

void weft_config_init(weft_config *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof *cfg);
}

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned live_runtimes;

static void free_workers(weft_runtime *rt, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        weft__worker *w = rt->workers[i];
        weft__wheel_destroy(&w->wheel);
        weft__fd_forget_poller(&w->poller);
        weft__poller_destroy(&w->poller);
        weft__stack_cache_forget(&w->stacks); /* the pool is destroyed next */
        pthread_mutex_destroy(&w->inbox_lock);
        weft__free(w);
    }
}

weft_runtime *weft_runtime_new(const weft_config *cfg)
{
    weft_config def;
    if (!cfg) {
        weft_config_init(&def);
        cfg = &def;
    }
    unsigned n = cfg->workers ? cfg->workers : default_workers();
    if (n > 1024) {
        errno = EINVAL;
        return NULL;
    }
    unsigned cls;
    if (weft__stack_class(cfg->stack_size ? cfg->stack_size : 256 * 1024, &cls) < 0 ||
        cfg->stack_size > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    weft__stack_overflow_handler_install(describe_current);
    weft_runtime *rt = weft__aligned(64, sizeof *rt);
    if (!rt) {
        errno = ENOMEM;
        return NULL;
    }
    memset(rt, 0, sizeof *rt);
    static _Atomic uint64_t runtime_ids;
    rt->id = atomic_fetch_add(&runtime_ids, 1) + 1;
    rt->nworkers = n;
    rt->default_cls = cls;
    rt->start_ns = weft__clock_ns();
    weft__lock_init(&rt->idle_lock);
    pthread_mutex_init(&rt->services_lock, NULL);
    weft__lock_init(&rt->tfree_lock);
    pthread_mutex_init(&rt->start_lock, NULL);
    pthread_cond_init(&rt->start_cond, NULL);
    weft__stack_pool_init(&rt->stacks);
    atomic_init(&rt->idle, (uint64_t)n << 32);
    rt->workers = weft__calloc(n, sizeof *rt->workers);
    rt->sleepers = weft__calloc(n, sizeof *rt->sleepers);
    int err = ENOMEM;
    unsigned made = 0;
    if (!rt->workers || !rt->sleepers || weft__inject_init(&rt->inject, n < 8 ? 8 : n) < 0)
        goto fail;
    for (; made < n; made++) {
        weft__worker *w = weft__aligned(64, sizeof *w);
        if (!w)
            goto fail;
        memset(w, 0, sizeof *w);
        w->index = made;
        w->rt = rt;
        w->until_event = WEFT_EVENT_INTERVAL;
        w->rng = 0x9e3779b97f4a7c15ull * (made + 1) ^ (uint64_t)rt->start_ns;
        weft__lq_init(&w->lq);
        weft__stack_cache_init(&w->stacks, &rt->stacks);
        weft__wheel_init(&w->wheel, 0);
        weft__lock_init(&w->inbox_lock);
        int rc = weft__poller_init(&w->poller);
        if (rc < 0) {
            err = -rc;
            pthread_mutex_destroy(&w->inbox_lock);
            weft__free(w);
            goto fail;
        }
        rt->workers[made] = w;
    }
    pthread_mutex_lock(&live_lock);
    live_runtimes++;
    pthread_mutex_unlock(&live_lock);
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&rt->workers[i]->thread, NULL, worker_main, rt->workers[i]);
        if (rc != 0) {
            /* Stop the ones already running, then unwind. */
            atomic_store(&rt->shutdown, 1);
            weft__wake_sleepers(rt);
            for (unsigned k = 0; k < i; k++)
                pthread_join(rt->workers[k]->thread, NULL);
            pthread_mutex_lock(&live_lock);
            live_runtimes--;
            pthread_mutex_unlock(&live_lock);
            err = rc;
            goto fail;
        }
    }
    pthread_mutex_lock(&rt->start_lock);
    while (rt->started < n)
        pthread_cond_wait(&rt->start_cond, &rt->start_lock);
    pthread_mutex_unlock(&rt->start_lock);
    return rt;
fail:
    free_workers(rt, made);
    if (rt->inject.shards)
        weft__inject_destroy(&rt->inject);
    weft__free(rt->workers);
    weft__free(rt->sleepers);
    weft__stack_pool_destroy(&rt->stacks);
    weft__free(rt);
    errno = err;
    return NULL;
}

void weft_runtime_free(weft_runtime *rt)
{
    if (!rt)
        return;
    atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
    weft__wake_sleepers(rt);
    for (unsigned i = 0; i < rt->nworkers; i++)
        pthread_join(rt->workers[i]->thread, NULL);
    if (rt->blocking_stop)
        rt->blocking_stop(rt);
    pthread_mutex_destroy(&rt->services_lock);

    /* Every task still alive is discarded: its handle reports cancellation
     * and a plain thread blocked in weft_join on it is released. Order
     * matters: blocks held by handles are marked orphans (rt = NULL) before
     * a blocked joiner is released, so it never touches the runtime being
     * freed; and once joiners run, a chunk of orphans may be freed by its
     * last handle at any time, so nothing here touches one after that. */
    size_t nfire = 0, capfire = 0;
    weft__waiter **fire = NULL;
    for (weft__task_chunk *c = rt->chunks; c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (!atomic_load(&t->live))
                continue;
            atomic_store(&t->live, 0);
            if (t->stack)
                weft__ctx_destroy(&t->ctx);
            atomic_fetch_sub(&t->refs, 1); /* the task's own reference */
            uintptr_t j = atomic_exchange(&t->join, JOIN_DISCARDED);
            if (j > JOIN_DISCARDED && !((weft__waiter *)j)->task) {
                if (nfire == capfire) {
                    capfire = capfire ? capfire * 2 : 16;
                    weft__waiter **f = weft__realloc(fire, capfire * sizeof *fire);
                    if (!f)
                        abort(); /* cannot release the joiner safely */
                    fire = f;
                }
                fire[nfire++] = (weft__waiter *)j;
            }
        }
    weft__task_orphan_handles(rt);
    for (size_t i = 0; i < nfire; i++)
        weft__waiter_fire(fire[i]);
    weft__free(fire);
    free_workers(rt, rt->nworkers);
    weft__task_free_chunks(rt);
    weft__inject_destroy(&rt->inject);
    weft__stack_pool_destroy(&rt->stacks);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_mutex_destroy(&rt->tfree_lock);
    pthread_mutex_destroy(&rt->start_lock);
    pthread_cond_destroy(&rt->start_cond);
    weft__free(rt->workers);
    weft__free(rt->sleepers);
    weft__free(rt);
    pthread_mutex_lock(&live_lock);
    if (--live_runtimes == 0)
        weft__fd_table_free();
    pthread_mutex_unlock(&live_lock);
}

unsigned weft_runtime_workers(const weft_runtime *rt) { return rt ? rt->nworkers : 0; }

int weft_runtime_block_on(weft_runtime *rt, weft_fn fn, void *arg, void **result)
{
    if (!rt || !fn)
        return -EINVAL;
    if (weft__cur_task())
        return -EPERM;
    weft_task *t = weft_spawn_on(rt, fn, arg);
    if (!t)
        return -errno;
    return weft_join(t, result);
}

int weft_main(weft_fn fn, void *arg, void **result)
{
    if (!fn)
        return -EINVAL;
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt)
        return -errno;
    int rc = weft_runtime_block_on(rt, fn, arg, result);
    weft_runtime_free(rt);
    return rc;
}

unsigned weft_runtime_stats(const weft_runtime *rt, weft_worker_stats *out, unsigned n)
{
    if (!rt)
        return 0;
    for (unsigned i = 0; i < rt->nworkers && i < n && out; i++) {
        const weft__stats *s = &rt->workers[i]->stats;
        out[i].tasks_run = atomic_load_explicit(&s->tasks_run, memory_order_relaxed);
        out[i].steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
        out[i].tasks_stolen = atomic_load_explicit(&s->tasks_stolen, memory_order_relaxed);
        out[i].parks = atomic_load_explicit(&s->parks, memory_order_relaxed);
        out[i].global_pulls = atomic_load_explicit(&s->global_pulls, memory_order_relaxed);
        out[i].overflows = atomic_load_explicit(&s->overflows, memory_order_relaxed);
        out[i].lifo_capped = atomic_load_explicit(&s->lifo_capped, memory_order_relaxed);
        out[i].timers_rescued = atomic_load_explicit(&s->timers_rescued, memory_order_relaxed);
        out[i].events_rescued = atomic_load_explicit(&s->events_rescued, memory_order_relaxed);
    }
    return rt->nworkers;
}
