"""`pecctl mailbox` through the real binary, with the Maildir backend: the
administrator makes and removes PEC mailboxes, since nothing makes one at a
delivery (issue 17).  add makes the Maildir (and says when it exists
already), refuses an address outside our domains; list shows each mailbox
with its message counts; check answers per address and exits 1 when one is
missing; del moves a mailbox aside with its messages, never deletes them; a
missing maildir_root is an error naming it (exit 74), not an empty answer.
"""
import os
import subprocess
import tempfile
import unittest

from pectest import config, env

PECCTL = env.program("pecctl")


class MailboxTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = os.path.join(tmp.name, "mail")
        self.conf = os.path.join(tmp.name, "pecmilter.conf")
        config.write(self.conf, "a", maildir_root=self.root, mailbox_backend="maildir")

    def pecctl(self, *args):
        p = subprocess.run([PECCTL, "-c", self.conf, "mailbox"] + list(args),
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    def test_root_missing(self):
        rc, out, err = self.pecctl("add", "mario@pec-a.test")
        self.assertEqual(rc, 74)
        self.assertIn("maildir_root %s: No such file or directory" % self.root, err)
        rc, out, err = self.pecctl("check", "mario@pec-a.test")
        self.assertEqual(rc, 74)
        self.assertIn("mario@pec-a.test: cannot tell now (451 4.3.0", out)

    def test_add_list_check_del(self):
        os.mkdir(self.root)
        self.assertEqual(self.pecctl("add", "mario@pec-a.test", "luigi@pec-a.test"),
                         (0, "mario@pec-a.test: added\nluigi@pec-a.test: added\n", ""))
        for sub in ("new", "cur", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(self.root, "mario", sub)))
        self.assertEqual(self.pecctl("add", "mario@pec-a.test"),
                         (0, "mario@pec-a.test: exists already\n", ""))
        rc, out, err = self.pecctl("add", "x@example.org")
        self.assertEqual((rc, err), (1, "pecctl: x@example.org: not an address of our domains\n"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "x")))

        with open(os.path.join(self.root, "luigi", "new", "1.msg"), "w") as f:
            f.write("Subject: tenuto\n\nda non perdere\n")
        rc, out, _ = self.pecctl("list")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"(?m)^luigi +new 1  cur 0\nmario +new 0  cur 0\n\Z")

        rc, out, _ = self.pecctl("check", "mario@pec-a.test", "nessuno@pec-a.test")
        self.assertEqual((rc, out), (1, "mario@pec-a.test: exists\nnessuno@pec-a.test: "
                                        "no mailbox (550 5.1.1 no such mailbox)\n"))

        rc, out, _ = self.pecctl("del", "luigi@pec-a.test")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^luigi@pec-a\.test: removed, its messages kept in "
                              r"%s/\.removed/luigi\.\d{8}T\d{6}Z\n$" % self.root)
        kept = out.rsplit(" ", 1)[1].strip()
        with open(os.path.join(kept, "new", "1.msg")) as f:
            self.assertIn("da non perdere", f.read())
        self.assertEqual(self.pecctl("check", "luigi@pec-a.test")[:2],
                         (1, "luigi@pec-a.test: no mailbox (550 5.1.1 no such mailbox)\n"))
        rc, out, _ = self.pecctl("list")
        self.assertRegex(out, r"^mario +new 0  cur 0\n\Z")


if __name__ == "__main__":
    unittest.main()
