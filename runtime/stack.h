/*
 * Task stacks: carved from large mmap'd slabs, committed lazily, guarded, and
 * recycled through a per-thread cache. Knows nothing of tasks.
 */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum weft__guard_kind {
    WEFT_GUARD_MADVISE = 1, /* MADV_GUARD_INSTALL (Linux 6.13+): no extra mapping */
    WEFT_GUARD_PROT = 2,    /* PROT_NONE page: costs mappings, capped by vm.max_map_count */
    WEFT_GUARD_CANARY = 3,  /* a canary word checked at every switch, when neither is possible */
};

typedef struct weft__slab weft__slab;

typedef struct weft__stack {
    struct weft__stack *next; /* free-list link */
    char *lo;                 /* lowest usable byte (just above the guard) */
    size_t size;              /* usable bytes */
    weft__slab *slab;
    uint32_t uses;
    uint16_t color;           /* bytes left unused at the top; see weft__stack_top */
    uint8_t cls;
    uint8_t guard;            /* enum weft__guard_kind */
} weft__stack;

#define WEFT_STACK_CLASSES 17 /* 16 KiB .. 1 GiB */
#define WEFT_STACK_MIN_SHIFT 14

/* Process-wide-or-per-runtime pool: owns the slabs; shared by the caches. */
typedef struct weft__stack_pool {
    pthread_mutex_t lock;
    weft__slab *slabs[WEFT_STACK_CLASSES]; /* all slabs, per class */
    weft__stack *free[WEFT_STACK_CLASSES]; /* pages returned to the kernel */
    size_t nfree[WEFT_STACK_CLASSES];
    weft__stack *warm[WEFT_STACK_CLASSES]; /* pages kept */
    _Atomic size_t nwarm[WEFT_STACK_CLASSES]; /* written under lock, read without */
    size_t nslots[WEFT_STACK_CLASSES];      /* stacks of all slabs (under lock) */
    size_t peak[WEFT_STACK_CLASSES];        /* most in use at once since the last trim (under lock) */
    _Atomic int trim_more;                  /* the last trim stopped at WEFT_POOL_TRIM_MAX */
} weft__stack_pool;

/* Stacks per class the shared pool keeps with their pages once trimmed.
 * Tasks that start on one worker and end on another move stacks from cache
 * to cache through the pool; dropping their pages on the way costs a TLB
 * shootdown per spill and a page fault (~3.4 µs) per reuse. So spills keep
 * pages, and the excess over WEFT_POOL_WARM is returned to the kernel by
 * weft__stack_pool_trim, which workers call when they go idle (like
 * jemalloc's decay: memory is given back when nobody is waiting for the
 * CPU). Spills keep pages while the warm stacks number at most
 * WEFT_POOL_WARM_MAX or as many as were in use (taken out of the pool) at
 * once since the last trim, and return them at once past that: a program
 * running tasks by the ten thousand (issue 19: 1,000,000 sleepers of
 * 0-100 ms, over 10,000 at a time) reuses the stacks its finished tasks
 * left instead of faulting fresh pages in for each start, and the pool
 * never holds more warm pages than the tasks held at their peak (or
 * 4,096 stacks' worth). A trim keeps as many as are in use now, at least
 * WEFT_POOL_WARM, and starts watching the peak anew. 256 stacks hold at
 * most 256 x WEFT_STACK_WARM of memory, and usually one page each. */
#define WEFT_POOL_WARM 256u
#define WEFT_POOL_WARM_MAX 4096u

/* Per-thread (per-worker) cache: no lock, no system call on get/put. */
typedef struct weft__stack_cache {
    weft__stack_pool *pool;
    weft__stack *free[WEFT_STACK_CLASSES];
    uint32_t nfree[WEFT_STACK_CLASSES];
} weft__stack_cache;

void weft__stack_pool_init(weft__stack_pool *p);
/* Unmaps every slab. All stacks must be unused (or abandoned for good). */
void weft__stack_pool_destroy(weft__stack_pool *p);

void weft__stack_cache_init(weft__stack_cache *c, weft__stack_pool *p);
/* Gives every cached stack back to the pool. */
void weft__stack_cache_drain(weft__stack_cache *c);
/* Returns the pages of the pool's warm stacks beyond those in use, and
 * beyond WEFT_POOL_WARM, per class to the kernel: at most
 * WEFT_POOL_TRIM_MAX stacks per class a call, so that a worker going idle
 * after a million tasks ended is not held for seconds in madvise while its
 * timers come due. Later calls do the rest; `trim_more` says there is more
 * (a worker about to sleep then sleeps briefly, so that it comes back to
 * trim). Returns how many it returned; cheap when there is nothing to trim. */
#define WEFT_POOL_TRIM_MAX 256u
size_t weft__stack_pool_trim(weft__stack_pool *p);

/* Empties the cache without handing its stacks anywhere: only right before
 * weft__stack_pool_destroy, which unmaps them all anyway (returning pages
 * first would cost a madvise and a TLB shootdown per run of stacks). */
void weft__stack_cache_forget(weft__stack_cache *c);

/* Size class for a requested stack size (0 on a size above 1 GiB). */
int weft__stack_class(size_t bytes, unsigned *cls_out);

/* Where a task's first frame goes: the top of the stack less its color.
 * Without colors every task's first frames (and the registers it saves
 * when it suspends) sit at the same offset in their page, so with
 * thousands of suspended tasks they all compete for the 1/64 of the cache
 * sets that offset maps to, and resuming a task misses the cache. The
 * colors spread the frames over the top 2 KiB: a task that stays within
 * 2 KiB of stack still touches one page. */
static inline char *weft__stack_top(const weft__stack *s) { return s->lo + s->size - s->color; }

/* A stack of class cls; NULL when memory or mappings run out. */
weft__stack *weft__stack_get(weft__stack_cache *c, unsigned cls);
/* Returns a stack. deep_hint: the user went deeper than the warm top part, so
 * its lower pages go back to the kernel now. */
void weft__stack_put(weft__stack_cache *c, weft__stack *s, int deep_hint);

/* Canary protection (WEFT_GUARD_CANARY stacks): plant / verify. */
#define WEFT_STACK_CANARY 0x5745465463616e79ull /* "WEFTcany" */
void weft__stack_arm(weft__stack *s);
static inline int weft__stack_intact(const weft__stack *s)
{
    return __builtin_expect(s->guard != WEFT_GUARD_CANARY, 1) ||
           *(volatile const uint64_t *)s->lo == WEFT_STACK_CANARY;
}

/* Bytes kept warm at the top of a recycled stack. */
#define WEFT_STACK_WARM (16 * 1024)

/* Overflow reporting: a SIGSEGV handler on an alternate signal stack. The
 * describe callback, called inside the handler, returns the stack the
 * current thread runs on (NULL when none) and fills in who owns it. It must
 * be async-signal-safe (no stdio, locks or allocation; reading fields is
 * fine): the handler formats the report itself and writes it with write(2). */
typedef struct weft__stack_owner {
    const char *name; /* the task's name; NULL: unnamed */
    uint64_t id;      /* the task's id */
    unsigned worker;  /* the index of the worker running it */
} weft__stack_owner;
typedef const weft__stack *(*weft__stack_describe_fn)(weft__stack_owner *owner);
void weft__stack_overflow_handler_install(weft__stack_describe_fn describe);
/* Gives the calling thread an alternate signal stack (idempotent). */
int weft__stack_thread_init(void);
void weft__stack_thread_fini(void);
/* Report an overflow found by a canary check, then abort. */
void weft__stack_overflow_die(const weft__stack *s, const char *who) __attribute__((noreturn));

/* Which guard kind new slabs get on this kernel (for tests and README). */
int weft__stack_guard_mode(void);

#endif
