/*
 * audit - check one provider's legal log against the invariants a PEC
 * log auditor checks (pec-rules.md §5.2, the ULib PEC_report_anomalie rules).
 *
 * One provider's log holds two kinds of transaction, told apart by what the
 * provider recorded about them:
 *
 * - its own (sender side): it emitted the busta di trasporto and the
 *   ricevuta di accettazione, or an avviso di non accettazione, and it
 *   records the receipts other providers send back.  Every accepted message
 *   has exactly one busta and one accettazione; every certified recipient
 *   appears in exactly one presa in carico and has exactly one final
 *   outcome: consegna, mancata consegna (for virus too) or the 24 h notice
 *   (which also excuses a missing presa in carico).  Every rilevazione virus
 *   received for a recipient pairs with exactly one mancata consegna per
 *   virus, which is its outcome and, too, excuses the presa in carico: a
 *   busta found infected is never taken in charge (pec-rules.md 2.3).  A
 *   refused message (for a virus too) has neither busta nor accettazione.
 *
 * - another provider's (receiving side): it emitted a presa in carico for
 *   the busta and a consegna or mancata consegna per recipient, or, for a
 *   busta its antivirus stopped, a rilevazione virus per recipient, which
 *   is then that recipient's outcome, with no presa in carico.  Each
 *   recipient of a presa in carico appears in exactly one and has exactly
 *   one outcome; no outcome without a presa in carico.
 *
 * For both: no receipt or notice refers to a notice;
 * receipts go only to the recipients the busta names as certificato (on the
 * receiving side, the destinatari our presa in carico recorded), never to an
 * esterno one or one it does not name.  A busta di anomalia is no
 * transaction; one whose Message-ID (kept from whatever it wrapped, so
 * anyone's choice) is a busta's identificativo is reported as a note: an
 * imitation, which must not have counted as the busta.
 *
 * Receipts are counted by Message-ID: the same receipt recorded twice (sent
 * again after a crash, or emitted here and received back here because
 * sender and recipient are both ours) is one receipt; two different final
 * outcomes for one recipient are a violation, but for one: a consegna
 * (or mancata consegna, for a virus too) recorded after our 24 h notice is
 * a late one, which the rules allow (the message may still be delivered
 * after the final notice), and is reported as a note, not a violation.  Two consegne, or a consegna
 * and a mancata consegna, stay violations, before or after the notice; so does a 24 h notice
 * recorded after a consegna.  A recipient still inside the deadline (DEADLINE_AFTER seconds after
 * the busta or the presa in carico) without its outcome or presa in carico is pending, not a
 * violation.
 *
 * Addresses compare without case.  The 12 h and 24 h notices and every
 * consegna name their recipient(s) in the consegna field, a presa in carico
 * in ricezione ("a@x, b@y").
 */
#ifndef PEC_AUDIT_H
#define PEC_AUDIT_H

#include <stddef.h>
#include <time.h>

struct pec_store;

struct pec_audit_opts {
    time_t since;             /* only transactions whose first record is at >= SINCE; 0: all */
    time_t now;               /* what "still inside the deadline" is measured against */
    long long deadline_after; /* seconds an outcome may take (deadline_after in
                                 the config) */
};

struct pec_audit_report {
    long long records;      /* log records read */
    long long transactions; /* transactions checked (both sides) */
    long long pending;      /* of those, still waiting inside their deadline */
    long long violations;   /* problems reported */
    long long notes;        /* findings reported that are no violation */
};

enum pec_audit_level {
    PEC_AUDIT_VIOLATION, /* the log breaks a rule */
    PEC_AUDIT_NOTE,      /* allowed, but worth knowing: a late consegna */
};

/* One finding about the transaction IDENTIFICATIVO, as one line of text. */
typedef void pec_audit_fn(const char *identificativo, enum pec_audit_level level,
                          const char *problem, void *arg);

/*
 * Read the whole log and call FN once per finding, transactions in the order
 * of their first record.  Returns the number of violations (also in REP;
 * notes do not count), or -1 with err when the store could not be read.
 */
long long pec_audit_run(struct pec_store *st, const struct pec_audit_opts *o, pec_audit_fn *fn,
                        void *arg, struct pec_audit_report *rep, char *err, size_t errlen);

#endif
