#!/bin/bash
# bench.sh - how fast a provider built on pecmilter is, beside bare Postfix.
#
#   contrib/bench.sh [--quick] [--out DIR]          (default DIR /tmp/pecbench)
#
# Installs the Debian packages it needs (contrib/deps.sh bench), builds
# pecmilter RelWithDebInfo in DIR/build (again only what changed), and
# the load generator contrib/bench/smtpload.c.  Then, on loopback, two
# providers A and B as in the demo and an smtp-sink for the rest of the world;
# for 4 KB, 100 KB and 1 MB messages, 20 parallel SMTP sessions: bare Postfix
# relaying (the baseline), A's access role (certified submissions), the full
# A -> B exchange (consegna back in the sender's mailbox), the access role
# with a clamd on the same machine scanning every submission (access+av: its
# ratio to the access role, and the scan's p50), the access role with A's
# store on PostgreSQL (postgresql: its ratio to the access role on SQLite,
# and pecmilter's CPU per message); and 10 concurrent 30 MB
# submissions for pecmilter's peak RSS.  Writes DIR/bench.csv,
# DIR/bench.md (each figure with its ratio to the baseline of the same run)
# and DIR/bench.png.  --quick sends fewer messages (under 3 minutes).  Exit 1
# when any message was refused or lost.  Needs root (Postfix).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
dir=/tmp/pecbench
build=""
only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=--quick; shift ;;
    --out) dir="${2:?--out needs a directory}"; shift 2 ;;
    --out=*) dir="${1#--out=}"; shift ;;
    # not for users: profile with an existing build, or some scenarios only
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --only) only="--only=${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: contrib/bench.sh [--quick] [--out DIR]" >&2; exit 64 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench.sh: run as root: Postfix starts its own daemons" >&2
    exit 1
fi

contrib/deps.sh bench
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ -z "$build" ]; then
    build="$dir/build"
    echo "== building pecmilter (RelWithDebInfo) in $build"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >"$dir/build.log" 2>&1
    if ! cmake --build "$build" -j"$(nproc)" >>"$dir/build.log" 2>&1; then
        tail -n 30 "$dir/build.log" >&2
        echo "bench.sh: build failed (log: $dir/build.log)" >&2
        exit 1
    fi
fi
cc -O2 -Wall -Wextra -pthread -o "$dir/smtpload" contrib/bench/smtpload.c
exec python3 contrib/bench.py $quick $only --out "$dir" --build "$build" --load "$dir/smtpload"
