/*
 * store - pecmilter's durable state: PEC transactions and their recipients,
 * the outbox of generated messages owed to the MTA, and the legal log.
 *
 * Writes go through a batch: the caller collects everything one event
 * causes (a transaction opened, recipients' states moved, receipts or
 * notices to send, log records) and pec_store_commit() applies all of it in
 * one store transaction, or none of it.  That is the promise the rest of
 * pecmilter builds on: a receipt is in the outbox exactly when the event
 * that owes it is recorded, so a crash can lose neither alone.  A batch is
 * plain memory; nothing is locked while it is being built.
 *
 * The outbox is drained by one injector per node (inject.h): it claims a
 * due row (state "sending"), hands the bytes to the MTA, and marks the row
 * sent, deferred or failed.  Rows left "sending" by a crash are put back
 * (pec_store_outbox_recover) and sent again with the same bytes, so the
 * same Message-ID; with several nodes on one database, a row a dead node
 * left "sending" is claimed by another once its lease has run out.
 *
 * Everything here is backend-neutral: the embedded backend is SQLite (one
 * file, WAL, busy timeout 5 s, schema versioned with forward migrations);
 * several nodes of one provider share a PostgreSQL database instead (db_int.h
 * and pg.c say how the promises hold across nodes).  A store handle may be
 * used by any number of threads; calls are serialised inside.
 *
 * Faults (file unwritable, disk full, database corrupt or locked past the
 * busy timeout; on PostgreSQL the server unreachable or restarting) make a
 * call return -1 with one line in err naming the store and the cause; the
 * caller answers the MTA with a temporary failure.  The handle then reopens
 * the file, or connects again, on its next call, so it works again once the
 * cause is gone.  It never recreates a store file that has disappeared.
 */
#ifndef PEC_STORE_H
#define PEC_STORE_H

#include <stddef.h>
#include <time.h>

#include "store/registro.h"

struct pec_store;
struct pec_batch;

/* Where the store's own lines go (registro lines after each commit). */
typedef void pec_log_fn(int prio, const char *qid, const char *text);

/* pec_store_open flags */
#define PEC_STORE_NOCREATE 1 /* the store must exist: for pecctl, never create one */
#define PEC_STORE_CHECK 2    /* run a full integrity check on open */

/*
 * Open (creating it unless NOCREATE) the store SPEC: a file path, optionally
 * written "sqlite:/path", or a PostgreSQL database, as a URL
 * ("postgresql://user@host/db") or a libpq connection string ("host=...
 * dbname=..."); the database itself must exist, its tables are created
 * unless NOCREATE.  Migrates an older schema forward; refuses a newer one.
 * NULL with one line in err on failure.
 */
struct pec_store *pec_store_open(const char *spec, int flags, char *err, size_t errlen);
void pec_store_close(struct pec_store *st);

/* The file SPEC names (without "sqlite:"), or NULL when it names a PostgreSQL database. */
const char *pec_store_file(const char *spec);

/* SPEC as logs and errors may show it: a password in it hidden.  The caller frees it. */
char *pec_store_display(const char *spec);

/*
 * How long a call waits for a lock another connection holds before it fails
 * "database is locked" (default 5000 ms).
 */
void pec_store_set_busy_timeout(struct pec_store *st, int ms);

/* After each commit, each appended record's line goes to FN (LOG_INFO, no qid: the line has it). */
void pec_store_set_log(struct pec_store *st, pec_log_fn *fn);

/* NODE (this daemon's node_id, as text) is written into every record appended from now on. */
void pec_store_set_node(struct pec_store *st, const char *node);

/*
 * Make NODE (node_id) this handle's for as long as it is open: on
 * PostgreSQL, where several nodes share the store, -1 with err when another
 * live pecmilter holds the same node_id (two nodes with one id would take
 * each other's outbox rows for their own after a restart); the claim is
 * taken again after a reconnect.  On SQLite, whose file one node has, 0.
 */
int pec_store_claim_node(struct pec_store *st, long long node, char *err, size_t errlen);

/* FN(ARG) is called after a commit that added outbox rows (the injector's wake-up). */
void pec_store_set_outbox_hook(struct pec_store *st, void (*fn)(void *), void *arg);

/*
 * Copy every row of FROM into TO, which holds none yet (a store just
 * created), in one transaction of TO: the registro with its chain and the
 * seals, the outbox with its ids and bytes, transactions, recipients, the
 * delivery point's and the access point's memories.  Either backend to
 * either.  0 and *ROWS the rows copied, or -1 with err and TO unchanged.
 */
int pec_store_copy(struct pec_store *from, struct pec_store *to, long long *rows, char *err,
                   size_t errlen);

/* Full integrity check now: 0 when sound, -1 with the first problem in err. */
int pec_store_check(struct pec_store *st, char *err, size_t errlen);

/*
 * A job one node at a time runs for the provider (the daily seal and
 * purge): take NAME for NODE until UNTIL unless another node holds it at
 * NOW.  1: NODE holds it (again); 0: another node does; -1 with err.
 */
int pec_store_job_take(struct pec_store *st, const char *name, long long node, time_t now,
                       time_t until, char *err, size_t errlen);
/* NODE is done with NAME: another node may take it at once.  0, or -1 with err. */
int pec_store_job_done(struct pec_store *st, const char *name, long long node, char *err,
                       size_t errlen);

/* ---------------------------------------------------------------- transactions */

enum pec_rcpt_state {
    PEC_RCPT_SENT,      /* busta sent, nothing heard yet */
    PEC_RCPT_TAKEN,     /* presa in carico received */
    PEC_RCPT_DELIVERED, /* avvenuta consegna received */
    PEC_RCPT_FAILED,    /* mancata consegna received */
    PEC_RCPT_TIMEDOUT,  /* 24 h notice emitted */
};

/* "sent", "taken", "delivered", "failed", "timedout" */
const char *pec_rcpt_state_name(enum pec_rcpt_state s);

struct pec_tx_rcpt {
    const char *address;
    int certificato; /* 1: PEC mailbox, 0: esterno */
    int cc;          /* 1: from Cc:, 0: from To: */
};

struct pec_tx {
    const char *identificativo;
    const char *client_msgid; /* the Message-ID the user's client gave */
    const char *mittente;
    const char *oggetto;
    const char *tipo_ricevuta; /* completa, breve, sintetica */
    const char *queue_id;      /* MTA queue id of the submission */
    time_t submitted;
    const struct pec_tx_rcpt *rcpt;
    size_t nrcpt;
    const char *risposte; /* the busta's risposte: the original's Reply-To, else mittente */
};

struct pec_rcpt_info {
    char *address;
    int certificato;
    int cc;
    enum pec_rcpt_state state;
    time_t sent_at;
    time_t taken_at;  /* 0: not yet */
    time_t done_at;   /* delivered, failed or timed out; 0: not yet */
    char *detail;     /* errore-esteso or the like of the last change */
    time_t warned_at; /* as in struct pec_pending_rcpt */
};

struct pec_tx_info {
    char *identificativo;
    char *client_msgid;
    char *mittente;
    char *risposte; /* "" for a transaction recorded before it was kept */
    char *oggetto;
    char *tipo_ricevuta;
    char *queue_id;
    time_t submitted;
    struct pec_rcpt_info *rcpt;
    size_t nrcpt;
};

/* 1 and *OUT filled (free with pec_tx_info_free), 0 when unknown, -1 with err. */
int pec_store_tx_get(struct pec_store *st, const char *identificativo, struct pec_tx_info *out,
                     char *err, size_t errlen);
void pec_tx_info_free(struct pec_tx_info *tx);

/*
 * The latest transaction MITTENTE (case-insensitive) opened at or after
 * SINCE for the client Message-ID CLIENT_MSGID (exactly as recorded, angle
 * brackets included): 1 and *OUT filled, 0 when none (always 0 for an empty
 * or NULL CLIENT_MSGID), -1 with err.  The access point's test for a
 * resubmission (access.h).
 */
int pec_store_tx_find_client(struct pec_store *st, const char *mittente, const char *client_msgid,
                             time_t since, struct pec_tx_info *out, char *err, size_t errlen);

/* ---------------------------------------------------------------- batches */

/* A generated message owed to the MTA; envelope sender is the service address. */
struct pec_outmsg {
    const char *message_id; /* without angle brackets; unique in the outbox */
    const char *identificativo;
    const char *tipo; /* what it is: accettazione, avvenuta-consegna, ... */
    const char *const *rcpt;
    size_t nrcpt;
    const unsigned char *data; /* the whole message, CRLF */
    size_t len;
};

struct pec_batch *pec_batch_new(void);
void pec_batch_free(struct pec_batch *b);

/* Open a transaction with its recipients, all in state sent at TX->submitted. */
void pec_batch_tx(struct pec_batch *b, const struct pec_tx *tx);

/*
 * Move a recipient (ADDRESS NULL: every recipient of the transaction) to
 * STATE at WHEN.  States only move forward (sent, taken, then one of the
 * three final ones); a move backwards or between final states is ignored,
 * so a late presa in carico cannot undo a consegna.  An unknown transaction
 * or recipient changes nothing.
 */
void pec_batch_rcpt_state(struct pec_batch *b, const char *identificativo, const char *address,
                          enum pec_rcpt_state state, time_t when, const char *detail);

/* Queue a message for the MTA.  Strings are copied; DATA is borrowed until commit or free. */
void pec_batch_outbox(struct pec_batch *b, const struct pec_outmsg *m);

/* Append a log record (strings copied; seq, prev and hash are the store's). */
void pec_batch_record(struct pec_batch *b, const struct pec_record *r);

/*
 * Make B conditional: when it is committed, the recipient must still be in
 * one of STATES (a set of 1 << enum pec_rcpt_state) and, with UNWARNED, have
 * no 12 h notice recorded (PEC_WARN_OWED is none); otherwise nothing of B
 * is applied.  So a notice built from what the store said a moment ago is
 * never queued after a receipt that arrived meanwhile made it wrong.
 */
void pec_batch_expect(struct pec_batch *b, const char *identificativo, const char *address,
                      unsigned states, int unwarned);

/*
 * Apply B atomically.  0; 1 when an expectation (pec_batch_expect) does not
 * hold, nothing applied; or -1 with err and nothing applied (B unchanged,
 * so the caller may retry it).  Duplicate identificativo or Message-ID is an
 * error.
 */
int pec_store_commit(struct pec_store *st, struct pec_batch *b, char *err, size_t errlen);

/* ---------------------------------------------------------------- deadlines */

/*
 * A certified recipient still awaiting its outcome (state sent or taken), or
 * one whose 12 h notice is owed although a receipt came (warned_at
 * PEC_WARN_OWED, any state: its first receipt came after the 12 h).
 */
struct pec_pending_rcpt {
    const char *identificativo;
    const char *client_msgid;
    const char *mittente;
    const char *oggetto;
    const char *tipo_ricevuta;
    const char *address;
    int cc;
    enum pec_rcpt_state state;
    time_t sent_at;
    time_t warned_at; /* the 12 h notice was emitted then; 0: not yet; PEC_WARN_OWED */
};

/* warned_at of a recipient owed the 12 h notice after its first receipt (scheduler.h). */
#define PEC_WARN_OWED ((time_t)-1)

/*
 * Call FN on every certified recipient in state sent or taken, or marked
 * PEC_WARN_OWED, whose sent_at is < SENT_BEFORE (0: no bound), ordered by
 * sent_at then identificativo (an index's order: the walk costs what it
 * reads); strings live until FN returns; FN must not call the store; FN
 * returning non-zero stops the walk and is returned.  -1 with err on a
 * store error.
 */
int pec_store_pending_each(struct pec_store *st, time_t sent_before,
                           int (*fn)(const struct pec_pending_rcpt *r, void *arg), void *arg,
                           char *err, size_t errlen);

/*
 * Record that the 12 h notice for this recipient was emitted at WHEN (in the
 * batch): only for one in state sent or taken, or marked, with none
 * recorded.  WHEN PEC_WARN_OWED marks instead that the notice is owed (any
 * state), unless one was recorded already.
 */
void pec_batch_rcpt_warned(struct pec_batch *b, const char *identificativo, const char *address,
                           time_t when);

/* ---------------------------------------------------------------- delivery point dedupe */

/*
 * Was the message MESSAGE_ID (no angle brackets) already delivered into
 * MAILBOX (the recipient address, compared case-insensitively)?  1 yes, 0 no,
 * -1 with err.
 */
int pec_store_delivered(struct pec_store *st, const char *mailbox, const char *message_id,
                        char *err, size_t errlen);

/* Remember, in the batch, that MESSAGE_ID went into MAILBOX at WHEN (duplicates are not an error).
 */
void pec_batch_delivered(struct pec_batch *b, const char *mailbox, const char *message_id,
                         time_t when);

/* ---------------------------------------------------------------- access point refusals */

/* A submission the access point refused, with its avviso di non accettazione. */
struct pec_refusal {
    char *identificativo; /* the avviso's */
    char *oggetto;
    char *errore; /* the avviso's errore-esteso */
    time_t when;
};

/*
 * The last refusal of the client message CLIENT_MSGID from MITTENTE at or
 * after SINCE: 1 and OUT filled (free with pec_refusal_free), 0 none, -1
 * with err.
 */
int pec_store_refused(struct pec_store *st, const char *mittente, const char *client_msgid,
                      time_t since, struct pec_refusal *out, char *err, size_t errlen);

/* Remember, in the batch, the refusal R of CLIENT_MSGID from MITTENTE (it replaces an older one).
 */
void pec_batch_refused(struct pec_batch *b, const char *mittente, const char *client_msgid,
                       const struct pec_refusal *r);

void pec_refusal_free(struct pec_refusal *r);

/* ---------------------------------------------------------------- outbox */

enum pec_outbox_state {
    PEC_OUT_QUEUED,  /* waiting for its next attempt */
    PEC_OUT_SENDING, /* claimed by an injector */
    PEC_OUT_SENT,    /* the MTA said 250: its bytes are dropped soon after */
    PEC_OUT_FAILED,  /* the MTA refused it for good; waits for pecctl outbox retry */
};

const char *pec_outbox_state_name(enum pec_outbox_state s);

struct pec_outbox_row {
    long long id;
    char *message_id;
    char *identificativo;
    char *tipo;
    char **rcpt;
    size_t nrcpt;
    unsigned char *data; /* only from pec_store_outbox_claim */
    size_t len;
    enum pec_outbox_state state;
    time_t created;
    time_t next_attempt;
    time_t sent_at;
    int attempts;
    int doubts; /* times it was found "sending" after an unclean stop */
    char *last_error;
    char *mta_queue_id;
};

void pec_outbox_row_free(struct pec_outbox_row *row);

/*
 * How long a claimed row is its node's (seconds): longer than one delivery
 * to the MTA may take with every SMTP timeout of the injector (inject.c)
 * running out in turn.  When several nodes share the store, a row another
 * node claimed and left "sending" (it died) is claimed again once its
 * lease has run out, never before, and sent with the same bytes.
 */
#define PEC_OUTBOX_LEASE 3600

/*
 * Claim for NODE the oldest row whose lease ran out at NOW, else the oldest
 * queued row due at NOW.  1: *ROW filled (bytes included) and the row is
 * "sending", leased until NOW + PEC_OUTBOX_LEASE; 0: none due, *NEXT_DUE is
 * the earliest next attempt of a queued row or 0 when none is queued; -1
 * with err.
 */
int pec_store_outbox_claim(struct pec_store *st, time_t now, long long node,
                           struct pec_outbox_row *row, time_t *next_due, char *err, size_t errlen);

/* The MTA took row ID at NOW (MTA_QID: its queue id or ""; NOTE: e.g. refused recipients). */
int pec_store_outbox_sent(struct pec_store *st, long long id, time_t now, const char *mta_qid,
                          const char *note, char *err, size_t errlen);
/* Temporary failure: back to queued, next attempt at NEXT. */
int pec_store_outbox_defer(struct pec_store *st, long long id, time_t now, time_t next,
                           const char *why, char *err, size_t errlen);
/* Permanent refusal: failed, kept for the operator. */
int pec_store_outbox_fail(struct pec_store *st, long long id, time_t now, const char *why,
                          char *err, size_t errlen);
/* Put NODE's rows left "sending" by a crash back in the queue; returns how many, -1 on error. */
int pec_store_outbox_recover(struct pec_store *st, long long node, char *err, size_t errlen);
/* The MTA could not be reached: WHY becomes last_error of every queued row due at NOW. */
int pec_store_outbox_note(struct pec_store *st, time_t now, const char *why, char *err,
                          size_t errlen);
/*
 * Drop the bytes of sent rows (their Message-ID, times and queue id stay).
 * Kept apart from marking a row sent, which must be as quick as it can be.
 * Returns how many rows were tidied, -1 on error.
 */
int pec_store_outbox_tidy(struct pec_store *st, char *err, size_t errlen);
/* Failed row ID (0: every failed row) back to queued, due at NOW; returns how many, -1 on error. */
int pec_store_outbox_requeue(struct pec_store *st, long long id, time_t now, char *err,
                             size_t errlen);

struct pec_outbox_stats {
    long long count[4];  /* by enum pec_outbox_state */
    long long oldest_id; /* oldest row not sent, 0: none */
    time_t oldest_created;
};

int pec_store_outbox_stats(struct pec_store *st, struct pec_outbox_stats *out, char *err,
                           size_t errlen);

/*
 * Call FN on every row whose state bit (1 << state) is in STATES, oldest
 * first, without the bytes; FN returning non-zero stops the walk.  0, or -1.
 * FN must not call the store.
 */
int pec_store_outbox_each(struct pec_store *st, unsigned states,
                          int (*fn)(const struct pec_outbox_row *row, void *arg), void *arg,
                          char *err, size_t errlen);

/* ---------------------------------------------------------------- the log */

struct pec_log_filter {
    const char *identificativo; /* exact, or NULL */
    const char *mittente;       /* address, case-insensitive, or NULL */
    const char *destinatario;   /* one of the destinatari, case-insensitive, or NULL */
    time_t since;               /* at >= since; 0: no bound */
    time_t until;               /* at < until; 0: no bound */
    long long from_seq;         /* seq >= from_seq; 0: from the first */
    long long to_seq;           /* seq <= to_seq; 0: to the last */
};

/*
 * Call FN on the records matching F (NULL: all) in seq order; the record's
 * strings live until FN returns; FN returning non-zero stops the walk and is
 * returned.  -1 with err on a store error.  The walk holds the handle: FN
 * must not call the store.
 */
int pec_store_log_each(struct pec_store *st, const struct pec_log_filter *f,
                       int (*fn)(const struct pec_record *r, void *arg), void *arg, char *err,
                       size_t errlen);

/*
 * Where the chain starts and ends: records up to *PURGED_SEQ were purged and
 * PURGED_HASH is the hash of the last of them (64 zeros when none was);
 * *HEAD_SEQ is the last record appended (0: none) and HEAD_HASH its hash.
 */
int pec_store_log_bounds(struct pec_store *st, long long *purged_seq,
                         char purged_hash[PEC_HASH_HEX], long long *head_seq,
                         char head_hash[PEC_HASH_HEX], char *err, size_t errlen);

/* A daily seal, as recorded beside the records. */
struct pec_seal {
    char day[11]; /* "YYYY-MM-DD", local */
    char *file;   /* file name in seal_dir */
    long long first_seq;
    long long last_seq;
    char last_hash[PEC_HASH_HEX];
    char file_sha256[PEC_HASH_HEX];
    time_t sealed_at;
};

int pec_store_seal_add(struct pec_store *st, const struct pec_seal *s, char *err, size_t errlen);

/*
 * Seals in first_seq order; FN may use the store; FN returning non-zero
 * stops and is returned.  -1 on error.
 */
int pec_store_seals_each(struct pec_store *st, int (*fn)(const struct pec_seal *s, void *arg),
                         void *arg, char *err, size_t errlen);

/*
 * Remove the records up to THROUGH_SEQ (which must end a seal), the seals
 * they make up, the sent outbox rows, the finished transactions and the
 * delivery point's dedupe entries older than BEFORE; the hash of record
 * THROUGH_SEQ becomes the anchor.  0, or -1.
 */
int pec_store_log_purge(struct pec_store *st, long long through_seq, time_t before, char *err,
                        size_t errlen);

#endif
