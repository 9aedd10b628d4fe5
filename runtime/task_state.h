/*
 * The task state word and every transition on it.
 *
 * State word (`state`): seq << 2 | st.
 *   st RUNNING   the task runs (or is between running and parking)
 *      PARKED    suspended, registered wherever it waits; not queued
 *      QUEUED    in a run queue (or about to be)
 *      NOTIFIED  woken while RUNNING; the scheduler requeues it after the
 *                switch instead of parking it
 *   seq counts waits. A task starts a wait with weft__wait_prepare, which
 *   bumps seq and returns it as the token; wakers pass the token back, and a
 *   wake whose token is not the current seq is stale and does nothing.
 *
 *                       state_init (spawn; seq + 1)
 *                                |
 *                                v
 *        +----------------->  QUEUED  <-------------+---------------+
 *        |                       |                  |               |
 *        |                       | state_run        | state_yield   | state_yield,
 *        |                       | (seq kept)       |               | state_park
 *        |                       v                  |               |
 *    state_wake              +---------+------------+          +----------+
 *      (seq)   begin_wait +->|         |   state_wake(seq)     |          |
 *        |       (seq+1)  |  | RUNNING |---------------------->| NOTIFIED |
 *        |                +--|         |<----------------------|          |
 *        |                   +---------+   state_begin_wait    +----------+
 *        |                       |           (seq + 1)
 *        |                       | state_park
 *        |                       v
 *        +------------------  PARKED
 *
 * Who moves it:
 *  - the running task itself: state_begin_wait (RUNNING/NOTIFIED -> RUNNING,
 *    next seq);
 *  - its worker, after the task's switch has landed (the publish-after-switch
 *    rule in sched.c): state_yield, state_park; and state_run when the worker
 *    takes the task from a queue (it is then the worker's alone);
 *  - any thread holding a token: state_wake (RUNNING -> NOTIFIED or PARKED ->
 *    QUEUED, only while seq == token; whoever moves it to QUEUED queues it);
 *  - spawn, before anyone else can see the block: state_init;
 *  - a task dump (dump.c), to read a parked task's stack: state_hold
 *    (PARKED -> RUNNING, seq kept) and state_unhold (RUNNING -> PARKED, or
 *    NOTIFIED -> QUEUED and the dump queues it). While held the task is, to
 *    every waker, between registering and parking: a wake makes it NOTIFIED
 *    and queues nothing, so no worker resumes it on the stack being read.
 *    Only the task itself begins a wait, so the seq cannot move meanwhile.
 * No other transition exists; a task that exits leaves the word as it is
 * (the next life's state_init moves on from there). The transitions are inline:
 * they are on every switch and every wake-up.
 */
#ifndef WEFT_TASK_STATE_H
#define WEFT_TASK_STATE_H

#include <stdatomic.h>
#include <stdint.h>

#include "weft_assert.h"
#include "task.h"

enum { T_RUNNING = 0, T_PARKED = 1, T_QUEUED = 2, T_NOTIFIED = 3 };
#define T_ST(s) ((unsigned)((s) & 3u))
#define T_SEQ(s) ((s) >> 2)
#define T_MAKE(seq, st) (((uint64_t)(seq) << 2) | (st))

/* A (recycled) block starts a new life, QUEUED. The state keeps its sequence
 * across reuse, so tokens of the block's previous life can never match again. */
static inline void weft__state_init(weft__task *t)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    WEFT__ASSERT(T_ST(s) != T_PARKED); /* a parked task is never freed */
    uint64_t seq = T_SEQ(s) + 1;
    atomic_store_explicit(&t->state, T_MAKE(seq, T_QUEUED), memory_order_relaxed);
}

/* QUEUED -> RUNNING. The task is ours alone now (taken from a queue). Keep the
 * sequence: the wait it was woken from may need to see its own token again. */
static inline void weft__state_run(weft__task *t)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    WEFT__ASSERT(T_ST(s) == T_QUEUED);
    atomic_store_explicit(&t->state, T_MAKE(T_SEQ(s), T_RUNNING), memory_order_release);
}

/* RUNNING or NOTIFIED -> RUNNING with the next sequence: the running task
 * starts a wait. Returns the new sequence, the wait's token. */
static inline uint64_t weft__state_begin_wait(weft__task *self)
{
    uint64_t s = atomic_load_explicit(&self->state, memory_order_relaxed);
    uint64_t n;
    do {
        WEFT__ASSERT(T_ST(s) == T_RUNNING || T_ST(s) == T_NOTIFIED);
        n = T_MAKE(T_SEQ(s) + 1, T_RUNNING);
    } while (!atomic_compare_exchange_weak_explicit(&self->state, &s, n, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return T_SEQ(n);
}

/* After a yield's switch: RUNNING or NOTIFIED -> QUEUED; the caller queues
 * it. A wake that arrived while running (NOTIFIED) is absorbed: the task
 * runs again anyway and re-checks what it waits for. */
static inline void weft__state_yield(weft__task *p)
{
    uint64_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
    WEFT__ASSERT(T_ST(s) == T_RUNNING || T_ST(s) == T_NOTIFIED);
    atomic_store_explicit(&p->state, T_MAKE(T_SEQ(s), T_QUEUED), memory_order_release);
}

/* After a park's switch: RUNNING -> PARKED, returns 1 (parked: from now on a
 * waker may queue it); or NOTIFIED -> QUEUED, returns 0 (woken before it
 * finished parking: the caller queues it). */
static inline int weft__state_park(weft__task *p)
{
    uint64_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
    for (;;) {
        if (T_ST(s) == T_RUNNING) {
            if (atomic_compare_exchange_weak_explicit(&p->state, &s, T_MAKE(T_SEQ(s), T_PARKED),
                                                      memory_order_acq_rel, memory_order_acquire))
                return 1;
        } else {
            WEFT__ASSERT(T_ST(s) == T_NOTIFIED);
            atomic_store_explicit(&p->state, T_MAKE(T_SEQ(s), T_QUEUED), memory_order_release);
            return 0;
        }
    }
}

/* A wake for the wait `token`: RUNNING -> NOTIFIED, or PARKED -> QUEUED, in
 * which case it returns 1 and the caller must queue t. A stale token, or a
 * task already QUEUED or NOTIFIED, changes nothing (0). */
static inline int weft__state_wake(weft__task *t, uint64_t token)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (T_SEQ(s) != token)
            return 0; /* stale: the task has moved on to another wait */
        unsigned st = T_ST(s);
        if (st == T_RUNNING) {
            /* Between registering and parking: the scheduler will see
             * NOTIFIED after the switch and requeue instead of parking. */
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, T_MAKE(token, T_NOTIFIED),
                                                      memory_order_acq_rel, memory_order_acquire))
                return 0;
        } else if (st == T_PARKED) {
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, T_MAKE(token, T_QUEUED),
                                                      memory_order_acq_rel, memory_order_acquire))
                return 1;
        } else {
            return 0; /* already queued or notified */
        }
    }
}

/* A dump holds a parked task: PARKED -> RUNNING, seq kept. Returns 1 and
 * the seq if it held it; 0 if t is not parked now. The acquire pairs with
 * state_park's release: what the task wrote before it parked (its saved
 * context, its stack, its wait note) is visible to the holder. */
static inline int weft__state_hold(weft__task *t, uint64_t *seq)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (T_ST(s) != T_PARKED)
        return 0;
    if (!atomic_compare_exchange_strong_explicit(&t->state, &s, T_MAKE(T_SEQ(s), T_RUNNING),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    *seq = T_SEQ(s);
    return 1;
}

/* The end of a hold: RUNNING -> PARKED (returns 0), or, when a wake came
 * meanwhile, NOTIFIED -> QUEUED (returns 1: the caller queues t), as
 * state_park does after a switch. */
static inline int weft__state_unhold(weft__task *t, uint64_t seq)
{
    WEFT__ASSERT(T_SEQ(atomic_load_explicit(&t->state, memory_order_relaxed)) == seq); /* only the task begins a wait */
    (void)seq;
    return !weft__state_park(t);
}

/* The token of the wait t is in now (cancellation wakes whatever it waits
 * for: a stale token does nothing, a task not yet parked sees the flag before
 * it parks). */
static inline uint64_t weft__state_token(weft__task *t)
{
    return T_SEQ(atomic_load_explicit(&t->state, memory_order_seq_cst));
}

#endif
