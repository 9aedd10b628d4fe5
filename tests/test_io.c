/* weft_wait_fd: readiness, timeouts, close under a waiter, stale numbers. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"

static void nonblocking_pipe(int p[2])
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void *wait_readable(void *arg)
{
    int fd = (int)(intptr_t)arg;
    return (void *)(intptr_t)weft_wait_fd(fd, WEFT_READ, 5000);
}

static void *readable_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    weft_task *t = weft_spawn(wait_readable, (void *)(intptr_t)p[0]);
    weft_sleep_ms(20);
    cr_assert_eq(write(p[1], "x", 1), 1);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, WEFT_READ);
    /* Writable right away. */
    cr_assert_eq(weft_wait_fd(p[1], WEFT_WRITE, 0), WEFT_WRITE);
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, readiness_wakes_the_waiter)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, readable_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *timeout_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    weft_time t0 = weft_now();
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 30), -ETIMEDOUT);
    cr_assert_geq(weft_now() - t0, 30 * 1000000LL, "timed out early");
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 0), -ETIMEDOUT);
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, timeouts_fire_never_early)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, timeout_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *close_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    weft_task *t = weft_spawn(wait_readable, (void *)(intptr_t)p[0]);
    weft_sleep_ms(20);
    cr_assert_eq(weft_close(p[0]), 0);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, -EBADF);
    weft_close(p[1]);
    return NULL;
}

Test(io, closing_under_a_waiter_wakes_it_with_ebadf, .timeout = 10)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, close_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* A descriptor number reused after weft_close must not see the old one's
 * readiness, and its own events must arrive. */
static void *reuse_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 100), WEFT_READ);
    int old = p[0];
    weft_close(p[0]);
    weft_close(p[1]);
    int q[2];
    nonblocking_pipe(q);
    cr_assert(q[0] == old || q[1] == old, "kernel did not reuse the number");
    int rd = q[0];
    cr_assert_eq(weft_wait_fd(rd, WEFT_READ, 20), -ETIMEDOUT, "stale readiness delivered");
    weft_task *t = weft_spawn(wait_readable, (void *)(intptr_t)rd);
    weft_sleep_ms(10);
    cr_assert_eq(write(q[1], "y", 1), 1);
    void *r;
    weft_join(t, &r);
    cr_assert_eq((intptr_t)r, WEFT_READ);
    weft_close(q[0]);
    weft_close(q[1]);
    return NULL;
}

Test(io, reused_descriptor_numbers_get_no_stale_events, .timeout = 10)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, reuse_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

Test(io, bad_arguments)
{
    cr_assert_eq(weft_wait_fd(-1, WEFT_READ, 0), -EBADF);
    cr_assert_eq(weft_wait_fd(0, 0, 0), -EINVAL);
    cr_assert_eq(weft_wait_fd(0, 8, 0), -EINVAL);
    cr_assert_eq(weft_close(-1), -EBADF);
}

static void *regular_file_root(void *arg)
{
    (void)arg;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(weft_wait_fd(fd, WEFT_READ, 100), WEFT_READ);
    weft_close(fd);
    return NULL;
}

Test(io, regular_files_are_always_ready)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, regular_file_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

Test(io, outside_a_task_the_thread_blocks_in_poll)
{
    int p[2];
    nonblocking_pipe(p);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 10), -ETIMEDOUT);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 10), WEFT_READ);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------ level semantics (issue 14) */

/* Each wait below would sleep until its 5 s timeout if readiness were only
 * reported on edges: the first wait consumes the edge, and nothing new
 * happens on the descriptor. */
static void *repeated_waits_root(void *arg)
{
    (void)arg;
    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(weft_wait_fd(sp[0], WEFT_WRITE, 5000), WEFT_WRITE, "write wait %d", i);
    int p[2];
    nonblocking_pipe(p);
    cr_assert_eq(write(p[1], "x", 1), 1);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 5000), WEFT_READ, "read wait %d", i);
    /* Both directions at once on a socket that has data and room. */
    cr_assert_eq(write(sp[1], "y", 1), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(weft_wait_fd(sp[0], WEFT_READ | WEFT_WRITE, 5000), WEFT_READ | WEFT_WRITE);
    /* Drained, the read side must suspend again (and time out), while the
     * write side stays ready. */
    char c;
    cr_assert_eq(read(p[0], &c, 1), 1);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 20), -ETIMEDOUT);
    cr_assert_eq(weft_wait_fd(p[1], WEFT_WRITE, 5000), WEFT_WRITE);
    weft_close(p[0]);
    weft_close(p[1]);
    weft_close(sp[0]);
    weft_close(sp[1]);
    return NULL;
}

Test(io, repeated_waits_on_a_ready_descriptor_return_at_once, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, repeated_waits_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* The edge a wait consumed announced data that is gone by the next wait:
 * the next wait must not report readiness that is not there. */
static void *stale_edge_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    cr_assert_eq(write(p[1], "ab", 2), 2);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 5000), WEFT_READ);
    char buf[2];
    cr_assert_eq(read(p[0], buf, 2), 2);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 20), -ETIMEDOUT);
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, a_consumed_edge_is_not_reported_as_readiness, .timeout = 30)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, stale_edge_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

struct late_write {
    int fd;
};

static void *write_later(void *arg)
{
    struct late_write *lw = arg;
    weft_sleep_ms(30);
    cr_assert_eq(write(lw->fd, "z", 1), 1);
    return NULL;
}

/* A library closes its descriptor with plain close(), and the kernel hands
 * the number to a new pipe: waiting on the new one must work (the old
 * registration's epoll entry died with the old file). */
static void *foreign_close_root(void *arg)
{
    (void)arg;
    int a[2];
    nonblocking_pipe(a);
    /* Registered with a poller by this wait. */
    cr_assert_eq(weft_wait_fd(a[0], WEFT_READ, 10), -ETIMEDOUT);
    int num = a[0];
    close(a[0]);
    close(a[1]);
    int b[2];
    nonblocking_pipe(b);
    if (b[0] != num && b[1] == num) { /* make the read end take the number */
        int t = b[0];
        b[0] = b[1];
        b[1] = t;
        close(b[0]);
        close(b[1]);
        nonblocking_pipe(b);
    }
    cr_assert_eq(b[0], num, "the new pipe did not reuse descriptor %d", num);
    struct late_write lw = {b[1]};
    weft_task *w = weft_spawn(write_later, &lw);
    cr_assert_eq(weft_wait_fd(b[0], WEFT_READ, 5000), WEFT_READ);
    cr_assert_eq(weft_join(w, NULL), 0);
    char c;
    cr_assert_eq(read(b[0], &c, 1), 1);

    /* weft's own read on a reused number takes the edge path: it must see
     * the new file too. */
    close(b[0]);
    close(b[1]);
    int d[2];
    nonblocking_pipe(d);
    cr_assert_eq(d[0], num);
    lw.fd = d[1];
    w = weft_spawn(write_later, &lw);
    cr_assert_eq(weft_read(d[0], &c, 1, 5000), 1);
    cr_assert_eq(c, 'z');
    cr_assert_eq(weft_join(w, NULL), 0);
    close(d[0]);
    close(d[1]);
    return NULL;
}

Test(io, a_descriptor_closed_behind_weft_and_reused_works_as_fresh, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, foreign_close_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

static void *wait_readable_long(void *arg)
{
    int fd = (int)(intptr_t)arg;
    return (void *)(intptr_t)weft_wait_fd(fd, WEFT_READ, 30000);
}

static void *forget_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    weft_task *t = weft_spawn(wait_readable_long, (void *)(intptr_t)p[0]);
    /* Until the waiter is installed, forget has nothing to wake. */
    while (weft_wait_fd(p[0], WEFT_READ, 0) != -EEXIST)
        weft_sleep_ms(1);
    cr_assert_eq(weft_fd_forget(p[0]), 0);
    void *r;
    cr_assert_eq(weft_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, -EBADF);
    /* Still open, and waited on afresh. */
    cr_assert_eq(write(p[1], "q", 1), 1);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 5000), WEFT_READ);
    cr_assert_eq(weft_fd_forget(-1), -EBADF);
    cr_assert_eq(weft_fd_forget(p[1]), 0); /* never registered: nothing to do */
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, fd_forget_drops_the_registration_and_wakes_waiters, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, forget_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* A blocking descriptor must not hold the worker: with one worker, a ticker
 * task keeps running while another task's read waits on a blocking pipe,
 * and the read honours its timeout. */
struct ticker {
    _Atomic int stop;
    _Atomic int ticks;
};

static void *tick(void *arg)
{
    struct ticker *tk = arg;
    while (!atomic_load(&tk->stop)) {
        atomic_fetch_add(&tk->ticks, 1);
        weft_sleep_ms(5);
    }
    return NULL;
}

struct big_write {
    int fd;
    size_t n;
};

static void *write_big(void *arg)
{
    struct big_write *bw = arg;
    char *buf = malloc(bw->n);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < bw->n; i++)
        buf[i] = (char)(i * 7);
    ssize_t r = weft_write(bw->fd, buf, bw->n, 30000);
    free(buf);
    return (void *)r;
}

static void *blocking_root(void *arg)
{
    (void)arg;
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0); /* blocking mode */
    struct ticker tk = {0, 0};
    weft_task *tt = weft_spawn(tick, &tk);
    char c;
    cr_assert_eq(weft_read(p[0], &c, 1, 200), -ETIMEDOUT);
    cr_assert_gt(atomic_load(&tk.ticks), 1, "the worker was held by the blocking read");
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ, 20), -ETIMEDOUT);

    /* A write far beyond the pipe's capacity, with the reader on the same
     * single worker: a write that blocked the worker would never let the
     * reader run. */
    struct big_write bw = {p[1], 1 << 20};
    weft_task *wt = weft_spawn(write_big, &bw);
    char *got = malloc(bw.n);
    cr_assert_not_null(got);
    size_t have = 0;
    while (have < bw.n) {
        ssize_t r = weft_read(p[0], got + have, bw.n - have, 30000);
        cr_assert_gt(r, 0, "read: %zd", r);
        have += (size_t)r;
    }
    void *wr;
    cr_assert_eq(weft_join(wt, &wr), 0);
    cr_assert_eq((ssize_t)wr, (ssize_t)bw.n);
    for (size_t i = 0; i < bw.n; i++)
        cr_assert_eq(got[i], (char)(i * 7), "byte %zu", i);
    free(got);
    atomic_store(&tk.stop, 1);
    cr_assert_eq(weft_join(tt, NULL), 0);
    /* The descriptors are still in blocking mode: weft did not change them. */
    cr_assert_eq(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, a_blocking_descriptor_never_holds_the_worker, .timeout = 60)
{
    weft_runtime *rt = test_runtime(1);
    cr_assert_eq(weft_runtime_block_on(rt, blocking_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}

/* WEFT_EDGE: the caller has just seen EAGAIN; the wait sleeps until the next
 * edge. Alone it is not a direction. */
static void *edge_root(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_EDGE, 0), -EINVAL);
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ | WEFT_EDGE | 8, 0), -EINVAL);
    char c;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(read(p[0], &c, 1), -1);
        cr_assert_eq(errno, EAGAIN);
        struct late_write lw = {p[1]};
        weft_task *w = weft_spawn(write_later, &lw);
        cr_assert_eq(weft_wait_fd(p[0], WEFT_READ | WEFT_EDGE, 5000), WEFT_READ);
        cr_assert_eq(read(p[0], &c, 1), 1);
        cr_assert_eq(weft_join(w, NULL), 0);
    }
    cr_assert_eq(weft_wait_fd(p[0], WEFT_READ | WEFT_EDGE, 20), -ETIMEDOUT);
    weft_close(p[0]);
    weft_close(p[1]);
    return NULL;
}

Test(io, edge_waits_after_eagain, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, edge_root, NULL, NULL), 0);
    weft_runtime_free(rt);
}
