/*
 * harness - the helpers every libFuzzer harness of t/fuzz links (harness.h).
 */
#include "harness.h"

#include "message/libinit.h"
#include "message/mime.h"
#include "util/encode.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("fuzz: broken promise: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

int fuzz_utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        unsigned c = *p++, need, min;
        unsigned long cp;

        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - p) < need)
            return 0;
        for (unsigned i = 0; i < need; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (*p & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

int fuzz_inside(const void *base, size_t len, const void *p, size_t n)
{
    const unsigned char *b = base, *q = p;

    return q >= b && q <= b + len && n <= (size_t)(b + len - q);
}

void fuzz_lib_init(void)
{
    char err[256];

    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz: cannot initialise libpec: %s\n", err);
        exit(1);
    }
}

static char *pki_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (p == NULL) {
        fprintf(stderr, "fuzz: out of memory\n");
        exit(1);
    }
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

const struct fuzz_pki *fuzz_pki(void)
{
    static struct fuzz_pki pki;
    static int loaded;
    const char *dir = getenv("PEC_PKI_DIR");
    char *trust, *index, *cert, *chain, *key, err[512];

    if (loaded)
        return &pki;
    if (dir == NULL || *dir == '\0') {
        fprintf(stderr, "fuzz: PEC_PKI_DIR is not set: run t/pki/mkpki.sh DIR and export it\n");
        exit(1);
    }
    fuzz_lib_init();
    trust = pki_path(dir, "trust.pem");
    index = pki_path(dir, "index.ldif");
    cert = pki_path(dir, "a/cert.pem");
    chain = pki_path(dir, "a/chain.pem");
    key = pki_path(dir, "a/key.pem");
    if ((pki.trust = pec_trust_load(trust, err, sizeof(err))) == NULL ||
        (pki.index = pec_index_load(index, err, sizeof(err))) == NULL ||
        (pki.signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err))) == NULL) {
        fprintf(stderr, "fuzz: cannot load the test PKI of %s: %s\n", dir, err);
        exit(1);
    }
    free(trust);
    free(index);
    free(cert);
    free(chain);
    free(key);
    loaded = 1;
    return &pki;
}

/* The top-level boundary of MSG when it is multipart/signed, else NULL; caller frees. */
static char *signed_boundary(struct pec_span head)
{
    struct pec_mime_ctype ct;
    char *v = pec_mime_header(head, "Content-Type"), *b = NULL;

    if (v == NULL)
        return NULL;
    if (pec_mime_ctype_parse(v, &ct) == 0 && pec_mime_ctype_is(&ct, "multipart", "signed") &&
        pec_mime_param(&ct.params, "boundary") != NULL)
        b = xstrdup(pec_mime_param(&ct.params, "boundary"));
    pec_mime_ctype_free(&ct);
    free(v);
    return b;
}

unsigned char *fuzz_resign(const unsigned char *msg, size_t len, size_t *outlen)
{
    static const char head[] = "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
                               "Content-Transfer-Encoding: base64\r\n\r\n";
    const struct fuzz_pki *pki = fuzz_pki();
    struct pec_span h, body;
    struct pec_mime_multipart mp;
    unsigned char *canon, *der = NULL, *out = NULL;
    size_t canonlen, derlen, pre, post;
    char *boundary, *b64, err[256];

    pec_mime_split(msg, len, &h, &body);
    if ((boundary = signed_boundary(h)) == NULL)
        return NULL;
    if (pec_mime_multipart_split(body, boundary, 3, &mp) == 0 && mp.nparts >= 2) {
        canon = pec_mime_crlf(mp.parts[0].p, mp.parts[0].len, &canonlen);
        if (pec_smime_sign(pki->signer, canon, canonlen, FUZZ_WHEN, &der, &derlen, err,
                           sizeof(err)) != 0)
            fuzz_fail("cannot sign: %s", err);
        b64 = pec_b64_string(der, derlen);
        pre = (size_t)(mp.parts[1].p - msg);
        post = len - pre - mp.parts[1].len;
        *outlen = pre + strlen(head) + strlen(b64) + post;
        out = malloc(*outlen);
        FUZZ_CHECK(out != NULL);
        memcpy(out, msg, pre);
        memcpy(out + pre, head, strlen(head));
        memcpy(out + pre + strlen(head), b64, strlen(b64));
        memcpy(out + *outlen - post, mp.parts[1].p + mp.parts[1].len, post);
        free(b64);
        free(der);
        free(canon);
    }
    pec_mime_multipart_free(&mp);
    free(boundary);
    return out;
}
