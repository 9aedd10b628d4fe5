/*
 * Shared helpers for the weft benchmarks (header only, static inline).
 *
 * Output contract (collected by `make bench` into bench/results/all.csv):
 *   bench: <name> <value> <unit>     one result per line
 *   # ...                            free-form comment (min/max, rusage...)
 *
 * Every benchmark accepts --quick (reduced sizes and repetitions) and
 * --reps N (repetitions per measurement; the median is reported).
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

/* ------------------------------------------------------------ arguments */

typedef struct bench_args {
    int quick; /* --quick: reduced sizes, whole program well under 20 s */
    int reps;  /* --reps N: 0 = the benchmark's default */
    const char *only; /* --only NAME: run only benchmarks whose name contains NAME */
    int no_baseline;  /* --no-baseline: skip the pthread/ucontext comparisons (for profiling) */
    unsigned workers; /* --workers N: override the benchmark's worker count (0 = its default) */
} bench_args;

static inline void bench_print_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--quick] [--reps N] [--only NAME] [--no-baseline] [--workers N]\n", prog);
}

/* Parses the common flags and makes stdout line-buffered (so `tee` shows
 * each result as it comes). Exits on an unknown flag. */
static inline bench_args bench_parse_args(int argc, char **argv)
{
    bench_args a = {0, 0, NULL, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            a.quick = 1;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            a.reps = atoi(argv[++i]);
            if (a.reps < 1) {
                bench_print_usage(argv[0]);
                exit(2);
            }
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            int w = atoi(argv[++i]);
            if (w < 1 || w > 1024) {
                bench_print_usage(argv[0]);
                exit(2);
            }
            a.workers = (unsigned)w;
        } else if (strcmp(argv[i], "--no-baseline") == 0) {
            a.no_baseline = 1;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            a.only = argv[++i];
        } else {
            bench_print_usage(argv[0]);
            exit(2);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return a;
}

/* Repetitions: --reps if given, else full or quick default. */
static inline int bench_reps(const bench_args *a, int full, int quick)
{
    return a->reps ? a->reps : (a->quick ? quick : full);
}

/* Whether the benchmark called name is selected by --only. */
static inline int bench_selected(const bench_args *a, const char *name)
{
    return !a->only || strstr(name, a->only) != NULL;
}

/* ------------------------------------------------------------ time */

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Keeps the compiler from deleting a computation whose result is unused. */
#define bench_keep(x) __asm__ __volatile__("" : : "r"(x) : "memory")
#define bench_barrier() __asm__ __volatile__("" : : : "memory")

/* ------------------------------------------------------------ statistics */

typedef struct bench_stats {
    double median, min, max, mean;
    int n;
} bench_stats;

static inline int bench__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p in [0, 100]; linear interpolation between closest ranks. Sorts v. */
static inline double bench_percentile(double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, bench__cmp_double);
    double rank = p / 100.0 * (n - 1);
    int lo = (int)rank;
    if (lo >= n - 1)
        return v[n - 1];
    double frac = rank - lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

/* Median, min, max and mean of v (v is left sorted). */
static inline bench_stats bench_summarize(double *v, int n)
{
    bench_stats s = {0, 0, 0, 0, n};
    if (n <= 0)
        return s;
    s.median = bench_percentile(v, n, 50);
    s.min = v[0];
    s.max = v[n - 1];
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    s.mean = sum / n;
    return s;
}

/* ------------------------------------------------------------ output */

static inline void bench_comment(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void bench_comment(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

/* Enough significant digits for values from 0.1 to 10^6 without noise. */
static inline const char *bench__fmt(double v)
{
    if (v < 10)
        return "%.2f";
    if (v < 1000)
        return "%.1f";
    return "%.0f";
}

/* One result line: `bench: <name> <value> <unit>`. */
static inline void bench_print(const char *name, double value, const char *unit)
{
    char num[64];
    snprintf(num, sizeof num, bench__fmt(value), value);
    printf("bench: %s %s %s\n", name, num, unit);
}

/* Summarizes n samples of one measurement: a `#` line with min, max and
 * the samples' count, then the result line with the median. Returns the
 * median. v is sorted afterwards. */
static inline double bench_report(const char *name, double *v, int n, const char *unit)
{
    bench_stats s = bench_summarize(v, n);
    char lo[32], hi[32], med[32];
    snprintf(lo, sizeof lo, bench__fmt(s.min), s.min);
    snprintf(hi, sizeof hi, bench__fmt(s.max), s.max);
    snprintf(med, sizeof med, bench__fmt(s.median), s.median);
    printf("# %s: median %s min %s max %s %s (n=%d)\n", name, med, lo, hi, unit, n);
    bench_print(name, s.median, unit);
    return s.median;
}

/* ------------------------------------------------------------ rusage */

typedef struct bench_usage {
    double user_s, sys_s;
    long maxrss_kb;
    long minflt, majflt;
    long nvcsw, nivcsw; /* voluntary / involuntary context switches */
} bench_usage;

static inline bench_usage bench_getrusage(void)
{
    struct rusage r;
    bench_usage u;
    memset(&u, 0, sizeof u);
    if (getrusage(RUSAGE_SELF, &r) == 0) {
        u.user_s = (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6;
        u.sys_s = (double)r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
        u.maxrss_kb = r.ru_maxrss;
        u.minflt = r.ru_minflt;
        u.majflt = r.ru_majflt;
        u.nvcsw = r.ru_nvcsw;
        u.nivcsw = r.ru_nivcsw;
    }
    return u;
}

/* Prints what happened between two snapshots as a comment line. */
static inline void bench_usage_comment(const char *name, const bench_usage *a, const bench_usage *b,
                                       double wall_s)
{
    bench_comment("%s rusage: wall %.3f s user %.3f s sys %.3f s cpu %.0f%% minflt %ld "
                  "vcsw %ld ivcsw %ld maxrss %ld KiB",
                  name, wall_s, b->user_s - a->user_s, b->sys_s - a->sys_s,
                  wall_s > 0 ? 100.0 * ((b->user_s - a->user_s) + (b->sys_s - a->sys_s)) / wall_s : 0.0,
                  b->minflt - a->minflt, b->nvcsw - a->nvcsw, b->nivcsw - a->nivcsw, b->maxrss_kb);
}

/* ------------------------------------------------------------ latch
 * A countdown that plain threads can sleep on: workers count up with one
 * atomic add; the one that reaches the target wakes the waiter with a futex
 * (so a waiting OS thread costs nothing while tasks run, and one wake-up
 * per measurement). The adder that completes it stamps end_ns, so a
 * measurement can end when the work ended rather than when the waiter got
 * the CPU back. */

typedef struct bench_latch {
    _Atomic uint64_t count;
    _Atomic uint32_t done; /* futex word */
    uint64_t target;
    int64_t end_ns;        /* bench_now_ns() when the target was reached */
} bench_latch;

static inline void bench_latch_init(bench_latch *l, uint64_t target)
{
    atomic_store(&l->count, 0);
    atomic_store(&l->done, 0);
    l->target = target;
    l->end_ns = 0;
}

static inline void bench_latch_add(bench_latch *l, uint64_t n)
{
    if (atomic_fetch_add_explicit(&l->count, n, memory_order_acq_rel) + n == l->target) {
        l->end_ns = bench_now_ns(); /* before the wake: not counting its latency */
        atomic_store_explicit(&l->done, 1, memory_order_release);
        syscall(SYS_futex, &l->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}

static inline void bench_latch_wait(bench_latch *l)
{
    while (!atomic_load_explicit(&l->done, memory_order_acquire))
        syscall(SYS_futex, &l->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

/* ------------------------------------------------------------ processes */

/* Runs fn(arg, out) in a forked child and copies the child's `size`-byte
 * result back into out through a shared mapping. Each measurement then has
 * a process of its own, so the peak RSS, CPU time and context switches that
 * wait4 reports belong to it alone. A child still running after timeout_s
 * gets SIGALRM, so a hung model cannot hang `make bench`. fn returns 0 on
 * success. Returns the child's wait status (0: fn succeeded), or -1 if no
 * child could run; *ru (if not NULL) gets the child's resource usage. */
static inline int bench_in_child(int (*fn)(void *arg, void *out), void *arg, void *out, size_t size,
                                 unsigned timeout_s, struct rusage *ru)
{
    void *shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return -1;
    memset(shared, 0, size);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        munmap(shared, size);
        return -1;
    }
    if (pid == 0) {
        alarm(timeout_s);
        _exit(fn(arg, shared) == 0 ? 0 : 1);
    }
    int st = 0;
    struct rusage r;
    memset(&r, 0, sizeof r);
    while (wait4(pid, &st, 0, &r) < 0 && errno == EINTR) {
    }
    memcpy(out, shared, size);
    munmap(shared, size);
    if (ru)
        *ru = r;
    return st;
}

/* A runtime of n workers, or exit: benchmarks have no use for a partial run. */
static inline weft_runtime *bench_new_runtime(unsigned n)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = n;
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt) {
        perror("weft_runtime_new");
        exit(1);
    }
    return rt;
}

#endif
