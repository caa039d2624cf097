"""The access point through the project's milter driver (no MTA): what the
daemon asks the MTA to do with a submission, and what it leaves in the store.

MAIL FROM refusals (not authenticated, foreign domain, login against
sender, sender_logins); the busta applied in place (every header request
before the one run of body chunks, each at most 64 KB; the original's
non-inherited fields deleted, ours added with the leading space LEADSPC
wants, or without it when the MTA did not offer LEADSPC, and the original
still byte for byte in postacert.eml); a formal error (5xx with enhanced
code, the avviso in the outbox); what could not travel intact or may have
been cut (a line over 998 octets, a NUL byte, a Subject of the 59,000-odd
bytes Postfix leaves of 100 KB, 50,000 header lines): 5xx naming it and the
avviso, never a busta, never a 451; a store that cannot commit (451 4.3.0 and
one log line, or 554 with on_internal_error = reject); the same message
submitted again (the same busta, nothing new in the store); and, on the
reception role, ordinary mail wrapped in a busta di anomalia."""
import os
import re
import sqlite3
import tempfile
import time
import unittest

from pectest import config, daemon, pecmail, pki
from pectest.milter import (ALL_ACTIONS, POSTFIX_PROTOCOL, SMFIP_HDR_LEADSPC, SMFIP_NOHELO,
                            SMFIP_NR_BODY, SMFIP_NR_EOH, SMFIP_NR_HDR, parse_message,
                            render_message)

MESSAGE = (b"From: Mario Rossi <mario@pec-a.test>\r\n"
           b"To: luigi@pec-b.test, ext@example.org\r\n"
           b"Cc: anna@pec-a.test\r\n"
           b"Subject:senza spazio\r\n"
           b"Date: Tue, 25 Nov 2025 10:00:00 +0100\r\n"
           b"Message-ID: <m1@client.pec-a.test>\r\n"
           b"X-Ricevuta: avvenuta-consegna\r\n"
           b"X-Trasporto: posta-certificata\r\n"
           b"X-TipoRicevuta: breve\r\n"
           b"x-ricevuta: presa-in-carico\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Ciao.\r\n")
RCPTS = ["<luigi@pec-b.test>", "<ext@example.org>", "<anna@pec-a.test>"]
# another message: MESSAGE sent again would be a resubmission, which commits nothing
OTHER = MESSAGE.replace(b"<m1@client.pec-a.test>", b"<m2@client.pec-a.test>")


class AccessMilterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.conf = os.path.join(self.tmp.name, "pecmilter.conf")

    def start(self, **overrides):
        # nothing listens on the discard port: generated messages stay in the outbox
        overrides.setdefault("reinject", "smtp:127.0.0.1:9")
        overrides.setdefault("roles", {"pec-submission": "access", "pec-mx": "reception"})
        self.settings = config.write(self.conf, "a", **overrides)
        d = daemon.start(self.conf)
        self.addCleanup(self.stop_clean, d)
        return d

    def stop_clean(self, d):
        """Stop the daemon; it must exit 0 with no sanitizer report (leaks included)."""
        text = d.stop()
        self.assertNotIn("Sanitizer", text)
        self.assertEqual(d.returncode, 0, text[-3000:])

    def send(self, d, raw=MESSAGE, sender="<mario@pec-a.test>", rcpts=RCPTS,
             login="mario@pec-a.test", protocol=0, tls="TLSv1.3", client=None):
        """One submission; TLS: the session's {tls_version} (None: cleartext), CLIENT:
        the client's address as the MTA reports it (loopback by default)."""
        mail = {"{auth_authen}": login} if login else {}
        if tls:
            mail["{tls_version}"] = tls
        with d.milter() as m:
            m.filter_macros = False
            m.negotiate(protocol=protocol)
            return m.send_message(raw, sender, rcpts,
                                  connect_macros={"{daemon_name}": "pec-submission"},
                                  macros={"M": mail},
                                  client={"address": client} if client else None)

    def db(self):
        return sqlite3.connect("file:%s?mode=ro" % self.settings["store"], uri=True)

    def outbox(self):
        with self.db() as c:
            return c.execute("SELECT tipo, rcpt, message FROM outbox ORDER BY id").fetchall()

    def labels(self):
        with self.db() as c:
            return [r[0] for r in c.execute("SELECT label FROM registro ORDER BY seq")]

    def wait_log(self, d, pattern, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if re.search(pattern, d.stderr()):
                return
            time.sleep(0.05)
        self.fail("no %r in the daemon's log:\n%s" % (pattern, d.stderr()))

    # -- MAIL FROM -------------------------------------------------------------

    def test_mail_from_refusals(self):
        d = self.start(sender_logins=[{"login": "mario", "senders": ["mario@pec-a.test"]}])
        cases = [
            # (login, sender, reply start, words)
            (None, "<mario@pec-a.test>", "530 5.7.0 ", "autenticarsi"),
            ("x@example.org", "<x@example.org>", "553 5.7.1 ", "non e' una casella"),
            ("luigi@pec-a.test", "<mario@pec-a.test>", "553 5.7.1 ",
             "luigi@pec-a.test non puo' inviare come mario@pec-a.test"),
            ("mario@pec-a.test", "<>", "553 5.7.1 ", "vuoto"),
        ]
        for login, sender, start, words in cases:
            res = self.send(d, sender=sender, login=login)
            self.assertEqual(res.stage, "M", (login, sender, res))
            self.assertEqual(res.reply.code, "replycode")
            self.assertTrue(res.reply.text.startswith(start), res.reply.text)
            self.assertIn(words, res.reply.text)
        # no PEC processing started: nothing in the store
        self.assertEqual(self.outbox(), [])
        self.assertEqual(self.labels(), [])
        # the login may use what sender_logins lists
        res = self.send(d, login="mario")
        self.assertEqual(res.reply.code, "continue", res.reply)

    def assertRefusedCleartext(self, res):
        self.assertEqual((res.stage, res.reply.code), ("M", "replycode"), res)
        self.assertTrue(res.reply.text.startswith("530 5.7.0 "), res.reply.text)
        self.assertIn("connessione cifrata (STARTTLS)", res.reply.text)

    def test_submission_must_come_over_tls(self):
        """No {tls_version}: 530 5.7.0 at MAIL FROM, authenticated or not, nothing
        stored; the MTA is asked for the macro at MAIL FROM (issue 17)."""
        d = self.start()
        with d.milter() as m:
            self.assertIn("{tls_version}", m.negotiate()["macros"].get(2, ""))
        self.assertRefusedCleartext(self.send(d, tls=None))
        self.assertRefusedCleartext(self.send(d, tls=""))
        self.assertRefusedCleartext(self.send(d, tls=None, login=None))
        self.assertEqual(self.outbox(), [])
        self.wait_log(d, r"access: refused at MAIL FROM \(not-tls\)")
        self.assertEqual(self.send(d, tls="TLSv1.2").reply.code, "continue")

    def test_cleartext_from_loopback_only_when_configured(self):
        d = self.start(submission_cleartext="loopback")
        self.assertEqual(self.send(d, tls=None).reply.code, "continue")
        self.assertEqual(self.send(d, tls=None, raw=OTHER, client="127.0.0.53").reply.code,
                         "continue")
        for far in ("192.0.2.7", "10.0.0.1"):
            self.assertRefusedCleartext(self.send(d, tls=None, client=far))
        self.assertEqual(self.send(d, client="192.0.2.7",
                                   raw=OTHER.replace(b"<m2@", b"<m3@")).reply.code, "continue")

    # -- the busta in place ----------------------------------------------------

    def check_busta(self, res, leadspc):
        kinds = [a[0] for a in res.actions]
        self.assertIn("replbody", kinds)
        first_body = kinds.index("replbody")
        self.assertEqual(set(kinds[:first_body]) - {"chgheader", "addheader"}, set())
        self.assertEqual(set(kinds[first_body:]), {"replbody"}, "one run of body chunks")
        self.assertTrue(all(len(a[1]) <= 65535 for a in res.find("replbody")))
        deleted = {a[2].lower() for a in res.find("chgheader") if a[3] == ""}
        for name in ("from", "subject", "date", "message-id", "x-ricevuta", "x-trasporto",
                     "x-tiporicevuta", "mime-version", "content-type"):
            self.assertIn(name, deleted)
        self.assertNotIn("to", deleted)
        self.assertNotIn("cc", deleted)
        # both X-Ricevuta fields went, whatever their case, the last one first
        self.assertEqual([a[1] for a in res.find("chgheader") if a[2].lower() == "x-ricevuta"],
                         [2, 1])
        for a in res.find("addheader"):
            self.assertEqual(a[2].startswith(" "), leadspc, a)
        headers, body = res.apply(*parse_message(MESSAGE, raw_values=True), raw_values=True)
        out = render_message(headers, body, raw_values=True)
        m = pecmail.Message(out)
        self.assertEqual(m.header("X-Trasporto"), "posta-certificata")
        self.assertEqual(m.headers("X-Ricevuta"), [])
        self.assertEqual(m.headers("X-Trasporto"), ["posta-certificata"])
        self.assertEqual(m.header("X-TipoRicevuta"), "breve")
        self.assertEqual(m.header("Subject"), "POSTA CERTIFICATA: senza spazio")
        self.assertEqual(m.header("X-Riferimento-Message-ID"), "<m1@client.pec-a.test>")
        self.assertEqual(m.header("To"), "luigi@pec-b.test, ext@example.org")
        # the original, byte for byte, but its identity
        pc = m.postacert()
        ident = m.header("Message-ID")
        expected = MESSAGE.replace(b"Message-ID: <m1@client.pec-a.test>\r\n",
                                   ("Message-ID: %s\r\nX-Riferimento-Message-ID: "
                                    "<m1@client.pec-a.test>\r\n" % ident).encode())
        if not leadspc:
            # without LEADSPC the MTA dropped the space: we can only put the usual one back
            expected = expected.replace(b"Subject:senza", b"Subject: senza")
        self.assertEqual(pc, expected)
        return ident

    def test_busta_applied_in_place(self):
        d = self.start()
        res = self.send(d)
        self.assertEqual(res.reply.code, "continue", res.reply)
        ident = self.check_busta(res, leadspc=True)
        self.assertEqual(self.labels(), ["BustaTrasporto", "Accettazione", "PresaInCarico"])
        rows = self.outbox()
        self.assertEqual([(t, r) for t, r, _ in rows],
                         [("accettazione", "mario@pec-a.test"),
                          ("presa-in-carico", "ricevute@pec-a.test")])
        acc = pecmail.Message(rows[0][2])
        self.assertIn(ident.strip("<>"), acc.text())
        self.assertIn('luigi@pec-b.test ("posta certificata")', acc.text())
        self.assertIn('ext@example.org ("posta ordinaria")', acc.text())
        self.wait_log(d, r"access: accepted: identificativo=%s" % re.escape(ident.strip("<>")))

    def test_resubmission_is_the_same_busta(self):
        """The client sends the same message again (after a 4xx it got because pecmilter died
        after its commit): the same busta, nothing new in the store."""
        d = self.start()
        first = self.send(d)
        again = self.send(d, rcpts=list(reversed(RCPTS)))
        self.assertEqual(again.reply.code, "continue", again.reply)
        self.assertEqual(self.check_busta(again, leadspc=True),
                         self.check_busta(first, leadspc=True))
        busta = [render_message(*r.apply(*parse_message(MESSAGE, raw_values=True),
                                         raw_values=True), raw_values=True)
                 for r in (first, again)]
        self.assertEqual(busta[0], busta[1])
        ident = pecmail.Message(busta[0]).header("Message-ID").strip("<>")
        self.assertEqual(self.labels(), ["BustaTrasporto", "Accettazione", "PresaInCarico"])
        self.assertEqual([t for t, _, _ in self.outbox()], ["accettazione", "presa-in-carico"])
        self.wait_log(d, r"access: resubmission of identificativo=%s" % re.escape(ident))
        # another Message-ID is another message
        other = self.send(d, raw=OTHER)
        self.assertEqual(other.reply.code, "continue", other.reply)
        self.assertEqual(len(self.outbox()), 4)

    def test_mta_without_leadspc(self):
        d = self.start()
        res = self.send(d, protocol=POSTFIX_PROTOCOL & ~SMFIP_HDR_LEADSPC)
        self.assertEqual(res.reply.code, "continue", res.reply)
        self.check_busta(res, leadspc=False)

    def test_no_reply_asked_where_nothing_is_decided(self):
        # headers, end of header and body chunks are only collected: the
        # milter asks the MTA not to wait for an answer to each of them
        d = self.start()
        quiet = SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY
        with d.milter() as m:
            neg = m.negotiate()
        self.assertEqual(neg["protocol"] & (quiet | SMFIP_NOHELO), quiet | SMFIP_NOHELO)
        # an MTA that offers none of that gets every answer, and the same busta
        res = self.send(d, protocol=POSTFIX_PROTOCOL & ~quiet)
        self.assertEqual(res.reply.code, "continue", res.reply)
        self.check_busta(res, leadspc=True)

    def test_big_body_goes_to_a_spool_file_and_comes_back_in_chunks(self):
        spool = os.path.join(self.tmp.name, "spool")
        os.mkdir(spool)
        d = self.start(spool_dir=spool)
        body = b"".join(b"riga %07d del messaggio lungo\r\n" % i for i in range(100000))
        raw = MESSAGE + body
        res = self.send(d, raw=raw)
        self.assertEqual(res.reply.code, "continue", res.reply)
        chunks = res.find("replbody")
        self.assertGreater(len(chunks), 40)
        self.assertTrue(all(len(c[1]) <= 65535 for c in chunks))
        headers, body_out = res.apply(*parse_message(raw, raw_values=True), raw_values=True)
        pc = pecmail.Message(render_message(headers, body_out, raw_values=True)).postacert()
        self.assertTrue(pc.endswith(body))
        # the spool files are unlinked: nothing stays behind
        self.assertEqual(os.listdir(spool), [])

    # -- formal errors ---------------------------------------------------------

    def test_formal_error_rejects_and_queues_the_avviso(self):
        d = self.start()
        raw = MESSAGE.replace(b"Cc: anna@pec-a.test\r\n", b"Bcc: anna@pec-a.test\r\n")
        res = self.send(d, raw=raw)
        self.assertEqual(res.reply.code, "replycode")
        self.assertTrue(res.reply.text.startswith("550 5.7.1 Messaggio non accettato: il campo "
                                                  "Bcc"), res.reply.text)
        self.assertEqual(res.actions, [])
        rows = self.outbox()
        self.assertEqual([(t, r) for t, r, _ in rows], [("non-accettazione", "mario@pec-a.test")])
        avviso = pecmail.Message(rows[0][2])
        self.assertEqual(avviso.header("X-Ricevuta"), "non-accettazione")
        self.assertIn("il campo Bcc (copia nascosta) non deve contenere indirizzi", avviso.text())
        self.assertIn(b"<errore-esteso>5.7.1 - Gestore A S.p.A. - il campo Bcc",
                      avviso.daticert())
        self.assertEqual(self.labels(), ["NonAccettazione"])
        # the client sends it again (after a 4xx it got because pecmilter died after
        # committing the avviso): the same refusal, no second avviso
        again = self.send(d, raw=raw)
        self.assertEqual(again.reply.code, "replycode")
        self.assertEqual(again.reply.text, res.reply.text)
        self.assertEqual(len(self.outbox()), 1)
        self.assertEqual(self.labels(), ["NonAccettazione"])
        self.wait_log(d, r"access: not accepted \(bcc\) again, the retry of a refusal")

    # -- what cannot travel intact ---------------------------------------------

    def refused(self, res, start, words):
        """RES is a refusal starting START and naming WORDS, the message untouched, and the
        sender's avviso di non accettazione, saying the same words, queued alone; the
        avviso is returned."""
        self.assertEqual(res.reply.code, "replycode", res.reply)
        self.assertTrue(res.reply.text.startswith(start), res.reply.text)
        self.assertIn(words, res.reply.text)
        self.assertEqual(res.actions, [])
        rows = self.outbox()
        self.assertEqual([(t, r) for t, r, _ in rows], [("non-accettazione", "mario@pec-a.test")])
        avviso = pecmail.Message(rows[0][2])
        self.assertEqual(avviso.header("X-Ricevuta"), "non-accettazione")
        self.assertIn(words, avviso.text())
        self.assertIsNone(avviso.postacert())
        self.assertEqual(self.labels(), ["NonAccettazione"])
        return avviso

    def test_long_line_is_refused(self):
        """A body line over 998 octets: the MTA would fold it in transit and break the
        signature the recipient's provider checks; refused, never certified."""
        d = self.start()
        raw = (MESSAGE.replace(b"text/plain", b"text/html")
               + b"<p>" + b"a" * 3000 + b"</p>\r\n")
        res = self.send(d, raw=raw)
        self.refused(res, "550 5.6.0 Messaggio non accettato: ",
                     "la riga 2 del corpo del messaggio e' lunga 3007 byte, oltre i 998 ammessi")
        self.assertIn("line 2 of the message body is 3007 octets long", res.reply.text)
        self.wait_log(d, r"access: not accepted \(line-too-long\)")

    def test_nul_is_refused(self):
        d = self.start()
        res = self.send(d, raw=MESSAGE + b"riga con un \x00 dentro\r\n")
        self.refused(res, "550 5.6.0 ", "la riga 2 del corpo del messaggio contiene un byte NUL")

    def test_long_subject_is_refused_not_cut(self):
        """Postfix hands a milter at most 60,000 bytes of one header field (it cuts the rest
        in its own queue file): a 100 KB Subject arrives as 59,000-odd bytes.  Refused,
        and the avviso quotes the subject shortened, saying so."""
        d = self.start()
        subject = b"".join(b" parola%05d\r\n" % i for i in range(4500))   # 58,500 bytes
        raw = MESSAGE.replace(b"Subject:senza spazio\r\n", b"Subject:" + subject)
        res = self.send(d, raw=raw)
        avviso = self.refused(res, "552 5.6.0 ", "il campo Subject supera i 16384 byte ammessi")
        self.assertIn("the Subject header field is longer than the 16384 octets allowed",
                      res.reply.text)
        quoted = avviso.header("Subject")
        self.assertTrue(quoted.startswith("AVVISO DI NON ACCETTAZIONE: parola00000 parola00001"),
                        quoted[:200])
        self.assertTrue(quoted.endswith(" [...]"), quoted[-200:])
        self.assertLess(len(quoted), 1200)

    def test_header_section_over_limit_is_refused_not_deferred(self):
        """50,000 header lines (1.9 MB): a permanent condition, so 552 naming the limit and
        the avviso, not 451 and a client retrying for days."""
        d = self.start()
        head, body = MESSAGE.split(b"\r\n\r\n", 1)
        many = b"".join(b"X-Riempimento: riga di riempimento numero %05d\r\n" % i
                        for i in range(50000))
        res = self.send(d, raw=head + b"\r\n" + many + b"\r\n" + body)
        self.refused(res, "552 5.6.0 ",
                     "l'intestazione del messaggio supera i 1048576 byte ammessi")
        self.assertIn("the header section is larger than the 1048576 octets allowed",
                      res.reply.text)

    # -- internal errors -------------------------------------------------------

    def lock_store(self):
        """Hold the store's write lock from another connection (past the busy timeout)."""
        c = sqlite3.connect(self.settings["store"], timeout=1, isolation_level=None)
        c.execute("BEGIN EXCLUSIVE")
        self.addCleanup(c.close)
        return c

    def test_store_failure_defers(self):
        d = self.start()
        self.send(d)             # creates the store's tables before we lock them
        before = len(self.outbox())
        lock = self.lock_store()
        res = self.send(d, raw=OTHER)
        self.assertEqual(res.reply.code, "replycode")
        self.assertTrue(res.reply.text.startswith("451 4.3.0 "), res.reply.text)
        lock.execute("ROLLBACK")
        self.assertEqual(len(self.outbox()), before)
        lines = [l for l in d.stderr().splitlines() if "access: store:" in l]
        self.assertEqual(len(lines), 1, d.stderr())
        self.assertIn("message deferred", lines[0])

    def test_store_failure_rejects_when_configured(self):
        d = self.start(on_internal_error="reject")
        self.send(d)
        lock = self.lock_store()
        res = self.send(d, raw=OTHER)
        lock.execute("ROLLBACK")
        self.assertTrue(res.reply.text.startswith("554 5.3.0 "), res.reply.text)

    # -- the other role --------------------------------------------------------

    def test_reception_makes_ordinary_mail_an_anomaly(self):
        d = self.start(mailboxes=["mario@pec-a.test"])
        with d.milter() as m:
            m.filter_macros = False
            m.negotiate()
            res = m.send_message(MESSAGE, "<x@example.org>", ["<mario@pec-a.test>"],
                                 connect_macros={"{daemon_name}": "pec-mx"})
        self.assertEqual(res.reply.code, "continue", res.reply)
        names = [a[1] for a in res.find("addheader")]
        self.assertEqual(names[0], "X-Trasporto", res.actions)
        self.assertIsNotNone(res.body())
        self.wait_log(d, r"reception: .*ordinary mail .*busta di anomalia")
        # for a mailbox nobody made, it is refused at end of message, not wrapped
        with d.milter() as m:
            m.filter_macros = False
            m.negotiate()
            res = m.send_message(MESSAGE, "<x@example.org>",
                                 ["<mario@pec-a.test>", "<nessuno@pec-a.test>"],
                                 connect_macros={"{daemon_name}": "pec-mx"})
        self.assertEqual(res.reply.code, "replycode", res.reply)
        self.assertIn("550 5.1.1 <nessuno@pec-a.test>: casella inesistente", str(res.reply))
        self.assertEqual(res.find("addheader"), [], res.actions)
        self.wait_log(d, r"reception: .*but nessuno@pec-a\.test: 550 5\.1\.1 no such mailbox: "
                         r"refused")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
