/* weft_runtime_live_tasks: tasks spawned and not finished. */
#include "util.h"

static void *wait_event(void *arg) { return (void *)(intptr_t)weft_event_wait(arg, -1); }

static void *count_root(void *arg)
{
    (void)arg;
    weft_runtime *rt = weft_current_runtime();
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 1, "only the root: %zu", weft_runtime_live_tasks(rt));
    weft_event *e;
    TEST_EXPECT(weft_event_create(&e) == 0, "event");
    weft_task *t[100];
    for (int i = 0; i < 100; i++)
        TEST_EXPECT(weft_task_spawn(NULL, wait_event, e, NULL, &t[i]) == 0, "spawn %d", i);
    /* queued ones count as much as waiting ones */
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 101, "root + 100 queued: %zu", weft_runtime_live_tasks(rt));
    weft_sleep_ms(5);
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 101, "root + 100 waiting: %zu", weft_runtime_live_tasks(rt));
    weft_event_set(e);
    for (int i = 0; i < 100; i++)
        TEST_EXPECT(weft_join(t[i], NULL) == 0, "join %d", i);
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 1, "all joined: %zu", weft_runtime_live_tasks(rt));
    /* a detached task counts until it ends */
    weft_event_clear(e);
    TEST_EXPECT(weft_go(wait_event, e) == 0, "go");
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 2, "root + detached: %zu", weft_runtime_live_tasks(rt));
    weft_event_set(e);
    for (int i = 0; i < 10000 && weft_runtime_live_tasks(rt) != 1; i++)
        weft_sleep_ms(1);
    TEST_EXPECT(weft_runtime_live_tasks(rt) == 1, "detached one ended: %zu", weft_runtime_live_tasks(rt));
    weft_event_free(e);
    return NULL;
}

Test(live_tasks, counts_spawned_until_finished)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_live_tasks(rt), 0);
    void *res = NULL;
    cr_assert_eq(weft_runtime_block_on(rt, count_root, NULL, &res), 0);
    test_assert_no_failure();
    cr_assert_null(res);
    cr_assert_eq(weft_runtime_live_tasks(rt), 0, "after block_on: %zu", weft_runtime_live_tasks(rt));
    weft_runtime_free(rt);
    cr_assert_eq(weft_runtime_live_tasks(NULL), 0);
}
