/*
 * sevenbit - see sevenbit.h.
 *
 * The walk goes through the entity as mime.c splits it (the same parts the
 * verifier and every reader see) and writes it range by range: a range
 * without 8-bit bytes is copied as it is, so only the leaf bodies that need it
 * change, with the header field that names their encoding.
 */
#include "message/sevenbit.h"
#include "message/mime.h"
#include "util/encode.h"
#include "util/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct walk {
    struct pec_spool *out; /* NULL: check only */
    char *why;
    size_t whylen;
};

static int has8(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x80)
            return 1;
    return 0;
}

static int emit(struct walk *w, const unsigned char *p, size_t n)
{
    return w->out == NULL || n == 0 || pec_spool_write(w->out, p, n) == 0 ? 0 : -1;
}

/* Does the header line at P (up to END) start the field NAME? */
static int field_is(const unsigned char *p, const unsigned char *end, const char *name)
{
    size_t n = strlen(name);

    if ((size_t)(end - p) <= n || strncasecmp((const char *)p, name, n) != 0)
        return 0;
    for (p += n; p < end && (*p == ' ' || *p == '\t'); p++)
        ;
    return p < end && *p == ':';
}

/*
 * The fields whose whole value is text for people (RFC 5322 unstructured, RFC 2045
 * Content-Description, the X- fields clients put a subject in): raw 8-bit text in them
 * becomes RFC 2047 encoded words, as it should have been written.  In any other field an
 * 8-bit byte is part of a syntax (an address, a parameter) we will not guess at.
 */
static int unstructured(const char *name)
{
    static const char *const text[] = {"Subject", "Comments", "Content-Description", "Thread-Topic",
                                       "Organization"};

    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        if (strcasecmp(name, text[i]) == 0)
            return 1;
    return strncasecmp(name, "X-", 2) == 0;
}

static int refuse(struct walk *w, const char *where, const char *what);

/* The field [P, END) (continuation lines included) with its 8-bit text encoded. */
static int emit_encoded_field(struct walk *w, const unsigned char *p, const unsigned char *end,
                              const char *where)
{
    const unsigned char *colon = memchr(p, ':', (size_t)(end - p));
    char *name, *raw, *utf8, *value;
    size_t n = 0, nlen;
    int rc;

    nlen = colon ? (size_t)(colon - p) : 0;
    while (nlen > 0 && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
        nlen--;
    for (size_t i = 0; i < nlen; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return refuse(w, where, "a header field name that is not printable ASCII");
    if (memchr(p, '\0', (size_t)(end - p)) != NULL)
        return refuse(w, where, "a NUL byte in a header field");
    name = strndup((const char *)p, nlen);
    if (name == NULL)
        return -1;
    if (colon == NULL || !unstructured(name)) {
        char what[200];

        snprintf(what, sizeof(what),
                 "8-bit characters in the %.60s header field; write them as RFC 2047 encoded "
                 "words",
                 colon ? name : "(unnamed)");
        free(name);
        return refuse(w, where, what);
    }
    /* the value unfolded: line breaks dropped, the white space after them kept */
    raw = malloc((size_t)(end - colon));
    if (raw == NULL) {
        free(name);
        return -1;
    }
    for (const unsigned char *q = colon + 1; q < end; q++)
        if (*q != '\r' && *q != '\n')
            raw[n++] = (char)*q;
    raw[n] = '\0';
    utf8 = pec_mime_decode_text(raw);
    value = pec_rfc2047_value(name, "", utf8 + strspn(utf8, " \t"));
    rc = emit(w, (const unsigned char *)name, strlen(name));
    if (rc == 0)
        rc = emit(w, (const unsigned char *)": ", 2);
    if (rc == 0)
        rc = emit(w, (const unsigned char *)value, strlen(value));
    if (rc == 0)
        rc = emit(w, (const unsigned char *)"\r\n", 2);
    free(value);
    free(utf8);
    free(raw);
    free(name);
    return rc;
}

/*
 * HEAD, field by field: 8-bit text encoded (or refused), and with ENC the
 * Content-Transfer-Encoding field(s) replaced by "Content-Transfer-Encoding: ENC" (and
 * "MIME-Version: 1.0" added when TOP has none).  0, 1 refused, -1 with errno.
 */
static int emit_head(struct walk *w, struct pec_span head, const char *enc, int top,
                     const char *where)
{
    const unsigned char *p = head.p, *end = head.p + head.len;
    int rc = 0;
    char line[80];

    while (p < end && rc == 0) {
        const unsigned char *fe = p;

        /* one field: its first line and every continuation line */
        do {
            const unsigned char *nl = memchr(fe, '\n', (size_t)(end - fe));

            fe = nl ? nl + 1 : end;
        } while (fe < end && (*fe == ' ' || *fe == '\t'));
        if (enc != NULL && field_is(p, fe, "Content-Transfer-Encoding"))
            ; /* replaced below */
        else if (has8(p, (size_t)(fe - p)))
            rc = emit_encoded_field(w, p, fe, where);
        else
            rc = emit(w, p, (size_t)(fe - p));
        p = fe;
    }
    if (rc == 0 && head.len > 0 && end[-1] != '\n')
        rc = emit(w, (const unsigned char *)"\r\n", 2);
    if (rc != 0 || enc == NULL)
        return rc;
    if (top && pec_mime_header_count(head, "MIME-Version") == 0)
        rc = emit(w, (const unsigned char *)"MIME-Version: 1.0\r\n", 19);
    snprintf(line, sizeof(line), "Content-Transfer-Encoding: %s\r\n", enc);
    return rc == 0 ? emit(w, (const unsigned char *)line, strlen(line)) : rc;
}

static int refuse(struct walk *w, const char *where, const char *what)
{
    pec_seterr(w->why, w->whylen, "%s: %s", where, what);
    return 1;
}

/* BODY encoded as ENC ("quoted-printable" or "base64") */
static int emit_encoded(struct walk *w, struct pec_span body, const char *enc)
{
    if (w->out == NULL)
        return 0;
    if (strcmp(enc, "base64") == 0) {
        struct pec_b64 e;

        pec_b64_init(&e, w->out);
        return pec_b64_update(&e, body.p, body.len) == 0 && pec_b64_final(&e) == 0 ? 0 : -1;
    } else {
        struct pec_qp e;

        pec_qp_init(&e, w->out);
        return pec_qp_update(&e, body.p, body.len) == 0 && pec_qp_final(&e) == 0 ? 0 : -1;
    }
}

static int entity(struct walk *w, struct pec_span e, const char *where, int depth);

static int multipart(struct walk *w, struct pec_span body, const char *boundary, int is_signed,
                     const char *where, int depth)
{
    struct pec_mime_multipart mp;
    const unsigned char *cursor = body.p, *end = body.p + body.len;
    char sub[200];
    int rc = 0;

    if (is_signed)
        return refuse(w, where,
                      "8-bit content inside a signed part (multipart/signed): encoding it for "
                      "7-bit transport would break the sender's signature; sign it after "
                      "encoding it quoted-printable or base64");
    if (boundary == NULL || pec_mime_multipart_split(body, boundary, 0, &mp) != 0) {
        if (boundary != NULL)
            pec_mime_multipart_free(&mp);
        return refuse(w, where, "8-bit bytes in a multipart without parts that can be found");
    }
    for (size_t i = 0; i < mp.nparts && rc == 0; i++) {
        struct pec_span part = mp.parts[i];

        if (has8(cursor, (size_t)(part.p - cursor))) {
            rc = refuse(w, where, "8-bit bytes outside any part (preamble or delimiter)");
            break;
        }
        snprintf(sub, sizeof(sub), "%s%s%zu", where,
                 strcmp(where, "the message") == 0 ? ", part " : ".", i + 1);
        if ((rc = emit(w, cursor, (size_t)(part.p - cursor))) == 0)
            rc = entity(w, part, sub, depth + 1);
        cursor = part.p + part.len;
    }
    if (rc == 0 && has8(cursor, (size_t)(end - cursor)))
        rc = refuse(w, where, "8-bit bytes outside any part (epilogue)");
    if (rc == 0)
        rc = emit(w, cursor, (size_t)(end - cursor));
    pec_mime_multipart_free(&mp);
    return rc;
}

static int entity(struct walk *w, struct pec_span e, const char *where, int depth)
{
    struct pec_span head, body, sep;
    struct pec_mime_ctype ct;
    char *ctype, *enc = NULL;
    const char *to = NULL;
    int rc;

    if (!has8(e.p, e.len))
        return emit(w, e.p, e.len);
    if (depth > PEC_7BIT_MAX_DEPTH)
        return refuse(w, where, "8-bit bytes nested too deep to re-encode");
    pec_mime_split(e.p, e.len, &head, &body);
    sep = (struct pec_span){head.p + head.len, (size_t)(body.p - (head.p + head.len))};
    ctype = pec_mime_header(head, "Content-Type");
    pec_mime_ctype_parse(ctype != NULL ? ctype : "text/plain", &ct);
    if (pec_mime_ctype_is(&ct, "multipart", NULL)) {
        if ((rc = emit_head(w, head, NULL, 0, where)) == 0 && (rc = emit(w, sep.p, sep.len)) == 0)
            rc = multipart(w, body, pec_mime_param(&ct.params, "boundary"),
                           pec_mime_ctype_is(&ct, "multipart", "signed"), where, depth);
    } else if (pec_mime_ctype_is(&ct, "message", "rfc822")) {
        if ((rc = emit_head(w, head, NULL, 0, where)) == 0 && (rc = emit(w, sep.p, sep.len)) == 0)
            rc = entity(w, body, where, depth + 1);
    } else {
        rc = 0;
        if (has8(body.p, body.len)) {
            enc = pec_mime_encoding(head);
            if (strcmp(enc, "base64") == 0 || strcmp(enc, "quoted-printable") == 0)
                rc = refuse(w, where, "8-bit bytes in a body encoded base64 or quoted-printable");
            else if (strcmp(enc, "7bit") != 0 && strcmp(enc, "8bit") != 0 &&
                     strcmp(enc, "binary") != 0)
                rc = refuse(w, where,
                            "8-bit bytes under a Content-Transfer-Encoding we do not know");
            else
                to = pec_mime_ctype_is(&ct, "text", NULL) ? "quoted-printable" : "base64";
        }
        if (rc == 0)
            rc = emit_head(w, head, to, depth == 0, where);
        if (rc == 0)
            rc = emit(w, sep.p, sep.len);
        if (rc == 0)
            rc = to != NULL ? emit_encoded(w, body, to) : emit(w, body.p, body.len);
    }
    free(enc);
    free(ctype);
    pec_mime_ctype_free(&ct);
    return rc;
}

int pec_7bit(const unsigned char *msg, size_t len, struct pec_spool *out, char *why, size_t whylen)
{
    struct walk w = {.out = out, .why = why, .whylen = whylen};

    if (why != NULL && whylen > 0)
        why[0] = '\0';
    return entity(&w, (struct pec_span){msg, len}, "the message", 0);
}
