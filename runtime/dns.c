/*
 * Name resolution. weft_resolve runs getaddrinfo on the blocking pool (it
 * blocks on files, NSS modules and resolver round trips), except for a
 * numeric host with a numeric or no service, which is converted inline
 * without the pool; EAI_* codes are mapped to negative errno values, and a
 * caller cancelled while the lookup ran gets -ECANCELED (the answer is freed).
 *
 * It knows nothing of sockets: weft_tcp_connect_host (net.c) resolves with
 * weft_resolve and connects to each address.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wait.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int map_eai(int eai, int saved_errno)
{
    switch (eai) {
    case 0:
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_BADFLAGS:
        return -EINVAL;
    case EAI_FAMILY:
        return -EAFNOSUPPORT;
    case EAI_SOCKTYPE:
        return -ESOCKTNOSUPPORT;
    case EAI_SERVICE:
        return -ESRCH;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return saved_errno > 0 ? -saved_errno : -EIO;
    case EAI_FAIL:
    default:
        return -EIO;
    }
}

typedef struct resolve_op {
    const char *host, *service;
    struct addrinfo hints;
    struct addrinfo *res;
    int rc;
} resolve_op;

static void *op_resolve(void *arg)
{
    resolve_op *o = arg;
    o->res = NULL;
    int eai = getaddrinfo(o->host, o->service, &o->hints, &o->res);
    o->rc = map_eai(eai, eai == EAI_SYSTEM ? errno : 0);
    if (o->rc < 0)
        o->res = NULL;
    return NULL;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int weft_resolve(const char *host, const char *service, int family, int socktype,
                 struct addrinfo **out)
{
    if (out)
        *out = NULL;
    if (!out || (!host && !service))
        return -EINVAL;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return -EINVAL;
    if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
        return -EINVAL;
    resolve_op o;
    memset(&o, 0, sizeof o);
    o.host = host;
    o.service = service;
    o.hints.ai_family = family;
    o.hints.ai_socktype = socktype;
    /* Numeric host and service: no lookup, so no trip to the pool. */
    if (host && (!service || all_digits(service))) {
        o.hints.ai_flags = AI_NUMERICHOST | (service ? AI_NUMERICSERV : 0);
        op_resolve(&o);
        if (o.rc == 0) {
            *out = o.res;
            return 0;
        }
        o.hints.ai_flags = 0;
    }
    int rc = weft__blocking_call(op_resolve, &o);
    if (rc < 0)
        return rc; /* cancelled before the lookup started */
    weft__task *self = weft__cur_task();
    if (o.rc == 0 && self && weft__cancel_pending(self)) {
        /* The lookup finished, but the caller was cancelled meanwhile: report
         * the cancellation, as other waits do, and free the answer. */
        freeaddrinfo(o.res);
        return -ECANCELED;
    }
    *out = o.res;
    return o.rc;
}

void weft_freeaddrinfo(struct addrinfo *ai)
{
    if (ai)
        freeaddrinfo(ai);
}
