"""The Sendmail harness itself: an instance answers on its three listeners, its
configuration reads nothing under /etc/mail, and nothing of it survives a test
process killed with SIGKILL (the reaper of pectest.postfix stops it)."""
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

from pectest import env
from pectest import postfix as pf
from pectest import sendmail as sm

CHILD = r"""
import sys, time
sys.path.insert(0, %r)
from pectest import sendmail as sm
s = sm.Sendmail(%r, "k", ip="127.0.0.13", mydomain="pec-c.test", pec_domains=["pec-c.test"])
s.start()
print("ready", s.proc.pid, s.port, flush=True)
time.sleep(600)
"""


class ShippedSnippet(unittest.TestCase):
    """The harness's .mc is the shipped snippet plus what SITE and ENVIRONMENT list
    with their reasons (issue 17): a setting of its own is named."""

    def test_nothing_but_the_snippet(self):
        s = sm.Sendmail("/nonexistent", "x", ip="127.0.0.13", pec_domains=["pec-c.test"])
        mc = s.mc()
        self.assertEqual(sm.mc_deviations(mc), [])
        self.assertIn("include(`%s')dnl" % sm.SNIPPET, mc)
        with open(sm.SNIPPET) as f:
            header = f.read()
        for name in sm.SUBSTITUTION:
            self.assertIn("dnl   " + name, header.replace(",", "\ndnl  "))
        self.assertEqual(sm.mc_deviations(mc + "define(`confMAX_MESSAGE_SIZE', `104857600')dnl\n"
                                          "define(`confAUTH_OPTIONS', `A')dnl\n"),
                         ["confMAX_MESSAGE_SIZE", "confAUTH_OPTIONS"])


class SendmailHarness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sm.ensure()

    def setUp(self):
        self.work = sm.workdir("harness-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def alive(self):
        return sorted(pf.instances_left(self.work))

    def test_1_listeners_and_config(self):
        s = sm.Sendmail(self.work, "x", ip="127.0.0.13", mydomain="pec-c.test",
                        pec_domains=["pec-c.test"])
        with s:
            for port, name in ((s.port, "pec-mx"), (s.submission_port, "pec-submission"),
                               (s.reinject_port, "pec-reinject")):
                with smtplib.SMTP(s.ip, port, timeout=30) as c:
                    code, text = c.ehlo("client.test")
                    self.assertEqual(code, 250, text)
                    self.assertIn(b"mx.pec-c.test", text)
                deadline = time.monotonic() + 10
                while ("during connection to %s" % name) not in s.log():
                    self.assertLess(time.monotonic(), deadline, s.log_tail())
                    time.sleep(0.1)
            self.assertIn("starting daemon", s.log())
            # the filter is attached to pec-mx and pec-submission, not to pec-reinject
            for name, want in (("pec-mx", "Milter (pecmilter): "),
                               ("pec-submission", "Milter (pecmilter): "),
                               ("pec-reinject", "Milter: no active filter")):
                qid = re.search(r"\]: (\w+): .*during connection to %s" % name,
                                s.log()).group(1)
                self.assertIn("%s: %s" % (qid, want), s.log())
        with open(s.cf) as f:
            live = [l for l in f if not l.startswith("#") and "/etc/mail" in l]
        self.assertEqual(live, [])
        self.assertEqual(self.alive(), [])

    def test_2_sigkilled_test_process(self):
        child = subprocess.Popen([sys.executable, "-c", CHILD % (env.HERE + "/..", self.work)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = ""
        while True:                  # until "ready", or EOF when start() failed
            line = child.stdout.readline().decode()
            out += line
            m = re.match(r"ready (\d+) (\d+)", line)
            if m or not line:
                break
        self.assertIsNotNone(m, out)
        pid = int(m.group(1))
        self.assertTrue(os.path.exists("/proc/%d" % pid))
        child.kill()
        child.wait()
        child.stdout.close()
        deadline = time.monotonic() + 20
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.alive(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
