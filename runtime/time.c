/*
 * Sleeping: a timer entry on the current worker's wheel that wakes the task
 * (weft__timer_arm, wait.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <time.h>

weft_time weft_now(void) { return weft__clock_ns(); }

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
    /* In a deadline scope that ends first, the sleep ends at the scope's
     * deadline with -ETIMEDOUT (weft__park_until). A sleep whose end has
     * passed does not suspend, so it completes. */
    while (weft__clock_ns() < deadline) {
        uint64_t token = weft__wait_prepare(self);
        weft__wait_note(self, WEFT__WAIT_SLEEP, (uint64_t)deadline, 0);
        int pr = weft__park_until(self, token, deadline);
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
