/*
 * The clock: CLOCK_MONOTONIC in ns (weft_time), and a runtime's ticks (ms
 * since it started), the unit of the timer wheels.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <time.h>

int64_t weft__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t weft__now_tick(weft_runtime *rt, int64_t ns)
{
    return ns <= rt->start_ns ? 0 : (uint64_t)(ns - rt->start_ns) / 1000000u;
}
