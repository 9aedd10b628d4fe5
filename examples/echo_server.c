/*
 * TCP echo server: one task per connection, reading and writing through a
 * buffered stream (weft_stream_*).
 *
 *   build/examples/echo_server PORT [WORKERS]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port, printed at start) and runs
 * until SIGINT or SIGTERM. WORKERS defaults to one per CPU. A connection that
 * sends nothing (or takes nothing of the echo) for WEFT_IDLE_TIMEOUT_MS
 * (default 300000, 5 minutes) is closed. With WEFT_TLS_CERT
 * and WEFT_TLS_KEY set (PEM files) it speaks TLS (examples/serve_tls.h).
 *
 * Graceful shutdown: a task waits for the signal (watched from the start)
 * and ends the accept loop; the connections waiting in the listener's queue
 * are accepted (serve.h), the listener closed, and the read side of every
 * connection shut down: each echoes what it had already received, reads end
 * of stream and closes. Connections still open after GRACE_MS are cut off; the server
 * prints a line and exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "serve.h"
#include "serve_tls.h"

#define GRACE_MS 2000
#define IDLE_TIMEOUT_MS 300000 /* nothing received (or nothing sent out): WEFT_IDLE_TIMEOUT_MS */

static int64_t g_idle_ms = IDLE_TIMEOUT_MS;

/* Shuts every connection's read side, then waits up to GRACE_MS for them to
 * finish. Returns how many are left. */
static int drain_connections(void)
{
    pthread_mutex_lock(&g_conns_lock);
    for (serve_conn *c = g_conns; c; c = c->next)
        weft_shutdown(c->fd, SHUT_RD);
    pthread_mutex_unlock(&g_conns_lock);
    weft_time end = weft_now() + (weft_time)GRACE_MS * 1000000;
    for (;;) {
        pthread_mutex_lock(&g_conns_lock);
        int left = g_nconns;
        pthread_mutex_unlock(&g_conns_lock);
        if (left == 0 || weft_now() >= end)
            return left;
        weft_sleep_ms(10);
    }
}


static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    weft_stream *s;
    if (serve_io_stream_open(fd, NULL, &s) < 0) {
        serve_io_close(fd);
        return NULL;
    }
    serve_conn c = {.fd = fd};
    serve_conn_register(&c, 1);
    for (;;) {
        /* Echo what came, from the read buffer itself: wait for at least one
         * byte, copy what is buffered to the write buffer, send it. */
        const char *p;
        ssize_t n = weft_stream_peek(s, 1, &p, g_idle_ms);
        if (n <= 0)
            break; /* end of stream, the peer reset, or idle too long: we are done */
        if (weft_stream_write(s, p, (size_t)n, g_idle_ms) < 0 ||
            weft_stream_flush(s, g_idle_ms) < 0)
            break;
        weft_stream_consume(s, (size_t)n);
    }
    serve_conn_unregister(&c);
    weft_stream_close(s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    uint16_t port;
    weft_config cfg;
    if (serve_parse_args("echo_server", argv, argc, &port, &cfg))
        return 2;
    if (serve_tls_setup("echo_server"))
        return 2;
    g_idle_ms = serve_env_ms("echo_server", "WEFT_IDLE_TIMEOUT_MS", IDLE_TIMEOUT_MS);
    return serve_run("echo_server", &cfg, port, 0, serve_tls_wrap(serve), drain_connections);
}
