/*
 * Context-switch costs, in one run:
 *
 *   switch_roundtrip       weft's own switch (weft__ctx_jump from
 *                          runtime/context.h), A -> B -> A, between the main
 *                          thread's stack and a stack mmap'd here; no
 *                          scheduler involved
 *   indirect_call          a call through a volatile function pointer (the
 *                          floor any switch is compared with)
 *   swapcontext_roundtrip  ucontext's swapcontext, A -> B -> A (it saves and
 *                          restores the signal mask: a system call each way)
 *   switch_vs_swapcontext  swapcontext_roundtrip / switch_roundtrip
 *   spawn_exit_warm        weft_spawn + first run + exit of an empty detached
 *                          task, from inside a task on a 1-worker runtime,
 *                          with the stack cache and control-block pool warm
 *
 * Each measurement is repeated; the median is the result, min and max go on
 * a `#` line.
 */
#include "bench.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "context.h"
#include "weft.h"

#define STACK_BYTES (64 * 1024)

static void *map_stack(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

/* ------------------------------------------------------------ weft switch */

typedef struct ctx_pair {
    weft__ctx main_ctx; /* the thread's own stack */
    weft__ctx b;        /* the mmap'd one */
} ctx_pair;

static void b_entry(void *arg, void *data)
{
    (void)arg;
    weft__ctx_started();
    ctx_pair *p = data;
    for (;;)
        weft__ctx_jump(&p->b, &p->main_ctx, NULL, 0);
}

/* ns per round trip over n round trips. */
static double weft_switch_run(ctx_pair *p, long n)
{
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        weft__ctx_jump(&p->main_ctx, &p->b, NULL, 0);
    return (double)(bench_now_ns() - t0) / (double)n;
}

/* ------------------------------------------------------------ indirect call */

static __attribute__((noinline)) long bump(long x)
{
    bench_barrier();
    return x + 1;
}

static long (*volatile call_fp)(long) = bump;

static double indirect_call_run(long n)
{
    long acc = 0;
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        acc = call_fp(acc);
    int64_t dt = bench_now_ns() - t0;
    if (acc != n)
        abort();
    return (double)dt / (double)n;
}

/* ------------------------------------------------------------ swapcontext */

static ucontext_t uc_main, uc_b;

static void uc_b_entry(void)
{
    for (;;)
        swapcontext(&uc_b, &uc_main);
}

static double swapcontext_run(long n)
{
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        swapcontext(&uc_main, &uc_b);
    return (double)(bench_now_ns() - t0) / (double)n;
}

/* ------------------------------------------------------------ spawn + exit */

typedef struct warm_params {
    long n;       /* tasks per repetition */
    int reps;
    int batch;    /* tasks spawned before each yield */
    double *out;  /* ns per task, one per repetition */
} warm_params;

static volatile unsigned long warm_ran; /* one worker: no race */

static void *empty_task(void *arg)
{
    (void)arg;
    warm_ran++;
    return NULL;
}

/* Spawns n tasks in batches; each batch runs to completion while this task
 * sits behind it in the (FIFO) local queue. */
static void warm_round(long n, int batch)
{
    for (long done = 0; done < n;) {
        int b = (long)batch < n - done ? batch : (int)(n - done);
        unsigned long target = warm_ran + (unsigned long)b;
        for (int i = 0; i < b; i++) {
            weft_task *t = weft_spawn(empty_task, NULL);
            if (!t) {
                perror("weft_spawn");
                exit(1);
            }
            weft_detach(t);
        }
        while (warm_ran != target)
            weft_yield();
        done += b;
    }
}

static void *warm_root(void *arg)
{
    warm_params *p = arg;
    warm_round(p->n / 4 + 1000, p->batch); /* warm the caches and pools */
    for (int r = 0; r < p->reps; r++) {
        int64_t t0 = bench_now_ns();
        warm_round(p->n, p->batch);
        p->out[r] = (double)(bench_now_ns() - t0) / (double)p->n;
    }
    return NULL;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    int reps = bench_reps(&a, 7, 3);
    double *v = calloc((size_t)reps, sizeof *v);
    double sw = 0, sc = 0;

    long n_switch = a.quick ? 1000000 : 10000000;
    long n_call = a.quick ? 10000000 : 100000000;
    long n_uc = a.quick ? 200000 : 1000000;
    long n_spawn = a.quick ? 200000 : 1000000;

    bench_comment("switch: reps %d, %ld switch round trips, %ld calls, %ld swapcontext round trips, "
                  "%ld spawns per rep",
                  reps, n_switch, n_call, n_uc, n_spawn);

    if (bench_selected(&a, "switch_roundtrip")) {
        ctx_pair p;
        memset(&p, 0, sizeof p);
        weft__ctx_init_thread(&p.main_ctx);
        void *stk = map_stack(STACK_BYTES);
        weft__ctx_init(&p.b, stk, STACK_BYTES, b_entry, &p);
        weft_switch_run(&p, n_switch / 10); /* warm-up; starts b */
        for (int r = 0; r < reps; r++)
            v[r] = weft_switch_run(&p, n_switch);
        sw = bench_report("switch_roundtrip", v, reps, "ns");
        /* b is parked for good; its stack goes with the process. */
    }

    if (!a.no_baseline && bench_selected(&a, "indirect_call")) {
        indirect_call_run(n_call / 10);
        for (int r = 0; r < reps; r++)
            v[r] = indirect_call_run(n_call);
        bench_report("indirect_call", v, reps, "ns");
    }

    if (!a.no_baseline && bench_selected(&a, "swapcontext_roundtrip")) {
        void *stk = map_stack(STACK_BYTES);
        if (getcontext(&uc_b) != 0) {
            perror("getcontext");
            return 1;
        }
        uc_b.uc_stack.ss_sp = stk;
        uc_b.uc_stack.ss_size = STACK_BYTES;
        uc_b.uc_link = NULL;
        makecontext(&uc_b, uc_b_entry, 0);
        swapcontext_run(n_uc / 10);
        for (int r = 0; r < reps; r++)
            v[r] = swapcontext_run(n_uc);
        sc = bench_report("swapcontext_roundtrip", v, reps, "ns");
    }

    if (sw > 0 && sc > 0)
        bench_print("switch_vs_swapcontext", sc / sw, "x");

    if (bench_selected(&a, "spawn_exit_warm")) {
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = 1;
        weft_runtime *rt = weft_runtime_new(&cfg);
        if (!rt) {
            perror("weft_runtime_new");
            return 1;
        }
        warm_params wp = {n_spawn, reps, 128, v};
        int rc = weft_runtime_block_on(rt, warm_root, &wp, NULL);
        if (rc != 0) {
            fprintf(stderr, "block_on: %d\n", rc);
            return 1;
        }
        weft_worker_stats st;
        weft_runtime_stats(rt, &st, 1);
        bench_comment("spawn_exit_warm: batches of %d, 1 worker: tasks_run %llu parks %llu "
                      "overflows %llu global_pulls %llu",
                      wp.batch, (unsigned long long)st.tasks_run, (unsigned long long)st.parks,
                      (unsigned long long)st.overflows, (unsigned long long)st.global_pulls);
        weft_runtime_free(rt);
        bench_report("spawn_exit_warm", v, reps, "ns");
    }
    free(v);
    return 0;
}
