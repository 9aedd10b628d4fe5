/*
 * make soak-net's echo load (tests/soak_net/run.sh): opens CONNS connections
 * to 127.0.0.1:PORT (one task each), holds them all open for SECONDS, each
 * sending a 32-byte message about once a second and checking that the same
 * bytes come back, then closes them all. Prints how many connected, how many
 * echoes were checked and how many failed; exits 1 if a connection could not
 * be made or an echo was wrong.
 *   echo_clients PORT CONNS SECONDS
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <weft.h>

static uint16_t port;
static weft_time until;
static atomic_long connected, echoes, failures, holding;

static void *conn_main(void *arg)
{
    long id = (long)(intptr_t)arg;
    int fd = -1;
    /* a burst of 10,000 connects can overflow the listen queue: retry */
    for (int tries = 0; fd < 0 && tries < 20; tries++) {
        fd = weft_tcp_connect("127.0.0.1", port, 10000);
        if (fd < 0)
            weft_sleep_ms(50 + (uint64_t)(id % 100));
    }
    if (fd < 0) {
        if (atomic_fetch_add(&failures, 1) < 5)
            fprintf(stderr, "echo_clients: connect %ld: %s\n", id, strerror(-fd));
        return NULL;
    }
    atomic_fetch_add(&connected, 1);
    atomic_fetch_add(&holding, 1);
    /* spread the messages over the second */
    weft_sleep_ms((uint64_t)(id % 1000));
    while (weft_now() < until) {
        char line[64], msg[32], back[32];
        snprintf(line, sizeof line, "conn %09ld at %012lld\n", id % 1000000000,
                 (long long)(weft_now() % 1000000000000));
        memcpy(msg, line, sizeof msg);
        long rc = weft_write(fd, msg, sizeof msg, 10000);
        size_t got = 0;
        while (rc >= 0 && got < sizeof back) {
            rc = weft_read(fd, back + got, sizeof back - got, 10000);
            if (rc == 0)
                rc = -ECONNRESET;
            if (rc > 0)
                got += (size_t)rc;
        }
        if (rc < 0 || memcmp(msg, back, sizeof msg) != 0) {
            if (atomic_fetch_add(&failures, 1) < 5)
                fprintf(stderr, "echo_clients: conn %ld: %s\n", id,
                        rc < 0 ? strerror((int)-rc) : "wrong bytes came back");
            break;
        }
        atomic_fetch_add(&echoes, 1);
        weft_sleep_ms(1000);
    }
    atomic_fetch_sub(&holding, 1);
    weft_close(fd);
    return NULL;
}

static long nconns;

static void *root(void *arg)
{
    (void)arg;
    weft_task **ts = calloc((size_t)nconns, sizeof *ts);
    if (!ts)
        return (void *)1;
    for (long i = 0; i < nconns; i++) {
        int rc = weft_task_spawn(NULL, conn_main, (void *)(intptr_t)i, NULL, &ts[i]);
        if (rc < 0) {
            fprintf(stderr, "echo_clients: spawn: %s\n", strerror(-rc));
            atomic_fetch_add(&failures, 1);
            ts[i] = NULL;
        }
        if (i % 500 == 499)
            weft_sleep_ms(20); /* pace the connects */
    }
    for (long i = 0; i < nconns; i++)
        if (ts[i])
            weft_join(ts[i], NULL);
    free(ts);
    return NULL;
}

static void *reporter(void *arg)
{
    (void)arg;
    while (weft_now() < until + (weft_time)5 * 1000000000) {
        if (weft_sleep_ms(5000) < 0)
            break; /* cancelled: the load is over */
        fprintf(stderr, "echo_clients: holding %ld connections, %ld echoes, %ld failures\n",
                atomic_load(&holding), atomic_load(&echoes), atomic_load(&failures));
        if (atomic_load(&holding) == 0 && weft_now() >= until)
            break;
    }
    return NULL;
}

static void *main_task(void *arg)
{
    weft_task *r;
    if (weft_task_spawn(NULL, reporter, NULL, NULL, &r) < 0)
        r = NULL;
    void *res = root(arg);
    if (r) {
        weft_cancel(r);
        weft_join(r, NULL);
    }
    return res;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: echo_clients PORT CONNS SECONDS\n");
        return 2;
    }
    port = (uint16_t)atoi(argv[1]);
    nconns = atol(argv[2]);
    long secs = atol(argv[3]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    until = weft_now() + (weft_time)secs * 1000000000;
    void *res = NULL;
    int rc = weft_main(main_task, NULL, &res);
    printf("echo_clients: %ld of %ld connected, %ld echoes checked, %ld failures\n",
           atomic_load(&connected), nconns, atomic_load(&echoes), atomic_load(&failures));
    return rc == 0 && !res && atomic_load(&failures) == 0 && atomic_load(&connected) == nconns ? 0 : 1;
}
