"""The daemon through the project's milter driver: negotiation, the
passthrough role, roles by {daemon_name}, and reload on SIGUSR1."""
import os
import re
import tempfile
import time
import unittest

from pectest import config, daemon, pki
from pectest.milter import ALL_ACTIONS, MilterError

MESSAGE = (b"From: Mario Rossi <mario@pec-a.test>\r\n"
           b"To: luigi@pec-b.test\r\n"
           b"Subject: prova\r\n"
           b"Message-ID: <1@client.test>\r\n"
           b"\r\n"
           b"Hello.\r\n")


class PassthroughTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        # removed after the daemon has stopped (cleanups run last first): until then it
        # may still write there (its index refresh rewrites tls_policy_file)
        self.addCleanup(self.tmp.cleanup)
        self.conf = os.path.join(self.tmp.name, "pecmilter.conf")

    def start(self, **overrides):
        config.write(self.conf, "a", **overrides)
        d = daemon.start(self.conf)
        self.addCleanup(d.stop)
        return d

    def wait_log(self, d, pattern, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if re.search(pattern, d.stderr()):
                return
            time.sleep(0.05)
        self.fail("no %r in the daemon's log:\n%s" % (pattern, d.stderr()))

    def send(self, d, daemon_name, auth=None):
        with d.milter() as m:
            m.filter_macros = False
            m.negotiate()
            mail_macros = {"{auth_authen}": auth} if auth else {}
            return m.send_message(MESSAGE, "mario@pec-a.test", ["luigi@pec-b.test"],
                                  connect_macros={"{daemon_name}": daemon_name},
                                  macros={"M": mail_macros})

    def test_negotiation_asks_only_what_it_needs(self):
        d = self.start(default_role="passthrough")
        with d.milter() as m:
            opts = m.negotiate()
        # add headers (0x01), change body (0x02), change headers (0x10), symbol lists (0x100)
        self.assertEqual(opts["actions"], 0x01 | 0x02 | 0x10 | 0x100)
        self.assertIn("{daemon_name}", opts["macros"].get(0, ""))
        self.assertIn("{auth_authen}", opts["macros"].get(2, ""))

    def test_refuses_an_mta_without_the_needed_actions(self):
        d = self.start(default_role="passthrough")
        with d.milter() as m:
            with self.assertRaises(MilterError):
                m.negotiate(actions=0x01)  # add headers only: no body replacement
        self.wait_log(d, r"refusing the connection")

    def test_passthrough_changes_nothing(self):
        d = self.start(roles={"pec-relay": "passthrough"}, default_role="reception")
        res = self.send(d, "pec-relay")
        self.assertEqual(res.reply.code, "accept")
        self.assertEqual(res.actions, [])
        headers, body = res.apply(*self._split())
        self.assertEqual((headers, body), self._split())

    def test_reception_never_passes_ordinary_mail_unchanged(self):
        d = self.start()
        res = self.send(d, "pec-mx")
        self.assertEqual(res.reply.code, "continue")
        self.assertIn(("addheader", "X-Trasporto", " errore"), res.actions)
        self.wait_log(d, r"reception: .*busta di anomalia")

    def test_reload_applies_to_new_connections_only(self):
        d = self.start(default_role="passthrough")
        old = d.milter()
        self.addCleanup(old.close)
        old.negotiate()
        old.filter_macros = False
        old.macros("C", {"{daemon_name}": "x"})
        self.assertEqual(old.connect().code, "continue")

        config.write(self.conf, "a", default_role="reception")
        d.reload()
        self.wait_log(d, r"configuration reloaded")
        # the connection opened before keeps the configuration it started with
        self.assertEqual(old.helo("client.test").code, "continue")
        self.assertEqual(old.mail("<mario@pec-a.test>").code, "accept")
        # a new one gets the new configuration: ordinary mail becomes an anomaly
        self.assertIn("addheader", [a[0] for a in self.send(d, "x").actions])

    def test_bad_reload_keeps_the_running_configuration(self):
        d = self.start(default_role="passthrough")
        with open(self.conf, "a") as f:
            f.write("bogus_key = 1;\n")
        d.reload()
        self.wait_log(d, r"reload failed, keeping the running configuration: .*bogus_key: "
                         r"unknown setting")
        self.assertEqual(self.send(d, "x").reply.code, "accept")

    def test_reload_with_a_certificate_that_may_not_sign(self):
        """Every reload checks the signing certificate: an expired one is refused and
        the running configuration keeps serving (issue 18)."""
        d = self.start(default_role="passthrough")
        expired = pki.provider("expired")
        config.write(self.conf, "a", default_role="passthrough", sign_cert=expired["cert"],
                     sign_key=expired["key"])
        d.reload()
        self.wait_log(d, r"reload failed, keeping the running configuration: %s: expired on "
                         r"2021-01-01" % re.escape(expired["cert"]))
        self.assertEqual(self.send(d, "x").reply.code, "accept")

    def test_test_mode_says_so_on_every_line(self):
        d = self.start(default_role="passthrough", test_mode="yes",
                       fixed_clock="2024-01-31T10:00:00Z")
        self.wait_log(d, r"test_mode = \"yes\"")
        self.assertEqual(self.send(d, "x").reply.code, "accept")
        d.stop()
        lines = [l for l in d.stderr().splitlines() if " pecmilter[" in l]
        self.assertGreater(len(lines), 1, d.stderr())
        for line in lines:
            self.assertRegex(line, r"^\S+ pecmilter\[\w+\]: TEST MODE: ")

    def test_production_lines_carry_no_test_mark(self):
        d = self.start(default_role="passthrough")
        d.stop()
        self.assertIn("pecmilter stopping", d.stderr())
        self.assertNotIn("TEST MODE", d.stderr())

    def test_drops_privileges_after_opening_files(self):
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.tmp.name, 0o755)
        # the store is opened after the drop, so its files are the daemon user's
        state = os.path.join(self.tmp.name, "state")
        os.mkdir(state)
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        d = self.start(default_role="passthrough", user="nobody",
                       store=os.path.join(state, "pecmilter.db"))
        with open("/proc/%d/status" % d.proc.pid) as f:
            uids = [l.split()[1:] for l in f if l.startswith(("Uid:", "Gid:"))]
        self.assertEqual(uids[0], [str(nobody.pw_uid)] * 4)
        self.assertEqual(uids[1], [str(nobody.pw_gid)] * 4)
        # the key was read as root before the drop, and mail still flows
        self.assertEqual(self.send(d, "x").reply.code, "accept")
        self.assertEqual(os.stat(os.path.join(state, "pecmilter.db")).st_uid, nobody.pw_uid)

    def test_sigterm_stops_cleanly_and_removes_the_socket(self):
        d = self.start(default_role="passthrough")
        sock = config.socket_path(config.settings("a", self.tmp.name))
        self.assertTrue(os.path.exists(sock))
        d.stop()
        self.assertEqual(d.returncode, 0, d.stderr())
        self.assertIn("pecmilter stopping", d.stderr())
        self.assertFalse(os.path.exists(sock))

    @staticmethod
    def _split():
        from pectest.milter import parse_message
        return parse_message(MESSAGE)


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
