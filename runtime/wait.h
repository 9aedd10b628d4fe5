/*
 * The wait layer: what every service builds its waits from (sync.c, chan.c,
 * group.c, signal.c, blocking.c, io.c, net.c, dns.c, proc.c, time.c, and the
 * public join, weft_join, in wait.c). It sits on the scheduler's weft__wait_prepare /
 * weft__park / weft__wake and on the one-shot weft__waiter (internal.h); it
 * knows nothing of any one service.
 *
 *   deadlines    weft__deadline (internal.h): absolute ns on weft__clock_ns,
 *                WEFT__NO_DEADLINE for none. weft__deadline_from_ms is the
 *                only conversion from a caller's milliseconds (it applies
 *                the negative-timeout rule); every wait clamps to the
 *                task's deadline scope (weft__deadline_effective). Public entry
 *                points call it once, when the call starts, and pass the
 *                deadline down, so retries, partial progress and spurious
 *                wake-ups never stretch a call past what its caller asked.
 *   timed waits  weft__waiter_wait_until, weft__park_until, and the timer
 *                arm/disarm under them.
 *   wait queues  weft__wnode / weft__wqueue: a FIFO of waiters kept under
 *                the owning object's lock, with block and withdraw.
 *   joins        a waiter in a task's join word: install, withdraw, wait,
 *                and the finisher's publish.
 *   shields      a guard that holds cancellation off around a wait that
 *                must not be cut short.
 */
#ifndef WEFT_WAIT_H
#define WEFT_WAIT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* ------------------------------------------------------------ deadlines */

/* A timeout this long (2^40 ms, about 35 years) is as good as none, and
 * anything much longer would overflow in ns. */
#define WEFT__MAX_TIMEOUT_MS ((int64_t)1 << 40)

/* The calling task t's innermost deadline scope (weft_deadline_push):
 * WEFT__NO_DEADLINE when it has none, outside a task (t NULL), and while
 * its cancellation is shielded (a wait weft must complete is not cut short
 * by a scope either). */
static inline weft__deadline weft__deadline_scope(const weft__task *t)
{
    if (!t || !t->scope || t->shield)
        return WEFT__NO_DEADLINE;
    return t->scope->at_ns;
}

/* d clamped to t's scope: what a wait of t with deadline d really waits
 * until. Every wait below applies it (weft__may_wait, weft__park_until,
 * weft__waiter_wait_until, and so the queues and joins; weft__wait_fd), so
 * no suspension escapes a scope, calls with no timeout of their own
 * included. */
static inline weft__deadline weft__deadline_effective_for(const weft__task *t, weft__deadline d)
{
    weft__deadline s = weft__deadline_scope(t);
    return s < d ? s : d;
}

static inline weft__deadline weft__deadline_effective(weft__deadline d)
{
    return weft__deadline_effective_for(weft__cur_task(), d);
}

/* timeout_ms from a public call -> its deadline, the one converter. The
 * rules (weft.h's conventions): -1 is none; so is anything beyond
 * WEFT__MAX_TIMEOUT_MS (saturation: every deadline the clock could reach
 * is representable, the rest is "never"); 0 is "now": a wait with it only
 * looks; any other negative has passed already, as 0. The result is
 * clamped to the calling task's scope deadline, so a call's own loops
 * (retries, back-off, partial progress) stop at it too. */
static inline weft__deadline weft__deadline_from_ms(int64_t timeout_ms)
{
    weft__deadline d;
    if (timeout_ms == -1 || timeout_ms > WEFT__MAX_TIMEOUT_MS)
        d = WEFT__NO_DEADLINE;
    else
        d = weft__clock_ns() + (timeout_ms < 0 ? 0 : timeout_ms * 1000000);
    return weft__deadline_effective(d);
}

/* The clock has reached d (never for WEFT__NO_DEADLINE, which reads no
 * clock). */
static inline int weft__deadline_passed(weft__deadline d)
{
    return d != WEFT__NO_DEADLINE && weft__clock_ns() >= d;
}

/* Whether a caller that has found it must wait may start to: -ECANCELED for
 * a cancelled (unshielded) task, -ETIMEDOUT once the deadline has passed,
 * else 0. Checked before anything is queued, so a refused wait leaves no
 * trace. */
static inline int weft__may_wait(weft__deadline deadline)
{
    weft__task *self = weft__cur_task();
    if (self && weft__cancel_pending(self))
        return -ECANCELED;
    if (weft__deadline_passed(weft__deadline_effective_for(self, deadline)))
        return -ETIMEDOUT;
    return 0;
}

/* ------------------------------------------------------------ timers */

/* Arms a timer on self's current worker's wheel that wakes (self, token) at
 * the deadline (never before it; a deadline already passed fires at the
 * next poll). -ENOMEM without an entry. Must not be WEFT__NO_DEADLINE. */
int weft__timer_arm(weft__task *self, uint64_t token, weft__deadline deadline, weft__timer_ref *ref);
/* Safe whether or not the timer fired, from whichever worker self runs on
 * now, and with an empty ref ({NULL, 0}). */
void weft__timer_disarm(weft__task *self, weft__timer_ref ref);

/* One park of self in the wait identified by token, with a timer for the
 * deadline (none for WEFT__NO_DEADLINE). 0 when woken (by anything, the
 * timer included: the caller re-checks its condition and the clock),
 * -ECANCELED, -ENOMEM (no timer entry; then it did not park), or
 * -ETIMEDOUT without parking when self's scope deadline comes before
 * deadline and has passed (a wait is never longer than the scope;
 * -ECANCELED then if self is cancelled too). Whatever
 * it returns, the timer is disarmed: no wake from it outlives the call
 * except as a stale token. */
static inline int weft__park_until(weft__task *self, uint64_t token, weft__deadline deadline)
{
    weft__deadline eff = weft__deadline_effective_for(self, deadline);
    if (eff != deadline) {
        /* The scope ends first: its deadline is this wait's, and once it
         * has passed the wait is over (callers looping on their own
         * deadline would otherwise park again and again). */
        if (weft__clock_ns() >= eff)
            return weft__cancel_pending(self) ? -ECANCELED : -ETIMEDOUT; /* cancellation first */
        deadline = eff;
    }
    weft__timer_ref ref = {NULL, 0};
    if (deadline != WEFT__NO_DEADLINE && weft__timer_arm(self, token, deadline, &ref) < 0)
        return -ENOMEM;
    int pr = weft__park(self);
    weft__timer_disarm(self, ref);
    return pr;
}

/* ------------------------------------------------------------ timed waits */

int weft__waiter_wait_timed(weft__waiter *wt, weft__deadline deadline);

/* weft__waiter_wait with a deadline (clamped to the task's scope; the
 * untimed weft__waiter_wait is for waits that must complete), for tasks
 * and plain threads alike: 0 once fired; -ETIMEDOUT (the clock has reached
 * the deadline),
 * -ECANCELED, -ENOMEM (no timer entry) otherwise. After an error the
 * waiter may still fire: the caller withdraws it from wherever it is
 * registered, and honours a firing it finds already taken (see the queues
 * and joins below). */
static inline int weft__waiter_wait_until(weft__waiter *wt, weft__deadline deadline)
{
    deadline = weft__deadline_effective_for(wt->task, deadline);
    if (deadline == WEFT__NO_DEADLINE)
        return weft__waiter_wait(wt);
    return weft__waiter_wait_timed(wt, deadline);
}

/* ------------------------------------------------------------ wait queues */

/*
 * A waiter queue: an intrusive FIFO of nodes on the waiting tasks' (or
 * threads') stacks. A service embeds a weft__wnode first in its own node
 * when it needs more per waiter (a key, a signal set, an element pointer)
 * and gets back to it with weft__container_of.
 *
 * Invariants (the owning lock is the lock of the object whose queue holds
 * the node; it is never held across a park):
 *  - A node is linked and unlinked, and its `queued` and `result` read and
 *    written, only under the owning lock.
 *  - A waker unlinks the node, stores `result` and fires the waiter, all
 *    under the owning lock (weft__wq_fire), and never touches the node
 *    again: once fired, its owner may return and its stack frame be gone.
 *    The fire's release store of `fired` pairs with the waiter's acquire of
 *    it, so a waiter woken by it sees `result` and whatever the waker
 *    handed over with it (an element, a lock, a signal).
 *  - A waiter whose wait ended without a fire (timeout, cancellation,
 *    ENOMEM) takes the owning lock before it looks at the node again. Still
 *    queued: no waker has it, and unlinking it ends every claim: the wait
 *    reports its error. Not queued: a waker took it, and because the fire
 *    is done under the same lock it is complete: the wait reports success
 *    and the caller reads `result`. A firing that raced with a timeout or a
 *    cancellation is therefore honoured and a hand-off is never lost.
 */
typedef struct weft__wnode {
    weft__waiter w;
    struct weft__wnode *prev, *next;
    int queued; /* on a queue (owning lock) */
    int result; /* the outcome, stored by the waker before the fire */
} weft__wnode;

typedef struct weft__wqueue {
    weft__wnode *head, *tail;
} weft__wqueue;

#define WEFT__WQUEUE_INIT {NULL, NULL}
#define weft__container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Makes n an unqueued node of the calling task (or thread): it starts the
 * wait (weft__waiter_init bumps the task's wait token), so call it right
 * before queueing. */
static inline void weft__wnode_init(weft__wnode *n)
{
    weft__waiter_init(&n->w);
    n->prev = n->next = NULL;
    n->queued = 0;
    n->result = 0;
}

/* Owning lock held. */
static inline void weft__wq_push(weft__wqueue *q, weft__wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->queued = 1;
}

/* Owning lock held; n queued on q. */
static inline void weft__wq_remove(weft__wqueue *q, weft__wnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    n->queued = 0;
}

/* Owning lock held: unlinks n, gives it its outcome and wakes it. n must not
 * be touched afterwards. */
static inline void weft__wq_fire(weft__wqueue *q, weft__wnode *n, int result)
{
    weft__wq_remove(q, n);
    n->result = result;
    weft__waiter_fire(&n->w);
}

/* Takes lk and unlinks n if it is still queued on q. 1 if it was (no waker
 * has it: it will never fire), 0 if a waker took it (it has fired: the fire
 * happened under lk). */
static inline int weft__wq_withdraw(weft__wqueue *q, weft__wnode *n, pthread_mutex_t *lk)
{
    pthread_mutex_lock(lk);
    int queued = n->queued;
    if (queued)
        weft__wq_remove(q, n);
    pthread_mutex_unlock(lk);
    return queued;
}

/* Block: called with lk held and n pushed on q. Waits with lk released and
 * returns with it held: 0 when a waker took n (n->result holds the outcome),
 * else the wait's error with n withdrawn. */
static inline int weft__wq_block(weft__wqueue *q, weft__wnode *n, pthread_mutex_t *lk,
                                 weft__deadline deadline)
{
    pthread_mutex_unlock(lk);
    int rc = weft__waiter_wait_until(&n->w, deadline);
    pthread_mutex_lock(lk);
    if (rc == 0 || !n->queued)
        return 0;
    weft__wq_remove(q, n);
    return rc;
}

/* The same for a caller that has already released lk (it pushed n under lk
 * and had more to do before sleeping), and needs lk no more afterwards: a
 * fire costs no re-lock. Returns with lk not held. */
static inline int weft__wq_wait(weft__wqueue *q, weft__wnode *n, pthread_mutex_t *lk,
                                weft__deadline deadline)
{
    int rc = weft__waiter_wait_until(&n->w, deadline);
    if (rc == 0)
        return 0;
    return weft__wq_withdraw(q, n, lk) ? rc : 0;
}

/* ------------------------------------------------------------ joins */

/*
 * The join word of a task (task.h): JOIN_OPEN, JOIN_DONE, JOIN_DISCARDED, or
 * the address of the one waiter of a join in progress.
 *  - Only a joiner moves it from JOIN_OPEN to its waiter (install) and back
 *    (withdraw); only the finisher, or the runtime discarding the task,
 *    moves it to JOIN_DONE or JOIN_DISCARDED (publish), and that is final.
 *  - Install is acq_rel: its release hands the initialised waiter to the
 *    finisher, whose exchange (acq_rel) acquires it. The finisher writes the
 *    result before its exchange; the joiner reads it after acquiring the
 *    final state (a load of it, or the acquire of the fire, which follows
 *    the exchange).
 *  - A withdraw that fails means the finisher's exchange has taken the
 *    waiter and will fire it next, with no lock in between to wait on; the
 *    waiter is on the joiner's stack, so the joiner waits for that fire with
 *    cancellation held off (weft__waiter_wait_nocancel), which is short.
 */

/* Installs wt in t's join word. 1 if installed; 0 if the word was not
 * JOIN_OPEN, with what it held in *seen. */
static inline int weft__join_install(weft__task *t, weft__waiter *wt, uintptr_t *seen)
{
    uintptr_t j = JOIN_OPEN;
    int ok = atomic_compare_exchange_strong_explicit(&t->join, &j, (uintptr_t)wt,
                                                     memory_order_acq_rel, memory_order_acquire);
    *seen = j;
    return ok;
}

/* Takes an installed wt back: 1 if done (t's word is JOIN_OPEN again, as if
 * no one had waited), 0 if t's finish took wt first (it fires shortly). */
static inline int weft__join_withdraw(weft__task *t, weft__waiter *wt)
{
    uintptr_t mine = (uintptr_t)wt;
    return atomic_compare_exchange_strong_explicit(&t->join, &mine, JOIN_OPEN, memory_order_acq_rel,
                                                   memory_order_acquire);
}

/* After weft__join_install: 0 once t has finished; otherwise the wait's error
 * (-ETIMEDOUT, -ECANCELED, -ENOMEM) with wt withdrawn. A finish that raced
 * with the error is honoured (0). */
static inline int weft__join_wait(weft__task *t, weft__waiter *wt, weft__deadline deadline)
{
    int rc = weft__waiter_wait_until(wt, deadline);
    if (rc == 0)
        return 0;
    if (weft__join_withdraw(t, wt))
        return rc;
    weft__waiter_wait_nocancel(wt);
    return 0;
}

/* weft_join on a block whose handle has been checked (task.h's
 * weft__handle_get): the callers that hold the block, not the handle. */
int weft__join(weft__task *t, void **result);

/* ------------------------------------------------------------ shields */

/* Holds cancellation of t off until the matching weft__shield_release(t):
 * the guard returns t, so
 *     weft__task *sh = weft__shield_hold(weft__cur_task());
 *     ... a wait that must complete ...
 *     weft__shield_release(sh);
 * t may be NULL (a plain thread: nothing to hold off). `shield` belongs to
 * its task: only that task changes it or reads it (weft__cancel_pending),
 * so plain increments suffice, and a hold moves with the task when it
 * resumes on another worker. Holds nest; each is released by the function
 * that took it. */
static inline weft__task *weft__shield_hold(weft__task *t)
{
    if (t)
        t->shield++;
    return t;
}

static inline void weft__shield_release(weft__task *t)
{
    if (t)
        t->shield--;
}

#endif
