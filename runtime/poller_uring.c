/*
 * io_uring backend of the poller (see poller_backend.h): one ring per worker,
 * readiness through multishot poll requests, the worker parking in one
 * io_uring_enter that submits what is queued and waits for completions.
 * Sockets are not (yet) operations on the ring: a descriptor's readiness is
 * all the ring reports, exactly as epoll does, so the layers above cannot
 * tell the two apart.
 *
 * Readiness semantics. An IORING_OP_POLL_ADD with IORING_POLL_ADD_MULTI
 * checks the file's mask when armed (posting a completion at once if it is
 * ready, as EPOLL_CTL_ADD reports the current state) and then posts one
 * completion per wake-up of the file's wait queue whose mask matches: new
 * data, new room, a hang-up. That is what an EPOLLET registration gives
 * (one event per edge, not one per poll while the state lasts), so the
 * descriptor table's remembered readiness works unchanged. The kernel ends
 * a multishot poll (a completion without IORING_CQE_F_MORE) when it cannot
 * post (completion queue overflowing), or with -ECANCELED when the thread
 * that submitted it exits; the record then carries WEFT__FIRED_REARM and the
 * table registers the descriptor again if it is still current.
 *
 * Who touches the ring:
 *  - the completion queue: only the holder of the worker's poll lock
 *    (rescue.c: the owner in weft__poller_poll, or a peer rescuing a stuck
 *    owner in weft__poller_poll_events), so one consumer at a time;
 *  - the submission queue: any thread (registrations happen on whichever
 *    worker a task runs, a rearm on whoever reaps). Every change of the
 *    user-space SQ state (io_uring_get_sqe, the prep, publishing the tail)
 *    is made under sq_lock; io_uring_enter itself is called outside it, so a
 *    worker parked in the ring never holds it. The kernel takes what is
 *    published, under its own lock, whoever enters. So no SINGLE_ISSUER or
 *    DEFER_TASKRUN: submissions do come from other threads.
 *  - completion work: a poll's wake-up runs as task work on the thread that
 *    submitted it. COOP_TASKRUN (where the kernel has it) spares that
 *    thread an interrupt (an IPI, costly in a VM: CPU per echo request
 *    halved on this machine) when it is running: the work then runs at its
 *    next kernel entry, system call or timer tick, and a parked thread is
 *    still woken for it. TASKRUN_FLAG says when work is pending, so a poll
 *    that would read the CQ in memory enters the kernel to run it.
 *  - cancellation: IORING_REGISTER_SYNC_CANCEL by cookie (kernel 6.0), a
 *    register call that uses no SQE, so any thread may make it, repeated
 *    until the poll is gone (see weft__uring_unregister).
 * The owner's registrations stay in the SQ until its next poll (one enter
 * submits them and reaps); another thread's are submitted at once, as the
 * owner may be parked.
 *
 * A pending poll holds a reference to the file: close(fd) alone leaves a
 * socket open. The table (poller_fd.c) therefore cancels a registration
 * before it forgets it (weft_close, a foreign close noticed by a fresh
 * descriptor or weft__fd_check), and keeps a foreign descriptor registered
 * only while a task waits on it, so a library's plain close() after its
 * wait leaves nothing behind.
 *
 * Wake-ups: an eventfd with its own multishot poll, coalesced by
 * wake_pending as in poller_epoll.c. A peer's poll_events may reap the
 * eventfd's completion; it then leaves the eventfd unread and sets
 * wake_stolen, which the owner's next poll takes as its wake-up (the owner
 * is not parked then: the peer holds its poll lock).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "poller_backend.h"

#include <errno.h>

#ifndef WEFT_HAVE_URING

int weft__uring_init(weft__poller *p)
{
    (void)p;
    return -ENOSYS; /* built without liburing: the caller falls back to epoll */
}
void weft__uring_destroy(weft__poller *p) { (void)p; }
int weft__uring_poll(weft__poller *p, int timeout_ms, int max_events, weft__fired *fired)
{
    (void)p, (void)timeout_ms, (void)max_events, (void)fired;
    return -ENOSYS;
}
int weft__uring_poll_events(weft__poller *p, int max_events, weft__fired *fired)
{
    (void)p, (void)max_events, (void)fired;
    return -ENOSYS;
}
void weft__uring_wake(weft__poller *p) { (void)p; }
int weft__uring_register(weft__poller *p, int fd, uint64_t data)
{
    (void)p, (void)fd, (void)data;
    return -ENOSYS;
}
void weft__uring_unregister(weft__poller *p, int fd, uint64_t data) { (void)p, (void)fd, (void)data; }

#else

#include "alloc.h"
#include "weft_assert.h"

#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Cookies are generation << 32 | fd with fd < 2^26 (poller_fd.c), so these
 * never collide with one. */
#define EVFD_DATA UINT64_MAX

/* The SQ only carries registrations between two polls (and rearms); a full
 * one is submitted on the spot. The CQ is larger: every registered socket
 * may post between two polls (an overflow ends multishot polls, which are
 * rearmed, so it costs time, not events). */
#define SQ_ENTRIES 128
#define CQ_ENTRIES 1024

#define POLL_MASK (POLLIN | POLLOUT | POLLRDHUP | POLLPRI)

struct weft__uring {
    struct io_uring ring;
    pthread_mutex_t sq_lock;   /* user-space SQ state: get_sqe, prep, tail */
    pthread_t owner;           /* the thread that polls (set by its first poll) */
    _Atomic int owner_known;
    _Atomic int wake_stolen;   /* a peer reaped the owner's wake-up */
    int evfd_rearm;            /* the eventfd's poll ended: arm it again (poll lock) */
};

/* Under sq_lock. A full SQ is submitted first (the kernel copies the SQEs
 * at submission, so the slots are free when io_uring_submit returns). */
static struct io_uring_sqe *sqe_locked(struct weft__uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        (void)io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* Under sq_lock: makes the queued SQEs visible to the kernel (what
 * liburing's submit does before it enters) and returns how many are
 * waiting. The release store orders the SQE contents, written perhaps by
 * another thread under this lock, before the tail the kernel reads. */
static unsigned publish_locked(struct weft__uring *u)
{
    struct io_uring_sq *sq = &u->ring.sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - io_uring_smp_load_acquire(sq->khead);
}

static int arm_locked(struct weft__uring *u, int fd, unsigned mask, uint64_t data)
{
    struct io_uring_sqe *sqe = sqe_locked(u);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

static int is_owner(struct weft__uring *u)
{
    return atomic_load_explicit(&u->owner_known, memory_order_acquire) &&
           pthread_equal(u->owner, pthread_self());
}

/* The opcodes and features this backend needs, or -EINVAL (the caller falls
 * back to epoll): multishot poll, EXT_ARG timeouts, and the synchronous
 * cancel (6.0; the newest of the three). */
static int probe(struct weft__uring *u, const struct io_uring_params *params)
{
    if (!(params->features & IORING_FEAT_EXT_ARG) || !(params->features & IORING_FEAT_NODROP))
        return -EINVAL;
    struct io_uring_probe *pr = io_uring_get_probe_ring(&u->ring);
    if (!pr)
        return -EINVAL;
    int ok = io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) &&
             io_uring_opcode_supported(pr, IORING_OP_POLL_REMOVE) &&
             io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL);
    io_uring_free_probe(pr);
    if (!ok)
        return -EINVAL;
    struct io_uring_sync_cancel_reg reg = {.addr = EVFD_DATA - 1};
    reg.timeout.tv_sec = -1;
    reg.timeout.tv_nsec = -1;
    int rc = io_uring_register_sync_cancel(&u->ring, &reg);
    return rc == -ENOENT ? 0 : -EINVAL; /* nothing to cancel: the call exists */
}

int weft__uring_init(weft__poller *p)
{
    p->epfd = -1;
    p->ring = NULL;
    struct weft__uring *u = weft__calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_COOP_TASKRUN |
                   IORING_SETUP_TASKRUN_FLAG;
    params.cq_entries = CQ_ENTRIES;
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &params);
    if (rc == -EINVAL) { /* before 5.19: no cooperative task running */
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        params.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &params);
    }
    if (rc < 0) { /* -ENOSYS, -EPERM (sysctl, seccomp), -ENOMEM */
        weft__free(u);
        return rc;
    }
    rc = probe(u, &params);
    if (rc == 0) {
        p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        rc = p->evfd < 0 ? -errno : 0;
    }
    if (rc < 0) {
        io_uring_queue_exit(&u->ring);
        weft__free(u);
        return rc;
    }
    pthread_mutex_init(&u->sq_lock, NULL);
    atomic_init(&u->owner_known, 0);
    atomic_init(&u->wake_stolen, 0);
    /* Queued, not submitted: the owner's first poll submits it, so the
     * request belongs to the worker thread (a request dies with the thread
     * that submitted it, and this one is the runtime's creator). */
    (void)arm_locked(u, p->evfd, POLLIN, EVFD_DATA);
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->wake_pending, 0);
    p->ring = u;
    return 0;
}

void weft__uring_destroy(weft__poller *p)
{
    struct weft__uring *u = p->ring;
    if (!u)
        return;
    io_uring_queue_exit(&u->ring); /* cancels the polls, dropping their files */
    pthread_mutex_destroy(&u->sq_lock);
    weft__free(u);
    close(p->evfd);
    p->evfd = -1;
    p->ring = NULL;
}

int weft__uring_register(weft__poller *p, int fd, uint64_t data)
{
    struct weft__uring *u = p->ring;
    pthread_mutex_lock(&u->sq_lock);
    int rc = arm_locked(u, fd, POLL_MASK, data);
    /* Another thread's registration cannot wait for the owner's next
     * enter: the owner may be parked in it. */
    if (rc == 0 && !is_owner(u)) {
        (void)publish_locked(u);
        rc = io_uring_submit(&u->ring);
        rc = rc < 0 ? rc : 0;
    }
    pthread_mutex_unlock(&u->sq_lock);
    return rc;
}

void weft__uring_unregister(weft__poller *p, int fd, uint64_t data)
{
    (void)fd;
    struct weft__uring *u = p->ring;
    /* A poll still in the SQ would be armed after the cancel, on whatever
     * file fd names by then: submit it first, so the cancel finds it. */
    pthread_mutex_lock(&u->sq_lock);
    if (io_uring_sq_ready(&u->ring))
        (void)io_uring_submit(&u->ring);
    pthread_mutex_unlock(&u->sq_lock);
    struct io_uring_sync_cancel_reg reg = {.addr = data, .flags = IORING_ASYNC_CANCEL_ALL};
    reg.timeout.tv_sec = -1;
    reg.timeout.tv_nsec = -1;
    /* The cancel only kicks the poll: it completes, and drops its file, in
     * task work run by the thread that submitted it (at once when that is
     * this thread, at that thread's next kernel entry otherwise, which the
     * kernel forces with a notification). Until then the request is still
     * found, and each call counts it again: repeat until it is gone (-ENOENT),
     * so that the close(fd) after this is, in practice, the last reference
     * and closes the socket synchronously, as under epoll. Not strictly:
     * when another thread submitted the poll, its task work unhashes the
     * request a moment before it frees it (the end of that task-work batch),
     * and a close() in between leaves the final release to that thread,
     * microseconds later. A registration made and cancelled by the same
     * worker, the common case, has no such window. */
    for (int tries = 0; io_uring_register_sync_cancel(&u->ring, &reg) > 0; tries++)
        if (tries)
            sched_yield();
}

void weft__uring_wake(weft__poller *p)
{
    if (atomic_exchange_explicit(&p->wake_pending, 1, memory_order_acq_rel))
        return; /* a wake is already on its way */
    uint64_t one = 1;
    ssize_t r = write(p->evfd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is non-zero already, a completion is due */
}

/* The owner consumes a wake-up: reads the eventfd, then clears
 * wake_pending, so a wake that lands after the clear writes it again. */
static void take_wake(weft__poller *p)
{
    uint64_t v;
    ssize_t r = read(p->evfd, &v, sizeof v);
    (void)r;
    atomic_store_explicit(&p->wake_pending, 0, memory_order_release);
}

/* Poll lock held. Moves up to max completions into fired; wake-ups are
 * consumed (or, for a peer, left as wake_stolen) and not counted. Returns
 * the number of records; *woke is set when a wake-up was consumed. */
static int reap(weft__poller *p, int max, int skip_wakes, weft__fired *fired, int *woke)
{
    struct weft__uring *u = p->ring;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int count = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        if (count == max)
            break; /* the rest stay in the CQ, in order */
        seen++;
        uint64_t data = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        if (data == EVFD_DATA) {
            if (!more)
                u->evfd_rearm = 1;
            if (skip_wakes) {
                atomic_store_explicit(&u->wake_stolen, 1, memory_order_release);
            } else {
                take_wake(p);
                *woke = 1;
            }
            continue;
        }
        uint32_t bits = 0;
        if (res < 0) {
            /* -ECANCELED: cancelled by the table (whose generation moved
             * on, so the record is dropped there) or by the exit of the
             * submitting thread (the record rearms). Any other error: the
             * waiters retry and meet it. */
            bits = WEFT__FIRED_RD | WEFT__FIRED_WR;
            if (res != -ECANCELED)
                bits |= WEFT__FIRED_HUP;
        } else {
            unsigned e = (unsigned)res;
            if (e & (POLLERR | POLLHUP))
                bits = WEFT__FIRED_RD | WEFT__FIRED_WR | WEFT__FIRED_HUP;
            if (e & (POLLIN | POLLRDHUP | POLLPRI))
                bits |= WEFT__FIRED_RD;
            if (e & POLLOUT)
                bits |= WEFT__FIRED_WR;
            if (e & POLLRDHUP)
                bits |= WEFT__FIRED_HUP;
        }
        if (!more && (res >= 0 || res == -ECANCELED))
            bits |= WEFT__FIRED_REARM;
        fired[count].data = data;
        fired[count].events = bits;
        count++;
    }
    io_uring_cq_advance(&u->ring, seen);
    return count;
}

/* Poll lock held. One io_uring_enter at most: it submits what is queued and
 * waits (timeout_ms > 0 or -1, and nothing reaped yet) or just flushes
 * completions that overflowed. Nothing queued, nothing to wait for: no
 * system call at all, the CQ is read in memory. */
static int poll_ring(weft__poller *p, int timeout_ms, int max_events, int skip_wakes,
                     weft__fired *fired)
{
    struct weft__uring *u = p->ring;
    if (max_events > WEFT__POLL_MAX)
        max_events = WEFT__POLL_MAX;
    if (max_events < 1)
        max_events = 1;
    int woke = 0;
    if (!skip_wakes && atomic_exchange_explicit(&u->wake_stolen, 0, memory_order_acq_rel)) {
        take_wake(p);
        woke = 1;
    }
    pthread_mutex_lock(&u->sq_lock);
    if (u->evfd_rearm && arm_locked(u, p->evfd, POLLIN, EVFD_DATA) == 0)
        u->evfd_rearm = 0;
    unsigned queued = publish_locked(u);
    pthread_mutex_unlock(&u->sq_lock);
    int wait = timeout_ms != 0 && !woke && !io_uring_cq_ready(&u->ring);
    if (queued || wait || io_uring_cq_has_overflow(&u->ring) ||
        (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN)) { /* completions not posted yet */
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg = {0};
        if (wait && timeout_ms > 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
            arg.ts = (uint64_t)(uintptr_t)&ts;
        }
        int rc = io_uring_enter2((unsigned)u->ring.ring_fd, queued, wait ? 1 : 0,
                                 IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                                 (sigset_t *)&arg, sizeof arg);
        /* -ETIME: the timeout; -EINTR: a signal; -EBUSY/-EAGAIN: the
         * kernel is short of room for completions and wants them reaped. */
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
            return rc;
    }
    return reap(p, max_events, skip_wakes, fired, &woke);
}

int weft__uring_poll(weft__poller *p, int timeout_ms, int max_events, weft__fired *fired)
{
    struct weft__uring *u = p->ring;
    if (weft__unlikely(!atomic_load_explicit(&u->owner_known, memory_order_relaxed))) {
        u->owner = pthread_self();
        atomic_store_explicit(&u->owner_known, 1, memory_order_release);
    }
    WEFT__ASSERT(pthread_equal(u->owner, pthread_self())); /* one owner per poller */
    return poll_ring(p, timeout_ms, max_events, 0, fired);
}

int weft__uring_poll_events(weft__poller *p, int max_events, weft__fired *fired)
{
    return poll_ring(p, 0, max_events, 1, fired);
}

#endif
