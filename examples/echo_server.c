/*
 * TCP echo server: one task per connection.
 *
 *   build/examples/echo_server PORT [WORKERS]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port, printed at start) and runs
 * until killed. WORKERS defaults to one per CPU.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = weft_read(fd, buf, sizeof buf, -1);
        if (n <= 0)
            break; /* end of stream, or the peer reset: either way we are done */
        if (weft_write(fd, buf, (size_t)n, -1) < 0)
            break;
    }
    weft_close(fd);
    return NULL;
}

static void *server(void *arg)
{
    uint16_t port = (uint16_t)(uintptr_t)arg;
    int lfd = weft_tcp_listen("127.0.0.1", port, 0);
    if (lfd < 0) {
        fprintf(stderr, "echo_server: listen on 127.0.0.1:%u: %s\n", port, strerror(-lfd));
        return (void *)1;
    }
    printf("echo_server: listening on 127.0.0.1:%d\n", weft_socket_port(lfd));
    fflush(stdout);
    for (;;) {
        int fd = weft_tcp_accept(lfd, NULL);
        if (fd < 0) {
            /* Descriptor exhaustion is absorbed inside accept; what reaches
             * here is transient (a network error on one connection) unless
             * the listener itself is gone. */
            fprintf(stderr, "echo_server: accept: %s\n", strerror(-fd));
            if (fd == -EBADF || fd == -EINVAL || fd == -ENOTSOCK)
                break;
            continue;
        }
        weft_task *t = weft_spawn(serve, (void *)(intptr_t)fd);
        if (!t) {
            fprintf(stderr, "echo_server: spawn: %s\n", strerror(errno));
            weft_close(fd);
            continue;
        }
        weft_detach(t);
    }
    weft_close(lfd);
    return (void *)1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (*end || port < 0 || port > 65535) {
        fprintf(stderr, "echo_server: bad port '%s'\n", argv[1]);
        return 2;
    }
    weft_config cfg;
    weft_config_init(&cfg);
    if (argc == 3) {
        long w = strtol(argv[2], &end, 10);
        if (*end || w < 1 || w > 1024) {
            fprintf(stderr, "echo_server: bad worker count '%s'\n", argv[2]);
            return 2;
        }
        cfg.workers = (unsigned)w;
    }
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt) {
        perror("echo_server: weft_runtime_new");
        return 1;
    }
    void *res = NULL;
    int rc = weft_runtime_block_on(rt, server, (void *)(uintptr_t)port, &res);
    weft_runtime_free(rt);
    if (rc < 0) {
        fprintf(stderr, "echo_server: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
