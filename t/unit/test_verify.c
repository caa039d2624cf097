/*
 * test_verify - the raw MIME layer and the inspector of incoming messages.
 *
 * The Incoming Point trusts a message only if pec_inspect() says so, and hands anything
 * else to the anomaly path, so both answers matter: every real provider message of the
 * shared corpus must come out valid with the kind and identificativo its README gives,
 * and every broken, forged or hostile input must come out invalid with the right kind
 * and a reason that names the problem, without a crash or a leak (the sanitizer build
 * runs this too).  Forged inputs are built here, signed with the test PKI over entities
 * crafted byte by byte, with the multipart/signed framing written by hand.
 */
#include "check.h"
#include "message/index.h"
#include "message/libinit.h"
#include "message/mime.h"
#include "message/smime.h"
#include "message/verify.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

#define SYSTEM_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define WHEN ((time_t)1706781600)    /* 2024-02-01 10:00:00 UTC: inside a, b, rogue validity */
#define IN_2020 ((time_t)1593561600) /* 2020-07-01: inside b-old and expired validity */

static const char *pki;
static struct pec_trust *trust;
static struct pec_index *idx;

/* ------------------------------------------------------------ a growing buffer */

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

/* geometric growth: a megabyte built byte by byte must not cost a quadratic copy */
static void bput(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void bputs(struct buf *b, const char *s)
{
    bput(b, s, strlen(s));
}

/* Replace [OFF, OFF+N) of B with S. */
static void bsplice(struct buf *b, size_t off, size_t n, const char *s, size_t slen)
{
    struct buf out = {0};

    bput(&out, b->p, off);
    bput(&out, s, slen);
    bput(&out, b->p + off + n, b->len - off - n);
    free(b->p);
    *b = out;
}

/* a string literal, NULs included */
#define bsplice_lit(b, off, n, lit) bsplice(b, off, n, lit, sizeof(lit) - 1)

static size_t find(const struct buf *b, const char *needle)
{
    const char *hit = memmem(b->p, b->len, needle, strlen(needle));

    if (hit == NULL) {
        fprintf(stderr, "test bug: \"%s\" not in the message\n", needle);
        abort();
    }
    return (size_t)(hit - b->p);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    struct buf b = {0};
    char chunk[65536];
    size_t got;

    if (fp == NULL)
        return NULL;
    while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        bput(&b, chunk, got);
    fclose(fp);
    if (b.p == NULL)
        b.p = xstrdup("");
    *len = b.len;
    return (unsigned char *)b.p;
}

/* base64 in 76-column CRLF lines, as a MIME part body */
static void bput_b64(struct buf *b, const unsigned char *in, size_t n)
{
    for (size_t off = 0; off < n; off += 57) {
        unsigned char line[80];
        size_t chunk = n - off < 57 ? n - off : 57;
        int k = EVP_EncodeBlock(line, in + off, (int)chunk);

        bput(b, line, (size_t)k);
        bputs(b, "\r\n");
    }
}

/* ------------------------------------------------------------ raw MIME layer */

static struct pec_span sp(const char *s)
{
    struct pec_span r = {(const unsigned char *)s, strlen(s)};

    return r;
}

static void test_split_and_fields(void)
{
    struct pec_span head, body;
    const char *crlf = "A: 1\r\nB: two\r\n  folded\r\n\r\nbody\r\n";
    const char *lf = "A: 1\nB: 2\n\nbody\n";
    char *v;

    CHECK(pec_mime_split((const unsigned char *)crlf, strlen(crlf), &head, &body) == 1);
    CHECK(head.len == 24 && body.len == 6 && memcmp(body.p, "body\r\n", 6) == 0);
    v = pec_mime_header(head, "b");
    CHECK_STR(v, "two  folded");
    free(v);
    CHECK(pec_mime_split((const unsigned char *)lf, strlen(lf), &head, &body) == 1);
    CHECK(body.len == 5);
    CHECK(pec_mime_split((const unsigned char *)"A: 1\r\nB: 2", 10, &head, &body) == 0);
    CHECK(head.len == 10 && body.len == 0);
    CHECK(pec_mime_split((const unsigned char *)"\r\nonly body", 11, &head, &body) == 1);
    CHECK(head.len == 0 && body.len == 9);

    /* duplicates, any case, junk lines, a leading continuation, NUL, 8-bit */
    const char hdr[] = " orphan\r\nX-Ricevuta: a\r\nno colon here\r\nx-ricevuta: b\r\n"
                       "Bad Name: x\r\nSubject : spaced\r\nX-Nul: a\0b\r\nX-8: \xe8\xff\r\n"
                       "X-Cr: message/rfc822\rX\r\r\n";
    struct pec_span h = {(const unsigned char *)hdr, sizeof(hdr) - 1};
    CHECK(pec_mime_header_count(h, "X-RICEVUTA") == 2);
    v = pec_mime_header(h, "x-ricevuta");
    CHECK_STR(v, "a");
    free(v);
    v = pec_mime_header(h, "subject");
    CHECK_STR(v, "spaced");
    free(v);
    v = pec_mime_header(h, "x-nul");
    CHECK_STR(v, "a b");
    free(v);
    v = pec_mime_header(h, "x-8");
    CHECK_STR(v, "\xe8\xff");
    free(v);
    {
        const char cte[] = "Content-Transfer-Encoding: BASE64 (as RFC 2045 allows)\r\n";
        struct pec_span c = {(const unsigned char *)cte, sizeof(cte) - 1};

        v = pec_mime_encoding(c); /* the mechanism alone, as GMime reads it */
        CHECK_STR(v, "base64");
        free(v);
        v = pec_mime_encoding(h);
        CHECK_STR(v, "7bit");
        free(v);
    }
    v = pec_mime_header(h, "x-cr"); /* a CR of no line break is white space */
    CHECK_STR(v, "message/rfc822 X");
    free(v);
    CHECK(pec_mime_header(h, "bad name") == NULL);
    CHECK(pec_mime_header(h, "no colon here") == NULL);

    /* a header line of a megabyte */
    struct buf big = {0};
    bputs(&big, "X-Big: ");
    for (int i = 0; i < 1 << 20; i++)
        bput(&big, "a", 1);
    bputs(&big, "\r\nX-After: yes\r\n");
    v = pec_mime_header((struct pec_span){(unsigned char *)big.p, big.len}, "x-big");
    CHECK(v != NULL && strlen(v) == 1 << 20);
    free(v);
    v = pec_mime_header((struct pec_span){(unsigned char *)big.p, big.len}, "x-after");
    CHECK_STR(v, "yes");
    free(v);
    free(big.p);
}

static void test_content_type(void)
{
    struct pec_mime_ctype ct;
    struct pec_mime_params pp;
    char *d;

    CHECK(pec_mime_ctype_parse("Multipart/Signed; protocol=\"application/x-pkcs7-signature\";"
                               " micalg=sha1; boundary=\"----1CB33C\"",
                               &ct) == 0);
    CHECK_STR(ct.type, "multipart");
    CHECK_STR(ct.subtype, "signed");
    CHECK(pec_mime_ctype_is(&ct, "MULTIPART", "signed"));
    CHECK_STR(pec_mime_param(&ct.params, "PROTOCOL"), "application/x-pkcs7-signature");
    CHECK_STR(pec_mime_param(&ct.params, "micalg"), "sha1");
    CHECK_STR(pec_mime_param(&ct.params, "boundary"), "----1CB33C");
    pec_mime_ctype_free(&ct);

    /* comments, escapes, unquoted slashes, garbage between parameters */
    CHECK(pec_mime_ctype_parse("text (a comment) / plain ; (c) charset = \"iso-8859-1\" ; junk "
                               "; name=\"a \\\"q\\\" b\"; protocol=application/pkcs7-signature",
                               &ct) == 0);
    CHECK_STR(ct.subtype, "plain");
    CHECK_STR(pec_mime_param(&ct.params, "charset"), "iso-8859-1");
    CHECK_STR(pec_mime_param(&ct.params, "name"), "a \"q\" b");
    CHECK_STR(pec_mime_param(&ct.params, "protocol"), "application/pkcs7-signature");
    pec_mime_ctype_free(&ct);

    /* unreadable type, unterminated quote */
    CHECK(pec_mime_ctype_parse("garbage", &ct) == -1);
    CHECK_STR(ct.type, "");
    pec_mime_ctype_free(&ct);
    CHECK(pec_mime_ctype_parse(NULL, &ct) == -1);
    pec_mime_ctype_free(&ct);
    CHECK(pec_mime_ctype_parse("a/b; boundary=\"open", &ct) == 0);
    CHECK_STR(pec_mime_param(&ct.params, "boundary"), "open");
    pec_mime_ctype_free(&ct);

    /* junk between the type and the first ';' is skipped as GMime skips it
     * (t/fuzz/crashes/gmime): an unclosed comment, a stray quote */
    CHECK(pec_mime_ctype_parse("multipart/signed(; boundary=d", &ct) == 0);
    CHECK_STR(pec_mime_param(&ct.params, "boundary"), "d");
    pec_mime_ctype_free(&ct);
    CHECK(pec_mime_ctype_parse("message/rfc822\xd1\x83", &ct) == 0); /* 8-bit: in the token */
    CHECK(!pec_mime_ctype_is(&ct, "message", "rfc822"));
    pec_mime_ctype_free(&ct);
    CHECK(pec_mime_ctype_parse("multipart/i;c=p\"\";boundary=\"1\"", &ct) == 0);
    CHECK_STR(pec_mime_param(&ct.params, "boundary"), "1");
    pec_mime_ctype_free(&ct);
    CHECK(pec_mime_ctype_parse("multipart/mixed; x=\"a\" junk; boundary=B", &ct) == 0);
    CHECK(pec_mime_param(&ct.params, "boundary") == NULL);
    pec_mime_ctype_free(&ct);
    d = pec_mime_disposition_parse("attachment\"; filename=x.pdf", &pp);
    CHECK_STR(d, "attachment");
    CHECK_STR(pec_mime_param(&pp, "filename"), "x.pdf");
    free(d);
    pec_mime_params_free(&pp);
    {
        size_t len;
        char *cs, *b = pec_mime_disposition_param_bytes("attachment (; filename=\"x.pdf\"",
                                                        "filename", &len, &cs);

        CHECK_STR(b, "x.pdf");
        CHECK(cs == NULL);
        free(b);
        /* a comment that never closes after a '/' does not take the parameters along */
        b = pec_mime_disposition_param_bytes("attachment/ (; filename=\"x.pdf\"", "filename", &len,
                                             &cs);
        CHECK_STR(b, "x.pdf");
        free(b);
        free(cs);
        /* nor does one that closes: a disposition has no subtype to skip */
        b = pec_mime_disposition_param_bytes("attachment/ (; filename=\"x.pdf\")fattura.pd",
                                             "filename", &len, &cs);
        CHECK_STR(b, "x.pdf");
        free(b);
        free(cs);
        /* a Content-Type's subtype is skipped, comments and all */
        b = pec_mime_ctype_param_bytes("application/ (; name=\"x.pdf\")pdf; name=y.pdf", "name",
                                       &len, &cs);
        CHECK_STR(b, "y.pdf");
        free(b);
        free(cs);
    }
    /* nor does a comment that never closes where a value starts ("micalg=(ha-256; boundary=B"
     * has a boundary) */
    CHECK(pec_mime_ctype_parse("multipart/signed; micalg=(ha-256; boundary=d", &ct) == 0);
    CHECK_STR(pec_mime_param(&ct.params, "boundary"), "d");
    pec_mime_ctype_free(&ct);
    d = pec_mime_disposition_parse("attachment/ (; filename=x.pdf", &pp);
    CHECK_STR(pec_mime_param(&pp, "filename"), "x.pdf");
    free(d);
    pec_mime_params_free(&pp);

    /* RFC 2231: continuations, extended values, a Latin-1 charset, precedence */
    d = pec_mime_disposition_parse("Attachment; filename=\"plain.txt\"; "
                                   "filename*0*=utf-8''caf%C3%A9; filename*1=\" e 100%.txt\"",
                                   &pp);
    CHECK_STR(d, "attachment");
    CHECK_STR(pec_mime_param(&pp, "filename"), "caf\xc3\xa9 e 100%.txt");
    CHECK(pp.n == 1);
    free(d);
    pec_mime_params_free(&pp);
    pec_mime_params_parse("; name*=iso-8859-1'it'perch%E8; title*3=x; a*b=c", &pp);
    CHECK_STR(pec_mime_param(&pp, "name"), "perch\xc3\xa8");
    CHECK_STR(pec_mime_param(&pp, "title"), "");
    CHECK_STR(pec_mime_param(&pp, "a*b"), "c");
    pec_mime_params_free(&pp);

    /* RFC 2231 names with white space around the stars and numbers, as GMime reads them */
    pec_mime_params_parse("; name* *=utf-8''x.pdf; title*0 *=utf-8''a%41; title * 1 = b", &pp);
    CHECK_STR(pec_mime_param(&pp, "name"), "x.pdf");
    CHECK_STR(pec_mime_param(&pp, "title"), "aAb");
    pec_mime_params_free(&pp);

    /* an RFC 2231 piece with a huge number is a piece (of an empty name), as for GMime */
    pec_mime_params_parse("; name*99999999999=x.pdf", &pp);
    CHECK_STR(pec_mime_param(&pp, "name"), "");
    pec_mime_params_free(&pp);

    /* a hostile number of parameters is cut at the limit */
    struct buf many = {0};
    for (int i = 0; i < 1000; i++)
        bputs(&many, "; p=\"1\"");
    pec_mime_params_parse(many.p, &pp);
    CHECK(pp.n == PEC_MIME_MAX_PARAMS);
    pec_mime_params_free(&pp);
    free(many.p);
}

static void test_multipart(void)
{
    struct pec_mime_multipart mp;
    const char *body = "preamble\r\n--B \t\r\nA\r\n--Bnot\r\n--B\r\n\r\n--B\r\nC\r\n"
                       "--B--  \r\nepilogue";

    CHECK(pec_mime_multipart_split(sp(body), "B", 0, &mp) == 0);
    CHECK(mp.closed && !mp.too_many && mp.nparts == 3);
    CHECK(mp.preamble.len == 8);
    CHECK(mp.parts[0].len == 9 && memcmp(mp.parts[0].p, "A\r\n--Bnot", 9) == 0);
    CHECK(mp.parts[1].len == 0);
    CHECK(mp.parts[2].len == 1 && mp.parts[2].p[0] == 'C');
    CHECK(mp.epilogue.len == 8);
    pec_mime_multipart_free(&mp);

    /* LF only, delimiter at the very start, no close delimiter */
    CHECK(pec_mime_multipart_split(sp("--B\nA\n--B\nB\n"), "B", 0, &mp) == 0);
    CHECK(!mp.closed && mp.nparts == 2 && mp.preamble.len == 0);
    CHECK(mp.parts[0].len == 1 && mp.parts[1].len == 2);
    pec_mime_multipart_free(&mp);

    CHECK(pec_mime_multipart_split(sp("no delimiter\r\n-- B\r\n"), "B", 0, &mp) == -1);
    CHECK(mp.nparts == 0 && mp.preamble.len == 20);
    pec_mime_multipart_free(&mp);
    CHECK(pec_mime_multipart_split(sp("--\r\n"), "", 0, &mp) == -1);
    pec_mime_multipart_free(&mp);

    /* CRs in the transport padding are padding, as for GMime (t/fuzz/crashes/gmime) */
    CHECK(pec_mime_multipart_split(sp("--B\r\r\nA\r\n--B\r \r\n2\r\n--B--\t\r\r\nx"), "B", 0,
                                   &mp) == 0);
    CHECK(mp.closed && mp.nparts == 2 && mp.parts[0].len == 1 && mp.parts[1].len == 1);
    CHECK(mp.epilogue.len == 1);
    pec_mime_multipart_free(&mp);

    CHECK(pec_mime_multipart_split(sp("--B\r\n1\r\n--B\r\n2\r\n--B\r\n3\r\n--B--\r\n"), "B", 2,
                                   &mp) == 0);
    CHECK(mp.too_many && mp.nparts == 2 && !mp.closed);
    pec_mime_multipart_free(&mp);
}

static void test_text_and_address(void)
{
    static const struct {
        const char *in, *out;
    } text[] = {
        {"=?iso-8859-1?Q?perch=E8?= no", "perch\xc3\xa8 no"},
        {"=?UTF-8?B?Y2Fmw6k=?=", "caf\xc3\xa9"},
        {"plain", "plain"},
        {"raw \xe8 latin", "raw \xc3\xa8 latin"},
    };
    static const struct {
        const char *in, *out;
    } addr[] = {
        {"\"Per conto di: x@pec.it\" <posta-certificata@pec.aruba.it>",
         "posta-certificata@pec.aruba.it"},
        {"posta-certificata@pec.aruba.it", "posta-certificata@pec.aruba.it"},
        {"  a@b.it (Gestore, <x@y>)", "a@b.it"},
        {"\"a, <b>\" <c@d.it>, e@f.it", "c@d.it"},
        {"<@relay.it:u@d.it>", "u@d.it"},
        {"x@y.it, z@w.it", "x@y.it"},
        {"Name <unterminated@x.it", "unterminated@x.it"},
    };

    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        char *t = pec_mime_decode_text(text[i].in);

        CHECK_STR(t, text[i].out);
        free(t);
    }
    for (size_t i = 0; i < sizeof(addr) / sizeof(addr[0]); i++) {
        char *a = pec_mime_address(addr[i].in);

        CHECK_STR(a, addr[i].out);
        free(a);
    }
    CHECK(pec_mime_address("  (only a comment) ") == NULL);
    CHECK(pec_mime_address("") == NULL);
}

static int decodes(int (*fn)(const unsigned char *, size_t, unsigned char **, size_t *),
                   const char *in, const char *expect)
{
    unsigned char *out;
    size_t n;
    int ret = fn((const unsigned char *)in, strlen(in), &out, &n);

    if (expect != NULL && (n != strlen(expect) || memcmp(out, expect, n) != 0)) {
        fprintf(stderr, "decoding \"%s\" gave \"%.*s\", expected \"%s\"\n", in, (int)n, out,
                expect);
        ret = -2;
    }
    free(out);
    return ret;
}

static void test_decoders(void)
{
    unsigned char *out;
    size_t n;

    CHECK(decodes(pec_base64_decode, "UE VD\r\nIGZp\n cm1h", "PEC firma") == 0);
    CHECK(decodes(pec_base64_decode, "YQ==", "a") == 0);
    CHECK(decodes(pec_base64_decode, "YWI", "ab") == 0); /* missing padding is tolerated */
    CHECK(decodes(pec_base64_decode, "", "") == 0);
    CHECK(decodes(pec_base64_decode, "YW*J", NULL) == -1);
    CHECK(decodes(pec_base64_decode, "YQ==YQ==", NULL) == -1);
    CHECK(decodes(pec_base64_decode, "YWJjZ", NULL) == -1);
    CHECK(decodes(pec_base64_decode, "YWJj=", NULL) == -1);
    CHECK(decodes(pec_base64_decode, "Y===", NULL) == -1);
    CHECK(pec_base64_decode((const unsigned char *)"Y\0Q=", 4, &out, &n) == -1);
    free(out);

    CHECK(decodes(pec_qp_decode, "perch=E8 =\r\nsoft=3D  \r\nnext=\nend",
                  "perch\xe8 soft=\r\nnextend") == 0);
    CHECK(decodes(pec_qp_decode, "lower=e8 tail  \t\nx=", "lower\xe8 tail\nx") == 0);
    CHECK(decodes(pec_qp_decode, "broken=G1 and =", "broken=G1 and ") == -1);

    CHECK(pec_mime_is_crlf((const unsigned char *)"a\r\nb\r\n", 6));
    CHECK(!pec_mime_is_crlf((const unsigned char *)"a\r\nb\n", 5));
    CHECK(!pec_mime_is_crlf((const unsigned char *)"\n", 1));
    out = pec_mime_crlf((const unsigned char *)"\na\nb\r\nc\rd\n", 10, &n);
    CHECK(n == 13 && memcmp(out, "\r\na\r\nb\r\nc\rd\r\n", 13) == 0);
    free(out);
}

/* ------------------------------------------------------------ the real corpus */

static const struct {
    const char *file;
    enum pec_kind kind;
    enum pec_tipo tipo;
    const char *identificativo;
} corpus[] = {
    {"aruba2014-busta-1.eml", PEC_KIND_BUSTA, PEC_TIPO_POSTA_CERTIFICATA,
     "opec275.20141107165200.03048.08.1.17@pec.aruba.it"},
    {"aruba2014-busta-2.eml", PEC_KIND_BUSTA, PEC_TIPO_POSTA_CERTIFICATA,
     "opec275.20141127151216.06559.08.1.17@pec.aruba.it"},
    {"aruba2014-accettazione.eml", PEC_KIND_NOTICE, PEC_TIPO_ACCETTAZIONE,
     "opec275.20141114182632.23219.07.1.48@pec.aruba.it"},
    {"aruba2014-consegna.eml", PEC_KIND_NOTICE, PEC_TIPO_AVVENUTA_CONSEGNA,
     "opec275.20141114182632.23219.07.1.48@pec.aruba.it"},
    {"aruba2018-accettazione.eml", PEC_KIND_NOTICE, PEC_TIPO_ACCETTAZIONE,
     "opec288.20181113163926.01838.310.1.63@pec.aruba.it"},
};

static void check_corpus_one(const char *dir, size_t i, const struct pec_trust *bundle)
{
    struct pec_inspect_opts o = {.trust = bundle, .at_mode = PEC_AT_SIGNING_TIME};
    struct pec_inspection in;
    char *path = xasprintf("%s/%s", dir, corpus[i].file);
    size_t len;
    unsigned char *msg = read_file(path, &len), *hit;

    CHECK(msg != NULL);
    if (msg == NULL) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(path);
        return;
    }
    CHECK(pec_inspect(msg, len, &o, &in) == 0);
    if (!in.valid)
        fprintf(stderr, "%s: %s\n", path, in.reason);
    CHECK(in.kind == corpus[i].kind);
    CHECK(in.has_daticert && in.daticert.tipo == corpus[i].tipo);
    CHECK_STR(in.daticert.identificativo, corpus[i].identificativo);
    CHECK_STR(in.digest, "sha1");
    CHECK(!in.index_checked && in.provider == NULL);
    CHECK(in.signature_ok && in.has_signing_time && in.checked_at == in.signing_time);
    CHECK(in.signer_subject != NULL && strstr(in.signer_subject, "ARUBA PEC") != NULL);
    CHECK(strlen(in.signer_sha1) == 40);
    CHECK_STR(in.from_address, "posta-certificata@pec.aruba.it");
    if (corpus[i].kind == PEC_KIND_BUSTA || corpus[i].tipo == PEC_TIPO_AVVENUTA_CONSEGNA) {
        CHECK(in.has_postacert && in.postacert_off + in.postacert_len <= len);
        CHECK(in.has_postacert && memcmp(msg + in.postacert_off, "Received: ", 10) == 0);
    }
    pec_inspection_free(&in);

    /* one byte of the signed text changed: the signature must say so */
    hit = memmem(msg, len, "Il giorno", 9);
    CHECK(hit != NULL);
    if (hit != NULL) {
        hit[3] = 'G';
        CHECK(pec_inspect(msg, len, &o, &in) == -1);
        CHECK(strstr(in.reason, "signature") != NULL);
        CHECK(in.kind == corpus[i].kind);
        pec_inspection_free(&in);
    }
    free(msg);
    free(path);
}

static void test_corpus(void)
{
    const char *shared = getenv("PEC_SHARED_DIR");
    char *dir, err[512];
    struct pec_trust *bundle;
    DIR *d;

    if (shared == NULL || *shared == '\0') {
        printf("corpus checks skipped: PEC_SHARED_DIR is not set\n");
        return;
    }
    dir = xasprintf("%s/corpus", shared);
    if ((d = opendir(dir)) == NULL) {
        printf("corpus checks skipped: %s is absent\n", dir);
        free(dir);
        return;
    }
    closedir(d);
    bundle = pec_trust_load(SYSTEM_BUNDLE, err, sizeof(err));
    if (bundle == NULL) {
        printf("corpus checks skipped: %s: %s\n", SYSTEM_BUNDLE, err);
        free(dir);
        return;
    }
    for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
        check_corpus_one(dir, i, bundle);
    pec_trust_free(bundle);
    free(dir);
}

/* ------------------------------------------------------------ crafted messages */

static const char *const signer_names[] = {"a", "b", "rogue", "expired", "selfsigned", "b-old"};
#define NSIGNERS (sizeof(signer_names) / sizeof(signer_names[0]))
static struct pec_signer *signers[NSIGNERS];

static struct pec_signer *signer(const char *name)
{
    for (size_t i = 0; i < NSIGNERS; i++)
        if (strcmp(signer_names[i], name) == 0)
            return signers[i];
    abort();
}

/* The domain a signer's certificate names in its SAN. */
static const char *signer_domain(const char *name)
{
    if (strcmp(name, "b") == 0 || strcmp(name, "b-old") == 0)
        return "pec-b.test";
    if (strcmp(name, "rogue") == 0)
        return "pec-rogue.test";
    return "pec-a.test";
}

/* How a crafted message is made; zero means the ordinary choice. */
struct spec {
    const char *signer;      /* "a" */
    const char *pec_header;  /* the X-Trasporto/X-Ricevuta line(s), CRLF each */
    const char *from;        /* From value; "" leaves From out */
    const char *tipo;        /* daticert tipo; NULL: no daticert.xml */
    const char *errore;      /* postacert/@errore */
    const char *ricevuta;    /* ricevuta/@tipo of a consegna */
    const char *xml;         /* daticert.xml text instead of the generated one */
    int postacert;           /* include postacert.eml */
    const char *inner;       /* the whole signed entity instead of the built one */
    const char *outer_ctype; /* top Content-Type instead of the built one */
    const char *mix_boundary;
    int no_mix_close;   /* leave the close delimiter out of the multipart/mixed */
    int two_daticerts;  /* a second daticert.xml */
    int broken_xml_b64; /* corrupt the base64 of daticert.xml */
    int many_parts;     /* add this many small parts */
    int sign_other;     /* sign other bytes than those sent */
};

/* The extra elements of <dati> each tipo needs. */
static const char *dati_for(const char *tipo, const char *ricevuta)
{
    static char buf[300];

    if (strcmp(tipo, "posta-certificata") == 0)
        return "<ricevuta tipo=\"completa\"/>";
    if (strcmp(tipo, "avvenuta-consegna") == 0) {
        snprintf(buf, sizeof(buf), "<ricevuta tipo=\"%s\"/><consegna>dest@pec-b.test</consegna>",
                 ricevuta ? ricevuta : "completa");
        return buf;
    }
    if (strcmp(tipo, "presa-in-carico") == 0)
        return "<ricezione>dest@pec-b.test</ricezione>";
    if (strcmp(tipo, "accettazione") == 0)
        return "";
    return "<consegna>dest@pec-b.test</consegna>"
           "<errore-esteso>5.1.1 - Gestore B S.p.A. - indirizzo non valido</errore-esteso>";
}

static char *daticert_xml(const struct spec *s)
{
    if (s->xml != NULL)
        return xstrdup(s->xml);
    return xasprintf(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<postacert tipo=\"%s\" errore=\"%s\">\n"
        "    <intestazione>\n"
        "        <mittente>user@pec-a.test</mittente>\n"
        "        <destinatari tipo=\"certificato\">dest@pec-b.test</destinatari>\n"
        "        <risposte>user@pec-a.test</risposte>\n"
        "        <oggetto>prova \xc3\xa8</oggetto>\n"
        "    </intestazione>\n"
        "    <dati>\n"
        "        <gestore-emittente>Gestore A S.p.A.</gestore-emittente>\n"
        "        <data zona=\"+0100\"><giorno>01/02/2024</giorno><ora>11:00:00</ora></data>\n"
        "        <identificativo>opec.1@pec-a.test</identificativo>\n"
        "        <msgid>&lt;c1@client.test&gt;</msgid>\n"
        "        %s\n"
        "    </dati>\n"
        "</postacert>\n",
        s->tipo, s->errore ? s->errore : "nessuno", dati_for(s->tipo, s->ricevuta));
}

static void put_daticert(struct buf *b, const struct spec *s, const char *delim)
{
    char *xml = daticert_xml(s);

    bputs(b, delim);
    bputs(b, "Content-Type: application/xml; name=\"daticert.xml\"\r\n"
             "Content-Disposition: inline; filename=\"daticert.xml\"\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n");
    if (s->broken_xml_b64)
        bputs(b, "PD94b!!!\r\n");
    bput_b64(b, (const unsigned char *)xml, strlen(xml));
    free(xml);
}

/* The multipart/mixed the provider signs. */
static void put_inner(struct buf *b, const struct spec *s)
{
    const char *bd = s->mix_boundary ? s->mix_boundary : "MIX-1";
    char *delim = xasprintf("\r\n--%s\r\n", bd);

    if (s->inner != NULL) {
        bputs(b, s->inner);
        free(delim);
        return;
    }
    bputs(b, "Content-Type: multipart/mixed; boundary=\"");
    bputs(b, bd);
    bputs(b, "\"\r\n\r\nThis is a multi-part message in MIME format.\r\n");
    bputs(b, delim);
    bputs(b, "Content-Type: text/plain; charset=\"iso-8859-1\"\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             "Messaggio di prova: il giorno 01/02/2024 perch=E8 s=EC.\r\n");
    if (s->tipo != NULL)
        put_daticert(b, s, delim);
    if (s->two_daticerts)
        put_daticert(b, s, delim);
    if (s->postacert) {
        bputs(b, delim);
        bputs(b, "Content-Type: message/rfc822; name=\"postacert.eml\"\r\n"
                 "Content-Disposition: inline; filename=\"postacert.eml\"\r\n\r\n"
                 "From: user@pec-a.test\r\nTo: dest@pec-b.test\r\nSubject: prova\r\n"
                 "Message-ID: <opec.1@pec-a.test>\r\n\r\nCiao.\r\n");
    }
    for (int i = 0; i < s->many_parts; i++) {
        bputs(b, delim);
        bputs(b, "\r\nx");
    }
    if (!s->no_mix_close) {
        bputs(b, "\r\n--");
        bputs(b, bd);
        bputs(b, "--\r\n");
    }
    free(delim);
}

/* Top-level headers, multipart/signed framing, signature part. */
static struct buf build(const struct spec *s)
{
    const char *name = s->signer ? s->signer : "a";
    struct buf b = {0}, inner = {0};
    unsigned char *der = NULL;
    size_t derlen = 0;
    char err[256];

    put_inner(&inner, s);
    if (s->sign_other) {
        struct buf other = {0};

        bput(&other, inner.p, inner.len);
        bputs(&other, "other bytes\r\n");
        CHECK(pec_smime_sign(signer(name), (unsigned char *)other.p, other.len, WHEN, &der, &derlen,
                             err, sizeof(err)) == 0);
        free(other.p);
    } else {
        CHECK(pec_smime_sign(signer(name), (unsigned char *)inner.p, inner.len, WHEN, &der, &derlen,
                             err, sizeof(err)) == 0);
    }
    bputs(&b, "Return-Path: <posta-certificata@");
    bputs(&b, signer_domain(name));
    bputs(&b, ">\r\nReceived: from mx.test by mx.test; Thu, 1 Feb 2024 11:00:00 +0100\r\n");
    if (s->from == NULL) {
        bputs(&b, "From: \"Per conto di: user@pec-a.test\" <posta-certificata@");
        bputs(&b, signer_domain(name));
        bputs(&b, ">\r\n");
    } else if (*s->from != '\0') {
        bputs(&b, "From: ");
        bputs(&b, s->from);
        bputs(&b, "\r\n");
    }
    bputs(&b, "To: dest@pec-b.test\r\nSubject: =?UTF-8?Q?POSTA_CERTIFICATA:_prova_=C3=A8?=\r\n"
              "Message-ID: <opec.1@pec-a.test>\r\n");
    bputs(&b, s->pec_header ? s->pec_header : "");
    bputs(&b, "MIME-Version: 1.0\r\nContent-Type: ");
    bputs(&b, s->outer_ctype ? s->outer_ctype
                             : "multipart/signed; protocol=\"application/pkcs7-signature\"; "
                               "micalg=sha-256; boundary=\"SIG-1\"");
    bputs(&b, "\r\n\r\nThis is an S/MIME signed message\r\n\r\n--SIG-1\r\n");
    bput(&b, inner.p, inner.len);
    bputs(&b, "\r\n--SIG-1\r\n"
              "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
              "Content-Transfer-Encoding: base64\r\n"
              "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n");
    bput_b64(&b, der, derlen);
    bputs(&b, "\r\n--SIG-1--\r\n");
    free(der);
    free(inner.p);
    return b;
}

/* The common shapes. */
#define BUSTA                                                                                      \
    .pec_header = "X-Trasporto: posta-certificata\r\n", .tipo = "posta-certificata", .postacert = 1
#define ACCETTAZIONE .pec_header = "X-Ricevuta: accettazione\r\n", .tipo = "accettazione"

/* What is done to a built message before it is inspected. */
enum mutation {
    MUT_NONE,
    MUT_TRUNCATE,    /* cut in the middle of the signature */
    MUT_FLIP,        /* change one byte of the signed text */
    MUT_BAD_B64,     /* a '*' inside the base64 of smime.p7s */
    MUT_NUL_SIG,     /* a NUL inside the base64 of smime.p7s */
    MUT_EMPTY_SIG,   /* nothing in smime.p7s */
    MUT_GARBAGE_SIG, /* base64 of bytes that are not CMS */
    MUT_SIG_TEXT,    /* the signature part labelled text/plain */
    MUT_ONE_PART,    /* the signature part removed */
    MUT_THREE_PARTS, /* a third part after the signature */
    MUT_LF,          /* CRLF -> LF everywhere */
    MUT_BIG_HEADER,  /* a top-level header line of 1 MB */
    MUT_JUNK_HEADER, /* 8-bit junk in a top-level header */
    MUT_NUL_HEADER,  /* a NUL in a top-level header */
    MUT_DUP_FROM,    /* a second From */
};

static void mutate(struct buf *b, enum mutation m)
{
    size_t sig = m >= MUT_TRUNCATE && m <= MUT_THREE_PARTS
                     ? find(b, "filename=\"smime.p7s\"\r\n\r\n") + 24
                     : 0;
    size_t end = sig ? find(b, "\r\n--SIG-1--") : 0;
    struct buf out = {0};

    switch (m) {
    case MUT_NONE:
        break;
    case MUT_TRUNCATE:
        b->len = sig + (end - sig) / 2;
        break;
    case MUT_FLIP:
        b->p[find(b, "Messaggio di prova") + 3] ^= 0x20;
        break;
    case MUT_BAD_B64:
        b->p[sig + 100] = '*';
        break;
    case MUT_NUL_SIG:
        b->p[sig + 100] = '\0';
        break;
    case MUT_EMPTY_SIG:
        bsplice(b, sig, end - sig, "", 0);
        break;
    case MUT_GARBAGE_SIG:
        bsplice_lit(b, sig, end - sig, "SGVsbG8sIG5vdCBhIENNUyBzdHJ1Y3R1cmUh");
        break;
    case MUT_SIG_TEXT: {
        size_t at = find(b, "application/pkcs7-signature; name");
        bsplice_lit(b, at, strlen("application/pkcs7-signature"), "text/plain");
        break;
    }
    case MUT_ONE_PART: {
        size_t from = find(b, "\r\n--SIG-1\r\nContent-Type: application/pkcs7");
        bsplice(b, from, end - from, "", 0);
        break;
    }
    case MUT_THREE_PARTS:
        bsplice_lit(b, end, 0, "\r\n--SIG-1\r\nContent-Type: text/plain\r\n\r\nthird");
        break;
    case MUT_LF:
        for (size_t i = 0; i < b->len; i++)
            if (!(b->p[i] == '\r' && i + 1 < b->len && b->p[i + 1] == '\n'))
                bput(&out, b->p + i, 1);
        free(b->p);
        *b = out;
        break;
    case MUT_BIG_HEADER:
        bputs(&out, "X-Big: ");
        for (int i = 0; i < 1 << 20; i++)
            bput(&out, "x", 1);
        bputs(&out, "\r\n");
        bsplice(b, 0, 0, out.p, out.len);
        free(out.p);
        break;
    case MUT_JUNK_HEADER:
        bsplice_lit(b, 0, 0, "X-Junk: \x80\xff\xfe\x01\x1b[2J\xc3\r\n\xff\xfe:\r\n");
        break;
    case MUT_NUL_HEADER:
        bsplice_lit(b, 0, 0, "X-Nul: a\0b\r\nSub\0ject: x\r\n");
        break;
    case MUT_DUP_FROM:
        bsplice_lit(b, 0, 0, "From: posta-certificata@pec-a.test\r\n");
        break;
    }
}

/* Inputs that are not built from a spec. */
static struct buf raw_empty(void)
{
    struct buf b = {xstrdup(""), 0, 1};

    return b;
}

static struct buf raw_junk(void)
{
    struct buf b = {0};
    uint32_t x = 2463534242u;

    for (int i = 0; i < 65536; i++) {
        unsigned char c;

        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        c = (unsigned char)x;
        bput(&b, &c, 1);
    }
    return b;
}

static struct buf raw_text(void)
{
    struct buf b = {0};

    bputs(&b, "Just some text, not a mail message.\nSecond line.\n");
    return b;
}

static struct buf raw_nuls(void)
{
    struct buf b = {0};

    for (int i = 0; i < 1000; i++)
        bput(&b, "\0", 1);
    return b;
}

static struct buf raw_unsigned_notice(void)
{
    struct buf b = {0};

    bputs(&b, "From: posta-certificata@pec-a.test\r\nTo: user@pec-a.test\r\n"
              "X-Ricevuta: accettazione\r\nSubject: ACCETTAZIONE: prova\r\n"
              "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nnot signed\r\n");
    return b;
}

struct mcase {
    const char *name;
    struct spec spec;
    enum mutation mut;
    struct buf (*raw)(void);
    int with_index;
    enum pec_verify_at at_mode;
    time_t at;
    enum pec_kind kind;
    const char *reason; /* a substring of the reason; NULL: valid */
};

static const struct mcase cases[] = {
    /* well-formed and valid: the checks below must not be too strict */
    {"busta, index given", {BUSTA}, MUT_NONE, NULL, 1, PEC_AT_NOW, 0, PEC_KIND_BUSTA, NULL},
    {"accettazione", {ACCETTAZIONE}, MUT_NONE, NULL, 1, PEC_AT_NOW, 0, PEC_KIND_NOTICE, NULL},
    {"consegna completa",
     {.pec_header = "X-Ricevuta: avvenuta-consegna\r\n",
      .tipo = "avvenuta-consegna",
      .postacert = 1,
      .signer = "b"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     NULL},
    {"consegna sintetica",
     {.pec_header = "X-Ricevuta: avvenuta-consegna\r\n",
      .tipo = "avvenuta-consegna",
      .ricevuta = "sintetica",
      .signer = "b"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     NULL},
    {"presa in carico, header names and values in odd case",
     {.pec_header = "x-RICEVUTA: Presa-In-Carico\r\n", .tipo = "presa-in-carico", .signer = "b"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     NULL},
    {"busta di anomalia",
     {.pec_header = "X-Trasporto: errore\r\n", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ANOMALIA,
     NULL},
    {"older certificate of b, checked in 2020",
     {BUSTA, .signer = "b-old"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_GIVEN,
     IN_2020,
     PEC_KIND_BUSTA,
     NULL},
    {"protocol parameter in upper case",
     {BUSTA, .outer_ctype = "multipart/signed; protocol=APPLICATION/X-PKCS7-SIGNATURE; "
                            "boundary=SIG-1"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     NULL},
    {"LF-only file", {BUSTA}, MUT_LF, NULL, 1, PEC_AT_NOW, 0, PEC_KIND_BUSTA, NULL},
    {"header line of 1 MB", {BUSTA}, MUT_BIG_HEADER, NULL, 1, PEC_AT_NOW, 0, PEC_KIND_BUSTA, NULL},
    {"8-bit junk in the headers",
     {ACCETTAZIONE},
     MUT_JUNK_HEADER,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     NULL},
    {"NUL bytes in the headers",
     {ACCETTAZIONE},
     MUT_NUL_HEADER,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     NULL},
    {"wrong From domain, no index to tell",
     {BUSTA, .signer = "b", .from = "x@pec-a.test"},
     MUT_NONE,
     NULL,
     0,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     NULL},

    /* not S/MIME at all */
    {"empty file", {0}, MUT_NONE, raw_empty, 1, PEC_AT_NOW, 0, PEC_KIND_ORDINARY, "empty"},
    {"8-bit junk",
     {0},
     MUT_NONE,
     raw_junk,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "no S/MIME signature"},
    {"non-MIME text",
     {0},
     MUT_NONE,
     raw_text,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "no S/MIME signature"},
    {"NUL bytes only",
     {0},
     MUT_NONE,
     raw_nuls,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "no S/MIME signature"},
    {"unsigned message claiming X-Ricevuta",
     {0},
     MUT_NONE,
     raw_unsigned_notice,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "no S/MIME signature (text/plain)"},
    {"multipart/signed with a PGP signature",
     {BUSTA, .outer_ctype = "multipart/signed; protocol=\"application/pgp-signature\"; "
                            "boundary=\"SIG-1\""},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "pgp-signature"},
    {"signed, but neither header, no index",
     {.tipo = "accettazione"},
     MUT_NONE,
     NULL,
     0,
     PEC_AT_NOW,
     0,
     PEC_KIND_ORDINARY,
     "neither X-Trasporto nor X-Ricevuta"},

    /* broken framing */
    {"multipart/signed without boundary",
     {BUSTA, .outer_ctype = "multipart/signed; protocol=\"application/pkcs7-signature\""},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "without boundary"},
    {"boundary that never occurs",
     {BUSTA, .outer_ctype = "multipart/signed; protocol=\"application/pkcs7-signature\"; "
                            "boundary=\"OTHER\""},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "never occurs"},
    {"multipart/signed with only one part",
     {BUSTA},
     MUT_ONE_PART,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "only one part"},
    {"multipart/signed with three parts",
     {BUSTA},
     MUT_THREE_PARTS,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "with 3 parts"},
    {"nested boundary confusion",
     {BUSTA, .mix_boundary = "SIG-1"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "multipart/signed with 4 parts"},
    {"truncated in the middle of the signature",
     {BUSTA},
     MUT_TRUNCATE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "truncated message"},
    {"broken base64 in smime.p7s",
     {BUSTA},
     MUT_BAD_B64,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "broken base64 in smime.p7s"},
    {"NUL byte in smime.p7s",
     {BUSTA},
     MUT_NUL_SIG,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "broken base64 in smime.p7s"},
    {"empty smime.p7s",
     {BUSTA},
     MUT_EMPTY_SIG,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "smime.p7s is empty"},
    {"smime.p7s that is not CMS",
     {BUSTA},
     MUT_GARBAGE_SIG,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "smime.p7s: malformed signature"},
    {"signature part not pkcs7",
     {BUSTA},
     MUT_SIG_TEXT,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "signature part is text/plain"},

    /* the signature and the signer */
    {"signature over different bytes",
     {BUSTA, .sign_other = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     "signature does not match the content"},
    {"one signed byte changed",
     {ACCETTAZIONE},
     MUT_FLIP,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_NOTICE,
     "signature does not match the content"},
    {"expired signer, checked now",
     {BUSTA, .signer = "expired"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     "expired"},
    {"self-signed signer",
     {BUSTA, .signer = "selfsigned"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     "untrusted issuer"},
    {"rogue signer, not in the index",
     {BUSTA, .signer = "rogue"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     "signer not in the providers' index"},
    {"From domain not the signer's",
     {BUSTA, .signer = "b", .from = "posta-certificata@pec-a.test"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_BUSTA,
     "From domain pec-a.test is not managed by provider Gestore B S.p.A."},
    {"no From, index given",
     {BUSTA, .from = ""},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "no From address to check"},

    /* the structure inside */
    {"no From, no index",
     {BUSTA, .from = ""},
     MUT_NONE,
     NULL,
     0,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "no From header"},
    {"two From headers",
     {BUSTA},
     MUT_DUP_FROM,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "more than one From"},
    {"signed, but neither header, signer listed",
     {.tipo = "accettazione"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "neither X-Trasporto nor X-Ricevuta"},
    {"both X-Trasporto and X-Ricevuta",
     {.pec_header = "X-Trasporto: posta-certificata\r\nX-Ricevuta: accettazione\r\n",
      .tipo = "posta-certificata",
      .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "both X-Trasporto and X-Ricevuta"},
    {"two X-Ricevuta headers",
     {.pec_header = "X-Ricevuta: accettazione\r\nX-Ricevuta: accettazione\r\n",
      .tipo = "accettazione"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "more than one X-Ricevuta"},
    {"unknown X-Ricevuta",
     {.pec_header = "X-Ricevuta: mancata-consegna\r\n", .tipo = "accettazione"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "X-Ricevuta \"mancata-consegna\""},
    {"unknown X-Trasporto",
     {.pec_header = "X-Trasporto: certificata\r\n", .tipo = "posta-certificata", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "X-Trasporto \"certificata\""},
    {"signed content not multipart/mixed",
     {BUSTA, .inner = "Content-Type: text/plain\r\n\r\nsolo testo\r\n"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "text/plain, not multipart/mixed"},
    {"multipart/mixed never closed",
     {BUSTA, .no_mix_close = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "multipart/mixed has no closing boundary"},
    {"huge number of parts",
     {BUSTA, .many_parts = 20000},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "more than 1000 MIME parts"},
    {"missing daticert",
     {.pec_header = "X-Trasporto: posta-certificata\r\n", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "daticert.xml missing"},
    {"two daticert.xml",
     {ACCETTAZIONE, .two_daticerts = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "more than one daticert.xml"},
    {"broken base64 in daticert.xml",
     {ACCETTAZIONE, .broken_xml_b64 = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "broken base64 in daticert.xml"},
    {"unparsable daticert",
     {ACCETTAZIONE, .xml = "<postacert tipo=\"accettazione\"><dati>"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "daticert.xml: not well-formed"},
    {"daticert breaking the DTD",
     {ACCETTAZIONE, .xml = "<postacert tipo=\"accettazione\"><intestazione><mittente>a@b"
                           "</mittente></intestazione><dati/></postacert>"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "daticert.xml: not valid"},
    {"daticert with an internal DTD subset",
     {ACCETTAZIONE, .xml = "<!DOCTYPE postacert [<!ENTITY x \"y\">]><postacert/>"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "daticert.xml: DOCTYPE"},
    {"X-Ricevuta / daticert tipo mismatch",
     {.pec_header = "X-Ricevuta: accettazione\r\n", .tipo = "avvenuta-consegna", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "X-Ricevuta accettazione but daticert tipo avvenuta-consegna"},
    {"X-Trasporto / daticert tipo mismatch",
     {.pec_header = "X-Trasporto: posta-certificata\r\n", .tipo = "accettazione", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "X-Trasporto posta-certificata but daticert tipo"},
    {"busta without postacert.eml",
     {.pec_header = "X-Trasporto: posta-certificata\r\n", .tipo = "posta-certificata"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "postacert.eml missing"},
    {"non-accettazione with postacert.eml",
     {.pec_header = "X-Ricevuta: non-accettazione\r\n",
      .tipo = "non-accettazione",
      .errore = "altro",
      .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "postacert.eml present"},
    {"preavviso with postacert.eml",
     {.pec_header = "X-Ricevuta: preavviso-errore-consegna\r\n",
      .tipo = "preavviso-errore-consegna",
      .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "postacert.eml present"},
    {"consegna sintetica with postacert.eml",
     {.pec_header = "X-Ricevuta: avvenuta-consegna\r\n",
      .tipo = "avvenuta-consegna",
      .ricevuta = "sintetica",
      .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "sintetica"},
    {"anomalia with daticert.xml",
     {.pec_header = "X-Trasporto: errore\r\n", .tipo = "posta-certificata", .postacert = 1},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "anomalia with a daticert.xml"},
    {"anomalia without the received message",
     {.pec_header = "X-Trasporto: errore\r\n"},
     MUT_NONE,
     NULL,
     1,
     PEC_AT_NOW,
     0,
     PEC_KIND_MALFORMED,
     "without the received message"},
};

static void run_case(const struct mcase *mc)
{
    struct pec_inspect_opts o = {
        .trust = trust, .index = mc->with_index ? idx : NULL, .at_mode = mc->at_mode, .at = mc->at};
    struct pec_inspection in;
    struct buf b = mc->raw ? mc->raw() : build(&mc->spec);
    int failures = check_failures;
    int ret;

    mutate(&b, mc->mut);
    ret = pec_inspect((const unsigned char *)b.p, b.len, &o, &in);
    CHECK(in.kind == mc->kind);
    CHECK(!in.temporary);
    if (mc->reason == NULL) {
        CHECK(ret == 0 && in.valid && in.reason[0] == '\0');
        CHECK(in.index_checked == mc->with_index);
        CHECK(!mc->with_index || in.provider != NULL);
    } else {
        CHECK(ret == -1 && !in.valid && strstr(in.reason, mc->reason) != NULL);
    }
    if (check_failures != failures)
        fprintf(stderr, "  case \"%s\": kind %s, reason \"%s\"\n", mc->name, pec_kind_name(in.kind),
                in.reason);
    pec_inspection_free(&in);
    free(b.p);
}

/* What a valid busta tells besides its verdict. */
static void test_busta_details(void)
{
    struct pec_inspect_opts o = {.trust = trust, .index = idx, .at_mode = PEC_AT_SIGNING_TIME};
    struct pec_inspection in;
    struct buf b = build(&(struct spec){BUSTA});

    CHECK(pec_inspect((const unsigned char *)b.p, b.len, &o, &in) == 0);
    CHECK(in.kind == PEC_KIND_BUSTA && in.valid);
    CHECK_STR(in.x_trasporto, "posta-certificata");
    CHECK(in.x_ricevuta == NULL);
    CHECK_STR(in.message_id, "<opec.1@pec-a.test>");
    CHECK_STR(in.subject, "POSTA CERTIFICATA: prova \xc3\xa8");
    CHECK_STR(in.from_address, "posta-certificata@pec-a.test");
    CHECK(in.provider != NULL && strcmp(in.provider->name, "Gestore A S.p.A.") == 0);
    CHECK_STR(in.digest, "sha256");
    CHECK(in.has_signing_time && in.signing_time == WHEN && in.checked_at == WHEN);
    CHECK(in.signer_subject != NULL && strstr(in.signer_subject, "Gestore A") != NULL);
    CHECK_STR(in.signer_address, "posta-certificata@pec-a.test");
    CHECK(in.has_daticert && in.daticert.tipo == PEC_TIPO_POSTA_CERTIFICATA);
    CHECK_STR(in.daticert.oggetto, "prova \xc3\xa8");
    CHECK_STR(in.daticert.msgid, "<c1@client.test>");
    CHECK(in.daticert.n_destinatari == 1);
    CHECK(in.has_postacert && in.postacert_off + in.postacert_len <= b.len);
    CHECK(in.has_postacert && in.postacert_len > 30 &&
          memcmp(b.p + in.postacert_off, "From: user@pec-a.test\r\n", 23) == 0 &&
          memcmp(b.p + in.postacert_off + in.postacert_len - 7, "Ciao.\r\n", 7) == 0);
    CHECK_STR(in.postacert_encoding, "7bit");
    pec_inspection_free(&in);

    /* a tampered busta still tells who signed it and what it claims */
    mutate(&b, MUT_FLIP);
    CHECK(pec_inspect((const unsigned char *)b.p, b.len, &o, &in) == -1);
    CHECK(in.kind == PEC_KIND_BUSTA && !in.signature_ok);
    CHECK(in.sig_status == PEC_VERIFY_BAD_SIGNATURE);
    CHECK(in.has_daticert && strcmp(in.daticert.identificativo, "opec.1@pec-a.test") == 0);
    CHECK(in.provider != NULL);
    pec_inspection_free(&in);
    free(b.p);

    /* headers that announce nothing known: daticert.xml is still read for the report */
    b = build(&(struct spec){.pec_header = "X-Ricevuta: ricevuta\r\n", .tipo = "accettazione"});
    CHECK(pec_inspect((const unsigned char *)b.p, b.len, &o, &in) == -1);
    CHECK(in.kind == PEC_KIND_MALFORMED && in.signature_ok);
    CHECK(in.has_daticert && in.daticert.tipo == PEC_TIPO_ACCETTAZIONE);
    pec_inspection_free(&in);
    free(b.p);

    /* without trust anchors nothing can be said */
    o.trust = NULL;
    CHECK(pec_inspect((const unsigned char *)"x", 1, &o, &in) == -1);
    CHECK(in.temporary);
    pec_inspection_free(&in);
}

/* Every prefix of a valid message is judged without a crash (the sanitizer watches). */
static void test_every_truncation(void)
{
    struct pec_inspect_opts o = {.trust = trust, .index = idx, .at_mode = PEC_AT_NOW};
    struct buf b = build(&(struct spec){ACCETTAZIONE});
    size_t valid = 0;

    /* only the line end after the close delimiter may go */
    for (size_t n = 0; n < b.len - 2; n += n < 200 ? 1 : 37) {
        struct pec_inspection in;
        unsigned char *copy = xmalloc(n + 1); /* exact size, so overreads are caught */

        memcpy(copy, b.p, n);
        if (pec_inspect(copy, n, &o, &in) == 0)
            valid++;
        pec_inspection_free(&in);
        free(copy);
    }
    CHECK(valid == 0);
    free(b.p);
}

static void load_pki(void)
{
    char err[512], *p, *c, *k, *ch;

    pki = check_env("PEC_PKI_DIR");
    p = xasprintf("%s/trust.pem", pki);
    trust = pec_trust_load(p, err, sizeof(err));
    if (trust == NULL) {
        fprintf(stderr, "%s: %s\n", p, err);
        exit(1);
    }
    free(p);
    p = xasprintf("%s/index.ldif", pki);
    idx = pec_index_load(p, err, sizeof(err));
    if (idx == NULL) {
        fprintf(stderr, "%s: %s\n", p, err);
        exit(1);
    }
    free(p);
    for (size_t i = 0; i < NSIGNERS; i++) {
        c = xasprintf("%s/%s/cert.pem", pki, signer_names[i]);
        k = xasprintf("%s/%s/key.pem", pki, signer_names[i]);
        ch = xasprintf("%s/%s/chain.pem", pki, signer_names[i]);
        signers[i] = pec_signer_load(c, ch, k, "sha256", err, sizeof(err));
        if (signers[i] == NULL) {
            fprintf(stderr, "%s: %s\n", c, err);
            exit(1);
        }
        free(c);
        free(k);
        free(ch);
    }
}

int main(void)
{
    char err[256];

    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "pec_lib_init: %s\n", err);
        return 1;
    }
    test_split_and_fields();
    test_content_type();
    test_multipart();
    test_text_and_address();
    test_decoders();
    test_corpus();

    load_pki();
    test_busta_details();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
    printf("%zu crafted cases\n", sizeof(cases) / sizeof(cases[0]));
    test_every_truncation();

    for (size_t i = 0; i < NSIGNERS; i++)
        pec_signer_free(signers[i]);
    pec_index_free(idx);
    pec_trust_free(trust);
    return check_exit();
}
