/* The io_uring poller backend (runtime/poller_uring.c) and the choice of
 * backend at start. Tests that need a ring skip where the kernel refuses
 * io_uring (the runtime then runs on epoll, which backend_fallback checks). */
#include "util.h"

#include "internal.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static weft_runtime *backend_runtime(unsigned workers, int backend)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    cfg.backend = backend;
    weft_runtime *rt = NULL;
    int rc = weft_runtime_create(&cfg, &rt);
    cr_assert_eq(rc, 0, "weft_runtime_create: %d", rc);
    return rt;
}

/* A runtime on io_uring, or a skip where this kernel refuses it. */
static weft_runtime *uring_runtime(unsigned workers)
{
    weft_runtime *rt = backend_runtime(workers, WEFT_BACKEND_URING);
    if (weft_runtime_backend(rt) != WEFT_BACKEND_URING) {
        weft_runtime_free(rt);
        cr_skip_test("io_uring refused by this kernel: the runtime fell back to epoll");
    }
    return rt;
}

Test(uring, backend_choice)
{
    unsetenv("WEFT_BACKEND");
    weft_runtime *rt = backend_runtime(1, WEFT_BACKEND_AUTO);
    cr_assert_eq(weft_runtime_backend(rt), WEFT_BACKEND_EPOLL, "epoll is the default");
    weft_runtime_free(rt);
    rt = backend_runtime(1, WEFT_BACKEND_EPOLL);
    cr_assert_eq(weft_runtime_backend(rt), WEFT_BACKEND_EPOLL);
    weft_runtime_free(rt);
    cr_assert_eq(weft_runtime_backend(NULL), -EINVAL);

    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    cfg.backend = 7;
    cr_assert_eq(weft_runtime_create(&cfg, &rt), -EINVAL, "an unknown backend value");
    cfg.backend = WEFT_BACKEND_AUTO;
    setenv("WEFT_BACKEND", "kqueue", 1);
    cr_assert_eq(weft_runtime_create(&cfg, &rt), -EINVAL, "an unknown WEFT_BACKEND");
    setenv("WEFT_BACKEND", "epoll", 1);
    cr_assert_eq(weft_runtime_create(&cfg, &rt), 0);
    cr_assert_eq(weft_runtime_backend(rt), WEFT_BACKEND_EPOLL);
    weft_runtime_free(rt);
    setenv("WEFT_BACKEND", "uring", 1);
    cr_assert_eq(weft_runtime_create(&cfg, &rt), 0);
    int b = weft_runtime_backend(rt);
    cr_assert(b == WEFT_BACKEND_URING || b == WEFT_BACKEND_EPOLL, "backend %d", b);
    for (unsigned i = 0; i < rt->nworkers; i++)
        cr_assert_eq(rt->workers[i]->poller.kind,
                     b == WEFT_BACKEND_URING ? WEFT__BACKEND_URING : WEFT__BACKEND_EPOLL);
    weft_runtime_free(rt);
    unsetenv("WEFT_BACKEND");
}

/* A round trip through a socket pair: the runtime's poller works. */
static void *pair_roundtrip(void *arg)
{
    (void)arg;
    int sv[2];
    TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    char c = 0;
    TEST_EXPECT(weft_read(sv[0], &c, 1, 0) == -ETIMEDOUT, "nothing to read yet");
    TEST_EXPECT(weft_write(sv[1], "x", 1, 10000) == 1, "write");
    TEST_EXPECT(weft_read(sv[0], &c, 1, 10000) == 1 && c == 'x', "read");
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

/* The mechanism container runtimes use (Docker's default profile refuses
 * io_uring): a seccomp filter makes io_uring_setup fail with EPERM. The
 * runtime asked for io_uring must come up on epoll, with no error. (Each
 * Criterion test runs in a process of its own, so the filter stays here.) */
Test(uring, backend_fallback)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s", strerror(errno));
    cr_assert_eq(syscall(__NR_io_uring_setup, 4, NULL), -1);
    cr_assert_eq(errno, EPERM, "the filter refuses io_uring_setup");
    weft_runtime *rt = backend_runtime(2, WEFT_BACKEND_URING);
    cr_assert_eq(weft_runtime_backend(rt), WEFT_BACKEND_EPOLL);
    test_run_on(rt, pair_roundtrip, NULL);
}

Test(uring, roundtrip) { test_run_on(uring_runtime(2), pair_roundtrip, NULL); }

/* weft_close of a socket with a pending multishot poll (a reader waiting
 * on it), and of one registered by an earlier wait that ended: the poll
 * holds a reference to the file, so unless weft_close cancels it the
 * socket stays open and the peer never sees the end of stream. */
typedef struct {
    int fd;
    atomic_int waiting;
} close_ctx;

static void *blocked_reader(void *arg)
{
    close_ctx *c = arg;
    char b;
    atomic_store(&c->waiting, 1);
    ssize_t n = weft_read(c->fd, &b, 1, 10000);
    TEST_EXPECT(n == -EBADF, "reader woken by weft_close: %zd", n);
    return NULL;
}

static void *close_cancels(void *arg)
{
    (void)arg;
    int lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(lfd >= 0, "listen: %d", lfd);
    int port = weft_socket_port(lfd);
    for (int round = 0; round < 2; round++) {
        int cfd = weft_tcp_connect("127.0.0.1", (uint16_t)port, 10000);
        TEST_EXPECT(cfd >= 0, "connect: %d", cfd);
        int sfd = weft_tcp_accept_timeout(lfd, NULL, 10000);
        TEST_EXPECT(sfd >= 0, "accept: %d", sfd);
        char b;
        if (round == 0) { /* a reader is parked on sfd when it is closed */
            close_ctx c = {.fd = sfd};
            weft_task *t = weft_spawn(blocked_reader, &c);
            TEST_EXPECT(t != NULL, "spawn");
            while (!atomic_load(&c.waiting))
                weft_yield();
            weft_sleep_ms(20); /* let it reach its wait: either way the close must cancel */
            TEST_EXPECT(weft_close(sfd) == 0, "close");
            TEST_EXPECT(weft_join(t, NULL) == 0, "join");
        } else { /* registered by a wait that ended; no waiter now */
            TEST_EXPECT(weft_write(cfd, "a", 1, 10000) == 1, "write");
            TEST_EXPECT(weft_read(sfd, &b, 1, 10000) == 1, "read");
            TEST_EXPECT(weft_read(sfd, &b, 1, 30) == -ETIMEDOUT, "wait, registered");
            TEST_EXPECT(weft_close(sfd) == 0, "close");
        }
        ssize_t n = weft_read(cfd, &b, 1, 10000);
        TEST_EXPECT(n == 0, "round %d: the peer sees the end of stream: %zd", round, n);
        weft_close(cfd);
    }
    /* The listener, registered by the accepts, is closed as well: a
     * connection right after weft_close is refused. */
    TEST_EXPECT(weft_close(lfd) == 0, "close listener");
    int fd = weft_tcp_connect("127.0.0.1", (uint16_t)port, 10000);
    TEST_EXPECT(fd == -ECONNREFUSED, "closed listener refuses: %d", fd);
    return NULL;
}

Test(uring, close_cancels_poll) { test_run_on(uring_runtime(2), close_cancels, NULL); }

/* A foreign descriptor (made by a library, not by weft) that a library
 * closes with plain close() after weft_wait_fd: after a wait that saw
 * data, and after one that timed out. The registration must not outlive
 * the wait, or the socket would stay open behind a poll nobody cancels. */
static void *foreign_close(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        int sv[2];
        TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        if (round == 0) {
            TEST_EXPECT(write(sv[1], "z", 1) == 1, "write");
            TEST_EXPECT(weft_wait_fd(sv[0], WEFT_READ, 10000) == WEFT_READ, "readable");
            char b;
            TEST_EXPECT(read(sv[0], &b, 1) == 1, "read");
        } else {
            int rc = weft_wait_fd(sv[0], WEFT_READ, 20);
            TEST_EXPECT(rc == -ETIMEDOUT, "timed out: %d", rc);
        }
        TEST_EXPECT(close(sv[0]) == 0, "plain close"); /* as libpq does */
        char b;
        ssize_t n = weft_read(sv[1], &b, 1, 10000);
        TEST_EXPECT(n == 0, "round %d: the peer sees the end of stream: %zd", round, n);
        weft_close(sv[1]);
    }
    return NULL;
}

Test(uring, foreign_plain_close) { test_run_on(uring_runtime(1), foreign_close, NULL); }

/* Cross-thread wake-ups: each block_on from this thread injects a task and
 * must wake a worker parked in its ring (an eventfd poll completion). */
static void *nothing(void *arg) { return arg; }

Test(uring, wake_across_threads)
{
    weft_runtime *rt = uring_runtime(2);
    for (int i = 0; i < 200; i++) {
        void *res = NULL;
        cr_assert_eq(weft_runtime_block_on(rt, nothing, (void *)(intptr_t)(i + 1), &res), 0);
        cr_assert_eq((intptr_t)res, i + 1);
    }
    weft_runtime_free(rt);
}

/* More registrations between two polls than the ring's submission queue
 * holds (128), and more completions than its completion queue holds (1024:
 * every socket is writable, so each registration completes at once):
 * registrations submit a full queue on the spot, and multishot polls the
 * kernel ends for want of room are rearmed. Every reader must still get
 * its byte. */
#define NPAIRS 1500

typedef struct {
    int fd[NPAIRS][2];
    atomic_int got;
} flood_ctx;

static void *flood_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b;
    ssize_t n = weft_read(fd, &b, 1, 30000);
    TEST_EXPECT(n == 1 && b == 'q', "reader of %d: %zd", fd, n);
    return NULL;
}

static void *flood(void *arg)
{
    flood_ctx *c = arg;
    weft__worker *w = weft__cur_worker();
    int npairs = test_scale_down() ? 300 : NPAIRS;
    for (int i = 0; i < npairs; i++) {
        TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c->fd[i]) == 0,
                    "socketpair %d", i);
        weft__fd_fresh_stream(c->fd[i][0]);
    }
    /* All registered with this worker's ring by one task, without a poll
     * in between (after a sleep: the worker has polled, so it is known as
     * the ring's owner and its registrations wait in the queue). */
    weft_sleep_ms(1);
    for (int i = 0; i < npairs; i++)
        TEST_EXPECT(weft__fd_bind(&w->poller, c->fd[i][0]) == 0, "bind %d", i);
    weft_task **t = calloc((size_t)npairs, sizeof *t);
    TEST_EXPECT(t != NULL, "calloc");
    for (int i = 0; i < npairs; i++) {
        t[i] = weft_spawn(flood_reader, (void *)(intptr_t)c->fd[i][0]);
        TEST_EXPECT(t[i] != NULL, "spawn %d", i);
    }
    weft_sleep_ms(10);
    for (int i = 0; i < npairs; i++)
        TEST_EXPECT(write(c->fd[i][1], "q", 1) == 1, "write %d", i);
    for (int i = 0; i < npairs; i++)
        TEST_EXPECT(weft_join(t[i], NULL) == 0, "join %d", i);
    free(t);
    for (int i = 0; i < npairs; i++) {
        weft_close(c->fd[i][0]);
        weft_close(c->fd[i][1]);
    }
    return NULL;
}

Test(uring, full_queues)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * NPAIRS + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * NPAIRS + 64 ? rl.rlim_max : 2 * NPAIRS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * NPAIRS + 64)
            cr_skip_test("RLIMIT_NOFILE %lu is too small", (unsigned long)rl.rlim_cur);
    }
    static flood_ctx c;
    test_run_on(uring_runtime(1), flood, &c);
}
