/*
 * The fuzzers' corpora, replayed in the regular tests: every file of
 * tests/fuzz/corpus/NAME goes through the same checks the libFuzzer harness
 * tests/fuzz/fuzz_NAME.c runs (tests/fuzz/http_check.h, stream_check.h,
 * server_check.h), built with the project's compiler, so `make
 * test` keeps every input that ever found a bug (and every seed) passing
 * without clang. WEFT_FUZZ_CORPUS names another corpus directory.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "fuzz/http_check.h"
#include "fuzz/server_check.h"
#include "fuzz/stream_check.h"
#include "util.h"

#ifndef WEFT_FUZZ_CORPUS
#define WEFT_FUZZ_CORPUS "tests/fuzz/corpus"
#endif

/* Runs check on every regular file of corpus/NAME; returns how many, and
 * the number that failed in *failed (each one reported). */
static int corpus_replay(const char *name, fuzz_check_fn check, int *failed)
{
    const char *root = getenv("WEFT_FUZZ_CORPUS");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root && *root ? root : WEFT_FUZZ_CORPUS, name);
    DIR *d = opendir(dir);
    if (!d) {
        cr_log_error("%s: cannot open", dir);
        return -1;
    }
    int files = 0;
    *failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        files++;
        const char *err = check(buf, n);
        if (err) {
            (*failed)++;
            cr_log_error("%s: %s", path, err);
        }
    }
    closedir(d);
    return files;
}

Test(fuzz_corpus, http_parser)
{
    int failed;
    int files = corpus_replay("http", fuzz_http_check, &failed);
    cr_assert_gt(files, 0, "no corpus files in %s/http", WEFT_FUZZ_CORPUS);
    cr_assert_eq(failed, 0, "%d of %d http corpus files failed (see above)", failed, files);
}

typedef struct replay {
    const char *name;
    fuzz_check_fn check;
    int files, failed;
} replay;

static void *replay_task(void *arg)
{
    replay *r = arg;
    r->files = corpus_replay(r->name, r->check, &r->failed);
    return NULL;
}

/* For the checks that run in a task. */
static void replay_in_task(const char *name, fuzz_check_fn check)
{
    replay r = {name, check, 0, 0};
    test_run(1, replay_task, &r);
    cr_assert_gt(r.files, 0, "no corpus files in %s/%s", WEFT_FUZZ_CORPUS, name);
    cr_assert_eq(r.failed, 0, "%d of %d %s corpus files failed (see above)", r.failed, r.files,
                 name);
}

Test(fuzz_corpus, stream_reader) { replay_in_task("stream", fuzz_stream_check); }

Test(fuzz_corpus, http_server)
{
    cr_assert_eq(fuzz_server_setup(), 0, "scratch directory");
    replay_in_task("server", fuzz_server_check);
}

/* The checks can fail: a frame cut short, a parse that differs. */
Test(fuzz_corpus, checks_catch_a_broken_promise)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    cr_assert_null(fuzz_http_check((const uint8_t *)req, sizeof req - 1));
    http_request r;
    http_request_init(&r, 0);
    int rc = http_parse(&r, req, sizeof req - 1);
    cr_assert_gt(rc, 0);
    r.path.len = 40; /* beyond the target */
    cr_assert_not_null(fuzz_http_head(&r, (const uint8_t *)req, sizeof req - 1, rc));
    r.path.len = 1;
    r.nheaders = 0; /* HTTP/1.1 without its Host */
    cr_assert_not_null(fuzz_http_head(&r, (const uint8_t *)req, sizeof req - 1, rc));
}
