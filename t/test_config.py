"""pecmilter's configuration and start-up checks, through the real binary.

Each bad input must give one clear line naming the file (and line and key
where there is one), a non-zero exit (78, EX_CONFIG, for configuration
errors), and no half-started daemon: no socket left behind.
"""
import os
import re
import subprocess
import unittest

from pectest import config, env, pki

PECMILTER = env.program("pecmilter")


def run(*args):
    p = subprocess.run([PECMILTER] + list(args), capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


class ConfigTest(config.Scratch, unittest.TestCase):
    def assertConfigError(self, pattern):
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 78, "exit status; stderr: " + err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, "one line on stderr: %r" % err)
        self.assertRegex(lines[0], pattern)
        self.assertFalse(os.path.exists(config.socket_path(self.settings)))

    def test_good_config_prints_effective_configuration(self):
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertIn('provider_name = "Gestore A S.p.A.";', out)
        self.assertIn('sign_digest = "sha256";', out)  # a default
        self.assertIn('ordinary_mail = "anomaly";', out)
        self.assertIn("warning_after = 43200;", out)

    def test_unknown_key(self):
        text = config.render(self.settings)
        lines = text.count("\n")
        self.write(text + "no_such_key = 1;\n")
        self.assertConfigError(r"^pecmilter: %s:%d: no_such_key: unknown setting$"
                               % (re.escape(self.path), lines + 1))

    def test_removed_setting_says_what_to_do(self):
        """maildir_autocreate is gone (issue 17): refused, naming what replaces it."""
        text = config.render(self.settings)
        lines = text.count("\n")
        self.write(text + 'maildir_autocreate = "yes";\n')
        self.assertConfigError(r"^pecmilter: %s:%d: maildir_autocreate: .*never at its first "
                               r"delivery.*pecctl mailbox add" % (re.escape(self.path), lines + 1))

    def test_wrong_type(self):
        self.settings["size_limit"] = "big"
        self.write(config.render(self.settings))
        self.assertConfigError(re.escape(self.path) + r":\d+: size_limit: must be an integer")

    def test_value_not_a_choice(self):
        self.settings["ordinary_mail"] = "bounce"
        self.write(config.render(self.settings))
        self.assertConfigError(r"ordinary_mail: \"bounce\" is not one of anomaly\|reject$")

    def test_values_the_rules_forbid(self):
        """Each names the key, the value and the rule, and exits 78 (issue 18)."""
        cases = [
            ({"ordinary_mail": "accept"}, r"ordinary_mail: \"accept\" is not allowed: a PEC "
             r"mailbox receives ordinary mail only wrapped .*\(pec-rules\.md 2\.3\)$"),
            ({"on_internal_error": "accept"}, r"on_internal_error: \"accept\" is not allowed: "
             r"no message may pass uncertified .*\(pec-rules\.md 2\.2, 2\.3\)$"),
            ({"on_scan_error": "accept"}, r"on_scan_error: \"accept\" is not allowed: a message "
             r"nobody could scan is never certified.*\(pec-rules\.md 8\.4\)$"),
            ({"submission_cleartext": "yes"}, r"submission_cleartext: \"yes\" is not allowed: a "
             r"user submits over TLS \(pec-rules\.md 8\.5\); only a client on this machine "
             r"\(loopback\) may be let through in the clear$"),
            ({"submission_cleartext": "all"}, r"submission_cleartext: \"all\" is not one of "
             r"no\|loopback$"),
            ({"virus_retention_months": 29}, r"virus_retention_months: not allowed outside "
             r"test_mode: infected messages are kept 30 months .*at least 30$"),
            ({"fixed_clock": "2024-01-31T10:00:00Z"}, r"fixed_clock: not allowed outside "
             r"test_mode: the provider's clock is the system's"),
            ({"retention_months": 1}, r"retention_months: not allowed outside test_mode: .*at "
             r"least 30$"),
            ({"retention_months": 29}, r"retention_months: not allowed outside test_mode"),
            ({"deadline_after": 86401}, r"deadline_after: not allowed outside test_mode: .*at "
             r"most 86400$"),
            ({"warning_after": 3, "deadline_not_before": 5, "deadline_after": 6},
             r"deadline_not_before: not allowed outside test_mode: .*at least 79200$"),
            ({"warning_after": 50000}, r"warning_after: not allowed outside test_mode"),
        ]
        for settings, pattern in cases:
            with self.subTest(settings=settings):
                s = dict(self.settings, **settings)
                self.write(config.render(s))
                self.assertConfigError(r"^pecmilter: %s(:\d+)?: %s" % (re.escape(self.path),
                                                                      pattern))

    def test_test_mode_opens_the_test_switches(self):
        """The same values load with test_mode = "yes" (and only those: the
        "accept" values stay refused), and -n says the mode."""
        s = dict(self.settings, test_mode="yes", fixed_clock="2024-01-31T10:00:00Z",
                 retention_months=1, virus_retention_months=1, warning_after=3,
                 deadline_not_before=5, deadline_after=6)
        self.write(config.render(s))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertIn('test_mode = "yes";', out)
        self.write(config.render(dict(s, ordinary_mail="accept")))
        self.assertConfigError(r"ordinary_mail: \"accept\" is not allowed")

    def test_deadline_default_inside_the_window(self):
        """The 24 h notice falls due by default at 23 h 30 m, not at 24 h 00 m 00 s."""
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertIn("deadline_after = 84600;", out)
        self.assertIn("deadline_not_before = 79200;", out)

    def test_bad_role(self):
        self.settings["roles"] = {"pec-mx": "relay"}
        self.write(config.render(self.settings))
        self.assertConfigError(r"roles\.pec-mx: \"relay\" is not one of")

    def test_missing_required_key(self):
        del self.settings["sign_key"]
        self.write(config.render(self.settings))
        self.assertConfigError(re.escape(self.path) + r": sign_key: required setting is missing")

    def test_syntax_error(self):
        self.write(config.render(self.settings) + "domains = [ \"x\" \n")
        self.assertConfigError(re.escape(self.path) + r":\d+: syntax error")

    def test_missing_config_file(self):
        rc, out, err = run("-n", "-c", os.path.join(self.dir, "absent.conf"))
        self.assertEqual(rc, 78)
        self.assertRegex(err, r"absent\.conf: cannot read configuration: No such file")

    def test_world_readable_key_refused(self):
        key = os.path.join(self.dir, "key.pem")
        with open(pki.provider("a")["key"], "rb") as src, open(key, "wb") as dst:
            dst.write(src.read())
        os.chmod(key, 0o644)
        self.settings["sign_key"] = key
        self.write(config.render(self.settings))
        self.assertConfigError(r"sign_key: %s: private key is accessible by group or others "
                               r"\(mode 0644\)" % re.escape(key))
        # and the daemon proper refuses to start the same way
        rc, out, err = run("-f", "-c", self.path)
        self.assertEqual(rc, 78)
        self.assertIn("private key is accessible", err)
        self.assertFalse(os.path.exists(config.socket_path(self.settings)))

    def test_key_not_matching_certificate(self):
        self.settings["sign_key"] = pki.provider("b")["key"]
        self.write(config.render(self.settings))
        self.assertConfigError(r"^pecmilter: %s: the key does not match the certificate %s$"
                               % (re.escape(pki.provider("b")["key"]),
                                  re.escape(pki.provider("a")["cert"])))

    def test_garbage_index(self):
        """A broken LDIF: signed by the authority, or (tests only) unsigned."""
        bad = os.path.join(self.dir, "index.ldif")
        with open(bad, "w") as f:
            f.write("dn: providerName=X,o=postacert\nproviderCertificate;binary:: !!!\n")
        self.settings["index_source"] = "file:" + pki.sign(bad, bad + ".p7m")
        self.write(config.render(self.settings))
        self.assertConfigError(r"^pecmilter: index_source: .*index\.ldif\.p7m:2: ")
        self.settings.update(index_source="ldif:" + bad, test_mode="yes")
        self.write(config.render(self.settings))
        self.assertConfigError(r"^pecmilter: index_source: .*index\.ldif:2: ")

    def test_index_not_signed_by_the_signer(self):
        """Signed by a provider under the same root, or altered by one byte: refused."""
        by_b = pki.sign(pki.index(), os.path.join(self.dir, "by-b.p7m"), signer="b")
        self.settings["index_source"] = "file:" + by_b
        self.write(config.render(self.settings))
        self.assertConfigError(r"^pecmilter: index_source: .*by-b\.p7m: untrusted issuer")
        with open(pki.index_p7m(), "rb") as f:
            data = f.read()
        altered = os.path.join(self.dir, "altered.p7m")
        with open(altered, "wb") as f:
            f.write(data.replace(b"Gestore B", b"Gestore C", 1))
        self.settings["index_source"] = "file:" + altered
        self.write(config.render(self.settings))
        self.assertConfigError(r"index_source: .*altered\.p7m: signature does not match")

    def test_unsigned_index_is_a_test_setting(self):
        self.settings["index_source"] = "ldif:" + pki.index()
        self.write(config.render(self.settings))
        self.assertConfigError(r"index_source: not allowed outside test_mode: .*never as an "
                               r"unsigned file")
        self.settings["test_mode"] = "yes"
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"# warning: index_source: .*index\.ldif is an unsigned LDIF, "
                              r"taken as it is: a test setting")

    def test_index_source_needs(self):
        for changes, pattern in [
                ({"index_source": "http://x.test/i.p7m"},
                 r"index_source: \"http://x\.test/i\.p7m\" is not file:PATH"),
                ({"index_signer": ""}, r"index_signer: required with a signed index_source"),
                ({"index_tls_cert": pki.tls_client()[0]},
                 r"index_tls_key: index_tls_cert and index_tls_key go together"),
                ({"index_refresh": 172800}, r"index_refresh: not allowed outside test_mode: "
                                            r".*at least daily")]:
            with self.subTest(changes=changes):
                self.write(config.render(dict(self.settings, **changes)))
                self.assertConfigError(pattern)

    def test_index_from_the_cache(self):
        """The source gone, the last good copy serves (once a refresh kept one)."""
        cache = self.settings["index_cache"]
        os.makedirs(cache)
        with open(pki.index_p7m(), "rb") as src, open(os.path.join(cache, "index.p7m"),
                                                       "wb") as dst:
            dst.write(src.read())
        self.settings["index_source"] = "file:" + os.path.join(self.dir, "gone.p7m")
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertIn("# providers' index: 2 providers", out)
        os.unlink(os.path.join(cache, "index.p7m"))
        self.assertConfigError(r"index_source: .*gone\.p7m: No such file or directory")

    def test_check_reports_signer_and_index(self):
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        self.assertIn("<posta-certificata@pec-a.test>, sha1 %s" % pki.cert_sha1("a"), out)
        self.assertIn("# providers' index: 2 providers", out)

    def test_missing_certificate(self):
        self.settings["sign_cert"] = os.path.join(self.dir, "nocert.pem")
        self.write(config.render(self.settings))
        self.assertConfigError(r"signing certificate: .*nocert\.pem: No such file or directory")

    def test_unreadable_index(self):
        self.settings["index_source"] = "file:" + os.path.join(self.dir, "noindex.p7m")
        self.write(config.render(self.settings))
        self.assertConfigError(r"index_source: .*noindex\.p7m: No such file or directory")

    def test_sample_documents_every_key(self):
        """etc/pecmilter.conf names exactly the keys the schema has."""
        sample = os.path.join(env.SRC_DIR, "etc", "pecmilter.conf")
        with open(sample) as f:
            text = f.read()
        sample_keys = set(re.findall(r"^([a-z_]+) = ", text, re.M))
        self.write(config.render(self.settings))
        rc, out, err = run("-n", "-c", self.path)
        self.assertEqual(rc, 0, err)
        schema_keys = set(re.findall(r"^([a-z_]+) = ", out, re.M))
        self.assertEqual(sample_keys, schema_keys)
        # every key in the sample carries a comment block saying what it is
        for key in sample_keys:
            self.assertRegex(text, r"#[^\n]*\n(#[^\n]*\n)*%s = " % key)

    def test_sample_parses_apart_from_files(self):
        """The sample is valid syntax and schema: only its file paths are missing here."""
        rc, out, err = run("-n", "-c", os.path.join(env.SRC_DIR, "etc", "pecmilter.conf"))
        self.assertEqual(rc, 78)
        self.assertRegex(err, r"^pecmilter: signing certificate: /etc/pecmilter/cert\.pem: ")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
