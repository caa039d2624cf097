"""pecverify on REM (ETSI EN 319 532-4 and the Italian REM-Policy-IT), through the real binary.

The corpus is the two example kits of ../shared/corpus-rem (read there, never copied):
every signed .eml must come out as its file name and folder say (dispatch or receipt,
event, reason code) and valid against the kits' test roots, except the Italian examples
whose headers were pasted from another flow, which must be refused with the precise
reason.  For one message of each event type, one byte changed in the original, in the
evidence and in the envelope must each give its own reason.  The standalone evidence
documents must verify with --evidence.  The report has the keys of a PEC report.
Skipped, saying so, when PEC_SHARED_DIR is empty.
"""
import base64
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

from pectest import env, pki

PECVERIFY = env.program("pecverify")
IT = "it-agid-2022"
ETSI = "etsi-319532-4"

# REM_<Name>[Ext][1,2].<code>[.splitN].eml; TRY... marks a message the scenario only attempts
EML_NAME = re.compile(r"^(?:TRY\.\.\.)?REM_([A-Za-z]+?)(?:Ext)?[0-9,]*\.(R[A-F][0-9]{2})"
                      r"(?:\.split[0-9])?\.eml$")
# <Event>[Ext|t][N].<code>[.in-dispatch].xml (ContentConsignmentt1 is the kit's own typo)
XML_NAME = re.compile(r"^([A-Za-z]+?)(?:Ext|t)?[0-9]?\.(R[A-F][0-9]{2})(?:\.in-dispatch)?\.xml$")

PEC_EQUIVALENT = {
    ("dispatch", "SubmissionAcceptance"): "busta",
    ("dispatch", "ReceivedFromNonERDS"): "anomalia",
    ("receipt", "SubmissionAcceptance"): "accettazione",
    ("receipt", "SubmissionRejection"): "non-accettazione",
    ("receipt", "RelayAcceptance"): "presa-in-carico",
    ("receipt", "RelayFailure"): "errore-consegna",
    ("receipt", "ContentConsignment"): "avvenuta-consegna",
    ("receipt", "ContentConsignmentFailure"): "errore-consegna",
}

# The Italian kit's copy-paste defects (corpus README, rem-notes.md 3.2)
UA_DEFECT = re.compile(r"^the original's REM-UAMessageIdentifier <30be01d30072\$[0-9a-f]{8}"
                       r"\$f9b72bf0\$@de> is not the message's REM-UAMessageIdentifier "
                       r"<30be01d30072\$[0-9a-f]{8}\$f9b72bf0\$@it>$")
EVIDENCE_ID_DEFECT = ("REM-Evidence-ID <56A0CF65.00566CE0.242DDC3F.03B4A2C2.rem-service@"
                      "r2-rems-only-for-test.it> is not the evidence's EvidenceIdentifier "
                      "16A0CF65.00566CE0.242DDC3F.03B4A2C1.rem-service@s1-rems-only-for-test.it")


def corpus_root():
    if "PEC_SHARED_DIR" in os.environ and not os.environ["PEC_SHARED_DIR"]:
        env.skip("PEC_SHARED_DIR is empty: the REM example kits of ../shared/corpus-rem "
                 "are needed")
    return env.shared("corpus-rem")


ROOT = None  # set in main, once the skip has been decided


def run(*args, stdin=None):
    p = subprocess.run([PECVERIFY] + list(args), input=stdin, capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")


def expected(path):
    """(message type, event, reason code) that the file name and folder announce."""
    name, code = EML_NAME.match(os.path.basename(path)).groups()
    if name == "Dispatch":
        return "dispatch", "SubmissionAcceptance", code
    if name == "EXTERNAL":  # Inflow: a message from outside, handed on as a dispatch
        return "dispatch", "ReceivedFromNonERDS", code
    return "receipt", name, code


def defect(path):
    """The reason the kit's known defect gives, as a regex, or None."""
    rel = os.path.relpath(path, os.path.join(ROOT, IT))
    if rel.startswith(".."):
        return None
    if rel.startswith("Outflow/REM_RelayToNonERDS"):
        return re.compile("^" + re.escape(EVIDENCE_ID_DEFECT) + "$")
    if (expected(path)[0] == "dispatch" and "Between-REM-Service-providers" not in rel):
        return UA_DEFECT
    return None


def signed_emls():
    found = []
    for d, _, files in os.walk(ROOT):
        found += [os.path.join(d, f) for f in files if f.startswith(("REM_", "TRY...REM_"))
                  and f.endswith(".eml")]
    return sorted(found)


def kit_of(path):
    return IT if os.path.relpath(path, ROOT).startswith(IT) else ETSI


class Kits:
    """Trust bundles and the one run over the whole corpus, shared by the tests."""
    tmp = None
    reports = None

    @classmethod
    def setup(cls):
        if cls.tmp is not None:
            return
        cls.tmp = tempfile.TemporaryDirectory()
        roots = b""
        for rel in (IT + "/certificates/REM-ROOT-CA.crt",
                    ETSI + "/INFORMATIVE-EXAMPLES/CERTIFICATES/REM-ROOT-CA.crt"):
            with open(os.path.join(ROOT, rel), "rb") as f:
                roots += f.read() + b"\n"
        cls.roots = os.path.join(cls.tmp.name, "roots.pem")
        with open(cls.roots, "wb") as f:
            f.write(roots)
        cls.files = signed_emls()
        rc, out, err = run("--trust", cls.roots, "--json", *cls.files)
        assert rc in (0, 1), err
        cls.reports = dict((r["file"], r) for r in json.loads(out))


def evidence_part(raw):
    """(start, end) of the base64 body of the xml_evidence section."""
    at = raw.index(b"REM-Section-Type: rem_message/xml_evidence")
    start = raw.index(b"\r\n\r\n", at) + 4
    return start, raw.index(b"\r\n--", start)


def flip_letter(data, start, end=None):
    """DATA with the case of its first letter in [START, END) flipped."""
    data = bytearray(data)
    for i in range(start, end if end is not None else len(data)):
        if chr(data[i]).isalpha():
            data[i] ^= 0x20
            return bytes(data)
    raise AssertionError("no letter to change")


def tamper_original(raw):
    at = raw.index(b"REM-Section-Type: rem_message/original")
    body = raw.index(b"\r\n\r\n", raw.index(b"\r\n\r\n", at) + 4)  # past the original's header
    return flip_letter(raw, body)


def tamper_evidence(raw):
    start, end = evidence_part(raw)
    b64 = raw[start:end]
    width = b64.index(b"\r\n") if b"\r\n" in b64 else 76
    xml = base64.b64decode(b64)
    subject = xml.index(b"<ext:Subject>") + len(b"<ext:Subject>")
    xml = flip_letter(xml, subject)
    enc = base64.b64encode(xml)
    lines = b"\r\n".join(enc[i:i + width] for i in range(0, len(enc), width))
    return raw[:start] + lines + raw[end:]


def tamper_envelope(raw):
    at = raw.index(b"REM-Section-Type: rem_message/introduction")
    return flip_letter(raw, raw.index(b"\r\n\r\n", raw.index(b"text/plain", at)) + 4)


class CorpusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Kits.setup()

    def test_every_message_classified_and_verified(self):
        counts = collections.defaultdict(lambda: [0, 0])
        defective = []
        self.assertEqual(len(Kits.files), 279)
        for path in Kits.files:
            r = Kits.reports[path]
            mtype, event, code = expected(path)
            with self.subTest(path=os.path.relpath(path, ROOT)):
                self.assertEqual(r["kind"], "rem")
                self.assertEqual(r["rem"]["message_type"], mtype)
                self.assertEqual(r["rem"]["event"], event)
                self.assertEqual(r["rem"]["reason_code"], code)
                self.assertEqual(r["rem"]["pec_equivalent"],
                                 "rilevazione-virus" if (event, code) == ("RelayRejection", "RB03")
                                 else PEC_EQUIVALENT.get((mtype, event)))
                self.assertEqual(r["rem"]["evidence_signature"]["ok"], True)
                self.assertEqual(r["rem"]["time_stamp"]["ok"], True)
                self.assertEqual(r["rem"]["time_stamp"]["tsa_chain"], "unchecked")
                self.assertEqual(r["digest"], "sha256")
                self.assertTrue(r["rem"]["sender"]["address"])
                self.assertTrue(r["rem"]["recipients"])
                if mtype == "dispatch":
                    self.assertEqual(r["rem"]["original_digest"], r["rem"]["digest_value"])
                    self.assertEqual(r["message_id"], "<%s>" % r["rem"]["message_identifier"])
                    self.assertGreater(r["postacert"]["length"], 0)
                else:
                    self.assertIsNone(r["postacert"])
                want = defect(path)
                if want is None:
                    self.assertIs(r["valid"], True, r["reason"])
                else:
                    self.assertIs(r["valid"], False)
                    self.assertRegex(r["reason"], want)
                    defective.append(os.path.relpath(path, ROOT))
            counts[(kit_of(path), mtype, event)][0] += r["valid"]
            counts[(kit_of(path), mtype, event)][1] += 1
        self.assertEqual(len(defective), 18, defective)
        sys.stderr.write("\nverified / total, by kit and event:\n")
        for (kit, mtype, event), (ok, total) in sorted(counts.items()):
            sys.stderr.write("  %-14s %-8s %-26s %3d / %3d\n" % (kit, mtype, event, ok, total))
        sys.stderr.write("  all: %d / %d; refused for the kit's defects: %d\n"
                         % (sum(c[0] for c in counts.values()), len(Kits.files), len(defective)))

    def test_one_byte_changed(self):
        """Original, evidence, envelope: three places, three reasons."""
        sample = {}
        # a valid example where there is one; the IT kit's non-ERDS events have only defective
        # ones, whose defect is found last, after everything a changed byte breaks
        for path in sorted(Kits.files, key=lambda p: not Kits.reports[p]["valid"]):
            sample.setdefault(expected(path)[:2], path)
        self.assertEqual(len(sample), len(PEC_EQUIVALENT) + 3)  # + 3 events with no PEC kin
        with tempfile.TemporaryDirectory() as tmp:
            for (mtype, event), path in sorted(sample.items()):
                with open(path, "rb") as f:
                    raw = f.read()
                changes = [("evidence", tamper_evidence), ("envelope", tamper_envelope)]
                if mtype == "dispatch":
                    changes.insert(0, ("original", tamper_original))
                reasons = {}
                for where, change in changes:
                    bad = os.path.join(tmp, "%s-%s-%s.eml" % (mtype, event, where))
                    with open(bad, "wb") as f:
                        f.write(change(raw))
                    rc, out, err = run("--trust", Kits.roots, "--json", bad)
                    r = json.loads(out)[0]
                    with self.subTest(file=os.path.relpath(path, ROOT), change=where):
                        self.assertEqual(rc, 1)
                        self.assertIs(r["valid"], False)
                        self.assertEqual(r["rem"]["event"], event)
                        reasons[where] = r["reason"]
                with self.subTest(file=os.path.relpath(path, ROOT)):
                    self.assertEqual(len(set(reasons.values())), len(changes), reasons)
                    if "original" in reasons:
                        self.assertRegex(reasons["original"], r"^original: its digest \S+ is "
                                                              r"not the evidence's ")
                    self.assertEqual(reasons["evidence"],
                                     "evidence signature: the evidence does not match its "
                                     "signature (the digest of the document differs)")
                    self.assertEqual(reasons["envelope"],
                                     "envelope: signature does not match the content")

    def test_text_output(self):
        path = os.path.join(ROOT, IT, "Intra-REM-flow", "REM_RelayAcceptance.RB01.eml")
        rc, out, err = run("--trust", Kits.roots, path)
        self.assertEqual(rc, 0, out + err)
        lines = out.splitlines()
        self.assertEqual(lines[0], path + ": valid")
        for line in ("    kind: rem", "    REM-MessageType: receipt",
                     "    event: RelayAcceptance", "    pec-equivalent: presa-in-carico",
                     "    sender: sender@sender-own-domain-only-for-test.it"):
            self.assertIn(line, lines)
        self.assertIn("    reason-code: RB01 (", out)
        self.assertRegex(out, r"\n    tsa-chain: unchecked: no trust anchor reaches the TSA's "
                              r"certificate \(untrusted issuer: CN=root-ca, O=Nowina")

    def test_at_signing_time(self):
        path = Kits.files[0]
        rc, out, err = run("--trust", Kits.roots, "--at", "signing-time", "--json", path)
        r = json.loads(out)[0]
        self.assertEqual(rc, 0, out)
        self.assertEqual(r["checked_at"], r["signing_time"])
        sig = r["rem"]["evidence_signature"]
        self.assertEqual(sig["checked_at"], sig["signing_time"])
        # a time before the test PKI existed
        rc, out, err = run("--trust", Kits.roots, "--at", "1500000000", path)
        self.assertEqual(rc, 1)
        self.assertRegex(out.splitlines()[0], r": invalid: evidence signature: .*not valid before")

    def test_untrusted_kit(self):
        """Anchors of one kit only: the other kit's messages are refused for their chain."""
        etsi_root = os.path.join(Kits.tmp.name, "etsi-root.pem")
        with open(os.path.join(ROOT, ETSI, "INFORMATIVE-EXAMPLES/CERTIFICATES/REM-ROOT-CA.crt"),
                  "rb") as src, open(etsi_root, "wb") as dst:
            dst.write(src.read())
        path = os.path.join(ROOT, IT, "Intra-REM-flow", "REM_RelayAcceptance.RB01.eml")
        rc, out, err = run("--trust", etsi_root, path)
        self.assertEqual(rc, 1)
        self.assertIn(": invalid: evidence signature: untrusted issuer: C=IT, O=ITERDS, "
                      "OU=ITERDS test services, CN=ITERDS Root CA", out.splitlines()[0])

    def test_one_shape_with_pec(self):
        rem = Kits.reports[Kits.files[0]]
        rc, out, err = run("--trust", Kits.roots, "--json", "-",
                           stdin=b"Subject: hello\r\n\r\njust text\r\n")
        pec = json.loads(out)[0]
        self.assertEqual(list(rem), list(pec))
        self.assertIsNone(pec["rem"])
        self.assertIsNone(rem["tipo"])
        self.assertIs(rem["index_checked"], False)


class CadesTest(unittest.TestCase):
    """A kit message's envelope signed again here with the test PKI, by `openssl cms`: plain
    S/MIME lacks the signingCertificateV2 attribute that makes it CAdES."""

    @classmethod
    def setUpClass(cls):
        Kits.setup()
        pki.ensure()
        cls.trust = os.path.join(Kits.tmp.name, "roots-and-test-pki.pem")
        with open(cls.trust, "wb") as dst:
            for src in (Kits.roots, pki.path("trust.pem")):
                with open(src, "rb") as f:
                    dst.write(f.read() + b"\n")

    def resigned(self, *cades):
        with open(os.path.join(ROOT, IT, "Intra-REM-flow", "REM_RelayAcceptance.RB01.eml"),
                  "rb") as f:
            raw = f.read()
        head, body = raw.split(b"\r\n\r\n", 1)
        boundary = re.search(rb'boundary="([^"]+)"', head).group(1)
        start = body.index(b"--" + boundary + b"\r\n") + len(boundary) + 4
        end = body.index(b"\r\n--" + boundary, start)
        content = os.path.join(Kits.tmp.name, "content")
        with open(content, "wb") as f:
            f.write(body[start:end])
        sig = subprocess.run(
            ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256", *cades,
             "-in", content, "-signer", pki.path("a", "cert.pem"), "-inkey",
             pki.path("a", "key.pem"), "-certfile", pki.path("a", "chain.pem")],
            check=True, capture_output=True).stdout
        path = os.path.join(Kits.tmp.name, "resigned%s.eml" % "".join(cades))
        with open(path, "wb") as f:
            f.write(head + b"\r\n\r\n" + body[:end] + b"\r\n--" + boundary + b"\r\n"
                    b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n"
                    + base64.encodebytes(sig).replace(b"\n", b"\r\n")
                    + b"\r\n--" + boundary + b"--\r\n")
        return path

    def test_without_signing_certificate_v2(self):
        rc, out, err = run("--trust", self.trust, self.resigned())
        self.assertEqual(rc, 1)
        self.assertEqual(out.splitlines()[0].split(": ", 1)[1],
                         "invalid: envelope: no signingCertificateV2 attribute")

    def test_cades(self):
        rc, out, err = run("--trust", self.trust, "--json", self.resigned("-cades"))
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)[0]
        self.assertIn("Gestore A", r["signer_subject"])
        self.assertIn("R2-REMS provider", r["rem"]["evidence_signature"]["signer_subject"])


class EvidenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Kits.setup()
        d = os.path.join(ROOT, IT, "standalone-evidence")
        cls.files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".xml"))

    def test_standalone_evidence(self):
        self.assertEqual(len(self.files), 42)
        rc, out, err = run("--trust", Kits.roots, "--evidence", "--json", *self.files)
        self.assertEqual(rc, 0, out + err)
        for path, r in zip(self.files, json.loads(out)):
            event, code = XML_NAME.match(os.path.basename(path)).groups()
            with self.subTest(file=os.path.basename(path)):
                self.assertIs(r["valid"], True, r["reason"])
                self.assertEqual(r["kind"], "evidence")
                self.assertEqual((r["rem"]["event"], r["rem"]["reason_code"]), (event, code))
                self.assertIsNone(r["rem"]["message_type"])
                self.assertIsNone(r["signer_subject"])  # no envelope
                self.assertRegex(r["rem"]["evidence_signature"]["signer_subject"],
                                 r"CN=(S1|R2)-REMS provider$")

    def test_the_same_evidence_as_in_the_message(self):
        with open(os.path.join(ROOT, IT, "Intra-REM-flow",
                               "REM_SubmissionAcceptance.RA01.eml"), "rb") as f:
            raw = f.read()
        start, end = evidence_part(raw)
        xml = base64.b64decode(raw[start:end])
        with open(os.path.join(ROOT, IT, "standalone-evidence",
                               "SubmissionAcceptance.RA01.xml"), "rb") as f:
            self.assertEqual(xml, f.read())
        rc, out, err = run("--trust", Kits.roots, "--evidence", "-", stdin=xml)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.splitlines()[0], "-: valid")

    def test_tsa_reached(self):
        """With the TSA's own root as an anchor its chain is checked: good then, expired now."""
        with open(self.files[0], "rb") as f:
            xml = f.read().decode()
        token = base64.b64decode(re.search(r"<xades:EncapsulatedTimeStamp[^>]*>([^<]+)<",
                                           xml).group(1))
        pem = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print_certs"],
                             input=token, capture_output=True, check=True).stdout
        bundle = os.path.join(Kits.tmp.name, "with-tsa.pem")
        with open(Kits.roots, "rb") as src, open(bundle, "wb") as dst:
            dst.write(src.read() + pem)
        rc, out, err = run("--trust", bundle, "--evidence", "--at", "signing-time", "--json",
                           self.files[0])
        self.assertEqual(rc, 0, out)
        self.assertEqual(json.loads(out)[0]["rem"]["time_stamp"]["tsa_chain"], "ok")
        rc, out, err = run("--trust", bundle, "--evidence", self.files[0])
        self.assertEqual(rc, 1)
        self.assertRegex(out.splitlines()[0], r": invalid: time-stamp: TSA .*expired at 2023-")

    def test_kit_tsa_certificate(self):
        """The ETSI kit's TSA certificate has the token's root's name but another key: it
        reaches no token, so every TSA stays unchecked and every message valid."""
        bundle = os.path.join(Kits.tmp.name, "with-kit-tsa.pem")
        with open(Kits.roots, "rb") as r, open(os.path.join(
                ROOT, ETSI, "INFORMATIVE-EXAMPLES/CERTIFICATES/TSA.NOWNTSTS202004.pem"),
                "rb") as t, open(bundle, "wb") as dst:
            dst.write(r.read() + b"\n" + t.read())
        sample = sorted(dict((expected(p)[:2], p) for p in Kits.files
                             if Kits.reports[p]["valid"]).values())
        rc, out, err = run("--trust", bundle, "--json", *sample)
        self.assertEqual(rc, 0, out + err)
        for r in json.loads(out):
            self.assertEqual(r["rem"]["time_stamp"]["tsa_chain"], "unchecked")
            self.assertRegex(r["rem"]["time_stamp"]["tsa_note"],
                             r"^no trust anchor reaches the TSA's certificate \(.*certificate "
                             r"signature failure\)$")

    def test_not_evidence(self):
        rc, out, err = run("--trust", Kits.roots, "--evidence", "-", stdin=b"<a/>")
        self.assertEqual(rc, 1)
        self.assertEqual(out.splitlines()[0],
                         "-: invalid: evidence: the root element is a, not an ERDS Evidence")
        self.assertIn("    kind: malformed", out)


if __name__ == "__main__":
    ROOT = corpus_root()
    unittest.main(verbosity=2)
