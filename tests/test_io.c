/* weft_wait_fd: readiness, timeouts, close under a waiter, stale numbers. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>

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
