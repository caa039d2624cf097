"""demo.py - the body of contrib/demo.sh (run that instead).

    python3 contrib/demo.py start|stop --dir DIR --build BUILD

start: a test PKI and providers' index under DIR/pki, provider A's pecmilter
(DIR/a/pecmilter.conf, log DIR/a/pecmilter.log) and a private Postfix for A
(DIR/a/postfix) on 127.0.0.11 with pecmilter attached to its port-25 smtpd;
one message is sent through it and shown where it landed.  What runs is
recorded in DIR/demo-state.json, which stop reads.

At this stage pecmilter serves the passthrough role only: the message must
arrive byte for byte as sent, and pecmilter's log shows it saw it.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "t"))

MESSAGE = (b"From: Mario Rossi <mario.rossi@example.org>\r\n"
           b"To: Luigi Bianchi <luigi@pec-a.test>\r\n"
           b"Subject: Prova pecmilter\r\n"
           b"Date: %s\r\n"
           b"Message-ID: <demo-%d@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n"
           b"\r\n"
           b"Buongiorno, questo messaggio \xc3\xa8 passato da pecmilter.\r\n")


def say(text):
    print(text, flush=True)


def state_path(d):
    return os.path.join(d, "demo-state.json")


def start(d, build):
    os.environ["PEC_BUILD_DIR"] = build
    os.environ["PEC_PKI_DIR"] = os.path.join(d, "pki")
    from pectest import config, pki
    from pectest import postfix as pf

    if os.path.exists(state_path(d)):
        say("== a demo is already recorded in %s: stopping it first" % d)
        stop(d)
    os.chmod(d, 0o755)
    say("== test PKI and providers' index in %s" % pki.PKI)
    pki.ensure()
    adir = os.path.join(d, "a")
    os.makedirs(adir, exist_ok=True)
    conf = os.path.join(adir, "pecmilter.conf")
    s = config.write(conf, "a", roles={"pec-mx": "passthrough"}, default_role="passthrough")
    sock = config.socket_path(s)
    if os.path.exists(sock):
        os.unlink(sock)

    say("== pecmilter (provider A, passthrough role): %s" % conf)
    log = open(os.path.join(adir, "pecmilter.log"), "ab")
    milter = subprocess.Popen([os.path.join(build, "milter", "pecmilter"), "-f", "-c", conf],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if milter.poll() is not None or time.monotonic() > deadline:
            sys.exit("demo: pecmilter did not start; see %s" % log.name)
        time.sleep(0.05)
    state = {"pids": [milter.pid], "postfix": []}
    with open(state_path(d), "w") as f:
        json.dump(state, f)

    a = pf.Postfix(adir, "postfix", ip=pf.loopback_ip(1), port=2525, mydomain="pec-a.test",
                   virtual_domains=["pec-a.test"], milter="unix:" + sock)
    say("== Postfix for pec-a.test on %s:%d, milter %s" % (a.ip, a.port, sock))
    a.start()
    a.detach()
    state["postfix"].append(a.root)
    with open(state_path(d), "w") as f:
        json.dump(state, f)

    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()).encode()
    msg = MESSAGE % (now, int(time.time()))
    code, text = a.send("mario.rossi@example.org", ["luigi@pec-a.test"], msg)
    say("== sent mario.rossi@example.org -> luigi@pec-a.test: %d %s" % (code, text))
    if code != 250:
        sys.exit("demo: the message was not accepted")
    got = a.wait_for_mail("luigi@pec-a.test", 1, timeout=30)
    box = a.maildir("luigi@pec-a.test")
    newest = sorted(os.listdir(os.path.join(box, "new")))[-1]
    say("== it landed in %s" % os.path.join(box, "new", newest))
    say(got[-1].decode("utf-8", "replace").rstrip())
    say("== pecmilter's log (%s):" % log.name)
    with open(log.name, encoding="utf-8", errors="replace") as f:
        for line in f.read().splitlines()[-3:]:
            say("   " + line)
    say("== running; stop with: contrib/demo.sh stop --dir %s" % d)


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
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
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
