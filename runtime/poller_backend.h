/*
 * A poller backend: one kernel readiness interface per worker (epoll today,
 * poller_epoll.c; io_uring may sit beside it with the same calls). See
 * poller.h for which file of the poller layer knows what.
 *
 * A backend knows the kernel and nothing above it: descriptors are
 * registered with an opaque 64-bit cookie, and a poll fills an array of
 * fired records (cookie plus readiness bits), as Redis's aeApiPoll fills
 * fired[], and returns how many. It never looks up descriptors, waiters or
 * tasks. Wake-ups (weft__poller_wake) are consumed inside the backend and
 * never appear as records.
 */
#ifndef WEFT_POLLER_BACKEND_H
#define WEFT_POLLER_BACKEND_H

#include <stdatomic.h>
#include <stdint.h>

/* Which kernel interface a poller uses (weft__poller.kind). */
enum { WEFT__BACKEND_EPOLL = 0, WEFT__BACKEND_URING = 1 };

struct weft__uring;

typedef struct weft__poller {
    int epfd;
    int evfd;                 /* wakes a sleeping poller from other threads */
    _Atomic int sleeping;     /* 1 while in (or about to enter) epoll_wait */
    _Atomic int wake_pending; /* coalesces eventfd writes */
    /* Set before weft__poller_init and read-only after: each weft__poller_*
     * call of poller_epoll.c hands a URING poller to poller_uring.c (one
     * predictable branch on the epoll path). */
    int kind;
    struct weft__uring *ring; /* kind URING: poller_uring.c's state */
} weft__poller;

/* 1 when a registration pins the open file (io_uring: a pending poll holds
 * a reference, so close(fd) alone does not close a socket): whoever drops a
 * registration of such a poller unregisters it (by cookie) first. epoll
 * registrations die with the file. */
static inline int weft__poller_pins_files(const weft__poller *p)
{
    return p->kind == WEFT__BACKEND_URING;
}

/* Most records one poll hands back: size the fired array with it. */
#define WEFT__POLL_MAX 256

/* Readiness bits of a fired record. An error or hang-up sets RD and WR too,
 * so a waiter of either direction retries and sees it. */
/* REARM: the kernel ended this registration (an io_uring multishot poll
 * that could not post, or was cancelled by a thread's exit): the table
 * registers the descriptor again if the cookie is still current. */
enum { WEFT__FIRED_RD = 1, WEFT__FIRED_WR = 2, WEFT__FIRED_HUP = 4, WEFT__FIRED_REARM = 8 };

typedef struct weft__fired {
    uint64_t data;   /* the cookie given to weft__poller_register */
    uint32_t events; /* WEFT__FIRED_* */
} weft__fired;

/* Makes the kernel objects of the backend p->kind names. 0 or a negative
 * errno; a URING poller the kernel refuses (-ENOSYS, -EPERM, -EINVAL for a
 * missing feature or opcode) is left for the caller to retry as EPOLL. */
int weft__poller_init(weft__poller *p);
/* Closes the kernel objects. Whoever keeps registrations made through p
 * forgets them first (weft__fd_forget_poller). */
void weft__poller_destroy(weft__poller *p);
/* Waits up to timeout_ms (-1 forever, 0 don't block) and fills fired with
 * at most max_events descriptor events (clamped to 1..WEFT__POLL_MAX; the
 * rest stay queued in the kernel, in order, for the next poll: a worker
 * takes no more than its run queue can hold, so woken tasks never spill to
 * the global queue and wait behind newer ones). Returns the number of
 * records, or a negative errno. */
int weft__poller_poll(weft__poller *p, int timeout_ms, int max_events, weft__fired *fired);
/* For a peer of a stuck worker (the caller serializes polls of p): as
 * weft__poller_poll without blocking, but leaves wake-ups sent to p's owner
 * (weft__poller_wake) for the owner's own next poll. */
int weft__poller_poll_events(weft__poller *p, int max_events, weft__fired *fired);
/* Any thread: makes a sleeping (or next) poll return. Coalesced: many wakes
 * before the poller runs again cost one eventfd write. */
void weft__poller_wake(weft__poller *p);
/* Registers fd for both directions, edge-triggered, with `data` as the
 * cookie its fired records carry (again under a new cookie if it was
 * registered already). 0 or a negative errno. */
int weft__poller_register(weft__poller *p, int fd, uint64_t data);
/* Removes fd, registered under cookie data, from p's interest set (errors
 * ignored: the descriptor may be closed already, which removed it under
 * epoll). io_uring: cancels the poll by cookie, synchronously, so the file
 * is released when this returns (any thread). */
void weft__poller_unregister(weft__poller *p, int fd, uint64_t data);

/* poller_uring.c: the same calls for a poller of kind URING (poller_epoll.c
 * dispatches to them). Where liburing was missing at build time, init
 * returns -ENOSYS. */
int weft__uring_init(weft__poller *p);
void weft__uring_destroy(weft__poller *p);
int weft__uring_poll(weft__poller *p, int timeout_ms, int max_events, weft__fired *fired);
int weft__uring_poll_events(weft__poller *p, int max_events, weft__fired *fired);
void weft__uring_wake(weft__poller *p);
int weft__uring_register(weft__poller *p, int fd, uint64_t data);
void weft__uring_unregister(weft__poller *p, int fd, uint64_t data);

#endif
