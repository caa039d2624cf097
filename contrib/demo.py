"""demo.py - the body of contrib/demo.sh (run that instead).

    python3 contrib/demo.py start|stop --dir DIR --build BUILD [--nodes 1|2]

start brings up two PEC providers on loopback, each a private Postfix with its
own pecmilter, and one ordinary mail server:

  A  pec-a.test   Postfix DIR/a/postfix on 127.0.0.11, pecmilter DIR/a/pecmilter.conf
  B  pec-b.test   Postfix DIR/b/postfix on 127.0.0.12, pecmilter DIR/b/pecmilter.conf
  example.org     a third, plain Postfix DIR/ext/postfix on 127.0.0.13 (no pecmilter):
                  the ordinary (non-PEC) recipient's mail server

Each provider's Postfix has three listeners: pec-submission (users; the milter in
the access role; XCLIENT LOGIN= stands for a SASL login), pec-mx (port 25 of the
provider: the milter in the reception role) and a reinjection listener without
milter, where pecmilter's injector hands over what it generates.  The provider's
own domain goes over LMTP to its pecmilter's delivery point, which stores it into
Maildirs under DIR/<a|b>/mail/<localpart>/ (built-in backend); the other
provider's domain and example.org are relayed to their Postfix.

mario.rossi@pec-a.test then sends, through A's submission listener, one message To
luigi.bianchi@pec-b.test and carlo.neri@example.org, Cc anna.verdi@pec-b.test.  The
demo waits for the chain (busta di trasporto at B and at example.org, ricevuta di
accettazione to Mario, presa in carico in ricevute@pec-a.test, avvenuta consegna
completa for Luigi and sintetica for Anna), prints every message of it with
pecverify's verdict, and exits 1 naming what did not arrive.  What runs is recorded
in DIR/demo-state.json, which stop reads.

With --nodes 2, provider A is two nodes on one PostgreSQL database, as README's
"Several nodes" describes:

  A node 1  Postfix DIR/a/node1/postfix on 127.0.0.11, pecmilter node_id 1
  A node 2  Postfix DIR/a/node2/postfix on 127.0.0.14, pecmilter node_id 2
  A's store a PostgreSQL cluster the demo initdb's into DIR/pg as the user nobody
            (socket in DIR/pg, no TCP address), database "pec"
  A's storage  DIR/a/mail (maildir_root), DIR/a/registro (seal_dir) and
            DIR/a/quarantine, one directory for both nodes (shared_storage = "yes")

Both nodes listen on the same port 25 on their own address, and B's Postfix finds
pec-a.test at both addresses (two lines in its /etc/hosts, standing for two MX
hosts of equal preference): Postfix picks one at random for each delivery.  Mario
sends two messages, the first through node 1's submission listener and the second
through node 2's; the chain of both is awaited, and then the shared store's log
(`pecctl log --json`) says, record by record, which node did what: the busta and
the accettazione by the node that took the submission (its node_id is in the
identificativo, opec<node>..., and in the notices' Message-IDs, npec<node>...),
the presa in carico and the consegne by the node B's Postfix reached.  stop stops
PostgreSQL too.
"""
import argparse
import email.header
import grp
import json
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
ANNA = "anna.verdi@pec-b.test"
CARLO = "carlo.neri@example.org"
SUBJECT = "Contratto di fornitura"
WAIT = int(os.environ.get("PEC_DEMO_WAIT", "60"))   # seconds for the whole chain

MESSAGE = ("From: Mario Rossi <%s>\r\n"
           "To: Luigi Bianchi <%s>, Carlo Neri <%s>\r\n"
           "Cc: Anna Verdi <%s>\r\n"
           "Subject: %%s\r\n"
           "Date: %%s\r\n"
           "Message-ID: <demo-%%s@client.pec-a.test>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n"
           "Buongiorno, in allegato il contratto firmato.\r\n"
           % (MARIO, LUIGI, CARLO, ANNA))


def say(text):
    print(text, flush=True)


def state_path(d):
    return os.path.join(d, "demo-state.json")


def save_state(d, state):
    with open(state_path(d), "w") as f:
        json.dump(state, f)


def start_pecmilter(d, conf_dir, build, settings, state):
    from pectest import config
    for key in ("milter_socket", "lmtp_socket"):
        sock = config.socket_path(settings, key)
        if os.path.exists(sock):
            os.unlink(sock)
    logname = os.path.join(conf_dir, "pecmilter.log")
    with open(logname, "ab") as log:
        proc = subprocess.Popen([os.path.join(build, "milter", "pecmilter"), "-f", "-c",
                                 os.path.join(conf_dir, "pecmilter.conf")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, cwd="/")
    state["pids"].append(proc.pid)
    save_state(d, state)
    if not config.wait_sockets(proc, settings, 15):
        sys.exit("demo: pecmilter for %s did not start; see %s"
                 % (os.path.relpath(conf_dir, d), logname))
    return proc


def mailboxes(d):
    """{label: Maildir path} of every mailbox that exists now."""
    out = {}
    for prov in ("a", "b"):
        root = os.path.join(d, prov, "mail")
        for user in sorted(os.listdir(root)) if os.path.isdir(root) else ():
            out["%s@pec-%s.test" % (user, prov)] = os.path.join(root, user)
    ext = os.path.join(d, "ext", "postfix", "mail", "example.org")
    for user in sorted(os.listdir(ext)) if os.path.isdir(ext) else ():
        out["%s@example.org" % user] = os.path.join(ext, user)
    return out


class Seen:
    """Every message delivered so far, read once, with pecverify's report."""

    def __init__(self, d, build):
        self.d = d
        self.pecverify = os.path.join(build, "milter", "pecverify")
        self.trust = os.path.join(d, "pki", "trust.pem")
        self.index = os.path.join(d, "index.ldif.p7m")
        self.signer = os.path.join(d, "pki", "authority", "cert.pem")
        self.items = {}         # path -> dict

    def scan(self):
        from pectest import pecmail
        fresh = []
        for box, path in mailboxes(self.d).items():
            for sub in ("new", "cur"):
                try:
                    names = os.listdir(os.path.join(path, sub))
                except FileNotFoundError:
                    continue
                for n in names:
                    f = os.path.join(path, sub, n)
                    if n.startswith(".") or f in self.items:
                        continue
                    with open(f, "rb") as fh:
                        m = pecmail.Message(fh.read())
                    self.items[f] = {"box": box, "file": f, "mtime": os.stat(f).st_mtime,
                                     "subject": decode(m.header("Subject") or ""),
                                     "x-ricevuta": m.header("X-Ricevuta"),
                                     "x-trasporto": m.header("X-Trasporto")}
                    fresh.append(f)
        if fresh:
            p = subprocess.run([self.pecverify, "--trust", self.trust, "--index", self.index,
                                "--index-signer", self.signer, "--json"] + fresh,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            try:
                reports = json.loads(p.stdout)
            except ValueError:
                reports = [{"valid": False, "reason": "pecverify: " + p.stderr.decode(
                    "utf-8", "replace").strip()}] * len(fresh)
            for f, r in zip(fresh, reports):
                self.items[f]["report"] = r

    def ordered(self):
        return sorted(self.items.values(), key=lambda i: (i["mtime"], i["file"]))


def decode(v):
    try:
        return str(email.header.make_header(email.header.decode_header(v)))
    except Exception:
        return v


# What must arrive for one message, whose Subject is SUBJ: (what, mailbox, test on a
# Seen item).  Every message PEC makes of it has the Subject "PREFIX: SUBJ".
def _of(i, subj):
    return i["subject"].endswith(": " + subj)


def _notice(subj, tipo, **fields):
    def test(i):
        r = i.get("report", {})
        return i["x-ricevuta"] == tipo and r.get("valid") and _of(i, subj) and \
            all(r.get(k) == v for k, v in fields.items())
    return test


def _busta(subj):
    def test(i):
        return i["x-trasporto"] == "posta-certificata" and \
            i.get("report", {}).get("valid") and _of(i, subj)
    return test


def expected(subj, prefix=""):
    return [(prefix + what, box, test) for what, box, test in [
        ("ricevuta di accettazione to the sender", MARIO, _notice(subj, "accettazione")),
        ("busta di trasporto for Luigi (To)", LUIGI, _busta(subj)),
        ("busta di trasporto for Anna (Cc)", ANNA, _busta(subj)),
        ("busta di trasporto for the ordinary address", CARLO, _busta(subj)),
        ("presa in carico from B", "ricevute@pec-a.test", _notice(subj, "presa-in-carico")),
        ("avvenuta consegna completa for Luigi", MARIO,
         _notice(subj, "avvenuta-consegna", consegna=LUIGI, ricevuta="completa")),
        ("avvenuta consegna sintetica for Anna", MARIO,
         _notice(subj, "avvenuta-consegna", consegna=ANNA, ricevuta="sintetica")),
    ]]


def verdict(i):
    r = i.get("report", {})
    if r.get("valid"):
        what = r.get("kind") or "?"
        if r.get("tipo"):
            what += " " + r["tipo"]
        if r.get("ricevuta") and r.get("tipo") == "avvenuta-consegna":
            what += " " + r["ricevuta"]
        if r.get("consegna"):
            what += " for " + r["consegna"]
        return "valid (%s)" % what
    return "invalid: %s" % r.get("reason")


# -- PostgreSQL (--nodes 2): a cluster of the demo's own, as t/pectest/postgres.py
# makes one for the tests, but left running when the demo exits (stop stops it).
# PostgreSQL refuses to run as root: the cluster is nobody's.

PG_ROLE = "pec"
PG_PORT = 5432          # names the socket in DIR/pg only: there is no TCP address


def pg_run(pg, prog, *args):
    import pwd
    user = pwd.getpwnam("nobody")
    p = subprocess.run([os.path.join(pg["bin"], prog)] + list(args), cwd=pg["root"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, user=user.pw_uid,
                       group=user.pw_gid, extra_groups=[])
    return p.returncode, p.stdout


def pg_conninfo(pg):
    return "host=%s port=%d user=%s dbname=pec" % (pg["root"], PG_PORT, PG_ROLE)


def start_postgres(d, state):
    """initdb into DIR/pg as nobody, start the server on a unix socket there, make
    the database "pec"; the connection string."""
    import pwd
    from pectest import postgres
    from pectest import postfix as pf
    if not postgres.have_postgres():
        sys.exit("demo: --nodes 2 wants PostgreSQL (/usr/lib/postgresql/N/bin): "
                 "contrib/deps.sh demo-nodes installs postgresql-15")
    root = os.path.join(d, "pg")
    os.makedirs(root)
    user = pwd.getpwnam("nobody")
    os.chown(root, user.pw_uid, user.pw_gid)
    # the socket's directory is the server's (and root's: pecmilter and pecctl) alone
    os.chmod(root, 0o700)
    pf.make_searchable(d)
    pg = {"bin": postgres.bindir(), "root": root, "data": os.path.join(root, "data"),
          "log": os.path.join(root, "postgres.log")}
    state["postgres"] = pg
    save_state(d, state)
    # trust for the one role: only the socket's directory reaches the server
    for what, args in (("initdb", ("-D", pg["data"], "-U", PG_ROLE, "--auth=trust", "-E", "UTF8",
                                   "--locale=C.UTF-8")),
                       ("pg_ctl", ("-D", pg["data"], "-l", pg["log"], "-w", "-t", "60", "-o",
                                   "-k %s -p %d -c listen_addresses=''" % (root, PG_PORT),
                                   "start")),
                       ("createdb", ("-h", root, "-p", str(PG_PORT), "-U", PG_ROLE, "pec"))):
        rc, out = pg_run(pg, what, *args)
        if rc != 0:
            sys.exit("demo: PostgreSQL: %s failed (%d): %s(log: %s)" % (what, rc, out[-2000:],
                                                                       pg["log"]))
    return pg_conninfo(pg)


def stop_postgres(pg):
    if not os.path.exists(os.path.join(pg["data"], "postmaster.pid")):
        return
    rc, out = pg_run(pg, "pg_ctl", "-D", pg["data"], "-m", "fast", "-w", "-t", "60", "stop")
    if rc != 0:
        say("== PostgreSQL %s did not stop (%d): %s" % (pg["data"], rc, out.strip()))
    else:
        say("== stopped PostgreSQL %s" % pg["data"])


# -- which node did what (--nodes 2)

STEPS = {("emissione", "posta-certificata"): "busta di trasporto sent",
         ("emissione", "accettazione"): "ricevuta di accettazione issued",
         ("ricezione", "presa-in-carico"): "presa in carico received",
         ("ricezione", "avvenuta-consegna"): "avvenuta consegna received"}


def attribution(d, pecctl, conf, msgids):
    """Print, from the shared store's log, which node did what for each message
    (client Message-IDs MSGIDS, in the order sent); False when it cannot be read."""
    p = subprocess.run([pecctl, "-c", conf, "log", "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        say("== pecctl log failed (%d): %s" % (p.returncode, p.stderr.strip()))
        return False
    recs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    say("== which node did what, from the store both nodes share (pecctl -c %s log --json):"
        % os.path.relpath(conf, d))
    ok = True
    took, received = {}, {}
    for k, cm in enumerate(msgids, 1):
        idents = sorted({r["identificativo"] for r in recs if r["client-msgid"] == cm})
        if len(idents) != 1:
            say("   message %d: %d identificativi for %s in the log" % (k, len(idents), cm))
            ok = False
            continue
        say("   message %d: identificativo %s" % (k, idents[0]))
        for r in recs:
            if r["identificativo"] != idents[0]:
                continue
            step = STEPS.get((r["evento"], r["tipo"]))
            if step is None and r["evento"] == "deposito":
                step = "stored in %s's mailbox" % r["consegna"]
            if r["evento"] == "emissione":
                step += ", Message-ID <%s>" % r["message-id"]
            elif r["evento"] == "ricezione":
                step += " from %s" % r["gestore"]
                if r["consegna"]:
                    step += ", consegna %s" % r["consegna"]
            say("     #%d node %s: %s %s: %s" % (r["seq"], r["node"], r["evento"], r["tipo"],
                                                 step))
            if r["evento"] == "emissione" and r["tipo"] == "posta-certificata":
                took[k] = r["node"]
            elif r["evento"] == "ricezione":
                received[r["node"]] = received.get(r["node"], 0) + 1
        # the transaction as every node sees it, whichever node received its receipts
        p = subprocess.run([pecctl, "-c", conf, "tx", idents[0]], capture_output=True,
                           text=True)
        states = re.findall(r"(?m)^  (\S+) \([^)]*\): ([^;]+);", p.stdout)
        say("     pecctl tx: %s" % (", ".join("%s %s" % st for st in states) or
                                      p.stdout.strip() + p.stderr.strip()))
    say("   submissions taken: %s; receipts from B received: %s"
        % (", ".join("message %d by node %s" % kv for kv in sorted(took.items())),
           ", ".join("%d by node %s" % (n, node) for node, n in sorted(received.items()))))
    return ok


class MXProvider:
    """Mixed into pectest's Provider: more addresses for a peer's domain in the
    instance's /etc/hosts (EXTRA_HOSTS: (ip, domain)), as two MX hosts of equal
    preference; the peer's port is the same at every address."""
    extra_hosts = ()

    def _write_config(self):
        super()._write_config()
        with open(self.hosts, "a") as f:
            for ip, dom in self.extra_hosts:
                f.write("%s %s\n" % (ip, dom))


def common_port(ips):
    """A port free on every address of IPS."""
    import socket
    from pectest import postfix as pf
    for _ in range(50):
        port = pf.free_port(ips[0])
        try:
            for ip in ips[1:]:
                with socket.socket() as s:
                    s.bind((ip, port))
        except OSError:
            continue
        return port
    sys.exit("demo: no port free on all of %s" % ", ".join(ips))


def start(d, build, nodes=1):
    os.environ["PEC_BUILD_DIR"] = build
    os.environ["PEC_PKI_DIR"] = os.path.join(d, "pki")
    from pectest import config, pki
    from pectest import postfix as pf
    from pectest.provider import Provider

    if os.path.exists(state_path(d)):
        say("== a demo is already recorded in %s: stopping it first" % d)
        stop(d)
    os.chmod(d, 0o755)
    for name in ("a", "b", "ext", "pg"):
        shutil.rmtree(os.path.join(d, name), ignore_errors=True)
    say("== test PKI in %s, providers' index %s" % (pki.PKI, os.path.join(d, "index.ldif")))
    pki.ensure()
    index = os.path.join(d, "index.ldif.p7m")      # as the authority signs it
    shutil.copyfile(pki.index(), os.path.join(d, "index.ldif"))
    shutil.copyfile(pki.index_p7m(), index)
    pecctl = os.path.join(build, "milter", "pecctl")

    ip = {"a": pf.loopback_ip(1), "b": pf.loopback_ip(2), "ext": pf.loopback_ip(3)}
    mx = {n: pf.free_port(ip[n]) for n in ip}
    # each Postfix+pecmilter pair: (key, provider, directory, node_id, address)
    if nodes == 1:
        units = [("a", "a", os.path.join(d, "a"), 1, ip["a"]),
                 ("b", "b", os.path.join(d, "b"), 1, ip["b"])]
    else:
        ip["a2"] = pf.loopback_ip(4)
        mx["a"] = common_port([ip["a"], ip["a2"]])     # both nodes' port 25
        units = [("a1", "a", os.path.join(d, "a", "node1"), 1, ip["a"]),
                 ("a2", "a", os.path.join(d, "a", "node2"), 2, ip["a2"]),
                 ("b", "b", os.path.join(d, "b"), 1, ip["b"])]

    def label(key):
        return key[0].upper() + (" node " + key[1] if len(key) > 1 else "")

    state = {"pids": [], "postfix": [], "postgres": None}
    save_state(d, state)
    shared = {}
    if nodes > 1:
        store = start_postgres(d, state)
        say("== A's store: PostgreSQL %s, data %s, log %s: %s"
            % (os.path.basename(os.path.dirname(state["postgres"]["bin"])),
               state["postgres"]["data"], state["postgres"]["log"], store))
        shared = dict(store=store, shared_storage="yes",
                      seal_dir=os.path.join(d, "a", "registro"),
                      quarantine_dir=os.path.join(d, "a", "quarantine"))
        say("== A's storage, one for both nodes: %s (mailboxes), %s, %s"
            % (os.path.join(d, "a", "mail"), shared["seal_dir"], shared["quarantine_dir"]))

    settings = {}
    for key, prov, udir, node, uip in units:
        maildir = os.path.join(d, prov, "mail")
        os.makedirs(maildir, exist_ok=True)
        # README step 5: the sockets' directory is pecmilter's (root here), group
        # postfix, setgid, and the sockets (umask 007) are for pecmilter and Postfix alone
        sockdir = os.path.join(udir, "pecmilter")
        os.makedirs(sockdir)
        os.chown(sockdir, 0, grp.getgrnam("postfix").gr_gid)
        os.chmod(sockdir, 0o2750)
        extra = dict(shared, node_id=node) if prov == "a" and shared else {}
        settings[key] = config.write(
            os.path.join(udir, "pecmilter.conf"), prov, umask="007",
            milter_socket="unix:" + os.path.join(sockdir, "milter.sock"),
            lmtp_socket="unix:" + os.path.join(sockdir, "lmtp.sock"),
            roles={"pec-submission": "access", "pec-mx": "reception"},
            reinject="smtp:%s:%d" % (uip, pf.free_port(uip)),
            mailbox_backend="maildir", maildir_root=maildir,
            index_source="file:" + index, outbox_retry_max_backoff=2, **extra)
    # the mailboxes, as an administrator makes them: nothing makes one at delivery
    # (once for A's two nodes: their maildir_root is one)
    for prov, users in (("a", [MARIO]), ("b", [LUIGI, ANNA])):
        key = [u[0] for u in units if u[1] == prov][0]
        users = users + [settings[key]["receipt_address"]]
        conf = os.path.join([u[2] for u in units if u[0] == key][0], "pecmilter.conf")
        out = subprocess.run([pecctl, "-c", conf, "mailbox", "add"] + users,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("demo: pecctl mailbox add: %s%s" % (out.stdout, out.stderr))
        say("== mailboxes of %s: %s" % (prov.upper(), ", ".join(users)))

    for key, prov, udir, node, uip in units:
        s = settings[key]
        start_pecmilter(d, udir, build, s, state)
        say("== pecmilter for %s (%s)%s: %s, log %s"
            % (s["domains"][0], s["provider_name"],
               ", node_id %d" % node if prov == "a" and shared else "",
               os.path.join(udir, "pecmilter.conf"), os.path.join(udir, "pecmilter.log")))

    def relay(n):
        return "smtp:[%s]:%d" % (ip[n], mx[n])

    ext = pf.Postfix(os.path.join(d, "ext"), "postfix", ip=ip["ext"], port=mx["ext"],
                     mydomain="example.org", virtual_domains=["example.org"])
    instances = [("example.org (ordinary mail, no pecmilter)", ext)]
    for key, prov, udir, node, uip in units:
        s = settings[key]
        other = "b" if prov == "a" else "a"
        cls = Provider
        if prov == "b" and nodes > 1:
            cls = type("BProvider", (MXProvider, Provider), {})
            cls.extra_hosts = [(ip["a2"], "pec-a.test")]
        inst = cls(udir, "postfix", s, ip=uip, port=mx[prov],
                   transports={"pec-%s.test" % other: relay(other),
                               "example.org": relay("ext")})
        instances.append(("%s%s" % (s["domains"][0], " node %d" % node
                                    if prov == "a" and shared else ""), inst))
    for lab, inst in instances:
        inst.start()
        inst.detach()
        state["postfix"].append(inst.root)
        save_state(d, state)
        ports = "port 25 on %s:%d" % (inst.ip, inst.port)
        if inst.submission_port:
            ports += ", submission %d, reinjection %d, own domain -> %s" % (
                inst.submission_port, inst.reinject_port, inst.main_cf()["virtual_transport"])
        say("== Postfix for %s: %s (%s)" % (lab, inst.root, ports))
    if nodes > 1:
        say("== B's Postfix finds pec-a.test at %s and %s, port %d (two MX hosts of equal "
            "preference): it picks one for each delivery" % (ip["a"], ip["a2"], mx["a"]))
    a_insts = [inst for lab, inst in instances if lab.startswith("pec-a.test")]

    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    stamp = int(time.time())
    rcpts = [LUIGI, CARLO, ANNA]
    subjects = [SUBJECT] if nodes == 1 else ["%s (%d)" % (SUBJECT, k + 1) for k in range(nodes)]
    msgids = []
    chain = []
    for k, subj in enumerate(subjects):
        a = a_insts[k % len(a_insts)]
        tag = "%d" % stamp if nodes == 1 else "%d-%d" % (stamp, k + 1)
        msgids.append("<demo-%s@client.pec-a.test>" % tag)
        code, text = a.send(MARIO, rcpts, (MESSAGE % (subj, now, tag)).encode(),
                            port=a.submission_port, xclient_login=MARIO)
        via = "A's submission" if nodes == 1 else "A node %d's submission" % (k % len(a_insts) + 1)
        say("== sent %s -> %s through %s (XCLIENT LOGIN=%s): %d %s%s"
            % (MARIO, ", ".join(rcpts), via, MARIO, code, text,
               "" if nodes == 1 else "; Subject: " + subj))
        if code != 250:
            say("== running; stop with: contrib/demo.sh stop --dir %s" % d)
            sys.exit("demo: the message was not accepted")
        chain += expected(subj, "" if nodes == 1 else "message %d: " % (k + 1))

    seen = Seen(d, build)
    found = {}
    deadline = time.monotonic() + WAIT
    say("== waiting up to %ds for the chain" % WAIT)
    while True:
        seen.scan()
        for what, box, test in chain:
            if what not in found:
                for i in seen.ordered():
                    if i["box"] == box and test(i) and i["file"] not in found.values():
                        found[what] = i["file"]
                        break
        if len(found) == len(chain) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    time.sleep(0.5)            # anything that arrives right behind the last one
    seen.scan()

    say("== the chain: every message delivered, oldest first (mailbox under %s)" % d)
    for i in seen.ordered():
        head = "X-Ricevuta: %s" % i["x-ricevuta"] if i["x-ricevuta"] else \
            "X-Trasporto: %s" % i["x-trasporto"] if i["x-trasporto"] else "(ordinary)"
        say("   %-26s %s" % (i["box"], i["subject"]))
        say("   %-26s   %s; pecverify: %s" % ("", head, verdict(i)))
        say("   %-26s   %s" % ("", os.path.relpath(i["file"], d)))
    say("== expected")
    for what, box, _ in chain:
        say("   [%s] %s, in %s" % ("ok" if what in found else "MISSING", what, box))
    missing = [what for what, _, _ in chain if what not in found]
    if missing:
        say("== missing after %ds: %s" % (WAIT, "; ".join(missing)))
        for lab, inst in instances:
            why = [l for l in inst.log().splitlines() if "status=deferred" in l
                   or "milter-reject" in l]
            shown = []
            for line in reversed(why):
                text = re.sub(r"^.*?: [0-9A-Za-z]+: |^.*?: NOQUEUE: ", "", line)
                text = re.sub(r"delay=[^ ]* delays=[^ ]* ", "", text)
                if text not in shown and len(shown) < 2:
                    shown.append(text)
            for text in reversed(shown):
                say("   Postfix for %s: %s" % (lab, text))
    attributed = True
    if nodes > 1:
        attributed = attribution(d, pecctl, os.path.join(units[0][2], "pecmilter.conf"),
                                 msgids)
    for key, prov, udir, node, uip in units:
        say("== pecmilter's log for %s (%s), last lines:"
            % (key if nodes == 1 else label(key), os.path.join(udir, "pecmilter.log")))
        with open(os.path.join(udir, "pecmilter.log"), encoding="utf-8",
                  errors="replace") as f:
            for line in f.read().splitlines()[-4:]:
                say("   " + line)
    say("== running; stop with: contrib/demo.sh stop --dir %s" % d)
    if missing or not attributed:
        sys.exit(1)


def stop(d):
    from pectest import postfix as pf

    try:
        with open(state_path(d)) as f:
            state = json.load(f)
    except FileNotFoundError:
        say("== nothing recorded in %s: nothing to stop" % d)
        return
    for root in state.get("postfix", []):
        pf.stop_instance(root)
        say("== stopped Postfix %s" % root)
    # every pecmilter told at once, then waited for: they need not take turns
    stopping = []
    for pid in state.get("pids", []):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if d.encode() not in f.read():
                    continue          # gone, and the pid reused since
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            continue
        stopping.append(pid)
    deadline = time.monotonic() + 15
    for pid in stopping:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        say("== stopped pecmilter (pid %d)" % pid)
    if state.get("postgres"):
        stop_postgres(state["postgres"])
    os.unlink(state_path(d))


def main():
    ap = argparse.ArgumentParser(description="pecmilter demo (use contrib/demo.sh)")
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    if args.action == "start":
        start(d, os.path.abspath(args.build), args.nodes)
    else:
        stop(d)


if __name__ == "__main__":
    main()
