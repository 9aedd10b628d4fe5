/*
 * Standalone check of the context switch for whatever architecture this is
 * built for (x86-64 natively, aarch64 under qemu-user: `make check-aarch64`).
 * It links only runtime/context.c and runtime/switch_<arch>.S, so it runs where
 * neither Criterion nor the scheduler does. One line per check; the exit
 * status is non-zero if any failed.
 *
 *   cc -O2 -Iinclude -Iruntime tests/arch/switch_check.c runtime/context.c \
 *      runtime/switch_x86_64.S && ./a.out
 *
 * The rounding mode is read and written with the instructions glibc's
 * fesetround uses rather than with fesetround itself, which lives in libm:
 * the build line above stays a plain compile of three files.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "context.h"

#include <fenv.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------ registers */

/*
 * regs_switch(save_sp, to_sp, arg, in, out) loads in[] into every
 * callee-saved register, calls weft__ctx_switch(save_sp, to_sp, arg), and
 * when resumed stores those registers into out[] and returns the switch's
 * result. It is a function of its own, in asm, because a C caller may keep
 * its own values in exactly those registers across the call and compare
 * nothing: only asm that sets them before and reads them after sees a
 * register the switch failed to restore. Both sides of a switch go through
 * it with different patterns, so a lost register shows up as the other
 * side's pattern.
 */
#if defined(__x86_64__)
#define NREGS 6
static const char *const reg_names[NREGS] = { "rbx", "rbp", "r12", "r13", "r14", "r15" };
__asm__(
    "  .pushsection .text\n"
    "  .globl  regs_switch\n"
    "  .hidden regs_switch\n"
    "  .type   regs_switch, @function\n"
    "  .p2align 4\n"
    "regs_switch:\n"
    "  endbr64\n"
    "  pushq   %rbp\n"
    "  pushq   %rbx\n"
    "  pushq   %r12\n"
    "  pushq   %r13\n"
    "  pushq   %r14\n"
    "  pushq   %r15\n"
    "  pushq   %r8\n"                  /* out; also realigns rsp to 16 */
    "  movq    0(%rcx), %rbx\n"
    "  movq    8(%rcx), %rbp\n"
    "  movq    16(%rcx), %r12\n"
    "  movq    24(%rcx), %r13\n"
    "  movq    32(%rcx), %r14\n"
    "  movq    40(%rcx), %r15\n"
    "  callq   weft__ctx_switch\n"
    "  popq    %r8\n"
    "  movq    %rbx, 0(%r8)\n"
    "  movq    %rbp, 8(%r8)\n"
    "  movq    %r12, 16(%r8)\n"
    "  movq    %r13, 24(%r8)\n"
    "  movq    %r14, 32(%r8)\n"
    "  movq    %r15, 40(%r8)\n"
    "  popq    %r15\n"
    "  popq    %r14\n"
    "  popq    %r13\n"
    "  popq    %r12\n"
    "  popq    %rbx\n"
    "  popq    %rbp\n"
    "  ret\n"
    "  .size   regs_switch, .-regs_switch\n"
    "  .popsection\n");
#elif defined(__aarch64__)
#define NREGS 19
static const char *const reg_names[NREGS] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29",
    "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15",
};
__asm__(
    "  .pushsection .text\n"
    "  .globl  regs_switch\n"
    "  .hidden regs_switch\n"
    "  .type   regs_switch, %function\n"
    "  .p2align 4\n"
    "regs_switch:\n"
    "  hint    #34\n"                  /* bti c */
    "  stp     x29, x30, [sp, #-176]!\n"
    "  stp     x19, x20, [sp, #16]\n"
    "  stp     x21, x22, [sp, #32]\n"
    "  stp     x23, x24, [sp, #48]\n"
    "  stp     x25, x26, [sp, #64]\n"
    "  stp     x27, x28, [sp, #80]\n"
    "  stp     d8, d9, [sp, #96]\n"
    "  stp     d10, d11, [sp, #112]\n"
    "  stp     d12, d13, [sp, #128]\n"
    "  stp     d14, d15, [sp, #144]\n"
    "  str     x4, [sp, #160]\n"        /* out */
    "  ldp     x19, x20, [x3, #0]\n"
    "  ldp     x21, x22, [x3, #16]\n"
    "  ldp     x23, x24, [x3, #32]\n"
    "  ldp     x25, x26, [x3, #48]\n"
    "  ldp     x27, x28, [x3, #64]\n"
    "  ldr     x29, [x3, #80]\n"
    "  ldp     d8, d9, [x3, #88]\n"
    "  ldp     d10, d11, [x3, #104]\n"
    "  ldp     d12, d13, [x3, #120]\n"
    "  ldp     d14, d15, [x3, #136]\n"
    "  bl      weft__ctx_switch\n"
    "  ldr     x4, [sp, #160]\n"
    "  stp     x19, x20, [x4, #0]\n"
    "  stp     x21, x22, [x4, #16]\n"
    "  stp     x23, x24, [x4, #32]\n"
    "  stp     x25, x26, [x4, #48]\n"
    "  stp     x27, x28, [x4, #64]\n"
    "  str     x29, [x4, #80]\n"
    "  stp     d8, d9, [x4, #88]\n"
    "  stp     d10, d11, [x4, #104]\n"
    "  stp     d12, d13, [x4, #120]\n"
    "  stp     d14, d15, [x4, #136]\n"
    "  ldp     x19, x20, [sp, #16]\n"
    "  ldp     x21, x22, [sp, #32]\n"
    "  ldp     x23, x24, [sp, #48]\n"
    "  ldp     x25, x26, [sp, #64]\n"
    "  ldp     x27, x28, [sp, #80]\n"
    "  ldp     d8, d9, [sp, #96]\n"
    "  ldp     d10, d11, [sp, #112]\n"
    "  ldp     d12, d13, [sp, #128]\n"
    "  ldp     d14, d15, [sp, #144]\n"
    "  ldp     x29, x30, [sp], #176\n"
    "  ret\n"
    "  .size   regs_switch, .-regs_switch\n"
    "  .popsection\n");
#else
#error "switch_check: no register check for this architecture"
#endif

void *regs_switch(void **save_sp, void *to_sp, void *arg, const uint64_t *in, uint64_t *out);

/* -------------------------------------------------------- rounding mode */

/* What fesetround/fegetround do, minus libm. On x86-64 both the SSE unit
 * (MXCSR) and the x87 unit (control word) carry a rounding mode and the
 * switch saves both, so both are set and each is read separately. */
#if defined(__x86_64__)
static void round_set(int mode)
{
    uint16_t cw;
    uint32_t csr;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    cw = (uint16_t)((cw & ~0xc00) | mode);
    __asm__ volatile("fldcw %0" : : "m"(cw));
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    csr = (csr & ~0x6000u) | ((uint32_t)mode << 3);
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
}

static int round_get_sse(void)
{
    uint32_t csr;
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    return (int)((csr >> 3) & 0xc00);
}

static int round_get_x87(void)
{
    uint16_t cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw & 0xc00;
}
#elif defined(__aarch64__)
static void round_set(int mode)
{
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr = (fpcr & ~(uint64_t)0xc00000) | (uint64_t)mode;
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
}

static int round_get_sse(void)
{
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    return (int)(fpcr & 0xc00000);
}

static int round_get_x87(void)
{
    return round_get_sse();
}
#endif

/* 1/3 under the current rounding mode, computed at run time. */
static double third(void)
{
    volatile double one = 1.0, three = 3.0;
    return one / three;
}

static const char *round_name(int mode)
{
    switch (mode) {
    case FE_TONEAREST: return "to-nearest";
    case FE_UPWARD: return "upward";
    case FE_DOWNWARD: return "downward";
    case FE_TOWARDZERO: return "toward-zero";
    }
    return "?";
}

/* ------------------------------------------------------------ harness */

static int failures;     /* of the check now running */
static int failed_checks;

static void fail(const char *fmt, ...)
{
    if (failures++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        fputs("    ", stdout);
        vprintf(fmt, ap);
        fputc('\n', stdout);
        va_end(ap);
    }
}

static void report(const char *name)
{
    printf("%s: %s", failures ? "FAIL" : "ok", name);
    if (failures)
        printf(" (%d failure%s)", failures, failures == 1 ? "" : "s");
    putchar('\n');
    fflush(stdout);
    failed_checks += failures != 0;
    failures = 0;
}

#define STACK_SIZE (64 * 1024)

struct co {
    weft__ctx ctx;
    void *stack;
};

static weft__ctx main_ctx;

static void co_init(struct co *c, size_t size, weft__ctx_entry entry, void *data)
{
    c->stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->stack == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    weft__ctx_init(&c->ctx, c->stack, size, entry, data);
}

static void co_free(struct co *c, size_t size)
{
    weft__ctx_destroy(&c->ctx);
    munmap(c->stack, size);
}

/* ---------------------------------------------- (a) callee-saved registers */

#define REG_ROUNDS 50

static uint64_t pattern(int side, int round, int reg)
{
    /* Distinct per side, round and register; d-registers get values that are
     * also valid doubles, which does not matter but reads well in a dump. */
    return 0x5a00000000000000ull ^ ((uint64_t)side << 48) ^ ((uint64_t)round << 16) ^
           (uint64_t)(reg + 1) * 0x0101;
}

static void check_regs(int side, int round, const uint64_t *out)
{
    for (int r = 0; r < NREGS; r++) {
        uint64_t want = pattern(side, round, r);
        if (out[r] != want)
            fail("%s side, round %d: %s = %#" PRIx64 ", want %#" PRIx64,
                 side ? "coroutine" : "main", round, reg_names[r], out[r], want);
    }
}

static void regs_entry(void *arg, void *data)
{
    weft__ctx_started();
    struct co *self = data;
    (void)arg;
    uint64_t in[NREGS], out[NREGS];
    for (int round = 0;; round++) {
        for (int r = 0; r < NREGS; r++)
            in[r] = pattern(1, round, r);
        regs_switch(&self->ctx.sp, main_ctx.sp, NULL, in, out);
        check_regs(1, round, out);
    }
}

static void test_regs(void)
{
    struct co c;
    co_init(&c, STACK_SIZE, regs_entry, &c);
    uint64_t in[NREGS], out[NREGS];
    for (int round = 0; round < REG_ROUNDS; round++) {
        for (int r = 0; r < NREGS; r++)
            in[r] = pattern(0, round, r);
        regs_switch(&main_ctx.sp, c.ctx.sp, NULL, in, out);
        check_regs(0, round, out);
    }
    co_free(&c, STACK_SIZE);
    report("callee-saved registers survive a switch, both directions");
}

/* ------------------------------------------------- (b) FP control state */

static int co_mode;      /* what the coroutine last set */

static void check_mode(const char *who, int want)
{
    int sse = round_get_sse(), x87 = round_get_x87();
    if (sse != want || x87 != want)
        fail("%s sees %s/%s, want %s", who, round_name(sse), round_name(x87), round_name(want));
    double q = third();
    /* 1/3 = 0x1.5555555555555|55...p-2: only upward rounds the last digit up. */
    double expect = want == FE_UPWARD ? 0x1.5555555555556p-2 : 0x1.5555555555555p-2;
    if (q != expect)
        fail("%s: 1/3 = %a under %s", who, q, round_name(want));
}

static void fp_entry(void *arg, void *data)
{
    weft__ctx_started();
    struct co *self = data;
    (void)arg;
    /* Whatever its creator runs under, a fresh context starts at the ABI's
     * defaults: the frame weft__ctx_init builds holds them. */
    check_mode("fresh coroutine", FE_TONEAREST);
    static const int modes[] = { FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO, FE_UPWARD };
    for (int i = 0;; i++) {
        co_mode = modes[i % 4];
        round_set(co_mode);
        weft__ctx_jump(&self->ctx, &main_ctx, NULL, 0);
        check_mode("coroutine", co_mode);
    }
}

static void test_fp(void)
{
    struct co c;
    co_init(&c, STACK_SIZE, fp_entry, &c);
    round_set(FE_TOWARDZERO);
    weft__ctx_jump(&main_ctx, &c.ctx, NULL, 0);   /* coroutine: upward */
    check_mode("main", FE_TOWARDZERO);
    round_set(FE_TONEAREST);
    for (int i = 0; i < 8; i++) {
        weft__ctx_jump(&main_ctx, &c.ctx, NULL, 0);
        check_mode("main", FE_TONEAREST);
    }
    /* The same mode on both sides takes the switch's no-write path one way
     * (the coroutine last set upward) and the write path back. */
    round_set(FE_UPWARD);
    weft__ctx_jump(&main_ctx, &c.ctx, NULL, 0);
    check_mode("main", FE_UPWARD);
    round_set(FE_TONEAREST);
    weft__ctx_jump(&main_ctx, &c.ctx, NULL, 0);
    check_mode("main", FE_TONEAREST);
    co_free(&c, STACK_SIZE);
    report("FP control state (rounding mode) is per context");
}

/* --------------------------------------------- (c) values through a switch */

/* Called through a pointer the compiler cannot see through, so the call is
 * an indirect branch and, in a BTI binary, lands on the switch's `bti c`. */
static void *(*volatile switch_ptr)(void **, void *, void *) = weft__ctx_switch;

static void values_entry(void *arg, void *data)
{
    weft__ctx_started();
    struct co *self = data;
    if (arg != (void *)0x1234)
        fail("fresh context got first arg %p, want 0x1234", arg);
    uintptr_t v = (uintptr_t)arg;
    for (;;) {
        /* Return v + 1 to main; main answers with its next value. */
        v = (uintptr_t)switch_ptr(&self->ctx.sp, main_ctx.sp, (void *)(v + 1));
    }
}

static void test_values(void)
{
    struct co c;
    static int marker;
    co_init(&c, STACK_SIZE, values_entry, &c);
    void *r = switch_ptr(&main_ctx.sp, c.ctx.sp, (void *)0x1234);
    if (r != (void *)0x1235)
        fail("first round trip returned %p, want 0x1235", r);
    uintptr_t vals[] = { 0, 1, (uintptr_t)&marker, UINTPTR_MAX - 1, (uintptr_t)1 << 63 };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        r = switch_ptr(&main_ctx.sp, c.ctx.sp, (void *)vals[i]);
        if (r != (void *)(vals[i] + 1))
            fail("sent %#" PRIxPTR ", got back %p", vals[i], r);
    }
    co_free(&c, STACK_SIZE);
    report("arg becomes the other side's return value; a fresh context gets its first arg");
}

/* ------------------------------------------------------------- (d) ring */

#define RING_N 1000
#define RING_LAPS 100
#define RING_STACK (16 * 1024)

struct ring_node {
    struct co co;
    int index;
    uintptr_t next_expected;
};

static struct ring_node *ring;

static void ring_entry(void *arg, void *data)
{
    weft__ctx_started();
    struct ring_node *n = data;
    uintptr_t tok = (uintptr_t)arg;
    for (;;) {
        if (tok != n->next_expected)
            fail("node %d got token %" PRIuPTR ", want %" PRIuPTR, n->index, tok,
                 n->next_expected);
        n->next_expected = tok + RING_N;
        tok++;
        weft__ctx *to = tok == (uintptr_t)RING_N * RING_LAPS
                            ? &main_ctx : &ring[(n->index + 1) % RING_N].co.ctx;
        tok = (uintptr_t)weft__ctx_jump(&n->co.ctx, to, (void *)tok, 0);
    }
}

static void test_ring(void)
{
    ring = calloc(RING_N, sizeof *ring);
    if (!ring) {
        perror("calloc");
        exit(2);
    }
    for (int i = 0; i < RING_N; i++) {
        ring[i].index = i;
        ring[i].next_expected = (uintptr_t)i;
        co_init(&ring[i].co, RING_STACK, ring_entry, &ring[i]);
    }
    uintptr_t tok = (uintptr_t)weft__ctx_jump(&main_ctx, &ring[0].co.ctx, (void *)0, 0);
    if (tok != (uintptr_t)RING_N * RING_LAPS)
        fail("token came back as %" PRIuPTR ", want %d", tok, RING_N * RING_LAPS);
    for (int i = 0; i < RING_N; i++) {
        if (ring[i].next_expected != (uintptr_t)RING_N * RING_LAPS + (uintptr_t)i)
            fail("node %d was visited up to %" PRIuPTR, i, ring[i].next_expected);
        co_free(&ring[i].co, RING_STACK);
    }
    free(ring);
    report("ring of 1000 coroutines passes a token around 100 times");
}

/* ------------------------------------------- (e) BTI-guarded pages, aarch64 */

#if defined(__aarch64__) && defined(__ARM_FEATURE_BTI_DEFAULT)
/*
 * Debian's aarch64 crt files and static glibc carry no BTI note, so the linked
 * binary never runs on guarded pages and a missing landing pad would go
 * unnoticed. This check guards the pages holding the switch and this file's
 * code itself with mprotect(PROT_BTI), the way ld.so guards a BTI-marked
 * object, and runs a switch round trip through indirect branches there: an
 * indirect call into weft__ctx_switch, and the trampoline's call of the entry
 * function. A canary without a landing pad proves the guard is enforced.
 *
 * Nothing in the window may call into libc through a pointer or an IFUNC
 * (the pages at either end hold libc code without landing pads), so the
 * context is built before and results are printed after. qemu-user checks
 * landing pads when it translates code, so this runs before any other check
 * has executed the switch.
 */
#ifndef PROT_BTI
#define PROT_BTI 0x10
#endif

__asm__(
    "  .pushsection .text\n"
    "  .globl  bti_canary\n"
    "  .hidden bti_canary\n"
    "  .type   bti_canary, %function\n"
    "bti_canary:\n"                    /* deliberately no landing pad */
    "  mov     x0, #1\n"
    "  ret\n"
    "  .size   bti_canary, .-bti_canary\n"
    "  .popsection\n");
int bti_canary(void);

static int (*volatile canary_ptr)(void) = bti_canary;
static sigjmp_buf bti_jmp;
static volatile int bti_round_trips;

static void bti_sigill(int sig)
{
    (void)sig;
    siglongjmp(bti_jmp, 1);
}

static void bti_entry(void *arg, void *data)
{
    weft__ctx_started();
    struct co *self = data;
    for (;;)
        arg = switch_ptr(&self->ctx.sp, main_ctx.sp, (void *)((uintptr_t)arg + 1));
}

static void test_bti(void)
{
    struct co c;
    co_init(&c, STACK_SIZE, bti_entry, &c);

    uintptr_t fns[] = { (uintptr_t)bti_canary, (uintptr_t)bti_entry, (uintptr_t)bti_sigill,
                        (uintptr_t)test_bti, (uintptr_t)weft__ctx_switch,
                        (uintptr_t)weft__ctx_trampoline };
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        lo = fns[i] < lo ? fns[i] : lo;
        hi = fns[i] > hi ? fns[i] : hi;
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo &= ~(page - 1);
    hi = (hi + 256 + page - 1) & ~(page - 1);   /* the last function's body too */

    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bti_sigill;
    sigaction(SIGILL, &sa, &old_sa);

    const char *skip = NULL;
    int canary_trapped = 0, switch_trapped = 0;
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC | PROT_BTI) != 0) {
        skip = "PROT_BTI refused (no BTI on this CPU)";
    } else {
        if (sigsetjmp(bti_jmp, 1) == 0)
            canary_ptr();
        else
            canary_trapped = 1;
        if (canary_trapped) {
            if (sigsetjmp(bti_jmp, 1) == 0) {
                void *r = switch_ptr(&main_ctx.sp, c.ctx.sp, (void *)10);
                for (int i = 0; i < 3 && r == (void *)(uintptr_t)(11 + 2 * i); i++) {
                    r = switch_ptr(&main_ctx.sp, c.ctx.sp, (void *)(uintptr_t)(12 + 2 * i));
                    bti_round_trips++;
                }
                bti_round_trips += r == (void *)17;
            } else {
                switch_trapped = 1;
            }
        }
        mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC);
    }
    sigaction(SIGILL, &old_sa, NULL);

    if (!skip && !canary_trapped)
        skip = "guard not enforced (canary ran)";
    if (skip) {
        printf("skip: switch on BTI-guarded pages: %s\n", skip);
    } else {
        if (switch_trapped)
            fail("SIGILL: an indirect branch in the switch path missed its landing pad");
        else if (bti_round_trips != 4)
            fail("values wrong on guarded pages (%d of 4 round trips)", bti_round_trips);
        /* A coroutine that trapped mid-switch is left half-switched: do not
         * free its stack. */
        if (!switch_trapped)
            co_free(&c, STACK_SIZE);
        report("switch on BTI-guarded pages (canary trapped; indirect call and trampoline did not)");
    }
}
#endif

int main(void)
{
#if defined(__x86_64__)
    const char *arch = "x86-64";
#else
    const char *arch = "aarch64";
#endif
    printf("switch_check (%s)\n", arch);
    weft__ctx_init_thread(&main_ctx);
#if defined(__aarch64__) && defined(__ARM_FEATURE_BTI_DEFAULT)
    test_bti();
#endif
    test_regs();
    test_fp();
    test_values();
    test_ring();
    weft__ctx_destroy(&main_ctx);
    printf("%s\n", failed_checks ? "FAILED" : "all passed");
    return failed_checks != 0;
}
