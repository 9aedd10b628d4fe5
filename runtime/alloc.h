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

/* Fault injection (tests/test_faults.c, built by `make test-faults` with
 * -DWEFT_FAULT_INJECT): weft__fault() counts every allocation the runtime
 * makes, heap and mmap alike, and says whether this one must fail (runtime/
 * fault.c). A failing weft__realloc leaves the old block alone, as realloc
 * does. In every other build weft__fault() is the constant 0 and the checks
 * compile away. */
#ifdef WEFT_FAULT_INJECT
int weft__fault(void);
/* Fail the nth allocation from now (1 = the next one), and only that one;
 * 0 disarms. Resets the count. */
void weft__fault_arm(long nth);
/* Allocations counted since the last arm, and whether the armed one hit. */
long weft__fault_count(void);
int weft__fault_hit(void);
#else
#define weft__fault() 0
#endif

static inline void *weft__malloc(size_t n) { return weft__fault() ? NULL : malloc(n); }
static inline void *weft__calloc(size_t n, size_t m) { return weft__fault() ? NULL : calloc(n, m); }
static inline void *weft__realloc(void *p, size_t n) { return weft__fault() ? NULL : realloc(p, n); }
static inline void weft__free(void *p) { free(p); }
static inline void *weft__aligned(size_t align, size_t n)
{
    void *p = NULL;
    if (weft__fault())
        return NULL;
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
}
static inline char *weft__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = weft__malloc(n);
    return d ? memcpy(d, s, n) : NULL;
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
