/*
 * Smoke test of the channel benchmark (bench/chan.c through
 * bench/chan_bench.h): every workload on weft (1 and 2 workers) and on the
 * pthread baseline, at tiny sizes, in this process. Checks that every
 * message arrives exactly once (a count per value, besides the benchmark's
 * own count, sum and order checks) and that the figures are positive; it
 * asserts nothing about speed (that is the benchmark's job).
 */
#include "util.h"

#include "../bench/chan_bench.h"

static void check_pingpong(unsigned workers)
{
    uint64_t rounds = test_scale_down() ? 50 : 500;
    weft_runtime *rt = workers ? test_runtime(workers) : NULL;
    chanb_result r;
    int ok = chanb_pingpong(rt, rounds, &r);
    cr_assert(ok, "pingpong (%u workers): %s", workers, r.err);
    cr_assert_eq(r.msgs, rounds);
    cr_assert_gt(r.wall_ns, 0);
    cr_assert_geq(r.cpu_ns, 0);
    if (rt)
        weft_runtime_free(rt);
}

static void check_flow(unsigned workers, int producers, int consumers, size_t cap)
{
    uint64_t n = test_scale_down() ? 400 : 4000;
    unsigned char *seen = calloc(n, 1);
    cr_assert_not_null(seen);
    weft_runtime *rt = workers ? test_runtime(workers) : NULL;
    chanb_result r;
    int ok = chanb_flow(rt, producers, consumers, cap, n, seen, &r);
    cr_assert(ok, "flow %dx%d cap %zu (%u workers): %s", producers, consumers, cap, workers, r.err);
    cr_assert_eq(r.msgs, n);
    cr_assert_eq(r.disorder, 0);
    for (uint64_t v = 0; v < n; v++)
        cr_assert_eq(seen[v], 1, "value %llu arrived %d times", (unsigned long long)v + 1, seen[v]);
    cr_assert_gt(r.wall_ns, 0);
    cr_assert_geq(r.cpu_ns, 0);
    if (rt)
        weft_runtime_free(rt);
    free(seen);
}

Test(chan_bench_smoke, pingpong_weft_w1, .timeout = 30) { check_pingpong(1); }
Test(chan_bench_smoke, pingpong_weft_w2, .timeout = 30) { check_pingpong(2); }
Test(chan_bench_smoke, pingpong_pthread, .timeout = 30) { check_pingpong(0); }
Test(chan_bench_smoke, stream_weft, .timeout = 30) { check_flow(2, 1, 1, 64); }
Test(chan_bench_smoke, stream_pthread, .timeout = 30) { check_flow(0, 1, 1, 64); }
Test(chan_bench_smoke, mpmc_weft_w1, .timeout = 30) { check_flow(1, 4, 4, 256); }
Test(chan_bench_smoke, mpmc_weft_w2, .timeout = 30) { check_flow(2, 4, 4, 256); }
Test(chan_bench_smoke, mpmc_pthread, .timeout = 30) { check_flow(0, 4, 4, 256); }
/* Capacity 0 with many senders and receivers: the rendezvous paths. */
Test(chan_bench_smoke, mpmc_rendezvous_weft, .timeout = 30) { check_flow(2, 3, 2, 0); }
Test(chan_bench_smoke, mpmc_rendezvous_pthread, .timeout = 30) { check_flow(0, 3, 2, 0); }

/* The checks catch what they are there for. */
Test(chan_bench_smoke, check_rejects_bad_results)
{
    chanb_result r;
    memset(&r, 0, sizeof r);
    r.wall_ns = 1;
    r.msgs = 3;
    r.sum = 1 + 2 + 3;
    r.mix = chanb_mix(1) + chanb_mix(2) + chanb_mix(3);
    cr_assert(chanb_check(&r, 3, 1), "%s", r.err);
    r.err[0] = 0;
    r.sum = 2 + 2 + 2; /* 2 twice, 1 and 3 lost, same count */
    r.mix = 3 * chanb_mix(2);
    cr_assert_not(chanb_check(&r, 3, 1));
    memset(&r, 0, sizeof r);
    r.wall_ns = 1;
    r.msgs = 3;
    r.sum = 1 + 2 + 3;
    r.mix = chanb_mix(1) + chanb_mix(2) + chanb_mix(3);
    r.disorder = 1;
    cr_assert_not(chanb_check(&r, 3, 1));
    r.err[0] = 0;
    r.disorder = 0;
    r.msgs = 2;
    cr_assert_not(chanb_check(&r, 3, 1));
}
