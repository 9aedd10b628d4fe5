/*
 * The main demo: a runtime with one worker per CPU runs 100,000 tasks that
 * sleep, yield and hand results back, and prints what happened.
 *
 * `demo --inside` (the tour's last step) then looks inside the running
 * runtime: a few tasks wait on different things, weft_runtime_dump lists
 * them with their backtraces, and weft_metrics_print shows the counters and
 * the histograms the 100,000 tasks filled.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

/* ---- the inside view */
static weft_event *go;
static weft_chan *inbox;
static int quiet_pipe[2];

static void *sleeper(void *a) { (void)a; return (void *)(intptr_t)weft_sleep_ms(60000); }
static void *receiver(void *a)
{
    (void)a;
    int v = 0;
    weft_chan_recv(inbox, &v);
    return (void *)(intptr_t)v;
}
static void *reader(void *a)
{
    (void)a;
    return (void *)(intptr_t)weft_wait_fd(quiet_pipe[0], WEFT_READ, -1);
}
static void *waiter(void *a) { (void)a; return (void *)(intptr_t)weft_event_wait(go, -1); }

static int inside_view(weft_runtime *rt)
{
    go = weft_event_new();
    inbox = weft_chan_new(1, sizeof(int));
    if (!go || !inbox || pipe(quiet_pipe) != 0)
        return 1;
    const char *names[] = {"sleeper", "receiver", "reader", "waiter"};
    weft_fn fns[] = {sleeper, receiver, reader, waiter};
    weft_task *t[4];
    for (int i = 0; i < 4; i++) {
        weft_spawn_opts o = {.name = names[i]};
        t[i] = weft_spawn_on_ex(rt, fns[i], NULL, &o);
        if (!t[i])
            return 1;
    }
    char *buf = NULL;
    size_t len = 0;
    for (int tries = 0; tries < 500; tries++) { /* until all four have parked */
        free(buf);
        buf = NULL;
        FILE *f = open_memstream(&buf, &len);
        weft_runtime_dump(rt, f);
        fclose(f);
        if (strstr(buf, "(4 parked"))
            break;
        usleep(10000);
    }
    printf("\n---- weft_runtime_dump: four tasks, each waiting on something else\n%s", buf);
    free(buf);
    weft_metrics m;
    weft_runtime_metrics(rt, &m, NULL, 0);
    printf("\n---- weft_runtime_metrics (the 100,000 tasks above filled the histograms)\n");
    weft_metrics_print(&m, stdout);
    int v = 7;
    weft_chan_send(inbox, &v);
    weft_event_set(go);
    if (write(quiet_pipe[1], "x", 1) != 1)
        return 1;
    weft_cancel(t[0]);
    for (int i = 0; i < 4; i++)
        weft_join(t[i], NULL);
    close(quiet_pipe[0]);
    close(quiet_pipe[1]);
    weft_chan_free(inbox);
    weft_event_free(go);
    return 0;
}

int main(int argc, char **argv)
{
    int inside = argc > 1 && strcmp(argv[1], "--inside") == 0;
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
    if (inside && inside_view(rt) != 0)
        rc = -1;
    weft_runtime_free(rt);
    printf("tasks finished: %ld\n", atomic_load(&done));
    return rc == 0 && atomic_load(&done) == TASKS ? 0 : 1;
}
