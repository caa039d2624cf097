"""Write a pecmilter.conf for a test provider (a, b, ...) of the test PKI."""
import os
import tempfile
import time

from pectest import pki


def _value(v):
    if isinstance(v, bool):
        raise TypeError("no boolean keys in pecmilter.conf")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, dict) for x in v):      # groups go in a list: ( {...}, {...} )
            return "( " + ", ".join(_value(x) for x in v) + " )"
        return "[ " + ", ".join(_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, _value(x)) for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings(provider, workdir, **overrides):
    """The settings of a test provider's configuration, as a dict."""
    pki.ensure()
    p = pki.provider(provider)
    s = {
        "provider_name": p["provider_name"],
        "domains": [p["domain"]],
        "service_address": p["service"],
        "receipt_address": p["receipt"],
        "sign_cert": p["cert"],
        "sign_chain": p["chain"],
        "sign_key": p["key"],
        "trust_anchors": pki.trust(),
        "index_source": "file:" + pki.index_p7m(),
        "index_signer": pki.authority(),
        "index_cache": os.path.join(workdir, "index"),
        "store": os.path.join(workdir, "pecmilter.db"),
        "milter_socket": "unix:" + os.path.join(workdir, "milter.sock"),
        "lmtp_socket": "unix:" + os.path.join(workdir, "lmtp.sock"),
        "umask": "000",
        "timezone": "Europe/Rome",
        # nothing is scanned unless a test starts a clamd (pectest.clamd) and says so
        "antivirus": "none",
        "quarantine_dir": os.path.join(workdir, "quarantine"),
        # the MTA's TLS policy table (pectest.provider's Postfix reads it)
        "tls_policy_file": os.path.join(workdir, "tls-policy"),
        # the built-in Maildirs; nothing makes a mailbox at delivery: add_mailboxes()
        "maildir_root": os.path.join(workdir, "mail"),
    }
    s.update(overrides)
    return s


def render(s):
    """libconfig text for a settings dict."""
    return "".join("%s = %s;\n" % (k, _value(v)) for k, v in s.items())


def write(path, provider="a", mailboxes=(), **overrides):
    """Write a configuration for PROVIDER next to PATH; returns the settings.  The
    default maildir_root is made (an administrator's job, as the mailboxes are), and
    the Maildir mailboxes of MAILBOXES in it (add_mailboxes)."""
    workdir = os.path.dirname(os.path.abspath(path))
    s = settings(provider, workdir, **overrides)
    with open(path, "w") as f:
        f.write(render(s))
    if "maildir_root" not in overrides:
        os.makedirs(s["maildir_root"], exist_ok=True)
    if mailboxes:
        add_mailboxes(path, *mailboxes)
    return s


class Scratch:
    """unittest.TestCase mixin for tests of the configuration itself: provider a's
    settings (self.settings) for a fresh directory (self.dir, removed after each
    test), to be written at self.path.  seal_dir lies inside it: pecmilter -n checks
    that the seals' directory can be created."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.path = os.path.join(self.dir, "pecmilter.conf")
        self.settings = settings("a", self.dir, seal_dir=os.path.join(self.dir, "registro"))

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, text=None):
        """TEXT, or self.settings rendered, at self.path."""
        with open(self.path, "w") as f:
            f.write(render(self.settings) if text is None else text)


def socket_path(s, key="milter_socket"):
    v = s[key]
    return v[len("unix:"):] if v.startswith("unix:") else v


def wait_sockets(proc, s, timeout):
    """Wait until the pecmilter PROC, configured with settings S, has made its milter
    and LMTP sockets: True, or False when it exited or TIMEOUT seconds went by."""
    deadline = time.monotonic() + timeout
    socks = [socket_path(s, k) for k in ("milter_socket", "lmtp_socket")]
    while not all(os.path.exists(p) for p in socks):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def add_mailboxes(path, *addresses):
    """Make the Maildir mailboxes of ADDRESSES as an administrator does: `pecctl -c PATH
    mailbox add` (nothing makes a mailbox at its first delivery).  Its output."""
    import subprocess
    from pectest import env
    prog = os.path.join(os.environ.get("PEC_BUILD_DIR") or env.BUILD_DIR, "milter", "pecctl")
    r = subprocess.run([prog, "-c", path, "mailbox", "add"] + list(addresses),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("pecctl mailbox add: exit %d: %s%s"
                           % (r.returncode, r.stdout, r.stderr))
    return r.stdout
