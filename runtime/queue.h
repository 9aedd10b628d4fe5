/*
 * Run queues.
 *
 * Local queue: a bounded ring of WEFT_LQ_SIZE task pointers per worker, one
 * producer (its worker) and many consumers (its worker pops from the head,
 * idle peers steal half from the head). The head packs two 32-bit indices,
 * `steal` and `real`: while they differ a thief is copying the slots between
 * them, and no second thief may start (one stealer per victim at a time).
 * Indices are 32-bit and wrap; only their differences matter, and 2^32 is far
 * beyond any possible lag (so no ABA). The design follows Tokio's queue.
 *
 * Global (inject) queue: sharded linked lists, each under its own mutex, with
 * an atomic bitmask of non-empty shards, so that outside threads spawning at
 * once do not collapse on one lock and a worker can test for work with one load.
 */
#ifndef WEFT_QUEUE_H
#define WEFT_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "task.h"

#define WEFT_LQ_SIZE 256u
#define WEFT_LQ_MASK (WEFT_LQ_SIZE - 1)

typedef struct weft__lq {
    _Atomic uint64_t head; /* steal << 32 | real */
    char pad0[56];
    _Atomic uint32_t tail; /* written by the owner only */
    char pad1[60];
    weft__task *_Atomic buf[WEFT_LQ_SIZE];
} weft__lq;

typedef struct weft__batch {
    weft__task *head, *tail;
    unsigned n;
} weft__batch;

#define WEFT_INJECT_MAX_SHARDS 64

typedef struct weft__inject_shard {
    pthread_mutex_t lock;
    weft__task *head, *tail;
    size_t len;
} __attribute__((aligned(64))) weft__inject_shard;

typedef struct weft__inject {
    _Atomic uint64_t nonempty;  /* bit i: shard i may hold tasks */
    _Atomic size_t len;         /* approximate total */
    unsigned nshards;
    weft__inject_shard *shards;
} weft__inject;

void weft__lq_init(weft__lq *q);

/* The owner's push and pop are on every switch, so they are inline here;
 * the memory-ordering argument is at the top of queue.c. */
static inline uint64_t weft__lq_pack(uint32_t steal, uint32_t real) { return ((uint64_t)steal << 32) | real; }
static inline uint32_t weft__lq_steal_of(uint64_t h) { return (uint32_t)(h >> 32); }
static inline uint32_t weft__lq_real_of(uint64_t h) { return (uint32_t)h; }

/* Owner only, from weft__lq_push on a full ring with no thief at work (head
 * is both its indices). Claims the oldest half of the ring and returns it in
 * *b, followed by t, as a batch for the global queue (returns 1). Fails
 * (returns 0) if a thief moved the head meanwhile; the caller then retries
 * the push. */
static inline int weft__lq_push_overflow(weft__lq *q, weft__task *t, uint32_t head, weft__batch *b)
{
    const uint32_t n = WEFT_LQ_SIZE / 2;
    uint64_t expect = weft__lq_pack(head, head);
    if (!atomic_compare_exchange_strong_explicit(&q->head, &expect, weft__lq_pack(head + n, head + n),
                                                 memory_order_release, memory_order_relaxed))
        return 0;
    b->head = b->tail = NULL;
    b->n = 0;
    for (uint32_t i = 0; i < n; i++) {
        weft__task *x = atomic_load_explicit(&q->buf[(head + i) & WEFT_LQ_MASK], memory_order_relaxed);
        x->next = NULL;
        if (b->tail)
            b->tail->next = x;
        else
            b->head = x;
        b->tail = x;
        b->n++;
    }
    t->next = NULL;
    b->tail->next = t;
    b->tail = t;
    b->n++;
    return 1;
}

/* Owner only. Pushes t; if the ring is full, moves half of it plus t into
 * *overflow (a batch for the global queue) and returns 1, else 0. While a
 * thief is copying from a full ring, *overflow is t alone. */
static inline int weft__lq_push(weft__lq *q, weft__task *t, weft__batch *overflow)
{
    for (;;) {
        uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t steal = weft__lq_steal_of(h), real = weft__lq_real_of(h);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (tail - steal < WEFT_LQ_SIZE) {
            atomic_store_explicit(&q->buf[tail & WEFT_LQ_MASK], t, memory_order_relaxed);
            atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
            return 0;
        }
        if (steal != real) {
            /* A thief is emptying the queue right now: this one task goes
             * to the global queue alone. */
            t->next = NULL;
            overflow->head = overflow->tail = t;
            overflow->n = 1;
            return 1;
        }
        if (weft__lq_push_overflow(q, t, real, overflow))
            return 1;
    }
}

/* Owner only. Takes the oldest task, or returns NULL when the ring is empty. */
static inline weft__task *weft__lq_pop(weft__lq *q)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        uint32_t steal = weft__lq_steal_of(h), real = weft__lq_real_of(h);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (real == tail)
            return NULL;
        uint32_t next_real = real + 1;
        uint64_t next = steal == real ? weft__lq_pack(next_real, next_real) : weft__lq_pack(steal, next_real);
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return atomic_load_explicit(&q->buf[real & WEFT_LQ_MASK], memory_order_relaxed);
    }
}

/* Owner only. The task the next pop would return, without taking it; a thief
 * may take it meanwhile, so use the result only as a hint. */
static inline weft__task *weft__lq_peek(weft__lq *q)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t real = weft__lq_real_of(h);
    if (real == atomic_load_explicit(&q->tail, memory_order_relaxed))
        return NULL;
    return atomic_load_explicit(&q->buf[real & WEFT_LQ_MASK], memory_order_relaxed);
}

/* Thief: moves half (rounded up) of victim's tasks into dst (owned by the
 * caller) and returns one of them to run now, or NULL. *moved counts all. */
weft__task *weft__lq_steal(weft__lq *victim, weft__lq *dst, unsigned *moved);
/* Number of tasks (racy when others touch the queue). */
unsigned weft__lq_len(const weft__lq *q);
static inline int weft__lq_empty(const weft__lq *q) { return weft__lq_len(q) == 0; }

int weft__inject_init(weft__inject *g, unsigned nshards);
void weft__inject_destroy(weft__inject *g);
void weft__inject_push(weft__inject *g, unsigned shard_hint, weft__task *t);
void weft__inject_push_batch(weft__inject *g, unsigned shard_hint, weft__batch *b);
/* Takes up to max tasks, starting at shard start, in FIFO order per shard. */
unsigned weft__inject_pop(weft__inject *g, unsigned start, unsigned max, weft__batch *out);
static inline int weft__inject_empty(weft__inject *g)
{
    return atomic_load_explicit(&g->nonempty, memory_order_acquire) == 0;
}

#endif
