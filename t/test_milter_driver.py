"""Self-test of the project's milter driver (t/pectest/milter.py).

Needs no pecmilter: a small fake milter runs in a thread inside this test, on a
unix socket in a temporary directory, answers from a script and records every
packet the driver sent.  Run: PYTHONPATH=t python3 t/test_milter_driver.py
"""
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pectest import milter as M  # noqa: E402
from pectest.milter import EomResult, Milter, MilterError, Reply, parse_message, render_message  # noqa: E402


def pkt(cmd, data=b""):
    """A framed packet."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*strings):
    """NUL-terminated strings."""
    return b"".join((s.encode() if isinstance(s, str) else s) + b"\0" for s in strings)


CLOSE = object()          # script result: close the connection now


class FakeMilter:
    """The milter side, scripted.

    script(cmd, data) returns a list of items to send: bytes (written as is),
    CLOSE, or ('sleep', seconds).  Every packet received is recorded in
    .received as (cmd str, data bytes).
    """

    def __init__(self, script, path=None, tcp=False):
        self.script = script
        self.received = []
        self.errors = []
        if tcp:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(("127.0.0.1", 0))
            self.spec = "inet:%d@127.0.0.1" % self.lsock.getsockname()[1]
        else:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(path)
            self.spec = "unix:" + path
        self.lsock.listen(4)
        self.lsock.settimeout(10)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _recv_exact(self, conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _run(self):
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            while True:
                head = self._recv_exact(conn, 4)
                if head is None:
                    return
                (length,) = struct.unpack(">I", head)
                body = self._recv_exact(conn, length)
                if body is None:
                    return
                cmd, data = body[:1].decode(), body[1:]
                self.received.append((cmd, data))
                for item in self.script(cmd, data) or []:
                    if item is CLOSE:
                        conn.close()
                        return
                    if isinstance(item, tuple) and item[0] == "sleep":
                        time.sleep(item[1])
                        continue
                    conn.sendall(item)
                if cmd == "Q":
                    return
        except OSError as e:
            self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def done(self):
        """Wait until the connection ended (after SMFIC_QUIT), so that .received
        is complete."""
        self.thread.join(5)
        return self

    def commands(self):
        return [c for c, _ in self.received]

    def stop(self):
        self.lsock.close()
        self.thread.join(5)


def optneg_reply(version=6, actions=0x1FF, protocol=0, symlist=()):
    data = struct.pack(">III", version, actions, protocol)
    for stage, names in symlist:
        data += struct.pack(">I", stage) + z(names)
    return pkt("O", data)


def libmilter_like(protocol=0, actions=0x1FF, symlist=(), eom=None, replies=None):
    """A script that behaves like libmilter: no reply to D/A/Q or NR stages,
    'c' elsewhere unless replies[cmd] says otherwise, eom() list at 'E'."""
    nr = {"C": M.SMFIP_NR_CONN, "H": M.SMFIP_NR_HELO, "M": M.SMFIP_NR_MAIL,
          "R": M.SMFIP_NR_RCPT, "T": M.SMFIP_NR_DATA, "L": M.SMFIP_NR_HDR,
          "N": M.SMFIP_NR_EOH, "B": M.SMFIP_NR_BODY, "U": M.SMFIP_NR_UNKN}
    replies = replies or {}

    def script(cmd, data):
        if cmd == "O":
            return [optneg_reply(6, actions, protocol, symlist)]
        if cmd in ("D", "A", "Q", "K"):
            return []
        if cmd == "E":
            return eom if eom is not None else [pkt("c")]
        if cmd in replies:
            r = replies[cmd]
            return r(data) if callable(r) else r
        if protocol & nr.get(cmd, 0):
            return []
        return [pkt("c")]
    return script


MESSAGE = (b"Received: from client.test\r\n"
           b"\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0100\r\n"
           b"From: Alice <alice@pec.test>\r\n"
           b"To: bob@pec.test\r\n"
           b"Subject:  two spaces\r\n"
           b"X-Tab:\tvalue\r\n"
           b"X-Empty:\r\n"
           b"subject: second\r\n"
           b"\r\n"
           b"line 1\r\n"
           b"line 2\n"
           b"\r\n"
           b"last line without newline")

EOM_SCRIPT = [
    pkt("e", z("<pec@pec.test>", "AUTH=<>")),
    pkt("2", z("<new@pec.test>", "NOTIFY=NEVER")),
    pkt("m", struct.pack(">I", 1) + z("Subject", "changed")),
    pkt("i", struct.pack(">I", 0) + z("X-Trasporto", "posta-certificata")),
    pkt("b", b"new body part one\r\n"),
    pkt("b", b"part two\r\n"),
    pkt("q", z("held for review")),
    pkt("y", z("553 5.7.1 test")),
]

EOM_ACTIONS = [
    ("chgfrom", "<pec@pec.test>", "AUTH=<>"),
    ("addrcpt_par", "<new@pec.test>", "NOTIFY=NEVER"),
    ("chgheader", 1, "Subject", "changed"),
    ("insheader", 0, "X-Trasporto", "posta-certificata"),
    ("replbody", b"new body part one\r\n"),
    ("replbody", b"part two\r\n"),
    ("quarantine", "held for review"),
]


class DriverTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="milterdrv.")
        self.path = os.path.join(self.dir, "m.sock")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, script, **kw):
        s = FakeMilter(script, path=None if kw.get("tcp") else self.path, **kw)
        self.servers.append(s)
        return s

    # -- negotiation --------------------------------------------------------

    def test_negotiate_symlist(self):
        srv = self.serve(libmilter_like(
            protocol=M.SMFIP_NR_HDR | M.SMFIP_NOUNKNOWN | M.SMFIP_SKIP,
            actions=M.SMFIF_ADDHDRS | M.SMFIF_CHGHDRS | M.SMFIF_CHGFROM | M.SMFIF_ADDRCPT_PAR,
            symlist=[(0, "j {daemon_name} {client_addr}"), (2, "{auth_authen} i"), (5, "i")]))
        with Milter(srv.spec, timeout=5) as m:
            neg = m.negotiate()
        srv.done()
        self.assertEqual(neg["version"], 6)
        self.assertEqual(neg["actions"], M.SMFIF_ADDHDRS | M.SMFIF_CHGHDRS
                         | M.SMFIF_CHGFROM | M.SMFIF_ADDRCPT_PAR)
        self.assertEqual(neg["protocol"], M.SMFIP_NR_HDR | M.SMFIP_NOUNKNOWN | M.SMFIP_SKIP)
        self.assertEqual(dict(neg["macros"]), {0: ["j", "{daemon_name}", "{client_addr}"],
                                              2: ["{auth_authen}", "i"], 5: ["i"]})
        self.assertEqual(neg["macros"]["C"], ["j", "{daemon_name}", "{client_addr}"])
        self.assertEqual(neg["macros"]["envfrom"], ["{auth_authen}", "i"])
        self.assertNotIn("R", neg["macros"])
        # what the driver offered: version 6, every action, Postfix's protocol mask
        cmd, data = srv.received[0]
        self.assertEqual(cmd, "O")
        self.assertEqual(struct.unpack(">III", data), (6, 0x1FF, 0x1FFFFF))

    def test_negotiate_refusals(self):
        srv = self.serve(lambda c, d: [optneg_reply(7)])
        with self.assertRaisesRegex(MilterError, "version 7"):
            Milter(srv.spec, timeout=5).negotiate()

    def test_negotiate_truncated_symlist(self):
        srv = self.serve(lambda c, d: [pkt("O", struct.pack(">III", 6, 1, 0)
                                           + struct.pack(">I", 0) + b"j {x}")])
        with self.assertRaisesRegex(MilterError, "unterminated symbol list"):
            Milter(srv.spec, timeout=5).negotiate()

    # -- end of message -----------------------------------------------------

    def test_eom_requests_decoded_in_order(self):
        srv = self.serve(libmilter_like(eom=EOM_SCRIPT))
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(MESSAGE, "alice@pec.test", ["<bob@pec.test>"])
        self.assertIsInstance(res, EomResult)
        self.assertEqual(res.actions, EOM_ACTIONS)
        self.assertEqual(res.reply.code, "replycode")
        self.assertEqual(res.reply.text, "553 5.7.1 test")
        self.assertEqual(res.reply, "replycode")
        self.assertEqual(res.stage, "E")
        self.assertEqual(res.body(), b"new body part one\r\npart two\r\n")
        self.assertEqual(res.quarantine, "held for review")
        self.assertEqual(res.envelope("<alice@pec.test>", ["<bob@pec.test>"]),
                         ("<pec@pec.test>", ["<bob@pec.test>", "<new@pec.test>"]))

    def test_apply(self):
        res = EomResult(Reply("continue"), EOM_ACTIONS)
        headers, body = parse_message(MESSAGE)
        new_headers, new_body = res.apply(headers, body)
        self.assertEqual(new_headers, [
            ("X-Trasporto", "posta-certificata"),
            ("Received", "from client.test\n\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0100"),
            ("From", "Alice <alice@pec.test>"),
            ("To", "bob@pec.test"),
            ("Subject", "changed"),
            ("X-Tab", "\tvalue"),
            ("X-Empty", ""),
            ("subject", "second"),
        ])
        self.assertEqual(new_body, b"new body part one\r\npart two\r\n")

    def test_apply_postfix_rules(self):
        hdrs = [("Received", "r1"), ("Subject", "a"), ("X-A", "1"), ("subject", "b"), ("X-A", "2")]
        acts = [
            ("chgheader", 2, "SUBJECT", "B2"),     # second Subject, case-insensitive
            ("chgheader", 0, "X-A", ""),           # index 0 means 1: delete first X-A
            ("chgheader", 5, "X-A", ""),           # missing instance, delete: nothing
            ("chgheader", 3, "X-New", "added"),    # missing instance, change: append
            ("insheader", 99, "X-Last", "z"),      # past the end: append
            ("insheader", 1, "X-Second", "s"),
            ("addheader", "X-Add", "v\n\tfolded"),
            ("replbody", b"a\nb\r\nc"),            # re-terminated like Postfix
        ]
        new_h, new_b = EomResult(Reply("continue"), acts).apply(hdrs, b"old\r\n")
        self.assertEqual(new_h, [("Received", "r1"), ("X-Second", "s"), ("Subject", "a"),
                                 ("SUBJECT", "B2"), ("X-A", "2"), ("X-New", "added"),
                                 ("X-Last", "z"), ("X-Add", "v\n\tfolded")])
        self.assertEqual(new_b, b"a\r\nb\r\nc\r\n")
        # with the MTA's own Received first: chgheader never counts it
        acts = [("chgheader", 1, "Received", "theirs changed"), ("insheader", 0, "X-Top", "t")]
        new_h, _ = EomResult(Reply("continue"), acts).apply(
            [("Received", "ours"), ("Received", "theirs")], b"", mta_header=True)
        self.assertEqual(new_h, [("X-Top", "t"), ("Received", "ours"),
                                 ("Received", "theirs changed")])
        # no replbody: body untouched, None from body()
        res = EomResult(Reply("accept"), [("addheader", "X", "y")])
        self.assertIsNone(res.body())
        self.assertEqual(res.apply([], b"same\r\n"), ([("X", "y")], b"same\r\n"))
        self.assertEqual(render_message(*res.apply([("A", "1\n\t2")], b"b\r\n")),
                         b"A: 1\r\n\t2\r\nX: y\r\n\r\nb\r\n")

    def test_parse_message(self):
        headers, body = parse_message(MESSAGE)
        self.assertEqual(headers, [
            ("Received", "from client.test\n\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0100"),
            ("From", "Alice <alice@pec.test>"),
            ("To", "bob@pec.test"),
            ("Subject", " two spaces"),
            ("X-Tab", "\tvalue"),
            ("X-Empty", ""),
            ("subject", "second"),
        ])
        self.assertEqual(body, b"line 1\r\nline 2\r\n\r\nlast line without newline\r\n")
        h, b = parse_message("A: 1\nB : 2\nnot a header\nC: 3\n")
        self.assertEqual(h, [("A", "1"), ("B", "2")])
        self.assertEqual(b, b"not a header\r\nC: 3\r\n")
        self.assertEqual(parse_message(b"A: 1\r\n"), ([("A", "1")], b""))

    # -- what goes on the wire ------------------------------------------------

    def test_wire_format_and_macros(self):
        srv = self.serve(libmilter_like(symlist=[(0, "j {daemon_name}"), (2, "{mail_addr}")]))
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(MESSAGE, "<alice@pec.test>",
                                 ["bob@pec.test", ("<carol@pec.test>", "NOTIFY=NEVER")],
                                 macros={"M": {"{auth_authen}": "alice", "i": "QID"},
                                         "R": {"{rcpt_host}": "pec.test"}},
                                 connect_macros={"{daemon_name}": "submission",
                                                 "{client_addr}": "192.0.2.1"},
                                 helo="client.example")
        srv.done()
        self.assertEqual(res.reply, "continue")
        self.assertEqual(res.actions, [])
        rec = srv.received
        self.assertEqual(srv.commands(), ["O", "D", "C", "H", "D", "M", "D", "R", "D", "R",
                                          "D", "T"] + ["L"] * 7 + ["D", "N", "B", "D", "E", "Q"])
        # connect macros limited to the symbol list for stage 0
        self.assertEqual(rec[1], ("D", b"C" + z("j", "mx.pectest.invalid", "{daemon_name}", "submission")))
        self.assertEqual(rec[2], ("C", z("localhost") + b"4" + struct.pack(">H", 25) + z("127.0.0.1")))
        self.assertEqual(rec[3], ("H", z("client.example")))
        self.assertEqual(rec[4], ("D", b"M" + z("{mail_addr}", "alice@pec.test")))
        self.assertEqual(rec[5], ("M", z("<alice@pec.test>")))
        # no symbol list for RCPT: everything is sent
        self.assertEqual(rec[6], ("D", b"R" + z("{rcpt_addr}", "bob@pec.test", "{rcpt_host}", "pec.test")))
        self.assertEqual(rec[7], ("R", z("<bob@pec.test>")))
        self.assertEqual(rec[9], ("R", z("<carol@pec.test>", "NOTIFY=NEVER")))
        self.assertEqual(rec[11], ("T", b""))
        self.assertEqual([d for c, d in rec if c == "L"], [
            z("Received", "from client.test\n\tby mx.test; Mon, 1 Jan 2024 00:00:00 +0100"),
            z("From", "Alice <alice@pec.test>"),
            z("To", "bob@pec.test"),
            z("Subject", " two spaces"),
            z("X-Tab", "\tvalue"),
            z("X-Empty", ""),
            z("subject", "second"),
        ])
        self.assertEqual([d for c, d in rec if c == "B"],
                         [b"line 1\r\nline 2\r\n\r\nlast line without newline\r\n"])
        self.assertEqual([d for c, d in rec if c == "E"], [b""])

    def test_leadspc_keeps_space(self):
        srv = self.serve(libmilter_like(protocol=M.SMFIP_HDR_LEADSPC,
                                        eom=[pkt("h", z("X-New", " v")), pkt("a")]))
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(b"Subject: hi\r\nX:no space\r\n\r\nb\r\n", "a@b", ["c@d"])
        srv.done()
        self.assertEqual([d for c, d in srv.received if c == "L"],
                         [z("Subject", " hi"), z("X", "no space")])
        self.assertEqual(res.actions, [("addheader", "X-New", " v")])
        self.assertEqual(res.apply([], b"")[0], [("X-New", "v")])
        # exact form: under LEADSPC the milter's value goes right after the colon
        res.actions.append(("addheader", "X-Bad", "nospace"))
        raw_h, _ = parse_message(b"X:no space\r\n\r\n", raw_values=True)
        self.assertEqual(raw_h, [("X", "no space")])
        out_h, out_b = res.apply(raw_h, b"", raw_values=True)
        self.assertEqual(render_message(out_h, out_b, raw_values=True),
                         b"X:no space\r\nX-New: v\r\nX-Bad:nospace\r\n\r\n")
        self.assertEqual(EomResult(Reply("continue"), [("addheader", "A", "b")]).apply(
            [], b"", raw_values=True)[0], [("A", " b")])

    def test_body_chunking(self):
        srv = self.serve(libmilter_like())
        big = (b"x" * 998 + b"\r\n") * 200        # 200000 bytes
        with Milter(srv.spec, timeout=5) as m:
            m.negotiate()
            self.assertEqual(m.connect(), "continue")
            self.assertEqual(m.mail("a@b"), "continue")
            self.assertEqual(m.body(big), "continue")
            res = m.eom()
        srv.done()
        chunks = [d for c, d in srv.received if c == "B"]
        self.assertEqual([len(c) for c in chunks], [65535, 65535, 65535, 3395])
        self.assertEqual(b"".join(chunks), big)
        self.assertEqual(res.reply, "continue")

    def test_no_send_and_no_reply_flags(self):
        # The fake answers nothing for NR stages: a driver that waited would time out.
        proto = (M.SMFIP_NOHELO | M.SMFIP_NODATA | M.SMFIP_NOEOH | M.SMFIP_NR_HDR
                 | M.SMFIP_NR_BODY | M.SMFIP_NR_RCPT | M.SMFIP_NR_CONN)
        srv = self.serve(libmilter_like(protocol=proto, eom=[pkt("c")]))
        t0 = time.monotonic()
        with Milter(srv.spec, timeout=3) as m:
            res = m.send_message(MESSAGE, "a@b", ["c@d", "e@f"], auto_macros=False)
            self.assertEqual(m.helo("x").sent, False)
            r = m.header("A", "b")
            self.assertTrue(r.sent)
            self.assertFalse(r.replied)
        srv.done()
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(res.reply, "continue")
        self.assertEqual(srv.commands(), ["O", "C", "M", "R", "R"] + ["L"] * 7
                         + ["B", "E", "L", "Q"])

    def test_unrequested_reply_detected(self):
        # claims NR_HDR, then answers headers anyway
        script = libmilter_like(protocol=M.SMFIP_NR_HDR, replies={"L": [pkt("c")]})
        srv = self.serve(script)
        with Milter(srv.spec, timeout=3) as m:
            m.negotiate()
            m.connect()
            m.mail("a@b")
            m.header("A", "1")
            time.sleep(0.2)
            with self.assertRaisesRegex(MilterError, "unrequested.*SMFIR_CONTINUE"):
                m.header("B", "2")

    # -- decisions ----------------------------------------------------------

    def test_early_stop_and_abort(self):
        srv = self.serve(libmilter_like(replies={"R": lambda d: [pkt("y", z("550 5.7.1 no %% way"))]
                                                 if b"bad" in d else [pkt("c")]}))
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(MESSAGE, "a@b", ["ok@x", "bad@x", "never@x"])
            self.assertEqual(res.reply, "replycode")
            self.assertEqual(res.reply.text, "550 5.7.1 no %% way")
            self.assertEqual(res.reply.smtp_text, "550 5.7.1 no % way")
            self.assertEqual(res.stage, "R")
            self.assertEqual(res.actions, [])
            # the connection is reusable for another message
            res2 = m.send_message(MESSAGE, "a@b", ["ok@x"])
            self.assertEqual(res2.reply, "continue")
        cmds = srv.done().commands()
        self.assertEqual(cmds[:cmds.index("A") + 1], ["O", "D", "C", "H", "D", "M",
                                                      "D", "R", "D", "R", "A"])
        self.assertEqual(cmds.count("C"), 1)
        self.assertEqual(cmds[-2:], ["E", "Q"])

    def test_simple_decisions(self):
        for code, name in (("a", "accept"), ("r", "reject"), ("t", "tempfail"), ("d", "discard"),
                           ("4", "shutdown"), ("f", "connfail")):
            srv = self.serve(libmilter_like(replies={"M": [pkt(code)]}))
            with Milter(srv.spec, timeout=5) as m:
                res = m.send_message(MESSAGE, "a@b", ["c@d"])
            self.assertEqual(res.reply.code, name)
            self.assertIsNone(res.reply.text)
            self.assertEqual(res.stage, "M")
            srv.stop()
            self.servers.remove(srv)
            os.unlink(self.path)

    def test_progress_and_skip(self):
        srv = self.serve(libmilter_like(protocol=M.SMFIP_SKIP,
                                        replies={"B": [pkt("p"), pkt("s")]},
                                        eom=[pkt("p"), pkt("h", z("X-A", "1")), pkt("p"), pkt("a")]))
        big = b"y" * 70000 + b"\r\n"
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(b"Subject: s\r\n\r\n" + big, "a@b", ["c@d"])
        srv.done()
        self.assertEqual(res.reply, "accept")
        self.assertEqual(res.actions, [("progress",), ("addheader", "X-A", "1"), ("progress",)])
        self.assertEqual(res.find("addheader"), [("addheader", "X-A", "1")])
        # skipped after the first chunk: only one body packet went out
        self.assertEqual(srv.commands().count("B"), 1)

    def test_optional_args_absent(self):
        srv = self.serve(libmilter_like(eom=[pkt("e", z("<x@y>")), pkt("2", z("<r@y>")),
                                             pkt("+", z("<p@y>")), pkt("-", z("<c@d>")),
                                             pkt("c")]))
        with Milter(srv.spec, timeout=5) as m:
            res = m.send_message(MESSAGE, "a@b", ["c@d"])
        self.assertEqual(res.actions, [("chgfrom", "<x@y>", None), ("addrcpt_par", "<r@y>", None),
                                       ("addrcpt", "<p@y>"), ("delrcpt", "<c@d>")])
        self.assertEqual(res.envelope("a@b", ["c@d"]), ("<x@y>", ["<r@y>", "<p@y>"]))

    # -- protocol violations --------------------------------------------------

    def test_strict_checks(self):
        cases = [
            ({"actions": M.SMFIF_ADDHDRS, "eom": [pkt("e", z("<x@y>"))]}, "did not negotiate"),
            ({"replies": {"M": [pkt("h", z("X", "y"))]}}, "only at end of message"),
            ({"eom": [pkt("y", z("550 no enhanced code"))]}, "malformed SMFIR_REPLYCODE"),
            ({"eom": [pkt("b", b"1"), pkt("h", z("A", "b")), pkt("b", b"2")]}, "REPLBODY"),
            ({"eom": [pkt("c", b"junk")]}, "unexpected data bytes"),
            ({"eom": [pkt("Z")]}, "unknown reply"),
            ({"eom": [pkt("m", b"\0\0")]}, "too short for its index"),
            ({"eom": [pkt("h", b"X\0y")]}, "unterminated string"),
            ({"eom": [pkt("+", z("a", "b"))]}, "trailing bytes"),
        ]
        for kw, pattern in cases:
            with self.subTest(pattern=pattern):
                srv = self.serve(libmilter_like(**kw))
                with Milter(srv.spec, timeout=3) as m:
                    with self.assertRaisesRegex(MilterError, pattern):
                        m.send_message(MESSAGE, "a@b", ["c@d"])
                    m.close()
                srv.stop()
                self.servers.remove(srv)
                os.unlink(self.path)

    def test_close_mid_packet(self):
        def script(cmd, data):
            if cmd == "O":
                return [optneg_reply()]
            if cmd == "E":
                # announce 100 bytes, send 10, hang up
                return [struct.pack(">I", 100) + b"h" + b"X-Partial", CLOSE]
            return [pkt("c")] if cmd not in ("D", "A") else []
        srv = self.serve(script)
        t0 = time.monotonic()
        with Milter(srv.spec, timeout=20) as m:
            with self.assertRaisesRegex(MilterError, r"closed the connection in the middle.*10 of 100"):
                m.send_message(MESSAGE, "a@b", ["c@d"])
        self.assertLess(time.monotonic() - t0, 3)

    def test_close_mid_length(self):
        srv = self.serve(lambda c, d: [b"\0\0", CLOSE])
        with self.assertRaisesRegex(MilterError, "closed the connection"):
            Milter(srv.spec, timeout=20).negotiate()

    def test_close_instead_of_reply(self):
        srv = self.serve(lambda c, d: [optneg_reply()] if c == "O" else [CLOSE])
        with Milter(srv.spec, timeout=20) as m:
            m.negotiate()
            with self.assertRaisesRegex(MilterError, "closed the connection while an answer to SMFIC_CONNECT"):
                m.connect()

    def test_garbled_length(self):
        srv = self.serve(lambda c, d: [b"\0\0\0\0"])
        with self.assertRaisesRegex(MilterError, "packet length 0"):
            Milter(srv.spec, timeout=5).negotiate()
        srv2 = FakeMilter(lambda c, d: [b"\xff\xff\xff\xffO"], path=self.path + "2")
        self.servers.append(srv2)
        with self.assertRaisesRegex(MilterError, "garbled"):
            Milter(srv2.spec, timeout=5).negotiate()

    def test_timeout(self):
        srv = self.serve(lambda c, d: [optneg_reply()] if c == "O" else [])
        t0 = time.monotonic()
        with Milter(srv.spec, timeout=0.5) as m:
            m.negotiate()
            with self.assertRaisesRegex(MilterError, "timeout after 0.5s waiting for SMFIC_CONNECT"):
                m.connect()
        self.assertLess(time.monotonic() - t0, 3)

    def test_slow_trickle_still_bounded(self):
        # bytes keep coming but the packet never completes within the timeout
        def script(cmd, data):
            if cmd == "O":
                return [struct.pack(">I", 13)] + [b"O", ("sleep", 0.3)] + [b"\0", ("sleep", 0.3)] * 4
            return []
        srv = self.serve(script)
        t0 = time.monotonic()
        with self.assertRaisesRegex(MilterError, "timeout"):
            Milter(srv.spec, timeout=0.8).negotiate()
        self.assertLess(time.monotonic() - t0, 3)

    def test_connect_refused(self):
        with self.assertRaisesRegex(MilterError, "cannot connect"):
            Milter("unix:" + os.path.join(self.dir, "nothing.sock"), timeout=2)

    def test_socket_specs(self):
        self.assertEqual(M._parse_spec("unix:/a/b"), (socket.AF_UNIX, "/a/b"))
        self.assertEqual(M._parse_spec("/a/b"), (socket.AF_UNIX, "/a/b"))
        self.assertEqual(M._parse_spec("local:/a/b"), (socket.AF_UNIX, "/a/b"))
        self.assertEqual(M._parse_spec("inet:8891@127.0.0.1"), (socket.AF_INET, ("127.0.0.1", 8891)))
        self.assertEqual(M._parse_spec("inet:localhost:8891"), (socket.AF_INET, ("localhost", 8891)))
        self.assertEqual(M._parse_spec("inet6:8891@[::1]"), (socket.AF_INET6, ("::1", 8891)))
        with self.assertRaises(MilterError):
            M._parse_spec("inet:x@y")
        srv = self.serve(libmilter_like(eom=[pkt("a")]), tcp=True)
        with Milter(srv.spec, timeout=5) as m:
            self.assertEqual(m.send_message(MESSAGE, "a@b", ["c@d"]).reply, "accept")


def main():
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    passed = res.testsRun - failed - len(res.skipped)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if res.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
