"""contrib/postfix/: the snippets the README has a sysadmin merge into Debian's Postfix.

The private instance is built the way the README says: Debian's own master.cf
(/usr/share/postfix/master.cf.dist, smtpd chrooted) with its "smtp inet"
line replaced by contrib/postfix/master.cf, and contrib/postfix/main.cf
appended to the main.cf, pec.example.it replaced by the test provider's
domain.  Only what a private instance on loopback needs differs: the
harness's paths and addresses (pectest.postfix) and the listeners' ports.

Then: `postfix check`, `postconf -n` and `postconf -M` say nothing, and,
with pecmilter on the sockets inside the chroot (relative names, as in the
snippets), the three smtpd's behave as their roles say: port 25 refuses
ordinary mail for our users (reception, ordinary_mail = reject), submission
(after STARTTLS) refuses an unauthenticated sender (access), and the
reinjection listener, with no milter, takes the same ordinary message, which
Postfix hands to pecmilter's delivery point over LMTP, which refuses to store
it bare.  postconf reports the queue lifetimes, size limit and MIME output
setting the rules call for.

And the harness the end-to-end tests and the demo run (pectest.provider) is
the same: Debian's configuration, README's substitution and the snippets,
plus only the environment-only settings it lists with their reasons; a
setting of the harness alone (a bigger message_size_limit, a regexp
virtual_mailbox_maps, a listener option) is found and named.
"""
import os
import re
import smtplib
import ssl
import subprocess
import tempfile
import time
import unittest

from pectest import config, daemon, env, pki, postfix, provider
from pectest.provider import contrib, parse_main

DIST_MASTER = "/usr/share/postfix/master.cf.dist"
DIST_MAIN = "/usr/share/postfix/main.cf.debian"
USER = "mario.rossi@pec-a.test"




class SnippetPostfix(postfix.Postfix):
    """Debian's configuration with contrib/postfix merged in, on loopback."""

    def __init__(self, workdir):
        ip = postfix.loopback_ip(7)
        super().__init__(workdir, "snippets", ip=ip, mydomain="pec-a.test",
                         submission_port=postfix.free_port(ip),
                         reinject_port=postfix.free_port(ip))
        self.tls_policy = os.path.join(self.etc, "tls-policy")
        self.sockdir = os.path.join(self.queue, "pecmilter")

    def main_cf(self):
        m = parse_main(open(DIST_MAIN).read())
        m.update(super().main_cf())        # private paths, loopback, no DNS, fast retries
        snippet = contrib("main.cf").replace("pec.example.it", "pec-a.test")
        snippet = snippet.replace("/var/lib/pecmilter/tls-policy", self.tls_policy)
        m.update(parse_main(snippet))
        # STARTTLS for the submission service: any certificate will do on loopback
        m["smtpd_tls_cert_file"] = pki.provider("a")["cert"]
        m["smtpd_tls_key_file"] = pki.provider("a")["key"]
        return m

    def master_cf(self):
        dist = [l for l in open(DIST_MASTER).read().splitlines()
                if not re.match(r"^smtp\s+inet\s", l)]
        snippet = contrib("master.cf")
        for service, port in (("smtp", self.port), ("submission", self.submission_port),
                              ("127.0.0.1:10025", self.reinject_port)):
            snippet, n = re.subn(r"(?m)^%s\s+inet " % re.escape(service),
                                 "%s:%d inet " % (self.ip, port), snippet)
            assert n == 1, service
        return "\n".join(dist) + "\n" + snippet

    def _write_config(self):
        super()._write_config()
        with open(self.tls_policy, "w") as f:
            f.write("pec-b.test encrypt\n")
        past = time.time() - 10
        os.utime(self.tls_policy, (past, past))
        # README: the sockets' directory inside the chroot, the daemon's user as
        # owner (root here) and group postfix, setgid so the sockets are postfix's too
        os.makedirs(self.sockdir, exist_ok=True)
        os.chown(self.sockdir, 0, postfix.grp.getgrnam("postfix").gr_gid)
        os.chmod(self.sockdir, 0o2750)


def ordinary(sender, rcpt):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: ordinary\r\nMessage-ID: <o.%d@example.org>\r\n"
            "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nnot certified\r\n"
            % (sender, rcpt, os.getpid())).encode()


@unittest.skipUnless(postfix.have_postfix(), "needs Postfix and root")
@unittest.skipUnless(os.path.exists(DIST_MASTER), "no Debian master.cf.dist")
class PostfixSnippetsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="pec-snippets.")
        cls.work = cls.tmp.name
        cls.pf = SnippetPostfix(cls.work)
        cls.pf._write_config()
        cls.maildirs = os.path.join(cls.work, "mail")
        os.mkdir(cls.maildirs)
        sock = "unix:" + os.path.join(cls.pf.sockdir, "%s.sock")
        cls.conf = os.path.join(cls.work, "pecmilter.conf")
        config.write(cls.conf, "a", milter_socket=sock % "milter", lmtp_socket=sock % "lmtp",
                     umask="007", ordinary_mail="reject",
                     roles={"pec-submission": "access", "pec-mx": "reception"},
                     reinject="smtp:%s:%d" % (cls.pf.ip, cls.pf.reinject_port),
                     maildir_root=cls.maildirs, seal_dir=os.path.join(cls.work, "registro"))
        config.add_mailboxes(cls.conf, USER)

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        cls.tmp.cleanup()

    def quiet(self, *args):
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stderr, "", " ".join(args))
        return p.stdout

    def test_1_postfix_accepts_the_snippets_silently(self):
        self.quiet(postfix.POSTFIX, "-c", self.pf.etc, "check")
        out = self.quiet(postfix.POSTCONF, "-c", self.pf.etc, "-n")
        self.assertIn("milter_default_action = tempfail", out)
        self.assertIn("virtual_transport = lmtp:unix:pecmilter/lmtp.sock", out)
        self.assertIn("smtp_tls_policy_maps = texthash:%s" % self.pf.tls_policy, out)
        self.assertRegex(out, r"(?m)^milter_mail_macros = i .*\{auth_authen\}.* \{tls_version\}$")
        out = self.quiet(postfix.POSTCONF, "-c", self.pf.etc, "-M")
        # the two certifying smtpd's are chrooted, as Debian's are
        self.assertRegex(out, r"(?m)^%s:%d +inet +n +- +y .*milter_macro_daemon_name=pec-mx "
                         r".*smtpd_milters=\$pecmilter_milter" % (self.pf.ip, self.pf.port))
        # -P: the per-service overrides, expanded as smtpd will see them
        out = self.quiet(postfix.POSTCONF, "-c", self.pf.etc, "-P")
        self.assertIn("%s:%d/inet/smtpd_milters = $pecmilter_milter"
                      % (self.pf.ip, self.pf.submission_port), out)
        self.assertRegex(out, r"(?m)^%s:%d/inet/smtpd_milters =\s*$"
                         % (self.pf.ip, self.pf.reinject_port))

    def test_2_three_listeners_with_their_roles(self):
        with daemon.start(self.conf) as d, self.pf:
            self.assertEqual(self.pf.check_output.strip(), "", "postfix check warnings")
            # port 25: the reception role refuses ordinary mail for our users
            code, text = self.pf.send("someone@example.org", [USER],
                                      ordinary("someone@example.org", USER))
            self.assertEqual(code, 554, text)
            self.assertIn("5.7.1", text)
            # submission, after STARTTLS: the access role wants an authenticated user
            s = smtplib.SMTP(self.pf.ip, self.pf.submission_port, timeout=30)
            try:
                s.ehlo("client.test")
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s.starttls(context=ctx)
                s.ehlo("client.test")
                code, text = s.mail(USER)
            finally:
                s.close()
            self.assertEqual(code, 530, text)
            self.assertIn(b"authentication required to send certified mail", text)
            # reinjection: no milter, so the same message goes through to the delivery
            # point, over LMTP on the socket inside the chroot; it came past the reception
            # point (as a DSN of this Postfix or local pickup would), so the delivery point
            # does not store it bare: with ordinary_mail = reject it refuses it (issue 17)
            code, text = self.pf.send("someone@example.org", [USER],
                                      ordinary("someone@example.org", USER),
                                      port=self.pf.reinject_port)
            self.assertEqual(code, 250, text)
            deadline = time.monotonic() + 30
            pattern = (r"relay=[^ ]*pecmilter/lmtp\.sock.*status=bounced .*550 5\.7\.1 "
                       r"<mario\.rossi@pec-a\.test> not a PEC message")
            while time.monotonic() < deadline and not re.search(pattern, self.pf.log()):
                time.sleep(0.2)
            self.assertRegex(self.pf.log(), pattern, "pecmilter:\n" + d.stderr())
            new = os.path.join(self.maildirs, "mario.rossi", "new")
            self.assertFalse(os.path.isdir(new) and os.listdir(new), "stored bare")

    def test_3_limits_for_pec(self):
        """The 24 h the rules give a failure, the 30 MB they allow a message, and no
        8-bit downgrade of signed content: what postconf reports, from the snippets."""
        out = subprocess.run(["postconf", "-c", self.pf.etc, "maximal_queue_lifetime",
                              "bounce_queue_lifetime", "message_size_limit",
                              "disable_mime_output_conversion"],
                             capture_output=True, text=True, check=True).stdout
        self.assertIn("maximal_queue_lifetime = 1d\n", out)
        self.assertIn("bounce_queue_lifetime = 1d\n", out)
        self.assertIn("disable_mime_output_conversion = yes\n", out)
        limit = int(re.search(r"message_size_limit = (\d+)", out).group(1))
        self.assertGreaterEqual(limit, 30 * 1024 * 1024 + 64 * 1024)


class HarnessRunsTheSnippets(unittest.TestCase):
    """What the end-to-end tests and the demo run (pectest.provider) is Debian's
    configuration, README's substitution and the snippets, plus the environment-only
    settings listed with their reasons, and nothing else (issue 17)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="pec-shipped.")
        self.addCleanup(self.tmp.cleanup)
        ip = postfix.loopback_ip(8)
        s = config.settings("a", self.tmp.name, reinject="smtp:%s:10025" % ip)
        self.p = provider.Provider(self.tmp.name, "a", s, ip=ip, port=2525, submission_port=2587,
                                   transports={"pec-b.test": "smtp:[127.0.0.12]:2526"})

    def written(self):
        self.p._write_config()
        return self.p.deviations()

    def test_nothing_but_the_shipped_configuration(self):
        self.assertEqual(self.written(), [])
        with open(os.path.join(self.p.etc, "main.cf")) as f:
            main = parse_main(f.read())
        # the rules' limits of the snippets, not a harness's
        self.assertEqual(main["message_size_limit"], "36700160")
        self.assertEqual(main["virtual_mailbox_maps"], "")

    def test_every_placeholder_and_reason_holds(self):
        snippets = contrib("main.cf") + contrib("master.cf")
        for placeholder, _ in self.p.substitutions():
            self.assertIn(placeholder, snippets, "a substitution of nothing")
        shipped = parse_main(contrib("main.cf"))
        for key, why in list(provider.ENVIRONMENT.items()) + list(provider.SITE.items()):
            self.assertNotIn(key, shipped, "the harness would override the snippets")
            self.assertTrue(why)

    def test_a_setting_of_the_harness_alone_is_found(self):
        self.p.extra_main = {"message_size_limit": "104857600",
                             "virtual_mailbox_maps": "regexp:/x"}
        self.assertEqual(sorted(self.written()), [
            "main.cf: message_size_limit = 104857600: the snippets say 36700160",
            "main.cf: virtual_mailbox_maps = regexp:/x: the snippets say "])
        self.p.extra_main = {"smtputf8_enable": "no"}
        self.assertEqual(self.written(), ["main.cf: smtputf8_enable = no: neither in the "
                                          "snippets nor environment-only"])
        self.p.extra_main = {}
        master = self.p.master_cf
        self.p.master_cf = lambda: master().replace(
            "-o smtpd_tls_security_level=encrypt", "-o smtpd_tls_security_level=may")
        self.assertEqual(len(self.written()), 1, self.written())
        self.assertRegex(self.written()[0], r"^master\.cf: 127\.0\.0\.18:2587 inet: -o "
                         r"\['smtpd_tls_security_level=may'\] added, "
                         r"\['smtpd_tls_security_level=encrypt'\] missing$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
