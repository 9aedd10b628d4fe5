/*
 * Buffered streams (weft_stream_*): the reader on every split of its input
 * (one chunk boundary anywhere, byte by byte, every fixed chunk size, random
 * chunking, a two-byte delimiter split across reads) through an in-memory
 * transport whose reads return exactly the chunks the test chooses; the same
 * over a socketpair and a pipe with a writer task; the maximum frame length;
 * end of stream in the middle of a frame; read_exact across many reads; peek;
 * write buffering, writev and flush; errors and timeouts handed through.
 *
 * Checks inside tasks record the first failure (TEST_EXPECT, tests/util.h).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

#define IO_TIMEOUT 20000 /* ms: only there so a bug fails instead of hanging */

/* ------------------------------------------------- in-memory transport */

typedef struct mem {
    const char *in;
    size_t in_len, in_pos;
    const size_t *chunks; /* sizes of successive reads (0 in it = a 0-byte chunk is skipped) */
    size_t nchunks, ci;
    size_t fixed;         /* when chunks run out: this many per read (0 = all) */
    int read_err;         /* returned once in_pos reaches err_at (0 = none) */
    size_t err_at;
    char *out;
    size_t out_len, out_cap;
    int writes, writevs, write_err, closed, reads;
    int64_t last_timeout;
} mem;

static ssize_t mem_read(void *ctx, void *buf, size_t n, int64_t timeout_ms)
{
    mem *m = ctx;
    m->reads++;
    m->last_timeout = timeout_ms;
    if (m->read_err && m->in_pos >= m->err_at)
        return m->read_err;
    if (m->in_pos == m->in_len)
        return 0;
    size_t k = m->in_len - m->in_pos;
    size_t want = 0;
    while (m->ci < m->nchunks && (want = m->chunks[m->ci++]) == 0)
        ;
    if (want == 0)
        want = m->fixed;
    if (want && want < k)
        k = want;
    if (m->read_err && m->err_at - m->in_pos < k)
        k = m->err_at - m->in_pos;
    if (k > n)
        k = n;
    memcpy(buf, m->in + m->in_pos, k);
    m->in_pos += k;
    return (ssize_t)k;
}

static void mem_put(mem *m, const void *p, size_t n)
{
    if (m->out_len + n > m->out_cap) {
        m->out_cap = (m->out_len + n) * 2;
        m->out = realloc(m->out, m->out_cap);
    }
    memcpy(m->out + m->out_len, p, n);
    m->out_len += n;
}

static ssize_t mem_write(void *ctx, const void *buf, size_t n, int64_t timeout_ms)
{
    mem *m = ctx;
    m->writes++;
    m->last_timeout = timeout_ms;
    if (m->write_err)
        return m->write_err;
    mem_put(m, buf, n);
    return (ssize_t)n;
}

static ssize_t mem_writev(void *ctx, const struct iovec *iov, int cnt, int64_t timeout_ms)
{
    mem *m = ctx;
    m->writevs++;
    m->last_timeout = timeout_ms;
    if (m->write_err)
        return m->write_err;
    size_t t = 0;
    for (int i = 0; i < cnt; i++) {
        mem_put(m, iov[i].iov_base, iov[i].iov_len);
        t += iov[i].iov_len;
    }
    return (ssize_t)t;
}

static int mem_close(void *ctx)
{
    ((mem *)ctx)->closed++;
    return 0;
}

static const weft_stream_ops mem_ops = {mem_read, mem_write, mem_writev, mem_close};
static const weft_stream_ops mem_ops_nov = {mem_read, mem_write, NULL, mem_close};

static weft_stream *mem_stream(mem *m, const char *in, size_t len, const weft_stream_opts *o)
{
    m->in = in;
    m->in_len = len;
    weft_stream *s = NULL;
    if (weft_stream_open_ops(&mem_ops, m, o, &s) != 0)
        return NULL;
    return s;
}

/* Reads every frame of s with delim and checks it against the expected
 * frames, in order, then a clean end. Returns 0 or the line that failed. */
static int expect_frames(weft_stream *s, const char *delim, const char *const *want, int nwant)
{
    size_t dlen = strlen(delim);
    for (int i = 0; i < nwant; i++) {
        const char *p;
        ssize_t n = weft_stream_read_until(s, delim, dlen, &p, IO_TIMEOUT);
        if (n != (ssize_t)strlen(want[i]) || memcmp(p, want[i], (size_t)n) != 0) {
            test_fail(__LINE__, "frame %d: got %zd '%.*s', want '%s'", i, n, n > 0 ? (int)n : 0,
                      n > 0 ? p : "", want[i]);
            return __LINE__;
        }
    }
    const char *p;
    ssize_t n = weft_stream_read_until(s, delim, dlen, &p, IO_TIMEOUT);
    if (n != 0) {
        test_fail(__LINE__, "after the last frame: %zd, want 0 (end)", n);
        return __LINE__;
    }
    return 0;
}

static const char g_lines[] = "alpha\nbe\n\ngamma-delta-epsilon\nz\n";
static const char *const g_lines_want[] = {"alpha\n", "be\n", "\n", "gamma-delta-epsilon\n", "z\n"};
#define NLINES 5

static void *lines_every_split_task(void *arg)
{
    (void)arg;
    size_t len = strlen(g_lines);
    weft_stream_opts small = {.read_buffer = 8, .max_line = 64};
    for (int bufsel = 0; bufsel < 2; bufsel++) {
        const weft_stream_opts *o = bufsel ? &small : NULL;
        /* One boundary anywhere. */
        for (size_t k = 0; k <= len; k++) {
            mem m = {0};
            size_t ch[1] = {k};
            m.chunks = ch;
            m.nchunks = 1;
            weft_stream *s = mem_stream(&m, g_lines, len, o);
            TEST_EXPECT(s, "open");
            TEST_EXPECT(expect_frames(s, "\n", g_lines_want, NLINES) == 0, "split at %zu", k);
            TEST_EXPECT(weft_stream_close(s) == 0 && m.closed == 1, "close");
        }
        /* Every fixed chunk size, 1 (byte by byte) to all. */
        for (size_t c = 1; c <= len; c++) {
            mem m = {.fixed = c};
            weft_stream *s = mem_stream(&m, g_lines, len, o);
            TEST_EXPECT(s, "open");
            TEST_EXPECT(expect_frames(s, "\n", g_lines_want, NLINES) == 0, "chunk %zu", c);
            if (c == 1)
                TEST_EXPECT(m.reads >= (int)len, "byte by byte: %d reads", m.reads);
            weft_stream_close(s);
        }
        /* Random chunking. */
        srand(15);
        for (int it = 0; it < 300; it++) {
            size_t ch[64];
            for (int i = 0; i < 64; i++)
                ch[i] = 1 + (size_t)rand() % 7;
            mem m = {.chunks = ch, .nchunks = 64};
            weft_stream *s = mem_stream(&m, g_lines, len, o);
            TEST_EXPECT(s, "open");
            TEST_EXPECT(expect_frames(s, "\n", g_lines_want, NLINES) == 0, "random %d", it);
            weft_stream_close(s);
        }
    }
    return NULL;
}

Test(stream, lines_every_split) { test_run(1, lines_every_split_task, NULL); }

/* A two-byte delimiter split across reads at every point, with a lone '\r'
 * and a lone '\n' inside the frames that must not end them. */
static void *crlf_split_task(void *arg)
{
    (void)arg;
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\rb\nc\r\n\r\nX\r\n";
    static const char *const want[] = {"GET / HTTP/1.1\r\n", "Host: a\rb\nc\r\n", "\r\n", "X\r\n"};
    size_t len = strlen(in);
    for (size_t a = 0; a <= len; a++)
        for (size_t b = 1; b <= 3; b++) {
            size_t ch[3] = {a, b, 1};
            mem m = {.chunks = ch, .nchunks = 3, .fixed = 2};
            weft_stream *s = mem_stream(&m, in, len, NULL);
            TEST_EXPECT(s, "open");
            TEST_EXPECT(expect_frames(s, "\r\n", want, 4) == 0, "split %zu/%zu", a, b);
            weft_stream_close(s);
        }
    return NULL;
}

Test(stream, delimiter_split_across_reads) { test_run(1, crlf_split_task, NULL); }

/* Exactly max_line is accepted; max_line + 1 is -EMSGSIZE with every byte
 * kept, and the stream goes on after the caller consumes them. */
static void *max_line_task(void *arg)
{
    (void)arg;
    char in[64];
    /* 15 bytes + '\n' = 16 = max; then 16 bytes + '\n' = 17; then "ok\n". */
    memset(in, 'a', 15);
    in[15] = '\n';
    memset(in + 16, 'b', 16);
    in[32] = '\n';
    memcpy(in + 33, "ok\n", 3);
    size_t len = 36;
    for (size_t c = 1; c <= len; c++) {
        for (int big = 0; big < 2; big++) {
            weft_stream_opts o = {.read_buffer = big ? 0 : 4, .max_line = 16};
            mem m = {.fixed = c};
            weft_stream *s = mem_stream(&m, in, len, &o);
            TEST_EXPECT(s, "open");
            const char *p;
            ssize_t n = weft_stream_read_line(s, &p, IO_TIMEOUT);
            TEST_EXPECT(n == 16 && memcmp(p, in, 16) == 0, "chunk %zu: exactly max: %zd", c, n);
            n = weft_stream_read_line(s, &p, IO_TIMEOUT);
            TEST_EXPECT(n == -EMSGSIZE, "chunk %zu: max+1: %zd", c, n);
            const char *q;
            size_t have = weft_stream_buffered(s, &q);
            TEST_EXPECT(have >= 16 && q == p && memcmp(q, in + 16, 16) == 0,
                        "chunk %zu: kept %zu bytes", c, have);
            /* Again: the same answer, nothing lost. */
            TEST_EXPECT(weft_stream_read_line(s, &p, IO_TIMEOUT) == -EMSGSIZE, "again");
            TEST_EXPECT(weft_stream_consume(s, 16) == 0, "consume");
            n = weft_stream_read_line(s, &p, IO_TIMEOUT);
            TEST_EXPECT(n == 1 && p[0] == '\n', "rest of the long line: %zd", n);
            n = weft_stream_read_line(s, &p, IO_TIMEOUT);
            TEST_EXPECT(n == 3 && memcmp(p, "ok\n", 3) == 0, "after: %zd", n);
            TEST_EXPECT(weft_stream_read_line(s, &p, IO_TIMEOUT) == 0, "end");
            weft_stream_close(s);
        }
    }
    return NULL;
}

Test(stream, max_line_exact_and_over) { test_run(1, max_line_task, NULL); }

/* End of stream in the middle of a frame: -ENODATA, the partial bytes
 * handed over (and kept until consumed), never mistaken for a whole line. */
static void *eof_mid_line_task(void *arg)
{
    (void)arg;
    static const char in[] = "abc\ndef";
    for (size_t c = 1; c <= 7; c++) {
        mem m = {.fixed = c};
        weft_stream *s = mem_stream(&m, in, 7, NULL);
        const char *p;
        ssize_t n = weft_stream_read_line(s, &p, IO_TIMEOUT);
        TEST_EXPECT(n == 4 && memcmp(p, "abc\n", 4) == 0, "first: %zd", n);
        n = weft_stream_read_line(s, &p, IO_TIMEOUT);
        TEST_EXPECT(n == -ENODATA, "partial: %zd", n);
        const char *q;
        TEST_EXPECT(weft_stream_buffered(s, &q) == 3 && q == p && memcmp(q, "def", 3) == 0,
                    "partial bytes");
        TEST_EXPECT(weft_stream_read_line(s, &p, IO_TIMEOUT) == -ENODATA, "still partial");
        char b[8];
        TEST_EXPECT(weft_stream_read_some(s, b, sizeof b, IO_TIMEOUT) == 3 && memcmp(b, "def", 3) == 0,
                    "read_some takes them");
        TEST_EXPECT(weft_stream_read_line(s, &p, IO_TIMEOUT) == 0, "then end");
        TEST_EXPECT(weft_stream_read_some(s, b, sizeof b, IO_TIMEOUT) == 0, "end for read_some");
        weft_stream_close(s);
    }
    return NULL;
}

Test(stream, eof_mid_line) { test_run(1, eof_mid_line_task, NULL); }

/* read_exact across many reads: below the buffer size (gathered in the
 * buffer) and above it (straight into the caller's buffer), and cut short by
 * end of stream (-ENODATA, the bytes kept). */
static void *read_exact_task(void *arg)
{
    (void)arg;
    enum { N = 5000 };
    char *in = malloc(N), *got = malloc(N);
    for (int i = 0; i < N; i++)
        in[i] = (char)(i * 7 + i / 251);
    for (int rb = 0; rb < 2; rb++) {
        weft_stream_opts o = {.read_buffer = rb ? 64 : 0};
        size_t sizes[] = {1, 3, 100, 1000, N - 1104};
        mem m = {.fixed = 7};
        weft_stream *s = mem_stream(&m, in, N, &o);
        size_t off = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            ssize_t n = weft_stream_read_exact(s, got, sizes[i], IO_TIMEOUT);
            TEST_EXPECT(n == (ssize_t)sizes[i] && memcmp(got, in + off, sizes[i]) == 0,
                        "rb %d piece %zu: %zd", rb, i, n);
            off += sizes[i];
        }
        TEST_EXPECT(off == N && weft_stream_read_exact(s, got, 1, IO_TIMEOUT) == 0, "end");
        TEST_EXPECT(m.reads > N / 7, "many reads: %d", m.reads);
        weft_stream_close(s);

        /* Short: ask for more than there is. */
        mem m2 = {.fixed = 13};
        s = mem_stream(&m2, in, 1000, &o);
        TEST_EXPECT(weft_stream_read_exact(s, got, 10, IO_TIMEOUT) == 10, "head");
        ssize_t n = weft_stream_read_exact(s, got, 2000, IO_TIMEOUT);
        TEST_EXPECT(n == -ENODATA, "rb %d: short: %zd", rb, n);
        const char *p;
        TEST_EXPECT(weft_stream_buffered(s, &p) == 990 && memcmp(p, in + 10, 990) == 0,
                    "rb %d: the 990 bytes kept", rb);
        TEST_EXPECT(weft_stream_read_exact(s, got, 990, IO_TIMEOUT) == 990 &&
                        memcmp(got, in + 10, 990) == 0,
                    "then readable");
        weft_stream_close(s);
    }
    free(in);
    free(got);
    return NULL;
}

Test(stream, read_exact_many_reads) { test_run(1, read_exact_task, NULL); }

static void *peek_task(void *arg)
{
    (void)arg;
    static const char in[] = "0123456789";
    mem m = {.fixed = 1};
    weft_stream *s = mem_stream(&m, in, 10, NULL);
    const char *p;
    TEST_EXPECT(weft_stream_peek(s, 0, &p, IO_TIMEOUT) == 0 && m.reads == 0, "peek 0: no I/O");
    ssize_t n = weft_stream_peek(s, 4, &p, IO_TIMEOUT);
    TEST_EXPECT(n == 4 && memcmp(p, "0123", 4) == 0, "peek 4: %zd", n);
    n = weft_stream_peek(s, 2, &p, IO_TIMEOUT);
    TEST_EXPECT(n == 4 && memcmp(p, "0123", 4) == 0, "peek 2 again, nothing consumed: %zd", n);
    TEST_EXPECT(weft_stream_consume(s, 5) == -EINVAL, "consume more than buffered");
    TEST_EXPECT(weft_stream_consume(s, 1) == 0, "consume 1");
    char b[16];
    n = weft_stream_read_exact(s, b, 5, IO_TIMEOUT);
    TEST_EXPECT(n == 5 && memcmp(b, "12345", 5) == 0, "read after peek: %zd", n);
    n = weft_stream_peek(s, 100, &p, IO_TIMEOUT);
    TEST_EXPECT(n == 4 && memcmp(p, "6789", 4) == 0, "peek past the end: %zd", n);
    TEST_EXPECT(weft_stream_peek(s, 1 << 20, &p, IO_TIMEOUT) == -EMSGSIZE, "peek too far");
    weft_stream_close(s);
    return NULL;
}

Test(stream, peek_and_consume) { test_run(1, peek_task, NULL); }

/* Writes are buffered until flush, a full buffer or a big write; writev
 * keeps the order; without a writev op the pieces go in turn. */
static void *write_task(void *arg)
{
    (void)arg;
    for (int nov = 0; nov < 2; nov++) {
        mem m = {0};
        weft_stream_opts o = {.write_buffer = 32};
        weft_stream *s = NULL;
        TEST_EXPECT(weft_stream_open_ops(nov ? &mem_ops_nov : &mem_ops, &m, &o, &s) == 0, "open");
        TEST_EXPECT(weft_stream_write(s, "hello ", 6, IO_TIMEOUT) == 6, "write");
        struct iovec v[3] = {{"wor", 3}, {"", 0}, {"ld\n", 3}};
        TEST_EXPECT(weft_stream_writev(s, v, 3, IO_TIMEOUT) == 6, "writev");
        TEST_EXPECT(m.writes + m.writevs == 0 && m.out_len == 0, "buffered, nothing sent");
        TEST_EXPECT(weft_stream_flush(s, IO_TIMEOUT) == 0, "flush");
        TEST_EXPECT(m.out_len == 12 && memcmp(m.out, "hello world\n", 12) == 0, "flushed");
        TEST_EXPECT(weft_stream_flush(s, IO_TIMEOUT) == 0 && m.writes + m.writevs == 1,
                    "empty flush sends nothing");
        /* Fill past the buffer: the first 30 go out when the next 5 do not fit. */
        char a[30];
        memset(a, 'x', sizeof a);
        TEST_EXPECT(weft_stream_write(s, a, 30, IO_TIMEOUT) == 30, "30");
        TEST_EXPECT(m.out_len == 12, "still buffered");
        TEST_EXPECT(weft_stream_write(s, "yyyyy", 5, IO_TIMEOUT) == 5, "5");
        TEST_EXPECT(m.out_len == 42, "the 30 went out: %zu", m.out_len);
        /* A big write goes at once, with what was buffered before it, in order. */
        char big[100];
        memset(big, 'z', sizeof big);
        TEST_EXPECT(weft_stream_write(s, big, 100, IO_TIMEOUT) == 100, "big");
        TEST_EXPECT(m.out_len == 147, "big went out: %zu", m.out_len);
        TEST_EXPECT(memcmp(m.out + 42, "yyyyy", 5) == 0 && m.out[47] == 'z' && m.out[146] == 'z',
                    "order");
        if (!nov)
            TEST_EXPECT(m.writevs == 1, "one writev for buffer + big: %d", m.writevs);
        TEST_EXPECT(weft_stream_write(s, "tail", 4, IO_TIMEOUT) == 4, "tail");
        TEST_EXPECT(weft_stream_close(s) == 0, "close");
        TEST_EXPECT(m.closed == 1 && m.out_len == 151 && memcmp(m.out + 147, "tail", 4) == 0,
                    "close flushed");
        free(m.out);
    }
    return NULL;
}

Test(stream, write_buffering_writev_flush) { test_run(1, write_task, NULL); }

/* Errors: a read error is handed through with the bytes kept; a write error
 * kills the writing side for good. Timeouts reach the transport. */
static void *errors_task(void *arg)
{
    (void)arg;
    mem m = {.fixed = 1, .read_err = -ECONNRESET, .err_at = 2};
    weft_stream *s = mem_stream(&m, "ab\n", 3, NULL);
    const char *p;
    TEST_EXPECT(weft_stream_read_line(s, &p, -1) == -ECONNRESET, "read error");
    TEST_EXPECT(m.last_timeout == -1, "no timeout passed as -1: %lld", (long long)m.last_timeout);
    TEST_EXPECT(weft_stream_buffered(s, &p) == 2 && memcmp(p, "ab", 2) == 0, "bytes kept");
    m.read_err = 0;
    TEST_EXPECT(weft_stream_read_line(s, &p, 1000) == 3 && memcmp(p, "ab\n", 3) == 0, "resumes");
    TEST_EXPECT(m.last_timeout > 0 && m.last_timeout <= 1000, "timeout passed: %lld",
                (long long)m.last_timeout);
    TEST_EXPECT(weft_stream_read_line(s, &p, -7) == 0 && m.last_timeout == 0,
                "a negative timeout other than -1 has passed: %lld", (long long)m.last_timeout);
    m.write_err = -EPIPE;
    TEST_EXPECT(weft_stream_write(s, "x", 1, IO_TIMEOUT) == 1, "buffered");
    TEST_EXPECT(weft_stream_flush(s, IO_TIMEOUT) == -EPIPE, "flush fails");
    m.write_err = 0;
    TEST_EXPECT(weft_stream_write(s, "x", 1, IO_TIMEOUT) == -EPIPE, "sticky");
    TEST_EXPECT(weft_stream_close(s) == -EPIPE && m.closed == 1, "close reports it, closes");
    return NULL;
}

Test(stream, errors_and_timeouts_handed_through) { test_run(1, errors_task, NULL); }

Test(stream, bad_input)
{
    weft_stream *s = NULL;
    mem m = {0};
    cr_assert_eq(weft_stream_open(-1, NULL, &s), -EBADF);
    cr_assert_eq(weft_stream_open(0, NULL, NULL), -EINVAL);
    cr_assert_eq(weft_stream_open_ops(NULL, &m, NULL, &s), -EINVAL);
    weft_stream_ops noread = {NULL, mem_write, NULL, NULL};
    cr_assert_eq(weft_stream_open_ops(&noread, &m, NULL, &s), -EINVAL);
    cr_assert_eq(weft_stream_open_ops(&mem_ops, &m, NULL, &s), 0);
    const char *p;
    char b[4];
    cr_assert_eq(weft_stream_read_until(s, "", 0, &p, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_until(s, NULL, 1, &p, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_until(s, "\n", 1, NULL, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_line(NULL, &p, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_exact(s, NULL, 4, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_some(s, NULL, 4, 0), -EINVAL);
    cr_assert_eq(weft_stream_read_some(s, b, 0, 0), 0);
    cr_assert_eq(weft_stream_peek(s, 1, NULL, 0), -EINVAL);
    cr_assert_eq(weft_stream_write(s, NULL, 1, 0), -EINVAL);
    cr_assert_eq(weft_stream_writev(s, NULL, 1, 0), -EINVAL);
    cr_assert_eq(weft_stream_writev(s, NULL, -1, 0), -EINVAL);
    cr_assert_eq(weft_stream_consume(s, 1), -EINVAL);
    cr_assert_eq(weft_stream_fd(s), -1);
    cr_assert_eq(weft_stream_fd(NULL), -1);
    cr_assert_eq(weft_stream_close(NULL), -EINVAL);
    cr_assert_eq(weft_stream_close(s), 0);
    cr_assert_eq(m.closed, 1);
}

/* ------------------------------------------------- real descriptors */

typedef struct writer_args {
    int fd;
    const char *data;
    size_t len;
    unsigned seed;
    int close_after; /* close fd when done */
} writer_args;

/* Writes data in random chunks of 1..64 bytes, yielding between them so the
 * reader sees them in many reads. */
static void *chunk_writer(void *arg)
{
    writer_args *w = arg;
    size_t off = 0;
    unsigned seed = w->seed;
    while (off < w->len) {
        size_t k = 1 + (size_t)rand_r(&seed) % 64;
        if (k > w->len - off)
            k = w->len - off;
        TEST_EXPECT(weft_write(w->fd, w->data + off, k, IO_TIMEOUT) == (ssize_t)k, "write");
        off += k;
        weft_yield();
    }
    if (w->close_after)
        weft_close(w->fd);
    return NULL;
}

/* The text of line i (without its '\n'): lengths vary from 0 to ~300. */
static size_t make_line(char *out, int i)
{
    size_t n = (size_t)((i * 37) % 301);
    for (size_t j = 0; j < n; j++)
        out[j] = (char)('a' + (i + (int)j) % 26);
    return n;
}

static void *socketpair_lines_task(void *arg)
{
    int use_pipe = (int)(intptr_t)arg;
    enum { LINES = 2000 };
    char *data = malloc(LINES * 302);
    size_t len = 0;
    for (int i = 0; i < LINES; i++) {
        len += make_line(data + len, i);
        data[len++] = '\n';
    }
    int sv[2];
    if (use_pipe)
        TEST_EXPECT(pipe2(sv, O_NONBLOCK | O_CLOEXEC) == 0, "pipe");
    else
        TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
                    "socketpair");
    int rfd = sv[0], wfd = sv[1];
    writer_args w = {wfd, data, len, 42u + (unsigned)use_pipe, 1};
    weft_task *t = weft_spawn(chunk_writer, &w);
    TEST_EXPECT(t, "spawn");
    weft_stream_opts o = {.read_buffer = 512, .max_line = 512};
    weft_stream *s;
    TEST_EXPECT(weft_stream_open(rfd, &o, &s) == 0 && weft_stream_fd(s) == rfd, "open");
    char want[302];
    for (int i = 0; i < LINES; i++) {
        size_t n = make_line(want, i);
        want[n++] = '\n';
        const char *p;
        ssize_t got = weft_stream_read_line(s, &p, IO_TIMEOUT);
        TEST_EXPECT(got == (ssize_t)n && memcmp(p, want, n) == 0, "line %d: %zd, want %zu", i, got,
                    n);
    }
    const char *p;
    TEST_EXPECT(weft_stream_read_line(s, &p, IO_TIMEOUT) == 0, "end");
    TEST_EXPECT(weft_join(t, NULL) == 0, "join");
    TEST_EXPECT(weft_stream_close(s) == 0, "close");
    free(data);
    return NULL;
}

Test(stream, socketpair_random_chunks) { test_run(4, socketpair_lines_task, (void *)0); }
Test(stream, pipe_random_chunks) { test_run(2, socketpair_lines_task, (void *)1); }

/* A line that arrives in two parts, the first before a read times out: the
 * timeout loses nothing. Then a stream over the write end of a socketpair:
 * the peer reads what the stream flushed and close sends the rest. */
static void *fd_timeout_and_write_task(void *arg)
{
    (void)arg;
    int sv[2];
    TEST_EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "sp");
    weft_stream *r, *w;
    TEST_EXPECT(weft_stream_open(sv[0], NULL, &r) == 0, "open r");
    TEST_EXPECT(weft_stream_open(sv[1], NULL, &w) == 0, "open w");
    const char *p;
    TEST_EXPECT(weft_stream_read_line(r, &p, 0) == -ETIMEDOUT, "nothing there");
    TEST_EXPECT(weft_stream_write(w, "par", 3, IO_TIMEOUT) == 3, "write");
    TEST_EXPECT(weft_stream_flush(w, IO_TIMEOUT) == 0, "flush");
    TEST_EXPECT(weft_stream_peek(r, 3, &p, IO_TIMEOUT) == 3, "part arrived");
    TEST_EXPECT(weft_stream_read_line(r, &p, 10) == -ETIMEDOUT, "no newline yet");
    TEST_EXPECT(weft_stream_buffered(r, NULL) == 3, "kept");
    struct iovec v[2] = {{"tial\n", 5}, {"more", 4}};
    TEST_EXPECT(weft_stream_writev(w, v, 2, IO_TIMEOUT) == 9, "writev");
    TEST_EXPECT(weft_stream_close(w) == 0, "close flushes and closes");
    ssize_t n = weft_stream_read_line(r, &p, IO_TIMEOUT);
    TEST_EXPECT(n == 8 && memcmp(p, "partial\n", 8) == 0, "whole line: %zd", n);
    TEST_EXPECT(weft_stream_read_line(r, &p, IO_TIMEOUT) == -ENODATA, "partial at end");
    char b[8];
    TEST_EXPECT(weft_stream_read_some(r, b, 8, IO_TIMEOUT) == 4 && memcmp(b, "more", 4) == 0, "rest");
    TEST_EXPECT(weft_stream_close(r) == 0, "close r");
    return NULL;
}

Test(stream, fd_timeout_keeps_bytes_and_close_flushes) { test_run(2, fd_timeout_and_write_task, NULL); }
