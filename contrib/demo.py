"""demo.py - the body of contrib/demo.sh (run that instead).

    python3 contrib/demo.py start|stop --dir DIR --build BUILD

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
           "Subject: %s\r\n"
           "Date: %%s\r\n"
           "Message-ID: <demo-%%d@client.pec-a.test>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n"
           "Buongiorno, in allegato il contratto firmato.\r\n"
           % (MARIO, LUIGI, CARLO, ANNA, SUBJECT)).encode()


def say(text):
    print(text, flush=True)


def state_path(d):
    return os.path.join(d, "demo-state.json")


def save_state(d, state):
    with open(state_path(d), "w") as f:
        json.dump(state, f)


def start_pecmilter(d, name, build, settings, state):
    conf_dir = os.path.join(d, name)
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
        sys.exit("demo: pecmilter for %s did not start; see %s" % (name, logname))
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


# What must arrive: (what, mailbox, test on a Seen item)
def _notice(tipo, **fields):
    def test(i):
        r = i.get("report", {})
        return i["x-ricevuta"] == tipo and r.get("valid") and \
            all(r.get(k) == v for k, v in fields.items())
    return test


def _busta(i):
    return i["x-trasporto"] == "posta-certificata" and i.get("report", {}).get("valid")


EXPECTED = [
    ("ricevuta di accettazione to the sender", MARIO, _notice("accettazione")),
    ("busta di trasporto for Luigi (To)", LUIGI, _busta),
    ("busta di trasporto for Anna (Cc)", ANNA, _busta),
    ("busta di trasporto for the ordinary address", CARLO, _busta),
    ("presa in carico from B", "ricevute@pec-a.test", _notice("presa-in-carico")),
    ("avvenuta consegna completa for Luigi", MARIO,
     _notice("avvenuta-consegna", consegna=LUIGI, ricevuta="completa")),
    ("avvenuta consegna sintetica for Anna", MARIO,
     _notice("avvenuta-consegna", consegna=ANNA, ricevuta="sintetica")),
]


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


def start(d, build):
    os.environ["PEC_BUILD_DIR"] = build
    os.environ["PEC_PKI_DIR"] = os.path.join(d, "pki")
    from pectest import config, pki
    from pectest import postfix as pf
    from pectest.provider import Provider

    if os.path.exists(state_path(d)):
        say("== a demo is already recorded in %s: stopping it first" % d)
        stop(d)
    os.chmod(d, 0o755)
    for name in ("a", "b", "ext"):
        shutil.rmtree(os.path.join(d, name), ignore_errors=True)
    say("== test PKI in %s, providers' index %s" % (pki.PKI, os.path.join(d, "index.ldif")))
    pki.ensure()
    index = os.path.join(d, "index.ldif.p7m")      # as the authority signs it
    shutil.copyfile(pki.index(), os.path.join(d, "index.ldif"))
    shutil.copyfile(pki.index_p7m(), index)

    ip = {"a": pf.loopback_ip(1), "b": pf.loopback_ip(2), "ext": pf.loopback_ip(3)}
    mx = {n: pf.free_port(ip[n]) for n in ip}
    settings = {}
    for n in ("a", "b"):
        ndir = os.path.join(d, n)
        os.makedirs(os.path.join(ndir, "mail"))
        # README step 5: the sockets' directory is pecmilter's (root here), group
        # postfix, setgid, and the sockets (umask 007) are for pecmilter and Postfix alone
        sockdir = os.path.join(ndir, "pecmilter")
        os.makedirs(sockdir)
        os.chown(sockdir, 0, grp.getgrnam("postfix").gr_gid)
        os.chmod(sockdir, 0o2750)
        settings[n] = config.write(
            os.path.join(ndir, "pecmilter.conf"), n, umask="007",
            milter_socket="unix:" + os.path.join(sockdir, "milter.sock"),
            lmtp_socket="unix:" + os.path.join(sockdir, "lmtp.sock"),
            roles={"pec-submission": "access", "pec-mx": "reception"},
            reinject="smtp:%s:%d" % (ip[n], pf.free_port(ip[n])),
            mailbox_backend="maildir", maildir_root=os.path.join(ndir, "mail"),
            index_source="file:" + index, outbox_retry_max_backoff=2)
        # the mailboxes, as an administrator makes them: nothing makes one at delivery
        users = {"a": [MARIO], "b": [LUIGI, ANNA]}[n] + [settings[n]["receipt_address"]]
        out = subprocess.run([os.path.join(build, "milter", "pecctl"), "-c",
                              os.path.join(ndir, "pecmilter.conf"), "mailbox", "add"] + users,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("demo: pecctl mailbox add: %s%s" % (out.stdout, out.stderr))
        say("== mailboxes of %s: %s" % (n.upper(), ", ".join(users)))

    state = {"pids": [], "postfix": []}
    save_state(d, state)
    for n in ("a", "b"):
        s = settings[n]
        start_pecmilter(d, n, build, s, state)
        say("== pecmilter for %s (%s): %s, log %s" % (s["domains"][0], s["provider_name"],
            os.path.join(d, n, "pecmilter.conf"), os.path.join(d, n, "pecmilter.log")))

    def relay(n):
        return "smtp:[%s]:%d" % (ip[n], mx[n])

    ext = pf.Postfix(os.path.join(d, "ext"), "postfix", ip=ip["ext"], port=mx["ext"],
                     mydomain="example.org", virtual_domains=["example.org"])
    instances = [("example.org (ordinary mail, no pecmilter)", ext)]
    for n, other in (("a", "b"), ("b", "a")):
        s = settings[n]
        dom = s["domains"][0]
        inst = Provider(os.path.join(d, n), "postfix", s, ip=ip[n], port=mx[n],
                        transports={"pec-%s.test" % other: relay(other),
                                    "example.org": relay("ext")})
        instances.append((dom, inst))
    for label, inst in instances:
        inst.start()
        inst.detach()
        state["postfix"].append(inst.root)
        save_state(d, state)
        ports = "port 25 on %s:%d" % (inst.ip, inst.port)
        if inst.submission_port:
            ports += ", submission %d, reinjection %d, own domain -> %s" % (
                inst.submission_port, inst.reinject_port, inst.main_cf()["virtual_transport"])
        say("== Postfix for %s: %s (%s)" % (label, inst.root, ports))
    a = instances[1][1]

    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()).encode()
    msg = MESSAGE % (now, int(time.time()))
    rcpts = [LUIGI, CARLO, ANNA]
    code, text = a.send(MARIO, rcpts, msg, port=a.submission_port, xclient_login=MARIO)
    say("== sent %s -> %s through A's submission (XCLIENT LOGIN=%s): %d %s"
        % (MARIO, ", ".join(rcpts), MARIO, code, text))
    if code != 250:
        say("== running; stop with: contrib/demo.sh stop --dir %s" % d)
        sys.exit("demo: the message was not accepted")

    seen = Seen(d, build)
    found = {}
    deadline = time.monotonic() + WAIT
    say("== waiting up to %ds for the chain" % WAIT)
    while True:
        seen.scan()
        for what, box, test in EXPECTED:
            if what not in found:
                for i in seen.ordered():
                    if i["box"] == box and test(i) and i["file"] not in found.values():
                        found[what] = i["file"]
                        break
        if len(found) == len(EXPECTED) or time.monotonic() > deadline:
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
    for what, box, _ in EXPECTED:
        say("   [%s] %s, in %s" % ("ok" if what in found else "MISSING", what, box))
    missing = [what for what, _, _ in EXPECTED if what not in found]
    if missing:
        say("== missing after %ds: %s" % (WAIT, "; ".join(missing)))
        for label, inst in instances:
            why = [l for l in inst.log().splitlines() if "status=deferred" in l
                   or "milter-reject" in l]
            shown = []
            for line in reversed(why):
                text = re.sub(r"^.*?: [0-9A-Za-z]+: |^.*?: NOQUEUE: ", "", line)
                text = re.sub(r"delay=[^ ]* delays=[^ ]* ", "", text)
                if text not in shown and len(shown) < 2:
                    shown.append(text)
            for text in reversed(shown):
                say("   Postfix for %s: %s" % (label, text))
    for n in ("a", "b"):
        say("== pecmilter's log for %s (%s), last lines:" % (n, os.path.join(d, n,
                                                                              "pecmilter.log")))
        with open(os.path.join(d, n, "pecmilter.log"), encoding="utf-8", errors="replace") as f:
            for line in f.read().splitlines()[-4:]:
                say("   " + line)
    say("== running; stop with: contrib/demo.sh stop --dir %s" % d)
    if missing:
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
    for pid in state.get("pids", []):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if d.encode() not in f.read():
                    continue          # gone, and the pid reused since
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            continue
        for _ in range(150):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        say("== stopped pecmilter (pid %d)" % pid)
    os.unlink(state_path(d))


def main():
    ap = argparse.ArgumentParser(description="pecmilter demo (use contrib/demo.sh)")
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    if args.action == "start":
        start(d, os.path.abspath(args.build))
    else:
        stop(d)


if __name__ == "__main__":
    main()
