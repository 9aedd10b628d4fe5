/*
 * Timing wheel: see timer.h.
 *
 * An entry lives at the level where its deadline first differs from the
 * wheel's current time (6 bits per level), in the slot those bits name. When
 * the wheel reaches a slot of a higher level, the entries in it are
 * re-inserted and cascade down to the level that now fits them; at level 0
 * they fire. Because lower levels hold entries that share every higher digit
 * with the current time, the earliest pending deadline is always in the lowest
 * occupied level.
 */
#include "timer.h"
#include "alloc.h"

static unsigned level_for(uint64_t elapsed, uint64_t when)
{
    uint64_t masked = (elapsed ^ when) | (WEFT_WHEEL_SLOTS - 1);
    unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
    unsigned level = significant / 6;
    return level < WEFT_WHEEL_LEVELS ? level : WEFT_WHEEL_LEVELS - 1;
}

static unsigned slot_for(uint64_t when, unsigned level)
{
    return (unsigned)(when >> (level * 6)) & (WEFT_WHEEL_SLOTS - 1);
}

static void link_entry(weft__wheel *w, weft__timer *t)
{
    uint64_t when = t->deadline < w->elapsed ? w->elapsed : t->deadline;
    unsigned lvl = level_for(w->elapsed, when);
    unsigned s = slot_for(when, lvl);
    t->prev = NULL;
    t->next = w->slots[lvl][s];
    if (t->next)
        t->next->prev = t;
    w->slots[lvl][s] = t;
    w->occupied[lvl] |= (uint64_t)1 << s;
    t->linked = 1;
    t->lvl = (uint8_t)lvl;
    t->slot = (uint8_t)s;
}

static void unlink_entry(weft__wheel *w, weft__timer *t)
{
    if (!t->linked)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else {
        w->slots[t->lvl][t->slot] = t->next;
        if (!t->next)
            w->occupied[t->lvl] &= ~((uint64_t)1 << t->slot);
    }
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
    t->linked = 0;
}

static void entry_free(weft__wheel *w, weft__timer *t)
{
    /* Bump the generation so refs to this life of the entry go stale. */
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    atomic_store_explicit(&t->state, ((s >> 2) + 1) << 2 | TIMER_FIRED, memory_order_release);
    t->next = w->free;
    w->free = t;
}

void weft__wheel_init(weft__wheel *w, uint64_t now_tick)
{
    memset(w, 0, sizeof *w);
    w->elapsed = now_tick;
    atomic_init(&w->cancels, NULL);
}

static void drain_cancels(weft__wheel *w)
{
    weft__timer *t = atomic_exchange_explicit(&w->cancels, NULL, memory_order_acquire);
    while (t) {
        weft__timer *next = t->cancel_next;
        unlink_entry(w, t);
        w->count--;
        entry_free(w, t);
        t = next;
    }
}

void weft__wheel_destroy(weft__wheel *w)
{
    drain_cancels(w);
    for (unsigned l = 0; l < WEFT_WHEEL_LEVELS; l++)
        for (unsigned s = 0; s < WEFT_WHEEL_SLOTS; s++) {
            weft__timer *t = w->slots[l][s];
            while (t) {
                weft__timer *n = t->next;
                weft__free(t);
                t = n;
            }
        }
    while (w->free) {
        weft__timer *n = w->free->next;
        weft__free(w->free);
        w->free = n;
    }
    /* Entries cancelled remotely after the last drain are on neither list;
     * drain_cancels above freed them into w->free. */
    memset(w, 0, sizeof *w);
}

int weft__timer_add(weft__wheel *w, uint64_t deadline, struct weft_task *task, uint64_t token,
                    weft__timer_ref *ref)
{
    weft__timer *t = w->free;
    if (t) {
        w->free = t->next;
    } else if (!(t = weft__malloc(sizeof *t))) {
        ref->t = NULL;
        return -1;
    } else {
        atomic_init(&t->state, 0);
        t->linked = 0;
        /* Set once: entries are recycled only within their own wheel, so a
         * late canceller on another thread can read owner without a race. */
        t->owner = w;
    }
    t->deadline = deadline;
    t->task = task;
    t->token = token;
    t->cancel_next = NULL;
    uint64_t gen = atomic_load_explicit(&t->state, memory_order_relaxed) >> 2;
    atomic_store_explicit(&t->state, gen << 2 | TIMER_ARMED, memory_order_release);
    link_entry(w, t);
    w->count++;
    ref->t = t;
    ref->gen = gen;
    return 0;
}

void weft__timer_cancel(weft__timer_ref ref, int on_owner)
{
    weft__timer *t = ref.t;
    if (!t)
        return;
    uint64_t armed = ref.gen << 2 | TIMER_ARMED;
    weft__wheel *w = t->owner;
    if (on_owner) {
        /* Expiry runs under the same serialization as this call (see
         * timer.h): armed now means still linked. */
        if (atomic_load_explicit(&t->state, memory_order_relaxed) != armed)
            return;
        unlink_entry(w, t);
        w->count--;
        entry_free(w, t);
        return;
    }
    if (!atomic_compare_exchange_strong_explicit(&t->state, &armed, ref.gen << 2 | TIMER_CANCELLED,
                                                 memory_order_acq_rel, memory_order_acquire))
        return; /* fired (and maybe reused) already */
    /* Release: the owner's acquire exchange in drain_cancels sees our link. */
    weft__timer *head = atomic_load_explicit(&w->cancels, memory_order_relaxed);
    do {
        t->cancel_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&w->cancels, &head, t, memory_order_release,
                                                    memory_order_relaxed));
}

/* Next occupied slot of one level at or after the wheel's position, as the
 * tick at which that slot starts; WEFT_NO_DEADLINE if the level is empty. */
static uint64_t level_next(const weft__wheel *w, unsigned lvl, unsigned *slot_out)
{
    uint64_t occ = w->occupied[lvl];
    if (!occ)
        return WEFT_NO_DEADLINE;
    uint64_t slot_range = (uint64_t)1 << (lvl * 6);
    uint64_t level_range = slot_range << 6;
    unsigned now_slot = (unsigned)(w->elapsed / slot_range) & 63;
    uint64_t rot = (occ >> now_slot) | (now_slot ? occ << (64 - now_slot) : 0);
    unsigned zeros = (unsigned)__builtin_ctzll(rot);
    unsigned slot = (zeros + now_slot) & 63;
    uint64_t level_start = w->elapsed & ~(level_range - 1);
    uint64_t deadline = level_start + slot * slot_range;
    if (deadline + slot_range <= w->elapsed)
        deadline += level_range; /* the slot is in the next turn of this level */
    *slot_out = slot;
    return deadline;
}

uint64_t weft__wheel_next(weft__wheel *w)
{
    if (atomic_load_explicit(&w->cancels, memory_order_relaxed))
        drain_cancels(w);
    for (unsigned l = 0; l < WEFT_WHEEL_LEVELS; l++) {
        unsigned s;
        uint64_t d = level_next(w, l, &s);
        if (d != WEFT_NO_DEADLINE) {
            if (l == 0)
                return d;
            /* A higher-level slot starts at d, but its entries may be later:
             * the earliest of them is what a sleeper must wake for. */
            uint64_t best = WEFT_NO_DEADLINE;
            for (weft__timer *t = w->slots[l][s]; t; t = t->next)
                if (t->deadline < best)
                    best = t->deadline;
            return best < d ? d : best;
        }
    }
    return WEFT_NO_DEADLINE;
}

unsigned weft__wheel_poll(weft__wheel *w, uint64_t now, unsigned max, weft__timer_fire_fn fire,
                          void *ctx)
{
    unsigned fired = 0;
    if (max == 0)
        return 0;
    if (atomic_load_explicit(&w->cancels, memory_order_relaxed))
        drain_cancels(w);
    for (;;) {
        unsigned lvl, slot = 0;
        uint64_t d = WEFT_NO_DEADLINE;
        for (lvl = 0; lvl < WEFT_WHEEL_LEVELS; lvl++) {
            d = level_next(w, lvl, &slot);
            if (d != WEFT_NO_DEADLINE)
                break;
        }
        if (d == WEFT_NO_DEADLINE || d > now) {
            if (now > w->elapsed)
                w->elapsed = now;
            return fired;
        }
        if (d > w->elapsed)
            w->elapsed = d;
        weft__timer *list = w->slots[lvl][slot];
        w->slots[lvl][slot] = NULL;
        w->occupied[lvl] &= ~((uint64_t)1 << slot);
        while (list) {
            weft__timer *t = list;
            list = t->next;
            t->next = t->prev = NULL;
            t->linked = 0;
            if (fired == max) {
                /* Enough for now: the rest stay due, at the front of the
                 * wheel, and fire first at the next poll. */
                link_entry(w, t);
                continue;
            }
            if (t->deadline <= w->elapsed || lvl == 0) {
                uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
                uint64_t armed = (s >> 2) << 2 | TIMER_ARMED;
                if (atomic_compare_exchange_strong_explicit(&t->state, &armed,
                                                            (s >> 2) << 2 | TIMER_FIRED,
                                                            memory_order_acq_rel,
                                                            memory_order_acquire)) {
                    w->count--;
                    struct weft_task *task = t->task;
                    uint64_t token = t->token;
                    entry_free(w, t);
                    fire(task, token, ctx);
                    fired++;
                }
                /* else cancelled remotely: the cancel stack frees it */
            } else {
                link_entry(w, t);
            }
        }
        if (fired == max)
            return fired;
    }
}
