#!/bin/sh
# mkpki.sh OUTDIR -- generate the test PKI and providers' index used by the
# whole test suite (ctest runs it as the "pki" setup fixture).
#
# Why the certificates look the way they do:
#  * A real PEC signing certificate is issued by AgID CA1 (pathlen 0) under a
#    public root, and must follow pec-rules.md section 6.2 strictly: critical
#    keyUsage digitalSignature only, SAN rfc822Name, SKI, AKI keyid, and NO
#    basicConstraints.  The test PKI mimics that: root -> "Test PEC CA1" ->
#    provider certificates, so the verifier is exercised on the real shape.
#  * Tests sign with a fixed clock in the past, so every validity window is
#    fixed (2019..2050) instead of "now": `openssl x509` in OpenSSL 3.0 cannot
#    backdate, `openssl ca -startdate/-enddate` can.
#  * The providers' index (section 7) is written as LDIF and also distributed
#    signed (index.ldif.p7m) by an authority's own signing certificate
#    ("authority", like AgID's), as the real directory is.
#  * B's certificate names a CRL distribution point (http://crl.pec.test/
#    pecca.crl: a name no resolver knows, so only a test that serves it
#    through an HTTP proxy reaches it), and the PEC CA's CRL (pecca.crl)
#    revokes it as of 2025-01-01: what B signed before still stands, what
#    it signs now is not PEC.  pecca-stale.crl is the same CRL long past its
#    nextUpdate.
#  * server/ is a TLS server certificate for 127.0.0.1 and localhost (the
#    tests' HTTPS and LDAP servers), tls-a/ and tls-rogue/ TLS client
#    certificates (clientAuth) under the PEC CA and under a CA nobody trusts.
#
# Idempotent and fast: if OUTDIR/.complete is newer than this script, nothing
# is done.  Otherwise everything is built in a temporary directory next to
# OUTDIR and renamed into place, so OUTDIR is never seen half-written.
# Needs a POSIX shell, awk, GNU mv (-T) and the openssl CLI.

set -eu

PROG=mkpki.sh

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: sh mkpki.sh OUTDIR"
OUTDIR=${1%/}
[ -n "$OUTDIR" ] || die "OUTDIR must not be /"
SELF=$0

# fresh: OUTDIR/.complete exists and is newer than this script.
fresh() {
    [ -f "$OUTDIR/.complete" ] &&
        [ -n "$(find "$OUTDIR/.complete" -prune -newer "$SELF" 2>/dev/null)" ]
}

if fresh; then
    exit 0
fi

command -v openssl >/dev/null 2>&1 || die "openssl not found in PATH"
command -v awk >/dev/null 2>&1 || die "awk not found in PATH"

PARENT=$(dirname "$OUTDIR")
mkdir -p "$PARENT" || die "cannot create $PARENT"

TMP=
OLD=
cleanup() {
    [ -z "$TMP" ] || rm -rf "$TMP"
    [ -z "$OLD" ] || rm -rf "$OLD"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "$OUTDIR.tmp.XXXXXX") || die "cannot create a temporary directory next to $OUTDIR"
WORK=$TMP/.work
mkdir "$WORK"
LOG=$WORK/log

# run CMD...: run quietly; on failure show what it said and stop.
run() {
    : >"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        printf '%s: error: command failed: %s\n' "$PROG" "$*" >&2
        sed 's/^/    /' "$LOG" >&2
        exit 1
    fi
}

umask 077

# --- CA machinery -----------------------------------------------------------

# ca_init NAME: a minimal `openssl ca` database for one issuer.
ca_init() {
    d=$WORK/ca-$1
    mkdir -p "$d/new"
    : >"$d/index.txt"
    cat >"$d/ca.cnf" <<EOF
[ ca ]
default_ca = this_ca

[ this_ca ]
dir              = $d
database         = \$dir/index.txt
new_certs_dir    = \$dir/new
serial           = \$dir/serial
default_md       = sha256
policy           = policy_any
preserve         = yes
unique_subject   = no
email_in_dn      = no
copy_extensions  = none
default_days     = 3650

[ policy_any ]
countryName      = optional
organizationName = optional
commonName       = supplied

[ req ]
distinguished_name = req_dn
prompt             = no
[ req_dn ]
CN = placeholder
EOF
}

# newkey FILE: RSA 2048 private key (PKCS#8 PEM, unencrypted).
newkey() {
    run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
    chmod 600 "$1"
}

# issue CA-NAME|selfsign:CA-NAME KEY SUBJ START END EXTFILE OUT [ISSUERCERT ISSUERKEY]
issue() {
    _ca=$1 _key=$2 _subj=$3 _start=$4 _end=$5 _ext=$6 _out=$7
    _csr=$WORK/$(basename "$_out").$$.csr
    case $_ca in
    selfsign:*)
        _ca=${_ca#selfsign:}
        run openssl req -new -config "$WORK/ca-$_ca/ca.cnf" -key "$_key" \
            -subj "$_subj" -out "$_csr"
        run openssl ca -batch -notext -config "$WORK/ca-$_ca/ca.cnf" \
            -selfsign -keyfile "$_key" -rand_serial \
            -startdate "$_start" -enddate "$_end" \
            -extfile "$_ext" -extensions ext -in "$_csr" -out "$_out"
        ;;
    *)
        run openssl req -new -config "$WORK/ca-$_ca/ca.cnf" -key "$_key" \
            -subj "$_subj" -out "$_csr"
        run openssl ca -batch -notext -config "$WORK/ca-$_ca/ca.cnf" \
            -cert "$8" -keyfile "$9" -rand_serial \
            -startdate "$_start" -enddate "$_end" \
            -extfile "$_ext" -extensions ext -in "$_csr" -out "$_out"
        ;;
    esac
    rm -f "$_csr"
}

# provider_ext FILE DOMAIN: extensions of a PEC signing certificate (6.2).
# Exactly these, so openssl adds nothing (in particular no basicConstraints).
provider_ext() {
    cat >"$1" <<EOF
[ ext ]
keyUsage               = critical, digitalSignature
extendedKeyUsage       = emailProtection
subjectAltName         = email:posta-certificata@$2
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
}

ca_ext() {
    cat >"$1" <<EOF
[ ext ]
basicConstraints       = critical, CA:TRUE$2
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
}

# --- root and PEC CA --------------------------------------------------------

ca_init root
ca_init pecca
ca_init self
ca_init other

ca_ext "$WORK/root.ext" ""
ca_ext "$WORK/pecca.ext" ", pathlen:0"

newkey "$TMP/root.key"
issue selfsign:root "$TMP/root.key" "/C=IT/O=pecmilter tests/CN=PEC Test Root CA" \
    20190101000000Z 20500101000000Z "$WORK/root.ext" "$TMP/root.pem"

newkey "$TMP/pecca.key"
issue root "$TMP/pecca.key" "/C=IT/O=pecmilter tests/CN=Test PEC CA1" \
    20190601000000Z 20490101000000Z "$WORK/pecca.ext" "$TMP/pecca.pem" \
    "$TMP/root.pem" "$TMP/root.key"

cp "$TMP/root.pem" "$TMP/trust.pem"

# --- provider certificates --------------------------------------------------

# provider DIR LABEL DOMAIN START END [selfsign|crl]
provider() {
    _dir=$TMP/$1 _label=$2 _dom=$3
    mkdir "$_dir"
    provider_ext "$WORK/$1.ext" "$_dom"
    if [ "${6:-}" = crl ]; then
        echo "crlDistributionPoints  = URI:http://crl.pec.test/pecca.crl" >>"$WORK/$1.ext"
    fi
    newkey "$_dir/key.pem"
    _psubj="/C=IT/O=Gestore $_label S.p.A./CN=Posta Certificata Gestore $_label S.p.A."
    if [ "${6:-}" = selfsign ]; then
        issue selfsign:self "$_dir/key.pem" "$_psubj" "$4" "$5" \
            "$WORK/$1.ext" "$_dir/cert.pem"
    else
        issue pecca "$_dir/key.pem" "$_psubj" "$4" "$5" \
            "$WORK/$1.ext" "$_dir/cert.pem" "$TMP/pecca.pem" "$TMP/pecca.key"
    fi
    cp "$TMP/pecca.pem" "$_dir/chain.pem"
    run openssl x509 -in "$_dir/cert.pem" -outform DER -out "$_dir/cert.der"
}

provider a        A     pec-a.test     20200101000000Z 20450101000000Z
provider b        B     pec-b.test     20200101000000Z 20450101000000Z crl
provider rogue    Rogue pec-rogue.test 20200101000000Z 20450101000000Z
provider expired  A     pec-a.test     20200101000000Z 20210101000000Z
provider b-old    B     pec-b.test     20190701000000Z 20210701000000Z
provider selfsigned A   pec-a.test     20200101000000Z 20450101000000Z selfsign

# --- the index authority, TLS certificates -----------------------------------

# ext_file FILE KEYUSAGE EKU [SAN]: the extensions of a non-CA certificate
ext_file() {
    {
        echo "[ ext ]"
        echo "keyUsage               = critical, $2"
        echo "extendedKeyUsage       = $3"
        [ -z "${4:-}" ] || echo "subjectAltName         = $4"
        echo "subjectKeyIdentifier   = hash"
        echo "authorityKeyIdentifier = keyid:always"
    } >"$1"
}

# authority/: signs the whole directory, as AgID does; under the test root
mkdir "$TMP/authority"
ext_file "$WORK/authority.ext" digitalSignature emailProtection
newkey "$TMP/authority/key.pem"
issue root "$TMP/authority/key.pem" "/C=IT/O=pecmilter tests/CN=Test Index Authority" \
    20190601000000Z 20490101000000Z "$WORK/authority.ext" "$TMP/authority/cert.pem" \
    "$TMP/root.pem" "$TMP/root.key"

# server/: the tests' HTTPS and LDAP servers on loopback
mkdir "$TMP/server"
ext_file "$WORK/server.ext" "digitalSignature, keyEncipherment" serverAuth \
    "IP:127.0.0.1, DNS:localhost"
newkey "$TMP/server/key.pem"
issue root "$TMP/server/key.pem" "/C=IT/O=pecmilter tests/CN=127.0.0.1" \
    20190601000000Z 20490101000000Z "$WORK/server.ext" "$TMP/server/cert.pem" \
    "$TMP/root.pem" "$TMP/root.key"

# tls-a/: provider A's TLS client certificate for the authority's server;
# tls-rogue/: the same shape under a CA the server does not trust
ext_file "$WORK/client.ext" digitalSignature clientAuth
ca_ext "$WORK/other.ext" ""
newkey "$WORK/other.key"
issue selfsign:other "$WORK/other.key" "/C=IT/O=nobody/CN=Untrusted CA" \
    20190101000000Z 20500101000000Z "$WORK/other.ext" "$WORK/other.pem"
mkdir "$TMP/tls-a" "$TMP/tls-rogue"
newkey "$TMP/tls-a/key.pem"
newkey "$TMP/tls-rogue/key.pem"
issue pecca "$TMP/tls-a/key.pem" "/C=IT/O=Gestore A S.p.A./CN=Gestore A S.p.A. index client" \
    20200101000000Z 20450101000000Z "$WORK/client.ext" "$TMP/tls-a/cert.pem" \
    "$TMP/pecca.pem" "$TMP/pecca.key"
issue other "$TMP/tls-rogue/key.pem" "/C=IT/O=Rogue/CN=Rogue index client" \
    20200101000000Z 20450101000000Z "$WORK/client.ext" "$TMP/tls-rogue/cert.pem" \
    "$WORK/other.pem" "$WORK/other.key"

# --- revocation: B's certificate, as of 2025-01-01 -------------------------------

# `openssl ca -revoke` would stamp the revocation with today; the database
# line says 2025-01-01 (UTCTime) and keyCompromise instead.
b_serial=$(openssl x509 -in "$TMP/b/cert.pem" -noout -serial | sed 's/^serial=//')
[ -n "$b_serial" ] || die "no serial in b/cert.pem"
awk -v s="$b_serial" 'BEGIN { FS = OFS = "\t" }
    $4 == s { $1 = "R"; $3 = "250101000000Z,keyCompromise" } { print }' \
    "$WORK/ca-pecca/index.txt" >"$WORK/pecca-index.txt"
grep -q "^R" "$WORK/pecca-index.txt" || die "b's serial $b_serial not in the PEC CA's database"
mv "$WORK/pecca-index.txt" "$WORK/ca-pecca/index.txt"
echo 01 >"$WORK/ca-pecca/crlnumber"
sed 's|^serial .*$|&\ncrlnumber        = $dir/crlnumber|' "$WORK/ca-pecca/ca.cnf" \
    >"$WORK/pecca-crl.cnf"
for crl in pecca:20490101000000Z pecca-stale:20250201000000Z; do
    run openssl ca -batch -gencrl -config "$WORK/pecca-crl.cnf" \
        -cert "$TMP/pecca.pem" -keyfile "$TMP/pecca.key" \
        -crl_lastupdate 20250102000000Z -crl_nextupdate "${crl#*:}" -out "$TMP/${crl%%:*}.crl"
done
run openssl crl -in "$TMP/pecca.crl" -noout -text
grep -q "Serial Number: $b_serial" "$LOG" || die "pecca.crl does not list b's serial"

# --- sanity checks (fail loudly rather than hand tests a wrong PKI) -------------

for p in a b rogue expired b-old; do
    run openssl verify -attime 1609000000 -CAfile "$TMP/trust.pem" \
        -untrusted "$TMP/pecca.pem" "$TMP/$p/cert.pem"
done
if openssl verify -CAfile "$TMP/trust.pem" -untrusted "$TMP/pecca.pem" \
        "$TMP/selfsigned/cert.pem" >/dev/null 2>&1; then
    die "selfsigned/cert.pem unexpectedly verifies against the test root"
fi
for p in a b rogue expired b-old selfsigned; do
    run openssl x509 -in "$TMP/$p/cert.pem" -noout -text
    if grep -q 'Basic Constraints' "$LOG"; then
        die "$p/cert.pem carries basicConstraints, forbidden by pec-rules 6.2"
    fi
    grep -A1 'X509v3 Key Usage: critical' "$LOG" | grep -q '^ *Digital Signature$' ||
        die "$p/cert.pem: keyUsage is not exactly critical digitalSignature"
done

# --- providers' index (pec-rules section 7) ----------------------------------

# sha1hex FILE: lowercase hex SHA-1 of a file.
sha1hex() {
    openssl dgst -sha1 -r "$1" | awk '{ print tolower($1) }'
}

# certattrs DIR...: the hash and certificate attributes of a provider record,
# the certificate folded at 76 columns as LDIF (RFC 2849) does it.
certattrs() {
    for _d in "$@"; do
        _h=$(sha1hex "$TMP/$_d/cert.der") || die "sha1 of $_d/cert.der"
        [ ${#_h} -eq 40 ] || die "bad sha1 of $_d/cert.der: $_h"
        printf 'providerCertificateHash: %s\n' "$_h"
    done
    for _d in "$@"; do
        _b=$(openssl base64 -A -in "$TMP/$_d/cert.der") || die "base64 of $_d/cert.der"
        printf 'providerCertificate;binary:: %s\n' "$_b" | awk '{
            s = $0
            print substr(s, 1, 76)
            s = substr(s, 77)
            while (length(s) > 0) { print " " substr(s, 1, 75); s = substr(s, 76) }
        }'
    done
}

{
    cat <<'EOF'
dn: o=postacert
objectclass: top
objectclass: organization
objectclass: LDIFLocationURLObject
o: postacert
LDIFLocationURL: https://index.test/ldif.p7m

dn: providerName=Gestore A S.p.A.,o=postacert
objectclass: top
objectclass: provider
providerName: Gestore A S.p.A.
EOF
    certattrs a
    cat <<'EOF'
mailReceipt: ricevute@pec-a.test
managedDomains: pec-a.test
managedDomains: pec-a2.test
description: Test PEC provider A (two managed domains)

dn: providerName=Gestore B S.p.A.,o=postacert
objectclass: top
objectclass: provider
providerName: Gestore B S.p.A.
EOF
    certattrs b b-old
    cat <<'EOF'
mailReceipt: ricevute@pec-b.test
managedDomains: pec-b.test
description: Test PEC provider B (current and older certificate)
EOF
} >"$WORK/index.ldif"
awk 'length($0) > 76 { exit 1 }' "$WORK/index.ldif" || die "index.ldif has a line over 76 columns"
mv "$WORK/index.ldif" "$TMP/index.ldif"

run openssl cms -sign -nodetach -binary -outform DER -md sha256 \
    -signer "$TMP/authority/cert.pem" -inkey "$TMP/authority/key.pem" \
    -in "$TMP/index.ldif" -out "$TMP/index.ldif.p7m"
run openssl cms -verify -inform DER -in "$TMP/index.ldif.p7m" -binary \
    -CAfile "$TMP/authority/cert.pem" -partial_chain -out "$WORK/index.check"
cmp -s "$WORK/index.check" "$TMP/index.ldif" ||
    die "index.ldif.p7m does not give back index.ldif"

# --- README and install -------------------------------------------------------

cat >"$TMP/README" <<'EOF'
Test PKI and providers' index for pecmilter, generated by t/pki/mkpki.sh.
Throwaway keys: never use them outside the tests.  All RSA 2048, SHA-256.

root.pem, root.key    self-signed "CN=PEC Test Root CA, O=pecmilter tests, C=IT",
                      2019-01-01 .. 2050-01-01
pecca.pem, pecca.key  "CN=Test PEC CA1, O=pecmilter tests, C=IT" under the root
                      (like AgID CA1), pathlen 0, 2019-06-01 .. 2049-01-01
trust.pem             trust anchors = root.pem only (pecca travels as chain)
NAME/                 cert.pem, key.pem (0600), chain.pem (= pecca.pem), cert.der
  a, b, rogue         signing certs per pec-rules 6.2 of "Gestore A/B/Rogue S.p.A.",
                      SAN posta-certificata@pec-NAME.test, 2020-01-01 .. 2045-01-01
  expired             like a (pec-a.test identity), valid 2020-01-01 .. 2021-01-01
  b-old               older cert of B, 2019-07-01 .. 2021-07-01, listed in the index
  selfsigned          like a but self-signed, not under the test root; its
                      chain.pem is pecca.pem too (unrelated CA, as an attacker
                      would attach)
index.ldif            providers' index (pec-rules 7): o=postacert, providers a
                      (pec-a.test, pec-a2.test) and b (pec-b.test; certs b and b-old)
index.ldif.p7m        index.ldif as CMS signed-data (DER, attached, SHA-256) signed
                      by the authority; carries authority/cert.pem
authority/            cert.pem, key.pem: "CN=Test Index Authority" under the root,
                      the signer of the whole directory (index_signer)
server/               TLS server certificate for 127.0.0.1 and localhost, under the root
tls-a/, tls-rogue/    TLS client certificates (clientAuth): A's under the PEC CA,
                      the rogue's under a CA nobody trusts
pecca.crl             the PEC CA's CRL, 2025-01-02 .. 2049-01-01: b/cert.pem revoked
                      at 2025-01-01 00:00:00Z, keyCompromise (b's certificate names
                      http://crl.pec.test/pecca.crl as its distribution point)
pecca-stale.crl       the same, nextUpdate 2025-02-01: long past
.complete             stamp: generation finished
EOF

rm -rf "$WORK"
chmod 755 "$TMP"
for f in "$TMP"/*.pem "$TMP"/*/cert.pem "$TMP"/*/chain.pem "$TMP"/*/cert.der \
         "$TMP"/index.ldif "$TMP"/index.ldif.p7m "$TMP"/*.crl "$TMP"/README; do
    chmod 644 "$f"
done
for d in "$TMP"/*/; do chmod 755 "$d"; done
chmod 600 "$TMP"/*.key "$TMP"/*/key.pem
: >"$TMP/.complete"
chmod 644 "$TMP/.complete"

# Swap into place.  rename(2) cannot replace a non-empty directory, so the old
# tree is first renamed aside; then the new one is renamed in.
if [ -e "$OUTDIR" ] || [ -L "$OUTDIR" ]; then
    OLD="$OUTDIR.old.$$"
    rm -rf "$OLD"
    mv -f "$OUTDIR" "$OLD" || die "cannot move the old $OUTDIR aside"
fi
if ! mv -T "$TMP" "$OUTDIR" 2>/dev/null; then
    # Someone else installed a tree meanwhile: fine if it is complete.
    if fresh; then
        exit 0
    fi
    die "cannot rename $TMP to $OUTDIR"
fi
TMP=
exit 0
