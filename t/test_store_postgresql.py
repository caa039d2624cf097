"""The daemon on a PostgreSQL store (t/pectest/postgres.py), through the
project's milter driver: a submission commits its transaction, log records
and accettazione to the database; with PostgreSQL stopped the next one is
deferred (451 4.3.0) and nothing of it is written; once PostgreSQL is back
the daemon reconnects by itself and accepts again, the registro one chain
(`pecctl log verify` on the database).  A second pecmilter with the same
node_id on the same database is refused at start; one with another node_id
runs beside it.  A PostgreSQL store is refused unless shared_storage says the
directories beside it are shared.  Skipped when PostgreSQL is not installed."""
import os
import subprocess
import tempfile
import unittest

from pectest import config, daemon, env, postgres

PECCTL = env.program("pecctl")


def message(n):
    return (b"From: Mario Rossi <mario@pec-a.test>\r\n"
            b"To: luigi@pec-b.test\r\n"
            b"Subject: prova %d\r\n"
            b"Date: Tue, 25 Nov 2025 10:00:00 +0100\r\n"
            b"Message-ID: <pg%d@client.pec-a.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n"
            b"Ciao.\r\n" % (n, n))


class PostgresqlStoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = postgres.Postgres()
        cls.pg.createdb("pec")

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def start(self, name, node_id):
        os.makedirs(os.path.join(self.tmp.name, name), exist_ok=True)
        conf = os.path.join(self.tmp.name, name, "pecmilter.conf")
        config.write(conf, "a", store=self.pg.conninfo("pec"), node_id=node_id,
                     shared_storage="yes", reinject="smtp:127.0.0.1:9",
                     roles={"pec-submission": "access", "pec-mx": "reception"})
        d = daemon.start(conf)
        self.addCleanup(d.stop)
        return conf, d

    def send(self, d, n):
        with d.milter() as m:
            m.filter_macros = False
            m.negotiate()
            return m.send_message(message(n), "<mario@pec-a.test>", ["<luigi@pec-b.test>"],
                                  connect_macros={"{daemon_name}": "pec-submission"},
                                  macros={"M": {"{auth_authen}": "mario@pec-a.test",
                                                "{tls_version}": "TLSv1.3"}})

    def count(self, table):
        return int(self.pg.query("pec", "SELECT count(*) FROM %s" % table)[0])

    def test_shared_storage_declared(self):
        """A PostgreSQL store without shared_storage = "yes" is refused: nothing can tell
        whether the seals', quarantine's and mailboxes' directories are shared."""
        conf = os.path.join(self.tmp.name, "pecmilter.conf")
        seals = os.path.join(self.tmp.name, "seals")
        config.write(conf, "a", store=self.pg.conninfo("pec"), seal_dir=seals)
        p = subprocess.run([env.program("pecmilter"), "-n", "-c", conf], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn("shared_storage: a PostgreSQL store wants seal_dir, quarantine_dir and "
                      "maildir_root (or mailbox_backend \"lmtp\")", p.stderr)
        config.write(conf, "a", store=self.pg.conninfo("pec"), seal_dir=seals,
                     shared_storage="yes")
        p = subprocess.run([env.program("pecmilter"), "-n", "-c", conf], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_submit_survive_restart_one_chain(self):
        conf, d = self.start("n1", 1)
        res = self.send(d, 1)
        self.assertEqual(res.reply.code, "continue", res.reply)
        self.assertEqual(self.count("transactions"), 1)
        outbox, records = self.count("outbox"), self.count("registro")
        self.assertGreaterEqual(outbox, 1)

        self.pg.stop_server()
        res = self.send(d, 2)
        self.assertEqual(res.reply.code, "replycode")
        self.assertTrue(res.reply.text.startswith("451 4.3.0 "), res.reply.text)
        self.pg.start()
        self.assertEqual((self.count("transactions"), self.count("outbox"),
                          self.count("registro")), (1, outbox, records))

        res = self.send(d, 3)
        self.assertEqual(res.reply.code, "continue", (res.reply, d.stderr()[-2000:]))
        self.assertEqual(self.count("transactions"), 2)
        p = subprocess.run([PECCTL, "-c", conf, "log", "verify"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"^log verify: OK: %d records " % self.count("registro"))
        self.assertEqual(self.pg.query("pec", "SELECT DISTINCT node FROM registro"), ["1"])

        # a second node with its own node_id works beside the first; one with the same is refused
        _, d2 = self.start("n2", 2)
        self.assertEqual(self.send(d2, 4).reply.code, "continue")
        self.assertEqual(sorted(self.pg.query("pec", "SELECT DISTINCT node FROM registro")),
                         ["1", "2"])
        # (its milter socket opens before the store: it exits once the claim has waited)
        try:
            _, d3 = self.start("n3", 1)
            self.assertEqual(d3.proc.wait(timeout=30), 73, d3.stderr()[-3000:])
            why = d3.stderr()
        except daemon.DaemonError as e:
            why = str(e)
        self.assertIn("node_id 1 is in use by another pecmilter", why)


if __name__ == "__main__":
    if not postgres.have_postgres():
        env.skip("PostgreSQL is not installed (contrib/deps.sh test)")
    unittest.main(verbosity=2)
