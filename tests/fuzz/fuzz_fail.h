/*
 * What the fuzz checks share (http_check.h, stream_check.h,
 * server_check.h): a check returns NULL,
 * or the message fuzz_fail formats (one buffer, valid until the next
 * failure).
 */
#ifndef WEFT_FUZZ_FAIL_H
#define WEFT_FUZZ_FAIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

typedef const char *(*fuzz_check_fn)(const uint8_t *data, size_t n);

static char fuzz_msg[320];

static const char *fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static const char *fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fuzz_msg, sizeof fuzz_msg, fmt, ap);
    va_end(ap);
    return fuzz_msg;
}

#endif
