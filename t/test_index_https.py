"""The providers' index over HTTPS with our client certificate, its CRLs, and
our own record (issue 19).

A real nginx (Debian's, private configuration on loopback, pectest.https)
serves the whole-directory LDIF signed by the test authority and demands a
client certificate under the test PEC CA (ssl_verify_client on):

  - without our client certificate, or with one from another CA, the server
    refuses and pecmilter -n says so (exit 78); a server certificate that does
    not chain to index_tls_ca is refused by us;
  - provider A (pecmilter, index_refresh 2 s) keeps the copy in use when the
    server starts serving a .p7m signed by a key that is not index_signer, or
    one altered by one byte, and logs why; the copy it kept is unchanged; a
    good new copy is taken at the next refresh;
  - with each refresh A fetches the CRL named by B's certificate
    (http://crl.pec.test/pecca.crl, through nginx as HTTP proxy): B's busta
    signed now (B revoked as of 2025-01-01) becomes an anomaly at A's
    reception point and pecverify says "revoked"; a busta B signed in 2024 is
    still PEC; a CRL past its nextUpdate is a warning and still revokes.

`pecctl index record [--sign]` needs no server: the record carries what the
configuration says, and its .p7m verifies with openssl and loads back
through the daemon's own signed loader.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from pectest import config, daemon, e2e, env, pki
from pectest import postfix as pf
from pectest.https import Nginx, have_nginx

PECBUSTA = os.path.join(env.BUILD_DIR, "t", "tools", "pecbusta")
PECCTL = env.program("pecctl")
PECMILTER = env.program("pecmilter")
PECVERIFY = env.program("pecverify")
REFRESH = 2


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, timeout=60, **kw)


class Record(config.Scratch, unittest.TestCase):
    def record(self, *args):
        self.write()
        return run(PECCTL, "-c", self.path, "index", "record", *args)

    def test_record(self):
        self.settings["ldif_location_url"] = "https://pec-a.test/indice/record.ldif.p7m"
        p = self.record()
        self.assertEqual(p.returncode, 0, p.stderr)
        text = p.stdout.decode()
        self.assertTrue(text.startswith("dn: providerName=Gestore A S.p.A.,o=postacert\n"
                                        "objectclass: top\nobjectclass: provider\n"), text)
        self.assertIn("\nproviderCertificateHash: %s\n" % pki.cert_sha1("a"), text)
        self.assertIn("\nmailReceipt: ricevute@pec-a.test\n", text)
        self.assertIn("\nmanagedDomains: pec-a.test\n", text)
        self.assertIn("\nLDIFLocationURL: https://pec-a.test/indice/record.ldif.p7m\n", text)
        self.assertNotIn("providerUnit", text)
        self.assertTrue(all(len(line) <= 76 for line in text.splitlines()))

        p = self.record("--sign")
        self.assertEqual(p.returncode, 0, p.stderr)
        signed = e2e.write(self.dir, "record.ldif.p7m", p.stdout)
        out = run("openssl", "cms", "-verify", "-inform", "DER", "-in", signed, "-binary",
                  "-CAfile", pki.trust(), "-certfile", pki.pecca())
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.decode(), text)
        # and the daemon's own signed loader takes it, signed by A
        self.settings.update(index_source="file:" + signed,
                             index_signer=pki.provider("a")["cert"])
        self.write()
        p = run(PECMILTER, "-n", "-c", self.path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"# providers' index: 1 providers", p.stdout)

    def test_record_of_a_unit_with_two_certificates(self):
        self.settings.update(provider_unit="Sito di riserva",
                             record_certs=[pki.provider("expired")["cert"]])
        p = self.record()
        self.assertEqual(p.returncode, 0, p.stderr)
        text = p.stdout.decode()
        self.assertTrue(text.startswith("dn: providerUnit=Sito di riserva,providerName=Gestore A "
                                        "S.p.A.,o=postacert\n"), text)
        self.assertIn("\nproviderUnit: Sito di riserva\n", text)
        self.assertEqual(len(re.findall(r"(?m)^providerCertificate;binary:: ", text)), 2)
        self.assertIn("\nproviderCertificateHash: %s\n" % pki.cert_sha1("expired"), text)

    def test_record_the_loader_would_refuse(self):
        for changes, pattern in [
                ({"receipt_address": "ricevute at pec-a.test"},
                 rb"mailReceipt: \"ricevute at pec-a\.test\" is not a mail address"),
                ({"provider_unit": "Riserva", "ldif_location_url": "https://x.test/r.p7m"},
                 rb"a providerUnit record carries no LDIFLocationURL")]:
            with self.subTest(changes=changes):
                self.settings.update(changes)
                p = self.record("--sign")
                self.assertEqual(p.returncode, 78, p.stderr)
                self.assertEqual(p.stdout, b"")
                self.assertRegex(p.stderr, pattern)
                self.settings = config.settings("a", self.dir,
                                                seal_dir=os.path.join(self.dir, "registro"))


class HttpsIndex(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not have_nginx():
            env.skip("nginx is not installed (contrib/deps.sh test installs it)")
        pki.ensure()
        cls.daemon = None
        e2e.start(cls, e2e.workdir("pec-index-https-"))

    @classmethod
    def _start(cls, work):
        cls.web = Nginx(work).start()
        with open(pki.index_p7m(), "rb") as f:
            cls.good = f.read()
        cls.web.put("index.ldif.p7m", cls.good)
        with open(pki.crl(), "rb") as f:
            cls.web.put("pecca.crl", f.read())
        cls.dir = os.path.join(work, "a")
        os.makedirs(cls.dir)
        cls.conf = os.path.join(cls.dir, "pecmilter.conf")
        cert, key = pki.tls_client("a")
        cls.settings = config.settings(
            "a", cls.dir, index_source=cls.web.url("index.ldif.p7m"), index_tls_ca=pki.trust(),
            index_tls_cert=cert, index_tls_key=key, index_refresh=REFRESH, test_mode="yes",
            reinject="smtp:127.0.0.1:9", roles={"pec-mx": "reception"},
            seal_dir=os.path.join(cls.dir, "registro"))
        with open(cls.conf, "w") as f:
            f.write(config.render(cls.settings))
        os.makedirs(cls.settings["maildir_root"])
        config.add_mailboxes(cls.conf, "mario@pec-a.test")
        # every http:// fetch (the CRL distribution point) goes to nginx as a proxy
        cls.daemon = daemon.start(cls.conf, env_vars={"http_proxy": cls.web.proxy})
        pf.register_process(cls.daemon.proc.pid, work)

    @classmethod
    def _stop(cls):
        e2e.stop_all([cls.daemon, getattr(cls, "web", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = e2e.daemon_exit("a", cls.daemon) if cls.daemon else None
        cls._stop()
        if bad:
            raise AssertionError(bad)

    def wait_log(self, pattern, after=0, timeout=REFRESH + 15):
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.daemon.stderr(), after)
            if m:
                return m
            if time.monotonic() > deadline:
                self.fail("no %r in pecmilter's log:\n%s\n%s"
                          % (pattern, self.daemon.stderr()[-3000:], self.web.log()[-2000:]))
            time.sleep(0.05)

    def check(self, **changes):
        """pecmilter -n with CHANGES to A's settings: (exit status, stdout, stderr)."""
        conf = os.path.join(self.dir, "check.conf")
        with open(conf, "w") as f:
            f.write(config.render(dict(self.settings, **changes)))
        p = run(PECMILTER, "-n", "-c", conf, text=True)
        return p.returncode, p.stdout, p.stderr

    def cached(self):
        with open(os.path.join(self.dir, "index", "index.p7m"), "rb") as f:
            return f.read()

    def test_1_client_certificate(self):
        url = re.escape(self.web.url("index.ldif.p7m"))
        rogue_cert, rogue_key = pki.tls_client("rogue")
        for changes in ({"index_tls_cert": "", "index_tls_key": ""},
                        {"index_tls_cert": rogue_cert, "index_tls_key": rogue_key}):
            with self.subTest(changes=changes):
                rc, out, err = self.check(index_cache=os.path.join(self.dir, "none"), **changes)
                self.assertEqual(rc, 78, err)
                self.assertRegex(err, r"^pecmilter: index_source: %s: the server answered HTTP "
                                      r"400\n$" % url)
        rc, out, err = self.check(index_cache=os.path.join(self.dir, "none"),
                                  index_tls_ca=pki.pecca())
        self.assertEqual(rc, 78, err)
        self.assertRegex(err, r"index_source: %s: SSL certificate problem" % url)
        rc, out, err = self.check(index_cache=os.path.join(self.dir, "none"))
        self.assertEqual(rc, 0, err)
        self.assertIn("# providers' index: 2 providers", out)

    def test_2_refresh_keeps_a_good_copy(self):
        self.wait_log(r"refreshed from https://\S+: 2 providers, 1 CRLs")
        self.assertEqual(self.cached(), self.good)
        by_b = pki.sign(pki.index(), os.path.join(self.tmp, "by-b.p7m"), signer="b")
        with open(by_b, "rb") as f:
            self.web.put("index.ldif.p7m", f.read())
        offset = len(self.daemon.stderr())
        self.wait_log(r"cannot refresh from https://\S+, the copy in use stays: \S+: untrusted "
                      r"issuer", after=offset)
        self.web.put("index.ldif.p7m", self.good.replace(b"Gestore B", b"Gestore C", 1))
        offset = len(self.daemon.stderr())
        self.wait_log(r"cannot refresh from https://\S+, the copy in use stays: \S+: signature "
                      r"does not match the content", after=offset)
        self.assertEqual(self.cached(), self.good)
        p = run(PECCTL, "-c", self.conf, "index", "show", text=True)
        self.assertRegex(p.stdout, r"signed by: C=IT, O=pecmilter tests, CN=Test Index Authority")
        self.assertRegex(p.stdout, r"providers: 2\n")
        # a good copy again, with one provider more
        bigger = os.path.join(self.tmp, "bigger.ldif")
        rogue = config.settings("rogue", self.tmp)
        with open(pki.index()) as f, open(bigger, "w") as out:
            out.write(f.read() + "\n" + self.rogue_record(rogue))
        with open(pki.sign(bigger, bigger + ".p7m"), "rb") as f:
            self.web.put("index.ldif.p7m", f.read())
        offset = len(self.daemon.stderr())
        self.wait_log(r"refreshed from https://\S+: 3 providers, 1 CRLs; managedDomains changed",
                      after=offset)
        self.assertNotEqual(self.cached(), self.good)

    def rogue_record(self, settings):
        conf = os.path.join(self.tmp, "rogue.conf")
        with open(conf, "w") as f:
            f.write(config.render(settings))
        p = run(PECCTL, "-c", conf, "index", "record", text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def busta_of_b(self, subject, at=None):
        raw = e2e.message(subject, "mario@pec-a.test", "luigi@pec-b.test")
        path = e2e.write(self.tmp, re.sub(r"\W", "", subject) + ".orig", raw)
        r = run(PECBUSTA, "-p", pki.PKI, "-s", "b", "-n", "Gestore B S.p.A.",
                *(["-t", at] if at else []), path)
        self.assertEqual(r.returncode, 0, r.stderr)
        return e2e.write(self.tmp, re.sub(r"\W", "", subject) + ".eml", r.stdout)

    def receive(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        offset = len(self.daemon.stderr())
        with self.daemon.milter() as m:
            m.filter_macros = False
            m.negotiate()
            res = m.send_message(raw, "<posta-certificata@pec-b.test>", ["<mario@pec-a.test>"],
                                 connect_macros={"{daemon_name}": "pec-mx"})
        self.assertEqual(res.reply.code, "continue", res.reply)
        return self.wait_log(r"reception: from=\S+ size=\d+: ([^\n]*)", after=offset).group(1)

    def pecverify(self, *args):
        p = run(PECVERIFY, "--json", *args, text=True)
        return p.returncode, json.loads(p.stdout)[0], p.stderr

    def test_3_revocation(self):
        self.wait_log(r"refreshed from https://\S+: \d providers, 1 CRLs")
        self.assertIn("GET http://crl.pec.test/pecca.crl", self.web.log())
        now = self.busta_of_b("Busta di B revocato")
        before = self.busta_of_b("Busta di B prima", at="2024-06-01T10:00:00Z")
        self.assertRegex(self.receive(now), r"^ordinary mail \(signer certificate revoked at "
                                            r"2025-01-01 00:00:00 UTC \(keyCompromise\), before "
                                            r"it signed .*\): busta di anomalia")
        self.assertRegex(self.receive(before), r"^busta \S+ from Gestore B S\.p\.A\.: presa in "
                                               r"carico")

        rc, r, err = self.pecverify("-c", self.conf, now)
        self.assertEqual((rc, r["valid"], r["revocation"]), (1, False, "revoked"), r)
        self.assertEqual(r["revoked_at"], "2025-01-01T00:00:00Z")
        rc, r, err = self.pecverify("-c", self.conf, before)
        self.assertEqual((rc, r["valid"], r["revocation"]), (0, True, "good"), r)
        p = run(PECVERIFY, "-c", self.conf, now, text=True)
        self.assertRegex(p.stdout, r"(?m)^ +revocation: +revoked$")

        # by hand: the CRL with its issuer, even one long past its nextUpdate
        for stale in (False, True):
            bundle = os.path.join(self.tmp, "crl-%s.pem" % stale)
            with open(bundle, "w") as out:
                for src in (pki.crl(stale), pki.pecca()):
                    with open(src) as f:
                        out.write(f.read())
            rc, r, err = self.pecverify("--trust", pki.trust(), "--index", pki.index_p7m(),
                                        "--index-signer", pki.authority(), "--crl", bundle, now)
            self.assertEqual((rc, r["revocation"]), (1, "revoked"), r)
            self.assertEqual("past its nextUpdate" in err, stale, err)
        # the daemon's own crl_file, past its nextUpdate: a warning, not a stop
        rc, out, err = self.check(crl_file=pki.crl(stale=True))
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"# warning: revocation: .*pecca-stale\.crl: CRL of .*Test PEC CA1 "
                              r"is past its nextUpdate 2025-02-01")
        # without any CRL, revocation is unknown and the busta PEC
        rc, r, err = self.pecverify("--trust", pki.trust(), "--index", pki.index(), now)
        self.assertEqual((rc, r["revocation"]), (0, None), r)


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
