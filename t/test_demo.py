"""contrib/demo.sh, run as the README tells a new user (on the tree ctest
built): two providers and an ordinary mail server on loopback, one certified
message from A to two users of B and one ordinary address; the whole chain of
receipts must arrive, every message verify with pecverify, the demo exit 0;
stop leaves nothing behind.
"""
import grp
import os
import re
import subprocess
import tempfile
import unittest

from pectest import env
from pectest import postfix as pf

ALWAYS = ["ricevuta di accettazione to the sender",
          "busta di trasporto for the ordinary address"]
NEED_RECEPTION = ["busta di trasporto for Luigi (To)",
                  "busta di trasporto for Anna (Cc)",
                  "presa in carico from B",
                  "avvenuta consegna completa for Luigi",
                  "avvenuta consegna sintetica for Anna"]


class DemoTest(unittest.TestCase):
    def test_start_then_stop(self):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        demo = os.path.join(env.SRC_DIR, "contrib", "demo.sh")
        with tempfile.TemporaryDirectory(prefix="pec-demo-") as d:
            run = os.path.join(d, "run")
            try:
                p = subprocess.run([demo, "start", "--dir", run, "--build", env.BUILD_DIR],
                                   capture_output=True, text=True, timeout=400)
                out = p.stdout + p.stderr
                print(out)
                self.check_start(run, p.returncode, p.stdout, out)
                self.assertTrue(pf.leftovers(run), "the demo keeps running after start")
            finally:
                p = subprocess.run([demo, "stop", "--dir", run], capture_output=True,
                                   text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(p.stdout.count("stopped pecmilter"), 2, p.stdout)
            self.assertEqual(p.stdout.count("stopped Postfix"), 3, p.stdout)
            self.assertEqual(pf.leftovers(run), set())

    def check_start(self, run, rc, stdout, out):
        # the milter and LMTP sockets are pecmilter's and Postfix's alone (issue 17: a
        # world-writable LMTP socket let anyone store a message in a PEC mailbox)
        for n in ("a", "b"):
            for name in ("milter.sock", "lmtp.sock"):
                st = os.stat(os.path.join(run, n, "pecmilter", name))
                self.assertEqual(st.st_mode & 0o007, 0, "%s/%s is open to others" % (n, name))
                self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "postfix")
        self.assertRegex(stdout, r"== sent mario\.rossi@pec-a\.test -> luigi\.bianchi@pec-b\.test, "
                                 r"carlo\.neri@example\.org, anna\.verdi@pec-b\.test through A's "
                                 r"submission \(XCLIENT LOGIN=mario\.rossi@pec-a\.test\): 250 ")
        status = dict((what, flag) for flag, what in
                      re.findall(r"^   \[(ok|MISSING)\] (.*), in \S+$", stdout, re.M))
        self.assertEqual(sorted(status), sorted(ALWAYS + NEED_RECEPTION), out)
        for what in ALWAYS:
            self.assertEqual(status[what], "ok", out)
        # every message shown verifies; the accettazione is where the sender reads it
        self.assertNotIn("pecverify: invalid", stdout)
        self.assertRegex(stdout, r"mario\.rossi@pec-a\.test +ACCETTAZIONE: Contratto di fornitura\n"
                                 r" +X-Ricevuta: accettazione; pecverify: valid \(notice accettazione\)\n"
                                 r" +a/mail/mario\.rossi/new/\S+\n")
        self.assertRegex(stdout, r"carlo\.neri@example\.org +POSTA CERTIFICATA: Contratto di "
                                 r"fornitura\n +X-Trasporto: posta-certificata; pecverify: valid "
                                 r"\(busta posta-certificata\)\n")
        for f in ("pki/trust.pem", "index.ldif", "a/pecmilter.conf", "b/pecmilter.conf",
                  "a/pecmilter.log", "b/pecmilter.log"):
            self.assertTrue(os.path.isfile(os.path.join(run, f)), f)
        self.assertTrue(os.listdir(os.path.join(run, "a", "mail", "mario.rossi", "new")))
        self.assertIn("== running; stop with: contrib/demo.sh stop --dir %s" % run, stdout)

        self.assertEqual(rc, 0, out)
        for what in NEED_RECEPTION:
            self.assertEqual(status[what], "ok", out)
        self.assertNotIn("missing after", stdout)
        for box in ("b/mail/luigi.bianchi/new", "b/mail/anna.verdi/new", "a/mail/ricevute/new"):
            self.assertTrue(os.listdir(os.path.join(run, box)), box)
        # one accettazione and two consegne in Mario's mailbox
        self.assertEqual(len(os.listdir(os.path.join(run, "a", "mail", "mario.rossi", "new"))), 3)
        for who, kind in (("luigi.bianchi", "completa"), ("anna.verdi", "sintetica")):
            self.assertRegex(stdout, r"X-Ricevuta: avvenuta-consegna; pecverify: valid \(notice "
                                     r"avvenuta-consegna %s for %s@pec-b\.test\)" % (kind, who))
        self.assertRegex(stdout, r"ricevute@pec-a\.test +PRESA IN CARICO: Contratto di fornitura\n"
                                 r" +X-Ricevuta: presa-in-carico; pecverify: valid")
        # A's reception point recorded B's receipts (presa in carico, consegne) against Mario's transaction
        with open(os.path.join(run, "a", "pecmilter.log"), encoding="utf-8",
                  errors="replace") as f:
            log = f.read()
        self.assertEqual(len(re.findall(r"reception: .*notice avvenuta-consegna about our .*: "
                                        r"recorded", log)), 2, log)
        self.assertEqual(len(re.findall(r"reception: .*notice presa-in-carico about our .*: "
                                        r"recorded", log)), 1, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
