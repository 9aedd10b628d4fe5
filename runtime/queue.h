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
/* Owner only. Pushes t; if the ring is full, moves half of it plus t into
 * *overflow (a batch for the global queue) and returns 1, else 0. */
int weft__lq_push(weft__lq *q, weft__task *t, weft__batch *overflow);
/* Owner only. */
weft__task *weft__lq_pop(weft__lq *q);
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
