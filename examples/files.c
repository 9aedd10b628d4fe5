/*
 * files: copies a directory tree concurrently.
 *
 *   build/examples/files SRC DST [CONCURRENCY]
 *
 * One task walks SRC; each regular file is copied by its own task, and a
 * semaphore bounds how many copies run at once (CONCURRENCY, default 16).
 * File calls (weft_open, weft_file_read, weft_file_write, ...) run on the
 * runtime's blocking pool, so a slow disk never stalls a worker; directory
 * listing, which has no weft call, runs there too through
 * weft_spawn_blocking. Directories are made as needed, regular files keep
 * their mode, anything else (symlinks, devices) is skipped. Prints the files,
 * bytes and bytes per second.
 *
 * With no arguments it generates a small tree under /tmp, copies it, checks
 * every copy byte for byte and removes both trees (exit 0 when all is well),
 * so it can run unattended.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft.h>

#define CHUNK (256 * 1024)

static weft_sem *slots;  /* bounds the copies running at once */
static weft_group *copies;
static atomic_long files_copied, bytes_copied, skipped, failures;

/* ------------------------------------------------------ directory walk */

typedef struct entry {
    char *name;
    int is_dir, is_reg;
} entry;

typedef struct listing {
    const char *dir;
    entry *v;
    size_t n;
    int err;
} listing;

/* A blocking job: readdir has no weft call. */
static void *list_dir_job(void *arg)
{
    listing *l = arg;
    DIR *d = opendir(l->dir);
    if (!d) {
        l->err = errno;
        return NULL;
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", l->dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (l->n == cap) {
            cap = cap ? cap * 2 : 32;
            entry *nv = realloc(l->v, cap * sizeof *nv);
            if (!nv) {
                l->err = ENOMEM;
                break;
            }
            l->v = nv;
        }
        l->v[l->n].name = strdup(de->d_name);
        l->v[l->n].is_dir = S_ISDIR(st.st_mode);
        l->v[l->n].is_reg = S_ISREG(st.st_mode);
        l->n++;
    }
    closedir(d);
    return NULL;
}

static void *mkdir_job(void *arg)
{
    const char **p = arg; /* [0] path, [1] reference dir for the mode */
    struct stat st;
    mode_t mode = stat(p[1], &st) == 0 ? (st.st_mode & 07777) : 0755;
    if (mkdir(p[0], mode) < 0 && errno != EEXIST)
        return (void *)(intptr_t)errno;
    return NULL;
}

/* ------------------------------------------------------ copying */

typedef struct copy_job {
    char *src, *dst;
} copy_job;

static int copy_file(const char *src, const char *dst)
{
    struct stat st;
    int rc = weft_stat(src, &st);
    if (rc < 0)
        return rc;
    int in = weft_open(src, O_RDONLY, 0);
    if (in < 0)
        return in;
    int out = weft_open(dst, O_WRONLY | O_CREAT | O_TRUNC, st.st_mode & 07777);
    if (out < 0) {
        weft_file_close(in);
        return out;
    }
    char *buf = malloc(CHUNK);
    long total = 0;
    rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        ssize_t n = weft_file_read(in, buf, CHUNK);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        ssize_t w = weft_file_write(out, buf, (size_t)n);
        if (w < 0)
            rc = (int)w;
        else
            total += n;
    }
    free(buf);
    weft_file_close(in);
    int crc = weft_file_close(out);
    if (rc == 0 && crc < 0)
        rc = crc;
    if (rc == 0) {
        atomic_fetch_add(&files_copied, 1);
        atomic_fetch_add(&bytes_copied, total);
    }
    return rc;
}

static void *copy_task(void *arg)
{
    copy_job *j = arg;
    int rc = copy_file(j->src, j->dst);
    if (rc < 0) {
        fprintf(stderr, "files: %s: %s\n", j->src, strerror(-rc));
        atomic_fetch_add(&failures, 1);
    }
    free(j->src);
    free(j->dst);
    free(j);
    weft_sem_release(slots, 1);
    return rc < 0 ? WEFT_GROUP_FAILED : NULL;
}

/* Walks src (in this task), starting a bounded copy task per file. */
static int copy_tree(const char *src, const char *dst)
{
    const char *mk[2] = {dst, src};
    weft_task *h = weft_spawn_blocking(mkdir_job, mk);
    void *r = NULL;
    if (!h || weft_join(h, &r) < 0 || r) {
        fprintf(stderr, "files: mkdir %s: %s\n", dst, strerror(r ? (int)(intptr_t)r : errno));
        return -1;
    }
    listing l = {src, NULL, 0, 0};
    h = weft_spawn_blocking(list_dir_job, &l);
    if (!h || weft_join(h, NULL) < 0 || l.err) {
        fprintf(stderr, "files: list %s: %s\n", src, strerror(l.err ? l.err : errno));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < l.n; i++) {
        char *s = NULL, *d = NULL;
        if (asprintf(&s, "%s/%s", src, l.v[i].name) < 0 ||
            asprintf(&d, "%s/%s", dst, l.v[i].name) < 0) {
            rc = -1;
            break;
        }
        if (l.v[i].is_dir) {
            if (copy_tree(s, d) < 0)
                rc = -1;
            free(s);
            free(d);
        } else if (l.v[i].is_reg) {
            copy_job *j = malloc(sizeof *j);
            if (!j || weft_sem_acquire(slots, -1) < 0) {
                free(j);
                free(s);
                free(d);
                rc = -1;
                break;
            }
            j->src = s;
            j->dst = d;
            if (weft_group_spawn(copies, copy_task, j) < 0) {
                weft_sem_release(slots, 1);
                free(s);
                free(d);
                free(j);
                rc = -1;
                break;
            }
        } else {
            atomic_fetch_add(&skipped, 1);
            free(s);
            free(d);
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].name);
    free(l.v);
    return rc;
}

typedef struct args {
    const char *src, *dst;
    int concurrency;
} args;

static void *copy_main(void *arg)
{
    args *a = arg;
    slots = weft_sem_new(a->concurrency);
    copies = weft_group_new(0);
    if (!slots || !copies)
        return (void *)(intptr_t)1;
    weft_time t0 = weft_now();
    int rc = copy_tree(a->src, a->dst);
    int wrc = weft_group_wait(copies, -1);
    double secs = (double)(weft_now() - t0) / 1e9;
    weft_group_free(copies);
    weft_sem_free(slots);
    long bytes = atomic_load(&bytes_copied);
    printf("files: copied %ld files, %ld bytes in %.3f s (%.1f MB/s), %d at once",
           atomic_load(&files_copied), bytes, secs, secs > 0 ? (double)bytes / secs / 1e6 : 0.0,
           a->concurrency);
    if (atomic_load(&skipped))
        printf(", %ld skipped (not regular files)", atomic_load(&skipped));
    if (atomic_load(&failures))
        printf(", %ld FAILED", atomic_load(&failures));
    printf("\n");
    return (void *)(intptr_t)(rc < 0 || wrc < 0);
}

/* ------------------------------------------------------ self-test */

#define DEMO_DIRS 4
#define DEMO_FILES 12 /* per directory */

static size_t demo_size(int d, int f) { return (size_t)((d * 7919 + f * 104729) % 300000) + (f == 0 ? 0 : 1); }

static void demo_fill(unsigned char *buf, size_t n, int d, int f)
{
    uint32_t x = (uint32_t)(d * 131 + f * 7 + 1);
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        buf[i] = (unsigned char)(x >> 24);
    }
}

static void demo_path(char *out, size_t n, const char *root, int d, int f)
{
    if (d == 0)
        snprintf(out, n, "%s/file%02d.bin", root, f);
    else if (f < 0)
        snprintf(out, n, "%s/dir%d", root, d);
    else
        snprintf(out, n, "%s/dir%d/file%02d.bin", root, d, f);
}

static void *demo_generate(void *arg)
{
    const char *root = arg;
    for (int d = 0; d < DEMO_DIRS; d++) {
        char p[4096];
        if (d > 0) {
            demo_path(p, sizeof p, root, d, -1);
            const char *mk[2] = {p, root};
            weft_task *h = weft_spawn_blocking(mkdir_job, mk);
            void *r = NULL;
            if (!h || weft_join(h, &r) < 0 || r)
                return (void *)(intptr_t)1;
        }
        for (int f = 0; f < DEMO_FILES; f++) {
            size_t n = demo_size(d, f);
            unsigned char *buf = malloc(n ? n : 1);
            if (!buf)
                return (void *)(intptr_t)1;
            demo_fill(buf, n, d, f);
            demo_path(p, sizeof p, root, d, f);
            int rc = weft_write_file(p, buf, n);
            free(buf);
            if (rc < 0) {
                fprintf(stderr, "files: generate %s: %s\n", p, strerror(-rc));
                return (void *)(intptr_t)1;
            }
        }
    }
    return NULL;
}

static void *demo_verify(void *arg)
{
    const char *root = arg;
    int bad = 0;
    for (int d = 0; d < DEMO_DIRS; d++)
        for (int f = 0; f < DEMO_FILES; f++) {
            char p[4096];
            demo_path(p, sizeof p, root, d, f);
            size_t n = demo_size(d, f), len = 0;
            void *data = NULL;
            unsigned char *want = malloc(n ? n : 1);
            int rc = weft_read_file(p, &data, &len);
            if (want)
                demo_fill(want, n, d, f);
            if (rc < 0 || !want || len != n || memcmp(data, want, n) != 0) {
                fprintf(stderr, "files: %s differs from its source\n", p);
                bad++;
            }
            free(want);
            free(data);
        }
    return (void *)(intptr_t)bad;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc == 3 || argc == 4) {
        args a = {argv[1], argv[2], argc == 4 ? atoi(argv[3]) : 16};
        if (a.concurrency < 1) {
            fprintf(stderr, "usage: %s SRC DST [CONCURRENCY >= 1]\n", argv[0]);
            return 2;
        }
        void *r = NULL;
        int rc = weft_main(copy_main, &a, &r);
        return rc < 0 || r ? 1 : 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s SRC DST [CONCURRENCY]\n       %s   (self-test under /tmp)\n",
                argv[0], argv[0]);
        return 2;
    }
    char base[] = "/tmp/weft-files.XXXXXX";
    if (!mkdtemp(base)) {
        perror("files: mkdtemp");
        return 1;
    }
    char src[64], dst[64];
    snprintf(src, sizeof src, "%s/src", base);
    snprintf(dst, sizeof dst, "%s/dst", base);
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt) {
        perror("files: weft_runtime_new");
        return 1;
    }
    int status = 1;
    void *r = NULL;
    if (mkdir(src, 0755) < 0) {
        perror("files: mkdir");
    } else if (weft_runtime_block_on(rt, demo_generate, src, &r) < 0 || r) {
        fprintf(stderr, "files: could not generate the test tree\n");
    } else {
        printf("files: generated %d files in %d directories under %s\n", DEMO_DIRS * DEMO_FILES,
               DEMO_DIRS, src);
        args a = {src, dst, 8};
        if (weft_runtime_block_on(rt, copy_main, &a, &r) == 0 && !r &&
            weft_runtime_block_on(rt, demo_verify, dst, &r) == 0 && !r) {
            printf("files: verified %d copies byte for byte\n", DEMO_DIRS * DEMO_FILES);
            status = 0;
        } else {
            fprintf(stderr, "files: copy or verification FAILED\n");
        }
    }
    weft_runtime_free(rt);
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
