/*
 * Async tasks against preemptive threads: the workloads and the models of
 * bench/async_vs_threads.c, shared with its smoke test
 * (tests/test_bench_smoke.c). Header only, static functions.
 *
 * A workload is N requests, at most `inflight` of them admitted at a time.
 * A request waits wait1_ms (a timer standing for a network wait), does
 * cpu_us of hashing, then waits wait2_ms; every tail_every-th request does
 * tail_cpu_us of hashing instead of cpu_us. Latency runs from admission (a
 * permit of the `inflight` taken by the admitting loop) to completion.
 *
 * Models:
 *   weft           one weft task per request, CPU inline; the admitting task
 *                  takes permits from a weft_sem
 *   weft_blocking  the same, with the CPU part sent to the blocking pool
 *                  (weft_spawn_blocking + weft_join); only when the runtime
 *                  has weft_spawn_blocking (AVT_HAVE_SPAWN_BLOCKING). With
 *                  AVT_OFFLOAD_MIN_US=N in the environment, only CPU parts of
 *                  at least N µs go to the pool (the rest run inline), which
 *                  is how a program would use the pool for known-heavy calls
 *   weft_compute   the same with weft_spawn_compute: the compute pool, one
 *                  thread per CPU, jobs beyond them queued FIFO (same
 *                  AVT_OFFLOAD_MIN_US knob)
 *   threads        one pthread per request (default attributes, detached);
 *                  the admitting thread takes permits from a POSIX semaphore
 *   pool2/16/64    a fixed pool of 2, 16 or 64 pthreads fed by a mutex +
 *                  condvar queue; waits are blocking nanosleeps
 */
#ifndef WEFT_BENCH_AVT_H
#define WEFT_BENCH_AVT_H

#include "bench.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "weft.h"

#if !defined(AVT_HAVE_SPAWN_BLOCKING) && defined(WEFT_HAVE_SPAWN_BLOCKING)
#define AVT_HAVE_SPAWN_BLOCKING 1
#endif

/* ------------------------------------------------------------ definitions */

typedef struct avt_workload {
    const char *name;  /* io, cpu, mixed, tail */
    const char *what;  /* one line for the table */
    int requests;
    int inflight;
    int wait1_ms, wait2_ms;
    int cpu_us;
    int tail_every;    /* 0 = no tail */
    int tail_cpu_us;
} avt_workload;

/* The four workloads of issue 7 at full size; scale `requests` down for --quick. */
static const avt_workload avt_workloads[] = {
    {"io", "wait 1 ms, 2 us CPU", 10000, 1000, 1, 0, 2, 0, 0},
    {"cpu", "200 us CPU", 10000, 1000, 0, 0, 200, 0, 0},
    {"mixed", "wait 1 ms, 50 us CPU, wait 1 ms", 10000, 1000, 1, 1, 50, 0, 0},
    {"tail", "as mixed, 1% do 20 ms CPU", 10000, 1000, 1, 1, 50, 100, 20000},
};
#define AVT_NWORKLOADS ((int)(sizeof avt_workloads / sizeof avt_workloads[0]))

enum {
    AVT_WEFT,
    AVT_WEFT_BLOCKING,
    AVT_WEFT_COMPUTE,
    AVT_THREADS,
    AVT_POOL2,
    AVT_POOL16,
    AVT_POOL64,
    AVT_NMODELS
};
static const char *const avt_model_names[AVT_NMODELS] = {
    "weft", "weft_blocking", "weft_compute", "threads", "pool2", "pool16", "pool64"};

static inline int avt_model_available(int m)
{
#ifdef AVT_HAVE_SPAWN_BLOCKING
    (void)m;
    return 1;
#else
    return m != AVT_WEFT_BLOCKING && m != AVT_WEFT_COMPUTE;
#endif
}

static inline int avt_model_is_weft(int m)
{
    return m == AVT_WEFT || m == AVT_WEFT_BLOCKING || m == AVT_WEFT_COMPUTE;
}

static inline int avt_pool_size(int m)
{
    return m == AVT_POOL2 ? 2 : m == AVT_POOL16 ? 16 : m == AVT_POOL64 ? 64 : 0;
}

typedef struct avt_result {
    int completed;     /* requests that finished */
    int errors;        /* failed spawns / thread creations (retried) */
    double wall_ms;    /* first admission to last completion */
    double p50_ms, p99_ms, max_ms, min_ms;
    int peak_inflight; /* most requests admitted and not finished at once */
    /* weft models: the runtime's counters summed over its workers */
    uint64_t overflows, global_pulls, steals, lifo_capped, parks, rescued;
} avt_result;

/* ------------------------------------------------------------ CPU work */

/* A dependent multiply-xorshift chain: no vectorisation, no closed form. */
static inline uint64_t avt_hash(uint64_t iters, uint64_t seed)
{
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 0; i < iters; i++) {
        h ^= h >> 31;
        h *= 0xff51afd7ed558ccdULL;
        h += i;
    }
    return h;
}

/* Iterations of avt_hash per microsecond on this machine: the best of a few
 * timed runs of at least min_ms each. */
static inline double avt_calibrate(int min_ms)
{
    double best = 0;
    uint64_t iters = 1000;
    for (int round = 0; round < 5; round++) {
        int64_t t0, dt;
        for (;;) {
            t0 = bench_now_ns();
            bench_keep(avt_hash(iters, (uint64_t)round));
            dt = bench_now_ns() - t0;
            if (dt >= (int64_t)min_ms * 1000000 || iters > (1ULL << 40))
                break;
            iters *= 2;
        }
        double ipu = (double)iters / ((double)dt / 1000.0);
        if (ipu > best)
            best = ipu;
    }
    return best > 0 ? best : 1;
}

/* ------------------------------------------------------------ one run */

typedef struct avt_state {
    const avt_workload *w;
    double iters_per_us;
    int model;
    unsigned weft_workers;  /* 0 = automatic */
    int offload_min_us;     /* weft_blocking/compute: smallest CPU part sent to the pool */
    int64_t *admit_ns, *lat_ns;
    _Atomic int completed, errors, inflight;
    int peak_inflight;
    weft_worker_stats wstats; /* summed at the end of a weft run */
    int64_t start_ns, end_ns;
    bench_latch latch;       /* for the pthread models */
    /* weft */
    weft_sem *wsem;
    weft_wg *wwg;
    /* threads */
    sem_t psem;
    /* pools */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    int *queue;
    int qhead, qtail, qclosed;
} avt_state;

static avt_state *avt__cur; /* one run at a time per process */

static inline void avt__admitted(avt_state *s)
{
    int now = atomic_fetch_add(&s->inflight, 1) + 1;
    if (now > s->peak_inflight)
        s->peak_inflight = now;
}

static inline int avt_cpu_us_of(const avt_workload *w, int i)
{
    if (w->tail_every > 0 && i % w->tail_every == w->tail_every / 2)
        return w->tail_cpu_us;
    return w->cpu_us;
}

static inline uint64_t avt_do_cpu(avt_state *s, int i)
{
    double us = avt_cpu_us_of(s->w, i);
    return avt_hash((uint64_t)(us * s->iters_per_us), (uint64_t)i);
}

/* Records completion of request i; returns 1 if it was the last one. */
static inline int avt_complete(avt_state *s, int i, uint64_t h)
{
    bench_keep(h);
    int64_t now = bench_now_ns();
    s->lat_ns[i] = now - s->admit_ns[i];
    atomic_fetch_sub(&s->inflight, 1);
    int done = atomic_fetch_add(&s->completed, 1) + 1;
    if (done == s->w->requests)
        s->end_ns = now;
    return done == s->w->requests;
}

static inline void avt_nanosleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- weft */

#ifdef AVT_HAVE_SPAWN_BLOCKING
static void *avt__blocking_cpu(void *arg)
{
    int i = (int)(intptr_t)arg;
    return (void *)(uintptr_t)avt_do_cpu(avt__cur, i);
}
#endif

static void *avt__weft_request(void *arg)
{
    avt_state *s = avt__cur;
    int i = (int)(intptr_t)arg;
    uint64_t h = 0;
    if (s->w->wait1_ms)
        weft_sleep_ms((uint64_t)s->w->wait1_ms);
#ifdef AVT_HAVE_SPAWN_BLOCKING
    if ((s->model == AVT_WEFT_BLOCKING || s->model == AVT_WEFT_COMPUTE) &&
        avt_cpu_us_of(s->w, i) >= s->offload_min_us) {
        weft_task *t = s->model == AVT_WEFT_COMPUTE ? weft_spawn_compute(avt__blocking_cpu, arg)
                                                    : weft_spawn_blocking(avt__blocking_cpu, arg);
        void *r = NULL;
        if (!t || weft_join(t, &r) != 0) {
            atomic_fetch_add(&s->errors, 1);
            h = avt_do_cpu(s, i);
        } else {
            h = (uint64_t)(uintptr_t)r;
        }
    } else
#endif
        h = avt_do_cpu(s, i);
    if (s->w->wait2_ms)
        weft_sleep_ms((uint64_t)s->w->wait2_ms);
    avt_complete(s, i, h);
    weft_sem_release(s->wsem, 1);
    weft_wg_done(s->wwg);
    return NULL;
}

static void *avt__weft_root(void *arg)
{
    avt_state *s = arg;
    int n = s->w->requests;
    weft_wg_add(s->wwg, n);
    s->start_ns = bench_now_ns();
    for (int i = 0; i < n; i++) {
        weft_sem_acquire(s->wsem, -1);
        s->admit_ns[i] = bench_now_ns();
        avt__admitted(s);
        weft_task *t;
        while (!(t = weft_spawn(avt__weft_request, (void *)(intptr_t)i))) {
            atomic_fetch_add(&s->errors, 1);
            weft_sleep_ms(1);
        }
        weft_detach(t);
    }
    weft_wg_wait(s->wwg, -1);
    return NULL;
}

static inline int avt__run_weft(avt_state *s)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = s->weft_workers;
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt)
        return -1;
    s->wsem = weft_sem_new(s->w->inflight);
    s->wwg = weft_wg_new();
    int rc = (s->wsem && s->wwg) ? weft_runtime_block_on(rt, avt__weft_root, s, NULL) : -1;
    weft_worker_stats st[64];
    unsigned nw = weft_runtime_stats(rt, st, 64);
    for (unsigned k = 0; k < nw && k < 64; k++) {
        s->wstats.overflows += st[k].overflows;
        s->wstats.global_pulls += st[k].global_pulls;
        s->wstats.steals += st[k].steals;
        s->wstats.lifo_capped += st[k].lifo_capped;
        s->wstats.parks += st[k].parks;
        s->wstats.timers_rescued += st[k].timers_rescued + st[k].events_rescued;
    }
    weft_runtime_free(rt);
    if (s->wsem)
        weft_sem_free(s->wsem);
    if (s->wwg)
        weft_wg_free(s->wwg);
    return rc;
}

/* ---- blocking request body, shared by the pthread models */

static inline uint64_t avt__blocking_request(avt_state *s, int i)
{
    avt_nanosleep_ms(s->w->wait1_ms);
    uint64_t h = avt_do_cpu(s, i);
    avt_nanosleep_ms(s->w->wait2_ms);
    return h;
}

/* ---- thread per request */

static void *avt__thread_request(void *arg)
{
    avt_state *s = avt__cur;
    int i = (int)(intptr_t)arg;
    uint64_t h = avt__blocking_request(s, i);
    avt_complete(s, i, h);
    /* The permit last: once every permit is back, the admitting thread
     * frees s, so nothing here may touch s after sem_post. */
    bench_latch_add(&s->latch, 1);
    sem_post(&s->psem);
    return NULL;
}

static inline int avt__run_threads(avt_state *s)
{
    int n = s->w->requests;
    if (sem_init(&s->psem, 0, (unsigned)s->w->inflight) != 0)
        return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bench_latch_init(&s->latch, (uint64_t)n);
    s->start_ns = bench_now_ns();
    for (int i = 0; i < n; i++) {
        while (sem_wait(&s->psem) != 0) {
        }
        s->admit_ns[i] = bench_now_ns();
        avt__admitted(s);
        pthread_t th;
        while (pthread_create(&th, &attr, avt__thread_request, (void *)(intptr_t)i) != 0) {
            atomic_fetch_add(&s->errors, 1);
            avt_nanosleep_ms(1);
        }
    }
    bench_latch_wait(&s->latch);
    pthread_attr_destroy(&attr);
    /* Detached threads may still be between sem_post and exit. */
    for (int k = 0; k < s->w->inflight; k++)
        while (sem_wait(&s->psem) != 0) {
        }
    sem_destroy(&s->psem);
    return 0;
}

/* ---- fixed pools */

static void *avt__pool_worker(void *arg)
{
    avt_state *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (s->qhead == s->qtail && !s->qclosed)
            pthread_cond_wait(&s->qcv, &s->qmu);
        if (s->qhead == s->qtail) {
            pthread_mutex_unlock(&s->qmu);
            return NULL;
        }
        int i = s->queue[s->qhead++];
        pthread_mutex_unlock(&s->qmu);
        uint64_t h = avt__blocking_request(s, i);
        avt_complete(s, i, h);
        sem_post(&s->psem);
        bench_latch_add(&s->latch, 1);
    }
}

static inline int avt__run_pool(avt_state *s, int nthreads)
{
    int n = s->w->requests;
    s->queue = malloc(sizeof(int) * (size_t)n);
    if (!s->queue || sem_init(&s->psem, 0, (unsigned)s->w->inflight) != 0) {
        free(s->queue);
        return -1;
    }
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    s->qhead = s->qtail = s->qclosed = 0;
    bench_latch_init(&s->latch, (uint64_t)n);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    int started = 0;
    for (; th && started < nthreads; started++)
        if (pthread_create(&th[started], NULL, avt__pool_worker, s) != 0)
            break;
    int rc = started > 0 ? 0 : -1;
    if (rc == 0) {
        s->start_ns = bench_now_ns();
        for (int i = 0; i < n; i++) {
            while (sem_wait(&s->psem) != 0) {
            }
            s->admit_ns[i] = bench_now_ns();
            avt__admitted(s);
            pthread_mutex_lock(&s->qmu);
            s->queue[s->qtail++] = i;
            pthread_cond_signal(&s->qcv);
            pthread_mutex_unlock(&s->qmu);
        }
        bench_latch_wait(&s->latch);
    }
    pthread_mutex_lock(&s->qmu);
    s->qclosed = 1;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    for (int k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    free(th);
    free(s->queue);
    s->queue = NULL;
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->qmu);
    sem_destroy(&s->psem);
    return rc;
}

/* ---- entry point */

/* Runs workload w in model m in this process (call it in a fresh child for
 * clean rusage figures). weft_workers: worker threads of the weft runtime
 * (0 = automatic). Returns 0 and fills *out, or -1. */
static inline int avt_run(const avt_workload *w, int m, double iters_per_us, unsigned weft_workers,
                          avt_result *out)
{
    memset(out, 0, sizeof *out);
    if (m < 0 || m >= AVT_NMODELS || !avt_model_available(m) || w->requests <= 0 ||
        w->inflight <= 0)
        return -1;
    avt_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->w = w;
    s->model = m;
    s->iters_per_us = iters_per_us;
    s->weft_workers = weft_workers;
    {
        const char *e = getenv("AVT_OFFLOAD_MIN_US");
        s->offload_min_us = e ? atoi(e) : 0;
    }
    s->admit_ns = calloc((size_t)w->requests, sizeof(int64_t));
    s->lat_ns = calloc((size_t)w->requests, sizeof(int64_t));
    int rc = -1;
    if (s->admit_ns && s->lat_ns) {
        avt__cur = s;
        if (avt_model_is_weft(m))
            rc = avt__run_weft(s);
        else if (m == AVT_THREADS)
            rc = avt__run_threads(s);
        else
            rc = avt__run_pool(s, avt_pool_size(m));
        avt__cur = NULL;
    }
    if (rc == 0) {
        int n = atomic_load(&s->completed);
        out->completed = n;
        out->errors = atomic_load(&s->errors);
        out->wall_ms = (double)(s->end_ns - s->start_ns) / 1e6;
        out->peak_inflight = s->peak_inflight;
        out->overflows = s->wstats.overflows;
        out->global_pulls = s->wstats.global_pulls;
        out->steals = s->wstats.steals;
        out->lifo_capped = s->wstats.lifo_capped;
        out->parks = s->wstats.parks;
        out->rescued = s->wstats.timers_rescued;
        double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        if (v) {
            int k = 0;
            for (int i = 0; i < w->requests && k < n; i++)
                if (s->lat_ns[i] > 0)
                    v[k++] = (double)s->lat_ns[i] / 1e6;
            out->p50_ms = bench_percentile(v, k, 50);
            out->p99_ms = bench_percentile(v, k, 99);
            out->min_ms = k ? v[0] : 0;
            out->max_ms = k ? v[k - 1] : 0;
            free(v);
        }
    }
    free(s->admit_ns);
    free(s->lat_ns);
    free(s);
    return rc;
}

#endif
