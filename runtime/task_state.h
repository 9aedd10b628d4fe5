/*
 * The task state word.
 *
 * State word (`state`): seq << 2 | st.
 *   st RUNNING   the task runs (or is between running and parking)
 *      PARKED    suspended, registered wherever it waits; not queued
 *      QUEUED    in a run queue (or about to be)
 *      NOTIFIED  woken while RUNNING; the scheduler requeues it after the
 *                switch instead of parking it
 *   seq counts waits. A task starts a wait with weft__wait_prepare, which
 *   bumps seq and returns it as the token; wakers pass the token back, and a
 *   wake whose token is not the current seq is stale and does nothing.
 */
#ifndef WEFT_TASK_STATE_H
#define WEFT_TASK_STATE_H

#include <stdatomic.h>
#include <stdint.h>

#include "task.h"

enum { T_RUNNING = 0, T_PARKED = 1, T_QUEUED = 2, T_NOTIFIED = 3 };
#define T_ST(s) ((unsigned)((s) & 3u))
#define T_SEQ(s) ((s) >> 2)
#define T_MAKE(seq, st) (((uint64_t)(seq) << 2) | (st))

#endif
