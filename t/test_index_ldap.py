"""The providers' index read from the central LDAP directory, kept fresh by the
daemons themselves (issue 19).

A real slapd (Debian's, private configuration on loopback, the RFC 6109 schema
of contrib/ldap/pec.schema, StartTLS required) holds the test index.  Providers
A and B run pecmilter with index_source pointing at it, index_refresh 2 s and
index_max_age 6 s (test_mode).  Checked through the reception role (the milter
protocol, pectest.milter), which is what "known" means to a provider: a busta
signed by the rogue provider is ordinary mail to A until the rogue's record,
as `pecctl index record` prints it, is added to slapd; within one refresh
interval, with no reload, A and B both know it and A takes the rogue's busta
as PEC.  With slapd stopped the copy in use stays (the rogue is still known),
the refresh failure is logged, and past index_max_age the log warns and
pecctl status shows it; B restarted while slapd is down starts from its last
good copy, which it kept signed with its own key.  The latency from ldapadd
to each daemon's refresh is printed.
"""
import os
import re
import subprocess
import time
import unittest

from pectest import config, daemon, e2e, env, pki
from pectest import postfix as pf
from pectest.slapd import Slapd, have_slapd

PECBUSTA = os.path.join(env.BUILD_DIR, "t", "tools", "pecbusta")
REFRESH, MAX_AGE = 2, 6


class LdapIndex(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not have_slapd():
            env.skip("slapd is not installed (contrib/deps.sh test installs it)")
        pki.ensure()
        cls.daemons = {}
        e2e.start(cls, e2e.workdir("pec-index-ldap-"))

    @classmethod
    def _start(cls, work):
        cls.slapd = Slapd(work)
        with open(pki.index()) as f:
            cls.slapd.load(f.read())
        cls.slapd.start()
        cls.conf = {}
        for name in ("a", "b"):
            d = os.path.join(work, name)
            os.makedirs(d)
            cls.conf[name] = os.path.join(d, "pecmilter.conf")
            config.write(cls.conf[name], name, index_source=cls.slapd.url,
                         index_tls_ca=pki.trust(), index_refresh=REFRESH,
                         index_max_age=MAX_AGE, test_mode="yes", reinject="smtp:127.0.0.1:9",
                         seal_dir=os.path.join(d, "registro"),
                         roles={"pec-mx": "reception"}, mailboxes=["luigi@pec-a.test"] if name == "a" else [])
            cls.start_daemon(name)

    @classmethod
    def start_daemon(cls, name):
        d = daemon.start(cls.conf[name])
        pf.register_process(d.proc.pid, cls.tmp)
        cls.daemons[name] = d
        return d

    @classmethod
    def _stop(cls):
        e2e.stop_all(list(cls.daemons.values()) + [getattr(cls, "slapd", None)], cls.tmp)

    @classmethod
    def tearDownClass(cls):
        bad = [e for e in (e2e.daemon_exit(n, d) for n, d in cls.daemons.items()) if e]
        cls._stop()
        if bad:
            raise AssertionError("\n".join(bad))

    # -- helpers ---------------------------------------------------------------

    def wait_log(self, name, pattern, timeout=20, after=0):
        """The first match of PATTERN in daemon NAME's log past offset AFTER."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.daemons[name].stderr(), after)
            if m:
                return m
            if time.monotonic() > deadline:
                self.fail("no %r in pecmilter %s's log:\n%s"
                          % (pattern, name, self.daemons[name].stderr()[-3000:]))
            time.sleep(0.05)

    def rogue_busta(self):
        raw = e2e.message("Dal gestore nuovo", "luigi@pec-a.test", "tizio@pec-rogue.test")
        path = e2e.write(self.tmp, "orig-rogue.eml", raw)
        r = subprocess.run([PECBUSTA, "-p", pki.PKI, "-s", "rogue", "-n", "Gestore Rogue S.p.A.",
                            path], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def receive(self, name, raw):
        """RAW through daemon NAME's reception role: the summary it logs."""
        offset = len(self.daemons[name].stderr())
        with self.daemons[name].milter() as m:
            m.filter_macros = False
            m.negotiate()
            res = m.send_message(raw, "<posta-certificata@pec-rogue.test>",
                                 ["<luigi@pec-a.test>"], connect_macros={"{daemon_name}": "pec-mx"})
        self.assertEqual(res.reply.code, "continue", res.reply)
        return self.wait_log(name, r"reception: from=\S+ size=\d+: ([^\n]*)",
                             after=offset).group(1)

    def rogue_record(self):
        """The rogue provider's record, as its own pecctl prints it."""
        conf = os.path.join(self.tmp, "rogue.conf")
        config.write(conf, "rogue", domains=["pec-rogue.test"],
                     ldif_location_url="https://pec-rogue.test/record.p7m")
        p = subprocess.run([env.program("pecctl"), "-c", conf, "index", "record"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    # -- the test --------------------------------------------------------------

    def test_index_from_ldap(self):
        for name in ("a", "b"):
            self.wait_log(name, r"providers' index: refreshed from ldap://\S+: 2 providers")
        # LDAPS too; a server our index_tls_ca does not vouch for is refused
        for changes, rc, pattern in [
                ({"index_source": self.slapd.ldaps_url}, 0, r"# providers' index: 2 providers"),
                ({"index_tls_ca": pki.pecca()}, 78, r"index_source: ldap://\S+: StartTLS failed"),
                ({"index_source": self.slapd.ldaps_url, "index_tls_ca": pki.pecca()}, 78,
                 r"index_source: ldaps://\S+: Can't contact LDAP server")]:
            with self.subTest(changes=changes):
                conf = os.path.join(self.tmp, "check.conf")
                s = dict(index_source=self.slapd.url, index_tls_ca=pki.trust(),
                         seal_dir=os.path.join(self.tmp, "reg"))
                s.update(changes)
                config.write(conf, "a", **s)
                p = subprocess.run([env.program("pecmilter"), "-n", "-c", conf],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, rc, p.stderr)
                self.assertRegex(p.stdout + p.stderr, pattern)
        busta = self.rogue_busta()
        self.assertRegex(self.receive("a", busta),
                         r"^ordinary mail \(signer not in the providers' index")

        # a provider more in the directory: both know it within one refresh, no reload
        offsets = {n: len(d.stderr()) for n, d in self.daemons.items()}
        self.slapd.add(self.rogue_record())
        added = time.monotonic()
        latency = {}
        for name in ("a", "b"):
            self.wait_log(name, r"refreshed from ldap://\S+: 3 providers", timeout=REFRESH + 10,
                          after=offsets[name])
            latency[name] = time.monotonic() - added
        print("refresh latency after ldapadd (index_refresh %d s): A %.2f s, B %.2f s"
              % (REFRESH, latency["a"], latency["b"]))
        self.assertLess(max(latency.values()), REFRESH + 3)
        self.assertRegex(self.receive("a", busta), r"^busta \S+ from Gestore Rogue S\.p\.A\.: "
                                                   r"presa in carico")

        # the directory down: the copy in use stays, and grows old
        offset = len(self.daemons["a"].stderr())
        self.slapd.stop()
        self.wait_log("a", r"providers' index: cannot refresh from ldap://\S+, the copy in use "
                           r"stays: .*Can't contact LDAP server", after=offset)
        self.assertRegex(self.receive("a", busta), r"^busta \S+ from Gestore Rogue")
        self.wait_log("a", r"providers' index: the copy in use was fetched \d+ s ago, over "
                           r"index_max_age \(%d s\)" % MAX_AGE, timeout=MAX_AGE + 10, after=offset)
        p = subprocess.run([env.program("pecctl"), "-c", self.conf["a"], "status"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertRegex(p.stdout, r"index: +ldap://\S+, fetched .* ago .*, OVER index_max_age")
        self.assertRegex(p.stdout, r"the providers' index was fetched .* over index_max_age")

        # B starts again with the directory still down: from the copy it kept, signed by B
        self.assertIsNone(e2e.daemon_exit("b", self.daemons.pop("b")))
        b = self.start_daemon("b")
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(self.conf["b"]), "index",
                                                    "index-ldap.p7m")))
        self.wait_log("b", r"cannot refresh from ldap://\S+, the copy in use stays")
        self.assertNotIn("index_cache: the kept copy is not used", b.stderr())
        p = subprocess.run([env.program("pecctl"), "-c", self.conf["b"], "index", "show"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"signed by: C=IT, O=Gestore B S\.p\.A\.")
        self.assertRegex(p.stdout, r"providers: 3\n(.*\n)*  Gestore Rogue S\.p\.A\.: 1 domain")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
