/*
 * Signals for tasks: weft_signal_wait, weft_signal_watch, weft_signal_unwatch.
 *
 * Why a handler and not a signalfd: a signalfd only sees signals that are
 * blocked in every thread, and pthread_sigmask changes the calling thread
 * alone. The workers (and any thread the program made before) were created
 * with the old mask, and there is no portable way to change another
 * thread's mask; a signal left unblocked in one of them would be handled
 * the default way (for SIGTERM: the process dies) instead of reaching the
 * signalfd. A handler works whatever the masks are.
 *
 * The handler is async-signal-safe: it adds one to the signal's delivery
 * counter (a lock-free atomic) and writes one byte to a non-blocking pipe,
 * saving and restoring errno. The counter is the truth; the byte is only a
 * doorbell, so a full pipe loses nothing.
 *
 * A service thread (made on first use; all signals blocked in it, so the
 * handler never runs there; it never runs tasks) blocks reading the pipe.
 * For each byte batch it takes the counters under the state lock and hands
 * every delivery to one waiter: the first in FIFO order whose set holds the
 * signal. A delivery no waiter wants is kept (counted per signal) for the
 * next wait that names it. Waiters also collect the counters themselves
 * before they decide to sleep, so a signal raised just before a wait is seen
 * by it at once. Waiters queue on the wait layer's waiter queue (wait.h),
 * whose protocol is the one every service uses: the deliverer unlinks the
 * node, stores the signal as its result and fires it under the lock, and a
 * waiter back from a timeout or cancellation decides under the lock whether
 * it was still queued (withdraw, report the error) or had been handed a
 * signal (report it: a delivery is never lost).
 *
 * All state is process-wide: signal dispositions are.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* The handler touches errno and must stay async-signal-safe: use libc's
 * errno directly. Nothing here reads errno across a suspension. */
#define WEFT_NO_ERRNO_OVERRIDE
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct swaiter {
    weft__wnode node; /* result: the signal, set by the deliverer */
    sigset_t set;
} swaiter;

static inline swaiter *swaiter_of(weft__wnode *n) { return weft__container_of(n, swaiter, node); }

static struct {
    pthread_mutex_t lk;
    int started;                    /* pipe and service thread exist */
    unsigned char watched[NSIG];
    uint32_t kept[NSIG];            /* deliveries no waiter has taken yet */
    struct sigaction old[NSIG];     /* disposition before we watched */
    weft__wqueue waiters;
} S = {.lk = PTHREAD_MUTEX_INITIALIZER};

/* Written by the handler. */
static _Atomic uint32_t raised[NSIG];
static _Atomic int doorbell = -1;

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the handler needs lock-free atomics");

static void on_signal(int sig)
{
    int saved = errno;
    if (sig > 0 && sig < NSIG) {
        atomic_fetch_add_explicit(&raised[sig], 1, memory_order_seq_cst);
        int fd = atomic_load_explicit(&doorbell, memory_order_relaxed);
        if (fd >= 0) {
            unsigned char b = (unsigned char)sig;
            ssize_t r = write(fd, &b, 1); /* EAGAIN when full: the count holds it */
            (void)r;
        }
    }
    errno = saved;
}

/* Signals a task may wait for: not the uncatchable ones, and not those that
 * report faults (a handler that returns would re-run the faulting
 * instruction) or abort(). */
static int waitable(int sig)
{
    switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGILL:
    case SIGFPE: case SIGTRAP: case SIGSYS: case SIGABRT:
        return 0;
    default:
        return sig > 0 && sig < NSIG;
    }
}

static int check_set(const sigset_t *set)
{
    if (!set)
        return -EINVAL;
    int any = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1)
            continue;
        if (!waitable(sig))
            return -EINVAL;
        any = 1;
    }
    return any ? 0 : -EINVAL;
}

/* ------------------------------------------------------------ delivery */

/* Under S.lk: hands k deliveries of sig to waiters, keeping the rest. */
static void deliver_locked(int sig, uint32_t k)
{
    if (!S.watched[sig])
        return; /* unwatched meanwhile: the delivery belonged to the old disposition's era */
    weft__wnode *n = S.waiters.head;
    while (k && n) {
        weft__wnode *next = n->next;
        if (sigismember(&swaiter_of(n)->set, sig) == 1) {
            weft__wq_fire(&S.waiters, n, sig); /* n may be gone from here on */
            k--;
        }
        n = next;
    }
    S.kept[sig] = S.kept[sig] > UINT32_MAX - k ? UINT32_MAX : S.kept[sig] + k;
}

/* Under S.lk: takes every delivery the handler counted. */
static void collect_locked(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        if (!atomic_load_explicit(&raised[sig], memory_order_relaxed))
            continue;
        uint32_t k = atomic_exchange_explicit(&raised[sig], 0, memory_order_seq_cst);
        if (k)
            deliver_locked(sig, k);
    }
}

static void *service_main(void *arg)
{
    int rfd = (int)(intptr_t)arg;
    unsigned char buf[256];
    for (;;) {
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL; /* cannot happen: the write end is never closed */
        pthread_mutex_lock(&S.lk);
        collect_locked();
        pthread_mutex_unlock(&S.lk);
    }
}

/* Under S.lk: makes the pipe and the service thread once. */
static int start_locked(void)
{
    if (S.started)
        return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* The handler must never block; the service thread blocks on reads. */
    if (fcntl(p[1], F_SETFL, O_NONBLOCK) < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    weft__fd_fresh(p[0]);
    weft__fd_fresh(p[1]);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    /* The thread inherits this mask: everything blocked, so signals go to
     * threads that may run the handler and its reads are never cut short. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int rc = pthread_create(&th, &attr, service_main, (void *)(intptr_t)p[0]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(p[0]);
        close(p[1]);
        return -rc;
    }
    atomic_store_explicit(&doorbell, p[1], memory_order_seq_cst);
    S.started = 1;
    return 0;
}

/* Under S.lk: installs the handler for every signal of set not yet watched. */
static int watch_locked(const sigset_t *set)
{
    int rc = start_locked();
    if (rc < 0)
        return rc;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1 || S.watched[sig])
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigfillset(&sa.sa_mask); /* keep the handler alone on its thread */
        sa.sa_flags = SA_RESTART;
        if (sigaction(sig, &sa, &S.old[sig]) < 0)
            return -errno;
        S.watched[sig] = 1;
    }
    return 0;
}

/* Under S.lk: takes one kept delivery of a signal in set (lowest number
 * first); its number, or 0. */
static int take_kept_locked(const sigset_t *set)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (S.kept[sig] && sigismember(set, sig) == 1) {
            S.kept[sig]--;
            return sig;
        }
    return 0;
}

/* ------------------------------------------------------------ public API */

int weft_signal_watch(const sigset_t *set)
{
    int rc = check_set(set);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&S.lk);
    rc = watch_locked(set);
    pthread_mutex_unlock(&S.lk);
    return rc;
}

int weft_signal_wait(const sigset_t *set, int64_t timeout_ms)
{
    int rc = check_set(set);
    if (rc < 0)
        return rc;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    pthread_mutex_lock(&S.lk);
    rc = watch_locked(set);
    if (rc == 0) {
        collect_locked();
        rc = take_kept_locked(set);
    }
    if (rc == 0)
        rc = weft__may_wait(deadline);
    if (rc == 0) {
        swaiter n;
        weft__wnode_init(&n.node);
        weft__wait_note(n.node.w.task, WEFT__WAIT_SIGNAL, 0, 0);
        n.set = *set;
        weft__wq_push(&S.waiters, &n.node);
        rc = weft__wq_block(&S.waiters, &n.node, &S.lk, deadline);
        if (rc == 0)
            rc = n.node.result; /* handed a delivery */
    }
    pthread_mutex_unlock(&S.lk);
    return rc;
}

int weft_signal_unwatch(int sig)
{
    if (sig <= 0 || sig >= NSIG)
        return -EINVAL;
    pthread_mutex_lock(&S.lk);
    int rc = 0;
    if (S.watched[sig]) {
        for (weft__wnode *n = S.waiters.head; n; n = n->next)
            if (sigismember(&swaiter_of(n)->set, sig) == 1)
                rc = -EBUSY;
        if (rc == 0) {
            if (sigaction(sig, &S.old[sig], NULL) < 0) {
                rc = -errno;
            } else {
                S.watched[sig] = 0;
                S.kept[sig] = 0;
                atomic_store_explicit(&raised[sig], 0, memory_order_seq_cst);
            }
        }
    }
    pthread_mutex_unlock(&S.lk);
    return rc;
}
