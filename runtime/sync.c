/*
 * Coordination primitives: mutex, condition variable, semaphore, event,
 * wait group, once.
 *
 * Every object is a small pthread mutex (held only for a few instructions,
 * never across a park) plus a waiter queue (wait.h) under it. Wakers unlink
 * a node, store the outcome in it and fire it, all under the object's lock;
 * the waiter, once back, re-takes the lock before it looks at the node
 * again, so "still queued" (withdraw and report the timeout or
 * cancellation) and "fired" (report the outcome, which may hand it
 * something, such as the mutex) are decided under the lock and nothing is
 * ever lost.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>

/* ------------------------------------------------------------ wait queues */

typedef struct snode {
    weft__wnode node;
    const void *key; /* once: which flag */
} snode;

static void snode_init(snode *n, const void *key)
{
    weft__wnode_init(&n->node);
    n->key = key;
}

/* ------------------------------------------------------------ mutex */

struct weft_mutex {
    pthread_mutex_t lk;
    int locked;
    weft__wqueue q;
};

weft_mutex *weft_mutex_new(void)
{
    weft_mutex *m = weft__calloc(1, sizeof *m);
    if (!m) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&m->lk);
    return m;
}

void weft_mutex_free(weft_mutex *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lk);
    weft__free(m);
}

int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms)
{
    if (!m)
        return -EINVAL;
    int64_t deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&m->lk);
    if (!m->locked) {
        m->locked = 1;
        pthread_mutex_unlock(&m->lk);
        return 0;
    }
    int rc = weft__may_wait(deadline);
    if (rc < 0) {
        pthread_mutex_unlock(&m->lk);
        return rc;
    }
    snode n;
    snode_init(&n, NULL);
    weft__wait_note(n.node.w.task, WEFT__WAIT_MUTEX, (uint64_t)(uintptr_t)m, 0);
    weft__wq_push(&m->q, &n.node);
    rc = weft__wq_block(&m->q, &n.node, &m->lk, deadline);
    pthread_mutex_unlock(&m->lk);
    return rc; /* 0: unlock handed the mutex to us */
}

int weft_mutex_trylock(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    int rc = -EAGAIN;
    pthread_mutex_lock(&m->lk);
    if (!m->locked) {
        m->locked = 1;
        rc = 0;
    }
    pthread_mutex_unlock(&m->lk);
    return rc;
}

int weft_mutex_unlock(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    pthread_mutex_lock(&m->lk);
    if (!m->locked) {
        pthread_mutex_unlock(&m->lk);
        return -EPERM;
    }
    if (m->q.head)
        weft__wq_fire(&m->q, m->q.head, 0); /* hand-off: stays locked, now theirs */
    else
        m->locked = 0;
    pthread_mutex_unlock(&m->lk);
    return 0;
}

/* Re-takes m whatever happens (cond wait's exit path). */
static void mutex_lock_nocancel(weft_mutex *m)
{
    weft__task *sh = weft__shield_hold(weft__cur_task());
    weft_mutex_lock(m, -1);
    weft__shield_release(sh);
}

/* ------------------------------------------------------------ cond */

struct weft_cond {
    pthread_mutex_t lk;
    weft__wqueue q;
};

weft_cond *weft_cond_new(void)
{
    weft_cond *c = weft__calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&c->lk);
    return c;
}

void weft_cond_free(weft_cond *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lk);
    weft__free(c);
}

int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms)
{
    if (!c || !m)
        return -EINVAL;
    int64_t deadline = weft__deadline_from_ms(timeout_ms);
    int rc = weft__may_wait(deadline);
    if (rc < 0)
        return rc;
    snode n;
    snode_init(&n, NULL);
    weft__wait_note(n.node.w.task, WEFT__WAIT_COND, (uint64_t)(uintptr_t)c, 0);
    pthread_mutex_lock(&c->lk);
    weft__wq_push(&c->q, &n.node);
    pthread_mutex_unlock(&c->lk);
    /* Queued before m is released: a signal sent after that finds us. */
    if (weft_mutex_unlock(m) < 0) {
        weft__wq_withdraw(&c->q, &n.node, &c->lk); /* a signal that took us fired under c->lk */
        return -EPERM;
    }
    rc = weft__wq_wait(&c->q, &n.node, &c->lk, deadline); /* a signal that took us counts */
    mutex_lock_nocancel(m);
    return rc;
}

int weft_cond_signal(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    pthread_mutex_lock(&c->lk);
    if (c->q.head)
        weft__wq_fire(&c->q, c->q.head, 0);
    pthread_mutex_unlock(&c->lk);
    return 0;
}

int weft_cond_broadcast(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    pthread_mutex_lock(&c->lk);
    while (c->q.head)
        weft__wq_fire(&c->q, c->q.head, 0);
    pthread_mutex_unlock(&c->lk);
    return 0;
}

/* ------------------------------------------------------------ semaphore */

struct weft_sem {
    pthread_mutex_t lk;
    int64_t count;
    weft__wqueue q;
};

weft_sem *weft_sem_new(int64_t initial)
{
    if (initial < 0) {
        errno = EINVAL;
        return NULL;
    }
    weft_sem *s = weft__calloc(1, sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&s->lk);
    s->count = initial;
    return s;
}

void weft_sem_free(weft_sem *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lk);
    weft__free(s);
}

int weft_sem_acquire(weft_sem *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    int64_t deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&s->lk);
    if (s->count > 0) { /* waiters exist only while the count is 0 */
        s->count--;
        pthread_mutex_unlock(&s->lk);
        return 0;
    }
    int rc = weft__may_wait(deadline);
    if (rc < 0) {
        pthread_mutex_unlock(&s->lk);
        return rc;
    }
    snode n;
    snode_init(&n, NULL);
    weft__wait_note(n.node.w.task, WEFT__WAIT_SEM, (uint64_t)(uintptr_t)s, 0);
    weft__wq_push(&s->q, &n.node);
    rc = weft__wq_block(&s->q, &n.node, &s->lk, deadline);
    pthread_mutex_unlock(&s->lk);
    return rc;
}

int weft_sem_try_acquire(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    int rc = -EAGAIN;
    pthread_mutex_lock(&s->lk);
    if (s->count > 0) {
        s->count--;
        rc = 0;
    }
    pthread_mutex_unlock(&s->lk);
    return rc;
}

int weft_sem_release(weft_sem *s, int64_t n)
{
    if (!s || n <= 0)
        return -EINVAL;
    pthread_mutex_lock(&s->lk);
    if (!s->q.head && s->count > INT64_MAX - n) {
        pthread_mutex_unlock(&s->lk);
        return -EOVERFLOW;
    }
    while (n > 0 && s->q.head) {
        weft__wq_fire(&s->q, s->q.head, 0);
        n--;
    }
    s->count += n;
    pthread_mutex_unlock(&s->lk);
    return 0;
}

int64_t weft_sem_value(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->lk);
    int64_t v = s->count;
    pthread_mutex_unlock(&s->lk);
    return v;
}

/* ------------------------------------------------------------ event */

struct weft_event {
    pthread_mutex_t lk;
    _Atomic int set;
    weft__wqueue q;
};

weft_event *weft_event_new(void)
{
    weft_event *e = weft__calloc(1, sizeof *e);
    if (!e) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&e->lk);
    return e;
}

void weft_event_free(weft_event *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->lk);
    weft__free(e);
}

int weft_event_set(weft_event *e)
{
    if (!e)
        return -EINVAL;
    pthread_mutex_lock(&e->lk);
    atomic_store_explicit(&e->set, 1, memory_order_release);
    while (e->q.head)
        weft__wq_fire(&e->q, e->q.head, 0);
    pthread_mutex_unlock(&e->lk);
    return 0;
}

int weft_event_clear(weft_event *e)
{
    if (!e)
        return -EINVAL;
    pthread_mutex_lock(&e->lk);
    atomic_store_explicit(&e->set, 0, memory_order_release);
    pthread_mutex_unlock(&e->lk);
    return 0;
}

int weft_event_is_set(weft_event *e)
{
    return e && atomic_load_explicit(&e->set, memory_order_acquire);
}

int weft_event_wait(weft_event *e, int64_t timeout_ms)
{
    if (!e)
        return -EINVAL;
    if (atomic_load_explicit(&e->set, memory_order_acquire))
        return 0;
    int64_t deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&e->lk);
    int rc = 0;
    if (!atomic_load_explicit(&e->set, memory_order_relaxed)) {
        rc = weft__may_wait(deadline);
        if (rc == 0) {
            snode n;
            snode_init(&n, NULL);
            weft__wait_note(n.node.w.task, WEFT__WAIT_EVENT, (uint64_t)(uintptr_t)e, 0);
            weft__wq_push(&e->q, &n.node);
            rc = weft__wq_block(&e->q, &n.node, &e->lk, deadline);
        }
    }
    pthread_mutex_unlock(&e->lk);
    return rc;
}

/* ------------------------------------------------------------ wait group */

struct weft_wg {
    pthread_mutex_t lk;
    int64_t count;
    weft__wqueue q;
};

weft_wg *weft_wg_new(void)
{
    weft_wg *wg = weft__calloc(1, sizeof *wg);
    if (!wg) {
        errno = ENOMEM;
        return NULL;
    }
    weft__lock_init(&wg->lk);
    return wg;
}

void weft_wg_free(weft_wg *wg)
{
    if (!wg)
        return;
    pthread_mutex_destroy(&wg->lk);
    weft__free(wg);
}

int weft_wg_add(weft_wg *wg, int64_t n)
{
    if (!wg)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&wg->lk);
    if ((n < 0 && wg->count + n < 0) || (n > 0 && wg->count > INT64_MAX - n)) {
        rc = -EINVAL;
    } else {
        wg->count += n;
        if (wg->count == 0)
            while (wg->q.head)
                weft__wq_fire(&wg->q, wg->q.head, 0);
    }
    pthread_mutex_unlock(&wg->lk);
    return rc;
}

int weft_wg_done(weft_wg *wg) { return weft_wg_add(wg, -1); }

int weft_wg_wait(weft_wg *wg, int64_t timeout_ms)
{
    if (!wg)
        return -EINVAL;
    int64_t deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&wg->lk);
    int rc = 0;
    if (wg->count > 0) {
        rc = weft__may_wait(deadline);
        if (rc == 0) {
            snode n;
            snode_init(&n, NULL);
            weft__wait_note(n.node.w.task, WEFT__WAIT_WG, (uint64_t)(uintptr_t)wg, 0);
            weft__wq_push(&wg->q, &n.node);
            rc = weft__wq_block(&wg->q, &n.node, &wg->lk, deadline);
        }
    }
    pthread_mutex_unlock(&wg->lk);
    return rc;
}

/* ------------------------------------------------------------ once */

/* Flags are plain structs that are never freed, so waiters wait in a small
 * static table of queues hashed by the flag's address. */
#define ONCE_BUCKETS 64
static struct {
    pthread_mutex_t lk;
    weft__wqueue q;
} once_tab[ONCE_BUCKETS] = {[0 ... ONCE_BUCKETS - 1] = {PTHREAD_MUTEX_INITIALIZER, WEFT__WQUEUE_INIT}};

int weft_once(weft_once_flag *once, void (*fn)(void *arg), void *arg)
{
    if (!once || !fn)
        return -EINVAL;
    if (__atomic_load_n(&once->state, __ATOMIC_ACQUIRE) == 2)
        return 0;
    size_t b = ((uintptr_t)once >> 4) * 0x9E3779B97F4A7C15ull >> 58;
    int expect = 0;
    if (__atomic_compare_exchange_n(&once->state, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        fn(arg);
        pthread_mutex_lock(&once_tab[b].lk);
        __atomic_store_n(&once->state, 2, __ATOMIC_RELEASE);
        for (weft__wnode *n = once_tab[b].q.head, *next; n; n = next) {
            next = n->next;
            if (weft__container_of(n, snode, node)->key == once)
                weft__wq_fire(&once_tab[b].q, n, 0);
        }
        pthread_mutex_unlock(&once_tab[b].lk);
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&once_tab[b].lk);
    if (__atomic_load_n(&once->state, __ATOMIC_ACQUIRE) != 2) {
        rc = weft__may_wait(WEFT__NO_DEADLINE);
        if (rc == 0) {
            snode n;
            snode_init(&n, once);
            weft__wait_note(n.node.w.task, WEFT__WAIT_ONCE, (uint64_t)(uintptr_t)once, 0);
            weft__wq_push(&once_tab[b].q, &n.node);
            rc = weft__wq_block(&once_tab[b].q, &n.node, &once_tab[b].lk, WEFT__NO_DEADLINE);
        }
    }
    pthread_mutex_unlock(&once_tab[b].lk);
    return rc;
}
