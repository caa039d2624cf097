#!/bin/sh
# run.sh BINARY NAME SECONDS - one "fuzz" test (t/fuzz/CMakeLists.txt).
#
# First every reproducer kept in crashes/NAME/ is run on its own, so a regression names
# its file; then the harness loads its seeds (seeds/NAME/, plus, read where they are and
# never copied into the project, t/golden and ../shared's corpora for the harnesses that
# read whole messages, the test PKI's index for ldif) and fuzzes for SECONDS.  What the
# fuzzer finds goes to the build directory (t/fuzz/work/NAME/), a crash as crash-<sha1>:
# minimise it there with `BINARY -minimize_crash=1 FILE` and keep it in crashes/NAME/.
set -eu

bin=$1
name=$2
seconds=$3
src=${PEC_SRC_DIR:?run through ctest or contrib/fuzz.sh}
here=$src/t/fuzz
work=${PEC_BUILD_DIR:?}/t/fuzz/work/$name

rm -rf "$work"
mkdir -p "$work/corpus" "$work/extra"

dirs="$here/seeds/$name"
crashes=$here/crashes/$name
if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes")" ]; then
    echo "== $name: replaying $(ls "$crashes" | wc -l) reproducers of crashes/$name"
    "$bin" -timeout=10 "$crashes"/*
    dirs="$dirs $crashes"
fi

shared=${PEC_SHARED_DIR:-}
message=0
case "$name" in
mime | gmime | original | inspect | feed | breve)
    message=1
    dirs="$dirs $src/t/golden"
    [ -n "$shared" ] && [ -d "$shared/corpus" ] && dirs="$dirs $shared/corpus"
    ;;
rem)
    [ -n "$shared" ] && [ -d "$shared/corpus-rem" ] && dirs="$dirs $shared/corpus-rem"
    ;;
ldif)
    cp "${PEC_PKI_DIR:?}/index.ldif" "$work/extra/"
    dirs="$dirs $work/extra"
    ;;
esac

# the harnesses that read whole messages share mime.dict unless they have their own
dict=""
if [ -f "$here/$name.dict" ]; then
    dict="-dict=$here/$name.dict"
elif [ "$message" = 1 ]; then
    dict="-dict=$here/mime.dict"
fi

echo "== $name: fuzzing for $seconds s from$(for d in $dirs; do printf ' %s' "${d#"$src"/}"; done)"
# shellcheck disable=SC2086 # $dict and $dirs are word lists
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" $dict "$work/corpus" $dirs
