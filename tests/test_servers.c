/*
 * The example servers against hostile or unlucky clients, run as child
 * processes: a request head that trickles in (slowloris) gets 408 at the head
 * deadline while other clients are served; the echo server's idle limit; and
 * graceful shutdown that loses nothing already sent (300 connections, each
 * with its request written, then SIGTERM at once: every one is answered).
 *
 * No assertion depends on how fast the machine is: the limits the servers
 * are given are short (300 ms) and what is checked is that the timeout
 * happened, within bounds far above them.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

extern char **environ;

static int srv_slow(void) { return test_scale_down(); }

static int srv_path(const char *name, char *path, size_t cap)
{
    /* make test passes its build's directory; by hand, the default build. */
    const char *dir = getenv("WEFT_EXAMPLES_DIR");
    snprintf(path, cap, "%s/%s", dir && *dir ? dir : "build/examples", name);
    return access(path, X_OK) == 0;
}

typedef struct srv {
    const char *path;
    const char *extra_env; /* "NAME=value" added to ours, or NULL */
    weft_process *p;
    int port;
    int out; /* its stdout */
} srv;

/* Starts the server with 2 workers on a free port; 0 or -1. */
static int srv_start(srv *s)
{
    static const char *envp[512];
    size_t n = 0;
    for (char **e = environ; *e && n < 510; e++)
        envp[n++] = *e;
    if (s->extra_env)
        envp[n++] = s->extra_env;
    envp[n] = NULL;
    const char *const argv[] = {s->path, "0", "2", NULL};
    weft_process_opts o = {.argv = argv, .envp = envp, .pipe_stdout = 1};
    if (weft_process_spawn(&o, &s->p) != 0)
        return -1;
    s->out = weft_process_stdout_fd(s->p);
    char line[256];
    ssize_t k = test_read_line(s->out, line, sizeof line, 10000 * (srv_slow() ? 20 : 1));
    const char *colon = k > 0 ? strrchr(line, ':') : NULL;
    s->port = colon ? atoi(colon + 1) : 0;
    if (s->port <= 0) {
        weft_process_kill(s->p, SIGKILL);
        weft_process_free(s->p);
        return -1;
    }
    return 0;
}

/* SIGTERM, waits for exit 0, and collects what it printed after the first
 * line into out (NUL-terminated). 0, or a negative code. */
static int srv_stop(srv *s, char *out, size_t cap)
{
    int64_t slow = srv_slow() ? 20 : 1;
    if (weft_process_kill(s->p, SIGTERM) != 0)
        return -1;
    int st = -1;
    int rc = weft_process_wait(s->p, &st, 20000 * slow);
    if (rc == -ETIMEDOUT)
        weft_process_kill(s->p, SIGKILL);
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = weft_read(s->out, out + len, cap - 1 - len, 2000 * slow);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    weft_process_free(s->p);
    if (rc != 0)
        return -2;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -3;
}

/* Reads until end of stream (or cap); returns the length, or -errno when the
 * connection failed before end of stream (what was read stays in buf). */
static ssize_t srv_read_all(int fd, char *buf, size_t cap, int64_t timeout_ms)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = weft_read(fd, buf + len, cap - 1 - len, timeout_ms);
        if (n < 0) {
            buf[len] = '\0';
            return n;
        }
        if (n == 0 || (len += (size_t)n) == cap - 1)
            break;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static const char srv_get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/* One keep-alive request on fd; 1 when "Hello, World!" came back. */
static int srv_hello(int fd)
{
    if (weft_write(fd, srv_get, sizeof srv_get - 1, 5000) != (ssize_t)(sizeof srv_get - 1))
        return 0;
    char buf[512];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t n = weft_read(fd, buf + len, sizeof buf - 1 - len, 10000);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "Hello, World!"))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- slowloris */

static void *srv_slowloris_task(void *arg)
{
    srv *s = arg;
    TEST_EXPECT(srv_start(s) == 0, "start %s", s->path);
    uint16_t port = (uint16_t)s->port;
    /* A normal keep-alive client, before and after. */
    int good = weft_tcp_connect("127.0.0.1", port, 5000);
    TEST_EXPECT(good >= 0, "connect: %d", good);
    TEST_EXPECT(srv_hello(good), "normal request before");

    /* A head sent one byte every 100 ms never completes within 300 ms; the
     * server must answer 408 and close, long before the 12 s it would take
     * to send all of it. */
    char head[128];
    memset(head, 'a', sizeof head);
    memcpy(head, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ", 33);
    int slow = weft_tcp_connect("127.0.0.1", port, 5000);
    TEST_EXPECT(slow >= 0, "connect: %d", slow);
    weft_time t0 = weft_now();
    char resp[256];
    size_t rlen = 0;
    size_t sent = 0;
    int closed = 0;
    while (!closed && sent < sizeof head) {
        if (weft_write(slow, head + sent, 1, 5000) != 1)
            break; /* the server closed on us: read what it said */
        sent++;
        ssize_t n = weft_read(slow, resp + rlen, sizeof resp - 1 - rlen, 100);
        if (n == -ETIMEDOUT)
            continue;
        if (n <= 0)
            closed = 1;
        else
            rlen += (size_t)n;
    }
    /* Whatever is left of the answer, up to end of stream. */
    while (!closed && rlen < sizeof resp - 1) {
        ssize_t n = weft_read(slow, resp + rlen, sizeof resp - 1 - rlen, 10000);
        if (n <= 0)
            break;
        rlen += (size_t)n;
    }
    resp[rlen] = '\0';
    int64_t ms = (weft_now() - t0) / 1000000;
    weft_close(slow);
    TEST_EXPECT(strncmp(resp, "HTTP/1.1 408 ", 13) == 0, "after %zu bytes, %lld ms: '%s'", sent,
                (long long)ms, resp);
    TEST_EXPECT(sent < sizeof head, "the whole trickled head was taken (%lld ms)",
                (long long)ms);

    /* The idle timeout between requests is not the head limit: the
     * keep-alive connection, idle for longer than 300 ms, still works, and
     * so does a new one. */
    TEST_EXPECT(srv_hello(good), "keep-alive request after the idle pause");
    weft_close(good);
    int fresh = weft_tcp_connect("127.0.0.1", port, 5000);
    TEST_EXPECT(fresh >= 0 && srv_hello(fresh), "new connection");
    weft_close(fresh);
    char out[1024];
    TEST_EXPECT(srv_stop(s, out, sizeof out) == 0, "stop: '%s'", out);
    return NULL;
}

Test(servers, http_head_deadline_408, .timeout = 120)
{
    char path[256];
    if (!srv_path("http_server", path, sizeof path))
        cr_skip_test("%s not built (run make first)", path);
    srv s = {.path = path, .extra_env = "WEFT_HEAD_TIMEOUT_MS=300"};
    test_run(2, srv_slowloris_task, &s);
}

/* A head limit too large to add to the clock ("never") must not turn into
 * a deadline in the past: a head that arrives in two pieces is answered. */
static void *srv_huge_head_limit_task(void *arg)
{
    srv *s = arg;
    TEST_EXPECT(srv_start(s) == 0, "start %s", s->path);
    char resp[512] = "";
    ssize_t n = 0;
    int fd = weft_tcp_connect("127.0.0.1", (uint16_t)s->port, 5000);
    if (fd >= 0 && weft_write(fd, srv_get, 10, 5000) == 10) {
        weft_sleep_ms(200); /* the server reads the first piece on its own */
        if (weft_write(fd, srv_get + 10, sizeof srv_get - 11, 5000) == (ssize_t)(sizeof srv_get - 11))
            while (!strstr(resp, "\r\n\r\n")) {
                ssize_t k = weft_read(fd, resp + n, sizeof resp - 1 - (size_t)n, 10000);
                if (k <= 0)
                    break;
                n += k;
                resp[n] = '\0';
            }
    }
    if (fd >= 0)
        weft_close(fd);
    char out[1024];
    int stopped = srv_stop(s, out, sizeof out); /* also when the answer was wrong */
    TEST_EXPECT(strncmp(resp, "HTTP/1.1 200 ", 13) == 0, "connect %d, answer: '%s'", fd, resp);
    TEST_EXPECT(stopped == 0, "stop: '%s'", out);
    return NULL;
}

Test(servers, http_huge_head_limit, .timeout = 120)
{
    char path[256];
    if (!srv_path("http_server", path, sizeof path))
        cr_skip_test("%s not built (run make first)", path);
    srv s = {.path = path, .extra_env = "WEFT_HEAD_TIMEOUT_MS=9223372036854775807"};
    test_run(2, srv_huge_head_limit_task, &s);
}

static void *srv_echo_idle_task(void *arg)
{
    srv *s = arg;
    TEST_EXPECT(srv_start(s) == 0, "start %s", s->path);
    uint16_t port = (uint16_t)s->port;
    int idle = weft_tcp_connect("127.0.0.1", port, 5000);
    TEST_EXPECT(idle >= 0, "connect: %d", idle);
    TEST_EXPECT(weft_write(idle, "hi\n", 3, 5000) == 3, "write");
    char buf[64];
    ssize_t n = test_read_line(idle, buf, sizeof buf, 10000);
    TEST_EXPECT(n == 3 && strcmp(buf, "hi\n") == 0, "echo: %zd", n);
    /* Then silence: the server ends it at its idle limit (1 s). */
    weft_time t0 = weft_now();
    n = weft_read(idle, buf, sizeof buf, 30000);
    int64_t ms = (weft_now() - t0) / 1000000;
    TEST_EXPECT(n == 0, "idle connection: %zd after %lld ms", n, (long long)ms);
    weft_close(idle);
    /* A client that keeps talking is not cut: twelve lines 100 ms apart, longer
     * in all than the limit; a pause would have to stretch ten times to reach
     * it, so a loaded machine does not fail this. */
    int busy = weft_tcp_connect("127.0.0.1", port, 5000);
    TEST_EXPECT(busy >= 0, "connect: %d", busy);
    for (int i = 0; i < 12; i++) {
        TEST_EXPECT(weft_write(busy, "ho\n", 3, 5000) == 3, "write %d", i);
        n = test_read_line(busy, buf, sizeof buf, 10000);
        TEST_EXPECT(n == 3, "echo %d: %zd", i, n);
        weft_sleep_ms(100);
    }
    weft_close(busy);
    char out[1024];
    TEST_EXPECT(srv_stop(s, out, sizeof out) == 0, "stop: '%s'", out);
    return NULL;
}

Test(servers, echo_idle_limit, .timeout = 120)
{
    char path[256];
    if (!srv_path("echo_server", path, sizeof path))
        cr_skip_test("%s not built (run make first)", path);
    srv s = {.path = path, .extra_env = "WEFT_IDLE_TIMEOUT_MS=1000"};
    test_run(2, srv_echo_idle_task, &s);
}

/* ------------------------------------------------------ shutdown loses nothing */

#define SRV_CONNS 300

typedef struct srv_burst {
    srv s;
    int http;
    int frozen; /* SIGSTOP the server while the clients connect */
} srv_burst;

static void *srv_burst_task(void *arg)
{
    srv_burst *b = arg;
    srv *s = &b->s;
    int64_t slow = srv_slow() ? 20 : 1;
    TEST_EXPECT(srv_start(s) == 0, "start %s", s->path);
    static int fds[SRV_CONNS];
    int refused = 0;
    /* Frozen, the server accepts nothing: every connection waits in its
     * accept queue (the kernel completes the handshakes) with its request
     * sent when the stop signal arrives. */
    if (b->frozen)
        TEST_EXPECT(weft_process_kill(s->p, SIGSTOP) == 0, "SIGSTOP");
    for (int i = 0; i < SRV_CONNS; i++) {
        fds[i] = weft_tcp_connect("127.0.0.1", (uint16_t)s->port, 5000 * slow);
        if (fds[i] < 0) {
            refused++; /* refused before connect: allowed (it cannot happen here) */
            continue;
        }
        char req[64];
        int len = b->http ? snprintf(req, sizeof req, "%s", srv_get)
                          : snprintf(req, sizeof req, "line %d\n", i);
        TEST_EXPECT(weft_write(fds[i], req, (size_t)len, 5000 * slow) == len, "write %d", i);
    }
    /* At once: most connections are still in the accept queue, or accepted
     * with their request unread. */
    TEST_EXPECT(weft_process_kill(s->p, SIGTERM) == 0, "kill");
    if (b->frozen)
        TEST_EXPECT(weft_process_kill(s->p, SIGCONT) == 0, "SIGCONT");
    int answered = 0, reset = 0, other = 0;
    for (int i = 0; i < SRV_CONNS; i++) {
        if (fds[i] < 0)
            continue;
        char buf[512];
        ssize_t n = srv_read_all(fds[i], buf, sizeof buf, 10000 * slow);
        char want[64];
        if (!b->http)
            snprintf(want, sizeof want, "line %d\n", i);
        int ok = b->http ? strstr(buf, "HTTP/1.1 200 ") == buf && strstr(buf, "Hello, World!")
                         : strcmp(buf, want) == 0;
        if (n >= 0 && ok)
            answered++;
        else if (n == -ECONNRESET)
            reset++;
        else
            other++;
        weft_close(fds[i]);
    }
    int st = -1;
    int rc = weft_process_wait(s->p, &st, 20000 * slow);
    if (rc == -ETIMEDOUT)
        weft_process_kill(s->p, SIGKILL);
    char out[1024];
    size_t olen = 0;
    while (olen < sizeof out - 1) {
        ssize_t n = weft_read(s->out, out + olen, sizeof out - 1 - olen, 2000 * slow);
        if (n <= 0)
            break;
        olen += (size_t)n;
    }
    out[olen] = '\0';
    weft_process_free(s->p);
    TEST_EXPECT(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d %#x", rc, st);
    TEST_EXPECT(answered + refused == SRV_CONNS,
                "%d of %d answered (%d reset, %d other, %d refused); server said '%s'", answered,
                SRV_CONNS, reset, other, refused, out);
    /* The closing line is honest: what was not answered was cut off. */
    const char *cut = strstr(out, "the stop, ");
    TEST_EXPECT(cut, "closing line: '%s'", out);
    int ncut = atoi(cut + 10);
    TEST_EXPECT(ncut == SRV_CONNS - refused - answered, "says %d cut off, %d were not answered",
                ncut, SRV_CONNS - refused - answered);
    const char *taken = strstr(out, "stopped (");
    TEST_EXPECT(taken, "closing line: '%s'", out);
    int ntaken = atoi(taken + 9);
    TEST_EXPECT(ntaken >= 0 && ntaken <= SRV_CONNS - refused, "says %d taken from the queue",
                ntaken);
    return NULL;
}

static void srv_burst_test(const char *name, int http, int frozen)
{
    char path[256];
    if (!srv_path(name, path, sizeof path))
        cr_skip_test("%s not built (run make first)", path);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * SRV_CONNS + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * SRV_CONNS + 64 ? rl.rlim_max : 2 * SRV_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    srv_burst b = {.s = {.path = path}, .http = http, .frozen = frozen};
    test_run(2, srv_burst_task, &b);
}

Test(servers, http_shutdown_answers_every_request, .timeout = 120)
{
    srv_burst_test("http_server", 1, 0);
}

Test(servers, echo_shutdown_answers_every_line, .timeout = 120)
{
    srv_burst_test("echo_server", 0, 0);
}

/* The same with every connection still in the accept queue at the stop. */
Test(servers, http_shutdown_answers_the_accept_queue, .timeout = 120)
{
    srv_burst_test("http_server", 1, 1);
}

Test(servers, echo_shutdown_answers_the_accept_queue, .timeout = 120)
{
    srv_burst_test("echo_server", 0, 1);
}
