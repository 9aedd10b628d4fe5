/*
 * The blocking pool: preemptive OS threads beside the cooperative workers,
 * for work that would block a worker (CPU-bound jobs, file system calls,
 * getaddrinfo, blocking libraries).
 *
 * A job is an external control block (weft__task_new_external): it has a
 * handle and a join state like any task, never a stack. Queued jobs are
 * linked through the block's run-queue link `next` (unused by an external
 * block), so submitting allocates nothing beyond the block.
 *
 * Threads: each has a record with its own condition variable. An idle
 * thread pushes its record on the idle stack and waits on its own condvar
 * with the keep-alive as timeout. A submission pops the most recently idle
 * record, hands it the job directly (rec->job) and signals that one condvar:
 * exactly one wake-up per job, no thundering herd; the least recently used
 * threads sit at the bottom of the stack and are the ones that time out.
 * Only when no thread is idle is a new one started (up to max), and beyond
 * max the job waits in the FIFO queue, which a thread drains before it goes
 * idle. A thread that times out with nothing handed to it removes its
 * record from the idle stack and exits.
 *
 * Exited threads are joined in a chain: an exiting thread leaves its record
 * in pool->exited and joins the one it replaces, so at most one exited
 * thread is left unjoined at any time and blocking_stop joins the last.
 *
 * Cancellation: a pool thread checks weft__task_cancel_requested when it
 * picks a job and completes a cancelled one without running it
 * (weft__task_complete_external reports -ECANCELED for it); a job cancelled
 * while it runs completes normally and its joiner gets -ECANCELED.
 *
 * Two pools per runtime, the same code: the blocking pool (up to 512
 * threads) for calls that wait, and the compute pool (one thread per CPU by
 * default) for CPU-bound jobs. Why two: a pool is fair to its jobs only
 * through the kernel's scheduler, which shares the cores among all runnable
 * threads. Hundreds of CPU jobs on the blocking pool therefore all advance
 * at once, each at a fraction of a core, and a 20 ms job takes hundreds of
 * ms (bench/async_vs_threads, workload tail: p99 294-313 ms, against
 * 156-176 ms with the pool capped near the CPU count). Capped, the excess
 * waits in the FIFO queue and each job runs at full speed once started.
 *
 * Stop (weft_runtime_free, after the workers have stopped): no new job is
 * accepted or started, running jobs finish, idle threads are woken and exit,
 * every thread is joined and the pool is freed. Jobs still queued (or handed
 * to a thread that had not started them) are left alone: weft_runtime_free
 * discards them with the tasks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_DEFAULT_MAX 512
#define POOL_MAX_LIMIT 65536
#define POOL_DEFAULT_KEEPALIVE_MS 10000
/* Pool threads run arbitrary blocking code (getaddrinfo with NSS modules,
 * compression libraries...): a generous stack, which costs address space
 * only until touched. */
#define POOL_STACK_SIZE ((size_t)2 << 20)

typedef struct pool_thread {
    struct pool_thread *prev, *next; /* idle stack links (under pool->lock) */
    pthread_cond_t cond;             /* this thread's own wake-up */
    weft__task *job;                 /* handed to it while idle */
    pthread_t thread;                /* written by the thread itself */
    struct pool *pool;
} pool_thread;

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t stop_cond;        /* nthreads reached 0 during stop */
    weft__task *head, *tail;         /* queued jobs (FIFO, linked by `next`) */
    size_t nqueued;
    pool_thread *idle;               /* top of the idle stack (most recent) */
    pool_thread *exited;             /* the last exited thread, not yet joined */
    unsigned nthreads, nidle;
    unsigned max;
    unsigned keepalive_ms;
    int used;                        /* a job has been submitted */
    int stopping;
} pool;

enum { POOL_BLOCKING = 0, POOL_COMPUTE = 1, NPOOLS = 2 };

/* ------------------------------------------------------------ settings */

static unsigned env_unsigned(const char *name, unsigned lo, unsigned hi, unsigned def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return def;
    return (unsigned)v;
}

static void pools_stop(weft_runtime *rt);

static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static pool *pool_of(weft_runtime *rt, int kind)
{
    return __atomic_load_n((pool **)&rt->pools[kind], __ATOMIC_ACQUIRE);
}

/* rt's pool of that kind, made (without threads) on first call. NULL and
 * *err on failure. */
static pool *pool_get(weft_runtime *rt, int kind, int *err)
{
    pool *p = pool_of(rt, kind);
    if (weft__likely(p != NULL))
        return p;
    pthread_mutex_lock(&rt->services_lock);
    p = rt->pools[kind];
    if (!p) {
        if (atomic_load_explicit(&rt->shutdown, memory_order_relaxed)) {
            pthread_mutex_unlock(&rt->services_lock);
            *err = ESHUTDOWN;
            return NULL;
        }
        p = weft__calloc(1, sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&rt->services_lock);
            *err = ENOMEM;
            return NULL;
        }
        weft__lock_init(&p->lock);
        pthread_cond_init(&p->stop_cond, NULL);
        if (kind == POOL_COMPUTE)
            p->max = env_unsigned("WEFT_COMPUTE_MAX", 1, POOL_MAX_LIMIT, cpu_count());
        else
            p->max = env_unsigned("WEFT_BLOCKING_MAX", 1, POOL_MAX_LIMIT, POOL_DEFAULT_MAX);
        p->keepalive_ms = env_unsigned("WEFT_BLOCKING_KEEPALIVE_MS", 1, UINT_MAX,
                                       POOL_DEFAULT_KEEPALIVE_MS);
        rt->blocking_stop = pools_stop;
        rt->blocking_cancel = weft__blocking_remove;
        __atomic_store_n((pool **)&rt->pools[kind], p, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&rt->services_lock);
    return p;
}

/* ------------------------------------------------------------ threads */

static void idle_push(pool *p, pool_thread *r)
{
    r->prev = NULL;
    r->next = p->idle;
    if (p->idle)
        p->idle->prev = r;
    p->idle = r;
    p->nidle++;
}

static void idle_remove(pool *p, pool_thread *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        p->idle = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    p->nidle--;
}

static void thread_record_free(pool_thread *r)
{
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    weft__free(r);
}

static void keepalive_deadline(const pool *p, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += p->keepalive_ms / 1000;
    ts->tv_nsec += (long)(p->keepalive_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void run_job(weft__task *t)
{
    if (weft__task_cancel_requested(t)) {
        weft__task_complete_external(t, NULL); /* never runs; join: -ECANCELED */
        return;
    }
    void *result = t->fn(t->arg);
    weft__task_complete_external(t, result);
}

static void *thread_main(void *arg)
{
    pool_thread *r = arg;
    pool *p = r->pool;
    pthread_mutex_lock(&p->lock);
    r->thread = pthread_self();
    weft__task *t = r->job;
    r->job = NULL;
    for (;;) {
        if (!t) {
            if (p->stopping)
                break;
            if (p->head) {
                t = p->head;
                p->head = t->next;
                if (!p->head)
                    p->tail = NULL;
                p->nqueued--;
                t->next = NULL;
            } else {
                struct timespec deadline;
                keepalive_deadline(p, &deadline);
                idle_push(p, r);
                while (!r->job && !p->stopping) {
                    if (pthread_cond_timedwait(&r->cond, &p->lock, &deadline) == ETIMEDOUT)
                        break;
                }
                if (r->job) { /* the submitter took r off the idle stack */
                    t = r->job;
                    r->job = NULL;
                } else {
                    idle_remove(p, r);
                    break; /* kept alive long enough, or stopping */
                }
            }
        }
        if (p->stopping)
            break; /* not started: weft_runtime_free discards it */
        pthread_mutex_unlock(&p->lock);
        run_job(t);
        t = NULL;
        pthread_mutex_lock(&p->lock);
    }
    p->nthreads--;
    pool_thread *prev = p->exited;
    p->exited = r;
    if (p->nthreads == 0 && p->stopping)
        pthread_cond_signal(&p->stop_cond);
    pthread_mutex_unlock(&p->lock);
    if (prev)
        thread_record_free(prev);
    return NULL;
}

/* Starts a thread that runs t first. The caller has counted it in
 * p->nthreads. Returns 0 or an errno. */
static int thread_start(pool *p, weft__task *t)
{
    pool_thread *r = weft__calloc(1, sizeof *r);
    if (!r)
        return ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    r->pool = p;
    r->job = t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, POOL_STACK_SIZE);
    /* Asynchronous signals are for the program's own threads (and signal
     * services), not for pool threads in the middle of someone's job; the
     * new thread inherits this mask. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGTRAP);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int rc = pthread_create(&th, &attr, thread_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&r->cond);
        weft__free(r);
    }
    return rc;
}

/* Hands t to an idle thread or queues it. Under p->lock. Returns 1 when a
 * new thread should be started for it (already counted in nthreads). */
static int dispatch_locked(pool *p, weft__task *t, int may_start)
{
    if (p->idle) {
        pool_thread *r = p->idle;
        idle_remove(p, r);
        r->job = t;
        /* Signalled under the lock: once unlocked, r may run the job, time
         * out, exit and be freed by the next exiting thread. */
        pthread_cond_signal(&r->cond);
        return 0;
    }
    if (may_start && p->nthreads < p->max) {
        p->nthreads++;
        return 1;
    }
    t->next = NULL;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    p->nqueued++;
    return 0;
}

/* Submits a job. Returns 0 or an errno; on failure t is untouched. */
static int pool_submit(pool *p, weft__task *t)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return ESHUTDOWN;
    }
    p->used = 1;
    int start = dispatch_locked(p, t, 1);
    pthread_mutex_unlock(&p->lock);
    if (!start)
        return 0;
    int rc = thread_start(p, t);
    if (rc == 0)
        return 0;
    /* No new thread: give the job to the threads there are, if any. */
    pthread_mutex_lock(&p->lock);
    p->nthreads--;
    if (p->nthreads == 0 || p->stopping) {
        if (p->nthreads == 0 && p->stopping)
            pthread_cond_signal(&p->stop_cond);
        pthread_mutex_unlock(&p->lock);
        return rc == ENOMEM ? ENOMEM : EAGAIN;
    }
    dispatch_locked(p, t, 0);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void pool_stop(weft_runtime *rt, int kind)
{
    pool *p = rt->pools[kind];
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    for (pool_thread *r = p->idle; r; r = r->next)
        pthread_cond_signal(&r->cond);
    while (p->nthreads > 0)
        pthread_cond_wait(&p->stop_cond, &p->lock);
    pool_thread *last = p->exited;
    p->exited = NULL;
    /* Queued jobs are not ours any more: weft_runtime_free discards them. */
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    if (last)
        thread_record_free(last);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->stop_cond);
    weft__free(p);
    rt->pools[kind] = NULL;
}

static void pools_stop(weft_runtime *rt)
{
    for (int k = 0; k < NPOOLS; k++)
        pool_stop(rt, k);
    rt->blocking_stop = NULL;
    rt->blocking_cancel = NULL;
}

/* ------------------------------------------------------------ internal */

/* Makes and submits a job. NULL with *err on failure. */
static weft__task *submit(weft_runtime *rt, int kind, weft_fn fn, void *arg, int *err)
{
    pool *p = pool_get(rt, kind, err);
    if (!p)
        return NULL;
    weft__task *t = weft__task_new_external(rt, fn, arg, err);
    if (!t)
        return NULL;
    int rc = pool_submit(p, t);
    if (rc != 0) {
        /* Never queued: complete it as cancelled and drop the handle. */
        atomic_store_explicit(&t->cancel, 1, memory_order_release);
        weft__task_complete_external(t, NULL);
        weft__handle_release(t);
        *err = rc;
        return NULL;
    }
    return t;
}

/* Takes t out of p's queue if it is still there; 1 if it did. */
static int pool_remove(pool *p, weft__task *t)
{
    pthread_mutex_lock(&p->lock);
    weft__task *prev = NULL, *cur = p->head;
    while (cur && cur != t) {
        prev = cur;
        cur = cur->next;
    }
    if (cur && !p->stopping) {
        if (prev)
            prev->next = cur->next;
        else
            p->head = cur->next;
        if (p->tail == cur)
            p->tail = prev;
        p->nqueued--;
        cur->next = NULL;
    } else {
        cur = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    return cur != NULL;
}

/* Takes t out of its pool's queue if it is still there and completes it as
 * cancelled (its cancellation must have been requested). Returns 1 if it
 * did, 0 if t had already been picked (or handed to a thread). */
int weft__blocking_remove(weft__task *t)
{
    weft_runtime *rt = atomic_load_explicit(&t->rt, memory_order_acquire);
    if (!rt)
        return 0;
    for (int k = 0; k < NPOOLS; k++) {
        pool *p = pool_of(rt, k);
        if (p && pool_remove(p, t)) {
            weft__task_complete_external(t, NULL);
            return 1;
        }
    }
    return 0;
}

typedef struct blocking_call {
    weft_fn fn;
    void *arg;
    int ran;
} blocking_call;

static void *call_trampoline(void *arg)
{
    blocking_call *c = arg;
    c->fn(c->arg);
    c->ran = 1; /* published by the completion's release exchange */
    return NULL;
}

/* For services built on the pool (fs.c, dns.c): runs fn(arg) on the pool
 * of the calling task's runtime and waits for it, or runs it inline outside
 * a task. Returns 0 once fn has run (its outcome is in *arg, also when the
 * caller was cancelled meanwhile), -ECANCELED when the caller was cancelled
 * before fn started (then it never runs), -ETIMEDOUT likewise when the
 * caller's deadline scope ended first, or -errno when it could not be
 * submitted. fn may use memory on the caller's stack: this never returns
 * while fn may still run. */
int weft__blocking_call(weft_fn fn, void *arg)
{
    weft__worker *w = weft__cur_worker();
    weft__task *self = w ? w->current : NULL;
    if (!self) {
        fn(arg);
        return 0;
    }
    if (weft__cancel_pending(self))
        return -ECANCELED;
    blocking_call c = {fn, arg, 0};
    int err = 0;
    weft__task *t = submit(w->rt, POOL_BLOCKING, call_trampoline, &c, &err);
    if (!t)
        return -err;
    weft__waiter wt;
    weft__waiter_init(&wt);
    weft__wait_note(wt.task, WEFT__WAIT_BLOCKING, t->id, 0);
    uintptr_t seen;
    int why = -ECANCELED;
    if (weft__join_install(t, &wt, &seen)) { /* else it has finished already */
        int rc = weft__waiter_wait_until(&wt, WEFT__NO_DEADLINE); /* the caller's scope */
        if (rc < 0) {
            /* Cancelled, or the deadline scope ended (or no timer entry):
             * a queued job is taken out at once (its completion fires our
             * waiter); one handed to a thread is skipped when the thread
             * picks it; a running one finishes. Wait for whichever. */
            why = rc;
            weft__cancel(t);
            weft__blocking_remove(t);
            weft__waiter_wait_nocancel(&wt);
        }
    }
    weft__join(t, NULL); /* finished: releases the handle */
    return c.ran ? 0 : why;
}

/* ------------------------------------------------------------ public API */

static weft_task *spawn_on(weft_runtime *rt, int kind, weft_fn fn, void *arg)
{
    if (!rt || !fn) {
        errno = EINVAL;
        return NULL;
    }
    int err = 0;
    weft__task *t = submit(rt, kind, fn, arg, &err);
    if (!t) {
        errno = err;
        return NULL;
    }
    return weft__handle(t);
}

static weft_task *spawn_here(int kind, weft_fn fn, void *arg)
{
    weft_runtime *rt = weft_current_runtime();
    if (!rt) {
        errno = EPERM;
        return NULL;
    }
    return spawn_on(rt, kind, fn, arg);
}

static int configure(weft_runtime *rt, int kind, unsigned max_threads, unsigned keepalive_ms)
{
    if (!rt || max_threads > POOL_MAX_LIMIT)
        return -EINVAL;
    int err = 0;
    pool *p = pool_get(rt, kind, &err);
    if (!p)
        return -err;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (p->used) {
        rc = -EBUSY;
    } else {
        if (max_threads)
            p->max = max_threads;
        if (keepalive_ms)
            p->keepalive_ms = keepalive_ms;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static unsigned threads_of(weft_runtime *rt, int kind)
{
    if (!rt)
        return 0;
    pool *p = pool_of(rt, kind);
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    unsigned n = p->nthreads;
    pthread_mutex_unlock(&p->lock);
    return n;
}

weft_task *weft_spawn_blocking_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    return spawn_on(rt, POOL_BLOCKING, fn, arg);
}

weft_task *weft_spawn_blocking(weft_fn fn, void *arg) { return spawn_here(POOL_BLOCKING, fn, arg); }

int weft_blocking_configure(weft_runtime *rt, unsigned max_threads, unsigned keepalive_ms)
{
    return configure(rt, POOL_BLOCKING, max_threads, keepalive_ms);
}

unsigned weft_blocking_threads(weft_runtime *rt) { return threads_of(rt, POOL_BLOCKING); }

weft_task *weft_spawn_compute_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    return spawn_on(rt, POOL_COMPUTE, fn, arg);
}

weft_task *weft_spawn_compute(weft_fn fn, void *arg) { return spawn_here(POOL_COMPUTE, fn, arg); }

int weft_compute_configure(weft_runtime *rt, unsigned max_threads, unsigned keepalive_ms)
{
    return configure(rt, POOL_COMPUTE, max_threads, keepalive_ms);
}

unsigned weft_compute_threads(weft_runtime *rt) { return threads_of(rt, POOL_COMPUTE); }

void weft__blocking_metrics(weft_runtime *rt, int compute, unsigned *threads, unsigned *idle, size_t *queued)
{
    pool *p = pool_of(rt, compute ? POOL_COMPUTE : POOL_BLOCKING);
    *threads = *idle = 0;
    *queued = 0;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    *threads = p->nthreads;
    *idle = p->nidle;
    *queued = p->nqueued;
    pthread_mutex_unlock(&p->lock);
}
