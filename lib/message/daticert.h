/*
 * daticert - the daticert.xml part of every PEC envelope and notice.
 *
 * daticert.xml is what peers parse (the text parts are for people), so it is
 * written only through libxml2, which escapes every string, and read only
 * after validation against the normative DTD compiled into the library
 * (daticert_dtd.c).  Element names and values stay Italian, as in the DTD.
 *
 * pec_daticert_write() refuses, with a reason, a struct that would break the
 * DTD or the element usage table of the rules (pec-rules.md 5.2): e.g. an
 * avvenuta-consegna without <consegna>, a presa-in-carico without
 * <ricezione>, a string that is not clean UTF-8.  Its output is laid out as
 * real providers' files: UTF-8 declaration, no DOCTYPE, 4-space indentation.
 *
 * pec_daticert_parse() takes a peer's bytes: no network, no DTD loading, no
 * entity expansion, and a DOCTYPE with an internal subset is refused before
 * any declaration in it takes effect (XXE, billion laughs).  A DOCTYPE that
 * only names an external DTD is tolerated (some providers write one) and
 * ignored.  The document must then be valid against the DTD and carry the
 * elements its tipo cannot do without.
 *
 * libxml2 must be initialised once, from one thread, before use:
 * pec_daticert_init() does that (xmlInitParser) and compiles the DTD; call it
 * at start-up before starting threads.  The other functions call it too, for
 * single-threaded programs.  The library never calls xmlCleanupParser.
 */
#ifndef PEC_DATICERT_H
#define PEC_DATICERT_H

#include <stddef.h>

/* the eight values of postacert/@tipo */
enum pec_tipo {
    PEC_TIPO_ACCETTAZIONE,
    PEC_TIPO_NON_ACCETTAZIONE,
    PEC_TIPO_PRESA_IN_CARICO,
    PEC_TIPO_AVVENUTA_CONSEGNA,
    PEC_TIPO_POSTA_CERTIFICATA,
    PEC_TIPO_ERRORE_CONSEGNA,
    PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA,
    PEC_TIPO_RILEVAZIONE_VIRUS,
};
#define PEC_TIPO_COUNT 8

/* postacert/@errore */
enum pec_errore {
    PEC_ERRORE_NESSUNO,
    PEC_ERRORE_NO_DEST,
    PEC_ERRORE_NO_DOMINIO,
    PEC_ERRORE_VIRUS,
    PEC_ERRORE_ALTRO,
};
#define PEC_ERRORE_COUNT 5

/* ricevuta/@tipo; NONE = no <ricevuta> element */
enum pec_ricevuta {
    PEC_RICEVUTA_NONE,
    PEC_RICEVUTA_COMPLETA,
    PEC_RICEVUTA_BREVE,
    PEC_RICEVUTA_SINTETICA,
};

/* destinatari/@tipo: a PEC mailbox or an ordinary one */
enum pec_dest_tipo {
    PEC_DEST_CERTIFICATO,
    PEC_DEST_ESTERNO,
};

struct pec_destinatario {
    char *address;
    enum pec_dest_tipo tipo;
};

/*
 * The whole document.  For writing, the caller owns every string (they may
 * point anywhere, e.g. into a struct pec_when); a parsed struct owns its
 * strings and is released with pec_daticert_free().  NULL means "element
 * absent" for the optional ones.
 */
struct pec_daticert {
    enum pec_tipo tipo;
    enum pec_errore errore;

    /* intestazione: the original message */
    char *mittente;
    struct pec_destinatario *destinatari;
    size_t n_destinatari;
    char *risposte;
    char *oggetto; /* optional */

    /* dati: this event */
    char *gestore_emittente;
    char *giorno; /* dd/mm/yyyy */
    char *ora;    /* hh:mm:ss */
    char *zona;   /* [+|-]hhmm */
    char *identificativo;
    char *msgid; /* optional; with its angle brackets, "<abc@x>" */
    enum pec_ricevuta ricevuta;
    char *consegna; /* optional */
    char **ricezione;
    size_t n_ricezione;
    char *errore_esteso; /* optional */
};

/* names exactly as in the DTD; NULL for a value out of range */
const char *pec_tipo_name(enum pec_tipo tipo);
const char *pec_errore_name(enum pec_errore errore);
const char *pec_ricevuta_name(enum pec_ricevuta ricevuta); /* NULL for NONE */
const char *pec_dest_tipo_name(enum pec_dest_tipo tipo);

/* name -> value, exact and case-sensitive as XML; 0, or -1 if unknown */
int pec_tipo_parse(const char *name, enum pec_tipo *out);
int pec_errore_parse(const char *name, enum pec_errore *out);
int pec_ricevuta_parse(const char *name, enum pec_ricevuta *out); /* never yields NONE */

/* once per process, before threads; 0, or -1 if the embedded DTD fails */
int pec_daticert_init(void);

/*
 * The checks pec_daticert_write() applies: 0, or -1 with a reason such as
 * "daticert.xml: avvenuta-consegna needs consegna".
 */
int pec_daticert_check(const struct pec_daticert *d, char *err, size_t errlen);

/*
 * The part of pec_daticert_check() that does not depend on the tipo: the
 * facts every notice about a transaction copies (mittente, destinatari,
 * risposte, oggetto, gestore, date and time, identificativo, msgid).  A
 * busta whose facts fail it could never earn the receipts built from them.
 */
int pec_daticert_check_facts(const struct pec_daticert *d, char *err, size_t errlen);

/*
 * Serialises d.  On success *xml is a NUL-terminated UTF-8 document of *len
 * bytes that the caller frees; returns 0.  Returns -1 with a reason in err,
 * and *xml NULL, when d is refused.
 */
int pec_daticert_write(const struct pec_daticert *d, char **xml, size_t *len, char *err,
                       size_t errlen);

/*
 * Parses and validates a peer's daticert.xml.  Returns 0 and fills out (free
 * with pec_daticert_free), or -1 with a short reason in err and out zeroed.
 */
int pec_daticert_parse(const char *xml, size_t len, struct pec_daticert *out, char *err,
                       size_t errlen);

/* releases what pec_daticert_parse() allocated and zeroes d; NULL is fine */
void pec_daticert_free(struct pec_daticert *d);

/*
 * Returns a NUL-terminated copy of in[0..len) fit for daticert.xml: byte
 * sequences that are not valid UTF-8 are read as ISO-8859-1, C0 controls
 * other than tab (and the non-characters XML forbids) are dropped.  Valid
 * UTF-8 without controls is returned unchanged.  The caller frees it.
 */
char *pec_utf8_sanitize(const char *in, size_t len);

/* the DTD compiled into the library, and its length */
extern const char pec_daticert_dtd[];
extern const size_t pec_daticert_dtd_len;

#endif
