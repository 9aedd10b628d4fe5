/*
 * loadgen — a closed-loop TCP load generator for the network benchmarks
 * (bench/net.c drives it). It does not use weft.
 *
 *   build/bench/loadgen MODE HOST PORT CONNS SECONDS [THREADS]
 *
 * MODE echo: every connection sends 64 bytes and waits for the same 64 bytes
 *            back, then sends again (ping-pong, one message in flight).
 * MODE http: every connection sends "GET / HTTP/1.1" keep-alive requests, one
 *            in flight, and reads each response (Content-Length framing).
 *
 * Connections are opened (blocking connect) before the clock starts, spread
 * over THREADS threads (default 1), each running a level-triggered epoll loop.
 * Latency is measured from the write of a request to the read that completes
 * its response, recorded in a log-linear histogram (1/64 relative precision).
 * Output (parsed by bench/net.c):
 *
 *   requests/s: 123456.7
 *   latency_us: p50=80.1 p99=200.3 max=1500.2
 *   total_requests: 370370
 *   errors: 0
 *
 * Without arguments, or with only --quick (as `make bench` runs every bench
 * binary), it explains itself and exits 0: it is a tool, not a benchmark.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netbase.h"

#define ECHO_SIZE 64
#define RBUF 4096
#define MAX_RECONNECTS 1000

/* ---------------------------------------------------------------- histogram */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

typedef struct hist {
    uint64_t count[NBUCKETS];
    uint64_t total, max;
} hist;

static unsigned hist_index(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned g = e - SUB_BITS + 1;
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) - SUB;
    return g * SUB + sub;
}

/* Middle of bucket i. */
static double hist_value(unsigned i)
{
    unsigned g = i / SUB, sub = i % SUB;
    if (g == 0)
        return sub;
    double lo = (double)((uint64_t)(SUB + sub) << (g - 1));
    return lo + (double)((uint64_t)1 << (g - 1)) / 2.0;
}

static void hist_add(hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
    if (from->max > into->max)
        into->max = from->max;
}

static double hist_quantile(const hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->total);
    if (want == 0)
        want = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        acc += h->count[i];
        if (acc >= want) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---------------------------------------------------------------- load */


typedef struct conn {
    int fd;
    uint64_t sent_at;
    size_t rlen;
    char rbuf[RBUF];
} conn;

typedef struct worker {
    pthread_t thread;
    conn *conns;
    int nconns;
    hist h;
    uint64_t requests, errors;
} worker;

static struct sockaddr_in g_addr;
static char g_request[256];
static size_t g_request_len;
static uint64_t g_deadline;
static pthread_barrier_t g_start;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_request(conn *c)
{
    c->rlen = 0;
    c->sent_at = now_ns();
    ssize_t n = send(c->fd, g_request, g_request_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == (ssize_t)g_request_len ? 0 : -1;
}

/* Length of a complete HTTP response in buf, 0 if incomplete, -1 if bad;
 * *status gets the status code. */
static long http_response_len(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len >= RBUF ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(buf + 9);
    long cl = 0;
    const char *p = buf;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if ((size_t)(end - p) >= 15 && strncasecmp(p, "content-length:", 15) == 0)
            cl = atol(p + 15);
    }
    if (cl < 0 || head + (size_t)cl > RBUF)
        return -1;
    return len >= head + (size_t)cl ? (long)(head + (size_t)cl) : 0;
}

/* Data arrived on c: returns 0, or -1 when the connection must be replaced. */
static int on_readable(worker *w, conn *c)
{
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0)
        return -1;
    c->rlen += (size_t)n;
    if (g_mode == MODE_ECHO) {
        if (c->rlen < ECHO_SIZE)
            return 0;
        if (c->rlen > ECHO_SIZE || memcmp(c->rbuf, g_request, ECHO_SIZE) != 0)
            w->errors++;
    } else {
        int status = 0;
        long total = http_response_len(c->rbuf, c->rlen, &status);
        if (total == 0)
            return 0;
        if (total < 0 || (size_t)total != c->rlen)
            return -1;
        if (status != 200)
            w->errors++;
    }
    uint64_t t = now_ns();
    if (t >= g_deadline)
        return 0; /* finished after the end: not counted */
    hist_add(&w->h, t - c->sent_at);
    w->requests++;
    return send_request(c);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("loadgen: epoll_create1");
        exit(1);
    }
    for (int i = 0; i < w->nconns; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, w->conns[i].fd, &ev) < 0) {
            perror("loadgen: epoll_ctl");
            exit(1);
        }
    }
    pthread_barrier_wait(&g_start);
    for (int i = 0; i < w->nconns; i++)
        if (send_request(&w->conns[i]) < 0)
            w->errors++;
    int reconnects = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= g_deadline)
            break;
        int timeout = (int)((g_deadline - t) / 1000000) + 1;
        int n = epoll_wait(ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (on_readable(w, c) == 0)
                continue;
            /* Broken connection: count it, replace it. */
            w->errors++;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            if (++reconnects > MAX_RECONNECTS || now_ns() >= g_deadline)
                continue;
            c->fd = open_conn();
            if (c->fd < 0)
                continue;
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            if (send_request(c) < 0)
                w->errors++;
        }
    }
    close(ep);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen echo|http HOST PORT CONNS SECONDS [THREADS]\n");
}

int main(int argc, char **argv)
{
    if (netbase_helper_banner(argc, argv, "loadgen: load generator used by build/bench/net", usage))
        return 0;
    if (argc < 6 || argc > 7) {
        usage();
        return 2;
    }
    if (netbase_set_mode(argv[1]) < 0) {
        usage();
        return 2;
    }
    const char *host = argv[2];
    int port = atoi(argv[3]), nconns = atoi(argv[4]);
    double seconds = atof(argv[5]);
    int nthreads = argc > 6 ? atoi(argv[6]) : 1;
    if (port <= 0 || port > 65535 || nconns <= 0 || seconds <= 0 || nthreads <= 0) {
        usage();
        return 2;
    }
    if (nthreads > nconns)
        nthreads = nconns;
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", host);
        return 2;
    }
    if (g_mode == MODE_ECHO) {
        for (int i = 0; i < ECHO_SIZE; i++)
            g_request[i] = (char)('a' + i % 26);
        g_request_len = ECHO_SIZE;
    } else {
        g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                         "GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port);
    }

    conn *conns = calloc((size_t)nconns, sizeof *conns);
    worker *workers = calloc((size_t)nthreads, sizeof *workers);
    if (!conns || !workers) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = open_conn();
        if (conns[i].fd < 0) {
            fprintf(stderr, "loadgen: connect %s:%d: %s\n", host, port, strerror(errno));
            return 1;
        }
    }
    int per = nconns / nthreads, extra = nconns % nthreads, at = 0;
    for (int t = 0; t < nthreads; t++) {
        workers[t].conns = conns + at;
        workers[t].nconns = per + (t < extra);
        at += workers[t].nconns;
    }
    pthread_barrier_init(&g_start, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
            fprintf(stderr, "loadgen: pthread_create failed\n");
            return 1;
        }
    uint64_t t0 = now_ns();
    g_deadline = t0 + (uint64_t)(seconds * 1e9);
    pthread_barrier_wait(&g_start);
    static hist all;
    uint64_t requests = 0, errors = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(workers[t].thread, NULL);
        hist_merge(&all, &workers[t].h);
        requests += workers[t].requests;
        errors += workers[t].errors;
    }
    double elapsed = (double)(g_deadline - t0) / 1e9;
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    printf("loadgen: mode=%s conns=%d threads=%d seconds=%.2f\n", argv[1], nconns, nthreads,
           elapsed);
    printf("requests/s: %.1f\n", (double)requests / elapsed);
    printf("latency_us: p50=%.1f p99=%.1f max=%.1f\n", hist_quantile(&all, 0.50) / 1e3,
           hist_quantile(&all, 0.99) / 1e3, (double)all.max / 1e3);
    printf("total_requests: %llu\n", (unsigned long long)requests);
    printf("errors: %llu\n", (unsigned long long)errors);
    free(conns);
    free(workers);
    return 0;
}
