# weft's gdb extension: the tasks of a live process or a core file.
#
#   (gdb) source tools/weft-gdb.py
#   (gdb) weft tasks            every live task of every runtime: id, name,
#                               function, state, what it waits on
#   (gdb) weft bt ID|NAME       the backtrace of one suspended task
#
# It reads libweft's own structures through the debug information (libweft
# is built with -g): the runtimes in `weft__runtimes` (runtime/dump.c), their
# control-block chunks, and each task's state word and saved context
# (runtime/task.h, runtime/task_state.h, runtime/switch_x86_64.S). A task's
# stack is not a thread's, so `weft bt` makes gdb unwind it with a Python
# unwinder: for the innermost frame of the selected thread it says that the
# caller's registers are the ones the task's switch saved; gdb's own DWARF
# unwinder does the rest, and frames above the first are the task's. Only
# x86-64 so far (the saved frame's layout is the switch's).
import gdb

try:
    from gdb.unwinder import Unwinder, register_unwinder
except ImportError:  # a gdb without Python unwinders: `weft tasks` still works
    Unwinder = object
    register_unwinder = None

T_RUNNING, T_PARKED, T_QUEUED, T_NOTIFIED = 0, 1, 2, 3
STATES = {T_RUNNING: "running", T_PARKED: "waiting", T_QUEUED: "queued", T_NOTIFIED: "running (woken)"}
# runtime/internal.h's WEFT__WAIT_* order.
WAITS = ["other", "fd", "sleep", "join", "channel send", "channel receive", "select", "mutex",
         "condition", "semaphore", "event", "wait group", "once", "group", "blocking job", "signal"]
TASK_CHUNK = 64
MAX_RTS = 64


def _u64(v):
    return int(v) & 0xFFFFFFFFFFFFFFFF


def _runtimes():
    try:
        arr = gdb.parse_and_eval("weft__runtimes")
    except gdb.error:
        raise gdb.GdbError("weft: no weft__runtimes here (not a weft program, or no debug information)")
    for i in range(MAX_RTS):
        rt = arr[i]
        if _u64(rt) != 0:
            yield rt


def _tasks(rt):
    c = rt["chunks"]
    while _u64(c) != 0:
        for i in range(TASK_CHUNK):
            t = c["tasks"][i]
            if int(t["live"]) != 0:
                yield t
        c = c["next"]


def _name(t):
    p = t["name"]
    if _u64(p) == 0:
        return ""
    try:  # the name is a heap copy of at most 31 bytes (task.c)
        raw = bytes(gdb.selected_inferior().read_memory(_u64(p), 32))
    except gdb.error:
        return ""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _fn(t):
    addr = _u64(t["fn"])
    b = gdb.block_for_pc(addr)
    if b is not None and b.function is not None:
        return b.function.print_name
    sym = gdb.execute("info symbol %#x" % addr, to_string=True).split(" in ")[0].strip()
    return sym if sym and not sym.startswith("No symbol") else "%#x" % addr


def _state(t):
    s = _u64(t["state"])
    st, seq = s & 3, s >> 2
    text = STATES.get(st, "?")
    if st == T_PARKED:
        note = _u64(t["obs"]["wait"])
        kind = note & 0xFF
        if (note >> 16) == (seq & ((1 << 48) - 1)) and 0 < kind < len(WAITS):
            obj = _u64(t["obs"]["wait_obj"])
            what = WAITS[kind]
            if what == "fd":
                text = "waiting on fd %d" % obj
            elif what == "join":
                text = "joining task %d" % obj
            elif what == "sleep":
                text = "sleeping"
            else:
                text = "waiting on %s %#x" % (what, obj)
    elif st in (T_RUNNING, T_NOTIFIED):
        w = t["worker"]
        if _u64(w):
            text += " on worker %d" % int(w["index"])
    return st, text


class _TaskUnwinder(Unwinder):
    """Gives the innermost frame of the selected thread the saved task
    context as its caller, while `weft bt` prints; otherwise does nothing."""

    def __init__(self):
        super().__init__("weft-task")
        self.regs = None

    def __call__(self, pending):
        if self.regs is None or pending.level() != 0:
            return None

        class FrameId(object):
            def __init__(self, sp, pc):
                self.sp = sp
                self.pc = pc

        info = pending.create_unwind_info(FrameId(pending.read_register("rsp"), pending.read_register("rip")))
        for reg, val in self.regs.items():
            info.add_saved_register(reg, val)
        return info


_unwinder = _TaskUnwinder()
if register_unwinder is not None:
    register_unwinder(None, _unwinder, replace=True)


def _saved_regs(t):
    """The registers the task resumes with (switch_x86_64.S's frame)."""
    sp = _u64(t["ctx"]["sp"])
    u64p = gdb.lookup_type("unsigned long").pointer()
    f = gdb.Value(sp).cast(u64p)
    rtype = gdb.lookup_type("long")
    regs = {"rip": f[7], "rsp": gdb.Value(sp + 64), "rbp": f[6], "rbx": f[5],
            "r12": f[4], "r13": f[3], "r14": f[2], "r15": f[1]}
    return {k: gdb.Value(_u64(v)).cast(rtype) for k, v in regs.items()}


class WeftCommand(gdb.Command):
    """weft tasks | weft bt ID|NAME: the tasks of weft runtimes."""

    def __init__(self):
        super().__init__("weft", gdb.COMMAND_USER, gdb.COMPLETE_NONE, True)


class WeftTasks(gdb.Command):
    """Lists every live task of every weft runtime."""

    def __init__(self):
        super().__init__("weft tasks", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        n = 0
        for rt in _runtimes():
            print("runtime %d (%d workers)" % (int(rt["id"]), int(rt["nworkers"])))
            for t in _tasks(rt):
                st, text = _state(t)
                name = _name(t)
                print("  task %d%s: %s: %s" % (_u64(t["id"]), ' "%s"' % name if name else "", _fn(t), text))
                n += 1
        print("weft: %d tasks" % n)


class WeftBt(gdb.Command):
    """Prints the backtrace of one suspended task: weft bt ID or weft bt NAME."""

    def __init__(self):
        super().__init__("weft bt", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        key = arg.strip()
        if not key:
            raise gdb.GdbError("usage: weft bt ID|NAME")
        found = None
        for rt in _runtimes():
            for t in _tasks(rt):
                if str(_u64(t["id"])) == key or _name(t) == key:
                    found = t
                    break
            if found is not None:
                break
        if found is None:
            raise gdb.GdbError("weft: no live task %s" % key)
        st, text = _state(found)
        print("task %d%s: %s: %s" % (_u64(found["id"]), ' "%s"' % _name(found) if _name(found) else "",
                                     _fn(found), text))
        if st in (T_RUNNING, T_NOTIFIED):
            print("  (running: its frames are on its worker's thread; see `thread apply all bt`)")
            return
        if _u64(found["stack"]) == 0:
            print("  (not started yet, or its stack is lent to a metrics probe: no frames)")
            return
        if register_unwinder is None:
            raise gdb.GdbError("weft: this gdb has no Python unwinders (gdb.unwinder)")
        _unwinder.regs = _saved_regs(found)
        gdb.invalidate_cached_frames()
        try:
            f = gdb.newest_frame().older()
            i = 0
            while f is not None and i < 64:
                sal = f.find_sal()
                where = ""
                if sal.symtab is not None:
                    where = " at %s:%d" % (sal.symtab.filename, sal.line)
                print("  #%-2d %#018x in %s%s" % (i, f.pc(), f.name() or "??", where))
                f = f.older()
                i += 1
        finally:
            _unwinder.regs = None
            gdb.invalidate_cached_frames()


WeftCommand()
WeftTasks()
WeftBt()
