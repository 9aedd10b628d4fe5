/*
 * A shell pipeline run by tasks: `ls -l DIR | sort -k5 -n`.
 *
 *   build/examples/subprocess [DIR]      (DIR defaults to /usr/bin)
 *
 * Task "pump" reads ls's stdout and writes it into sort's stdin, then closes
 * that pipe so sort sees the end of its input; task "collect" reads sort's
 * output and remembers its last line (the largest file). Beside them a
 * ticker task prints a dot every 10 ms: the workers never block on the
 * children. At the end: line counts, the largest entry and both exit
 * statuses.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <weft.h>

typedef struct job {
    weft_process *ls, *sort;
    long ls_lines, sort_lines;
    char last[512]; /* sort's last line: the biggest file */
    int err;        /* first error, or 0 */
    atomic_int done;
} job;

static long count_lines(const char *p, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

static void *pump(void *arg)
{
    job *j = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = weft_read(weft_process_stdout_fd(j->ls), buf, sizeof buf, -1);
        if (n < 0) {
            j->err = (int)n;
            break;
        }
        if (n == 0)
            break;
        j->ls_lines += count_lines(buf, (size_t)n);
        ssize_t w = weft_write(weft_process_stdin_fd(j->sort), buf, (size_t)n, -1);
        if (w < 0) {
            j->err = (int)w;
            break;
        }
    }
    weft_process_close_fd(j->sort, 0); /* sort sees end of input and starts output */
    return NULL;
}

static void *collect(void *arg)
{
    job *j = arg;
    char buf[16384];
    size_t cur = 0; /* length of the line being assembled in j->last */
    for (;;) {
        ssize_t n = weft_read(weft_process_stdout_fd(j->sort), buf, sizeof buf, -1);
        if (n < 0) {
            j->err = (int)n;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                j->sort_lines++;
                j->last[cur] = '\0';
                cur = 0;
            } else if (cur < sizeof j->last - 1) {
                j->last[cur++] = buf[i];
            }
        }
    }
    return NULL;
}

static void *ticker(void *arg)
{
    job *j = arg;
    int dots = 0;
    while (!atomic_load(&j->done)) {
        putchar('.');
        fflush(stdout);
        dots++;
        weft_sleep_ms(10);
    }
    printf("\n%d ticks while the pipeline ran\n", dots);
    return NULL;
}

static void print_status(const char *name, int rc, int st)
{
    if (rc < 0)
        printf("%s: wait failed: %s\n", name, strerror(-rc));
    else if (WIFEXITED(st))
        printf("%s: exited with status %d\n", name, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by signal %d\n", name, WTERMSIG(st));
}

static void *run(void *arg)
{
    const char *dir = arg;
    job j = {0};
    const char *const ls_argv[] = {"ls", "-l", dir, NULL};
    const char *const sort_argv[] = {"sort", "-k5", "-n", NULL};
    weft_process_opts lo = {.argv = ls_argv, .pipe_stdout = 1};
    weft_process_opts so = {.argv = sort_argv, .pipe_stdin = 1, .pipe_stdout = 1};
    int rc = weft_process_spawn(&lo, &j.ls);
    if (rc < 0) {
        fprintf(stderr, "subprocess: spawn ls: %s\n", strerror(-rc));
        return (void *)1;
    }
    rc = weft_process_spawn(&so, &j.sort);
    if (rc < 0) {
        fprintf(stderr, "subprocess: spawn sort: %s\n", strerror(-rc));
        weft_process_free(j.ls);
        return (void *)1;
    }
    printf("ls (pid %d) | sort (pid %d)\n", (int)weft_process_pid(j.ls), (int)weft_process_pid(j.sort));

    weft_task *tick, *tp, *tc;
    int src = weft_task_spawn(NULL, ticker, &j, NULL, &tick);
    if (src == 0)
        src = weft_task_spawn(NULL, pump, &j, NULL, &tp);
    if (src == 0)
        src = weft_task_spawn(NULL, collect, &j, NULL, &tc);
    if (src < 0) {
        fprintf(stderr, "subprocess: spawn task: %s\n", strerror(-src));
        exit(1);
    }
    weft_join(tp, NULL);
    weft_join(tc, NULL);
    int ls_st = 0, sort_st = 0;
    int ls_rc = weft_process_wait(j.ls, &ls_st, -1);
    int sort_rc = weft_process_wait(j.sort, &sort_st, -1);
    atomic_store(&j.done, 1);
    weft_join(tick, NULL);

    if (j.err)
        printf("pipeline error: %s\n", strerror(-j.err));
    printf("ls wrote %ld lines, sort wrote %ld lines\n", j.ls_lines, j.sort_lines);
    printf("largest: %s\n", j.last);
    print_status("ls", ls_rc, ls_st);
    print_status("sort", sort_rc, sort_st);
    weft_process_free(j.ls);
    weft_process_free(j.sort);
    int ok = !j.err && ls_rc == 0 && sort_rc == 0 && WIFEXITED(ls_st) &&
             WEXITSTATUS(ls_st) == 0 && WIFEXITED(sort_st) && WEXITSTATUS(sort_st) == 0;
    return ok ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: %s [DIR]\n", argv[0]);
        return 2;
    }
    void *res = NULL;
    int rc = weft_main(run, argc == 2 ? argv[1] : "/usr/bin", &res);
    if (rc < 0) {
        fprintf(stderr, "subprocess: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
