"""contrib/demo.sh, run as the README tells a new user (on the tree ctest
built): two providers and an ordinary mail server on loopback, one certified
message from A to two users of B and one ordinary address, the chain of
receipts printed with pecverify's verdicts; stop leaves nothing behind.

While the build has no reception role (B's pecmilter logs "role reception is not
available in this build" and its port 25 answers 451), the buste for B and the
receipts that depend on them cannot arrive: the demo must then say exactly which
are missing and exit 1, and this test checks that it does, and that everything
else works.  With the reception role, the whole chain must arrive and the demo
exit 0.
"""
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

        with open(os.path.join(run, "b", "pecmilter.log"), encoding="utf-8",
                  errors="replace") as f:
            no_reception = "role reception is not available in this build" in f.read()
        if not no_reception:
            self.assertEqual(rc, 0, out)
            for what in NEED_RECEPTION:
                self.assertEqual(status[what], "ok", out)
            for box in ("b/mail/luigi.bianchi/new", "b/mail/anna.verdi/new",
                        "a/mail/ricevute/new"):
                self.assertTrue(os.listdir(os.path.join(run, box)), box)
            self.assertNotIn("missing after", stdout)
            return
        # no reception role yet: the demo is honest about it
        self.assertEqual(rc, 1, out)
        m = re.search(r"^== missing after \d+s: (.*)$", stdout, re.M)
        self.assertTrue(m, out)
        self.assertEqual(m.group(1).split("; "), NEED_RECEPTION)
        for what in NEED_RECEPTION:
            self.assertEqual(status[what], "MISSING", out)
        self.assertRegex(stdout, r"Postfix for pec-a\.test: to=<luigi\.bianchi@pec-b\.test>.*"
                                 r"status=deferred .*451 4\.3\.0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
