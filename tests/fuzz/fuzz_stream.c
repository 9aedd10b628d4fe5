/*
 * libFuzzer harness of the buffered stream's reading (and writing) side
 * (runtime/stream.c) over a transport that delivers the input in chunks the
 * input itself chooses: the checks are tests/fuzz/stream_check.h's, which
 * the regular tests also run on every file of tests/fuzz/corpus/stream
 * (tests/test_fuzz_corpus.c). Each input runs in a task of the process's
 * one runtime (fuzz_task_main.h). Built and run by `make fuzz`.
 */
#include "stream_check.h"

#define FUZZ_NAME "fuzz_stream"
#define FUZZ_CHECK fuzz_stream_check
#include "fuzz_task_main.h"
