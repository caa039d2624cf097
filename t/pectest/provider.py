"""A PEC provider's Postfix, made from contrib/postfix as shipped (issue 17).

    from pectest.provider import Provider
    a = Provider(work, "a", settings_a, ip=loopback_ip(1),
                 submission_port=free_port(loopback_ip(1)),
                 transports={"pec-b.test": "smtp:[127.0.0.12]:%d" % port_b})

SETTINGS is the provider's pecmilter configuration (pectest.config.settings()):
its domains, sockets, reinjection listener, TLS policy file and Maildirs are
what the MTA is configured with, as README's steps 5 and 6 have an
administrator do.  Mailboxes are read where pecmilter's delivery point puts
them (maildir_root/<local part>/).

The configuration is what an administrator gets by following README's "Make
this Postfix a PEC provider", nothing more:

  main.cf    Debian's main.cf (main.cf.debian), the settings Debian's
             installer writes for a host and README asks for (SITE), and
             contrib/postfix/main.cf appended;
  master.cf  Debian's master.cf (master.cf.dist) without its "smtp inet"
             line, and contrib/postfix/master.cf;

with the snippets' placeholders replaced (SUBSTITUTIONS: the documented
substitution: domains, listening addresses, socket, certificate and table
paths).  On top of that, and only there, what a private instance on loopback
needs and what changes nothing of how mail is handled, each with its reason:
ENVIRONMENT (main.cf) and ENVIRONMENT_MASTER (master.cf).  deviations()
reads the files as written and lists any other setting; t/test_postfix_snippets.py
fails when the harness makes one.

Peers are found by domain, as a real provider finds them by MX, so the TLS
policy table pecmilter writes (one line per domain) applies: transports
"smtp:[IP]:PORT" become a per-peer smtp service (the peer's port) with an
empty next hop, and the instance runs in a mount namespace of its own whose
/etc/hosts names each peer's domain at its address.  The machine's /etc/hosts
is untouched.
"""
import os
import re

from . import env, pki
from . import postfix as pf

DEBIAN_MAIN = "/usr/share/postfix/main.cf.debian"
DEBIAN_MASTER = "/usr/share/postfix/master.cf.dist"
UNSHARE = "/usr/bin/unshare"

# The machine's own settings: what Debian's installer writes into main.cf for a
# host, and what README's step 6 has the administrator add.
SITE = {
    "myhostname": "the machine's name (Debian's installer asks for it)",
    "mydomain": "the machine's domain",
    "myorigin": "Debian's installer: the domain mail from this machine comes from",
    "mydestination": "README: the PEC domains are not in mydestination; this machine "
                     "delivers nothing else locally",
    "mynetworks": "Debian's installer: the host's own networks",
    "mailbox_size_limit": "Debian's installer",
    "smtpd_sasl_type": "README step 6: smtpd_sasl_type = dovecot",
    "smtpd_sasl_path": "README step 6: Dovecot's auth socket",
}

# main.cf settings that only a private instance on loopback needs.
ENVIRONMENT = {
    "queue_directory": "a private instance has its own queue under the test's directory",
    "data_directory": "likewise its own data directory",
    "syslog_name": "its own name in the log",
    "maillog_file": "no syslog on the test machine: Postfix writes its log itself",
    "maillog_file_prefixes": "postlogd may write maillog_file under the test's directory",
    "inet_interfaces": "listeners bind their own loopback address (master.cf); Postfix "
                       "accepts only addresses configured on an interface here",
    "inet_protocols": "the loopback addresses are IPv4",
    "smtp_bind_address": "each instance sends from its own loopback address, so its peer "
                         "sees who it is",
    "smtp_dns_support_level": "no DNS on the test network: peers are named in /etc/hosts "
                              "of the instance's own mount namespace, standing for MX records",
    "lmtp_dns_support_level": "no DNS on the test network",
    "smtpd_peername_lookup": "no resolver: client addresses are never looked up",
    "local_header_rewrite_clients": "a test's clients connect over loopback, which Postfix "
                                    "counts as local and whose headers it would complete; "
                                    "a provider's users are remote",
    "queue_run_delay": "tests wait for retries in seconds, not minutes",
    "minimal_backoff_time": "tests wait for retries in seconds, not minutes",
    "maximal_backoff_time": "tests wait for retries in seconds, not minutes",
    "transport_retry_time": "tests wait for retries in seconds, not minutes",
    "in_flow_delay": "tests send as fast as they can",
    "alias_maps": "the machine's /etc/aliases is not this instance's",
    "alias_database": "the machine's /etc/aliases is not this instance's",
    "transport_maps": "each peer's own smtp service (its loopback port), standing for MX",
    "smtp_tls_CAfile": "the test PKI's root stands for the public CAs (/etc/ssl/certs) "
                       "real peers' certificates chain to",
}

# master.cf changes that only a private instance needs.
ENVIRONMENT_MASTER = {
    "chroot": "no service is chrooted: a private queue directory is no prepared chroot "
              "(Debian's init script copies resolver files into it), and pecmilter's "
              "sockets live in the test's directory",
    "smtpd_authorized_xclient_hosts": "on the submission listener: tests stand XCLIENT "
                                      "LOGIN= in for a SASL login where authentication "
                                      "is not what they check",
    "peer-": "one smtp service per peer (peer-N), for the peer's loopback port",
}

_XCLIENT = "smtpd_authorized_xclient_hosts=127.0.0.0/8"


def contrib(name):
    with open(os.path.join(env.SRC_DIR, "contrib", "postfix", name)) as f:
        return f.read()


def parse_main(text):
    """main.cf text -> ordered dict (continuation lines joined)."""
    out = {}
    for line in re.sub(r"\n[ \t]+", " ", text).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def parse_master(text):
    """master.cf text -> {(service, type): (columns 3-8, [-o options], [other arguments])}."""
    out = {}
    for entry in re.sub(r"\n[ \t]+", " ", text).splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        words = entry.split()
        opts = [words[i + 1] for i, w in enumerate(words) if w == "-o"]
        args = [w for i, w in enumerate(words[8:], 8) if w != "-o" and words[i - 1] != "-o"]
        out[(words[0], words[1])] = (words[2:8], opts, args)
    return out


class Provider(pf.Postfix):
    """A PEC provider's Postfix from the shipped snippets; see the module docstring."""

    def __init__(self, workdir, name, settings, ip, port=None, submission_port=None,
                 transports=None, sasl_path=None, extra_main=None):
        """EXTRA_MAIN: what a test changes on purpose to stand for a peer that is not
        set up as shipped (deviations() names it)."""
        reinject = int(settings["reinject"].rsplit(":", 1)[1])
        super().__init__(workdir, name, ip=ip, port=port, mydomain=settings["domains"][0],
                         submission_port=submission_port or pf.free_port(ip),
                         reinject_port=reinject, extra_main=extra_main)
        self.settings = settings
        self.sasl_path = sasl_path
        self.peers = {}          # domain -> (ip, port)
        self.other_transports = {}
        for dom, tr in (transports or {}).items():
            m = re.match(r"^smtp:\[([0-9.]+)\]:(\d+)$", tr)
            if m:
                self.peers[dom.lower()] = (m.group(1), int(m.group(2)))
            else:
                self.other_transports[dom.lower()] = tr
        self.hosts = os.path.join(self.root, "hosts")

    # -- what the administrator substitutes -------------------------------------

    def substitutions(self):
        """(placeholder in the snippets, this instance's value): README's substitution."""
        s = self.settings
        cert, key = pki.server()
        return [
            ("/etc/ssl/certs/pec.example.it.pem", cert),
            ("/etc/ssl/private/pec.example.it.key", key),
            ("pec.example.it", " ".join(s["domains"])),
            ("unix:pecmilter/milter.sock", s["milter_socket"]),
            ("unix:pecmilter/lmtp.sock", s["lmtp_socket"]),
            ("/var/lib/pecmilter/tls-policy", s["tls_policy_file"]),
            # reinject_port None: the listener is down (test_crash_listener), see master_cf()
            ("127.0.0.1:10025 inet", "%s:%d inet" % (self.ip, self.reinject_port or 0)),
            ("smtp      inet", "%s:%d inet" % (self.ip, self.port)),
            ("submission inet", "%s:%d inet" % (self.ip, self.submission_port)),
        ]

    def snippet(self, name):
        """contrib/postfix/NAME with the substitutions made."""
        text = contrib(name)
        for placeholder, value in self.substitutions():
            text = text.replace(placeholder, value)
        return text

    # -- configuration ------------------------------------------------------

    def main_cf(self):
        with open(DEBIAN_MAIN) as f:
            m = parse_main(f.read())
        m.update({
            "myhostname": "mx." + self.mydomain,
            "mydomain": self.mydomain,
            "myorigin": "$mydomain",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "mailbox_size_limit": "0",
        })
        if self.sasl_path:
            m.update({"smtpd_sasl_type": "dovecot", "smtpd_sasl_path": self.sasl_path})
        m.update({
            "queue_directory": self.queue,
            "data_directory": self.data,
            "syslog_name": "postfix-" + self.name,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.logdir,
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "smtp_bind_address": self.ip,
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "local_header_rewrite_clients": "",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "transport_retry_time": "2s",
            "in_flow_delay": "0s",
            "alias_maps": "",
            "alias_database": "",
            "smtp_tls_CAfile": pki.trust(),
        })
        if self.peers or self.other_transports:
            m["transport_maps"] = "texthash:" + os.path.join(self.etc, "transport")
        m.update(parse_main(self.snippet("main.cf")))
        m.update(self.extra_main)
        return m

    def _peer_services(self):
        return sorted(self.peers.items())

    def master_cf(self):
        with open(DEBIAN_MASTER) as f:
            dist = [l for l in f.read().splitlines() if not re.match(r"^smtp\s+inet\s", l)]
        snippet = self.snippet("master.cf")
        # XCLIENT for the tests, on the submission listener only
        snippet = re.sub(r"(?m)^(%s:%d inet .*\n(?:[ \t]+.*\n)*)"
                         % (re.escape(self.ip), self.submission_port),
                         lambda mo: mo.group(1) + "  -o %s\n" % _XCLIENT, snippet)
        if self.reinject_port is None:
            # the reinjection listener taken away, -o lines and all (a test's outage)
            snippet = re.sub(r"(?m)^%s:0 inet .*\n(?:[ \t]+.*\n)*" % re.escape(self.ip), "",
                             snippet)
        text = "\n".join(dist) + "\n" + snippet
        for i, (dom, (ip, port)) in enumerate(self._peer_services()):
            text += ("peer-%d unix  -       -       n       -       -       smtp\n"
                     "  -o smtp_tcp_port=%d\n" % (i, port))
        # no service is chrooted (ENVIRONMENT_MASTER)
        return re.sub(r"(?m)^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", text)

    def _write_config(self):
        self.transports = {dom: "peer-%d:" % i
                           for i, (dom, _) in enumerate(self._peer_services())}
        self.transports.update(self.other_transports)
        super()._write_config()
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n")
            for dom, (ip, _) in self._peer_services():
                f.write("%s %s\n" % (ip, dom))

    def _check_config(self):
        """Refuse to start what the snippets do not ship, but for the settings the test
        declared in EXTRA_MAIN (a peer that is not set up as shipped)."""
        declared = tuple("main.cf: %s " % k for k in self.extra_main)
        undeclared = [d for d in self.deviations() if not d.startswith(declared)]
        if undeclared:
            raise AssertionError("%s runs what the snippets do not ship:\n  %s"
                                 % (self.name, "\n  ".join(undeclared)))

    def _start_command(self):
        # /etc/hosts of a mount namespace of its own names the peers (module docstring)
        inner = "mount --bind %s /etc/hosts && exec %s -c %s start" % (
            self.hosts, pf.POSTFIX, self.etc)
        return [UNSHARE, "--mount", "sh", "-c", inner]

    def maildir(self, address):
        """Where pecmilter's delivery point keeps ADDRESS's mail (built-in Maildir)."""
        local = address.rpartition("@")[0].lower()
        return os.path.join(self.settings["maildir_root"], local) + "/"

    # -- what else the configuration holds ------------------------------------

    def deviations(self):
        """Every setting of the written main.cf and master.cf that is neither Debian's,
        the site's, the snippets' (after substitution) nor in ENVIRONMENT or
        ENVIRONMENT_MASTER: a list of strings, empty when the instance runs what
        README ships."""
        out = []
        with open(os.path.join(self.etc, "main.cf")) as f:
            written = parse_main(f.read())
        with open(DEBIAN_MAIN) as f:
            expected = parse_main(f.read())
        expected.update(parse_main(self.snippet("main.cf")))
        for k, v in written.items():
            if k in ENVIRONMENT or k in SITE:
                continue
            if k not in expected:
                out.append("main.cf: %s = %s: neither in the snippets nor environment-only"
                           % (k, v))
            elif expected[k] != v:
                out.append("main.cf: %s = %s: the snippets say %s" % (k, v, expected[k]))
        for k in expected:
            if k not in written:
                out.append("main.cf: %s missing" % k)
        with open(os.path.join(self.etc, "master.cf")) as f:
            got = parse_master(f.read())
        with open(DEBIAN_MASTER) as f:
            want = {k: v for k, v in parse_master(f.read()).items() if k != ("smtp", "inet")}
        want.update(parse_master(self.snippet("master.cf")))
        for key, (cols, opts, args) in got.items():
            if key[0].startswith("peer-") and opts == ["smtp_tcp_port=%d"
                                                      % self.peers[self._peer_domain(key[0])][1]]:
                continue
            if key not in want:
                out.append("master.cf: service %s %s: not shipped" % key)
                continue
            wcols, wopts, wargs = want[key]
            if cols[:2] + cols[3:] != wcols[:2] + wcols[3:] or args != wargs:
                out.append("master.cf: %s %s: columns %s, shipped %s" % (key + (cols, wcols)))
            extra = [o for o in opts if o not in wopts]
            if key[0] == "%s:%d" % (self.ip, self.submission_port):
                extra = [o for o in extra if o != _XCLIENT]
            missing = [o for o in wopts if o not in opts]
            if extra or missing:
                out.append("master.cf: %s %s: -o %s added, %s missing" % (key + (extra,
                                                                                   missing)))
        for key in want:
            if key not in got:
                out.append("master.cf: service %s %s missing" % key)
        return out

    def _peer_domain(self, service):
        return self._peer_services()[int(service[len("peer-"):])][0]
