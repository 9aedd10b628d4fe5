#!/bin/sh
# Builds the peer runtimes' versions of the benchmark workloads (issue 19)
# from Debian's packages only, offline:
#
#   BUILD/peers/tokio/release/peer_tokio   cargo against /usr/share/cargo/registry
#   BUILD/peers/go/peer_go                 go build, no modules, GOPROXY=off
#   BUILD/peers/libuv/peer_uv              cc against libuv1-dev
#
#   sh bench/peers/build.sh [BUILD]        (BUILD defaults to build)
#
# As root it installs what is missing (librust-tokio-dev, cargo when no cargo
# is on PATH or in /root/.cargo/bin, golang-go, libuv1-dev, pkg-config, wrk);
# otherwise it prints the apt-get line. A peer whose packages are missing is
# not built and says so; bench/peers/run.py then skips it. The exit status is
# 1 only when a peer whose tools are there fails to build.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
mkdir -p "$build/peers"
build=$(cd "$build" && pwd)

find_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        command -v cargo
    elif [ -x /root/.cargo/bin/cargo ]; then
        echo /root/.cargo/bin/cargo
    elif [ -n "${HOME:-}" ] && [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "$HOME/.cargo/bin/cargo"
    fi
}

have_tokio_src() { ls -d /usr/share/cargo/registry/tokio-1.* >/dev/null 2>&1; }

missing=""
have_tokio_src || missing="$missing librust-tokio-dev"
[ -n "$(find_cargo)" ] || missing="$missing cargo"
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libuv; } || missing="$missing libuv1-dev"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "peers: installing$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; } ||
            echo "peers: apt-get failed; building what can be built"
    else
        echo "peers: missing packages; run: sudo apt-get install -y$missing"
        echo "peers: building what can be built"
    fi
fi

status=0

cargo=$(find_cargo)
if [ -n "$cargo" ] && have_tokio_src; then
    echo "peers: tokio ($("$cargo" --version), $(ls -d /usr/share/cargo/registry/tokio-1.* | sed 's|.*/||'))"
    # The project's .cargo/config.toml replaces crates.io with Debian's
    # registry directory and sets offline mode: no network is used.
    (cd "$here/tokio" && CARGO_TARGET_DIR="$build/peers/tokio" "$cargo" build --release --quiet) ||
        { echo "peers: tokio build FAILED"; status=1; }
else
    echo "peers: tokio skipped (needs cargo and librust-tokio-dev)"
fi

if command -v go >/dev/null 2>&1; then
    echo "peers: go ($(go version | sed 's/^go version //'))"
    mkdir -p "$build/peers/go"
    (cd "$here/go" && GOCACHE="$build/peers/go/cache" GOPATH="$build/peers/go/path" GOPROXY=off \
        GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -o "$build/peers/go/peer_go" .) ||
        { echo "peers: go build FAILED"; status=1; }
else
    echo "peers: go skipped (needs golang-go)"
fi

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libuv; then
    echo "peers: libuv ($(pkg-config --modversion libuv))"
    mkdir -p "$build/peers/libuv"
    ${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -o "$build/peers/libuv/peer_uv" "$here/libuv/peer_uv.c" \
        $(pkg-config --cflags --libs libuv) || { echo "peers: libuv build FAILED"; status=1; }
else
    echo "peers: libuv skipped (needs libuv1-dev and pkg-config)"
fi
exit $status
