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
import os
import re
import threading
import time

from pectest import crash, env, pki
from pectest import postfix as pf
from pectest.crash import LUIGI, MARIO, client_msgid, log, message

N = int(os.environ.get("PECTEST_CRASH_N") or 500)
KILLS = 6                # at least, in all; at least two of each provider
CLIENTS = 3
LISTENER_DOWN = 60       # seconds, second scenario
DRAIN_TIMEOUT = 150


def wait_drained(a, b, expected, timeout, flushes):
    boxes = {"luigi": (b, "luigi"), "mario": (a, "mario"), "ricevute": (a, "ricevute")}
    crash.wait_drained((a, b), boxes, expected, timeout, flushes)


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


def run(scenario):
    if not pf.have_postfix():
        env.skip("needs root and Postfix")
    pki.ensure()
    seed, rnd, work = crash.begin("pectest-crash-")
    log("%s: seed %d (PECTEST_SEED=%d replays the choices), %d messages"
        % (scenario, seed, seed, N))
    a = crash.Provider(work, "a", pf.loopback_ip(1), ("mario", "ricevute"))
    b = crash.Provider(work, "b", pf.loopback_ip(2), ("luigi",))
    a.postfix(work, b)
    b.postfix(work, a)
    ok = False
    stop = threading.Event()
    events = crash.Events()
    try:
        a.pf.start()
        b.pf.start()
        a.start(work)
        b.start(work)
        t0 = events.t0 = time.monotonic()
        sub = crash.Submitter([a], N, CLIENTS)
        sub.start()
        down = threading.Event()
        kt = threading.Thread(target=crash.killer, args=((a, b), rnd, stop,
                                                         lambda: not sub.done() or down.is_set(),
                                                         events, work, KILLS, 2), daemon=True)
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
        t_submit = crash.settle(sub, kt, events)
        expected = {"luigi": N, "mario": 2 * N, "ricevute": N}
        flushes = {}
        wait_drained(a, b, expected, DRAIN_TIMEOUT, flushes)
        time.sleep(3)                      # anything late would show up now
        wait_drained(a, b, expected, 30, flushes)
        t_drain = time.monotonic() - t0
        doubts = {p.name: p.outbox()[1] for p in (a, b)}
        resent = resend_delivered(a, b, expected, flushes)
        problems, fig = crash.check(a, b, sub, N)
        audits = {p.name: crash.audit(p.name, p.conf, N if p is a else None) for p in (a, b)}
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
        for text, bad in audits.values():
            log(text)
            problems += bad
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
        crash.finish((a, b), work, ok, seed)
    log("1 passed")


if __name__ == "__main__":
    run("kills")
