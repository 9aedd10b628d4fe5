/*
 * The libFuzzer entry points of a harness whose check must run in a task:
 * define FUZZ_NAME and FUZZ_CHECK (a fuzz_check_fn), and optionally
 * FUZZ_SETUP (int (*)(void), 0 or -errno), then include this. One runtime
 * of one worker for the process, made in LLVMFuzzerInitialize; each input
 * runs in a task of it (weft_runtime_block_on), and a failed check aborts
 * with its message.
 */
#include <stdlib.h>
#include <weft.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static weft_runtime *fuzz_rt;

typedef struct {
    const uint8_t *data;
    size_t n;
    const char *err;
} fuzz_job;

static void *fuzz_one(void *arg)
{
    fuzz_job *j = arg;
    j->err = FUZZ_CHECK(j->data, j->n);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    int rc = weft_runtime_create(&cfg, &fuzz_rt);
#ifdef FUZZ_SETUP
    if (rc == 0)
        rc = FUZZ_SETUP();
#endif
    if (rc != 0) {
        fprintf(stderr, "%s: set-up: %d\n", FUZZ_NAME, rc);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    fuzz_job j = {data, n, NULL};
    int rc = weft_runtime_block_on(fuzz_rt, fuzz_one, &j, NULL);
    if (rc != 0 || j.err) {
        fprintf(stderr, "%s: %s (block_on %d)\n", FUZZ_NAME, j.err ? j.err : "", rc);
        abort();
    }
    return 0;
}
