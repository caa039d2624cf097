/*
 * pecmsg - header lists, the signed envelope, and serialising a built message.
 *
 * pec_envelope_sign() writes the multipart/mixed entity into a spool, signs
 * the spool as it streams by, then writes multipart/signed around it, so a
 * 30 MB original is never held in memory, not even once.  The bytes signed
 * are exactly the inner entity as it stands between the two boundary lines:
 * the CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1), so the
 * entity ends with the CRLF of its own closing delimiter line.
 *
 * Boundaries.  Each one is "=_pec" + a label + 24 hex digits of a SHA-256
 * over the shape of the message (signing time, part headers, sizes, and the
 * bytes of the parts given in memory: the text and daticert.xml, which name
 * the identificativo).  So with a fixed clock and deterministic identifiers
 * they repeat, byte for byte.  "=_" can appear neither in base64 nor in our
 * quoted-printable, so only the parts copied as they are (7bit, 8bit: a
 * postacert.eml, which may well be one of our own bustas) are searched for
 * the candidates; a hit moves every boundary to the next attempt.
 */
#include "message/pecmsg.h"
#include "util/encode.h"
#include "util/xalloc.h"
#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

void pec_headers_add(struct pec_headers *h, const char *name, const char *value)
{
    h->v = xrealloc(h->v, (h->n + 1) * sizeof(*h->v));
    h->v[h->n].name = xstrdup(name);
    h->v[h->n].value = xstrdup(value);
    h->n++;
}

const char *pec_headers_get(const struct pec_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0)
            return h->v[i].value;
    return NULL;
}

void pec_headers_free(struct pec_headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].name);
        free(h->v[i].value);
    }
    free(h->v);
    h->v = NULL;
    h->n = 0;
}

/* ---------------------------------------------------------------- boundaries */

#define BOUNDARY_PREFIX "=_pec"
#define BOUNDARY_HEX 24
#define BOUNDARY_MAX 48
#define BOUNDARY_ATTEMPTS 16

/* every multipart of the tree, the top multipart/mixed first, then depth first */
struct boundaries {
    char outer[BOUNDARY_MAX];
    char (*inner)[BOUNDARY_MAX];
    size_t n;
};

static size_t count_multiparts(const struct pec_part *parts, size_t n)
{
    size_t count = 0;

    for (size_t i = 0; i < n; i++)
        if (parts[i].n_children > 0)
            count += 1 + count_multiparts(parts[i].children, parts[i].n_children);
    return count;
}

static int digest_str(EVP_MD_CTX *md, const char *s)
{
    /* the NUL too, so "ab"+"c" and "a"+"bc" differ */
    return s == NULL ? EVP_DigestUpdate(md, "", 1) : EVP_DigestUpdate(md, s, strlen(s) + 1);
}

static int digest_parts(EVP_MD_CTX *md, const struct pec_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct pec_part *p = &parts[i];
        size_t len = p->spool != NULL ? pec_spool_size(p->spool) : p->len;
        char num[64];

        snprintf(num, sizeof(num), "%zu/%zu", len, p->n_children);
        if (!digest_str(md, p->content_type) || !digest_str(md, p->disposition) ||
            !digest_str(md, p->encoding) || !digest_str(md, num) ||
            (p->spool == NULL && p->len > 0 && !EVP_DigestUpdate(md, p->data, p->len)) ||
            !digest_parts(md, p->children, p->n_children))
            return 0;
    }
    return 1;
}

static int shape_digest(const struct pec_part *parts, size_t n, time_t when, unsigned char seed[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    char t[32];
    int ok;

    snprintf(t, sizeof(t), "%lld", (long long)when);
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && digest_str(md, t) &&
         digest_parts(md, parts, n) && EVP_DigestFinal_ex(md, seed, &len) && len == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static int make_boundary(const unsigned char seed[32], const char *label, size_t index,
                         unsigned attempt, char out[BOUNDARY_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hlen = 0;
    char tag[64];
    size_t o;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    snprintf(tag, sizeof(tag), "%s%zu/%u", label, index, attempt);
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
         EVP_DigestUpdate(md, seed, 32) && digest_str(md, tag) &&
         EVP_DigestFinal_ex(md, h, &hlen) && hlen >= BOUNDARY_HEX / 2;
    EVP_MD_CTX_free(md);
    if (!ok)
        return -1;
    o = (size_t)snprintf(out, BOUNDARY_MAX, "%s%s%zu.", BOUNDARY_PREFIX, label, index);
    for (size_t i = 0; i < BOUNDARY_HEX / 2 && o + 2 < BOUNDARY_MAX; i++) {
        out[o++] = hex[h[i] >> 4];
        out[o++] = hex[h[i] & 15];
    }
    out[o] = '\0';
    return 0;
}

static int make_boundaries(const unsigned char seed[32], unsigned attempt, struct boundaries *b)
{
    if (make_boundary(seed, "S", 0, attempt, b->outer) < 0)
        return -1;
    for (size_t i = 0; i < b->n; i++)
        if (make_boundary(seed, "M", i, attempt, b->inner[i]) < 0)
            return -1;
    return 0;
}

/*
 * Search for any boundary in a byte stream given in chunks.  A match may straddle two
 * chunks, so the last BOUNDARY_MAX bytes of what came before are kept and searched
 * together with the head of each new chunk.
 */
struct scan {
    const struct boundaries *b;
    unsigned char tail[BOUNDARY_MAX];
    size_t ntail;
    int found;
};

static int match_at(const struct boundaries *b, const unsigned char *p, size_t avail)
{
    size_t len = strlen(b->outer);

    if (len <= avail && memcmp(p, b->outer, len) == 0)
        return 1;
    for (size_t i = 0; i < b->n; i++) {
        len = strlen(b->inner[i]);
        if (len <= avail && memcmp(p, b->inner[i], len) == 0)
            return 1;
    }
    return 0;
}

/* any boundary starting in HAY[0..START_LIMIT) and lying within HAY[0..N) */
static int search(const struct boundaries *b, const unsigned char *hay, size_t n,
                  size_t start_limit)
{
    const size_t plen = sizeof(BOUNDARY_PREFIX) - 1;
    const unsigned char *p = hay;

    while ((size_t)(p - hay) < start_limit) {
        p = memmem(p, n - (size_t)(p - hay), BOUNDARY_PREFIX, plen);
        if (p == NULL || (size_t)(p - hay) >= start_limit)
            return 0;
        if (match_at(b, p, n - (size_t)(p - hay)))
            return 1;
        p++;
    }
    return 0;
}

static int scan_chunk(const unsigned char *chunk, size_t n, void *arg)
{
    struct scan *s = arg;
    unsigned char seam[2 * BOUNDARY_MAX];
    size_t head = n < BOUNDARY_MAX ? n : BOUNDARY_MAX;

    memcpy(seam, s->tail, s->ntail);
    memcpy(seam + s->ntail, chunk, head);
    if (search(s->b, seam, s->ntail + head, s->ntail) || search(s->b, chunk, n, n)) {
        s->found = 1;
        return 1;
    }
    if (n >= BOUNDARY_MAX) {
        memcpy(s->tail, chunk + n - BOUNDARY_MAX, BOUNDARY_MAX);
        s->ntail = BOUNDARY_MAX;
    } else {
        size_t keep = s->ntail + n > BOUNDARY_MAX ? BOUNDARY_MAX - n : s->ntail;

        memmove(s->tail, s->tail + s->ntail - keep, keep);
        memcpy(s->tail + keep, chunk, n);
        s->ntail = keep + n;
    }
    return 0;
}

static int is_copied(const struct pec_part *p)
{
    return p->n_children == 0 &&
           (strcasecmp(p->encoding, "7bit") == 0 || strcasecmp(p->encoding, "8bit") == 0);
}

static int scan_str(struct scan *s, const char *str)
{
    if (str == NULL)
        return 0;
    s->ntail = 0;
    return scan_chunk((const unsigned char *)str, strlen(str), s);
}

/* 1 when a boundary occurs in the parts, 0 when not, -1 when a spool cannot be read */
static int boundaries_occur(const struct boundaries *b, const struct pec_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct pec_part *p = &parts[i];
        struct scan s = {.b = b};
        int r;

        if (scan_str(&s, p->content_type) || scan_str(&s, p->disposition))
            return 1;
        if (p->n_children > 0) {
            if ((r = boundaries_occur(b, p->children, p->n_children)) != 0)
                return r;
            continue;
        }
        if (!is_copied(p))
            continue;
        s.ntail = 0;
        if (p->spool != NULL)
            r = pec_spool_each(p->spool, 0, pec_spool_size(p->spool), scan_chunk, &s);
        else
            r = p->len > 0 ? scan_chunk(p->data, p->len, &s) : 0;
        if (s.found)
            return 1;
        if (r != 0)
            return -1;
    }
    return 0;
}

static int choose_boundaries(const struct pec_part *parts, size_t n, time_t when,
                             struct boundaries *b, char *err, size_t errlen)
{
    unsigned char seed[32];

    if (shape_digest(parts, n, when, seed) < 0) {
        pec_seterr(err, errlen, "cannot compute the MIME boundaries: SHA-256 failed");
        return -1;
    }
    for (unsigned attempt = 0; attempt < BOUNDARY_ATTEMPTS; attempt++) {
        int r;

        if (make_boundaries(seed, attempt, b) < 0) {
            pec_seterr(err, errlen, "cannot compute the MIME boundaries: SHA-256 failed");
            return -1;
        }
        if ((r = boundaries_occur(b, parts, n)) == 0)
            return 0;
        if (r < 0) {
            pec_seterr(err, errlen, "cannot read a part: %s", strerror(errno));
            return -1;
        }
    }
    pec_seterr(err, errlen, "no MIME boundary absent from the content after %d attempts",
               BOUNDARY_ATTEMPTS);
    return -1;
}

/* ---------------------------------------------------------------- the inner entity */

struct writer {
    struct pec_spool *out;
    const struct boundaries *b;
    size_t next; /* index of the next multipart's boundary */
};

static int enc_b64(const unsigned char *chunk, size_t n, void *arg)
{
    return pec_b64_update(arg, chunk, n);
}

static int enc_qp(const unsigned char *chunk, size_t n, void *arg)
{
    return pec_qp_update(arg, chunk, n);
}

static int write_body(struct pec_spool *out, const struct pec_part *p)
{
    size_t len = p->spool != NULL ? pec_spool_size(p->spool) : p->len;

    if (strcasecmp(p->encoding, "base64") == 0) {
        struct pec_b64 e;

        pec_b64_init(&e, out);
        if ((p->spool != NULL ? pec_spool_each(p->spool, 0, len, enc_b64, &e)
                              : pec_b64_update(&e, p->data, len)) != 0)
            return -1;
        return pec_b64_final(&e);
    }
    if (strcasecmp(p->encoding, "quoted-printable") == 0) {
        struct pec_qp e;

        pec_qp_init(&e, out);
        if ((p->spool != NULL ? pec_spool_each(p->spool, 0, len, enc_qp, &e)
                              : pec_qp_update(&e, p->data, len)) != 0)
            return -1;
        return pec_qp_final(&e);
    }
    if (p->spool != NULL)
        return pec_spool_copy(out, p->spool, 0, len);
    return pec_spool_write(out, p->data, len);
}

static int write_part(struct writer *w, const struct pec_part *p);

/* BOUNDARY is the multipart's own; the CRLF after each child is its delimiter's */
static int write_children(struct writer *w, const char *boundary, const struct pec_part *children,
                          size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pec_spool_printf(w->out, "--%s\r\n", boundary) < 0 || write_part(w, &children[i]) < 0 ||
            pec_spool_puts(w->out, "\r\n") < 0)
            return -1;
    return pec_spool_printf(w->out, "--%s--\r\n", boundary);
}

static int write_disposition(struct pec_spool *out, const struct pec_part *p)
{
    if (p->disposition == NULL)
        return 0;
    return pec_spool_printf(out, "Content-Disposition: %s\r\n", p->disposition);
}

static int write_part(struct writer *w, const struct pec_part *p)
{
    if (p->n_children > 0) {
        const char *boundary = w->b->inner[w->next++];

        if (pec_spool_printf(w->out, "Content-Type: %s; boundary=\"%s\"\r\n", p->content_type,
                             boundary) < 0 ||
            write_disposition(w->out, p) < 0 || pec_spool_puts(w->out, "\r\n") < 0)
            return -1;
        return write_children(w, boundary, p->children, p->n_children);
    }
    if (pec_spool_printf(w->out, "Content-Type: %s\r\n", p->content_type) < 0 ||
        write_disposition(w->out, p) < 0 ||
        pec_spool_printf(w->out, "Content-Transfer-Encoding: %s\r\n\r\n", p->encoding) < 0)
        return -1;
    return write_body(w->out, p);
}

static int check_parts(const struct pec_part *parts, size_t n, char *err, size_t errlen)
{
    static const char *const encodings[] = {"base64", "quoted-printable", "7bit", "8bit"};

    for (size_t i = 0; i < n; i++) {
        const struct pec_part *p = &parts[i];
        int known = 0;

        if (p->content_type == NULL || strpbrk(p->content_type, "\r\n") != NULL ||
            (p->disposition != NULL && strpbrk(p->disposition, "\r\n") != NULL)) {
            pec_seterr(err, errlen, "part %zu: missing or multi-line Content-Type/Disposition", i);
            return -1;
        }
        if (p->n_children > 0) {
            if (check_parts(p->children, p->n_children, err, errlen) < 0)
                return -1;
            continue;
        }
        for (size_t k = 0; p->encoding != NULL && k < 4; k++)
            known |= strcasecmp(p->encoding, encodings[k]) == 0;
        if (!known) {
            pec_seterr(err, errlen, "part %zu (%s): unknown transfer encoding \"%s\"", i,
                       p->content_type, p->encoding ? p->encoding : "(null)");
            return -1;
        }
        if (p->spool == NULL && p->len > 0 && p->data == NULL) {
            pec_seterr(err, errlen, "part %zu (%s): no data", i, p->content_type);
            return -1;
        }
    }
    return 0;
}

static int write_inner(struct pec_spool *out, const struct pec_part *parts, size_t n,
                       const struct boundaries *b)
{
    struct writer w = {.out = out, .b = b, .next = 1};

    if (pec_spool_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n",
                         b->inner[0]) < 0)
        return -1;
    return write_children(&w, b->inner[0], parts, n);
}

/* ---------------------------------------------------------------- signing and wrapping */

struct spool_reader {
    const struct pec_spool *sp;
    size_t off;
};

static int read_spool(void *arg, unsigned char *buf, size_t len)
{
    struct spool_reader *r = arg;
    ssize_t n;

    if (len > INT32_MAX)
        len = INT32_MAX;
    n = pec_spool_pread(r->sp, r->off, buf, len);
    if (n < 0)
        return -1;
    r->off += (size_t)n;
    return (int)n;
}

static int write_signature_part(struct pec_spool *out, const char *boundary,
                                const unsigned char *der, size_t derlen)
{
    struct pec_b64 e;

    if (pec_spool_printf(out,
                         "--%s\r\n"
                         "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"
                         "\r\n",
                         boundary) < 0)
        return -1;
    pec_b64_init(&e, out);
    if (pec_b64_update(&e, der, derlen) < 0 || pec_b64_final(&e) < 0)
        return -1;
    return pec_spool_printf(out, "\r\n--%s--\r\n", boundary);
}

static int write_outer(struct pec_spool *out, const struct pec_spool *inner, const char *boundary,
                       const unsigned char *der, size_t derlen)
{
    if (pec_spool_printf(out, "This is an S/MIME signed message\r\n\r\n--%s\r\n", boundary) < 0 ||
        pec_spool_copy(out, inner, 0, pec_spool_size(inner)) < 0 || pec_spool_puts(out, "\r\n") < 0)
        return -1;
    return write_signature_part(out, boundary, der, derlen);
}

int pec_envelope_sign(const struct pec_issuer *iss, const struct pec_part *parts, size_t nparts,
                      time_t when, struct pec_built *out, char *err, size_t errlen)
{
    struct boundaries b = {.n = 1 + count_multiparts(parts, nparts)};
    struct pec_spool *inner = NULL, *body = NULL;
    struct spool_reader reader;
    unsigned char *der = NULL;
    size_t derlen = 0;
    char *ctype;
    int ret = -1;

    if (out->body != NULL) {
        pec_seterr(err, errlen, "the message already has a body");
        return -1;
    }
    if (nparts == 0) {
        pec_seterr(err, errlen, "a signed envelope needs at least one part");
        return -1;
    }
    if (check_parts(parts, nparts, err, errlen) < 0)
        return -1;
    b.inner = xcalloc(b.n, sizeof(*b.inner));
    if (choose_boundaries(parts, nparts, when, &b, err, errlen) < 0)
        goto done;
    inner = pec_spool_new(iss->spool_dir, iss->spool_mem_limit);
    if (write_inner(inner, parts, nparts, &b) < 0) {
        pec_seterr(err, errlen, "cannot write the signed entity: %s", strerror(errno));
        goto done;
    }
    reader = (struct spool_reader){.sp = inner};
    if (pec_smime_sign_stream(iss->signer, read_spool, &reader, when, &der, &derlen, err, errlen) <
        0)
        goto done;
    body = pec_spool_new(iss->spool_dir, iss->spool_mem_limit);
    if (write_outer(body, inner, b.outer, der, derlen) < 0) {
        pec_seterr(err, errlen, "cannot write the signed message: %s", strerror(errno));
        goto done;
    }
    ctype = xasprintf("multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
                      "\tmicalg=%s; boundary=\"%s\"",
                      pec_smime_micalg(iss->signer), b.outer);
    pec_headers_add(&out->headers, "MIME-Version", "1.0");
    pec_headers_add(&out->headers, "Content-Type", ctype);
    free(ctype);
    out->body = body;
    body = NULL;
    ret = 0;

done:
    pec_spool_free(body);
    pec_spool_free(inner);
    free(der);
    free(b.inner);
    return ret;
}

/* ---------------------------------------------------------------- serialising */

static int put_file(const unsigned char *chunk, size_t n, void *arg)
{
    return fwrite(chunk, 1, n, arg) == n ? 0 : -1;
}

static int put_spool(const unsigned char *chunk, size_t n, void *arg)
{
    return pec_spool_write(arg, chunk, n);
}

/* the whole message through PUT: the one layout both writers share */
static int built_emit(const struct pec_built *b, int (*put)(const unsigned char *, size_t, void *),
                      void *arg)
{
    for (size_t i = 0; i < b->headers.n; i++) {
        const struct pec_header *h = &b->headers.v[i];

        if (put((const unsigned char *)h->name, strlen(h->name), arg) != 0 ||
            put((const unsigned char *)": ", 2, arg) != 0 ||
            put((const unsigned char *)h->value, strlen(h->value), arg) != 0 ||
            put((const unsigned char *)"\r\n", 2, arg) != 0)
            return -1;
    }
    if (put((const unsigned char *)"\r\n", 2, arg) != 0)
        return -1;
    if (b->body == NULL)
        return 0;
    return pec_spool_each(b->body, 0, pec_spool_size(b->body), put, arg) != 0 ? -1 : 0;
}

int pec_built_write(const struct pec_built *b, FILE *out)
{
    if (built_emit(b, put_file, out) < 0 || fflush(out) != 0) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}

int pec_built_to_spool(const struct pec_built *b, struct pec_spool *out)
{
    return built_emit(b, put_spool, out);
}

void pec_built_free(struct pec_built *b)
{
    if (b == NULL)
        return;
    pec_headers_free(&b->headers);
    pec_spool_free(b->body);
    free(b->message_id);
    b->body = NULL;
    b->message_id = NULL;
}
