/*
 * pipeline: producer -> N workers -> collector, connected by channels.
 * The producer sends the numbers 1..COUNT and closes the job channel; each
 * worker squares what it receives until the job channel reports -EPIPE;
 * the last worker to finish closes the result channel (a wait group counts
 * them), so the collector sees -EPIPE once every result is in. Shutdown
 * propagates through the closes, with no sentinel values.
 *
 *   usage: pipeline [workers] [count]
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

struct pipe_cfg {
    int workers;
    int64_t count;
    weft_chan *jobs, *results;
    weft_wg *running;
};

struct worker_arg {
    struct pipe_cfg *p;
    int id;
    int64_t done;
};

static void *producer(void *arg)
{
    struct pipe_cfg *p = arg;
    for (int64_t i = 1; i <= p->count; i++)
        if (weft_chan_send(p->jobs, &i) < 0)
            break;
    weft_chan_close(p->jobs);
    return NULL;
}

static void *worker(void *arg)
{
    struct worker_arg *w = arg;
    int64_t n;
    while (weft_chan_recv(w->p->jobs, &n) == 0) {
        int64_t sq = n * n;
        if (weft_chan_send(w->p->results, &sq) < 0)
            break;
        w->done++;
    }
    weft_wg_done(w->p->running);
    if (weft_wg_wait(w->p->running, 0) == 0)
        weft_chan_close(w->p->results); /* last one out closes (a second close is harmless) */
    return NULL;
}

static void *collector(void *arg)
{
    struct pipe_cfg *p = arg;
    int64_t v, n = 0, sum = 0;
    while (weft_chan_recv(p->results, &v) == 0) {
        n++;
        sum += v;
    }
    printf("collector: %" PRId64 " results, sum of squares %" PRId64 "\n", n, sum);
    int64_t c = p->count;
    int64_t want = c * (c + 1) * (2 * c + 1) / 6;
    return (n == c && sum == want) ? NULL : (void *)1;
}

static void *root(void *arg)
{
    struct pipe_cfg *p = arg;
    p->jobs = weft_chan_new(64, sizeof(int64_t));
    p->results = weft_chan_new(64, sizeof(int64_t));
    p->running = weft_wg_new();
    weft_wg_add(p->running, p->workers);
    struct worker_arg *wa = calloc((size_t)p->workers, sizeof *wa);
    weft_group *g = weft_group_new(0);
    weft_time t0 = weft_now();
    weft_group_spawn(g, producer, p);
    for (int i = 0; i < p->workers; i++) {
        wa[i] = (struct worker_arg){p, i, 0};
        weft_group_spawn(g, worker, &wa[i]);
    }
    weft_task *col = weft_spawn(collector, p);
    void *bad = NULL;
    weft_join(col, &bad);
    weft_group_wait(g, -1);
    weft_group_free(g);
    double ms = (double)(weft_now() - t0) / 1e6;
    for (int i = 0; i < p->workers; i++)
        printf("worker %d: %" PRId64 " jobs\n", i, wa[i].done);
    printf("%" PRId64 " items through %d workers in %.1f ms: %s\n", p->count, p->workers, ms,
           bad ? "MISMATCH" : "all accounted for");
    free(wa);
    weft_wg_free(p->running);
    weft_chan_free(p->jobs);
    weft_chan_free(p->results);
    return bad;
}

int main(int argc, char **argv)
{
    struct pipe_cfg p = {.workers = argc > 1 ? atoi(argv[1]) : 4,
                         .count = argc > 2 ? atoll(argv[2]) : 100000};
    if (p.workers < 1 || p.count < 0 || p.count > 1000000000) {
        fprintf(stderr, "usage: pipeline [workers] [count]\n");
        return 2;
    }
    void *r = NULL;
    int rc = weft_main(root, &p, &r);
    if (rc < 0) {
        fprintf(stderr, "weft_main: %d\n", rc);
        return 1;
    }
    return r ? 1 : 0;
}
