/*
 * Sleeping: a timer entry on the current worker's wheel that wakes the task.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <time.h>

weft_time weft_now(void) { return weft__clock_ns(); }

/* Deadline in ns → the wheel tick at or after it, so a timer never fires
 * before its deadline. */
static uint64_t tick_at_or_after(weft_runtime *rt, weft_time deadline)
{
    if (deadline <= rt->start_ns)
        return 0;
    uint64_t d = (uint64_t)(deadline - rt->start_ns);
    return (d + 999999u) / 1000000u;
}

int weft__timer_arm(weft__task *self, uint64_t token, weft_time deadline, weft__timer_ref *ref)
{
    weft__worker *w = self->worker;
    weft__poll_lock(w);
    int rc = weft__timer_add(&w->wheel, tick_at_or_after(w->rt, deadline), self, token, ref);
    weft__poll_unlock(w);
    return rc < 0 ? -ENOMEM : 0;
}

void weft__timer_disarm(weft__task *self, weft__timer_ref ref)
{
    /* The common case, a sleep whose timer fired, takes no lock. */
    if (!weft__timer_maybe_armed(ref))
        return;
    weft__worker *w = self->worker;
    if (ref.t->owner == &w->wheel) {
        weft__poll_lock(w);
        weft__timer_cancel(ref, 1);
        weft__poll_unlock(w);
    } else {
        weft__timer_cancel(ref, 0);
    }
}

int weft_sleep_until(weft_time deadline)
{
    weft__task *self = weft__cur_task();
    if (!self) {
        struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        return 0;
    }
    if (weft__cancel_pending(self))
        return -ECANCELED;
    while (weft__clock_ns() < deadline) {
        uint64_t token = weft__wait_prepare(self);
        weft__timer_ref ref;
        int rc = weft__timer_arm(self, token, deadline, &ref);
        if (rc < 0)
            return rc;
        int pr = weft__park(self);
        weft__timer_disarm(self, ref); /* no-op when it fired, as it normally has */
        if (pr < 0)
            return pr;
    }
    return 0;
}

int weft_sleep_ms(uint64_t ms)
{
    if (ms > (uint64_t)INT64_MAX / 2000000)
        ms = (uint64_t)INT64_MAX / 2000000;
    return weft_sleep_until(weft__clock_ns() + (int64_t)ms * 1000000);
}
