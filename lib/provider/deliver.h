/*
 * deliver - the delivery point (punto di consegna, pec-rules.md 2.4, 4.7,
 * 4.8): what becomes of one message Postfix hands over by LMTP.
 *
 * Every message is stored unchanged in each recipient's mailbox
 * (mailbox.h).  Only a busta di trasporto whose signature, signer and
 * structure verify (verify.h) earns receipts, one per recipient of ours:
 *
 *   stored          avvenuta consegna to the sender of the original (the
 *                   daticert mittente): completa or breve as the busta asks
 *                   (daticert <ricevuta>, else X-TipoRicevuta, else
 *                   completa) for a primary recipient, sintetica for one
 *                   that the original names only in Cc; the original is
 *                   the busta's own postacert.eml.  The Cc test reads the
 *                   To and Cc of postacert.eml, which the signature covers;
 *                   a recipient in both, or in neither, is primary.
 *   refused for     avviso di mancata consegna, errore no-dest (5.1.x),
 *   good            no-dominio (5.1.2: a domain we do not manage) or altro,
 *                   errore-esteso "<status> - <gestore> - <what>"; the MTA
 *                   gets 250, so no bounce doubles the avviso.
 *   refused for     4xx to the MTA, which retries; no receipt yet.
 *   now
 *
 * A receipt goes into the store's outbox in the same commit as the log
 * record of the delivery, after the mailbox has the message.  When that
 * commit (or building the receipt) fails, the MTA gets 4xx and delivers
 * again later: the receipt is never lost.
 *
 * Once per mailbox.  A PEC message whose signature verifies (a busta, a
 * receipt or avviso, a busta di anomalia) is delivered at most once into
 * each mailbox, keyed by its Message-ID: a provider's injector that crashed
 * between the MTA's 250 and recording it sends the same message (same
 * bytes, same Message-ID) again, and SMTP cannot tell it the first copy
 * arrived.  The store remembers (mailbox, Message-ID) (pec_store_delivered);
 * a second copy gets 250 "delivered already", is not stored and earns no
 * second receipt.  For a busta that record is committed together with the
 * receipt (consegna.h), for a notice or anomalia on its own after the
 * mailbox has it.  A kill between the mailbox write and that commit makes
 * the MTA deliver again; the Maildir backend then names the file after the
 * mailbox and Message-ID (mailbox.h) and finds it, so the retry stores
 * nothing new and queues the one receipt.  A notice's or anomalia's commit
 * that fails rather than being killed (the database went away after it said
 * the message was new) is the same with the Maildir backend: the MTA gets
 * 4xx, and the retry finds the file and records its deposit, so the log
 * never lacks it.  With the LMTP backend (Dovecot) the store record is the
 * only guard: a kill after the server's 250 and before our commit leaves a
 * second copy in that mailbox -- still one receipt, as the receipt commits
 * with the record -- and a notice's failed commit gets 250 and is logged as
 * a record lost (a retry would store a second copy).  Ordinary mail and
 * messages that do not verify are never deduplicated: their Message-ID is
 * vouched for by nobody, and honouring it would let one sender suppress
 * another's message.
 *
 * Everything else -- notices, buste di anomalia, ordinary mail, and a
 * message that claims to be a busta but does not verify -- is delivered
 * unchanged and never earns a receipt; a permanent mailbox failure is
 * passed to the MTA as 5xx, so it bounces the ordinary way.  A message
 * that cannot even be inspected (out of memory, unreadable spool) is
 * deferred as a whole.
 *
 * Every recipient gets one log line with the MTA's queue id (read from the
 * Received field its smtpd added) or the LMTP session name.
 */
#ifndef PEC_DELIVER_H
#define PEC_DELIVER_H

#include "provider/conf.h"
#include "message/index.h"
#include "util/lmtp.h"
#include "message/pecmsg.h"
#include "message/smime.h"
#include "store/store.h"

/* What a delivery needs; read-only, shared by every session using it. */
struct pec_dp_env {
    const struct pec_config *cfg;    /* domains, mailbox_* and maildir_* keys */
    const struct pec_issuer *issuer; /* who signs the receipts */
    const struct pec_trust *trust;
    const struct pec_index *index;
    struct pec_store *store;
    const char *hostname; /* ours, for the mailbox backend */
    pec_log_fn *log;      /* NULL: nowhere */
};

/* Deliver M and fill RES[0..m->nrcpt) with the LMTP reply for each recipient. */
void pec_dp_deliver(const struct pec_dp_env *env, const struct pec_lmtp_msg *m,
                    struct pec_lmtp_reply *res);

/* The queue id in the first Received field of HEAD ("... id 4TwXYZ1234 ..."), or "". */
void pec_dp_queue_id(const unsigned char *head, size_t len, char *out, size_t outlen);

#endif
