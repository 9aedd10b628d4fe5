/*
 * Run queues: see queue.h for the shape.
 *
 * Memory orderings of the local queue:
 *  - The owner writes a slot (relaxed) and then publishes it with a release
 *    store of `tail`; a thief's acquire load of `tail` makes the slot visible.
 *  - Slots are claimed by a CAS on `head` (acq_rel): the owner's pop claims
 *    one by advancing `real`; a thief claims a range by advancing `real` while
 *    leaving `steal` behind, copies the range, then moves `steal` up to
 *    `real` with a second CAS, which releases the slots back to the owner.
 *  - The owner counts free space from `steal`, not `real`, so it never
 *    overwrites slots a thief is still copying.
 */
#include "lock.h"
#include "queue.h"
#include "alloc.h"

#include <errno.h>

static inline uint64_t pack(uint32_t steal, uint32_t real) { return weft__lq_pack(steal, real); }
static inline uint32_t steal_of(uint64_t h) { return weft__lq_steal_of(h); }
static inline uint32_t real_of(uint64_t h) { return weft__lq_real_of(h); }

void weft__lq_init(weft__lq *q)
{
    memset(q, 0, sizeof *q);
}

unsigned weft__lq_len(const weft__lq *q)
{
    uint64_t h = atomic_load_explicit(&((weft__lq *)q)->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&((weft__lq *)q)->tail, memory_order_acquire);
    return t - real_of(h);
}

weft__task *weft__lq_steal(weft__lq *victim, weft__lq *dst, unsigned *moved)
{
    *moved = 0;
    uint32_t dst_tail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    uint64_t dh = atomic_load_explicit(&dst->head, memory_order_acquire);
    /* Do not steal into a queue that is more than half full. */
    if (dst_tail - steal_of(dh) > WEFT_LQ_SIZE / 2)
        return NULL;

    uint64_t prev = atomic_load_explicit(&victim->head, memory_order_acquire);
    uint32_t n, src_real;
    for (;;) {
        uint32_t src_steal = steal_of(prev);
        src_real = real_of(prev);
        if (src_steal != src_real)
            return NULL; /* another thief is at work */
        uint32_t src_tail = atomic_load_explicit(&victim->tail, memory_order_acquire);
        n = src_tail - src_real;
        n -= n / 2;
        if (n == 0)
            return NULL;
        if (n > WEFT_LQ_SIZE / 2)
            n = WEFT_LQ_SIZE / 2;
        uint64_t next = pack(src_steal, src_real + n);
        if (atomic_compare_exchange_weak_explicit(&victim->head, &prev, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    for (uint32_t i = 0; i < n; i++) {
        weft__task *t = atomic_load_explicit(&victim->buf[(src_real + i) & WEFT_LQ_MASK],
                                             memory_order_relaxed);
        atomic_store_explicit(&dst->buf[(dst_tail + i) & WEFT_LQ_MASK], t, memory_order_relaxed);
    }
    /* Hand the copied slots back to the victim: steal catches up with real
     * (which the owner may have advanced meanwhile by popping). */
    prev = atomic_load_explicit(&victim->head, memory_order_acquire);
    for (;;) {
        uint64_t next = pack(real_of(prev), real_of(prev));
        if (atomic_compare_exchange_weak_explicit(&victim->head, &prev, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    *moved = n;
    /* Keep the last one to run now; publish the rest. */
    n--;
    weft__task *run = atomic_load_explicit(&dst->buf[(dst_tail + n) & WEFT_LQ_MASK], memory_order_relaxed);
    if (n)
        atomic_store_explicit(&dst->tail, dst_tail + n, memory_order_release);
    return run;
}

/* ------------------------------------------------------------ inject */

int weft__inject_init(weft__inject *g, unsigned nshards)
{
    if (nshards == 0)
        nshards = 1;
    if (nshards > WEFT_INJECT_MAX_SHARDS)
        nshards = WEFT_INJECT_MAX_SHARDS;
    g->shards = weft__aligned(64, nshards * sizeof *g->shards);
    if (!g->shards)
        return -ENOMEM;
    memset(g->shards, 0, nshards * sizeof *g->shards);
    for (unsigned i = 0; i < nshards; i++)
        weft__lock_init(&g->shards[i].lock);
    g->nshards = nshards;
    atomic_init(&g->nonempty, 0);
    atomic_init(&g->len, 0);
    return 0;
}

void weft__inject_destroy(weft__inject *g)
{
    for (unsigned i = 0; i < g->nshards; i++)
        pthread_mutex_destroy(&g->shards[i].lock);
    weft__free(g->shards);
    g->shards = NULL;
}

void weft__inject_push_batch(weft__inject *g, unsigned hint, weft__batch *b)
{
    if (!b->n)
        return;
    unsigned i = hint % g->nshards;
    weft__inject_shard *s = &g->shards[i];
    b->tail->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = b->head;
    else
        s->head = b->head;
    s->tail = b->tail;
    s->len += b->n;
    /* Set the bit while holding the lock, so a popper that empties the shard
     * and clears the bit (also under the lock) cannot erase our bit after we
     * set it. The bitmask update is seq_cst: it is the "publish" step of the
     * no-lost-wakeup protocol in idle.c. */
    atomic_fetch_or(&g->nonempty, (uint64_t)1 << i);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&g->len, b->n, memory_order_relaxed);
}

void weft__inject_push(weft__inject *g, unsigned hint, weft__task *t)
{
    weft__batch b = {t, t, 1};
    weft__inject_push_batch(g, hint, &b);
}

unsigned weft__inject_pop(weft__inject *g, unsigned start, unsigned max, weft__batch *out)
{
    out->head = out->tail = NULL;
    out->n = 0;
    uint64_t mask = atomic_load_explicit(&g->nonempty, memory_order_acquire);
    if (!mask || !max)
        return 0;
    for (unsigned k = 0; k < g->nshards && out->n < max; k++) {
        unsigned i = (start + k) % g->nshards;
        if (!(mask & ((uint64_t)1 << i)))
            continue;
        weft__inject_shard *s = &g->shards[i];
        if (pthread_mutex_trylock(&s->lock) != 0)
            continue; /* someone else is there; try the next shard */
        while (s->head && out->n < max) {
            weft__task *t = s->head;
            s->head = t->next;
            t->next = NULL;
            if (out->tail)
                out->tail->next = t;
            else
                out->head = t;
            out->tail = t;
            out->n++;
            s->len--;
        }
        if (!s->head) {
            s->tail = NULL;
            atomic_fetch_and(&g->nonempty, ~((uint64_t)1 << i));
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (out->n)
        atomic_fetch_sub_explicit(&g->len, out->n, memory_order_relaxed);
    return out->n;
}
