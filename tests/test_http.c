/*
 * Tests of the HTTP request parser that the example and baseline servers use
 * (common/http_parser.h).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http_parser.h"

static const char http_get[] = "GET /index.html?x=1 HTTP/1.1\r\n"
                               "Host: example.com\r\n"
                               "User-Agent: test\r\n"
                               "Accept: */*\r\n"
                               "\r\n";

/* Parses buf in one call with a fresh request. */
static int http_parse_all(http_request *r, const char *buf, size_t len)
{
    http_request_init(r, 0);
    return http_parse(r, buf, len);
}

static int http_parse_str(http_request *r, const char *s)
{
    return http_parse_all(r, s, strlen(s));
}

static int http_status_of(const char *s)
{
    http_request r;
    return http_parse_str(&r, s);
}

/* Deterministic generator (xorshift64*), fixed seed per test. */
static uint64_t http_rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

Test(http_parse, valid_get)
{
    http_request r;
    int rc = http_parse_str(&r, http_get);
    cr_assert_eq(rc, (int)strlen(http_get));
    cr_assert_eq(r.method, HTTP_GET);
    cr_assert_eq(r.minor, 1);
    cr_assert(r.keep_alive);
    cr_assert_eq(r.content_length, 0);
    cr_assert(http_span_eq(http_get, r.method_name, "GET"));
    cr_assert(http_span_eq(http_get, r.target, "/index.html?x=1"));
    cr_assert(http_span_eq(http_get, r.path, "/index.html"));
    cr_assert(http_span_eq(http_get, r.query, "x=1"));
    cr_assert_eq(r.nheaders, 3);
    cr_assert(http_span_eq(http_get, r.headers[0].name, "Host"));
    cr_assert(http_span_eq(http_get, r.headers[0].value, "example.com"));
    const http_header *h = http_find_header(&r, http_get, "user-agent");
    cr_assert_not_null(h);
    cr_assert(http_span_eq(http_get, h->value, "test"));
    cr_assert_null(http_find_header(&r, http_get, "cookie"));
}

Test(http_parse, minimal_and_methods)
{
    http_request r;
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(r.minor, 0);
    cr_assert_not(r.keep_alive);
    cr_assert(http_span_eq("GET / HTTP/1.0\r\n\r\n", r.path, "/"));
    cr_assert_gt(http_parse_str(&r, "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(r.method, HTTP_HEAD);
    cr_assert_gt(http_parse_str(&r, "DELETE /a HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(r.method, HTTP_DELETE);
    cr_assert_gt(http_parse_str(&r, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(r.method, HTTP_OPTIONS);
    cr_assert_eq(http_status_of("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(http_parse, whitespace_trimmed_and_empty_values)
{
    const char *s = "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t spaced value \t \r\nX-E:\r\nX-F:   \r\n\r\n";
    http_request r;
    cr_assert_eq(http_parse_str(&r, s), (int)strlen(s));
    cr_assert_eq(r.nheaders, 4);
    cr_assert(http_span_eq(s, r.headers[0].value, "h"));
    cr_assert(http_span_eq(s, r.headers[1].value, "spaced value"));
    cr_assert_eq(r.headers[2].value.len, 0);
    cr_assert_eq(r.headers[3].value.len, 0);
}

Test(http_parse, obs_text_allowed_in_values)
{
    cr_assert_gt(http_status_of("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n"), 0);
}

Test(http_parse, absolute_form)
{
    const char *s = "GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n";
    http_request r;
    cr_assert_gt(http_parse_str(&r, s), 0);
    cr_assert(http_span_eq(s, r.path, "/p"));
    cr_assert(http_span_eq(s, r.query, "q"));
    const char *t = "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
    cr_assert_gt(http_parse_str(&r, t), 0);
    cr_assert_eq(r.path.len, 0);
    cr_assert_eq(http_status_of("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET ftp://x/ HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET x HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(http_keepalive, defaults_and_connection_header)
{
    http_request r;
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert(r.keep_alive);
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 0);
    cr_assert_not(r.keep_alive);
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.1\r\nHost: h\r\nconnection: Upgrade, CLOSE\r\n\r\n"),
                 0);
    cr_assert_not(r.keep_alive);
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_not(r.keep_alive);
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    cr_assert(r.keep_alive);
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
    cr_assert_not(r.keep_alive);
    /* "closed" is not "close" */
    cr_assert_gt(http_parse_str(&r, "GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"), 0);
    cr_assert(r.keep_alive);
}

Test(http_parse, pipelined)
{
    const char buf[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       "GET /d HT";
    size_t len = sizeof buf - 1, off = 0;
    const char *paths[] = {"/a", "/b", "/c"};
    http_request r;
    for (int k = 0; k < 3; k++) {
        http_request_init(&r, 0);
        int rc = http_parse(&r, buf + off, len - off);
        cr_assert_gt(rc, 0, "request %d: %d", k, rc);
        cr_assert(http_span_eq(buf + off, r.path, paths[k]));
        if (k == 1) {
            cr_assert_eq(r.content_length, 5);
            cr_assert_eq(memcmp(buf + off + rc, "hello", 5), 0);
        }
        cr_assert_eq(r.keep_alive, k < 2);
        off += (size_t)rc + r.content_length;
    }
    http_request_init(&r, 0);
    cr_assert_eq(http_parse(&r, buf + off, len - off), HTTP_NEED_MORE);
}

Test(http_parse, leading_empty_lines_skipped)
{
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    http_request r;
    cr_assert_eq(http_parse_str(&r, s), (int)strlen(s));
    cr_assert(http_span_eq(s, r.path, "/"));
}

Test(http_parse, bare_lf_accepted)
{
    const char *s = "GET / HTTP/1.1\nHost: h\nX: y\n\n";
    http_request r;
    cr_assert_eq(http_parse_str(&r, s), (int)strlen(s));
    cr_assert_eq(r.nheaders, 2);
    cr_assert(http_span_eq(s, r.headers[1].value, "y"));
    /* a CR must be followed by LF */
    cr_assert_eq(http_status_of("GET / HTTP/1.1\rHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\n\rx"), -400);
}

/* Every proper prefix of a valid request is NEED_MORE, whether parsed from
 * scratch or fed incrementally. */
static void http_check_prefixes(const char *req)
{
    size_t n = strlen(req);
    http_request r, inc;
    http_request_init(&inc, 0);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(http_parse_all(&r, req, k), HTTP_NEED_MORE, "prefix %zu of %zu", k, n);
        cr_assert_eq(http_parse(&inc, req, k), HTTP_NEED_MORE, "incremental %zu of %zu", k, n);
    }
    cr_assert_eq(http_parse_all(&r, req, n), (int)n);
    cr_assert_eq(http_parse(&inc, req, n), (int)n);
    cr_assert_eq(memcmp(&r.path, &inc.path, sizeof r.path), 0);
    cr_assert_eq(r.nheaders, inc.nheaders);
    /* Extra bytes after the head do not change the answer. */
    char buf[1024];
    cr_assert_lt(n + 8, sizeof buf);
    memcpy(buf, req, n);
    memcpy(buf + n, "GARBAGE\x01", 8);
    cr_assert_eq(http_parse_all(&r, buf, n + 8), (int)n);
}

Test(http_truncated, every_offset)
{
    http_check_prefixes(http_get);
    http_check_prefixes("GET / HTTP/1.0\r\n\r\n");
    http_check_prefixes("\r\nPOST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n"
                        "Connection: keep-alive\r\nX-Empty:\r\n\r\n");
    http_check_prefixes("GET http://h:80/x?y HTTP/1.1\nHost: h\n\n");
    http_check_prefixes("OPTIONS * HTTP/1.1\r\nHost:h\r\n\r\n");
}

Test(http_truncated, byte_by_byte_into_moving_buffer)
{
    /* The buffer moves between calls (as a server compacting its buffer
     * would do); offsets keep working. */
    char a[256], b[256];
    size_t n = strlen(http_get);
    http_request r;
    http_request_init(&r, 0);
    for (size_t k = 1; k < n; k++) {
        char *buf = (k & 1) ? a : b;
        memcpy(buf, http_get, k);
        cr_assert_eq(http_parse(&r, buf, k), HTTP_NEED_MORE);
    }
    memcpy(a, http_get, n);
    cr_assert_eq(http_parse(&r, a, n), (int)n);
    cr_assert(http_span_eq(a, r.path, "/index.html"));
    cr_assert(http_span_eq(a, r.headers[2].value, "*/*"));
    /* the answer is sticky */
    cr_assert_eq(http_parse(&r, a, n), (int)n);
}

Test(http_limits, oversized_head_431)
{
    static char buf[HTTP_MAX_HEAD * 2];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    while (n < sizeof buf - 4)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\n\r\n", 4);
    n += 4;
    http_request r;
    cr_assert_eq(http_parse_all(&r, buf, n), HTTP_ERR_HEAD_TOO_LARGE);
    /* Exactly at the limit, still incomplete: 431 (no more can fit). */
    cr_assert_eq(http_parse_all(&r, buf, HTTP_MAX_HEAD), HTTP_ERR_HEAD_TOO_LARGE);
    cr_assert_eq(http_parse_all(&r, buf, HTTP_MAX_HEAD - 1), HTTP_NEED_MORE);
    /* Incrementally: NEED_MORE until the limit, then 431. */
    http_request_init(&r, 0);
    for (size_t k = 1024; k < HTTP_MAX_HEAD; k += 1024)
        cr_assert_eq(http_parse(&r, buf, k), HTTP_NEED_MORE);
    cr_assert_eq(http_parse(&r, buf, n), HTTP_ERR_HEAD_TOO_LARGE);
    /* A long request line alone is also 431. */
    n = (size_t)snprintf(buf, sizeof buf, "GET /");
    while (n < HTTP_MAX_HEAD + 10)
        buf[n++] = 'p';
    cr_assert_eq(http_parse_all(&r, buf, n), HTTP_ERR_HEAD_TOO_LARGE);
}

Test(http_limits, head_of_exactly_8k_is_accepted)
{
    static char buf[HTTP_MAX_HEAD];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    while (n < sizeof buf - 4)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\n\r\n", 4);
    http_request r;
    cr_assert_eq(http_parse_all(&r, buf, sizeof buf), HTTP_MAX_HEAD);
}

Test(http_limits, too_many_headers_431)
{
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: v\r\n", i);
    memcpy(buf + n, "\r\n", 2);
    http_request r;
    cr_assert_eq(http_parse_all(&r, buf, n + 2), (int)n + 2); /* exactly 64: fine */
    cr_assert_eq(r.nheaders, HTTP_MAX_HEADERS);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "X-65: v\r\n\r\n");
    cr_assert_eq(http_parse_all(&r, buf, n), HTTP_ERR_HEAD_TOO_LARGE);
}

Test(http_errors, bad_methods)
{
    cr_assert_eq(http_status_of("FOO / HTTP/1.1\r\nHost: h\r\n\r\n"), -501);
    cr_assert_eq(http_status_of("get / HTTP/1.1\r\nHost: h\r\n\r\n"), -501);
    cr_assert_eq(http_status_of("GETTINGLONGER / HTTP/1.1\r\n\r\n"), -501);
    cr_assert_eq(http_status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), -501);
    cr_assert_eq(http_status_of("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), -400); /* TLS */
}

Test(http_errors, bad_request_line)
{
    cr_assert_eq(http_status_of("GET /\r\n\r\n"), -400); /* HTTP/0.9 */
    cr_assert_eq(http_status_of("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / http/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), -505);
    cr_assert_eq(http_status_of("GET / HTTP/0.9\r\n\r\n"), -505);
    cr_assert_eq(http_status_of("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

Test(http_errors, header_without_colon)
{
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\nNo Colon: x\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\n: empty-name\r\nHost: h\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n"), -400);
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\x00z\r\n\r\n";
    http_request r;
    cr_assert_eq(http_parse_all(&r, nul, sizeof nul - 1), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHo\x01st: h\r\n\r\n"), -400);
}

Test(http_errors, host_rules)
{
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), -400);
    cr_assert_gt(http_status_of("GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_gt(http_status_of("GET / HTTP/1.1\r\nHOST: a\r\n\r\n"), 0);
}

Test(http_body, content_length)
{
    http_request r;
    cr_assert_gt(http_parse_str(&r, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n"), 0);
    cr_assert_eq(r.content_length, 42);
    cr_assert_eq(r.method, HTTP_POST);
    /* repeated, identical: accepted */
    cr_assert_gt(http_parse_str(&r, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n"
                                    "content-length: 7\r\n\r\n"),
                 0);
    cr_assert_eq(r.content_length, 7);
    /* exactly the limit */
    cr_assert_gt(http_parse_str(&r, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"),
                 0);
    /* a caller-chosen limit */
    http_request_init(&r, 10);
    const char *s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    cr_assert_eq(http_parse(&r, s, strlen(s)), HTTP_ERR_BODY_TOO_LARGE);
}

Test(http_body, content_length_too_large_413)
{
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n"),
                 -413);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
                                "18446744073709551615\r\n\r\n"),
                 -413);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
                                "99999999999999999999999999999\r\n\r\n"),
                 -413);
}

Test(http_body, content_length_conflicting_or_negative_400)
{
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                                "Content-Length: 6\r\n\r\n"),
                 -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"), -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), -400);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n"), -400);
}

Test(http_body, chunked_rejected)
{
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
                 -501);
    cr_assert_eq(http_status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                "Content-Length: 3\r\n\r\n"),
                 -400);
}

Test(http_garbage, random_bytes)
{
    uint64_t seed = 0x5eed1234abcdULL;
    unsigned char buf[512];
    http_request r;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 1 + http_rng(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)http_rng(&seed);
        int rc = http_parse_all(&r, (const char *)buf, n);
        cr_assert_leq(rc, 0, "random bytes parsed as a request (iter %d)", iter);
        if (n >= 64)
            cr_assert_lt(rc, 0, "random bytes of length %zu not rejected (iter %d)", n, iter);
    }
}

Test(http_garbage, mutated_requests)
{
    /* Flip, insert and truncate bytes of valid requests: any answer is fine
     * but it must be consistent, in range, and never crash. */
    uint64_t seed = 42;
    char buf[256];
    http_request r, inc;
    size_t base = strlen(http_get);
    for (int iter = 0; iter < 50000; iter++) {
        memcpy(buf, http_get, base);
        size_t n = base;
        int muts = 1 + (int)(http_rng(&seed) % 3);
        for (int m = 0; m < muts; m++)
            buf[http_rng(&seed) % n] = (char)http_rng(&seed);
        n = 1 + http_rng(&seed) % n;
        int rc = http_parse_all(&r, buf, n);
        cr_assert_leq(rc, (int)n);
        if (rc > 0) {
            cr_assert_leq((size_t)r.path.off + r.path.len, (size_t)rc);
            for (unsigned h = 0; h < r.nheaders; h++)
                cr_assert_leq((size_t)r.headers[h].value.off + r.headers[h].value.len, (size_t)rc);
        }
        /* incremental feeding in two steps gives the same answer */
        size_t cut = http_rng(&seed) % (n + 1);
        http_request_init(&inc, 0);
        int first = http_parse(&inc, buf, cut);
        int rc2 = http_parse(&inc, buf, n);
        if (first < 0)
            cr_assert_eq(first, rc, "iter %d", iter);
        cr_assert_eq(rc2, rc, "iter %d: cut %zu of %zu", iter, cut, n);
    }
}

Test(http_misc, reasons)
{
    cr_assert_str_eq(http_reason(200), "OK");
    cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http_reason(-HTTP_ERR_NOT_IMPLEMENTED), "Not Implemented");
}
