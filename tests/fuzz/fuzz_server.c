/*
 * libFuzzer harness of the example HTTP server's request handling
 * (examples/http_server.c: framing, pipelining, body skipping, routing and
 * the file-name checks): the checks are tests/fuzz/server_check.h's, which
 * the regular tests also run on every file of tests/fuzz/corpus/server
 * (tests/test_fuzz_corpus.c). One runtime for the process, made in
 * LLVMFuzzerInitialize; each input is one connection, served in a task.
 * Built and run by `make fuzz`.
 */
#include "server_check.h"

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
    j->err = fuzz_server_check(j->data, j->n);
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
    if (rc == 0)
        rc = fuzz_server_setup();
    if (rc != 0) {
        fprintf(stderr, "fuzz_server: set-up: %d\n", rc);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    job j = {data, n, NULL};
    int rc = weft_runtime_block_on(g_rt, one, &j, NULL);
    if (rc != 0 || j.err) {
        fprintf(stderr, "fuzz_server: %s (block_on %d)\n", j.err ? j.err : "", rc);
        abort();
    }
    return 0;
}
