"""pecctl on a store filled the way the daemon fills it (t/tools/injectord).

An untouched log verifies; a record changed, deleted or reordered in the
store file makes `pecctl log verify` fail and name it; daily seals verify
with `openssl cms -verify` and list the day's records; the retention purge
leaves a log that still verifies.  Queries filter by identificativo, sender,
recipient and time, as lines or JSON; `pecctl tx` shows recipients' states.
`pecctl store copy` moves the store, sealed and partly purged, to a private
PostgreSQL (t/pectest/postgres.py; skipped without one), where pecctl sees
the same log, chain, seals, audit, transactions and outbox.
"""
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from pectest import config, env, pki, postgres

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
PECCTL = env.program("pecctl")
# 2024-01-29 10:00:00 +0100; eight events six hours apart, two records each:
# Jan 29 events 0-2 (records 1-6), Jan 30 events 3-6 (7-14), Jan 31 event 7 (15-16)
START = 1706518800
STEP = 6 * 3600


class PecctlTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pectest-pecctl-")
        self.conf = os.path.join(self.tmp, "pecmilter.conf")
        self.db = os.path.join(self.tmp, "pecmilter.db")
        self.seals = os.path.join(self.tmp, "seals")
        self.write_conf()
        p = subprocess.run([INJECTORD, "-c", self.conf, "enqueue", "8",
                            "luigi@pec-b.test,anna@pec-b.test", "-p", "ev", "-a", str(START),
                            "-s", str(STEP)], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_conf(self, **kw):
        config.write(self.conf, "a", seal_dir=self.seals, **kw)

    def pecctl(self, *args):
        p = subprocess.run([PECCTL, "-c", self.conf] + list(args), capture_output=True,
                           text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def sql(self, statements):
        with contextlib.closing(sqlite3.connect(self.db)) as c:
            c.executescript(statements)
            c.commit()

    def restore(self, copy):
        """Put back a copy of the store file, leaving no WAL of the tampering behind."""
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.db + suffix)
        shutil.copy(copy, self.db)

    def verify_fails(self, pattern):
        rc, out, err = self.pecctl("log", "verify")
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out, r"^log verify: FAILED: " + pattern)
        return out

    def test_query(self):
        rc, out, err = self.pecctl("log")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 16)
        self.assertRegex(lines[1],
                         r"^2024-01-29 10:00:00 \+0100 #2 opec\.ev\.0@pec-a\.test: queueid=: "
                         r"tipo=accettazione \(Accettazione\): "
                         r"mittente=mario@pec-a\.test: destinatari=luigi@pec-b\.test "
                         r"\(certificato\), anna@pec-b\.test \(certificato\): oggetto=prova: "
                         r"message-id=ev\.0@pec-a\.test: gestore=Gestore A S\.p\.A\.: "
                         r"evento=emissione$")
        rc, out, _ = self.pecctl("log", "--id", "opec.ev.3@pec-a.test")
        self.assertEqual(len(out.splitlines()), 2)
        rc, out, _ = self.pecctl("log", "--recipient", "ANNA@pec-b.test", "--since",
                                 "2024-01-30", "--until", "2024-01-31")
        self.assertEqual(len(out.splitlines()), 8, out)     # Jan 30: events 3..6
        rc, out, _ = self.pecctl("log", "--sender", "nobody@pec-a.test")
        self.assertEqual((rc, out), (0, ""))
        rc, out, _ = self.pecctl("log", "--since", "2024-01-31", "--json")
        recs = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([r["seq"] for r in recs], [15, 16])
        self.assertEqual(recs[1]["label"], "Accettazione")
        self.assertEqual(recs[1]["time"], "2024-01-31T03:00:00Z")
        self.assertEqual(recs[1]["prev"], recs[0]["hash"])
        rc, out, err = self.pecctl("log", "--since", "yesterday")
        self.assertEqual(rc, 64)
        self.assertIn('"yesterday" is not a time', err)

    def test_tx_and_outbox(self):
        rc, out, _ = self.pecctl("tx", "opec.ev.1@pec-a.test")
        self.assertEqual(rc, 0)
        self.assertIn("mittente: mario@pec-a.test", out)
        self.assertRegex(out, r"  luigi@pec-b\.test \(certificato, To\): sent; sent 2024-01-29 "
                              r"16:00:00 \+0100, taken -, done -")
        self.assertRegex(out, r"  anna@pec-b\.test \(certificato, Cc\): sent")
        self.assertEqual(self.pecctl("tx", "nope")[0], 1)
        rc, out, _ = self.pecctl("outbox")
        self.assertEqual(rc, 0)
        self.assertIn("outbox: 8 waiting, 0 being sent, 0 sent, 0 failed", out)
        self.assertIn("#1 <ev.0@pec-a.test> accettazione opec.ev.0@pec-a.test, queued", out)

    def test_verify_and_tampering(self):
        rc, out, err = self.pecctl("log", "verify")
        self.assertEqual((rc, out), (0, "log verify: OK: 16 records (#1 to #16), 0 seals\n"), err)
        shutil.copy(self.db, self.db + ".orig")
        cases = [
            ("UPDATE registro SET oggetto = 'altro' WHERE seq = 7",
             r"record #7 \(opec\.ev\.3@pec-a\.test\) was changed"),
            ("UPDATE registro SET destinatari = 'x@y (esterno)' WHERE seq = 2",
             r"record #2 .* was changed"),
            ("DELETE FROM registro WHERE seq = 9", r"record #9 is missing"),
            ("UPDATE registro SET seq = 100 WHERE seq = 3; UPDATE registro SET seq = 3 "
             "WHERE seq = 4; UPDATE registro SET seq = 4 WHERE seq = 100",
             r"record #3 \(opec\.ev\.1@pec-a\.test\) does not follow record #2"),
            ("DELETE FROM registro WHERE seq >= 15", r"records #15 to #16 are missing"),
        ]
        for statements, pattern in cases:
            with self.subTest(statements):
                self.restore(self.db + ".orig")
                self.sql(statements)
                print("\n  %s\n  -> %s" % (statements, self.verify_fails(pattern).strip()), end="")
        self.restore(self.db + ".orig")
        self.assertEqual(self.pecctl("log", "verify")[0], 0)

    def test_seals(self):
        rc, out, err = self.pecctl("log", "seal")
        self.assertEqual(rc, 0, err)
        self.assertIn("3 day(s) sealed", out)
        files = sorted(os.listdir(self.seals))
        self.assertEqual(files, ["registro-20240129-1.p7m", "registro-20240130-7.p7m",
                                 "registro-20240131-15.p7m"])
        self.assertEqual(self.pecctl("log", "seal")[1], "log seal: 0 day(s) sealed in %s\n"
                         % self.seals)
        p = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in",
                            os.path.join(self.seals, files[1]), "-CAfile", pki.trust()],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"Verification successful", p.stderr)
        text = p.stdout.decode()
        self.assertTrue(text.startswith("pecmilter registro giornaliero\ngestore: Gestore A "
                                        "S.p.A.\ngiorno: 2024-01-30\nprimo: 7\nultimo: 14\n"), text)
        self.assertEqual(len(re.findall(r"(?m)^\d+ [0-9a-f]{64} 2024-01-30T", text)), 8)
        rc, out, _ = self.pecctl("log", "verify")
        self.assertEqual((rc, out), (0, "log verify: OK: 16 records (#1 to #16), 3 seals\n"))

        # a record changed together with its hash field
        shutil.copy(self.db, self.db + ".orig")
        self.sql("UPDATE registro SET oggetto = 'x', hash = '%s' WHERE seq = 6" % ("0" * 64))
        self.verify_fails(r"record #6 .* was changed")
        self.restore(self.db + ".orig")
        with open(os.path.join(self.seals, files[2]), "r+b") as f:
            f.seek(100)
            f.write(b"X")
        self.verify_fails(r"seal .*registro-20240131-15\.p7m was replaced or changed")

    def test_purge(self):
        self.assertEqual(self.pecctl("log", "seal")[0], 0)
        self.write_conf(retention_months=1, test_mode="yes")
        rc, out, err = self.pecctl("log", "purge")
        self.assertEqual((rc, out.splitlines()[0]),
                         (0, "log purge: 16 record(s) older than 1 months removed"), err)
        # the same job purges the virus store (nothing in it here)
        self.assertRegex(out.splitlines()[1], r"^log purge: 0 infected message\(s\) last seen "
                         r"over 30 months ago removed from /")
        self.assertEqual(os.listdir(self.seals), [])
        rc, out, _ = self.pecctl("log", "verify")
        self.assertEqual((rc, out), (0, "log verify: OK: no records, 0 seals\n"))
        # the chain goes on from the anchor kept by the purge
        p = subprocess.run([INJECTORD, "-c", self.conf, "enqueue", "2", "luigi@pec-b.test",
                            "-p", "later"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        rc, out, _ = self.pecctl("log", "verify")
        self.assertEqual((rc, out), (0, "log verify: OK: 4 records (#17 to #20), 0 seals\n"))
        self.sql("DELETE FROM registro WHERE seq = 17")
        self.verify_fails(r"record #17 is missing")

    def test_copy_to_postgresql(self):
        if not postgres.have_postgres():
            self.skipTest("PostgreSQL is not installed")
        self.assertEqual(self.pecctl("log", "seal")[0], 0)
        # the first day purged: the chain starts from an anchor, as on a provider's store
        self.write_conf(retention_months=1, test_mode="yes")
        self.sql("DELETE FROM seals WHERE first_seq > 1")
        self.assertEqual(self.pecctl("log", "purge")[0], 0)
        self.assertEqual(self.pecctl("log", "seal")[0], 0)
        views = [("log", "verify"), ("log", "--json"), ("audit",), ("outbox",),
                 ("tx", "ev3@pec-a.test")]
        def seen(v):  # what pecctl shows, without "(N s ago)", which moves on meanwhile
            rc, out, _ = self.pecctl(*v)
            return rc, re.sub(r"\(\d+ s ago\)", "(ago)", out)

        before = [seen(v) for v in views]
        self.assertEqual(before[0], (0, "log verify: OK: 10 records (#7 to #16), 2 seals\n"))
        with postgres.Postgres() as pg:
            pg.createdb("pec")
            target = pg.conninfo("pec")
            rc, out, err = self.pecctl("store", "copy", self.db, target)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"^store copy: %s -> %s: \d+ rows\n$" % (self.db, target))
            # a second copy into a store that holds something is refused, changing nothing
            rc, out, err = self.pecctl("store", "copy", self.db, target)
            self.assertEqual(rc, 1)
            self.assertIn("not empty", err)
            self.write_conf(retention_months=1, test_mode="yes", store=target,
                            shared_storage="yes")
            after = [seen(v) for v in views]
            for v, b, a in zip(views, before, after):
                self.assertEqual(a, b, "pecctl %s differs on the copy" % " ".join(v))
            # the copy goes on: new records chain after the copied head, new outbox ids follow
            p = subprocess.run([INJECTORD, "-c", self.conf, "enqueue", "2", "luigi@pec-b.test",
                                "-p", "later"], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            rc, out, _ = self.pecctl("log", "verify")
            self.assertEqual((rc, out), (0, "log verify: OK: 14 records (#7 to #20), 2 seals\n"))

    def test_store_errors(self):
        self.assertEqual(self.pecctl("frobnicate")[0], 64)
        rc, out, _ = self.pecctl("store", "check")
        self.assertEqual((rc, out.startswith("store check: ")), (0, True))
        missing = os.path.join(self.tmp, "none.db")
        self.write_conf(store=missing)
        rc, out, err = self.pecctl("log")
        self.assertEqual(rc, 74)
        self.assertEqual(err, "pecctl: store %s: cannot open: unable to open database file\n"
                         % missing)
        self.assertFalse(os.path.exists(missing))


if __name__ == "__main__":
    if not os.path.exists(INJECTORD) or not os.path.exists(PECCTL):
        env.skip("build injectord and pecctl first")
    pki.ensure()
    unittest.main(verbosity=2)
