/*
 * Per-worker hierarchical timing wheel: 6 levels of 64 slots, 1 ms per slot at
 * level 0 (64^6 ms, about 2.2 years, of range). O(1) insert and cancel; expiry
 * walks at most 6 bitmasks to find the next deadline. The wheel knows
 * deadlines and opaque waiters (task + wait token); firing hands them to a
 * callback, it does not know what a task is.
 *
 * Ownership: a wheel is not thread-safe. Its worker uses it, and a peer
 * may fire its due timers while the worker is stuck in a long task; the
 * scheduler serializes the two with a per-worker lock (weft__poll_lock).
 * "Owner only" below means: under that lock. Another thread cancels an entry
 * without the lock by flipping its state and pushing it on the wheel's
 * lock-free cancel stack; the next poll unlinks and frees it.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT_WHEEL_LEVELS 6
#define WEFT_WHEEL_SLOTS 64

struct weft_task;

enum { TIMER_ARMED = 0, TIMER_FIRED = 1, TIMER_CANCELLED = 2 };

typedef struct weft__timer {
    struct weft__timer *next, *prev; /* slot list (owner only) */
    struct weft__timer *cancel_next; /* remote cancel stack */
    uint64_t deadline;               /* ms tick */
    struct weft_task *task;
    uint64_t token;
    struct weft__wheel *owner;
    _Atomic uint64_t state; /* gen << 2 | TIMER_*; gen changes on every reuse */
    uint8_t linked, lvl, slot;
} weft__timer;

typedef struct weft__wheel {
    uint64_t elapsed;                /* ms tick the wheel has advanced to */
    uint64_t occupied[WEFT_WHEEL_LEVELS];
    weft__timer *slots[WEFT_WHEEL_LEVELS][WEFT_WHEEL_SLOTS];
    size_t count;
    weft__timer *_Atomic cancels;    /* pushed by other threads */
    weft__timer *free;               /* recycled entries (never freed before the wheel) */
} weft__wheel;

/* What a waiter keeps to cancel its entry later: the entry may have fired and
 * been reused meanwhile, which the generation detects. */
typedef struct weft__timer_ref {
    weft__timer *t;
    uint64_t gen;
} weft__timer_ref;

#define WEFT_NO_DEADLINE UINT64_MAX

void weft__wheel_init(weft__wheel *w, uint64_t now_tick);
void weft__wheel_destroy(weft__wheel *w);

/* Owner only. Arms an entry (ref->t NULL on ENOMEM). A deadline at or
 * before the wheel's time fires at the next poll. Entries are recycled but
 * never freed while the wheel lives, so a late cancel is always safe. */
int weft__timer_add(weft__wheel *w, uint64_t deadline_tick, struct weft_task *task,
                    uint64_t token, weft__timer_ref *ref);
/* Any thread; harmless if the entry fired already. `on_owner` says the
 * caller holds the wheel's serialization (see Ownership above). */
void weft__timer_cancel(weft__timer_ref ref, int on_owner);
/* Any thread, without the serialization: 0 once the entry has fired or been
 * cancelled (nothing left to cancel), 1 while it may still be armed. */
static inline int weft__timer_maybe_armed(weft__timer_ref ref)
{
    return ref.t &&
           atomic_load_explicit(&ref.t->state, memory_order_relaxed) == (ref.gen << 2 | TIMER_ARMED);
}

typedef void (*weft__timer_fire_fn)(struct weft_task *task, uint64_t token, void *ctx);
/* Owner only. Advances to now_tick, firing entries whose deadline has come,
 * in deadline order, at most max of them (the rest fire first next time:
 * a worker that wakes late takes only what its run queue can hold, so a
 * burst of due timers never spills to the global queue out of order).
 * Returns the number fired. */
unsigned weft__wheel_poll(weft__wheel *w, uint64_t now_tick, unsigned max, weft__timer_fire_fn fire,
                          void *ctx);
/* Earliest pending deadline tick, or WEFT_NO_DEADLINE. */
uint64_t weft__wheel_next(weft__wheel *w);

#endif
