/*
 * reception - the reception point role: what other providers and the
 * Internet send to our PEC domains, on the port-25 smtpd.
 *
 * The message is fed, as it arrives, into a spool (lib/message/feed.h), and at end
 * of message libpec decides (lib/provider/reception.h): pass it on unchanged, make it
 * a busta di anomalia in place, refuse it (4xx: for now), or take it and
 * drop it (an infected busta, whose rilevazioni virus stand for it).
 * Whatever the decision owes (a presa in carico, a rilevazione virus, a
 * recipient's new state, a log record) is one store batch, committed after
 * the MTA has taken every change and before the MTA hears our answer, so an
 * anomaly is never recorded that did not happen, a presa in carico is
 * queued only for a busta that goes on to delivery, and an infected busta
 * is dropped (250, no bounce) only once its notices are queued.  A batch
 * built on a recipient's state that a concurrent receipt changed is not
 * applied: the decision is made again, on what the store now says.
 */
#include "message/busta.h"
#include "message/feed.h"
#include "collect.h"
#include "log.h"
#include "mta.h"
#include "provider/reception.h"
#include "rewrite.h"
#include "role.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static sfsistat internal_error(SMFICTX *ctx, struct conn *c, const char *qid, const char *what)
{
    return rewrite_internal_error(ctx, c, "reception", qid, what);
}

static sfsistat rp_envfrom(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    collect_start(c, m, argv[0]);
    return SMFIS_CONTINUE;
}

/* the times a decision is made again when a concurrent receipt raced its commit */
#define RACE_RETRIES 5

/* Apply OUT, then commit what it owes; *RACED when the batch's expectation failed. */
static sfsistat apply(SMFICTX *ctx, struct conn *c, const char *qid, const struct collected *st,
                      const struct pec_original *o, struct pec_rp_outcome *out, int *raced)
{
    char err[1024], what[1200];
    int rc = 0;

    *raced = 0;
    if (out->action == PEC_RP_REJECT) {
        /* the record of what was refused at the door, when there is one */
        if (out->batch != NULL &&
            pec_store_commit(c->rt->store, out->batch, err, sizeof(err)) < 0) {
            snprintf(what, sizeof(what), "store: %s (%s)", err, out->summary);
            return internal_error(ctx, c, qid, what);
        }
        log_info(qid, "reception: from=%s: %s", pec_original_mittente(o), out->summary);
        mta_setreply(ctx, qid, out->rcode, out->xcode, out->text);
        return out->rcode[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
    }
    if (out->action == PEC_RP_ANOMALIA) {
        if (rewrite_message(ctx, qid, c->leadspc, st->names, st->n_names, pec_anomalia_keeps,
                            &out->anomalia) < 0)
            return internal_error(ctx, c, qid, "the MTA did not take the busta di anomalia");
    }
    if (out->batch != NULL &&
        (rc = pec_store_commit(c->rt->store, out->batch, err, sizeof(err))) < 0) {
        snprintf(what, sizeof(what), "store: %s (%s)", err, out->summary);
        return internal_error(ctx, c, qid, what);
    }
    if (rc == 1) {
        *raced = 1;
        return SMFIS_CONTINUE;
    }
    log_info(qid, "reception: from=%s size=%zu: %s", pec_original_mittente(o),
             pec_spool_size(o->raw), out->summary);
    return out->action == PEC_RP_DISCARD ? SMFIS_DISCARD : SMFIS_CONTINUE;
}

static sfsistat rp_eom(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct collected *st = m->state;
    const struct runtime *rt = c->rt;
    const char *qid = msg_qid(ctx, m);
    struct pec_index *idx = runtime_index(rt);
    struct pec_rp_env env = {
        .iss = &rt->issuer, .cfg = rt->cfg, .trust = rt->trust, .index = idx, .store = rt->store};
    struct pec_rp_outcome out;
    struct pec_original o;
    char err[1024], what[1200];
    sfsistat ret = SMFIS_CONTINUE;
    int raced = 1;

    if (collect_finish(c, st, &o, what, sizeof(what)) < 0) {
        pec_index_free(idx);
        return internal_error(ctx, c, qid, what);
    }
    for (int i = 0; raced && i < RACE_RETRIES; i++) {
        if (pec_rp_decide(&env, &o, qid, &out, err, sizeof(err)) < 0) {
            ret = internal_error(ctx, c, qid, err);
            raced = 0;
            break;
        }
        ret = apply(ctx, c, qid, st, &o, &out, &raced);
        if (raced)
            log_info(qid, "reception: a receipt came meanwhile (%s): deciding again", out.summary);
        pec_rp_outcome_free(&out);
    }
    if (raced)
        ret = internal_error(ctx, c, qid, "receipts kept changing the recipients' states");
    pec_original_free(&o);
    pec_index_free(idx);
    return ret;
}

const struct role_ops reception_role = {
    .name = "reception",
    .envfrom = rp_envfrom,
    .envrcpt = collect_envrcpt,
    .header = collect_header,
    .eoh = collect_eoh,
    .body = collect_body,
    .eom = rp_eom,
    .end = collect_end,
};
