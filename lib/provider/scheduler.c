/*
 * scheduler - the sender side's timeout notices and the log's daily seal
 * and purge, for a given NOW.
 *
 * A run reads the pending recipients oldest first and stops as soon as
 * nothing further can be due before what it has seen, so a run costs what
 * is due, not what is pending.  What is due is then handled one transaction
 * at a time: read it whole (every recipient is in the notices'
 * intestazione), build its notices, commit them.
 */
#include "provider/scheduler.h"
#include "message/notice.h"
#include "store/quarantine.h"
#include "store/registro.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The words of the builder's errore-esteso for the two notices (notice.c). */
static const char *const timeout_words[2] = {
    "messaggio non consegnato entro 12 ore dall'invio",
    "messaggio non consegnato entro 24 ore dall'invio",
};
static const char *const timeout_code[2] = {"4.4.7", "5.4.1"};

/* One recipient with a notice due. */
struct due {
    char *identificativo;
    char *address;
    enum pec_rcpt_state state;
    int warn;   /* the 12 h notice is due */
    int expire; /* the final notice is due */
};

struct walk {
    const struct pec_sched_conf *conf;
    time_t now;
    long long final_after; /* deadline_after, never below deadline_not_before */
    struct due *v;
    size_t n;
    size_t ntx;  /* distinct transactions in v */
    time_t next; /* earliest future due instant seen, 0: none */
    int more;    /* stopped at PEC_SCHED_BATCH transactions */
};

static void later(struct walk *w, time_t t)
{
    if (t > w->now && (w->next == 0 || t < w->next))
        w->next = t;
}

static int on_pending(const struct pec_pending_rcpt *r, void *arg)
{
    struct walk *w = arg;
    long long first =
        w->conf->warning_after < w->final_after ? w->conf->warning_after : w->final_after;
    time_t t12 = (time_t)(r->sent_at + w->conf->warning_after);
    time_t t24 = (time_t)(r->sent_at + w->final_after);
    /* a mark (pec_sched_heard) owes the 12 h notice whatever the state */
    int warn = (r->state == PEC_RCPT_SENT && r->warned_at == 0) || r->warned_at == PEC_WARN_OWED;
    int open = r->state == PEC_RCPT_SENT || r->state == PEC_RCPT_TAKEN;
    struct due *d;

    /* everything from here on falls due at sent_at + first or later */
    if (w->next != 0 && w->next <= (time_t)(r->sent_at + first))
        return 1;
    if (warn && t12 > w->now)
        later(w, t12);
    if (open)
        later(w, t24);
    if (!(warn && t12 <= w->now) && !(open && t24 <= w->now))
        return 0;
    if (w->n == 0 || strcmp(w->v[w->n - 1].identificativo, r->identificativo) != 0) {
        if (w->ntx == PEC_SCHED_BATCH) {
            w->more = 1;
            return 1;
        }
        w->ntx++;
    }
    w->v = xrealloc(w->v, (w->n + 1) * sizeof(*w->v));
    d = &w->v[w->n++];
    d->identificativo = xstrdup(r->identificativo);
    d->address = xstrdup(r->address);
    d->state = r->state;
    d->warn = warn && t12 <= w->now;
    d->expire = open && t24 <= w->now;
    return 0;
}

void pec_sched_heard(struct pec_batch *b, const struct pec_tx_info *tx, const char *address,
                     time_t when, long long warning_after)
{
    for (size_t i = 0; i < tx->nrcpt; i++) {
        const struct pec_rcpt_info *r = &tx->rcpt[i];
        time_t first;

        if (strcasecmp(r->address, address) != 0 || !r->certificato || r->warned_at != 0 ||
            (r->state != PEC_RCPT_SENT && r->state != PEC_RCPT_TAKEN))
            continue;
        first = r->state == PEC_RCPT_TAKEN && r->taken_at != 0 ? r->taken_at : when;
        /* the store applies the mark only while no notice is recorded: no race with a run */
        if (first >= (time_t)(r->sent_at + warning_after))
            pec_batch_rcpt_warned(b, tx->identificativo, r->address, PEC_WARN_OWED);
    }
}

static void walk_free(struct walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->v[i].identificativo);
        free(w->v[i].address);
    }
    free(w->v);
}

/* What every notice of one transaction is made of. */
struct txfacts {
    struct pec_tx_info tx;
    struct pec_destinatario *dest;
    int *is_cc;
    char *destinatari; /* for the log records */
    char *msgid;
};

static void txfacts_init(struct txfacts *t)
{
    const struct pec_tx_info *tx = &t->tx;
    struct pec_dest *logdest = xcalloc(tx->nrcpt ? tx->nrcpt : 1, sizeof(*logdest));

    t->dest = xcalloc(tx->nrcpt ? tx->nrcpt : 1, sizeof(*t->dest));
    t->is_cc = xcalloc(tx->nrcpt ? tx->nrcpt : 1, sizeof(*t->is_cc));
    for (size_t i = 0; i < tx->nrcpt; i++) {
        t->dest[i].address = tx->rcpt[i].address;
        t->dest[i].tipo = tx->rcpt[i].certificato ? PEC_DEST_CERTIFICATO : PEC_DEST_ESTERNO;
        t->is_cc[i] = tx->rcpt[i].cc;
        logdest[i].address = tx->rcpt[i].address;
        logdest[i].certificato = tx->rcpt[i].certificato;
    }
    t->destinatari = pec_destinatari_format(logdest, tx->nrcpt);
    free(logdest);
    /* the store keeps the client's id as the original had it, brackets and all */
    if (tx->client_msgid[0] == '\0')
        t->msgid = NULL;
    else if (tx->client_msgid[0] == '<')
        t->msgid = xstrdup(tx->client_msgid);
    else
        t->msgid = xasprintf("<%s>", tx->client_msgid);
}

static void txfacts_free(struct txfacts *t)
{
    free(t->dest);
    free(t->is_cc);
    free(t->destinatari);
    free(t->msgid);
    pec_tx_info_free(&t->tx);
}

/* The messages of one commit: their bytes are borrowed by the batch until then.
 */
struct built_list {
    struct pec_spool **sp;
    size_t n;
};

static void built_list_free(struct built_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        pec_spool_free(l->sp[i]);
    free(l->sp);
}

/* Build one notice about ADDRESS and add it, its record and its state change to
 * B. */
static int add_notice(struct pec_batch *b, struct built_list *keep, const struct pec_issuer *iss,
                      const struct txfacts *t, const char *address, int final, time_t now,
                      char *err, size_t errlen)
{
    enum pec_notice_kind kind = final ? PEC_NOTICE_PREAVVISO_24H : PEC_NOTICE_PREAVVISO_12H;
    const struct pec_tx_info *tx = &t->tx;
    struct pec_daticert f;
    struct pec_built built;
    struct pec_spool *sp;
    struct pec_record r;
    const char *rcpt[1] = {tx->mittente};
    char *esteso;

    memset(&f, 0, sizeof(f));
    f.mittente = tx->mittente;
    f.destinatari = t->dest;
    f.n_destinatari = tx->nrcpt;
    /* the busta's risposte: the original's Reply-To (pec-rules.md 3.2); older rows kept none */
    f.risposte = tx->risposte != NULL && *tx->risposte != '\0' ? tx->risposte : tx->mittente;
    f.oggetto = tx->oggetto;
    f.identificativo = tx->identificativo;
    f.msgid = t->msgid;
    f.consegna = (char *)address;
    if (pec_build_notice(
            iss,
            &(struct pec_notice){
                .kind = kind, .facts = &f, .to = tx->mittente, .is_cc = t->is_cc, .when = now},
            &built, err, errlen) < 0)
        return -1;
    sp = pec_spool_new(NULL, SIZE_MAX);
    if (pec_built_to_spool(&built, sp) != 0 || pec_spool_mem(sp) == NULL) {
        snprintf(err, errlen, "%s: cannot serialise the %s: %s", tx->identificativo,
                 pec_notice_kind_name(kind), strerror(errno));
        pec_spool_free(sp);
        pec_built_free(&built);
        return -1;
    }
    keep->sp = xrealloc(keep->sp, (keep->n + 1) * sizeof(*keep->sp));
    keep->sp[keep->n++] = sp;
    pec_batch_outbox(b, &(struct pec_outmsg){
                            .message_id = built.message_id,
                            .identificativo = tx->identificativo,
                            .tipo = pec_tipo_name(pec_notice_tipo(kind)),
                            .rcpt = rcpt,
                            .nrcpt = 1,
                            .data = pec_spool_mem(sp),
                            .len = pec_spool_size(sp),
                        });
    esteso = pec_errore_esteso(timeout_code[final], iss->provider_name, timeout_words[final]);
    pec_record_init(&r, final ? PEC_REG_MANCATA_CONSEGNA_24H : PEC_REG_MANCATA_CONSEGNA_12H,
                    PEC_REG_EMISSIONE, now, tx->identificativo);
    r.queue_id = tx->queue_id;
    r.mittente = tx->mittente;
    r.destinatari = t->destinatari;
    r.oggetto = tx->oggetto;
    r.message_id = built.message_id;
    r.gestore = iss->provider_name;
    r.consegna = address;
    r.errore = pec_errore_name(pec_notice_errore(kind, PEC_ERRORE_NESSUNO));
    r.errore_esteso = esteso;
    pec_batch_record(b, &r);
    if (final)
        pec_batch_rcpt_state(b, tx->identificativo, address, PEC_RCPT_TIMEDOUT, now, esteso);
    else
        pec_batch_rcpt_warned(b, tx->identificativo, address, now);
    free(esteso);
    pec_built_free(&built);
    return 0;
}

/*
 * The notices due for V[0..N) (one transaction) in one commit.  0 done,
 * 1 the transaction changed meanwhile (or is gone), -1 with err.
 */
static int one_tx(struct pec_store *st, const struct pec_issuer *iss, const struct due *v, size_t n,
                  time_t now, struct pec_sched_result *res, char *err, size_t errlen)
{
    struct txfacts t;
    struct pec_batch *b;
    struct built_list keep = {NULL, 0};
    int rc, warned = 0, expired = 0;

    memset(&t, 0, sizeof(t));
    rc = pec_store_tx_get(st, v[0].identificativo, &t.tx, err, errlen);
    if (rc <= 0)
        return rc < 0 ? -1 : 1;
    txfacts_init(&t);
    b = pec_batch_new();
    for (size_t i = 0; i < n; i++) {
        /* exactly as read, or the notices are not owed any more */
        pec_batch_expect(b, v[i].identificativo, v[i].address,
                         1u << v[i].state | (v[i].warn ? 0 : 1u << PEC_RCPT_TAKEN), v[i].warn);
        if (v[i].warn && add_notice(b, &keep, iss, &t, v[i].address, 0, now, err, errlen) < 0)
            goto fail;
        warned += v[i].warn;
        if (v[i].expire && add_notice(b, &keep, iss, &t, v[i].address, 1, now, err, errlen) < 0)
            goto fail;
        expired += v[i].expire;
    }
    rc = pec_store_commit(st, b, err, errlen);
    if (rc == 0) {
        res->warned += warned;
        res->expired += expired;
    }
    pec_batch_free(b);
    built_list_free(&keep);
    txfacts_free(&t);
    return rc;
fail:
    pec_batch_free(b);
    built_list_free(&keep);
    txfacts_free(&t);
    return -1;
}

int pec_sched_timeouts(struct pec_store *st, const struct pec_issuer *iss,
                       const struct pec_sched_conf *conf, time_t now, struct pec_sched_result *res,
                       time_t *next_due, char *err, size_t errlen)
{
    struct walk w;
    int rc = 0, failed = 0;
    char why[1024];

    memset(res, 0, sizeof(*res));
    memset(&w, 0, sizeof(w));
    w.conf = conf;
    w.now = now;
    w.final_after = conf->deadline_after < conf->deadline_not_before ? conf->deadline_not_before
                                                                     : conf->deadline_after;
    *next_due = 0;
    if (pec_store_pending_each(st, 0, on_pending, &w, err, errlen) < 0) {
        walk_free(&w);
        return -1;
    }
    for (size_t i = 0; i < w.n;) {
        size_t j = i + 1;
        while (j < w.n && strcmp(w.v[j].identificativo, w.v[i].identificativo) == 0)
            j++;
        rc = one_tx(st, iss, &w.v[i], j - i, now, res, why, sizeof(why));
        if (rc == 1) {
            res->raced++;
            w.more = 1;
        } else if (rc < 0 && !failed) {
            /* the first failure is reported; the other transactions still get theirs
             */
            snprintf(err, errlen, "%s: %s", w.v[i].identificativo, why);
            failed = 1;
        }
        i = j;
    }
    *next_due = w.more ? now : w.next;
    walk_free(&w);
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- the log's
 * day */

time_t pec_sched_seal_time(time_t now)
{
    struct tm tm;
    time_t t;

    if (localtime_r(&now, &tm) == NULL)
        return now + 86400;
    /* the next local midnight; mktime normalises day 32 and finds the offset of
     * that day */
    tm.tm_mday++;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    t = mktime(&tm);
    if (t == (time_t)-1 || t <= now)
        return now + 86400;
    return t + PEC_SCHED_SEAL_DELAY;
}

int pec_sched_seal_purge(struct pec_store *st, const struct pec_signer *signer,
                         const struct pec_sched_keep *k, time_t now, struct pec_sched_kept *out,
                         char *err, size_t errlen)
{
    char why[1024];
    int held, rc = -1;

    memset(out, 0, sizeof(*out));
    held = pec_store_job_take(st, "housekeeping", k->node, now, now + PEC_SCHED_KEEP_LEASE, why,
                              sizeof(why));
    if (held <= 0) {
        if (held < 0)
            snprintf(err, errlen, "daily seal: %s", why);
        out->elsewhere = held == 0;
        return held;
    }
    if (pec_registro_seal(st, signer, k->gestore, k->seal_dir, now, &out->sealed, why,
                          sizeof(why)) < 0)
        snprintf(err, errlen, "daily seal: %s", why);
    else if (pec_registro_purge(st, k->seal_dir, k->months, now, &out->purged, why, sizeof(why)) <
             0)
        snprintf(err, errlen, "retention purge: %s", why);
    else if (pec_quarantine_purge(k->quarantine_dir, k->virus_months, now, &out->virus_purged, why,
                                  sizeof(why)) < 0)
        snprintf(err, errlen, "retention purge of the quarantine: %s", why);
    else
        rc = 0;
    /* given back either way: this node or another may try again at once */
    if (pec_store_job_done(st, "housekeeping", k->node, why, sizeof(why)) < 0 && rc == 0) {
        snprintf(err, errlen, "daily seal: %s", why);
        rc = -1;
    }
    return rc;
}
