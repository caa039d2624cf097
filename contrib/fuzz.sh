#!/bin/sh
# fuzz.sh - long fuzzing sessions, their findings kept.
#
#   contrib/fuzz.sh [--minutes N] [--build DIR] [HARNESS...]
#
# Builds the libFuzzer harnesses (clang, -DPEC_FUZZ=ON) in DIR (build-fuzz), generates
# the test PKI there, and fuzzes each HARNESS (default: all of t/fuzz/fuzz_*.c) for N
# minutes (20), one after the other, with one process: the corpus each session grows
# stays in DIR/t/fuzz/work/NAME/ and the next session starts from it.
#
# After a session, what it found is merged into t/fuzz/seeds/NAME/: of the inputs that
# add coverage to the seeds (libFuzzer -merge=1, with t/golden and ../shared's corpora
# counted as already covered), the 20 smallest, none over 64 KB, and none holding a line
# of ../shared (whose messages must not be copied into the project).  The whole grown
# corpus stays in the build directory for the next session.  A crash is minimised
# into t/fuzz/crashes/NAME/ and the script stops there: fix it, keep the reproducer.
#
# Every session appends one line to DIR/t/fuzz/sessions.log: date, harness, seconds,
# executions, and libFuzzer's final cov and ft.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)

minutes=20
build=build-fuzz
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes)
        minutes=$2
        shift 2
        ;;
    --build)
        build=$2
        shift 2
        ;;
    -*)
        echo "usage: contrib/fuzz.sh [--minutes N] [--build DIR] [HARNESS...]" >&2
        exit 64
        ;;
    *) break ;;
    esac
done

contrib/deps.sh fuzz
mkdir -p "$build"
build=$(cd "$build" && pwd)
if ! cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPEC_FUZZ=ON >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    exit 1
fi
if ! cmake --build "$build" --target fuzz -j"$(nproc)" >"$build/build.log" 2>&1; then
    grep -E 'error|warning' "$build/build.log" | head -n 40 >&2 || tail -n 40 "$build/build.log" >&2
    exit 1
fi
sh t/pki/mkpki.sh "$build/t/pki"

export PEC_SRC_DIR="$src" PEC_BUILD_DIR="$build" PEC_PKI_DIR="$build/t/pki"
if [ -d "$src/../shared/corpus" ]; then
    PEC_SHARED_DIR=$(cd "$src/../shared" && pwd)
    export PEC_SHARED_DIR
fi

if [ $# -eq 0 ]; then
    set -- $(ls t/fuzz/fuzz_*.c | sed 's|t/fuzz/fuzz_||; s|\.c$||')
fi

# merge NAME BINARY: what the session found, into seeds/NAME
merge() {
    name=$1
    bin=$2
    work=$build/t/fuzz/work/$name
    base=$work/merge-base
    rm -rf "$base"
    mkdir -p "$base/seeds" "t/fuzz/seeds/$name"
    cp "t/fuzz/seeds/$name"/* "$base/seeds/" 2>/dev/null || true
    # one directory holds the base, so what merge adds is new to seeds, golden and shared
    for d in t/golden "${PEC_SHARED_DIR:-/nonexistent}/corpus" "${PEC_SHARED_DIR:-/nonexistent}/corpus-rem"; do
        [ -d "$d" ] || continue
        find "$d" -type f | while read -r f; do cp "$f" "$base/seeds/known-$(basename "$f")"; done
    done
    ls "$base/seeds" | sort >"$base/before"
    "$bin" -merge=1 -rss_limit_mb=2048 "$base/seeds" "$work/corpus" >"$work/merge.log" 2>&1
    # the smallest of what is new, at most 20 a session, none over 64 KB and none holding a
    # line of ../shared (40 characters or more: its base64 above all)
    ls "$base/seeds" | sort | comm -13 "$base/before" - | (cd "$base/seeds" && xargs -r ls -S -r) |
        python3 -c '
import os, sys
base, dest, shared = sys.argv[1:4]
lines = set()
for top in (os.path.join(shared, "corpus"), os.path.join(shared, "corpus-rem")) if shared else ():
    for d, _, files in os.walk(top):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                lines.update(l.rstrip(b"\r\n") for l in fh if len(l) >= 40)
added = 0
for name in sys.stdin.read().split():
    with open(os.path.join(base, name), "rb") as fh:
        data = fh.read()
    if len(data) > 65536 or any(l.rstrip(b"\r") in lines for l in data.split(b"\n")):
        continue
    with open(os.path.join(dest, name), "wb") as fh:
        fh.write(data)
    added += 1
    if added == 20:
        break
print(added)
' "$base/seeds" "t/fuzz/seeds/$name" "${PEC_SHARED_DIR:-}" >"$work/merge.added"
    added=$(cat "$work/merge.added")
    echo "== $name: $added inputs added to t/fuzz/seeds/$name"
}

for name in "$@"; do
    bin=$build/t/fuzz/fuzz_$name
    if [ ! -x "$bin" ]; then
        echo "fuzz.sh: no harness $name (t/fuzz/fuzz_$name.c)" >&2
        exit 64
    fi
    log=$build/t/fuzz/work/$name.log
    mkdir -p "$build/t/fuzz/work"
    start=$(date +%s)
    status=0
    nice -n 10 sh t/fuzz/run.sh --keep "$bin" "$name" $((minutes * 60)) >"$log" 2>&1 || status=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    echo "$(date -u +%FT%TZ) $name ${secs}s execs=${execs:-?} $(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+')" |
        tee -a "$build/t/fuzz/sessions.log"
    if [ "$status" != 0 ]; then
        crash=$(ls -t "$build/t/fuzz/work/$name"/crash-* "$build/t/fuzz/work/$name"/timeout-* \
            "$build/t/fuzz/work/$name"/oom-* 2>/dev/null | head -n 1 || true)
        grep -E 'ERROR|broken promise|SUMMARY' "$log" | head -n 5 >&2 || true
        if [ -n "$crash" ]; then
            mkdir -p "t/fuzz/crashes/$name"
            out=t/fuzz/crashes/$name/$(basename "$crash")
            "$bin" -minimize_crash=1 -max_total_time=120 -exact_artifact_path="$out" "$crash" \
                >"$build/t/fuzz/work/$name.minimize.log" 2>&1 || true
            [ -f "$out" ] || cp "$crash" "$out"
            echo "fuzz.sh: $name crashed; reproducer: $out (log: $log)" >&2
        else
            echo "fuzz.sh: $name failed (log: $log)" >&2
        fi
        exit 1
    fi
    merge "$name" "$bin"
done
