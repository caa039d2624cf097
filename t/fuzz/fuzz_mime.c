/*
 * fuzz_mime - lib/message/mime.c on hostile bytes: the entity split, the header fields,
 * the structured values (Content-Type, Content-Disposition, RFC 2231 and RFC 2047
 * parameters), addresses, encoded words, multipart splitting (walked down the tree as
 * the inspector and breve walk it), transfer decoding and CRLF canonicalisation.
 *
 * Beyond the sanitizers it holds mime.h to its word: every range handed back lies inside
 * the input and in order, split pieces add up, decoded text is clean UTF-8, decoders
 * never produce more than their input allows, and the CRLF form is CRLF.
 */
#include "harness.h"

#include "message/mime.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* deep enough for any real message; the walk is linear per level */
#define MAX_DEPTH 12

static void check_string(const char *s)
{
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(fuzz_utf8_ok(s, strlen(s)));
}

static void check_params(const struct pec_mime_params *pp)
{
    FUZZ_CHECK(pp->n <= PEC_MIME_MAX_PARAMS);
    for (size_t i = 0; i < pp->n; i++) {
        FUZZ_CHECK(pp->v[i].name != NULL && pp->v[i].value != NULL);
        for (const char *c = pp->v[i].name; *c; c++)
            FUZZ_CHECK(*c < 'A' || *c > 'Z');
    }
}

/* A value the structured parsers read: parameters, bytes of a parameter, an address. */
static void structured(const char *value)
{
    struct pec_mime_params pp;
    size_t len;
    char *cs, *bytes, *addr;
    pec_mime_param_getter *get[2] = {pec_mime_ctype_param_bytes, pec_mime_disposition_param_bytes};

    pec_mime_params_parse(value, &pp);
    check_params(&pp);
    pec_mime_params_free(&pp);
    for (int i = 0; i < 2; i++) {
        bytes = get[i](value, "filename", &len, &cs);
        FUZZ_CHECK(bytes == NULL || bytes[len] == '\0');
        FUZZ_CHECK(bytes != NULL || cs == NULL);
        free(bytes);
        free(cs);
    }
    addr = pec_mime_address(value);
    FUZZ_CHECK(addr == NULL || *addr != '\0');
    free(addr);
}

static void transfer_decode(const char *encoding, struct pec_span body)
{
    unsigned char *out, *crlf;
    size_t outlen, crlflen;

    if (encoding != NULL && strcasecmp(encoding, "base64") == 0) {
        pec_base64_decode(body.p, body.len, &out, &outlen);
        FUZZ_CHECK(outlen <= body.len / 4 * 3 + 2);
        FUZZ_CHECK(out[outlen] == '\0');
        free(out);
    } else if (encoding != NULL && strcasecmp(encoding, "quoted-printable") == 0) {
        pec_qp_decode(body.p, body.len, &out, &outlen);
        FUZZ_CHECK(outlen <= body.len);
        FUZZ_CHECK(out[outlen] == '\0');
        free(out);
    }
    crlf = pec_mime_crlf(body.p, body.len, &crlflen);
    FUZZ_CHECK(crlflen >= body.len && crlflen <= 2 * body.len);
    FUZZ_CHECK(pec_mime_is_crlf(crlf, crlflen));
    FUZZ_CHECK(!pec_mime_is_crlf(body.p, body.len) ||
               (crlflen == body.len && memcmp(crlf, body.p, body.len) == 0));
    free(crlf);
}

static void entity(const unsigned char *p, size_t n, int depth);

static void multipart(struct pec_span body, const char *boundary, int depth)
{
    struct pec_mime_multipart mp;
    const unsigned char *last;
    int r = pec_mime_multipart_split(body, boundary, 1000, &mp);

    FUZZ_CHECK(fuzz_inside(body.p, body.len, mp.preamble.p, mp.preamble.len));
    FUZZ_CHECK(fuzz_inside(body.p, body.len, mp.epilogue.p, mp.epilogue.len));
    FUZZ_CHECK(mp.preamble.p == body.p);
    if (r != 0) {
        FUZZ_CHECK(mp.nparts == 0 && mp.preamble.len == body.len);
    } else {
        FUZZ_CHECK(mp.nparts <= 1000);
        FUZZ_CHECK(mp.closed || mp.epilogue.len == 0);
        last = mp.preamble.p + mp.preamble.len;
        for (size_t i = 0; i < mp.nparts; i++) {
            FUZZ_CHECK(fuzz_inside(body.p, body.len, mp.parts[i].p, mp.parts[i].len));
            /* a delimiter line, at least "--" and the boundary, lies between pieces */
            FUZZ_CHECK(mp.parts[i].p >= last + 2 + strlen(boundary));
            last = mp.parts[i].p + mp.parts[i].len;
        }
        FUZZ_CHECK(mp.epilogue.p >= last);
        for (size_t i = 0; i < mp.nparts; i++)
            entity(mp.parts[i].p, mp.parts[i].len, depth + 1);
    }
    pec_mime_multipart_free(&mp);
}

static void entity(const unsigned char *p, size_t n, int depth)
{
    struct pec_span head, body;
    struct pec_mime_fields it;
    struct pec_mime_field f;
    struct pec_mime_ctype ct;
    struct pec_mime_params dp;
    const unsigned char *prev;
    char *v, *s, *kind;
    int blank = pec_mime_split(p, n, &head, &body);

    FUZZ_CHECK(head.p == p && fuzz_inside(p, n, body.p, body.len));
    FUZZ_CHECK(body.p + body.len == p + n);
    FUZZ_CHECK(blank ? head.len + body.len + 1 <= n && head.len + body.len + 2 >= n
                     : head.len == n && body.len == 0);

    prev = head.p;
    pec_mime_fields_init(&it, head);
    while (pec_mime_fields_next(&it, &f)) {
        FUZZ_CHECK(f.name.p == prev);
        FUZZ_CHECK(fuzz_inside(head.p, head.len, f.value.p, f.value.len));
        FUZZ_CHECK(f.name.len == 0 || f.value.p > f.name.p + f.name.len);
        prev = it.p;
        if (f.name.len == 0)
            continue;
        v = pec_mime_unfold(f.value);
        FUZZ_CHECK(strlen(v) <= f.value.len);
        if (pec_mime_field_is(&f, "Subject")) {
            s = pec_mime_decode_text(v);
            check_string(s);
            free(s);
        } else {
            structured(v);
        }
        free(v);
    }
    FUZZ_CHECK(prev == head.p + head.len);

    v = pec_mime_header(head, "Content-Type");
    FUZZ_CHECK((v == NULL) == (pec_mime_header_count(head, "Content-Type") == 0));
    if (pec_mime_ctype_parse(v, &ct) != 0)
        FUZZ_CHECK(ct.type[0] == '\0' && ct.subtype[0] == '\0');
    check_params(&ct.params);
    free(v);
    v = pec_mime_header(head, "Content-Disposition");
    kind = pec_mime_disposition_parse(v, &dp);
    check_params(&dp);
    free(kind);
    pec_mime_params_free(&dp);
    free(v);

    v = pec_mime_header(head, "Content-Transfer-Encoding");
    transfer_decode(v, body);
    free(v);
    if (depth < MAX_DEPTH) {
        const char *boundary = pec_mime_param(&ct.params, "boundary");

        if (pec_mime_ctype_is(&ct, "multipart", NULL) && boundary != NULL)
            multipart(body, boundary, depth);
        else if (pec_mime_ctype_is(&ct, "message", "rfc822"))
            entity(body.p, body.len, depth + 1);
    }
    pec_mime_ctype_free(&ct);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_lib_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    entity(data, size, 0);
    return 0;
}
