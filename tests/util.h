/* Helpers shared by the Criterion tests. */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static inline weft_runtime *test_runtime(unsigned workers)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    weft_runtime *rt;
    int rc = weft_runtime_create(&cfg, &rt);
    cr_assert_eq(rc, 0, "weft_runtime_create(%u): %d", workers, rc);
    return rt;
}

/* ------------------------------------------------------------ in-task checks
 * A task cannot use cr_assert: a Criterion assertion unwinds with longjmp,
 * which cannot leave a task's stack or a worker thread. A task checks with
 * TEST_EXPECT instead, which records the first failure (line and message)
 * and ends the task, returning that line as its result; the test, back on
 * its own thread, calls test_assert_no_failure() (or lets test_run do it).
 * Every test file has its own counter, and every test runs in a process of
 * its own. */
static atomic_int test_failures;
static char test_failure_msg[512];

static inline void test_fail(int line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void test_fail(int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&test_failures, 1) != 0)
        return;
    int n = snprintf(test_failure_msg, sizeof test_failure_msg, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(test_failure_msg + n, sizeof test_failure_msg - (size_t)n, fmt, ap);
    va_end(ap);
}

/* In a task: record the failure and end the task. */
#define TEST_EXPECT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__LINE__, __VA_ARGS__);                                                      \
            return (void *)(intptr_t)__LINE__;                                                     \
        }                                                                                          \
    } while (0)

static inline void test_assert_no_failure(void)
{
    cr_assert_eq(atomic_load(&test_failures), 0, "%d failure(s), first: %s",
                 atomic_load(&test_failures), test_failure_msg);
}

/* Runs fn(arg) as the root task of a fresh runtime of `workers` workers and
 * checks that block_on succeeded, that no TEST_EXPECT failed, and that the
 * task returned NULL (a TEST_EXPECT in the root task returns its line). */
static inline void test_run_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, fn, arg, &res);
    weft_runtime_free(rt);
    cr_assert_eq(rc, 0, "block_on: %d", rc);
    test_assert_no_failure();
    cr_assert_null(res, "task failed at line %d", (int)(intptr_t)res);
}

/* test_run_on a fresh runtime of `workers`. */
static inline void test_run(unsigned workers, weft_fn fn, void *arg)
{
    test_run_on(test_runtime(workers), fn, arg);
}

/* Resident set size of this process in bytes. */
static inline long test_rss(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static inline int test_map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Instrumented builds run far slower; heavy tests scale down there. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TEST_INSTRUMENTED 1
#else
#define TEST_INSTRUMENTED 0
#endif
static inline int test_scale_down(void) { return TEST_INSTRUMENTED || getenv("WEFT_VALGRIND") != NULL; }

/* Reads from fd until buf holds a line (byte by byte, so nothing after the
 * line is consumed); returns its length, or -errno (-EPIPE at end of stream). */
static inline ssize_t test_read_line(int fd, char *buf, size_t cap, int64_t timeout_ms)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = weft_read(fd, buf + len, 1, timeout_ms);
        if (n <= 0)
            return n < 0 ? n : -EPIPE;
        if (buf[len++] == '\n')
            break;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}


/* ------------------------------------------------------------ started tasks
 * A task cancelled before it ever ran does not run at all, so a test that
 * cancels a task "after it had time to park" and expects the task's own
 * -ECANCELED depends on how fast the machine is. test_spawn_running spawns
 * fn(arg) from a task and returns only once fn has begun: a cancel from then
 * on reaches it at (or before) its suspension point, whatever the load. The
 * caller may still sleep a little after it, to make the parked case the
 * usual one; the outcome no longer depends on that sleep. */
typedef struct test_started {
    weft_fn fn;
    void *arg;
    atomic_int running;
} test_started;

static inline void *test_started_entry(void *p)
{
    test_started *s = p;
    weft_fn fn = s->fn;
    void *arg = s->arg;
    atomic_store(&s->running, 1); /* s belongs to the spawner from here on */
    return fn(arg);
}

static inline weft_task *test_spawn_running(weft_fn fn, void *arg)
{
    test_started *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    *s = (test_started){fn, arg, 0};
    weft_task *t = weft_spawn(test_started_entry, s);
    if (!t) {
        free(s);
        return NULL;
    }
    while (!atomic_load(&s->running))
        weft_sleep_ms(1);
    free(s);
    return t;
}

#endif
