/*
 * Names for code addresses (task dumps, debug-mode warnings): the function
 * from the loaded file's own symbol table (.symtab, read from the file once:
 * static and hidden functions included), else dladdr's dynamic symbol, else
 * the module and offset, which addr2line turns into a file and line.
 * Nothing here knows about tasks. Safe from any thread (not from a signal
 * handler: dladdr and the cache lock).
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
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* The main program's load address: dl_iterate_phdr's first entry. */
static int main_base_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(uintptr_t *)data = (uintptr_t)info->dlpi_addr;
    return 1;
}

static void *dlopen_main_base(void)
{
    uintptr_t b = 0;
    dl_iterate_phdr(main_base_cb, &b);
    return (void *)b;
}

static int phdr_counts(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned long long *c = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c[0] = info->dlpi_adds;
        c[1] = info->dlpi_subs;
    }
    return 1; /* the counters are the same in every entry: the first is enough */
}

/* ---- The symbol tables of the loaded files (.symtab, not only the
 * dynamic symbols dladdr sees): static functions and libweft's hidden ones
 * get their names too. A file is mapped once, read-only, and its function
 * symbols sorted by address; a file without .symtab (stripped) falls back
 * to dladdr. */
#define MAX_MODS 64
typedef struct fsym {
    uintptr_t lo, size;
    const char *name;
} fsym;
typedef struct module {
    uintptr_t base; /* dli_fbase */
    fsym *syms;
    size_t nsyms;
} module;
static module mods[MAX_MODS];
static unsigned nmods;

static int fsym_cmp(const void *a, const void *b)
{
    const fsym *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void module_load(module *m, const char *path, uintptr_t base)
{
    m->base = base;
    m->syms = NULL;
    m->nsyms = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && base == (uintptr_t)dlopen_main_base())
        fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(ElfW(Ehdr)))
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    const unsigned char *f = map;
    size_t len = (size_t)st.st_size;
    const ElfW(Ehdr) *eh = map;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > len)
        goto out;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(f + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum)
            continue;
        const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > len || strs->sh_offset + strs->sh_size > len)
            goto out;
        const ElfW(Sym) *sy = (const ElfW(Sym) *)(f + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof *sy, k = 0;
        fsym *v = weft__calloc(n ? n : 1, sizeof *v);
        if (!v)
            goto out;
        uintptr_t bias = eh->e_type == ET_DYN ? base : 0; /* a PIE or shared object is relocated */
        for (size_t j = 0; j < n; j++)
            if (ELF64_ST_TYPE(sy[j].st_info) == STT_FUNC && sy[j].st_size && sy[j].st_name < strs->sh_size)
                v[k++] = (fsym){bias + sy[j].st_value, sy[j].st_size, (const char *)f + strs->sh_offset + sy[j].st_name};
        qsort(v, k, sizeof *v, fsym_cmp);
        m->syms = v;
        m->nsyms = k;
        return; /* the map stays: the names point into it */
    }
out:
    munmap(map, len);
}

static const fsym *module_find(const module *m, uintptr_t pc)
{
    size_t lo = 0, hi = m->nsyms;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->syms[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const fsym *s = &m->syms[lo - 1];
    return pc - s->lo < s->size ? s : NULL;
}

/* Under sym_lock. */
static const fsym *symtab_find(const void *pc, const Dl_info *di)
{
    uintptr_t base = (uintptr_t)di->dli_fbase;
    module *m = NULL;
    for (unsigned i = 0; i < nmods; i++)
        if (mods[i].base == base)
            m = &mods[i];
    if (!m) {
        if (nmods == MAX_MODS)
            return NULL;
        m = &mods[nmods++];
        module_load(m, di->dli_fname, base);
    }
    return m->nsyms ? module_find(m, (uintptr_t)pc) : NULL;
}

static int lookup(const void *pc, char *buf, size_t n)
{
    Dl_info di;
    if (dladdr(pc, &di) && di.dli_fname) {
        const char *mod = strrchr(di.dli_fname, '/');
        mod = mod ? mod + 1 : di.dli_fname;
        if (!*mod)
            mod = program_invocation_short_name;
        const fsym *fs = symtab_find(pc, &di);
        if (fs)
            return snprintf(buf, n, "%s+0x%lx (%s)", fs->name, (unsigned long)((uintptr_t)pc - fs->lo), mod);
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
        if (c[1] != sym_subs) { /* something was unloaded: its file's table may be stale */
            for (unsigned i = 0; i < nmods; i++)
                weft__free(mods[i].syms); /* the maps stay: a name given out may point there */
            nmods = 0;
        }
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
    len = lookup(pc, buf, n); /* no table (out of memory): uncached */
    pthread_mutex_unlock(&sym_lock);
    return len;
}

/* Outside the tools' view on purpose (see internal.h): ASan would flag a
 * read of another task's stack, TSan a read that races by design. */
__attribute__((noinline, no_sanitize_address, no_sanitize_thread)) uint64_t weft__peek_word(const void *p)
{
    return *(const volatile uint64_t *)p;
}
