/*
 * Seeing inside a running runtime: task dumps (weft_runtime_dump, and on
 * SIGQUIT when enabled), debug mode's switch and its check at
 * weft_runtime_free for handles never joined nor detached, and the list of
 * runtimes that tools/weft-gdb.py reads. The long-slice warning lives in
 * rescue.c, with the peer pass it rides on; the metrics in metrics.c.
 *
 * ---------------------------------------------------------------------------
 * The dump protocol: walking a suspended stack while the workers run
 *
 * A parked task's stack must not be resumed while the dump reads it. The
 * dump holds the task through its state word (task_state.h's state_hold and
 * state_unhold), so no hot path checks anything new:
 *  1. hold: PARKED(seq) -> RUNNING(seq). It succeeds only on a task parked
 *     now; its acquire pairs with the release of the worker's state_park
 *     after the switch, so the saved context, the stack and the wait note
 *     are visible. To every waker the task is now "between registering and
 *     parking": a wake (token == seq) makes it NOTIFIED and queues nothing,
 *     a stale one does nothing; so no worker can resume it.
 *  2. copy: the walk (libunwind from the saved registers, below) reads the
 *     stack and copies return addresses; the note and name are copied.
 *  3. unhold: RUNNING -> PARKED, or, when a wake came meanwhile, NOTIFIED ->
 *     QUEUED and the dump queues it (weft__schedule), as after_switch does.
 * Only that one task is held, for the walk only (microseconds); symbolizing
 * and writing come after the unhold. Tasks queued or running are not held:
 * their state, id, function, spawn site and worker are read as snapshots
 * (weft__peek_word) between two reads of the state word, and shown only if
 * the word did not move meanwhile; without a name (its memory belongs to
 * the block's current life) and without a backtrace.
 *
 * Backtraces: libunwind (Debian libunwind-dev), so the library keeps its
 * frame-pointer-free code. It is loaded with dlopen on the first dump that
 * needs it, not linked: a program linking -lunwind would take libunwind's
 * _Unwind_* for its own exceptions and backtrace(3); this way nothing
 * changes for a program that never dumps. A build without the header, or a
 * machine without libunwind.so.8, dumps without backtraces and says why.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"

#if defined(WEFT_HAVE_LIBUNWIND) && defined(__x86_64__)
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define WALK_LIBUNWIND 1
#endif
/* libunwind's unw_step probes each page it reads (mincore, or a write(2)
 * of the address to a pipe), page start included: below a suspended
 * task's stack pointer memcheck counts the page as unaddressable, and
 * reports the probe. The probe is libunwind's own check, not a read, so
 * error reporting is off on this thread for the walk only. */
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#else
#define QUIET_BEGIN() ((void)0)
#define QUIET_END() ((void)0)
#endif

#define DUMP_FRAMES 32

/* The runtimes alive in this process: SIGQUIT dumps those that asked
 * (dump_signal), and tools/weft-gdb.py reads this array by name from a live
 * process or a core file. */
#define MAX_RTS 64
weft_runtime *weft__runtimes[MAX_RTS] __attribute__((used));
static pthread_mutex_t rts_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct snap {
    uint64_t id;
    const void *fn, *site;
    unsigned st;
    int worker;
    int external;
    int held;
    int noted;
    int changing;
    uint8_t kind, ev;
    uint64_t obj, tick;
    char name[32];
    int nframes;
    const void *pc[DUMP_FRAMES];
} snap;

/* ------------------------------------------------------------ the walk */

#ifdef WALK_LIBUNWIND
#define STR_(x) #x
#define STR(x) STR_(x)
static struct {
    int (*init)(unw_cursor_t *, unw_context_t *);
    int (*step)(unw_cursor_t *);
    int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
    int ok;
} U;
static pthread_once_t u_once = PTHREAD_ONCE_INIT;

static void u_load(void)
{
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    *(void **)&U.init = dlsym(h, STR(unw_init_local));
    *(void **)&U.step = dlsym(h, STR(unw_step));
    *(void **)&U.get_reg = dlsym(h, STR(unw_get_reg));
    U.ok = U.init && U.step && U.get_reg;
    /* The global cache takes a lock with every signal blocked, two
     * sigprocmask calls per frame: per-thread caching has no lock. */
    int (*policy)(unw_addr_space_t, unw_caching_policy_t);
    *(void **)&policy = dlsym(h, STR(unw_set_caching_policy));
    unw_addr_space_t *local = dlsym(h, STR(unw_local_addr_space));
    if (U.ok && policy && local)
        policy(*local, UNW_CACHE_PER_THREAD);
}
#endif

/* Why a dump has no backtraces, or NULL when it has them. */
static const char *walk_missing(void)
{
#ifdef WALK_LIBUNWIND
    pthread_once(&u_once, u_load);
    return U.ok ? NULL : "libunwind.so.8 could not be loaded (Debian package libunwind8)";
#elif defined(__x86_64__)
    return "weft was built without libunwind (install libunwind-dev and rebuild)";
#else
    return "backtraces are walked on x86-64 only so far";
#endif
}

/* Step 2, under the hold: libunwind from the registers the switch saved
 * (switch_x86_64.S's frame: r15 at sp+8 ... rbp at sp+48, the return
 * address at sp+56; the caller's rsp is sp+64). The task's code resumes at
 * that return address with those callee-saved registers, which is all the
 * unwinder needs (the rest are dead across the call). The walk stops at the
 * trampoline (its CFI marks the outermost frame) or when the stack pointer
 * leaves the task's stack.
 *
 * libunwind costs microseconds a frame (it blocks signals around each
 * lookup of the unwind tables), too slow for 10,000 tasks in 100 ms, and
 * suspended tasks share a handful of call chains. So each walk also
 * records, per return address, how far the caller's stack pointer is above
 * the callee's (the frame's size: constant at a call site unless the
 * function has a variable-sized frame); later walks follow those deltas,
 * reading each return address at sp + delta - 8, and fall back to libunwind
 * at the first address not in the table. One walk in CHECK_EVERY is done by
 * libunwind anyway and compared: an address whose delta disagrees (alloca,
 * a VLA) is marked, and always goes to libunwind. Every read is bounded by
 * the task's stack, so a wrong delta can give a wrong frame, never a fault.
 * The table is dump_lock's (dumps are serialized). */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef WALK_LIBUNWIND
#define SHAPE_SLOTS 4096 /* a power of two */
#define CHECK_EVERY 64
enum { SHAPE_EMPTY = 0, SHAPE_STEP, SHAPE_LAST, SHAPE_VARIES };
typedef struct shape {
    uintptr_t pc;
    uint32_t delta;
    uint8_t kind;
} shape;
static shape *shapes;
static unsigned walks;

static shape *shape_slot(uintptr_t pc, int insert)
{
    if (!shapes && (!insert || !(shapes = weft__calloc(SHAPE_SLOTS, sizeof *shapes))))
        return NULL;
    uintptr_t h = (pc * 0x9e3779b97f4a7c15ull) >> 40;
    for (unsigned i = 0; i < 16; i++) {
        shape *e = &shapes[(h + i) & (SHAPE_SLOTS - 1)];
        if (e->pc == pc)
            return e;
        if (e->kind == SHAPE_EMPTY)
            return insert ? e : NULL;
    }
    return NULL; /* full around here: uncached */
}

static void shape_learn(uintptr_t pc, uintptr_t delta, int last)
{
    shape *e = shape_slot(pc, 1);
    if (!e || e->kind == SHAPE_VARIES)
        return;
    unsigned kind = last ? SHAPE_LAST : SHAPE_STEP;
    if (e->kind != SHAPE_EMPTY && (e->kind != kind || e->delta != delta)) {
        e->kind = SHAPE_VARIES;
        return;
    }
    e->pc = pc;
    e->delta = (uint32_t)delta;
    e->kind = (uint8_t)kind;
}

/* The walk by the table; -1 when an address is not in it. */
__attribute__((no_sanitize_address)) static int walk_cached(uintptr_t pc, uintptr_t sp, uintptr_t lo,
                                                            uintptr_t hi, const void **out, int max)
{
    int n = 0;
    for (;;) {
        shape *e = shape_slot(pc, 0);
        if (!e || (e->kind != SHAPE_STEP && e->kind != SHAPE_LAST))
            return -1;
        out[n++] = (const void *)pc;
        if (e->kind == SHAPE_LAST || n == max)
            return n;
        uintptr_t nsp = sp + e->delta;
        if (nsp < lo + 8 || nsp > hi || (nsp & 7))
            return n;
        pc = *(const uintptr_t *)(nsp - 8);
        sp = nsp;
        if (!pc)
            return n;
    }
}

#endif /* WALK_LIBUNWIND */

__attribute__((noinline, no_sanitize_address)) static int walk_frames(weft__task *t, const void **pc, int max)
{
#ifdef WALK_LIBUNWIND
    weft__stack *st = t->stack;
    if (!st || !U.ok)
        return 0;
    uintptr_t sp = (uintptr_t)t->ctx.sp, lo = (uintptr_t)st->lo, hi = (uintptr_t)weft__stack_top(st);
    if (sp < lo || sp + 64 > hi)
        return 0;
    const uint64_t *f = (const uint64_t *)sp;
    int check = ++walks % CHECK_EVERY == 0;
    if (!check) {
        int n = walk_cached((uintptr_t)f[7], sp + 64, lo, hi, pc, max);
        if (n >= 0)
            return n;
    }
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    greg_t *g = uc.uc_mcontext.gregs;
    g[REG_RIP] = (greg_t)f[7];
    g[REG_RSP] = (greg_t)(sp + 64);
    g[REG_RBP] = (greg_t)f[6];
    g[REG_RBX] = (greg_t)f[5];
    g[REG_R12] = (greg_t)f[4];
    g[REG_R13] = (greg_t)f[3];
    g[REG_R14] = (greg_t)f[2];
    g[REG_R15] = (greg_t)f[1];
    unw_cursor_t c;
    int n = 0;
    unw_word_t ip = 0, rsp = 0;
    QUIET_BEGIN();
    if (U.init(&c, (unw_context_t *)&uc) < 0 || U.get_reg(&c, UNW_REG_IP, &ip) < 0 ||
        U.get_reg(&c, UNW_REG_SP, &rsp) < 0) {
        QUIET_END();
        return 0;
    }
    while (ip && rsp >= lo && rsp <= hi) {
        pc[n++] = (const void *)ip;
        if (n == max)
            break;
        int more = U.step(&c) > 0;
        unw_word_t nip = 0, nrsp = 0;
        if (more && (U.get_reg(&c, UNW_REG_IP, &nip) < 0 || U.get_reg(&c, UNW_REG_SP, &nrsp) < 0))
            more = 0;
        /* Learnt only where the caller's return address sits where the
         * table's walk will look for it. */
        if (!more || !nip || nrsp < lo || nrsp > hi)
            shape_learn(ip, 0, 1);
        else if (nrsp > rsp && nrsp - rsp < (1u << 30) && *(const uintptr_t *)(nrsp - 8) == nip)
            shape_learn(ip, nrsp - rsp, 0);
        if (!more)
            break;
        ip = nip;
        rsp = nrsp;
    }
    QUIET_END();
    return n;
#else
    (void)t;
    (void)pc;
    (void)max;
    return 0;
#endif
}

/* ------------------------------------------------------------ snapshots */

static int worker_index(const weft__worker *w) { return w ? (int)w->index : -1; }

/* A byte of a block through the aligned word that holds it (little-endian). */
static uint8_t peek_u8(const uint8_t *p)
{
    uintptr_t a = (uintptr_t)p;
    return (uint8_t)(weft__peek_word((const void *)(a & ~(uintptr_t)7)) >> (8 * (a & 7)));
}

static void take_snap(weft_runtime *rt, weft__task *t, snap *o)
{
    memset(o, 0, sizeof o->name + offsetof(snap, name));
    o->nframes = 0;
    uint64_t seq;
    if (weft__state_hold(t, &seq)) {
        /* Held: the block cannot change life, and what the task wrote
         * before parking is visible (the hold's acquire). */
        o->held = 1;
        o->st = T_PARKED;
        o->id = t->id;
        o->fn = (const void *)t->fn;
        o->site = t->obs.site;
        o->worker = worker_index(t->worker);
        if (t->name)
            snprintf(o->name, sizeof o->name, "%s", t->name);
        uint64_t note = t->obs.wait;
        o->noted = (note >> 16) == (seq & ((UINT64_C(1) << 48) - 1)) && (note & 0xff) != WEFT__WAIT_NONE;
        o->kind = (uint8_t)(note & 0xff);
        o->ev = (uint8_t)(note >> 8);
        o->obj = t->obs.wait_obj;
        o->tick = t->obs.wait_tick;
        o->nframes = walk_frames(t, o->pc, DUMP_FRAMES);
        if (weft__state_unhold(t, seq))
            weft__schedule(rt, t); /* woken while held */
        return;
    }
    /* Not parked: a snapshot, kept only if the state word stayed put. */
    uint64_t s1 = atomic_load_explicit(&t->state, memory_order_acquire);
    o->id = weft__peek_word(&t->id);
    o->fn = (const void *)(uintptr_t)weft__peek_word(&t->fn);
    o->site = (const void *)(uintptr_t)weft__peek_word(&t->obs.site);
    const weft__worker *w = (const weft__worker *)(uintptr_t)weft__peek_word(&t->worker);
    o->external = peek_u8(&t->stack_cls) == WEFT_EXTERNAL_CLS;
    weft__fence(); /* orders the snapshot before the second read (a full fence: TSan has no acquire fence) */
    uint64_t s2 = atomic_load_explicit(&t->state, memory_order_relaxed);
    o->st = T_ST(s2);
    o->changing = s1 != s2;
    o->worker = w ? worker_index(w) : -1;
}

static const char *kind_name[WEFT__WAIT_KINDS] = {
    [WEFT__WAIT_NONE] = "other", [WEFT__WAIT_FD] = "fd", [WEFT__WAIT_SLEEP] = "sleep",
    [WEFT__WAIT_JOIN] = "join", [WEFT__WAIT_CHAN_SEND] = "channel send", [WEFT__WAIT_CHAN_RECV] = "channel receive",
    [WEFT__WAIT_SELECT] = "select", [WEFT__WAIT_MUTEX] = "mutex", [WEFT__WAIT_COND] = "condition",
    [WEFT__WAIT_SEM] = "semaphore", [WEFT__WAIT_EVENT] = "event", [WEFT__WAIT_WG] = "wait group",
    [WEFT__WAIT_ONCE] = "once", [WEFT__WAIT_GROUP] = "group", [WEFT__WAIT_BLOCKING] = "blocking job",
    [WEFT__WAIT_SIGNAL] = "signal",
};

static void print_state(const snap *s, weft_runtime *rt, uint64_t now_tick, int64_t now_ns, FILE *out)
{
    (void)rt;
    if (s->external) {
        fprintf(out, "  state: blocking/compute job (runs on a pool thread, or queued for one)\n");
        return;
    }
    if (!s->held) {
        if (s->st == T_QUEUED)
            fprintf(out, "  state: queued (runnable); last on worker %d\n", s->worker);
        else if (s->st == T_PARKED)
            fprintf(out, "  state: parked (changing as the dump looked)\n");
        else
            fprintf(out, "  state: running on worker %d\n", s->worker);
        return;
    }
    char what[160];
    unsigned k = s->noted ? s->kind : WEFT__WAIT_NONE;
    switch (k) {
    case WEFT__WAIT_FD:
        snprintf(what, sizeof what, "waiting on fd %llu to %s", (unsigned long long)s->obj,
                 (s->ev & WEFT_READ) && (s->ev & WEFT_WRITE) ? "read or write"
                 : (s->ev & WEFT_WRITE)                      ? "write"
                                                             : "read");
        break;
    case WEFT__WAIT_SLEEP:
        snprintf(what, sizeof what, "sleeping until %.3f s since start (%.1f ms from now)",
                 (double)((int64_t)s->obj - rt->start_ns) / 1e9, (double)((int64_t)s->obj - now_ns) / 1e6);
        break;
    case WEFT__WAIT_JOIN:
        if (s->obj == UINT64_MAX)
            snprintf(what, sizeof what, "joining any of %u tasks", (unsigned)s->ev);
        else
            snprintf(what, sizeof what, "joining task %llu%s", (unsigned long long)s->obj,
                     (s->ev & 1) ? " (a blocking/compute job)" : ""); /* ev: the joinee is a job */
        break;
    case WEFT__WAIT_BLOCKING:
        snprintf(what, sizeof what, "waiting for blocking job %llu", (unsigned long long)s->obj);
        break;
    case WEFT__WAIT_SELECT:
        snprintf(what, sizeof what, "in select on %llu channel cases", (unsigned long long)s->obj);
        break;
    case WEFT__WAIT_SIGNAL:
        snprintf(what, sizeof what, "waiting for a signal");
        break;
    case WEFT__WAIT_NONE:
        snprintf(what, sizeof what, "waiting (other)");
        break;
    default:
        snprintf(what, sizeof what, "waiting on %s %#llx", kind_name[k], (unsigned long long)s->obj);
        break;
    }
    if (k != WEFT__WAIT_NONE)
        fprintf(out, "  state: %s, for %llu ms; last on worker %d\n", what,
                (unsigned long long)(now_tick > s->tick ? now_tick - s->tick : 0), s->worker);
    else
        fprintf(out, "  state: %s; last on worker %d\n", what, s->worker);
}

static void print_snap(const snap *s, weft_runtime *rt, uint64_t now_tick, int64_t now_ns, const char *no_bt,
                       FILE *out)
{
    char buf[256];
    if (s->changing) {
        fprintf(out, "task (changing as the dump looked: it was spawned, ran or finished)\n");
        return;
    }
    weft__symbolize(s->fn, buf, sizeof buf);
    fprintf(out, "task %llu%s%s%s: %s\n", (unsigned long long)s->id, s->name[0] ? " \"" : "", s->name,
            s->name[0] ? "\"" : "", buf);
    print_state(s, rt, now_tick, now_ns, out);
    if (s->site) {
        weft__symbolize((const char *)s->site - 1, buf, sizeof buf);
        fprintf(out, "  spawned at: %s\n", buf);
    }
    if (s->held && no_bt)
        fprintf(out, "  (no backtrace: %s)\n", no_bt);
    for (int i = 0; i < s->nframes; i++) {
        weft__symbolize((const char *)s->pc[i] - 1, buf, sizeof buf);
        fprintf(out, "    #%-2d %p in %s\n", i, s->pc[i], buf);
    }
}

static weft__task_chunk *chunks_head(weft_runtime *rt)
{
    pthread_mutex_lock(&rt->tfree_lock);
    weft__task_chunk *c = rt->chunks;
    pthread_mutex_unlock(&rt->tfree_lock);
    return c;
}

int weft_runtime_dump(weft_runtime *rt, FILE *out)
{
    if (!rt || !out)
        return -EINVAL;
    int64_t t0 = weft__clock_ns();
    uint64_t now_tick = weft__now_tick(rt, t0);
    const char *no_bt = walk_missing();
    fprintf(out, "weft: dump of runtime %llu (%u workers) at %.3f s since start\n",
            (unsigned long long)rt->id, rt->nworkers, (double)(t0 - rt->start_ns) / 1e9);
    pthread_mutex_lock(&dump_lock); /* one dump at a time: the walk's table is its */
    int listed = 0;
    unsigned by_state[4] = {0, 0, 0, 0}, changing = 0;
    snap s;
    /* Chunks are only ever added at the head, fully initialized before
     * they are linked under tfree_lock (task.c): the list from the head
     * taken here is stable. */
    for (weft__task_chunk *c = chunks_head(rt); c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (!atomic_load_explicit(&t->live, memory_order_acquire))
                continue;
            take_snap(rt, t, &s);
            print_snap(&s, rt, now_tick, t0, no_bt, out);
            if (s.changing)
                changing++;
            else
                by_state[s.st & 3]++;
            listed++;
        }
    fprintf(out, "weft: %d tasks (%u parked, %u queued, %u running, %u changing); dump took %.2f ms\n", listed,
            by_state[T_PARKED], by_state[T_QUEUED], by_state[T_RUNNING] + by_state[T_NOTIFIED], changing,
            (double)(weft__clock_ns() - t0) / 1e6);
    pthread_mutex_unlock(&dump_lock);
    fflush(out);
    return listed;
}

/* ------------------------------------------------------------ debug mode */

/* A runtime of several workers has its long slices noticed by the peers
 * that pass by (rescue.c). A single worker has no peer: one watchdog thread
 * per process, started with the first debug mode and sleeping 20 ms between
 * rounds, makes the same check for the single-worker runtimes on the list
 * (under rts_lock, which weft__obs_runtime_leave takes before a runtime is
 * torn down, so none is freed under it). */
#define SLICE_WATCH_NS (20 * 1000000L)
static pthread_once_t slice_watch_once = PTHREAD_ONCE_INIT;

static void *slice_watch_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, SLICE_WATCH_NS};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&rts_lock);
        for (int i = 0; i < MAX_RTS; i++)
            if (weft__runtimes[i] && weft__runtimes[i]->nworkers == 1)
                weft__check_long_slices(weft__runtimes[i]);
        pthread_mutex_unlock(&rts_lock);
    }
    return NULL;
}

static void slice_watch_start(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay for the program's threads */
    pthread_attr_t a;
    pthread_t th;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &a, slice_watch_main, NULL) != 0)
        fprintf(stderr, "weft: debug: no watchdog thread; long slices of single-worker runtimes "
                        "go unreported\n");
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int weft_runtime_set_debug(weft_runtime *rt, unsigned slice_ms)
{
    if (!rt)
        return -EINVAL;
    atomic_store_explicit(&rt->debug_ms, slice_ms, memory_order_relaxed);
    if (slice_ms)
        pthread_once(&slice_watch_once, slice_watch_start);
    return 0;
}

void weft__obs_runtime_new(weft_runtime *rt)
{
    pthread_mutex_lock(&rts_lock);
    for (int i = 0; i < MAX_RTS; i++)
        if (!weft__runtimes[i]) {
            weft__runtimes[i] = rt; /* past 64 live runtimes, the rest are not listed */
            break;
        }
    pthread_mutex_unlock(&rts_lock);
    const char *e = getenv("WEFT_DEBUG");
    if (e && *e && strcmp(e, "0") != 0) {
        long v = strtol(e, NULL, 10);
        atomic_store_explicit(&rt->debug_ms, (uint32_t)(v > 1 ? v : 100), memory_order_relaxed);
        pthread_once(&slice_watch_once, slice_watch_start);
    }
    e = getenv("WEFT_DUMP_SIGNAL");
    if (e && strcmp(e, "1") == 0)
        weft_runtime_dump_on_signal(rt, 1);
}

/* First thing in weft_runtime_free: off the list, so that no SIGQUIT dump
 * (which holds rts_lock while it dumps) looks at a runtime being torn down. */
void weft__obs_runtime_leave(weft_runtime *rt)
{
    pthread_mutex_lock(&rts_lock);
    for (int i = 0; i < MAX_RTS; i++)
        if (weft__runtimes[i] == rt)
            weft__runtimes[i] = NULL;
    pthread_mutex_unlock(&rts_lock);
}

/* At weft_runtime_free, after every task's own reference is dropped and
 * before blocks are orphaned: a block with a reference left is held by a
 * handle that was never joined nor detached. */
void weft__obs_runtime_free(weft_runtime *rt)
{
    if (!atomic_load_explicit(&rt->debug_ms, memory_order_relaxed))
        return;
    for (weft__task_chunk *c = rt->chunks; c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (atomic_load(&t->refs) <= 0)
                continue;
            char fs[160], ss[160];
            weft__symbolize((const void *)t->fn, fs, sizeof fs);
            const void *site = t->obs.site;
            weft__symbolize(site ? (const char *)site - 1 : NULL, ss, sizeof ss);
            fprintf(stderr,
                    "weft: debug: the handle of task %llu%s%s%s (%s, spawned at %s) was never joined nor "
                    "detached before weft_runtime_free\n",
                    (unsigned long long)t->id, t->name ? " \"" : "", t->name ? t->name : "", t->name ? "\"" : "",
                    fs, ss);
        }
}

/* ------------------------------------------------------------ SIGQUIT */

static int sig_pipe[2] = {-1, -1};

static void on_sigquit(int sig)
{
    (void)sig;
    int e = errno; /* the handler's own: restored before it returns */
    char b = 'q';
    if (write(sig_pipe[1], &b, 1) < 0) {
    }
    errno = e;
}

/* The helper thread: the dump itself is not async-signal-safe (stdio,
 * dladdr, locks), so the handler only writes a byte to this pipe. */
static void *sig_main(void *arg)
{
    (void)arg;
    char b;
    for (;;) {
        ssize_t r = read(sig_pipe[0], &b, 1);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return NULL;
        }
        pthread_mutex_lock(&rts_lock);
        for (int i = 0; i < MAX_RTS; i++)
            if (weft__runtimes[i] && weft__runtimes[i]->dump_signal)
                weft_runtime_dump(weft__runtimes[i], stderr);
        pthread_mutex_unlock(&rts_lock);
    }
}

int weft_runtime_dump_on_signal(weft_runtime *rt, int on)
{
    if (!rt)
        return -EINVAL;
    pthread_mutex_lock(&rts_lock);
    int rc = 0;
    if (on && sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC) < 0) {
            rc = -errno;
            goto out;
        }
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        /* The helper runs no weft code but the dump, and blocks every
         * signal so that SIGQUIT (and the rest) go to the program's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&th, &a, sig_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
        if (e) {
            close(sig_pipe[0]);
            close(sig_pipe[1]);
            sig_pipe[0] = sig_pipe[1] = -1;
            rc = -e;
            goto out;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigquit;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGQUIT, &sa, NULL);
    }
    rt->dump_signal = on != 0;
out:
    pthread_mutex_unlock(&rts_lock);
    return rc;
}
