/*
 * Task stacks.
 *
 * Why slabs: a classic PROT_NONE guard page splits a mapping, so each guarded
 * stack costs two entries of vm.max_map_count (65,530 by default) and a process
 * tops out near 32,000 stacks. weft maps stacks in slabs of many slots; each
 * slot's lowest page is its guard. On Linux 6.13+ the guard is installed with
 * madvise(MADV_GUARD_INSTALL), which marks page-table entries and costs no
 * mapping, so a million stacks need only a few thousand mappings. On older
 * kernels guards are PROT_NONE pages while half the mapping budget lasts, and
 * beyond that a canary word at the bottom of the stack, checked at every
 * switch away from the task (detects an overflow late rather than never).
 *
 * Why a cache: mmap + guard + munmap costs ~7 µs and the first touch of each
 * page ~3.4 µs, so a task that exits hands its stack to the per-thread cache
 * and the next task reuses the warm top pages: no system call, no lock. The
 * cache spills half to the shared pool when full and refills in batches.
 *
 * Memory: only touched pages cost RSS. A stack coming back from deep use (the
 * caller says so, or every 4096th reuse as a backstop for uses nobody saw)
 * returns everything below its top WEFT_STACK_WARM bytes to the kernel with
 * MADV_DONTNEED. A stack entering the shared pool keeps its pages (its next
 * user may be on another worker), up to the peak of stacks in use (stack.h),
 * until an idle worker trims the pool to those in use now, at least
 * WEFT_POOL_WARM per class; the rest return all their pages. Slabs
 * are MADV_NOHUGEPAGE so transparent huge pages never turn a 256 KiB stack
 * into 2 MiB of RSS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lock.h"
#include "stack.h"
#include "alloc.h"
#include "weft_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_HAVE_VALGRIND 1
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define PAGE 4096u
#define SLAB_TARGET (32u << 20) /* bytes of address space per slab */
#define SLAB_MIN_SLOTS 4u
#define SLAB_MAX_SLOTS 256u

struct weft__slab {
    struct weft__slab *next;
    char *base;
    size_t bytes;
    unsigned nslots;
    unsigned prot_guards; /* PROT_NONE guards this slab holds against the budget */
#ifdef WEFT_HAVE_VALGRIND
    unsigned *vg_ids;
#endif
    weft__stack slots[];
};

static _Atomic int guard_mode;         /* 0 = not probed yet */
static _Atomic long prot_guard_budget = -1;
static _Atomic long prot_guards_used;

static long read_max_map_count(void)
{
    long v = 65530;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            v = strtol(buf, NULL, 10);
        }
        close(fd);
    }
    return v;
}

int weft__stack_guard_mode(void)
{
    int m = atomic_load_explicit(&guard_mode, memory_order_relaxed);
    if (m)
        return m;
    /* Probe on a scratch mapping: EINVAL means the kernel predates guards. */
    void *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m = WEFT_GUARD_PROT;
    if (p != MAP_FAILED) {
        if (madvise(p, PAGE, MADV_GUARD_INSTALL) == 0)
            m = WEFT_GUARD_MADVISE;
        munmap(p, 2 * PAGE);
    }
    if (getenv("WEFT_STACK_GUARD")) { /* testing hook: force a weaker mode */
        const char *e = getenv("WEFT_STACK_GUARD");
        if (e[0] == 'p')
            m = WEFT_GUARD_PROT;
        else if (e[0] == 'c')
            m = WEFT_GUARD_CANARY;
    }
    atomic_store(&guard_mode, m);
    long budget = read_max_map_count() / 2 - 1024;
    atomic_store(&prot_guard_budget, budget > 0 ? budget : 0);
    return m;
}

static int take_prot_budget(void)
{
    long used = atomic_fetch_add(&prot_guards_used, 1);
    if (used < atomic_load(&prot_guard_budget))
        return 1;
    atomic_fetch_sub(&prot_guards_used, 1);
    return 0;
}

int weft__stack_class(size_t bytes, unsigned *cls_out)
{
    unsigned cls = 0;
    size_t sz = (size_t)1 << WEFT_STACK_MIN_SHIFT;
    while (sz < bytes) {
        sz <<= 1;
        if (++cls >= WEFT_STACK_CLASSES)
            return -EINVAL;
    }
    *cls_out = cls;
    return 0;
}

static size_t class_bytes(unsigned cls) { return (size_t)1 << (WEFT_STACK_MIN_SHIFT + cls); }

static weft__slab *slab_new(unsigned cls)
{
    size_t slot = class_bytes(cls);
    unsigned n = (unsigned)(SLAB_TARGET / slot);
    if (n < SLAB_MIN_SLOTS)
        n = SLAB_MIN_SLOTS;
    if (n > SLAB_MAX_SLOTS)
        n = SLAB_MAX_SLOTS;
    weft__slab *sl = weft__calloc(1, sizeof *sl + n * sizeof(weft__stack));
    if (!sl)
        return NULL;
    size_t bytes = slot * n;
    char *base = weft__fault() ? MAP_FAILED
                               : mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        weft__free(sl);
        return NULL;
    }
    madvise(base, bytes, MADV_NOHUGEPAGE);
    sl->base = base;
    sl->bytes = bytes;
    sl->nslots = n;
#ifdef WEFT_HAVE_VALGRIND
    sl->vg_ids = weft__calloc(n, sizeof(unsigned));
    if (!sl->vg_ids) {
        munmap(base, bytes);
        weft__free(sl);
        return NULL;
    }
#endif
    int mode = weft__stack_guard_mode();
    for (unsigned i = 0; i < n; i++) {
        char *slot_lo = base + (size_t)i * slot;
        weft__stack *s = &sl->slots[i];
        s->lo = slot_lo + PAGE;
        s->size = slot - PAGE;
        s->slab = sl;
        s->cls = (uint8_t)cls;
        s->color = (uint16_t)((i % 32u) * 64u);
        s->guard = WEFT_GUARD_CANARY;
        if (mode == WEFT_GUARD_MADVISE && madvise(slot_lo, PAGE, MADV_GUARD_INSTALL) == 0)
            s->guard = WEFT_GUARD_MADVISE;
        else if (mode != WEFT_GUARD_CANARY && take_prot_budget()) {
            if (mprotect(slot_lo, PAGE, PROT_NONE) == 0) {
                s->guard = WEFT_GUARD_PROT;
                sl->prot_guards++;
            } else {
                atomic_fetch_sub(&prot_guards_used, 1);
            }
        }
#ifdef WEFT_HAVE_VALGRIND
        sl->vg_ids[i] = VALGRIND_STACK_REGISTER(s->lo, s->lo + s->size);
#endif
    }
    return sl;
}

static void slab_free(weft__slab *sl)
{
#ifdef WEFT_HAVE_VALGRIND
    for (unsigned i = 0; i < sl->nslots; i++)
        VALGRIND_STACK_DEREGISTER(sl->vg_ids[i]);
    weft__free(sl->vg_ids);
#endif
    munmap(sl->base, sl->bytes);
    atomic_fetch_sub(&prot_guards_used, (long)sl->prot_guards);
    weft__free(sl);
}

void weft__stack_pool_init(weft__stack_pool *p)
{
    memset(p, 0, sizeof *p);
    weft__lock_init(&p->lock);
}

void weft__stack_pool_destroy(weft__stack_pool *p)
{
    for (unsigned c = 0; c < WEFT_STACK_CLASSES; c++) {
        weft__slab *sl = p->slabs[c];
        while (sl) {
            weft__slab *next = sl->next;
            slab_free(sl);
            sl = next;
        }
        p->slabs[c] = NULL;
        p->free[c] = NULL;
        p->warm[c] = NULL;
    }
    pthread_mutex_destroy(&p->lock);
}

static unsigned cache_cap(unsigned cls)
{
    size_t cap = (16u << 20) / class_bytes(cls); /* at most 16 MiB of address space */
    if (cap > 64)
        cap = 64;
    if (cap < 2)
        cap = 2;
    return (unsigned)cap;
}

void weft__stack_cache_init(weft__stack_cache *c, weft__stack_pool *p)
{
    memset(c, 0, sizeof *c);
    c->pool = p;
}

/* qsort order for release_pages: stacks by address. */
static int by_address(const void *a, const void *b)
{
    const weft__stack *x = *(weft__stack *const *)a, *y = *(weft__stack *const *)b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Returns the pages of the given stacks to the kernel. Stacks that sit next
 * to each other in a slab (the common case: they were handed out in order)
 * go in one madvise over the whole run, guard pages included (DONTNEED
 * keeps guards installed with MADV_GUARD_INSTALL, and a PROT_NONE guard has
 * no pages to drop), so a burst of exits costs a few system calls, not one
 * per stack. */
static void release_pages(weft__stack **v, unsigned n)
{
    qsort(v, n, sizeof *v, by_address);
    for (unsigned i = 0; i < n;) {
        char *lo = v[i]->lo;
        char *hi = v[i]->lo + v[i]->size;
        unsigned j = i + 1;
        while (j < n && v[j]->slab == v[i]->slab && v[j]->lo == hi + PAGE) {
            hi = v[j]->lo + v[j]->size;
            j++;
        }
        madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
        i = j;
    }
}

/* Puts the k stacks in v (on no list) on the cold list of class cls,
 * returning their pages first; called without p->lock. */
static void cool(weft__stack_pool *p, unsigned cls, weft__stack **v, unsigned k)
{
    release_pages(v, k);
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < k; i++) {
        v[i]->next = p->free[cls];
        p->free[cls] = v[i];
    }
    p->nfree[cls] += k;
    pthread_mutex_unlock(&p->lock);
}

/* Stacks of class cls in use (lock held): neither warm nor cold in the
 * pool, so held by tasks or in a worker's cache. `warm` is the warm count
 * to judge by. */
static size_t in_use(const weft__stack_pool *p, unsigned cls, size_t warm)
{
    WEFT__ASSERT(p->nslots[cls] >= warm + p->nfree[cls]);
    return p->nslots[cls] - warm - p->nfree[cls];
}

/* Moves n stacks (all of them if n is 0) of class cls from the cache to the
 * pool's warm list, pages and all, unless that list is past its cap (the
 * peak in use since the last trim, at least WEFT_POOL_WARM_MAX): then their
 * pages go back to the kernel at once. */
static void spill(weft__stack_cache *c, unsigned cls, unsigned n)
{
    weft__stack_pool *p = c->pool;
    weft__stack *v[64];
    while (c->free[cls]) {
        unsigned k = 0;
        while (c->free[cls] && k < 64 && (n == 0 || k < n)) {
            weft__stack *s = c->free[cls];
            c->free[cls] = s->next;
            c->nfree[cls]--;
            v[k++] = s;
        }
        if (!k)
            return;
        pthread_mutex_lock(&p->lock);
        unsigned keep = 0;
        size_t warm = atomic_load_explicit(&p->nwarm[cls], memory_order_relaxed);
        /* As many as were in use at once since the last trim: their pages
         * were all in use then, so keeping them adds nothing to the peak. */
        size_t cap = p->peak[cls] > WEFT_POOL_WARM_MAX ? p->peak[cls] : WEFT_POOL_WARM_MAX;
        while (keep < k && warm + keep < cap) {
            v[keep]->next = p->warm[cls];
            p->warm[cls] = v[keep++];
        }
        atomic_store_explicit(&p->nwarm[cls], warm + keep, memory_order_relaxed);
        pthread_mutex_unlock(&p->lock);
        if (keep < k)
            cool(p, cls, v + keep, k - keep);
        if (n) {
            n -= k;
            if (!n)
                return;
        }
    }
}

size_t weft__stack_pool_trim(weft__stack_pool *p)
{
    size_t cooled = 0;
    int more = 0;
    for (unsigned cls = 0; cls < WEFT_STACK_CLASSES; cls++) {
        size_t done = 0;
        while (done < WEFT_POOL_TRIM_MAX &&
               atomic_load_explicit(&p->nwarm[cls], memory_order_relaxed) > WEFT_POOL_WARM) {
            weft__stack *v[64];
            unsigned k = 0;
            pthread_mutex_lock(&p->lock);
            size_t warm = atomic_load_explicit(&p->nwarm[cls], memory_order_relaxed);
            size_t used = in_use(p, cls, warm);
            size_t keep = used > WEFT_POOL_WARM ? used : WEFT_POOL_WARM;
            p->peak[cls] = used; /* a new period of watching the peak */
            while (k < 64 && warm - k > keep) {
                v[k] = p->warm[cls];
                p->warm[cls] = v[k]->next;
                k++;
            }
            atomic_store_explicit(&p->nwarm[cls], warm - k, memory_order_relaxed);
            pthread_mutex_unlock(&p->lock);
            if (!k)
                break;
            cool(p, cls, v, k);
            done += k;
        }
        more |= done >= WEFT_POOL_TRIM_MAX;
        cooled += done;
    }
    atomic_store_explicit(&p->trim_more, more, memory_order_relaxed);
    return cooled;
}

void weft__stack_cache_drain(weft__stack_cache *c)
{
    for (unsigned cls = 0; cls < WEFT_STACK_CLASSES; cls++)
        spill(c, cls, 0);
}

void weft__stack_cache_forget(weft__stack_cache *c)
{
    weft__stack_pool *p = c->pool;
    memset(c, 0, sizeof *c);
    c->pool = p;
}

/* A stack from the pool (lock held): warm ones first. */
static weft__stack *pool_pop(weft__stack_pool *p, unsigned cls)
{
    weft__stack *s = p->warm[cls];
    if (s) {
        p->warm[cls] = s->next;
        atomic_store_explicit(&p->nwarm[cls],
                              atomic_load_explicit(&p->nwarm[cls], memory_order_relaxed) - 1,
                              memory_order_relaxed);
        return s;
    }
    s = p->free[cls];
    if (s) {
        p->free[cls] = s->next;
        p->nfree[cls]--;
    }
    return s;
}

weft__stack *weft__stack_get(weft__stack_cache *c, unsigned cls)
{
    weft__stack *s = c->free[cls];
    if (weft__likely(s != NULL)) {
        c->free[cls] = s->next;
        c->nfree[cls]--;
        s->next = NULL;
        return s;
    }
    /* Refill half a cache's worth from the pool, making a slab if needed. */
    weft__stack_pool *p = c->pool;
    unsigned want = cache_cap(cls) / 2;
    pthread_mutex_lock(&p->lock);
    if (!p->warm[cls] && !p->free[cls]) {
        /* Making a slab costs a mapping and a guard per slot (hundreds of
         * microseconds): do it without the lock, so other workers refilling
         * or spilling are not held up behind it. */
        pthread_mutex_unlock(&p->lock);
        weft__slab *sl = slab_new(cls);
        if (!sl)
            return NULL;
        pthread_mutex_lock(&p->lock);
        sl->next = p->slabs[cls];
        p->slabs[cls] = sl;
        for (unsigned i = sl->nslots; i-- > 0;) {
            sl->slots[i].next = p->free[cls];
            p->free[cls] = &sl->slots[i];
        }
        p->nfree[cls] += sl->nslots;
        p->nslots[cls] += sl->nslots;
    }
    s = pool_pop(p, cls);
    while (want-- > 1) {
        weft__stack *x = pool_pop(p, cls);
        if (!x)
            break;
        x->next = c->free[cls];
        c->free[cls] = x;
        c->nfree[cls]++;
    }
    size_t used = in_use(p, cls, atomic_load_explicit(&p->nwarm[cls], memory_order_relaxed));
    if (used > p->peak[cls])
        p->peak[cls] = used;
    pthread_mutex_unlock(&p->lock);
    s->next = NULL;
    return s;
}

void weft__stack_put(weft__stack_cache *c, weft__stack *s, int deep_hint)
{
    unsigned cls = s->cls;
    /* The backstop for deep use nobody saw (recursion that returned before
     * any switch) is rare on purpose: madvise on a stack other threads map
     * too costs a TLB shootdown on every core. */
    if (weft__unlikely(deep_hint || (++s->uses & 4095) == 0) && s->size > WEFT_STACK_WARM)
        madvise(s->lo, s->size - WEFT_STACK_WARM, MADV_DONTNEED);
    s->next = c->free[cls];
    c->free[cls] = s;
    if (weft__unlikely(++c->nfree[cls] > cache_cap(cls)))
        spill(c, cls, cache_cap(cls) / 2);
}

void weft__stack_arm(weft__stack *s)
{
    if (s->guard == WEFT_GUARD_CANARY)
        *(volatile uint64_t *)s->lo = WEFT_STACK_CANARY;
}

/* ------------------------------------------------------------ overflow */

static weft__stack_describe_fn describe_fn;
static struct sigaction old_segv, old_bus;
static __thread void *altstack;

typedef struct {
    char b[512];
    size_t n;
} msgbuf;

static void put_s(msgbuf *m, const char *s)
{
    while (*s && m->n < sizeof m->b - 1)
        m->b[m->n++] = *s++;
}

/* Our own integer formatting: the report is written from a signal handler,
 * where snprintf is not async-signal-safe. */
static void put_u(msgbuf *m, uint64_t v, unsigned base)
{
    char tmp[32];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (base == 16)
        put_s(m, "0x");
    while (i > 0 && m->n < sizeof m->b - 1)
        m->b[m->n++] = tmp[--i];
}

/* "task 'NAME' (id N) on worker W" */
static void put_owner(msgbuf *m, const weft__stack_owner *o)
{
    put_s(m, "task '");
    put_s(m, o->name ? o->name : "unnamed");
    put_s(m, "' (id ");
    put_u(m, o->id, 10);
    put_s(m, ") on worker ");
    put_u(m, o->worker, 10);
}

/* Writes the report with write(2) alone: async-signal-safe. The owner is
 * named by who or, when who is NULL, by owner. */
static void report(const weft__stack *s, const char *who, const weft__stack_owner *owner,
                   const void *addr)
{
    msgbuf m = {.n = 0};
    put_s(&m, "weft: stack overflow in ");
    if (who)
        put_s(&m, who);
    else
        put_owner(&m, owner);
    put_s(&m, ": ");
    if (addr) {
        put_s(&m, "fault at ");
        put_u(&m, (uintptr_t)addr, 16);
        put_s(&m, " in the guard page below the stack [");
    } else {
        put_s(&m, "canary at the bottom of the stack [");
    }
    put_u(&m, (uintptr_t)s->lo, 16);
    put_s(&m, ", ");
    put_u(&m, (uintptr_t)(s->lo + s->size), 16);
    put_s(&m, ") of ");
    put_u(&m, (s->size + PAGE) / 1024, 10);
    put_s(&m, " KiB");
    if (!addr)
        put_s(&m, " overwritten");
    put_s(&m, "; give the task a larger stack (weft_spawn_opts.stack_size or weft_config.stack_size)\n");
    ssize_t r = write(2, m.b, m.n);
    (void)r;
}

void weft__stack_overflow_die(const weft__stack *s, const char *who)
{
    report(s, who, NULL, NULL);
    abort();
}

/* Everything here is async-signal-safe: describe_fn only reads, report
 * formats by hand and calls write(2), then signal(2) and abort(3). */
static void on_segv(int sig, siginfo_t *si, void *uc)
{
    weft__stack_owner owner = {0};
    const weft__stack *s = describe_fn ? describe_fn(&owner) : NULL;
    char *addr = si->si_addr;
    /* The guard page, or a large frame that jumped a little past it. */
    if (s && addr < s->lo + 256 && addr >= s->lo - 64 * 1024) {
        report(s, NULL, &owner, addr);
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not ours: hand over to whoever was there before, or die the usual way. */
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && old->sa_handler) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL); /* the faulting instruction runs again and kills us */
}

void weft__stack_overflow_handler_install(weft__stack_describe_fn describe)
{
    static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
    static int installed;
    pthread_mutex_lock(&once_lock);
    describe_fn = describe;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
        installed = 1;
    }
    pthread_mutex_unlock(&once_lock);
}

#define ALTSTACK_SIZE (64 * 1024)

int weft__stack_thread_init(void)
{
    if (altstack)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread already has one (its owner's) */
    void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = {.ss_sp = p, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(p, ALTSTACK_SIZE);
        return -errno;
    }
    altstack = p;
    return 0;
}

void weft__stack_thread_fini(void)
{
    if (!altstack)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(altstack, ALTSTACK_SIZE);
    altstack = NULL;
}
