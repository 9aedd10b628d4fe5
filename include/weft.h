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
 *  - Constructors have the form int weft_x_create(..., weft_x **out): 0 with
 *    *out set, or a negative errno with *out NULL. The older constructors
 *    that return the object (weft_runtime_new, weft_spawn, weft_mutex_new,
 *    ...) are shorthand for them: the object, or NULL on failure, and the
 *    _create form reports why. errno is never part of weft's contract (the
 *    shorthand calls may leave any value in it).
 *  - "Task only" calls fail with -EPERM (NULL for the shorthand ones) when
 *    called from a thread that is not running a weft task.
 *  - Memory: weft makes jemalloc the process's allocator. Linking weft links
 *    jemalloc, whose malloc/free/realloc/posix_memalign replace the C
 *    library's for the whole program and every library it loads, not only
 *    for weft (README, "Memory: jemalloc"). Do not combine it with another
 *    malloc replacement. Builds under ASan, TSan and valgrind use the tool's
 *    allocator instead.
 *  - Timeouts are in milliseconds (timeout_ms). -1 means no timeout; 0 means
 *    "now": the call does not suspend. Any other negative value means the time
 *    has already passed, exactly as 0: the call completes if it can at once,
 *    else returns -ETIMEDOUT without suspending (so a timeout computed from a
 *    deadline that has gone by never turns into "wait forever"). Values above
 *    2^40 ms (about 35 years) count as no timeout.
 *  - Deadline scopes (weft_deadline_push, below) bound every suspending call
 *    of the task inside them, those without a timeout_ms included: once the
 *    innermost scope's deadline has passed, a call that would suspend returns
 *    -ETIMEDOUT instead; a call that can complete at once still does.
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
 * WEFT_NO_ERRNO_OVERRIDE before including it to keep the libc definition).
 * weft's own calls never need it (they return their errors); it is for task
 * code that reads errno after a libc call, which may run on another thread
 * than the code before the last suspension. */
WEFT_API int *weft_errno_location(void);
#if !defined(WEFT_NO_ERRNO_OVERRIDE)
#undef errno
#define errno (*weft_errno_location())
#endif

/* The one place the version is written: the Makefile reads these three for
 * the pkg-config file (Version: MAJOR.MINOR.PATCH) and the soname
 * (libweft.so.MAJOR). */
#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
/* The same as one number, MAJOR * 10000 + MINOR * 100 + PATCH, for #if. */
#define WEFT_VERSION_NUMBER (WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH)
#define WEFT__VSTR2(x) #x
#define WEFT__VSTR(x) WEFT__VSTR2(x)
/* ... and as a string, "MAJOR.MINOR.PATCH". */
#define WEFT_VERSION_STRING                                                                        \
    WEFT__VSTR(WEFT_VERSION_MAJOR) "." WEFT__VSTR(WEFT_VERSION_MINOR) "." WEFT__VSTR(WEFT_VERSION_PATCH)

/* The version of the weft library the program runs with, which may be newer
 * than the header it was compiled with (README, "Versions and ABI": the
 * soname libweft.so.MAJOR changes when the ABI does, so a program runs only
 * with a library of its own major version). weft_version returns it as
 * "MAJOR.MINOR.PATCH" (a static string), weft_version_number as
 * WEFT_VERSION_NUMBER does. Any thread; never fails. */
WEFT_API const char *weft_version(void);
WEFT_API unsigned weft_version_number(void);

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
    /* The kernel interface workers wait on descriptors with: WEFT_BACKEND_*.
     * 0 (AUTO) = the WEFT_BACKEND environment variable ("epoll" or
     * "uring") if set, else epoll. io_uring where the kernel refuses it
     * (no io_uring, EPERM from kernel.io_uring_disabled or seccomp, an
     * operation missing) falls back to epoll without an error; see
     * weft_runtime_backend. */
    int backend;
} weft_config;

/* Values of weft_config.backend and of weft_runtime_backend. */
enum { WEFT_BACKEND_AUTO = 0, WEFT_BACKEND_EPOLL = 1, WEFT_BACKEND_URING = 2 };

/* Fills cfg with the defaults (all zero = automatic). */
WEFT_API void weft_config_init(weft_config *cfg);

/* Starts a runtime and its worker threads. cfg may be NULL for defaults.
 * create: 0 with *out set, or -EINVAL (out NULL, a bad config), -ENOMEM,
 * -EAGAIN (threads cannot be created), *out NULL then. new: shorthand, the
 * runtime or NULL on failure. Do not suspend. */
WEFT_API int weft_runtime_create(const weft_config *cfg, weft_runtime **out);
WEFT_API weft_runtime *weft_runtime_new(const weft_config *cfg);

/* Runs fn(arg) as a task on rt and blocks the calling OS thread until it
 * returns; its return value goes to *result (if result is not NULL).
 * Returns 0, -EINVAL (rt or fn NULL), -EPERM (called from inside a task:
 * that would block a worker), -ENOMEM. */
WEFT_API int weft_runtime_block_on(weft_runtime *rt, weft_fn fn, void *arg, void **result);

/* Stops the workers and frees everything the runtime owns. Tasks still
 * queued or suspended are discarded without running further: their stacks are
 * released and weft_join on their handles (from outside the runtime) reports
 * -ECANCELED. Must not be called from a task of rt: that would wait for its
 * own worker forever, so it writes "weft_runtime_free called from a task of
 * that runtime" to stderr and aborts. NULL is a no-op. It allocates
 * nothing, so it cannot fail for want of memory. */
WEFT_API void weft_runtime_free(weft_runtime *rt);

/* weft_runtime_create(NULL, ...) + weft_runtime_block_on + weft_runtime_free.
 * Returns what block_on returns, or a negative errno if the runtime could not
 * start. */
WEFT_API int weft_main(weft_fn fn, void *arg, void **result);

/* Number of worker threads of rt; 0 for NULL (a runtime always has at
 * least one, so 0 means no runtime). */
WEFT_API unsigned weft_runtime_workers(const weft_runtime *rt);

/* The poller backend rt's workers use: WEFT_BACKEND_EPOLL or
 * WEFT_BACKEND_URING (only when every worker got a ring), -EINVAL for NULL.
 * Does not suspend. */
WEFT_API int weft_runtime_backend(const weft_runtime *rt);

/* ------------------------------------------------------------------ tasks */

typedef struct weft_spawn_opts {
    const char *name;  /* copied (first 31 bytes); shown in crash reports */
    size_t stack_size; /* 0 = the runtime's default */
} weft_spawn_opts;

/* Spawns fn(arg) as a new task: every spawn in one call.
 * rt: the runtime to run it on; NULL = the calling task's runtime (then the
 * call is task only). From a task of rt the new task starts on the caller's
 * worker (and may later be stolen by another); from any other thread it
 * goes to rt's queues. opts may be NULL (defaults).
 * out: where the join handle goes, which must then be passed to weft_join
 * or weft_detach exactly once; out NULL spawns the task detached (it runs
 * to completion on its own, nothing to release).
 * Returns 0 (*out set), or -EPERM (rt NULL outside a task), -EINVAL (fn
 * NULL; a stack size above 1 GiB), -ENOMEM, -ESHUTDOWN (rt is being
 * freed), with *out NULL. Does not suspend. The task's stack is taken when
 * it first runs, not here: without one it never runs, and weft_join says
 * -ENOMEM. */
WEFT_API int weft_task_spawn(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts,
                             weft_task **out);

/* Detached spawns in one call (fire and forget): weft_go from a task, onto
 * its runtime; weft_go_on onto rt from any thread (a task or a plain
 * thread). Same as weft_task_spawn(NULL or rt, fn, arg, NULL, NULL), and the
 * same returns. Do not suspend. */
WEFT_API int weft_go(weft_fn fn, void *arg);
WEFT_API int weft_go_on(weft_runtime *rt, weft_fn fn, void *arg);

/* Shorthand spawns that return the join handle, or NULL on failure
 * (weft_task_spawn reports why):
 * weft_spawn(fn, arg)            = weft_task_spawn(NULL, fn, arg, NULL, &t), task only;
 * weft_spawn_ex(fn, arg, opts)   = weft_task_spawn(NULL, fn, arg, opts, &t);
 * weft_spawn_on(rt, fn, arg)     = weft_task_spawn(rt, fn, arg, NULL, &t), any thread;
 * weft_spawn_on_ex(rt, fn, arg, opts) = weft_task_spawn(rt, fn, arg, opts, &t).
 * Do not suspend. */
WEFT_API weft_task *weft_spawn(weft_fn fn, void *arg);
WEFT_API weft_task *weft_spawn_ex(weft_fn fn, void *arg, const weft_spawn_opts *opts);
WEFT_API weft_task *weft_spawn_on(weft_runtime *rt, weft_fn fn, void *arg);
WEFT_API weft_task *weft_spawn_on_ex(weft_runtime *rt, weft_fn fn, void *arg,
                                     const weft_spawn_opts *opts);

/* Waits for t to finish, stores its return value in *result (if not NULL;
 * also for a cancelled task that returned, NULL for one that never ran) and
 * releases the handle. From a task it suspends only the caller; from a plain
 * thread it blocks that thread. Returns 0, -EINVAL (t NULL), -EDEADLK (a task
 * joining itself), -ECANCELED (t was cancelled before it finished, or
 * discarded by weft_runtime_free; or the calling task itself was cancelled
 * while waiting, in which case t is detached), -ENOMEM (t never ran: a task
 * takes its stack when it first runs, and none could be had; weft prints a
 * line to stderr then. A detached task that gets no stack is dropped with
 * that line and nothing else). The handle is released in every case except
 * -EINVAL/-EDEADLK.
 * A released handle (passed to weft_join or weft_detach before, or released
 * by weft_join_timeout/_all/_any) is misuse, detected by every call that
 * takes a handle (weft_join, weft_join_timeout, weft_join_all,
 * weft_join_any, weft_detach, weft_cancel): it prints "weft: CALL: stale
 * join handle ..." and aborts, also when the task's control block has been
 * reused by another task since (a handle carries its block's generation;
 * it is never taken for the newer task). Not detected: a handle used after
 * weft_runtime_free released it, or one whose block was released exactly a
 * multiple of 2^22 times since. */
WEFT_API int weft_join(weft_task *t, void **result);

/* Releases the handle without waiting; the task runs to completion on its
 * own. NULL does nothing; a released handle aborts (see weft_join). */
WEFT_API void weft_detach(weft_task *t);

/* Puts the calling task at the back of its worker's queue and runs others.
 * Outside a task it does nothing. Suspends. */
WEFT_API void weft_yield(void);

/* Requests cancellation of t. Cancellation is sticky: every suspending call
 * in t (sleep, fd wait, I/O, join, ...) returns -ECANCELED at its current or
 * next suspension point, t runs its own cleanup and returns, and weft_join on
 * it returns -ECANCELED. A task cancelled before it ever ran does not run.
 * Cancelling a finished task does nothing. Any thread may call it; the handle
 * stays valid (join or detach it as usual). Returns 0 or -EINVAL (t NULL);
 * a released handle aborts (see weft_join). Does not suspend. */
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
    uint64_t timers_rescued; /* timers this worker fired for a peer stuck in a long task */
    uint64_t events_rescued; /* descriptor events it took from such a peer's poller */
} weft_worker_stats;

/* Copies up to n workers' counters into out; returns the number of workers.
 * Counters are read without stopping the workers, so they are approximate
 * while tasks run. */
WEFT_API unsigned weft_runtime_stats(const weft_runtime *rt, weft_worker_stats *out, unsigned n);

/* Tasks of rt spawned and not finished yet (running, queued or waiting),
 * blocking and compute jobs included; 0 for NULL. A snapshot, counted by
 * walking rt's control blocks under a lock (microseconds per 10,000 tasks):
 * for monitoring (make soak-net samples it every second), not for a hot
 * path. Any thread. Does not suspend. */
WEFT_API size_t weft_runtime_live_tasks(const weft_runtime *rt);

/* ---------------------------------------------------------- observability */

/* Writes every live task of rt to out: id, name, function, state (queued;
 * running on worker N; waiting on fd N to read/write, sleeping until T,
 * joining task M, on a channel, mutex, condition, semaphore, event, wait
 * group, group, signal, or a blocking job), how long it has been in that
 * wait, the worker it last ran on, its spawn site, and, for a suspended
 * (parked) task, a symbolized backtrace of its stack, walked by libunwind
 * from the registers the switch saved (no frame pointers needed; loaded
 * with dlopen when a dump first needs it: without libunwind the dump says
 * so and has no backtraces). Names come from dladdr: link the program with
 * -rdynamic to see its own functions' names (else module+offset, for
 * addr2line). The workers keep running: each parked task is held off the
 * run path only while its stack is walked (a wake in that moment is
 * delivered right after). Queued and running tasks are listed without a
 * name or backtrace. From any thread, a task of rt included; does not
 * suspend (it may block briefly on the runtime's control-block lock).
 * Returns the number of tasks listed, or -EINVAL (rt or out NULL). Not from
 * a signal handler (see weft_runtime_dump_on_signal). */
WEFT_API int weft_runtime_dump(weft_runtime *rt, FILE *out);

/* Makes SIGQUIT write weft_runtime_dump(rt, stderr) (on a helper thread,
 * not in the handler), as Go does; WEFT_DUMP_SIGNAL=1 in the environment
 * turns it on at weft_runtime_new. on = 0 turns it off for rt. Installs a
 * SIGQUIT handler the first time (replacing the default, which would kill
 * the process with a core). Returns 0, -EINVAL (rt NULL), or -errno when
 * the helper thread cannot start. Does not suspend. */
WEFT_API int weft_runtime_dump_on_signal(weft_runtime *rt, int on);

/* Debug mode: slice_ms > 0 turns it on with that long-slice threshold
 * (WEFT_DEBUG=1 in the environment turns it on at weft_runtime_new with
 * 100 ms; WEFT_DEBUG=N for N ms). In debug mode weft writes to stderr,
 * once per episode, when a task runs longer than the threshold without
 * suspending (task, function, spawn site, time; found by the idle or
 * passing worker that already rescues stuck peers, or, for a runtime of a
 * single worker, by a watchdog thread that debug mode starts once per
 * process and that checks every 20 ms), and, at weft_runtime_free, each
 * handle never joined nor
 * detached. 0 turns it off. Returns 0 or -EINVAL. Does not suspend. */
WEFT_API int weft_runtime_set_debug(weft_runtime *rt, unsigned slice_ms);

#define WEFT_HIST_BUCKETS 32
typedef struct weft_worker_metrics {
    weft_worker_stats stats; /* the counters of weft_runtime_stats */
    uint64_t busy_ns;        /* time since start not spent asleep in the poller */
    uint64_t parked_ns;      /* time asleep in the poller */
    uint64_t polls;          /* descriptor polls (epoll_wait) by this worker */
    uint64_t forced_yields;  /* yields forced by the cooperative budget */
    uint64_t spawned;        /* tasks spawned from tasks on this worker */
} weft_worker_metrics;

typedef struct weft_metrics {
    unsigned workers;
    uint64_t live_tasks;     /* spawned and not finished (blocking jobs included) */
    uint64_t tasks_spawned;  /* ever, blocking and compute jobs included */
    unsigned blocking_threads, blocking_idle; /* blocking pool: threads, of which idle */
    uint64_t blocking_queued;                 /* jobs waiting for a thread */
    unsigned compute_threads, compute_idle;
    uint64_t compute_queued;
    uint64_t timers_pending; /* armed timers on all workers' wheels */
    uint64_t descriptors;    /* descriptors registered with the workers' pollers */
    uint64_t uptime_ns;
    /* Log-scale histograms: bucket i counts durations in [2^i, 2^(i+1)) ns
     * (bucket 0 also below 1 ns, the last also above). Sampled, so that no
     * clock is read on an ordinary switch: about one slice in
     * slice_sample_every runs is timed (a slice timed includes its two
     * switches, tens of ns), and one wake-up or spawn in
     * latency_sample_every on each worker (a yield's requeue is not). */
    unsigned slice_sample_every, latency_sample_every;
    uint64_t slice_ns[WEFT_HIST_BUCKETS];    /* task slice: run to suspension */
    uint64_t latency_ns[WEFT_HIST_BUCKETS];  /* schedule latency: ready to running */
} weft_metrics;

/* Fills *m (if not NULL) and up to n per-worker entries of w (if not
 * NULL); returns the number of workers, or -EINVAL (rt NULL). Always on:
 * hot paths only touch their own worker's counters. Read without stopping
 * anything: each counter is exact for some moment, the sums approximate
 * while tasks run (it also scans the control blocks for live_tasks and the
 * descriptor table for descriptors). Any thread; does not suspend. */
WEFT_API int weft_runtime_metrics(const weft_runtime *rt, weft_metrics *m, weft_worker_metrics *w,
                                  unsigned n);

/* Writes m readably to out: totals and both histograms as bars. Nothing
 * when m or out is NULL. Does not suspend. */
WEFT_API void weft_metrics_print(const weft_metrics *m, FILE *out);

/* ------------------------------------------------------------------ time */

/* Current monotonic time in ns (CLOCK_MONOTONIC through the vDSO, ~30 ns).
 * Timer wheels use their worker's time cached per loop iteration; this call
 * reads the clock so that a task moved to another worker never sees time
 * go backwards. */
WEFT_API weft_time weft_now(void);

/* Suspends the calling task for at least ms milliseconds (1 ms resolution).
 * Outside a task the thread sleeps. Returns 0; -ECANCELED when cancelled;
 * -ETIMEDOUT at the deadline of an enclosing deadline scope that ends first
 * (weft_deadline_push). */
WEFT_API int weft_sleep_ms(uint64_t ms);

/* Suspends until weft_now() >= deadline (outside a task the thread sleeps).
 * Returns as weft_sleep_ms: 0; -ECANCELED when cancelled; -ETIMEDOUT at the
 * deadline of an enclosing deadline scope that ends first. */
WEFT_API int weft_sleep_until(weft_time deadline);

/* -------------------------------------------------------------------- I/O */

#define WEFT_READ 1
#define WEFT_WRITE 2
/* With WEFT_READ/WEFT_WRITE in weft_wait_fd: the caller has just seen
 * EAGAIN for those directions (on a descriptor open since before its last
 * wait), so weft skips asking poll() first and the check for a reused
 * descriptor number, and waits for the next readiness edge: what weft's own
 * socket calls do. Saves one or two system calls per wait on a hot path (a
 * TLS BIO, a protocol loop); wrong without the EAGAIN (it may then sleep on
 * a descriptor that is ready). */
#define WEFT_EDGE 4

/* Waits until fd is readable (WEFT_READ), writable (WEFT_WRITE) or in
 * error, or until timeout_ms passes (-1 = none). Level-triggered, as poll(2),
 * asyncio's add_reader and libuv's uv_poll: if fd is ready for what was
 * asked when the call is made, it returns at once, however many times in a
 * row it is called; it suspends only while fd is not ready. This is what
 * drives a non-blocking C library (libpq, libcurl, hiredis...) that
 * exposes its descriptor: ask for what the library wants, then call it.
 * Returns the ready subset of events (an error or hang-up reports all
 * requested events as ready, so the next read/write sees the error), or
 * -ETIMEDOUT, -EBADF (fd not open, or closed with weft_close while
 * waiting), -EINVAL (bad events; WEFT_EDGE alone), -EEXIST (another task already waits for
 * the same direction on fd), -ECANCELED (the task was cancelled). A regular
 * file is always ready. A descriptor that a library closed with plain
 * close() and whose number the kernel then gave to a new file is noticed
 * (weft compares the file with the one it registered) and waited on as a
 * fresh one. Outside a task it blocks the thread in poll(). Suspends. */
WEFT_API int weft_wait_fd(int fd, int events, int64_t timeout_ms);

/* Closes fd. Tasks waiting on it (weft_wait_fd or any weft I/O call) wake
 * with -EBADF. Close descriptors that tasks wait on with this, not close():
 * weft remembers their registration. Returns 0 or -errno. Does not suspend. */
WEFT_API int weft_close(int fd);

/* Drops weft's registration of fd without closing it; tasks waiting on fd
 * wake with -EBADF. The next wait on fd registers it afresh. You need it
 * when fd stays open but weft should stop watching it: before handing it to
 * code that polls it by other means, or before closing with plain close()
 * a descriptor weft waited on while a duplicate (dup, fork) keeps the file
 * open (epoll would go on reporting that file's events). A descriptor
 * closed with close() and reused needs no call: weft notices. Returns 0, or
 * -EBADF for a negative fd. Does not suspend.
 *
 * Blocking descriptors. weft's read, write and wait calls accept a
 * descriptor in blocking mode (stdin, a pipe or socket made by other code)
 * and never block a worker with it: they wait until poll() says the call
 * can proceed, and on a pipe write at most PIPE_BUF bytes at a time; on
 * sockets they pass MSG_DONTWAIT. The mode is read with fcntl() on each
 * call (descriptors weft made itself are known to be non-blocking). */
WEFT_API int weft_fd_forget(int fd);

/* ----------------------------------------------------------- coordination
 * Mutexes, condition variables, semaphores, events, wait groups, once,
 * channels, select, task groups and gathering tasks.
 *
 * Common rules for everything in this section:
 *  - Objects are opaque heap objects made with _create (0 and *out, or
 *    -ENOMEM / -EINVAL with *out NULL; -EINVAL also for out NULL) or its
 *    shorthand _new (the object, or NULL on failure) and released with _free, which must not race with
 *    any other use (no task may still wait on the object).
 *  - Waiting calls suspend only the calling task, never its worker thread;
 *    called from a plain thread (not a task) they block that thread. Every
 *    object may be used from any worker and from plain threads at once.
 *  - Waiting calls take timeout_ms (-1 = none, 0 or another negative = do
 *    not wait: see the conventions at the top) and return
 *    0 or a negative errno: -ETIMEDOUT when the time passed (never early),
 *    -ECANCELED when the calling task was cancelled while it had to wait
 *    (it withdraws its place in the queue first; a call that can complete
 *    at once does so even in a cancelled task). A wait that was satisfied
 *    at the moment of cancellation reports success, so nothing is lost: an
 *    element already handed over is reported as sent/received, a mutex
 *    already handed over is held.
 *  - Waiters are served first come, first served (FIFO queues), so none
 *    starves.
 */

typedef struct weft_mutex weft_mutex;
typedef struct weft_cond weft_cond;
typedef struct weft_sem weft_sem;
typedef struct weft_event weft_event;
typedef struct weft_wg weft_wg;
typedef struct weft_chan weft_chan;
typedef struct weft_oneshot weft_oneshot;
typedef struct weft_group weft_group;

/* Mutex (not recursive). Unlock hands the mutex directly to the longest
 * waiting locker, so no locker starves. lock: 0, -ETIMEDOUT, -ECANCELED,
 * -EINVAL; suspends. trylock: 0 or -EAGAIN; never suspends. unlock: 0, or
 * -EPERM when the mutex is not locked; any task or thread may unlock it;
 * never suspends. */
WEFT_API int weft_mutex_create(weft_mutex **out);
WEFT_API weft_mutex *weft_mutex_new(void);
WEFT_API void weft_mutex_free(weft_mutex *m);
WEFT_API int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms);
WEFT_API int weft_mutex_trylock(weft_mutex *m);
WEFT_API int weft_mutex_unlock(weft_mutex *m);

/* Condition variable used with a weft_mutex. wait atomically releases m
 * (which the caller holds) and waits for signal/broadcast, then re-takes m
 * before returning, in every case (also on -ETIMEDOUT and -ECANCELED; the
 * re-take itself is not cancellable). Returns 0 (woken; may be spurious,
 * re-check the predicate), -ETIMEDOUT, -ECANCELED, -EINVAL, -EPERM (m not
 * locked). Suspends. signal wakes the longest waiter, broadcast all; neither
 * suspends; both return 0 or -EINVAL. */
WEFT_API int weft_cond_create(weft_cond **out);
WEFT_API weft_cond *weft_cond_new(void);
WEFT_API void weft_cond_free(weft_cond *c);
WEFT_API int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms);
WEFT_API int weft_cond_signal(weft_cond *c);
WEFT_API int weft_cond_broadcast(weft_cond *c);

/* Counting semaphore. acquire takes one unit: 0, -ETIMEDOUT, -ECANCELED;
 * suspends. try_acquire: 0 or -EAGAIN, never suspends. release(n) adds n
 * units (n > 0), handing them to waiters in FIFO order: 0, -EINVAL (n <= 0),
 * -EOVERFLOW (the count would pass INT64_MAX). Never suspends. A waiting
 * acquirer is never overtaken by a later one. */
WEFT_API int weft_sem_create(int64_t initial, weft_sem **out);
WEFT_API weft_sem *weft_sem_new(int64_t initial);
WEFT_API void weft_sem_free(weft_sem *s);
WEFT_API int weft_sem_acquire(weft_sem *s, int64_t timeout_ms);
WEFT_API int weft_sem_try_acquire(weft_sem *s);
WEFT_API int weft_sem_release(weft_sem *s, int64_t n);
WEFT_API int64_t weft_sem_value(weft_sem *s);

/* Manual-reset event. set wakes every waiter and lets later waits through
 * until clear. wait: 0, -ETIMEDOUT, -ECANCELED; suspends. set, clear,
 * is_set never suspend. All usable from plain threads. */
WEFT_API int weft_event_create(weft_event **out);
WEFT_API weft_event *weft_event_new(void);
WEFT_API void weft_event_free(weft_event *e);
WEFT_API int weft_event_set(weft_event *e);
WEFT_API int weft_event_clear(weft_event *e);
WEFT_API int weft_event_wait(weft_event *e, int64_t timeout_ms);
WEFT_API int weft_event_is_set(weft_event *e);

/* Wait group: a counter; wait returns when it is zero. add(n) adds n (may be
 * negative): 0, or -EINVAL if the counter would go below zero (unchanged
 * then). done = add(-1). wait: 0, -ETIMEDOUT, -ECANCELED; suspends. */
WEFT_API int weft_wg_create(weft_wg **out);
WEFT_API weft_wg *weft_wg_new(void);
WEFT_API void weft_wg_free(weft_wg *wg);
WEFT_API int weft_wg_add(weft_wg *wg, int64_t n);
WEFT_API int weft_wg_done(weft_wg *wg);
WEFT_API int weft_wg_wait(weft_wg *wg, int64_t timeout_ms);

/* Once: runs fn(arg) exactly once per flag. Concurrent callers wait until it
 * has returned. A flag is a plain struct: static or embedded, initialised
 * with WEFT_ONCE_INIT (all zero), never freed. Returns 0 once fn has run,
 * -ECANCELED (a waiting caller was cancelled; fn is still running in the
 * first caller), -EINVAL. Suspends (a caller that is not the first). */
typedef struct weft_once_flag {
    int state; /* used atomically: 0 not run, 1 running, 2 done */
} weft_once_flag;
#define WEFT_ONCE_INIT {0}
WEFT_API int weft_once(weft_once_flag *once, void (*fn)(void *arg), void *arg);

/* Channel: bounded multi-producer multi-consumer FIFO of fixed-size
 * elements, copied in and out. capacity 0 makes a rendezvous channel: a
 * send completes only when a receiver takes the element directly. An
 * element is handed straight to a waiting receiver (and a waiting sender's
 * element straight into a freed buffer slot), with one wake-up. Elements
 * from one sender arrive in the order sent.
 * create: 0 and *out, or -EINVAL (elem_size 0, capacity * elem_size
 * overflows, out NULL), -ENOMEM; new: the same, the channel or NULL.
 * send copies elem_size bytes from elem, suspending while the channel is
 * full: 0, -EPIPE (closed, also when closed while waiting: the element was
 * not delivered), -ETIMEDOUT, -ECANCELED, -EINVAL.
 * recv copies the oldest element to elem_out, suspending while the channel
 * is empty: 0, -EPIPE (closed and drained), -ETIMEDOUT, -ECANCELED, -EINVAL.
 * try_send / try_recv never suspend: -EAGAIN instead of waiting.
 * close: senders get -EPIPE from then on (waiting ones are woken with it);
 * receivers drain what is buffered, then get -EPIPE. 0, or -EPIPE when
 * already closed. Never suspends.
 * len: elements buffered now. */
WEFT_API int weft_chan_create(size_t capacity, size_t elem_size, weft_chan **out);
WEFT_API weft_chan *weft_chan_new(size_t capacity, size_t elem_size);
WEFT_API void weft_chan_free(weft_chan *ch);
WEFT_API int weft_chan_send(weft_chan *ch, const void *elem);
WEFT_API int weft_chan_send_timeout(weft_chan *ch, const void *elem, int64_t timeout_ms);
WEFT_API int weft_chan_try_send(weft_chan *ch, const void *elem);
WEFT_API int weft_chan_recv(weft_chan *ch, void *elem_out);
WEFT_API int weft_chan_recv_timeout(weft_chan *ch, void *elem_out, int64_t timeout_ms);
WEFT_API int weft_chan_try_recv(weft_chan *ch, void *elem_out);
WEFT_API int weft_chan_close(weft_chan *ch);
/* Elements buffered now (a snapshot), or -EINVAL for NULL. (Before
 * 2026-12-04 it returned size_t, and 0 for NULL, which could not be told
 * apart from an empty channel.) Does not suspend. */
WEFT_API ssize_t weft_chan_len(weft_chan *ch);

/* Select: performs exactly one ready operation among cases and returns its
 * index. A case with chan NULL never becomes ready. When several are ready
 * the choice starts at a random case, so none is favoured. A recv case on a
 * closed, drained channel and a send case on a closed channel are ready:
 * select returns their index with result -EPIPE. The chosen case's result
 * field is 0 or -EPIPE; other cases' fields are untouched. Returns the index,
 * -ETIMEDOUT (no case became ready in time; timeout 0 polls), -ECANCELED,
 * -EINVAL (n < 1, n > WEFT_SELECT_MAX, bad op). Suspends. */
#define WEFT_SEND 1
#define WEFT_RECV 2
#define WEFT_SELECT_MAX 64
typedef struct weft_select_case {
    weft_chan *chan;
    int op;     /* WEFT_SEND or WEFT_RECV */
    void *elem; /* send: element to copy in; recv: where the element goes */
    int result; /* out: 0 or -EPIPE for the chosen case */
} weft_select_case;
WEFT_API int weft_select(weft_select_case *cases, int n, int64_t timeout_ms);

/* Oneshot: carries one element from one sender to a receiver. create: 0
 * and *out, -EINVAL (elem_size 0, out NULL), -ENOMEM; new: shorthand, the
 * oneshot or NULL. send: 0, or
 * -EPIPE if something was already sent or the oneshot was closed; never
 * suspends. recv: 0 (the element), -EPIPE (closed without a value, or the
 * value was already taken), -ETIMEDOUT, -ECANCELED; suspends. close: the
 * sender gives up; a waiting receiver gets -EPIPE. */
WEFT_API int weft_oneshot_create(size_t elem_size, weft_oneshot **out);
WEFT_API weft_oneshot *weft_oneshot_new(size_t elem_size);
WEFT_API void weft_oneshot_free(weft_oneshot *o);
WEFT_API int weft_oneshot_send(weft_oneshot *o, const void *elem);
WEFT_API int weft_oneshot_recv(weft_oneshot *o, void *elem_out, int64_t timeout_ms);
WEFT_API int weft_oneshot_close(weft_oneshot *o);

/* Task groups (structured concurrency): children spawned into a group never
 * outlive it. A child fails by returning WEFT_GROUP_FAILED.
 * create(flags, &g): WEFT_GROUP_FAIL_FAST cancels every other child as soon
 * as one fails. 0 and *out, or -ENOMEM, -EINVAL (unknown flags, out NULL);
 * new(flags): shorthand, the group or NULL.
 * spawn: starts fn(arg) as a child (task only, like weft_spawn) and returns
 * its id (0, 1, 2... in spawn order), or -EPERM, -ENOMEM (also when no
 * stack could be had: a child takes its stack at spawn), -ECANCELED (the
 * group was cancelled: nothing started). Does not suspend.
 * wait: waits until every child spawned so far has finished: 0, -ECHILD
 * (all finished, at least one failed), -ETIMEDOUT, -ECANCELED (the caller
 * was cancelled; the children go on). Children stay collectable with next.
 * next: waits for the next child to finish, in completion order, and
 * returns its id (each child exactly once), with its return value in
 * *result (if not NULL; NULL for a child cancelled before it ran). -ENOENT
 * when no child is left to collect, -ETIMEDOUT, -ECANCELED. Suspends.
 * cancel: cancels every unfinished child (and makes later spawns fail);
 * 0. Does not suspend.
 * free: cancels what is still running, waits for every child (not
 * cancellable), then frees the group. Suspends. */
#define WEFT_GROUP_FAIL_FAST 1
#define WEFT_GROUP_FAILED ((void *)(intptr_t)-1)
WEFT_API int weft_group_create(int flags, weft_group **out);
WEFT_API weft_group *weft_group_new(int flags);
WEFT_API int weft_group_spawn(weft_group *g, weft_fn fn, void *arg);
WEFT_API int weft_group_wait(weft_group *g, int64_t timeout_ms);
WEFT_API int weft_group_next(weft_group *g, void **result, int64_t timeout_ms);
WEFT_API int weft_group_cancel(weft_group *g);
WEFT_API void weft_group_free(weft_group *g);

/* Deadline scopes: a deadline for a whole block of a task's code (asyncio's
 * timeout(), Trio's cancel scopes). Between weft_deadline_push(&s, ms) and
 * weft_deadline_pop(&s), every call of this task that suspends (reads,
 * writes, connects, accepts, channel operations, select, locks, conditions,
 * events, semaphores, joins, groups, sleeps, signal and process waits, the
 * blocking pool, files and name lookups, and calls with no timeout_ms
 * parameter alike) waits at most until the scope's deadline and returns
 * -ETIMEDOUT once it has passed. A call with its own timeout_ms waits until
 * the earlier of the two. A call that can complete without suspending
 * completes even after the deadline; only a call that would have to wait
 * fails. weft_sleep_ms / weft_sleep_until return -ETIMEDOUT at the scope's
 * deadline when it comes before the end of the sleep.
 *  - Nesting: a scope's deadline is the earlier of its own (timeout_ms from
 *    the push, with the timeout rules above: -1 adds none, other negatives
 *    and 0 have passed already) and its enclosing scope's; pop restores the
 *    enclosing one. Scopes belong to the task, and move with it between
 *    worker threads.
 *  - The caller owns the weft_deadline (usually on its stack) and must pop
 *    every scope it pushed, innermost first, on every path out of the block
 *    (return, goto, break): pop it before the memory goes away. The
 *    WEFT_WITH_DEADLINE macro below does that for a C block.
 *  - Shielded code (weft_shield_begin, and weft's own shields, e.g. a
 *    condition wait re-taking its mutex) is not cut short by a scope, as it
 *    is not by cancellation. A task both cancelled and past its deadline
 *    gets -ECANCELED.
 *  - A job already running on the blocking pool cannot be abandoned: a
 *    deadline that passes meanwhile lets it finish (the call then reports
 *    its outcome); a job that has not started is withdrawn (-ETIMEDOUT).
 *  - weft_join and weft_join_timeout cut short by a scope return -ETIMEDOUT
 *    and the handle stays with the caller (t goes on), as join_timeout does.
 * push: 0; -EINVAL (s NULL); -EPERM outside a task (no scope is opened).
 * pop: 0; -EINVAL if s is not the calling task's innermost open scope (pop
 * without push, pop out of order, a scope of another task, a second pop):
 * then nothing changes; -EPERM outside a task. Neither suspends.
 * A task that finishes with scopes still open leaves no trace (scopes end
 * with their task). */
typedef struct weft_deadline {
    int64_t at_ns;               /* effective deadline (weft_now() clock), INT64_MAX: none */
    struct weft_deadline *outer; /* enclosing scope */
    const void *owner;           /* the task that pushed it */
} weft_deadline;
WEFT_API int weft_deadline_push(weft_deadline *s, int64_t timeout_ms);
WEFT_API int weft_deadline_pop(weft_deadline *s);
/* Milliseconds left before the calling task's innermost scope deadline
 * (rounded up; 0 once passed), or -1 when there is none (or outside a task):
 * a value ready to pass as a timeout_ms. */
WEFT_API int64_t weft_deadline_left_ms(void);

#if defined(__GNUC__)
/* WEFT_WITH_DEADLINE(timeout_ms) { ... }: runs the block once inside a
 * deadline scope that is popped however the block is left (its end, break,
 * continue, return, goto: a cleanup attribute). Outside a task the block
 * runs without a deadline. */
static inline void weft__deadline_cleanup(weft_deadline *s) { (void)weft_deadline_pop(s); }
static inline weft_deadline *weft__deadline_enter(weft_deadline *s, int64_t timeout_ms)
{
    (void)weft_deadline_push(s, timeout_ms);
    return s;
}
#define WEFT__DL_CAT2(a, b) a##b
#define WEFT__DL_CAT(a, b) WEFT__DL_CAT2(a, b)
#define WEFT_WITH_DEADLINE(timeout_ms)                                                             \
    for (weft_deadline WEFT__DL_CAT(weft__dl_s, __LINE__)                                         \
             __attribute__((cleanup(weft__deadline_cleanup))),                                     \
         *WEFT__DL_CAT(weft__dl_p, __LINE__) =                                                     \
             weft__deadline_enter(&WEFT__DL_CAT(weft__dl_s, __LINE__), (timeout_ms));              \
         WEFT__DL_CAT(weft__dl_p, __LINE__); WEFT__DL_CAT(weft__dl_p, __LINE__) = NULL)
#endif

/* Gathering tasks.
 * join_timeout: weft_join with a timeout. On -ETIMEDOUT (or -ECANCELED
 * because the caller was cancelled) the handle stays valid and t goes on;
 * otherwise as weft_join (handle released; -ECANCELED if t was cancelled).
 * join_all: waits until every task in ts[0..n) has finished, then releases
 * every handle and stores each result in results[i] (results may be NULL).
 * Returns 0, or the number of tasks that were cancelled or never ran for
 * want of a stack (> 0; handles released all the same), or -ETIMEDOUT / -ECANCELED (caller cancelled) /
 * -EINVAL, in which case no handle was released and every task goes on.
 * join_any: waits for the first of ts[0..n) to finish (NULL entries are
 * skipped), releases that handle (*result = its return value) and returns
 * its index; the other handles stay with the caller. -ETIMEDOUT,
 * -ECANCELED (caller cancelled), -EINVAL (no handle). From a plain thread
 * join_any polls every millisecond.
 * All three suspend. A handle may be waited for by one call at a time. A
 * released handle among them aborts before any handle is waited for or
 * released (see weft_join). */
WEFT_API int weft_join_timeout(weft_task *t, void **result, int64_t timeout_ms);
WEFT_API int weft_join_all(weft_task **ts, int n, void **results, int64_t timeout_ms);
WEFT_API int weft_join_any(weft_task **ts, int n, void **result, int64_t timeout_ms);

/* ------------------------------------------------- blocking pool, files, names
 * Work that would block a worker thread (CPU-bound jobs, file system calls,
 * getaddrinfo, libraries that block) runs on a pool of plain OS threads
 * beside the workers. Pool threads are preemptive and never run weft tasks;
 * code running on one is "outside a task" (weft calls there block the
 * thread, as from any plain thread). Each runtime has its own pool, made on
 * first use. It grows on demand up to a maximum number of threads (default
 * 512, or the WEFT_BLOCKING_MAX environment variable read when the pool is
 * made) and queues jobs beyond it; a thread idle for the keep-alive (default
 * 10000 ms, or WEFT_BLOCKING_KEEPALIVE_MS) exits. Each job wakes exactly one
 * idle thread (the most recently idle), and a thread is started only when
 * none is idle. Pool threads block asynchronous signals.
 * weft_runtime_free waits for blocking jobs that are running (their results
 * are dropped); jobs still queued never run and their handles report
 * -ECANCELED. */
struct stat;
struct addrinfo;

/* Runs fn(arg) on rt's blocking pool and returns a join handle, used like a
 * task's: weft_join (suspends only the calling task; blocks a plain thread),
 * weft_join_timeout/_all/_any, weft_detach, weft_cancel. Cancelling a job
 * that has not started removes it (it never runs); cancelling a running one
 * lets it finish and drops its result. Either way weft_join reports
 * -ECANCELED. weft_spawn_blocking is task only and uses the calling task's
 * runtime; weft_spawn_blocking_on works from any thread; both return the
 * handle, or NULL on failure. weft_task_spawn_blocking(rt, fn, arg, &t)
 * is the form that says why (rt NULL = the calling task's runtime; out NULL
 * = detached): 0 and *out, or -EPERM (rt NULL outside a task), -EINVAL (fn
 * NULL), -ENOMEM, -EAGAIN (no pool thread could be started), -ESHUTDOWN
 * (rt is being freed). Do not suspend. */
WEFT_API int weft_task_spawn_blocking(weft_runtime *rt, weft_fn fn, void *arg, weft_task **out);
WEFT_API weft_task *weft_spawn_blocking(weft_fn fn, void *arg);
WEFT_API weft_task *weft_spawn_blocking_on(weft_runtime *rt, weft_fn fn, void *arg);

/* Sets rt's pool limits before its first blocking job: max_threads (1 to
 * 65536; 0 = keep the default) and keepalive_ms (0 = keep the default).
 * Returns 0, -EINVAL, -ENOMEM, -EBUSY (a blocking job has already been
 * submitted on rt). */
WEFT_API int weft_blocking_configure(weft_runtime *rt, unsigned max_threads, unsigned keepalive_ms);
/* Pool threads of rt alive now (busy or idle); 0 before first use. */
WEFT_API unsigned weft_blocking_threads(weft_runtime *rt);

/* The compute pool: a second pool of rt, for CPU-bound jobs, with at most
 * one thread per CPU by default (the CPUs this process may run on, or the
 * WEFT_COMPUTE_MAX environment variable read when the pool is made). Jobs
 * beyond its threads wait in FIFO order. Use it rather than the blocking
 * pool for CPU work: the blocking pool's hundreds of threads would all share
 * the cores at once, each job advancing at a fraction of a core, so a long
 * job takes many times its CPU time. Same handles, errors, keep-alive and
 * shutdown behaviour as weft_spawn_blocking / weft_spawn_blocking_on;
 * weft_compute_configure and weft_compute_threads as their blocking
 * counterparts; weft_task_spawn_compute as weft_task_spawn_blocking. Do
 * not suspend. */
WEFT_API int weft_task_spawn_compute(weft_runtime *rt, weft_fn fn, void *arg, weft_task **out);
WEFT_API weft_task *weft_spawn_compute(weft_fn fn, void *arg);
WEFT_API weft_task *weft_spawn_compute_on(weft_runtime *rt, weft_fn fn, void *arg);
WEFT_API int weft_compute_configure(weft_runtime *rt, unsigned max_threads, unsigned keepalive_ms);
WEFT_API unsigned weft_compute_threads(weft_runtime *rt);

/* Files. From a task each call runs on the blocking pool and suspends the
 * calling task only; from a plain thread (a pool thread included) it runs
 * inline. Every call returns 0 or a count on success, a negative errno on
 * failure, and -ECANCELED when the calling task was cancelled before the
 * call started (it did not happen then; once started, a call completes and
 * its outcome is reported, so nothing is lost or half done unknowingly).
 * Descriptors are ordinary blocking descriptors: use them only with these
 * calls (or your own blocking code), not with weft_read/weft_wait_fd. */

/* open(2), always with O_CLOEXEC: the descriptor or -errno. */
WEFT_API int weft_open(const char *path, int flags, unsigned mode);
/* read(2)/pread(2): the count (0 at end of file, may be short) or -errno. */
WEFT_API ssize_t weft_file_read(int fd, void *buf, size_t n);
WEFT_API ssize_t weft_pread(int fd, void *buf, size_t n, off_t offset);
/* Writes all n bytes (retrying short writes) or fails: n or -errno (part may
 * have been written on failure). */
WEFT_API ssize_t weft_file_write(int fd, const void *buf, size_t n);
WEFT_API ssize_t weft_pwrite(int fd, const void *buf, size_t n, off_t offset);
WEFT_API int weft_fsync(int fd);
/* close(2). The descriptor is gone even when the call reports an error
 * (and also when the task is cancelled first: then it is closed inline). */
WEFT_API int weft_file_close(int fd);
WEFT_API int weft_stat(const char *path, struct stat *st);
WEFT_API int weft_unlink(const char *path);
WEFT_API int weft_rename(const char *from, const char *to);
/* Reads a whole regular file into a malloc'd buffer (free it with free();
 * one extra zero byte follows the data, so text can be used as a string):
 * 0 with *data_out and *len_out set, or -errno (then *data_out is NULL). */
WEFT_API int weft_read_file(const char *path, void **data_out, size_t *len_out);
/* Replaces path atomically with len bytes of data (mode 0644 less the umask
 * for a new file; an existing file's mode is kept): writes a temporary file
 * beside it, fsyncs it, renames it over path and fsyncs the directory.
 * Readers see the old or the new content, never a mix. 0 or -errno. */
WEFT_API int weft_write_file(const char *path, const void *data, size_t len);

/* Name resolution: getaddrinfo(host, service) on the blocking pool (inline
 * from a plain thread), with hints family (AF_UNSPEC, AF_INET, AF_INET6),
 * socktype (0, SOCK_STREAM, SOCK_DGRAM); a numeric host with a numeric or
 * NULL service is converted inline without the pool. Returns 0 with *out
 * set (free it with weft_freeaddrinfo), or:
 *   -ENOENT        EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY: no such name or no
 *                  address of the family asked for
 *   -EAGAIN        EAI_AGAIN: temporary failure (no answer from a resolver)
 *   -EINVAL        bad input (out NULL, host and service both NULL, a bad
 *                  family or socktype), EAI_BADFLAGS
 *   -EAFNOSUPPORT  EAI_FAMILY;  -ESOCKTNOSUPPORT  EAI_SOCKTYPE
 *   -ESRCH         EAI_SERVICE (service unknown for this socket type)
 *   -ENOMEM        EAI_MEMORY
 *   -EIO           EAI_FAIL (unrecoverable resolver failure)
 *   -errno         EAI_SYSTEM
 *   -ECANCELED     the calling task was cancelled (the result is freed)
 * Suspends. */
WEFT_API int weft_resolve(const char *host, const char *service, int family, int socktype,
                          struct addrinfo **out);
WEFT_API void weft_freeaddrinfo(struct addrinfo *ai);
/* weft_tcp_connect to a host name or numeric address: resolves it (numeric
 * addresses without a lookup; NULL or "" is the loopback address) and tries
 * each address in the order getaddrinfo gives (IPv6 and IPv4) until one
 * connects, within timeout_ms (-1 = none) counted from the call. The
 * lookup itself is bounded by the resolver's own timeouts (resolv.conf),
 * not by timeout_ms. Returns the fd, or the error of the last address tried
 * (-ECONNREFUSED, ...), -ETIMEDOUT, or a weft_resolve error. Suspends. */
WEFT_API int weft_tcp_connect_host(const char *host, uint16_t port, int64_t timeout_ms);

/* ------------------------------------------------- subprocesses, signals
 * Subprocesses. A child's stdin, stdout and stderr are either inherited or
 * pipes. The parent ends of pipes are non-blocking, close-on-exec
 * descriptors for weft_read / weft_write / weft_wait_fd; the weft_process
 * owns them: end one early with weft_process_close_fd, never with close()
 * or weft_close. */
#include <signal.h>

typedef struct weft_process weft_process;

typedef struct weft_process_opts {
    const char *const *argv; /* program and arguments, NULL-terminated */
    const char *const *envp; /* environment, NULL-terminated; NULL = ours */
    const char *cwd;         /* working directory; NULL = ours */
    int pipe_stdin, pipe_stdout, pipe_stderr; /* nonzero: make a pipe */
    /* Fields added later go here, at the end, so that opts made with a
     * designated or {0} initialiser keep meaning "off" for them. */
    int new_pgroup;  /* nonzero: the child leads a new process group (its id
                        is the child's pid), for weft_process_kill_group */
    int new_session; /* nonzero: the child leads a new session and process
                        group (setsid: no controlling terminal); implies
                        new_pgroup */
} weft_process_opts;

/* Starts argv[0]. A name without '/' is searched in this process's PATH
 * (as execvp does; "/bin:/usr/bin" if PATH is unset; relative entries and
 * relative names are taken from cwd when it is given). The search happens
 * before the child is made, so a missing or non-executable program is
 * reported here: -ENOENT, -EACCES (also for a directory), -ENOTDIR. The
 * child starts with an empty signal mask and SIGPIPE at its default action;
 * other dispositions follow exec(2) (caught ones become default, ignored
 * ones stay ignored). Returns 0 with *out set (NULL on failure), -EINVAL
 * (o, out, argv or argv[0] NULL, argv[0] empty), -ENOENT (also for a
 * missing cwd), -EMFILE, -ENOMEM, -EAGAIN, -ENOTSUP (new_session with a C
 * library that cannot start one), or another exec(2) error. Does not
 * suspend. */
WEFT_API int weft_process_spawn(const weft_process_opts *o, weft_process **out);
/* The parent end of the child's stdin (a write end), stdout or stderr (read
 * ends); -1 when that stream is not a pipe or was closed. */
WEFT_API int weft_process_stdin_fd(const weft_process *p);
WEFT_API int weft_process_stdout_fd(const weft_process *p);
WEFT_API int weft_process_stderr_fd(const weft_process *p);
/* The child's pid (-1 for p NULL). */
WEFT_API pid_t weft_process_pid(const weft_process *p);
/* The id of the child's own process group (its pid) when it was started
 * with new_pgroup or new_session; -1 otherwise or for p NULL. */
WEFT_API pid_t weft_process_pgid(const weft_process *p);
/* Closes our end of the child's stdin (which = 0: the child reads end of
 * file), stdout (1) or stderr (2). Tasks waiting on it wake with -EBADF.
 * 0, -EBADF (not a pipe, or closed already), -EINVAL. Does not suspend. */
WEFT_API int weft_process_close_fd(weft_process *p, int which);
/* Waits until the child has exited and stores its wait status (test it with
 * WIFEXITED/WEXITSTATUS, WIFSIGNALED/WTERMSIG from <sys/wait.h>) in
 * *status_out (may be NULL). The child is reaped then; later calls report
 * the same status at once. Returns 0, -ETIMEDOUT, -ECANCELED, -EINVAL,
 * -EBUSY (another wait on p is in progress), -ECHILD (something else reaped
 * the child: waitpid(-1, ...) elsewhere, or SIGCHLD set to SIG_IGN).
 * Waits on a pidfd (Linux 5.3+); where the kernel has none it polls
 * waitpid(WNOHANG) with a back-off from 1 to 20 ms. Suspends (from a plain
 * thread: blocks it). */
WEFT_API int weft_process_wait(weft_process *p, int *status_out, int64_t timeout_ms);
/* Sends sig (0: only check) to the child: 0, -ESRCH (already reaped),
 * -EINVAL, -EPERM. Goes through the pidfd, so it can never hit a recycled
 * pid (without pidfd support, kill(2)). Does not suspend. */
WEFT_API int weft_process_kill(weft_process *p, int sig);
/* Sends sig (0: only check) to every process in the child's own group: the
 * child and whatever it started there that has not left the group. 0,
 * -EINVAL (p NULL, a bad signal, or a child not started with new_pgroup or
 * new_session: it is in our own group, which this must never signal),
 * -ESRCH (the child was reaped), -EPERM (no member could be signalled).
 * It works only while the child is not reaped: an unreaped child (running
 * or exited) keeps its pid, and so the group's id, from being reused. Once
 * a wait has reaped it the call returns -ESRCH, even though members that
 * outlived the child may be left: the id is free again when the last of
 * them goes, and could by then name someone else's group. To stop
 * stragglers, signal the group before the wait (e.g. SIGTERM, then wait).
 * If the group has no member while the child is not reaped (a new session
 * under valgrind, where spawn can return before the child has run setsid),
 * the child alone is signalled. Does not suspend. */
WEFT_API int weft_process_kill_group(weft_process *p, int sig);
/* Closes the pipes and frees p. A child not yet waited for is reaped here so
 * it never lingers as a zombie: if it is still running it is killed with
 * SIGKILL first (the child alone, not its group: use
 * weft_process_kill_group before, if wanted; wait for it before freeing to
 * let it finish). Suspends for
 * the moment the killed child takes to exit (not cancellable); blocks a
 * plain thread. Must not race with other calls on p. NULL: no-op. */
WEFT_API void weft_process_free(weft_process *p);

/* What weft_process_communicate collected. out/err hold everything the
 * child wrote to stdout/stderr, with a NUL after the last byte that
 * out_len/err_len do not count (so text can be used as a string); NULL
 * when that stream was not a pipe. status is the wait status, -1 when the
 * child was not reaped by the call. Free the buffers with
 * weft_process_output_free (or free() each). */
typedef struct weft_process_output {
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    int status;
} weft_process_output;

/* Writes input[0..input_len) to the child's stdin and closes it (at once
 * when input_len is 0), reads stdout and stderr to their end, and then
 * waits for the child to exit, all within one timeout_ms (-1 = none; 0:
 * nothing may wait). Writing and both reads go on together, so a child
 * that writes much before it reads, or fills stderr while we feed stdin,
 * cannot deadlock; a child that stops reading (EPIPE) ends the input
 * without an error. Streams that are not pipes are skipped. *out (unless
 * NULL) is reset first and always filled with what was collected, also
 * when the call fails: free it in every case. On return every pipe of p
 * is closed.
 * Returns 0 (out->status set), or:
 *   -ETIMEDOUT  time ran out: the child is killed with SIGKILL (its whole
 *               group when it has its own, see weft_process_kill_group)
 *               and reaped (out->status says SIGKILL, unless it exited just
 *               before; -1 if another wait holds p), and the output so
 *               far is returned;
 *   -ECANCELED  the calling task was cancelled: the child is left as it is
 *               (weft_process_free kills it), the output so far returned;
 *   -EINVAL     p or out NULL, input NULL with input_len > 0, or input
 *               given but stdin is not a pipe (or was closed);
 *   -ENOMEM, -EBUSY / -ECHILD (as weft_process_wait), another -errno.
 * While it runs, the call owns p's pipes: no other task may use them.
 * Suspends (from a plain thread: blocks it). */
WEFT_API int weft_process_communicate(weft_process *p, const void *input, size_t input_len,
                                      weft_process_output *out, int64_t timeout_ms);
/* Frees o's buffers and sets them to NULL and their lengths to 0 (o itself
 * is the caller's). o NULL: no-op. */
WEFT_API void weft_process_output_free(weft_process_output *o);

/* Signals, process-wide (shared by every runtime). weft installs a handler
 * for a signal the first time a wait (or weft_signal_watch) names it, and
 * keeps it until weft_signal_unwatch. The handler only counts the delivery
 * and writes a byte to a pipe (async-signal-safe, errno preserved), so it
 * works whichever thread the kernel picks and no thread's signal mask is
 * changed; a service thread (started on first use, never running tasks)
 * hands each delivery to a waiter.
 * wait: suspends until a signal in set is delivered and returns its number,
 * or -ETIMEDOUT, -ECANCELED, -EINVAL (set NULL or empty, or naming a signal
 * that cannot be waited for: SIGKILL, SIGSTOP, and the fault signals
 * SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT), -EMFILE/-EAGAIN
 * (no pipe or service thread). Each delivery wakes exactly one waiter: the
 * longest-waiting one whose set holds the signal. A delivery of a watched
 * signal that no waiter wants is kept (counted per signal) and taken by
 * the next wait for it, one delivery per wait; so watch a signal before it
 * can arrive (a server watches SIGTERM when it starts) and it is never lost
 * or fatal. From a plain thread a wait blocks the thread.
 * watch: installs the handlers for every signal in set now, without
 * waiting. 0 or as wait.
 * unwatch: restores the disposition sig had before weft watched it and
 * drops its kept deliveries. 0 (also when it was not watched), -EINVAL,
 * -EBUSY (a wait for sig is in progress).
 * None of these may be used in a child made by fork() without exec. */
WEFT_API int weft_signal_wait(const sigset_t *set, int64_t timeout_ms);
WEFT_API int weft_signal_watch(const sigset_t *set);
WEFT_API int weft_signal_unwatch(int sig);

/* ------------------------------------------------------------- networking
 * Every descriptor weft creates is non-blocking and close-on-exec. Calls
 * that wait take timeout_ms (-1 = none) and return -ETIMEDOUT when it passes.
 * Host strings are numeric IPv4 or IPv6 addresses ("127.0.0.1", "::1"), and
 * for weft_tcp_connect also host names; NULL or "" means the loopback
 * address for connect and listen.
 * Writing to a peer that has gone away never raises SIGPIPE; it returns the
 * kernel's error as it is, because the two say different things:
 * -ECONNRESET when the peer reset the connection (it closed with data
 * unread, or aborted) and this is the first call to hear of it (reads
 * report it the same way), -EPIPE when the connection was already known
 * closed for writing: any later write after that reset, a reset that came
 * after the peer's FIN, or after our own shutdown(SHUT_WR). Treat both as
 * "the peer is gone". A listen backlog of 0 means the system's default
 * (SOMAXCONN); a negative one is -EINVAL. */

#define WEFT_REUSEPORT 1 /* weft_tcp_listen_ex flag: SO_REUSEPORT */

/* Listening TCP socket (SO_REUSEADDR). Returns the fd or -errno. No suspend. */
WEFT_API int weft_tcp_listen(const char *host, uint16_t port, int backlog);
WEFT_API int weft_tcp_listen_ex(const char *host, uint16_t port, int backlog, int flags);
/* Accepts one connection (addr_out may be NULL). Returns the new fd or -errno.
 * Under descriptor exhaustion (EMFILE/ENFILE) it backs off and retries rather
 * than spinning. Suspends. */
WEFT_API int weft_tcp_accept(int lfd, struct sockaddr_storage *addr_out);
WEFT_API int weft_tcp_accept_timeout(int lfd, struct sockaddr_storage *addr_out, int64_t timeout_ms);
/* Connects to host:port (TCP_NODELAY set). host is a numeric address or a
 * host name, which is resolved (weft_resolve) and each of its addresses,
 * IPv6 and IPv4, tried in turn within the one timeout. Returns the fd or
 * -errno (-ECONNREFUSED, -ETIMEDOUT, -EINVAL for a malformed address, the
 * weft_resolve codes for a name that does not resolve). Suspends. */
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


/* ---------------------------------------------------------------- streams
 * A buffered stream: a read buffer and a write buffer over a transport, a
 * descriptor weft can wait on (TCP, Unix sockets, pipes, subprocess pipes)
 * or a table of calls (TLS offers one). As asyncio's StreamReader/Writer and
 * Go's bufio. One task uses a stream at a time (it may move between tasks and
 * threads between calls); it is not safe for two tasks at once.
 *
 * Every call that may wait takes timeout_ms (-1 = none; any other negative
 * value = already passed: the call does what it can without waiting) and
 * counts it from the call: one deadline for the whole call, however many
 * transport reads or writes it takes. Those calls suspend (only the calling
 * task) and may return -ETIMEDOUT, -ECANCELED or the transport's -errno.
 *
 * Reading never loses bytes: a call that times out, fails, or meets end of
 * stream leaves every byte it received in the read buffer, where the next
 * call finds it (weft_stream_buffered shows it). A frame longer than
 * max_line is refused with -EMSGSIZE, its bytes kept, instead of growing the
 * buffer without bound. End of stream is 0 only when nothing is left;
 * a stream that ends in the middle of a frame says -ENODATA.
 *
 * Writes are buffered: weft_stream_write copies into the write buffer and
 * goes to the transport when it is full (a write larger than the buffer goes
 * out at once, in one writev with what was buffered). weft_stream_flush
 * sends what is buffered. After a failed write the stream's writing side is
 * dead: every later write and flush returns the same error. */

/* Defined for code (weft_tls.h) that builds on streams. */
#define WEFT_HAVE_STREAMS 1
typedef struct weft_stream weft_stream;

typedef struct weft_stream_ops {
    /* Reads up to n bytes into buf: > 0, 0 at end of stream, or -errno.
     * Waits at most timeout_ms (-1 none). */
    ssize_t (*read)(void *ctx, void *buf, size_t n, int64_t timeout_ms);
    /* Writes all n bytes or fails: n, or -errno. */
    ssize_t (*write)(void *ctx, const void *buf, size_t n, int64_t timeout_ms);
    /* Optional (NULL: the stream writes the pieces in turn): all bytes of iov or -errno. */
    ssize_t (*writev)(void *ctx, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    /* Releases ctx (closes what it owns). 0 or -errno. */
    int (*close)(void *ctx);
} weft_stream_ops;

typedef struct weft_stream_opts {
    size_t read_buffer;  /* 0: default (16 KiB) */
    size_t write_buffer; /* 0: default (16 KiB) */
    size_t max_line;     /* 0: default (64 KiB); longest line/frame read_until accepts,
                          * delimiter included (the read buffer grows to it if needed) */
} weft_stream_opts;

/* A stream over fd; the stream owns fd (closed by weft_stream_close, with
 * weft_close). opts may be NULL. 0 and *out, or -EBADF (fd < 0), -EINVAL,
 * -ENOMEM. Does not suspend. */
WEFT_API int weft_stream_open(int fd, const weft_stream_opts *opts, weft_stream **out);
/* A stream over a transport: ops (copied; read and write required) on ctx,
 * which the stream owns (ops->close releases it). 0 or -EINVAL, -ENOMEM.
 * Does not suspend. */
WEFT_API int weft_stream_open_ops(const weft_stream_ops *ops, void *ctx, const weft_stream_opts *opts,
                                  weft_stream **out);
/* Flushes what is buffered (for at most 5 s; flush first with your own
 * timeout to choose), then closes the transport and frees s, in every case.
 * Returns 0, the flush's error, or the transport's close error. Suspends
 * (while flushing). */
WEFT_API int weft_stream_close(weft_stream *s);
/* The descriptor of a stream opened with weft_stream_open (for
 * weft_shutdown, socket options...), -1 for other transports. Reading or
 * writing it directly bypasses the buffers. Does not suspend. */
WEFT_API int weft_stream_fd(const weft_stream *s);

/* Reads up to and including the first occurrence of delim (dlen bytes, 1 to
 * max_line). Zero-copy: *data points at the frame inside the read buffer,
 * valid until the next call on s. Returns:
 *   n > 0      a whole frame of n bytes, ending with delim;
 *   0          end of stream, nothing left;
 *   -ENODATA   end of stream in the middle of a frame: *data points at the
 *              partial bytes, weft_stream_buffered(s, NULL) counts them; they
 *              stay buffered (weft_stream_consume or a read takes them);
 *   -EMSGSIZE  no delim within max_line bytes: *data points at the buffered
 *              bytes, all kept (consume or read them to go on);
 *   -ETIMEDOUT, -errno: the bytes received so far stay buffered.
 * -EINVAL for a NULL argument or a bad dlen. Suspends. */
WEFT_API ssize_t weft_stream_read_until(weft_stream *s, const void *delim, size_t dlen,
                                        const char **data, int64_t timeout_ms);
/* weft_stream_read_until with delim "\n" (the frame includes the '\n'; a
 * caller wanting "\r\n" lines strips the '\r' or reads until "\r\n"). */
WEFT_API ssize_t weft_stream_read_line(weft_stream *s, const char **line, int64_t timeout_ms);
/* Reads exactly n bytes into buf. Returns n; 0 at end of stream before any
 * byte; -ENODATA when the stream ended after some but fewer than n (they stay
 * buffered: weft_stream_buffered); -ETIMEDOUT, -errno (the bytes received stay
 * buffered). Reads larger than the buffer go straight into buf. Suspends. */
WEFT_API ssize_t weft_stream_read_exact(weft_stream *s, void *buf, size_t n, int64_t timeout_ms);
/* Reads what is there: the buffered bytes if any (no wait), else one read of
 * the transport (straight into buf when n is at least the buffer's size).
 * Returns 1..n, 0 at end of stream, or -errno. Suspends. */
WEFT_API ssize_t weft_stream_read_some(weft_stream *s, void *buf, size_t n, int64_t timeout_ms);
/* Waits until at least n bytes are buffered, or end of stream, without
 * consuming them: *data points at the buffered bytes (valid until the next
 * call on s). Returns how many are buffered: >= n, or fewer (perhaps 0) when
 * the stream ended first. -EMSGSIZE when n is above both the read buffer
 * size and max_line; -ETIMEDOUT, -errno. n = 0 never waits. Suspends. */
WEFT_API ssize_t weft_stream_peek(weft_stream *s, size_t n, const char **data, int64_t timeout_ms);
/* The bytes buffered now (count returned, *data their start if data is not
 * NULL); no I/O. Does not suspend. */
WEFT_API size_t weft_stream_buffered(const weft_stream *s, const char **data);
/* Drops the first n buffered bytes (after peek or buffered). 0, or -EINVAL
 * when fewer than n are buffered. Does not suspend. */
WEFT_API int weft_stream_consume(weft_stream *s, size_t n);

/* Buffers n bytes for writing (goes to the transport when the buffer fills,
 * or at once for more than the buffer holds). Returns n or -errno (-EINVAL,
 * the write error that killed the stream). Suspends only when it must write. */
WEFT_API ssize_t weft_stream_write(weft_stream *s, const void *buf, size_t n, int64_t timeout_ms);
/* As weft_stream_write for the pieces of iov in order (iovcnt < IOV_MAX):
 * buffered if they fit, else one transport writev of the buffer and them.
 * Returns their total or -errno. */
WEFT_API ssize_t weft_stream_writev(weft_stream *s, const struct iovec *iov, int iovcnt,
                                    int64_t timeout_ms);
/* Sends what is buffered. 0 or -errno. Suspends. */
WEFT_API int weft_stream_flush(weft_stream *s, int64_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
