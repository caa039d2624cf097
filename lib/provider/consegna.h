/*
 * consegna - the receipts the delivery point owes for a verified busta:
 * avvenuta consegna (completa, breve, sintetica) and avviso di mancata
 * consegna, one per recipient, each queued with its log record in one
 * store commit (see deliver.h for when each is owed).
 *
 * pec_dp_busta_init() reads, once per message, what every receipt is made
 * of: the facts of the busta's daticert.xml, its postacert.eml (transfer
 * decoded if a peer encoded it), which recipients the original names only
 * in Cc, and the receipt type asked for.
 */
#ifndef PEC_CONSEGNA_H
#define PEC_CONSEGNA_H

#include <stddef.h>

#include "provider/deliver.h"
#include "provider/mailbox.h"
#include "message/original.h"
#include "util/spool.h"
#include "message/verify.h"

struct pec_dp_busta {
    const struct pec_inspection *ins; /* valid busta, with daticert and postacert */
    struct pec_spool *postacert;
    struct pec_original orig; /* postacert.eml's header: To and Cc */
    int have_orig;
    int *dest_cc;            /* per daticert destinatario: named only in Cc */
    enum pec_ricevuta asked; /* completa, breve or sintetica */
};

/*
 * Read B from INS, the inspection of MSG.  0, or -1 with err when the
 * postacert cannot be spooled (a temporary failure).
 */
int pec_dp_busta_init(struct pec_dp_busta *b, const struct pec_inspection *ins,
                      const unsigned char *msg, const char *spool_dir, char *err, size_t errlen);
void pec_dp_busta_free(struct pec_dp_busta *b);

/*
 * Build the receipt owed for RCPT, whose mailbox answered MB (stored or
 * refused for good), and commit it with its log record and, when
 * MESSAGE_ID (the busta's, no <>) is not NULL, the record that the busta
 * was dealt with for RCPT (pec_batch_delivered): one commit, so a busta
 * the MTA hands over again finds the record exactly when its receipt was
 * queued.  QID names the message in the log.  0 with a short description
 * in WHAT ("consegna-breve <message-id>"), or -1 with err.
 */
int pec_dp_receipt(const struct pec_dp_env *env, const struct pec_dp_busta *b, const char *qid,
                   const char *rcpt, const char *message_id, const struct pec_mbox_result *mb,
                   char *what, size_t whatlen, char *err, size_t errlen);

#endif
