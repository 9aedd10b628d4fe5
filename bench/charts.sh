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
    for m in weft weft_blocking threads pool2 pool16 pool64; do
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

echo "charts: wrote${made:- nothing (no results in $CSV)} in $OUT"
