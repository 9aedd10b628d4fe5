/*
 * Files on the blocking pool: round trips from tasks and from plain threads,
 * errors (missing, permission, directory), atomic whole-file writes, many
 * tasks at once, and cancellation of a call still queued.
 *
 * Checks inside tasks record the first failure instead of asserting (a
 * Criterion assertion cannot unwind a task's stack).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft.h>

#include "util.h"

static char fs_dir[64];

static void fs_setup(void)
{
    snprintf(fs_dir, sizeof fs_dir, "/tmp/weft-fs-test.XXXXXX");
    cr_assert_not_null(mkdtemp(fs_dir));
}

static void fs_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fs_dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", fs_dir);
}

static void fs_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", fs_dir, name); }

/* ------------------------------------------------------------ round trip */

static void *fs_round_trip(void *arg)
{
    const char *tag = arg;
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/%s-a", fs_dir, tag);
    snprintf(b, sizeof b, "%s/%s-b", fs_dir, tag);

    static const char text[] = "weft files: hello, pool";
    TEST_EXPECT(weft_write_file(a, text, sizeof text - 1) == 0, "write_file");
    void *data = NULL;
    size_t len = 0;
    int rc = weft_read_file(a, &data, &len);
    TEST_EXPECT(rc == 0, "read_file %d", rc);
    TEST_EXPECT(len == sizeof text - 1 && memcmp(data, text, len) == 0, "read_file content");
    TEST_EXPECT(((char *)data)[len] == 0, "read_file terminator");
    free(data);

    /* Replace it: new content, the mode kept. */
    TEST_EXPECT(chmod(a, 0640) == 0, "chmod");
    TEST_EXPECT(weft_write_file(a, "xy", 2) == 0, "write_file again");
    struct stat st;
    TEST_EXPECT(weft_stat(a, &st) == 0, "stat");
    TEST_EXPECT(st.st_size == 2, "size %ld", (long)st.st_size);
    TEST_EXPECT((st.st_mode & 0777) == 0640, "mode %o", (unsigned)(st.st_mode & 0777));
    TEST_EXPECT(weft_write_file(a, NULL, 0) == 0, "write empty");
    TEST_EXPECT(weft_read_file(a, &data, &len) == 0 && len == 0, "read empty");
    free(data);

    int fd = weft_open(b, O_RDWR | O_CREAT | O_TRUNC, 0600);
    TEST_EXPECT(fd >= 0, "open %d", fd);
    TEST_EXPECT(fcntl(fd, F_GETFD) & FD_CLOEXEC, "not close-on-exec");
    TEST_EXPECT(weft_file_write(fd, "0123456789", 10) == 10, "write");
    TEST_EXPECT(weft_pwrite(fd, "ABC", 3, 20) == 3, "pwrite");
    TEST_EXPECT(weft_fsync(fd) == 0, "fsync");
    char buf[32] = {0};
    TEST_EXPECT(weft_pread(fd, buf, 4, 2) == 4 && memcmp(buf, "2345", 4) == 0, "pread");
    ssize_t n = weft_pread(fd, buf, sizeof buf, 0);
    TEST_EXPECT(n == 23, "pread all %zd", n);
    TEST_EXPECT(buf[15] == 0 && memcmp(buf + 20, "ABC", 3) == 0, "hole and tail");
    TEST_EXPECT(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    n = weft_file_read(fd, buf, 5);
    TEST_EXPECT(n == 5 && memcmp(buf, "01234", 5) == 0, "read %zd", n);
    TEST_EXPECT(weft_file_close(fd) == 0, "close");
    TEST_EXPECT(weft_stat(b, &st) == 0 && st.st_size == 23, "stat b");

    TEST_EXPECT(weft_rename(b, a) == 0, "rename");
    TEST_EXPECT(weft_stat(b, &st) == -ENOENT, "old name still there");
    TEST_EXPECT(weft_read_file(a, &data, &len) == 0 && len == 23, "read renamed");
    free(data);
    TEST_EXPECT(weft_unlink(a) == 0, "unlink");
    TEST_EXPECT(weft_unlink(a) == -ENOENT, "unlink twice");
    TEST_EXPECT(weft_file_close(-1) == -EBADF, "close -1");
    return NULL;
}

Test(fs_files, round_trip_in_a_task, .init = fs_setup, .fini = fs_teardown)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, fs_round_trip, "task", NULL), 0);
    test_assert_no_failure();
    cr_assert_gt(weft_blocking_threads(rt), 0u, "the calls did not use the pool");
    weft_runtime_free(rt);
}

Test(fs_files, round_trip_from_a_plain_thread_runs_inline, .init = fs_setup, .fini = fs_teardown)
{
    cr_assert_null(fs_round_trip("thread"));
    test_assert_no_failure();
}

/* ------------------------------------------------------------ errors */

static void *fs_errors(void *arg)
{
    (void)arg;
    char p[128];
    fs_path(p, sizeof p, "missing");
    void *data = (void *)1;
    size_t len = 7;
    TEST_EXPECT(weft_read_file(p, &data, &len) == -ENOENT, "read_file missing");
    TEST_EXPECT(data == NULL && len == 0, "outputs not cleared");
    TEST_EXPECT(weft_open(p, O_RDONLY, 0) == -ENOENT, "open missing");
    struct stat st;
    TEST_EXPECT(weft_stat(p, &st) == -ENOENT, "stat missing");
    char q[160];
    snprintf(q, sizeof q, "%s/sub/file", p);
    TEST_EXPECT(weft_write_file(q, "x", 1) == -ENOENT, "write_file into a missing dir");

    /* A directory. */
    TEST_EXPECT(weft_open(fs_dir, O_WRONLY, 0) == -EISDIR, "open dir for write");
    TEST_EXPECT(weft_read_file(fs_dir, &data, &len) == -EISDIR, "read_file dir");
    int fd = weft_open(fs_dir, O_RDONLY, 0);
    TEST_EXPECT(fd >= 0, "open dir read-only %d", fd);
    char buf[8];
    TEST_EXPECT(weft_file_read(fd, buf, sizeof buf) == -EISDIR, "read dir");
    TEST_EXPECT(weft_file_close(fd) == 0, "close");
    TEST_EXPECT(weft_write_file(fs_dir, "x", 1) < 0, "write_file over a dir");

    /* Bad input. */
    TEST_EXPECT(weft_open(NULL, O_RDONLY, 0) == -EINVAL, "open NULL");
    TEST_EXPECT(weft_read_file(p, NULL, &len) == -EINVAL, "read_file NULL");
    TEST_EXPECT(weft_file_read(-1, buf, 1) == -EBADF, "read -1");
    TEST_EXPECT(weft_pread(0, buf, 1, -1) == -EINVAL, "negative offset");

    /* Permission denied (root bypasses permission bits). */
    fs_path(p, sizeof p, "secret");
    TEST_EXPECT(weft_write_file(p, "s", 1) == 0, "write secret");
    TEST_EXPECT(chmod(p, 0) == 0, "chmod 000");
    if (geteuid() != 0) {
        TEST_EXPECT(weft_open(p, O_RDONLY, 0) == -EACCES, "open mode 000");
        TEST_EXPECT(weft_read_file(p, &data, &len) == -EACCES, "read_file mode 000");
    }
    return NULL;
}

Test(fs_files, errors, .init = fs_setup, .fini = fs_teardown)
{
    if (geteuid() == 0)
        cr_log_info("running as root: the -EACCES checks are skipped (root bypasses permissions)");
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_runtime_block_on(rt, fs_errors, NULL, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}

/* ------------------------------------------------------------ many tasks */

static void *fs_worker(void *arg)
{
    intptr_t i = (intptr_t)arg;
    char p[128], content[64];
    snprintf(p, sizeof p, "%s/f%ld", fs_dir, (long)i);
    int len = snprintf(content, sizeof content, "file %ld of many", (long)i);
    for (int round = 0; round < 3; round++) {
        TEST_EXPECT(weft_write_file(p, content, (size_t)len) == 0, "write_file %ld", (long)i);
        void *data = NULL;
        size_t n = 0;
        TEST_EXPECT(weft_read_file(p, &data, &n) == 0, "read_file %ld", (long)i);
        int same = n == (size_t)len && memcmp(data, content, n) == 0;
        free(data);
        TEST_EXPECT(same, "content of %ld", (long)i);
    }
    return NULL;
}

static void *fs_many_main(void *arg)
{
    int n = (int)(intptr_t)arg;
    weft_task **ts = calloc((size_t)n, sizeof *ts);
    TEST_EXPECT(ts != NULL, "calloc");
    for (int i = 0; i < n; i++)
        TEST_EXPECT((ts[i] = weft_spawn(fs_worker, (void *)(intptr_t)i)) != NULL, "spawn");
    for (int i = 0; i < n; i++)
        TEST_EXPECT(weft_join(ts[i], NULL) == 0, "join");
    free(ts);
    return NULL;
}

Test(fs_files, many_tasks_at_once, .init = fs_setup, .fini = fs_teardown, .timeout = 120)
{
    weft_runtime *rt = test_runtime(4);
    cr_assert_eq(weft_blocking_configure(rt, 8, 0), 0);
    int n = test_scale_down() ? 16 : 100;
    cr_assert_eq(weft_runtime_block_on(rt, fs_many_main, (void *)(intptr_t)n, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}

/* ------------------------------------------------------- cancellation */

static void *fs_hold_job(void *arg)
{
    weft_event_wait(arg, -1); /* occupies the only pool thread */
    return NULL;
}

static atomic_int fs_stat_started;

static void *fs_stat_task(void *arg)
{
    (void)arg;
    struct stat st;
    atomic_store(&fs_stat_started, 1);
    return (void *)(intptr_t)weft_stat(fs_dir, &st);
}

static void *fs_cancel_main(void *arg)
{
    (void)arg;
    weft_event *gate = weft_event_new();
    TEST_EXPECT(gate != NULL, "event");
    weft_task *hold = weft_spawn_blocking(fs_hold_job, gate);
    TEST_EXPECT(hold != NULL, "spawn_blocking");
    weft_task *t = weft_spawn(fs_stat_task, NULL);
    TEST_EXPECT(t != NULL, "spawn");
    while (!atomic_load(&fs_stat_started))
        weft_sleep_ms(1);
    weft_sleep_ms(20); /* its job is queued behind the held thread */
    weft_cancel(t);
    void *r = NULL;
    /* Returns while the pool is still held: the queued call was withdrawn. */
    TEST_EXPECT(weft_join(t, &r) == -ECANCELED, "join");
    TEST_EXPECT((intptr_t)r == -ECANCELED, "weft_stat in a cancelled task: %ld", (long)(intptr_t)r);
    TEST_EXPECT(!weft_event_is_set(gate), "gate");
    weft_event_set(gate);
    TEST_EXPECT(weft_join(hold, NULL) == 0, "join hold");
    weft_event_free(gate);

    /* A task cancelled before the call: nothing is submitted. */
    weft_task *self_cancel = weft_spawn(fs_stat_task, NULL);
    weft_cancel(self_cancel);
    weft_join(self_cancel, NULL);
    return NULL;
}

Test(fs_files, cancel_while_queued, .init = fs_setup, .fini = fs_teardown, .timeout = 60)
{
    weft_runtime *rt = test_runtime(2);
    cr_assert_eq(weft_blocking_configure(rt, 1, 0), 0);
    cr_assert_eq(weft_runtime_block_on(rt, fs_cancel_main, NULL, NULL), 0);
    test_assert_no_failure();
    weft_runtime_free(rt);
}
