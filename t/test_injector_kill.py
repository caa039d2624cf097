"""kill -9 between "event stored" and "row sent": nothing owed is lost, and at
the far end every Message-ID arrives exactly once.

The far end is what a provider really has: a private Postfix (reinjection
listener, virtual_transport = LMTP) handing everything to pecmilter's
delivery point, which stores it in a Maildir.  The events are real signed
ricevute di accettazione (injectord -S), so the delivery point verifies them
and delivers each Message-ID into a mailbox once (lib/provider/deliver.h).

Two rounds:

  queued    events are committed first (injectord enqueue); the injector is
            then killed with SIGKILL at random moments while it drains them,
            and restarted each time;
  live      one process commits events and injects them at once (the
            producer thread and the injector share the store and the wake-up),
            killed at random moments and restarted, going on where it was.

The one window in which a kill makes the injector send a row twice is after
the MTA answered 250 and before the store recorded it (see lib/provider/inject.h):
SMTP has no way to ask the MTA afterwards whether it took a message.  A row
the restarted injector finds "sending" is resent, same bytes, and counted as
a doubt; Postfix then delivers both copies and the delivery point must keep
one.  So the test demands, strictly: every Message-ID owed exactly once in the
Maildir, nothing unknown, every row sent, the copies Postfix handed to the
delivery point equal to the Message-IDs plus the copies the delivery point
says it suppressed, and both legal logs verifying.  It prints the figures:
kills, doubted rows, copies suppressed, and from a calm run first, how long a
250 waits to be recorded against how long one message takes.
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

from pectest import config, daemon, env, pki
from pectest import postfix as pf

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
PECCTL = env.program("pecctl")
RCPT = "mario@pec-a.test"
USER = "mario"
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
        return {mid: (state, doubts, ident) for mid, state, doubts, ident in
                c.execute("SELECT message_id, state, doubts, identificativo FROM outbox")}


def maildir(root):
    """Every message in the Maildir ROOT (new/ and cur/), as bytes."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(root, sub)
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                out.append(f.read())
    return out


def wait_for_mail(root, n, timeout=120):
    deadline = time.monotonic() + timeout
    while len(maildir(root)) < n:
        if time.monotonic() > deadline:
            raise AssertionError("%d of %d messages in %s after %ss"
                                 % (len(maildir(root)), n, root, timeout))
        time.sleep(0.2)
    return maildir(root)


def wait_all_sent(db, n, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        rows = outbox_rows(db)
        if len(rows) >= n and all(r[0] == "sent" for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            left = sum(1 for r in rows.values() if r[0] != "sent")
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
    reinject = pf.free_port(ip)
    # the far end: pecmilter's delivery point, in a directory of its own
    dp_dir = os.path.join(work, "dp")
    root = os.path.join(dp_dir, "mail")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, USER, sub))
    for top, _, _ in os.walk(dp_dir):
        os.chmod(top, 0o777)
    dp_conf = os.path.join(dp_dir, "pecmilter.conf")
    dp_set = config.write(dp_conf, "a", reinject="smtp:%s:%d" % (ip, reinject),
                          mailbox_backend="maildir", maildir_root=root,
                          seal_dir=os.path.join(dp_dir, "seals"))
    a = pf.Postfix(work, "kill", ip=ip, mydomain="pec-a.test", virtual_domains=["pec-a.test"],
                   local_maildir=False, reinject_port=reinject,
                   extra_main={"virtual_transport": "lmtp:unix:"
                               + config.socket_path(dp_set, "lmtp_socket")})
    config.write(conf, "a", reinject="smtp:%s:%d" % (ip, reinject),
                 outbox_retry_max_backoff=1, seal_dir=os.path.join(work, "seals"))
    logpath = os.path.join(work, "injectord.log")
    box = os.path.join(root, USER)
    ok = False
    dp = None
    dp_log = ""
    t0 = time.monotonic()
    try:
        with a, open(logpath, "ab") as logf:
            dp = daemon.start(dp_conf)
            pf.register_process(dp.proc.pid, work)
            log("seed %d; Postfix %s:%d; delivery point %s" % (seed, ip, a.reinject_port,
                                                              dp_set["lmtp_socket"]))
            p = subprocess.run([INJECTORD, "-c", conf, "enqueue", str(N_QUEUED), RCPT,
                                "-p", "calm", "-S"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            t_calm = time.monotonic()
            calm = Run(conf, logf)
            wait_all_sent(db, N_QUEUED)
            t_calm = time.monotonic() - t_calm
            time.sleep(0.5)
            assert calm.stop() == 0, "the calm injectord run did not stop cleanly"
            p = subprocess.run([INJECTORD, "-c", conf, "enqueue", str(N_QUEUED), RCPT,
                                "-p", "queued", "-S"], capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 0, p.stderr
            landed = kill_round(conf, logf, ["-S"], KILLS, rnd)
            live = ["-n", str(N_LIVE), "-r", RCPT, "-p", "live", "-e", "15", "-S"]
            landed += kill_round(conf, logf, live, KILLS, rnd)
            # a last, clean run: producer finishes, outbox drains
            final = Run(conf, logf, live)
            rows = wait_all_sent(db, 2 * N_QUEUED + N_LIVE)
            assert final.stop() == 0, "the last injectord run did not stop cleanly"
            idents = ["opec.calm.%d@pec-a.test" % i for i in range(N_QUEUED)] + \
                     ["opec.queued.%d@pec-a.test" % i for i in range(N_QUEUED)] + \
                     ["opec.live.%d@pec-a.test" % i for i in range(N_LIVE)]
            assert sorted(r[2] for r in rows.values()) == sorted(idents), \
                "outbox holds %d rows" % len(rows)
            expected = sorted(rows)
            wait_for_mail(box, len(expected), timeout=120)
            time.sleep(2)                 # anything late would show up now
            a.wait_queue_empty(30)
            msgs = maildir(box)
            maillog = a.log()
            dp_log = dp.stop()
            pf.unregister_process(dp.proc.pid)
            assert dp.returncode == 0, "the delivery point exited %s:\n%s" % (dp.returncode,
                                                                             dp_log[-3000:])
        by_id = {}
        for raw in msgs:
            m = email.message_from_bytes(raw, policy=email.policy.compat32)
            by_id.setdefault(m["Message-ID"].strip("<> "), []).append(raw)
        with open(logpath, encoding="utf-8", errors="replace") as f:
            text = f.read()
        assert "Sanitizer" not in text, "a sanitizer report in %s" % logpath
        assert "Sanitizer" not in dp_log, "a sanitizer report from the delivery point"
        doubted = {mid for mid, r in rows.items() if r[1] > 0}
        dups = {mid: len(v) for mid, v in by_id.items() if len(v) > 1}
        missing = [mid for mid in expected if mid not in by_id]
        stray = [mid for mid in by_id if mid not in rows]
        suppressed = re.findall(r"to=<%s>, status=duplicate \(notice <([^>]+)>" % re.escape(RCPT),
                                dp_log)
        handed = len(re.findall(r"postfix-kill/lmtp\[\d+\]: \w+: to=<%s>.*status=sent"
                                % re.escape(RCPT), maillog))
        windows = re.findall(r"recording a 250 took (\d+) us on average, (\d+) us at most", text)
        log("kills: %d (%d while working); rows resent after a kill (in doubt): %d; "
            "copies Postfix handed to the delivery point: %d for %d Message-IDs; suppressed "
            "there as second copies: %d; in the Maildir twice: %d; missing: %d"
            % (2 * KILLS, landed, len(doubted), handed, len(expected), len(suppressed),
               len(dups), len(missing)))
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
        assert not dups, "in the Maildir more than once: %s" % list(dups.items())[:10]
        assert all(mid in doubted for mid in suppressed), \
            "a second copy of a row never in doubt: %s" % [m for m in suppressed
                                                           if m not in doubted][:5]
        assert handed == len(expected) + len(suppressed), \
            "Postfix handed over %d copies, the delivery point kept %d and suppressed %d" \
            % (handed, len(expected), len(suppressed))
        for c, want in ((conf, 2 * (2 * N_QUEUED + N_LIVE)), (dp_conf, None)):
            p = subprocess.run([PECCTL, "-c", c, "log", "verify"], capture_output=True,
                               text=True, timeout=60)
            log(p.stdout.strip())
            assert p.returncode == 0, p.stdout + p.stderr
            if want is not None:
                assert "%d records" % want in p.stdout
        ok = True
    finally:
        if dp is not None:
            dp.stop()
        if ok and not os.environ.get("PECTEST_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log("workdir kept: %s (seed %d)" % (work, seed))
    log("1 passed")


if __name__ == "__main__":
    main()
