/*
 * weft_curl.h: libcurl driven from weft tasks (header only, static functions).
 *
 * A task calls a blocking-looking fetch and only that task waits; the
 * worker runs other tasks meanwhile.
 *
 *   weft_curl_global_init();              once, before any thread (main)
 *   weft_curl *c = weft_curl_new(NULL);   a client: one multi handle
 *   weft_curl_resp r = {0};
 *   CURLcode rc = weft_curl_get(c, "http://127.0.0.1:8080/", 5000, &r);
 *   if (rc == CURLE_OK) use(r.status, r.body, r.len);
 *   else fprintf(stderr, "%s\n", r.error);  (curl's message)
 *   weft_curl_resp_free(&r);
 *   weft_curl_free(c);
 *
 * Design. A libcurl multi handle is not thread-safe, and weft tasks run on
 * several worker threads, so a client owns one multi handle and one driver
 * task, the only code that ever calls curl_multi_*. Any number of tasks (or
 * plain threads) fetch through one client at once: a fetch hands its easy
 * handle to the driver through a mutex-protected queue and waits on its own
 * weft_event; the driver adds it to the multi and signals the event when
 * curl reports the transfer done. The multi's connection cache is shared by
 * every fetch of the client, so keep-alive connections are reused across
 * tasks (the aiohttp ClientSession model). Easy handles are recycled by the
 * client too (weft_curl_get), so a fetch allocates nothing in the steady
 * state.
 *
 * The driver runs curl's multi-socket API: CURLMOPT_SOCKETFUNCTION puts the
 * sockets curl asks for into an epoll set of the client (several at once:
 * happy eyeballs, the threaded resolver's socket pair), and the driver waits
 * on that one epoll descriptor with weft_wait_fd, with curl's timer
 * (CURLMOPT_TIMERFUNCTION) as the wait's timeout. It then collects the ready
 * sockets without blocking and calls curl_multi_socket_action for each, and
 * for the timer when it is due. An eventfd in the same set wakes the driver
 * for new requests (written only while the driver is about to sleep). The
 * driver never blocks its worker: every curl call it makes is non-blocking.
 *
 * Errors: CURLcode as libcurl reports it (CURLE_COULDNT_CONNECT for a
 * refused connection, CURLE_OPERATION_TIMEDOUT when timeout_ms passed,
 * ...), with curl's message in resp->error. A fetching task that is
 * cancelled gets CURLE_ABORTED_BY_CALLBACK; the transfer is withdrawn
 * first, so nothing refers to the caller's memory afterwards.
 *
 * Include after <curl/curl.h> is available (link with -lcurl).
 */
#ifndef WEFT_CURL_H
#define WEFT_CURL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <weft.h>

#define WEFT_CURL_FN static __attribute__((unused))

/* ------------------------------------------------------------- types */

/* A response of weft_curl_get. Zero-initialise it; it may be reused for
 * several fetches (the body buffer is kept and overwritten), then released
 * with weft_curl_resp_free. */
typedef struct weft_curl_resp {
    long status;     /* HTTP status, 0 when no response came */
    char *body;      /* malloc'd, len bytes plus a terminating zero byte */
    size_t len, cap;
    double total_s;  /* CURLINFO_TOTAL_TIME */
    long new_conns;  /* CURLINFO_NUM_CONNECTS: 0 when a kept-alive connection was reused */
    char error[CURL_ERROR_SIZE]; /* curl's message on failure, "" on success */
} weft_curl_resp;

enum { WC_IDLE, WC_QUEUED, WC_ACTIVE, WC_DONE };

/* One request slot: an easy handle with the event its fetcher waits on. */
typedef struct weft_curl_req {
    struct weft_curl_req *next;   /* submission queue, or the free list */
    struct weft_curl_req *cnext;  /* cancel list */
    CURL *easy;
    int own_easy;                 /* the client made (and recycles) easy */
    weft_event *done;
    atomic_int state;             /* WC_* */
    CURLcode result;
    char errbuf[CURL_ERROR_SIZE];
} weft_curl_req;

typedef struct weft_curl_opts {
    long max_conns;   /* CURLMOPT_MAXCONNECTS, connections kept alive; 0 = 64 */
    size_t stack_size; /* the driver task's stack; 0 = the runtime's default */
} weft_curl_opts;

typedef struct weft_curl {
    CURLM *multi;
    int epfd, evfd;
    weft_task *driver;
    pthread_mutex_t lock; /* the lists below; held only briefly, never across a wait */
    weft_curl_req *sub_head, *sub_tail;
    weft_curl_req *cancels;
    weft_curl_req *free_slots;
    atomic_int pending;   /* something is on the lists */
    atomic_int sleeping;  /* the driver is about to wait or waits */
    atomic_int stopping;
    /* Driver only. */
    weft_time deadline;   /* curl's timer, -1: none */
    int active;           /* transfers in the multi */
    unsigned char *fds;   /* WC_NOT_IN_SET / WC_WANTED / WC_KEPT by socket number */
    size_t fds_cap;
    int failed;           /* the last unexpected weft_wait_fd error of the driver, 0: none */
} weft_curl;

/* ------------------------------------------------------------- init */

static pthread_once_t weft_curl__once = PTHREAD_ONCE_INIT;
static CURLcode weft_curl__init_rc = CURLE_FAILED_INIT;
static void weft_curl__init(void) { weft_curl__init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* curl_global_init, once per process. Call it from main before starting
 * threads (libcurl's own rule); weft_curl_new calls it too, as a fallback. */
WEFT_CURL_FN CURLcode weft_curl_global_init(void)
{
    pthread_once(&weft_curl__once, weft_curl__init);
    return weft_curl__init_rc;
}

/* ------------------------------------------------------------- driver */

/* What the epoll set holds for a socket number (driver only). */
enum { WC_NOT_IN_SET, WC_WANTED, WC_KEPT };

static unsigned char *weft_curl__fdstate(weft_curl *c, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= c->fds_cap) {
        size_t cap = c->fds_cap ? c->fds_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        unsigned char *p = realloc(c->fds, cap);
        if (!p)
            return NULL;
        memset(p + c->fds_cap, WC_NOT_IN_SET, cap - c->fds_cap);
        c->fds = p;
        c->fds_cap = cap;
    }
    return &c->fds[fd];
}

/* CURLMOPT_SOCKETFUNCTION. A socket curl no longer wants stays in the set
 * (WC_KEPT): a kept-alive connection is wanted again by the next transfer,
 * and leaving it saves an epoll_ctl per request. An event on a kept socket
 * (the server closed it) takes it out then. Each new interest is an
 * EPOLL_CTL_MOD, with ADD as the fallback: a number whose socket was
 * closed left the set by itself (epoll drops a closed file), so the state
 * can be stale only in that harmless direction. */
static int weft_curl__on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    weft_curl *c = userp;
    unsigned char *st = weft_curl__fdstate(c, s);
    if (!st)
        return -1;
    if (what == CURL_POLL_REMOVE) {
        if (*st == WC_WANTED)
            *st = WC_KEPT;
        return 0;
    }
    struct epoll_event ev = {.events = 0, .data.fd = s};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    int op = *st == WC_NOT_IN_SET ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(c->epfd, op, s, &ev) < 0) {
        int e = errno;
        if (e == ENOENT)
            op = EPOLL_CTL_ADD;
        else if (e == EEXIST)
            op = EPOLL_CTL_MOD;
        else
            return -1;
        if (epoll_ctl(c->epfd, op, s, &ev) < 0)
            return -1;
    }
    *st = WC_WANTED;
    return 0;
}

static int weft_curl__on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    weft_curl *c = userp;
    c->deadline = timeout_ms < 0 ? -1 : weft_now() + (weft_time)timeout_ms * 1000000;
    return 0;
}

static void weft_curl__finish(weft_curl_req *r, CURLcode rc)
{
    r->result = rc;
    atomic_store(&r->state, WC_DONE);
    weft_event_set(r->done);
}

/* Reports finished transfers to their fetchers; returns how many. */
static int weft_curl__reap(weft_curl *c)
{
    CURLMsg *m;
    int left, n = 0;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        weft_curl_req *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(c->multi, easy);
        c->active--;
        weft_curl__finish(r, rc);
        n++;
    }
    return n;
}

/* Takes the submissions and cancellations off the lists and acts on them. */
static void weft_curl__take(weft_curl *c)
{
    pthread_mutex_lock(&c->lock);
    weft_curl_req *sub = c->sub_head, *can = c->cancels;
    c->sub_head = c->sub_tail = NULL;
    c->cancels = NULL;
    for (weft_curl_req *r = sub; r; r = r->next)
        atomic_store(&r->state, WC_ACTIVE);
    atomic_store(&c->pending, 0);
    pthread_mutex_unlock(&c->lock);
    while (sub) {
        weft_curl_req *r = sub;
        sub = r->next; /* r may be reused as soon as it is finished */
        CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
        if (mc != CURLM_OK) {
            snprintf(r->errbuf, sizeof r->errbuf, "curl_multi_add_handle: %s",
                     curl_multi_strerror(mc));
            weft_curl__finish(r, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT);
        } else {
            c->active++;
        }
    }
    while (can) {
        weft_curl_req *r = can;
        can = r->cnext;
        if (atomic_load(&r->state) == WC_ACTIVE) { /* not finished meanwhile */
            curl_multi_remove_handle(c->multi, r->easy);
            c->active--;
            snprintf(r->errbuf, sizeof r->errbuf, "cancelled");
            weft_curl__finish(r, CURLE_ABORTED_BY_CALLBACK);
        }
    }
}

static void *weft_curl__driver(void *arg)
{
    weft_curl *c = arg;
    struct epoll_event evs[64];
    int running = 0;
    for (;;) {
        if (atomic_load(&c->pending))
            weft_curl__take(c);
        if (atomic_load(&c->stopping) && c->active == 0 && !atomic_load(&c->pending))
            break;
        /* Wait for a socket, the timer or a new request. */
        int64_t ms = -1;
        if (c->deadline >= 0) {
            weft_time left = c->deadline - weft_now();
            ms = left <= 0 ? 0 : (left + 999999) / 1000000;
        }
        if (ms != 0) {
            atomic_store(&c->sleeping, 1);
            if (!atomic_load(&c->pending) && !atomic_load(&c->stopping)) {
                int rc = weft_wait_fd(c->epfd, WEFT_READ, ms);
                if (rc < 0 && rc != -ETIMEDOUT) {
                    /* -ENOMEM (no timer) or a runtime fault: remember it and
                     * go on polling rather than strand the fetchers. */
                    c->failed = rc;
                    weft_sleep_ms(1);
                }
            }
            atomic_store(&c->sleeping, 0);
        }
        int n = epoll_wait(c->epfd, evs, (int)(sizeof evs / sizeof evs[0]), 0);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == c->evfd) {
                uint64_t v;
                ssize_t k = read(c->evfd, &v, sizeof v);
                (void)k;
                continue;
            }
            unsigned char *st = weft_curl__fdstate(c, fd);
            if (st && *st != WC_WANTED) { /* kept, and the peer closed it (or stale) */
                epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
                *st = WC_NOT_IN_SET;
                continue;
            }
            uint32_t e = evs[i].events;
            int mask = 0;
            if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                mask |= CURL_CSELECT_IN;
            if (e & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
            if (e & EPOLLERR)
                mask |= CURL_CSELECT_ERR;
            curl_multi_socket_action(c->multi, fd, mask, &running);
        }
        if (c->deadline >= 0 && weft_now() >= c->deadline) {
            c->deadline = -1; /* curl sets the next one from inside the call */
            curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        /* Fetchers just woken on this worker submit their next requests
         * as soon as they run: let them run first, so the driver takes
         * those without a trip through the eventfd. */
        if (weft_curl__reap(c))
            weft_yield();
    }
    return NULL;
}

/* Wakes the driver if it sleeps (or is about to). */
static void weft_curl__wake(weft_curl *c)
{
    if (atomic_exchange(&c->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t k = write(c->evfd, &one, sizeof one);
        (void)k;
    }
}

/* ------------------------------------------------------------- client */

/* Frees c's resources; the driver is not running. */
static void weft_curl__destroy(weft_curl *c)
{
    while (c->free_slots) {
        weft_curl_req *r = c->free_slots;
        c->free_slots = r->next;
        if (r->easy && r->own_easy)
            curl_easy_cleanup(r->easy);
        weft_event_free(r->done);
        free(r);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi); /* closes the kept-alive connections */
    free(c->fds);
    if (c->evfd >= 0)
        close(c->evfd);
    if (c->epfd >= 0)
        weft_close(c->epfd); /* weft waited on it */
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* A client on the calling task's runtime (o may be NULL). Task only (or
 * call weft_curl_new_on from a plain thread). NULL on failure. */
WEFT_CURL_FN weft_curl *weft_curl_new_on(weft_runtime *rt, const weft_curl_opts *o)
{
    if (!rt || weft_curl_global_init() != CURLE_OK)
        return NULL;
    weft_curl *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->deadline = -1;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->multi = curl_multi_init();
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = c->evfd;
    if (c->epfd < 0 || c->evfd < 0 || !c->multi ||
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0) {
        weft_curl__destroy(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, weft_curl__on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, weft_curl__on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* curl's default cache size is 4 per easy handle in the multi at the
     * moment a connection is returned; here transfers leave the multi and
     * their fetchers come back a moment later, so it would shrink with the
     * momentary count and close connections that are about to be reused. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, o && o->max_conns > 0 ? o->max_conns : 64L);
    weft_spawn_opts so = {.name = "weft_curl driver", .stack_size = o ? o->stack_size : 0};
    c->driver = weft_spawn_on_ex(rt, weft_curl__driver, c, &so);
    if (!c->driver) {
        weft_curl__destroy(c);
        return NULL;
    }
    return c;
}

WEFT_CURL_FN weft_curl *weft_curl_new(const weft_curl_opts *o)
{
    return weft_curl_new_on(weft_current_runtime(), o);
}

/* Stops the driver (after the transfers in progress, which a caller should
 * not have: free a client once its fetches have returned), closes the
 * kept-alive connections and frees c. From a task it suspends; from a plain
 * thread it blocks. NULL: no-op. */
WEFT_CURL_FN void weft_curl_free(weft_curl *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, 1);
    atomic_store(&c->sleeping, 1); /* write the eventfd whatever its state */
    weft_curl__wake(c);
    weft_join(c->driver, NULL);
    weft_curl__destroy(c);
}

/* ------------------------------------------------------------- fetching */

static weft_curl_req *weft_curl__slot(weft_curl *c)
{
    pthread_mutex_lock(&c->lock);
    weft_curl_req *r = c->free_slots;
    if (r)
        c->free_slots = r->next;
    pthread_mutex_unlock(&c->lock);
    if (r)
        return r;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->done = weft_event_new();
    if (!r->done) {
        free(r);
        return NULL;
    }
    return r;
}

static void weft_curl__unslot(weft_curl *c, weft_curl_req *r)
{
    pthread_mutex_lock(&c->lock);
    r->next = c->free_slots;
    c->free_slots = r;
    pthread_mutex_unlock(&c->lock);
}

/* Runs r's transfer through the driver and waits for it. */
static CURLcode weft_curl__run(weft_curl *c, weft_curl_req *r)
{
    r->errbuf[0] = '\0';
    r->result = CURLE_OK;
    weft_event_clear(r->done);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    pthread_mutex_lock(&c->lock);
    atomic_store(&r->state, WC_QUEUED);
    r->next = NULL;
    if (c->sub_tail)
        c->sub_tail->next = r;
    else
        c->sub_head = r;
    c->sub_tail = r;
    atomic_store(&c->pending, 1);
    pthread_mutex_unlock(&c->lock);
    weft_curl__wake(c);

    int rc = weft_event_wait(r->done, -1);
    if (rc == 0)
        return r->result;
    /* Cancelled (or the wait failed): withdraw the request. */
    pthread_mutex_lock(&c->lock);
    if (atomic_load(&r->state) == WC_QUEUED) {
        weft_curl_req **pp = &c->sub_head, *prev = NULL;
        while (*pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = r->next;
        if (c->sub_tail == r)
            c->sub_tail = prev;
        atomic_store(&r->state, WC_IDLE);
        pthread_mutex_unlock(&c->lock);
        snprintf(r->errbuf, sizeof r->errbuf, "cancelled");
        return CURLE_ABORTED_BY_CALLBACK;
    }
    r->cnext = c->cancels;
    c->cancels = r;
    atomic_store(&c->pending, 1);
    pthread_mutex_unlock(&c->lock);
    weft_curl__wake(c);
    weft_shield_begin();
    weft_event_wait(r->done, -1); /* the driver finishes it either way */
    weft_shield_end();
    return r->result;
}

/* Performs a prepared easy handle (URL, callbacks and options set by the
 * caller) and waits for it; only the calling task waits. The handle must
 * not be in use elsewhere. It gets CURLOPT_PRIVATE (restored afterwards),
 * CURLOPT_ERRORBUFFER (err, which may be NULL; at least CURL_ERROR_SIZE
 * bytes) and CURLOPT_NOSIGNAL. The caller's callbacks run on the driver
 * task, possibly on another worker thread than the caller's, while the
 * caller waits: they must not suspend. Returns curl's result. */
WEFT_CURL_FN CURLcode weft_curl_perform(weft_curl *c, CURL *easy, char *err)
{
    if (err)
        err[0] = '\0';
    weft_curl_req *r = weft_curl__slot(c);
    if (!r)
        return CURLE_OUT_OF_MEMORY;
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    CURL *kept = r->easy; /* the slot's own recycled handle, if any */
    int kept_own = r->own_easy;
    r->easy = easy;
    r->own_easy = 0;
    CURLcode rc = weft_curl__run(c, r);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, priv);
    if (err)
        memcpy(err, r->errbuf, CURL_ERROR_SIZE);
    r->easy = kept;
    r->own_easy = kept_own;
    weft_curl__unslot(c, r);
    return rc;
}

static size_t weft_curl__append(char *p, size_t size, size_t n, void *ud)
{
    weft_curl_resp *resp = ud;
    size_t k = size * n;
    if (resp->len + k + 1 > resp->cap) {
        size_t cap = resp->cap ? resp->cap : 256;
        while (cap < resp->len + k + 1)
            cap *= 2;
        char *b = realloc(resp->body, cap);
        if (!b)
            return 0; /* curl reports CURLE_WRITE_ERROR */
        resp->body = b;
        resp->cap = cap;
    }
    memcpy(resp->body + resp->len, p, k);
    resp->len += k;
    resp->body[resp->len] = '\0';
    return k;
}

/* GET url with a timeout for the whole transfer (timeout_ms, 0 or less:
 * none), collecting the body in *resp (its previous content is replaced).
 * Uses one of the client's recycled easy handles, so its connection is
 * kept alive for later fetches of the client. Returns curl's result;
 * resp->error holds curl's message on failure. */
WEFT_CURL_FN CURLcode weft_curl_get(weft_curl *c, const char *url, long timeout_ms,
                                    weft_curl_resp *resp)
{
    resp->status = 0;
    resp->len = 0;
    resp->total_s = 0;
    resp->new_conns = 0;
    resp->error[0] = '\0';
    if (resp->body)
        resp->body[0] = '\0';
    weft_curl_req *r = weft_curl__slot(c);
    if (!r)
        return CURLE_OUT_OF_MEMORY;
    if (!r->easy) {
        r->easy = curl_easy_init();
        r->own_easy = 1;
        if (!r->easy) {
            weft_curl__unslot(c, r);
            return CURLE_OUT_OF_MEMORY;
        }
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, weft_curl__append);
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, resp);
    CURLcode rc = weft_curl__run(c, r);
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &resp->total_s);
    curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &resp->new_conns);
    if (rc != CURLE_OK)
        snprintf(resp->error, sizeof resp->error, "%s",
                 r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, NULL);
    weft_curl__unslot(c, r);
    return rc;
}

WEFT_CURL_FN void weft_curl_resp_free(weft_curl_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = resp->cap = 0;
}

#endif
