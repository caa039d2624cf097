#!/bin/bash
# demo.sh - two PEC providers on loopback, one certified message, its receipts.
#
#   contrib/demo.sh [start|stop] [--dir DIR]      (default: start, DIR ./demo-run)
#
# start installs the Debian packages it needs, builds pecmilter, and brings up
# providers A (pec-a.test) and B (pec-b.test), each a private Postfix with its
# own pecmilter, plus a plain Postfix for example.org; mario.rossi@pec-a.test
# sends to two users of B and one ordinary address, and the chain of messages
# is shown with pecverify's verdicts (exit 1 if a receipt is missing).
# Everything keeps running until `contrib/demo.sh stop --dir DIR`.  Needs root.
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
