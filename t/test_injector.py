"""The outbox injector against a real private Postfix (pectest.postfix).

The injector hands generated messages to the instance's reinjection listener
(no milter) or to its sendmail, and they must arrive in the Maildir byte for
byte (dot-led lines included), from the service address, each once.  With
the MTA stopped for a while the rows wait, `pecctl outbox` says why, and all
arrive once it is back.  A permanent refusal fails the row, shown with its
error, until `pecctl outbox retry`.
"""
import email
import email.policy
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from pectest import config, env, pki
from pectest import postfix as pf

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
PECCTL = env.program("pecctl")
SERVICE = "posta-certificata@pec-a.test"
WORK = None


def message_ids(msgs):
    out = []
    for raw in msgs:
        m = email.message_from_bytes(raw, policy=email.policy.compat32)
        out.append(m["Message-ID"].strip("<> "))
    return out


class Injectord:
    """`injectord -c CONF run` in the background, stderr to a file."""

    def __init__(self, conf, *args, environ=None):
        self.log_path = conf + ".injectord.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([INJECTORD, "-c", conf, "run"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=environ, start_new_session=True)
        pf.register_process(self.proc.pid, WORK)

    def stop(self):
        """SIGTERM; raises unless it stopped cleanly (exit 0, no sanitizer report)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        pf.unregister_process(self.proc.pid)
        self.log.close()
        if self.proc.returncode != 0 or "Sanitizer" in self.text():
            raise AssertionError("injectord exited %s:\n%s" % (self.proc.returncode, self.text()))

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class InjectorTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=WORK)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "pecmilter.conf")

    def configure(self, **kw):
        kw.setdefault("outbox_retry_max_backoff", 2)
        kw.setdefault("seal_dir", os.path.join(self.dir, "seals"))
        config.write(self.conf, "a", **kw)

    def enqueue(self, n, rcpt, prefix):
        p = subprocess.run([INJECTORD, "-c", self.conf, "enqueue", str(n), rcpt, "-p", prefix],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.split()

    def pecctl(self, *args):
        p = subprocess.run([PECCTL, "-c", self.conf] + list(args), capture_output=True,
                           text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def wait_sent(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.pecctl("outbox")
            m = re.search(r"(\d+) sent", out)
            if m and int(m.group(1)) >= n:
                return out
            if time.monotonic() > deadline:
                raise AssertionError("not all sent after %ss:\n%s" % (timeout, out))
            time.sleep(0.2)

    def instance(self, name, ip):
        return pf.Postfix(WORK, name, ip=ip, mydomain="pec-a.test",
                          virtual_domains=["pec-a.test"], reinject_port=pf.free_port(ip))

    def test_smtp_delivery_and_outage(self):
        a = self.instance("smtp", "127.0.0.31")
        self.configure(reinject="smtp:%s:%d" % (a.ip, a.reinject_port))
        with a:
            sent = self.enqueue(3, "mario@pec-a.test,luigi@pec-a.test", "first")
            d = Injectord(self.conf)
            try:
                got = a.wait_for_mail("mario@pec-a.test", 3)
                self.assertEqual(sorted(message_ids(got)), sorted(sent))
                self.assertEqual(len(a.wait_for_mail("luigi@pec-a.test", 3)), 3)
                raw = got[0]
                self.assertIn(b"Return-Path: <%s>" % SERVICE.encode(), raw)
                body = raw.split(b"\n\n", 1)[1]
                self.assertIn(b"\n.a line that starts with a dot\n..and one with two\n.\nperch\xe8",
                              body)
                out = self.wait_sent(3)
                self.assertIn("0 waiting, 0 being sent, 3 sent, 0 failed", out)
                self.assertRegex(d.text(), r"\w+: outbox: <first\.0@pec-a\.test> "
                                           r"\(accettazione opec\.first\.0@pec-a\.test\) to "
                                           r"mario@pec-a\.test,luigi@pec-a\.test: sent")

                # the MTA goes away: rows wait, pecctl says why
                a.stop()
                sent2 = self.enqueue(4, "mario@pec-a.test", "outage")
                time.sleep(4)
                rc, out = self.pecctl("outbox")
                print("\n--- pecctl outbox while the MTA is down ---\n" + out)
                self.assertEqual(rc, 0)
                self.assertIn("4 waiting", out)
                self.assertIn("last error: connect to %s:%d: Connection refused"
                              % (a.ip, a.reinject_port), out)
                self.assertIn("outbox: the MTA cannot take messages", d.text())
                a.start()
                got = a.wait_for_mail("mario@pec-a.test", 7, timeout=60)
                self.wait_sent(7)
                ids = message_ids(got)
                self.assertEqual(sorted(ids), sorted(sent + sent2))   # each exactly once
                self.assertIn("outbox: the MTA answers again", d.text())

                # a second outage with one row, which one worker tries while the others
                # have nothing to do: the log says both ways again, and last that the MTA
                # answers (a worker marked down that never met the MTA again once kept
                # the injector "down" and silent about it)
                a.stop()
                sent3 = self.enqueue(1, "mario@pec-a.test", "second")
                time.sleep(3)
                a.start()
                got = a.wait_for_mail("mario@pec-a.test", 8, timeout=60)
                self.wait_sent(8)
                self.assertEqual(sorted(message_ids(got)), sorted(sent + sent2 + sent3))
                deadline = time.monotonic() + 10
                while True:
                    said = re.findall(r"outbox: the MTA (cannot take messages|answers again)",
                                      d.text())
                    if said and said[-1] == "answers again" or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                self.assertGreaterEqual(said.count("cannot take messages"), 2, said)
                self.assertGreaterEqual(said.count("answers again"), 2, said)
                self.assertEqual(said[-1], "answers again", said)
            finally:
                d.stop()
            time.sleep(1)
            self.assertEqual(len(a.messages("mario@pec-a.test")), 8)

    def test_refused_for_good(self):
        a = self.instance("perm", "127.0.0.32")
        self.configure(reinject="smtp:%s:%d" % (a.ip, a.reinject_port))
        with a:
            self.enqueue(1, "no/slash@pec-a.test", "bad")
            ok = self.enqueue(1, "no/slash@pec-a.test,ok@pec-a.test", "half")
            d = Injectord(self.conf)
            try:
                self.assertEqual(message_ids(a.wait_for_mail("ok@pec-a.test")), ok)
                deadline = time.monotonic() + 30
                while "1 failed" not in self.pecctl("outbox")[1]:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.2)
                rc, out = self.pecctl("outbox")
                print("\n--- pecctl outbox with a refused message ---\n" + out)
                self.assertRegex(out, r"<bad\.0@pec-a\.test> accettazione .* failed")
                self.assertRegex(out, r"last error: RCPT: <no/slash@pec-a\.test>: 550")
                rc, out = self.pecctl("outbox", "retry", "all")
                self.assertEqual((rc, out.strip()),
                                 (0, "outbox retry: 1 failed message(s) queued again"))
                deadline = time.monotonic() + 30
                while "1 failed" not in self.pecctl("outbox")[1]:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.2)
                self.assertIn("refused for good: <no/slash@pec-a.test>: 550", d.text())
            finally:
                d.stop()

    def test_sendmail(self):
        a = self.instance("sm", "127.0.0.33")
        self.configure(reinject="sendmail:/usr/sbin/sendmail")
        with a:
            sent = self.enqueue(2, "mario@pec-a.test", "sm")
            environ = dict(os.environ, MAIL_CONFIG=a.etc)
            d = Injectord(self.conf, environ=environ)
            try:
                got = a.wait_for_mail("mario@pec-a.test", 2)
                self.assertEqual(sorted(message_ids(got)), sorted(sent))
                self.assertIn(b"Return-Path: <%s>" % SERVICE.encode(), got[0])
                self.assertIn(b"\n.a line that starts with a dot\n..and one", got[0])
                self.wait_sent(2)
            finally:
                d.stop()


def main():
    global WORK
    if not pf.have_postfix():
        env.skip("needs root and Postfix")
    if not os.path.exists(INJECTORD) or not os.path.exists(PECCTL):
        env.skip("build injectord and pecctl first")
    pki.ensure()
    WORK = tempfile.mkdtemp(prefix="pectest-injector-")
    os.chmod(WORK, 0o755)
    env.run_suite(InjectorTest, WORK)


if __name__ == "__main__":
    main()
