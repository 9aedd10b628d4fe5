/*
 * Smoke test of the million-timers benchmark (bench/timers.c through
 * bench/timers_bench.h) at a small size, in this process: every sleeper
 * wakes, none early, and the figures are consistent. It asserts nothing
 * about speed or lateness (that is the benchmark's job).
 */
#include "util.h"

#include "../bench/timers_bench.h"

static void check(unsigned workers)
{
    uint64_t n = test_scale_down() ? 2000 : 20000;
    timersb_result r;
    cr_assert_eq(timersb_run(workers, n, 20, &r), 0, "timersb_run failed");
    cr_assert_not(r.failed, "a spawn or a sleep failed");
    cr_assert_eq(r.woke, n, "%llu of %llu sleepers woke", (unsigned long long)r.woke,
                 (unsigned long long)n);
    cr_assert_eq(r.early, 0, "%llu sleepers woke before their deadline", (unsigned long long)r.early);
    cr_assert_gt(r.wall_ms, 0);
    cr_assert(r.p50_ms >= 0 && r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms,
              "p50 %f p99 %f max %f", r.p50_ms, r.p99_ms, r.max_ms);
    cr_assert(r.mean_ms >= 0 && r.mean_ms <= r.max_ms, "mean %f max %f", r.mean_ms, r.max_ms);
    cr_assert_leq(r.max_ms, r.wall_ms, "max lateness %f > wall %f", r.max_ms, r.wall_ms);
}

Test(timers_smoke, one_worker, .timeout = 60) { check(1); }
Test(timers_smoke, two_workers, .timeout = 60) { check(2); }

/* The offsets are uniform over [0, spread) and the same for every run. */
Test(timers_smoke, offsets_cover_the_spread)
{
    int64_t spread = 100000000, lo = spread, hi = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        int64_t o = timersb_offset(i, spread);
        cr_assert(o >= 0 && o < spread, "offset %lld of %llu", (long long)o, (unsigned long long)i);
        lo = o < lo ? o : lo;
        hi = o > hi ? o : hi;
        cr_assert_eq(o, timersb_offset(i, spread));
    }
    cr_assert_lt(lo, spread / 1000);
    cr_assert_gt(hi, spread - spread / 1000);
}
