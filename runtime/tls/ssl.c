/*
 * weft_tls: OpenSSL driven non-blocking over a weft socket (include/weft_tls.h).
 *
 * Every TLS call is a loop: clear the error queue, call OpenSSL, and on
 * SSL_ERROR_WANT_READ / WANT_WRITE wait with weft_wait_fd for that direction
 * and call again with the same arguments. Anything OpenSSL leaves in its
 * thread-local error queue, and errno, is read into the connection right
 * after the failing call, before any wait (the task may resume on another
 * thread).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <weft.h>
#include <weft_tls.h>

#define ERRLEN 256

struct weft_tls_ctx {
    SSL_CTX *ssl_ctx;
    int mode;
    char err[ERRLEN];
};

struct weft_tls_conn {
    SSL *ssl;
    int fd;
    int handshaken;
    char err[ERRLEN];
};

/* ------------------------------------------------------------ errors */

/* The error queue into buf ("" when empty), then cleared. */
static void take_errors(char *buf, size_t cap, SSL *ssl)
{
    buf[0] = '\0';
    size_t len = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        if (len + 3 >= cap)
            continue;
        char one[160];
        ERR_error_string_n(e, one, sizeof one);
        /* The short form: OpenSSL's reason text after the last ':'. */
        const char *r = ERR_reason_error_string(e);
        int n = snprintf(buf + len, cap - len, "%s%s", len ? "; " : "", r ? r : one);
        if (n > 0)
            len += (size_t)n < cap - len ? (size_t)n : cap - len - 1;
    }
    if (ssl) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK && len + 3 < cap)
            snprintf(buf + len, cap - len, "%s%s", len ? ": " : "", X509_verify_cert_error_string(v));
    }
}

static void copy_err(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen) {
        strncpy(errbuf, msg, errlen - 1);
        errbuf[errlen - 1] = '\0';
    }
}

/* -------------------------------------------------------------- the BIO
 * recv/send on the descriptor with MSG_DONTWAIT | MSG_NOSIGNAL; EAGAIN sets
 * the retry flag, which makes SSL report WANT_READ / WANT_WRITE. */

static BIO_METHOD *g_bio_method;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int bio_write_ex(BIO *b, const char *data, size_t n, size_t *written)
{
    BIO_clear_retry_flags(b);
    ssize_t r;
    do
        r = send(bio_fd(b), data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        *written = 0;
        return 0;
    }
    *written = (size_t)r;
    return 1;
}

static int bio_read_ex(BIO *b, char *data, size_t n, size_t *got)
{
    BIO_clear_retry_flags(b);
    ssize_t r;
    do
        r = recv(bio_fd(b), data, n, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    *got = 0;
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return 0;
    }
    if (r == 0) {
        errno = 0; /* end of stream, not a socket error */
        return 0;
    }
    *got = (size_t)r;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "weft socket");
    if (!m)
        return;
    BIO_meth_set_write_ex(m, bio_write_ex);
    BIO_meth_set_read_ex(m, bio_read_ex);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    g_bio_method = m;
}

/* ------------------------------------------------------------ contexts */

WEFT_API weft_tls_ctx *weft_tls_ctx_new(int mode)
{
    if (mode != WEFT_TLS_CLIENT && mode != WEFT_TLS_SERVER) {
        errno = EINVAL;
        return NULL;
    }
    weft_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        errno = ENOMEM;
        return NULL;
    }
    ctx->mode = mode;
    ctx->ssl_ctx = SSL_CTX_new(mode == WEFT_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    if (!ctx->ssl_ctx) {
        ERR_clear_error();
        free(ctx);
        errno = ENOMEM;
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
    /* Retrying a write always passes the same buffer, but a stream may
     * move its buffer between attempts (it compacts). */
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One recv takes what the kernel has, not a record header and then its
     * body: half the system calls per small record. Safe here because every
     * read first asks OpenSSL (SSL_read drains what it read ahead) and
     * waits only when it says WANT_READ. */
    SSL_CTX_set_read_ahead(ctx->ssl_ctx, 1);
    if (mode == WEFT_TLS_CLIENT) {
        SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1)
            ERR_clear_error(); /* no system store: only what load_ca adds */
    }
    return ctx;
}

static int file_err(weft_tls_ctx *ctx, const char *path)
{
    if (path && access(path, R_OK) != 0) {
        int e = errno;
        ERR_clear_error();
        snprintf(ctx->err, sizeof ctx->err, "%s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

WEFT_API int weft_tls_ctx_load_cert(weft_tls_ctx *ctx, const char *cert_file, const char *key_file)
{
    if (!ctx || !cert_file)
        return -EINVAL;
    if (!key_file)
        key_file = cert_file;
    int rc;
    if ((rc = file_err(ctx, cert_file)) || (rc = file_err(ctx, key_file)))
        return rc;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
        take_errors(ctx->err, sizeof ctx->err, NULL);
        return -EPROTO;
    }
    ctx->err[0] = '\0';
    return 0;
}

WEFT_API int weft_tls_ctx_load_ca(weft_tls_ctx *ctx, const char *ca_file, const char *ca_dir)
{
    if (!ctx || (!ca_file && !ca_dir))
        return -EINVAL;
    int rc;
    if ((rc = file_err(ctx, ca_file)) || (rc = file_err(ctx, ca_dir)))
        return rc;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, ca_dir) != 1) {
        take_errors(ctx->err, sizeof ctx->err, NULL);
        return -EPROTO;
    }
    ctx->err[0] = '\0';
    return 0;
}

WEFT_API int weft_tls_ctx_set_verify(weft_tls_ctx *ctx, int on)
{
    if (!ctx)
        return -EINVAL;
    int v = SSL_VERIFY_NONE;
    if (on)
        v = ctx->mode == WEFT_TLS_CLIENT ? SSL_VERIFY_PEER
                                         : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx->ssl_ctx, v, NULL);
    return 0;
}

WEFT_API const char *weft_tls_ctx_error(const weft_tls_ctx *ctx) { return ctx ? ctx->err : ""; }

WEFT_API void *weft_tls_ctx_ssl_ctx(weft_tls_ctx *ctx) { return ctx ? ctx->ssl_ctx : NULL; }

WEFT_API void weft_tls_ctx_free(weft_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* --------------------------------------------------------- connections */

WEFT_API int weft_tls_conn_new(weft_tls_ctx *ctx, int fd, const char *host, weft_tls_conn **out)
{
    if (!ctx || fd < 0 || !out)
        return -EINVAL;
    *out = NULL;
    pthread_once(&g_once, bio_method_init);
    if (!g_bio_method)
        return -ENOMEM;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -EBADF;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    weft_tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl_ctx);
    BIO *bio = c->ssl ? BIO_new(g_bio_method) : NULL;
    if (!bio)
        goto nomem;
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(c->ssl, bio, bio);
    if (ctx->mode == WEFT_TLS_CLIENT) {
        SSL_set_connect_state(c->ssl);
        if (host && *host) {
            unsigned char addr[16];
            int numeric = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
            if (!numeric && SSL_set_tlsext_host_name(c->ssl, host) != 1)
                goto nomem;
            /* SSL_set1_host takes a DNS name or an IP address. */
            if (SSL_set1_host(c->ssl, host) != 1)
                goto nomem;
        }
    } else {
        SSL_set_accept_state(c->ssl);
    }
    *out = c;
    return 0;
nomem:
    ERR_clear_error();
    SSL_free(c->ssl);
    free(c);
    return -ENOMEM;
}

/* What one failing SSL call means, read at once (before any wait). Returns
 * WEFT_READ / WEFT_WRITE to wait for, 0 for a clean end of stream, or -errno. */
static int failed(weft_tls_conn *c, int r)
{
    int e = errno;
    int se = SSL_get_error(c->ssl, r);
    switch (se) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return WEFT_READ;
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return WEFT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        take_errors(c->err, sizeof c->err, NULL);
        if (e == 0 || e == EAGAIN) {
            snprintf(c->err, sizeof c->err, "the peer closed the connection");
            return -ECONNRESET;
        }
        snprintf(c->err, sizeof c->err, "%s", strerror(e));
        return -e;
    default:
        take_errors(c->err, sizeof c->err, c->handshaken ? NULL : c->ssl);
        if (!c->err[0])
            snprintf(c->err, sizeof c->err, "TLS error %d", se);
        return -EPROTO;
    }
}

/* Milliseconds left until deadline (-1: none), at least 1 while any is
 * left; 0 when it has passed. */
static int64_t left_ms(weft_time deadline)
{
    if (deadline < 0)
        return -1;
    weft_time now = weft_now();
    if (now >= deadline)
        return 0;
    return (int64_t)((deadline - now + 999999) / 1000000);
}

static weft_time deadline_of(int64_t timeout_ms)
{
    if (timeout_ms == -1)
        return -1;
    if (timeout_ms < 0)
        return 0; /* already passed */
    return weft_now() + (weft_time)timeout_ms * 1000000;
}

/* Waits for what failed() asked; 0 to retry or -errno. */
static int wait_for(weft_tls_conn *c, int events, weft_time deadline)
{
    int64_t ms = left_ms(deadline);
    if (ms == 0) {
        snprintf(c->err, sizeof c->err, "%s", strerror(ETIMEDOUT));
        return -ETIMEDOUT;
    }
    /* OpenSSL asks to wait only after our BIO saw EAGAIN: the edge wait,
     * without the poll() a level wait makes first. */
    int rc = weft_wait_fd(c->fd, events | WEFT_EDGE, ms);
    if (rc < 0) {
        snprintf(c->err, sizeof c->err, "%s", strerror(-rc));
        return rc;
    }
    return 0;
}

static int handshake(weft_tls_conn *c, weft_time deadline)
{
    while (!c->handshaken) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
            c->handshaken = 1;
            break;
        }
        int w = failed(c, r);
        if (w == 0) {
            snprintf(c->err, sizeof c->err, "the peer ended the connection during the handshake");
            return -ECONNRESET;
        }
        if (w < 0)
            return w;
        if ((w = wait_for(c, w, deadline)) < 0)
            return w;
    }
    return 0;
}

WEFT_API int weft_tls_handshake(weft_tls_conn *c, int64_t timeout_ms)
{
    if (!c)
        return -EINVAL;
    c->err[0] = '\0';
    return handshake(c, deadline_of(timeout_ms));
}

WEFT_API int weft_tls_connect(weft_tls_ctx *ctx, const char *host, uint16_t port,
                              int64_t timeout_ms, weft_tls_conn **out, char *errbuf,
                              size_t errlen)
{
    if (!ctx || !out)
        return -EINVAL;
    *out = NULL;
    weft_time deadline = deadline_of(timeout_ms);
    int64_t ms = left_ms(deadline);
    if (ms == 0) {
        copy_err(errbuf, errlen, strerror(ETIMEDOUT));
        return -ETIMEDOUT;
    }
    int fd = weft_tcp_connect_host(host, port, ms);
    if (fd < 0) {
        copy_err(errbuf, errlen, strerror(-fd));
        return fd;
    }
    weft_tls_conn *c;
    int rc = weft_tls_conn_new(ctx, fd, host, &c);
    if (rc < 0) {
        weft_close(fd);
        copy_err(errbuf, errlen, strerror(-rc));
        return rc;
    }
    rc = handshake(c, deadline);
    if (rc < 0) {
        copy_err(errbuf, errlen, c->err);
        weft_tls_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

WEFT_API int weft_tls_accept(weft_tls_ctx *ctx, int fd, int64_t timeout_ms, weft_tls_conn **out,
                             char *errbuf, size_t errlen)
{
    if (!ctx || fd < 0 || !out) {
        if (fd >= 0)
            weft_close(fd);
        return -EINVAL;
    }
    weft_tls_conn *c;
    int rc = weft_tls_conn_new(ctx, fd, NULL, &c);
    if (rc < 0) {
        weft_close(fd);
        copy_err(errbuf, errlen, strerror(-rc));
        return rc;
    }
    rc = handshake(c, deadline_of(timeout_ms));
    if (rc < 0) {
        copy_err(errbuf, errlen, c->err);
        weft_tls_close(c);
        *out = NULL;
        return rc;
    }
    *out = c;
    return 0;
}

/* What a read and a write do first: check the arguments, take the call's
 * one deadline, and finish the handshake if it is still due. 1 to go on;
 * 0 for an empty transfer (nothing to do); or -errno. */
static int io_begin(weft_tls_conn *c, const void *buf, size_t n, int64_t timeout_ms,
                    weft_time *deadline)
{
    if (!c || (!buf && n))
        return -EINVAL;
    c->err[0] = '\0';
    if (n == 0)
        return 0;
    *deadline = deadline_of(timeout_ms);
    int rc = handshake(c, *deadline);
    return rc < 0 ? rc : 1;
}

WEFT_API ssize_t weft_tls_read(weft_tls_conn *c, void *buf, size_t n, int64_t timeout_ms)
{
    weft_time deadline;
    int rc = io_begin(c, buf, n, timeout_ms, &deadline);
    if (rc <= 0)
        return rc;
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(c->ssl, buf, n, &got);
        if (r == 1)
            return (ssize_t)got;
        int w = failed(c, r);
        if (w <= 0)
            return w;
        if ((w = wait_for(c, w, deadline)) < 0)
            return w;
    }
}

WEFT_API ssize_t weft_tls_write(weft_tls_conn *c, const void *buf, size_t n, int64_t timeout_ms)
{
    weft_time deadline;
    int rc = io_begin(c, buf, n, timeout_ms, &deadline);
    if (rc <= 0)
        return rc;
    for (;;) {
        size_t put = 0;
        ERR_clear_error();
        /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, success means all n bytes. */
        int r = SSL_write_ex(c->ssl, buf, n, &put);
        if (r == 1)
            return (ssize_t)n;
        int w = failed(c, r);
        if (w == 0) {
            snprintf(c->err, sizeof c->err, "the peer closed the TLS stream");
            return -EPIPE;
        }
        if (w < 0)
            return w;
        if ((w = wait_for(c, w, deadline)) < 0)
            return w;
    }
}

WEFT_API int weft_tls_shutdown(weft_tls_conn *c, int64_t timeout_ms)
{
    if (!c)
        return -EINVAL;
    c->err[0] = '\0';
    if (!c->handshaken)
        return 0; /* nothing to end: no TLS session yet */
    weft_time deadline = deadline_of(timeout_ms);
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_shutdown(c->ssl);
        if (r >= 0) { /* 0: ours sent, theirs not yet seen; 1: both */
            ERR_clear_error();
            return 0;
        }
        int w = failed(c, r);
        if (w == 0)
            return 0;
        if (w < 0)
            return w;
        if ((w = wait_for(c, w, deadline)) < 0)
            return w;
    }
}

WEFT_API int weft_tls_close(weft_tls_conn *c)
{
    if (!c)
        return 0;
    SSL_free(c->ssl);
    ERR_clear_error();
    int rc = weft_close(c->fd);
    free(c);
    return rc;
}

WEFT_API int weft_tls_fd(const weft_tls_conn *c) { return c ? c->fd : -EINVAL; }

WEFT_API const char *weft_tls_error(const weft_tls_conn *c) { return c ? c->err : ""; }

WEFT_API void *weft_tls_ssl(weft_tls_conn *c) { return c ? c->ssl : NULL; }

/* ------------------------------------------------------------- streams
 * The buffered stream over TLS, on weft_stream_open_ops (weft.h, from the
 * streams work; compiled where weft.h defines WEFT_HAVE_STREAMS). */
#ifdef WEFT_HAVE_STREAMS
static ssize_t st_read(void *ctx, void *buf, size_t n, int64_t timeout_ms)
{
    return weft_tls_read(ctx, buf, n, timeout_ms);
}

static ssize_t st_write(void *ctx, const void *buf, size_t n, int64_t timeout_ms)
{
    return weft_tls_write(ctx, buf, n, timeout_ms);
}

static int st_close(void *ctx)
{
    weft_tls_shutdown(ctx, 1000);
    return weft_tls_close(ctx);
}

static const weft_stream_ops st_ops = {
    .read = st_read, .write = st_write, .writev = NULL, .close = st_close};

WEFT_API int weft_tls_stream_open(weft_tls_conn *c, const weft_stream_opts *o, weft_stream **out)
{
    if (!c || !out)
        return -EINVAL;
    return weft_stream_open_ops(&st_ops, c, o, out);
}
#endif

/* weft.h's error rule for the context: the reason as a return value. */
WEFT_API int weft_tls_ctx_create(int mode, weft_tls_ctx **out)
{
    if (!out)
        return -EINVAL;
    errno = 0;
    *out = weft_tls_ctx_new(mode);
    if (*out)
        return 0;
    return errno > 0 ? -errno : -ENOMEM;
}
