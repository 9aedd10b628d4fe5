/*
 * Smoke test of the async-vs-threads benchmark (bench/async_vs_threads.c):
 * every workload in every model, at tiny sizes, in this process. Checks that
 * each model completes all its requests and reports sane numbers; it asserts
 * nothing about speed (that is the benchmark's job).
 */
#include "util.h"

#include "../bench/avt.h"

static double ipu(void)
{
    static double v;
    if (v == 0)
        v = avt_calibrate(2);
    return v;
}

static void check_model(int m)
{
    if (!avt_model_available(m)) {
        fprintf(stderr, "bench_smoke: model %s not available in this runtime; skipped\n", avt_model_names[m]);
        return;
    }
    int small = test_scale_down();
    for (int wi = 0; wi < AVT_NWORKLOADS; wi++) {
        avt_workload w = avt_workloads[wi];
        w.requests = small ? 12 : 50;
        w.inflight = small ? 4 : 20;
        /* A tail request every 10, and short ones: the code path, not the size. */
        if (w.tail_every) {
            w.tail_every = 10;
            w.tail_cpu_us = 500;
        }
        if (w.cpu_us > 50)
            w.cpu_us = 50;
        avt_result r;
        int rc = avt_run(&w, m, ipu(), 2, &r);
        cr_assert_eq(rc, 0, "%s/%s: avt_run %d", w.name, avt_model_names[m], rc);
        cr_assert_eq(r.completed, w.requests, "%s/%s: %d of %d completed", w.name,
                     avt_model_names[m], r.completed, w.requests);
        cr_assert_gt(r.wall_ms, 0, "%s/%s: wall %f", w.name, avt_model_names[m], r.wall_ms);
        cr_assert_gt(r.min_ms, 0, "%s/%s: min latency %f", w.name, avt_model_names[m], r.min_ms);
        cr_assert(r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms, "%s/%s: p50 %f p99 %f max %f",
                  w.name, avt_model_names[m], r.p50_ms, r.p99_ms, r.max_ms);
        cr_assert_leq(r.max_ms, r.wall_ms + 1e-6, "%s/%s: max latency %f > wall %f", w.name,
                      avt_model_names[m], r.max_ms, r.wall_ms);
        /* Requests that wait must take at least their waits. */
        double waits = w.wait1_ms + w.wait2_ms;
        cr_assert_geq(r.min_ms, waits * 0.99, "%s/%s: min latency %f < waits %f", w.name,
                      avt_model_names[m], r.min_ms, waits);
    }
}

Test(bench_smoke, calibration) { cr_assert_gt(ipu(), 0); }
Test(bench_smoke, weft) { check_model(AVT_WEFT); }
Test(bench_smoke, weft_blocking) { check_model(AVT_WEFT_BLOCKING); }
Test(bench_smoke, weft_compute) { check_model(AVT_WEFT_COMPUTE); }
Test(bench_smoke, threads) { check_model(AVT_THREADS); }
Test(bench_smoke, pool2) { check_model(AVT_POOL2); }
Test(bench_smoke, pool16) { check_model(AVT_POOL16); }
Test(bench_smoke, pool64) { check_model(AVT_POOL64); }
