/*
 * tls_echo — 64-byte TLS echo over 100 connections: a weft server
 * (weft_tls) against a thread-per-connection server on blocking sockets
 * with the same OpenSSL, in the same run, in interleaved rounds.
 *
 *   build/bench/tls_echo [--quick] [--reps N]
 *
 * Each server runs in a child process (this program re-run with --serve),
 * with a self-signed P-256 certificate made by the openssl command. The
 * load generator is this process: a weft runtime of 2 workers with 100
 * client tasks, each writing 64 bytes and reading the 64 back in a loop.
 * A round starts a server, connects and handshakes all 100 clients,
 * measures for a window, and stops it; rounds alternate which server goes
 * first. Reported (medians over rounds): requests/s, and the server's CPU
 * (user + system from /proc/PID/stat, over the window) per request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench.h"
#include "weft.h"
#include "weft_tls.h"

#define NCONN 100
#define MSG 64

/* ------------------------------------------------------- the weft server */

static weft_tls_ctx *g_sctx;

static void *w_conn(void *arg)
{
    weft_tls_conn *c;
    if (weft_tls_accept(g_sctx, (int)(intptr_t)arg, 10000, &c, NULL, 0) < 0)
        return NULL;
    char buf[4096];
    for (;;) {
        ssize_t n = weft_tls_read(c, buf, sizeof buf, -1);
        if (n <= 0 || weft_tls_write(c, buf, (size_t)n, -1) < 0)
            break;
    }
    weft_tls_close(c);
    return NULL;
}

static void *w_root(void *arg)
{
    (void)arg;
    int lfd = weft_tcp_listen("127.0.0.1", 0, 1024);
    if (lfd < 0)
        return (void *)1;
    printf("%d\n", weft_socket_port(lfd));
    fflush(stdout);
    for (;;) {
        int fd = weft_tcp_accept(lfd, NULL);
        if (fd < 0)
            continue;
        weft_task *t = weft_spawn(w_conn, (void *)(intptr_t)fd);
        if (t)
            weft_detach(t);
        else
            weft_close(fd);
    }
}

/* ---------------------------------------------------- the threads server */

static SSL_CTX *g_tctx;

static void *t_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *s = SSL_new(g_tctx);
    SSL_set_fd(s, fd);
    if (SSL_accept(s) == 1) {
        char buf[4096];
        for (;;) {
            int n = SSL_read(s, buf, sizeof buf);
            if (n <= 0 || SSL_write(s, buf, n) <= 0)
                break;
        }
    }
    SSL_free(s);
    close(fd);
    ERR_clear_error();
    return NULL;
}

static int t_main(const char *cert, const char *key)
{
    signal(SIGPIPE, SIG_IGN);
    g_tctx = SSL_CTX_new(TLS_server_method());
    if (!g_tctx || SSL_CTX_use_certificate_chain_file(g_tctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_tctx, key, SSL_FILETYPE_PEM) != 1)
        return 1;
    SSL_CTX_set_min_proto_version(g_tctx, TLS1_2_VERSION);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0)
        return 1;
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t th;
        if (pthread_create(&th, &attr, t_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}

/* ------------------------------------------------------------ the driver */

static atomic_long g_reqs;
static atomic_int g_stop, g_ready, g_failed;
static weft_tls_ctx *g_cctx;
static int g_port;

static void *client(void *arg)
{
    (void)arg;
    weft_tls_conn *c;
    if (weft_tls_connect(g_cctx, "127.0.0.1", (uint16_t)g_port, 20000, &c, NULL, 0) < 0) {
        atomic_fetch_add(&g_failed, 1);
        atomic_fetch_add(&g_ready, 1);
        return NULL;
    }
    atomic_fetch_add(&g_ready, 1);
    char msg[MSG], back[MSG];
    memset(msg, 'x', sizeof msg);
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        if (weft_tls_write(c, msg, MSG, 10000) != MSG)
            goto fail;
        size_t got = 0;
        while (got < MSG) {
            ssize_t n = weft_tls_read(c, back + got, MSG - got, 10000);
            if (n <= 0)
                goto fail;
            got += (size_t)n;
        }
        atomic_fetch_add_explicit(&g_reqs, 1, memory_order_relaxed);
    }
    weft_tls_close(c);
    return NULL;
fail:
    atomic_fetch_add(&g_failed, 1);
    weft_tls_close(c);
    return NULL;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

typedef struct round_arg {
    const char *self, *kind, *cert, *key;
    double window_s;
    double rps, cpu_us;
} round_arg;

static void *one_round(void *arg)
{
    round_arg *r = arg;
    const char *const argv[] = {r->self, "--serve", r->kind, r->cert, r->key, NULL};
    weft_process *p;
    weft_process_opts o = {.argv = argv, .pipe_stdout = 1};
    if (weft_process_spawn(&o, &p) != 0)
        return (void *)1;
    char line[32];
    size_t n = 0;
    while (n < sizeof line - 1 && weft_read(weft_process_stdout_fd(p), line + n, 1, 10000) == 1)
        if (line[n++] == '\n')
            break;
    line[n] = '\0';
    g_port = atoi(line);
    atomic_store(&g_stop, 0);
    atomic_store(&g_ready, 0);
    atomic_store(&g_failed, 0);
    weft_task *ts[NCONN];
    for (int i = 0; i < NCONN; i++)
        ts[i] = weft_spawn(client, NULL);
    while (atomic_load(&g_ready) < NCONN)
        weft_sleep_ms(5);
    weft_sleep_ms(100); /* warm up */
    long r0 = atomic_load(&g_reqs);
    double c0 = proc_cpu_s(weft_process_pid(p));
    weft_time t0 = weft_now();
    weft_sleep_ms((uint64_t)(r->window_s * 1000));
    long r1 = atomic_load(&g_reqs);
    double c1 = proc_cpu_s(weft_process_pid(p));
    double dt = (double)(weft_now() - t0) / 1e9;
    atomic_store(&g_stop, 1);
    for (int i = 0; i < NCONN; i++)
        weft_join(ts[i], NULL);
    weft_process_kill(p, SIGKILL);
    weft_process_wait(p, NULL, 5000);
    weft_process_free(p);
    long reqs = r1 - r0;
    r->rps = reqs / dt;
    r->cpu_us = reqs ? (c1 - c0) * 1e6 / (double)reqs : 0;
    if (atomic_load(&g_failed))
        printf("# %s: %d client(s) failed\n", r->kind, atomic_load(&g_failed));
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--serve") == 0) {
        if (strcmp(argv[2], "threads") == 0)
            return t_main(argv[3], argv[4]);
        g_sctx = weft_tls_ctx_new(WEFT_TLS_SERVER);
        if (!g_sctx || weft_tls_ctx_load_cert(g_sctx, argv[3], argv[4]) < 0)
            return 1;
        return weft_main(w_root, NULL, NULL) ? 1 : 0; /* one worker per CPU */
    }
    bench_args a = bench_parse_args(argc, argv);
    int rounds = a.reps ? a.reps : a.quick ? 2 : 5;
    double window = a.quick ? 0.5 : 2.0;

    char dir[] = "/tmp/weft_tls_bench_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char cert[96], key[96], cmd[512];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0) {
        printf("# tls_echo: the openssl command failed or is missing; skipped\n");
        rmdir(dir);
        return 0;
    }
    g_cctx = weft_tls_ctx_new(WEFT_TLS_CLIENT);
    weft_tls_ctx_set_verify(g_cctx, 0); /* the benchmark measures records, not PKI */

    char self[512];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';

    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    weft_runtime *rt = weft_runtime_new(&cfg);
    double w_rps[64], t_rps[64], w_cpu[64], t_cpu[64];
    if (rounds > 64)
        rounds = 64;
    printf("# tls_echo: %d connections, %d-byte messages, %d rounds of %.1f s per server, "
           "client: weft, 2 workers; %ld CPUs\n",
           NCONN, MSG, rounds, window, sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < rounds; i++) {
        round_arg w = {self, "weft", cert, key, window, 0, 0};
        round_arg t = {self, "threads", cert, key, window, 0, 0};
        round_arg *order[2] = {i % 2 ? &t : &w, i % 2 ? &w : &t};
        for (int k = 0; k < 2; k++)
            if (weft_runtime_block_on(rt, one_round, order[k], NULL) != 0)
                return 1;
        w_rps[i] = w.rps, t_rps[i] = t.rps, w_cpu[i] = w.cpu_us, t_cpu[i] = t.cpu_us;
        printf("# round %d: weft %.0f req/s %.1f us CPU/req; threads %.0f req/s %.1f us CPU/req\n",
               i + 1, w.rps, w.cpu_us, t.rps, t.cpu_us);
    }
    weft_runtime_free(rt);
    double wr = median(w_rps, rounds), tr = median(t_rps, rounds);
    printf("bench: tls_echo_weft_rps %.0f req/s\n", wr);
    printf("bench: tls_echo_threads_rps %.0f req/s\n", tr);
    printf("bench: tls_echo_weft_cpu_per_req %.2f us\n", median(w_cpu, rounds));
    printf("bench: tls_echo_threads_cpu_per_req %.2f us\n", median(t_cpu, rounds));
    printf("bench: tls_echo_weft_vs_threads %.2f x\n", tr > 0 ? wr / tr : 0);
    weft_tls_ctx_free(g_cctx);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}
