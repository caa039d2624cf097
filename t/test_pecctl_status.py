"""pecctl status: the daemon's sockets, the outbox, pending receipts and their
next deadlines, the index, the signing certificate and the store.

With the daemon running and nothing wrong it says up and OK and exits 0;
the milter socket must answer the milter negotiation and the LMTP socket
greet with 220.  Once the daemon is stopped it says down and exits 1.
Transactions awaiting receipts (written by t/tools/injectord) are counted
with their next deadline (sent + warning_after); a failed outbox message
and a signing certificate expiring in 10 days (made here with openssl) each
need attention (exit 1).  So does a system clock the kernel says is not
synchronised (read here independently, through ntp_adjtime by ctypes), and
a configuration in test_mode.  --json is read by Python's json module.
"""
import contextlib
import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from pectest import config, daemon, env, pki

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
PECCTL = env.program("pecctl")


TIME_ERROR = 5


def clock_in_step():
    """What the kernel says of its clock: ntp_adjtime with no mode bits set only
    reads, and answers TIME_ERROR while the clock is not synchronised.  (The
    estimated error is not read here: a synchronised test machine is rare.)"""
    buf = ctypes.create_string_buffer(1024)     # larger than struct timex
    return ctypes.CDLL(None, use_errno=True).ntp_adjtime(buf) != TIME_ERROR


class StatusTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pectest-status-")
        self.conf = os.path.join(self.tmp, "pecmilter.conf")
        self.settings = config.write(self.conf, "a",
                                     maildir_root=os.path.join(self.tmp, "mail"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def status(self, *args):
        p = subprocess.run([PECCTL, "-c", self.conf, "status"] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def report(self):
        rc, out, err = self.status("--json")
        self.assertIn(rc, (0, 1), err)
        return rc, json.loads(out)

    def enqueue(self, n, at):
        p = subprocess.run([INJECTORD, "-c", self.conf, "enqueue", str(n),
                            "luigi@pec-b.test,anna@pec-b.test", "-p", "st", "-a", str(at),
                            "-s", "60"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_daemon_up_then_down(self):
        in_step = clock_in_step()
        d = daemon.start(self.conf)
        try:
            rc, out, err = self.status()
            self.assertEqual(rc, 0 if in_step else 1, out + err)
            self.assertRegex(out, r"(?m)^daemon: +up$")
            self.assertRegex(out, r"(?m)^status: +%s$" % ("OK" if in_step else "ATTENTION"))
            self.assertRegex(out, r"(?m)^clock: +%s" % ("synchronised$" if in_step else
                                                      "NOT IN STEP: the system clock is not "
                                                      "synchronised"))
            self.assertNotRegex(out, r"(?m)^mode:")
            rc, r = self.report()
            self.assertEqual(rc, 0 if in_step else 1, r)
            self.assertEqual(r["healthy"], in_step, r)
            self.assertEqual(r["clock"]["synchronised"], in_step, r)
            self.assertIs(r["test_mode"], False)
            self.assertEqual(r["attention"], [] if in_step else [r["clock"]["problem"]])
            self.assertTrue(r["daemon"]["milter"]["up"], r)
            self.assertTrue(r["daemon"]["lmtp"]["up"], r)
            self.assertTrue(r["daemon"]["lmtp"]["answer"].startswith("220 "), r)
            self.assertEqual(r["pending"]["recipients"], 0)
            self.assertGreater(r["store"]["bytes"], 0)
            self.assertGreater(r["certificate"]["days_left"], 30)
            self.assertGreaterEqual(r["index"]["age_seconds"], 0)
        finally:
            text = d.stop()
        self.assertEqual(d.returncode, 0, text)
        self.assertNotIn("Sanitizer", text)

        rc, out, _ = self.status()
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^daemon: +down$")
        self.assertRegex(out, r"(?m)^status: +ATTENTION$")
        rc, r = self.report()
        self.assertFalse(r["healthy"])
        self.assertFalse(r["daemon"]["milter"]["up"])
        self.assertFalse(r["daemon"]["lmtp"]["up"])
        self.assertEqual(len(r["attention"]), 2 + (not in_step), r["attention"])

    def test_test_mode_needs_attention(self):
        config.write(self.conf, "a", maildir_root=os.path.join(self.tmp, "mail"),
                     test_mode="yes")
        subprocess.run([INJECTORD, "-c", self.conf, "enqueue", "0", "x@pec-b.test"],
                       capture_output=True, timeout=60)      # the store must exist
        rc, out, _ = self.status()
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"(?m)^mode: +TEST \(test_mode = \"yes\"\): not a production")
        rc, r = self.report()
        self.assertIs(r["test_mode"], True)
        self.assertTrue(any(a.startswith("test_mode") for a in r["attention"]), r)

    def test_pending_and_failed(self):
        self.settings = config.write(self.conf, "a", store=os.path.join(self.tmp, "s.db"))
        start = int(time.time()) - 600
        self.enqueue(3, start)
        rc, r = self.report()
        self.assertEqual(r["pending"]["recipients"], 6, r)
        self.assertEqual(r["pending"]["transactions"], 3, r)
        self.assertEqual(r["pending"]["overdue"], 0, r)
        nxt = r["pending"]["next"]
        self.assertEqual(len(nxt), 5)
        self.assertEqual([n["at"] for n in nxt],
                         [start + 43200] * 2 + [start + 60 + 43200] * 2 + [start + 120 + 43200])
        self.assertEqual({n["notice"] for n in nxt}, {"12h"})
        self.assertEqual(r["outbox"]["queued"], 3)
        self.assertEqual(r["outbox"]["failed"], 0)
        # only the daemon's two sockets (and the clock, when it is not in step)
        self.assertEqual(len(r["attention"]), 2 + (not clock_in_step()), r)

        with contextlib.closing(sqlite3.connect(os.path.join(self.tmp, "s.db"))) as c:
            c.execute("UPDATE outbox SET state = 'failed' WHERE id = 1")
            c.commit()
        rc, r = self.report()
        self.assertEqual(rc, 1)
        self.assertEqual(r["outbox"]["failed"], 1)
        self.assertTrue(any("1 outbox messages failed" in a for a in r["attention"]), r)
        rc, out, _ = self.status()
        self.assertRegex(out, r"(?m)^outbox: +2 queued, 0 sending, 0 sent, 1 failed$")
        self.assertRegex(out, r"(?m)^pending: +6 recipients in 3 transactions")

        # taken in charge: the 24 h notice is next; delivered after the 12 h with the
        # 12 h notice owed (the scheduler's mark): that notice is next, and overdue
        with contextlib.closing(sqlite3.connect(os.path.join(self.tmp, "s.db"))) as c:
            taken, owed = c.execute("SELECT identificativo, address FROM recipients"
                                    " ORDER BY sent_at, identificativo, address LIMIT 2").fetchall()
            c.execute("UPDATE recipients SET sent_at = sent_at - 80000, state = 'taken',"
                      " taken_at = ? WHERE identificativo = ? AND address = ?", (start,) + taken)
            c.execute("UPDATE recipients SET sent_at = sent_at - 50000, state = 'delivered',"
                      " warned_at = -1 WHERE identificativo = ? AND address = ?", owed)
            c.commit()
        rc, r = self.report()
        kinds = {(n["identificativo"], n["address"]): (n["notice"], n["at"])
                 for n in r["pending"]["next"]}
        self.assertEqual(kinds[taken], ("24h", start - 80000 + 84600), r)   # deadline_after
        self.assertEqual(kinds[owed], ("12h", start - 50000 + 43200), r)
        self.assertEqual(r["pending"]["overdue"], 1, r)

    def test_certificate_expiring(self):
        cert, key = os.path.join(self.tmp, "soon.pem"), os.path.join(self.tmp, "soon.key")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "10", "-subj", "/CN=posta-certificata@pec-a.test",
                            "-keyout", key, "-out", cert], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        config.write(self.conf, "a", sign_cert=cert, sign_key=key)
        # the store must exist: pecctl never creates one
        self.enqueue(1, int(time.time()))
        rc, r = self.report()
        self.assertEqual(rc, 1)
        # whole days left: 9, or 10 within the second openssl made it
        days = r["certificate"]["days_left"]
        self.assertIn(days, (9, 10), r)
        self.assertIn("the signing certificate expires in %d days" % days, r["attention"])
        rc, out, _ = self.status()
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"(?m)^certificate: .*soon\.pem, expires .* \((9|10) days\)$")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
