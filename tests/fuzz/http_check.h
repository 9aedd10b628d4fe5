/*
 * The checks of the HTTP request parser (common/http_parser.h) on one input,
 * shared by the libFuzzer harness (tests/fuzz/fuzz_http.c) and the replay of
 * the corpus in the regular tests (tests/test_fuzz_corpus.c).
 *
 * fuzz_http_check(data, n) parses data[0..n) as the bytes a connection
 * received and returns NULL, or a message saying which promise broke:
 *  - one parse of the whole input, a byte-by-byte parse and a parse fed in
 *    pseudo-random pieces (each piece in a freshly allocated copy: the
 *    buffer may move between calls) end with the same result and the same
 *    fields; the byte-by-byte parse says NEED_MORE up to the very byte that
 *    decides, and a complete head is decided by its own bytes alone;
 *  - a complete head: its length is within the input and HTTP_MAX_HEAD and
 *    ends with LF; every span lies in the head, in order, with the syntax
 *    the header comment promises (method token and a known method, target
 *    of visible ASCII with path and query inside it, header names of token
 *    characters followed by ':', values without surrounding whitespace or
 *    control characters); one Host for HTTP/1.1, Content-Length as parsed,
 *    no Transfer-Encoding; keep_alive as the version and Connection say;
 *  - an error is one of the documented statuses; NEED_MORE only below
 *    HTTP_MAX_HEAD bytes; asking again gives the same answer;
 *  - a smaller body limit changes a success only into -413.
 */
#ifndef WEFT_FUZZ_HTTP_CHECK_H
#define WEFT_FUZZ_HTTP_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fail.h"
#include "http_parser.h"

static int fuzz_span_eq(http_span a, http_span b) { return a.off == b.off && a.len == b.len; }

/* The results of two parses that both returned rc > 0 agree. */
static const char *fuzz_http_same(const http_request *a, const http_request *b, const char *what)
{
    if (a->method != b->method || a->minor != b->minor || a->keep_alive != b->keep_alive ||
        a->content_length != b->content_length || a->nheaders != b->nheaders)
        return fuzz_fail("%s: method/minor/keep_alive/content_length/nheaders differ", what);
    if (!fuzz_span_eq(a->method_name, b->method_name) || !fuzz_span_eq(a->target, b->target) ||
        !fuzz_span_eq(a->path, b->path) || !fuzz_span_eq(a->query, b->query))
        return fuzz_fail("%s: request-line spans differ", what);
    for (unsigned i = 0; i < a->nheaders; i++)
        if (!fuzz_span_eq(a->headers[i].name, b->headers[i].name) ||
            !fuzz_span_eq(a->headers[i].value, b->headers[i].value))
            return fuzz_fail("%s: header %u differs", what, i);
    return NULL;
}

static int fuzz_in(http_span s, size_t lo, size_t hi)
{
    return s.off >= lo && (size_t)s.off + s.len <= hi;
}

/* The promises about a complete head of length rc. */
static const char *fuzz_http_head(const http_request *r, const unsigned char *b, size_t n, int rc)
{
    size_t h = (size_t)rc;
    if (h > n || h > HTTP_MAX_HEAD || b[h - 1] != '\n')
        return fuzz_fail("head length %d of %zu bytes", rc, n);
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    http_span m = r->method_name, t = r->target;
    if (m.len == 0 || !fuzz_in(m, 0, h) || b[m.off + m.len] != ' ')
        return fuzz_fail("method span");
    for (size_t i = m.off; i < (size_t)m.off + m.len; i++)
        if (!http__tchar(b[i]))
            return fuzz_fail("method byte %#x", b[i]);
    if (r->method == HTTP_METHOD_UNKNOWN || r->method != http__method(b + m.off, m.len))
        return fuzz_fail("method %d for its name", r->method);
    if (t.len == 0 || t.off != m.off + m.len + 1 || !fuzz_in(t, 0, h) || b[t.off + t.len] != ' ')
        return fuzz_fail("target span");
    for (size_t i = t.off; i < (size_t)t.off + t.len; i++)
        if (b[i] <= 0x20 || b[i] >= 0x7f)
            return fuzz_fail("target byte %#x", b[i]);
    size_t te = (size_t)t.off + t.len;
    if (!fuzz_in(r->path, t.off, te) || (r->query.len && !fuzz_in(r->query, t.off, te)))
        return fuzz_fail("path or query outside the target");
    if (b[t.off] == '/' && r->path.off != t.off)
        return fuzz_fail("origin-form path does not start the target");
    if (b[t.off] == '*' && (t.len != 1 || r->method != HTTP_OPTIONS))
        return fuzz_fail("'*' target");
    if (r->path.len && b[r->path.off] != '/' && b[r->path.off] != '*')
        return fuzz_fail("path does not start with '/'");
    if (r->query.len && (r->query.off == 0 || b[r->query.off - 1] != '?'))
        return fuzz_fail("query not after '?'");
    if (memchr(b + r->path.off, '?', r->path.len))
        return fuzz_fail("'?' inside the path");
    if (memcmp(b + te + 1, "HTTP/1.", 7) != 0 || r->minor != b[te + 8] - '0' || r->minor > 9)
        return fuzz_fail("version");
    /* Headers. */
    if (r->nheaders > HTTP_MAX_HEADERS)
        return fuzz_fail("%u headers", r->nheaders);
    size_t prev = te + 9, hosts = 0, cl = 0;
    int close = 0;
    for (unsigned k = 0; k < r->nheaders; k++) {
        http_span nm = r->headers[k].name, v = r->headers[k].value;
        if (nm.len == 0 || nm.off < prev || !fuzz_in(nm, 0, h) || b[nm.off + nm.len] != ':')
            return fuzz_fail("header %u name span", k);
        if (b[nm.off - 1] != '\n')
            return fuzz_fail("header %u does not start a line", k);
        for (size_t i = nm.off; i < (size_t)nm.off + nm.len; i++)
            if (!http__tchar(b[i]))
                return fuzz_fail("header %u name byte %#x", k, b[i]);
        if (v.off <= nm.off + nm.len || !fuzz_in(v, 0, h))
            return fuzz_fail("header %u value span", k);
        for (size_t i = nm.off + nm.len + 1; i < v.off; i++)
            if (b[i] != ' ' && b[i] != '\t')
                return fuzz_fail("header %u: skipped byte %#x before the value", k, b[i]);
        if (v.len && (b[v.off] == ' ' || b[v.off] == '\t' || b[v.off + v.len - 1] == ' ' ||
                      b[v.off + v.len - 1] == '\t'))
            return fuzz_fail("header %u value not trimmed", k);
        for (size_t i = v.off; i < (size_t)v.off + v.len; i++)
            if ((b[i] < 0x20 && b[i] != '\t') || b[i] == 0x7f)
                return fuzz_fail("header %u value byte %#x", k, b[i]);
        size_t e = (size_t)v.off + v.len;
        while (b[e] == ' ' || b[e] == '\t')
            e++;
        if (b[e] != '\r' && b[e] != '\n')
            return fuzz_fail("header %u value does not end its line", k);
        prev = e;
        const unsigned char *vp = b + v.off;
        if (http__ieq(b + nm.off, nm.len, "host"))
            hosts++;
        if (http__ieq(b + nm.off, nm.len, "transfer-encoding"))
            return fuzz_fail("Transfer-Encoding accepted");
        if (http__ieq(b + nm.off, nm.len, "content-length")) {
            uint64_t x = 0;
            if (v.len == 0)
                return fuzz_fail("empty Content-Length accepted");
            for (size_t i = 0; i < v.len; i++) {
                if (vp[i] < '0' || vp[i] > '9')
                    return fuzz_fail("Content-Length byte %#x accepted", vp[i]);
                x = x * 10 + (vp[i] - '0'); /* bounded below: accepted <= max_body */
                if (x > r->max_body)
                    return fuzz_fail("Content-Length above the limit accepted");
            }
            if (x != r->content_length)
                return fuzz_fail("Content-Length %llu, parsed %llu", (unsigned long long)x,
                                 (unsigned long long)r->content_length);
            cl++;
        }
        if (http__ieq(b + nm.off, nm.len, "connection")) {
            for (size_t i = 0; i + 5 <= v.len; i++) {
                int start = i == 0 || vp[i - 1] == ' ' || vp[i - 1] == '\t' || vp[i - 1] == ',';
                int end =
                    i + 5 == v.len || vp[i + 5] == ' ' || vp[i + 5] == '\t' || vp[i + 5] == ',';
                if (start && end && http__ieq(vp + i, 5, "close"))
                    close = 1;
            }
        }
    }
    if (!cl && r->content_length)
        return fuzz_fail("content_length without a Content-Length");
    if (hosts > 1 || (r->minor >= 1 && hosts != 1))
        return fuzz_fail("%zu Host headers accepted in HTTP/1.%d", hosts, r->minor);
    if (r->keep_alive != 0 && r->keep_alive != 1)
        return fuzz_fail("keep_alive %d", r->keep_alive);
    if (close && r->keep_alive)
        return fuzz_fail("keep-alive despite Connection: close");
    if (r->minor >= 1 && !close && !r->keep_alive)
        return fuzz_fail("HTTP/1.1 without close, not kept alive");
    return NULL;
}

/* A pseudo-random generator seeded from the input, so a replay splits the
 * input exactly as the fuzzer did. */
static uint64_t fuzz_http_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int fuzz_http_known(int rc)
{
    return rc == HTTP_ERR_BAD_REQUEST || rc == HTTP_ERR_BODY_TOO_LARGE ||
           rc == HTTP_ERR_HEAD_TOO_LARGE || rc == HTTP_ERR_NOT_IMPLEMENTED ||
           rc == HTTP_ERR_VERSION;
}

static const char *fuzz_http_check(const uint8_t *data, size_t n)
{
    const char *buf = (const char *)data;
    const char *err;
    /* Whole. */
    static http_request whole, inc, small;
    http_request_init(&whole, 0);
    int rc = http_parse(&whole, buf, n);
    if (rc < 0 && !fuzz_http_known(rc))
        return fuzz_fail("undocumented result %d", rc);
    if (rc == HTTP_NEED_MORE && n >= HTTP_MAX_HEAD)
        return fuzz_fail("NEED_MORE after %zu bytes", n);
    if (http_parse(&whole, buf, n) != rc)
        return fuzz_fail("a second call changed the answer");
    if (rc > 0 && (err = fuzz_http_head(&whole, data, n, rc)))
        return err;
    if (rc > 0) { /* decided by the head's own bytes */
        http_request_init(&inc, 0);
        if (http_parse(&inc, buf, (size_t)rc) != rc)
            return fuzz_fail("the head alone parses differently");
        if ((err = fuzz_http_same(&whole, &inc, "head alone")))
            return err;
    }
    /* Byte by byte, in place. */
    http_request_init(&inc, 0);
    int brc = HTTP_NEED_MORE;
    size_t at = 0;
    for (size_t k = 1; k <= n && brc == HTTP_NEED_MORE; k++) {
        brc = http_parse(&inc, buf, k);
        at = k;
    }
    if (brc != rc)
        return fuzz_fail("byte by byte %d, whole %d", brc, rc);
    if (rc > 0 && at != (size_t)rc)
        return fuzz_fail("byte by byte decided at byte %zu, head is %d", at, rc);
    if (rc > 0 && (err = fuzz_http_same(&whole, &inc, "byte by byte")))
        return err;
    /* Random pieces, each call on a fresh copy of what has arrived. */
    uint64_t seed = 0x9e3779b97f4a7c15u ^ n;
    for (size_t i = 0; i < n; i++)
        seed = (seed ^ data[i]) * 0x100000001b3u;
    if (!seed)
        seed = 1;
    http_request_init(&inc, 0);
    int prc = HTTP_NEED_MORE;
    size_t have = 0;
    while (have < n && prc == HTTP_NEED_MORE) {
        size_t left = n - have;
        size_t step = 1 + (size_t)(fuzz_http_rand(&seed) % (left < 64 ? left : 64));
        if (fuzz_http_rand(&seed) % 8 == 0)
            step = left; /* sometimes the rest at once */
        have += step;
        char *copy = malloc(have ? have : 1);
        if (!copy)
            return fuzz_fail("out of memory");
        memcpy(copy, buf, have);
        prc = http_parse(&inc, copy, have);
        free(copy);
    }
    if (prc != rc)
        return fuzz_fail("in pieces %d, whole %d", prc, rc);
    if (rc > 0 && (err = fuzz_http_same(&whole, &inc, "in pieces")))
        return err;
    /* A smaller body limit turns a success into -413 or keeps it. */
    if (rc > 0) {
        http_request_init(&small, 10);
        int src = http_parse(&small, buf, n);
        int want = whole.content_length > 10 ? HTTP_ERR_BODY_TOO_LARGE : rc;
        if (src != want)
            return fuzz_fail("body limit 10 (Content-Length %llu): %d, expected %d",
                             (unsigned long long)whole.content_length, src, want);
    }
    return NULL;
}

#endif
