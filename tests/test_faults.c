/*
 * Allocation-failure injection (issue 17): for each path through the public
 * API (runtime create, spawn, join, channels, timers, sockets, the descriptor
 * table, streams, groups, sync objects, the blocking pool), the 1st, 2nd, ...
 * allocation the runtime makes on it is failed in turn (runtime/fault.c,
 * alloc.h: heap and stack mmap alike), until the path runs through with no
 * failure left to inject. At every N:
 *  - the path must report -ENOMEM (every call checks its result and the path
 *    gives up at the first error, undoing what it did): not crash, not hang,
 *    not return another code, not swallow the failure and carry on;
 *  - the same path, run again at once with allocation allowed, succeeds (the
 *    runtime keeps working after a failure);
 *  - nothing leaks: every N gets a fresh runtime, freed after, and LSan
 *    checks the process at exit (make test-faults builds with ASan).
 * A fresh runtime per N also means the caches (control-block chunks, stack
 * slabs, timer entries) are cold again, so their first allocations are on
 * the path every time. The failure is armed inside the path's task on a
 * one-worker runtime, so the order of allocations is the path's own.
 *
 * Built only by make test-faults (the runtime must be compiled with
 * -DWEFT_FAULT_INJECT), which make test runs.
 */
#include "util.h"
#include "alloc.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef WEFT_FAULT_INJECT
#error "tests/test_faults.c needs the runtime built with -DWEFT_FAULT_INJECT (make test-faults)"
#endif

/* A path returns 0 when every call succeeded, else the first error (which
 * must be -ENOMEM when an allocation was failed); -EPROTO: a call succeeded
 * but gave a wrong answer. */
typedef int (*path_fn)(weft_runtime *rt);

#define TRY(call)                                                                                  \
    do {                                                                                           \
        long rc_ = (long)(call);                                                                   \
        if (rc_ < 0)                                                                               \
            return (int)rc_;                                                                       \
    } while (0)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "test_faults: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            return -EPROTO;                                                                        \
        }                                                                                          \
    } while (0)

struct run {
    path_fn fn;
    weft_runtime *rt;
    long nth;
    int rc, again, hit;
    long count;
};

static void run_armed(struct run *r)
{
    weft__fault_arm(r->nth);
    r->rc = r->fn(r->rt);
    r->hit = weft__fault_hit();
    r->count = weft__fault_count();
    weft__fault_arm(0);
    r->again = r->fn(r->rt);
}

static void *run_root(void *arg)
{
    run_armed(arg);
    return NULL;
}

/* Fails allocation 1, 2, ... of fn until it runs through; in_task: fn runs
 * in the root task (else on this plain thread, with the runtime running). */
static void sweep(const char *name, path_fn fn, int in_task)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* One thread per pool: a pool that cannot start a second thread gives
     * the job to the one it has (blocking.c), so a failure there is
     * absorbed, not reported; with one thread the path's allocations are
     * the same every time. */
    setenv("WEFT_BLOCKING_MAX", "1", 1);
    setenv("WEFT_COMPUTE_MAX", "1", 1);
    long n;
    for (n = 1; n < 5000; n++) {
        weft_runtime *rt = test_runtime(1);
        struct run r = {.fn = fn, .rt = rt, .nth = n};
        if (in_task) {
            int rc = weft_runtime_block_on(rt, run_root, &r, NULL);
            cr_assert_eq(rc, 0, "%s: block_on: %d", name, rc);
        } else {
            run_armed(&r);
        }
        weft_runtime_free(rt);
        if (!r.hit) {
            cr_assert_eq(r.rc, 0, "%s: with no allocation failed the path returned %d", name, r.rc);
            break;
        }
        cr_assert_eq(r.rc, -ENOMEM, "%s: allocation %ld failed, the path returned %d (%s)", name, n,
                     r.rc, r.rc == 0 ? "the failure was swallowed" : strerror(-r.rc));
        cr_assert_eq(r.again, 0, "%s: after allocation %ld failed, the path run again returned %d",
                     name, n, r.again);
    }
    cr_assert_lt(n, 5000, "%s: still failing after %ld allocations", name, n);
    /* A path that allocates nothing would pass without testing anything. */
    cr_assert_gt(n, 1, "%s: the path made no allocation", name);
    cr_log_info("%s: %ld allocations, each failed in turn\n", name, n - 1);
}

/* ------------------------------------------------------------ runtime */

static void *ret_arg(void *a) { return a; }

static int p_runtime(weft_runtime *unused)
{
    (void)unused;
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    weft_runtime *rt;
    TRY(weft_runtime_create(&cfg, &rt));
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, ret_arg, (void *)5, &res);
    weft_runtime_free(rt);
    TRY(rc);
    CHECK(res == (void *)5);
    return 0;
}

Test(faults, runtime_create) { sweep("runtime create + block_on", p_runtime, 0); }

/* ------------------------------------------------------------ spawn, join */

static int spawn_join(const weft_spawn_opts *o, long v)
{
    weft_task *t;
    TRY(weft_task_spawn(NULL, ret_arg, (void *)v, o, &t));
    void *res = NULL;
    TRY(weft_join(t, &res));
    CHECK(res == (void *)v);
    return 0;
}

static int p_spawn(weft_runtime *rt)
{
    (void)rt;
    TRY(spawn_join(NULL, 1));
    /* a name (heap copy) and a stack of another size class (a new slab) */
    weft_spawn_opts o = {.name = "faulty", .stack_size = 1 << 20};
    TRY(spawn_join(&o, 2));
    /* more than one chunk of control blocks (WEFT_TASK_CHUNK, 64, in internal.h) */
    weft_task *t[72];
    int n = 0, rc = 0;
    for (; n < (int)(sizeof t / sizeof *t); n++)
        if ((rc = weft_task_spawn(NULL, ret_arg, (void *)(long)n, NULL, &t[n])) < 0)
            break;
    for (int i = 0; i < n; i++) {
        void *res = NULL;
        int jr = weft_join(t[i], &res);
        if (jr == 0 && res != (void *)(long)i)
            jr = -EPROTO;
        if (rc == 0)
            rc = jr;
    }
    return rc;
}

Test(faults, spawn_join) { sweep("spawn + join", p_spawn, 1); }

/* From a plain thread: the spawn's own cache of control blocks, and a join
 * that blocks the thread. */
static int p_spawn_outside(weft_runtime *rt)
{
    weft_task *t;
    TRY(weft_task_spawn(rt, ret_arg, (void *)3, NULL, &t));
    void *res = NULL;
    TRY(weft_join(t, &res));
    CHECK(res == (void *)3);
    return 0;
}

Test(faults, spawn_from_thread) { sweep("spawn from a thread", p_spawn_outside, 0); }

/* Returns its sleep's result (0 or -errno) as its result. */
static void *sleeper(void *a)
{
    return (void *)(intptr_t)weft_sleep_ms((uint64_t)(intptr_t)a);
}

static int first_error(void **res, int n)
{
    for (int i = 0; i < n; i++)
        if ((intptr_t)res[i] < 0)
            return (int)(intptr_t)res[i];
    return 0;
}

/* Joins what join_all left (it releases nothing when it fails). */
static int join_each(weft_task **t, int n, int rc)
{
    for (int i = 0; i < n; i++)
        if (t[i])
            weft_join(t[i], NULL);
    return rc;
}

static int p_join(weft_runtime *rt)
{
    (void)rt;
    weft_task *t[20] = {0};
    int n = 0, rc = 0;
    /* join_all of more than 16 handles: join_any takes a heap array then */
    for (; n < 20; n++)
        if ((rc = weft_task_spawn(NULL, sleeper, (void *)(intptr_t)(n % 2), NULL, &t[n])) < 0)
            return join_each(t, n, rc);
    void *res[20] = {0};
    rc = weft_join_any(t, n, &res[0], 10000);
    if (rc < 0)
        return join_each(t, n, rc);
    t[rc] = NULL;
    if ((intptr_t)res[0] < 0)
        return join_each(t, n, (int)(intptr_t)res[0]);
    weft_task *rest[20];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t[i])
            rest[m++] = t[i];
    rc = weft_join_all(rest, m, res, 10000);
    if (rc < 0)
        return join_each(rest, m, rc);
    CHECK(rc == 0);
    TRY(first_error(res, m));
    /* join_timeout: a timer entry */
    weft_task *s;
    TRY(weft_task_spawn(NULL, sleeper, (void *)2, NULL, &s));
    rc = weft_join_timeout(s, NULL, 0);
    if (rc != -ETIMEDOUT) {
        if (rc < 0)
            weft_join(s, NULL);
        return rc < 0 ? rc : -EPROTO;
    }
    void *r = NULL;
    rc = weft_join_timeout(s, &r, 10000);
    if (rc < 0 && rc != -ECANCELED && rc != -ENOMEM)
        weft_join(s, NULL);
    return rc < 0 ? rc : (int)(intptr_t)r;
}

Test(faults, join) { sweep("join_any, join_all, join_timeout", p_join, 1); }

/* ------------------------------------------------------------ timers */

static int p_timers(weft_runtime *rt)
{
    (void)rt;
    TRY(weft_sleep_ms(1));
    TRY(weft_sleep_until(weft_now() + 1000000));
    weft_event *e;
    TRY(weft_event_create(&e));
    int rc = weft_event_wait(e, 1);
    if (rc == -ETIMEDOUT) {
        /* a deadline scope over a wait without a timeout of its own */
        weft_deadline d;
        rc = weft_deadline_push(&d, 1);
        if (rc == 0) {
            rc = weft_event_wait(e, -1);
            weft_deadline_pop(&d);
            rc = rc == -ETIMEDOUT ? 0 : rc < 0 ? rc : -EPROTO;
        }
    } else if (rc == 0) {
        rc = -EPROTO;
    }
    weft_event_free(e);
    return rc;
}

Test(faults, timers) { sweep("sleep, sleep_until, timeout, deadline scope", p_timers, 1); }

/* ------------------------------------------------------------ sync objects */

static int p_sync(weft_runtime *rt)
{
    (void)rt;
    weft_mutex *m = NULL;
    weft_cond *c = NULL;
    weft_sem *s = NULL;
    weft_wg *wg = NULL;
    int rc;
    if ((rc = weft_mutex_create(&m)) < 0 || (rc = weft_cond_create(&c)) < 0 ||
        (rc = weft_sem_create(0, &s)) < 0 || (rc = weft_wg_create(&wg)) < 0)
        goto out;
    if ((rc = weft_mutex_lock(m, 1000)) < 0)
        goto out;
    rc = weft_cond_wait(c, m, 1);
    weft_mutex_unlock(m);
    if (rc != -ETIMEDOUT)
        goto wrong;
    if ((rc = weft_sem_acquire(s, 1)) != -ETIMEDOUT)
        goto wrong;
    weft_wg_add(wg, 1);
    rc = weft_wg_wait(wg, 1);
    weft_wg_done(wg);
    if (rc != -ETIMEDOUT)
        goto wrong;
    rc = 0;
    goto out;
wrong:
    rc = rc < 0 ? rc : -EPROTO;
out:
    weft_wg_free(wg);
    weft_sem_free(s);
    weft_cond_free(c);
    weft_mutex_free(m);
    return rc;
}

Test(faults, sync) { sweep("mutex, cond, sem, wait group", p_sync, 1); }

/* ------------------------------------------------------------ channels */

static void *chan_sender(void *a)
{
    weft_chan *ch = a;
    for (int i = 0; i < 3; i++) {
        int rc = weft_chan_send(ch, &i);
        if (rc < 0)
            return (void *)(intptr_t)rc;
    }
    return NULL;
}

static int p_chan(weft_runtime *rt)
{
    (void)rt;
    weft_chan *a = NULL, *b = NULL;
    weft_oneshot *o = NULL;
    weft_task *t = NULL;
    int rc, v = 0;
    if ((rc = weft_chan_create(0, sizeof(int), &a)) < 0 || (rc = weft_chan_create(4, sizeof(int), &b)) < 0 ||
        (rc = weft_oneshot_create(sizeof(int), &o)) < 0)
        goto out;
    if ((rc = weft_task_spawn(NULL, chan_sender, a, NULL, &t)) < 0)
        goto out;
    if ((rc = weft_chan_recv_timeout(a, &v, 5000)) < 0)
        goto out;
    if ((rc = weft_chan_recv_timeout(a, &v, 5000)) < 0)
        goto out;
    int w = 0;
    weft_select_case cs[2] = {{.chan = a, .op = WEFT_RECV, .elem = &v},
                              {.chan = b, .op = WEFT_RECV, .elem = &w}};
    if ((rc = weft_select(cs, 2, 5000)) < 0)
        goto out;
    if (rc != 0 || v != 2) {
        rc = -EPROTO;
        goto out;
    }
    if ((rc = weft_chan_recv_timeout(b, &w, 1)) != -ETIMEDOUT)
        goto wrong;
    if ((rc = weft_select(cs + 1, 1, 1)) != -ETIMEDOUT)
        goto wrong;
    int x = 9;
    if ((rc = weft_chan_send(b, &x)) < 0 || (rc = weft_chan_recv(b, &w)) < 0)
        goto out;
    if ((rc = weft_oneshot_recv(o, &w, 1)) != -ETIMEDOUT)
        goto wrong;
    if ((rc = weft_oneshot_send(o, &x)) < 0 || (rc = weft_oneshot_recv(o, &w, 1000)) < 0)
        goto out;
    rc = w == 9 ? 0 : -EPROTO;
    goto out;
wrong:
    rc = rc < 0 ? rc : -EPROTO;
out:
    if (t) {
        weft_chan_close(a);
        void *res = NULL;
        int jr = weft_join(t, &res);
        if (rc == 0 && jr < 0)
            rc = jr;
    }
    weft_oneshot_free(o);
    weft_chan_free(b);
    weft_chan_free(a);
    return rc;
}

Test(faults, chan) { sweep("chan create, send, recv, select, oneshot", p_chan, 1); }

/* ------------------------------------------------------------ sockets */

/* The server side's result rc, after joining its client task t (if any),
 * whose result is 0 or -errno: a client that gave up explains what the
 * server saw (an early end of stream, a reset), unless the server ran out
 * of memory itself. */
static int join_client(weft_task *t, int rc)
{
    if (!t)
        return rc;
    void *res = NULL;
    int jr = weft_join(t, &res);
    if (jr == 0)
        jr = (int)(intptr_t)res;
    return jr < 0 && rc != -ENOMEM ? jr : rc;
}

static void *tcp_client(void *a)
{
    int port = (int)(intptr_t)a;
    int fd = weft_tcp_connect("127.0.0.1", (uint16_t)port, 5000);
    if (fd < 0)
        return (void *)(intptr_t)fd;
    long rc = weft_write(fd, "ping", 4, 5000);
    char buf[4];
    if (rc >= 0)
        rc = weft_read(fd, buf, 4, 5000);
    if (rc >= 0)
        rc = rc == 4 && memcmp(buf, "pong", 4) == 0 ? 0 : -EPROTO;
    weft_close(fd);
    return (void *)(intptr_t)rc;
}

static int p_tcp(weft_runtime *rt)
{
    (void)rt;
    int lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    if (lfd < 0)
        return lfd;
    int port = weft_socket_port(lfd), rc = port;
    weft_task *t = NULL;
    int cfd = -1;
    if (port < 0 || (rc = weft_task_spawn(NULL, tcp_client, (void *)(intptr_t)port, NULL, &t)) < 0)
        goto out;
    if ((rc = cfd = weft_tcp_accept_timeout(lfd, NULL, 5000)) < 0)
        goto out;
    char buf[4];
    long n = weft_read(cfd, buf, 4, 5000);
    if (n >= 0)
        n = n == 4 && memcmp(buf, "ping", 4) == 0 ? 0 : -EPROTO;
    if (n == 0)
        n = weft_write(cfd, "pong", 4, 5000);
    rc = n < 0 ? (int)n : 0;
out:
    if (cfd >= 0)
        weft_close(cfd);
    weft_close(lfd); /* the client's connect or read ends now if it still waits */
    return join_client(t, rc);
}

Test(faults, tcp) { sweep("tcp listen, connect, accept, read, write", p_tcp, 1); }

/* The descriptor table grows by chunks of 4,096 entries, made on first use
 * (and freed with the last runtime): a descriptor past the first chunk. */
static const int fd_base = 4096;

static int p_fd_table(weft_runtime *rt)
{
    (void)rt;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    int hi = fcntl(sv[0], F_DUPFD_CLOEXEC, fd_base);
    close(sv[0]);
    if (hi < 0) {
        close(sv[1]);
        return -errno;
    }
    /* nothing to read yet: the read registers hi and waits */
    char c;
    int rc = (int)weft_read(hi, &c, 1, 1);
    if (rc == -ETIMEDOUT) {
        rc = (int)weft_write(sv[1], "x", 1, 1000);
        if (rc >= 0)
            rc = (int)weft_read(hi, &c, 1, 1000);
        rc = rc < 0 ? rc : 0;
    } else if (rc >= 0) {
        rc = -EPROTO;
    }
    weft_close(hi);
    weft_close(sv[1]);
    return rc;
}

Test(faults, fd_table) { sweep("descriptor table growth", p_fd_table, 1); }

/* ------------------------------------------------------------ streams */

static int p_stream(weft_runtime *rt)
{
    (void)rt;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    weft_stream *a = NULL, *b = NULL;
    /* small buffers: the long line grows the read buffer */
    weft_stream_opts o = {.read_buffer = 64, .write_buffer = 64, .max_line = 4096};
    int rc = weft_stream_open(sv[0], &o, &a);
    if (rc < 0) {
        weft_close(sv[0]);
        weft_close(sv[1]);
        return rc;
    }
    if ((rc = weft_stream_open(sv[1], &o, &b)) < 0) {
        weft_close(sv[1]);
        goto out;
    }
    char big[1000];
    memset(big, 'b', sizeof big);
    big[sizeof big - 1] = '\n';
    struct iovec iov[3] = {{"one\n", 4}, {big, sizeof big}, {"0123456789", 10}};
    long n;
    if ((n = weft_stream_writev(a, iov, 3, 5000)) < 0 || (n = weft_stream_write(a, "tail\n", 5, 5000)) < 0 ||
        (n = weft_stream_flush(a, 5000)) < 0) {
        rc = (int)n;
        goto out;
    }
    const char *line;
    if ((n = weft_stream_read_line(b, &line, 5000)) < 0)
        goto fail;
    if (n != 4 || memcmp(line, "one\n", 4) != 0)
        goto wrong;
    if ((n = weft_stream_read_line(b, &line, 5000)) < 0)
        goto fail;
    if (n != (long)sizeof big)
        goto wrong;
    char ten[10];
    if ((n = weft_stream_read_exact(b, ten, 10, 5000)) < 0)
        goto fail;
    if ((n = weft_stream_read_line(b, &line, 5000)) < 0)
        goto fail;
    if (n != 5)
        goto wrong;
    rc = 0;
    goto out;
wrong:
    n = -EPROTO;
fail:
    rc = (int)n;
out:
    if (b)
        weft_stream_close(b);
    weft_stream_close(a);
    return rc;
}

Test(faults, stream) { sweep("stream open, writev, flush, read_line, read_exact", p_stream, 1); }

/* ------------------------------------------------------------ groups */

static int p_group(weft_runtime *rt)
{
    (void)rt;
    weft_group *g;
    TRY(weft_group_create(0, &g));
    int rc = 0;
    for (int i = 0; i < 4 && rc >= 0; i++)
        rc = weft_group_spawn(g, sleeper, (void *)(intptr_t)(i % 2));
    if (rc >= 0) {
        void *res;
        rc = weft_group_next(g, &res, 5000);
        if (rc >= 0)
            rc = weft_group_wait(g, 5000);
        /* collect the rest: each child's result is its sleep's */
        int err = rc < 0 ? rc : (int)(intptr_t)res;
        while (weft_group_next(g, &res, 5000) >= 0)
            if (!err && (intptr_t)res < 0)
                err = (int)(intptr_t)res;
        rc = err;
    }
    weft_group_free(g);
    return rc < 0 ? rc : 0;
}

Test(faults, group) { sweep("group create, spawn, next, wait, free", p_group, 1); }

/* ------------------------------------------------------------ blocking pool */

static void *job(void *a) { return a; }

static int p_blocking(weft_runtime *rt)
{
    (void)rt;
    weft_task *t;
    TRY(weft_task_spawn_blocking(NULL, job, (void *)4, &t));
    void *res = NULL;
    TRY(weft_join(t, &res));
    CHECK(res == (void *)4);
    TRY(weft_task_spawn_compute(NULL, job, (void *)6, &t));
    TRY(weft_join(t, &res));
    CHECK(res == (void *)6);
    return 0;
}

Test(faults, blocking_pool) { sweep("blocking and compute pools", p_blocking, 1); }

/* ------------------------------------------------------------ names, udp, unix */

static int p_names_udp(weft_runtime *rt)
{
    (void)rt;
    struct addrinfo *ai;
    TRY(weft_resolve("localhost", "80", AF_INET, SOCK_STREAM, &ai));
    weft_freeaddrinfo(ai);
    int u = weft_udp_bind("127.0.0.1", 0);
    if (u < 0)
        return u;
    int port = weft_socket_port(u), rc = port;
    if (port >= 0) {
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        char c = 0;
        /* nothing there yet: the receive waits */
        rc = (int)weft_recvfrom(u, &c, 1, NULL, NULL, 1);
        if (rc == -ETIMEDOUT) {
            rc = (int)weft_sendto(u, "u", 1, (struct sockaddr *)&to, sizeof to, 1000);
            if (rc >= 0)
                rc = (int)weft_recvfrom(u, &c, 1, NULL, NULL, 1000);
            rc = rc < 0 ? rc : c == 'u' ? 0 : -EPROTO;
        } else if (rc >= 0) {
            rc = -EPROTO;
        }
    }
    weft_close(u);
    return rc;
}

Test(faults, names_udp) { sweep("resolve, udp bind, sendto, recvfrom", p_names_udp, 1); }

static void *unix_client(void *a)
{
    int fd = weft_unix_connect(a, 5000);
    if (fd < 0)
        return (void *)(intptr_t)fd;
    long rc = weft_write(fd, "u", 1, 5000);
    weft_close(fd);
    return (void *)(intptr_t)(rc < 0 ? rc : 0);
}

static int p_unix(weft_runtime *rt)
{
    (void)rt;
    char path[64];
    snprintf(path, sizeof path, "/tmp/weft-faults-%d.sock", (int)getpid());
    unlink(path);
    int lfd = weft_unix_listen(path, 4);
    if (lfd < 0)
        return lfd;
    weft_task *t = NULL;
    int rc = weft_task_spawn(NULL, unix_client, path, NULL, &t), cfd = -1;
    if (rc == 0 && (rc = cfd = weft_unix_accept(lfd, 5000)) >= 0) {
        char c;
        long n = weft_read(cfd, &c, 1, 5000);
        rc = n < 0 ? (int)n : n == 1 && c == 'u' ? 0 : -EPROTO;
        weft_close(cfd);
    }
    weft_close(lfd);
    unlink(path);
    return join_client(t, rc);
}

Test(faults, unix_sockets) { sweep("unix listen, connect, accept", p_unix, 1); }

/* ------------------------------------------------------------ files, processes */

static int p_files(weft_runtime *rt)
{
    (void)rt;
    char path[64];
    snprintf(path, sizeof path, "/tmp/weft-faults-%d.txt", (int)getpid());
    TRY(weft_write_file(path, "contents", 8));
    void *data = NULL;
    size_t len = 0;
    int rc = weft_read_file(path, &data, &len);
    weft_unlink(path);
    if (rc < 0)
        return rc;
    rc = len == 8 && memcmp(data, "contents", 8) == 0 ? 0 : -EPROTO;
    free(data);
    return rc;
}

Test(faults, files) { sweep("write_file, read_file", p_files, 1); }

static int p_process(weft_runtime *rt)
{
    (void)rt;
    const char *argv[] = {"cat", NULL};
    weft_process_opts o = {.argv = argv, .pipe_stdin = 1, .pipe_stdout = 1};
    weft_process *p;
    TRY(weft_process_spawn(&o, &p));
    weft_process_output out;
    int rc = weft_process_communicate(p, "through cat", 11, &out, 10000);
    if (rc == 0)
        rc = out.out_len == 11 && memcmp(out.out, "through cat", 11) == 0 ? 0 : -EPROTO;
    weft_process_output_free(&out);
    weft_process_free(p);
    return rc;
}

Test(faults, process) { sweep("process spawn, communicate", p_process, 1); }
