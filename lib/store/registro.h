/*
 * registro - the legal log (registro dei log, pec-rules.md §8.1).
 *
 * One record per event: a busta created or received, a receipt or notice
 * emitted or received, an anomaly, a virus, a timeout.  A record carries the
 * fields of the TMail PEC log line (identificativo, queueid, tipo with its
 * label, mittente, destinatari with certificato/esterno, oggetto, the
 * Message-ID of the generated message, gestore, tipo_ricevuta, consegna,
 * ricezione, errore, virus, errore-esteso) plus its instant and whether we
 * emitted or received what it is about.
 *
 * Records are appended by the store (pec_batch_record), which numbers them
 * 1, 2, 3... and chains them: each record carries the SHA-256 of the previous
 * one and its own SHA-256 over every field, its number and that link.  So a
 * record changed, deleted, inserted or moved breaks the chain at that record.
 * Nobody holds a secret for the chain itself: someone who can write the store
 * can recompute it.  What cannot be recomputed without the provider's key are
 * the daily seals: pec_registro_seal() writes each finished day's records to
 * a CMS signed file (.p7m, DER, content attached) and pec_registro_verify()
 * checks the chain, every seal's signature, and that the store still holds
 * exactly what each seal says.  The retention purge removes whole sealed days
 * older than the retention period, oldest first, and keeps the hash of the
 * last removed record as the anchor the remaining chain starts from, so what
 * remains still verifies.
 *
 * Days are local days of the process time zone (TZ, set by pec_clock_init).
 */
#ifndef PEC_REGISTRO_H
#define PEC_REGISTRO_H

#include <stddef.h>
#include <time.h>

#include "message/smime.h"

struct pec_store;

/* What a record is about: the tipo and label of the TMail log line. */
enum pec_reg_kind {
    PEC_REG_BUSTA_TRASPORTO, /* posta-certificata (BustaTrasporto) */
    PEC_REG_BUSTA_ANOMALIA,  /* busta-anomalia (BustaAnomalia) */
    PEC_REG_ACCETTAZIONE,
    PEC_REG_NON_ACCETTAZIONE,
    PEC_REG_NON_ACCETTAZIONE_VIRUS,
    PEC_REG_PRESA_IN_CARICO,
    PEC_REG_CONSEGNA,
    PEC_REG_MANCATA_CONSEGNA,
    PEC_REG_MANCATA_CONSEGNA_VIRUS,
    PEC_REG_MANCATA_CONSEGNA_12H, /* preavviso-errore-consegna, 4.x.x errore-esteso */
    PEC_REG_MANCATA_CONSEGNA_24H, /* preavviso-errore-consegna, 5.x.x errore-esteso */
    PEC_REG_RILEVAZIONE_VIRUS,
    PEC_REG_POSTA_ORDINARIA, /* posta-ordinaria (PostaOrdinaria): refused at the reception point */
};

/* Whether we produced the message the record is about or received it. */
enum pec_reg_dir {
    PEC_REG_EMISSIONE,
    PEC_REG_RICEZIONE,
    PEC_REG_DEPOSITO, /* put into a user's mailbox by our delivery point (consegna = the mailbox) */
};

struct pec_daticert;

/*
 * The kind of record a notice with these facts is: by tipo, and for the
 * ones that share a tipo by errore (virus) or errore-esteso (a 5.x.x
 * preavviso is the 24 h one).  -1 for a busta's tipo.
 */
int pec_reg_kind_of(const struct pec_daticert *d, enum pec_reg_kind *kind);

#define PEC_HASH_HEX 65 /* 64 lowercase hex digits of SHA-256 and a NUL */

/*
 * A record as stored.  Strings are never NULL once a record is read back;
 * when writing, NULL means "".  DESTINATARI is the text of the log line:
 * "a@x (certificato), b@y (esterno)" (see pec_destinatari_format).
 */
struct pec_record {
    long long seq; /* 1, 2, ... assigned by the store when appended */
    time_t at;     /* instant of the event, UTC */
    const char *evento;
    const char *tipo;
    const char *label;
    const char *identificativo;
    const char *queue_id;
    const char *mittente;
    const char *destinatari;
    const char *oggetto;
    const char *message_id; /* of the generated (or received) receipt, notice or busta */
    const char *gestore;
    const char *tipo_ricevuta;
    const char *consegna;
    const char *ricezione;
    const char *errore;
    const char *virus;
    const char *errore_esteso;
    /* ours, after the fields of the TMail line: */
    const char *client_msgid; /* the user's Message-ID, where the event has one */
    const char *node;         /* the node that wrote it (set by the store, pec_store_set_node) */
    int form;                 /* canonical form of its hash: 1 (before client_msgid and node), 2 */
    char prev[PEC_HASH_HEX];  /* hash of record seq-1, or of the purge anchor */
    char hash[PEC_HASH_HEX];
};

/* A record of KIND and DIR at AT about IDENTIFICATIVO, every other field "". */
void pec_record_init(struct pec_record *r, enum pec_reg_kind kind, enum pec_reg_dir dir, time_t at,
                     const char *identificativo);

struct pec_dest {
    const char *address;
    int certificato; /* 1: a PEC mailbox (certificato), 0: esterno */
};

/* "a@x (certificato), b@y (esterno)"; the caller frees it. */
char *pec_destinatari_format(const struct pec_dest *d, size_t n);

/* SHA-256 over R's number, instant, fields and R->prev, as lowercase hex. */
void pec_record_hash(const struct pec_record *r, char out[PEC_HASH_HEX]);

/*
 * The TMail-style line, without date:
 *   ID: queueid=Q: tipo=T (Label): evento=E: mittente=M: destinatari=D: oggetto=O:
 *   message-id=X: gestore=G: tipo_ricevuta=...: consegna=...: ...
 * Optional fields appear only when set; control characters become spaces,
 * so one record is one line.  The caller frees it.
 */
char *pec_record_line(const struct pec_record *r);

/* One JSON object, every field, seq, ISO 8601 UTC time and hashes; caller frees. */
char *pec_record_json(const struct pec_record *r);

/*
 * Seal every finished day (local day before the one of NOW) whose records
 * are not sealed yet: writes SEAL_DIR/registro-YYYYMMDD-<first seq>.p7m,
 * signed with SIGNER at NOW, and records it in the store.  *NSEALED gets the
 * number of files written.  0, or -1 with err (nothing half-recorded: a file
 * written but not recorded is overwritten by the next attempt).
 */
int pec_registro_seal(struct pec_store *st, const struct pec_signer *signer, const char *gestore,
                      const char *seal_dir, time_t now, int *nsealed, char *err, size_t errlen);

/*
 * Remove the sealed days older than MONTHS months before NOW (records and
 * their seal files in SEAL_DIR), oldest first.  Unsealed records are never removed.
 * *NREMOVED gets the number of records removed.  0, or -1 with err.
 */
int pec_registro_purge(struct pec_store *st, const char *seal_dir, int months, time_t now,
                       long long *nremoved, char *err, size_t errlen);

struct pec_registro_report {
    long long records;   /* records checked */
    long long first_seq; /* first record still in the store (0: none) */
    long long last_seq;
    int seals;          /* seal files checked */
    long long bad_seq;  /* first bad record, 0 when the problem is not one record */
    char problem[1024]; /* "" when everything verified */
};

/*
 * Check the chain from the purge anchor to the head, then every seal: the
 * file is in SEAL_DIR and unchanged, its signature verifies against TRUST and was
 * made by a certificate for SERVICE_ADDRESS (NULL: any signer), and the
 * store holds exactly the records it lists.  Stops at the first problem and
 * names it in REP.  Returns 0 when everything verified, 1 when a problem was
 * found, -1 when the store could not be read (REP->problem says why).
 */
int pec_registro_verify(struct pec_store *st, const char *seal_dir, const struct pec_trust *trust,
                        const char *service_address, struct pec_registro_report *rep);

#endif
