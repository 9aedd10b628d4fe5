#!/usr/bin/env python3
"""Runs weft and its peer runtimes on the same workloads, interleaved (issue 19).

    python3 bench/peers/run.py [--quick] [--smoke] [--rounds N] [--workers N]
                               [--seconds S] [--only W1,W2] [--peers R1,R2]
                               [--build DIR] [--weft-build DIR]

`make bench-peers` (and `bench-peers-quick`) builds the peers first
(bench/peers/build.sh) and runs this. Workloads (--only names):

  tcp_echo    64-byte ping-pong from 100 connections, driven by
              build/bench/loadgen echo (as bench/net.c drives servers)
  http_hello  keep-alive "GET /" -> "Hello, World!" from 100 connections,
              driven by loadgen http and, when wrk is installed, by
              wrk -t1 -c100 (its figures are http_hello_wrk)
  timers      1,000,000 tasks, task i sleeping until its own start plus a
              uniform 0-100 ms: mean, p99, max lateness, wall time, early count
  pingpong    1,000 pairs over two capacity-1 channels, 1,000 round trips
              each: ns (and CPU ns) per round trip, at 1 and WORKERS workers

Runtimes (--peers names; WORKERS is --workers, default 2):

  weft_wN   the repo's own programs: build/examples/echo_server PORT N,
            http_server PORT N; build/bench/timers and the 1,000-pair
            ping-pong of build/bench/chan when those exist (else skipped with
            a message); weft_w1 runs too, for the issue's "2 workers never
            lose to 1"
  tokio_wN  build/peers/tokio/release/peer_tokio, multi-thread runtime with N
            workers (Debian's librust-tokio-dev)
  go_wN     build/peers/go/peer_go with GOMAXPROCS=N (Debian's golang-go)
  libuv     build/peers/libuv/peer_uv, one loop (echo, http and timers)

Every round runs each runtime once per workload, in an order that rotates
from round to round, so that the machine's load falls on all of them alike.
Each round prints, per runtime, `bench:` lines suffixed _rN, the machine's
load average before the run, and how busy the CPUs were with other processes
during it ("others"), then weft's ratio to each peer for that round; the
last lines are the medians over rounds, and all lines go to
bench/results/peers.csv. Ratios are weft / peer, as bench/net.c writes them:
for req/s above 1 is weft ahead, for latency, CPU and ns below 1 is. A _w1 peer
is compared with weft_w1, every other peer with weft_wWORKERS.

Servers: started on port 0, the port read from the "127.0.0.1:PORT" line they
print; loadgen (or wrk) runs for the duration; then the server is killed and
reaped with wait4, whose rusage gives its CPU time (all threads, start-up
included), as bench/net.c does; cpu_per_req is that over the requests served.

What the peers print (one line, key=value; peer_* timers and pingpong):
  NAME: timers n=N mean_us= p99_us= max_us= wall_ms= cpu_ms= early=
  NAME: pingpong pairs= rts= ns_per_rt= cpu_ns_per_rt= wall_ms=
weft's bench programs print `bench:` lines instead; WEFT_PATTERNS below maps
their names onto the same metrics.

--weft-build DIR takes weft's programs from another build (a branch's, a
merge's) while loadgen and the peers stay in --build's.

--quick: 1 s server runs, 2 rounds (sizes unchanged: the million timers and
the million round trips are the workloads). --smoke: tiny sizes and one round,
checking only that every runtime runs and answers correctly (exit 1 if not);
no ratios, since weft's bench programs run at their own --quick sizes.
"""

import argparse
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# weft's timers and channel benchmarks print `bench: NAME VALUE UNIT`
# (bench/timers.c, bench/chan.c's chan_pairs). A line is taken for a metric
# when its name matches the pattern, {w} being the worker count; the value is
# converted from the line's unit. Edit here if those programs rename a line.
WEFT_PATTERNS = {
    "timers": {
        "mean_us": r"^timers_late_mean$",
        "p99_us": r"^timers_late_p99$",
        "max_us": r"^timers_late_max$",
        "wall_ms": r"^timers_wall$",
        "early": r"^timers_early$",
    },
    # bench/chan's 1,000-pair capacity-1 workload, one row per worker count.
    "pingpong": {
        "ns_per_rt": r"^chan_pairs_weft_w{w}$",
        "cpu_ns_per_rt": r"^chan_pairs_weft_w{w}_cpu_per_rt$",
    },
}
# What bench/chan is asked for (--only takes a substring of a benchmark name).
WEFT_CHAN_ONLY = os.environ.get("WEFT_CHAN_ONLY", "pairs")

CONNS = 100
METRIC_UNITS = {
    "rps": "req/s", "p99_us": "us", "cpu_per_req_us": "us",
    "mean_us": "us", "max_us": "us", "wall_ms": "ms", "early": "tasks",
    "ns_per_rt": "ns", "cpu_ns_per_rt": "ns",
}
# The metrics a ratio is printed for, per workload.
RATIO_METRICS = {
    "tcp_echo": ["rps", "p99_us", "cpu_per_req_us"],
    "http_hello": ["rps", "p99_us", "cpu_per_req_us"],
    "http_hello_wrk": ["rps", "p99_us", "cpu_per_req_us"],
    "timers": ["mean_us", "p99_us", "max_us", "wall_ms"],
    "pingpong": ["ns_per_rt", "cpu_ns_per_rt"],
}

out_lines = []   # (name, value, unit) for peers.csv
failures = []


def emit(name, value, unit):
    print(f"bench: {name} {value:.6g} {unit}", flush=True)
    out_lines.append((name, value, unit))


def comment(msg):
    print(f"# {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    print(f"peers: FAILED: {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_jiffies():
    """(busy, steal, total) jiffies of all CPUs, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal, sum(v)


class Window:
    """How busy the machine was between its creation and others(), beside
    the CPU time of the run's own processes. "others" is an upper bound: the
    kernel's softirq work for the run's own loopback traffic may be counted
    as the machine's rather than the processes'."""

    def __init__(self):
        self.load = loadavg()
        self.j0 = cpu_jiffies()
        self.c0 = resource.getrusage(resource.RUSAGE_CHILDREN)

    def children_cpu(self):
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (c.ru_utime - self.c0.ru_utime) + (c.ru_stime - self.c0.ru_stime)

    def others(self, own_cpu_s):
        """Fills busy, own, others and steal: fractions of all CPUs' time."""
        (b0, s0, t0), (b1, s1, t1) = self.j0, cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        cap = max(t1 - t0, 1) / hz
        self.busy = (b1 - b0) / hz / cap
        self.own = min(own_cpu_s / cap, self.busy) if self.busy else own_cpu_s / cap
        self.steal = (s1 - s0) / hz / cap
        return max(0.0, self.busy - self.own)

    def describe(self):
        return (f"load {self.load:.2f}; CPUs {self.busy * 100:.0f}% busy, this run "
                f"{self.own * 100:.0f}%, others <= {max(0.0, self.busy - self.own) * 100:.0f}%, "
                f"steal {self.steal * 100:.0f}%")


# ------------------------------------------------------------ runtimes


class Rt:
    def __init__(self, name, workers, kind, path):
        self.name, self.workers, self.kind, self.path = name, workers, kind, path

    def available(self):
        if self.kind == "weft":  # its bench programs are looked for when they run
            return os.access(f"{self.path}/echo_server", os.X_OK)
        return os.access(self.path, os.X_OK)


def runtimes(build, w, weft_build):
    ex, pr = f"{weft_build}/examples", f"{build}/peers"
    rts = {}
    for n in sorted({w, 1}, reverse=True):
        rts[f"weft_w{n}"] = Rt(f"weft_w{n}", n, "weft", ex)
        rts[f"tokio_w{n}"] = Rt(f"tokio_w{n}", n, "tokio", f"{pr}/tokio/release/peer_tokio")
        rts[f"go_w{n}"] = Rt(f"go_w{n}", n, "go", f"{pr}/go/peer_go")
    rts["libuv"] = Rt("libuv", 1, "libuv", f"{pr}/libuv/peer_uv")
    return rts


def server_argv(rt, mode):
    """argv of rt's server for mode echo|http, or None where it has none."""
    if rt.kind == "weft":
        prog = "echo_server" if mode == "echo" else "http_server"
        return [f"{rt.path}/{prog}", "0", str(rt.workers)]
    if rt.kind == "libuv":
        return [rt.path, mode, "0"]
    return [rt.path, mode, "0", str(rt.workers)]


def rt_env(rt):
    env = dict(os.environ)
    if rt.kind == "go":
        env["GOMAXPROCS"] = str(rt.workers)
    return env


# ------------------------------------------------------------ processes


def read_port(p, timeout=10.0):
    """Reads p's stdout until a '127.0.0.1:PORT' line; the port or 0."""
    buf = b""
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        m = re.search(rb"127\.0\.0\.1:(\d+)\s*\n", buf)
        if m:
            return int(m.group(1))
    return 0


def kill_reap(p):
    """SIGKILLs p and reaps it with wait4: its CPU seconds (user + system)."""
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = -9  # reaped here; keeps Popen from waiting again
    if p.stdout:
        p.stdout.close()
    return ru.ru_utime + ru.ru_stime


def parse_loadgen(out):
    m = {
        "rps": re.search(r"requests/s: ([\d.]+)", out),
        "lat": re.search(r"latency_us: p50=([\d.]+) p99=([\d.]+) max=([\d.]+)", out),
        "n": re.search(r"total_requests: (\d+)", out),
        "err": re.search(r"errors: (\d+)", out),
    }
    if not all(m.values()):
        return None
    return {"rps": float(m["rps"].group(1)), "p99_us": float(m["lat"].group(2)),
            "requests": int(m["n"].group(1)), "errors": int(m["err"].group(1))}


def wrk_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[m.group(2)]


def parse_wrk(out):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    n = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and n):
        return None
    errors = 0
    for m in re.finditer(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": float(rps.group(1)), "p99_us": wrk_us(p99.group(1)),
            "requests": int(n.group(1)), "errors": errors}


def run_server(rt, mode, driver, args, build):
    """One server run under loadgen or wrk: metrics dict, or None."""
    argv = server_argv(rt, mode)
    win = Window()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, env=rt_env(rt))
    port = read_port(p)
    if port <= 0:
        kill_reap(p)
        fail(f"{rt.name} {mode}: no port reported by {argv[0]}")
        return None
    secs = args.seconds
    if driver == "wrk":
        cmd = [args.wrk, "-t1", f"-c{CONNS}", f"-d{max(1, round(secs))}s", "--latency",
               f"http://127.0.0.1:{port}/"]
    else:
        cmd = [f"{build}/bench/loadgen", mode, "127.0.0.1", str(port), str(CONNS), f"{secs:g}", "1"]
    try:
        lg = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
        out, st = lg.stdout, lg.returncode
    except subprocess.TimeoutExpired:
        out, st = "(timed out)", -1
    driver_cpu = win.children_cpu()
    server_cpu = kill_reap(p)
    res = (parse_wrk if driver == "wrk" else parse_loadgen)(out) if st == 0 else None
    if res is None or res["requests"] == 0:
        fail(f"{rt.name} {mode} ({driver}): status {st}: {out.strip()[-500:]}")
        return None
    if res["errors"]:
        fail(f"{rt.name} {mode} ({driver}): {res['errors']} errors")
    res["cpu_per_req_us"] = server_cpu * 1e6 / res["requests"]
    win.others(server_cpu + driver_cpu)
    res["_win"] = win
    return res


def run_kv(rt, argv, what):
    """Runs a peer's timers or pingpong: its key=value line as a dict."""
    win = Window()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=rt_env(rt))
    except subprocess.TimeoutExpired:
        fail(f"{rt.name} {what}: timed out")
        return None
    m = re.search(rf": {what} (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        fail(f"{rt.name} {what}: status {r.returncode}: {(r.stdout + r.stderr).strip()[-500:]}")
        return None
    res = {k: float(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split())}
    win.others(win.children_cpu())
    res["_win"] = win
    return res


UNIT_SCALE = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def weft_bench_lines(out):
    return [(m.group(1), float(m.group(2)), m.group(3))
            for m in re.finditer(r"^bench: (\S+) (\S+) (\S+)", out, re.M)]


def pick(lines, pattern, w):
    rx = re.compile(pattern.format(w=w))
    for name, value, unit in lines:
        if rx.search(name):
            return name, value, unit
    return None


def to_metric(metric, value, unit):
    """value in unit -> the metric's own unit (us, ms, ns or a count)."""
    if metric == "early":
        return value
    if unit not in UNIT_SCALE:
        return value
    us = value * UNIT_SCALE[unit]
    return {"_us": us, "_ms": us / 1e3}.get(metric[-3:], us * 1e3)


def run_weft_bench(prog, argv_tail, workload, ws, build):
    """Runs a weft bench program once; {worker count: metrics} or None."""
    path = f"{build}/bench/{prog}"
    if not os.access(path, os.X_OK):
        return None
    win = Window()
    try:
        r = subprocess.run([path] + argv_tail, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        fail(f"weft {workload}: {prog} timed out")
        return {}
    lines = weft_bench_lines(r.stdout)
    if r.returncode != 0:
        fail(f"weft {workload}: {prog} status {r.returncode}: {(r.stdout + r.stderr).strip()[-500:]}")
        return {}
    if not lines:  # the workload is not in this build of the program (yet)
        comment(f"weft {workload}: {prog} {' '.join(argv_tail)} printed no bench lines, skipped")
        return {}
    got = {}
    for w in ws:
        res = {}
        for metric, pat in WEFT_PATTERNS[workload].items():
            hit = pick(lines, pat, w)
            if hit:
                res[metric] = to_metric(metric, hit[1], hit[2])
        if res:
            win.others(win.children_cpu())
            res["_win"] = win
            got[w] = res
    if not got:
        comment(f"weft {workload}: none of {prog}'s bench lines match WEFT_PATTERNS in "
                f"bench/peers/run.py: {[n for n, _, _ in lines]}")
    return got


# ------------------------------------------------------------ workloads


def members(rts, names, want):
    names = list(dict.fromkeys(names))  # weft_w1 is weft_wN when N is 1
    return [rts[n] for n in names if n in rts and (not want or n in want)]


def workload_runs(workload, rts, args):
    """The (label, callable) runs of one workload in this round, in canonical order."""
    w = args.workers
    build = args.build
    wb = args.weft_build
    runs = []
    if workload in ("tcp_echo", "http_hello", "http_hello_wrk"):
        mode = "echo" if workload == "tcp_echo" else "http"
        driver = "wrk" if workload == "http_hello_wrk" else "loadgen"
        names = [f"weft_w{w}", "weft_w1", f"tokio_w{w}", f"go_w{w}", "libuv"]
        for rt in members(rts, names, args.peers):
            runs.append((rt.name, rt, lambda rt=rt: run_server(rt, mode, driver, args, build)))
    elif workload == "timers":
        n = args.timers
        for rt in members(rts, [f"weft_w{w}", f"tokio_w{w}", f"go_w{w}", "libuv"], args.peers):
            if rt.kind == "weft":
                tail = ["--workers", str(w), "--reps", "1"] + (["--quick"] if args.smoke else [])
                runs.append((rt.name, rt, lambda: run_weft_bench("timers", tail, "timers", [w], wb)))
            elif rt.kind == "libuv":
                runs.append((rt.name, rt, lambda rt=rt: run_kv(rt, [rt.path, "timers", str(n)], "timers")))
            else:
                runs.append((rt.name, rt, lambda rt=rt: run_kv(
                    rt, [rt.path, "timers", str(n), str(rt.workers)], "timers")))
    elif workload == "pingpong":
        ws = sorted({w, 1}, reverse=True)
        names = [f"weft_w{x}" for x in ws] + [f"{k}_w{x}" for k in ("tokio", "go") for x in ws]
        weft_done = False
        for rt in members(rts, names, args.peers):
            if rt.kind == "weft":
                if weft_done:
                    continue  # one bench/chan run gives every worker count
                weft_done = True
                tail = ["--only", WEFT_CHAN_ONLY, "--reps", "1", "--no-baseline", "--workers", str(w)]
                if args.smoke:
                    tail.append("--quick")
                runs.append(("weft", rt, lambda: run_weft_bench("chan", tail, "pingpong", ws, wb)))
            else:
                runs.append((rt.name, rt, lambda rt=rt: run_kv(
                    rt, [rt.path, "pingpong", str(args.pairs), str(args.rts), str(rt.workers)],
                    "pingpong")))
    return runs


def base_of(name, w):
    return "weft_w1" if name.endswith("_w1") else f"weft_w{w}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--only", help="comma-separated: tcp_echo,http_hello,timers,pingpong")
    ap.add_argument("--peers", help="comma-separated runtime names (weft_w2,tokio_w2,go_w2,libuv,...)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="where loadgen and the peers (DIR/peers) are")
    ap.add_argument("--weft-build", help="where weft's examples and bench programs are (--build)")
    ap.add_argument("--timers", type=int, help="task count (1000000)")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--rts", type=int, default=None)
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    args.build = os.path.abspath(args.build)
    args.weft_build = os.path.abspath(args.weft_build or args.build)
    args.rounds = args.rounds or (1 if args.smoke else 2 if args.quick else 3)
    args.seconds = args.seconds or (0.3 if args.smoke else 1.0 if args.quick else 3.0)
    args.timers = args.timers or (2000 if args.smoke else 1000000)
    args.pairs = args.pairs or (10 if args.smoke else 1000)
    args.rts = args.rts or (100 if args.smoke else 1000)
    args.peers = set(args.peers.split(",")) if args.peers else None
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    if not os.access(f"{args.build}/bench/loadgen", os.X_OK):
        sys.exit(f"peers: {args.build}/bench/loadgen not built (make)")
    args.wrk = shutil.which("wrk")
    rts = runtimes(args.build, args.workers, args.weft_build)
    workloads = ["tcp_echo", "http_hello"] + (["http_hello_wrk"] if args.wrk else []) + \
        ["timers", "pingpong"]
    if args.only:
        want = args.only.split(",")
        workloads = [x for x in workloads if x in want or x.rsplit("_wrk", 1)[0] in want]
    if not args.wrk:
        comment("wrk not installed (apt-get install wrk): http_hello runs under loadgen only")

    for name, rt in rts.items():
        if rt.kind != "weft" and not rt.available():
            comment(f"{name}: {rt.path} not built (sh bench/peers/build.sh), skipped")
    if not os.access(f"{args.weft_build}/examples/echo_server", os.X_OK):
        comment("weft: build/examples not built (make), weft servers skipped")
    for prog, wl in (("timers", "timers"), ("chan", "pingpong")):
        if wl in workloads and not os.access(f"{args.weft_build}/bench/{prog}", os.X_OK):
            comment(f"weft {wl}: {args.weft_build}/bench/{prog} not built, skipped")
    if args.peers and args.peers - set(rts):
        sys.exit(f"peers: unknown --peers {sorted(args.peers - set(rts))}; known: {sorted(rts)}")
    if not args.smoke and (args.timers, args.pairs, args.rts) != (1000000, 1000, 1000):
        comment("weft's bench/timers and chan_pairs run their own sizes (1,000,000 timers; "
                "1,000 pairs x 1,000): ratios against them compare different sizes")
    ncpu = len(os.sched_getaffinity(0))
    comment(f"peers: {ncpu} CPUs, workers {args.workers}, {args.rounds} rounds, servers {args.seconds:g} s "
            f"x {CONNS} connections, timers {args.timers}, pingpong {args.pairs} pairs x {args.rts}")

    results = {}  # (workload, runtime) -> [metrics per round]
    for r in range(1, args.rounds + 1):
        comment(f"round {r}: load average {loadavg():.2f}")
        emit(f"peers_load_r{r}", loadavg(), "load")
        round_res = {}
        for workload in workloads:
            runs = [x for x in workload_runs(workload, rts, args) if x[1].available()]
            if not runs:
                continue
            k = (r - 1) % len(runs)
            for label, rt, fn in runs[k:] + runs[:k]:  # rotate the order
                got = fn()
                if got is None:
                    continue
                # weft bench programs answer {workers: metrics}; a peer answers metrics
                per = {f"weft_w{x}": m for x, m in got.items()} if rt.kind == "weft" and \
                    workload in ("timers", "pingpong") else {label: got}
                for name, m in per.items():
                    round_res[(workload, name)] = m
                    results.setdefault((workload, name), []).append(m)
                    shown = [x for x in RATIO_METRICS[workload] + ["early"] if x in m]
                    for x in shown:
                        emit(f"peers_{workload}_{name}_{x}_r{r}", m[x], METRIC_UNITS[x])
                    comment(f"round {r} {workload} {name}: {m['_win'].describe()}")
                    emit(f"peers_{workload}_{name}_others_r{r}",
                         max(0.0, m["_win"].busy - m["_win"].own) * 100, "%cpu")
                    if m.get("early", 0) > 0:
                        fail(f"{name} {workload}: {m['early']:.0f} woke early")
        for (workload, name), m in sorted(round_res.items()):
            if args.smoke or name.startswith("weft"):  # smoke: weft's programs run their own --quick sizes
                continue
            base = round_res.get((workload, base_of(name, args.workers)))
            if not base:
                continue
            for x in RATIO_METRICS[workload]:
                if x in base and m.get(x):
                    emit(f"peers_{workload}_{base_of(name, args.workers)}_over_{name}_{x}_r{r}",
                         base[x] / m[x], "x")

    comment(f"medians over {args.rounds} rounds (load average now {loadavg():.2f})")
    med = {}
    for (workload, name), ms in sorted(results.items()):
        for x in RATIO_METRICS[workload] + ["early"]:
            vals = [m[x] for m in ms if x in m]
            if vals:
                med[(workload, name, x)] = statistics.median(vals)
                emit(f"peers_{workload}_{name}_{x}", med[(workload, name, x)], METRIC_UNITS[x])
    for (workload, name, x), v in sorted(med.items()):
        if args.smoke or name.startswith("weft") or x == "early":
            continue
        b = med.get((workload, base_of(name, args.workers), x))
        if b and v:
            emit(f"peers_{workload}_{base_of(name, args.workers)}_over_{name}_{x}", b / v, "x")

    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    csv = os.path.join(REPO, "bench", "results", "peers.csv")
    with open(csv, "w") as f:
        f.write("name,value,unit\n")
        for n, v, u in out_lines:
            f.write(f"{n},{v:.6g},{u}\n")
    comment(f"results: {csv}")
    if failures:
        print(f"peers: {len(failures)} failed runs:", file=sys.stderr)
        for x in failures:
            print(f"  {x}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
