/*
 * PostgreSQL through libpq, driven by weft tasks (common/weft_pg.h, the
 * same code examples/pg_query.c uses), against a real server that each test
 * starts for itself (tests/pg_server.h: initdb + postgres as an unprivileged
 * user in a fresh /tmp directory, stopped and removed whatever happens).
 *
 *  - 50 queries of `select pg_sleep(0.1), $1::int` over 10 connections:
 *    each returns its own parameter, 10 are in flight at once, and all take
 *    far less than the 5 s they take one after another;
 *  - a 300,000-row result arrives complete (count and a checksum the server
 *    computes independently) 20 times out of 20;
 *  - weft_cancel on a task waiting for `select pg_sleep(30)`: its wait
 *    returns -ECANCELED, the query is cancelled on the server, and the same
 *    connection (same backend) answers the next query;
 *  - a query timeout does the same with -ETIMEDOUT; an SQL error is a result;
 *  - connection errors: refused, and a server that never answers (timeout);
 *  - examples/pg_query run as a program;
 * each over TCP (127.0.0.1) and over the Unix socket where it matters.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion unwinds with longjmp, which cannot leave a task's
 * stack). The test body asserts on the record.
 */
#include <criterion/criterion.h>

#ifndef WEFT_HAVE_LIBPQ
Test(pg, needs_libpq)
{
    cr_skip_test("built without libpq (WEFT_HAVE_LIBPQ undefined): install libpq-dev and "
                 "postgresql (make test does) and rebuild");
}
#else

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "weft_pg.h"
#include "pg_server.h"
#include "util.h"

#define PG_TIMEOUT_MS 30000 /* generous: only there so a bug fails instead of hanging */

static atomic_int pg_failures;
static char pg_failure_msg[1024];

static void pg_fail(int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&pg_failures, 1) != 0)
        return;
    int n = snprintf(pg_failure_msg, sizeof pg_failure_msg, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pg_failure_msg + n, sizeof pg_failure_msg - (size_t)n, fmt, ap);
    va_end(ap);
}

#define PG_EXPECT(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            pg_fail(__LINE__, __VA_ARGS__);                                                        \
            return (void *)(intptr_t)__LINE__;                                                     \
        }                                                                                          \
    } while (0)

static pg_server srv;

static void pg_fini(void) { pg_server_release(&srv); }

TestSuite(pg, .fini = pg_fini, .timeout = 180);

/* Starts the server of this test, or skips when PostgreSQL is not installed. */
static void pg_start(void)
{
    char err[2048];
    int rc = pg_server_start(&srv, err, sizeof err);
    if (rc == -ENOENT)
        cr_skip_test("PostgreSQL server not found: %s (apt-get install postgresql)", err);
    cr_assert_eq(rc, 0, "could not start PostgreSQL (%s): %s", strerror(-rc), err);
}

static const char *pg_conninfo(int unix_socket)
{
    return unix_socket ? srv.unix_ : srv.tcp;
}

static void pg_run(unsigned workers, weft_fn fn, void *arg)
{
    weft_runtime *rt = test_runtime(workers);
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, fn, arg, &res);
    weft_runtime_free(rt);
    cr_assert_eq(rc, 0, "block_on: %d", rc);
    cr_assert_eq(atomic_load(&pg_failures), 0, "%d failure(s), first: %s",
                 atomic_load(&pg_failures), pg_failure_msg);
    cr_assert_null(res, "root task failed at line %d", (int)(intptr_t)res);
}

static double pg_secs(weft_time t0) { return (double)(weft_now() - t0) / 1e9; }

/* ------------------------------------------------------------ 50 queries */

#define CONC_QUERIES 50
#define CONC_CONNS 10

typedef struct conc {
    const char *conninfo;
    wpg_pool pool;
    atomic_int in_flight, max_in_flight, ok;
    int backend[CONC_QUERIES];
    double total_s;
} conc;

typedef struct conc_job {
    conc *c;
    int i;
} conc_job;

static void *conc_query(void *arg)
{
    conc_job *j = arg;
    conc *c = j->c;
    char param[16];
    snprintf(param, sizeof param, "%d", j->i);
    const char *values[1] = {param};
    PGconn *conn;
    int rc = wpg_pool_acquire(&c->pool, PG_TIMEOUT_MS, &conn);
    PG_EXPECT(rc == 0, "query %d: acquire: %d", j->i, rc);
    int now = atomic_fetch_add(&c->in_flight, 1) + 1;
    int max = atomic_load(&c->max_in_flight);
    while (now > max && !atomic_compare_exchange_weak(&c->max_in_flight, &max, now)) {
    }
    PGresult *res;
    rc = wpg_exec(conn, "select pg_sleep(0.1), $1::int", 1, values, PG_TIMEOUT_MS, &res);
    atomic_fetch_sub(&c->in_flight, 1);
    c->backend[j->i] = PQbackendPID(conn);
    wpg_pool_release(&c->pool, conn);
    PG_EXPECT(rc == 0, "query %d: wpg_exec: %d", j->i, rc);
    int good = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
               PQnfields(res) == 2 && strcmp(PQgetvalue(res, 0, 1), param) == 0;
    char got[64];
    snprintf(got, sizeof got, "%s", PQntuples(res) == 1 && PQnfields(res) == 2
                                        ? PQgetvalue(res, 0, 1)
                                        : PQresultErrorMessage(res));
    PQclear(res);
    PG_EXPECT(good, "query %d: got '%s'", j->i, got);
    atomic_fetch_add(&c->ok, 1);
    return NULL;
}

static void *conc_root(void *arg)
{
    conc *c = arg;
    char err[256];
    int rc = wpg_pool_open(&c->pool, c->conninfo, CONC_CONNS, PG_TIMEOUT_MS, err, sizeof err);
    PG_EXPECT(rc == 0, "pool: %d %s", rc, err);
    conc_job jobs[CONC_QUERIES];
    weft_task *ts[CONC_QUERIES];
    weft_time t0 = weft_now();
    for (int i = 0; i < CONC_QUERIES; i++) {
        jobs[i] = (conc_job){c, i};
        ts[i] = weft_spawn(conc_query, &jobs[i]);
    }
    for (int i = 0; i < CONC_QUERIES; i++)
        if (ts[i])
            weft_join(ts[i], NULL);
    c->total_s = pg_secs(t0);
    wpg_pool_close(&c->pool);
    return NULL;
}

static void conc_test(int unix_socket)
{
    pg_start();
    static conc c;
    c.conninfo = pg_conninfo(unix_socket);
    pg_run(4, conc_root, &c);
    fprintf(stderr, "pg: %d x pg_sleep(0.1) over %d connections (%s): %.3f s, max %d in flight\n",
            CONC_QUERIES, CONC_CONNS, unix_socket ? "unix" : "tcp", c.total_s,
            atomic_load(&c.max_in_flight));
    cr_assert_eq(atomic_load(&c.ok), CONC_QUERIES, "%d of %d queries right", atomic_load(&c.ok),
                 CONC_QUERIES);
    /* Structural: the pool let exactly its 10 connections run at once. */
    cr_assert_eq(atomic_load(&c.max_in_flight), CONC_CONNS, "max in flight %d",
                 atomic_load(&c.max_in_flight));
    int distinct = 0;
    for (int i = 0; i < CONC_QUERIES; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = c.backend[k] == c.backend[i];
        distinct += !seen;
    }
    cr_assert_eq(distinct, CONC_CONNS, "%d distinct backends", distinct);
    /* The overlap is proven by the counts above; how long it took depends on
     * the machine, so it is reported, not asserted (serial: at least 5 s). */
    cr_log_info("50 queries took %.3f s (serial: at least 5 s)", c.total_s);
}

Test(pg, concurrent_queries_tcp) { conc_test(0); }
Test(pg, concurrent_queries_unix) { conc_test(1); }

/* ------------------------------------------------------------ large result */

#define BIG_ROWS 300000
#define BIG_SQL "select g, md5(g::text) from generate_series(1, 300000) g"
/* The server's own checksum of the same values: count, sum(g), and each md5
 * read as four 32-bit hex words, weighted 1, 3, 5, 7. */
#define BIG_REF_SQL                                                                                \
    "select count(*), sum(g), sum(('x' || substr(m, 1, 8))::bit(32)::bigint"                       \
    " + 3 * ('x' || substr(m, 9, 8))::bit(32)::bigint"                                             \
    " + 5 * ('x' || substr(m, 17, 8))::bit(32)::bigint"                                            \
    " + 7 * ('x' || substr(m, 25, 8))::bit(32)::bigint)"                                           \
    " from (select g, md5(g::text) m from generate_series(1, 300000) g) s"

/* 20 runs: half over TCP and half over the Unix socket, the two
 * connections at once (each run is ~0.3 s of server time). */
typedef struct big big;
typedef struct big_lane {
    big *b;
    const char *conninfo;
    int runs, complete;
    double slowest_s;
} big_lane;

struct big {
    big_lane lane[2];
    long long ref_count;
    unsigned long long ref_sum, ref_words;
    double total_s;
};

static unsigned long long big_hex8(const char *s)
{
    char w[9];
    memcpy(w, s, 8);
    w[8] = '\0';
    return strtoull(w, NULL, 16);
}

static void *big_lane_task(void *arg)
{
    big_lane *l = arg;
    big *b = l->b;
    char err[256];
    PGconn *conn;
    int rc = wpg_connect(l->conninfo, PG_TIMEOUT_MS, &conn, err, sizeof err);
    PG_EXPECT(rc == 0, "connect %s: %d %s", l->conninfo, rc, err);
    for (int run = 0; run < l->runs; run++) {
        weft_time t0 = weft_now();
        PGresult *res;
        rc = wpg_exec(conn, BIG_SQL, 0, NULL, PG_TIMEOUT_MS, &res);
        if (rc != 0)
            wpg_finish(conn);
        PG_EXPECT(rc == 0, "%s run %d: wpg_exec %d", l->conninfo, run, rc);
        int rows = PQntuples(res);
        int status = PQresultStatus(res);
        unsigned long long sum = 0, words = 0;
        int in_order = 1, shape = PQnfields(res) == 2;
        for (int r = 0; shape && r < rows; r++) {
            long long g = atoll(PQgetvalue(res, r, 0));
            const char *m = PQgetvalue(res, r, 1);
            in_order &= g == r + 1;
            if (PQgetlength(res, r, 1) != 32) {
                shape = 0;
                break;
            }
            sum += (unsigned long long)g;
            words += big_hex8(m) + 3 * big_hex8(m + 8) + 5 * big_hex8(m + 16) + 7 * big_hex8(m + 24);
        }
        PQclear(res);
        double s = pg_secs(t0);
        if (s > l->slowest_s)
            l->slowest_s = s;
        int right = status == PGRES_TUPLES_OK && shape && rows == BIG_ROWS && in_order &&
                    sum == b->ref_sum && words == b->ref_words;
        if (!right)
            wpg_finish(conn);
        PG_EXPECT(right,
                  "%s run %d: status %d, shape %d, %d rows, order %d, sum %llu (server %llu), "
                  "words %llu (server %llu)",
                  l->conninfo, run, status, shape, rows, in_order, sum, b->ref_sum, words,
                  b->ref_words);
        l->complete++;
    }
    wpg_finish(conn);
    return NULL;
}

static void *big_root(void *arg)
{
    big *b = arg;
    char err[256];
    PGconn *conn;
    int rc = wpg_connect(b->lane[0].conninfo, PG_TIMEOUT_MS, &conn, err, sizeof err);
    PG_EXPECT(rc == 0, "connect: %d %s", rc, err);
    PGresult *ref;
    rc = wpg_exec(conn, BIG_REF_SQL, 0, NULL, PG_TIMEOUT_MS, &ref);
    int ok = rc == 0 && PQresultStatus(ref) == PGRES_TUPLES_OK;
    if (ok) {
        b->ref_count = atoll(PQgetvalue(ref, 0, 0));
        b->ref_sum = strtoull(PQgetvalue(ref, 0, 1), NULL, 10);
        b->ref_words = strtoull(PQgetvalue(ref, 0, 2), NULL, 10);
    }
    PQclear(ref);
    wpg_finish(conn);
    PG_EXPECT(ok && b->ref_count == BIG_ROWS, "reference: %d, count %lld", rc, b->ref_count);

    weft_time t0 = weft_now();
    weft_task *ts[2];
    for (int i = 0; i < 2; i++)
        ts[i] = weft_spawn(big_lane_task, &b->lane[i]);
    for (int i = 0; i < 2; i++)
        if (ts[i])
            weft_join(ts[i], NULL);
    b->total_s = pg_secs(t0);
    return NULL;
}

Test(pg, large_result_complete)
{
    pg_start();
    static big b;
    int runs = test_scale_down() ? 4 : 20;
    for (int i = 0; i < 2; i++)
        b.lane[i] = (big_lane){&b, i ? srv.unix_ : srv.tcp, runs / 2, 0, 0};
    pg_run(2, big_root, &b);
    fprintf(stderr,
            "pg: %d rows x %d runs (tcp and unix at once): %d + %d complete, %.2f s in all, "
            "slowest %.3f / %.3f s\n",
            BIG_ROWS, runs, b.lane[0].complete, b.lane[1].complete, b.total_s,
            b.lane[0].slowest_s, b.lane[1].slowest_s);
    cr_assert_eq(b.lane[0].complete + b.lane[1].complete, runs, "%d + %d of %d runs complete",
                 b.lane[0].complete, b.lane[1].complete, runs);
}

/* ------------------------------------------------------------ cancellation */

#define SLEEP30 "select pg_sleep(30)"

typedef struct cancel_ctx {
    const char *conninfo;
    PGconn *victim_conn;
    atomic_int victim_rc;
    double victim_s;
    int use_timeout; /* 1: no weft_cancel, a 300 ms query timeout instead */
} cancel_ctx;

static void *cancel_victim(void *arg)
{
    cancel_ctx *c = arg;
    weft_time t0 = weft_now();
    PGresult *res = NULL;
    int rc = wpg_exec(c->victim_conn, SLEEP30, 0, NULL, c->use_timeout ? 300 : 60000, &res);
    c->victim_s = pg_secs(t0);
    PQclear(res);
    atomic_store(&c->victim_rc, rc);
    return NULL;
}

/* Active `select pg_sleep(30)` statements on the server, seen from mon. */
static int cancel_active(PGconn *mon)
{
    PGresult *res;
    int rc = wpg_exec(mon,
                      "select count(*) from pg_stat_activity where query = '" SLEEP30
                      "' and state = 'active'",
                      0, NULL, PG_TIMEOUT_MS, &res);
    if (rc < 0)
        return rc;
    int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -EIO;
    PQclear(res);
    return n;
}

static void *cancel_root(void *arg)
{
    cancel_ctx *c = arg;
    char err[256];
    PGconn *mon;
    int rc = wpg_connect(c->conninfo, PG_TIMEOUT_MS, &c->victim_conn, err, sizeof err);
    PG_EXPECT(rc == 0, "connect: %d %s", rc, err);
    rc = wpg_connect(c->conninfo, PG_TIMEOUT_MS, &mon, err, sizeof err);
    PG_EXPECT(rc == 0, "connect: %d %s", rc, err);
    int pid = PQbackendPID(c->victim_conn);
    atomic_store(&c->victim_rc, 1);

    weft_task *victim = weft_spawn(cancel_victim, c);
    PG_EXPECT(victim, "spawn");
    /* Until the server runs it: then the task is surely waiting for it. */
    weft_time give_up = weft_now() + (weft_time)PG_TIMEOUT_MS * 1000000;
    int active = 0;
    while ((active = cancel_active(mon)) == 0 && weft_now() < give_up &&
           (!c->use_timeout || atomic_load(&c->victim_rc) == 1))
        weft_sleep_ms(5);
    /* (With a 300 ms timeout, a slow machine may time out before we look.) */
    PG_EXPECT(active == 1 || (c->use_timeout && active == 0 && atomic_load(&c->victim_rc) != 1),
              "the long query never showed as active: %d", active);
    if (!c->use_timeout) {
        PG_EXPECT(atomic_load(&c->victim_rc) == 1, "victim returned early: %d",
                  atomic_load(&c->victim_rc));
        weft_cancel(victim);
        rc = weft_join(victim, NULL);
        PG_EXPECT(rc == -ECANCELED, "join: %d", rc);
        PG_EXPECT(atomic_load(&c->victim_rc) == -ECANCELED, "the wait returned %d, not -ECANCELED",
                  atomic_load(&c->victim_rc));
    } else {
        rc = weft_join(victim, NULL);
        PG_EXPECT(rc == 0, "join: %d", rc);
        PG_EXPECT(atomic_load(&c->victim_rc) == -ETIMEDOUT, "the wait returned %d, not -ETIMEDOUT",
                  atomic_load(&c->victim_rc));
        PG_EXPECT(c->victim_s >= 0.3, "timed out early: %.3f s", c->victim_s);
    }
    PG_EXPECT(c->victim_s < 20, "returned after %.3f s", c->victim_s);
    /* The query is gone from the server, not just abandoned by us. */
    PG_EXPECT((active = cancel_active(mon)) == 0, "still active on the server: %d", active);

    /* The same connection, the same backend, answers the next query. */
    PG_EXPECT(wpg_usable(c->victim_conn), "connection not usable");
    PG_EXPECT(PQbackendPID(c->victim_conn) == pid, "backend %d, was %d",
              PQbackendPID(c->victim_conn), pid);
    const char *v[1] = {"4242"};
    PGresult *res;
    rc = wpg_exec(c->victim_conn, "select $1::int + 1", 1, v, PG_TIMEOUT_MS, &res);
    PG_EXPECT(rc == 0, "next query: %d %s", rc, PQerrorMessage(c->victim_conn));
    int right = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "4243") == 0;
    char got[128];
    snprintf(got, sizeof got, "%s",
             PQntuples(res) ? PQgetvalue(res, 0, 0) : PQresultErrorMessage(res));
    PQclear(res);
    PG_EXPECT(right, "next query returned '%s'", got);

    /* An SQL error is a result, and leaves the connection usable too. */
    rc = wpg_exec(c->victim_conn, "select 1 / 0", 0, NULL, PG_TIMEOUT_MS, &res);
    PG_EXPECT(rc == 0, "select 1/0: %d", rc);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    int div0 = PQresultStatus(res) == PGRES_FATAL_ERROR && state && strcmp(state, "22012") == 0;
    PQclear(res);
    PG_EXPECT(div0, "select 1/0 did not fail with 22012");
    PG_EXPECT(wpg_usable(c->victim_conn), "connection not usable after an SQL error");

    wpg_finish(c->victim_conn);
    wpg_finish(mon);
    return NULL;
}

static void cancel_test(int unix_socket, int use_timeout)
{
    pg_start();
    static cancel_ctx c;
    c.conninfo = pg_conninfo(unix_socket);
    c.use_timeout = use_timeout;
    pg_run(2, cancel_root, &c);
    fprintf(stderr, "pg: %s of pg_sleep(30) (%s): the waiting task returned after %.3f s\n",
            use_timeout ? "300 ms timeout" : "weft_cancel", unix_socket ? "unix" : "tcp",
            c.victim_s);
    /* The server says why the statement ended. */
    cr_assert(pg_server_log_has(&srv, "canceling statement due to user request"),
              "the server log shows no cancelled statement");
}

Test(pg, cancel_long_query_tcp) { cancel_test(0, 0); }
Test(pg, cancel_long_query_unix) { cancel_test(1, 0); }
Test(pg, query_timeout_cancels_on_server) { cancel_test(0, 1); }

/* ------------------------------------------------------------ connection errors */

typedef struct conn_err {
    int refused_rc, silent_rc;
    char refused_msg[256];
    double silent_s;
} conn_err;

static void *conn_err_root(void *arg)
{
    conn_err *e = arg;
    /* A port nobody listens on (bound, never listening). */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    PG_EXPECT(fd >= 0, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    PG_EXPECT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                  getsockname(fd, (struct sockaddr *)&a, &len) == 0,
              "bind");
    char ci[128];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d dbname=postgres user=postgres",
             ntohs(a.sin_port));
    PGconn *conn;
    e->refused_rc = wpg_connect(ci, PG_TIMEOUT_MS, &conn, e->refused_msg, sizeof e->refused_msg);
    close(fd);
    if (e->refused_rc == 0)
        wpg_finish(conn);

    /* A listener that accepts nothing: the handshake completes in the
     * kernel's backlog, then the server never answers. */
    int lfd = weft_tcp_listen("127.0.0.1", 0, 8);
    PG_EXPECT(lfd >= 0, "listen: %d", lfd);
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d dbname=postgres user=postgres",
             weft_socket_port(lfd));
    weft_time t0 = weft_now();
    e->silent_rc = wpg_connect(ci, 300, &conn, NULL, 0);
    e->silent_s = pg_secs(t0);
    if (e->silent_rc == 0)
        wpg_finish(conn);
    weft_close(lfd);
    return NULL;
}

Test(pg, connect_errors)
{
    static conn_err e;
    pg_run(2, conn_err_root, &e);
    cr_assert_eq(e.refused_rc, -EIO, "refused: %d", e.refused_rc);
    cr_assert(strstr(e.refused_msg, "refused") != NULL, "message: %s", e.refused_msg);
    cr_assert_eq(e.silent_rc, -ETIMEDOUT, "silent server: %d", e.silent_rc);
    cr_assert(e.silent_s >= 0.3 && e.silent_s < 20, "timed out after %.3f s", e.silent_s);
}

/* ------------------------------------------------------------ the example */

typedef struct example_run {
    const char *path, *conninfo;
    int status;
    char out[16384];
    size_t len;
} example_run;

static void *example_root(void *arg)
{
    example_run *x = arg;
    const char *const argv[] = {x->path, x->conninfo, "50", "10", "0.1", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdout = 1};
    weft_process *p;
    int rc = weft_process_spawn(&o, &p);
    PG_EXPECT(rc == 0, "spawn %s: %d", x->path, rc);
    int fd = weft_process_stdout_fd(p);
    for (;;) {
        ssize_t n = x->len < sizeof x->out - 1
                        ? weft_read(fd, x->out + x->len, sizeof x->out - 1 - x->len, 60000)
                        : 0;
        if (n <= 0)
            break;
        x->len += (size_t)n;
    }
    x->out[x->len] = '\0';
    rc = weft_process_wait(p, &x->status, 60000);
    if (rc == -ETIMEDOUT)
        weft_process_kill(p, SIGKILL);
    weft_process_free(p);
    PG_EXPECT(rc == 0, "wait: %d", rc);
    return NULL;
}

static void example_test(int unix_socket)
{
    char path[256];
    const char *dir = getenv("WEFT_EXAMPLES_DIR");
    snprintf(path, sizeof path, "%s/pg_query", dir && *dir ? dir : "build/examples");
    if (access(path, X_OK) != 0)
        cr_skip_test("%s not built (run make first)", path);
    pg_start();
    static example_run x;
    x.path = path;
    x.conninfo = pg_conninfo(unix_socket);
    pg_run(2, example_root, &x);
    cr_assert(WIFEXITED(x.status) && WEXITSTATUS(x.status) == 0, "exit status %#x; output:\n%s",
              x.status, x.out);
    /* Every query reported once, with its own value. */
    int seen[50] = {0};
    for (const char *l = x.out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        int q, v;
        if (sscanf(l, "query %d: value %d,", &q, &v) == 2) {
            cr_assert(q >= 0 && q < 50 && v == q, "line: %.60s", l);
            seen[q]++;
        }
    }
    for (int i = 0; i < 50; i++)
        cr_assert_eq(seen[i], 1, "query %d reported %d times; output:\n%s", i, seen[i], x.out);
    cr_assert(strstr(x.out, "summary: 50 ok, 0 failed, 10 connections used, max 10 in flight\n"),
              "output:\n%s", x.out);
    const char *t = strstr(x.out, "total: ");
    double total = -1;
    cr_assert(t && sscanf(t, "total: %lf s", &total) == 1 && total > 0, "output:\n%s", x.out);
    fprintf(stderr, "pg: examples/pg_query 50 10 (%s): total %.3f s\n", unix_socket ? "unix" : "tcp",
            total);
}

Test(pg, example_pg_query_tcp) { example_test(0); }
Test(pg, example_pg_query_unix) { example_test(1); }

#endif /* WEFT_HAVE_LIBPQ */
