/*
 * Name resolution on the blocking pool: localhost, a name that does not
 * exist, numeric fast paths, bad input, weft_tcp_connect_host to a local
 * listener, and use from a plain thread.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion cannot unwind a task's stack).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

static int dns_nonexistent_rc; /* reported by the task, logged by the test */

static void *dns_resolve_main(void *arg)
{
    (void)arg;
    struct addrinfo *ai = NULL;
    int rc = weft_resolve("localhost", NULL, AF_UNSPEC, SOCK_STREAM, &ai);
    TEST_EXPECT(rc == 0, "localhost: %d", rc);
    TEST_EXPECT(ai != NULL, "localhost: no address");
    int n = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        TEST_EXPECT(a->ai_family == AF_INET || a->ai_family == AF_INET6, "family %d", a->ai_family);
        n++;
    }
    TEST_EXPECT(n >= 1, "no address");
    weft_freeaddrinfo(ai);

    /* With a service: the port is filled in. */
    rc = weft_resolve("localhost", "8080", AF_INET, SOCK_STREAM, &ai);
    TEST_EXPECT(rc == 0 || rc == -ENOENT, "localhost:8080 v4: %d", rc); /* v6-only hosts */
    if (rc == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)ai->ai_addr;
        TEST_EXPECT(ai->ai_family == AF_INET && ntohs(in->sin_port) == 8080, "port");
        weft_freeaddrinfo(ai);
    }

    /* Numeric fast paths. */
    rc = weft_resolve("127.0.0.1", "80", AF_UNSPEC, SOCK_STREAM, &ai);
    TEST_EXPECT(rc == 0 && ai && ai->ai_family == AF_INET, "127.0.0.1: %d", rc);
    weft_freeaddrinfo(ai);
    rc = weft_resolve("::1", NULL, AF_INET6, 0, &ai);
    TEST_EXPECT(rc == 0 && ai && ai->ai_family == AF_INET6, "::1: %d", rc);
    weft_freeaddrinfo(ai);
    rc = weft_resolve("127.0.0.1", NULL, AF_INET6, 0, &ai);
    TEST_EXPECT(rc < 0 && ai == NULL, "v4 literal as v6: %d", rc);

    /* A name that does not exist (RFC 6761 reserves .invalid). */
    ai = (struct addrinfo *)1;
    rc = weft_resolve("nonexistent.invalid", NULL, AF_UNSPEC, SOCK_STREAM, &ai);
    dns_nonexistent_rc = rc;
    TEST_EXPECT(rc < 0 && ai == NULL, "nonexistent.invalid: %d", rc);

    /* Bad input. */
    TEST_EXPECT(weft_resolve(NULL, NULL, AF_UNSPEC, 0, &ai) == -EINVAL, "NULL, NULL");
    TEST_EXPECT(weft_resolve("localhost", NULL, 12345, 0, &ai) == -EINVAL, "bad family");
    TEST_EXPECT(weft_resolve("localhost", NULL, AF_UNSPEC, 999, &ai) == -EINVAL, "bad socktype");
    TEST_EXPECT(weft_resolve("localhost", NULL, AF_UNSPEC, 0, NULL) == -EINVAL, "out NULL");
    rc = weft_resolve("localhost", "no-such-service-weft", AF_UNSPEC, SOCK_STREAM, &ai);
    TEST_EXPECT(rc == -ESRCH || rc == -ENOENT, "unknown service: %d", rc);
    return NULL;
}

Test(dns_resolve, localhost_nonexistent_and_bad_input, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, dns_resolve_main, NULL, NULL), 0);
    test_assert_no_failure();
    if (dns_nonexistent_rc == -EAGAIN)
        cr_log_info("nonexistent.invalid: -EAGAIN (no resolver reachable on this machine)");
    else
        cr_assert_eq(dns_nonexistent_rc, -ENOENT, "nonexistent.invalid: %d", dns_nonexistent_rc);
    weft_runtime_free(rt);
}

Test(dns_resolve, from_a_plain_thread)
{
    struct addrinfo *ai = NULL;
    cr_assert_eq(weft_resolve("localhost", "80", AF_UNSPEC, SOCK_STREAM, &ai), 0);
    cr_assert_not_null(ai);
    weft_freeaddrinfo(ai);
    weft_freeaddrinfo(NULL);
}

typedef struct dns_conn {
    int lfd;
    uint16_t port;
} dns_conn;

static void *dns_acceptor(void *arg)
{
    dns_conn *c = arg;
    int fd = weft_tcp_accept_timeout(c->lfd, NULL, 10000);
    TEST_EXPECT(fd >= 0, "accept %d", fd);
    char b[4];
    TEST_EXPECT(weft_read(fd, b, 4, 10000) == 4 && memcmp(b, "ping", 4) == 0, "read");
    TEST_EXPECT(weft_write(fd, "pong", 4, 10000) == 4, "write");
    weft_close(fd);
    return NULL;
}

static void *dns_connect_main(void *arg)
{
    (void)arg;
    dns_conn c;
    c.lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(c.lfd >= 0, "listen %d", c.lfd);
    c.port = (uint16_t)weft_socket_port(c.lfd);
    weft_task *acc = weft_spawn(dns_acceptor, &c);
    TEST_EXPECT(acc != NULL, "spawn");
    /* localhost may resolve to ::1 first, where nothing listens: the
     * refused attempt moves on to 127.0.0.1. */
    int fd = weft_tcp_connect_host("localhost", c.port, 10000);
    TEST_EXPECT(fd >= 0, "connect_host localhost: %d", fd);
    TEST_EXPECT(weft_write(fd, "ping", 4, 10000) == 4, "write");
    char b[4];
    TEST_EXPECT(weft_read(fd, b, 4, 10000) == 4 && memcmp(b, "pong", 4) == 0, "read");
    weft_close(fd);
    TEST_EXPECT(weft_join(acc, NULL) == 0, "join");

    /* Numeric addresses go straight to weft_tcp_connect. */
    acc = weft_spawn(dns_acceptor, &c);
    fd = weft_tcp_connect_host("127.0.0.1", c.port, 10000);
    TEST_EXPECT(fd >= 0, "connect_host 127.0.0.1: %d", fd);
    TEST_EXPECT(weft_write(fd, "ping", 4, 10000) == 4, "write");
    TEST_EXPECT(weft_read(fd, b, 4, 10000) == 4, "read");
    weft_close(fd);
    TEST_EXPECT(weft_join(acc, NULL) == 0, "join");

    /* weft_tcp_connect itself takes host names. */
    acc = weft_spawn(dns_acceptor, &c);
    fd = weft_tcp_connect("localhost", c.port, 10000);
    TEST_EXPECT(fd >= 0, "weft_tcp_connect localhost: %d", fd);
    TEST_EXPECT(weft_write(fd, "ping", 4, 10000) == 4, "write");
    TEST_EXPECT(weft_read(fd, b, 4, 10000) == 4, "read");
    weft_close(fd);
    TEST_EXPECT(weft_join(acc, NULL) == 0, "join");
    weft_close(c.lfd);

    /* Nothing listens there any more. */
    fd = weft_tcp_connect_host("localhost", c.port, 10000);
    TEST_EXPECT(fd == -ECONNREFUSED, "closed port: %d", fd);
    fd = weft_tcp_connect_host("nonexistent.invalid", 80, 10000);
    TEST_EXPECT(fd == -ENOENT || fd == -EAGAIN, "nonexistent: %d", fd);
    fd = weft_tcp_connect("nonexistent.invalid", 80, 10000);
    TEST_EXPECT(fd == -ENOENT || fd == -EAGAIN, "weft_tcp_connect nonexistent: %d", fd);
    return NULL;
}

Test(dns_resolve, tcp_connect_host_localhost, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, dns_connect_main, NULL, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}
