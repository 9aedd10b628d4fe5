/*
 * Smoke test of the idle-memory benchmark (bench/idle_memory.c): the
 * measuring code of bench/idle_mem.h at tiny sizes, in this process. Checks
 * that every unit is made, reaches its wait, stays there until released and
 * then finishes, and that the figures are sane. Nothing about speed or the
 * ratio; under ASan, TSan or valgrind the memory figures mean nothing, so
 * there only completion is checked.
 */
#include "util.h"

#include "../bench/idle_mem.h"

static void check_completed(const idle_mem_result *r, int n, int rc)
{
    const char *m = idle_mem_model_names[r->model];
    cr_assert_eq(r->created, n, "%s: %d of %d made", m, r->created, n);
    cr_assert_eq(r->reached, n, "%s: %d of %d reached the wait", m, r->reached, n);
    cr_assert_eq(r->early, 0, "%s: %d woke before the release", m, r->early);
    cr_assert_eq(r->released, n, "%s: %d of %d released", m, r->released, n);
    cr_assert_eq(rc, 0, "%s: idle_mem_run %d", m, rc);
    cr_assert(r->ok, "%s: not ok", m);
}

static void check_threads(int model)
{
    int n = test_scale_down() ? 5 : 20;
    idle_mem_result r;
    int rc = idle_mem_run(model, n, 2, 0, &r);
    check_completed(&r, n, rc);
    /* Every thread has a kernel stack: the expected figure is exact. */
    cr_assert_eq(r.unit.threads, n, "threads gained %ld, not %d", r.unit.threads, n);
    cr_assert_eq(r.unit.kstack_expected, IDLE_MEM_THREAD_SIZE, "expected kstack %f per thread",
                 r.unit.kstack_expected);
    if (test_scale_down())
        return;
    /* The counted kstack is the expected value or within 25% of it. */
    cr_assert_geq(r.unit.kstack, 0.75 * IDLE_MEM_THREAD_SIZE, "kstack %f", r.unit.kstack);
    cr_assert_leq(r.unit.kstack, 1.25 * IDLE_MEM_THREAD_SIZE, "kstack %f", r.unit.kstack);
    cr_assert_gt(r.unit.total, r.unit.kstack, "total %f, kstack %f", r.unit.total, r.unit.kstack);
}

Test(idle_memory_smoke, readings)
{
    idle_mem_reading a;
    cr_assert_eq(idle_mem_read(&a), 0);
    cr_assert_gt(a.rss_kb, 0);
    cr_assert_geq(a.threads, 1);
    cr_assert_geq(a.kstack_kb, 0);
}

Test(idle_memory_smoke, weft)
{
    int n = test_scale_down() ? 12 : 50;
    idle_mem_result r;
    int rc = idle_mem_run(IDLE_MEM_WEFT, n, 2, 0, &r);
    check_completed(&r, n, rc);
    cr_assert_eq(r.workers, 2);
    if (test_scale_down())
        return;
    /* A task adds no thread, hence no kernel stack. */
    cr_assert_eq(r.unit.threads, 0, "tasks added %ld threads", r.unit.threads);
    cr_assert_eq(r.unit.kstack, 0);
    cr_assert_gt(r.unit.total, 0, "weft total %f per task", r.unit.total);
    cr_assert_lt(r.unit.total, 1024.0 * 1024, "weft total %f per task", r.unit.total);
    /* The runtime's workers are threads, with their kernel stacks. */
    cr_assert_geq(r.fixed.threads, 2, "runtime added %ld threads", r.fixed.threads);
    cr_assert_eq(r.fixed.kstack_expected, (double)r.fixed.threads * IDLE_MEM_THREAD_SIZE);
}

Test(idle_memory_smoke, thread) { check_threads(IDLE_MEM_THREAD); }
Test(idle_memory_smoke, thread64k) { check_threads(IDLE_MEM_THREAD64K); }
