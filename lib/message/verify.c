/*
 * verify - what an incoming message is, and whether it is a valid PEC object.
 *
 * pec_inspect() runs the four steps of verify.h one after the other, each noting its
 * first failure in its own slot; the reason reported is the first slot filled, in step
 * order, so the sysadmin reads about a bad signature before reading about the bad
 * daticert.xml of the same forged message.  Every step that can run does run, even after
 * an earlier one failed, so pecverify can still show who signed and what daticert.xml
 * says about a tampered message.
 *
 * The MIME work is done on the caller's bytes with lib/mime (ranges, no copies); only
 * the signed part is copied, and only when it has bare LFs, to give S/MIME the CRLF form
 * it was signed in.
 */
#include "message/verify.h"
#include "message/libinit.h"
#include "message/mime.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The steps, in the order their failures are reported. */
enum step {
    STEP_FRAMING,
    STEP_SIGNATURE,
    STEP_INDEX,
    STEP_STRUCTURE,
    STEP_COUNT,
};

/* Top-level header fields read in one pass over the header block. */
enum top_field {
    TOP_X_TRASPORTO,
    TOP_X_RICEVUTA,
    TOP_X_TIPO_RICEVUTA,
    TOP_X_RIFERIMENTO,
    TOP_X_VERIFICA,
    TOP_MESSAGE_ID,
    TOP_SUBJECT,
    TOP_FROM,
    TOP_CONTENT_TYPE,
    TOP_COUNT,
};

static const char *const top_names[TOP_COUNT] = {
    "X-Trasporto",         "X-Ricevuta", "X-TipoRicevuta", "X-Riferimento-Message-ID",
    "X-VerificaSicurezza", "Message-ID", "Subject",        "From",
    "Content-Type",
};

struct ctx {
    const unsigned char *msg;
    const struct pec_inspect_opts *opts;
    struct pec_inspection *out;

    char *top[TOP_COUNT];
    size_t top_count[TOP_COUNT];

    char reason[STEP_COUNT][400];
    enum pec_kind framing_kind; /* the kind when framing failed */
    enum pec_kind structure_kind;
    enum pec_kind claimed; /* what the headers announce */

    struct pec_span content; /* first part of multipart/signed */
    unsigned char *sig;
    size_t siglen;
};

static void vfail(struct ctx *c, enum step step, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void fail(struct ctx *c, enum step step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_framing(struct ctx *c, enum pec_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Note the first failure of STEP; later ones of the same step add nothing. */
static void vfail(struct ctx *c, enum step step, const char *fmt, va_list ap)
{
    if (c->reason[step][0] == '\0')
        vsnprintf(c->reason[step], sizeof(c->reason[step]), fmt, ap);
}

static void fail(struct ctx *c, enum step step, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(c, step, fmt, ap);
    va_end(ap);
}

/* A framing failure also decides the kind: ordinary (unsigned) or malformed. */
static void fail_framing(struct ctx *c, enum pec_kind kind, const char *fmt, ...)
{
    va_list ap;

    if (c->reason[STEP_FRAMING][0] == '\0')
        c->framing_kind = kind;
    va_start(ap, fmt);
    vfail(c, STEP_FRAMING, fmt, ap);
    va_end(ap);
}

const char *pec_kind_name(enum pec_kind kind)
{
    switch (kind) {
    case PEC_KIND_ORDINARY:
        return "ordinary";
    case PEC_KIND_MALFORMED:
        return "malformed";
    case PEC_KIND_BUSTA:
        return "busta";
    case PEC_KIND_NOTICE:
        return "notice";
    case PEC_KIND_ANOMALIA:
        return "anomalia";
    }
    return "unknown";
}

/* ------------------------------------------------------------ headers */

static void read_top_headers(struct ctx *c, struct pec_span head)
{
    struct pec_mime_fields it;
    struct pec_mime_field f;

    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f)) {
        for (int i = 0; i < TOP_COUNT; i++) {
            if (!pec_mime_field_is(&f, top_names[i]))
                continue;
            if (c->top_count[i]++ == 0)
                c->top[i] = pec_mime_unfold(f.value);
            break;
        }
    }
}

/* Hand the header values over to OUT, which then owns them. */
static void publish_top_headers(struct ctx *c)
{
    struct pec_inspection *out = c->out;

    out->x_trasporto = c->top[TOP_X_TRASPORTO];
    out->x_ricevuta = c->top[TOP_X_RICEVUTA];
    out->x_tipo_ricevuta = c->top[TOP_X_TIPO_RICEVUTA];
    out->x_riferimento_message_id = c->top[TOP_X_RIFERIMENTO];
    out->x_verifica_sicurezza = c->top[TOP_X_VERIFICA];
    out->message_id = c->top[TOP_MESSAGE_ID];
    out->from = c->top[TOP_FROM];
    if (c->top[TOP_SUBJECT] != NULL) {
        out->subject = pec_mime_decode_text(c->top[TOP_SUBJECT]);
        free(c->top[TOP_SUBJECT]);
    }
    if (out->from != NULL)
        out->from_address = pec_mime_address(out->from);
    free(c->top[TOP_CONTENT_TYPE]);
    memset(c->top, 0, sizeof(c->top));
}

/* A part's headers and body, with the three MIME fields we need from it. */
struct part {
    struct pec_span head;
    struct pec_span body;
    struct pec_mime_ctype ct;
    char *disposition;
    struct pec_mime_params dparams;
    char *encoding; /* lowercase; "7bit" when absent */
    const char *filename;
};

static void part_open(struct part *p, struct pec_span bytes)
{
    char *v;

    pec_mime_split(bytes.p, bytes.len, &p->head, &p->body);
    v = pec_mime_header(p->head, "Content-Type");
    if (pec_mime_ctype_parse(v, &p->ct) != 0 && v == NULL) {
        free(p->ct.type);
        free(p->ct.subtype);
        p->ct.type = xstrdup("text");
        p->ct.subtype = xstrdup("plain");
    }
    free(v);
    v = pec_mime_header(p->head, "Content-Disposition");
    p->disposition = pec_mime_disposition_parse(v, &p->dparams);
    free(v);
    p->encoding = pec_mime_encoding(p->head);
    p->filename = pec_mime_param(&p->dparams, "filename");
    if (p->filename == NULL)
        p->filename = pec_mime_param(&p->ct.params, "name");
}

static void part_close(struct part *p)
{
    pec_mime_ctype_free(&p->ct);
    free(p->disposition);
    pec_mime_params_free(&p->dparams);
    free(p->encoding);
}

/*
 * The body of P decoded per its Content-Transfer-Encoding into *OUT (xmalloc'ed).
 * 0, or -1 with *WHY set when the encoding is unknown or the data broken.
 */
static int part_decode(const struct part *p, unsigned char **out, size_t *outlen, const char **why)
{
    if (strcmp(p->encoding, "base64") == 0) {
        *why = "broken base64";
        return pec_base64_decode(p->body.p, p->body.len, out, outlen);
    }
    if (strcmp(p->encoding, "quoted-printable") == 0) {
        *why = "broken quoted-printable";
        return pec_qp_decode(p->body.p, p->body.len, out, outlen);
    }
    *out = xmalloc(p->body.len + 1);
    memcpy(*out, p->body.p, p->body.len);
    (*out)[p->body.len] = '\0';
    *outlen = p->body.len;
    if (strcmp(p->encoding, "7bit") != 0 && strcmp(p->encoding, "8bit") != 0 &&
        strcmp(p->encoding, "binary") != 0) {
        *why = "unknown Content-Transfer-Encoding";
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ step 1: framing */

static int is_pkcs7_signature(const char *type)
{
    return strcasecmp(type, "application/pkcs7-signature") == 0 ||
           strcasecmp(type, "application/x-pkcs7-signature") == 0;
}

/* The smime.p7s part: its type, and its bytes decoded into C->sig. */
static int read_signature_part(struct ctx *c, struct pec_span bytes)
{
    struct part p = {0};
    const char *why;
    char type[200];
    int ret = -1;

    part_open(&p, bytes);
    snprintf(type, sizeof(type), "%s/%s", p.ct.type, p.ct.subtype);
    if (!is_pkcs7_signature(type))
        fail_framing(c, PEC_KIND_MALFORMED, "signature part is %s, not application/pkcs7-signature",
                     p.ct.type[0] ? type : "without a Content-Type");
    else if (part_decode(&p, &c->sig, &c->siglen, &why) != 0)
        fail_framing(c, PEC_KIND_MALFORMED, "%s in smime.p7s", why);
    else if (c->siglen == 0)
        fail_framing(c, PEC_KIND_MALFORMED, "smime.p7s is empty");
    else
        ret = 0;
    part_close(&p);
    return ret;
}

/* Split the multipart/signed body into content and signature. */
static int split_signed(struct ctx *c, struct pec_span body, const char *boundary)
{
    struct pec_mime_multipart mp;
    int ret = -1;

    if (pec_mime_multipart_split(body, boundary, PEC_INSPECT_MAX_PARTS, &mp) != 0)
        fail_framing(c, PEC_KIND_MALFORMED,
                     "multipart/signed: its boundary never occurs in "
                     "the body");
    else if (mp.too_many || mp.nparts > 2)
        fail_framing(c, PEC_KIND_MALFORMED, "multipart/signed with %s%zu parts, expected 2",
                     mp.too_many ? "more than " : "", mp.nparts);
    else if (!mp.closed)
        fail_framing(c, PEC_KIND_MALFORMED,
                     "truncated message: the closing boundary of "
                     "multipart/signed is missing");
    else if (mp.nparts < 2)
        fail_framing(c, PEC_KIND_MALFORMED, "multipart/signed with only one part, expected 2");
    else if (read_signature_part(c, mp.parts[1]) == 0) {
        c->content = mp.parts[0];
        ret = 0;
    }
    pec_mime_multipart_free(&mp);
    return ret;
}

static int check_framing(struct ctx *c, struct pec_span body)
{
    struct pec_mime_ctype ct;
    const char *protocol, *boundary;
    int ret = -1;

    if (c->top[TOP_CONTENT_TYPE] == NULL) {
        fail_framing(c, PEC_KIND_ORDINARY, "no S/MIME signature (no Content-Type)");
        return -1;
    }
    pec_mime_ctype_parse(c->top[TOP_CONTENT_TYPE], &ct);
    protocol = pec_mime_param(&ct.params, "protocol");
    boundary = pec_mime_param(&ct.params, "boundary");
    if (!pec_mime_ctype_is(&ct, "multipart", "signed"))
        fail_framing(c, PEC_KIND_ORDINARY, "no S/MIME signature (%.60s/%.60s)",
                     ct.type[0] ? ct.type : "?", ct.subtype[0] ? ct.subtype : "?");
    else if (c->top_count[TOP_CONTENT_TYPE] > 1)
        fail_framing(c, PEC_KIND_MALFORMED, "more than one Content-Type header");
    else if (protocol != NULL && !is_pkcs7_signature(protocol))
        fail_framing(c, PEC_KIND_ORDINARY,
                     "no S/MIME signature (multipart/signed with protocol %.100s)", protocol);
    else if (boundary == NULL || *boundary == '\0')
        fail_framing(c, PEC_KIND_MALFORMED, "multipart/signed without boundary");
    else
        ret = split_signed(c, body, boundary);
    pec_mime_ctype_free(&ct);
    return ret;
}

/* ------------------------------------------------------------ steps 2, 3: signature, index */

static const char *domain_of(const char *address)
{
    const char *at = address != NULL ? strrchr(address, '@') : NULL;

    return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

static void check_index(struct ctx *c, const struct pec_verify_result *res)
{
    const struct pec_index *idx = c->opts->index;
    struct pec_inspection *out = c->out;
    const char *domain;

    if (idx == NULL || res->signer_der == NULL)
        return;
    out->index_checked = 1;
    out->provider = pec_index_by_cert(idx, res->signer_der, res->signer_derlen);
    if (out->provider == NULL) {
        fail(c, STEP_INDEX, "signer not in the providers' index (%.200s)", res->signer_subject);
        return;
    }
    domain = domain_of(out->from_address);
    if (domain == NULL)
        fail(c, STEP_INDEX, "no From address to check against provider %.200s",
             out->provider->name);
    else if (!pec_provider_manages(out->provider, domain))
        fail(c, STEP_INDEX, "From domain %.100s is not managed by provider %.200s", domain,
             out->provider->name);
}

static void keep_signer(struct pec_inspection *out, const struct pec_verify_result *res)
{
    out->sig_status = res->status;
    out->signature_ok = res->ok;
    out->signer_subject = res->signer_subject ? xstrdup(res->signer_subject) : NULL;
    out->signer_issuer = res->signer_issuer ? xstrdup(res->signer_issuer) : NULL;
    out->signer_address = res->signer_address ? xstrdup(res->signer_address) : NULL;
    memcpy(out->signer_sha1, res->signer_sha1, sizeof(out->signer_sha1));
    memcpy(out->digest, res->digest, sizeof(out->digest));
    out->has_signing_time = res->has_signing_time;
    out->signing_time = res->signing_time;
    out->checked_at = res->checked_at;
}

static void check_signature(struct ctx *c)
{
    const struct pec_inspect_opts *o = c->opts;
    struct pec_verify_result res;
    const unsigned char *content = c->content.p;
    unsigned char *canon = NULL;
    size_t len = c->content.len;

    if (!pec_mime_is_crlf(content, len))
        content = canon = pec_mime_crlf(content, len, &len);
    pec_smime_verify(content, len, c->sig, c->siglen, o->trust, o->at_mode, o->at, &res);
    free(canon);
    keep_signer(c->out, &res);
    if (res.status == PEC_VERIFY_MALFORMED || res.status == PEC_VERIFY_NO_SIGNATURE) {
        fail_framing(c, PEC_KIND_MALFORMED, "smime.p7s: %s", res.reason);
    } else if (res.status == PEC_VERIFY_INTERNAL) {
        c->out->temporary = 1;
        fail(c, STEP_SIGNATURE, "%s", res.reason);
    } else if (!res.ok) {
        fail(c, STEP_SIGNATURE, "%s", res.reason);
    }
    check_index(c, &res);
    pec_verify_result_free(&res);
}

/* ------------------------------------------------------------ step 4: structure */

static const struct {
    const char *value;
    enum pec_tipo tipo;
} ricevute[] = {
    {"accettazione", PEC_TIPO_ACCETTAZIONE},
    {"non-accettazione", PEC_TIPO_NON_ACCETTAZIONE},
    {"presa-in-carico", PEC_TIPO_PRESA_IN_CARICO},
    {"avvenuta-consegna", PEC_TIPO_AVVENUTA_CONSEGNA},
    {"errore-consegna", PEC_TIPO_ERRORE_CONSEGNA},
    {"preavviso-errore-consegna", PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA},
    {"rilevazione-virus", PEC_TIPO_RILEVAZIONE_VIRUS},
};

/*
 * What the headers announce: sets C->claimed and *TIPO (the daticert tipo the header
 * implies).  0, or -1 with a structure failure noted.
 */
static int classify(struct ctx *c, enum pec_tipo *tipo)
{
    const char *xt = c->out->x_trasporto, *xr = c->out->x_ricevuta;

    if (c->top_count[TOP_X_TRASPORTO] > 1 || c->top_count[TOP_X_RICEVUTA] > 1) {
        fail(c, STEP_STRUCTURE, "more than one %s header",
             c->top_count[TOP_X_TRASPORTO] > 1 ? "X-Trasporto" : "X-Ricevuta");
        return -1;
    }
    if (xt != NULL && xr != NULL) {
        fail(c, STEP_STRUCTURE, "both X-Trasporto and X-Ricevuta");
        return -1;
    }
    if (xt != NULL && strcasecmp(xt, "posta-certificata") == 0) {
        c->claimed = PEC_KIND_BUSTA;
        *tipo = PEC_TIPO_POSTA_CERTIFICATA;
        return 0;
    }
    if (xt != NULL && strcasecmp(xt, "errore") == 0) {
        c->claimed = PEC_KIND_ANOMALIA;
        return 0;
    }
    if (xt != NULL) {
        fail(c, STEP_STRUCTURE, "X-Trasporto \"%.100s\" is unknown", xt);
        return -1;
    }
    for (size_t i = 0; xr != NULL && i < sizeof(ricevute) / sizeof(ricevute[0]); i++) {
        if (strcasecmp(xr, ricevute[i].value) == 0) {
            c->claimed = PEC_KIND_NOTICE;
            *tipo = ricevute[i].tipo;
            return 0;
        }
    }
    if (xr != NULL) {
        fail(c, STEP_STRUCTURE, "X-Ricevuta \"%.100s\" is unknown", xr);
        return -1;
    }
    /* signed, but announcing nothing: a user's S/MIME mail, unless a provider signed it */
    c->structure_kind = c->out->provider != NULL ? PEC_KIND_MALFORMED : PEC_KIND_ORDINARY;
    fail(c, STEP_STRUCTURE, "not a PEC message: neither X-Trasporto nor X-Ricevuta");
    return -1;
}

/* The parts of the signed multipart/mixed that the rules name. */
struct found {
    struct part daticert;
    struct part postacert;
    int n_daticert;
    int n_postacert;      /* parts named postacert.eml */
    int n_rfc822_unnamed; /* message/rfc822 parts without that name */
};

static int is_daticert(const struct part *p)
{
    return p->filename != NULL && strcasecmp(p->filename, "daticert.xml") == 0;
}

static int is_postacert(const struct part *p)
{
    return p->filename != NULL && strcasecmp(p->filename, "postacert.eml") == 0;
}

/* Keep P in F when it is one of the parts we look for; else close it. */
static void sort_part(struct found *f, struct part *p)
{
    if (is_daticert(p) && f->n_daticert++ == 0) {
        f->daticert = *p;
    } else if (is_postacert(p) && f->n_postacert++ == 0) {
        if (f->n_rfc822_unnamed > 0)
            part_close(&f->postacert);
        f->postacert = *p;
    } else if (pec_mime_ctype_is(&p->ct, "message", "rfc822") && f->n_postacert == 0 &&
               f->n_rfc822_unnamed++ == 0) {
        f->postacert = *p;
    } else {
        part_close(p);
    }
}

static void found_free(struct found *f)
{
    if (f->n_daticert > 0)
        part_close(&f->daticert);
    if (f->n_postacert > 0 || f->n_rfc822_unnamed > 0)
        part_close(&f->postacert);
}

/* Split the signed content, a multipart/mixed, and find its PEC parts. 0, or -1. */
static int find_parts(struct ctx *c, struct found *f)
{
    struct part inner = {0};
    struct pec_mime_multipart mp = {0};
    const char *boundary;
    int ret = -1;

    part_open(&inner, c->content);
    boundary = pec_mime_param(&inner.ct.params, "boundary");
    if (!pec_mime_ctype_is(&inner.ct, "multipart", "mixed"))
        fail(c, STEP_STRUCTURE, "signed content is %.60s/%.60s, not multipart/mixed",
             inner.ct.type[0] ? inner.ct.type : "?", inner.ct.subtype[0] ? inner.ct.subtype : "?");
    else if (boundary == NULL || *boundary == '\0')
        fail(c, STEP_STRUCTURE, "multipart/mixed without boundary");
    else if (pec_mime_multipart_split(inner.body, boundary, PEC_INSPECT_MAX_PARTS, &mp) != 0)
        fail(c, STEP_STRUCTURE, "multipart/mixed: its boundary never occurs in the body");
    else if (mp.too_many)
        fail(c, STEP_STRUCTURE, "more than %d MIME parts in multipart/mixed",
             PEC_INSPECT_MAX_PARTS);
    else if (!mp.closed)
        fail(c, STEP_STRUCTURE, "multipart/mixed has no closing boundary");
    else
        ret = 0;
    for (size_t i = 0; ret == 0 && i < mp.nparts; i++) {
        struct part p = {0};

        part_open(&p, mp.parts[i]);
        sort_part(f, &p);
    }
    if (ret == 0 && (f->n_daticert > 1 || f->n_postacert > 1)) {
        fail(c, STEP_STRUCTURE, "more than one %s",
             f->n_daticert > 1 ? "daticert.xml" : "postacert.eml");
        ret = -1;
    }
    pec_mime_multipart_free(&mp);
    part_close(&inner);
    return ret;
}

static void keep_postacert(struct ctx *c, const struct found *f)
{
    struct pec_inspection *out = c->out;

    if (f->n_postacert == 0 && f->n_rfc822_unnamed == 0)
        return;
    out->has_postacert = 1;
    out->postacert_off = (size_t)(f->postacert.body.p - c->msg);
    out->postacert_len = f->postacert.body.len;
    out->postacert_encoding = xstrdup(f->postacert.encoding);
}

/* Decode and parse daticert.xml into OUT.  0, or -1 with a structure failure noted. */
static int read_daticert(struct ctx *c, const struct part *p)
{
    unsigned char *xml;
    size_t len;
    const char *why;
    char err[300];
    char type[200];
    int ret = -1;

    snprintf(type, sizeof(type), "%s/%s", p->ct.type, p->ct.subtype);
    if (strcmp(type, "application/xml") != 0 && strcmp(type, "text/xml") != 0) {
        fail(c, STEP_STRUCTURE, "daticert.xml is %.100s, not application/xml", type);
        return -1;
    }
    if (part_decode(p, &xml, &len, &why) != 0)
        fail(c, STEP_STRUCTURE, "%s in daticert.xml", why);
    else if (pec_daticert_parse((const char *)xml, len, &c->out->daticert, err, sizeof(err)) != 0)
        fail(c, STEP_STRUCTURE, "%s", err);
    else
        ret = 0;
    c->out->has_daticert = ret == 0;
    free(xml);
    return ret;
}

enum presence { OPTIONAL, REQUIRED, FORBIDDEN };

/* Must postacert.eml travel with a daticert of tipo T (pec-rules.md 4)? */
static enum presence postacert_rule(const struct pec_daticert *d)
{
    switch (d->tipo) {
    case PEC_TIPO_POSTA_CERTIFICATA:
        return REQUIRED;
    case PEC_TIPO_AVVENUTA_CONSEGNA:
        return d->ricevuta == PEC_RICEVUTA_SINTETICA ? FORBIDDEN : REQUIRED;
    case PEC_TIPO_NON_ACCETTAZIONE:
    case PEC_TIPO_PREAVVISO_ERRORE_CONSEGNA:
    case PEC_TIPO_RILEVAZIONE_VIRUS:
        return FORBIDDEN;
    default:
        return OPTIONAL;
    }
}

/* daticert.xml against the header that announced it, and postacert.eml against both. */
static void check_daticert(struct ctx *c, const struct found *f, enum pec_tipo expected)
{
    const struct pec_daticert *d = &c->out->daticert;
    int has_original = f->n_postacert > 0 || f->n_rfc822_unnamed > 0;
    enum presence rule;

    if (d->tipo != expected) {
        if (c->claimed == PEC_KIND_BUSTA)
            fail(c, STEP_STRUCTURE, "X-Trasporto posta-certificata but daticert tipo %s",
                 pec_tipo_name(d->tipo));
        else
            fail(c, STEP_STRUCTURE, "X-Ricevuta %s but daticert tipo %s", pec_tipo_name(expected),
                 pec_tipo_name(d->tipo));
        return;
    }
    rule = postacert_rule(d);
    if (rule == REQUIRED && !has_original)
        fail(c, STEP_STRUCTURE, "postacert.eml missing");
    else if (rule == FORBIDDEN && has_original)
        fail(c, STEP_STRUCTURE, "postacert.eml present in a %s%s, where the rules forbid it",
             pec_tipo_name(d->tipo), d->ricevuta == PEC_RICEVUTA_SINTETICA ? " sintetica" : "");
}

/* The parts against what the headers announced. */
static void check_parts(struct ctx *c, const struct found *f, enum pec_tipo expected)
{
    if (c->claimed == PEC_KIND_ANOMALIA) {
        if (f->n_daticert > 0)
            fail(c, STEP_STRUCTURE, "busta di anomalia with a daticert.xml");
        else if (!c->out->has_postacert)
            fail(c, STEP_STRUCTURE, "busta di anomalia without the received message");
    } else if (f->n_daticert == 0) {
        fail(c, STEP_STRUCTURE, "daticert.xml missing");
    } else if (read_daticert(c, &f->daticert) == 0) {
        check_daticert(c, f, expected);
    }
}

static void check_structure(struct ctx *c)
{
    struct found f = {0};
    enum pec_tipo expected = PEC_TIPO_ACCETTAZIONE;
    int classified;

    c->structure_kind = PEC_KIND_MALFORMED;
    if (c->out->from == NULL)
        fail(c, STEP_STRUCTURE, "no From header");
    else if (c->top_count[TOP_FROM] > 1)
        fail(c, STEP_STRUCTURE, "more than one From header");
    classified = classify(c, &expected) == 0;
    if (find_parts(c, &f) == 0) {
        keep_postacert(c, &f);
        if (classified)
            check_parts(c, &f, expected);
        else if (f.n_daticert == 1)
            read_daticert(c, &f.daticert); /* for the report: the verdict is already given */
    }
    found_free(&f);
}

/* ------------------------------------------------------------ the verdict */

static void conclude(struct ctx *c)
{
    struct pec_inspection *out = c->out;
    int step;

    for (step = 0; step < STEP_COUNT && c->reason[step][0] == '\0'; step++)
        ;
    if (c->reason[STEP_FRAMING][0] != '\0')
        out->kind = c->framing_kind;
    else if (c->reason[STEP_STRUCTURE][0] != '\0')
        out->kind = c->structure_kind;
    else
        out->kind = c->claimed;
    out->valid = step == STEP_COUNT;
    if (!out->valid)
        snprintf(out->reason, sizeof(out->reason), "%s", c->reason[step]);
}

int pec_inspect(const unsigned char *msg, size_t len, const struct pec_inspect_opts *opts,
                struct pec_inspection *out)
{
    struct ctx c;
    struct pec_span head, body;
    int framed;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    c.msg = msg;
    c.opts = opts;
    c.out = out;
    if (opts == NULL || opts->trust == NULL) {
        out->temporary = 1;
        snprintf(out->reason, sizeof(out->reason), "no trust anchors to verify with");
        return -1;
    }
    if (pec_lib_init(out->reason, sizeof(out->reason)) != 0) {
        out->temporary = 1;
        return -1;
    }
    if (len == 0) {
        fail_framing(&c, PEC_KIND_ORDINARY, "empty message");
    } else {
        pec_mime_split(msg, len, &head, &body);
        read_top_headers(&c, head);
        framed = check_framing(&c, body) == 0;
        publish_top_headers(&c);
        if (framed) {
            check_signature(&c);
            check_structure(&c);
        }
    }
    free(c.sig);
    conclude(&c);
    return out->valid ? 0 : -1;
}

void pec_inspection_free(struct pec_inspection *in)
{
    if (in == NULL)
        return;
    free(in->x_trasporto);
    free(in->x_ricevuta);
    free(in->x_tipo_ricevuta);
    free(in->x_riferimento_message_id);
    free(in->x_verifica_sicurezza);
    free(in->message_id);
    free(in->subject);
    free(in->from);
    free(in->from_address);
    pec_daticert_free(&in->daticert);
    free(in->signer_subject);
    free(in->signer_issuer);
    free(in->signer_address);
    free(in->postacert_encoding);
    memset(in, 0, sizeof(*in));
}
