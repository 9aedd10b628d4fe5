/*
 * libFuzzer harness of the buffered stream's reading (and writing) side
 * (runtime/stream.c) over a transport that delivers the input in chunks the
 * input itself chooses: the checks are tests/fuzz/stream_check.h's, which
 * the regular tests also run on every file of tests/fuzz/corpus/stream
 * (tests/test_fuzz_corpus.c). One runtime for the process, made in
 * LLVMFuzzerInitialize; each input runs in a task of it.
 * Built and run by `make fuzz`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "stream_check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static weft_runtime *g_rt;

typedef struct {
    const uint8_t *data;
    size_t n;
    const char *err;
} job;

static void *one(void *arg)
{
    job *j = arg;
    j->err = fuzz_stream_check(j->data, j->n);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    int rc = weft_runtime_create(&cfg, &g_rt);
    if (rc != 0) {
        fprintf(stderr, "fuzz_stream: weft_runtime_create: %d\n", rc);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    job j = {data, n, NULL};
    int rc = weft_runtime_block_on(g_rt, one, &j, NULL);
    if (rc != 0 || j.err) {
        fprintf(stderr, "fuzz_stream: %s (block_on %d)\n", j.err ? j.err : "", rc);
        abort();
    }
    return 0;
}
