/*
 * The million-timers workload (issue 19), the measuring code of
 * bench/timers.c, shared with its smoke test (tests/test_timers_smoke.c).
 * Header only, static functions.
 *
 * One task spawns n detached tasks in a loop. Task i, when it first runs,
 * reads the clock (its start), sleeps until start + off(i), off uniform in
 * [0, spread) (a fixed hash of i, so every run and every runtime sleeps the
 * same offsets), reads the clock again and records how late it woke: wake -
 * deadline, negative if it woke early. Go's version is a goroutine per i
 * doing time.Sleep(time.Until(start.Add(off))).
 *
 * Wall time: from just before the spawner starts to the moment the last
 * sleeper woke (stamped by that sleeper, so the wake-up of the thread that
 * waits is not counted).
 */
#ifndef WEFT_BENCH_TIMERS_H
#define WEFT_BENCH_TIMERS_H

#include "bench.h"

typedef struct timersb_result {
    double wall_ms;
    double mean_ms, p50_ms, p99_ms, max_ms; /* lateness */
    uint64_t woke;                          /* sleepers that woke */
    uint64_t early;                         /* woke before their deadline */
    int failed;                             /* a spawn or sleep failed */
} timersb_result;

typedef struct timersb__run {
    uint64_t n;
    int64_t spread_ns;
    int64_t *late; /* ns, per task */
    _Atomic uint64_t failed;
    bench_latch done;
    weft_runtime *rt;
} timersb__run;

static timersb__run *timersb__cur;

/* A uniform offset in [0, spread): splitmix64 of i, scaled. */
static inline int64_t timersb_offset(uint64_t i, int64_t spread_ns)
{
    uint64_t z = i + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (int64_t)((unsigned __int128)z * (uint64_t)spread_ns >> 64);
}

static void *timersb__sleeper(void *arg)
{
    timersb__run *r = timersb__cur;
    uint64_t i = (uintptr_t)arg;
    weft_time d = weft_now() + timersb_offset(i, r->spread_ns);
    if (weft_sleep_until(d) != 0)
        atomic_fetch_add(&r->failed, 1);
    r->late[i] = weft_now() - d;
    bench_latch_add(&r->done, 1);
    return NULL;
}

static void *timersb__spawner(void *arg)
{
    timersb__run *r = arg;
    for (uint64_t i = 0; i < r->n; i++) {
        int rc = weft_go(timersb__sleeper, (void *)(uintptr_t)i);
        if (rc != 0) {
            fprintf(stderr, "timers: spawn %llu: %s\n", (unsigned long long)i, strerror(-rc));
            atomic_fetch_add(&r->failed, 1);
            r->late[i] = 0;
            bench_latch_add(&r->done, 1);
        }
    }
    return NULL;
}

static int timersb__cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Runs the workload once on a fresh runtime of `workers` workers (0: the
 * runtime's default). Returns 0 and fills *out, or -1 (runtime or memory). */
static inline int timersb_run(unsigned workers, uint64_t n, int64_t spread_ms, timersb_result *out)
{
    memset(out, 0, sizeof *out);
    timersb__run r;
    memset(&r, 0, sizeof r);
    r.n = n;
    r.spread_ns = spread_ms * 1000000;
    r.late = calloc(n ? n : 1, sizeof *r.late);
    if (!r.late)
        return -1;
    bench_latch_init(&r.done, n);
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    if (weft_runtime_create(&cfg, &r.rt) != 0) {
        free(r.late);
        return -1;
    }
    timersb__cur = &r;
    int64_t t0 = bench_now_ns();
    if (n) {
        if (weft_go_on(r.rt, timersb__spawner, &r) != 0) {
            weft_runtime_free(r.rt);
            free(r.late);
            return -1;
        }
        bench_latch_wait(&r.done);
    }
    int64_t t1 = n ? r.done.end_ns : bench_now_ns();
    weft_runtime_free(r.rt);
    timersb__cur = NULL;

    out->wall_ms = (double)(t1 - t0) / 1e6;
    out->woke = atomic_load(&r.done.count);
    out->failed = atomic_load(&r.failed) != 0;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        out->early += r.late[i] < 0;
        sum += (double)r.late[i];
    }
    if (n) {
        qsort(r.late, n, sizeof *r.late, timersb__cmp64);
        out->mean_ms = sum / (double)n / 1e6;
        out->p50_ms = (double)r.late[n / 2] / 1e6;
        out->p99_ms = (double)r.late[(n - 1) * 99 / 100] / 1e6;
        out->max_ms = (double)r.late[n - 1] / 1e6;
    }
    free(r.late);
    return 0;
}

#endif
