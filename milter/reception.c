/*
 * reception - the reception point role: what other providers and the
 * Internet send to our PEC domains, on the port-25 smtpd.
 *
 * The message is fed, as it arrives, into a spool (lib/feed.h), and at end
 * of message libpec decides (lib/reception.h): pass it on unchanged, make it
 * a busta di anomalia in place, or refuse it.  Whatever the decision owes
 * (a presa in carico, a recipient's new state, a log record) is one store
 * batch, committed after the MTA has taken every change, so an anomaly is
 * never recorded that did not happen and a presa in carico is queued only
 * for a busta that goes on to delivery.
 */
#include "busta.h"
#include "feed.h"
#include "log.h"
#include "mta.h"
#include "reception.h"
#include "rewrite.h"
#include "role.h"
#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct reception_msg {
    char *mail_from; /* as given, angle brackets included */
    char **rcpts;
    size_t n_rcpts;
    char **names; /* the top-level header names, in order, as the MTA sent them */
    size_t n_names;
    struct pec_feed *feed;
    int spool_errno; /* the feed failed: the message cannot be processed */
};

static void push(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = xstrdup(s);
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void rp_end(void *state)
{
    struct reception_msg *st = state;

    free(st->mail_from);
    strv_free(st->rcpts, st->n_rcpts);
    strv_free(st->names, st->n_names);
    pec_feed_free(st->feed);
    free(st);
}

static sfsistat internal_error(SMFICTX *ctx, struct conn *c, const char *qid, int changed,
                               const char *what)
{
    return rewrite_internal_error(ctx, c, "reception", qid, changed, what);
}

static sfsistat rp_envfrom(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    const struct runtime *rt = c->rt;
    struct reception_msg *st = xcalloc(1, sizeof(*st));

    st->mail_from = xstrdup(argv[0]);
    st->feed = pec_feed_new(rt->issuer.spool_dir, rt->issuer.spool_mem_limit);
    m->state = st;
    return SMFIS_CONTINUE;
}

static sfsistat rp_envrcpt(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    struct reception_msg *st = m->state;

    push(&st->rcpts, &st->n_rcpts, argv[0]);
    return SMFIS_CONTINUE;
}

static sfsistat rp_header(SMFICTX *ctx, struct conn *c, struct msg *m, const char *name,
                          const char *value)
{
    struct reception_msg *st = m->state;

    push(&st->names, &st->n_names, name);
    if (!st->spool_errno && pec_feed_header(st->feed, name, value) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

static sfsistat rp_eoh(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct reception_msg *st = m->state;

    if (!st->spool_errno && pec_feed_eoh(st->feed) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

static sfsistat rp_body(SMFICTX *ctx, struct conn *c, struct msg *m, const unsigned char *buf,
                        size_t len)
{
    struct reception_msg *st = m->state;

    if (!st->spool_errno && pec_feed_body(st->feed, buf, len) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

/* Apply OUT, then commit what it owes. */
static sfsistat apply(SMFICTX *ctx, struct conn *c, const char *qid, const struct reception_msg *st,
                      const struct pec_original *o, struct pec_rp_outcome *out)
{
    char err[1024], what[1200];
    int changed = 0;

    if (out->action == PEC_RP_REJECT) {
        log_info(qid, "reception: from=%s: %s", pec_original_mittente(o), out->summary);
        mta_setreply(ctx, qid, out->rcode, out->xcode, out->text);
        return SMFIS_REJECT;
    }
    if (out->action == PEC_RP_ANOMALIA) {
        changed = 1;
        if (rewrite_message(ctx, qid, c->leadspc, st->names, st->n_names, pec_anomalia_keeps,
                            &out->anomalia) < 0)
            return internal_error(ctx, c, qid, 1, "the MTA did not take the busta di anomalia");
    }
    if (out->batch != NULL && pec_store_commit(c->rt->store, out->batch, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "store: %s (%s)", err, out->summary);
        return internal_error(ctx, c, qid, changed, what);
    }
    log_info(qid, "reception: from=%s size=%zu: %s", pec_original_mittente(o),
             pec_spool_size(o->raw), out->summary);
    return SMFIS_CONTINUE;
}

static sfsistat rp_eom(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct reception_msg *st = m->state;
    const struct runtime *rt = c->rt;
    const char *qid = msg_qid(ctx, m);
    struct pec_rp_env env = {.iss = &rt->issuer,
                             .cfg = rt->cfg,
                             .trust = rt->trust,
                             .index = rt->index,
                             .store = rt->store};
    struct pec_rp_outcome out;
    struct pec_original o;
    char err[1024], what[1200];
    sfsistat ret;

    if (st->spool_errno) {
        snprintf(what, sizeof(what), "cannot spool the message: %s", strerror(st->spool_errno));
        return internal_error(ctx, c, qid, 0, what);
    }
    if (rt->store == NULL)
        return internal_error(ctx, c, qid, 0, "no store is open");
    if (pec_feed_finish(st->feed, st->mail_from, (const char *const *)st->rcpts, st->n_rcpts, &o,
                        err, sizeof(err)) < 0) {
        pec_original_free(&o);
        snprintf(what, sizeof(what), "cannot read the message: %s", err);
        return internal_error(ctx, c, qid, 0, what);
    }
    if (pec_rp_decide(&env, &o, qid, &out, err, sizeof(err)) < 0) {
        ret = internal_error(ctx, c, qid, 0, err);
    } else {
        ret = apply(ctx, c, qid, st, &o, &out);
        pec_rp_outcome_free(&out);
    }
    pec_original_free(&o);
    return ret;
}

const struct role_ops reception_role = {
    .name = "reception",
    .envfrom = rp_envfrom,
    .envrcpt = rp_envrcpt,
    .header = rp_header,
    .eoh = rp_eoh,
    .body = rp_body,
    .eom = rp_eom,
    .end = rp_end,
};
