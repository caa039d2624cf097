"""pecmilter's own LMTP face (the delivery point) is up with the milter:
LHLO answers with the extensions, a message for one of our users lands in
the built-in Maildir, and SIGTERM removes the socket."""
import os
import smtplib
import socket
import tempfile
import unittest

from pectest import config, daemon, pki

MESSAGE = (b"From: someone@example.org\r\nTo: luigi@pec-a.test\r\n"
           b"Subject: ordinary\r\nMessage-ID: <lmtp-1@example.org>\r\n\r\n"
           b"Ciao.\r\n.dot\r\n")


def lmtp_raw(sock, rcpts, message):
    """The per-recipient replies to DATA of one LMTP session on SOCK (smtplib's LMTP
    reads only the first)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sock)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline().decode()
                if line[3:4] != "-":
                    return line.rstrip("\r\n")

        reply()
        for cmd in ["LHLO mx.pec-a.test", "MAIL FROM:<someone@example.org>"] + \
                ["RCPT TO:<%s>" % r for r in rcpts] + ["DATA"]:
            s.sendall(cmd.encode() + b"\r\n")
            reply()
        s.sendall(message + b".\r\n")
        got = [reply() for _ in rcpts]
        s.sendall(b"QUIT\r\n")
        return got


class DaemonLmtp(unittest.TestCase):
    def test_lmtp_face(self):
        with tempfile.TemporaryDirectory() as d:
            mail = os.path.join(d, "mail")
            os.mkdir(mail)
            conf = os.path.join(d, "pecmilter.conf")
            s = config.write(conf, "a", maildir_root=mail)
            self.assertIn("luigi@pec-a.test: added", config.add_mailboxes(conf, "luigi@pec-a.test"))
            sock = config.socket_path(s, "lmtp_socket")
            dm = daemon.start(conf)
            try:
                self.assertTrue(os.path.exists(sock), dm.stderr())
                c = smtplib.LMTP(sock)
                code, text = c.ehlo("mx.pec-a.test")
                self.assertEqual(code, 250)
                for ext in (b"PIPELINING", b"8BITMIME", b"SIZE", b"ENHANCEDSTATUSCODES"):
                    self.assertIn(ext, text)
                refused = c.sendmail("someone@example.org", ["luigi@pec-a.test"], MESSAGE)
                self.assertEqual(refused, {})
                c.quit()
                new = os.path.join(mail, "luigi", "new")
                files = os.listdir(new)
                self.assertEqual(len(files), 1)
                with open(os.path.join(new, files[0]), "rb") as f:
                    got = f.read()
                # ordinary mail at the delivery point came past the reception point: it
                # goes in only wrapped in a busta di anomalia, the original inside
                self.assertIn(b"\r\nX-Trasporto: errore\r\n", got)
                self.assertIn(b'filename="postacert.eml"\r\nContent-Transfer-Encoding: 7bit'
                              b"\r\n\r\n" + MESSAGE, got)
                # nothing makes a mailbox at its first delivery: LMTP answers each
                # recipient after the data, luigi 250, nessuno 550 5.1.1
                replies = lmtp_raw(sock, ["luigi@pec-a.test", "nessuno@pec-a.test"], MESSAGE)
                self.assertTrue(replies[0].startswith("250 "), replies)
                self.assertTrue(replies[1].startswith("550 5.1.1 "), replies)
                self.assertFalse(os.path.exists(os.path.join(mail, "nessuno")))
            finally:
                dm.stop()
            self.assertEqual(dm.returncode, 0, dm.stderr())
            self.assertFalse(os.path.exists(sock))
            self.assertIn("LMTP on unix:" + sock, dm.stderr())


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
