/*
 * HTTP client benchmark: keep-alive GETs from the example HTTP server
 * (build/examples/http_server, a subprocess on a free port), with libcurl
 * driven two ways in the same run:
 *
 *   weft   common/weft_curl.h: K tasks fetch through one client (one multi
 *          handle driven by its driver task with weft_wait_fd), on a runtime
 *          of --workers N workers (default 1)
 *   curl   libcurl's own loop: one thread, one multi handle with K easy
 *          handles, curl_multi_perform + curl_multi_poll, each finished
 *          handle re-added for the next request
 *
 * Both keep K requests in flight (K connections, kept alive) and fetch
 * "GET /" ("Hello, World!") REQUESTS times per round, copying each body into
 * a buffer. Rounds alternate (weft, curl, weft, curl, ...; --reps N each,
 * default 3). Reported, as medians over the rounds:
 *   http_get_<mode>_rps           requests per second (wall time of the round)
 *   http_get_<mode>_cpu_per_req   CPU time of this process (getrusage: user +
 *                                 system, all threads; not the server) per
 *                                 request, us
 *   http_get_weft_over_curl_{rps,cpu_per_req}   ratios of the medians
 *
 * Flags (bench/bench.h): --quick (1,000 requests, 2 rounds), --reps N,
 * --workers N, --only weft|curl (one side alone, for profiling). Environment: HTTP_GET_BENCH_REQUESTS (10000),
 * HTTP_GET_BENCH_CONNS (K, 16), HTTP_GET_BENCH_SERVER_WORKERS (1).
 */
#include "bench.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>

#include "weft_curl.h"

static int g_requests = 10000, g_conns = 16;
static unsigned g_workers = 1;
static char g_url[128];

typedef struct result {
    int ok;
    double rps, cpu_us_per_req;
} result;

static double usage_cpu_s(const bench_usage *a, const bench_usage *b)
{
    return (b->user_s - a->user_s) + (b->sys_s - a->sys_s);
}

/* ------------------------------------------------------------ weft */

typedef struct wjob {
    weft_curl *c;
    atomic_int next, done, failed;
} wjob;

static void *w_fetcher(void *arg)
{
    wjob *j = arg;
    weft_curl_resp r = {0};
    while (atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed) < g_requests) {
        CURLcode rc = weft_curl_get(j->c, g_url, 10000, &r);
        if (rc != CURLE_OK || r.status != 200 || r.len != 13) {
            if (atomic_fetch_add(&j->failed, 1) == 0)
                fprintf(stderr, "http_get: weft fetch: %d %s status %ld\n", rc, r.error, r.status);
            break;
        }
        atomic_fetch_add_explicit(&j->done, 1, memory_order_relaxed);
    }
    weft_curl_resp_free(&r);
    return NULL;
}

static void *w_root(void *arg)
{
    wjob *j = arg;
    j->c = weft_curl_new(NULL);
    if (!j->c)
        return (void *)1;
    weft_task **t = calloc((size_t)g_conns, sizeof *t);
    for (int i = 0; t && i < g_conns; i++)
        t[i] = weft_spawn(w_fetcher, j);
    for (int i = 0; t && i < g_conns; i++)
        if (t[i])
            weft_join(t[i], NULL);
    free(t);
    weft_curl_free(j->c);
    return NULL;
}

static result run_weft(void)
{
    result res = {0};
    weft_runtime *rt = bench_new_runtime(g_workers);
    wjob j = {0};
    bench_usage u0 = bench_getrusage();
    int64_t t0 = bench_now_ns();
    void *r = NULL;
    int rc = weft_runtime_block_on(rt, w_root, &j, &r);
    int64_t t1 = bench_now_ns();
    bench_usage u1 = bench_getrusage();
    weft_runtime_free(rt);
    int done = atomic_load(&j.done);
    if (rc != 0 || r || done != g_requests) {
        fprintf(stderr, "http_get: weft round: %d of %d requests\n", done, g_requests);
        return res;
    }
    double wall = (double)(t1 - t0) / 1e9;
    res.ok = 1;
    res.rps = done / wall;
    res.cpu_us_per_req = usage_cpu_s(&u0, &u1) * 1e6 / done;
    bench_usage_comment("weft", &u0, &u1, wall);
    return res;
}

/* ------------------------------------------------------------ curl's own loop */

typedef struct cbuf {
    char *p;
    size_t len, cap;
} cbuf;

static size_t c_append(char *p, size_t size, size_t n, void *ud)
{
    cbuf *b = ud;
    size_t k = size * n;
    if (b->len + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + k + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, k);
    b->len += k;
    b->p[b->len] = '\0';
    return k;
}

static result run_curl(void)
{
    result res = {0};
    bench_usage u0 = bench_getrusage();
    int64_t t0 = bench_now_ns();
    CURLM *m = curl_multi_init();
    CURL **e = calloc((size_t)g_conns, sizeof *e);
    cbuf *bufs = calloc((size_t)g_conns, sizeof *bufs);
    int started = 0, done = 0, failed = 0;
    for (int i = 0; i < g_conns && started < g_requests; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, g_url);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, c_append);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &bufs[i]);
        curl_easy_setopt(e[i], CURLOPT_PRIVATE, &bufs[i]);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(m, e[i]);
        started++;
    }
    int running = 1;
    while (done + failed < started) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *h = msg->easy_handle;
            long status = 0;
            cbuf *b = NULL;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&b);
            if (msg->data.result != CURLE_OK || status != 200 || b->len != 13) {
                if (failed++ == 0)
                    fprintf(stderr, "http_get: curl fetch: %d status %ld\n", msg->data.result,
                            status);
            } else {
                done++;
            }
            curl_multi_remove_handle(m, h);
            if (started < g_requests && !failed) {
                b->len = 0;
                curl_multi_add_handle(m, h);
                started++;
            }
        }
        if (done + failed < started)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    for (int i = 0; i < g_conns; i++) {
        if (e[i]) {
            curl_easy_cleanup(e[i]);
            free(bufs[i].p);
        }
    }
    curl_multi_cleanup(m);
    free(e);
    free(bufs);
    int64_t t1 = bench_now_ns();
    bench_usage u1 = bench_getrusage();
    if (done != g_requests) {
        fprintf(stderr, "http_get: curl round: %d of %d requests\n", done, g_requests);
        return res;
    }
    double wall = (double)(t1 - t0) / 1e9;
    res.ok = 1;
    res.rps = done / wall;
    res.cpu_us_per_req = usage_cpu_s(&u0, &u1) * 1e6 / done;
    bench_usage_comment("curl", &u0, &u1, wall);
    return res;
}

/* ------------------------------------------------------------ server */

static pid_t start_server(const char *path, const char *workers, int *port)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        execl(path, path, "0", workers, (char *)NULL);
        fprintf(stderr, "http_get: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    char line[256];
    size_t len = 0;
    int64_t deadline = bench_now_ns() + 5000000000LL;
    while (len + 1 < sizeof line && !memchr(line, '\n', len)) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int left = (int)((deadline - bench_now_ns()) / 1000000);
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t k = read(p[0], line + len, sizeof line - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    line[len] = '\0';
    close(p[0]);
    char *c = strstr(line, "127.0.0.1:");
    *port = c ? atoi(c + 10) : 0;
    if (*port <= 0) {
        fprintf(stderr, "http_get: %s did not report its port (\"%s\")\n", path, line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

int main(int argc, char **argv)
{
    bench_args a = bench_parse_args(argc, argv);
    const char *s;
    if (a.quick)
        g_requests = 1000;
    if ((s = getenv("HTTP_GET_BENCH_REQUESTS")) && atoi(s) > 0)
        g_requests = atoi(s);
    if ((s = getenv("HTTP_GET_BENCH_CONNS")) && atoi(s) > 0)
        g_conns = atoi(s);
    if (a.workers)
        g_workers = a.workers;
    const char *srv_workers = getenv("HTTP_GET_BENCH_SERVER_WORKERS");
    if (!srv_workers || atoi(srv_workers) <= 0)
        srv_workers = "1";
    int reps = bench_reps(&a, 3, 2);

    /* build/bench/http_get -> build/examples/http_server */
    char self[PATH_MAX], server[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    snprintf(server, sizeof server, "%s/../examples/http_server", dirname(self));
    if (access(server, X_OK) != 0) {
        fprintf(stderr, "http_get: %s not built (make examples)\n", server);
        return 1;
    }
    if (weft_curl_global_init() != CURLE_OK) {
        fprintf(stderr, "http_get: curl_global_init failed\n");
        return 1;
    }
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    signal(SIGPIPE, SIG_IGN);
    int port;
    pid_t srv = start_server(server, srv_workers, &port);
    if (srv < 0)
        return 1;
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d/", port);
    bench_comment("http_get: %d keep-alive GETs per round, %d in flight, %d rounds each; "
                  "weft on %u worker(s), curl_multi_poll on one thread; server %s worker(s)",
                  g_requests, g_conns, reps, g_workers, srv_workers);

    double rps[2][64], cpu[2][64];
    int got[2] = {0, 0}, failures = 0;
    if (reps > 64)
        reps = 64;
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < 2; k++) {
            int mode = (r % 2 == 0) ? k : 1 - k; /* alternate who goes first */
            if (!bench_selected(&a, mode == 0 ? "weft" : "curl"))
                continue;
            result res = mode == 0 ? run_weft() : run_curl();
            if (!res.ok) {
                failures++;
                continue;
            }
            rps[mode][got[mode]] = res.rps;
            cpu[mode][got[mode]] = res.cpu_us_per_req;
            got[mode]++;
        }
    }
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    if (failures) {
        fprintf(stderr, "http_get: %d failed round(s)\n", failures);
        return 1;
    }
    if (got[0] == 0 || got[1] == 0) { /* --only one of them (profiling) */
        int k = got[0] ? 0 : 1;
        bench_report(k ? "http_get_curl_rps" : "http_get_weft_rps", rps[k], got[k], "req/s");
        bench_report(k ? "http_get_curl_cpu_per_req" : "http_get_weft_cpu_per_req", cpu[k], got[k], "us");
        return 0;
    }
    double w_rps = bench_report("http_get_weft_rps", rps[0], got[0], "req/s");
    double c_rps = bench_report("http_get_curl_rps", rps[1], got[1], "req/s");
    double w_cpu = bench_report("http_get_weft_cpu_per_req", cpu[0], got[0], "us");
    double c_cpu = bench_report("http_get_curl_cpu_per_req", cpu[1], got[1], "us");
    bench_print("http_get_weft_over_curl_rps", w_rps / c_rps, "ratio");
    bench_print("http_get_weft_over_curl_cpu_per_req", w_cpu / c_cpu, "ratio");
    curl_global_cleanup();
    return 0;
}
