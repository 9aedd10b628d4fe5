/*
 * What the network benchmark's helper programs share (bench/ceiling_server.c,
 * bench/threads_server.c, bench/loadgen.c; bench/net.c drives them): the
 * echo|http mode, the canned HTTP responses the two baseline servers send
 * (the same bytes as examples/http_server.c, so every server answers alike),
 * and what they print when `make bench` runs them without arguments. Header
 * only; the baselines use no weft.
 */
#ifndef WEFT_BENCH_NETBASE_H
#define WEFT_BENCH_NETBASE_H

#include <stdio.h>
#include <string.h>

enum { MODE_ECHO, MODE_HTTP };
static int g_mode;

/* Sets g_mode from "echo" or "http"; 0, or -1 for anything else. */
static inline int netbase_set_mode(const char *s)
{
    if (strcmp(s, "echo") == 0)
        g_mode = MODE_ECHO;
    else if (strcmp(s, "http") == 0)
        g_mode = MODE_HTTP;
    else
        return -1;
    return 0;
}

/* `make bench` runs every program in build/bench with no arguments or
 * --quick: a helper then says what it is (and its usage) and the caller
 * exits 0. Returns 1 when it did so. */
static inline int netbase_helper_banner(int argc, char **argv, const char *what, void (*usage)(void))
{
    if (argc == 1 || (argc == 2 && strcmp(argv[1], "--quick") == 0)) {
        printf("%s (not a benchmark by itself)\n", what);
        usage();
        return 1;
    }
    return 0;
}

/* Unused in loadgen, which only parses responses. */
__attribute__((unused)) static char hello_ka[256], hello_close[256], hello_ka10[256], notfound[256];
__attribute__((unused)) static size_t hello_ka_len, hello_close_len, hello_ka10_len, notfound_len;

static inline size_t netbase_fmt_hello(char *buf, size_t cap, const char *conn_hdr)
{
    return (size_t)snprintf(buf, cap,
                            "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 13\r\n%s\r\nHello, World!",
                            conn_hdr);
}

/* Fills the canned responses: keep-alive (HTTP/1.1 default), close, explicit
 * keep-alive (HTTP/1.0) and 404. */
static inline void init_responses(void)
{
    hello_ka_len = netbase_fmt_hello(hello_ka, sizeof hello_ka, "");
    hello_close_len = netbase_fmt_hello(hello_close, sizeof hello_close, "Connection: close\r\n");
    hello_ka10_len =
        netbase_fmt_hello(hello_ka10, sizeof hello_ka10, "Connection: keep-alive\r\n");
    notfound_len = (size_t)snprintf(notfound, sizeof notfound,
                                    "HTTP/1.1 404 Not Found\r\nServer: weft\r\n"
                                    "Content-Length: 0\r\n\r\n");
}

#endif
