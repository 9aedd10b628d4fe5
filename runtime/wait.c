/*
 * The wait layer's out-of-line parts: the timed waiter wait and the timer
 * arm and disarm it and the services' parks use, the public deadline
 * scopes, and weft_join. The rest (queues, joins,
 * shields, deadlines) is inline in wait.h, where its invariants are.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ timers */

/* Deadline in ns -> the wheel tick at or after it, so a timer never fires
 * before its deadline. */
static uint64_t tick_at_or_after(weft_runtime *rt, weft__deadline deadline)
{
    if (deadline <= rt->start_ns)
        return 0;
    uint64_t d = (uint64_t)(deadline - rt->start_ns);
    return (d + 999999u) / 1000000u;
}

int weft__timer_arm(weft__task *self, uint64_t token, weft__deadline deadline, weft__timer_ref *ref)
{
    /* The wheel is its worker's; a peer rescuing a stuck worker polls it
     * under the same lock (see weft__worker.poll_busy). */
    weft__worker *w = self->worker;
    weft__poll_lock(w);
    int rc = weft__timer_add(&w->wheel, tick_at_or_after(w->rt, deadline), self, token, ref);
    weft__poll_unlock(w);
    return rc < 0 ? -ENOMEM : 0;
}

void weft__timer_disarm(weft__task *self, weft__timer_ref ref)
{
    /* The common case, a timer that fired, takes no lock. The relaxed read
     * is enough: an entry's state only leaves ARMED, and its generation
     * changes on reuse, so a stale ARMED costs only a cancel that finds
     * nothing, and a non-ARMED value is final for this ref. */
    if (!weft__timer_maybe_armed(ref))
        return;
    /* self may have resumed on another worker since arming: cancel on our
     * own wheel under its lock, on a peer's through its lock-free cancel
     * stack. */
    weft__worker *w = self->worker;
    if (ref.t->owner == &w->wheel) {
        weft__poll_lock(w);
        weft__timer_cancel(ref, 1);
        weft__poll_unlock(w);
    } else {
        weft__timer_cancel(ref, 0);
    }
}

/* ------------------------------------------------------------ timed waits */

int weft__waiter_wait_timed(weft__waiter *wt, weft__deadline deadline)
{
    weft__task *t = wt->task;
    /* `fired` is the truth (acquire: it publishes the firer's outcome);
     * wake-ups, the timer's included, only make us look again. */
    while (!atomic_load_explicit(&wt->fired, memory_order_acquire)) {
        if (weft__clock_ns() >= deadline)
            return -ETIMEDOUT;
        if (t) {
            int pr = weft__park_until(t, wt->token, deadline);
            /* Cancelled, but fired meanwhile: the event wins. */
            if (pr < 0)
                return pr == -ECANCELED && atomic_load_explicit(&wt->fired, memory_order_acquire)
                           ? 0
                           : pr;
        } else {
            /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time,
             * weft__clock_ns's clock. */
            struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
            syscall(SYS_futex, &wt->fired, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, NULL,
                    FUTEX_BITSET_MATCH_ANY);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ join */

int weft_join(weft_task *h, void **result)
{
    if (!h)
        return -EINVAL;
    return weft__join(weft__handle_get(h, "weft_join"), result);
}

int weft__join(weft__task *t, void **result)
{
    weft__task *self = weft__cur_task();
    if (self == t)
        return -EDEADLK;
    uintptr_t j = atomic_load_explicit(&t->join, memory_order_acquire);
    if (j == JOIN_OPEN) {
        if (self && weft__cancel_pending(self)) {
            weft__handle_release(t);
            return -ECANCELED;
        }
        weft__waiter wt;
        weft__waiter_init(&wt);
        weft__wait_note(wt.task, WEFT__WAIT_JOIN, t->id, t->stack_cls == WEFT_EXTERNAL_CLS);
        if (weft__join_install(t, &wt, &j)) {
            /* Cancelled: withdrawn, unless the task is finishing right now
             * and has taken our waiter (then its finish is honoured). Cut
             * short by the caller's deadline scope (or no timer entry):
             * withdrawn too, but the handle stays with the caller, as
             * weft_join_timeout's. */
            int rc = weft__join_wait(t, &wt, WEFT__NO_DEADLINE);
            if (rc == -ETIMEDOUT || rc == -ENOMEM)
                return rc;
            if (rc < 0) {
                weft__handle_release(t);
                return -ECANCELED;
            }
            j = atomic_load_explicit(&t->join, memory_order_acquire);
        }
    }
    /* A cancelled task that ran to its end still hands over what it
     * returned (its cleanup may report something); a discarded one has
     * NULL there. */
    if (result)
        *result = t->result;
    int rc = j == JOIN_DONE ? 0 : t->stack_cls == WEFT_NO_STACK_CLS ? -ENOMEM : -ECANCELED;
    weft__handle_release(t);
    return rc;
}

/* ------------------------------------------------------------ deadline scopes */

int weft_deadline_push(weft_deadline *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    s->owner = NULL;
    s->outer = NULL;
    s->at_ns = WEFT__NO_DEADLINE;
    weft__task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    /* The converter applies the timeout rules and clamps to the enclosing
     * scope (shields aside: a scope pushed inside a shield still nests). */
    weft__deadline d = WEFT__NO_DEADLINE;
    if (timeout_ms != -1 && timeout_ms <= WEFT__MAX_TIMEOUT_MS)
        d = weft__clock_ns() + (timeout_ms < 0 ? 0 : timeout_ms * 1000000);
    if (self->scope && self->scope->at_ns < d)
        d = self->scope->at_ns;
    s->at_ns = d;
    s->outer = self->scope;
    s->owner = self;
    self->scope = s;
    return 0;
}

int weft_deadline_pop(weft_deadline *s)
{
    weft__task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    /* Only the innermost open scope of this task may end: anything else
     * (no scope open, out of order, another task's, popped already) is
     * refused and changes nothing. */
    if (!s || self->scope != s || s->owner != self)
        return -EINVAL;
    self->scope = s->outer;
    s->owner = NULL;
    return 0;
}

int64_t weft_deadline_left_ms(void)
{
    weft__task *self = weft__cur_task();
    if (!self || !self->scope || self->scope->at_ns == WEFT__NO_DEADLINE)
        return -1;
    int64_t left = self->scope->at_ns - weft__clock_ns();
    return left <= 0 ? 0 : (left + 999999) / 1000000;
}
