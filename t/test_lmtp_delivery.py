#!/usr/bin/env python3
"""The delivery point end to end: t/tools/peclmtpd (libpec's LMTP listener with a
configuration loaded as the daemon loads it) spoken to over LMTP by a scripted
client, by a private Dovecot as the mailbox store, and by a private Postfix using
it as virtual_transport.

What must hold (pec-rules.md 2.4, 4.7, 4.8, 9; deliver.h):
  * RFC 2033: LHLO and its extensions, pipelined commands, one reply per
    recipient after DATA, 8-bit bodies and dot-stuffed lines kept;
  * a busta that verifies is stored byte for byte and earns, per recipient, an
    avvenuta consegna to its sender: completa (with the busta's own postacert.eml)
    or breve (the hashes of the original's attachments) for a To recipient,
    sintetica for a Cc one; a recipient whose mailbox refuses it for good earns an
    avviso di mancata consegna (no-dest / no-dominio / altro, errore-esteso with
    the status code) and the MTA still gets 250;
  * every receipt is in the store's outbox with its log record, verifies with
    openssl against the test root, is classified by pecverify, and its
    daticert.xml is valid against the DTD;
  * notices and buste di anomalia that verify are delivered unchanged and never
    earn a receipt; ordinary mail and a tampered busta (which reach the delivery
    point only past the reception point: a DSN of our MTA, local pickup) go into
    the mailbox wrapped in a busta di anomalia signed here, the original byte for
    byte inside it, never bare;
  * a temporary failure (mailbox root missing, store locked, mailbox server down)
    gets 4xx and no receipt; the receipt comes when the MTA retries;
  * a PEC message that verifies goes into a mailbox once: a second copy (same
    Message-ID) gets 250 "delivered already", is not stored and earns no second
    receipt, also when the copies come at the same moment, when the first copy
    was stored but not recorded (the MTA's retry finds the Maildir file, in new/
    or moved to cur/), and through Dovecot; ordinary mail and a tampered busta
    are delivered every time;
  * nothing is left running.
"""
import email
import email.policy
import hashlib
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET

from pectest import config, env, pki, postfix
from pectest.dovecot import Dovecot, have_dovecot

TOOLS = os.path.join(env.BUILD_DIR, "t", "tools")
PECLMTPD = os.path.join(TOOLS, "peclmtpd")
PECBUSTA = os.path.join(TOOLS, "pecbusta")
PECGEN = os.path.join(TOOLS, "pecgen")
PECVERIFY = env.program("pecverify")

SENDER = "mario.rossi@pec-a.test"
LUIGI, ANNA = "luigi.bianchi@pec-b.test", "anna.verdi@pec-b.test"
NESSUNO = "nessuno@pec-b.test"
SERVICE_B = "posta-certificata@pec-b.test"
GESTORE_B = "Gestore B S.p.A."

WORK = None
GEN = None
DTD = None


# ------------------------------------------------------------------ raw MIME

def split_entity(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n", body if sep else b""


def header_of(raw):
    return email.message_from_bytes(split_entity(raw)[0] + b"\r\n", policy=email.policy.compat32)


def raw_parts(raw):
    """Body parts of a multipart entity, without the CRLF of the next delimiter."""
    boundary = header_of(raw).get_param("boundary").encode()
    body = split_entity(raw)[1]
    delims = list(re.finditer(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", body, re.M))
    parts = []
    for cur, nxt in zip(delims, delims[1:]):
        if cur.group(1):
            break
        parts.append(body[cur.end() + 1:nxt.start() - 2])
    return parts


def leaves(raw):
    """(header, raw part) of every leaf, depth first; message/rfc822 is a leaf."""
    h = header_of(raw)
    if h.get_content_maintype() == "multipart":
        out = []
        for p in raw_parts(raw):
            out += leaves(p)
        return out
    return [(h, raw)]


def named_part(raw, filename):
    """Body of the leaf called FILENAME, transfer-decoded for base64; None if absent."""
    for h, part in leaves(raw):
        if h.get_filename() == filename:
            body = split_entity(part)[1]
            if (h.get("Content-Transfer-Encoding") or "").lower() == "base64":
                return base64.b64decode(body)
            return body
    return None


def unstuffed_crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


def identificativo_of(busta):
    return header_of(busta)["Message-ID"].strip("<> ")


# ------------------------------------------------------------------ LMTP client

class Lmtp:
    """A scripted LMTP client (smtplib.LMTP reads one reply after DATA, not one per
    recipient)."""

    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        try:
            self.s.connect(path)
            self.f = self.s.makefile("rb")
            self.greeting = self.reply()
        except (OSError, EOFError):
            self.s.close()
            raise

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("server closed the connection after %r" % lines)
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), lines

    def send(self, data):
        self.s.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    @staticmethod
    def stuffed(data):
        data = unstuffed_crlf(data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"

    def transaction(self, sender, rcpts, data, params=""):
        """MAIL, RCPT..., DATA pipelined in one write; returns (mail reply, rcpt
        replies, data reply, per-recipient final replies)."""
        cmds = "MAIL FROM:<%s>%s\r\n" % (sender, params)
        cmds += "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n"
        self.send(cmds.encode())
        mail = self.reply()
        rcpt = [self.reply() for _ in rcpts]
        data_reply = self.reply()
        final = []
        if data_reply[0] == 354:
            self.send(self.stuffed(data))
            final = [self.reply() for r in rcpt if r[0] == 250]
        return mail, rcpt, data_reply, final

    def close(self):
        try:
            self.cmd("QUIT")
        except (OSError, EOFError):
            pass
        self.f.close()
        self.s.close()


def deliver(sock, rcpts, data, sender=SENDER, params=""):
    """One LMTP transaction; the final replies as (code, text)."""
    c = Lmtp(sock)
    try:
        code, _ = c.cmd("LHLO client.test")
        assert code == 250
        mail, rcpt, data_reply, final = c.transaction(sender, rcpts, data, params)
        assert mail[0] == 250, mail
        assert all(r[0] == 250 for r in rcpt), rcpt
        assert data_reply[0] == 354, data_reply
        return [(code, lines[-1]) for code, lines in final]
    finally:
        c.close()


# ------------------------------------------------------------------ the daemon

class Peclmtpd:
    def __init__(self, name, **settings):
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "pecmilter.conf")
        self.settings = config.write(self.conf, "b", **settings)
        self.sock = config.socket_path(self.settings, "lmtp_socket")
        self.db = self.settings["store"]
        self.logfile = os.path.join(self.dir, "peclmtpd.log")
        self.proc = None

    def start(self):
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen([PECLMTPD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        postfix.register_process(self.proc.pid, WORK)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("peclmtpd exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                Lmtp(self.sock, timeout=5).close()
                return self
            except (OSError, EOFError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("peclmtpd does not answer on %s:\n%s" % (self.sock, self.log()))
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        postfix.unregister_process(self.proc.pid)
        self.proc = None
        return rc

    def log(self):
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()

    def marks(self):
        """(last outbox id, last registro seq) now."""
        with sqlite3.connect(self.db) as db:
            o = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
            r = db.execute("SELECT coalesce(max(seq), 0) FROM registro").fetchone()[0]
        return o, r

    def outbox_since(self, mark):
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(
                "SELECT id, message_id, identificativo, tipo, rcpt, message FROM outbox "
                "WHERE id > ? ORDER BY id", (mark[0],))]

    def registro_since(self, mark):
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(
                "SELECT * FROM registro WHERE seq > ? ORDER BY seq", (mark[1],))]


def maildir_messages(root, local):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(root, local, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in os.listdir(d)]
    res = []
    out.sort(key=os.path.basename)    # names begin with the time of delivery
    for p in out:
        with open(p, "rb") as f:
            res.append(f.read())
    return res


# ------------------------------------------------------------------ receipts

class ReceiptChecks:
    """Assertions on a receipt taken from the outbox (mixin for TestCase)."""

    def check_signed(self, raw, name):
        path = os.path.join(WORK, "receipt-%s.eml" % name)
        with open(path, "wb") as f:
            f.write(raw)
        r = subprocess.run(["openssl", "smime", "-verify", "-in", path, "-CAfile", pki.trust(),
                            "-purpose", "any", "-out", os.devnull],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(r.returncode, 0, "openssl smime -verify: %s" % r.stdout.decode())
        if os.path.exists(PECVERIFY):
            r = subprocess.run([PECVERIFY, "--json", "--trust", pki.trust(), "--index",
                                pki.index(), path], stdout=subprocess.PIPE)
            v = json.loads(r.stdout.decode())[0]
            self.assertTrue(v.get("valid"), v)
            self.assertEqual(v.get("kind"), "notice")
        return path

    def check_daticert(self, raw, name):
        xml = named_part(raw, "daticert.xml")
        self.assertIsNotNone(xml, "no daticert.xml")
        if DTD and shutil.which("xmllint"):
            path = os.path.join(WORK, "daticert-%s.xml" % name)
            with open(path, "wb") as f:
                f.write(xml)
            r = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(r.returncode, 0, "xmllint: %s" % r.stdout.decode())
        return ET.fromstring(xml)

    def check_receipt(self, row, busta, rcpt, ricevuta=None, errore=None, esteso=None):
        """A receipt row about BUSTA for RCPT: consegna of type RICEVUTA, or mancata
        consegna with ERRORE and an errore-esteso starting with ESTESO."""
        raw = row["message"]
        name = "%s-%s-%d" % (rcpt.split("@")[0], ricevuta or errore, row["id"])
        self.assertEqual(row["rcpt"], SENDER)
        self.assertEqual(row["identificativo"], identificativo_of(busta))
        h = header_of(raw)
        self.assertEqual(h["From"], SERVICE_B)
        self.assertEqual(h["To"], SENDER)
        self.assertEqual(h["Message-ID"], "<%s>" % row["message_id"])
        self.check_signed(raw, name)
        root = self.check_daticert(raw, name)
        self.assertEqual(root.findtext("dati/identificativo"), identificativo_of(busta))
        self.assertEqual(root.findtext("dati/consegna"), rcpt)
        self.assertEqual(root.findtext("dati/gestore-emittente"), GESTORE_B)
        self.assertEqual(root.findtext("intestazione/mittente"), SENDER)
        if ricevuta:
            self.assertEqual(row["tipo"], "avvenuta-consegna")
            self.assertEqual(h["X-Ricevuta"], "avvenuta-consegna")
            self.assertEqual(root.get("tipo"), "avvenuta-consegna")
            self.assertEqual(root.find("dati/ricevuta").get("tipo"), ricevuta)
            self.assertTrue(h["Subject"].startswith("CONSEGNA: "), h["Subject"])
            pc = named_part(raw, "postacert.eml")
            if ricevuta == "completa":
                self.assertEqual(pc, named_part(busta, "postacert.eml"))
            elif ricevuta == "sintetica":
                self.assertIsNone(pc)
        else:
            self.assertEqual(row["tipo"], "errore-consegna")
            self.assertEqual(h["X-Ricevuta"], "errore-consegna")
            self.assertEqual(root.get("tipo"), "errore-consegna")
            self.assertEqual(root.get("errore"), errore)
            self.assertTrue(root.findtext("dati/errore-esteso").startswith(esteso),
                            root.findtext("dati/errore-esteso"))
            self.assertIsNone(named_part(raw, "postacert.eml"))
        return raw


# ------------------------------------------------------------------ inputs

ORIGINAL = """From: Mario Rossi <mario.rossi@pec-a.test>
To: {to}
Cc: {cc}
Subject: Contratto e allegati
Date: Mon, 01 Jul 2024 10:00:00 +0200
Message-ID: <contratto-{tag}@client.pec-a.test>
X-TipoRicevuta: {tipo}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_b1"

--=_b1
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

In allegato il contratto. Cos\u00ec \u00e8.
.una riga che comincia con un punto
--=_b1
Content-Type: application/pdf; name="contratto.pdf"
Content-Disposition: attachment; filename="contratto.pdf"
Content-Transfer-Encoding: base64

{pdf}
--=_b1
Content-Type: message/rfc822
Content-Disposition: attachment; filename="inoltro.eml"

From: x@example.com
Subject: inoltrato

testo inoltrato
--=_b1--
"""


def make_busta(tag, tipo="completa", pdf_bytes=4000, to=LUIGI, cc=ANNA):
    pdf = base64.encodebytes(bytes(i % 251 for i in range(pdf_bytes))).decode().strip()
    text = ORIGINAL.format(tag=tag, tipo=tipo, pdf=pdf, to=to, cc=cc)
    path = os.path.join(WORK, "original-%s.eml" % tag)
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    r = subprocess.run([PECBUSTA, "-p", pki.PKI, path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("pecbusta: %s" % r.stderr.decode())
    return r.stdout


def generated(name):
    with open(os.path.join(GEN, name), "rb") as f:
        return f.read()


ORDINARY = (b"From: amico@example.com\r\nTo: luigi.bianchi@pec-b.test\r\n"
            b"Subject: ciao\r\nMessage-ID: <ordinary-1@example.com>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            b"caff\xc3\xa8 e cornetto\r\n.\r\n..\r\n. punto\r\nfine\r\n")


def prefix(rcpt, sender=SENDER):
    return ("Return-Path: <%s>\r\nDelivered-To: %s\r\n" % (sender, rcpt)).encode()


# ------------------------------------------------------------------ Maildir backend

class MaildirDelivery(unittest.TestCase, ReceiptChecks):
    @classmethod
    def setUpClass(cls):
        cls.root = os.path.join(WORK, "maildir", "mail")
        os.makedirs(cls.root)
        for user in ("luigi.bianchi", "anna.verdi"):
            os.makedirs(os.path.join(cls.root, user))
        cls.d = Peclmtpd("maildir", maildir_root=cls.root).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        assert rc == 0, "peclmtpd exit status %s:\n%s" % (rc, cls.d.log())
        assert not os.path.exists(cls.d.sock), "socket left behind"

    def count(self, local):
        return len(maildir_messages(self.root, local))

    def test_protocol(self):
        c = Lmtp(self.d.sock)
        try:
            self.assertEqual(c.greeting[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 500)
            code, lines = c.cmd("LHLO client.test")
            self.assertEqual(code, 250)
            features = [l[4:].split()[0] for l in lines[1:]]
            for f in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE"):
                self.assertIn(f, features)
            self.assertEqual(c.cmd("MAIL FROM:<a@x> SIZE=999999999999")[0], 552)
            self.assertEqual(c.cmd("MAIL FROM:<a@x> FOO=BAR")[0], 555)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % LUIGI)[0], 503)
            before = self.count("luigi.bianchi")
            mail, rcpt, data, final = c.transaction("amico@example.com", [LUIGI, ANNA, NESSUNO],
                                                    ORDINARY, " BODY=8BITMIME")
            self.assertEqual([r[0] for r in rcpt], [250, 250, 250])
            self.assertEqual(data[0], 354)
            self.assertEqual([f[0] for f in final], [250, 250, 550])
            self.assertIn("<%s>" % LUIGI, final[0][1][0])
            self.assertTrue(final[2][1][0].startswith("550 5.1.1 <%s>" % NESSUNO), final[2])
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("NOOP")[0], 250)
        finally:
            c.close()
        got = maildir_messages(self.root, "luigi.bianchi")[before]
        self.assertTrue(got.startswith(prefix(LUIGI, "amico@example.com")), got[:200])
        self.assert_wrapped(got, ORDINARY)
        self.assertFalse(os.path.exists(os.path.join(self.root, "nessuno")))

    def assert_wrapped(self, got, original):
        """GOT is a busta di anomalia we signed, ORIGINAL inside it byte for byte (8-bit
        bytes and dot-stuffed lines kept)."""
        self.assertEqual(header_of(got)["X-Trasporto"].strip(), "errore")
        self.assertTrue(header_of(got)["Subject"].startswith("ANOMALIA MESSAGGIO:"))
        self.assertEqual(named_part(got, "postacert.eml"), original)
        path = os.path.join(WORK, "wrapped.eml")
        with open(path, "wb") as f:
            f.write(got)
        r = subprocess.run(["openssl", "smime", "-verify", "-in", path, "-CAfile", pki.trust(),
                            "-purpose", "any", "-out", os.devnull],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(r.returncode, 0, "openssl smime -verify: %s" % r.stdout.decode())
        r = subprocess.run([PECVERIFY, "--json", "--trust", pki.trust(), "--index", pki.index(),
                            path], stdout=subprocess.PIPE)
        v = json.loads(r.stdout.decode())[0]
        self.assertTrue(v.get("valid"), v)
        self.assertEqual(v.get("kind"), "anomalia")

    def test_busta_to_and_cc(self):
        busta = generated("busta.eml")
        mark = self.d.marks()
        n = self.count("luigi.bianchi"), self.count("anna.verdi")
        replies = deliver(self.d.sock, [LUIGI, ANNA], busta)
        self.assertEqual([r[0] for r in replies], [250, 250])
        self.assertIn("consegna-completa", replies[0][1])
        self.assertIn("consegna-sintetica", replies[1][1])
        self.assertEqual(maildir_messages(self.root, "luigi.bianchi")[n[0]], prefix(LUIGI) + busta)
        self.assertEqual(maildir_messages(self.root, "anna.verdi")[n[1]], prefix(ANNA) + busta)
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 2)
        self.check_receipt(rows[0], busta, LUIGI, ricevuta="completa")
        self.check_receipt(rows[1], busta, ANNA, ricevuta="sintetica")
        recs = self.d.registro_since(mark)
        self.assertEqual([(r["tipo"], r["consegna"], r["tipo_ricevuta"], r["message_id"])
                          for r in recs],
                         [("avvenuta-consegna", LUIGI, "completa", rows[0]["message_id"]),
                          ("avvenuta-consegna", ANNA, "sintetica", rows[1]["message_id"])])
        self.assertTrue(all(r["identificativo"] == identificativo_of(busta) for r in recs))

    def test_breve(self):
        busta = make_busta("breve", "breve")
        mark = self.d.marks()
        replies = deliver(self.d.sock, [LUIGI, ANNA], busta)
        self.assertEqual([r[0] for r in replies], [250, 250])
        rows = self.d.outbox_since(mark)
        breve = self.check_receipt(rows[0], busta, LUIGI, ricevuta="breve")
        self.check_receipt(rows[1], busta, ANNA, ricevuta="sintetica")
        original = named_part(busta, "postacert.eml")
        hashed = {h.get_filename(): split_entity(p)[1] for h, p in leaves(original)
                  if h.get_filename()}
        got = named_part(breve, "postacert.eml")
        hashes = {h.get_filename(): split_entity(p)[1] for h, p in leaves(got)
                  if (h.get_filename() or "").endswith(".hash")}
        self.assertEqual(sorted(hashes), ["contratto.pdf.hash", "inoltro.eml.hash"])
        for name, body in hashed.items():
            self.assertEqual(hashes[name + ".hash"], hashlib.sha1(body).hexdigest().encode(),
                             name)
        self.assertEqual(split_entity(got)[0], split_entity(original)[0])

    def test_sintetica_asked(self):
        busta = make_busta("sintetica", "sintetica")
        mark = self.d.marks()
        self.assertEqual([r[0] for r in deliver(self.d.sock, [LUIGI], busta)], [250])
        self.check_receipt(self.d.outbox_since(mark)[0], busta, LUIGI, ricevuta="sintetica")

    def test_cc_and_ambiguous(self):
        # anna is in To and in Cc: ambiguous, so primary (completa); luigi only in Cc
        busta = make_busta("ambiguous", to=ANNA, cc="%s, %s" % (LUIGI.upper(), ANNA))
        mark = self.d.marks()
        self.assertEqual([r[0] for r in deliver(self.d.sock, [LUIGI, ANNA], busta)], [250, 250])
        rows = self.d.outbox_since(mark)
        self.check_receipt(rows[0], busta, LUIGI, ricevuta="sintetica")
        self.check_receipt(rows[1], busta, ANNA, ricevuta="completa")

    def test_missing_mailbox_and_foreign_domain(self):
        busta = make_busta("missing", to="%s, %s, luigi@pec-a.test" % (NESSUNO, LUIGI))
        mark = self.d.marks()
        replies = deliver(self.d.sock, [NESSUNO, LUIGI, "luigi@pec-a.test"], busta)
        # the MTA gets 250 for all three: the avviso di mancata consegna replaces a bounce
        self.assertEqual([r[0] for r in replies], [250, 250, 250])
        self.assertIn("mancata-consegna", replies[0][1])
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 3)
        self.check_receipt(rows[0], busta, NESSUNO, errore="no-dest",
                           esteso="5.1.1 - %s - " % GESTORE_B)
        self.check_receipt(rows[1], busta, LUIGI, ricevuta="completa")
        self.check_receipt(rows[2], busta, "luigi@pec-a.test", errore="no-dominio",
                           esteso="5.1.2 - %s - " % GESTORE_B)
        recs = self.d.registro_since(mark)
        self.assertEqual([(r["tipo"], r["errore"]) for r in recs],
                         [("errore-consegna", "no-dest"), ("avvenuta-consegna", ""),
                          ("errore-consegna", "no-dominio")])
        self.assertFalse(os.path.exists(os.path.join(self.root, "nessuno")))

    def test_no_receipt_for_notices_anomalies_ordinary_mail(self):
        mark = self.d.marks()
        for name in ("consegna-completa.eml", "mancata-consegna.eml", "accettazione.eml",
                     "anomalia.eml"):
            msg = generated(name)
            n = self.count("luigi.bianchi")
            replies = deliver(self.d.sock, [LUIGI], msg, sender=SERVICE_B)
            self.assertEqual(replies[0][0], 250, name)
            self.assertNotIn("queued", replies[0][1])
            self.assertEqual(maildir_messages(self.root, "luigi.bianchi")[n],
                             prefix(LUIGI, SERVICE_B) + msg, name)
        # a notice or ordinary mail to a missing mailbox bounces the ordinary way
        replies = deliver(self.d.sock, [NESSUNO], generated("accettazione.eml"),
                          sender=SERVICE_B)
        self.assertEqual(replies[0][0], 550)
        replies = deliver(self.d.sock, [NESSUNO], ORDINARY, sender="amico@example.com")
        self.assertEqual(replies[0][0], 550)
        self.assertEqual(self.d.outbox_since(mark), [])
        # each verified one is logged as put into the mailbox (evento deposito), nothing else
        recs = self.d.registro_since(mark)
        # (the ordinary mail, for a mailbox that does not exist: wrapped, never stored)
        self.assertEqual([(r["label"], r["evento"], r["consegna"]) for r in recs],
                         [("Consegna", "deposito", LUIGI), ("MancataConsegna", "deposito", LUIGI),
                          ("Accettazione", "deposito", LUIGI),
                          ("BustaAnomalia", "deposito", LUIGI),
                          ("BustaAnomalia", "emissione", "")])

    def test_tampered_busta(self):
        busta = generated("busta.eml")
        i = busta.index(b"Buongiorno")
        tampered = busta[:i] + b"Buonasera" + busta[i + len(b"Buongiorno"):]
        mark = self.d.marks()
        n = self.count("luigi.bianchi")
        replies = deliver(self.d.sock, [LUIGI, NESSUNO], tampered)
        self.assertEqual(replies[0][0], 250)
        self.assertNotIn("queued", replies[0][1])
        self.assertEqual(replies[1][0], 550)  # not PEC: an ordinary bounce
        got = maildir_messages(self.root, "luigi.bianchi")[n]
        self.assertTrue(got.startswith(prefix(LUIGI)))
        self.assert_wrapped(got, tampered)
        self.assertEqual(self.d.outbox_since(mark), [])
        self.assertIn("not a valid one", self.d.log())
        self.assertIn("wrapped in a busta di anomalia", self.d.log())
        recs = self.d.registro_since(mark)
        self.assertEqual([(r["label"], r["evento"]) for r in recs],
                         [("BustaAnomalia", "emissione"), ("BustaAnomalia", "deposito")])

    def deliver_locked(self, rcpts, msg, **kw):
        """deliver() while the store is locked past its busy timeout (reads still work)."""
        lock = sqlite3.connect(self.d.db, timeout=1, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            return deliver(self.d.sock, rcpts, msg, **kw)
        finally:
            lock.execute("ROLLBACK")
            lock.close()

    def test_temporary_failures(self):
        busta = make_busta("temp")
        mark = self.d.marks()
        # the Maildir volume is gone: defer, no receipt
        aside = self.root + ".aside"
        os.rename(self.root, aside)
        try:
            replies = deliver(self.d.sock, [LUIGI, ANNA], busta)
        finally:
            os.rename(aside, self.root)
        self.assertEqual([r[1][:9] for r in replies], ["451 4.3.0"] * 2)
        self.assertEqual(self.d.outbox_since(mark), [])

        # the store is locked past its busy timeout: the mailbox has the busta, the
        # receipt cannot be recorded, so the MTA is told to retry
        n = self.count("luigi.bianchi")
        replies = self.deliver_locked([LUIGI], busta)
        self.assertTrue(replies[0][1].startswith("451 4.3.0"), replies)
        self.assertEqual(self.count("luigi.bianchi"), n + 1)
        self.assertEqual(self.d.outbox_since(mark), [])
        # the retry finds the file it wrote (no second copy), and this time the
        # receipt is queued
        replies = deliver(self.d.sock, [LUIGI], busta)
        self.assertEqual(replies[0][0], 250)
        self.assertEqual(self.count("luigi.bianchi"), n + 1)
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 1)
        self.check_receipt(rows[0], busta, LUIGI, ricevuta="completa")

        # a notice likewise: in the mailbox, but its deposit cannot be recorded (the
        # database went away after it said the notice was new), so the MTA is told to
        # retry, and the retry records the deposit without a second copy
        notice = generated("presa-in-carico.eml")
        mark = self.d.marks()
        n = self.count("anna.verdi")
        replies = self.deliver_locked([ANNA], notice, sender=SERVICE_B)
        self.assertTrue(replies[0][1].startswith("451 4.3.0"), replies)
        self.assertEqual(self.count("anna.verdi"), n + 1)
        self.assertEqual(self.d.registro_since(mark), [])
        replies = deliver(self.d.sock, [ANNA], notice, sender=SERVICE_B)
        self.assertEqual(replies[0][0], 250, replies)
        self.assertEqual(self.count("anna.verdi"), n + 1)
        self.assertEqual([(r["evento"], r["consegna"]) for r in self.d.registro_since(mark)],
                         [("deposito", ANNA)])
        self.assertIn("found in the mailbox from an unrecorded delivery", self.d.log())

    def test_concurrent_sessions(self):
        busta = make_busta("concurrent")
        mark = self.d.marks()
        n = {u: self.count(u) for u in ("luigi.bianchi", "anna.verdi")}
        results, errors = [], []

        def one(k):
            try:
                msg = busta if k % 2 == 0 else ORDINARY
                results.append(deliver(self.d.sock, [LUIGI, ANNA], msg))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 12)
        self.assertTrue(all(code == 250 for r in results for code, _ in r), results)
        # six copies of one busta at once: stored once per mailbox, one receipt each;
        # the six ordinary messages all stored
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 2, rows)
        self.assertEqual(sum("delivered already" in t for r in results for _, t in r), 10)
        for u in ("luigi.bianchi", "anna.verdi"):
            self.assertEqual(self.count(u), n[u] + 7)

    def test_second_copy(self):
        busta = make_busta("twice")
        mark = self.d.marks()
        n = self.count("luigi.bianchi")
        self.assertEqual(deliver(self.d.sock, [LUIGI], busta)[0][0], 250)
        replies = deliver(self.d.sock, [LUIGI, ANNA], busta)
        self.assertEqual([r[0] for r in replies], [250, 250])
        self.assertIn("delivered already", replies[0][1])
        self.assertNotIn("queued", replies[0][1])
        self.assertIn("queued", replies[1][1])        # anna had not had it
        self.assertEqual(self.count("luigi.bianchi"), n + 1)
        self.assertEqual(len(self.d.outbox_since(mark)), 2)
        self.assertIn("status=duplicate", self.d.log())

        # stored but not recorded (a crash between the two), and the user's client
        # has moved it to cur/ meanwhile: the retry finds it there
        busta = make_busta("cur")
        mark = self.d.marks()
        self.assertEqual(deliver(self.d.sock, [LUIGI], busta)[0][0], 250)
        new = os.path.join(self.root, "luigi.bianchi", "new")
        name = max(os.listdir(new), key=lambda f: os.stat(os.path.join(new, f)).st_mtime_ns)
        os.rename(os.path.join(new, name),
                  os.path.join(self.root, "luigi.bianchi", "cur", name + ":2,S"))
        mid = re.search(rb"(?im)^Message-ID:\s*<([^>]+)>", busta).group(1).decode()
        with sqlite3.connect(self.d.db, timeout=10) as db:
            self.assertEqual(db.execute("DELETE FROM delivered WHERE message_id = ?",
                                        (mid,)).rowcount, 1)
        count = self.count("luigi.bianchi")
        replies = deliver(self.d.sock, [LUIGI], busta)
        self.assertEqual(replies[0][0], 250)
        self.assertEqual(self.count("luigi.bianchi"), count)

        # a notice that verifies, twice: once; ordinary mail and a tampered busta
        # (nobody vouches for their Message-ID), twice: twice
        for msg, times in ((generated("presa-in-carico.eml"), 1), (ORDINARY, 2),
                           (generated("busta.eml").replace(b"Buongiorno", b"Buonasera"), 2)):
            count = self.count("luigi.bianchi")
            for _ in range(2):
                self.assertEqual(deliver(self.d.sock, [LUIGI], msg, sender=SERVICE_B)[0][0], 250)
            self.assertEqual(self.count("luigi.bianchi"), count + times, msg[:300])

    def test_anomalia_cannot_claim_a_busta(self):
        """(anna's mailbox: the anomalia's body is pecgen's, which other tests deliver
        to luigi.)  A busta di anomalia keeps the Message-ID of what it wraps, which anyone
        chooses: one carrying the Message-ID of a busta not yet arrived must not make
        that busta "delivered already" when it comes (issue 23, case 2)."""
        busta = make_busta("claimed", to=ANNA, cc=LUIGI)
        mid = header_of(busta)["Message-ID"].strip()
        anomalia = re.sub(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + mid.encode(),
                          generated("anomalia.eml"), count=1)
        self.assertIn(b"Message-ID: " + mid.encode(), anomalia)
        mark = self.d.marks()
        n = self.count("anna.verdi")
        for _ in range(2):      # the same anomalia twice (a retry): stored once
            replies = deliver(self.d.sock, [ANNA], anomalia, sender=SERVICE_B)
            self.assertEqual(replies[0][0], 250)
            self.assertNotIn("queued", replies[0][1])
        self.assertEqual(self.count("anna.verdi"), n + 1)
        for _ in range(2):      # then the busta, twice: stored once, one receipt
            replies = deliver(self.d.sock, [ANNA], busta)
            self.assertEqual(replies[0][0], 250)
        self.assertEqual(self.count("anna.verdi"), n + 2)
        self.assertEqual(maildir_messages(self.root, "anna.verdi")[n + 1],
                         prefix(ANNA) + busta)
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 1)
        self.check_receipt(rows[0], busta, ANNA, ricevuta="completa")

    def test_unnamed_recipient(self):
        """A busta that reached the delivery point for an address it does not name
        (the reception point wraps those as an anomalia; this one came past it) earns
        that address no receipt, stored or not (issue 23, case 1)."""
        busta = make_busta("unnamed")          # names luigi (To) and anna (Cc)
        os.makedirs(os.path.join(self.root, "terzo"), exist_ok=True)
        mark = self.d.marks()
        replies = deliver(self.d.sock, ["terzo@pec-b.test", NESSUNO], busta)
        self.assertEqual([r[0] for r in replies], [250, 550], replies)
        for r in replies:
            self.assertNotIn("queued", r[1])
        self.assertEqual(self.d.outbox_since(mark), [])
        self.assertEqual(self.d.registro_since(mark), [])
        self.assertIn("does not name this recipient", self.d.log())

    def test_large_busta(self):
        busta = make_busta("large", pdf_bytes=3 * 1024 * 1024)
        mark = self.d.marks()
        n = self.count("luigi.bianchi")
        replies = deliver(self.d.sock, [LUIGI], busta)
        self.assertEqual(replies[0][0], 250)
        self.assertEqual(maildir_messages(self.root, "luigi.bianchi")[n], prefix(LUIGI) + busta)
        self.check_receipt(self.d.outbox_since(mark)[0], busta, LUIGI, ricevuta="completa")


# ------------------------------------------------------------------ Dovecot backend

class DovecotDelivery(unittest.TestCase, ReceiptChecks):
    @classmethod
    def setUpClass(cls):
        if not have_dovecot(lmtp=True):
            raise unittest.SkipTest("Dovecot LMTP is not installed (contrib/deps.sh test)")
        cls.dc = Dovecot(WORK, {LUIGI: "x", ANNA: "x", "piena@pec-b.test": "x"}, lmtp=True,
                         quotas={"piena@pec-b.test": "1K"})
        cls.dc.start()
        cls.d = Peclmtpd("dovecot-dp", mailbox_backend="lmtp",
                         mailbox_lmtp="unix:" + cls.dc.lmtp_socket).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        cls.dc.stop()
        assert rc == 0, cls.d.log()

    def test_busta_through_dovecot(self):
        busta = make_busta("dovecot", to="%s, %s, piena@pec-b.test" % (LUIGI, NESSUNO))
        mark = self.d.marks()
        replies = deliver(self.d.sock, [LUIGI, ANNA, NESSUNO, "piena@pec-b.test"], busta)
        self.assertEqual([r[0] for r in replies], [250] * 4, replies)
        for who in (LUIGI, ANNA):
            msgs = self.dc.messages(who)
            self.assertEqual(len(msgs), 1, self.dc.log())
            # Dovecot adds its trace fields on top and stores LF line ends
            self.assertTrue(msgs[0].endswith(busta.replace(b"\r\n", b"\n")))
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 4)
        self.check_receipt(rows[0], busta, LUIGI, ricevuta="completa")
        self.check_receipt(rows[1], busta, ANNA, ricevuta="sintetica")
        self.check_receipt(rows[2], busta, NESSUNO, errore="no-dest",
                           esteso="5.1.1 - %s - indirizzo non valido" % GESTORE_B)
        self.check_receipt(rows[3], busta, "piena@pec-b.test", errore="altro",
                           esteso="5.2.2 - %s - casella piena" % GESTORE_B)
        # the same busta again: Dovecot does not get it twice, nobody gets a receipt
        replies = deliver(self.d.sock, [LUIGI, ANNA], busta)
        self.assertEqual([r[0] for r in replies], [250, 250], replies)
        self.assertIn("delivered already", replies[0][1])
        for who in (LUIGI, ANNA):
            self.assertEqual(len(self.dc.messages(who)), 1)
        self.assertEqual(len(self.d.outbox_since(mark)), 4)

    def test_dovecot_down(self):
        down = Peclmtpd("dovecot-down", mailbox_backend="lmtp",
                        mailbox_lmtp="unix:" + os.path.join(WORK, "nobody-listens.sock")).start()
        try:
            mark = down.marks()
            replies = deliver(down.sock, [LUIGI], make_busta("down"))
            self.assertTrue(replies[0][1].startswith("451 4.4.1"), replies)
            self.assertEqual(down.outbox_since(mark), [])
        finally:
            self.assertEqual(down.stop(), 0)


# ------------------------------------------------------------------ Postfix in front

class ThroughPostfix(unittest.TestCase, ReceiptChecks):
    @classmethod
    def setUpClass(cls):
        if not postfix.have_postfix():
            raise unittest.SkipTest("Postfix is not installed, or not root")
        cls.root = os.path.join(WORK, "pf-dp", "mail")
        os.makedirs(cls.root)
        os.makedirs(os.path.join(cls.root, "luigi.bianchi"))
        cls.d = Peclmtpd("pf-dp", maildir_root=cls.root).start()
        cls.pf = postfix.Postfix(WORK, "b", ip=postfix.loopback_ip(2), mydomain="pec-b.test",
                                 virtual_domains=["pec-b.test"], local_maildir=False,
                                 extra_main={"virtual_transport": "lmtp:unix:" + cls.d.sock})
        cls.pf.start()

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        rc = cls.d.stop()
        assert rc == 0, cls.d.log()

    def test_postfix_delivers_through_lmtp(self):
        busta = make_busta("postfix", to="%s, %s" % (LUIGI, NESSUNO))
        mark = self.d.marks()
        code, text = self.pf.send(SENDER, [LUIGI, NESSUNO], busta)
        self.assertEqual(code, 250, text)
        deadline = time.monotonic() + 30
        while len(self.d.outbox_since(mark)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = self.d.outbox_since(mark)
        self.assertEqual(len(rows), 2, self.pf.log_tail() + self.d.log())
        by_rcpt = {ET.fromstring(named_part(r["message"], "daticert.xml"))
                   .findtext("dati/consegna"): r for r in rows}
        self.check_receipt(by_rcpt[LUIGI], busta, LUIGI, ricevuta="completa")
        self.check_receipt(by_rcpt[NESSUNO], busta, NESSUNO, errore="no-dest",
                           esteso="5.1.1 - ")
        stored = maildir_messages(self.root, "luigi.bianchi")
        self.assertEqual(len(stored), 1)
        # Postfix drops Return-Path (message_drop_headers) and adds its Received
        sent = re.sub(rb"^Return-Path: [^\r\n]*\r\n", b"", busta)
        self.assertTrue(stored[0].endswith(sent))
        self.pf.wait_queue_empty()
        log = self.pf.log()
        self.assertEqual(len(re.findall(r"relay=.*status=sent \(250 2\.0\.0", log)), 2, log)
        self.assertNotIn("status=bounced", log)
        # the queue id Postfix gave the message names it in our log too
        qid = re.search(r"postfix-b/pec-mx/smtpd\[\d+\]: ([0-9A-Za-z]+): client=", log).group(1)
        self.assertIn("%s: to=<%s>, status=delivered" % (qid, LUIGI), self.d.log())


def setUpModule():
    global WORK, GEN, DTD
    for prog in (PECLMTPD, PECBUSTA, PECGEN):
        if not os.path.exists(prog):
            env.skip("%s is not built" % prog)
    if shutil.which("openssl") is None:
        env.skip("openssl is not installed")
    pki.ensure()
    WORK = tempfile.mkdtemp(prefix="pec-lmtp.")
    os.chmod(WORK, 0o755)
    GEN = os.path.join(WORK, "gen")
    subprocess.run([PECGEN, "-p", pki.PKI, GEN], check=True, stdout=subprocess.DEVNULL)
    dtd = os.path.join(env.SHARED_DIR, "spec", "daticert.dtd")
    DTD = dtd if os.path.exists(dtd) else None
    if DTD is None:
        print("NOTE: %s is absent: DTD validation of daticert.xml skipped" % dtd)


def left_running():
    """What still runs under WORK, but the harness's reaper (it logs there, and
    leaves when this process does)."""
    left = {}
    for pid in postfix.leftovers(WORK):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "--reaper" not in cmd:
            left[pid] = cmd
    return left


def tearDownModule():
    deadline = time.monotonic() + 10
    while left_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = left_running()
    if left:
        raise AssertionError("processes left running under %s: %s" % (WORK, left))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
