"""bench.py - the body of contrib/bench.sh (run that instead).

    python3 contrib/bench.py --out DIR --build BUILD --load SMTPLOAD [--quick]

Brings up, on loopback under DIR, two PEC providers as the demo does (A =
pec-a.test on 127.0.0.51, B = pec-b.test on 127.0.0.52, each a private Postfix
with its own pecmilter, the built-in Maildir as delivery) and an smtp-sink on
127.0.0.53 standing for the rest of the Internet (example.org), which dumps
what it gets to DIR/sink/ so that each message can be told apart and timed.
Then, for each message size, with 20 parallel SMTP sessions of smtpload
(contrib/bench/smtpload.c, one message per session as smtp-source does), three
rounds of the following, interleaved so that a neighbour's load on a shared
machine hits them alike (figures: medians of the rounds):

  baseline  A's reinjection listener (no milter), To x@example.org: bare
            Postfix relaying to smtp-sink.  Latency: 250 -> file at the sink.
  access    A's submission listener (pecmilter's access role; XCLIENT
            LOGIN= for the SASL login), To x@example.org: the busta goes to
            smtp-sink, the ricevuta di accettazione to the sender's Maildir.
            Counted when both are there; latency: 250 -> accettazione in the
            Maildir.
  exchange  the same, To luigi.bianchi@pec-b.test: A -> B, B's reception and
            delivery point, presa in carico and consegna back to A.  Counted
            when the consegna is in the sender's Maildir (latency: 250 ->
            consegna); the accettazione, busta and presa in carico must all
            be there too.
  access+av the access scenario with A's antivirus on (A reloaded with
            antivirus = "clamd" for it, and back): every submission
            streamed to a clamd on the same machine (pectest.clamd: Debian's
            clamd, a private socket, a one-signature database, since nothing
            is downloaded).  Its ratio is to the access role of the same
            round; the scan's p50 comes from A's log (scan_ms of each
            accepted submission) over the paced run.  Skipped, saying so,
            without clamd.
  postgresql
            the access scenario with A's store on PostgreSQL (A restarted
            with store = a database of a private server on the same
            machine, t/pectest/postgres.py, fsync on as in production, and
            back): its ratio is to the access role of the same round, on
            A's SQLite file; pecmilter's CPU per message beside it.
            Skipped, saying so, without PostgreSQL.
  memory    10 sessions, 10 submissions of 30 MB to the access role at once:
            pecmilter's peak RSS.

Throughput = messages / (last arrival - start of the load).  Latency comes
from a second, paced run per scenario and size (one session, a message every
50 ms), so that it is not the length of a queue.  CPU is
pecmilter's (A's, plus B's for the exchange) user+system time over the run,
divided by the messages; peak RSS is VmHWM, reset before each run
(/proc/PID/clear_refs).  As a cross-check the baseline is also run with
Postfix's smtp-source.  Writes DIR/bench.csv, DIR/bench.md, DIR/bench.png.
Exit 1 when any message was refused or did not arrive.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "t"))

MARIO = "mario.rossi@pec-a.test"
LUIGI = "luigi.bianchi@pec-b.test"
SINKED = "dest@example.org"
SESSIONS = 20
KB = 1024

# (size, messages per round at 20 sessions, messages of the paced latency run): each
# run lasts a few seconds, so the baseline gets more messages than the exchange
ROUNDS = 3
FULL = {"sizes": [(4 * KB, {"baseline": 4000, "access": 1500, "exchange": 500,
                             "access+av": 1500, "postgresql": 1500}, 200),
                  (100 * KB, {"baseline": 2000, "access": 800, "exchange": 250,
                              "access+av": 800, "postgresql": 800}, 100),
                  (1024 * KB, {"baseline": 400, "access": 150, "exchange": 50,
                               "access+av": 150, "postgresql": 150}, 50)],
        "memory": (30000000, 10)}
QUICK = {"sizes": [(4 * KB, {"baseline": 1500, "access": 500, "exchange": 150,
                              "access+av": 500, "postgresql": 500}, 40),
                   (100 * KB, {"baseline": 800, "access": 300, "exchange": 80,
                               "access+av": 300, "postgresql": 300}, 30),
                   (1024 * KB, {"baseline": 150, "access": 60, "exchange": 20,
                                "access+av": 60, "postgresql": 60}, 20)],
         "memory": (30000000, 10)}


def say(text):
    print(text, flush=True)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])          # utime + stime


def machine_ticks():
    """CPU time the whole machine spent busy (every process and the kernel), in ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6]       # user nice system irq softirq


def hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_hwm(pid):
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


SUBJ = re.compile(rb"^Subject: *(.*?)\r?\n", re.M | re.I)


def subject_of(path):
    """The first Subject header in the first 16 KB of a file (the outer one); None until
    its line is whole (smtp-sink writes its dump as the message comes)."""
    with open(path, "rb") as f:
        head = f.read(16384)
    m = SUBJ.search(head)
    return m.group(1).decode("ascii", "replace").strip() if m else None


class Box:
    """A directory messages arrive in; remembers (subject, arrival ns) of each."""

    def __init__(self, path, stamp="ctime"):
        self.path = path
        self.stamp = stamp
        self.seen = {}

    def clear(self):
        self.seen = {}
        if os.path.isdir(self.path):
            for n in os.listdir(self.path):
                p = os.path.join(self.path, n)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)

    def scan(self):
        if not os.path.isdir(self.path):
            return
        for dirpath, dirs, names in os.walk(self.path):
            if "pec-keys" in dirs:
                dirs.remove("pec-keys")    # the Maildir's markers (lib/provider/mailbox.h)
            for n in names:
                p = os.path.join(dirpath, n)
                if p in self.seen or n.startswith("."):
                    continue
                try:
                    st = os.stat(p)
                    s = subject_of(p)
                except FileNotFoundError:
                    continue
                # smtp-sink writes its dump in place: wait until it stops growing, and
                # until its Subject is there (a 30 MB dump can pause longer than that)
                if s is None or (self.stamp == "mtime" and
                                 time.time_ns() - st.st_mtime_ns < 300_000_000):
                    continue
                self.seen[p] = (s, st.st_ctime_ns if self.stamp == "ctime" else st.st_mtime_ns)

    def arrivals(self, prefix):
        """{index: arrival ns} of the messages whose Subject is PREFIX <index>."""
        out = {}
        for s, t in self.seen.values():
            if s and s.startswith(prefix):
                tail = s[len(prefix):]
                if tail.isdigit():
                    out[int(tail)] = t
        return out


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class Bench:
    def __init__(self, d, build, load, quick):
        self.d, self.build, self.load, self.quick = d, build, load, quick
        self.rows = []
        self.failures = []
        self.procs = []
        self.instances = []
        self.extra = []
        self.serial = 0
        self.clamd = None
        self.av_on = False
        self.pg = None
        self.pg_on = False

    # -- setup ----------------------------------------------------------------

    def start_pecmilter(self, name, settings):
        from pectest import config
        from pectest import postfix as pf
        for key in ("milter_socket", "lmtp_socket"):
            sock = config.socket_path(settings, key)
            if os.path.exists(sock):
                os.unlink(sock)
        logname = os.path.join(self.d, name, "pecmilter.log")
        log = open(logname, "ab")
        # PECBENCH_CALLGRIND=a,b: those run under callgrind, for instruction counts
        # that a busy machine does not blur (DIR/callgrind.NAME.out, written at the end)
        wrap = []
        if name in os.environ.get("PECBENCH_CALLGRIND", "").split(","):
            wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % os.path.join(
                self.d, "callgrind.%s.out" % name)]
        proc = subprocess.Popen(wrap + [os.path.join(self.build, "milter", "pecmilter"), "-f", "-c",
                                        os.path.join(self.d, name, "pecmilter.conf")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, cwd="/")
        log.close()
        self.procs.append(proc)
        pf.register_process(proc.pid, self.d)
        if not config.wait_sockets(proc, settings, (60 if wrap else 15)):
            sys.exit("bench: pecmilter for %s did not start; see %s" % (name, logname))
        return proc

    def setup(self):
        os.environ["PEC_BUILD_DIR"] = self.build
        os.environ["PEC_PKI_DIR"] = os.path.join(self.d, "pki")
        from pectest import config, pki
        from pectest import postfix as pf

        os.chmod(self.d, 0o755)
        for name in ("a", "b", "sink"):
            shutil.rmtree(os.path.join(self.d, name), ignore_errors=True)
        pki.ensure()
        index = os.path.join(self.d, "index.ldif.p7m")
        shutil.copyfile(pki.index_p7m(), index)
        ip = {"a": pf.loopback_ip(41), "b": pf.loopback_ip(42), "sink": pf.loopback_ip(43)}
        mx = {n: pf.free_port(ip[n]) for n in ip}
        self.ip = ip
        settings = {}
        for n in ("a", "b"):
            ndir = os.path.join(self.d, n)
            os.makedirs(os.path.join(ndir, "mail"))
            settings[n] = config.write(
                os.path.join(ndir, "pecmilter.conf"), n,
                roles={"pec-submission": "access", "pec-mx": "reception"},
                reinject="smtp:%s:%d" % (ip[n], pf.free_port(ip[n])),
                mailbox_backend="maildir", maildir_root=os.path.join(ndir, "mail"),
                index_source="file:" + index, outbox_retry_max_backoff=2,
                # smtpload submits in the clear, over loopback
                submission_cleartext="loopback")
            users = {"a": [MARIO], "b": [LUIGI]}[n] + [settings[n]["receipt_address"]]
            config.add_mailboxes(os.path.join(ndir, "pecmilter.conf"), *users)
        self.pid = {}
        for n in ("a", "b"):
            self.pid[n] = self.start_pecmilter(n, settings[n]).pid
        self.settings_a = settings["a"]
        from pectest import clamd
        if clamd.have_clamd():
            # as many scans at once as sessions: clamd's own queue is not what is measured
            self.clamd = clamd.Clamd(self.d).start(MaxThreads=str(SESSIONS))
        else:
            say("== no clamd (contrib/deps.sh bench installs clamav-daemon): no access+av")
        from pectest import postgres
        if postgres.have_postgres():
            self.pg = postgres.Postgres(fsync=True)
            self.pg.createdb("pec")
        else:
            say("== no PostgreSQL (contrib/deps.sh bench installs it): no postgresql scenario")

        # the rest of the Internet: smtp-sink dumping every message, so that each can
        # be matched and timed
        os.makedirs(os.path.join(self.d, "sink"))
        os.chmod(os.path.join(self.d, "sink"), 0o777)
        sink_log = open(os.path.join(self.d, "smtp-sink.log"), "ab")
        sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-m", "200",
                                 "-d", os.path.join(self.d, "sink", "m."),
                                 "%s:%d" % (ip["sink"], mx["sink"]), "256"],
                                stdin=subprocess.DEVNULL, stdout=sink_log, stderr=sink_log,
                                start_new_session=True, cwd="/")
        sink_log.close()
        self.procs.append(sink)
        pf.register_process(sink.pid, self.d)

        def relay(n):
            return "smtp:[%s]:%d" % (ip[n], mx[n])

        self.pf = {}
        for n, other in (("a", "b"), ("b", "a")):
            s = settings[n]
            dom = s["domains"][0]
            # the harness's plain Postfix, not the shipped one: smtpload speaks no
            # STARTTLS, which the shipped submission listener requires
            inst = pf.Postfix(os.path.join(self.d, n), "postfix", ip=ip[n], port=mx[n],
                              mydomain=dom, virtual_domains=[dom], local_maildir=False,
                              milter=s["milter_socket"],
                              submission_port=pf.free_port(ip[n]),
                              submission_milter=s["milter_socket"],
                              reinject_port=int(s["reinject"].rsplit(":", 1)[1]),
                              transports={"pec-%s.test" % other: relay(other),
                                          "example.org": relay("sink")},
                              extra_main={"virtual_transport": "lmtp:" + s["lmtp_socket"]})
            inst.start()
            self.instances.append(inst)
            self.pf[n] = inst
        a = self.pf["a"]
        self.boxes = {
            "sink": Box(os.path.join(self.d, "sink"), stamp="mtime"),
            "mario": Box(os.path.join(self.d, "a", "mail", "mario.rossi")),
            "ricevute": Box(os.path.join(self.d, "a", "mail", "ricevute")),
            "luigi": Box(os.path.join(self.d, "b", "mail", "luigi.bianchi")),
        }
        say("== A: Postfix %s (submission %s:%d, reinjection %d), pecmilter pid %d"
            % (a.root, a.ip, a.submission_port, a.reinject_port, self.pid["a"]))
        say("== B: Postfix %s, pecmilter pid %d; smtp-sink %s:%d"
            % (self.pf["b"].root, self.pid["b"], ip["sink"], mx["sink"]))
        self.sink_port = mx["sink"]

    def write_a(self, av, pg):
        """A's configuration with the antivirus on (AV) or not, its store on PostgreSQL (PG)
        or its SQLite file; returns the settings."""
        from pectest import config
        over = {"antivirus": "clamd" if av else "none"}
        if self.clamd is not None:
            over["clamd_socket"] = self.clamd.socket
        if pg:
            over.update(store=self.pg.conninfo("pec"), shared_storage="yes")
        settings = dict(self.settings_a, **over)
        with open(os.path.join(self.d, "a", "pecmilter.conf"), "w") as f:
            f.write(config.render(settings))
        return settings

    def set_store(self, pg):
        """A restarted with its store on PostgreSQL (PG) or on its SQLite file (a store is
        not changed by a reload)."""
        if pg == self.pg_on:
            return
        settings = self.write_a(self.av_on, pg)
        proc = next(p for p in self.procs if p.pid == self.pid["a"])
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        self.pid["a"] = self.start_pecmilter("a", settings).pid
        self.pg_on = pg

    def set_av(self, on):
        """A reloaded with antivirus = "clamd" (ON) or "none"; returns once it says so."""
        if on == self.av_on:
            return
        log = os.path.join(self.d, "a", "pecmilter.log")
        with open(log, "rb") as f:
            before = f.read().count(b"configuration reloaded")
        self.write_a(on, self.pg_on)
        os.kill(self.pid["a"], signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while True:
            with open(log, "rb") as f:
                if f.read().count(b"configuration reloaded") > before:
                    break
            if time.monotonic() > deadline:
                sys.exit("bench: A did not reload its configuration; see %s" % log)
            time.sleep(0.1)
        self.av_on = on

    def scan_ms(self, since):
        """scan_ms of every submission A accepted with the antivirus on, in its log from
        offset SINCE."""
        with open(os.path.join(self.d, "a", "pecmilter.log"), "rb") as f:
            f.seek(since)
            return [float(x) for x in re.findall(rb"av=clean scan_ms=([0-9.]+)", f.read())]

    def log_size(self):
        return os.path.getsize(os.path.join(self.d, "a", "pecmilter.log"))

    def teardown(self):
        from pectest import postfix as pf
        if self.clamd is not None:
            self.clamd.stop()
        for inst in self.instances:
            inst.stop()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            pf.unregister_process(p.pid)
        if self.pg is not None:
            self.pg.stop()

    # -- one run ----------------------------------------------------------------

    def send_and_wait(self, scenario, size, n, sessions, prefix, gap_ms=0):
        """Send n messages of size bytes for scenario, wait for everything they cause.
        Returns (t0, ends {i: 250 ns}, counted {i: arrival ns}, failures [text])."""
        a = self.pf["a"]
        port, to, login = {
            "baseline": (a.reinject_port, SINKED, None),
            "access": (a.submission_port, SINKED, MARIO),
            "access+av": (a.submission_port, SINKED, MARIO),
            "postgresql": (a.submission_port, SINKED, MARIO),
            "memory": (a.submission_port, SINKED, MARIO),
            "exchange": (a.submission_port, LUIGI, MARIO),
        }[scenario]
        # what must arrive where; the first is the arrival that counts the message
        expect = {
            "baseline": [("sink", "")],
            "access": [("mario", "ACCETTAZIONE: "), ("sink", "POSTA CERTIFICATA: ")],
            "access+av": [("mario", "ACCETTAZIONE: "), ("sink", "POSTA CERTIFICATA: ")],
            "postgresql": [("mario", "ACCETTAZIONE: "), ("sink", "POSTA CERTIFICATA: ")],
            "memory": [("mario", "ACCETTAZIONE: "), ("sink", "POSTA CERTIFICATA: ")],
            "exchange": [("mario", "CONSEGNA: "), ("mario", "ACCETTAZIONE: "),
                         ("luigi", "POSTA CERTIFICATA: "), ("ricevute", "PRESA IN CARICO: ")],
        }[scenario]
        for b in self.boxes.values():
            b.clear()
        results = os.path.join(self.d, "results.txt")
        self.set_av(scenario == "access+av")
        t0 = time.time_ns()
        load = subprocess.run([self.load, "-H", a.ip, "-P", str(port), "-s", str(sessions),
                               "-m", str(n), "-l", str(size), "-f", MARIO, "-t", to,
                               "-S", prefix.strip(), "-o", results, "-w", str(gap_ms)]
                              + (["-x", login] if login else []),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_load = time.time_ns()
        ends, refused = {}, []
        with open(results) as f:
            for line in f:
                i, code, end = line.split()
                if code == "250":
                    ends[int(i)] = int(end)
                else:
                    refused.append(int(i))
        # wait for everything that was accepted
        deadline = time.monotonic() + 60 + 3 * n * size / 1e6 + (t_load - t0) / 1e9
        while True:
            for b in set(box for box, _ in expect):
                self.boxes[b].scan()
            got = [self.boxes[box].arrivals(what + prefix) for box, what in expect]
            if all(set(ends) <= set(g) for g in got) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        why = []
        if refused:
            why.append("%d refused by Postfix (%s)" % (
                len(refused), load.stdout.decode(errors="replace").strip()))
        for (box, what), g in zip(expect, got):
            if not set(ends) <= set(g):
                why.append("%d '%s' missing in %s" % (len(set(ends) - set(g)), what.strip(), box))
        return t0, ends, got[0], why

    def one_load(self, scenario, size, n, sessions=SESSIONS):
        """One throughput run: {per_s, cpu_ms, rss_mb, lat [ms]}."""
        self.set_store(scenario == "postgresql")
        pids = [self.pid["a"]] + ([self.pid["b"]] if scenario == "exchange" else [])
        for p in pids:
            reset_hwm(p)
        cpu0 = sum(cpu_ticks(p) for p in pids)
        all0 = machine_ticks()
        prefix = "bench-%s-%d-%d " % (scenario.replace("+", ""), size, self.serial)
        self.serial += 1
        t0, ends, counted, why = self.send_and_wait(scenario, size, n, sessions, prefix)
        cpu1 = sum(cpu_ticks(p) for p in pids)
        all1 = machine_ticks()
        arrived = [counted[i] for i in ends if i in counted]
        last = max(arrived) if arrived else time.time_ns()
        self.note(scenario, size, why)
        out = {"per_s": len(arrived) / ((last - t0) / 1e9) if arrived else 0.0,
               "cpu_ms": (cpu1 - cpu0) * 1000.0 / os.sysconf("SC_CLK_TCK") / max(1, len(arrived)),
               "machine_ms": (all1 - all0) * 1000.0 / os.sysconf("SC_CLK_TCK")
               / max(1, len(arrived)),
               "rss_mb": max(hwm_kb(p) for p in pids) / 1024.0,
               "lat": [(counted[i] - ends[i]) / 1e6 for i in ends if i in counted]}
        say("   %-9s %8d B  %4d msgs  %7.1f/s  cpu %.2f ms/msg (machine %.2f)  rss %.1f MB"
            % (scenario, size, n, out["per_s"], out["cpu_ms"], out["machine_ms"],
               out["rss_mb"]))
        return out

    def latency(self, scenario, size, n):
        """Latencies [ms] without a queue in front: one session, a message every 50 ms;
        and the scans' times [ms] (access+av)."""
        prefix = "bench-lat-%s-%d " % (scenario.replace("+", ""), size)
        self.set_store(scenario == "postgresql")
        start = self.log_size()
        _, ends, counted, why = self.send_and_wait(scenario, size, n, 1, prefix, gap_ms=50)
        self.note(scenario, size, ["latency run: " + w for w in why])
        lat = [(counted[i] - ends[i]) / 1e6 for i in ends if i in counted]
        scans = self.scan_ms(start) if scenario == "access+av" else []
        say("   %-9s %8d B  %4d msgs  paced: p50 %s ms  p99 %s ms%s"
            % (scenario, size, n, fmt(pct(lat, 50)), fmt(pct(lat, 99)),
               "  scan p50 %s ms (%d scans)" % (fmt(pct(scans, 50), 2), len(scans))
               if scenario == "access+av" else ""))
        return lat, scans

    def note(self, scenario, size, why):
        if why:
            self.failures.append("%s %d: %s" % (scenario, size, "; ".join(why)))
            say("   LOST: " + "; ".join(why))

    def size_step(self, size, counts, lat_n, scenarios, rounds):
        """Each scenario ROUNDS times, interleaved with the baseline, so that a neighbour's
        load on a shared machine hits them alike; per_s is the median of the rounds and
        the ratio the median of each round's ratio to that round's baseline."""
        runs = {sc: [] for sc in scenarios}
        for _ in range(rounds):
            for sc in scenarios:
                runs[sc].append(self.one_load(sc, size, counts[sc]))
        for sc in scenarios:
            lat, scans = self.latency(sc, size, lat_n) if lat_n else ([], [])
            rs = runs[sc]
            ratios = [r["per_s"] / b["per_s"] for r, b in zip(rs, runs["baseline"]) if b["per_s"]]
            to_access = [r["per_s"] / a["per_s"] for r, a in zip(rs, runs.get("access", []))
                         if a["per_s"]] if sc in ("access+av", "postgresql") else []
            self.rows.append({
                "ratio_to_access": median(to_access) if to_access else None,
                "ratios_to_access": to_access,
                "scan_p50_ms": pct(scans, 50),
                "scenario": sc, "size_bytes": size, "n": counts[sc] * rounds,
                "per_s": median([r["per_s"] for r in rs]),
                "ratio": median(ratios) if ratios else None,
                "ratios": ratios,
                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "cpu_ms_per_msg": None if sc == "baseline" else
                sum(r["cpu_ms"] for r in rs) / len(rs),
                "machine_ms_per_msg": median([r["machine_ms"] for r in rs]),
                "peak_rss_mb": None if sc == "baseline" else max(r["rss_mb"] for r in rs)})

    def memory(self, size, n):
        r = self.one_load("memory", size, n, sessions=n)
        self.rows.append({"scenario": "memory", "size_bytes": size, "n": n, "per_s": r["per_s"],
                          "ratio": None, "ratios": [], "ratio_to_access": None,
                          "ratios_to_access": [], "scan_p50_ms": None,
                          "p50_ms": pct(r["lat"], 50),
                          "p99_ms": pct(r["lat"], 99), "cpu_ms_per_msg": r["cpu_ms"],
                          "machine_ms_per_msg": r["machine_ms"], "peak_rss_mb": r["rss_mb"]})

    def smtp_source_baseline(self, size, n):
        """The baseline again, with Postfix's own smtp-source as the load."""
        a = self.pf["a"]
        self.boxes["sink"].clear()
        t0 = time.time_ns()
        subprocess.run(["/usr/sbin/smtp-source", "-4", "-s", str(SESSIONS), "-m", str(n),
                        "-l", str(size), "-f", MARIO, "-t", SINKED, "-S",
                        "bench-smtpsource-%d" % size, "-M", "load.bench.test",
                        "%s:%d" % (a.ip, a.reinject_port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60 + 3 * n * size / 1e6
        while True:
            self.boxes["sink"].scan()
            got = [t for s, t in self.boxes["sink"].seen.values()
                   if s == "bench-smtpsource-%d" % size]
            if len(got) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(got) < n:
            self.failures.append("smtp-source baseline %d: %d of %d arrived" % (size, len(got), n))
        per_s = len(got) / ((max(got) - t0) / 1e9) if got else 0.0
        self.extra.append((size, per_s))
        say("   %-8s %8d B  %4d msgs  %7.1f/s  (smtp-source -s %d)" % ("baseline", size, n,
                                                                      per_s, SESSIONS))

    # -- output -------------------------------------------------------------------

    def write(self):
        base = {r["size_bytes"]: r for r in self.rows if r["scenario"] == "baseline"}
        cols = ["scenario", "size_bytes", "per_s", "ratio_to_baseline", "p50_ms", "p99_ms",
                "cpu_ms_per_msg", "peak_rss_mb", "ratio_to_access", "scan_p50_ms"]
        with open(os.path.join(self.d, "bench.csv"), "w") as f:
            f.write(",".join(cols) + "\n")
            for r in self.rows:
                vals = [r["scenario"], str(r["size_bytes"]), fmt(r["per_s"], 2, ""),
                        fmt(r["ratio"], 3, ""), fmt(r["p50_ms"], 2, ""), fmt(r["p99_ms"], 2, ""),
                        fmt(r["cpu_ms_per_msg"], 3, ""), fmt(r["peak_rss_mb"], 1, ""),
                        fmt(r["ratio_to_access"], 3, ""), fmt(r["scan_p50_ms"], 3, "")]
                f.write(",".join(vals) + "\n")

        lines = ["# pecmilter benchmark (%s run, %s, %d CPUs)" % (
            "quick" if self.quick else "full", time.strftime("%Y-%m-%d %H:%M"), os.cpu_count()),
            "",
            "Throughput: %d parallel SMTP sessions (smtpload), one message per session, "
            "messages / (last arrival - start); each scenario runs %d times, interleaved with "
            "the baseline, and the figure is the median; the ratio is the median of each "
            "round's ratio to that round's baseline (the rounds' ratios in brackets).  Latency: from the 250 to the arrival that counts (baseline: the "
            "message at the sink; access: the accettazione in the sender's Maildir; exchange: "
            "the consegna in the sender's Maildir), on a separate paced run (one session, a "
            "message every 50 ms) so that no queue stands in front; memory: under its own "
            "load; file times come from the kernel's coarse clock (a few ms).  CPU and RSS: "
            "pecmilter's (A's, plus B's for the exchange); machine CPU: the whole machine's "
            "busy time per message (/proc/stat: pecmilter, Postfix, the load generator, the "
            "bench itself and the kernel), the median of the rounds." % (SESSIONS, ROUNDS), "",
            "| scenario | size | msgs | per s | × baseline | p50 ms | p99 ms | p50 − baseline "
            "ms | CPU ms/msg | machine CPU ms/msg | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            b = base.get(r["size_bytes"])
            dp50 = r["p50_ms"] - b["p50_ms"] if b and r["p50_ms"] is not None and \
                b["p50_ms"] is not None and r is not b else None
            lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["scenario"], human(r["size_bytes"]), r["n"], fmt(r["per_s"]),
                fmt(r["ratio"], 2) + (" (%s)" % " ".join("%.2f" % x for x in r["ratios"])
                                      if r["scenario"] != "baseline" and r["ratios"] else ""),
                fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(dp50),
                fmt(r["cpu_ms_per_msg"], 2), fmt(r["machine_ms_per_msg"], 2),
                fmt(r["peak_rss_mb"])))
        if self.extra:
            lines += ["", "Cross-check, the baseline with Postfix's smtp-source -s %d: " % SESSIONS
                      + ", ".join("%s %.1f/s" % (human(s), v) for s, v in self.extra)]
        lines += ["", "Targets (2-core machine):", ""]
        def target(label, ok, value):
            lines.append("- [%s] %s: %s" % ("met" if ok else "MISSED", label, value))
        def row(sc, size):
            return next((r for r in self.rows if r["scenario"] == sc and r["size_bytes"] == size),
                        None)
        acc, exc, bas, mem = row("access", 4 * KB), row("exchange", 4 * KB), \
            row("baseline", 4 * KB), row("memory", 30000000)
        if acc and acc["ratio"] is not None:
            target("access role 4 KB >= 0.40 x baseline (bound 0.50)", acc["ratio"] >= 0.40,
                   "%.2f" % acc["ratio"])
        if exc and exc["ratio"] is not None:
            target("full exchange 4 KB >= 0.20 x baseline (bound 0.25)", exc["ratio"] >= 0.20,
                   "%.2f" % exc["ratio"])
        for sc, r in (("access", acc), ("exchange", exc)):
            if r and bas and r["machine_ms_per_msg"] and bas["machine_ms_per_msg"] and \
                    r["cpu_ms_per_msg"] is not None:
                rest = r["machine_ms_per_msg"] - r["cpu_ms_per_msg"]
                lines.append(
                    "  - %s 4 KB: %.2f ms of machine CPU per message, %.2f of them pecmilter's "
                    "(%.0f%%); the baseline takes %.2f.  Were pecmilter's share nothing, the "
                    "ratio would be at most %.2f on this machine" % (
                        sc, r["machine_ms_per_msg"], r["cpu_ms_per_msg"],
                        100.0 * r["cpu_ms_per_msg"] / r["machine_ms_per_msg"],
                        bas["machine_ms_per_msg"],
                        bas["machine_ms_per_msg"] / rest if rest > 0 else float("nan")))
        if acc and bas and acc["p50_ms"] is not None and bas["p50_ms"] is not None:
            d = acc["p50_ms"] - bas["p50_ms"]
            target("accettazione p50 <= baseline p50 + 10 ms", d <= 10, "+%.1f ms" % d)
        if mem:
            target("peak RSS, 10 concurrent 30 MB submissions <= 150 MB",
                   mem["peak_rss_mb"] <= 150, "%.1f MB" % mem["peak_rss_mb"])
        av = [r for r in self.rows if r["scenario"] == "access+av"]
        if av:
            lines += ["", "Antivirus (access+av: A's access role with clamd on, the same run; "
                      "clamd holds one signature, so a production database, millions of "
                      "signatures, costs more per scan):", ""]
            for r in av:
                acc_r = row("access", r["size_bytes"])
                lines.append(
                    "- %s: %s/s, %s x the access role without antivirus (%s/s; rounds: %s); "
                    "scan p50 %s ms; accettazione p50 %s ms (without: %s ms)" % (
                        human(r["size_bytes"]), fmt(r["per_s"]), fmt(r["ratio_to_access"], 2),
                        fmt(acc_r["per_s"]) if acc_r else "-",
                        " ".join("%.2f" % x for x in r["ratios_to_access"]),
                        fmt(r["scan_p50_ms"], 2), fmt(r["p50_ms"]),
                        fmt(acc_r["p50_ms"]) if acc_r else "-"))
            a4, acc4 = row("access+av", 4 * KB), row("access", 4 * KB)
            if a4 and acc4 and a4["ratio_to_access"] is not None and \
                    a4["cpu_ms_per_msg"] is not None and acc4["cpu_ms_per_msg"] is not None:
                lines.append(
                    "  - 4 KB: pecmilter's CPU %.2f ms a submission with clamd, %.2f without; "
                    "the machine's %.2f against %.2f, a difference of %+.2f ms (clamd's "
                    "parsing in its own process and the socket round trip, within the "
                    "rounds' noise when that is small): the scan's %.2f ms are mostly "
                    "waiting, which the other sessions fill" % (
                        a4["cpu_ms_per_msg"], acc4["cpu_ms_per_msg"], a4["machine_ms_per_msg"],
                        acc4["machine_ms_per_msg"],
                        a4["machine_ms_per_msg"] - acc4["machine_ms_per_msg"],
                        a4["scan_p50_ms"] or 0))
        pgs = [r for r in self.rows if r["scenario"] == "postgresql"]
        if pgs:
            lines += ["", "PostgreSQL (postgresql: A's access role with its store on a PostgreSQL "
                      "database of a private server on the same machine, fsync on; the same "
                      "run):", ""]
            for r in pgs:
                acc_r = row("access", r["size_bytes"])
                lines.append(
                    "- %s: %s/s, %s x the access role on SQLite (%s/s; rounds: %s); "
                    "pecmilter's CPU %s ms a submission (on SQLite: %s ms); accettazione p50 "
                    "%s ms (on SQLite: %s ms)" % (
                        human(r["size_bytes"]), fmt(r["per_s"]), fmt(r["ratio_to_access"], 2),
                        fmt(acc_r["per_s"]) if acc_r else "-",
                        " ".join("%.2f" % x for x in r["ratios_to_access"]),
                        fmt(r["cpu_ms_per_msg"], 2),
                        fmt(acc_r["cpu_ms_per_msg"], 2) if acc_r else "-",
                        fmt(r["p50_ms"]), fmt(acc_r["p50_ms"]) if acc_r else "-"))
            p4 = row("postgresql", 4 * KB)
            if p4 and p4["ratio_to_access"] is not None:
                target("access role on PostgreSQL 4 KB >= 0.8 x on SQLite",
                       p4["ratio_to_access"] >= 0.8, "%.2f" % p4["ratio_to_access"])
        if self.failures:
            lines += ["", "FAILED: " + "; ".join(self.failures)]
        with open(os.path.join(self.d, "bench.md"), "w") as f:
            f.write("\n".join(lines) + "\n")

        dat = os.path.join(self.d, "bench.dat")
        with open(dat, "w") as f:
            for sc in ("baseline", "access", "exchange", "access+av", "postgresql"):
                f.write("# %s\n" % sc)
                for r in self.rows:
                    if r["scenario"] == sc:
                        f.write("%d %.3f\n" % (r["size_bytes"] // KB, r["per_s"]))
                f.write("\n\n")
        gp = ("set terminal png size 800,500\n"
              "set output '%s'\n"
              "set title 'pecmilter: throughput by message size (%d sessions)'\n"
              "set logscale xy\nset xlabel 'message size (KB)'\n"
              "set ylabel 'messages per second'\nset grid\nset key bottom left\n"
              "set xtics (4, 100, 1024)\nset xrange [2:2048]\n"
              "plot '%s' index 0 with linespoints lw 2 title 'bare Postfix (baseline)', "
              "'' index 1 with linespoints lw 2 title 'access role: certified submissions', "
              "'' index 2 with linespoints lw 2 title 'A->B exchange: transactions', "
              "'' index 3 with linespoints lw 2 title 'access role with clamd', "
              "'' index 4 with linespoints lw 2 title 'access role on PostgreSQL'\n"
              % (os.path.join(self.d, "bench.png"), SESSIONS, dat))
        with open(os.path.join(self.d, "bench.gp"), "w") as f:
            f.write(gp)
        p = subprocess.run(["gnuplot", os.path.join(self.d, "bench.gp")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            say("bench: gnuplot: " + p.stdout.decode(errors="replace"))


def median(values):
    return pct(values, 50)


def fmt(v, digits=1, none="-"):
    return none if v is None else "%.*f" % (digits, v)


def human(size):
    if size >= 10**6 and size % KB:
        return "%d MB" % (size // 10**6)
    if size >= KB * KB:
        return "%d MB" % (size // (KB * KB))
    return "%d KB" % (size // KB)


def main():
    ap = argparse.ArgumentParser(description="pecmilter benchmark (use contrib/bench.sh)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated scenarios (for profiling)")
    args = ap.parse_args()
    d = os.path.abspath(args.out)
    plan = QUICK if args.quick else FULL
    only = set(args.only.split(",")) if args.only else None
    want = lambda sc: only is None or sc in only
    b = Bench(d, os.path.abspath(args.build), os.path.abspath(args.load), args.quick)
    started = time.monotonic()
    try:
        b.setup()
        scenarios = [sc for sc in ("baseline", "access", "exchange", "access+av", "postgresql")
                     if sc == "baseline" or want(sc) or
                     (sc == "access" and (want("access+av") or want("postgresql")))]
        if b.clamd is None and "access+av" in scenarios:
            scenarios.remove("access+av")
        if b.pg is None and "postgresql" in scenarios:
            scenarios.remove("postgresql")
        # PECBENCH_SIZES=4096,...: those sizes only (for profiling)
        sizes = [int(x) for x in os.environ.get("PECBENCH_SIZES", "").split(",") if x]
        for size, counts, lat_n in plan["sizes"]:
            if sizes and size not in sizes:
                continue
            say("== %s messages, %d rounds" % (human(size), ROUNDS))
            b.size_step(size, counts, lat_n, scenarios, ROUNDS)
            if size == 4 * KB:
                b.smtp_source_baseline(size, counts["baseline"])
        if want("memory"):
            size, n = plan["memory"]
            say("== memory: %d concurrent submissions of %s" % (n, human(size)))
            b.memory(size, n)
        # every message accounted for: nothing may be left in a queue either
        for n, inst in b.pf.items():
            try:
                inst.wait_queue_empty(timeout=60)
            except AssertionError as e:
                b.failures.append("Postfix %s: %s" % (n, str(e).splitlines()[0]))
    finally:
        b.teardown()
    b.write()
    say("== %.0f s; results in %s/bench.{csv,md,png}" % (time.monotonic() - started, d))
    with open(os.path.join(d, "bench.md")) as f:
        say(f.read())
    if b.failures:
        sys.exit("bench: FAILED: " + "; ".join(b.failures))


if __name__ == "__main__":
    main()
