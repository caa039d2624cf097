#!/bin/bash
# demo.sh - two PEC providers on loopback, one certified message, its receipts.
#
#   contrib/demo.sh [start|stop] [--dir DIR] [--nodes 1|2]
#                                   (default: start, DIR ./demo-run, 1 node)
#
# start installs the Debian packages it needs, builds pecmilter, and brings up
# providers A (pec-a.test) and B (pec-b.test), each a private Postfix with its
# own pecmilter, plus a plain Postfix for example.org; mario.rossi@pec-a.test
# sends to two users of B and one ordinary address, and the chain of messages
# is shown with pecverify's verdicts (exit 1 if a receipt is missing).
# --nodes 2 runs A as two nodes (two Postfix+pecmilter pairs, node_id 1 and 2)
# on one PostgreSQL database the demo starts in DIR/pg, with one shared
# directory for their mailboxes and seals; Mario sends two messages, one
# through each node, and the shared store's log shows which node did what.
# Everything keeps running until `contrib/demo.sh stop --dir DIR` (which stops
# PostgreSQL too).  Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

action=start
dir=./demo-run
build=""
nodes=1
while [ $# -gt 0 ]; do
    case "$1" in
    start | stop) action="$1"; shift ;;
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --dir=*) dir="${1#--dir=}"; shift ;;
    --nodes) nodes="${2:?--nodes needs 1 or 2}"; shift 2 ;;
    --nodes=*) nodes="${1#--nodes=}"; shift ;;
    # not for users: the tests run the demo on the tree they already built
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: contrib/demo.sh [start|stop] [--dir DIR] [--nodes 1|2]" >&2; exit 64 ;;
    esac
done
case "$nodes" in
1 | 2) ;;
*) echo "demo.sh: --nodes is 1 or 2" >&2; exit 64 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: run as root: Postfix starts its own daemons" >&2
    exit 1
fi

if [ "$action" = start ]; then
    # --nodes 2: PostgreSQL as well (contrib/deps.sh demo-nodes)
    if [ "$nodes" = 2 ]; then contrib/deps.sh demo-nodes; else contrib/deps.sh demo; fi
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
if [ "$action" = start ]; then
    exec python3 contrib/demo.py start --dir "$dir" --build "$build" --nodes "$nodes"
fi
exec python3 contrib/demo.py stop --dir "$dir" --build "$build"
