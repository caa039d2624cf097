/*
 * consegna - choose, build and queue the delivery point's receipts.
 */
#include "provider/consegna.h"
#include "message/mime.h"
#include "message/notice.h"
#include "store/registro.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* postacert.eml as the busta carries it, transfer decoded, into a new spool */
static struct pec_spool *postacert_spool(const struct pec_inspection *ins, const unsigned char *msg,
                                         const char *spool_dir)
{
    const unsigned char *p = msg + ins->postacert_off;
    size_t n = ins->postacert_len;
    struct pec_spool *sp = pec_spool_new(spool_dir, 1024 * 1024);
    unsigned char *dec = NULL;
    size_t declen = 0;
    int rc;

    if (strcmp(ins->postacert_encoding, "base64") == 0)
        pec_base64_decode(p, n, &dec, &declen);
    else if (strcmp(ins->postacert_encoding, "quoted-printable") == 0)
        pec_qp_decode(p, n, &dec, &declen);
    rc = dec ? pec_spool_write(sp, dec, declen) : pec_spool_write(sp, p, n);
    free(dec);
    if (rc != 0) {
        pec_spool_free(sp);
        return NULL;
    }
    return sp;
}

static int listed(char *const *v, size_t n, const char *address)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i], address) == 0)
            return 1;
    return 0;
}

/* Named in Cc and not in To; ambiguous or unknown counts as primary (pec-rules.md 4.7). */
static int only_cc(const struct pec_dp_busta *b, const char *address)
{
    return b->have_orig && listed(b->orig.cc, b->orig.n_cc, address) &&
           !listed(b->orig.to, b->orig.n_to, address);
}

static enum pec_ricevuta asked_type(const struct pec_inspection *ins)
{
    const char *h = ins->x_tipo_ricevuta;

    if (ins->daticert.ricevuta != PEC_RICEVUTA_NONE)
        return ins->daticert.ricevuta;
    if (h != NULL && strcasecmp(h, "breve") == 0)
        return PEC_RICEVUTA_BREVE;
    if (h != NULL && strcasecmp(h, "sintetica") == 0)
        return PEC_RICEVUTA_SINTETICA;
    return PEC_RICEVUTA_COMPLETA;
}

int pec_dp_busta_init(struct pec_dp_busta *b, const struct pec_inspection *ins,
                      const unsigned char *msg, const char *spool_dir, char *err, size_t errlen)
{
    const struct pec_daticert *d = &ins->daticert;
    char why[256];

    memset(b, 0, sizeof(*b));
    b->ins = ins;
    b->asked = asked_type(ins);
    if ((b->postacert = postacert_spool(ins, msg, spool_dir)) == NULL) {
        snprintf(err, errlen, "cannot spool postacert.eml: %s", strerror(errno));
        return -1;
    }
    b->have_orig = pec_original_view(&b->orig, b->postacert, why, sizeof(why)) == 0;
    b->dest_cc = xcalloc(d->n_destinatari ? d->n_destinatari : 1, sizeof(int));
    for (size_t i = 0; i < d->n_destinatari; i++)
        b->dest_cc[i] = only_cc(b, d->destinatari[i].address);
    return 0;
}

void pec_dp_busta_free(struct pec_dp_busta *b)
{
    if (b->have_orig)
        pec_original_free(&b->orig);
    pec_spool_free(b->postacert);
    free(b->dest_cc);
    memset(b, 0, sizeof(*b));
}

static enum pec_notice_kind consegna_kind(const struct pec_dp_busta *b, const char *rcpt)
{
    if (only_cc(b, rcpt) || b->asked == PEC_RICEVUTA_SINTETICA)
        return PEC_NOTICE_CONSEGNA_SINTETICA;
    return b->asked == PEC_RICEVUTA_BREVE ? PEC_NOTICE_CONSEGNA_BREVE
                                          : PEC_NOTICE_CONSEGNA_COMPLETA;
}

/*
 * Every failure a mailbox backend reports (the built-in Maildir, or the LMTP
 * server: Dovecot), by its enhanced status code, as the avviso di mancata
 * consegna names it: errore, the words of errore-esteso ("5.1.1 - <gestore> -
 * <words>", pec-rules.md 4.8), and whether it is final.  A final failure
 * (5.x.x) closes the recipient's transaction with the avviso; a temporary one
 * (4.x.x) is answered 4xx to the MTA, which delivers again within its queue
 * lifetime, and no notice is sent.  The first entry whose code ESC begins
 * with wins: exact codes before their classes.  The README lists the same
 * table.
 */
static const struct failure {
    const char *esc;
    enum pec_errore errore;
    const char *words;
    int final;
} failures[] = {
    {"5.1.1", PEC_ERRORE_NO_DEST, "indirizzo non valido", 1},   /* no such user */
    {"5.1.2", PEC_ERRORE_NO_DOMINIO, "dominio non gestito", 1}, /* not our domain */
    {"5.1.", PEC_ERRORE_NO_DEST, "indirizzo non valido", 1},    /* a bad address */
    {"5.2.1", PEC_ERRORE_ALTRO, "casella disabilitata", 1},     /* mailbox disabled */
    {"5.2.2", PEC_ERRORE_ALTRO, "casella piena", 1},            /* over quota */
    {"5.2.3", PEC_ERRORE_ALTRO, "messaggio troppo grande", 1},  /* over the mailbox's limit */
    {"5.3.4", PEC_ERRORE_ALTRO, "messaggio troppo grande", 1},  /* over the system's limit */
    {"5.", PEC_ERRORE_ALTRO, "consegna non riuscita", 1},       /* any other refusal */
    {"4.", PEC_ERRORE_NESSUNO, "consegna rinviata", 0},         /* temporary: retried */
};

/* The entry of the table for status ESC (the last one for what it does not know). */
static const struct failure *failure_of(const char *esc)
{
    size_t n = sizeof(failures) / sizeof(failures[0]);

    for (size_t i = 0; i < n; i++)
        if (strncmp(esc, failures[i].esc, strlen(failures[i].esc)) == 0)
            return &failures[i];
    return &failures[n - 2]; /* not even a status code: a refusal like any other */
}

/* errore and the words of errore-esteso for a final refusal with status ESC */
static enum pec_errore refusal(const char *esc, const char **what)
{
    const struct failure *f = failure_of(esc);

    if (!f->final)
        f = failure_of("5.");
    *what = f->words;
    return f->errore;
}

/* The log record of the event: what we emitted, about which delivery. */
static void record(struct pec_batch *batch, const struct pec_dp_env *env,
                   const struct pec_daticert *f, enum pec_notice_kind kind, const char *qid,
                   const char *message_id, time_t when)
{
    struct pec_dest *dest = xcalloc(f->n_destinatari ? f->n_destinatari : 1, sizeof(*dest));
    struct pec_record r;
    char *destinatari;
    int mancata = kind == PEC_NOTICE_MANCATA_CONSEGNA;

    for (size_t i = 0; i < f->n_destinatari; i++) {
        dest[i].address = f->destinatari[i].address;
        dest[i].certificato = f->destinatari[i].tipo == PEC_DEST_CERTIFICATO;
    }
    destinatari = pec_destinatari_format(dest, f->n_destinatari);
    pec_record_init(&r, mancata ? PEC_REG_MANCATA_CONSEGNA : PEC_REG_CONSEGNA, PEC_REG_EMISSIONE,
                    when, f->identificativo);
    r.queue_id = qid;
    r.mittente = f->mittente;
    r.destinatari = destinatari;
    r.oggetto = f->oggetto;
    r.message_id = message_id;
    r.gestore = env->issuer->provider_name;
    r.consegna = f->consegna;
    if (mancata) {
        r.errore = pec_errore_name(pec_notice_errore(kind, f->errore));
        r.errore_esteso = f->errore_esteso;
    } else {
        r.tipo_ricevuta = kind == PEC_NOTICE_CONSEGNA_BREVE       ? "breve"
                          : kind == PEC_NOTICE_CONSEGNA_SINTETICA ? "sintetica"
                                                                  : "completa";
    }
    pec_batch_record(batch, &r);
    free(destinatari);
    free(dest);
}

/* Queue BUILT (to the mittente), its log record and the dedupe record in one commit. */
static int commit(const struct pec_dp_env *env, const struct pec_daticert *f,
                  enum pec_notice_kind kind, const char *qid, const char *message_id,
                  const struct pec_built *built, time_t when, char *err, size_t errlen)
{
    struct pec_spool *sp = pec_spool_new(NULL, SIZE_MAX);
    struct pec_batch *batch;
    const char *rcpt[1] = {f->mittente};
    int rc = -1;

    if (pec_built_to_spool(built, sp) != 0 || pec_spool_mem(sp) == NULL) {
        snprintf(err, errlen, "cannot serialise the %s: %s", pec_notice_kind_name(kind),
                 strerror(errno));
        pec_spool_free(sp);
        return -1;
    }
    batch = pec_batch_new();
    pec_batch_outbox(batch, &(struct pec_outmsg){
                                .message_id = built->message_id,
                                .identificativo = f->identificativo,
                                .tipo = pec_tipo_name(pec_notice_tipo(kind)),
                                .rcpt = rcpt,
                                .nrcpt = 1,
                                .data = pec_spool_mem(sp),
                                .len = pec_spool_size(sp),
                            });
    record(batch, env, f, kind, qid, built->message_id, when);
    if (message_id != NULL)
        pec_batch_delivered(batch, f->consegna, message_id, when);
    rc = pec_store_commit(env->store, batch, err, errlen);
    pec_batch_free(batch);
    pec_spool_free(sp);
    return rc;
}

int pec_dp_receipt(const struct pec_dp_env *env, const struct pec_dp_busta *b, const char *qid,
                   const char *rcpt, const char *message_id, const struct pec_mbox_result *mb,
                   char *what, size_t whatlen, char *err, size_t errlen)
{
    struct pec_daticert f = b->ins->daticert;
    enum pec_notice_kind kind = PEC_NOTICE_MANCATA_CONSEGNA;
    struct pec_built built;
    char *esteso = NULL;
    time_t when = pec_clock_now(env->issuer->clock);
    int rc;

    f.consegna = (char *)rcpt;
    if (mb->status == PEC_MBOX_STORED) {
        kind = consegna_kind(b, rcpt);
    } else {
        const char *words;
        f.errore = refusal(mb->esc, &words);
        esteso = pec_errore_esteso(mb->esc, env->issuer->provider_name, words);
        f.errore_esteso = esteso;
    }
    rc = pec_build_notice(env->issuer,
                          &(struct pec_notice){.kind = kind,
                                               .facts = &f,
                                               .to = f.mittente,
                                               .is_cc = b->dest_cc,
                                               .postacert = b->postacert,
                                               .when = when},
                          &built, err, errlen);
    if (rc == 0) {
        rc = commit(env, &f, kind, qid, message_id, &built, when, err, errlen);
        if (rc == 0)
            snprintf(what, whatlen, "%s <%s>", pec_notice_kind_name(kind), built.message_id);
        pec_built_free(&built);
    }
    free(esteso);
    return rc;
}
