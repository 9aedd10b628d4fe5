/* Run queues, single-threaded and deterministic: the local ring (wrap-around,
 * overflow to the global queue, steal-half) and the sharded global queue. */
#include "util.h"

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
