/*
 * Task lifetime: control blocks, spawn, exit, detach and cancel, and the
 * waking side of waits (weft__wake, weft__waiter_fire). The waiting side
 * (park, waiters' waits, join, yield) is in suspend.c, above the scheduler's
 * switch (sched.c); the state word's transitions are in task_state.h.
 *
 * Reference counting: a task starts with two references, one held by the
 * running task and one by its handle. Exit drops the first, join or detach
 * the second; the last one returns the control block to a pool. Blocks are
 * never given back to the allocator while the runtime lives (see task.h).
 *
 * Join: `join` is JOIN_OPEN until the task finishes (JOIN_DONE) or the
 * runtime discards it (JOIN_DISCARDED). A joiner installs a pointer to its
 * waiter with a CAS from JOIN_OPEN; the finisher's exchange to JOIN_DONE
 * returns that pointer and fires it. The result is written before the
 * exchange (release) and read after the joiner's acquire. The publish is
 * internal.h's weft__join_publish; the joiner's install, withdraw and wait
 * are the wait layer's (wait.h, which spells out the orderings), and so is
 * weft_join (wait.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------ control blocks */

/* The runtime's shared free list holds whole batches ("magazines"): a
 * batch is a list linked through free_next whose head records its length
 * in `id` and links to the next batch through `next`. Taking or giving a
 * batch is O(1) under the lock: walking blocks last touched on another core
 * while holding it would cost a cache miss per block.
 *
 * Takes one batch (making a chunk's worth when there is none). */
static weft__task *tfree_take(weft_runtime *rt, unsigned *got)
{
    pthread_mutex_lock(&rt->tfree_lock);
    weft__task *head = rt->tfree;
    if (head) {
        rt->tfree = head->next;
        *got = (unsigned)head->id;
        rt->ntfree -= *got;
        pthread_mutex_unlock(&rt->tfree_lock);
        return head;
    }
    weft__task_chunk *c = weft__aligned(64, sizeof *c);
    if (!c) {
        pthread_mutex_unlock(&rt->tfree_lock);
        *got = 0;
        return NULL;
    }
    /* Handles carry their generation in the bits this mask leaves out
     * (task.h); no Linux x86-64 or aarch64 allocator hands out more. */
    if (((uintptr_t)c & 63) || ((uintptr_t)(c + 1) >> 48)) {
        fprintf(stderr, "weft: task blocks at %p, above 2^48: join handles cannot carry "
                        "their generation on this system\n", (void *)c);
        abort();
    }
    /* Initialized before it is linked: a dump (dump.c) walks rt->chunks
     * from the head it reads under tfree_lock, and reads each block's
     * `live` and state. A cache line at a time, which the compiler writes
     * as vector stores (a 12 KiB memset is a library call, 128 bytes a
     * rep stos). */
    atomic_init(&c->orphans, 0);
    for (unsigned i = WEFT_TASK_CHUNK; i-- > 0;) {
        char *b = (char *)&c->tasks[i];
        _Static_assert(sizeof c->tasks[i] % 64 == 0 && sizeof c->tasks[i] <= 256, "whole lines, four at most");
        memset(b, 0, 64);
        memset(b + 64, 0, 64);
        if (sizeof c->tasks[i] > 128)
            memset(b + 128, 0, 64);
        if (sizeof c->tasks[i] > 192)
            memset(b + 192, 0, 64);
        c->tasks[i].free_next = i + 1 < WEFT_TASK_CHUNK ? &c->tasks[i + 1] : NULL;
    }
    c->next = rt->chunks;
    rt->chunks = c;
    pthread_mutex_unlock(&rt->tfree_lock);
    *got = WEFT_TASK_CHUNK;
    return &c->tasks[0];
}

static void tfree_give(weft_runtime *rt, weft__task *head, weft__task *tail, unsigned n)
{
    tail->free_next = NULL;
    head->id = n;
    pthread_mutex_lock(&rt->tfree_lock);
    head->next = rt->tfree;
    rt->tfree = head;
    rt->ntfree += n;
    pthread_mutex_unlock(&rt->tfree_lock);
}

static weft__task *tcb_alloc(weft_runtime *rt, weft__worker *w)
{
    if (w) {
        if (weft__unlikely(!w->task_free)) {
            unsigned got;
            w->task_free = tfree_take(rt, &got);
            w->ntask_free = got;
            if (!got)
                return NULL;
        }
        weft__task *t = w->task_free;
        w->task_free = t->free_next;
        w->ntask_free--;
        return t;
    }
    /* A plain thread spawning: a small per-thread cache, refilled in
     * batches, keeps the shared lock off the per-spawn path. Blocks cached
     * for a runtime that has since been freed (or a different one) are
     * simply dropped: their memory belongs to that runtime's chunks. */
    static __thread struct {
        uint64_t rt_id;
        weft__task *list;
    } ext;
    if (ext.rt_id != rt->id) {
        ext.rt_id = rt->id;
        ext.list = NULL;
    }
    if (!ext.list) {
        unsigned got;
        ext.list = tfree_take(rt, &got);
        if (!got)
            return NULL;
    }
    weft__task *t = ext.list;
    ext.list = t->free_next;
    return t;
}

static void tcb_free(weft_runtime *rt, weft__worker *w, weft__task *t)
{
    if (w && w->rt == rt) {
        t->free_next = w->task_free;
        w->task_free = t;
        if (weft__unlikely(++w->ntask_free > WEFT_TASK_POOL_MAX)) {
            /* Give half back so a worker that only finishes tasks does not
             * hoard what a spawning worker keeps needing. */
            weft__task *head = w->task_free, *tail = head;
            unsigned n = 1;
            while (n < WEFT_TASK_POOL_MAX / 2) {
                tail = tail->free_next;
                n++;
            }
            w->task_free = tail->free_next;
            w->ntask_free -= n;
            tfree_give(rt, head, tail, n);
        }
        return;
    }
    tfree_give(rt, t, t, 1);
}

weft__task *weft__task_new(weft_runtime *rt, weft__worker *w, weft_fn fn, void *arg,
                           const weft_spawn_opts *opts, int *err)
{
    unsigned cls = rt->default_cls;
    if (opts && opts->stack_size) {
        if (opts->stack_size > ((size_t)1 << 30) || weft__stack_class(opts->stack_size, &cls) < 0) {
            *err = EINVAL;
            return NULL;
        }
    }
    weft__task *t = tcb_alloc(rt, w);
    if (!t) {
        *err = ENOMEM;
        return NULL;
    }
    /* Names are rare: a heap copy (first 31 bytes) only when given. Made
     * first, so that without memory for it the spawn fails whole. */
    char *name = NULL;
    if (opts && opts->name) {
        size_t n = strnlen(opts->name, 31);
        if (!(name = weft__malloc(n + 1))) {
            tcb_free(rt, w, t);
            *err = ENOMEM;
            return NULL;
        }
        memcpy(name, opts->name, n);
        name[n] = 0;
    }
    weft__state_init(t);
    t->next = NULL;
    t->worker = w;
    t->stack = NULL;
    t->fn = fn;
    t->arg = arg;
    t->action = ACT_NONE;
    t->stack_cls = (uint8_t)cls;
    t->pinned = 0;
    t->budget = WEFT_BUDGET;
    atomic_store_explicit(&t->cancel, 0, memory_order_relaxed);
    t->shield = 0;
    t->scope = NULL; /* overlays free_next: the block is off its free list now */
    t->result = NULL;
    atomic_store_explicit(&t->join, JOIN_OPEN, memory_order_relaxed);
    atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
    atomic_store_explicit(&t->live, 1, memory_order_relaxed);
    t->rt = rt;
    if (w)
        t->id = (w->next_id++ * 64 + w->index) * 2;
    else
        t->id = atomic_fetch_add_explicit(&rt->ext_ids, 1, memory_order_relaxed) * 2 + 1;
    weft__free(t->name);
    t->name = name;
    return t;
}

void weft__handle_stale(const void *h, const char *call)
{
    fprintf(stderr,
            "weft: %s: stale join handle %p: it was already released by weft_join or "
            "weft_detach (its task block may run another task now)\n",
            call, h);
    abort();
}

void weft__task_release(weft__worker *w, weft__task *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    tcb_free(t->rt, w, t);
}

void weft__task_orphan_handles(weft_runtime *rt)
{
    /* Chunks that keep orphans are unlinked here, before any handle holder
     * can be released: from then on only the last orphan_release touches
     * such a chunk, and rt->chunks lists just the ones to free. */
    weft__task_chunk *keep = NULL, *c = rt->chunks;
    while (c) {
        weft__task_chunk *next = c->next;
        unsigned orphans = 0;
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++)
            orphans += atomic_load(&c->tasks[i].refs) > 0;
        if (orphans) {
            atomic_store(&c->orphans, orphans);
            for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
                weft__task *t = &c->tasks[i];
                if (atomic_load(&t->refs) > 0) {
                    /* The release store of rt publishes free_next. */
                    t->free_next = (weft__task *)c;
                    atomic_store_explicit(&t->rt, NULL, memory_order_release);
                }
            }
        } else {
            c->next = keep;
            keep = c;
        }
        c = next;
    }
    rt->chunks = keep;
}

void weft__task_free_chunks(weft_runtime *rt)
{
    weft__task_chunk *c = rt->chunks;
    while (c) {
        weft__task_chunk *next = c->next;
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++)
            weft__free(c->tasks[i].name);
        weft__free(c);
        c = next;
    }
    rt->chunks = NULL;
}

/* A handle outliving its runtime: the last one frees the chunk. */
void weft__task_orphan_release(weft__task *t)
{
    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    weft__task_chunk *c = (weft__task_chunk *)t->free_next;
    if (atomic_fetch_sub(&c->orphans, 1) == 1) {
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++)
            weft__free(c->tasks[i].name);
        weft__free(c);
    }
}

/* ------------------------------------------------------ exit */

/* Runs on the scheduler side after the task's last switch. */
void weft__task_finish(weft__worker *w, weft__task *t)
{
    char *top = weft__stack_top(t->stack);
    int deep = t->low_sp && t->low_sp < top - WEFT_STACK_WARM;
#ifdef WEFT_ASAN
    /* The exit path's frames never return, so their redzones stay poisoned;
     * instrumented prologues only poison redzones and assume the rest of a
     * new frame is clean, so the next task on this stack would be reported
     * for touching its own locals. */
    __asan_unpoison_memory_region(t->stack->lo, t->stack->size);
#endif
    weft__stack_put(&w->stacks, t->stack, deep);
    t->stack = NULL;
    weft__ctx_destroy(&t->ctx);
    atomic_store_explicit(&t->live, 0, memory_order_relaxed);
    weft__join_publish(t, weft__join_outcome(t));
    weft__task_release(w, t);
}

weft__task *weft__task_new_external(weft_runtime *rt, weft_fn fn, void *arg, int *err)
{
    if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed)) {
        *err = ESHUTDOWN;
        return NULL;
    }
    weft__worker *w = weft__cur_worker();
    if (w && w->rt != rt)
        w = NULL;
    weft__task *t = weft__task_new(rt, w, fn, arg, NULL, err);
    if (t) {
        t->stack_cls = WEFT_EXTERNAL_CLS;
        t->obs.site = NULL; /* a job's dump line shows no spawn site */
    }
    return t;
}

void weft__task_complete_external(weft__task *t, void *result)
{
    t->result = result;
    atomic_store_explicit(&t->live, 0, memory_order_relaxed);
    weft__join_publish(t, weft__join_outcome(t));
    weft__worker *w = weft__cur_worker();
    weft__task_release(w && w->rt == t->rt ? w : NULL, t);
}

/* ------------------------------------------------------ wakes */

void weft__wake(weft__task *t, uint64_t token)
{
    if (weft__state_wake(t, token))
        weft__schedule(t->rt, t);
}

void weft__wake_cb(weft__task *t, uint64_t token, void *ctx)
{
    (void)ctx;
    weft__wake(t, token);
}

void weft__waiter_fire(weft__waiter *wt)
{
    /* Read everything first: once `fired` is set the waiter may return and
     * its memory (on the waiter's stack) may be gone. */
    weft__task *t = wt->task;
    uint64_t token = wt->token;
    atomic_store_explicit(&wt->fired, 1, memory_order_release);
    if (t)
        weft__wake(t, token);
    else
        syscall(SYS_futex, &wt->fired, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ------------------------------------------------------ public API */

/* The spawns take the site a dump shows (their caller's return address) as
 * an argument: always inlined into each public entry, so each records its
 * own caller, at the cost of one store. */
static inline __attribute__((always_inline)) weft_task *
spawn_here(weft_fn fn, void *arg, const weft_spawn_opts *opts, const void *site)
{
    weft__worker *w = weft__cur_worker();
    if (!w || !w->current) {
        errno = EPERM;
        return NULL;
    }
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    weft_runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed)) {
        errno = ESHUTDOWN;
        return NULL;
    }
    int err = 0;
    weft__task *t = weft__task_new(rt, w, fn, arg, opts, &err);
    if (!t) {
        errno = err;
        return NULL;
    }
    weft_task *h = weft__handle(t);
    t->obs.site = site;
    weft__schedule(rt, t);
    return h;
}

weft_task *weft_spawn_ex(weft_fn fn, void *arg, const weft_spawn_opts *opts)
{
    return spawn_here(fn, arg, opts, __builtin_return_address(0));
}

weft_task *weft_spawn(weft_fn fn, void *arg) { return spawn_here(fn, arg, NULL, __builtin_return_address(0)); }

static inline __attribute__((always_inline)) weft_task *
spawn_on(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts, const void *site)
{
    if (!rt || !fn) {
        errno = EINVAL;
        return NULL;
    }
    if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed)) {
        errno = ESHUTDOWN;
        return NULL;
    }
    weft__worker *w = weft__cur_worker();
    if (w && (w->rt != rt || !w->current))
        w = NULL;
    int err = 0;
    weft__task *t = weft__task_new(rt, w, fn, arg, opts, &err);
    if (!t) {
        errno = err;
        return NULL;
    }
    weft_task *h = weft__handle(t);
    t->obs.site = site;
    weft__schedule(rt, t);
    return h;
}

weft_task *weft_spawn_on_ex(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts)
{
    return spawn_on(rt, fn, arg, opts, __builtin_return_address(0));
}

weft_task *weft_spawn_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    return spawn_on(rt, fn, arg, NULL, __builtin_return_address(0));
}

/* create.c's spawns, with their own caller as the site. */
weft_task *weft__spawn_at(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts, const void *site)
{
    return rt ? spawn_on(rt, fn, arg, opts, site) : spawn_here(fn, arg, opts, site);
}

void weft_detach(weft_task *h)
{
    if (!h)
        return;
    weft__handle_release(weft__handle_get(h, "weft_detach"));
}

int weft_pin(void)
{
    weft__task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    t->pinned++;
    return 0;
}

int weft_unpin(void)
{
    weft__task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    if (t->pinned == 0)
        return -EINVAL;
    t->pinned--;
    return 0;
}

int weft_cancel(weft_task *h)
{
    if (!h)
        return -EINVAL;
    return weft__cancel(weft__handle_get(h, "weft_cancel"));
}

int weft__cancel(weft__task *t)
{
    if (!atomic_load_explicit(&t->rt, memory_order_acquire) ||
        atomic_load_explicit(&t->join, memory_order_acquire) == JOIN_DONE)
        return 0; /* finished (or its runtime is gone): nothing to do */
    atomic_store_explicit(&t->cancel, 1, memory_order_seq_cst);
    if (t->stack_cls == WEFT_EXTERNAL_CLS) {
        /* A blocking-pool job: if it is still queued it never runs. */
        weft_runtime *rt = atomic_load_explicit(&t->rt, memory_order_acquire);
        if (rt && rt->blocking_cancel)
            rt->blocking_cancel(t);
        return 0;
    }
    /* Wake it from whatever it waits for now (a stale token does nothing;
     * a task not yet parked sees the flag before it parks). */
    weft__wake(t, weft__state_token(t));
    return 0;
}

int weft_cancelled(void)
{
    weft__task *t = weft__cur_task();
    return t && atomic_load_explicit(&t->cancel, memory_order_acquire);
}

int weft_shield_begin(void)
{
    weft__task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    WEFT__ASSERT(t->shield < UINT8_MAX); /* nesting deeper than the counter wraps to zero */
    t->shield++;
    return 0;
}

int weft_shield_end(void)
{
    weft__task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    if (!t->shield)
        return -EINVAL;
    t->shield--;
    return 0;
}

int weft_in_task(void) { return weft__cur_task() != NULL; }

int weft_worker_index(void)
{
    weft__worker *w = weft__cur_worker();
    return w && w->current ? (int)w->index : -EPERM;
}

weft_runtime *weft_current_runtime(void)
{
    weft__worker *w = weft__cur_worker();
    return w && w->current ? w->rt : NULL;
}
