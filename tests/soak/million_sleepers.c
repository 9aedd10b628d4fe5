/*
 * Soak: 1,000,000 concurrently sleeping tasks (issue 4). Every task gets an
 * absolute deadline spread over ten seconds, starting far enough ahead for all
 * of them to start; the program checks that none wakes early, reports how late
 * they woke (p50/p99/max), and checks deadline order between sleepers due at
 * least 10 ms apart. Exit status 0 on success. Run with `make soak`.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define N 1000000
static weft_time base;
static int32_t *woke_as;
static int64_t *late;
static char *started_late;
static atomic_int seq;

/* Deadlines spread over 10 s: 100 sleepers due every millisecond. */
static weft_time deadline_of(uintptr_t i) { return base + (weft_time)(i % 10000) * 1000000; }

static void *sleeper(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    weft_time d = deadline_of(i);
    started_late[i] = weft_now() >= d;
    weft_sleep_until(d);
    late[i] = weft_now() - d;
    woke_as[i] = atomic_fetch_add(&seq, 1);
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    base = weft_now() + 20LL * 1000000000; /* starting a million stacks takes seconds */
    for (uintptr_t i = 0; i < N; i++) {
        weft_spawn_opts o = {.stack_size = 16 * 1024};
        weft_task *t = weft_spawn_ex(sleeper, (void *)i, &o);
        if (!t) {
            fprintf(stderr, "spawn %lu failed\n", (unsigned long)i);
            exit(1);
        }
        weft_detach(t);
    }
    while (atomic_load(&seq) < N)
        weft_sleep_ms(100);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    woke_as = calloc(N, sizeof *woke_as);
    late = calloc(N, sizeof *late);
    started_late = calloc(N, 1);
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt || weft_runtime_block_on(rt, root, NULL, NULL) != 0) {
        perror("runtime");
        return 1;
    }
    weft_runtime_free(rt);
    long early = 0, started_after = 0, inversions = 0, pairs = 0;
    for (uintptr_t i = 0; i < N; i++) {
        early += late[i] < 0;
        started_after += started_late[i];
    }
    for (uintptr_t i = 0; i < N; i += 97) {
        uintptr_t j = (i * 7919 + 13) % N;
        if (started_late[i] || started_late[j] || deadline_of(j) < deadline_of(i) + 10000000)
            continue;
        pairs++;
        inversions += woke_as[j] < woke_as[i];
    }
    qsort(late, N, sizeof *late, cmp64);
    printf("million_sleepers: %d tasks, started late %ld, woke early %ld, lateness p50 %.2f ms "
           "p99 %.2f ms max %.2f ms, order inversions %ld of %ld pairs\n",
           N, started_after, early, late[N / 2] / 1e6, late[N / 100 * 99] / 1e6, late[N - 1] / 1e6,
           inversions, pairs);
    return early == 0 && inversions == 0 && started_after < N / 100 ? 0 : 1;
}
