/*
 * The local run queue of runtime/queue.h and queue.c: the owner's push
 * (with the spill of half a full ring to the global queue) and pop against
 * thieves' steals. Checked by tests/model/run.sh; the mapping to the code is
 * in tests/model/README.md, and each step names the line it models.
 *
 * Configuration (cpp): SIZE slots (WEFT_LQ_SIZE, 256 in the code: only
 * "full", "half" and the index arithmetic matter, so 4 here), NTASK tasks
 * pushed by the owner, which pops whenever it likes in between and pops the
 * ring empty at the end; NTHIEF thieves (1 or 2) with NSTEAL steals each.
 *
 * Property: every task is taken exactly once, by a pop, a steal or a spill
 * to the global queue: a taker never reads a slot that holds no task or a
 * task already taken (asserted where it reads), and at the end every
 * pushed task was taken.
 *
 * A thief's destination queue is its own and nobody else's in the model:
 * the tasks it copies count as taken by it (queue.c's publication of them
 * in dst is the owner's push again).
 *
 * Mutants (each must fail; run.sh checks):
 *  MUT_TAIL_RELAXED     the owner publishes tail with a relaxed store
 *  MUT_FREE_FROM_REAL   the owner counts free slots from real, not steal
 *  MUT_HANDBACK_FIRST   the thief hands the slots back before copying them
 *  MUT_POP_DROPS_STEAL  the owner's pop moves steal up with real while a
 *                       thief copies
 *  MUT_NO_THIEF_CHECK   a second thief starts while one copies (NTHIEF=2)
 *  MUT_SANITY           asserts that a spill never happens (must fail)
 */
#ifndef SIZE
#define SIZE 4
#endif
#define HALF (SIZE / 2)
#ifndef NTASK
#define NTASK 6
#endif
#ifndef NTHIEF
#define NTHIEF 1
#endif
#ifndef NSTEAL
#define NSTEAL 1
#endif

#define NT (1 + NTHIEF) /* the owner 0, thieves 1.. */
#define L_HEAD 0        /* lq.head: steal << 32 | real */
#define L_TAIL 1        /* lq.tail */
#define L_BUF(i) (2 + (i))
#define NLOC (2 + SIZE)

#include "mem.pml"

/* weft__lq_pack and friends, with 6-bit indices (they never wrap here) */
#define PACK(st, re) ((st) * 64 + (re))
#define STEAL_OF(h) ((h) / 64)
#define REAL_OF(h) ((h) % 64)

byte taken[NTASK + 1];
byte pushed;
byte finished;
bit spilled;

inline TAKE(x)
{
    d_step {
        assert(x >= 1 && x <= pushed); /* a slot the owner wrote */
        assert(taken[x] == 0); /* not taken before */
        taken[x] = 1
    }
}

/* queue.h:104: room counted from steal (the slots a thief copies stay its own) */
#ifdef MUT_FREE_FROM_REAL
#define FREE_SLOT (tl - re < SIZE)
#else
#define FREE_SLOT (tl - st < SIZE)
#endif

/* The slot of index i. */
#define SLOT(i) L_BUF((i) % SIZE)

/* queue.h weft__lq_push(q, t) */
inline PUSH(tk, h, st, re, tl, ok, x, i)
{
    do
    :: LOAD(0, L_HEAD, h); /* queue.h:101 (acquire) */
        st = STEAL_OF(h);
        re = REAL_OF(h);
        LOAD(0, L_TAIL, tl); /* queue.h:103 */
        if
        :: FREE_SLOT -> /* queue.h:104 */
            STORE(0, SLOT(tl), tk, RLX); /* queue.h:105 */
#ifdef MUT_TAIL_RELAXED
            STORE(0, L_TAIL, tl + 1, RLX);
#else
            STORE(0, L_TAIL, tl + 1, REL); /* queue.h:106 */
#endif
            break
        :: !FREE_SLOT && st != re -> /* queue.h:109-116: a thief at work: t alone to the global queue */
            TAKE(tk);
            spilled = 1;
            break
        :: else -> /* queue.h:117 weft__lq_push_overflow(q, t, real) */
            h = PACK(re, re);
            CAS(0, L_HEAD, h, PACK(re + HALF, re + HALF), REL, ok); /* queue.h:73 (release) */
            if
            :: ok ->
                i = 0;
                do /* queue.h:78-86: the oldest half, read after the claim */
                :: i < HALF -> LOAD(0, SLOT(re + i), x); TAKE(x); i++
                :: else -> break
                od;
                TAKE(tk); /* queue.h:87-91 */
                spilled = 1;
                break
            :: else /* a thief moved the head: retry the push */
            fi
        fi
    od;
    h = 0; st = 0; re = 0; tl = 0; ok = 0; x = 0; i = 0
}

/* queue.h weft__lq_pop; got = 1 with x the task, or got = 0 (empty). */
inline POP(got, x, h, st, re, tl, ok)
{
    got = 0;
    LOAD(0, L_HEAD, h); /* queue.h:125 (acquire) */
    do
    :: st = STEAL_OF(h);
        re = REAL_OF(h);
        LOAD(0, L_TAIL, tl); /* queue.h:128 */
        if
        :: re == tl -> break /* queue.h:129-130 */
        :: else
        fi;
#ifdef MUT_POP_DROPS_STEAL
        CAS(0, L_HEAD, h, PACK(re + 1, re + 1), REL, ok);
#else
        if /* queue.h:131-132 */
        :: st == re -> CAS(0, L_HEAD, h, PACK(re + 1, re + 1), REL, ok)
        :: else -> CAS(0, L_HEAD, h, PACK(st, re + 1), REL, ok)
        fi; /* queue.h:133 (acq_rel; a failure reloads h) */
#endif
        if
        :: ok ->
            LOAD(0, SLOT(re), x); /* queue.h:135 */
            TAKE(x);
            got = 1;
            break
        :: else
        fi
    od;
    h = 0; st = 0; re = 0; tl = 0; ok = 0; x = 0
}

proctype owner()
{
    short h, st, re, tl, x, i, tk;
    bit ok, got;
    do
    :: pushed < NTASK ->
        d_step { pushed++; tk = pushed }
        PUSH(tk, h, st, re, tl, ok, x, i);
        tk = 0
    :: POP(got, x, h, st, re, tl, ok)
    :: pushed == NTASK -> break
    od;
    do /* the ring empty at the end */
    :: POP(got, x, h, st, re, tl, ok);
        if
        :: !got -> break
        :: else
        fi
    od;
    finished++
}

/* queue.c:64-68: thief me copies (takes) slots re .. re + n - 1 */
inline COPY(me, re, n, x, i)
{
    i = 0;
    do
    :: i < n -> LOAD(me, SLOT(re + i), x); TAKE(x); i++
    :: else -> break
    od
}

/* queue.c weft__lq_steal, as thief me (its dst abstracted: see the top) */
proctype thief(byte me)
{
    short prev, st, re, tl, n, x, i;
    bit ok;
    byte k = 0;
    do
    :: k < NSTEAL ->
        k++;
        LOAD(me, L_HEAD, prev); /* queue.c:45 (acquire) */
        do
        :: st = STEAL_OF(prev);
            re = REAL_OF(prev);
#ifndef MUT_NO_THIEF_CHECK
            if
            :: st != re -> n = 0; break /* queue.c:50-51: another thief at work */
            :: else
            fi;
#endif
            LOAD(me, L_TAIL, tl); /* queue.c:52 (acquire) */
            n = tl - re; /* queue.c:53-58 */
            n = n - n / 2;
            if
            :: n == 0 -> break
            :: n > HALF -> n = HALF
            :: else
            fi;
            CAS(me, L_HEAD, prev, PACK(st, re + n), REL, ok); /* queue.c:59-61 (acq_rel) */
            if
            :: ok -> break
            :: else
            fi
        od;
        if
        :: n > 0 ->
#ifndef MUT_HANDBACK_FIRST
            COPY(me, re, n, x, i); /* queue.c:64-68: copy the claimed slots */
#endif
            LOAD(me, L_HEAD, prev); /* queue.c:71 */
            do /* queue.c:72-76: steal catches up with real */
            :: CAS(me, L_HEAD, prev, PACK(REAL_OF(prev), REAL_OF(prev)), REL, ok);
                if
                :: ok -> break
                :: else
                fi
            od;
#ifdef MUT_HANDBACK_FIRST
            COPY(me, re, n, x, i);
#endif
            skip
        :: else
        fi;
        prev = 0; st = 0; re = 0; tl = 0; n = 0; x = 0; i = 0; ok = 0
    :: else -> break
    od;
    finished++
}

active proctype monitor()
{
    byte j;
#ifdef MUT_SANITY
    spilled -> assert(false);
#endif
#if NT == 2
    finished == NT && ALL_DRAINED_2;
#else
    finished == NT && ALL_DRAINED_3;
#endif
    j = 1;
    do
    :: j <= NTASK -> assert(taken[j] == 1); j++
    :: else -> break
    od
}

init
{
    atomic {
        run owner();
        byte t = 1;
        do
        :: t <= NTHIEF -> run thief(t); t++
        :: else -> break
        od;
        t = 0;
        do
        :: t < NT -> run drainer(t); t++
        :: else -> break
        od
    }
}
