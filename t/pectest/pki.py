"""The test PKI and providers' index made by t/pki/mkpki.sh.

Layout of PKI (see PKI/README):
  root.pem root.key     test root CA; trust.pem holds it alone (trust anchor)
  pecca.pem pecca.key   "Test PEC CA1" under the root, like AgID CA1
  NAME/                 cert.pem key.pem chain.pem (= pecca.pem) cert.der
      a, b, rogue       signing certs per pec-rules 6.2, 2020-01-01..2045-01-01
      expired           pec-a.test identity, valid 2020-01-01..2021-01-01 only
      b-old             older cert of B, 2019-07-01..2021-07-01 (in the index)
      selfsigned        pec-a.test identity, self-signed (not under the root)
  index.ldif            providers' index: a (pec-a.test, pec-a2.test) and b
                        (pec-b.test, certificates b and b-old); not rogue
  index.ldif.p7m        index.ldif signed (CMS, DER, attached) by the authority
  authority/            cert.pem key.pem: the index's signer (index_signer)
  server/               cert.pem key.pem: TLS server certificate for 127.0.0.1
  tls-a/, tls-rogue/    TLS client certificates: A's (under pecca), a stranger's
  pecca.crl             the PEC CA's CRL: b revoked at 2025-01-01 (REVOKED_AT);
                        pecca-stale.crl the same past its nextUpdate; b's
                        certificate names CRL_URL as its distribution point

Paths are returned whether or not the files exist yet: call ensure() first
when a test may be run by hand, outside ctest's "pki" fixture.
"""
import hashlib
import os
import subprocess

from pectest import env

PKI = env.PKI_DIR
SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "pki", "mkpki.sh")

INDEX_URL = "https://index.test/ldif.p7m"
# B's revocation (pecca.crl) and the distribution point its certificate names
REVOKED_AT = 1735689600                      # 2025-01-01T00:00:00Z
CRL_URL = "http://crl.pec.test/pecca.crl"
# providers listed in index.ldif
IN_INDEX = ("a", "b")

# name -> (letter in the provider name, mail domain of the certificate)
_IDENTITY = {
    "a": ("A", "pec-a.test"),
    "b": ("B", "pec-b.test"),
    "rogue": ("Rogue", "pec-rogue.test"),
    "expired": ("A", "pec-a.test"),
    "selfsigned": ("A", "pec-a.test"),
    "b-old": ("B", "pec-b.test"),
}
PROVIDERS = tuple(_IDENTITY)

# all managed domains per provider in the index
MANAGED_DOMAINS = {"a": ("pec-a.test", "pec-a2.test"), "b": ("pec-b.test",)}


def path(*parts):
    """A path under the PKI directory."""
    return os.path.join(PKI, *parts)


def provider(name):
    """Files and identity of one test provider certificate.

    name is one of PROVIDERS.  Returns a dict: cert, key, chain, der (paths),
    domain ('pec-a.test'), service ('posta-certificata@pec-a.test', the
    certificate's subjectAltName and From: of generated messages), receipt
    ('ricevute@pec-a.test', mailReceipt), provider_name ('Gestore A S.p.A.',
    providerName and O= of the certificate), plus name and dir.
    expired and selfsigned carry provider a's identity, b-old provider b's.
    """
    try:
        letter, domain = _IDENTITY[name]
    except KeyError:
        raise ValueError("unknown test provider %r (known: %s)"
                         % (name, ", ".join(PROVIDERS))) from None
    d = path(name)
    return {
        "name": name,
        "dir": d,
        "cert": os.path.join(d, "cert.pem"),
        "key": os.path.join(d, "key.pem"),
        "chain": os.path.join(d, "chain.pem"),
        "der": os.path.join(d, "cert.der"),
        "domain": domain,
        "service": "posta-certificata@" + domain,
        "receipt": "ricevute@" + domain,
        "provider_name": "Gestore %s S.p.A." % letter,
    }


def cert_sha1(name):
    """Lowercase hex SHA-1 of a provider's DER certificate (providerCertificateHash)."""
    with open(provider(name)["der"], "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def trust():
    """Trust anchors file: the test root only."""
    return path("trust.pem")


def root():
    """The test root CA certificate."""
    return path("root.pem")


def pecca():
    """The test PEC CA certificate (intermediate, travels as chain)."""
    return path("pecca.pem")


def index():
    """The providers' index, plain LDIF."""
    return path("index.ldif")


def index_p7m():
    """The providers' index signed by the authority (CMS signed-data, DER)."""
    return path("index.ldif.p7m")


def authority():
    """The index authority's certificate: what index_signer names."""
    return path("authority", "cert.pem")


def server():
    """(cert, key) of the TLS server certificate for 127.0.0.1 and localhost."""
    return path("server", "cert.pem"), path("server", "key.pem")


def tls_client(name="a"):
    """(cert, key) of a TLS client certificate: "a" under the PEC CA, "rogue" not."""
    return path("tls-" + name, "cert.pem"), path("tls-" + name, "key.pem")


def crl(stale=False):
    """The PEC CA's CRL revoking b (PEM), or its copy long past nextUpdate."""
    return path("pecca-stale.crl" if stale else "pecca.crl")


def sign(ldif, out, signer="authority"):
    """Sign the file LDIF (CMS, DER, attached) as SIGNER (a directory of the PKI) into OUT."""
    subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-binary", "-outform", "DER",
                    "-md", "sha256", "-signer", path(signer, "cert.pem"),
                    "-inkey", path(signer, "key.pem"), "-in", ldif, "-out", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out


def _fresh():
    stamp = path(".complete")
    try:
        return os.path.getmtime(stamp) > os.path.getmtime(SCRIPT)
    except OSError:
        return False


def ensure():
    """Generate the PKI into PKI unless it is already there and up to date.

    ctest does this in its "pki" fixture; this is for running a test by hand.
    Returns PKI.  Raises RuntimeError, with the script's message, on failure.
    """
    if _fresh():
        return PKI
    r = subprocess.run(["sh", SCRIPT, PKI], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0 or not os.path.exists(path(".complete")):
        raise RuntimeError("mkpki.sh %s failed (exit %d):\n%s"
                           % (PKI, r.returncode, r.stdout))
    return PKI
