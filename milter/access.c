/*
 * access - the access point role: user submissions become PEC.
 *
 * At MAIL FROM the sender is checked against the login (lib/access.h) and
 * refused there when it may not submit.  Then the message is fed, as it
 * arrives, into a spool (lib/feed.h: memory up to a limit, then a file), and
 * at end of message libpec decides: a formal error costs an avviso di non
 * accettazione and an SMTP rejection with the same words; a good message
 * becomes the busta di trasporto in place.
 *
 * Applying a busta: first every header change (the original's top-level
 * fields the busta does not inherit are deleted, ours are added), then the
 * body replacement in one run of chunks; Postfix refuses body replacements
 * interleaved with other requests.  Only after the MTA has taken every
 * change is the store batch committed, so a message that did not become a
 * busta never has a ricevuta di accettazione queued for it; when the commit
 * fails the MTA is told to drop the changed message (on_internal_error).
 */
#include "access.h"
#include "busta.h"
#include "feed.h"
#include "log.h"
#include "mta.h"
#include "role.h"
#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Body replacement chunk: libmilter's and Postfix's MILTER_CHUNK_SIZE. */
#define CHUNK 65535

struct access_msg {
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

static void ap_end(void *state)
{
    struct access_msg *st = state;

    free(st->mail_from);
    strv_free(st->rcpts, st->n_rcpts);
    strv_free(st->names, st->n_names);
    pec_feed_free(st->feed);
    free(st);
}

/*
 * An internal failure (spool, signing, store): one log line, and the SMTP
 * answer on_internal_error asks for.  "accept" lets the original through
 * untouched only while nothing has been changed yet: a busta without its
 * record and receipt must never leave.
 */
static sfsistat internal_error(SMFICTX *ctx, struct conn *c, const char *qid, int changed,
                               const char *what)
{
    const char *policy = c->rt->cfg->on_internal_error;

    if (strcmp(policy, "reject") == 0) {
        log_err(qid, "access: %s; message rejected (on_internal_error = reject)", what);
        mta_setreply(ctx, qid, "554", "5.3.0",
                     "Errore interno del gestore, messaggio non accettato (internal error)");
        return SMFIS_REJECT;
    }
    if (strcmp(policy, "accept") == 0 && !changed) {
        log_err(qid, "access: %s; message passed UNCERTIFIED (on_internal_error = accept)", what);
        return SMFIS_ACCEPT;
    }
    log_err(qid, "access: %s; message deferred", what);
    mta_setreply(ctx, qid, "451", "4.3.0",
                 "Errore temporaneo del gestore, riprovare piu' tardi (temporary failure, try "
                 "again later)");
    return SMFIS_TEMPFAIL;
}

static sfsistat ap_envfrom(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    const struct runtime *rt = c->rt;
    const char *login = mta_macro(ctx, "{auth_authen}");
    struct pec_access_reply r;
    struct access_msg *st;

    if (pec_access_sender(rt->cfg, login, argv[0], &r) < 0) {
        log_info(msg_qid(ctx, m), "access: refused at MAIL FROM (%s): from=%s login=%s client=%s",
                 pec_access_fault_name(r.fault), argv[0], login && *login ? login : "-", c->client);
        mta_setreply(ctx, msg_qid(ctx, m), r.rcode, r.xcode, r.text);
        return SMFIS_REJECT;
    }
    st = xcalloc(1, sizeof(*st));
    st->mail_from = xstrdup(argv[0]);
    st->feed = pec_feed_new(rt->issuer.spool_dir, rt->issuer.spool_mem_limit);
    m->state = st;
    return SMFIS_CONTINUE;
}

static sfsistat ap_envrcpt(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    struct access_msg *st = m->state;

    push(&st->rcpts, &st->n_rcpts, argv[0]);
    return SMFIS_CONTINUE;
}

static sfsistat ap_header(SMFICTX *ctx, struct conn *c, struct msg *m, const char *name,
                          const char *value)
{
    struct access_msg *st = m->state;

    push(&st->names, &st->n_names, name);
    if (!st->spool_errno && pec_feed_header(st->feed, name, value) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

static sfsistat ap_eoh(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct access_msg *st = m->state;

    if (!st->spool_errno && pec_feed_eoh(st->feed) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

static sfsistat ap_body(SMFICTX *ctx, struct conn *c, struct msg *m, const unsigned char *buf,
                        size_t len)
{
    struct access_msg *st = m->state;

    if (!st->spool_errno && pec_feed_body(st->feed, buf, len) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

/* A header value for the MTA: folding as LF + blank, the leading space ours under LEADSPC. */
static char *mta_value(const char *value, int leadspc)
{
    char *out = xmalloc(strlen(value) + 2);
    size_t j = 0;

    if (leadspc)
        out[j++] = ' ';
    for (const char *p = value; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            out[j++] = *p;
    out[j] = '\0';
    return out;
}

/* Delete every top-level field the busta does not inherit, last instance first. */
static int delete_original_fields(SMFICTX *ctx, const char *qid, const struct access_msg *st)
{
    for (size_t i = 0; i < st->n_names; i++) {
        const char *name = st->names[i];
        int seen_before = 0, count = 0;

        if (pec_busta_keeps(name))
            continue;
        for (size_t j = 0; j < st->n_names; j++) {
            if (strcasecmp(st->names[j], name) != 0)
                continue;
            seen_before |= j < i;
            count++;
        }
        if (seen_before)
            continue;
        for (int k = count; k >= 1; k--)
            if (mta_chgheader(ctx, qid, name, k, NULL) < 0)
                return -1;
    }
    return 0;
}

static int replace_body(SMFICTX *ctx, const char *qid, const struct pec_spool *body)
{
    unsigned char *buf = xmalloc(CHUNK);
    size_t off = 0, size = pec_spool_size(body);
    int ret = 0;

    while (off < size && ret == 0) {
        ssize_t n = pec_spool_pread(body, off, buf, CHUNK);

        if (n <= 0) {
            log_err(qid, "access: cannot read the busta back from its spool: %s",
                    n < 0 ? strerror(errno) : "short file");
            ret = -1;
        } else if (mta_replacebody(ctx, qid, buf, (size_t)n) < 0) {
            ret = -1;
        } else {
            off += (size_t)n;
        }
    }
    free(buf);
    return ret;
}

/* The message becomes B: header requests first, then the body in one run. */
static int apply_busta(SMFICTX *ctx, const char *qid, const struct conn *c,
                       const struct access_msg *st, const struct pec_built *b)
{
    if (delete_original_fields(ctx, qid, st) < 0)
        return -1;
    for (size_t i = 0; i < b->headers.n; i++) {
        char *v = mta_value(b->headers.v[i].value, c->leadspc);
        int rc = mta_addheader(ctx, qid, b->headers.v[i].name, v);

        free(v);
        if (rc < 0)
            return -1;
    }
    return replace_body(ctx, qid, b->body);
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
        return internal_error(ctx, c, qid, 0, what);
    }
    if (pec_store_commit(c->rt->store, out.batch, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "store: %s", err);
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, 0, what);
    }
    log_info(qid, "access: not accepted (%s): identificativo=%s from=%s: %s",
             pec_access_fault_name(r->fault), out.identificativo, pec_original_mittente(o),
             r->errore);
    pec_access_outcome_free(&out);
    mta_setreply(ctx, qid, r->rcode, r->xcode, r->text);
    return SMFIS_REJECT;
}

static sfsistat accept_busta(SMFICTX *ctx, struct conn *c, const char *qid,
                             const struct pec_access_env *env, const struct access_msg *st,
                             const struct pec_original *o)
{
    struct pec_access_outcome out;
    char err[1024], what[1200];
    size_t cert = 0, ours = 0;

    if (pec_access_accept(env, o, qid, &out, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "cannot build the busta di trasporto: %s", err);
        return internal_error(ctx, c, qid, 0, what);
    }
    if (apply_busta(ctx, qid, c, st, &out.busta) < 0) {
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, 1, "the MTA did not take the busta");
    }
    if (pec_store_commit(c->rt->store, out.batch, err, sizeof(err)) < 0) {
        snprintf(what, sizeof(what), "store: %s", err);
        pec_access_outcome_free(&out);
        return internal_error(ctx, c, qid, 1, what);
    }
    for (size_t i = 0; i < out.rcpts.n; i++) {
        cert += out.rcpts.v[i].certificato != 0;
        ours += out.rcpts.v[i].ours != 0;
    }
    log_info(qid,
             "access: accepted: identificativo=%s from=%s rcpts=%zu (certificato %zu, esterno "
             "%zu, ours %zu) size=%zu tipo_ricevuta=%s",
             out.identificativo, pec_original_mittente(o), out.rcpts.n, cert, out.rcpts.n - cert,
             ours, pec_spool_size(o->raw), pec_ricevuta_name(o->tipo_ricevuta));
    pec_access_outcome_free(&out);
    return SMFIS_CONTINUE;
}

static sfsistat ap_eom(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct access_msg *st = m->state;
    const struct runtime *rt = c->rt;
    const char *qid = msg_qid(ctx, m);
    struct pec_access_env env = {.iss = &rt->issuer, .cfg = rt->cfg, .index = rt->index};
    struct pec_access_reply r;
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
    if (pec_access_formal(&o, rt->cfg->size_limit, &r) < 0)
        ret = refuse(ctx, c, qid, &env, &o, &r);
    else
        ret = accept_busta(ctx, c, qid, &env, st, &o);
    pec_original_free(&o);
    return ret;
}

const struct role_ops access_role = {
    .name = "access",
    .envfrom = ap_envfrom,
    .envrcpt = ap_envrcpt,
    .header = ap_header,
    .eoh = ap_eoh,
    .body = ap_body,
    .eom = ap_eom,
    .end = ap_end,
};
