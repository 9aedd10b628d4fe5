/*
 * TCP echo server: one task per connection, reading and writing through a
 * buffered stream (weft_stream_*).
 *
 *   build/examples/echo_server PORT [WORKERS]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port, printed at start) and runs
 * until SIGINT or SIGTERM. WORKERS defaults to one per CPU. With WEFT_TLS_CERT
 * and WEFT_TLS_KEY set (PEM files) it speaks TLS (examples/serve_tls.h).
 *
 * Graceful shutdown: a task waits for the signal (watched from the start),
 * closes the listener and shuts down the read side of every connection:
 * each echoes what it had already received, reads end of stream and
 * closes. Connections still open after GRACE_MS are cut off; the server
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
        ssize_t n = weft_stream_peek(s, 1, &p, -1);
        if (n <= 0)
            break; /* end of stream, or the peer reset: either way we are done */
        if (weft_stream_write(s, p, (size_t)n, -1) < 0 || weft_stream_flush(s, -1) < 0)
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
    return serve_run("echo_server", &cfg, port, 0, serve_tls_wrap(serve), drain_connections);
}
