/*
 * epoll backend of the poller (see poller_backend.h). It knows the kernel
 * only: each event becomes a fired record, and the descriptor table
 * (poller_fd.c) is the caller's business.
 *
 * One epoll instance and one eventfd per worker. Descriptors are registered
 * once, edge-triggered for both directions, on their first wait; readiness is
 * then remembered in the descriptor table, so a wait costs no epoll_ctl.
 *
 * Wake-ups from other threads are coalesced: `wake_pending` is set by the
 * first waker and cleared by the poller when it drains the eventfd, so a
 * burst of wakes costs one write() and one read().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "poller_backend.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>


#define EVFD_DATA UINT64_MAX

/* A URING poller goes to poller_uring.c: the branch is predicted, so the
 * epoll path pays a load and a compare per call. */
#define URING(p) __builtin_expect((p)->kind != WEFT__BACKEND_EPOLL, 0)

int weft__poller_init(weft__poller *p)
{
    if (URING(p))
        return weft__uring_init(p);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return -errno;
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->evfd < 0) {
        int e = errno;
        close(p->epfd);
        return -e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EVFD_DATA};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0) {
        int e = errno;
        close(p->epfd);
        close(p->evfd);
        return -e;
    }
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->wake_pending, 0);
    return 0;
}

void weft__poller_destroy(weft__poller *p)
{
    if (URING(p)) {
        weft__uring_destroy(p);
        return;
    }
    close(p->evfd);
    close(p->epfd);
    p->epfd = p->evfd = -1;
}

int weft__poller_register(weft__poller *p, int fd, uint64_t data)
{
    if (URING(p))
        return weft__uring_register(p, fd, data);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = data};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    if (errno == EEXIST) /* registered under an older generation: update it */
        return epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
    return -errno;
}

void weft__poller_unregister(weft__poller *p, int fd, uint64_t data)
{
    if (URING(p)) {
        weft__uring_unregister(p, fd, data);
        return;
    }
    struct epoll_event ev = {0}; /* kernels before 2.6.9 wanted non-NULL */
    (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}

void weft__poller_wake(weft__poller *p)
{
    if (URING(p)) {
        weft__uring_wake(p);
        return;
    }
    if (atomic_exchange_explicit(&p->wake_pending, 1, memory_order_acq_rel))
        return; /* a wake is already on its way */
    uint64_t one = 1;
    ssize_t r = write(p->evfd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: still awake-able */
}

/* The eventfd is registered level-triggered: a poll that does not read it
 * leaves it readable, so a peer's poll (skip_wakes) never swallows a wake
 * meant for the owner. */
static int poll_epoll(weft__poller *p, int timeout_ms, int max_events, int skip_wakes,
                      weft__fired *fired);

int weft__poller_poll(weft__poller *p, int timeout_ms, int max_events, weft__fired *fired)
{
    if (URING(p))
        return weft__uring_poll(p, timeout_ms, max_events, fired);
    return poll_epoll(p, timeout_ms, max_events, 0, fired);
}

int weft__poller_poll_events(weft__poller *p, int max_events, weft__fired *fired)
{
    if (URING(p))
        return weft__uring_poll_events(p, max_events, fired);
    return poll_epoll(p, 0, max_events, 1, fired);
}

static int poll_epoll(weft__poller *p, int timeout_ms, int max_events, int skip_wakes,
                      weft__fired *fired)
{
    struct epoll_event evs[WEFT__POLL_MAX];
    if (max_events > WEFT__POLL_MAX)
        max_events = WEFT__POLL_MAX;
    if (max_events < 1)
        max_events = 1;
    int n = epoll_wait(p->epfd, evs, max_events, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int count = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = evs[i].data.u64;
        uint32_t e = evs[i].events;
        if (data == EVFD_DATA) {
            if (skip_wakes)
                continue;
            uint64_t v;
            ssize_t r = read(p->evfd, &v, sizeof v);
            (void)r;
            /* Cleared after the read: a wake that lands after this clear
             * writes the eventfd again, so none is lost. An exchange, not
             * a store: a waker whose own exchange still read 1 (and so
             * wrote nothing) is then ordered before this clear in the
             * RMW chain, and its push (an inbox, a queue) happens before
             * whatever the owner looks at next; a plain release store
             * gives that only through the hardware (a locked instruction
             * on x86 before the owner's next look), not in C11's model.
             * tests/model/README.md names this as not modelled. */
            (void)atomic_exchange_explicit(&p->wake_pending, 0, memory_order_acq_rel);
            continue;
        }
        uint32_t bits = 0;
        if (e & (EPOLLERR | EPOLLHUP)) /* an error or hang-up wakes both directions */
            bits = WEFT__FIRED_RD | WEFT__FIRED_WR | WEFT__FIRED_HUP;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            bits |= WEFT__FIRED_RD;
        if (e & EPOLLOUT)
            bits |= WEFT__FIRED_WR;
        if (e & EPOLLRDHUP)
            bits |= WEFT__FIRED_HUP;
        fired[count].data = data;
        fired[count].events = bits;
        count++;
    }
    return count;
}
