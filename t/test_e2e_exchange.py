"""End to end: two PEC providers exchanging certified mail through real Postfix.

A (pec-a.test) and B (pec-b.test) are each a private Postfix on loopback with
its own pecmilter: the submission listener (XCLIENT LOGIN) in the access
role, port 25 in the reception role, a reinjection listener without milter
for what pecmilter generates, and virtual_transport = lmtp to pecmilter's
delivery point.  A stores mail in Maildirs (mailbox_backend maildir, made by the test:
only the mailboxes made here exist); B hands
it to a private Dovecot over LMTP (mailbox_backend lmtp), which knows only
the users listed here, so a missing mailbox is a user Dovecot does not know.

Checked from outside: every PEC message that reaches a mailbox verifies with
`openssl smime -verify` against the test trust anchors and with pecverify
(--index), and its daticert.xml is valid against the DTD.  A user of A
writing to B gets the accettazione, a consegna completa for the To recipient
and a sintetica for the Cc one; A's service mailbox gets B's presa in carico;
A's store shows the recipient delivered.  Breve receipts hash the parts.
Mail B cannot deliver earns an avviso di mancata consegna and no bounce.
Ordinary mail to B becomes a busta di anomalia (or is refused with
ordinary_mail = reject); a busta signed by a certificate not in the index,
a tampered busta and one whose From is not its signer's domain are never
delivered as PEC and never earn a consegna.  Mail within A gets every step.

What a hostile peer or sender can send (issue 23): a genuine busta re-addressed
to someone it does not name, an unsigned message that takes the Message-ID of a
busta not yet arrived, a consegna signed by a listed provider that does not
serve its recipient, and a busta whose daticert holds facts no receipt can be
built from.  None of them earns a receipt it should not, none keeps a genuine
busta from its consegna, and `pecctl audit` is clean on both providers after
each.
"""
import base64
import hashlib
import os
import re
import smtplib
import subprocess
import time
import unittest

from pectest import config, daemon, e2e, env, forge, pki
from pectest import postfix as pf
from pectest.dovecot import Dovecot, have_dovecot
from pectest.provider import Provider

MARIO = "mario@pec-a.test"
GIULIA = "giulia@pec-a.test"
RICEVUTE_A = "ricevute@pec-a.test"
LUIGI = "luigi@pec-b.test"
ANNA = "anna@pec-b.test"
PECBUSTA = os.path.join(env.BUILD_DIR, "t", "tools", "pecbusta")


def message(subject, to=LUIGI, cc=None, sender=MARIO, extra=b"",
            body=b"Testo del messaggio.\r\n", ctype=b"text/plain; charset=utf-8"):
    return e2e.message(subject, to, sender, cc, extra, body, ctype)


class ExchangeE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        if not have_dovecot(lmtp=True):
            env.skip("Dovecot LMTP is not installed (contrib/deps.sh test installs it)")
        pki.ensure()
        cls.daemons = {}
        e2e.start(cls, e2e.workdir("pec-e2e-exchange-"))

    @classmethod
    def _provider(cls, work, name, ip, **settings):
        base = os.path.join(work, name)
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        conf = os.path.join(base, "pecmilter.conf")
        reinject = pf.free_port(ip)
        s = dict(roles={"pec-submission": "access", "pec-mx": "reception"},
                 reinject="smtp:%s:%d" % (ip, reinject), outbox_retry_max_backoff=2)
        s.update(settings)
        return conf, s, reinject

    @classmethod
    def _start(cls, work):
        ip_a, ip_b = pf.loopback_ip(1), pf.loopback_ip(2)
        cls.dovecot = Dovecot(work, {LUIGI: "x", ANNA: "x"}, lmtp=True).start()
        port_a, port_b = pf.free_port(ip_a), pf.free_port(ip_b)
        cls.conf_a, cls.set_a, reinject_a = cls._provider(
            work, "a", ip_a, mailbox_backend="maildir",
            maildir_root=os.path.join(work, "a", "pecmail"))
        e2e.make_maildirs(cls.set_a["maildir_root"], ("mario", "giulia", "ricevute"))
        cls.conf_b, cls.set_b, reinject_b = cls._provider(
            work, "b", ip_b, mailbox_backend="lmtp",
            mailbox_lmtp="unix:" + cls.dovecot.lmtp_socket)
        config.write(cls.conf_a, "a", **cls.set_a)
        config.write(cls.conf_b, "b", **cls.set_b)
        cls.set_a = config.settings("a", os.path.dirname(cls.conf_a), **cls.set_a)
        cls.set_b = config.settings("b", os.path.dirname(cls.conf_b), **cls.set_b)
        # pec-a2.test, A's second domain in the index (not in its pecmilter.conf), stands
        # for a provider whose server lost STARTTLS: a plain Postfix without TLS
        cls.c = pf.Postfix(work, "c", ip=pf.loopback_ip(3), mydomain="pec-a2.test",
                           virtual_domains=["pec-a2.test"])
        cls.a = cls._postfix(work, "a", ip_a, port_a, "pec-a.test", cls.set_a, reinject_a,
                             {"pec-b.test": "smtp:[%s]:%d" % (ip_b, port_b),
                              "pec-a2.test": "smtp:[%s]:%d" % (cls.c.ip, cls.c.port)})
        # B's MTA does not offer 8BITMIME: the peer test_10 needs (issue 17, point 5)
        cls.b = cls._postfix(work, "b", ip_b, port_b, "pec-b.test", cls.set_b, reinject_b,
                             {"pec-a.test": "smtp:[%s]:%d" % (ip_a, port_a)},
                             {"smtpd_discard_ehlo_keywords": "8bitmime"})
        cls.a.start()
        cls.b.start()
        cls.c.start()
        for name, conf in (("a", cls.conf_a), ("b", cls.conf_b)):
            d = daemon.start(conf)
            pf.register_process(d.proc.pid, work)
            cls.daemons[name] = d

    @classmethod
    def _postfix(cls, work, name, ip, port, domain, settings, reinject, transports, extra=None):
        return Provider(work, name, settings, ip=ip, port=port, transports=transports,
                        extra_main=extra)

    @classmethod
    def _stop(cls):
        e2e.stop_all([cls.daemons.get("a"), cls.daemons.get("b"), getattr(cls, "a", None),
                      getattr(cls, "b", None), getattr(cls, "c", None),
                      getattr(cls, "dovecot", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = [e for e in (e2e.daemon_exit(n, d) for n, d in cls.daemons.items()) if e]
        cls._stop()
        if bad:
            raise AssertionError("\n".join(bad))

    # -- helpers ---------------------------------------------------------------

    def submit(self, raw, rcpts, sender=MARIO):
        code, text = self.a.send(sender, rcpts, raw, port=self.a.submission_port,
                                 xclient_login=sender)
        self.assertEqual(code, 250, text)

    def mailbox(self, address):
        if address.endswith("@pec-b.test"):
            return self.dovecot.messages(address)
        return pf.maildir_messages(os.path.join(self.set_a["maildir_root"],
                                                address.partition("@")[0].lower()))

    def find_all(self, address, pattern, count=1, timeout=60):
        return e2e.wait(self, e2e.matching(lambda: self.mailbox(address), pattern), count,
                        timeout, lambda: " matching %r for %s\n--- A ---\n%s\n--- B ---\n%s"
                        "\n--- pecmilter A ---\n%s\n--- pecmilter B ---\n%s"
                        % (pattern, address, self.a.log_tail(), self.b.log_tail(),
                           self.daemons["a"].stderr()[-3000:],
                           self.daemons["b"].stderr()[-3000:]))

    def find(self, address, pattern, timeout=60):
        return self.find_all(address, pattern, 1, timeout)[0]

    def none(self, address, pattern, wait=4):
        time.sleep(wait)
        for raw in self.mailbox(address):
            self.assertIsNone(re.search(pattern, raw), raw[:2000])

    def verify(self, m, name, daticert=True):
        return e2e.verify(self, m, self.tmp, name, daticert)

    def pecctl_tx(self, ident):
        p = subprocess.run([env.program("pecctl"), "-c", self.conf_a, "tx", ident],
                           capture_output=True, text=True, timeout=60)
        return p.stdout

    def wait_state(self, ident, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            out = self.pecctl_tx(ident)
            if re.search(pattern, out):
                return out
            if time.monotonic() > deadline:
                self.fail("transaction %s never matched %r:\n%s" % (ident, pattern, out))
            time.sleep(0.3)

    def busta(self, subject, signer="a"):
        path = e2e.write(self.tmp, "orig-%s.eml" % re.sub(r"\W", "", subject), message(subject))
        r = subprocess.run([PECBUSTA, "-p", pki.PKI, "-s", signer, path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout

    @staticmethod
    def since():
        """A second boundary after everything earlier tests left in flight was logged."""
        time.sleep(1)
        return int(time.time())

    def audit(self, conf, since):
        """pecctl audit over what began at SINCE (epoch): its output, asserting exit 0."""
        p = subprocess.run([env.program("pecctl"), "-c", conf, "audit", "--since",
                            "@%d" % since], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"\b0 violations\b")
        return p.stdout

    def anomalia(self, address, subject, reason):
        """The busta di anomalia of SUBJECT (wrapping a busta or not) reached ADDRESS,
        verifies, and says REASON."""
        got = self.find(address, rb"ANOMALIA MESSAGGIO: (POSTA CERTIFICATA: )?"
                        + re.escape(subject.encode()))
        self.assertEqual(got.header("X-Trasporto"), "errore")
        self.verify(got, "anomalia-%s.eml" % re.sub(r"\W", "", subject), daticert=False)
        self.assertIn(reason, got.text())
        return got

    def assert_not_pec(self, raw, subject):
        """RAW sent to B's port 25: never delivered as a busta, never a consegna."""
        code, text = self.b.send(MARIO, [LUIGI], raw)
        self.assertIn(code, (250, 554), text)
        if code == 250:
            got = self.find(LUIGI, re.escape(subject.encode()))
            self.assertEqual(got.header("X-Trasporto"), "errore")
            self.assertTrue(got.header("Subject").startswith("ANOMALIA MESSAGGIO:"))
            self.verify(got, "anomalia-%s.eml" % re.sub(r"\W", "", subject), daticert=False)
        self.none(MARIO, rb"CONSEGNA: " + re.escape(subject.encode()))

    # -- the tests -------------------------------------------------------------

    def test_1_a_to_b(self):
        subject = "Contratto A B"
        self.submit(message(subject, to=LUIGI, cc=ANNA), [LUIGI, ANNA])
        busta = self.find(LUIGI, re.escape(subject.encode()))
        self.assertEqual(busta.header("X-Trasporto"), "posta-certificata")
        report = self.verify(busta, "busta-ab.eml")
        self.assertEqual(report["kind"], "busta")
        ident = busta.header("Message-ID").strip("<>")
        self.assertEqual(self.find(ANNA, re.escape(ident.encode())).header("Message-ID"),
                         "<%s>" % ident)

        acc = self.find(MARIO, rb"Subject: ACCETTAZIONE: " + re.escape(subject.encode()))
        self.assertEqual(self.verify(acc, "acc-ab.eml")["tipo"], "accettazione")
        presa = self.find(RICEVUTE_A, rb"Subject: PRESA IN CARICO: " + re.escape(subject.encode()))
        report = self.verify(presa, "presa-ab.eml")
        self.assertEqual(report["tipo"], "presa-in-carico")
        self.assertEqual(report["identificativo"], ident)
        self.assertEqual(presa.header("From"), "posta-certificata@pec-b.test")
        self.assertIn(b"<ricezione>luigi@pec-b.test</ricezione>", presa.daticert())
        self.assertIn(b"<ricezione>anna@pec-b.test</ricezione>", presa.daticert())

        got = self.find_all(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode()), 2)
        self.assertEqual(len(got), 2, self.daemons["b"].stderr()[-3000:])
        kinds = {}
        for i, m in enumerate(got):
            r = self.verify(m, "consegna-ab-%d.eml" % i)
            self.assertEqual(r["tipo"], "avvenuta-consegna")
            self.assertEqual(r["identificativo"], ident)
            kinds[r["consegna"]] = (m.header("X-TipoRicevuta") or r.get("ricevuta"), m)
        self.assertEqual(sorted(kinds), [ANNA, LUIGI])
        self.assertIsNotNone(kinds[LUIGI][1].postacert(), "completa carries the original")
        self.assertIsNone(kinds[ANNA][1].postacert(), "sintetica carries no original")

        out = self.wait_state(ident, r"luigi@pec-b\.test \(certificato, To\): delivered")
        self.assertRegex(out, r"anna@pec-b\.test \(certificato, Cc\): delivered")

    def test_2_breve(self):
        subject = "Breve A B"
        pdf = bytes(i % 251 for i in range(3000))
        body = (b"--XX\r\nContent-Type: text/plain\r\n\r\nVedi allegato.\r\n--XX\r\n"
                b"Content-Type: application/pdf; name=\"c.pdf\"\r\n"
                b"Content-Disposition: attachment; filename=\"c.pdf\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(pdf).replace(b"\n", b"\r\n") + b"--XX--\r\n")
        raw = message(subject, extra=b"X-TipoRicevuta: breve\r\n", body=body,
                      ctype=b"multipart/mixed; boundary=\"XX\"")
        self.submit(raw, [LUIGI])
        busta = self.find(LUIGI, re.escape(subject.encode()))
        original = busta.postacert()
        breve = self.find(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode()))
        report = self.verify(breve, "breve.eml")
        self.assertEqual(report["ricevuta"], "breve")
        got = breve.postacert()
        want = re.search(rb"filename=\"c.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                         rb"(.*?)\r\n--XX--", original, re.S).group(1)
        m = re.search(rb"c\.pdf\.hash.*?\r\n\r\n([0-9a-f]{40})", got, re.S)
        self.assertIsNotNone(m, got[:3000])
        self.assertEqual(m.group(1).decode(), hashlib.sha1(want).hexdigest())

    def test_3_missing_mailbox(self):
        subject = "Nessuno A B"
        self.submit(message(subject, to="nessuno@pec-b.test"), ["nessuno@pec-b.test"])
        avviso = self.find(MARIO, rb"Subject: AVVISO DI MANCATA CONSEGNA: "
                           + re.escape(subject.encode()))
        report = self.verify(avviso, "mancata.eml")
        self.assertEqual(report["tipo"], "errore-consegna")
        self.assertIn(b'errore="no-dest"', avviso.daticert())
        self.assertIn(b"<errore-esteso>5.1.1 - Gestore B", avviso.daticert())
        # the transaction is closed for nessuno: no 12 h / 24 h notice is due any more
        ident = avviso.daticert().split(b"<identificativo>")[1].split(b"<")[0].decode()
        self.wait_state(ident, r"nessuno@pec-b\.test \(certificato, To\): failed")
        self.none(MARIO, rb"Undelivered Mail|MAILER-DAEMON", wait=2)

    def test_3b_missing_maildir(self):
        """Within A, whose Maildirs are not created on demand (only the mailboxes the test made exist)."""
        subject = "Nessuno A A"
        self.submit(message(subject, to="nessuno@pec-a.test"), ["nessuno@pec-a.test"])
        avviso = self.find(MARIO, rb"Subject: AVVISO DI MANCATA CONSEGNA: "
                           + re.escape(subject.encode()))
        report = self.verify(avviso, "mancata-aa.eml")
        self.assertEqual(report["tipo"], "errore-consegna")
        self.assertEqual(report["consegna"], "nessuno@pec-a.test")
        self.none(MARIO, rb"Undelivered Mail|MAILER-DAEMON", wait=2)

    def test_4_ordinary_mail(self):
        subject = "Posta ordinaria"
        raw = (b"From: x@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nCiao.\r\n"
               % (LUIGI.encode(), subject.encode()))
        code, text = self.b.send("x@example.org", [LUIGI], raw)
        self.assertEqual(code, 250, text)
        got = self.find(LUIGI, re.escape(subject.encode()))
        self.assertEqual(got.header("X-Trasporto"), "errore")
        self.assertEqual(got.header("Subject"), "ANOMALIA MESSAGGIO: " + subject)
        self.verify(got, "anomalia-ordinary.eml", daticert=False)
        self.assertIn(b"Ciao.", got.postacert())

        # for a mailbox that does not exist (Dovecot's userdb does not know nessuno), it
        # is refused before the session ends, for every recipient: never bounced later
        for rcpts in (["nessuno@pec-b.test"], [LUIGI, "nessuno@pec-b.test"]):
            code, text = self.b.send("x@example.org", rcpts, raw.replace(b"Ciao.", b"Nessuno."))
            self.assertEqual(code, 550, text)
            self.assertIn("5.1.1 <nessuno@pec-b.test>: casella inesistente", text)
        self.none(LUIGI, rb"Nessuno\.", wait=2)

        # ordinary_mail = reject refuses it at once
        with e2e.reconfigured(self.conf_b, self.set_b, self.daemons["b"], ordinary_mail="reject"):
            code, text = e2e.retry(lambda: self.b.send("x@example.org", [LUIGI], raw),
                                   lambda r: r[0] != 250)
            self.assertEqual(code, 554, text)
            self.assertIn("5.7.1", text)

    def test_5_untrusted_bustas(self):
        self.assert_not_pec(self.busta("Firmata dal rogue", "rogue"), "Firmata dal rogue")
        tampered = self.busta("Busta alterata").replace(b"Testo del messaggio.",
                                                        b"Testo del messaggio!")
        self.assert_not_pec(tampered, "Busta alterata")
        forged = re.sub(rb"(\r\nFrom: [^\r]*)@pec-a\.test", rb"\1@pec-b.test",
                        self.busta("Mittente falso"), count=1)
        self.assertIn(b"@pec-b.test>", forged)
        self.assert_not_pec(forged, "Mittente falso")

    def test_7_readdressed_busta(self):
        """A genuine busta of A naming luigi, sent again to B's port 25 for anna: anna
        gets a busta di anomalia, nobody a presa in carico or consegna for her."""
        since = self.since()
        subject = "Busta reindirizzata"
        busta = self.busta(subject)                 # names luigi alone
        code, text = self.b.send(MARIO, [ANNA], busta)
        self.assertEqual(code, 250, text)
        self.anomalia(ANNA, subject, "non indirizzata al destinatario anna@pec-b.test")
        self.none(RICEVUTE_A, rb"PRESA IN CARICO: " + re.escape(subject.encode()))
        self.none(MARIO, rb"CONSEGNA: " + re.escape(subject.encode()), wait=0)
        self.none(LUIGI, re.escape(subject.encode()), wait=0)
        self.audit(self.conf_b, since)

    def test_8_claimed_message_id(self):
        """Unsigned mail carrying the Message-ID of a busta not yet arrived is wrapped;
        the busta, when it comes, is delivered and earns its presa in carico and
        consegna."""
        since = self.since()
        subject = "Busta attesa"
        busta = self.busta(subject)
        mid = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", busta).group(1)
        decoy = (b"From: x@example.org\r\nTo: %s\r\nSubject: Imitazione\r\nMessage-ID: %s\r\n"
                 b"\r\nNon sono la busta.\r\n" % (LUIGI.encode(), mid))
        code, text = self.b.send("x@example.org", [LUIGI], decoy)
        self.assertEqual(code, 250, text)
        wrapped = self.anomalia(LUIGI, "Imitazione", "non firmato")
        self.assertEqual(wrapped.header("Message-ID").encode(), mid)
        code, text = self.b.send(MARIO, [LUIGI], busta)
        self.assertEqual(code, 250, text)
        got = self.find(LUIGI, rb"POSTA CERTIFICATA: " + re.escape(subject.encode()))
        self.assertEqual(got.header("X-Trasporto"), "posta-certificata")
        self.verify(self.find(RICEVUTE_A, rb"PRESA IN CARICO: " + re.escape(subject.encode())),
                    "presa-claimed.eml")
        self.verify(self.find(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode())),
                    "consegna-claimed.eml")
        self.assertIn("carried this busta's Message-ID", self.audit(self.conf_b, since))

    def test_9a_consegna_from_wrong_provider(self):
        """A consegna for a recipient at B signed by A's own key (listed, but not B's
        provider) moves nothing: A's user gets it as a busta di anomalia."""
        since = self.since()
        subject = "Consegna falsa"
        nobody = "nessuno@pec-b.test"
        self.submit(message(subject, to="%s, %s" % (LUIGI, nobody)), [LUIGI, nobody])
        genuine = self.find(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode()))
        self.find(MARIO, rb"Subject: AVVISO DI MANCATA CONSEGNA: " + re.escape(subject.encode()))
        ident = genuine.daticert().split(b"<identificativo>")[1].split(b"<")[0].decode()
        self.wait_state(ident, r"%s \(certificato, To\): failed" % re.escape(nobody))
        # B's consegna for luigi, made to say nessuno, signed by A, From A
        forged = forge.resign(
            genuine.raw, "a",
            content=forge.daticert_edit(lambda x: x.replace("<consegna>%s<" % LUIGI,
                                                            "<consegna>%s<" % nobody)),
            head={"From": "posta-certificata@pec-a.test",
                  "Subject": "CONSEGNA: Falsificata",
                  "Message-ID": "<falsa.%d@pec-a.test>" % since})
        code, text = self.a.send("posta-certificata@pec-a.test", [MARIO], forged)
        self.assertEqual(code, 250, text)
        self.anomalia(MARIO, "CONSEGNA: Falsificata", "di un dominio che quel gestore non gestisce")
        self.assertRegex(self.pecctl_tx(ident), r"%s \(certificato, To\): failed" % re.escape(nobody))
        self.audit(self.conf_a, since)

    def test_9b_busta_with_unbuildable_facts(self):
        """A busta of A whose daticert has a newline in oggetto (signed, listed): B makes
        it a busta di anomalia that says why, instead of storing a busta that could never
        earn its consegna."""
        since = self.since()
        subject = "Oggetto su due righe"
        busta = forge.resign(self.busta(subject), "a", content=forge.daticert_edit(
            lambda x: x.replace("<oggetto>" + subject, "<oggetto>Oggetto su&#10;due righe")))
        code, text = self.b.send(MARIO, [LUIGI], busta)
        self.assertEqual(code, 250, text)
        self.anomalia(LUIGI, subject, "oggetto contains control character U+000A")
        self.none(RICEVUTE_A, rb"PRESA IN CARICO: " + re.escape(subject.encode()))
        self.none(MARIO, rb"CONSEGNA: " + re.escape(subject.encode()), wait=0)
        self.assertNotIn("cannot queue the PEC receipt", self.daemons["b"].stderr())
        self.audit(self.conf_b, since)

    def test_9c_tls_between_providers(self):
        """Provider to provider is STARTTLS, in both MTAs' logs; the policy table A's
        pecmilter keeps from the index (what `pecctl tls-policy` prints) makes it
        mandatory, so a peer of the index that offers no TLS gets nothing and the busta
        waits; a submission in the clear is refused (issue 17)."""
        self.submit(message("Via TLS"), [LUIGI])
        self.find(MARIO, rb"Subject: CONSEGNA: Via TLS")
        self.assertRegex(self.a.log(), r"postfix-a/smtp\[\d+\]: Trusted TLS connection "
                         r"established to pec-b\.test\[127\.0\.0\.12\]:\d+: TLSv1\.[23]")
        self.assertRegex(self.b.log(), r"postfix-b/smtpd\[\d+\]: Anonymous TLS connection "
                         r"established from \S+\[127\.0\.0\.11\]: TLSv1\.[23]")
        # and back: B's presa in carico and consegna to A
        self.assertRegex(self.b.log(), r"postfix-b/smtp\[\d+\]: Trusted TLS connection "
                         r"established to pec-a\.test\[127\.0\.0\.11\]")
        self.assertRegex(self.a.log(), r"postfix-a/smtpd\[\d+\]: Anonymous TLS connection "
                         r"established from \S+\[127\.0\.0\.12\]")
        p = subprocess.run([env.program("pecctl"), "-c", self.conf_a, "tls-policy"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.stdout, "pec-a2.test encrypt\npec-b.test encrypt\n", p.stderr)
        with open(self.set_a["tls_policy_file"]) as f:
            self.assertEqual(f.read(), p.stdout)
        self.submit(message("Senza TLS", to="nessuno@pec-a2.test"), ["nessuno@pec-a2.test"])
        e2e.retry(self.a.log, lambda log: "TLS is required, but was not offered" in log)
        self.assertRegex(self.a.log(), r"to=<nessuno@pec-a2\.test>, relay=pec-a2\.test"
                         r"\[127\.0\.0\.13\]:\d+, .*status=deferred \(TLS is required, but "
                         r"was not offered by host pec-a2\.test\[127\.0\.0\.13\]\)")
        self.assertEqual(self.c.messages("nessuno@pec-a2.test"), [])
        code, text = self.a.send(MARIO, [LUIGI], message("In chiaro"),
                                 port=self.a.submission_port, xclient_login=MARIO,
                                 starttls=False)
        self.assertEqual(code, 530, text)
        self.assertIn("5.7.0 Must issue a STARTTLS command first", text)
        # port 25 still takes cleartext: ordinary mail reaches the reception role
        code, text = self.b.send("someone@example.org", [LUIGI],
                                 message("Posta ordinaria in chiaro", sender="someone@example.org"))
        self.assertEqual(code, 250, text)
        self.find(LUIGI, rb"ANOMALIA MESSAGGIO: Posta ordinaria in chiaro")

    def test_10_eight_bit_original(self):
        """An 8-bit original (8bit body, raw UTF-8 Subject) to B, whose MTA does not offer
        8BITMIME: the busta is 7-bit (pec-rules.md 3.1), so no MTA re-encodes what was
        signed; it verifies at B, and Python's email decodes the original's text and
        subject as the user wrote them."""
        raw = e2e.eight_bit_original(LUIGI, MARIO)
        self.assertRegex(raw, rb"[\x80-\xff]")
        self.submit(raw, [LUIGI])
        got = self.find(LUIGI, e2e.EIGHT_BIT_FOUND)
        self.verify(got, "otto-bit.eml")
        e2e.check_eight_bit_busta(self, got)
        # B offers no 8BITMIME, and A sent the busta to it as it was signed
        with smtplib.SMTP(self.b.ip, self.b.port, timeout=30) as s:
            s.ehlo("check.test")
            self.assertFalse(s.has_extn("8bitmime"), s.esmtp_features)
        # and that is the one setting B runs beyond the snippets
        self.assertEqual(self.b.deviations(), ["main.cf: smtpd_discard_ehlo_keywords = 8bitmime: "
                                        "neither in the snippets nor environment-only"])
        self.assertRegex(self.a.log(), r"to=<luigi@pec-b\.test>.*status=sent")

    def test_6_same_provider(self):
        subject = "Interna A"
        self.submit(message(subject, to=GIULIA), [GIULIA])
        busta = self.find(GIULIA, re.escape(subject.encode()))
        self.assertEqual(self.verify(busta, "busta-aa.eml")["kind"], "busta")
        self.verify(self.find(MARIO, rb"Subject: ACCETTAZIONE: " + re.escape(subject.encode())),
                    "acc-aa.eml")
        self.verify(self.find(RICEVUTE_A, rb"Subject: PRESA IN CARICO: "
                              + re.escape(subject.encode())), "presa-aa.eml")
        self.verify(self.find(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode())),
                    "consegna-aa.eml")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
