/*
 * TLS (include/weft_tls.h) with a self-signed certificate made for the test
 * by the openssl command (CN and SAN localhost, SAN IP 127.0.0.1): a 16 MiB
 * echo round trip between a weft client and a weft server, curl --cacert
 * against the HTTPS example server, a client refusing a certificate for
 * the wrong host name (and one it cannot chain), handshake timeouts against
 * a listener that never accepts and a server that accepts and never
 * answers, and a refused connection.
 *
 * Compiles to one skipped test where OpenSSL's headers are missing (the
 * Makefile defines WEFT_HAVE_LIBSSL when they are there).
 */
#include <criterion/criterion.h>

#ifndef WEFT_HAVE_LIBSSL

Test(tls, skipped)
{
    cr_skip_test("built without OpenSSL (install libssl-dev, or run make test)");
}

#else

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>
#include <weft_tls.h>

#include "util.h"

static char tl_dir[64], tl_cert[128], tl_key[128];

/* The certificate and key in a fresh temporary directory (outside any
 * runtime: plain system()). Skips the test without the openssl command. */
static void tl_make_cert(void)
{
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        cr_skip_test("the openssl command is not installed (apt-get install openssl)");
    snprintf(tl_dir, sizeof tl_dir, "/tmp/weft_tls_XXXXXX");
    cr_assert_not_null(mkdtemp(tl_dir));
    snprintf(tl_cert, sizeof tl_cert, "%s/cert.pem", tl_dir);
    snprintf(tl_key, sizeof tl_key, "%s/key.pem", tl_dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
             tl_key, tl_cert);
    cr_assert_eq(system(cmd), 0, "openssl req failed");
}

static void tl_cleanup(void)
{
    unlink(tl_cert);
    unlink(tl_key);
    rmdir(tl_dir);
}

static int64_t tl_ms_since(weft_time t0) { return (int64_t)((weft_now() - t0) / 1000000); }

static weft_tls_ctx *tl_server_ctx(void)
{
    weft_tls_ctx *s;
    if (weft_tls_ctx_create(WEFT_TLS_SERVER, &s) == 0 && weft_tls_ctx_load_cert(s, tl_cert, tl_key) < 0) {
        weft_tls_ctx_free(s);
        return NULL;
    }
    return s;
}

static weft_tls_ctx *tl_client_ctx(int trust)
{
    weft_tls_ctx *c = weft_tls_ctx_new(WEFT_TLS_CLIENT);
    if (c && trust && weft_tls_ctx_load_ca(c, tl_cert, NULL) < 0) {
        weft_tls_ctx_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------ echo server */

typedef struct tl_srv {
    weft_tls_ctx *ctx;
    int lfd;
    int result; /* 0, or the line that failed */
    int handshake_rc;
    char err[256];
    long long echoed;
} tl_srv;

/* Accepts one connection and echoes until the client's close_notify. */
static void *tl_echo_server(void *arg)
{
    tl_srv *s = arg;
    int fd = weft_tcp_accept(s->lfd, NULL);
    if (fd < 0) {
        s->result = __LINE__;
        return NULL;
    }
    weft_tls_conn *c;
    s->handshake_rc = weft_tls_accept(s->ctx, fd, 10000, &c, s->err, sizeof s->err);
    if (s->handshake_rc < 0)
        return NULL;
    char *buf = malloc(65536);
    for (;;) {
        ssize_t n = weft_tls_read(c, buf, 65536, 30000);
        if (n == 0)
            break;
        if (n < 0) {
            snprintf(s->err, sizeof s->err, "read %zd: %s", n, weft_tls_error(c));
            s->result = __LINE__;
            break;
        }
        if (weft_tls_write(c, buf, (size_t)n, 30000) != n) {
            s->result = __LINE__;
            break;
        }
        s->echoed += n;
    }
    free(buf);
    weft_tls_shutdown(c, 1000);
    weft_tls_close(c);
    return NULL;
}

static void *tl_echo_16mib(void *arg)
{
    (void)arg;
    size_t total = getenv("WEFT_VALGRIND") ? (size_t)1 << 20 : (size_t)16 << 20;
    const size_t chunk = 65536;
    tl_srv s = {.ctx = tl_server_ctx()};
    TEST_EXPECT(s.ctx, "server context");
    s.lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(s.lfd >= 0, "listen: %d", s.lfd);
    int port = weft_socket_port(s.lfd);
    weft_task *st = weft_spawn(tl_echo_server, &s);
    TEST_EXPECT(st, "spawn");

    weft_tls_ctx *cctx = tl_client_ctx(1);
    TEST_EXPECT(cctx, "client context");
    weft_tls_conn *c;
    char err[256] = "";
    int rc = weft_tls_connect(cctx, "localhost", (uint16_t)port, 10000, &c, err, sizeof err);
    TEST_EXPECT(rc == 0, "connect: %d (%s)", rc, err);

    unsigned char *out = malloc(total), *in = malloc(chunk);
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < total; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[i] = (unsigned char)x;
    }
    /* One task uses the connection: write a chunk, read it back whole. */
    for (size_t off = 0; off < total; off += chunk) {
        ssize_t w = weft_tls_write(c, out + off, chunk, 30000);
        TEST_EXPECT(w == (ssize_t)chunk, "write at %zu: %zd (%s)", off, w, weft_tls_error(c));
        size_t got = 0;
        while (got < chunk) {
            ssize_t n = weft_tls_read(c, in + got, chunk - got, 30000);
            TEST_EXPECT(n > 0, "read at %zu: %zd (%s)", off + got, n, weft_tls_error(c));
            got += (size_t)n;
        }
        TEST_EXPECT(memcmp(in, out + off, chunk) == 0, "echoed bytes differ in [%zu, +%zu)", off,
                    chunk);
    }
    TEST_EXPECT(weft_tls_shutdown(c, 5000) == 0, "shutdown");
    char b;
    ssize_t e = weft_tls_read(c, &b, 1, 10000);
    TEST_EXPECT(e == 0, "end of stream after the server's close_notify: %zd (%s)", e,
                weft_tls_error(c));
    weft_tls_close(c);
    weft_join(st, NULL);
    TEST_EXPECT(s.handshake_rc == 0, "server handshake: %d (%s)", s.handshake_rc, s.err);
    TEST_EXPECT(s.result == 0, "server failed at line %d (%s)", s.result, s.err);
    TEST_EXPECT(s.echoed == (long long)total, "server echoed %lld", s.echoed);
    free(out);
    free(in);
    weft_close(s.lfd);
    weft_tls_ctx_free(cctx);
    weft_tls_ctx_free(s.ctx);
    return NULL;
}

Test(tls, echo_16mib_round_trip, .timeout = 120)
{
    tl_make_cert();
    test_run(2, tl_echo_16mib, NULL);
    tl_cleanup();
}

/* ------------------------------------------------------- wrong host name */

static void *tl_wrong_host(void *arg)
{
    (void)arg;
    tl_srv s = {.ctx = tl_server_ctx()};
    TEST_EXPECT(s.ctx, "server context");
    s.lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(s.lfd >= 0, "listen");
    int port = weft_socket_port(s.lfd);
    weft_tls_ctx *cctx = tl_client_ctx(1);
    TEST_EXPECT(cctx, "client context");

    /* The certificate is for localhost / 127.0.0.1, not for this name. */
    weft_task *st = weft_spawn(tl_echo_server, &s);
    int fd = weft_tcp_connect("127.0.0.1", (uint16_t)port, 5000);
    TEST_EXPECT(fd >= 0, "connect: %d", fd);
    weft_tls_conn *c;
    TEST_EXPECT(weft_tls_conn_new(cctx, fd, "www.example.com", &c) == 0, "conn_new");
    int rc = weft_tls_handshake(c, 10000);
    TEST_EXPECT(rc == -EPROTO, "handshake with the wrong host: %d, want -EPROTO", rc);
    TEST_EXPECT(strstr(weft_tls_error(c), "certificate verify failed") &&
                    strstr(weft_tls_error(c), "hostname mismatch"),
                "error: '%s'", weft_tls_error(c));
    weft_tls_close(c);
    weft_join(st, NULL);
    TEST_EXPECT(s.handshake_rc < 0, "the server saw the handshake fail: %d", s.handshake_rc);

    /* A client that does not trust the self-signed certificate. */
    weft_tls_ctx *untrusting = tl_client_ctx(0);
    st = weft_spawn(tl_echo_server, &s);
    char err[256] = "";
    rc = weft_tls_connect(untrusting, "localhost", (uint16_t)port, 10000, &c, err, sizeof err);
    TEST_EXPECT(rc == -EPROTO && c == NULL, "untrusted: %d", rc);
    TEST_EXPECT(strstr(err, "self-signed") || strstr(err, "self signed"), "error: '%s'", err);
    weft_join(st, NULL);

    /* The right name over the numeric address: the IP SAN matches. */
    s.handshake_rc = 0;
    st = weft_spawn(tl_echo_server, &s);
    rc = weft_tls_connect(cctx, "127.0.0.1", (uint16_t)port, 10000, &c, err, sizeof err);
    TEST_EXPECT(rc == 0, "by address: %d (%s)", rc, err);
    TEST_EXPECT(weft_tls_write(c, "ping", 4, 5000) == 4, "write");
    char b[8];
    TEST_EXPECT(weft_tls_read(c, b, sizeof b, 5000) == 4 && memcmp(b, "ping", 4) == 0, "echo");
    weft_tls_shutdown(c, 1000);
    weft_tls_close(c);
    weft_join(st, NULL);

    weft_close(s.lfd);
    weft_tls_ctx_free(untrusting);
    weft_tls_ctx_free(cctx);
    weft_tls_ctx_free(s.ctx);
    return NULL;
}

Test(tls, refuses_wrong_host_name, .timeout = 60)
{
    tl_make_cert();
    test_run(2, tl_wrong_host, NULL);
    tl_cleanup();
}

/* ------------------------------------------------------------ timeouts */

static void *tl_silent_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int fd = weft_tcp_accept(lfd, NULL);
    if (fd >= 0) {
        char b[4096];
        while (weft_read(fd, b, sizeof b, 5000) > 0) /* reads the hello, answers nothing */
            ;
        weft_close(fd);
    }
    return NULL;
}

static void *tl_timeouts(void *arg)
{
    (void)arg;
    weft_tls_ctx *cctx = tl_client_ctx(1);
    TEST_EXPECT(cctx, "client context");
    const int64_t T = 300;
    weft_tls_conn *c = NULL;
    char err[256];

    /* A listener that never accepts: TCP connects (the backlog), TLS waits. */
    int lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(lfd >= 0, "listen");
    int port = weft_socket_port(lfd);
    weft_time t0 = weft_now();
    int rc = weft_tls_connect(cctx, "localhost", (uint16_t)port, T, &c, err, sizeof err);
    int64_t took = tl_ms_since(t0);
    TEST_EXPECT(rc == -ETIMEDOUT && c == NULL, "never accepts: %d (%s)", rc, err);
    TEST_EXPECT(took >= T - 5 && took < 10000, "never accepts: took %lld ms", (long long)took);
    weft_close(lfd);

    /* A server that accepts and never writes. */
    lfd = weft_tcp_listen("127.0.0.1", 0, 16);
    TEST_EXPECT(lfd >= 0, "listen");
    port = weft_socket_port(lfd);
    weft_task *st = weft_spawn(tl_silent_accept, (void *)(intptr_t)lfd);
    int fd = weft_tcp_connect("127.0.0.1", (uint16_t)port, 5000);
    TEST_EXPECT(fd >= 0, "connect");
    TEST_EXPECT(weft_tls_conn_new(cctx, fd, "localhost", &c) == 0, "conn_new");
    t0 = weft_now();
    rc = weft_tls_handshake(c, T);
    took = tl_ms_since(t0);
    TEST_EXPECT(rc == -ETIMEDOUT, "silent server: %d (%s)", rc, weft_tls_error(c));
    TEST_EXPECT(took >= T - 5 && took < 10000, "silent server: took %lld ms", (long long)took);
    weft_tls_close(c);
    weft_join(st, NULL);

    /* An expired timeout (negative, not -1) does not wait. */
    rc = weft_tls_connect(cctx, "localhost", (uint16_t)port, -5, &c, err, sizeof err);
    TEST_EXPECT(rc == -ETIMEDOUT, "expired: %d", rc);
    weft_close(lfd);

    /* A refused connection comes through as the socket layer said. */
    rc = weft_tls_connect(cctx, "127.0.0.1", (uint16_t)port, 5000, &c, err, sizeof err);
    TEST_EXPECT(rc == -ECONNREFUSED, "refused: %d (%s)", rc, err);

    weft_tls_ctx_free(cctx);
    return NULL;
}

Test(tls, handshake_timeout_and_refused, .timeout = 60)
{
    tl_make_cert();
    test_run(2, tl_timeouts, NULL);
    tl_cleanup();
}

/* ------------------------------------------- curl against the HTTPS example */

static void *tl_curl(void *arg)
{
    const char *server = arg;
    char envc[200], envk[200];
    snprintf(envc, sizeof envc, "WEFT_TLS_CERT=%s", tl_cert);
    snprintf(envk, sizeof envk, "WEFT_TLS_KEY=%s", tl_key);
    const char *const envp[] = {envc, envk, NULL};
    const char *const argv[] = {server, "0", "2", NULL};
    weft_process *p;
    weft_process_opts o = {.argv = argv, .envp = envp, .pipe_stdout = 1};
    TEST_EXPECT(weft_process_spawn(&o, &p) == 0, "spawn %s", server);
    int outfd = weft_process_stdout_fd(p);
    char line[256];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t k = weft_read(outfd, line + n, 1, 20000);
        if (k <= 0 || line[n++] == '\n')
            break;
    }
    line[n] = '\0';
    const char *colon = strrchr(line, ':');
    int port = colon ? atoi(colon + 1) : 0;
    TEST_EXPECT(port > 0, "server said '%s'", line);

    char url[64], url404[64];
    snprintf(url, sizeof url, "https://localhost:%d/", port);
    snprintf(url404, sizeof url404, "https://localhost:%d/nothing", port);
    const char *const cargv[] = {"curl",     "-sS",       "--noproxy", "*", "--max-time", "20",
                                 "--cacert", tl_cert,     "-w",        " %{http_code}\n",
                                 url,        url404,      NULL};
    weft_process *cp;
    weft_process_opts co = {.argv = cargv, .pipe_stdout = 1, .pipe_stderr = 1};
    TEST_EXPECT(weft_process_spawn(&co, &cp) == 0, "spawn curl");
    weft_process_output out = {0};
    int rc = weft_process_communicate(cp, NULL, 0, &out, 30000);
    int ok = rc == 0 && WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0 && out.out &&
             strstr(out.out, "Hello, World! 200\n") && strstr(out.out, "Not Found\n 404\n");
    char said[512];
    snprintf(said, sizeof said, "rc %d status %d out '%.200s' err '%.200s'", rc, out.status,
             out.out ? out.out : "", out.err ? out.err : "");
    weft_process_output_free(&out);
    weft_process_free(cp);

    /* Without --cacert curl refuses our self-signed certificate. */
    const char *const bargv[] = {"curl", "-sS", "--noproxy", "*", "--max-time", "20", url, NULL};
    weft_process_opts bo = {.argv = bargv, .pipe_stdout = 1, .pipe_stderr = 1};
    TEST_EXPECT(weft_process_spawn(&bo, &cp) == 0, "spawn curl");
    weft_process_output bout = {0};
    int brc = weft_process_communicate(cp, NULL, 0, &bout, 30000);
    int refused = brc == 0 && WIFEXITED(bout.status) && WEXITSTATUS(bout.status) == 60;
    int bstatus = bout.status;
    weft_process_output_free(&bout);
    weft_process_free(cp);

    weft_process_kill(p, SIGTERM);
    weft_process_wait(p, NULL, 10000);
    weft_process_free(p);
    TEST_EXPECT(ok, "curl --cacert: %s", said);
    TEST_EXPECT(refused, "curl without --cacert: rc %d status %d, want exit 60", brc, bstatus);
    return NULL;
}

Test(tls, curl_cacert_against_https_example, .timeout = 90)
{
    const char *dir = getenv("WEFT_EXAMPLES_DIR");
    char server[256];
    snprintf(server, sizeof server, "%s/http_server", dir && *dir ? dir : "build/examples");
    if (access(server, X_OK) != 0)
        cr_skip_test("%s not built (run make first)", server);
    if (system("command -v curl >/dev/null 2>&1") != 0)
        cr_skip_test("the curl command is not installed (apt-get install curl)");
    tl_make_cert();
    test_run(2, tl_curl, server);
    tl_cleanup();
}

Test(tls, ctx_create_reports_why)
{
    weft_tls_ctx *c = (weft_tls_ctx *)1;
    cr_assert_eq(weft_tls_ctx_create(7, &c), -EINVAL);
    cr_assert_null(c);
    cr_assert_eq(weft_tls_ctx_create(WEFT_TLS_CLIENT, NULL), -EINVAL);
    cr_assert_eq(weft_tls_ctx_create(WEFT_TLS_CLIENT, &c), 0);
    weft_tls_ctx_free(c);
}

#endif
