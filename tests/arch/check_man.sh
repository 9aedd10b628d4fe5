#!/bin/sh
# Fails when a public function has no man page: every WEFT_API function
# declared in the headers given must have MANDIR/man3/NAME.3 (a page or a
# .so link to one), and the page it leads to must name it in NAME.
# Independent of tools/mkman.py's parser (grep and sed here).
# Usage: check_man.sh MANDIR include/*.h
set -e
man=${1:?usage: check_man.sh MANDIR HEADER...}
shift
[ -f "$man/man7/weft.7" ] || { echo "check_man: no $man/man7/weft.7"; exit 1; }
names=$(grep -h '^WEFT_API ' "$@" | sed 's/^\([^(]*[ *]\)\([A-Za-z_][A-Za-z0-9_]*\) *(.*/\2/' | sort -u)
bad=0
n=0
for f in $names; do
    n=$((n + 1))
    p="$man/man3/$f.3"
    if [ ! -f "$p" ]; then echo "check_man: $f has no page ($p)"; bad=1; continue; fi
    t=$(sed -n 's/^\.so //p' "$p")
    [ -n "$t" ] && p="$man/$t"
    if ! sed -n '/^\.SH NAME/,/^\.SH/p' "$p" | sed 's/\\-/-/g' | grep -q "\\b$f\\b"; then
        echo "check_man: $p does not name $f"; bad=1
    fi
done
[ "$n" -gt 0 ] || { echo "check_man: no WEFT_API function found"; exit 1; }
[ $bad = 0 ] && echo "check_man: all $n public functions have a man page"
exit $bad
