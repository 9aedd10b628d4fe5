/*
 * The descriptor table of the poller layer (backend independent): per fd, the
 * generation, the poller it is registered with, and one waiter and one
 * "ready" flag per direction. See poller.h for the protocol.
 *
 * Each entry has a tiny spinlock: the critical sections are a few stores, and
 * the two parties (the waiting task and the poller that saw the event) rarely
 * meet on one descriptor at the same instant.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "poller.h"
#include "alloc.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>


#define CHUNK_SHIFT 12
#define CHUNK (1u << CHUNK_SHIFT)
#define MAX_CHUNKS (1u << 14) /* 64M descriptors */

typedef struct fdstate {
    _Atomic int lock;
    uint32_t gen;
    weft__poller *poller;
    _Atomic uint8_t ready[2];   /* written under the lock, read lock-free by hints */
    _Atomic uint8_t drained[2]; /* stream only: last read emptied the buffer */
    _Atomic uint32_t events[2]; /* readiness events seen, per direction */
    _Atomic uint8_t hup;        /* hang-up or error seen: no edge will come again */
    uint8_t stream;
    _Atomic uint8_t owned;      /* made by weft (weft__fd_fresh*): non-blocking, closed by weft_close */
    uint8_t waiting[2];
    struct weft_task *task[2];
    uint64_t token[2];
    /* The open file the registration is for (fstat at registration): a
     * descriptor closed behind weft's back whose number now names another
     * file no longer matches, see weft__fd_check. */
    dev_t dev;
    ino_t ino;
} fdstate;

static fdstate *_Atomic chunks[MAX_CHUNKS];
static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;

static fdstate *lookup(int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= CHUNK * MAX_CHUNKS)
        return NULL;
    unsigned c = (unsigned)fd >> CHUNK_SHIFT;
    fdstate *ch = atomic_load_explicit(&chunks[c], memory_order_acquire);
    if (!ch) {
        if (!create)
            return NULL;
        pthread_mutex_lock(&chunk_lock);
        ch = atomic_load_explicit(&chunks[c], memory_order_relaxed);
        if (!ch) {
            ch = weft__calloc(CHUNK, sizeof *ch);
            if (ch)
                atomic_store_explicit(&chunks[c], ch, memory_order_release);
        }
        pthread_mutex_unlock(&chunk_lock);
        if (!ch)
            return NULL;
    }
    return &ch[(unsigned)fd & (CHUNK - 1)];
}

/* The cookie a registration's fired records carry: the generation it was
 * made under, and the descriptor. */
static inline uint64_t cookie_of(const fdstate *s, int fd)
{
    return ((uint64_t)s->gen << 32) | (uint32_t)fd;
}

static void lock(fdstate *s)
{
    while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
        while (atomic_load_explicit(&s->lock, memory_order_relaxed))
            weft__cpu_relax();
}

static void unlock(fdstate *s) { atomic_store_explicit(&s->lock, 0, memory_order_release); }

/* Under the lock, before a reset or generation bump that drops a live
 * registration: a backend whose registrations pin the file (io_uring)
 * cancels it now, or close(fd) would leave the socket open behind a
 * pending poll. Free under epoll (its entries die with the file). */
static inline void release_locked(fdstate *s, int fd)
{
    if (s->poller && weft__poller_pins_files(s->poller))
        weft__poller_unregister(s->poller, fd, cookie_of(s, fd));
}

/* Under the lock: forgets the registration (its events, carrying the old
 * generation, are dropped from now on) and hands back the waiters. */
static void reset(fdstate *s, struct weft_task *t[2], uint64_t tok[2])
{
    s->gen++;
    s->poller = NULL;
    for (int d = 0; d < 2; d++) {
        if (s->waiting[d]) {
            t[d] = s->task[d];
            tok[d] = s->token[d];
        }
        s->waiting[d] = 0;
        s->ready[d] = 0;
        s->drained[d] = 0;
        s->task[d] = NULL;
    }
    s->hup = 0;
    s->stream = 0;
    s->owned = 0;
}

static void wake_both(struct weft_task *t[2], uint64_t tok[2], weft__ready_fn fn, void *ctx)
{
    for (int d = 0; d < 2; d++)
        if (t[d] && fn)
            fn(t[d], tok[d], ctx);
}

/* Under the lock, on a descriptor registered nowhere: registers it with p,
 * edge-triggered for both directions, and remembers which file it is. */
static int bind_locked(fdstate *s, weft__poller *p, int fd)
{
    s->ready[0] = s->ready[1] = 0;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* epoll_ctl refuses these with EPERM; an io_uring poll would report
     * them ready at once, forever: refuse them the same way. */
    if (weft__poller_pins_files(p) && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
        return -EPERM;
    int rc = weft__poller_register(p, fd, cookie_of(s, fd));
    if (rc < 0)
        return rc;
    s->poller = p;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    return 0;
}

int weft__fd_bind(weft__poller *p, int fd)
{
    fdstate *s = lookup(fd, 1);
    if (!s)
        return fd < 0 ? -EBADF : -ENOMEM;
    lock(s);
    int rc = s->poller ? 0 : bind_locked(s, p, fd);
    unlock(s);
    return rc;
}

int weft__fd_wait(weft__poller *p, int fd, int dir, struct weft_task *task, uint64_t token,
                  uint32_t *gen_out)
{
    fdstate *s = lookup(fd, 1);
    if (!s)
        return fd < 0 ? -EBADF : -ENOMEM;
    lock(s);
    if (!s->poller) {
        /* First wait since open (or since weft__fd_close), and not bound
         * yet: register with the caller's poller. */
        int rc = bind_locked(s, p, fd);
        if (rc < 0) {
            unlock(s);
            return rc;
        }
    }
    *gen_out = s->gen;
    s->drained[dir] = 0; /* whatever the wait ends with, the next read tries */
    if (s->ready[dir]) {
        s->ready[dir] = 0;
        unlock(s);
        return 1;
    }
    if (s->waiting[dir]) {
        unlock(s);
        return -EEXIST;
    }
    s->waiting[dir] = 1;
    s->task[dir] = task;
    s->token[dir] = token;
    unlock(s);
    return 0;
}

int weft__fd_unwait(int fd, int dir, uint32_t gen)
{
    fdstate *s = lookup(fd, 0);
    if (!s)
        return -EBADF;
    lock(s);
    int rc;
    if (s->gen != gen) {
        rc = -EBADF;
    } else {
        s->waiting[dir] = 0;
        s->task[dir] = NULL;
        rc = s->ready[dir];
        s->ready[dir] = 0;
        /* A foreign descriptor on a backend that pins files: its library
         * may close() it any time, and a pending poll would keep the
         * socket open. So its registration lives only while a waiter
         * waits: the last one out cancels it, and the next wait registers
         * afresh (under a new generation, so a late record of this one is
         * dropped). */
        if (!s->owned && !s->waiting[dir ^ 1] && s->poller && weft__poller_pins_files(s->poller)) {
            release_locked(s, fd);
            s->gen++;
            s->poller = NULL;
            s->ready[0] = s->ready[1] = 0;
        }
    }
    unlock(s);
    return rc;
}

/* One fired record of poller p: marks readiness and hands over the waiters.
 * Stale generations and foreign pollers are ignored. */
static inline void fired_one(weft__poller *p, uint64_t data, uint32_t events, weft__ready_fn fn,
                             void *ctx)
{
    int fd = (int)(uint32_t)data;
    uint32_t gen = (uint32_t)(data >> 32);
    fdstate *s = lookup(fd, 0);
    if (!s)
        return;
    struct weft_task *t[2] = {NULL, NULL};
    uint64_t tok[2] = {0, 0};
    int hup = (events & WEFT__FIRED_HUP) != 0;
    lock(s);
    if (s->gen != gen || s->poller != p) {
        unlock(s);
        return;
    }
    if (weft__unlikely(events & WEFT__FIRED_REARM) && weft__poller_register(p, fd, data) < 0) {
        /* Cannot poll it any more (closed behind weft's back, out of
         * memory): unbind, keeping the generation, and wake the waiters:
         * they retry, and a wait registers afresh or reports the error. */
        s->poller = NULL;
        events |= WEFT__FIRED_RD | WEFT__FIRED_WR;
    }
    int fire[2] = {(events & WEFT__FIRED_RD) != 0, (events & WEFT__FIRED_WR) != 0};
    for (int d = 0; d < 2; d++) {
        if (!fire[d])
            continue;
        if (hup) /* before the count: see weft__fd_drained */
            atomic_store_explicit(&s->hup, 1, memory_order_seq_cst);
        atomic_fetch_add_explicit(&s->events[d], 1, memory_order_seq_cst); /* before ready */
        s->ready[d] = 1;
        if (s->waiting[d]) {
            t[d] = s->task[d];
            tok[d] = s->token[d];
        }
    }
    unlock(s);
    for (int d = 0; d < 2; d++)
        if (t[d])
            fn(t[d], tok[d], ctx);
}

void weft__fd_fired(weft__poller *p, const weft__fired *fired, int n, weft__ready_fn fn, void *ctx)
{
    for (int i = 0; i < n; i++)
        fired_one(p, fired[i].data, fired[i].events, fn, ctx);
}

int weft__fd_close(int fd, weft__ready_fn fn, void *ctx)
{
    fdstate *s = lookup(fd, 0);
    struct weft_task *t[2] = {NULL, NULL};
    uint64_t tok[2] = {0, 0};
    if (s) {
        lock(s);
        release_locked(s, fd);
        reset(s, t, tok);
        unlock(s);
    }
    /* Close before waking: a woken waiter that retries its operation then
     * sees EBADF rather than a live descriptor. */
    int rc = close(fd) == 0 ? 0 : -errno;
    wake_both(t, tok, fn, ctx);
    return rc;
}

int weft__fd_check(int fd, int always, weft__ready_fn fn, void *ctx)
{
    fdstate *s = lookup(fd, 0);
    if (!s)
        return 0;
    lock(s);
    if (!s->poller || (s->owned && !always)) {
        unlock(s);
        return 0;
    }
    uint32_t gen = s->gen;
    dev_t dev = s->dev;
    ino_t ino = s->ino;
    unlock(s);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_dev == dev && st.st_ino == ino)
        return 0;
    struct weft_task *t[2] = {NULL, NULL};
    uint64_t tok[2] = {0, 0};
    lock(s);
    if (s->gen == gen) {
        release_locked(s, fd); /* pins the old file, which nobody can name now */
        reset(s, t, tok);
    }
    unlock(s);
    wake_both(t, tok, fn, ctx);
    return 1;
}

int weft__fd_forget(int fd, weft__ready_fn fn, void *ctx)
{
    fdstate *s = lookup(fd, 0);
    if (!s)
        return 0;
    struct weft_task *t[2] = {NULL, NULL};
    uint64_t tok[2] = {0, 0};
    lock(s);
    weft__poller *p = s->poller;
    if (p) /* under the lock: a concurrent first wait must not register in between */
        weft__poller_unregister(p, fd, cookie_of(s, fd));
    int had = p != NULL || s->owned;
    reset(s, t, tok);
    unlock(s);
    wake_both(t, tok, fn, ctx);
    return had;
}

weft__poller *weft__fd_poller_of(int fd)
{
    fdstate *s = lookup(fd, 0);
    if (!s)
        return NULL;
    lock(s);
    weft__poller *p = s->poller;
    unlock(s);
    return p;
}

int weft__fd_owned(int fd)
{
    fdstate *s = lookup(fd, 0);
    return s && atomic_load_explicit(&s->owned, memory_order_relaxed);
}

static int fresh(int fd, int stream)
{
    fdstate *s = lookup(fd, stream);
    if (!s) /* nothing remembered; or, for a stream, no memory for the entry */
        return stream && fd >= 0 ? -ENOMEM : 0;
    lock(s);
    if (s->poller || s->waiting[0] || s->waiting[1]) {
        release_locked(s, fd); /* the old file, closed with plain close() */
        s->gen++;
        s->poller = NULL;
        s->waiting[0] = s->waiting[1] = 0;
        s->ready[0] = s->ready[1] = 0;
        s->task[0] = s->task[1] = NULL;
    }
    s->drained[0] = s->drained[1] = 0;
    s->hup = 0;
    s->stream = (uint8_t)stream;
    s->owned = 1;
    unlock(s);
    return 0;
}

int weft__fd_fresh(int fd) { return fresh(fd, 0); }
int weft__fd_fresh_stream(int fd) { return fresh(fd, 1); }

uint32_t weft__fd_event_seq(int fd, int dir)
{
    fdstate *s = lookup(fd, 0);
    return s ? atomic_load_explicit(&s->events[dir], memory_order_seq_cst) : 0;
}

void weft__fd_drained(int fd, int dir, uint32_t seq)
{
    fdstate *s = lookup(fd, 0);
    if (!s || !s->stream)
        return;
    /* weft__fd_fired counts an event before it sets ready. So: if the count
     * still equals seq after we clear ready and set drained, no event has
     * come since the read, and any later one sets ready again after our
     * clear. If it moved, the event may be for data the read did not see:
     * undo, and the next read tries the system call. */
    /* A hang-up (end of stream, peer gone, error) is a state, not data: a
     * read that drained the data leaves it pending, and no further edge
     * will announce it, so a stream that has seen one is never marked. */
    if (atomic_load_explicit(&s->events[dir], memory_order_seq_cst) != seq ||
        atomic_load_explicit(&s->hup, memory_order_seq_cst))
        return;
    atomic_store_explicit(&s->ready[dir], 0, memory_order_seq_cst);
    atomic_store_explicit(&s->drained[dir], 1, memory_order_seq_cst);
    if (atomic_load_explicit(&s->events[dir], memory_order_seq_cst) != seq ||
        atomic_load_explicit(&s->hup, memory_order_seq_cst)) {
        atomic_store_explicit(&s->drained[dir], 0, memory_order_seq_cst);
        atomic_store_explicit(&s->ready[dir], 1, memory_order_seq_cst);
    }
}

int weft__fd_worth_trying(int fd, int dir)
{
    fdstate *s = lookup(fd, 0);
    if (!s || !atomic_load_explicit(&s->drained[dir], memory_order_seq_cst))
        return 1;
    return atomic_load_explicit(&s->ready[dir], memory_order_seq_cst) != 0;
}

void weft__fd_forget_poller(weft__poller *p)
{
    for (unsigned c = 0; c < MAX_CHUNKS; c++) {
        fdstate *ch = atomic_load_explicit(&chunks[c], memory_order_acquire);
        if (!ch)
            continue;
        for (unsigned i = 0; i < CHUNK; i++) {
            fdstate *s = &ch[i];
            lock(s);
            if (s->poller == p) {
                s->poller = NULL;
                s->gen++;
                s->waiting[0] = s->waiting[1] = 0;
                s->ready[0] = s->ready[1] = 0;
            }
            unlock(s);
        }
    }
}

uint64_t weft__fd_count_poller(const weft__poller *p)
{
    uint64_t n = 0;
    for (unsigned c = 0; c < MAX_CHUNKS; c++) {
        fdstate *ch = atomic_load_explicit(&chunks[c], memory_order_acquire);
        if (!ch)
            continue;
        for (unsigned i = 0; i < CHUNK; i++) {
            lock(&ch[i]);
            n += ch[i].poller == p;
            unlock(&ch[i]);
        }
    }
    return n;
}

void weft__fd_table_free(void)
{
    pthread_mutex_lock(&chunk_lock);
    for (unsigned c = 0; c < MAX_CHUNKS; c++) {
        fdstate *ch = atomic_exchange(&chunks[c], NULL);
        weft__free(ch);
    }
    pthread_mutex_unlock(&chunk_lock);
}
