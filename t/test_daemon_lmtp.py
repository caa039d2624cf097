"""pecmilter's own LMTP face (the delivery point) is up with the milter:
LHLO answers with the extensions, a message for one of our users lands in
the built-in Maildir, and SIGTERM removes the socket."""
import os
import smtplib
import tempfile
import unittest

from pectest import config, daemon, pki

MESSAGE = (b"From: someone@example.org\r\nTo: luigi@pec-a.test\r\n"
           b"Subject: ordinary\r\nMessage-ID: <lmtp-1@example.org>\r\n\r\n"
           b"Ciao.\r\n.dot\r\n")


class DaemonLmtp(unittest.TestCase):
    def test_lmtp_face(self):
        with tempfile.TemporaryDirectory() as d:
            mail = os.path.join(d, "mail")
            os.mkdir(mail)
            conf = os.path.join(d, "pecmilter.conf")
            s = config.write(conf, "a", maildir_root=mail)
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
            finally:
                dm.stop()
            self.assertEqual(dm.returncode, 0, dm.stderr())
            self.assertFalse(os.path.exists(sock))
            self.assertIn("LMTP on unix:" + sock, dm.stderr())


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
