/*
 * weft_tls — TLS over weft sockets, through OpenSSL (libssl 3).
 *
 * An optional part of weft: built as libweft_tls.{a,so} with its own
 * pkg-config file (weft_tls.pc: Requires weft, libssl) where OpenSSL's
 * headers are there, so libweft itself never depends on OpenSSL.
 *
 * Conventions: those of weft.h (0 or a count on success, a negative errno on
 * failure, never errno to read; timeouts in milliseconds, -1 = none, any
 * other negative value = already expired: the call completes if it can
 * without waiting, else -ETIMEDOUT). A timeout bounds the whole call, not each
 * wait inside it. "Suspends" as in weft.h: only the calling task waits
 * (weft_wait_fd on the socket); calls that suspend are task only (outside a
 * task weft_wait_fd blocks the thread in poll(), which works too).
 *
 * Errors particular to TLS:
 *   -EPROTO   the TLS layer failed: a handshake failure, a certificate that
 *             did not verify (wrong host name, unknown issuer, expired...), a
 *             bad record, the peer closing TCP without a close_notify in the
 *             middle of a record. weft_tls_error(c) gives OpenSSL's reason
 *             (with the verification error where there is one), e.g.
 *             "certificate verify failed: hostname mismatch".
 *   -ENOMEM   OpenSSL could not allocate.
 * Socket errors come through as they are: -ECONNREFUSED, -ECONNRESET,
 * -EPIPE, -ETIMEDOUT (timeout_ms passed), -EBADF, -ECANCELED (the task was
 * cancelled while waiting).
 *
 * Threads. A context may be shared by any number of tasks and threads once
 * set up (after the last _load/_set call). A connection may be used by one
 * task at a time — not by a reader task and a writer task at once — and
 * that task may move between worker threads between calls (and inside them,
 * at each wait): OpenSSL 3 allows it, and weft_tls reads OpenSSL's
 * thread-local error queue right after the failing call, before any
 * suspension, into the connection.
 *
 * I/O goes through weft_tls's own BIO on the descriptor: recv/send with
 * MSG_DONTWAIT | MSG_NOSIGNAL (OpenSSL's socket BIO uses write(), which
 * raises SIGPIPE on a reset peer), and a wait with weft_wait_fd in the
 * direction OpenSSL asks for (SSL_ERROR_WANT_READ during a write, e.g. a key
 * update, waits for reading).
 */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <weft.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_tls_ctx weft_tls_ctx;
typedef struct weft_tls_conn weft_tls_conn;

#define WEFT_TLS_CLIENT 0
#define WEFT_TLS_SERVER 1

/* ---------------------------------------------------------------- contexts */

/* A context for the client side (WEFT_TLS_CLIENT) or the server side
 * (WEFT_TLS_SERVER): TLS 1.2 minimum. A client context verifies the peer's
 * certificate against the system's default CA store and checks the host
 * name given to weft_tls_connect / weft_tls_conn_new (verification is ON by
 * default; weft_tls_ctx_set_verify(ctx, 0) turns it off). A server context
 * does not ask for client certificates. create: 0 and *out, or -EINVAL
 * (bad mode, out NULL), -ENOMEM, *out NULL then; new: shorthand, the
 * context or NULL on failure (weft.h's error rule). Does not suspend. */
WEFT_API int weft_tls_ctx_create(int mode, weft_tls_ctx **out);
WEFT_API weft_tls_ctx *weft_tls_ctx_new(int mode);

/* Loads a certificate chain (PEM, leaf first) and its private key (PEM;
 * key_file NULL = the key is in cert_file), and checks they match. Needed
 * by a server; a client may present one too. 0, -EINVAL (NULL argument),
 * -ENOENT (a file is missing), -EPROTO (unreadable, or the key does not
 * match: weft_tls_ctx_error gives the reason). Does not suspend. */
WEFT_API int weft_tls_ctx_load_cert(weft_tls_ctx *ctx, const char *cert_file, const char *key_file);

/* Trusts the CA certificates of ca_file (PEM) and/or ca_dir (hashed
 * directory, c_rehash); either may be NULL, not both. Replaces nothing: the
 * default store stays trusted too. 0, -EINVAL, -ENOENT, -EPROTO. */
WEFT_API int weft_tls_ctx_load_ca(weft_tls_ctx *ctx, const char *ca_file, const char *ca_dir);

/* on = 1: verify the peer (the default for clients; for a server, it asks
 * for and requires a client certificate). on = 0: accept any certificate
 * (testing only). 0 or -EINVAL. */
WEFT_API int weft_tls_ctx_set_verify(weft_tls_ctx *ctx, int on);

/* OpenSSL's reason for the last failing _load call on ctx ("" if none).
 * Valid until the next call on ctx. */
WEFT_API const char *weft_tls_ctx_error(const weft_tls_ctx *ctx);

/* The SSL_CTX * inside, for settings weft_tls does not wrap (ciphers, ALPN,
 * session cache); change it before first use only. */
WEFT_API void *weft_tls_ctx_ssl_ctx(weft_tls_ctx *ctx);

/* Frees ctx; connections made from it keep what they need (OpenSSL counts
 * references), so they may outlive it. NULL is ignored. */
WEFT_API void weft_tls_ctx_free(weft_tls_ctx *ctx);

/* ------------------------------------------------------------- connections */

/* A TLS connection over fd, a connected stream socket (made non-blocking
 * here if it is not), without handshaking yet. For a client context, host
 * (may be NULL: no SNI, and then no host-name check — only the chain is
 * verified) is sent as SNI (unless it is a numeric address) and the
 * certificate must match it (SSL_set1_host: DNS name or IP address).
 * The connection takes ownership of fd on success only. 0 with *out set,
 * -EINVAL, -ENOMEM. Does not suspend. */
WEFT_API int weft_tls_conn_new(weft_tls_ctx *ctx, int fd, const char *host, weft_tls_conn **out);

/* Runs the handshake (client or server side, as the context says) within
 * timeout_ms. 0, -EPROTO (see weft_tls_error), -ETIMEDOUT, -ECONNRESET,
 * -EPIPE, -ECANCELED... Calling it again after success returns 0. The read
 * and write calls handshake first if this was not called. Suspends. */
WEFT_API int weft_tls_handshake(weft_tls_conn *c, int64_t timeout_ms);

/* weft_tcp_connect_host(host, port) + weft_tls_conn_new(ctx, fd, host) +
 * weft_tls_handshake, all within timeout_ms. On failure *out is NULL, the
 * socket is closed, and if errbuf is not NULL OpenSSL's reason (or
 * strerror's) is copied there (errlen bytes at most, NUL-terminated).
 * Returns 0, -ECONNREFUSED, -ETIMEDOUT, -EPROTO, a weft_resolve error...
 * Suspends. */
WEFT_API int weft_tls_connect(weft_tls_ctx *ctx, const char *host, uint16_t port,
                              int64_t timeout_ms, weft_tls_conn **out, char *errbuf,
                              size_t errlen);

/* weft_tls_conn_new(ctx, fd, NULL) + weft_tls_handshake within timeout_ms
 * on a socket from weft_tcp_accept: the server side. Owns fd in every case:
 * on failure it is closed. errbuf as for weft_tls_connect. Suspends. */
WEFT_API int weft_tls_accept(weft_tls_ctx *ctx, int fd, int64_t timeout_ms, weft_tls_conn **out,
                             char *errbuf, size_t errlen);

/* Reads up to n bytes (n > 0): >0 bytes read, 0 at the end of the stream
 * (the peer's close_notify), or -errno; -EPROTO also for a peer that closed
 * TCP without close_notify (a possibly truncated stream). Returns what one
 * TLS record or what is buffered gives; it waits only while nothing is
 * there. Suspends. */
WEFT_API ssize_t weft_tls_read(weft_tls_conn *c, void *buf, size_t n, int64_t timeout_ms);

/* Writes all n bytes: returns n, or -errno (-EPIPE, -ECONNRESET, -ETIMEDOUT,
 * -EPROTO...). After a failure part of the data may have gone out: the
 * connection can only be closed. Suspends. */
WEFT_API ssize_t weft_tls_write(weft_tls_conn *c, const void *buf, size_t n, int64_t timeout_ms);

/* Sends close_notify (our side of the stream ends, as shutdown(SHUT_WR)),
 * waiting within timeout_ms for it to go out; the peer's close_notify is
 * not waited for (read it with weft_tls_read, which then returns 0).
 * 0 or -errno. Suspends. */
WEFT_API int weft_tls_shutdown(weft_tls_conn *c, int64_t timeout_ms);

/* Frees the connection and closes its socket with weft_close (sends no
 * close_notify: call weft_tls_shutdown first for a clean end). NULL is
 * ignored. Returns 0 or what weft_close returned. Does not suspend. */
WEFT_API int weft_tls_close(weft_tls_conn *c);

/* The socket under c (for weft_shutdown(fd, SHUT_RD) from another task, to
 * end a read; for anything else use the TLS calls). */
WEFT_API int weft_tls_fd(const weft_tls_conn *c);

/* Why the last failing call on c failed: OpenSSL's reason, with the
 * certificate verification error where there is one; "" if none. Valid until
 * the next call on c. */
WEFT_API const char *weft_tls_error(const weft_tls_conn *c);

/* The SSL * inside (to read the negotiated version or the peer certificate). */
WEFT_API void *weft_tls_ssl(weft_tls_conn *c);

/* ------------------------------------------------------------------ streams
 * weft_tls_stream_open: a buffered weft_stream (see weft.h) over c, offering
 * the same calls as a stream over a plain descriptor. The stream owns c from
 * then on: closing the stream sends close_notify (bounded to 1 s) and closes
 * c. Declared where weft.h has streams (WEFT_HAVE_STREAMS). */
#ifdef WEFT_HAVE_STREAMS
WEFT_API int weft_tls_stream_open(weft_tls_conn *c, const weft_stream_opts *o, weft_stream **out);
#endif

#ifdef __cplusplus
}
#endif

#endif
