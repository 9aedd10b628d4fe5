/* main() for the TSan build of the test suite; see tests/tsan/criterion/criterion.h.
 *
 * Runs every registered test, sorted by suite then name, one at a time, each
 * in a forked child of this (single-threaded) process in its own process
 * group. The child's stdout and stderr are this process's, so sanitizer
 * reports appear in place. Failed assertions are recorded in a shared page the
 * parent reads once the child is gone. A test passes when it returns with no
 * failed expectation and the child exits 0 (or with .exit_code, or dies of
 * .signal). Anything else fails: an assertion, a timeout, another exit status
 * (ThreadSanitizer's is 66 after a report) or a signal, reported as a crash.
 *
 * Options: --filter GLOB (fnmatch on "suite/name"), --timeout S (for tests
 * without their own), --timeout-scale F (multiplies every timeout; not a
 * Criterion option: sanitizers slow tests down), --list, --verbose,
 * --fail-fast, --help. Other Criterion options (--jobs N, -jN, --ascii,
 * --tap, ...) are accepted and ignored. */
#include "criterion/criterion.h"

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ registry */

static struct cr_shim_test *tests;
static size_t n_tests;
static struct cr_shim_suite *suites;

void cr_shim_register_test_(struct cr_shim_test *t)
{
    t->next = tests;
    tests = t;
    n_tests++;
}

void cr_shim_register_suite_(struct cr_shim_suite *s)
{
    s->next = suites;
    suites = s;
}

/* ------------------------------------------------------------ shared with the child */

struct result {
    atomic_int failures; /* failed assertions and expectations */
    atomic_int claimed;  /* set by whoever records the first one */
    atomic_int skipped;
    unsigned line;
    char file[256];
    char msg[2048];
    char skip_msg[1024];
};

static struct result *result; /* MAP_SHARED, reset before each test */
static pid_t test_pid;        /* the test's process, in the child; 0 in the runner */

static void format_message(char *buf, size_t len, const char *dflt, const char *detail,
                           int has_msg, va_list ap)
{
    buf[0] = 0;
    if (has_msg) {
        const char *fmt = va_arg(ap, const char *);
        if (fmt)
            vsnprintf(buf, len, fmt, ap);
    }
    if (!buf[0])
        snprintf(buf, len, "%s", dflt);
    if (detail && detail[0]) {
        size_t n = strlen(buf);
        if (n + 1 < len)
            snprintf(buf + n, len - n, " [%s]", detail);
    }
}

static void record_failure(int fatal, const char *file, unsigned line, const char *dflt,
                           const char *detail, int has_msg, va_list ap)
{
    char msg[sizeof result->msg];
    format_message(msg, sizeof msg, dflt, detail, has_msg, ap);
    if (test_pid && getpid() != test_pid) {
        /* A process the test forked: its status is the test's business. */
        fprintf(stderr, "[----] %s:%u: Assertion failed in forked process %d: %s\n", file, line,
                (int)getpid(), msg);
        if (fatal) {
            fflush(stdout);
            _exit(1);
        }
        return;
    }
    fprintf(stderr, "[----] %s:%u: Assertion failed: %s\n", file, line, msg);
    if (!test_pid) { /* outside any test (a constructor, say) */
        if (fatal)
            _exit(1);
        return;
    }
    atomic_fetch_add(&result->failures, 1);
    if (atomic_exchange(&result->claimed, 1) == 0) {
        snprintf(result->file, sizeof result->file, "%s", file);
        result->line = line;
        snprintf(result->msg, sizeof result->msg, "%s", msg);
    }
    if (fatal) {
        /* Possibly on a worker thread or a task's stack: end the process
         * here rather than unwind into code that is still running. */
        fflush(stdout);
        _exit(1);
    }
}

void cr_shim_abort_(const char *file, unsigned line, const char *dflt, const char *detail,
                    int has_msg, ...)
{
    va_list ap;
    va_start(ap, has_msg);
    record_failure(1, file, line, dflt, detail, has_msg, ap);
    va_end(ap);
    _exit(1); /* not reached */
}

void cr_shim_expect_(const char *file, unsigned line, const char *dflt, const char *detail,
                     int has_msg, ...)
{
    va_list ap;
    va_start(ap, has_msg);
    record_failure(0, file, line, dflt, detail, has_msg, ap);
    va_end(ap);
}

void cr_shim_skip_(const char *file, unsigned line, int has_msg, ...)
{
    char msg[sizeof result->skip_msg];
    va_list ap;
    va_start(ap, has_msg);
    format_message(msg, sizeof msg, "", NULL, has_msg, ap);
    va_end(ap);
    if (test_pid && getpid() == test_pid) {
        snprintf(result->skip_msg, sizeof result->skip_msg, "%s", msg);
        atomic_store(&result->skipped, 1);
    } else {
        fprintf(stderr, "[----] %s:%u: skip outside the test process: %s\n", file, line,
                msg);
    }
    fflush(stdout);
    _exit(0);
}

void cr_shim_strdetail_(char *buf, size_t len, const char *a, const char *b)
{
    if (!a || !b)
        snprintf(buf, len, "%s is NULL", !a ? "the first string" : "the second string");
    else
        snprintf(buf, len, "\"%.200s\" vs \"%.200s\"", a, b);
}

void cr_log(enum criterion_severity level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *tag = level == CR_LOG_ERROR ? "[ERR ]" : level == CR_LOG_WARNING ? "[WARN]" : "[----]";
    fprintf(stderr, "%s %s\n", tag, msg);
}

/* ------------------------------------------------------------ running one test */

enum outcome { PASSED, FAILED, CRASHED, SKIPPED };

struct options {
    const char *filter;
    double default_timeout, timeout_scale;
    int verbose, list, fail_fast;
};

static volatile sig_atomic_t running_child; /* pgid to kill if we are interrupted */

static void on_terminate(int sig)
{
    pid_t pgid = running_child;
    if (pgid > 0)
        kill(-pgid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The test's options with its suite's TestSuite() defaults filled in. */
static struct criterion_test_extra_data effective_options(const struct cr_shim_test *t)
{
    struct criterion_test_extra_data e = *t->extra;
    for (const struct cr_shim_suite *s = suites; s; s = s->next) {
        if (strcmp(s->name, t->suite) != 0)
            continue;
        const struct criterion_test_extra_data *d = s->extra;
        if (!e.init)
            e.init = d->init;
        if (!e.fini)
            e.fini = d->fini;
        if (!e.signal)
            e.signal = d->signal;
        if (!e.exit_code)
            e.exit_code = d->exit_code;
        if (e.timeout <= 0)
            e.timeout = d->timeout;
        e.disabled = e.disabled || d->disabled;
    }
    return e;
}

static __attribute__((noreturn)) void run_in_child(const struct cr_shim_test *t,
                                                   const struct criterion_test_extra_data *e)
{
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    test_pid = getpid();
    if (e->init)
        e->init();
    t->fn();
    if (e->fini)
        e->fini();
    exit(atomic_load(&result->failures) ? 1 : 0);
}

static const char *signal_name(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    static char buf[32];
    snprintf(buf, sizeof buf, "SIG%s", abbrev ? abbrev : "?");
    return buf;
}

static enum outcome run_test(const struct cr_shim_test *t, const struct options *o)
{
    struct criterion_test_extra_data e = effective_options(t);
    if (e.disabled) {
        fprintf(stderr, "[SKIP] %s::%s: Test is disabled\n", t->suite, t->name);
        return SKIPPED;
    }
    double timeout = (e.timeout > 0 ? e.timeout : o->default_timeout) * o->timeout_scale;
    memset(result, 0, sizeof *result);
    if (o->verbose)
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
    fflush(stdout);
    fflush(stderr);

    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "[FAIL] %s::%s: fork: %s\n", t->suite, t->name, strerror(errno));
        return FAILED;
    }
    if (pid == 0)
        run_in_child(t, &e);
    setpgid(pid, pid); /* also done by the child; whichever runs first */
    running_child = pid;

    int status = 0, timed_out = 0;
    long nap_us = 1000;
    for (;;) {
        pid_t r = waitpid(pid, &status, timeout > 0 ? WNOHANG : 0);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "[FAIL] %s::%s: waitpid: %s\n", t->suite, t->name, strerror(errno));
            kill(-pid, SIGKILL);
            running_child = 0;
            return FAILED;
        }
        if (r == 0 && now_s() - t0 >= timeout) {
            timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (r == 0) {
            usleep((useconds_t)nap_us);
            if (nap_us < 20000)
                nap_us *= 2;
        }
    }
    /* Whatever the test left running in its group goes with it. */
    kill(-pid, SIGKILL);
    running_child = 0;
    double dt = now_s() - t0;
    fflush(stdout);

    const char *id_s = t->suite, *id_n = t->name;
    int failures = atomic_load(&result->failures);
    char first[sizeof result->msg + sizeof result->file + 64] = "";
    if (failures)
        snprintf(first, sizeof first, "%s:%u: %s%s", result->file, result->line, result->msg,
                 failures > 1 ? " (more failures above)" : "");

    if (timed_out) {
        fprintf(stderr, "[FAIL] %s::%s: Timed out. (%.2fs)\n", id_s, id_n, dt);
        return FAILED;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (e.signal && sig == e.signal && !failures) {
            fprintf(stderr, "[PASS] %s::%s (%.2fs)\n", id_s, id_n, dt);
            return PASSED;
        }
        fprintf(stderr, "[CRASH] %s::%s: killed by signal %d (%s)%s%s (%.2fs)\n", id_s, id_n, sig,
                signal_name(sig), failures ? " after: " : "", first, dt);
        return CRASHED;
    }
    int code = WEXITSTATUS(status);
    if (atomic_load(&result->skipped) && !failures) {
        fprintf(stderr, "[SKIP] %s::%s: %s\n", id_s, id_n,
                result->skip_msg[0] ? result->skip_msg : "Test was skipped");
        return SKIPPED;
    }
    if (failures) {
        fprintf(stderr, "[FAIL] %s::%s: %s (%.2fs)\n", id_s, id_n, first, dt);
        return FAILED;
    }
    if (e.signal) {
        fprintf(stderr, "[FAIL] %s::%s: exited with status %d, expected signal %d (%s) (%.2fs)\n",
                id_s, id_n, code, e.signal, signal_name(e.signal), dt);
        return FAILED;
    }
    if (code != e.exit_code) {
        fprintf(stderr, "[FAIL] %s::%s: exited with status %d%s (expected %d) (%.2fs)\n", id_s, id_n,
                code, code == 66 ? " (ThreadSanitizer's exit code: see its report above)" : "", e.exit_code,
                dt);
        return FAILED;
    }
    fprintf(stderr, "[PASS] %s::%s (%.2fs)\n", id_s, id_n, dt);
    return PASSED;
}

/* ------------------------------------------------------------ main */

static int by_suite_then_name(const void *a, const void *b)
{
    const struct cr_shim_test *x = *(const struct cr_shim_test *const *)a;
    const struct cr_shim_test *y = *(const struct cr_shim_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--filter SUITE/NAME-GLOB] [--timeout SECONDS] [--timeout-scale FACTOR]\n"
            "          [--list] [--verbose] [--fail-fast]\n"
            "       (other Criterion options are accepted and ignored)\n",
            argv0);
}

/* Criterion options that take their value as the next argument. */
static int takes_value(const char *a)
{
    static const char *const with_value[] = {"--jobs", "-j", "--filter", "--pattern",
                                             "--timeout", "--timeout-scale", "-O", "--output", NULL};
    for (const char *const *w = with_value; *w; w++)
        if (strcmp(a, *w) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.timeout_scale = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const char *eq = strchr(a, '=');
        char name[64];
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            val = eq + 1;
            a = name;
        } else if (takes_value(a)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", argv[0], a);
                return 2;
            }
            val = argv[++i];
        }
        if (strcmp(a, "--filter") == 0 || strcmp(a, "--pattern") == 0) {
            o.filter = val;
        } else if (strcmp(a, "--timeout") == 0) {
            char *end;
            o.default_timeout = val ? strtod(val, &end) : 0;
            if (!val || *end || o.default_timeout < 0) {
                fprintf(stderr, "%s: bad --timeout '%s'\n", argv[0], val ? val : "");
                return 2;
            }
        } else if (strcmp(a, "--timeout-scale") == 0) {
            char *end;
            o.timeout_scale = val ? strtod(val, &end) : 0;
            if (!val || *end || !(o.timeout_scale > 0)) {
                fprintf(stderr, "%s: bad --timeout-scale '%s'\n", argv[0], val ? val : "");
                return 2;
            }
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o.verbose = 1;
        } else if (strcmp(a, "--list") == 0 || strcmp(a, "-l") == 0) {
            o.list = 1;
        } else if (strcmp(a, "--fail-fast") == 0 || strcmp(a, "-f") == 0) {
            o.fail_fast = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(argv[0]);
            return 0;
        } else if (a[0] != '-') {
            fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], a);
            usage(argv[0]);
            return 2;
        }
        /* Anything else (--jobs 2, -j2, --ascii, --tap, ...) is ignored. */
    }

    struct cr_shim_test **sorted = calloc(n_tests ? n_tests : 1, sizeof *sorted);
    if (!sorted)
        return 2;
    size_t n = 0;
    for (struct cr_shim_test *t = tests; t; t = t->next) {
        char id[512];
        snprintf(id, sizeof id, "%s/%s", t->suite, t->name);
        if (!o.filter || fnmatch(o.filter, id, 0) == 0)
            sorted[n++] = t;
    }
    qsort(sorted, n, sizeof *sorted, by_suite_then_name);

    if (o.list) {
        for (size_t i = 0; i < n; i++)
            printf("%s::%s\n", sorted[i]->suite, sorted[i]->name);
        free(sorted);
        return 0;
    }

    result = mmap(NULL, sizeof *result, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (result == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    signal(SIGINT, on_terminate);
    signal(SIGTERM, on_terminate);
    signal(SIGHUP, on_terminate);
    setvbuf(stderr, NULL, _IONBF, 0);

    size_t tested = 0, passed = 0, failed = 0, crashed = 0;
    for (size_t i = 0; i < n; i++) {
        enum outcome r = run_test(sorted[i], &o);
        tested += r != SKIPPED;
        passed += r == PASSED;
        failed += r == FAILED || r == CRASHED;
        crashed += r == CRASHED;
        if (o.fail_fast && (r == FAILED || r == CRASHED))
            break;
    }
    fprintf(stderr, "[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | Crashing: %zu \n",
            tested, passed, failed, crashed);
    free(sorted);
    return failed ? 1 : 0;
}
