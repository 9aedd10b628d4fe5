/*
 * Scaling with worker threads: the same three benchmarks on runtimes of 1, 2,
 * 4, ... workers up to the CPUs this process may run on (sched_getaffinity).
 *
 *   spawn     64 spawner tasks each spawn N/64 empty detached tasks; tasks/s
 *   pingpong  64 pairs of tasks hand an int back and forth over two weft
 *             channels of capacity 1; round trips/s
 *   mixed     workload (c) of bench/avt.h in the weft model: wait 1 ms, 50 us
 *             of CPU, wait 1 ms, at most 1,000 in flight; requests/s
 *
 * Results: bench: scaling_<bench>_w<N> <throughput> <unit>, and
 * bench: scaling_<bench>_w<N>_eff <ratio>: throughput(N) / (N x throughput(1)),
 * 1.0 = perfect scaling. Medians over --reps (default 3, quick 1).
 * Flags: --quick (smaller sizes), --reps N, --only NAME.
 */
#include "avt.h"

#include <sched.h>

#define PAIRS 64
#define SPAWNERS 64

static long g_spawn_n, g_rounds;
static weft_wg *g_wg;

static void *empty_task(void *arg)
{
    (void)arg;
    weft_wg_done(g_wg);
    return NULL;
}

static void *spawner(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        weft_task *t;
        while (!(t = weft_spawn(empty_task, NULL)))
            weft_yield();
        weft_detach(t);
    }
    weft_wg_done(g_wg);
    return NULL;
}

static void *spawn_root(void *arg)
{
    int64_t *ns = arg;
    long per = g_spawn_n / SPAWNERS;
    weft_wg_add(g_wg, SPAWNERS + per * SPAWNERS);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < SPAWNERS; i++)
        weft_detach(weft_spawn(spawner, (void *)(intptr_t)per));
    weft_wg_wait(g_wg, -1);
    *ns = bench_now_ns() - t0;
    return NULL;
}

typedef struct pair {
    weft_chan *ping, *pong;
} pair;

static void *pinger(void *arg)
{
    pair *p = arg;
    for (long i = 0; i < g_rounds; i++) {
        int v = (int)i, back;
        weft_chan_send(p->ping, &v);
        weft_chan_recv(p->pong, &back);
    }
    weft_wg_done(g_wg);
    return NULL;
}

static void *ponger(void *arg)
{
    pair *p = arg;
    for (long i = 0; i < g_rounds; i++) {
        int v;
        weft_chan_recv(p->ping, &v);
        weft_chan_send(p->pong, &v);
    }
    weft_wg_done(g_wg);
    return NULL;
}

static void *pingpong_root(void *arg)
{
    int64_t *ns = arg;
    static pair pairs[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pairs[i].ping = weft_chan_new(1, sizeof(int));
        pairs[i].pong = weft_chan_new(1, sizeof(int));
    }
    weft_wg_add(g_wg, 2 * PAIRS);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < PAIRS; i++) {
        weft_detach(weft_spawn(ponger, &pairs[i]));
        weft_detach(weft_spawn(pinger, &pairs[i]));
    }
    weft_wg_wait(g_wg, -1);
    *ns = bench_now_ns() - t0;
    for (int i = 0; i < PAIRS; i++) {
        weft_chan_free(pairs[i].ping);
        weft_chan_free(pairs[i].pong);
    }
    return NULL;
}

/* One measurement: throughput (operations per second) on `workers` workers. */
static double measure(const char *bench, unsigned workers, double ipu, int quick)
{
    if (strcmp(bench, "mixed") == 0) {
        avt_workload w = avt_workloads[2];
        w.requests = quick ? 2000 : 10000;
        avt_result r;
        if (avt_run(&w, AVT_WEFT, ipu, workers, &r) != 0 || r.completed != w.requests)
            return 0;
        return r.completed / (r.wall_ms / 1e3);
    }
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt)
        return 0;
    g_wg = weft_wg_new();
    int64_t ns = 0;
    double ops;
    if (strcmp(bench, "spawn") == 0) {
        weft_runtime_block_on(rt, spawn_root, &ns, NULL);
        ops = (double)(g_spawn_n / SPAWNERS * SPAWNERS);
    } else {
        weft_runtime_block_on(rt, pingpong_root, &ns, NULL);
        ops = (double)g_rounds * PAIRS;
    }
    weft_runtime_free(rt);
    weft_wg_free(g_wg);
    return ns > 0 ? ops / ((double)ns / 1e9) : 0;
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    int reps = bench_reps(&a, 3, 1);
    g_spawn_n = a.quick ? 64000 : 640000;
    g_rounds = a.quick ? 2000 : 20000;
    unsigned ncpu = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        ncpu = (unsigned)CPU_COUNT(&set);
    unsigned counts[32];
    int nc = 0;
    for (unsigned w = 1; w < ncpu && nc < 31; w *= 2)
        counts[nc++] = w;
    counts[nc++] = ncpu;
    double ipu = avt_calibrate(a.quick ? 5 : 20);
    bench_comment("scaling: %u CPUs; spawn %ld tasks, pingpong %d pairs x %ld round trips, mixed %d "
                  "requests; %d rep(s), medians",
                  ncpu, g_spawn_n, PAIRS, g_rounds, a.quick ? 2000 : 10000, reps);

    static const char *const benches[] = {"spawn", "pingpong", "mixed"};
    static const char *const units[] = {"tasks/s", "roundtrips/s", "req/s"};
    for (int b = 0; b < 3; b++) {
        if (!bench_selected(&a, benches[b]))
            continue;
        double base = 0;
        for (int c = 0; c < nc; c++) {
            double v[16];
            int n = reps < 16 ? reps : 16;
            for (int r = 0; r < n; r++)
                v[r] = measure(benches[b], counts[c], ipu, a.quick);
            char name[64];
            snprintf(name, sizeof name, "scaling_%s_w%u", benches[b], counts[c]);
            double med = bench_report(name, v, n, units[b]);
            if (c == 0)
                base = med;
            double eff = base > 0 ? med / (base * counts[c]) : 0;
            snprintf(name, sizeof name, "scaling_%s_w%u_eff", benches[b], counts[c]);
            bench_print(name, eff, "ratio");
        }
    }
    return 0;
}
