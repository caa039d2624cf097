"""Crash safety of a provider of two nodes (issue #20): certified mail A -> B
while each of A's two pecmilters is killed with SIGKILL, and A's PostgreSQL is
restarted under them.

A (pec-a.test) is two nodes, each a Postfix of its own (submission, MX,
reinjection and LMTP delivery as test_crash's A) with its own pecmilter,
node_id 1 and 2, on one PostgreSQL database (t/pectest/postgres.py),
shared_storage = "yes": one maildir_root, one seal_dir and one
quarantine_dir for both.  B (pec-b.test) is test_crash's: one node, its
SQLite store.  B finds A at node 1 only (its Postfix's route for pec-a.test,
standing for A's MX), so every presa in carico and consegna, also those about
the messages node 2 accepted, arrives at node 1: the one database must let
node 1 close node 2's transactions, or node 2's scheduler would send a
timeout notice for a delivered message.

mario@pec-a.test submits N messages (500; PECTEST_CRASH_N) to
luigi@pec-b.test from a few parallel clients, message i through node
1 + i % 2's submission listener; a submission refused for now is submitted
again through the same node.  Meanwhile each node's pecmilter is killed at
random moments (PECTEST_SEED replays the choices; at least KILLS_EACH of
each) and started again at once, as systemd's Restart=on-failure would
(again after a second when it exits 73, its store not open: PostgreSQL is
down, or the node_id's lock of the killed incarnation not yet let go), and
PostgreSQL is stopped for a few seconds once mid-run (pg_ctl stop -m fast,
then start).

The deadlines are seconds (WARNING, NOT_BEFORE, DEADLINE), longer than a
delivered message ever waits for its receipts here, so none of the N earns
a timeout notice.  Besides, before the N, anna@pec-a.test submits LOST
messages to lost@pec-b.test, alternately through the two nodes, that A's
Postfix never delivers (its route for that address is a loopback port nobody
listens on, as in test_timers, so the delivery is deferred again and
again): no presa in carico and no consegna ever comes,
so each earns the 12 h notice (4.4.7) and the final one (5.4.1), each once
across the two nodes whichever scheduler finds it due (both wake at the
same instant, the one it falls due), while the nodes go on being killed:
the kills last until those notices are in anna's mailbox (MOST_KILLS at
most).  Whenever a Postfix skips a queue file "still being delivered", its
queue is flushed (pectest.crash.Unsticker): the minute Postfix then waits is
longer than the deadlines.

Once the queues (but for the LOST held) and the outbox are empty, checked as
test_crash does (pectest.crash.check): luigi holds each busta once, mario its
accettazione and avvenuta consegna once each and nothing else (so no timeout
notice), A's receipt_address each presa in carico once, no Message-ID twice
in a mailbox, no identificativo for two messages, every message valid for
pecverify; anna holds for each lost message its accettazione, its 12 h and its
final notice, once each; `pecctl audit` clean on A (the database: no
transaction pending, N + LOST of them) and on B; `pecctl log verify` passes on
A's one chain and on B's; no incarnation of a node exited but while the
database was down.  Figures printed: messages, kills of each node, PostgreSQL
restarts, resubmissions, receipts expected and found, time taken.
"""
import os
import re
import threading
import time

from pectest import crash, env, pki, postgres
from pectest import postfix as pf
from pectest.crash import log

N = int(os.environ.get("PECTEST_CRASH_N") or 500)
# what a start that found the database down, or lost it meanwhile, says (libpq's words)
DB_GONE = (r"cannot connect|no connection to the server|server closed the connection"
           r"|terminating connection|the database system is (?:shutting down|starting up)")
KILLS_EACH = 3           # at least, of each node
MOST_KILLS = 40          # in all, at most
CLIENTS = 4
LOST = 4                 # messages whose delivery never completes
ANNA = "anna@pec-a.test"
LOST_RCPT = "lost@pec-b.test"
WARNING, NOT_BEFORE, DEADLINE = 60, 70, 75      # seconds after dispatch
DRAIN_TIMEOUT = 150


# receipts received (ricezione) recorded by node 1 about a busta node 2 sent (emissione)
CROSS = ("SELECT count(*) FROM registro r WHERE r.node = '1' AND r.evento = 'ricezione' AND"
         " EXISTS (SELECT 1 FROM registro o WHERE o.identificativo = r.identificativo AND"
         " o.node = '2' AND o.evento = 'emissione' AND o.tipo = 'posta-certificata')")


def lost_message(k):
    return crash.message(k, sender=ANNA, to=LOST_RCPT, msgid="lost.%d@client.pec-a.test" % k)


def submit_lost(nodes):
    """The LOST messages, alternately through NODES, each accepted now (the nodes are
    up, nothing is killed yet)."""
    for k in range(LOST):
        node = nodes[k % len(nodes)].pf
        code, text = node.send(ANNA, [LOST_RCPT], lost_message(k), port=node.submission_port,
                               xclient_login=ANNA, timeout=30)
        assert code == 250, "lost message %d: %s %s" % (k, code, text)


def check_lost(msgs):
    """anna's mailbox, (path, bytes, pecverify report) each: per lost message its
    accettazione, 12 h and final notice, once each, and nothing else.  Problems."""
    problems = []
    got = {}
    for path, raw, r in msgs:
        tipo = r.get("tipo")
        if tipo == "preavviso-errore-consegna":
            code = (r.get("errore_esteso") or "").split(" ", 1)[0]
            tipo = {"4.4.7": "12h", "5.4.1": "24h"}.get(code, "notice " + code)
            if r.get("consegna") not in (None, LOST_RCPT):
                problems.append("anna: a notice about %s" % r.get("consegna"))
        got.setdefault((tipo, r.get("identificativo")), []).append(path)
    kinds = {}
    for (tipo, ident), paths in sorted(got.items(), key=str):
        kinds.setdefault(tipo, set()).add(ident)
        if len(paths) > 1:
            problems.append("anna got %d of %s for %s" % (len(paths), tipo, ident))
    if set(kinds) != {"accettazione", "12h", "24h"}:
        problems.append("anna holds %s, not accettazione, 12h and 24h" % sorted(kinds))
    for tipo, idents in kinds.items():
        if idents != kinds.get("accettazione") or len(idents) != LOST:
            problems.append("anna: %s for %d messages (%d lost), %s" % (
                tipo, len(idents), LOST, sorted(idents)[:3]))
    return problems, {k: sum(len(got[g]) for g in got if g[0] == k) for k in kinds}


def check_registro(rows):
    """A's log, ROWS of (node, evento, tipo, count): every event of every message
    recorded, whichever node recorded it; each deposit (a message put into a
    mailbox, once) exactly once.  Problems."""
    got = {}
    for row in rows:
        _, evento, tipo, count = row.split("|")
        got[(evento, tipo)] = got.get((evento, tipo), 0) + int(count)
    owed = {("emissione", "posta-certificata"): N + LOST,
            ("emissione", "accettazione"): N + LOST, ("deposito", "accettazione"): N + LOST,
            ("ricezione", "presa-in-carico"): N, ("deposito", "presa-in-carico"): N,
            ("ricezione", "avvenuta-consegna"): N, ("deposito", "avvenuta-consegna"): N,
            ("emissione", "preavviso-errore-consegna"): 2 * LOST,
            ("deposito", "preavviso-errore-consegna"): 2 * LOST}
    problems = []
    for key in sorted(set(owed) | set(got)):
        want, have = owed.get(key, 0), got.get(key, 0)
        if have < want or (key[0] == "deposito" and have != want):
            problems.append("A's log holds %d records %s %s, not %d" % (have, *key, want))
    return problems


def restart_postgres(pg, rnd, events):
    """PostgreSQL stopped (fast: the sessions are ended), a few seconds, started."""
    t = time.monotonic()
    pg.stop_server()
    time.sleep(rnd.uniform(2, 5))
    pg.start()
    events.append("%.1fs: PostgreSQL stopped, started again %.1fs later"
                  % (t - events.t0, time.monotonic() - t))
    return t - events.t0, time.monotonic() - events.t0


def run():
    if not pf.have_postfix():
        env.skip("needs root and Postfix")
    if not postgres.have_postgres():
        env.skip("PostgreSQL is not installed (/usr/lib/postgresql/N/bin; contrib/deps.sh test)")
    pki.ensure()
    started = time.monotonic()
    seed, rnd, work = crash.begin("pectest-crash-nodes-")
    log("nodes: seed %d (PECTEST_SEED=%d replays the choices), %d messages, %d lost"
        % (seed, seed, N, LOST))
    pg = postgres.Postgres()
    pg.createdb("pec")
    shared = {k: os.path.join(work, "a-shared", k) for k in ("mail", "seals", "quarantine")}
    deadlines = dict(warning_after=WARNING, deadline_not_before=NOT_BEFORE,
                     deadline_after=DEADLINE)
    a = [crash.Provider(work, "a%d" % i, pf.loopback_ip(2 * i - 1),
                        ("mario", "ricevute", "anna"), provider="a", pg=pg,
                        root=shared["mail"], seal_dir=shared["seals"],
                        quarantine_dir=shared["quarantine"], node_id=i, **deadlines)
         for i in (1, 2)]
    b = crash.Provider(work, "b", pf.loopback_ip(2), ("luigi",))
    nobody = pf.loopback_ip(4)      # nothing listens there: LOST_RCPT's route
    for node in a:
        node.postfix(work, b, {LOST_RCPT: "smtp:%s:%d" % (nobody, pf.free_port(nobody))})
    b.postfix(work, a[0])           # A's MX: node 1
    everyone = a + [b]
    ok = False
    stop = threading.Event()
    events = crash.Events()
    flushes = {}
    unstick = crash.Unsticker(everyone, flushes)
    try:
        for p in everyone:
            p.pf.start()
        unstick.start()
        for p in everyone:
            p.start(work, ready=p in a)
        t0 = events.t0 = time.monotonic()
        submit_lost(a)
        sub = crash.Submitter(a, N, CLIENTS)
        sub.start()
        # the kills go on until the lost messages' notices are out, at most MOST_KILLS
        busy = lambda: not sub.done() or a[0].count("anna") < 3 * LOST   # noqa: E731
        kt = threading.Thread(target=crash.killer,
                              args=(a, rnd, stop, busy, events, work, 2 * KILLS_EACH,
                                    KILLS_EACH, True, MOST_KILLS), daemon=True)
        kt.start()
        time.sleep(rnd.uniform(8, 20))
        pg_down = restart_postgres(pg, rnd, events)
        t_submit = crash.settle(sub, kt, events)
        boxes = {"luigi": (b, "luigi"), "mario": (a[0], "mario"),
                 "ricevute": (a[0], "ricevute"), "anna": (a[0], "anna")}
        expected = {"luigi": N, "mario": 2 * N, "ricevute": N, "anna": 3 * LOST}
        held = {p.name: len(range(i, LOST, len(a))) for i, p in enumerate(a)}
        crash.wait_drained(everyone, boxes, expected, DRAIN_TIMEOUT, flushes, held)
        time.sleep(3)                      # anything late would show up now
        crash.wait_drained(everyone, boxes, expected, 30, flushes, held)
        t_drain = time.monotonic() - t0
        doubts = a[0].outbox()[1]
        problems, fig = crash.check(a[0], b, sub, N, more=("anna",))
        bad, lost = check_lost(fig["more"]["anna"])
        problems += bad
        audits = [crash.audit("a", a[0].conf, N + LOST), crash.audit("b", b.conf, None)]
        per_node = pg.query("pec", "SELECT node, evento, tipo, count(*) FROM registro "
                                   "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        problems += check_registro(per_node)
        # the receipts node 1 took in for the transactions node 2 opened (a receipt
        # node 1's Postfix had again, its milter killed before the reply, is
        # recorded again: each reception is an event)
        across = int(pg.query("pec", CROSS)[0])
        if across < 2 * len(range(1, N, 2)):
            problems.append("node 1 recorded %d receipts about node 2's %d messages"
                            % (across, len(range(1, N, 2))))
        for p in everyone:
            rc = p.stop()
            if rc != 0:
                problems.append("pecmilter %s exited %s" % (p.name, rc))
        for p in a:
            # an incarnation may find the database down at its start, or lose it
            # while starting (PostgreSQL is restarted once): exit 73 saying so,
            # never anything else
            for rc, why in p.exits:
                if rc != 73 or not re.search(DB_GONE, why):
                    problems.append("pecmilter %s exited %s at its start: %s"
                                    % (p.name, rc, why))
        texts = {p.name: p.log_text() for p in everyone}
        for k, v in texts.items():
            for line in re.findall(r"(?m)^.*(?:are lost|is lost).*$", v)[:5]:
                problems.append("pecmilter %s: %s" % (k, line))
        for k, v in texts.items():
            if "Sanitizer" in v:
                problems.append("a sanitizer report from pecmilter %s" % k)
        notices = {k: len(re.findall(r"scheduler: (\d+) preavviso", v)) for k, v in texts.items()}
        resubmissions = sum(len(re.findall(r"access: resubmission of identificativo=",
                                           texts[p.name])) for p in a)
        for text, bad in audits:
            log(text)
            problems += bad
        log("registro records of A by node, evento, tipo:\n  " + "\n  ".join(per_node))
        owed = 3 * N + 3 * LOST
        found = fig["receipts_found"] + sum(lost.values())
        log("figures (nodes, seed %d): messages %d (through node 1: %d, node 2: %d) and %d "
            "never delivered; kills of node 1: %d, of node 2: %d; PostgreSQL restarts: 1 "
            "(down from %.1fs to %.1fs); starts that found the database down: node 1 %d, "
            "node 2 %d; submissions repeated after a refusal: %d, of them recognised as the "
            "retry of an accepted transaction: %d; receipts and notices expected %d (%d "
            "for the delivered, %d for the lost), found %d (%d + %s), of the receipts "
            "about messages node 2 accepted taken in by node 1: %d; buste at B %d; "
            "outbox rows resent after a kill %d; queues flushed (a file skipped 'still being "
            "delivered', or no progress while draining) %s; "
            "scheduler rounds that queued notices: node 1 %d, node 2 %d; submitted in "
            "%.1fs, drained at %.1fs; pecverify on %d files %.1fs; whole test %.1fs"
            % (seed, N, len(range(0, N, 2)), len(range(1, N, 2)), LOST, a[0].kills,
               a[1].kills, pg_down[0], pg_down[1], len(a[0].exits), len(a[1].exits),
               len(sub.retried), resubmissions, owed, 3 * N, 3 * LOST, found,
               fig["receipts_found"], lost, across, fig["buste"], doubts, flushes or "never",
               notices["a1"], notices["a2"], t_submit, t_drain, fig["files"],
               fig["t_verify"], time.monotonic() - started))
        assert min(p.kills for p in a) >= KILLS_EACH
        assert not problems, "\n".join(problems[:30])
        ok = True
    finally:
        stop.set()
        unstick.stop()
        crash.finish(everyone, work, ok, seed)
        pg.stop()
    log("1 passed")


if __name__ == "__main__":
    run()
