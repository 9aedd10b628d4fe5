/*
 * Idle memory per waiting task: what one waiting weft task costs against
 * what one waiting pthread costs, counting all the memory each costs.
 * Shared by bench/idle_memory.c and its smoke test
 * (tests/test_idle_memory_smoke.c). Header only, static functions.
 *
 * Each run puts N units in a wait at once, measures, releases them and
 * cleans up. All units run the same trivial body: note arrival, wait.
 *   weft       N weft tasks, each parked in weft_event_wait(ev, -1) (an
 *              event standing for "the reply has come"); released with
 *              weft_event_set and joined from the measuring thread
 *   thread     N pthreads with default attributes (8 MiB stack here), each
 *              blocked in pthread_cond_wait (a futex wait)
 *   thread64k  the same with a 64 KiB stack (pthread_attr_setstacksize):
 *              a smaller user stack does not remove the kernel stack
 *
 * What is counted, as the difference of two readings taken in the same
 * process right before the N units are made and once all of them wait:
 *   rss     VmRSS of /proc/self/status (stacks touched, control blocks,
 *           heap, thread descriptors and TLS)
 *   pte     VmPTE of /proc/self/status (page-table pages)
 *   kstack  the kernel stack of each thread. No per-process counter holds
 *           it, so it is the change of KernelStack in /proc/meminfo, which
 *           is system-wide; the expected value is the number of threads the
 *           process gained (/proc/self/status Threads) x IDLE_MEM_THREAD_SIZE.
 *           The measured change is used when it is within 25% of the
 *           expected one, else the expected value (kstack_from_expected).
 *           A weft task adds no thread: its expected kstack is 0.
 *   slab    the change of SUnreclaim in /proc/meminfo (task_struct and the
 *           other kernel objects of a thread, VMAs): system-wide and noisy,
 *           reported for information only, never in the total.
 *
 * The measurement happens only once every unit has reached its wait: a
 * thread counts itself under the mutex it then releases in
 * pthread_cond_wait, so when the measuring thread holds that mutex and
 * sees N, all N are in the wait; a task counts itself right before
 * weft_event_wait, and the measuring thread then also waits until no other
 * thread of the process is runnable (state R in /proc/self/task/<tid>/stat):
 * a task between its count and its park would keep its worker running.
 *
 * One unit goes through the whole cycle first (made, waiting, released,
 * joined) so that one-time costs (code pages first touched in this forked
 * process, allocator metadata) are not charged to the N units. For weft that
 * warm-up is part of the runtime's fixed cost, which is measured from before
 * weft_runtime_new to that point (it includes the workers' kernel stacks).
 */
#ifndef WEFT_BENCH_IDLE_MEM_H
#define WEFT_BENCH_IDLE_MEM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

/* THREAD_SIZE on x86-64 (and arm64 with 4 KiB pages) without KASAN: the
 * kernel stack every thread has, whatever its user stack. */
#define IDLE_MEM_THREAD_SIZE 16384.0

enum { IDLE_MEM_WEFT, IDLE_MEM_THREAD, IDLE_MEM_THREAD64K, IDLE_MEM_NMODELS };
static const char *const idle_mem_model_names[IDLE_MEM_NMODELS] = {"weft", "thread", "thread64k"};
#define IDLE_MEM_SMALL_STACK (64 * 1024)

/* ------------------------------------------------------------ readings */

typedef struct idle_mem_reading {
    long rss_kb, pte_kb, threads; /* /proc/self/status: VmRSS, VmPTE, Threads */
    long kstack_kb, slab_kb;      /* /proc/meminfo: KernelStack, SUnreclaim (system-wide) */
} idle_mem_reading;

/* Reads a small /proc file into buf with plain system calls (no stdio, no
 * heap: the readings must not disturb what they measure). */
static int idle_mem__slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t k = read(fd, buf + len, cap - 1 - len);
        if (k < 0) {
            close(fd);
            return -1;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    buf[len] = '\0';
    close(fd);
    return 0;
}

/* The number after "key" at the start of a line of buf; -1 when absent. */
static long idle_mem__field(const char *buf, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0)
            return strtol(p + kl, NULL, 10);
    }
    return -1;
}

static int idle_mem_read(idle_mem_reading *r)
{
    char buf[8192];
    if (idle_mem__slurp("/proc/self/status", buf, sizeof buf) != 0)
        return -1;
    r->rss_kb = idle_mem__field(buf, "VmRSS:");
    r->pte_kb = idle_mem__field(buf, "VmPTE:");
    r->threads = idle_mem__field(buf, "Threads:");
    if (idle_mem__slurp("/proc/meminfo", buf, sizeof buf) != 0)
        return -1;
    r->kstack_kb = idle_mem__field(buf, "KernelStack:");
    r->slab_kb = idle_mem__field(buf, "SUnreclaim:");
    return r->rss_kb >= 0 && r->pte_kb >= 0 && r->threads >= 0 && r->kstack_kb >= 0 ? 0 : -1;
}

/* ------------------------------------------------------------ costs */

typedef struct idle_mem_cost {
    double rss, pte;       /* bytes */
    double kstack;         /* bytes counted in total: measured or expected */
    double kstack_measured, kstack_expected;
    double total;          /* rss + pte + kstack */
    double slab;           /* information only; not in total */
    long threads;          /* threads the process gained */
    int kstack_from_expected; /* 1: measured was off by more than 25%; total uses expected */
} idle_mem_cost;

/* Cost of the difference a -> b, divided by n. */
static idle_mem_cost idle_mem_cost_of(const idle_mem_reading *a, const idle_mem_reading *b, int n)
{
    idle_mem_cost c;
    memset(&c, 0, sizeof c);
    double d = n > 0 ? (double)n : 1.0;
    c.rss = (double)(b->rss_kb - a->rss_kb) * 1024.0 / d;
    c.pte = (double)(b->pte_kb - a->pte_kb) * 1024.0 / d;
    c.threads = b->threads - a->threads;
    c.kstack_measured = (double)(b->kstack_kb - a->kstack_kb) * 1024.0 / d;
    c.kstack_expected = (double)c.threads * IDLE_MEM_THREAD_SIZE / d;
    c.slab = (double)(b->slab_kb - a->slab_kb) * 1024.0 / d;
    double diff = c.kstack_measured - c.kstack_expected;
    if (diff < 0)
        diff = -diff;
    if (c.kstack_expected > 0 && diff <= 0.25 * c.kstack_expected) {
        c.kstack = c.kstack_measured;
    } else {
        /* No thread added (expected 0: whatever KernelStack did was another
         * process), or a delta too far off to be ours alone. */
        c.kstack = c.kstack_expected;
        c.kstack_from_expected = c.kstack_expected > 0;
    }
    c.total = c.rss + c.pte + c.kstack;
    return c;
}

/* ------------------------------------------------------------ waiting */

static void idle_mem__sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

struct idle_mem__dirent {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

/* 1 when no thread of this process but the caller is runnable (state R),
 * 0 when one is, -1 when /proc/self/task cannot be read. */
static int idle_mem_others_asleep(void)
{
    int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    long self = syscall(SYS_gettid);
    int result = 1;
    char dents[4096];
    for (;;) {
        long k = syscall(SYS_getdents64, dfd, dents, sizeof dents);
        if (k <= 0) {
            if (k < 0)
                result = -1;
            break;
        }
        for (long off = 0; off < k && result == 1;) {
            const struct idle_mem__dirent *e = (const void *)(dents + off);
            off += e->reclen;
            if (e->name[0] < '0' || e->name[0] > '9' || strtol(e->name, NULL, 10) == self)
                continue;
            char path[64], st[512];
            snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->name);
            if (idle_mem__slurp(path, st, sizeof st) != 0)
                continue; /* gone meanwhile */
            const char *rp = strrchr(st, ')');
            if (rp && rp[1] == ' ' && rp[2] == 'R')
                result = 0;
        }
        if (result != 1)
            break;
    }
    close(dfd);
    return result;
}

/* Waits until *count reaches n and then until every other thread has been
 * seen asleep twice in a row, 2 ms apart. Returns 1 (settled), 0 (all
 * arrived, but some thread was still runnable after timeout_ms), -1 (not
 * all arrived in timeout_ms). */
static int idle_mem__gate(_Atomic int *count, int n, long timeout_ms)
{
    long waited = 0;
    while (atomic_load(count) < n) {
        if (waited >= timeout_ms)
            return -1;
        idle_mem__sleep_ms(1);
        waited++;
    }
    int streak = 0;
    while (streak < 2) {
        int a = idle_mem_others_asleep();
        if (a < 0)
            return 0;
        streak = a ? streak + 1 : 0;
        if (streak < 2) {
            if (waited >= timeout_ms)
                return 0;
            idle_mem__sleep_ms(2);
            waited += 2;
        }
    }
    return 1;
}

/* ------------------------------------------------------------ one run */

typedef struct idle_mem_result {
    int model;
    int n;          /* units asked for */
    int created;    /* units made */
    int reached;    /* units that reached their wait before the measurement */
    int early;      /* units whose wait ended before the release (must be 0) */
    int released;   /* units whose wait ended after the release, with success */
    int settled;    /* every other thread was seen asleep at the measurement */
    int ok;         /* created == reached == released == n, early == 0 */
    idle_mem_cost unit;  /* per unit */
    idle_mem_cost fixed; /* weft: the runtime's fixed cost (whole bytes); zero otherwise */
    unsigned workers;    /* weft workers */
} idle_mem_result;

typedef struct idle_mem__ctl {
    _Atomic int reached, early, released;
    _Atomic int go;
    weft_event *ev;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go_locked;  /* under mu */
    int arrived;    /* under mu */
} idle_mem__ctl;

#define IDLE_MEM_GATE_TIMEOUT_MS 60000

static void *idle_mem__task(void *arg)
{
    idle_mem__ctl *c = arg;
    atomic_fetch_add(&c->reached, 1);
    int rc = weft_event_wait(c->ev, -1);
    if (!atomic_load(&c->go))
        atomic_fetch_add(&c->early, 1);
    else if (rc == 0)
        atomic_fetch_add(&c->released, 1);
    return NULL;
}

static void *idle_mem__thread(void *arg)
{
    idle_mem__ctl *c = arg;
    pthread_mutex_lock(&c->mu);
    c->arrived++;
    atomic_fetch_add(&c->reached, 1);
    while (!c->go_locked)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (!atomic_load(&c->go))
        atomic_fetch_add(&c->early, 1);
    else
        atomic_fetch_add(&c->released, 1);
    return NULL;
}

static void idle_mem__reset(idle_mem__ctl *c)
{
    atomic_store(&c->reached, 0);
    atomic_store(&c->early, 0);
    atomic_store(&c->released, 0);
    atomic_store(&c->go, 0);
    c->go_locked = 0;
    c->arrived = 0;
}

/* One round of n weft tasks: spawn, wait until all wait, read, release,
 * join. *before is read right before the spawns (NULL: not read); *after
 * once all wait. settle_ms: pause before each reading (see idle_mem_run).
 * Returns the tasks spawned. */
static int idle_mem__weft_round(weft_runtime *rt, idle_mem__ctl *c, weft_task **h, int n,
                                long settle_ms, idle_mem_reading *before, idle_mem_reading *after,
                                idle_mem_result *r)
{
    idle_mem__reset(c);
    weft_event_clear(c->ev);
    if (before) {
        idle_mem__sleep_ms(settle_ms);
        idle_mem_read(before);
    }
    int made = 0;
    for (; made < n; made++) {
        h[made] = weft_spawn_on(rt, idle_mem__task, c);
        if (!h[made])
            break;
    }
    int g = idle_mem__gate(&c->reached, made, IDLE_MEM_GATE_TIMEOUT_MS);
    if (after) {
        r->reached = atomic_load(&c->reached);
        r->settled = g == 1;
        idle_mem__sleep_ms(settle_ms);
        idle_mem_read(after);
    }
    atomic_store(&c->go, 1);
    weft_event_set(c->ev);
    for (int i = 0; i < made; i++)
        weft_join(h[i], NULL);
    return made;
}

static int idle_mem__thread_round(idle_mem__ctl *c, pthread_t *th, int n, size_t stack,
                                  long settle_ms, idle_mem_reading *before,
                                  idle_mem_reading *after, idle_mem_result *r)
{
    idle_mem__reset(c);
    pthread_attr_t attr, *ap = NULL;
    if (stack) {
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, stack);
        ap = &attr;
    }
    if (before) {
        idle_mem__sleep_ms(settle_ms);
        idle_mem_read(before);
    }
    int made = 0;
    for (; made < n; made++) {
        if (pthread_create(&th[made], ap, idle_mem__thread, c) != 0)
            break;
    }
    /* All made threads counted under mu and released it in cond_wait. */
    long waited = 0;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int a = c->arrived;
        pthread_mutex_unlock(&c->mu);
        if (a >= made || waited >= IDLE_MEM_GATE_TIMEOUT_MS)
            break;
        idle_mem__sleep_ms(1);
        waited++;
    }
    int g = idle_mem__gate(&c->reached, made, 5000);
    if (after) {
        r->reached = atomic_load(&c->reached);
        r->settled = g == 1;
        idle_mem__sleep_ms(settle_ms);
        idle_mem_read(after);
    }
    atomic_store(&c->go, 1);
    pthread_mutex_lock(&c->mu);
    c->go_locked = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    if (ap)
        pthread_attr_destroy(ap);
    return made;
}

/* Measures n units of model. workers: weft workers (0 = 2). settle_ms:
 * pause right before each reading, so that the kernel has folded its
 * per-CPU counter deltas into KernelStack/SUnreclaim (it does every second;
 * 0 in tests, where those figures are not checked). Returns 0 when every
 * unit was made, reached its wait and was released, else -1 (r says how
 * far it got). */
static int idle_mem_run(int model, int n, unsigned workers, long settle_ms, idle_mem_result *r)
{
    memset(r, 0, sizeof *r);
    r->model = model;
    r->n = n;
    if (n < 1 || model < 0 || model >= IDLE_MEM_NMODELS)
        return -1;
    idle_mem__ctl c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    idle_mem_reading r0, r1, r2;
    int made;

    if (model == IDLE_MEM_WEFT) {
        r->workers = workers ? workers : 2;
        /* Bookkeeping of the benchmark, not of a task: made and touched first. */
        weft_task **h = calloc((size_t)n, sizeof *h);
        if (!h)
            return -1;
        memset(h, 0xff, (size_t)n * sizeof *h);
        idle_mem__sleep_ms(settle_ms);
        idle_mem_read(&r0);
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = r->workers;
        weft_runtime *rt = weft_runtime_new(&cfg);
        if (!rt) {
            free(h);
            return -1;
        }
        c.ev = weft_event_new();
        if (!c.ev) {
            weft_runtime_free(rt);
            free(h);
            return -1;
        }
        idle_mem__weft_round(rt, &c, h, 1, 0, NULL, NULL, r); /* warm-up */
        made = idle_mem__weft_round(rt, &c, h, n, settle_ms, &r1, &r2, r);
        r->fixed = idle_mem_cost_of(&r0, &r1, 1);
        weft_event_free(c.ev);
        weft_runtime_free(rt);
        free(h);
    } else {
        pthread_t *th = calloc((size_t)n, sizeof *th);
        if (!th)
            return -1;
        memset(th, 0, (size_t)n * sizeof *th);
        size_t stack = model == IDLE_MEM_THREAD64K ? IDLE_MEM_SMALL_STACK : 0;
        idle_mem__thread_round(&c, th, 1, stack, 0, NULL, NULL, r); /* warm-up */
        made = idle_mem__thread_round(&c, th, n, stack, settle_ms, &r1, &r2, r);
        free(th);
    }
    r->created = made;
    r->early = atomic_load(&c.early);
    r->released = atomic_load(&c.released);
    r->unit = idle_mem_cost_of(&r1, &r2, made > 0 ? made : 1);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    r->ok = made == n && r->reached == n && r->released == n && r->early == 0;
    return r->ok ? 0 : -1;
}

#endif
