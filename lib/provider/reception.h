/*
 * reception - what the reception point (punto di ricezione, pec-rules.md
 * 2.3, 4.2, 4.6, 6.3, 9) decides about a message arriving from outside, with
 * no MTA in sight: the milter glue (milter/reception.c) feeds it the SMTP
 * envelope and the message and applies what it returns.
 *
 * pec_inspect() says what the message is; then:
 *
 *   valid busta di trasporto   passes unchanged; a ricevuta di presa in
 *                              carico to the signer's mailReceipt (from the
 *                              index) covers every recipient of this SMTP
 *                              transaction in one of our domains, one
 *                              <ricezione> each, queued with its log record.
 *                              A busta signed by ourselves (mailReceipt is
 *                              our receipt_address) owes nothing here: the
 *                              access point queued that presa in carico.
 *                              A busta certifies the certified destinatari
 *                              of its daticert and no one else: sent to an
 *                              address of ours it does not so name, it is
 *                              a busta di anomalia, with no presa in carico.
 *   valid busta, infected      not passed on: kept in the quarantine, one
 *   (the antivirus found       avviso di rilevazione virus per recipient
 *   something in it)           of ours to the signer's mailReceipt, each
 *                              with its log record (virus field: the
 *                              finding and the quarantine's SHA-256), no
 *                              presa in carico; the glue commits, then
 *                              discards the message, so the MTA answers
 *                              250 and no bounce doubles the notice.  A
 *                              recipient a rilevazione was emitted for
 *                              already (the busta sent again) gets none.
 *   valid notice               passes unchanged, never answered.  When its
 *                              identificativo is one of our transactions,
 *                              the recipient's state moves (presa in carico:
 *                              taken; avvenuta consegna: delivered; errore
 *                              consegna: failed) and the event is logged,
 *                              direction ricezione.  A rilevazione virus
 *                              about a recipient still awaiting its outcome
 *                              (or past our 24 h notice) also makes it
 *                              failed and queues, to our user, the avviso
 *                              di mancata consegna per virus, its facts
 *                              taken from the notice (the finding from its
 *                              errore-esteso), with its record: a batch
 *                              that expects the recipient as it was read
 *                              (pec_store_commit() then returns 1 when a
 *                              receipt came meanwhile: decide again).  A
 *                              notice is believed
 *                              only from the provider that manages the
 *                              address it reports on (the recipient's for
 *                              presa in carico, consegna, mancata consegna
 *                              and rilevazione virus; the mittente's for
 *                              the 12 h / 24 h notices and the mancata
 *                              consegna per virus): from any other it is a
 *                              busta di anomalia and moves nothing.
 *   valid busta di anomalia    passes unchanged: never wrapped twice.
 *   signed by a listed         busta di anomalia (in place: the glue keeps
 *   provider, signature good,  the fields pec_anomalia_keeps() accepts and
 *   but not well formed (or    adds ours, body replaced), logged.
 *   its From domain is not
 *   the signer's)
 *   anything else: ordinary    the `ordinary_mail` policy: anomaly (wrap as
 *   mail (unsigned, unknown    above) or reject (554 5.7.1, the reason in the
 *   signer, bad signature,     reply); never unchanged.  Bounces and DSNs
 *   broken chain)              are ordinary mail.
 *
 * Everything that would pass or be wrapped, notices apart, is scanned by the
 * antivirus (provider/antivirus.h) first: a notice carries nothing but our
 * own user's original, which our access point scanned.  Infected mail that
 * is not a valid busta (ordinary mail, an anomaly, a busta sent to someone
 * it does not name) is refused with 554 5.7.1 naming the finding, no PEC
 * notice and no quarantine: its sender still holds it.  A message nobody
 * could scan is refused per on_scan_error (451, or 554), never passed on.
 *
 * A message that should become a busta di anomalia but has more header fields
 * than the MTA can delete (PEC_HEADER_FIELDS_MAX, original.h) is refused
 * instead, 552 5.6.0, and recorded as refused ordinary mail is.
 *
 * No notice is ever emitted about a notice or an anomaly.  A message that
 * cannot be inspected now (pec_inspect temporary) or a store that fails is
 * an internal error: -1 with err, the glue answers per on_internal_error.
 *
 * pec_inspect() wants the message in memory: a message spooled to a file
 * (larger than the spool's memory limit) is read back into one buffer for
 * the inspection, so a 30 MB message costs 30 MB of heap while it is
 * inspected.
 */
#ifndef PEC_RECEPTION_H
#define PEC_RECEPTION_H

#include <stddef.h>

#include "provider/conf.h"
#include "message/index.h"
#include "message/original.h"
#include "message/pecmsg.h"
#include "message/smime.h"
#include "util/spool.h"
#include "store/store.h"

/* Who decides: one per runtime, read-only but for the store. */
struct pec_rp_env {
    const struct pec_issuer *iss;
    const struct pec_config *cfg; /* domains, receipt_address, ordinary_mail */
    const struct pec_trust *trust;
    const struct pec_index *index;
    struct pec_store *store; /* our transactions, for notices about them */
};

enum pec_rp_action {
    PEC_RP_PASS,     /* the message goes on unchanged */
    PEC_RP_ANOMALIA, /* the message becomes OUT->anomalia */
    PEC_RP_REJECT,   /* the SMTP transaction is refused: rcode (4xx: for now), xcode, text */
    PEC_RP_DISCARD,  /* the MTA takes the message (250) and drops it, once the batch is in */
};

struct pec_rp_outcome {
    enum pec_rp_action action;
    const char *what;          /* "busta", "notice", "anomalia", "malformed", "ordinary", "virus" */
    char summary[1024];        /* one line for the log: what was found and what was done */
    struct pec_built anomalia; /* PEC_RP_ANOMALIA: headers and signed body */
    struct pec_batch *batch;   /* NULL: nothing to commit; else for pec_store_commit() */
    const char *rcode;         /* PEC_RP_REJECT */
    const char *xcode;
    char text[600];
    /* private: the notice bytes the batch borrows until it is committed */
    struct pec_spool **blobs;
    size_t n_blobs;
};

/*
 * Decide about O (the message as received with its SMTP envelope).
 * QUEUE_ID: the MTA's, for the records.  0 with OUT filled (release with
 * pec_rp_outcome_free), or -1 with err and OUT empty.
 */
int pec_rp_decide(const struct pec_rp_env *e, const struct pec_original *o, const char *queue_id,
                  struct pec_rp_outcome *out, char *err, size_t errlen);

void pec_rp_outcome_free(struct pec_rp_outcome *out);

#endif
