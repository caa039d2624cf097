/*
 * reception - the reception point's decisions (see reception.h).
 */
#include "provider/reception.h"
#include "message/busta.h"
#include "util/clock.h"
#include "message/notice.h"
#include "store/registro.h"
#include "provider/scheduler.h"
#include "message/verify.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void summarize(struct pec_rp_outcome *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void summarize(struct pec_rp_outcome *out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out->summary, sizeof(out->summary), fmt, ap);
    va_end(ap);
}

/* The whole message in memory, as pec_inspect wants it: the spool's own bytes or a copy. */
static const unsigned char *whole(const struct pec_spool *sp, unsigned char **copy)
{
    size_t size = pec_spool_size(sp);
    const unsigned char *mem = pec_spool_mem(sp);

    *copy = NULL;
    if (mem != NULL || size == 0)
        return mem ? mem : (const unsigned char *)"";
    *copy = malloc(size);
    if (*copy == NULL)
        return NULL;
    if (pec_spool_pread(sp, 0, *copy, size) != (ssize_t)size) {
        free(*copy);
        *copy = NULL;
        return NULL;
    }
    return *copy;
}

static char *destinatari_of(const struct pec_daticert *d)
{
    struct pec_dest *dest = xcalloc(d->n_destinatari ? d->n_destinatari : 1, sizeof(*dest));
    char *s;

    for (size_t i = 0; i < d->n_destinatari; i++) {
        dest[i].address = d->destinatari[i].address;
        dest[i].certificato = d->destinatari[i].tipo == PEC_DEST_CERTIFICATO;
    }
    s = pec_destinatari_format(dest, d->n_destinatari);
    free(dest);
    return s;
}

/* The message id without its angle brackets; the caller frees it. */
static char *bare(const char *id)
{
    size_t n;

    if (id == NULL)
        return xstrdup("");
    while (*id == ' ' || *id == '\t' || *id == '<')
        id++;
    n = strcspn(id, ">");
    return xstrndup(id, n);
}

static int ours(const struct pec_config *cfg, const char *address)
{
    const char *at = strrchr(address, '@');

    return at != NULL && pec_config_is_our_domain(cfg, at + 1);
}

/* ------------------------------------------------------------ what was received */

/* Our recipients of O, for the record of what reached them. */
static size_t here(const struct pec_rp_env *e, const struct pec_original *o, char **own)
{
    size_t n = 0;

    for (size_t i = 0; i < o->n_rcpts; i++)
        if (ours(e->cfg, o->rcpts[i]))
            own[n++] = o->rcpts[i];
    return n;
}

/*
 * The log record of a PEC message received from a provider (a busta, a
 * notice or an anomalia), evento ricezione: gestore is the provider that
 * signed it, not us (pec-rules.md 8.1: the sending provider), ricezione the
 * recipients here it reached.
 */
static void received(struct pec_batch *b, const struct pec_inspection *ins, const char *queue_id,
                     char **here, size_t nhere, time_t when)
{
    const struct pec_daticert *d = &ins->daticert;
    char *destinatari = ins->has_daticert ? destinatari_of(d) : xstrdup("");
    char *ricezione = xjoin(here, nhere), *message_id = bare(ins->message_id);
    struct pec_record rec;
    enum pec_reg_kind kind = PEC_REG_BUSTA_ANOMALIA;

    if (ins->kind == PEC_KIND_BUSTA)
        kind = PEC_REG_BUSTA_TRASPORTO;
    else if (ins->kind == PEC_KIND_NOTICE && pec_reg_kind_of(d, &kind) < 0)
        kind = PEC_REG_BUSTA_ANOMALIA;
    pec_record_init(&rec, kind, PEC_REG_RICEZIONE, when,
                    ins->has_daticert && d->identificativo ? d->identificativo : message_id);
    rec.queue_id = queue_id;
    rec.mittente = ins->has_daticert ? d->mittente : ins->from_address;
    rec.destinatari = destinatari;
    rec.oggetto = ins->has_daticert ? d->oggetto : NULL;
    rec.message_id = message_id;
    rec.gestore = ins->provider != NULL ? ins->provider->name : NULL;
    rec.ricezione = ricezione;
    rec.client_msgid = ins->has_daticert ? d->msgid : NULL;
    pec_batch_record(b, &rec);
    free(destinatari);
    free(ricezione);
    free(message_id);
}

/* ------------------------------------------------------------ busta: presa in carico */

/*
 * A busta can reach us twice with the same identificativo: the sending MTA
 * did not get our answer to the first copy (we were killed after the store
 * commit, the connection broke) and sends it again.  The recipients a
 * presa in carico we already emitted covers are taken in charge; a second
 * one, with a new Message-ID, would be a second receipt for one event.  So
 * those are struck from OWN; the busta itself goes on (the delivery point
 * puts one copy in each mailbox).
 */
struct taken {
    char **own;
    size_t *n;
};

static int strike_taken(const struct pec_record *r, void *arg)
{
    struct taken *t = arg;
    const char *p = r->ricezione;

    if (strcmp(r->label, "PresaInCarico") != 0 || strcmp(r->evento, "emissione") != 0)
        return 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");

        for (size_t i = 0; i < *t->n; i++)
            if (strlen(t->own[i]) == len && strncasecmp(t->own[i], p, len) == 0) {
                t->own[i] = t->own[--*t->n];
                break;
            }
        p += len;
        p += strspn(p, ", ");
    }
    return 0;
}

static int strike_already_taken(const struct pec_rp_env *e, const char *identificativo, char **own,
                                size_t *n, char *err, size_t errlen)
{
    struct pec_log_filter f = {.identificativo = identificativo};
    struct taken t = {own, n};

    return pec_store_log_each(e->store, &f, strike_taken, &t, err, errlen) < 0 ? -1 : 0;
}

static int presa_in_carico(const struct pec_rp_env *e, const struct pec_original *o,
                           const struct pec_inspection *ins, const char *queue_id,
                           struct pec_rp_outcome *out, char *err, size_t errlen)
{
    const struct pec_daticert *f = &ins->daticert;
    const char *to = ins->provider->mail_receipt;
    char **own = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*own));
    size_t n = 0;
    struct pec_daticert d = *f;
    struct pec_built b = {0};
    struct pec_record rec;
    char *ricezione = NULL, *destinatari = NULL;
    const char *rcpt[1] = {to};
    time_t when = pec_clock_now(e->iss->clock);
    int ret = -1;

    n = here(e, o, own);
    out->batch = pec_batch_new();
    received(out->batch, ins, queue_id, own, n, when);
    if (n == 0) {
        summarize(out, "busta %s from %s: none of the recipients is ours, no presa in carico",
                  f->identificativo, ins->provider->name);
        ret = 0;
        goto done;
    }
    if (to == NULL || *to == '\0' || strcasecmp(to, e->cfg->receipt_address) == 0) {
        summarize(out, "busta %s from %s: %s", f->identificativo, ins->provider->name,
                  to == NULL || *to == '\0'
                      ? "the provider has no mailReceipt in the index, no presa in carico"
                      : "our own, its presa in carico came from the access point");
        ret = 0;
        goto done;
    }
    if (e->store != NULL && strike_already_taken(e, f->identificativo, own, &n, err, errlen) < 0)
        goto done;
    if (n == 0) {
        summarize(out,
                  "busta %s from %s: its recipients here were taken in charge already, "
                  "no second presa in carico",
                  f->identificativo, ins->provider->name);
        ret = 0;
        goto done;
    }
    d.ricezione = own;
    d.n_ricezione = n;
    if (pec_build_notice(
            e->iss,
            &(struct pec_notice){
                .kind = PEC_NOTICE_PRESA_IN_CARICO, .facts = &d, .to = to, .when = when},
            &b, err, errlen) < 0)
        goto done;
    out->blob = pec_spool_new(NULL, SIZE_MAX);
    if (pec_built_to_spool(&b, out->blob) != 0 || pec_spool_mem(out->blob) == NULL) {
        seterr(err, errlen, "cannot serialise the presa in carico: %s", strerror(errno));
        goto done;
    }
    pec_batch_outbox(out->batch, &(struct pec_outmsg){
                                     .message_id = b.message_id,
                                     .identificativo = f->identificativo,
                                     .tipo = pec_notice_x_ricevuta(PEC_NOTICE_PRESA_IN_CARICO),
                                     .rcpt = rcpt,
                                     .nrcpt = 1,
                                     .data = pec_spool_mem(out->blob),
                                     .len = pec_spool_size(out->blob),
                                 });
    ricezione = xjoin(own, n);
    destinatari = destinatari_of(f);
    pec_record_init(&rec, PEC_REG_PRESA_IN_CARICO, PEC_REG_EMISSIONE, when, f->identificativo);
    rec.queue_id = queue_id;
    rec.mittente = f->mittente;
    rec.destinatari = destinatari;
    rec.oggetto = f->oggetto;
    rec.message_id = b.message_id;
    rec.gestore = e->iss->provider_name;
    rec.ricezione = ricezione;
    pec_batch_record(out->batch, &rec);
    summarize(out, "busta %s from %s: presa in carico <%s> to %s for %s", f->identificativo,
              ins->provider->name, b.message_id, to, ricezione);
    ret = 0;

done:
    pec_built_free(&b);
    free(ricezione);
    free(destinatari);
    free(own);
    return ret;
}

/* ------------------------------------------------------------ notice about our transaction */

/* What a received notice of tipo T is in the log, and where it moves a recipient (-1: nowhere). */
static int notice_effect(const struct pec_daticert *d, enum pec_reg_kind *kind)
{
    switch (d->tipo) {
    case PEC_TIPO_PRESA_IN_CARICO:
        *kind = PEC_REG_PRESA_IN_CARICO;
        return PEC_RCPT_TAKEN;
    case PEC_TIPO_AVVENUTA_CONSEGNA:
        *kind = PEC_REG_CONSEGNA;
        return PEC_RCPT_DELIVERED;
    case PEC_TIPO_ERRORE_CONSEGNA:
        *kind = d->errore == PEC_ERRORE_VIRUS ? PEC_REG_MANCATA_CONSEGNA_VIRUS
                                              : PEC_REG_MANCATA_CONSEGNA;
        return PEC_RCPT_FAILED;
    case PEC_TIPO_RILEVAZIONE_VIRUS:
        *kind = PEC_REG_RILEVAZIONE_VIRUS;
        return -1;
    default:
        return -2; /* ours to emit, not to receive: nothing to record */
    }
}

/* Record a PEC message passed on that moves nothing (received() with O's recipients here). */
static void passed(const struct pec_rp_env *e, const struct pec_original *o,
                   const struct pec_inspection *ins, const char *queue_id,
                   struct pec_rp_outcome *out)
{
    char **own = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*own));

    out->batch = pec_batch_new();
    received(out->batch, ins, queue_id, own, here(e, o, own), pec_clock_now(e->iss->clock));
    free(own);
}

static int notice(const struct pec_rp_env *e, const struct pec_original *o,
                  const struct pec_inspection *ins, const char *queue_id,
                  struct pec_rp_outcome *out, char *err, size_t errlen)
{
    const struct pec_daticert *d = &ins->daticert;
    const char *x = ins->x_ricevuta ? ins->x_ricevuta : "?";
    struct pec_tx_info tx;
    enum pec_reg_kind kind;
    struct pec_record rec;
    char *destinatari, *ricezione, *message_id;
    time_t when;
    int known, state;

    if (!ins->has_daticert || d->identificativo == NULL) {
        summarize(out, "notice %s from %s: passed, no identificativo", x, ins->provider->name);
        return 0;
    }
    state = notice_effect(d, &kind);
    if (state == -2) {
        passed(e, o, ins, queue_id, out);
        summarize(out, "notice %s about %s from %s: passed", x, d->identificativo,
                  ins->provider->name);
        return 0;
    }
    known = pec_store_tx_get(e->store, d->identificativo, &tx, err, errlen);
    if (known < 0)
        return -1;
    if (known == 0) {
        passed(e, o, ins, queue_id, out);
        summarize(out, "notice %s about %s from %s: passed, not one of our transactions", x,
                  d->identificativo, ins->provider->name);
        return 0;
    }
    when = pec_clock_now(e->iss->clock);
    out->batch = pec_batch_new();
    /* a first receipt after the 12 h still owes the 12 h notice (scheduler.h) */
    if (state == PEC_RCPT_TAKEN) {
        for (size_t i = 0; i < d->n_ricezione; i++) {
            pec_batch_rcpt_state(out->batch, d->identificativo, d->ricezione[i], PEC_RCPT_TAKEN,
                                 when, NULL);
            pec_sched_heard(out->batch, &tx, d->ricezione[i], when, e->cfg->warning_after);
        }
    } else if (state >= 0 && d->consegna != NULL) {
        pec_batch_rcpt_state(out->batch, d->identificativo, d->consegna, (enum pec_rcpt_state)state,
                             when, d->errore_esteso);
        pec_sched_heard(out->batch, &tx, d->consegna, when, e->cfg->warning_after);
    }
    pec_tx_info_free(&tx);
    destinatari = destinatari_of(d);
    ricezione = xjoin(d->ricezione, d->n_ricezione);
    message_id = bare(ins->message_id);
    pec_record_init(&rec, kind, PEC_REG_RICEZIONE, when, d->identificativo);
    rec.queue_id = queue_id;
    rec.mittente = d->mittente;
    rec.destinatari = destinatari;
    rec.oggetto = d->oggetto;
    rec.message_id = message_id;
    rec.gestore = d->gestore_emittente;
    rec.tipo_ricevuta =
        d->tipo == PEC_TIPO_AVVENUTA_CONSEGNA ? pec_ricevuta_name(d->ricevuta) : NULL;
    rec.consegna = d->consegna;
    rec.ricezione = ricezione;
    if (d->tipo == PEC_TIPO_ERRORE_CONSEGNA)
        rec.errore = pec_errore_name(d->errore);
    rec.errore_esteso = d->errore_esteso;
    pec_batch_record(out->batch, &rec);
    summarize(out, "notice %s about our %s from %s (%s): recorded", x, d->identificativo,
              ins->provider->name,
              d->consegna  ? d->consegna
              : *ricezione ? ricezione
                           : "every recipient");
    free(destinatari);
    free(ricezione);
    free(message_id);
    return 0;
}

/* ------------------------------------------------------------ anomalia, ordinary mail */

/* "a@x (certificato), b@y (esterno)": our PEC mailboxes, and the rest. */
static char *tagged(const struct pec_rp_env *e, char *const *v, size_t n)
{
    struct pec_dest *dest = xcalloc(n ? n : 1, sizeof(*dest));
    char *s;

    for (size_t i = 0; i < n; i++) {
        dest[i].address = v[i];
        dest[i].certificato = ours(e->cfg, v[i]);
    }
    s = pec_destinatari_format(dest, n);
    free(dest);
    return s;
}

static int anomalia(const struct pec_rp_env *e, const struct pec_original *o, const char *reason,
                    const char *queue_id, struct pec_rp_outcome *out, char *err, size_t errlen)
{
    struct pec_record rec;
    char **rcpts = o->rcpts;
    char *destinatari;
    time_t when = pec_clock_now(e->iss->clock);

    if (pec_build_anomalia(e->iss, o->raw, reason, when, &out->anomalia, err, errlen) < 0)
        return -1;
    out->action = PEC_RP_ANOMALIA;
    out->batch = pec_batch_new();
    destinatari = tagged(e, rcpts, o->n_rcpts);
    pec_record_init(&rec, PEC_REG_BUSTA_ANOMALIA, PEC_REG_EMISSIONE, when,
                    out->anomalia.message_id ? out->anomalia.message_id : "");
    rec.queue_id = queue_id;
    rec.mittente = o->n_from > 0 ? o->from[0] : o->mail_from;
    rec.destinatari = destinatari;
    rec.oggetto = o->subject;
    rec.message_id = out->anomalia.message_id;
    rec.gestore = e->iss->provider_name;
    rec.errore_esteso = reason;
    pec_batch_record(out->batch, &rec);
    free(destinatari);
    return 0;
}

/* The record of ordinary mail refused at SMTP: what came, from whom, and why. */
static void refused(const struct pec_rp_env *e, const struct pec_original *o, const char *reason,
                    const char *queue_id, struct pec_rp_outcome *out)
{
    struct pec_record rec;
    char *destinatari = tagged(e, o->rcpts, o->n_rcpts), *message_id = bare(o->message_id);

    out->batch = pec_batch_new();
    pec_record_init(&rec, PEC_REG_POSTA_ORDINARIA, PEC_REG_RICEZIONE, pec_clock_now(e->iss->clock),
                    message_id);
    rec.queue_id = queue_id;
    rec.mittente = o->n_from > 0 ? o->from[0] : o->mail_from;
    rec.destinatari = destinatari;
    rec.oggetto = o->subject;
    rec.message_id = message_id;
    rec.gestore = e->iss->provider_name;
    rec.errore_esteso = reason;
    pec_batch_record(out->batch, &rec);
    free(destinatari);
    free(message_id);
}

/* ASCII only, for an SMTP reply */
static void ascii_copy(char *dst, size_t len, const char *src)
{
    size_t j = 0;

    for (; *src && j + 1 < len; src++)
        dst[j++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
    dst[j] = '\0';
}

static int ordinary(const struct pec_rp_env *e, const struct pec_original *o,
                    const struct pec_inspection *ins, const char *queue_id,
                    struct pec_rp_outcome *out, char *err, size_t errlen)
{
    const char *policy = e->cfg->ordinary_mail;
    const char *why = ins->kind == PEC_KIND_ORDINARY
                          ? "messaggio non firmato da un gestore di posta certificata"
                          : "la firma digitale del messaggio non risulta attendibile";
    char reason[800], clean[520];

    out->what = "ordinary";
    ascii_copy(clean, sizeof(clean), ins->reason[0] ? ins->reason : "no S/MIME signature");
    snprintf(reason, sizeof(reason), "%s (%s)", why, clean);
    if (strcmp(policy, "reject") == 0) {
        out->action = PEC_RP_REJECT;
        out->rcode = "554";
        out->xcode = "5.7.1";
        snprintf(out->text, sizeof(out->text),
                 "Casella di posta certificata: si accettano solo messaggi PEC, %s (this is a "
                 "certified mailbox: ordinary mail is not accepted)",
                 reason);
        summarize(out, "ordinary mail (%s): rejected (ordinary_mail = reject)", clean);
        refused(e, o, reason, queue_id, out);
        return 0;
    }
    if (anomalia(e, o, reason, queue_id, out, err, errlen) < 0)
        return -1;
    summarize(out, "ordinary mail (%s): busta di anomalia", clean);
    return 0;
}

/* ------------------------------------------------------------ who a message is about */

/*
 * The first recipient of this SMTP transaction in one of our domains whose
 * busta does not name it as a certified recipient, or NULL.  A busta
 * certifies the destinatari of its daticert and no one else: sent again
 * with another RCPT TO, it must not earn receipts for that address.
 */
static const char *unnamed_recipient(const struct pec_rp_env *e, const struct pec_original *o,
                                     const struct pec_daticert *d)
{
    for (size_t i = 0; i < o->n_rcpts; i++) {
        size_t k = 0;

        if (!ours(e->cfg, o->rcpts[i]))
            continue;
        while (k < d->n_destinatari && (d->destinatari[k].tipo != PEC_DEST_CERTIFICATO ||
                                        strcasecmp(d->destinatari[k].address, o->rcpts[i]) != 0))
            k++;
        if (k == d->n_destinatari)
            return o->rcpts[i];
    }
    return NULL;
}

static const char *unmanaged(const struct pec_provider *p, const char *address)
{
    const char *at = address != NULL ? strrchr(address, '@') : NULL;

    return at != NULL && pec_provider_manages(p, at + 1) ? NULL : address ? address : "";
}

/*
 * The first address a notice reports on that its signer does not serve, or
 * NULL.  Only the recipient's own provider can say it took in charge (every
 * ricezione), delivered, failed or found a virus for that recipient
 * (consegna); the notices the sender's provider emits (the 12 h and 24 h
 * notices, the mancata consegna per virus) come from the provider that
 * manages the mittente.
 */
static const char *not_signers_party(const struct pec_inspection *ins)
{
    const struct pec_daticert *d = &ins->daticert;
    const char *bad = NULL;

    switch (d->tipo) {
    case PEC_TIPO_PRESA_IN_CARICO:
    case PEC_TIPO_AVVENUTA_CONSEGNA:
    case PEC_TIPO_RILEVAZIONE_VIRUS:
    case PEC_TIPO_ERRORE_CONSEGNA:
        if (d->tipo == PEC_TIPO_ERRORE_CONSEGNA && d->errore == PEC_ERRORE_VIRUS)
            return unmanaged(ins->provider, d->mittente);
        if (d->consegna != NULL)
            bad = unmanaged(ins->provider, d->consegna);
        for (size_t i = 0; bad == NULL && i < d->n_ricezione; i++)
            bad = unmanaged(ins->provider, d->ricezione[i]);
        return bad;
    case PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA:
        return unmanaged(ins->provider, d->mittente);
    default:
        return NULL; /* accettazione and the like: about no recipient's fate */
    }
}

static int wrong_party(const struct pec_rp_env *e, const struct pec_original *o,
                       const struct pec_inspection *ins, const char *queue_id, const char *address,
                       struct pec_rp_outcome *out, char *err, size_t errlen)
{
    char reason[600], clean[300];
    const char *what = ins->kind == PEC_KIND_BUSTA ? "busta" : "notice";

    out->what = "malformed";
    ascii_copy(clean, sizeof(clean), address);
    if (ins->kind == PEC_KIND_BUSTA)
        snprintf(reason, sizeof(reason),
                 "busta del gestore %.60s non indirizzata al destinatario %s (non compreso tra i "
                 "destinatari certificati dei dati di certificazione)",
                 ins->provider->name, clean);
    else
        snprintf(reason, sizeof(reason),
                 "ricevuta del gestore %.60s relativa all'indirizzo %s, di un dominio che quel "
                 "gestore non gestisce",
                 ins->provider->name, clean);
    if (anomalia(e, o, reason, queue_id, out, err, errlen) < 0)
        return -1;
    summarize(out, "%s signed by %s about %s, %s: busta di anomalia", what, ins->provider->name,
              clean,
              ins->kind == PEC_KIND_BUSTA ? "a recipient its daticert does not name"
                                          : "an address of a domain it does not manage");
    return 0;
}

/*
 * An anomaly the MTA could not make: a message with more header fields than it can
 * delete (original.h) is refused for good instead, and recorded as refused mail is,
 * rather than failing in the MTA, after minutes, with an error the client retries.
 */
static void unwrappable(const struct pec_rp_env *e, const struct pec_original *o,
                        const char *queue_id, struct pec_rp_outcome *out)
{
    char reason[300], was[sizeof(out->summary)];

    snprintf(reason, sizeof(reason),
             "il messaggio ha %zu campi di intestazione, oltre i %d di cui si puo' fare una "
             "busta di anomalia",
             o->n_fields, PEC_HEADER_FIELDS_MAX);
    snprintf(was, sizeof(was), "%s", out->summary);
    pec_built_free(&out->anomalia);
    pec_batch_free(out->batch);
    out->batch = NULL;
    out->action = PEC_RP_REJECT;
    out->rcode = "552";
    out->xcode = "5.6.0";
    snprintf(out->text, sizeof(out->text),
             "%s (the message has %zu header fields, over the %d a busta di anomalia can be "
             "made of)",
             reason, o->n_fields, PEC_HEADER_FIELDS_MAX);
    summarize(out, "%.900s, but %zu header fields: refused instead", was, o->n_fields);
    refused(e, o, reason, queue_id, out);
}

/* ------------------------------------------------------------ the decision */

static int decide(const struct pec_rp_env *e, const struct pec_original *o,
                  const struct pec_inspection *ins, const char *queue_id,
                  struct pec_rp_outcome *out, char *err, size_t errlen)
{
    int listed = ins->signature_ok && ins->provider != NULL;

    const char *who;

    if (ins->valid && ins->kind == PEC_KIND_BUSTA) {
        if ((who = unnamed_recipient(e, o, &ins->daticert)) != NULL)
            return wrong_party(e, o, ins, queue_id, who, out, err, errlen);
        out->what = "busta";
        return presa_in_carico(e, o, ins, queue_id, out, err, errlen);
    }
    if (ins->valid && ins->kind == PEC_KIND_NOTICE) {
        if (ins->has_daticert && (who = not_signers_party(ins)) != NULL)
            return wrong_party(e, o, ins, queue_id, who, out, err, errlen);
        out->what = "notice";
        return notice(e, o, ins, queue_id, out, err, errlen);
    }
    if (ins->valid && ins->kind == PEC_KIND_ANOMALIA) {
        out->what = "anomalia";
        passed(e, o, ins, queue_id, out);
        summarize(out, "busta di anomalia from %s: passed", ins->provider->name);
        return 0;
    }
    if (listed) {
        char reason[600], clean[520];

        out->what = "malformed";
        ascii_copy(clean, sizeof(clean), ins->reason);
        snprintf(reason, sizeof(reason), "messaggio del gestore %.60s non conforme (%s)",
                 ins->provider->name, clean);
        if (anomalia(e, o, reason, queue_id, out, err, errlen) < 0)
            return -1;
        summarize(out, "%s signed by %s but not valid (%s): busta di anomalia",
                  pec_kind_name(ins->kind), ins->provider->name, clean);
        return 0;
    }
    return ordinary(e, o, ins, queue_id, out, err, errlen);
}

int pec_rp_decide(const struct pec_rp_env *e, const struct pec_original *o, const char *queue_id,
                  struct pec_rp_outcome *out, char *err, size_t errlen)
{
    struct pec_inspect_opts opts = {.trust = e->trust, .index = e->index, .at_mode = PEC_AT_NOW};
    struct pec_inspection ins;
    unsigned char *copy;
    const unsigned char *msg;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    out->what = "?";
    msg = whole(o->raw, &copy);
    if (msg == NULL) {
        seterr(err, errlen, "cannot read the message back into memory for inspection: %s",
               strerror(errno));
        return -1;
    }
    pec_inspect(msg, pec_spool_size(o->raw), &opts, &ins);
    if (ins.temporary)
        seterr(err, errlen, "cannot inspect the message now: %s", ins.reason);
    else
        ret = decide(e, o, &ins, queue_id, out, err, errlen);
    if (ret == 0 && out->action == PEC_RP_ANOMALIA && o->n_fields > PEC_HEADER_FIELDS_MAX)
        unwrappable(e, o, queue_id, out);
    pec_inspection_free(&ins);
    free(copy);
    if (ret < 0)
        pec_rp_outcome_free(out);
    return ret;
}

void pec_rp_outcome_free(struct pec_rp_outcome *out)
{
    pec_built_free(&out->anomalia);
    pec_batch_free(out->batch);
    pec_spool_free(out->blob);
    memset(out, 0, sizeof(*out));
}
