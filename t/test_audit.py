"""pecctl audit on the logs of a real two-provider exchange (the setup of
test_e2e_exchange: A and B on private Postfix, B delivering through Dovecot).

A user of A writes to B (To and Cc), to a missing mailbox of B and within A;
once every receipt is in, `pecctl audit` finds nothing wrong on either
provider, nothing pending, and exits 0.  Then a second, different consegna
for one recipient is appended to A's log (through the store, so the chain
stays sound): audit names that transaction and recipient and exits 1, as
lines and as JSON.
"""
import json
import os
import re
import subprocess
import time
import unittest

import test_e2e_exchange as exchange
from pectest import env, pki

PECRECORD = os.path.join(env.BUILD_DIR, "t", "tools", "pecrecord")
MARIO, GIULIA, LUIGI, ANNA = exchange.MARIO, exchange.GIULIA, exchange.LUIGI, exchange.ANNA


class AuditE2E(exchange.ExchangeE2E):
    """Only the setup is inherited: the exchange's own tests run in their own file."""

    def audit(self, conf, *args):
        p = subprocess.run([env.program("pecctl"), "-c", conf, "audit"] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def settled(self, conf, timeout=60):
        """Audit CONF until nothing is pending (receipts still travelling)."""
        deadline = time.monotonic() + timeout
        while True:
            rc, out, err = self.audit(conf, "--json")
            self.assertIn(rc, (0, 1), err)
            report = json.loads(out)
            if report["pending"] == 0 or time.monotonic() > deadline:
                return rc, report
            time.sleep(0.5)

    def test_audit(self):
        self.submit(exchange.message("Audit A B", to=LUIGI, cc=ANNA), [LUIGI, ANNA])
        self.submit(exchange.message("Audit nessuno", to="nessuno@pec-b.test"),
                    ["nessuno@pec-b.test"])
        self.submit(exchange.message("Audit A A", to=GIULIA), [GIULIA])
        busta = self.find(LUIGI, rb"Audit A B")
        ident = busta.header("Message-ID").strip("<>")
        self.wait_state(ident, r"anna@pec-b\.test \(certificato, Cc\): delivered")
        self.find(MARIO, rb"Subject: AVVISO DI MANCATA CONSEGNA: Audit nessuno")
        self.find(MARIO, rb"Subject: CONSEGNA: Audit A A")

        for name, conf, txs in (("A", self.conf_a, 3), ("B", self.conf_b, 2)):
            rc, report = self.settled(conf)
            self.assertEqual((rc, report["violations"], report["pending"]), (0, 0, 0),
                             "%s: %s" % (name, report))
            self.assertEqual(report["transactions"], txs, "%s: %s" % (name, report))
            rc, out, _ = self.audit(conf)
            self.assertEqual(rc, 0, out)
            self.assertRegex(out, r"^audit: \d+ records, %d transactions checked, 0 pending, "
                             r"0 violations, 0 notes\n$" % txs)

        # a second outcome, with its own Message-ID, for luigi
        p = subprocess.run([PECRECORD, "-c", self.conf_a, "MancataConsegna", "ricezione", ident,
                            "message_id=forged.%s" % ident, "consegna=" + LUIGI],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        rc, out, _ = self.audit(self.conf_a)
        self.assertEqual(rc, 1, out)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertTrue(lines[0].startswith("%s: %s: 2 final outcomes: consegna <" % (ident, LUIGI)),
                        out)
        self.assertIn("mancata consegna <forged.%s>" % ident, lines[0])
        self.assertRegex(lines[1], r", 1 violations, 0 notes$")
        rc, out, _ = self.audit(self.conf_a, "--json")
        self.assertEqual(rc, 1, out)
        report = json.loads(out)
        self.assertEqual(report["violations"], 1)
        self.assertEqual([(v["identificativo"], v["level"]) for v in report["problems"]],
                         [(ident, "violation")])
        self.assertEqual(report["notes"], 0)
        # the other provider's log is untouched
        self.assertEqual(self.audit(self.conf_b)[0], 0)


# the inherited tests of the exchange belong to test_e2e_exchange.py
for _name in [n for n in dir(exchange.ExchangeE2E) if n.startswith("test_")]:
    setattr(AuditE2E, _name, None)

if __name__ == "__main__":
    pki.ensure()
    unittest.main(verbosity=2)
