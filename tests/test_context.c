/* The context switch: values through the switch, fresh contexts, FP control
 * state per task. Register-by-register checks are in tests/arch/switch_check.c,
 * which `make test` also runs. */
#include "util.h"

#include <fenv.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

#include "context.h"

static weft__ctx main_ctx, co_ctx;

static void co_entry(void *arg, void *data)
{
    weft__ctx_started();
    uintptr_t v = (uintptr_t)arg;
    cr_assert_eq((uintptr_t)data, 0xda7a);
    for (;;) /* echo back v + 1, forever */
        v = (uintptr_t)weft__ctx_jump(&co_ctx, &main_ctx, (void *)(v + 1), 0);
}

Test(context, values_flow_through_the_switch)
{
    size_t sz = 64 * 1024;
    char *stk = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(stk, MAP_FAILED);
    weft__ctx_init_thread(&main_ctx);
    memset(&co_ctx, 0, sizeof co_ctx);
    weft__ctx_init(&co_ctx, stk, sz, co_entry, (void *)0xda7a);
    for (uintptr_t i = 0; i < 1000; i++) {
        uintptr_t r = (uintptr_t)weft__ctx_jump(&main_ctx, &co_ctx, (void *)i, 0);
        cr_assert_eq(r, i + 1);
    }
    weft__ctx_destroy(&co_ctx);
    munmap(stk, sz);
}

/* Two tasks on one worker take turns; each sets its own rounding mode and
 * must find it intact after every switch. */
static atomic_int turn;

static void *rounding_task(void *arg)
{
    int mode = (int)(intptr_t)arg;
    int me = mode == FE_UPWARD ? 0 : 1;
    fesetround(mode);
    void *bad = NULL;
    for (int i = 0; i < 200; i++) {
        while (atomic_load(&turn) % 2 != me)
            weft_yield();
        if (!bad && fegetround() != mode)
            bad = (void *)1;
        volatile double x = 1.0, y = 3.0;
        double q = x / y; /* rounding direction shows in the last bit */
        volatile double up = nextafter(1.0 / 3.0, 1.0);
        if (!bad && mode == FE_UPWARD && q != up)
            bad = (void *)2;
        atomic_fetch_add(&turn, 1); /* keep taking turns even after a failure */
        weft_yield();
    }
    return bad;
}

static void *rounding_root(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(rounding_task, (void *)(intptr_t)FE_UPWARD);
    weft_task *b = weft_spawn(rounding_task, (void *)(intptr_t)FE_TOWARDZERO);
    void *ra, *rb;
    cr_assert_eq(weft_join(a, &ra), 0);
    cr_assert_eq(weft_join(b, &rb), 0);
    cr_assert_null(ra, "FE_UPWARD task saw a foreign rounding mode (%p)", ra);
    cr_assert_null(rb, "FE_TOWARDZERO task saw a foreign rounding mode (%p)", rb);
    return NULL;
}

Test(context, fp_control_state_is_per_task)
{
    if (getenv("WEFT_VALGRIND"))
        cr_skip_test("valgrind does not model non-default SSE rounding modes");
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, rounding_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    cr_assert_eq(fegetround(), FE_TONEAREST, "the main thread's mode leaked");
}

Test(context, arch_switch_check_runs)
{
    /* `make test` builds tests/arch/switch_check beside this binary. */
    char path[4096], cmd[4200];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
    cr_assert_gt(n, 0);
    path[n] = 0;
    strcpy(strrchr(path, '/') + 1, "switch_check");
    if (access(path, X_OK) != 0)
        cr_skip_test("%s not built", path);
    snprintf(cmd, sizeof cmd, "%s > /dev/null", path);
    cr_assert_eq(system(cmd), 0, "%s failed", path);
}
