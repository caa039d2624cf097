"""contrib/demo.sh, run as the README tells a new user (on the tree ctest
built): two providers and an ordinary mail server on loopback, one certified
message from A to two users of B and one ordinary address; the whole chain of
receipts must arrive, every message verify with pecverify, the demo exit 0;
stop leaves nothing behind.  A's SQLite store, as the demo filled it, is copied
to a private PostgreSQL with `pecctl store copy` (when PostgreSQL is installed),
where `log verify`, `audit` and the log read as on the original.

Then `--nodes 2`: A as two nodes on one PostgreSQL the demo starts; each node
takes one of the two submissions, every receipt arrives once, and which node
did what, as the demo prints it, is what the shared store's log says.  That
test is skipped, saying why, only when PostgreSQL cannot be installed.
"""
import grp
import json
import os
import re
import subprocess
import tempfile
import unittest

from pectest import env, pecmail, postgres
from pectest import postfix as pf

ALWAYS = ["ricevuta di accettazione to the sender",
          "busta di trasporto for the ordinary address"]
NEED_RECEPTION = ["busta di trasporto for Luigi (To)",
                  "busta di trasporto for Anna (Cc)",
                  "presa in carico from B",
                  "avvenuta consegna completa for Luigi",
                  "avvenuta consegna sintetica for Anna"]


class DemoTest(unittest.TestCase):
    def test_start_then_stop(self):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        demo = os.path.join(env.SRC_DIR, "contrib", "demo.sh")
        with tempfile.TemporaryDirectory(prefix="pec-demo-") as d:
            run = os.path.join(d, "run")
            try:
                p = subprocess.run([demo, "start", "--dir", run, "--build", env.BUILD_DIR],
                                   capture_output=True, text=True, timeout=400)
                out = p.stdout + p.stderr
                print(out)
                self.check_start(run, p.returncode, p.stdout, out)
                self.assertTrue(pf.leftovers(run), "the demo keeps running after start")
                self.check_copy(os.path.join(run, "a", "pecmilter.conf"))
            finally:
                p = subprocess.run([demo, "stop", "--dir", run], capture_output=True,
                                   text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(p.stdout.count("stopped pecmilter"), 2, p.stdout)
            self.assertEqual(p.stdout.count("stopped Postfix"), 3, p.stdout)
            self.assertEqual(pf.leftovers(run), set())

    def check_copy(self, conf):
        """`pecctl store copy` moves A's SQLite store, as the demo filled it, to a private
        PostgreSQL, where `log verify`, `audit` and the log read as on the original."""
        if not postgres.have_postgres():
            print("store copy to PostgreSQL not checked: PostgreSQL is not installed")
            return
        pecctl = env.program("pecctl")
        with open(conf, encoding="utf-8") as f:
            text = f.read()
        store = re.search(r'^store = "([^"]+)";$', text, re.M).group(1)
        copy = conf + ".pg"

        def views(c):
            out = []
            for v in (("log", "verify"), ("audit",), ("log", "--json")):
                p = subprocess.run([pecctl, "-c", c] + list(v), capture_output=True, text=True,
                                   timeout=60)
                out.append((p.returncode, re.sub(r"\(\d+ s ago\)", "(ago)", p.stdout)))
            return out

        before = views(conf)
        self.assertEqual(before[0][0], 0, before[0])
        self.assertRegex(before[0][1], r"^log verify: OK: \d+ records")
        with postgres.Postgres() as pg:
            pg.createdb("pec")
            target = pg.conninfo("pec")
            p = subprocess.run([pecctl, "-c", conf, "store", "copy", store, target],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(copy, "w", encoding="utf-8") as f:
                f.write(text.replace('store = "%s";' % store,
                                     'store = "%s";\nshared_storage = "yes";' % target))
            after = views(copy)
        print(p.stdout.strip())
        for what, b, a in zip(("log verify", "audit", "log --json"), before, after):
            self.assertEqual(a, b, "pecctl %s differs on the PostgreSQL copy" % what)

    def check_start(self, run, rc, stdout, out):
        # the milter and LMTP sockets are pecmilter's and Postfix's alone (issue 17: a
        # world-writable LMTP socket let anyone store a message in a PEC mailbox)
        for n in ("a", "b"):
            for name in ("milter.sock", "lmtp.sock"):
                st = os.stat(os.path.join(run, n, "pecmilter", name))
                self.assertEqual(st.st_mode & 0o007, 0, "%s/%s is open to others" % (n, name))
                self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "postfix")
        self.assertRegex(stdout, r"== sent mario\.rossi@pec-a\.test -> luigi\.bianchi@pec-b\.test, "
                                 r"carlo\.neri@example\.org, anna\.verdi@pec-b\.test through A's "
                                 r"submission \(XCLIENT LOGIN=mario\.rossi@pec-a\.test\): 250 ")
        status = dict((what, flag) for flag, what in
                      re.findall(r"^   \[(ok|MISSING)\] (.*), in \S+$", stdout, re.M))
        self.assertEqual(sorted(status), sorted(ALWAYS + NEED_RECEPTION), out)
        for what in ALWAYS:
            self.assertEqual(status[what], "ok", out)
        # every message shown verifies; the accettazione is where the sender reads it
        self.assertNotIn("pecverify: invalid", stdout)
        self.assertRegex(stdout, r"mario\.rossi@pec-a\.test +ACCETTAZIONE: Contratto di fornitura\n"
                                 r" +X-Ricevuta: accettazione; pecverify: valid \(notice accettazione\)\n"
                                 r" +a/mail/mario\.rossi/new/\S+\n")
        self.assertRegex(stdout, r"carlo\.neri@example\.org +POSTA CERTIFICATA: Contratto di "
                                 r"fornitura\n +X-Trasporto: posta-certificata; pecverify: valid "
                                 r"\(busta posta-certificata\)\n")
        for f in ("pki/trust.pem", "index.ldif", "a/pecmilter.conf", "b/pecmilter.conf",
                  "a/pecmilter.log", "b/pecmilter.log"):
            self.assertTrue(os.path.isfile(os.path.join(run, f)), f)
        self.assertTrue(os.listdir(os.path.join(run, "a", "mail", "mario.rossi", "new")))
        self.assertIn("== running; stop with: contrib/demo.sh stop --dir %s" % run, stdout)

        self.assertEqual(rc, 0, out)
        for what in NEED_RECEPTION:
            self.assertEqual(status[what], "ok", out)
        self.assertNotIn("missing after", stdout)
        for box in ("b/mail/luigi.bianchi/new", "b/mail/anna.verdi/new", "a/mail/ricevute/new"):
            self.assertTrue(os.listdir(os.path.join(run, box)), box)
        # one accettazione and two consegne in Mario's mailbox
        self.assertEqual(len(os.listdir(os.path.join(run, "a", "mail", "mario.rossi", "new"))), 3)
        for who, kind in (("luigi.bianchi", "completa"), ("anna.verdi", "sintetica")):
            self.assertRegex(stdout, r"X-Ricevuta: avvenuta-consegna; pecverify: valid \(notice "
                                     r"avvenuta-consegna %s for %s@pec-b\.test\)" % (kind, who))
        self.assertRegex(stdout, r"ricevute@pec-a\.test +PRESA IN CARICO: Contratto di fornitura\n"
                                 r" +X-Ricevuta: presa-in-carico; pecverify: valid")
        # A's reception point recorded B's receipts (presa in carico, consegne) against Mario's transaction
        with open(os.path.join(run, "a", "pecmilter.log"), encoding="utf-8",
                  errors="replace") as f:
            log = f.read()
        self.assertEqual(len(re.findall(r"reception: .*notice avvenuta-consegna about our .*: "
                                        r"recorded", log)), 2, log)
        self.assertEqual(len(re.findall(r"reception: .*notice presa-in-carico about our .*: "
                                        r"recorded", log)), 1, log)


class DemoNodesTest(unittest.TestCase):
    def test_two_nodes(self):
        if not pf.have_postfix():
            env.skip("Postfix is not installed (t/check.sh installs it)")
        if not postgres.have_postgres():
            # demo.sh installs it: skip only when that cannot be done here
            p = subprocess.run([os.path.join(env.SRC_DIR, "contrib", "deps.sh"), "demo-nodes"],
                               capture_output=True, text=True, timeout=600)
            if not postgres.have_postgres():
                self.skipTest("PostgreSQL cannot be installed (contrib/deps.sh demo-nodes: "
                              "exit %d: %s)" % (p.returncode, (p.stdout + p.stderr).strip()))
        demo = os.path.join(env.SRC_DIR, "contrib", "demo.sh")
        with tempfile.TemporaryDirectory(prefix="pec-demo-") as d:
            run = os.path.join(d, "run")
            try:
                p = subprocess.run([demo, "start", "--nodes", "2", "--dir", run, "--build",
                                    env.BUILD_DIR], capture_output=True, text=True, timeout=400)
                out = p.stdout + p.stderr
                print(out)
                self.assertEqual(p.returncode, 0, out)
                self.check_nodes(run, p.stdout, out)
            finally:
                p = subprocess.run([demo, "stop", "--dir", run], capture_output=True,
                                   text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(p.stdout.count("stopped pecmilter"), 3, p.stdout)
            self.assertEqual(p.stdout.count("stopped Postfix"), 4, p.stdout)
            self.assertEqual(p.stdout.count("stopped PostgreSQL"), 1, p.stdout)
            self.assertEqual(pf.leftovers(run), set())

    def check_nodes(self, run, stdout, out):
        # the two nodes: one database, their own node_id, one storage
        confs = {}
        for node in (1, 2):
            with open(os.path.join(run, "a", "node%d" % node, "pecmilter.conf")) as f:
                confs[node] = dict(re.findall(r'(?m)^(\w+) = "?(.*?)"?;$', f.read()))
            self.assertEqual(confs[node]["node_id"], str(node))
            self.assertEqual(confs[node]["shared_storage"], "yes")
            for name in ("milter.sock", "lmtp.sock"):
                st = os.stat(os.path.join(run, "a", "node%d" % node, "pecmilter", name))
                self.assertEqual(st.st_mode & 0o007, 0, "node %d: %s is open to others"
                                 % (node, name))
        for key in ("store", "maildir_root", "seal_dir", "quarantine_dir"):
            self.assertEqual(confs[1][key], confs[2][key], key)
        self.assertIn("host=%s " % os.path.join(run, "pg"), confs[1]["store"])
        self.assertEqual(os.stat(os.path.join(run, "pg")).st_mode & 0o077, 0)

        # both nodes took a submission
        sent = re.findall(r"^== sent .* through A node (\d)'s submission \(XCLIENT "
                          r"LOGIN=mario\.rossi@pec-a\.test\): (\d+) .*; Subject: "
                          r"Contratto di fornitura \((\d)\)$", stdout, re.M)
        self.assertEqual(sent, [("1", "250", "1"), ("2", "250", "2")], out)

        # the whole chain of both, each receipt once
        status = dict((what, flag) for flag, what in
                      re.findall(r"^   \[(ok|MISSING)\] (.*), in \S+$", stdout, re.M))
        self.assertEqual(len(status), 14, out)
        self.assertEqual(set(status.values()), {"ok"}, out)
        self.assertNotIn("pecverify: invalid", stdout)
        counts = {"a/mail/mario.rossi": 6, "a/mail/ricevute": 2, "b/mail/luigi.bianchi": 2,
                  "b/mail/anna.verdi": 2, "ext/postfix/mail/example.org/carlo.neri": 2}
        files = {}
        for box, n in counts.items():
            files[box] = [os.path.join(box, sub, f) for sub in ("new", "cur")
                          for f in os.listdir(os.path.join(run, box, sub))
                          if not f.startswith(".")]
            self.assertEqual(len(files[box]), n, "%s: %s" % (box, files[box]))
        every = [f for box in counts for f in files[box]]
        conf1 = os.path.join(run, "a", "node1", "pecmilter.conf")
        p = subprocess.run([env.program("pecverify"), "-c", conf1, "--json"] +
                           [os.path.join(run, f) for f in every], capture_output=True,
                           text=True, timeout=120)
        reports = json.loads(p.stdout)
        seen = {}
        for f, r in zip(every, reports):
            self.assertTrue(r.get("valid"), (f, r))
            with open(os.path.join(run, f), "rb") as fh:
                m = pecmail.Message(fh.read())
            k = re.search(r"\((\d)\)$", m.header("Subject")).group(1)
            kind = m.header("X-Ricevuta") or m.header("X-Trasporto")
            # the identificativo (its daticert's) carries the node that took the submission
            self.assertRegex(r.get("identificativo") or "", r"^opec%s\." % k, (f, r))
            if kind == "accettazione":
                # ... and so does the Message-ID of the accettazione it generated
                self.assertRegex(m.header("Message-ID"), r"^<npec%s\." % k, f)
            seen.setdefault((k, kind, f.split("/new/")[0].split("/cur/")[0],
                             r.get("consegna")), []).append(f)
        self.assertEqual({k: v for k, v in seen.items() if len(v) > 1}, {})
        self.assertEqual(len(seen), sum(counts.values()))

        # what the demo printed, node by node, is what the shared store's log holds
        p = subprocess.run([env.program("pecctl"), "-c", conf1, "log", "--json"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        store = {}
        for line in p.stdout.splitlines():
            r = json.loads(line)
            store[int(r["seq"])] = (r["identificativo"], r["node"], r["evento"], r["tipo"],
                                    r["consegna"])
        printed = {}
        ident = None
        section = stdout[stdout.index("== which node did what"):]
        for line in section.splitlines()[1:]:
            m = re.match(r"^   message (\d): identificativo (\S+)$", line)
            if m:
                ident = m.group(2)
                self.assertTrue(ident.startswith("opec%s." % m.group(1)), line)
                continue
            m = re.match(r"^     #(\d+) node (\d+): (\S+) (\S+): ", line)
            if m:
                printed[int(m.group(1))] = (ident,) + m.groups()[1:]
            elif not line.startswith("     pecctl tx: ") and not line.startswith("   submissions"):
                break
        self.assertEqual(sorted(printed), sorted(store), section)
        for seq, (i, node, evento, tipo) in printed.items():
            self.assertEqual((i, node, evento, tipo), store[seq][:4], seq)
        # per message: the busta and the accettazione by its own node, one ricezione of
        # the presa in carico and of each consegna, at whichever node
        idents = sorted({r[0] for r in store.values()})
        self.assertEqual(len(idents), 2, store)
        for i in idents:
            node = re.match(r"opec(\d)\.", i).group(1)
            recs = [r for r in store.values() if r[0] == i]
            for tipo in ("posta-certificata", "accettazione"):
                self.assertEqual([r[1] for r in recs if r[2:4] == ("emissione", tipo)], [node])
            got = sorted((r[3], r[4]) for r in recs if r[2] == "ricezione")
            self.assertEqual(got, [("avvenuta-consegna", "anna.verdi@pec-b.test"),
                                   ("avvenuta-consegna", "luigi.bianchi@pec-b.test"),
                                   ("presa-in-carico", "")], i)
        took = ", ".join("message %s by node %s" % (k, k) for k in ("1", "2"))
        received = {}
        for r in store.values():
            if r[2] == "ricezione":
                received[r[1]] = received.get(r[1], 0) + 1
        self.assertIn("   submissions taken: %s; receipts from B received: %s\n" % (
            took, ", ".join("%d by node %s" % (n, k) for k, n in sorted(received.items()))),
            stdout)
        self.assertIn("pecctl tx: luigi.bianchi@pec-b.test delivered, carlo.neri@example.org "
                      "sent, anna.verdi@pec-b.test delivered", stdout)
        self.assertEqual(stdout.count("pecctl tx: "), 2, stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
