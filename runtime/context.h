/*
 * The bottom layer: one execution context (a task's stack, or a worker
 * thread's own stack) and the switch between two of them, with the hooks that
 * tell ASan, TSan and valgrind which stack is live. Nothing here knows about
 * tasks or workers.
 *
 * A switch hands one pointer across (weft__ctx_jump's arg becomes the return
 * value on the other side). The scheduler passes its worker through it, so
 * code after a switch learns which thread it now runs on by data flow, never
 * by re-reading a thread-local the compiler may have cached.
 */
#ifndef WEFT_CONTEXT_H
#define WEFT_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#ifdef WEFT_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

typedef struct weft__ctx {
    void *sp;         /* saved stack pointer while suspended */
#if defined(WEFT_ASAN) || defined(WEFT_TSAN)
    void *stack_lo;   /* lowest usable address of the stack (for the tools) */
    size_t stack_size;
#endif
#ifdef WEFT_ASAN
    void *asan_fake;  /* ASan's fake stack of this context while suspended */
#endif
#ifdef WEFT_TSAN
    void *tsan_fiber;
#endif
} weft__ctx;

void *weft__ctx_switch(void **save_sp, void *to_sp, void *arg);
void weft__ctx_trampoline(void);

typedef void (*weft__ctx_entry)(void *arg, void *data);

/* Prepares ctx to start entry(arg, data) on the stack [lo, lo+size) when first
 * jumped to; arg is whatever that first jump passes. */
void weft__ctx_init(weft__ctx *ctx, void *lo, size_t size, weft__ctx_entry entry, void *data);

/* Describes the calling thread's own stack as a context to switch back to. */
void weft__ctx_init_thread(weft__ctx *ctx);

/* Releases what the tools hold for ctx (TSan fiber). */
void weft__ctx_destroy(weft__ctx *ctx);

/* Switches from `from` (the running context) to `to`. `dying` says that
 * `from` will never be resumed (a finished task), so ASan may drop its fake
 * stack. Returns the arg of the jump that later resumes `from`. */
static inline __attribute__((always_inline)) void *
weft__ctx_jump(weft__ctx *from, weft__ctx *to, void *arg, int dying)
{
#ifdef WEFT_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->stack_lo, to->stack_size);
#else
    (void)dying;
#endif
#ifdef WEFT_TSAN
    /* Called in the same frame as the stack switch: TSan's function exit for
     * this frame then runs after we are resumed, on our own shadow stack. */
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    void *ret = weft__ctx_switch(&from->sp, to->sp, arg);
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
    return ret;
}

/* First thing a fresh context runs (from its entry function). */
static inline void weft__ctx_started(void)
{
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

#endif
