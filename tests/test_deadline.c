/* Deadline scopes (weft_deadline_push / weft_deadline_pop, WEFT_WITH_DEADLINE)
 * and the negative-timeout rule (-1: none; any other negative: passed
 * already). Timing checks are only "not before the deadline" and generous
 * upper bounds. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#define MS 1000000LL
#define SLACK_NS (5000 * MS) /* upper bound for a 100 ms deadline */

static void silent_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Checks that a call cut short by a 100 ms scope pushed at t0 ended with
 * -ETIMEDOUT, not before the deadline and well within the bound. */
#define EXPECT_TIMED_OUT(rc, t0)                                                                   \
    do {                                                                                           \
        weft_time el_ = weft_now() - (t0);                                                         \
        TEST_EXPECT((rc) == -ETIMEDOUT, "rc %ld, want -ETIMEDOUT", (long)(rc));                    \
        TEST_EXPECT(el_ >= 100 * MS, "returned after %lld ns, before the deadline", (long long)el_); \
        TEST_EXPECT(el_ < SLACK_NS, "returned after %lld ns", (long long)el_);                     \
    } while (0)

/* ------------------------------------------------------------ nesting */

static void *nested_root(void *arg)
{
    (void)arg;
    int sv[2];
    silent_pair(sv);
    char b;

    /* Inner earlier than outer: the inner one applies, pop restores the
     * outer one. */
    weft_deadline outer, inner;
    TEST_EXPECT(weft_deadline_left_ms() == -1, "no scope yet");
    weft_time t0 = weft_now();
    TEST_EXPECT(weft_deadline_push(&outer, 60000) == 0, "push outer");
    TEST_EXPECT(weft_deadline_push(&inner, 100) == 0, "push inner");
    TEST_EXPECT(weft_deadline_left_ms() <= 100, "inner is earlier");
    ssize_t r = weft_sleep_ms(30000);
    EXPECT_TIMED_OUT(r, t0);
    TEST_EXPECT(weft_deadline_pop(&inner) == 0, "pop inner");
    int64_t left = weft_deadline_left_ms();
    TEST_EXPECT(left > 50000 && left <= 60000, "outer restored: %lld ms left", (long long)left);
    TEST_EXPECT(weft_sleep_ms(10) == 0, "the outer scope has time left");
    TEST_EXPECT(weft_read(sv[0], &b, 1, 0) == -ETIMEDOUT, "0 only looks");

    /* Inner later than outer: the outer one still bounds it. */
    TEST_EXPECT(weft_deadline_pop(&outer) == 0, "pop outer");
    TEST_EXPECT(weft_deadline_left_ms() == -1, "no scope left");
    t0 = weft_now();
    TEST_EXPECT(weft_deadline_push(&outer, 100) == 0, "push outer");
    TEST_EXPECT(weft_deadline_push(&inner, 60000) == 0, "push inner");
    TEST_EXPECT(weft_deadline_left_ms() <= 100, "the outer one is earlier");
    r = weft_read(sv[0], &b, 1, -1);
    EXPECT_TIMED_OUT(r, t0);
    /* A call's own timeout, later than the scope: the scope wins. */
    r = weft_read(sv[0], &b, 1, 60000);
    TEST_EXPECT(r == -ETIMEDOUT, "expired scope, read %ld", (long)r);
    TEST_EXPECT(weft_deadline_pop(&inner) == 0, "pop inner");
    TEST_EXPECT(weft_deadline_pop(&outer) == 0, "pop outer");

    /* A call's own timeout earlier than the scope: the call's wins. */
    TEST_EXPECT(weft_deadline_push(&outer, 60000) == 0, "push");
    t0 = weft_now();
    r = weft_read(sv[0], &b, 1, 20);
    TEST_EXPECT(r == -ETIMEDOUT && weft_now() - t0 < SLACK_NS, "own timeout: %ld", (long)r);
    TEST_EXPECT(weft_deadline_pop(&outer) == 0, "pop");
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(deadline, nested_scopes_take_the_earliest_and_pop_restores, .timeout = 30)
{
    test_run(2, nested_root, NULL);
}

/* ------------------------------------------------------------ every kind of wait */

static void *holds_mutex(void *arg)
{
    void **a = arg;
    weft_mutex *m = a[0];
    weft_event *release = a[1];
    weft_event *held = a[2];
    weft_mutex_lock(m, -1);
    weft_event_set(held);
    weft_event_wait(release, -1);
    weft_mutex_unlock(m);
    return NULL;
}

static void *sleeps_long(void *arg)
{
    (void)arg;
    weft_sleep_ms(60000);
    return NULL;
}

static void *every_wait_root(void *arg)
{
    (void)arg;
    int sv[2];
    silent_pair(sv);
    char b;
    weft_deadline s;
    weft_time t0;
    long rc;

    /* A read on a silent socket. */
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_read(sv[0], &b, 1, -1);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);

    /* A wait on the descriptor itself. */
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_wait_fd(sv[0], WEFT_READ, -1);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);

    /* A channel receive with no timeout parameter. */
    weft_chan *ch = weft_chan_new(1, sizeof(int));
    int v = 0;
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_chan_recv(ch, &v);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    /* ... and a send on a full channel. */
    TEST_EXPECT(weft_chan_send(ch, &v) == 0, "first send fits");
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_chan_send(ch, &v);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    weft_chan_free(ch);

    /* A join (no timeout parameter): the handle stays with the caller. */
    weft_task *victim = weft_spawn(sleeps_long, NULL);
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_join(victim, NULL);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    TEST_EXPECT(weft_cancel(victim) == 0, "handle still valid");
    TEST_EXPECT(weft_join(victim, NULL) == -ECANCELED, "join after the scope");

    /* A mutex held by another task. */
    weft_mutex *m = weft_mutex_new();
    weft_event *release = weft_event_new(), *held = weft_event_new();
    void *ha[3] = {m, release, held};
    weft_task *holder = weft_spawn(holds_mutex, ha);
    TEST_EXPECT(weft_event_wait(held, -1) == 0, "holder has it");
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_mutex_lock(m, -1);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    /* The negative rule on a contended mutex: no wait. */
    TEST_EXPECT(weft_mutex_lock(m, -7) == -ETIMEDOUT, "-7 on a held mutex");
    weft_event_set(release);
    TEST_EXPECT(weft_join(holder, NULL) == 0, "holder");
    TEST_EXPECT(weft_mutex_lock(m, -7) == 0, "-7 on a free mutex completes");

    /* A condition wait: the mutex is held again afterwards. */
    weft_cond *c = weft_cond_new();
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_cond_wait(c, m, -1);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    TEST_EXPECT(weft_mutex_trylock(m) != 0, "cond_wait re-took the mutex");
    TEST_EXPECT(weft_mutex_unlock(m) == 0, "unlock");
    weft_cond_free(c);

    /* An event wait. */
    weft_event *e = weft_event_new();
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_event_wait(e, -1);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);

    /* A sleep longer than the scope ends at the scope's deadline. */
    t0 = weft_now();
    weft_deadline_push(&s, 100);
    rc = weft_sleep_ms(60000);
    weft_deadline_pop(&s);
    EXPECT_TIMED_OUT(rc, t0);
    /* One that ends first completes. */
    weft_deadline_push(&s, 60000);
    TEST_EXPECT(weft_sleep_ms(5) == 0, "a short sleep in a long scope");
    weft_deadline_pop(&s);

    weft_event_free(e);
    weft_event_free(release);
    weft_event_free(held);
    weft_mutex_free(m);
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(deadline, expires_during_every_kind_of_wait, .timeout = 60)
{
    test_run(2, every_wait_root, NULL);
}

/* ------------------------------------------------------------ what completes */

static void *completes_root(void *arg)
{
    (void)arg;
    int sv[2];
    silent_pair(sv);
    weft_chan *ch = weft_chan_new(1, sizeof(int));
    weft_mutex *m = weft_mutex_new();
    weft_event *e = weft_event_new();
    int v = 7, got = 0;
    char b = 'x';
    TEST_EXPECT(write(sv[1], "y", 1) == 1, "write");
    TEST_EXPECT(weft_chan_send(ch, &v) == 0, "send");
    weft_event_set(e);

    /* Passed already: what can complete at once does; what would wait fails. */
    weft_deadline s;
    TEST_EXPECT(weft_deadline_push(&s, -5) == 0, "push an expired scope");
    TEST_EXPECT(weft_deadline_left_ms() == 0, "passed");
    TEST_EXPECT(weft_read(sv[0], &b, 1, -1) == 1 && b == 'y', "ready data is read");
    TEST_EXPECT(weft_read(sv[0], &b, 1, -1) == -ETIMEDOUT, "then it would wait");
    TEST_EXPECT(weft_chan_recv(ch, &got) == 0 && got == 7, "a ready element is received");
    TEST_EXPECT(weft_chan_recv(ch, &got) == -ETIMEDOUT, "then it would wait");
    TEST_EXPECT(weft_mutex_lock(m, -1) == 0, "a free mutex is taken");
    TEST_EXPECT(weft_mutex_unlock(m) == 0, "unlock");
    TEST_EXPECT(weft_event_wait(e, -1) == 0, "a set event");
    TEST_EXPECT(weft_sleep_until(weft_now() - MS) == 0, "a sleep that has ended");
    TEST_EXPECT(weft_sleep_ms(0) == 0, "a zero sleep");
    TEST_EXPECT(weft_sleep_ms(50) == -ETIMEDOUT, "a sleep that would suspend");
    /* A shielded section is not cut short. */
    TEST_EXPECT(weft_shield_begin() == 0, "shield");
    TEST_EXPECT(weft_sleep_ms(10) == 0, "shielded sleep runs to its end");
    TEST_EXPECT(weft_shield_end() == 0, "unshield");
    TEST_EXPECT(weft_deadline_pop(&s) == 0, "pop");
    TEST_EXPECT(weft_sleep_ms(1) == 0, "no scope: sleeps");

    weft_event_free(e);
    weft_mutex_free(m);
    weft_chan_free(ch);
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(deadline, an_expired_scope_fails_only_calls_that_would_suspend, .timeout = 30)
{
    test_run(1, completes_root, NULL);
}

/* ------------------------------------------------------------ with cancellation */

static atomic_int in_scope;

static void *reads_in_long_scope(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b;
    weft_deadline s;
    weft_deadline_push(&s, 60000);
    atomic_store(&in_scope, 1);
    ssize_t rc = weft_read(fd, &b, 1, -1);
    weft_deadline_pop(&s);
    return (void *)(intptr_t)rc;
}

static void *times_out_then_cancelled(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b;
    weft_deadline s;
    weft_deadline_push(&s, 100);
    weft_time t0 = weft_now();
    ssize_t rc = weft_read(fd, &b, 1, -1);
    if (rc != -ETIMEDOUT || weft_now() - t0 < 50 * MS) {
        weft_deadline_pop(&s);
        return (void *)(intptr_t)(rc == -ETIMEDOUT ? -1000 : rc);
    }
    /* The deadline came first; now wait (spinning) for the cancellation:
     * with both pending, cancellation is reported. */
    atomic_store(&in_scope, 2);
    while (!weft_cancelled())
        weft_yield();
    rc = weft_read(fd, &b, 1, -1);
    weft_deadline_pop(&s);
    return (void *)(intptr_t)(rc == -ECANCELED ? -ETIMEDOUT : rc - 2000);
}

static void *cancel_root(void *arg)
{
    (void)arg;
    int sv[2];
    silent_pair(sv);

    /* Cancellation before the deadline: -ECANCELED. */
    atomic_store(&in_scope, 0);
    weft_task *t = weft_spawn(reads_in_long_scope, (void *)(intptr_t)sv[0]);
    while (!atomic_load(&in_scope))
        weft_sleep_ms(1);
    weft_sleep_ms(20);
    weft_time t0 = weft_now();
    TEST_EXPECT(weft_cancel(t) == 0, "cancel");
    void *r = NULL;
    TEST_EXPECT(weft_join(t, &r) == -ECANCELED, "join a cancelled task");
    TEST_EXPECT((intptr_t)r == -ECANCELED, "read returned %ld", (long)(intptr_t)r);
    TEST_EXPECT(weft_now() - t0 < SLACK_NS, "cancellation did not wait for the deadline");

    /* The deadline before the cancellation: -ETIMEDOUT; then cancelled. */
    atomic_store(&in_scope, 0);
    t = weft_spawn(times_out_then_cancelled, (void *)(intptr_t)sv[0]);
    while (atomic_load(&in_scope) != 2) {
        /* The task may also end early on a failure; join tells. */
        weft_sleep_ms(5);
        if (weft_now() - t0 > 10000 * MS)
            break;
    }
    TEST_EXPECT(atomic_load(&in_scope) == 2, "the deadline came first");
    weft_cancel(t);
    r = NULL;
    weft_join(t, &r);
    TEST_EXPECT((intptr_t)r == -ETIMEDOUT, "deadline then cancel: %ld", (long)(intptr_t)r);

    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(deadline, together_with_cancellation, .timeout = 30)
{
    test_run(2, cancel_root, NULL);
}

/* ------------------------------------------------------------ misuse */

static weft_deadline *foreign_scope;
static weft_event *foreign_ready, *foreign_done;

static void *holds_a_scope(void *arg)
{
    (void)arg;
    weft_deadline s;
    weft_deadline_push(&s, 60000);
    foreign_scope = &s;
    weft_event_set(foreign_ready);
    weft_shield_begin(); /* its own wait is not cut short */
    weft_event_wait(foreign_done, -1);
    weft_shield_end();
    int rc = weft_deadline_pop(&s);
    return (void *)(intptr_t)rc;
}

static void *misuse_root(void *arg)
{
    (void)arg;
    weft_deadline a, b;
    TEST_EXPECT(weft_deadline_pop(&a) == -EINVAL, "pop without push");
    TEST_EXPECT(weft_deadline_pop(NULL) == -EINVAL, "pop NULL");
    TEST_EXPECT(weft_deadline_push(NULL, 10) == -EINVAL, "push NULL");

    TEST_EXPECT(weft_deadline_push(&a, 60000) == 0, "push a");
    TEST_EXPECT(weft_deadline_push(&b, 100) == 0, "push b");
    TEST_EXPECT(weft_deadline_pop(&a) == -EINVAL, "out of order");
    /* Nothing changed: b still applies, and both pop in order. */
    TEST_EXPECT(weft_deadline_left_ms() <= 100, "b still innermost");
    TEST_EXPECT(weft_deadline_pop(&b) == 0, "pop b");
    TEST_EXPECT(weft_deadline_pop(&b) == -EINVAL, "second pop of b");
    TEST_EXPECT(weft_deadline_left_ms() > 100, "a restored");
    TEST_EXPECT(weft_deadline_pop(&a) == 0, "pop a");
    TEST_EXPECT(weft_deadline_pop(&a) == -EINVAL, "second pop of a");
    TEST_EXPECT(weft_deadline_left_ms() == -1, "none left");

    /* Another task's scope. */
    foreign_ready = weft_event_new();
    foreign_done = weft_event_new();
    weft_task *t = weft_spawn(holds_a_scope, NULL);
    weft_event_wait(foreign_ready, -1);
    TEST_EXPECT(weft_deadline_pop(foreign_scope) == -EINVAL, "a scope of another task");
    weft_event_set(foreign_done);
    void *r = (void *)1;
    weft_join(t, &r);
    TEST_EXPECT(r == NULL, "its owner pops it: %ld", (long)(intptr_t)r);
    weft_event_free(foreign_ready);
    weft_event_free(foreign_done);

    /* A scope left open by a finished task leaves no trace. */
    return NULL;
}

Test(deadline, misuse_is_reported_and_changes_nothing, .timeout = 30)
{
    test_run(2, misuse_root, NULL);
}

Test(deadline, outside_a_task_is_eperm)
{
    weft_deadline s;
    cr_assert_eq(weft_deadline_push(&s, 100), -EPERM);
    cr_assert_eq(weft_deadline_pop(&s), -EPERM);
    cr_assert_eq(weft_deadline_left_ms(), -1);
    int ran = 0;
    WEFT_WITH_DEADLINE(100) { ran = 1; } /* runs, without a deadline */
    cr_assert_eq(ran, 1);
}

/* ------------------------------------------------------------ the block macro */

static int64_t left_inside;

static int returns_from_inside(void)
{
    WEFT_WITH_DEADLINE(100)
    {
        left_inside = weft_deadline_left_ms();
        return weft_sleep_ms(60000);
    }
    return 1;
}

static void *macro_root(void *arg)
{
    (void)arg;
    weft_time t0 = weft_now();
    int rc = returns_from_inside();
    EXPECT_TIMED_OUT(rc, t0);
    TEST_EXPECT(left_inside >= 0 && left_inside <= 100, "inside: %lld", (long long)left_inside);
    TEST_EXPECT(weft_deadline_left_ms() == -1, "return popped it");

    for (int i = 0; i < 3; i++) {
        WEFT_WITH_DEADLINE(50)
        {
            WEFT_WITH_DEADLINE(60000)
            {
                TEST_EXPECT(weft_deadline_left_ms() <= 50, "nested in the macro");
                if (i == 1)
                    break;
            }
            TEST_EXPECT(weft_deadline_left_ms() <= 50, "inner popped, outer kept");
        }
        TEST_EXPECT(weft_deadline_left_ms() == -1, "all popped");
    }
    WEFT_WITH_DEADLINE(-1) { TEST_EXPECT(weft_deadline_left_ms() == -1, "-1 adds none"); }
    return NULL;
}

Test(deadline, with_deadline_macro_pops_on_every_path, .timeout = 30)
{
    test_run(1, macro_root, NULL);
}

/* ------------------------------------------------------------ migration */

static void *migrates(void *arg)
{
    (void)arg;
    weft_deadline s;
    weft_deadline_push(&s, 60000);
    for (int i = 0; i < 2000; i++) {
        weft_yield();
        int64_t left = weft_deadline_left_ms();
        TEST_EXPECT(left > 0 && left <= 60000, "scope moved with the task: %lld", (long long)left);
    }
    TEST_EXPECT(weft_deadline_pop(&s) == 0, "pop on whichever worker");
    return NULL;
}

static void *migrate_root(void *arg)
{
    (void)arg;
    weft_task *ts[8];
    for (int i = 0; i < 8; i++)
        ts[i] = weft_spawn(migrates, NULL);
    for (int i = 0; i < 8; i++) {
        void *r = (void *)1;
        weft_join(ts[i], &r);
        TEST_EXPECT(r == NULL, "task %d failed at line %ld", i, (long)(intptr_t)r);
    }
    return NULL;
}

Test(deadline, a_scope_is_per_task_and_moves_with_it, .timeout = 30)
{
    test_run(4, migrate_root, NULL);
}

/* ------------------------------------------------------------ negative timeouts */

static void *negative_root(void *arg)
{
    (void)arg;
    int sv[2];
    silent_pair(sv);
    char b;
    weft_time t0 = weft_now();
    TEST_EXPECT(weft_read(sv[0], &b, 1, -5) == -ETIMEDOUT, "read -5 on an idle socket");
    TEST_EXPECT(weft_wait_fd(sv[0], WEFT_READ, -2) == -ETIMEDOUT, "wait_fd -2");
    TEST_EXPECT(weft_tcp_accept_timeout(-1, NULL, -3) < 0, "bad fd still an error");
    weft_chan *ch = weft_chan_new(1, sizeof(int));
    int v = 3, got = 0;
    TEST_EXPECT(weft_chan_recv_timeout(ch, &got, -5) == -ETIMEDOUT, "recv -5 on empty");
    TEST_EXPECT(weft_chan_send_timeout(ch, &v, -5) == 0, "send -5 with room");
    TEST_EXPECT(weft_chan_send_timeout(ch, &v, -5) == -ETIMEDOUT, "send -5 when full");
    TEST_EXPECT(weft_chan_recv_timeout(ch, &got, -5) == 0 && got == 3, "recv -5 with an element");
    weft_event *e = weft_event_new();
    TEST_EXPECT(weft_event_wait(e, -9) == -ETIMEDOUT, "event -9");
    weft_task *sl = weft_spawn(sleeps_long, NULL);
    TEST_EXPECT(weft_join_timeout(sl, NULL, -5) == -ETIMEDOUT, "join_timeout -5");
    weft_cancel(sl);
    weft_join(sl, NULL);
    TEST_EXPECT(weft_now() - t0 < SLACK_NS, "none of them waited");
    /* With data ready, a read with -5 completes. */
    TEST_EXPECT(write(sv[1], "z", 1) == 1, "write");
    TEST_EXPECT(weft_read(sv[0], &b, 1, -5) == 1 && b == 'z', "read -5 with data");
    weft_event_set(e);
    TEST_EXPECT(weft_event_wait(e, -9) == 0, "set event -9");
    weft_event_free(e);
    weft_chan_free(ch);
    weft_close(sv[0]);
    weft_close(sv[1]);
    return NULL;
}

Test(deadline, negative_timeouts_other_than_minus_one_have_passed, .timeout = 20)
{
    test_run(2, negative_root, NULL);
}

Test(deadline, negative_timeout_on_a_plain_thread, .timeout = 20)
{
    int sv[2];
    silent_pair(sv);
    char b;
    cr_assert_eq(weft_read(sv[0], &b, 1, -5), -ETIMEDOUT);
    cr_assert_eq(write(sv[1], "q", 1), 1);
    cr_assert_eq(weft_read(sv[0], &b, 1, -5), 1);
    weft_event *e = weft_event_new();
    cr_assert_eq(weft_event_wait(e, -5), -ETIMEDOUT);
    weft_event_free(e);
    close(sv[0]);
    close(sv[1]);
}
