#!/bin/sh
# run.sh [--keep] BINARY NAME SECONDS - fuzz one harness (t/fuzz/fuzz_NAME.c).
#
# The "fuzz" tests run it as it is (t/fuzz/CMakeLists.txt): first every reproducer kept
# in crashes/NAME/ is run on its own, so a regression names its file; then the harness
# loads its seeds (seeds/NAME/, plus, read where they are and never copied into the
# project, t/golden and ../shared's corpora for the harnesses that read whole messages,
# the test PKI's index for ldif) and fuzzes for SECONDS.  What it finds goes to the build
# directory, t/fuzz/work/NAME/: the corpus it grew, and a crash as crash-<sha1> (minimise
# it with `BINARY -minimize_crash=1 FILE` and keep it in crashes/NAME/).
#
# The test run fuzzes from a fixed seed (PEC_FUZZ_SEED, 1 unless set; 0 asks libFuzzer
# for a fresh one), so that a red run mostly replays as it ran (not exactly: how far
# 30 s go differs, and so do values libFuzzer picks up from comparisons with addresses).
# Finding new inputs is the long sessions' job, and each of those takes a fresh seed.
#
# --keep (contrib/fuzz.sh): start from the corpus a previous session left in
# t/fuzz/work/NAME/ instead of an empty one, so long sessions add up; a fresh seed.
#
# Needs PEC_SRC_DIR, PEC_BUILD_DIR and PEC_PKI_DIR (ctest sets them); PEC_SHARED_DIR
# when ../shared is there.  The last line printed is libFuzzer's, with cov and ft.
set -eu

keep=0
if [ "${1:-}" = --keep ]; then
    keep=1
    shift
fi
bin=$1
name=$2
seconds=$3
src=${PEC_SRC_DIR:?run through ctest or contrib/fuzz.sh}
here=$src/t/fuzz
work=${PEC_BUILD_DIR:?}/t/fuzz/work/$name

[ "$keep" = 1 ] || rm -rf "$work"
rm -rf "$work/extra"
mkdir -p "$work/corpus" "$work/extra"

dirs="$here/seeds/$name"
crashes=$here/crashes/$name
if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes")" ]; then
    echo "== $name: replaying $(ls "$crashes" | wc -l) reproducers of crashes/$name"
    "$bin" -timeout=10 -rss_limit_mb=2048 "$crashes"/*
    dirs="$dirs $crashes"
fi

shared=${PEC_SHARED_DIR:-}
message=0
case "$name" in
mime | gmime | original | inspect | feed | breve | sevenbit)
    message=1
    dirs="$dirs $src/t/golden"
    if [ -n "$shared" ] && [ -d "$shared/corpus" ]; then dirs="$dirs $shared/corpus"; fi
    ;;
rem)
    if [ -n "$shared" ] && [ -d "$shared/corpus-rem" ]; then dirs="$dirs $shared/corpus-rem"; fi
    ;;
ldif)
    cp "${PEC_PKI_DIR:?}/index.ldif" "$work/extra/"
    dirs="$dirs $work/extra"
    ;;
crl)
    # the test PKI's CRLs (selector 0) and a certificate naming a distribution point (1)
    for f in pecca.crl pecca-stale.crl; do
        { printf '\000'; cat "${PEC_PKI_DIR:?}/$f"; } >"$work/extra/$f"
        { printf '\000'; openssl crl -in "$PEC_PKI_DIR/$f" -outform DER; } >"$work/extra/$f.der"
    done
    { printf '\001'; cat "$PEC_PKI_DIR/b/cert.der"; } >"$work/extra/b.der"
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

seed=0
[ "$keep" = 1 ] || seed=${PEC_FUZZ_SEED:-1}
echo "== $name: fuzzing for $seconds s (seed $seed) from$(for d in $dirs; do printf ' %s' "${d#"$src"/}"; done)"
# shellcheck disable=SC2086 # $dict and $dirs are word lists
exec "$bin" -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" $dict "$work/corpus" $dirs
