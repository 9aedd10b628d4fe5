/*
 * The main demo: a runtime with one worker per CPU runs 100,000 tasks that
 * sleep, yield and hand results back, and prints what happened.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

#define TASKS 100000

static atomic_long done;

static void *leaf(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    if (i % 100 == 0)
        weft_sleep_ms(1 + i % 7);  /* some wait on a timer */
    else
        weft_yield();              /* the rest just give way once */
    atomic_fetch_add(&done, 1);
    return (void *)(i * 2);
}

static void *root(void *arg)
{
    (void)arg;
    static weft_task *handles[TASKS];
    weft_time t0 = weft_now();
    for (uintptr_t i = 0; i < TASKS; i++)
        handles[i] = weft_spawn(leaf, (void *)i);
    uint64_t sum = 0;
    for (uintptr_t i = 0; i < TASKS; i++) {
        void *r;
        if (weft_join(handles[i], &r) == 0)
            sum += (uintptr_t)r;
    }
    double ms = (double)(weft_now() - t0) / 1e6;
    printf("spawned and joined %d tasks in %.1f ms (%.0f ns per task)\n", TASKS, ms,
           ms * 1e6 / TASKS);
    printf("sum of results %llu (expected %llu)\n", (unsigned long long)sum,
           (unsigned long long)TASKS * (TASKS - 1));
    return NULL;
}

int main(void)
{
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt) {
        perror("weft_runtime_new");
        return 1;
    }
    printf("weft demo: %u workers\n", weft_runtime_workers(rt));
    int rc = weft_runtime_block_on(rt, root, NULL, NULL);
    weft_worker_stats st[64];
    unsigned n = weft_runtime_stats(rt, st, 64);
    for (unsigned i = 0; i < n && i < 64; i++)
        printf("worker %u: ran %llu, stole %llu tasks in %llu steals, parked %llu times, "
               "%llu from the global queue\n",
               i, (unsigned long long)st[i].tasks_run, (unsigned long long)st[i].tasks_stolen,
               (unsigned long long)st[i].steals, (unsigned long long)st[i].parks,
               (unsigned long long)st[i].global_pulls);
    weft_runtime_free(rt);
    printf("tasks finished: %ld\n", atomic_load(&done));
    return rc == 0 && atomic_load(&done) == TASKS ? 0 : 1;
}
