/*
 * What the example servers share: the accept loop (one task per
 * connection) and graceful shutdown on SIGINT/SIGTERM. A task waits for the
 * signal, sets g_stopping and cancels the accept loop; the connections
 * already waiting in the listener's queue are then accepted and served (so
 * nothing a client has already sent is lost to a reset), the listener is
 * closed, and the server's own drain function finishes or cuts off the
 * connections that are left (each server knows what "idle" means for it).
 */
#ifndef WEFT_EXAMPLE_SERVE_H
#define WEFT_EXAMPLE_SERVE_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <weft.h>

#include "serve_stats.h"

/* Every open connection, so the drain pass can reach them. A server's
 * connection record starts with a serve_conn (its descriptor and links). */
typedef struct serve_conn {
    int fd;
    struct serve_conn *prev, *next;
} serve_conn;

static pthread_mutex_t g_conns_lock = PTHREAD_MUTEX_INITIALIZER;
static serve_conn *g_conns;
static int g_nconns;

static atomic_int g_stopping;
static const char *g_server_name = "server";

/* A millisecond setting from the environment variable var: def when it is
 * unset, empty or not a positive number (a bad value is said on stderr). */
static int64_t serve_env_ms(const char *name, const char *var, int64_t def)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return def;
    char *end;
    long long ms = strtoll(v, &end, 10);
    if (*end || ms <= 0) {
        fprintf(stderr, "%s: ignoring %s='%s' (not a positive number of ms)\n", name, var,
                v);
        return def;
    }
    return (int64_t)ms;
}

typedef struct serve_loop {
    const char *name;
    int lfd;
    weft_fn serve;
    weft_task *acceptor; /* the accept loop, which the stopper cancels */
} serve_loop;

/* Connection tasks handed off and not yet ended. The open-connection list
 * only holds those that have started and registered: a task handed off at
 * the stop may not have run yet when the drain pass looks, and the process
 * must not exit (resetting its connection) before it has answered. */
static atomic_int g_live;
/* Written by the accept loop at each hand-off, read by connection tasks that
 * may still be starting: atomic, and stored only when it changes. */
static _Atomic(weft_fn) g_serve_fn;

static void *serve_counted(void *arg)
{
    weft_fn fn = atomic_load_explicit(&g_serve_fn, memory_order_acquire);
    void *r = fn(arg);
    atomic_fetch_sub(&g_live, 1);
    return r;
}

/* Runs serve(fd) as a detached task for a new connection; 0, or -1 when no
 * task could be made (the connection is closed). */
static int serve_hand_off(serve_loop *l, int fd)
{
    if (atomic_load_explicit(&g_serve_fn, memory_order_relaxed) != l->serve) /* the same for every connection */
        atomic_store_explicit(&g_serve_fn, l->serve, memory_order_release);
    atomic_fetch_add(&g_live, 1);
    int rc = weft_go(serve_counted, (void *)(intptr_t)fd);
    if (rc < 0) {
        atomic_fetch_sub(&g_live, 1);
        fprintf(stderr, "%s: spawn: %s\n", l->name, strerror(-rc));
        weft_close(fd);
        return -1;
    }
    return 0;
}

/* After drain(): waits (up to SERVE_SETTLE_MS) for the connection tasks
 * still running, such as those handed off at the stop that had not started
 * when drain() looked; returns how many are still running then. */
#define SERVE_SETTLE_MS 10000
static int serve_settle(void)
{
    weft_time end = weft_now() + (weft_time)SERVE_SETTLE_MS * 1000000;
    while (atomic_load(&g_live) > 0 && weft_now() < end)
        weft_sleep_ms(2);
    return atomic_load(&g_live);
}

static void *stop_on_signal(void *arg)
{
    serve_loop *l = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = weft_signal_wait(&set, -1);
    if (sig < 0)
        return NULL; /* cancelled: the server ended on its own */
    atomic_store(&g_stopping, 1);
    printf("%s: %s, shutting down\n", g_server_name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    fflush(stdout);
    /* Ends the accept loop's wait; the listener stays open (closing it would
     * reset the connections waiting in its queue). */
    weft_cancel(l->acceptor);
    return NULL;
}

/* The accept loop, until it is cancelled (the stop) or the listener fails.
 * Returns NULL when cancelled, non-NULL on failure. */
static void *serve_accept_loop(void *arg)
{
    serve_loop *l = arg;
    for (;;) {
        /* A connection accepted as the stop comes is still served: accept
         * reports the success it had at the moment of cancellation. */
        int fd = weft_tcp_accept(l->lfd, NULL);
        if (fd == -ECANCELED)
            return NULL;
        if (fd < 0) {
            /* Descriptor exhaustion is absorbed inside accept; what reaches
             * here is transient (a network error on one connection) unless
             * the listener itself is gone. */
            fprintf(stderr, "%s: accept: %s\n", l->name, strerror(-fd));
            if (fd == -EBADF || fd == -EINVAL || fd == -ENOTSOCK)
                return (void *)1;
            continue;
        }
        serve_hand_off(l, fd);
    }
}

/* At the stop: accepts, without waiting, every connection that is waiting
 * in the listener's queue and hands each to the server (a connection
 * accepted during shutdown reads and answers what its client has already
 * sent, then closes). Returns how many were taken. */
static int serve_drain_accept_queue(serve_loop *l)
{
    int taken = 0;
    for (;;) {
        int fd = weft_tcp_accept_timeout(l->lfd, NULL, 0);
        if (fd == -ETIMEDOUT)
            return taken; /* EAGAIN: the queue is empty */
        if (fd < 0) {
            /* Out of descriptors, or the listener failed: what is left in
             * the queue is reset when the listener closes. */
            fprintf(stderr, "%s: accept at the stop: %s\n", l->name, strerror(-fd));
            return taken;
        }
        if (serve_hand_off(l, fd) == 0)
            taken++;
    }
}

/* Accepts on lfd and runs serve(fd) as a task per connection until a stop
 * signal. Then the queue of connections not yet accepted is drained (each
 * is served), the listener closed (from here on the kernel refuses new
 * connections), and drain() settles the connections left and returns how
 * many it had to cut off. The window between the queue's last empty check
 * and the close is a few system calls: a connection whose handshake
 * completes just then is reset. Returns NULL after a graceful stop,
 * non-NULL on failure. */
static void *serve_until_signal(const char *name, int lfd, weft_fn serve, int (*drain)(void))
{
    g_server_name = name;
    serve_loop l = {name, lfd, serve, NULL};
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    int rc = weft_signal_watch(&stop_set);
    printf("%s: listening on 127.0.0.1:%d\n", name, weft_socket_port(lfd));
    fflush(stdout);
    int src = weft_task_spawn(NULL, serve_accept_loop, &l, NULL, &l.acceptor);
    if (src < 0) {
        fprintf(stderr, "%s: spawn: %s\n", name, strerror(-src));
        weft_close(lfd);
        return (void *)1;
    }
    weft_task *stopper = NULL;
    if (rc >= 0)
        rc = weft_task_spawn(NULL, stop_on_signal, &l, NULL, &stopper);
    if (rc < 0)
        fprintf(stderr, "%s: no graceful shutdown: %s\n", name, strerror(-rc));
    void *failed = NULL;
    weft_join(l.acceptor, &failed);
    if (atomic_load(&g_stopping)) {
        weft_join(stopper, NULL);
        int taken = serve_drain_accept_queue(&l);
        weft_close(lfd);
        int left = drain();
        int running = serve_settle();
        if (running > left)
            left = running;
        printf("%s: stopped (%d connection%s taken from the accept queue at the stop, "
               "%d connection%s cut off after the grace period)\n",
               name, taken, taken == 1 ? "" : "s", left, left == 1 ? "" : "s");
        fflush(stdout);
        return NULL;
    }
    if (stopper) {
        weft_cancel(stopper);
        weft_join(stopper, NULL);
    }
    weft_close(lfd);
    return failed ? failed : (void *)1;
}

/* PORT and an optional WORKERS (0 = one per CPU) from argv[1] and argv[2]
 * into *port and cfg; 0, or 2 (the exit code for bad usage) after saying
 * what is wrong. */
static int serve_parse_args(const char *name, char **argv, int argc, uint16_t *port,
                            weft_config *cfg)
{
    char *end;
    long p = strtol(argv[1], &end, 10);
    if (*end || p < 0 || p > 65535) {
        fprintf(stderr, "%s: bad port '%s'\n", name, argv[1]);
        return 2;
    }
    *port = (uint16_t)p;
    weft_config_init(cfg);
    if (argc >= 3) {
        long w = strtol(argv[2], &end, 10);
        if (*end || w < 0 || w > 1024) {
            fprintf(stderr, "%s: bad worker count '%s'\n", name, argv[2]);
            return 2;
        }
        cfg->workers = (unsigned)w;
    }
    return 0;
}

typedef struct serve_spec {
    const char *name;
    uint16_t port;
    int backlog;
    weft_fn serve;
    int (*drain)(void);
} serve_spec;

static void *serve_root(void *arg)
{
    const serve_spec *sp = arg;
    int lfd = weft_tcp_listen("127.0.0.1", sp->port, sp->backlog);
    if (lfd < 0) {
        fprintf(stderr, "%s: listen on 127.0.0.1:%u: %s\n", sp->name, sp->port, strerror(-lfd));
        return (void *)1;
    }
    return serve_until_signal(sp->name, lfd, sp->serve, sp->drain);
}

/* With WEFT_SERVE_STATS set, the workers' counters at the stop (stderr):
 * where a second worker's time goes (steals, parks, rescued events). */
static void serve_print_stats(const char *name, weft_runtime *rt)
{
    weft_worker_stats st[64];
    unsigned n = weft_runtime_stats(rt, st, 64);
    for (unsigned i = 0; i < n && i < 64; i++)
        fprintf(stderr,
                "%s: worker %u: run %llu steals %llu stolen %llu parks %llu global %llu "
                "overflows %llu lifo_capped %llu timers_rescued %llu events_rescued %llu\n",
                name, i, (unsigned long long)st[i].tasks_run, (unsigned long long)st[i].steals,
                (unsigned long long)st[i].tasks_stolen, (unsigned long long)st[i].parks,
                (unsigned long long)st[i].global_pulls, (unsigned long long)st[i].overflows,
                (unsigned long long)st[i].lifo_capped, (unsigned long long)st[i].timers_rescued,
                (unsigned long long)st[i].events_rescued);
}

/* Listens on 127.0.0.1:port (backlog 0: the system default) and serves
 * until SIGINT or SIGTERM (serve_until_signal), as the root task of a
 * runtime made from cfg. Returns the process's exit code (0 after a
 * graceful stop). */
static int serve_run(const char *name, const weft_config *cfg, uint16_t port, int backlog,
                     weft_fn serve, int (*drain)(void))
{
    serve_spec sp = {name, port, backlog, serve, drain};
    weft_runtime *rt;
    int crc = weft_runtime_create(cfg, &rt);
    if (crc < 0) {
        fprintf(stderr, "%s: weft_runtime_create: %s\n", name, strerror(-crc));
        return 1;
    }
    serve_stats_start(rt);
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, serve_root, &sp, &res);
    if (getenv("WEFT_SERVE_STATS"))
        serve_print_stats(name, rt);
    serve_stats_stop();
    weft_runtime_free(rt);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", name, strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}

/* Adds c to the open connections. With shut_if_stopping, a connection
 * accepted while the drain pass runs gets its read side shut here, under
 * the same lock, so the pass cannot miss it. */
static void serve_conn_register(serve_conn *c, int shut_if_stopping)
{
    pthread_mutex_lock(&g_conns_lock);
    c->prev = NULL;
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    g_nconns++;
    if (shut_if_stopping && atomic_load(&g_stopping))
        weft_shutdown(c->fd, SHUT_RD);
    pthread_mutex_unlock(&g_conns_lock);
}

/* Before the descriptor is closed, so the drain pass never touches a number
 * that was closed and reused. */
static void serve_conn_unregister(serve_conn *c)
{
    pthread_mutex_lock(&g_conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g_nconns--;
    pthread_mutex_unlock(&g_conns_lock);
}

#endif
