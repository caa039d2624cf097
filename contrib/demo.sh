#!/bin/bash
# demo.sh - bring up a private PEC provider on loopback and show it working.
#
#   contrib/demo.sh [start|stop] [--dir DIR]      (default: start, DIR ./demo-run)
#
# start installs the Debian packages it needs, builds pecmilter, generates a
# test PKI and providers' index under DIR, starts pecmilter and a private
# Postfix with it attached, sends a message and shows where it landed.
# Everything it starts keeps running until `contrib/demo.sh stop --dir DIR`.
# Needs root (Postfix runs its own daemons as the postfix user).
set -euo pipefail
cd "$(dirname "$0")/.."

action=start
dir=./demo-run
build=""
while [ $# -gt 0 ]; do
    case "$1" in
    start | stop) action="$1"; shift ;;
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --dir=*) dir="${1#--dir=}"; shift ;;
    # not for users: the tests run the demo on the tree they already built
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: contrib/demo.sh [start|stop] [--dir DIR]" >&2; exit 64 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: run as root: Postfix starts its own daemons" >&2
    exit 1
fi

if [ "$action" = start ]; then
    contrib/deps.sh demo
    mkdir -p "$dir"
fi
if [ "$action" = start ] && [ -z "$build" ]; then
    build="$dir/build"
    echo "== building pecmilter in $build"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >"$dir/build.log" 2>&1
    if ! cmake --build "$build" -j"$(nproc)" >>"$dir/build.log" 2>&1; then
        tail -n 30 "$dir/build.log" >&2
        echo "demo.sh: build failed (log: $dir/build.log)" >&2
        exit 1
    fi
fi
[ -d "$dir" ] || { echo "demo.sh: $dir does not exist: nothing to stop"; exit 0; }
[ -n "$build" ] || build="$dir/build"
exec python3 contrib/demo.py "$action" --dir "$dir" --build "$build"
