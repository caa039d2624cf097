/*
 * rewrite - apply an envelope libpec built to the message in the MTA.
 */
#include "rewrite.h"
#include "log.h"
#include "mta.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Body replacement chunk: libmilter's and Postfix's MILTER_CHUNK_SIZE. */
#define CHUNK 65535

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

/* Delete every top-level field KEEPS does not accept, last instance first. */
static int delete_fields(SMFICTX *ctx, const char *qid, char *const *names, size_t n,
                         int (*keeps)(const char *name))
{
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        int seen_before = 0, count = 0;

        if (keeps(name))
            continue;
        for (size_t j = 0; j < n; j++) {
            if (strcasecmp(names[j], name) != 0)
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
            log_err(qid, "cannot read the envelope back from its spool: %s",
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

int rewrite_message(SMFICTX *ctx, const char *qid, int leadspc, char *const *names, size_t n,
                    int (*keeps)(const char *name), const struct pec_built *b)
{
    if (delete_fields(ctx, qid, names, n, keeps) < 0)
        return -1;
    for (size_t i = 0; i < b->headers.n; i++) {
        char *v = mta_value(b->headers.v[i].value, leadspc);
        int rc = mta_addheader(ctx, qid, b->headers.v[i].name, v);

        free(v);
        if (rc < 0)
            return -1;
    }
    return replace_body(ctx, qid, b->body);
}

sfsistat rewrite_internal_error(SMFICTX *ctx, const struct conn *c, const char *role,
                                const char *qid, const char *what)
{
    const char *policy = c->rt->cfg->on_internal_error;

    if (strcmp(policy, "reject") == 0) {
        log_err(qid, "%s: %s; message rejected (on_internal_error = reject)", role, what);
        mta_setreply(ctx, qid, "554", "5.3.0",
                     "Errore interno del gestore, messaggio non accettato (internal error)");
        return SMFIS_REJECT;
    }
    log_err(qid, "%s: %s; message deferred", role, what);
    mta_setreply(ctx, qid, "451", "4.3.0",
                 "Errore temporaneo del gestore, riprovare piu' tardi (temporary failure, try "
                 "again later)");
    return SMFIS_TEMPFAIL;
}
