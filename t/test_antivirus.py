"""End to end: the antivirus with a real clamd, between two providers on real Postfix.

A (pec-a.test) and B (pec-b.test) are each a private Postfix on loopback with its own
pecmilter (submission in the access role, port 25 in the reception role, a
reinjection listener, virtual_transport to the LMTP delivery point, Maildirs).  B
scans with a clamd of its own (pectest.clamd: Debian's clamav-daemon, a private
clamd.conf and socket, EICAR's MD5 as the only signature, nothing downloaded); A
scans nothing, standing for a peer whose scanner missed a virus, and runs its
deadlines in seconds (test_mode) so that a 12 h or 24 h notice would show.

Checked from outside:

- access point (B's users submitting): EICAR as a base64 attachment, inside a zip
  made here, and inside a nested message/rfc822 are each refused with 554 naming
  the finding, earn the avviso di non accettazione per virus (original not
  attached), no busta and no transaction, a NonAccettazioneVirus record whose
  virus field names the finding and the quarantine's SHA-256, and the message
  kept byte for byte in B's quarantine; a clean message with an attachment
  named eicar.txt is certified;
- reception point: a busta from A carrying EICAR to two users of B is not
  delivered; A's service mailbox gets one rilevazione virus per recipient and
  no presa in carico; A's user gets one avviso di mancata consegna per virus
  per recipient, and no 12 h / 24 h notice afterwards; both recipients are
  failed in A's store; pecctl audit is clean on A and on B; the busta is in
  B's quarantine;
- the same infected busta sent twice earns one rilevazione virus; infected
  ordinary mail is refused with 554 naming the finding;
- clamd stopped: a submission and an incoming busta (and ordinary mail) get
  4xx (5xx with on_scan_error = reject), and nothing reaches a mailbox; with
  clamd back they flow;
- a stream over clamd's StreamMaxLength, and a clamd that takes the message
  and never answers within clamd_timeout, are "not scanned" (4xx), never
  clean; clamd over TCP works as over its unix socket;
- pecmilter -n and pecctl status say whether clamd answers, its version and the
  number and date of its signatures; signatures a week old need attention.

Every virus notice verifies with `openssl smime -verify`, its daticert.xml is
valid against the DTD, and pecverify classifies it.
"""
import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import time
import unittest
import zipfile

from pectest import clamd, config, daemon, e2e, env, pecmail, pki
from pectest import postfix as pf
from pectest.provider import Provider

MARIO = "mario@pec-a.test"
RICEVUTE_A = "ricevute@pec-a.test"
PECBUSTA = os.path.join(env.BUILD_DIR, "t", "tools", "pecbusta")
LUIGI = "luigi@pec-b.test"
ANNA = "anna@pec-b.test"
WARNING, NOT_BEFORE, DEADLINE = 8, 11, 12   # A's deadlines, seconds (test_mode)


def attachment(name, data, ctype="application/octet-stream"):
    """A MIME part carrying DATA in base64, named NAME."""
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"Content-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"%s\"\r\n\r\n"
            % (ctype.encode(), name.encode(), name.encode())) + b64


def mixed(subject, to, sender, parts):
    """A user's multipart/mixed message: a text part, then PARTS (each a MIME part)."""
    body = b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIn allegato.\r\n"
    for p in parts:
        body += b"--XX\r\n" + p + b"\r\n"
    body += b"--XX--\r\n"
    return e2e.message(subject, to, sender, body=body,
                       ctype=b"multipart/mixed; boundary=\"XX\"")


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def infected_forms(sender, to):
    """(label, subject, message) of the three ways EICAR reaches the access point."""
    plain = mixed("virus base64", to, sender, [attachment("documento.com", clamd.EICAR)])
    inner = mixed("inoltrato", to, sender, [attachment("fattura.com", clamd.EICAR)])
    nested = mixed("virus nested", to, sender,
                   [b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; "
                    b"filename=\"inoltrato.eml\"\r\n\r\n" + inner])
    return [("base64", "virus base64", plain),
            ("zip", "virus zip", mixed("virus zip", to, sender,
                                       [attachment("archivio.zip", zipped("eicar.com",
                                                                          clamd.EICAR),
                                                   "application/zip")])),
            ("nested", "virus nested", nested)]


class AntivirusE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        clamd.require()
        pki.ensure()
        cls.daemons = {}
        e2e.start(cls, e2e.workdir("pec-e2e-av-"))

    @classmethod
    def _provider(cls, work, name, ip, users, **settings):
        base = os.path.join(work, name)
        os.makedirs(os.path.join(base, "seals"))
        os.chmod(base, 0o755)
        conf = os.path.join(base, "pecmilter.conf")
        reinject = pf.free_port(ip)
        root = os.path.join(base, "pecmail")
        e2e.make_maildirs(root, users)
        s = config.write(conf, name, roles={"pec-submission": "access", "pec-mx": "reception"},
                         reinject="smtp:%s:%d" % (ip, reinject), outbox_retry_max_backoff=2,
                         mailbox_backend="maildir", maildir_root=root,
                         seal_dir=os.path.join(base, "seals"), **settings)
        return conf, s, reinject

    @classmethod
    def _start(cls, work):
        ip_a, ip_b = pf.loopback_ip(1), pf.loopback_ip(2)
        cls.clamd = clamd.Clamd(work).start()
        port_a, port_b = pf.free_port(ip_a), pf.free_port(ip_b)
        cls.conf_a, cls.set_a, reinject_a = cls._provider(
            work, "a", ip_a, ("mario", "ricevute"), test_mode="yes", warning_after=WARNING,
            deadline_not_before=NOT_BEFORE, deadline_after=DEADLINE)
        cls.conf_b, cls.set_b, reinject_b = cls._provider(
            work, "b", ip_b, ("luigi", "anna", "ricevute"), antivirus="clamd",
            clamd_socket=cls.clamd.socket, clamd_timeout=20)
        cls.a = cls._postfix(work, "a", ip_a, port_a, "pec-a.test", cls.set_a, reinject_a,
                             {"pec-b.test": "smtp:[%s]:%d" % (ip_b, port_b)})
        cls.b = cls._postfix(work, "b", ip_b, port_b, "pec-b.test", cls.set_b, reinject_b,
                             {"pec-a.test": "smtp:[%s]:%d" % (ip_a, port_a)})
        cls.a.start()
        cls.b.start()
        for name, conf in (("a", cls.conf_a), ("b", cls.conf_b)):
            d = daemon.start(conf)
            pf.register_process(d.proc.pid, work)
            cls.daemons[name] = d

    @classmethod
    def _postfix(cls, work, name, ip, port, domain, settings, reinject, transports):
        return Provider(work, name, settings, ip=ip, port=port, transports=transports)

    @classmethod
    def _stop(cls):
        e2e.stop_all([cls.daemons.get("a"), cls.daemons.get("b"), getattr(cls, "a", None),
                      getattr(cls, "b", None), getattr(cls, "clamd", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = [e for e in (e2e.daemon_exit(n, d) for n, d in cls.daemons.items()) if e]
        cls._stop()
        if bad:
            raise AssertionError("\n".join(bad))

    # -- helpers ---------------------------------------------------------------

    def mailbox(self, address):
        settings = self.set_b if address.endswith("@pec-b.test") else self.set_a
        return pf.maildir_messages(os.path.join(settings["maildir_root"],
                                                address.partition("@")[0]))

    def diagnostics(self):
        return ("\n--- A ---\n%s\n--- B ---\n%s\n--- pecmilter A ---\n%s\n--- pecmilter B ---\n%s"
                "\n--- clamd ---\n%s" % (self.a.log_tail(), self.b.log_tail(),
                                         self.daemons["a"].stderr()[-3000:],
                                         self.daemons["b"].stderr()[-3000:],
                                         self.clamd.log_tail(1500)))

    def find_all(self, address, pattern, count=1, timeout=60):
        return e2e.wait(self, e2e.matching(lambda: self.mailbox(address), pattern), count,
                        timeout, lambda: " matching %r for %s%s" % (pattern, address,
                                                                   self.diagnostics()))

    def none(self, address, pattern):
        got = [r for r in self.mailbox(address) if re.search(pattern, r)]
        self.assertEqual(got, [], "%s got %r" % (address, pattern))

    def verify(self, m, name):
        return e2e.verify(self, m, self.tmp, name)

    def pecctl(self, conf, *args, ok=(0,)):
        p = subprocess.run([env.program("pecctl"), "-c", conf] + list(args),
                           capture_output=True, timeout=60)
        self.assertIn(p.returncode, ok, p.stdout.decode(errors="replace")
                      + p.stderr.decode(errors="replace"))
        return p.stdout

    def records(self, conf, label, evento="emissione"):
        out = self.pecctl(conf, "log", "--json").decode()
        recs = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [r for r in recs if r["label"] == label and r["evento"] == evento]

    def audit(self, conf, since):
        out = self.pecctl(conf, "audit", "--since", "@%d" % since).decode()
        self.assertRegex(out, r"\b0 violations\b")
        return out

    def quarantined(self, conf, sha):
        """The facts `pecctl quarantine show` gives of SHA, and its exported bytes."""
        facts = dict(re.findall(r"(?m)^([a-z ]+): (.*)$",
                                self.pecctl(conf, "quarantine", "show", sha).decode()))
        data = self.pecctl(conf, "quarantine", "export", sha[:12])
        self.assertEqual(hashlib.sha256(data).hexdigest(), sha)
        return facts, data

    def submit_b(self, raw, sender=LUIGI, rcpts=(ANNA,)):
        return self.b.send(sender, list(rcpts), raw, port=self.b.submission_port,
                           xclient_login=sender)

    # -- the access point --------------------------------------------------------

    def test_access_refuses_each_infected_form(self):
        for label, subject, raw in infected_forms(LUIGI, ANNA):
            with self.subTest(form=label):
                code, text = self.submit_b(raw)
                self.assertEqual(code, 554, text)
                self.assertIn("5.7.1", text)
                self.assertIn(clamd.FINDING, text)
                self.assertIn("virus", text)

                got = self.find_all(LUIGI, rb"AVVISO DI NON ACCETTAZIONE PER VIRUS: "
                                    + re.escape(subject.encode()))[0]
                self.assertEqual(got.header("X-Ricevuta"), "non-accettazione")
                self.assertEqual(got.header("X-VerificaSicurezza"), "errore")
                self.assertIsNone(got.postacert())
                self.assertNotIn(clamd.EICAR, got.raw)
                report = self.verify(got, "non-accettazione-virus-%s.eml" % label)
                self.assertEqual(report["kind"], "notice")
                self.assertEqual((report["tipo"], report["errore"]), ("non-accettazione", "virus"))
                self.assertIn(clamd.FINDING, report["errore_esteso"])
                self.assertIn(clamd.FINDING, got.text())

                rec = [r for r in self.records(self.conf_b, "NonAccettazioneVirus")
                       if r["oggetto"] == subject]
                self.assertEqual(len(rec), 1, rec)
                m = re.fullmatch(re.escape(clamd.FINDING) + r" \(quarantena ([0-9a-f]{64})\)",
                                 rec[0]["virus"])
                self.assertIsNotNone(m, rec[0])
                self.assertEqual(rec[0]["errore"], "virus")
                # no busta, no transaction
                self.pecctl(self.conf_b, "tx", rec[0]["identificativo"], ok=(1,))
                facts, data = self.quarantined(self.conf_b, m.group(1))
                self.assertEqual((facts["point"], facts["finding"]), ("access", clamd.FINDING))
                self.assertEqual(facts["identificativo"], rec[0]["identificativo"])
                # the submission as pecmilter received it: its header and body, byte for byte
                head, body = pecmail.split_head(raw)
                self.assertTrue(data.endswith(b"\r\n" + body), data[-200:])
                self.assertIn(b"Subject: " + subject.encode() + b"\r\n", data)
        time.sleep(2)
        self.none(ANNA, rb"POSTA CERTIFICATA: virus")

    def test_access_certifies_clean_eicar_txt(self):
        raw = mixed("allegato eicar.txt", ANNA, LUIGI,
                    [attachment("eicar.txt", b"Nessun virus qui, solo il nome.\r\n",
                                "text/plain")])
        code, text = self.submit_b(raw)
        self.assertEqual(code, 250, text)
        self.find_all(LUIGI, rb"ACCETTAZIONE: allegato eicar\.txt")
        busta = self.find_all(ANNA, rb"POSTA CERTIFICATA: allegato eicar\.txt")[0]
        self.assertIn(b"eicar.txt", busta.postacert())
        self.assertIn(b"av=clean", self.daemons["b"].stderr().encode())

    # -- the reception point -----------------------------------------------------

    def test_reception_stops_an_infected_busta(self):
        t0 = int(time.time()) - 1
        subject = "busta infetta"
        raw = mixed(subject, "%s, %s" % (LUIGI, ANNA), MARIO,
                    [attachment("documento.com", clamd.EICAR)])
        sent = time.monotonic()
        code, text = self.a.send(MARIO, [LUIGI, ANNA], raw, port=self.a.submission_port,
                                 xclient_login=MARIO)
        self.assertEqual(code, 250, text)      # A scans nothing: it certifies it
        self.find_all(MARIO, rb"ACCETTAZIONE: " + subject.encode())

        rv = self.find_all(RICEVUTE_A, rb"PROBLEMA DI SICUREZZA: " + subject.encode(), 2)
        mcv = self.find_all(MARIO, rb"AVVISO DI MANCATA CONSEGNA PER VIRUS: " + subject.encode(),
                            2)
        answered = time.monotonic() - sent
        self.assertLess(answered, WARNING, "the answers came after A's 12 h mark")
        seen = {}
        for i, m in enumerate(rv):
            self.assertEqual(m.header("X-Ricevuta"), "rilevazione-virus")
            self.assertEqual(m.header("X-Mittente"), MARIO)
            self.assertIsNone(m.postacert())
            r = self.verify(m, "rilevazione-virus-%d.eml" % i)
            self.assertEqual((r["kind"], r["tipo"], r["errore"]),
                             ("notice", "rilevazione-virus", "virus"))
            self.assertIn(clamd.FINDING, r["errore_esteso"])
            seen.setdefault("rv", []).append(r["consegna"])
            ident = r["identificativo"]
        for i, m in enumerate(mcv):
            self.assertEqual(m.header("X-Ricevuta"), "errore-consegna")
            self.assertEqual(m.header("X-VerificaSicurezza"), "errore")
            self.assertIsNone(m.postacert())
            r = self.verify(m, "mancata-consegna-virus-%d.eml" % i)
            self.assertEqual((r["kind"], r["tipo"], r["errore"]),
                             ("notice", "errore-consegna", "virus"))
            self.assertEqual(r["identificativo"], ident)
            self.assertEqual(r["mittente"], MARIO)
            self.assertIn(clamd.FINDING, m.text())
            seen.setdefault("mcv", []).append(r["consegna"])
        self.assertEqual(sorted(seen["rv"]), [ANNA, LUIGI])
        self.assertEqual(sorted(seen["mcv"]), [ANNA, LUIGI])

        # both final in A's store; past both deadlines, no timeout notice and nothing new
        self.assertEqual(len(re.findall(r"(?m)^  \S+ \(certificato, \w+\): failed; ",
                                        self.pecctl(self.conf_a, "tx", ident).decode())), 2)
        time.sleep(max(0, DEADLINE + 3 - (time.monotonic() - sent)))
        timeouts = [r for r in self.mailbox(MARIO)
                    if re.search(rb"SUP\. TEMPO MASSIMO: " + subject.encode(), r)]
        self.assertEqual(timeouts, [])
        self.assertEqual(len(self.find_all(MARIO, rb"PER VIRUS: " + subject.encode(), 2)), 2)
        self.assertEqual(len(self.find_all(RICEVUTE_A, rb"PROBLEMA DI SICUREZZA: "
                                           + subject.encode(), 2)), 2)
        self.none(RICEVUTE_A, rb"PRESA IN CARICO: " + subject.encode())
        for who in (LUIGI, ANNA):
            self.none(who, subject.encode())

        # the busta, byte for byte, in B's quarantine, named by B's records
        recs = [r for r in self.records(self.conf_b, "RilevazioneVirus")
                if r["identificativo"] == ident]
        self.assertEqual(sorted(r["consegna"] for r in recs), [ANNA, LUIGI])
        sha = re.fullmatch(re.escape(clamd.FINDING) + r" \(quarantena ([0-9a-f]{64})\)",
                           recs[0]["virus"]).group(1)
        facts, data = self.quarantined(self.conf_b, sha)
        self.assertEqual((facts["point"], facts["identificativo"]), ("reception", ident))
        self.assertEqual(pecmail.Message(data).header("X-Trasporto"), "posta-certificata")
        print("e2e virus counts: rilevazione virus %d (A's service mailbox), mancata consegna "
              "per virus %d (A's user), timeout notices %d, presa in carico 0, delivered to B's "
              "users 0; answered %.1f s after the submission"
              % (len(rv), len(mcv), len(timeouts), answered))
        self.audit(self.conf_a, t0)
        self.audit(self.conf_b, t0)

    # -- what the operator sees -----------------------------------------------------

    def status(self, conf):
        p = subprocess.run([env.program("pecctl"), "-c", conf, "status", "--json"],
                           capture_output=True, text=True, timeout=60)
        return json.loads(p.stdout)

    def test_operator_sees_clamd_and_quarantine(self):
        p = subprocess.run([env.program("pecmilter"), "-n", "-c", self.conf_b],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        signed = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(self.clamd.signed_at))
        self.assertRegex(p.stdout, r"(?m)^# antivirus: clamd at %s answers: ClamAV [0-9.]+, "
                         r"signatures %d of %s$" % (re.escape(self.clamd.socket),
                                                    clamd.DB_VERSION, re.escape(signed)))
        r = self.status(self.conf_b)
        av = r["antivirus"]
        self.assertEqual((av["engine"], av["up"], av["database"], av["signatures"]),
                         ("clamd", True, str(clamd.DB_VERSION), signed), r)
        self.assertRegex(av["version"], r"^ClamAV [0-9.]+$")
        self.assertIn(av["age_days"], (0, 1, 2))       # a day old; read in the configured zone
        self.assertFalse(any("clamd" in a for a in r["attention"]), r["attention"])
        text = self.pecctl(self.conf_b, "status", ok=(0, 1)).decode()
        self.assertRegex(text, r"(?m)^antivirus: +clamd %s: ClamAV [0-9.]+, signatures %d of "
                         r"%s \(\d+ h old\)$" % (re.escape(self.clamd.socket), clamd.DB_VERSION,
                                                re.escape(signed)))
        self.assertRegex(text, r"(?m)^quarantine: +%s, \d+ messages, "
                         % re.escape(self.set_b["quarantine_dir"]))
        self.assertEqual(self.status(self.conf_a)["antivirus"], {"engine": "none"})
        listed = self.pecctl(self.conf_b, "quarantine", "list").decode().splitlines()
        self.assertEqual(listed[-1], "quarantine: %d message(s) in %s"
                         % (len(listed) - 1, self.set_b["quarantine_dir"]))
        self.assertEqual(len(listed) - 1, r["quarantine"]["messages"])
        for line in listed[:-1]:
            self.assertRegex(line, r"^[0-9a-f]{64}  \d{4}-\d\d-\d\d \S+ \S+  \d+ bytes  "
                             r"(access|reception)  \S+  " + re.escape(clamd.FINDING) + "$")
        self.clamd.stop()
        try:
            # signatures freshclam stopped updating: the operator is told
            self.clamd.start(age_days=9)
            r = self.status(self.conf_b)
            self.assertFalse(r["healthy"])
            self.assertTrue(any(re.fullmatch(r"clamd's signatures are (8|9|10) days old \(is "
                                             r"freshclam running\?\)", a)
                                for a in r["attention"]), r["attention"])
            self.clamd.stop()
            p = subprocess.run([env.program("pecmilter"), "-n", "-c", self.conf_b],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"(?m)^# warning: antivirus: clamd does not answer \(")
            r = self.status(self.conf_b)
            self.assertFalse(r["antivirus"]["up"] or r["healthy"], r)
            self.assertTrue(any(a.startswith("clamd does not answer") for a in r["attention"]),
                            r["attention"])
        finally:
            self.clamd.start()

    def test_reception_answers_a_busta_once_and_refuses_infected_ordinary_mail(self):
        """The same infected busta twice (its sender never heard our 250) earns one
        rilevazione virus; infected ordinary mail is refused at SMTP, no notice."""
        subject = "ripetuta con virus"
        orig = e2e.write(self.tmp, "infetta-due.eml",
                         mixed(subject, LUIGI, MARIO, [attachment("a.com", clamd.EICAR)]))
        p = subprocess.run([PECBUSTA, "-p", pki.PKI, "-s", "a", orig], capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        for _ in range(2):
            code, text = self.b.send(MARIO, [LUIGI], p.stdout)
            self.assertEqual(code, 250, text)
        self.find_all(RICEVUTE_A, rb"PROBLEMA DI SICUREZZA: " + subject.encode())
        e2e.wait(self, lambda: re.findall(r"had their rilevazione virus already",
                                          self.daemons["b"].stderr()), 1, 30, self.diagnostics)
        time.sleep(2)
        got = self.find_all(RICEVUTE_A, rb"PROBLEMA DI SICUREZZA: " + subject.encode())
        self.assertEqual(len(got), 1)
        r = self.verify(got[0], "rilevazione-virus-ripetuta.eml")
        self.assertEqual((r["tipo"], r["consegna"]), ("rilevazione-virus", LUIGI))
        self.none(LUIGI, subject.encode())

        code, text = self.b.send("x@example.org", [ANNA],
                                 mixed("ordinaria infetta", ANNA, "x@example.org",
                                       [attachment("a.com", clamd.EICAR)]))
        self.assertEqual(code, 554, text)
        self.assertIn(clamd.FINDING, text)
        self.none(ANNA, rb"ordinaria infetta")

    # -- when nobody can scan -------------------------------------------------------

    def test_clamd_stopped_defers_everything(self):
        t0 = int(time.time()) - 1
        self.clamd.stop()
        try:
            code, text = self.submit_b(mixed("senza antivirus", ANNA, LUIGI, []))
            self.assertEqual(code, 451, text)
            self.assertIn("4.7.0", text)
            # ordinary mail from outside, and a busta from A, wait at B's door too
            code, text = self.b.send("x@example.org", [ANNA],
                                     e2e.message("ordinaria", ANNA, "x@example.org"))
            self.assertEqual(code, 451, text)
            # on_scan_error = "reject" refuses for good; done before A's busta is on its
            # way, which must meet only the deferral
            with e2e.reconfigured(self.conf_b, self.set_b, self.daemons["b"],
                                  on_scan_error="reject"):
                code, text = e2e.retry(
                    lambda: self.submit_b(mixed("rifiutato senza antivirus", ANNA, LUIGI, [])),
                    lambda r: r[0] != 451, timeout=15)
                self.assertEqual(code, 554, text)
                self.assertIn("5.7.0", text)
            code, text = e2e.retry(
                lambda: self.submit_b(mixed("senza antivirus", ANNA, LUIGI, [])),
                lambda r: r[0] != 554, timeout=15)
            self.assertEqual(code, 451, text)
            code, text = self.a.send(MARIO, [LUIGI], mixed("busta in attesa", LUIGI, MARIO, []),
                                     port=self.a.submission_port, xclient_login=MARIO)
            self.assertEqual(code, 250, text)
            e2e.wait(self, lambda: re.findall(r"busta not scanned \(clamd does not answer",
                                              self.daemons["b"].stderr()), 1, 60,
                     self.diagnostics, "deferral(s) of A's busta by B")
            time.sleep(3)
            for who in (LUIGI, ANNA):
                self.none(who, rb"busta in attesa|senza antivirus|ordinaria")
        finally:
            self.clamd.start()
        # A's Postfix tries again: the busta flows, and the consegna comes back.  Its queue
        # is flushed every few seconds: a deferral that meets Postfix's own queue scan
        # ("skipped, still being delivered") can otherwise wait past the test's minute.
        flushed = [0.0]

        def luigi():
            if time.monotonic() - flushed[0] > 3:
                self.a.flush()
                flushed[0] = time.monotonic()
            return self.mailbox(LUIGI)
        e2e.wait(self, e2e.matching(luigi, rb"POSTA CERTIFICATA: busta in attesa"), 1, 60,
                 self.diagnostics)
        self.find_all(MARIO, rb"CONSEGNA: busta in attesa")
        code, text = self.submit_b(mixed("di nuovo con antivirus", ANNA, LUIGI, []))
        self.assertEqual(code, 250, text)
        self.find_all(ANNA, rb"POSTA CERTIFICATA: di nuovo con antivirus")
        self.audit(self.conf_b, t0)

    def test_clamd_over_tcp(self):
        port = pf.free_port("127.0.0.1")
        self.clamd.stop()
        try:
            self.clamd.start(TCPSocket=str(port), TCPAddr="127.0.0.1")
            with e2e.reconfigured(self.conf_b, self.set_b, self.daemons["b"],
                                  clamd_socket="inet:127.0.0.1:%d" % port):
                code, text = e2e.retry(lambda: self.submit_b(infected_forms(LUIGI, ANNA)[0][2]),
                                       lambda r: r[0] == 554, timeout=15)
                self.assertEqual(code, 554, text)
                self.assertIn(clamd.FINDING, text)
        finally:
            self.clamd.stop()
            self.clamd.start()

    def test_clamd_too_slow_is_not_clean(self):
        """A clamd that takes the connection and never answers (stopped with SIGSTOP)
        costs clamd_timeout seconds, then 451."""
        reloads = self.daemons["b"].stderr().count("configuration reloaded")
        with e2e.reconfigured(self.conf_b, self.set_b, self.daemons["b"], clamd_timeout=2):
            e2e.wait(self, lambda: [1] * (self.daemons["b"].stderr().count(
                "configuration reloaded") - reloads), 1, 30, what="reload(s)")
            self.clamd.proc.send_signal(signal.SIGSTOP)
            try:
                t = time.monotonic()
                code, text = self.submit_b(mixed("clamd fermo", ANNA, LUIGI, []))
                took = time.monotonic() - t
            finally:
                self.clamd.proc.send_signal(signal.SIGCONT)
            self.assertEqual(code, 451, text)
            self.assertGreaterEqual(took, 2)
            self.assertLess(took, 10)
            self.assertRegex(self.daemons["b"].stderr(), r"not scanned, 451 deferred: .*clamd "
                             r"(gave no answer|did not take the message) within 2 s")
        self.none(ANNA, rb"clamd fermo")

    def test_over_clamd_stream_limit_is_not_clean(self):
        self.clamd.stop()
        try:
            self.clamd.start(StreamMaxLength="1M")
            big = mixed("troppo grande", ANNA, LUIGI,
                        [attachment("dati.bin", os.urandom(1024 * 1024))])
            code, text = self.submit_b(big)
            self.assertEqual(code, 451, text)
            self.assertRegex(self.daemons["b"].stderr(), r"not scanned, 451 deferred: .*"
                             r"clamd: INSTREAM size limit exceeded")
        finally:
            self.clamd.stop()
            self.clamd.start()
        self.none(ANNA, rb"troppo grande")


if __name__ == "__main__":
    unittest.main()
