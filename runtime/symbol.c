/*
 * Names for code addresses (task dumps, debug-mode warnings): dladdr, so a
 * symbol is found when it is dynamic (exported from a shared object, or
 * from a program linked with -rdynamic); otherwise the module and offset,
 * which addr2line turns into a file and line. Nothing here knows about
 * tasks. Safe from any thread (not from a signal handler: dladdr locks).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

int weft__symbolize(const void *pc, char *buf, size_t n)
{
    Dl_info di;
    if (!pc) {
        snprintf(buf, n, "?");
        return 0;
    }
    if (dladdr(pc, &di) && di.dli_fname) {
        const char *mod = strrchr(di.dli_fname, '/');
        mod = mod ? mod + 1 : di.dli_fname;
        if (di.dli_sname && di.dli_saddr)
            return snprintf(buf, n, "%s+0x%lx (%s)", di.dli_sname,
                            (unsigned long)((uintptr_t)pc - (uintptr_t)di.dli_saddr), mod);
        return snprintf(buf, n, "%s+0x%lx", mod, (unsigned long)((uintptr_t)pc - (uintptr_t)di.dli_fbase));
    }
    return snprintf(buf, n, "%p", pc);
}
