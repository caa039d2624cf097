"""Provider-to-provider SMTP is TLS-mandatory towards every domain of the
providers' index (pec-rules.md 2.3, 8.5; issue 17).

`pecctl tls-policy` writes the MTA's TLS policy table from the index's
managedDomains, our own domains left out: Postfix smtp_tls_policy_maps lines
("domain encrypt"), or Sendmail access-database lines ("TLS_Rcpt:domain
ENCR:128"); on stdout, or into a file replaced whole.  With tls_policy_file
set, the daemon writes the same table at its first index refresh and again
whenever a refresh brings other managedDomains, and leaves the file alone
when nothing changed.
"""
import os
import re
import shutil
import stat
import subprocess
import time
import unittest

from pectest import config, daemon, env, pki

PECCTL = env.program("pecctl")


def run(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


class Pecctl(config.Scratch, unittest.TestCase):
    def setUp(self):
        super().setUp()
        # A as the index knows it: both its domains are ours
        self.settings["domains"] = list(pki.MANAGED_DOMAINS["a"])

    def policy(self, *args):
        self.write()
        return run(PECCTL, "-c", self.path, "tls-policy", *args)

    def test_postfix_and_sendmail_tables(self):
        p = self.policy()
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertEqual(p.stdout, "pec-b.test encrypt\n")
        p = self.policy("--format", "sendmail")
        self.assertEqual(p.stdout, "TLS_Rcpt:pec-b.test ENCR:128\n")
        self.settings = config.settings("b", self.dir)
        self.assertEqual(self.policy().stdout, "pec-a.test encrypt\npec-a2.test encrypt\n")

    def test_into_a_file(self):
        out = os.path.join(self.dir, "tls-policy")
        p = self.policy("-o", out)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))
        with open(out) as f:
            self.assertEqual(f.read(), "pec-b.test encrypt\n")
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o644)
        self.assertFalse(os.path.exists(out + ".new"))

    def test_usage(self):
        for args in (["--format", "exim"], ["extra"], ["--level", "secure"]):
            with self.subTest(args=args):
                self.assertEqual(self.policy(*args).returncode, 64)


class DaemonKeepsItFresh(config.Scratch, unittest.TestCase):
    def test_written_at_refresh_and_when_domains_change(self):
        source = os.path.join(self.dir, "index.ldif.p7m")
        shutil.copyfile(pki.index_p7m(), source)
        table = os.path.join(self.dir, "pec-tls-policy")
        self.settings.update(domains=list(pki.MANAGED_DOMAINS["a"]), index_source="file:" + source, index_refresh=1, test_mode="yes",
                             tls_policy_file=table, reinject="smtp:127.0.0.1:9")
        self.write()
        d = daemon.start(self.path)
        self.addCleanup(d.stop)

        def refreshed(after, pattern=r"refreshed from file:\S+: (\d) providers[^\n]*"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                m = re.compile(pattern).search(d.stderr(), after)
                if m:
                    return m
                time.sleep(0.05)
            self.fail("no %r in pecmilter's log:\n%s" % (pattern, d.stderr()[-3000:]))

        first = refreshed(0)
        self.assertIn("; TLS policy written to " + table, first.group(0))
        with open(table) as f:
            self.assertEqual(f.read(), "pec-b.test encrypt\n")
        # the next refresh, with the same domains, leaves the file as it is
        again = refreshed(first.end())
        self.assertNotIn("TLS policy", again.group(0))
        # a provider joins the index: its domain is in the table at the next refresh
        rogue = config.settings("rogue", self.dir)
        rconf = os.path.join(self.dir, "rogue.conf")
        with open(rconf, "w") as f:
            f.write(config.render(rogue))
        record = run(PECCTL, "-c", rconf, "index", "record")
        self.assertEqual(record.returncode, 0, record.stderr)
        bigger = os.path.join(self.dir, "bigger.ldif")
        with open(pki.index()) as f, open(bigger, "w") as out:
            out.write(f.read() + "\n" + record.stdout)
        offset = len(d.stderr())
        pki.sign(bigger, source + ".tmp")
        os.rename(source + ".tmp", source)
        changed = refreshed(offset, r"refreshed from file:\S+: 3 providers[^\n]*")
        self.assertIn("; managedDomains changed; TLS policy written to " + table,
                      changed.group(0))
        with open(table) as f:
            self.assertEqual(f.read(), "pec-b.test encrypt\npec-rogue.test encrypt\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
