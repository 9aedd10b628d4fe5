/* Run queues: the local ring (wrap-around, overflow to the global queue,
 * steal-half) and the sharded global queue, single-threaded and
 * deterministic; then the ring under concurrency, its owner pushing and
 * popping against three stealers. */
#include "util.h"

#include <pthread.h>
#include <sched.h>

#include "queue.h"

static weft__task tasks[600];

static weft__lq *new_lq(void)
{
    weft__lq *q = aligned_alloc(64, sizeof *q);
    weft__lq_init(q);
    return q;
}

Test(queue, fifo_order_and_wrap_around)
{
    weft__lq *q = new_lq();
    /* Start just below the 32-bit wrap so the indices overflow mid-test. */
    uint32_t start = UINT32_MAX - 100;
    atomic_store(&q->head, ((uint64_t)start << 32) | start);
    atomic_store(&q->tail, start);
    weft__batch ov;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 200; i++)
            cr_assert_eq(weft__lq_push(q, &tasks[i], &ov), 0);
        cr_assert_eq(weft__lq_len(q), 200);
        for (int i = 0; i < 200; i++)
            cr_assert_eq(weft__lq_pop(q), &tasks[i], "round %d item %d", round, i);
        cr_assert_null(weft__lq_pop(q));
    }
    free(q);
}

Test(queue, full_ring_moves_half_plus_one_to_overflow)
{
    weft__lq *q = new_lq();
    weft__batch ov;
    for (unsigned i = 0; i < WEFT_LQ_SIZE; i++)
        cr_assert_eq(weft__lq_push(q, &tasks[i], &ov), 0);
    cr_assert_eq(weft__lq_push(q, &tasks[WEFT_LQ_SIZE], &ov), 1);
    cr_assert_eq(ov.n, WEFT_LQ_SIZE / 2 + 1);
    /* The oldest half, in order, then the new task. */
    weft__task *t = ov.head;
    for (unsigned i = 0; i < WEFT_LQ_SIZE / 2; i++, t = t->next)
        cr_assert_eq(t, &tasks[i]);
    cr_assert_eq(t, &tasks[WEFT_LQ_SIZE]);
    cr_assert_eq(ov.tail, t);
    cr_assert_eq(weft__lq_len(q), WEFT_LQ_SIZE / 2);
    for (unsigned i = WEFT_LQ_SIZE / 2; i < WEFT_LQ_SIZE; i++)
        cr_assert_eq(weft__lq_pop(q), &tasks[i]);
    cr_assert_null(weft__lq_pop(q));
    free(q);
}

Test(queue, steal_one_of_one)
{
    weft__lq *victim = new_lq(), *thief = new_lq();
    weft__batch ov;
    weft__lq_push(victim, &tasks[7], &ov);
    unsigned moved;
    cr_assert_eq(weft__lq_steal(victim, thief, &moved), &tasks[7]);
    cr_assert_eq(moved, 1);
    cr_assert_null(weft__lq_pop(victim));
    cr_assert_null(weft__lq_pop(thief));
    cr_assert_null(weft__lq_steal(victim, thief, &moved));
    free(victim);
    free(thief);
}

Test(queue, steal_half_of_a_full_queue)
{
    weft__lq *victim = new_lq(), *thief = new_lq();
    weft__batch ov;
    for (unsigned i = 0; i < WEFT_LQ_SIZE; i++)
        weft__lq_push(victim, &tasks[i], &ov);
    unsigned moved;
    weft__task *run = weft__lq_steal(victim, thief, &moved);
    cr_assert_eq(moved, WEFT_LQ_SIZE / 2);
    /* The thief takes the oldest half; it runs the newest of those now. */
    cr_assert_eq(run, &tasks[WEFT_LQ_SIZE / 2 - 1]);
    for (unsigned i = 0; i < WEFT_LQ_SIZE / 2 - 1; i++)
        cr_assert_eq(weft__lq_pop(thief), &tasks[i]);
    cr_assert_null(weft__lq_pop(thief));
    for (unsigned i = WEFT_LQ_SIZE / 2; i < WEFT_LQ_SIZE; i++)
        cr_assert_eq(weft__lq_pop(victim), &tasks[i]);
    /* The victim can fill its whole ring again after the steal. */
    for (unsigned i = 0; i < WEFT_LQ_SIZE; i++)
        cr_assert_eq(weft__lq_push(victim, &tasks[i], &ov), 0);
    free(victim);
    free(thief);
}

Test(queue, no_steal_into_a_half_full_queue)
{
    weft__lq *victim = new_lq(), *thief = new_lq();
    weft__batch ov;
    for (unsigned i = 0; i < 10; i++)
        weft__lq_push(victim, &tasks[i], &ov);
    for (unsigned i = 0; i <= WEFT_LQ_SIZE / 2; i++)
        weft__lq_push(thief, &tasks[100 + i], &ov);
    unsigned moved;
    cr_assert_null(weft__lq_steal(victim, thief, &moved));
    cr_assert_eq(weft__lq_len(victim), 10);
    free(victim);
    free(thief);
}

Test(queue, odd_count_steals_the_larger_half)
{
    weft__lq *victim = new_lq(), *thief = new_lq();
    weft__batch ov;
    for (unsigned i = 0; i < 5; i++)
        weft__lq_push(victim, &tasks[i], &ov);
    unsigned moved;
    cr_assert_not_null(weft__lq_steal(victim, thief, &moved));
    cr_assert_eq(moved, 3);
    cr_assert_eq(weft__lq_len(victim), 2);
    cr_assert_eq(weft__lq_len(thief), 2);
    free(victim);
    free(thief);
}

Test(queue, inject_shards_and_bitmask)
{
    weft__inject g;
    cr_assert_eq(weft__inject_init(&g, 8), 0);
    cr_assert(weft__inject_empty(&g));
    for (unsigned i = 0; i < 80; i++)
        weft__inject_push(&g, i, &tasks[i]);
    cr_assert(!weft__inject_empty(&g));
    cr_assert_eq(atomic_load(&g.nonempty), 0xff);
    weft__batch b;
    unsigned total = 0;
    int seen[80] = {0};
    while (weft__inject_pop(&g, 3, 7, &b)) {
        cr_assert_leq(b.n, 7);
        for (weft__task *t = b.head; t; t = t->next) {
            seen[t - tasks]++;
            total++;
        }
    }
    cr_assert_eq(total, 80);
    for (int i = 0; i < 80; i++)
        cr_assert_eq(seen[i], 1);
    cr_assert(weft__inject_empty(&g));
    /* FIFO within a shard. */
    for (unsigned i = 0; i < 5; i++)
        weft__inject_push(&g, 2, &tasks[i]);
    weft__inject_pop(&g, 0, 100, &b);
    weft__task *t = b.head;
    for (unsigned i = 0; i < 5; i++, t = t->next)
        cr_assert_eq(t, &tasks[i]);
    weft__inject_destroy(&g);
}

/* ------------------------------------------------------------ concurrent ring
 * The owner pushes a million fake tasks (a tenth of that in the instrumented
 * lanes) in bursts of random length, sometimes past a full ring so that the
 * overflow path runs against thieves, and pops some after each burst; three
 * stealer threads steal half of the owner's ring into rings of their own and
 * drain those. A task leaves the owner's ring exactly once: popped by the
 * owner, moved to an overflow batch, returned by weft__lq_steal, or popped
 * from a stealer's ring. Each leaving is counted, and at the end every task
 * must have been counted exactly once (no loss, no duplicate). The run is
 * bounded by the number of pushes, not by time. The fake tasks are zeroed
 * weft__task objects: the ring stores pointers and touches only ->next (when
 * it overflows), and only the owner does that. */

#define STRESS_STEALERS 3

typedef struct stress {
    weft__lq *owner;
    weft__task *tasks;
    _Atomic unsigned *seen; /* per task: how many times it left the ring */
    unsigned ntasks;
    atomic_int owner_done; /* set after the owner's last pop found its ring empty */
    atomic_int stealers_ready;
    /* [0]: taken by the owner (pops and overflow), [1..]: by each stealer */
    _Atomic unsigned long taken_by[STRESS_STEALERS + 1];
} stress;

typedef struct stealer_arg {
    stress *s;
    unsigned id;
    weft__lq *mine;
} stealer_arg;

static void stress_saw(stress *s, unsigned who, weft__task *t)
{
    /* A pointer that is not one of the tasks counts as task ntasks, which
     * must stay at 0. */
    uintptr_t off = (uintptr_t)t - (uintptr_t)s->tasks;
    size_t i = off % sizeof *t == 0 && off / sizeof *t < s->ntasks ? off / sizeof *t : s->ntasks;
    atomic_fetch_add_explicit(&s->seen[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->taken_by[who], 1, memory_order_relaxed);
}

static void *stress_stealer(void *arg)
{
    stealer_arg *a = arg;
    stress *s = a->s;
    atomic_fetch_add(&s->stealers_ready, 1);
    for (unsigned misses = 0;;) {
        /* Read the flag before trying: a failed steal after the owner is done
         * means the ring is empty for good. */
        int done = atomic_load_explicit(&s->owner_done, memory_order_acquire);
        unsigned moved = 0;
        weft__task *t = weft__lq_steal(s->owner, a->mine, &moved);
        if (t) {
            stress_saw(s, a->id, t);
            while ((t = weft__lq_pop(a->mine)) != NULL)
                stress_saw(s, a->id, t);
        } else if (done) {
            break;
        } else if (++misses % 1024 == 0) {
            sched_yield(); /* fewer CPUs than threads: let the owner fill its ring */
        }
    }
    return NULL;
}

static uint32_t stress_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

Test(queue, concurrent_owner_push_pop_against_three_stealers)
{
    stress s = {0};
    s.ntasks = test_scale_down() ? 100000 : 1000000;
    s.tasks = calloc(s.ntasks, sizeof *s.tasks);
    s.seen = calloc(s.ntasks + 1, sizeof *s.seen);
    cr_assert(s.tasks && s.seen);
    s.owner = new_lq();

    pthread_t th[STRESS_STEALERS];
    stealer_arg args[STRESS_STEALERS];
    for (unsigned i = 0; i < STRESS_STEALERS; i++) {
        args[i] = (stealer_arg){&s, i + 1, new_lq()};
        cr_assert_eq(pthread_create(&th[i], NULL, stress_stealer, &args[i]), 0);
    }
    while (atomic_load(&s.stealers_ready) < STRESS_STEALERS)
        sched_yield();

    /* The owner: bursts of pushes, then a few pops. One burst in 16 is
     * longer than the ring, so the ring fills and overflows; after one round
     * in 16 the owner yields, so that stealers get to run even where the
     * threads outnumber the CPUs. */
    uint32_t rng = 0x9e3779b9u;
    unsigned next = 0;
    unsigned long overflows = 0;
    while (next < s.ntasks) {
        uint32_t r = stress_rand(&rng);
        unsigned burst = (r & 15) == 0 ? WEFT_LQ_SIZE + 64 : 1 + (r >> 4) % 48;
        for (unsigned k = 0; k < burst && next < s.ntasks; k++) {
            weft__batch ov;
            weft__task *t = &s.tasks[next++];
            if (weft__lq_push(s.owner, t, &ov)) {
                overflows++;
                unsigned n = 0;
                for (weft__task *x = ov.head; x; x = x->next, n++)
                    stress_saw(&s, 0, x);
                cr_assert_eq(n, ov.n, "overflow batch: %u linked, %u counted", n, ov.n);
            }
        }
        unsigned pops = (r >> 10) % 32;
        weft__task *t;
        for (unsigned k = 0; k < pops && (t = weft__lq_pop(s.owner)) != NULL; k++)
            stress_saw(&s, 0, t);
        if (((r >> 15) & 63) == 0)
            sched_yield();
    }
    weft__task *t;
    while ((t = weft__lq_pop(s.owner)) != NULL)
        stress_saw(&s, 0, t);
    atomic_store_explicit(&s.owner_done, 1, memory_order_release);
    for (unsigned i = 0; i < STRESS_STEALERS; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);

    unsigned long total = 0;
    for (unsigned i = 0; i <= STRESS_STEALERS; i++)
        total += atomic_load(&s.taken_by[i]);
    cr_log_info("ring stress: %u tasks; owner %lu (%lu overflows), stealers %lu %lu %lu",
                s.ntasks, atomic_load(&s.taken_by[0]), overflows, atomic_load(&s.taken_by[1]),
                atomic_load(&s.taken_by[2]), atomic_load(&s.taken_by[3]));
    cr_assert_eq(atomic_load(&s.seen[s.ntasks]), 0, "a task pointer outside the array came out");
    unsigned lost = 0, dup = 0, first_bad = s.ntasks;
    for (unsigned i = 0; i < s.ntasks; i++) {
        unsigned c = atomic_load(&s.seen[i]);
        lost += c == 0;
        dup += c > 1;
        if (c != 1 && first_bad == s.ntasks)
            first_bad = i;
    }
    cr_assert(lost == 0 && dup == 0, "%u task(s) lost, %u seen more than once (first: task %u)",
              lost, dup, first_bad);
    cr_assert_eq(total, s.ntasks);
    cr_assert_null(weft__lq_pop(s.owner));
    for (unsigned i = 0; i < STRESS_STEALERS; i++) {
        cr_assert_null(weft__lq_pop(args[i].mine));
        free(args[i].mine);
    }
    free(s.owner);
    free(s.seen);
    free(s.tasks);
}
