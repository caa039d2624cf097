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


# The TMail PEC log line (pec-rules.md 8.1), read as its published tools read it
# (ULib's PEC_report): identificativo, then each field in this order, each one
# optional but never out of order; what follows the last of them is not theirs.
TMAIL_FIELDS = ("queueid", "tipo", "mittente", "destinatari", "oggetto", "message-id", "gestore",
                "tipo_ricevuta", "consegna", "ricezione", "errore", "virus", "errore-esteso")


def tmail_parse(line):
    """The fields of a log line in the TMail order, or raise ValueError."""
    ident, sep, rest = line.partition(": ")
    if not sep or not ident:
        raise ValueError("no identificativo: %r" % line)
    fields, i = {"identificativo": ident}, 0
    for chunk in re.split(r": (?=[a-z_-]+=)", rest):
        name, _, value = chunk.partition("=")
        while i < len(TMAIL_FIELDS) and TMAIL_FIELDS[i] != name:
            i += 1
        if i == len(TMAIL_FIELDS):
            break           # ours, after the format's own fields
        fields[name] = value
        i += 1
    for required in ("queueid", "tipo", "mittente", "destinatari"):
        if required not in fields:
            raise ValueError("no %s= where the format has it: %r" % (required, line))
    if not re.fullmatch(r"[a-z-]+ \([A-Za-z0-9]+\)", fields["tipo"]):
        raise ValueError("tipo= is not 'tipo (Label)': %r" % line)
    return fields


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

    def log_lines(self, conf, *args):
        p = subprocess.run([env.program("pecctl"), "-c", conf, "log"] + list(args),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        # "YYYY-MM-DD HH:MM:SS +ZZZZ #N " then the line the daemon sends to syslog
        return [re.sub(r"^\S+ \S+ \S+ #\d+ ", "", l) for l in p.stdout.splitlines()]

    def check_registro(self, ident):
        """Every record of both logs parses in the TMail field order; the events the
        rules name are there, field by field, with the gestore that signed them; the
        syslog copy is the same line; both logs still verify (issue 18)."""
        kinds = set()
        for conf in (self.conf_a, self.conf_b):
            for line in self.log_lines(conf):
                fields = tmail_parse(line)
                kinds.add(fields["tipo"])
                self.assertRegex(line, r": evento=(emissione|ricezione|deposito)(: |$)")
            p = subprocess.run([env.program("pecctl"), "-c", conf, "log", "verify"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for tipo in ("posta-certificata (BustaTrasporto)", "accettazione (Accettazione)",
                     "presa-in-carico (PresaInCarico)", "avvenuta-consegna (Consegna)",
                     "errore-consegna (MancataConsegna)"):
            self.assertIn(tipo, kinds)
        b = [tmail_parse(l) for l in self.log_lines(self.conf_b, "--id", ident)]
        received = [f for f in b if f["tipo"] == "posta-certificata (BustaTrasporto)"]
        self.assertEqual(len(received), 1, b)
        self.assertEqual(received[0]["gestore"], "Gestore A S.p.A.")      # who signed it
        self.assertEqual(received[0]["mittente"], MARIO)
        self.assertEqual(received[0]["destinatari"],
                         "%s (certificato), %s (certificato)" % (LUIGI, ANNA))
        self.assertEqual(received[0]["message-id"], ident)
        self.assertEqual(sorted(received[0]["ricezione"].split(", ")), sorted([LUIGI, ANNA]))
        self.assertRegex(received[0]["queueid"], r"^[0-9A-Z]+$")
        presa = [f for f in b if f["tipo"] == "presa-in-carico (PresaInCarico)"]
        self.assertEqual([f["gestore"] for f in presa], ["Gestore B S.p.A."])
        a = self.log_lines(self.conf_a, "--id", ident)
        acc = [l for l in a if "tipo=accettazione (Accettazione)" in l and "=emissione" in l]
        self.assertEqual(len(acc), 1, a)
        self.assertIn(": evento=emissione: client-msgid=<", acc[0])
        self.assertIn(": node=1", acc[0])
        # notices put into A's mailboxes: each with its deposit record
        deposits = [tmail_parse(l) for l in a if ": evento=deposito" in l]
        self.assertEqual(sorted(f["tipo"] for f in deposits),
                         ["accettazione (Accettazione)", "avvenuta-consegna (Consegna)",
                          "avvenuta-consegna (Consegna)", "presa-in-carico (PresaInCarico)"])
        # the syslog copy (the daemon's stderr here) is the line itself, no queue id before it
        stderr = self.daemons["b"].stderr()
        self.assertIn("pecmilter[info]: " + self.log_lines(self.conf_b, "--id", ident)[0],
                      stderr)

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

        self.check_registro(ident)

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
