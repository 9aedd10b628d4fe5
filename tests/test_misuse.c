/*
 * Misuse gets a documented answer: weft_runtime_free from one of its own
 * tasks aborts with a message (instead of hanging), a negative listen
 * backlog is -EINVAL, NULL to weft_chan_len and weft_runtime_workers is 0,
 * and a write to a peer that reset the connection says -ECONNRESET once,
 * then -EPIPE (as include/weft.h says), never SIGPIPE.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

static void *misuse_free_own_runtime(void *arg)
{
    (void)arg;
    weft_runtime_free(weft_current_runtime());
    return (void *)1; /* not reached: it aborts */
}

Test(misuse, runtime_free_from_its_own_task_aborts, .signal = SIGABRT)
{
    weft_runtime *rt = test_runtime(2);
    weft_runtime_block_on(rt, misuse_free_own_runtime, NULL, NULL);
}

Test(misuse, null_runtime_and_channel)
{
    cr_assert_eq(weft_runtime_workers(NULL), 0);
    cr_assert_eq(weft_chan_len(NULL), 0);
    weft_runtime *rt = test_runtime(3);
    cr_assert_eq(weft_runtime_workers(rt), 3);
    weft_runtime_free(rt);
    weft_runtime_free(NULL); /* a no-op */
}

static void *misuse_backlog_task(void *arg)
{
    (void)arg;
    TEST_EXPECT(weft_tcp_listen("127.0.0.1", 0, -1) == -EINVAL, "tcp backlog -1");
    TEST_EXPECT(weft_tcp_listen_ex("127.0.0.1", 0, -100, 0) == -EINVAL, "tcp backlog -100");
    char path[64];
    snprintf(path, sizeof path, "/tmp/weft-misuse-%d.sock", (int)getpid());
    unlink(path);
    TEST_EXPECT(weft_unix_listen(path, -5) == -EINVAL, "unix backlog -5");
    TEST_EXPECT(access(path, F_OK) != 0, "a refused listen left its socket file");
    int fd = weft_tcp_listen("127.0.0.1", 0, 0); /* 0: the system's default */
    TEST_EXPECT(fd >= 0, "backlog 0: %d", fd);
    weft_close(fd);
    return NULL;
}

Test(misuse, negative_listen_backlog)
{
    test_run(2, misuse_backlog_task, NULL);
}

/* A connected pair over loopback: *c the client end, *s the server end. */
static int misuse_pair(int *c, int *s)
{
    int lfd = weft_tcp_listen("127.0.0.1", 0, 4);
    if (lfd < 0)
        return lfd;
    *c = weft_tcp_connect("127.0.0.1", (uint16_t)weft_socket_port(lfd), 5000);
    *s = *c < 0 ? -1 : weft_tcp_accept_timeout(lfd, NULL, 5000);
    weft_close(lfd);
    return *c < 0 ? *c : *s < 0 ? *s : 0;
}

static void *misuse_reset_peer_task(void *arg)
{
    (void)arg;
    /* The peer aborts (SO_LINGER 0: close sends a reset). */
    int c, s;
    TEST_EXPECT(misuse_pair(&c, &s) == 0, "pair");
    struct linger lg = {1, 0};
    TEST_EXPECT(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "SO_LINGER");
    weft_close(s);
    /* Readiness shows the reset without taking it. */
    TEST_EXPECT(weft_wait_fd(c, WEFT_READ, 5000) >= 0, "wait for the reset");
    ssize_t n = weft_write(c, "x", 1, 5000);
    TEST_EXPECT(n == -ECONNRESET, "first write after the reset: %zd", n);
    n = weft_write(c, "x", 1, 5000);
    TEST_EXPECT(n == -EPIPE, "second write after the reset: %zd", n);
    weft_close(c);

    /* The peer closes normally (FIN); our next write meets its reset, and
     * the write after it says -EPIPE: never -ECONNRESET after a FIN. */
    TEST_EXPECT(misuse_pair(&c, &s) == 0, "pair");
    weft_close(s);
    int first_err = 0;
    for (int i = 0; i < 200 && !first_err; i++) {
        n = weft_write(c, "x", 1, 5000);
        if (n < 0)
            first_err = (int)n;
        else
            weft_sleep_ms(5);
    }
    TEST_EXPECT(first_err == -EPIPE, "write after FIN and reset: %d", first_err);
    weft_close(c);
    return NULL;
}

Test(misuse, write_to_reset_peer)
{
    test_run(2, misuse_reset_peer_task, NULL);
}
