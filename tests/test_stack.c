/* Stacks: deep recursion, overflow reports, recycling without leaks, and the
 * mapping budget. */
#include "util.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "stack.h"

/* Uses about `depth` KiB of stack. */
static __attribute__((noinline)) int recurse(int depth)
{
    volatile char frame[1000];
    frame[0] = (char)depth;
    if (depth <= 0)
        return frame[0];
    return recurse(depth - 1) + frame[0] - (char)depth + 1;
}

static void *deep_task(void *arg)
{
    return (void *)(intptr_t)recurse((int)(intptr_t)arg);
}

static void *deep_root(void *arg)
{
    weft_spawn_opts o = {.name = "deep", .stack_size = 256 * 1024};
    weft_task *t = weft_spawn_ex(deep_task, arg, &o);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    return r;
}

Test(stack, recursion_close_to_the_size_works)
{
    weft_runtime *rt = test_runtime(2);
    void *r;
    /* 256 KiB stack minus the guard page; ~1 KiB per frame: 200 frames. */
    cr_assert_eq(weft_runtime_block_on(rt, deep_root, (void *)(intptr_t)200, &r), 0);
    cr_assert_eq((intptr_t)r, 200 + 0);
    weft_runtime_free(rt);
}

/* Runs a runtime in a child that overflows a named task's stack; returns
 * what the child wrote to stderr and how it ended. */
static int overflow_child(const char *guard_mode, char *err, size_t errlen)
{
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(pipefd[1], 2);
        if (guard_mode)
            setenv("WEFT_STACK_GUARD", guard_mode, 1);
        weft_runtime *rt = test_runtime(1);
        weft_runtime_block_on(rt, deep_root, (void *)(intptr_t)100000, NULL);
        _exit(0); /* not reached if detection works */
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t n;
    while (got < errlen - 1 && (n = read(pipefd[0], err + got, errlen - 1 - got)) > 0)
        got += (size_t)n;
    err[got] = 0;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

Test(stack, overflow_dies_with_a_clear_message, .timeout = 30)
{
    char err[2048];
    int status = overflow_child(NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child did not abort (status %#x), stderr: %s", status, err);
    cr_assert(strstr(err, "stack overflow in task 'deep'"), "message was: %s", err);
    /* Formatted inside the signal handler without stdio: the numbers too. */
    cr_assert(strstr(err, "' (id ") && strstr(err, ") on worker 0: fault at 0x") &&
                  strstr(err, " of 256 KiB; "),
              "message was: %s", err);
}

Test(stack, overflow_detected_with_prot_none_guards, .timeout = 30)
{
    char err[2048];
    int status = overflow_child("prot", err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x: %s", status, err);
    cr_assert(strstr(err, "stack overflow in task 'deep'"), "message was: %s", err);
}

Test(stack, guard_mode_is_known)
{
    int m = weft__stack_guard_mode();
    cr_assert(m == WEFT_GUARD_MADVISE || m == WEFT_GUARD_PROT || m == WEFT_GUARD_CANARY);
}

Test(stack, canary_check_catches_a_smashed_bottom)
{
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache cache;
    weft__stack_cache_init(&cache, &pool);
    weft__stack *s = weft__stack_get(&cache, 4); /* 256 KiB */
    cr_assert_not_null(s);
    s->guard = WEFT_GUARD_CANARY; /* as on a kernel without guards */
    weft__stack_arm(s);
    cr_assert(weft__stack_intact(s));
    s->lo[3] ^= 0x5a;
    cr_assert(!weft__stack_intact(s));
    s->lo[3] ^= 0x5a;
    weft__stack_put(&cache, s, 0);
    weft__stack_cache_drain(&cache);
    weft__stack_pool_destroy(&pool);
}

Test(stack, hundred_thousand_stacks_recycled_without_leaks, .timeout = 120)
{
    const int N = test_scale_down() ? 5000 : 100000;
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache cache;
    weft__stack_cache_init(&cache, &pool);
    static weft__stack *held[100000];
    long rss0 = test_rss();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            held[i] = weft__stack_get(&cache, 2); /* 64 KiB stacks */
            cr_assert_not_null(held[i], "stack %d", i);
            held[i]->lo[held[i]->size - 1] = 1; /* touch the top page, as a task does */
        }
        long rss_full = test_rss();
        if (!test_scale_down())
            cr_assert_gt(rss_full - rss0, (long)N * 4096 / 2, "pages were not touched?");
        for (int i = 0; i < N; i++)
            weft__stack_put(&cache, held[i], 0);
    }
    weft__stack_cache_drain(&cache);
    while (weft__stack_pool_trim(&pool)) /* what idle workers do */
        ;
    if (test_scale_down()) {
        /* TSan keeps shadow pages for memory given back with MADV_DONTNEED
         * and valgrind does not model it: RSS says nothing there. */
        weft__stack_pool_destroy(&pool);
        return;
    }
    long rss_end = test_rss();
    cr_assert_lt(rss_end - rss0, 16L << 20, "RSS grew by %ld KiB after returning every stack",
                 (rss_end - rss0) / 1024);
    weft__stack_pool_destroy(&pool);
    cr_assert_lt(test_rss() - rss0, 16L << 20);
}

Test(stack, a_million_stacks_fit_the_mapping_budget, .timeout = 120)
{
    if (weft__stack_guard_mode() != WEFT_GUARD_MADVISE)
        cr_skip_test("kernel without MADV_GUARD_INSTALL: PROT_NONE guards are capped by design");
    if (test_scale_down())
        cr_skip_test("a million stacks take minutes under instrumentation");
    enum { N = 1000000 };
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache cache;
    weft__stack_cache_init(&cache, &pool);
    weft__stack **held = malloc(N * sizeof *held);
    int maps0 = test_map_count();
    for (int i = 0; i < N; i++) {
        held[i] = weft__stack_get(&cache, 4); /* the default 256 KiB */
        cr_assert_not_null(held[i], "stack %d of %d", i, N);
    }
    int maps = test_map_count() - maps0;
    cr_assert_lt(maps, 20000, "a million guarded stacks took %d mappings", maps);
    for (int i = 0; i < N; i++)
        weft__stack_put(&cache, held[i], 0);
    weft__stack_cache_drain(&cache);
    weft__stack_pool_destroy(&pool);
    free(held);
}

static int top_page_resident(const weft__stack *s)
{
    unsigned char v = 0;
    char *page = (char *)(((uintptr_t)(s->lo + s->size - 1)) & ~(uintptr_t)4095);
    cr_assert_eq(mincore(page, 4096, &v), 0);
    return v & 1;
}

/* n stacks of class 2 (64 KiB) from c, each with its top page touched as a
 * task's first frame touches it. */
static void take_touched(weft__stack_cache *c, weft__stack **v, int n)
{
    for (int i = 0; i < n; i++) {
        v[i] = weft__stack_get(c, 2);
        cr_assert_not_null(v[i], "stack %d", i);
        v[i]->lo[v[i]->size - 1] = 1;
    }
}

/* How many stacks of a pool list still have their top page. */
static int list_resident(const weft__stack *s)
{
    int n = 0;
    for (; s; s = s->next)
        n += top_page_resident(s);
    return n;
}

/* Stacks that move between workers (a task spawned on one, ending on
 * another) pass through the shared pool with their pages, so reuse costs no
 * page fault; a trim (when a worker goes idle) returns the pages of all but
 * WEFT_POOL_WARM of them to the kernel, so a burst does not pin its memory. */
Test(stack, pool_keeps_a_bounded_number_of_stacks_warm, .timeout = 60)
{
    if (test_scale_down())
        cr_skip_test("valgrind does not model page residency");
    enum { N = 2000 };
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache a, b;
    weft__stack_cache_init(&a, &pool);
    weft__stack_cache_init(&b, &pool);
    static weft__stack *held[N];
    take_touched(&a, held, N);
    /* All end "on the other worker": cache b spills to the pool, which keeps
     * their pages until trimmed (a worker going idle trims). */
    for (int i = 0; i < N; i++)
        weft__stack_put(&b, held[i], 0);
    cr_assert_gt(pool.nwarm[2], WEFT_POOL_WARM, "spilled stacks were not kept warm");
    /* Cache a holds untouched stacks its last refill left: back to the pool
     * too, then the trim. */
    weft__stack_cache_drain(&a);
    /* One trim (one worker going idle) returns a bounded batch; the next
     * ones the rest. */
    size_t first = weft__stack_pool_trim(&pool);
    cr_assert(first > 0 && first <= WEFT_POOL_TRIM_MAX, "one trim returned %zu", first);
    while (weft__stack_pool_trim(&pool))
        ;
    cr_assert_eq(pool.nwarm[2], WEFT_POOL_WARM);
    int warm_resident = list_resident(pool.warm[2]), cold_resident = list_resident(pool.free[2]);
    cr_assert_eq(warm_resident, (int)pool.nwarm[2], "warm stacks lost their pages");
    cr_assert_eq(cold_resident, 0, "%d stacks beyond the warm cap kept their pages", cold_resident);
    /* Cache a refills from the warm ones first. */
    weft__stack *s = weft__stack_get(&a, 2);
    cr_assert(top_page_resident(s));
    weft__stack_put(&a, s, 0);
    weft__stack_cache_drain(&a);
    weft__stack_cache_drain(&b);
    weft__stack_pool_destroy(&pool);
}

/* A churn of tasks by the thousand (issue 19: over 10,000 sleepers alive
 * at a time) goes through the pool: spills keep as many stacks warm as were
 * in use at once since the last trim, and a trim as many as are in use, so
 * the next starts reuse their pages instead of faulting fresh ones in after
 * a madvise; once the tasks are gone, a trim gives back all but
 * WEFT_POOL_WARM. */
Test(stack, pool_keeps_as_many_warm_stacks_as_are_in_use, .timeout = 60)
{
    if (test_scale_down())
        cr_skip_test("valgrind does not model page residency");
    enum { M = WEFT_POOL_WARM_MAX + 2000 };
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache a, b;
    weft__stack_cache_init(&a, &pool);
    weft__stack_cache_init(&b, &pool);
    static weft__stack *held[M], *churn[M];
    take_touched(&a, held, M);
    take_touched(&a, churn, M);
    /* The churn ends "on the other worker": past WEFT_POOL_WARM_MAX, but
     * with M stacks still in use, every one stays warm. */
    for (int i = 0; i < M; i++)
        weft__stack_put(&b, churn[i], 0);
    size_t cap_b = b.nfree[2];
    cr_assert_geq(pool.nwarm[2] + cap_b, (size_t)M, "%zu warm + %zu cached of %d", pool.nwarm[2],
                  cap_b, M);
    while (weft__stack_pool_trim(&pool)) /* workers going idle while M are in use */
        ;
    cr_assert_geq(pool.nwarm[2] + cap_b, (size_t)M, "the trim dropped stacks while as many were in use");
    cr_assert_eq(list_resident(pool.warm[2]), (int)pool.nwarm[2], "warm stacks lost their pages");
    /* Every task gone: the trim gives back all but WEFT_POOL_WARM. */
    for (int i = 0; i < M; i++)
        weft__stack_put(&b, held[i], 0);
    weft__stack_cache_drain(&a);
    weft__stack_cache_drain(&b);
    cr_assert_gt(pool.nwarm[2], WEFT_POOL_WARM_MAX);
    while (weft__stack_pool_trim(&pool))
        ;
    cr_assert_eq(pool.nwarm[2], WEFT_POOL_WARM);
    int cold_resident = list_resident(pool.free[2]);
    cr_assert_eq(cold_resident, 0, "%d trimmed stacks kept their pages", cold_resident);
    weft__stack_pool_destroy(&pool);
}

static int pages_resident(const char *lo, size_t len)
{
    unsigned char v[256];
    cr_assert_leq(len / 4096, sizeof v);
    cr_assert_eq(mincore((void *)lo, len, v), 0);
    int n = 0;
    for (size_t i = 0; i < len / 4096; i++)
        n += v[i] & 1;
    return n;
}

/* The recycling rule of README's "Stacks" section: a stack that comes back
 * from deep use returns everything below its top WEFT_STACK_WARM to the
 * kernel; a shallow one keeps its page and is reused as it is (no system
 * call: nothing below its top page was touched). */
Test(stack, a_deep_stack_returns_its_pages_a_shallow_one_is_reused_warm)
{
    if (test_scale_down())
        cr_skip_test("valgrind does not model page residency");
    weft__stack_pool pool;
    weft__stack_pool_init(&pool);
    weft__stack_cache c;
    weft__stack_cache_init(&c, &pool);
    weft__stack *s = weft__stack_get(&c, 2); /* 64 KiB */
    cr_assert_not_null(s);
    memset(s->lo, 1, s->size); /* deep use: every page */
    cr_assert_eq(pages_resident(s->lo, s->size), (int)(s->size / 4096));
    weft__stack_put(&c, s, 1);
    cr_assert_eq(pages_resident(s->lo, s->size - WEFT_STACK_WARM), 0,
                 "a deep stack kept pages below its warm top");
    cr_assert_eq(pages_resident(s->lo + s->size - WEFT_STACK_WARM, WEFT_STACK_WARM),
                 WEFT_STACK_WARM / 4096, "the warm top was dropped too");
    /* Reused from the cache at once, then used shallowly. */
    weft__stack *again = weft__stack_get(&c, 2);
    cr_assert_eq(again, s, "the cache is not LIFO");
    cr_assert_eq(again->lo[again->size - 1], 1, "the top page lost its contents");
    weft__stack_put(&c, again, 0);
    cr_assert_eq(pages_resident(s->lo + s->size - 4096, 4096), 1, "a shallow stack lost its page");
    cr_assert_eq(s->lo[s->size - 1], 1, "a shallow stack was scrubbed");
    weft__stack_cache_drain(&c);
    weft__stack_pool_destroy(&pool);
}
