/*
 * msgcheck.h - what the envelope and busta tests need to take our messages
 * apart again: files, spools, base64, a strict multipart splitter, the test
 * issuer, and the external verifiers.
 *
 * The splitter is deliberately naive and exact: a part is the bytes between
 * the line "--BOUNDARY" CRLF and the CRLF that precedes the next delimiter,
 * which is precisely what a signature covers.  It is included by one test
 * file each, so everything is static.
 */
#ifndef PEC_TEST_MSGCHECK_H
#define PEC_TEST_MSGCHECK_H

#include "check.h"
#include "util/clock.h"
#include "message/ident.h"
#include "message/libinit.h"
#include "message/pecmsg.h"
#include "message/smime.h"
#include "util/spool.h"
#include "util/xalloc.h"

#include <errno.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* not every test uses every helper */
#define MC_FN static __attribute__((unused))

/* P starts with the string literal LIT */
#define STARTS(p, lit) (memcmp((p), (lit), sizeof(lit) - 1) == 0)

#define FIXED_CLOCK "2024-03-01T11:00:00Z"

struct bytes {
    unsigned char *p;
    size_t n;
};

struct testenv {
    const char *pki;
    char outdir[4096];
    struct pec_signer *signer;
    struct pec_trust *trust;
    struct pec_clock clock;
    struct pec_ident ident;
    struct pec_issuer iss;
};

MC_FN char *path_join(const char *a, const char *b)
{
    return xasprintf("%s/%s", a, b);
}

MC_FN void mkdir_p(const char *path)
{
    char *p = xstrdup(path);

    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
    free(p);
}

MC_FN struct bytes read_file(const char *path)
{
    struct bytes b = {0};
    FILE *fp = fopen(path, "rb");
    size_t got;

    if (fp == NULL)
        return b;
    do {
        b.p = xrealloc(b.p, b.n + 65536 + 1);
        got = fread(b.p + b.n, 1, 65536, fp);
        b.n += got;
    } while (got > 0);
    fclose(fp);
    b.p[b.n] = '\0';
    return b;
}

MC_FN int write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    int ok;

    if (fp == NULL)
        return -1;
    ok = fwrite(p, 1, n, fp) == n;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

/* the whole spool in memory, NUL-terminated */
MC_FN struct bytes spool_bytes(const struct pec_spool *sp)
{
    struct bytes b;

    b.n = pec_spool_size(sp);
    b.p = xmalloc(b.n + 1);
    CHECK(pec_spool_pread(sp, 0, b.p, b.n) == (ssize_t)b.n);
    b.p[b.n] = '\0';
    return b;
}

MC_FN struct bytes built_bytes(const struct pec_built *b)
{
    struct pec_spool *sp = pec_spool_new(NULL, (size_t)1 << 30);
    struct bytes out;

    CHECK(pec_built_to_spool(b, sp) == 0);
    out = spool_bytes(sp);
    pec_spool_free(sp);
    return out;
}

MC_FN int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* decodes, skipping line breaks; stops at '=' */
MC_FN struct bytes b64_decode(const unsigned char *in, size_t n)
{
    struct bytes b = {xmalloc(n / 4 * 3 + 4), 0};
    unsigned long acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n && in[i] != '='; i++) {
        int v = b64_value(in[i]);

        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b.p[b.n++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    b.p[b.n] = '\0';
    return b;
}

MC_FN const unsigned char *find(const unsigned char *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
}

/* the boundary parameter of a Content-Type value, or NULL; caller frees */
MC_FN char *boundary_of(const char *ctype)
{
    const char *p = ctype ? strstr(ctype, "boundary=\"") : NULL;
    const char *e;

    if (p == NULL)
        return NULL;
    p += 10;
    e = strchr(p, '"');
    return e ? xstrndup(p, (size_t)(e - p)) : NULL;
}

#define MAX_PARTS 16

struct range {
    size_t off, len;
};

/*
 * The parts of a multipart body: offsets relative to BODY.  Returns how many,
 * or -1 when the delimiters are not where RFC 2046 puts them.
 */
MC_FN int split(const unsigned char *body, size_t n, const char *boundary,
                struct range parts[MAX_PARTS])
{
    char *delim = xasprintf("\r\n--%s", boundary);
    size_t dlen = strlen(delim), pos;
    const unsigned char *hit;
    int count = 0, ret = -1;

    /* the first delimiter line opens the body or follows the preamble's CRLF */
    if (n >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0)
        pos = 0;
    else if ((hit = find(body, n, delim)) != NULL)
        pos = (size_t)(hit - body) + 2;
    else
        goto done;
    while (count < MAX_PARTS) {
        size_t after = pos + dlen - 2, start;

        if (after + 2 > n)
            goto done;
        if (memcmp(body + after, "--", 2) == 0) {
            ret = count;
            goto done;
        }
        if (memcmp(body + after, "\r\n", 2) != 0)
            goto done;
        start = after + 2;
        if ((hit = find(body + start, n - start, delim)) == NULL)
            goto done;
        parts[count].off = start;
        parts[count].len = (size_t)(hit - body) - start;
        count++;
        pos = (size_t)(hit - body) + 2;
    }

done:
    free(delim);
    return ret;
}

/* offset of a part's body: after its blank line */
MC_FN size_t body_start(const unsigned char *part, size_t n)
{
    const unsigned char *e = find(part, n, "\r\n\r\n");

    if (part[0] == '\r' && n >= 2 && part[1] == '\n')
        return 2;
    return e ? (size_t)(e - part) + 4 : n;
}

/* first header NAME in a part's header block, unfolded value; caller frees, NULL if none */
MC_FN char *part_header(const unsigned char *part, size_t n, const char *name)
{
    size_t hend = body_start(part, n), nl = strlen(name);

    for (size_t i = 0; i < hend;) {
        const unsigned char *eol = find(part + i, hend - i, "\r\n");
        size_t linelen = eol ? (size_t)(eol - (part + i)) : hend - i;

        if (linelen > nl && part[i + nl] == ':' &&
            strncasecmp((const char *)part + i, name, nl) == 0) {
            size_t vs = i + nl + 1, ve = vs;
            char *v;
            size_t o = 0;

            /* to the end of the field, continuation lines included */
            while (ve < hend) {
                const unsigned char *e2 = find(part + ve, hend - ve, "\r\n");

                ve = e2 ? (size_t)(e2 - part) + 2 : hend;
                if (ve >= hend || (part[ve] != ' ' && part[ve] != '\t'))
                    break;
            }
            v = xmalloc(ve - vs + 1);
            for (size_t k = vs; k < ve; k++)
                if (part[k] != '\r' && part[k] != '\n')
                    v[o++] = (char)part[k];
            v[o] = '\0';
            while (o > 0 && (v[o - 1] == ' ' || v[o - 1] == '\t'))
                v[--o] = '\0';
            {
                size_t lead = strspn(v, " \t");
                memmove(v, v + lead, o - lead + 1);
            }
            return v;
        }
        i += linelen + 2;
    }
    return NULL;
}

MC_FN int run(const char *cmd)
{
    int st = system(cmd);

    if (st != 0)
        fprintf(stderr, "command failed (%d): %s\n", st, cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

MC_FN void testenv_init(struct testenv *t)
{
    const char *build = getenv("PEC_BUILD_DIR");
    char err[512] = "";
    char *cert, *chain, *key, *trust;

    memset(t, 0, sizeof(*t));
    t->pki = check_env("PEC_PKI_DIR");
    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "pec_lib_init: %s\n", err);
        exit(1);
    }
    snprintf(t->outdir, sizeof(t->outdir), "%s/t/out", build && *build ? build : "/tmp");
    mkdir_p(t->outdir);
    cert = path_join(t->pki, "a/cert.pem");
    chain = path_join(t->pki, "a/chain.pem");
    key = path_join(t->pki, "a/key.pem");
    trust = path_join(t->pki, "trust.pem");
    t->signer = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    if (t->signer == NULL)
        fprintf(stderr, "signer: %s\n", err);
    t->trust = pec_trust_load(trust, err, sizeof(err));
    if (t->trust == NULL)
        fprintf(stderr, "trust: %s\n", err);
    if (pec_clock_init(&t->clock, "Europe/Rome", FIXED_CLOCK, err, sizeof(err)) != 0 ||
        pec_ident_init(&t->ident, 7, "pec-a.test", &t->clock, err, sizeof(err)) != 0)
        fprintf(stderr, "clock/ident: %s\n", err);
    if (t->signer == NULL || t->trust == NULL)
        exit(1);
    pec_ident_set_deterministic(1);
    t->iss.provider_name = "Gestore A S.p.A.";
    t->iss.service_address = "posta-certificata@pec-a.test";
    t->iss.signer = t->signer;
    t->iss.clock = &t->clock;
    t->iss.ident = &t->ident;
    t->iss.spool_dir = NULL;
    t->iss.spool_mem_limit = 1 << 20;
    free(cert);
    free(chain);
    free(key);
    free(trust);
}

MC_FN void testenv_free(struct testenv *t)
{
    pec_signer_free(t->signer);
    pec_trust_free(t->trust);
}

/*
 * The signed message taken apart: the inner entity exactly as signed and the DER
 * signature.  Returns 0 when the layout is multipart/signed with two parts.
 */
struct signed_parts {
    struct bytes inner;
    struct bytes sig;
};

MC_FN int take_apart(const struct pec_built *b, const unsigned char *body, size_t n,
                     struct signed_parts *sp)
{
    char *boundary = boundary_of(pec_headers_get(&b->headers, "Content-Type"));
    struct range parts[MAX_PARTS];
    int count;

    memset(sp, 0, sizeof(*sp));
    if (boundary == NULL)
        return -1;
    count = split(body, n, boundary, parts);
    free(boundary);
    if (count != 2)
        return -1;
    sp->inner.n = parts[0].len;
    sp->inner.p = xmalloc(sp->inner.n + 1);
    memcpy(sp->inner.p, body + parts[0].off, sp->inner.n);
    sp->inner.p[sp->inner.n] = '\0';
    {
        size_t bs = body_start(body + parts[1].off, parts[1].len);

        sp->sig = b64_decode(body + parts[1].off + bs, parts[1].len - bs);
    }
    return 0;
}

MC_FN void signed_parts_free(struct signed_parts *sp)
{
    free(sp->inner.p);
    free(sp->sig.p);
}

/* our verifier, at the fixed clock's instant */
MC_FN int verify_ours(const struct testenv *t, const struct signed_parts *sp)
{
    struct pec_verify_result res;
    int ret = pec_smime_verify(sp->inner.p, sp->inner.n, sp->sig.p, sp->sig.n, t->trust,
                               PEC_AT_GIVEN, t->clock.fixed_at, &res);

    if (ret != 0)
        fprintf(stderr, "verify: %s\n", res.reason);
    pec_verify_result_free(&res);
    return ret;
}

/* openssl cms on the detached pieces, then openssl smime on the whole message file */
MC_FN int verify_openssl(const struct testenv *t, const struct signed_parts *sp,
                         const char *whole_path, const char *stem)
{
    char *inner = xasprintf("%s/%s.inner", t->outdir, stem);
    char *sig = xasprintf("%s/%s.p7s", t->outdir, stem);
    char *cmd1, *cmd2;
    int r1 = -1, r2 = -1;

    if (write_file(inner, sp->inner.p, sp->inner.n) == 0 &&
        write_file(sig, sp->sig.p, sp->sig.n) == 0) {
        cmd1 = xasprintf("openssl cms -verify -binary -inform DER -in '%s' -content '%s' "
                         "-CAfile '%s/trust.pem' -certfile '%s/pecca.pem' -purpose any "
                         "-out /dev/null 2>/dev/null",
                         sig, inner, t->pki, t->pki);
        cmd2 = xasprintf("openssl smime -verify -in '%s' -CAfile '%s/trust.pem' -purpose any "
                         "-out /dev/null 2>/dev/null",
                         whole_path, t->pki);
        r1 = run(cmd1);
        r2 = run(cmd2);
        free(cmd1);
        free(cmd2);
    }
    unlink(inner);
    unlink(sig);
    free(inner);
    free(sig);
    return r1 == 0 && r2 == 0 ? 0 : -1;
}

#endif
