/*
 * inspect_common - the pieces the PEC inspection and the REM reader share (see
 * inspect_common.h).  Everything works on the caller's bytes with message/mime, as both
 * inspections do; only a part being decoded, and the signed part when it has bare LFs, is
 * copied.
 */
#include "message/inspect_common.h"
#include "message/libinit.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int pec_inspect_start(const struct pec_inspect_opts *opts, char *reason, size_t reasonlen,
                      int *temporary)
{
    if (opts == NULL || opts->trust == NULL) {
        *temporary = 1;
        snprintf(reason, reasonlen, "no trust anchors to verify with");
        return -1;
    }
    if (pec_lib_init(reason, reasonlen) != 0) {
        *temporary = 1;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ top-level header fields */

static const char *const shared_names[PEC_TOP_SHARED] = {
    "Message-ID",
    "Subject",
    "From",
    "Content-Type",
};

void pec_top_read(struct pec_top *t, struct pec_span head, const char *const *own, size_t n_own,
                  void (*other)(void *arg, const struct pec_mime_field *f), void *arg)
{
    struct pec_mime_fields it;
    struct pec_mime_field f;

    memset(t, 0, sizeof(*t));
    t->own = own;
    t->n = PEC_TOP_SHARED + n_own;
    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f)) {
        size_t i;

        for (i = 0; i < t->n && !pec_mime_field_is(&f, pec_top_name(t, i)); i++)
            ;
        if (i == t->n) {
            if (other != NULL)
                other(arg, &f);
        } else if (t->count[i]++ == 0) {
            t->value[i] = pec_mime_unfold(f.value);
        }
    }
}

const char *pec_top_name(const struct pec_top *t, size_t i)
{
    return i < PEC_TOP_SHARED ? shared_names[i] : t->own[i - PEC_TOP_SHARED];
}

char *pec_top_take(struct pec_top *t, size_t i)
{
    char *v = t->value[i];

    t->value[i] = NULL;
    return v;
}

char *pec_top_take_subject(struct pec_top *t)
{
    char *raw = pec_top_take(t, PEC_TOP_SUBJECT);
    char *subject = raw != NULL ? pec_mime_decode_text(raw) : NULL;

    free(raw);
    return subject;
}

void pec_top_free(struct pec_top *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(pec_top_take(t, i));
}

/* ------------------------------------------------------------ parts */

void pec_part_open(struct pec_part *p, struct pec_span bytes)
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

void pec_part_close(struct pec_part *p)
{
    pec_mime_ctype_free(&p->ct);
    free(p->disposition);
    pec_mime_params_free(&p->dparams);
    free(p->encoding);
    memset(p, 0, sizeof(*p));
}

int pec_part_decode(const struct pec_part *p, unsigned char **out, size_t *outlen, const char **why)
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

/* ------------------------------------------------------------ the signed parts */

int pec_is_pkcs7_signature(const char *type)
{
    return strcasecmp(type, "application/pkcs7-signature") == 0 ||
           strcasecmp(type, "application/x-pkcs7-signature") == 0;
}

int pec_signature_part(struct pec_span bytes, unsigned char **sig, size_t *siglen, char *type,
                       size_t typelen, char *why, size_t whylen)
{
    struct pec_part p = {0};
    const char *broken;
    int ret = -1;

    why[0] = '\0';
    pec_part_open(&p, bytes);
    snprintf(type, typelen, "%s/%s", p.ct.type, p.ct.subtype);
    if (pec_is_pkcs7_signature(type)) {
        if (pec_part_decode(&p, sig, siglen, &broken) != 0)
            snprintf(why, whylen, "%s in smime.p7s", broken);
        else if (*siglen == 0)
            snprintf(why, whylen, "smime.p7s is empty");
        else
            ret = 0;
    }
    pec_part_close(&p);
    return ret;
}

enum pec_mixed_fault pec_signed_mixed(struct pec_span content, struct pec_part *inner,
                                      struct pec_mime_multipart *mp, char *why, size_t whylen)
{
    const char *boundary;

    pec_part_open(inner, content);
    boundary = pec_mime_param(&inner->ct.params, "boundary");
    if (!pec_mime_ctype_is(&inner->ct, "multipart", "mixed"))
        return PEC_MIXED_NOT_MIXED;
    if (boundary == NULL || *boundary == '\0')
        snprintf(why, whylen, "multipart/mixed without boundary");
    else if (pec_mime_multipart_split(inner->body, boundary, PEC_INSPECT_MAX_PARTS, mp) != 0)
        snprintf(why, whylen, "multipart/mixed: its boundary never occurs in the body");
    else if (mp->too_many)
        return PEC_MIXED_TOO_MANY;
    else if (!mp->closed)
        snprintf(why, whylen, "multipart/mixed has no closing boundary");
    else
        return PEC_MIXED_OK;
    return PEC_MIXED_BROKEN;
}

/* ------------------------------------------------------------ the envelope signature */

void pec_envelope_verify(struct pec_span content, const unsigned char *sig, size_t siglen,
                         const struct pec_inspect_opts *opts, struct pec_verify_result *res)
{
    const unsigned char *bytes = content.p;
    unsigned char *canon = NULL;
    size_t len = content.len;

    if (!pec_mime_is_crlf(bytes, len))
        bytes = canon = pec_mime_crlf(bytes, len, &len);
    pec_smime_verify_crl(bytes, len, sig, siglen, opts->trust,
                         opts->index != NULL ? pec_index_crls(opts->index) : NULL, opts->at_mode,
                         opts->at, res);
    free(canon);
}

void pec_signer_facts_keep(struct pec_signer_facts *f, const struct pec_verify_result *res)
{
    f->sig_status = res->status;
    f->signature_ok = res->ok;
    f->signer_subject = res->signer_subject ? xstrdup(res->signer_subject) : NULL;
    f->signer_issuer = res->signer_issuer ? xstrdup(res->signer_issuer) : NULL;
    memcpy(f->signer_sha1, res->signer_sha1, sizeof(f->signer_sha1));
    memcpy(f->digest, res->digest, sizeof(f->digest));
    f->has_signing_time = res->has_signing_time;
    f->signing_time = res->signing_time;
    f->checked_at = res->checked_at;
    f->crl_checked = res->crl_checked;
    f->revoked_at = res->revoked_at;
    memcpy(f->crl_note, res->crl_note, sizeof(f->crl_note));
}

void pec_signer_facts_free(struct pec_signer_facts *f)
{
    free(f->signer_subject);
    free(f->signer_issuer);
    f->signer_subject = NULL;
    f->signer_issuer = NULL;
}
