/*
 * Channel benchmarks: weft channels against the obvious pthread channel (a
 * bounded queue on a mutex and two condition variables, same capacity and
 * element size; capacity 0 a rendezvous built the same way: see
 * bench/chan_bench.h, shared with tests/test_chan_bench_smoke.c). Both run
 * in the same process, repetitions interleaved so that both see the same
 * machine weather; each figure is the median of the repetitions.
 *
 *   chan_pingpong   one pair of tasks (threads) bouncing an 8-byte message
 *                   over two capacity-0 channels; ns per round trip, weft on
 *                   1 worker (a hand-off is a plain switch) and on 2 (the
 *                   pair may sit on different workers)
 *     bench: chan_pingpong_weft_w1, _weft_w2, _pthread            ns
 *     bench: chan_pingpong_weft_w{1,2}_over_pthread               x (weft ns / pthread ns; < 1: weft faster)
 *     bench: chan_pingpong_{weft_w1,weft_w2,pthread}_cpu_per_rt   ns of CPU per round trip
 *     bench: chan_pingpong_weft_w{1,2}_over_pthread_cpu           x (< 1: weft uses less CPU)
 *   chan_pairs      issue 19's workload: 1,000 pairs at once, each bouncing
 *                   a message over its own two capacity-1 channels, 1,000
 *                   round trips each (--quick 100); ns per round trip (wall
 *                   / all pairs' round trips), weft on 1 and 2 workers; no
 *                   pthread baseline (2,000 threads)
 *     bench: chan_pairs_weft_w1, _weft_w2                         ns
 *     bench: chan_pairs_weft_w{1,2}_cpu_per_rt                    ns of CPU per round trip
 *   chan_stream     one producer, one consumer, capacity 64, 8-byte
 *                   elements, 1,000,000 messages (--quick 100,000); weft on 2
 *                   workers (and, for comparison, 1)
 *     bench: chan_stream_weft, _weft_w1, _pthread                 msg/s
 *     bench: chan_stream_weft_over_pthread, _weft_w1_over_pthread x (weft msg/s / pthread msg/s; > 1: weft faster)
 *     bench: chan_stream_{weft,weft_w1,pthread}_cpu_per_msg       ns of CPU per message
 *     bench: chan_stream_weft_over_pthread_cpu, _weft_w1_...      x (< 1: weft uses less CPU)
 *   chan_mpmc       4 producers, 4 consumers, one channel of capacity 256,
 *                   1,000,000 messages in all (--quick 100,000); weft on 2
 *                   workers (and 1) against 8 threads; the same lines as
 *                   chan_stream
 *
 * Every run checks its messages: pingpong each reply; stream and mpmc that
 * each value 1..n arrived exactly once (count, sum and a hash sum) and each
 * producer's values in the order sent. A failed check exits with status 1.
 *
 * CPU is the process's user + system time (getrusage RUSAGE_SELF) around each
 * measurement; a `#` line gives the CPU utilisation (CPU / wall): a design
 * that spins can win on time and lose on CPU.
 *
 * Flags: --quick, --reps N, --only NAME (pingpong, pairs, stream, mpmc), --no-baseline
 * (weft only), --workers N (the multi-worker runtime's size, default 2; the
 * names keep saying w2 / weft: analysis only).
 */
#include "chan_bench.h"

#include <stdint.h>

#define WORKERS 2
static unsigned workers = WORKERS;

typedef struct sizes {
    int reps;
    uint64_t pp_weft, pp_pthread; /* round trips per measurement */
    uint64_t stream, mpmc;        /* messages per measurement */
    uint64_t pairs, pair_rounds;  /* chan_pairs: pairs at once, round trips each */
    int baseline;
} sizes;


/* Sum of the runtime's counters over its workers. */
static weft_worker_stats stats_sum(weft_runtime *rt)
{
    weft_worker_stats st[64], sum;
    memset(&sum, 0, sizeof sum);
    unsigned n = weft_runtime_stats(rt, st, 64);
    for (unsigned i = 0; i < n && i < 64; i++) {
        sum.tasks_run += st[i].tasks_run;
        sum.steals += st[i].steals;
        sum.tasks_stolen += st[i].tasks_stolen;
        sum.parks += st[i].parks;
        sum.lifo_capped += st[i].lifo_capped;
    }
    return sum;
}

static void stats_comment(const char *name, weft_runtime *rt, const weft_worker_stats *before, double msgs)
{
    weft_worker_stats a = stats_sum(rt);
    bench_comment("%s weft stats per 1000 messages: tasks_run %.1f steals %.2f tasks_stolen %.2f parks %.2f "
                  "lifo_capped %.2f",
                  name, 1000.0 * (double)(a.tasks_run - before->tasks_run) / msgs,
                  1000.0 * (double)(a.steals - before->steals) / msgs,
                  1000.0 * (double)(a.tasks_stolen - before->tasks_stolen) / msgs,
                  1000.0 * (double)(a.parks - before->parks) / msgs,
                  1000.0 * (double)(a.lifo_capped - before->lifo_capped) / msgs);
}

static void check_or_die(const char *name, int ok, const chanb_result *r)
{
    if (!ok) {
        fprintf(stderr, "chan: %s: check failed: %s\n", name, r->err);
        printf("# %s: CHECK FAILED: %s\n", name, r->err);
        exit(1);
    }
}

/* The samples of one contender: value (ns per round trip, or msg/s), CPU
 * ns per message, CPU utilisation. */
typedef struct series {
    char name[64];
    double *val, *cpu, *util;
    double med_val, med_cpu;
} series;

static void series_init(series *s, const char *name, int reps)
{
    snprintf(s->name, sizeof s->name, "%s", name);
    s->val = calloc((size_t)reps, sizeof(double));
    s->cpu = calloc((size_t)reps, sizeof(double));
    s->util = calloc((size_t)reps, sizeof(double));
    if (!s->val || !s->cpu || !s->util) {
        perror("calloc");
        exit(1);
    }
}

static void series_add(series *s, int rep, const chanb_result *r, uint64_t msgs, int rate)
{
    s->val[rep] = rate ? (double)msgs / (r->wall_ns / 1e9) : r->wall_ns / (double)msgs;
    s->cpu[rep] = r->cpu_ns / (double)msgs;
    s->util[rep] = r->cpu_ns / r->wall_ns;
}

static void series_report(series *s, int reps, const char *unit, const char *cpu_suffix)
{
    char name[96];
    s->med_val = bench_report(s->name, s->val, reps, unit);
    snprintf(name, sizeof name, "%s_%s", s->name, cpu_suffix);
    s->med_cpu = bench_report(name, s->cpu, reps, "ns");
    bench_stats u = bench_summarize(s->util, reps);
    bench_comment("%s CPU utilisation (CPU time / wall time): median %.0f%% min %.0f%% max %.0f%%", s->name,
                  100 * u.median, 100 * u.min, 100 * u.max);
}

static void series_free(series *s)
{
    free(s->val);
    free(s->cpu);
    free(s->util);
}

/* A ratio line with three significant digits (bench_print would show a
 * ratio of 0.0026 as 0.00). */
static void print_ratio(const char *name, double x)
{
    printf("bench: %s %.3g x\n", name, x);
}

/* weft over pthread for the value and for CPU; `rate`: the value is a
 * throughput (higher is better), else a time. */
static void ratio_lines(const char *bench, const series *w, const char *wname, const series *p, int rate)
{
    char name[128];
    double x = w->med_val / p->med_val, c = w->med_cpu / p->med_cpu;
    snprintf(name, sizeof name, "%s_%s_over_pthread", bench, wname);
    print_ratio(name, x);
    snprintf(name, sizeof name, "%s_%s_over_pthread_cpu", bench, wname);
    print_ratio(name, c);
    double speed = rate ? x : 1 / x;
    bench_comment("%s: weft (%s) is %.2fx %s than pthreads and uses %.2fx %s CPU per message", bench, wname,
                  speed >= 1 ? speed : 1 / speed, speed >= 1 ? "faster" : "slower", c <= 1 ? 1 / c : c,
                  c <= 1 ? "less" : "more");
}

/* ====================================================== pingpong */

static void bench_pingpong(const sizes *z)
{
    chanb_result r;
    weft_runtime *rt1 = bench_new_runtime(1), *rtn = bench_new_runtime(workers);
    char wn[32];
    snprintf(wn, sizeof wn, "weft_w%u", workers);
    series s1, sn, sp;
    char name[64];
    series_init(&s1, "chan_pingpong_weft_w1", z->reps);
    snprintf(name, sizeof name, "chan_pingpong_%s", wn);
    series_init(&sn, name, z->reps);
    series_init(&sp, "chan_pingpong_pthread", z->reps);

    /* Warm-up: stacks, allocator, first wake-ups. */
    check_or_die("chan_pingpong warm-up", chanb_pingpong(rt1, z->pp_weft / 10, &r), &r);
    check_or_die("chan_pingpong warm-up", chanb_pingpong(rtn, z->pp_weft / 10, &r), &r);
    if (z->baseline)
        check_or_die("chan_pingpong warm-up", chanb_pingpong(NULL, z->pp_pthread / 10, &r), &r);

    weft_worker_stats st1 = stats_sum(rt1), stn = stats_sum(rtn);
    for (int i = 0; i < z->reps; i++) {
        check_or_die(s1.name, chanb_pingpong(rt1, z->pp_weft, &r), &r);
        series_add(&s1, i, &r, z->pp_weft, 0);
        check_or_die(sn.name, chanb_pingpong(rtn, z->pp_weft, &r), &r);
        series_add(&sn, i, &r, z->pp_weft, 0);
        if (z->baseline) {
            check_or_die(sp.name, chanb_pingpong(NULL, z->pp_pthread, &r), &r);
            series_add(&sp, i, &r, z->pp_pthread, 0);
        }
    }
    stats_comment(s1.name, rt1, &st1, 2.0 * (double)z->pp_weft * z->reps);
    stats_comment(sn.name, rtn, &stn, 2.0 * (double)z->pp_weft * z->reps);
    weft_runtime_free(rt1);
    weft_runtime_free(rtn);

    series_report(&s1, z->reps, "ns", "cpu_per_rt");
    series_report(&sn, z->reps, "ns", "cpu_per_rt");
    if (z->baseline) {
        series_report(&sp, z->reps, "ns", "cpu_per_rt");
        ratio_lines("chan_pingpong", &s1, "weft_w1", &sp, 0);
        ratio_lines("chan_pingpong", &sn, wn, &sp, 0);
    }
    series_free(&s1);
    series_free(&sn);
    series_free(&sp);
}

/* ====================================================== pairs */

/* Issue 19's many-pairs ping-pong: z->pairs pairs over capacity-1 channels,
 * z->pair_rounds round trips each, weft on 1 and on `workers` workers,
 * interleaved. No pthread baseline (2,000 threads). */
static void bench_pairs(const sizes *z)
{
    chanb_result r;
    weft_runtime *rt1 = bench_new_runtime(1), *rtn = bench_new_runtime(workers);
    series s1, sn;
    char name[64];
    series_init(&s1, "chan_pairs_weft_w1", z->reps);
    snprintf(name, sizeof name, "chan_pairs_weft_w%u", workers);
    series_init(&sn, name, z->reps);
    uint64_t rts = z->pairs * z->pair_rounds;

    check_or_die("chan_pairs warm-up", chanb_pairs(rt1, z->pairs, z->pair_rounds / 10, 1, &r), &r);
    check_or_die("chan_pairs warm-up", chanb_pairs(rtn, z->pairs, z->pair_rounds / 10, 1, &r), &r);
    weft_worker_stats st1 = stats_sum(rt1), stn = stats_sum(rtn);
    for (int i = 0; i < z->reps; i++) {
        check_or_die(s1.name, chanb_pairs(rt1, z->pairs, z->pair_rounds, 1, &r), &r);
        series_add(&s1, i, &r, rts, 0);
        check_or_die(sn.name, chanb_pairs(rtn, z->pairs, z->pair_rounds, 1, &r), &r);
        series_add(&sn, i, &r, rts, 0);
    }
    stats_comment(s1.name, rt1, &st1, 2.0 * (double)rts * z->reps);
    stats_comment(sn.name, rtn, &stn, 2.0 * (double)rts * z->reps);
    weft_runtime_free(rt1);
    weft_runtime_free(rtn);
    series_report(&s1, z->reps, "ns", "cpu_per_rt");
    series_report(&sn, z->reps, "ns", "cpu_per_rt");
    series_free(&s1);
    series_free(&sn);
}

/* ====================================================== stream and mpmc */

/* One flow benchmark: weft on `workers` workers (and on 1 when with_w1),
 * then pthreads, interleaved. */
static void bench_flow(const sizes *z, const char *bench, int producers, int consumers, size_t cap, uint64_t n,
                       int with_w1)
{
    chanb_result r;
    weft_runtime *rtn = bench_new_runtime(workers), *rt1 = with_w1 ? bench_new_runtime(1) : NULL;
    series sw, s1, sp;
    char name[64];
    snprintf(name, sizeof name, "%s_weft", bench);
    series_init(&sw, name, z->reps);
    snprintf(name, sizeof name, "%s_weft_w1", bench);
    series_init(&s1, name, z->reps);
    snprintf(name, sizeof name, "%s_pthread", bench);
    series_init(&sp, name, z->reps);

    uint64_t warm = n / 10;
    check_or_die(bench, chanb_flow(rtn, producers, consumers, cap, warm, NULL, &r), &r);
    if (rt1)
        check_or_die(bench, chanb_flow(rt1, producers, consumers, cap, warm, NULL, &r), &r);
    if (z->baseline)
        check_or_die(bench, chanb_flow(NULL, producers, consumers, cap, warm, NULL, &r), &r);

    weft_worker_stats stn = stats_sum(rtn), st1;
    memset(&st1, 0, sizeof st1);
    if (rt1)
        st1 = stats_sum(rt1);
    for (int i = 0; i < z->reps; i++) {
        check_or_die(sw.name, chanb_flow(rtn, producers, consumers, cap, n, NULL, &r), &r);
        series_add(&sw, i, &r, n, 1);
        if (rt1) {
            check_or_die(s1.name, chanb_flow(rt1, producers, consumers, cap, n, NULL, &r), &r);
            series_add(&s1, i, &r, n, 1);
        }
        if (z->baseline) {
            check_or_die(sp.name, chanb_flow(NULL, producers, consumers, cap, n, NULL, &r), &r);
            series_add(&sp, i, &r, n, 1);
        }
    }
    stats_comment(sw.name, rtn, &stn, (double)n * z->reps);
    weft_runtime_free(rtn);
    if (rt1) {
        stats_comment(s1.name, rt1, &st1, (double)n * z->reps);
        weft_runtime_free(rt1);
    }

    series_report(&sw, z->reps, "msg/s", "cpu_per_msg");
    if (rt1)
        series_report(&s1, z->reps, "msg/s", "cpu_per_msg");
    if (z->baseline) {
        series_report(&sp, z->reps, "msg/s", "cpu_per_msg");
        ratio_lines(bench, &sw, "weft", &sp, 1);
        if (rt1)
            ratio_lines(bench, &s1, "weft_w1", &sp, 1);
    }
    series_free(&sw);
    series_free(&s1);
    series_free(&sp);
}

/* ====================================================== main */

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    sizes z;
    z.reps = bench_reps(&a, 5, 3);
    z.pp_weft = a.quick ? 50000 : 200000;
    z.pp_pthread = a.quick ? 10000 : 20000;
    z.stream = a.quick ? 100000 : 1000000;
    z.mpmc = a.quick ? 100000 : 1000000;
    z.pairs = 1000;
    z.pair_rounds = a.quick ? 100 : 1000;
    z.baseline = !a.no_baseline;
    if (a.workers)
        workers = a.workers;

    bench_comment("chan: weft on %u workers (and 1) against pthread mutex+condvar channels; reps %d; "
                  "pingpong %llu round trips (pthread %llu), pairs %llu x %llu round trips cap 1, stream %llu "
                  "msgs cap 64, mpmc 4x4 %llu msgs cap 256; 8-byte elements; %ld CPUs online",
                  workers, z.reps, (unsigned long long)z.pp_weft, (unsigned long long)z.pp_pthread,
                  (unsigned long long)z.pairs, (unsigned long long)z.pair_rounds,
                  (unsigned long long)z.stream, (unsigned long long)z.mpmc, sysconf(_SC_NPROCESSORS_ONLN));

    if (bench_selected(&a, "chan_pingpong"))
        bench_pingpong(&z);
    if (bench_selected(&a, "chan_pairs"))
        bench_pairs(&z);
    if (bench_selected(&a, "chan_stream"))
        bench_flow(&z, "chan_stream", 1, 1, 64, z.stream, 1);
    if (bench_selected(&a, "chan_mpmc"))
        bench_flow(&z, "chan_mpmc", 4, 4, 256, z.mpmc, 1);
    return 0;
}
