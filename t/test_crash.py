"""Crash safety (issue #7 item 3): certified mail A -> B through two real Postfix
instances while both pecmilters are killed with SIGKILL at random moments.

A (pec-a.test) and B (pec-b.test) are set up as in test_e2e_exchange, both
delivering into Maildirs through pecmilter's delivery point (LMTP), with
Postfix keeping mail while a milter is down (milter_default_action =
tempfail) and retrying deliveries within seconds.  The user mario@pec-a.test
submits N messages (500; PECTEST_CRASH_N) to luigi@pec-b.test from a few
parallel clients; a submission refused for now (the milter was down) is
submitted again, as a mail client would.  Meanwhile A's and B's pecmilter are
killed with SIGKILL at random moments (PECTEST_SEED replays the choices; at
least KILLS in all, at least two of each) and restarted at once.  In the
second scenario (test_crash_listener.py) A's reinjection listener is also
taken away for a minute mid-run, so A's outbox must hold its receipts and
deliver them afterwards.

Once both queues and both outboxes have drained, for every message:
  luigi (B)          the busta di trasporto, once;
  mario (A)          its ricevuta di accettazione and its avvenuta consegna,
                     once each, with the busta's identificativo and the
                     client's Message-ID in X-Riferimento-Message-ID;
  ricevute (A)       B's presa in carico, once (the receipt_address of A
                     gets it, pec-rules.md);
and nothing else in any mailbox, no Message-ID twice in a mailbox, every
message valid for pecverify (all of them, one run per mailbox) and for
`openssl smime -verify` (a sample), `pecctl audit` clean (exit 0) on both
providers with no transaction pending, and the legal logs verifying.  A
kill between A's commit and its reply reaching Postfix leaves an accettazione
queued for a busta Postfix dropped; the client's repeated submission must be
recognised as the retry of that transaction (lib/provider/access.h) and carry its
identificativo, so even then there is exactly one accettazione per message.
At the end message 0 is submitted once more, its busta long delivered: A
must take it for the retry (the same busta leaves again), and B must store
no second copy and send no second presa in carico or consegna.
Figures printed: messages, kills of A and B, resubmissions A recognised,
receipts expected and found,
copies the delivery points suppressed (a second copy recorded in the store,
or the Maildir file of a delivery killed before its record), resent outbox
rows, messages sent again because the peer's milter died at end of DATA,
time taken.
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
import sys
import tempfile
import threading
import time

from pectest import config, daemon, env, pki
from pectest import postfix as pf
from pectest import provider as shipped

MARIO = "mario@pec-a.test"
RICEVUTE = "ricevute@pec-a.test"
LUIGI = "luigi@pec-b.test"
N = int(os.environ.get("PECTEST_CRASH_N") or 500)
KILLS = 6                # at least, in all; at least two of each provider
CLIENTS = 3
LISTENER_DOWN = 60       # seconds, second scenario
DRAIN_TIMEOUT = 150


def log(*a):
    print(*a, flush=True)


def client_msgid(i):
    return "crash.%d@client.pec-a.test" % i


def message(i):
    return (b"From: Mario Rossi <%s>\r\nTo: %s\r\nSubject: Prova crash %d\r\n"
            b"Date: Tue, 25 Nov 2025 10:00:00 +0100\r\nMessage-ID: <%s>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Messaggio numero %d.\r\n"
            % (MARIO.encode(), LUIGI.encode(), i, client_msgid(i).encode(), i))


class Provider:
    """One provider: its configuration, Postfix, Maildirs and pecmilter incarnations."""

    def __init__(self, work, name, ip, users):
        self.name = name
        self.ip = ip
        self.base = os.path.join(work, name)
        os.makedirs(self.base)
        self.conf = os.path.join(self.base, "pecmilter.conf")
        self.root = os.path.join(self.base, "pecmail")
        for user in users:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(self.root, user, sub))
        for top, _, _ in os.walk(self.base):
            os.chmod(top, 0o777)
        self.port = pf.free_port(ip)
        self.reinject = pf.free_port(ip)
        self.settings = config.write(
            self.conf, name, roles={"pec-submission": "access", "pec-mx": "reception"},
            reinject="smtp:%s:%d" % (ip, self.reinject), outbox_retry_max_backoff=1,
            mailbox_backend="maildir", maildir_root=self.root,
            seal_dir=os.path.join(self.base, "seals"),
            warning_after=3600, deadline_not_before=7000, deadline_after=7200,
            test_mode="yes")
        self.db = self.settings["store"]
        self.daemon = None
        self.kills = 0
        self.logs = []          # the stderr of every incarnation

    def postfix(self, work, peer):
        self.pf = shipped.Provider(
            work, "pf" + self.name, self.settings, ip=self.ip, port=self.port,
            transports={"pec-%s.test" % peer.name: "smtp:[%s]:%d" % (peer.ip, peer.port)})
        return self.pf

    def start(self, work):
        self.daemon = daemon.start(self.conf, timeout=30)
        pf.register_process(self.daemon.proc.pid, work)

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
        """(rows not yet sent, rows resent after a crash)"""
        try:
            with sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10) as c:
                left = c.execute("SELECT count(*) FROM outbox WHERE state != 'sent'").fetchone()
                doubts = c.execute("SELECT count(*) FROM outbox WHERE doubts > 0").fetchone()
            return left[0], doubts[0]
        except sqlite3.OperationalError:
            return 1, 0


class Submitter:
    """CLIENTS threads submitting messages 0..N-1 through A's submission listener."""

    def __init__(self, a):
        self.a = a
        self.next = 0
        self.lock = threading.Lock()
        self.retried = set()
        self.refusals = 0
        self.errors = []
        self.finished = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()

    def done(self):
        return not any(t.is_alive() for t in self.threads)

    def take(self):
        with self.lock:
            i = self.next
            self.next += 1
            return i if i < N else None

    def run(self):
        while (i := self.take()) is not None:
            deadline = time.monotonic() + 120
            while True:
                try:
                    code, text = self.a.pf.send(MARIO, [LUIGI], message(i),
                                                port=self.a.pf.submission_port,
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


def killer(providers, rnd, stop, busy_until, events, work):
    """Kill a random provider's pecmilter at random moments, restart it at once."""
    while not stop.is_set():
        time.sleep(rnd.uniform(0.5, 4.0))
        kills = {p.name: p.kills for p in providers}
        total = sum(kills.values())
        if total >= KILLS and min(kills.values()) >= 2 and not busy_until():
            return
        if total >= 2 * KILLS:
            return
        lagging = [p for p in providers if p.kills < 2 and total >= KILLS - 2]
        victim = lagging[0] if lagging else rnd.choice(providers)
        t = time.monotonic()
        victim.kill9()
        victim.start(work)
        events.append("%.1fs: killed pecmilter %s (restarted in %.2fs)"
                      % (t - events.t0, victim.name, time.monotonic() - t))


class Events(list):
    t0 = 0.0


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


POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
STILL = 20      # seconds without progress before the queues are flushed


def wait_drained(a, b, expected, timeout, flushes):
    """Until every mailbox holds what is owed and queues and outboxes are empty.

    A queue file can sit in Postfix's incoming queue for a while on its own:
    when qmgr finds a file it wants to feed still locked by the delivery
    agent that has just deferred it (the test's 1 s backoffs make that
    likely), it logs "skipped, still being delivered" and puts it back into
    incoming dated a minute ahead, and nothing scans incoming again until
    new mail arrives.  So after STILL seconds without progress the queues
    are flushed (postqueue -f, as an operator would); FLUSHES counts it.
    """
    deadline = time.monotonic() + timeout
    last, still_since = None, time.monotonic()
    while True:
        counts = {"luigi": b.count("luigi"), "mario": a.count("mario"),
                  "ricevute": a.count("ricevute")}
        left = {p.name: p.outbox()[0] for p in (a, b)}
        queues = {p.name: len(p.pf.queue_files()) for p in (a, b)}
        if (all(counts[k] >= v for k, v in expected.items())
                and not any(left.values()) and not any(queues.values())):
            return
        now = (counts, left, queues)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > STILL and any(queues.values()):
            for p in (a, b):
                if queues[p.name]:
                    subprocess.run([POSTQUEUE, "-c", p.pf.etc, "-f"], capture_output=True,
                                   timeout=60)
                    flushes[p.name] = flushes.get(p.name, 0) + 1
            still_since = time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError("not drained after %ss: mailboxes %s (owed %s), outbox rows "
                                 "left %s, queue files %s\n--- A ---\n%s\n--- B ---\n%s"
                                 % (timeout, counts, expected, left, queues, a.pf.log_tail(),
                                    b.pf.log_tail()))
        time.sleep(0.5)


def check(a, b, sub, work):
    """Every owed message in the right mailbox, once; returns the figures."""
    problems = []
    by_path = {}
    boxes = {"luigi": b.mailbox("luigi"), "mario": a.mailbox("mario"),
             "ricevute": a.mailbox("ricevute")}
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
    missing = [i for i in range(N) if client_msgid(i) not in ident]
    if missing:
        problems.append("%d buste never reached luigi, e.g. %s" % (len(missing), missing[:5]))
    want = {v: k for k, v in ident.items()}          # identificativo -> client Message-ID

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
    }


def resend_delivered(a, b, expected, flushes):
    """Message 0 submitted once more, its busta long delivered: what a client's retry does
    when the first copy left after all (or a user sending the same message again).  A must
    take it for the retry of its transaction; B's reception point must send no second
    presa in carico and its delivery point store no second copy and send no second
    receipt (check() then finds each receipt once).  Returns the identificativo."""
    before = {p.name: p.log_text() for p in (a, b)}
    code, text = a.pf.send(MARIO, [LUIGI], message(0), port=a.pf.submission_port,
                           xclient_login=MARIO, timeout=30)
    assert code == 250, "message 0 again: %s %s" % (code, text)
    deadline = time.monotonic() + 60
    while True:
        new = {p.name: p.log_text()[len(before[p.name]):] for p in (a, b)}
        m = re.search(r"access: resubmission of identificativo=(\S+) \(client Message-ID "
                      r"<%s>" % re.escape(client_msgid(0)), new["a"])
        if (m and "taken in charge already, no second presa in carico" in new["b"]
                and "status=duplicate" in new["b"] and m.group(1) in new["b"]):
            break
        assert time.monotonic() < deadline, (
            "message 0 sent again: A recognised it: %s; B: %s"
            % (bool(m), "\n".join(l for l in new["b"].splitlines() if "reception" in l
                                  or "status=" in l)[-3000:]))
        time.sleep(0.5)
    wait_drained(a, b, expected, 60, flushes)
    return m.group(1)


def pecctl(conf, *args):
    return subprocess.run([env.program("pecctl"), "-c", conf] + list(args),
                          capture_output=True, text=True, timeout=300)


def run(scenario):
    if not pf.have_postfix():
        env.skip("needs root and Postfix")
    pki.ensure()
    seed = int(os.environ.get("PECTEST_SEED") or time.time())
    rnd = random.Random(seed)
    work = tempfile.mkdtemp(prefix="pectest-crash-")
    os.chmod(work, 0o755)
    log("%s: seed %d (PECTEST_SEED=%d replays the choices), %d messages"
        % (scenario, seed, seed, N))
    a = Provider(work, "a", pf.loopback_ip(1), ("mario", "ricevute"))
    b = Provider(work, "b", pf.loopback_ip(2), ("luigi",))
    a.postfix(work, b)
    b.postfix(work, a)
    ok = False
    stop = threading.Event()
    events = Events()
    try:
        a.pf.start()
        b.pf.start()
        a.start(work)
        b.start(work)
        t0 = events.t0 = time.monotonic()
        sub = Submitter(a)
        sub.start()
        down = threading.Event()
        kt = threading.Thread(target=killer, args=((a, b), rnd, stop,
                                                   lambda: not sub.done() or down.is_set(),
                                                   events, work), daemon=True)
        kt.start()
        listener = None
        if scenario == "listener":
            down.set()
            time.sleep(rnd.uniform(2, 6))
            listener = time.monotonic() - t0
            port, a.pf.reinject_port = a.pf.reinject_port, None
            a.pf.reload()
            events.append("%.1fs: A's reinjection listener stopped" % listener)
            time.sleep(LISTENER_DOWN)
            a.pf.reinject_port = port
            a.pf.reload()
            down.clear()
            events.append("%.1fs: A's reinjection listener back" % (time.monotonic() - t0))
        while not sub.done():
            time.sleep(0.5)
        t_submit = max(sub.finished) - t0
        kt.join(120)
        assert not kt.is_alive(), "the killer did not finish"
        for e in events:
            log("  " + e)
        assert not sub.errors, "submissions failed: %s" % sub.errors[:5]
        expected = {"luigi": N, "mario": 2 * N, "ricevute": N}
        flushes = {}
        wait_drained(a, b, expected, DRAIN_TIMEOUT, flushes)
        time.sleep(3)                      # anything late would show up now
        wait_drained(a, b, expected, 30, flushes)
        t_drain = time.monotonic() - t0
        doubts = {p.name: p.outbox()[1] for p in (a, b)}
        resent = resend_delivered(a, b, expected, flushes)
        problems, fig = check(a, b, sub, work)
        audits = {p.name: pecctl(p.conf, "audit", "--json") for p in (a, b)}
        verifies = {p.name: pecctl(p.conf, "log", "verify") for p in (a, b)}
        for p in (a, b):
            rc = p.stop()
            if rc != 0:
                problems.append("pecmilter %s exited %s" % (p.name, rc))
        texts = {p.name: p.log_text() for p in (a, b)}
        # messages a Postfix had to send again because the peer's milter died at the end
        # of DATA: where a reception point may have committed and not answered
        eod = {p.name: len(re.findall(r"status=deferred \(host [^)]* said: 4\d\d [^)]*"
                                      r"in reply to end of DATA", p.pf.log())) for p in (a, b)}
        suppressed = {k: len(re.findall(r"status=duplicate", v)) for k, v in texts.items()}
        suppressed["b"] -= 1                                    # resend_delivered's
        refound = {k: len(re.findall(r"found in the mailbox from an unrecorded delivery", v))
                   for k, v in texts.items()}
        resubmissions = len(re.findall(r"access: resubmission of identificativo=",
                                       texts["a"])) - 1         # less resend_delivered's
        for k, v in texts.items():
            if "Sanitizer" in v:
                problems.append("a sanitizer report from pecmilter %s" % k)
        for k, p in audits.items():
            log("pecctl audit (%s): exit %d\n%s" % (k, p.returncode,
                                                    (p.stdout + p.stderr).strip()[-2000:]))
            if p.returncode != 0:
                problems.append("pecctl audit on %s exited %d" % (k, p.returncode))
                continue
            rep = json.loads(p.stdout)
            if rep["pending"] != 0:
                problems.append("pecctl audit on %s: %d transactions pending"
                                % (k, rep["pending"]))
            if k == "a" and rep["transactions"] != N:
                problems.append("pecctl audit on a: %d transactions for %d messages"
                                % (rep["transactions"], N))
        for k, p in verifies.items():
            if p.returncode != 0:
                problems.append("pecctl log verify on %s: %s" % (k, p.stdout + p.stderr))
        log("figures (%s): messages %d (submissions repeated after a refusal: %d, of them "
            "recognised by A as the retry of an accepted transaction: %d); kills "
            "A %d, B %d%s; receipts expected %d, found %d; buste at B %d; "
            "copies suppressed by the delivery point A %d, B %d, "
            "found in the Maildir from a delivery killed before its record A %d, B %d; "
            "outbox rows resent after a kill A %d, B %d; queues flushed while draining %s; "
            "sent again after the peer's "
            "milter died at end of DATA: buste A->B %d, receipts B->A %d; submitted in "
            "%.1fs, drained at %.1fs; pecverify on %d files %.1fs; message 0 sent again "
            "after delivery: busta %s, no second copy or receipt"
            % (scenario, N, len(sub.retried), resubmissions, a.kills, b.kills,
               ("; A's reinjection listener down %ds from %.1fs" % (LISTENER_DOWN, listener))
               if listener is not None else "", 3 * N, fig["receipts_found"], fig["buste"],
               suppressed["a"], suppressed["b"], refound["a"],
               refound["b"], doubts["a"],
               doubts["b"], flushes or "never", eod["a"], eod["b"], t_submit, t_drain,
               fig["files"], fig["t_verify"], resent))
        assert a.kills + b.kills >= KILLS and min(a.kills, b.kills) >= 2
        assert not problems, "\n".join(problems[:30])
        ok = True
    finally:
        stop.set()
        for p in (a, b):
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
    log("1 passed")


if __name__ == "__main__":
    run("kills")
