/*
 * The libuv peer of bench/peers/run.py: one loop, one thread.
 *
 *   peer_uv echo PORT       TCP echo server on 127.0.0.1:PORT
 *   peer_uv http PORT       HTTP/1.1 keep-alive "hello" server
 *   peer_uv timers N        N timers, timer i due at its own start plus a
 *                           uniform 0-100 ms (the same delays as the Tokio
 *                           and Go peers); its "start" is when it is armed
 *
 * Servers print "peer_uv: listening on 127.0.0.1:PORT" and run until killed;
 * timers prints one line of key=value figures for run.py (the same format in
 * every peer). There is no ping-pong: libuv has no tasks or channels.
 *
 * A reply goes out with uv_try_write, the common libuv idiom for small
 * writes; only what the socket does not take is copied and queued with
 * uv_write.
 *
 * libuv's timers count whole milliseconds from the loop's cached time, the
 * time at its last update floored to a millisecond. Armed for ceil(delay)
 * ms, a timer could fire up to 1 ms before start + delay; ceil(delay) + 1 ms
 * is the shortest timeout that never fires early, so that is what is armed
 * (the extra millisecond is part of libuv's lateness here, as Tokio's
 * rounding up to its 1 ms tick is part of Tokio's).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

/* The bytes examples/http_server.c and bench/netbase.h answer "GET /" with. */
static const char hello[] = "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 13\r\n\r\nHello, World!";
#define HELLO_LEN (sizeof hello - 1)
#define IN_CAP 16384

static uv_loop_t *loop;
static int http_mode;

static void usage(void)
{
    fprintf(stderr, "usage: peer_uv echo|http PORT\n       peer_uv timers N\n");
    exit(2);
}

static long arg_num(const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        usage();
    return v;
}

/* ------------------------------------------------------------ servers */

typedef struct conn {
    uv_tcp_t tcp; /* first: the handle's address is the conn's */
    size_t len;   /* bytes in in[] (http: an incomplete head) */
    char in[IN_CAP];
    char out[IN_CAP]; /* http: replies to one read, sent when full */
} conn;

typedef struct wreq {
    uv_write_t req;
    char data[];
} wreq;

static void on_close(uv_handle_t *h) { free(h); }

static void on_written(uv_write_t *req, int status)
{
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(req);
}

/* Sends buf; what the socket does not take at once is copied and queued.
 * Returns 0, or -1 when the connection was closed. */
static int send_all(conn *c, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len)
        return 0;
    if (n < 0 && n != UV_EAGAIN) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return -1;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    wreq *w = malloc(sizeof *w + len - done);
    if (!w) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return -1;
    }
    memcpy(w->data, buf + done, len - done);
    b = uv_buf_init(w->data, (unsigned)(len - done));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(w);
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return -1;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = (conn *)h;
    *buf = uv_buf_init(c->in + c->len, (unsigned)(IN_CAP - c->len));
}

/* Every complete request head in one read is answered, in order, in one
 * write (pipelining, as examples/http_server.c does). Requests carry no body
 * here (GET from loadgen and wrk); a head over the buffer closes. */
static void http_read(conn *c)
{
    size_t start = 0, out = 0;
    const char *end;
    while ((end = memmem(c->in + start, c->len - start, "\r\n\r\n", 4)) != NULL) {
        if (out + HELLO_LEN > sizeof c->out) {
            if (send_all(c, c->out, out) < 0)
                return;
            out = 0;
        }
        memcpy(c->out + out, hello, HELLO_LEN);
        out += HELLO_LEN;
        start = (size_t)(end - c->in) + 4;
    }
    if (start == 0 && c->len == IN_CAP) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    memmove(c->in, c->in + start, c->len - start);
    c->len -= start;
    if (out)
        send_all(c, c->out, out);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = (conn *)s;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (nread == 0)
        return;
    if (!http_mode) {
        send_all(c, c->in, (size_t)nread);
        return;
    }
    c->len += (size_t)nread;
    http_read(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "peer_uv: accept: %s\n", uv_strerror(status));
        return;
    }
    conn *c = malloc(sizeof *c);
    if (!c)
        return;
    c->len = 0;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static int serve(int port)
{
    static uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (rc < 0) {
        fprintf(stderr, "peer_uv: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("peer_uv: listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT) < 0;
}

/* ------------------------------------------------------------ timers */

/* The delay of timer i: splitmix64 of i, uniform over [0, 100 ms) in ns.
 * The same function in every peer. */
static uint64_t delay_ns(uint64_t i)
{
    uint64_t z = i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z % 100000000u;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static uint64_t *g_target;
static int64_t *g_late;
static uint64_t g_fired, g_last;

static void on_timer(uv_timer_t *t)
{
    size_t i = (size_t)(uintptr_t)t->data;
    uint64_t now = uv_hrtime();
    g_late[i] = (int64_t)(now - g_target[i]);
    g_fired++;
    g_last = now;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int timers(size_t n)
{
    uv_timer_t *t = malloc(n * sizeof *t);
    g_target = malloc(n * sizeof *g_target);
    g_late = malloc(n * sizeof *g_late);
    if (!t || !g_target || !g_late) {
        fprintf(stderr, "peer_uv: out of memory for %zu timers\n", n);
        return 1;
    }
    double c0 = cpu_us();
    uint64_t t0 = uv_hrtime();
    for (size_t i = 0; i < n; i++) {
        uv_update_time(loop); /* arm from now, not from the loop's last update */
        uint64_t d = delay_ns(i), start = uv_hrtime();
        g_target[i] = start + d;
        uv_timer_init(loop, &t[i]);
        t[i].data = (void *)(uintptr_t)i;
        uv_timer_start(&t[i], on_timer, (d + 999999) / 1000000 + 1, 0);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    double wall_ms = (double)(g_last - t0) / 1e6, cpu = cpu_us() - c0;
    if (g_fired != n) {
        fprintf(stderr, "peer_uv: %llu of %zu timers fired\n", (unsigned long long)g_fired, n);
        return 1;
    }
    size_t early = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        early += g_late[i] < 0;
        sum += (double)g_late[i];
    }
    qsort(g_late, n, sizeof *g_late, cmp_i64);
    size_t p = (size_t)((double)n * 0.99);
    if (p >= n)
        p = n - 1;
    printf("peer_uv: timers n=%zu mean_us=%.1f p99_us=%.1f max_us=%.1f wall_ms=%.1f cpu_ms=%.1f "
           "early=%zu\n",
           n, sum / (double)n / 1e3, (double)g_late[p] / 1e3, (double)g_late[n - 1] / 1e3, wall_ms,
           cpu / 1e3, early);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        usage();
    loop = uv_default_loop();
    if (strcmp(argv[1], "echo") == 0 || strcmp(argv[1], "http") == 0) {
        http_mode = argv[1][0] == 'h';
        return serve((int)arg_num(argv[2], 0, 65535));
    }
    if (strcmp(argv[1], "timers") == 0)
        return timers((size_t)arg_num(argv[2], 1, 100000000));
    usage();
    return 2;
}
