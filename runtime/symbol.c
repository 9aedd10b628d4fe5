/*
 * Names for code addresses (task dumps, debug-mode warnings): dladdr, so a
 * symbol is found when it is dynamic (exported from a shared object, or
 * from a program linked with -rdynamic); otherwise the module and offset,
 * which addr2line turns into a file and line. Nothing here knows about
 * tasks. Safe from any thread (not from a signal handler: dladdr locks).
 *
 * dladdr walks every loaded object's symbol table, a few microseconds a
 * call; a dump of 10,000 tasks asks for the same few dozen addresses over
 * and over. So names are cached in a small table keyed by address, under a
 * mutex (dumps and warnings are rare; the table is never on a hot path).
 * Code addresses stay valid while their object is loaded; the cache is
 * cleared when the set of loaded objects changes (dl_iterate_phdr's adds
 * and subs counters), so an address reused after a dlclose is looked up anew.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define SYM_SLOTS 1024 /* a power of two */
#define SYM_LEN 160

typedef struct sym_slot {
    const void *pc; /* NULL: empty */
    char text[SYM_LEN];
} sym_slot;

static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;
static sym_slot *sym_tab;
static unsigned long long sym_adds, sym_subs;

static int phdr_counts(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned long long *c = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c[0] = info->dlpi_adds;
        c[1] = info->dlpi_subs;
    }
    return 1; /* the counters are the same in every entry: the first is enough */
}

static int lookup(const void *pc, char *buf, size_t n)
{
    Dl_info di;
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

int weft__symbolize(const void *pc, char *buf, size_t n)
{
    if (!pc)
        return snprintf(buf, n, "?");
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(phdr_counts, c);
    pthread_mutex_lock(&sym_lock);
    if (!sym_tab)
        sym_tab = weft__calloc(SYM_SLOTS, sizeof *sym_tab);
    if (sym_tab && (c[0] != sym_adds || c[1] != sym_subs)) {
        memset(sym_tab, 0, SYM_SLOTS * sizeof *sym_tab);
        sym_adds = c[0];
        sym_subs = c[1];
    }
    int len;
    if (sym_tab) {
        uintptr_t h = ((uintptr_t)pc * 0x9e3779b97f4a7c15ull) >> 32;
        for (unsigned i = 0; i < 8; i++) { /* a short probe; a full run replaces the first slot */
            sym_slot *s = &sym_tab[(h + i) & (SYM_SLOTS - 1)];
            if (s->pc == pc) {
                len = snprintf(buf, n, "%s", s->text);
                pthread_mutex_unlock(&sym_lock);
                return len;
            }
            if (!s->pc || i == 7) {
                if (s->pc)
                    s = &sym_tab[h & (SYM_SLOTS - 1)];
                s->pc = pc;
                lookup(pc, s->text, sizeof s->text);
                len = snprintf(buf, n, "%s", s->text);
                pthread_mutex_unlock(&sym_lock);
                return len;
            }
        }
    }
    pthread_mutex_unlock(&sym_lock);
    return lookup(pc, buf, n); /* no table (out of memory): uncached */
}

/* Outside the tools' view on purpose (see internal.h): ASan would flag a
 * read of another task's stack, TSan a read that races by design. */
__attribute__((noinline, no_sanitize_address, no_sanitize_thread)) uint64_t weft__peek_word(const void *p)
{
    return *(const volatile uint64_t *)p;
}
