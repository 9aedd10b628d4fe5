/*
 * Network benchmarks: weft's example servers against two baselines that do
 * not use weft, each a separate process on a loopback port, driven by
 * build/bench/loadgen (its own process, one epoll thread).
 *
 *   tcp_echo    64-byte ping-pong, 100 connections, one message in flight each
 *     weft      build/examples/echo_server   (one task per connection)
 *     ceiling   build/bench/ceiling_server echo  (SO_REUSEPORT + ET epoll per thread)
 *     threads   build/bench/threads_server echo  (one pthread per connection)
 *   http_hello  keep-alive "GET /" -> "Hello, World!", 100 connections
 *     weft      build/examples/http_server
 *     ceiling   build/bench/ceiling_server http
 *     threads   build/bench/threads_server http
 *
 * Every round runs each server once (the order rotates between rounds): the
 * server starts on port 0 and prints its port, loadgen runs for the duration,
 * then the server is killed and reaped with wait4, whose rusage gives the
 * server's CPU time (user + system, all threads, startup included).
 * Reported, as medians over the rounds:
 *   <bench>_<server>_rps          requests (round trips) per second
 *   <bench>_<server>_p99          99th percentile latency seen by loadgen, us
 *   <bench>_<server>_cpu_per_req  server CPU time / requests served, us
 *   <bench>_<a>_over_<b>_{rps,p99,cpu_per_req}   ratios of the medians
 * With wrk installed, http_hello also runs `wrk -t1 -c100 -d3s --latency`
 * once against each server: <bench>_<server>_wrk_{rps,p99,cpu_per_req}.
 *
 * Servers: by default weft at 1 and 2 workers (weft_w1, weft_w2), the
 * ceiling server at 1 and 2 threads (ceiling_t1, ceiling_t2) and the
 * thread-per-connection server, all interleaved in every round; the ratios
 * are weft_w2 over weft_w1 (a second worker must not lose) and each weft
 * over the ceiling with as many threads. With --workers N: weft and the
 * ceiling at N only (names weft, ceiling, as before), and the threads server.
 * Flags (bench/bench.h): --quick (0.5 s runs, wrk 1 s), --reps N (rounds, default 3),
 * --only NAME, --no-baseline (weft only), --workers N.
 * Environment: NET_BENCH_CONNS (100), NET_BENCH_SECONDS (3, quick 0.5),
 * NET_BENCH_LOADGEN_THREADS (1).
 */
#include "bench.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { SRV_WEFT, SRV_CEILING, SRV_THREADS, NSRV };

/* One server as run: which program and how many threads (0: its own
 * default, the threads server), and its name in the results. */
typedef struct variant {
    int srv;
    unsigned threads;
    char name[24];
} variant;
#define MAX_VARIANTS 8

typedef struct bench_def {
    const char *name;      /* tcp_echo */
    const char *mode;      /* echo / http (loadgen, baselines) */
    const char *weft_prog; /* echo_server */
} bench_def;

static const bench_def benches[] = {
    {"tcp_echo", "echo", "echo_server"},
    {"http_hello", "http", "http_server"},
};

typedef struct result {
    int ok;
    double rps, p99_us, cpu_us_per_req;
    unsigned long long requests, errors;
} result;

static char g_bench_dir[PATH_MAX], g_examples_dir[PATH_MAX + 16];
static int g_conns = 100, g_loadgen_threads = 1, g_failures;
static double g_seconds = 3;
static unsigned g_workers;

/* ------------------------------------------------------------ processes */

static pid_t spawn(char *const argv[], int *out_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        execv(argv[0], argv);
        fprintf(stderr, "net: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Reads from fd into buf until EOF, until `stop` appears followed by a newline
 * (if stop is not NULL), or until timeout_ms. Returns the bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *stop, int timeout_ms)
{
    size_t len = 0;
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    buf[0] = '\0';
    while (len + 1 < cap) {
        int64_t left = (deadline - bench_now_ns()) / 1000000;
        if (left <= 0)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int n = poll(&pf, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t k = read(fd, buf + len, cap - 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
        buf[len] = '\0';
        if (stop) {
            char *s = strstr(buf, stop);
            if (s && strchr(s, '\n'))
                break;
        }
    }
    return len;
}

/* Waits for pid up to timeout_ms, then kills it. Fills *ru. Returns the
 * wait status, or -1. */
static int reap(pid_t pid, int timeout_ms, struct rusage *ru)
{
    int status;
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, ru);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (bench_now_ns() > deadline) {
            kill(pid, SIGKILL);
            return wait4(pid, &status, 0, ru) == pid ? status : -1;
        }
        usleep(2000);
    }
}

static double rusage_cpu_us(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec * 1e6 + (double)ru->ru_utime.tv_usec +
           (double)ru->ru_stime.tv_sec * 1e6 + (double)ru->ru_stime.tv_usec;
}

/* The server's argv for bench b. */
static void server_argv(int srv, const bench_def *b, char *path, size_t cap, char *workers,
                        char *argv[6])
{
    int i = 0;
    if (srv == SRV_WEFT) {
        snprintf(path, cap, "%s/%s", g_examples_dir, b->weft_prog);
        argv[i++] = path;
        argv[i++] = "0";
        argv[i++] = workers;
    } else {
        snprintf(path, cap, "%s/%s", g_bench_dir,
                 srv == SRV_CEILING ? "ceiling_server" : "threads_server");
        argv[i++] = path;
        argv[i++] = (char *)b->mode;
        argv[i++] = "0";
        if (srv == SRV_CEILING)
            argv[i++] = workers;
    }
    argv[i] = NULL;
}

typedef struct server {
    pid_t pid;
    int out_fd;
    int port;
} server;

static int server_start(const variant *v, const bench_def *b, server *s)
{
    char path[PATH_MAX + 64], workers[16], *argv[6];
    snprintf(workers, sizeof workers, "%u", v->threads);
    server_argv(v->srv, b, path, sizeof path, workers, argv);
    s->pid = spawn(argv, &s->out_fd);
    if (s->pid < 0)
        return -1;
    char line[512];
    read_until(s->out_fd, line, sizeof line, "127.0.0.1:", 5000);
    char *p = strstr(line, "127.0.0.1:");
    s->port = p ? atoi(p + 10) : 0;
    if (s->port <= 0) {
        fprintf(stderr, "net: %s did not report its port (got \"%s\")\n", argv[0], line);
        struct rusage ru;
        kill(s->pid, SIGKILL);
        reap(s->pid, 1000, &ru);
        close(s->out_fd);
        return -1;
    }
    return 0;
}

/* Kills the server; returns its CPU time in us. */
static double server_stop(server *s)
{
    struct rusage ru;
    kill(s->pid, SIGKILL);
    reap(s->pid, 5000, &ru);
    close(s->out_fd);
    return rusage_cpu_us(&ru);
}

/* ------------------------------------------------------------ one run */

static result run_loadgen(const variant *v, const bench_def *b)
{
    result res = {0};
    server s;
    if (server_start(v, b, &s) < 0)
        return res;
    char path[PATH_MAX + 64], port[16], conns[16], secs[32], threads[16];
    snprintf(path, sizeof path, "%s/loadgen", g_bench_dir);
    snprintf(port, sizeof port, "%d", s.port);
    snprintf(conns, sizeof conns, "%d", g_conns);
    snprintf(secs, sizeof secs, "%g", g_seconds);
    snprintf(threads, sizeof threads, "%d", g_loadgen_threads);
    char *argv[] = {path, (char *)b->mode, "127.0.0.1", port, conns, secs, threads, NULL};
    int lfd;
    pid_t lg = spawn(argv, &lfd);
    if (lg < 0) {
        server_stop(&s);
        return res;
    }
    char out[4096];
    int budget_ms = (int)(g_seconds * 1000) + 15000;
    read_until(lfd, out, sizeof out, NULL, budget_ms);
    close(lfd);
    struct rusage ru;
    int st = reap(lg, 5000, &ru);
    double cpu_us = server_stop(&s);

    double p50 = 0, max = 0;
    char *p;
    if (st != 0 || !(p = strstr(out, "requests/s:")) || sscanf(p, "requests/s: %lf", &res.rps) != 1 ||
        !(p = strstr(out, "latency_us:")) ||
        sscanf(p, "latency_us: p50=%lf p99=%lf max=%lf", &p50, &res.p99_us, &max) != 3 ||
        !(p = strstr(out, "total_requests:")) ||
        sscanf(p, "total_requests: %llu", &res.requests) != 1 || !(p = strstr(out, "errors:")) ||
        sscanf(p, "errors: %llu", &res.errors) != 1) {
        fprintf(stderr, "net: %s %s: loadgen failed (status %d): %s\n", b->name, v->name, st,
                out);
        return res;
    }
    if (res.requests == 0) {
        fprintf(stderr, "net: %s %s: no requests completed\n", b->name, v->name);
        return res;
    }
    res.cpu_us_per_req = cpu_us / (double)res.requests;
    res.ok = 1;
    bench_comment("%s %-10s port %5d: %9.0f req/s  p50 %7.1f us  p99 %7.1f us  max %8.1f us  "
                  "cpu %.2f us/req (%.0f ms for %llu req)%s",
                  b->name, v->name, s.port, res.rps, p50, res.p99_us, max,
                  res.cpu_us_per_req, cpu_us / 1000, res.requests,
                  res.errors ? "  ERRORS" : "");
    if (res.errors) {
        fprintf(stderr, "net: %s %s: %llu errors\n", b->name, v->name, res.errors);
        g_failures++;
    }
    return res;
}

/* wrk's latency figures: "99%  1.23ms" -> us. */
static double wrk_time_us(const char *s)
{
    double v;
    char unit[8] = "";
    if (sscanf(s, "%lf%7s", &v, unit) < 1)
        return -1;
    if (strcmp(unit, "us") == 0)
        return v;
    if (strcmp(unit, "ms") == 0)
        return v * 1e3;
    if (strcmp(unit, "s") == 0)
        return v * 1e6;
    if (strcmp(unit, "m") == 0)
        return v * 60e6;
    return -1;
}

static const char *find_wrk(void)
{
    static const char *const paths[] = {"/usr/bin/wrk", "/usr/local/bin/wrk"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static void run_wrk(const char *wrk, const variant *v, const bench_def *b)
{
    server s;
    if (server_start(v, b, &s) < 0) {
        g_failures++;
        return;
    }
    char conns[16], dur[16], threads[16], url[64];
    snprintf(conns, sizeof conns, "-c%d", g_conns);
    snprintf(dur, sizeof dur, "-d%ds", g_seconds < 2 ? 1 : 3);
    snprintf(threads, sizeof threads, "-t%d", g_loadgen_threads);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    char *argv[] = {(char *)wrk, threads, conns, dur, "--latency", url, NULL};
    int fd;
    pid_t pid = spawn(argv, &fd);
    if (pid < 0) {
        server_stop(&s);
        return;
    }
    char out[8192];
    read_until(fd, out, sizeof out, NULL, 30000);
    close(fd);
    struct rusage ru;
    int st = reap(pid, 5000, &ru);
    double cpu_us = server_stop(&s);
    double rps = 0, p99 = -1;
    unsigned long long reqs = 0;
    char *p;
    if ((p = strstr(out, "Requests/sec:")))
        sscanf(p, "Requests/sec: %lf", &rps);
    if ((p = strstr(out, " 99%")))
        p99 = wrk_time_us(p + 4 + strspn(p + 4, " \t"));
    if ((p = strstr(out, " requests in ")))
        while (p > out && p[-1] >= '0' && p[-1] <= '9')
            p--, reqs = strtoull(p, NULL, 10);
    if (st != 0 || rps <= 0 || p99 < 0 || reqs == 0) {
        fprintf(stderr, "net: wrk against %s failed (status %d): %s\n", v->name, st, out);
        g_failures++;
        return;
    }
    if (strstr(out, "Non-2xx") || strstr(out, "Socket errors")) {
        fprintf(stderr, "net: wrk against %s saw errors:\n%s", v->name, out);
        g_failures++;
    }
    char name[128];
    snprintf(name, sizeof name, "%s_%s_wrk_rps", b->name, v->name);
    bench_print(name, rps, "req/s");
    snprintf(name, sizeof name, "%s_%s_wrk_p99", b->name, v->name);
    bench_print(name, p99, "us");
    snprintf(name, sizeof name, "%s_%s_wrk_cpu_per_req", b->name, v->name);
    bench_print(name, cpu_us / (double)reqs, "us");
}

/* ------------------------------------------------------------ driver */

static void print_ratio(const char *bench, const char *what, const char *a, const char *base,
                        double x, double other)
{
    if (other <= 0 || x <= 0)
        return;
    char name[128];
    snprintf(name, sizeof name, "%s_%s_over_%s_%s", bench, a, base, what);
    bench_print(name, x / other, "x");
}

/* The servers of one run (see the top of this file). */
static int make_variants(variant *v)
{
    int n = 0;
    if (g_workers) {
        v[n++] = (variant){SRV_WEFT, g_workers, "weft"};
        v[n++] = (variant){SRV_CEILING, g_workers, "ceiling"};
    } else {
        for (unsigned t = 1; t <= 2; t++) {
            v[n] = (variant){SRV_WEFT, t, ""};
            snprintf(v[n].name, sizeof v[n].name, "weft_w%u", t);
            n++;
            v[n] = (variant){SRV_CEILING, t, ""};
            snprintf(v[n].name, sizeof v[n].name, "ceiling_t%u", t);
            n++;
        }
    }
    v[n++] = (variant){SRV_THREADS, 0, "threads"};
    return n;
}

static void run_bench(const bench_def *b, int rounds, int baselines)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", g_examples_dir, b->weft_prog);
    int have_weft = access(path, X_OK) == 0;
    if (!have_weft)
        bench_comment("%s: %s not built, weft skipped", b->name, path);
    variant v[MAX_VARIANTS];
    int nv = make_variants(v);
    int have[MAX_VARIANTS];
    for (int i = 0; i < nv; i++)
        have[i] = v[i].srv == SRV_WEFT ? have_weft : baselines;
    bench_comment("%s: %d connections, %g s x %d rounds, loadgen threads %d", b->name, g_conns,
                  g_seconds, rounds, g_loadgen_threads);
    double rps[MAX_VARIANTS][64], p99[MAX_VARIANTS][64], cpu[MAX_VARIANTS][64];
    int n[MAX_VARIANTS] = {0};
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < nv; k++) {
            int i = (r + k) % nv; /* rotate the order */
            if (!have[i])
                continue;
            result res = run_loadgen(&v[i], b);
            if (!res.ok) {
                g_failures++;
                continue;
            }
            rps[i][n[i]] = res.rps;
            p99[i][n[i]] = res.p99_us;
            cpu[i][n[i]] = res.cpu_us_per_req;
            n[i]++;
        }
    }
    double med_rps[MAX_VARIANTS] = {0}, med_cpu[MAX_VARIANTS] = {0}, med_p99[MAX_VARIANTS] = {0};
    for (int i = 0; i < nv; i++) {
        if (!n[i])
            continue;
        char name[128];
        snprintf(name, sizeof name, "%s_%s_rps", b->name, v[i].name);
        med_rps[i] = bench_report(name, rps[i], n[i], "req/s");
        snprintf(name, sizeof name, "%s_%s_p99", b->name, v[i].name);
        med_p99[i] = bench_report(name, p99[i], n[i], "us");
        snprintf(name, sizeof name, "%s_%s_cpu_per_req", b->name, v[i].name);
        med_cpu[i] = bench_report(name, cpu[i], n[i], "us");
    }
    /* Each weft against weft at 1 worker, the ceiling with as many threads,
     * and the threads server. */
    for (int a = 0; a < nv; a++) {
        if (v[a].srv != SRV_WEFT)
            continue;
        for (int base = 0; base < nv; base++) {
            int fair = (v[base].srv == SRV_WEFT && v[base].threads == 1 && v[a].threads > 1) ||
                       (v[base].srv == SRV_CEILING && v[base].threads == v[a].threads) ||
                       v[base].srv == SRV_THREADS;
            if (!fair)
                continue;
            print_ratio(b->name, "rps", v[a].name, v[base].name, med_rps[a], med_rps[base]);
            print_ratio(b->name, "p99", v[a].name, v[base].name, med_p99[a], med_p99[base]);
            print_ratio(b->name, "cpu_per_req", v[a].name, v[base].name, med_cpu[a], med_cpu[base]);
        }
    }
    const char *wrk = find_wrk();
    if (strcmp(b->mode, "http") == 0) {
        if (!wrk) {
            bench_comment("%s: wrk not installed (apt-get install wrk), wrk runs skipped", b->name);
            return;
        }
        for (int i = 0; i < nv; i++)
            if (have[i])
                run_wrk(wrk, &v[i], b);
    }
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : def;
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        perror("net: /proc/self/exe");
        return 1;
    }
    self[k] = '\0';
    snprintf(g_bench_dir, sizeof g_bench_dir, "%s", dirname(self));
    snprintf(g_examples_dir, sizeof g_examples_dir, "%s/../examples", g_bench_dir);

    char lg[PATH_MAX + 16];
    snprintf(lg, sizeof lg, "%s/loadgen", g_bench_dir);
    if (access(lg, X_OK) != 0) {
        fprintf(stderr, "net: %s not built\n", lg);
        return 1;
    }

    cpu_set_t set;
    int ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    g_workers = a.workers; /* 0: weft and the ceiling at 1 and 2 threads each */
    g_conns = env_int("NET_BENCH_CONNS", 100);
    g_loadgen_threads = env_int("NET_BENCH_LOADGEN_THREADS", 1);
    const char *sv = getenv("NET_BENCH_SECONDS");
    g_seconds = sv && atof(sv) > 0 ? atof(sv) : a.quick ? 0.5 : 3;
    int rounds = bench_reps(&a, 3, 3);
    if (rounds > 64)
        rounds = 64;
    bench_comment("net: %d CPUs; servers on 127.0.0.1, loadgen in its own process", ncpu);

    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        if (bench_selected(&a, benches[i].name))
            run_bench(&benches[i], rounds, !a.no_baseline);
    if (g_failures)
        fprintf(stderr, "net: %d failed runs\n", g_failures);
    return g_failures ? 1 : 0;
}
