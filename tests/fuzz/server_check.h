/*
 * The checks of the example HTTP server's request handling
 * (examples/http_server.c, compiled in here with its main renamed) on one
 * input, shared by the libFuzzer harness (tests/fuzz/fuzz_server.c) and the
 * corpus replay (tests/test_fuzz_corpus.c).
 *
 * The input is what a client sends on one connection: it goes to the
 * server's connection task over a socketpair in pieces (sizes drawn from a
 * generator seeded by the input, a yield between pieces so the server reads
 * partial heads and bodies), then the client's side shuts down and reads
 * everything the server answers until it closes. The server serves a scratch
 * directory www/ holding index.html and a.txt (regular files), .hidden, a
 * symlink to ../secret, a FIFO and a directory; ../secret lies beside www/.
 * Checks, against what the parser (already checked by http_check.h) and the
 * routing rules in http_server.c's header comment say:
 *  - the answers are exactly one per request the connection carries, in
 *    order (pipelining; bodies by Content-Length skipped, whatever pieces
 *    they arrive in), then a parser error's status with Connection: close,
 *    or nothing for a head cut off by the end of the input; nothing after a
 *    request that closes the connection;
 *  - each answer's status is the routing's: 405 for other methods, 200
 *    Hello for "/", for /file/NAME 400 when NAME has '/' or "..", 404 for an
 *    empty or dot name, a symlink, a FIFO, a directory or a missing file,
 *    200 with the file's bytes for the two regular files; HEAD gets the
 *    same head and no body; the Connection header says what keep-alive
 *    decided;
 *  - no answer ever carries the bytes of ../secret or .hidden.
 *
 * fuzz_server_setup() makes the directory once (0 or -errno);
 * fuzz_server_check must run in a task; NULL or a message.
 */
#ifndef WEFT_FUZZ_SERVER_CHECK_H
#define WEFT_FUZZ_SERVER_CHECK_H

#define main http_server_main
#include "../../examples/http_server.c"
#undef main

#include <stdarg.h>
#include <sys/socket.h>

#include "fuzz_fail.h"

#define FUZZ_SECRET "TOP-SECRET-0451"
#define FUZZ_HIDDEN "HIDDEN-0452"
static const struct {
    const char *name, *body;
} fuzz_files[] = {{"index.html", "<p>index</p>\n"}, {"a.txt", "A"}};

static int fuzz_put(int dirfd, const char *name, const char *body)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    ssize_t k = write(fd, body, strlen(body));
    close(fd);
    return k == (ssize_t)strlen(body) ? 0 : -EIO;
}

static int fuzz_server_setup(void)
{
    static int done;
    if (done)
        return 0;
    char root[] = "/tmp/weft-fuzz-server-XXXXXX";
    if (!mkdtemp(root))
        return -errno;
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return -errno;
    int rc = fuzz_put(rfd, "secret", FUZZ_SECRET);
    if (rc == 0 && mkdirat(rfd, "www", 0755) < 0)
        rc = -errno;
    int wfd = rc == 0 ? openat(rfd, "www", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && wfd < 0)
        rc = -errno;
    for (size_t i = 0; rc == 0 && i < sizeof fuzz_files / sizeof fuzz_files[0]; i++)
        rc = fuzz_put(wfd, fuzz_files[i].name, fuzz_files[i].body);
    if (rc == 0)
        rc = fuzz_put(wfd, ".hidden", FUZZ_HIDDEN);
    if (rc == 0 && (symlinkat("../secret", wfd, "link") < 0 || mkfifoat(wfd, "fifo", 0644) < 0 ||
                    mkdirat(wfd, "dir", 0755) < 0))
        rc = -errno;
    close(rfd);
    if (rc < 0) {
        if (wfd >= 0)
            close(wfd);
        return rc;
    }
    /* The files stay for the process; the directory is removed when it
     * ends only by whoever cleans /tmp (a few bytes). */
    g_dirfd = wfd;
    responses_init();
    done = 1;
    return 0;
}

/* What the routing in http_server.c's respond/serve_file gives. */
static int fuzz_route(const char *buf, const http_request *r, const char **body)
{
    *body = NULL;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD)
        return 405;
    const char *p = buf + r->path.off;
    size_t n = r->path.len;
    if (n == 0 || (n == 1 && p[0] == '/')) {
        *body = "Hello, World!";
        return 200;
    }
    if (n < 6 || memcmp(p, "/file/", 6) != 0)
        return 404;
    p += 6;
    n -= 6;
    if (n == 0)
        return 404;
    if (memchr(p, '/', n) || memmem(p, n, "..", 2))
        return 400;
    for (size_t i = 0; i < sizeof fuzz_files / sizeof fuzz_files[0]; i++)
        if (strlen(fuzz_files[i].name) == n && memcmp(fuzz_files[i].name, p, n) == 0) {
            *body = fuzz_files[i].body;
            return 200;
        }
    return 404;
}

typedef struct fuzz_out {
    char *p;
    size_t len, cap;
} fuzz_out;

typedef struct fuzz_conn {
    int fd;
} fuzz_conn;

static void *fuzz_server_task(void *arg) { return serve(arg); }

/* Checks the answer at out[*at] for a request answered with status `want`
 * (body NULL: the canned texts; checked by length), HEAD or not, with the
 * Connection header `conn` ("close", "keep-alive" or NULL for none). */
static const char *fuzz_answer(const fuzz_out *o, size_t *at, int k, int want, const char *body,
                               int head_only, const char *conn)
{
    const char *s = o->p + *at, *end = o->p + o->len;
    const char *he = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
    if (!he)
        return fuzz_fail("answer %d: no complete head (%zu bytes left)", k,
                         (size_t)(end - s));
    size_t hl = (size_t)(he - s) + 4;
    int status = 0;
    if (sscanf(s, "HTTP/1.1 %3d ", &status) != 1 || status != want)
        return fuzz_fail("answer %d: status %d, expected %d: %.40s", k, status, want, s);
    const char *cl = memmem(s, hl, "\r\nContent-Length: ", 18);
    if (!cl)
        return fuzz_fail("answer %d: no Content-Length", k);
    size_t blen = strtoul(cl + 18, NULL, 10);
    const char *ch = memmem(s, hl, "\r\nConnection: ", 14);
    if (conn ? !ch || strncmp(ch + 14, conn, strlen(conn)) != 0 : ch != NULL)
        return fuzz_fail("answer %d: Connection header, expected %s", k, conn ? conn : "none");
    size_t take = head_only ? 0 : blen;
    if ((size_t)(end - he - 4) < take)
        return fuzz_fail("answer %d: body cut short", k);
    if (body && (blen != strlen(body) || (take && memcmp(he + 4, body, blen) != 0)))
        return fuzz_fail("answer %d: not the expected body", k);
    *at += hl + take;
    return NULL;
}

static const char *fuzz_server_check(const uint8_t *data, size_t n)
{
    if (fuzz_server_setup() < 0)
        return fuzz_fail("setup failed");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return fuzz_fail("socketpair: %d", errno);
    weft_task *srv = weft_spawn(fuzz_server_task, (void *)(intptr_t)sv[1]);
    if (!srv) {
        close(sv[0]);
        close(sv[1]);
        return fuzz_fail("spawn");
    }
    uint64_t seed = 0x2545f4914f6cdd1du ^ n;
    for (size_t i = 0; i < n; i++)
        seed = (seed ^ data[i]) * 0x100000001b3u;
    size_t sent = 0;
    const char *err = NULL;
    while (sent < n && !err) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t k = seed % 4 == 0 ? n - sent : 1 + (size_t)(seed >> 8) % 200;
        if (k > n - sent)
            k = n - sent;
        ssize_t w = weft_write(sv[0], data + sent, k, 10000);
        if (w < 0) { /* the server closed after an error: what is left is not read */
            if (w != -EPIPE && w != -ECONNRESET)
                err = fuzz_fail("write: %zd", w);
            break;
        }
        sent += (size_t)w;
        weft_yield();
    }
    weft_shutdown(sv[0], SHUT_WR);
    fuzz_out o = {0};
    for (;;) {
        if (o.cap - o.len < 4096) {
            char *p = realloc(o.p, o.cap * 2 + 8192);
            if (!p) {
                err = err ? err : fuzz_fail("out of memory");
                break;
            }
            o.p = p;
            o.cap = o.cap * 2 + 8192;
        }
        ssize_t r = weft_read(sv[0], o.p + o.len, o.cap - o.len - 1, 10000);
        if (r == -ECONNRESET)
            break;
        if (r < 0) {
            err = err ? err : fuzz_fail("read: %zd", r);
            break;
        }
        if (r == 0)
            break;
        o.len += (size_t)r;
    }
    weft_join(srv, NULL);
    weft_close(sv[0]);
    if (o.p)
        o.p[o.len] = 0;
    if (!err && o.len && (memmem(o.p, o.len, FUZZ_SECRET, strlen(FUZZ_SECRET)) ||
                          memmem(o.p, o.len, FUZZ_HIDDEN, strlen(FUZZ_HIDDEN))))
        err = fuzz_fail("an answer carries a secret");
    /* The requests the input carries, and their answers in order. */
    size_t pos = 0, at = 0;
    int k = 0;
    const char *buf = (const char *)data;
    static http_request r;
    while (!err && pos < n) {
        http_request_init(&r, 0);
        int rc = http_parse(&r, buf + pos, n - pos);
        if (rc == HTTP_NEED_MORE)
            break;
        if (rc < 0) {
            err = fuzz_answer(&o, &at, k, -rc, "", 0, "close");
            break;
        }
        const char *body;
        int want = fuzz_route(buf + pos, &r, &body);
        const char *conn = !r.keep_alive ? "close" : r.minor == 0 ? "keep-alive" : NULL;
        err = fuzz_answer(&o, &at, k++, want, body, r.method == HTTP_HEAD && want != 405, conn);
        pos += (size_t)rc;
        if (!r.keep_alive || r.content_length >= n - pos)
            break;
        pos += r.content_length;
    }
    if (!err && at != o.len)
        err = fuzz_fail("%zu bytes after the %d answers expected: %.60s", o.len - at, k,
                        o.p + at);
    free(o.p);
    return err;
}

#endif
