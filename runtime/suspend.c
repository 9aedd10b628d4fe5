/*
 * The waiting side of tasks: a wait's token (weft__wait_prepare), parking,
 * waiters' waits, join, yield and the cooperative budget: everything that
 * suspends the running task, through the scheduler's switch (sched.c). The
 * waking side is in task.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------ waits */

uint64_t weft__wait_prepare(weft__task *self) { return weft__state_begin_wait(self); }

int weft__park(weft__task *self)
{
    if (weft__cancel_pending(self))
        return -ECANCELED;
    weft__switch_out(self->worker, self, ACT_PARK);
    return weft__cancel_pending(self) ? -ECANCELED : 0;
}

void weft__waiter_init(weft__waiter *wt)
{
    wt->task = weft__cur_task();
    wt->token = wt->task ? weft__wait_prepare(wt->task) : 0;
    atomic_store_explicit(&wt->fired, 0, memory_order_relaxed);
    wt->result = 0;
}

int weft__waiter_wait(weft__waiter *wt)
{
    while (!atomic_load_explicit(&wt->fired, memory_order_acquire)) {
        if (wt->task) {
            if (weft__park(wt->task) < 0)
                return atomic_load_explicit(&wt->fired, memory_order_acquire) ? 0 : -ECANCELED;
        } else {
            syscall(SYS_futex, &wt->fired, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        }
    }
    return 0;
}

void weft__waiter_wait_nocancel(weft__waiter *wt)
{
    weft__task *t = wt->task;
    if (t)
        t->shield++;
    weft__waiter_wait(wt);
    if (t) {
        WEFT__ASSERT(t->shield > 0); /* shield nesting never goes below zero */
        t->shield--;
    }
}

void weft__coop_consume(void)
{
    weft__task *t = weft__cur_task();
    if (t && --t->budget == 0)
        weft_yield();
}

/* ------------------------------------------------------ public API */

int weft_join(weft_task *t, void **result)
{
    if (!t)
        return -EINVAL;
    weft__task *self = weft__cur_task();
    if (self == t)
        return -EDEADLK;
    uintptr_t j = atomic_load_explicit(&t->join, memory_order_acquire);
    if (j == JOIN_OPEN) {
        if (self && weft__cancel_pending(self)) {
            weft_detach(t);
            return -ECANCELED;
        }
        weft__waiter wt;
        weft__waiter_init(&wt);
        if (atomic_compare_exchange_strong_explicit(&t->join, &j, (uintptr_t)&wt,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            if (weft__waiter_wait(&wt) < 0) {
                /* The caller was cancelled: withdraw, unless the task is
                 * finishing right now and has taken our waiter. */
                uintptr_t mine = (uintptr_t)&wt;
                if (atomic_compare_exchange_strong_explicit(&t->join, &mine, JOIN_OPEN,
                                                            memory_order_acq_rel,
                                                            memory_order_acquire)) {
                    weft_detach(t);
                    return -ECANCELED;
                }
                weft__waiter_wait_nocancel(&wt);
            }
            j = atomic_load_explicit(&t->join, memory_order_acquire);
        }
    }
    /* A cancelled task that ran to its end still hands over what it
     * returned (its cleanup may report something); a discarded one has
     * NULL there. */
    if (result)
        *result = t->result;
    int rc = j == JOIN_DONE ? 0 : -ECANCELED;
    if (!atomic_load_explicit(&t->rt, memory_order_acquire))
        weft__task_orphan_release(t);
    else
        weft__task_release(weft__cur_worker(), t);
    return rc;
}

void weft_yield(void)
{
    weft__worker *w = weft__cur_worker();
    if (!w || !w->current)
        return;
    weft__switch_out(w, w->current, ACT_YIELD);
}
