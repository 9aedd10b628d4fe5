/*
 * HTTP/1.1 server: one task per connection.
 *
 *   build/examples/http_server PORT [WORKERS] [DIR]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port, printed at start) and runs
 * until SIGINT or SIGTERM. WORKERS defaults to one per CPU (0 = default too).
 * With WEFT_TLS_CERT and WEFT_TLS_KEY set (PEM files) it serves HTTPS
 * instead (examples/serve_tls.h).
 *
 *   GET /           200 "Hello, World!"
 *   GET /file/NAME  the regular file NAME of DIR (404 without DIR, for a
 *                   missing or non-regular file, a symlink or a name starting
 *                   with '.'; 400 for a name containing '/' or "..", which
 *                   covers "/file/../x"; no percent-decoding is done, so
 *                   "%2e%2e" is just a literal, harmless name)
 *   HEAD            the same without the body
 *   other paths     404; other methods 405 (keep-alive is kept for these)
 *
 * Keep-alive and pipelining: every request found in one read is answered,
 * in order, into one output buffer that goes out in one write. A request that
 * the parser rejects (common/http_parser.h: malformed 400, body too large
 * 413, head over 8 KiB or over 64 headers 431, unknown method or chunked body
 * 501, HTTP/2+ 505) gets its status with "Connection: close", then the server
 * shuts its side down, drains what the client still sends for a moment (so the
 * client reads the answer instead of a reset) and closes.
 *
 * Per connection: a buffered stream (weft_stream_*) whose 16 KiB read buffer
 * the parser reads in place, a 16 KiB output buffer on the task's stack, the
 * parser state; no allocation per request. The "Hello" and error
 * responses are formatted once at start.
 *
 * Timeouts: between requests (and within a body) a connection may be idle
 * for WEFT_IDLE_TIMEOUT_MS (default 60 s); a request head, once its first
 * byte is in, must be whole within WEFT_HEAD_TIMEOUT_MS (default 20 s),
 * however slowly its bytes trickle (slowloris), else the client gets 408 and
 * the connection closes.
 *
 * Graceful shutdown: a task waits for SIGINT/SIGTERM (watched from the start,
 * so one that comes early is not fatal). It ends the accept loop; the
 * connections waiting in the listener's queue are accepted (serve.h) and the
 * listener closed. A connection with nothing buffered takes what its client
 * has already sent (a read that does not wait) and answers it; then every
 * connection that is idle between requests has its read side shut down (its
 * read sees end of stream and it closes), and a connection busy with a
 * request finishes it and closes instead of reading the next one. Connections still busy after GRACE_MS are cut off. The
 * server prints a line and exits 0. The cost per request is one relaxed
 * store and one relaxed load; a connection registers in a list once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft.h>

#include "serve.h"
#include "serve_tls.h"

#include "http_parser.h"

#define IN_CAP 16384
#define OUT_CAP 16384
#define IDLE_TIMEOUT_MS 60000 /* between requests and within a body: WEFT_IDLE_TIMEOUT_MS */
#define HEAD_TIMEOUT_MS 20000 /* a whole request head, from its first byte: WEFT_HEAD_TIMEOUT_MS */
#define WRITE_TIMEOUT_MS 60000
#define LINGER_MS 500 /* draining after an error or "Connection: close" */
#define LINGER_READS 16
#define GRACE_MS 2000 /* shutdown: how long busy connections may take */

static int g_dirfd = -1; /* DIR, or -1 */
static int64_t g_idle_ms = IDLE_TIMEOUT_MS;
static int64_t g_head_ms = HEAD_TIMEOUT_MS;

/* ----------------------------------------------------- pre-formatted answers */

/* How a response ends the headers: HTTP/1.1 keep-alive (nothing to say),
 * HTTP/1.0 keep-alive, or close. */
enum { CONN_KA11, CONN_KA10, CONN_CLOSE, CONN_MODES };
static const char *const conn_header[CONN_MODES] = {"", "Connection: keep-alive\r\n",
                                                     "Connection: close\r\n"};

typedef struct canned {
    char text[320];
    size_t len;      /* whole response */
    size_t head_len; /* without the body (for HEAD) */
} canned;

enum { R_HELLO, R_NOTFOUND, R_BADNAME, R_METHOD, R_KINDS };
static canned g_canned[R_KINDS][CONN_MODES];

static void canned_init(canned *c, int status, const char *extra, const char *body, int mode)
{
    size_t blen = strlen(body);
    int n = snprintf(c->text, sizeof c->text,
                     "HTTP/1.1 %d %s\r\nServer: weft\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n%s",
                     status, http_reason(status), blen, extra, conn_header[mode], body);
    if (n < 0 || (size_t)n >= sizeof c->text)
        abort();
    c->len = (size_t)n;
    c->head_len = c->len - blen;
}

static void responses_init(void)
{
    for (int m = 0; m < CONN_MODES; m++) {
        canned_init(&g_canned[R_HELLO][m], 200, "", "Hello, World!", m);
        canned_init(&g_canned[R_NOTFOUND][m], 404, "", "Not Found\n", m);
        canned_init(&g_canned[R_BADNAME][m], 400, "", "Bad file name\n", m);
        canned_init(&g_canned[R_METHOD][m], 405, "Allow: GET, HEAD\r\n", "Method Not Allowed\n", m);
    }
}

/* ------------------------------------------------------------- connection */

typedef struct conn {
    serve_conn link;  /* first: the open-connection list holds these */
    size_t out_len;
    atomic_int idle;  /* waiting for a new request (nothing half read) */
    int shut;         /* shutdown: read side shut down (under g_conns_lock) */
    weft_stream *tls; /* the stream when it runs over TLS: output goes through it */
    char out[OUT_CAP];
} conn;

/* ------------------------------------------------------ graceful shutdown */

/* Ends idle connections and waits up to GRACE_MS for busy ones (re-checking
 * every 10 ms, so one that turns idle meanwhile is ended too). Returns how
 * many connections are left. */
static int drain_connections(void)
{
    weft_time end = weft_now() + (weft_time)GRACE_MS * 1000000;
    for (;;) {
        pthread_mutex_lock(&g_conns_lock);
        int left = g_nconns;
        for (serve_conn *l = g_conns; l; l = l->next) {
            conn *c = (conn *)l;
            if (!c->shut && atomic_load_explicit(&c->idle, memory_order_relaxed)) {
                weft_shutdown(c->link.fd, SHUT_RD);
                c->shut = 1;
            }
        }
        pthread_mutex_unlock(&g_conns_lock);
        if (left == 0 || weft_now() >= end)
            return left;
        weft_sleep_ms(10);
    }
}


static int flush_out(conn *c)
{
    if (c->out_len == 0)
        return 0;
    ssize_t n;
    if (c->tls) {
        n = weft_stream_write(c->tls, c->out, c->out_len, WRITE_TIMEOUT_MS);
        if (n >= 0)
            n = weft_stream_flush(c->tls, WRITE_TIMEOUT_MS);
    } else {
        n = weft_write(c->link.fd, c->out, c->out_len, WRITE_TIMEOUT_MS);
    }
    c->out_len = 0;
    return n < 0 ? -1 : 0;
}

/* Makes room for n bytes in the output buffer (n <= OUT_CAP). */
static int out_room(conn *c, size_t n)
{
    return OUT_CAP - c->out_len >= n ? 0 : flush_out(c);
}

static int out_put(conn *c, const char *p, size_t n)
{
    if (out_room(c, n) < 0)
        return -1;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static int out_canned(conn *c, int kind, int mode, int head_only)
{
    const canned *r = &g_canned[kind][mode];
    return out_put(c, r->text, head_only ? r->head_len : r->len);
}

static const char *content_type(const char *name, size_t n)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"}, {".css", "text/css"},
        {".js", "text/javascript"},            {".json", "application/json"},
        {".png", "image/png"},                 {".jpg", "image/jpeg"},
        {".svg", "image/svg+xml"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && memcmp(name + n - e, types[i].ext, e) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* GET/HEAD /file/NAME. Returns 0, or -1 when the connection must end (write
 * failed, or the file shrank after its length went out). */
static int serve_file(conn *c, const char *name, size_t n, int mode, int head_only)
{
    if (n == 0)
        return out_canned(c, R_NOTFOUND, mode, head_only);
    if (memchr(name, '/', n) || memmem(name, n, "..", 2))
        return out_canned(c, R_BADNAME, mode, head_only);
    if (name[0] == '.' || g_dirfd < 0 || n > NAME_MAX)
        return out_canned(c, R_NOTFOUND, mode, head_only);
    char z[NAME_MAX + 1];
    memcpy(z, name, n);
    z[n] = '\0';
    /* Plain blocking open/fstat/read on the worker thread for now: a slow
     * disk stalls every task of this worker. A blocking-call pool will take
     * this off the workers later. O_NONBLOCK only keeps open() of a FIFO from
     * hanging; it is rejected below. */
    int fd = openat(g_dirfd, z, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return out_canned(c, R_NOTFOUND, mode, head_only);
    if (out_room(c, 512) < 0) {
        close(fd);
        return -1;
    }
    c->out_len += (size_t)snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                                   "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: %s\r\n"
                                   "Content-Length: %lld\r\n%s\r\n",
                                   content_type(z, n), (long long)st.st_size, conn_header[mode]);
    int rc = 0;
    if (!head_only) {
        off_t left = st.st_size;
        while (left > 0) {
            if (c->out_len == OUT_CAP && flush_out(c) < 0) {
                rc = -1;
                break;
            }
            size_t want = OUT_CAP - c->out_len;
            if ((off_t)want > left)
                want = (size_t)left;
            ssize_t k = read(fd, c->out + c->out_len, want);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) { /* shrank under us: the promised length cannot be met */
                rc = -1;
                break;
            }
            c->out_len += (size_t)k;
            left -= k;
        }
    }
    close(fd);
    return rc;
}

/* Answers one parsed request. Returns 0, or -1 when the connection must end. */
static int respond(conn *c, const char *buf, const http_request *r)
{
    int mode = !r->keep_alive ? CONN_CLOSE : r->minor == 0 ? CONN_KA10 : CONN_KA11;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD)
        return out_canned(c, R_METHOD, mode, 0);
    int head_only = r->method == HTTP_HEAD;
    const char *path = buf + r->path.off;
    size_t plen = r->path.len;
    if (plen == 0 || (plen == 1 && path[0] == '/'))
        return out_canned(c, R_HELLO, mode, head_only);
    if (plen >= 6 && memcmp(path, "/file/", 6) == 0)
        return serve_file(c, path + 6, plen - 6, mode, head_only);
    return out_canned(c, R_NOTFOUND, mode, head_only);
}

/* Ends a connection we decided to close: the answer is written, so shut our
 * side and read (discarding) what the client still sends for a moment; closing
 * with unread data would reset the connection and could destroy the answer
 * before the client read it. */
static void linger_close(weft_stream *s, char *scratch, size_t cap)
{
    weft_shutdown(weft_stream_fd(s), SHUT_WR);
    for (int i = 0; i < LINGER_READS; i++)
        if (weft_stream_read_some(s, scratch, cap, LINGER_MS) <= 0)
            break;
    weft_stream_close(s);
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    /* The input goes through a stream: its read buffer holds the requests
     * received; the parser works on them in place (peek) and each answered
     * request is consumed. */
    weft_stream_opts so = {.read_buffer = IN_CAP, .write_buffer = 64, .max_line = IN_CAP};
    weft_stream *s;
    int tls = serve_tls_of(fd) != NULL;
    if (serve_io_stream_open(fd, &so, &s) < 0) {
        serve_io_close(fd);
        return NULL;
    }
    conn c = {.link.fd = fd, .out_len = 0, .tls = tls ? s : NULL};
    serve_conn_register(&c.link, 0);
    uint64_t skip = 0; /* body bytes of the last request still to discard */
    weft_time head_end = 0; /* when the head being received must be whole; 0: none begun */
    int done = 0;     /* 1: close after flushing; 2: the peer went away */
    http_request req;
    http_request_init(&req, 0);

    while (!done) {
        /* Between requests: a shutdown may end us here (or, once we wait,
         * by shutting our read side). What the client has already sent is
         * still read and answered: while stopping, the wait takes only what
         * is there. */
        size_t len = weft_stream_buffered(s, NULL);
        int stopping = atomic_load_explicit(&g_stopping, memory_order_relaxed);
        atomic_store_explicit(&c.idle, len == 0, memory_order_relaxed);
        /* Slowloris: the idle timeout bounds each wait, and a head that has
         * begun must also be whole by head_end, however its bytes trickle. */
        int64_t wait_ms = len == 0 && stopping ? 0 : g_idle_ms;
        int head_wait = 0;
        if (head_end && wait_ms) {
            weft_time now = weft_now();
            int64_t left_ms = head_end > now ? (head_end - now + 999999) / 1000000 : 0;
            if (left_ms <= wait_ms) {
                wait_ms = left_ms;
                head_wait = 1;
            }
        }
        /* One more read: wait until more than what is buffered is there. The
         * unparsed tail is under 8 KiB (longer heads are rejected), so there
         * is always room. */
        const char *in;
        ssize_t n = head_wait && wait_ms == 0 ? -ETIMEDOUT
                                               : weft_stream_peek(s, len + 1, &in, wait_ms);
        if (n == -ETIMEDOUT && head_wait) {
            static const char t408[] = "HTTP/1.1 408 Request Timeout\r\nServer: weft\r\n"
                                       "Content-Length: 0\r\nConnection: close\r\n\r\n";
            done = out_put(&c, t408, sizeof t408 - 1) < 0 || flush_out(&c) < 0 ? 2 : 1;
            break;
        }
        if (n <= (ssize_t)len) {
            done = 2; /* end of stream, reset, idle timeout, or stopping */
            break;
        }
        len = (size_t)n;
        size_t start = 0;
        while (start < len) {
            if (skip) {
                size_t k = len - start;
                if (k > skip)
                    k = (size_t)skip;
                start += k;
                skip -= k;
                continue;
            }
            const char *buf = in + start;
            int rc = http_parse(&req, buf, len - start);
            if (rc == HTTP_NEED_MORE)
                break;
            if (rc < 0) {
                int status = -rc;
                char text[192];
                int tn = snprintf(text, sizeof text,
                                  "HTTP/1.1 %d %s\r\nServer: weft\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n",
                                  status, http_reason(status));
                if (out_put(&c, text, (size_t)tn) < 0)
                    done = 2;
                else
                    done = 1;
                break;
            }
            if (respond(&c, buf, &req) < 0) {
                done = 2;
                break;
            }
            start += (size_t)rc;
            skip = req.content_length;
            head_end = 0;
            if (!req.keep_alive) {
                done = 1;
                break;
            }
            http_request_init(&req, 0);
        }
        weft_stream_consume(s, start);
        /* Bytes of a next head are in: its deadline starts now (the read
         * that brought them has just returned). */
        if (!done && !skip && start < len && !head_end)
            head_end = weft_now() + (weft_time)g_head_ms * 1000000;
        if (flush_out(&c) < 0)
            done = 2;
    }
    serve_conn_unregister(&c.link);
    if (done == 1)
        linger_close(s, c.out, sizeof c.out);
    else
        weft_stream_close(s);
    return NULL;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s PORT [WORKERS] [DIR]\n", argv[0]);
        return 2;
    }
    uint16_t port;
    weft_config cfg;
    if (serve_parse_args("http_server", argv, argc, &port, &cfg))
        return 2;
    if (argc == 4) {
        g_dirfd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (g_dirfd < 0) {
            fprintf(stderr, "http_server: %s: %s\n", argv[3], strerror(errno));
            return 2;
        }
    }
    if (serve_tls_setup("http_server"))
        return 2;
    responses_init();
    g_idle_ms = serve_env_ms("http_server", "WEFT_IDLE_TIMEOUT_MS", IDLE_TIMEOUT_MS);
    g_head_ms = serve_env_ms("http_server", "WEFT_HEAD_TIMEOUT_MS", HEAD_TIMEOUT_MS);
    /* The head deadline is now + g_head_ms in ns: a larger value (over 146
     * years, "never") would overflow it into the past, and every head that
     * came in two reads would get 408 at once. */
    if (g_head_ms > INT64_MAX / 2000000)
        g_head_ms = INT64_MAX / 2000000;
    return serve_run("http_server", &cfg, port, 4096, serve_tls_wrap(serve), drain_connections);
}
