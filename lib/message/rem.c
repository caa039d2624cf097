/*
 * rem - the inspection of a REM message (see rem.h for what is checked and in which order).
 *
 * pec_rem_inspect() runs the seven steps of rem.h, each noting its first failure in its
 * own slot, and reports the first slot filled in step order.  Every step that can run
 * does, so a tampered message still shows its event, identifiers and signers.  The MIME
 * work is done on the caller's bytes with message/mime (ranges, no copies); the envelope
 * signature is pec_smime_verify()'s, as for PEC, and the evidence's is rem_xades.c's.
 * The original is hashed as the sending provider hashed it: the bytes of its part,
 * delimiter line end excluded, in their CRLF form.
 */
#include "message/rem.h"
#include "message/libinit.h"
#include "message/mime.h"
#include "message/rem_evidence.h"
#include "message/rem_sig.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum step {
    STEP_FRAMING,
    STEP_STRUCTURE,
    STEP_EVIDENCE,
    STEP_TIMESTAMP,
    STEP_ORIGINAL,
    STEP_ENVELOPE,
    STEP_CONSISTENCY,
    STEP_COUNT,
};

/* Top-level header fields read in one pass. */
enum top_field {
    TOP_MESSAGE_TYPE,
    TOP_EVENT,
    TOP_EVIDENCE_ID,
    TOP_DIGEST_ALG,
    TOP_DIGEST,
    TOP_UA_ID,
    TOP_MD08,
    TOP_METADATA_VERSION,
    TOP_MESSAGE_ID,
    TOP_SUBJECT,
    TOP_FROM,
    TOP_CONTENT_TYPE,
    TOP_COUNT,
};

static const char *const top_names[TOP_COUNT] = {
    "REM-MessageType",
    "REM-EventIdentifier",
    "REM-Evidence-ID",
    "REM-DigestAlgorithm",
    "REM-DigestValue",
    "REM-UAMessageIdentifier",
    "REM-MD08",
    "REM-MetadataVersion",
    "Message-ID",
    "Subject",
    "From",
    "Content-Type",
};

/* The REM fields a message must carry exactly once (EN 319 532-4 table 7). */
static const enum top_field required[] = {TOP_MESSAGE_TYPE, TOP_EVENT,  TOP_EVIDENCE_ID,
                                          TOP_DIGEST_ALG,   TOP_DIGEST, TOP_UA_ID};

#define MESSAGE_TYPE_PREFIX "http://uri.etsi.org/19522/v1#/ERDMessageType/"

struct ctx {
    const unsigned char *msg;
    const struct pec_inspect_opts *opts;
    struct pec_rem_inspection *out;

    char *top[TOP_COUNT];
    size_t top_count[TOP_COUNT];
    int dispatch; /* REM-MessageType says dispatch */

    char reason[STEP_COUNT][400];

    struct pec_span content; /* the signed part */
    unsigned char *sig;
    size_t siglen;

    unsigned char *original; /* the original's bytes, CRLF, when it has a part */
    size_t original_len;
    char *original_message_id;
    char *original_ua_id;
};

static void fail(struct ctx *c, enum step step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct ctx *c, enum step step, const char *fmt, ...)
{
    va_list ap;

    if (c->reason[step][0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(c->reason[step], sizeof(c->reason[step]), fmt, ap);
    va_end(ap);
}

/* The inside of <...>, or S itself; xmalloc'ed. */
static char *unbracket(const char *s)
{
    size_t n = strlen(s);

    if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
        return xstrndup(s + 1, n - 2);
    return xstrdup(s);
}

static int same_id(const char *a, const char *b)
{
    char *x = unbracket(a), *y = unbracket(b);
    int eq = strcmp(x, y) == 0;

    free(x);
    free(y);
    return eq;
}

const char *pec_rem_pec_equivalent(int dispatch, const char *event, const char *reason_code)
{
    static const struct {
        const char *event;
        const char *pec;
    } map[] = {
        {"SubmissionRejection", "non-accettazione"},
        {"RelayAcceptance", "presa-in-carico"},
        {"RelayFailure", "errore-consegna"},
        {"ContentConsignment", "avvenuta-consegna"},
        {"ContentConsignmentFailure", "errore-consegna"},
    };

    if (event == NULL)
        return NULL;
    if (strcmp(event, "SubmissionAcceptance") == 0)
        return dispatch ? "busta" : "accettazione";
    if (strcmp(event, "ReceivedFromNonERDS") == 0)
        return "anomalia";
    if (strcmp(event, "RelayRejection") == 0)
        return reason_code != NULL && strcmp(reason_code, "RB03") == 0 ? "rilevazione-virus" : NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(event, map[i].event) == 0)
            return map[i].pec;
    return NULL;
}

/* ------------------------------------------------------------ headers */

static void read_top_headers(struct ctx *c, struct pec_span head)
{
    struct pec_rem_inspection *out = c->out;
    struct pec_mime_fields it;
    struct pec_mime_field f;

    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f)) {
        if (pec_mime_field_is(&f, "REM-ReasonIdentifier")) {
            out->reason_headers = xrealloc(out->reason_headers, (out->n_reason_headers + 1) *
                                                                    sizeof(*out->reason_headers));
            out->reason_headers[out->n_reason_headers++] = pec_mime_unfold(f.value);
            continue;
        }
        for (int i = 0; i < TOP_COUNT; i++) {
            if (!pec_mime_field_is(&f, top_names[i]))
                continue;
            if (c->top_count[i]++ == 0)
                c->top[i] = pec_mime_unfold(f.value);
            break;
        }
    }
}

/* Hand the header values over to OUT, which then owns them (Content-Type excepted). */
static void publish_top_headers(struct ctx *c)
{
    struct pec_rem_inspection *out = c->out;
    const char *type = c->top[TOP_MESSAGE_TYPE];

    if (type != NULL && strncmp(type, MESSAGE_TYPE_PREFIX, strlen(MESSAGE_TYPE_PREFIX)) == 0)
        out->message_type = xstrdup(type + strlen(MESSAGE_TYPE_PREFIX));
    else if (type != NULL)
        out->message_type = xstrdup(type);
    free(c->top[TOP_MESSAGE_TYPE]);
    out->event_header = c->top[TOP_EVENT];
    out->evidence_id_header = c->top[TOP_EVIDENCE_ID];
    out->digest_alg_header = c->top[TOP_DIGEST_ALG];
    out->digest_header = c->top[TOP_DIGEST];
    out->ua_message_id = c->top[TOP_UA_ID];
    out->md08 = c->top[TOP_MD08];
    out->metadata_version = c->top[TOP_METADATA_VERSION];
    out->message_id = c->top[TOP_MESSAGE_ID];
    out->from = c->top[TOP_FROM];
    if (c->top[TOP_SUBJECT] != NULL) {
        out->subject = pec_mime_decode_text(c->top[TOP_SUBJECT]);
        free(c->top[TOP_SUBJECT]);
    }
    for (int i = 0; i < TOP_COUNT; i++)
        if (i != TOP_CONTENT_TYPE)
            c->top[i] = NULL;
    c->dispatch = out->message_type != NULL && strcmp(out->message_type, "dispatch") == 0;
}

static void check_headers(struct ctx *c)
{
    const char *type = c->out->message_type;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        enum top_field f = required[i];

        if (c->top_count[f] == 0)
            fail(c, STEP_STRUCTURE, "no %s header", top_names[f]);
        else if (c->top_count[f] > 1)
            fail(c, STEP_STRUCTURE, "more than one %s header", top_names[f]);
    }
    if (type != NULL && strcmp(type, "dispatch") != 0 && strcmp(type, "receipt") != 0)
        fail(c, STEP_STRUCTURE, "REM-MessageType %.100s is neither dispatch nor receipt", type);
    if (c->out->from == NULL)
        fail(c, STEP_STRUCTURE, "no From header");
    if (c->dispatch && c->out->message_id == NULL)
        fail(c, STEP_STRUCTURE, "a dispatch without Message-ID");
}

/* ------------------------------------------------------------ parts */

struct part {
    struct pec_span head;
    struct pec_span body;
    struct pec_mime_ctype ct;
    char *encoding; /* lowercase; "7bit" when absent */
    char *section;  /* REM-Section-Type, or NULL */
};

static void part_open(struct part *p, struct pec_span bytes)
{
    char *v;

    pec_mime_split(bytes.p, bytes.len, &p->head, &p->body);
    v = pec_mime_header(p->head, "Content-Type");
    pec_mime_ctype_parse(v != NULL ? v : "text/plain", &p->ct);
    free(v);
    p->encoding = pec_mime_encoding(p->head);
    p->section = pec_mime_header(p->head, "REM-Section-Type");
}

static void part_close(struct part *p)
{
    pec_mime_ctype_free(&p->ct);
    free(p->encoding);
    free(p->section);
    memset(p, 0, sizeof(*p));
}

/* The body of P decoded into *OUT (xmalloc'ed).  0, or -1 with *WHY. */
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
    *why = "unknown Content-Transfer-Encoding";
    return strcmp(p->encoding, "7bit") == 0 || strcmp(p->encoding, "8bit") == 0 ||
                   strcmp(p->encoding, "binary") == 0
               ? 0
               : -1;
}

/* ------------------------------------------------------------ step 1: framing */

static int is_pkcs7_signature(const char *type)
{
    return strcasecmp(type, "application/pkcs7-signature") == 0 ||
           strcasecmp(type, "application/x-pkcs7-signature") == 0;
}

static void read_signature_part(struct ctx *c, struct pec_span bytes)
{
    struct part p = {0};
    const char *why;
    char type[200];

    part_open(&p, bytes);
    snprintf(type, sizeof(type), "%s/%s", p.ct.type, p.ct.subtype);
    if (!is_pkcs7_signature(type))
        fail(c, STEP_FRAMING, "the signature part is %.100s, not application/pkcs7-signature",
             type);
    else if (part_decode(&p, &c->sig, &c->siglen, &why) != 0)
        fail(c, STEP_FRAMING, "%s in smime.p7s", why);
    else if (c->siglen == 0)
        fail(c, STEP_FRAMING, "smime.p7s is empty");
    part_close(&p);
}

static int check_framing(struct ctx *c, struct pec_span body)
{
    struct pec_mime_ctype ct;
    struct pec_mime_multipart mp = {0};
    const char *protocol, *boundary;

    pec_mime_ctype_parse(c->top[TOP_CONTENT_TYPE] != NULL ? c->top[TOP_CONTENT_TYPE] : "", &ct);
    protocol = pec_mime_param(&ct.params, "protocol");
    boundary = pec_mime_param(&ct.params, "boundary");
    if (!pec_mime_ctype_is(&ct, "multipart", "signed"))
        fail(c, STEP_FRAMING, "no S/MIME signature (%.60s/%.60s)", ct.type[0] ? ct.type : "?",
             ct.subtype[0] ? ct.subtype : "?");
    else if (c->top_count[TOP_CONTENT_TYPE] > 1)
        fail(c, STEP_FRAMING, "more than one Content-Type header");
    else if (protocol != NULL && !is_pkcs7_signature(protocol))
        fail(c, STEP_FRAMING, "no S/MIME signature (multipart/signed with protocol %.100s)",
             protocol);
    else if (boundary == NULL || *boundary == '\0')
        fail(c, STEP_FRAMING, "multipart/signed without boundary");
    else if (pec_mime_multipart_split(body, boundary, PEC_INSPECT_MAX_PARTS, &mp) != 0)
        fail(c, STEP_FRAMING, "multipart/signed: its boundary never occurs in the body");
    else if (mp.too_many || mp.nparts != 2)
        fail(c, STEP_FRAMING, "multipart/signed with %s%zu parts, expected 2",
             mp.too_many ? "more than " : "", mp.nparts);
    else if (!mp.closed)
        fail(c, STEP_FRAMING,
             "truncated message: the closing boundary of multipart/signed is missing");
    else {
        read_signature_part(c, mp.parts[1]);
        c->content = mp.parts[0];
    }
    pec_mime_multipart_free(&mp);
    pec_mime_ctype_free(&ct);
    return c->reason[STEP_FRAMING][0] == '\0' ? 0 : -1;
}

/* ------------------------------------------------------------ step 2: sections */

/* The sections of the signed multipart/mixed, as REM-Section-Type names them. */
struct sections {
    struct part original, evidence; /* the first of each */
    int n_intro, n_original, n_evidence;
};

static int is_section(const char *type, const char *name)
{
    return strcasecmp(type, name) == 0;
}

/* Count P's section, keep it when it is the first original or evidence, else close it. */
static void sort_section(struct ctx *c, struct sections *s, struct part *p, size_t i)
{
    const char *t = p->section;
    struct part *keep = NULL;

    if (t == NULL)
        fail(c, STEP_STRUCTURE, "part %zu of the signed content has no REM-Section-Type", i + 1);
    else if (is_section(t, "rem_message/introduction"))
        s->n_intro++;
    else if (is_section(t, "rem_message/original"))
        keep = s->n_original++ == 0 ? &s->original : NULL;
    else if (is_section(t, "rem_message/xml_evidence"))
        keep = s->n_evidence++ == 0 ? &s->evidence : NULL;
    else if (!is_section(t, "rem_message/extension"))
        fail(c, STEP_STRUCTURE, "part %zu has the unknown REM-Section-Type %.100s", i + 1, t);
    if (keep != NULL)
        *keep = *p;
    else
        part_close(p);
}

static void sections_free(struct sections *s)
{
    if (s->n_original > 0)
        part_close(&s->original);
    if (s->n_evidence > 0)
        part_close(&s->evidence);
}

static int find_sections(struct ctx *c, struct sections *s)
{
    struct part inner = {0};
    struct pec_mime_multipart mp = {0};
    const char *boundary;

    part_open(&inner, c->content);
    boundary = pec_mime_param(&inner.ct.params, "boundary");
    if (!pec_mime_ctype_is(&inner.ct, "multipart", "mixed"))
        fail(c, STEP_STRUCTURE, "the signed content is %.60s/%.60s, not multipart/mixed",
             inner.ct.type[0] ? inner.ct.type : "?", inner.ct.subtype[0] ? inner.ct.subtype : "?");
    else if (boundary == NULL || *boundary == '\0')
        fail(c, STEP_STRUCTURE, "multipart/mixed without boundary");
    else if (pec_mime_multipart_split(inner.body, boundary, PEC_INSPECT_MAX_PARTS, &mp) != 0)
        fail(c, STEP_STRUCTURE, "multipart/mixed: its boundary never occurs in the body");
    else if (mp.too_many)
        fail(c, STEP_STRUCTURE, "more than %d parts in multipart/mixed", PEC_INSPECT_MAX_PARTS);
    else if (!mp.closed)
        fail(c, STEP_STRUCTURE, "multipart/mixed has no closing boundary");
    for (size_t i = 0; c->reason[STEP_STRUCTURE][0] == '\0' && i < mp.nparts; i++) {
        struct part p = {0};

        part_open(&p, mp.parts[i]);
        sort_section(c, s, &p, i);
    }
    pec_mime_multipart_free(&mp);
    part_close(&inner);
    if (c->reason[STEP_STRUCTURE][0] != '\0')
        return -1;
    if (s->n_intro != 1)
        fail(c, STEP_STRUCTURE, "%d rem_message/introduction sections, expected one", s->n_intro);
    else if (s->n_evidence != 1)
        fail(c, STEP_STRUCTURE, "%d rem_message/xml_evidence sections, expected one",
             s->n_evidence);
    else if (c->dispatch && s->n_original != 1)
        fail(c, STEP_STRUCTURE, "a dispatch with %d rem_message/original sections, expected one",
             s->n_original);
    else if (!c->dispatch && s->n_original != 0)
        fail(c, STEP_STRUCTURE, "a receipt with a rem_message/original section");
    return c->reason[STEP_STRUCTURE][0] == '\0' ? 0 : -1;
}

/* The original's bytes in their CRLF form, and the two header fields we compare. */
static void read_original(struct ctx *c, const struct part *p)
{
    struct pec_rem_inspection *out = c->out;
    unsigned char *bytes;
    size_t len;
    const char *why;
    struct pec_span head, body;

    if (!pec_mime_ctype_is(&p->ct, "message", "rfc822")) {
        fail(c, STEP_STRUCTURE, "the original is %.60s/%.60s, not message/rfc822", p->ct.type,
             p->ct.subtype);
        return;
    }
    out->has_original = 1;
    out->original_off = (size_t)(p->body.p - c->msg);
    out->original_len = p->body.len;
    out->original_encoding = xstrdup(p->encoding);
    if (part_decode(p, &bytes, &len, &why) != 0) {
        fail(c, STEP_STRUCTURE, "%s in the original", why);
        free(bytes);
        return;
    }
    if (pec_mime_is_crlf(bytes, len)) {
        c->original = bytes;
        c->original_len = len;
    } else {
        c->original = pec_mime_crlf(bytes, len, &c->original_len);
        free(bytes);
    }
    pec_mime_split(c->original, c->original_len, &head, &body);
    c->original_message_id = pec_mime_header(head, "Message-ID");
    c->original_ua_id = pec_mime_header(head, "REM-UAMessageIdentifier");
}

/* The evidence part parsed into OUT, its document returned for the seal check. */
static xmlDocPtr read_evidence(struct ctx *c, const struct part *p)
{
    unsigned char *xml;
    size_t len;
    const char *why;
    char err[300];
    xmlDocPtr doc = NULL;

    if (!pec_mime_ctype_is(&p->ct, "application", "xml") &&
        !pec_mime_ctype_is(&p->ct, "text", "xml")) {
        fail(c, STEP_STRUCTURE, "the evidence is %.60s/%.60s, not application/xml", p->ct.type,
             p->ct.subtype);
        return NULL;
    }
    if (part_decode(p, &xml, &len, &why) != 0)
        fail(c, STEP_STRUCTURE, "%s in the evidence", why);
    else if ((doc = pec_rem_xml_read(xml, len, err, sizeof(err))) == NULL)
        fail(c, STEP_STRUCTURE, "evidence: %s", err);
    else if (pec_rem_evidence_parse(doc, &c->out->evidence, err, sizeof(err)) != 0)
        fail(c, STEP_STRUCTURE, "evidence: %s", err);
    c->out->has_evidence = doc != NULL;
    free(xml);
    return doc;
}

/* ------------------------------------------------------------ steps 3, 4: the seal */

static void check_seal(struct ctx *c, xmlDocPtr doc)
{
    char sig_err[300], ts_err[300];

    pec_rem_seal_check(doc, c->opts, &c->out->seal, sig_err, sizeof(sig_err), ts_err,
                       sizeof(ts_err), &c->out->temporary);
    if (sig_err[0] != '\0')
        fail(c, STEP_EVIDENCE, "evidence signature: %s", sig_err);
    if (ts_err[0] != '\0')
        fail(c, STEP_TIMESTAMP, "time-stamp: %s", ts_err);
}

/* ------------------------------------------------------------ step 5: the original */

/* Base64 A and B name the same bytes? */
static int same_b64(const char *a, const char *b)
{
    unsigned char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    int eq = pec_base64_decode((const unsigned char *)a, strlen(a), &x, &xl) == 0 &&
             pec_base64_decode((const unsigned char *)b, strlen(b), &y, &yl) == 0 && xl == yl &&
             xl > 0 && memcmp(x, y, xl) == 0;

    free(x);
    free(y);
    return eq;
}

static void check_original(struct ctx *c)
{
    const struct pec_rem_evidence *ev = &c->out->evidence;
    const EVP_MD *md = pec_rem_digest_md(ev->digest_method);

    if (c->original == NULL || ev->digest_value == NULL)
        return;
    if (md == NULL) {
        fail(c, STEP_ORIGINAL, "original: the evidence's digest algorithm %.100s is not accepted",
             ev->digest_method);
        return;
    }
    c->out->original_digest = pec_rem_digest_b64(md, c->original, c->original_len);
    if (c->out->original_digest == NULL) {
        c->out->temporary = 1;
        fail(c, STEP_ORIGINAL, "original: cannot compute its digest");
    } else if (!same_b64(c->out->original_digest, ev->digest_value)) {
        fail(c, STEP_ORIGINAL, "original: its digest %s is not the evidence's %.100s",
             c->out->original_digest, ev->digest_value);
    }
}

/* ------------------------------------------------------------ step 6: the envelope */

static void keep_signer(struct pec_rem_inspection *out, const struct pec_verify_result *res)
{
    out->sig_status = res->status;
    out->signature_ok = res->ok;
    out->signer_subject = res->signer_subject ? xstrdup(res->signer_subject) : NULL;
    out->signer_issuer = res->signer_issuer ? xstrdup(res->signer_issuer) : NULL;
    memcpy(out->signer_sha1, res->signer_sha1, sizeof(out->signer_sha1));
    memcpy(out->digest, res->digest, sizeof(out->digest));
    out->has_signing_time = res->has_signing_time;
    out->signing_time = res->signing_time;
    out->checked_at = res->checked_at;
}

static void check_envelope(struct ctx *c)
{
    const struct pec_inspect_opts *o = c->opts;
    struct pec_verify_result res;
    const unsigned char *content = c->content.p;
    unsigned char *canon = NULL;
    size_t len = c->content.len;
    char why[300];

    if (!pec_mime_is_crlf(content, len))
        content = canon = pec_mime_crlf(content, len, &len);
    pec_smime_verify(content, len, c->sig, c->siglen, o->trust, o->at_mode, o->at, &res);
    free(canon);
    keep_signer(c->out, &res);
    if (res.status == PEC_VERIFY_INTERNAL)
        c->out->temporary = 1;
    if (!res.ok)
        fail(c, STEP_ENVELOPE, "envelope: %s", res.reason);
    else if (pec_rem_cades_check(c->sig, c->siglen, why, sizeof(why)) != 0)
        fail(c, STEP_ENVELOPE, "envelope: %s", why);
    pec_verify_result_free(&res);
}

/* ------------------------------------------------------------ step 7: consistency */

static int has_reason(const struct pec_rem_evidence *ev, const char *uri)
{
    for (size_t i = 0; i < ev->n_reasons; i++)
        if (ev->reasons[i].uri != NULL && strcmp(ev->reasons[i].uri, uri) == 0)
            return 1;
    return 0;
}

static int has_reason_header(const struct pec_rem_inspection *out, const char *uri)
{
    for (size_t i = 0; i < out->n_reason_headers; i++)
        if (strcmp(out->reason_headers[i], uri) == 0)
            return 1;
    return 0;
}

/* The REM header fields against the evidence. */
static void check_headers_vs_evidence(struct ctx *c)
{
    const struct pec_rem_inspection *out = c->out;
    const struct pec_rem_evidence *ev = &out->evidence;
    const enum step s = STEP_CONSISTENCY;

    if (strcmp(out->event_header, ev->event_uri) != 0)
        fail(c, s, "REM-EventIdentifier %.150s is not the evidence's event %.150s",
             out->event_header, ev->event_uri);
    for (size_t i = 0; i < out->n_reason_headers; i++)
        if (!has_reason(ev, out->reason_headers[i]))
            fail(c, s, "REM-ReasonIdentifier %.150s is not among the evidence's reasons",
                 out->reason_headers[i]);
    for (size_t i = 0; out->n_reason_headers > 0 && i < ev->n_reasons; i++)
        if (ev->reasons[i].uri != NULL && !has_reason_header(out, ev->reasons[i].uri))
            fail(c, s, "the evidence's reason %.150s has no REM-ReasonIdentifier",
                 ev->reasons[i].uri);
    if (!same_id(out->evidence_id_header, ev->evidence_id))
        fail(c, s, "REM-Evidence-ID %.150s is not the evidence's EvidenceIdentifier %.150s",
             out->evidence_id_header, ev->evidence_id);
    if (strcmp(out->digest_alg_header, ev->digest_method) != 0)
        fail(c, s, "REM-DigestAlgorithm %.100s is not the evidence's %.100s",
             out->digest_alg_header, ev->digest_method);
    if (!same_b64(out->digest_header, ev->digest_value))
        fail(c, s, "REM-DigestValue %.100s is not the evidence's digest of the original %.100s",
             out->digest_header, ev->digest_value);
    if (ev->app_layer_id == NULL || strcmp(out->ua_message_id, ev->app_layer_id) != 0)
        fail(c, s, "REM-UAMessageIdentifier %.150s is not the evidence's AppLayerIdentifier %.150s",
             out->ua_message_id, ev->app_layer_id ? ev->app_layer_id : "(none)");
}

/* A dispatch: its Message-ID and its original against the evidence and the header. */
static void check_dispatch(struct ctx *c)
{
    const struct pec_rem_inspection *out = c->out;
    const struct pec_rem_evidence *ev = &out->evidence;
    const enum step s = STEP_CONSISTENCY;

    if (strcmp(ev->event, "SubmissionAcceptance") != 0 &&
        strcmp(ev->event, "ReceivedFromNonERDS") != 0)
        fail(c, s, "a dispatch carrying the evidence of %.100s", ev->event);
    if (!same_id(out->message_id, ev->message_id))
        fail(c, s,
             "the dispatch's Message-ID %.150s is not the evidence's MessageIdentifier %.150s",
             out->message_id, ev->message_id);
    if (c->original == NULL)
        return;
    if (c->original_message_id == NULL || !same_id(c->original_message_id, ev->message_id))
        fail(c, s,
             "the original's Message-ID %.150s is not the evidence's MessageIdentifier %.150s",
             c->original_message_id ? c->original_message_id : "(none)", ev->message_id);
    if (c->original_ua_id == NULL || strcmp(c->original_ua_id, out->ua_message_id) != 0)
        fail(c, s,
             "the original's REM-UAMessageIdentifier %.150s is not the message's "
             "REM-UAMessageIdentifier %.150s",
             c->original_ua_id ? c->original_ua_id : "(none)", out->ua_message_id);
}

/* ------------------------------------------------------------ the verdict */

static int conclude(struct ctx *c, const char *kind)
{
    struct pec_rem_inspection *out = c->out;
    int step;

    for (step = 0; step < STEP_COUNT && c->reason[step][0] == '\0'; step++)
        ;
    out->kind = c->reason[STEP_FRAMING][0] != '\0' || c->reason[STEP_STRUCTURE][0] != '\0'
                    ? "malformed"
                    : kind;
    out->valid = step == STEP_COUNT;
    if (!out->valid)
        snprintf(out->reason, sizeof(out->reason), "%s", c->reason[step]);
    return out->valid ? 0 : -1;
}

static int start(struct ctx *c, const unsigned char *msg, const struct pec_inspect_opts *opts,
                 struct pec_rem_inspection *out)
{
    memset(out, 0, sizeof(*out));
    memset(c, 0, sizeof(*c));
    c->msg = msg;
    c->opts = opts;
    c->out = out;
    out->kind = "malformed";
    if (opts == NULL || opts->trust == NULL) {
        out->temporary = 1;
        snprintf(out->reason, sizeof(out->reason), "no trust anchors to verify with");
        return -1;
    }
    if (pec_lib_init(out->reason, sizeof(out->reason)) != 0) {
        out->temporary = 1;
        return -1;
    }
    return 0;
}

int pec_rem_announced(const unsigned char *msg, size_t len)
{
    struct pec_span head, body;

    pec_mime_split(msg, len, &head, &body);
    return pec_mime_header_count(head, "REM-MessageType") > 0;
}

int pec_rem_inspect(const unsigned char *msg, size_t len, const struct pec_inspect_opts *opts,
                    struct pec_rem_inspection *out)
{
    struct ctx c;
    struct pec_span head, body;
    struct sections s = {0};
    xmlDocPtr doc = NULL;

    if (start(&c, msg, opts, out) != 0)
        return -1;
    pec_mime_split(msg, len, &head, &body);
    read_top_headers(&c, head);
    publish_top_headers(&c);
    check_headers(&c);
    if (check_framing(&c, body) == 0 && find_sections(&c, &s) == 0) {
        if (s.n_original == 1)
            read_original(&c, &s.original);
        doc = read_evidence(&c, &s.evidence);
    }
    if (doc != NULL)
        check_seal(&c, doc);
    if (doc != NULL && c.reason[STEP_STRUCTURE][0] == '\0') {
        check_original(&c);
        check_headers_vs_evidence(&c);
        if (c.dispatch)
            check_dispatch(&c);
    }
    if (c.reason[STEP_FRAMING][0] == '\0')
        check_envelope(&c);
    xmlFreeDoc(doc);
    sections_free(&s);
    free(c.top[TOP_CONTENT_TYPE]);
    free(c.sig);
    free(c.original);
    free(c.original_message_id);
    free(c.original_ua_id);
    return conclude(&c, "rem");
}

int pec_rem_inspect_evidence(const unsigned char *xml, size_t len,
                             const struct pec_inspect_opts *opts, struct pec_rem_inspection *out)
{
    struct ctx c;
    xmlDocPtr doc;
    char err[300];

    if (start(&c, xml, opts, out) != 0)
        return -1;
    if ((doc = pec_rem_xml_read(xml, len, err, sizeof(err))) == NULL) {
        fail(&c, STEP_STRUCTURE, "evidence: %s", err);
    } else {
        out->has_evidence = 1;
        if (pec_rem_evidence_parse(doc, &out->evidence, err, sizeof(err)) != 0)
            fail(&c, STEP_STRUCTURE, "evidence: %s", err);
        check_seal(&c, doc);
        xmlFreeDoc(doc);
    }
    return conclude(&c, "evidence");
}

void pec_rem_inspection_free(struct pec_rem_inspection *in)
{
    if (in == NULL)
        return;
    free(in->message_type);
    free(in->event_header);
    for (size_t i = 0; i < in->n_reason_headers; i++)
        free(in->reason_headers[i]);
    free(in->reason_headers);
    free(in->evidence_id_header);
    free(in->digest_alg_header);
    free(in->digest_header);
    free(in->ua_message_id);
    free(in->md08);
    free(in->metadata_version);
    free(in->message_id);
    free(in->subject);
    free(in->from);
    pec_rem_evidence_free(&in->evidence);
    pec_rem_seal_free(&in->seal);
    free(in->signer_subject);
    free(in->signer_issuer);
    free(in->original_encoding);
    free(in->original_digest);
    memset(in, 0, sizeof(*in));
}
