/*
 * crl - revocation of provider certificates.  See crl.h.
 *
 * Adding a CRL finds its issuer among the trust anchors and the extra
 * certificates by name, checks the CRL's signature with that issuer's key,
 * then the issuer's own chain (any purpose, at the given instant).  At
 * verification time OpenSSL's own CRL check runs (X509_V_FLAG_CRL_CHECK on
 * the end certificate: issuer, signature, cRLSign, times); its verdicts
 * reach crl_verify_cb, which turns them into the rules' terms: no CRL for
 * the issuer and a CRL past nextUpdate are notes, not failures; a
 * revocation counts only when it came at or before the signing time.
 */
#include "message/crl.h"
#include "message/smime.h"
#include "util/xalloc.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

struct pec_crls {
    STACK_OF(X509_CRL) * crls;
};

struct pec_crls *pec_crls_new(void)
{
    struct pec_crls *c = xcalloc(1, sizeof(*c));

    if ((c->crls = sk_X509_CRL_new_null()) == NULL) {
        fprintf(stderr, "out of memory: a CRL list\n");
        abort();
    }
    return c;
}

void pec_crls_free(struct pec_crls *c)
{
    if (c == NULL)
        return;
    sk_X509_CRL_pop_free(c->crls, X509_CRL_free);
    free(c);
}

size_t pec_crls_count(const struct pec_crls *c)
{
    return c == NULL ? 0 : (size_t)sk_X509_CRL_num(c->crls);
}

static int asn1_time_t(const ASN1_TIME *at, time_t *t)
{
    struct tm tm;

    if (at == NULL || !ASN1_TIME_to_tm(at, &tm))
        return -1;
    *t = timegm(&tm);
    return 0;
}

static const char *fmt_utc(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "@%lld", (long long)t);
    return buf;
}

static char *issuer_text(const X509_CRL *crl)
{
    char *s = X509_NAME_oneline(X509_CRL_get_issuer(crl), NULL, 0);
    char *copy = xstrdup(s ? s : "?");

    OPENSSL_free(s);
    return copy;
}

/* Does ISSUER sign CRL, and does ISSUER chain to TRUST (EXTRA helping) at NOW? */
static int issued_by(X509_CRL *crl, X509 *issuer, const struct pec_trust *trust,
                     STACK_OF(X509) * extra, time_t now)
{
    X509_STORE_CTX *ctx;
    int ok;

    if (X509_NAME_cmp(X509_get_subject_name(issuer), X509_CRL_get_issuer(crl)) != 0 ||
        X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        ERR_clear_error();
        return 0;
    }
    if ((ctx = X509_STORE_CTX_new()) == NULL)
        return 0;
    ok = X509_STORE_CTX_init(ctx, pec_trust_store(trust), issuer, extra) == 1;
    if (ok) {
        X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), now);
        ok = X509_verify_cert(ctx) == 1;
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* Is CRL signed by a known issuer: an extra certificate or a trust anchor? */
static int verified(X509_CRL *crl, const struct pec_trust *trust, STACK_OF(X509) * extra,
                    time_t now)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(pec_trust_store(trust));

    for (int i = 0; i < sk_X509_num(extra); i++)
        if (issued_by(crl, sk_X509_value(extra, i), trust, extra, now))
            return 1;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

        if (x != NULL && issued_by(crl, x, trust, extra, now))
            return 1;
    }
    return 0;
}

/* The CRLs in BUF: PEM blocks, or one DER CRL.  NULL when there is none. */
static STACK_OF(X509_CRL) * parse_crls(const unsigned char *buf, size_t len)
{
    STACK_OF(X509_CRL) *out = sk_X509_CRL_new_null();
    BIO *b = len <= INT_MAX ? BIO_new_mem_buf(buf, (int)len) : NULL;
    X509_CRL *crl;

    if (out == NULL || b == NULL) {
        BIO_free(b);
        sk_X509_CRL_free(out);
        return NULL;
    }
    while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_CRL_push(out, crl))
            X509_CRL_free(crl);
    BIO_free(b);
    if (sk_X509_CRL_num(out) == 0) {
        const unsigned char *p = buf;

        crl = len <= LONG_MAX ? d2i_X509_CRL(NULL, &p, (long)len) : NULL;
        if (crl != NULL && (p != buf + len || !sk_X509_CRL_push(out, crl)))
            X509_CRL_free(crl);
    }
    ERR_clear_error();
    if (sk_X509_CRL_num(out) == 0) {
        sk_X509_CRL_free(out);
        return NULL;
    }
    return out;
}

static STACK_OF(X509) * der_stack(const unsigned char *const *der, const size_t *len, size_t n)
{
    STACK_OF(X509) *sk = sk_X509_new_null();

    for (size_t i = 0; sk != NULL && i < n; i++) {
        const unsigned char *p = der[i];
        X509 *x = len[i] <= LONG_MAX ? d2i_X509(NULL, &p, (long)len[i]) : NULL;

        if (x != NULL && !sk_X509_push(sk, x))
            X509_free(x);
    }
    ERR_clear_error();
    return sk;
}

/* CRL's times against NOW: -1 with err when it is not valid yet; a warning when past. */
static int check_times(X509_CRL *crl, const char *name, time_t now, char *warn, size_t warnlen,
                       char *err, size_t errlen)
{
    time_t this_update, next_update;
    char *issuer = issuer_text(crl), when[40];
    int rc = 0;

    if (asn1_time_t(X509_CRL_get0_lastUpdate(crl), &this_update) < 0) {
        snprintf(err, errlen, "%s: CRL of %s: unreadable thisUpdate", name, issuer);
        rc = -1;
    } else if (this_update > now + 300) {
        snprintf(err, errlen, "%s: CRL of %s is not valid before %s", name, issuer,
                 fmt_utc(this_update, when, sizeof(when)));
        rc = -1;
    } else if (X509_CRL_get0_nextUpdate(crl) != NULL &&
               asn1_time_t(X509_CRL_get0_nextUpdate(crl), &next_update) == 0 && next_update < now &&
               warn[0] == '\0') {
        snprintf(warn, warnlen,
                 "%s: CRL of %s is past its nextUpdate %s: kept, but a fresh one is due", name,
                 issuer, fmt_utc(next_update, when, sizeof(when)));
    }
    free(issuer);
    return rc;
}

int pec_crls_add(struct pec_crls *c, const unsigned char *buf, size_t len, const char *name,
                 const struct pec_trust *trust, const unsigned char *const *extra,
                 const size_t *extralen, size_t nextra, time_t now, char *warn, size_t warnlen,
                 char *err, size_t errlen)
{
    STACK_OF(X509_CRL) *got = parse_crls(buf, len);
    STACK_OF(X509) * helpers;
    int rc = 0;

    warn[0] = '\0';
    if (got == NULL) {
        snprintf(err, errlen, "%s: not a CRL (DER or PEM)", name);
        return -1;
    }
    helpers = der_stack(extra, extralen, nextra);
    for (int i = 0; rc == 0 && i < sk_X509_CRL_num(got); i++) {
        X509_CRL *crl = sk_X509_CRL_value(got, i);

        if (helpers == NULL) {
            snprintf(err, errlen, "%s: out of memory", name);
            rc = -1;
        } else if (!verified(crl, trust, helpers, now)) {
            char *issuer = issuer_text(crl);

            snprintf(err, errlen,
                     "%s: CRL of %s: its signature is not verified by any trusted issuer "
                     "certificate",
                     name, issuer);
            free(issuer);
            rc = -1;
        } else {
            rc = check_times(crl, name, now, warn, warnlen, err, errlen);
        }
    }
    while (rc == 0 && sk_X509_CRL_num(got) > 0) {
        X509_CRL *crl = sk_X509_CRL_shift(got);

        if (!sk_X509_CRL_push(c->crls, crl)) {
            X509_CRL_free(crl);
            snprintf(err, errlen, "%s: out of memory", name);
            rc = -1;
        }
    }
    sk_X509_CRL_pop_free(got, X509_CRL_free);
    sk_X509_pop_free(helpers, X509_free);
    return rc;
}

int pec_pem_certs(const char *path, unsigned char ***der, size_t **len, size_t *n, char *err,
                  size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x;

    *der = NULL;
    *len = NULL;
    *n = 0;
    if (b == NULL) {
        snprintf(err, errlen, "%s: cannot read", path);
        ERR_clear_error();
        return -1;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        unsigned char *d = NULL;
        int dlen = i2d_X509(x, &d);

        if (dlen > 0) {
            *der = xrealloc(*der, (*n + 1) * sizeof(**der));
            *len = xrealloc(*len, (*n + 1) * sizeof(**len));
            (*der)[*n] = xmalloc((size_t)dlen);
            memcpy((*der)[*n], d, (size_t)dlen);
            (*len)[(*n)++] = (size_t)dlen;
        }
        OPENSSL_free(d);
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (*n == 0) {
        snprintf(err, errlen, "%s: no PEM certificate in it", path);
        return -1;
    }
    return 0;
}

/*
 * An LDAP distribution point answers with an attribute, not a CRL file: left out.  So
 * is a URI with white space, a control or an 8-bit byte (RFC 3986 has none): it would
 * reach the fetcher and the log as it is.
 */
static int fetchable(const char *uri)
{
    static const char *const schemes[] = {"http://", "https://"};

    for (const char *s = uri; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strncasecmp(uri, schemes[i], strlen(schemes[i])) == 0)
            return 1;
    return 0;
}

void pec_cert_crl_urls(const unsigned char *der, size_t len, char ***urls, size_t *n)
{
    const unsigned char *p = der;
    X509 *x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    STACK_OF(DIST_POINT) *dps =
        x ? X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL) : NULL;

    *urls = NULL;
    *n = 0;
    for (int i = 0; i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue; /* a relative name, not a URI */
        for (int k = 0; k < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); k++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, k);
            const char *uri;

            if (gn->type != GEN_URI)
                continue;
            uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
            if ((size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier) != strlen(uri) ||
                !fetchable(uri))
                continue;
            *urls = xrealloc(*urls, (*n + 1) * sizeof(**urls));
            (*urls)[(*n)++] = xstrdup(uri);
        }
    }
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    X509_free(x);
    ERR_clear_error();
}

/* ---------------------------------------------------------------- at verification */

static const char *reason_name(int reason)
{
    static const char *const names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", "",
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};

    return reason >= 0 && reason < (int)(sizeof(names) / sizeof(names[0])) ? names[reason] : "";
}

/* The revocation entry of the certificate being checked, from the CRL being used. */
static void note_revocation(X509_STORE_CTX *ctx, struct pec_crl_state *st)
{
    X509_CRL *crl = X509_STORE_CTX_get0_current_crl(ctx);
    X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
    X509_REVOKED *rev = NULL;
    int crit = 0;
    ASN1_ENUMERATED *reason;

    st->revoked_at = 0;
    st->reason[0] = '\0';
    if (crl == NULL || cert == NULL || X509_CRL_get0_by_cert(crl, &rev, cert) <= 0 ||
        asn1_time_t(X509_REVOKED_get0_revocationDate(rev), &st->revoked_at) < 0)
        return;
    reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
    if (reason != NULL)
        snprintf(st->reason, sizeof(st->reason), "%s",
                 reason_name((int)ASN1_ENUMERATED_get(reason)));
    ASN1_ENUMERATED_free(reason);
    ERR_clear_error();
}

static int crl_verify_cb(int ok, X509_STORE_CTX *ctx)
{
    struct pec_crl_state *st = X509_STORE_CTX_get_app_data(ctx);
    char *issuer;

    if (ok || st == NULL)
        return ok;
    switch (X509_STORE_CTX_get_error(ctx)) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        issuer =
            X509_NAME_oneline(X509_get_issuer_name(X509_STORE_CTX_get_current_cert(ctx)), NULL, 0);
        snprintf(st->note, sizeof(st->note), "no CRL of %s", issuer ? issuer : "its issuer");
        OPENSSL_free(issuer);
        return 1;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        snprintf(st->note, sizeof(st->note), "checked against a CRL past its nextUpdate");
        return 1;
    case X509_V_ERR_CERT_REVOKED:
        note_revocation(ctx, st);
        if (st->revoked_at != 0 && st->revoked_at > st->signed_at)
            return 1; /* revoked later: what it signed before still stands */
        st->revoked = 1;
        return 0;
    default:
        return ok;
    }
}

int pec_crls_arm(X509_STORE_CTX *ctx, const struct pec_crls *c, struct pec_crl_state *st)
{
    st->revoked = 0;
    st->revoked_at = 0;
    st->reason[0] = st->note[0] = '\0';
    X509_STORE_CTX_set0_crls(ctx, c->crls);
    X509_STORE_CTX_set_verify_cb(ctx, crl_verify_cb);
    if (!X509_STORE_CTX_set_app_data(ctx, st))
        return -1;
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK);
    return 0;
}
