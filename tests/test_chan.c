/* Channels, select and oneshots: ordering, close semantics, rendezvous,
 * many producers and consumers across workers and plain threads, select
 * doing exactly one operation, timeouts, cancellation. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MS 1000000LL

/* ---------------------------------------------------------------- basics */

static void *basic_root(void *arg)
{
    (void)arg;
    weft_chan *ch = weft_chan_new(4, sizeof(int));
    cr_assert_not_null(ch);
    int v;
    cr_assert_eq(weft_chan_try_recv(ch, &v), -EAGAIN);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(weft_chan_try_send(ch, &i), 0);
    cr_assert_eq(weft_chan_try_send(ch, &v), -EAGAIN);
    cr_assert_eq(weft_chan_len(ch), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(weft_chan_recv(ch, &v), 0);
        cr_assert_eq(v, i);
    }
    weft_time t0 = weft_now();
    cr_assert_eq(weft_chan_recv_timeout(ch, &v, 30), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 30 * MS);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(weft_chan_send(ch, &i), 0);
    t0 = weft_now();
    cr_assert_eq(weft_chan_send_timeout(ch, &v, 30), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 30 * MS);
    cr_assert_eq(weft_chan_send_timeout(ch, &v, 0), -ETIMEDOUT);
    weft_chan_free(ch);
    cr_assert_null(weft_chan_new(4, 0));
    weft_chan *bad = (weft_chan *)1;
    cr_assert_eq(weft_chan_create(4, 0, &bad), -EINVAL);
    cr_assert_null(bad);
    cr_assert_eq(weft_chan_send(NULL, &v), -EINVAL);
    return NULL;
}

Test(chan, fifo_try_ops_and_timeouts, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, basic_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- close */

static void *blocked_sender(void *arg)
{
    int v = 99;
    return (void *)(intptr_t)weft_chan_send(arg, &v);
}

static void *blocked_receiver(void *arg)
{
    int v;
    return (void *)(intptr_t)weft_chan_recv(arg, &v);
}

static void *close_root(void *arg)
{
    (void)arg;
    /* drain, then -EPIPE; sends to a closed channel fail */
    weft_chan *ch = weft_chan_new(3, sizeof(int));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(weft_chan_send(ch, &i), 0);
    weft_task *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = weft_spawn(blocked_sender, ch); /* full: these wait */
    weft_sleep_ms(20);
    cr_assert_eq(weft_chan_close(ch), 0);
    cr_assert_eq(weft_chan_close(ch), -EPIPE);
    for (int i = 0; i < 3; i++) {
        void *r;
        cr_assert_eq(weft_join(s[i], &r), 0);
        cr_assert_eq((intptr_t)r, -EPIPE, "a blocked sender was not woken with -EPIPE");
    }
    int v = 0;
    cr_assert_eq(weft_chan_send(ch, &v), -EPIPE);
    cr_assert_eq(weft_chan_try_send(ch, &v), -EPIPE);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(weft_chan_recv(ch, &v), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(weft_chan_recv(ch, &v), -EPIPE);
    cr_assert_eq(weft_chan_try_recv(ch, &v), -EPIPE);
    weft_chan_free(ch);

    /* blocked receivers are woken with -EPIPE */
    ch = weft_chan_new(0, sizeof(int));
    weft_task *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = weft_spawn(blocked_receiver, ch);
    weft_sleep_ms(20);
    cr_assert_eq(weft_chan_close(ch), 0);
    for (int i = 0; i < 3; i++) {
        void *res;
        cr_assert_eq(weft_join(r[i], &res), 0);
        cr_assert_eq((intptr_t)res, -EPIPE);
    }
    weft_chan_free(ch);
    return NULL;
}

Test(chan, close_drains_then_epipe_and_wakes_waiters, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, close_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- rendezvous */

struct rv {
    weft_chan *ch;
    atomic_int received;
};

static void *rv_receiver(void *arg)
{
    struct rv *rv = arg;
    weft_sleep_ms(30);
    int v;
    cr_assert_eq(weft_chan_recv(rv->ch, &v), 0);
    atomic_store(&rv->received, v);
    return NULL;
}

static void *rendezvous_root(void *arg)
{
    (void)arg;
    struct rv rv = {.ch = weft_chan_new(0, sizeof(int))};
    int v = 7;
    cr_assert_eq(weft_chan_try_send(rv.ch, &v), -EAGAIN); /* nobody receives */
    cr_assert_eq(weft_chan_send_timeout(rv.ch, &v, 10), -ETIMEDOUT);
    weft_task *t = weft_spawn(rv_receiver, &rv);
    weft_time t0 = weft_now();
    v = 42;
    cr_assert_eq(weft_chan_send(rv.ch, &v), 0);
    /* completes only once the receiver took it */
    cr_assert_geq(weft_now() - t0, 25 * MS);
    cr_assert_eq(weft_join(t, NULL), 0);
    cr_assert_eq(atomic_load(&rv.received), 42);
    cr_assert_eq(weft_chan_len(rv.ch), 0);
    weft_chan_free(rv.ch);
    return NULL;
}

Test(chan, rendezvous_send_completes_when_received, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, rendezvous_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- MPMC */

#define NPROD 5 /* 4 tasks + 1 plain thread */
#define NCONS 5

struct mpmc {
    weft_chan *ch;
    int per_producer;
    atomic_int producers_left;
    atomic_long count;
    atomic_ullong sum;
    atomic_uchar *seen;
};

struct prod_arg {
    struct mpmc *m;
    int id;
};

static void *producer(void *arg)
{
    struct prod_arg *a = arg;
    for (int i = 0; i < a->m->per_producer; i++) {
        uint64_t msg = (uint64_t)a->id << 32 | (uint32_t)i;
        cr_assert_eq(weft_chan_send(a->m->ch, &msg), 0);
    }
    if (atomic_fetch_sub(&a->m->producers_left, 1) == 1)
        weft_chan_close(a->m->ch);
    return NULL;
}

static void *consumer(void *arg)
{
    struct mpmc *m = arg;
    int64_t last[NPROD];
    for (int i = 0; i < NPROD; i++)
        last[i] = -1;
    uint64_t msg;
    int rc;
    while ((rc = weft_chan_recv(m->ch, &msg)) == 0) {
        int p = (int)(msg >> 32);
        int64_t seq = (int64_t)(uint32_t)msg;
        cr_assert(p >= 0 && p < NPROD);
        cr_assert_gt(seq, last[p], "producer %d: %lld after %lld", p, (long long)seq,
                     (long long)last[p]);
        last[p] = seq;
        cr_assert_eq(atomic_exchange(&m->seen[p * m->per_producer + seq], 1), 0, "duplicate");
        atomic_fetch_add(&m->count, 1);
        atomic_fetch_add(&m->sum, msg);
    }
    cr_assert_eq(rc, -EPIPE);
    return NULL;
}

static void *mpmc_root(void *arg)
{
    struct mpmc *m = arg;
    static struct prod_arg pa[NPROD];
    weft_task *t[NPROD + NCONS];
    int k = 0;
    for (int i = 0; i < NCONS - 1; i++)
        t[k++] = weft_spawn(consumer, m);
    for (int i = 0; i < NPROD - 1; i++) {
        pa[i] = (struct prod_arg){m, i};
        t[k++] = weft_spawn(producer, &pa[i]);
    }
    for (int i = 0; i < k; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

static void run_mpmc(size_t cap)
{
    weft_runtime *rt = test_runtime(2);
    struct mpmc m = {.ch = weft_chan_new(cap, sizeof(uint64_t)),
                     .per_producer = test_scale_down() ? 300 : 3000,
                     .producers_left = NPROD};
    m.seen = calloc((size_t)NPROD * m.per_producer, 1);
    struct prod_arg thread_prod = {&m, NPROD - 1};
    pthread_t pt, ct;
    pthread_create(&pt, NULL, producer, &thread_prod);
    pthread_create(&ct, NULL, consumer, &m);
    cr_assert_eq(weft_runtime_block_on(rt, mpmc_root, &m, NULL), 0);
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    long n = (long)NPROD * m.per_producer;
    unsigned long long want = 0;
    for (int p = 0; p < NPROD; p++)
        for (int i = 0; i < m.per_producer; i++)
            want += (uint64_t)p << 32 | (uint32_t)i;
    cr_assert_eq(atomic_load(&m.count), n, "cap %zu: %ld of %ld arrived", cap,
                 atomic_load(&m.count), n);
    cr_assert_eq(atomic_load(&m.sum), want, "checksum");
    free(m.seen);
    weft_chan_free(m.ch);
    weft_runtime_free(rt);
}

Test(chan, mpmc_rendezvous_nothing_lost_or_duplicated, .timeout = 60) { run_mpmc(0); }
Test(chan, mpmc_cap1_nothing_lost_or_duplicated, .timeout = 60) { run_mpmc(1); }
Test(chan, mpmc_cap16_nothing_lost_or_duplicated, .timeout = 60) { run_mpmc(16); }

/* ---------------------------------------------------------------- select */

static void *select_one_root(void *arg)
{
    (void)arg;
    weft_chan *a = weft_chan_new(1, sizeof(int)), *b = weft_chan_new(1, sizeof(int));
    int picked[2] = {0, 0};
    int rounds = test_scale_down() ? 200 : 2000;
    for (int r = 0; r < rounds; r++) {
        int x = 1, y = 2, ra = 0, rb = 0;
        cr_assert_eq(weft_chan_send(a, &x), 0);
        cr_assert_eq(weft_chan_send(b, &y), 0);
        weft_select_case cs[2] = {{a, WEFT_RECV, &ra, 99}, {b, WEFT_RECV, &rb, 99}};
        int i = weft_select(cs, 2, -1);
        cr_assert(i == 0 || i == 1);
        cr_assert_eq(cs[i].result, 0);
        cr_assert_eq(cs[1 - i].result, 99, "the other case was touched");
        cr_assert_eq(weft_chan_len(a) + weft_chan_len(b), 1, "exactly one op per select");
        cr_assert_eq(i == 0 ? ra : rb, i == 0 ? 1 : 2);
        picked[i]++;
        int tmp;
        cr_assert_eq(weft_chan_try_recv(i == 0 ? b : a, &tmp), 0);
    }
    /* both ready every time: random start picks each often */
    cr_assert_gt(picked[0], rounds / 4);
    cr_assert_gt(picked[1], rounds / 4);

    /* send case on a full channel is skipped, recv case on a closed one is
     * ready with -EPIPE */
    int x = 5, out;
    cr_assert_eq(weft_chan_send(a, &x), 0);
    weft_chan_close(b);
    weft_select_case cs[2] = {{a, WEFT_SEND, &x, 0}, {b, WEFT_RECV, &out, 0}};
    cr_assert_eq(weft_select(cs, 2, -1), 1);
    cr_assert_eq(cs[1].result, -EPIPE);
    /* nothing ready: timeout, never early */
    weft_select_case cs2[2] = {{a, WEFT_SEND, &x, 0}, {NULL, WEFT_RECV, &out, 0}};
    weft_time t0 = weft_now();
    cr_assert_eq(weft_select(cs2, 2, 30), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 30 * MS);
    cr_assert_eq(weft_select(cs2, 2, 0), -ETIMEDOUT);
    cr_assert_eq(weft_select(cs2, 0, 0), -EINVAL);
    weft_chan_free(a);
    weft_chan_free(b);
    return NULL;
}

Test(chan, select_performs_exactly_one_ready_op, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, select_one_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* Parked selects racing with senders on several channels, including
 * rendezvous ones and select-to-select matches: every element is received
 * by exactly one select. */
struct selrace {
    weft_chan *ch[3];
    int per_sender;
    atomic_long got;
    atomic_ullong sum;
    atomic_int senders_left;
};

static void *sel_receiver(void *arg)
{
    struct selrace *s = arg;
    weft_select_case cs[3];
    uint64_t v[3];
    for (int i = 0; i < 3; i++)
        cs[i] = (weft_select_case){s->ch[i], WEFT_RECV, &v[i], 0};
    int open = 3;
    while (open) {
        int i = weft_select(cs, 3, -1);
        cr_assert(i >= 0 && i < 3, "select returned %d", i);
        if (cs[i].result == -EPIPE) {
            cs[i].chan = NULL;
            open--;
            continue;
        }
        atomic_fetch_add(&s->got, 1);
        atomic_fetch_add(&s->sum, v[i]);
    }
    return NULL;
}

static void *sel_sender(void *arg)
{
    struct selrace *s = arg;
    for (int i = 1; i <= s->per_sender; i++) {
        uint64_t v = (uint64_t)i;
        if (i % 2) {
            cr_assert_eq(weft_chan_send(s->ch[i % 3], &v), 0);
        } else { /* a sending select over all three */
            uint64_t a = v, b = v, c = v;
            weft_select_case cs[3] = {{s->ch[0], WEFT_SEND, &a, 0}, {s->ch[1], WEFT_SEND, &b, 0},
                                      {s->ch[2], WEFT_SEND, &c, 0}};
            int k = weft_select(cs, 3, -1);
            cr_assert(k >= 0 && cs[k].result == 0);
        }
    }
    if (atomic_fetch_sub(&s->senders_left, 1) == 1)
        for (int i = 0; i < 3; i++)
            weft_chan_close(s->ch[i]);
    return NULL;
}

static void *selrace_root(void *arg)
{
    struct selrace *s = arg;
    weft_task *t[7];
    for (int i = 0; i < 4; i++)
        t[i] = weft_spawn(sel_receiver, s);
    for (int i = 4; i < 7; i++)
        t[i] = weft_spawn(sel_sender, s);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(weft_join(t[i], NULL), 0);
    return NULL;
}

Test(chan, parked_selects_take_each_element_once, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    struct selrace s = {.per_sender = test_scale_down() ? 300 : 3000, .senders_left = 4};
    s.ch[0] = weft_chan_new(0, sizeof(uint64_t));
    s.ch[1] = weft_chan_new(1, sizeof(uint64_t));
    s.ch[2] = weft_chan_new(0, sizeof(uint64_t));
    pthread_t th; /* a plain thread sends too */
    pthread_create(&th, NULL, sel_sender, &s);
    cr_assert_eq(weft_runtime_block_on(rt, selrace_root, &s, NULL), 0);
    pthread_join(th, NULL);
    long n = 4L * s.per_sender;
    cr_assert_eq(atomic_load(&s.got), n);
    cr_assert_eq(atomic_load(&s.sum), 4ULL * s.per_sender * (s.per_sender + 1) / 2);
    for (int i = 0; i < 3; i++)
        weft_chan_free(s.ch[i]);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- cancellation */

static atomic_int cleanups;

static void *cancel_victim(void *arg)
{
    weft_chan **chs = arg; /* [0] full, [1] empty */
    int kind = (int)(intptr_t)chs[2];
    int v = 0, rc;
    if (kind == 0) {
        rc = weft_chan_send(chs[0], &v);
    } else if (kind == 1) {
        rc = weft_chan_recv(chs[1], &v);
    } else {
        weft_select_case cs[2] = {{chs[0], WEFT_SEND, &v, 0}, {chs[1], WEFT_RECV, &v, 0}};
        rc = weft_select(cs, 2, -1);
    }
    atomic_fetch_add(&cleanups, 1);
    return (void *)(intptr_t)rc;
}

static void *chan_cancel_root(void *arg)
{
    (void)arg;
    weft_chan *full = weft_chan_new(1, sizeof(int)), *empty = weft_chan_new(1, sizeof(int));
    int v = 1;
    weft_chan_send(full, &v);
    for (int kind = 0; kind < 3; kind++) {
        weft_chan *chs[3] = {full, empty, (weft_chan *)(intptr_t)kind};
        weft_task *t = test_spawn_running(cancel_victim, chs);
        weft_sleep_ms(20);
        weft_cancel(t);
        void *r;
        cr_assert_eq(weft_join(t, &r), -ECANCELED);
        cr_assert_eq((intptr_t)r, -ECANCELED, "kind %d returned %ld", kind, (long)(intptr_t)r);
    }
    cr_assert_eq(atomic_load(&cleanups), 3);
    /* withdrawn: a new receiver/sender pair works and gets the values */
    cr_assert_eq(weft_chan_recv(full, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(weft_chan_send(empty, &v), 0);
    cr_assert_eq(weft_chan_len(empty), 1);
    weft_chan_free(full);
    weft_chan_free(empty);
    return NULL;
}

Test(chan, cancellation_at_send_recv_and_select, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, chan_cancel_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* Cancellation racing with a hand-off never loses an element: on a
 * rendezvous channel the send succeeds exactly when the receive does. */
static void *recv_or_cancel(void *arg)
{
    int v = -1;
    int rc = weft_chan_recv(arg, &v);
    return (void *)(intptr_t)(rc == 0 ? v : rc);
}

static void *race_root(void *arg)
{
    (void)arg;
    weft_chan *ch = weft_chan_new(0, sizeof(int));
    int rounds = test_scale_down() ? 200 : 2000, delivered = 0;
    for (int i = 0; i < rounds; i++) {
        weft_task *t = weft_spawn(recv_or_cancel, ch);
        if (i % 3)
            weft_yield();
        if (i % 2)
            weft_cancel(t);
        int rc = weft_chan_send_timeout(ch, &i, i % 2 ? 0 : 1000);
        if (!(i % 2))
            weft_cancel(t);
        void *r;
        int jr = weft_join(t, &r);
        if (rc != 0 && jr == -ECANCELED && r == NULL)
            r = (void *)(intptr_t)-ECANCELED; /* cancelled before it ever ran */
        if (rc == 0) {
            cr_assert_eq((intptr_t)r, i, "round %d: sent but not received (%ld)", i,
                         (long)(intptr_t)r);
            delivered++;
        } else {
            cr_assert_eq(rc, -ETIMEDOUT);
            cr_assert_eq((intptr_t)r, -ECANCELED, "round %d: received %ld but send failed", i,
                         (long)(intptr_t)r);
        }
    }
    cr_log_info("%d of %d delivered", delivered, rounds);
    weft_chan_free(ch);
    return NULL;
}

Test(chan, cancel_racing_hand_off_loses_nothing, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, race_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ---------------------------------------------------------------- oneshot */

static void *oneshot_sender(void *arg)
{
    weft_sleep_ms(10);
    double d = 2.5;
    cr_assert_eq(weft_oneshot_send(arg, &d), 0);
    cr_assert_eq(weft_oneshot_send(arg, &d), -EPIPE);
    return NULL;
}

static void *oneshot_root(void *arg)
{
    (void)arg;
    weft_oneshot *o = weft_oneshot_new(sizeof(double));
    weft_task *t = weft_spawn(oneshot_sender, o);
    double d = 0;
    cr_assert_eq(weft_oneshot_recv(o, &d, -1), 0);
    cr_assert_eq(d, 2.5);
    cr_assert_eq(weft_oneshot_recv(o, &d, 10), -EPIPE);
    weft_join(t, NULL);
    weft_oneshot_free(o);

    o = weft_oneshot_new(sizeof(double));
    cr_assert_eq(weft_oneshot_recv(o, &d, 10), -ETIMEDOUT);
    cr_assert_eq(weft_oneshot_close(o), 0);
    cr_assert_eq(weft_oneshot_recv(o, &d, -1), -EPIPE);
    cr_assert_eq(weft_oneshot_send(o, &d), -EPIPE);
    weft_oneshot_free(o);
    return NULL;
}

Test(chan, oneshot_carries_one_value, .timeout = 30)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, oneshot_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ hand-off races
 * The paths a receive parked on an empty channel is completed by: a send
 * copying straight into its destination, a close, its own timeout or
 * cancellation, and a select parked on several channels. Each round races
 * two of them from different workers or a plain thread, and checks the one
 * invariant that matters: a value is delivered exactly when its send
 * reports success, never lost and never taken twice. */

#include "lock.h"

/* The channels' word lock (runtime/lock.h) excludes: plain threads and
 * tasks on two workers add to one unprotected counter under it, often
 * enough that lockers spin and sleep in the kernel (the 2 state). */
struct wl {
    weft__wlock lk;
    long counter;
    int per;
};

static void wl_add(struct wl *w)
{
    for (int i = 0; i < w->per; i++) {
        weft__wlock_lock(&w->lk);
        long c = w->counter;
        if (i % 64 == 0)
            sched_yield(); /* the holder is preempted now and then: lockers go to sleep */
        w->counter = c + 1;
        weft__wlock_unlock(&w->lk);
    }
}

static void *wl_thread(void *arg)
{
    wl_add(arg);
    return NULL;
}

static void *wl_root(void *arg)
{
    struct wl *w = arg;
    weft_task *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = weft_spawn(wl_thread, w);
        TEST_EXPECT(t[i], "spawn");
    }
    wl_add(w);
    for (int i = 0; i < 3; i++)
        weft_join(t[i], NULL);
    return NULL;
}

Test(chan, word_lock_excludes_threads_and_tasks, .timeout = 60)
{
    struct wl w = {.per = test_scale_down() ? 2000 : 20000};
    weft__wlock_init(&w.lk);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, wl_thread, &w), 0);
    test_run(2, wl_root, &w);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    weft__wlock_lock(&w.lk);
    long c = w.counter;
    weft__wlock_unlock(&w.lk);
    cr_assert_eq(c, 6L * w.per);
    cr_assert_eq(atomic_load(&w.lk.w), 0); /* left free, no sleeper marked */
}

/* A receive parked on an empty channel (capacity 0 or 1) races a send from
 * a task on either worker and a close from a plain thread. */
struct hc {
    weft_chan *ch;
    atomic_int ready, go;
    int value, send_delay, close_delay; /* spins after the start, to vary who wins */
    int closer_is_thread;
};

static void hc_spin(int n)
{
    for (volatile int k = 0; k < n; k++)
        ;
}

static void *hc_receiver(void *arg)
{
    struct hc *h = arg;
    int v = -1;
    int rc = weft_chan_recv(h->ch, &v);
    return (void *)(intptr_t)(rc == 0 ? v : rc);
}

static void *hc_sender(void *arg)
{
    struct hc *h = arg;
    atomic_fetch_add(&h->ready, 1);
    while (!atomic_load(&h->go))
        weft_yield();
    hc_spin(h->send_delay);
    return (void *)(intptr_t)weft_chan_send(h->ch, &h->value);
}

static void *hc_closer(void *arg)
{
    struct hc *h = arg;
    atomic_fetch_add(&h->ready, 1);
    while (!atomic_load(&h->go)) {
        if (h->closer_is_thread)
            sched_yield(); /* 2 cores, shared: a pure spin could starve the workers */
        else
            weft_yield();
    }
    hc_spin(h->close_delay);
    weft_chan_close(h->ch);
    return NULL;
}

static void *close_hand_off_root(void *arg)
{
    size_t cap = (size_t)(intptr_t)arg;
    int rounds = test_scale_down() ? 60 : 300, sent = 0;
    for (int i = 0; i < rounds; i++) {
        struct hc h = {.ch = weft_chan_new(cap, sizeof(int)),
                       .value = 1000 + i,
                       .send_delay = i % 4 * 300,
                       .close_delay = i / 4 % 4 * 300,
                       .closer_is_thread = i % 4 == 3};
        TEST_EXPECT(h.ch, "chan");
        weft_task *r = weft_spawn(hc_receiver, &h);
        for (int k = 0; k < i % 4; k++) /* the receiver parked or not yet */
            weft_yield();
        weft_task *s = weft_spawn(hc_sender, &h);
        pthread_t closer;
        weft_task *closer_task = NULL;
        if (h.closer_is_thread)
            TEST_EXPECT(pthread_create(&closer, NULL, hc_closer, &h) == 0, "pthread_create");
        else
            closer_task = weft_spawn(hc_closer, &h);
        while (atomic_load(&h.ready) < 2) /* not a spin: the machine may have 2 busy cores */
            if (h.closer_is_thread)
                weft_sleep_ms(1);
            else
                weft_yield();
        atomic_store(&h.go, 1);
        void *sr, *rr;
        weft_join(s, &sr);
        weft_join(r, &rr);
        if (h.closer_is_thread)
            pthread_join(closer, NULL);
        else
            weft_join(closer_task, NULL);
        int src = (int)(intptr_t)sr, rrc = (int)(intptr_t)rr;
        if (src == 0) {
            /* Sent: the receiver has it (capacity 1: or it was buffered
             * before the close, and the receive drains it). */
            TEST_EXPECT(rrc == h.value, "round %d: sent, but the receiver got %d", i, rrc);
            sent++;
        } else {
            TEST_EXPECT(src == -EPIPE, "round %d: send %d", i, src);
            TEST_EXPECT(rrc == -EPIPE, "round %d: send refused, but the receiver got %d", i, rrc);
        }
        int v;
        TEST_EXPECT(weft_chan_try_recv(h.ch, &v) == -EPIPE, "round %d: left behind", i);
        weft_chan_free(h.ch);
    }
    cr_log_info("capacity %zu: %d of %d rounds sent before the close", cap, sent, rounds);
    return NULL;
}

Test(chan, close_racing_hand_off_to_parked_receiver, .timeout = 60)
{
    test_run(2, close_hand_off_root, (void *)(intptr_t)0);
    test_run(2, close_hand_off_root, (void *)(intptr_t)1);
}

/* Receivers with a timeout, or cancelled from a plain thread, while a
 * sender hands them values on capacity-1 channels: every value whose send
 * succeeded arrives exactly once, at the receiver or left in the buffer
 * for the drain. */
struct tc {
    weft_chan *ch;
    int n;
    atomic_int got_by_receivers, timeouts, cancels;
    atomic_llong sum;
};

static void *tc_receiver(void *arg)
{
    struct tc *t = arg;
    int v;
    for (;;) {
        int rc = weft_chan_recv_timeout(t->ch, &v, 1);
        if (rc == 0) {
            atomic_fetch_add(&t->got_by_receivers, 1);
            atomic_fetch_add(&t->sum, v);
        } else if (rc == -ETIMEDOUT) {
            atomic_fetch_add(&t->timeouts, 1);
        } else if (rc == -ECANCELED) {
            atomic_fetch_add(&t->cancels, 1);
            break;
        } else if (rc == -EPIPE) {
            break;
        } else {
            test_fail(__LINE__, "recv_timeout: %d", rc);
            break;
        }
    }
    return NULL;
}

struct canceller {
    weft_task **t;
    int n;
    atomic_int stop;
};

static void *canceller_thread(void *arg)
{
    struct canceller *c = arg;
    for (int k = 0; k < c->n && !atomic_load(&c->stop); k++) {
        usleep(2000);
        weft_cancel(c->t[k]);
    }
    return NULL;
}

static void *timeout_cancel_root(void *arg)
{
    (void)arg;
    struct tc t = {.ch = weft_chan_new(1, sizeof(int)), .n = test_scale_down() ? 1000 : 5000};
    TEST_EXPECT(t.ch, "chan");
    weft_task *rs[4];
    for (int i = 0; i < 4; i++)
        rs[i] = weft_spawn(tc_receiver, &t);
    struct canceller c = {.t = rs, .n = 3}; /* the fourth is never cancelled: it drains */
    pthread_t th;
    TEST_EXPECT(pthread_create(&th, NULL, canceller_thread, &c) == 0, "pthread_create");
    long long sent_sum = 0;
    int sent = 0;
    for (int v = 1; v <= t.n; v++) {
        /* now and then a pause, so that the receivers' 1 ms timeouts
         * fall due around the sends that follow */
        if (v % 50 == 0)
            weft_sleep_ms(1 + v / 50 % 2);
        int rc = weft_chan_send_timeout(t.ch, &v, v % 7 == 0 ? 0 : 1);
        if (rc == 0) {
            sent++;
            sent_sum += v;
        } else {
            TEST_EXPECT(rc == -ETIMEDOUT, "send %d: %d", v, rc);
        }
    }
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    weft_chan_close(t.ch);
    for (int i = 0; i < 4; i++)
        weft_join(rs[i], NULL);
    /* what the receivers left (cancelled ones stop early) is still there */
    int v, left = 0;
    while (weft_chan_try_recv(t.ch, &v) == 0) {
        left++;
        atomic_fetch_add(&t.sum, v);
    }
    TEST_EXPECT(atomic_load(&t.got_by_receivers) + left == sent, "%d received + %d left, %d sent",
                atomic_load(&t.got_by_receivers), left, sent);
    TEST_EXPECT(atomic_load(&t.sum) == sent_sum, "sum %lld, sent %lld", (long long)atomic_load(&t.sum),
                sent_sum);
    cr_log_info("%d of %d sent, %d received, %d left; receivers: %d timeouts, %d cancelled", sent, t.n,
                atomic_load(&t.got_by_receivers), left, atomic_load(&t.timeouts), atomic_load(&t.cancels));
    weft_chan_free(t.ch);
    return NULL;
}

Test(chan, timeouts_and_cancels_racing_hand_offs_lose_nothing, .timeout = 120)
{
    test_run(2, timeout_cancel_root, NULL);
}

/* A select parked on two empty channels is handed a value by one of two
 * senders racing on different workers (and a plain thread): it takes
 * exactly one; on capacity 0 the other send times out, on capacity 1 it is
 * buffered. */
struct sh {
    weft_chan *ch[2];
    atomic_int go;
};

struct sh_send {
    struct sh *s;
    int idx, value;
};

static void *sh_sender(void *arg)
{
    struct sh_send *a = arg;
    while (!atomic_load(&a->s->go))
        sched_yield();
    return (void *)(intptr_t)weft_chan_send_timeout(a->s->ch[a->idx], &a->value, 2);
}

static void *sh_select(void *arg)
{
    struct sh *s = arg;
    int v0 = -1, v1 = -1;
    weft_select_case cs[2] = {{s->ch[0], WEFT_RECV, &v0, 0}, {s->ch[1], WEFT_RECV, &v1, 0}};
    int k = weft_select(cs, 2, -1);
    if (k < 0)
        return (void *)(intptr_t)k;
    if (cs[k].result != 0)
        return (void *)(intptr_t)-1000;
    return (void *)(intptr_t)((k + 1) * 100000 + (k == 0 ? v0 : v1));
}

static void *select_hand_off_root(void *arg)
{
    size_t cap = (size_t)(intptr_t)arg;
    int rounds = test_scale_down() ? 60 : 300, late = 0;
    for (int i = 0; i < rounds; i++) {
        struct sh s = {.ch = {weft_chan_new(cap, sizeof(int)), weft_chan_new(cap, sizeof(int))}};
        TEST_EXPECT(s.ch[0] && s.ch[1], "chan");
        weft_task *sel = weft_spawn(sh_select, &s);
        for (int k = 0; k < 1 + i % 3; k++) /* parked, mostly */
            weft_yield();
        struct sh_send a0 = {&s, 0, 2 * i}, a1 = {&s, 1, 2 * i + 1};
        weft_task *t0 = weft_spawn(sh_sender, &a0);
        pthread_t t1;
        TEST_EXPECT(pthread_create(&t1, NULL, sh_sender, &a1) == 0, "pthread_create");
        atomic_store(&s.go, 1);
        void *r0, *r1, *rs;
        weft_join(t0, &r0);
        pthread_join(t1, &r1);
        int rc[2] = {(int)(intptr_t)r0, (int)(intptr_t)r1};
        if (rc[0] != 0 && rc[1] != 0) {
            /* Both timed out before the select had parked (a loaded
             * machine): hand it case 0's value now. */
            TEST_EXPECT(cap == 0 && rc[0] == -ETIMEDOUT && rc[1] == -ETIMEDOUT, "round %d: sends %d %d", i,
                        rc[0], rc[1]);
            TEST_EXPECT(weft_chan_send(s.ch[0], &a0.value) == 0, "round %d: late send", i);
            rc[0] = 0;
            late++;
        }
        weft_join(sel, &rs);
        int got = (int)(intptr_t)rs;
        TEST_EXPECT(got >= 100000, "round %d: select returned %d", i, got);
        int k = got / 100000 - 1, v = got % 100000;
        TEST_EXPECT(v == 2 * i + k, "round %d: case %d carried %d", i, k, v);
        TEST_EXPECT(rc[k] == 0, "round %d: the select took case %d, whose send reported %d", i, k, rc[k]);
        int other = 1 - k, w;
        if (cap == 0) {
            TEST_EXPECT(rc[other] == -ETIMEDOUT, "round %d: the other send reported %d", i, rc[other]);
        } else {
            TEST_EXPECT(rc[other] == 0, "round %d: the other send reported %d", i, rc[other]);
            TEST_EXPECT(weft_chan_try_recv(s.ch[other], &w) == 0 && w == 2 * i + other,
                        "round %d: the other value is not buffered", i);
        }
        TEST_EXPECT(weft_chan_try_recv(s.ch[k], &w) == -EAGAIN, "round %d: taken twice", i);
        weft_chan_free(s.ch[0]);
        weft_chan_free(s.ch[1]);
    }
    cr_log_info("capacity %zu: %d of %d rounds needed the late send", cap, late, rounds);
    return NULL;
}

Test(chan, select_takes_one_direct_hand_off, .timeout = 120)
{
    test_run(2, select_hand_off_root, (void *)(intptr_t)0);
    test_run(2, select_hand_off_root, (void *)(intptr_t)1);
}

/* Deterministic on one worker: a parked receiver is cancelled, or its
 * timeout passes, but before it runs again a send hands it a value. The
 * hand-off wins: the send reports success and the receive returns the
 * value (a cancelled task still hands over what it returned). */
struct late {
    weft_chan *ch;
    int timeout_ms;
};

static void *late_receiver(void *arg)
{
    struct late *l = arg;
    int v = -1;
    int rc = weft_chan_recv_timeout(l->ch, &v, l->timeout_ms);
    return (void *)(intptr_t)(rc == 0 ? v : rc);
}

static void busy_ms(int ms)
{
    weft_time t0 = weft_now();
    while (weft_now() - t0 < ms * MS)
        ; /* no yield: the receiver cannot run meanwhile */
}

static void *late_hand_off_root(void *arg)
{
    (void)arg;
    for (size_t cap = 0; cap < 2; cap++) {
        for (int cancel = 0; cancel < 3; cancel++) { /* 0 timeout, 1 cancel untimed, 2 cancel timed */
            weft_chan *ch = weft_chan_new(cap, sizeof(int));
            TEST_EXPECT(ch, "chan");
            struct late l = {ch, cancel == 1 ? -1 : 5};
            weft_task *r = weft_spawn(late_receiver, &l);
            weft_yield(); /* it parks in its receive */
            TEST_EXPECT(weft_chan_len(ch) == 0, "parked");
            if (cancel)
                weft_cancel(r);
            else
                busy_ms(20); /* its 5 ms pass; its timer is due, it has not run */
            int v = 77;
            TEST_EXPECT(weft_chan_try_send(ch, &v) == 0, "cap %zu cancel %d: the parked receiver took no hand-off",
                        cap, cancel);
            void *res;
            int jr = weft_join(r, &res);
            TEST_EXPECT((intptr_t)res == 77, "cap %zu cancel %d: the receive returned %ld", cap, cancel,
                        (long)(intptr_t)res);
            TEST_EXPECT(jr == (cancel ? -ECANCELED : 0), "cap %zu cancel %d: join %d", cap, cancel, jr);
            TEST_EXPECT(weft_chan_try_recv(ch, &v) == -EAGAIN, "cap %zu cancel %d: the value is also buffered",
                        cap, cancel);
            weft_chan_free(ch);
        }
    }
    return NULL;
}

Test(chan, hand_off_to_a_woken_receiver_not_yet_running_wins, .timeout = 30)
{
    test_run(1, late_hand_off_root, NULL);
}
