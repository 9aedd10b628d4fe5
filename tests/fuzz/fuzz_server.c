/*
 * libFuzzer harness of the example HTTP server's request handling
 * (examples/http_server.c: framing, pipelining, body skipping, routing and
 * the file-name checks): the checks are tests/fuzz/server_check.h's, which
 * the regular tests also run on every file of tests/fuzz/corpus/server
 * (tests/test_fuzz_corpus.c). Each input is one connection, served in a
 * task of the process's one runtime (fuzz_task_main.h). Built and run by
 * `make fuzz`.
 */
#include "server_check.h"

#define FUZZ_NAME "fuzz_server"
#define FUZZ_CHECK fuzz_server_check
#define FUZZ_SETUP fuzz_server_setup
#include "fuzz_task_main.h"
