/*
 * Subprocesses: posix_spawn with optional pipes, waiting on a pidfd.
 *
 * Spawning. glibc's posix_spawn makes the child with clone(CLONE_VM |
 * CLONE_VFORK) and reports an exec failure through its return value, but
 * only because the child shares the parent's memory; under valgrind (which
 * drops CLONE_VM) the failure would turn into a child that exits 127. So
 * the program is looked up here first, as execvp would, and a missing or
 * non-executable one is reported by spawn itself everywhere. The pipes'
 * child ends are ordinary blocking descriptors moved to 0/1/2 by dup2 file
 * actions; every end is close-on-exec, so a child spawned concurrently by
 * another thread never inherits them.
 *
 * Waiting. A pidfd (pidfd_open, Linux 5.3) becomes readable when the child
 * exits: the task waits for that with weft_wait_fd and then reaps with
 * waitpid(WNOHANG). Without pidfd support (older kernel, or a tool that
 * does not know the call) the wait polls waitpid(WNOHANG) with a back-off
 * from 1 to 20 ms: slower to notice an exit, but it needs no SIGCHLD
 * handler, which would be process-wide state that the program may own.
 *
 * The pidfd stays open until weft_process_free, so weft_process_kill can
 * use it (pidfd_send_signal) even after the child was reaped: the kernel
 * then reports ESRCH instead of signalling a process that got the pid
 * number again.
 *
 * Process groups. A child started with new_pgroup or new_session leads a
 * group whose id is its pid. weft_process_kill_group signals that group
 * with kill(-pgid) only while the leader is not reaped: an unreaped child
 * (running or a zombie) holds its pid number, and a group id is always the
 * pid of the process that made it, so the number cannot name any other
 * group. Once the leader is reaped the number is free again as soon as the
 * group's last member goes, and nothing tells us when that happened, so
 * the call reports ESRCH from then on even if members may be left. A mutex
 * (reap_lock) makes the check and the kill one step against our own
 * reaping waitpid.
 *
 * communicate. One loop multiplexes the three pipes through a private
 * epoll descriptor, and waits for that descriptor with weft_wait_fd: an
 * epoll descriptor is itself pollable, so the same code suspends a task
 * (the worker's epoll watches ours) or blocks a plain thread (poll), with
 * no helper task to join or cancel and one deadline for everything.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define POLL_FIRST_MS 1
#define POLL_MAX_MS 20

struct weft_process {
    pid_t pid;
    pid_t pgid;           /* the child's own group (its pid); 0: it is in ours */
    int pidfd;            /* -1: no pidfd support, waits poll */
    int fds[3];           /* parent ends for 0, 1, 2; -1 when not a pipe */
    int status;           /* wait status, valid once reaped */
    _Atomic int reaped;   /* 1: reaped (status valid); 2: reaped by someone else */
    _Atomic int waiting;  /* a weft_process_wait is in progress */
    pthread_mutex_t reap_lock; /* our reaping waitpid against a group kill */
};

/* ------------------------------------------------------------ helpers */

/* Set once the kernel (or a tool such as valgrind 3.19) says ENOSYS, so the
 * call is not tried again for every child. */
static _Atomic int no_pidfd;

static int sys_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
    if (atomic_load_explicit(&no_pidfd, memory_order_relaxed)) {
        errno = ENOSYS;
        return -1;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS)
        atomic_store_explicit(&no_pidfd, 1, memory_order_relaxed);
    return fd;
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    (void)pidfd;
    (void)sig;
    errno = ENOSYS;
    return -1;
#endif
}

/* 0 when dfd/path names an executable regular file, else -errno (EACCES for
 * anything that is not a regular file, as execve says). */
static int check_exec(int dfd, const char *path)
{
    struct stat st;
    if (fstatat(dfd, path, &st, 0) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EACCES;
    if (faccessat(dfd, path, X_OK, AT_EACCESS) < 0)
        return -errno;
    return 0;
}

/* Finds the program: *path_out is a malloc'd path to hand to posix_spawn
 * (relative ones are resolved by the child after it changed directory to
 * cwd, so they are checked against dfd, which is cwd's descriptor or
 * AT_FDCWD). */
static int resolve(const char *name, int dfd, char **path_out)
{
    *path_out = NULL;
    if (strchr(name, '/')) {
        int rc = check_exec(dfd, name);
        if (rc < 0)
            return rc;
        *path_out = weft__strdup(name);
        return *path_out ? 0 : -ENOMEM;
    }
    const char *env = getenv("PATH");
    const char *dirs = env ? env : "/bin:/usr/bin";
    size_t nlen = strlen(name);
    int err = -ENOENT;
    for (const char *d = dirs;; d++) {
        const char *end = strchrnul(d, ':');
        size_t dlen = (size_t)(end - d);
        char *cand = weft__malloc(dlen + nlen + 3);
        if (!cand)
            return -ENOMEM;
        if (dlen == 0) /* an empty entry is the current directory */
            memcpy(cand, "./", 3);
        else {
            memcpy(cand, d, dlen);
            cand[dlen] = '/';
            cand[dlen + 1] = '\0';
        }
        strcat(cand, name);
        int rc = check_exec(dfd, cand);
        if (rc == 0) {
            *path_out = cand;
            return 0;
        }
        weft__free(cand);
        /* As execvp: remember that something was there but not usable. */
        if (rc == -EACCES)
            err = -EACCES;
        if (*end == '\0')
            break;
        d = end;
    }
    return err;
}

/* Moves fd to a number above 2 (a closed stdin/stdout/stderr in the parent
 * hands out low numbers), keeping close-on-exec. Returns the fd or -errno
 * (fd is closed on failure). */
static int above_stdio(int fd)
{
    if (fd > 2)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    return nfd < 0 ? -e : nfd;
}

static void close_pair(int pair[2])
{
    for (int i = 0; i < 2; i++)
        if (pair[i] >= 0) {
            close(pair[i]);
            pair[i] = -1;
        }
}

/* Reaps p if it has exited: 1 (reaped, status stored), 0 (still running),
 * -ECHILD (reaped by someone else) or another -errno. */
static int try_reap(weft_process *p)
{
    int r0 = atomic_load_explicit(&p->reaped, memory_order_acquire);
    if (r0)
        return r0 == 1 ? 1 : -ECHILD;
    int rc;
    pthread_mutex_lock(&p->reap_lock);
    for (;;) {
        if ((r0 = atomic_load_explicit(&p->reaped, memory_order_acquire)) != 0) {
            rc = r0 == 1 ? 1 : -ECHILD; /* a racing caller reaped it meanwhile */
            break;
        }
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->status = st;
            atomic_store_explicit(&p->reaped, 1, memory_order_release);
            rc = 1;
            break;
        }
        if (r == 0) {
            rc = 0;
            break;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == ECHILD)
            atomic_store_explicit(&p->reaped, 2, memory_order_release);
        rc = -e;
        break;
    }
    pthread_mutex_unlock(&p->reap_lock);
    return rc;
}

/* Signals the child alone: through the pidfd, so never a recycled pid. */
static int signal_child(weft_process *p, int sig)
{
    if (atomic_load_explicit(&p->reaped, memory_order_acquire))
        return -ESRCH;
    if (p->pidfd >= 0) {
        if (sys_pidfd_send_signal(p->pidfd, sig) == 0)
            return 0;
        int e = errno;
        if (e != ENOSYS)
            return -e;
    }
    /* No pidfd_send_signal: the pid is ours until reaped, and only a wait
     * racing with this call could reap it. */
    return kill(p->pid, sig) == 0 ? 0 : -errno;
}

/* ------------------------------------------------------------ public API */

int weft_process_spawn(const weft_process_opts *o, weft_process **out)
{
    if (out)
        *out = NULL;
    if (!o || !out || !o->argv || !o->argv[0] || !o->argv[0][0])
        return -EINVAL;

    int dfd = AT_FDCWD;
    if (o->cwd) {
        dfd = open(o->cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -errno;
    }
    char *path = NULL;
    int rc = resolve(o->argv[0], dfd, &path);
    if (dfd != AT_FDCWD)
        close(dfd);
    if (rc < 0)
        return rc;

    weft_process *p = weft__calloc(1, sizeof *p);
    if (!p) {
        weft__free(path);
        return -ENOMEM;
    }
    p->pid = -1;
    p->pidfd = -1;
    pthread_mutex_init(&p->reap_lock, NULL);
    int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    const int want[3] = {o->pipe_stdin, o->pipe_stdout, o->pipe_stderr};

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ok = 0, attr_ok = 0;
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        rc = -rc;
        goto fail;
    }
    fa_ok = 1;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        rc = -rc;
        goto fail;
    }
    attr_ok = 1;

    for (int i = 0; i < 3; i++) {
        if (!want[i])
            continue;
        if (pipe2(pipes[i], O_CLOEXEC) < 0) {
            rc = -errno;
            goto fail;
        }
        for (int e = 0; e < 2; e++) {
            int fd = above_stdio(pipes[i][e]);
            pipes[i][e] = fd < 0 ? -1 : fd;
            if (fd < 0) {
                rc = fd;
                goto fail;
            }
        }
        /* stdin: the child reads pipes[0][0], we write pipes[0][1]. */
        int child = i == 0 ? pipes[i][0] : pipes[i][1];
        int parent = i == 0 ? pipes[i][1] : pipes[i][0];
        if (fcntl(parent, F_SETFL, O_NONBLOCK) < 0) {
            rc = -errno;
            goto fail;
        }
        /* The table entry is made now, while failing is still simple (no
         * child yet); the fresh after the spawn then allocates nothing. */
        if ((rc = weft__fd_fresh_stream(parent)) < 0)
            goto fail;
        if ((rc = posix_spawn_file_actions_adddup2(&fa, child, i)) != 0) {
            rc = -rc;
            goto fail;
        }
    }
    if (o->cwd && (rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd)) != 0) {
        rc = -rc;
        goto fail;
    }

    /* The spawning worker's mask may hold anything (weft blocks SIGPIPE
     * around some writes); the child starts clean. */
    sigset_t none, pipe_only;
    sigemptyset(&none);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &pipe_only);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->new_session) {
        /* setsid makes the child a group leader too. Not SETPGROUP on top:
         * glibc calls setpgid after setsid, which fails for a session
         * leader. */
#ifdef POSIX_SPAWN_SETSID
        flags |= POSIX_SPAWN_SETSID;
#else
        rc = -ENOTSUP;
        goto fail;
#endif
    } else if (o->new_pgroup) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, flags);

    char *const *envp = o->envp ? (char *const *)o->envp : environ;
    pid_t pid;
    rc = posix_spawn(&pid, path, &fa, &attr, (char *const *)o->argv, envp);
    if (rc != 0) {
        rc = -rc;
        goto fail;
    }
    p->pid = pid;
    if (o->new_session || o->new_pgroup) {
        p->pgid = pid;
        /* Where the child does not share our memory (valgrind turns the
         * vfork into a fork) posix_spawn may return before the child has
         * made its group, and a group kill right away would find none. The
         * shells' cure: the parent makes it too (EACCES once the child has
         * exec'd: harmless). Not for a session: a child already leading a
         * group could not call setsid. */
        if (!o->new_session)
            setpgid(pid, pid);
    }

    for (int i = 0; i < 3; i++) {
        if (!want[i])
            continue;
        int child = i == 0 ? 0 : 1, parent = 1 - child;
        close(pipes[i][child]);
        pipes[i][child] = -1;
        p->fds[i] = pipes[i][parent];
        pipes[i][parent] = -1;
        /* A pipe is a stream: a short read means it is empty, so the next
         * read may wait for readiness first (see weft__fd_drained). */
        weft__fd_fresh_stream(p->fds[i]);
    }
    for (int i = 0; i < 3; i++)
        if (!want[i])
            p->fds[i] = -1;

    /* The child is ours and not reaped, so its pid cannot have been reused. */
    p->pidfd = sys_pidfd_open(pid);
    if (p->pidfd >= 0)
        weft__fd_fresh(p->pidfd);

    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    weft__free(path);
    *out = p;
    return 0;

fail:
    for (int i = 0; i < 3; i++)
        close_pair(pipes[i]);
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    weft__free(path);
    pthread_mutex_destroy(&p->reap_lock);
    weft__free(p);
    return rc;
}

int weft_process_stdin_fd(const weft_process *p) { return p ? p->fds[0] : -1; }
int weft_process_stdout_fd(const weft_process *p) { return p ? p->fds[1] : -1; }
int weft_process_stderr_fd(const weft_process *p) { return p ? p->fds[2] : -1; }
pid_t weft_process_pid(const weft_process *p) { return p ? p->pid : -1; }
pid_t weft_process_pgid(const weft_process *p) { return p && p->pgid > 0 ? p->pgid : -1; }

int weft_process_close_fd(weft_process *p, int which)
{
    if (!p || which < 0 || which > 2)
        return -EINVAL;
    int fd = p->fds[which];
    if (fd < 0)
        return -EBADF;
    p->fds[which] = -1;
    return weft_close(fd);
}

int weft_process_wait(weft_process *p, int *status_out, int64_t timeout_ms)
{
    if (!p)
        return -EINVAL;
    if (atomic_exchange_explicit(&p->waiting, 1, memory_order_acquire))
        return -EBUSY;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    unsigned step = POLL_FIRST_MS;
    int rc;
    for (;;) {
        rc = try_reap(p);
        if (rc == 1) {
            if (status_out)
                *status_out = p->status;
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
        int64_t left_ms = -1;
        if (deadline != WEFT__NO_DEADLINE) {
            int64_t left = deadline - weft__clock_ns();
            if (left <= 0) {
                rc = -ETIMEDOUT;
                break;
            }
            left_ms = (left + 999999) / 1000000;
        }
        if (p->pidfd >= 0) {
            int w = weft_wait_fd(p->pidfd, WEFT_READ, left_ms);
            if (w < 0 && w != -ETIMEDOUT) {
                rc = w;
                break;
            }
        } else {
            if (weft_cancelled()) {
                rc = -ECANCELED;
                break;
            }
            uint64_t ms = step;
            if (left_ms >= 0 && (uint64_t)left_ms < ms)
                ms = (uint64_t)left_ms;
            weft_sleep_ms(ms);
            step = step * 2 > POLL_MAX_MS ? POLL_MAX_MS : step * 2;
        }
    }
    atomic_store_explicit(&p->waiting, 0, memory_order_release);
    return rc;
}

int weft_process_kill(weft_process *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG)
        return -EINVAL;
    return signal_child(p, sig);
}

int weft_process_kill_group(weft_process *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG || p->pgid <= 0)
        return -EINVAL;
    int rc;
    pthread_mutex_lock(&p->reap_lock);
    if (atomic_load_explicit(&p->reaped, memory_order_acquire)) {
        rc = -ESRCH; /* the group id may have been reused: see the top */
    } else if (kill(-p->pgid, sig) == 0) {
        rc = 0;
    } else {
        rc = -errno;
        /* No member at all, yet the leader is not reaped: the group is not
         * made yet (a new session under valgrind, see spawn) or the leader
         * left it. Either way the child is all there is to reach. */
        if (rc == -ESRCH)
            rc = signal_child(p, sig);
    }
    pthread_mutex_unlock(&p->reap_lock);
    return rc;
}

void weft_process_free(weft_process *p)
{
    if (!p)
        return;
    for (int i = 0; i < 3; i++)
        if (p->fds[i] >= 0)
            weft_close(p->fds[i]);
    if (try_reap(p) == 0) {
        weft_process_kill(p, SIGKILL);
        if (p->pidfd >= 0 && weft_in_task()) {
            /* SIGKILL is not held off, so this is short; not cancellable,
             * or the child would be left a zombie. */
            weft_shield_begin();
            while (try_reap(p) == 0)
                weft_wait_fd(p->pidfd, WEFT_READ, 100);
            weft_shield_end();
        } else {
            int st;
            while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
                ;
        }
    }
    if (p->pidfd >= 0)
        weft_close(p->pidfd);
    pthread_mutex_destroy(&p->reap_lock);
    weft__free(p);
}

/* ------------------------------------------------------------ communicate */

#define SINK_FIRST 16384 /* first buffer of a stream */
#define SINK_MIN_READ 4096

typedef struct sink {
    char *buf;
    size_t len, cap; /* cap - len - 1 is free: one byte stays for the NUL */
} sink;

/* Milliseconds left before deadline, rounded up (-1: no deadline, 0: passed). */
static int64_t ms_left(weft__deadline deadline)
{
    if (deadline == WEFT__NO_DEADLINE)
        return -1;
    int64_t left = deadline - weft__clock_ns();
    return left <= 0 ? 0 : (left + 999999) / 1000000;
}

static int sink_reserve(sink *s, size_t want)
{
    if (s->cap - s->len >= want + 1)
        return 0;
    size_t cap = s->cap ? s->cap : SINK_FIRST;
    while (cap - s->len < want + 1) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *b = weft__realloc(s->buf, cap);
    if (!b)
        return -ENOMEM;
    s->buf = b;
    s->cap = cap;
    return 0;
}

/* One read into s: the count (0 at end of file), -EAGAIN or -errno. */
static ssize_t sink_read(int fd, sink *s)
{
    int rc = sink_reserve(s, SINK_MIN_READ);
    if (rc < 0)
        return rc;
    ssize_t n = read(fd, s->buf + s->len, s->cap - s->len - 1);
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    s->len += (size_t)n;
    return n;
}

/* write() to a pipe without SIGPIPE for a reader that is gone: SIGPIPE is
 * blocked around the call and the one it raised taken back before
 * unblocking (the same dance as weft_write's pipe path in net.c). Nothing
 * suspends in between, so the mask is the one thread's throughout. The
 * count, -EAGAIN or -errno (-EPIPE). */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t n)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE) == 1;
    ssize_t r = write(fd, buf, n > SSIZE_MAX ? SSIZE_MAX : n);
    int e = r < 0 ? errno : 0;
    if (e == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r >= 0)
        return r;
    return e == EINTR ? -EAGAIN : -e;
}

/* Takes stream i out of the set and closes our end. */
static void stream_done(weft_process *p, int epfd, int i)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, p->fds[i], NULL);
    weft_process_close_fd(p, i);
}

/* SIGKILL for a child whose time is up (its whole group when it has one,
 * so no grandchild lingers holding a pipe), then reap it. */
static int kill_and_reap(weft_process *p, int *status)
{
    int k = p->pgid > 0 ? weft_process_kill_group(p, SIGKILL) : weft_process_kill(p, SIGKILL);
    /* SIGKILL is not held off, so the wait is short; it is not
     * cancellable, or the child would be left a zombie. Where the kill
     * failed (EPERM) the child may live on: only look. */
    int64_t t = k == 0 || k == -ESRCH ? -1 : 0;
    weft_shield_begin(); /* -EPERM in a plain thread: nothing to hold off */
    int rc = weft_process_wait(p, status, t);
    weft_shield_end();
    return rc;
}

int weft_process_communicate(weft_process *p, const void *input, size_t input_len,
                             weft_process_output *out, int64_t timeout_ms)
{
    if (out)
        *out = (weft_process_output){.status = -1};
    if (!p || !out || (!input && input_len > 0))
        return -EINVAL;
    if (input_len > 0 && p->fds[0] < 0)
        return -EINVAL;
    weft__deadline deadline = weft__deadline_from_ms(timeout_ms);
    const int piped_out = p->fds[1] >= 0, piped_err = p->fds[2] >= 0;
    sink s[3] = {{0}};
    size_t off = 0;
    int rc = 0, open_n = 0;

    if (input_len == 0 && p->fds[0] >= 0)
        weft_process_close_fd(p, 0); /* nothing to say: end of file now */

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        rc = -errno;
        goto out;
    }
    /* The number may carry a registration of a descriptor that was closed
     * without weft_close. */
    weft__fd_fresh(epfd);
    for (int i = 0; i < 3; i++) {
        if (p->fds[i] < 0)
            continue;
        struct epoll_event ev = {.events = i == 0 ? EPOLLOUT : EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fds[i], &ev) < 0) {
            rc = -errno;
            goto out;
        }
        open_n++;
    }

    while (open_n > 0) {
        /* Checked on every round, not only when idle: a child that never
         * stops writing must time out too. */
        if (ms_left(deadline) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        struct epoll_event ev[3];
        int n = epoll_wait(epfd, ev, 3, 0);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            rc = -e;
            break;
        }
        if (n == 0) {
            /* Every stream is drained or full: sleep until one moves. A
             * spurious wake-up only costs a round. */
            int w = weft_wait_fd(epfd, WEFT_READ, ms_left(deadline));
            if (w < 0 && w != -ETIMEDOUT) {
                rc = w;
                break;
            }
            continue;
        }
        for (int k = 0; k < n && rc == 0; k++) {
            int i = (int)ev[k].data.u32;
            if (p->fds[i] < 0)
                continue;
            if (i == 0) {
                ssize_t w = write_nosigpipe(p->fds[0], (const char *)input + off, input_len - off);
                if (w >= 0)
                    off += (size_t)w;
                /* A child that stops reading (EPIPE) has had its say, as
                 * asyncio treats it: not an error. */
                if (off == input_len || w == -EPIPE) {
                    stream_done(p, epfd, 0);
                    open_n--;
                } else if (w < 0 && w != -EAGAIN) {
                    rc = (int)w;
                }
            } else {
                ssize_t r = sink_read(p->fds[i], &s[i]);
                if (r == 0) {
                    stream_done(p, epfd, i);
                    open_n--;
                } else if (r < 0 && r != -EAGAIN) {
                    rc = (int)r;
                }
            }
        }
        if (rc < 0)
            break;
    }

    if (rc == 0)
        rc = weft_process_wait(p, &out->status, ms_left(deadline));
    if (rc == -ETIMEDOUT) {
        int st;
        if (kill_and_reap(p, &st) == 0)
            out->status = st;
    }

out:
    for (int i = 0; i < 3; i++)
        if (p->fds[i] >= 0)
            weft_process_close_fd(p, i); /* what is left unread is lost */
    if (epfd >= 0)
        weft_close(epfd);
    /* Piped streams always come back as a buffer, empty or not, ending in
     * a NUL that the length does not count. */
    for (int i = 1; i < 3; i++) {
        if (!(i == 1 ? piped_out : piped_err))
            continue;
        if (!s[i].buf && !(s[i].buf = weft__malloc(1))) {
            if (rc == 0)
                rc = -ENOMEM;
            continue;
        }
        s[i].buf[s[i].len] = '\0'; /* a read always leaves the byte free */
    }
    out->out = s[1].buf;
    out->out_len = s[1].len;
    out->err = s[2].buf;
    out->err_len = s[2].len;
    return rc;
}

void weft_process_output_free(weft_process_output *o)
{
    if (!o)
        return;
    weft__free(o->out);
    weft__free(o->err);
    o->out = o->err = NULL;
    o->out_len = o->err_len = 0;
}
