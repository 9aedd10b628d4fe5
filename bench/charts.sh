#!/bin/sh
# PNG charts of the benchmark results (make charts).
#
#   sh bench/charts.sh [CSV] [OUTDIR]      defaults: bench/results/all.csv bench/results
#
# CSV rows are name,value,unit (the `bench:` lines collected by make bench).
# Charts, each drawn only when its results are in the CSV:
#   avt_<workload>.png  async vs threads: p50/p99 latency, throughput and peak
#                       RSS per model, one chart per workload (io, cpu, mixed, tail)
#   sched.png           weft against its baselines: switch vs swapcontext,
#                       spawn and yield vs pthreads (ns per operation, log scale)
#   net.png             network servers: weft against the ceiling server and
#                       thread-per-connection (requests/s, p99, CPU per request)
#   scaling.png         efficiency per worker count (bench/scaling.c)
#   chan.png            weft channels against pthread mutex+condvar channels
#                       (bench/chan.c): ping-pong ns per round trip, stream and
#                       mpmc messages/s, CPU per message (log scales)
set -eu
CSV=${1:-bench/results/all.csv}
OUT=${2:-bench/results}
command -v gnuplot >/dev/null || { echo "charts: gnuplot not installed (apt-get install gnuplot-nox)"; exit 1; }
[ -f "$CSV" ] || { echo "charts: $CSV not found; run make bench first"; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# val NAME -> the value of result NAME, or empty.
val() { awk -F, -v n="$1" '$1 == n { v = $2 } END { if (v != "") print v }' "$CSV"; }

TERM_PNG="set terminal pngcairo size 1500,480 font 'sans,10' noenhanced"
made=""

# ------------------------------------------------------------ async vs threads
for w in io cpu mixed tail; do
    : > "$TMP/avt_$w.dat"
    for m in weft weft_blocking weft_compute threads pool2 pool16 pool64; do
        p50=$(val "avt_${w}_${m}_p50"); p99=$(val "avt_${w}_${m}_p99")
        rps=$(val "avt_${w}_${m}_rps"); rss=$(val "avt_${w}_${m}_rss"); wall=$(val "avt_${w}_${m}_wall")
        [ -n "$p50" ] && [ -n "$rps" ] || continue
        echo "$m $p50 $p99 $rps ${rss:-0} ${wall:-0}" >> "$TMP/avt_$w.dat"
    done
    [ -s "$TMP/avt_$w.dat" ] || continue
    case $w in
        io) what="io: wait 1 ms, 2 us CPU" ;;
        cpu) what="cpu: 200 us of hashing" ;;
        mixed) what="mixed: wait 1 ms, 50 us CPU, wait 1 ms" ;;
        tail) what="tail: as mixed, 1% of requests do 20 ms CPU" ;;
    esac
    n=$(awk 'END { print NR }' "$TMP/avt_$w.dat")
    gnuplot <<EOF
$TERM_PNG
set output '$OUT/avt_$w.png'
set multiplot layout 1,3 title "async tasks vs preemptive threads -- $what ($n models, one run)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30
set grid ytics
set key top left
set title 'latency from admission (ms, log scale)'
set logscale y
plot '$TMP/avt_$w.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99'
unset logscale y
set yrange [0:*]
set title 'throughput (requests/s)'
set key off
plot '$TMP/avt_$w.dat' using 4:xtic(1) title 'req/s' lc rgb '#2a7fbf'
set title 'peak RSS of the model''s process (MiB)'
plot '$TMP/avt_$w.dat' using (\$5/1024):xtic(1) title 'RSS' lc rgb '#999999'
unset multiplot
EOF
    made="$made avt_$w.png"
done

# ------------------------------------------------------------ scheduler vs baselines
: > "$TMP/sched.dat"
pair() { # label weft-name baseline-name
    a=$(val "$2"); b=$(val "$3")
    [ -n "$a" ] && [ -n "$b" ] && echo "\"$1\" $a $b" >> "$TMP/sched.dat" || true
}
pair "switch round trip vs swapcontext" switch_roundtrip swapcontext_roundtrip
pair "spawn_many vs pthread pool job" spawn_many spawn_many_pthread_pool
pair "spawn_many vs pthread_create" spawn_many spawn_many_pthread_create
pair "yield vs sched_yield (200 threads)" yield_many yield_many_pthread
if [ -s "$TMP/sched.dat" ]; then
    gnuplot <<EOF
set terminal pngcairo size 1100,520 font 'sans,10' noenhanced
set output '$OUT/sched.png'
set title 'weft against its baselines, same run (ns per operation, log scale; lower is better)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set grid ytics
set key top left
set xtics rotate by -15
plot '$TMP/sched.dat' using 2:xtic(1) title 'weft', '' using 3 title 'baseline (pthreads / ucontext)'
EOF
    made="$made sched.png"
fi

# ------------------------------------------------------------ network servers
: > "$TMP/net.dat"
for b in tcp_echo http_hello; do
    for s in weft ceiling threads; do
        r=$(val "${b}_${s}_rps"); p=$(val "${b}_${s}_p99"); c=$(val "${b}_${s}_cpu_per_req")
        [ -n "$r" ] && echo "${b}/${s} $r ${p:-0} ${c:-0}" >> "$TMP/net.dat"
    done
done
if [ -s "$TMP/net.dat" ]; then
    gnuplot <<EOF
$TERM_PNG
set output '$OUT/net.png'
set multiplot layout 1,3 title 'network servers, 100 connections, loadgen in its own process (one run)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set grid ytics
set key off
set yrange [0:*]
set title 'requests/s (higher is better)'
plot '$TMP/net.dat' using 2:xtic(1) lc rgb '#2a7fbf'
set title 'p99 latency, us (lower is better)'
plot '$TMP/net.dat' using 3:xtic(1) lc rgb '#d95f02'
set title 'server CPU per request, us (lower is better)'
plot '$TMP/net.dat' using 4:xtic(1) lc rgb '#999999'
unset multiplot
EOF
    made="$made net.png"
fi

# ------------------------------------------------------------ scaling
awk -F, '$1 ~ /^scaling_.*_w[0-9]+_eff$/ {
    n = $1; sub(/^scaling_/, "", n); sub(/_eff$/, "", n);
    w = n; sub(/.*_w/, "", w); b = n; sub(/_w[0-9]+$/, "", b);
    print b, w, $2 }' "$CSV" | sort -k1,1 -k2,2n > "$TMP/scaling.dat"
if [ -s "$TMP/scaling.dat" ]; then
    for b in spawn pingpong mixed; do awk -v b=$b '$1 == b' "$TMP/scaling.dat" > "$TMP/scaling_$b.dat"; done
    gnuplot <<EOF
set terminal pngcairo size 800,480 font 'sans,10' noenhanced
set output '$OUT/scaling.png'
set title 'scaling: throughput(N) / (N x throughput(1)), 1 = perfect'
set xlabel 'workers'
set ylabel 'efficiency'
set yrange [0:*]
set grid
set key bottom left
plot '$TMP/scaling_spawn.dat' using 2:3 with linespoints title 'spawn', \
     '$TMP/scaling_pingpong.dat' using 2:3 with linespoints title 'channel ping-pong', \
     '$TMP/scaling_mixed.dat' using 2:3 with linespoints title 'mixed workload (c)'
EOF
    made="$made scaling.png"
fi

# ------------------------------------------------------------ channels
# Rows "label weft [weft-1-worker] pthread"; '?' marks a value not measured.
: > "$TMP/chan_pp.dat"; : > "$TMP/chan_rate.dat"; : > "$TMP/chan_cpu.dat"
p=$(val chan_pingpong_pthread); pc=$(val chan_pingpong_pthread_cpu_per_rt)
for w in w1 w2; do
    a=$(val "chan_pingpong_weft_$w"); ac=$(val "chan_pingpong_weft_${w}_cpu_per_rt")
    n=${w#w}; [ "$n" = 1 ] && lbl="1 worker" || lbl="$n workers"
    [ -n "$a" ] && [ -n "$p" ] && echo "\"$lbl\" $a $p" >> "$TMP/chan_pp.dat"
    [ -n "$ac" ] && [ -n "$pc" ] && echo "\"ping-pong, $lbl\" $ac $pc" >> "$TMP/chan_cpu.dat"
done
for b in stream mpmc; do
    a=$(val "chan_${b}_weft"); a1=$(val "chan_${b}_weft_w1"); p=$(val "chan_${b}_pthread")
    ac=$(val "chan_${b}_weft_cpu_per_msg"); a1c=$(val "chan_${b}_weft_w1_cpu_per_msg")
    pc=$(val "chan_${b}_pthread_cpu_per_msg")
    [ -n "$a" ] && [ -n "$p" ] && echo "\"$b\" $a ${a1:-?} $p" >> "$TMP/chan_rate.dat"
    [ -n "$ac" ] && [ -n "$pc" ] && echo "\"$b, 2 workers\" $ac $pc" >> "$TMP/chan_cpu.dat"
    [ -n "$a1c" ] && [ -n "$pc" ] && echo "\"$b, 1 worker\" $a1c $pc" >> "$TMP/chan_cpu.dat"
done
panels=0
for f in chan_pp chan_rate chan_cpu; do [ -s "$TMP/$f.dat" ] && panels=$((panels + 1)); done
if [ "$panels" -gt 0 ]; then
    {
        echo "$TERM_PNG"
        echo "set output '$OUT/chan.png'"
        echo "set multiplot layout 1,$panels title 'weft channels against pthread mutex+condvar channels, same run (medians; log scales)'"
        echo "set style data histograms"
        echo "set style histogram clustered gap 1"
        echo "set style fill solid 0.8 border -1"
        echo "set datafile missing '?'"
        echo "set logscale y"
        echo "set grid ytics"
        echo "set key top left"
        if [ -s "$TMP/chan_pp.dat" ]; then
            echo "set title 'ping-pong over capacity 0: ns per round trip (lower is better)'"
            echo "plot '$TMP/chan_pp.dat' using 2:xtic(1) title 'weft' lc rgb '#2a7fbf', '' using 3 title 'pthread' lc rgb '#d95f02'"
        fi
        if [ -s "$TMP/chan_rate.dat" ]; then
            echo "set title 'stream (1x1, cap 64), mpmc (4x4, cap 256): messages/s (higher is better)'"
            echo "set format y '%.0s%c'"
            echo "plot '$TMP/chan_rate.dat' using 2:xtic(1) title 'weft, 2 workers' lc rgb '#2a7fbf', '' using 3 title 'weft, 1 worker' lc rgb '#9ecae1', '' using 4 title 'pthread' lc rgb '#d95f02'"
        fi
        if [ -s "$TMP/chan_cpu.dat" ]; then
            echo "set title 'CPU per message (ping-pong: per round trip), ns (lower is better)'"
            echo "set format y '%g'"
            echo "set key top right"
            echo "set xtics rotate by -30"
            echo "plot '$TMP/chan_cpu.dat' using 2:xtic(1) title 'weft' lc rgb '#2a7fbf', '' using 3 title 'pthread' lc rgb '#d95f02'"
        fi
        echo "unset multiplot"
    } > "$TMP/chan.gp"
    gnuplot "$TMP/chan.gp"
    made="$made chan.png"
fi

echo "charts: wrote${made:- nothing (no results in $CSV)} in $OUT"
