/*
 * Building fresh contexts. The frame layout must match switch_<arch>.S.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "context.h"

#include <pthread.h>
#include <string.h>

void weft__ctx_init(weft__ctx *ctx, void *lo, size_t size, weft__ctx_entry entry, void *data)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* After the switch pops 64 bytes and returns into the trampoline, rsp must
     * be 16-byte aligned: frame at top - 64 - 16 leaves a 16-byte pad above. */
    uint64_t *f = (uint64_t *)(top - 80);
    memset(f, 0, 80);
    uint32_t mxcsr = 0x1f80;   /* all exceptions masked, round to nearest */
    uint16_t fpucw = 0x037f;   /* x87 defaults, 64-bit precision */
    memcpy((char *)f, &mxcsr, 4);
    memcpy((char *)f + 4, &fpucw, 2);
    f[4] = (uint64_t)(uintptr_t)entry;            /* r12 */
    f[5] = (uint64_t)(uintptr_t)data;             /* rbx */
    f[7] = (uint64_t)(uintptr_t)weft__ctx_trampoline;
    ctx->sp = f;
#elif defined(__aarch64__)
    /* Frame of switch_aarch64.S: 176 bytes, x19.. at 0, x29 at 80, x30 at 88,
     * d8-d15 at 96, fpcr at 160 (0: round to nearest, no traps). sp stays
     * 16-byte aligned. */
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)entry;            /* x19 */
    f[1] = (uint64_t)(uintptr_t)data;             /* x20 */
    /* The switch authenticates x30 with AUTIASP after popping the frame, so
     * the trampoline address is signed as PACIASP would have signed it: A key,
     * modifier = the sp after the pop, i.e. top. PACIA1716 (x17 signed with
     * modifier x16) is a HINT, a NOP exactly where AUTIASP is one too. */
    register uint64_t x17 __asm__("x17") = (uint64_t)(uintptr_t)weft__ctx_trampoline;
    register uint64_t x16 __asm__("x16") = (uint64_t)top;
    __asm__("hint #8" : "+r"(x17) : "r"(x16)); /* pacia1716 */
    f[11] = x17;                                  /* x30 */
    ctx->sp = f;
#else
#error "weft: no context switch for this architecture"
#endif
#if defined(WEFT_ASAN) || defined(WEFT_TSAN)
    ctx->stack_lo = lo;
    ctx->stack_size = size;
#endif
#ifdef WEFT_ASAN
    ctx->asan_fake = NULL;
#endif
#ifdef WEFT_TSAN
    ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
}

void weft__ctx_init_thread(weft__ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
#if defined(WEFT_ASAN) || defined(WEFT_TSAN)
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            ctx->stack_lo = lo;
            ctx->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#endif
#ifdef WEFT_TSAN
    ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void weft__ctx_destroy(weft__ctx *ctx)
{
#ifdef WEFT_TSAN
    if (ctx->tsan_fiber)
        __tsan_destroy_fiber(ctx->tsan_fiber);
    ctx->tsan_fiber = NULL;
#else
    (void)ctx;
#endif
}
