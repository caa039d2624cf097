/*
 * reception - the reception point's decisions (see reception.h).
 */
#include "provider/reception.h"
#include "message/busta.h"
#include "util/clock.h"
#include "message/notice.h"
#include "provider/antivirus.h"
#include "provider/mailbox.h"
#include "store/quarantine.h"
#include "store/registro.h"
#include "provider/scheduler.h"
#include "message/verify.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void summarize(struct pec_rp_outcome *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void summarize(struct pec_rp_outcome *out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out->summary, sizeof(out->summary), fmt, ap);
    va_end(ap);
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

/*
 * Build notice N, keep its bytes in OUT until the commit and queue them in
 * OUT's batch (made when there is none) under IDENTIFICATIVO; *MESSAGE_ID
 * gets the notice's (the caller frees it).  0, or -1 with err.
 */
static int queue_notice(const struct pec_rp_env *e, const struct pec_notice *n,
                        const char *identificativo, struct pec_rp_outcome *out, char **message_id,
                        char *err, size_t errlen)
{
    struct pec_built b = {0};
    struct pec_spool *sp;
    const char *rcpt[1] = {n->to};

    if (pec_build_notice(e->iss, n, &b, err, errlen) < 0)
        return -1;
    sp = pec_spool_new(NULL, SIZE_MAX);
    out->blobs = xrealloc(out->blobs, (out->n_blobs + 1) * sizeof(*out->blobs));
    out->blobs[out->n_blobs++] = sp;
    if (pec_built_to_spool(&b, sp) != 0 || pec_spool_mem(sp) == NULL) {
        pec_seterr(err, errlen, "cannot serialise the %s: %s", pec_notice_kind_name(n->kind),
                   strerror(errno));
        pec_built_free(&b);
        return -1;
    }
    if (out->batch == NULL)
        out->batch = pec_batch_new();
    pec_batch_outbox(out->batch, &(struct pec_outmsg){
                                     .message_id = b.message_id,
                                     .identificativo = identificativo,
                                     .tipo = pec_notice_x_ricevuta(n->kind),
                                     .rcpt = rcpt,
                                     .nrcpt = 1,
                                     .data = pec_spool_mem(sp),
                                     .len = pec_spool_size(sp),
                                 });
    *message_id = b.message_id;
    b.message_id = NULL;
    pec_built_free(&b);
    return 0;
}

/* ------------------------------------------------------------ busta: presa in carico */

/*
 * A busta can reach us twice with the same identificativo: the sending MTA
 * did not get our answer to the first copy (we were killed after the store
 * commit, the connection broke) and sends it again.  The recipients a
 * presa in carico (or a rilevazione virus) we already emitted covers were
 * answered for; a second one, with a new Message-ID, would be a second
 * receipt for one event.  So those are struck from OWN; a clean busta
 * itself goes on (the delivery point puts one copy in each mailbox).
 */
struct taken {
    char **own;
    size_t *n;
    const char *label; /* of the records that answered: PresaInCarico, RilevazioneVirus */
};

static int strike_taken(const struct pec_record *r, void *arg)
{
    struct taken *t = arg;
    const char *p = strcmp(t->label, "PresaInCarico") == 0 ? r->ricezione : r->consegna;

    if (strcmp(r->label, t->label) != 0 || strcmp(r->evento, "emissione") != 0)
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

static int strike_already_taken(const struct pec_rp_env *e, const char *identificativo,
                                const char *label, char **own, size_t *n, char *err, size_t errlen)
{
    struct pec_log_filter f = {.identificativo = identificativo};
    struct taken t = {own, n, label};

    return pec_store_log_each(e->store, &f, strike_taken, &t, err, errlen) < 0 ? -1 : 0;
}

static int presa_in_carico(const struct pec_rp_env *e, const struct pec_original *o,
                           const struct pec_inspection *ins, const char *queue_id,
                           struct pec_rp_outcome *out, char *err, size_t errlen)
{
    const struct pec_daticert *f = &ins->daticert;
    const char *to = ins->provider->mail_receipt;
    char **own = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*own));
    size_t n = here(e, o, own);
    struct pec_daticert d = *f;
    struct pec_record rec;
    char *ricezione = NULL, *destinatari = NULL, *message_id = NULL;
    time_t when = pec_clock_now(e->iss->clock);
    int ret = -1;

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
    if (e->store != NULL &&
        strike_already_taken(e, f->identificativo, "PresaInCarico", own, &n, err, errlen) < 0)
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
    if (queue_notice(e,
                     &(struct pec_notice){
                         .kind = PEC_NOTICE_PRESA_IN_CARICO, .facts = &d, .to = to, .when = when},
                     f->identificativo, out, &message_id, err, errlen) < 0)
        goto done;
    ricezione = xjoin(own, n);
    destinatari = destinatari_of(f);
    pec_record_init(&rec, PEC_REG_PRESA_IN_CARICO, PEC_REG_EMISSIONE, when, f->identificativo);
    rec.queue_id = queue_id;
    rec.mittente = f->mittente;
    rec.destinatari = destinatari;
    rec.oggetto = f->oggetto;
    rec.message_id = message_id;
    rec.gestore = e->iss->provider_name;
    rec.ricezione = ricezione;
    pec_batch_record(out->batch, &rec);
    summarize(out, "busta %s from %s: presa in carico <%s> to %s for %s", f->identificativo,
              ins->provider->name, message_id, to, ricezione);
    ret = 0;

done:
    free(message_id);
    free(ricezione);
    free(destinatari);
    free(own);
    return ret;
}

/* ------------------------------------------------------------ busta: virus */

/*
 * A valid busta the antivirus found AV in: kept in the quarantine, not
 * passed on, and one rilevazione virus per recipient of ours to the
 * signer's mailReceipt, each with its record.
 */
static int rilevazione(const struct pec_rp_env *e, const struct pec_original *o,
                       const struct pec_inspection *ins, const struct pec_av_result *av,
                       const char *queue_id, struct pec_rp_outcome *out, char *err, size_t errlen)
{
    const struct pec_daticert *f = &ins->daticert;
    const char *to = ins->provider->mail_receipt;
    char **own = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*own));
    size_t n = here(e, o, own);
    time_t when = pec_clock_now(e->iss->clock);
    char *what = pec_utf8_sanitize(av->what, strlen(av->what)), *esteso = NULL, *virus = NULL;
    char *destinatari = NULL, *found = xasprintf("virus rilevato: %s", what), sha[PEC_HASH_HEX];
    struct pec_qfacts q = {.when = when,
                           .point = "reception",
                           .identificativo = f->identificativo,
                           .queue_id = queue_id,
                           .mittente = f->mittente,
                           .finding = av->what};
    int ret = -1;

    out->what = "virus";
    out->action = PEC_RP_DISCARD;
    out->batch = pec_batch_new();
    received(out->batch, ins, queue_id, own, n, when);
    if (pec_quarantine_put(e->cfg->quarantine_dir, o->raw, &q, sha, err, errlen) < 0)
        goto done;
    if (to == NULL || *to == '\0') {
        summarize(out,
                  "busta %s from %s: virus %s, quarantined as %s, not passed on; the provider "
                  "has no mailReceipt in the index, no rilevazione virus",
                  f->identificativo, ins->provider->name, what, sha);
        ret = 0;
        goto done;
    }
    if (e->store != NULL &&
        strike_already_taken(e, f->identificativo, "RilevazioneVirus", own, &n, err, errlen) < 0)
        goto done;
    if (n == 0) {
        summarize(out,
                  "busta %s from %s: virus %s, quarantined as %s, not passed on; its recipients "
                  "here had their rilevazione virus already, no second one",
                  f->identificativo, ins->provider->name, what, sha);
        ret = 0;
        goto done;
    }
    esteso = pec_errore_esteso("5.7.1", e->iss->provider_name, found);
    virus = pec_av_virus_field(av->what, sha);
    destinatari = destinatari_of(f);
    for (size_t i = 0; i < n; i++) {
        struct pec_daticert d = *f;
        struct pec_record rec;
        char *message_id = NULL;

        d.consegna = own[i];
        d.ricezione = NULL;
        d.n_ricezione = 0;
        d.errore = PEC_ERRORE_VIRUS;
        d.errore_esteso = esteso;
        if (queue_notice(e,
                         &(struct pec_notice){.kind = PEC_NOTICE_RILEVAZIONE_VIRUS,
                                              .facts = &d,
                                              .to = to,
                                              .virus = av->what,
                                              .when = when},
                         f->identificativo, out, &message_id, err, errlen) < 0)
            goto done;
        pec_record_init(&rec, PEC_REG_RILEVAZIONE_VIRUS, PEC_REG_EMISSIONE, when,
                        f->identificativo);
        rec.queue_id = queue_id;
        rec.mittente = f->mittente;
        rec.destinatari = destinatari;
        rec.oggetto = f->oggetto;
        rec.message_id = message_id;
        rec.gestore = e->iss->provider_name;
        rec.consegna = own[i];
        rec.errore = pec_errore_name(PEC_ERRORE_VIRUS);
        rec.virus = virus;
        rec.errore_esteso = esteso;
        pec_batch_record(out->batch, &rec);
        free(message_id);
    }
    summarize(out,
              "busta %s from %s: virus %s, quarantined as %s, not passed on; %zu rilevazione "
              "virus to %s",
              f->identificativo, ins->provider->name, what, sha, n, to);
    ret = 0;

done:
    free(what);
    free(found);
    free(esteso);
    free(virus);
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
        return -1; /* moved by mancata_consegna_virus() */
    default:
        return -2; /* ours to emit, not to receive: nothing to record */
    }
}

/*
 * What the antivirus found, as an errore-esteso "<code> - <gestore> -
 * virus rilevato: <name>" names it: the name; the description when it is
 * not in that form; NULL when there is no errore-esteso (the builder then
 * says "non identificato").  Caller frees.
 */
static char *finding_of(const char *esteso)
{
    const char *p = esteso, *dash;

    if (esteso == NULL || *esteso == '\0')
        return NULL;
    for (int i = 0; i < 2 && p != NULL; i++)
        p = (dash = strstr(p, " - ")) != NULL ? dash + 3 : NULL;
    p = p != NULL ? p : esteso;
    if (strncasecmp(p, "virus rilevato: ", 16) == 0)
        p += 16;
    return xstrdup(p);
}

static const struct pec_rcpt_info *tx_rcpt(const struct pec_tx_info *tx, const char *address)
{
    for (size_t i = 0; i < tx->nrcpt; i++)
        if (strcasecmp(tx->rcpt[i].address, address) == 0)
            return &tx->rcpt[i];
    return NULL;
}

/*
 * A rilevazione virus D about ADDRESS of our transaction TX: when the
 * recipient still awaits its outcome (sent, taken) or had only our 24 h
 * notice, the avviso di mancata consegna per virus to our user, its record,
 * the recipient failed; all of it expecting the recipient as TX has it.
 * 1 when queued, 0 when nothing was owed, -1 with err.
 */
static int mancata_consegna_virus(const struct pec_rp_env *e, const struct pec_daticert *d,
                                  const struct pec_tx_info *tx, const char *address,
                                  const char *queue_id, time_t when, struct pec_rp_outcome *out,
                                  char *err, size_t errlen)
{
    const struct pec_rcpt_info *r = tx_rcpt(tx, address);
    unsigned open = 1u << PEC_RCPT_SENT | 1u << PEC_RCPT_TAKEN | 1u << PEC_RCPT_TIMEDOUT;
    struct pec_daticert f = *d;
    struct pec_record rec;
    char *finding, *message_id = NULL, *destinatari;

    if (r == NULL || !r->certificato || !(open & 1u << r->state))
        return 0;
    finding = finding_of(d->errore_esteso);
    f.consegna = (char *)address;
    f.ricezione = NULL;
    f.n_ricezione = 0;
    f.errore = PEC_ERRORE_VIRUS;
    f.mittente = d->mittente ? d->mittente : tx->mittente;
    f.risposte = d->risposte ? d->risposte : f.mittente;
    if (queue_notice(e,
                     &(struct pec_notice){.kind = PEC_NOTICE_MANCATA_CONSEGNA_VIRUS,
                                          .facts = &f,
                                          .to = tx->mittente,
                                          .virus = finding,
                                          .when = when},
                     d->identificativo, out, &message_id, err, errlen) < 0) {
        free(finding);
        return -1;
    }
    pec_batch_expect(out->batch, d->identificativo, r->address, 1u << r->state, 0);
    pec_batch_rcpt_state(out->batch, d->identificativo, r->address, PEC_RCPT_FAILED, when,
                         d->errore_esteso);
    pec_sched_heard(out->batch, tx, r->address, when, e->cfg->warning_after);
    destinatari = destinatari_of(d);
    pec_record_init(&rec, PEC_REG_MANCATA_CONSEGNA_VIRUS, PEC_REG_EMISSIONE, when,
                    d->identificativo);
    rec.queue_id = queue_id;
    rec.mittente = f.mittente;
    rec.destinatari = destinatari;
    rec.oggetto = d->oggetto;
    rec.message_id = message_id;
    rec.gestore = e->iss->provider_name;
    rec.consegna = r->address;
    rec.errore = pec_errore_name(PEC_ERRORE_VIRUS);
    rec.virus = finding;
    rec.errore_esteso = d->errore_esteso;
    pec_batch_record(out->batch, &rec);
    free(destinatari);
    free(message_id);
    free(finding);
    return 1;
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
    char *destinatari, *ricezione, *message_id, *finding;
    time_t when;
    int known, state, owed = 0;

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
    } else if (d->tipo == PEC_TIPO_RILEVAZIONE_VIRUS) {
        /* one recipient in consegna; before daticert 2.1, in ricezione */
        for (size_t i = 0; i < (d->consegna ? 1 : d->n_ricezione) && owed >= 0; i++) {
            int one = mancata_consegna_virus(e, d, &tx, d->consegna ? d->consegna : d->ricezione[i],
                                             queue_id, when, out, err, errlen);
            owed = one < 0 ? -1 : owed + one;
        }
    }
    pec_tx_info_free(&tx);
    if (owed < 0)
        return -1;
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
    if (d->tipo == PEC_TIPO_ERRORE_CONSEGNA || d->tipo == PEC_TIPO_RILEVAZIONE_VIRUS)
        rec.errore = pec_errore_name(d->errore);
    finding = d->tipo == PEC_TIPO_RILEVAZIONE_VIRUS ? finding_of(d->errore_esteso) : NULL;
    rec.virus = finding;
    rec.errore_esteso = d->errore_esteso;
    pec_batch_record(out->batch, &rec);
    summarize(out, "notice %s about our %s from %s (%s): recorded%s", x, d->identificativo,
              ins->provider->name,
              d->consegna  ? d->consegna
              : *ricezione ? ricezione
                           : "every recipient",
              owed > 0 ? "; avviso di mancata consegna per virus to the sender" : "");
    free(destinatari);
    free(ricezione);
    free(message_id);
    free(finding);
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
 * OUT, which was to become a busta di anomalia, refused instead with RCODE XCODE: the
 * anomaly and its batch dropped (the caller writes the text and, for a refusal for good,
 * the record of refused mail).
 */
static void refuse_instead(struct pec_rp_outcome *out, const char *rcode, const char *xcode)
{
    pec_built_free(&out->anomalia);
    pec_batch_free(out->batch);
    out->batch = NULL;
    out->action = PEC_RP_REJECT;
    out->rcode = rcode;
    out->xcode = xcode;
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
    refuse_instead(out, "552", "5.6.0");
    snprintf(out->text, sizeof(out->text),
             "%s (the message has %zu header fields, over the %d a busta di anomalia can be "
             "made of)",
             reason, o->n_fields, PEC_HEADER_FIELDS_MAX);
    summarize(out, "%.900s, but %zu header fields: refused instead", was, o->n_fields);
    refused(e, o, reason, queue_id, out);
}

/*
 * Wrapped mail for a mailbox that does not exist would be refused by the delivery
 * point and bounced, later, to a sender nobody verified (backscatter): while the SMTP
 * session is open, ask the mailboxes of our recipients, and refuse the whole message
 * when one does not exist (a milter cannot refuse one recipient at end of message),
 * or defer it when the mailboxes cannot tell now.  A valid busta is not asked about:
 * its sender is a provider, and it is owed an avviso di mancata consegna.
 */
static void no_mailbox(const struct pec_rp_env *e, const struct pec_original *o,
                       const char *queue_id, struct pec_rp_outcome *out)
{
    struct pec_mbox_conf mc = {.backend = e->cfg->mailbox_backend,
                               .maildir_root = e->cfg->maildir_root,
                               .lmtp = e->cfg->mailbox_lmtp,
                               .hostname = "pecmilter-reception",
                               .timeout = 30};
    char **own = xcalloc(o->n_rcpts ? o->n_rcpts : 1, sizeof(*own)), reason[700], clean[300],
         was[sizeof(out->summary)];
    size_t n = here(e, o, own), bad = n;
    struct pec_mbox_result *res = xcalloc(n ? n : 1, sizeof(*res));

    pec_mbox_probe(&mc, (const char *const *)own, n, res);
    for (size_t i = 0; i < n && bad == n; i++)
        if (res[i].status == PEC_MBOX_PERM)
            bad = i;
    for (size_t i = 0; i < n && bad == n; i++)
        if (res[i].status == PEC_MBOX_TEMP)
            bad = i;
    if (bad < n) {
        const struct pec_mbox_result *r = &res[bad];
        int perm = r->status == PEC_MBOX_PERM;

        ascii_copy(clean, sizeof(clean), own[bad]);
        snprintf(was, sizeof(was), "%s", out->summary);
        refuse_instead(out, perm ? "550" : "451", perm ? "5.1.1" : "4.3.0");
        snprintf(out->text, sizeof(out->text),
                 perm ? "<%s>: casella inesistente, il messaggio non e' stato accettato per alcun "
                        "destinatario (no such mailbox; no recipient of this message took it)"
                      : "<%s>: casella non verificabile ora, riprovare (cannot check the mailbox "
                        "now; try again later)",
                 clean);
        snprintf(reason, sizeof(reason), "%s: %d %s %.200s", clean, r->code, r->esc, r->text);
        summarize(out, "%.800s, but %s: %s", was, reason, perm ? "refused" : "deferred");
        if (perm)
            refused(e, o, reason, queue_id, out);
    }
    free(res);
    free(own);
}

/* ------------------------------------------------------------ the decision */

static int route(const struct pec_rp_env *e, const struct pec_original *o,
                 const struct pec_inspection *ins, const char *queue_id, struct pec_rp_outcome *out,
                 char *err, size_t errlen)
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

/*
 * What the antivirus need not see: a valid notice about its signer's own
 * party (it passes unchanged, and carries nothing but our own user's
 * original), and ordinary mail the policy refuses anyway.
 */
static int unscanned_ok(const struct pec_rp_env *e, const struct pec_inspection *ins)
{
    int listed = ins->signature_ok && ins->provider != NULL;

    if (ins->valid && ins->kind == PEC_KIND_NOTICE)
        return !ins->has_daticert || not_signers_party(ins) == NULL;
    return !ins->valid && !listed && strcmp(e->cfg->ordinary_mail, "reject") == 0;
}

static int decide(const struct pec_rp_env *e, const struct pec_original *o,
                  const struct pec_inspection *ins, const char *queue_id,
                  struct pec_rp_outcome *out, char *err, size_t errlen)
{
    struct pec_av_result av;
    char what[200], reason[240];

    if (unscanned_ok(e, ins))
        return route(e, o, ins, queue_id, out, err, errlen);
    pec_av_scan(e->cfg, o->raw, &av);
    if (av.verdict == PEC_AV_CLEAN || av.verdict == PEC_AV_OFF)
        return route(e, o, ins, queue_id, out, err, errlen);
    if (av.verdict == PEC_AV_INFECTED && ins->valid && ins->kind == PEC_KIND_BUSTA &&
        unnamed_recipient(e, o, &ins->daticert) == NULL)
        return rilevazione(e, o, ins, &av, queue_id, out, err, errlen);
    out->action = PEC_RP_REJECT;
    out->what = av.verdict == PEC_AV_INFECTED ? "virus" : "unscanned";
    ascii_copy(what, sizeof(what), av.what);
    if (av.verdict == PEC_AV_FAILED) {
        pec_av_unscanned_reply(e->cfg, &out->rcode, &out->xcode, out->text, sizeof(out->text));
        summarize(out, "%s not scanned (%s): %s", pec_kind_name(ins->kind), what,
                  out->rcode[0] == '4' ? "deferred" : "refused (on_scan_error = reject)");
        return 0;
    }
    out->rcode = "554";
    out->xcode = "5.7.1";
    snprintf(out->text, sizeof(out->text),
             "Messaggio rifiutato: virus rilevato: %s (refused: virus found: %s)", what, what);
    snprintf(reason, sizeof(reason), "virus rilevato: %s", what);
    refused(e, o, reason, queue_id, out);
    summarize(out, "%s%s with virus %s: refused", ins->valid ? "valid " : "",
              pec_kind_name(ins->kind), what);
    return 0;
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
    msg = pec_spool_whole(o->raw, &copy);
    if (msg == NULL) {
        pec_seterr(err, errlen, "cannot read the message back into memory for inspection: %s",
                   strerror(errno));
        return -1;
    }
    pec_inspect(msg, pec_spool_size(o->raw), &opts, &ins);
    if (ins.temporary)
        pec_seterr(err, errlen, "cannot inspect the message now: %s", ins.reason);
    else
        ret = decide(e, o, &ins, queue_id, out, err, errlen);
    if (ret == 0 && out->action == PEC_RP_ANOMALIA && o->n_fields > PEC_HEADER_FIELDS_MAX)
        unwrappable(e, o, queue_id, out);
    if (ret == 0 && out->action == PEC_RP_ANOMALIA)
        no_mailbox(e, o, queue_id, out);
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
    for (size_t i = 0; i < out->n_blobs; i++)
        pec_spool_free(out->blobs[i]);
    free(out->blobs);
    memset(out, 0, sizeof(*out));
}
