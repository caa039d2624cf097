/*
 * certprofile - the provider certificate's profile and validity (see
 * certprofile.h).
 */
#include "message/certprofile.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Does NAME hold an entry NID equal to WANT, byte for byte? */
static int name_has(const X509_NAME *name, int nid, const char *want)
{
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, s);
        int same = n >= 0 && (size_t)n == strlen(want) && memcmp(utf8, want, (size_t)n) == 0;

        OPENSSL_free(utf8);
        if (same)
            return 1;
    }
    return 0;
}

/* "2045-01-01 00:00:00 UTC" */
static const char *when(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "(unreadable time)");
    return buf;
}

/* The rfc822Names of subjectAltName: how many, and whether one is WANT. */
static int emails(X509 *x, const char *want, int *found)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = 0;

    *found = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_IA5STRING *s;

        if (g->type != GEN_EMAIL)
            continue;
        n++;
        s = g->d.rfc822Name;
        if ((size_t)s->length == strlen(want) &&
            strncasecmp((const char *)s->data, want, (size_t)s->length) == 0)
            *found = 1;
    }
    GENERAL_NAMES_free(gens);
    return n;
}

/* The first rfc822Name of subjectAltName, for a message; OPENSSL_free it. */
static char *first_email(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *out = NULL;

    for (int i = 0; gens != NULL && out == NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

        if (g->type == GEN_EMAIL)
            out = OPENSSL_strndup((const char *)g->d.rfc822Name->data,
                                  (size_t)g->d.rfc822Name->length);
    }
    GENERAL_NAMES_free(gens);
    return out;
}

/* The first critical extension OpenSSL's verifier would not understand, or -1. */
static int unknown_critical(X509 *x)
{
    for (int i = 0; i < X509_get_ext_count(x); i++) {
        X509_EXTENSION *e = X509_get_ext(x, i);

        if (X509_EXTENSION_get_critical(e) && !X509_supported_extension(e))
            return i;
    }
    return -1;
}

static int check_validity(X509 *x, const struct pec_cert_facts *f, char *err, size_t errlen,
                          char *warn, size_t warnlen)
{
    const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
    ASN1_TIME *now = ASN1_TIME_set(NULL, f->now);
    char buf[64];
    int days = 0, secs = 0, rc = -1;

    if (now == NULL) {
        say(err, errlen, "cannot read the clock into a certificate time");
        return -1;
    }
    if (ASN1_TIME_compare(now, nb) < 0)
        say(err, errlen, "not valid before %s", when(nb, buf, sizeof(buf)));
    else if (ASN1_TIME_compare(now, na) > 0)
        say(err, errlen, "expired on %s", when(na, buf, sizeof(buf)));
    else if (ASN1_TIME_diff(&days, &secs, now, na) != 1)
        say(err, errlen, "its validity period cannot be read");
    else
        rc = 0;
    if (rc == 0 && days < f->warn_days)
        say(warn, warnlen,
            "expires on %s, in %d day%s: renew it and publish the new one in the "
            "providers' index",
            when(na, buf, sizeof(buf)), days, days == 1 ? "" : "s");
    ASN1_TIME_free(now);
    return rc;
}

static int check_extensions(X509 *x, const struct pec_cert_facts *f, char *err, size_t errlen,
                            char *warn, size_t warnlen)
{
    int ku = X509_get_ext_by_NID(x, NID_key_usage, -1), found, n, bad;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    int ca = bc != NULL && bc->ca, has_bc = bc != NULL;
    char oid[80];

    BASIC_CONSTRAINTS_free(bc);
    if (ku < 0 || !(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE)) {
        say(err, errlen, "keyUsage lacks digitalSignature: not a signing certificate");
        return -1;
    }
    if (!X509_EXTENSION_get_critical(X509_get_ext(x, ku))) {
        say(err, errlen, "keyUsage is not marked critical (RFC 6109 5.5)");
        return -1;
    }
    if (ca) {
        say(err, errlen, "a CA certificate (basicConstraints CA:TRUE), not a provider's");
        return -1;
    }
    if (X509_get0_subject_key_id(x) == NULL) {
        say(err, errlen, "no subjectKeyIdentifier (RFC 6109 5.5)");
        return -1;
    }
    if (X509_get0_authority_key_id(x) == NULL) {
        say(err, errlen, "no authorityKeyIdentifier (RFC 6109 5.5)");
        return -1;
    }
    if ((bad = unknown_critical(x)) >= 0) {
        OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(X509_get_ext(x, bad)), 1);
        say(err, errlen, "carries critical extension %s, which verifiers do not understand", oid);
        return -1;
    }
    n = emails(x, f->service_address, &found);
    if (n == 0) {
        say(err, errlen, "no rfc822Name in subjectAltName; it must be %s", f->service_address);
        return -1;
    }
    if (!found) {
        char *first = first_email(x);

        say(err, errlen, "subjectAltName is %s, not service_address %s", first ? first : "?",
            f->service_address);
        OPENSSL_free(first);
        return -1;
    }
    if (n > 1) {
        say(err, errlen,
            "subjectAltName holds %d rfc822Names; the service address %s must be "
            "the only one",
            n, f->service_address);
        return -1;
    }
    if (has_bc && warn != NULL && *warn == '\0')
        say(warn, warnlen, "carries basicConstraints, which RFC 6109 5.5 forbids");
    return 0;
}

int pec_cert_profile_check(const unsigned char *der, size_t len, const struct pec_cert_facts *f,
                           char *err, size_t errlen, char *warn, size_t warnlen)
{
    X509 *x = d2i_X509(NULL, &der, (long)len);
    int rc = -1;

    say(warn, warnlen, "%s", "");
    if (x == NULL) {
        say(err, errlen, "the certificate cannot be decoded");
        return -1;
    }
    if (check_validity(x, f, err, errlen, warn, warnlen) == 0 &&
        check_extensions(x, f, err, errlen, warn, warnlen) == 0) {
        if (!name_has(X509_get_subject_name(x), NID_commonName, f->provider_name) &&
            !name_has(X509_get_subject_name(x), NID_organizationName, f->provider_name))
            say(err, errlen, "the subject names provider_name \"%s\" in neither CN nor O",
                f->provider_name);
        else
            rc = 0;
    }
    X509_free(x);
    return rc;
}
