/*
 * The constructors that report why they failed (weft.h's error rule):
 * weft_x_create(..., weft_x **out) returns 0 or a negative errno. They sit
 * above every layer (last in tests/arch/check_layers.sh) and wrap the
 * shorthand constructors, which return NULL and leave the reason in errno
 * inside the library; read at once, before anything could suspend, so it is
 * the calling thread's own. weft_task_spawn and the detached spawns
 * (weft_go, weft_go_on) are here too.
 */
#include "weft.h"

/* task.c (declared in internal.h, which this file does not include): the
 * spawns with the spawn site a dump shows passed in. */
weft_task *weft__spawn_at(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts, const void *site);

/* The reason a shorthand constructor gave, as -errno (ENOMEM if it gave none). */
static int fail_code(void)
{
    int e = errno;
    return e > 0 ? -e : -ENOMEM;
}

#define WEFT__CREATE(out, call)                                                                    \
    do {                                                                                           \
        if (!(out))                                                                                \
            return -EINVAL;                                                                        \
        errno = 0;                                                                                 \
        *(out) = (call);                                                                           \
        return *(out) ? 0 : fail_code();                                                           \
    } while (0)

WEFT_API int weft_runtime_create(const weft_config *cfg, weft_runtime **out)
{
    WEFT__CREATE(out, weft_runtime_new(cfg));
}

/* Each public spawn passes its own caller as the spawn site a dump shows. */
/* What the _create spawns share: the handle to *out, or released when out is
 * NULL (detached); 0, or the spawn's error. */
static inline int hand_out(weft_task *t, weft_task **out)
{
    if (out)
        *out = t;
    if (!t)
        return fail_code();
    if (!out)
        weft_detach(t);
    return 0;
}

static inline __attribute__((always_inline)) int task_spawn(weft_runtime *rt, weft_fn fn, void *arg,
                                                            const weft_spawn_opts *opts, weft_task **out,
                                                            const void *site)
{
    errno = 0;
    return hand_out(weft__spawn_at(rt, fn, arg, opts, site), out);
}

WEFT_API int weft_task_spawn(weft_runtime *rt, weft_fn fn, void *arg, const weft_spawn_opts *opts,
                             weft_task **out)
{
    return task_spawn(rt, fn, arg, opts, out, __builtin_return_address(0));
}

WEFT_API int weft_go(weft_fn fn, void *arg)
{
    return task_spawn(NULL, fn, arg, NULL, NULL, __builtin_return_address(0));
}

WEFT_API int weft_go_on(weft_runtime *rt, weft_fn fn, void *arg)
{
    if (!rt)
        return -EINVAL;
    return task_spawn(rt, fn, arg, NULL, NULL, __builtin_return_address(0));
}

static int spawn_pool(weft_runtime *rt, weft_fn fn, void *arg, weft_task **out, int compute)
{
    errno = 0;
    weft_task *t = compute ? (rt ? weft_spawn_compute_on(rt, fn, arg) : weft_spawn_compute(fn, arg))
                           : (rt ? weft_spawn_blocking_on(rt, fn, arg) : weft_spawn_blocking(fn, arg));
    return hand_out(t, out);
}

WEFT_API int weft_task_spawn_blocking(weft_runtime *rt, weft_fn fn, void *arg, weft_task **out)
{
    return spawn_pool(rt, fn, arg, out, 0);
}

WEFT_API int weft_task_spawn_compute(weft_runtime *rt, weft_fn fn, void *arg, weft_task **out)
{
    return spawn_pool(rt, fn, arg, out, 1);
}

WEFT_API int weft_mutex_create(weft_mutex **out) { WEFT__CREATE(out, weft_mutex_new()); }
WEFT_API int weft_cond_create(weft_cond **out) { WEFT__CREATE(out, weft_cond_new()); }
WEFT_API int weft_sem_create(int64_t initial, weft_sem **out) { WEFT__CREATE(out, weft_sem_new(initial)); }
WEFT_API int weft_event_create(weft_event **out) { WEFT__CREATE(out, weft_event_new()); }
WEFT_API int weft_wg_create(weft_wg **out) { WEFT__CREATE(out, weft_wg_new()); }
WEFT_API int weft_chan_create(size_t capacity, size_t elem_size, weft_chan **out)
{
    WEFT__CREATE(out, weft_chan_new(capacity, elem_size));
}
WEFT_API int weft_oneshot_create(size_t elem_size, weft_oneshot **out)
{
    WEFT__CREATE(out, weft_oneshot_new(elem_size));
}
WEFT_API int weft_group_create(int flags, weft_group **out) { WEFT__CREATE(out, weft_group_new(flags)); }
