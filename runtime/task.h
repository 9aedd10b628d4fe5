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
    _Atomic int refs;              /* 1 for the running task + 1 for the handle */
    _Atomic int live;              /* spawned and not yet finished */

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


#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) && defined(__x86_64__)
_Static_assert(offsetof(struct weft_task, low_sp) == 64, "hot fields fill exactly one cache line");
_Static_assert(sizeof(struct weft_task) == 192, "a task control block is three cache lines (the third cold)");
#endif

#endif
