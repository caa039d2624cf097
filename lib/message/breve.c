/*
 * breve - attachments replaced by their SHA-1 in a copy of the original.
 *
 * The walk works on byte ranges of the input spool: an entity is
 * [start, end); its headers end at the first empty line.  A multipart body is
 * cut at its delimiter lines; each piece between two delimiters, minus the
 * line break that belongs to the next delimiter, is walked in turn.  Output is
 * appended range by range, so whatever is not replaced keeps its bytes.
 *
 * Headers and parameters are read by the MIME layer (mime.h), so a part is
 * what the verifier takes it to be.  A file name is kept in the charset the
 * sender declared, in RFC 2231 form (name*=, name*0*=...) or in the RFC 2047
 * encoded words that mail clients put in quoted file names; the replacement
 * names are written in RFC 2231 form when they are not plain ASCII or are
 * long, so no header line grows past the limits whatever the original name.
 */
#include "message/breve.h"
#include "message/daticert.h"
#include "message/mime.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "--" + a 70-character boundary + "--" + some transport padding + CRLF */
#define LINE_PREFIX 160
/* encoded text per RFC 2231 segment of a replacement name */
#define SEGMENT_CHARS 60

struct walk {
    const struct pec_spool *in;
    struct pec_spool *out;
    size_t replaced;
    char *err;
    size_t errlen;
};

/* ---- spool access ---- */

static int copy_range(struct walk *w, size_t off, size_t len)
{
    if (len == 0 || pec_spool_copy(w->out, w->in, off, len) == 0)
        return 0;
    pec_seterr(w->err, w->errlen, "breve: cannot copy the original: %s", strerror(errno));
    return -1;
}

static int put(struct walk *w, const char *s)
{
    if (pec_spool_puts(w->out, s) == 0)
        return 0;
    pec_seterr(w->err, w->errlen, "breve: cannot write: %s", strerror(errno));
    return -1;
}

/* exactly LEN bytes at OFF into BUF */
static int read_exact(struct walk *w, size_t off, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pec_spool_pread(w->in, off + got, (char *)buf + got, len - got);
        if (n <= 0) {
            pec_seterr(w->err, w->errlen, "breve: cannot read the original at %zu: %s", off + got,
                       n < 0 ? strerror(errno) : "unexpected end");
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* ---- lines at offsets ---- */

struct line_reader {
    struct walk *w;
    size_t pos, end;
    unsigned char buf[8192];
    size_t boff, blen; /* buf holds [boff, boff + blen) */
};

struct line {
    size_t start, len;     /* len counts the line break */
    char pfx[LINE_PREFIX]; /* the first bytes of the line */
    size_t pfxlen;         /* == len when the whole line fits */
    int padded;            /* what is past the prefix is all transport padding (" \t\r\n") */
};

static int is_padding(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return 0;
    return 1;
}

static int fill(struct line_reader *r)
{
    size_t want = r->end - r->pos;

    if (want > sizeof(r->buf))
        want = sizeof(r->buf);
    if (read_exact(r->w, r->pos, r->buf, want) != 0)
        return -1;
    r->boff = r->pos;
    r->blen = want;
    return 0;
}

/* 1: L is the next line of the range; 0: the range is exhausted; -1: error */
static int next_line(struct line_reader *r, struct line *l)
{
    if (r->pos >= r->end)
        return 0;
    l->start = r->pos;
    l->pfxlen = 0;
    l->padded = 1;
    for (;;) {
        const unsigned char *p, *nl;
        size_t avail, take, keep;

        if (r->pos < r->boff || r->pos >= r->boff + r->blen)
            if (fill(r) != 0)
                return -1;
        p = r->buf + (r->pos - r->boff);
        avail = r->boff + r->blen - r->pos;
        nl = memchr(p, '\n', avail);
        take = nl ? (size_t)(nl - p) + 1 : avail;
        keep = sizeof(l->pfx) - l->pfxlen;
        if (keep > take)
            keep = take;
        memcpy(l->pfx + l->pfxlen, p, keep);
        l->pfxlen += keep;
        l->padded = l->padded && is_padding(p + keep, take - keep);
        r->pos += take;
        if (nl != NULL || r->pos >= r->end)
            break;
    }
    l->len = r->pos - l->start;
    return 1;
}

static int blank_line(const struct line *l)
{
    return l->pfxlen == l->len && ((l->len == 1 && l->pfx[0] == '\n') ||
                                   (l->len == 2 && l->pfx[0] == '\r' && l->pfx[1] == '\n'));
}

/* ---- names: decoded bytes and the charset they are in ---- */

struct name {
    char *bytes;
    size_t len;
    char *charset; /* NULL when the original did not say */
};

static void name_free(struct name *nm)
{
    free(nm->bytes);
    free(nm->charset);
    memset(nm, 0, sizeof(*nm));
}

/*
 * Parameter ATTR of the header value VALUE in any of its forms, as GET reads that header:
 * 1 and NM filled, or 0.
 */
static int param_name(pec_mime_param_getter *get, const char *value, const char *attr,
                      struct name *nm)
{
    memset(nm, 0, sizeof(*nm));
    if (value != NULL)
        nm->bytes = get(value, attr, &nm->len, &nm->charset);
    return nm->bytes != NULL;
}

/* ---- the replacement part ---- */

static int attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

static int plain_ascii(const struct name *nm)
{
    for (size_t i = 0; i < nm->len; i++) {
        unsigned char c = (unsigned char)nm->bytes[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* NM + ".hash" percent-encoded as an RFC 2231 extended value */
static char *pct_hash(const struct name *nm)
{
    char *out = xmalloc(3 * nm->len + sizeof(".hash")), *o = out;

    for (size_t i = 0; i < nm->len; i++) {
        unsigned char c = (unsigned char)nm->bytes[i];
        if (attr_char(c))
            *o++ = (char)c;
        else
            o += sprintf(o, "%%%02X", c);
    }
    strcpy(o, ".hash");
    return out;
}

/*
 * "; ATTR=..." with NM + ".hash" as the value, after a fold: quoted when
 * short and plain, else RFC 2231, in segments of at most SEGMENT_CHARS when
 * long (a percent sign and its two digits are never split).
 */
static char *name_param(const char *attr, const struct name *nm, const char *charset)
{
    char *enc, *out;
    size_t len, cap, n = 0;
    int seg = 0;

    if (plain_ascii(nm) && nm->len <= SEGMENT_CHARS)
        return xasprintf(";\r\n\t%s=\"%s.hash\"", attr, nm->bytes);
    enc = pct_hash(nm);
    len = strlen(enc);
    if (len <= SEGMENT_CHARS) {
        out = xasprintf(";\r\n\t%s*=%s''%s", attr, charset, enc);
        free(enc);
        return out;
    }
    cap = len + (len / SEGMENT_CHARS + 2) * (strlen(attr) + 24) + strlen(charset);
    out = xmalloc(cap);
    for (size_t i = 0; i < len; seg++) {
        size_t take = len - i < SEGMENT_CHARS ? len - i : SEGMENT_CHARS;
        if (i + take < len && take >= 2 && enc[i + take - 1] == '%')
            take -= 1;
        else if (i + take < len && take >= 2 && enc[i + take - 2] == '%')
            take -= 2;
        n += (size_t)snprintf(out + n, cap - n, ";\r\n\t%s*%d*=%s%s%.*s", attr, seg,
                              seg ? "" : charset, seg ? "" : "''", (int)take, enc + i);
        i += take;
    }
    free(enc);
    return out;
}

static int sha1_chunk(const unsigned char *chunk, size_t n, void *ctx)
{
    return EVP_DigestUpdate(ctx, chunk, n) == 1 ? 0 : -1;
}

static int sha1_hex(struct walk *w, size_t off, size_t len, char hex[41])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = -1;

    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
        (len == 0 || pec_spool_each(w->in, off, len, sha1_chunk, ctx) == 0) &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20) {
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        rc = 0;
    } else {
        pec_seterr(w->err, w->errlen, "breve: SHA-1 of the part at %zu failed", off);
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---- entities ---- */

struct entity {
    size_t start, body, end;  /* headers [start, body), body [body, end) */
    char *ctype, *disp;       /* the Content-Type and Content-Disposition values, or NULL */
    struct pec_mime_ctype ct; /* type "" when there is none or it is unreadable */
};

static void entity_free(struct entity *e)
{
    free(e->ctype);
    free(e->disp);
    pec_mime_ctype_free(&e->ct);
}

/*
 * 1: E parsed; 0: headers too large to read, E has only its ranges (the body
 * still starts after the first empty line) and no type; -1: error
 */
static int entity_read(struct walk *w, size_t start, size_t end, struct entity *e)
{
    struct line_reader *r = xcalloc(1, sizeof(*r));
    struct line l;
    struct pec_span head;
    char *raw;
    int rc, too_big = 0;

    memset(e, 0, sizeof(*e));
    e->start = start;
    e->body = end;
    e->end = end;
    r->w = w;
    r->pos = start;
    r->end = end;
    while ((rc = next_line(r, &l)) == 1) {
        if (blank_line(&l)) {
            e->body = l.start + l.len;
            break;
        }
        if (l.start + l.len - start > PEC_BREVE_MAX_HEADER)
            too_big = 1;
    }
    free(r);
    if (rc < 0)
        return -1;
    if (too_big) {
        pec_mime_ctype_parse(NULL, &e->ct);
        return 0;
    }
    raw = xmalloc(e->body - start + 1);
    if (read_exact(w, start, raw, e->body - start) != 0) {
        free(raw);
        return -1;
    }
    head.p = (const unsigned char *)raw;
    head.len = e->body - start;
    e->ctype = pec_mime_header(head, "Content-Type");
    e->disp = pec_mime_header(head, "Content-Disposition");
    free(raw);
    pec_mime_ctype_parse(e->ctype, &e->ct);
    return 1;
}

/*
 * E replaced by the SHA-1 of its body: a part under a header of its own naming
 * it NM + ".hash"; the message (NM NULL) under its original header section.
 */
static int replace_entity(struct walk *w, const struct entity *e, const struct name *nm)
{
    char hex[41], *np, *fp, *valid;
    const char *cs;
    int declared, rc;

    if (sha1_hex(w, e->body, e->end - e->body, hex) != 0)
        return -1;
    w->replaced++;
    if (nm == NULL) {
        /* the hash is the last line of the message, so it ends in a line break */
        rc = copy_range(w, e->start, e->body - e->start) || put(w, hex) || put(w, "\r\n");
        return rc ? -1 : 0;
    }
    declared = nm->charset != NULL && nm->charset[0] != '\0';
    cs = declared ? nm->charset : "utf-8";
    valid = pec_utf8_sanitize(nm->bytes, nm->len);
    if (!declared && (strlen(valid) != nm->len || memcmp(valid, nm->bytes, nm->len)))
        cs = "iso-8859-1";
    free(valid);
    np = name_param("name", nm, cs);
    fp = name_param("filename", nm, cs);
    rc = put(w, "Content-Type: text/plain; charset=us-ascii");
    rc = rc || put(w, np) || put(w, "\r\nContent-Disposition: attachment") || put(w, fp) ||
         put(w, "\r\nContent-Transfer-Encoding: 7bit\r\n\r\n") || put(w, hex);
    free(np);
    free(fp);
    return rc ? -1 : 0;
}

/*
 * The name an attachment goes by: its file name, else its name, else one
 * made up from its type.  Returns whether the part has either parameter.
 */
static int attachment_name(const struct entity *e, struct name *nm)
{
    int named = param_name(pec_mime_disposition_param_bytes, e->disp, "filename", nm);

    if (named && nm->len > 0)
        return 1;
    name_free(nm);
    if (param_name(pec_mime_ctype_param_bytes, e->ctype, "name", nm)) {
        named = 1;
        if (nm->len > 0)
            return 1;
    }
    name_free(nm);
    nm->bytes =
        xstrdup(pec_mime_ctype_is(&e->ct, "message", "rfc822") ? "messaggio.eml" : "allegato");
    nm->len = strlen(nm->bytes);
    return named;
}

static int walk_entity(struct walk *w, size_t start, size_t end, int depth, int top);

struct delim {
    size_t start, end; /* the delimiter line, its line break included */
    int close;
};

/*
 * whether L is "--BOUNDARY" or "--BOUNDARY--", then only transport padding, of any
 * length (mime.c reads the same line as a delimiter, however long its padding)
 */
static int is_delim(const struct line *l, const char *b, size_t blen, int *close)
{
    size_t i = 2 + blen;

    if ((l->pfxlen != l->len && !l->padded) || l->pfxlen < i || l->pfx[0] != '-' ||
        l->pfx[1] != '-' || memcmp(l->pfx + 2, b, blen) != 0)
        return 0;
    *close = l->pfxlen >= i + 2 && l->pfx[i] == '-' && l->pfx[i + 1] == '-';
    for (i += *close ? 2 : 0; i < l->pfxlen; i++)
        if (strchr(" \t\r\n", l->pfx[i]) == NULL || l->pfx[i] == '\0')
            return 0;
    return 1;
}

/* the delimiter lines of a multipart body, up to and with the closing one */
static int find_delims(struct walk *w, size_t start, size_t end, const char *b, struct delim **dv,
                       size_t *dn)
{
    struct line_reader *r = xcalloc(1, sizeof(*r));
    struct line l;
    size_t blen = strlen(b);
    int rc, close;

    r->w = w;
    r->pos = start;
    r->end = end;
    *dv = NULL;
    *dn = 0;
    while ((rc = next_line(r, &l)) == 1) {
        if (!is_delim(&l, b, blen, &close))
            continue;
        *dv = xrealloc(*dv, (*dn + 1) * sizeof(**dv));
        (*dv)[*dn].start = l.start;
        (*dv)[*dn].end = l.start + l.len;
        (*dv)[*dn].close = close;
        (*dn)++;
        if (close)
            break;
    }
    free(r);
    return rc < 0 ? -1 : 0;
}

/* where the body part before the delimiter at NEXT ends: without the line break */
static int part_end(struct walk *w, size_t start, size_t next, size_t *end)
{
    char tail[2];
    size_t n = next - start < 2 ? next - start : 2;

    *end = next;
    if (n == 0)
        return 0;
    if (read_exact(w, next - n, tail, n) != 0)
        return -1;
    if (tail[n - 1] == '\n') {
        (*end)--;
        if (n == 2 && tail[0] == '\r')
            (*end)--;
    }
    return 0;
}

static int walk_multipart(struct walk *w, const struct entity *e, const char *boundary, int depth)
{
    int is_signed = pec_mime_ctype_is(&e->ct, "multipart", "signed");
    struct delim *d;
    size_t n;
    int rc;

    if (find_delims(w, e->body, e->end, boundary, &d, &n) != 0)
        return -1;
    rc = copy_range(w, e->start, (n ? d[0].start : e->end) - e->start);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t next = i + 1 < n ? d[i + 1].start : e->end, stop = next;
        rc = copy_range(w, d[i].start, d[i].end - d[i].start);
        if (rc != 0 || d[i].close) {
            rc = rc ? rc : copy_range(w, d[i].end, e->end - d[i].end);
            break;
        }
        if (i + 1 < n && part_end(w, d[i].end, next, &stop) != 0)
            rc = -1;
        else if (is_signed && i > 0)
            rc = copy_range(w, d[i].end, stop - d[i].end);
        else
            rc = walk_entity(w, d[i].end, stop, depth + 1, 0);
        rc = rc ? rc : copy_range(w, stop, next - stop);
    }
    free(d);
    return rc;
}

/*
 * One entity: replaced when it is an attachment (never the message itself),
 * walked when it is a multipart, else copied.  An entity the walk cannot or
 * will not read into is opaque: its header section is over
 * PEC_BREVE_MAX_HEADER, or it is a multipart nested PEC_BREVE_MAX_DEPTH deep
 * or without a boundary of 1 to 70 characters.  Copied, it would carry
 * whatever attachment it holds, so an opaque part is replaced whole, like an
 * attachment: the hash of its body stands for every part inside.
 *
 * The message itself cannot be replaced so: without its header section
 * (From, Date, Subject...) the breve would not be a message, nor the original
 * the recipient got.  When it is opaque, its header section stays as it is and
 * only its body becomes the hash, which drops every attachment and leaves a
 * well-formed message.  Its header may still call it a multipart: one with no
 * usable boundary was no valid MIME in the original either, and readers take
 * its body as text, the hash; one whose header was too large to read shows the
 * hash as a preamble without parts.  Either way the sender can recompute it.
 * An opaque message with an empty body has nothing to carry and is copied.
 */
static int walk_entity(struct walk *w, size_t start, size_t end, int depth, int top)
{
    struct entity e;
    struct name nm = {0};
    const char *boundary = NULL;
    int rc = entity_read(w, start, end, &e), opaque = rc == 0;

    if (rc < 0) {
        entity_free(&e);
        return -1;
    }
    if (!opaque && pec_mime_ctype_is(&e.ct, "multipart", NULL)) {
        if (depth < PEC_BREVE_MAX_DEPTH)
            boundary = pec_mime_param(&e.ct.params, "boundary");
        if (boundary == NULL || *boundary == '\0' || strlen(boundary) > 70) {
            boundary = NULL;
            opaque = 1;
        }
    }
    if (!top &&
        (attachment_name(&e, &nm) || pec_mime_ctype_is(&e.ct, "message", "rfc822") || opaque))
        rc = replace_entity(w, &e, &nm);
    else if (boundary != NULL)
        rc = walk_multipart(w, &e, boundary, depth);
    else if (opaque && e.body < e.end)
        rc = replace_entity(w, &e, NULL);
    else
        rc = copy_range(w, start, end - start);
    name_free(&nm);
    entity_free(&e);
    return rc;
}

int pec_breve_build(const struct pec_spool *orig, struct pec_spool *out, size_t *replaced,
                    char *err, size_t errlen)
{
    struct walk w = {orig, out, 0, err, errlen};
    int rc = walk_entity(&w, 0, pec_spool_size(orig), 0, 1);

    if (replaced != NULL)
        *replaced = w.replaced;
    return rc;
}
