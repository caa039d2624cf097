"""`pecmilter -n`: what it checks beyond loading the configuration.

A configuration that loads can still describe a provider peers will not
trust, or a daemon that cannot create its sockets.  Each such problem must
be one line, "pecmilter: FILE: what is wrong", naming the file to fix, and
exit 78 (EX_CONFIG), with nothing on stdout that looks like success.
"""
import base64
import os
import pwd
import re
import subprocess
import unittest

from pectest import config, env, pki

PECMILTER = env.program("pecmilter")


class SelfCheckTest(config.Scratch, unittest.TestCase):
    def check(self):
        self.write()
        p = subprocess.run([PECMILTER, "-n", "-c", self.path], capture_output=True,
                           text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    def assertProblem(self, path, pattern):
        rc, out, err = self.check()
        self.assertEqual(rc, 78, "exit status; stderr: %r" % err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, "exactly one line on stderr: %r" % err)
        self.assertRegex(lines[0], r"^pecmilter: %s: %s" % (re.escape(path), pattern))
        self.assertNotIn(": OK", out)

    def test_good_configuration_passes(self):
        rc, out, err = self.check()
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.assertIn("# %s: OK" % self.path, out)

    def test_key_not_matching_certificate(self):
        self.settings["sign_key"] = pki.provider("b")["key"]
        self.assertProblem(pki.provider("b")["key"],
                           r"the key does not match the certificate %s$"
                           % re.escape(pki.provider("a")["cert"]))

    def test_certificate_missing_from_index(self):
        # rogue: signed by the test PEC CA, correct profile, absent from the index
        rogue = pki.provider("rogue")
        self.settings.update(config.settings("rogue", self.dir,
                                             seal_dir=os.path.join(self.dir, "registro")))
        self.assertProblem(rogue["cert"], r"not in the providers' index file:%s "
                           r"\(no providerCertificateHash %s\)"
                           % (re.escape(pki.index_p7m()), pki.cert_sha1("rogue")))

    def test_listed_under_another_name(self):
        index = os.path.join(self.dir, "index.ldif")
        with open(pki.index()) as src, open(index, "w") as dst:
            dst.write(src.read().replace("Gestore A S.p.A.", "Gestore Altro S.p.A."))
        self.settings["index_source"] = "file:" + pki.sign(index, index + ".p7m")
        self.assertProblem(pki.provider("a")["cert"],
                           r"listed in file:%s\.p7m under providerName \"Gestore Altro "
                           r"S\.p\.A\.\", not provider_name \"Gestore A S\.p\.A\.\"$"
                           % re.escape(index))

    def test_domain_not_managed_in_index(self):
        self.settings["domains"] = ["pec-a.test", "pec-z.test"]
        self.assertProblem("file:" + pki.index_p7m(), r"\"Gestore A S\.p\.A\.\" lists no "
                           r"managedDomains pec-z\.test")

    def test_service_address_not_the_certificate_address(self):
        self.settings["service_address"] = "posta@pec-a.test"
        self.assertProblem(pki.provider("a")["cert"],
                           r"subjectAltName is posta-certificata@pec-a\.test, "
                           r"not service_address posta@pec-a\.test$")

    def test_not_a_signing_certificate(self):
        # the PEC CA's own certificate: keyCertSign and cRLSign, no digitalSignature
        self.settings["sign_cert"] = pki.pecca()
        self.settings["sign_chain"] = ""
        key = os.path.join(self.dir, "pecca.key")
        with open(pki.path("pecca.key"), "rb") as src, open(key, "wb") as dst:
            dst.write(src.read())
        os.chmod(key, 0o600)
        self.settings["sign_key"] = key
        self.assertProblem(pki.pecca(), r"keyUsage lacks digitalSignature")

    def as_nobody(self):
        """Configure user = nobody, with a work directory and a key of its own, as
        the README has the admin do for user pecmilter."""
        if os.geteuid() != 0:
            self.skipTest("needs root to name another user")
        nobody = pwd.getpwnam("nobody").pw_uid
        os.chown(self.dir, nobody, -1)   # the store, seals and sockets go here
        key = os.path.join(self.dir, "key.pem")
        with open(pki.provider("a")["key"], "rb") as src, open(key, "wb") as dst:
            dst.write(src.read())
        os.chmod(key, 0o600)
        os.chown(key, nobody, -1)
        self.settings["sign_key"] = key
        self.settings["user"] = "nobody"
        return nobody

    def test_nobody_setup_passes(self):
        self.as_nobody()
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))

    def test_socket_directory_not_writable_by_user(self):
        nobody = self.as_nobody()
        sockdir = os.path.join(self.dir, "run")
        os.mkdir(sockdir, 0o755)     # root's, not writable by nobody
        self.settings["milter_socket"] = "unix:" + os.path.join(sockdir, "milter.sock")
        self.assertProblem(sockdir, r"user nobody cannot create files here \(milter_socket\)$")
        # given to the user, the same directory passes
        os.chown(sockdir, nobody, -1)
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))

    def test_tls_policy_directory_not_writable_by_user(self):
        """pecmilter replaces the MTA's TLS policy table whole, beside it."""
        nobody = self.as_nobody()
        top = os.path.join(self.dir, "postfix")
        os.mkdir(top, 0o755)         # root's: nobody cannot write the table there
        self.settings["tls_policy_file"] = os.path.join(top, "tls-policy")
        self.assertProblem(top, r"user nobody cannot create files here \(tls_policy_file\)$")
        os.chown(top, nobody, -1)
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))

    def test_quarantine_directory_not_writable_by_user(self):
        """With an antivirus, the user must be able to make the quarantine; clamd not
        answering is a warning, not a configuration error."""
        nobody = self.as_nobody()
        top = os.path.join(self.dir, "lib")
        os.mkdir(top, 0o755)         # root's: nobody cannot make quarantine/ in it
        self.settings.update(antivirus="clamd", quarantine_dir=os.path.join(top, "quarantine"),
                             clamd_socket="unix:" + os.path.join(self.dir, "no-clamd.sock"))
        self.assertProblem(top, r"user nobody cannot create files here \(quarantine_dir\)$")
        os.chown(top, nobody, -1)
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))
        self.assertRegex(out, r"(?m)^# warning: antivirus: clamd does not answer \(.*no-clamd"
                         r"\.sock: .*\): mail is deferred until it does$")
        # nothing is scanned, nothing is kept: the directory is not checked
        os.chown(top, 0, -1)
        self.settings["antivirus"] = "none"
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))
        self.assertRegex(out, r'(?m)^# antivirus: antivirus = "none": nothing is scanned')

    def test_key_not_readable_by_user(self):
        self.as_nobody()
        os.chown(self.settings["sign_key"], 0, -1)   # root's, mode 0600
        self.assertProblem(self.settings["sign_key"],
                           r"user nobody cannot read it \(sign_key\)$")

    def test_certificate_directory_closed_to_user(self):
        self.as_nobody()
        certdir = os.path.join(self.dir, "certs")
        os.mkdir(certdir, 0o700)     # root's: nobody cannot enter
        cert = os.path.join(certdir, "cert.pem")
        with open(pki.provider("a")["cert"], "rb") as src, open(cert, "wb") as dst:
            dst.write(src.read())
        os.chmod(cert, 0o644)
        self.settings["sign_cert"] = cert
        self.assertProblem(certdir, r"user nobody cannot enter this directory \(sign_cert\)$")

    def test_store_directory_missing(self):
        store = os.path.join(self.dir, "absent", "pecmilter.db")
        self.settings["store"] = store
        self.assertProblem(os.path.dirname(store),
                           r"No such file or directory \(the directory of store\)$")

    def test_readme_certificate_request_passes(self):
        """The README's key and request, once the CA signs it, pass the profile
        check; once listed in the index as the README says, everything passes."""
        with open(os.path.join(env.SRC_DIR, "README")) as f:
            readme = f.read()
        step = readme[readme.index("2. The signing key"):readme.index("3. The providers' index")]
        step = re.sub(r"\\\n\s*", "", step)               # join continued lines
        commands = re.findall(r"^\s+(openssl .*)$", step, re.M)
        self.assertEqual(len(commands), 2, step)             # genpkey, req
        for c in commands:
            c = c.replace("/etc/pecmilter/", self.dir + "/")
            p = subprocess.run(c, shell=True, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, c + "\n" + p.stderr)
        key, req, cert = (os.path.join(self.dir, n) for n in ("key.pem", "req.pem", "cert.pem"))
        os.chmod(key, 0o600)
        # the CA (the test PKI's PEC CA) issues what was asked, extensions included
        p = subprocess.run(["openssl", "x509", "-req", "-in", req, "-CA", pki.pecca(),
                            "-CAkey", pki.path("pecca.key"), "-copy_extensions", "copyall",
                            "-days", "30", "-out", cert], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.settings.update(provider_name="Gestore Esempio S.p.A.",
                             domains=["pec.example.it"],
                             service_address="posta-certificata@pec.example.it",
                             receipt_address="ricevute@pec.example.it",
                             sign_cert=cert, sign_key=key, sign_chain=pki.pecca())
        self.assertProblem(cert, r"not in the providers' index")
        # the index record, with the hash computed the README's way
        der = subprocess.run("openssl x509 -in %s -outform DER" % cert, shell=True,
                             capture_output=True, check=True).stdout
        digest = subprocess.run(["sha1sum"], input=der, capture_output=True,
                                check=True).stdout.split()[0].decode()
        index = os.path.join(self.dir, "index.ldif")
        with open(pki.index()) as src, open(index, "w") as dst:
            dst.write(src.read().rstrip("\n") + "\n\n" +
                      "dn: providerName=Gestore Esempio S.p.A.,o=postacert\n"
                      "objectclass: top\nobjectclass: provider\n"
                      "providerName: Gestore Esempio S.p.A.\n"
                      "providerCertificateHash: %s\n"
                      "providerCertificate;binary:: %s\n"
                      "mailReceipt: ricevute@pec.example.it\n"
                      "managedDomains: pec.example.it\n"
                      % (digest, base64.b64encode(der).decode()))
        self.settings["index_source"] = "file:" + pki.sign(index, index + ".p7m")
        rc, out, err = self.check()
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("<posta-certificata@pec.example.it>, sha1 %s" % digest, out)

    def reissued(self, extensions, days=30):
        """Provider a's key certified again by the test PEC CA with EXTENSIONS."""
        ext = os.path.join(self.dir, "ext.cnf")
        with open(ext, "w") as f:
            f.write(extensions)
        cert = os.path.join(self.dir, "cert.pem")
        p = subprocess.run(["openssl", "x509", "-req", "-in", "/dev/stdin", "-CA", pki.pecca(),
                            "-CAkey", pki.path("pecca.key"), "-extfile", ext, "-days", str(days),
                            "-out", cert],
                           input=subprocess.run(["openssl", "x509", "-x509toreq", "-in",
                                                 pki.provider("a")["cert"], "-signkey",
                                                 pki.provider("a")["key"]],
                                                capture_output=True, check=True).stdout,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.settings["sign_cert"] = cert
        return cert

    def test_profile_deviations_refuse_start(self):
        """Like a real 2014 provider certificate: keyUsage not critical.  RFC 6109 5.5
        wants it critical; a start with it is refused, naming why (issue 18)."""
        cert = self.reissued("keyUsage = digitalSignature\nbasicConstraints = CA:FALSE\n"
                             "subjectAltName = email:posta-certificata@pec-a.test\n")
        self.assertProblem(cert, r"keyUsage is not marked critical \(RFC 6109 5\.5\)$")

    def test_expired_certificate_refuses_start(self):
        self.settings["sign_cert"] = pki.provider("expired")["cert"]
        self.settings["sign_key"] = pki.provider("expired")["key"]
        self.assertProblem(pki.provider("expired")["cert"],
                           r"expired on 2021-01-01 00:00:00 UTC$")

    def test_expiry_within_the_warning_window(self):
        cert = self.reissued("keyUsage = critical, digitalSignature\n"
                             "subjectAltName = email:posta-certificata@pec-a.test\n"
                             "subjectKeyIdentifier = hash\n"
                             "authorityKeyIdentifier = keyid:always\n", days=10)
        rc, out, err = self.check()
        # a new certificate, so not in the index: the profile itself passed
        self.assertEqual(rc, 78)
        self.assertRegex(err, r"^pecmilter: %s: not in the providers' index" % re.escape(cert))
        self.assertRegex(out, r"# warning: %s: expires on .* in (9|10) days: renew it"
                         % re.escape(cert))

if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
