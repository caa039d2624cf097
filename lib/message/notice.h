/*
 * notice - the signed receipts and notices (ricevute e avvisi) a provider
 * emits: one builder for all of them, driven by a table of what each kind
 * carries (pec-rules.md 3, 4.3-4.11, 5.2).
 *
 * The caller states the facts of the transaction as it knows them, in a
 * struct pec_daticert: intestazione of the original, identificativo of the
 * busta, msgid of the client, and per kind consegna, ricezione, errore,
 * errore-esteso.  The builder never changes that struct: it works on a copy
 * and sets what the kind decides (tipo, errore where the kind fixes it,
 * gestore-emittente, data, ricevuta, and the errore-esteso of the timeout and
 * virus notices), then writes daticert.xml, the Italian text (text/plain and
 * an equivalent text/html), the postacert.eml of a consegna completa or breve,
 * the top-level headers, and hands the parts to pec_envelope_sign().
 *
 * Top-level headers, in this order: X-Ricevuta, X-VerificaSicurezza (virus
 * notices to the user), X-Mittente (rilevazione virus), Date, Subject (prefix
 * of the kind + the original subject), From (the service address, bare), To,
 * X-Riferimento-Message-ID, Message-ID (new, never the identificativo), then
 * MIME-Version and Content-Type from the envelope.
 *
 * X-Riferimento-Message-ID carries the client's Message-ID when there was
 * one (facts->msgid), as Aruba's receipts do and the rules say (3.4); the
 * identificativo of the busta is in daticert.xml and in the text.  When the
 * client gave none, the header carries the identificativo, so every notice
 * can still be matched by header alone.
 *
 * The texts close with "Identificativo del messaggio: <identificativo>".
 * They are ISO-8859-1 quoted-printable when every character fits, else UTF-8
 * (a subject in Greek stays readable); the HTML is pure ASCII with character
 * references, no external resource, no script, no style.
 *
 * Everything the builder writes depends only on its inputs, the issuer's
 * clock zone and identifier generator, so a fixed clock and deterministic
 * identifiers give the same bytes on every machine.
 */
#ifndef PEC_NOTICE_H
#define PEC_NOTICE_H

#include <stddef.h>
#include <time.h>

#include "message/daticert.h"
#include "message/pecmsg.h"
#include "util/spool.h"

enum pec_notice_kind {
    PEC_NOTICE_ACCETTAZIONE,           /* AP, to the sender */
    PEC_NOTICE_NON_ACCETTAZIONE,       /* AP, formal error: facts->errore_esteso says which */
    PEC_NOTICE_NON_ACCETTAZIONE_VIRUS, /* AP, virus: VIRUS names it */
    PEC_NOTICE_PRESA_IN_CARICO,        /* InP, to the sending provider's mailReceipt */
    PEC_NOTICE_CONSEGNA_COMPLETA,      /* DP, with POSTACERT whole */
    PEC_NOTICE_CONSEGNA_BREVE,         /* DP, with POSTACERT, attachments hashed */
    PEC_NOTICE_CONSEGNA_SINTETICA,     /* DP, no original */
    PEC_NOTICE_MANCATA_CONSEGNA,       /* DP: errore no-dest / no-dominio / altro */
    PEC_NOTICE_MANCATA_CONSEGNA_VIRUS, /* sender's provider, after a rilevazione virus */
    PEC_NOTICE_PREAVVISO_12H,          /* sender's provider, 12 h timer */
    PEC_NOTICE_PREAVVISO_24H,          /* sender's provider, 24 h timer: final */
    PEC_NOTICE_RILEVAZIONE_VIRUS,      /* InP, to the sending provider's mailReceipt */
};
#define PEC_NOTICE_KIND_COUNT 12

struct pec_notice {
    enum pec_notice_kind kind;
    /*
     * Facts of the transaction.  Required: mittente, destinatari, risposte,
     * identificativo; oggetto and msgid when known; consegna for the kinds
     * about one recipient; ricezione for presa in carico; errore and
     * errore_esteso (see pec_errore_esteso) for non accettazione and mancata
     * consegna.  Ignored: tipo, gestore_emittente, giorno, ora, zona,
     * ricevuta; errore of the kinds that fix it; errore_esteso of the
     * timeout notices, which is always ours (4.4.7 at 12 h, 5.4.1 at 24 h).
     */
    const struct pec_daticert *facts;
    const char *to;          /* original sender, or the sending provider's mailReceipt */
    const char *subject_raw; /* original Subject as it was in the header, or NULL: facts->oggetto */
    const int *is_cc;        /* parallel to facts->destinatari: nonzero for Cc; NULL: all To */
    const struct pec_spool *postacert; /* completa and breve: the busta's postacert.eml */
    const char *virus;                 /* virus kinds: what the antivirus found */
    time_t when;                       /* the event; 0: the issuer's clock now */
};

/*
 * Builds the notice into OUT (headers, body spool, Message-ID; release with
 * pec_built_free).  Returns 0, or -1 with one line in err and OUT empty.
 */
int pec_build_notice(const struct pec_issuer *iss, const struct pec_notice *n,
                     struct pec_built *out, char *err, size_t errlen);

/* "<code> - <gestore> - <text>", the errore-esteso of every notice; caller frees */
char *pec_errore_esteso(const char *code, const char *gestore, const char *text);

/* short stable name of a kind ("consegna-breve", "preavviso-12h"), or NULL */
const char *pec_notice_kind_name(enum pec_notice_kind kind);
/* the X-Ricevuta value of a kind, or NULL */
const char *pec_notice_x_ricevuta(enum pec_notice_kind kind);
/* the postacert/@tipo a kind writes */
enum pec_tipo pec_notice_tipo(enum pec_notice_kind kind);
/*
 * The postacert/@errore a kind writes when the caller's facts say GIVEN: fixed
 * by the kind, except mancata consegna, which keeps no-dest and no-dominio and
 * turns anything else into altro.
 */
enum pec_errore pec_notice_errore(enum pec_notice_kind kind, enum pec_errore given);

#endif
