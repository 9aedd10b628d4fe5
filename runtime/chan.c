/*
 * Channels (bounded MPMC, fixed element size, capacity 0 = rendezvous),
 * select over channel operations, and oneshots.
 *
 * A channel is a ring buffer, a word lock (lock.h's weft__wlock: a
 * compare-exchange to take it, an exchange to give it back) and two waiter
 * queues (wait.h) of parked operations: senders (waiting while full) and
 * receivers (waiting while empty). Invariants under the lock: receivers wait only while the buffer is
 * empty, senders only while it is full; after close neither queue holds a
 * live node. An operation that finds a parked peer completes both sides at
 * once: it copies the element straight into the receiver's destination (or
 * out of the sender's source into the freed buffer slot), stores the
 * outcome in the peer's node and fires it, all under the lock. The peer
 * re-takes the lock before it decides whether it was served or must
 * withdraw, so a timed-out or cancelled operation never loses an element.
 *
 * Select parks one node per case, all sharing one waiter and one `claimed`
 * word. A waker must win the claim (0 -> case + 1) before it may complete a
 * select's node; a node whose select was claimed elsewhere (or withdrawn,
 * -1) is dead, and whoever meets it unlinks it. While registering, a select
 * holds the locks of all its channels (taken in address order, as Go does),
 * so no one can complete it before it has parked on every channel, and its
 * own claim is uncontended until then. Claims are never undone.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>

typedef struct csel {
    weft__waiter w;
    _Atomic int claimed; /* 0 open, k + 1 case k completed, -1 withdrawn */
    int result;
} csel;

/* A parked operation. Its node's waiter and result serve a plain operation;
 * a select's nodes share the select's (sel). */
typedef struct cnode {
    weft__wnode node;
    void *elem;     /* send: the source; recv: the destination */
    csel *sel;
    int idx;
} cnode;

static inline cnode *cnode_of(weft__wnode *n) { return weft__container_of(n, cnode, node); }

struct weft_chan {
    weft__wlock lk; /* lock.h: two atomic operations on the uncontended path */
    size_t cap, esz;
    size_t head, count;
    int closed;
    weft__wqueue sendq, recvq;
    unsigned char *buf;
};

/* Under the lock: the first node of q that we may complete, unlinked (dead
 * select nodes met on the way are unlinked too). NULL if none. */
static inline cnode *take_peer(weft__wqueue *q)
{
    while (q->head) {
        cnode *n = cnode_of(q->head);
        weft__wq_remove(q, &n->node);
        if (!n->sel)
            return n;
        int open = 0;
        if (atomic_compare_exchange_strong_explicit(&n->sel->claimed, &open, n->idx + 1,
                                                    memory_order_acq_rel, memory_order_acquire))
            return n;
    }
    return NULL;
}

/* Under the lock, after take_peer: the outcome, then the wake-up. The node
 * (and for a select, the whole select) must not be touched afterwards. */
static inline void peer_fire(cnode *n, int result)
{
    if (weft__unlikely(n->sel != NULL)) {
        n->sel->result = result;
        weft__waiter_fire(&n->sel->w);
    } else {
        n->node.result = result;
        weft__waiter_fire(&n->node.w);
    }
}

/* i < cap and head < cap, so one subtraction wraps (no division on the
 * buffered path). */
static inline unsigned char *slot(weft_chan *ch, size_t i)
{
    size_t k = ch->head + i;
    if (k >= ch->cap)
        k -= ch->cap;
    return ch->buf + k * ch->esz;
}

/* The element copy. 8 bytes (a pointer, a 64-bit value: what most channels
 * carry) is one load and one store instead of a call. */
static inline void copy_elem(const weft_chan *ch, void *dst, const void *src)
{
    if (weft__likely(ch->esz == sizeof(uint64_t)))
        memcpy(dst, src, sizeof(uint64_t));
    else
        memcpy(dst, src, ch->esz);
}

/* Under the lock. 0 sent, -EPIPE closed, -EAGAIN would wait. */
static inline __attribute__((always_inline)) int try_send_locked(weft_chan *ch, const void *elem)
{
    if (weft__unlikely(ch->closed))
        return -EPIPE;
    cnode *r = take_peer(&ch->recvq);
    if (r) {
        copy_elem(ch, r->elem, elem);
        peer_fire(r, 0);
        return 0;
    }
    if (ch->count < ch->cap) {
        copy_elem(ch, slot(ch, ch->count), elem);
        ch->count++;
        return 0;
    }
    return -EAGAIN;
}

/* Under the lock. 0 received, -EPIPE closed and drained, -EAGAIN would wait. */
static inline __attribute__((always_inline)) int try_recv_locked(weft_chan *ch, void *out)
{
    if (ch->count) {
        copy_elem(ch, out, slot(ch, 0));
        if (++ch->head == ch->cap)
            ch->head = 0;
        ch->count--;
        cnode *s = take_peer(&ch->sendq);
        if (s) {
            copy_elem(ch, slot(ch, ch->count), s->elem);
            ch->count++;
            peer_fire(s, 0);
        }
        return 0;
    }
    cnode *s = take_peer(&ch->sendq);
    if (s) {
        copy_elem(ch, out, s->elem);
        peer_fire(s, 0);
        return 0;
    }
    return ch->closed ? -EPIPE : -EAGAIN;
}

weft_chan *weft_chan_new(size_t capacity, size_t elem_size)
{
    if (elem_size == 0 || (capacity && elem_size > SIZE_MAX / capacity)) {
        errno = EINVAL;
        return NULL;
    }
    weft_chan *ch = weft__calloc(1, sizeof *ch);
    if (!ch) {
        errno = ENOMEM;
        return NULL;
    }
    if (capacity) {
        ch->buf = weft__malloc(capacity * elem_size);
        if (!ch->buf) {
            weft__free(ch);
            errno = ENOMEM;
            return NULL;
        }
    }
    weft__wlock_init(&ch->lk);
    ch->cap = capacity;
    ch->esz = elem_size;
    return ch;
}

void weft_chan_free(weft_chan *ch)
{
    if (!ch)
        return;
    weft__free(ch->buf);
    weft__free(ch);
}

/* Takes the lock and unlinks n if it is still queued on q: 1 if it was (no
 * one will complete it), 0 if a peer took it (and, since a peer completes
 * and fires a node under the lock, has fired it). wait.h's
 * weft__wq_withdraw for the channel's word lock. */
static int chan_withdraw(weft_chan *ch, weft__wqueue *q, weft__wnode *n)
{
    weft__wlock_lock(&ch->lk);
    int queued = n->queued;
    if (queued)
        weft__wq_remove(q, n);
    weft__wlock_unlock(&ch->lk);
    return queued;
}

/* A task's untimed wait for its node's fire: weft__waiter_wait without
 * the thread case and one call shallower. The frames a parked task leaves
 * on its stack are what it touches again, cold, when it resumes after a
 * thousand others ran (bench/chan's chan_pairs), so the chain from the
 * channel call to the switch is kept short. 0 once fired, -ECANCELED if
 * self was cancelled first (its node may still fire: the caller
 * withdraws). */
static inline int chan_park(weft__task *self, weft__waiter *wt)
{
    while (!atomic_load_explicit(&wt->fired, memory_order_acquire))
        if (weft__park(self) < 0)
            return atomic_load_explicit(&wt->fired, memory_order_acquire) ? 0 : -ECANCELED;
    return 0;
}

/* The waiting half of an operation, out of line so that the completing
 * half stays small: called with the lock held, after the operation found
 * it must wait; returns with it released. */
static __attribute__((noinline)) int chan_wait(weft_chan *ch, int send, void *elem, int64_t timeout_ms)
{
    weft__task *self = weft__cur_task();
    if (self && weft__cancel_pending(self)) {
        weft__wlock_unlock(&ch->lk);
        return -ECANCELED;
    }
    if (timeout_ms == 0) {
        weft__wlock_unlock(&ch->lk);
        return -ETIMEDOUT;
    }
    /* No clock read for "no timeout"; the wait clamps to self's scope. */
    weft__deadline deadline = timeout_ms == -1 ? WEFT__NO_DEADLINE : weft__deadline_from_ms(timeout_ms);
    cnode n = {.elem = elem};
    weft__waiter_init(&n.node.w);
    weft__wait_note(n.node.w.task, send ? WEFT__WAIT_CHAN_SEND : WEFT__WAIT_CHAN_RECV, (uint64_t)(uintptr_t)ch, 0);
    weft__wqueue *q = send ? &ch->sendq : &ch->recvq;
    weft__wq_push(q, &n.node);
    weft__wlock_unlock(&ch->lk);
    int rc;
    if (self && weft__deadline_effective_for(self, deadline) == WEFT__NO_DEADLINE)
        rc = chan_park(self, &n.node.w);
    else
        rc = weft__waiter_wait_until(&n.node.w, deadline);
    /* A peer that completed us fired under the lock: after a timeout or a
     * cancellation, a node no longer queued was served (or closed), and
     * that wins. */
    if (rc < 0 && !chan_withdraw(ch, q, &n.node))
        rc = 0;
    return rc == 0 ? n.node.result : rc;
}

/* Always inlined into its two callers below, so that `send` is a constant
 * and each direction's path has no branch on it. */
static inline __attribute__((always_inline)) int chan_op(weft_chan *ch, int send, void *elem,
                                                         int64_t timeout_ms, int try_only)
{
    if (weft__unlikely(!ch || !elem))
        return -EINVAL;
    weft__wlock_lock(&ch->lk);
    int rc = send ? try_send_locked(ch, elem) : try_recv_locked(ch, elem);
    if (weft__likely(rc != -EAGAIN) || try_only) {
        weft__wlock_unlock(&ch->lk);
        if (rc == 0)
            weft__coop_consume();
        return rc;
    }
    return chan_wait(ch, send, elem, timeout_ms);
}

static int chan_send(weft_chan *ch, const void *elem, int64_t timeout_ms, int try_only)
{
    return chan_op(ch, 1, (void *)elem, timeout_ms, try_only);
}
static int chan_recv(weft_chan *ch, void *elem_out, int64_t timeout_ms, int try_only)
{
    return chan_op(ch, 0, elem_out, timeout_ms, try_only);
}

int weft_chan_send(weft_chan *ch, const void *elem) { return chan_send(ch, elem, -1, 0); }
int weft_chan_send_timeout(weft_chan *ch, const void *elem, int64_t timeout_ms)
{
    return chan_send(ch, elem, timeout_ms, 0);
}
int weft_chan_try_send(weft_chan *ch, const void *elem) { return chan_send(ch, elem, 0, 1); }
int weft_chan_recv(weft_chan *ch, void *elem_out) { return chan_recv(ch, elem_out, -1, 0); }
int weft_chan_recv_timeout(weft_chan *ch, void *elem_out, int64_t timeout_ms)
{
    return chan_recv(ch, elem_out, timeout_ms, 0);
}
int weft_chan_try_recv(weft_chan *ch, void *elem_out) { return chan_recv(ch, elem_out, 0, 1); }

int weft_chan_close(weft_chan *ch)
{
    if (!ch)
        return -EINVAL;
    weft__wlock_lock(&ch->lk);
    if (ch->closed) {
        weft__wlock_unlock(&ch->lk);
        return -EPIPE;
    }
    ch->closed = 1;
    cnode *n;
    while ((n = take_peer(&ch->recvq)))
        peer_fire(n, -EPIPE);
    while ((n = take_peer(&ch->sendq)))
        peer_fire(n, -EPIPE);
    weft__wlock_unlock(&ch->lk);
    return 0;
}

ssize_t weft_chan_len(weft_chan *ch)
{
    if (!ch)
        return -EINVAL;
    weft__wlock_lock(&ch->lk);
    size_t n = ch->count;
    weft__wlock_unlock(&ch->lk);
    return (ssize_t)n;
}

/* ------------------------------------------------------------ select */

static uint64_t sel_rand(void)
{
    static _Atomic uint64_t seed = 0x853c49e6748fea9bull;
    uint64_t x = atomic_fetch_add_explicit(&seed, 0x9E3779B97F4A7C15ull, memory_order_relaxed);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x;
}

int weft_select(weft_select_case *cases, int n, int64_t timeout_ms)
{
    if (!cases || n < 1 || n > WEFT_SELECT_MAX)
        return -EINVAL;
    weft_chan *locks[WEFT_SELECT_MAX];
    int nl = 0;
    for (int i = 0; i < n; i++) {
        if (cases[i].op != WEFT_SEND && cases[i].op != WEFT_RECV)
            return -EINVAL;
        weft_chan *ch = cases[i].chan;
        if (!ch)
            continue;
        if (!cases[i].elem)
            return -EINVAL;
        /* insert in address order, once */
        int j = nl;
        while (j > 0 && (uintptr_t)locks[j - 1] > (uintptr_t)ch)
            j--;
        if (j > 0 && locks[j - 1] == ch)
            continue;
        memmove(&locks[j + 1], &locks[j], (size_t)(nl - j) * sizeof locks[0]);
        locks[j] = ch;
        nl++;
    }
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    for (int i = 0; i < nl; i++)
        weft__wlock_lock(&locks[i]->lk);

    int start = (int)(sel_rand() % (uint64_t)n);
    for (int k = 0; k < n; k++) {
        int i = (start + k) % n;
        weft_chan *ch = cases[i].chan;
        if (!ch)
            continue;
        int rc = cases[i].op == WEFT_SEND ? try_send_locked(ch, cases[i].elem)
                                          : try_recv_locked(ch, cases[i].elem);
        if (rc != -EAGAIN) {
            for (int l = nl; l-- > 0;)
                weft__wlock_unlock(&locks[l]->lk);
            cases[i].result = rc;
            weft__coop_consume();
            return i;
        }
    }
    weft__task *self = weft__cur_task();
    int rc = 0;
    if (self && weft__cancel_pending(self))
        rc = -ECANCELED;
    else if (timeout_ms == 0)
        rc = -ETIMEDOUT;
    if (rc < 0) {
        for (int l = nl; l-- > 0;)
            weft__wlock_unlock(&locks[l]->lk);
        return rc;
    }

    csel s;
    weft__waiter_init(&s.w);
    weft__wait_note(s.w.task, WEFT__WAIT_SELECT, (uint64_t)n, 0);
    atomic_store_explicit(&s.claimed, 0, memory_order_relaxed);
    s.result = 0;
    cnode nodes[WEFT_SELECT_MAX];
    for (int i = 0; i < n; i++) {
        nodes[i].node.queued = 0;
        weft_chan *ch = cases[i].chan;
        if (!ch)
            continue;
        nodes[i].elem = cases[i].elem;
        nodes[i].sel = &s;
        nodes[i].idx = i;
        nodes[i].node.result = 0;
        weft__wq_push(cases[i].op == WEFT_SEND ? &ch->sendq : &ch->recvq, &nodes[i].node);
    }
    for (int l = nl; l-- > 0;)
        weft__wlock_unlock(&locks[l]->lk);

    rc = weft__waiter_wait_until(&s.w, deadline);
    if (rc < 0) {
        int open = 0;
        if (!atomic_compare_exchange_strong_explicit(&s.claimed, &open, -1, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            /* A channel completed a case first: it fires under its lock,
             * imminently. Honour it. */
            weft__waiter_wait_nocancel(&s.w);
            rc = 0;
        }
    }
    /* Withdraw the nodes still parked (the completed one is unlinked). */
    for (int i = 0; i < n; i++) {
        weft_chan *ch = cases[i].chan;
        if (ch)
            chan_withdraw(ch, cases[i].op == WEFT_SEND ? &ch->sendq : &ch->recvq, &nodes[i].node);
    }
    if (rc < 0)
        return rc;
    int won = atomic_load_explicit(&s.claimed, memory_order_acquire) - 1;
    cases[won].result = s.result;
    return won;
}

/* ------------------------------------------------------------ oneshot */

struct weft_oneshot {
    weft_chan *ch;
    _Atomic int sent;
};

weft_oneshot *weft_oneshot_new(size_t elem_size)
{
    weft_oneshot *o = weft__calloc(1, sizeof *o);
    if (!o) {
        errno = ENOMEM;
        return NULL;
    }
    o->ch = weft_chan_new(1, elem_size);
    if (!o->ch) {
        int e = errno;
        weft__free(o);
        errno = e;
        return NULL;
    }
    return o;
}

void weft_oneshot_free(weft_oneshot *o)
{
    if (!o)
        return;
    weft_chan_free(o->ch);
    weft__free(o);
}

int weft_oneshot_send(weft_oneshot *o, const void *elem)
{
    if (!o || !elem)
        return -EINVAL;
    if (atomic_exchange_explicit(&o->sent, 1, memory_order_acq_rel))
        return -EPIPE;
    int rc = weft_chan_try_send(o->ch, elem);
    if (rc == 0)
        weft_chan_close(o->ch); /* the value stays buffered; a second recv gets -EPIPE */
    return rc;
}

int weft_oneshot_recv(weft_oneshot *o, void *elem_out, int64_t timeout_ms)
{
    if (!o)
        return -EINVAL;
    return weft_chan_recv_timeout(o->ch, elem_out, timeout_ms);
}

int weft_oneshot_close(weft_oneshot *o)
{
    if (!o)
        return -EINVAL;
    if (atomic_exchange_explicit(&o->sent, 1, memory_order_acq_rel))
        return -EPIPE;
    return weft_chan_close(o->ch);
}
