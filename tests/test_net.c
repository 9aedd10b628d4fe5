/*
 * Networking: TCP/UDP/Unix round trips at scale and across runtimes, IPv6,
 * timeouts, weft_close waking a blocked reader, resets without SIGPIPE,
 * descriptor exhaustion on accept, bad input, and the cooperative budget.
 *
 * Checks inside tasks record the first failure (message and line) instead of
 * asserting: a Criterion assertion unwinds with longjmp, which cannot leave a
 * task's stack or a worker thread. The test body asserts on the record.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define NET_IO_TIMEOUT 20000 /* ms: generous, only there so a bug fails instead of hanging */

/* ------------------------------------------------------------ helpers */

static int net_under_valgrind(void)
{
    const char *e = getenv("WEFT_VALGRIND");
#if defined(__SANITIZE_THREAD__)
    (void)e;
    return 1; /* as slow as valgrind for this purpose */
#else
    return RUNNING_ON_VALGRIND || (e && *e && strcmp(e, "0") != 0);
#endif
}

static weft_runtime *net_runtime(unsigned workers)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    cfg.stack_size = 128 * 1024;
    weft_runtime *rt;
    int rc = weft_runtime_create(&cfg, &rt);
    cr_assert_eq(rc, 0, "weft_runtime_create(%u): %s", workers, strerror(-rc));
    return rt;
}

/* Raises the soft descriptor limit towards want (never above the hard limit,
 * whose value is left alone) and returns the soft limit now in force. */
static rlim_t net_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    return rl.rlim_cur;
}

static double net_ms_since(weft_time t0) { return (double)(weft_now() - t0) / 1e6; }

static ssize_t net_read_full(int fd, void *buf, size_t n, int64_t timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = weft_read(fd, (char *)buf + got, n - got, timeout_ms);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void net_fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

/* A connected TCP pair over loopback, made from the calling context (task or
 * plain thread). */
static void *net_tcp_pair(int fds[2])
{
    int lfd = weft_tcp_listen(NULL, 0, 1);
    TEST_EXPECT(lfd >= 0, "listen: %s", strerror(-lfd));
    int port = weft_socket_port(lfd);
    TEST_EXPECT(port > 0, "socket_port: %d", port);
    fds[0] = weft_tcp_connect("127.0.0.1", (uint16_t)port, NET_IO_TIMEOUT);
    TEST_EXPECT(fds[0] >= 0, "connect: %s", strerror(-fds[0]));
    fds[1] = weft_tcp_accept_timeout(lfd, NULL, NET_IO_TIMEOUT);
    TEST_EXPECT(fds[1] >= 0, "accept: %s", strerror(-fds[1]));
    weft_close(lfd);
    return NULL;
}

/* ------------------------------------------------------------ echo */

/* One connection of an echo server: echoes until end of stream. */
static void *net_echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t r = weft_read(fd, buf, sizeof buf, NET_IO_TIMEOUT);
        if (r == 0)
            break;
        if (r < 0) {
            weft_close(fd);
            TEST_EXPECT(0, "server read: %s", strerror((int)-r));
        }
        ssize_t w = weft_write(fd, buf, (size_t)r, NET_IO_TIMEOUT);
        if (w != r) {
            weft_close(fd);
            TEST_EXPECT(0, "server write: %zd (%s)", w, w < 0 ? strerror((int)-w) : "short");
        }
    }
    weft_close(fd);
    return NULL;
}

typedef struct net_server {
    int lfd;
    int conns;         /* connections to serve before returning */
    int family;        /* expected peer address family, 0 = any */
    weft_runtime *rt;  /* expected runtime of the server's tasks, NULL = any */
} net_server;

/* Accepts s->conns connections, one echo task each, then joins them. */
static void *net_echo_server(void *arg)
{
    net_server *s = arg;
    weft_task **h = calloc((size_t)s->conns, sizeof *h);
    TEST_EXPECT(h, "calloc");
    int made = 0;
    void *ret = NULL;
    for (; made < s->conns; made++) {
        struct sockaddr_storage peer;
        int fd = weft_tcp_accept_timeout(s->lfd, &peer, NET_IO_TIMEOUT);
        if (fd < 0) {
            test_fail(__LINE__, "accept #%d: %s", made, strerror(-fd));
            ret = (void *)1;
            break;
        }
        if (s->family && peer.ss_family != s->family) {
            test_fail(__LINE__, "peer family %d, expected %d", peer.ss_family, s->family);
            ret = (void *)1;
        }
        if (s->rt && weft_current_runtime() != s->rt) {
            test_fail(__LINE__, "server task on the wrong runtime");
            ret = (void *)1;
        }
        h[made] = weft_spawn(net_echo_conn, (void *)(intptr_t)fd);
        if (!h[made]) {
            test_fail(__LINE__, "spawn: %s", strerror(errno));
            weft_close(fd);
            ret = (void *)1;
            break;
        }
    }
    for (int i = 0; i < made; i++)
        weft_join(h[i], NULL);
    free(h);
    return ret;
}

static const char *net_client_host;
static uint16_t net_client_port;
static weft_runtime *net_client_rt;
static atomic_int net_clients_ok;

/* Connects and exchanges three messages of different sizes, checking each
 * echo byte for byte. */
static void *net_echo_client(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    if (net_client_rt)
        TEST_EXPECT(weft_current_runtime() == net_client_rt, "client on the wrong runtime");
    int fd = weft_tcp_connect(net_client_host, net_client_port, NET_IO_TIMEOUT);
    TEST_EXPECT(fd >= 0, "client %u connect: %s", id, strerror(-fd));
    unsigned char out[3000], in[3000];
    for (unsigned m = 0; m < 3; m++) {
        size_t len = 1 + (id * 37u + m * 1009u) % sizeof out;
        net_fill(out, len, id * 3 + m);
        ssize_t w = weft_write(fd, out, len, NET_IO_TIMEOUT);
        if (w != (ssize_t)len)
            weft_close(fd);
        TEST_EXPECT(w == (ssize_t)len, "client %u write: %zd", id, w);
        ssize_t r = net_read_full(fd, in, len, NET_IO_TIMEOUT);
        if (r != (ssize_t)len || memcmp(in, out, len) != 0)
            weft_close(fd);
        TEST_EXPECT(r == (ssize_t)len, "client %u read: %zd of %zu", id, r, len);
        TEST_EXPECT(memcmp(in, out, len) == 0, "client %u: echo differs", id);
    }
    weft_close(fd);
    atomic_fetch_add(&net_clients_ok, 1);
    return NULL;
}

/* Spawns `n` clients and joins them. */
static void *net_clients_root(void *arg)
{
    int n = (int)(intptr_t)arg;
    weft_task **h = calloc((size_t)n, sizeof *h);
    TEST_EXPECT(h, "calloc");
    for (int i = 0; i < n; i++) {
        h[i] = weft_spawn(net_echo_client, (void *)(uintptr_t)i);
        TEST_EXPECT(h[i], "spawn client %d: %s", i, strerror(errno));
    }
    for (int i = 0; i < n; i++)
        weft_join(h[i], NULL);
    free(h);
    return NULL;
}

static void *net_echo_root(void *arg)
{
    net_server *s = arg;
    weft_task *srv = weft_spawn(net_echo_server, s);
    TEST_EXPECT(srv, "spawn server");
    net_clients_root((void *)(intptr_t)s->conns);
    weft_join(srv, NULL);
    return NULL;
}

Test(net_tcp, echo_1000_clients_one_runtime, .timeout = 30)
{
    int n = net_under_valgrind() ? 200 : 1000;
    rlim_t need = (rlim_t)(2 * n + 64);
    if (net_raise_nofile(need) < need)
        cr_skip_test("RLIMIT_NOFILE cannot reach %lu", (unsigned long)need);
    weft_runtime *rt = net_runtime(2);
    net_server s = {.lfd = weft_tcp_listen(NULL, 0, 0), .conns = n, .rt = rt};
    cr_assert_geq(s.lfd, 0, "listen: %s", strerror(-s.lfd));
    net_client_host = NULL;
    net_client_port = (uint16_t)weft_socket_port(s.lfd);
    net_client_rt = rt;
    cr_assert_eq(weft_runtime_block_on(rt, net_echo_root, &s, NULL), 0);
    weft_runtime_free(rt);
    weft_close(s.lfd);
    test_assert_no_failure();
    cr_assert_eq(atomic_load(&net_clients_ok), n);
}

Test(net_tcp, server_and_clients_on_two_runtimes, .timeout = 30)
{
    int n = 200;
    weft_runtime *srt = net_runtime(2);
    weft_runtime *crt = net_runtime(2);
    net_server s = {.lfd = weft_tcp_listen("127.0.0.1", 0, 0), .conns = n, .rt = srt};
    cr_assert_geq(s.lfd, 0, "listen: %s", strerror(-s.lfd));
    weft_task *srv = weft_spawn_on(srt, net_echo_server, &s);
    cr_assert_not_null(srv);
    net_client_host = "127.0.0.1";
    net_client_port = (uint16_t)weft_socket_port(s.lfd);
    net_client_rt = crt;
    cr_assert_eq(weft_runtime_block_on(crt, net_clients_root, (void *)(intptr_t)n, NULL), 0);
    void *res = (void *)1;
    cr_assert_eq(weft_join(srv, &res), 0);
    weft_runtime_free(crt);
    weft_runtime_free(srt);
    weft_close(s.lfd);
    test_assert_no_failure();
    cr_assert_null(res);
    cr_assert_eq(atomic_load(&net_clients_ok), n);
}

/* A plain thread (no task) uses the same calls: they block the thread. */
Test(net_tcp, plain_thread_client, .timeout = 30)
{
    weft_runtime *rt = net_runtime(1);
    net_server s = {.lfd = weft_tcp_listen(NULL, 0, 0), .conns = 1};
    cr_assert_geq(s.lfd, 0);
    weft_task *srv = weft_spawn_on(rt, net_echo_server, &s);
    cr_assert_not_null(srv);
    int fd = weft_tcp_connect(NULL, (uint16_t)weft_socket_port(s.lfd), NET_IO_TIMEOUT);
    cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
    char in[6] = {0};
    cr_assert_eq(weft_write(fd, "hello", 5, NET_IO_TIMEOUT), 5);
    cr_assert_eq(net_read_full(fd, in, 5, NET_IO_TIMEOUT), 5);
    cr_assert_str_eq(in, "hello");
    weft_time t0 = weft_now();
    cr_assert_eq(weft_read(fd, in, 1, 100), -ETIMEDOUT);
    cr_assert_geq(net_ms_since(t0), 100.0);
    cr_assert_eq(weft_shutdown(fd, SHUT_WR), 0);
    cr_assert_eq(weft_read(fd, in, 1, NET_IO_TIMEOUT), 0, "server should close after our EOF");
    cr_assert_eq(weft_join(srv, NULL), 0);
    weft_close(fd);
    weft_runtime_free(rt);
    weft_close(s.lfd);
    test_assert_no_failure();
}

static void *net_ipv6_root(void *arg)
{
    net_server *s = arg;
    weft_task *srv = weft_spawn(net_echo_server, s);
    TEST_EXPECT(srv, "spawn");
    uint16_t port = (uint16_t)weft_socket_port(s->lfd);
    const char *hosts[2] = {"::1", "[::1]"};
    for (int i = 0; i < 2; i++) {
        int fd = weft_tcp_connect(hosts[i], port, NET_IO_TIMEOUT);
        TEST_EXPECT(fd >= 0, "connect %s: %s", hosts[i], strerror(-fd));
        char in[4] = {0};
        TEST_EXPECT(weft_write(fd, "six", 3, NET_IO_TIMEOUT) == 3, "write");
        TEST_EXPECT(net_read_full(fd, in, 3, NET_IO_TIMEOUT) == 3, "read");
        TEST_EXPECT(strcmp(in, "six") == 0, "echo differs");
        weft_close(fd);
    }
    weft_join(srv, NULL);
    return NULL;
}

Test(net_tcp, ipv6_loopback, .timeout = 30)
{
    int lfd = weft_tcp_listen("::1", 0, 0);
    if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT || lfd == -EPROTONOSUPPORT)
        cr_skip_test("no IPv6 loopback here (%s)", strerror(-lfd));
    cr_assert_geq(lfd, 0, "listen [::1]: %s", strerror(-lfd));
    weft_runtime *rt = net_runtime(2);
    net_server s = {.lfd = lfd, .conns = 2, .family = AF_INET6};
    cr_assert_eq(weft_runtime_block_on(rt, net_ipv6_root, &s, NULL), 0);
    weft_runtime_free(rt);
    weft_close(lfd);
    test_assert_no_failure();
}

/* ------------------------------------------------------------ 10,000 */

/* The server runs in a child process, so each process holds one end of every
 * connection and needs only ~n descriptors, not 2n. */

static int net_many_lfd, net_many_n;
static uint16_t net_many_port;

/* Accepts every connection before echoing on any, so all of them are open
 * at once (the clients wait in read meanwhile). */
static void *net_many_server(void *arg)
{
    (void)arg;
    int n = net_many_n;
    int *fds = malloc((size_t)n * sizeof *fds);
    weft_task **h = malloc((size_t)n * sizeof *h);
    TEST_EXPECT(fds && h, "malloc");
    for (int i = 0; i < n; i++) {
        fds[i] = weft_tcp_accept_timeout(net_many_lfd, NULL, NET_IO_TIMEOUT);
        TEST_EXPECT(fds[i] >= 0, "accept #%d: %s", i, strerror(-fds[i]));
    }
    for (int i = 0; i < n; i++) {
        h[i] = weft_spawn(net_echo_conn, (void *)(intptr_t)fds[i]);
        TEST_EXPECT(h[i], "spawn: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
        weft_join(h[i], NULL);
    free(fds);
    free(h);
    return NULL;
}

static void *net_many_client(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    int fd = weft_tcp_connect(NULL, net_many_port, NET_IO_TIMEOUT);
    TEST_EXPECT(fd >= 0, "client %u connect: %s", id, strerror(-fd));
    char out[32], in[32];
    snprintf(out, sizeof out, "connection %-20u", id);
    ssize_t w = weft_write(fd, out, sizeof out, NET_IO_TIMEOUT);
    ssize_t r = w == (ssize_t)sizeof out ? net_read_full(fd, in, sizeof in, NET_IO_TIMEOUT) : -1;
    weft_close(fd);
    TEST_EXPECT(w == (ssize_t)sizeof out, "client %u write: %zd", id, w);
    TEST_EXPECT(r == (ssize_t)sizeof in, "client %u read: %zd", id, r);
    TEST_EXPECT(memcmp(in, out, sizeof in) == 0, "client %u: echo differs", id);
    atomic_fetch_add(&net_clients_ok, 1);
    return NULL;
}

static void *net_many_root(void *arg)
{
    (void)arg;
    int n = net_many_n;
    weft_task **h = malloc((size_t)n * sizeof *h);
    TEST_EXPECT(h, "malloc");
    for (int i = 0; i < n; i++) {
        h[i] = weft_spawn(net_many_client, (void *)(uintptr_t)i);
        TEST_EXPECT(h[i], "spawn client %d: %s", i, strerror(errno));
    }
    for (int i = 0; i < n; i++)
        weft_join(h[i], NULL);
    free(h);
    return NULL;
}

Test(net_scale, ten_thousand_connections, .timeout = 30)
{
    net_many_n = net_under_valgrind() ? 1000 : 10000;
    rlim_t need = (rlim_t)net_many_n + 64;
    rlim_t have = net_raise_nofile(need);
    if (have < need)
        cr_skip_test("RLIMIT_NOFILE hard limit allows %lu descriptors, %lu needed",
                     (unsigned long)have, (unsigned long)need);
    net_many_lfd = weft_tcp_listen(NULL, 0, 0);
    cr_assert_geq(net_many_lfd, 0, "listen: %s", strerror(-net_many_lfd));
    net_many_port = (uint16_t)weft_socket_port(net_many_lfd);
    weft_time t0 = weft_now();

    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Never outlive the test, whatever happens to the parent. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(40);
        weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2, .stack_size = 65536});
        if (!rt)
            _exit(2);
        int rc = weft_runtime_block_on(rt, net_many_server, NULL, NULL);
        weft_runtime_free(rt);
        weft_close(net_many_lfd);
        if (rc != 0 || atomic_load(&test_failures)) {
            fprintf(stderr, "net_scale server: %s\n", test_failure_msg);
            _exit(1);
        }
        _exit(0);
    }
    weft_close(net_many_lfd);
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2, .stack_size = 65536});
    cr_assert_not_null(rt);
    cr_assert_eq(weft_runtime_block_on(rt, net_many_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_log_info("%d connections in %.0f ms", net_many_n, net_ms_since(t0));
    test_assert_no_failure();
    cr_assert_eq(atomic_load(&net_clients_ok), net_many_n);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server process failed (status %#x)",
              status);
}

/* ------------------------------------------------------------ timeouts */

/* Checks a call that must time out: -ETIMEDOUT, not before the timeout, and
 * within a generous bound after it. */
#define NET_EXPECT_TIMEOUT(call, ms)                                                               \
    do {                                                                                           \
        weft_time t0_ = weft_now();                                                                \
        long long rc_ = (long long)(call);                                                         \
        double el_ = net_ms_since(t0_);                                                            \
        TEST_EXPECT(rc_ == -ETIMEDOUT, "%s returned %lld", #call, rc_);                            \
        TEST_EXPECT(el_ >= (ms), "%s timed out after %.2f ms, before %d ms", #call, el_, (ms));    \
        TEST_EXPECT(el_ < (ms) + 5000.0, "%s took %.0f ms for a %d ms timeout", #call, el_,       \
                    (ms));                                                                         \
    } while (0)

static void *net_timeouts_task(void *arg)
{
    (void)arg;
    int sv[2];
    TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
               "socketpair");
    char buf[16];
    NET_EXPECT_TIMEOUT(weft_read(sv[0], buf, sizeof buf, 150), 150);
    NET_EXPECT_TIMEOUT(weft_read(sv[0], buf, sizeof buf, 0), 0);
    struct iovec iov = {buf, sizeof buf};
    NET_EXPECT_TIMEOUT(weft_readv(sv[0], &iov, 1, 50), 50);

    int lfd = weft_tcp_listen(NULL, 0, 0);
    TEST_EXPECT(lfd >= 0, "listen");
    NET_EXPECT_TIMEOUT(weft_tcp_accept_timeout(lfd, NULL, 120), 120);
    weft_close(lfd);

    int ufd = weft_udp_bind(NULL, 0);
    TEST_EXPECT(ufd >= 0, "udp_bind");
    NET_EXPECT_TIMEOUT(weft_recvfrom(ufd, buf, sizeof buf, NULL, NULL, 80), 80);
    weft_close(ufd);

    /* Data arriving later than the timeout does not count. */
    TEST_EXPECT(write(sv[1], "x", 1) == 1, "write");
    TEST_EXPECT(weft_read(sv[0], buf, sizeof buf, 100) == 1, "ready data must be read at once");
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(net_timeout, per_call_timeouts_fire, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_timeouts_task, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
    /* And the same from a plain thread. */
    net_timeouts_task(NULL);
    test_assert_no_failure();
}

/* A peer that reads a little now and then keeps waking the writer; the
 * write's timeout still counts from the start of the call. */
static int net_trickle_fd;
static atomic_int net_trickle_stop;

static void *net_trickle_reader(void *arg)
{
    (void)arg;
    char buf[8192];
    while (!atomic_load(&net_trickle_stop)) {
        weft_sleep_ms(5);
        ssize_t r = weft_read(net_trickle_fd, buf, sizeof buf, 100);
        TEST_EXPECT(r > 0 || r == -ETIMEDOUT, "trickle read: %zd", r);
    }
    return NULL;
}

static void *net_deadline_root(void *arg)
{
    (void)arg;
    int fds[2];
    if (net_tcp_pair(fds))
        return (void *)1;
    /* Small fixed buffers (no autotuning): every read of the peer frees
     * enough room to wake the writer, many times within its timeout. */
    int small = 16384;
    TEST_EXPECT(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0, "sndbuf");
    TEST_EXPECT(setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0, "rcvbuf");
    net_trickle_fd = fds[1];
    weft_task *rd = weft_spawn(net_trickle_reader, NULL);
    TEST_EXPECT(rd, "spawn");
    /* At the reader's pace (~1.6 MB/s) this takes seconds, far more than the
     * timeout, yet little enough that a deadline renewed on every wake-up
     * would let it finish and be caught below. */
    size_t big = 4u << 20;
    char *data = calloc(1, big);
    TEST_EXPECT(data, "calloc");
    weft_time t0 = weft_now();
    ssize_t w = weft_write(fds[0], data, big, 300);
    double el = net_ms_since(t0);
    atomic_store(&net_trickle_stop, 1);
    weft_join(rd, NULL);
    free(data);
    weft_close(fds[0]);
    weft_close(fds[1]);
    TEST_EXPECT(w == -ETIMEDOUT, "4 MiB write to a slow reader returned %zd", w);
    TEST_EXPECT(el >= 300.0, "timed out after %.1f ms, before its 300 ms", el);
    TEST_EXPECT(el < 5000.0, "a 300 ms write took %.0f ms: retries extended the deadline", el);
    return NULL;
}

Test(net_timeout, write_deadline_is_per_call_not_per_retry, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_deadline_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
}

/* ------------------------------------------------------------ close */

static int net_close_fd;
static atomic_int net_close_blocked;

static void *net_blocked_reader(void *arg)
{
    (void)arg;
    char c;
    atomic_store(&net_close_blocked, 1);
    weft_time t0 = weft_now();
    ssize_t r = weft_read(net_close_fd, &c, 1, NET_IO_TIMEOUT);
    TEST_EXPECT(r == -EBADF, "blocked read returned %zd, expected -EBADF", r);
    TEST_EXPECT(net_ms_since(t0) < 10000.0, "woke only at its timeout");
    return NULL;
}

static void *net_blocked_acceptor(void *arg)
{
    (void)arg;
    atomic_store(&net_close_blocked, 1);
    int r = weft_tcp_accept(net_close_fd, NULL);
    TEST_EXPECT(r == -EBADF, "blocked accept returned %d, expected -EBADF", r);
    return NULL;
}

static void *net_close_root(void *arg)
{
    (void)arg;
    int sv[2];
    TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
               "socketpair");
    net_close_fd = sv[0];
    weft_task *t = weft_spawn(net_blocked_reader, NULL);
    TEST_EXPECT(t, "spawn");
    while (!atomic_load(&net_close_blocked))
        weft_yield();
    weft_sleep_ms(50); /* let it reach its wait */
    TEST_EXPECT(weft_close(sv[0]) == 0, "weft_close");
    weft_join(t, NULL);
    weft_close(sv[1]);

    atomic_store(&net_close_blocked, 0);
    net_close_fd = weft_tcp_listen(NULL, 0, 0);
    TEST_EXPECT(net_close_fd >= 0, "listen");
    t = weft_spawn(net_blocked_acceptor, NULL);
    TEST_EXPECT(t, "spawn");
    while (!atomic_load(&net_close_blocked))
        weft_yield();
    weft_sleep_ms(50);
    TEST_EXPECT(weft_close(net_close_fd) == 0, "weft_close");
    weft_join(t, NULL);
    return NULL;
}

Test(net_close, weft_close_wakes_blocked_reader_with_ebadf, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_close_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
}

/* ------------------------------------------------------------ resets */

static int net_reset_peer;

static void *net_resetter(void *arg)
{
    (void)arg;
    weft_sleep_ms(50); /* the writer has filled both buffers and waits by now */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    TEST_EXPECT(setsockopt(net_reset_peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "linger");
    weft_close(net_reset_peer); /* with linger 0: an RST, not a FIN */
    return NULL;
}

static void *net_reset_root(void *arg)
{
    (void)arg;
    int fds[2];
    if (net_tcp_pair(fds))
        return (void *)1;
    net_reset_peer = fds[1];
    weft_task *t = weft_spawn(net_resetter, NULL);
    TEST_EXPECT(t, "spawn");
    size_t chunk = 256 * 1024;
    char *data = calloc(1, chunk);
    TEST_EXPECT(data, "calloc");
    ssize_t w = 0;
    for (int i = 0; i < 4096 && w >= 0; i++)
        w = weft_write(fds[0], data, chunk, NET_IO_TIMEOUT);
    TEST_EXPECT(w == -ECONNRESET || w == -EPIPE, "write after reset returned %zd", w);
    /* Once reset, both write paths keep failing cleanly. */
    w = weft_write(fds[0], data, chunk, NET_IO_TIMEOUT);
    TEST_EXPECT(w == -EPIPE || w == -ECONNRESET, "second write returned %zd", w);
    struct iovec iov[2] = {{data, 10}, {data, 20}};
    w = weft_writev(fds[0], iov, 2, NET_IO_TIMEOUT);
    TEST_EXPECT(w == -EPIPE || w == -ECONNRESET, "writev returned %zd", w);
    free(data);
    weft_join(t, NULL);
    weft_close(fds[0]);
    return NULL;
}

Test(net_tcp, peer_reset_during_write_no_sigpipe, .timeout = 30)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would end the test process */
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_reset_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
}

Test(net_pipe, write_to_pipe_without_reader_no_sigpipe, .timeout = 30)
{
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(weft_write(p[1], "ab", 2, 1000), 2);
    weft_close(p[0]);
    cr_assert_eq(weft_write(p[1], "ab", 2, 1000), -EPIPE);
    struct iovec iov[2] = {{"a", 1}, {"b", 1}};
    cr_assert_eq(weft_writev(p[1], iov, 2, 1000), -EPIPE);
    sigset_t pending;
    sigpending(&pending);
    cr_assert_eq(sigismember(&pending, SIGPIPE), 0, "a SIGPIPE was left pending");
    weft_close(p[1]);
}

/* ------------------------------------------------------------ EMFILE */

static atomic_int net_emfile_done;

static void *net_emfile_acceptor(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int fd = weft_tcp_accept_timeout(lfd, NULL, NET_IO_TIMEOUT);
    atomic_store(&net_emfile_done, 1);
    return (void *)(intptr_t)fd;
}

static double net_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

Test(net_accept, emfile_backs_off_instead_of_spinning, .timeout = 30)
{
    /* valgrind emulates the lowered limit by letting the kernel accept,
     * then closing the new descriptor and reporting EMFILE: the pending
     * connection this test waits for is destroyed. */
    if (net_under_valgrind())
        cr_skip_test("valgrind's EMFILE emulation closes the accepted connection");
    weft_runtime *rt = net_runtime(1);
    int lfd = weft_tcp_listen(NULL, 0, 0);
    cr_assert_geq(lfd, 0);
    int cfd = weft_tcp_connect(NULL, (uint16_t)weft_socket_port(lfd), NET_IO_TIMEOUT);
    cr_assert_geq(cfd, 0, "connect: %s", strerror(-cfd));

    /* The soft limit at the lowest free descriptor: any new one fails. */
    int lowest = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit saved, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    int probe_errno = errno;
    cr_assert_eq(probe, -1, "descriptors still available at the lowered limit");
    cr_assert_eq(probe_errno, EMFILE);

    weft_task *t = weft_spawn_on(rt, net_emfile_acceptor, (void *)(intptr_t)lfd);
    cr_assert_not_null(t);
    struct timespec settle = {0, 30 * 1000000};
    nanosleep(&settle, NULL); /* it is backing off by now */
    double cpu0 = net_cpu_ms();
    weft_time w0 = weft_now();
    struct timespec window = {0, 300 * 1000000};
    nanosleep(&window, NULL);
    double cpu = net_cpu_ms() - cpu0;
    double wall = net_ms_since(w0);
    int done_early = atomic_load(&net_emfile_done);

    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    void *res = NULL;
    cr_assert_eq(weft_join(t, &res), 0);
    int afd = (int)(intptr_t)res;
    cr_log_info("EMFILE window: %.1f ms CPU in %.1f ms", cpu, wall);
    cr_assert_not(done_early, "accept returned while out of descriptors");
    cr_assert_lt(cpu, 0.3 * wall, "accept under EMFILE used %.1f ms CPU in %.1f ms", cpu, wall);
    cr_assert_geq(afd, 0, "the pending connection was not accepted: %s", strerror(-afd));

    char c = 0;
    cr_assert_eq(weft_write(cfd, "z", 1, NET_IO_TIMEOUT), 1);
    cr_assert_eq(weft_read(afd, &c, 1, NET_IO_TIMEOUT), 1);
    cr_assert_eq(c, 'z');
    weft_close(afd);
    weft_close(cfd);
    weft_close(lfd);
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ UDP */

static void *net_udp_task(void *arg)
{
    (void)arg;
    int a = weft_udp_bind(NULL, 0);
    int b = weft_udp_bind("127.0.0.1", 0);
    TEST_EXPECT(a >= 0 && b >= 0, "udp_bind: %d %d", a, b);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)weft_socket_port(b)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ssize_t r;
    for (int i = 0; i < 100; i++) {
        char msg[32], in[64];
        int len = snprintf(msg, sizeof msg, "datagram %d", i);
        r = weft_sendto(a, msg, (size_t)len, (struct sockaddr *)&to, sizeof to, NET_IO_TIMEOUT);
        TEST_EXPECT(r == len, "sendto: %zd", r);
        struct sockaddr_storage from;
        socklen_t fromlen = 0;
        r = weft_recvfrom(b, in, sizeof in, &from, &fromlen, NET_IO_TIMEOUT);
        TEST_EXPECT(r == len && memcmp(in, msg, (size_t)len) == 0, "recvfrom: %zd", r);
        TEST_EXPECT(fromlen == sizeof(struct sockaddr_in) && from.ss_family == AF_INET,
                   "sender address length %u", (unsigned)fromlen);
        TEST_EXPECT(ntohs(((struct sockaddr_in *)&from)->sin_port) == weft_socket_port(a),
                   "sender port");
        /* Reply to whoever sent it. */
        r = weft_sendto(b, in, (size_t)r, (struct sockaddr *)&from, fromlen, NET_IO_TIMEOUT);
        TEST_EXPECT(r == len, "reply: %zd", r);
        r = weft_recvfrom(a, in, sizeof in, NULL, NULL, NET_IO_TIMEOUT);
        TEST_EXPECT(r == len && memcmp(in, msg, (size_t)len) == 0, "reply recvfrom: %zd", r);
    }
    weft_close(a);
    weft_close(b);
    return NULL;
}

Test(net_udp, sendto_recvfrom_round_trip, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_udp_task, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
}

/* ------------------------------------------------------------ Unix */

static char net_unix_path[128];

static void *net_unix_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (int i = 0; i < 20; i++) {
        int fd = weft_unix_accept(lfd, NET_IO_TIMEOUT);
        TEST_EXPECT(fd >= 0, "unix_accept: %s", strerror(-fd));
        weft_task *t = weft_spawn(net_echo_conn, (void *)(intptr_t)fd);
        TEST_EXPECT(t, "spawn");
        weft_detach(t);
    }
    return NULL;
}

static void *net_unix_client(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    int fd = weft_unix_connect(net_unix_path, NET_IO_TIMEOUT);
    TEST_EXPECT(fd >= 0, "unix_connect: %s", strerror(-fd));
    unsigned char out[20000], in[20000];
    net_fill(out, sizeof out, id);
    ssize_t w = weft_write(fd, out, sizeof out, NET_IO_TIMEOUT);
    ssize_t r = net_read_full(fd, in, sizeof in, NET_IO_TIMEOUT);
    weft_close(fd);
    TEST_EXPECT(w == (ssize_t)sizeof out && r == (ssize_t)sizeof in, "echo: %zd %zd", w, r);
    TEST_EXPECT(memcmp(in, out, sizeof in) == 0, "echo differs");
    atomic_fetch_add(&net_clients_ok, 1);
    return NULL;
}

static void *net_unix_root(void *arg)
{
    weft_task *srv = weft_spawn(net_unix_server, arg);
    TEST_EXPECT(srv, "spawn");
    weft_task *h[20];
    for (int i = 0; i < 20; i++) {
        h[i] = weft_spawn(net_unix_client, (void *)(uintptr_t)i);
        TEST_EXPECT(h[i], "spawn");
    }
    for (int i = 0; i < 20; i++)
        weft_join(h[i], NULL);
    weft_join(srv, NULL);
    char missing[160];
    snprintf(missing, sizeof missing, "%s.missing", net_unix_path);
    int rc = weft_unix_connect(missing, 1000);
    TEST_EXPECT(rc == -ENOENT, "connect to a missing path returned %d", rc);
    return NULL;
}

Test(net_unix, echo_over_unix_socket, .timeout = 30)
{
    char dir[] = "/tmp/weft_net_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(net_unix_path, sizeof net_unix_path, "%s/sock", dir);
    int lfd = weft_unix_listen(net_unix_path, 0);
    cr_assert_geq(lfd, 0, "unix_listen: %s", strerror(-lfd));
    cr_assert_eq(weft_unix_listen(net_unix_path, 0), -EADDRINUSE, "listen does not unlink");
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_unix_root, (void *)(intptr_t)lfd, NULL), 0);
    weft_runtime_free(rt);
    weft_close(lfd);
    unlink(net_unix_path);
    rmdir(dir);
    test_assert_no_failure();
    cr_assert_eq(atomic_load(&net_clients_ok), 20);
}

/* ------------------------------------------------------------ readv/writev */

static int net_vec_fd;

/* Reads 4 MiB with readv into uneven pieces and checks the pattern. */
static void *net_vec_reader(void *arg)
{
    size_t total = (size_t)(uintptr_t)arg, got = 0;
    unsigned char a[1000], b[7], c[30000];
    while (got < total) {
        struct iovec iov[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
        ssize_t r = weft_readv(net_vec_fd, iov, 3, NET_IO_TIMEOUT);
        TEST_EXPECT(r > 0, "readv: %zd", r);
        for (ssize_t i = 0; i < r; i++) {
            size_t k = (size_t)i;
            unsigned char v = k < sizeof a ? a[k] : k < sizeof a + sizeof b ? b[k - sizeof a]
                                                                            : c[k - sizeof a - sizeof b];
            TEST_EXPECT(v == (unsigned char)((got + k) * 13 + ((got + k) >> 10)),
                       "byte %zu differs", got + k);
        }
        got += (size_t)r;
    }
    return NULL;
}

static void *net_vec_root(void *arg)
{
    (void)arg;
    int fds[2];
    if (net_tcp_pair(fds))
        return (void *)1;
    /* 200 pieces (more than one attempt's worth after a partial write) of
     * assorted sizes, several times the socket buffers. */
    enum { PIECES = 200 };
    struct iovec iov[PIECES];
    size_t total = 0;
    for (int i = 0; i < PIECES; i++)
        total += (size_t)(i % 3 == 0 ? 0 : 1 + (i * 7919) % 40000);
    unsigned char *data = malloc(total);
    TEST_EXPECT(data, "malloc");
    for (size_t k = 0; k < total; k++)
        data[k] = (unsigned char)(k * 13 + (k >> 10));
    size_t off = 0;
    for (int i = 0; i < PIECES; i++) {
        size_t len = (size_t)(i % 3 == 0 ? 0 : 1 + (i * 7919) % 40000);
        iov[i].iov_base = data + off;
        iov[i].iov_len = len;
        off += len;
    }
    net_vec_fd = fds[1];
    weft_task *rd = weft_spawn(net_vec_reader, (void *)(uintptr_t)total);
    TEST_EXPECT(rd, "spawn");
    ssize_t w = weft_writev(fds[0], iov, PIECES, NET_IO_TIMEOUT);
    weft_join(rd, NULL);
    free(data);
    weft_close(fds[0]);
    weft_close(fds[1]);
    TEST_EXPECT(w == (ssize_t)total, "writev wrote %zd of %zu", w, total);
    return NULL;
}

Test(net_tcp, writev_writes_everything_readv_scatters, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_vec_root, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
}

/* ------------------------------------------------------------ bad input */

static void *net_bad_input_task(void *arg)
{
    (void)arg;
    static const char *bad_hosts[] = {"not an address!", "256.0.0.1", "1.2.3", "[::1",
                                      "::1]",           "[]",        "1.2.3.4%lo", "::1%"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++) {
        int rc = weft_tcp_connect(bad_hosts[i], 80, 1000);
        TEST_EXPECT(rc == -EINVAL, "connect('%s') returned %d", bad_hosts[i], rc);
        rc = weft_tcp_listen(bad_hosts[i], 0, 0);
        TEST_EXPECT(rc == -EINVAL, "listen('%s') returned %d", bad_hosts[i], rc);
        rc = weft_udp_bind(bad_hosts[i], 0);
        TEST_EXPECT(rc == -EINVAL, "udp_bind('%s') returned %d", bad_hosts[i], rc);
    }
    TEST_EXPECT(weft_tcp_listen_ex(NULL, 0, 0, 0x100) == -EINVAL, "unknown listen flag");

    /* A port nobody listens on (it was just freed). */
    int lfd = weft_tcp_listen(NULL, 0, 0);
    TEST_EXPECT(lfd >= 0, "listen");
    uint16_t port = (uint16_t)weft_socket_port(lfd);
    weft_close(lfd);
    int rc = weft_tcp_connect("127.0.0.1", port, NET_IO_TIMEOUT);
    TEST_EXPECT(rc == -ECONNREFUSED, "connect to a closed port returned %d", rc);

    char buf[4];
    struct iovec iov = {buf, sizeof buf};
    struct sockaddr_in to = {.sin_family = AF_INET};
    TEST_EXPECT(weft_read(-1, buf, 1, 100) == -EBADF, "read(-1)");
    TEST_EXPECT(weft_write(-1, buf, 1, 100) == -EBADF, "write(-1)");
    TEST_EXPECT(weft_readv(-1, &iov, 1, 100) == -EBADF, "readv(-1)");
    TEST_EXPECT(weft_writev(-1, &iov, 1, 100) == -EBADF, "writev(-1)");
    TEST_EXPECT(weft_tcp_accept(-1, NULL) == -EBADF, "accept(-1)");
    TEST_EXPECT(weft_tcp_accept_timeout(-1, NULL, 100) == -EBADF, "accept_timeout(-1)");
    TEST_EXPECT(weft_unix_accept(-1, 100) == -EBADF, "unix_accept(-1)");
    TEST_EXPECT(weft_socket_port(-1) == -EBADF, "socket_port(-1)");
    TEST_EXPECT(weft_shutdown(-1, SHUT_RDWR) == -EBADF, "shutdown(-1)");
    TEST_EXPECT(weft_sendto(-1, buf, 1, (struct sockaddr *)&to, sizeof to, 100) == -EBADF,
               "sendto(-1)");
    TEST_EXPECT(weft_recvfrom(-1, buf, 1, NULL, NULL, 100) == -EBADF, "recvfrom(-1)");
    TEST_EXPECT(weft_close(-1) == -EBADF, "close(-1)");

    int sv[2];
    TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "sp");
    TEST_EXPECT(weft_writev(sv[0], &iov, -1, 100) == -EINVAL, "writev(iovcnt -1)");
    TEST_EXPECT(weft_readv(sv[0], &iov, -1, 100) == -EINVAL, "readv(iovcnt -1)");
    TEST_EXPECT(weft_shutdown(sv[0], 12345) == -EINVAL, "shutdown(bad how)");
    TEST_EXPECT(weft_socket_port(sv[0]) < 0, "socket_port of a Unix socket");
    TEST_EXPECT(weft_write(sv[0], buf, 0, 100) == 0, "empty write");
    weft_close(sv[0]);
    weft_close(sv[1]);

    TEST_EXPECT(weft_unix_listen(NULL, 0) == -EINVAL, "unix_listen(NULL)");
    TEST_EXPECT(weft_unix_connect("", 100) == -EINVAL, "unix_connect(\"\")");
    char long_path[200];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = 0;
    TEST_EXPECT(weft_unix_listen(long_path, 0) == -ENAMETOOLONG, "unix_listen(long path)");
    return NULL;
}

Test(net_errors, bad_input, .timeout = 30)
{
    weft_runtime *rt = net_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, net_bad_input_task, NULL, NULL), 0);
    weft_runtime_free(rt);
    test_assert_no_failure();
    net_bad_input_task(NULL); /* plain thread */
    test_assert_no_failure();
}

/* ------------------------------------------------------------ budget */

#define NET_COOP_FILL 65536
#define NET_COOP_READ 16

static int net_coop_sv[2];
static atomic_int net_coop_other_ran, net_coop_writer_stop;
static atomic_long net_coop_reads;

/* Reads a stream that always has data, so it never has to wait; only the
 * budget makes it give way. */
static void *net_coop_reader(void *arg)
{
    (void)arg;
    char buf[NET_COOP_READ];
    weft_time give_up = weft_now() + 10 * (weft_time)1000000000;
    while (!atomic_load(&net_coop_other_ran)) {
        ssize_t r = weft_read(net_coop_sv[0], buf, sizeof buf, NET_IO_TIMEOUT);
        TEST_EXPECT(r > 0, "read: %zd", r);
        atomic_fetch_add(&net_coop_reads, 1);
        TEST_EXPECT(weft_now() < give_up, "the other task starved for 10 s (%ld reads)",
                   atomic_load(&net_coop_reads));
    }
    return NULL;
}

static void *net_coop_other(void *arg)
{
    (void)arg;
    atomic_store(&net_coop_other_ran, 1);
    return NULL;
}

static void *net_coop_root(void *arg)
{
    (void)arg;
    weft_task *r = weft_spawn(net_coop_reader, NULL);
    weft_task *o = weft_spawn(net_coop_other, NULL);
    TEST_EXPECT(r && o, "spawn");
    weft_join(r, NULL);
    weft_join(o, NULL);
    return NULL;
}

/* A plain thread that keeps the reader's socket full. */
static void *net_coop_writer(void *arg)
{
    (void)arg;
    char buf[4096];
    memset(buf, 'w', sizeof buf);
    while (!atomic_load(&net_coop_writer_stop)) {
        ssize_t w = weft_write(net_coop_sv[1], buf, sizeof buf, 50);
        if (w < 0 && w != -ETIMEDOUT)
            break;
    }
    return NULL;
}

Test(net_coop, always_ready_reader_does_not_starve_others, .timeout = 30)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, net_coop_sv), 0);
    /* Enough queued that the reader's first budget of reads cannot run dry
     * even before the writer thread gets going. */
    static char fill[NET_COOP_FILL];
    memset(fill, 'f', sizeof fill);
    cr_assert_eq(weft_write(net_coop_sv[1], fill, sizeof fill, 1000), (ssize_t)sizeof fill);
    pthread_t writer;
    cr_assert_eq(pthread_create(&writer, NULL, net_coop_writer, NULL), 0);
    weft_runtime *rt = net_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, net_coop_root, NULL, NULL), 0);
    atomic_store(&net_coop_writer_stop, 1);
    pthread_join(writer, NULL);
    weft_runtime_free(rt);
    weft_close(net_coop_sv[0]);
    weft_close(net_coop_sv[1]);
    test_assert_no_failure();
    cr_assert(atomic_load(&net_coop_other_ran));
    /* The prefill alone lasts NET_COOP_READ-byte reads this long, so the
     * other task got in while the reader had never had to wait. */
    cr_assert_lt(atomic_load(&net_coop_reads), (long)(NET_COOP_FILL / NET_COOP_READ),
                 "the other task ran only after %ld reads", atomic_load(&net_coop_reads));
}
