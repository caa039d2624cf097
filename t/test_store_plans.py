"""No store statement on the daemon's path walks a table's whole history.

The tables that grow with every message (transactions, recipients, outbox,
registro, delivered, refused) hold months of rows on a provider's store.  A
statement the daemon runs per message or per idle moment must reach its rows
through an index that narrows them: a walk over every row ever stored costs
more with each day, and the daemon holds the store while it runs (the
injector's tidy did so each time the outbox emptied: 5 ms a call after 4,700
submissions, growing without end).

Every SQL statement of the store (lib/store/db*.c, shared with PostgreSQL, and
sqlite.c), taken from the preprocessed sources (so the column-list macros are
expanded) with the dialect's tokens expanded as the SQLite driver does, is planned by SQLite against a store
the real code made (t/tools/injectord), with EXPLAIN QUERY PLAN.  A step that
scans one of those tables (other than through a partial index, which holds
only rows still in play), or that searches the outbox for the rows in state
'sent' (nearly all of them), fails the test, except for the statements listed
in MAINTENANCE, which run once a day or at an operator's request and read what
they must.
"""
import contextlib
import glob
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

from pectest import config, env, pki

INJECTORD = os.path.join(env.BUILD_DIR, "t", "tools", "injectord")
STORE = os.path.join(env.SRC_DIR, "lib", "store")
# db_copy.c builds its statements at run time (pecctl store copy reads every row, on request)
SOURCES = sorted([p for p in glob.glob(os.path.join(STORE, "db*.c"))
                  if not p.endswith("db_copy.c")] + [os.path.join(STORE, "sqlite.c")])
GROWING = ("transactions", "recipients", "outbox", "registro", "delivered", "refused")

# statement prefix -> why it may read what it reads
MAINTENANCE = {
    "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?":
        "the daily retention purge",
    "SELECT state, count(*) FROM outbox GROUP BY state":
        "pecctl status and pecctl outbox count every row, on request",
    "SELECT id, message_id, identificativo, tipo, rcpt, state, created, next_attempt, "
    "sent_at, attempts, doubts, last_error, mta_queue_id, size FROM outbox ORDER BY id":
        "pecctl outbox lists every row, on request",
    "SELECT seq, at, evento, tipo, label, identificativo, queue_id, mittente, destinatari, "
    "oggetto, message_id, gestore, tipo_ricevuta, consegna, ricezione, errore, virus, "
    "errore_esteso, prev, hash, client_msgid, node, form FROM registro WHERE ?1 IS NULL":
        "pecctl log, log verify, audit and the daily seal read the log in order",
}


def sqlite_tokens():
    """The SQLite driver's words for the dialect's {tokens} (sq_tokens in sqlite.c)."""
    with open(os.path.join(STORE, "sqlite.c")) as f:
        text = f.read()
    table = text[text.index("sq_tokens[] = {"):]
    table = table[:table.index("};")]
    return dict(re.findall(r'\{"([^"]+)", "([^"]*)"\}', table))


def statements():
    found = set()
    tokens = sqlite_tokens()
    for source in SOURCES:
        found |= source_statements(source)
    return sorted(re.sub(r"\{([a-z_ ]+)\}", lambda m: tokens[m.group(1)], s) for s in found)


def source_statements(source):
    p = subprocess.run(["cc", "-E", "-P", "-I", os.path.join(env.SRC_DIR, "lib"), source],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError("cc -E %s failed:\n%s" % (source, p.stderr))
    found = set()
    for m in re.finditer(r'((?:"(?:[^"\\\n]|\\.)*"\s*)+)', p.stdout):
        s = "".join(re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(1))).replace('\\"', '"')
        if re.match(r"(SELECT|UPDATE|DELETE|INSERT)\b.*\b(FROM|INTO|SET)\b", s):
            found.add(s)
    return found


def plan(db, sql):
    """EXPLAIN QUERY PLAN of sql, its parameters all NULL."""
    numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
    n = max(numbered) if numbered else len(re.findall(r"\?", sql))
    for k in range(n, n + 8):
        try:
            return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, [None] * k)]
        except sqlite3.ProgrammingError:
            continue
    raise AssertionError("cannot plan: %s" % sql)


class StorePlans(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pectest-plans-")
        conf = os.path.join(self.tmp, "pecmilter.conf")
        config.write(conf, "a", seal_dir=os.path.join(self.tmp, "seals"))
        p = subprocess.run([INJECTORD, "-c", conf, "enqueue", "2", "luigi@pec-b.test"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.db = os.path.join(self.tmp, "pecmilter.db")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_no_walk_over_history(self):
        stmts = statements()
        self.assertGreater(len(stmts), 30, "too few statements found in %s" % SOURCES)
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            partial = {name for name, sql in db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'")}
            self.assertIn("outbox_kept", partial)
            bad = []
            for sql in stmts:
                if any(sql.startswith(k) for k in MAINTENANCE):
                    continue
                for step in plan(db, sql):
                    m = re.match(r"(SCAN|SEARCH) (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+))?",
                                 step)
                    if not m:
                        continue
                    verb, table, index = m.groups()
                    if table in ("r", "t"):      # aliases in the scheduler's join
                        table = {"r": "recipients", "t": "transactions"}[table]
                    if table not in GROWING or index in partial:
                        continue
                    if verb == "SCAN" or (table == "outbox" and "state = 'sent'" in sql and
                                          re.search(r"\(state=\?\)$", step)):
                        bad.append("%s\n      plan: %s" % (sql, step))
            self.assertFalse(bad, "statements that walk a table's history:\n  " +
                             "\n  ".join(bad))
        for k in MAINTENANCE:
            self.assertTrue(any(s.startswith(k) for s in stmts),
                            "MAINTENANCE names a statement the store no longer has: %s" % k)


if __name__ == "__main__":
    if not os.path.exists(INJECTORD):
        env.skip("build injectord first")
    pki.ensure()
    unittest.main(verbosity=2)
