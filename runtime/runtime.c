/*
 * A runtime's life: making it (its workers and their threads), freeing it
 * (stopping the workers, discarding the tasks still alive), block_on and
 * weft_main, and the per-worker statistics.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scheduler.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>

static unsigned default_workers(void)
{
    const char *e = getenv("WEFT_WORKERS");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v > 0 && v <= 1024)
            return (unsigned)v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0)
            return (unsigned)c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (unsigned)c : 1;
}

/* The backend asked for: the config field, else WEFT_BACKEND, else epoll
 * (the default until sockets are operations on the ring: README,
 * "Poller backends"). -1 for a value that names none. */
static int wanted_backend(const weft_config *cfg)
{
    if (cfg->backend == WEFT_BACKEND_EPOLL || cfg->backend == WEFT_BACKEND_URING)
        return cfg->backend;
    if (cfg->backend != WEFT_BACKEND_AUTO)
        return -1;
    const char *e = getenv("WEFT_BACKEND");
    if (!e || !*e || strcmp(e, "epoll") == 0)
        return WEFT_BACKEND_EPOLL;
    return strcmp(e, "uring") == 0 ? WEFT_BACKEND_URING : -1;
}

void weft_config_init(weft_config *cfg)
{
    if (cfg)
        memset(cfg, 0, sizeof *cfg);
}

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned live_runtimes;

static void free_workers(weft_runtime *rt, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        weft__worker *w = rt->workers[i];
        weft__wheel_destroy(&w->wheel);
        weft__fd_forget_poller(&w->poller); /* the table forgets, then the backend closes */
        weft__poller_destroy(&w->poller);
        weft__stack_cache_forget(&w->stacks); /* the pool is destroyed next */
        pthread_mutex_destroy(&w->inbox_lock);
        weft__free(w);
    }
}

weft_runtime *weft_runtime_new(const weft_config *cfg)
{
    weft_config def;
    if (!cfg) {
        weft_config_init(&def);
        cfg = &def;
    }
    unsigned n = cfg->workers ? cfg->workers : default_workers();
    if (n > 1024) {
        errno = EINVAL;
        return NULL;
    }
    unsigned cls;
    if (weft__stack_class(cfg->stack_size ? cfg->stack_size : 256 * 1024, &cls) < 0 ||
        cfg->stack_size > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    int backend = wanted_backend(cfg);
    if (backend < 0) {
        errno = EINVAL;
        return NULL;
    }
    weft__overflow_report_install();
    weft_runtime *rt = weft__aligned(64, sizeof *rt);
    if (!rt) {
        errno = ENOMEM;
        return NULL;
    }
    memset(rt, 0, sizeof *rt);
    static _Atomic uint64_t runtime_ids;
    rt->id = atomic_fetch_add(&runtime_ids, 1) + 1;
    rt->nworkers = n;
    rt->default_cls = cls;
    rt->start_ns = weft__clock_ns();
    weft__lock_init(&rt->idle_lock);
    pthread_mutex_init(&rt->services_lock, NULL);
    weft__lock_init(&rt->tfree_lock);
    pthread_mutex_init(&rt->start_lock, NULL);
    pthread_cond_init(&rt->start_cond, NULL);
    weft__stack_pool_init(&rt->stacks);
    atomic_init(&rt->idle, (uint64_t)n << 32);
    rt->workers = weft__calloc(n, sizeof *rt->workers);
    rt->sleepers = weft__calloc(n, sizeof *rt->sleepers);
    int err = ENOMEM;
    unsigned made = 0;
    if (!rt->workers || !rt->sleepers || weft__inject_init(&rt->inject, n < 8 ? 8 : n) < 0)
        goto fail;
    for (; made < n; made++) {
        weft__worker *w = weft__aligned(64, sizeof *w);
        if (!w)
            goto fail;
        memset(w, 0, sizeof *w);
        w->latency_left = WEFT__LATENCY_EVERY; /* metrics sampling (ready.c) */
        w->index = made;
        w->rt = rt;
        w->until_event = WEFT_EVENT_INTERVAL;
        w->rng = 0x9e3779b97f4a7c15ull * (made + 1) ^ (uint64_t)rt->start_ns;
        weft__lq_init(&w->lq);
        weft__stack_cache_init(&w->stacks, &rt->stacks);
        weft__wheel_init(&w->wheel, 0);
        weft__lock_init(&w->inbox_lock);
        /* A ring the kernel refuses (or one more it cannot make) leaves
         * this worker on epoll, silently; the runtime reports uring only
         * if every worker has one. */
        w->poller.kind = backend == WEFT_BACKEND_URING ? WEFT__BACKEND_URING : WEFT__BACKEND_EPOLL;
        int rc = weft__poller_init(&w->poller);
        if (rc < 0 && w->poller.kind == WEFT__BACKEND_URING) {
            w->poller.kind = WEFT__BACKEND_EPOLL;
            rc = weft__poller_init(&w->poller);
        }
        if (w->poller.kind != WEFT__BACKEND_URING)
            backend = WEFT_BACKEND_EPOLL;
        if (rc < 0) {
            err = -rc;
            pthread_mutex_destroy(&w->inbox_lock);
            weft__free(w);
            goto fail;
        }
        rt->workers[made] = w;
    }
    rt->backend = backend;
    pthread_mutex_lock(&live_lock);
    live_runtimes++;
    pthread_mutex_unlock(&live_lock);
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&rt->workers[i]->thread, NULL, weft__worker_main, rt->workers[i]);
        if (rc != 0) {
            /* Stop the ones already running, then unwind. */
            atomic_store(&rt->shutdown, 1);
            weft__wake_sleepers(rt);
            for (unsigned k = 0; k < i; k++)
                pthread_join(rt->workers[k]->thread, NULL);
            pthread_mutex_lock(&live_lock);
            live_runtimes--;
            pthread_mutex_unlock(&live_lock);
            err = rc;
            goto fail;
        }
    }
    pthread_mutex_lock(&rt->start_lock);
    while (rt->started < n)
        pthread_cond_wait(&rt->start_cond, &rt->start_lock);
    pthread_mutex_unlock(&rt->start_lock);
    weft__obs_runtime_new(rt);
    return rt;
fail:
    free_workers(rt, made);
    if (rt->inject.shards)
        weft__inject_destroy(&rt->inject);
    weft__free(rt->workers);
    weft__free(rt->sleepers);
    weft__stack_pool_destroy(&rt->stacks);
    weft__free(rt);
    errno = err;
    return NULL;
}

void weft_runtime_free(weft_runtime *rt)
{
    if (!rt)
        return;
    if (weft_current_runtime() == rt) {
        /* It would wait for its own worker to stop: a hang, never a return. */
        static const char msg[] = "weft: weft_runtime_free called from a task of that runtime "
                                  "(it would wait for itself forever); aborting\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        abort();
    }
    weft__obs_runtime_leave(rt);
    atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
    weft__wake_sleepers(rt);
    for (unsigned i = 0; i < rt->nworkers; i++)
        pthread_join(rt->workers[i]->thread, NULL);
    if (rt->blocking_stop)
        rt->blocking_stop(rt);
    pthread_mutex_destroy(&rt->services_lock);

    /* Every task still alive is discarded: its handle reports cancellation
     * and a plain thread blocked in weft_join on it is released. Order
     * matters: blocks held by handles are marked orphans (rt = NULL) before
     * a blocked joiner is released, so it never touches the runtime being
     * freed; and once joiners run, a chunk of orphans may be freed by its
     * last handle at any time, so nothing here touches one after that. */
    /* The plain-thread joiners to release, chained through their token
     * (a thread waiter's token is unused: it is woken through `fired`); so
     * this needs no memory, and a free cannot fail for want of it. */
    weft__waiter *fire = NULL;
    for (weft__task_chunk *c = rt->chunks; c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++) {
            weft__task *t = &c->tasks[i];
            if (!atomic_load(&t->live))
                continue;
            atomic_store(&t->live, 0);
            if (t->stack || t->obs.probe_stack) /* a latency probe lends its stack (ready.c) */
                weft__ctx_destroy(&t->ctx);
            atomic_fetch_sub(&t->refs, 1); /* the task's own reference */
            uintptr_t j = atomic_exchange(&t->join, JOIN_DISCARDED);
            if (j > JOIN_DISCARDED && !((weft__waiter *)j)->task) {
                ((weft__waiter *)j)->token = (uint64_t)(uintptr_t)fire;
                fire = (weft__waiter *)j;
            }
        }
    weft__obs_runtime_free(rt);
    weft__task_orphan_handles(rt);
    while (fire) {
        /* Read the link first: once fired, the waiter's frame may be gone. */
        weft__waiter *next = (weft__waiter *)(uintptr_t)fire->token;
        fire->token = 0;
        weft__waiter_fire(fire);
        fire = next;
    }
    free_workers(rt, rt->nworkers);
    weft__task_free_chunks(rt);
    weft__inject_destroy(&rt->inject);
    weft__stack_pool_destroy(&rt->stacks);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_mutex_destroy(&rt->tfree_lock);
    pthread_mutex_destroy(&rt->start_lock);
    pthread_cond_destroy(&rt->start_cond);
    weft__free(rt->workers);
    weft__free(rt->sleepers);
    weft__free(rt);
    pthread_mutex_lock(&live_lock);
    if (--live_runtimes == 0)
        weft__fd_table_free();
    pthread_mutex_unlock(&live_lock);
}

unsigned weft_runtime_workers(const weft_runtime *rt) { return rt ? rt->nworkers : 0; }

int weft_runtime_backend(const weft_runtime *rt) { return rt ? rt->backend : -EINVAL; }

int weft_runtime_block_on(weft_runtime *rt, weft_fn fn, void *arg, void **result)
{
    if (!rt || !fn)
        return -EINVAL;
    if (weft__cur_task())
        return -EPERM;
    weft_task *t = weft_spawn_on(rt, fn, arg);
    if (!t)
        return -errno;
    return weft_join(t, result);
}

int weft_main(weft_fn fn, void *arg, void **result)
{
    if (!fn)
        return -EINVAL;
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt)
        return -errno;
    int rc = weft_runtime_block_on(rt, fn, arg, result);
    weft_runtime_free(rt);
    return rc;
}

size_t weft_runtime_live_tasks(const weft_runtime *rt)
{
    if (!rt)
        return 0;
    /* tfree_take adds chunks under tfree_lock; none goes away while rt lives. */
    weft_runtime *m = (weft_runtime *)rt;
    size_t n = 0;
    pthread_mutex_lock(&m->tfree_lock);
    for (weft__task_chunk *c = m->chunks; c; c = c->next)
        for (unsigned i = 0; i < WEFT_TASK_CHUNK; i++)
            n += atomic_load_explicit(&c->tasks[i].live, memory_order_relaxed) != 0;
    pthread_mutex_unlock(&m->tfree_lock);
    return n;
}

unsigned weft_runtime_stats(const weft_runtime *rt, weft_worker_stats *out, unsigned n)
{
    if (!rt)
        return 0;
    for (unsigned i = 0; i < rt->nworkers && i < n && out; i++) {
        const weft__stats *s = &rt->workers[i]->stats;
        out[i].tasks_run = atomic_load_explicit(&s->tasks_run, memory_order_relaxed);
        out[i].steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
        out[i].tasks_stolen = atomic_load_explicit(&s->tasks_stolen, memory_order_relaxed);
        out[i].parks = atomic_load_explicit(&s->parks, memory_order_relaxed);
        out[i].global_pulls = atomic_load_explicit(&s->global_pulls, memory_order_relaxed);
        out[i].overflows = atomic_load_explicit(&s->overflows, memory_order_relaxed);
        out[i].lifo_capped = atomic_load_explicit(&s->lifo_capped, memory_order_relaxed);
        out[i].timers_rescued = atomic_load_explicit(&s->timers_rescued, memory_order_relaxed);
        out[i].events_rescued = atomic_load_explicit(&s->events_rescued, memory_order_relaxed);
    }
    return rt->nworkers;
}
