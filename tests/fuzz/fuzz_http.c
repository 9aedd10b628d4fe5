/*
 * libFuzzer harness of the HTTP request parser (common/http_parser.h): the
 * checks are tests/fuzz/http_check.h's, which the regular tests also run on
 * every file of tests/fuzz/corpus/http (tests/test_fuzz_corpus.c).
 * Built and run by `make fuzz`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "http_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *err = fuzz_http_check(data, n);
    if (err) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    return 0;
}
