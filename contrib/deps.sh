#!/bin/sh
# deps.sh - install the Debian packages pecmilter needs, only those missing.
#
#   contrib/deps.sh build   what building needs
#   contrib/deps.sh test    building, plus what the test suite runs against
#   contrib/deps.sh demo    building, plus what contrib/demo.sh runs
#   contrib/deps.sh bench   the demo's, plus what contrib/bench.sh runs
#   contrib/deps.sh fuzz    building, plus libFuzzer (contrib/fuzz.sh, PEC_FUZZ=ON)
#
# Non-interactive; Postfix is preseeded with "No configuration" so the
# package does not configure or start a system-wide instance.
set -eu

BUILD="gcc clang cmake make pkg-config libmilter-dev libgmime-3.0-dev libconfig-dev
       libssl-dev libxml2-dev libxmlsec1-dev libsqlite3-dev clang-format openssl ca-certificates"
# libsasl2-modules: the submission listener enables Cyrus SASL (XCLIENT LOGIN=
# needs it), and smtpd dies "no SASL authentication mechanisms" without them.
RUN="python3 postfix procps bsdutils libsasl2-modules"
# git: check.sh lists the files to format-check with git ls-files; without it
# the check passes having checked nothing.
TEST="git libxml2-utils gpgsm dovecot-core dovecot-lmtpd systemd man-db groff-base
      m4 libwrap0 liblockfile1 sasl2-bin libsasl2-modules-db"
BENCH="gnuplot-nox valgrind"
# libFuzzer and the sanitizer runtimes of Debian's clang (PEC_FUZZ=ON, t/fuzz); the test
# run has a fuzz stage, so "test" wants them too
FUZZ="libclang-rt-14-dev"

case "${1:-build}" in
build) want="$BUILD" ;;
demo) want="$BUILD $RUN" ;;
test) want="$BUILD $RUN $TEST $FUZZ" ;;
bench) want="$BUILD $RUN $BENCH" ;;
fuzz) want="$BUILD $FUZZ" ;;
*)
    echo "usage: $0 build|test|demo|bench|fuzz" >&2
    exit 64
    ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: these Debian packages are missing:$missing" >&2
    echo "deps.sh: run as root, or install them with apt-get" >&2
    exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# The package lists may be missing or stale on a fresh machine.
if ! apt-get install -y -q --no-install-recommends $missing >/tmp/pecmilter-deps.log 2>&1; then
    apt-get update -q >/tmp/pecmilter-deps.log 2>&1 || true
    apt-get install -y -q --no-install-recommends $missing >>/tmp/pecmilter-deps.log 2>&1 || {
        tail -20 /tmp/pecmilter-deps.log >&2
        echo "deps.sh: apt-get install failed (log: /tmp/pecmilter-deps.log)" >&2
        exit 1
    }
fi
