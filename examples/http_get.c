/*
 * HTTP client: fetches URLs with libcurl driven by weft tasks (weft_curl.h).
 *
 *   build/examples/http_get [-k K] [-t TIMEOUT_MS] [-w WORKERS] URL...
 *
 * At most K fetches are in flight at once (default 8): K tasks take the
 * next URL from the list until none is left, all through one client, so
 * connections to the same server are kept alive and reused. Each fetch has
 * its own timeout (default 10000 ms). For every URL it prints, as the
 * fetch completes:
 *
 *   200 13 B 0.4 ms http://127.0.0.1:8080/
 *   ERR Couldn't connect to server (CURLE 7) 0.2 ms http://127.0.0.1:1/
 *
 * and exits 0 if every fetch got a response (any status), 1 otherwise.
 * Built only where libcurl's headers are (the Makefile passes
 * -DWEFT_HAVE_LIBCURL and -lcurl).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#include "weft_curl.h"

typedef struct job {
    char **urls;
    int n;
    long timeout_ms;
    atomic_int next;
    atomic_int failures;
    weft_curl *client;
    pthread_mutex_t out_lock; /* one line at a time */
} job;

static void *fetcher(void *arg)
{
    job *j = arg;
    weft_curl_resp r = {0};
    int i;
    while ((i = atomic_fetch_add(&j->next, 1)) < j->n) {
        weft_time t0 = weft_now();
        CURLcode rc = weft_curl_get(j->client, j->urls[i], j->timeout_ms, &r);
        double ms = (double)(weft_now() - t0) / 1e6;
        pthread_mutex_lock(&j->out_lock);
        if (rc == CURLE_OK)
            printf("%ld %zu B %.1f ms %s\n", r.status, r.len, ms, j->urls[i]);
        else
            printf("ERR %s (CURLE %d) %.1f ms %s\n", r.error, (int)rc, ms, j->urls[i]);
        fflush(stdout);
        pthread_mutex_unlock(&j->out_lock);
        if (rc != CURLE_OK)
            atomic_fetch_add(&j->failures, 1);
    }
    weft_curl_resp_free(&r);
    return NULL;
}

typedef struct main_arg {
    job *j;
    int k;
} main_arg;

static void *run(void *arg)
{
    main_arg *m = arg;
    job *j = m->j;
    j->client = weft_curl_new(NULL);
    if (!j->client) {
        fprintf(stderr, "http_get: cannot make a curl client\n");
        return (void *)1;
    }
    weft_task **t = calloc((size_t)m->k, sizeof *t);
    int started = 0;
    for (int i = 0; t && i < m->k; i++)
        if ((t[i] = weft_spawn(fetcher, j)))
            started++;
    if (started == 0) {
        fprintf(stderr, "http_get: cannot start fetchers\n");
        free(t);
        weft_curl_free(j->client);
        return (void *)1;
    }
    for (int i = 0; i < m->k; i++)
        if (t[i])
            weft_join(t[i], NULL);
    free(t);
    weft_curl_free(j->client);
    return NULL;
}

static void usage(const char *p)
{
    fprintf(stderr, "usage: %s [-k MAX_IN_FLIGHT] [-t TIMEOUT_MS] [-w WORKERS] URL...\n", p);
    exit(2);
}

int main(int argc, char **argv)
{
    int k = 8, workers = 0, opt;
    long timeout_ms = 10000;
    while ((opt = getopt(argc, argv, "k:t:w:h")) != -1) {
        switch (opt) {
        case 'k':
            k = atoi(optarg);
            break;
        case 't':
            timeout_ms = atol(optarg);
            break;
        case 'w':
            workers = atoi(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind >= argc || k < 1 || timeout_ms < 0 || workers < 0)
        usage(argv[0]);
    if (weft_curl_global_init() != CURLE_OK) {
        fprintf(stderr, "http_get: curl_global_init failed\n");
        return 1;
    }
    job j = {.urls = argv + optind, .n = argc - optind, .timeout_ms = timeout_ms};
    pthread_mutex_init(&j.out_lock, NULL);
    if (k > j.n)
        k = j.n;
    main_arg m = {&j, k};
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = (unsigned)workers;
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt) {
        perror("http_get: weft_runtime_new");
        return 1;
    }
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, run, &m, &res);
    weft_runtime_free(rt);
    curl_global_cleanup();
    if (rc < 0 || res)
        return 1;
    return atomic_load(&j.failures) ? 1 : 0;
}
