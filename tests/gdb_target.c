/* A program for the gdb extension's test (tests/test_dump.c): tasks wait in
 * functions of known names, then it aborts, which writes a core file where
 * the test set `ulimit -c` (a kernel core: gcore cannot read the megabyte
 * around a stack's guard page, and loses the stacks). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>

static weft_event *ev;
static volatile int sink;

__attribute__((noinline)) void gdbwait_event(void)
{
    weft_event_wait(ev, -1);
    sink++;
}

__attribute__((noinline)) void gdbwait_sleep(void)
{
    weft_sleep_ms(600000);
    sink++;
}

static void *run_event(void *a)
{
    (void)a;
    gdbwait_event();
    return NULL;
}

static void *run_sleep(void *a)
{
    (void)a;
    gdbwait_sleep();
    return NULL;
}

int main(void)
{
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt)
        return 1;
    ev = weft_event_new();
    weft_spawn_opts a = {.name = "gdb-event"}, b = {.name = "gdb-sleep"};
    weft_task *t1 = weft_spawn_on_ex(rt, run_event, NULL, &a);
    weft_task *t2 = weft_spawn_on_ex(rt, run_sleep, NULL, &b);
    if (!t1 || !t2)
        return 1;
    /* Until both have parked (the dump says so). */
    for (int i = 0; i < 1000; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        weft_runtime_dump(rt, f);
        fclose(f);
        int ok = strstr(buf, "(2 parked") != NULL;
        free(buf);
        if (ok)
            break;
        usleep(10000);
    }
    printf("gdb_target: ready\n");
    fflush(stdout);
    abort();
}
