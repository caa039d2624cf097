/*
 * test_crl - revocation of provider certificates (message/crl.h) and its use
 * by signature verification (pec_smime_verify_crl).
 *
 * The test PKI's pecca.crl revokes B's certificate as of 2025-01-01
 * (keyCompromise); pecca-stale.crl is the same, past its nextUpdate.  A CRL
 * is taken only when its issuer (the PEC CA, given as an extra certificate)
 * signed it and chains to the anchors; a CRL nobody known signed, or with
 * one byte changed, is refused whole.  B's signature made in 2024 verifies,
 * one made now is PEC_VERIFY_REVOKED (a stale CRL too); A, not listed,
 * verifies; without a CRL of the issuer the check says so and passes.
 */
#include "check.h"

static const char *pki;
static char tmpdir[] = "/tmp/test_crl.XXXXXX";

#include "testfiles.h"

#include "message/crl.h"
#include "message/libinit.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REVOKED_AT 1735689600 /* 2025-01-01T00:00:00Z */
#define IN_2024 1717236000    /* 2024-06-01T10:00:00Z */

static struct pec_trust *trust;
static unsigned char **issuers;
static size_t *issuer_len, nissuers;

/* BYTES added to a fresh set (the PEC CA as issuer when WITH_ISSUER), or NULL with ERR. */
static struct pec_crls *crls_of(const unsigned char *bytes, size_t len, int with_issuer, char *warn,
                                size_t warnlen, char *err, size_t errlen)
{
    struct pec_crls *c = pec_crls_new();

    err[0] = '\0';
    if (pec_crls_add(c, bytes, len, "crl", trust, (const unsigned char *const *)issuers, issuer_len,
                     with_issuer ? nissuers : 0, time(NULL), warn, warnlen, err, errlen) < 0) {
        pec_crls_free(c);
        return NULL;
    }
    return c;
}

static void test_adding(void)
{
    char *path = pki_path("pecca.crl"), *stale_path = pki_path("pecca-stale.crl");
    size_t len, stale_len;
    unsigned char *pem = read_all(path, &len), *stale = read_all(stale_path, &stale_len);
    char warn[512], err[512];
    struct pec_crls *c;

    CHECK(pem != NULL && stale != NULL);
    if (pem == NULL || stale == NULL)
        return;
    c = crls_of(pem, len, 1, warn, sizeof(warn), err, sizeof(err));
    CHECK(c != NULL && pec_crls_count(c) == 1 && warn[0] == '\0');
    pec_crls_free(c);

    c = crls_of(stale, stale_len, 1, warn, sizeof(warn), err, sizeof(err));
    CHECK(c != NULL && strstr(warn, "past its nextUpdate 2025-02-01") != NULL);
    pec_crls_free(c);

    /* the PEC CA is not an anchor: without it the signature has no known issuer */
    CHECK(crls_of(pem, len, 0, warn, sizeof(warn), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "not verified by any trusted issuer") != NULL);

    /* one byte of the signed part changed: refused whole */
    {
        char *hit = strstr((char *)pem, "\n") + 20;

        *hit = *hit == 'A' ? 'B' : 'A';
        CHECK(crls_of(pem, len, 1, warn, sizeof(warn), err, sizeof(err)) == NULL);
        CHECK(err[0] != '\0');
    }
    CHECK(crls_of((const unsigned char *)"not a CRL", 9, 1, warn, sizeof(warn), err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "not a CRL") != NULL);
    free(pem);
    free(stale);
    free(path);
    free(stale_path);
}

static void test_distribution_points(void)
{
    char *b = pki_path("b/cert.der"), *a = pki_path("a/cert.der");
    size_t blen, alen, n;
    unsigned char *bder = read_all(b, &blen), *ader = read_all(a, &alen);
    char **urls;

    pec_cert_crl_urls(bder, blen, &urls, &n);
    CHECK(n == 1 && strcmp(urls[0], "http://crl.pec.test/pecca.crl") == 0);
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
    free(urls);
    pec_cert_crl_urls(ader, alen, &urls, &n);
    CHECK(n == 0 && urls == NULL);
    pec_cert_crl_urls((const unsigned char *)"junk", 4, &urls, &n);
    CHECK(n == 0);
    free(bder);
    free(ader);
    free(b);
    free(a);
}

/* Provider NAME's signature over a short text made at WHEN, checked now against C. */
static int verify_at(const char *name, time_t when, const struct pec_crls *c,
                     struct pec_verify_result *res)
{
    char *cert = xasprintf("%s/%s/cert.pem", pki, name), *chain = xasprintf("%s/pecca.pem", pki);
    char *key = xasprintf("%s/%s/key.pem", pki, name), err[512];
    struct pec_signer *s = pec_signer_load(cert, chain, key, "sha256", err, sizeof(err));
    static const unsigned char text[] = "Content-Type: text/plain\r\n\r\nCiao.\r\n";
    unsigned char *der = NULL;
    size_t derlen = 0;
    int rc = -2;

    if (s != NULL &&
        pec_smime_sign(s, text, sizeof(text) - 1, when, &der, &derlen, err, sizeof(err)) == 0)
        rc =
            pec_smime_verify_crl(text, sizeof(text) - 1, der, derlen, trust, c, PEC_AT_NOW, 0, res);
    else
        fprintf(stderr, "%s: %s\n", name, err);
    pec_signer_free(s);
    free(der);
    free(cert);
    free(chain);
    free(key);
    return rc;
}

static void test_verification(void)
{
    char *path = pki_path("pecca.crl"), *stale_path = pki_path("pecca-stale.crl");
    size_t len, stale_len;
    unsigned char *pem = read_all(path, &len), *stale = read_all(stale_path, &stale_len);
    char warn[512], err[512];
    struct pec_crls *c = crls_of(pem, len, 1, warn, sizeof(warn), err, sizeof(err));
    struct pec_crls *old = crls_of(stale, stale_len, 1, warn, sizeof(warn), err, sizeof(err));
    struct pec_crls *none = pec_crls_new();
    struct pec_verify_result res;

    CHECK(c != NULL && old != NULL);
    CHECK(verify_at("b", time(NULL), c, &res) == -1);
    CHECK(res.status == PEC_VERIFY_REVOKED && res.revoked_at == REVOKED_AT);
    CHECK(strstr(res.reason, "revoked at 2025-01-01 00:00:00 UTC (keyCompromise), before it "
                             "signed") != NULL);
    pec_verify_result_free(&res);

    CHECK(verify_at("b", IN_2024, c, &res) == 0);
    CHECK(res.ok && res.crl_checked && res.revoked_at == REVOKED_AT && res.crl_note[0] == '\0');
    pec_verify_result_free(&res);

    CHECK(verify_at("b", time(NULL), old, &res) == -1);
    CHECK(res.status == PEC_VERIFY_REVOKED);
    pec_verify_result_free(&res);

    CHECK(verify_at("a", time(NULL), c, &res) == 0);
    CHECK(res.ok && res.crl_checked && res.revoked_at == 0 && res.crl_note[0] == '\0');
    pec_verify_result_free(&res);

    CHECK(verify_at("b", time(NULL), none, &res) == 0);
    CHECK(res.ok && strstr(res.crl_note, "no CRL of") != NULL);
    pec_verify_result_free(&res);

    CHECK(verify_at("b", time(NULL), NULL, &res) == 0);
    CHECK(res.ok && !res.crl_checked);
    pec_verify_result_free(&res);

    pec_crls_free(c);
    pec_crls_free(old);
    pec_crls_free(none);
    free(pem);
    free(stale);
    free(path);
    free(stale_path);
}

int main(void)
{
    char err[512], *trust_path, *pecca;

    pki = check_env("PEC_PKI_DIR");
    if (pec_lib_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    trust_path = pki_path("trust.pem");
    pecca = pki_path("pecca.pem");
    trust = pec_trust_load(trust_path, err, sizeof(err));
    CHECK(trust != NULL);
    CHECK(pec_pem_certs(pecca, &issuers, &issuer_len, &nissuers, err, sizeof(err)) == 0);
    if (trust != NULL && nissuers == 1) {
        test_adding();
        test_distribution_points();
        test_verification();
    }
    for (size_t i = 0; i < nissuers; i++)
        free(issuers[i]);
    free(issuers);
    free(issuer_len);
    pec_trust_free(trust);
    free(trust_path);
    free(pecca);
    return check_exit();
}
