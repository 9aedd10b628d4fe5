/*
 * Waiting for descriptors: weft_wait_fd and the descriptor helpers the
 * network and file services build on.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <poll.h>


/* Absolute deadline in ns for a relative timeout (-1: none); saturates
 * instead of overflowing for absurdly long timeouts. */
static int64_t deadline_after(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    if (timeout_ms > INT64_MAX / 4000000)
        return INT64_MAX / 2;
    return weft__clock_ns() + timeout_ms * 1000000;
}

static int wait_thread(int fd, int events, int64_t timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & WEFT_READ)
        p.events |= POLLIN;
    if (events & WEFT_WRITE)
        p.events |= POLLOUT;
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        int t = -1;
        if (deadline >= 0) {
            int64_t left = deadline - weft__clock_ns();
            int64_t ms = left <= 0 ? 0 : (left + 999999) / 1000000;
            t = ms > INT32_MAX ? INT32_MAX : (int)ms;
        }
        int n = poll(&p, 1, t);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        if (p.revents & POLLNVAL)
            return -EBADF;
        int r = 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR))
            r |= events & WEFT_READ;
        if (p.revents & (POLLOUT | POLLHUP | POLLERR))
            r |= events & WEFT_WRITE;
        return r ? r : events;
    }
}

int weft_wait_fd(int fd, int events, int64_t timeout_ms)
{
    if (events == 0 || (events & ~(WEFT_READ | WEFT_WRITE)))
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    weft__task *self = weft__cur_task();
    if (!self)
        return wait_thread(fd, events, timeout_ms);
    weft_time deadline = deadline_after(timeout_ms);
    static const int bit[2] = {WEFT_READ, WEFT_WRITE};
    for (;;) {
        uint64_t token = weft__wait_prepare(self);
        int ready = 0, installed[2] = {0, 0};
        uint32_t gen = 0;
        for (int d = 0; d < 2; d++) {
            if (!(events & bit[d]))
                continue;
            int rc = weft__fd_wait(&self->worker->poller, fd, d, self, token, &gen);
            if (rc == -EPERM) {
                /* Not pollable (a regular file): always ready, as poll() says. */
                return events;
            }
            if (rc < 0) {
                if (d == 1 && installed[0])
                    weft__fd_unwait(fd, 0, gen);
                return rc;
            }
            if (rc == 1)
                ready |= bit[d];
            else
                installed[d] = 1;
        }
        if (ready) {
            for (int d = 0; d < 2; d++)
                if (installed[d] && weft__fd_unwait(fd, d, gen) == 1)
                    ready |= bit[d];
            weft__coop_consume();
            return ready;
        }
        if (deadline >= 0 && weft__clock_ns() >= deadline) {
            for (int d = 0; d < 2; d++)
                if (installed[d] && weft__fd_unwait(fd, d, gen) == 1)
                    ready |= bit[d];
            if (ready)
                return ready;
            /* Edge-triggered readiness of a descriptor registered just now
             * arrives at the owning worker's next epoll_wait; a zero
             * timeout cannot wait for that, so ask the kernel directly. */
            return wait_thread(fd, events, 0);
        }
        weft__timer_ref ref = {NULL, 0};
        if (deadline >= 0 && weft__timer_arm(self, token, deadline, &ref) < 0) {
            for (int d = 0; d < 2; d++)
                if (installed[d])
                    weft__fd_unwait(fd, d, gen);
            return -ENOMEM;
        }
        int pr = weft__park(self);
        weft__timer_disarm(self, ref);
        if (pr < 0) {
            for (int d = 0; d < 2; d++)
                if (installed[d])
                    weft__fd_unwait(fd, d, gen);
            return pr;
        }
        int closed = 0;
        for (int d = 0; d < 2; d++) {
            if (!installed[d])
                continue;
            int rc = weft__fd_unwait(fd, d, gen);
            if (rc == 1)
                ready |= bit[d];
            else if (rc == -EBADF)
                closed = 1;
        }
        if (closed)
            return -EBADF;
        if (ready)
            return ready;
        if (deadline >= 0 && weft__clock_ns() >= deadline)
            return -ETIMEDOUT;
        /* Neither: a wake for an earlier life of this wait; go round. */
    }
}

int weft_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    return weft__fd_close(fd, weft__wake_cb, NULL);
}
