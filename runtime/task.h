/*
 * The task control block and its state word.
 *
 * A task that has been spawned but has not run yet is only this block: it
 * takes a stack from its worker's warm cache when it first runs and gives it
 * back the moment it finishes.
 *
 * Control blocks are never returned to the allocator while their runtime
 * lives; they are recycled through per-worker free lists. That makes a late
 * wake-up of a task that has moved on (a timer firing after the task resumed
 * for another reason, on another worker) safe: the block is still there, and
 * the wait token in the state word tells the wake that it is stale.
 *
 * The state word (`state`), its encoding and its transitions are in
 * task_state.h.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../include/weft.h"
#include "context.h"
#include "stack.h"

/* What the scheduler does with the task that just switched away. */
enum { ACT_NONE = 0, ACT_YIELD, ACT_PARK, ACT_EXIT };

/* Join state (`join`): JOIN_OPEN, JOIN_DONE, JOIN_DISCARDED (cancelled, or
 * discarded by weft_runtime_free: joins report -ECANCELED), or the address
 * of the waiter of a join in progress. */
#define JOIN_OPEN ((uintptr_t)0)
#define JOIN_DONE ((uintptr_t)1)
#define JOIN_DISCARDED ((uintptr_t)2)
/* stack_cls of a task dropped at its first run because no stack could be
 * had: its joins report -ENOMEM. Written before the join word's exchange to
 * JOIN_DISCARDED (acq_rel), read after a joiner's acquire of it. */
#define WEFT_NO_STACK_CLS 0xfe

struct weft_runtime;
struct weft__worker;

struct weft_task {
    /* Hot: one cache line, touched on every switch and wake-up. */
    weft__ctx ctx;
    _Atomic uint64_t state;
    struct weft_task *next;        /* run-queue links (inject shards, pinned lists) */
    struct weft__worker *worker;   /* worker running it now, or last */
    weft__stack *stack;            /* NULL until first run */
    weft_fn fn;
    void *arg;
    uint8_t action;                /* ACT_* for the scheduler after the switch */
    uint8_t stack_cls;
    uint16_t pinned;               /* pin depth; > 0: only `worker` may run it */
    uint16_t budget;               /* cooperative operations left in this slice */
    _Atomic uint8_t cancel;        /* cancellation requested (sticky) */
    uint8_t shield;                /* > 0: cancellation held off (task-only) */

    /* Cold: spawn, exit, join. */
    char *low_sp;                  /* deepest saved stack pointer (trim hint) */
    void *result;
    _Atomic uintptr_t join;
    struct weft_runtime *_Atomic rt; /* NULL once the runtime is freed (handle orphaned) */
    union {
        /* On a free list, or orphaned (task.c): the list link / chunk. */
        struct weft_task *free_next;
        /* While the task lives: its innermost open deadline scope
         * (weft_deadline_push, wait.c), NULL for none. Per task, so it
         * moves with the task; only the task itself reads or writes it. */
        struct weft_deadline *scope;
    };
    uint64_t id;
    char *name;                    /* NULL unless spawned with a name (heap copy) */
    _Atomic uint16_t refs;         /* 1 for the running task + 1 for the handle */
    _Atomic uint16_t live;         /* spawned and not yet finished */
    _Atomic uint32_t gen;          /* handle generation: moves on when the handle is released */

    /* Observability (dump.c, metrics.c): a third line, off the switch path.
     * site is stored at spawn before the task is queued; the wait fields by
     * the task itself (weft__wait_note), read by a dump only while it holds
     * the task (task_state.h's hold); the probe fields by whoever queues a
     * sampled task, before the push, read by the worker that runs it. */
    struct {
        const void *site;          /* return address of the spawn call */
        uint64_t wait;             /* seq << 16 | ev << 8 | WEFT__WAIT_* kind */
        uint64_t wait_obj;         /* fd, deadline (ns), task id, object address */
        uint64_t wait_tick;        /* worker's now_tick when the wait began */
        int64_t ready_ns;          /* latency probe: when it was queued; 0: not one */
        weft__stack *probe_stack;  /* latency probe: its stack, while `stack` is NULL */
    } obs __attribute__((aligned(64)));
} __attribute__((aligned(64)));

typedef struct weft_task weft__task;

/* A waiter: a task (or a plain thread) waiting for one event. Fired once. */
typedef struct weft__waiter {
    weft__task *task;   /* NULL when a plain thread waits */
    uint64_t token;
    _Atomic uint32_t fired; /* futex word for thread waiters */
    int result;
} weft__waiter;


/* Join handles. The weft_task * a caller holds is not the block's address:
 * it carries the block's handle generation (`gen`, bumped each time a
 * handle of the block is released by weft_join or weft_detach), 6 bits in
 * the low bits the block's 64-byte alignment leaves free and 16 in the bits
 * above 48 (user addresses on x86-64 and aarch64 Linux fit in 48 bits;
 * tfree_take checks each chunk). A call given a handle whose generation is
 * no longer the block's has been given a released handle, whatever task
 * the block runs now: it aborts naming the call (weft__handle_stale).
 * A released handle passes the check only when its block has since been
 * released a multiple of 2^22 times (the generation wraps). The check reads
 * the block, so a handle used after its runtime was freed and the handle
 * released is not checked (the block may be gone).
 *
 * Ordering: only the handle's holder bumps `gen`, before it drops the
 * handle's reference (acq_rel in weft__task_release), so a spawn that
 * reuses the block reads the bumped value; a stale call ordered after the
 * release by the program sees it too. Relaxed is enough for both. */
#define WEFT__HANDLE_GEN_MASK ((1u << 22) - 1) /* `gen` stays below 2^22 */
#define WEFT__HANDLE_ADDR_MASK ((uintptr_t)0x0000ffffffffffc0u)

static inline struct weft_task *weft__handle_ptr(const struct weft_task *h)
{
    return (struct weft_task *)((uintptr_t)h & WEFT__HANDLE_ADDR_MASK);
}

/* The bits generation g adds to a block's address: g rotated right by 16,
 * so its low 16 bits land above bit 48 and the next 6 in the low bits (one
 * rotate to make, one to check). */
static inline uintptr_t weft__handle_tag(uint32_t g)
{
    uint64_t x = g;
    return (uintptr_t)(x >> 16 | x << 48);
}

/* The handle of t for its current generation. */
static inline struct weft_task *weft__handle(struct weft_task *t)
{
    uint32_t g = atomic_load_explicit(&t->gen, memory_order_relaxed);
    return (struct weft_task *)((uintptr_t)t | weft__handle_tag(g));
}

/* Aborts with a message naming `call` (a released handle was passed). */
void weft__handle_stale(const void *h, const char *call) __attribute__((noreturn, cold));

/* The block of handle h (not NULL), after checking that h was not released. */
static inline struct weft_task *weft__handle_get(const struct weft_task *h, const char *call)
{
    struct weft_task *t = weft__handle_ptr(h);
    uint32_t g = atomic_load_explicit(&t->gen, memory_order_relaxed);
    if (__builtin_expect((uintptr_t)h != ((uintptr_t)t | weft__handle_tag(g)), 0))
        weft__handle_stale(h, call);
    return t;
}

#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && defined(__x86_64__)
_Static_assert(offsetof(struct weft_task, low_sp) == 64, "hot fields fill exactly one cache line");
_Static_assert(sizeof(struct weft_task) == 192, "a task control block is three cache lines (the third cold)");
#endif

#endif
