/*
 * ceiling_server — the minimal server of issue 9, the ceiling weft's servers
 * are measured against. It does not use weft.
 *
 *   build/bench/ceiling_server echo|http PORT [THREADS]
 *
 * One thread per core (THREADS, default: the CPUs this process may use), each
 * with its own SO_REUSEPORT listener on 127.0.0.1:PORT and its own
 * edge-triggered epoll loop. Requests are answered straight from the readiness
 * event: one read, then one write for every request found in it (no tasks, no
 * queues, no wakeups between threads). The kernel spreads connections over the
 * listeners.
 *
 * echo: writes back whatever it read.
 * http: parses with the same parser as examples/http_server.c and answers
 *       "GET /" with the same pre-formatted "Hello, World!" response (other
 *       paths 404, parse errors 400/413/431/501/505 and close), keep-alive and
 *       pipelining included, so that the comparison is about the I/O model.
 *
 * A short read means the socket was drained at that moment; edge-triggered
 * epoll reports the next arrival, so there is no read-until-EAGAIN.
 * PORT 0 picks a free port; the port is printed on stdout.
 * With no arguments or only --quick (as `make bench` runs every bench binary)
 * it explains itself and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_parser.h"
#include "netbase.h"

#define IN_CAP 16384
#define OUT_CAP 32768


typedef struct conn {
    int fd;
    int closing;    /* close once out is flushed */
    int need_read;  /* the socket may hold unread bytes */
    int pending_in; /* complete requests left in `in` because out was full */
    size_t in_len, in_start;
    size_t out_len, out_off;
    uint64_t skip;     /* request body bytes still to discard */
    http_request req;
    char in[IN_CAP];
    char out[OUT_CAP];
} conn;

/* ---------------------------------------------------------------- responses */


static void out_put(conn *c, const char *s, size_t n)
{
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Answers every complete request in c->in; stops when out is nearly full. */
static void http_process(conn *c)
{
    while (c->in_start < c->in_len && !c->closing) {
        if (c->skip) {
            size_t k = c->in_len - c->in_start;
            if (k > c->skip)
                k = (size_t)c->skip;
            c->in_start += k;
            c->skip -= k;
            continue;
        }
        if (OUT_CAP - c->out_len < 512) {
            c->pending_in = 1;
            return;
        }
        const char *buf = c->in + c->in_start;
        int rc = http_parse(&c->req, buf, c->in_len - c->in_start);
        if (rc == HTTP_NEED_MORE)
            break;
        if (rc < 0) {
            c->out_len += (size_t)snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                                           "HTTP/1.1 %d %s\r\nServer: weft\r\nContent-Length: 0\r\n"
                                           "Connection: close\r\n\r\n",
                                           -rc, http_reason(-rc));
            c->closing = 1;
            break;
        }
        http_request *r = &c->req;
        int ka = r->keep_alive;
        if ((r->method == HTTP_GET || r->method == HTTP_HEAD) &&
            (http_span_eq(buf, r->path, "/") || r->path.len == 0)) {
            if (!ka)
                out_put(c, hello_close, hello_close_len);
            else if (r->minor == 0)
                out_put(c, hello_ka10, hello_ka10_len);
            else
                out_put(c, hello_ka, hello_ka_len);
            if (r->method == HTTP_HEAD)
                c->out_len -= 13;
        } else {
            out_put(c, notfound, notfound_len);
        }
        c->in_start += (size_t)rc;
        c->skip = r->content_length;
        http_request_init(&c->req, 0);
        if (!ka)
            c->closing = 1;
    }
    if (c->in_start == c->in_len) {
        c->in_start = c->in_len = 0;
    } else if (c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
        c->in_len -= c->in_start;
        c->in_start = 0;
    }
}

/* ---------------------------------------------------------------- loop */

static void conn_free(conn *c)
{
    close(c->fd); /* removes it from the epoll set */
    free(c);
}

/* Writes what is pending. Returns 0 when done or waiting for EPOLLOUT, -1 on error. */
static int flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Handles readiness; returns -1 when the connection is finished. */
static int on_ready(conn *c, uint32_t events)
{
    if (events & EPOLLERR)
        return -1;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
        c->need_read = 1;
    for (;;) {
        if (c->out_len) {
            if (flush_out(c) < 0)
                return -1;
            if (c->out_len)
                return 0; /* EPOLLOUT continues */
        }
        if (c->closing)
            return -1;
        if (c->pending_in) {
            c->pending_in = 0;
            http_process(c);
            continue;
        }
        if (!c->need_read)
            return 0;
        char *dst = g_mode == MODE_ECHO ? c->out : c->in + c->in_len;
        size_t cap = g_mode == MODE_ECHO ? OUT_CAP : IN_CAP - c->in_len;
        ssize_t n = read(c->fd, dst, cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            c->need_read = 0;
            return 0;
        }
        if (n == 0)
            return -1;
        /* A short read drained the socket; the next arrival is a new edge. */
        c->need_read = (size_t)n == cap;
        if (g_mode == MODE_ECHO) {
            c->out_len = (size_t)n;
        } else {
            c->in_len += (size_t)n;
            http_process(c);
        }
    }
}

typedef struct thread_arg {
    int lfd;
} thread_arg;

static void *loop_main(void *arg)
{
    int lfd = ((thread_arg *)arg)->lfd;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("ceiling_server: epoll_create1");
        exit(1);
    }
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        perror("ceiling_server: epoll_ctl");
        exit(1);
    }
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("ceiling_server: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c) {
                if (on_ready(c, evs[i].events) < 0)
                    conn_free(c);
                continue;
            }
            for (;;) { /* the listener */
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                    if (errno != EAGAIN)
                        perror("ceiling_server: accept4");
                    break;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn *nc = malloc(sizeof *nc);
                if (!nc) {
                    close(fd);
                    continue;
                }
                nc->fd = fd;
                nc->closing = nc->need_read = nc->pending_in = 0;
                nc->in_len = nc->in_start = nc->out_len = nc->out_off = 0;
                nc->skip = 0;
                http_request_init(&nc->req, 0);
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                         .data.ptr = nc};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                    conn_free(nc);
            }
        }
    }
    return NULL;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: ceiling_server echo|http PORT [THREADS]\n");
}

int main(int argc, char **argv)
{
    if (netbase_helper_banner(argc, argv, "ceiling_server: baseline server used by build/bench/net", usage))
        return 0;
    if (argc < 3 || argc > 4) {
        usage();
        return 2;
    }
    if (netbase_set_mode(argv[1]) < 0) {
        usage();
        return 2;
    }
    int port = atoi(argv[2]);
    int nthreads = argc > 3 ? atoi(argv[3]) : 0;
    if (port < 0 || port > 65535 || nthreads < 0) {
        usage();
        return 2;
    }
    if (nthreads == 0) {
        cpu_set_t set;
        nthreads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    signal(SIGPIPE, SIG_IGN);
    init_responses();

    thread_arg *args = calloc((size_t)nthreads, sizeof *args);
    if (!args)
        return 1;
    for (int t = 0; t < nthreads; t++) {
        args[t].lfd = listen_on(port);
        if (args[t].lfd < 0) {
            fprintf(stderr, "ceiling_server: listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
            return 1;
        }
        if (port == 0) { /* the others share the port the first one got */
            struct sockaddr_in a;
            socklen_t al = sizeof a;
            getsockname(args[t].lfd, (struct sockaddr *)&a, &al);
            port = ntohs(a.sin_port);
        }
    }
    printf("ceiling_server: %s on 127.0.0.1:%d, %d threads\n", argv[1], port, nthreads);
    fflush(stdout);
    for (int t = 1; t < nthreads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, loop_main, &args[t]) != 0) {
            fprintf(stderr, "ceiling_server: pthread_create failed\n");
            return 1;
        }
    }
    loop_main(&args[0]);
    return 0;
}
