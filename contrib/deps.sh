#!/bin/sh
# deps.sh - install the Debian packages pecmilter needs, only those missing.
#
#   contrib/deps.sh build   what building needs
#   contrib/deps.sh test    building, plus what the test suite runs against
#   contrib/deps.sh demo    building, plus what contrib/demo.sh runs
#   contrib/deps.sh demo-nodes  the demo's, plus PostgreSQL (contrib/demo.sh --nodes 2)
#   contrib/deps.sh bench   the demo's, plus what contrib/bench.sh runs
#   contrib/deps.sh fuzz    building, plus libFuzzer (contrib/fuzz.sh, PEC_FUZZ=ON)
#
# Non-interactive; Postfix and slapd are preseeded with "No configuration" so
# the packages do not configure or start a system-wide instance.  (nginx-light
# starts Debian's own site on port 80 where systemd runs services; the tests
# never use it: they run a private nginx on loopback ports of their own.)
set -eu

BUILD="gcc clang cmake make pkg-config libmilter-dev libgmime-3.0-dev libconfig-dev
       libssl-dev libxml2-dev libxmlsec1-dev libsqlite3-dev libpq-dev libcurl4-openssl-dev
       libldap2-dev
       clang-format openssl ca-certificates"
# libsasl2-modules: the submission listener enables Cyrus SASL (XCLIENT LOGIN=
# needs it), and smtpd dies "no SASL authentication mechanisms" without them.
RUN="python3 postfix procps bsdutils libsasl2-modules"
# git: check.sh lists the files to format-check with git ls-files; without it
# the check passes having checked nothing.
# slapd, ldap-utils, nginx-light: the providers' index from a real LDAP
# directory and a real HTTPS server (t/pectest/slapd.py, t/pectest/https.py);
# clamav-daemon: the tests and the benchmark start a clamd of their own, on a
# private socket with a signature database they write (t/pectest/clamd.py).
# postgresql-15: the store's tests run a PostgreSQL of their own, initdb'd
# into a temporary directory (t/pectest/postgres.py); nothing system-wide.
TEST="git libxml2-utils gpgsm dovecot-core dovecot-lmtpd systemd man-db groff-base
      m4 libwrap0 liblockfile1 sasl2-bin libsasl2-modules-db slapd ldap-utils nginx-light
      clamav-daemon postgresql-15"
# postgresql-15: `contrib/demo.sh --nodes 2` initdb's a cluster of its own into
# its directory for the two nodes' shared store; nothing system-wide.
NODES="postgresql-15"
BENCH="gnuplot-nox valgrind clamav-daemon postgresql-15"
# libFuzzer and the sanitizer runtimes of Debian's clang (PEC_FUZZ=ON, t/fuzz)
FUZZ="libclang-rt-14-dev"

case "${1:-build}" in
build) want="$BUILD" ;;
demo) want="$BUILD $RUN" ;;
demo-nodes) want="$BUILD $RUN $NODES" ;;
test) want="$BUILD $RUN $TEST $FUZZ" ;;
bench) want="$BUILD $RUN $BENCH" ;;
fuzz) want="$BUILD $FUZZ" ;;
*)
    echo "usage: $0 build|test|demo|demo-nodes|bench|fuzz" >&2
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
# slapd's package would make and start a directory of its own: the tests run theirs
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
# No freshclam daemon; and while installing, no service may start (a
# policy-rc.d that refuses every action, unless the machine has its own):
# clamav-freshclam's postinst would download the signatures right away and
# clamav-daemon's would start the system's clamd, neither of which the tests
# want.  A production machine runs freshclam on purpose (README).
echo "clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual" |
    debconf-set-selections
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# contrib/deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
# The package lists may be missing or stale on a fresh machine.
if ! apt-get install -y -q --no-install-recommends $missing >/tmp/pecmilter-deps.log 2>&1; then
    apt-get update -q >/tmp/pecmilter-deps.log 2>&1 || true
    apt-get install -y -q --no-install-recommends $missing >>/tmp/pecmilter-deps.log 2>&1 || {
        tail -20 /tmp/pecmilter-deps.log >&2
        echo "deps.sh: apt-get install failed (log: /tmp/pecmilter-deps.log)" >&2
        exit 1
    }
fi
