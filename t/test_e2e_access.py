"""End to end: the access point on a real Postfix.

Provider A is a private Postfix whose submission listener has pecmilter
attached in the access role; users authenticate for real through a private
Dovecot (passwd-file, smtpd_sasl_type = dovecot), or, where the test is not
about authentication, with XCLIENT LOGIN=.  What pecmilter generates goes
through its injector to A's reinjection listener (no milter); A delivers
pec-a.test into Maildirs; pec-b.test and example.org are relayed to B, a
plain Postfix delivering into Maildirs.

Checked from outside, with the tools a peer or an auditor would use: the
busta that reaches B verifies with `openssl smime -verify`, its daticert.xml
is valid against the normative DTD (xmllint), its postacert.eml is the
submitted message but for the Message-ID line and the added
X-Riferimento-Message-ID; the ricevuta di accettazione lands in the sender's
mailbox, names each recipient as "posta certificata" or "posta ordinaria"
and verifies likewise; pecverify says valid for both.  Every formal error
gets an SMTP reply naming it and an avviso di non accettazione; a forged
X-Ricevuta never reaches the top level; a message of 29 MB goes through
while the daemon's peak RSS stays bounded (printed as "RSS:"); mail between
two users of A gets the busta, the accettazione and the presa in carico in
A's receipt mailbox.  What could not travel intact is never certified: a
3,000-character line or a 100 KB Subject (which Postfix cuts before the
milter) gets the 5xx naming it and the avviso, and no busta leaves; a NUL
byte, which Postfix would hide from the milter, is refused by the submission
service's cleanup.
"""
import os
import re
import subprocess
import time
import unittest

from pectest import config, daemon, e2e, env, pecmail, pki
from pectest import postfix as pf
from pectest.dovecot import Dovecot, have_dovecot
from pectest.provider import Provider

PASSWORD = "segreto-di-mario"
MARIO = "mario@pec-a.test"
RICEVUTE = "ricevute@pec-a.test"
SIZE_LIMIT = 50 * 1024 * 1024


def message(subject="Fattura 42", to="luigi@pec-b.test, ext@example.org", cc=None,
            sender=MARIO, extra=b"", body=b"In allegato la fattura.\r\n", msgid=None):
    return e2e.message(subject, to, sender, cc, extra, body, msgid=msgid)


class AccessE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        if not have_dovecot():
            env.skip("Dovecot is not installed (contrib/deps.sh test installs dovecot-core)")
        pki.ensure()
        e2e.start(cls, e2e.workdir("pec-e2e-access-"))

    @classmethod
    def _start(cls, work):
        cls.dovecot = Dovecot(work, {MARIO: PASSWORD}).start()
        # B stands for both the other provider and an ordinary server; it offers STARTTLS,
        # which A's TLS policy (pec-b.test is in the index) requires
        cert, key = pki.server()
        cls.b = pf.Postfix(work, "b", ip=pf.loopback_ip(2), mydomain="pec-b.test",
                           virtual_domains=["pec-b.test", "example.org"],
                           extra_main={"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
                                       "smtpd_tls_security_level": "may"})
        reinject = pf.free_port(pf.loopback_ip(1))
        cls.conf = os.path.join(work, "pecmilter.conf")
        cls.settings = config.write(
            cls.conf, "a", roles={"pec-submission": "access", "pec-mx": "passthrough"},
            reinject="smtp:%s:%d" % (pf.loopback_ip(1), reinject), size_limit=SIZE_LIMIT,
            outbox_retry_max_backoff=2, mailboxes=(MARIO, "anna@pec-a.test", RICEVUTE))
        relay = "smtp:[%s]:%d" % (cls.b.ip, cls.b.port)
        # the shipped configuration: the submission's cleanup keeps Bcc for the milter to
        # see (Postfix drops it before milters by default), and refuses a NUL byte, which
        # would cut a header the milter is shown
        cls.a = Provider(work, "a", cls.settings, ip=pf.loopback_ip(1),
                         sasl_path=cls.dovecot.auth_socket,
                         transports={"pec-b.test": relay, "example.org": relay})
        cls.b.start()
        cls.a.start()
        cls.d = daemon.start(cls.conf)
        pf.register_process(cls.d.proc.pid, work)

    @classmethod
    def _stop(cls):
        e2e.stop_all([getattr(cls, n, None) for n in ("d", "a", "b", "dovecot")], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = e2e.daemon_exit("a", cls.d)
        cls._stop()
        # after everything above, the daemon still exits cleanly (sanitizer builds: no leak)
        if bad:
            raise AssertionError(bad)

    # -- helpers ---------------------------------------------------------------

    def submit(self, raw, rcpts, sender=MARIO, login=MARIO, auth=None):
        return self.a.send(sender, rcpts, raw, port=self.a.submission_port,
                           xclient_login=None if auth else login, auth=auth)

    def wait_new(self, inst, address, before, timeout=60):
        return inst.wait_for_mail(address, before + 1, timeout=timeout)[before:]

    def count(self, inst, address):
        return len(inst.messages(address))

    def find(self, inst, address, pattern, timeout=60):
        """The first message in ADDRESS's mailbox whose bytes match PATTERN."""
        return e2e.wait(self, e2e.matching(lambda: inst.messages(address), pattern), 1, timeout,
                        lambda: " matching %r for %s\n%s\n--- pecmilter ---\n%s"
                        % (pattern, address, inst.log_tail(), self.d.stderr()[-3000:]))[0]

    def assert_signed(self, m, name):
        return e2e.verify(self, m, self.tmp, name)

    def identificativo(self, busta):
        return busta.header("Message-ID").strip("<>")

    # -- the tests -------------------------------------------------------------

    def test_1_sasl_login_busta_and_accettazione(self):
        """A real SASL login; the busta at B and the accettazione at A, checked from outside."""
        self.assertTrue(self.dovecot.check_login(MARIO, PASSWORD))
        # a wrong password never reaches MAIL FROM
        code, text = self.submit(message(), ["luigi@pec-b.test"], auth=(MARIO, "sbagliata"))
        self.assertEqual(code, 535, text)

        raw = message(subject="Fattura 42 SASL", to="luigi@pec-b.test, ext@example.org",
                      extra=b"X-Folded: uno\r\n  due\r\n")
        code, text = self.submit(raw, ["luigi@pec-b.test", "ext@example.org"],
                                 auth=(MARIO, PASSWORD))
        self.assertEqual(code, 250, text)

        busta = self.find(self.b, "luigi@pec-b.test", rb"Fattura 42 SASL")
        ident = self.identificativo(busta)
        self.assertEqual(busta.header("X-Trasporto"), "posta-certificata")
        self.assertEqual(busta.header("Subject"), "POSTA CERTIFICATA: Fattura 42 SASL")
        self.assertEqual(busta.header("From"),
                         '"Per conto di: %s" <posta-certificata@pec-a.test>' % MARIO)
        self.assertEqual(busta.header("X-Riferimento-Message-ID"),
                         "<Fattura42SASL@client.pec-a.test>")
        # Postfix's own Received line (authenticated, over TLS: ESMTPSA) is inherited
        self.assertTrue(any("with ESMTPSA" in r for r in busta.headers("Received")))
        report = self.assert_signed(busta, "busta-sasl.eml")
        self.assertEqual(report["kind"], "busta")
        self.assertEqual([(d["address"], d["tipo"]) for d in report["destinatari"]],
                         [("luigi@pec-b.test", "certificato"), ("ext@example.org", "esterno")])
        expected = raw.replace(b"Message-ID: <Fattura42SASL@client.pec-a.test>\r\n",
                               b"Message-ID: <%s>\r\nX-Riferimento-Message-ID: "
                               b"<Fattura42SASL@client.pec-a.test>\r\n" % ident.encode())
        self.assertEqual(busta.postacert(), expected)
        # the ordinary mailbox gets the same busta
        ext = self.find(self.b, "ext@example.org", re.escape(ident.encode()))
        self.assertEqual(ext.postacert(), expected)

        acc = self.find(self.a, MARIO, rb"Subject: ACCETTAZIONE: Fattura 42 SASL")
        self.assertEqual(acc.header("To"), MARIO)
        self.assertEqual(acc.header("Subject"), "ACCETTAZIONE: Fattura 42 SASL")
        self.assertIn('luigi@pec-b.test ("posta certificata")', acc.text())
        self.assertIn('ext@example.org ("posta ordinaria")', acc.text())
        self.assertIn(ident, acc.text())
        report = self.assert_signed(acc, "accettazione-sasl.eml")
        self.assertEqual(report["tipo"], "accettazione")
        self.assertEqual(report["identificativo"], ident)

    def test_2_sender_refused_at_mail_from(self):
        cases = [(MARIO, "luigi@pec-a.test", "553 5.7.1 ", "non puo' inviare come"),
                 ("x@example.org", "x@example.org", "553 5.7.1 ", "non e' una casella")]
        for login, sender, start, words in cases:
            before = self.count(self.a, sender) if sender.endswith("pec-a.test") else 0
            code, text = self.submit(message(sender=sender), ["luigi@pec-b.test"], sender=sender,
                                     login=login)
            self.assertEqual(code, 553, text)
            self.assertIn(words, text)
            self.assertIn("5.7.1", text)
            if sender.endswith("pec-a.test"):
                time.sleep(1)
                self.assertEqual(self.count(self.a, sender), before, "no notice for that")

    def formal_error(self, raw, rcpts, code, xcode, words):
        before = self.count(self.a, MARIO)
        got, text = self.submit(raw, rcpts)
        self.assertEqual(got, code, text)
        self.assertIn(xcode, text)
        self.assertIn(words, text)
        avvisi = self.wait_new(self.a, MARIO, before)
        avviso = pecmail.Message(avvisi[-1])
        self.assertEqual(avviso.header("X-Ricevuta"), "non-accettazione")
        self.assertTrue(avviso.header("Subject").startswith("AVVISO DI NON ACCETTAZIONE: "))
        self.assertIn(words, avviso.text())
        self.assertIn(b"<errore-esteso>%s - Gestore A S.p.A. - " % xcode.encode(),
                      avviso.daticert())
        self.assertIsNone(avviso.postacert())
        self.assert_signed(avviso, "avviso-%s.eml" % xcode)
        return avviso

    def test_3_formal_errors(self):
        nobody = message(to=None, cc="luigi@pec-b.test")
        self.formal_error(message(sender=MARIO).replace(b"From: Mario Rossi <%s>\r\n"
                                                        % MARIO.encode(), b""),
                          ["luigi@pec-b.test"], 550, "5.6.0", "manca il campo From")
        self.formal_error(message().replace(b"<%s>" % MARIO.encode(),
                                            b"<%s>, altro@pec-a.test" % MARIO.encode()),
                          ["luigi@pec-b.test"], 550, "5.6.0", "un solo indirizzo")
        self.formal_error(nobody, ["luigi@pec-b.test"], 550, "5.6.0", "manca il campo To")
        self.formal_error(message(sender="ufficio@pec-a.test"), ["luigi@pec-b.test"], 550,
                          "5.7.1", "non coincide con il campo From")
        self.formal_error(message(to="luigi@pec-b.test"),
                          ["luigi@pec-b.test", "nascosto@pec-b.test"], 550, "5.7.1",
                          "il destinatario nascosto@pec-b.test non compare nei campi To o Cc")
        self.formal_error(message(to="luigi@pec-b.test", extra=b"Bcc: nascosto@pec-b.test\r\n"),
                          ["luigi@pec-b.test", "nascosto@pec-b.test"], 550, "5.7.1",
                          "il campo Bcc")
        # size x recipients: 2 MB to 26 recipients is 52 MB, above 50 MB
        many = ["u%02d@pec-b.test" % i for i in range(26)]
        big = message(to=", ".join(many), body=b"x" * 76 + b"\r\n" * 1
                      + (b"y" * 76 + b"\r\n") * (2 * 1024 * 1024 // 78))
        self.formal_error(big, many, 552, "5.3.4", "supera il limite di %d byte" % SIZE_LIMIT)

    def test_4_forged_pec_headers_stay_inside(self):
        raw = message(subject="Falsa ricevuta", to="luigi@pec-b.test",
                      extra=b"X-Ricevuta: avvenuta-consegna\r\nX-Trasporto: errore\r\n"
                            b"X-VerificaSicurezza: errore\r\nX-Mittente: x@pec-b.test\r\n"
                            b"X-Riferimento-Message-ID: <finto@pec-b.test>\r\n"
                            b"X-TipoRicevuta: sintetica\r\n")
        code, text = self.submit(raw, ["luigi@pec-b.test"])
        self.assertEqual(code, 250, text)
        busta = self.find(self.b, "luigi@pec-b.test", rb"Falsa ricevuta")
        for name in ("X-Ricevuta", "X-VerificaSicurezza", "X-Mittente"):
            self.assertEqual(busta.headers(name), [], name)
        self.assertEqual(busta.headers("X-Trasporto"), ["posta-certificata"])
        self.assertEqual(busta.headers("X-Riferimento-Message-ID"),
                         ["<Falsaricevuta@client.pec-a.test>"])
        self.assertEqual(busta.header("X-TipoRicevuta"), "sintetica")
        self.assertIn(b'<ricevuta tipo="sintetica"', busta.daticert())
        # inside postacert.eml they are inert, and still there
        self.assertIn(b"X-Ricevuta: avvenuta-consegna\r\n", busta.postacert())
        self.assert_signed(busta, "busta-forged.eml")

    def test_5_thirty_megabytes(self):
        """A message just under the rules' 30 MB passes the shipped message_size_limit."""
        import base64
        attachment = os.urandom(21 * 1024 * 1024)   # 29 MB once in base64
        b64 = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
        raw = (b"From: Mario Rossi <mario@pec-a.test>\r\nTo: luigi@pec-b.test\r\n"
               b"Subject: Trenta mega\r\nMessage-ID: <trenta@client.pec-a.test>\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
               b"--b1\r\nContent-Type: text/plain\r\n\r\nAllegato grande.\r\n"
               b"--b1\r\nContent-Type: application/octet-stream; name=\"grande.bin\"\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b1--\r\n")
        code, text = self.submit(raw, ["luigi@pec-b.test"])
        self.assertEqual(code, 250, text)
        busta = self.find(self.b, "luigi@pec-b.test", rb"Subject: POSTA CERTIFICATA: Trenta mega",
                          timeout=180)
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            hwm = [l for l in f if l.startswith("VmHWM:")][0].split()[1]
        print("RSS: pecmilter peak resident set (VmHWM) after a %d-byte submission: %s kB"
              % (len(raw), hwm))
        # the message is spooled to files, never held whole: below its size (a sanitizer
        # build keeps freed memory in quarantine, so the bound means nothing there)
        if not env.sanitized():
            self.assertLess(int(hwm) * 1024, len(raw))
        self.assert_signed(busta, "busta-30mb.eml")
        pc = busta.postacert()
        self.assertEqual(len(pc), len(raw) + len(b"X-Riferimento-Message-ID: "
                                                 b"<trenta@client.pec-a.test>\r\n")
                         + len(busta.header("Message-ID")) - len(b"<trenta@client.pec-a.test>"))
        self.assertTrue(pc.endswith(b64 + b"--b1--\r\n"))
        # above the shipped hard limit (message_size_limit, 35 MB) Postfix's own 552
        over = raw.replace(b64 + b"--b1--", b64 + b64 + b"--b1--")
        self.assertGreater(len(over), int(self.a.postconf("-h", "message_size_limit")))
        code, text = self.submit(over, ["luigi@pec-b.test"])
        self.assertEqual(code, 552, text)
        self.assertIn("5.3.4", text)

    def test_6_same_provider(self):
        raw = message(subject="Tra colleghi", to="anna@pec-a.test")
        code, text = self.submit(raw, ["anna@pec-a.test"])
        self.assertEqual(code, 250, text)
        busta = self.find(self.a, "anna@pec-a.test", rb"Tra colleghi")
        ident = self.identificativo(busta)
        self.assert_signed(busta, "busta-aa.eml")
        acc = self.find(self.a, MARIO, rb"ACCETTAZIONE: Tra colleghi")
        self.assertIn('anna@pec-a.test ("posta certificata")', acc.text())
        pic = self.find(self.a, RICEVUTE, rb"PRESA IN CARICO: Tra colleghi")
        self.assertEqual(pic.header("X-Ricevuta"), "presa-in-carico")
        self.assertEqual(pic.header("To"), RICEVUTE)
        report = self.assert_signed(pic, "presa-aa.eml")
        self.assertEqual(report["identificativo"], ident)
        self.assertEqual(report["ricezione"], ["anna@pec-a.test"])
        # the store knows the recipient was taken in charge
        p = subprocess.run([env.program("pecctl"), "-c", self.conf, "tx", ident],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertRegex(p.stdout.decode(), r"anna@pec-a\.test.*taken")

    def no_busta(self, msgid):
        """A's Postfix rejected the submission with Message-ID <MSGID> at end of data: it
        never queued a busta for it, nor ever had to fold a line."""
        log = self.a.log()
        qid = re.search(r"(\w+): message-id=<%s>" % re.escape(msgid), log)
        self.assertIsNotNone(qid, log[-3000:])
        self.assertRegex(log, r"%s: milter-reject: END-OF-MESSAGE .*: 5\.6\.0 " % qid.group(1))
        self.assertNotIn("%s: to=" % qid.group(1), log)
        self.assertNotIn("breaking line > 998 bytes", log)

    def test_7_line_over_998_octets_refused(self):
        """The issue's case: one 3,000-character HTML line.  Certified, it would be folded
        by the MTA in transit ("breaking line > 998 bytes") and the recipient's provider
        would find a broken signature while our sender held an accettazione.  Refused at
        end of data with the reason, the avviso di non accettazione (checked from outside
        like every notice), and no busta leaves."""
        raw = e2e.message("Riga lunga", "luigi@pec-b.test", MARIO,
                          ctype=b"text/html; charset=utf-8",
                          body=b"<p>" + b"a" * 3000 + b"</p>\r\n")
        avviso = self.formal_error(raw, ["luigi@pec-b.test"], 550, "5.6.0",
                                   "la riga 1 del corpo del messaggio e' lunga 3007 byte, oltre i "
                                   "998 ammessi")
        self.assertEqual(avviso.header("Subject"), "AVVISO DI NON ACCETTAZIONE: Riga lunga")
        self.assertIn(b'tipo="non-accettazione"', avviso.daticert())
        self.no_busta("Rigalunga@client.pec-a.test")

    def test_8_subject_of_100_kb_refused_not_cut(self):
        """With a milter, Postfix keeps at most 60,000 bytes of any header field and drops the
        rest without a word, before pecmilter sees it.  A field that long is refused (552
        naming the limit, and the avviso, which quotes the subject shortened, marked)."""
        subject = b"".join(b" parola%05d\r\n" % i for i in range(8000))   # 104,000 bytes
        raw = message(subject="x", to="luigi@pec-b.test", msgid="centokilo@client.pec-a.test")
        raw = raw.replace(b"Subject: x\r\n", b"Subject:" + subject)
        avviso = self.formal_error(raw, ["luigi@pec-b.test"], 552, "5.6.0",
                                   "il campo Subject supera i 16384 byte ammessi")
        self.assertTrue(avviso.header("Subject").endswith(" [...]"), avviso.header("Subject"))
        self.no_busta("centokilo@client.pec-a.test")

    def test_9_nul_refused_by_postfix(self):
        """A NUL byte in a header line: Postfix hands a milter each header as a C string, so
        the rest of the line would be missing from postacert.eml without anyone knowing.
        The submission service's cleanup refuses it (message_reject_characters = \\0), before
        any certification: a 5xx that names it, no busta, no receipt."""
        before = self.count(self.a, MARIO)
        for extra, body in ((b"X-Nul: prima\x00dopo\r\n", b"Testo.\r\n"),
                            (b"", b"uno\r\nd\x00ue\r\n")):
            raw = message(subject="Con un NUL", to="luigi@pec-b.test", extra=extra, body=body,
                          msgid="nul@client.pec-a.test")
            code, text = self.submit(raw, ["luigi@pec-b.test"])
            self.assertEqual(code, 550, text)
            self.assertIn("disallowed character", text)
        time.sleep(2)
        self.assertEqual(self.count(self.a, MARIO), before, "no receipt for that")
        self.assertEqual([m for m in self.b.messages("luigi@pec-b.test")
                          if b"nul@client.pec-a.test" in m], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
