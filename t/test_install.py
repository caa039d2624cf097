"""`cmake --install` into a DESTDIR puts every file where a mail admin looks.

Checked with the tools that will read the files: systemd-analyze verify for
the unit (its programs and manual pages resolved in the DESTDIR),
systemd-sysusers and systemd-tmpfiles against a scratch root for the
sysusers.d and tmpfiles.d entries, and the sample configuration against the
directories those entries and the unit provide.  A second installation
must leave an existing configuration alone.
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from pectest import config, env, pki


def cache_value(name):
    with open(os.path.join(env.BUILD_DIR, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
            if m:
                return m.group(1)
    raise KeyError(name)


def install(destdir):
    e = dict(os.environ, DESTDIR=destdir)
    p = subprocess.run(["cmake", "--install", env.BUILD_DIR], env=e, capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("cmake --install failed:\n" + p.stdout + p.stderr)
    return p.stdout


def sample_value(text, key):
    m = re.search(r'^%s = "([^"]*)";' % key, text, re.M)
    return m.group(1)


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dest = os.path.join(cls.tmp.name, "dest")
        cls.output = install(cls.dest)
        cls.prefix = cache_value("CMAKE_INSTALL_PREFIX")
        cls.unitdir = cache_value("PEC_SYSTEMD_UNITDIR")
        cls.tmpfilesdir = cache_value("PEC_TMPFILESDIR")
        cls.sysusersdir = cache_value("PEC_SYSUSERSDIR")
        with open(cls.d(cls.unitdir, "pecmilter.service")) as f:
            cls.unit = f.read()
        m = re.search(r"^ExecStart=(\S+) -f -c (\S+)$", cls.unit, re.M)
        cls.daemon, cls.config = m.group(1), m.group(2)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def d(cls, *parts):
        """A path inside the DESTDIR."""
        return os.path.join(cls.dest, *[p.lstrip("/") for p in parts])

    def test_every_file_is_installed(self):
        p = self.prefix
        want = [
            (p, "sbin/pecmilter"), (p, "sbin/pecctl"), (p, "bin/pecverify"),
            (p, "share/man/man8/pecmilter.8"), (p, "share/man/man8/pecctl.8"),
            (p, "share/man/man5/pecmilter.conf.5"), (p, "share/man/man1/pecverify.1"),
            (p, "share/doc/pecmilter/examples/pecmilter.conf"),
            (p, "share/doc/pecmilter/examples/postfix/main.cf"),
            (p, "share/doc/pecmilter/examples/postfix/master.cf"),
            (p, "share/doc/pecmilter/examples/sendmail/pecmilter.mc"),
            (p, "share/doc/pecmilter/examples/ldap/pec.schema"),
            (self.unitdir, "pecmilter.service"),
            (self.tmpfilesdir, "pecmilter.conf"),
            (self.sysusersdir, "pecmilter.conf"),
        ]
        for base, rel in want:
            self.assertTrue(os.path.isfile(self.d(base, rel)), os.path.join(base, rel))
        for prog in ("sbin/pecmilter", "sbin/pecctl", "bin/pecverify"):
            self.assertTrue(os.access(self.d(p, prog), os.X_OK), prog)
        # the unit runs the installed daemon with the installed configuration
        self.assertEqual(self.daemon, os.path.join(p, "sbin/pecmilter"))
        with open(self.d(self.config)) as f, \
                open(os.path.join(env.SRC_DIR, "etc", "pecmilter.conf")) as g:
            self.assertEqual(f.read(), g.read())

    def test_unit_is_what_a_milter_admin_expects(self):
        for line in ("Type=simple", "RuntimeDirectory=pecmilter", "User=pecmilter",
                     "ProtectSystem=strict", "ExecReload=/bin/kill -USR1 $MAINPID",
                     "RestartPreventExitStatus=78"):
            self.assertRegex(self.unit, r"(?m)^%s$" % re.escape(line))

    def test_systemd_analyze_verify_accepts_the_unit(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed (contrib/deps.sh test)")
        # verify resolves ExecStart= on the real root: point it at the DESTDIR's daemon,
        # and man: documentation at the DESTDIR's manual pages
        unitdir = os.path.join(self.tmp.name, "unit")
        os.makedirs(unitdir, exist_ok=True)
        unit = os.path.join(unitdir, "pecmilter.service")
        with open(unit, "w") as f:
            f.write(self.unit.replace("ExecStart=" + self.daemon,
                                      "ExecStart=" + self.d(self.daemon)))
        e = dict(os.environ, MANPATH=self.d(self.prefix, "share/man"))
        p = subprocess.run([analyze, "verify", unit], env=e, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_sysusers_and_tmpfiles_make_the_daemon_directories(self):
        for tool in ("systemd-sysusers", "systemd-tmpfiles"):
            if shutil.which(tool) is None:
                self.skipTest("%s is not installed (contrib/deps.sh test)" % tool)
        root = os.path.join(self.tmp.name, "root")
        os.makedirs(os.path.join(root, "etc"))
        for name in ("passwd", "group", "shadow", "gshadow"):
            open(os.path.join(root, "etc", name), "w").close()
        p = subprocess.run(["systemd-sysusers", "--root=" + root,
                            self.d(self.sysusersdir, "pecmilter.conf")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(root, "etc", "passwd")) as f:
            m = re.search(r"^pecmilter:x:(\d+):(\d+):[^:]*:/var/lib/pecmilter:", f.read(), re.M)
        self.assertIsNotNone(m, "sysusers.d made no pecmilter user")
        uid = int(m.group(1))
        p = subprocess.run(["systemd-tmpfiles", "--root=" + root, "--create",
                            self.d(self.tmpfilesdir, "pecmilter.conf")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        # every directory the sample configuration names belongs to the daemon's user
        with open(self.d(self.config)) as f:
            sample = f.read()
        dirs = {os.path.dirname(sample_value(sample, "store")),
                sample_value(sample, "seal_dir"), sample_value(sample, "maildir_root"),
                sample_value(sample, "quarantine_dir"),
                os.path.dirname(sample_value(sample, "milter_socket")[len("unix:"):]),
                os.path.dirname(sample_value(sample, "lmtp_socket")[len("unix:"):])}
        for d in sorted(dirs):
            st = os.stat(os.path.join(root, d.lstrip("/")))
            self.assertEqual(st.st_uid, uid, d)
            self.assertEqual(st.st_mode & 0o7777, 0o750, d)
        # and the unit lets the daemon write there under ProtectSystem=strict
        writable = re.search(r"^ReadWritePaths=(.*)$", self.unit, re.M).group(1).split()
        for d in dirs:
            self.assertTrue(d.startswith("/run/pecmilter") or
                            any(d == w or d.startswith(w + "/") for w in writable), d)

    def test_existing_configuration_is_kept(self):
        dest = os.path.join(self.tmp.name, "again")
        install(dest)
        conf = os.path.join(dest, self.config.lstrip("/"))
        with open(conf, "a") as f:
            f.write("# the admin's own edit\n")
        with open(conf) as f:
            before = f.read()
        out = install(dest)
        with open(conf) as f:
            self.assertEqual(f.read(), before)
        self.assertIn("Keeping: " + conf, out)

    def test_daemon_runs_as_the_units_user(self):
        """As under the unit: started as User= already, with that same `user` in the
        configuration (the sample's), -f in the foreground; SIGTERM stops it cleanly."""
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            self.skipTest("needs root and setpriv(1)")
        os.chmod(self.tmp.name, 0o755)   # nobody reaches the DESTDIR's daemon and work
        work = os.path.join(self.tmp.name, "run-as-nobody")
        os.makedirs(work)
        nobody = pwd.getpwnam("nobody")
        os.chown(work, nobody.pw_uid, nobody.pw_gid)
        os.chmod(work, 0o750)
        key = os.path.join(work, "key.pem")
        shutil.copyfile(pki.provider("a")["key"], key)
        os.chmod(key, 0o600)
        os.chown(key, nobody.pw_uid, nobody.pw_gid)
        conf = os.path.join(work, "pecmilter.conf")
        s = config.write(conf, "a", sign_key=key, user="nobody",
                         seal_dir=os.path.join(work, "registro"))
        sock = config.socket_path(s)
        as_nobody = [setpriv, "--reuid=nobody", "--regid=%d" % nobody.pw_gid, "--init-groups",
                     self.d(self.daemon)]
        check = subprocess.run(as_nobody + ["-n", "-c", conf], capture_output=True, text=True,
                               timeout=30)
        self.assertEqual((check.returncode, check.stderr), (0, ""))
        proc = subprocess.Popen(as_nobody + ["-f", "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(sock) and proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIsNone(proc.poll(), "pecmilter exited")
            self.assertTrue(os.path.exists(sock), "no milter socket")
            self.assertEqual(os.stat(sock).st_uid, nobody.pw_uid)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, out)
        self.assertFalse(os.path.exists(sock), "socket left behind")


if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
