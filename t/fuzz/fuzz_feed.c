/*
 * fuzz_feed - the access point from the milter's side: a message handed over as the MTA
 * hands it (feed.h), header by header and in body chunks, then the formal checks
 * (access.h) and, when they pass, the busta di trasporto (busta.h) as the MTA will
 * deliver it, inspected as a peer would (verify.h).
 *
 * The first input byte chooses how the MTA folds header values ("\n" as Postfix, "\r\n"
 * as Sendmail: bit 0) and how it cuts the body into chunks (the other bits); the rest is
 * the message.  The harness cuts the header section into fields as the MTA does (a line
 * that is no field ends it; a value is a C string, cut at a NUL), and offers as envelope
 * the From and To/Cc addresses, so that many inputs pass the formal checks.
 *
 * Promises held: the spool is exactly the message the MTA handed over (folds and bare
 * LFs made CRLF), whatever the chunking; a message the access point accepts becomes a
 * busta that verifies: a valid busta of provider a, whose postacert.eml is the original
 * with its identity changed, byte for byte.
 */
#include "harness.h"

#include "message/busta.h"
#include "message/feed.h"
#include "message/ident.h"
#include "message/sevenbit.h"
#include "message/verify.h"
#include "provider/access.h"
#include "util/clock.h"
#include "util/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDENT "opec.fuzz.1@pec-a.test"
#define MEM_LIMIT (64u * 1024 * 1024)
#define MAX_FIELDS 4096
#define MAX_RCPTS 64

struct field {
    char *name;
    char *value; /* as the MTA hands it: leading space kept, folds "\n" or "\r\n" */
};

struct message {
    struct field *fields;
    size_t n;
    const unsigned char *body;
    size_t bodylen;
};

static struct pec_clock fixed_clock;
static struct pec_ident ident;
static struct pec_issuer issuer;

/* Bytes in a growing buffer. */
struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = 2 * (b->len + n) + 64;
        b->p = realloc(b->p, b->cap);
        FUZZ_CHECK(b->p != NULL);
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static char *cstr(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);

    FUZZ_CHECK(s != NULL);
    memcpy(s, p, n);
    s[n] = '\0';
    return s; /* a NUL inside cuts it, as for a milter's C string */
}

static size_t name_len(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
        i++;
    return i > 0 && i < n && p[i] == ':' ? i : 0;
}

/* The line at P: its end without the line break in *STOP, the next line's start returned. */
static const unsigned char *line(const unsigned char *p, const unsigned char *end,
                                 const unsigned char **stop)
{
    const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));

    *stop = lf != NULL ? lf : end;
    if (*stop > p && (*stop)[-1] == '\r')
        (*stop)--;
    return lf != NULL ? lf + 1 : end;
}

/* Cut MSG as the MTA would: the header fields, then the body. */
static void cut(const unsigned char *msg, size_t len, int sendmail, struct message *m)
{
    const unsigned char *p = msg, *end = msg + len, *stop, *next;

    memset(m, 0, sizeof(*m));
    m->fields = calloc(MAX_FIELDS, sizeof(*m->fields));
    FUZZ_CHECK(m->fields != NULL);
    while (p < end && m->n < MAX_FIELDS) {
        struct buf v = {0};
        size_t nl;

        next = line(p, end, &stop);
        if (stop == p) { /* the blank line */
            p = next;
            break;
        }
        if ((nl = name_len(p, (size_t)(stop - p))) == 0)
            break; /* no field: the body starts here */
        m->fields[m->n].name = cstr(p, nl);
        put(&v, p + nl + 1, (size_t)(stop - p) - nl - 1);
        for (p = next; p < end && (*p == ' ' || *p == '\t'); p = next) {
            next = line(p, end, &stop);
            put(&v, sendmail ? "\r\n" : "\n", sendmail ? 2 : 1);
            put(&v, p, (size_t)(stop - p));
        }
        put(&v, "", 1);
        m->fields[m->n++].value = (char *)v.p;
    }
    m->body = p;
    m->bodylen = (size_t)(end - p);
}

static void message_free(struct message *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->fields[i].name);
        free(m->fields[i].value);
    }
    free(m->fields);
}

/* Bare LFs made CRLF, as the spool writes them (pec_spool_write_crlf). */
static void put_crlf(struct buf *b, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 ? b->len == 0 || b->p[b->len - 1] != '\r' : p[i - 1] != '\r'))
            put(b, "\r", 1);
        put(b, p + i, 1);
    }
}

/* What the spool must hold for M: each field, its folds CRLF, a blank line, the body. */
static void expected(const struct message *m, struct buf *b)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *v = m->fields[i].value;

        put(b, m->fields[i].name, strlen(m->fields[i].name));
        put(b, ":", 1);
        for (; *v != '\0'; v++) {
            if (*v == '\r' && v[1] == '\n')
                continue;
            if (*v == '\n')
                put(b, "\r", 1);
            put(b, v, 1);
        }
        put(b, "\r\n", 2);
    }
    put(b, "\r\n", 2);
    put_crlf(b, m->body, m->bodylen);
}

/* Feed M with the body in chunks whose sizes SEED picks; the original in *O. */
static void feed(const struct message *m, unsigned seed, const char *mail_from,
                 const char *const *rcpts, size_t n_rcpts, struct pec_original *o)
{
    static const size_t sizes[] = {1, 2, 3, 7, 64, 65536};
    struct pec_feed *f = pec_feed_new(NULL, MEM_LIMIT);
    char err[256];
    size_t off = 0;

    for (size_t i = 0; i < m->n; i++)
        FUZZ_CHECK(pec_feed_header(f, m->fields[i].name, m->fields[i].value) == 0);
    FUZZ_CHECK(pec_feed_eoh(f) == 0);
    for (size_t i = 0; off < m->bodylen; i++) {
        size_t n = seed == 0 ? m->bodylen : sizes[(seed + i) % 6];

        if (n > m->bodylen - off)
            n = m->bodylen - off;
        FUZZ_CHECK(pec_feed_body(f, m->body + off, n) == 0);
        off += n;
    }
    if (pec_feed_finish(f, mail_from, rcpts, n_rcpts, o, err, sizeof(err)) != 0)
        fuzz_fail("pec_feed_finish: %s", err);
    pec_feed_free(f);
}

static unsigned char *spool_bytes(const struct pec_spool *sp, size_t *len)
{
    size_t n = pec_spool_size(sp);
    unsigned char *b = malloc(n + 1);

    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(pec_spool_pread(sp, 0, b, n) == (ssize_t)n);
    *len = n;
    return b;
}

/* The busta of O, as the MTA delivers it, must inspect as a valid busta carrying O. */
static void certify(const struct pec_original *o)
{
    const struct fuzz_pki *pki = fuzz_pki();
    struct pec_inspect_opts opts = {
        .trust = pki->trust, .index = pki->index, .at_mode = PEC_AT_GIVEN, .at = FUZZ_WHEN};
    struct pec_destinatario d[2 * MAX_RCPTS];
    struct pec_spool *full = pec_spool_new(NULL, MEM_LIMIT), *post = pec_spool_new(NULL, MEM_LIMIT);
    struct pec_inspection in;
    struct pec_built b;
    unsigned char *msg, *want;
    size_t n = 0, len, wantlen;
    char err[512];

    for (size_t i = 0; i < o->n_to + o->n_cc && n < 2 * MAX_RCPTS; i++, n++) {
        d[n].address = i < o->n_to ? o->to[i] : o->cc[i - o->n_to];
        d[n].tipo = strstr(d[n].address, "@pec-") ? PEC_DEST_CERTIFICATO : PEC_DEST_ESTERNO;
    }
    if (pec_build_busta(&issuer, o, d, n, IDENT, FUZZ_WHEN, &b, err, sizeof(err)) != 0) {
        /* facts daticert.xml cannot carry, and 8-bit content that cannot be made 7-bit
         * (the access point refuses it before: message/sevenbit.h), are the refusals left */
        FUZZ_CHECK(strstr(err, "daticert") != NULL || strstr(err, "7-bit") != NULL);
        pec_spool_free(full);
        pec_spool_free(post);
        return;
    }
    if (pec_built_full(&b, o->raw, pec_busta_keeps, full, err, sizeof(err)) != 0)
        fuzz_fail("pec_built_full: %s", err);
    msg = spool_bytes(full, &len);
    if (pec_inspect(msg, len, &opts, &in) != 0 || in.kind != PEC_KIND_BUSTA)
        fuzz_fail("our busta does not verify: %s %s", pec_kind_name(in.kind), in.reason);
    FUZZ_CHECK(in.has_postacert);
    FUZZ_CHECK(pec_postacert_write(o, IDENT, post) == 0);
    want = spool_bytes(post, &wantlen);
    if (o->eight_bit) {
        /* the busta carries the original made 7-bit (message/sevenbit.h) */
        struct pec_spool *seven = pec_spool_new(NULL, MEM_LIMIT);

        FUZZ_CHECK(pec_7bit(want, wantlen, seven, NULL, 0) == 0);
        free(want);
        want = spool_bytes(seven, &wantlen);
        pec_spool_free(seven);
    }
    FUZZ_CHECK(in.postacert_len == wantlen && memcmp(msg + in.postacert_off, want, wantlen) == 0);
    free(want);
    free(msg);
    pec_inspection_free(&in);
    pec_built_free(&b);
    pec_spool_free(full);
    pec_spool_free(post);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const struct fuzz_pki *pki = fuzz_pki();
    char err[256];

    if (pec_clock_init(&fixed_clock, "Europe/Rome", "2024-02-01T10:00:00Z", err, sizeof(err)) !=
            0 ||
        pec_ident_init(&ident, 1, "pec-a.test", &fixed_clock, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_feed: %s\n", err);
        exit(1);
    }
    pec_ident_set_deterministic(1);
    issuer.provider_name = "Gestore A S.p.A.";
    issuer.service_address = "posta-certificata@pec-a.test";
    issuer.signer = pki->signer;
    issuer.clock = &fixed_clock;
    issuer.ident = &ident;
    issuer.spool_mem_limit = MEM_LIMIT;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pec_original pre, o, whole;
    struct pec_access_reply reply;
    struct message m;
    struct buf want = {0};
    const char *rcpts[2 * MAX_RCPTS];
    size_t n_rcpts = 0, len;
    unsigned char *got;

    if (size == 0)
        return 0;
    cut(data + 1, size - 1, data[0] & 1, &m);
    expected(&m, &want);

    /* the envelope a well-behaved client would give: MAIL FROM the From, RCPT the To/Cc */
    feed(&m, 0, NULL, NULL, 0, &pre);
    for (size_t i = 0; i < pre.n_to + pre.n_cc && n_rcpts < 2 * MAX_RCPTS; i++)
        rcpts[n_rcpts++] = i < pre.n_to ? pre.to[i] : pre.cc[i - pre.n_to];
    feed(&m, data[0] >> 1, pre.n_from > 0 ? pre.from[0] : "", rcpts, n_rcpts, &o);

    got = spool_bytes(o.raw, &len);
    FUZZ_CHECK(len == want.len && memcmp(got, want.p, len) == 0);
    free(got);
    FUZZ_CHECK(o.n_fields <= m.n && o.n_from == pre.n_from);

    /* the milter's original and one read from the same bytes at once agree */
    FUZZ_CHECK(pec_original_from_mem(&whole, want.p, want.len, NULL, MEM_LIMIT, NULL, NULL, 0, NULL,
                                     0) == 0);
    FUZZ_CHECK(whole.n_fields == o.n_fields && whole.header_len == o.header_len);
    pec_original_free(&whole);

    if (pec_access_formal(&o, 100LL * 1024 * 1024, &reply) == 0)
        certify(&o);
    pec_original_free(&o);
    pec_original_free(&pre);
    free(want.p);
    message_free(&m);
    return 0;
}
