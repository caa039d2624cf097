#!/bin/bash
# check.sh - the project's test command: format check, then gcc, clang and
# AddressSanitizer+UBSan builds, each running the ctest suite; the tests
# labelled "long" (the crash tests, minutes each) run in the gcc build only.
# Last, the "fuzz" stage: a clang build with -DPEC_FUZZ=ON of the libFuzzer
# harnesses alone, whose tests (label fuzz, t/fuzz) replay every kept crash
# reproducer and the seeds, then fuzz 30 s each, one after the other.
#
#   t/check.sh [--only gcc|clang|asan|fuzz] [--keep]
#
# Installs missing Debian packages first (contrib/deps.sh test).  Builds go
# to build-check/<config>; exits non-zero on any failure, and the last line
# printed is ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --only) only="$2"; shift 2 ;;
    *) echo "usage: t/check.sh [--only gcc|clang|asan|fuzz]" >&2; exit 64 ;;
    esac
done

contrib/deps.sh test

echo "== clang-format"
unformatted=$(git ls-files '*.c' '*.h' 2>/dev/null | while read -r f; do
    [ -f "$f" ] && ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1 && echo "$f"
done || true)
if [ -n "$unformatted" ]; then
    echo "check.sh: clang-format would change:" $unformatted >&2
    echo "check.sh: run clang-format -i on them" >&2
    exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=0
summaries=()
for config in gcc clang asan fuzz; do
    [ -n "$only" ] && [ "$only" != "$config" ] && continue
    dir="build-check/$config"
    case "$config" in
    gcc) opts=(-DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo); select=() ;;
    clang) opts=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo); select=(-LE long) ;;
    asan) opts=(-DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug -DPEC_SANITIZE=ON); select=(-LE long) ;;
    fuzz) opts=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEC_FUZZ=ON); select=(-L fuzz) ;;
    esac
    # the fuzz stage builds only what its tests run: the harnesses
    target=()
    [ "$config" = fuzz ] && target=(--target fuzz)
    echo "== $config: build"
    mkdir -p "$dir"
    if ! cmake -S . -B "$dir" "${opts[@]}" >"$dir/configure.log" 2>&1; then
        cat "$dir/configure.log" >&2
        echo "check.sh: $config configure failed" >&2
        exit 1
    fi
    if ! cmake --build "$dir" "${target[@]}" -j"$(nproc)" >"$dir/build.log" 2>&1; then
        grep -E 'error|warning' "$dir/build.log" | head -n 40 >&2 || tail -n 40 "$dir/build.log" >&2
        echo "check.sh: $config build failed (log: $dir/build.log)" >&2
        exit 1
    fi
    echo "== $config: ctest"
    log="$dir/ctest.log"
    if ! ctest --test-dir "$dir" --output-on-failure -j2 "${select[@]}" 2>&1 | tee "$log"; then
        failed=1
    fi
    grep -q "tests passed" "$log" || failed=1
    grep -q ", 0 tests failed" "$log" || failed=1
    summaries+=("$config: $(grep 'tests passed' "$log" | tail -n 1)")
done

echo "== summary"
for s in "${summaries[@]}"; do echo "$s"; done
last=$(grep 'tests passed' "$log" | tail -n 1)
if [ "$failed" != 0 ]; then
    echo "check.sh: FAILED" >&2
    echo "$last"
    exit 1
fi
echo "$last"
