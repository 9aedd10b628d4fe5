/*
 * For make soak-net (tests/soak_net/run.sh): with WEFT_STATS_FILE=PATH in
 * the environment, a server writes "live_tasks N" (weft_runtime_live_tasks)
 * to PATH every 200 ms, from a plain thread of its own, so that a watcher
 * outside can sample the live tasks beside /proc's resident memory and
 * descriptors. Without the variable nothing starts.
 */
#ifndef SERVE_STATS_H
#define SERVE_STATS_H

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

static struct {
    pthread_t th;
    atomic_int stop;
    int started;
    int fd;
    weft_runtime *rt;
} serve_stats_g;

static void *serve_stats_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&serve_stats_g.stop)) {
        char line[64];
        int n = snprintf(line, sizeof line, "live_tasks %zu\n", weft_runtime_live_tasks(serve_stats_g.rt));
        /* One pwrite of a whole line at offset 0 (the line only grows
         * while the count has more digits, then ftruncate trims it): a
         * reader sees an old or a new line. */
        if (pwrite(serve_stats_g.fd, line, (size_t)n, 0) == n)
            (void)!ftruncate(serve_stats_g.fd, n);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void serve_stats_start(weft_runtime *rt)
{
    const char *path = getenv("WEFT_STATS_FILE");
    if (!path || !*path)
        return;
    serve_stats_g.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (serve_stats_g.fd < 0) {
        perror(path);
        return;
    }
    serve_stats_g.rt = rt;
    serve_stats_g.started = pthread_create(&serve_stats_g.th, NULL, serve_stats_main, NULL) == 0;
}

/* Before the runtime is freed. */
static void serve_stats_stop(void)
{
    if (!serve_stats_g.started)
        return;
    atomic_store(&serve_stats_g.stop, 1);
    pthread_join(serve_stats_g.th, NULL);
    close(serve_stats_g.fd);
    serve_stats_g.started = 0;
}

#endif
