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

/*
 * A word lock for the channels' short critical sections (chan.c): the
 * adaptive mutex's behaviour in two inline atomic operations.
 *
 * Why not the adaptive mutex there: a channel hand-off takes its lock once
 * per operation, four times per ping-pong round trip, and glibc's
 * lock/unlock pair for a non-default mutex type cost ~70 instructions of a
 * ~1,460-instruction round trip (callgrind, bench/chan's chan_pairs). This
 * one is a compare-exchange to take it and an exchange to give it back.
 *
 * The word: 0 free, 1 held, 2 held and someone may sleep on it (Drepper's
 * "futexes are tricky", mutex 2). A locker that finds it held spins a
 * bounded number of times (the holder is almost always running, for a few
 * instructions), then marks it 2 and sleeps in futex_wait, so a holder
 * preempted by the kernel costs the waiter a sleep, not a spinning slice.
 * The unlocker's exchange to 0 returns 2 when a sleeper may be waiting and
 * wakes one; the woken locker takes the word with 2 again, since others may
 * still sleep. Orderings: the taking compare-exchange and exchange are
 * acquire, the releasing exchange is release, so a critical section
 * happens-before the next one (what TSan checks: it models the atomics, not
 * the futex calls, which carry no data).
 */
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft_assert.h"

typedef struct weft__wlock {
    _Atomic uint32_t w;
} weft__wlock;

#define WEFT__WLOCK_SPINS 100

static inline void weft__wlock_init(weft__wlock *l) { atomic_init(&l->w, 0); }

static __attribute__((noinline, unused)) void weft__wlock_slow(weft__wlock *l)
{
    for (int i = 0; i < WEFT__WLOCK_SPINS; i++) {
        uint32_t z = 0;
        if (atomic_load_explicit(&l->w, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->w, &z, 1, memory_order_acquire, memory_order_relaxed))
            return;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
    }
    while (atomic_exchange_explicit(&l->w, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &l->w, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

static inline void weft__wlock_lock(weft__wlock *l)
{
    uint32_t z = 0;
    if (__builtin_expect(!atomic_compare_exchange_strong_explicit(&l->w, &z, 1, memory_order_acquire,
                                                                  memory_order_relaxed),
                         0))
        weft__wlock_slow(l);
}

static inline void weft__wlock_unlock(weft__wlock *l)
{
    uint32_t was = atomic_exchange_explicit(&l->w, 0, memory_order_release);
    WEFT__ASSERT(was == 1 || was == 2); /* held: only its holder gives it back */
    if (__builtin_expect(was == 2, 0))
        syscall(SYS_futex, &l->w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif
