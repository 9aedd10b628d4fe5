/*
 * Thread-local accessors: the worker the calling thread runs (and through
 * it the running task, weft__cur_task), errno for weft's public header, and
 * what the stack-overflow handler reports about the task that overflowed.
 *
 * A task may resume on another thread, so a thread-local read before a
 * switch is stale after it: both accessors are calls that the compiler can
 * neither inline nor hoist (noinline, and an empty asm that launders the
 * value), also under LTO. Keep them so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>

static __thread weft__worker *tls_worker;

__attribute__((noinline)) weft__worker *weft__cur_worker(void)
{
    weft__worker *w = tls_worker;
    /* An empty volatile asm with w as an in/out operand: the compiler must
     * assume the value changed, so it cannot reuse a thread pointer or a
     * previous result across a suspension, even after inlining under LTO. */
    __asm__ __volatile__("" : "+r"(w));
    return w;
}

__attribute__((noinline)) int *weft_errno_location(void)
{
    int *p = __errno_location();
    __asm__ __volatile__("" : "+r"(p));
    return p;
}

/* The worker thread's own entry and exit (sched.c's weft__worker_main). */
void weft__set_cur_worker(weft__worker *w) { tls_worker = w; }

/* Runs in the SIGSEGV handler: only plain loads and stores (stack.c formats
 * the report with write(2)). */
static const weft__stack *describe_current(weft__stack_owner *o)
{
    weft__worker *w = tls_worker;
    if (!w || !w->current || !w->current->stack)
        return NULL;
    weft__task *t = w->current;
    *o = (weft__stack_owner){t->name, t->id, w->index};
    return t->stack;
}

void weft__overflow_report_install(void) { weft__stack_overflow_handler_install(describe_current); }
