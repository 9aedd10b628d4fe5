/*
 * The runtime's internal locks: pthread mutexes, adaptive where glibc has
 * them.
 *
 * Why adaptive: the critical sections under these locks are a few list
 * operations, but they are taken by worker threads. glibc's default mutex
 * sends a contended locker straight to futex_wait, so a worker (and every
 * task queued on it) sleeps in the kernel for a wake-up that costs ~60 µs
 * round trip on the reference VM, where the holder would have let go within
 * a microsecond. An adaptive mutex spins a bounded number of times first and
 * still sleeps if the holder was preempted, which a plain spinlock would not.
 * Measured on bench/chan's 4x4 channel on 2 workers: see README.
 */
#ifndef WEFT_LOCK_H
#define WEFT_LOCK_H

#include <pthread.h>

static inline void weft__lock_init(pthread_mutex_t *m)
{
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
#else
    pthread_mutex_init(m, NULL);
#endif
}

#endif
