/*
 * test_certprofile - the signing certificate's profile and validity
 * (message/certprofile.h) over certificates this test issues with the test
 * PKI's PEC CA: the good one passes; each deviation from RFC 6109 5.5 and
 * each instant outside the validity is refused with its own reason; what
 * the rules only advise against (basicConstraints CA:FALSE, an expiry within
 * the warning window) passes with a warning.  The test PKI's provider
 * certificate passes as it is.
 */
#include "check.h"
#include "message/certprofile.h"
#include "util/xalloc.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <time.h>

#define NAME "Gestore A S.p.A."
#define SERVICE "posta-certificata@pec-a.test"
#define DAY 86400

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert;

struct spec {
    const char *what;
    const char *ku;   /* keyUsage value, NULL: none */
    const char *bc;   /* basicConstraints, NULL: none */
    const char *san;  /* subjectAltName, NULL: none */
    int ski, aki;     /* add the key identifiers */
    const char *odd;  /* an extra critical extension (OID), NULL: none */
    const char *o;    /* subject O */
    long from, until; /* validity, seconds from now */
};

static const struct spec good = {
    "good",     "critical,digitalSignature", NULL, "email:" SERVICE, 1, 1, NULL, NAME, -DAY,
    3650L * DAY};

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);

    CHECK(e != NULL && X509_add_ext(x, e, -1) == 1);
    X509_EXTENSION_free(e);
}

/* A certificate as SPEC says, DER in *DER (to free). */
static size_t issue(const struct spec *s, unsigned char **der)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX ctx;
    int len;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"IT", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)s->o, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Posta Certificata",
                               -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
    X509_gmtime_adj(X509_getm_notBefore(x), s->from);
    X509_gmtime_adj(X509_getm_notAfter(x), s->until);
    X509_set_pubkey(x, leaf_key);
    X509V3_set_ctx(&ctx, ca_cert, x, NULL, NULL, 0);
    if (s->ku)
        add_ext(x, &ctx, NID_key_usage, s->ku);
    if (s->bc)
        add_ext(x, &ctx, NID_basic_constraints, s->bc);
    if (s->san)
        add_ext(x, &ctx, NID_subject_alt_name, s->san);
    if (s->ski)
        add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (s->aki)
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    if (s->odd) {
        ASN1_OBJECT *obj = OBJ_txt2obj(s->odd, 1);
        ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
        X509_EXTENSION *e;

        ASN1_OCTET_STRING_set(v, (const unsigned char *)"\x05\x00", 2); /* NULL */
        e = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, v);
        CHECK(e != NULL && X509_add_ext(x, e, -1) == 1);
        X509_EXTENSION_free(e);
        ASN1_OCTET_STRING_free(v);
        ASN1_OBJECT_free(obj);
    }
    CHECK(X509_sign(x, ca_key, EVP_sha256()) > 0);
    *der = NULL;
    len = i2d_X509(x, der);
    CHECK(len > 0);
    X509_NAME_free(n);
    X509_free(x);
    return len > 0 ? (size_t)len : 0;
}

/* SPEC judged now: 0 or -1, with err and warn. */
static int judge(const struct spec *s, char *err, size_t errlen, char *warn, size_t warnlen)
{
    struct pec_cert_facts f = {NAME, SERVICE, time(NULL), 30};
    unsigned char *der;
    size_t len = issue(s, &der);
    int rc;

    err[0] = '\0';
    rc = pec_cert_profile_check(der, len, &f, err, errlen, warn, warnlen);
    OPENSSL_free(der);
    return rc;
}

static void expect_refused(struct spec s, const char *reason)
{
    char err[512], warn[512];

    if (judge(&s, err, sizeof(err), warn, sizeof(warn)) != -1 || strstr(err, reason) == NULL) {
        fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", s.what, err, reason);
        CHECK(0);
    }
}

static void expect_warning(struct spec s, const char *warning)
{
    char err[512], warn[512];

    if (judge(&s, err, sizeof(err), warn, sizeof(warn)) != 0 || strstr(warn, warning) == NULL) {
        fprintf(stderr, "  %s: got \"%s\" / warning \"%s\", want warning \"%s\"\n", s.what, err,
                warn, warning);
        CHECK(0);
    }
}

static void test_profile(void)
{
    struct spec s;
    char err[512], warn[512];

    CHECK(judge(&good, err, sizeof(err), warn, sizeof(warn)) == 0);
    CHECK_STR(warn, "");

    s = good, s.what = "keyUsage not critical", s.ku = "digitalSignature";
    expect_refused(s, "keyUsage is not marked critical");
    s = good, s.what = "no keyUsage", s.ku = NULL;
    expect_refused(s, "keyUsage lacks digitalSignature");
    s = good, s.what = "keyUsage without digitalSignature", s.ku = "critical,keyEncipherment";
    expect_refused(s, "keyUsage lacks digitalSignature");
    s = good, s.what = "a CA", s.bc = "critical,CA:TRUE";
    expect_refused(s, "a CA certificate");
    s = good, s.what = "no SKI", s.ski = 0;
    expect_refused(s, "no subjectKeyIdentifier");
    s = good, s.what = "no AKI", s.aki = 0;
    expect_refused(s, "no authorityKeyIdentifier");
    s = good, s.what = "no SAN", s.san = NULL;
    expect_refused(s, "no rfc822Name in subjectAltName; it must be " SERVICE);
    s = good, s.what = "another address", s.san = "email:posta@pec-a.test";
    expect_refused(s, "subjectAltName is posta@pec-a.test, not service_address " SERVICE);
    s = good, s.what = "two addresses", s.san = "email:" SERVICE ",email:altro@pec-a.test";
    expect_refused(s, "holds 2 rfc822Names");
    s = good, s.what = "unknown critical", s.odd = "1.3.6.1.4.1.99999.1";
    expect_refused(s, "carries critical extension 1.3.6.1.4.1.99999.1");
    s = good, s.what = "another provider's name", s.o = "Gestore Z S.p.A.";
    expect_refused(s, "names provider_name \"" NAME "\" in neither CN nor O");

    s = good, s.what = "CA:FALSE", s.bc = "CA:FALSE";
    expect_warning(s, "carries basicConstraints");
}

static void test_validity(void)
{
    struct spec s;

    s = good, s.what = "expired", s.from = -400L * DAY, s.until = -DAY;
    expect_refused(s, "expired on ");
    s = good, s.what = "not yet valid", s.from = 2 * DAY, s.until = 400L * DAY;
    expect_refused(s, "not valid before ");
    s = good, s.what = "expiring in 10 days", s.until = 10L * DAY + 3600;
    expect_warning(s, "in 10 days: renew it");
    s = good, s.what = "expiring in 31 days", s.until = 31L * DAY + 3600;
    {
        char err[512], warn[512];
        CHECK(judge(&s, err, sizeof(err), warn, sizeof(warn)) == 0);
        CHECK_STR(warn, "");
    }
}

static void test_pki_certificate(const char *pki)
{
    char *path = xasprintf("%s/a/cert.der", pki);
    FILE *f = fopen(path, "rb");
    unsigned char der[8192];
    size_t len = f ? fread(der, 1, sizeof(der), f) : 0;
    struct pec_cert_facts facts = {NAME, SERVICE, time(NULL), 30};
    char err[512], warn[512];

    CHECK(len > 0);
    CHECK(pec_cert_profile_check(der, len, &facts, err, sizeof(err), warn, sizeof(warn)) == 0);
    if (f)
        fclose(f);
    free(path);
}

static void *load(const char *pki, const char *name, int key)
{
    char *path = xasprintf("%s/%s", pki, name);
    FILE *f = fopen(path, "r");
    void *out = NULL;

    if (f != NULL)
        out = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
                  : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    if (f)
        fclose(f);
    free(path);
    return out;
}

int main(void)
{
    const char *pki = check_env("PEC_PKI_DIR");

    ca_key = load(pki, "pecca.key", 1);
    ca_cert = load(pki, "pecca.pem", 0);
    leaf_key = load(pki, "a/key.pem", 1);
    CHECK(ca_key != NULL && ca_cert != NULL && leaf_key != NULL);
    if (ca_key && ca_cert && leaf_key) {
        test_profile();
        test_validity();
        test_pki_certificate(pki);
    }
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    X509_free(ca_cert);
    return check_exit();
}
