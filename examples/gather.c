/*
 * gather: two tasks run concurrently. Task A sleeps 2 s, task B sleeps 1 s;
 * B finishes first, and gathering both takes about 2 s in all, not 3.
 * Shows weft_join_any (first to finish) and weft_join_all (every result),
 * with a timeline of elapsed milliseconds.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

static weft_time t0;

static void event(const char *what)
{
    printf("%6" PRId64 " ms  %s\n", (weft_now() - t0) / 1000000, what);
    fflush(stdout);
}

static void *task_a(void *arg)
{
    (void)arg;
    event("A starts (sleeps 2000 ms)");
    weft_sleep_ms(2000);
    event("A finishes");
    return "result of A";
}

static void *task_b(void *arg)
{
    (void)arg;
    event("B starts (sleeps 1000 ms)");
    weft_sleep_ms(1000);
    event("B finishes");
    return "result of B";
}

static void *root(void *arg)
{
    (void)arg;
    t0 = weft_now();
    event("main spawns A and B");
    weft_task *ts[2] = {weft_spawn(task_a, NULL), weft_spawn(task_b, NULL)};
    void *r;
    int first = weft_join_any(ts, 2, &r, -1);
    if (first < 0) {
        fprintf(stderr, "join_any: %d\n", first);
        return (void *)1;
    }
    char line[80];
    snprintf(line, sizeof line, "join_any: %s finished first: \"%s\"", first ? "B" : "A", (char *)r);
    event(line);
    ts[first] = NULL;
    weft_task *rest = ts[1 - first];
    void *results[1];
    int rc = weft_join_all(&rest, 1, results, -1);
    snprintf(line, sizeof line, "join_all: rc %d, \"%s\"", rc, (char *)results[0]);
    event(line);
    weft_time total = weft_now() - t0;
    printf("total %" PRId64 " ms (concurrent: about 2000, not 3000)\n", total / 1000000);
    return total < 2900000000LL ? NULL : (void *)1;
}

int main(void)
{
    void *r = NULL;
    int rc = weft_main(root, NULL, &r);
    if (rc < 0) {
        fprintf(stderr, "weft_main: %d\n", rc);
        return 1;
    }
    return r ? 1 : 0;
}
