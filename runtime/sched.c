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
 * The rest of the scheduler is in its other files (scheduler.h lists
 * them, bottom first): the idle protocol and the proof that no wake-up is
 * lost (idle.c), where a woken or spawned task goes (ready.c), the polls and
 * the stuck-worker rescue (rescue.c), a runtime's life and statistics
 * (runtime.c), the thread-locals (tls.c), the clock (clock.c).
 *
 * ---------------------------------------------------------------------------
 * Fairness constants (Tokio and Go use the same values):
 *  - WEFT_EVENT_INTERVAL 61: every 61 ticks the worker polls its poller and
 *    timers without blocking and, if the global queue holds tasks, gives it
 *    a turn of several picks before its local queue (give_global_turn), so
 *    neither starves behind a local queue that never empties.
 *  - WEFT_MAX_LIFO_RUNS 64: after 64 consecutive runs from the LIFO slot the
 *    slot's task goes to the back of the local queue, so two tasks handing a
 *    message back and forth cannot starve the rest. Tokio 1.24 bounds the
 *    chain by the slice's budget (128 operations, shared along it: about 64
 *    runs of a channel ping-pong); newer Tokio caps it at 3 runs. At 3, with
 *    a thousand pairs in flight, each pair got ~2 round trips per visit and
 *    found its stacks and channels cold every time: bench/chan's chan_pairs
 *    took ~14 D1 misses and ~330 ns of CPU per round trip, against ~1 miss
 *    and ~125 ns at 64 (Tokio 1.24: ~160 ns). 64 runs of a hand-off are a
 *    few microseconds; the maintenance pass still comes every 61 ticks
 *    inside a chain, so I/O and timers wait no longer than before.
 *  - A yielding task goes to the back of the local queue.
 *  - WEFT_BUDGET 128 operations per slice; services call weft__coop_consume.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
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
    WEFT__ASSERT(n >= 1 && n <= max);
    weft__batch b;
    if (!weft__inject_pop(&rt->inject, w->index, n, &b))
        return NULL;
    WEFT__ASSERT(b.n >= 1 && b.n <= n && b.n - 1 <= room); /* the rest fits in the ring */
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
 * 55 of every 183 when both queues are full). A queue longer than turns
 * can drain (more than WEFT_FLOOD_PER_WORKER per worker) gets no turn,
 * only one pick per pass (give_global_turn). */
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

/* Global-queue tasks per worker beyond which the queue is a flood (see
 * give_global_turn): four local queues' worth. */
#define WEFT_FLOOD_PER_WORKER (4 * WEFT_LQ_SIZE)

static void give_global_turn(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (w->global_turn != 0 || weft__inject_empty(&rt->inject))
        return;
    size_t len = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
    size_t turn = len / rt->nworkers + 1;
    if (turn > WEFT_FLOOD_PER_WORKER) {
        /* A flood: a spawner far ahead of the workers, more than a turn of
         * every pass for many passes could get through. Turns would only
         * hold back the local queue: sleepers woken into it waited behind
         * 128 of the flood per pass (issue 19: 1,000,000 tasks sleeping
         * 0-100 ms each, p99 lateness 1.4 s). The flood gets what Tokio and
         * Go give the global queue: one pick per pass, and batches when the
         * local queue runs dry. */
        turn = 1;
    } else if (turn > WEFT_LQ_SIZE / 2) {
        turn = WEFT_LQ_SIZE / 2;
    }
    w->global_turn = (uint16_t)turn;
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
    WEFT__ASSERT(t->stack != NULL); /* first_run gave it one */
    weft__state_run(t);
    t->worker = w;
    if (!from_lifo)
        t->budget = WEFT_BUDGET;
    w->current = t;
    stat_inc(&w->stats.tasks_run, 1);
}

/* Gives a task that has never run its stack and first frame. Inlined into
 * both callers: out of line (two callers since group spawns take their
 * stack at once) it cost ~13 instructions per spawn on bench/switch. */
static inline __attribute__((always_inline)) int prepare_first_run(weft__worker *w, weft__task *t)
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

/* Log2 bucket of a duration in ns (the metrics histograms). */
static inline unsigned hist_bucket(int64_t ns)
{
    unsigned b = ns <= 1 ? 0 : 63u - (unsigned)__builtin_clzll((uint64_t)ns);
    return b < WEFT__HIST_BUCKETS ? b : WEFT__HIST_BUCKETS - 1;
}

/* A latency probe (ready.c's latency_probe) is about to run: its schedule
 * latency goes in the histogram, and a task that had run before gets its
 * stack back (returns 1: it runs as it is, not as a first run). */
static __attribute__((noinline)) int probe_runs(weft__worker *w, weft__task *t)
{
    WEFT__ASSERT(t->stack == NULL); /* a probe lends its stack until this moment */
    stat_inc(&w->stats.hist_latency[hist_bucket(weft__clock_ns() - t->obs.ready_ns)], 1);
    t->obs.ready_ns = 0;
    weft__stack *s = t->obs.probe_stack;
    if (!s)
        return 0;
    t->obs.probe_stack = NULL;
    t->stack = s;
    return 1;
}

/* Gives a task its stack for its first run; 0 when it can run. */
static int first_run(weft__worker *w, weft__task *t)
{
    if (weft__unlikely(t->obs.ready_ns != 0) && probe_runs(w, t))
        return 0;
    if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
        drop_unstarted(t);
        return -ECANCELED;
    }
    if (prepare_first_run(w, t) < 0) {
        fprintf(stderr, "weft: cannot allocate a stack for task %llu; it does not run, its join reports -ENOMEM\n",
                (unsigned long long)t->id);
        t->stack_cls = WEFT_NO_STACK_CLS;
        drop_unstarted(t);
        return -ENOMEM;
    }
    return 0;
}

weft__task *weft__spawn_with_stack(weft_fn fn, void *arg)
{
    weft__worker *w = weft__cur_worker();
    if (!w || !w->current) {
        errno = EPERM;
        return NULL;
    }
    if (atomic_load_explicit(&w->rt->shutdown, memory_order_relaxed)) {
        errno = ESHUTDOWN;
        return NULL;
    }
    int err = 0;
    weft__task *t = weft__task_new(w->rt, w, fn, arg, NULL, &err);
    if (!t) {
        errno = err;
        return NULL;
    }
    if (prepare_first_run(w, t) < 0) {
        drop_unstarted(t);        /* the task's own reference */
        weft__task_release(w, t); /* the handle's */
        errno = ENOMEM;
        return NULL;
    }
    weft__schedule(w->rt, t);
    return t;
}

/* Starts loading the saved frame of the task queued next. A task resumed
 * after a thousand others ran has lost its stack page from the TLB and its
 * frames from the cache; on the reference VM (nested paging) the first load
 * of a resumed frame cost ~0.7 µs, 11% of a request in
 * bench/async_vs_threads. Prefetching one task ahead hides the page walk
 * behind the current task's slice; the lines above the saved frame then hit
 * the TLB. Three lines: the 64-byte frame the switch pops and the caller's
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
    if (weft__unlikely(w->wake_due != 0))
        poll_deferred_wake(w);
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
    WEFT__ASSERT(p->worker == w); /* the switch lands on the thread it left */
    switch (p->action) {
    case ACT_YIELD: {
        weft__state_yield(p);
        /* No peer is woken for a yield: this worker is awake and the task
         * was runnable already; waking someone per yield would cost a
         * fence each time. */
        if (p->pinned)
            pinned_push(w, p);
        else
            push_local(w, p);
        break;
    }
    case ACT_PARK:
        if (weft__state_park(p))
            break; /* parked: from now on a waker may queue it */
        /* NOTIFIED: woken before it finished parking. */
        if (p->pinned)
            pinned_push(w, p);
        else {
            push_local(w, p);
            notify_parked_local(w->rt);
        }
        break;
    case ACT_EXIT:
        weft__task_finish(w, p);
        break;
    default:
        break;
    }
}

/* A timed slice (metrics), at one maintenance pass in WEFT__SLICE_PASSES:
 * until_event is set to 1 for the slice, so the task's switch away comes
 * back here (switch_out's existing countdown) instead of going straight to
 * the next task, and the direct switch path reads no clock. The time
 * includes the two switches (tens of ns). The countdown is restored. */
static __attribute__((noinline)) void run_timed(weft__worker *w, weft__task *t)
{
    uint32_t left = w->until_event;
    w->until_event = 1;
    int64_t t0 = weft__clock_ns();
    weft__worker *nw = weft__ctx_jump(&w->sched_ctx, &t->ctx, w, 0);
    WEFT__ASSERT(nw == w); /* the scheduler's own context resumes on its thread */
    stat_inc(&nw->stats.hist_slice[hist_bucket(weft__clock_ns() - t0)], 1);
    nw->until_event = left;
    weft__after_switch(nw);
}

/* Runs t from the scheduler loop. */
static void run_task(weft__worker *w, weft__task *t, int from_lifo, int timed)
{
    if (weft__unlikely(!t->stack) && first_run(w, t) < 0)
        return;
    if (weft__unlikely(w->wake_due != 0))
        poll_deferred_wake(w);
    if (w->until_event > 1)
        w->until_event--;
    mark_running(w, t, from_lifo);
    prefetch_following(w);
    if (weft__unlikely(timed)) {
        run_timed(w, t);
        return;
    }
    weft__worker *nw = weft__ctx_jump(&w->sched_ctx, &t->ctx, w, 0);
    weft__after_switch(nw);
}

/* A task's first frame: lands from its first switch, runs the task, and
 * leaves for good. */
void weft__task_entry(void *arg, void *data)
{
    weft__ctx_started();
    weft__worker *w = arg;
    weft__task *t = data;
    weft__after_switch(w);
    t->result = t->fn(t->arg);
    w = weft__cur_worker();
    weft__switch_out(w, t, ACT_EXIT);
    __builtin_unreachable();
}

/* ------------------------------------------------------------ searching */

static weft__task *steal_work(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (!weft__to_searching(w))
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

/* ------------------------------------------------------------ the loop */

/* Sleeps in the poller until a producer, an event or a timer wakes us. */
static void park(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    weft__idle_enter(w);

    int timeout = -1;
    weft__poll_lock(w);
    uint64_t next = weft__wheel_next(&w->wheel);
    weft__poll_unlock(w);
    if (next != WEFT_NO_DEADLINE) {
        uint64_t now = weft__now_tick(rt, weft__clock_ns());
        timeout = next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
    }
    /* The idle trim (idle.c) stopped at its bound: back soon for the next
     * batch, or a burst's stacks would keep their pages while we sleep. */
    if (atomic_load_explicit(&rt->stacks.trim_more, memory_order_relaxed) &&
        (timeout < 0 || timeout > RESCUE_AFTER_MS))
        timeout = RESCUE_AFTER_MS;
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
        int64_t t0 = weft__clock_ns(); /* parked time (metrics): a sleep is a system call anyway */
        weft__poll_events(w, timeout);
        stat_inc(&w->stats.parked_ns, (uint64_t)(weft__clock_ns() - t0));
    }
    if (watching)
        atomic_store_explicit(&rt->watcher, 0, memory_order_release);

    weft__idle_leave(w);
    poll_backlog_wake(w);
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
        int from_lifo = 0, timed = 0;
        if (w->until_event == 0) {
            w->until_event = WEFT_EVENT_INTERVAL;
            weft__poll_events(w, 0);
            poll_backlog_wake(w);
            weft__rescue_stuck_peers(w);
            give_global_turn(w);
            if (++w->slice_pass == WEFT__SLICE_PASSES) {
                w->slice_pass = 0;
                timed = 1;
            }
        } else {
            weft__poll_timers(w);
            poll_backlog_wake(w);
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
        /* Nothing to steal: no epoll_wait(0) here, because park() polls the
         * same poller and returns at once with what is ready. Polling first
         * cost a second epoll_wait per idle moment, 0.1-0.2 per request on
         * the echo server at 2 workers (measured with perf's syscall
         * tracepoints), against the idle protocol's two uncontended lock
         * round trips saved when something was ready. */
        if (!t && rt->nworkers > 1) {
            weft__rescue_stuck_peers(w);
            t = next_local(w, &from_lifo);
        }
        if (t) {
            weft__from_searching(w);
            run_task(w, t, from_lifo, timed);
            continue;
        }
        park(w);
    }
}

void *weft__worker_main(void *arg)
{
    weft__worker *w = arg;
    weft_runtime *rt = w->rt;
    weft__set_cur_worker(w);
    weft__stack_thread_init();
    weft__ctx_init_thread(&w->sched_ctx);
    pthread_mutex_lock(&rt->start_lock);
    rt->started++;
    pthread_cond_broadcast(&rt->start_cond);
    pthread_mutex_unlock(&rt->start_lock);

    worker_loop(w);

    weft__stack_thread_fini();
    weft__set_cur_worker(NULL);
    return NULL;
}
