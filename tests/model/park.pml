/*
 * The park/unpark protocol of runtime/idle.c, as the workers in
 * runtime/sched.c and the producers in runtime/ready.c drive it.
 * Checked by tests/model/run.sh; the mapping to the code is in
 * tests/model/README.md, and each step below names the line it models.
 *
 * Configuration (cpp): NW workers (1..3), NPROD tasks spawned from a thread
 * outside the runtime (weft_spawn from a foreign thread: the global queue),
 * NINSIDE tasks spawned by a running task (its worker's local queue),
 * NSPUR spurious returns from the sleeping poll (a timer or the worker's own
 * I/O: idle_leave's "still sleeping" branch).
 *
 * Property (the monitor): never are all workers asleep in poll(-1) with
 * their eventfds unset, the producer finished, and a task still queued.
 * Plus spin's own deadlock check (no invalid end state) and the
 * WEFT__ASSERTs of idle.c.
 *
 * Mutants (each must fail; run.sh checks):
 *  MUT_LAST_ONLY        only the last searcher rechecks (before 4d952f9)
 *  MUT_NO_RECHECK       nobody rechecks after joining the sleepers
 *  MUT_NO_ENTER_FENCE   no weft__fence() before idle_enter's recheck
 *  MUT_RELAXED_PUBLISH + MUT_NO_NOTIFY_FENCE: the global queue's bit set
 *                       with a release RMW and no fence in notify_parked
 *  MUT_SANITY           asserts that all tasks never all run (must fail:
 *                       shows the model reaches the end)
 */
#ifndef NW
#define NW 2
#endif
#ifndef NPROD
#define NPROD 1
#endif
#ifndef NINSIDE
#define NINSIDE 1
#endif
#ifndef NSPUR
#define NSPUR 0
#endif

#define NT (NW + 1) /* workers 0..NW-1, the producer NW */

/* Locations of the atomics (mem.pml) */
#define L_IDLE 0      /* rt->idle: unparked << 32 | searching */
#define L_NONEMPTY 1  /* rt->inject.nonempty (one shard) */
#define L_IDLELOCK 2  /* rt->idle_lock */
#define L_SHARDLOCK 3 /* rt->inject.shards[0].lock */
#define L_HEAD(w) (4 + 3 * (w)) /* workers[w]->lq.head (its `real`; ring.pml checks the steal/real pair) */
#define L_TAIL(w) (5 + 3 * (w)) /* workers[w]->lq.tail */
#define L_WAKEP(w) (6 + 3 * (w)) /* workers[w]->poller.wake_pending */
#define NLOC (4 + 3 * NW)

#include "mem.pml"

/* rt->idle's two halves; IDLE_ONE_UNPARKED is 1 << 32 in scheduler.h. */
#define ONE_UNPARKED 16
#define SEARCHING(s) ((s) % 16)
#define UNPARKED(s) ((s) / 16)

/* Under rt->idle_lock */
byte sleepers[NW];
byte nsleepers;
bit sleeping[NW];
bit woken[NW]; /* woken_to_search */
/* Under the shard lock: the global queue's length */
byte injq;
/* The eventfd counter (the kernel's, behind write/read/epoll_wait) */
bit evfd[NW];
/* Model bookkeeping */
bit inpoll[NW];
bit pdone;
byte ran;
byte inside;
byte spur;

#if NW == 1
#define LQ_SUM (mem[L_TAIL(0)] - mem[L_HEAD(0)])
#define ASLEEP (inpoll[0] && !evfd[0])
#define DRAINED_ALL ALL_DRAINED_2
#elif NW == 2
#define LQ_SUM (mem[L_TAIL(0)] - mem[L_HEAD(0)] + mem[L_TAIL(1)] - mem[L_HEAD(1)])
#define ASLEEP (inpoll[0] && !evfd[0] && inpoll[1] && !evfd[1])
#define DRAINED_ALL ALL_DRAINED_3
#else
#define LQ_SUM (mem[L_TAIL(0)] - mem[L_HEAD(0)] + mem[L_TAIL(1)] - mem[L_HEAD(1)] + mem[L_TAIL(2)] - mem[L_HEAD(2)])
#define ASLEEP (inpoll[0] && !evfd[0] && inpoll[1] && !evfd[1] && inpoll[2] && !evfd[2])
#define DRAINED_ALL ALL_DRAINED_4
#endif

/* poller_epoll.c weft__poller_wake: exchange(wake_pending, 1, acq_rel);
 * if it was 0, write(evfd) (a system call: the kernel's locks drain the
 * store buffer). */
inline POLLER_WAKE(me, v, old)
{
    RMW(me, L_WAKEP(v), old, 1, REL);
    if
    :: old == 0 -> FENCE(me); evfd[v] = 1
    :: else
    fi
}

/* poller_epoll.c poll_epoll, the EVFD_DATA branch: read(evfd), then
 * exchange(wake_pending, 0, acq_rel). */
inline POLLER_CONSUME(me, old)
{
    evfd[me] = 0;
    FENCE(me);
    RMW(me, L_WAKEP(me), old, 0, REL)
}

/* idle.c weft__notify_parked */
inline NOTIFY_PARKED(me, s, v, old)
{
#ifndef MUT_NO_NOTIFY_FENCE
    FENCE(me); /* idle.c:79 weft__fence() */
#endif
    LOAD_SC(me, L_IDLE, s); /* idle.c:80 */
    if
    :: SEARCHING(s) != 0 || UNPARKED(s) >= NW -> skip /* idle.c:81-82 */
    :: else ->
        LOCK(me, L_IDLELOCK); /* idle.c:83 */
        LOAD_SC(me, L_IDLE, s); /* idle.c:84 */
        if
        :: SEARCHING(s) != 0 || UNPARKED(s) >= NW || nsleepers == 0 -> /* idle.c:85-88 */
            UNLOCK(me, L_IDLELOCK)
        :: else ->
            d_step { /* idle.c:89-92 */
                nsleepers--;
                v = sleepers[nsleepers];
                sleepers[nsleepers] = 0;
                assert(sleeping[v]);
                sleeping[v] = 0;
                woken[v] = 1
            }
            RMW(me, L_IDLE, s, s + ONE_UNPARKED + 1, SC); /* idle.c:93 */
            assert(UNPARKED(LATEST(me, L_IDLE)) + nsleepers == NW); /* idle.c:95 */
            UNLOCK(me, L_IDLELOCK); /* idle.c:97 */
            POLLER_WAKE(me, v, old); /* idle.c:98 */
            v = 0
        fi
    fi;
    s = 0; old = 0
}

/* queue.c inject_push_batch + ready.c weft__schedule's !w branch */
inline SPAWN_OUTSIDE(me, s, v, old)
{
    LOCK(me, L_SHARDLOCK); /* queue.c:122 */
    injq++; /* queue.c:123-128 */
#ifdef MUT_RELAXED_PUBLISH
    RMW(me, L_NONEMPTY, old, 1, REL);
#else
    RMW(me, L_NONEMPTY, old, 1, SC); /* queue.c:133 atomic_fetch_or, seq_cst */
#endif
    UNLOCK(me, L_SHARDLOCK); /* queue.c:134 */
    NOTIFY_PARKED(me, s, v, old) /* ready.c:43 */
}

/* sched.c global_take / global_pop_one via queue.c weft__inject_pop (one
 * task: the rest of a batch would go to the local queue, which the owner
 * then pops like any other local task). */
inline GLOBAL_TAKE(me, got, s, ok)
{
    LOAD(me, L_NONEMPTY, s); /* sched.c:89 inject_empty, queue.c:148 (acquire) */
    if
    :: s != 0 ->
        TRYLOCK(me, L_SHARDLOCK, ok); /* queue.c:156 */
        if
        :: ok ->
            if
            :: injq > 0 -> injq--; got = 1 /* queue.c:158-168 */
            :: else
            fi;
            if
            :: injq == 0 -> RMW(me, L_NONEMPTY, s, 0, SC) /* queue.c:170-172 fetch_and */
            :: else
            fi;
            UNLOCK(me, L_SHARDLOCK) /* queue.c:174 */
        :: else /* someone else is there */
        fi
    :: else
    fi;
    s = 0; ok = 0
}

/* queue.h weft__lq_pop (owner): a CAS on head from real to real + 1. */
inline POP_OWN(me, got, h, tl, ok)
{
    LOAD(me, L_HEAD(me), h); /* queue.h:125 (acquire) */
    do
    :: LOAD(me, L_TAIL(me), tl); /* queue.h:128 */
        if
        :: h == tl -> break /* queue.h:129-130 */
        :: else
        fi;
        CAS(me, L_HEAD(me), h, h + 1, REL, ok); /* queue.h:133 acq_rel */
        if
        :: ok -> got = 1; break
        :: else
        fi
    od;
    h = 0; tl = 0; ok = 0
}

/* queue.c weft__lq_steal from victim v: one task (half of 1 or 2, rounded up). */
inline STEAL_FROM(me, v, got, h, tl, ok)
{
    LOAD(me, L_HEAD(v), h); /* queue.c:45 (acquire) */
    do
    :: LOAD(me, L_TAIL(v), tl); /* queue.c:52 (acquire) */
        if
        :: h == tl -> break /* queue.c:55-56 n == 0 */
        :: else
        fi;
        CAS(me, L_HEAD(v), h, h + 1, REL, ok); /* queue.c:60 acq_rel */
        if
        :: ok -> got = 1; break
        :: else
        fi
    od;
    h = 0; tl = 0; ok = 0
}

/* sched.c steal_work's loop over the peers (the start is random there: all
 * orders are covered here by the interleavings only for NW <= 2, where
 * there is one peer). */
inline STEAL_ALL(me, got, h, tl, ok)
{
    pv = 0;
    do
    :: pv < NW && !got ->
        if
        :: pv != me -> STEAL_FROM(me, pv, got, h, tl, ok)
        :: else
        fi;
        pv++
    :: else -> break
    od;
    pv = 0
}

/* idle.c weft__to_searching */
inline TO_SEARCHING(me, ok, s)
{
    if
    :: srch -> ok = 1 /* idle.c:109-110 */
    :: else ->
        LOAD_SC(me, L_IDLE, s); /* idle.c:112 */
        if
        :: 2 * SEARCHING(s) >= NW -> ok = 0 /* idle.c:113-114 */
        :: else ->
            RMW(me, L_IDLE, s, s + 1, SC); /* idle.c:115 */
            srch = 1;
            ok = 1
        fi
    fi;
    s = 0
}

/* idle.c weft__from_searching */
inline FROM_SEARCHING(me, s, v, old)
{
    if
    :: srch ->
        srch = 0; /* idle.c:126 */
        RMW(me, L_IDLE, s, s - 1, SC); /* idle.c:127 */
        assert(SEARCHING(s) >= 1); /* idle.c:128 */
        if
        :: SEARCHING(s) == 1 -> NOTIFY_PARKED(me, s, v, old) /* idle.c:129-130 */
        :: else
        fi
    :: else
    fi;
    s = 0
}

/* idle.c work_anywhere: the global queue's bits, then every local queue
 * (weft__lq_len: head, then tail, both acquire). */
inline WORK_ANYWHERE(me, found, s, h, tl)
{
    LOAD(me, L_NONEMPTY, s); /* idle.c:135 */
    found = (s != 0);
    wv = 0;
    do
    :: wv < NW && !found ->
        LOAD(me, L_HEAD(wv), h); /* idle.c:137-138, queue.c:31 */
        LOAD(me, L_TAIL(wv), tl); /* queue.c:32 */
        found = (h != tl);
        wv++
    :: else -> break
    od;
    wv = 0; s = 0; h = 0; tl = 0
}

/* Running a task: ran++; the first NINSIDE tasks run spawn a task from
 * inside (ready.c weft__schedule's last lines: push_local, which is
 * queue.h weft__lq_push's slot store and release store of tail, then
 * scheduler.h notify_parked_local_unless_polling, with w->polling 0: a
 * running task, not the worker's own poll). The LIFO slot is left out: a task in it
 * is run by the same worker next, with no wake to lose; this is the case
 * where the slot was taken and its previous occupant moves to the queue. */
inline RUN_TASK(me, s, v, old, tl)
{
    ran++;
    if
    :: inside < NINSIDE ->
        inside++;
        LOAD(me, L_TAIL(me), tl); /* queue.h:103 */
        STORE(me, L_TAIL(me), tl + 1, REL); /* queue.h:106 (the slot store before it is ring.pml's) */
        LOAD(me, L_IDLE, s); /* scheduler.h:80 notify_parked_local_unless_polling, relaxed */
        if
        :: SEARCHING(s) != 0 || UNPARKED(s) >= NW -> skip /* scheduler.h:81-82 */
        :: else -> NOTIFY_PARKED(me, s, v, old) /* scheduler.h:83 */
        fi
    :: else
    fi;
    tl = 0; s = 0
}

/* sched.c park: idle.c weft__idle_enter, the sleeping poll, weft__idle_leave */
inline PARK(me, s, v, old, h, tl, last, nobody, found)
{
    /* idle_enter */
    LOCK(me, L_IDLELOCK); /* idle.c:152 */
    last = 0;
    if
    :: srch ->
        RMW(me, L_IDLE, s, s - 1, SC); /* idle.c:155 */
        assert(SEARCHING(s) >= 1); /* idle.c:156 */
        last = (SEARCHING(s) == 1); /* idle.c:157 */
        srch = 0 /* idle.c:158 */
    :: else
    fi;
    assert(!sleeping[me] && nsleepers < NW); /* idle.c:160 */
    RMW(me, L_IDLE, s, s - ONE_UNPARKED, SC); /* idle.c:161 */
    d_step {
        sleepers[nsleepers] = me; /* idle.c:162 */
        nsleepers++;
        assert(UNPARKED(LATEST(me, L_IDLE)) + nsleepers == NW); /* idle.c:163-164 */
        sleeping[me] = 1; /* idle.c:165 */
        woken[me] = 0
    }
    LOAD_SC(me, L_IDLE, s); /* idle.c:173-174 */
    nobody = (SEARCHING(s) == 0);
    UNLOCK(me, L_IDLELOCK); /* idle.c:175 */
#ifdef MUT_LAST_ONLY
    nobody = 0;
#endif
#ifndef MUT_NO_RECHECK
    if
    :: last || nobody -> /* idle.c:177 */
#ifndef MUT_NO_ENTER_FENCE
        FENCE(me); /* idle.c:178 weft__fence() */
#endif
        WORK_ANYWHERE(me, found, s, h, tl); /* idle.c:179 */
        if
        :: found -> NOTIFY_PARKED(me, s, v, old) /* idle.c:180 */
        :: else
        fi
    :: else
    fi;
#endif
    last = 0; nobody = 0; found = 0;
    /* sched.c:407-442 park: the poll. The watcher's 10 ms timeout is left
     * out (it only adds wake-ups, and it is off once all workers sleep);
     * NSPUR covers returns for a timer or the worker's own I/O. */
    inpoll[me] = 1;
end_sleep:
    if
    :: evfd[me] -> inpoll[me] = 0; POLLER_CONSUME(me, old)
    :: spur < NSPUR -> spur++; inpoll[me] = 0
    fi;
    /* idle_leave (then sched.c:443 poll_backlog_wake, which only wakes a
     * peer for tasks this worker's own poll readied: no I/O here) */
    LOCK(me, L_IDLELOCK); /* idle.c:190 */
    if
    :: sleeping[me] -> /* idle.c:191-202: woken by our own I/O or a timer */
        d_step {
            i_ = 0;
            do
            :: i_ < nsleepers && sleepers[i_] != me -> i_++
            :: else -> break
            od;
            assert(i_ < nsleepers);
            nsleepers--;
            sleepers[i_] = sleepers[nsleepers];
            sleepers[nsleepers] = 0;
            i_ = 0;
            sleeping[me] = 0 /* idle.c:199 */
        }
        RMW(me, L_IDLE, s, s + ONE_UNPARKED, SC); /* idle.c:200 */
        assert(UNPARKED(LATEST(me, L_IDLE)) + nsleepers == NW) /* idle.c:201-202 */
    :: !sleeping[me] && woken[me] -> /* idle.c:203-205 */
        srch = 1;
        woken[me] = 0
    :: else
    fi;
    UNLOCK(me, L_IDLELOCK); /* idle.c:207 */
    s = 0
}

/* sched.c worker_loop (one search round: a round repeats the same looks,
 * and the work may arrive after any of them). */
proctype worker(byte me)
{
    short s, h, tl, old;
    byte v, pv, wv;
    bit got, ok, last, nobody, found;
    bit srch; /* w->searching, owned by the worker */
loop:
    got = 0;
    POP_OWN(me, got, h, tl, ok); /* sched.c:475 next_local -> sched.c:188 */
    if
    :: !got -> GLOBAL_TAKE(me, got, s, ok) /* sched.c:477 */
    :: else
    fi;
#if NW > 1
    if
    :: !got -> /* sched.c:479-485 */
        TO_SEARCHING(me, ok, s); /* sched.c:385 */
        if
        :: ok ->
            STEAL_ALL(me, got, h, tl, ok); /* sched.c:389-400 */
            if
            :: !got -> GLOBAL_TAKE(me, got, s, ok) /* sched.c:401 */
            :: else
            fi
        :: else
        fi
    :: else
    fi;
#endif
    if
    :: got -> /* sched.c:496-499 */
        FROM_SEARCHING(me, s, v, old);
        RUN_TASK(me, s, v, old, tl)
    :: else -> PARK(me, s, v, old, h, tl, last, nobody, found) /* sched.c:501 */
    fi;
    goto loop
}

proctype producer(byte me)
{
    short s, old;
    byte v;
    byte k = 0;
    do
    :: k < NPROD -> SPAWN_OUTSIDE(me, s, v, old); k++
    :: else -> break
    od;
    pdone = 1
}

/* The property. */
active proctype monitor()
{
end:
#ifdef MUT_SANITY
    atomic { ran == NPROD + NINSIDE && pdone && ASLEEP -> assert(false) }
#else
    atomic { pdone && DRAINED_ALL && ASLEEP && injq + LQ_SUM > 0 -> assert(false) }
#endif
}

init
{
    atomic {
        mem[L_IDLE] = NW * ONE_UNPARKED; /* runtime.c:91 all unparked, none searching */
        byte t = 0;
        do
        :: t < NW -> run worker(t); t++
        :: else -> break
        od;
        run producer(NW);
        t = 0;
        do
        :: t < NT -> run drainer(t); t++
        :: else -> break
        od
    }
}
