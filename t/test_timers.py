"""End to end: the sender side's timeout notices with the real daemon and Postfix.

Provider A is a private Postfix with pecmilter in the access role on its
submission listener; what pecmilter generates goes through its injector to
A's reinjection listener and into A's Maildirs.  Provider B is absent: mail
for pec-b.test (and example.org) is relayed to a loopback port nobody
listens on, so nothing ever comes back.  The configuration shrinks the
deadlines to seconds (warning_after 3, deadline_not_before 5,
deadline_after 6).

Checked from outside: for a certified recipient that never answers the
sender's mailbox gets the 12 h notice and then the final one, each once,
not before its time, both verified with `openssl smime -verify`, their
daticert.xml valid against the DTD (skipped, saying so, when
$PEC_SHARED_DIR/spec/daticert.dtd is absent), classified by pecverify as
preavviso-errore-consegna with errore-esteso 4.4.7 and 5.4.1 naming the
gestore; the esterno recipient earns none.  With the daemon killed before
the first deadline and started again after both, each owed notice comes
once, and a further restart adds nothing.
"""
import os
import re
import signal
import time
import unittest

from pectest import config, daemon, e2e, env, pecmail, pki
from pectest import postfix as pf
from pectest.provider import Provider

MARIO = "mario@pec-a.test"
LUIGI = "luigi@pec-b.test"
EXT = "ext@example.org"
WARNING, NOT_BEFORE, DEADLINE = 3, 5, 6


def message(subject, to, extra=b""):
    return e2e.message(subject, to, MARIO, extra=extra, body=b"Testo.\r\n")


class TimersE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        pki.ensure()
        cls.d = None
        e2e.start(cls, e2e.workdir("pec-e2e-timers-"))

    @classmethod
    def _start(cls, work):
        ip = pf.loopback_ip(1)
        reinject = pf.free_port(ip)
        nobody = pf.free_port(pf.loopback_ip(2))  # B is absent: nothing listens there
        cls.conf = os.path.join(work, "pecmilter.conf")
        cls.settings = config.write(
            cls.conf, "a", roles={"pec-submission": "access", "pec-mx": "passthrough"},
            reinject="smtp:%s:%d" % (ip, reinject), outbox_retry_max_backoff=2,
            warning_after=WARNING, deadline_not_before=NOT_BEFORE, deadline_after=DEADLINE,
            test_mode="yes", mailboxes=(MARIO,),
            seal_dir=os.path.join(work, "seals"))
        os.makedirs(os.path.join(work, "seals"))
        relay = "smtp:[%s]:%d" % (pf.loopback_ip(2), nobody)
        cls.a = Provider(work, "a", cls.settings, ip=ip,
                         transports={"pec-b.test": relay, "example.org": relay})
        cls.a.start()
        cls.start_daemon()

    @classmethod
    def start_daemon(cls):
        cls.d = daemon.start(cls.conf)
        pf.register_process(cls.d.proc.pid, cls.tmp)

    @classmethod
    def stop_daemon(cls):
        bad = e2e.daemon_exit("", cls.d)
        pf.unregister_process(cls.d.proc.pid)
        if bad:
            raise AssertionError(bad)

    @classmethod
    def _stop(cls):
        e2e.stop_all((cls.d, getattr(cls, "a", None)), cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.stop_daemon()
        finally:
            cls._stop()

    # -- helpers ---------------------------------------------------------------

    def submit(self, subject, rcpts, extra=b""):
        code, text = self.a.send(MARIO, rcpts, message(subject, ", ".join(rcpts), extra),
                                 port=self.a.submission_port, xclient_login=MARIO)
        self.assertEqual(code, 250, text)
        return time.time()

    def notices(self, subject):
        """(arrival time, Message) of every timeout notice about SUBJECT in Mario's mailbox."""
        out = []
        base = self.a.maildir(MARIO)
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            for name in os.listdir(d) if os.path.isdir(d) else ():
                path = os.path.join(d, name)
                with open(path, "rb") as f:
                    m = pecmail.Message(f.read())
                if (m.header("X-Ricevuta") == "preavviso-errore-consegna"
                        and subject in (m.header("Subject") or "")):
                    out.append((os.stat(path).st_mtime, m))
        return sorted(out, key=lambda x: x[0])

    def wait_notices(self, subject, count, timeout):
        return e2e.wait(self, lambda: self.notices(subject), count, timeout,
                        lambda: "\n%s\n--- pecmilter ---\n%s"
                        % (self.a.log_tail(), self.d.stderr()[-3000:]),
                        what="notice(s) about %r" % subject)

    def check_notice(self, m, name):
        """Signature, DTD and pecverify's verdict; returns pecverify's report."""
        report = e2e.verify(self, m, self.tmp, name)
        self.assertEqual(report["kind"], "notice")
        self.assertEqual(report["tipo"], "preavviso-errore-consegna")
        self.assertEqual(report["mittente"], MARIO)
        self.assertIsNone(m.postacert())
        return report

    def check_pair(self, got, subject, t0, stem):
        """GOT is exactly the 12 h and the final notice about LUIGI, in that order."""
        reports = [self.check_notice(m, "%s-%d.eml" % (stem, i)) for i, (_, m) in enumerate(got)]
        self.assertEqual([r["consegna"] for r in reports], [LUIGI, LUIGI], reports)
        gestore = self.settings["provider_name"]
        self.assertTrue(reports[0]["errore_esteso"].startswith("4.4.7 - %s - " % gestore),
                        reports[0])
        self.assertEqual(reports[0]["errore"], "nessuno")
        self.assertTrue(reports[1]["errore_esteso"].startswith("5.4.1 - %s - " % gestore),
                        reports[1])
        self.assertEqual(reports[1]["identificativo"], reports[0]["identificativo"])
        for _, m in got:
            self.assertEqual(m.header("X-Riferimento-Message-ID"),
                             "<%s@client.pec-a.test>" % re.sub(r"\W", "", subject))
            self.assertEqual(m.header("Subject"),
                             "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: " + subject)
            self.assertIn(EXT, m.daticert().decode())       # in the intestazione, as esterno
        self.assertIn("12 ore", got[0][1].text())
        self.assertIn("24 ore", got[1][1].text())
        return reports

    # -- the tests -------------------------------------------------------------

    def test_1_no_answer_12h_then_final(self):
        """B never answers: the 12 h notice, then the final one, once each, not early."""
        subject = "Nessuna risposta"
        t0 = self.submit(subject, [LUIGI, EXT])
        got = self.wait_notices(subject, 2, timeout=DEADLINE + 20)
        time.sleep(2)                                       # nothing more comes
        got = self.notices(subject)
        self.assertEqual(len(got), 2, [m.header("Subject") for _, m in got])
        self.check_pair(got, subject, t0, "noanswer")
        # arrival in the Maildir is after emission: never before its time
        self.assertGreaterEqual(got[0][0], t0 + WARNING - 1)
        self.assertGreaterEqual(got[1][0], t0 + NOT_BEFORE - 1)
        self.assertIn("preavviso (12 h)", self.d.stderr())

    def test_3_reply_to_is_risposte(self):
        """The original had a Reply-To: both notices give it as risposte, as the busta
        did, not the sender (issue 18)."""
        subject = "Rispondere altrove"
        self.submit(subject, [LUIGI], extra=b"Reply-To: segreteria@pec-a.test\r\n")
        got = self.wait_notices(subject, 2, timeout=DEADLINE + 20)
        for _, m in got:
            self.assertIn(b"<risposte>segreteria@pec-a.test</risposte>", m.daticert())

    def test_2_daemon_down_across_the_deadlines(self):
        """Down before 12 h, started after 24 h: each owed notice comes once."""
        subject = "Demone fermo"
        # the 250 comes after the transaction is in the store: kill -9 at once (a clean
        # stop waits for libmilter's listener, seconds, and would straddle the 12 h mark)
        t0 = self.submit(subject, [LUIGI, EXT])
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait(10)
        self.d.stop()
        pf.unregister_process(self.d.proc.pid)
        self.assertLess(time.time(), t0 + WARNING, "the daemon took too long to die")
        self.assertEqual(self.notices(subject), [])
        time.sleep(max(0, t0 + DEADLINE + 1 - time.time()))
        self.start_daemon()
        got = self.wait_notices(subject, 2, timeout=20)
        # both are queued at once, in order, but Postfix may hand them to the delivery
        # point either way round: put the 12 h one first by its text, not its arrival
        got.sort(key=lambda x: "12 ore" not in x[1].text())
        self.check_pair(got, subject, t0, "down")
        # and a restart after that owes nothing more
        self.stop_daemon()
        self.start_daemon()
        time.sleep(3)
        self.assertEqual(len(self.notices(subject)), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
