"""The private-Postfix harness (pectest.postfix) itself: two providers relaying to each
other on loopback, the generated configuration, and nothing left running afterwards."""
import email
import email.policy
import os
import re
import socket
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pectest import env  # noqa: E402
from pectest import postfix as pf  # noqa: E402
from pectest import stub  # noqa: E402

WORK = None

MESSAGE = b"""\
From: Mario Rossi <mario.rossi@pec-a.test>
To: Luigi Bianchi <user@pec-b.test>
Subject: =?UTF-8?Q?prova_harness_=C3=A0?=
Date: Tue, 25 Nov 2025 10:00:00 +0100
Message-ID: <harness-1@client.pec-a.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="xx"
X-Test-Header: folded
 continuation line	with tab

--xx
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Riga uno.
.Riga che inizia con un punto.
..due punti.
Accentate: =C3=A0=C3=A8
--xx
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="a.bin"

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
--xx--
"""

ADDED = ("received", "return-path", "delivered-to")


def strip_added(raw):
    """The delivered message minus the header lines Postfix and the delivery agent add
    (Received from each hop, Return-Path, Delivered-To), each with its continuation
    lines.  Returns (stripped bytes, list of removed field names)."""
    head, sep, body = raw.partition(b"\n\n")
    kept, removed, skipping = [], [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].decode("ascii", "replace").strip().lower()
        skipping = name in ADDED
        if skipping:
            removed.append(name)
        else:
            kept.append(line)
    return b"\n".join(kept) + sep + body, removed


class FakeMilter(stub.Server):
    """The smallest milter that can stand in for pecmilter here: it negotiates protocol
    version 6, accepts everything and records, per connection, the macros it was sent.
    Only to prove what the generated Postfix configuration hands a milter."""

    def __init__(self, path):
        super().__init__(socket.AF_UNIX, path)
        self.path = path
        self.connections = []          # one dict of macros per SMTP connection
        os.chmod(path, 0o666)          # smtpd runs as postfix
        self.listen()

    @staticmethod
    def _recv(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self, conn):
        macros = {}
        self.connections.append(macros)
        send = lambda cmd, data=b"": conn.sendall(struct.pack("!I", len(data) + 1) + cmd + data)
        try:
            while True:
                n = struct.unpack("!I", self._recv(conn, 4))[0]
                pkt = self._recv(conn, n)
                cmd, data = pkt[:1], pkt[1:]
                if cmd == b"O":
                    send(b"O", struct.pack("!III", 6, 0, 0))
                elif cmd == b"D":
                    words = data[1:].split(b"\0")
                    for k, v in zip(words[0::2], words[1::2]):
                        macros[k.decode()] = v.decode()
                elif cmd in (b"A",):
                    pass
                elif cmd in (b"Q",):
                    return
                elif cmd == b"K":
                    macros = {}
                    self.connections.append(macros)
                else:
                    send(b"c")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def procs_of(*instances):
    return set().union(*(i.processes() for i in instances))


class HarnessTest(unittest.TestCase):

    def test_relay_a_to_b(self):
        """A (pec-a.test, 127.0.0.11) relays through transport_maps to B (pec-b.test,
        127.0.0.12), which delivers into its Maildir: headers and body byte-identical
        except the added Received, Return-Path and Delivered-To; then both stop and
        none of their processes remain."""
        b = pf.Postfix(WORK, "b", ip="127.0.0.12", mydomain="pec-b.test",
                       virtual_domains=["pec-b.test"])
        a = pf.Postfix(WORK, "a", ip="127.0.0.11", mydomain="pec-a.test",
                       virtual_domains=["pec-a.test"],
                       transports={"pec-b.test": "smtp:[127.0.0.12]:%d" % b.port})
        t0 = time.monotonic()
        with b, a:
            t1 = time.monotonic()
            print("\n  start A+B: %.2fs (A %s:%d, B %s:%d)" % (t1 - t0, a.ip, a.port, b.ip, b.port))
            self.assertTrue(a.processes() and b.processes())
            self.assertFalse(a.processes() & b.processes())
            code, text = a.send("mario.rossi@pec-a.test", ["user@pec-b.test"], MESSAGE)
            self.assertEqual(code, 250, text)
            got = b.wait_for_mail("user@pec-b.test", timeout=30)
            t2 = time.monotonic()
            print("  A -> B delivery: %.2fs" % (t2 - t1))
            self.assertEqual(len(got), 1)
            a.wait_queue_empty(10)
            b.wait_queue_empty(10)
            self.assertTrue(a.queue_empty() and b.queue_empty())
            self.assertEqual(a.messages("user@pec-b.test"), [])   # A delivered nothing
            alog, blog = a.log(), b.log()
        t3 = time.monotonic()
        print("  stop A+B: %.2fs" % (t3 - t2))

        # nothing of either instance is left: by the harness' own notion, and by an
        # independent scan of /proc for anything that refers to their directories
        self.assertEqual(procs_of(a, b), set())
        self.assertEqual(pf.leftovers(a.root) | pf.leftovers(b.root), set())

        delivered = got[0]
        stripped, removed = strip_added(delivered)
        self.assertEqual(sorted(removed),
                         ["delivered-to", "received", "received", "return-path"])
        self.assertEqual(stripped, MESSAGE)     # byte for byte, headers and body

        # and as the email module sees it
        orig = email.message_from_bytes(MESSAGE, policy=email.policy.compat32)
        msg = email.message_from_bytes(delivered, policy=email.policy.compat32)
        self.assertEqual(msg["Return-Path"], "<mario.rossi@pec-a.test>")
        self.assertEqual(msg["Delivered-To"], "user@pec-b.test")
        self.assertEqual(len(msg.get_all("Received")), 2)
        self.assertIn("by mx.pec-b.test", msg.get_all("Received")[0])
        self.assertIn("by mx.pec-a.test", msg.get_all("Received")[1])
        self.assertEqual([(k, v) for k, v in msg.items() if k.lower() not in ADDED],
                         list(orig.items()))
        self.assertEqual(msg.get_payload(1).get_payload(decode=True), bytes(range(32)))
        self.assertEqual(msg.get_payload(0).get_payload(decode=True),
                         orig.get_payload(0).get_payload(decode=True))

        # A's smtp client left from A's own address and went to B's listener
        self.assertRegex(alog, r"to=<user@pec-b\.test>, relay=127\.0\.0\.12\[127\.0\.0\.12\]:%d"
                         r".*status=sent" % b.port)
        self.assertRegex(blog, r"client=unknown\[127\.0\.0\.11\]")
        self.assertRegex(blog, r"relay=pecmaildir.*status=sent")

    def test_generated_config(self):
        """main.cf/master.cf as other tests rely on them; the listeners' -o overrides;
        a missing milter tempfails (milter_default_action); XCLIENT LOGIN on the
        submission listener; the reinjection listener has no milter."""
        sock = os.path.join(WORK, "no-such-milter.sock")
        c = pf.Postfix(WORK, "c", ip="127.0.0.13", mydomain="pec-c.test",
                       virtual_domains=["pec-c.test"], milter="unix:" + sock,
                       submission_port=pf.free_port("127.0.0.13"),
                       reinject_port=pf.free_port("127.0.0.13"),
                       transports={"elsewhere.test": "lmtp:unix:/nonexistent/lmtp"},
                       extra_main={"delay_warning_time": "1h"},
                       extra_master="# extra line from the test")
        with c:
            out = c.postconf("-n")
            self.assertNotRegex(out, r"(?m)^postconf: warning")
            self.assertEqual(c.check_output.strip(), "")          # postfix check is quiet
            n = dict(l.split(" = ", 1) for l in out.splitlines() if " = " in l)
            for k, v in {"inet_protocols": "ipv4", "mydestination": "", "relayhost": "",
                         "compatibility_level": "3.6", "myhostname": "mx.pec-c.test",
                         "smtputf8_enable": "no", "biff": "no",
                         "smtp_dns_support_level": "disabled",
                         "mynetworks": "127.0.0.0/8", "milter_default_action": "tempfail",
                         "milter_protocol": "6", "queue_directory": c.queue,
                         "data_directory": c.data, "maillog_file": c.maillog,
                         "delay_warning_time": "1h",
                         "transport_maps": "texthash:" + os.path.join(c.etc, "transport"),
                         }.items():
                self.assertEqual(n.get(k, ""), v, k)
            self.assertEqual(os.stat(c.data).st_uid, pf.pwd.getpwnam("postfix").pw_uid)

            P = c.postconf("-P")
            svc = lambda port: "%s:%d/inet/" % (c.ip, port)
            for line in [svc(c.port) + "smtpd_milters = unix:" + sock,
                         svc(c.port) + "milter_macro_daemon_name = pec-mx",
                         svc(c.submission_port) + "milter_macro_daemon_name = pec-submission",
                         svc(c.submission_port) + "smtpd_authorized_xclient_hosts = 127.0.0.0/8",
                         svc(c.submission_port) + "smtpd_milters =",
                         svc(c.reinject_port) + "smtpd_milters =",
                         svc(c.reinject_port) + "milter_macro_daemon_name = pec-reinject"]:
                self.assertIn(line, P.splitlines())
            M = c.postconf("-M")
            self.assertNotRegex(M, r"(?m)^\S+\s+\S+\s+\S+\s+\S+\s+y\s")   # no chroot
            self.assertIn("extra line from the test", open(os.path.join(c.etc, "master.cf")).read())

            msg = b"From: a@pec-c.test\nTo: u@pec-c.test\nSubject: t\n\nbody\n"
            # port-25 role: its milter is absent, so the smtpd must tempfail
            code, text = c.send("a@pec-c.test", ["u@pec-c.test"], msg)
            self.assertEqual(code // 100, 4, text)
            self.assertIn("4.7.1", text)
            # submission role, claiming a SASL login through XCLIENT
            code, text = c.send("a@pec-c.test", ["u@pec-c.test"], msg,
                                port=c.submission_port, xclient_login="alice")
            self.assertEqual(code, 250, text)
            # reinjection: no milter at all
            code, text = c.send("a@pec-c.test", ["R2@pec-c.test"], msg, port=c.reinject_port)
            self.assertEqual(code, 250, text)
            first = c.wait_for_mail("u@pec-c.test")
            self.assertEqual(len(first), 1)
            self.assertIn(b"(Authenticated sender: alice)", first[0])
            # local parts are folded to lower case, like virtual(8) does
            self.assertEqual(len(c.wait_for_mail("r2@pec-c.test")), 1)
            self.assertTrue(os.path.isdir(c.maildir("r2@pec-c.test") + "new"))
            log = c.log()
            self.assertIn("postfix-c/pec-submission/smtpd", log)
            self.assertIn("sasl_method=XCLIENT, sasl_username=alice", log)
            self.assertRegex(log, r"postfix-c/pec-mx/smtpd\[\d+\]: warning: connect to Milter service unix:")
            # unknown domain: relay denied? no: mynetworks may relay; unknown user of a
            # virtual domain is refused
            code, text = c.send("a@pec-c.test", ["no/slash@pec-c.test"], msg, port=c.reinject_port)
            self.assertEqual(code, 550, text)
        self.assertEqual(c.processes(), set())
        self.assertEqual(pf.leftovers(c.root), set())

    def test_milter_macros(self):
        """Each listener hands its milter the right {daemon_name}; the submission
        listener's XCLIENT LOGIN= reaches the milter as {auth_authen}; the reinjection
        listener calls no milter."""
        mx = FakeMilter(os.path.join(WORK, "mx.sock"))
        sub = FakeMilter(os.path.join(WORK, "sub.sock"))
        d = pf.Postfix(WORK, "d", ip="127.0.0.14", mydomain="pec-d.test",
                       virtual_domains=["pec-d.test"], milter="unix:" + mx.path,
                       submission_port=pf.free_port("127.0.0.14"),
                       submission_milter="unix:" + sub.path,
                       reinject_port=pf.free_port("127.0.0.14"))
        msg = b"From: a@pec-d.test\nTo: u@pec-d.test\nSubject: t\n\nbody\n"
        try:
            with d:
                self.assertEqual(d.send("a@pec-d.test", ["u@pec-d.test"], msg)[0], 250)
                self.assertEqual(d.send("a@pec-d.test", ["u@pec-d.test"], msg,
                                        port=d.submission_port, xclient_login="alice")[0], 250)
                n_mx, n_sub = len(mx.connections), len(sub.connections)
                self.assertEqual(d.send("a@pec-d.test", ["u@pec-d.test"], msg,
                                        port=d.reinject_port)[0], 250)
                self.assertEqual(len(d.wait_for_mail("u@pec-d.test", 3)), 3)
                self.assertEqual((len(mx.connections), len(sub.connections)), (n_mx, n_sub))
        finally:
            mx.stop()
            sub.stop()
        seen_mx = [m for m in mx.connections if "i" in m]
        seen_sub = [m for m in sub.connections if "i" in m]
        self.assertEqual(len(seen_mx), 1, mx.connections)
        self.assertEqual(len(seen_sub), 1, sub.connections)
        self.assertEqual(seen_mx[0].get("{daemon_name}"), "pec-mx")
        self.assertNotIn("{auth_authen}", seen_mx[0])
        self.assertEqual(seen_sub[0].get("{daemon_name}"), "pec-submission")
        self.assertEqual(seen_sub[0].get("{auth_authen}"), "alice")
        self.assertEqual(seen_mx[0].get("j"), "mx.pec-d.test")
        self.assertEqual(pf.leftovers(d.root), set())

    def test_start_failure_is_reported(self):
        """A listener that cannot bind: start() raises with Postfix's own words (which
        Postfix only writes to a terminal) and leaves nothing running."""
        busy = socket.socket()
        busy.bind(("127.0.0.15", 0))
        busy.listen(1)
        e = pf.Postfix(WORK, "e", ip="127.0.0.15", port=busy.getsockname()[1],
                       mydomain="pec-e.test")
        try:
            with self.assertRaises(pf.PostfixError) as cm:
                e.start()
        finally:
            busy.close()
        self.assertIn("Address already in use", str(cm.exception))
        self.assertEqual(e.processes(), set())
        self.assertEqual(pf.leftovers(e.root), set())
        # and the same object starts once the port is free, restarts, reloads
        t0 = time.monotonic()
        with e:
            t1 = time.monotonic()
            e.stop()
            e.start()
            t2 = time.monotonic()
            e.extra_main["delay_warning_time"] = "2h"
            e.reload()
            self.assertIn("delay_warning_time = 2h", e.postconf("-n"))
            self.assertIn("reload", e.log())
        print("\n  start %.2fs, stop+start %.2fs" % (t1 - t0, t2 - t1))
        self.assertEqual(pf.leftovers(e.root), set())


def main():
    global WORK
    if not pf.have_postfix():
        env.skip("needs root and Postfix (postfix, /usr/lib/postfix/sbin/master)")
    WORK = tempfile.mkdtemp(prefix="pectest-postfix-")
    env.run_suite(HarnessTest, WORK)


if __name__ == "__main__":
    main()
