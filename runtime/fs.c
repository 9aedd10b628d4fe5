/*
 * Files on the blocking pool. Regular files are always "ready" for
 * poll/epoll, so a worker would block in the kernel on every slow disk or
 * network file system; each call here is one pool job instead, awaited by
 * the calling task (weft__blocking_call in blocking.c). Outside a task the
 * job runs inline.
 *
 * Each call packs its arguments and its outcome in a small struct on the
 * caller's stack; weft__blocking_call does not return while the job may
 * still run, so the job may write there. errno is read on the pool thread
 * right after each syscall and carried back as a negative result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* blocking.c */

typedef struct fs_op {
    const char *path, *path2;
    int fd, flags;
    unsigned mode;
    void *buf;
    const void *cbuf;
    size_t n;
    off_t off;
    struct stat *st;
    void **data_out;
    size_t *len_out;
    ssize_t res; /* the outcome: >= 0 or -errno */
} fs_op;

static ssize_t fs_run(weft_fn fn, fs_op *op)
{
    int rc = weft__blocking_call(fn, op);
    return rc < 0 ? rc : op->res;
}

/* ------------------------------------------------------------ syscalls */

static ssize_t write_all(int fd, const void *buf, size_t n, off_t off, int positional)
{
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done;
        if (chunk > (size_t)SSIZE_MAX)
            chunk = (size_t)SSIZE_MAX;
        ssize_t w = positional ? pwrite(fd, p + done, chunk, off + (off_t)done)
                               : write(fd, p + done, chunk);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            return -e;
        }
        if (w == 0)
            return -EIO; /* no progress and no error: do not spin */
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static void *op_open(void *arg)
{
    fs_op *o = arg;
    int fd;
    do
        fd = open(o->path, o->flags | O_CLOEXEC, (mode_t)o->mode);
    while (fd < 0 && errno == EINTR);
    o->res = fd < 0 ? -errno : fd;
    return NULL;
}

static void *op_read(void *arg)
{
    fs_op *o = arg;
    ssize_t r;
    do
        r = o->off < 0 ? read(o->fd, o->buf, o->n) : pread(o->fd, o->buf, o->n, o->off);
    while (r < 0 && errno == EINTR);
    o->res = r < 0 ? -errno : r;
    return NULL;
}

static void *op_write(void *arg)
{
    fs_op *o = arg;
    o->res = write_all(o->fd, o->cbuf, o->n, o->off, o->off >= 0);
    return NULL;
}

static void *op_fsync(void *arg)
{
    fs_op *o = arg;
    o->res = fsync(o->fd) < 0 ? -errno : 0;
    return NULL;
}

static void *op_close(void *arg)
{
    fs_op *o = arg;
    /* Linux releases the descriptor even when close reports an error
     * (EINTR included): never retry. */
    o->res = close(o->fd) < 0 ? -errno : 0;
    return NULL;
}

static void *op_stat(void *arg)
{
    fs_op *o = arg;
    o->res = stat(o->path, o->st) < 0 ? -errno : 0;
    return NULL;
}

static void *op_unlink(void *arg)
{
    fs_op *o = arg;
    o->res = unlink(o->path) < 0 ? -errno : 0;
    return NULL;
}

static void *op_rename(void *arg)
{
    fs_op *o = arg;
    o->res = rename(o->path, o->path2) < 0 ? -errno : 0;
    return NULL;
}

static void *op_read_file(void *arg)
{
    fs_op *o = arg;
    int fd;
    do
        fd = open(o->path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        o->res = -errno;
        return NULL;
    }
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        cap = (size_t)st.st_size + 1; /* +1: see the end of file at once */
    size_t len = 0;
    char *buf = weft__malloc(cap + 1);
    ssize_t res = buf ? 0 : -ENOMEM;
    while (res == 0) {
        if (len == cap) {
            /* Grew while we read, or a file whose size stat does not know
             * (/proc): double. */
            if (cap > SIZE_MAX / 2 - 1) {
                res = -EFBIG;
                break;
            }
            char *nb = weft__realloc(buf, cap * 2 + 1);
            if (!nb) {
                res = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            res = -errno;
        } else if (r == 0) {
            break;
        } else {
            len += (size_t)r;
        }
    }
    close(fd);
    if (res < 0) {
        weft__free(buf);
        o->res = res;
        return NULL;
    }
    buf[len] = 0;
    *o->data_out = buf;
    *o->len_out = len;
    o->res = 0;
    return NULL;
}

/* fsync of the directory that holds path, so a rename in it is durable.
 * File systems that cannot sync a directory (EINVAL) are fine. */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = weft__strdup(".");
    else if (slash == path)
        dir = weft__strdup("/");
    else
        if ((dir = weft__malloc((size_t)(slash - path) + 1)) != NULL) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = 0;
        }
    if (!dir)
        return -ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    weft__free(dir);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 && errno != EINVAL ? -errno : 0;
    close(fd);
    return rc;
}

static void *op_write_file(void *arg)
{
    fs_op *o = arg;
    static _Atomic unsigned long counter;
    size_t plen = strlen(o->path);
    char *tmp = weft__malloc(plen + 64);
    if (!tmp) {
        o->res = -ENOMEM;
        return NULL;
    }
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        snprintf(tmp, plen + 64, "%s.weft-tmp.%ld.%lu", o->path, (long)getpid(),
                 atomic_fetch_add(&counter, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST && errno != EINTR) {
            o->res = -errno;
            weft__free(tmp);
            return NULL;
        }
    }
    if (fd < 0) {
        o->res = -EEXIST;
        weft__free(tmp);
        return NULL;
    }
    ssize_t res = 0;
    struct stat st;
    if (stat(o->path, &st) == 0 && fchmod(fd, st.st_mode & 07777) < 0)
        res = -errno; /* keep the mode of the file we replace */
    if (res == 0)
        res = write_all(fd, o->cbuf, o->n, 0, 0);
    if (res >= 0 && fsync(fd) < 0)
        res = -errno;
    if (close(fd) < 0 && res >= 0)
        res = -errno;
    if (res >= 0 && rename(tmp, o->path) < 0)
        res = -errno;
    if (res < 0) {
        unlink(tmp);
    } else {
        res = fsync_parent(o->path);
    }
    weft__free(tmp);
    o->res = res < 0 ? res : 0;
    return NULL;
}

/* ------------------------------------------------------------ public API */

int weft_open(const char *path, int flags, unsigned mode)
{
    if (!path)
        return -EINVAL;
    fs_op o = {.path = path, .flags = flags, .mode = mode};
    return (int)fs_run(op_open, &o);
}

ssize_t weft_file_read(int fd, void *buf, size_t n)
{
    if (fd < 0)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    fs_op o = {.fd = fd, .buf = buf, .n = n, .off = -1};
    return fs_run(op_read, &o);
}

ssize_t weft_pread(int fd, void *buf, size_t n, off_t offset)
{
    if (fd < 0)
        return -EBADF;
    if ((!buf && n) || offset < 0)
        return -EINVAL;
    fs_op o = {.fd = fd, .buf = buf, .n = n, .off = offset};
    return fs_run(op_read, &o);
}

ssize_t weft_file_write(int fd, const void *buf, size_t n)
{
    if (fd < 0)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    fs_op o = {.fd = fd, .cbuf = buf, .n = n, .off = -1};
    return fs_run(op_write, &o);
}

ssize_t weft_pwrite(int fd, const void *buf, size_t n, off_t offset)
{
    if (fd < 0)
        return -EBADF;
    if ((!buf && n) || offset < 0)
        return -EINVAL;
    fs_op o = {.fd = fd, .cbuf = buf, .n = n, .off = offset};
    return fs_run(op_write, &o);
}

int weft_fsync(int fd)
{
    if (fd < 0)
        return -EBADF;
    fs_op o = {.fd = fd};
    return (int)fs_run(op_fsync, &o);
}

int weft_file_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    fs_op o = {.fd = fd};
    int rc = weft__blocking_call(op_close, &o);
    if (rc == -ECANCELED) {
        op_close(&o); /* never leak the descriptor */
        return (int)o.res;
    }
    return rc < 0 ? rc : (int)o.res;
}

int weft_stat(const char *path, struct stat *st)
{
    if (!path || !st)
        return -EINVAL;
    fs_op o = {.path = path, .st = st};
    return (int)fs_run(op_stat, &o);
}

int weft_unlink(const char *path)
{
    if (!path)
        return -EINVAL;
    fs_op o = {.path = path};
    return (int)fs_run(op_unlink, &o);
}

int weft_rename(const char *from, const char *to)
{
    if (!from || !to)
        return -EINVAL;
    fs_op o = {.path = from, .path2 = to};
    return (int)fs_run(op_rename, &o);
}

int weft_read_file(const char *path, void **data_out, size_t *len_out)
{
    if (!path || !data_out || !len_out)
        return -EINVAL;
    *data_out = NULL;
    *len_out = 0;
    void *data = NULL;
    size_t len = 0;
    fs_op o = {.path = path, .data_out = &data, .len_out = &len};
    int rc = (int)fs_run(op_read_file, &o);
    if (rc == 0) {
        *data_out = data;
        *len_out = len;
    }
    return rc;
}

int weft_write_file(const char *path, const void *data, size_t len)
{
    if (!path || !*path || (!data && len))
        return -EINVAL;
    fs_op o = {.path = path, .cbuf = data, .n = len};
    return (int)fs_run(op_write_file, &o);
}
