/*
 * Async tasks against preemptive threads (issue 7): the same four workloads
 * (bench/avt.h) in every model, in one run of this program.
 *
 *   io     10,000 requests, at most 1,000 in flight: wait 1 ms, 2 us CPU
 *   cpu    10,000 jobs of 200 us hashing
 *   mixed  wait 1 ms, 50 us CPU, wait 1 ms
 *   tail   as mixed, but 1% of the requests do 20 ms of CPU
 *
 * Models: weft (tasks, CPU inline, a weft_sem of 1,000 permits), weft_blocking
 * (CPU part on weft's blocking pool), weft_compute (CPU part on weft's
 * compute pool, one thread per CPU), threads (one pthread per request, at
 * most 1,000 alive), pool2 / pool16 / pool64 (fixed pthread pools, blocking
 * nanosleeps). See bench/avt.h.
 *
 * The CPU work is a fixed hashing loop, calibrated once at start. Each cell
 * (workload x model) runs in its own forked child, so the child's rusage
 * (wait4) gives that model alone: peak RSS (ru_maxrss), CPU time (user+sys),
 * voluntary and involuntary context switches. Latency runs from admission (a
 * permit taken) to completion. Results, per cell:
 *
 *   bench: avt_<workload>_<model>_{wall,p50,p99,max} ms
 *   bench: avt_<workload>_<model>_rps req/s
 *   bench: avt_<workload>_<model>_rss KiB
 *   bench: avt_<workload>_<model>_cpu ms
 *   bench: avt_<workload>_<model>_{vcsw,ivcsw} count
 *   bench: avt_<workload>_<model>_peak_inflight count   (most requests
 *          admitted and unfinished at once: thread per request is limited
 *          by how fast threads can be created, not only by the permits)
 *   bench: avt_<workload>_<model>_rss_per_inflight KiB   (rss less an idle
 *          child's, divided by peak_inflight: memory per request in flight)
 *
 * and a table per workload on `#` lines at the end.
 * Flags: --quick (2,000 requests per workload), --only NAME (substring of
 * "avt_<workload>_<model>"), --workers N (weft workers; default: all CPUs),
 * --reps is ignored (one run per cell; repeat the program to see the spread).
 * Environment: AVT_REQUESTS overrides the number of requests.
 */
#include "avt.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

typedef struct cell {
    int ran, ok;
    avt_result r;
    long rss_kb;
    double cpu_ms;
    long vcsw, ivcsw;
} cell;

static cell cells[AVT_NWORKLOADS][AVT_NMODELS];
static long idle_rss_kb; /* peak RSS of a forked child that does nothing */

typedef struct cell_job {
    const avt_workload *w;
    int m;
    double ipu;
    unsigned workers;
} cell_job;

static int cell_child(void *arg, void *out)
{
    const cell_job *j = arg;
    return avt_run(j->w, j->m, j->ipu, j->workers, out);
}

static int run_cell(const avt_workload *w, int m, double ipu, unsigned workers, cell *c)
{
    cell_job job = {w, m, ipu, workers};
    struct rusage ru;
    int st = bench_in_child(cell_child, &job, &c->r, sizeof c->r, 300, &ru);
    if (st == -1)
        return -1;
    c->ran = 1;
    c->ok = st == 0 && c->r.completed == w->requests;
    c->rss_kb = ru.ru_maxrss;
    c->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    c->vcsw = ru.ru_nvcsw;
    c->ivcsw = ru.ru_nivcsw;
    if (!c->ok)
        fprintf(stderr, "async_vs_threads: %s/%s failed (status 0x%x, %d of %d completed)\n",
                w->name, avt_model_names[m], st, c->r.completed, w->requests);
    return c->ok ? 0 : -1;
}

static void print_cell(const avt_workload *w, int m, const cell *c)
{
    char pre[96], name[128];
    snprintf(pre, sizeof pre, "avt_%s_%s", w->name, avt_model_names[m]);
#define OUT(metric, value, unit)                                    \
    do {                                                            \
        snprintf(name, sizeof name, "%s_%s", pre, metric);          \
        bench_print(name, value, unit);                             \
    } while (0)
    OUT("wall", c->r.wall_ms, "ms");
    OUT("rps", c->r.wall_ms > 0 ? c->r.completed / (c->r.wall_ms / 1e3) : 0, "req/s");
    OUT("p50", c->r.p50_ms, "ms");
    OUT("p99", c->r.p99_ms, "ms");
    OUT("max", c->r.max_ms, "ms");
    OUT("rss", (double)c->rss_kb, "KiB");
    OUT("cpu", c->cpu_ms, "ms");
    OUT("vcsw", (double)c->vcsw, "count");
    OUT("ivcsw", (double)c->ivcsw, "count");
    OUT("peak_inflight", (double)c->r.peak_inflight, "count");
    if (c->r.peak_inflight > 0)
        OUT("rss_per_inflight", (double)(c->rss_kb - idle_rss_kb) / c->r.peak_inflight, "KiB");
#undef OUT
    if (avt_model_is_weft(m))
        bench_comment("%s runtime counters: %llu overflows to the global queue, %llu global pulls, "
                      "%llu steals, %llu LIFO bypasses, %llu parks, %llu timers and events "
                      "rescued from stuck workers",
                      pre, (unsigned long long)c->r.overflows, (unsigned long long)c->r.global_pulls,
                      (unsigned long long)c->r.steals, (unsigned long long)c->r.lifo_capped,
                      (unsigned long long)c->r.parks, (unsigned long long)c->r.rescued);
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    int requests = a.quick ? 2000 : 10000;
    const char *env = getenv("AVT_REQUESTS");
    if (env && atoi(env) > 0)
        requests = atoi(env);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        ncpu = CPU_COUNT(&set);

    double ipu = avt_calibrate(a.quick ? 10 : 50);
    /* AVT_IPU fixes the calibration, so that interleaved runs of two builds
     * on a busy machine do the same work per request. */
    if (getenv("AVT_IPU") && atof(getenv("AVT_IPU")) > 0)
        ipu = atof(getenv("AVT_IPU"));
    bench_comment("async_vs_threads: %ld CPUs, weft workers %u (0 = one per CPU), %d requests per "
                  "workload, CPU work calibrated at %.1f hash iterations per us",
                  ncpu, a.workers, requests, ipu);
    bench_print("avt_calibration", ipu, "iter/us");
    {
        /* The baseline of every child's peak RSS: a child that does nothing. */
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        int st;
        struct rusage ru;
        if (pid > 0 && wait4(pid, &st, 0, &ru) == pid) {
            idle_rss_kb = ru.ru_maxrss;
            bench_comment("peak RSS of an idle forked child (included in every rss figure): %ld KiB",
                          ru.ru_maxrss);
        }
    }

    int failures = 0;
    avt_workload ws[AVT_NWORKLOADS];
    for (int wi = 0; wi < AVT_NWORKLOADS; wi++) {
        ws[wi] = avt_workloads[wi];
        ws[wi].requests = requests;
        if (ws[wi].inflight > requests)
            ws[wi].inflight = requests;
        for (int m = 0; m < AVT_NMODELS; m++) {
            char name[96];
            snprintf(name, sizeof name, "avt_%s_%s", ws[wi].name, avt_model_names[m]);
            if (!bench_selected(&a, name))
                continue;
            if (!avt_model_available(m)) {
                bench_comment("%s: skipped (this runtime has no weft_spawn_blocking yet)", name);
                continue;
            }
            cell *c = &cells[wi][m];
            if (run_cell(&ws[wi], m, ipu, a.workers, c) != 0)
                failures++;
            print_cell(&ws[wi], m, c);
        }
    }

    bench_comment("%s", "");
    for (int wi = 0; wi < AVT_NWORKLOADS; wi++) {
        const avt_workload *w = &ws[wi];
        int any = 0;
        for (int m = 0; m < AVT_NMODELS; m++)
            any |= cells[wi][m].ran;
        if (!any)
            continue;
        bench_comment("workload %s (%s): %d requests, %d in flight", w->name, w->what, w->requests,
                      w->inflight);
        bench_comment("  %-14s %9s %9s %8s %8s %8s %9s %9s %8s %8s %8s", "model", "wall ms", "req/s",
                      "p50 ms", "p99 ms", "max ms", "RSS KiB", "CPU ms", "vcsw", "ivcsw",
                      "inflight");
        for (int m = 0; m < AVT_NMODELS; m++) {
            const cell *c = &cells[wi][m];
            if (!c->ran)
                continue;
            bench_comment("  %-14s %9.1f %9.0f %8.2f %8.2f %8.2f %9ld %9.1f %8ld %8ld %8d%s",
                          avt_model_names[m], c->r.wall_ms,
                          c->r.wall_ms > 0 ? c->r.completed / (c->r.wall_ms / 1e3) : 0,
                          c->r.p50_ms, c->r.p99_ms, c->r.max_ms, c->rss_kb, c->cpu_ms, c->vcsw,
                          c->ivcsw, c->r.peak_inflight, c->ok ? "" : "  FAILED");
        }
    }
    return failures ? 1 : 0;
}
