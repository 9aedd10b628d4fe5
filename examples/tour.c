/*
 * tour: what `make demo` runs, in under a minute.
 *
 *   1. build/examples/demo     100,000 tasks on one worker per CPU
 *   2. build/examples/gather   two sleeping tasks overlap (2 s, not 3)
 *   3. build/examples/http_server on a free loopback port, driven for a few
 *      seconds by build/bench/loadgen (keep-alive GET /, 50 connections)
 *   4. build/bench/async_vs_threads --quick: the same request workloads as
 *      weft tasks, one pthread per request and fixed pthread pools
 *   5. a summary table
 *   6. (step 5) build/examples/demo --inside: a dump of a few waiting tasks and the
 *      metrics' histograms (weft_runtime_dump, weft_metrics_print)
 *
 * It finds its sibling programs next to its own binary (BUILD/examples and
 * BUILD/bench). Usage: tour [SECONDS_OF_HTTP_LOAD] (default 3).
 * This program does not use weft itself; it drives the programs that do.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char examples_dir[PATH_MAX], bench_dir[PATH_MAX + 16];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Starts argv with stdout (and stderr if merge) on a pipe; returns the pid. */
static pid_t start(char *const argv[], int *out_fd, int merge)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        if (merge)
            dup2(p[1], 2);
        execv(argv[0], argv);
        fprintf(stderr, "tour: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Line reader over a pipe with a timeout per line (ms); returns the line
 * length, 0 at end of stream, -1 on timeout. */
typedef struct reader {
    int fd;
    char buf[8192];
    size_t len;
} reader;

static int read_line(reader *r, char *line, size_t cap, int timeout_ms)
{
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            size_t n = (size_t)(nl - r->buf);
            size_t c = n < cap - 1 ? n : cap - 1;
            memcpy(line, r->buf, c);
            line[c] = 0;
            memmove(r->buf, nl + 1, r->len - n - 1);
            r->len -= n + 1;
            return (int)c + 1;
        }
        if (r->len == sizeof r->buf) /* overlong line: drop it */
            r->len = 0;
        struct pollfd pfd = {r->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr == 0)
            return -1;
        if (pr < 0 && errno == EINTR)
            continue;
        ssize_t k = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (r->len == 0)
                return 0;
            size_t c = r->len < cap - 1 ? r->len : cap - 1; /* last line without '\n' */
            memcpy(line, r->buf, c);
            line[c] = 0;
            r->len = 0;
            return (int)c + 1;
        }
        r->len += (size_t)k;
    }
}

static int finish(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void step(int i, const char *what)
{
    printf("\n[%d/5] %s\n", i, what);
    fflush(stdout);
}

/* Results kept for the summary. */
static double demo_ms = -1, gather_ms = -1, http_rps = -1, http_p50 = -1, http_p99 = -1;
static unsigned long long http_errors;
static int http_ok;

#define MAXW 4
#define MAXM 7
static const char *const wl[MAXW] = {"io", "cpu", "mixed", "tail"};
static const char *const md[MAXM] = {"weft",    "weft_blocking", "weft_compute", "threads",
                                     "pool2",   "pool16",        "pool64"};
enum { M_WALL, M_P50, M_P99, M_RSS, M_CPU, NMET };
static const char *const met[NMET] = {"wall", "p50", "p99", "rss", "cpu"};
static double avt[MAXW][MAXM][NMET];
static int avt_have[MAXW][MAXM];
static char avt_skipped[1024];

static int run_simple_arg(const char *prog, const char *arg, const char *label, double *ms_out, const char *key)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", examples_dir, prog);
    char *argv[] = {path, (char *)arg, NULL};
    int fd;
    double t0 = now_s();
    pid_t pid = start(argv, &fd, 1);
    if (pid < 0)
        return -1;
    reader r = {fd, {0}, 0};
    char line[1024];
    int n;
    while ((n = read_line(&r, line, sizeof line, 30000)) > 0) {
        printf("    %s\n", line);
        fflush(stdout);
        char *p = key ? strstr(line, key) : NULL;
        if (p)
            *ms_out = atof(p + strlen(key));
    }
    close(fd);
    int rc = finish(pid);
    if (!key)
        *ms_out = (now_s() - t0) * 1e3;
    if (rc != 0)
        printf("    %s exited with status %d\n", label, rc);
    return rc;
}

static int run_simple(const char *prog, const char *label, double *ms_out, const char *key)
{
    return run_simple_arg(prog, NULL, label, ms_out, key);
}

static int run_http(int seconds)
{
    char srv[PATH_MAX + 64], lg[PATH_MAX + 64];
    snprintf(srv, sizeof srv, "%s/http_server", examples_dir);
    snprintf(lg, sizeof lg, "%s/loadgen", bench_dir);
    char *sargv[] = {srv, "0", NULL};
    int sfd;
    pid_t spid = start(sargv, &sfd, 0);
    if (spid < 0)
        return -1;
    reader sr = {sfd, {0}, 0};
    char line[1024];
    int port = 0;
    if (read_line(&sr, line, sizeof line, 5000) > 0) {
        char *p = strstr(line, "127.0.0.1:");
        if (p)
            port = atoi(p + 10);
        printf("    %s\n", line);
    }
    if (port <= 0) {
        printf("    http_server did not report its port\n");
        kill(spid, SIGKILL);
        finish(spid);
        return -1;
    }
    char portbuf[16], secs[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(secs, sizeof secs, "%d", seconds);
    char *largv[] = {lg, "http", "127.0.0.1", portbuf, "50", secs, "1", NULL};
    printf("    loadgen: 50 keep-alive connections for %d s ", seconds);
    fflush(stdout);
    int lfd;
    pid_t lpid = start(largv, &lfd, 1);
    if (lpid < 0) {
        kill(spid, SIGKILL);
        finish(spid);
        return -1;
    }
    reader lr = {lfd, {0}, 0};
    int n, elapsed = 0;
    while ((n = read_line(&lr, line, sizeof line, 1000)) != 0) {
        if (n < 0) { /* a second passed: progress */
            printf(".");
            fflush(stdout);
            if (++elapsed > seconds + 30)
                break;
            continue;
        }
        if (strncmp(line, "requests/s:", 11) == 0)
            http_rps = atof(line + 11);
        char *p = strstr(line, "p50=");
        if (p)
            http_p50 = atof(p + 4);
        p = strstr(line, "p99=");
        if (p)
            http_p99 = atof(p + 4);
        if (strncmp(line, "errors:", 7) == 0)
            http_errors = strtoull(line + 7, NULL, 10);
    }
    printf(" done\n");
    close(lfd);
    int lrc = finish(lpid);
    kill(spid, SIGTERM);
    usleep(100000);
    kill(spid, SIGKILL);
    finish(spid);
    close(sfd);
    http_ok = lrc == 0 && http_rps > 0;
    if (http_ok)
        printf("    %.0f requests/s, latency p50 %.0f us, p99 %.0f us, %llu errors\n", http_rps,
               http_p50, http_p99, http_errors);
    else
        printf("    loadgen failed (status %d)\n", lrc);
    return http_ok ? 0 : -1;
}

static int run_avt(void)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/async_vs_threads", bench_dir);
    char *argv[] = {path, "--quick", NULL};
    int fd;
    pid_t pid = start(argv, &fd, 0);
    if (pid < 0)
        return -1;
    reader r = {fd, {0}, 0};
    char line[1024];
    int n;
    while ((n = read_line(&r, line, sizeof line, 120000)) > 0) {
        if (strncmp(line, "# async_vs_threads:", 19) == 0) {
            printf("    %s\n", line + 2);
            fflush(stdout);
        }
        if (strstr(line, "skipped")) {
            snprintf(avt_skipped, sizeof avt_skipped, "%s", line + 2);
            continue;
        }
        char name[128], unit[32];
        double v;
        if (sscanf(line, "bench: %127s %lf %31s", name, &v, unit) != 3 ||
            strncmp(name, "avt_", 4) != 0)
            continue;
        for (int w = 0; w < MAXW; w++)
            for (int m = 0; m < MAXM; m++)
                for (int k = 0; k < NMET; k++) {
                    char want[128];
                    snprintf(want, sizeof want, "avt_%s_%s_%s", wl[w], md[m], met[k]);
                    if (strcmp(want, name) != 0)
                        continue;
                    avt[w][m][k] = v;
                    avt_have[w][m] = 1;
                    if (k == M_WALL) {
                        printf("    %-5s %-13s finished in %8.1f ms\n", wl[w], md[m], v);
                        fflush(stdout);
                    }
                }
    }
    close(fd);
    return finish(pid);
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    if (seconds < 1)
        seconds = 3;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        fprintf(stderr, "tour: cannot find my own path\n");
        return 1;
    }
    self[k] = 0;
    snprintf(examples_dir, sizeof examples_dir, "%s", dirname(self));
    snprintf(bench_dir, sizeof bench_dir, "%s/../bench", examples_dir);

    double t0 = now_s();
    printf("weft tour: five short steps, about 20 s in all\n");
    int failures = 0;

    step(1, "tasks: 100,000 tasks that sleep, yield and hand back results (examples/demo.c)");
    failures += run_simple("demo", "demo", &demo_ms, NULL) != 0;
    step(2, "gather: two sleeping tasks overlap, 2 s rather than 3 (examples/gather.c)");
    failures += run_simple("gather", "gather", &gather_ms, "total ") != 0;
    step(3, "HTTP: examples/http_server on a free loopback port, driven by bench/loadgen");
    failures += run_http(seconds) != 0;
    step(4, "async tasks against preemptive threads, 2,000 requests per workload "
            "(bench/async_vs_threads.c --quick, about 10 s)");
    failures += run_avt() != 0;

    printf("\n================================ summary ================================\n");
    printf("100,000 tasks (demo)          %s%.0f ms wall\n", demo_ms >= 0 ? "" : "failed, ", demo_ms);
    printf("gather (2 s + 1 s sleeps)     %.0f ms (concurrent: about 2000, not 3000)\n", gather_ms);
    if (http_ok)
        printf("HTTP hello, 50 connections    %.0f req/s, p50 %.0f us, p99 %.0f us, %llu errors\n",
               http_rps, http_p50, http_p99, http_errors);
    else
        printf("HTTP hello                    failed\n");
    static const char *const what[MAXW] = {
        "io:    wait 1 ms, 2 us CPU",
        "cpu:   200 us CPU",
        "mixed: wait 1 ms, 50 us CPU, wait 1 ms",
        "tail:  as mixed, 1% do 20 ms CPU",
    };
    printf("\nasync vs threads (2,000 requests, at most 1,000 in flight; latency from admission)\n");
    for (int w = 0; w < MAXW; w++) {
        int any = 0;
        for (int m = 0; m < MAXM; m++)
            any |= avt_have[w][m];
        if (!any)
            continue;
        printf("\n  %s\n", what[w]);
        printf("    %-14s %9s %9s %9s %9s %9s\n", "model", "wall ms", "p50 ms", "p99 ms", "RSS MiB",
               "CPU ms");
        for (int m = 0; m < MAXM; m++)
            if (avt_have[w][m])
                printf("    %-14s %9.1f %9.2f %9.2f %9.1f %9.1f\n", md[m], avt[w][m][M_WALL],
                       avt[w][m][M_P50], avt[w][m][M_P99], avt[w][m][M_RSS] / 1024.0,
                       avt[w][m][M_CPU]);
    }
    if (avt_skipped[0])
        printf("\n  (%s)\n", avt_skipped);
    printf("\nRSS is each model's own forked process (peak); CPU is user + system time.\n");
    printf("Full sizes: make bench (results in bench/results/all.csv), charts: make charts.\n");
    step(5, "inside a running program: a task dump and the metrics' histograms (examples/demo.c --inside)");
    double inside_ms = 0;
    failures += run_simple_arg("demo", "--inside", "demo --inside", &inside_ms, NULL) != 0;
    printf("tour took %.1f s%s\n", now_s() - t0, failures ? ", WITH FAILURES" : "");
    return failures ? 1 : 0;
}
