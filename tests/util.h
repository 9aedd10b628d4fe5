/* Helpers shared by the Criterion tests. */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

static inline weft_runtime *test_runtime(unsigned workers)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    weft_runtime *rt = weft_runtime_new(&cfg);
    cr_assert_not_null(rt, "weft_runtime_new(%u) failed", workers);
    return rt;
}

/* Resident set size of this process in bytes. */
static inline long test_rss(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static inline int test_map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Instrumented builds run far slower; heavy tests scale down there. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TEST_INSTRUMENTED 1
#else
#define TEST_INSTRUMENTED 0
#endif
static inline int test_scale_down(void) { return TEST_INSTRUMENTED || getenv("WEFT_VALGRIND") != NULL; }

#endif
