"""Private Sendmail instances on loopback, for tests (standard library only).

    from pectest import sendmail as sm
    sm.ensure()                                   # or env.skip() with sm.unavailable()
    a = sm.Sendmail(work, "a", ip=loopback_ip(1), mydomain="pec-a.test",
                    pec_domains=["pec-a.test"], milter="unix:/.../milter.sock",
                    lmtp_socket="/.../lmtp.sock", submission_port=free_port(ip),
                    reinject_port=free_port(ip), sasl_users={"mario@pec-a.test": "pw"},
                    transports={"pec-b.test": ("127.0.0.12", 25025)})
    with a:
        a.send("mario@pec-a.test", [...], raw, port=a.submission_port,
               auth=("mario@pec-a.test", "pw"))

Debian's sendmail-bin conflicts with postfix, so Sendmail is never installed: the
packages sendmail-bin, sendmail-base and sendmail-cf are fetched once with `apt-get
download` into CACHE (PEC_SENDMAIL_CACHE, default /var/cache/pecmilter-test/sendmail)
and unpacked there with `dpkg -x`; the binary needs libwrap0, liblockfile1 and m4
(contrib/deps.sh test installs them).  Without network and without a cache,
unavailable() says why and tests skip.

The configuration is an .mc that includes contrib/sendmail/pecmilter.mc, the snippet
an administrator uses, with its PECMILTER_* values (SUBSTITUTION), what any site's
sendmail.mc has (SITE) and what a private instance needs (ENVIRONMENT), each listed
with its reason; deviations() names anything else, and any value other than the
snippet's: in the .mc (mc_deviations(): a PECMILTER_* value that is not a domain,
address, port or path as SUBSTITUTION_KIND says, a snippet setting set again to
another value, an option line) and in the sendmail.cf m4 makes of it
(cf_deviations(): every option, filter and mailer the snippet sets has the value an
administrator's minimal sendmail.mc with the same substitution gets).  So the tests
exercise exactly the snippet: the listeners pec-mx (port),
pec-submission (submission_port, M=a: AUTH required) and pec-reinject (reinject_port,
no filter), the filter with F=T, and the PEC domains delivered over LMTP to
lmtp_socket.  Each instance lives in WORKDIR/NAME/sendmail/{etc,queue,log,dev} and
runs as root in the foreground (`sendmail -bD -q1s -C etc/sendmail.cf`), handed to the
cleanup layers of pectest.postfix (register_process: atexit and the reaper), so
nothing survives the test, even after SIGKILL.  Sendmail refuses sockets below a world-writable
directory, so WORKDIR must not be under /tmp: workdir() makes one under /run/pectest.

tls_policy: the file `pecctl tls-policy --format sendmail` wrote; its lines go into
the access map (FEATURE(`access_db'), made with makemap), so mail to those domains
goes over TLS or waits.

transports: DOMAIN -> (IP, PORT): mail for DOMAIN is relayed over SMTP to IP:PORT
(one mailer per destination, since Sendmail's port is a mailer argument).  Outgoing
SMTP binds ip, as Postfix's smtp_bind_address does.

sasl_users: {login: password}.  Sendmail's SASL is Cyrus SASL: the harness writes
etc/sasl/Sendmail.conf (pwcheck_method auxprop, sasldb in etc/sasl/sasldb2, made with
saslpasswd2) and points Cyrus at it with SASL_CONF_PATH, set in the .cf with an E
line (Sendmail keeps only the environment its configuration names).  Cyrus honours
SASL_CONF_PATH only in a process that is not set-group-id, so the unpacked binary is
copied without its setgid bit.

Sendmail logs only through syslog(3), to /dev/log, and looks its own host name up
before it reads its configuration (an unqualified one costs a 60 s sleep).  So each
instance runs in namespaces of its own (unshare --uts --mount): host name mx.MYDOMAIN,
and /dev a bind mount of sendmail/dev, where the null, zero, random, urandom and tty
devices are bound and log is a socket this process reads into log/maillog (log()).
The machine's /dev and host name are untouched.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from . import env, pki
from . import postfix as pf

CACHE = os.environ.get("PEC_SENDMAIL_CACHE") or "/var/cache/pecmilter-test/sendmail"
PACKAGES = ("sendmail-bin", "sendmail-base", "sendmail-cf")
SNIPPET = os.path.join(env.SRC_DIR, "contrib", "sendmail", "pecmilter.mc")
ROOT = os.path.join(CACHE, "root")
BINARY = os.path.join(CACHE, "sendmail")           # the unpacked binary, not setgid
MAKEMAP = os.path.join(ROOT, "usr", "libexec", "sendmail", "makemap")
CF_DIR = os.path.join(ROOT, "usr", "share", "sendmail", "cf")
RUN_BASE = "/run/pectest"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
DEVICES = ("null", "zero", "random", "urandom", "tty")
SASLPASSWD = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"

_why = None


def _libs_missing():
    p = subprocess.run(["ldd", BINARY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return [l.split()[0] for l in p.stdout.decode().splitlines() if "not found" in l]


def unavailable():
    """None when Sendmail can run here (fetching and unpacking it if need be), else
    why not."""
    global _why
    if _why is not None:
        return _why or None
    _why = _prepare() or ""
    return _why or None


def _prepare():
    if os.geteuid() != 0:
        return "Sendmail tests run as root"
    if not shutil.which("m4"):
        return "m4 is not installed (contrib/deps.sh test installs it)"
    # each instance gets its own host name and /dev (see the module docstring);
    # a container that forbids new namespaces cannot run it
    p = subprocess.run([UNSHARE, "--uts", "--mount", "true"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if p.returncode != 0:
        return ("unshare --uts --mount is refused here (%s): a private Sendmail needs its own "
                "host name and /dev" % p.stdout.decode("utf-8", "replace").strip())
    if not (os.path.exists(BINARY) and os.path.isdir(CF_DIR)):
        os.makedirs(CACHE, exist_ok=True)
        debs = [n for n in os.listdir(CACHE) if n.endswith(".deb")]
        if not all(any(n.startswith(p + "_") for n in debs) for p in PACKAGES):
            get = lambda *a: subprocess.run(["apt-get", "-q"] + list(a), cwd=CACHE,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            p = get("download", *PACKAGES)
            if p.returncode != 0:
                # a fresh machine may have no package lists yet
                get("update")
                p = get("download", *PACKAGES)
            if p.returncode != 0:
                return ("apt-get download %s failed (no network and nothing cached in %s): %s"
                        % (" ".join(PACKAGES), CACHE,
                           " | ".join([l for l in p.stdout.decode("utf-8", "replace")
                                       .splitlines() if l.startswith("E:")][:2])))
            debs = [n for n in os.listdir(CACHE) if n.endswith(".deb")]
        tmp = ROOT + ".new"
        shutil.rmtree(tmp, ignore_errors=True)
        for n in sorted(debs):
            p = subprocess.run(["dpkg", "-x", os.path.join(CACHE, n), tmp],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if p.returncode != 0:
                return "dpkg -x %s: %s" % (n, p.stdout.decode("utf-8", "replace"))
        shutil.rmtree(ROOT, ignore_errors=True)
        os.rename(tmp, ROOT)
        shutil.copyfile(os.path.join(ROOT, "usr", "libexec", "sendmail", "sendmail"),
                        BINARY + ".new")
        os.chmod(BINARY + ".new", 0o755)              # no setgid: see the docstring
        os.rename(BINARY + ".new", BINARY)
    missing = _libs_missing()
    if missing:
        return ("the unpacked Sendmail needs %s (contrib/deps.sh test installs libwrap0 "
                "and liblockfile1)" % ", ".join(missing))
    return None


def workdir(prefix):
    """A fresh directory for a test's instances, mode 0755.  Not under /tmp: Sendmail
    refuses a milter or LMTP socket below a world-writable directory."""
    os.makedirs(RUN_BASE, exist_ok=True)
    os.chmod(RUN_BASE, 0o755)
    d = tempfile.mkdtemp(prefix=prefix, dir=RUN_BASE)
    os.chmod(d, 0o755)
    return d


def ensure():
    why = unavailable()
    if why:
        env.skip(why)


class SendmailError(RuntimeError):
    pass


# What the harness's .mc sets besides including contrib/sendmail/pecmilter.mc, by
# m4 name, each with its reason; mc_deviations() names anything else (issue 17).
# The snippet's own settings: the PECMILTER_* values its header lists.  Their values
# are the documented substitution (domains, addresses, ports, paths) and nothing
# else: SUBSTITUTION_KIND says which, and a value of another shape is a deviation
# (the snippet pastes them into DAEMON_OPTIONS and INPUT_MAIL_FILTER, where a
# "port" of `25, M=E' would change a listener).
SUBSTITUTION = {
    "PECMILTER_MILTER": "pecmilter's milter_socket",
    "PECMILTER_LMTP": "pecmilter's lmtp_socket",
    "PECMILTER_DOMAINS": "the provider's PEC domains",
    "PECMILTER_ADDR": "the instance's loopback address",
    "PECMILTER_MTA_PORT": "its port 25",
    "PECMILTER_MSA_PORT": "its submission port",
    "PECMILTER_REINJECT_ADDR": "its reinjection listener, on its loopback address",
    "PECMILTER_REINJECT_PORT": "and port",
    "PECMILTER_TLS_CERT": "the test PKI's server certificate",
    "PECMILTER_TLS_KEY": "and key",
    "PECMILTER_TLS_CA": "the test PKI's root, standing for the public CAs",
}
_PATH = r"/[A-Za-z0-9_./+-]+"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_PORT = r"\d{1,5}"
SUBSTITUTION_KIND = {
    "PECMILTER_MILTER": ("a milter socket", r"(?:unix|local):%s|inet6?:%s@(?:%s|%s)"
                         % (_PATH, _PORT, _IPV4, _DOMAIN)),
    "PECMILTER_LMTP": ("a path", _PATH),
    "PECMILTER_DOMAINS": ("domains", r"%s(?: %s)*" % (_DOMAIN, _DOMAIN)),
    "PECMILTER_ADDR": ("an address", _IPV4),
    "PECMILTER_MTA_PORT": ("a port", _PORT),
    "PECMILTER_MSA_PORT": ("a port", _PORT),
    "PECMILTER_REINJECT_ADDR": ("an address", _IPV4),
    "PECMILTER_REINJECT_PORT": ("a port", _PORT),
    "PECMILTER_TLS_CERT": ("a path", _PATH),
    "PECMILTER_TLS_KEY": ("a path", _PATH),
    "PECMILTER_TLS_CA": ("a path", _PATH),
}
# What any Sendmail administrator's sendmail.mc has, PEC or not.
SITE = {
    "confDOMAIN_NAME": "the machine's name",
    "confPRIVACY_FLAGS": "Debian's sendmail.mc default",
    "confDEF_USER_ID": "the unprivileged user of deliveries",
    "confAUTH_MECHANISMS": "README: Sendmail's SASL (a sasldb here)",
    "TRUST_AUTH_MECH": "likewise",
    "access_db": "the snippet's header: the access map holding the TLS policy table",
    "nouucp": "no UUCP addresses",
    "OSTYPE": "every sendmail.mc names its system",
    "MAILER": "the snippet's header: MAILER(`smtp') after it",
}
# What only a private instance on loopback needs.
ENVIRONMENT = {
    "confCF_VERSION": "names the test configuration",
    "VERSIONID": "likewise",
    "confPID_FILE": "files of its own under the test's directory, nothing of /etc/mail",
    "STATUS_FILE": "likewise",
    "HELP_FILE": "likewise",
    "QUEUE_DIR": "likewise",
    "ALIAS_FILE": "likewise: no local delivery",
    "confCW_FILE": "likewise",
    "confCT_FILE": "likewise",
    "confCR_FILE": "likewise",
    "confSERVICE_SWITCH_FILE": "no system name service: files only",
    "confHOSTS_FILE": "likewise",
    "confDONT_PROBE_INTERFACES": "only its own loopback address is its",
    "confBIND_OPTS": "no DNS on the test network",
    "accept_unresolvable_domains": "no DNS: the test domains resolve nowhere",
    "nocanonify": "no DNS to canonify names with",
    "confLOG_LEVEL": "what the tests read in the log",
    "confMILTER_LOG_LEVEL": "likewise",
    "confMIN_QUEUE_AGE": "tests wait for retries in seconds",
    "confTO_CONNECT": "likewise",
    "confTO_ICONNECT": "likewise",
    "confDELIVERY_MODE": "a test's submission returns before delivery, as with Postfix",
    "CLIENT_OPTIONS": "outgoing SMTP binds the instance's loopback address, so its peer "
                      "sees who it is",
}
# The .mc's macro calls that set nothing of their own: the m4 frame, the snippet's
# include, and the sections holding the E line for SASL_CONF_PATH and the transports
# (one mailer per peer's loopback port, standing for MX records).
_FRAME = ("divert", "include", "LOCAL_CONFIG", "LOCAL_RULE_0", "MAILER_DEFINITIONS")


def _m4_value(text, i):
    """The m4 argument of TEXT starting at index I (after blanks): (its text with the
    outer quotes removed, the index after it)."""
    while i < len(text) and text[i] in " \t":
        i += 1
    if text.startswith("`", i):
        depth, j = 0, i
        while j < len(text):
            if text[j] == "`":
                depth += 1
            elif text[j] == "'":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        value, end = text[i + 1:j], j + 1
        while value.startswith("`") and value.endswith("'"):
            value = value[1:-1]
        return value, end
    m = re.compile(r"[^,)]*").match(text, i)
    return m.group(0).strip(), m.end()


def mc_settings(text):
    """The settings of .mc TEXT, in order: (name, value) for each define(`NAME',
    VALUE) and FEATURE(`NAME'[, ARGS]) (nested ones too, as the snippet's defaults
    sit inside ifdef()), and (MACRO, arguments) for any other top-level macro call.
    Comment lines (dnl) are left out."""
    text = re.sub(r"(?m)^dnl\b.*\n?", "", text)
    out = []
    for m in re.finditer(r"\b(define|FEATURE)\(`(\w+)'", text):
        i = m.end()
        value = ""
        if text.startswith(",", i):
            value, i = _m4_value(text, i + 1)
            while text.startswith(",", i):             # FEATURE's further arguments
                more, i = _m4_value(text, i + 1)
                value += ", " + more
        out.append((m.group(2), value))
    for m in re.finditer(r"(?m)^([A-Za-z_]\w*)(?:\((.*)\))?(?:dnl)?\s*$", text):
        if m.group(1) not in ("define", "FEATURE", "dnl", "ifdef") \
                and (m.group(2) is not None or m.group(1).isupper()):
            out.append((m.group(1), m.group(2) or ""))
    return out


def snippet_settings():
    """{name: [values]} of what contrib/sendmail/pecmilter.mc sets: its PECMILTER_*
    defaults, its conf* values, its FEATUREs and other macro calls (DAEMON_OPTIONS
    three times)."""
    out = {}
    with open(SNIPPET) as f:
        for name, value in mc_settings(f.read()):
            out.setdefault(name, []).append(value)
    return out


def mc_deviations(text):
    """What the .mc TEXT sets beyond the shipped snippet, a list of strings naming
    each setting, empty when the instance runs the snippet as shipped: a PECMILTER_*
    value that is not the substitution its kind allows, a snippet setting with
    another value than the snippet's, an option line of its own, and anything that
    is neither SITE nor ENVIRONMENT."""
    shipped = snippet_settings()
    out = []
    for name, value in mc_settings(text):
        if name in SUBSTITUTION:
            kind, pattern = SUBSTITUTION_KIND[name]
            if not re.fullmatch(pattern, value):
                out.append("%s = %s: not %s (the documented substitution)"
                           % (name, value, kind))
        elif name in _FRAME:
            if name == "include" and not re.fullmatch(
                    r"`?(%s|%s)'?" % (re.escape(os.path.join(CF_DIR, "m4", "cf.m4")),
                                      re.escape(SNIPPET)), value):
                out.append("include(%s): neither cf.m4 nor the snippet" % value)
        elif name in shipped:
            if value not in shipped[name]:
                out.append("%s = %s: the snippet says %s"
                           % (name, value, " | ".join(shipped[name])))
        elif name not in SITE and name not in ENVIRONMENT:
            out.append("%s = %s: neither in the snippet nor site or environment-only"
                       % (name, value))
    for m in re.finditer(r"(?m)^O ([A-Za-z]\w*)(?:=(.*))?$", text):
        out.append("%s = %s: an option line of the harness's own"
                   % (m.group(1), (m.group(2) or "").strip()))
    return out


def _options(cf):
    """The sendmail.cf text CF's O lines, {option: [values in order]}, the filter's X
    lines as option "X<name>", and the PEC mailer's definition as "M<name>"."""
    out = {}
    lines = cf.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"O (\w+)(?:=(.*))?$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2) or "")
        elif re.match(r"X\w", line):
            name, _, rest = line[1:].partition(",")
            out.setdefault("X" + name, []).append(rest.strip())
        elif re.match(r"M\w", line):
            name, _, rest = line[1:].partition(",")
            j = i + 1
            while j < len(lines) and lines[j][:1] in (" ", "\t"):
                rest += " " + lines[j].strip()
                j += 1
            out.setdefault("M" + name, []).append(" ".join(rest.split()))
    return out


def _m4(text):
    p = subprocess.run(["m4", "-D_CF_DIR_=" + CF_DIR + "/"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0 or p.stderr.strip():
        raise SendmailError("m4: %s" % p.stderr.decode("utf-8", "replace"))
    return p.stdout.decode("utf-8", "replace")


def cf_deviations(mc_text, substitution):
    """What Sendmail would run with the .mc MC_TEXT against the shipped snippet, in the
    generated sendmail.cf: every option, filter and mailer the snippet sets must have
    there the value an administrator's minimal sendmail.mc (cf.m4, OSTYPE, the
    PECMILTER_* values SUBSTITUTION {name: value}, the snippet, MAILER(`smtp')) gets.
    A list of strings naming each one that differs; catches what mc_deviations() cannot
    read (a LOCAL_CONFIG option line, a define after the include)."""
    head = ["include(`%s')dnl" % os.path.join(CF_DIR, "m4", "cf.m4"), "OSTYPE(`linux')dnl"]
    head += ["define(`%s', `%s')dnl" % kv for kv in sorted(substitution.items())]
    tail = ["MAILER(`smtp')dnl"]
    shipped = _options(_m4("\n".join(head + ["include(`%s')dnl" % SNIPPET] + tail) + "\n"))
    bare = _options(_m4("\n".join(head + tail) + "\n"))
    got = _options(_m4(mc_text))
    out = []
    for name, want in sorted(shipped.items()):
        if bare.get(name) == want:
            continue                        # not the snippet's: Sendmail's default
        if got.get(name) != want:
            out.append("sendmail.cf %s: %s, the snippet gives %s"
                       % (name, " | ".join(got.get(name, ["(unset)"])), " | ".join(want)))
    return out


class Sendmail:
    """One private Sendmail instance.  See the module docstring."""

    def __init__(self, workdir, name, ip="127.0.0.1", port=None, mydomain="pec-a.test",
                 pec_domains=(), milter=None, lmtp_socket=None, submission_port=None,
                 reinject_port=None, transports=None, sasl_users=None, tls_policy=None):
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError("bad instance name %r" % name)
        self.workdir = os.path.realpath(workdir)
        self.name = name
        self.ip = ip
        self.port = port or pf.free_port(ip)
        self.mydomain = mydomain.lower()
        self.pec_domains = [d.lower() for d in pec_domains]
        self.milter = milter
        self.lmtp_socket = lmtp_socket
        self.submission_port = submission_port or pf.free_port(ip)
        self.reinject_port = reinject_port or pf.free_port(ip)
        self.transports = dict(transports or {})
        self.sasl_users = dict(sasl_users or {})
        self.tls_policy = tls_policy
        self.root = os.path.join(self.workdir, name, "sendmail")
        self.etc = os.path.join(self.root, "etc")
        self.queue = os.path.join(self.root, "queue")
        self.logdir = os.path.join(self.root, "log")
        self.cf = os.path.join(self.etc, "sendmail.cf")
        self.maillog = os.path.join(self.logdir, "maillog")
        self.dev = os.path.join(self.root, "dev")
        self.tls = os.path.join(self.etc, "tls")
        self.access_map = os.path.join(self.etc, "access")
        self.proc = None

    # -- configuration ------------------------------------------------------

    def mc(self):
        """The instance's .mc text."""
        sasl = os.path.join(self.etc, "sasl")
        q = lambda s: "`%s'" % s
        lines = [
            "divert(-1)",
            "# generated by pectest.sendmail for instance %s" % self.name,
            "divert(0)dnl",
            "include(%s)dnl" % q(os.path.join(CF_DIR, "m4", "cf.m4")),
            "VERSIONID(`pectest %s')dnl" % self.name,
            "OSTYPE(`linux')dnl",
            # nothing of /etc/mail, /var/run or the system's name service
            "define(`confDOMAIN_NAME', %s)dnl" % q("mx." + self.mydomain),
            "define(`confCF_VERSION', `pectest')dnl",
            "define(`confPID_FILE', %s)dnl" % q(os.path.join(self.root, "sendmail.pid")),
            "define(`STATUS_FILE', %s)dnl" % q(os.path.join(self.logdir, "statistics")),
            "define(`HELP_FILE', %s)dnl" % q(os.path.join(self.etc, "helpfile")),
            "define(`QUEUE_DIR', %s)dnl" % q(self.queue),
            "define(`ALIAS_FILE', `')dnl",
            "define(`confCW_FILE', `-o %s')dnl" % os.path.join(self.etc, "local-host-names"),
            "define(`confCT_FILE', `-o %s')dnl" % os.path.join(self.etc, "trusted-users"),
            "define(`confCR_FILE', `-o %s')dnl" % os.path.join(self.etc, "relay-domains"),
            "define(`confSERVICE_SWITCH_FILE', %s)dnl"
            % q(os.path.join(self.etc, "service.switch")),
            "define(`confHOSTS_FILE', `/etc/hosts')dnl",
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            "define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl",
            "define(`confLOG_LEVEL', `14')dnl",
            "define(`confMILTER_LOG_LEVEL', `14')dnl",
            # tests wait for retries in seconds
            "define(`confMIN_QUEUE_AGE', `0')dnl",
            "define(`confTO_CONNECT', `10s')dnl",
            "define(`confTO_ICONNECT', `10s')dnl",
            "define(`confDELIVERY_MODE', `background')dnl",
            "define(`confPRIVACY_FLAGS', `authwarnings,noexpn,novrfy')dnl",
            "define(`confDEF_USER_ID', `nobody:nogroup')dnl",
            # never rewrite the headers of what tests send
            "FEATURE(`nocanonify')dnl",
            "FEATURE(`nouucp', `reject')dnl",
            # no DNS here: the test domains resolve nowhere
            "FEATURE(`accept_unresolvable_domains')dnl",
            "define(`confAUTH_MECHANISMS', `PLAIN LOGIN')dnl",
            "TRUST_AUTH_MECH(`PLAIN LOGIN')dnl",
            # STARTTLS with the test PKI's server certificate, peers' under its root
            "define(`PECMILTER_TLS_CERT', %s)dnl" % q(os.path.join(self.tls, "cert.pem")),
            "define(`PECMILTER_TLS_KEY', %s)dnl" % q(os.path.join(self.tls, "key.pem")),
            "define(`PECMILTER_TLS_CA', %s)dnl" % q(os.path.join(self.tls, "ca.pem")),
            # the access map: the lines of `pecctl tls-policy --format sendmail'
            "FEATURE(`access_db', %s)dnl" % q("hash -T<TMPF> -o " + self.access_map),
            "CLIENT_OPTIONS(%s)dnl" % q("Family=inet, Addr=" + self.ip),
            "define(`PECMILTER_MILTER', %s)dnl" % q(self.milter or "unix:/nonexistent"),
            "define(`PECMILTER_LMTP', %s)dnl" % q(self.lmtp_socket or "/nonexistent"),
            "define(`PECMILTER_DOMAINS', %s)dnl" % q(" ".join(self.pec_domains)),
            "define(`PECMILTER_ADDR', %s)dnl" % q(self.ip),
            "define(`PECMILTER_MTA_PORT', %s)dnl" % q(self.port),
            "define(`PECMILTER_MSA_PORT', %s)dnl" % q(self.submission_port),
            "define(`PECMILTER_REINJECT_ADDR', %s)dnl" % q(self.ip),
            "define(`PECMILTER_REINJECT_PORT', %s)dnl" % q(self.reinject_port),
            "include(%s)dnl" % q(SNIPPET),
            "LOCAL_CONFIG",
            "ESASL_CONF_PATH=" + sasl,
        ]
        if self.transports:
            lines.append("LOCAL_RULE_0")
            for i, dom in enumerate(sorted(self.transports)):
                ip, _ = self.transports[dom]
                d = dom.lower()
                lines.append("R$* < @ %s . > $*\t$#pectest%d $@ [%s] $: $1 < @ %s . > $2"
                             % (d, i, ip, d))
                lines.append("R$* < @ %s > $*\t$#pectest%d $@ [%s] $: $1 < @ %s . > $2"
                             % (d, i, ip, d))
            lines.append("MAILER_DEFINITIONS")
            for i, dom in enumerate(sorted(self.transports)):
                _, port = self.transports[dom]
                lines.append("Mpectest%d,\tP=[IPC], F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, "
                             "R=EnvToSMTP, E=\\r\\n, L=990, T=DNS/RFC822/SMTP, A=TCP $h %d"
                             % (i, port))
            lines.append("divert(0)dnl")
        lines += ["MAILER(`smtp')dnl"]
        return "\n".join(lines) + "\n"

    def substitution(self):
        """{PECMILTER_* name: value} of the instance's .mc."""
        return {n: v for n, v in mc_settings(self.mc()) if n in SUBSTITUTION}

    def deviations(self):
        """mc_deviations() and cf_deviations() of the instance's configuration: empty
        when it runs the shipped snippet with the documented substitution."""
        mc = self.mc()
        return mc_deviations(mc) + cf_deviations(mc, self.substitution())

    def _write_config(self):
        for d in (self.root, self.etc, self.queue, self.logdir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, 0, 0)
            os.chmod(d, 0o755)
        os.chmod(self.queue, 0o700)
        # the milter and LMTP sockets live under workdir: every directory on the way
        # must be searchable, and Sendmail refuses group- or world-writable ones
        pf.make_searchable(self.workdir)
        files = {
            "service.switch": "hosts files\naliases files\n",
            "local-host-names": "",
            "trusted-users": "",
            "helpfile": "",
            "../log/statistics": "",
        }
        for n, text in files.items():
            with open(os.path.join(self.etc, n), "w") as f:
                f.write(text)
        # Sendmail ignores a key on a path anyone may write to (the PKI is under /tmp)
        os.makedirs(self.tls, 0o700, exist_ok=True)
        for src, name in ((pki.server()[0], "cert.pem"), (pki.server()[1], "key.pem"),
                          (pki.trust(), "ca.pem")):
            shutil.copyfile(src, os.path.join(self.tls, name))
        os.chmod(os.path.join(self.tls, "key.pem"), 0o600)
        mc = os.path.join(self.etc, "sendmail.mc")
        with open(mc, "w") as f:
            f.write(self.mc())
        p = subprocess.run(["m4", "-D_CF_DIR_=" + CF_DIR + "/", mc],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0 or p.stderr.strip():
            raise SendmailError("m4 %s: %s" % (mc, p.stderr.decode("utf-8", "replace")))
        with open(self.cf, "wb") as f:
            f.write(p.stdout)
        os.chmod(self.cf, 0o644)
        # the access map, made with makemap as the snippet's header says
        policy = b""
        if self.tls_policy:
            with open(self.tls_policy, "rb") as f:
                policy = f.read()
        p = subprocess.run([MAKEMAP, "-C", self.cf, "hash", self.access_map], input=policy,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise SendmailError("makemap %s: %s" % (self.access_map,
                                                    p.stdout.decode("utf-8", "replace")))
        self._write_sasl()

    def _write_sasl(self):
        sasl = os.path.join(self.etc, "sasl")
        os.makedirs(sasl, exist_ok=True)
        os.chmod(sasl, 0o755)
        db = os.path.join(sasl, "sasldb2")
        with open(os.path.join(sasl, "Sendmail.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    "mech_list: PLAIN LOGIN\nsasldb_path: %s\n" % db)
        if os.path.exists(db):
            os.unlink(db)
        for user, password in self.sasl_users.items():
            # user@realm: a client logging in as the whole address finds it, and
            # {auth_authen} is that address
            local, _, realm = user.rpartition("@")
            p = subprocess.run([SASLPASSWD, "-f", db, "-p", "-c", "-u", realm or self.mydomain,
                                local or user],
                               input=password.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if p.returncode != 0:
                raise SendmailError("saslpasswd2 %s: %s" % (user, p.stdout.decode()))
        if os.path.exists(db):
            os.chmod(db, 0o600)

    # -- running ------------------------------------------------------------

    def start(self, timeout=20):
        if self.proc is not None:
            return self
        why = unavailable()
        if why:
            raise SendmailError(why)
        self._write_config()
        self._listen_log()
        # A namespace of its own (see the module docstring): a qualified host name,
        # and /dev/log our socket.
        devs = " ".join(DEVICES)
        script = ('set -e; cd "$1"; for n in %s; do [ -e "$n" ] || : > "$n"; '
                  'mount --bind "/dev/$n" "$n"; done; mount --bind "$1" /dev; '
                  'hostname "$2"; shift 2; exec "$@"' % devs)
        self.proc = subprocess.Popen(
            [UNSHARE, "--uts", "--mount", "--propagation", "private", "sh", "-c", script,
             "sh", self.dev, "mx." + self.mydomain, BINARY, "-C", self.cf, "-bD", "-q1s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        pf.register_process(self.proc.pid, self.workdir)
        try:
            for port in (self.port, self.submission_port, self.reinject_port):
                self._wait_banner(port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _listen_log(self):
        """Receive what Sendmail sends to syslog into log/maillog."""
        os.makedirs(self.dev, exist_ok=True)
        os.chmod(self.dev, 0o755)
        path = os.path.join(self.dev, "log")
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.settimeout(0.2)
        out = open(self.maillog, "ab")
        stop = self._log_stop = threading.Event()

        def pump():
            with sock, out:
                while not stop.is_set():
                    try:
                        data = sock.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        return
                    out.write(re.sub(rb"^<\d+>", b"", data).rstrip(b"\n") + b"\n")
                    out.flush()
        threading.Thread(target=pump, daemon=True).start()

    def _wait_banner(self, port, timeout):
        deadline = time.monotonic() + timeout
        err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SendmailError("sendmail %s exited %s: %s" % (
                    self.name, self.proc.returncode,
                    self.proc.stdout.read().decode("utf-8", "replace")))
            err = pf.smtp_banner(self.ip, port)
            if err is None:
                return
            time.sleep(0.1)
        raise SendmailError("sendmail %s: nothing answers on %s:%d (%s)"
                            % (self.name, self.ip, port, err))

    def stop(self, timeout=10):
        """SIGTERM to the daemon (it stops its children), SIGKILL whatever of its
        process family is left after timeout seconds."""
        if self.proc is None:
            return
        pid = self.proc.pid
        family = {pid} | pf._descendants([pid])
        pf._kill([pid], signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        family = pf.wait_gone(family, timeout)
        if family:
            print("pectest.sendmail: %s: had to SIGKILL %s" % (self.name, sorted(family)),
                  file=sys.stderr)
            pf._kill(family, signal.SIGKILL)
            self.proc.wait(5)
        pf.unregister_process(pid)
        self.proc.stdout.close()
        self.proc = None
        self._log_stop.set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- mail ---------------------------------------------------------------

    def send(self, sender, recipients, raw, port=None, helo="client.test", timeout=60,
             auth=None):
        """As pectest.postfix.Postfix.send (no XCLIENT: Sendmail has none; auth
        (user, password) logs in through Sendmail's SASL)."""
        return pf.Postfix.send(self, sender, recipients, raw, port=port, helo=helo,
                               timeout=timeout, auth=auth)

    def queue_files(self):
        return [n for n in os.listdir(self.queue) if n[:2] in ("qf", "df", "Qf")]

    log = pf.Postfix.log                # both read self.maillog

    def log_tail(self, n=60):
        return pf.Postfix.log_tail(self, n)
