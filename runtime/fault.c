/*
 * Allocation-failure injection for tests/test_faults.c (alloc.h's
 * weft__fault), compiled in only with -DWEFT_FAULT_INJECT; the release
 * build's object is empty. It sits at the bottom of the layers: every file
 * may allocate, and this one calls nothing.
 *
 * One process-wide counter: the test arms "fail the nth allocation from now"
 * and drives one public call, from one task on a one-worker runtime, so the
 * order of allocations is the call's own. Relaxed atomics: the count is
 * exact even when a worker and the test's thread allocate at once; which of
 * them gets the failure is then a matter of timing, and the test accepts a
 * failure anywhere as long as every call reports it.
 */
#include "alloc.h"

#ifdef WEFT_FAULT_INJECT
#include <stdatomic.h>
#include <stdio.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

static _Atomic long fault_seen;  /* allocations since the last arm */
static _Atomic long fault_nth;   /* the one to fail; 0: none */
static _Atomic int fault_hits;

int weft__fault(void)
{
    long n = atomic_fetch_add_explicit(&fault_seen, 1, memory_order_relaxed) + 1;
    if (n != atomic_load_explicit(&fault_nth, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&fault_hits, 1, memory_order_relaxed);
    /* WEFT_FAULT_TRACE=1: where the failed allocation was (to find the
     * path that swallowed or misreported it). */
    if (getenv("WEFT_FAULT_TRACE")) {
        fprintf(stderr, "weft: allocation %ld failed here:\n", n);
#if defined(__SANITIZE_ADDRESS__)
        __sanitizer_print_stack_trace();
#endif
    }
    return 1;
}

void weft__fault_arm(long nth)
{
    atomic_store(&fault_nth, 0);
    atomic_store(&fault_seen, 0);
    atomic_store(&fault_hits, 0);
    atomic_store(&fault_nth, nth);
}

long weft__fault_count(void) { return atomic_load(&fault_seen); }
int weft__fault_hit(void) { return atomic_load(&fault_hits) > 0; }
#endif
