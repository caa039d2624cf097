/*
 * store - the backend-neutral half of the store: batches, names, and freeing
 * what the backend hands out.
 *
 * A batch deep-copies every string it is given, so the caller may build it
 * from short-lived buffers (a milter message context, say) and commit it
 * later, or retry a failed commit; only a message's bytes are borrowed,
 * because a ricevuta completa may carry a 30 MB original and one copy of it
 * is enough.  The backends (db_commit.c, for both) read the batch through
 * store_int.h.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

static char *dup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

struct pec_batch *pec_batch_new(void)
{
    return xcalloc(1, sizeof(struct pec_batch));
}

static void free_tx(struct pec_tx *tx)
{
    free((char *)tx->identificativo);
    free((char *)tx->client_msgid);
    free((char *)tx->mittente);
    free((char *)tx->risposte);
    free((char *)tx->oggetto);
    free((char *)tx->tipo_ricevuta);
    free((char *)tx->queue_id);
    for (size_t i = 0; i < tx->nrcpt; i++)
        free((char *)tx->rcpt[i].address);
    free((struct pec_tx_rcpt *)tx->rcpt);
}

void pec_batch_free(struct pec_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->ntx; i++)
        free_tx(&b->tx[i]);
    free(b->tx);
    for (size_t i = 0; i < b->nstate; i++) {
        free(b->state[i].identificativo);
        free(b->state[i].address);
        free(b->state[i].detail);
    }
    free(b->state);
    for (size_t i = 0; i < b->nout; i++) {
        struct batch_out *o = &b->out[i];
        free(o->message_id);
        free(o->identificativo);
        free(o->tipo);
        for (size_t j = 0; j < o->nrcpt; j++)
            free(o->rcpt[j]);
        free(o->rcpt);
    }
    free(b->out);
    for (size_t i = 0; i < b->nrec; i++)
        for (size_t j = 0; j < sizeof(b->rec[i].owned) / sizeof(b->rec[i].owned[0]); j++)
            free(b->rec[i].owned[j]);
    free(b->rec);
    for (size_t i = 0; i < b->nwarned; i++) {
        free(b->warned[i].identificativo);
        free(b->warned[i].address);
    }
    free(b->warned);
    for (size_t i = 0; i < b->ndelivered; i++) {
        free(b->delivered[i].mailbox);
        free(b->delivered[i].message_id);
    }
    free(b->delivered);
    for (size_t i = 0; i < b->nrefused; i++) {
        pec_refusal_free(&b->refused[i].r);
        free(b->refused[i].mittente);
        free(b->refused[i].client_msgid);
    }
    free(b->refused);
    for (size_t i = 0; i < b->nexpect; i++) {
        free(b->expect[i].identificativo);
        free(b->expect[i].address);
    }
    free(b->expect);
    free(b);
}

void pec_batch_tx(struct pec_batch *b, const struct pec_tx *tx)
{
    struct pec_tx *c;
    struct pec_tx_rcpt *r = xcalloc(tx->nrcpt ? tx->nrcpt : 1, sizeof(*r));

    b->tx = xrealloc(b->tx, (b->ntx + 1) * sizeof(*b->tx));
    c = &b->tx[b->ntx++];
    c->identificativo = dup_or_empty(tx->identificativo);
    c->client_msgid = dup_or_empty(tx->client_msgid);
    c->mittente = dup_or_empty(tx->mittente);
    c->risposte = dup_or_empty(tx->risposte);
    c->oggetto = dup_or_empty(tx->oggetto);
    c->tipo_ricevuta = dup_or_empty(tx->tipo_ricevuta);
    c->queue_id = dup_or_empty(tx->queue_id);
    c->submitted = tx->submitted;
    for (size_t i = 0; i < tx->nrcpt; i++) {
        r[i].address = dup_or_empty(tx->rcpt[i].address);
        r[i].certificato = tx->rcpt[i].certificato;
        r[i].cc = tx->rcpt[i].cc;
    }
    c->rcpt = r;
    c->nrcpt = tx->nrcpt;
}

void pec_batch_rcpt_state(struct pec_batch *b, const char *identificativo, const char *address,
                          enum pec_rcpt_state state, time_t when, const char *detail)
{
    struct batch_state *s;

    b->state = xrealloc(b->state, (b->nstate + 1) * sizeof(*b->state));
    s = &b->state[b->nstate++];
    s->identificativo = dup_or_empty(identificativo);
    s->address = address ? xstrdup(address) : NULL;
    s->state = state;
    s->when = when;
    s->detail = dup_or_empty(detail);
}

void pec_batch_rcpt_warned(struct pec_batch *b, const char *identificativo, const char *address,
                           time_t when)
{
    struct batch_warned *w;

    b->warned = xrealloc(b->warned, (b->nwarned + 1) * sizeof(*b->warned));
    w = &b->warned[b->nwarned++];
    w->identificativo = dup_or_empty(identificativo);
    w->address = dup_or_empty(address);
    w->when = when;
}

void pec_batch_expect(struct pec_batch *b, const char *identificativo, const char *address,
                      unsigned states, int unwarned)
{
    struct batch_expect *e;

    b->expect = xrealloc(b->expect, (b->nexpect + 1) * sizeof(*b->expect));
    e = &b->expect[b->nexpect++];
    e->identificativo = dup_or_empty(identificativo);
    e->address = dup_or_empty(address);
    e->states = states;
    e->unwarned = unwarned;
}

void pec_batch_delivered(struct pec_batch *b, const char *mailbox, const char *message_id,
                         time_t when)
{
    struct batch_delivered *d;

    b->delivered = xrealloc(b->delivered, (b->ndelivered + 1) * sizeof(*b->delivered));
    d = &b->delivered[b->ndelivered++];
    d->mailbox = dup_or_empty(mailbox);
    d->message_id = dup_or_empty(message_id);
    d->when = when;
}

void pec_batch_refused(struct pec_batch *b, const char *mittente, const char *client_msgid,
                       const struct pec_refusal *r)
{
    struct batch_refused *d;

    b->refused = xrealloc(b->refused, (b->nrefused + 1) * sizeof(*b->refused));
    d = &b->refused[b->nrefused++];
    d->mittente = dup_or_empty(mittente);
    d->client_msgid = dup_or_empty(client_msgid);
    d->r.identificativo = dup_or_empty(r->identificativo);
    d->r.oggetto = dup_or_empty(r->oggetto);
    d->r.errore = dup_or_empty(r->errore);
    d->r.when = r->when;
}

void pec_refusal_free(struct pec_refusal *r)
{
    free(r->identificativo);
    free(r->oggetto);
    free(r->errore);
    memset(r, 0, sizeof(*r));
}

void pec_batch_outbox(struct pec_batch *b, const struct pec_outmsg *m)
{
    struct batch_out *o;

    b->out = xrealloc(b->out, (b->nout + 1) * sizeof(*b->out));
    o = &b->out[b->nout++];
    o->message_id = dup_or_empty(m->message_id);
    o->identificativo = dup_or_empty(m->identificativo);
    o->tipo = dup_or_empty(m->tipo);
    o->rcpt = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof(char *));
    for (size_t i = 0; i < m->nrcpt; i++)
        o->rcpt[i] = dup_or_empty(m->rcpt[i]);
    o->nrcpt = m->nrcpt;
    o->data = m->data;
    o->len = m->len;
}

/* Copy one string field of a record into the batch's keeping. */
static const char *keep(struct batch_record *br, size_t *n, const char *s)
{
    br->owned[*n] = dup_or_empty(s);
    return br->owned[(*n)++];
}

void pec_batch_record(struct pec_batch *b, const struct pec_record *r)
{
    struct batch_record *br;
    size_t n = 0;

    b->rec = xrealloc(b->rec, (b->nrec + 1) * sizeof(*b->rec));
    br = &b->rec[b->nrec++];
    memset(br, 0, sizeof(*br));
    br->r.at = r->at;
    br->r.evento = keep(br, &n, r->evento);
    br->r.tipo = keep(br, &n, r->tipo);
    br->r.label = keep(br, &n, r->label);
    br->r.identificativo = keep(br, &n, r->identificativo);
    br->r.queue_id = keep(br, &n, r->queue_id);
    br->r.mittente = keep(br, &n, r->mittente);
    br->r.destinatari = keep(br, &n, r->destinatari);
    br->r.oggetto = keep(br, &n, r->oggetto);
    br->r.message_id = keep(br, &n, r->message_id);
    br->r.gestore = keep(br, &n, r->gestore);
    br->r.tipo_ricevuta = keep(br, &n, r->tipo_ricevuta);
    br->r.consegna = keep(br, &n, r->consegna);
    br->r.ricezione = keep(br, &n, r->ricezione);
    br->r.errore = keep(br, &n, r->errore);
    br->r.virus = keep(br, &n, r->virus);
    br->r.errore_esteso = keep(br, &n, r->errore_esteso);
    br->r.client_msgid = keep(br, &n, r->client_msgid);
}

const char *pec_rcpt_state_name(enum pec_rcpt_state s)
{
    switch (s) {
    case PEC_RCPT_SENT:
        return "sent";
    case PEC_RCPT_TAKEN:
        return "taken";
    case PEC_RCPT_DELIVERED:
        return "delivered";
    case PEC_RCPT_FAILED:
        return "failed";
    case PEC_RCPT_TIMEDOUT:
        return "timedout";
    }
    return "?";
}

const char *pec_outbox_state_name(enum pec_outbox_state s)
{
    switch (s) {
    case PEC_OUT_QUEUED:
        return "queued";
    case PEC_OUT_SENDING:
        return "sending";
    case PEC_OUT_SENT:
        return "sent";
    case PEC_OUT_FAILED:
        return "failed";
    }
    return "?";
}

void pec_tx_info_free(struct pec_tx_info *tx)
{
    if (tx == NULL)
        return;
    free(tx->identificativo);
    free(tx->client_msgid);
    free(tx->mittente);
    free(tx->risposte);
    free(tx->oggetto);
    free(tx->tipo_ricevuta);
    free(tx->queue_id);
    for (size_t i = 0; i < tx->nrcpt; i++) {
        free(tx->rcpt[i].address);
        free(tx->rcpt[i].detail);
    }
    free(tx->rcpt);
    memset(tx, 0, sizeof(*tx));
}

void pec_outbox_row_free(struct pec_outbox_row *row)
{
    if (row == NULL)
        return;
    free(row->message_id);
    free(row->identificativo);
    free(row->tipo);
    for (size_t i = 0; i < row->nrcpt; i++)
        free(row->rcpt[i]);
    free(row->rcpt);
    free(row->data);
    free(row->last_error);
    free(row->mta_queue_id);
    memset(row, 0, sizeof(*row));
}
