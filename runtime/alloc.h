/*
 * Heap memory for the runtime. Every allocation goes through here so that the
 * allocator is jemalloc (linked in by the build; Debian's jemalloc replaces
 * malloc without a prefix) and so that one place can change if that changes.
 * Under ASan/TSan/valgrind the tool's allocator takes these calls instead.
 */
#ifndef WEFT_ALLOC_H
#define WEFT_ALLOC_H

#include <stdlib.h>
#include <string.h>

static inline void *weft__malloc(size_t n) { return malloc(n); }
static inline void *weft__calloc(size_t n, size_t m) { return calloc(n, m); }
static inline void *weft__realloc(void *p, size_t n) { return realloc(p, n); }
static inline void weft__free(void *p) { free(p); }
static inline void *weft__aligned(size_t align, size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
}

#define WEFT_CACHELINE 64
#define weft__likely(x) __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)


static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
