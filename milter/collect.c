/*
 * collect - what the certifying roles gather of a message before deciding.
 */
#include "collect.h"

#include "runtime.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void collect_start(const struct conn *c, struct msg *m, const char *mail_from)
{
    const struct runtime *rt = c->rt;
    struct collected *st = xcalloc(1, sizeof(*st));

    st->mail_from = xstrdup(mail_from);
    st->feed = pec_feed_new(rt->issuer.spool_dir, rt->issuer.spool_mem_limit);
    m->state = st;
}

sfsistat collect_envrcpt(SMFICTX *ctx, struct conn *c, struct msg *m, char **argv)
{
    struct collected *st = m->state;

    push(&st->rcpts, &st->n_rcpts, argv[0]);
    return SMFIS_CONTINUE;
}

sfsistat collect_header(SMFICTX *ctx, struct conn *c, struct msg *m, const char *name,
                        const char *value)
{
    struct collected *st = m->state;

    push(&st->names, &st->n_names, name);
    if (!st->spool_errno && pec_feed_header(st->feed, name, value) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

sfsistat collect_eoh(SMFICTX *ctx, struct conn *c, struct msg *m)
{
    struct collected *st = m->state;

    if (!st->spool_errno && pec_feed_eoh(st->feed) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

sfsistat collect_body(SMFICTX *ctx, struct conn *c, struct msg *m, const unsigned char *buf,
                      size_t len)
{
    struct collected *st = m->state;

    if (!st->spool_errno && pec_feed_body(st->feed, buf, len) < 0)
        st->spool_errno = errno;
    return SMFIS_CONTINUE;
}

int collect_finish(const struct conn *c, struct collected *st, struct pec_original *o, char *what,
                   size_t whatlen)
{
    char err[1024];

    if (st->spool_errno) {
        snprintf(what, whatlen, "cannot spool the message: %s", strerror(st->spool_errno));
        return -1;
    }
    if (c->rt->store == NULL) {
        snprintf(what, whatlen, "no store is open");
        return -1;
    }
    if (pec_feed_finish(st->feed, st->mail_from, (const char *const *)st->rcpts, st->n_rcpts, o,
                        err, sizeof(err)) < 0) {
        pec_original_free(o);
        snprintf(what, whatlen, "cannot read the message: %s", err);
        return -1;
    }
    if (o->header_cut && !st->header_cut_ok) {
        pec_original_free(o);
        snprintf(what, whatlen,
                 "cannot read the message: the header section is larger than %d bytes",
                 PEC_HEADER_MAX);
        return -1;
    }
    return 0;
}

void collect_end(void *state)
{
    struct collected *st = state;

    free(st->mail_from);
    strv_free(st->rcpts, st->n_rcpts);
    strv_free(st->names, st->n_names);
    pec_feed_free(st->feed);
    free(st);
}
