/*
 * A throw-away PostgreSQL server for the tests (tests/test_pg.c).
 *
 * pg_server_start finds Debian's server binaries (/usr/lib/postgresql/N/bin,
 * the newest N; or $WEFT_PG_BINDIR), makes a fresh directory
 * /tmp/weft-pg-XXXXXX, runs initdb there (trust authentication, superuser
 * "postgres", no fsync) and starts `postgres` on a free TCP port of
 * 127.0.0.1, with its Unix socket in that directory and fsync off.
 * PostgreSQL refuses to run as root: as root both run as the `postgres`
 * system user the package creates (else `nobody`), which then owns the
 * directory; otherwise as the calling user.
 *
 * Nothing can outlive the test process. The server is not started by
 * pg_ctl (which detaches it) but by a guardian process forked from the test:
 * the guardian forks postgres (with PR_SET_PDEATHSIG = SIGQUIT, so postgres
 * stops if the guardian itself is killed), then blocks reading a pipe whose
 * only write end the test process holds (close-on-exec). When the test
 * process closes it (pg_server_stop) or dies in any way at all (a failed
 * assertion, a crash, a timeout's SIGKILL), the guardian reads end of file,
 * stops postgres with SIGQUIT (immediate shutdown; SIGKILL after 5 s),
 * waits for it and removes the directory. The guardian runs in its own
 * session, so a signal sent to the test's process group does not take it
 * down before it has cleaned up, and it closes every descriptor it
 * inherited (a test runner waiting for the test's pipes to close is not
 * held up). initdb's and the server's output go to an unlinked file the
 * test reads when something fails.
 *
 * Call pg_server_start and pg_server_stop from a plain thread (the test's
 * main thread, before or after the runtime): they fork, wait and block.
 * Returns 0, -ENOENT (no server binaries: the caller skips), or another
 * negative errno with the reason in err.
 */
#ifndef WEFT_TEST_PG_SERVER_H
#define WEFT_TEST_PG_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct pg_server {
    char bindir[256];
    char dir[64];   /* /tmp/weft-pg-XXXXXX: data/ and the Unix socket */
    int port;
    int valid;      /* set by pg_server_start: stop/release do nothing otherwise */
    pid_t guardian; /* 0 when not running */
    int guard_fd;   /* write end of the guardian's pipe; -1 when closed */
    int status_fd;  /* guardian -> us: one byte when postgres has exited */
    int log_fd;     /* unlinked file: initdb's and postgres's output */
    char tcp[320];  /* conninfo over TCP */
    char unix_[320]; /* conninfo over the Unix socket */
} pg_server;

static inline double pg_server_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The newest /usr/lib/postgresql/N/bin that has initdb and postgres. */
static inline int pg_server_find_bindir(char *out, size_t len)
{
    const char *env = getenv("WEFT_PG_BINDIR");
    char p[512];
    if (env && *env) {
        snprintf(p, sizeof p, "%s/initdb", env);
        if (access(p, X_OK) != 0)
            return -ENOENT;
        snprintf(out, len, "%s", env);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return -ENOENT;
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        snprintf(p, sizeof p, "/usr/lib/postgresql/%ld/bin/postgres", v);
        if (v > best && access(g.gl_pathv[i], X_OK) == 0 && access(p, X_OK) == 0)
            best = v;
    }
    globfree(&g);
    if (best < 0)
        return -ENOENT;
    snprintf(out, len, "/usr/lib/postgresql/%ld/bin", best);
    return 0;
}

/* The last part of the log, for error messages. */
static inline void pg_server_log_tail(const pg_server *s, char *err, size_t errlen, const char *what)
{
    char buf[1500] = "";
    off_t end = s->log_fd >= 0 ? lseek(s->log_fd, 0, SEEK_END) : 0;
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = s->log_fd >= 0 ? pread(s->log_fd, buf, sizeof buf - 1, from) : 0;
    buf[n > 0 ? n : 0] = '\0';
    snprintf(err, errlen, "%s; log:\n%s", what, buf);
}

static inline int pg_server_log_has(const pg_server *s, const char *needle)
{
    char buf[8192];
    ssize_t n = pread(s->log_fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return strstr(buf, needle) != NULL;
}

/* In a child of fork: become uid/gid (when root), point stdio at the log,
 * close everything else but keep_fd. Only async-signal-safe calls. */
static inline void pg_server_child_setup(int log_fd, int keep_fd, uid_t uid, gid_t gid, int as_other)
{
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        _exit(126);
    if (keep_fd > 2) {
        /* keep_fd: moved to 3 so that one range closes the rest */
        if (keep_fd != 3 && dup2(keep_fd, 3) < 0)
            _exit(126);
        syscall(SYS_close_range, 4U, ~0U, 0U);
    } else {
        syscall(SYS_close_range, 3U, ~0U, 0U);
    }
    if (as_other && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
        _exit(126);
    /* Default dispositions and an empty mask (the guardian ignores some). */
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* A TCP port of 127.0.0.1 that was free a moment ago. */
static inline int pg_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                     getsockname(fd, (struct sockaddr *)&a, &len) == 0
                 ? ntohs(a.sin_port)
                 : -errno;
    close(fd);
    return rc;
}

static inline void pg_server_stop(pg_server *s)
{
    if (!s->valid)
        return;
    if (s->guardian > 0) {
        close(s->guard_fd); /* the guardian stops postgres and removes the directory */
        s->guard_fd = -1;
        int st;
        while (waitpid(s->guardian, &st, 0) < 0 && errno == EINTR) {
        }
        s->guardian = 0;
    }
    if (s->status_fd >= 0)
        close(s->status_fd);
    s->status_fd = -1;
}

/* Closes the log too: after a stop that ends the server for good. */
static inline void pg_server_release(pg_server *s)
{
    if (!s->valid)
        return;
    pg_server_stop(s);
    if (s->log_fd >= 0)
        close(s->log_fd);
    s->log_fd = -1;
    s->valid = 0;
}

/* The guardian (a child of fork, runs only async-signal-safe code): starts
 * postgres, waits for our pipe to close, stops postgres, removes dir. */
static inline __attribute__((noreturn)) void pg_server_guardian(int guard_rd, int status_wr,
                                                                int log_fd, uid_t uid, gid_t gid,
                                                                int as_other, char *const pg_argv[],
                                                                char *const rm_argv[])
{
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    pid_t me = getpid();
    pid_t pg = fork();
    if (pg == 0) {
        pg_server_child_setup(log_fd, -1, uid, gid, as_other);
        prctl(PR_SET_PDEATHSIG, SIGQUIT); /* after setuid, which clears it */
        if (getppid() != me)
            _exit(126);
        execv(pg_argv[0], pg_argv);
        _exit(127);
    }
    /* Keep only the pipes (and stderr for nothing): 0 = guard pipe. */
    if (dup2(guard_rd, 0) < 0 || (status_wr != 4 && dup2(status_wr, 4) < 0))
        _exit(126);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
        dup2(devnull, 3);
    }
    syscall(SYS_close_range, 5U, ~0U, 0U);
    int pg_alive = pg > 0;
    if (!pg_alive) {
        char b = 1;
        (void)!write(4, &b, 1);
    }
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, pg_alive ? 100 : -1);
        if (r > 0) {
            char c;
            ssize_t n = read(0, &c, 1);
            if (n <= 0 && !(n < 0 && errno == EINTR))
                break; /* end of file: the test is done or dead */
        }
        if (pg_alive && waitpid(pg, NULL, WNOHANG) == pg) {
            pg_alive = 0;
            char b = 1;
            (void)!write(4, &b, 1);
        }
    }
    if (pg_alive) {
        kill(pg, SIGQUIT);
        int waited = 0;
        while (waitpid(pg, NULL, WNOHANG) != pg) {
            if (++waited == 500) /* 5 s */
                kill(pg, SIGKILL);
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    pid_t rm = fork();
    if (rm == 0) {
        execv(rm_argv[0], rm_argv);
        _exit(127);
    }
    if (rm > 0)
        waitpid(rm, NULL, 0);
    _exit(0);
}

/* One attempt on a given port: initdb (first time) and postgres. */
static inline int pg_server_try(pg_server *s, uid_t uid, gid_t gid, int as_other, double timeout_s,
                                char *err, size_t errlen)
{
    char data[128], initdb[320], postgres[320], port[16], sockopt[128], rm[] = "/bin/rm";
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(initdb, sizeof initdb, "%s/initdb", s->bindir);
    snprintf(postgres, sizeof postgres, "%s/postgres", s->bindir);
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(sockopt, sizeof sockopt, "unix_socket_directories=%s", s->dir);
    char *pg_argv[] = {postgres, "-D", data, "-p", port,
                       "-c", "listen_addresses=127.0.0.1", "-c", sockopt,
                       "-c", "fsync=off", "-c", "synchronous_commit=off",
                       "-c", "full_page_writes=off", "-c", "autovacuum=off",
                       "-c", "max_connections=60", "-c", "logging_collector=off",
                       NULL};
    char *rm_argv[] = {rm, "-rf", s->dir, NULL};

    struct stat st;
    if (stat(data, &st) != 0) {
        char *init_argv[] = {initdb, "-D", data, "-A", "trust", "-U", "postgres",
                             "-E", "UTF8", "--locale=C", "-N", NULL};
        pid_t c = fork();
        if (c < 0) {
            snprintf(err, errlen, "fork: %s", strerror(errno));
            return -errno;
        }
        if (c == 0) {
            pg_server_child_setup(s->log_fd, -1, uid, gid, as_other);
            if (chdir(s->dir) != 0)
                _exit(126);
            execv(initdb, init_argv);
            _exit(127);
        }
        int wst;
        while (waitpid(c, &wst, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
            pg_server_log_tail(s, err, errlen, "initdb failed");
            return -EIO;
        }
    }

    int gp[2], sp[2];
    if (pipe2(gp, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(sp, O_CLOEXEC) != 0) {
        close(gp[0]);
        close(gp[1]);
        return -errno;
    }
    pid_t g = fork();
    if (g < 0) {
        int e = errno;
        close(gp[0]), close(gp[1]), close(sp[0]), close(sp[1]);
        snprintf(err, errlen, "fork: %s", strerror(e));
        return -e;
    }
    if (g == 0)
        pg_server_guardian(gp[0], sp[1], s->log_fd, uid, gid, as_other, pg_argv, rm_argv);
    close(gp[0]);
    close(sp[1]);
    s->guardian = g;
    s->guard_fd = gp[1];
    s->status_fd = sp[0];

    snprintf(s->unix_, sizeof s->unix_, "host=%s port=%d dbname=postgres user=postgres", s->dir,
             s->port);
    snprintf(s->tcp, sizeof s->tcp, "host=127.0.0.1 port=%d dbname=postgres user=postgres",
             s->port);
    char ping[400];
    snprintf(ping, sizeof ping, "%s connect_timeout=5", s->tcp);
    double give_up = pg_server_now() + timeout_s;
    while (pg_server_now() < give_up) {
        struct pollfd p = {.fd = s->status_fd, .events = POLLIN};
        if (poll(&p, 1, 20) > 0)
            return -ECHILD; /* postgres exited */
        if (PQping(ping) == PQPING_OK)
            return 0;
    }
    pg_server_log_tail(s, err, errlen, "postgres did not accept connections in time");
    return -ETIMEDOUT;
}

static inline int pg_server_start(pg_server *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->guard_fd = s->status_fd = s->log_fd = -1;
    s->valid = 1;
    snprintf(err, errlen, "no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)");
    if (pg_server_find_bindir(s->bindir, sizeof s->bindir) != 0)
        return -ENOENT;

    uid_t uid = getuid();
    gid_t gid = getgid();
    int as_other = geteuid() == 0;
    if (as_other) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        if (!pw) {
            snprintf(err, errlen, "running as root and there is no postgres or nobody user");
            return -EPERM;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    s->log_fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (s->log_fd < 0) {
        char path[] = "/tmp/weft-pg-log-XXXXXX";
        s->log_fd = mkostemp(path, O_CLOEXEC);
        if (s->log_fd >= 0)
            unlink(path);
    }
    if (s->log_fd < 0) {
        snprintf(err, errlen, "log file: %s", strerror(errno));
        return -errno;
    }
    double timeout_s = getenv("WEFT_VALGRIND") ? 120 : 30;
    int rc = -EIO;
    for (int attempt = 0; attempt < 4; attempt++) {
        snprintf(s->dir, sizeof s->dir, "/tmp/weft-pg-XXXXXX");
        if (!mkdtemp(s->dir)) {
            rc = -errno;
            snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
            break;
        }
        if (as_other && chown(s->dir, uid, gid) != 0) {
            rc = -errno;
            snprintf(err, errlen, "chown %s: %s", s->dir, strerror(errno));
            rmdir(s->dir);
            break;
        }
        s->port = pg_server_free_port();
        if (s->port <= 0) {
            rc = s->port;
            snprintf(err, errlen, "no free port: %s", strerror(-rc));
            rmdir(s->dir);
            break;
        }
        rc = pg_server_try(s, uid, gid, as_other, timeout_s, err, errlen);
        if (rc == 0)
            return 0;
        if (s->guardian == 0) { /* initdb failed: no guardian owns the directory */
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
            (void)!system(cmd);
            break;
        }
        int port_taken = rc == -ECHILD && pg_server_log_has(s, "could not bind");
        if (rc == -ECHILD)
            pg_server_log_tail(s, err, errlen, "postgres exited");
        pg_server_stop(s); /* also removes the directory */
        if (!port_taken)
            break; /* another port can only help when this one was taken */
    }
    return rc;
}

#endif
