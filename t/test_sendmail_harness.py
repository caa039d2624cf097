"""The Sendmail harness itself: its configuration is the shipped snippet with the
documented substitution and the site and environment settings it lists, setting by
setting and value by value (a value of its own is named, in the .mc and in the
generated sendmail.cf), an instance answers on its three listeners, its
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
    """The harness's .mc is the shipped snippet with the documented substitution
    (domains, addresses, ports, paths) plus what SITE and ENVIRONMENT list with their
    reasons (issue 17): a setting of its own, or a value other than the snippet's, is
    named, in the .mc and in the sendmail.cf m4 makes of it."""

    def instance(self):
        return sm.Sendmail("/nonexistent", "x", ip="127.0.0.13", pec_domains=["pec-c.test"],
                           milter="unix:/run/pectest/x/milter.sock",
                           lmtp_socket="/run/pectest/x/lmtp.sock",
                           transports={"pec-b.test": ("127.0.0.12", 2526)},
                           sasl_users={"mario@pec-c.test": "pw"},
                           tls_policy="/run/pectest/x/tls-policy")

    def test_nothing_but_the_snippet(self):
        s = self.instance()
        mc = s.mc()
        self.assertEqual(sm.mc_deviations(mc), [])
        self.assertIn("include(`%s')dnl" % sm.SNIPPET, mc)
        with open(sm.SNIPPET) as f:
            header = f.read()
        for name in sm.SUBSTITUTION:
            self.assertIn("dnl   " + name, header.replace(",", "\ndnl  "))
            self.assertIn(name, sm.SUBSTITUTION_KIND)
        # every substitution the harness makes is one of the snippet's placeholders
        self.assertEqual(sorted(s.substitution()), sorted(sm.SUBSTITUTION))
        shipped = sm.snippet_settings()
        for name, why in list(sm.SITE.items()) + list(sm.ENVIRONMENT.items()):
            self.assertNotIn(name, shipped, "the harness would override the snippet")
            self.assertTrue(why)

    def test_a_value_of_the_harness_alone_is_named(self):
        mc = self.instance().mc()
        # a snippet setting with another value, a harmless repetition of one
        self.assertEqual(sm.mc_deviations(mc + "define(`confMAX_MESSAGE_SIZE', `104857600')dnl\n"
                                          "define(`confAUTH_OPTIONS', `A')dnl\n"
                                          "define(`confAUTH_OPTIONS', `A,p')dnl\n"),
                         ["confMAX_MESSAGE_SIZE = 104857600: the snippet says 36700160",
                          "confAUTH_OPTIONS = A: the snippet says A,p"])
        # a listener option smuggled in as a "port": not the documented substitution
        bad = re.sub(r"define\(`PECMILTER_MSA_PORT', `(\d+)'\)",
                     r"define(`PECMILTER_MSA_PORT', `\1, M=E')", mc)
        self.assertNotEqual(bad, mc)
        self.assertEqual(len(sm.mc_deviations(bad)), 1, sm.mc_deviations(bad))
        self.assertRegex(sm.mc_deviations(bad)[0],
                         r"^PECMILTER_MSA_PORT = \d+, M=E: not a port ")
        # a setting neither the snippet's nor SITE nor ENVIRONMENT, an option line
        self.assertEqual(sm.mc_deviations(mc + "define(`confEIGHT_BIT_HANDLING', `mimefy')dnl\n"
                                          "LOCAL_CONFIG\nO EightBitMode=mimefy\n"),
                         ["confEIGHT_BIT_HANDLING = mimefy: neither in the snippet nor site "
                          "or environment-only",
                          "EightBitMode = mimefy: an option line of the harness's own"])

    def test_the_cf_has_the_snippets_values(self):
        why = sm.unavailable()
        if why:
            self.skipTest(why)
        s = self.instance()
        self.assertEqual(s.deviations(), [])
        mc, sub = s.mc(), s.substitution()
        # a define after the include overrides the snippet (cf.m4 writes the options
        # at the end of input)
        self.assertEqual(sm.cf_deviations(mc + "define(`confMAX_MESSAGE_SIZE', `0')dnl\n", sub),
                         ["sendmail.cf MaxMessageSize: 0, the snippet gives 36700160"])
        # what the .mc's settings do not show: option lines of LOCAL_CONFIG
        later = mc.replace("LOCAL_CONFIG\n", "LOCAL_CONFIG\nO MaxMessageSize=104857600\n"
                           "O AuthOptions=A\n", 1)
        self.assertEqual(sm.cf_deviations(later, sub),
                         ["sendmail.cf AuthOptions: A | A,p, the snippet gives A,p",
                          "sendmail.cf MaxMessageSize: 104857600 | 36700160, the snippet "
                          "gives 36700160"])
        # the filter without F=T: mail would pass uncertified when pecmilter is down
        nof = mc.replace("include(`%s')dnl" % sm.SNIPPET, "include(`%s')dnl\n"
                         "define(`_INPUT_MAIL_FILTERS_', `')dnl\n"
                         "INPUT_MAIL_FILTER(`pecmilter', `S=%s')dnl"
                         % (sm.SNIPPET, sub["PECMILTER_MILTER"]))
        self.assertIn("sendmail.cf Xpecmilter",
                      [d.split(":")[0] for d in sm.cf_deviations(nof, sub)])


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
