"""End to end with Sendmail as the MTA: the certified path between two providers,
one on Sendmail and the other on Postfix, both ways round.

Sendmail runs from Debian's packages unpacked by pectest.sendmail (they conflict
with postfix and are never installed), configured through
contrib/sendmail/pecmilter.mc: pec-submission (AUTH required, Cyrus SASL with a
sasldb) in the access role, pec-mx in the reception role, pec-reinject without the
filter, the PEC domain delivered over LMTP to pecmilter's delivery point.  The
Postfix side is the one of test_e2e_exchange (XCLIENT LOGIN for submission).  Both
pecmilters store into Maildirs.

Checked from outside, in each direction: the busta reaches the To and the Cc
recipient, Mario gets the accettazione and the two consegne (completa for To,
sintetica for Cc), A's service mailbox the presa in carico; every one verifies with
`openssl smime -verify` against the test trust anchors and with pecverify, and its
daticert.xml is valid against the DTD ($PEC_SHARED_DIR/spec/daticert.dtd; skipped,
saying so, when absent).  On Sendmail: a formal error gets the 5xx reply naming it
and the avviso di non accettazione; an unauthenticated submission is refused; with
pecmilter unreachable the MTA answers 451 4.3.2 (F=T), never passing mail through.

Issue 17, through the shipped snippet: a DSN of A's own MTA to a PEC user of A (a
message to an ordinary server that refuses it at RCPT) reaches the delivery point
without passing the reception point and lands wrapped as a busta di anomalia that
verifies, never bare (both directions, so for Sendmail and for Postfix); an 8-bit
original submitted to Sendmail for a B whose Postfix offers no 8BITMIME
(smtpd_discard_ehlo_keywords) arrives as a 7-bit busta that verifies, its postacert
decoding to the original's text.
"""
import os
import re
import smtplib
import socket
import subprocess
import time
import unittest

from pectest import config, daemon, e2e, env, pecmail, pki
from pectest import postfix as pf
from pectest.provider import Provider
from pectest import sendmail as sm
from pectest import stub

MARIO = "mario@pec-a.test"
RICEVUTE_A = "ricevute@pec-a.test"
LUIGI = "luigi@pec-b.test"
ANNA = "anna@pec-b.test"
PASSWORD = "segreta-123"
USERS = {"a": ("mario", "ricevute", "giulia"), "b": ("luigi", "anna", "ricevute")}


def message(subject, to=LUIGI, cc=None, sender=MARIO, extra=b"", body=b"Testo del messaggio.\r\n"):
    return e2e.message(subject, to, sender, cc, extra, body)


class Refuser(stub.Server):
    """An ordinary (non-PEC) mail server that refuses every recipient at RCPT with
    550 5.1.1: a message A relays to it earns a DSN of A's own MTA to the sender."""

    def __init__(self, ip):
        super().__init__(socket.AF_INET, (ip, 0))
        self.ip = ip
        self.port = self.address[1]
        self.refused = []               # the RCPT TO arguments it refused
        self.listen()

    def _serve(self, conn):
        with conn, conn.makefile("rb") as f:
            conn.settimeout(60)
            try:
                conn.sendall(b"220 mx.ordinaria.test ESMTP\r\n")
                for line in f:
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        conn.sendall(b"250 mx.ordinaria.test\r\n")
                    elif verb in (b"MAIL", b"RSET", b"NOOP"):
                        conn.sendall(b"250 2.0.0 ok\r\n")
                    elif verb == b"RCPT":
                        self.refused.append(line[8:].strip().decode("ascii", "replace"))
                        conn.sendall(b"550 5.1.1 no such user here\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 2.0.0 bye\r\n")
                        return
                    else:
                        conn.sendall(b"503 5.5.1 no valid recipients\r\n")
            except OSError:
                return


class _Exchange:
    """A on MTA_A, B on MTA_B ("sendmail" or "postfix")."""
    MTA_A = MTA_B = None
    B_EXTRA = None          # main.cf settings for a Postfix B beyond the shipped ones

    @classmethod
    def setUpClass(cls):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        sm.ensure()
        pki.ensure()
        e2e.daticert_dtd()                     # says so at once when the DTD is absent
        cls.daemons, cls.mtas, cls.sets, cls.confs = {}, {}, {}, {}
        e2e.start(cls, sm.workdir("sendmail-%s-%s-" % (cls.MTA_A, cls.MTA_B)))

    @classmethod
    def _start(cls, work):
        ips = {"a": pf.loopback_ip(1), "b": pf.loopback_ip(2)}
        ports = {n: pf.free_port(ip) for n, ip in ips.items()}
        domains = {"a": "pec-a.test", "b": "pec-b.test"}
        # pec-a2.test, A's second domain in the index (not in its pecmilter.conf), stands
        # for a provider whose server offers no STARTTLS: a plain Postfix without TLS
        cls.c = pf.Postfix(work, "c", ip=pf.loopback_ip(3), mydomain="pec-a2.test",
                           virtual_domains=["pec-a2.test"])
        a_only = {"pec-a2.test": (cls.c.ip, cls.c.port)}
        # ordinaria.test, no PEC provider: its server refuses every recipient, so A's
        # own MTA bounces what A relays to it (test_11)
        cls.refuser = Refuser(pf.loopback_ip(4))
        a_only["ordinaria.test"] = (cls.refuser.ip, cls.refuser.port)
        for name in ("a", "b"):
            base = os.path.join(work, name)
            os.makedirs(base)
            os.chmod(base, 0o755)
            conf = os.path.join(base, "pecmilter.conf")
            reinject = pf.free_port(ips[name])
            mta = cls.MTA_A if name == "a" else cls.MTA_B
            s = dict(roles={"pec-submission": "access", "pec-mx": "reception"},
                     reinject="smtp:%s:%d" % (ips[name], reinject), outbox_retry_max_backoff=2,
                     mailbox_backend="maildir", tls_policy_format=mta,
                     maildir_root=os.path.join(base, "pecmail"))
            e2e.make_maildirs(s["maildir_root"], USERS[name])
            config.write(conf, name, **s)
            cls.confs[name] = conf
            cls.sets[name] = s = config.settings(name, base, **s)
            other = "b" if name == "a" else "a"
            milter = "unix:" + config.socket_path(s)
            lmtp = config.socket_path(s, "lmtp_socket")
            peers = dict({domains[other]: (ips[other], ports[other])},
                         **(a_only if name == "a" else {}))
            if mta == "sendmail":
                # the access map from the table pecctl writes, made before Sendmail starts
                p = subprocess.run([env.program("pecctl"), "-c", conf, "tls-policy",
                                    "--format", "sendmail", "-o", s["tls_policy_file"]],
                                   capture_output=True, text=True, timeout=60)
                assert p.returncode == 0, p.stderr
                cls.mtas[name] = sm.Sendmail(
                    work, name, ip=ips[name], port=ports[name], mydomain=domains[name],
                    pec_domains=[domains[name]], milter=milter, lmtp_socket=lmtp,
                    submission_port=pf.free_port(ips[name]), reinject_port=reinject,
                    transports=peers, tls_policy=s["tls_policy_file"],
                    sasl_users={MARIO: PASSWORD} if name == "a" else {})
            else:
                cls.mtas[name] = Provider(
                    work, name, s, ip=ips[name], port=ports[name],
                    transports={d: "smtp:[%s]:%d" % peer for d, peer in peers.items()},
                    extra_main=cls.B_EXTRA if name == "b" else None)
        for name in ("a", "b"):
            d = daemon.start(cls.confs[name])
            pf.register_process(d.proc.pid, work)
            cls.daemons[name] = d
        for name in ("a", "b"):
            cls.mtas[name].start()
        cls.c.start()

    @classmethod
    def _stop(cls):
        e2e.stop_all(list(cls.mtas.values()) + list(cls.daemons.values())
                     + [getattr(cls, "c", None), getattr(cls, "refuser", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = [e for e in (e2e.daemon_exit(n, d) for n, d in cls.daemons.items()) if e]
        cls._stop()
        left = sorted(pf.instances_left(cls.tmp))
        if left:
            bad.append("processes left behind: %s" % ", ".join(
                "%d %s" % (p, open("/proc/%d/cmdline" % p, "rb").read().replace(b"\0", b" "))
                for p in sorted(left)))
        if bad:
            raise AssertionError("\n".join(bad))

    # -- helpers ---------------------------------------------------------------

    def submit(self, raw, rcpts, sender=MARIO):
        a = self.mtas["a"]
        if self.MTA_A == "sendmail":
            return a.send(sender, rcpts, raw, port=a.submission_port, auth=(sender, PASSWORD))
        return a.send(sender, rcpts, raw, port=a.submission_port, xclient_login=sender)

    def mailbox(self, address):
        local, _, domain = address.partition("@")
        return pf.maildir_messages(
            os.path.join(self.sets[domain.split(".")[0][-1]]["maildir_root"], local))

    def diagnostics(self):
        return "".join("\n--- %s %s ---\n%s\n--- pecmilter %s ---\n%s"
                       % (n, type(m).__name__, m.log_tail(), n,
                          self.daemons[n].stderr()[-3000:])
                       for n, m in sorted(self.mtas.items()))

    def find_all(self, address, pattern, count=1, timeout=60):
        return e2e.wait(self, e2e.matching(lambda: self.mailbox(address), pattern), count,
                        timeout, lambda: " matching %r for %s%s"
                        % (pattern, address, self.diagnostics()))

    def find(self, address, pattern, timeout=60):
        return self.find_all(address, pattern, 1, timeout)[0]

    def verify(self, m, name):
        return e2e.verify(self, m, self.tmp, name,
                          daticert=bool(m.header("X-Ricevuta") or m.header("X-Trasporto")))

    def assert_sendmail_qids(self, name, role):
        """pecmilter on a Sendmail side logged ROLE's work under Sendmail's own queue
        ids: the macro i arrived (the roles log it, so does the legal log)."""
        mta = self.mtas[name]
        if not isinstance(mta, sm.Sendmail):
            return
        qids = set(re.findall(r"pecmilter\[\w+\]: (\S+): %s: " % role,
                              self.daemons[name].stderr()))
        self.assertTrue(qids, self.daemons[name].stderr()[-3000:])
        self.assertNotIn("NOQUEUE", qids)
        for q in qids:
            self.assertRegex(mta.log(), r"\]: %s: .*daemon=pec-" % re.escape(q))

    def assert_tls_between(self):
        """A to B went over STARTTLS, in both MTAs' logs (issue 17)."""
        a, b = self.mtas["a"], self.mtas["b"]
        if isinstance(a, sm.Sendmail):
            sent = r"STARTTLS=client, relay=[^,]*%s[^,]*, version=TLSv1\.[23]" % re.escape(b.ip)
        else:
            sent = r"TLS connection established to pec-b\.test\[%s\]" % re.escape(b.ip)
        if isinstance(b, sm.Sendmail):
            got = r"STARTTLS=server, relay=[^,]*%s[^,]*, version=TLSv1\.[23]" % re.escape(a.ip)
        else:
            got = r"TLS connection established from \S+\[%s\]" % re.escape(a.ip)
        self.assertRegex(a.log(), sent)
        self.assertRegex(b.log(), got)

    def test_9_tls_policy(self):
        """The table pecctl writes from the index (Postfix's smtp_tls_policy_maps, or
        Sendmail's access map) is used: a provider of the index whose server offers no
        STARTTLS gets nothing, the busta waits."""
        a = self.mtas["a"]
        with open(self.sets["a"]["tls_policy_file"]) as f:
            self.assertIn("pec-a2.test", f.read())
        code, text = self.submit(message("Senza TLS", to="nessuno@pec-a2.test"),
                                 ["nessuno@pec-a2.test"])
        self.assertEqual(code, 250, text)
        refused = (r"encryption too weak 0 less than 128" if isinstance(a, sm.Sendmail)
                   else r"TLS is required, but was not offered by host pec-a2\.test")
        e2e.retry(a.log, lambda log: re.search(refused, log), timeout=30)
        self.assertRegex(a.log(), refused)
        self.assertEqual(self.c.messages("nessuno@pec-a2.test"), [])

    # -- the tests -------------------------------------------------------------

    def test_11_own_mta_dsn_wrapped(self):
        """A DSN made by A's own MTA for a PEC user of A (a message to an ordinary
        address whose server refuses it) reaches the delivery point without passing the
        reception point: it lands in the mailbox wrapped as a busta di anomalia signed
        by A, the DSN whole inside it, never bare (issue 17, point 7)."""
        subject = "Rifiutata %s" % self.MTA_A
        rcpt = "nessuno@ordinaria.test"
        code, text = self.submit(message(subject, to=rcpt), [rcpt])
        self.assertEqual(code, 250, text + self.diagnostics())
        dsn = rb"(Returned mail|Undelivered Mail)"
        got = self.find(MARIO, rb"Subject: ANOMALIA MESSAGGIO: " + dsn, timeout=90)
        self.assertIn("<%s>" % rcpt, self.refuser.refused)
        self.assertEqual(got.header("X-Trasporto"), "errore")
        self.assertIn("senza passare dal punto di ricezione", got.text())
        e2e.verify(self, got, self.tmp, "dsn-%s.eml" % self.MTA_A, daticert=False)
        inner = got.postacert()
        self.assertRegex(inner, rb"(?mi)^From: .*MAILER-DAEMON")
        self.assertRegex(inner, rb"(?mi)^Content-Type: multipart/report;")
        self.assertIn(b"5.1.1", inner)
        self.assertIn(subject.encode(), inner, "the returned busta is inside")
        # never bare: every DSN in the mailbox is a busta di anomalia
        for raw in self.mailbox(MARIO):
            m = pecmail.Message(raw)
            if re.match(dsn, (m.header("Subject") or "").encode()):
                self.fail("a DSN stored bare:\n%s" % raw[:2000].decode("utf-8", "replace"))

    def test_1_a_to_b(self):
        subject = "Contratto %s %s" % (self.MTA_A, self.MTA_B)
        code, text = self.submit(message(subject, to=LUIGI, cc=ANNA), [LUIGI, ANNA])
        self.assertEqual(code, 250, text + self.diagnostics())
        busta = self.find(LUIGI, re.escape(subject.encode()))
        self.assertEqual(busta.header("X-Trasporto"), "posta-certificata")
        self.assertEqual(busta.header("Subject"), "POSTA CERTIFICATA: " + subject)
        self.assertEqual(self.verify(busta, "busta.eml")["kind"], "busta")
        ident = busta.header("Message-ID").strip("<>")
        self.assertEqual(self.find(ANNA, re.escape(ident.encode())).header("Message-ID"),
                         "<%s>" % ident)

        acc = self.find(MARIO, rb"Subject: ACCETTAZIONE: " + re.escape(subject.encode()))
        self.assertEqual(self.verify(acc, "accettazione.eml")["tipo"], "accettazione")
        presa = self.find(RICEVUTE_A, rb"Subject: PRESA IN CARICO: "
                          + re.escape(subject.encode()))
        report = self.verify(presa, "presa.eml")
        self.assertEqual(report["tipo"], "presa-in-carico")
        self.assertEqual(report["identificativo"], ident)
        self.assertEqual(presa.header("From"), "posta-certificata@pec-b.test")
        for who in (LUIGI, ANNA):
            self.assertIn(b"<ricezione>%s</ricezione>" % who.encode(), presa.daticert())

        consegne = self.find_all(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode()),
                                 count=2)
        kinds = {}
        for i, m in enumerate(consegne):
            r = self.verify(m, "consegna-%d.eml" % i)
            self.assertEqual(r["tipo"], "avvenuta-consegna")
            self.assertEqual(r["identificativo"], ident)
            kinds[r["consegna"]] = m
        self.assertEqual(sorted(kinds), [ANNA, LUIGI])
        self.assertIsNotNone(kinds[LUIGI].postacert(), "completa carries the original")
        self.assertIsNone(kinds[ANNA].postacert(), "sintetica carries no original")
        self.assert_sendmail_qids("a", "access")
        self.assert_sendmail_qids("b", "reception")
        self.assert_tls_between()

    def test_2_missing_mailbox(self):
        """B's delivery point finds no mailbox: an avviso di mancata consegna, and no
        bounce from B's MTA (pecmilter answers 250 over LMTP)."""
        subject = "Nessuno %s %s" % (self.MTA_A, self.MTA_B)
        code, text = self.submit(message(subject, to="nessuno@pec-b.test"),
                                 ["nessuno@pec-b.test"])
        self.assertEqual(code, 250, text)
        avviso = self.find(MARIO, rb"Subject: AVVISO DI MANCATA CONSEGNA: "
                           + re.escape(subject.encode()))
        report = self.verify(avviso, "mancata.eml")
        self.assertEqual(report["tipo"], "errore-consegna")
        self.assertEqual(report["consegna"], "nessuno@pec-b.test")
        time.sleep(2)
        # a bounce of this message, bare or wrapped (test_11's DSN is another's)
        self.assertEqual([r for r in self.mailbox(MARIO)
                          if re.search(rb"Undelivered Mail|MAILER-DAEMON|Returned mail", r)
                          and subject.encode() in r], [])

    def test_3_ordinary_mail_to_b(self):
        """Unsigned mail to B's port 25 (reception role) becomes a busta di anomalia."""
        subject = "Posta ordinaria %s" % self.MTA_B
        raw = (b"From: x@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nCiao.\r\n"
               % (LUIGI.encode(), subject.encode()))
        code, text = self.mtas["b"].send("x@example.org", [LUIGI], raw)
        self.assertEqual(code, 250, text)
        got = self.find(LUIGI, re.escape(subject.encode()))
        self.assertEqual(got.header("X-Trasporto"), "errore")
        self.assertEqual(got.header("Subject"), "ANOMALIA MESSAGGIO: " + subject)
        self.assertIn(b"Ciao.", got.postacert())

    def test_4_large_message(self):
        """8 MB through submission: the filter's timeouts leave room to sign it, and the
        replaced body reaches B whole."""
        subject = "Grande %s %s" % (self.MTA_A, self.MTA_B)
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789--\r\n"
        body = line * (8 * 1024 * 1024 // len(line))
        raw = message(subject).replace(b"Testo del messaggio.\r\n", body)
        code, text = self.submit(raw, [LUIGI])
        self.assertEqual(code, 250, text)
        busta = self.find(LUIGI, re.escape(subject.encode()), timeout=120)
        self.assertEqual(self.verify(busta, "grande.eml")["kind"], "busta")
        self.assertEqual(busta.postacert().count(line), body.count(line))


class SendmailToPostfix(_Exchange, unittest.TestCase):
    MTA_A, MTA_B = "sendmail", "postfix"
    # B's MTA does not offer 8BITMIME: the peer test_10 needs (issue 17, point 5)
    B_EXTRA = {"smtpd_discard_ehlo_keywords": "8bitmime"}

    def test_10_eight_bit_original(self):
        """An 8-bit original (8bit body, raw UTF-8 Subject) submitted to Sendmail with
        BODY=8BITMIME, for B, whose MTA does not offer 8BITMIME: the busta is 7-bit
        (pec-rules.md 3.1), so Sendmail sends it as signed; it verifies at B, and its
        postacert decodes to the original's text and subject."""
        raw = e2e.eight_bit_original(LUIGI, MARIO)
        self.assertRegex(raw, rb"[\x80-\xff]")
        code, text = self.submit(raw, [LUIGI])
        self.assertEqual(code, 250, text + self.diagnostics())
        a, b = self.mtas["a"], self.mtas["b"]
        # Sendmail took it as 8-bit
        self.assertRegex(a.log(), r"from=<mario@pec-a\.test>.*bodytype=8BITMIME")
        got = self.find(LUIGI, e2e.EIGHT_BIT_FOUND)
        self.assertEqual(self.verify(got, "otto-bit.eml")["kind"], "busta")
        e2e.check_eight_bit_busta(self, got)
        # B offers no 8BITMIME, and Sendmail sent the busta to it as it was signed
        with smtplib.SMTP(b.ip, b.port, timeout=30) as s:
            s.ehlo("check.test")
            self.assertFalse(s.has_extn("8bitmime"), s.esmtp_features)
        # and that is the one setting B runs beyond the snippets
        self.assertEqual(b.deviations(), ["main.cf: smtpd_discard_ehlo_keywords = 8bitmime: "
                                        "neither in the snippets nor environment-only"])
        self.assertRegex(a.log(), r"to=<luigi@pec-b\.test>.*stat=Sent")

    def test_5_formal_error(self):
        subject = "Errore formale"
        raw = message(subject, to=LUIGI, extra=b"Bcc: nascosto@pec-b.test\r\n")
        code, text = self.submit(raw, [LUIGI, "nascosto@pec-b.test"])
        self.assertEqual(code, 550, text)
        self.assertIn("5.7.1", text)
        self.assertIn("il campo Bcc", text)
        avviso = self.find(MARIO, rb"Subject: AVVISO DI NON ACCETTAZIONE: "
                           + re.escape(subject.encode()))
        self.assertEqual(avviso.header("X-Ricevuta"), "non-accettazione")
        self.assertIn("il campo Bcc", avviso.text())
        self.assertEqual(self.verify(avviso, "non-accettazione.eml")["tipo"],
                         "non-accettazione")
        time.sleep(2)
        self.assertEqual([r for r in self.mailbox(LUIGI) if subject.encode() in r], [])

    def test_6_submission_needs_auth(self):
        a = self.mtas["a"]
        code, text = a.send(MARIO, [LUIGI], message("Senza login"), port=a.submission_port)
        self.assertEqual(code, 530, text)

    def test_7_filter_down_is_tempfail(self):
        down = sm.Sendmail(self.tmp, "down", ip=pf.loopback_ip(3), mydomain="pec-c.test",
                           pec_domains=["pec-c.test"],
                           milter="unix:" + os.path.join(self.tmp, "a", "nobody.sock"),
                           lmtp_socket=os.path.join(self.tmp, "a", "nobody-lmtp.sock"))
        with down:
            code, text = down.send("x@example.org", ["u@pec-c.test"], message("Giu"))
        self.assertEqual(code, 451, text)
        self.assertIn("4.3.2", text)


class PostfixToSendmail(_Exchange, unittest.TestCase):
    MTA_A, MTA_B = "postfix", "sendmail"

    def test_5_ordinary_mail_rejected(self):
        """ordinary_mail = reject: pecmilter's 554 5.7.1 is Sendmail's answer."""
        raw = b"From: x@example.org\r\nTo: %s\r\nSubject: Rifiutata\r\n\r\nCiao.\r\n" \
            % LUIGI.encode()
        with e2e.reconfigured(self.confs["b"], self.sets["b"], self.daemons["b"],
                              ordinary_mail="reject"):
            code, text = e2e.retry(lambda: self.mtas["b"].send("x@example.org", [LUIGI], raw),
                                   lambda r: r[0] != 250)
            self.assertEqual(code, 554, text)
            self.assertIn("5.7.1", text)


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
