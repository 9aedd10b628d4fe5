/*
 * Sockets: TCP, UDP and Unix-domain streams on top of weft_wait_fd.
 *
 * Every call follows one pattern: try the non-blocking syscall; on EAGAIN
 * wait for the direction it needs and try again. The waits are cut from one
 * absolute deadline taken when the call starts, so partial progress and
 * spurious wake-ups cannot stretch a call past the timeout its caller asked
 * for. errno is copied right after each syscall, because any wait below may
 * resume the task on another thread, whose errno is not ours.
 *
 * Descriptors that have been waited on are registered in the poller's table,
 * so every close in here goes through weft_close.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Back-off while out of descriptors or Unix backlog room: fast enough to pick
 * up a freed slot promptly, slow enough that a stuck call costs nothing. */
#define BACKOFF_FIRST_MS 1
#define BACKOFF_MAX_MS 100
/* iovecs copied per writev attempt after a partial write moved into the
 * middle of an entry; the caller's array is const and may be long. */
#define IOV_SLICE 64

typedef union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
} sockaddr_any;

/* ------------------------------------------------------------ waiting */

/* Waits until fd may be ready for `events` or the deadline passes. Returns 0
 * (try the operation again) or -errno. The caller has just seen EAGAIN, so
 * the edge-triggered wait is enough (see weft__wait_fd). */
static int wait_until(int fd, int events, weft__deadline deadline)
{
    int rc = weft__wait_fd(fd, events, deadline, 0);
    return rc < 0 ? rc : 0;
}

/* Sleeps one back-off step (doubling it for next time), never past the
 * deadline. -ETIMEDOUT once the deadline has passed. */
static int backoff(unsigned *step_ms, weft__deadline deadline)
{
    weft_time wake = weft_now() + (weft_time)*step_ms * 1000000;
    if (deadline != WEFT__NO_DEADLINE) {
        if (weft_now() >= deadline)
            return -ETIMEDOUT;
        if (wake > deadline)
            wake = deadline;
    }
    weft_sleep_until(wake);
    *step_ms = *step_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *step_ms * 2;
    return 0;
}

/* An operation that finished without suspending spends from the task's
 * budget, so a loop over an always-ready stream still lets others run. */
static void completed(int waited)
{
    if (!waited)
        weft__coop_consume();
}

/* ------------------------------------------------------------ addresses */

static int ip_addr(const char *host, uint16_t port, sockaddr_any *a, socklen_t *len)
{
    memset(a, 0, sizeof *a);
    if (!host || !*host) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons(port);
        a->in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof a->in4;
        return 0;
    }
    if (inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons(port);
        *len = sizeof a->in4;
        return 0;
    }
    /* IPv6, optionally bracketed as in URLs ("[::1]") and with a zone
     * ("fe80::1%eth0"), which link-local addresses need to be usable. */
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
    size_t n = strnlen(host, sizeof buf);
    if (n == sizeof buf)
        return -EINVAL;
    memcpy(buf, host, n + 1);
    char *p = buf;
    if (p[0] == '[') {
        if (n < 3 || p[n - 1] != ']')
            return -EINVAL;
        p[n - 1] = 0;
        p++;
    }
    char *zone = strchr(p, '%');
    if (zone)
        *zone++ = 0;
    if (inet_pton(AF_INET6, p, &a->in6.sin6_addr) != 1)
        return -EINVAL;
    if (zone) {
        char *end;
        errno = 0;
        unsigned long idx = strtoul(zone, &end, 10);
        if (!*zone || *end || errno)
            idx = if_nametoindex(zone);
        if (idx == 0 || idx > UINT32_MAX)
            return -EINVAL;
        a->in6.sin6_scope_id = (uint32_t)idx;
    }
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons(port);
    *len = sizeof a->in6;
    return 0;
}

static int unix_addr(const char *path, sockaddr_any *a, socklen_t *len)
{
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof a->un.sun_path)
        return -ENAMETOOLONG;
    memset(a, 0, sizeof *a);
    a->un.sun_family = AF_UNIX;
    memcpy(a->un.sun_path, path, n + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* ------------------------------------------------------------ sockets */

static int new_socket(int domain, int type)
{
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = type == SOCK_STREAM ? weft__fd_fresh_stream(fd) : weft__fd_fresh(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Closes a half-made socket and passes its error through. */
static int discard(int fd, int err)
{
    weft_close(fd);
    return err;
}

static int set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

static int listen_on(const sockaddr_any *a, socklen_t alen, int backlog, int flags)
{
    if (backlog < 0)
        return -EINVAL;
    int fd = new_socket(a->sa.sa_family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (a->sa.sa_family != AF_UNIX) {
        /* A restarted server must be able to bind while its old connections
         * sit in TIME_WAIT. */
        rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (rc == 0 && (flags & WEFT_REUSEPORT))
            rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    }
    if (rc == 0 && bind(fd, &a->sa, alen) < 0)
        rc = -errno;
    if (rc == 0 && listen(fd, backlog <= 0 ? SOMAXCONN : backlog) < 0)
        rc = -errno;
    return rc < 0 ? discard(fd, rc) : fd;
}

static int accept_until(int lfd, struct sockaddr_storage *addr_out, int tcp, weft__deadline deadline)
{
    if (lfd < 0)
        return -EBADF;
    unsigned step = BACKOFF_FIRST_MS;
    int waited = 0;
    for (;;) {
        socklen_t len = sizeof *addr_out;
        int fd = accept4(lfd, (struct sockaddr *)addr_out, addr_out ? &len : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            /* Accepted sockets are streams. Without a table entry for it
             * the connection is closed (the peer sees it end) and the
             * caller hears -ENOMEM. */
            if (weft__fd_fresh_stream(fd) < 0) {
                close(fd);
                return -ENOMEM;
            }
            /* Its events go to the acceptor's poller, whichever worker the
             * connection's task first waits on (a peer that stole it). One
             * poller then sees a listener's load, and a second worker runs
             * only when that load leaves a backlog (POLL_WAKE_BACKLOG)
             * instead of being woken by its own share of the events. */
            weft__task *self = weft__cur_task();
            if (self)
                (void)weft__fd_bind(&self->worker->poller, fd);
            /* Best effort: it fails harmlessly if lfd was not TCP after all. */
            if (tcp)
                set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
            completed(waited);
            return fd;
        }
        int e = errno;
        int rc;
        switch (e) {
        case EINTR:
        case ECONNABORTED: /* the peer gave up while queued: take the next one */
        case EPROTO:
            continue;
        case EAGAIN:
            rc = wait_until(lfd, WEFT_READ, deadline);
            break;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            /* The connection stays queued and the listener stays readable, so
             * waiting for readiness would return at once: sleep instead and
             * let whoever holds descriptors release some. */
            rc = backoff(&step, deadline);
            break;
        default:
            return -e;
        }
        if (rc < 0)
            return rc;
        waited = 1;
    }
}

/* Connects fd (non-blocking) to a, waiting for the handshake. */
static int connect_until(int fd, const sockaddr_any *a, socklen_t alen, weft__deadline deadline)
{
    unsigned step = BACKOFF_FIRST_MS;
    int waited = 0;
    for (;;) {
        if (connect(fd, &a->sa, alen) == 0) {
            completed(waited);
            return 0;
        }
        int e = errno;
        if (e == EINPROGRESS || e == EINTR)
            break; /* an interrupted non-blocking connect goes on by itself */
        if (e != EAGAIN)
            return -e;
        /* A Unix listener's backlog is full; the socket is still
         * unconnected and nothing will signal room, so retry later. */
        int rc = backoff(&step, deadline);
        if (rc < 0)
            return rc;
        waited = 1;
    }
    for (;;) {
        int rc = wait_until(fd, WEFT_WRITE, deadline);
        if (rc < 0)
            return rc;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        if (err == EINPROGRESS || err == EALREADY || err == EINTR)
            continue;
        if (err)
            return -err;
        /* Writable with no error can still be a readiness left over from
         * before the handshake ended; only a peer address proves it. */
        sockaddr_any peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, &peer.sa, &plen) == 0)
            return 0;
        int e = errno;
        if (e != ENOTCONN)
            return -e;
    }
}

/* ------------------------------------------------------------ TCP */

int weft_tcp_listen_ex(const char *host, uint16_t port, int backlog, int flags)
{
    if (flags & ~WEFT_REUSEPORT)
        return -EINVAL;
    sockaddr_any a;
    socklen_t alen;
    int rc = ip_addr(host, port, &a, &alen);
    if (rc < 0)
        return rc;
    return listen_on(&a, alen, backlog, flags);
}

int weft_tcp_listen(const char *host, uint16_t port, int backlog)
{
    return weft_tcp_listen_ex(host, port, backlog, 0);
}

int weft_tcp_accept_timeout(int lfd, struct sockaddr_storage *addr_out, int64_t timeout_ms)
{
    return accept_until(lfd, addr_out, 1, weft__deadline_from_ms(timeout_ms));
}

int weft_tcp_accept(int lfd, struct sockaddr_storage *addr_out)
{
    return accept_until(lfd, addr_out, 1, WEFT__NO_DEADLINE);
}

/* A DNS host name (letters, digits, '-' and '.', with at least one letter):
 * anything else that is not a numeric address is a malformed host. */
static int looks_like_name(const char *h)
{
    int letter = 0;
    for (; *h; h++) {
        unsigned char c = (unsigned char)*h;
        if ((c | 32) >= 'a' && (c | 32) <= 'z')
            letter = 1;
        else if (!(c >= '0' && c <= '9') && c != '-' && c != '.')
            return 0;
    }
    return letter;
}

static int tcp_connect_to(const sockaddr_any *a, socklen_t alen, weft__deadline deadline)
{
    int fd = new_socket(a->sa.sa_family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    /* Small request/response exchanges would otherwise stall up to 40 ms on
     * Nagle's algorithm meeting the peer's delayed ACK. */
    int rc = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (rc == 0)
        rc = connect_until(fd, a, alen, deadline);
    return rc < 0 ? discard(fd, rc) : fd;
}

/* A resolved address as it is (an IPv6 scope id included). */
static int tcp_connect_addr(const struct sockaddr *addr, unsigned addrlen, weft__deadline deadline)
{
    if (addrlen > sizeof(sockaddr_any) ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return -EAFNOSUPPORT;
    sockaddr_any a;
    memset(&a, 0, sizeof a);
    memcpy(&a, addr, addrlen);
    return tcp_connect_to(&a, (socklen_t)addrlen, deadline);
}

/* Resolves a name (weft_resolve, dns.c) and tries each address as resolved,
 * so an IPv6 scope id survives, under the one deadline of the call. */
int weft_tcp_connect_host(const char *host, uint16_t port, int64_t timeout_ms)
{
    unsigned char probe[sizeof(struct in6_addr)];
    if (!host || !*host || inet_pton(AF_INET, host, probe) == 1 ||
        inet_pton(AF_INET6, host, probe) == 1)
        return weft_tcp_connect(host, port, timeout_ms);
    /* One deadline for every attempt. */
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    struct addrinfo *ai = NULL;
    int rc = weft_resolve(host, NULL, AF_UNSPEC, SOCK_STREAM, &ai);
    if (rc < 0)
        return rc;
    rc = -ENOENT;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        /* The port goes into the resolved address itself: it was resolved
         * without a service, and the rest of it (an IPv6 scope id) must
         * reach connect() as it is. */
        if (a->ai_family == AF_INET && a->ai_addrlen >= sizeof(struct sockaddr_in))
            ((struct sockaddr_in *)(void *)a->ai_addr)->sin_port = htons(port);
        else if (a->ai_family == AF_INET6 && a->ai_addrlen >= sizeof(struct sockaddr_in6))
            ((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_port = htons(port);
        else
            continue;
        if (weft__deadline_passed(deadline)) {
            rc = -ETIMEDOUT;
            break;
        }
        int fd = tcp_connect_addr(a->ai_addr, a->ai_addrlen, deadline);
        if (fd >= 0) {
            rc = fd;
            break;
        }
        rc = fd;
        if (rc == -ETIMEDOUT || rc == -ECANCELED)
            break; /* the whole budget is spent, or the caller gave up */
    }
    freeaddrinfo(ai);
    return rc;
}

int weft_tcp_connect(const char *host, uint16_t port, int64_t timeout_ms)
{
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    sockaddr_any a;
    socklen_t alen;
    int rc = ip_addr(host, port, &a, &alen);
    if (rc == -EINVAL && host && looks_like_name(host))
        return weft_tcp_connect_host(host, port, timeout_ms); /* resolves, tries each address */
    if (rc < 0)
        return rc;
    return tcp_connect_to(&a, alen, deadline);
}

int weft_socket_port(int fd)
{
    if (fd < 0)
        return -EBADF;
    sockaddr_any a;
    socklen_t len = sizeof a;
    if (getsockname(fd, &a.sa, &len) < 0)
        return -errno;
    if (a.sa.sa_family == AF_INET)
        return ntohs(a.in4.sin_port);
    if (a.sa.sa_family == AF_INET6)
        return ntohs(a.in6.sin6_port);
    return -EAFNOSUPPORT;
}

/* ------------------------------------------------------------ streams */

/* The loop every transfer shares: try the call; on EAGAIN wait for the
 * descriptor under the one deadline of the whole call, and try again. op
 * returns the call's result with errno set on -1 (read at once, before any
 * suspension). Inlined, so each caller gets its own direct call. */
static inline __attribute__((always_inline)) ssize_t
retry_io(int fd, int events, weft__deadline deadline, int waited, ssize_t (*op)(int fd, void *args),
         void *args)
{
    /* A descriptor in blocking mode (stdin, one a library made) would hold
     * the worker inside the call: wait until poll() says the call can
     * proceed, then make it. */
    int blocking = weft__fd_is_blocking(fd);
    if (blocking < 0)
        return blocking;
    for (;;) {
        if (blocking) {
            int rc = weft__wait_fd(fd, events, deadline, 1);
            if (rc < 0)
                return rc;
            waited = 1;
        }
        ssize_t r = op(fd, args);
        if (r >= 0) {
            completed(waited);
            return r;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e != EAGAIN)
            return -e;
        int rc = wait_until(fd, events, deadline);
        if (rc < 0)
            return rc;
        waited = 1;
    }
}

struct buf_args {
    void *buf;
    size_t n;
};

static ssize_t read_op(int fd, void *p)
{
    struct buf_args *a = p;
    uint32_t seq = weft__fd_event_seq(fd, WEFT__DIR_READ);
    ssize_t r = read(fd, a->buf, a->n);
    if (r > 0 && (size_t)r < a->n)
        weft__fd_drained(fd, WEFT__DIR_READ, seq);
    return r;
}

ssize_t weft_read(int fd, void *buf, size_t n, int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    int waited = 0;
    if (!weft__fd_worth_trying(fd, WEFT__DIR_READ)) {
        /* The last read drained this stream and nothing arrived since: a
         * read now would only say EAGAIN, so wait first. */
        int rc = wait_until(fd, WEFT_READ, deadline);
        if (rc < 0)
            return rc;
        waited = 1;
    }
    struct buf_args a = {buf, n};
    return retry_io(fd, WEFT_READ, deadline, waited, read_op, &a);
}

struct iov_args {
    const struct iovec *iov;
    int cnt;
};

static ssize_t readv_op(int fd, void *p)
{
    struct iov_args *a = p;
    return readv(fd, a->iov, a->cnt);
}

ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    if (iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt > 0))
        return -EINVAL;
    struct iov_args a = {iov, iovcnt};
    return retry_io(fd, WEFT_READ, weft__deadline_from_ms(timeout_ms), 0, readv_op, &a);
}

/* writev() for descriptors that are not sockets (pipes), where
 * MSG_NOSIGNAL does not exist: SIGPIPE is blocked around the call and the one
 * the call raised is taken back before unblocking, so the process never sees
 * it. One already pending before the call is the caller's and is left. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int cnt)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE) == 1;
    ssize_t r = writev(fd, iov, cnt);
    int e = errno;
    if (r < 0 && e == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

/* One attempt to write iov: sendmsg with MSG_NOSIGNAL on sockets; *not_sock
 * remembers for the rest of the call that fd needs the pipe path. Sockets
 * never block (MSG_DONTWAIT), whatever their mode. */
static ssize_t write_once(int fd, struct iovec *iov, int cnt, int *not_sock)
{
    if (!*not_sock) {
        /* One buffer, the common case: send() skips the msghdr and iovec
         * copying that sendmsg() does in the kernel. */
        ssize_t r;
        if (cnt == 1) {
            r = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
            r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (r >= 0 || errno != ENOTSOCK)
            return r;
        *not_sock = 1;
    }
    return writev_nosigpipe(fd, iov, cnt);
}

/* Writes all `total` bytes of iov[0..cnt) or fails. */
static ssize_t write_all(int fd, const struct iovec *iov, int cnt, size_t total,
                         int64_t timeout_ms)
{
    if (total == 0)
        return 0;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    int blocking = weft__fd_is_blocking(fd);
    if (blocking < 0)
        return blocking;
    struct iovec slice[IOV_SLICE];
    int idx = 0, waited = 0, not_sock = 0;
    if (blocking) {
        /* Known before the first write: a blocking pipe must not be
         * handed more than PIPE_BUF bytes, even once. */
        int type;
        socklen_t tlen = sizeof type;
        not_sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 && errno == ENOTSOCK;
    }
    size_t off = 0, done = 0; /* off: bytes of iov[idx] already written */
    while (done < total) {
        struct iovec *cur;
        int ncur;
        if (off == 0) {
            /* The kernel does not write through msg_iov; the cast only
             * satisfies struct msghdr's non-const member. */
            cur = (struct iovec *)&iov[idx];
            ncur = cnt - idx;
        } else {
            ncur = cnt - idx < IOV_SLICE ? cnt - idx : IOV_SLICE;
            memcpy(slice, &iov[idx], (size_t)ncur * sizeof *slice);
            slice[0].iov_base = (char *)slice[0].iov_base + off;
            slice[0].iov_len -= off;
            cur = slice;
        }
        if (blocking && not_sock) {
            /* A pipe in blocking mode: once poll() says writable, a write
             * of at most PIPE_BUF bytes does not block. */
            int rc = weft__wait_fd(fd, WEFT_WRITE, deadline, 1);
            if (rc < 0)
                return rc;
            waited = 1;
            slice[0] = cur[0];
            if (slice[0].iov_len > PIPE_BUF)
                slice[0].iov_len = PIPE_BUF;
            cur = slice;
            ncur = 1;
        }
        ssize_t r = write_once(fd, cur, ncur, &not_sock);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e != EAGAIN)
                return -e;
        }
        if (r <= 0) {
            int rc = wait_until(fd, WEFT_WRITE, deadline);
            if (rc < 0)
                return rc;
            waited = 1;
            continue;
        }
        done += (size_t)r;
        for (size_t adv = (size_t)r; adv > 0;) {
            size_t room = iov[idx].iov_len - off;
            if (adv < room) {
                off += adv;
                adv = 0;
            } else {
                adv -= room;
                idx++;
                off = 0;
            }
        }
    }
    completed(waited);
    return (ssize_t)done;
}

ssize_t weft_write(int fd, const void *buf, size_t n, int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    if (n > SSIZE_MAX)
        return -EINVAL;
    struct iovec one = {.iov_base = (void *)buf, .iov_len = n};
    return write_all(fd, &one, 1, n, timeout_ms);
}

ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    if (iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt > 0))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    return write_all(fd, iov, iovcnt, total, timeout_ms);
}

int weft_shutdown(int fd, int how)
{
    if (fd < 0)
        return -EBADF;
    return shutdown(fd, how) < 0 ? -errno : 0;
}

/* ------------------------------------------------------------ UDP */

int weft_udp_bind(const char *host, uint16_t port)
{
    sockaddr_any a;
    socklen_t alen;
    int rc = ip_addr(host, port, &a, &alen);
    if (rc < 0)
        return rc;
    int fd = new_socket(a.sa.sa_family, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    if (bind(fd, &a.sa, alen) < 0)
        return discard(fd, -errno);
    return fd;
}

struct dgram_args {
    void *buf;
    size_t n;
    struct sockaddr *addr;
    socklen_t addrlen;
    socklen_t *addrlen_out;
};

static ssize_t sendto_op(int fd, void *p)
{
    struct dgram_args *a = p;
    return sendto(fd, a->buf, a->n, MSG_NOSIGNAL | MSG_DONTWAIT, a->addr, a->addrlen);
}

static ssize_t recvfrom_op(int fd, void *p)
{
    struct dgram_args *a = p;
    socklen_t len = sizeof(struct sockaddr_storage);
    ssize_t r = recvfrom(fd, a->buf, a->n, MSG_DONTWAIT, a->addr, a->addr ? &len : NULL);
    if (r >= 0 && a->addrlen_out)
        *a->addrlen_out = a->addr ? len : 0;
    return r;
}

ssize_t weft_sendto(int fd, const void *buf, size_t n, const struct sockaddr *to, socklen_t tolen,
                    int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    struct dgram_args a = {(void *)buf, n, (struct sockaddr *)to, tolen, NULL};
    return retry_io(fd, WEFT_WRITE, weft__deadline_from_ms(timeout_ms), 0, sendto_op, &a);
}

/* The sender's address goes to *from; *fromlen is only written (its length),
 * never read: from always has room for any address. */
ssize_t weft_recvfrom(int fd, void *buf, size_t n, struct sockaddr_storage *from,
                      socklen_t *fromlen, int64_t timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    struct dgram_args a = {buf, n, (struct sockaddr *)from, 0, fromlen};
    return retry_io(fd, WEFT_READ, weft__deadline_from_ms(timeout_ms), 0, recvfrom_op, &a);
}

/* ------------------------------------------------------------ Unix */

int weft_unix_listen(const char *path, int backlog)
{
    sockaddr_any a;
    socklen_t alen;
    int rc = unix_addr(path, &a, &alen);
    if (rc < 0)
        return rc;
    return listen_on(&a, alen, backlog, 0);
}

int weft_unix_accept(int lfd, int64_t timeout_ms)
{
    return accept_until(lfd, NULL, 0, weft__deadline_from_ms(timeout_ms));
}

int weft_unix_connect(const char *path, int64_t timeout_ms)
{
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    sockaddr_any a;
    socklen_t alen;
    int rc = unix_addr(path, &a, &alen);
    if (rc < 0)
        return rc;
    int fd = new_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0)
        return fd;
    rc = connect_until(fd, &a, alen, deadline);
    return rc < 0 ? discard(fd, rc) : fd;
}
