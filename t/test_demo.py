"""contrib/demo.sh, run as the README tells a new user (on the tree ctest
built): start shows the message where it landed, stop leaves nothing behind."""
import os
import re
import subprocess
import tempfile
import unittest

from pectest import env
from pectest import postfix as pf


class DemoTest(unittest.TestCase):
    def test_start_then_stop(self):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        demo = os.path.join(env.SRC_DIR, "contrib", "demo.sh")
        with tempfile.TemporaryDirectory(prefix="pec-demo-") as d:
            run = os.path.join(d, "run")
            try:
                p = subprocess.run([demo, "start", "--dir", run, "--build", env.BUILD_DIR],
                                   capture_output=True, text=True, timeout=300)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertRegex(p.stdout, r"sent mario\.rossi@example\.org -> luigi@pec-a\.test: 250")
                m = re.search(r"== it landed in (\S+)", p.stdout)
                self.assertTrue(m, p.stdout)
                with open(m.group(1), "rb") as f:
                    self.assertIn(b"questo messaggio \xc3\xa8 passato da pecmilter", f.read())
                self.assertRegex(p.stdout, r"passthrough: from=<mario\.rossi@example\.org>")
                self.assertTrue(pf.leftovers(run), "the demo keeps running after start")
            finally:
                p = subprocess.run([demo, "stop", "--dir", run], capture_output=True,
                                   text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("stopped pecmilter", p.stdout)
            self.assertEqual(pf.leftovers(run), set())


if __name__ == "__main__":
    unittest.main(verbosity=2)
