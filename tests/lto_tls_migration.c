/*
 * Regression test for the thread-migration hazard (built with -O2 -flto
 * together with the runtime's sources, so the compiler can inline across the
 * switch): tasks that are stolen between workers keep reading thread-local
 * variables and errno in a loop around weft_yield(), and every read must be
 * the current thread's.
 *
 * Each thread's locals are stamped with its kernel thread id the first time
 * it runs the loop; a read that comes from another thread's storage shows up
 * as a mismatch with a fresh gettid(). errno is checked the way the API asks
 * users to read it: right after the call that set it, after a migration.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <weft.h>

static __thread int tls_tid;
static __thread long tls_tid2;
static __thread char tls_tag[16];

static atomic_long checks, migrations, wrong;

static int fresh_tid(void) { return (int)syscall(SYS_gettid); }

static void *mover(void *arg)
{
    (void)arg;
    int last = -1;
    for (int i = 0; i < 20000; i++) {
        /* Sleeping now and then lets workers run dry and steal each other's
         * tasks; yielding keeps them hopping between runs. */
        if (i % 64 == 0)
            weft_sleep_ms(1);
        weft_yield();
        int tid = fresh_tid();
        if (tls_tid == 0) { /* first visit of this thread */
            tls_tid = tid;
            tls_tid2 = (long)tid * 2;
            tls_tag[0] = (char)('a' + tid % 26);
        }
        if (tls_tid != tid || tls_tid2 != (long)tid * 2 || tls_tag[0] != (char)('a' + tid % 26))
            atomic_fetch_add(&wrong, 1); 
        /* errno, read right after the call that sets it. */
        errno = 0;
        if (close(-1) != -1 || errno != EBADF)
            atomic_fetch_add(&wrong, 1); 
        weft_yield();
        errno = 0;
        if (read(-1, NULL, 0) != -1 || errno != EBADF)
            atomic_fetch_add(&wrong, 1); 
        if (tid != last && last != -1)
            atomic_fetch_add(&migrations, 1);
        last = tid;
        atomic_fetch_add(&checks, 1);
    }
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    weft_task *t[16];
    for (int i = 0; i < 6; i++)
        t[i] = weft_spawn(mover, NULL);
    for (int i = 0; i < 6; i++)
        weft_join(t[i], NULL);
    return NULL;
}

Test(lto_tls, thread_locals_and_errno_stay_right_across_migration, .timeout = 120)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    weft_runtime *rt = weft_runtime_new(&cfg);
    cr_assert_not_null(rt);
    cr_assert_eq(weft_runtime_block_on(rt, root, NULL, NULL), 0);
    weft_runtime_free(rt);
    cr_assert_eq(atomic_load(&checks), 6 * 20000);
    cr_assert_gt(atomic_load(&migrations), 100, "tasks were not moved between workers (%ld moves)",
                 atomic_load(&migrations));
    cr_assert_eq(atomic_load(&wrong), 0, "%ld reads came from another thread", atomic_load(&wrong));
}
