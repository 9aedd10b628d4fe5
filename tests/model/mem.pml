/*
 * A memory model for the Promela models of weft's protocols: per-thread
 * store buffers. Included by park.pml and ring.pml, which define NT (threads)
 * and NLOC (shared atomic locations) first.
 *
 * Only the atomics the protocols race on go through it (mem[], by location
 * number). Data that the code only touches under a mutex, or that one thread
 * owns, are plain Promela variables: the program is data-race-free on them,
 * so they behave sequentially consistently.
 *
 * Two models, chosen at compile time:
 *
 *  X86 defined: x86-64 (TSO), the instructions GCC emits. Every store goes
 *   into the thread's FIFO store buffer and reaches memory later (a drainer
 *   process per thread); a load reads the thread's own newest buffered store
 *   to that location, else memory. A locked instruction (every RMW, a CAS,
 *   mutex lock and glibc's unlock, which is an xchg) and mfence
 *   (atomic_thread_fence seq_cst) first wait for the buffer to drain. The one
 *   relaxation is store->load reordering.
 *
 *  Otherwise: the C11 orderings written in the code, as a store-buffer
 *   approximation (weaker than TSO, so anything that passes it passes TSO):
 *   - an RMW (CAS, fetch_op, mutex lock) reads the newest value and puts its
 *     write in the buffer too; until that write drains, no other thread may
 *     RMW the location (atomicity), but plain loads elsewhere still read the
 *     old value. This is how a seq_cst RMW followed by a non-seq_cst load of
 *     another location can still show the store-buffering outcome, which
 *     C11 allows (POWER and ARMv8 with RCpc acquires do it);
 *   - a seq_cst load waits until the thread has no buffered seq_cst write
 *     to another location (seq_cst store->seq_cst load order, the S order);
 *     its own location it reads from the buffer, and it orders nothing else:
 *     C11 does not make a seq_cst RMW and a seq_cst load of the same word a
 *     fence for later non-seq_cst loads (real machines do: an LDAR or a
 *     POWER hwsync would wait). Other loads never wait;
 *   - atomic_thread_fence(seq_cst) waits for the whole buffer to drain;
 *   - a relaxed store may leave the buffer before older stores to other
 *     locations (store->store reordering), unless an older entry is an RMW;
 *     release stores, RMWs and seq_cst stores leave only when oldest;
 *   - mutex unlock is a release store.
 *   Not modelled: load->load and load->store reordering (acquire loads are
 *   modelled as plain loads, so a missing acquire is not caught), and
 *   non-multi-copy-atomic visibility (each write reaches all other threads
 *   at once).
 *
 * A plain store to a location on which another thread has a buffered RMW
 * leaves the buffer only after that RMW (else the RMW would not be atomic:
 * the store would fall between its read and its write). Two threads that
 * each held an RMW behind a plain store to the other's location would wait
 * for each other here, which real machines don't; the models issue their
 * only such mix with an empty buffer before the RMW, so it cannot happen,
 * except in a mutant that removes a fence. (wake_pending was one, with the
 * poller's plain clear, until that clear became an exchange on 2026-12-04.)
 */
#ifndef MEMT
#define MEMT short /* a location's value */
#endif
#define SBN 4 /* entries per store buffer; LATEST below is written for 4 */

#define RLX 0 /* relaxed store */
#define REL 1 /* release store, release or acq_rel RMW */
#define SC 2  /* seq_cst store or RMW */

typedef sbuf {
    byte n;        /* entries in use, oldest first */
    byte nsc;      /* of which seq_cst */
    byte loc[SBN];
    MEMT val[SBN];
    byte ord[SBN];
    bit rmw[SBN];
};

sbuf sb[NT];
MEMT mem[NLOC];
byte resv[NLOC];    /* buffered RMW writes to the location ... */
byte resv_by[NLOC]; /* ... all by this thread */

hidden byte i_;
hidden MEMT v_;

#define SBHAS(t, i, l) (sb[t].n > i && sb[t].loc[i] == l)
/* The value thread t reads at location l: its newest buffered write, else memory. */
#define LATEST(t, l) (SBHAS(t, 3, l) -> sb[t].val[3] : (SBHAS(t, 2, l) -> sb[t].val[2] : \
                     (SBHAS(t, 1, l) -> sb[t].val[1] : (SBHAS(t, 0, l) -> sb[t].val[0] : mem[l]))))
/* t has a buffered seq_cst write to a location other than l. */
#define SCO(t, i, l) (sb[t].n > i && sb[t].ord[i] == SC && sb[t].loc[i] != l)
#define SC_ELSEWHERE(t, l) (SCO(t, 0, l) || SCO(t, 1, l) || SCO(t, 2, l) || SCO(t, 3, l))
#define FREE_FOR(t, l) (resv[l] == 0 || resv_by[l] == t)

#ifdef X86
#define DRAINED(t) (sb[t].n == 0)
#else
#define DRAINED(t) true
#endif

/* Appends (l, v_, o) to t's buffer (inside a d_step). */
#define SB_APPEND(t, l, o, isrmw)          \
    sb[t].loc[sb[t].n] = l;                \
    sb[t].val[sb[t].n] = v_;               \
    sb[t].ord[sb[t].n] = o;                \
    sb[t].rmw[sb[t].n] = isrmw;            \
    if                                     \
    :: o == SC -> sb[t].nsc++              \
    :: else                                \
    fi;                                    \
    sb[t].n++

/* An RMW's write of v_ (inside a d_step): to memory on x86 (a locked
 * instruction, the buffer already drained), else into the buffer, holding
 * the location against other RMWs until it drains. */
#ifdef X86
#define RMW_WRITE(t, l, o) mem[l] = v_
#else
#define RMW_WRITE(t, l, o) SB_APPEND(t, l, o, 1); resv[l]++; resv_by[l] = t
#endif

inline LOAD(t, l, dst)
{
    dst = LATEST(t, l)
}

/* A seq_cst load. */
inline LOAD_SC(t, l, dst)
{
#ifdef X86
    dst = LATEST(t, l)
#else
    d_step { !SC_ELSEWHERE(t, l) -> dst = LATEST(t, l) }
#endif
}

inline STORE(t, l, v, o)
{
    d_step {
        sb[t].n < SBN;
        v_ = v;
#ifdef X86
        if
        :: o == SC -> /* xchg */
            assert(sb[t].n == 0); mem[l] = v_
        :: else -> SB_APPEND(t, l, o, 0)
        fi;
#else
        SB_APPEND(t, l, o, 0);
#endif
        v_ = 0
    }
}

/* old = *l; *l = newv (newv may use old). */
inline RMW(t, l, old, newv, o)
{
    d_step {
        DRAINED(t) && sb[t].n < SBN && FREE_FOR(t, l);
        old = LATEST(t, l);
        v_ = newv;
        RMW_WRITE(t, l, o);
        v_ = 0
    }
}

/* Compare-exchange: on success *l = desired, ok = 1; else expect = *l, ok = 0. */
inline CAS(t, l, expect, desired, o, ok)
{
    d_step {
        DRAINED(t) && sb[t].n < SBN && FREE_FOR(t, l);
        if
        :: LATEST(t, l) == expect ->
            v_ = desired;
            RMW_WRITE(t, l, o);
            ok = 1
        :: else ->
            expect = LATEST(t, l);
            ok = 0
        fi;
        v_ = 0
    }
}

/* atomic_thread_fence(memory_order_seq_cst): mfence. */
inline FENCE(t)
{
    sb[t].n == 0
}

/* pthread_mutex_lock / trylock / unlock, the lock word at location l
 * (0 = free, t + 1 = held by t). In the C11 model the lock's write goes to
 * memory at once, ahead of older buffered stores: an acquire lets older
 * stores sink into the critical section, and nothing reads the word but
 * another lock, which waits either way. Its unlock is a buffered release
 * store, so the next holder sees the critical section's stores. */
#define OWN_PENDING(t, l) (SBHAS(t, 0, l) || SBHAS(t, 1, l) || SBHAS(t, 2, l) || SBHAS(t, 3, l))
inline LOCK(t, l)
{
    d_step { DRAINED(t) && mem[l] == 0 && !OWN_PENDING(t, l) -> mem[l] = t + 1 }
}

inline TRYLOCK(t, l, ok)
{
    d_step {
        DRAINED(t);
        if
        :: mem[l] == 0 && !OWN_PENDING(t, l) -> mem[l] = t + 1; ok = 1
        :: else -> ok = 0
        fi
    }
}

inline UNLOCK(t, l)
{
    assert(LATEST(t, l) == t + 1);
#ifdef X86
    d_step { sb[t].n == 0 -> mem[l] = 0 } /* glibc: xchg */
#else
    STORE(t, l, 0, REL)
#endif
}

/* Moves entry k of t's buffer to memory (inside a d_step). */
#define SB_DRAIN(t, k)                                            \
    mem[sb[t].loc[k]] = sb[t].val[k];                              \
    if                                                             \
    :: sb[t].rmw[k] ->                                             \
        resv[sb[t].loc[k]]--;                                      \
        if                                                         \
        :: resv[sb[t].loc[k]] == 0 -> resv_by[sb[t].loc[k]] = 0    \
        :: else                                                    \
        fi                                                         \
    :: else                                                        \
    fi;                                                            \
    if                                                             \
    :: sb[t].ord[k] == SC -> sb[t].nsc--                           \
    :: else                                                        \
    fi;                                                            \
    i_ = k;                                                        \
    do                                                             \
    :: i_ + 1 < sb[t].n ->                                         \
        sb[t].loc[i_] = sb[t].loc[i_ + 1];                         \
        sb[t].val[i_] = sb[t].val[i_ + 1];                         \
        sb[t].ord[i_] = sb[t].ord[i_ + 1];                         \
        sb[t].rmw[i_] = sb[t].rmw[i_ + 1];                         \
        i_++                                                       \
    :: else -> break                                               \
    od;                                                            \
    sb[t].n--;                                                     \
    sb[t].loc[sb[t].n] = 0;                                        \
    sb[t].val[sb[t].n] = 0;                                        \
    sb[t].ord[sb[t].n] = 0;                                        \
    sb[t].rmw[sb[t].n] = 0;                                        \
    i_ = 0

/* Entry k may reach memory: no other thread holds an RMW on its location. */
#define MAY_LEAVE(t, k) FREE_FOR(t, sb[t].loc[k])
/* Entry i is older than k and does not stop k from overtaking it. */
#define PASSABLE(t, i, k) (sb[t].loc[i] != sb[t].loc[k] && !sb[t].rmw[i])
#define OVERTAKES(t, k) (sb[t].n > k && sb[t].ord[k] == RLX && !sb[t].rmw[k])

/* The memory system: moves t's buffered stores to memory, one at a time. */
proctype drainer(byte t)
{
end:
    do
    :: d_step { sb[t].n > 0 && MAY_LEAVE(t, 0) -> SB_DRAIN(t, 0) }
#ifndef X86
    :: d_step { OVERTAKES(t, 1) && MAY_LEAVE(t, 1) && PASSABLE(t, 0, 1) -> SB_DRAIN(t, 1) }
    :: d_step { OVERTAKES(t, 2) && MAY_LEAVE(t, 2) && PASSABLE(t, 0, 2) && PASSABLE(t, 1, 2) -> SB_DRAIN(t, 2) }
    :: d_step { OVERTAKES(t, 3) && MAY_LEAVE(t, 3) && PASSABLE(t, 0, 3) && PASSABLE(t, 1, 3) && PASSABLE(t, 2, 3) ->
                SB_DRAIN(t, 3) }
#endif
    od
}

#define ALL_DRAINED_2 (sb[0].n == 0 && sb[1].n == 0)
#define ALL_DRAINED_3 (ALL_DRAINED_2 && sb[2].n == 0)
#define ALL_DRAINED_4 (ALL_DRAINED_3 && sb[3].n == 0)
