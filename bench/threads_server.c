/*
 * threads_server — the thread-per-connection baseline. It does not use weft.
 *
 *   build/bench/threads_server echo|http PORT
 *
 * The main thread accepts on 127.0.0.1:PORT (blocking) and starts one detached
 * pthread per connection, which loops on blocking read() and write().
 * echo: writes back whatever it read.
 * http: the same parser and the same pre-formatted responses as
 *       examples/http_server.c and bench/ceiling_server.c (GET / -> "Hello,
 *       World!", other paths 404, parse errors 400/413/431/501/505 and close),
 *       one write for all the requests found in one read.
 * PORT 0 picks a free port; the port is printed on stdout.
 * With no arguments or only --quick (as `make bench` runs every bench binary)
 * it explains itself and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_parser.h"
#include "netbase.h"

#define IN_CAP 16384
#define OUT_CAP 32768
#define THREAD_STACK (256 * 1024)



static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void echo_conn(int fd)
{
    char buf[IN_CAP];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || write_all(fd, buf, (size_t)n) < 0)
            return;
    }
}

static void http_conn(int fd)
{
    char in[IN_CAP], out[OUT_CAP];
    size_t in_len = 0, start = 0, out_len = 0;
    uint64_t skip = 0;
    int closing = 0;
    http_request req;
    http_request_init(&req, 0);
    while (!closing) {
        ssize_t n = read(fd, in + in_len, IN_CAP - in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        in_len += (size_t)n;
        while (start < in_len && !closing) {
            if (skip) {
                size_t k = in_len - start;
                if (k > skip)
                    k = (size_t)skip;
                start += k;
                skip -= k;
                continue;
            }
            if (OUT_CAP - out_len < 512) {
                if (write_all(fd, out, out_len) < 0)
                    return;
                out_len = 0;
            }
            const char *buf = in + start;
            int rc = http_parse(&req, buf, in_len - start);
            if (rc == HTTP_NEED_MORE)
                break;
            if (rc < 0) {
                out_len += (size_t)snprintf(out + out_len, OUT_CAP - out_len,
                                            "HTTP/1.1 %d %s\r\nServer: weft\r\nContent-Length: 0\r\n"
                                            "Connection: close\r\n\r\n",
                                            -rc, http_reason(-rc));
                closing = 1;
                break;
            }
            const char *resp = notfound;
            size_t rlen = notfound_len;
            if ((req.method == HTTP_GET || req.method == HTTP_HEAD) &&
                (http_span_eq(buf, req.path, "/") || req.path.len == 0)) {
                if (!req.keep_alive)
                    resp = hello_close, rlen = hello_close_len;
                else if (req.minor == 0)
                    resp = hello_ka10, rlen = hello_ka10_len;
                else
                    resp = hello_ka, rlen = hello_ka_len;
                if (req.method == HTTP_HEAD)
                    rlen -= 13;
            }
            memcpy(out + out_len, resp, rlen);
            out_len += rlen;
            start += (size_t)rc;
            skip = req.content_length;
            if (!req.keep_alive)
                closing = 1;
            http_request_init(&req, 0);
        }
        if (out_len && write_all(fd, out, out_len) < 0)
            return;
        out_len = 0;
        if (start == in_len) {
            start = in_len = 0;
        } else if (start) {
            memmove(in, in + start, in_len - start);
            in_len -= start;
            start = 0;
        }
    }
    shutdown(fd, SHUT_WR);
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if (g_mode == MODE_ECHO)
        echo_conn(fd);
    else
        http_conn(fd);
    close(fd);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: threads_server echo|http PORT\n");
}

int main(int argc, char **argv)
{
    if (netbase_helper_banner(argc, argv, "threads_server: baseline server used by build/bench/net", usage))
        return 0;
    if (argc != 3) {
        usage();
        return 2;
    }
    if (netbase_set_mode(argv[1]) < 0) {
        usage();
        return 2;
    }
    int port = atoi(argv[2]);
    if (port < 0 || port > 65535) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    init_responses();

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
        fprintf(stderr, "threads_server: listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("threads_server: %s on 127.0.0.1:%d, one thread per connection\n", argv[1],
           ntohs(a.sin_port));
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(10000); /* wait for connections to close */
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t th;
        if (pthread_create(&th, &attr, conn_main, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}
