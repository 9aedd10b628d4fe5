/*
 * Waiting for descriptors: weft_wait_fd and the descriptor helpers the
 * network and file services build on.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>

/* What poll(2) says of fd right now, waiting at most timeout_ms (-1: no
 * limit): the ready subset of events, 0 if none is, or -errno. */
static int poll_once(int fd, int events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & WEFT_READ)
        p.events |= POLLIN;
    if (events & WEFT_WRITE)
        p.events |= POLLOUT;
    int n = poll(&p, 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    if (p.revents & POLLNVAL)
        return -EBADF;
    int r = 0;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        r |= events & WEFT_READ;
    if (p.revents & (POLLOUT | POLLHUP | POLLERR))
        r |= events & WEFT_WRITE;
    return r ? r : events;
}

int weft__fd_ready_now(int fd, int events)
{
    int r;
    while ((r = poll_once(fd, events, 0)) == -EINTR)
        ;
    return r;
}

/* A plain thread waits in poll() itself. */
static int wait_thread(int fd, int events, weft__deadline deadline)
{
    for (;;) {
        int t = -1;
        if (deadline != WEFT__NO_DEADLINE) {
            int64_t left = deadline - weft__clock_ns();
            int64_t ms = left <= 0 ? 0 : (left + 999999) / 1000000;
            t = ms > INT32_MAX ? INT32_MAX : (int)ms;
        }
        int r = poll_once(fd, events, t);
        if (r == -EINTR)
            continue;
        if (r != 0)
            return r;
        if (t >= 0 && weft__clock_ns() >= deadline)
            return -ETIMEDOUT;
        /* A slice of a longer wait ended (INT32_MAX ms); go on. */
    }
}

/* The task's side. Readiness in the table is edge-triggered: an event
 * consumed by an earlier wait does not come again while the descriptor
 * stays ready. That is right for weft's own calls, which wait only after
 * the operation said EAGAIN, so a new edge must come. A caller who waits
 * without having seen EAGAIN (level) is first answered by poll(), and any
 * readiness the table reports is confirmed by poll() before it is
 * returned: a remembered edge may be stale (the data it announced has been
 * read since), and returning it would be a spurious wake-up. The order
 * keeps it free of lost wake-ups: an edge that comes after the last poll()
 * either sets the table's flag before we install the waiter (the install
 * sees it) or wakes the waiter. */
int weft__wait_fd(int fd, int events, weft__deadline deadline, int level)
{
    weft__task *self = weft__cur_task();
    if (!self)
        return wait_thread(fd, events, deadline);
    deadline = weft__deadline_effective_for(self, deadline); /* the task's scope */
    if (level) {
        int r = weft__fd_ready_now(fd, events);
        if (r != 0) {
            if (r > 0)
                weft__coop_consume();
            return r;
        }
    }
    /* Before sleeping on a registration: is it still for the file this
     * number names? A library may have closed it with plain close() and the
     * kernel handed the number to a new file. For weft's own descriptors
     * (closed with weft_close) only on level waits, which is where foreign
     * libraries come in. */
    int rc = weft__fd_check(fd, level, weft__wake_cb, NULL);
    if (rc < 0)
        return rc;
    static const int bit[2] = {WEFT_READ, WEFT_WRITE};
    for (;;) {
        uint64_t token = weft__wait_prepare(self);
        weft__wait_note(self, WEFT__WAIT_FD, (uint64_t)fd, (unsigned)events);
        int ready = 0, installed[2] = {0, 0};
        uint32_t gen = 0;
        for (int d = 0; d < 2; d++) {
            if (!(events & bit[d]))
                continue;
            rc = weft__fd_wait(&self->worker->poller, fd, d, self, token, &gen);
            if (rc == -EPERM) {
                /* Not pollable (a regular file): always ready, as poll() says. */
                if (d == 1 && installed[0])
                    weft__fd_unwait(fd, 0, gen);
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
            if (level) {
                int r = weft__fd_ready_now(fd, events);
                if (r < 0)
                    return r;
                if (r == 0)
                    continue; /* a stale edge, now consumed: wait for a new one */
                ready = r;
            }
            weft__coop_consume();
            return ready;
        }
        if (weft__deadline_passed(deadline)) {
            for (int d = 0; d < 2; d++)
                if (installed[d] && weft__fd_unwait(fd, d, gen) == 1)
                    ready |= bit[d];
            if (ready && !level)
                return ready;
            /* Edge-triggered readiness of a descriptor registered just now
             * arrives at the owning worker's next epoll_wait; a zero
             * timeout cannot wait for that, so ask the kernel directly. */
            int r = weft__fd_ready_now(fd, events);
            if (r != 0)
                return r;
            /* Cancelled and out of time: cancellation is what it reports. */
            return weft__cancel_pending(self) ? -ECANCELED : -ETIMEDOUT;
        }
        int pr = weft__park_until(self, token, deadline);
        if (pr < 0) { /* cancelled, or no timer entry (ENOMEM) */
            for (int d = 0; d < 2; d++)
                if (installed[d])
                    weft__fd_unwait(fd, d, gen);
            return pr;
        }
        int closed = 0;
        for (int d = 0; d < 2; d++) {
            if (!installed[d])
                continue;
            rc = weft__fd_unwait(fd, d, gen);
            if (rc == 1)
                ready |= bit[d];
            else if (rc == -EBADF)
                closed = 1;
        }
        if (closed)
            return -EBADF;
        /* No poll() to confirm: the edge that woke us came after the one
         * that said "not ready", so it is news. */
        if (ready)
            return ready;
        if (weft__deadline_passed(deadline))
            return -ETIMEDOUT;
        /* Neither: a wake for an earlier life of this wait; go round. */
    }
}

int weft_wait_fd(int fd, int events, int64_t timeout_ms)
{
    int dirs = events & (WEFT_READ | WEFT_WRITE);
    if (dirs == 0 || (events & ~(WEFT_READ | WEFT_WRITE | WEFT_EDGE)))
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    return weft__wait_fd(fd, dirs, weft__deadline_from_ms(timeout_ms), !(events & WEFT_EDGE));
}

int weft_fd_forget(int fd)
{
    if (fd < 0)
        return -EBADF;
    weft__fd_forget(fd, weft__wake_cb, NULL);
    return 0;
}

int weft__fd_is_blocking(int fd)
{
    if (weft__fd_owned(fd))
        return 0; /* weft made it non-blocking */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    return (fl & O_NONBLOCK) == 0;
}

int weft_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    return weft__fd_close(fd, weft__wake_cb, NULL);
}
