/*
 * Idle memory per waiting task: one waiting weft task against one waiting
 * pthread, side by side in one run, counting all the memory each costs
 * (bench/idle_mem.h says what is counted and how).
 *
 *   weft       10,000 tasks parked in weft_event_wait (2 workers)
 *   thread     2,000 pthreads, default attributes, in pthread_cond_wait
 *   thread64k  2,000 pthreads with a 64 KiB stack, in pthread_cond_wait
 *
 * Each cell runs in its own forked child. Results:
 *
 *   bench: idle_mem_<model>_{rss,pte,kstack,total}_per_task bytes
 *   bench: idle_mem_weft_runtime_fixed bytes   (runtime + workers + one
 *          warm-up task: paid once, not per task)
 *   bench: idle_mem_thread_vs_weft_ratio x     (thread total / weft total)
 *   bench: idle_mem_thread64k_vs_weft_ratio x
 *
 * and a table on `#` lines. The kernel stack comes from the system-wide
 * KernelStack of /proc/meminfo, printed beside its expected value (threads
 * x 16 KiB); the total uses the expected value, with a `#` line saying so,
 * when the measured change is more than 25% off (another process disturbed
 * it).
 * Flags: --quick (1,000 tasks, 500 threads), --workers N (weft workers,
 * default 2), --only NAME (substring of "idle_mem_<model>"); --reps is
 * ignored (repeat the program to see the spread).
 */
#include "bench.h"
#include "idle_mem.h"

#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>

typedef struct cell {
    int ran, ok;
    idle_mem_result r;
} cell;

typedef struct cell_job {
    int model, n;
    unsigned workers;
    long settle_ms;
} cell_job;

static int cell_child(void *arg, void *out)
{
    const cell_job *j = arg;
    return idle_mem_run(j->model, j->n, j->workers, j->settle_ms, out);
}

static int run_cell(int model, int n, unsigned workers, long settle_ms, cell *c)
{
    cell_job job = {model, n, workers, settle_ms};
    int st = bench_in_child(cell_child, &job, &c->r, sizeof c->r, 300, NULL);
    if (st == -1)
        return -1;
    c->ran = 1;
    c->ok = st == 0 && c->r.ok;
    if (!c->ok)
        fprintf(stderr,
                "idle_memory: %s failed (status 0x%x): %d of %d made, %d reached the wait, "
                "%d released, %d woke early\n",
                idle_mem_model_names[model], st, c->r.created, n, c->r.reached, c->r.released,
                c->r.early);
    return c->ok ? 0 : -1;
}

static void kstack_comment(const char *what, const idle_mem_cost *k, double units)
{
    if (k->threads == 0) {
        bench_comment("%s kernel stack: no thread added, so 0 (KernelStack, system-wide, changed "
                      "by %.0f KiB meanwhile: other processes)",
                      what, k->kstack_measured * units / 1024);
        return;
    }
    bench_comment("%s kernel stack: KernelStack (system-wide) changed by %.0f KiB, expected "
                  "%.0f KiB (%ld threads x 16 KiB); total uses the %s value",
                  what, k->kstack_measured * units / 1024, k->kstack_expected * units / 1024,
                  k->threads, k->kstack_from_expected ? "expected" : "measured");
    if (k->kstack_from_expected)
        bench_comment("%s: the measured KernelStack change is more than 25%% off the expected "
                      "value, so other processes moved it; the total uses the expected %.0f "
                      "bytes per unit",
                      what, k->kstack_expected);
}

static void print_cell(int model, const cell *c)
{
    const idle_mem_result *r = &c->r;
    const char *m = idle_mem_model_names[model];
    char name[96];
#define OUT(metric, value, unit)                                          \
    do {                                                                  \
        snprintf(name, sizeof name, "idle_mem_%s_%s", m, metric);         \
        bench_print(name, value, unit);                                   \
    } while (0)
    OUT("rss_per_task", r->unit.rss, "bytes");
    OUT("pte_per_task", r->unit.pte, "bytes");
    OUT("kstack_per_task", r->unit.kstack, "bytes");
    OUT("total_per_task", r->unit.total, "bytes");
#undef OUT
    char what[64];
    snprintf(what, sizeof what, "%s (%d units)", m, r->n);
    kstack_comment(what, &r->unit, r->created);
    bench_comment("%s: %d made, %d reached the wait%s, %d released; threads gained %ld; "
                  "kernel slab (task_struct, VMAs...; system-wide, not in the total) %+.0f "
                  "bytes per unit",
                  what, r->created, r->reached,
                  r->settled ? " (every other thread asleep)" : " (some thread still runnable)",
                  r->released, r->unit.threads, r->unit.slab);
    if (model == IDLE_MEM_WEFT) {
        bench_print("idle_mem_weft_runtime_fixed", r->fixed.total, "bytes");
        bench_comment("weft runtime fixed cost (weft_runtime_new with %u workers + one warm-up "
                      "task, paid once): rss %.0f + pte %.0f + kstack %.0f = %.0f bytes",
                      r->workers, r->fixed.rss, r->fixed.pte, r->fixed.kstack, r->fixed.total);
        kstack_comment("weft runtime", &r->fixed, 1);
    }
}

static void print_thp(void)
{
    char buf[256];
    if (idle_mem__slurp("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) == 0) {
        buf[strcspn(buf, "\n")] = '\0';
        bench_comment("transparent huge pages: %s", buf);
    }
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    unsigned workers = a.workers ? a.workers : 2;
    int sizes[IDLE_MEM_NMODELS] = {10000, 2000, 2000};
    if (a.quick) {
        sizes[IDLE_MEM_WEFT] = 1000;
        sizes[IDLE_MEM_THREAD] = 500;
        sizes[IDLE_MEM_THREAD64K] = 500;
    }
    /* The kernel folds its per-CPU counters into /proc/meminfo every second. */
    long settle_ms = 1200;
    struct utsname u;
    uname(&u);
    bench_comment("idle_memory: kernel %s %s, %ld CPUs, weft workers %u, page %ld bytes; "
                  "kernel stack assumed %.0f bytes per thread (THREAD_SIZE, x86-64)",
                  u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN), workers,
                  sysconf(_SC_PAGESIZE), IDLE_MEM_THREAD_SIZE);
    print_thp();
    bench_comment("each unit waits with nothing of its own (weft_event_wait / pthread_cond_wait); "
                  "a real request's frames and buffers come on top in every model");

    static cell cells[IDLE_MEM_NMODELS];
    int failures = 0;
    for (int m = 0; m < IDLE_MEM_NMODELS; m++) {
        char name[64];
        snprintf(name, sizeof name, "idle_mem_%s", idle_mem_model_names[m]);
        if (!bench_selected(&a, name))
            continue;
        if (run_cell(m, sizes[m], workers, settle_ms, &cells[m]) != 0)
            failures++;
        print_cell(m, &cells[m]);
    }

    const cell *w = &cells[IDLE_MEM_WEFT];
    for (int m = IDLE_MEM_THREAD; m <= IDLE_MEM_THREAD64K; m++) {
        const cell *t = &cells[m];
        if (!w->ran || !t->ran || !w->ok || !t->ok || w->r.unit.total <= 0)
            continue;
        char name[64];
        snprintf(name, sizeof name, "idle_mem_%s_vs_weft_ratio", idle_mem_model_names[m]);
        bench_print(name, t->r.unit.total / w->r.unit.total, "x");
    }

    bench_comment("%s", "");
    bench_comment("idle memory per waiting unit, bytes (each model in its own forked child)");
    bench_comment("  %-10s %6s %9s %8s %9s %9s   %s", "model", "units", "rss", "pte", "kstack",
                  "total", "kstack measured / expected");
    for (int m = 0; m < IDLE_MEM_NMODELS; m++) {
        const cell *c = &cells[m];
        if (!c->ran)
            continue;
        const idle_mem_cost *k = &c->r.unit;
        bench_comment("  %-10s %6d %9.0f %8.0f %9.0f %9.0f   %.0f / %.0f%s%s",
                      idle_mem_model_names[m], c->r.n, k->rss, k->pte, k->kstack, k->total,
                      k->kstack_measured, k->kstack_expected,
                      k->kstack_from_expected ? " (expected used)" : "",
                      c->ok ? "" : "  FAILED");
    }
    if (w->ran && w->ok)
        bench_comment("  weft runtime fixed cost: %.0f bytes once (%u workers)", w->r.fixed.total,
                      w->r.workers);
    return failures ? 1 : 0;
}
