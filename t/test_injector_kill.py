"""kill -9 between "event stored" and "row sent": nothing owed is lost.

Two rounds against a real private Postfix (reinjection listener, Maildir):

  queued    events are committed first (injectord enqueue); the injector is
            then killed with SIGKILL at random moments while it drains them,
            and restarted each time;
  live      one process commits events and injects them at once (the
            producer thread and the injector share the store and the wake-up),
            killed at random moments and restarted, going on where it was.

Afterwards every Message-ID owed must be in the Maildir exactly once, the
store must say every row was sent, and the legal log must still verify.

The one window in which a kill can cause a second copy is after the MTA
answered 250 and before the store recorded it (see lib/inject.h): SMTP has no
way to ask the MTA afterwards whether it took a message.  A row the restarted
injector finds "sending" is resent, same bytes, and counted as a doubt.  So
the test demands, strictly: nothing missing, nothing unknown, every row sent,
every Message-ID that was never in doubt exactly once, a doubted one at most
twice and then byte-identical (Postfix's own headers aside), and the log
still verifying.  It prints the figures: kills, doubted rows, copies that
arrived twice, and from a calm run first, how long a 250 waits to be
recorded against how long one message takes.
"""
import email
import email.policy
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from pectest import config, env, pki
from pectest import postfix as pf

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
PECCTL = env.program("pecctl")
RCPT = "mario@pec-a.test"
N_QUEUED = 150
N_LIVE = 150
KILLS = 8


def log(*a):
    print(*a, flush=True)


class Run:
    def __init__(self, conf, logf, args=()):
        self.logpath = logf.name
        self.started = self._runs()
        self.proc = subprocess.Popen([INJECTORD, "-c", conf, "run"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True)
        pf.register_process(self.proc.pid)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        pf.unregister_process(self.proc.pid)

    def _runs(self):
        with open(self.logpath, "rb") as f:
            return f.read().count(b": running\n")

    def wait_running(self, timeout=10):
        """Until it has said "running": its signal mask is set, SIGTERM stops it cleanly."""
        deadline = time.monotonic() + timeout
        while self._runs() <= self.started:
            assert time.monotonic() < deadline and self.proc.poll() is None, "injectord died"
            time.sleep(0.02)

    def stop(self):
        self.wait_running()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        pf.unregister_process(self.proc.pid)
        return rc


def outbox_rows(db):
    with sqlite3.connect("file:%s?mode=ro" % db, uri=True) as c:
        return {mid: (state, doubts) for mid, state, doubts in
                c.execute("SELECT message_id, state, doubts FROM outbox")}


def strip_mta_headers(raw):
    head, body = raw.split(b"\n\n", 1)
    keep = [l for l in re.split(rb"\n(?![ \t])", head)
            if not re.match(rb"(?i)(received|delivered-to|return-path):", l)]
    return b"\n".join(keep) + b"\n\n" + body


def wait_all_sent(db, n, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        rows = outbox_rows(db)
        if len(rows) >= n and all(s == "sent" for s, _ in rows.values()):
            return rows
        if time.monotonic() > deadline:
            left = sum(1 for s, _ in rows.values() if s != "sent")
            raise AssertionError("%d of %d rows still not sent after %ss" % (left + n - len(rows),
                                                                             n, timeout))
        time.sleep(0.2)


def kill_round(conf, logf, args, kills, rnd):
    """Start, kill -9 at a random moment, KILLS times; returns the number of kills that
    landed while the process was alive and working."""
    landed = 0
    for i in range(kills):
        r = Run(conf, logf, args)
        time.sleep(rnd.uniform(0.15, 0.9))
        if r.proc.poll() is None:
            landed += 1
        r.kill9()
        logf.write(b"---- kill -9 ----\n")
        logf.flush()
    return landed


def main():
    if not pf.have_postfix():
        env.skip("needs root and Postfix")
    if not os.path.exists(INJECTORD):
        env.skip("build t/tools/injectord first")
    pki.ensure()
    seed = int(os.environ.get("PECTEST_SEED") or time.time())
    rnd = random.Random(seed)
    work = tempfile.mkdtemp(prefix="pectest-kill-")
    os.chmod(work, 0o755)
    conf = os.path.join(work, "pecmilter.conf")
    db = os.path.join(work, "pecmilter.db")
    ip = "127.0.0.41"
    a = pf.Postfix(work, "kill", ip=ip, mydomain="pec-a.test", virtual_domains=["pec-a.test"],
                   reinject_port=pf.free_port(ip))
    config.write(conf, "a", reinject="smtp:%s:%d" % (ip, a.reinject_port),
                 outbox_retry_max_backoff=1, seal_dir=os.path.join(work, "seals"))
    logpath = os.path.join(work, "injectord.log")
    ok = False
    t0 = time.monotonic()
    try:
        with a, open(logpath, "ab") as logf:
            log("seed %d; Postfix %s:%d" % (seed, ip, a.reinject_port))
            p = subprocess.run([INJECTORD, "-c", conf, "enqueue", str(N_QUEUED), RCPT,
                                "-p", "calm"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            t_calm = time.monotonic()
            calm = Run(conf, logf)
            wait_all_sent(db, N_QUEUED)
            t_calm = time.monotonic() - t_calm
            time.sleep(0.5)
            assert calm.stop() == 0, "the calm injectord run did not stop cleanly"
            p = subprocess.run([INJECTORD, "-c", conf, "enqueue", str(N_QUEUED), RCPT,
                                "-p", "queued"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            landed = kill_round(conf, logf, [], KILLS, rnd)
            live = ["-n", str(N_LIVE), "-r", RCPT, "-p", "live", "-e", "15"]
            landed += kill_round(conf, logf, live, KILLS, rnd)
            # a last, clean run: producer finishes, outbox drains
            final = Run(conf, logf, live)
            rows = wait_all_sent(db, 2 * N_QUEUED + N_LIVE)
            assert final.stop() == 0, "the last injectord run did not stop cleanly"
            expected = ["calm.%d@pec-a.test" % i for i in range(N_QUEUED)] + \
                       ["queued.%d@pec-a.test" % i for i in range(N_QUEUED)] + \
                       ["live.%d@pec-a.test" % i for i in range(N_LIVE)]
            assert sorted(rows) == sorted(expected), "outbox holds %d rows" % len(rows)
            msgs = a.wait_for_mail(RCPT, len(expected), timeout=120)
            time.sleep(2)                 # anything late would show up now
            a.wait_queue_empty(30)
            msgs = a.messages(RCPT)
        by_id = {}
        for raw in msgs:
            m = email.message_from_bytes(raw, policy=email.policy.compat32)
            by_id.setdefault(m["Message-ID"].strip("<> "), []).append(raw)
        with open(logpath, encoding="utf-8", errors="replace") as f:
            text = f.read()
        assert "Sanitizer" not in text, "a sanitizer report in %s" % logpath
        doubted = {mid for mid, (_, d) in rows.items() if d > 0}
        dups = {mid: v for mid, v in by_id.items() if len(v) > 1}
        missing = [mid for mid in expected if mid not in by_id]
        stray = [mid for mid in by_id if mid not in rows]
        windows = re.findall(r"recording a 250 took (\d+) us on average, (\d+) us at most", text)
        log("kills: %d (%d while working); rows resent after a kill (in doubt): %d; "
            "arrived twice: %d; missing: %d" % (2 * KILLS, landed, len(doubted), len(dups),
                                               len(missing)))
        if windows:
            mean, worst = (int(x) for x in windows[0])
            per_msg = t_calm / N_QUEUED * 1e6
            log("calm run: %d messages in %.2fs, %.0f us each; a 250 waited %d us on average "
                "(worst %d us) to be recorded: a kill while sending lands in that window with "
                "a chance of about %.1f%%" % (N_QUEUED, t_calm, per_msg, mean, worst,
                                              100.0 * mean / per_msg))
        log("delivered %d messages for %d Message-IDs in %.1fs"
            % (len(msgs), len(by_id), time.monotonic() - t0))
        assert not missing, "lost: %s" % missing[:10]
        assert not stray, "unknown Message-IDs arrived: %s" % stray[:10]
        for mid, copies in dups.items():
            assert mid in doubted, "%s arrived %d times but was never in doubt" % (mid, len(copies))
            assert len(copies) == 2, "%s arrived %d times" % (mid, len(copies))
            assert len({strip_mta_headers(c) for c in copies}) == 1, \
                "the copies of %s differ" % mid
        p = subprocess.run([PECCTL, "-c", conf, "log", "verify"], capture_output=True, text=True,
                           timeout=60)
        log(p.stdout.strip())
        assert p.returncode == 0, p.stdout + p.stderr
        assert "%d records" % (2 * (2 * N_QUEUED + N_LIVE)) in p.stdout
        ok = True
    finally:
        if ok and not os.environ.get("PECTEST_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log("workdir kept: %s (seed %d)" % (work, seed))
    log("1 passed")


if __name__ == "__main__":
    main()
