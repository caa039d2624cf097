"""Private Postfix instances on loopback, for tests (standard library only).

    from pectest.postfix import Postfix, register_process, loopback_ip

    b = Postfix(work, "b", ip=loopback_ip(2), mydomain="pec-b.test",
                virtual_domains=["pec-b.test"])
    a = Postfix(work, "a", ip=loopback_ip(1), mydomain="pec-a.test",
                virtual_domains=["pec-a.test"],
                transports={"pec-b.test": "smtp:[%s]:%d" % (b.ip, b.port)})
    with b, a:
        a.send("x@pec-a.test", ["u@pec-b.test"], raw)
        b.wait_for_mail("u@pec-b.test")

This is the plain instance: the rest of the world in a test (an ordinary mail server,
a peer), and the harness's own tests.  A PEC provider's Postfix is pectest.provider's,
made from contrib/postfix as shipped, on top of this class.

Each instance lives in WORKDIR/NAME/{etc,queue,data,log,mail} and is run as root with
`postfix -c WORKDIR/NAME/etc ...` (no alternate_config_directories needed: that check
only applies to unprivileged callers).  Nothing of /etc/postfix is written.  What is
read from there is the package's meta files (postfix-files, dynamicmaps.cf) and, by
postfix-script only if it exists, /etc/postfix/main.cf for multi_instance_directories:
a missing /etc/postfix/main.cf is fine, so the harness never creates one.

Choices tests can rely on:
  - one loopback address per instance (loopback_ip(n) = 127.0.0.(10+n); Linux routes all of
    127/8 to lo, no address needs configuring); each listener binds IP:PORT explicitly
    in master.cf, ports are free ones in 20000-31999 unless given.  inet_interfaces is
    loopback-only, because Postfix refuses there an address no interface carries;
    smtp_bind_address = IP, so a peer instance sees mail come from IP.
  - virtual_domains are Postfix "virtual mailbox" domains accepting any local part
    without '/' (regexp: table).  With local_maildir, mail for them is written by pipe(8)
    into mail/<domain>/<localpart, lower case>/new/ (see main_cf() for why not
    virtual(8)), with Delivered-To and Return-Path prepended, as virtual(8) would.
  - transports: texthash: table (no postmap).  Fast retries (queue_run_delay 1s,
    backoff 1s-5s), no DNS at all, smtpd never rewrites or completes headers.
  - listeners: 'pec-mx' (port; milter), 'pec-submission' (submission_port;
    submission_milter; XCLIENT from 127.0.0.0/8 with SASL enabled, so LOGIN= becomes the
    milter's {auth_authen}), 'pec-reinject' (reinject_port; no milter).  The name is
    both milter_macro_daemon_name and the syslog_name suffix in the maillog.
  - submission_sasl_path: the socket of a Dovecot auth service (pectest.dovecot); the
    submission listener then authenticates for real through it (smtpd_sasl_type =
    dovecot) and send(..., auth=(user, password)) logs in.  XCLIENT LOGIN= still works.
  - submission_options: more "-o name=value" for the submission listener (e.g. its own
    cleanup service, given in extra_master).

Nothing may stay behind after a test, also when the test fails, so cleanup is layered:
  1. the context manager (stop() in __exit__);
  2. an atexit hook that stops every instance still running and kills every process
     handed over with register_process();
  3. a reaper: a small watchdog process (this file run with --reaper), double-forked into
     its own session so that a test runner killing the test's process tree does not take it
     along.  It reads a pipe whose write end only the test process holds; the test tells
     it, over that pipe, which instances run and which other PIDs to kill.  When the test
     process dies for any reason, even SIGKILL, the pipe reaches EOF and the reaper stops
     whatever is still registered, then exits.  Its log is WORKDIR/reaper.log.

A process belongs to an instance when it is the master (queue/pid/master.pid), a
descendant of it, has the instance's queue directory as its working directory (every
Postfix daemon chdirs there), or carries MAIL_CONFIG=<its etc> in its environment.
leftovers(path) is the stricter check tests use: anything that refers to path at all.
"""
import atexit
import email.utils
import os
import pwd
import grp
import random
import re
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
SCRIPT = shutil.which("script")     # util-linux script(1), to give Postfix a terminal
MAIL_OWNER = "postfix"
# Owner of the delivered Maildirs (the pipe(8) user): not root, not the Postfix
# mail_owner.  Tests read the Maildirs as root.
VMAIL_USER = "nobody"
VMAIL_GROUP = "nogroup"

_lock = threading.RLock()
_instances = {}          # etc dir -> Postfix, while started
_ports_taken = set()     # (ip, port) handed out by free_port() in this process
_registered = {}         # pid -> start time (clock ticks), for register_process()
_reaper = None           # _ReaperLink once spawned


def have_postfix():
    """True when Postfix is installed and we can run it as root."""
    return os.geteuid() == 0 and os.path.exists(POSTFIX) and \
        os.path.exists("/usr/lib/postfix/sbin/master")


def loopback_ip(n):
    """The n-th test address: 127.0.0.11, 127.0.0.12, ... (Linux routes all of 127/8 to lo)."""
    return "127.0.0.%d" % (10 + n)


def free_port(ip="127.0.0.1"):
    """A TCP port on ip that nobody listens on, outside the ephemeral range, not yet
    handed out by this process."""
    with _lock:
        for _ in range(500):
            port = random.randrange(20000, 32000)
            if (ip, port) in _ports_taken:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((ip, port))
            except OSError:
                continue
            finally:
                s.close()
            _ports_taken.add((ip, port))
            return port
    raise RuntimeError("no free port on %s" % ip)


# ---------------------------------------------------------------------------
# /proc helpers (shared by the test process and the reaper)

def _proc_stat(pid):
    """(ppid, pgid, starttime) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(")") + 2:].split()
    # rest[0] = state, [1] = ppid, [2] = pgrp, [19] = starttime
    if rest[0] == "Z":
        return None
    return int(rest[1]), int(rest[2]), int(rest[19])


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _descendants(roots):
    """Every live process descending from any pid in roots (roots excluded)."""
    children = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st:
            children.setdefault(st[0], []).append(pid)
    out, todo = set(), list(roots)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _read_master_pid(queue):
    try:
        with open(os.path.join(queue, "pid", "master.pid")) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None
    # guard against a recycled pid: it must be Postfix's master
    return pid if os.path.basename(exe.replace(" (deleted)", "")) == "master" else None


def _instance_pids(etc, queue):
    """PIDs of every live process of the instance with config dir etc, queue dir queue."""
    etc, queue = os.path.realpath(etc), os.path.realpath(queue)
    me = {os.getpid(), os.getppid()}
    found = set()
    marker = ("MAIL_CONFIG=" + etc).encode()
    for pid in _all_pids():
        if pid in me:
            continue
        try:
            cwd = os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            cwd = None
        if cwd == queue:
            found.add(pid)
            continue
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            found.add(pid)
    master = _read_master_pid(queue)
    if master:
        found.add(master)
        found |= _descendants([master])
    found -= me
    return {p for p in found if _proc_stat(p)}


def is_reaper(pid):
    """Whether pid is the cleanup reaper of some test process (not an instance's)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"--reaper" in f.read()
    except OSError:
        return False


def instances_left(path):
    """leftovers(path) but the reaper, which keeps its log open in the first work
    directory it was told of and leaves when its test process does."""
    return {p for p in leftovers(path) if not is_reaper(p)}


def leftovers(path):
    """PIDs of live processes (other than this one) whose working directory, program,
    command line, environment or open files refer to anything under path: what a test
    checks to prove it left nothing running."""
    path = os.path.realpath(path)
    under = lambda p: p == path or p.startswith(path + "/")
    found = set()
    for pid in _all_pids():
        if pid == os.getpid() or not _proc_stat(pid):
            continue
        base = "/proc/%d/" % pid
        try:
            links = [os.readlink(base + "cwd"), os.readlink(base + "exe")]
        except OSError:
            links = []
        try:
            links += [os.readlink(base + "fd/" + fd) for fd in os.listdir(base + "fd")]
        except OSError:
            pass
        words = []
        for f in ("cmdline", "environ"):
            try:
                with open(base + f, "rb") as fh:
                    words += fh.read().decode("utf-8", "replace").split("\0")
            except OSError:
                pass
        if any(under(l) for l in links) or any(path in w for w in words):
            found.add(pid)
    return found


def _kill(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _reap_instance(etc, queue, grace=5.0):
    """Stop an instance by force if need be: SIGTERM to the master (which then stops its
    children), wait up to grace seconds, SIGKILL whatever is left.  Returns the pids
    that had to be SIGKILLed."""
    master = _read_master_pid(queue)
    if master:
        _kill([master], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _instance_pids(etc, queue):
            return set()
        time.sleep(0.05)
    killed = set()
    for _ in range(20):
        left = _instance_pids(etc, queue)
        if not left:
            break
        killed |= left
        _kill(left, signal.SIGKILL)
        time.sleep(0.05)
    return killed


def _reap_pid(pid, starttime, grace=3.0):
    """Kill a registered process (checked against its start time) and its descendants."""
    st = _proc_stat(pid)
    if not st or st[2] != starttime:
        return
    family = {pid} | _descendants([pid])
    _kill(family, signal.SIGTERM)
    family = wait_gone(family, grace)
    if family:
        _kill(family | _descendants(family), signal.SIGKILL)


def stop_process(proc, timeout=10):
    """SIGTERM the subprocess.Popen PROC, a master that stops its children, wait up
    to TIMEOUT seconds, then SIGKILL whatever of its process family is left and
    forget it (Dovecot, the HTTPS server)."""
    family = {proc.pid} | _descendants([proc.pid])
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _kill(wait_gone(family, timeout), signal.SIGKILL)
    unregister_process(proc.pid)


def wait_gone(pids, timeout):
    """Wait up to timeout seconds for every process in pids to end; returns those still
    alive (for the caller to SIGKILL).  Shared by every harness that stops a process
    family (Postfix, Sendmail, Dovecot)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {p for p in pids if _proc_stat(p)}
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def make_searchable(path):
    """Give others search permission on path and every directory above it: daemons
    running as other users (postfix, nobody) must reach the sockets tests put there."""
    d = path
    while d != "/":
        st = os.stat(d)
        if not st.st_mode & 0o001:
            os.chmod(d, (st.st_mode & 0o7777) | 0o011)
        d = os.path.dirname(d)


def smtp_banner(ip, port):
    """None when an SMTP server greets with 220 on ip:port (then QUIT), else what went
    wrong: the harnesses poll it until their MTA listens."""
    try:
        with socket.create_connection((ip, port), timeout=5) as s, s.makefile("rb") as f:
            line = f.readline()
            if line.startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                return None
            return "banner %r" % line
    except OSError as e:
        return str(e)


def maildir_messages(base):
    """Every message in the Maildir BASE (new/ and cur/; a missing one is empty), oldest
    first (by mtime, then name), as bytes."""
    files = []
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        files += [os.path.join(d, n) for n in names if not n.startswith(".")]
    files.sort(key=lambda p: (os.stat(p).st_mtime, os.path.basename(p)))
    out = []
    for p in files:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


# ---------------------------------------------------------------------------
# The reaper

class _ReaperLink:
    """Test-process side of the reaper: the write end of its pipe."""

    def __init__(self, logfile):
        r, w = os.pipe()              # both non-inheritable: no other child gets w
        os.set_inheritable(r, True)
        log = open(logfile, "ab") if logfile else subprocess.DEVNULL
        try:
            # The intermediate process forks the real reaper and exits at once, so the
            # reaper is no child of ours: a runner that kills the test's process tree on
            # timeout (ctest does) must not take the reaper along.
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reaper"],
                                 stdin=r, stdout=log, stderr=log, close_fds=True,
                                 start_new_session=True, cwd="/")
            rc = p.wait()
        finally:
            os.close(r)
            if log is not subprocess.DEVNULL:
                log.close()
        if rc != 0:
            os.close(w)
            raise RuntimeError("cannot start the pectest reaper (exit %d)" % rc)
        self.w = w

    def tell(self, *words):
        line = "\t".join(words) + "\n"
        if "\n" in line[:-1] or any("\t" in w for w in words):
            raise ValueError("tab or newline in a reaper message: %r" % (words,))
        os.write(self.w, line.encode())


def _tell_reaper(logdir, *words):
    global _reaper
    with _lock:
        if _reaper is not None:
            try:
                _reaper.tell(*words)
                return
            except BrokenPipeError:
                # someone killed the reaper: start another and tell it everything again
                os.close(_reaper.w)
                _reaper = None
        _reaper = _ReaperLink(os.path.join(logdir, "reaper.log") if logdir else None)
        for inst in _instances.values():
            _reaper.tell("INST", inst.etc, inst.queue)
        for pid, start in _registered.items():
            _reaper.tell("PID", str(pid), str(start))
        _reaper.tell(*words)


def _reaper_main():
    """Run in the reaper process: read registrations from stdin until EOF, then reap."""
    if os.fork() != 0:
        os._exit(0)                  # the intermediate process: the test waits for it
    # the reaper proper; already a session leader's child in a new session, not one of
    # the test's descendants any more once the intermediate process has exited
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    instances, pids = {}, {}
    buf = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode("utf-8", "surrogateescape").split("\t")
            if words[0] == "INST" and len(words) == 3:
                instances[words[1]] = words[2]
            elif words[0] == "DONE" and len(words) == 2:
                instances.pop(words[1], None)
            elif words[0] == "PID" and len(words) == 3:
                pids[int(words[1])] = int(words[2])
            elif words[0] == "UNPID" and len(words) == 2:
                pids.pop(int(words[1]), None)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if instances or pids:
        print("%s reaper: test process gone; reaping %d instance(s), %d pid(s)"
              % (stamp, len(instances), len(pids)), flush=True)
    def instance(etc, queue):
        killed = _reap_instance(etc, queue)
        print("%s reaper: stopped %s%s" % (stamp, etc, "; SIGKILLed %s" % sorted(killed)
                                           if killed else ""), flush=True)
    threads = [threading.Thread(target=_reap_pid, args=(p, s)) for p, s in pids.items()]
    threads += [threading.Thread(target=instance, args=(e, q)) for e, q in instances.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os._exit(0)


# ---------------------------------------------------------------------------
# Registration of other processes (pecmilter, dovecot, ...)

def register_process(pid, workdir=None):
    """Hand a process (and its descendants) to the cleanup layers: it is killed at exit
    of the test process, and by the reaper if the test process dies.  workdir: where the
    reaper may write its log, if it is not running yet."""
    st = _proc_stat(pid)
    if not st:
        return
    with _lock:
        _registered[pid] = st[2]
        _tell_reaper(workdir, "PID", str(pid), str(st[2]))


def unregister_process(pid):
    """The test stopped that process itself."""
    with _lock:
        if _registered.pop(pid, None) is not None and _reaper is not None:
            _reaper.tell("UNPID", str(pid))


def stop_instance(root, timeout=10):
    """Stop the instance whose directory is root (etc/ and queue/ under it), started
    by this or another process; returns the PIDs that needed SIGKILL."""
    return _reap_instance(os.path.join(root, "etc"), os.path.join(root, "queue"),
                          grace=timeout)


def _atexit():
    for pf in list(_instances.values()):
        try:
            pf.stop()
        except Exception as e:       # keep going: the reaper still follows
            print("pectest.postfix: stopping %s at exit: %s" % (pf.name, e), file=sys.stderr)
    for pid, start in list(_registered.items()):
        _reap_pid(pid, start)
        _registered.pop(pid, None)


atexit.register(_atexit)


def _after_fork_in_child():
    # A forked child (multiprocessing, os.fork) owns none of its parent's instances:
    # it must neither stop them at its exit nor keep the reaper's pipe open.
    global _reaper
    _instances.clear()
    _registered.clear()
    if _reaper is not None:
        try:
            os.close(_reaper.w)
        except OSError:
            pass
        _reaper = None


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------

# Maildir delivery for pipe(8): deliver-maildir BASE DOMAIN LOCALPART < message.
# Exit codes are sysexits: 67 (no such user) bounces, 75 (temporary failure) defers.
_DELIVER_SH = r"""#!/bin/sh
# generated by pectest.postfix: deliver stdin into BASE/DOMAIN/LOCALPART/ (Maildir)
case "$3" in ''|.*|*/*) echo "bad local part: $3"; exit 67;; esac
case "$2" in ''|.*|*/*) echo "bad domain: $2"; exit 67;; esac
umask 022
dir="$1/$2/$3"
name="$(date +%s.%N).P$$.pectest"
mkdir -p "$dir/tmp" "$dir/new" "$dir/cur" || exit 75
cat > "$dir/tmp/$name" || { rm -f "$dir/tmp/$name"; exit 75; }
mv "$dir/tmp/$name" "$dir/new/$name" || exit 75
exit 0
"""


class PostfixError(RuntimeError):
    pass


def _xtext(s):
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else "+%02X" % ord(c)
                   for c in s)


class Postfix:
    """One private Postfix instance.  See the module docstring."""

    def __init__(self, workdir, name, ip="127.0.0.1", port=None, mydomain="pec-a.test",
                 virtual_domains=(), local_maildir=True, milter=None, submission_port=None,
                 submission_milter=None, reinject_port=None, transports=None,
                 extra_main=None, extra_master=None, submission_sasl_path=None,
                 submission_options=()):
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError("bad instance name %r" % name)
        self.workdir = os.path.realpath(workdir)
        self.name = name
        self.ip = ip
        self.port = port or free_port(ip)
        self.mydomain = mydomain.lower()
        self.virtual_domains = [d.lower() for d in virtual_domains]
        self.local_maildir = local_maildir
        self.milter = milter
        self.submission_port = submission_port
        self.submission_milter = submission_milter
        self.reinject_port = reinject_port
        self.submission_sasl_path = submission_sasl_path
        self.submission_options = list(submission_options)
        self.transports = dict(transports or {})
        self.extra_main = dict(extra_main or {})
        self.extra_master = extra_master
        self.root = os.path.join(self.workdir, name)
        self.etc = os.path.join(self.root, "etc")
        self.queue = os.path.join(self.root, "queue")
        self.data = os.path.join(self.root, "data")
        self.logdir = os.path.join(self.root, "log")
        self.maillog = os.path.join(self.logdir, "maillog")
        self.mail = os.path.join(self.root, "mail")
        self.started = False

    # -- configuration ------------------------------------------------------

    def main_cf(self):
        """The main.cf settings, as an ordered dict."""
        m = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": MAIL_OWNER,
            "setgid_group": "postdrop",
            "syslog_name": "postfix-" + self.name,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.logdir,
            "myhostname": "mx." + self.mydomain,
            "mydomain": self.mydomain,
            "myorigin": "$mydomain",
            "mydestination": "",
            "relayhost": "",
            "relay_domains": "",
            "mynetworks": "127.0.0.0/8",
            # Postfix only accepts addresses configured on an interface here, and only
            # 127.0.0.1 is (the rest of 127/8 is merely routed to lo); the listeners in
            # master.cf bind self.ip explicitly.
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            # outgoing SMTP from our own address, so the peer instance sees who we are
            "smtp_bind_address": self.ip,
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            # no resolver on the test network: never ask it about client addresses
            "smtpd_peername_lookup": "no",
            "smtputf8_enable": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "alias_maps": "",
            "alias_database": "",
            "recipient_delimiter": "",
            "smtpd_banner": "$myhostname ESMTP pectest-" + self.name,
            # never rewrite or complete the headers of what tests send (the default
            # treats clients on inet_interfaces, i.e. loopback, as local and would add
            # Message-ID/Date/From and qualify addresses): a message arrives as sent
            "local_header_rewrite_clients": "",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "smtpd_milters": "",
            "non_smtpd_milters": "",
            # tests wait for retries in seconds, not minutes
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "transport_retry_time": "2s",
            "in_flow_delay": "0s",
            "delay_warning_time": "0h",
            # room for the 30 MB attachment tests (base64 makes it ~40 MB)
            "message_size_limit": "104857600",
            "virtual_mailbox_limit": "0",
            "mailbox_size_limit": "0",
        }
        if self.virtual_domains:
            # Postfix's "virtual mailbox" class: the domains are ours, any local part
            # without '/' exists.  Where they go is virtual_transport: our Maildir pipe
            # (local_maildir), or whatever the test sets in extra_main (e.g.
            # lmtp:unix:... for pecmilter's delivery point or Dovecot).
            m.update({
                "virtual_mailbox_domains": " ".join(self.virtual_domains),
                "virtual_mailbox_maps": "regexp:" + os.path.join(self.etc, "vmailbox"),
            })
            if self.local_maildir:
                # Not virtual(8): it refuses $1 substitution in virtual_mailbox_maps
                # (DICT_FLAG_NO_REGSUB), so it cannot map any local part to its own
                # Maildir without a list of users.  pipe(8) with a 10-line sh writes
                # mail/<domain>/<localpart>/new/ the way virtual(8) would, with the same
                # added Delivered-To and Return-Path headers; one recipient per call.
                m.update({
                    "virtual_transport": "pecmaildir",
                    "pecmaildir_destination_recipient_limit": "1",
                })
        if self.transports:
            m["transport_maps"] = "texthash:" + os.path.join(self.etc, "transport")
        m.update(self.extra_main)
        return m

    def _listener(self, port, daemon_name, milters, extra=()):
        lines = ["%s:%d      inet  n       -       n       -       -       smtpd"
                 % (self.ip, port),
                 "  -o syslog_name=postfix-%s/%s" % (self.name, daemon_name),
                 "  -o milter_macro_daemon_name=%s" % daemon_name,
                 "  -o smtpd_milters=%s" % (milters or "")]
        lines += ["  -o %s" % e for e in extra]
        return lines

    def master_cf(self):
        """The master.cf text: every service unchrooted."""
        lines = ["# generated by pectest.postfix for instance %s" % self.name,
                 "# service type  private unpriv  chroot  wakeup  maxproc command + args"]
        lines += self._listener(self.port, "pec-mx", self.milter)
        if self.submission_port:
            # XCLIENT LOGIN= only takes effect when SASL is enabled on the listener; the
            # Cyrus server side is initialised but no client ever authenticates for real,
            # unless a Dovecot auth socket is given: then AUTH is real.
            if self.submission_sasl_path:
                sasl = ["smtpd_sasl_type=dovecot",
                        "smtpd_sasl_path=" + self.submission_sasl_path]
            else:
                sasl = ["smtpd_sasl_type=cyrus", "smtpd_sasl_path=smtpd"]
            lines += self._listener(self.submission_port, "pec-submission",
                                    self.submission_milter,
                                    ["smtpd_authorized_xclient_hosts=127.0.0.0/8",
                                     "smtpd_sasl_auth_enable=yes"] + sasl +
                                    ["smtpd_sasl_authenticated_header=yes"] +
                                    self.submission_options)
        if self.reinject_port:
            lines += self._listener(self.reinject_port, "pec-reinject", "")
        lines += [
            "pickup    unix  n       -       n       60      1       pickup",
            "cleanup   unix  n       -       n       -       0       cleanup",
            "qmgr      unix  n       -       n       300     1       qmgr",
            "tlsmgr    unix  -       -       n       1000?   1       tlsmgr",
            "rewrite   unix  -       -       n       -       -       trivial-rewrite",
            "bounce    unix  -       -       n       -       0       bounce",
            "defer     unix  -       -       n       -       0       bounce",
            "trace     unix  -       -       n       -       0       bounce",
            "verify    unix  -       -       n       -       1       verify",
            "flush     unix  n       -       n       1000?   0       flush",
            "proxymap  unix  -       -       n       -       -       proxymap",
            "proxywrite unix -       -       n       -       1       proxymap",
            "smtp      unix  -       -       n       -       -       smtp",
            "relay     unix  -       -       n       -       -       smtp",
            "showq     unix  n       -       n       -       -       showq",
            "error     unix  -       -       n       -       -       error",
            "retry     unix  -       -       n       -       -       error",
            "discard   unix  -       -       n       -       -       discard",
            "local     unix  -       n       n       -       -       local",
            "virtual   unix  -       n       n       -       -       virtual",
            "lmtp      unix  -       -       n       -       -       lmtp",
            "anvil     unix  -       -       n       -       1       anvil",
            "scache    unix  -       -       n       -       1       scache",
            "postlog   unix-dgram n  -       n       -       1       postlogd",
        ]
        if self.virtual_domains and self.local_maildir:
            lines += [
                "pecmaildir unix -       n       n       -       -       pipe",
                "  flags=DRhu user=%s:%s argv=/bin/sh %s %s ${domain} ${user}"
                % (VMAIL_USER, VMAIL_GROUP, os.path.join(self.etc, "deliver-maildir"),
                   self.mail),
            ]
        if self.extra_master:
            extra = self.extra_master
            if not isinstance(extra, str):
                extra = "\n".join(extra)
            lines.append(extra.rstrip("\n"))
        return "\n".join(lines) + "\n"

    def _write_config(self):
        for d in (self.root, self.etc, self.logdir):
            os.makedirs(d, exist_ok=True)
        # Postfix daemons run as postfix, deliveries as nobody, and the milter or LMTP
        # sockets tests put under workdir must be reachable: every directory on the way
        # needs search permission for others.
        make_searchable(self.root)
        # queue and config: root owned, not group/other writable (postfix check)
        for d in (self.root, self.etc, self.queue):
            os.makedirs(d, exist_ok=True)
            os.chown(d, 0, 0)
            os.chmod(d, 0o755)
        pw = pwd.getpwnam(MAIL_OWNER)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        os.chmod(self.logdir, 0o755)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# generated by pectest.postfix for instance %s\n" % self.name)
            for k, v in self.main_cf().items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.master_cf())
        if self.virtual_domains:
            with open(os.path.join(self.etc, "vmailbox"), "w") as f:
                for dom in self.virtual_domains:
                    f.write("%%^[^@/]+@%s$%% OK\n" % dom.replace(".", "\\."))
        if self.virtual_domains and self.local_maildir:
            deliver = os.path.join(self.etc, "deliver-maildir")
            with open(deliver, "w") as f:
                f.write(_DELIVER_SH)
            os.chmod(deliver, 0o755)
            vu = pwd.getpwnam(VMAIL_USER).pw_uid
            vg = grp.getgrnam(VMAIL_GROUP).gr_gid
            os.makedirs(self.mail, exist_ok=True)
            os.chmod(self.mail, 0o755)
            for dom in self.virtual_domains:
                p = os.path.join(self.mail, dom)
                os.makedirs(p, exist_ok=True)
                os.chown(p, vu, vg)
                os.chmod(p, 0o755)
        if self.transports:
            with open(os.path.join(self.etc, "transport"), "w") as f:
                for dom, tr in self.transports.items():
                    f.write("%s %s\n" % (dom.lower(), tr))
        # Postfix will not read a configuration file or an in-memory table (texthash,
        # regexp) younger than 2 s: it waits, in every command and every daemon, for the
        # writer to be done.  Ours are complete; date them back.
        past = time.time() - 10
        for n in os.listdir(self.etc):
            os.utime(os.path.join(self.etc, n), (past, past))

    # -- running ------------------------------------------------------------

    def _run(self, args, tty=False, timeout=60):
        """Run a Postfix command; with tty, under script(1) so that errors Postfix only
        writes to a terminal are captured.  Returns (rc, output)."""
        if tty and SCRIPT:
            cmd = [SCRIPT, "-qec", " ".join(shlex.quote(a) for a in args), "/dev/null"]
        else:
            cmd = args
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, cwd="/")
        return p.returncode, p.stdout.decode("utf-8", "replace").replace("\r\n", "\n")

    def flush(self):
        """`postfix flush`: every deferred message is tried again now."""
        rc, out = self._run([POSTFIX, "-c", self.etc, "flush"])
        if rc != 0:
            raise PostfixError("postfix flush: %s" % out)

    def postconf(self, *args):
        """Output of `postconf -c etc ARGS`."""
        rc, out = self._run([POSTCONF, "-c", self.etc] + list(args))
        if rc != 0:
            raise PostfixError("postconf %s: %s" % (" ".join(args), out))
        return out

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def _fail(self, what, out):
        raise PostfixError("%s [%s]: %s\n--- output ---\n%s\n--- maillog tail ---\n%s"
                           % (what, self.name, self.etc, out.strip(), self.log_tail()))

    def start(self):
        if self.started:
            return self
        if _read_master_pid(self.queue) or _instance_pids(self.etc, self.queue):
            raise PostfixError("instance %s already has processes running" % self.root)
        self._write_config()
        self._check_config()
        with _lock:
            _tell_reaper(self.workdir, "INST", self.etc, self.queue)
            _instances[self.etc] = self
        try:
            rc, out = self._run([POSTFIX, "-c", self.etc, "check"], tty=True)
            self.check_output = out           # warnings, if any
            if rc != 0:
                self._fail("postfix check failed", out)
            # `postfix start` would run the same checks again: skip them
            open(os.path.join(self.queue, "quick-start"), "w").close()
            rc, out = self._run(self._start_command(), tty=True)
            if rc != 0:
                self._fail("postfix start failed", out)
            self.start_output = out
            self.started = True
            for port in self._ports():
                self._wait_banner(port, out)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_config(self):
        """Called on the written configuration before the start (a subclass may refuse
        it by raising)."""

    def _start_command(self):
        """The command that starts the master (a subclass may wrap it)."""
        return [POSTFIX, "-c", self.etc, "start"]

    def reload(self):
        """Rewrite the configuration from the attributes (transports, extra_main, ...
        may have been changed) and `postfix reload`.  Listener ports cannot change."""
        self._write_config()
        rc, out = self._run([POSTFIX, "-c", self.etc, "reload"], tty=True)
        if rc != 0:
            self._fail("postfix reload failed", out)

    def _ports(self):
        return [p for p in (self.port, self.submission_port, self.reinject_port) if p]

    def _wait_banner(self, port, out, timeout=15):
        deadline = time.monotonic() + timeout
        err = None
        while time.monotonic() < deadline:
            err = smtp_banner(self.ip, port)
            if err is None:
                return
            time.sleep(0.05)
        self._fail("smtpd on %s:%d does not answer (%s)" % (self.ip, port, err), out)

    def processes(self):
        """PIDs of every live process of this instance (empty once stopped)."""
        return _instance_pids(self.etc, self.queue)

    def stop(self, timeout=10):
        """Stop the master (as `postfix stop` does: SIGTERM, after which the master
        stops its children), wait until the master and every child are gone, SIGKILL
        whatever is left after timeout seconds."""
        try:
            killed = _reap_instance(self.etc, self.queue, grace=timeout)
            if killed:
                print("pectest.postfix: %s: had to SIGKILL %s" % (self.name, sorted(killed)),
                      file=sys.stderr)
        finally:
            self.started = False
            with _lock:
                if _instances.pop(self.etc, None) is not None and _reaper is not None:
                    _reaper.tell("DONE", self.etc)

    def detach(self):
        """Let the running instance outlive this process (the demo): neither the atexit
        hook nor the reaper will stop it.  stop_instance() stops it later."""
        with _lock:
            if _instances.pop(self.etc, None) is not None and _reaper is not None:
                _reaper.tell("DONE", self.etc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- mail ---------------------------------------------------------------

    def send(self, sender, recipients, raw, port=None, xclient_login=None, helo="client.test",
             timeout=60, auth=None, starttls=None):
        """Submit raw (bytes; line ends are normalised to CRLF) over SMTP.  Returns the
        final (code, text): the DATA reply, or the first MAIL rejection, or the last RCPT
        rejection when every recipient was refused, or the AUTH rejection when auth
        (user, password) was given and refused.  Never raises on 4xx/5xx.  STARTTLS
        first (the server's certificate not checked) when starttls is true, or, by
        default, on the submission port when the server offers it, as a user's client
        does; port 25 stays in the clear unless asked."""
        if isinstance(recipients, str):
            recipients = [recipients]
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        port = port or self.port
        s = smtplib.SMTP(self.ip, port, local_hostname=helo, timeout=timeout)
        try:
            s.ehlo()
            if starttls is None:
                starttls = port == self.submission_port and s.has_extn("starttls")
            if starttls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s.starttls(context=ctx)
                s.ehlo()
            if xclient_login is not None:
                code, text = s.docmd("XCLIENT", "LOGIN=" + _xtext(xclient_login))
                if code != 220:
                    return code, text.decode("utf-8", "replace")
                s.ehlo_resp = s.helo_resp = None
                s.esmtp_features = {}
                s.ehlo()
            if auth is not None:
                try:
                    s.login(*auth)
                except smtplib.SMTPAuthenticationError as e:
                    return e.smtp_code, e.smtp_error.decode("utf-8", "replace")
            opts = []
            if re.search(rb"[\x80-\xff]", raw) and s.has_extn("8bitmime"):
                opts.append("BODY=8BITMIME")
            code, text = s.mail(sender, opts)
            if code != 250:
                return code, text.decode("utf-8", "replace")
            ok, last = 0, None
            for r in recipients:
                code, text = s.rcpt(r)
                if code in (250, 251):
                    ok += 1
                else:
                    last = (code, text)
            if not ok:
                return last[0], last[1].decode("utf-8", "replace")
            try:
                code, text = s.data(raw)
            except smtplib.SMTPDataError as e:
                code, text = e.smtp_code, e.smtp_error
            return code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        except smtplib.SMTPServerDisconnected as e:
            return 421, "disconnected: %s" % e
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    def maildir(self, address):
        """The Maildir virtual(8) delivers address into (mail/<domain>/<localpart>/)."""
        local, _, domain = email.utils.parseaddr(address)[1].rpartition("@")
        return os.path.join(self.mail, domain.lower(), local.lower()) + "/"

    def messages(self, address):
        """Every message in the Maildir (new/ and cur/), oldest first, as bytes."""
        return maildir_messages(self.maildir(address))

    def wait_for_mail(self, address, count=1, timeout=30):
        """Poll the Maildir until it holds at least count messages; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(address)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError("%s: %d of %d message(s) for %s after %ss\n"
                                     "--- maillog tail ---\n%s"
                                     % (self.name, len(msgs), count, address, timeout,
                                        self.log_tail()))
            time.sleep(0.1)

    def queue_files(self):
        """Queue files in incoming, active, deferred, hold, maildrop."""
        out = []
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for dirpath, _, names in os.walk(os.path.join(self.queue, q)):
                out += [os.path.join(dirpath, n) for n in names]
        return out

    def queue_empty(self):
        return not self.queue_files()

    def wait_queue_empty(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.queue_empty():
            if time.monotonic() > deadline:
                raise AssertionError("%s: queue not empty after %ss: %s\n"
                                     "--- maillog tail ---\n%s"
                                     % (self.name, timeout, self.queue_files(), self.log_tail()))
            time.sleep(0.1)

    def log(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


if __name__ == "__main__" and sys.argv[1:] == ["--reaper"]:
    _reaper_main()
