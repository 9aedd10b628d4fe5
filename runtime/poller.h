/*
 * The poller layer: descriptor readiness and the place a worker sleeps.
 *
 * Which file knows what (each includes only the one before it):
 *   poller_backend.h, poller_epoll.c   the kernel: register a descriptor with
 *       a cookie, poll into an array of fired records (cookie + rd/wr/hup),
 *       wake a sleeping poll. Knows no descriptor table and no task.
 *   poller.h, poller_fd.c              the descriptor table: per fd, its
 *       generation, poller, readiness and waiters (a task pointer plus a
 *       wait token, opaque here); weft__fd_fired turns fired records into
 *       waiters handed to a callback. Calls the backend to register.
 *   sched.c                            polls the backend, passes the records
 *       to the table, and readies the waiters it is handed, as Go's
 *       findrunnable readies the list netpoll returns.
 * A second backend (io_uring) implements the weft__poller_* calls of
 * poller_backend.h.
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

#include <stdint.h>

#include "poller_backend.h"

struct weft_task;

typedef void (*weft__ready_fn)(struct weft_task *task, uint64_t token, void *ctx);

/* Marks the readiness of n records polled from p (n <= 0: nothing) and hands
 * every waiter made ready to fn, in record order, read before write within
 * a record. Records of a stale generation or of a descriptor now registered
 * with another poller are dropped. */
void weft__fd_fired(weft__poller *p, const weft__fired *fired, int n, weft__ready_fn fn, void *ctx);

/* ------------------------------------------------ descriptor waits */

enum { WEFT__DIR_READ = 0, WEFT__DIR_WRITE = 1 };

/* Registers a wait for one direction of fd by `task` with `token`, using
 * poller p if fd is not registered anywhere yet. Returns 1 if the direction
 * is already ready (consumed; do not sleep), 0 if the waiter was installed
 * (sleep, then call weft__fd_unwait), or -EBADF, -EEXIST (another waiter),
 * -ENOMEM, -EPERM (fd cannot be polled, e.g. a regular file). */
int weft__fd_wait(weft__poller *p, int fd, int dir, struct weft_task *task, uint64_t token,
                  uint32_t *gen_out);
/* Registers fd with poller p now, unless it is registered already (0 then
 * too): its events then arrive at p whichever worker its first waiter runs
 * on. 0, or -EBADF, -ENOMEM, -EPERM (not pollable), fstat's -errno. */
int weft__fd_bind(weft__poller *p, int fd);
/* Ends a wait installed by weft__fd_wait. Returns 1 if the direction fired
 * (readiness consumed), 0 if not (timeout or spurious), -EBADF if the
 * descriptor was closed with weft__fd_close meanwhile. */
int weft__fd_unwait(int fd, int dir, uint32_t gen);
/* Closes fd, handing its waiters to wake (their unwait reports -EBADF).
 * Returns 0 or close()'s negative errno. */
int weft__fd_close(int fd, weft__ready_fn wake, void *ctx);
/* A descriptor number weft has just been handed by the kernel (socket,
 * accept, pipe...): forgets whatever the table remembers of an earlier
 * descriptor with the same number that was closed with plain close().
 * 0 (it allocates nothing). */
int weft__fd_fresh(int fd);
/* As weft__fd_fresh, for a connected stream socket (TCP, Unix stream),
 * where a read that returns less than asked for means the kernel buffer
 * has been drained: see weft__fd_drained. 0, or -ENOMEM when the table
 * could not grow to hold fd: the descriptor then works as one weft did not
 * make (a later wait makes the entry or fails with -ENOMEM), so a caller
 * may go on or give up. */
int weft__fd_fresh_stream(int fd);
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
/* The poller fd is registered with now, or NULL (tests, diagnostics). */
weft__poller *weft__fd_poller_of(int fd);
/* 1 if fd was made by weft (weft__fd_fresh*, hence non-blocking) and not
 * closed or forgotten since. Lock-free hint. */
int weft__fd_owned(int fd);
/* Drops every registration made through p: called before
 * weft__poller_destroy(p), whose kernel objects are going away. */
void weft__fd_forget_poller(weft__poller *p);
/* Frees the descriptor table (at process exit; for leak checkers). */
/* How many descriptors are registered with p (metrics; a walk of the
 * table, each entry under its lock). */
uint64_t weft__fd_count_poller(const weft__poller *p);
void weft__fd_table_free(void);

#endif
