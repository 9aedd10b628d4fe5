#!/bin/sh
# Runs the spin models of tests/model/ exhaustively (make model).
#
#   sh tests/model/run.sh [OUTDIR] [NAME...]
#
# Each check is a model, its cpp defines and what must come out: "pass"
# (spin finds no error in the whole state space) or "fail" (a mutant with a
# needed fence or step removed: spin must find a counterexample, else the
# model no longer tells the difference and the run fails). With NAME
# arguments only those checks run. MODEL_FULL=1 adds larger configurations
# (minutes, MODEL_MEMLIM=7000; three workers do not fit in 7 GB);
# MODEL_JOBS (default 2) checks run at once; MODEL_TRAIL=1 prints every
# counterexample (spin -t), the mutants' included.
set -u
here=$(cd "$(dirname "$0")" && pwd)

# ---- one check: run.sh --one OUT NAME MODEL OPT EXPECT DEFINES...
if [ "${1:-}" = --one ]; then
    out=$2 name=$3 model=$4 opt=$5 expect=$6
    shift 6
    defs="$*"
    d="$out/$name"
    rm -rf "$d" && mkdir -p "$d" && cp "$here"/*.pml "$d"/
    t0=$(date +%s)
    # Exhaustive (no bitstate, no hash compaction); COLLAPSE compresses the
    # stored states losslessly; MEMLIM (MB) turns a runaway into an error.
    # shellcheck disable=SC2086 # $defs is a list of -D options
    if ! (cd "$d" && spin -a $defs "$model" >spin.log 2>&1 &&
          ${CC:-cc} $opt -DSAFETY -DCOLLAPSE -DMEMLIM=${MODEL_MEMLIM:-2048} -o pan pan.c >cc.log 2>&1); then
        echo "model: $name: spin or cc failed:"; cat "$d/spin.log" "$d/cc.log" | head -20
        exit 1
    fi
    (cd "$d" && ./pan -m200000 >pan.log 2>&1)
    t1=$(date +%s)
    errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$d/pan.log" | tail -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$d/pan.log" | tail -1)
    why=$(grep -m1 -E '^pan:[0-9]+: ' "$d/pan.log" | sed 's/^pan:[0-9]*: *//; s/ (at depth.*//')
    # A pass counts only for a whole search (a found error ends one early).
    if [ "$errors" = 0 ] && grep -q -E 'Search not completed|MEMLIM bound|max search depth too small|out of memory' "$d/pan.log"; then
        echo "model: $name: search incomplete:"; grep -E 'MEMLIM|depth too small|out of memory' "$d/pan.log" | head -3
        exit 1
    fi
    if [ -z "$errors" ]; then
        echo "model: $name: pan gave no result:"; tail -20 "$d/pan.log"
        exit 1
    fi
    if [ "$errors" = 0 ]; then got=pass; else got=fail; fi
    if [ "$got" = "$expect" ]; then verdict=ok; else verdict=WRONG; fi
    printf 'model: %-22s %-4s (expected %s) %9s states %4ss %-5s %s\n' "$name" "$got" "$expect" "${states:-?}" \
        $((t1 - t0)) "$verdict" "${why:+[$why]}"
    if [ "$got" = fail ] && { [ "$verdict" = WRONG ] || [ "${MODEL_TRAIL:-0}" = 1 ]; }; then
        # shellcheck disable=SC2086
        (cd "$d" && spin -t -p -g -l $defs "$model" >trail.txt 2>&1)
        echo "model: $name: counterexample in $d/trail.txt; its last steps:"
        grep -E '^ *[0-9]+:' "$d/trail.txt" | tail -30
    fi
    if [ "$got" = pass ] && [ "$verdict" = WRONG ]; then
        echo "model: $name: a mutant passed: the model no longer needs what it removes"
    fi
    [ "$verdict" = ok ]
    exit $?
fi

# The code the models mirror must still be there (tests/model/mapping.txt).
root=$(cd "$here/../.." && pwd)
gone=0
while IFS='|' read -r file frag; do
    case "$file" in '#'* | '') continue ;; esac
    file=$(echo "$file" | tr -d ' ')
    frag=${frag# }
    if ! grep -qF -- "$frag" "$root/$file"; then
        echo "model: $file no longer has: $frag"
        gone=1
    fi
done <"$here/mapping.txt"
if [ $gone = 1 ]; then
    echo "model: the code changed under the models: update tests/model/*.pml to match, then mapping.txt"
    exit 1
fi

command -v spin >/dev/null 2>&1 || { echo "model: spin not found (Debian package spin; make test installs it)"; exit 1; }
out=${1:-build/model}
[ $# -gt 0 ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)

# name model opt expect defines...   (opt: -O1 where the search is long,
# -O0 where compiling pan.c would take longer than searching)
checks='
park-1w         park.pml -O0 pass -DNW=1
park-1w-spur    park.pml -O0 pass -DNW=1 -DNPROD=2 -DNSPUR=1
park-2w         park.pml -O1 pass -DNW=2
park-last-only  park.pml -O0 fail -DNW=1 -DMUT_LAST_ONLY
park-no-recheck park.pml -O0 fail -DNW=1 -DMUT_NO_RECHECK
park-no-fence   park.pml -O0 fail -DNW=1 -DMUT_NO_ENTER_FENCE
park-no-fence-x86 park.pml -O0 pass -DNW=1 -DX86 -DMUT_NO_ENTER_FENCE
park-rlx-pub    park.pml -O0 pass -DNW=1 -DMUT_RELAXED_PUBLISH
park-no-notify-fence park.pml -O0 pass -DNW=1 -DMUT_NO_NOTIFY_FENCE
park-rlx-pub-no-fence park.pml -O0 fail -DNW=1 -DMUT_RELAXED_PUBLISH -DMUT_NO_NOTIFY_FENCE
park-sanity     park.pml -O0 fail -DNW=1 -DMUT_SANITY
ring-1t         ring.pml -O1 pass -DNTHIEF=1 -DNTASK=6
ring-2t         ring.pml -O1 pass -DNTHIEF=2 -DNTASK=4
ring-tail-rlx   ring.pml -O0 fail -DMUT_TAIL_RELAXED
ring-tail-rlx-x86 ring.pml -O0 pass -DX86 -DMUT_TAIL_RELAXED
ring-free-real  ring.pml -O0 fail -DMUT_FREE_FROM_REAL
ring-handback   ring.pml -O0 fail -DMUT_HANDBACK_FIRST
ring-pop-steal  ring.pml -O0 fail -DMUT_POP_DROPS_STEAL
ring-2thieves   ring.pml -O1 fail -DNTHIEF=2 -DNTASK=6 -DMUT_NO_THIEF_CHECK
ring-sanity     ring.pml -O0 fail -DMUT_SANITY
'
if [ "${MODEL_FULL:-0}" = 1 ]; then
    checks="$checks
park-2w-spur    park.pml -O2 pass -DNW=2 -DNSPUR=1
park-2w-2prod   park.pml -O1 pass -DNW=2 -DNPROD=2
park-2w-x86     park.pml -O1 pass -DNW=2 -DX86
ring-2t-6       ring.pml -O1 pass -DNTHIEF=2 -DNTASK=6
ring-1t-2steals ring.pml -O1 pass -DNTHIEF=1 -DNTASK=6 -DNSTEAL=2
"
fi

start=$(date +%s)
echo "$checks" | while read -r name model opt expect defs; do
    [ -n "$name" ] || continue
    if [ $# -gt 0 ]; then
        want=0
        for n in "$@"; do [ "$n" = "$name" ] && want=1; done
        [ $want = 1 ] || continue
    fi
    echo "$out $name $model $opt $expect $defs"
done | xargs -L 1 -P "${MODEL_JOBS:-2}" sh "$here/run.sh" --one
rc=$?
end=$(date +%s)
if [ $rc != 0 ]; then
    echo "model: FAILED ($((end - start))s)"
    exit 1
fi
echo "model: all checks as expected ($((end - start))s)"
