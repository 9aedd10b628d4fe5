/*
 * weft — a multithreaded work-stealing runtime of stackful tasks for C.
 *
 * Conventions used by every declaration below:
 *  - Functions returning int return 0 (or a non-negative count) on success and a
 *    negative errno value on failure (-EINVAL, -ETIMEDOUT, ...). weft never asks
 *    the caller to read errno after a weft call: a task may resume on another
 *    thread, where errno is someone else's.
 *  - "Suspends" means the call may park the calling task (never its worker
 *    thread) and resume it later, possibly on a different worker thread. Do not
 *    keep the address of a thread-local variable, or errno, across such a call.
 *  - "Task only" calls fail with -EPERM (or NULL and errno = EPERM) when called
 *    from a thread that is not running a weft task.
 *  - Timeouts are in milliseconds; -1 means no timeout.
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* errno after a task moves: glibc declares __errno_location() `const`, so
 * a compiler may compute errno's address once and reuse it after a call that
 * suspended the task and resumed it on another thread; errno then reads the
 * old thread's value. weft_errno_location() returns the current thread's
 * errno address through a call the compiler cannot fold, and errno is
 * redefined to use it in every file that includes weft.h (define
 * WEFT_NO_ERRNO_OVERRIDE before including it to keep the libc definition). */
WEFT_API int *weft_errno_location(void);
#if !defined(WEFT_NO_ERRNO_OVERRIDE)
#undef errno
#define errno (*weft_errno_location())
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1

typedef void *(*weft_fn)(void *arg);
typedef struct weft_runtime weft_runtime;
typedef struct weft_task weft_task; /* a join handle */

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
typedef int64_t weft_time;

/* ---------------------------------------------------------------- runtime */

typedef struct weft_config {
    /* Worker threads. 0 = the WEFT_WORKERS environment variable if set, else
     * the number of CPUs this process may run on (sched_getaffinity). */
    unsigned workers;
    /* Default stack size of a task in bytes (rounded up to a power of two,
     * at least 16 KiB). 0 = 256 KiB. Address space only: pages cost memory
     * when first touched. */
    size_t stack_size;
} weft_config;

/* Fills cfg with the defaults (all zero = automatic). */
WEFT_API void weft_config_init(weft_config *cfg);

/* Starts a runtime and its worker threads. cfg may be NULL for defaults.
 * Returns NULL and sets errno on failure (EINVAL for a bad config, ENOMEM,
 * EAGAIN when threads cannot be created). */
WEFT_API weft_runtime *weft_runtime_new(const weft_config *cfg);

/* Runs fn(arg) as a task on rt and blocks the calling OS thread until it
 * returns; its return value goes to *result (if result is not NULL).
 * Returns 0, -EINVAL (rt or fn NULL), -EPERM (called from inside a task:
 * that would block a worker), -ENOMEM. */
WEFT_API int weft_runtime_block_on(weft_runtime *rt, weft_fn fn, void *arg, void **result);

/* Stops the workers and frees everything the runtime owns. Tasks still
 * queued or suspended are discarded without running further: their stacks are
 * released and weft_join on their handles (from outside the runtime) reports
 * -ECANCELED. Must not be called from a task of rt. */
WEFT_API void weft_runtime_free(weft_runtime *rt);

/* weft_runtime_new(NULL) + weft_runtime_block_on + weft_runtime_free.
 * Returns what block_on returns, or a negative errno if the runtime could not
 * start. */
WEFT_API int weft_main(weft_fn fn, void *arg, void **result);

/* Number of worker threads of rt. */
WEFT_API unsigned weft_runtime_workers(const weft_runtime *rt);

/* ------------------------------------------------------------------ tasks */

typedef struct weft_spawn_opts {
    const char *name;  /* copied (first 31 bytes); shown in crash reports */
    size_t stack_size; /* 0 = the runtime's default */
} weft_spawn_opts;

/* Spawns fn(arg) as a new task on the calling task's worker (task only).
 * The task may later be stolen by another worker. Returns a join handle that
 * must be passed to weft_join or weft_detach exactly once, or NULL with errno
 * EPERM (not in a task), ENOMEM. Does not suspend. */
WEFT_API weft_task *weft_spawn(weft_fn fn, void *arg);

/* As weft_spawn, with options (opts may be NULL). Also EINVAL for a stack size
 * above 1 GiB. */
WEFT_API weft_task *weft_spawn_ex(weft_fn fn, void *arg, const weft_spawn_opts *opts);

/* Spawns onto rt from any thread, inside or outside the runtime. NULL with
 * errno EINVAL (rt or fn NULL), ENOMEM, ESHUTDOWN (rt is being freed). */
WEFT_API weft_task *weft_spawn_on(weft_runtime *rt, weft_fn fn, void *arg);
WEFT_API weft_task *weft_spawn_on_ex(weft_runtime *rt, weft_fn fn, void *arg,
                                     const weft_spawn_opts *opts);

/* Waits for t to finish, stores its return value in *result (if not NULL;
 * also for a cancelled task that returned, NULL for one that never ran) and
 * releases the handle. From a task it suspends only the caller; from a plain
 * thread it blocks that thread. Returns 0, -EINVAL (t NULL), -EDEADLK (a task
 * joining itself), -ECANCELED (t was cancelled before it finished, or
 * discarded by weft_runtime_free; or the calling task itself was cancelled
 * while waiting, in which case t is detached). The handle is released in
 * every case except -EINVAL/-EDEADLK. */
WEFT_API int weft_join(weft_task *t, void **result);

/* Releases the handle without waiting; the task runs to completion on its own. */
WEFT_API void weft_detach(weft_task *t);

/* Puts the calling task at the back of its worker's queue and runs others.
 * Outside a task it does nothing. Suspends. */
WEFT_API void weft_yield(void);

/* Requests cancellation of t. Cancellation is sticky: every suspending call
 * in t (sleep, fd wait, I/O, join, ...) returns -ECANCELED at its current or
 * next suspension point, t runs its own cleanup and returns, and weft_join on
 * it returns -ECANCELED. A task cancelled before it ever ran does not run.
 * Cancelling a finished task does nothing. Any thread may call it; the handle
 * stays valid (join or detach it as usual). Returns 0 or -EINVAL. Does not
 * suspend. */
WEFT_API int weft_cancel(weft_task *t);
/* 1 if cancellation of the calling task has been requested, else 0. */
WEFT_API int weft_cancelled(void);
/* Holds off cancellation of the calling task (for a cleanup section that
 * must suspend) until the matching weft_shield_end. Nests. 0 or -EPERM. */
WEFT_API int weft_shield_begin(void);
WEFT_API int weft_shield_end(void);

/* Pins the calling task to its current worker thread: it will not be stolen
 * or resumed elsewhere until weft_unpin (for thread-affine C libraries).
 * Pins nest. Returns 0 or -EPERM (not in a task). Does not suspend. */
WEFT_API int weft_pin(void);
WEFT_API int weft_unpin(void);

/* True (1) when called from a running weft task, 0 otherwise. */
WEFT_API int weft_in_task(void);

/* Index of the worker running the calling task (0..workers-1), -EPERM outside
 * a task. The answer is stale after the next suspension. */
WEFT_API int weft_worker_index(void);

/* The runtime of the calling task, NULL outside a task. */
WEFT_API weft_runtime *weft_current_runtime(void);

/* ------------------------------------------------------------------ stats */

typedef struct weft_worker_stats {
    uint64_t tasks_run;     /* times a task was resumed on this worker */
    uint64_t steals;        /* successful steal operations by this worker */
    uint64_t tasks_stolen;  /* tasks this worker took from peers */
    uint64_t parks;         /* times this worker slept in its poller */
    uint64_t global_pulls;  /* tasks taken from the global queue */
    uint64_t overflows;     /* times the local queue spilled half to the global queue */
    uint64_t lifo_capped;   /* times the LIFO slot was bypassed by the fairness cap */
} weft_worker_stats;

/* Copies up to n workers' counters into out; returns the number of workers.
 * Counters are read without stopping the workers, so they are approximate
 * while tasks run. */
WEFT_API unsigned weft_runtime_stats(const weft_runtime *rt, weft_worker_stats *out, unsigned n);

/* ------------------------------------------------------------------ time */

/* Current monotonic time in ns (CLOCK_MONOTONIC through the vDSO, ~30 ns).
 * Timer wheels use their worker's time cached per loop iteration; this call
 * reads the clock so that a task moved to another worker never sees time
 * go backwards. */
WEFT_API weft_time weft_now(void);

/* Suspends the calling task for at least ms milliseconds (1 ms resolution).
 * Outside a task the thread sleeps. Returns 0. */
WEFT_API int weft_sleep_ms(uint64_t ms);

/* Suspends until weft_now() >= deadline. Returns 0. */
WEFT_API int weft_sleep_until(weft_time deadline);

/* -------------------------------------------------------------------- I/O */

#define WEFT_READ 1
#define WEFT_WRITE 2

/* Suspends the calling task until fd is readable (WEFT_READ), writable
 * (WEFT_WRITE) or in error, or until timeout_ms passes (-1 = none). Returns
 * the ready subset of events (an error or hang-up reports all requested
 * events as ready, so the next read/write sees the error), or -ETIMEDOUT,
 * -EBADF (fd not open, or closed with weft_close while waiting), -EINVAL
 * (bad events), -EEXIST (another task already waits for the same direction
 * on fd). Outside a task it blocks the thread in poll(). Suspends. */
WEFT_API int weft_wait_fd(int fd, int events, int64_t timeout_ms);

/* Closes fd. Tasks waiting on it (weft_wait_fd or any weft I/O call) wake
 * with -EBADF. Close descriptors that tasks wait on with this, not close():
 * weft remembers their registration. Returns 0 or -errno. Does not suspend. */
WEFT_API int weft_close(int fd);

/* ------------------------------------------------------------- networking
 * Every descriptor weft creates is non-blocking and close-on-exec. Calls
 * that wait take timeout_ms (-1 = none) and return -ETIMEDOUT when it passes.
 * Host strings are numeric IPv4 or IPv6 addresses ("127.0.0.1", "::1");
 * NULL or "" means the loopback address for connect and listen.
 * Writing to a peer that has gone away returns -EPIPE (never SIGPIPE). */

#define WEFT_REUSEPORT 1 /* weft_tcp_listen_ex flag: SO_REUSEPORT */

/* Listening TCP socket (SO_REUSEADDR). Returns the fd or -errno. No suspend. */
WEFT_API int weft_tcp_listen(const char *host, uint16_t port, int backlog);
WEFT_API int weft_tcp_listen_ex(const char *host, uint16_t port, int backlog, int flags);
/* Accepts one connection (addr_out may be NULL). Returns the new fd or -errno.
 * Under descriptor exhaustion (EMFILE/ENFILE) it backs off and retries rather
 * than spinning. Suspends. */
WEFT_API int weft_tcp_accept(int lfd, struct sockaddr_storage *addr_out);
WEFT_API int weft_tcp_accept_timeout(int lfd, struct sockaddr_storage *addr_out, int64_t timeout_ms);
/* Connects to host:port (TCP_NODELAY set). Returns the fd or -errno
 * (-ECONNREFUSED, -ETIMEDOUT, -EINVAL for a malformed address). Suspends. */
WEFT_API int weft_tcp_connect(const char *host, uint16_t port, int64_t timeout_ms);
/* Port a bound socket listens on (host order), or -errno. */
WEFT_API int weft_socket_port(int fd);

/* Reads up to n bytes: returns the count (0 at end of stream) or -errno.
 * Suspends until some data is there. */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t n, int64_t timeout_ms);
/* Writes all n bytes or fails: returns n or -errno (bytes may have been
 * partly written on failure). Suspends. */
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t n, int64_t timeout_ms);
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
/* shutdown(2): SHUT_RD, SHUT_WR, SHUT_RDWR. 0 or -errno. No suspend. */
WEFT_API int weft_shutdown(int fd, int how);

/* UDP socket bound to host:port (port 0 = any). fd or -errno. */
WEFT_API int weft_udp_bind(const char *host, uint16_t port);
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t n, const struct sockaddr *to,
                             socklen_t tolen, int64_t timeout_ms);
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t n, struct sockaddr_storage *from,
                               socklen_t *fromlen, int64_t timeout_ms);

/* Unix stream sockets. listen unlinks nothing: remove a stale path first. */
WEFT_API int weft_unix_listen(const char *path, int backlog);
WEFT_API int weft_unix_accept(int lfd, int64_t timeout_ms);
WEFT_API int weft_unix_connect(const char *path, int64_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
