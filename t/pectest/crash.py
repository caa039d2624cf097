"""What the crash tests share (t/test_crash.py, t/test_crash_listener.py,
t/test_crash_nodes.py): providers whose pecmilter is killed with SIGKILL and
started again, clients submitting N certified messages mario@pec-a.test ->
luigi@pec-b.test and submitting again what was refused for now, the killer,
waiting for queues, outboxes and mailboxes to drain, and the check that every
owed message is in the right mailbox exactly once.

    a = crash.Provider(work, "a", pf.loopback_ip(1), ("mario", "ricevute"))
    b = crash.Provider(work, "b", pf.loopback_ip(2), ("luigi",))
    a.postfix(work, b); b.postfix(work, a)
    sub = crash.Submitter([a], n, clients=3)
    crash.killer((a, b), rnd, stop, busy, events, work, kills=6, least=2)
    crash.wait_drained([a, b], {"luigi": (b, "luigi"), ...}, expected, 150, flushes)
    problems, figures = crash.check(a, b, sub, n)

A provider of several nodes is several Providers with one maildir_root
(root=) and one PostgreSQL store (pg=, the pectest.postgres.Postgres whose
database "pec" they share).
"""
import email
import email.policy
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time

from . import config, daemon, env, pki
from . import postfix as pf
from . import provider as shipped
from .postgres import PostgresError

MARIO = "mario@pec-a.test"
RICEVUTE = "ricevute@pec-a.test"
LUIGI = "luigi@pec-b.test"


def log(*a):
    print(*a, flush=True)


def client_msgid(i):
    return "crash.%d@client.pec-a.test" % i


def message(i, sender=MARIO, to=LUIGI, msgid=None):
    return (b"From: Mario Rossi <%s>\r\nTo: %s\r\nSubject: Prova crash %d\r\n"
            b"Date: Tue, 25 Nov 2025 10:00:00 +0100\r\nMessage-ID: <%s>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Messaggio numero %d.\r\n"
            % (sender.encode(), to.encode(), i, (msgid or client_msgid(i)).encode(), i))


class Provider:
    """One provider, or one node of one: its configuration, Postfix, Maildirs and
    pecmilter incarnations.  NAME is the directory's; PROVIDER the test PKI's
    provider ("a", "b"; NAME by default).  ROOT: the maildir_root, when shared
    with other nodes; PG: the PostgreSQL whose database "pec" is the store.
    SETTINGS: more of pecmilter.conf (node_id, the deadlines, ...)."""

    def __init__(self, work, name, ip, users, provider=None, root=None, pg=None, **settings):
        self.name = name
        self.ip = ip
        self.base = os.path.join(work, name)
        os.makedirs(self.base)
        self.conf = os.path.join(self.base, "pecmilter.conf")
        self.root = root or os.path.join(self.base, "pecmail")
        for user in users:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(self.root, user, sub), exist_ok=True)
        for d in {self.base, self.root}:
            for top, _, _ in os.walk(d):
                os.chmod(top, 0o777)
        self.port = pf.free_port(ip)
        self.reinject = pf.free_port(ip)
        self.pg = pg
        conf = dict(warning_after=3600, deadline_not_before=7000, deadline_after=7200,
                    seal_dir=os.path.join(self.base, "seals"))
        if pg is not None:
            conf.update(store=pg.conninfo("pec"), shared_storage="yes")
        conf.update(settings)
        self.settings = config.write(
            self.conf, provider or name,
            roles={"pec-submission": "access", "pec-mx": "reception"},
            reinject="smtp:%s:%d" % (ip, self.reinject), outbox_retry_max_backoff=1,
            mailbox_backend="maildir", maildir_root=self.root, test_mode="yes", **conf)
        self.db = self.settings["store"]
        self.daemon = None
        self.kills = 0
        self.logs = []          # the stderr of every incarnation
        self.exits = []         # (status, why) of every incarnation that ended by itself

    def postfix(self, work, peer, transports=None):
        """Its Postfix, sending PEER's domain to PEER's port (and TRANSPORTS besides)."""
        routes = {peer.settings["domains"][0]: "smtp:[%s]:%d" % (peer.ip, peer.port)}
        routes.update(transports or {})
        self.pf = shipped.Provider(work, "pf" + self.name, self.settings, ip=self.ip,
                                   port=self.port, transports=routes)
        return self.pf

    def start(self, work, ready=False):
        """Start pecmilter.  READY: wait until it has opened its store (it logs
        "starting"); one that exits first (73: the store could not be opened) is
        started again after a second, as systemd's Restart=on-failure would, and
        what it said is kept in self.exits."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.daemon = daemon.start(self.conf, timeout=30)
            except daemon.DaemonError as e:
                if not ready or "exited with status 73" not in str(e):
                    raise
                # it gave up on its store before its milter socket took a connection
                self.logs.append(str(e))
                self.exits.append((73, " / ".join(str(e).strip().splitlines()[-3:])))
            else:
                pf.register_process(self.daemon.proc.pid, work)
                if not ready:
                    return
                while (self.daemon.running()
                       and "starting: milter on" not in self.daemon.stderr()):
                    time.sleep(0.05)
                if self.daemon.running():
                    return
                self.ended()
            assert time.monotonic() < deadline, "pecmilter %s does not start: %s" % (
                self.name, self.exits[-1])
            time.sleep(1)

    def ended(self):
        """The incarnation that exited by itself: its status and last words to self.exits."""
        d = self.daemon
        pf.unregister_process(d.proc.pid)
        text = d.stop()
        self.logs.append(text)
        self.exits.append((d.returncode, " / ".join(text.strip().splitlines()[-3:])))
        self.daemon = None

    def kill9(self):
        d = self.daemon
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        pf.unregister_process(d.proc.pid)
        self.logs.append(d.stop())
        self.kills += 1

    def stop(self):
        if self.daemon is not None:
            self.logs.append(self.daemon.stop())
            pf.unregister_process(self.daemon.proc.pid)
            rc = self.daemon.returncode
            self.daemon = None
            return rc
        return 0

    def log_text(self):
        return "\n".join(self.logs + ([self.daemon.stderr()] if self.daemon else []))

    def mailbox(self, user):
        """(path, bytes) of every message in the Maildir of USER."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.root, user, sub)
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    out.append((os.path.join(d, n), f.read()))
        return out

    def count(self, user):
        return sum(len(os.listdir(os.path.join(self.root, user, s))) for s in ("new", "cur"))

    def outbox(self):
        """(rows not yet sent, rows resent after a crash); (1, 0) while the store
        cannot be read"""
        if self.pg is not None:
            try:
                row = self.pg.query("pec", "SELECT count(*) FILTER (WHERE state != 'sent'),"
                                           " count(*) FILTER (WHERE doubts > 0) FROM outbox")
                return tuple(int(x) for x in row[0].split("|"))
            except PostgresError:
                return 1, 0
        try:
            with sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10) as c:
                left = c.execute("SELECT count(*) FROM outbox WHERE state != 'sent'").fetchone()
                doubts = c.execute("SELECT count(*) FROM outbox WHERE doubts > 0").fetchone()
            return left[0], doubts[0]
        except sqlite3.OperationalError:
            return 1, 0


class Submitter:
    """CLIENTS threads submitting messages 0..N-1 as MARIO to LUIGI, message i
    through the submission listener of NODES[i % len(NODES)]; a submission
    refused for now is made again through the same node."""

    def __init__(self, nodes, n, clients):
        self.nodes = nodes
        self.n = n
        self.next = 0
        self.lock = threading.Lock()
        self.retried = set()
        self.refusals = 0
        self.errors = []
        self.finished = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def done(self):
        return not any(t.is_alive() for t in self.threads)

    def take(self):
        with self.lock:
            i = self.next
            self.next += 1
            return i if i < self.n else None

    def run(self):
        while (i := self.take()) is not None:
            node = self.nodes[i % len(self.nodes)].pf
            deadline = time.monotonic() + 120
            while True:
                try:
                    code, text = node.send(MARIO, [LUIGI], message(i),
                                           port=node.submission_port,
                                           xclient_login=MARIO, timeout=30)
                except OSError as e:
                    code, text = 421, str(e)
                if code == 250:
                    break
                with self.lock:
                    self.refusals += 1
                    self.retried.add(client_msgid(i))
                if code >= 500 or time.monotonic() > deadline:
                    self.errors.append("message %d: %s %s" % (i, code, text))
                    break
                time.sleep(0.3)
        self.finished.append(time.monotonic())


def killer(providers, rnd, stop, busy_until, events, work, kills, least, ready=False,
           most=None):
    """Kill a random provider's pecmilter at random moments, restart it at once
    (READY: Provider.start's), until KILLS in all and LEAST of each and
    busy_until() is false, or MOST in all (twice KILLS unless said)."""
    while not stop.is_set():
        time.sleep(rnd.uniform(0.5, 4.0))
        done = {p.name: p.kills for p in providers}
        total = sum(done.values())
        if total >= kills and min(done.values()) >= least and not busy_until():
            return
        if total >= (most or 2 * kills):
            return
        lagging = [p for p in providers if p.kills < least and total >= kills - least]
        victim = lagging[0] if lagging else rnd.choice(providers)
        t = time.monotonic()
        victim.kill9()
        try:
            victim.start(work, ready)
        except BaseException as e:          # settle() stops waiting for the clients
            events.failed = "restarting pecmilter %s: %s" % (victim.name, e)
            raise
        events.append("%.1fs: killed pecmilter %s (restarted in %.2fs)"
                      % (t - events.t0, victim.name, time.monotonic() - t))


class Events(list):
    t0 = 0.0
    failed = None


def settle(sub, kt, events):
    """Wait for the Submitter SUB and then the killer's thread KT to finish; print
    EVENTS; the seconds from events.t0 to the last submission."""
    while not sub.done():
        assert events.failed is None, events.failed
        time.sleep(0.5)
    t_submit = max(sub.finished) - events.t0
    kt.join(120)
    assert not kt.is_alive(), "the killer did not finish"
    for e in events:
        log("  " + e)
    assert not sub.errors, "submissions failed: %s" % sub.errors[:5]
    return t_submit


def header(raw, name):
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    v = m.get(name)
    return re.sub(r"\s+", " ", str(v)).strip() if v is not None else None


def pecverify(paths):
    """pecverify --json on PATHS, in chunks: {path: report}."""
    out = {}
    for k in range(0, len(paths), 400):
        chunk = paths[k:k + 400]
        p = subprocess.run([env.program("pecverify"), "--trust", pki.trust(), "--index",
                            pki.index(), "--json"] + chunk, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=300)
        reports = json.loads(p.stdout)
        assert len(reports) == len(chunk), p.stderr.decode()
        out.update(zip(chunk, reports))
    return out


def openssl_verify(path):
    p = subprocess.run(["openssl", "smime", "-verify", "-in", path, "-CAfile", pki.trust(),
                        "-purpose", "any", "-out", "/dev/null"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, "%s: %s" % (path, p.stdout.decode("utf-8", "replace"))


STILL = 20      # seconds without progress before the queues are flushed


SKIPPED = b"skipped, still being delivered"


def flush(p, flushes):
    """`postfix flush` for provider P's Postfix, as an operator would; counted in FLUSHES."""
    p.pf.flush()
    flushes[p.name] = flushes.get(p.name, 0) + 1


class Unsticker(threading.Thread):
    """Flush a provider's Postfix queue as soon as its maillog says
    qmgr skipped a queue file "still being delivered", until stop().

    qmgr then puts the file back into the incoming queue dated a minute ahead,
    and nothing scans incoming again until new mail arrives (see wait_drained).
    With the test's 1 s backoffs a file deferred is often picked up again before
    the delivery agent lets go of it, and a minute and more of waiting is longer
    than deadlines measured in seconds (test_crash_nodes' 24 h stands at 75 s):
    a receipt held so would earn a timeout notice for a delivered message.  An
    operator's MTA, whose backoffs are minutes, never meets this.  FLUSHES
    counts the flushes by provider name."""

    def __init__(self, providers, flushes, every=1.0):
        super().__init__(daemon=True)
        self.providers, self.flushes, self.every = providers, flushes, every
        self.halt = threading.Event()
        self.seen = {p.name: 0 for p in providers}

    def run(self):
        while not self.halt.wait(self.every):
            for p in self.providers:
                try:
                    with open(p.pf.maillog, "rb") as f:
                        f.seek(self.seen[p.name])
                        text = f.read()
                except FileNotFoundError:
                    continue
                end = text.rfind(b"\n") + 1
                self.seen[p.name] += end
                if SKIPPED in text[:end]:
                    flush(p, self.flushes)

    def stop(self):
        self.halt.set()
        self.join(70)


def wait_drained(providers, boxes, expected, timeout, flushes, held=None):
    """Until every mailbox holds what is owed and queues and outboxes are empty.

    PROVIDERS: whose outboxes and Postfix queues must empty (but for HELD[name]
    queue files, mail a test keeps from leaving); BOXES: {box: (provider, user)};
    EXPECTED: {box: messages owed}.

    A queue file can sit in Postfix's incoming queue for a while on its own:
    when qmgr finds a file it wants to feed still locked by the delivery
    agent that has just deferred it (the test's 1 s backoffs make that
    likely), it logs "skipped, still being delivered" and puts it back into
    incoming dated a minute ahead, and nothing scans incoming again until
    new mail arrives.  So after STILL seconds without progress the queues
    are flushed (`postfix flush`, as an operator would); FLUSHES counts it.
    """
    held = held or {}
    deadline = time.monotonic() + timeout
    last, still_since = None, time.monotonic()
    while True:
        counts = {k: p.count(user) for k, (p, user) in boxes.items()}
        left = {p.name: p.outbox()[0] for p in providers}
        queues = {p.name: len(p.pf.queue_files()) for p in providers}
        waiting = {k: v for k, v in queues.items() if v > held.get(k, 0)}
        if (all(counts[k] >= v for k, v in expected.items())
                and not any(left.values()) and not waiting):
            return
        now = (counts, left, queues)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > STILL and waiting:
            for p in providers:
                if p.name in waiting:
                    flush(p, flushes)
            still_since = time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError("not drained after %ss: mailboxes %s (owed %s), outbox rows "
                                 "left %s, queue files %s%s"
                                 % (timeout, counts, expected, left, queues,
                                    "".join("\n--- %s ---\n%s" % (p.name, p.pf.log_tail())
                                            for p in providers)))
        time.sleep(0.5)


def check(a, b, sub, n, more=()):
    """Every owed message in the right mailbox, once; returns (problems, figures).
    MORE: further users of A whose mailboxes are verified too, and whose
    (path, bytes, pecverify report) figures["more"][user] lists for the caller
    to check."""
    problems = []
    by_path = {}
    boxes = {"luigi": b.mailbox("luigi"), "mario": a.mailbox("mario"),
             "ricevute": a.mailbox("ricevute")}
    boxes.update({user: a.mailbox(user) for user in more})
    for msgs in boxes.values():
        by_path.update(msgs)
    t = time.monotonic()
    reports = pecverify(sorted(by_path))
    t_verify = time.monotonic() - t
    for path, r in reports.items():
        if not r.get("valid"):
            problems.append("%s does not verify: %s" % (path, r))
    for box, msgs in boxes.items():
        ids = [header(raw, "Message-ID") for _, raw in msgs]
        twice = {i for i in ids if ids.count(i) > 1}
        if twice:
            problems.append("%s holds %d Message-IDs more than once, e.g. %s"
                            % (box, len(twice), sorted(twice)[:3]))

    # luigi: one busta per message; the identificativo of each client message
    ident = {}
    for path, raw in boxes["luigi"]:
        r = reports[path]
        ref = header(raw, "X-Riferimento-Message-ID")
        if r.get("kind") != "busta" or ref is None:
            problems.append("luigi holds a %s (%s)" % (r.get("kind"), header(raw, "Subject")))
            continue
        ref = ref.strip("<>")
        if ref in ident:
            problems.append("luigi got two buste for %s" % ref)
        ident[ref] = r["identificativo"]
    missing = [i for i in range(n) if client_msgid(i) not in ident]
    if missing:
        problems.append("%d buste never reached luigi, e.g. %s" % (len(missing), missing[:5]))
    want = {v: k for k, v in ident.items()}          # identificativo -> client Message-ID
    if len(want) != len(ident):
        problems.append("%d messages share an identificativo with another"
                        % (len(ident) - len(want)))

    # mario: accettazione and consegna; ricevute: presa in carico
    found = {"accettazione": {}, "avvenuta-consegna": {}, "presa-in-carico": {}}
    for box in ("mario", "ricevute"):
        for path, raw in boxes[box]:
            r = reports[path]
            tipo = r.get("tipo")
            right = {"accettazione": "mario", "avvenuta-consegna": "mario",
                     "presa-in-carico": "ricevute"}.get(tipo)
            if right != box:
                problems.append("%s holds a %s/%s (%s)" % (box, r.get("kind"), tipo,
                                                           header(raw, "Subject")))
                continue
            ref = (header(raw, "X-Riferimento-Message-ID") or "").strip("<>")
            if r["identificativo"] not in want:
                problems.append("%s: %s for unknown %s (%s)%s" % (
                    box, tipo, r["identificativo"], ref,
                    " - a resubmission not recognised as the retry of its first transaction"
                    if tipo == "accettazione" and ref in sub.retried else ""))
                continue
            if tipo == "accettazione" and ref != want[r["identificativo"]]:
                problems.append("accettazione %s names %s" % (r["identificativo"], ref))
            if tipo == "avvenuta-consegna" and r.get("consegna") != LUIGI:
                problems.append("consegna %s is about %s" % (r["identificativo"], r.get("consegna")))
            got = found[tipo].setdefault(r["identificativo"], [])
            got.append(path)
            if len(got) > 1:
                problems.append("%s for %s twice%s" % (
                    tipo, r["identificativo"],
                    " (B's reception point committed one, was killed before Postfix had its "
                    "reply, and made another when A's Postfix sent the busta again: see B's "
                    "maillog for a 451 in reply to end of DATA)"
                    if tipo == "presa-in-carico" else ""))
    for tipo, got in found.items():
        lack = [i for i in want if i not in got]
        if lack:
            problems.append("%d %s missing, e.g. %s" % (len(lack), tipo, lack[:3]))

    # openssl on a sample of every kind
    rnd = random.Random(0)
    sample = rnd.sample(boxes["luigi"], min(5, len(boxes["luigi"])))
    for tipo, got in found.items():
        paths = sorted(p for v in got.values() for p in v)
        sample += [(p, None) for p in rnd.sample(paths, min(5, len(paths)))]
    for path, _ in sample:
        openssl_verify(path)

    return problems, {
        "buste": len(ident),
        "receipts_found": sum(len(v) for got in found.values() for v in got.values()),
        "t_verify": t_verify,
        "files": len(by_path),
        "more": {user: [(p, raw, reports[p]) for p, raw in boxes[user]] for user in more},
    }


def pecctl(conf, *args):
    return subprocess.run([env.program("pecctl"), "-c", conf] + list(args),
                          capture_output=True, text=True, timeout=300)


def audit(name, conf, transactions):
    """`pecctl audit` and `pecctl log verify` on the provider whose node CONF
    configures: (its output, the problems: not clean, a transaction pending, other
    than TRANSACTIONS transactions (None: not checked), a chain that does not
    verify)."""
    problems = []
    p = pecctl(conf, "audit", "--json")
    text = "pecctl audit (%s): exit %d\n%s" % (name, p.returncode,
                                               (p.stdout + p.stderr).strip()[-2000:])
    if p.returncode != 0:
        problems.append("pecctl audit on %s exited %d" % (name, p.returncode))
    else:
        rep = json.loads(p.stdout)
        if rep["pending"] != 0:
            problems.append("pecctl audit on %s: %d transactions pending"
                            % (name, rep["pending"]))
        if transactions is not None and rep["transactions"] != transactions:
            problems.append("pecctl audit on %s: %d transactions for %d messages"
                            % (name, rep["transactions"], transactions))
    v = pecctl(conf, "log", "verify")
    if v.returncode != 0:
        problems.append("pecctl log verify on %s: %s" % (name, v.stdout + v.stderr))
    return text + "\n" + v.stdout.strip(), problems


def begin(prefix):
    """(seed, its random.Random, a fresh work directory): PECTEST_SEED replays a run."""
    seed = int(os.environ.get("PECTEST_SEED") or time.time())
    work = tempfile.mkdtemp(prefix=prefix)
    os.chmod(work, 0o755)
    return seed, random.Random(seed), work


def finish(providers, work, ok, seed):
    """Stop the pecmilters and Postfixes of PROVIDERS (going on past failures); the
    work directory removed when the test passed (unless PECTEST_KEEP), else kept."""
    for p in providers:
        try:
            p.stop()
        except Exception as e:
            log("stopping pecmilter %s: %s" % (p.name, e))
        if hasattr(p, "pf"):
            try:
                p.pf.stop()
            except Exception as e:
                log("stopping Postfix %s: %s" % (p.name, e))
    if ok and not os.environ.get("PECTEST_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        log("workdir kept: %s (seed %d)" % (work, seed))
