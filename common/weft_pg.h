/*
 * weft_pg.h — libpq driven by weft tasks: connect, run a parameterised query,
 * cancel it, and a small connection pool. Header-only (static inline
 * functions), shared on purpose by examples/pg_query.c and tests/test_pg.c,
 * so the tests exercise exactly the code the example shows.
 *
 * Built only with libpq (the Makefile defines WEFT_HAVE_LIBPQ and adds
 * -I/usr/include/postgresql where libpq-fe.h exists); without it this header
 * declares nothing.
 *
 * How it drives libpq. libpq never blocks once a connection is non-blocking;
 * whenever it cannot go on it says which direction it waits for, and the
 * calling task waits for exactly that with weft_wait_fd (level-triggered, as
 * poll(2), so "ready already" returns at once). Only the calling task is
 * suspended, never its worker thread:
 *   connect  PQconnectStart, then PQconnectPoll until PGRES_POLLING_OK,
 *            waiting WEFT_READ on PGRES_POLLING_READING and WEFT_WRITE on
 *            PGRES_POLLING_WRITING. The descriptor is re-read from PQsocket
 *            before each wait: libpq may open a new socket while it tries
 *            another address or protocol.
 *   send     PQsendQueryParams, then PQflush until it returns 0; while it
 *            returns 1 wait for READ|WRITE, and on READ call PQconsumeInput
 *            (the server may be blocked writing to us; libpq's advice).
 *   receive  while PQisBusy: wait WEFT_READ, PQconsumeInput; then
 *            PQgetResult until NULL.
 *
 * Cancellation and timeouts. When the wait in wpg_exec returns -ECANCELED
 * (weft_cancel on the task) or -ETIMEDOUT (the query's time ran out), the
 * query is cancelled on the server as well: PQcancel (a blocking call: it
 * opens its own connection) runs on the blocking pool, then the results are
 * drained, so the connection is idle and usable afterwards. That cleanup
 * runs inside weft_shield_begin/end (cancellation is sticky: every
 * suspending call of a cancelled task would return -ECANCELED at once). A
 * cancel request that reaches the server before the query has started is
 * ignored by PostgreSQL, so it is re-sent every WPG_CANCEL_RESEND_MS until
 * the query ends, for at most WPG_DRAIN_MS; after that the connection is
 * left busy, wpg_usable() reports 0 and the pool replaces it.
 *
 * Migration. A task may resume on another worker thread after each wait.
 * Nothing here keeps errno or a thread-local across a wait, and a PGconn is
 * used by one task at a time (libpq is thread-safe on that condition).
 *
 * Return values follow weft's convention: 0 or a negative errno.
 */
#ifndef WEFT_PG_H
#define WEFT_PG_H

#ifdef WEFT_HAVE_LIBPQ

#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#ifndef WPG_DRAIN_MS
#define WPG_DRAIN_MS 10000 /* how long a cancelled query may take to end */
#endif
#ifndef WPG_CANCEL_RESEND_MS
#define WPG_CANCEL_RESEND_MS 1000
#endif

/* Milliseconds left until deadline (0 = no deadline: -1, wait forever),
 * rounded up so that a wait never ends just before the deadline. */
static inline int64_t wpg_ms_left(weft_time deadline)
{
    if (deadline == 0)
        return -1;
    weft_time left = deadline - weft_now();
    return left <= 0 ? 0 : (int64_t)((left + 999999) / 1000000);
}

static inline weft_time wpg_deadline(int64_t timeout_ms)
{
    /* weft's rule: -1 is none, any other negative has passed already. */
    if (timeout_ms == -1)
        return 0;
    return weft_now() + (timeout_ms < 0 ? 0 : (weft_time)timeout_ms * 1000000);
}

/* Waits on conn's socket for events: the ready subset, or -ETIMEDOUT,
 * -ECANCELED, -EBADF (no socket). */
static inline int wpg_wait(PGconn *conn, int events, weft_time deadline)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -EBADF;
    return weft_wait_fd(fd, events, wpg_ms_left(deadline));
}

static inline void wpg_set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        snprintf(err, errlen, "%s", msg ? msg : "");
        size_t n = strlen(err); /* libpq's messages end with a newline */
        while (n && (err[n - 1] == '\n' || err[n - 1] == '\r'))
            err[--n] = '\0';
    }
}

/* Opens a connection without blocking the worker: 0 with *out set, or
 * -EIO (libpq failed: refused, authentication, bad conninfo...; the message
 * goes to err), -ENOMEM, -ETIMEDOUT, -ECANCELED. err may be NULL. A host
 * name in conninfo is resolved by libpq with a blocking getaddrinfo: give
 * numeric addresses (host=127.0.0.1 or hostaddr=) or a socket directory. */
static inline int wpg_connect(const char *conninfo, int64_t timeout_ms, PGconn **out, char *err,
                              size_t errlen)
{
    *out = NULL;
    wpg_set_err(err, errlen, "");
    weft_time deadline = wpg_deadline(timeout_ms);
    PGconn *conn = PQconnectStart(conninfo);
    if (!conn) {
        wpg_set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* "Consider it PGRES_POLLING_WRITING initially" (libpq documentation). */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int rc = 0;
    while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        rc = wpg_wait(conn, st == PGRES_POLLING_READING ? WEFT_READ : WEFT_WRITE, deadline);
        if (rc < 0)
            break;
        st = PQconnectPoll(conn);
    }
    if (rc >= 0 && (PQstatus(conn) == CONNECTION_BAD || st == PGRES_POLLING_FAILED))
        rc = -EIO;
    if (rc >= 0 && PQsetnonblocking(conn, 1) != 0)
        rc = -EIO;
    if (rc < 0) {
        if (rc == -EIO)
            wpg_set_err(err, errlen, PQerrorMessage(conn));
        else
            wpg_set_err(err, errlen, rc == -ETIMEDOUT ? "timeout" : strerror(-rc));
        if (PQsocket(conn) >= 0)
            weft_fd_forget(PQsocket(conn));
        PQfinish(conn);
        return rc;
    }
    *out = conn;
    return 0;
}

/* Closes conn (NULL: nothing). weft forgets the socket first: libpq closes
 * it with plain close(). */
static inline void wpg_finish(PGconn *conn)
{
    if (!conn)
        return;
    if (PQsocket(conn) >= 0)
        weft_fd_forget(PQsocket(conn));
    PQfinish(conn);
}

/* 1 if conn can take a query now: connected, and no command in progress. */
static inline int wpg_usable(PGconn *conn)
{
    return conn && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_ACTIVE &&
           PQtransactionStatus(conn) != PQTRANS_UNKNOWN && !PQisBusy(conn);
}

/* Sends what libpq has buffered: 0, -EIO, or the wait's error. */
static inline int wpg_flush(PGconn *conn, weft_time deadline)
{
    for (;;) {
        int f = PQflush(conn);
        if (f == 0)
            return 0;
        if (f < 0)
            return -EIO;
        int rc = wpg_wait(conn, WEFT_READ | WEFT_WRITE, deadline);
        if (rc < 0)
            return rc;
        if ((rc & WEFT_READ) && !PQconsumeInput(conn))
            return -EIO;
    }
}

/* Reads until every result of the command is in. Keeps the first error
 * result, else the last one, in *keep (may be NULL: results are dropped).
 * 0, -EIO (connection lost), or the wait's error. */
static inline int wpg_collect(PGconn *conn, weft_time deadline, PGresult **keep)
{
    for (;;) {
        while (PQisBusy(conn)) {
            int rc = wpg_wait(conn, WEFT_READ, deadline);
            if (rc < 0)
                return rc;
            if (!PQconsumeInput(conn))
                return -EIO;
        }
        PGresult *r = PQgetResult(conn);
        if (!r)
            return 0;
        if (!keep) {
            PQclear(r);
        } else if (!*keep) {
            *keep = r;
        } else {
            ExecStatusType old = PQresultStatus(*keep);
            int old_err = old == PGRES_FATAL_ERROR || old == PGRES_BAD_RESPONSE;
            if (old_err) {
                PQclear(r);
            } else {
                PQclear(*keep);
                *keep = r;
            }
        }
        if (PQstatus(conn) == CONNECTION_BAD)
            return -EIO;
    }
}

static inline void *wpg_cancel_job(void *arg)
{
    PGcancel *c = arg;
    char errbuf[256];
    int ok = PQcancel(c, errbuf, (int)sizeof errbuf);
    PQfreeCancel(c);
    return (void *)(intptr_t)ok;
}

/* Asks the server to cancel conn's running command: PQcancel on the
 * blocking pool (it connects and blocks). 0, or -EIO (no cancel object, the
 * request failed, or it did not complete within 5 s: the job keeps running
 * and frees its PGcancel itself). Suspends; call it shielded. */
static inline int wpg_cancel_on_server(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return -EIO;
    weft_task *job = weft_spawn_blocking(wpg_cancel_job, c);
    if (!job) {
        PQfreeCancel(c);
        return -EIO;
    }
    void *ok = NULL;
    int rc = weft_join_timeout(job, &ok, 5000);
    if (rc == -ETIMEDOUT) {
        weft_detach(job);
        return -EIO;
    }
    return rc == 0 && ok ? 0 : -EIO;
}

/* After an interrupted wpg_exec: cancels the command on the server and
 * reads the connection back to idle, shielded from cancellation. 0 when conn
 * is usable again, -EIO when it is not (see wpg_usable). */
static inline int wpg_abort_command(PGconn *conn)
{
    weft_shield_begin();
    weft_time give_up = weft_now() + (weft_time)WPG_DRAIN_MS * 1000000;
    int rc = -EIO;
    while (PQstatus(conn) == CONNECTION_OK && weft_now() < give_up) {
        wpg_cancel_on_server(conn);
        weft_time step = weft_now() + (weft_time)WPG_CANCEL_RESEND_MS * 1000000;
        if (step > give_up)
            step = give_up;
        rc = wpg_flush(conn, step);
        if (rc == 0)
            rc = wpg_collect(conn, step, NULL);
        if (rc != -ETIMEDOUT)
            break; /* drained (0) or the connection failed */
    }
    weft_shield_end();
    return rc == 0 && wpg_usable(conn) ? 0 : -EIO;
}

/* Runs sql with nparams text parameters (values[i] may be NULL for SQL
 * NULL) on conn, within timeout_ms (-1: none) for sending and receiving.
 * Returns 0 with *out set to the command's result (free it with PQclear;
 * check PQresultStatus: an SQL error is a PGRES_FATAL_ERROR result, not a
 * negative return), or:
 *   -ETIMEDOUT  the time ran out; -ECANCELED  the task was cancelled. In
 *               both cases the command was cancelled on the server and its
 *               results drained, so conn is idle again (if that failed,
 *               wpg_usable(conn) is 0).
 *   -EIO        libpq failed (connection lost, or conn was busy): the
 *               message is PQerrorMessage(conn).
 * Suspends. */
static inline int wpg_exec(PGconn *conn, const char *sql, int nparams, const char *const *values,
                           int64_t timeout_ms, PGresult **out)
{
    *out = NULL;
    weft_time deadline = wpg_deadline(timeout_ms);
    if (!PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0))
        return -EIO;
    PGresult *res = NULL;
    int rc = wpg_flush(conn, deadline);
    if (rc == 0)
        rc = wpg_collect(conn, deadline, &res);
    if (rc == 0) {
        *out = res;
        return 0;
    }
    PQclear(res);
    if (rc == -ETIMEDOUT || rc == -ECANCELED) {
        wpg_abort_command(conn);
        return rc;
    }
    return -EIO; /* libpq failed, or no socket (-EBADF) */
}

/* ----------------------------------------------------------------- pool
 * M connections in a weft channel of capacity M: acquire receives one
 * (waiting, FIFO, while all are in use), release sends it back (never
 * waits: there is always room for it). A connection found unusable when it
 * is acquired (lost, or left busy by a failed cancel) is replaced by a
 * fresh one. */
typedef struct wpg_pool {
    weft_chan *free; /* of PGconn * */
    int size;
    char *conninfo;
    int64_t connect_timeout_ms;
} wpg_pool;

typedef struct wpg_open_arg {
    const char *conninfo;
    int64_t timeout_ms;
    PGconn *conn;
    int rc;
    char err[256];
} wpg_open_arg;

static inline void *wpg_open_task(void *arg)
{
    wpg_open_arg *a = arg;
    a->rc = wpg_connect(a->conninfo, a->timeout_ms, &a->conn, a->err, sizeof a->err);
    return NULL;
}

/* Opens size connections concurrently (one task each). 0, or the first
 * failure (-EIO with its message in err, -ETIMEDOUT, -ECANCELED, -ENOMEM);
 * then nothing is left open. Suspends. */
static inline int wpg_pool_open(wpg_pool *p, const char *conninfo, int size, int64_t timeout_ms,
                                char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    wpg_set_err(err, errlen, "");
    if (size < 1)
        return -EINVAL;
    p->size = size;
    p->connect_timeout_ms = timeout_ms;
    p->conninfo = strdup(conninfo);
    p->free = weft_chan_new((size_t)size, sizeof(PGconn *));
    wpg_open_arg *args = calloc((size_t)size, sizeof *args);
    weft_task **ts = calloc((size_t)size, sizeof *ts);
    int rc = p->conninfo && p->free && args && ts ? 0 : -ENOMEM;
    for (int i = 0; rc == 0 && i < size; i++) {
        args[i].conninfo = conninfo;
        args[i].timeout_ms = timeout_ms;
        args[i].rc = -ENOMEM;
        ts[i] = weft_spawn(wpg_open_task, &args[i]);
        if (!ts[i])
            rc = -ENOMEM;
    }
    for (int i = 0; i < size && ts; i++) {
        if (!ts[i])
            continue;
        /* Join all of them, even when cancelled: args lives on this stack. */
        weft_shield_begin();
        weft_join(ts[i], NULL);
        weft_shield_end();
        if (rc == 0 && args[i].rc != 0) {
            rc = args[i].rc;
            wpg_set_err(err, errlen, args[i].err);
        }
    }
    for (int i = 0; args && i < size; i++) {
        if (!args[i].conn)
            continue;
        if (rc == 0)
            weft_chan_try_send(p->free, &args[i].conn);
        else
            wpg_finish(args[i].conn);
    }
    free(args);
    free(ts);
    if (rc == 0 && weft_cancelled())
        rc = -ECANCELED;
    if (rc != 0) {
        PGconn *c;
        while (p->free && weft_chan_try_recv(p->free, &c) == 0)
            wpg_finish(c);
        weft_chan_free(p->free);
        free(p->conninfo);
        memset(p, 0, sizeof *p);
    }
    return rc;
}

/* Takes a free connection, waiting up to timeout_ms: 0 with *out set, or
 * -ETIMEDOUT, -ECANCELED, or a reconnect's error (-EIO...; the broken
 * connection stays in the pool, to be retried by a later acquire). */
static inline int wpg_pool_acquire(wpg_pool *p, int64_t timeout_ms, PGconn **out)
{
    *out = NULL;
    PGconn *c = NULL;
    int rc = weft_chan_recv_timeout(p->free, &c, timeout_ms);
    if (rc < 0)
        return rc;
    if (!wpg_usable(c)) {
        PGconn *fresh = NULL;
        rc = wpg_connect(p->conninfo, p->connect_timeout_ms, &fresh, NULL, 0);
        if (rc < 0) {
            weft_chan_try_send(p->free, &c);
            return rc;
        }
        wpg_finish(c);
        c = fresh;
    }
    *out = c;
    return 0;
}

/* Gives c back. Never suspends. */
static inline void wpg_pool_release(wpg_pool *p, PGconn *c)
{
    weft_chan_try_send(p->free, &c);
}

/* Closes every connection; none may be acquired now. */
static inline void wpg_pool_close(wpg_pool *p)
{
    PGconn *c;
    while (p->free && weft_chan_try_recv(p->free, &c) == 0)
        wpg_finish(c);
    weft_chan_free(p->free);
    free(p->conninfo);
    memset(p, 0, sizeof *p);
}

#endif /* WEFT_HAVE_LIBPQ */
#endif /* WEFT_PG_H */
