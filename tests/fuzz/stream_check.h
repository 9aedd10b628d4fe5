/*
 * The checks of the buffered stream (weft_stream_*, runtime/stream.c) on one
 * input, shared by the libFuzzer harness (tests/fuzz/fuzz_stream.c) and the
 * replay of the corpus in the regular tests (tests/test_fuzz_corpus.c).
 *
 * Input: byte 0 chooses the read buffer size (1-64 bytes, or the default),
 * byte 1 max_line (1-128, or the default), byte 2 the length K of the
 * control bytes that follow; the rest is the data the transport delivers.
 * The control bytes choose the calls (read_line, read_until with a
 * delimiter of 1-4 bytes, read_exact, read_some, peek, consume, buffered,
 * write, writev, flush) and their sizes, and how the transport answers each
 * read: a chunk of 1 to 32 bytes, all that fits, or an error (-ETIMEDOUT,
 * -ECONNRESET). When they run out the rest is drained with read_some.
 *
 * A model keeps how much of the data the reader has taken (pos) and the
 * transport has delivered; after every call:
 *  - what a call hands back is exactly the data's next bytes, in order, and
 *    what it consumed is what its result says;
 *  - each result is the one the header documents for the data left: a frame
 *    up to and including the first delimiter when it ends within max_line,
 *    else -EMSGSIZE once max_line bytes are buffered, -ENODATA for a partial
 *    frame at end of stream, 0 at end of stream with nothing left; the same
 *    for read_exact (n, -ENODATA, 0), read_some (1..n; only the buffered
 *    bytes when there are some), peek (at least n unless the stream ended),
 *    consume (-EINVAL beyond what is buffered);
 *  - a call during which the transport failed returns that error and keeps
 *    every byte received: weft_stream_buffered shows exactly the data's
 *    bytes from pos to what the transport delivered;
 *  - writes reach the transport in order, all of them after a flush; after
 *    a failed write every write and flush returns that error, and what went
 *    out is a prefix of what was written.
 * At the end everything delivered has been read, once.
 *
 * fuzz_stream_check must run in a task (it runs the stream calls as a task
 * would); it returns NULL or a message.
 */
#ifndef WEFT_FUZZ_STREAM_CHECK_H
#define WEFT_FUZZ_STREAM_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <weft.h>

#include "fuzz_fail.h"

typedef struct fuzz_tr {
    const uint8_t *ctl;
    size_t nctl, ci;
    const uint8_t *data;
    size_t n, delivered;
    int errors;         /* transport errors returned so far */
    ssize_t last_error;
    int bad_read;       /* a read of 0 bytes was asked for */
    /* Writing side: what reached the transport. */
    uint8_t *out;
    size_t out_len, out_cap;
} fuzz_tr;

static int fuzz_more(const fuzz_tr *t) { return t->ci < t->nctl; }
static unsigned fuzz_next(fuzz_tr *t) { return t->ci < t->nctl ? t->ctl[t->ci++] : 0; }

static ssize_t fuzz_tr_read(void *ctx, void *buf, size_t cap, int64_t timeout_ms)
{
    (void)timeout_ms;
    fuzz_tr *t = ctx;
    if (cap == 0) {
        t->bad_read = 1;
        return -EINVAL;
    }
    size_t left = t->n - t->delivered;
    size_t k = cap;
    if (fuzz_more(t)) {
        unsigned c = fuzz_next(t);
        if (c % 16 == 15) {
            t->errors++;
            t->last_error = c & 16 ? -ECONNRESET : -ETIMEDOUT;
            return t->last_error;
        }
        if (!(c & 0x80))
            k = 1 + (c & 31);
    }
    if (left == 0)
        return 0;
    if (k > cap)
        k = cap;
    if (k > left)
        k = left;
    memcpy(buf, t->data + t->delivered, k);
    t->delivered += k;
    return (ssize_t)k;
}

static ssize_t fuzz_tr_write(void *ctx, const void *buf, size_t n, int64_t timeout_ms)
{
    (void)timeout_ms;
    fuzz_tr *t = ctx;
    if (fuzz_more(t) && fuzz_next(t) % 16 == 15) {
        t->errors++;
        t->last_error = -EPIPE;
        return -EPIPE;
    }
    if (n == 0)
        return 0;
    if (t->out_len + n > t->out_cap) {
        size_t cap = (t->out_len + n) * 2 + 64;
        uint8_t *p = realloc(t->out, cap);
        if (!p)
            return -ENOMEM;
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, n);
    t->out_len += n;
    return (ssize_t)n;
}

static ssize_t fuzz_tr_writev(void *ctx, const struct iovec *iov, int cnt, int64_t timeout_ms)
{
    fuzz_tr *t = ctx;
    if (fuzz_more(t) && fuzz_next(t) % 16 == 15) {
        t->errors++;
        t->last_error = -EPIPE;
        return -EPIPE;
    }
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        /* The stream's own pieces: one "call" of the transport, so no error
         * can come between them. */
        size_t ci = t->ci;
        t->ci = t->nctl;
        ssize_t k = fuzz_tr_write(ctx, iov[i].iov_base, iov[i].iov_len, timeout_ms);
        t->ci = ci;
        if (k < 0)
            return k;
        total += (size_t)k;
    }
    return (ssize_t)total;
}

/* The bytes written to the stream so far (a pattern: byte i is (i * 7 + 3)
 * & 0xff), so what came out can be compared without keeping a copy. */
static uint8_t fuzz_wbyte(size_t i) { return (uint8_t)(i * 7 + 3); }

typedef struct fuzz_stream_state {
    fuzz_tr t;
    weft_stream *s;
    size_t pos;         /* data bytes the reader has taken */
    size_t rb, ml;      /* the effective read buffer and max_line */
    size_t written;     /* bytes accepted by write/writev */
    ssize_t werr;       /* the write error that killed the writing side */
} fuzz_stream_state;

/* The buffered bytes are exactly data[pos .. delivered). */
static const char *fuzz_stream_buffer(fuzz_stream_state *st, const char *when)
{
    const char *b;
    size_t have = weft_stream_buffered(st->s, &b);
    if (st->pos > st->t.delivered || have != st->t.delivered - st->pos)
        return fuzz_fail("%s: %zu bytes buffered, %zu delivered, %zu taken", when, have,
                         st->t.delivered, st->pos);
    if (have && memcmp(b, st->t.data + st->pos, have) != 0)
        return fuzz_fail("%s: the buffered bytes are not the data's next ones", when);
    return NULL;
}

/* For a call during which the transport failed: it must return that error. */
static const char *fuzz_tr_failed(const fuzz_tr *t, const char *call, ssize_t r)
{
    return r == t->last_error ? NULL
                              : fuzz_fail("%s: transport failed with %zd, returned %zd", call,
                                          t->last_error, r);
}

/* r > 0 bytes at p handed out by call must be the data's next ones; they
 * are taken. */
static const char *fuzz_take(fuzz_stream_state *st, const void *p, ssize_t r, const char *call)
{
    if (r <= 0)
        return NULL;
    if (!p || memcmp(p, st->t.data + st->pos, (size_t)r) != 0)
        return fuzz_fail("%s: not the data's next bytes", call);
    st->pos += (size_t)r;
    return NULL;
}

static const char *fuzz_stream_read_until(fuzz_stream_state *st, const uint8_t *dl, size_t dlen)
{
    int errs = st->t.errors;
    const char *frame = NULL;
    ssize_t r = weft_stream_read_until(st->s, dl, dlen, &frame, -1);
    if (dlen > st->ml) {
        if (r != -EINVAL)
            return fuzz_fail("delimiter of %zu > max_line %zu: %zd", dlen, st->ml, r);
        return NULL;
    }
    if (st->t.errors != errs)
        return fuzz_tr_failed(&st->t, "read_until", r);
    const uint8_t *rest = st->t.data + st->pos;
    size_t left = st->t.n - st->pos;
    const uint8_t *hit = left >= dlen ? memmem(rest, left, dl, dlen) : NULL;
    ssize_t want;
    if (hit && (size_t)(hit - rest) + dlen <= st->ml)
        want = (ssize_t)((size_t)(hit - rest) + dlen);
    else if (left >= st->ml)
        want = -EMSGSIZE;
    else
        want = left ? -ENODATA : 0;
    if (r != want)
        return fuzz_fail("read_until(%zu-byte delimiter, max_line %zu, %zu left): %zd, "
                         "expected %zd", dlen, st->ml, left, r, want);
    if (r > 0)
        return fuzz_take(st, frame, r, "read_until");
    if (r < 0) {
        size_t have = weft_stream_buffered(st->s, NULL);
        if (!frame || (have && memcmp(frame, rest, have) != 0))
            return fuzz_fail("read_until %zd: *data is not the buffered bytes", r);
        if (r == -EMSGSIZE && have < st->ml)
            return fuzz_fail("-EMSGSIZE with %zu < max_line bytes buffered", have);
        if (r == -ENODATA && st->t.delivered != st->t.n)
            return fuzz_fail("-ENODATA before the end of the stream");
    }
    return NULL;
}

static const char *fuzz_stream_op(fuzz_stream_state *st, unsigned op)
{
    fuzz_tr *t = &st->t;
    size_t left = t->n - st->pos;
    int errs = t->errors;
    static uint8_t buf[4096];
    switch (op % 12) {
    case 0:
        return fuzz_stream_read_until(st, (const uint8_t *)"\n", 1);
    case 1:
        return fuzz_stream_read_until(st, (const uint8_t *)"\r\n", 2);
    case 2: {
        uint8_t dl[4];
        size_t dlen = 1 + fuzz_next(t) % 4;
        for (size_t i = 0; i < dlen; i++)
            dl[i] = (uint8_t)fuzz_next(t);
        return fuzz_stream_read_until(st, dl, dlen);
    }
    case 3: { /* read_exact, sometimes bigger than the buffer */
        unsigned c = fuzz_next(t);
        size_t k = c & 0x80 ? (c & 0x7f) * 32u : c;
        ssize_t r = weft_stream_read_exact(st->s, buf, k, -1);
        if (t->errors != errs)
            return fuzz_tr_failed(t, "read_exact", r);
        ssize_t want = k == 0 ? 0 : left >= k ? (ssize_t)k : left ? -ENODATA : 0;
        if (r != want)
            return fuzz_fail("read_exact(%zu), %zu left: %zd, expected %zd", k, left, r, want);
        return fuzz_take(st, buf, r, "read_exact");
    }
    case 4: { /* read_some */
        unsigned c = fuzz_next(t);
        size_t k = c & 0x80 ? (c & 0x7f) * 32u : c;
        size_t had = t->delivered - st->pos;
        ssize_t r = weft_stream_read_some(st->s, buf, k, -1);
        if (t->errors != errs)
            return fuzz_tr_failed(t, "read_some", r);
        if (k == 0 ? r != 0
                   : had ? r != (ssize_t)(had < k ? had : k)
                         : left ? (r < 1 || (size_t)r > k) : r != 0)
            return fuzz_fail("read_some(%zu), %zu buffered, %zu left: %zd", k, had, left, r);
        return fuzz_take(st, buf, r, "read_some");
    }
    case 5: { /* peek */
        unsigned c = fuzz_next(t);
        size_t k = c & 0x80 ? (c & 0x7f) * 4u : c % 64;
        const char *d = NULL;
        ssize_t r = weft_stream_peek(st->s, k, &d, -1);
        size_t lim = st->ml > st->rb ? st->ml : st->rb;
        if (k > lim)
            return r == -EMSGSIZE ? NULL
                                  : fuzz_fail("peek(%zu) above %zu: %zd", k, lim, r);
        if (t->errors != errs)
            return fuzz_tr_failed(t, "peek", r);
        if (r < 0 || (size_t)r != t->delivered - st->pos || ((size_t)r < k && (size_t)r != left))
            return fuzz_fail("peek(%zu), %zu left: %zd", k, left, r);
        if (r > 0 && (!d || memcmp(d, t->data + st->pos, (size_t)r) != 0))
            return fuzz_fail("peek: not the data's next bytes");
        return NULL;
    }
    case 6: { /* consume, sometimes more than is buffered */
        size_t have = t->delivered - st->pos;
        size_t k = fuzz_next(t) % (have + 2);
        int r = weft_stream_consume(st->s, k);
        if (r != (k <= have ? 0 : -EINVAL))
            return fuzz_fail("consume(%zu) of %zu: %d", k, have, r);
        if (r == 0)
            st->pos += k;
        return NULL;
    }
    case 7:
        return fuzz_stream_buffer(st, "buffered");
    case 8:
    case 9: { /* write / writev of the next bytes of the pattern */
        unsigned c = fuzz_next(t);
        size_t k = c & 0x80 ? (c & 0x7f) * 8u : c % 48;
        uint8_t *w = buf;
        for (size_t i = 0; i < k; i++)
            w[i] = fuzz_wbyte(st->written + i);
        ssize_t r;
        if (op % 12 == 8) {
            r = weft_stream_write(st->s, w, k, -1);
        } else {
            size_t a = k / 3;
            struct iovec v[3] = {{w, a}, {w + a, a}, {w + 2 * a, k - 2 * a}};
            r = weft_stream_writev(st->s, v, 3, -1);
        }
        if (st->werr) {
            if (r != st->werr)
                return fuzz_fail("write after the error %zd: %zd", st->werr, r);
        } else if (t->errors != errs) {
            if (r != t->last_error)
                return fuzz_fail("write: transport failed with %zd, returned %zd",
                                 t->last_error, r);
            st->werr = r;
        } else if (r != (ssize_t)k) {
            return fuzz_fail("write(%zu): %zd", k, r);
        } else {
            st->written += k;
        }
        return NULL;
    }
    case 10: { /* flush */
        int r = weft_stream_flush(st->s, -1);
        if (st->werr) {
            if (r != st->werr)
                return fuzz_fail("flush after the error %zd: %d", st->werr, r);
        } else if (t->errors != errs) {
            if (r != t->last_error)
                return fuzz_fail("flush: transport failed with %zd, returned %d",
                                 t->last_error, r);
            st->werr = r;
        } else if (r != 0 || t->out_len != st->written) {
            return fuzz_fail("flush: %d, %zu of %zu written bytes out", r, t->out_len,
                             st->written);
        }
        return NULL;
    }
    default:
        return fuzz_stream_read_until(st, (const uint8_t *)"\n", 1);
    }
}

static const char *fuzz_stream_run(fuzz_stream_state *st)
{
    const char *err;
    unsigned ops = 0;
    while (fuzz_more(&st->t)) {
        unsigned op = fuzz_next(&st->t);
        if ((err = fuzz_stream_op(st, op)))
            return err;
        if (st->t.bad_read)
            return fuzz_fail("the transport was asked to read 0 bytes");
        if ((err = fuzz_stream_buffer(st, "after a call")))
            return err;
        ops++;
    }
    /* The control bytes are spent: no more transport errors. Drain. */
    static uint8_t buf[512];
    for (size_t guard = 0; guard <= st->t.n + 1; guard++) {
        ssize_t r = weft_stream_read_some(st->s, buf, sizeof buf, -1);
        if (r < 0)
            return fuzz_fail("draining: %zd", r);
        if (r == 0)
            break;
        if (memcmp(buf, st->t.data + st->pos, (size_t)r) != 0)
            return fuzz_fail("draining: not the data's next bytes");
        st->pos += (size_t)r;
    }
    if (st->pos != st->t.n)
        return fuzz_fail("%zu of %zu bytes read in all", st->pos, st->t.n);
    if (!st->werr) {
        if (weft_stream_flush(st->s, -1) != 0 || st->t.out_len != st->written)
            return fuzz_fail("final flush: %zu of %zu bytes out", st->t.out_len, st->written);
    }
    if (st->t.out_len > st->written + (st->werr ? 1u << 20 : 0))
        return fuzz_fail("more bytes out than written");
    for (size_t i = 0; i < st->t.out_len; i++)
        if (st->t.out[i] != fuzz_wbyte(i))
            return fuzz_fail("output byte %zu is not the one written there", i);
    (void)ops;
    return NULL;
}

static const char *fuzz_stream_check(const uint8_t *data, size_t n)
{
    if (n < 3)
        return NULL;
    fuzz_stream_state st;
    memset(&st, 0, sizeof st);
    weft_stream_opts o = {
        .read_buffer = data[0] & 0x80 ? 0 : 1 + (data[0] & 63u),
        .write_buffer = data[0] & 0x40 ? 0 : 1 + (data[1] & 31u),
        .max_line = data[1] & 0x80 ? 0 : 1 + (data[1] & 127u),
    };
    size_t k = data[2];
    if (k > n - 3)
        k = n - 3;
    st.t.ctl = data + 3;
    st.t.nctl = k;
    st.t.data = data + 3 + k;
    st.t.n = n - 3 - k;
    st.rb = o.read_buffer ? o.read_buffer : 16 * 1024;
    st.ml = o.max_line ? o.max_line : 64 * 1024;
    static const weft_stream_ops ops = {fuzz_tr_read, fuzz_tr_write, NULL, NULL};
    static const weft_stream_ops vops = {fuzz_tr_read, fuzz_tr_write, fuzz_tr_writev, NULL};
    int rc = weft_stream_open_ops(data[1] & 0x40 ? &vops : &ops, &st.t, &o, &st.s);
    if (rc != 0)
        return fuzz_fail("weft_stream_open_ops: %d", rc);
    const char *err = fuzz_stream_run(&st);
    /* Close flushes: with the writing side dead it reports that error. */
    st.t.ci = st.t.nctl;
    int crc = weft_stream_close(st.s);
    if (!err && crc != (st.werr ? (int)st.werr : 0))
        err = fuzz_fail("close: %d", crc);
    free(st.t.out);
    return err;
}

#endif
