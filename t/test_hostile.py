"""Hostile input end to end (issue 22): what strangers can send to the doors of two
PEC providers running real Postfix, each case with the outcome it must have.

A (pec-a.test) and B (pec-b.test) are private Postfix instances on loopback, each
with its own pecmilter (access role on submission, reception role on port 25, the
delivery point over LMTP), both storing into Maildirs.  The cases, at least sixty:

  - monsters of MIME sent to B's port 25 by an outside sender: unterminated and
    nested-to-exhaustion multiparts, ten thousand parts, a 1 MB header line, 100,000
    header lines, broken and over-long base64 and quoted-printable, NUL and 8-bit bytes
    in headers and bodies, message/rfc822 nested a thousand deep, PEC headers forged;
    each becomes a busta di anomalia for its recipient (ordinary_mail = anomaly);
  - the same at A's submission port from an authenticated user: what cannot travel
    intact (NUL, a line over 998 octets, a field the MTA may have cut) is refused with
    5.6.0, what can becomes a busta that B verifies, PEC headers forged by the user
    travelling inert inside postacert.eml;
  - signed forgeries at B's port 25: a busta signed by an unknown certificate, by a
    self-signed one, by a listed provider for a domain it does not manage, a valid
    busta replayed, a valid busta with one byte changed in each of its parts, a
    truncated signature, a truncated message, daticert.xml with an external entity, an
    entity-expansion bomb, every element repeated, and (at A's port 25, A holding the
    PEC CA's CRL) a busta signed by B after its certificate was revoked: never
    delivered as PEC, never a consegna;
  - LMTP sessions that break the protocol, at B's delivery point directly: pipelining
    abuse, a DATA without end, 10,000 RCPTs, bare LF, over-long lines, junk, commands
    out of order, a message over the size limit;
  - SMTP clients that hang up at every stage, at both listeners.

After each case both daemons still run and answer on their milter and LMTP sockets,
and neither has logged a sanitizer report.  At the end every message in every mailbox
that calls itself PEC (X-Trasporto: posta-certificata, or X-Ricevuta) must verify with
pecverify against the index: nothing is delivered as PEC that is not.  The daemons'
peak resident set (VmHWM) is printed ("RSS:"), and held under 200 MB in a build
without sanitizers (a sanitizer build keeps freed memory in quarantine).

The campaign runs in the sanitizer build (-DPEC_SANITIZE=ON), where a memory error
is a failure; elsewhere it skips, unless PEC_HOSTILE=1 asks for it.
"""
import base64
import contextlib
import os
import re
import select
import socket
import subprocess
import time
import unittest

from pectest import config, daemon, e2e, env, forge, pecmail, pki
from pectest import postfix as pf
from pectest.provider import Provider

MARIO = "mario@pec-a.test"
GIULIA = "giulia@pec-a.test"
LUIGI = "luigi@pec-b.test"
ANNA = "anna@pec-b.test"
OUTSIDER = "x@example.org"
PECBUSTA = os.path.join(env.BUILD_DIR, "t", "tools", "pecbusta")
MB = 1024 * 1024
MIN_CASES = 60
RSS_LIMIT_KB = 200 * 1024


def plain(subject, body=b"Testo.\r\n", head=b"", sender=OUTSIDER, to=LUIGI,
          ctype=b"text/plain; charset=utf-8"):
    """A message from SENDER to TO with SUBJECT, the header lines HEAD, one BODY."""
    return (b"From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@hostile.test>\r\n"
            % (sender.encode(), to.encode(), subject.encode(),
               re.sub(r"\W", "", subject).encode())
            + head + b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n\r\n" + body)


def nested_multiparts(depth):
    """A body of DEPTH multipart/mixed, each inside the one before, a text at the bottom."""
    opening = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n"
                       % (i, i + 1) for i in range(depth))
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return opening + b"--b%d\r\nContent-Type: text/plain\r\n\r\nfondo\r\n--b%d--" % (
        depth, depth) + closing + b"\r\n"


def nested_messages(depth):
    """A body of DEPTH message/rfc822, each holding the next."""
    return b"".join(b"Subject: livello %d\r\nContent-Type: message/rfc822\r\n\r\n" % i
                    for i in range(depth)) + b"Subject: fondo\r\n\r\nfondo\r\n"


def many_parts(n):
    return b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\nparte %d\r\n" % i
                    for i in range(n)) + b"--p--\r\n"


class Hostile(unittest.TestCase):
    cases = 0

    @classmethod
    def setUpClass(cls):
        if not env.sanitized() and os.environ.get("PEC_HOSTILE") != "1":
            env.skip("the hostile campaign runs in the sanitizer build (PEC_HOSTILE=1 "
                     "runs it here)")
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        pki.ensure()
        cls.daemons = {}
        e2e.start(cls, e2e.workdir("pec-hostile-"))

    @classmethod
    def _start(cls, work):
        ip_a, ip_b = pf.loopback_ip(3), pf.loopback_ip(4)
        port_a, port_b = pf.free_port(ip_a), pf.free_port(ip_b)
        cls.set = {}
        cls.conf = {}
        peers = {"a": ("pec-b.test", ip_b, port_b), "b": ("pec-a.test", ip_a, port_a)}
        for name, ip, port, users in (("a", ip_a, port_a, ("mario", "giulia", "ricevute")),
                                      ("b", ip_b, port_b, ("luigi", "anna", "ricevute"))):
            base = os.path.join(work, name)
            os.makedirs(base)
            os.chmod(base, 0o755)
            conf = os.path.join(base, "pecmilter.conf")
            reinject = pf.free_port(ip)
            s = dict(roles={"pec-submission": "access", "pec-mx": "reception"},
                     reinject="smtp:%s:%d" % (ip, reinject), outbox_retry_max_backoff=2,
                     mailbox_backend="maildir", size_limit=8 * MB,
                     maildir_root=os.path.join(base, "pecmail"))
            e2e.make_maildirs(s["maildir_root"], users)
            config.write(conf, name, **s)
            cls.conf[name] = conf
            cls.set[name] = config.settings(name, base, **s)
            domain, peer_ip, peer_port = peers[name]
            # the shipped configuration: the submission's cleanup keeps Bcc for the
            # milter and refuses a NUL, which would cut a header
            mta = Provider(work, name, cls.set[name], ip=ip, port=port,
                           transports={domain: "smtp:[%s]:%d" % (peer_ip, peer_port)})
            setattr(cls, name, mta)
            mta.start()
            d = daemon.start(conf)
            pf.register_process(d.proc.pid, work)
            cls.daemons[name] = d

    @classmethod
    def _stop(cls):
        e2e.stop_all([cls.daemons.get("a"), cls.daemons.get("b"), getattr(cls, "a", None),
                      getattr(cls, "b", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = [e for e in (e2e.daemon_exit(n, d) for n, d in cls.daemons.items()) if e]
        cls._stop()
        if bad:
            raise AssertionError("\n".join(bad))

    # -- the checks after every case --------------------------------------------

    @contextlib.contextmanager
    def case(self, name):
        """One case: run as a subtest, then both daemons must be alive and clean."""
        start = time.monotonic()
        with self.subTest(name):
            yield
        type(self).cases += 1
        print("case %-50s %6.1f s" % (name, time.monotonic() - start))
        for n, d in self.daemons.items():
            self.assertTrue(d.running(), "pecmilter %s died after %s:\n%s"
                            % (n, name, d.stderr()[-5000:]))
            for key in ("milter_socket", "lmtp_socket"):
                self.assertTrue(self.answers(self.set[n][key]),
                                "pecmilter %s: %s silent after %s" % (n, key, name))
            text = d.stderr()
            self.assertNotIn("Sanitizer", text, "pecmilter %s after %s" % (n, name))
            self.assertNotIn("runtime error:", text, "pecmilter %s after %s" % (n, name))

    @staticmethod
    def answers(spec):
        """Does the socket SPEC accept a connection and greet (LMTP) or take one (milter)?"""
        path = spec.partition(":")[2]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(path)
            if spec.endswith("lmtp.sock"):
                return s.recv(512).startswith(b"220 ")
            return True
        except OSError:
            return False
        finally:
            s.close()

    # -- sending ---------------------------------------------------------------

    def submit(self, raw, rcpts=(LUIGI,), sender=MARIO):
        return self.a.send(sender, list(rcpts), raw, port=self.a.submission_port,
                           xclient_login=sender, timeout=300)

    def to_b(self, raw, rcpts=(LUIGI,), sender=OUTSIDER):
        return self.b.send(sender, list(rcpts), raw, timeout=300)

    def mailbox(self, address):
        local, _, domain = address.partition("@")
        name = "a" if domain == "pec-a.test" else "b"
        return pf.maildir_messages(os.path.join(self.set[name]["maildir_root"], local))

    def find(self, address, pattern, timeout=120):
        return e2e.wait(self, e2e.matching(lambda: self.mailbox(address), pattern), 1, timeout,
                        lambda: " matching %r for %s\n--- B ---\n%s\n--- pecmilter B ---\n%s"
                        % (pattern, address, self.b.log_tail(),
                           self.daemons["b"].stderr()[-3000:]))[0]

    def none(self, address, pattern, wait=3):
        time.sleep(wait)
        for raw in self.mailbox(address):
            self.assertIsNone(re.search(pattern, raw), raw[:1500])

    def busta(self, subject, signer="a", body=b"Testo del messaggio.\r\n", extra=b"",
              ctype=b"text/plain; charset=utf-8"):
        original = plain(subject, body, extra, sender=MARIO, to=LUIGI, ctype=ctype)
        path = e2e.write(self.tmp, "orig-%s.eml" % re.sub(r"\W", "", subject), original)
        r = subprocess.run([PECBUSTA, "-p", pki.PKI, "-s", signer, path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout

    # -- outcomes --------------------------------------------------------------

    def anomalia(self, raw, subject, rcpt=LUIGI, sender=OUTSIDER, refused_ok=False):
        """RAW at B's port 25 becomes a busta di anomalia for RCPT (or, when REFUSED_OK,
        is refused as Postfix refuses what it cannot take): never PEC, never a consegna."""
        code, text = self.to_b(raw, [rcpt], sender)
        if refused_ok and code != 250:
            self.assertEqual(code // 100, 5, text)
            return None
        self.assertEqual(code, 250, text)
        got = self.find(rcpt, rb"ANOMALIA MESSAGGIO: (?:[A-Z ]+: )?" + re.escape(subject.encode()))
        self.assertEqual(got.header("X-Trasporto"), "errore")
        self.none(MARIO, rb"CONSEGNA: " + re.escape(subject.encode()), wait=0)
        return got

    def refused(self, raw, pattern, rcpts=(LUIGI,)):
        """RAW at A's submission is refused with a 5xx matching PATTERN."""
        code, text = self.submit(raw, rcpts)
        self.assertEqual(code // 100, 5, text)
        self.assertRegex(text, pattern)

    def certified(self, raw, subject, rcpts=(LUIGI,)):
        """RAW at A's submission is accepted and reaches LUIGI as a busta B verified."""
        code, text = self.submit(raw, rcpts)
        self.assertEqual(code, 250, text)
        got = self.find(LUIGI, rb"POSTA CERTIFICATA: " + re.escape(subject.encode()), timeout=300)
        self.assertEqual(got.header("X-Trasporto"), "posta-certificata")
        return got

    # -- MIME monsters from outside --------------------------------------------

    def test_1_outside_monsters(self):
        long_b64 = base64.b64encode(bytes(range(256)) * 3000)
        cases = [
            ("H01 multipart senza chiusura", b"--u\r\nContent-Type: text/plain\r\n\r\nmai chiuso\r\n",
             b"multipart/mixed; boundary=u"),
            ("H02 multipart annidati 5000", nested_multiparts(5000), b"multipart/mixed; boundary=b0"),
            ("H03 diecimila parti", many_parts(10000), b"multipart/mixed; boundary=p"),
            ("H04 base64 rotto", b"@@@ non base64 @@@\r\n", b"application/pdf"),
            ("H05 base64 lungo", long_b64 + b"\r\n", b"application/octet-stream"),
            ("H06 quoted-printable rotto", b"=ZZ=\r\n=4", b"text/plain"),
            ("H07 NUL nel corpo", b"prima\x00dopo\r\n", b"text/plain"),
            ("H08 otto bit nel corpo", b"caff\xe8 \xff\xfe\r\n", b"text/plain"),
            ("H09 rfc822 mille livelli", nested_messages(1000), b"message/rfc822"),
            ("H10 delimitatore con CR", b"--c\r\r\nContent-Type: text/plain\r\n\r\nx\r\n--c--\r\r\n",
             b"multipart/mixed; boundary=c"),
            ("H11 parametri rotti", b"x\r\n", b"multipart/signed(; boundary=\"z\"; protocol=\""),
        ]
        for subject, body, ctype in cases:
            with self.case(subject):
                head = (b"Content-Transfer-Encoding: base64\r\n" if b"base64" in subject.encode()
                        else b"Content-Transfer-Encoding: quoted-printable\r\n"
                        if b"quoted" in subject.encode() else b"")
                self.anomalia(plain(subject, body, head, ctype=ctype), subject)

        with self.case("H12 riga di intestazione di 1 MB"):
            self.anomalia(plain("H12 riga di 1 MB", head=b"X-Lunga: " + b"a" * MB + b"\r\n"),
                          "H12 riga di 1 MB", refused_ok=True)
        with self.case("H13 centomila righe di intestazione"):
            # no busta di anomalia can be made of it in Postfix: refused for good
            code, text = self.to_b(plain("H13 centomila righe", head=b"X-R: 1\r\n" * 100000))
            self.assertEqual(code, 552, text)
            self.assertIn("5.6.0", text)
        with self.case("H14 NUL in intestazione"):
            self.anomalia(plain("H14 NUL in intestazione", head=b"X-Nul: a\x00b\r\n"),
                          "H14 NUL in intestazione")
        with self.case("H15 otto bit in intestazione"):
            self.anomalia(plain("H15 otto bit", head=b"X-Otto: caff\xe8\r\n"), "H15 otto bit")
        with self.case("H16 X-Trasporto falso da fuori"):
            self.anomalia(plain("H16 busta falsa", head=b"X-Trasporto: posta-certificata\r\n"),
                          "H16 busta falsa")
        with self.case("H17 X-Ricevuta falsa da fuori"):
            self.anomalia(plain("H17 ricevuta falsa", head=b"X-Ricevuta: avvenuta-consegna\r\n"),
                          "H17 ricevuta falsa")

    # -- the same at the access point -------------------------------------------

    def test_2_submissions(self):
        def sub(subject, body=b"Testo.\r\n", head=b"", ctype=b"text/plain; charset=utf-8"):
            return plain(subject, body, head, sender=MARIO, to=LUIGI, ctype=ctype)

        with self.case("S01 NUL in intestazione"):
            # the submission's cleanup refuses it (message_reject_characters)
            self.refused(sub("S01 NUL", head=b"X-Nul: a\x00b\r\n"), r"5\.\d\.\d")
        with self.case("S02 NUL nel corpo"):
            self.refused(sub("S02 NUL corpo", b"a\x00b\r\n"), r"5\.\d\.\d")
        with self.case("S03 riga oltre 998"):
            self.refused(sub("S03 riga lunga", b"x" * 5000 + b"\r\n"), r"5\.6\.0")
        with self.case("S04 campo di 1 MB"):
            self.refused(sub("S04 campo enorme", head=b"X-Lunga: " + b"a" * MB + b"\r\n"),
                         r"5\.[36]\.[0-9]")
        with self.case("S05 centomila righe di intestazione"):
            self.refused(sub("S05 centomila", head=b"X-R: 1\r\n" * 100000), r"5\.6\.0")
        with self.case("S06 X-Trasporto e X-Ricevuta falsi dell'utente"):
            got = self.certified(sub("S06 intestazioni PEC falsificate",
                                     head=b"X-Trasporto: errore\r\nX-Ricevuta: accettazione\r\n"
                                          b"X-VerificaSicurezza: errore\r\n"),
                                 "S06 intestazioni PEC falsificate")
            self.assertEqual(got.headers("X-Ricevuta"), [])
            self.assertIn(b"X-Ricevuta: accettazione", got.postacert())
        with self.case("S07 diecimila parti"):
            self.certified(sub("S07 diecimila parti", many_parts(10000),
                               ctype=b"multipart/mixed; boundary=p"), "S07 diecimila parti")
        with self.case("S08 multipart annidati 5000"):
            self.certified(sub("S08 annidati", nested_multiparts(5000),
                               ctype=b"multipart/mixed; boundary=b0"), "S08 annidati")
        with self.case("S09 rfc822 mille livelli, breve"):
            self.certified(sub("S09 rfc822 profondi", nested_messages(1000),
                               head=b"X-TipoRicevuta: breve\r\n", ctype=b"message/rfc822"),
                           "S09 rfc822 profondi")
            breve = self.find(MARIO, rb"Subject: CONSEGNA: S09 rfc822 profondi")
            self.assertEqual(e2e.verify(self, breve, self.tmp, "s09.eml")["ricevuta"], "breve")
        with self.case("S10 base64 rotto"):
            self.certified(sub("S10 base64 rotto", b"@@@\r\n",
                               head=b"Content-Transfer-Encoding: base64\r\n",
                               ctype=b"application/pdf"), "S10 base64 rotto")

    # -- signed forgeries at the reception point ---------------------------------

    def test_3_forgeries(self):
        with self.case("F01 firmata da un certificato sconosciuto"):
            self.anomalia(self.busta("F01 rogue", "rogue"), "F01 rogue", sender=MARIO)
        with self.case("F02 firmata da un certificato autofirmato"):
            self.anomalia(self.busta("F02 autofirmata", "selfsigned"), "F02 autofirmata",
                          sender=MARIO)
        with self.case("F03 gestore elencato, dominio altrui"):
            forged = forge.resign(self.busta("F03 dominio altrui"), "b")
            self.anomalia(forged, "F03 dominio altrui", sender=MARIO)

        with self.case("F16 firmata da un certificato revocato"):
            # B's certificate is revoked as of 2025-01-01 by the PEC CA's CRL (t/pki):
            # A, given that CRL, takes what B signs now for ordinary mail, not PEC
            original = plain("F16 revocata", sender=LUIGI, to=MARIO)
            path = e2e.write(self.tmp, "orig-F16.eml", original)
            r = subprocess.run([PECBUSTA, "-p", pki.PKI, "-s", "b", "-n", "Gestore B S.p.A.",
                                path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            reloads = self.daemons["a"].stderr().count("configuration reloaded")
            with e2e.reconfigured(self.conf["a"], self.set["a"], self.daemons["a"],
                                  crl_file=pki.crl()):
                e2e.retry(lambda: self.daemons["a"].stderr().count("configuration reloaded"),
                          lambda n: n > reloads)
                code, text = self.a.send("posta-certificata@pec-b.test", [MARIO], r.stdout,
                                         timeout=300)
                self.assertEqual(code, 250, text)
                got = self.find(MARIO, rb"ANOMALIA MESSAGGIO: (?:[A-Z ]+: )?F16 revocata")
            self.assertEqual(got.header("X-Trasporto"), "errore")
        with self.case("F04 busta valida ripetuta"):
            subject = "F04 busta ripetuta"
            genuine = self.busta(subject)
            for _ in range(2):
                code, text = self.to_b(genuine, [LUIGI], MARIO)
                self.assertEqual(code, 250, text)
            self.find(MARIO, rb"Subject: CONSEGNA: " + re.escape(subject.encode()))
            time.sleep(5)
            copies = [m for m in self.mailbox(LUIGI) if b"POSTA CERTIFICATA: " + subject.encode() in m]
            self.assertEqual(len(copies), 1, "the replayed busta was stored again")
            consegne = [m for m in self.mailbox(MARIO) if b"CONSEGNA: " + subject.encode() in m]
            self.assertEqual(len(consegne), 1, "the replayed busta earned a second consegna")

        genuine = self.busta("F05 un byte cambiato", extra=b"X-TipoRicevuta: completa\r\n")
        signed = genuine.index(forge.signed_content(genuine)[:200])

        def variant(tag, raw):
            """RAW under a top-level Subject of its own (outside the signature), sent."""
            subject = "F05 variante " + tag
            raw = re.sub(rb"(?m)^Subject: [^\r]*", b"Subject: POSTA CERTIFICATA: "
                         + subject.encode(), raw, count=1)
            self.anomalia(raw, subject, sender=MARIO)

        with self.case("F05.c controllo: solo l'oggetto esterno cambiato"):
            raw = re.sub(rb"(?m)^Subject: [^\r]*", b"Subject: POSTA CERTIFICATA: F05 controllo",
                         genuine, count=1)
            code, text = self.to_b(raw, [LUIGI], MARIO)
            self.assertEqual(code, 250, text)
            got = self.find(LUIGI, rb"Subject: POSTA CERTIFICATA: F05 controllo")
            self.assertEqual(got.header("X-Trasporto"), "posta-certificata")

        # one byte in each part of the signed content, and in the signature
        markers = [(b"multipart/mixed", b"multipart/mixeD"),            # the content's header
                   (b"Il giorno", b"Il giornO"),                         # text/plain
                   (b"<html", b"<htmL"),                                 # text/html
                   (b"name=\"daticert.xml\"", b"name=\"daticert.xmL\""),  # daticert's header
                   (b"Testo del messaggio.", b"Testo del messaggio!"),    # postacert.eml
                   ]
        for i, (old, new) in enumerate(markers):
            with self.case("F05.%d un byte cambiato" % i):
                where = genuine.index(old, signed)
                variant("%d" % i, genuine[:where] + new + genuine[where + len(old):])
        with self.case("F05.5 un byte cambiato nella daticert"):
            where = genuine.index(b"Content-Transfer-Encoding: base64\r\n\r\nPD94") + 80
            flip = b"A" if genuine[where:where + 1] != b"A" else b"B"
            variant("5", genuine[:where] + flip + genuine[where + 1:])
        with self.case("F05.6 un byte cambiato nella firma"):
            where = genuine.rindex(b"filename=\"smime.p7s\"") + 120
            flip = b"A" if genuine[where:where + 1] != b"A" else b"B"
            variant("6", genuine[:where] + flip + genuine[where + 1:])
        with self.case("F06 firma troncata"):
            sig = genuine.rindex(b"smime.p7s")
            end = genuine.rindex(b"\r\n--")
            variant("troncata", genuine[:sig + (end - sig) // 2] + genuine[end:])
        with self.case("F07 messaggio troncato"):
            variant("senza fine", genuine[:genuine.rindex(b"\r\n--")] + b"\r\n")

        def daticert(subject, edit):
            return forge.resign(self.busta(subject), "a", content=forge.daticert_edit(edit))

        with self.case("F08 entita esterna nella daticert"):
            self.anomalia(daticert("F08 XXE", lambda x: x.replace(
                "<postacert", '<!DOCTYPE postacert [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                "<postacert", 1).replace("<mittente>", "<mittente>&x;", 1)),
                "F08 XXE", sender=MARIO)
        with self.case("F09 bomba di entita nella daticert"):
            bomb = "".join('<!ENTITY e%d "&e%d;&e%d;&e%d;&e%d;&e%d;&e%d;&e%d;&e%d;&e%d;&e%d;">'
                           % ((i,) + (i - 1,) * 10) for i in range(1, 10))
            self.anomalia(daticert("F09 bomba", lambda x: x.replace(
                "<postacert", '<!DOCTYPE postacert [<!ENTITY e0 "ha">' + bomb + "]><postacert",
                1).replace("<mittente>", "<mittente>&e9;", 1)), "F09 bomba", sender=MARIO)
        with self.case("F10 ogni elemento ripetuto nella daticert"):
            def repeat(x):
                for tag in ("mittente", "risposte", "oggetto", "gestore-emittente",
                            "identificativo", "msgid"):
                    x = re.sub(r"(<%s>.*?</%s>)" % (tag, tag), r"\1\1", x, count=1, flags=re.S)
                return re.sub(r"(<intestazione>.*?</intestazione>)", r"\1\1", x, flags=re.S)
            self.anomalia(daticert("F10 ripetuti", repeat), "F10 ripetuti", sender=MARIO)
        with self.case("F11 daticert non XML"):
            self.anomalia(daticert("F11 non XML", lambda x: x[: len(x) // 2]), "F11 non XML",
                          sender=MARIO)
        with self.case("F12 consegna firmata da A per un destinatario di B"):
            subject = "F12 consegna falsa"
            notice = forge.resign(self.busta(subject), "a", head={
                "X-Trasporto": "", "X-Ricevuta": "avvenuta-consegna",
                "Subject": "CONSEGNA: " + subject})
            self.anomalia(notice, subject, sender=MARIO)

    # -- LMTP sessions that break the protocol -----------------------------------

    def lmtp(self, data, close_early=False):
        """Speak DATA to B's delivery point, reading its replies while writing as a
        pipelining client must (RFC 2920 4), then half-close; the replies as text once it
        closes.  CLOSE_EARLY: hang up as soon as DATA is written, reading nothing."""
        path = self.set["b"]["lmtp_socket"].partition(":")[2]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(path)
        out, sent = b"", 0
        try:
            if close_early:
                s.sendall(data)
                return ""
            s.setblocking(False)
            while True:
                r, w, _ = select.select([s], [s] if sent < len(data) else [], [], 60)
                if not r and not w:
                    break
                if w:
                    try:
                        sent += s.send(data[sent:sent + 65536])
                    except OSError:
                        # the server hung up (too many errors): what it said before
                        # is still to be read
                        sent = len(data)
                        continue
                    if sent == len(data):
                        s.shutdown(socket.SHUT_WR)
                if r:
                    got = s.recv(65536)
                    if not got:
                        break
                    out += got
        except OSError:
            pass
        finally:
            s.close()
        return out.decode("utf-8", "replace")

    def test_4_lmtp(self):
        msg = plain("L00 lmtp").replace(b"\r\n", b"\n")
        with self.case("L01 pipelining di tutto"):
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\n" + b"RCPT TO:<luigi@pec-b.test>\r\n"
                            + b"DATA\r\n" + plain("L01 pipelined") + b"\r\n.\r\nQUIT\r\n")
            self.assertRegex(out, r"354 .*\r\n250 2\.\d\.\d <luigi@pec-b\.test>.*\r\n221 ")
            self.find(LUIGI, rb"L01 pipelined")
        with self.case("L02 DATA senza fine"):
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<luigi@pec-b.test>\r\nDATA\r\n"
                            + plain("L02 senza fine") + b"\r\nmai finito")
            self.assertIn("354 ", out)
            self.none(LUIGI, rb"L02 senza fine")
        with self.case("L03 diecimila RCPT"):
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\n"
                            + b"RCPT TO:<luigi@pec-b.test>\r\n" * 10000 + b"RSET\r\nQUIT\r\n")
            self.assertEqual(out.count("452 4.5.3"), 9000)
            self.assertTrue(out.endswith("\r\n") and "221 " in out, out[-300:])
        with self.case("L04 LF nudi"):
            out = self.lmtp(b"LHLO x\nMAIL FROM:<a@b>\nRCPT TO:<luigi@pec-b.test>\nDATA\n"
                            + msg.replace(b"L00 lmtp", b"L04 LF nudi") + b"\n.\nQUIT\n")
            self.assertIn("221 ", out)
            got = self.find(LUIGI, rb"L04 LF nudi")
            # ordinary mail that did not pass the reception point goes in wrapped (issue 17)
            self.assertEqual(got.header("X-Trasporto"), "errore")
            self.assertIn(b"L04 LF nudi", got.postacert())
        with self.case("L05 riga di comando troppo lunga"):
            self.assertIn("500 5.5.2", self.lmtp(b"LHLO " + b"x" * 5000 + b"\r\nQUIT\r\n"))
        with self.case("L06 troppi errori"):
            self.assertIn("421 4.7.0", self.lmtp(b"BOGUS\r\n" * 50))
        with self.case("L07 HELO e comandi fuori ordine"):
            out = self.lmtp(b"HELO x\r\nEHLO x\r\nRCPT TO:<a@b>\r\nDATA\r\nLHLO x\r\nDATA\r\n"
                            b"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\nQUIT\r\n")
            self.assertGreaterEqual(out.count("500 5.5.1"), 2)
            self.assertGreaterEqual(out.count("503 5.5.1"), 3)
        with self.case("L08 NUL e spazzatura binaria"):
            out = self.lmtp(bytes(range(256)) * 256 + b"\r\nQUIT\r\n")
            self.assertTrue(out.startswith("220 "), out[:200])
        with self.case("L09 parametri sconosciuti"):
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b> FOO=BAR\r\nMAIL FROM:<a@b> SIZE=x\r\n"
                            b"QUIT\r\n")
            self.assertIn("555 ", out)
        with self.case("L10 messaggio oltre il limite"):
            big = b"x" * 998 + b"\r\n"              # over twice size_limit: 8 MB
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<luigi@pec-b.test>\r\nDATA\r\n"
                            + plain("L10 enorme", big * (20 * 1024)) + b"\r\n.\r\nQUIT\r\n")
            self.assertIn("552 5.3.4", out)
            self.none(LUIGI, rb"L10 enorme")
        with self.case("L11 punti raddoppiati"):
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<luigi@pec-b.test>\r\nDATA\r\n"
                            + plain("L11 punti", b"..\r\n...riga\r\n.") + b"\r\n.\r\nQUIT\r\n")
            self.assertIn("221 ", out)
            got = self.find(LUIGI, rb"L11 punti")
            self.assertIn(b"\r\n.\r\n..riga\r\n", got.raw)
        with self.case("L12 chiusura a meta comando"):
            self.lmtp(b"LHLO x\r\nMAIL FR", close_early=True)
        with self.case("L13 busta non valida via LMTP"):
            # straight to the delivery point, past the reception point: stored as it came,
            # but no consegna (the final sweep leaves it out: it never crossed port 25)
            out = self.lmtp(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<luigi@pec-b.test>\r\n"
                            b"RCPT TO:<nessuno@pec-b.test>\r\nDATA\r\n"
                            + self.busta("L13 per LMTP", "rogue") + b"\r\n.\r\nQUIT\r\n")
            self.assertIn("221 ", out)
            self.find(LUIGI, rb"L13 per LMTP")
            self.none(MARIO, rb"CONSEGNA: L13 per LMTP")

    # -- SMTP clients that hang up -----------------------------------------------

    def hang_up(self, ip, port, stage, login=None):
        """Speak SMTP to IP:PORT up to STAGE, then close without QUIT."""
        s = socket.create_connection((ip, port), timeout=30)
        f = s.makefile("rb")

        def say(line):
            s.sendall(line + b"\r\n")
            return f.readline()

        try:
            f.readline()
            steps = [b"EHLO hostile.test"]
            if login:
                steps.append(b"XCLIENT LOGIN=" + login.encode())
            steps += [b"MAIL FROM:<%s>" % (login or OUTSIDER).encode(),
                      b"RCPT TO:<%s>" % LUIGI.encode(), b"DATA"]
            for step in steps[:stage]:
                reply = say(step)
                while reply[3:4] == b"-":
                    reply = f.readline()
                if step.startswith(b"XCLIENT"):
                    say(b"EHLO hostile.test")
                    while True:
                        line = f.readline()
                        if line[3:4] != b"-":
                            break
            if stage == len(steps) + 1:
                s.sendall(plain("D mezzo DATA")[:300])
        finally:
            f.close()
            s.close()

    def test_5_hang_ups(self):
        for where, ip, port, login in (("25", self.b.ip, self.b.port, None),
                                       ("submission", self.a.ip, self.a.submission_port, MARIO)):
            stages = 7 if login else 6
            for stage in range(stages):
                with self.case("D %s fase %d" % (where, stage)):
                    self.hang_up(ip, port, stage, login)
        time.sleep(2)
        self.none(LUIGI, rb"D mezzo DATA", wait=0)

    # -- at the end ---------------------------------------------------------------

    def test_9_nothing_false_is_pec(self):
        """Every message in every mailbox that calls itself PEC verifies."""
        self.assertGreaterEqual(type(self).cases, MIN_CASES)
        time.sleep(5)
        checked = 0
        for name, users in (("a", ("mario", "giulia", "ricevute")),
                            ("b", ("luigi", "anna", "ricevute"))):
            for user in users:
                for raw in pf.maildir_messages(os.path.join(self.set[name]["maildir_root"],
                                                            user)):
                    m = pecmail.Message(raw)
                    if b"L13 per LMTP" in raw:
                        continue
                    if m.header("X-Trasporto") == "posta-certificata" or m.header("X-Ricevuta"):
                        e2e.verify(self, m, self.tmp, "pec-%d.eml" % checked,
                                   daticert=False)
                        checked += 1
        self.assertGreater(checked, 0)
        for name, d in self.daemons.items():
            with open("/proc/%d/status" % d.pid) as f:
                hwm = int([l for l in f if l.startswith("VmHWM:")][0].split()[1])
            print("RSS: pecmilter %s peak resident set (VmHWM) through the campaign: %d kB"
                  % (name, hwm))
            if not env.sanitized():
                self.assertLess(hwm, RSS_LIMIT_KB)
        print("%d cases, %d PEC messages verified" % (type(self).cases, checked))


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
