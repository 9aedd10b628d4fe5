/*
 * The example servers' I/O shim: plain TCP, or TLS (include/weft_tls.h)
 * when the environment names a certificate and its key:
 *
 *   WEFT_TLS_CERT=cert.pem WEFT_TLS_KEY=key.pem build/examples/http_server 8443
 *
 * A server calls serve_io_read / _write / _shutdown_wr / _close on its
 * connection's descriptor instead of weft_read / weft_write / weft_shutdown
 * (SHUT_WR) / weft_close, and passes its connection function through
 * serve_tls_wrap(): with TLS on, each connection task first runs the server
 * side of the handshake, and the descriptor's TLS connection is found by
 * its number in a table (one entry per descriptor, touched only by the
 * connection's own task). weft_shutdown(fd, SHUT_RD) on the descriptor
 * still ends a read (the TLS read then fails, which ends the connection).
 * Built without libssl (no WEFT_HAVE_LIBSSL), the calls are weft's and the
 * variables are refused.
 */
#ifndef WEFT_EXAMPLE_SERVE_TLS_H
#define WEFT_EXAMPLE_SERVE_TLS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <weft.h>

#ifdef WEFT_HAVE_LIBSSL
#include <weft_tls.h>

#define SERVE_TLS_HANDSHAKE_MS 10000

static weft_tls_ctx *g_tls;       /* NULL: plain TCP */
static weft_tls_conn **g_tls_by_fd;
static size_t g_tls_nfd;
static weft_fn g_tls_inner;

static inline weft_tls_conn *serve_tls_of(int fd)
{
    return g_tls && fd >= 0 && (size_t)fd < g_tls_nfd ? g_tls_by_fd[fd] : NULL;
}

static inline ssize_t serve_io_read(int fd, void *buf, size_t n, int64_t timeout_ms)
{
    weft_tls_conn *c = serve_tls_of(fd);
    return c ? weft_tls_read(c, buf, n, timeout_ms) : weft_read(fd, buf, n, timeout_ms);
}

static inline ssize_t serve_io_write(int fd, const void *buf, size_t n, int64_t timeout_ms)
{
    weft_tls_conn *c = serve_tls_of(fd);
    return c ? weft_tls_write(c, buf, n, timeout_ms) : weft_write(fd, buf, n, timeout_ms);
}

static inline int serve_io_shutdown_wr(int fd)
{
    weft_tls_conn *c = serve_tls_of(fd);
    if (c)
        weft_tls_shutdown(c, 1000);
    return weft_shutdown(fd, SHUT_WR);
}

static inline int serve_io_close(int fd)
{
    weft_tls_conn *c = serve_tls_of(fd);
    if (!c)
        return weft_close(fd);
    g_tls_by_fd[fd] = NULL;
    return weft_tls_close(c);
}

/* A stream over the connection: over TLS when the connection has it (the
 * stream then owns the TLS connection), else over fd. */
static inline int serve_io_stream_open(int fd, const weft_stream_opts *o, weft_stream **out)
{
    weft_tls_conn *c = serve_tls_of(fd);
    if (!c)
        return weft_stream_open(fd, o, out);
    int rc = weft_tls_stream_open(c, o, out);
    if (rc == 0)
        g_tls_by_fd[fd] = NULL; /* the stream's now */
    return rc;
}

/* The connection task with TLS on: handshake, then the server's own. */
static void *serve_tls_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if ((size_t)fd >= g_tls_nfd) {
        weft_close(fd);
        return NULL;
    }
    weft_tls_conn *c;
    char err[256];
    if (weft_tls_accept(g_tls, fd, SERVE_TLS_HANDSHAKE_MS, &c, err, sizeof err) < 0)
        return NULL; /* a failed handshake (a scanner, a client refusing us): quietly */
    g_tls_by_fd[fd] = c;
    return g_tls_inner(arg);
}

/* Reads WEFT_TLS_CERT / WEFT_TLS_KEY: 0 (TLS on if both are set), or 2
 * after saying what is wrong. */
static int serve_tls_setup(const char *name)
{
    const char *cert = getenv("WEFT_TLS_CERT"), *key = getenv("WEFT_TLS_KEY");
    if (!cert && !key)
        return 0;
    if (!cert || !key) {
        fprintf(stderr, "%s: TLS needs both WEFT_TLS_CERT and WEFT_TLS_KEY\n", name);
        return 2;
    }
    struct rlimit rl;
    g_tls_nfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                        rl.rlim_cur < (1u << 20)
                    ? (size_t)rl.rlim_cur
                    : (1u << 20);
    g_tls_by_fd = calloc(g_tls_nfd, sizeof *g_tls_by_fd);
    g_tls = weft_tls_ctx_new(WEFT_TLS_SERVER);
    if (!g_tls_by_fd || !g_tls) {
        fprintf(stderr, "%s: TLS: out of memory\n", name);
        return 2;
    }
    int rc = weft_tls_ctx_load_cert(g_tls, cert, key);
    if (rc < 0) {
        fprintf(stderr, "%s: TLS: %s\n", name, weft_tls_ctx_error(g_tls));
        return 2;
    }
    return 0;
}

static weft_fn serve_tls_wrap(weft_fn serve)
{
    if (!g_tls)
        return serve;
    g_tls_inner = serve;
    return serve_tls_conn;
}

#else /* no libssl */

static inline void *serve_tls_of(int fd)
{
    (void)fd;
    return NULL;
}

static inline ssize_t serve_io_read(int fd, void *buf, size_t n, int64_t timeout_ms)
{
    return weft_read(fd, buf, n, timeout_ms);
}
static inline ssize_t serve_io_write(int fd, const void *buf, size_t n, int64_t timeout_ms)
{
    return weft_write(fd, buf, n, timeout_ms);
}
static inline int serve_io_shutdown_wr(int fd) { return weft_shutdown(fd, SHUT_WR); }
static inline int serve_io_close(int fd) { return weft_close(fd); }
static inline int serve_io_stream_open(int fd, const weft_stream_opts *o, weft_stream **out)
{
    return weft_stream_open(fd, o, out);
}
static int serve_tls_setup(const char *name)
{
    if (getenv("WEFT_TLS_CERT") || getenv("WEFT_TLS_KEY")) {
        fprintf(stderr, "%s: built without TLS (install libssl-dev and rebuild)\n", name);
        return 2;
    }
    return 0;
}
static weft_fn serve_tls_wrap(weft_fn serve) { return serve; }

#endif
#endif
