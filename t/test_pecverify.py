"""pecverify, the operator's command-line check of PEC messages, through the real binary.

What an operator relies on: the verdict line comes first and says why, the exit status
tells scripts whether everything was valid (0), something was not (1) or the command
itself failed (2), JSON output parses whatever bytes the message held, and the real
provider messages of the shared corpus verify at their signing time against Debian's CA
bundle.  Messages signed here with the test PKI (openssl cms, an independent signer)
exercise --index: a listed provider, a rogue one, a From domain that is not the signer's.
"""
import base64
import json
import os
import subprocess
import tempfile
import unittest

from pectest import env, pki

PECVERIFY = env.program("pecverify")
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# README of the corpus: file -> (kind, tipo, identificativo)
CORPUS = {
    "aruba2014-busta-1.eml": ("busta", "posta-certificata",
                              "opec275.20141107165200.03048.08.1.17@pec.aruba.it"),
    "aruba2014-busta-2.eml": ("busta", "posta-certificata",
                              "opec275.20141127151216.06559.08.1.17@pec.aruba.it"),
    "aruba2014-accettazione.eml": ("notice", "accettazione",
                                   "opec275.20141114182632.23219.07.1.48@pec.aruba.it"),
    "aruba2014-consegna.eml": ("notice", "avvenuta-consegna",
                               "opec275.20141114182632.23219.07.1.48@pec.aruba.it"),
    "aruba2018-accettazione.eml": ("notice", "accettazione",
                                   "opec288.20181113163926.01838.310.1.63@pec.aruba.it"),
}


def run(*args, stdin=None):
    p = subprocess.run([PECVERIFY] + list(args), input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")


def corpus_dir():
    d = os.path.join(env.SHARED_DIR, "corpus")
    return d if os.path.isdir(d) else None


DATICERT = """<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="accettazione" errore="nessuno">
    <intestazione>
        <mittente>user@pec-a.test</mittente>
        <destinatari tipo="certificato">dest@pec-b.test</destinatari>
        <risposte>user@pec-a.test</risposte>
        <oggetto>prova</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>Gestore A S.p.A.</gestore-emittente>
        <data zona="+0100"><giorno>01/02/2024</giorno><ora>11:00:00</ora></data>
        <identificativo>opec.9@pec-a.test</identificativo>
    </dati>
</postacert>
"""


def crlf(text):
    return text.replace("\n", "\r\n").encode("ascii")


def signed_accettazione(name, workdir, from_domain=None):
    """An accettazione signed by test provider NAME with `openssl cms`, framed by hand."""
    inner = (crlf("Content-Type: multipart/mixed; boundary=\"MIX\"\n\n--MIX\n"
                  "Content-Type: text/plain\n\nRicevuta di accettazione\n--MIX\n"
                  "Content-Type: application/xml; name=\"daticert.xml\"\n"
                  "Content-Transfer-Encoding: base64\n\n")
             + base64.encodebytes(DATICERT.encode()).replace(b"\n", b"\r\n")
             + crlf("--MIX--\n"))
    src = os.path.join(workdir, name + ".inner")
    with open(src, "wb") as f:
        f.write(inner)
    sig = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
         "-in", src, "-signer", pki.path(name, "cert.pem"), "-inkey", pki.path(name, "key.pem"),
         "-certfile", pki.path(name, "chain.pem")],
        check=True, capture_output=True).stdout
    domain = from_domain or {"b": "pec-b.test", "rogue": "pec-rogue.test"}.get(name, "pec-a.test")
    head = crlf("From: posta-certificata@%s\nTo: user@pec-a.test\nSubject: ACCETTAZIONE: prova\n"
                "X-Ricevuta: accettazione\nMIME-Version: 1.0\n"
                "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
                "micalg=sha-256; boundary=\"SIG\"\n\n--SIG\n" % domain)
    tail = (crlf("\n--SIG\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\n"
                 "Content-Transfer-Encoding: base64\n\n")
            + base64.encodebytes(sig).replace(b"\n", b"\r\n") + crlf("--SIG--\n"))
    path = os.path.join(workdir, "%s-%s.eml" % (name, from_domain or "own"))
    with open(path, "wb") as f:
        f.write(head + inner + tail)
    return path


class CorpusTest(unittest.TestCase):
    def setUp(self):
        self.dir = corpus_dir()
        if self.dir is None:
            self.skipTest("%s/corpus is absent" % env.SHARED_DIR)
        self.files = [os.path.join(self.dir, f) for f in sorted(CORPUS)]

    def test_json_fields(self):
        rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", "--json", *self.files)
        self.assertEqual(rc, 0, out + err)
        reports = json.loads(out)
        self.assertEqual(len(reports), len(self.files))
        for path, r in zip(self.files, reports):
            kind, tipo, ident = CORPUS[os.path.basename(path)]
            self.assertEqual(r["file"], path)
            self.assertIs(r["valid"], True)
            self.assertIsNone(r["reason"])
            self.assertEqual(r["kind"], kind)
            self.assertEqual(r["tipo"], tipo)
            self.assertEqual(r["identificativo"], ident)
            self.assertEqual(r["digest"], "sha1")
            self.assertEqual(r["gestore_emittente"], "ARUBA PEC S.p.A.")
            self.assertIn("ARUBA PEC", r["signer_subject"])
            self.assertRegex(r["signer_sha1"], "^[0-9a-f]{40}$")
            self.assertIs(r["index_checked"], False)
            self.assertIsNone(r["provider"])
            self.assertEqual(r["signing_time"], r["checked_at"])
            self.assertRegex(r["data"]["giorno"], r"^\d\d/\d\d/\d{4}$")
            self.assertEqual(r["data"]["zona"], "+0100")
            self.assertTrue(r["destinatari"] and r["destinatari"][0]["tipo"] == "certificato")
            self.assertTrue(r["msgid"].startswith("<"))
            if tipo == "avvenuta-consegna":
                self.assertEqual(r["consegna"], "thinkstudio@pec.it")
                self.assertEqual(r["ricevuta"], "completa")
            if kind == "busta":
                self.assertEqual(r["x_trasporto"], "posta-certificata")
                self.assertGreater(r["postacert"]["length"], 0)

    def test_human_output(self):
        path = self.files[0]
        rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", path)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], path + ": valid")
        self.assertIn("    identificativo: ", out)
        self.assertIn("    data: ", out)
        self.assertIn("    destinatari: ", out)
        self.assertIn("signer not checked against an index", out)

    def test_default_at_is_now(self):
        # the Aruba certificates have expired since: checked now, they are refused
        rc, out, err = run("--trust", BUNDLE, self.files[0])
        self.assertEqual(rc, 1)
        self.assertRegex(out.splitlines()[0], r": invalid: .*expired")

    def test_tampered_copy(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(self.files[0], "rb") as f:
                data = bytearray(f.read())
            at = data.index(b"Il giorno")
            data[at + 3] ^= 0x20
            path = os.path.join(tmp, "tampered.eml")
            with open(path, "wb") as f:
                f.write(data)
            rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", path)
            self.assertEqual(rc, 1)
            self.assertEqual(out.splitlines()[0],
                             path + ": invalid: signature does not match the content")

    def test_stdin(self):
        with open(self.files[2], "rb") as f:
            data = f.read()
        rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", "-", stdin=data)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[0], "-: valid")

    def test_mixed_valid_and_invalid(self):
        with tempfile.TemporaryDirectory() as tmp:
            junk = os.path.join(tmp, "junk.eml")
            with open(junk, "wb") as f:
                f.write(b"Subject: hello\n\njust text\n")
            rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", "--json",
                               self.files[0], junk, self.files[1])
            self.assertEqual(rc, 1)
            reports = json.loads(out)
            self.assertEqual([r["valid"] for r in reports], [True, False, True])
            self.assertEqual(reports[1]["kind"], "ordinary")
            self.assertIn("no S/MIME signature", reports[1]["reason"])

    def test_unreadable_file_among_good_ones(self):
        rc, out, err = run("--trust", BUNDLE, "--at", "signing-time", self.files[0],
                           "/nonexistent/x.eml")
        self.assertEqual(rc, 2)
        self.assertIn("cannot read /nonexistent/x.eml", err)
        self.assertIn(self.files[0] + ": valid", out)


class IndexTest(unittest.TestCase):
    """--index with messages signed by the test providers."""

    def setUp(self):
        pki.ensure()
        self.tmp = tempfile.TemporaryDirectory()
        self.args = ["--trust", pki.path("trust.pem"), "--index", pki.path("index.ldif")]

    def tearDown(self):
        self.tmp.cleanup()

    def test_listed_provider(self):
        path = signed_accettazione("a", self.tmp.name)
        rc, out, err = run(*self.args, "--json", path)
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)[0]
        self.assertEqual((r["kind"], r["tipo"], r["digest"]), ("notice", "accettazione", "sha256"))
        self.assertIs(r["index_checked"], True)
        self.assertEqual(r["provider"], "Gestore A S.p.A.")
        rc, out, err = run(*self.args, path)
        self.assertIn("    provider: Gestore A S.p.A.", out)

    def test_rogue_provider(self):
        path = signed_accettazione("rogue", self.tmp.name)
        rc, out, err = run(*self.args, path)
        self.assertEqual(rc, 1)
        self.assertRegex(out.splitlines()[0], r": invalid: signer not in the providers' index")
        # without the index the same message passes, and says what was not checked
        rc, out, err = run("--trust", pki.path("trust.pem"), path)
        self.assertEqual(rc, 0, out)
        self.assertIn("signer not checked against an index", out)

    def test_from_domain_not_the_signers(self):
        path = signed_accettazione("b", self.tmp.name, from_domain="pec-a.test")
        rc, out, err = run(*self.args, path)
        self.assertEqual(rc, 1)
        self.assertIn("From domain pec-a.test is not managed by provider Gestore B S.p.A.",
                      out.splitlines()[0])

    def test_at_epoch(self):
        path = signed_accettazione("a", self.tmp.name)
        rc, out, err = run(*self.args, "--at", "1577836800", path)  # 2020-01-01: valid
        self.assertEqual(rc, 0, out)
        rc, out, err = run(*self.args, "--at", "1500000000", path)  # 2017: not yet valid
        self.assertEqual(rc, 1)
        self.assertIn("not valid before", out.splitlines()[0])


class OutputSafetyTest(unittest.TestCase):
    def test_hostile_bytes(self):
        msg = (b'From: "\x1b[31mred\xff\x00" <x@y.test>\r\nSubject: =?utf-8?q?ciao?= \xe8\r\n'
               b"X-Ricevuta: accettazione\r\n\r\nbody\r\n")
        rc, out, err = run("--trust", BUNDLE, "--json", "-", stdin=msg)
        self.assertEqual(rc, 1)
        r = json.loads(out)[0]
        self.assertEqual(r["kind"], "ordinary")
        self.assertIn("\x1b[31mred\u00ff", r["from"])
        self.assertEqual(r["subject"], "ciao \u00e8")
        self.assertIsNone(r["tipo"])
        rc, out, err = run("--trust", BUNDLE, "-", stdin=msg)
        self.assertEqual(rc, 1)
        self.assertNotIn("\x1b", out)
        self.assertIn("\\x1b[31mred\\xff", out)


class UsageTest(unittest.TestCase):
    def assertUsageError(self, *args, pattern=None):
        rc, out, err = run(*args)
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        if pattern:
            self.assertRegex(err, pattern)

    def test_no_file(self):
        self.assertUsageError(pattern=r"no FILE given")

    def test_unknown_option(self):
        self.assertUsageError("--frobnicate", "x.eml", pattern=r"usage: ")

    def test_bad_at(self):
        self.assertUsageError("--at", "yesterday", "x.eml", pattern=r"--at yesterday")

    def test_missing_trust(self):
        self.assertUsageError("--trust", "/nonexistent/ca.pem", "x.eml", pattern=r"--trust: ")

    def test_bad_index(self):
        with tempfile.NamedTemporaryFile("w", suffix=".ldif") as f:
            f.write("this is not LDIF\n")
            f.flush()
            self.assertUsageError("--index", f.name, "x.eml", pattern=r"--index: ")

    def test_unreadable_file(self):
        rc, out, err = run("--trust", BUNDLE, "/nonexistent/x.eml")
        self.assertEqual(rc, 2)
        self.assertIn("cannot read /nonexistent/x.eml", err)

    def test_help(self):
        rc, out, err = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: pecverify", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
