#!/bin/sh
# Checks README's install section against a staged install (run by make test):
#  1. make install PREFIX=$tmp/prefix; with PKG_CONFIG_PATH as README says, a
#     program builds and runs dynamically (pkg-config --libs weft, an rpath)
#     and fully statically (pkg-config --static --libs weft, -static); two
#     examples build with examples/Makefile.standalone and run; the library
#     files, soname, links, pkg-config files and man pages are where README
#     says; make uninstall leaves nothing behind.
#  2. the same install and uninstall under DESTDIR with PREFIX=/usr/local.
# Usage: install_check.sh BUILD
set -e
build=${1:-build}
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ver=$(sed -n 's/^#define WEFT_VERSION_\(MAJOR\|MINOR\|PATCH\)  *\([0-9]*\).*/\2/p' include/weft.h | paste -sd.)
major=${ver%%.*}
mk() { make --no-print-directory -s BUILD="$build" "$@" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; exit 1; }; }
fail() { echo "install_check: $*"; exit 1; }

p=$tmp/prefix
mk install PREFIX="$p"
for f in include/weft.h lib/libweft.a lib/libweft.so.$ver lib/pkgconfig/weft.pc share/man/man7/weft.7 \
         share/man/man3/weft_spawn.3 share/man/man3/weft_version.3; do
    [ -f "$p/$f" ] || fail "missing $f"
done
[ "$(readlink "$p/lib/libweft.so.$major")" = "libweft.so.$ver" ] || fail "libweft.so.$major is not a link to libweft.so.$ver"
[ "$(readlink "$p/lib/libweft.so")" = "libweft.so.$major" ] || fail "libweft.so is not a link to libweft.so.$major"
readelf -d "$p/lib/libweft.so.$ver" | grep -q "SONAME.*\[libweft.so.$major\]" || fail "soname is not libweft.so.$major"

export PKG_CONFIG_PATH="$p/lib/pkgconfig"
pkg-config --static --libs weft | grep -q -- '-lm' || fail "pkg-config --static --libs weft has no -lm"
# Dynamic, with the rpath README gives.
cc -o "$tmp/app_dyn" tests/arch/install_app.c $(pkg-config --cflags --libs weft) -Wl,-rpath,"$p/lib"
readelf -d "$tmp/app_dyn" | grep -q "NEEDED.*\[libweft.so.$major\]" || fail "app_dyn does not need libweft.so.$major"
"$tmp/app_dyn" || fail "the dynamic program failed"
# Dynamic, with LD_LIBRARY_PATH instead.
cc -o "$tmp/app_dyn2" tests/arch/install_app.c $(pkg-config --cflags --libs weft)
LD_LIBRARY_PATH="$p/lib" "$tmp/app_dyn2" >/dev/null || fail "the program failed with LD_LIBRARY_PATH"
# Fully static.
cc -static -o "$tmp/app_static" tests/arch/install_app.c $(pkg-config --static --cflags --libs weft)
readelf -d "$tmp/app_static" 2>/dev/null | grep -q NEEDED && fail "app_static is not static"
"$tmp/app_static" || fail "the static program failed"
# TLS, where it was built.
if [ -f "$p/include/weft_tls.h" ]; then
    [ "$(readlink "$p/lib/libweft_tls.so.$major")" = "libweft_tls.so.$ver" ] || fail "libweft_tls.so.$major link"
    printf '%s\n' '#include <weft_tls.h>' \
        'int main(void) { weft_tls_ctx *c = weft_tls_ctx_new(WEFT_TLS_CLIENT); if (!c) return 1; weft_tls_ctx_free(c); return 0; }' \
        > "$tmp/tls_app.c"
    cc -o "$tmp/tls_app" "$tmp/tls_app.c" $(pkg-config --cflags --libs weft_tls) -Wl,-rpath,"$p/lib"
    "$tmp/tls_app" || fail "the TLS program failed"
fi
# The examples, standalone, with the Makefile users copy.
mkdir "$tmp/ex"
cp examples/Makefile.standalone "$tmp/ex/Makefile"
cp examples/gather.c examples/pipeline.c "$tmp/ex/"
(cd "$tmp/ex" && make -s RPATH="$p/lib" >"$tmp/ex.log" 2>&1) || { cat "$tmp/ex.log"; fail "examples/Makefile.standalone failed"; }
"$tmp/ex/gather" >/dev/null || fail "standalone gather failed"
"$tmp/ex/pipeline" 2 1000 >/dev/null || fail "standalone pipeline failed"
(cd "$tmp/ex" && make -s clean && make -s STATIC=1 PROGS=gather >"$tmp/ex.log" 2>&1) || { cat "$tmp/ex.log"; fail "static standalone build failed"; }
"$tmp/ex/gather" >/dev/null || fail "static standalone gather failed"

mk uninstall PREFIX="$p"
left=$(find "$p" -mindepth 1 2>/dev/null | head -5)
[ -z "$left" ] || fail "make uninstall left: $left"

# DESTDIR staging with the default-style prefix.
d=$tmp/stage
mk install DESTDIR="$d" PREFIX=/usr/local
[ -f "$d/usr/local/lib/libweft.so.$ver" ] || fail "DESTDIR install: no libweft.so.$ver"
grep -q '^prefix=/usr/local$' "$d/usr/local/lib/pkgconfig/weft.pc" || fail "DESTDIR install: weft.pc prefix"
mk uninstall DESTDIR="$d" PREFIX=/usr/local
left=$(find "$d/usr/local" -mindepth 1 2>/dev/null | head -5)
[ -z "$left" ] || fail "make uninstall DESTDIR left: $left"
echo "install_check: install, dynamic and static links, standalone examples, uninstall: ok ($ver)"
