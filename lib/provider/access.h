/*
 * access - what the access point decides about a submission (pec-rules.md
 * 2.2, 4.1, 4.3-4.5, 9), with no MTA in sight: the milter glue
 * (milter/access.c) feeds it the SMTP envelope and the message and applies
 * what it returns.
 *
 * Two moments.  At MAIL FROM, pec_access_sender() says whether the client
 * may use that sender at all: authenticated, sender in one of our PEC
 * domains, and the sender is the login or an address `sender_logins` lets
 * it use.  A refusal there is plain SMTP (no PEC processing has started, so
 * no notice is owed).  At end of message, pec_access_formal() runs the
 * formal checks of 2.2 in the order the rules list them and names the first
 * that fails.  Before them pec_access_scan() asks the antivirus
 * (provider/antivirus.h): an infected message is refused like a formal error,
 * with the avviso di non accettazione per virus, and one that could not be
 * scanned gets a plain SMTP refusal per on_scan_error, never a busta.  Then
 * either pec_access_accept() or pec_access_refuse() prepares everything the
 * event causes:
 *
 *   accepted: the busta di trasporto (headers and signed body, applied to
 *             the message in place by the glue), and a store batch holding
 *             the transaction with its recipients (certificato/esterno from
 *             the providers' index), the log records (busta created,
 *             accettazione emitted, presa in carico emitted), the ricevuta di
 *             accettazione to the sender, and, when some recipients are ours,
 *             the presa in carico a receiving provider would send, addressed
 *             to our own receipt_address (same-provider mail gets every step
 *             of the rules, 2.5);
 *   refused:  a batch with the avviso di non accettazione to the sender
 *             (the error in its text and errore-esteso) and its log record;
 *             the glue commits it and rejects the SMTP transaction with the
 *             same words (pec_access_reply), so the user sees them at once.
 *   infected: refused so, with the avviso di non accettazione per virus
 *             (X-VerificaSicurezza: errore, errore="virus", the finding in
 *             its text and errore-esteso, the original not attached), the
 *             message kept in the quarantine before anything is committed,
 *             and the record's virus field naming the finding and the
 *             quarantine's SHA-256 of it; no busta, no transaction.
 *
 * Each outcome is one instant (the issuer's clock) shared by everything it
 * produces, and one batch, so the store records the event and queues the
 * receipts it owes in one commit, or neither.
 *
 * A resubmission is not a new message.  The batch is committed before the
 * MTA hears the milter's answer, so a crash in between leaves an accepted
 * transaction (its accettazione queued) while the MTA answers the client
 * 4xx and drops the busta; the client then submits the same message again.
 * So when the store (pec_access_env.store) holds a transaction that the
 * same sender opened within deadline_after for the same client Message-ID,
 * with the same recipients (To and Cc alike), subject and tipo_ricevuta,
 * pec_access_accept() takes the submission for a retry of it: the busta is
 * built again with that transaction's identificativo and instant, so the
 * busta that leaves is the one its accettazione announced, and nothing else
 * is prepared: no second transaction, accettazione, presa in carico or log
 * record (OUT->resubmission says so, and the batch is empty).  Should the
 * first busta have left after all, the receiving provider gets the same
 * busta twice; its reception point sends no second presa in carico for it
 * and its delivery point stores one copy per mailbox, with one receipt.
 * A client makes a new Message-ID for every new message, so a message sent
 * again on purpose with the same Message-ID is taken for the same message
 * too: it goes out again, and earns no second receipt.  A message without a
 * Message-ID is always new.  Two copies submitted at the same moment (the
 * second before the first is committed) are two transactions: a client
 * retries only after an answer.  A refusal is alike: the store keeps, per
 * sender and client Message-ID, the last one (its identificativo, subject,
 * errore-esteso and instant), and pec_access_refuse() takes a submission
 * refused within deadline_after for the same subject and reason for its
 * retry: the same refusal, no second avviso di non accettazione or record
 * (OUT->resubmission, empty batch).
 *
 * Recipients are the SMTP envelope's (RCPT TO): To and Cc only tell primary
 * from carbon copy.  They are listed To first, then Cc, each in RCPT order;
 * an address in both counts as To ("if ambiguous treat as primary").
 *
 * Reply texts are ASCII (SMTP replies are), Italian then English; the
 * Italian part, written without accented letters, is also the description in
 * errore-esteso and in the notice.  Addresses quoted from the message lose
 * any byte that is not printable ASCII.
 */
#ifndef PEC_ACCESS_H
#define PEC_ACCESS_H

#include <stddef.h>
#include <time.h>

#include "provider/antivirus.h"
#include "provider/conf.h"
#include "message/daticert.h"
#include "message/index.h"
#include "message/original.h"
#include "message/pecmsg.h"
#include "store/store.h"

enum pec_access_fault {
    PEC_ACCESS_OK,
    /* at MAIL FROM: plain SMTP refusals */
    PEC_ACCESS_NOT_TLS, /* the session is not encrypted */
    PEC_ACCESS_NOT_AUTHENTICATED,
    PEC_ACCESS_NULL_SENDER,
    PEC_ACCESS_FOREIGN_SENDER,  /* not one of our PEC domains */
    PEC_ACCESS_NOT_YOUR_SENDER, /* the login may not use that sender */
    /* at end of message, plain SMTP: the antivirus could not tell (on_scan_error) */
    PEC_ACCESS_UNSCANNED,
    /* at end of message: formal errors, avviso di non accettazione */
    PEC_ACCESS_FROM_MISSING,
    PEC_ACCESS_FROM_MULTIPLE,
    PEC_ACCESS_FROM_INVALID,
    PEC_ACCESS_TO_MISSING,
    PEC_ACCESS_TO_INVALID,
    PEC_ACCESS_FROM_MISMATCH, /* MAIL FROM is not the From address */
    PEC_ACCESS_RCPT_NOT_IN_HEADER,
    PEC_ACCESS_BCC,
    PEC_ACCESS_TOO_BIG,
    /* at end of message: what could not travel intact, refused the same way */
    PEC_ACCESS_HEADER_TOO_BIG,  /* header section over PEC_HEADER_MAX */
    PEC_ACCESS_FIELD_TOO_BIG,   /* one field over PEC_ACCESS_FIELD_MAX */
    PEC_ACCESS_TOO_MANY_FIELDS, /* more than PEC_HEADER_FIELDS_MAX fields */
    PEC_ACCESS_NUL,             /* a NUL byte */
    PEC_ACCESS_LINE_TOO_LONG,   /* a line over PEC_LINE_MAX octets */
    PEC_ACCESS_NOT_7BIT,        /* 8-bit content that cannot be made 7-bit (sevenbit.h) */
    /* at end of message: the antivirus found something; avviso di non accettazione per virus */
    PEC_ACCESS_VIRUS,
};

/*
 * The longest header field, in bytes, the access point certifies.  Postfix,
 * when milters are on, keeps at most 60,000 bytes of any field and drops the
 * rest without a word, before a milter sees it (cleanup's workaround for
 * the milter library's 64 KB requests): what it leaves of a longer field is
 * over 54,000 bytes, so a field over this limit may have been cut and is
 * refused instead.  It also keeps the busta's Subject, re-encoded (raw 8-bit bytes
 * come out 3.4 times as long at worst), within the 64 KB a milter may ask
 * the MTA to add.
 */
#define PEC_ACCESS_FIELD_MAX 16384

/* short stable name of a fault ("bcc", "too-big"), for logs and tests */
const char *pec_access_fault_name(enum pec_access_fault f);

struct pec_access_reply {
    enum pec_access_fault fault;
    const char *rcode; /* "553", "550", "552" */
    const char *xcode; /* enhanced status code, "5.7.1" */
    char errore[400];  /* Italian description, ASCII: errore-esteso and the notice */
    char text[600];    /* the SMTP reply text: Italian, then English in parentheses */
    char virus[256];   /* PEC_ACCESS_VIRUS: the finding, as the antivirus named it */
};

/*
 * At MAIL FROM, first: a user's submission comes over TLS (pec-rules.md 8.5).
 * TLS_VERSION is the MTA's {tls_version} (NULL or "" on a cleartext session);
 * LOOPBACK says the client connected from this machine, which
 * submission_cleartext = "loopback" lets through in the clear.  0 when the
 * session may submit; -1 with R (530 5.7.0) otherwise.
 */
int pec_access_channel(const struct pec_config *cfg, const char *tls_version, int loopback,
                       struct pec_access_reply *r);

/*
 * At MAIL FROM: LOGIN is {auth_authen} (NULL or "" when the client did not
 * authenticate), MAIL_FROM the reverse-path as given (angle brackets
 * allowed).  0 when the sender may submit; -1 with R filled otherwise.
 */
int pec_access_sender(const struct pec_config *cfg, const char *login, const char *mail_from,
                      struct pec_access_reply *r);

/*
 * The formal checks of 2.2 on O (envelope included): exactly one valid From
 * address; To with valid addresses; no Bcc value; MAIL FROM equal to the
 * From address; every RCPT TO in To or Cc; size times the number of
 * recipients at most SIZE_LIMIT bytes.  0 when all pass; -1 with R naming
 * the first that fails (Bcc comes before the envelope checks, which a Bcc
 * recipient would fail too, less clearly).
 *
 * Around them, what would keep the busta from arriving as it was signed, or
 * postacert.eml from being the message byte for byte: first what makes the
 * header unreliable to read or impossible to rewrite (a header section over
 * PEC_HEADER_MAX, a field over PEC_ACCESS_FIELD_MAX, which the MTA may have
 * cut, more than PEC_HEADER_FIELDS_MAX fields, a NUL byte), last a
 * line over RFC 5322's 998 octets, which an MTA folds in transit.  None of
 * these is cured by sending again: 550 or 552 with 5.6.0, naming the field
 * or the line, and the avviso di non accettazione, like any formal error.
 */
int pec_access_formal(const struct pec_original *o, long long size_limit,
                      struct pec_access_reply *r);

/*
 * The antivirus on O, per CFG, into AV (for the log).  0: clean, or
 * antivirus "none"; go on with pec_access_formal().  -1 with R:
 * PEC_ACCESS_VIRUS (554 5.7.1 naming the finding: refuse it with
 * pec_access_refuse()) or PEC_ACCESS_UNSCANNED (451 4.7.0, or 554 5.7.0 with
 * on_scan_error = "reject": a plain SMTP refusal, nothing to commit).  A
 * header section cut at PEC_HEADER_MAX is not the message: the caller
 * refuses it by pec_access_formal() without scanning.
 */
int pec_access_scan(const struct pec_config *cfg, const struct pec_original *o,
                    struct pec_av_result *av, struct pec_access_reply *r);

/* A recipient of the transaction as the access point classified it. */
struct pec_access_rcpt {
    char *address;
    int certificato; /* its domain is in the providers' index (or is ours) */
    int cc;          /* in Cc and not in To */
    int ours;        /* its domain is one of our PEC domains */
};

struct pec_access_rcpts {
    struct pec_access_rcpt *v;
    size_t n;
};

/* O's RCPT TO, To then Cc, classified with INDEX and CFG.  Free with pec_access_rcpts_free. */
void pec_access_classify(const struct pec_original *o, const struct pec_index *index,
                         const struct pec_config *cfg, struct pec_access_rcpts *out);
void pec_access_rcpts_free(struct pec_access_rcpts *r);

/* Who decides: one per runtime, read-only. */
struct pec_access_env {
    const struct pec_issuer *iss;
    const struct pec_config *cfg; /* provider_name, domains, receipt_address, deadline_after */
    const struct pec_index *index;
    struct pec_store *store; /* where a resubmission is looked up; NULL: every message is new */
};

/* What an outcome prepared; release with pec_access_outcome_free(). */
struct pec_access_outcome {
    char *identificativo; /* of the busta, or of the refused message */
    time_t when;
    int resubmission; /* the retry of transaction identificativo, accepted at WHEN: batch empty */
    struct pec_access_rcpts rcpts;
    struct pec_built busta;         /* accepted: what the message becomes; empty when refused */
    struct pec_batch *batch;        /* for pec_store_commit() */
    char quarantined[PEC_HASH_HEX]; /* refused for a virus: its quarantine ID; else "" */
    /* private: the generated messages the batch borrows until it is committed */
    struct pec_access_blob {
        unsigned char *p;
        size_t n;
    } blobs[2];
    size_t n_blobs;
};

/*
 * O passed the formal checks: build the busta di trasporto and the batch
 * described above, or, for a resubmission, the busta again and an empty
 * batch.  QUEUE_ID: the MTA's, for the records ("" when unknown).  0, or -1
 * with err (store error included; nothing to commit, OUT empty).
 */
int pec_access_accept(const struct pec_access_env *e, const struct pec_original *o,
                      const char *queue_id, struct pec_access_outcome *out, char *err,
                      size_t errlen);

/*
 * O failed the formal check R: the avviso di non accettazione and its
 * record, or, for the retry of a refusal, an empty batch.  A subject that
 * could not travel itself (its field too long, holding a NUL or a line too
 * long) is quoted in the avviso shortened, ending in " [...]".  For
 * PEC_ACCESS_VIRUS, O is kept in the quarantine first (a retry too: the same
 * bytes are one entry) and the avviso is the one per virus.
 */
int pec_access_refuse(const struct pec_access_env *e, const struct pec_original *o,
                      const struct pec_access_reply *r, const char *queue_id,
                      struct pec_access_outcome *out, char *err, size_t errlen);

void pec_access_outcome_free(struct pec_access_outcome *out);

#endif
