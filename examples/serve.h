/*
 * What the example servers share: the accept loop (one task per
 * connection) and graceful shutdown on SIGINT/SIGTERM. A task waits for the
 * signal, sets g_stopping and closes the listener; the accept loop then ends,
 * and the server's own drain function finishes or cuts off the connections
 * that are left (each server knows what "idle" means for it).
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

static void *stop_on_signal(void *arg)
{
    int lfd = (int)(intptr_t)arg;
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
    weft_close(lfd);
    return NULL;
}

/* Accepts on lfd and runs serve(fd) as a task per connection until a stop
 * signal; then drain() settles the connections left and returns how many it
 * had to cut off. Returns NULL after a graceful stop, non-NULL on failure. */
static void *serve_until_signal(const char *name, int lfd, weft_fn serve, int (*drain)(void))
{
    g_server_name = name;
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    int rc = weft_signal_watch(&stop_set);
    weft_task *stopper = rc < 0 ? NULL : weft_spawn(stop_on_signal, (void *)(intptr_t)lfd);
    if (!stopper)
        fprintf(stderr, "%s: no graceful shutdown: %s\n", name, strerror(rc < 0 ? -rc : errno));
    printf("%s: listening on 127.0.0.1:%d\n", name, weft_socket_port(lfd));
    fflush(stdout);
    for (;;) {
        int fd = weft_tcp_accept(lfd, NULL);
        if (atomic_load(&g_stopping)) {
            /* The listener is closed (its number may even be reused). */
            if (fd >= 0)
                weft_close(fd);
            break;
        }
        if (fd < 0) {
            /* Descriptor exhaustion is absorbed inside accept; what reaches
             * here is transient (a network error on one connection) unless
             * the listener itself is gone. */
            fprintf(stderr, "%s: accept: %s\n", name, strerror(-fd));
            if (fd == -EBADF || fd == -EINVAL || fd == -ENOTSOCK)
                break;
            continue;
        }
        int src = weft_go(serve, (void *)(intptr_t)fd);
        if (src < 0) {
            fprintf(stderr, "%s: spawn: %s\n", name, strerror(-src));
            weft_close(fd);
            continue;
        }
    }
    if (atomic_load(&g_stopping)) {
        weft_join(stopper, NULL);
        int left = drain();
        printf("%s: stopped (%d connection%s cut off after the grace period)\n", name, left,
               left == 1 ? "" : "s");
        fflush(stdout);
        return NULL;
    }
    if (stopper) {
        weft_cancel(stopper);
        weft_join(stopper, NULL);
    }
    weft_close(lfd);
    return (void *)1;
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
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, serve_root, &sp, &res);
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
