/*
 * feed - rebuild the submitted message from the milter's pieces.
 *
 * The spool is the only copy: headers are written as they come, so even a
 * header section near its limit is never held twice, and past it nothing
 * more is written: the fields already there name the message in its refusal.
 */
#include "message/feed.h"
#include "util/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pec_feed {
    struct pec_spool *spool;
    int eoh;   /* the blank line after the headers is written */
    int spent; /* the spool went to a pec_original */
    int cut;   /* a field was left out: the header section is over PEC_HEADER_MAX */
};

struct pec_feed *pec_feed_new(const char *spool_dir, size_t mem_limit)
{
    struct pec_feed *f = xcalloc(1, sizeof(*f));

    f->spool = pec_spool_new(spool_dir, mem_limit);
    return f;
}

void pec_feed_free(struct pec_feed *f)
{
    if (f == NULL)
        return;
    if (!f->spent)
        pec_spool_free(f->spool);
    free(f);
}

static int spent(void)
{
    errno = EINVAL;
    return -1;
}

/* a value's line breaks, "\n" or "\r\n", as CRLF; any other CR stays as it came */
static int write_value(struct pec_spool *sp, const char *v)
{
    const char *p = v;

    while (*p != '\0') {
        const char *lf = strchr(p, '\n');
        size_t n = lf != NULL ? (size_t)(lf - p) : strlen(p);

        if (n > 0 && lf != NULL && p[n - 1] == '\r')
            n--;
        if (pec_spool_write(sp, p, n) < 0)
            return -1;
        if (lf == NULL)
            break;
        if (pec_spool_write(sp, "\r\n", 2) < 0)
            return -1;
        p = lf + 1;
    }
    return 0;
}

/* the bytes write_value() writes for V */
static size_t value_size(const char *v)
{
    size_t n = strlen(v);

    for (const char *p = v; (p = strchr(p, '\n')) != NULL; p++)
        n += p == v || p[-1] != '\r';
    return n;
}

int pec_feed_header(struct pec_feed *f, const char *name, const char *value)
{
    if (f->spent || f->eoh)
        return spent();
    if (f->cut ||
        pec_spool_size(f->spool) + strlen(name) + 1 + value_size(value) + 2 > PEC_HEADER_MAX) {
        f->cut = 1;
        return 0;
    }
    if (pec_spool_puts(f->spool, name) < 0 || pec_spool_write(f->spool, ":", 1) < 0 ||
        write_value(f->spool, value) < 0)
        return -1;
    return pec_spool_write(f->spool, "\r\n", 2);
}

int pec_feed_eoh(struct pec_feed *f)
{
    if (f->spent)
        return spent();
    if (f->eoh)
        return 0;
    f->eoh = 1;
    return pec_spool_write(f->spool, "\r\n", 2);
}

int pec_feed_body(struct pec_feed *f, const unsigned char *buf, size_t len)
{
    if (f->spent)
        return spent();
    if (!f->eoh && pec_feed_eoh(f) < 0)
        return -1;
    return pec_spool_write_crlf(f->spool, buf, len);
}

int pec_feed_finish(struct pec_feed *f, const char *mail_from, const char *const *rcpts,
                    size_t n_rcpts, struct pec_original *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (f->spent) {
        snprintf(err, errlen, "the message was already handed over");
        return -1;
    }
    if (!f->eoh && pec_feed_eoh(f) < 0) {
        snprintf(err, errlen, "cannot spool the message: %s", strerror(errno));
        return -1;
    }
    if (pec_spool_error(f->spool) != 0) {
        snprintf(err, errlen, "cannot spool the message: %s", strerror(pec_spool_error(f->spool)));
        return -1;
    }
    f->spent = 1;
    if (pec_original_parse(out, f->spool, mail_from, rcpts, n_rcpts, err, errlen) < 0)
        return -1;
    out->header_cut = f->cut;
    return 0;
}
