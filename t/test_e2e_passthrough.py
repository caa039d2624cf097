"""End to end: a message through a real Postfix with pecmilter attached
(passthrough role) arrives unchanged at the far end; with pecmilter down the
same Postfix defers the mail (milter_default_action = tempfail) instead of
letting it through, and delivers it once pecmilter is back."""
import os
import tempfile
import unittest

from pectest import config, daemon, env, pki
from pectest import postfix as pf

MESSAGE = (b"From: Mario Rossi <mario@pec-a.test>\r\n"
           b"To: Luigi Bianchi <luigi@pec-b.test>\r\n"
           b"Subject: =?UTF-8?Q?passthrough_=C3=A0?=\r\n"
           b"Date: Tue, 25 Nov 2025 10:00:00 +0100\r\n"
           b"Message-ID: <e2e-1@client.pec-a.test>\r\n"
           b"X-Folded: one\r\n"
           b"  two\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n"
           b"\r\n"
           b"Ciao, \xc3\xa8 una prova.\r\n"
           b".leading dot\r\n")

ADDED = (b"received:", b"return-path:", b"delivered-to:")


def strip_added(raw):
    """The delivered message without the trace fields the hops add."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    kept, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(ADDED)
        if not skipping:
            kept.append(line)
    return b"\n".join(kept) + b"\n\n" + body


class PassthroughE2E(unittest.TestCase):
    def setUp(self):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        self.tmp = tempfile.TemporaryDirectory(prefix="pec-e2e-")
        self.addCleanup(self.tmp.cleanup)
        work = self.tmp.name
        os.chmod(work, 0o755)
        self.conf = os.path.join(work, "pecmilter.conf")
        self.settings = config.write(self.conf, "a", roles={"pec-mx": "passthrough"},
                                     default_role="reception")
        self.milter = "unix:" + config.socket_path(self.settings)
        self.b = pf.Postfix(work, "b", ip=pf.loopback_ip(2), mydomain="pec-b.test",
                            virtual_domains=["pec-b.test"])
        self.a = pf.Postfix(work, "a", ip=pf.loopback_ip(1), mydomain="pec-a.test",
                            milter=self.milter,
                            transports={"pec-b.test": "smtp:[%s]:%d" % (self.b.ip, self.b.port)})
        self.b.start()
        self.addCleanup(self.b.stop)
        self.a.start()
        self.addCleanup(self.a.stop)

    def start_milter(self):
        d = daemon.start(self.conf)
        pf.register_process(d.proc.pid, self.tmp.name)
        self.addCleanup(d.stop)
        return d

    def test_arrives_unchanged(self):
        d = self.start_milter()
        code, text = self.a.send("mario@pec-a.test", ["luigi@pec-b.test"], MESSAGE)
        self.assertEqual(code, 250, text)
        got = self.b.wait_for_mail("luigi@pec-b.test", 1, timeout=30)
        self.assertEqual(strip_added(got[0]), MESSAGE.replace(b"\r\n", b"\n"))
        # the milter saw it, in the role {daemon_name} mapped
        self.assertRegex(d.stderr(), r"passthrough: from=<mario@pec-a.test> daemon=pec-mx")

    def test_milter_down_defers_then_delivers(self):
        code, text = self.a.send("mario@pec-a.test", ["luigi@pec-b.test"], MESSAGE)
        self.assertEqual(code // 100, 4, "with pecmilter down the mail must wait: %d %s"
                         % (code, text))
        self.assertEqual(self.b.messages("luigi@pec-b.test"), [])
        self.start_milter()
        code, text = self.a.send("mario@pec-a.test", ["luigi@pec-b.test"], MESSAGE)
        self.assertEqual(code, 250, text)
        got = self.b.wait_for_mail("luigi@pec-b.test", 1, timeout=30)
        self.assertEqual(len(got), 1)


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
