/*
 * access - the access point role: user submissions become PEC.
 *
 * At MAIL FROM the session must be encrypted ({tls_version}) and the sender
 * is checked against the login (lib/provider/access.h); either refuses there.
 * Then the message is fed, as it arrives, into a spool (lib/message/feed.h:
 * memory up to a limit, then a file), and at end of message libpec decides:
 * first the antivirus (a virus costs the avviso di non accettazione per virus
 * and a 554 naming it; a message that could not be scanned a 451, or a 554
 * with on_scan_error = "reject", and nothing else), then the formal checks: a
 * formal error costs an avviso di non accettazione and an SMTP rejection with
 * the same words; a good message becomes the busta di trasporto in place.
 *
 * Applying a busta (rewrite.h): first every header change, then the body
 * replacement.  Only after the MTA has taken every
 * change is the store batch committed, so a message that did not become a
 * busta never has a ricevuta di accettazione queued for it; when the commit
 * fails the MTA is told to drop the changed message (on_internal_error).
 * A crash after the commit and before the MTA has the answer still leaves
 * an accettazione for a busta the MTA dropped; the client's retry of the
 * same message is recognised (lib/provider/access.h) and becomes that very busta,
 * with nothing committed.
 */
#include "provider/access.h"
#include "message/busta.h"
#include "message/feed.h"
#include "collect.h"
#include "log.h"
#include "mta.h"
#include "rewrite.h"
#include "role.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static sfsistat internal_error(SMFICTX *ctx, struct conn *c, const char *qid, const char *what)
{
    return rewrite_internal_error(ctx, c, "access", qid, what);
}

static sfsistat ap_envfrom(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    const struct runtime *rt = c->rt;
    const char *login = mta_macro(ctx, "{auth_authen}");
    struct pec_access_reply r;

    if (pec_access_channel(rt->cfg, mta_macro(ctx, "{tls_version}"), c->loopback, &r) < 0 ||
        pec_access_sender(rt->cfg, login, argv[0], &r) < 0) {
        log_info(msg_qid(ctx, m), "access: refused at MAIL FROM (%s): from=%s login=%s client=%s",
                 pec_access_fault_name(r.fault), argv[0], login && *login ? login : "-", c->client);
        mta_setreply(ctx, msg_qid(ctx, m), r.rcode, r.xcode, r.text);
        return SMFIS_REJECT;
    }
    collect_start(c, m, argv[0]);
    /* a header section over its limit is refused at eom, with its avviso (pec_access_formal) */
    ((struct collected *)m->state)->header_cut_ok = 1;
    return SMFIS_CONTINUE;
}

static sfsistat refuse(SMFICTX *ctx, struct conn *c, const char *qid,
                       const struct pec_access_env *env, const struct pec_original *o,
                       const struct pec_access_reply *r)
{
    struct pec_access_outcome out;
    char err[1024], what[1200];

    if (pec_access_refuse(env, o, r, qid, &out, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "cannot build the avviso di non accettazione (%s): %s",
                 pec_access_fault_name(r->fault), err);
        return internal_error(ctx, c, qid, what);
    }
    if (pec_store_commit(c->rt->store, out.batch, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "store: %s", err);
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, what);
    }
    log_info(qid, "access: not accepted (%s)%s: identificativo=%s from=%s: %s%s%s",
             pec_access_fault_name(r->fault),
             out.resubmission ? " again, the retry of a refusal: no second avviso" : "",
             out.identificativo, pec_original_mittente(o), r->errore,
             *out.quarantined ? "; quarantined as " : "", out.quarantined);
    pec_access_outcome_free(&out);
    mta_setreply(ctx, qid, r->rcode, r->xcode, r->text);
    return SMFIS_REJECT;
}

/* Nobody could scan O: a plain SMTP refusal, per on_scan_error. */
static sfsistat unscanned(SMFICTX *ctx, const char *qid, const struct pec_original *o,
                          const struct pec_access_reply *r)
{
    log_warn(qid, "access: not scanned, %s %s: from=%s: %s", r->rcode,
             r->rcode[0] == '4' ? "deferred" : "refused (on_scan_error = reject)",
             pec_original_mittente(o), r->errore);
    mta_setreply(ctx, qid, r->rcode, r->xcode, r->text);
    return r->rcode[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
}

static sfsistat accept_busta(SMFICTX *ctx, struct conn *c, const char *qid,
                             const struct pec_access_env *env, const struct collected *st,
                             const struct pec_original *o, const struct pec_av_result *av)
{
    struct pec_access_outcome out;
    char err[1024], what[1200];
    size_t cert = 0, ours = 0;

    if (pec_access_accept(env, o, qid, &out, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "cannot build the busta di trasporto: %s", err);
        return internal_error(ctx, c, qid, what);
    }
    if (rewrite_message(ctx, qid, c->leadspc, st->names, st->n_names, pec_busta_keeps, &out.busta) <
        0) {
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, "the MTA did not take the busta");
    }
    if (out.resubmission) {
        log_info(qid,
                 "access: resubmission of identificativo=%s (client Message-ID %s, accepted at "
                 "%lld): the busta goes out again as its accettazione announced; no second "
                 "transaction, accettazione or presa in carico",
                 out.identificativo, o->message_id, (long long)out.when);
        pec_access_outcome_free(&out);
        return SMFIS_CONTINUE;
    }
    if (pec_store_commit(c->rt->store, out.batch, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "store: %s", err);
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, what);
    }
    for (size_t i = 0; i < out.rcpts.n; i++) {
        cert += out.rcpts.v[i].certificato != 0;
        ours += out.rcpts.v[i].ours != 0;
    }
    log_info(qid,
             "access: accepted: identificativo=%s from=%s rcpts=%zu (certificato %zu, esterno "
             "%zu, ours %zu) size=%zu tipo_ricevuta=%s av=%s scan_ms=%.2f",
             out.identificativo, pec_original_mittente(o), out.rcpts.n, cert, out.rcpts.n - cert,
             ours, pec_spool_size(o->raw), pec_ricevuta_name(o->tipo_ricevuta),
             pec_av_verdict_name(av->verdict), av->ms);
    pec_access_outcome_free(&out);
    return SMFIS_CONTINUE;
}

static sfsistat ap_eom(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct collected *st = m->state;
    const struct runtime *rt = c->rt;
    const char *qid = msg_qid(ctx, m);
    struct pec_index *idx = runtime_index(rt);
    struct pec_access_env env = {
        .iss = &rt->issuer, .cfg = rt->cfg, .index = idx, .store = rt->store};
    struct pec_access_reply r;
    struct pec_av_result av = {.verdict = PEC_AV_OFF};
    struct pec_original o;
    char what[1200];
    sfsistat ret;

    if (collect_finish(c, st, &o, what, sizeof(what)) < 0) {
        pec_index_free(idx);
        return internal_error(ctx, c, qid, what);
    }
    /* a header cut at its limit is not the message: refused as too big, unscanned */
    if (!o.header_cut && pec_access_scan(rt->cfg, &o, &av, &r) < 0)
        ret = r.fault == PEC_ACCESS_UNSCANNED ? unscanned(ctx, qid, &o, &r)
                                              : refuse(ctx, c, qid, &env, &o, &r);
    else if (pec_access_formal(&o, rt->cfg->size_limit, &r) < 0)
        ret = refuse(ctx, c, qid, &env, &o, &r);
    else
        ret = accept_busta(ctx, c, qid, &env, st, &o, &av);
    pec_original_free(&o);
    pec_index_free(idx);
    return ret;
}

const struct role_ops access_role = {
    .name = "access",
    .envfrom = ap_envfrom,
    .envrcpt = collect_envrcpt,
    .header = collect_header,
    .eoh = collect_eoh,
    .body = collect_body,
    .eom = ap_eom,
    .end = collect_end,
};
