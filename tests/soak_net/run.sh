#!/bin/sh
# make soak-net: the example servers under load, watched from outside.
#  1. examples/echo_server, 10,000 connections (SOAK_CONNS) held open for
#     SOAK_S seconds (default 60), each echoing a message every second
#     (tests/soak_net/echo_clients.c);
#  2. examples/http_server under wrk (100 connections, 2 threads) for SOAK_S.
# Each load runs twice (two rounds). Every second the script samples the
# server's resident memory (VmRSS of /proc/PID/status), its open descriptors
# (/proc/PID/fd) and its live tasks (weft_runtime_live_tasks, which the
# servers write to WEFT_STATS_FILE), and prints the curve; after each round
# it goes on sampling for SETTLE_S seconds (default 20) and judges the last
# sample. It fails unless:
#  - descriptors and live tasks are exactly back at their starting values
#    after each round;
#  - resident memory after round 1 is within RSS_TOL_KIB (default 16384)
#    of the start. What is kept on purpose after a first load: the stack
#    pool's warm stacks (a worker going to sleep trims them to 256 per size
#    class, each keeping at most its top 16 KiB: 4 MiB a class, plus the
#    workers' own caches), the task control blocks and descriptor-table
#    chunks, which are reused and never given back while the runtime lives
#    (128 bytes a task, about 350 KiB per 4,096 descriptors: 2.3 MiB for
#    10,000 connections), and jemalloc's caches and metadata;
#  - resident memory after round 2 is within RSS_REPEAT_TOL_KIB (default
#    2048) of round 1's: the caches are warm by then, the same load needs
#    no more of them, so what a second round adds is what it leaked. That
#    is the sharp test: 2 MiB over 10,000 connections is 200 bytes each,
#    and over the hundreds of thousands of requests wrk makes, a few bytes
#    each, where the first check alone would let 1.6 KiB a connection by.
# The servers run with MALLOC_CONF=background_thread:true so that jemalloc's
# decay (dirty pages returned after 10 s) runs while they are idle: without
# it jemalloc purges only when the program allocates, and an idle server
# would keep the peak's pages however long one waited.
# Usage: run.sh BUILD_DIR
set -u
B=${1:-build}
SOAK_S=${SOAK_S:-60}
CONNS=${SOAK_CONNS:-10000}
SETTLE_S=${SETTLE_S:-20}
RSS_TOL_KIB=${RSS_TOL_KIB:-16384}
RSS_REPEAT_TOL_KIB=${RSS_REPEAT_TOL_KIB:-2048}
WRK_CONNS=${WRK_CONNS:-100}
# Below the ephemeral range (32768 and up by default), where the 10,000
# client sockets, and anyone else's, take their local ports.
lowest=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
span=$((lowest > 12000 ? lowest - 12000 : 1000))
PORT_BASE=${SOAK_PORT:-$((10000 + $$ % (span - 2)))}

# Descriptors: the server and the client each hold CONNS of them.
want=$((CONNS + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || { echo "soak-net: need $want descriptors (ulimit -Hn is $(ulimit -Hn); run as root)"; exit 1; }
fi
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

# sample PID: "rss_kib fds live"
sample() {
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null)
    fds=$(ls "/proc/$1/fd" 2>/dev/null | wc -l)
    live=$(awk '{print $2}' "$tmp/stats" 2>/dev/null)
    echo "${rss:-?} $fds ${live:-?}"
}

t0=0
row() { # phase PID
    set -- "$1" $(sample "$2")
    printf '%6s  %-8s %10s %8s %8s\n' "$(( $(date +%s) - t0 ))" "$1" "$2" "$3" "$4"
    last_rss=$2 last_fds=$3 last_live=$4
}

failed=0
fail() { echo "   $name: FAIL: $*"; failed=1; }

# round N LOAD_COMMAND...: runs the load, sampling, then SETTLE_S seconds
# after it; leaves the last sample in last_*.
round() {
    r=$1
    shift
    peak_rss=$last_rss peak_fds=$last_fds peak_live=$last_live
    "$@" > "$tmp/load.log" 2>&1 &
    load=$!
    while kill -0 $load 2>/dev/null; do
        sleep 1
        row "load$r" $srv
        [ "$last_rss" -gt "$peak_rss" ] && peak_rss=$last_rss
        [ "$last_fds" -gt "$peak_fds" ] && peak_fds=$last_fds
        [ "$last_live" -gt "$peak_live" ] && peak_live=$last_live
    done
    wait $load || fail "round $r: the load reported errors (exit $?)"
    # wrk exits 0 whatever happened: its summary says what went wrong
    ! grep -q "Socket errors\|Non-2xx" "$tmp/load.log" || fail "round $r: $(grep "Socket errors\|Non-2xx" "$tmp/load.log")"
    sed 's/^/    load: /' "$tmp/load.log" | tail -8
    # The whole settle window is sampled (the curve shows how memory comes
    # down); the verdicts are on its last sample.
    i=0
    while [ $i -lt "$SETTLE_S" ]; do
        sleep 1
        i=$((i + 1))
        row "after$r" $srv
    done
    echo "   $name round $r: peak ${peak_rss} KiB, ${peak_fds} fds, ${peak_live} tasks;" \
         "${SETTLE_S} s after: ${last_rss} KiB, ${last_fds} fds, ${last_live} tasks"
    [ "$last_fds" -eq "$start_fds" ] || fail "round $r: $last_fds descriptors open, $start_fds at the start"
    [ "$last_live" -eq "$start_live" ] || fail "round $r: $last_live live tasks, $start_live at the start"
}

# soak NAME PORT LOAD_COMMAND...
soak() {
    name=$1 port=$2
    shift 2
    echo "== soak-net: $name, two rounds of $SOAK_S s of load; sampled every second"
    MALLOC_CONF=background_thread:true WEFT_STATS_FILE="$tmp/stats" \
        "$B/examples/$name" "$port" 2 > "$tmp/$name.log" 2>&1 &
    srv=$!
    t0=$(date +%s)
    printf '%6s  %-8s %10s %8s %8s\n' "t(s)" phase "rss(KiB)" fds tasks
    # start: once the server listens and has written its first count
    i=0
    while [ $i -lt 50 ] && ! [ -s "$tmp/stats" ]; do sleep 0.1; i=$((i + 1)); done
    sleep 1
    state=$(awk '/^State:/ {print $2}' "/proc/$srv/status" 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = Z ] || ! [ -s "$tmp/stats" ]; then
        fail "the server did not start"
        sed 's/^/    server: /' "$tmp/$name.log" | tail -5
        srv=
        return
    fi
    row start $srv
    start_rss=$last_rss start_fds=$last_fds start_live=$last_live
    round 1 "$@"
    after1_rss=$last_rss
    [ "$after1_rss" -le $((start_rss + RSS_TOL_KIB)) ] ||
        fail "round 1: resident memory ${after1_rss} KiB, more than ${RSS_TOL_KIB} KiB above the start (${start_rss} KiB)"
    round 2 "$@"
    [ "$last_rss" -le $((after1_rss + RSS_REPEAT_TOL_KIB)) ] ||
        fail "round 2: resident memory ${last_rss} KiB, more than ${RSS_REPEAT_TOL_KIB} KiB above round 1's (${after1_rss} KiB)"
    echo "   $name: start ${start_rss} KiB; after round 1 +$((after1_rss - start_rss)) KiB" \
         "(tolerance ${RSS_TOL_KIB}); after round 2 $((last_rss - after1_rss)) KiB from round 1 (tolerance ${RSS_REPEAT_TOL_KIB})"
    kill -TERM $srv
    wait $srv || { fail "the server exited with $?"; sed 's/^/    server: /' "$tmp/$name.log" | tail -5; }
    srv=
    rm -f "$tmp/stats"
}

soak echo_server $PORT_BASE "$B/soak_net/echo_clients" $PORT_BASE "$CONNS" "$SOAK_S"
soak http_server $((PORT_BASE + 1)) wrk -t2 -c"$WRK_CONNS" -d"${SOAK_S}s" "http://127.0.0.1:$((PORT_BASE + 1))/"
[ $failed -eq 0 ] && echo "soak-net: ok" || echo "soak-net: FAILED"
exit $failed
