/*
 * Buffered streams (weft_stream_*): a read buffer and a write buffer over a
 * transport. The transport is a table of calls (weft_stream_ops): the
 * descriptor one here calls weft_read / weft_write / weft_writev / weft_close;
 * TLS offers its own. The stream is a service above net.c and calls only the
 * public I/O calls and weft_now.
 *
 * Read buffer: bytes [rpos, rlen) of rbuf are buffered and unread. rbuf starts
 * at read_buffer bytes and grows (up to max_line) only when a frame or a peek
 * needs more. A frame handed out by read_until stays where it is until the
 * next call on the stream, which may move or overwrite it.
 *
 * Every failure keeps the bytes received: a read that times out, fails or meets
 * end of stream leaves what it got in the read buffer, where the next call (or
 * weft_stream_buffered) finds it.
 *
 * Timeouts: each call turns its timeout_ms into one deadline and hands the
 * transport what is left of it before every call (0 once it has passed).
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "alloc.h"
#include "weft.h"

#define DEFAULT_READ_BUFFER (16 * 1024)
#define DEFAULT_WRITE_BUFFER (16 * 1024)
#define DEFAULT_MAX_LINE (64 * 1024)
#define CLOSE_FLUSH_MS 5000
#define STACK_IOV 16

struct weft_stream {
    weft_stream_ops ops; /* a copy: the caller's table need not outlive the stream */
    void *ctx;
    int fd;              /* -1 for a transport that is not a descriptor */
    int eof;             /* the transport reported end of stream */
    int werr;            /* sticky: a write failed, the write buffer is lost */
    char *rbuf;
    size_t rcap, rpos, rlen;
    size_t rbase;        /* the read buffer's configured size (it shrinks back to it) */
    size_t max_line;
    char *wbuf;
    size_t wcap, wlen;
};

/* ------------------------------------------------------------ deadlines */

/* One deadline per call: -1 stays "none"; any other negative timeout has
 * already passed. */
typedef struct {
    int64_t ms;       /* the caller's timeout, for the first transport call */
    weft_time end;    /* absolute, when ms >= 0 */
    int first;
} call_deadline;

static call_deadline deadline_start(int64_t timeout_ms)
{
    call_deadline d = {.ms = timeout_ms, .end = 0, .first = 1};
    if (timeout_ms < -1)
        d.ms = 0;
    if (d.ms >= 0) {
        int64_t cap = INT64_MAX / 1000000 - 1;
        d.end = weft_now() + (weft_time)(d.ms > cap ? cap : d.ms) * 1000000;
    }
    return d;
}

/* What to hand the transport now: -1, or the milliseconds left (rounded up,
 * so a call never ends early), 0 once the deadline has passed. */
static int64_t deadline_left(call_deadline *d)
{
    if (d->ms < 0)
        return -1;
    if (d->first) {
        d->first = 0;
        return d->ms;
    }
    weft_time now = weft_now();
    if (now >= d->end)
        return 0;
    return (int64_t)((d->end - now + 999999) / 1000000);
}

/* ------------------------------------------------------ descriptor transport */

static ssize_t fd_read(void *ctx, void *buf, size_t n, int64_t timeout_ms)
{
    return weft_read((int)(intptr_t)ctx, buf, n, timeout_ms);
}

static ssize_t fd_write(void *ctx, const void *buf, size_t n, int64_t timeout_ms)
{
    return weft_write((int)(intptr_t)ctx, buf, n, timeout_ms);
}

static ssize_t fd_writev(void *ctx, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    return weft_writev((int)(intptr_t)ctx, iov, iovcnt, timeout_ms);
}

static int fd_close(void *ctx) { return weft_close((int)(intptr_t)ctx); }

static const weft_stream_ops fd_ops = {fd_read, fd_write, fd_writev, fd_close};

/* ------------------------------------------------------------ open, close */

static int stream_new(const weft_stream_ops *ops, void *ctx, int fd, const weft_stream_opts *opts,
                      weft_stream **out)
{
    size_t rb = opts && opts->read_buffer ? opts->read_buffer : DEFAULT_READ_BUFFER;
    size_t wb = opts && opts->write_buffer ? opts->write_buffer : DEFAULT_WRITE_BUFFER;
    size_t ml = opts && opts->max_line ? opts->max_line : DEFAULT_MAX_LINE;
    if (rb > SSIZE_MAX / 2 || wb > SSIZE_MAX / 2 || ml > SSIZE_MAX / 2)
        return -EINVAL;
    weft_stream *s = weft__calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->rbuf = weft__malloc(rb);
    s->wbuf = weft__malloc(wb);
    if (!s->rbuf || !s->wbuf) {
        weft__free(s->rbuf);
        weft__free(s->wbuf);
        weft__free(s);
        return -ENOMEM;
    }
    s->ops = *ops;
    s->ctx = ctx;
    s->fd = fd;
    s->rcap = s->rbase = rb;
    s->wcap = wb;
    s->max_line = ml;
    *out = s;
    return 0;
}

int weft_stream_open(int fd, const weft_stream_opts *opts, weft_stream **out)
{
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    return stream_new(&fd_ops, (void *)(intptr_t)fd, fd, opts, out);
}

int weft_stream_open_ops(const weft_stream_ops *ops, void *ctx, const weft_stream_opts *opts,
                         weft_stream **out)
{
    if (!out || !ops || !ops->read || !ops->write)
        return -EINVAL;
    return stream_new(ops, ctx, -1, opts, out);
}

int weft_stream_fd(const weft_stream *s) { return s ? s->fd : -1; }

int weft_stream_close(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    int rc = weft_stream_flush(s, CLOSE_FLUSH_MS);
    int crc = s->ops.close ? s->ops.close(s->ctx) : 0;
    weft__free(s->rbuf);
    weft__free(s->wbuf);
    weft__free(s);
    return rc < 0 ? rc : crc;
}

/* ------------------------------------------------------------ reading */

size_t weft_stream_buffered(const weft_stream *s, const char **data)
{
    if (!s)
        return 0;
    if (data)
        *data = s->rbuf + s->rpos;
    return s->rlen - s->rpos;
}

int weft_stream_consume(weft_stream *s, size_t n)
{
    if (!s || n > s->rlen - s->rpos)
        return -EINVAL;
    s->rpos += n;
    return 0;
}

/* Makes room after the buffered bytes so that the buffer can hold `need`
 * bytes in all (at least one more than it has): moves the buffered bytes to
 * the front when that helps, and grows the buffer (doubling, at most to
 * `limit`, which is >= need) only when it must. */
static int make_room(weft_stream *s, size_t need, size_t limit)
{
    size_t have = s->rlen - s->rpos;
    if (need <= have)
        need = have + 1;
    if (limit < need)
        limit = need;
    if (s->rpos > 0 && (have == 0 || s->rcap - s->rlen < s->rcap / 4 || need > s->rcap - s->rpos)) {
        memmove(s->rbuf, s->rbuf + s->rpos, have);
        s->rpos = 0;
        s->rlen = have;
    }
    if (need > s->rcap) {
        size_t cap = s->rcap;
        while (cap < need)
            cap = cap > SSIZE_MAX / 2 ? need : cap * 2;
        if (cap > limit)
            cap = limit;
        char *p = weft__realloc(s->rbuf, cap);
        if (!p)
            return -ENOMEM;
        s->rbuf = p;
        s->rcap = cap;
    }
    return 0;
}

/* One transport read into the buffer, made to hold `need` bytes in all
 * (make_room). > 0 bytes added, 0 end of stream (remembered), or -errno. */
static ssize_t fill(weft_stream *s, size_t need, size_t limit, call_deadline *d)
{
    if (s->eof)
        return 0;
    int rc = make_room(s, need, limit);
    if (rc < 0)
        return rc;
    ssize_t n = s->ops.read(s->ctx, s->rbuf + s->rlen, s->rcap - s->rlen, deadline_left(d));
    if (n > 0)
        s->rlen += (size_t)n;
    else if (n == 0)
        s->eof = 1;
    return n;
}

/* When the buffer is empty and grew for one big frame, give the memory back. */
static void maybe_shrink(weft_stream *s)
{
    if (s->rcap > s->rbase && s->rpos == s->rlen) {
        char *p = weft__realloc(s->rbuf, s->rbase);
        if (p) {
            s->rbuf = p;
            s->rcap = s->rbase;
            s->rpos = s->rlen = 0;
        }
    }
}

ssize_t weft_stream_read_until(weft_stream *s, const void *delim, size_t dlen, const char **data,
                               int64_t timeout_ms)
{
    if (!s || !delim || dlen == 0 || !data)
        return -EINVAL;
    if (dlen > s->max_line)
        return -EINVAL;
    maybe_shrink(s);
    const unsigned char *dl = delim;
    size_t scanned = 0; /* bytes after rpos already searched (no match ends before) */
    call_deadline d = {.ms = -1};
    int started = 0;
    for (;;) {
        size_t have = s->rlen - s->rpos;
        const char *base = s->rbuf + s->rpos;
        size_t from = scanned >= dlen - 1 ? scanned - (dlen - 1) : 0;
        size_t limit = have < s->max_line ? have : s->max_line;
        if (limit >= dlen && from <= limit - dlen) {
            const char *hit;
            if (dlen == 1)
                hit = memchr(base + from, dl[0], limit - from);
            else
                hit = memmem(base + from, limit - from, dl, dlen);
            if (hit) {
                size_t n = (size_t)(hit - base) + dlen;
                *data = base;
                s->rpos += n;
                return (ssize_t)n;
            }
        }
        scanned = limit;
        if (have >= s->max_line) {
            *data = base;
            return -EMSGSIZE;
        }
        if (!started) {
            d = deadline_start(timeout_ms);
            started = 1;
        }
        ssize_t n = fill(s, have + 1, s->max_line, &d);
        if (n == 0) {
            *data = s->rbuf + s->rpos;
            return s->rlen > s->rpos ? -ENODATA : 0;
        }
        if (n < 0) {
            *data = s->rbuf + s->rpos;
            return n;
        }
    }
}

ssize_t weft_stream_read_line(weft_stream *s, const char **line, int64_t timeout_ms)
{
    return weft_stream_read_until(s, "\n", 1, line, timeout_ms);
}

ssize_t weft_stream_peek(weft_stream *s, size_t n, const char **data, int64_t timeout_ms)
{
    if (!s || !data)
        return -EINVAL;
    size_t limit = s->max_line > s->rbase ? s->max_line : s->rbase;
    if (n > limit)
        return -EMSGSIZE;
    call_deadline d = {.ms = -1};
    int started = 0;
    while (s->rlen - s->rpos < n) {
        if (!started) {
            d = deadline_start(timeout_ms);
            started = 1;
        }
        ssize_t k = fill(s, n, n, &d);
        if (k == 0)
            break;
        if (k < 0) {
            *data = s->rbuf + s->rpos;
            return k;
        }
    }
    *data = s->rbuf + s->rpos;
    return (ssize_t)(s->rlen - s->rpos);
}

ssize_t weft_stream_read_some(weft_stream *s, void *buf, size_t n, int64_t timeout_ms)
{
    if (!s || (!buf && n > 0))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    size_t have = s->rlen - s->rpos;
    if (have == 0) {
        if (s->eof)
            return 0;
        s->rpos = s->rlen = 0;
        if (n >= s->rcap) { /* big reads go straight to the caller */
            ssize_t k = s->ops.read(s->ctx, buf, n, timeout_ms < -1 ? 0 : timeout_ms);
            if (k == 0)
                s->eof = 1;
            return k;
        }
        call_deadline d = deadline_start(timeout_ms);
        ssize_t k = fill(s, 1, 1, &d);
        if (k <= 0)
            return k;
        have = s->rlen - s->rpos;
    }
    size_t k = have < n ? have : n;
    memcpy(buf, s->rbuf + s->rpos, k);
    s->rpos += k;
    return (ssize_t)k;
}

/* Puts back the k bytes at p (read into the caller's buffer by a read_exact
 * that then failed) in front of the (empty) read buffer. */
static int unread(weft_stream *s, const void *p, size_t k)
{
    if (k == 0)
        return 0;
    s->rpos = s->rlen = 0;
    if (k > s->rcap) {
        char *q = weft__realloc(s->rbuf, k);
        if (!q)
            return -ENOMEM;
        s->rbuf = q;
        s->rcap = k;
    }
    memcpy(s->rbuf, p, k);
    s->rlen = k;
    return 0;
}

ssize_t weft_stream_read_exact(weft_stream *s, void *buf, size_t n, int64_t timeout_ms)
{
    if (!s || (!buf && n > 0) || n > SSIZE_MAX)
        return -EINVAL;
    if (n == 0)
        return 0;
    size_t have = s->rlen - s->rpos;
    if (have >= n) {
        memcpy(buf, s->rbuf + s->rpos, n);
        s->rpos += n;
        return (ssize_t)n;
    }
    call_deadline d = deadline_start(timeout_ms);
    if (n <= s->rcap) {
        /* Fits in the buffer: gather it there, so a failure loses nothing. */
        while (s->rlen - s->rpos < n) {
            ssize_t k = fill(s, n, n, &d);
            if (k == 0)
                return s->rlen > s->rpos ? -ENODATA : 0;
            if (k < 0)
                return k;
        }
        memcpy(buf, s->rbuf + s->rpos, n);
        s->rpos += n;
        return (ssize_t)n;
    }
    /* Bigger than the buffer: what is buffered, then straight into buf. */
    char *out = buf;
    memcpy(out, s->rbuf + s->rpos, have);
    s->rpos = s->rlen = 0;
    size_t got = have;
    while (got < n) {
        ssize_t k = s->eof ? 0 : s->ops.read(s->ctx, out + got, n - got, deadline_left(&d));
        if (k > 0) {
            got += (size_t)k;
            continue;
        }
        if (k == 0)
            s->eof = 1;
        int rc = unread(s, out, got); /* keep every byte received */
        if (rc < 0)
            return rc;
        if (k == 0)
            return got > 0 ? -ENODATA : 0;
        return k;
    }
    return (ssize_t)n;
}

/* ------------------------------------------------------------ writing */

static ssize_t transport_writev(weft_stream *s, const struct iovec *iov, int cnt, call_deadline *d)
{
    if (s->ops.writev)
        return s->ops.writev(s->ctx, iov, cnt, deadline_left(d));
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        ssize_t k = s->ops.write(s->ctx, iov[i].iov_base, iov[i].iov_len, deadline_left(d));
        if (k < 0)
            return k;
    }
    return 0;
}

static int flush_buf(weft_stream *s, call_deadline *d)
{
    if (s->wlen == 0)
        return 0;
    ssize_t k = s->ops.write(s->ctx, s->wbuf, s->wlen, deadline_left(d));
    s->wlen = 0;
    if (k < 0) {
        s->werr = (int)k;
        return (int)k;
    }
    return 0;
}

int weft_stream_flush(weft_stream *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    if (s->werr)
        return s->werr;
    if (s->wlen == 0)
        return 0;
    call_deadline d = deadline_start(timeout_ms);
    return flush_buf(s, &d);
}

ssize_t weft_stream_writev(weft_stream *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    if (!s || iovcnt < 0 || (!iov && iovcnt > 0) || iovcnt >= IOV_MAX)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    if (s->werr)
        return s->werr;
    if (total <= s->wcap - s->wlen) { /* fits: buffer it */
        for (int i = 0; i < iovcnt; i++) {
            memcpy(s->wbuf + s->wlen, iov[i].iov_base, iov[i].iov_len);
            s->wlen += iov[i].iov_len;
        }
        return (ssize_t)total;
    }
    call_deadline d = deadline_start(timeout_ms);
    if (total < s->wcap) { /* small: flush, then buffer */
        int rc = flush_buf(s, &d);
        if (rc < 0)
            return rc;
        size_t off = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(s->wbuf + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        s->wlen = off;
        return (ssize_t)total;
    }
    /* Large: the buffered bytes and the caller's in one transport writev. */
    struct iovec stack[STACK_IOV], *v = stack;
    int cnt = iovcnt + 1;
    if (cnt > STACK_IOV) {
        v = weft__malloc(sizeof *v * (size_t)cnt);
        if (!v)
            return -ENOMEM;
    }
    v[0].iov_base = s->wbuf;
    v[0].iov_len = s->wlen;
    memcpy(v + 1, iov, sizeof *v * (size_t)iovcnt);
    ssize_t k = s->wlen ? transport_writev(s, v, cnt, &d) : transport_writev(s, v + 1, iovcnt, &d);
    if (v != stack)
        weft__free(v);
    s->wlen = 0;
    if (k < 0) {
        s->werr = (int)k;
        return k;
    }
    return (ssize_t)total;
}

ssize_t weft_stream_write(weft_stream *s, const void *buf, size_t n, int64_t timeout_ms)
{
    if (!s || (!buf && n > 0) || n > SSIZE_MAX)
        return -EINVAL;
    if (s->werr)
        return s->werr;
    if (n <= s->wcap - s->wlen) { /* the common case: copy */
        memcpy(s->wbuf + s->wlen, buf, n);
        s->wlen += n;
        return (ssize_t)n;
    }
    struct iovec one = {.iov_base = (void *)buf, .iov_len = n};
    return weft_stream_writev(s, &one, 1, timeout_ms);
}
