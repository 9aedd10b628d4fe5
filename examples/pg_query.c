/*
 * pg_query: N concurrent queries (one task each) over a pool of M libpq
 * connections, driven by weft_wait_fd (see weft_pg.h for the details).
 *
 *   pg_query CONNINFO [N [M [SLEEP_S]]]      defaults: 50 10 0.1
 *   pg_query "host=127.0.0.1 port=5432 dbname=postgres user=postgres" 50 10
 *   pg_query "host=/var/run/postgresql dbname=postgres" 50 10     (Unix socket)
 *
 * Query i runs `select $1::int, pg_backend_pid(), pg_sleep($2)` with $1 = i,
 * so each result must carry its own parameter. Every query takes SLEEP_S on
 * the server: N of them one after another would take N * SLEEP_S; over M
 * connections they take about N / M * SLEEP_S. Prints one line per query
 * as it completes, a summary line and the total time. Exit status 0 when
 * every query returned its own parameter, 1 otherwise, 2 for bad usage.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#ifndef WEFT_HAVE_LIBPQ
int main(void)
{
    fprintf(stderr, "pg_query: built without libpq (install libpq-dev and rebuild)\n");
    return 2;
}
#else
#include "weft_pg.h"

#define QUERY_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000

typedef struct app {
    const char *conninfo;
    int n, m;
    char sleep_s[32];
    wpg_pool pool;
    atomic_int in_flight, max_in_flight, ok, failed;
    int *backend; /* backend pid that ran query i, 0 if it failed */
} app;

typedef struct job {
    app *a;
    int i;
} job;

static void note_in_flight(app *a, int delta)
{
    int now = atomic_fetch_add(&a->in_flight, delta) + delta;
    int max = atomic_load(&a->max_in_flight);
    while (now > max && !atomic_compare_exchange_weak(&a->max_in_flight, &max, now)) {
    }
}

static void *query_task(void *arg)
{
    job *j = arg;
    app *a = j->a;
    char param[16];
    snprintf(param, sizeof param, "%d", j->i);
    const char *values[2] = {param, a->sleep_s};

    weft_time t0 = weft_now();
    PGconn *conn;
    int rc = wpg_pool_acquire(&a->pool, QUERY_TIMEOUT_MS, &conn);
    if (rc < 0) {
        printf("query %d: no connection: %s\n", j->i, strerror(-rc));
        atomic_fetch_add(&a->failed, 1);
        return NULL;
    }
    note_in_flight(a, 1);
    PGresult *res;
    rc = wpg_exec(conn, "select $1::int, pg_backend_pid(), pg_sleep($2::float8)", 2, values,
                  QUERY_TIMEOUT_MS, &res);
    note_in_flight(a, -1);
    double ms = (double)(weft_now() - t0) / 1e6;
    if (rc < 0) {
        printf("query %d: failed: %s%s%s\n", j->i, strerror(-rc), rc == -EIO ? ": " : "",
               rc == -EIO ? PQerrorMessage(conn) : "");
        atomic_fetch_add(&a->failed, 1);
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        printf("query %d: failed: %s\n", j->i, PQresultErrorMessage(res));
        atomic_fetch_add(&a->failed, 1);
    } else if (strcmp(PQgetvalue(res, 0, 0), param) != 0) {
        printf("query %d: WRONG value %s\n", j->i, PQgetvalue(res, 0, 0));
        atomic_fetch_add(&a->failed, 1);
    } else {
        a->backend[j->i] = atoi(PQgetvalue(res, 0, 1));
        printf("query %d: value %s, backend %s, %.1f ms\n", j->i, PQgetvalue(res, 0, 0),
               PQgetvalue(res, 0, 1), ms);
        atomic_fetch_add(&a->ok, 1);
    }
    PQclear(res);
    wpg_pool_release(&a->pool, conn);
    return NULL;
}

static int distinct(const int *v, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        if (!v[i])
            continue;
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = v[k] == v[i];
        d += !seen;
    }
    return d;
}

static void *root(void *arg)
{
    app *a = arg;
    char err[256];
    weft_time t0 = weft_now();
    int rc = wpg_pool_open(&a->pool, a->conninfo, a->m, CONNECT_TIMEOUT_MS, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "pg_query: cannot connect: %s (%s)\n", err, strerror(-rc));
        return (void *)1;
    }
    weft_time t1 = weft_now();
    printf("pg_query: %d connections open in %.1f ms\n", a->m, (double)(t1 - t0) / 1e6);

    job *jobs = calloc((size_t)a->n, sizeof *jobs);
    weft_task **ts = calloc((size_t)a->n, sizeof *ts);
    if (!jobs || !ts) {
        fprintf(stderr, "pg_query: out of memory\n");
        wpg_pool_close(&a->pool);
        free(jobs);
        free(ts);
        return (void *)1;
    }
    for (int i = 0; i < a->n; i++) {
        jobs[i] = (job){a, i};
        ts[i] = weft_spawn(query_task, &jobs[i]);
        if (!ts[i]) {
            printf("query %d: cannot spawn\n", i);
            atomic_fetch_add(&a->failed, 1);
        }
    }
    for (int i = 0; i < a->n; i++)
        if (ts[i])
            weft_join(ts[i], NULL);
    double total = (double)(weft_now() - t1) / 1e9;
    wpg_pool_close(&a->pool);
    double sleep_s = atof(a->sleep_s);
    printf("summary: %d ok, %d failed, %d connections used, max %d in flight\n",
           atomic_load(&a->ok), atomic_load(&a->failed), distinct(a->backend, a->n),
           atomic_load(&a->max_in_flight));
    printf("total: %.3f s for %d queries of %.3f s over %d connections (one after another: at "
           "least %.3f s)\n",
           total, a->n, sleep_s, a->m, a->n * sleep_s);
    free(jobs);
    free(ts);
    return atomic_load(&a->ok) == a->n ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: %s CONNINFO [N [M [SLEEP_S]]]   (defaults 50 10 0.1)\n", argv[0]);
        return 2;
    }
    static app a;
    a.conninfo = argv[1];
    a.n = argc > 2 ? atoi(argv[2]) : 50;
    a.m = argc > 3 ? atoi(argv[3]) : 10;
    snprintf(a.sleep_s, sizeof a.sleep_s, "%s", argc > 4 ? argv[4] : "0.1");
    if (a.n < 1 || a.m < 1 || atof(a.sleep_s) < 0) {
        fprintf(stderr, "pg_query: N and M must be at least 1, SLEEP_S not negative\n");
        return 2;
    }
    if (!PQisthreadsafe()) {
        fprintf(stderr, "pg_query: this libpq is not thread-safe\n");
        return 1;
    }
    a.backend = calloc((size_t)a.n, sizeof *a.backend);
    if (!a.backend)
        return 1;
    void *result = (void *)1;
    int rc = weft_main(root, &a, &result);
    free(a.backend);
    if (rc < 0) {
        fprintf(stderr, "pg_query: runtime: %s\n", strerror(-rc));
        return 1;
    }
    return result ? 1 : 0;
}
#endif
