/*
 * What the scheduler layer offers to the services above it (time.c, io.c,
 * net.c, sync.c, chan.c, group.c, blocking.c, fs.c, dns.c, proc.c, signal.c):
 * the worker and runtime structures, the current worker and task, spawning
 * control blocks, waits and wakes, waiters, timers and descriptor waits.
 * Each declaration sits under the file that defines it. What the scheduler's
 * own files share only among themselves is in scheduler.h, with the order in
 * which they may call each other.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../include/weft.h"
#include "alloc.h"
#include "context.h"
#include "lock.h"
#include "poller.h"
#include "queue.h"
#include "stack.h"
#include "task.h"
#include "task_state.h"
#include "timer.h"

/* Fairness and tuning constants (reasoning in sched.c). */
#define WEFT_EVENT_INTERVAL 61    /* ticks between maintenance passes */
#define WEFT_MAX_LIFO_RUNS 64     /* consecutive LIFO-slot runs before the cap */
#define WEFT_BUDGET 128           /* cooperative operations per slice */
#define WEFT_TASK_POOL_MAX 1024   /* control blocks cached per worker */
#define WEFT_TASK_CHUNK 64        /* control blocks per allocation */

#define WEFT__HIST_BUCKETS 32 /* log2 buckets of ns: [2^i, 2^(i+1)), the last open */
/* Metrics sampling (sched.c, ready.c): no clock is read on the direct
 * task-to-task switch. A slice is timed at one maintenance pass in
 * WEFT__SLICE_PASSES (about one run in 61 * 4), and a schedule latency on one
 * wake-up or spawn in WEFT__LATENCY_EVERY per worker. */
#define WEFT__SLICE_PASSES 4
#define WEFT__LATENCY_EVERY 64

typedef struct weft__stats {
    _Atomic uint64_t tasks_run, steals, tasks_stolen, parks, global_pulls, overflows, lifo_capped,
        timers_rescued, events_rescued;
    /* Metrics (metrics.c reads them), the same rule: */
    _Atomic uint64_t polls, forced_yields, parked_ns;
    _Atomic uint64_t hist_slice[WEFT__HIST_BUCKETS], hist_latency[WEFT__HIST_BUCKETS];
} weft__stats;

/* What a task waits on (weft__wait_note; dump.c names them). */
enum {
    WEFT__WAIT_NONE = 0, WEFT__WAIT_FD, WEFT__WAIT_SLEEP, WEFT__WAIT_JOIN, WEFT__WAIT_CHAN_SEND,
    WEFT__WAIT_CHAN_RECV, WEFT__WAIT_SELECT, WEFT__WAIT_MUTEX, WEFT__WAIT_COND, WEFT__WAIT_SEM,
    WEFT__WAIT_EVENT, WEFT__WAIT_WG, WEFT__WAIT_ONCE, WEFT__WAIT_GROUP, WEFT__WAIT_BLOCKING,
    WEFT__WAIT_SIGNAL, WEFT__WAIT_KINDS
};

/* A worker: one thread, its queues, its poller and timer wheel. The fields
 * fall in two parts. The first only the worker's own thread touches (its
 * scheduler loop and the tasks it runs). The second other threads touch too,
 * and each field there says under which lock or with which ordering. The
 * layout is the one the fields had before the parts were named (offsets
 * unchanged except `sleeping` and `woken_to_search`, which moved into a hole
 * after poll_busy). */
typedef struct weft__worker {
    /* ---- Owner-only. `index` and `rt` are written before the thread starts
     * and never again, so any thread may read them. */
    struct {
        weft__task *current;    /* task running on this worker, NULL in the scheduler */
        weft__task *prev;       /* task that just switched away; see after_switch */
        weft__task *lifo;
        uint32_t until_event;   /* task runs left before the next maintenance pass */
        uint8_t lifo_runs;
        uint8_t polling;        /* dispatching what its own poll found: see weft__poll_backlog_wake */
        uint16_t global_turn;   /* picks the global queue gets before the local one */
        uint8_t searching;      /* counted in rt->idle as searching (the count is shared, the flag is not) */
        unsigned index;
        uint64_t rng;
        struct weft_runtime *rt;
        weft__ctx sched_ctx;    /* the worker thread's own stack */
        weft__stack_cache stacks;
        weft__task *task_free;
        unsigned ntask_free;
        uint64_t next_id;
        uint64_t now_tick;      /* ms since runtime start, cached per loop iteration */
        weft__task *pinned_head, *pinned_tail; /* runnable pinned tasks */
        int64_t wake_due;       /* clock ns: a poll's small batch wakes a peer if still queued then (0: none) */
        /* Metrics sampling (owner-only; internal.h's WEFT__SLICE_PASSES):
         * latency_left counts schedules down to the next latency probe
         * (ready.c), slice_pass counts maintenance passes (sched.c). */
        uint32_t latency_left;
        uint32_t slice_pass;
    };

    /* ---- Shared with other threads. */
    struct {
        /* The owner pushes and pops, any worker steals (weft__lq_steal); the
         * orderings are argued at the top of queue.c. */
        weft__lq lq;
        /* The poll lock (weft__poll_lock): taken with an acquire exchange,
         * given back with a release store. The wheel and the poller belong to
         * this worker, but a peer may poll them while this worker is stuck in
         * a long task (rescue.c): every wheel operation and every poll holds
         * poll_busy (also while the worker sleeps in its poller); the owner
         * spins for it, a peer only tries it. */
        _Atomic uint32_t poll_busy;
        /* Guarded by rt->idle_lock: set by this worker when it joins
         * rt->sleepers; a producer that takes it off them (idle.c) clears
         * `sleeping` and sets `woken_to_search`. */
        uint8_t sleeping;
        uint8_t woken_to_search;
        /* When this worker last polled its timers: a relaxed store by the
         * owner, relaxed loads by peers deciding whether it is stuck (a hint:
         * the rescue itself only tries poll_busy). */
        _Atomic uint64_t polled_tick;
        weft__wheel wheel;      /* under poll_busy (timer.h: cancels from elsewhere are lock-free) */
        /* Polled under poll_busy; weft__poller_wake (an eventfd write) from
         * any thread, with no lock. */
        weft__poller poller;

        /* Pinned tasks woken by other threads. inbox_head and inbox_tail are
         * under inbox_lock. inbox_n changes under it too (a seq_cst add by
         * the pusher, a relaxed sub by the owner) and is read without it,
         * relaxed, by the owner as a hint: a pusher always writes the
         * owner's eventfd after its push, so a missed count only delays the
         * task to the next poll. */
        pthread_mutex_t inbox_lock;
        weft__task *inbox_head, *inbox_tail;
        _Atomic unsigned inbox_n;

        /* Written by the owner alone (stat_inc: a relaxed load and store),
         * read with relaxed loads by weft_runtime_stats on any thread. */
        weft__stats stats;
        /* Debug mode's long-slice check's memory of this worker, written by a peer
         * while it holds this worker's poll_busy (rescue.c): the run count
         * it last saw, when it first saw it, and the run it warned for. */
        uint64_t obs_runs, obs_tick, obs_warned;
        /* Written by pthread_create in weft_runtime_new, read by
         * pthread_join in weft_runtime_free (the creating and the freeing
         * thread; the worker itself never reads it). */
        pthread_t thread;
    };
} __attribute__((aligned(64))) weft__worker;

typedef struct weft__task_chunk {
    struct weft__task_chunk *next;
    _Atomic unsigned orphans; /* handles still held after the runtime was freed */
    weft__task tasks[WEFT_TASK_CHUNK];
} weft__task_chunk;

struct weft_runtime {
    uint64_t id;                /* unique per runtime made in this process */
    unsigned nworkers;
    int backend;                /* WEFT_BACKEND_EPOLL or _URING (every worker's poller) */
    weft__worker **workers;
    weft__inject inject;

    /* Idle coordination (see the protocol at the top of idle.c). */
    _Atomic uint64_t idle;      /* unparked << 32 | searching */
    pthread_mutex_t idle_lock;
    unsigned *sleepers;
    unsigned nsleepers;

    _Atomic int shutdown;
    _Atomic int watcher;        /* a sleeping worker that wakes to rescue stuck peers */
    weft__stack_pool stacks;
    unsigned default_cls;

    /* Control blocks: every chunk ever made, and the shared free list. */
    pthread_mutex_t tfree_lock;
    weft__task *tfree;
    unsigned ntfree;
    weft__task_chunk *chunks;
    _Atomic uint64_t ext_ids;

    /* Services that own threads or descriptors beside the workers register
     * a stop hook here; weft_runtime_free calls it after the workers have
     * stopped and before tasks are discarded. */
    void *pools[2];                          /* blocking and compute pools, made on first use */
    void (*blocking_stop)(struct weft_runtime *rt);
    /* Withdraws a queued external job at weft_cancel (returns 1 if it did). */
    int (*blocking_cancel)(weft__task *t);
    pthread_mutex_t services_lock;           /* guards making `blocking` and friends */

    int64_t start_ns;
    /* Debug mode (WEFT_DEBUG=1 or weft_runtime_set_debug): the long-slice
     * threshold in ms, 0 when off. Relaxed: workers copy it per loop. */
    _Atomic uint32_t debug_ms;
    int dump_signal;            /* SIGQUIT dumps this runtime (dump.c) */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned started;
};

/* The worker's poll lock (see weft__worker.poll_busy). The owner takes it;
 * a peer only ever tries it. */
static inline void weft__poll_lock(weft__worker *w)
{
    while (atomic_exchange_explicit(&w->poll_busy, 1, memory_order_acquire))
        weft__cpu_relax();
}

static inline void weft__poll_unlock(weft__worker *w)
{
    atomic_store_explicit(&w->poll_busy, 0, memory_order_release);
}

/* A full (seq_cst) fence. GCC's TSan does not model fences and rejects
 * them, so there a seq_cst read-modify-write stands in (also a full barrier
 * on x86-64 and aarch64). */
static inline void weft__fence(void)
{
#ifdef WEFT_TSAN
    static _Atomic int fence_word;
    atomic_fetch_add_explicit(&fence_word, 0, memory_order_seq_cst);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* Records what the running task t waits on, for the wait it has just
 * begun (weft__wait_prepare / waiter_init / wnode_init bumped its sequence):
 * three plain stores to t's own cold line (task.h's obs). A dump
 * reads them only after holding the task (weft__state_hold's acquire, which
 * the park's release publishes). A wait without a note shows as "waiting
 * (other)": the sequence in `wait` no longer matches. */
static inline void weft__wait_note(weft__task *t, unsigned kind, uint64_t obj, unsigned ev)
{
    if (!t)
        return;
    uint64_t seq = T_SEQ(atomic_load_explicit(&t->state, memory_order_relaxed));
    t->obs.wait = seq << 16 | (uint64_t)(ev & 0xff) << 8 | kind;
    t->obs.wait_obj = obj;
    t->obs.wait_tick = t->worker->now_tick;
}

/* ---- symbol.c: "name+0xoff (module)", or "module+0xoff", into buf; the
 * length snprintf reports. weft__peek_word: an aligned word of another
 * thread's data read as a snapshot outside the tools' view (a debugging
 * read that may race by design: the caller validates what it read). */
int weft__symbolize(const void *pc, char *buf, size_t n);
uint64_t weft__peek_word(const void *p);

/* ---- tls.c */

/* The worker the calling thread runs, or NULL. Reads the thread-local
 * through a call the compiler cannot fold or hoist across a suspension. */
weft__worker *weft__cur_worker(void);

/* ---- clock.c */

uint64_t weft__now_tick(weft_runtime *rt, int64_t ns);
int64_t weft__clock_ns(void);

/* ---- idle.c */

void weft__wake_sleepers(weft_runtime *rt);

/* ---- ready.c */

/* Makes t runnable (it must be ours to queue: just woken or just spawned). */
void weft__schedule(weft_runtime *rt, weft__task *t);

/* ---- sched.c */

/* Called right after every switch lands, with the worker it landed on. */
void weft__after_switch(weft__worker *w);
/* Suspends the running task self on w with the given ACT_* action and runs
 * something else. Returns the worker self resumed on (not for ACT_EXIT). */
weft__worker *weft__switch_out(weft__worker *w, weft__task *self, int action);
void weft__task_entry(void *arg, void *data);
/* weft_spawn, with the stack taken now rather than at the first run: for a
 * spawner that must hear of a missing stack (a group child that never ran
 * could never complete its record). Task only; NULL and errno EPERM,
 * ESHUTDOWN, ENOMEM. */
weft__task *weft__spawn_with_stack(weft_fn fn, void *arg);

/* ---- task.c (lifetime, and the waking side of waits) and suspend.c (the
 * waiting side: wait_prepare, park, waiter_init/wait, join, yield) */

weft__task *weft__task_new(weft_runtime *rt, weft__worker *w, weft_fn fn, void *arg,
                           const weft_spawn_opts *opts, int *err);
void weft__task_finish(weft__worker *w, weft__task *t);
/* weft_spawn_on_ex (rt given) or weft_spawn_ex (rt NULL) with `site` as the
 * spawn site a dump shows (create.c's spawns pass their caller's). */
weft_task *weft__spawn_at(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts, const void *site);
void weft__task_release(weft__worker *w, weft__task *t);
/* A control block for work that runs outside the workers (the blocking
 * pool): it has a handle and a join state like any task, but never gets a
 * stack or a run queue. NULL with *err set on failure (ENOMEM, ESHUTDOWN). */
weft__task *weft__task_new_external(weft_runtime *rt, weft_fn fn, void *arg, int *err);
#define WEFT_EXTERNAL_CLS 0xff /* stack_cls of an external block: it never gets a stack */
/* Completes such a block from any thread: publishes result, wakes a joiner,
 * drops the block's own reference. A block whose cancellation was
 * requested reports -ECANCELED to its joiner. */
void weft__task_complete_external(weft__task *t, void *result);
/* True once cancellation of t has been requested. */
static inline int weft__task_cancel_requested(weft__task *t)
{
    return atomic_load_explicit(&t->cancel, memory_order_acquire) != 0;
}
/* At weft_runtime_free, after every task's own reference is dropped: marks
 * blocks still held by handles as orphans (their chunks outlive the
 * runtime); then weft__task_free_chunks frees the other chunks. */
void weft__task_orphan_handles(weft_runtime *rt);
void weft__task_free_chunks(weft_runtime *rt);

/* The running task, or NULL outside a task. */
static inline weft__task *weft__cur_task(void)
{
    weft__worker *w = weft__cur_worker();
    return w ? w->current : NULL;
}

/* Waits. A wait is: token = weft__wait_prepare(self); register (self, token)
 * with every waker; loop { if condition: break; if (weft__park(self) < 0)
 * { unregister; return -ECANCELED; } }; unregister. Wakers set their
 * condition first, then weft__wake(t, token).
 * weft__park returns 0, or -ECANCELED when the task has been cancelled (and
 * is not shielded): then it does not suspend (or has just been woken for
 * it), and the caller must withdraw its registrations and return. */
uint64_t weft__wait_prepare(weft__task *self);
int weft__park(weft__task *self);
/* Cancellation is pending for self (requested and not shielded). */
static inline int weft__cancel_pending(const weft__task *self)
{
    return weft__unlikely(atomic_load_explicit(&((weft__task *)self)->cancel, memory_order_acquire)) &&
           self->shield == 0;
}
void weft__wake(weft__task *t, uint64_t token);
/* Adapter with the poller's and timer wheel's callback signature. */
void weft__wake_cb(weft__task *t, uint64_t token, void *ctx);

/* Waiters that work for tasks and plain threads alike. */
void weft__waiter_init(weft__waiter *wt);
void weft__waiter_fire(weft__waiter *wt);

/* The join word's finishing side (the joiner's side is the wait layer's,
 * wait.h, which writes down the protocol). */
/* The finisher's side: makes `done` (JOIN_DONE or JOIN_DISCARDED) t's final
 * join state and fires the waiter it displaces, if any. t->result must be
 * written before. */
static inline void weft__join_publish(weft__task *t, uintptr_t done)
{
    uintptr_t j = atomic_exchange_explicit(&t->join, done, memory_order_acq_rel);
    if (j > JOIN_DISCARDED)
        weft__waiter_fire((weft__waiter *)j);
}

/* The final state of a task (or external job) that has run to its end:
 * JOIN_DISCARDED if its cancellation was requested, else JOIN_DONE. */
static inline uintptr_t weft__join_outcome(weft__task *t)
{
    return atomic_load_explicit(&t->cancel, memory_order_acquire) ? JOIN_DISCARDED : JOIN_DONE;
}

/* Drops the handle's reference to a block whose runtime is gone (weft_join,
 * weft_detach after weft_runtime_free). */
void weft__task_orphan_release(weft__task *t);
/* Releases t's handle (weft_join, weft_detach): moves its generation on
 * (task.h) before the reference goes, since once it has the block may be
 * reused and the new handle must not match the released one. Only the
 * handle's holder writes `gen`, so a plain load and store do. */
static inline void weft__handle_release(weft__task *t)
{
    uint32_t g = atomic_load_explicit(&t->gen, memory_order_relaxed);
    atomic_store_explicit(&t->gen, (g + 1) & WEFT__HANDLE_GEN_MASK, memory_order_relaxed);
    if (weft__unlikely(!atomic_load_explicit(&t->rt, memory_order_acquire)))
        weft__task_orphan_release(t);
    else
        weft__task_release(weft__cur_worker(), t);
}
/* weft_cancel on a block whose handle has been checked (task.h). */
int weft__cancel(weft__task *t);
/* 0 once fired; -ECANCELED if the task was cancelled first: the waiter may
 * still fire later, so the caller withdraws it from wherever it is
 * registered, and if a firer already took it, waits with
 * weft__waiter_wait_nocancel (firing is imminent) and honours the event. */
int weft__waiter_wait(weft__waiter *wt);
void weft__waiter_wait_nocancel(weft__waiter *wt);

/* ---- deadlines: the one internal deadline type. Absolute ns on
 * weft__clock_ns; WEFT__NO_DEADLINE means none. Only the public layer
 * converts from milliseconds (weft__deadline_from_ms, wait.h). */
typedef int64_t weft__deadline;
#define WEFT__NO_DEADLINE INT64_MAX

/* ---- io.c: descriptor waits. */
/* Waits until fd is ready for events or the deadline passes; the ready
 * subset, -ETIMEDOUT, -EBADF, -ECANCELED... (see weft_wait_fd). level = 0:
 * the caller has just seen EAGAIN, so an edge must come and no poll() is
 * made first (weft's own calls); level = 1: weft_wait_fd's semantics, ready
 * at once if the descriptor is ready now. Tasks and plain threads alike. */
int weft__wait_fd(int fd, int events, weft__deadline deadline, int level);
/* poll() with a zero timeout: the ready subset of events, 0, or -errno. */
int weft__fd_ready_now(int fd, int events);
/* 1 if fd is in blocking mode (a descriptor weft did not make), 0 if not,
 * or -errno. */
int weft__fd_is_blocking(int fd);

/* Timed waits, wait queues, joins, shields and timers: wait.h. */


/* ---- blocking.c: runs fn(arg) on the blocking pool of the calling task's
 * runtime and waits for it (inline on a plain thread); 0 or -ECANCELED if
 * the caller was cancelled before the job started (it then never runs).
 * weft__blocking_remove withdraws a queued job (1 if it did). */
int weft__blocking_call(weft_fn fn, void *arg);
/* Pool sizes for weft_runtime_metrics: threads, idle threads, queued jobs. */
void weft__blocking_metrics(weft_runtime *rt, int compute, unsigned *threads, unsigned *idle, size_t *queued);
int weft__blocking_remove(weft__task *t);

/* ---- dump.c: debug mode and SIGQUIT from the environment, and the list
 * of runtimes the gdb extension reads, at weft_runtime_new; the
 * never-joined check at weft_runtime_free. */
void weft__obs_runtime_new(weft_runtime *rt);
/* Debug mode's long-slice check of every worker of rt that has not polled
 * for RESCUE_AFTER_MS (the check a passing peer makes, rescue.c), for a
 * runtime with no peer to pass by: dump.c's watchdog thread calls it for
 * single-worker runtimes. Any thread; rt must stay alive meanwhile. */
void weft__check_long_slices(weft_runtime *rt);
void weft__obs_runtime_leave(weft_runtime *rt);
void weft__obs_runtime_free(weft_runtime *rt);

/* Cooperative budget: every service operation that completes without
 * suspending calls this; when the slice's budget is spent it yields. */
void weft__coop_consume(void);

#endif
