/*
 * A small, strict, allocation-free HTTP/1.1 request-head parser.
 *
 * Header-only (static inline) and independent of weft; used by
 * examples/http_server.c, the baseline servers in bench/ and tests/test_http.c
 * (common/ holds what the examples, benchmarks and tests share; the Makefile
 * puts it on their include path).
 *
 * Usage:
 *     http_request req;
 *     http_request_init(&req, 0);           // 0 = default body limit (1 MiB)
 *     for (;;) {
 *         append received bytes to buf (buf[0] = first byte of the request)
 *         int rc = http_parse(&req, buf, len);
 *         if (rc == HTTP_NEED_MORE) continue;   // read more, call again
 *         if (rc < 0) respond with status -rc and close the connection;
 *         else the head is buf[0..rc), req.content_length body bytes follow;
 *     }
 *
 * Incremental: the parser keeps its position in req, so calling it again after
 * more bytes were appended only looks at the new bytes (no quadratic rescans
 * under a slow sender). The bytes already seen must not change between calls,
 * but the buffer may move: every result is an offset from the start of the
 * request (http_span), never a pointer. Call http_request_init before each new
 * request.
 *
 * Return value of http_parse:
 *   HTTP_NEED_MORE (0)  every byte so far is a valid prefix of a request head;
 *   > 0                 the length of the complete head (request line, headers
 *                       and the empty line);
 *   < 0                 minus the HTTP status to answer with, after which the
 *                       connection should be closed:
 *     -400  malformed: bad method token, request-target or version syntax,
 *           header line without ':' or with whitespace before it, obs-fold
 *           (line starting with SP/HTAB), control characters (NUL, DEL, ...)
 *           anywhere, bare CR, missing Host in HTTP/1.1, more than one Host,
 *           Content-Length that is not plain decimal digits ("-1", "+1", "",
 *           "1, 1") or two different Content-Length values, Transfer-Encoding
 *           together with Content-Length;
 *     -413  Content-Length above the body limit (or beyond 64 bits);
 *     -431  the head does not end within HTTP_MAX_HEAD (8 KiB) bytes, or has
 *           more than HTTP_MAX_HEADERS (64) header lines;
 *     -501  a syntactically valid but unknown method (methods are case-
 *           sensitive: "get" is unknown), or a Transfer-Encoding request body
 *           (chunked bodies are not supported);
 *     -505  an HTTP version other than 1.x ("HTTP/2.0").
 *   405 (a known method the application does not serve) is the application's
 *   decision; HTTP_ERR_METHOD is defined for it.
 *
 * Line endings: CRLF; a bare LF is also accepted as a line terminator
 * (RFC 9112 section 2.2 allows it, and it makes `printf ... | nc` testing
 * easy). A CR that is not followed by LF is an error. Empty lines before the
 * request line are skipped (RFC 9112 section 2.2), within the 8 KiB head limit.
 *
 * Request target: origin-form ("/path?query"), absolute-form
 * ("http://host/path", path taken from it) and "*" (OPTIONS only). Only
 * visible ASCII is accepted; no percent-decoding is done. Header values may
 * hold obs-text (bytes >= 0x80); surrounding whitespace is trimmed.
 *
 * Keep-alive: HTTP/1.1 keeps the connection unless "Connection: close";
 * HTTP/1.0 closes unless "Connection: keep-alive". Connection is parsed as a
 * comma-separated, case-insensitive token list.
 */
#ifndef WEFT_EXAMPLES_HTTP_PARSER_H
#define WEFT_EXAMPLES_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HTTP_MAX_HEAD 8192
#define HTTP_MAX_HEADERS 64
#define HTTP_DEFAULT_MAX_BODY (1u << 20)

#define HTTP_NEED_MORE 0
#define HTTP_ERR_BAD_REQUEST (-400)
#define HTTP_ERR_METHOD (-405) /* not returned by http_parse; for applications */
#define HTTP_ERR_BODY_TOO_LARGE (-413)
#define HTTP_ERR_HEAD_TOO_LARGE (-431)
#define HTTP_ERR_NOT_IMPLEMENTED (-501)
#define HTTP_ERR_VERSION (-505)

enum http_method {
    HTTP_METHOD_UNKNOWN = 0,
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_CONNECT,
    HTTP_OPTIONS,
    HTTP_TRACE,
    HTTP_PATCH,
};

/* A byte range of the request: buf[off .. off+len). */
typedef struct http_span {
    uint16_t off, len;
} http_span;

typedef struct http_header {
    http_span name, value; /* value without leading/trailing whitespace */
} http_header;

typedef struct http_request {
    /* Results, valid once http_parse returned > 0. */
    int method;              /* enum http_method */
    int minor;               /* x of HTTP/1.x */
    int keep_alive;          /* 1: the connection may carry another request */
    uint64_t content_length; /* body bytes that follow the head (0 if none) */
    http_span method_name, target;
    http_span path;  /* target without query; len 0 only for "http://host" = "/" */
    http_span query; /* after '?', len 0 when absent */
    unsigned nheaders;
    http_header headers[HTTP_MAX_HEADERS];
    /* Input: the largest Content-Length accepted (413 above it). */
    uint64_t max_body;
    /* Parser state (private). */
    uint32_t pos_, state_, tok_, vend_, flags_;
    int err_;
} http_request;

/* Parser states and flags (private). */
enum {
    HTTP__S_START,
    HTTP__S_START_LF,
    HTTP__S_METHOD,
    HTTP__S_TARGET0,
    HTTP__S_TARGET,
    HTTP__S_VERSION,
    HTTP__S_RL_LF,
    HTTP__S_HSTART,
    HTTP__S_HNAME,
    HTTP__S_HOWS,
    HTTP__S_HVALUE,
    HTTP__S_H_LF,
    HTTP__S_END_LF,
    HTTP__S_DONE,
    HTTP__S_ERROR,
};
#define HTTP__F_CL 1u
#define HTTP__F_TE 2u
#define HTTP__F_HOST 4u
#define HTTP__F_CLOSE 8u
#define HTTP__F_KEEPALIVE 16u

/* Resets req for a new request. max_body 0 = HTTP_DEFAULT_MAX_BODY. Cheap:
 * the header array is not cleared. */
static inline void http_request_init(http_request *req, uint64_t max_body)
{
    req->method = HTTP_METHOD_UNKNOWN;
    req->minor = 0;
    req->keep_alive = 0;
    req->content_length = 0;
    req->method_name = req->target = req->path = req->query = (http_span){0, 0};
    req->nheaders = 0;
    req->max_body = max_body ? max_body : HTTP_DEFAULT_MAX_BODY;
    req->pos_ = req->state_ = req->tok_ = req->vend_ = req->flags_ = 0;
    req->err_ = 0;
}

/* token characters (RFC 9110 section 5.6.2) */
static inline int http__tchar(unsigned char c)
{
    if ((unsigned char)((c | 0x20) - 'a') < 26 || (unsigned char)(c - '0') < 10)
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

static inline unsigned char http__lower(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26 ? (unsigned char)(c | 0x20) : c;
}

/* Case-insensitive comparison of buf[0..n) with a lower-case literal. */
static inline int http__ieq(const unsigned char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (http__lower(s[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

/* Returns 1 when span sp of buf equals lit case-insensitively. */
static inline int http_span_ieq(const char *buf, http_span sp, const char *lit)
{
    return http__ieq((const unsigned char *)buf + sp.off, sp.len, lit);
}

/* Returns 1 when span sp of buf equals lit exactly. */
static inline int http_span_eq(const char *buf, http_span sp, const char *lit)
{
    size_t m = strlen(lit);
    return sp.len == m && memcmp(buf + sp.off, lit, m) == 0;
}

/* Finds header name (case-insensitive) in a parsed request; NULL if absent. */
static inline const http_header *http_find_header(const http_request *req, const char *buf,
                                                  const char *lower_name)
{
    for (unsigned i = 0; i < req->nheaders; i++)
        if (http_span_ieq(buf, req->headers[i].name, lower_name))
            return &req->headers[i];
    return NULL;
}

static inline int http__method(const unsigned char *s, size_t n)
{
#define HTTP__M(lit, m)                                                   \
    if (n == sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)   \
        return m;
    HTTP__M("GET", HTTP_GET)
    HTTP__M("HEAD", HTTP_HEAD)
    HTTP__M("POST", HTTP_POST)
    HTTP__M("PUT", HTTP_PUT)
    HTTP__M("DELETE", HTTP_DELETE)
    HTTP__M("CONNECT", HTTP_CONNECT)
    HTTP__M("OPTIONS", HTTP_OPTIONS)
    HTTP__M("TRACE", HTTP_TRACE)
    HTTP__M("PATCH", HTTP_PATCH)
#undef HTTP__M
    return HTTP_METHOD_UNKNOWN;
}

/* Splits the target into path and query; 0 or an error. */
static inline int http__target(http_request *r, const unsigned char *b)
{
    uint32_t off = r->target.off, end = off + r->target.len, p = off;
    if (b[off] == '*') {
        if (r->target.len != 1 || r->method != HTTP_OPTIONS)
            return HTTP_ERR_BAD_REQUEST;
        r->path = r->target;
        return 0;
    }
    if (b[off] != '/') {
        /* absolute-form: http://authority[/path][?query] */
        uint32_t n = r->target.len, s;
        if (n >= 7 && http__ieq(b + off, 7, "http://"))
            s = 7;
        else if (n >= 8 && http__ieq(b + off, 8, "https://"))
            s = 8;
        else
            return HTTP_ERR_BAD_REQUEST;
        p = off + s;
        uint32_t a = p;
        while (p < end && b[p] != '/' && b[p] != '?')
            p++;
        if (p == a)
            return HTTP_ERR_BAD_REQUEST; /* empty authority */
    }
    uint32_t q = p;
    while (q < end && b[q] != '?')
        q++;
    r->path = (http_span){(uint16_t)p, (uint16_t)(q - p)};
    if (q < end)
        r->query = (http_span){(uint16_t)(q + 1), (uint16_t)(end - q - 1)};
    return 0;
}

/* Interprets the header just completed; 0 or an error. */
static inline int http__header(http_request *r, const unsigned char *b, const http_header *h)
{
    const unsigned char *n = b + h->name.off, *v = b + h->value.off;
    size_t nl = h->name.len, vl = h->value.len;
    switch (nl) {
    case 14:
        if (http__ieq(n, nl, "content-length")) {
            if (vl == 0)
                return HTTP_ERR_BAD_REQUEST;
            uint64_t x = 0;
            int big = 0;
            for (size_t i = 0; i < vl; i++) {
                unsigned d = (unsigned)v[i] - '0';
                if (d > 9)
                    return HTTP_ERR_BAD_REQUEST;
                if (x > (UINT64_MAX - d) / 10)
                    big = 1;
                else
                    x = x * 10 + d;
            }
            if (big)
                return HTTP_ERR_BODY_TOO_LARGE;
            if ((r->flags_ & HTTP__F_CL) && x != r->content_length)
                return HTTP_ERR_BAD_REQUEST;
            r->flags_ |= HTTP__F_CL;
            r->content_length = x;
        }
        return 0;
    case 17:
        if (http__ieq(n, nl, "transfer-encoding"))
            r->flags_ |= HTTP__F_TE;
        return 0;
    case 10:
        if (http__ieq(n, nl, "connection")) {
            size_t i = 0;
            while (i < vl) {
                while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                    i++;
                size_t s = i;
                while (i < vl && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
                    i++;
                if (http__ieq(v + s, i - s, "close"))
                    r->flags_ |= HTTP__F_CLOSE;
                else if (http__ieq(v + s, i - s, "keep-alive"))
                    r->flags_ |= HTTP__F_KEEPALIVE;
            }
        }
        return 0;
    case 4:
        if (http__ieq(n, nl, "host")) {
            if (r->flags_ & HTTP__F_HOST)
                return HTTP_ERR_BAD_REQUEST;
            r->flags_ |= HTTP__F_HOST;
        }
        return 0;
    default:
        return 0;
    }
}

/* Checks made once the whole head is there; 0 or an error. */
static inline int http__finish(http_request *r)
{
    if (r->flags_ & HTTP__F_TE)
        return (r->flags_ & HTTP__F_CL) ? HTTP_ERR_BAD_REQUEST : HTTP_ERR_NOT_IMPLEMENTED;
    if (r->minor >= 1 && !(r->flags_ & HTTP__F_HOST))
        return HTTP_ERR_BAD_REQUEST;
    if (r->content_length > r->max_body)
        return HTTP_ERR_BODY_TOO_LARGE;
    if (r->flags_ & HTTP__F_CLOSE)
        r->keep_alive = 0;
    else
        r->keep_alive = r->minor >= 1 || (r->flags_ & HTTP__F_KEEPALIVE);
    return 0;
}

/* Parses the request head at buf[0..len); see the top of this file. */
static inline int http_parse(http_request *r, const char *buf, size_t len)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    size_t i = r->pos_;
    uint32_t st = r->state_;
    int err = 0;

    if (st == HTTP__S_ERROR)
        return r->err_;
    if (st == HTTP__S_DONE)
        return (int)r->pos_;

    while (i < lim) {
        unsigned char c = b[i];
        switch (st) {
        case HTTP__S_START:
            if (c == '\r') {
                st = HTTP__S_START_LF;
            } else if (c == '\n') {
                /* skipped */
            } else if (http__tchar(c)) {
                r->tok_ = (uint32_t)i;
                st = HTTP__S_METHOD;
            } else {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            i++;
            break;
        case HTTP__S_START_LF:
            if (c != '\n') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            st = HTTP__S_START;
            i++;
            break;
        case HTTP__S_METHOD:
            if (http__tchar(c)) {
                if (i - r->tok_ >= 7) { /* longer than any method we know */
                    err = HTTP_ERR_NOT_IMPLEMENTED;
                    goto fail;
                }
                i++;
                break;
            }
            if (c != ' ') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            r->method_name = (http_span){(uint16_t)r->tok_, (uint16_t)(i - r->tok_)};
            r->method = http__method(b + r->tok_, i - r->tok_);
            if (r->method == HTTP_METHOD_UNKNOWN) {
                err = HTTP_ERR_NOT_IMPLEMENTED;
                goto fail;
            }
            st = HTTP__S_TARGET0;
            i++;
            break;
        case HTTP__S_TARGET0:
            if (c != '/' && c != '*' && c != 'h' && c != 'H') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            r->tok_ = (uint32_t)i;
            st = HTTP__S_TARGET;
            i++;
            break;
        case HTTP__S_TARGET:
            while (i < lim && b[i] > 0x20 && b[i] < 0x7f)
                i++;
            if (i == lim)
                break;
            if (b[i] != ' ') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            r->target = (http_span){(uint16_t)r->tok_, (uint16_t)(i - r->tok_)};
            if ((err = http__target(r, b)) != 0)
                goto fail;
            i++;
            r->tok_ = (uint32_t)i;
            st = HTTP__S_VERSION;
            break;
        case HTTP__S_VERSION: {
            size_t k = i - r->tok_;
            if (k < 5) {
                if (c != (unsigned char)"HTTP/"[k]) {
                    err = HTTP_ERR_BAD_REQUEST;
                    goto fail;
                }
            } else if (k == 5 || k == 7) {
                if ((unsigned)(c - '0') > 9) {
                    err = HTTP_ERR_BAD_REQUEST;
                    goto fail;
                }
                if (k == 5 && c != '1') {
                    err = HTTP_ERR_VERSION;
                    goto fail;
                }
                if (k == 7)
                    r->minor = c - '0';
            } else if (k == 6) {
                if (c != '.') {
                    err = HTTP_ERR_BAD_REQUEST;
                    goto fail;
                }
            } else if (c == '\r') {
                st = HTTP__S_RL_LF;
            } else if (c == '\n') {
                st = HTTP__S_HSTART;
            } else {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            i++;
            break;
        }
        case HTTP__S_RL_LF:
        case HTTP__S_H_LF:
            if (c != '\n') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            st = HTTP__S_HSTART;
            i++;
            break;
        case HTTP__S_HSTART:
            if (c == '\r') {
                st = HTTP__S_END_LF;
                i++;
                break;
            }
            if (c == '\n')
                goto done;
            if (!http__tchar(c)) { /* includes obs-fold and whitespace */
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            if (r->nheaders == HTTP_MAX_HEADERS) {
                err = HTTP_ERR_HEAD_TOO_LARGE;
                goto fail;
            }
            r->tok_ = (uint32_t)i;
            st = HTTP__S_HNAME;
            i++;
            break;
        case HTTP__S_HNAME:
            while (i < lim && http__tchar(b[i]))
                i++;
            if (i == lim)
                break;
            if (b[i] != ':') { /* no colon, or whitespace before it */
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            r->headers[r->nheaders].name =
                (http_span){(uint16_t)r->tok_, (uint16_t)(i - r->tok_)};
            st = HTTP__S_HOWS;
            i++;
            break;
        case HTTP__S_HOWS:
            if (c == ' ' || c == '\t') {
                i++;
                break;
            }
            r->tok_ = r->vend_ = (uint32_t)i;
            st = HTTP__S_HVALUE;
            __attribute__((fallthrough));
        case HTTP__S_HVALUE: {
            uint32_t vend = r->vend_;
            for (; i < lim; i++) {
                c = b[i];
                if (c > ' ' && c != 0x7f)
                    vend = (uint32_t)i + 1;
                else if (c != ' ' && c != '\t')
                    break;
            }
            r->vend_ = vend;
            if (i == lim)
                break;
            if (c != '\r' && c != '\n') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            http_header *h = &r->headers[r->nheaders];
            h->value = (http_span){(uint16_t)r->tok_, (uint16_t)(vend - r->tok_)};
            r->nheaders++;
            if ((err = http__header(r, b, h)) != 0)
                goto fail;
            st = c == '\r' ? HTTP__S_H_LF : HTTP__S_HSTART;
            i++;
            break;
        }
        case HTTP__S_END_LF:
            if (c != '\n') {
                err = HTTP_ERR_BAD_REQUEST;
                goto fail;
            }
            goto done;
        default:
            err = HTTP_ERR_BAD_REQUEST;
            goto fail;
        }
    }
    if (i >= HTTP_MAX_HEAD) {
        err = HTTP_ERR_HEAD_TOO_LARGE;
        goto fail;
    }
    r->pos_ = (uint32_t)i;
    r->state_ = st;
    return HTTP_NEED_MORE;

done:
    if ((err = http__finish(r)) != 0)
        goto fail;
    r->pos_ = (uint32_t)(i + 1);
    r->state_ = HTTP__S_DONE;
    return (int)(i + 1);

fail:
    r->state_ = HTTP__S_ERROR;
    r->err_ = err;
    return err;
}

/* Reason phrase of the statuses this parser and the example server use. */
static inline const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

#endif /* WEFT_EXAMPLES_HTTP_PARSER_H */
