/*
 * The per-worker poller: descriptor readiness and the place a worker sleeps.
 *
 * Layering: the poller knows descriptors, readiness and opaque waiters (a task
 * pointer plus a wait token). It does not run or queue tasks: poll hands every
 * waiter whose descriptor became ready to a callback, as Go's netpoll hands a
 * list to findrunnable, and the scheduler readies them. A second backend
 * (io_uring) implements the same weft__poller_* calls.
 *
 * Descriptor state lives in a process-wide table indexed by fd. Each entry
 * has a generation, bumped by weft__fd_close, and events carry the generation
 * they were registered with, so an event for a closed descriptor whose number
 * was reused is dropped instead of waking the new owner's waiter.
 *
 * Readiness is edge-triggered and remembered per direction (as in Go's
 * pollDesc): an event with no waiter leaves the direction "ready", and the
 * next waiter consumes that instead of sleeping. Callers always try the
 * operation first and wait only on EAGAIN.
 */
#ifndef WEFT_POLLER_H
#define WEFT_POLLER_H

#include <stdatomic.h>
#include <stdint.h>

struct weft_task;

typedef void (*weft__ready_fn)(struct weft_task *task, uint64_t token, void *ctx);

typedef struct weft__poller {
    int epfd;
    int evfd;                 /* wakes a sleeping poller from other threads */
    _Atomic int sleeping;     /* 1 while in (or about to enter) epoll_wait */
    _Atomic int wake_pending; /* coalesces eventfd writes */
} weft__poller;

int weft__poller_init(weft__poller *p);
void weft__poller_destroy(weft__poller *p);
/* Waits up to timeout_ms (-1 forever, 0 don't block) and passes every waiter
 * made ready to fn, taking at most max_events events (the rest stay queued in
 * the kernel, in order, for the next poll: a worker takes no more than its
 * run queue can hold, so woken tasks never spill to the global queue and
 * wait behind newer ones). Returns the number of descriptor events, or a
 * negative errno. */
int weft__poller_poll(weft__poller *p, int timeout_ms, int max_events, weft__ready_fn fn, void *ctx);
/* For a peer of a stuck worker (the caller serializes polls of p): takes
 * up to max_events descriptor events without blocking and passes their
 * waiters to fn, leaving wake-ups sent to p's owner (weft__poller_wake) for
 * the owner's own next poll. Returns the number of descriptor events. */
int weft__poller_poll_events(weft__poller *p, int max_events, weft__ready_fn fn, void *ctx);
/* Any thread: makes a sleeping (or next) poll return. Coalesced: many wakes
 * before the poller runs again cost one eventfd write. */
void weft__poller_wake(weft__poller *p);

/* Between the table and a backend: the backend registers a descriptor for
 * both directions, edge-triggered, with `data` as its event cookie, and
 * reports each event to the table. */
int weft__poller_register(weft__poller *p, int fd, uint64_t data);
/* Removes fd from p's interest set (errors ignored: the descriptor may be
 * closed already, which removed it). */
void weft__poller_unregister(weft__poller *p, int fd);
void weft__fd_ready(weft__poller *p, uint64_t data, int rd, int wr, int hup, weft__ready_fn fn,
                    void *ctx);

/* ------------------------------------------------ descriptor waits */

enum { WEFT__DIR_READ = 0, WEFT__DIR_WRITE = 1 };

/* Registers a wait for one direction of fd by `task` with `token`, using
 * poller p if fd is not registered anywhere yet. Returns 1 if the direction
 * is already ready (consumed; do not sleep), 0 if the waiter was installed
 * (sleep, then call weft__fd_unwait), or -EBADF, -EEXIST (another waiter),
 * -ENOMEM, -EPERM (fd cannot be polled, e.g. a regular file). */
int weft__fd_wait(weft__poller *p, int fd, int dir, struct weft_task *task, uint64_t token,
                  uint32_t *gen_out);
/* Ends a wait installed by weft__fd_wait. Returns 1 if the direction fired
 * (readiness consumed), 0 if not (timeout or spurious), -EBADF if the
 * descriptor was closed with weft__fd_close meanwhile. */
int weft__fd_unwait(int fd, int dir, uint32_t gen);
/* Closes fd, handing its waiters to wake (their unwait reports -EBADF).
 * Returns 0 or close()'s negative errno. */
int weft__fd_close(int fd, weft__ready_fn wake, void *ctx);
/* A descriptor number weft has just been handed by the kernel (socket,
 * accept, pipe...): forgets whatever the table remembers of an earlier
 * descriptor with the same number that was closed with plain close(). */
void weft__fd_fresh(int fd);
/* As weft__fd_fresh, for a connected stream socket (TCP, Unix stream),
 * where a read that returns less than asked for means the kernel buffer
 * has been drained: see weft__fd_drained. */
void weft__fd_fresh_stream(int fd);
/* Readiness events seen so far for one direction of fd (lock-free). A
 * reader takes it before its read() and passes it to weft__fd_drained. */
uint32_t weft__fd_event_seq(int fd, int dir);
/* Stream descriptors only: records that a read just drained the buffer, so
 * the next read can wait for readiness first instead of making a system
 * call that would fail with EAGAIN. seq is weft__fd_event_seq from before
 * that read: if any event arrived since, nothing is recorded (the event may
 * be for data that came after the read, and its edge will not come again).
 * No-op on other descriptors. */
void weft__fd_drained(int fd, int dir, uint32_t seq);
/* 0 when a read on fd is known to find nothing (drained and no event
 * since), 1 when it is worth trying. Lock-free. */
int weft__fd_worth_trying(int fd, int dir);
/* Foreign descriptors. A library may close a descriptor with plain close()
 * and the kernel may hand its number to a new file, while the table still
 * holds the old registration (whose epoll entry died with the old file), so
 * a wait would never be woken. weft__fd_check compares the file fd names now
 * (fstat) with the one registered; on a mismatch it forgets the old
 * registration, hands its waiters to fn, and returns 1 (the next wait
 * registers afresh). 0: nothing to do (not registered, the same file, or,
 * unless `always`, a descriptor weft made itself); -errno from fstat. */
int weft__fd_check(int fd, int always, weft__ready_fn fn, void *ctx);
/* Drops weft's registration of fd without closing it, handing its waiters
 * to fn (their unwait reports -EBADF). Returns 1 if there was one, else 0. */
int weft__fd_forget(int fd, weft__ready_fn fn, void *ctx);
/* 1 if fd was made by weft (weft__fd_fresh*, hence non-blocking) and not
 * closed or forgotten since. Lock-free hint. */
int weft__fd_owned(int fd);
/* Drops every registration made through p (its epoll is going away). */
void weft__fd_forget_poller(weft__poller *p);
/* Frees the descriptor table (at process exit; for leak checkers). */
void weft__fd_table_free(void);

#endif
