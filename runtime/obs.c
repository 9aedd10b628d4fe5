/*
 * Seeing inside a running runtime: task dumps (weft_runtime_dump, and on
 * SIGQUIT when enabled), metrics (weft_runtime_metrics), debug mode's check
 * at weft_runtime_free for handles never joined nor detached. The long-slice
 * warning lives in rescue.c, with the peer pass it rides on.
 *
 * ---------------------------------------------------------------------------
 * The dump protocol: walking a suspended stack while the workers run
 *
 * A parked task's stack must not be resumed while the dump reads it. The
 * dump takes the task off the run path through the state word itself, with
 * the transitions the scheduler already has (task_state.h), so no hot path
 * checks anything new:
 *  1. hold: CAS PARKED(seq) -> RUNNING(seq), acq_rel. It succeeds only on a
 *     task that is parked now; the acquire pairs with the release of the
 *     worker's state_park after the switch, so the saved context (sp, the
 *     pushed rbp and return address) and the task's wait note are visible.
 *     From now on the task is, to every waker, "between registering and
 *     parking": a wake (token == seq) moves it RUNNING -> NOTIFIED and queues
 *     nothing, a stale one does nothing, so no worker can resume it.
 *  2. copy: the frame-pointer walk copies return addresses from the stack
 *     (bounded by the stack's limits), and the note fields are copied.
 *  3. release: what after_switch does for a park: RUNNING -> PARKED (release
 *     CAS), or, when a wake came meanwhile, NOTIFIED -> QUEUED and the dump
 *     queues it (weft__schedule). The sequence cannot have moved while held
 *     (only the task itself begins a wait): WEFT__ASSERT checks it.
 * A task is held for the copy only (a few hundred ns); the symbolizing and
 * the writing happen after the release. Tasks queued or running are not
 * held: they are listed from relaxed atomic loads (state, id, function,
 * spawn site, worker), without a backtrace.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

#define DUMP_FRAMES 32

typedef struct snap {
    uint64_t id;
    const void *fn, *site;
    unsigned st;
    int worker;
    int external;
    int held;
    int noted;
    uint8_t kind, ev;
    uint64_t obj, tick;
    char name[32];
    int nframes;
    const void *pc[DUMP_FRAMES];
} snap;

/* Step 2: the frame walk from a saved context (switch_x86_64.S's frame:
 * rbp at sp+48, the return address at sp+56). Reads another task's stack,
 * which the tools would flag as out of this thread's frame (ASan) or cannot
 * see the hold's ordering through (the walk reads plain words the task
 * wrote before parking; the hold's acquire orders them). */
__attribute__((noinline, no_sanitize_address, no_sanitize_thread)) static int
walk_frames(weft__task *t, const void **pc, int max)
{
#if defined(__x86_64__)
    weft__stack *st = t->stack;
    if (!st)
        return 0;
    uintptr_t sp = (uintptr_t)t->ctx.sp, lo = (uintptr_t)st->lo, hi = (uintptr_t)weft__stack_top(st);
    if (sp < lo || sp + 64 > hi)
        return 0;
    const uintptr_t *f = (const uintptr_t *)sp;
    int n = 0;
    pc[n++] = (const void *)f[7];
    uintptr_t fp = f[6];
    while (n < max && fp >= sp && fp + 16 <= hi && (fp & 7) == 0) {
        const uintptr_t *fr = (const uintptr_t *)fp;
        if (!fr[1])
            break;
        pc[n++] = (const void *)fr[1];
        if (fr[0] <= fp)
            break;
        fp = fr[0];
    }
    return n;
#else
    (void)t;
    (void)pc;
    (void)max;
    return 0; /* only the x86-64 frame layout is walked so far */
#endif
}

/* Step 1. */
static int hold(weft__task *t, uint64_t *seq)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (T_ST(s) != T_PARKED)
        return 0;
    if (!atomic_compare_exchange_strong_explicit(&t->state, &s, T_MAKE(T_SEQ(s), T_RUNNING),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    *seq = T_SEQ(s);
    return 1;
}

/* Step 3. */
static void release(weft_runtime *rt, weft__task *t, uint64_t seq)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        WEFT__ASSERT(T_SEQ(s) == seq); /* nobody begins a wait for a held task */
        if (T_ST(s) == T_RUNNING) {
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, T_MAKE(seq, T_PARKED),
                                                      memory_order_acq_rel, memory_order_acquire))
                return;
        } else {
            WEFT__ASSERT(T_ST(s) == T_NOTIFIED); /* woken while held: queue it now */
            atomic_store_explicit(&t->state, T_MAKE(seq, T_QUEUED), memory_order_release);
            weft__schedule(rt, t);
            return;
        }
    }
}

static void take_snap(weft_runtime *rt, weft__task *t, snap *o)
{
    memset(o, 0, sizeof *o);
    o->id = __atomic_load_n(&t->id, __ATOMIC_RELAXED);
    o->fn = (const void *)__atomic_load_n(&t->fn, __ATOMIC_RELAXED);
    weft__task_obs *ob = weft__obs_of(t);
    o->site = __atomic_load_n(&ob->spawn_site, __ATOMIC_RELAXED);
    weft__worker *w = __atomic_load_n(&t->worker, __ATOMIC_RELAXED);
    o->worker = w ? (int)w->index : -1;
    uint64_t seq;
    o->external = __atomic_load_n(&t->stack_cls, __ATOMIC_RELAXED) == WEFT_EXTERNAL_CLS;
    if (!o->external && hold(t, &seq)) {
        o->held = 1;
        o->st = T_PARKED;
        /* Re-read under the hold: the block cannot change life now. */
        o->id = t->id;
        o->fn = (const void *)t->fn;
        o->site = __atomic_load_n(&ob->spawn_site, __ATOMIC_RELAXED);
        o->worker = t->worker ? (int)t->worker->index : -1;
        if (t->name)
            snprintf(o->name, sizeof o->name, "%s", t->name);
        o->noted = ob->wait_token == seq && ob->wait_kind != WEFT__WAIT_NONE;
        o->kind = ob->wait_kind;
        o->ev = ob->wait_ev;
        o->obj = ob->wait_obj;
        o->tick = ob->wait_tick;
        o->nframes = walk_frames(t, o->pc, DUMP_FRAMES);
        release(rt, t, seq);
    } else {
        o->st = T_ST(atomic_load_explicit(&t->state, memory_order_relaxed));
    }
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
                     (s->obj & 1) ? " (a blocking/compute job)" : "");
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

static void print_snap(const snap *s, weft_runtime *rt, uint64_t now_tick, int64_t now_ns, FILE *out)
{
    char buf[256];
    weft__symbolize(s->fn, buf, sizeof buf);
    fprintf(out, "task %llu%s%s%s: %s\n", (unsigned long long)s->id, s->name[0] ? " \"" : "", s->name,
            s->name[0] ? "\"" : "", buf);
    print_state(s, rt, now_tick, now_ns, out);
    if (s->site) {
        weft__symbolize((const char *)s->site - 1, buf, sizeof buf);
        fprintf(out, "  spawned at: %s\n", buf);
    }
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
    fprintf(out, "weft: dump of runtime %llu (%u workers) at %.3f s since start\n",
            (unsigned long long)rt->id, rt->nworkers, (double)(t0 - rt->start_ns) / 1e9);
    int listed = 0;
    unsigned by_state[4] = {0, 0, 0, 0};
    snap s;
    for (weft__task_chunk *c = chunks_head(rt); c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (!atomic_load_explicit(&t->live, memory_order_acquire))
                continue;
            take_snap(rt, t, &s);
            print_snap(&s, rt, now_tick, t0, out);
            by_state[s.st & 3]++;
            listed++;
        }
    fprintf(out, "weft: %d tasks (%u parked, %u queued, %u running); dump took %.2f ms\n", listed,
            by_state[T_PARKED], by_state[T_QUEUED], by_state[T_RUNNING] + by_state[T_NOTIFIED],
            (double)(weft__clock_ns() - t0) / 1e6);
    fflush(out);
    return listed;
}

/* ------------------------------------------------------------ metrics */

int weft_runtime_metrics(const weft_runtime *crt, weft_metrics *m, weft_worker_metrics *wm, unsigned n)
{
    weft_runtime *rt = (weft_runtime *)crt;
    if (!rt)
        return -EINVAL;
    int64_t now = weft__clock_ns();
    if (m) {
        memset(m, 0, sizeof *m);
        m->workers = rt->nworkers;
        m->uptime_ns = (uint64_t)(now - rt->start_ns);
        m->sample_every = WEFT__SAMPLE_EVERY;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *w = rt->workers[i];
        const weft__stats *s = &w->stats;
        if (wm && i < n) {
            wm[i].stats.tasks_run = atomic_load_explicit(&s->tasks_run, memory_order_relaxed);
            wm[i].stats.steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
            wm[i].stats.tasks_stolen = atomic_load_explicit(&s->tasks_stolen, memory_order_relaxed);
            wm[i].stats.parks = atomic_load_explicit(&s->parks, memory_order_relaxed);
            wm[i].stats.global_pulls = atomic_load_explicit(&s->global_pulls, memory_order_relaxed);
            wm[i].stats.overflows = atomic_load_explicit(&s->overflows, memory_order_relaxed);
            wm[i].stats.lifo_capped = atomic_load_explicit(&s->lifo_capped, memory_order_relaxed);
            wm[i].stats.timers_rescued = atomic_load_explicit(&s->timers_rescued, memory_order_relaxed);
            wm[i].stats.events_rescued = atomic_load_explicit(&s->events_rescued, memory_order_relaxed);
            wm[i].parked_ns = atomic_load_explicit(&s->parked_ns, memory_order_relaxed);
            uint64_t up = (uint64_t)(now - rt->start_ns);
            wm[i].busy_ns = up > wm[i].parked_ns ? up - wm[i].parked_ns : 0;
            wm[i].polls = atomic_load_explicit(&s->polls, memory_order_relaxed);
            wm[i].forced_yields = atomic_load_explicit(&s->forced_yields, memory_order_relaxed);
            wm[i].spawned = __atomic_load_n(&w->next_id, __ATOMIC_RELAXED); /* task.c */
        }
        if (m) {
            m->tasks_spawned += __atomic_load_n(&w->next_id, __ATOMIC_RELAXED);
            m->timers_pending += __atomic_load_n(&w->wheel.count, __ATOMIC_RELAXED);
            for (unsigned b = 0; b < WEFT_HIST_BUCKETS && b < WEFT__HIST_BUCKETS; b++) {
                m->slice_ns[b] += atomic_load_explicit(&s->hist_slice[b], memory_order_relaxed);
                m->latency_ns[b] += atomic_load_explicit(&s->hist_latency[b], memory_order_relaxed);
            }
        }
    }
    if (m) {
        /* Tasks spawned from outside the workers and jobs: ext_ids counts them. */
        m->tasks_spawned += atomic_load_explicit(&rt->ext_ids, memory_order_relaxed);
        for (weft__task_chunk *c = chunks_head(rt); c; c = c->next)
            for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++)
                m->live_tasks += atomic_load_explicit(&c->tasks[i].live, memory_order_relaxed) != 0;
        size_t q;
        weft__blocking_metrics(rt, 0, &m->blocking_threads, &m->blocking_idle, &q);
        m->blocking_queued = q;
        weft__blocking_metrics(rt, 1, &m->compute_threads, &m->compute_idle, &q);
        m->compute_queued = q;
    }
    return (int)rt->nworkers;
}

static void print_hist(const char *title, const uint64_t *h, FILE *out)
{
    uint64_t max = 0, total = 0;
    for (int b = 0; b < WEFT_HIST_BUCKETS; b++) {
        if (h[b] > max)
            max = h[b];
        total += h[b];
    }
    fprintf(out, "%s (%llu samples)\n", title, (unsigned long long)total);
    if (!total)
        return;
    static const char *unit[] = {"ns", "us", "ms", "s"};
    for (int b = 0; b < WEFT_HIST_BUCKETS; b++) {
        if (!h[b])
            continue;
        uint64_t lo = (uint64_t)1 << b;
        int u = 0;
        double v = (double)lo;
        while (v >= 1000 && u < 3) {
            v /= 1000;
            u++;
        }
        int bar = (int)(h[b] * 40 / max);
        fprintf(out, "  >= %7.1f %-2s %10llu %.*s\n", v, unit[u], (unsigned long long)h[b], bar > 0 ? bar : 1,
                "########################################");
    }
}

void weft_metrics_print(const weft_metrics *m, FILE *out)
{
    if (!m || !out)
        return;
    fprintf(out,
            "weft metrics: %u workers, up %.3f s; tasks: %llu live, %llu spawned; timers pending %llu\n"
            "  blocking pool: %u threads (%u idle), %llu queued; compute pool: %u threads (%u idle), %llu queued\n",
            m->workers, (double)m->uptime_ns / 1e9, (unsigned long long)m->live_tasks,
            (unsigned long long)m->tasks_spawned, (unsigned long long)m->timers_pending, m->blocking_threads,
            m->blocking_idle, (unsigned long long)m->blocking_queued, m->compute_threads, m->compute_idle,
            (unsigned long long)m->compute_queued);
    char t[96];
    snprintf(t, sizeof t, "task slice time (1 in %u sampled)", m->sample_every);
    print_hist(t, m->slice_ns, out);
    snprintf(t, sizeof t, "schedule latency, ready to running (1 in %u sampled)", m->sample_every);
    print_hist(t, m->latency_ns, out);
}

/* ------------------------------------------------------------ debug mode */

int weft_runtime_set_debug(weft_runtime *rt, unsigned slice_ms)
{
    if (!rt)
        return -EINVAL;
    atomic_store_explicit(&rt->debug_ms, slice_ms, memory_order_relaxed);
    return 0;
}

void weft__obs_runtime_new(weft_runtime *rt)
{
    const char *e = getenv("WEFT_DEBUG");
    if (e && *e && strcmp(e, "0") != 0) {
        long v = strtol(e, NULL, 10);
        atomic_store_explicit(&rt->debug_ms, (uint32_t)(v > 1 ? v : 100), memory_order_relaxed);
    }
    e = getenv("WEFT_DUMP_SIGNAL");
    if (e && strcmp(e, "1") == 0)
        weft_runtime_dump_on_signal(rt, 1);
}

/* At weft_runtime_free, after every task's own reference is dropped and
 * before blocks are orphaned: a block with a reference left is held by a
 * handle that was never joined nor detached. */
void weft__obs_runtime_free(weft_runtime *rt)
{
    weft_runtime_dump_on_signal(rt, 0);
    if (!atomic_load_explicit(&rt->debug_ms, memory_order_relaxed))
        return;
    for (weft__task_chunk *c = rt->chunks; c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (atomic_load(&t->refs) <= 0)
                continue;
            char fs[160], ss[160];
            weft__symbolize((const void *)t->fn, fs, sizeof fs);
            const void *site = weft__obs_of(t)->spawn_site;
            weft__symbolize(site ? (const char *)site - 1 : NULL, ss, sizeof ss);
            fprintf(stderr,
                    "weft: debug: the handle of task %llu%s%s%s (%s, spawned at %s) was never joined nor "
                    "detached before weft_runtime_free\n",
                    (unsigned long long)t->id, t->name ? " \"" : "", t->name ? t->name : "", t->name ? "\"" : "",
                    fs, ss);
        }
}

/* ------------------------------------------------------------ SIGQUIT */

#define SIG_MAX_RT 64
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_runtime *sig_rts[SIG_MAX_RT];
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
        pthread_mutex_lock(&sig_lock);
        for (int i = 0; i < SIG_MAX_RT; i++)
            if (sig_rts[i])
                weft_runtime_dump(sig_rts[i], stderr);
        pthread_mutex_unlock(&sig_lock);
    }
}

int weft_runtime_dump_on_signal(weft_runtime *rt, int on)
{
    if (!rt)
        return -EINVAL;
    pthread_mutex_lock(&sig_lock);
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
        /* The helper never runs weft code of its own: SIGQUIT stays
         * deliverable to any thread; only the dumping happens here. */
        int e = pthread_create(&th, &a, sig_main, NULL);
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
    for (int i = 0; i < SIG_MAX_RT; i++) {
        if (on && !sig_rts[i]) {
            sig_rts[i] = rt;
            break;
        }
        if (!on && sig_rts[i] == rt)
            sig_rts[i] = NULL;
    }
    rt->dump_signal = on;
out:
    pthread_mutex_unlock(&sig_lock);
    return rc;
}
