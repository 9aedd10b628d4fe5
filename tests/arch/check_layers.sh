#!/bin/sh
# Checks README's layering from the objects themselves: every call from one
# runtime file into another goes to a file listed earlier below (the order of
# README's Architecture section), so no file calls up and no two files call
# each other. Usage: check_layers.sh OBJDIR
set -e
objdir=${1:?usage: check_layers.sh OBJDIR}
ORDER="version fault switch_x86_64 switch_aarch64 context symbol stack timer poller_uring poller_epoll poller_fd
       tls clock queue idle ready task rescue sched suspend
       wait
       time blocking fs dns io net stream sync chan group proc signal
       metrics dump runtime create"
ranks=$(mktemp)
trap 'rm -f "$ranks"' EXIT
rank=0
for f in $ORDER; do
    rank=$((rank + 1))
    echo "$f $rank" >> "$ranks"
done
for o in "$objdir"/*.o; do
    f=$(basename "$o" .o)
    grep -q "^$f " "$ranks" || { echo "check_layers: $f.o is not in the layer list"; exit 1; }
done
# Defined (T) and undefined (U) symbols per file.
for o in "$objdir"/*.o; do
    f=$(basename "$o" .o)
    nm "$o" | awk -v f="$f" '$2 ~ /^[TDBR]$/ {print "D", $3, f} $1 == "U" {print "U", $2, f}'
done | awk '
    FNR == NR { rank[$1] = $2; next }
    $1 == "D" { owner[$2] = $3; next }
    { use[NR] = $2 " " $3 }
    END {
        bad = 0
        for (i in use) {
            split(use[i], p, " ")
            s = p[1]; f = p[2]
            if (!(s in owner) || owner[s] == f)
                continue
            if (rank[owner[s]] > rank[f]) {
                printf "check_layers: %s calls up into %s (%s)\n", f, owner[s], s
                bad = 1
            }
        }
        exit bad
    }' "$ranks" -
echo "check_layers: every call between runtime files goes down the layer list"
