/*
 * fuzz_breve - the original as a ricevuta di avvenuta consegna breve carries it
 * (breve.h): attachments replaced by their SHA-1, everything else copied.
 *
 * The oracle is the promise that matters: no byte of an attachment is carried.  The
 * harness walks the input with lib/message/mime.c as the inspector reads MIME (RFC 2046
 * delimiters, the signature part of a multipart/signed left alone) and notes the body of
 * every attachment: a part, not the message itself, with a file name or a name
 * parameter, or a message/rfc822.  Such a body of at least MIN_LEAK bytes that occurs
 * nowhere else in the input must not occur in the output.  Besides: the build succeeds
 * on any input held in memory, nothing replaced means nothing changed, and the header
 * section of the message stays as it was.
 */
#include "harness.h"

#include "message/breve.h"
#include "message/mime.h"
#include "util/spool.h"

#include <stdlib.h>
#include <string.h>

#define MIN_LEAK 24
#define MAX_ATTACHMENTS 256
#define MEM_LIMIT (64u * 1024 * 1024)

struct found {
    struct pec_span v[MAX_ATTACHMENTS];
    size_t n;
};

static int has_param(pec_mime_param_getter *get, const char *value, const char *name)
{
    size_t len;
    char *cs, *b;

    if (value == NULL || (b = get(value, name, &len, &cs)) == NULL)
        return 0;
    free(b);
    free(cs);
    return 1;
}

static void walk(struct pec_span e, int depth, int top, struct found *f)
{
    struct pec_span head, body;
    struct pec_mime_ctype ct;
    char *ctype, *disp;
    const char *boundary;

    pec_mime_split(e.p, e.len, &head, &body);
    ctype = pec_mime_header(head, "Content-Type");
    disp = pec_mime_header(head, "Content-Disposition");
    pec_mime_ctype_parse(ctype, &ct);
    boundary = pec_mime_param(&ct.params, "boundary");
    if (!top && (has_param(pec_mime_disposition_param_bytes, disp, "filename") ||
                 has_param(pec_mime_ctype_param_bytes, ctype, "name") ||
                 pec_mime_ctype_is(&ct, "message", "rfc822"))) {
        if (f->n < MAX_ATTACHMENTS)
            f->v[f->n++] = body;
    } else if (pec_mime_ctype_is(&ct, "multipart", NULL) && boundary != NULL && *boundary != '\0' &&
               strlen(boundary) <= 70 && depth < PEC_BREVE_MAX_DEPTH) {
        struct pec_mime_multipart mp;
        int is_signed = pec_mime_ctype_is(&ct, "multipart", "signed");

        if (pec_mime_multipart_split(body, boundary, 0, &mp) == 0)
            for (size_t i = 0; i < mp.nparts && !(is_signed && i > 0); i++)
                walk(mp.parts[i], depth + 1, 0, f);
        pec_mime_multipart_free(&mp);
    }
    pec_mime_ctype_free(&ct);
    free(ctype);
    free(disp);
}

/* Is the span the only occurrence of its bytes in [P, P+N)? */
static int unique(const unsigned char *p, size_t n, struct pec_span s)
{
    const unsigned char *hit = memmem(p, n, s.p, s.len);

    return hit == s.p && memmem(hit + 1, n - (size_t)(hit + 1 - p), s.p, s.len) == NULL;
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
    struct pec_spool *in = pec_spool_new(NULL, MEM_LIMIT), *out = pec_spool_new(NULL, MEM_LIMIT);
    struct pec_span all = {data, size}, head, body;
    static struct found f;
    const unsigned char *o;
    size_t replaced, olen;
    char err[256];

    FUZZ_CHECK(pec_spool_write(in, data, size) == 0);
    if (pec_breve_build(in, out, &replaced, err, sizeof(err)) != 0)
        fuzz_fail("pec_breve_build: %s", err);
    o = pec_spool_mem(out);
    olen = pec_spool_size(out);
    FUZZ_CHECK(o != NULL || olen == 0);
    if (replaced == 0)
        FUZZ_CHECK(olen == size && (size == 0 || memcmp(o, data, size) == 0));
    pec_mime_split(data, size, &head, &body);
    FUZZ_CHECK(olen >= head.len && (head.len == 0 || memcmp(o, data, head.len) == 0));

    f.n = 0;
    walk(all, 0, 1, &f);
    for (size_t i = 0; i < f.n; i++)
        if (f.v[i].len >= MIN_LEAK && unique(data, size, f.v[i]) &&
            memmem(o, olen, f.v[i].p, f.v[i].len) != NULL)
            fuzz_fail("breve carries the attachment body at offset %zu (%zu bytes)",
                      (size_t)(f.v[i].p - data), f.v[i].len);
    pec_spool_free(in);
    pec_spool_free(out);
    return 0;
}
