/*
 * Scheduler benchmarks on a 2-worker runtime, each beside a pthreads
 * baseline measured in the same run:
 *
 *   spawn_many              one task spawns N empty detached tasks (each bumps
 *                           an atomic counter) and yields until all have run
 *     _pthread_pool         the same N jobs through a 2-thread mutex+condvar pool
 *     _pthread_create       pthread_create + pthread_join of an empty thread
 *   spawn_remote            a plain OS thread spawns N tasks with weft_spawn_on
 *                           and sleeps until the last one has run
 *   yield_many              200 tasks x 1,000 weft_yield (ns per yield)
 *     _pthread              200 threads x 1,000 sched_yield
 *   chained_spawn           chains of 1,000 tasks, each spawning the next; the
 *                           last wakes the task that started the chain
 *   spawn_remote_contended  8 plain threads (barrier-started) spawning 12,800
 *                           tasks in all with weft_spawn_on ...
 *   spawn_remote_1thread    ... and 1 thread spawning the same 12,800
 *   spawn_remote_contended_ratio   the first over the second
 *
 * All values are ns per task (per job, thread or yield), the median of the
 * repetitions; a `#` line gives min and max, and another the runtime's
 * counters and the process's rusage over the benchmark.
 *
 * Remote spawns are timed from the first spawn to the end of the last task
 * (stamped by that task), not to when the waiting thread gets the CPU back.
 * chained_spawn waits with the runtime's internal waiter (runtime/internal.h,
 * what weft_join uses): the public API has no wait-for-event primitive yet.
 *
 * Flags: --quick, --reps N, --only NAME (substring), --no-baseline (weft
 * only, for profiling), --workers N (analysis; the targets are for 2).
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "internal.h"
#include "weft.h"

#define WORKERS 2
static unsigned workers = WORKERS; /* --workers N overrides, for analysis */


static void block_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    int rc = weft_runtime_block_on(rt, fn, arg, NULL);
    if (rc != 0) {
        fprintf(stderr, "weft_runtime_block_on: %s\n", strerror(-rc));
        exit(1);
    }
}

static void detach_or_die(weft_task *t, const char *what)
{
    if (!t) {
        perror(what);
        exit(1);
    }
    weft_detach(t);
}

/* One `#` line with the runtime's counters summed over its workers. */
static void stats_comment(const char *name, weft_runtime *rt)
{
    weft_worker_stats st[64];
    unsigned n = weft_runtime_stats(rt, st, 64);
    weft_worker_stats sum;
    memset(&sum, 0, sizeof sum);
    for (unsigned i = 0; i < n && i < 64; i++) {
        sum.tasks_run += st[i].tasks_run;
        sum.steals += st[i].steals;
        sum.tasks_stolen += st[i].tasks_stolen;
        sum.parks += st[i].parks;
        sum.global_pulls += st[i].global_pulls;
        sum.overflows += st[i].overflows;
        sum.lifo_capped += st[i].lifo_capped;
    }
    bench_comment("%s weft stats: tasks_run %llu (w0 %llu) steals %llu stolen %llu parks %llu "
                  "global_pulls %llu overflows %llu lifo_capped %llu",
                  name, (unsigned long long)sum.tasks_run, (unsigned long long)st[0].tasks_run,
                  (unsigned long long)sum.steals, (unsigned long long)sum.tasks_stolen,
                  (unsigned long long)sum.parks, (unsigned long long)sum.global_pulls,
                  (unsigned long long)sum.overflows, (unsigned long long)sum.lifo_capped);
}

typedef struct sizes {
    int reps;
    long spawn_many;      /* tasks */
    long pool_jobs;       /* jobs through the pthread pool */
    long threads;         /* pthread_create + join */
    long spawn_remote;    /* tasks */
    int yield_tasks, yields;
    int chain_len, chains;
    long contended_total; /* tasks, split among the spawning threads */
    int contended_threads;
    int baseline;         /* run the pthread baselines too */
} sizes;

/* ====================================================== spawn_many */

static _Atomic long many_count;

static void *many_task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&many_count, 1, memory_order_relaxed);
    return NULL;
}

typedef struct many_params {
    long n;
    int reps;
    double *out;
    double spawn_phase; /* ns per task spent spawning (median rep's is not kept: last rep) */
    long yields;        /* weft_yield calls while waiting, last rep */
} many_params;

static void *many_root(void *arg)
{
    many_params *p = arg;
    for (int r = 0; r < p->reps; r++) {
        atomic_store(&many_count, 0);
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < p->n; i++)
            detach_or_die(weft_spawn(many_task, NULL), "weft_spawn");
        int64_t t1 = bench_now_ns();
        long yields = 0;
        while (atomic_load_explicit(&many_count, memory_order_acquire) < p->n) {
            weft_yield();
            yields++;
        }
        int64_t t2 = bench_now_ns();
        p->out[r] = (double)(t2 - t0) / (double)p->n;
        p->spawn_phase = (double)(t1 - t0) / (double)p->n;
        p->yields = yields;
    }
    return NULL;
}

/* ---- baseline: a fixed pool of threads around a mutex + condvar queue */

typedef struct job {
    struct job *next;
    void (*fn)(void *);
    void *arg;
} job;

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    job *head, *tail;
    int idle;
    int stop;
    int nthreads;
    pthread_t *threads;
} pool;

static void *pool_worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->nonempty, &p->lock);
            p->idle--;
        }
        job *j = p->head;
        if (!j) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
    }
}

static void pool_start(pool *p, int n)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->nonempty, NULL);
    p->nthreads = n;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    for (int i = 0; i < n; i++)
        if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
            perror("pthread_create");
            exit(1);
        }
}

static void pool_submit(pool *p, void (*fn)(void *), void *arg)
{
    job *j = malloc(sizeof *j);
    if (!j) {
        perror("malloc");
        exit(1);
    }
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    if (p->idle)
        pthread_cond_signal(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
}

static void pool_stop(pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->nonempty);
    pthread_mutex_destroy(&p->lock);
}

static void pool_job(void *arg) { bench_latch_add(arg, 1); }

static void *empty_thread(void *arg) { return arg; }

static void bench_spawn_many(const sizes *z, double *v)
{
    bench_usage u0 = bench_getrusage();
    int64_t w0 = bench_now_ns();
    weft_runtime *rt = bench_new_runtime(workers);
    many_params mp = {z->spawn_many, z->reps, v, 0, 0};
    block_on(rt, many_root, &mp);
    bench_comment("spawn_many last rep: spawning took %.1f ns/task, then %ld yields until all ran",
                  mp.spawn_phase, mp.yields);
    stats_comment("spawn_many", rt);
    weft_runtime_free(rt);
    bench_usage u1 = bench_getrusage();
    bench_usage_comment("spawn_many", &u0, &u1, (double)(bench_now_ns() - w0) / 1e9);
    bench_report("spawn_many", v, z->reps, "ns");
    if (!z->baseline)
        return;

    pool p;
    pool_start(&p, (int)workers);
    bench_latch l;
    for (int r = 0; r < z->reps; r++) {
        bench_latch_init(&l, (uint64_t)z->pool_jobs);
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < z->pool_jobs; i++)
            pool_submit(&p, pool_job, &l);
        bench_latch_wait(&l);
        v[r] = (double)(l.end_ns - t0) / (double)z->pool_jobs;
    }
    pool_stop(&p);
    bench_report("spawn_many_pthread_pool", v, z->reps, "ns");

    for (int r = 0; r < z->reps; r++) {
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < z->threads; i++) {
            pthread_t th;
            if (pthread_create(&th, NULL, empty_thread, NULL) != 0) {
                perror("pthread_create");
                exit(1);
            }
            pthread_join(th, NULL);
        }
        v[r] = (double)(bench_now_ns() - t0) / (double)z->threads;
    }
    bench_report("spawn_many_pthread_create", v, z->reps, "ns");
}

/* ====================================================== spawn_remote */

static void *latch_task(void *arg)
{
    bench_latch_add(arg, 1);
    return NULL;
}

static void bench_spawn_remote(const sizes *z, double *v)
{
    bench_usage u0 = bench_getrusage();
    int64_t w0 = bench_now_ns();
    weft_runtime *rt = bench_new_runtime(workers);
    bench_latch l;
    for (int r = 0; r < z->reps; r++) {
        bench_latch_init(&l, (uint64_t)z->spawn_remote);
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < z->spawn_remote; i++)
            detach_or_die(weft_spawn_on(rt, latch_task, &l), "weft_spawn_on");
        bench_latch_wait(&l);
        v[r] = (double)(l.end_ns - t0) / (double)z->spawn_remote;
    }
    stats_comment("spawn_remote", rt);
    weft_runtime_free(rt);
    bench_usage u1 = bench_getrusage();
    bench_usage_comment("spawn_remote", &u0, &u1, (double)(bench_now_ns() - w0) / 1e9);
    bench_report("spawn_remote", v, z->reps, "ns");
}

/* ====================================================== yield_many */

typedef struct yield_params {
    int tasks, yields, reps;
    double *out;
} yield_params;

static void *yielder(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++)
        weft_yield();
    return NULL;
}

static void *yield_root(void *arg)
{
    yield_params *p = arg;
    weft_task **h = calloc((size_t)p->tasks, sizeof *h);
    for (int r = 0; r < p->reps; r++) {
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < p->tasks; i++) {
            h[i] = weft_spawn(yielder, (void *)(intptr_t)p->yields);
            if (!h[i]) {
                perror("weft_spawn");
                exit(1);
            }
        }
        for (int i = 0; i < p->tasks; i++)
            weft_join(h[i], NULL);
        p->out[r] = (double)(bench_now_ns() - t0) / ((double)p->tasks * p->yields);
    }
    free(h);
    return NULL;
}

typedef struct thread_yield_params {
    pthread_barrier_t *start;
    int yields;
} thread_yield_params;

static void *thread_yielder(void *arg)
{
    thread_yield_params *p = arg;
    pthread_barrier_wait(p->start);
    for (int i = 0; i < p->yields; i++)
        sched_yield();
    return NULL;
}

static void bench_yield_many(const sizes *z, double *v)
{
    bench_usage u0 = bench_getrusage();
    int64_t w0 = bench_now_ns();
    weft_runtime *rt = bench_new_runtime(workers);
    yield_params yp = {z->yield_tasks, z->yields, z->reps, v};
    block_on(rt, yield_root, &yp);
    stats_comment("yield_many", rt);
    weft_runtime_free(rt);
    bench_usage u1 = bench_getrusage();
    bench_usage_comment("yield_many", &u0, &u1, (double)(bench_now_ns() - w0) / 1e9);
    bench_report("yield_many", v, z->reps, "ns");
    if (!z->baseline)
        return;

    pthread_t *th = calloc((size_t)z->yield_tasks, sizeof *th);
    for (int r = 0; r < z->reps; r++) {
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, (unsigned)z->yield_tasks + 1);
        thread_yield_params tp = {&b, z->yields};
        for (int i = 0; i < z->yield_tasks; i++)
            if (pthread_create(&th[i], NULL, thread_yielder, &tp) != 0) {
                perror("pthread_create");
                exit(1);
            }
        pthread_barrier_wait(&b);
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < z->yield_tasks; i++)
            pthread_join(th[i], NULL);
        v[r] = (double)(bench_now_ns() - t0) / ((double)z->yield_tasks * z->yields);
        pthread_barrier_destroy(&b);
    }
    free(th);
    bench_report("yield_many_pthread", v, z->reps, "ns");
}

/* ====================================================== chained_spawn */

static weft__waiter *chain_waiter; /* the current chain's end signal */

static void *chain_task(void *arg)
{
    intptr_t left = (intptr_t)arg;
    if (left > 1)
        detach_or_die(weft_spawn(chain_task, (void *)(left - 1)), "weft_spawn");
    else
        weft__waiter_fire(chain_waiter);
    return NULL;
}

typedef struct chain_params {
    int len, chains, reps;
    double *out;
} chain_params;

static void run_chain(int len)
{
    weft__waiter wt;
    weft__waiter_init(&wt);
    chain_waiter = &wt;
    detach_or_die(weft_spawn(chain_task, (void *)(intptr_t)len), "weft_spawn");
    (void)weft__waiter_wait(&wt); /* returns void or int depending on the runtime version */
}

static void *chain_root(void *arg)
{
    chain_params *p = arg;
    run_chain(p->len); /* warm-up */
    for (int r = 0; r < p->reps; r++) {
        int64_t t0 = bench_now_ns();
        for (int c = 0; c < p->chains; c++)
            run_chain(p->len);
        p->out[r] = (double)(bench_now_ns() - t0) / ((double)p->chains * p->len);
    }
    return NULL;
}

static void bench_chained_spawn(const sizes *z, double *v)
{
    bench_usage u0 = bench_getrusage();
    int64_t w0 = bench_now_ns();
    weft_runtime *rt = bench_new_runtime(workers);
    chain_params cp = {z->chain_len, z->chains, z->reps, v};
    block_on(rt, chain_root, &cp);
    stats_comment("chained_spawn", rt);
    weft_runtime_free(rt);
    bench_usage u1 = bench_getrusage();
    bench_usage_comment("chained_spawn", &u0, &u1, (double)(bench_now_ns() - w0) / 1e9);
    bench_report("chained_spawn", v, z->reps, "ns");
}

/* ====================================================== spawn_remote_contended */

typedef struct remote_params {
    weft_runtime *rt;
    pthread_barrier_t *start;
    bench_latch *latch;
    long n;
    int64_t start_ns; /* when this thread began spawning */
} remote_params;

static void *remote_spawner(void *arg)
{
    remote_params *p = arg;
    pthread_barrier_wait(p->start);
    p->start_ns = bench_now_ns();
    for (long i = 0; i < p->n; i++)
        detach_or_die(weft_spawn_on(p->rt, latch_task, p->latch), "weft_spawn_on");
    return NULL;
}

/* ns per task for nthreads threads spawning total tasks in all: from the
 * first spawn to the end of the last task. */
static double remote_round(weft_runtime *rt, int nthreads, long total)
{
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, (unsigned)nthreads + 1);
    bench_latch l;
    bench_latch_init(&l, (uint64_t)total);
    pthread_t th[64];
    remote_params p[64];
    for (int i = 0; i < nthreads; i++) {
        p[i] = (remote_params){rt, &b, &l, total / nthreads + (i < total % nthreads), 0};
        if (pthread_create(&th[i], NULL, remote_spawner, &p[i]) != 0) {
            perror("pthread_create");
            exit(1);
        }
    }
    pthread_barrier_wait(&b);
    bench_latch_wait(&l);
    /* From the first spawner's start (this thread may get the CPU back only
     * after all the work is done) to the last task's end. */
    int64_t t0 = INT64_MAX;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (p[i].start_ns < t0)
            t0 = p[i].start_ns;
    }
    pthread_barrier_destroy(&b);
    return (double)(l.end_ns - t0) / (double)total;
}

static void bench_spawn_remote_contended(const sizes *z, double *v)
{
    bench_usage u0 = bench_getrusage();
    int64_t w0 = bench_now_ns();
    weft_runtime *rt = bench_new_runtime(workers);
    remote_round(rt, z->contended_threads, z->contended_total); /* warm-up */
    double *one = calloc((size_t)z->reps, sizeof *one);
    /* Interleaved, so that both see the same machine weather. */
    for (int r = 0; r < z->reps; r++) {
        v[r] = remote_round(rt, z->contended_threads, z->contended_total);
        one[r] = remote_round(rt, 1, z->contended_total);
    }
    stats_comment("spawn_remote_contended", rt);
    weft_runtime_free(rt);
    bench_usage u1 = bench_getrusage();
    bench_usage_comment("spawn_remote_contended", &u0, &u1, (double)(bench_now_ns() - w0) / 1e9);
    double c = bench_report("spawn_remote_contended", v, z->reps, "ns");
    double s = bench_report("spawn_remote_1thread", one, z->reps, "ns");
    bench_print("spawn_remote_contended_ratio", c / s, "x");
    free(one);
}

/* ====================================================== main */

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    sizes z;
    z.reps = bench_reps(&a, 5, 3);
    z.spawn_many = a.quick ? 200000 : 1000000;
    z.pool_jobs = a.quick ? 200000 : 1000000;
    z.threads = a.quick ? 2000 : 10000;
    z.spawn_remote = a.quick ? 20000 : 100000;
    z.yield_tasks = 200;
    z.yields = a.quick ? 200 : 1000;
    z.chain_len = 1000;
    z.chains = a.quick ? 20 : 100;
    z.contended_total = 12800;
    z.contended_threads = 8;
    z.baseline = !a.no_baseline;
    double *v = calloc((size_t)z.reps, sizeof *v);
    if (a.workers)
        workers = a.workers;

    bench_comment("sched: %d workers, reps %d, spawn_many %ld, pool %ld, threads %ld, spawn_remote %ld, "
                  "yield %dx%d, chains %dx%d, contended %ld over %d threads",
                  workers, z.reps, z.spawn_many, z.pool_jobs, z.threads, z.spawn_remote, z.yield_tasks,
                  z.yields, z.chains, z.chain_len, z.contended_total, z.contended_threads);

    if (bench_selected(&a, "spawn_many"))
        bench_spawn_many(&z, v);
    if (bench_selected(&a, "spawn_remote"))
        bench_spawn_remote(&z, v);
    if (bench_selected(&a, "yield_many"))
        bench_yield_many(&z, v);
    if (bench_selected(&a, "chained_spawn"))
        bench_chained_spawn(&z, v);
    if (bench_selected(&a, "spawn_remote_contended"))
        bench_spawn_remote_contended(&z, v);
    free(v);
    return 0;
}
