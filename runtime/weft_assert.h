/*
 * WEFT__ASSERT(cond): checks an invariant that a comment states. (Not named
 * assert.h: programs built with -Iruntime would find it for <assert.h>.)
 *
 * Compiled in when WEFT_DEBUG_ASSERTS is defined (the sanitizer and valgrind
 * lanes: make test-asan, test-tsan, valgrind pass ASSERTS=-DWEFT_DEBUG_ASSERTS);
 * in the release build (plain make) it is type-checked and generates no code.
 * A failed check writes one line to stderr with write(2) (so it may also
 * fail inside a signal handler) and aborts.
 */
#ifndef WEFT_WEFT_ASSERT_H
#define WEFT_WEFT_ASSERT_H

#ifdef WEFT_DEBUG_ASSERTS
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void weft__assert_write(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static __attribute__((unused, noreturn, cold, noinline)) void weft__assert_fail(const char *what, const char *file,
                                                                             int line)
{
    char num[12], *p = num + sizeof num;
    *--p = 0;
    unsigned v = line > 0 ? (unsigned)line : 0;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) && p > num);
    weft__assert_write("weft: assertion failed: ");
    weft__assert_write(what);
    weft__assert_write(" (");
    weft__assert_write(file);
    weft__assert_write(":");
    weft__assert_write(p);
    weft__assert_write(")\n");
    abort();
}

#define WEFT__ASSERT(cond) (__builtin_expect(!!(cond), 1) ? (void)0 : weft__assert_fail(#cond, __FILE__, __LINE__))
#else
#define WEFT__ASSERT(cond) ((void)sizeof(!(cond)))
#endif

#endif
