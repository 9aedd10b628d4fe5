/*
 * A million timers (issue 19): 1,000,000 tasks, task i sleeping until its
 * own start plus a uniform 0-100 ms (the workload is in timers_bench.h).
 *
 *   timers_wall           first spawn to the last wake-up, ms
 *   timers_late_mean      mean lateness (wake - deadline), ms
 *   timers_late_p99       99th percentile lateness, ms
 *   timers_late_max       the latest wake-up, ms
 *   timers_early          sleepers that woke before their deadline (must be 0)
 *
 * Each repetition runs in a forked child of its own, so that one run's
 * stacks and page tables do not warm the next, as a fresh process of
 * another runtime would not be warmed; a `#` line gives each run's figures
 * and the child's rusage (page faults, user and system time). Values are
 * medians over the repetitions (early: the largest count).
 *
 * Flags: --quick (100,000 tasks), --reps N (default 3, quick 1), --workers N
 * (default: one per CPU, the runtime's default).
 */
#include "bench.h"
#include "timers_bench.h"

typedef struct {
    unsigned workers;
    uint64_t n;
} job;

static int run_child(void *arg, void *out)
{
    const job *j = arg;
    timersb_result *r = out;
    if (timersb_run(j->workers, j->n, 100, r) != 0)
        return 1;
    return r->failed || r->woke != j->n;
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    job j = {a.workers, a.quick ? 100000 : 1000000};
    int reps = bench_reps(&a, 3, 1);
    double wall[64], mean[64], p99[64], maxl[64];
    uint64_t early = 0;
    if (reps > 64)
        reps = 64;
    bench_comment("timers: %llu tasks, each sleeping its start + U[0, 100 ms), %u workers%s, %d runs",
                  (unsigned long long)j.n, j.workers, j.workers ? "" : " (default)", reps);
    for (int k = 0; k < reps; k++) {
        timersb_result r;
        struct rusage ru;
        int st = bench_in_child(run_child, &j, &r, sizeof r, 300, &ru);
        if (st != 0) {
            fprintf(stderr, "timers: run %d failed (status %d, woke %llu of %llu)\n", k, st,
                    (unsigned long long)r.woke, (unsigned long long)j.n);
            return 1;
        }
        bench_comment("run %d: wall %.1f ms, lateness mean %.2f p50 %.2f p99 %.2f max %.2f ms, "
                      "early %llu; user %.2f s sys %.2f s minflt %ld maxrss %ld KiB",
                      k, r.wall_ms, r.mean_ms, r.p50_ms, r.p99_ms, r.max_ms,
                      (unsigned long long)r.early, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
                      ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_minflt, ru.ru_maxrss);
        wall[k] = r.wall_ms;
        mean[k] = r.mean_ms;
        p99[k] = r.p99_ms;
        maxl[k] = r.max_ms;
        if (r.early > early)
            early = r.early;
    }
    bench_report("timers_wall", wall, reps, "ms");
    bench_report("timers_late_mean", mean, reps, "ms");
    bench_report("timers_late_p99", p99, reps, "ms");
    bench_report("timers_late_max", maxl, reps, "ms");
    bench_print("timers_early", (double)early, "tasks");
    return early != 0;
}
