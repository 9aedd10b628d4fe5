/*
 * Metrics (weft_runtime_metrics, weft_metrics_print): sums of the workers'
 * counters and histograms, read while they run. Every counter is written by
 * its worker alone (stat_inc: a relaxed load and store, no read-modify-write
 * on the hot path) and read here with relaxed loads: each figure is exact
 * for some moment, the sums are not one snapshot. The histograms are filled
 * on sampled runs only (sched.c: timed slices; ready.c: latency probes), so
 * no clock is read on an ordinary switch. live_tasks scans the control
 * blocks (their `live` flags, atomics), and descriptors the poller layer's
 * table (poller_fd.c), so a call costs two walks; nothing on a hot path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static weft__task_chunk *chunks_head(weft_runtime *rt)
{
    pthread_mutex_lock(&rt->tfree_lock);
    weft__task_chunk *c = rt->chunks;
    pthread_mutex_unlock(&rt->tfree_lock);
    return c;
}

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
        m->slice_sample_every = WEFT__SLICE_PASSES * WEFT_EVENT_INTERVAL;
        m->latency_sample_every = WEFT__LATENCY_EVERY;
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
            wm[i].spawned = weft__peek_word(&w->next_id); /* task.c: also the spawn count */
        }
        if (m) {
            /* Plain owner-only fields, read as snapshots (weft__peek_word):
             * word-sized and aligned, so a value that was true at some point. */
            m->tasks_spawned += weft__peek_word(&w->next_id);
            m->timers_pending += weft__peek_word(&w->wheel.count);
            m->descriptors += weft__fd_count_poller(&w->poller);
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
            "weft metrics: %u workers, up %.3f s; tasks: %llu live, %llu spawned; timers pending %llu; "
            "descriptors %llu\n"
            "  blocking pool: %u threads (%u idle), %llu queued; compute pool: %u threads (%u idle), %llu queued\n",
            m->workers, (double)m->uptime_ns / 1e9, (unsigned long long)m->live_tasks,
            (unsigned long long)m->tasks_spawned, (unsigned long long)m->timers_pending,
            (unsigned long long)m->descriptors, m->blocking_threads,
            m->blocking_idle, (unsigned long long)m->blocking_queued, m->compute_threads, m->compute_idle,
            (unsigned long long)m->compute_queued);
    char t[96];
    snprintf(t, sizeof t, "task slice time (about 1 run in %u sampled)", m->slice_sample_every);
    print_hist(t, m->slice_ns, out);
    snprintf(t, sizeof t, "schedule latency, ready to running (1 wake-up or spawn in %u sampled)",
             m->latency_sample_every);
    print_hist(t, m->latency_ns, out);
}

