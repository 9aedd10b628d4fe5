/*
 * Channel benchmarks: weft channels against a pthread baseline, the
 * measuring functions of bench/chan.c, shared with its smoke test
 * (tests/test_chan_bench_smoke.c). Header only, static functions.
 *
 * The baseline (chanb_pq) is the obvious bounded queue: a pthread mutex, two
 * condition variables (not_full for senders, not_empty for receivers) and a
 * ring buffer of the same capacity and element size as the weft channel,
 * signalled under the lock after every operation. Capacity 0 is a rendezvous
 * built the same way: the sender puts its element in a one-element slot,
 * signals not_empty and waits on not_full until a receiver has taken it
 * (tickets: `sent` and `taken`); the receiver broadcasts not_full, which
 * wakes that sender and any sender waiting for the slot.
 *
 * Workloads (elements are 8-byte uint64_t everywhere):
 *   pingpong  one pair of tasks (threads) bouncing a message over two
 *             capacity-0 channels; the pinger sends i, the ponger returns
 *             i + 1, the pinger checks it. Time: the pinger's first send to
 *             its last receive.
 *   flow      P producers and C consumers on one channel: producer p sends
 *             the values v in 1..n with (v - 1) % P == p in increasing
 *             order; when every producer has returned, the root closes the
 *             channel and the consumers drain it. Each consumer counts and
 *             sums what it gets (and a hash of it), and checks that each
 *             producer's values arrive in the order sent. Time: the first
 *             producer's start to the last consumer's end (its receive that
 *             found the channel closed and drained: the close's latency is
 *             included, one wake-up in a million messages). P = C = 1 is the
 *             stream benchmark.
 * CPU time is the process's user + system time (getrusage RUSAGE_SELF)
 * around the whole measurement: spawning and joining (creating and joining
 * the threads) included, runtime creation not.
 */
#ifndef WEFT_BENCH_CHAN_H
#define WEFT_BENCH_CHAN_H

#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

#define CHANB_MAX_THREADS 64

/* ------------------------------------------------------------ results */

typedef struct chanb_result {
    double wall_ns;     /* the measured interval */
    double cpu_ns;      /* user + system CPU of the process over the measurement */
    uint64_t msgs;      /* messages received (pingpong: round trips completed) */
    uint64_t sum;       /* sum of the received values (flow) */
    uint64_t mix;       /* sum of chanb_mix of the received values (flow) */
    uint64_t disorder;  /* values that arrived before an earlier one of the same sender */
    int failed;         /* an operation returned an unexpected result */
    char err[160];      /* why the result is not valid, "" when it is */
} chanb_result;

/* A value's hash: sum and hash sum together make a lost message made up
 * by a duplicated one practically impossible to miss. */
static inline uint64_t chanb_mix(uint64_t v)
{
    v += 0x9e3779b97f4a7c15ull;
    v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
    v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
    return v ^ (v >> 31);
}

static inline double chanb__cpu_ns(void)
{
    bench_usage u = bench_getrusage();
    return (u.user_s + u.sys_s) * 1e9;
}

/* Validates a result: pingpong (flow 0) must have done every round; flow
 * must have delivered 1..n exactly once (count, sum and hash sum), each
 * producer's values in order. Returns 1 when valid; else fills r->err. */
static inline int chanb_check(chanb_result *r, uint64_t n, int flow)
{
    if (r->failed && !r->err[0])
        snprintf(r->err, sizeof r->err, "a channel operation failed");
    if (r->err[0])
        return 0;
    if (r->msgs != n) {
        snprintf(r->err, sizeof r->err, "%llu messages of %llu", (unsigned long long)r->msgs,
                 (unsigned long long)n);
        return 0;
    }
    if (flow) {
        uint64_t sum = n % 2 ? (n + 1) / 2 * n : n / 2 * (n + 1), mix = 0;
        for (uint64_t v = 1; v <= n; v++)
            mix += chanb_mix(v);
        if (r->sum != sum || r->mix != mix) {
            snprintf(r->err, sizeof r->err, "sum %llu (expected %llu), hash sum %s", (unsigned long long)r->sum,
                     (unsigned long long)sum, r->mix == mix ? "right" : "wrong");
            return 0;
        }
        if (r->disorder) {
            snprintf(r->err, sizeof r->err, "%llu values overtook an earlier one of their sender",
                     (unsigned long long)r->disorder);
            return 0;
        }
    }
    if (!(r->wall_ns > 0) || r->cpu_ns < 0) {
        snprintf(r->err, sizeof r->err, "wall %.0f ns, cpu %.0f ns", r->wall_ns, r->cpu_ns);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ the pthread baseline */

typedef struct chanb_pq {
    pthread_mutex_t lk;
    pthread_cond_t not_full;  /* senders: the buffer is full (cap 0: slot taken or not yet received) */
    pthread_cond_t not_empty; /* receivers: nothing to take */
    size_t cap, esz, head, count;
    uint64_t sent, taken;     /* capacity 0: hand-off tickets */
    int closed;
    unsigned char *buf;
} chanb_pq;

static inline chanb_pq *chanb_pq_new(size_t cap, size_t esz)
{
    chanb_pq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->buf = malloc((cap ? cap : 1) * esz);
    if (!q->buf) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lk, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    q->cap = cap;
    q->esz = esz;
    return q;
}

static inline void chanb_pq_free(chanb_pq *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->lk);
    free(q->buf);
    free(q);
}

/* 0, or -EPIPE when closed (also when closed before a rendezvous completed). */
static inline int chanb_pq_send(chanb_pq *q, const void *elem)
{
    int rc = 0;
    pthread_mutex_lock(&q->lk);
    if (q->cap) {
        while (q->count == q->cap && !q->closed)
            pthread_cond_wait(&q->not_full, &q->lk);
        if (q->closed) {
            rc = -EPIPE;
        } else {
            memcpy(q->buf + ((q->head + q->count) % q->cap) * q->esz, elem, q->esz);
            q->count++;
            pthread_cond_signal(&q->not_empty);
        }
    } else {
        while (q->count && !q->closed)
            pthread_cond_wait(&q->not_full, &q->lk);
        if (q->closed) {
            rc = -EPIPE;
        } else {
            memcpy(q->buf, elem, q->esz);
            q->count = 1;
            uint64_t ticket = ++q->sent;
            pthread_cond_signal(&q->not_empty);
            while (q->taken < ticket && !q->closed)
                pthread_cond_wait(&q->not_full, &q->lk);
            if (q->taken < ticket) { /* closed before anyone took it: withdraw */
                q->count = 0;
                q->sent--;
                rc = -EPIPE;
                pthread_cond_broadcast(&q->not_full);
            }
        }
    }
    pthread_mutex_unlock(&q->lk);
    return rc;
}

/* 0, or -EPIPE when closed and drained. */
static inline int chanb_pq_recv(chanb_pq *q, void *out)
{
    int rc = 0;
    pthread_mutex_lock(&q->lk);
    while (!q->count && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->lk);
    if (!q->count) {
        rc = -EPIPE;
    } else if (q->cap) {
        memcpy(out, q->buf + q->head * q->esz, q->esz);
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_cond_signal(&q->not_full);
    } else {
        memcpy(out, q->buf, q->esz);
        q->count = 0;
        q->taken++;
        pthread_cond_broadcast(&q->not_full); /* its sender, and senders waiting for the slot */
    }
    pthread_mutex_unlock(&q->lk);
    return rc;
}

static inline int chanb_pq_close(chanb_pq *q)
{
    pthread_mutex_lock(&q->lk);
    int was = q->closed;
    q->closed = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lk);
    return was ? -EPIPE : 0;
}

/* ------------------------------------------------------------ one interface over both */

/* The workloads are written once against these: weft_chan or chanb_pq. */
typedef struct chanb_ch {
    weft_chan *w;
    chanb_pq *p;
} chanb_ch;

static inline int chanb_ch_new(chanb_ch *c, int weft, size_t cap)
{
    c->w = NULL;
    c->p = NULL;
    if (weft)
        c->w = weft_chan_new(cap, sizeof(uint64_t));
    else
        c->p = chanb_pq_new(cap, sizeof(uint64_t));
    return c->w || c->p ? 0 : -ENOMEM;
}

static inline void chanb_ch_free(chanb_ch *c)
{
    weft_chan_free(c->w);
    chanb_pq_free(c->p);
}

static inline int chanb_send(chanb_ch *c, uint64_t v)
{
    return c->w ? weft_chan_send(c->w, &v) : chanb_pq_send(c->p, &v);
}

static inline int chanb_recv(chanb_ch *c, uint64_t *v)
{
    return c->w ? weft_chan_recv(c->w, v) : chanb_pq_recv(c->p, v);
}

static inline void chanb_close(chanb_ch *c)
{
    if (c->w)
        weft_chan_close(c->w);
    else
        chanb_pq_close(c->p);
}

/* Runs fn(arg[i]) for i < n as weft tasks (weft: from inside a task) or as
 * threads, and waits for them all. Returns 0 or a negative errno (then the
 * ones started are still joined). */
typedef struct chanb_group {
    int weft, n;
    weft_task *t[CHANB_MAX_THREADS];
    pthread_t th[CHANB_MAX_THREADS];
} chanb_group;

static inline int chanb_start(chanb_group *g, void *(*fn)(void *), void *arg)
{
    if (g->n >= CHANB_MAX_THREADS)
        return -EINVAL;
    if (g->weft) {
        g->t[g->n] = weft_spawn(fn, arg);
        if (!g->t[g->n])
            return -errno;
    } else {
        int rc = pthread_create(&g->th[g->n], NULL, fn, arg);
        if (rc)
            return -rc;
    }
    g->n++;
    return 0;
}

static inline void chanb_join_all(chanb_group *g)
{
    for (int i = 0; i < g->n; i++) {
        if (g->weft)
            weft_join(g->t[i], NULL);
        else
            pthread_join(g->th[i], NULL);
    }
    g->n = 0;
}

/* ------------------------------------------------------------ pingpong */

typedef struct chanb__pp {
    chanb_ch ping, pong;
    uint64_t rounds, done;
    int64_t t0, t1;
    int failed;
} chanb__pp;

static void *chanb__pinger(void *arg)
{
    chanb__pp *p = arg;
    p->t0 = bench_now_ns();
    uint64_t i;
    for (i = 0; i < p->rounds; i++) {
        uint64_t back = 0;
        if (chanb_send(&p->ping, i) != 0 || chanb_recv(&p->pong, &back) != 0 || back != i + 1) {
            p->failed = 1;
            break;
        }
    }
    p->t1 = bench_now_ns();
    p->done = i;
    /* Both: a ponger stuck in its send (after a failure) gets -EPIPE too. */
    chanb_close(&p->ping);
    chanb_close(&p->pong);
    return NULL;
}

static void *chanb__ponger(void *arg)
{
    chanb__pp *p = arg;
    uint64_t v;
    int rc;
    while ((rc = chanb_recv(&p->ping, &v)) == 0)
        if (chanb_send(&p->pong, v + 1) != 0)
            break; /* the pinger gave up; it reports the failure */
    if (rc != 0 && rc != -EPIPE)
        p->failed = 1;
    return NULL;
}

typedef struct chanb__run {
    int weft;
    int (*body)(struct chanb__run *);
    void *params;
    chanb_result *r;
} chanb__run;

static int chanb__pp_body(chanb__run *run)
{
    chanb__pp *p = run->params;
    chanb_group g = {.weft = run->weft};
    double c0 = chanb__cpu_ns();
    int rc = chanb_start(&g, chanb__ponger, p);
    if (rc == 0)
        rc = chanb_start(&g, chanb__pinger, p);
    if (rc != 0) { /* unblock whatever started */
        chanb_close(&p->ping);
        chanb_close(&p->pong);
    }
    chanb_join_all(&g);
    run->r->cpu_ns = chanb__cpu_ns() - c0;
    return rc;
}

static void *chanb__root(void *arg)
{
    chanb__run *run = arg;
    return (void *)(intptr_t)run->body(run);
}

/* Runs run->body inside a task of rt (weft) or on this thread. */
static inline int chanb__exec(weft_runtime *rt, chanb__run *run)
{
    if (!run->weft)
        return run->body(run);
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, chanb__root, run, &res);
    return rc ? rc : (int)(intptr_t)res;
}

static inline void chanb__reset(chanb_result *r)
{
    memset(r, 0, sizeof *r);
}

/* A ping-pong of `rounds` round trips over two capacity-0 channels: weft
 * tasks on rt when rt is not NULL, else two threads over chanb_pq. Returns 1
 * when the result is valid (r->err says why not otherwise). */
static inline int chanb_pingpong(weft_runtime *rt, uint64_t rounds, chanb_result *r)
{
    chanb__reset(r);
    int weft = rt != NULL;
    chanb__pp p;
    memset(&p, 0, sizeof p);
    p.rounds = rounds;
    if (chanb_ch_new(&p.ping, weft, 0) || chanb_ch_new(&p.pong, weft, 0)) {
        snprintf(r->err, sizeof r->err, "channel: out of memory");
        chanb_ch_free(&p.ping);
        chanb_ch_free(&p.pong);
        return 0;
    }
    chanb__run run = {weft, chanb__pp_body, &p, r};
    int rc = chanb__exec(rt, &run);
    if (rc != 0)
        snprintf(r->err, sizeof r->err, "starting the pair: %s", strerror(-rc));
    r->wall_ns = (double)(p.t1 - p.t0);
    r->msgs = p.done;
    r->failed = p.failed;
    chanb_ch_free(&p.ping);
    chanb_ch_free(&p.pong);
    return chanb_check(r, rounds, 0);
}

/* ------------------------------------------------------------ pairs */

/* `pairs` ping-pong pairs at once, each over its own two channels of
 * capacity cap, `rounds` round trips each (the pinger's send, the ponger's
 * receive and reply, the pinger's receive): the many-pairs workload of
 * issue 19 (1,000 pairs, capacity 1, 1,000 round trips). Weft only: 2,000
 * threads would measure the kernel. Time: before the first spawn to after
 * the last join, so the tasks' start and exit are in it (2,000 spawns
 * against a million round trips); every reply is checked (i + 1) and every
 * pair must complete all its rounds. */
typedef struct chanb__pairs {
    chanb__pp *pp;
    weft_task **t;
    uint64_t pairs;
    int64_t t0, t1;
} chanb__pairs;

static int chanb__pairs_body(chanb__run *run)
{
    chanb__pairs *ps = run->params;
    double c0 = chanb__cpu_ns();
    ps->t0 = bench_now_ns();
    int rc = 0;
    uint64_t started = 0;
    for (; started < ps->pairs; started++) {
        chanb__pp *p = &ps->pp[started];
        weft_task *a = weft_spawn(chanb__ponger, p), *b = a ? weft_spawn(chanb__pinger, p) : NULL;
        ps->t[2 * started] = a;
        ps->t[2 * started + 1] = b;
        if (!b) {
            rc = -errno;
            if (a) { /* its pinger never ran: unblock the ponger */
                chanb_close(&p->ping);
                chanb_close(&p->pong);
                started++;
            }
            break;
        }
    }
    for (uint64_t i = 0; i < 2 * started; i++)
        if (ps->t[i])
            weft_join(ps->t[i], NULL);
    ps->t1 = bench_now_ns();
    run->r->cpu_ns = chanb__cpu_ns() - c0;
    return rc;
}

/* Returns 1 when every pair did every round with the right replies (r->err
 * says why not otherwise); r->msgs counts the round trips of all pairs. */
static inline int chanb_pairs(weft_runtime *rt, uint64_t pairs, uint64_t rounds, size_t cap, chanb_result *r)
{
    chanb__reset(r);
    chanb__pairs ps = {.pairs = pairs};
    ps.pp = calloc(pairs ? pairs : 1, sizeof *ps.pp);
    ps.t = calloc(pairs ? 2 * pairs : 1, sizeof *ps.t);
    uint64_t made = 0;
    int ok = ps.pp && ps.t;
    for (; ok && made < pairs; made++) {
        ps.pp[made].rounds = rounds;
        if (chanb_ch_new(&ps.pp[made].ping, 1, cap) || chanb_ch_new(&ps.pp[made].pong, 1, cap)) {
            made++;
            ok = 0;
        }
    }
    if (!ok) {
        snprintf(r->err, sizeof r->err, "channels: out of memory");
    } else {
        chanb__run run = {1, chanb__pairs_body, &ps, r};
        int rc = chanb__exec(rt, &run);
        if (rc != 0)
            snprintf(r->err, sizeof r->err, "starting the pairs: %s", strerror(-rc));
        r->wall_ns = (double)(ps.t1 - ps.t0);
        for (uint64_t i = 0; i < pairs; i++) {
            r->msgs += ps.pp[i].done;
            r->failed |= ps.pp[i].failed;
        }
    }
    for (uint64_t i = 0; i < made; i++) {
        chanb_ch_free(&ps.pp[i].ping);
        chanb_ch_free(&ps.pp[i].pong);
    }
    free(ps.pp);
    free(ps.t);
    return r->err[0] ? 0 : chanb_check(r, pairs * rounds, 0);
}

/* ------------------------------------------------------------ flow (stream, mpmc) */

typedef struct chanb__flow chanb__flow;

typedef struct chanb__end {
    chanb__flow *f;
    int id;
    int64_t t;          /* producer: its start; consumer: when it saw the channel closed and drained */
    uint64_t msgs, sum, mix, disorder;
    int failed;
    char pad[64];       /* each end on its own cache line(s) */
} chanb__end;

struct chanb__flow {
    chanb_ch ch;
    uint64_t n;
    int producers, consumers;
    unsigned char *seen; /* optional: a count per value, for an exact check */
    chanb__end prod[CHANB_MAX_THREADS / 2], cons[CHANB_MAX_THREADS / 2];
};

static void *chanb__producer(void *arg)
{
    chanb__end *e = arg;
    chanb__flow *f = e->f;
    e->t = bench_now_ns();
    for (uint64_t v = (uint64_t)e->id + 1; v <= f->n; v += (uint64_t)f->producers) {
        if (chanb_send(&f->ch, v) != 0) {
            e->failed = 1;
            break;
        }
        e->msgs++;
    }
    return NULL;
}

static void *chanb__consumer(void *arg)
{
    chanb__end *e = arg;
    chanb__flow *f = e->f;
    uint64_t last[CHANB_MAX_THREADS / 2] = {0}; /* last value seen per producer */
    uint64_t v, P = (uint64_t)f->producers;
    int rc;
    while ((rc = chanb_recv(&f->ch, &v)) == 0) {
        if (v == 0 || v > f->n) {
            e->failed = 1;
            continue;
        }
        uint64_t p = (v - 1) % P;
        e->disorder += v <= last[p];
        last[p] = v;
        e->msgs++;
        e->sum += v;
        e->mix += chanb_mix(v);
        if (f->seen)
            __atomic_fetch_add(&f->seen[v - 1], 1, __ATOMIC_RELAXED);
    }
    e->t = bench_now_ns(); /* not per message: a clock read costs as much as a hand-off */
    if (rc != -EPIPE)
        e->failed = 1;
    return NULL;
}

static int chanb__flow_body(chanb__run *run)
{
    chanb__flow *f = run->params;
    chanb_group cg = {.weft = run->weft}, pg = {.weft = run->weft};
    double c0 = chanb__cpu_ns();
    int rc = 0;
    for (int i = 0; i < f->consumers && rc == 0; i++)
        rc = chanb_start(&cg, chanb__consumer, &f->cons[i]);
    for (int i = 0; i < f->producers && rc == 0; i++)
        rc = chanb_start(&pg, chanb__producer, &f->prod[i]);
    chanb_join_all(&pg);
    chanb_close(&f->ch);
    chanb_join_all(&cg);
    run->r->cpu_ns = chanb__cpu_ns() - c0;
    return rc;
}

/* n messages (the values 1..n) from `producers` to `consumers` through one
 * channel of capacity cap: weft tasks on rt when rt is not NULL, else
 * threads over chanb_pq. seen, when not NULL, is n zeroed bytes that end up
 * holding how many times each value arrived. Returns 1 when the result is
 * valid (every value exactly once, in order per producer). */
static inline int chanb_flow(weft_runtime *rt, int producers, int consumers, size_t cap, uint64_t n,
                             unsigned char *seen, chanb_result *r)
{
    chanb__reset(r);
    if (producers < 1 || consumers < 1 || producers > CHANB_MAX_THREADS / 2 ||
        consumers > CHANB_MAX_THREADS / 2) {
        snprintf(r->err, sizeof r->err, "%d producers, %d consumers: 1 to %d each", producers, consumers,
                 CHANB_MAX_THREADS / 2);
        return 0;
    }
    int weft = rt != NULL;
    chanb__flow *f = calloc(1, sizeof *f);
    if (!f || chanb_ch_new(&f->ch, weft, cap)) {
        snprintf(r->err, sizeof r->err, "channel: out of memory");
        if (f)
            chanb_ch_free(&f->ch);
        free(f);
        return 0;
    }
    f->n = n;
    f->producers = producers;
    f->consumers = consumers;
    f->seen = seen;
    for (int i = 0; i < producers; i++)
        f->prod[i] = (chanb__end){.f = f, .id = i};
    for (int i = 0; i < consumers; i++)
        f->cons[i] = (chanb__end){.f = f, .id = i};
    chanb__run run = {weft, chanb__flow_body, f, r};
    int rc = chanb__exec(rt, &run);
    if (rc != 0)
        snprintf(r->err, sizeof r->err, "starting producers and consumers: %s", strerror(-rc));
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    uint64_t sent = 0;
    for (int i = 0; i < producers; i++) {
        if (f->prod[i].t < t0)
            t0 = f->prod[i].t;
        sent += f->prod[i].msgs;
        r->failed |= f->prod[i].failed;
    }
    for (int i = 0; i < consumers; i++) {
        chanb__end *e = &f->cons[i];
        if (e->t > t1)
            t1 = e->t;
        r->msgs += e->msgs;
        r->sum += e->sum;
        r->mix += e->mix;
        r->disorder += e->disorder;
        r->failed |= e->failed;
    }
    r->wall_ns = t1 > t0 ? (double)(t1 - t0) : 0;
    if (!r->err[0] && sent != n)
        snprintf(r->err, sizeof r->err, "%llu of %llu messages sent", (unsigned long long)sent,
                 (unsigned long long)n);
    chanb_ch_free(&f->ch);
    free(f);
    return chanb_check(r, n, 1);
}

#endif
