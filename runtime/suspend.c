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
    if (t && --t->budget == 0) {
        stat_inc(&t->worker->stats.forced_yields, 1);
        weft_yield();
    }
}

/* ------------------------------------------------------ public API */

void weft_yield(void)
{
    weft__worker *w = weft__cur_worker();
    if (!w || !w->current)
        return;
    weft__switch_out(w, w->current, ACT_YIELD);
}
